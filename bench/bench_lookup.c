/*
 * bench_lookup.c - fdn-bench: lookup throughput, hits and misses, of
 * Foundation against the systems it is meant to beat, all in one run.
 *
 * What is measured.  For each table size N (default 10 000, 100 000 and
 * 1 000 000), every system below holds the same N keys "agent-%08d"
 * (i = 0 .. N-1), each with a 16-byte value whose first 8 bytes are i, and
 * answers the same two streams of M lookups (default 2 000 000):
 *   lookup_hit   indexes drawn uniformly from [0, N) by xorshift64 with a
 *                fixed seed: every lookup must hit and read its value;
 *   lookup_miss  the same draws plus N: keys in [N, 2N), never inserted:
 *                every lookup must miss.
 * Keys are formatted into an array beforehand, so formatting is not timed.
 * One thread, no writer during the timed loops.  A hit reads 8 bytes of
 * the value.
 *
 *   foundation      fdn__ht_lookup on table 0 of a private segment (shared
 *                   mode: a MAP_SHARED segment in /dev/shm), each lookup in
 *                   its own read-side section: the raw table.
 *   foundation (64 per section)
 *                   the same, 64 lookups sharing one read-side section.
 *   foundation (fdn_lookup)
 *                   the registry API on a registry segment: entries carry
 *                   one int attribute (i), and each lookup copies the entry
 *                   out (key, pid, time, attributes) after checking that its
 *                   owner lives.
 *   foundation (fdn_whereis)
 *                   the same segment, fdn_whereis: the owner's pid only, no
 *                   copy (a hit reads the pid; the value checked is the
 *                   index, recovered from the key).
 *   foundation (fdn_lookup_view)
 *                   the same segment, fdn_lookup_view: a callback reads the
 *                   attribute's 8 bytes in place.
 *   foundation (local backend)
 *                   the registry API with no segment (s == NULL): the
 *                   process-local cds_lfht backend the flags can select
 *   plain           a process-local open-addressing table (linear probing,
 *                   {hash, record *} slots, capacity a power of two >= 2N):
 *                   what one process can do with nothing shared.
 *   cds_lfht        liburcu's lock-free RCU hash table (memb flavour, as
 *                   many buckets as foundation), urcu_memb_read_lock/unlock
 *                   around each lookup.
 *   lmdb            mdb_get in one long read transaction (reset and renewed
 *                   every 65536 lookups); only when built with LMDB.
 *   redis           GET over a unix socket to a redis-server this program
 *                   starts (bench_common.c), one round trip per GET, on the
 *                   first --redis-lookups keys of the stream (a round trip
 *                   costs tens of microseconds); only when redis-server is
 *                   in $PATH.
 *   redis (pipelined)
 *                   the same GETs sent 64 at a time, on the first
 *                   --redis-pipelined keys of the stream.
 * Each system is its own file, bench/sys_*.c (systems.h), shared with
 * fdn-bench-registry; this file holds the scenario, options and reporting.
 * Every system but redis hashes with XXH3-64 from the shared libxxhash.
 * Library calls stay calls: liburcu is used without _LGPL_SOURCE (its read
 * lock is not inlined), just as the fdn__ calls come from the static
 * library.
 *
 * How.  Each system runs each stream 3 times (--quick: once) and the best
 * run counts; time is CLOCK_MONOTONIC around the loop.  Every hit must
 * yield the value stored for its key (the sum of the values read is
 * compared with the expected one) and every miss must miss: anything else
 * is a correctness failure, reported on stderr, exit status 1.  Timing
 * never fails the run: the SPEC targets are printed as "met" / "MISSED"
 * and the exit status stays 0.
 *
 * Output (bench_common.h): per size and stream one result -- a table with
 * each system's lookups/s and the first system's rate divided by each,
 * then the SPEC targets; with --json one JSON object per result on stdout
 * (tables on stderr); --json-file PATH writes the JSON there and the
 * tables to stdout.
 */
#include <foundation/registry.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_common.h"
#include "systems.h"

#define STREAM_SEED 0x2545F4914F6CDD1Dull
#define MAX_SIZES   16
#define MAX_ENTRIES 49999999ull /* misses go to 2N - 1: "agent-%08d" stays 14 bytes */

/* ---- options -------------------------------------------------------------- */

struct opts {
	uint64_t sizes[MAX_SIZES];
	int nsizes;
	size_t lookups;
	size_t redis_lookups, redis_pipelined; /* prefixes of the stream */
	unsigned rounds;
	double round_ms;
	struct bench_cli cli; /* --json, --json-file, --quick */
};

/* ---- cleanup on the way out, signals included ------------------------------ */

const char *const bench_prog = "fdn-bench";

/* ---- the lookup stream ------------------------------------------------------ */

struct stream {
	struct lookup_key *keys;
	size_t m;
	bool hit; /* keys present (lookup_hit) or absent (lookup_miss) */
};

/* offset 0: present keys; offset n: the same draws + n, never inserted. */
static int stream_make(struct stream *st, uint64_t n, size_t m, uint64_t offset)
{
	st->keys = malloc(m * sizeof(*st->keys));
	if (!st->keys) {
		fprintf(stderr, "fdn-bench: lookup stream: %s\n", strerror(errno));
		return -1;
	}
	st->m = m;
	st->hit = offset == 0;
	uint64_t seed = STREAM_SEED;
	for (size_t i = 0; i < m; i++)
		lookup_key_make(&st->keys[i], bench_xorshift64(&seed) % n + offset);
	return 0;
}

/* ---- the systems and their rows ---------------------------------------------- */

/* Each system is built once per size and kept while every row of every
 * system answers both streams in interleaved rounds; then it is torn down
 * (systems.h; one file per system).  The row that SPEC ratios are taken
 * against is "foundation" (the raw table: the first row).  To add a
 * system, add it here: nothing else changes. */
static const struct lookup_system *const systems[] = {
    &sys_foundation_table,    &sys_foundation_table_batched,
    &sys_foundation_registry, &sys_foundation_whereis,
    &sys_foundation_view,     &sys_foundation_local,
    &sys_plain_lookup,        &sys_lfht_lookup,
#ifdef HAVE_LMDB
    &sys_lmdb_lookup,
#endif
    &sys_redis_lookup,
};
#define NSYSTEMS (sizeof(systems) / sizeof(systems[0]))

/* ---- measuring and verifying ----------------------------------------------- */

/* Operations of a slice of `ops` that a row answers: all of them, or for
 * redis the same fraction of the slice as --redis-lookups (or
 * --redis-pipelined) is of --lookups, at least 1. */
static uint64_t share_of(const struct opts *o, int share, uint64_t ops)
{
	if (share == 0)
		return ops;
	double f =
	    (double)(share == 1 ? o->redis_lookups : o->redis_pipelined) / (double)o->lookups;
	uint64_t m = (uint64_t)((double)ops * (f < 1 ? f : 1));
	return m ? m : 1;
}

static int verify_run(const char *label, const struct tally *t, const struct stream *st,
		      const uint64_t *psum, size_t at, size_t m)
{
	if (t->failed) {
		fprintf(stderr, "fdn-bench: %s: lookup %zu of the stream: %s\n", label,
			t->bad_at + at + 1, t->msg);
		return -1;
	}
	if (st->hit && (t->misses || t->hits != m)) {
		fprintf(stderr,
			"fdn-bench: %s: %" PRIu64 " of %zu lookups of present keys missed "
			"(first: %s); %" PRIu64 " hits\n",
			label, t->misses, m, st->keys[at + t->bad_at].s, t->hits);
		return -1;
	}
	if (!st->hit && (t->hits || t->misses != m)) {
		fprintf(stderr,
			"fdn-bench: %s: %" PRIu64 " of %zu lookups of absent keys hit, %" PRIu64
			" missed\n",
			label, t->hits, m, t->misses);
		return -1;
	}
	uint64_t want = st->hit ? psum[at + m] - psum[at] : 0;
	if (t->sum != want) {
		fprintf(stderr,
			"fdn-bench: %s: wrong values: sum of values read is %" PRIu64
			", expected %" PRIu64 "\n",
			label, t->sum, want);
		return -1;
	}
	return 0;
}

/* The rows taking part in one stream's rounds. */
struct live_row {
	const struct lookup_variant *v;
	void *ctx;
	struct bench_sys *row;
};

struct lookup_rounds {
	const struct opts *o;
	const struct stream *st;
	const uint64_t *psum; /* psum[i]: sum of the values of keys [0, i) (hit stream) */
	struct live_row rows[BENCH_MAX_SYS];
};

static int64_t lookup_slice(void *arg, size_t sys, uint64_t at, uint64_t ops)
{
	struct lookup_rounds *lr = arg;
	const struct live_row *lv = &lr->rows[sys];
	size_t m = (size_t)share_of(lr->o, lv->v->share, ops);
	struct tally t = {0};
	lv->v->run(lv->ctx, lr->st->keys + at, m, &t);
	if (verify_run(lv->v->label, &t, lr->st, lr->psum, (size_t)at, m))
		return -1;
	return (int64_t)m;
}

/* ---- reporting ------------------------------------------------------------------ */

struct target {
	uint64_t entries;
	const char *num; /* NULL: "foundation", the raw table */
	const char *den;
	double min; /* num / den >= min */
};

/* The registry API's rows: what a caller of the public lookups gets,
 * against a process-local table. */
static const struct target targets[] = {
    {1000000, NULL, "plain", 0.7},
    {1000000, NULL, "cds_lfht", 3.0},
    {1000000, NULL, "lmdb", 4.0},
    {1000000, NULL, "redis", 300},
    {10000, NULL, "plain", 0.8},
    {10000, NULL, "cds_lfht", 1.0},
    {1000000, "foundation_whereis", "plain", 0.6},
    {1000000, "foundation_registry", "plain", 0.4},
    {1000000, "foundation_registry", "cds_lfht", 1.2},
    {10000, "foundation_registry", "plain", 0.5},
};

/* The ratios printed under every table besides first/x. */
static const char *const shown[][2] = {
    {"foundation_registry", "plain"},
    {"foundation_registry", "cds_lfht"},
    {"foundation_registry", "lmdb"},
    {"foundation_registry", "foundation_local"},
};

static int bench_size(const struct opts *o, uint64_t n)
{
	struct stream st[2] = {{0}, {0}};
	uint64_t *psum = malloc((o->lookups + 1) * sizeof(*psum));
	if (!psum || stream_make(&st[0], n, o->lookups, 0) ||
	    stream_make(&st[1], n, o->lookups, n)) {
		if (!psum)
			fprintf(stderr, "fdn-bench: prefix sums: %s\n", strerror(errno));
		free(psum);
		free(st[0].keys);
		return -1;
	}
	psum[0] = 0;
	for (size_t i = 0; i < o->lookups; i++)
		psum[i + 1] = psum[i] + lookup_key_idx(&st[0].keys[i]);

	struct bench_result res[2];
	static const char *const names[2] = {"lookup_hit", "lookup_miss"};
	for (int s = 0; s < 2; s++) {
		bench_result_init(&res[s], names[s], BENCH_RATE, "lookups_per_s", "lookups/s");
		bench_title(&res[s],
			    "%" PRIu64 " entries, lookups of %s keys, every system built "
			    "first, then interleaved rounds",
			    n, s ? "absent" : "present");
		bench_param(&res[s], "entries", "%" PRIu64, n);
		bench_param(&res[s], "stream", "%zu", o->lookups);
		bench_param(&res[s], "redis_share", "%.4g",
			    (double)o->redis_lookups / (double)o->lookups);
		bench_param(&res[s], "redis_pipelined_share", "%.4g",
			    (double)o->redis_pipelined / (double)o->lookups);
		bench_param(&res[s], "rounds", "%u", o->rounds);
		bench_param(&res[s], "round_ms", "%g", o->round_ms);
		bench_param(&res[s], "value_bytes", "%u", LOOKUP_VAL_LEN);
	}

	/* Build every system on the same keys, all kept open. */
	void *ctx[NSYSTEMS] = {0};
	int state[NSYSTEMS] = {0}; /* 0 open, 1 not available */
	struct lookup_rounds lr[2] = {{o, &st[0], psum, {{0}}}, {o, &st[1], psum, {{0}}}};
	size_t nlive = 0;
	int r = 0;
	for (size_t i = 0; i < NSYSTEMS && r == 0; i++) {
		const struct lookup_system *sys = systems[i];
		int got = sys->open(&ctx[i], n);
		if (got < 0) {
			r = -1;
			state[i] = 1;
			break;
		}
		state[i] = got;
		for (int v = 0; v < LOOKUP_VARIANTS && sys->v[v].id; v++) {
			for (int s = 0; s < 2; s++) {
				struct bench_sys *row =
				    bench_add(&res[s], sys->v[v].id, sys->v[v].label);
				if (got > 0) {
					row->note =
					    "not measured: redis-server not found or failed";
					continue;
				}
				if (sys->v[v].share)
					row->note = sys->v[v].share == 1
							? "a --redis-lookups share of each slice"
							: "a --redis-pipelined share of each slice";
				lr[s].rows[nlive] = (struct live_row){&sys->v[v], ctx[i], row};
			}
			if (got == 0)
				nlive++;
		}
	}
	for (int s = 0; s < 2 && r == 0; s++) {
		struct bench_rounds b = {
		    .nsys = nlive,
		    .rounds = o->rounds,
		    .warmup = 2,
		    .prewarm = true,
		    /* Each row has memory of its own: before its timed slice,
		     * 3 x N lookups (at most 32 768) from elsewhere in the
		     * stream leave a 10 000-entry table as warm as a long run
		     * of it alone would; at 1 000 000 a random lookup misses
		     * anyway. */
		    .warm_ops = 3 * n < 32768 ? 3 * n : 32768,
		    .round_ms = o->round_ms,
		    .stream_len = o->lookups,
		    .min_ops = o->lookups < 1000 ? o->lookups : 1000,
		    .run = lookup_slice,
		    .arg = &lr[s],
		};
		r = bench_rounds_run(&b);
		if (r == 0) {
			struct bench_sys *rows[BENCH_MAX_SYS];
			for (size_t i = 0; i < nlive; i++)
				rows[i] = lr[s].rows[i].row;
			bench_rounds_fill(&b, &res[s], rows);
			bench_param(&res[s], "ops_per_round", "%" PRIu64, b.ops);
		}
		bench_rounds_free(&b);
	}
	for (size_t i = 0; i < NSYSTEMS && r == 0; i++)
		if (ctx[i] && state[i] == 0)
			systems[i]->where(ctx[i], &res[0], systems[i]->v[0].id);
	for (size_t i = NSYSTEMS; i-- > 0;)
		if (ctx[i] && state[i] == 0)
			systems[i]->close(ctx[i]);
	free(st[0].keys);
	free(st[1].keys);
	free(psum);
	if (r)
		return -1;
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (targets[i].entries == n)
			bench_target_ratio(&res[0], targets[i].num ? targets[i].num : "foundation",
					   targets[i].den, targets[i].min);
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
			bench_show_ratio(&res[s], shown[i][0], shown[i][1]);
	bench_emit(&res[0]);
	bench_emit(&res[1]);
	return 0;
}

/* ---- command line ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fdn-bench [--sizes N[,N...]] [--lookups M] [--redis-lookups M]\n"
		"                 [--redis-pipelined M] [--rounds R] [--round-ms T]\n"
		"                 [--json | --json-file PATH] [--quick]\n"
		"\n"
		"Lookup hits and misses: Foundation's shared table and registry API against\n"
		"a plain open-addressing table, liburcu's cds_lfht"
#ifdef HAVE_LMDB
		", LMDB"
#endif
		" and redis-server\n"
		"(when in $PATH), on the same keys and the same random lookup streams.\n"
		"\n"
		"  --sizes LIST          table sizes (entries), default 10000,100000,1000000\n"
		"  --lookups M           length of the lookup stream, default 2000000\n"
		"  --redis-lookups M     redis answers this share (M / --lookups) of each\n"
		"                        slice one round trip at a time, default 20000\n"
		"  --redis-pipelined M   and this share 64 per round trip, default 200000\n"
		"  --rounds R            interleaved rounds per stream and size, default 40\n"
		"  --round-ms T          target duration of a round (all systems), default 40\n"
		"  --json                one JSON object per result on stdout, tables on stderr\n"
		"  --json-file PATH      the JSON objects into PATH, tables on stdout\n"
		"  --quick               sizes 10000,100000, 200000 lookups (redis 2000 and\n"
		"                        20000), 12 rounds of 10 ms (CI)\n"
		"  --help                this text\n"
		"\n"
		"Exit status: 0, also when a SPEC target is missed; 1 when a lookup\n"
		"missed or hit wrongly or returned a wrong value, or a system failed;\n"
		"2 on bad usage.\n");
}

static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < 1 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_sizes(const char *arg, struct opts *o)
{
	char buf[256];
	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf))
		return -1;
	o->nsizes = 0;
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->nsizes == MAX_SIZES || parse_count(tok, MAX_ENTRIES, &o->sizes[o->nsizes]))
			return -1;
		o->nsizes++;
	}
	return o->nsizes ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"sizes", required_argument, NULL, 's'},
	    {"lookups", required_argument, NULL, 'l'},
	    {"redis-lookups", required_argument, NULL, 'r'},
	    {"redis-pipelined", required_argument, NULL, 'p'},
	    {"rounds", required_argument, NULL, 'R'},
	    {"round-ms", required_argument, NULL, 'M'},
	    BENCH_CLI_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	bool have_sizes = false, have_lookups = false, have_redis = false, have_pipe = false;
	uint64_t m = 2000000, rm = 20000, pm = 200000;
	*o = (struct opts){
	    .sizes = {10000, 100000, 1000000}, .nsizes = 3, .rounds = 40, .round_ms = 40};
	bool have_rounds = false, have_ms = false;
	int r;
	for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
		uint64_t *cnt = c == 'l' ? &m : c == 'r' ? &rm : &pm;
		switch (c) {
		case 's':
			if (parse_sizes(optarg, o)) {
				fprintf(stderr,
					"fdn-bench: --sizes: '%s' is not a list of up to %d sizes "
					"in 1..%llu\n",
					optarg, MAX_SIZES, MAX_ENTRIES);
				return 2;
			}
			have_sizes = true;
			break;
		case 'l':
		case 'r':
		case 'p':
			if (parse_count(optarg, 1ull << 32, cnt)) {
				fprintf(stderr, "fdn-bench: --%s: '%s' is not a count in 1..%llu\n",
					c == 'l'   ? "lookups"
					: c == 'r' ? "redis-lookups"
						   : "redis-pipelined",
					optarg, 1ull << 32);
				return 2;
			}
			have_lookups |= c == 'l';
			have_redis |= c == 'r';
			have_pipe |= c == 'p';
			break;
		case 'R':
		case 'M': {
			uint64_t v;
			if (parse_count(optarg, c == 'R' ? 100000 : 10000, &v)) {
				fprintf(stderr, "fdn-bench: --%s: '%s' is not a count in 1..%d\n",
					c == 'R' ? "rounds" : "round-ms", optarg,
					c == 'R' ? 100000 : 10000);
				return 2;
			}
			if (c == 'R') {
				o->rounds = (unsigned)v;
				have_rounds = true;
			} else {
				o->round_ms = (double)v;
				have_ms = true;
			}
			break;
		}
		default:
			if ((r = bench_cli_opt(&o->cli, c, usage)))
				return r;
		}
	}
	if ((r = bench_cli_end(&o->cli, argc, argv, usage)))
		return r;
	if (o->cli.quick) {
		if (!have_rounds)
			o->rounds = 12;
		if (!have_ms)
			o->round_ms = 10;
		if (!have_sizes) {
			o->sizes[0] = 10000;
			o->sizes[1] = 100000;
			o->nsizes = 2;
		}
		if (!have_lookups)
			m = 200000;
		if (!have_redis)
			rm = 2000;
		if (!have_pipe)
			pm = 20000;
	}
	o->lookups = (size_t)m;
	o->redis_lookups = (size_t)rm;
	o->redis_pipelined = (size_t)pm;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	/* One process, no deaths: no reaper needed for these segments. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	int r = parse_args(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r; /* 1: --help */
	bench_set_signals(bench_on_signal);
	if (bench_output_open(o.cli.json, o.cli.json_path))
		return 1;
	g_pid = getpid();
	bench_machine("start");
	/* This thread reads cds_lfht itself: register it before the library's
	 * local backend could (the library then uses this registration). */
	sys_urcu_register();
	int status = 0;
	for (int i = 0; i < o.nsizes && status == 0; i++)
		if (bench_size(&o, o.sizes[i]))
			status = 1;
	sys_redis_stop();
	sys_urcu_unregister();
	bench_machine("end");
	bench_output_close();
	return status;
}
