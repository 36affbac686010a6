/* fuzz_config.c - libFuzzer target of the config loader: any bytes as YAML, then the print round trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Prints cfg into a new string; NULL when the stream cannot be opened. */
static char *
print_to_string(const struct config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL)
        return NULL;
    config_print(cfg, f);
    fclose(f);
    return buf;
}

/*
 * Loads data as a config file. Whatever loads must print as YAML that loads
 * again and prints the same (secrets are masked the first time, so the second
 * print is compared with the first).
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config a, b;
    char err[512], *p1 = NULL, *p2 = NULL;

    config_init(&a);
    config_init(&b);
    if (config_load_yaml(&a, (const char *)data, size, err, sizeof(err)) != SC_OK) {
        if (memchr(err, '\n', strnlen(err, sizeof(err))) != NULL)
            abort(); /* messages are one line */
        goto done;
    }
    p1 = print_to_string(&a);
    if (p1 == NULL)
        goto done;
    if (config_load_yaml(&b, p1, strlen(p1), err, sizeof(err)) != SC_OK) {
        fprintf(stderr, "printed config does not load: %s\n%s", err, p1);
        abort();
    }
    p2 = print_to_string(&b);
    if (p2 != NULL && strcmp(p1, p2) != 0) {
        fprintf(stderr, "print round trip differs:\n%s---\n%s", p1, p2);
        abort();
    }
done:
    free(p1);
    free(p2);
    config_destroy(&a);
    config_destroy(&b);
    return 0;
}
