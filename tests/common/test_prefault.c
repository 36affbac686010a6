/* test_prefault.c - unit tests of common/prefault.c: the heap's pages ahead of use are mapped by the thread, and what blocks hold is untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "prefault.h"

#define BLOCKS 100000   /* at most: 46 MiB */
#define BLOCK_SIZE 480   /* about a task's allocations */
#define GROWTHS 3        /* the heap's end moves this many times, then the blocks stop */

static uintptr_t
page_of(uintptr_t a)
{
    return a & ~((uintptr_t)sysconf(_SC_PAGESIZE) - 1);
}

/* How many pages of [from, to) are not resident (mincore). */
static size_t
pages_out(uintptr_t from, uintptr_t to)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (to - from) / page, out = 0;
    unsigned char *vec = calloc(n ? n : 1, 1);

    assert_non_null(vec);
    assert_int_equal(mincore((void *)from, to - from, vec), 0);
    for (size_t i = 0; i < n; i++)
        out += !(vec[i] & 1);
    free(vec);
    return out;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static void
test_bad_size(void **state)
{
    struct sc_prefault *p = (struct sc_prefault *)1;

    (void)state;
    assert_int_equal(sc_prefault_start(4096, &p), SC_EINVAL);
    assert_null(p);
    assert_int_equal(sc_prefault_start((size_t)2 << 30, &p), SC_EINVAL);
    assert_null(p);
    sc_prefault_stop(NULL); /* nothing */
    assert_int_equal(sc_prefault_bytes(NULL), 0);
}

/*
 * One growth of the heap, then quiet (an idle daemon's occasional
 * allocation): the thread leaves the pad alone, so resident memory does
 * not jump by the pad.
 */
static void
test_lone_growth(void **state)
{
    struct sc_prefault *p = NULL;
    unsigned char *blocks[20000];
    uintptr_t start, top = 0, end;
    int n = 0;
    sc_status s;

    (void)state;
    s = sc_prefault_start((size_t)4 << 20, &p);
    if (s == SC_EUNAVAIL)
        return;
    assert_int_equal(s, SC_OK);
    start = (uintptr_t)sbrk(0);
    while (n < 20000 && (uintptr_t)sbrk(0) == start) {
        assert_non_null(blocks[n] = malloc(BLOCK_SIZE));
        memset(blocks[n], 1, BLOCK_SIZE);
        if ((uintptr_t)blocks[n] + BLOCK_SIZE > top)
            top = (uintptr_t)blocks[n] + BLOCK_SIZE;
        n++;
    }
    end = page_of((uintptr_t)sbrk(0));
    sleep_ms(400);
    if (end > start) {
        uintptr_t from = page_of(top) + 2 * (uintptr_t)sysconf(_SC_PAGESIZE);
        size_t page = (size_t)sysconf(_SC_PAGESIZE);

        assert_true(end > from + ((uintptr_t)3 << 20));
        assert_true(pages_out(from, end) > (end - from) / page / 2); /* most of the pad untouched */
        assert_int_equal(sc_prefault_bytes(p), 0);
    }
    for (int i = 0; i < n; i++)
        free(blocks[i]);
    sc_prefault_stop(p);
}

/*
 * Small blocks grow the heap until its end has moved GROWTHS times, and
 * stop just after the last move: the pages between the last block and the
 * heap's end (the 4 MiB pad, which the allocator has not touched) become
 * resident through the thread alone, and every block still
 * holds its pattern. With an allocator that does not grow the heap with brk
 * (a sanitizer's) the heap's end does not move, and the thread maps nothing.
 */
static void
test_maps_ahead(void **state)
{
    struct sc_prefault *p = NULL;
    unsigned char **blocks = calloc(BLOCKS, sizeof(*blocks));
    uintptr_t start = (uintptr_t)sbrk(0), top = 0, end, last = start;
    sc_status s;
    size_t out = 0;
    int n = 0, growths = 0;

    (void)state;
    assert_non_null(blocks);
    s = sc_prefault_start((size_t)4 << 20, &p);
    if (s == SC_EUNAVAIL) {
        /* a kernel before 5.14: nothing started, and the caller goes on without it */
        assert_null(p);
        free(blocks);
        return;
    }
    assert_int_equal(s, SC_OK);
    assert_non_null(p);
    while (n < BLOCKS && growths < GROWTHS) {
        assert_non_null(blocks[n] = malloc(BLOCK_SIZE));
        memset(blocks[n], n & 0xff, BLOCK_SIZE);
        if ((uintptr_t)blocks[n] + BLOCK_SIZE > top)
            top = (uintptr_t)blocks[n] + BLOCK_SIZE;
        n++;
        if ((uintptr_t)sbrk(0) != last) {
            last = (uintptr_t)sbrk(0);
            growths++;
        }
    }
    end = page_of((uintptr_t)sbrk(0));
    if (end <= start) {
        sleep_ms(200);
        assert_int_equal(sc_prefault_bytes(p), 0);
    } else {
        uintptr_t from = page_of(top) + 2 * (uintptr_t)sysconf(_SC_PAGESIZE); /* past the top chunk's header */

        assert_true(end > from + ((uintptr_t)3 << 20)); /* the pad, less one block: untouched by the allocator */
        for (int tries = 0; tries < 500 && (out = pages_out(from, end)) > 0; tries++)
            sleep_ms(10);
        assert_int_equal(out, 0);
        assert_true(sc_prefault_bytes(p) >= end - from);
    }
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < BLOCK_SIZE; k += 97)
            assert_int_equal(blocks[i][k], i & 0xff);
        free(blocks[i]);
    }
    free(blocks);
    sc_prefault_stop(p);
}

/*
 * The heap grows and is given back to the kernel over and over (blocks of
 * 16 bytes to 200 KiB, most freed in a scattered order, then all) while the
 * thread maps what it sees: every block still holds its own bytes when it
 * is freed, and the thread stops.
 */
static void
test_churn(void **state)
{
    enum { N = 20000, ROUNDS = 20 };
    struct sc_prefault *p = NULL;
    unsigned char **b = calloc(N, sizeof(*b));
    size_t *len = calloc(N, sizeof(*len));
    uint64_t x = 88172645463325252ULL;
    uintptr_t low = (uintptr_t)sbrk(0), high = low;
    sc_status s;

    (void)state;
    assert_non_null(b);
    assert_non_null(len);
    s = sc_prefault_start((size_t)2 << 20, &p);
    assert_true(s == SC_OK || s == SC_EUNAVAIL);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            len[i] = (x % 100) ? 16 + x % 2000 : 64 * 1024 + x % (136 * 1024);
            assert_non_null(b[i] = malloc(len[i]));
            memset(b[i], (i + r) & 0xff, len[i]);
        }
        if ((uintptr_t)sbrk(0) > high)
            high = (uintptr_t)sbrk(0);
        for (int k = 0; k < 2; k++) /* odd ones first, then the rest: the top is freed last */
            for (int i = k == 0 ? 1 : 0; i < N; i += 2) {
                for (size_t o = 0; o < len[i]; o += 61)
                    assert_int_equal(b[i][o], (i + r) & 0xff);
                assert_int_equal(b[i][len[i] - 1], (i + r) & 0xff);
                free(b[i]);
            }
    }
    if (s == SC_OK && high > low + ((uintptr_t)8 << 20))
        assert_true(sc_prefault_bytes(p) > 0); /* it took part: the heap grew past its start */
    sc_prefault_stop(p);
    free(b);
    free(len);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_size),
        cmocka_unit_test(test_lone_growth),
        cmocka_unit_test(test_maps_ahead),
        cmocka_unit_test(test_churn),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
