/* console.h - the web console's files (sidecar/console/), built into the binary, and their headers. */
#ifndef SC_CONSOLE_H
#define SC_CONSOLE_H

#include <stddef.h>

/* One embedded file: its bytes live as long as the program. */
struct sc_console_asset {
    const char *path;  /* the URL path: "/" or "/console/<file>" */
    const char *ctype; /* its Content-Type */
    const char *data;
    size_t len;
    const char *etag;  /* a strong ETag, quotes included ("\"<16 hex>\"") */
};

/*
 * sc_console_find() returns the asset served at the len bytes of path (the
 * request target without its query), or NULL when there is none (a 404).
 * Any thread (the ETags are computed on the first call, so make that one
 * from the loop thread, which http.c does).
 */
const struct sc_console_asset *sc_console_find(const char *path, size_t len);

/*
 * The headers every console asset goes out with, each ending in "\r\n":
 * a Content-Security-Policy that allows scripts, styles and fetch() from
 * this origin only (no inline script or style, no framing, no forms
 * elsewhere), nosniff, no referrer, no framing.
 */
extern const char sc_console_headers[];

#endif
