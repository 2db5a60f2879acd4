/*
 * bench_services.c - fdn-bench-services: the cost of one service operation
 * next to a registry lookup, measured in the same run.
 *
 * A private segment (no reaper) holds N = 10 000 entries "agent-%08d" with
 * 2 attributes.  Each row of the table `ops` below is one operation timed
 * over M iterations (CLOCK_MONOTONIC around the whole loop, best of 3;
 * --quick: M = 200 000, one run) and printed with its ratio to the first
 * row, the lookup:
 *
 *   lookup                 fdn_lookup of a random present key, the entry
 *                          copied out; its telemetry event is sampled
 *                          `never` (telemetry off for it: one sampler load)
 *   lookup, event in ring  the same with the lookup event written to the
 *                          ring (sampler `always`)
 *   emit, nobody listens   fdn_emit(NULL, ...) with no handler: the fast path
 *   emit, one handler      fdn_emit(NULL, ...) with one matching handler
 *   emit, into the ring    fdn_emit(seg, ...), no handler: sampler + ring
 *                          record (one measurement, one attribute)
 *
 *   span push+pop          fdn_span_start + fdn_span_end: shared (the
 *                          default: events to handlers only, and there is
 *                          none; their events into the ring; sampled
 *                          `never`; a handler attached) and local (s ==
 *                          NULL, thread-local memory)
 *   context set+get        fdn_ctx_set of one attribute + fdn_ctx_get, shared
 *                          and local
 *   flag read              fdn__flag_on (the services' read, one load) and
 *                          fdn_flag_enabled by name
 *
 * Adding a row: write an op function (and setup/teardown if needed) and add
 * one entry to `ops`; the table, the ratios and the JSON follow.
 *
 * Every operation is checked (a lookup must return the right pid; an emit
 * the expected verdict); a failure is reported on stderr and the exit
 * status is 1.  Timing never fails the run.
 *
 * Output: a table, then the load average (/proc/loadavg) at the end; with
 * --json one object per row per line:
 *   {"bench":"services","op":..,"iterations":..,"ns_per_op":..,
 *    "ops_per_s":..,"ratio_to_lookup":..}
 * and a last line {"bench":"services","loadavg":"..."}.
 */
#include "bench_common.h"
#include "lib/internal.h"
#include "shm/shm.h"

#include <foundation/context.h>
#include <foundation/flags.h>
#include <foundation/registry.h>
#include <foundation/spans.h>
#include <foundation/telemetry.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROG    "fdn-bench-services"
#define ENTRIES 10000u

const char *const bench_prog = PROG;

struct ctx {
	fdn_segment *s;
	char (*keys)[16];
	uint32_t *order; /* the random key stream */
	uint64_t mask;   /* order has mask + 1 entries */
	pid_t pid;
	_Atomic uint64_t handled;
	_Atomic uint64_t span_seen; /* span events the span handler saw */
};

struct op {
	const char *name, *id;
	int (*setup)(struct ctx *c);           /* NULL: none; non-zero: failed */
	int (*run)(struct ctx *c, uint64_t i); /* one operation; non-zero: wrong */
	void (*teardown)(struct ctx *c);
};

static int lookup_once(struct ctx *c, uint64_t i)
{
	struct fdn_entry e;
	const char *k = c->keys[c->order[i & c->mask]];
	return fdn_lookup(c->s, k, 14, 0, &e) != 0 || e.pid != c->pid;
}

static int sampler(struct ctx *c, const char *name, const char *spec)
{
	struct fdn_sampler sp;
	return fdn_sampler_parse(spec, &sp) || fdn_sampler_set(c->s, name, &sp);
}

static int lookup_quiet(struct ctx *c)
{
	return sampler(c, "foundation.registry.lookup", "never");
}

static int lookup_loud(struct ctx *c)
{
	return sampler(c, "foundation.registry.lookup", "always");
}

static void lookup_done(struct ctx *c)
{
	lookup_quiet(c);
}

static int emit_local(struct ctx *c, uint64_t i)
{
	struct fdn_measurement m = {"value", (double)i};
	return fdn_emit(NULL, "bench.event", &m, 1, NULL, 0) != (c->handled ? 1 : 0);
}

static void count(const struct fdn_event *ev, void *arg)
{
	struct ctx *c = arg;
	atomic_fetch_add_explicit(&c->handled, 1, memory_order_relaxed);
}

static int handler_on(struct ctx *c)
{
	atomic_store(&c->handled, 1);
	return fdn_handler_attach("bench", "bench.event", count, c);
}

static void handler_off(struct ctx *c)
{
	fdn_handler_detach("bench");
	atomic_store(&c->handled, 0);
}

static int emit_ring(struct ctx *c, uint64_t i)
{
	struct fdn_measurement m = {"value", (double)i};
	struct fdn_attr a = {.name = "worker", .type = FDN_ATTR_STRING, .v.s = "w-1"};
	return fdn_emit(c->s, "bench.event", &m, 1, &a, 1) != 1;
}

/* Spans: one push and one pop, on the segment (shared backend) or in
 * thread-local memory (s == NULL: the local backend). */
static int span_pushpop(fdn_segment *s)
{
	return fdn_span_start(s, "bench.op", NULL, 0, NULL) != 0 ||
	       fdn_span_end(s, FDN_STATUS_OK) != 0;
}

static int span_shared(struct ctx *c, uint64_t i)
{
	(void)i;
	return span_pushpop(c->s);
}

static int span_local(struct ctx *c, uint64_t i)
{
	(void)c;
	(void)i;
	return span_pushpop(NULL);
}

static int span_events(struct ctx *c, const char *spec)
{
	return sampler(c, "foundation.span.start", spec) ||
	       sampler(c, "foundation.span.stop", spec);
}

static int span_quiet(struct ctx *c)
{
	return span_events(c, "never");
}

static int span_loud(struct ctx *c)
{
	return span_events(c, "always");
}

/* The default: a new segment samples span events `handlers`. */
static void span_default(struct ctx *c)
{
	span_events(c, "handlers");
}

static void span_count(const struct fdn_event *ev, void *arg)
{
	struct ctx *c = arg;
	(void)ev;
	atomic_fetch_add_explicit(&c->span_seen, 1, memory_order_relaxed);
}

static int span_handler_on(struct ctx *c)
{
	return fdn_handler_attach("bench-span", "foundation.span", span_count, c);
}

static void span_handler_off(struct ctx *c)
{
	(void)c;
	fdn_handler_detach("bench-span");
}

/* Error context: merge one attribute, read the map back. */
static int ctx_setget(fdn_segment *s, uint64_t i)
{
	struct fdn_attr a = {.name = "request", .type = FDN_ATTR_INT, .v.i = (int64_t)i};
	uint8_t buf[FDN_CTX_MAXLEN];
	size_t len;
	return fdn_ctx_set(s, &a, 1) != 0 || fdn_ctx_get(s, buf, sizeof(buf), &len) != 0 ||
	       len == 0;
}

static int ctx_shared(struct ctx *c, uint64_t i)
{
	return ctx_setget(c->s, i);
}

static int ctx_local(struct ctx *c, uint64_t i)
{
	(void)c;
	return ctx_setget(NULL, i);
}

/* Flags: the services' read (one load) and the public read by name. */
static int flag_by_id(struct ctx *c, uint64_t i)
{
	(void)i;
	return !fdn__flag_on(c->s, FDN__FLAG_USE_SHM_REGISTRY);
}

static int flag_by_name(struct ctx *c, uint64_t i)
{
	(void)i;
	return !fdn_flag_enabled(c->s, "use_shm_spans");
}

/* The rows; the first is the reference of every ratio. */
static const struct op ops[] = {
    {"lookup", "lookup", lookup_quiet, lookup_once, NULL},
    {"lookup, event in ring", "lookup_event_ring", lookup_loud, lookup_once, lookup_done},
    {"emit, nobody listens", "emit_nobody", NULL, emit_local, NULL},
    {"emit, one handler", "emit_handler", handler_on, emit_local, handler_off},
    {"emit, into the ring", "emit_ring", NULL, emit_ring, NULL},
    {"span push+pop, shared (default: events to handlers only)", "span_shared_default", NULL,
     span_shared, NULL},
    {"span push+pop, shared, span events in the ring", "span_shared_ring", span_loud, span_shared,
     span_default},
    {"span push+pop, shared, span events `never`", "span_shared_never", span_quiet, span_shared,
     span_default},
    {"span push+pop, shared, a span handler too", "span_shared_handler", span_handler_on,
     span_shared, span_handler_off},
    {"span push+pop, local", "span_local", NULL, span_local, NULL},
    {"context set+get, shared", "ctx_shared", NULL, ctx_shared, NULL},
    {"context set+get, local", "ctx_local", NULL, ctx_local, NULL},
    {"flag read (internal, by id)", "flag_by_id", NULL, flag_by_id, NULL},
    {"flag read (fdn_flag_enabled)", "flag_by_name", NULL, flag_by_name, NULL},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))
enum { ROW_SPAN_DEFAULT = 5 };

/* The rounds' callbacks (bench_common.h): setup and teardown untimed
 * around each slice, the slice runs operations at .. at + ops - 1. */
static int op_prepare(void *arg, size_t i)
{
	struct ctx *c = arg;
	if (ops[i].setup && ops[i].setup(c)) {
		fprintf(stderr, "%s: %s: setup failed\n", PROG, ops[i].name);
		return -1;
	}
	return 0;
}

static void op_finish(void *arg, size_t i)
{
	if (ops[i].teardown)
		ops[i].teardown(arg);
}

static int64_t op_slice(void *arg, size_t i, uint64_t at, uint64_t n)
{
	struct ctx *c = arg;
	uint64_t bad = 0;
	for (uint64_t k = at; k < at + n; k++)
		bad += (uint64_t)ops[i].run(c, k);
	if (bad) {
		fprintf(stderr, "%s: %s: %llu wrong results\n", PROG, ops[i].name,
			(unsigned long long)bad);
		return -1;
	}
	return (int64_t)n;
}

static int populate(struct ctx *c)
{
	c->keys = calloc(ENTRIES, sizeof(*c->keys));
	c->mask = (1u << 20) - 1;
	c->order = calloc(c->mask + 1, sizeof(*c->order));
	if (!c->keys || !c->order)
		return -1;
	struct fdn_attr a[2] = {{.name = "capability", .type = FDN_ATTR_STRING, .v.s = "gpu"},
				{.name = "weight", .type = FDN_ATTR_INT, .v.i = 3}};
	for (uint32_t i = 0; i < ENTRIES; i++) {
		snprintf(c->keys[i], sizeof(c->keys[i]), "agent-%08u", i);
		int r = fdn_register(c->s, c->keys[i], 14, c->pid, a, 2, 0, NULL);
		if (r) {
			fprintf(stderr, "%s: register %s: %s\n", PROG, c->keys[i], fdn_strerror(r));
			return -1;
		}
	}
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (uint64_t i = 0; i <= c->mask; i++)
		c->order[i] = (uint32_t)(bench_xorshift64(&x) % ENTRIES);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG
		   " [--quick] [--rounds R] [--round-ms T] [--json | --json-file PATH]\n"
		   "Time service operations next to a registry lookup: every operation in\n"
		   "interleaved rounds (medians of the per-round rates and ratios).\n"
		   "  --quick           12 rounds of 10 ms (CI)\n"
		   "  --rounds R        rounds, default 40\n"
		   "  --round-ms T      target duration of a round (all rows), default 40\n"
		   "  --json            one JSON object per result on stdout, tables on stderr\n"
		   "  --json-file PATH  the JSON objects into PATH, tables on stdout\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"quick", no_argument, NULL, 'q'},
					   {"json", no_argument, NULL, 'j'},
					   {"json-file", required_argument, NULL, 'f'},
					   {"rounds", required_argument, NULL, 'R'},
					   {"round-ms", required_argument, NULL, 'M'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	bool quick = false, json = false;
	const char *json_path = NULL;
	long rounds = 0, round_ms = 0;
	for (int o; (o = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
		char *end = NULL;
		if (o == 'q') {
			quick = true;
		} else if (o == 'j') {
			json = true;
		} else if (o == 'f') {
			json_path = optarg;
		} else if (o == 'R' || o == 'M') {
			long v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < 1 || v > 100000) {
				fprintf(stderr, "%s: --%s: '%s' is not a count in 1..100000\n",
					PROG, o == 'R' ? "rounds" : "round-ms", optarg);
				return 2;
			}
			*(o == 'R' ? &rounds : &round_ms) = v;
		} else if (o == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || (json && json_path)) {
		usage(stderr);
		return 2;
	}
	if (!rounds)
		rounds = quick ? 12 : 40;
	if (!round_ms)
		round_ms = quick ? 10 : 40;
	char name[64];
	snprintf(name, sizeof(name), "fdn-bench-services-%d", (int)getpid());
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	bench_set_signals(bench_on_signal);
	if (bench_output_open(json, json_path))
		return 1;
	bench_machine("start");
	struct fdn_segment_opts so;
	fdn_segment_opts_init(&so);
	so.entries = ENTRIES;
	so.processes = 64;
	so.threads = 64;
	so.spans = 4;
	so.heap_bytes = 32u << 20; /* entries, index and owner references */
	struct ctx c = {.pid = getpid()};
	int slot = bench_shm_track(name);
	int r = fdn_segment_create(name, &so, &c.s);
	if (r) {
		bench_shm_untrack(slot);
		fprintf(stderr, "%s: create %s: %s\n", PROG, name, fdn_strerror(r));
		bench_output_close();
		return 1;
	}
	int status = populate(&c) ? 1 : 0;
	struct bench_result res;
	bench_result_init(&res, "services", BENCH_RATE, "ops_per_s", "ops/s");
	bench_title(&res,
		    "%u entries, one service operation against a fdn_lookup hit, interleaved "
		    "rounds; first/x = the operation's cost in lookups",
		    ENTRIES);
	bench_param(&res, "entries", "%u", ENTRIES);
	bench_param(&res, "rounds", "%ld", rounds);
	bench_param(&res, "round_ms", "%ld", round_ms);
	struct bench_sys *rows[NOPS];
	for (size_t i = 0; i < NOPS; i++)
		rows[i] = bench_add(&res, ops[i].id, ops[i].name);
	struct bench_rounds b = {
	    .nsys = NOPS,
	    .rounds = (unsigned)rounds,
	    .warmup = 2,
	    .prewarm = true,
	    /* As fdn-bench does: before each timed slice, 3 x ENTRIES
	     * operations from elsewhere in the stream.  With only the slice's
	     * first quarter untimed, the lookup row often ran after rows that
	     * had filled the caches with ring records, on keys not yet warm:
	     * it took 34-106 ns in five runs and the span's ratio to it went
	     * from 2.7 to 6.4 while the span rows held at 219-222 ns. */
	    .warm_ops = 3 * ENTRIES,
	    .round_ms = (double)round_ms,
	    .stream_len = c.mask + 1,
	    .min_ops = 1000,
	    .run = op_slice,
	    .prepare = op_prepare,
	    .finish = op_finish,
	    .arg = &c,
	};
	if (status == 0 && bench_rounds_run(&b))
		status = 1;
	if (status == 0) {
		bench_rounds_fill(&b, &res, rows);
		bench_param(&res, "ops_per_round", "%" PRIu64, b.ops);
		/* The cost of a default span push+pop in lookups: lookup rate over
		 * span rate, the median of the per-round values. */
		bench_target(&res, "span_shared_default cost / lookup",
			     res.ratio_stat[0][ROW_SPAN_DEFAULT][BENCH_MED], true, 3.0);
		bench_memory(&res, "lookup", "segment", c.s->base, (size_t)c.s->size);
		bench_emit(&res);
	}
	bench_rounds_free(&b);
	fdn_segment_detach(c.s);
	fdn_segment_destroy(name);
	bench_shm_untrack(slot);
	free(c.keys);
	free(c.order);
	bench_machine("end");
	bench_output_close();
	return status;
}
