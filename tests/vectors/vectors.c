/* vectors.c - reading the shared test vectors of tests/vectors from the C tests (the codec's and the C client's). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "vectors.h"

uint8_t *
vectors_read(const char *rel, size_t *len, bool nul)
{
    char path[1024];
    uint8_t *buf;
    long n;
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", DLQ_VECTORS_DIR, rel);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    buf = malloc((size_t)n + (nul ? 1 : n == 0));
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    if (nul)
        buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

json_t *
vectors_manifest(void)
{
    char path[1024];
    json_error_t err;
    json_t *m;

    snprintf(path, sizeof(path), "%s/manifest.json", DLQ_VECTORS_DIR);
    m = json_load_file(path, 0, &err);
    if (!m)
        fail_msg("%s:%d: %s", path, err.line, err.text);
    assert_int_equal(json_integer_value(json_object_get(m, "version")), 1);
    return m;
}
