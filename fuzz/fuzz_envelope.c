/* fuzz_envelope.c - libFuzzer target: envelope and outcome decoding, JSON rendering, subject checks. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts unless out holds one JSON value that jansson parses. */
static void
check_json(const struct sc_buf *out, const char *what)
{
    json_error_t err;
    json_t *j;

    if (!out->data)
        return;
    j = json_loadb(out->data, out->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (!j) {
        fprintf(stderr, "%s rendered invalid JSON (%s): %.*s\n", what, err.text, (int)out->len,
                out->data);
        abort();
    }
    json_decref(j);
}

/* Renders v (MessagePack) and checks the text parses; v came from a decode, so it must render. */
static void
render(const struct codec_str *v, unsigned depth, struct sc_buf *out, const char *what)
{
    sc_status s;

    if (!v->ptr)
        return;
    sc_buf_reset(out);
    s = codec_render_json(v->ptr, v->len, depth, out);
    if (s == SC_EPROTO) {
        fprintf(stderr, "%s: decoded value does not render\n", what);
        abort();
    }
    if (s == SC_OK)
        check_json(out, what);
}

/* Aborts when a view of env points outside both the input and nothing. */
static void
check_env(const struct codec_envelope *env, sc_status s)
{
    if (!env->reason || !env->why) {
        fprintf(stderr, "reason/why not set\n");
        abort();
    }
    if (s == SC_OK) {
        if (env->reason[0] || !env->task_id.ptr || !env->task.ptr || !env->error.ptr ||
            env->task_id.len == 0) {
            fprintf(stderr, "incomplete envelope on success\n");
            abort();
        }
        if (env->has_max_retries && (env->max_retries < 0 || env->max_retries > 100)) {
            fprintf(stderr, "max_retries out of range\n");
            abort();
        }
    } else if (!env->reason[0] || env->task.ptr) {
        fprintf(stderr, "refusal without reason, or with fields\n");
        abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct codec *wide, *narrow;
    static struct sc_buf out;
    struct codec_envelope env;
    struct codec_outcome oc;
    struct codec *codecs[2];
    size_t used;
    sc_status s;

    if (!wide) {
        struct codec_limits l;

        wide = codec_new(NULL);
        codec_limits_default(&l);
        l.max_depth = 4;
        l.max_error_len = 20;
        l.max_task_id_len = 8;
        l.max_metadata_keys = 3;
        l.max_metadata_bytes = 64;
        l.max_repos = 2;
        l.max_string_len = 16;
        l.max_envelope_bytes = 4096;
        narrow = codec_new(&l);
        sc_buf_init(&out, 1 << 20);
    }
    codecs[0] = wide;
    codecs[1] = narrow;

    for (int k = 0; k < 2; k++) {
        struct codec *c = codecs[k];
        unsigned depth = codec_limits_get(c)->max_depth;

        for (int as_json = 0; as_json < 2; as_json++) {
            s = codec_decode(c, data, size, as_json, &env);
            check_env(&env, s);
            if (s == SC_OK) {
                render(&env.task, depth, &out, "task");
                render(&env.metadata, depth, &out, "metadata");
                render(&env.repos, depth, &out, "repos");
                sc_buf_reset(&out);
                if (sc_json_quote(&out, env.error.ptr, env.error.len) == SC_OK)
                    check_json(&out, "error");
                if (env.retry_subject.ptr)
                    (void)codec_subject_valid(env.retry_subject.ptr, env.retry_subject.len, false);
            }
        }
        s = codec_decode_outcome(c, data, size, &oc);
        if (s != SC_OK || !oc.error.ptr) {
            fprintf(stderr, "outcome not filled\n");
            abort();
        }
    }

    /* The input itself as one MessagePack value. */
    if (codec_msgpack_check(data, size, 64, &used) == SC_OK) {
        sc_buf_reset(&out);
        s = codec_render_json(data, used, 64, &out);
        if (s == SC_EPROTO) {
            fprintf(stderr, "checked value does not render\n");
            abort();
        }
        if (s == SC_OK)
            check_json(&out, "input");
        /* Masked (secrets.mask_keys): renders whenever the plain rendering does, and parses. */
        if (s == SC_OK) {
            static const char *const pats[] = {"token", "pass*", "?"};
            static bool masking;
            if (!masking) {
                codec_mask_set(pats, 3);
                masking = true;
            }
            sc_buf_reset(&out);
            s = codec_render_json_masked(data, used, 64, &out);
            if (s == SC_EPROTO) {
                fprintf(stderr, "checked value does not render masked\n");
                abort();
            }
            if (s == SC_OK)
                check_json(&out, "masked input");
        }
    }
    /* The input as a subject and as a pattern. */
    if (codec_subject_valid((const char *)data, size, false) &&
        !codec_subject_match(">", (const char *)data, size)) {
        fprintf(stderr, "a valid subject does not match '>'\n");
        abort();
    }
    (void)codec_subject_valid((const char *)data, size, true);
    return 0;
}
