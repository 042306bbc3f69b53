#!/bin/sh
# fresh-check.sh - the README's two commands on a fresh machine: a minimal
# Debian 12 root file system (debootstrap --variant=minbase from this
# machine's configured apt source, plus make and git), a clone of the
# commit REV (default HEAD) inside it, then `make test`, then `make run`
# answering `polarisctl call ping`. Nothing installed on this machine is
# visible in there: a missing install step fails here.
#
# The pristine root is built once and cached as a tarball in
# $FRESH_CACHE (default /var/cache/polaris-fresh); each run unpacks a new
# copy. Needs root (chroot, mounts). It runs in its own mount namespace, so
# its mounts end with it; not in a pid namespace (the kernel's process
# connector, which the crash monitor's specs use, reports only in the
# first one), so whatever it started that is still running in the root
# at the end is killed then.
set -eu
cd "$(dirname "$0")/.."
REV=${REV:-HEAD}
CACHE=${FRESH_CACHE:-/var/cache/polaris-fresh}
SUITE=bookworm
[ "$(id -u)" -eq 0 ] || { echo "fresh-check: needs root (debootstrap, chroot)" >&2; exit 2; }

commit=$(git rev-parse --verify "$REV^{commit}")
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\?\([^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -n 1)
[ -n "$mirror" ] || { echo "fresh-check: no apt source configured on this machine" >&2; exit 2; }

if ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

tarball=$CACHE/$SUITE-minbase.tar
mkdir -p "$CACHE"
if [ ! -s "$tarball" ]; then
    echo "== fresh-check: building a minimal $SUITE root from $mirror (cached in $CACHE)"
    build=$(mktemp -d "$CACHE/build.XXXXXX")
    debootstrap --variant=minbase --include=make,git,ca-certificates "$SUITE" "$build" "$mirror" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log"; rm -rf "$build"; exit 1; }
    tar -C "$build" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$build"
fi

root=$(mktemp -d /var/tmp/polaris-fresh.XXXXXX)
cleanup() {
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -9 "${p#/proc/}" 2>/dev/null
    done
    rm -rf "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$tarball"
chmod 0755 "$root"                 # "/" in there (tar restored mktemp's 0700): other uids get through
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# the repository as a newcomer gets it: a clone, at the commit under test
git clone -q --no-hardlinks "$PWD" "$root/src/polarisd"
git -C "$root/src/polarisd" checkout -q "$commit"
echo "== fresh-check: $commit in a fresh $SUITE root ($root)"

cat > "$root/fresh-inside.sh" <<'EOF'
#!/bin/sh
# runs in the fresh root, as the README says
set -eu
cd /src/polarisd
echo "== make test"
make test
echo "== make run"
make run > /tmp/polarisd-run.log 2>&1 &
i=0
until build/polarisctl call ping > /tmp/ping.out 2>&1; do
    i=$((i + 1))
    if [ $i -ge 600 ]; then
        echo "make run never answered ping within 60 s:"; cat /tmp/ping.out; tail -n 40 /tmp/polarisd-run.log
        exit 1
    fi
    sleep 0.1
done
cat /tmp/ping.out
echo "fresh-check: make test and make run both work on a fresh machine"
EOF
chmod +x "$root/fresh-inside.sh"

unshare --mount --propagation private sh -eu -c '
    root=$1
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    mount -t tmpfs tmpfs "$root/dev/shm"
    mount -t tmpfs tmpfs "$root/run"
    mount -t tmpfs tmpfs "$root/tmp"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 TERM=dumb /fresh-inside.sh
' fresh "$root"
