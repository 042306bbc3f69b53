/* gzip_codec.h - gzip streams (zlib windowBits 15+16) with an output cap. */
#ifndef POLARIS_GZIP_CODEC_H
#define POLARIS_GZIP_CODEC_H

#include "lib/buf.h"

/* Appends the gzip stream of data to out. 0 or -1. */
int gzip_compress(const void *data, size_t n, struct buf *out);

/* Appends the inflated data to out. Returns 0, or -1 if the input is not a
 * complete gzip stream, -2 if the output would exceed max_out (a zip bomb). */
int gzip_decompress(const void *data, size_t n, struct buf *out, size_t max_out);

#endif
