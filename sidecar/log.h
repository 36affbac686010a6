/* log.h - the sidecar's leveled log lines (logfmt or JSON on stderr) and per-kind rate limits. */
#ifndef DLQ_SIDECAR_LOG_H
#define DLQ_SIDECAR_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

typedef enum { SC_LOG_DEBUG = 0, SC_LOG_INFO, SC_LOG_WARN, SC_LOG_ERROR } sc_log_level;

/*
 * sc_log_setup() sets the lowest level written and the format; call it
 * once, before other threads log. sc_log_enabled() tells whether a line of
 * level would be written. Any thread.
 */
void sc_log_setup(config_log_level level, config_log_format format);
bool sc_log_enabled(sc_log_level level);
/*
 * sc_log() writes one line per call to stderr: time, level, msg, then the
 * NULL-terminated name/value string pairs (values that look like URLs with
 * credentials are redacted). Any thread: one write(2) per line, except on
 * the thread that holds lines (below).
 */
void sc_log(sc_log_level level, const char *msg, ...);
/*
 * sc_log_hold() makes the calling thread's debug and info lines wait in a
 * buffer (at most SC_LOG_HELD_BYTES, then written) until sc_log_flush(),
 * which writes them in one write(2) and ends the hold. A warn or error line
 * writes the held ones first, then itself, at once: order is kept. One
 * thread at a time may hold: the loop thread, around one batch of messages
 * (sidecar/conn.c), so that a burst of per-task lines costs one system call
 * per batch instead of one per line. A crash loses at most the lines of the
 * batch that was running (never a failure: lines are not the record).
 */
#define SC_LOG_HELD_BYTES (32 * 1024)
void sc_log_hold(void);
void sc_log_flush(void);
/* sc_log_int() formats v into a per-thread buffer slot for sc_log() (up to 8 per line). */
const char *sc_log_int(int64_t v);

/* A rate limit for one kind of log line, embedded in its owner and zeroed to start. */
struct sc_lograte {
    int64_t last_mono;
    uint64_t suppressed;
    bool used;
};

/*
 * sc_lograte_take() returns true when a line of the kind r limits may be
 * written now (the first call, then at most one per interval_ms of
 * now_mono) and sets *suppressed to the calls refused since the last line
 * (then reset to 0); false counts this call as suppressed. Loop thread (not
 * locked).
 */
bool sc_lograte_take(struct sc_lograte *r, int64_t now_mono, int64_t interval_ms,
                     uint64_t *suppressed);

#endif
