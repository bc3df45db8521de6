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

/* Coefficients in, coefficients out: Huffman decoding and encoding only. */
static void coefficients(const unsigned char *frame, size_t len, unsigned char **out, unsigned long *out_len) {
    struct jpeg_decompress_struct in;
    struct jpeg_compress_struct dst;
    struct jpeg_error_mgr in_err, dst_err;
    in.err = jpeg_std_error(&in_err);
    dst.err = jpeg_std_error(&dst_err);
    jpeg_create_decompress(&in);
    jpeg_create_compress(&dst);
    jpeg_mem_src(&in, frame, len);
    jpeg_read_header(&in, TRUE);
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(&in);
    jpeg_copy_critical_parameters(&in, &dst);
    jpeg_mem_dest(&dst, out, out_len);
    jpeg_write_coefficients(&dst, coefs);
    jpeg_finish_compress(&dst);
    jpeg_finish_decompress(&in);
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&in);
}

/* Pixels: decode, blank a banner, encode. */
static void pixels(const unsigned char *frame, size_t len, unsigned char **out, unsigned long *out_len) {
    struct jpeg_decompress_struct in;
    struct jpeg_compress_struct dst;
    struct jpeg_error_mgr in_err, dst_err;
    in.err = jpeg_std_error(&in_err);
    dst.err = jpeg_std_error(&dst_err);
    jpeg_create_decompress(&in);
    jpeg_mem_src(&in, frame, len);
    jpeg_read_header(&in, TRUE);
    jpeg_start_decompress(&in);
    size_t stride = (size_t)in.output_width * in.output_components;
    unsigned char *image = malloc(stride * in.output_height);
    while (in.output_scanline < in.output_height) {
        unsigned char *row = image + stride * in.output_scanline;
        jpeg_read_scanlines(&in, &row, 1);
    }
    memset(image, 0, stride * (in.output_height < 64 ? in.output_height : 64));
    jpeg_create_compress(&dst);
    jpeg_mem_dest(&dst, out, out_len);
    dst.image_width = in.output_width;
    dst.image_height = in.output_height;
    dst.input_components = in.output_components;
    dst.in_color_space = in.out_color_space;
    jpeg_set_defaults(&dst);
    jpeg_set_quality(&dst, 90, TRUE);
    jpeg_start_compress(&dst, TRUE);
    while (dst.next_scanline < dst.image_height) {
        unsigned char *row = image + stride * dst.next_scanline;
        jpeg_write_scanlines(&dst, &row, 1);
    }
    jpeg_finish_compress(&dst);
    jpeg_finish_decompress(&in);
    jpeg_destroy_compress(&dst);
    jpeg_destroy_decompress(&in);
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
