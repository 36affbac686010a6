/* docw.h - one list of a task document's fields, written as JSON text (OpenSearch, the spill file) or as the KV store's MessagePack record. */
#ifndef DLQ_PERSIST_DOCW_H
#define DLQ_PERSIST_DOCW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "common.h"

#define PERSIST_DW_DEPTH 8 /* objects and arrays a document nests (the rendered views are not counted) */

/*
 * The writer. In MessagePack the record is what codec_json_msgpack() makes
 * of the JSON document, byte for byte: every object and array with a 32-bit
 * count (map32, array32), integers in their smallest form, the rendered
 * views (persist_dw_msgpack()) converted from their JSON text (the common
 * ones written straight, codec_msgpack_view(): the same bytes). Fields are
 * set by the persist_dw_init_*() calls; read st after the last call.
 */
struct persist_dw {
    struct sc_jw *jw;        /* JSON: the writer; NULL in MessagePack */
    struct sc_buf *mp;       /* MessagePack: where the record goes; NULL in JSON */
    struct codec *codec;     /* MessagePack: converts the rendered views (its buffers) */
    struct sc_buf *scratch;  /* MessagePack: the rendered views' text */
    sc_status st;            /* SC_OK, or the first write that failed */
    unsigned depth;
    size_t at[PERSIST_DW_DEPTH]; /* where each open container's count goes */
    uint32_t n[PERSIST_DW_DEPTH];
};

/*
 * persist_dw_init_json() writes through jw (borrowed). persist_dw_init_mp()
 * appends the record to out; codec (its thread) and scratch (any sc_buf) are
 * borrowed for the rendered views. Any thread that owns the arguments.
 */
void persist_dw_init_json(struct persist_dw *w, struct sc_jw *jw);
void persist_dw_init_mp(struct persist_dw *w, struct sc_buf *out, struct codec *codec,
                        struct sc_buf *scratch);

/*
 * The fields, each "k": value (k NULL inside an array): as sc_jw_open(),
 * sc_jw_close(), sc_jw_int(), sc_jw_uint(), sc_jw_bool(), sc_jw_null(),
 * sc_jw_time(); persist_dw_str() as persist_doc_str() (v NULL: null; with
 * its "k_raw" twin when the bytes are not valid UTF-8 text);
 * persist_dw_bytes() as persist_doc_bytes() (base64, NULL: null);
 * persist_dw_msgpack() as codec_jw_msgpack() (the MessagePack value at p
 * rendered as JSON with secrets masked, null when it cannot be).
 */
void persist_dw_open(struct persist_dw *w, const char *k, char open);
void persist_dw_close(struct persist_dw *w, char close);
void persist_dw_int(struct persist_dw *w, const char *k, int64_t v);
void persist_dw_uint(struct persist_dw *w, const char *k, uint64_t v);
void persist_dw_bool(struct persist_dw *w, const char *k, bool v);
void persist_dw_null(struct persist_dw *w, const char *k);
void persist_dw_time(struct persist_dw *w, const char *k, int64_t wall_ms);
void persist_dw_str(struct persist_dw *w, const char *k, const char *v, size_t len);
void persist_dw_bytes(struct persist_dw *w, const char *k, const void *p, size_t len);
void persist_dw_msgpack(struct persist_dw *w, const char *k, const void *p, size_t len,
                        unsigned max_depth);
/*
 * persist_dw_status() is SC_OK or the first error of any write (the JSON
 * writer's too): SC_ETOOBIG when the output passes its buffer's cap or a
 * rendered view cannot be converted (deeper than the codec allows), SC_ENOMEM.
 */
sc_status persist_dw_status(const struct persist_dw *w);

#endif
