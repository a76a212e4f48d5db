#include "base/yamldoc.h"

#include "base/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_FILE (4u << 20)

static void node_free(gw_ynode *n)
{
    if (!n)
        return;
    free(n->str);
    for (size_t i = 0; i < n->n; i++) {
        if (n->keys)
            free(n->keys[i]);
        node_free(n->kids[i]);
    }
    free(n->keys);
    free(n->key_lines);
    free(n->kids);
    free(n);
}

void gw_ydoc_free(gw_ydoc *doc)
{
    node_free(doc->root);
    free(doc->file);
    doc->root = NULL;
    doc->file = NULL;
}

static int push_child(gw_ynode *p, char *key, int key_line, gw_ynode *kid)
{
    gw_ynode **kids = realloc(p->kids, (p->n + 1) * sizeof(*kids));
    if (!kids)
        return GW_ENOMEM;
    p->kids = kids;
    if (p->type == GW_Y_MAP) {
        char **keys = realloc(p->keys, (p->n + 1) * sizeof(*keys));
        if (!keys)
            return GW_ENOMEM;
        p->keys = keys;
        int *kl = realloc(p->key_lines, (p->n + 1) * sizeof(*kl));
        if (!kl)
            return GW_ENOMEM;
        p->key_lines = kl;
        p->keys[p->n] = key;
        p->key_lines[p->n] = key_line;
    }
    p->kids[p->n++] = kid;
    return GW_OK;
}

struct frame {
    gw_ynode *node;
    char *pending_key; /* MAP: key waiting for its value */
    int pending_line;
};

int gw_ydoc_parse(gw_ydoc *doc, const char *file, const char *text, size_t len, char *err,
                  size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct frame st[MAX_DEPTH];
    int depth = 0, rc = GW_OK, done = 0;

    memset(doc, 0, sizeof(*doc));
    doc->file = strdup(file ? file : "<input>");
    if (!doc->file)
        return GW_ENOMEM;
    if (!yaml_parser_initialize(&p)) {
        snprintf(err, errlen, "%s: cannot initialise the YAML parser", doc->file);
        return GW_ENOMEM;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);

    while (!done) {
        if (!yaml_parser_parse(&p, &ev)) {
            snprintf(err, errlen, "%s:%zu: %s", doc->file, p.problem_mark.line + 1,
                     p.problem ? p.problem : "YAML syntax error");
            rc = GW_EMALFORMED;
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        gw_ynode *n = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (doc->root) {
                snprintf(err, errlen, "%s:%d: only one YAML document is allowed", doc->file, line);
                rc = GW_EMALFORMED;
            }
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "%s:%d: YAML aliases are not supported", doc->file, line);
            rc = GW_EMALFORMED;
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            if (ev.type == YAML_SCALAR_EVENT && depth > 0 && st[depth - 1].node->type == GW_Y_MAP &&
                !st[depth - 1].pending_key) {
                /* A mapping key. */
                struct frame *f = &st[depth - 1];
                const char *k = (const char *)ev.data.scalar.value;
                for (size_t i = 0; i < f->node->n; i++) {
                    if (strcmp(f->node->keys[i], k) == 0) {
                        snprintf(err, errlen, "%s:%d: duplicate key '%s' (first at line %d)",
                                 doc->file, line, k, f->node->key_lines[i]);
                        rc = GW_EMALFORMED;
                        break;
                    }
                }
                if (rc == GW_OK) {
                    f->pending_key = strdup(k);
                    f->pending_line = line;
                    if (!f->pending_key)
                        rc = GW_ENOMEM;
                }
                break;
            }
            if (depth > 0 && st[depth - 1].node->type == GW_Y_MAP && !st[depth - 1].pending_key) {
                /* A list or mapping used as a key: refused, keys stay strings. */
                snprintf(err, errlen, "%s:%d: mapping keys must be plain scalars", doc->file, line);
                rc = GW_EMALFORMED;
                break;
            }
            n = calloc(1, sizeof(*n));
            if (!n) {
                rc = GW_ENOMEM;
                break;
            }
            n->line = line;
            n->file = doc->file;
            if (ev.type == YAML_SCALAR_EVENT) {
                n->type = GW_Y_SCALAR;
                n->str = strdup((const char *)ev.data.scalar.value);
                n->quoted = ev.data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                            ev.data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
                if (!n->str) {
                    free(n);
                    rc = GW_ENOMEM;
                    break;
                }
            } else {
                n->type = ev.type == YAML_SEQUENCE_START_EVENT ? GW_Y_SEQ : GW_Y_MAP;
            }
            if (depth == 0) {
                doc->root = n;
            } else {
                struct frame *f = &st[depth - 1];
                rc = push_child(f->node, f->pending_key, f->pending_line, n);
                if (rc) {
                    node_free(n);
                    break;
                }
                f->pending_key = NULL;
            }
            if (n->type != GW_Y_SCALAR) {
                if (depth == MAX_DEPTH) {
                    snprintf(err, errlen, "%s:%d: nesting deeper than %d", doc->file, line,
                             MAX_DEPTH);
                    rc = GW_EMALFORMED;
                    break;
                }
                st[depth].node = n;
                st[depth].pending_key = NULL;
                depth++;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0)
                depth--;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc)
            break;
    }
    for (int i = 0; i < depth; i++)
        free(st[i].pending_key);
    yaml_parser_delete(&p);
    return rc;
}

int gw_ydoc_load(gw_ydoc *doc, const char *path, char *err, size_t errlen)
{
    memset(doc, 0, sizeof(*doc));
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return GW_ENOTFOUND;
    }
    char *buf = malloc(MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return GW_ENOMEM;
    }
    size_t len = fread(buf, 1, MAX_FILE + 1, f);
    int rd_err = ferror(f);
    fclose(f);
    if (rd_err || len > MAX_FILE) {
        snprintf(err, errlen, "%s: %s", path, rd_err ? "read error" : "file larger than 4 MiB");
        free(buf);
        return GW_EINVAL;
    }
    buf[len] = '\0';
    int rc = gw_ydoc_parse(doc, path, buf, len, err, errlen);
    free(buf);
    return rc;
}

gw_ynode *gw_ymap_get(const gw_ynode *map, const char *key)
{
    if (!map || map->type != GW_Y_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->kids[i];
    return NULL;
}
