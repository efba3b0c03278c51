// SHA-256 (FIPS 180-4), for model hashes: A1111 names a checkpoint in its "Model hash"
// field by the first 10 hex digits of the file's SHA-256 (its "AutoV2" hash).
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Incremental hashing: init, any number of updates of any sizes, final.
typedef struct {
    uint32_t state[8];
    uint64_t length;         // bytes hashed so far (the standard allows 2^64 - 1 bits)
    unsigned char block[64];  // a partial block waiting for more input
    size_t block_len;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
// Writes the digest; the context must be initialised again before further use.
void sha256_final(sha256_ctx *c, uint8_t out[32]);

// The digest of n bytes in one call.
void sha256(const void *data, size_t n, uint8_t out[32]);
// The digest of a whole file, read in chunks (any size, multi-GB checkpoints included).
// 0, or -1 with err_msg naming the file.
int sha256_file(const char *path, uint8_t out[32]);
// Lower-case hex, NUL-terminated.
void sha256_hex(const uint8_t h[32], char out[65]);

#ifdef __cplusplus
}
#endif
