/* prefault.h - maps the heap's next pages on a thread of their own, ahead of the allocator's first touch. */
#ifndef DLQ_PREFAULT_H
#define DLQ_PREFAULT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/*
 * Why: every new task lives in fresh heap, and the first write to each 4 KiB
 * page is a page fault in which the kernel clears the page. With 1,000,000
 * tasks stored that was 31% of the loop thread's time (perf, README
 * "Benchmarks"). The prefaulter moves that work to a thread of its own, on
 * the other core:
 *
 *  - sc_prefault_start() asks glibc's malloc to grow the main heap (the
 *    loop thread's: it is the process's first thread) by ahead_bytes more
 *    than each request (M_TOP_PAD), so that the heap's end runs ahead of
 *    what is in use;
 *  - the thread watches the end of the heap (sbrk(0)) and has the kernel
 *    map every page below it writable (madvise MADV_POPULATE_WRITE), which
 *    clears the page but never changes what a page holds: the allocator may
 *    be using the same pages at that moment;
 *  - it maps only while the heap grows in a burst (its end moved twice
 *    within 250 ms, as at full-speed ingest): a lone growth, an idle
 *    daemon's occasional allocation, leaves the pad unmapped, so resident
 *    memory does not jump by the pad for nothing;
 *  - it looks every millisecond during a burst and backs off to 64 ms
 *    otherwise, or when the kernel refuses a step (the next look starts
 *    again where it stopped).
 *
 * What it costs: at most ahead_bytes of resident memory that no task uses
 * yet, after a burst, and malloc's dynamic mmap threshold is fixed at its default (128 KiB:
 * setting M_TOP_PAD turns the adjustment off), so larger blocks always come
 * from mmap and go back to the kernel when freed. Where the heap is not
 * grown with brk (a sanitizer's allocator, or after brk failed) the thread
 * finds nothing to do.
 */

struct sc_prefault;

/*
 * sc_prefault_start() sets the heap's pad to ahead_bytes (1 MiB to 1 GiB)
 * and starts the thread; *out is the caller's until sc_prefault_stop().
 * Returns SC_EINVAL for a size out of range, SC_EUNAVAIL when the kernel
 * has no MADV_POPULATE_WRITE (before Linux 5.14: nothing is started and
 * malloc is left as it was), SC_ENOMEM or SC_EIO (thread creation) for
 * the rest. Call it once, from the main thread, before other threads
 * allocate much.
 */
sc_status sc_prefault_start(size_t ahead_bytes, struct sc_prefault **out);

/*
 * sc_prefault_stop() stops and joins the thread and frees p (NULL: nothing).
 * The pad stays as it is. Returns within one of the thread's madvise calls.
 * The thread that started it.
 */
void sc_prefault_stop(struct sc_prefault *p);

/*
 * sc_prefault_bytes() returns how many bytes of heap the thread has mapped
 * so far (pages the allocator had touched first count too). Any thread.
 */
uint64_t sc_prefault_bytes(const struct sc_prefault *p);

#endif
