/* bench/bench_registry_pairs.c - fdn-bench-registry's register_unregister
 * (scenario 2 of bench_registry.c): register + unregister pairs against the
 * compared systems (systems.h), in interleaved rounds. */
#include "bench_registry.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAIR_TARGET 1.0
#define LMDB_BATCH  1000u

/* ==== 3. register + unregister pairs ============================================== */

/* The rows: each a system (systems.h) and its variant.  Every system is
 * opened first: the rows of one system share nothing (two instances). */
struct pair_row {
	const char *label, *id;
	int variant;
	const struct pairs_system *sys;
};

static const struct pair_row pair_rows[] = {
    {"foundation", "foundation", 0, &sys_foundation_pairs},
    {"foundation (unique capability)", "foundation_unique_cap", 1, &sys_foundation_pairs},
    {"cds_lfht", "cds_lfht", 0, &sys_lfht_pairs},
    {"cds_lfht+index", "cds_lfht_index", 1, &sys_lfht_pairs},
#ifdef HAVE_LMDB
    {"lmdb (txn per pair)", "lmdb", 1, &sys_lmdb_pairs},
    {"lmdb (1000 pairs per txn)", "lmdb_batched", LMDB_BATCH, &sys_lmdb_pairs},
#endif
    {"redis (SET NX + DEL, one round trip each)", "redis", 1, &sys_redis_pairs},
    {"redis (SET NX + DEL, 64 pairs per round trip)", "redis_pipelined", 64, &sys_redis_pairs},
};
#define NPSYS (sizeof(pair_rows) / sizeof(pair_rows[0]))

/* The rows in interleaved rounds (bench_common.h): every system opened
 * first, then in each round every row runs pairs 0 .. ops - 1 of the pair
 * stream (keys cycling through PAIR_KEYS) in a rotating order; redis rows
 * run the share --redis-pairs / --pairs of them. */
struct pairs_rounds {
	const struct opts *o;
	const struct key *keys;
	size_t nlive;
	const struct pair_row *sys[NPSYS];
	void *ctx[NPSYS];
	struct bench_sys *row[NPSYS];
};

static int64_t pairs_slice(void *arg, size_t i, uint64_t at, uint64_t ops)
{
	struct pairs_rounds *pr = arg;
	const struct pair_row *sys = pr->sys[i];
	(void)at; /* every round runs the same pairs */
	size_t pairs = (size_t)ops;
	if (sys->sys == &sys_redis_pairs && pr->o->redis_pairs < pr->o->pairs) {
		pairs = (size_t)((double)ops * (double)pr->o->redis_pairs / (double)pr->o->pairs);
		pairs = pairs ? pairs : 1;
	}
	struct tally t = {0};
	sys->sys->run(pr->ctx[i], pr->keys, pairs, sys->variant, &t);
	if (t.failed)
		return bench_fail("register_unregister: %s: pair %zu of %zu: %s", sys->label,
				  t.bad_at + 1, pairs, t.msg);
	if (t.done != pairs)
		return bench_fail("register_unregister: %s: %" PRIu64 " of %zu pairs done",
				  sys->label, t.done, pairs);
	return (int64_t)pairs;
}

int scenario_pairs(const struct opts *o)
{
	struct key *keys = malloc(PAIR_KEYS * sizeof(*keys));
	if (!keys)
		return bench_fail("pair keys: %s", strerror(errno));
	for (unsigned i = 0; i < PAIR_KEYS; i++)
		key_fmt(&keys[i], "agent-", PAIR_BACKGROUND + i);
	struct bench_result res;
	bench_result_init(&res, "register_unregister", BENCH_RATE, "pairs_per_s", "pairs/s");
	bench_title(&res,
		    "%u background entries, pairs over %u keys, 2 attributes (capability "
		    "indexed), every system built first, then interleaved rounds",
		    PAIR_BACKGROUND, PAIR_KEYS);
	bench_param(&res, "background", "%u", PAIR_BACKGROUND);
	bench_param(&res, "keys", "%u", PAIR_KEYS);
	bench_param(&res, "pairs", "%zu", o->pairs);
	bench_param(&res, "redis_share", "%.4g",
		    o->redis_pairs < o->pairs ? (double)o->redis_pairs / (double)o->pairs : 1.0);
	bench_param(&res, "rounds", "%u", o->rounds);
	bench_param(&res, "round_ms", "%g", o->round_ms);
	struct pairs_rounds pr = {.o = o, .keys = keys};
	int r = 0;
	for (size_t i = 0; i < NPSYS && r == 0; i++) {
		const struct pair_row *sys = &pair_rows[i];
		struct bench_sys *row = bench_add(&res, sys->id, sys->label);
		void *ctx = NULL;
		int got = sys->sys->open(&ctx);
		if (got < 0) {
			r = -1;
		} else if (got > 0) {
			row->note = "not measured: redis-server not found or failed";
		} else {
			if (sys->sys == &sys_redis_pairs)
				row->note = "a --redis-pairs share of each round's pairs";
			pr.sys[pr.nlive] = sys;
			pr.ctx[pr.nlive] = ctx;
			pr.row[pr.nlive++] = row;
		}
	}
	if (r == 0) {
		struct bench_rounds b = {
		    .nsys = pr.nlive,
		    .rounds = o->rounds,
		    .warmup = 2,
		    .prewarm = true,
		    .round_ms = o->round_ms,
		    .stream_len = o->pairs,
		    .min_ops = o->pairs < 200 ? o->pairs : 200,
		    .run = pairs_slice,
		    .arg = &pr,
		};
		r = bench_rounds_run(&b);
		if (r == 0) {
			bench_rounds_fill(&b, &res, pr.row);
			bench_param(&res, "pairs_per_round", "%" PRIu64, b.ops);
		}
		bench_rounds_free(&b);
	}
	for (size_t i = 0; i < pr.nlive; i++) {
		if (r == 0 && pr.sys[i]->sys->check(pr.ctx[i]))
			r = -1;
	}
	for (size_t i = pr.nlive; i-- > 0;)
		pr.sys[i]->sys->close(pr.ctx[i]);
	free(keys);
	if (r)
		return r;
	bench_target_ratio(&res, "foundation", "cds_lfht", PAIR_TARGET);
	/* The reclamation targets: LMDB with a transaction per pair, and
	 * cds_lfht doing the same index work in process-local memory. */
	bench_target_ratio(&res, "foundation", "lmdb", 1.0);
	bench_target_ratio(&res, "foundation", "cds_lfht_index", 0.5);
	bench_show_ratio(&res, "foundation", "lmdb");
	bench_show_ratio(&res, "foundation", "cds_lfht_index");
	bench_show_ratio(&res, "foundation", "lmdb_batched");
	bench_emit(&res);
	return 0;
}
