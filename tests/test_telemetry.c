/*
 * test_telemetry.c - events, handlers, samplers, once-per, batches, the
 * rate limiter and the ring, with real forked processes.
 */
#include "common.h"
#include "lib/internal.h"
#include "lib/telemetry_int.h"

#include <foundation/registry.h>
#include <foundation/telemetry.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <math.h>
#include <time.h>

static fdn_segment *tel_create(char *name, size_t cap, uint32_t events)
{
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	t_name(name, cap, "tel");
	o.entries = 1000;
	o.processes = 256;
	o.threads = 256;
	o.spans = 4;
	o.events = events;
	fdn_segment *s = NULL;
	int r = fdn_segment_create(name, &o, &s);
	cr_assert_eq(r, 0, "create: %s", fdn_strerror(r));
	return s;
}

static void tel_destroy(fdn_segment *s, const char *name)
{
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	cr_assert_eq(fdn_segment_destroy(name), 0);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Children still running when a test fails: killed by fini. */
static pid_t spawned[64];
static int nspawned;

static void kill_spawned(void)
{
	for (int i = 0; i < nspawned; i++)
		if (spawned[i] > 0)
			kill(spawned[i], SIGKILL);
}

TestSuite(telemetry, .fini = kill_spawned);

/* Shared by a test and its children: a start line and counters. */
struct race {
	_Atomic int ready, go;
	_Atomic int wins, admitted[8], emitted;
	_Atomic long seen, lost, order_bad, done;
};

static void race_wait(struct race *rc)
{
	atomic_fetch_add(&rc->ready, 1);
	while (!atomic_load(&rc->go))
		sched_yield();
}

/* Fork n children running fn(s, i, rc) on their own attachment; start
 * them together; expect each to exit 0. */
static void run_children(const char *name, int n, struct race *rc,
			 void (*fn)(fdn_segment *, int, struct race *))
{
	pid_t pids[32];
	atomic_store(&rc->ready, 0);
	atomic_store(&rc->go, 0);
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			race_wait(rc);
			fn(c, i, rc);
			fdn_segment_detach(c);
			_exit(0);
		}
		if (nspawned < 64)
			spawned[nspawned++] = pids[i];
	}
	while (atomic_load(&rc->ready) < n)
		sched_yield();
	atomic_store(&rc->go, 1);
	for (int i = 0; i < n; i++)
		cr_assert(t_wait_ok(pids[i]), "child %d failed", i);
}

/* Every event of the ring with this name, from the oldest. */
static int ring_collect(fdn_segment *s, const char *name, struct fdn_ring_event *out, int cap,
			uint64_t *lost)
{
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	int n = 0;
	cr_assert_eq(fdn_ring_cursor_init(s, &c, true), 0);
	while (fdn_ring_next(s, &c, &ev) == 1)
		if (strcmp(ev.name, name) == 0 && n < cap)
			out[n++] = ev;
	if (lost)
		*lost = c.lost;
	return n;
}

static double meas(const struct fdn_ring_event *ev, const char *name)
{
	for (uint32_t i = 0; i < ev->nmeasurements; i++)
		if (strcmp(ev->measurements[i].name, name) == 0)
			return ev->measurements[i].value;
	cr_assert_fail("event %s has no measurement %s", ev->name, name);
	return 0;
}

static void set_sampler(fdn_segment *s, const char *name, const char *spec)
{
	struct fdn_sampler sp;
	cr_assert_eq(fdn_sampler_parse(spec, &sp), 0, "parse %s", spec);
	cr_assert_eq(fdn_sampler_set(s, name, &sp), 0);
}

/* ---- samplers ----------------------------------------------------------------- */

Test(telemetry, random_half_samples_about_half)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "test.random", "random(0.5)");
	int kept = 0;
	for (int i = 0; i < 1000; i++) {
		int r = fdn_emit(s, "test.random", NULL, 0, NULL, 0);
		cr_assert_geq(r, 0);
		kept += r;
	}
	cr_assert(kept >= 400 && kept <= 600, "random(0.5) kept %d of 1000", kept);
	struct fdn_sampler_stats st;
	cr_assert_eq(fdn_sampler_get(s, "test.random", &st), 0);
	cr_assert_eq(st.total, 1000);
	cr_assert_eq(st.sampled, (uint64_t)kept);
	cr_assert_eq(st.sampler.kind, FDN_SAMPLER_RANDOM);
	cr_assert_eq(st.sampler.param, 0.5);
	tel_destroy(s, name);
}

Test(telemetry, rate_limited_admits_exactly_its_rate)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "test.rl", "rate_limited(10)");
	bool done = false;
	/* Twenty events inside one second (a run that straddles two seconds
	 * is not the case under test: it runs again, in the next second). */
	for (int attempt = 0; attempt < 5 && !done; attempt++) {
		uint64_t sec = now_ms() / 1000;
		int kept = 0;
		for (int i = 0; i < 20; i++)
			kept += fdn_emit(s, "test.rl", NULL, 0, NULL, 0);
		if (now_ms() / 1000 != sec)
			continue;
		cr_assert_eq(kept, 10, "rate_limited(10) kept %d of 20 in one second", kept);
		done = true;
	}
	cr_assert(done);
	tel_destroy(s, name);
}

Test(telemetry, reservoir_samples_exactly_the_first_n)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "test.res", "reservoir(100)");
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(fdn_emit(s, "test.res", NULL, 0, NULL, 0), i < 100 ? 1 : 0, "event %d",
			     i);
	/* Set again: the next 100 again. */
	set_sampler(s, "test.res", "reservoir(100)");
	int kept = 0;
	for (int i = 0; i < 300; i++)
		kept += fdn_emit(s, "test.res", NULL, 0, NULL, 0);
	cr_assert_eq(kept, 100);
	struct fdn_sampler_stats st;
	cr_assert_eq(fdn_sampler_get(s, "test.res", &st), 0);
	cr_assert_eq(st.total, 1300);
	cr_assert_eq(st.sampled, 200);
	tel_destroy(s, name);
}

static void reservoir_child(fdn_segment *c, int i, struct race *rc)
{
	for (int k = 0; k < 100; k++)
		if (fdn_emit(c, "test.res4", NULL, 0, NULL, 0) == 1)
			atomic_fetch_add(&rc->emitted, 1);
}

Test(telemetry, reservoir_is_exact_across_processes)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "test.res4", "reservoir(50)");
	struct race *rc = t_shared(sizeof(*rc));
	run_children(name, 4, rc, reservoir_child);
	cr_assert_eq(atomic_load(&rc->emitted), 50);
	struct fdn_sampler_stats st;
	cr_assert_eq(fdn_sampler_get(s, "test.res4", &st), 0);
	cr_assert_eq(st.total, 400);
	cr_assert_eq(st.sampled, 50);
	tel_destroy(s, name);
}

static void reset_child(fdn_segment *c, int i, struct race *rc)
{
	for (int k = 0; k < 100; k++) {
		if (fdn_emit(c, "test.reset", NULL, 0, NULL, 0) == 1)
			atomic_fetch_add(&rc->emitted, 1);
		if (i == 0 && k == 50 && fdn_sampler_reset_stats(c, "test.reset") != 0)
			_exit(3);
	}
}

/* Reset from one process is seen by every other; the sampler itself and
 * its state are unchanged; events during a reset are not lost by it. */
Test(telemetry, sampler_reset_stats_across_processes)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "test.reset", "reservoir(30)");
	for (int k = 0; k < 10; k++)
		fdn_emit(s, "test.reset", NULL, 0, NULL, 0);
	struct fdn_sampler_stats st;
	cr_assert_eq(fdn_sampler_get(s, "test.reset", &st), 0);
	cr_assert_eq(st.total, 10);
	cr_assert_eq(st.sampled, 10);
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(2);
		int r = fdn_sampler_reset_stats(c, "test.reset");
		fdn_segment_detach(c);
		_exit(r ? 3 : 0);
	}
	cr_assert(t_wait_ok(p));
	cr_assert_eq(fdn_sampler_get(s, "test.reset", &st), 0);
	cr_assert_eq(st.total, 0);
	cr_assert_eq(st.sampled, 0);
	cr_assert_eq(st.sampler.kind, FDN_SAMPLER_RESERVOIR);
	cr_assert_eq(st.sampler.param, 30);
	/* The reservoir keeps its count: 20 more, then none. */
	int kept = 0;
	for (int k = 0; k < 25; k++)
		kept += fdn_emit(s, "test.reset", NULL, 0, NULL, 0);
	cr_assert_eq(kept, 20);
	cr_assert_eq(fdn_sampler_get(s, "test.reset", &st), 0);
	cr_assert_eq(st.total, 25);
	cr_assert_eq(st.sampled, 20);
	/* 4 processes emit 100 each while one of them resets after its 51st:
	 * at most the 400 count, at least the 49 it emits after its reset. */
	set_sampler(s, "test.reset", "always");
	cr_assert_eq(fdn_sampler_reset_stats(s, "test.reset"), 0);
	struct race *rc = t_shared(sizeof(*rc));
	run_children(name, 4, rc, reset_child);
	cr_assert_eq(fdn_sampler_get(s, "test.reset", &st), 0);
	cr_assert_leq(st.total, 400);
	cr_assert_geq(st.total, 49);
	cr_assert_eq(st.sampled, st.total);
	cr_assert_eq(fdn_sampler_reset_stats(s, "test.none"), FDN_ENOTFOUND);
	cr_assert_eq(fdn_sampler_reset_stats(s, "bad name"), FDN_EEVNAME);
	cr_assert_eq(fdn_sampler_reset_stats(s, NULL), FDN_EEVNAME);
	fdn_segment *ro;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &ro), 0);
	cr_assert_eq(fdn_sampler_reset_stats(ro, "test.reset"), FDN_ERDONLY);
	fdn_segment_detach(ro);
	tel_destroy(s, name);
}

Test(telemetry, never_always_adaptive_and_the_parser)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "test.never", "never");
	cr_assert_eq(fdn_emit(s, "test.never", NULL, 0, NULL, 0), 0);
	cr_assert_eq(fdn_emit(s, "test.always", NULL, 0, NULL, 0), 1);
	/* adaptive starts at probability 1; with a target above the events
	 * of any second here, every event is kept. */
	set_sampler(s, "test.adaptive", "adaptive(1000)");
	for (int i = 0; i < 50; i++)
		cr_assert_eq(fdn_emit(s, "test.adaptive", NULL, 0, NULL, 0), 1);
	struct fdn_sampler sp;
	const char *bad[] = {"",
			     "sometimes",
			     "random",
			     "random()",
			     "random(1.5)",
			     "random(-0.1)",
			     "rate_limited(0)",
			     "rate_limited(2.5)",
			     "reservoir(-1)",
			     "adaptive(0)",
			     "always(1)",
			     "random(0.5)x",
			     "random(nan)",
			     "handlers(1)"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(fdn_sampler_parse(bad[i], &sp), FDN_ESAMPLER, "'%s'", bad[i]);
	const char *good[] = {"always",         "never",        "random(0.25)", "rate_limited(10)",
			      "reservoir(100)", "adaptive(50)", "handlers"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char buf[64];
		cr_assert_eq(fdn_sampler_parse(good[i], &sp), 0, "'%s'", good[i]);
		fdn_sampler_format(&sp, buf, sizeof(buf));
		cr_assert_str_eq(buf, good[i]);
	}
	sp = (struct fdn_sampler){FDN_SAMPLER_RANDOM, 2};
	cr_assert_eq(fdn_sampler_set(s, "test.x", &sp), FDN_ESAMPLER);
	cr_assert_eq(fdn_sampler_set(s, "bad name", &sp), FDN_EEVNAME);
	cr_assert_eq(fdn_sampler_get(s, "test.unknown", NULL), FDN_EINVAL);
	struct fdn_sampler_stats st;
	cr_assert_eq(fdn_sampler_get(s, "test.unknown", &st), FDN_ENOTFOUND);
	int n = fdn_samplers_foreach(s, NULL, NULL);
	/* never, always, adaptive, and the new segment's own defaults for
	 * foundation.registry.lookup, foundation.span.start and .stop */
	cr_assert_eq(n, 6, "samplers: %d", n);
	tel_destroy(s, name);
}

/* ---- handlers ------------------------------------------------------------------ */

struct seen {
	_Atomic int n;
	char names[16][64];
	_Atomic int after_detach;
	_Atomic bool detached;
};

static void record(const struct fdn_event *ev, void *arg)
{
	struct seen *sn = arg;
	int k = atomic_fetch_add(&sn->n, 1);
	if (k < 16)
		snprintf(sn->names[k], sizeof(sn->names[k]), "%s", ev->name);
	if (atomic_load(&sn->detached))
		atomic_fetch_add(&sn->after_detach, 1);
}

Test(telemetry, handler_sees_exactly_its_prefix)
{
	static struct seen sn;
	cr_assert_eq(fdn_handler_attach("h1", "test.a", record, &sn), 0);
	cr_assert_eq(fdn_handler_attach("h1", "x", record, &sn), FDN_EEXISTS);
	const char *names[] = {"test.a", "test.a.b", "test.ab", "test.b", "other", "test"};
	for (int i = 0; i < 6; i++)
		cr_assert_geq(fdn_emit(NULL, names[i], NULL, 0, NULL, 0), 0);
	cr_assert_eq(atomic_load(&sn.n), 2);
	cr_assert_str_eq(sn.names[0], "test.a");
	cr_assert_str_eq(sn.names[1], "test.a.b");
	cr_assert_eq(fdn_handler_detach("h1"), 0);
	cr_assert_eq(fdn_emit(NULL, "test.a", NULL, 0, NULL, 0), 0, "nobody listens");
	cr_assert_eq(atomic_load(&sn.n), 2);
	cr_assert_eq(fdn_handler_detach("h1"), FDN_ENOTFOUND);
	/* "" takes everything, "test." what starts with it. */
	static struct seen all, dot;
	cr_assert_eq(fdn_handler_attach("all", "", record, &all), 0);
	cr_assert_eq(fdn_handler_attach("dot", "test.", record, &dot), 0);
	for (int i = 0; i < 6; i++)
		fdn_emit(NULL, names[i], NULL, 0, NULL, 0);
	cr_assert_eq(atomic_load(&all.n), 6);
	cr_assert_eq(atomic_load(&dot.n), 4);
	cr_assert_eq(fdn_handler_detach("all"), 0);
	cr_assert_eq(fdn_handler_detach("dot"), 0);
}

static void detach_self(const struct fdn_event *ev, void *arg)
{
	atomic_fetch_add((_Atomic int *)arg, 1);
	cr_assert_eq(fdn_handler_detach("self"), 0);
}

Test(telemetry, handler_detaching_itself)
{
	static _Atomic int calls;
	cr_assert_eq(fdn_handler_attach("self", "test", detach_self, (void *)&calls), 0);
	cr_assert_eq(fdn_emit(NULL, "test.x", NULL, 0, NULL, 0), 1);
	cr_assert_eq(fdn_emit(NULL, "test.x", NULL, 0, NULL, 0), 0);
	cr_assert_eq(atomic_load(&calls), 1);
	/* Its slot is free again: the id can be attached anew. */
	cr_assert_eq(fdn_handler_attach("self", "test", detach_self, (void *)&calls), 0);
	cr_assert_eq(fdn_emit(NULL, "test.x", NULL, 0, NULL, 0), 1);
	cr_assert_eq(atomic_load(&calls), 2);
}

static _Atomic bool stop_emitters;

static void *emitter(void *arg)
{
	struct fdn_measurement m = {"v", 1};
	while (!atomic_load(&stop_emitters))
		fdn_emit(NULL, "test.mt.e", &m, 1, NULL, 0);
	return NULL;
}

Test(telemetry, detach_while_threads_emit)
{
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, emitter, NULL);
	static struct seen sn[50];
	for (int round = 0; round < 50; round++) {
		cr_assert_eq(fdn_handler_attach("mt", "test.mt", record, &sn[round]), 0);
		while (atomic_load(&sn[round].n) < 10)
			sched_yield();
		cr_assert_eq(fdn_handler_detach("mt"), 0);
		/* After detach returns, no call of it runs or starts. */
		atomic_store(&sn[round].detached, true);
	}
	/* Give the emitters time to make a late call, if any could happen
	 * (a loop of sched_yield here would hand each yield a whole time
	 * slice of a spinning emitter: minutes on 2 CPUs). */
	struct timespec pause = {0, 50 * 1000000L};
	nanosleep(&pause, NULL);
	atomic_store(&stop_emitters, true);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	for (int round = 0; round < 50; round++)
		cr_assert_eq(atomic_load(&sn[round].after_detach), 0, "round %d", round);
}

/* ---- once per ------------------------------------------------------------------ */

static void once_child(fdn_segment *c, int i, struct race *rc)
{
	int r = fdn_emit_once_per(c, "test.once", 60000, "key", 3, NULL, 0, NULL, 0);
	if (r == 1)
		atomic_fetch_add(&rc->wins, 1);
	else if (r != 0)
		_exit(3);
}

Test(telemetry, once_per_twenty_processes_one_winner)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	struct race *rc = t_shared(sizeof(*rc));
	run_children(name, 20, rc, once_child);
	cr_assert_eq(atomic_load(&rc->wins), 1);
	static struct fdn_ring_event evs[32];
	cr_assert_eq(ring_collect(s, "test.once", evs, 32, NULL), 1);
	/* Same pair, same interval: suppressed; another key: its own claim. */
	cr_assert_eq(fdn_emit_once_per(s, "test.once", 60000, "key", 3, NULL, 0, NULL, 0), 0);
	cr_assert_eq(fdn_emit_once_per(s, "test.once", 60000, "other", 5, NULL, 0, NULL, 0), 1);
	cr_assert_eq(ring_collect(s, "test.once", evs, 32, NULL), 2);
	/* A short interval: once per interval, again after it. */
	cr_assert_eq(fdn_emit_once_per(s, "test.short", 30, NULL, 0, NULL, 0, NULL, 0), 1);
	cr_assert_eq(fdn_emit_once_per(s, "test.short", 30, NULL, 0, NULL, 0, NULL, 0), 0);
	usleep(40000);
	cr_assert_eq(fdn_emit_once_per(s, "test.short", 30, NULL, 0, NULL, 0, NULL, 0), 1);
	cr_assert_eq(fdn_emit_once_per(s, "test.once", 0, "k", 1, NULL, 0, NULL, 0), FDN_EINVAL);
	tel_destroy(s, name);
}

/* ---- rate limiter -------------------------------------------------------------- */

static char rl_id[64];

static void rate_child(fdn_segment *c, int i, struct race *rc)
{
	for (int k = 0; k < 20; k++) {
		int r = fdn_rate_limit(c, rl_id, 100, 3600000);
		if (r < 0)
			_exit(3);
		atomic_fetch_add(&rc->admitted[0], r);
	}
}

static void rate5_child(fdn_segment *c, int i, struct race *rc)
{
	char id[80];
	for (int k = 0; k < 3; k++)
		for (int j = 0; j < 5; j++) {
			snprintf(id, sizeof(id), "%s-%d", rl_id, j);
			int r = fdn_rate_limit(c, id, 10, 3600000);
			if (r < 0)
				_exit(3);
			atomic_fetch_add(&rc->admitted[j], r);
		}
}

Test(telemetry, rate_limiter_admits_exactly_the_limit)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	struct race *rc = t_shared(sizeof(*rc));
	bool done = false;
	/* All requests inside one window of an hour; a run that crosses a
	 * window boundary runs again with fresh identifiers. */
	for (int attempt = 0; attempt < 3 && !done; attempt++) {
		memset(rc, 0, sizeof(*rc));
		snprintf(rl_id, sizeof(rl_id), "test.limit.%d", attempt);
		uint64_t w = now_ms() / 3600000;
		run_children(name, 10, rc, rate_child);
		run_children(name, 10, rc, rate5_child);
		if (now_ms() / 3600000 != w)
			continue;
		cr_assert_eq(atomic_load(&rc->admitted[0]), 100 + 10,
			     "200 requests, limit 100 (+ id 0 of the five)");
		for (int j = 1; j < 5; j++)
			cr_assert_eq(atomic_load(&rc->admitted[j]), 10, "id %d", j);
		done = true;
	}
	cr_assert(done);
	cr_assert_eq(fdn_rate_limit(s, "", 1, 1), FDN_EINVAL);
	cr_assert_eq(fdn_rate_limit(s, "x", 0, 1), FDN_EINVAL);
	cr_assert_eq(fdn_rate_limit(s, "x", 1, 0), FDN_EINVAL);
	tel_destroy(s, name);
}

Test(telemetry, full_tables_refuse_and_keep_what_they_hold)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	char id[32];
	for (int i = 0; i < (int)FDN_TEL_RATE; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		cr_assert_eq(fdn_rate_limit(s, id, 1, 3600000), 1, "%s", id);
	}
	cr_assert_eq(fdn_rate_limit(s, "one-more", 1, 3600000), FDN_ENOSPACE);
	cr_assert_eq(fdn_rate_limit(s, "id-7", 1, 3600000), 0, "id-7 keeps its window");
	tel_destroy(s, name);
}

Test(telemetry, local_tables_without_a_segment)
{
	cr_assert_eq(fdn_rate_limit(NULL, "local", 3, 3600000), 1);
	cr_assert_eq(fdn_rate_limit(NULL, "local", 3, 3600000), 1);
	cr_assert_eq(fdn_rate_limit(NULL, "local", 3, 3600000), 1);
	cr_assert_eq(fdn_rate_limit(NULL, "local", 3, 3600000), 0);
	cr_assert_eq(fdn_emit_once_per(NULL, "test.l", 60000, "k", 1, NULL, 0, NULL, 0), 1);
	cr_assert_eq(fdn_emit_once_per(NULL, "test.l", 60000, "k", 1, NULL, 0, NULL, 0), 0);
	static struct seen sn;
	cr_assert_eq(fdn_handler_attach("loc", "test.l", record, &sn), 0);
	set_sampler(NULL, "test.l.res", "reservoir(2)");
	int kept = 0;
	for (int i = 0; i < 5; i++)
		kept += fdn_emit(NULL, "test.l.res", NULL, 0, NULL, 0);
	cr_assert_eq(kept, 2);
	cr_assert_eq(atomic_load(&sn.n), 2);
	cr_assert_eq(fdn_handler_detach("loc"), 0);
}

/* Claims expire: 100 000 distinct keys, one after another, each with a
 * 1 ms interval, are all admitted (the table holds 4 096 slots; stale
 * claims are reused). */
Test(telemetry, once_per_100000_distinct_keys_all_admitted, .timeout = 120)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	char key[32];
	int refused = 0, first_bad = 0;
	for (int i = 0; i < 100000; i++) {
		int n = snprintf(key, sizeof(key), "key-%d", i);
		int r = fdn_emit_once_per(s, "test.keys", 1, key, (size_t)n, NULL, 0, NULL, 0);
		if (r != 1 && refused++ == 0)
			first_bad = r;
	}
	cr_assert_eq(refused, 0, "%d keys refused (first: %s)", refused, fdn_strerror(first_bad));
	tel_destroy(s, name);
}

static void once_keys_child(fdn_segment *c, int i, struct race *rc)
{
	char key[32];
	for (int k = 0; k < 10000; k++) {
		int n = snprintf(key, sizeof(key), "p%d-%d", i, k);
		int r = fdn_emit_once_per(c, "test.keys", 1, key, (size_t)n, NULL, 0, NULL, 0);
		if (r == 1)
			atomic_fetch_add(&rc->admitted[i], 1);
		else
			atomic_fetch_add(&rc->lost, 1);
	}
	/* Then one shared key, many times, 1 h interval: one winner in all. */
	for (int k = 0; k < 100; k++)
		if (fdn_emit_once_per(c, "test.keys", 3600000, "shared", 6, NULL, 0, NULL, 0) == 1)
			atomic_fetch_add(&rc->wins, 1);
}

/* The same across 8 processes (80 000 distinct keys, 1 ms), while they
 * reuse each other's stale slots; a key shared by all still wins once. */
Test(telemetry, once_per_keys_expire_across_processes, .timeout = 120)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	struct race *rc = t_shared(sizeof(*rc));
	run_children(name, 8, rc, once_keys_child);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(atomic_load(&rc->admitted[i]), 10000, "process %d: %d of 10000", i,
			     atomic_load(&rc->admitted[i]));
	cr_assert_eq(atomic_load(&rc->lost), 0);
	cr_assert_eq(atomic_load(&rc->wins), 1);
	tel_destroy(s, name);
}

/* A table full of live claims refuses a new key; once they are older than
 * their interval the same table admits new keys again. */
Test(telemetry, once_per_full_table_frees_up_when_claims_expire, .timeout = 60)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	char key[32];
	int n, r = 0, placed = 0;
	uint64_t t0 = now_ms();
	for (n = 0; n < 2 * (int)FDN_TEL_ONCE; n++) {
		int kl = snprintf(key, sizeof(key), "full-%d", n);
		r = fdn_emit_once_per(s, "test.full", 1500, key, (size_t)kl, NULL, 0, NULL, 0);
		if (r < 0)
			break;
		placed++;
	}
	cr_assert_lt(now_ms() - t0, 1500, "filling took longer than the interval");
	cr_assert_eq(r, FDN_ENOSPACE);
	cr_assert_geq(placed, (int)FDN_TEL_ONCE / 2, "refused after %d keys", placed);
	cr_assert_leq(placed, (int)FDN_TEL_ONCE);
	/* A placed key is still suppressed within its interval. */
	cr_assert_eq(fdn_emit_once_per(s, "test.full", 1500, "full-0", 6, NULL, 0, NULL, 0), 0);
	usleep(1600 * 1000);
	for (int i = 0; i < 1000; i++) {
		int kl = snprintf(key, sizeof(key), "later-%d", i);
		cr_assert_eq(
		    fdn_emit_once_per(s, "test.full", 1500, key, (size_t)kl, NULL, 0, NULL, 0), 1,
		    "key %d after the claims expired", i);
	}
	tel_destroy(s, name);
}

/* ---- batches -------------------------------------------------------------------- */

static void batch_child(fdn_segment *c, int i, struct race *rc)
{
	for (int k = 0; k < 25; k++) {
		int r = fdn_batch_add(c, "test.batch", i * 100 + k);
		if (r < 0)
			_exit(3);
		atomic_fetch_add(&rc->emitted, r);
	}
}

Test(telemetry, batches_emit_each_once)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	cr_assert_eq(fdn_batch_config(s, "test.batch", 10, 3600000), 0);
	struct race *rc = t_shared(sizeof(*rc));
	run_children(name, 4, rc, batch_child);
	cr_assert_geq(fdn_batch_flush(s, "test.batch"), 0);
	/* 10 summaries of 10 when no adder is preempted between its two
	 * steps for 2 ms; on a busy machine a void reservation can split
	 * one (batch_collect), and the value it leaves goes to a later
	 * summary, which then holds more than 10 (foundation/telemetry.h:
	 * "or values of an earlier generation"; seen under ASan on 2 busy
	 * CPUs).  What holds whatever the scheduling: every value in exactly
	 * one summary (the totals below). */
	static struct fdn_ring_event evs[64];
	int n = ring_collect(s, "test.batch", evs, 64, NULL);
	cr_assert_geq(n, 10);
	cr_assert_geq(n, atomic_load(&rc->emitted));
	double count = 0, sum = 0, mn = 1e9, mx = -1e9;
	for (int i = 0; i < n; i++) {
		cr_assert_geq(meas(&evs[i], "count"), 1, "a summary holds a value");
		count += meas(&evs[i], "count");
		sum += meas(&evs[i], "sum");
		mn = meas(&evs[i], "min") < mn ? meas(&evs[i], "min") : mn;
		mx = meas(&evs[i], "max") > mx ? meas(&evs[i], "max") : mx;
	}
	double want = 0;
	for (int i = 0; i < 4; i++)
		for (int k = 0; k < 25; k++)
			want += i * 100 + k;
	cr_assert_eq(count, 100);
	cr_assert_eq(sum, want);
	cr_assert_eq(mn, 0);
	cr_assert_eq(mx, 324);

	/* By age: three items, not due for an hour; then due at once. */
	cr_assert_eq(fdn_batch_config(s, "test.aged", 64, 3600000), 0);
	for (int i = 1; i <= 3; i++)
		cr_assert_eq(fdn_batch_add(s, "test.aged", i), 0);
	cr_assert_eq(fdn_batch_flush_due(s), 0);
	cr_assert_eq(fdn_batch_config(s, "test.aged", 64, 1), 0);
	usleep(3000);
	cr_assert_eq(fdn_batch_flush_due(s), 1);
	cr_assert_eq(fdn_batch_flush_due(s), 0);
	n = ring_collect(s, "test.aged", evs, 64, NULL);
	cr_assert_eq(n, 1, "aged summaries: %d", n);
	cr_assert_eq(meas(&evs[0], "count"), 3);
	cr_assert_eq(meas(&evs[0], "sum"), 6);
	cr_assert_eq(fdn_batch_flush(s, "test.aged"), 0, "empty");
	cr_assert_eq(fdn_batch_flush(s, "test.none"), FDN_ENOTFOUND);
	cr_assert_eq(fdn_batch_config(s, "test.aged", 65, 1), FDN_EINVAL);
	cr_assert_eq(fdn_batch_add(s, "test.aged", INFINITY), FDN_EINVAL);
	tel_destroy(s, name);
}

/* Summaries of test.exact, from whichever process emits them (the handler
 * is inherited by every forked adder). */
struct exact {
	_Atomic long long count, sum, missing, summaries;
};

static void exact_handler(const struct fdn_event *ev, void *arg)
{
	struct exact *x = arg;
	for (size_t i = 0; i < ev->nmeasurements; i++) {
		const struct fdn_measurement *m = &ev->measurements[i];
		if (strcmp(m->name, "count") == 0)
			atomic_fetch_add(&x->count, (long long)m->value);
		else if (strcmp(m->name, "sum") == 0)
			atomic_fetch_add(&x->sum, (long long)m->value);
		else if (strcmp(m->name, "missing") == 0)
			atomic_fetch_add(&x->missing, (long long)m->value);
	}
	atomic_fetch_add(&x->summaries, 1);
}

#define EXACT_ADDERS 8
#define EXACT_ADDS   20000
#define EXACT_ROUNDS 50

static double exact_value(int i, int k)
{
	return (double)(1 + (i * EXACT_ADDS + k) % 1009);
}

static void exact_child(fdn_segment *c, int i, struct race *rc)
{
	for (int k = 0; k < EXACT_ADDS; k++)
		if (fdn_batch_add(c, "test.exact", exact_value(i, k)) < 0)
			_exit(3);
}

/* Every value added lands in exactly one summary: 8 adders on their own
 * attachments beside two CPU-bound processes (on a 2-CPU machine adders
 * and emitters are preempted mid-operation all the time), 50 rounds, the
 * summed counts and sums exact and nothing reported missing.  A 2 ms age
 * limit makes due batches close beside full ones. */
Test(telemetry, batches_lose_nothing_beside_cpu_hogs, .timeout = 120)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	cr_assert_eq(fdn_batch_config(s, "test.exact", 64, 2), 0);
	struct exact *x = t_shared(sizeof(*x));
	struct race *rc = t_shared(sizeof(*rc));
	cr_assert_eq(fdn_handler_attach("exact", "test.exact", exact_handler, x), 0);
	pid_t hogs[2];
	for (int h = 0; h < 2; h++) {
		hogs[h] = fork();
		cr_assert_geq(hogs[h], 0);
		if (hogs[h] == 0)
			for (volatile unsigned long spin = 0;; spin++)
				;
		spawned[nspawned++] = hogs[h];
	}
	long long want_count = 0, want_sum = 0;
	for (int i = 0; i < EXACT_ADDERS; i++)
		for (int k = 0; k < EXACT_ADDS; k++)
			want_sum += (long long)exact_value(i, k);
	long long lost_rounds = 0, lost_values = 0;
	for (int round = 0; round < EXACT_ROUNDS; round++) {
		nspawned = 2; /* the adders of the last round have exited */
		run_children(name, EXACT_ADDERS, rc, exact_child);
		cr_assert_geq(fdn_batch_flush(s, "test.exact"), 0);
		want_count += EXACT_ADDERS * EXACT_ADDS;
		long long got = atomic_load(&x->count);
		if (got != want_count) {
			lost_rounds++;
			lost_values += want_count - got;
			want_count = got;
		}
	}
	for (int h = 0; h < 2; h++) {
		kill(hogs[h], SIGKILL);
		waitpid(hogs[h], NULL, 0);
	}
	nspawned = 0;
	cr_assert_eq(lost_values, 0, "%lld values lost in %lld of %d rounds", lost_values,
		     lost_rounds, EXACT_ROUNDS);
	cr_assert_eq(atomic_load(&x->sum), want_sum * EXACT_ROUNDS);
	cr_assert_eq(atomic_load(&x->missing), 0);
	struct fdn__tel t;
	cr_assert_eq(fdn__tel_ctx(s, false, &t), 0);
	uint64_t added = 0, missing = 0;
	for (uint32_t i = 0; i < FDN_TEL_BATCHES; i++) {
		struct fdn_shm_batch *b =
		    (void *)(t.region + FDN_TEL_OFF_BATCHES + (size_t)i * sizeof(*b));
		if (atomic_load(&b->tag) == 0)
			continue;
		added += atomic_load(&b->added);
		missing += atomic_load(&b->missing);
	}
	cr_assert_eq(added, (uint64_t)EXACT_ADDERS * EXACT_ADDS * EXACT_ROUNDS);
	cr_assert_eq(missing, 0);
	cr_assert_eq(fdn_handler_detach("exact"), 0);
	tel_destroy(s, name);
}

/* What each adder of a timed round added. */
struct timed {
	_Atomic int stop;
	_Atomic long long count[EXACT_ADDERS], sum[EXACT_ADDERS];
};

static void timed_child(fdn_segment *c, int i, struct timed *tm)
{
	for (int k = 0; !atomic_load(&tm->stop); k++) {
		double v = exact_value(i, k);
		if (fdn_batch_add(c, "test.exact", v) < 0)
			_exit(3);
		atomic_fetch_add(&tm->count[i], 1);
		atomic_fetch_add(&tm->sum[i], (long long)v);
	}
}

/* Adders stopped (SIGSTOP) at random moments for 20..300 ms -- inside a
 * reservation, between their two stores, or while emitting -- while the
 * others go on adding, 3 rounds of 2 s: still every value in exactly one
 * summary, none missing. */
Test(telemetry, batches_lose_nothing_with_adders_stopped, .timeout = 120)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	cr_assert_eq(fdn_batch_config(s, "test.exact", 64, 2), 0);
	struct exact *x = t_shared(sizeof(*x));
	struct race *rc = t_shared(sizeof(*rc));
	struct timed *tm = t_shared(sizeof(*tm));
	cr_assert_eq(fdn_handler_attach("exact", "test.exact", exact_handler, x), 0);
	int stops = 0;
	for (int round = 0; round < 3; round++) {
		pid_t pids[EXACT_ADDERS];
		atomic_store(&rc->ready, 0);
		atomic_store(&rc->go, 0);
		atomic_store(&tm->stop, 0);
		nspawned = 0;
		for (int i = 0; i < EXACT_ADDERS; i++) {
			pids[i] = fork();
			cr_assert_geq(pids[i], 0);
			if (pids[i] == 0) {
				fdn_segment *c;
				if (fdn_segment_attach(name, 0, &c))
					_exit(2);
				race_wait(rc);
				timed_child(c, i, tm);
				fdn_segment_detach(c);
				_exit(0);
			}
			spawned[nspawned++] = pids[i];
		}
		while (atomic_load(&rc->ready) < EXACT_ADDERS)
			sched_yield();
		atomic_store(&rc->go, 1);
		for (uint64_t end = now_ms() + 2000; now_ms() < end;) {
			int v = rand() % EXACT_ADDERS;
			if (kill(pids[v], SIGSTOP) == 0) {
				stops++;
				usleep(20000 + (useconds_t)(rand() % 280) * 1000);
				kill(pids[v], SIGCONT);
			}
			usleep(5000);
		}
		atomic_store(&tm->stop, 1);
		for (int i = 0; i < EXACT_ADDERS; i++)
			cr_assert(t_wait_ok(pids[i]), "adder %d", i);
		cr_assert_geq(fdn_batch_flush(s, "test.exact"), 0);
		long long count = 0, sum = 0;
		for (int i = 0; i < EXACT_ADDERS; i++) {
			count += atomic_load(&tm->count[i]);
			sum += atomic_load(&tm->sum[i]);
		}
		cr_assert_gt(count, 0);
		cr_assert_eq(atomic_load(&x->count), count, "round %d: %lld summarised, %lld added",
			     round, atomic_load(&x->count), count);
		cr_assert_eq(atomic_load(&x->sum), sum);
		cr_assert_eq(atomic_load(&x->missing), 0);
	}
	nspawned = 0;
	cr_assert_geq(stops, 10, "%d stops", stops);
	cr_assert_eq(fdn_handler_detach("exact"), 0);
	tel_destroy(s, name);
}

/* Reserve the next item of batch b's open generation by hand, as an adder
 * does, and mark it RESERVED by s's process (an adder between its two
 * stores).  Returns the item; *gen its generation. */
static struct fdn_shm_batch_item *reserve_by_hand(fdn_segment *s, struct fdn_shm_batch *b,
						  uint32_t *gen)
{
	uint64_t w = atomic_load(&b->ctl);
	uint32_t g = FDN_BATCH_GEN(w), c = FDN_BATCH_COUNT(w);
	uint64_t nw = FDN_BATCH_CTL(g, c + 1, c ? FDN_BATCH_T0(w) : (uint32_t)fdn__mono_ms());
	if (!atomic_compare_exchange_strong(&b->ctl, &w, nw))
		return NULL;
	struct fdn_shm_batch_item *it = &b->items[g & 1][c];
	atomic_store(&it->tag, FDN_BATCH_IT_TAG(g, FDN_BATCH_IT_RESERVED, fdn__batch_owner(s)));
	*gen = g;
	return it;
}

static struct fdn_shm_batch *batch_named(fdn_segment *s, const char *bname)
{
	struct fdn__tel t;
	cr_assert_eq(fdn__tel_ctx(s, false, &t), 0);
	for (uint32_t i = 0; i < FDN_TEL_BATCHES; i++) {
		struct fdn_shm_batch *b =
		    (void *)(t.region + FDN_TEL_OFF_BATCHES + (size_t)i * sizeof(*b));
		if (atomic_load(&b->tag) && strcmp(b->name, bname) == 0)
			return b;
	}
	cr_assert_fail("no batch %s", bname);
	return NULL;
}

/* missing counts the adder that died between reserving its item and
 * writing it, and nothing else; an adder stalled there past the emitter's
 * wait is not lost: its value reaches the next summary. */
Test(telemetry, batch_missing_counts_only_dead_adders)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	cr_assert_eq(fdn_batch_config(s, "test.dead", 64, 3600000), 0);
	struct exact *x = t_shared(sizeof(*x));
	cr_assert_eq(fdn_handler_attach("dead", "test.dead", exact_handler, x), 0);
	for (int i = 1; i <= 3; i++)
		cr_assert_eq(fdn_batch_add(s, "test.dead", i), 0);
	struct fdn_shm_batch *b = batch_named(s, "test.dead");
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0) {
		fdn_segment *c;
		uint32_t g;
		if (fdn_segment_attach(name, 0, &c) ||
		    !reserve_by_hand(c, batch_named(c, "test.dead"), &g))
			_exit(2);
		_exit(0); /* dies mid-add */
	}
	cr_assert(t_wait_ok(p));
	uint32_t g;
	struct fdn_shm_batch_item *it = reserve_by_hand(s, b, &g); /* stalled, alive */
	cr_assert_not_null(it);
	cr_assert_eq(fdn_batch_add(s, "test.dead", 4), 0);
	cr_assert_eq(fdn_batch_flush(s, "test.dead"), 1);
	cr_assert_eq(atomic_load(&x->summaries), 1);
	cr_assert_eq(atomic_load(&x->count), 4);
	cr_assert_eq(atomic_load(&x->sum), 10);
	cr_assert_eq(atomic_load(&x->missing), 1, "the dead adder");
	cr_assert_eq(atomic_load(&b->missing), 1);
	t_reclaim(s, p);
	/* The stalled adder finishes: its value is in the next summary. */
	double v = 100;
	uint64_t bits;
	memcpy(&bits, &v, sizeof(bits));
	atomic_store(&it->bits, bits);
	atomic_store(&it->tag,
		     FDN_BATCH_IT_TAG(g, FDN_BATCH_IT_WRITTEN, fdn__batch_check(bits, g)));
	cr_assert_eq(fdn_batch_flush(s, "test.dead"), 1);
	cr_assert_eq(atomic_load(&x->summaries), 2);
	cr_assert_eq(atomic_load(&x->count), 5);
	cr_assert_eq(atomic_load(&x->sum), 110);
	cr_assert_eq(atomic_load(&x->missing), 1);
	cr_assert_eq(fdn_batch_flush(s, "test.dead"), 0, "nothing left");
	cr_assert_eq(fdn_handler_detach("dead"), 0);
	tel_destroy(s, name);
}

/* ---- the ring -------------------------------------------------------------------- */

#define PRODUCERS 20
#define PER       1000

static void producer(fdn_segment *c, int i, struct race *rc)
{
	for (int k = 0; k < PER; k++) {
		struct fdn_measurement m[2] = {{"p", i}, {"i", k}};
		if (fdn_emit(c, "test.ring", m, 2, NULL, 0) != 1)
			_exit(3);
	}
}

/* Another process, read-only, follows the ring from ticket 0 until every
 * ticket is accounted for. */
static void follower(const char *name, struct race *rc)
{
	fdn_segment *s;
	if (fdn_segment_attach(name, FDN_SEG_READONLY, &s))
		_exit(2);
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	double last_i[PRODUCERS];
	uint64_t last_seq[PRODUCERS] = {0};
	for (int p = 0; p < PRODUCERS; p++)
		last_i[p] = -1;
	fdn_ring_cursor_init(s, &c, true);
	atomic_store(&rc->ready, 1);
	uint64_t deadline = now_ms() + 120000;
	long seen = 0, bad = 0;
	while (c.next < PRODUCERS * PER && now_ms() < deadline) {
		int r = fdn_ring_next(s, &c, &ev);
		if (r == 0) {
			usleep(100);
			continue;
		}
		if (r < 0 || strcmp(ev.name, "test.ring") != 0 || ev.nmeasurements != 2) {
			bad++;
			continue;
		}
		int p = (int)ev.measurements[0].value;
		double i = ev.measurements[1].value;
		if (p < 0 || p >= PRODUCERS || i <= last_i[p] || ev.seq <= last_seq[p])
			bad++;
		else
			last_i[p] = i, last_seq[p] = ev.seq;
		seen++;
	}
	atomic_store(&rc->seen, seen);
	atomic_store(&rc->lost, (long)c.lost);
	atomic_store(&rc->order_bad, bad);
	atomic_store(&rc->done, 1);
	fdn_segment_detach(s);
	_exit(0);
}

Test(telemetry, ring_follower_sees_all_it_could_in_order)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	struct race *rc = t_shared(sizeof(*rc));
	struct race *prc = t_shared(sizeof(*prc));
	pid_t f = fork();
	cr_assert_geq(f, 0);
	if (f == 0)
		follower(name, rc);
	spawned[nspawned++] = f;
	while (!atomic_load(&rc->ready))
		sched_yield();
	run_children(name, PRODUCERS, prc, producer);
	cr_assert(t_wait_ok(f), "follower");
	cr_assert_eq(atomic_load(&rc->done), 1);
	cr_assert_eq(atomic_load(&rc->order_bad), 0, "events out of order or malformed");
	long seen = atomic_load(&rc->seen), lost = atomic_load(&rc->lost);
	cr_assert_eq(seen + lost, PRODUCERS * PER, "seen %ld + lost %ld", seen, lost);
	cr_assert_geq(seen, 4096, "the last lap stays readable");
	struct fdn_ring_stats st;
	cr_assert_eq(fdn_ring_stats(s, &st), 0);
	cr_assert_eq(st.written, PRODUCERS * PER);
	cr_assert_eq(st.overwritten, PRODUCERS * PER - 4096);
	/* A reader from the oldest now: the last lap, every ticket of it
	 * accounted for.  A producer preempted between its ticket and its
	 * record for a whole lap (a busy machine) writes over one record of
	 * the last lap: at most one per producer is lost that way. */
	static struct fdn_ring_event evs[4096];
	uint64_t lost_now;
	int got = ring_collect(s, "test.ring", evs, 4096, &lost_now);
	cr_assert_eq((uint64_t)got + lost_now, 4096, "got %d, lost %llu", got,
		     (unsigned long long)lost_now);
	cr_assert_geq(got, 4096 - PRODUCERS, "got %d, lost %llu", got,
		      (unsigned long long)lost_now);
	tel_destroy(s, name);
}

Test(telemetry, ring_records_fields_truncation_and_an_abandoned_record)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 8);
	struct fdn_measurement m[2] = {{"duration_ns", 1234.5}, {"n", -2}};
	const char *items[] = {"a", "b"};
	struct fdn_attr a[3] = {{.name = "who", .type = FDN_ATTR_STRING, .v.s = "me"},
				{.name = "k", .type = FDN_ATTR_INT, .v.i = 7},
				{.name = "l", .type = FDN_ATTR_LIST, .v.list = {items, 2}}};
	cr_assert_eq(fdn_emit(s, "test.fields", m, 2, a, 3), 1);
	static char big[400];
	memset(big, 'x', sizeof(big) - 1);
	struct fdn_attr b[2] = {{.name = "small", .type = FDN_ATTR_BOOL, .v.b = true},
				{.name = "big", .type = FDN_ATTR_STRING, .v.s = big}};
	cr_assert_eq(fdn_emit(s, "test.big", m, 2, b, 2), 1);
	static struct fdn_ring_event ev[4];
	cr_assert_eq(ring_collect(s, "test.fields", ev, 4, NULL), 1);
	cr_assert_eq(ev[0].pid, getpid());
	cr_assert_eq(ev[0].tid, gettid());
	cr_assert_eq(ev[0].ticket, 0);
	cr_assert_eq(ev[0].nmeasurements, 2);
	cr_assert_str_eq(ev[0].measurements[0].name, "duration_ns");
	cr_assert_eq(ev[0].measurements[0].value, 1234.5);
	cr_assert_eq(ev[0].measurements[1].value, -2);
	cr_assert_not(ev[0].truncated);
	struct fdn_attr got;
	cr_assert_eq(fdn_attrs_get(ev[0].attrs, ev[0].attrs_len, "who", &got), 0);
	cr_assert_str_eq(got.v.s, "me");
	cr_assert_eq(fdn_attrs_get(ev[0].attrs, ev[0].attrs_len, "l", &got), 0);
	cr_assert_eq(got.v.list.n, 2);
	cr_assert_eq(ring_collect(s, "test.big", ev, 4, NULL), 1);
	cr_assert(ev[0].truncated);
	cr_assert_eq(fdn_attrs_count(ev[0].attrs, ev[0].attrs_len), 1, "the prefix that fits");

	/* A producer killed mid-write: its record stays odd; a reader skips
	 * it after its wait and counts it; the next lap takes it over. */
	struct fdn_shm_event *ring;
	uint32_t n;
	cr_assert_eq(fdn__ring_map(s, &ring, &n), 0);
	uint64_t t = atomic_fetch_add(
	    &((struct fdn_shm_tel_hdr *)(void *)s->hdr->telemetry_hdr)->ring_head, 1);
	atomic_store(&ring[t % n].seq, 2 * t + 1);
	cr_assert_eq(fdn_emit(s, "test.after", NULL, 0, NULL, 0), 1);
	struct fdn_ring_cursor c;
	cr_assert_eq(fdn_ring_cursor_init(s, &c, true), 0);
	c.wait_ms = 5;
	int got_n = 0;
	while (fdn_ring_next(s, &c, &ev[0]) == 1)
		got_n++;
	cr_assert_eq(got_n, 3);
	cr_assert_eq(c.lost, 1);
	cr_assert_eq(c.incomplete, 1);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(fdn_emit(s, "test.lap", NULL, 0, NULL, 0), 1);
	cr_assert_eq(ring_collect(s, "test.lap", ev, 4, NULL), 4);
	uint64_t lost;
	static struct fdn_ring_event all[8];
	cr_assert_eq(ring_collect(s, "test.lap", all, 8, &lost), 8);
	cr_assert_eq(lost, 0, "the abandoned record was overwritten by the next lap");
	tel_destroy(s, name);
}

/* ---- bad input -------------------------------------------------------------------- */

Test(telemetry, bad_input_gets_its_error)
{
	static struct seen sn;
	cr_assert_eq(fdn_handler_attach("bad", "", record, &sn), 0);
	const char *bad[] = {"", ".a", "a.", "a..b", "a b", "é", "a/b"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(fdn_emit(NULL, bad[i], NULL, 0, NULL, 0), FDN_EEVNAME, "'%s'", bad[i]);
	cr_assert_eq(fdn_emit(NULL, NULL, NULL, 0, NULL, 0), FDN_EEVNAME);
	char longname[200];
	memset(longname, 'a', 128);
	longname[128] = 0;
	cr_assert_eq(fdn_emit(NULL, longname, NULL, 0, NULL, 0), FDN_EEVNAME);
	longname[127] = 0;
	cr_assert_eq(fdn_emit(NULL, longname, NULL, 0, NULL, 0), 1);
	struct fdn_measurement m = {"ok", INFINITY};
	cr_assert_eq(fdn_emit(NULL, "test.m", &m, 1, NULL, 0), FDN_EINVAL);
	m = (struct fdn_measurement){"bad name", 1};
	cr_assert_eq(fdn_emit(NULL, "test.m", &m, 1, NULL, 0), FDN_EINVAL);
	cr_assert_eq(fdn_emit(NULL, "test.m", NULL, 1, NULL, 0), FDN_EINVAL);
	struct fdn_attr a = {.name = "", .type = FDN_ATTR_STRING, .v.s = "v"};
	cr_assert_eq(fdn_emit(NULL, "test.m", NULL, 0, &a, 1), FDN_EINVMETA);
	cr_assert_eq(atomic_load(&sn.n), 1, "only the valid event was delivered");
	cr_assert_eq(fdn_handler_detach("bad"), 0);
	cr_assert_eq(fdn_handler_attach("", "x", record, &sn), FDN_EINVAL);
	cr_assert_eq(fdn_handler_attach("y", "x", NULL, &sn), FDN_EINVAL);
}

/* ---- the services' events --------------------------------------------------------- */

struct captured {
	int n;
	char names[8][64];
	char results[8][32];
	double duration[8];
	double pid[8];
};

static void capture(const struct fdn_event *ev, void *arg)
{
	struct captured *c = arg;
	if (c->n >= 8)
		return;
	snprintf(c->names[c->n], 64, "%s", ev->name);
	for (size_t i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, "result") == 0)
			snprintf(c->results[c->n], 32, "%s", ev->attrs[i].v.s);
	for (size_t i = 0; i < ev->nmeasurements; i++) {
		if (strcmp(ev->measurements[i].name, "duration_ns") == 0)
			c->duration[c->n] = ev->measurements[i].value;
		if (strcmp(ev->measurements[i].name, "pid") == 0)
			c->pid[c->n] = ev->measurements[i].value;
	}
	c->n++;
}

static void ignore_event(const struct fdn_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
}

/* The registry's calls, as read from the ring: with no handler attached
 * they are written in compact form (shm/layout_svc.h, FDN_EVENT_REG) and
 * expanded by the reader; with a handler, in text form.  A reader sees
 * the same event either way: name, measurement duration_ns, and attribute
 * bytes equal (result, backend, key; no key when it is not text). */
static int registry_calls(fdn_segment *s, struct fdn_ring_event *ev, int cap)
{
	struct fdn_entry e;
	cr_assert_eq(fdn_register(s, "svc", 3, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(fdn_lookup(s, "a\0b", 3, 0, &e), FDN_ENOTFOUND);
	cr_assert_eq(fdn_unregister(s, "svc", 3), 0);
	cr_assert_eq(fdn_unregister(s, "svc", 3), FDN_ENOTFOUND);
	struct fdn_ring_cursor c;
	static struct fdn_ring_event one;
	int n = 0;
	cr_assert_eq(fdn_ring_cursor_init(s, &c, true), 0);
	while (fdn_ring_next(s, &c, &one) == 1)
		if (strncmp(one.name, "foundation.registry.", 20) == 0 && n < cap)
			ev[n++] = one;
	cr_assert_eq(c.lost, 0);
	return n;
}

Test(telemetry, registry_events_compact_and_text_read_alike)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	set_sampler(s, "foundation.registry.lookup", "always");
	static struct fdn_ring_event compact[8], text[16];
	int n = registry_calls(s, compact, 8);
	cr_assert_eq(n, 5);
	const char *want[5][3] = {{"foundation.registry.register", "ok", "svc"},
				  {"foundation.registry.lookup", "ok", "svc"},
				  {"foundation.registry.lookup", "FDN_ENOTFOUND", NULL},
				  {"foundation.registry.unregister", "ok", "svc"},
				  {"foundation.registry.unregister", "FDN_ENOTFOUND", "svc"}};
	for (int i = 0; i < 5; i++) {
		struct fdn_attr a;
		cr_assert_str_eq(compact[i].name, want[i][0]);
		cr_assert_eq(compact[i].pid, getpid());
		cr_assert_geq(meas(&compact[i], "duration_ns"), 0);
		cr_assert_eq(compact[i].nmeasurements, 1);
		cr_assert_eq(fdn_attrs_get(compact[i].attrs, compact[i].attrs_len, "result", &a),
			     0);
		cr_assert_str_eq(a.v.s, want[i][1]);
		cr_assert_eq(fdn_attrs_get(compact[i].attrs, compact[i].attrs_len, "backend", &a),
			     0);
		cr_assert_str_eq(a.v.s, "shared");
		int k = fdn_attrs_get(compact[i].attrs, compact[i].attrs_len, "key", &a);
		if (want[i][2]) {
			cr_assert_eq(k, 0);
			cr_assert_str_eq(a.v.s, want[i][2]);
		} else {
			cr_assert_eq(k, FDN_ENOTFOUND, "a key that is not text has no attribute");
		}
	}
	/* With a handler attached: the text form, the same bytes. */
	cr_assert_eq(fdn_handler_attach("t", "foundation.registry", ignore_event, NULL), 0);
	cr_assert_eq(registry_calls(s, text, 16), 10);
	cr_assert_eq(fdn_handler_detach("t"), 0);
	for (int i = 0; i < 5; i++) {
		cr_assert_str_eq(text[5 + i].name, compact[i].name);
		cr_assert_eq(text[5 + i].nmeasurements, 1);
		cr_assert_str_eq(text[5 + i].measurements[0].name, "duration_ns");
		cr_assert_eq(text[5 + i].attrs_len, compact[i].attrs_len);
		cr_assert_eq(memcmp(text[5 + i].attrs, compact[i].attrs, compact[i].attrs_len), 0);
	}
	tel_destroy(s, name);
}

Test(telemetry, registry_and_reaper_events)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	static struct captured reg, down;
	cr_assert_eq(fdn_handler_attach("reg", "foundation.registry", capture, &reg), 0);
	cr_assert_eq(fdn_handler_attach("down", "foundation.process", capture, &down), 0);
	/* A new segment samples lookups `never`; this test wants them. */
	struct fdn_sampler_stats lst;
	cr_assert_eq(fdn_sampler_get(s, "foundation.registry.lookup", &lst), 0);
	cr_assert_eq(lst.sampler.kind, FDN_SAMPLER_NEVER);
	struct fdn_sampler always = {FDN_SAMPLER_ALWAYS, 0};
	cr_assert_eq(fdn_sampler_set(s, "foundation.registry.lookup", &always), 0);
	cr_assert_eq(fdn_register(s, "svc", 3, getpid(), NULL, 0, 0, NULL), 0);
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(fdn_lookup(s, "nope", 4, 0, &e), FDN_ENOTFOUND);
	struct fdn_attr a = {.name = "load", .type = FDN_ATTR_INT, .v.i = 1};
	cr_assert_eq(fdn_merge_attributes(s, "svc", 3, &a, 1), 0);
	cr_assert_eq(fdn_unregister(s, "svc", 3), 0);
	cr_assert_eq(reg.n, 5);
	const char *want[5][2] = {{"foundation.registry.register", "ok"},
				  {"foundation.registry.lookup", "ok"},
				  {"foundation.registry.lookup", "FDN_ENOTFOUND"},
				  {"foundation.registry.merge", "ok"},
				  {"foundation.registry.unregister", "ok"}};
	for (int i = 0; i < 5; i++) {
		cr_assert_str_eq(reg.names[i], want[i][0]);
		cr_assert_str_eq(reg.results[i], want[i][1]);
		cr_assert_geq(reg.duration[i], 0);
	}
	static struct fdn_ring_event ev[8];
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 8, NULL), 2);
	struct fdn_attr got;
	cr_assert_eq(fdn_attrs_get(ev[0].attrs, ev[0].attrs_len, "key", &got), 0);
	cr_assert_str_eq(got.v.s, "svc");
	cr_assert_eq(fdn_attrs_get(ev[0].attrs, ev[0].attrs_len, "backend", &got), 0);
	cr_assert_str_eq(got.v.s, "shared");

	/* A lookup whose event is sampled `never` is not emitted at all. */
	set_sampler(s, "foundation.registry.lookup", "never");
	cr_assert_eq(fdn_lookup(s, "nope", 4, 0, &e), FDN_ENOTFOUND);
	cr_assert_eq(reg.n, 5);

	/* A process dies holding its slot; reaping it emits process.down. */
	pid_t p = fork();
	if (p == 0) {
		fdn_segment *c;
		_exit(fdn_segment_attach(name, 0, &c) ? 2 : 7);
	}
	int st;
	cr_assert_eq(waitpid(p, &st, 0), p);
	uint32_t idx;
	cr_assert_eq(fdn__proc_find(s, p, &idx), 0);
	struct fdn__dead d = {.idx = idx,
			      .word = atomic_load(&s->procs[idx].word),
			      .exit_signal = 0,
			      .exit_status = 7,
			      .record = true};
	cr_assert_eq(fdn__reap_batch(s, &d, 1, fdn__mono_ns()), 0);
	cr_assert_eq(down.n, 1);
	cr_assert_str_eq(down.names[0], "foundation.process.down");
	cr_assert_eq(down.pid[0], p);
	cr_assert_eq(ring_collect(s, "foundation.process.down", ev, 8, NULL), 1);
	cr_assert_eq(meas(&ev[0], "exit_status"), 7);
	cr_assert_eq(meas(&ev[0], "pid"), p);
	cr_assert_eq(fdn_handler_detach("reg"), 0);
	cr_assert_eq(fdn_handler_detach("down"), 0);
	tel_destroy(s, name);
}

/* ---- the audit ---------------------------------------------------------------------- */

static void count_cb(void *arg, const char *code, const char *msg)
{
	(*(int *)arg)++;
}

Test(telemetry, checker_finds_damage_in_the_telemetry_region)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 64);
	set_sampler(s, "test.a", "random(0.5)");
	cr_assert_eq(fdn_rate_limit(s, "r", 1, 1000), 1);
	cr_assert_eq(fdn_emit(s, "test.a", NULL, 0, NULL, 0) >= 0, 1);
	int v = 0;
	cr_assert_eq(fdn__telemetry_check(s, count_cb, &v), 0);
	unsigned char *region = s->base + s->hdr->svc[FDN_SVC_TELEMETRY].off;
	struct fdn_shm_sampler *sp = (struct fdn_shm_sampler *)(void *)region;
	uint32_t i = 0;
	while (atomic_load(&sp[i].tag) == 0)
		i++;
	uint64_t spec = atomic_load(&sp[i].spec);
	atomic_store(&sp[i].spec, FDN_SPEC_WORD(9, 0, 0));
	cr_assert_eq(fdn__telemetry_check(s, count_cb, &v), 1);
	atomic_store(&sp[i].spec, spec);
	/* The same tag twice, and a slot cut off from its home. */
	uint32_t j = (i + 7) % FDN_TEL_SAMPLERS;
	atomic_store(&sp[j].tag, atomic_load(&sp[i].tag));
	cr_assert_geq(fdn__telemetry_check(s, NULL, NULL), 2);
	atomic_store(&sp[j].tag, 0);
	/* A ring record claiming a ticket never issued. */
	struct fdn_shm_event *ring;
	uint32_t n;
	cr_assert_eq(fdn__ring_map(s, &ring, &n), 0);
	atomic_store(&ring[5].seq, 2 * (64 + 5) + 2);
	cr_assert_eq(fdn__telemetry_check(s, NULL, NULL), 1);
	atomic_store(&ring[5].seq, 0);
	cr_assert_eq(fdn_segment_check(s, NULL, NULL), 0);
	tel_destroy(s, name);
}

/* A lookup's event check reads the segment's lookup sampler where it found
 * it once (lib/telemetry.h, fdn__emit_enabled): a change of that sampler,
 * or of the flags that put the ring and the samplers in the segment, made
 * by another process, applies to the very next lookup. */
static void in_child(const char *name, const char *what, const char *value)
{
	pid_t p = fork();
	if (p == 0) {
		fdn_segment *c;
		int r = fdn_segment_attach(name, 0, &c);
		if (r == 0 && strcmp(what, "sampler") == 0) {
			struct fdn_sampler sp;
			r = fdn_sampler_parse(value, &sp);
			if (r == 0)
				r = fdn_sampler_set(c, "foundation.registry.lookup", &sp);
		} else if (r == 0) {
			r = fdn_flag_set(c, what, atoi(value));
		}
		/* Its process slot given back: no reaper runs here. */
		if (fdn_segment_detach(c) != 0)
			r = -1;
		_exit(r == 0 ? 0 : 3);
	}
	int st;
	cr_assert_eq(waitpid(p, &st, 0), p);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child setting %s to %s", what, value);
}

Test(telemetry, lookup_events_follow_their_sampler_at_once)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	static struct fdn_ring_event ev[16];
	struct fdn_entry e;
	cr_assert_eq(fdn_register(s, "svc", 3, getpid(), NULL, 0, 0, NULL), 0);
	/* `never` by default: lookups leave no record. */
	for (int i = 0; i < 3; i++)
		cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 16, NULL), 0);
	/* Sampled events off the segment: this process's own sampler, which
	 * has not been set (`always`), decides -- a record. */
	in_child(name, "use_shm_sampled_events", "0");
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 16, NULL), 1);
	in_child(name, "use_shm_sampled_events", "100");
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 16, NULL), 1);
	/* The segment's sampler set `always` by another process. */
	in_child(name, "sampler", "always");
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 16, NULL), 2);
	/* The ring off the segment: no record, whatever the sampler says. */
	in_child(name, "use_shm_telemetry", "0");
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	in_child(name, "use_shm_telemetry", "100");
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 16, NULL), 2);
	in_child(name, "sampler", "never");
	cr_assert_eq(fdn_lookup(s, "svc", 3, 0, &e), 0);
	cr_assert_eq(ring_collect(s, "foundation.registry.lookup", ev, 16, NULL), 2);
	cr_assert_eq(fdn_unregister(s, "svc", 3), 0);
	tel_destroy(s, name);
}

/* ---- times -------------------------------------------------------------------- */

static int64_t clock_i64(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static _Atomic int64_t handler_skew_max;
static _Atomic int handler_events;

static void skew_handler(const struct fdn_event *ev, void *arg)
{
	int64_t off = *(const int64_t *)arg;
	int64_t d = (int64_t)(ev->time_ns - ev->mono_ns) - off;
	d = d < 0 ? -d : d;
	if (d > atomic_load(&handler_skew_max))
		atomic_store(&handler_skew_max, d);
	atomic_fetch_add(&handler_events, 1);
}

/* The wall-clock times the library derives from a monotonic reading
 * (shm/clock.c, fdn__real_of) are the wall clock at that reading: an
 * event's time_ns - mono_ns is the clocks' offset, in the ring and in a
 * handler, and an entry's registered_ns lies within its register call.
 * Over 60 ms of calls, so that the offset is measured again.  The bound
 * (50 ms) is what two clock reads preempted apart may differ by on a busy
 * machine; an offset left out or stale by a whole step is seconds or
 * years. */
Test(telemetry, times_are_the_wall_clock_at_their_monotonic_reading)
{
	char name[128];
	fdn_segment *s = tel_create(name, sizeof(name), 4096);
	const int64_t bound = 50 * 1000000;
	int64_t off = clock_i64(CLOCK_REALTIME) - clock_i64(CLOCK_MONOTONIC);
	for (int round = 0; round < 30; round++) {
		int64_t before = clock_i64(CLOCK_REALTIME);
		cr_assert_eq(fdn_register(s, "timed", 5, getpid(), NULL, 0, 0, NULL), 0);
		int64_t after = clock_i64(CLOCK_REALTIME);
		struct fdn_entry e;
		cr_assert_eq(fdn_lookup(s, "timed", 5, 0, &e), 0);
		cr_assert_geq((int64_t)e.registered_ns, before - bound, "round %d", round);
		cr_assert_leq((int64_t)e.registered_ns, after + bound, "round %d", round);
		cr_assert_eq(fdn_unregister(s, "timed", 5), 0);
		struct timespec d = {0, 2000000};
		nanosleep(&d, NULL);
	}
	static struct fdn_ring_event evs[64];
	const char *names[] = {"foundation.registry.register", "foundation.registry.unregister"};
	for (int k = 0; k < 2; k++) {
		int n = ring_collect(s, names[k], evs, 64, NULL);
		cr_assert_eq(n, 30, "%s: %d events", names[k], n);
		for (int i = 0; i < n; i++) {
			int64_t d = (int64_t)(evs[i].time_ns - evs[i].mono_ns) - off;
			cr_assert_lt(d < 0 ? -d : d, bound, "%s: time_ns - mono_ns is %lld ns off",
				     names[k], (long long)d);
		}
	}
	cr_assert_eq(fdn_handler_attach("skew", "app.timed", skew_handler, &off), 0);
	for (int i = 0; i < 30; i++) {
		cr_assert_eq(fdn_emit(s, "app.timed", NULL, 0, NULL, 0), 1);
		struct timespec d = {0, 2000000};
		nanosleep(&d, NULL);
	}
	cr_assert_eq(fdn_handler_detach("skew"), 0);
	cr_assert_eq(atomic_load(&handler_events), 30);
	cr_assert_lt(atomic_load(&handler_skew_max), bound, "a handler's event is %lld ns off",
		     (long long)atomic_load(&handler_skew_max));
	tel_destroy(s, name);
}
