/* load.c - config_load(): the layers on top of the defaults, in order: command line, file, environment, flags. */
#include "config-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads at most CONFIG_MAX_FILE_BYTES of path into a new buffer. */
static sc_status
read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
    sc_status s = SC_ENOTFOUND;
    FILE *f = NULL;
    char *buf = NULL;
    size_t n;

    *out = NULL;
    *outlen = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        config_errf(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    buf = sc_xmalloc(CONFIG_MAX_FILE_BYTES + 1);
    n = fread(buf, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        config_errf(err, errlen, "%s: read error", path);
        goto done;
    }
    if (n > CONFIG_MAX_FILE_BYTES) {
        config_errf(err, errlen, "%s: larger than %d bytes", path, CONFIG_MAX_FILE_BYTES);
        s = SC_EINVAL;
        goto done;
    }
    *out = buf;
    *outlen = n;
    buf = NULL;
    s = SC_OK;
done:
    free(buf);
    if (f != NULL)
        fclose(f);
    return s;
}

/*
 * Splits argv[*i] into a key flag: sets *k and the value (from "=VALUE" or
 * the next argument, advancing *i). Returns SC_OK or SC_EINVAL with err set.
 */
static sc_status
flag_split(int argc, char **argv, int *i, const struct config_key **k, const char **v,
           char *err, size_t errlen)
{
    const char *a = argv[*i] + 2, *eq = strchr(a, '=');
    size_t klen = eq != NULL ? (size_t)(eq - a) : strlen(a);
    char shown[300];

    *k = config_key_lookup(a, klen);
    if (*k == NULL) {
        config_show(shown, sizeof(shown), argv[*i], klen + 2);
        config_errf(err, errlen, "%s: unknown flag (see --help)", shown);
        return SC_EINVAL;
    }
    if (eq != NULL) {
        *v = eq + 1;
        return SC_OK;
    }
    if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0) {
        *v = argv[++*i];
        return SC_OK;
    }
    if ((*k)->info.type == CONFIG_TYPE_BOOL) {
        *v = "true";
        return SC_OK;
    }
    config_errf(err, errlen, "--%s: missing value", (*k)->info.path);
    return SC_EINVAL;
}

/* True for the non-key arguments pass 1 reads and pass 4 skips (--config's value aside). */
static bool
is_cli_word(const char *arg)
{
    return strncmp(arg, "--", 2) != 0 || strcmp(arg, "--print-config") == 0 ||
           strcmp(arg, "--version") == 0 || strcmp(arg, "--help") == 0 ||
           strncmp(arg, "--config=", 9) == 0;
}

/*
 * Pass 1: reads the command line's shape into *c (--help, --version,
 * --print-config, --config) and checks every key flag's name. Returns the
 * first error (SC_EINVAL, its message in err) but reads on, so that --help
 * still wins over a bad flag.
 */
static sc_status
read_cli(int argc, char **argv, struct config_cli *c, char *err, size_t errlen)
{
    sc_status first = SC_OK;
    const struct config_key *k;
    const char *v;
    char shown[300], tmp[CONFIG_ERR_MAX];
    int a;

    for (a = 1; a < argc; a++) {
        const char *arg = argv[a];
        sc_status fs = SC_OK;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            c->help = true;
        } else if (strcmp(arg, "--version") == 0) {
            c->version = true;
        } else if (strcmp(arg, "--print-config") == 0) {
            c->print_config = true;
        } else if (strcmp(arg, "--config") == 0) {
            if (a + 1 < argc) {
                c->config_file = argv[++a];
            } else {
                config_errf(tmp, sizeof(tmp), "--config: missing file name");
                fs = SC_EINVAL;
            }
        } else if (strncmp(arg, "--config=", 9) == 0) {
            c->config_file = arg + 9;
        } else if (strncmp(arg, "--", 2) == 0 && arg[2] != '\0') {
            fs = flag_split(argc, argv, &a, &k, &v, tmp, sizeof(tmp));
        } else {
            config_show(shown, sizeof(shown), arg, strlen(arg));
            config_errf(tmp, sizeof(tmp), "'%s': unexpected argument (see --help)", shown);
            fs = SC_EINVAL;
        }
        if (fs != SC_OK && first == SC_OK) {
            first = fs;
            config_errf(err, errlen, "%s", tmp);
        }
    }
    return first;
}

/* Pass 2: the file named by --config (file), else by DLQ_CONFIG (empty: none). */
static sc_status
apply_file(struct config *cfg, const char *file, char **envp, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len, i;
    sc_status s;

    for (i = 0; file == NULL && envp != NULL && envp[i] != NULL; i++) {
        if (strncmp(envp[i], "DLQ_CONFIG=", 11) == 0 && envp[i][11] != '\0')
            file = envp[i] + 11;
    }
    if (file == NULL)
        return SC_OK;
    if (file[0] == '\0') {
        config_errf(err, errlen, "--config: empty file name");
        return SC_EINVAL;
    }
    s = read_file(file, &text, &len, err, errlen);
    if (s == SC_OK)
        s = config_yaml_apply(cfg, file, text, len, err, errlen);
    free(text);
    return s;
}

/* Pass 3: every DLQ_* variable but DLQ_CONFIG must name a key. */
static sc_status
apply_env(struct config *cfg, char **envp, char *err, size_t errlen)
{
    char shown[300], tmp[CONFIG_ERR_MAX];
    size_t i;

    for (i = 0; envp != NULL && envp[i] != NULL; i++) {
        const char *e = envp[i], *eq = strchr(e, '=');
        const struct config_key *k;
        size_t nlen;
        if (strncmp(e, "DLQ_", 4) != 0 || eq == NULL)
            continue;
        nlen = (size_t)(eq - e);
        if (nlen == 10 && strncmp(e, "DLQ_CONFIG", 10) == 0)
            continue;
        k = config_key_for_env(e, nlen);
        if (k == NULL) {
            config_show(shown, sizeof(shown), e, nlen);
            config_errf(err, errlen, "%s: no such configuration key (environment)", shown);
            return SC_EINVAL;
        }
        if (config_key_set(cfg, k, eq + 1, strlen(eq + 1), tmp, sizeof(tmp)) != SC_OK) {
            config_show(shown, sizeof(shown), e, nlen);
            config_errf(err, errlen, "%s (from %s)", tmp, shown);
            return SC_EINVAL;
        }
    }
    return SC_OK;
}

/* Pass 4: the key flags, in order. */
static sc_status
apply_flags(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const struct config_key *k;
    const char *v;
    int a;

    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--config") == 0) {
            a++;
            continue;
        }
        if (is_cli_word(argv[a]))
            continue;
        if (flag_split(argc, argv, &a, &k, &v, err, errlen) != SC_OK)
            return SC_EINVAL;
        if (config_key_set(cfg, k, v, strlen(v), err, errlen) != SC_OK)
            return SC_EINVAL;
    }
    return SC_OK;
}

sc_status
config_load(struct config *cfg, int argc, char **argv, char **envp, struct config_cli *cli,
            char *err, size_t errlen)
{
    struct config_cli c = {0};
    sc_status s, first;

    if (cli != NULL)
        memset(cli, 0, sizeof(*cli));
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    first = read_cli(argc, argv, &c, err, errlen);
    if (c.help || c.version) {
        if (err != NULL && errlen > 0)
            err[0] = '\0';
        s = SC_OK;
        goto done;
    }
    if ((s = first) != SC_OK)
        goto done;
    if ((s = apply_file(cfg, c.config_file, envp, err, errlen)) != SC_OK)
        goto done;
    if ((s = apply_env(cfg, envp, err, errlen)) != SC_OK)
        goto done;
    s = apply_flags(cfg, argc, argv, err, errlen);
done:
    if (s == SC_OK && cli != NULL)
        *cli = c;
    return s;
}
