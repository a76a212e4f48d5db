#include "base/arena.h"

#include <stdlib.h>
#include <string.h>

/* Above glibc's mmap threshold (128 KiB until the process frees a larger
 * mapped block, so at start-up): the parsed YAML of a 10,000-device config is
 * mapped and goes back to the kernel when freed, instead of leaving holes in
 * the heap between the devices built meanwhile. Blocks are touched only as
 * they fill. */
#define BLOCK 262144

struct gw_arena_block {
    gw_arena_block *next;
    size_t used, cap;
    unsigned char mem[]; /* after three words: aligned for pointers and doubles */
};

void *gw_arena_alloc(gw_arena *a, size_t n)
{
    gw_arena_block *b = a->head;
    n = (n + 7) & ~(size_t)7;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BLOCK ? n : BLOCK;
        if (!(b = malloc(sizeof(*b) + cap)))
            return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = b->mem + b->used;
    b->used += n;
    return p;
}

char *gw_arena_strdup(gw_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = gw_arena_alloc(a, n);
    return p ? memcpy(p, s, n) : NULL;
}

void gw_arena_free(gw_arena *a)
{
    while (a->head) {
        gw_arena_block *b = a->head;
        a->head = b->next;
        free(b);
    }
}
