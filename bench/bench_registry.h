/*
 * bench/bench_registry.h - what the files of fdn-bench-registry share: the
 * options and the scenarios, one file each: bench_registry_reaper.c (1.
 * reaper_latency), bench_registry_pairs.c (2. register_unregister),
 * bench_registry_scaling.c (3. read_scaling and read_under_churn, 4.
 * memory), bench_registry_changefeed.c (5, 6. the changefeed),
 * bench_registry_stopped.c (7. stopped_reader).
 * bench_registry.c holds the scenario table, the options and main, and
 * says what each scenario measures.
 */
#ifndef FDN_BENCH_REGISTRY_H
#define FDN_BENCH_REGISTRY_H

#include <foundation/changes.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/segment.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench_common.h"
#include "systems.h"

#define PROG "fdn-bench-registry"

struct opts {
	struct bench_cli cli; /* --json, --json-file, --quick */
	const char *argv0;
	int scale_rounds; /* read scaling: interleaved rounds */
	unsigned rounds;  /* register_unregister: interleaved rounds */
	double round_ms;
	unsigned deaths;
	size_t pairs, redis_pairs;
	uint64_t scale_entries, mem_entries;
	long scale_ms;
	unsigned only; /* bit i: run scenarios[i]; 0: all */
};

/* The scenarios: 0 done (timings printed), else 1 (a correctness failure
 * or an error, said on stderr). */
int scenario_reaper(const struct opts *o, const char *argv0);
int scenario_pairs(const struct opts *o);
int scenario_scaling(const struct opts *o);
int scenario_memory(const struct opts *o);
int scenario_cf_latency(const struct opts *o);
int scenario_cf_throughput(const struct opts *o);
int scenario_stopped(const struct opts *o);
/* The reaper scenario's attribute values (before any scenario runs). */
void attrs_init(void);

#endif
