/* config-internal.h - the key table's row layout and setters (config.c), used by yaml.c and load.c above it. */
#ifndef DLQ_CONFIG_INTERNAL_H
#define DLQ_CONFIG_INTERNAL_H

#include "config.h"

#define CONFIG_MAX_DEPTH 16     /* deepest YAML nesting the file may use */
#define CONFIG_MAX_LIST 1000    /* entries of a list key */
#define CONFIG_MAX_RULES 1000   /* entries of classifier.rules */
#define CONFIG_MAX_STRING 4096  /* bytes of any one string value */
#define CONFIG_MAX_PATH 128     /* bytes of a key path; longer paths are unknown keys */
#define CONFIG_MAX_KEYS 192     /* rows the table may have (checked at compile time) */
#define CONFIG_ERR_MAX 512      /* a message config.c formats before yaml.c prefixes a location */

/* How an integer key is stored in struct config. */
enum config_width { CONFIG_W_NONE = 0, CONFIG_W_I64, CONFIG_W_INT, CONFIG_W_SIZE, CONFIG_W_UINT };

/* Which enum type an enum key is stored as. */
enum config_enum_kind {
    CONFIG_E_NONE = 0,
    CONFIG_E_STRATEGY,
    CONFIG_E_RETRY_AUTO, /* policy_retry plus a has_ flag: "auto"/"" clears it */
    CONFIG_E_OUTCOME,
    CONFIG_E_STORE,
    CONFIG_E_STORE_ACK,
    CONFIG_E_INGEST_MODE,
    CONFIG_E_STORAGE,
    CONFIG_E_LEVEL,
    CONFIG_E_FORMAT,
};

/* A string validator: true when the len bytes at s are acceptable. */
typedef bool (*config_check_fn)(const char *s, size_t len);

/* One row of the key table (config.c). */
struct config_key {
    struct config_key_info info;
    size_t off;                  /* the field in struct config */
    size_t aux;                  /* LIST: the count field; E_RETRY_AUTO: the has_ flag */
    enum config_width width;     /* INT keys */
    enum config_enum_kind ekind; /* ENUM keys */
    config_check_fn check;       /* STRING/SECRET values and LIST entries; NULL: any */
    const char *what;            /* what check wants, for "is not <what>" */
    const char *def;             /* default as text; NULL: set by codec/policy defaults */
};

/*
 * config_key_lookup() returns the row for the len bytes at path, or NULL.
 * config_key_is_section() tells whether those bytes are a proper prefix of
 * some key's path ending at a '.' ("nats", "store.opensearch").
 * config_key_index() is the row's position in the table (< CONFIG_MAX_KEYS).
 */
const struct config_key *config_key_lookup(const char *path, size_t len);
bool config_key_is_section(const char *path, size_t len);
size_t config_key_index(const struct config_key *k);

/*
 * config_key_for_env() returns the row whose environment name
 * (config_env_name()) is the nlen bytes at name ("DLQ_NATS_URL"), or NULL.
 */
const struct config_key *config_key_for_env(const char *name, size_t nlen);

/*
 * config_key_set() validates len bytes at v (need not be NUL-terminated) as
 * the text form of key k and stores it in cfg. LIST keys take comma-separated
 * text here; RULES keys are refused (file only). Returns SC_OK or SC_EINVAL
 * with a one-line message in err ("<key>: <value> is out of range 1-1000").
 */
sc_status config_key_set(struct config *cfg, const struct config_key *k, const char *v,
                         size_t len, char *err, size_t errlen);

/*
 * config_list_check() validates one entry (len bytes at v) of LIST key k,
 * given the entries before it (prev[0..nprev), NUL-terminated: an
 * http.auth.users name may appear once); SC_OK or SC_EINVAL with err set
 * (naming the key). config_list_replace() frees k's current
 * list in cfg and takes ownership of items (n strings plus a NULL slot,
 * allocated with malloc).
 */
sc_status config_list_check(const struct config_key *k, const char *v, size_t len,
                            char *const *prev, size_t nprev, char *err, size_t errlen);
void config_list_replace(struct config *cfg, const struct config_key *k, char **items, size_t n);

/*
 * config_rules_replace() frees cfg's rules and takes ownership of rules (n
 * entries, malloc'ed, strings malloc'ed; NULL when n is 0).
 */
void config_rules_replace(struct config *cfg, struct config_rule *rules, size_t n);

/*
 * config_templates_replace() frees cfg's templates and takes ownership of
 * tpls (n entries, malloc'ed, strings malloc'ed; NULL when n is 0).
 */
void config_templates_replace(struct config *cfg, struct config_template *tpls, size_t n);

/*
 * config_template_name_ok() is true when len bytes at s are 1-64 characters
 * of A-Z a-z 0-9 _ . - (a template's name).
 */
bool config_template_name_ok(const char *s, size_t len);

/*
 * config_text_ok() is true when len bytes at s are valid UTF-8 with no NUL,
 * C0 control character or DEL (what every string value must be).
 */
bool config_text_ok(const char *s, size_t len);

/*
 * config_show() writes len bytes at v into out as a short printable excerpt
 * for messages, with passwords inside URLs masked (config_redact()).
 */
void config_show(char *out, size_t outlen, const char *v, size_t len);

/* config_errf() formats a message into err (errlen bytes; err may be NULL). */
void config_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * config_join_names() writes the NULL-terminated names as "a, b, c" into out
 * (outlen > 0 bytes, NUL-terminated, cut short when it does not fit), for
 * "is not one of ..." messages.
 */
void config_join_names(char *out, size_t outlen, const char *const *names);

/*
 * Calls go one way: load.c -> yaml.c -> config.c. config.c defines
 * everything above; yaml.c defines config_yaml_apply().
 *
 * config_yaml_apply() is config_load_yaml() with an origin for messages:
 * "<origin>:<line>: ..." (origin NULL: "line <n>: ...").
 */
sc_status config_yaml_apply(struct config *cfg, const char *origin, const char *text, size_t len,
                            char *err, size_t errlen);

#endif
