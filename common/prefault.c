/* prefault.c - maps the heap's next pages on a thread of their own, ahead of the allocator's first touch. */
#include "prefault.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PREFAULT_BUSY_MS 1     /* the look's interval while the heap grows */
#define PREFAULT_IDLE_MS 64    /* the longest interval, reached by doubling while it does not */
#define PREFAULT_BURST_MS 250  /* the heap grows in a burst: twice within this */
#define PREFAULT_STEP (1u << 20) /* bytes a madvise call maps: stop waits for one at most */
#define PREFAULT_MIN (1u << 20)
#define PREFAULT_MAX (1u << 30)

struct sc_prefault {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* signalled by stop */
    bool stop;           /* set under mu; populate() reads it with __atomic between steps */
    uint64_t bytes;      /* use __atomic */
    uintptr_t start_end; /* the heap's end at the start: the thread maps what grows past it */
};

static uintptr_t
page_down(uintptr_t a)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);

    return a & ~(page - 1);
}

/* The heap's end as the allocator left it (sbrk(0) only reads it). */
static uintptr_t
heap_end(void)
{
    void *e = sbrk(0);

    return e == (void *)-1 ? 0 : page_down((uintptr_t)e);
}

/*
 * Maps [from, to) in steps; returns where it got to. A step that fails
 * (the allocator gave the top back to the kernel meanwhile: ENOMEM) ends
 * the pass: the next look starts again from the heap's new end.
 */
static uintptr_t
populate(struct sc_prefault *p, uintptr_t from, uintptr_t to)
{
    while (from < to) {
        size_t n = to - from < PREFAULT_STEP ? to - from : PREFAULT_STEP;

        if (madvise((void *)from, n, MADV_POPULATE_WRITE) != 0)
            break;
        __atomic_add_fetch(&p->bytes, n, __ATOMIC_RELAXED);
        from += n;
        if (__atomic_load_n(&p->stop, __ATOMIC_RELAXED))
            break;
    }
    return from;
}

/*
 * The thread: maps [done, the heap's end) while the heap grows in a burst
 * (its end moved twice within PREFAULT_BURST_MS: ingest at full speed moves
 * it every few tens of milliseconds). A lone growth (an idle daemon's
 * occasional allocation) maps nothing, so the pad is not made resident for
 * nothing: the memory of a quiet daemon stays where its use puts it.
 */
static void *
prefault_main(void *arg)
{
    struct sc_prefault *p = arg;
    uintptr_t done = p->start_end, seen = p->start_end;
    int64_t wait_ms = PREFAULT_BUSY_MS, grew_ms = INT64_MIN / 2, burst_until = INT64_MIN / 2;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec until;
        uintptr_t end;
        bool burst;

        pthread_mutex_unlock(&p->mu);
        end = heap_end();
        if (end > seen) { /* a growth: a second one within the window makes (or extends) a burst */
            int64_t t = sc_now_mono_ms();
            if (t - grew_ms <= PREFAULT_BURST_MS)
                burst_until = t + PREFAULT_BURST_MS;
            grew_ms = t;
        }
        seen = end;
        burst = sc_now_mono_ms() <= burst_until;
        if (end < done)
            done = end; /* given back (trimmed) */
        if (burst && end > done)
            done = populate(p, done, end);
        if (burst && done == end) {
            wait_ms = PREFAULT_BUSY_MS; /* keep up while it grows */
        } else {
            /* no burst, or a step refused: look again less often */
            wait_ms = wait_ms * 2 > PREFAULT_IDLE_MS ? PREFAULT_IDLE_MS : wait_ms * 2;
        }
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)(wait_ms * 1000000);
        until.tv_sec += until.tv_nsec / 1000000000;
        until.tv_nsec %= 1000000000;
        pthread_mutex_lock(&p->mu);
        while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sc_status
sc_prefault_start(size_t ahead_bytes, struct sc_prefault **out)
{
    struct sc_prefault *p;
    pthread_condattr_t ca;

    *out = NULL;
    if (ahead_bytes < PREFAULT_MIN || ahead_bytes > PREFAULT_MAX)
        return SC_EINVAL;
    /* A length of 0 at an aligned address: 0 where the advice exists, EINVAL where it does not. */
    if (madvise((void *)heap_end(), 0, MADV_POPULATE_WRITE) != 0)
        return SC_EUNAVAIL;
    if (!(p = calloc(1, sizeof(*p))))
        return SC_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    mallopt(M_TOP_PAD, (int)ahead_bytes);
    p->start_end = heap_end(); /* not the thread's first look: the heap may grow before it runs */
    if (pthread_create(&p->thread, NULL, prefault_main, p) != 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return SC_EIO;
    }
    *out = p;
    return SC_OK;
}

void
sc_prefault_stop(struct sc_prefault *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, true, __ATOMIC_RELAXED);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

uint64_t
sc_prefault_bytes(const struct sc_prefault *p)
{
    return p ? __atomic_load_n(&p->bytes, __ATOMIC_RELAXED) : 0;
}
