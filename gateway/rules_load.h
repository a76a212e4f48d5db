#ifndef GW_RULES_LOAD_H
#define GW_RULES_LOAD_H
/* Reads a rule file (YAML, format in rules/examples/README.md) into engine
 * definitions. Every error names the file, the line and the full key path,
 * e.g. "rules.yaml:14: key 'rules[1].levels.yellow.clear' (12) must be <= raise
 * (10) for direction above". */
#include "base/yamldoc.h"
#include "rules/rules.h"

#include <stddef.h>

/* Parses len bytes of YAML text; `file` is the name used in messages. On
 * success *defs is a malloc'd array of *n definitions (the caller frees it
 * with free(); it may be NULL when *n is 0). On failure returns GW_EINVAL or
 * GW_EMALFORMED (or GW_ENOMEM) with the message in err, and *defs is NULL. */
int gw_rules_load_text(const char *file, const char *text, size_t len, gw_rule **defs, size_t *n,
                       char *err, size_t errlen);
/* The same for a `rules:` list node of an already parsed document (the
 * gateway config's inline rules). */
int gw_rules_load_list(const gw_ynode *list, gw_rule **defs, size_t *n, char *err, size_t errlen);
/* The same for a file on disk. */
int gw_rules_load_file(const char *path, gw_rule **defs, size_t *n, char *err, size_t errlen);

#endif
