/* vectors.h - reading the shared test vectors of tests/vectors (manifest.json and its files) from the C tests. */
#ifndef DLQ_TEST_VECTORS_H
#define DLQ_TEST_VECTORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/*
 * vectors_read() reads the file rel (a path relative to tests/vectors, as
 * manifest.json names it) into a new heap block that the caller frees;
 * *len is its size. With nul the block has one more byte, a NUL (for
 * printing); without it the block is exactly *len bytes (at least 1), so
 * that ASan sees a decoder reading past the end. Fails the running cmocka
 * test when the file cannot be read. Any thread of a test.
 */
uint8_t *vectors_read(const char *rel, size_t *len, bool nul);

/*
 * vectors_manifest() loads tests/vectors/manifest.json (version 1); the
 * caller owns the result (json_decref()). Fails the running cmocka test
 * when it cannot be read or is another version. Any thread of a test.
 */
json_t *vectors_manifest(void);

#endif
