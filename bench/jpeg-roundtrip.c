/* The C anchor for strict JPEG: libjpeg-turbo reads each frame's DCT coefficients
 * and writes them back (jpeg_read_coefficients -> jpeg_write_coefficients, the path
 * jpegtran takes for a lossless transform), or, with --pixels, decodes the frame,
 * blanks its top 64 rows and encodes it again at quality 90. bench/anonymize.sh
 * builds it against Debian's libjpeg62-turbo-dev and times it beside `uplink
 * anonymize --profile strict` on the same frames.
 *
 *     jpeg-roundtrip [--pixels] FRAMES OUT
 *
 * FRAMES holds the frames one after another, each after its length as a 4-byte
 * little-endian number; OUT receives the written frames the same way.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(*size);
    if (fread(data, 1, *size, f) != *size) { perror(path); exit(1); }
    fclose(f);
    return data;
}

/* A frame's reader and a writer into memory, for one round trip. */
struct codec {
    struct jpeg_decompress_struct in;
    struct jpeg_compress_struct dst;
    struct jpeg_error_mgr in_err, dst_err;
};

static void start(struct codec *c, const unsigned char *frame, size_t len, unsigned char **out, unsigned long *out_len) {
    c->in.err = jpeg_std_error(&c->in_err);
    c->dst.err = jpeg_std_error(&c->dst_err);
    jpeg_create_decompress(&c->in);
    jpeg_create_compress(&c->dst);
    jpeg_mem_src(&c->in, frame, len);
    jpeg_read_header(&c->in, TRUE);
    jpeg_mem_dest(&c->dst, out, out_len);
}

static void finish(struct codec *c) {
    jpeg_finish_compress(&c->dst);
    jpeg_finish_decompress(&c->in);
    jpeg_destroy_compress(&c->dst);
    jpeg_destroy_decompress(&c->in);
}

/* Coefficients in, coefficients out: Huffman decoding and encoding only. */
static void coefficients(const unsigned char *frame, size_t len, unsigned char **out, unsigned long *out_len) {
    struct codec c;
    start(&c, frame, len, out, out_len);
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(&c.in);
    jpeg_copy_critical_parameters(&c.in, &c.dst);
    jpeg_write_coefficients(&c.dst, coefs);
    finish(&c);
}

/* Pixels: decode, blank a banner, encode. */
static void pixels(const unsigned char *frame, size_t len, unsigned char **out, unsigned long *out_len) {
    struct codec c;
    start(&c, frame, len, out, out_len);
    jpeg_start_decompress(&c.in);
    size_t stride = (size_t)c.in.output_width * c.in.output_components;
    unsigned char *image = malloc(stride * c.in.output_height);
    while (c.in.output_scanline < c.in.output_height) {
        unsigned char *row = image + stride * c.in.output_scanline;
        jpeg_read_scanlines(&c.in, &row, 1);
    }
    memset(image, 0, stride * (c.in.output_height < 64 ? c.in.output_height : 64));
    c.dst.image_width = c.in.output_width;
    c.dst.image_height = c.in.output_height;
    c.dst.input_components = c.in.output_components;
    c.dst.in_color_space = c.in.out_color_space;
    jpeg_set_defaults(&c.dst);
    jpeg_set_quality(&c.dst, 90, TRUE);
    jpeg_start_compress(&c.dst, TRUE);
    while (c.dst.next_scanline < c.dst.image_height) {
        unsigned char *row = image + stride * c.dst.next_scanline;
        jpeg_write_scanlines(&c.dst, &row, 1);
    }
    finish(&c);
    free(image);
}

int main(int argc, char **argv) {
    int decode = argc == 4 && strcmp(argv[1], "--pixels") == 0;
    if (argc != 3 + decode) {
        fprintf(stderr, "usage: jpeg-roundtrip [--pixels] FRAMES OUT\n");
        return 2;
    }
    size_t size;
    unsigned char *data = read_file(argv[1 + decode], &size);
    FILE *out = fopen(argv[2 + decode], "wb");
    if (!out) { perror(argv[2 + decode]); return 1; }
    for (size_t at = 0; at + 4 <= size;) {
        uint32_t len = data[at] | data[at + 1] << 8 | data[at + 2] << 16 | (uint32_t)data[at + 3] << 24;
        at += 4;
        if (len > size - at) { fprintf(stderr, "truncated frame file\n"); return 1; }
        unsigned char *written = NULL;
        unsigned long written_len = 0;
        (decode ? pixels : coefficients)(data + at, len, &written, &written_len);
        uint32_t n = (uint32_t)written_len;
        fwrite(&n, 4, 1, out);
        fwrite(written, 1, written_len, out);
        free(written);
        at += len;
    }
    fclose(out);
    free(data);
    return 0;
}
