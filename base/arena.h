#ifndef GW_ARENA_H
#define GW_ARENA_H
/* A bump allocator for data that is built once and freed all at once (a
 * parsed YAML document, a config's device text): large blocks instead of
 * many small mallocs, whose own overhead is as large as the data. Not thread
 * safe; nothing is freed before gw_arena_free. */
#include <stddef.h>

typedef struct gw_arena_block gw_arena_block;
typedef struct gw_arena {
    gw_arena_block *head;
} gw_arena;

/* n bytes aligned for a pointer or a double; NULL when out of memory. */
void *gw_arena_alloc(gw_arena *a, size_t n);
/* A copy of s; NULL when out of memory. */
char *gw_arena_strdup(gw_arena *a, const char *s);
/* Frees every block; the arena is empty and usable again. */
void gw_arena_free(gw_arena *a);

#endif
