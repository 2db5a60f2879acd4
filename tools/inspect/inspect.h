/*
 * tools/inspect/inspect.h - what the files of foundation-inspect share: a
 * command's arguments (struct args, with the FILE * every command writes
 * to), the command table, and the commands themselves, one file per
 * family: registry.c (registry, processes), spans.c (spans, graveyard),
 * stats.c (stats, changes, check), events.c (events, samplers),
 * cluster.c, metrics.c, flags.c (flags, stages), dump.c; prometheus.c is the
 * Prometheus writer (text and JSON writers are tools/cli.h's).
 * foundation-inspect.c holds the command table, the usage and main.
 */
#ifndef FDN_TOOLS_INSPECT_H
#define FDN_TOOLS_INSPECT_H

#include "cli.h"

#include <foundation/foundation.h>

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct args {
	FILE *out; /* where the command writes: stdout, or memory (dump, metrics) */
	const char *segment;
	bool json;
	const char *attr;     /* registry --attr NAME=VALUE */
	const char *prefix;   /* registry --prefix P */
	int32_t pid;          /* spans, graveyard --pid P; 0 = all */
	bool follow;          /* events --follow */
	const char *name;     /* events --name PREFIX */
	uint64_t count;       /* events --count N (0: no limit) */
	uint64_t timeout_s;   /* events --timeout S (0: none) */
	const char *listen;   /* metrics --listen HOST:PORT */
	const char *textfile; /* metrics --textfile PATH */
};

struct command {
	const char *name;
	const char *allowed; /* option letters beyond --json, --segment, --help */
	int (*run)(fdn_segment *s, const struct args *a);
	const char *synopsis;
	const char *help;
};

/* cluster.c; prom_cluster: the cluster's metrics, when an agent mirrors */
int cmd_cluster(fdn_segment *s, const struct args *a);
void prom_cluster(fdn_segment *s, const struct args *a);

/* dump.c */
int cmd_dump(fdn_segment *s, const struct args *a);

/* events.c; events_stop: set by SIGINT, SIGTERM (events --follow, metrics --listen) */
extern volatile sig_atomic_t events_stop;
void events_on_signal(int sig);
/* Has the segment's name been removed (or given to another object)? */
bool segment_gone(fdn_segment *s, const char *name);
int cmd_events(fdn_segment *s, const struct args *a);
int cmd_samplers(fdn_segment *s, const struct args *a);

/* flags.c */
int cmd_flags(fdn_segment *s, const struct args *a);
int cmd_stages(fdn_segment *s, const struct args *a);

/* foundation-inspect.c: every command, in the order of the usage */
extern const struct command commands[];
extern const size_t ncommands;

/* metrics.c */
int cmd_metrics(fdn_segment *s, const struct args *a);

/* prometheus.c: the Prometheus writer.  A family's "# HELP" and "# TYPE" lines;
 * one sample (labels "" or ",k=\"v\"" after the segment label); a family
 * of one sample. */
void prom_family(FILE *out, const char *name, const char *type, const char *help);
void prom_sample(const char *name, const struct args *a, const char *labels, double v);
void prom_gauge(const char *name, const char *help, const struct args *a, double v);
void prom_counter(const char *name, const char *help, const struct args *a, double v);

/* registry.c */
int cmd_registry(fdn_segment *s, const struct args *a);
int cmd_processes(fdn_segment *s, const struct args *a);

/* spans.c */
int cmd_spans(fdn_segment *s, const struct args *a);
int cmd_graveyard(fdn_segment *s, const struct args *a);

/* stats.c; load: a table's entries per bucket */
double load(const struct fdn_table_stats *t);
/* The segment's statistics and its visible entries (fdn_count); EXIT_OK,
 * or EXIT_FAIL with one line naming what (the command) failed. */
int segment_counts(fdn_segment *s, const struct args *a, const char *what,
		   struct fdn_segment_stats *st, int64_t *visible);
int cmd_stats(fdn_segment *s, const struct args *a);
int cmd_changes(fdn_segment *s, const struct args *a);
int cmd_check(fdn_segment *s, const struct args *a);

#endif
