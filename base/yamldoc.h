#ifndef GW_YAMLDOC_H
#define GW_YAMLDOC_H
/* A YAML document as a small tree that remembers where each node came from, so
 * every config, profile and rule error can name the file, line and key.
 * Anchors and aliases are refused (config files have no use for them and they
 * make size unbounded); duplicate mapping keys are errors. */
#include "base/arena.h"

#include <stddef.h>

typedef enum { GW_Y_SCALAR, GW_Y_SEQ, GW_Y_MAP } gw_ytype;

typedef struct gw_ynode gw_ynode;
struct gw_ynode {
    gw_ytype type;
    int line;        /* 1-based line of the node in its file */
    char *str;       /* scalar text (GW_Y_SCALAR) */
    int quoted;      /* the scalar was quoted: never a number or bool */
    size_t n;        /* children (SEQ items, MAP pairs) */
    char **keys;     /* MAP keys */
    int *key_lines;  /* MAP key lines */
    gw_ynode **kids; /* SEQ items or MAP values */
    const char *file;
};

/* Every node, string and list of a document lives in its arena: a tree of
 * 10,000 devices is one list of large blocks, freed at once, rather than
 * 200,000 small allocations (half of them malloc's own overhead). */
typedef struct gw_ydoc {
    gw_ynode *root; /* NULL for an empty document */
    char *file;     /* owned copy of the name used in messages */
    gw_arena arena; /* the nodes' memory */
} gw_ydoc;

/* Parses text (len bytes) into *doc. On failure returns GW_EMALFORMED and
 * writes "FILE:LINE: message" into err. The caller frees doc with
 * gw_ydoc_free, also after a failure. */
int gw_ydoc_parse(gw_ydoc *doc, const char *file, const char *text, size_t len, char *err,
                  size_t errlen);
/* Reads and parses a file (at most 4 MiB). */
int gw_ydoc_load(gw_ydoc *doc, const char *path, char *err, size_t errlen);
void gw_ydoc_free(gw_ydoc *doc);

/* Looks a key up in a mapping node; NULL when absent or node is not a map. */
gw_ynode *gw_ymap_get(const gw_ynode *map, const char *key);

#endif
