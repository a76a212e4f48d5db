#ifndef GW_SALVAGE_H
#define GW_SALVAGE_H
/* Page-level salvage of a corrupt outbox file, read with the SQLite file
 * format (https://www.sqlite.org/fileformat2.html) rather than through SQLite,
 * for when a lane's b-tree cannot be walked (its root or an interior page is
 * bad). Every table-leaf page of the file is parsed with bounds checks on each
 * varint, cell, record header and overflow chain; cells that look like outbox
 * rows are handed to the caller with their original id.
 *
 * Which lane a row belongs to: a leaf reached from a lane's root (found in
 * sqlite_schema) belongs to that lane. Both lanes have the same columns, so a
 * leaf no root reaches is placed by its kind: readings (kind 0) go to
 * telemetry, anything else to priority. Events and alarms are never filed as
 * telemetry, whatever the tree says, so a bad page can at worst promote a
 * reading. Pages on the freelist are skipped: they hold rows already
 * acknowledged. The whole file is untrusted input; pure code, no I/O of its
 * own, no clock, no logging. */
#include <stddef.h>
#include <stdint.h>

#define GW_SALVAGE_MAX_PAYLOAD (1 << 20) /* larger rows are counted bad */
#define GW_SALVAGE_MAX_PAGES (1u << 24)  /* pages beyond this are not read */

typedef struct gw_salvage_row {
    int lane;      /* GW_LANE_PRIO or GW_LANE_TELE */
    int from_tree; /* 1: its leaf was reached from the lane's root */
    int64_t id, seq;
    int kind;
    const uint8_t *payload; /* valid during the callback only */
    size_t len;
} gw_salvage_row;

typedef struct gw_salvage_io {
    uint64_t size; /* bytes in the file */
    /* Reads n bytes at off; returns 0 when all n were read. */
    int (*read)(void *ctx, uint64_t off, void *buf, size_t n);
    /* Takes one recovered row; a non-zero return stops the scan. */
    int (*row)(void *ctx, const gw_salvage_row *r);
    int (*expired)(void *ctx); /* polled between pages; NULL: never */
    void *ctx;
} gw_salvage_io;

typedef struct gw_salvage_stats {
    uint32_t page_size;
    int header_ok;       /* 0: the header was unreadable, 4096-byte pages assumed */
    int roots_found;     /* lanes whose root page sqlite_schema named */
    uint64_t pages;      /* pages considered */
    uint64_t leaves;     /* table-leaf pages parsed */
    uint64_t free_pages; /* freelist pages skipped */
    uint64_t rows;       /* outbox rows handed to the caller */
    uint64_t bad_cells;  /* cells failing a bounds or shape check on a lane's leaf or an orphan */
    int stopped;         /* 1: the scan ended early (expired or the caller stopped it) */
} gw_salvage_stats;

/* Scans the file described by io. Returns GW_OK (see st for what was found),
 * GW_ENOMEM, or GW_EMALFORMED when the file is too small to hold a page. */
int gw_salvage_pages(const gw_salvage_io *io, gw_salvage_stats *st);

#endif
