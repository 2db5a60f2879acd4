/*
 * tools/ctl/ctl.h - what the files of foundation-ctl share: a command line's
 * arguments (struct args), the command table's entry, the helpers every
 * command uses (common.c) and the commands, one file per family:
 * segment.c (create, destroy), registry.c (register, unregister, get,
 * query, update, merge, wait), watch.c, flags.c (flags, stage),
 * telemetry.c (sampler, emit), reaper.c.  foundation-ctl.c holds the
 * command table, the usage, the option parsing and main.
 */
#ifndef FDN_TOOLS_CTL_H
#define FDN_TOOLS_CTL_H

#include "cli.h"

#include <foundation/attrs.h>
#include <foundation/changes.h>
#include <foundation/flags.h>
#include <foundation/introspect.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/segment.h>
#include <foundation/telemetry.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_ATTRS 32
#define MAX_WHERE 16

/* Everything a command line can say; each command reads what it allows. */
struct args {
	const char *segment;
	const char *key;
	struct fdn_segment_opts opts;
	pid_t pid;
	bool replace, gone, unique;
	int64_t timeout_ms;
	size_t nattrs;
	const char *attr_text[MAX_ATTRS];
	const char *reason; /* stage rollback --reason */
	int nwords;         /* the words after the command (flags, stage) */
	const char *words[4];
	size_t nmeasures; /* emit --measure */
	const char *measure_text[FDN_MEASUREMENTS_MAX];
	uint64_t count; /* emit --count */
	bool json;      /* --json */
	bool clear;     /* update --clear */
	size_t nwhere;  /* query --where */
	const char *where_text[MAX_WHERE];
	const char *prefix; /* watch --prefix */
	bool from_set;      /* watch --from */
	uint64_t from;
	bool count_set; /* --count given */
};

struct command {
	const char *name;
	const char *allowed; /* option letters it takes (see all_opts) */
	bool takes_key;
	int (*run)(struct args *a);
	const char *synopsis;
	const char *help;
};

/* ---- common.c ------------------------------------------------------------------------- */

/* Attach to a->segment (1 and one line on stderr if not). */
int attach(const struct args *a, fdn_segment **s);
/* Attach for a registry command: fails while use_shm_registry is off. */
int attach_registry(const struct args *a, fdn_segment **s);
/* Detach; a failure turns status EXIT_OK into EXIT_FAIL. */
int detach(const struct args *a, fdn_segment *s, int status);

/* A command's --attr texts, typed. */
struct attrset {
	struct fdn_attr v[MAX_ATTRS];
	const char *items[MAX_ATTRS][FDN_ATTR_LIST_MAX];
	char *text[MAX_ATTRS]; /* parsed copies: attr_parse cuts them up */
	size_t n;
};
void attrs_free(struct attrset *set);
/* The --attr texts of command cmd, typed (cli.h); bad text is bad usage. */
int attrs_parse(const char *cmd, const struct args *a, struct attrset *set);

/* {"segment":NAME,  -- the start of every JSON object printed */
void json_head(const struct args *a);

/* ---- the commands --------------------------------------------------------------------- */

/* segment.c */
int cmd_create(struct args *a);
int cmd_destroy(struct args *a);
/* registry.c */
int cmd_register(struct args *a);
int cmd_unregister(struct args *a);
int cmd_get(struct args *a);
int cmd_query(struct args *a);
int cmd_update(struct args *a);
int cmd_merge(struct args *a);
int cmd_wait(struct args *a);
/* watch.c */
int cmd_watch(struct args *a);
/* flags.c */
int cmd_flags(struct args *a);
int cmd_stage(struct args *a);
/* telemetry.c */
int cmd_sampler(struct args *a);
int cmd_emit(struct args *a);
/* reaper.c */
int cmd_reaper(struct args *a);

#endif
