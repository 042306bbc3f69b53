/* gzip_codec.c - gzip in and out of struct buf, through zlib.
 *
 * Used by the PLP codec for payloads marked GZIP. Decompression stops as
 * soon as the output passes the caller's cap, so a small hostile stream
 * cannot make the daemon allocate gigabytes. */
#include "wire/gzip_codec.h"

#include <zlib.h>
#include <limits.h>

int gzip_compress(const void *data, size_t n, struct buf *out)
{
    z_stream z = {0};
    if (n > UINT_MAX)
        return -1;
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t bound = deflateBound(&z, (uLong)n) + 32;
    size_t start = out->len;
    if (buf_reserve(out, bound) < 0) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)out->p + out->len;
    z.avail_out = (uInt)bound;
    int rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END) {
        out->len = start;
        return -1;
    }
    out->len += z.total_out;
    out->p[out->len] = '\0';
    return 0;
}

int gzip_decompress(const void *data, size_t n, struct buf *out, size_t max_out)
{
    z_stream z = {0};
    if (n > UINT_MAX)
        return -1;
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    size_t start = out->len;
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)n;
    int rc;
    do {
        size_t chunk = n * 4 < 16384 ? 16384 : n * 4;
        if (chunk > max_out + 1)
            chunk = max_out + 1;
        if (buf_reserve(out, chunk) < 0) {
            rc = Z_MEM_ERROR;
            break;
        }
        z.next_out = (Bytef *)out->p + out->len;
        z.avail_out = (uInt)chunk;
        rc = inflate(&z, Z_NO_FLUSH);
        out->len += chunk - z.avail_out;
        if (out->len - start > max_out) {
            inflateEnd(&z);
            out->len = start;
            out->p[start] = '\0';
            return -2;
        }
    } while (rc == Z_OK);
    inflateEnd(&z);
    /* trailing bytes after the stream end mean this was not one gzip stream */
    if (rc != Z_STREAM_END || z.avail_in != 0) {
        out->len = start;
        if (out->p)
            out->p[start] = '\0';
        return -1;
    }
    out->p[out->len] = '\0';
    return 0;
}
