/* plugin_trust.h - strict file modes and Ed25519 signatures for plugins. */
#ifndef POLARIS_PLUGIN_TRUST_H
#define POLARIS_PLUGIN_TRUST_H

#include <stdbool.h>
#include <stddef.h>

#define TRUST_DIGEST_LEN 64
#define TRUST_PUBLIC_LEN 32
#define TRUST_SECRET_LEN 64

/* The file (symlinks resolved) and its directory: owned by root or us,
 * writable by no one else. 0, or -1 with why. */
int trust_check_modes(const char *file, char *why, size_t cap);
/* BLAKE2b-512 over the domain, then each file's length and bytes. */
int trust_digest(const char *manifest, const char *lua, unsigned char out[TRUST_DIGEST_LEN],
                 char *why, size_t cap);
/* NAME.json -> NAME.sig */
void trust_sig_path(const char *manifest, char *out, size_t cap);
/* 0 when NAME.sig is a signature of the digest by one of the key files. */
int trust_verify(const char *manifest, const char *lua, const char *const *keys, size_t nkeys,
                 char *why, size_t cap);
int trust_load_public(const char *path, unsigned char pk[TRUST_PUBLIC_LEN], char *why, size_t cap);
int trust_load_secret(const char *path, unsigned char sk[TRUST_SECRET_LEN], char *why, size_t cap);

#endif
