#include "base/yamldoc.h"

#include "base/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_FILE (4u << 20)

static void *arena_alloc(gw_ydoc *doc, size_t n)
{
    return gw_arena_alloc(&doc->arena, n);
}

static char *arena_str(gw_ydoc *doc, const char *s)
{
    return gw_arena_strdup(&doc->arena, s);
}

void gw_ydoc_free(gw_ydoc *doc)
{
    gw_arena_free(&doc->arena);
    free(doc->file);
    doc->root = NULL;
    doc->file = NULL;
}

/* The children of the open collections, innermost last: a collection's
 * lists go to the arena at their exact size when it ends. */
struct kid {
    char *key; /* MAP key (in the arena), NULL in a SEQ */
    int key_line;
    gw_ynode *node;
};
struct kids {
    struct kid *v;
    size_t n, cap;
};

static int push_kid(struct kids *k, char *key, int key_line, gw_ynode *node)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        struct kid *g = realloc(k->v, cap * sizeof(*g));
        if (!g)
            return GW_ENOMEM;
        k->v = g;
        k->cap = cap;
    }
    k->v[k->n++] = (struct kid){key, key_line, node};
    return GW_OK;
}

/* Moves the children from base on into the node's lists. */
static int close_node(gw_ydoc *doc, gw_ynode *n, struct kids *k, size_t base)
{
    size_t cnt = k->n - base;
    if (cnt) {
        /* n->n is set last: a node whose lists failed stays empty, not torn. */
        if (!(n->kids = arena_alloc(doc, cnt * sizeof(*n->kids))))
            return GW_ENOMEM;
        if (n->type == GW_Y_MAP) {
            n->keys = arena_alloc(doc, cnt * sizeof(*n->keys));
            n->key_lines = arena_alloc(doc, cnt * sizeof(*n->key_lines));
            if (!n->keys || !n->key_lines)
                return GW_ENOMEM;
        }
        n->n = cnt;
        for (size_t i = 0; i < cnt; i++) {
            n->kids[i] = k->v[base + i].node;
            if (n->keys) {
                n->keys[i] = k->v[base + i].key;
                n->key_lines[i] = k->v[base + i].key_line;
            }
        }
    }
    k->n = base;
    return GW_OK;
}

struct frame {
    gw_ynode *node;
    size_t base;       /* its first child in the kids stack */
    char *pending_key; /* MAP: key waiting for its value */
    int pending_line;
};

int gw_ydoc_parse(gw_ydoc *doc, const char *file, const char *text, size_t len, char *err,
                  size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t ev;
    struct frame st[MAX_DEPTH];
    struct kids kids = {0};
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
                for (size_t i = f->base; i < kids.n; i++) {
                    if (strcmp(kids.v[i].key, k) == 0) {
                        snprintf(err, errlen, "%s:%d: duplicate key '%s' (first at line %d)",
                                 doc->file, line, k, kids.v[i].key_line);
                        rc = GW_EMALFORMED;
                        break;
                    }
                }
                if (rc == GW_OK) {
                    f->pending_key = arena_str(doc, k);
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
            n = arena_alloc(doc, sizeof(*n));
            if (!n) {
                rc = GW_ENOMEM;
                break;
            }
            memset(n, 0, sizeof(*n));
            n->line = line;
            n->file = doc->file;
            if (ev.type == YAML_SCALAR_EVENT) {
                n->type = GW_Y_SCALAR;
                n->str = arena_str(doc, (const char *)ev.data.scalar.value);
                n->quoted = ev.data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                            ev.data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
                if (!n->str) {
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
                rc = push_kid(&kids, f->pending_key, f->pending_line, n);
                if (rc)
                    break;
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
                st[depth].base = kids.n;
                st[depth].pending_key = NULL;
                depth++;
            }
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                depth--;
                rc = close_node(doc, st[depth].node, &kids, st[depth].base);
            }
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc)
            break;
    }
    /* After an error the open collections are closed as far as they got, so
     * that the tree stays walkable (the caller only frees it). */
    while (depth > 0 && rc != GW_ENOMEM) {
        depth--;
        if (close_node(doc, st[depth].node, &kids, st[depth].base))
            break;
    }
    free(kids.v);
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
