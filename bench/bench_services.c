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
 *   span push+pop          fdn_span_start + fdn_span_end: shared (their
 *                          events sampled `never`; then into the ring) and
 *                          local (s == NULL, thread-local memory)
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

#include <foundation/context.h>
#include <foundation/flags.h>
#include <foundation/registry.h>
#include <foundation/spans.h>
#include <foundation/telemetry.h>

#include <getopt.h>
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
};

struct op {
	const char *name;
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

static void span_done(struct ctx *c)
{
	span_quiet(c);
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
    {"lookup", lookup_quiet, lookup_once, NULL},
    {"lookup, event in ring", lookup_loud, lookup_once, lookup_done},
    {"emit, nobody listens", NULL, emit_local, NULL},
    {"emit, one handler", handler_on, emit_local, handler_off},
    {"emit, into the ring", NULL, emit_ring, NULL},
    {"span push+pop, shared", span_quiet, span_shared, NULL},
    {"span push+pop, shared, events in ring", span_loud, span_shared, span_done},
    {"span push+pop, local", NULL, span_local, NULL},
    {"context set+get, shared", NULL, ctx_shared, NULL},
    {"context set+get, local", NULL, ctx_local, NULL},
    {"flag read (internal, by id)", NULL, flag_by_id, NULL},
    {"flag read (fdn_flag_enabled)", NULL, flag_by_name, NULL},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Best ns per operation over `runs` runs of m iterations; -1 on a wrong
 * result. */
static double measure(struct ctx *c, const struct op *o, uint64_t m, int runs)
{
	double best = -1;
	if (o->setup && o->setup(c)) {
		fprintf(stderr, "%s: %s: setup failed\n", PROG, o->name);
		return -1;
	}
	for (int r = 0; r < runs; r++) {
		uint64_t bad = 0, t0 = mono_ns();
		for (uint64_t i = 0; i < m; i++)
			bad += (uint64_t)o->run(c, i);
		double ns = (double)(mono_ns() - t0) / (double)m;
		if (bad) {
			fprintf(stderr, "%s: %s: %llu wrong results\n", PROG, o->name,
				(unsigned long long)bad);
			best = -1;
			break;
		}
		best = best < 0 || ns < best ? ns : best;
	}
	if (o->teardown)
		o->teardown(c);
	return best;
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

static void loadavg(char *buf, size_t cap)
{
	FILE *f = fopen("/proc/loadavg", "r");
	buf[0] = 0;
	if (f) {
		if (fgets(buf, (int)cap, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [--quick] [--json]\n"
		   "Time service operations next to a registry lookup (one run, one table).\n"
		   "  --quick   200 000 iterations per row, one run (CI)\n"
		   "  --json    one JSON object per row per line\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"quick", no_argument, NULL, 'q'},
					   {"json", no_argument, NULL, 'j'},
					   {"help", no_argument, NULL, 'h'},
					   {NULL, 0, NULL, 0}};
	bool quick = false, json = false;
	for (int o; (o = getopt_long(argc, argv, "qjh", lo, NULL)) != -1;) {
		if (o == 'q')
			quick = true;
		else if (o == 'j')
			json = true;
		else if (o == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	uint64_t m = quick ? 200000 : 2000000;
	int runs = quick ? 1 : 3;
	char name[64], la[128];
	snprintf(name, sizeof(name), "fdn-bench-services-%d", (int)getpid());
	snprintf(bench_shm_path, sizeof(bench_shm_path), "/dev/shm/%s", name);
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	bench_set_signals(bench_on_signal);
	struct fdn_segment_opts so;
	fdn_segment_opts_init(&so);
	so.entries = ENTRIES;
	so.processes = 64;
	so.threads = 64;
	so.spans = 4;
	so.heap_bytes = 32u << 20; /* entries, index and owner references */
	struct ctx c = {.pid = getpid()};
	int r = fdn_segment_create(name, &so, &c.s);
	if (r) {
		fprintf(stderr, "%s: create %s: %s\n", PROG, name, fdn_strerror(r));
		return 1;
	}
	int status = populate(&c) ? 1 : 0;
	double ns[NOPS];
	for (size_t i = 0; i < NOPS && status == 0; i++)
		if ((ns[i] = measure(&c, &ops[i], m, runs)) < 0)
			status = 1;
	loadavg(la, sizeof(la));
	if (status == 0) {
		if (!json)
			printf("%-38s %10s %12s %9s\n", "operation", "ns/op", "ops/s", "÷ lookup");
		for (size_t i = 0; i < NOPS; i++) {
			if (json)
				printf("{\"bench\":\"services\",\"op\":\"%s\",\"iterations\":%llu,"
				       "\"ns_per_op\":%.2f,\"ops_per_s\":%.0f,\"ratio_to_lookup\":%"
				       ".3f}\n",
				       ops[i].name, (unsigned long long)m, ns[i], 1e9 / ns[i],
				       ns[i] / ns[0]);
			else
				printf("%-38s %10.1f %12.0f %9.2f\n", ops[i].name, ns[i],
				       1e9 / ns[i], ns[i] / ns[0]);
		}
		if (json)
			printf("{\"bench\":\"services\",\"loadavg\":\"%s\"}\n", la);
		else
			printf("load average: %s\n", la);
	}
	fdn_segment_detach(c.s);
	fdn_segment_destroy(name);
	bench_shm_path[0] = 0;
	free(c.keys);
	free(c.order);
	return status;
}
