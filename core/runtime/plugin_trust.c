/* plugin_trust.c - whether a plugin's files may be trusted before any of
 * their code runs:
 *   - strict modes (like sshd's StrictModes): the manifest, the Lua file and
 *     the directories holding them must be owned by root or the daemon's
 *     user and writable by no one else;
 *   - signatures (when [plugins] require_signed): NAME.sig beside the
 *     manifest holds an Ed25519 signature, by one of [plugins] trusted_keys,
 *     over a BLAKE2b-512 digest of the manifest and the Lua file.
 * `polarisctl keygen/sign/verify` use the same functions, so what the tool
 * signs is exactly what the daemon checks.
 *
 * Uses: libsodium (Ed25519, BLAKE2b). */
#include "runtime/plugin_trust.h"
#include "lib/buf.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DOMAIN "polaris-plugin-v1"

static int check_one(const char *path, bool dir, char *why, size_t cap)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    uid_t me = geteuid();
    if (st.st_uid != 0 && st.st_uid != me) {
        snprintf(why, cap, "%s is owned by uid %u, not root or the daemon's uid %u",
                 path, (unsigned)st.st_uid, (unsigned)me);
        return -1;
    }
    if (st.st_mode & 022) {
        snprintf(why, cap, "%s %s is writable by %s (mode %04o)", dir ? "directory" : "file",
                 path, (st.st_mode & 002) ? "anyone" : "its group", (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

int trust_check_modes(const char *file, char *why, size_t cap)
{
    char real[PATH_MAX];
    if (!realpath(file, real)) {
        snprintf(why, cap, "%s: %s", file, strerror(errno));
        return -1;
    }
    if (check_one(real, false, why, cap) < 0)
        return -1;
    return check_one(dirname(real), true, why, cap);
}

static void absorb(crypto_generichash_state *st, const unsigned char *p, size_t n)
{
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    crypto_generichash_update(st, len, 8);
    crypto_generichash_update(st, p, n);
}

int trust_digest(const char *manifest, const char *lua, unsigned char out[TRUST_DIGEST_LEN],
                 char *why, size_t cap)
{
    if (sodium_init() < 0) {
        snprintf(why, cap, "libsodium could not start");
        return -1;
    }
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, TRUST_DIGEST_LEN);
    crypto_generichash_update(&st, (const unsigned char *)DOMAIN, sizeof DOMAIN);
    const char *files[] = {manifest, lua};
    for (int i = 0; i < 2; i++) {
        struct buf data = BUF_INIT;
        if (buf_read_file(&data, files[i], 64u << 20, why, cap) < 0) {
            buf_free(&data);
            return -1;
        }
        absorb(&st, (const unsigned char *)(data.p ? data.p : ""), data.len);
        buf_free(&data);
    }
    crypto_generichash_final(&st, out, TRUST_DIGEST_LEN);
    return 0;
}

/* "WORD HEX" on the first line; decodes want bytes of HEX. */
static int read_hex_line(const char *path, const char *word, unsigned char *out, size_t want,
                         char *why, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[512], w[64], hex[300];
    bool ok = fgets(line, sizeof line, f) && sscanf(line, "%63s %299s", w, hex) == 2 &&
              strcmp(w, word) == 0;
    fclose(f);
    size_t got = 0;
    if (!ok || sodium_hex2bin(out, want, hex, strlen(hex), NULL, &got, NULL) != 0 || got != want) {
        snprintf(why, cap, "%s: not a '%s' line with %zu hex bytes", path, word, want);
        return -1;
    }
    return 0;
}

int trust_load_public(const char *path, unsigned char pk[TRUST_PUBLIC_LEN], char *why, size_t cap)
{
    return read_hex_line(path, "ed25519-public", pk, TRUST_PUBLIC_LEN, why, cap);
}

int trust_load_secret(const char *path, unsigned char sk[TRUST_SECRET_LEN], char *why, size_t cap)
{
    return read_hex_line(path, "ed25519-secret", sk, TRUST_SECRET_LEN, why, cap);
}

void trust_sig_path(const char *manifest, char *out, size_t cap)
{
    size_t n = strlen(manifest);
    if (n > 5 && strcmp(manifest + n - 5, ".json") == 0)
        n -= 5;
    snprintf(out, cap, "%.*s.sig", (int)n, manifest);
}

int trust_verify(const char *manifest, const char *lua, const char *const *keys, size_t nkeys,
                 char *why, size_t cap)
{
    unsigned char digest[TRUST_DIGEST_LEN], sig[crypto_sign_BYTES];
    char sigpath[PATH_MAX];
    trust_sig_path(manifest, sigpath, sizeof sigpath);
    if (trust_digest(manifest, lua, digest, why, cap) < 0)
        return -1;
    if (read_hex_line(sigpath, "ed25519-signature", sig, sizeof sig, why, cap) < 0)
        return -1;
    for (size_t i = 0; i < nkeys; i++) {
        unsigned char pk[TRUST_PUBLIC_LEN];
        char kwhy[256];
        if (trust_load_public(keys[i], pk, kwhy, sizeof kwhy) < 0)
            continue;                       /* a bad key file trusts nothing */
        if (crypto_sign_verify_detached(sig, digest, sizeof digest, pk) == 0)
            return 0;
    }
    snprintf(why, cap, "%s is not a valid signature of this manifest and Lua file by any "
             "trusted key (%zu configured)", sigpath, nkeys);
    return -1;
}
