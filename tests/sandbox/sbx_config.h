/*
 * The table of runtime knobs shared by the command line and
 * POST /_sandbox/config: names, types, bounds, parsing and JSON output.
 */
#ifndef SBX_CONFIG_H
#define SBX_CONFIG_H

#include <stddef.h>

#include <json-c/json.h>

#include "sbx_state.h"

/* Sets key from a JSON value; 0, or -1 with a reason in err. */
int config_set_json(struct sbx_config *, const char *, json_object *, char *,
    size_t);
/* Sets key from command-line text ("on"/"off" for booleans). */
int
config_set_str(struct sbx_config *, const char *, const char *, char *, size_t);
/* The whole configuration as a new JSON object owned by the caller. */
json_object *config_json(const struct sbx_config *);

#endif
