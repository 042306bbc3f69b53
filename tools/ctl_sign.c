/* ctl_sign.c - `polarisctl keygen | sign | verify`: Ed25519 signatures for
 * offline plugin deployment. The daemon checks them when [plugins]
 * require_signed is on (core/runtime/plugin_trust.c holds the format, shared).
 *
 * Uses: plugin_trust, libsodium, ctl_common (reading the manifest). */
#include "ctl.h"
#include "runtime/plugin_trust.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_text(const char *path, mode_t mode, const char *word, const unsigned char *bin,
                      size_t n)
{
    char hex[2 * 128 + 1];
    sodium_bin2hex(hex, sizeof hex, bin, n);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        fprintf(stderr, "polarisctl: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = dprintf(fd, "%s %s\n", word, hex) > 0 ? 0 : -1;
    if (close(fd) < 0)
        rc = -1;
    return rc;
}

/* NAME.json -> the Lua file beside it (the manifest's entry_point). A
 * plugin folder's own module (x.lua) is signed on its own: x.lua.sig. */
static int lua_path(const char *manifest, char *out, size_t cap)
{
    size_t ml = strlen(manifest);
    if (ml > 4 && strcmp(manifest + ml - 4, ".lua") == 0) {
        snprintf(out, cap, "%s", manifest);
        return 0;
    }
    struct buf m = BUF_INIT;
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "polarisctl: %s: %s\n", manifest, strerror(errno));
        return -1;
    }
    char chunk[4096];
    for (size_t n; (n = fread(chunk, 1, sizeof chunk, f)) > 0;)
        buf_append(&m, chunk, n);
    fclose(f);
    struct json_member e;
    char entry[256] = "";
    if (ctl_get(m.p, m.len, "entry_point", &e))
        ctl_text(&e, entry, sizeof entry);
    buf_free(&m);
    size_t n = strlen(manifest);
    const char *slash = strrchr(manifest, '/');
    int dir = slash ? (int)(slash - manifest + 1) : 0;
    if (entry[0] && !strchr(entry, '/'))
        snprintf(out, cap, "%.*s%s", dir, manifest, entry);
    else if (n > 5 && strcmp(manifest + n - 5, ".json") == 0)
        snprintf(out, cap, "%.*s.lua", (int)(n - 5), manifest);
    else {
        fprintf(stderr, "polarisctl: %s: give the plugin's .json manifest\n", manifest);
        return -1;
    }
    return 0;
}

int ctl_cmd_keygen(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "polarisctl: usage: keygen KEYFILE (writes KEYFILE and KEYFILE.pub)\n");
        return CTL_USAGE;
    }
    if (sodium_init() < 0)
        return CTL_FAILED;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    char pub[PATH_MAX];
    snprintf(pub, sizeof pub, "%s.pub", argv[0]);
    int rc = write_text(argv[0], 0600, "ed25519-secret", sk, sizeof sk) < 0 ||
             write_text(pub, 0644, "ed25519-public", pk, sizeof pk) < 0 ? CTL_FAILED : CTL_OK;
    sodium_memzero(sk, sizeof sk);
    if (rc == CTL_OK)
        printf("secret key: %s (keep it off the target)\npublic key: %s (list it in "
               "[plugins] trusted_keys)\n", argv[0], pub);
    return rc;
}

int ctl_cmd_sign(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "polarisctl: usage: sign KEYFILE PLUGIN.json\n");
        return CTL_USAGE;
    }
    char why[512], lua[PATH_MAX], sigpath[PATH_MAX];
    unsigned char sk[TRUST_SECRET_LEN], digest[TRUST_DIGEST_LEN], sig[crypto_sign_BYTES];
    if (lua_path(argv[1], lua, sizeof lua) < 0)
        return CTL_USAGE;
    if (trust_load_secret(argv[0], sk, why, sizeof why) < 0 ||
        trust_digest(argv[1], lua, digest, why, sizeof why) < 0) {
        fprintf(stderr, "polarisctl: sign: %s\n", why);
        sodium_memzero(sk, sizeof sk);
        return CTL_FAILED;
    }
    crypto_sign_detached(sig, NULL, digest, sizeof digest, sk);
    sodium_memzero(sk, sizeof sk);
    trust_sig_path(argv[1], sigpath, sizeof sigpath);
    unlink(sigpath);
    if (write_text(sigpath, 0644, "ed25519-signature", sig, sizeof sig) < 0)
        return CTL_FAILED;
    printf("signed %s and %s -> %s\n", argv[1], lua, sigpath);
    return CTL_OK;
}

int ctl_cmd_verify(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "polarisctl: usage: verify PUBFILE PLUGIN.json\n");
        return CTL_USAGE;
    }
    char why[512], lua[PATH_MAX];
    if (lua_path(argv[1], lua, sizeof lua) < 0)
        return CTL_USAGE;
    const char *keys[] = {argv[0]};
    if (trust_verify(argv[1], lua, keys, 1, why, sizeof why) < 0) {
        fprintf(stderr, "polarisctl: verify: %s\n", why);
        return CTL_FAILED;
    }
    printf("good signature: %s\n", argv[1]);
    return CTL_OK;
}
