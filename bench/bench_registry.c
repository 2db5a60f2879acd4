/*
 * bench_registry.c - fdn-bench-registry: the registry's public API, against
 * process-local liburcu cds_lfht and LMDB doing the same work.
 *
 * What is measured, all in one run:
 *
 * 1. reaper_latency.  A private segment with the library's default sizing;
 *    the library starts its reaper from $FOUNDATION_REAPERD (set here to
 *    ../tools/foundation-reaperd next to this program when unset).  For
 *    E = 1 and E = 1000: fork a child that attaches, registers E keys for
 *    itself (attributes capability and node, both indexed), says so through
 *    a MAP_SHARED page and pauses.  1 ms later (the reaper opened the
 *    child's pidfd when its attach rang the doorbell) the parent reads
 *    CLOCK_MONOTONIC, SIGKILLs the child and blocks in fdn_watch(last key,
 *    absent); then all E keys must miss fdn_lookup.  Per death:
 *      parent   kill -> fdn_watch returns: what another process sees;
 *      reaper   the graveyard's latency_ns: the reaper's wake-up to the
 *               owner's slot marked dead (which hides all its entries);
 *      purged   kill -> the graveyard record appears: the reaper writes it
 *               after removing the entries and their index references
 *               (polled every 10 us).
 *    200 deaths per E (--quick: 20); p50, p99 (nearest rank) and max.
 *
 * 2. register_unregister.  10 000 background entries "agent-%08d"
 *    (capability one of 8 values, integer weight); then P pairs register +
 *    unregister of the next 4096 keys in turn, with the same 2 attributes,
 *    capability indexed:
 *      foundation           fdn_register + fdn_unregister, capability one of
 *                           the background's 8 values;
 *      foundation (unique)  the same with a value no other entry carries
 *                           (the index chain of a value holds every entry
 *                           carrying it: this row shows what that costs);
 *      cds_lfht             malloc a node, encode the attributes, add_unique;
 *                           lookup + del; nodes freed after synchronize_rcu
 *                           every 1024 deletions (timed);
 *      cds_lfht+index       the same plus a (value, key) reference added and
 *                           deleted in a second cds_lfht, as Foundation's
 *                           index does (hashed over the whole reference);
 *      lmdb (txn per pair)  put + del in one write transaction per pair;
 *      lmdb (batched)       1000 pairs per write transaction.
 *      redis                SET key record NX, then DEL, to a redis-server
 *                           this program starts on a private unix socket
 *                           (bench_common.c): one round trip per command on
 *                           the first --redis-pairs pairs, and 64 pairs
 *                           per round trip.
 *    LMDB runs with MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP in a /tmp
 *    directory removed afterwards.
 *
 * 3. read_scaling and read_under_churn.  A segment of 1 000 000 entries
 *    (--quick: 10 000; one int attribute each, not indexed); k = 1, 2, .. CPUs
 *    reader processes, forked, each attached anew, each looking up its own
 *    random stream of present keys with fdn_lookup; with and without one
 *    more process registering and unregistering 4096 other keys as fast as
 *    it can.  They start together and stop after a 1 s window (100 ms);
 *    each reader times itself and the readers' lookups/s are summed; best
 *    of 3.  read_scaling gives k readers against 1 (target 2 >= 1.8 x 1);
 *    read_under_churn, per k, with the writer against without (target
 *    >= 0.8).  Every lookup must hit the right owner.
 *
 * 4. memory.  1 000 000 entries (--quick: 100 000), 14-byte keys, one
 *    string attribute (not indexed) encoding to 64 bytes, registered into
 *    a fresh segment; bytes per entry from fdn_segment_stats: the
 *    allocator's blocks in use (after - before), with the bucket arrays,
 *    and with the allocator's block state words of the heap pages claimed
 *    (8 bytes per 64-byte granule, layout.h), against the payload (key +
 *    attribute bytes); target <= 1.5 x payload + 64 on the last.
 *
 * 5. changefeed_latency.  S = 1 and S = 16 subscriber processes (forked,
 *    each attached anew, each with a subscription to "lat/" in an epoll
 *    loop); the parent registers N keys (2000; --quick 200), one every
 *    200 us.  For every (change, subscriber) pair: the change's time_ns
 *    (CLOCK_REALTIME, taken by the writer just before its CAS) to the
 *    moment fdn_subscription_read returned it in the subscriber, after
 *    epoll said the fd was readable.  p50, p99, max; target p99 <= 1 ms.
 *
 * 6. changefeed_throughput.  register + unregister pairs (no attributes,
 *    4096 keys in turn) on four segments built first: one created with the
 *    change log off, and three with it on and 0, 1 and 16 subscriber
 *    processes reading everything as it comes (epoll loops); interleaved
 *    rounds as in 2, after one untimed lap of the log on each segment (its
 *    pages faulted in).  Target: log on, no subscriber >= 0.9 x log off.
 *
 * The compared systems of 2 are one file each, bench/sys_*.c (systems.h),
 * shared with fdn-bench; this file holds the scenarios, options and
 * reporting.
 *
 * How.  Throughput is timed with CLOCK_MONOTONIC around
 * the whole loop, best of 3 runs (--quick: 1).  Correctness failures -- a
 * key still visible after its owner died, a lookup that misses or returns
 * a wrong entry, a failed register or unregister -- go to stderr and make
 * the exit status 1.  Timing never fails the run: the SPEC targets (reaper
 * p99 <= 1 ms as the parent sees it; register+unregister foundation >= 1x
 * cds_lfht) are printed as met / MISSED and the status stays 0.
 *
 * Output (bench_common.h): a table per result, then its SPEC targets; with
 * --json one JSON object per result on stdout (tables on stderr);
 * --json-file PATH writes the JSON there and the tables to stdout.
 */
#include <foundation/changes.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/segment.h>

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

#include "bench_common.h"
#include "systems.h"

#define PROG "fdn-bench-registry"

#define STREAM_SEED 0x2545F4914F6CDD1Dull

#define REAP_TARGET_US 1000.0
#define SETTLE_NS      1000000L /* after "ready", before the kill */
#define POLL_NS        10000L
#define WATCH_MS       10000
#define RECORD_WAIT_NS 10000000000ull

#define NNODES      1000u /* a multiple of NCAPS */
#define PAIR_TARGET 1.0
#define LMDB_BATCH  1000u

static const unsigned reap_sizes[] = {1, 1000};
#define NREAP (sizeof(reap_sizes) / sizeof(reap_sizes[0]))

struct opts {
	struct bench_cli cli; /* --json, --json-file, --quick */
	const char *argv0;
	int reps;        /* read scaling: best of */
	unsigned rounds; /* register_unregister: interleaved rounds */
	double round_ms;
	unsigned deaths;
	size_t pairs, redis_pairs;
	uint64_t scale_entries, mem_entries;
	long scale_ms;
	unsigned only; /* bit i: run scenarios[i]; 0: all */
};

/* ---- cleanup on the way out, signals included ----------------------------- */

const char *const bench_prog = PROG;

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- attributes ------------------------------------------------------------- */

static char g_nodes[NNODES][16];

static void attrs_cap_node(struct fdn_attr a[2], uint64_t i)
{
	a[0] = (struct fdn_attr){.name = "capability", .type = FDN_ATTR_STRING};
	a[0].v.s = g_caps[i % NCAPS];
	a[1] = (struct fdn_attr){.name = "node", .type = FDN_ATTR_STRING};
	a[1].v.s = g_nodes[i % NNODES];
}

static void attrs_init(void)
{
	for (unsigned i = 0; i < NNODES; i++)
		snprintf(g_nodes[i], sizeof(g_nodes[i]), "node-%u", i);
}

/* ==== 1. reaper latency =========================================================== */

struct ready_page {
	_Atomic int state; /* 0 starting, 1 ready, 2 failed */
	int err, at;
};

struct lat {
	double p50, p99, max; /* microseconds */
};

struct reap_result {
	unsigned e, deaths, odd; /* odd: records with other signal or count */
	struct lat parent, reaper, purged;
};

struct reap_run {
	struct seg g;
	struct ready_page *page;
	unsigned e;
	uint32_t idle_procs; /* process slots in use with no child: us and the reaper */
	double *parent_us, *reaper_us, *purged_us;
	unsigned odd, busy;
};

static void reap_key(struct key *k, unsigned round, unsigned i)
{
	k->len = (uint32_t)snprintf(k->s, sizeof(k->s), "dead-%06u-%06u", round, i);
}

static __attribute__((noreturn)) void child_main(const char *name, unsigned e, unsigned round,
						 struct ready_page *pg, pid_t parent)
{
	bench_set_signals(SIG_DFL);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	fdn_segment *s;
	int r = fdn_segment_attach(name, 0, &s);
	for (unsigned i = 0; r == 0 && i < e; i++) {
		struct key k;
		struct fdn_attr a[2];
		reap_key(&k, round, i);
		attrs_cap_node(a, i);
		r = fdn_register(s, k.s, k.len, getpid(), a, 2, 0, NULL);
		pg->at = (int)i;
	}
	if (r) {
		pg->err = r;
		atomic_store(&pg->state, 2);
		_exit(1);
	}
	atomic_store(&pg->state, 1);
	for (;;)
		pause();
}

static void child_reap(pid_t p)
{
	int st;
	while (waitpid(p, &st, 0) < 0 && errno == EINTR)
		;
	bench_kill_pid = 0;
}

static int child_wait_ready(pid_t p, struct ready_page *pg)
{
	uint64_t t0 = mono_ns();
	for (;;) {
		int st = atomic_load(&pg->state);
		if (st == 1)
			return 0;
		if (st == 2)
			return bench_fail("child %d: attach or register (key %d): %s", (int)p,
					  pg->at, fdn_strerror(pg->err));
		int ws;
		if (waitpid(p, &ws, WNOHANG) == p) {
			bench_kill_pid = 0;
			return bench_fail("child %d ended before it was ready (status 0x%x)",
					  (int)p, ws);
		}
		if (mono_ns() - t0 > 30000000000ull)
			return bench_fail("child %d not ready after 30 s", (int)p);
		sleep_ns(50000L);
	}
}

static pid_t child_start(struct reap_run *rr, unsigned round)
{
	atomic_store(&rr->page->state, 0);
	pid_t p = fork();
	if (p < 0) {
		bench_fail("fork: %s", strerror(errno));
		return -1;
	}
	if (p == 0)
		child_main(rr->g.name, rr->e, round, rr->page, g_pid);
	bench_kill_pid = p;
	if (child_wait_ready(p, rr->page)) {
		if (bench_kill_pid) {
			kill(p, SIGKILL);
			child_reap(p);
		}
		return -1;
	}
	return p;
}

/* Wait until the reaper has recorded one more death: the time it appeared. */
static int wait_record(fdn_segment *s, uint64_t before, uint64_t *at)
{
	uint64_t t0 = mono_ns();
	while (fdn_deaths(s) == before) {
		if (mono_ns() - t0 > RECORD_WAIT_NS)
			return -1;
		sleep_ns(POLL_NS);
	}
	*at = mono_ns();
	return 0;
}

/* Every key of the dead child must miss. */
static int verify_gone(struct reap_run *rr, unsigned round, pid_t p)
{
	unsigned left = 0;
	struct key first = {{0}, 0};
	for (unsigned i = 0; i < rr->e; i++) {
		struct key k;
		reap_key(&k, round, i);
		int r = fdn_lookup(rr->g.s, k.s, k.len, 0, NULL);
		if (r != FDN_ENOTFOUND && left++ == 0)
			first = k;
	}
	if (left)
		return bench_fail("reaper_latency: %u of %u keys of killed pid %d still visible "
				  "after fdn_watch reported the last one gone (first: %s)",
				  left, rr->e, (int)p, first.s);
	return 0;
}

/* The graveyard record of pid p: its latency, and whether it is as expected. */
static int read_record(struct reap_run *rr, pid_t p, double *reaper_us)
{
	struct fdn_death d[16];
	int n = fdn_graveyard(rr->g.s, d, 16);
	for (int i = 0; i < n; i++) {
		if (d[i].pid != p)
			continue;
		*reaper_us = (double)d[i].latency_ns / 1e3;
		if (d[i].exit_signal != SIGKILL || d[i].entries != rr->e) {
			if (rr->odd++ == 0)
				bench_fail("reaper_latency: graveyard record of pid %d: signal %d, "
					   "%" PRIu64 " entries reclaimed (expected %d, %u)",
					   (int)p, d[i].exit_signal, d[i].entries, SIGKILL, rr->e);
		}
		return 0;
	}
	return bench_fail("reaper_latency: no graveyard record for pid %d among the %d newest",
			  (int)p, n);
}

static uint32_t procs_used(fdn_segment *s)
{
	struct fdn_segment_stats st;
	return fdn_segment_stats(s, &st) == 0 ? st.procs_used : UINT32_MAX;
}

/* Wait until the reaper has finished the previous death (its process slot
 * is free again), so that each death meets an idle reaper. */
static void reaper_idle(struct reap_run *rr)
{
	uint64_t t0 = mono_ns();
	while (procs_used(rr->g.s) > rr->idle_procs) {
		if (mono_ns() - t0 > RECORD_WAIT_NS) {
			if (rr->busy++ == 0)
				bench_fail(
				    "reaper_latency: %u process slots in use 10 s after a death, "
				    "expected %u; going on",
				    procs_used(rr->g.s), rr->idle_procs);
			return;
		}
		sleep_ns(POLL_NS * 10);
	}
}

static int death_once(struct reap_run *rr, unsigned round)
{
	reaper_idle(rr);
	uint64_t before = fdn_deaths(rr->g.s);
	pid_t p = child_start(rr, round);
	if (p < 0)
		return -1;
	struct key last;
	reap_key(&last, round, rr->e - 1);
	sleep_ns(SETTLE_NS);
	uint64_t t0 = mono_ns();
	kill(p, SIGKILL);
	int r = fdn_watch(rr->g.s, last.s, last.len, false, WATCH_MS);
	uint64_t t1 = mono_ns(), t2 = 0;
	int rec = r == 0 ? wait_record(rr->g.s, before, &t2) : -1;
	child_reap(p);
	if (r)
		return bench_fail(
		    "reaper_latency: key %s of killed pid %d still visible after %d ms "
		    "(fdn_watch: %s)",
		    last.s, (int)p, WATCH_MS, fdn_strerror(r));
	if (verify_gone(rr, round, p))
		return -1;
	if (rec)
		return bench_fail(
		    "reaper_latency: the death of pid %d was not recorded within 10 s", (int)p);
	rr->parent_us[round] = (double)(t1 - t0) / 1e3;
	rr->purged_us[round] = (double)(t2 - t0) / 1e3;
	return read_record(rr, p, &rr->reaper_us[round]);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least q of the samples <= it. */
static struct lat lat_of(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	unsigned i50 = (n * 50 + 99) / 100, i99 = (n * 99 + 99) / 100;
	return (struct lat){v[i50 ? i50 - 1 : 0], v[i99 ? i99 - 1 : 0], v[n - 1]};
}

static int reap_series(struct reap_run *rr, unsigned deaths, struct reap_result *res)
{
	double *buf = calloc(3 * (size_t)deaths, sizeof(double));
	if (!buf)
		return bench_fail("reaper_latency: %s", strerror(errno));
	rr->parent_us = buf;
	rr->reaper_us = buf + deaths;
	rr->purged_us = buf + 2 * (size_t)deaths;
	rr->odd = 0;
	int r = 0;
	for (unsigned i = 0; i < deaths && r == 0; i++)
		r = death_once(rr, i);
	if (r == 0) {
		*res = (struct reap_result){rr->e,
					    deaths,
					    rr->odd,
					    lat_of(rr->parent_us, deaths),
					    lat_of(rr->reaper_us, deaths),
					    lat_of(rr->purged_us, deaths)};
	}
	free(buf);
	return r;
}

static int reaperd_env(const char *argv0)
{
	const char *cur = getenv("FOUNDATION_REAPERD");
	if (cur && *cur)
		return 0;
	char self[PATH_MAX], path[PATH_MAX + 32];
	if (strchr(argv0, '/')) {
		snprintf(self, sizeof(self), "%s", argv0);
	} else {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n < 0)
			return bench_fail("/proc/self/exe: %s", strerror(errno));
		self[n] = 0;
	}
	char *slash = strrchr(self, '/');
	if (slash == self)
		slash[1] = 0;
	else if (slash)
		*slash = 0;
	snprintf(path, sizeof(path), "%s/../tools/foundation-reaperd", self);
	if (access(path, X_OK) != 0)
		return bench_fail("%s: %s (set FOUNDATION_REAPERD)", path, strerror(errno));
	setenv("FOUNDATION_REAPERD", path, 1);
	return 0;
}

static void reap_report(const struct opts *o, const struct reap_result *res, unsigned n)
{
	(void)o;
	for (unsigned i = 0; i < n; i++) {
		struct bench_result r;
		bench_result_init(&r, "reaper_latency", BENCH_LATENCY, "us", "us");
		bench_title(&r,
			    "SIGKILL of a process owning %u entries (2 indexed attributes each), "
			    "%u deaths, segment of default size",
			    res[i].e, res[i].deaths);
		bench_param(&r, "entries", "%u", res[i].e);
		bench_param(&r, "deaths", "%u", res[i].deaths);
		bench_param(&r, "odd_records", "%u", res[i].odd);
		const struct {
			const char *id, *label;
			const struct lat *l;
		} obs[] = {
		    {"foundation_watch", "kill -> fdn_watch in another process", &res[i].parent},
		    {"foundation_graveyard", "reaper's wake-up -> owner marked dead",
		     &res[i].reaper},
		    {"foundation_purged", "kill -> graveyard record (entries purged)",
		     &res[i].purged},
		};
		for (size_t j = 0; j < sizeof(obs) / sizeof(obs[0]); j++) {
			struct bench_sys *sy = bench_add(&r, obs[j].id, obs[j].label);
			sy->v[0] = obs[j].l->p50;
			sy->v[1] = obs[j].l->p99;
			sy->v[2] = obs[j].l->max;
		}
		bench_target(&r, "foundation_watch.p99_us", res[i].parent.p99, true,
			     REAP_TARGET_US);
		bench_emit(&r);
	}
}

static int scenario_reaper(const struct opts *o, const char *argv0)
{
	struct reap_run rr = {0};
	struct reap_result res[NREAP];
	unsetenv("FOUNDATION_NO_AUTOREAPER");
	if (reaperd_env(argv0))
		return -1;
	rr.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rr.page == MAP_FAILED)
		return bench_fail("mmap: %s", strerror(errno));
	int r = seg_create(&rr.g, "reaper", 0);
	if (r == 0)
		r = seg_wait_reaper(&rr.g);
	rr.idle_procs = r == 0 ? procs_used(rr.g.s) : 0;
	for (unsigned i = 0; i < NREAP && r == 0; i++) {
		rr.e = reap_sizes[i];
		r = reap_series(&rr, o->deaths, &res[i]);
	}
	seg_close(&rr.g);
	munmap(rr.page, 4096);
	if (r == 0)
		reap_report(o, res, NREAP);
	return r;
}

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

static int scenario_pairs(const struct opts *o)
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
	bench_show_ratio(&res, "foundation", "cds_lfht_index");
	bench_show_ratio(&res, "foundation", "lmdb_batched");
	bench_emit(&res);
	return 0;
}

/* ==== 4. read scaling ================================================================ */

#define SCALE_STREAM    (1u << 18) /* keys per reader, looked up cyclically */
#define SCALE_MAX_PROCS 16
#define SCALE_CHURN     4096u /* keys the writer cycles through */

struct scale_slot {
	_Alignas(64) uint64_t ops, ns;
	int err; /* 0, or a Foundation error; misses: FDN_ENOTFOUND */
	char key[KEY_CAP];
};

struct scale_page {
	_Atomic int ready, go, stop;
	struct scale_slot w[SCALE_MAX_PROCS + 1]; /* readers, then the writer */
};

static __attribute__((noreturn)) void scale_reader(const char *name, struct scale_page *pg,
						   unsigned i, uint64_t n)
{
	struct scale_slot *me = &pg->w[i];
	fdn_segment *s;
	struct key *keys = malloc(SCALE_STREAM * sizeof(*keys));
	int r = keys ? fdn_segment_attach(name, 0, &s) : -ENOMEM;
	if (r) {
		me->err = r;
		atomic_fetch_add(&pg->ready, 1);
		_exit(1);
	}
	uint64_t seed = STREAM_SEED + i;
	for (size_t j = 0; j < SCALE_STREAM; j++)
		key_fmt(&keys[j], "agent-", bench_xorshift64(&seed) % n);
	atomic_fetch_add(&pg->ready, 1);
	while (!atomic_load(&pg->go))
		sleep_ns(20000L);
	uint64_t t0 = mono_ns(), ops = 0;
	struct fdn_entry e;
	while (!atomic_load_explicit(&pg->stop, memory_order_relaxed) && r == 0) {
		for (size_t j = 0; j < 1024; j++) {
			const struct key *k = &keys[(ops + j) % SCALE_STREAM];
			r = fdn_lookup(s, k->s, k->len, 0, &e);
			if (r == 0 && e.pid != g_pid)
				r = FDN_ECORRUPT;
			if (r) {
				memcpy(me->key, k->s, k->len + 1);
				break;
			}
		}
		ops += 1024;
	}
	me->ns = mono_ns() - t0;
	me->ops = ops;
	me->err = r;
	fdn_segment_detach(s);
	_exit(r ? 1 : 0);
}

static __attribute__((noreturn)) void scale_writer(const char *name, struct scale_page *pg,
						   unsigned i)
{
	struct scale_slot *me = &pg->w[i];
	fdn_segment *s;
	int r = fdn_segment_attach(name, 0, &s);
	if (r) {
		me->err = r;
		atomic_fetch_add(&pg->ready, 1);
		_exit(1);
	}
	struct key *keys = malloc(SCALE_CHURN * sizeof(*keys));
	if (!keys) {
		me->err = -ENOMEM;
		atomic_fetch_add(&pg->ready, 1);
		_exit(1);
	}
	for (unsigned j = 0; j < SCALE_CHURN; j++)
		key_fmt(&keys[j], "churn-", j);
	atomic_fetch_add(&pg->ready, 1);
	while (!atomic_load(&pg->go))
		sleep_ns(20000L);
	uint64_t t0 = mono_ns(), pairs = 0;
	pid_t me_pid = getpid();
	while (!atomic_load_explicit(&pg->stop, memory_order_relaxed) && r == 0) {
		const struct key *k = &keys[pairs % SCALE_CHURN];
		struct fdn_attr a[2];
		attrs_cap_weight(a, g_caps[pairs % NCAPS], pairs);
		r = fdn_register(s, k->s, k->len, me_pid, a, 2, 0, NULL);
		if (r == 0)
			r = fdn_unregister(s, k->s, k->len);
		if (r)
			memcpy(me->key, k->s, k->len + 1);
		pairs++;
	}
	me->ns = mono_ns() - t0;
	me->ops = pairs;
	me->err = r;
	fdn_segment_detach(s);
	_exit(r ? 1 : 0);
}

struct scale_run {
	struct seg g;
	struct scale_page *pg;
	uint64_t n;
	long window_ns;
};

/* One window: readers reader processes (and a writer if churn) forked,
 * started together, stopped after the window.  Sum of the readers'
 * lookups/s, and the writer's pairs/s. */
static int scale_once(struct scale_run *sr, unsigned readers, bool churn, double *rate,
		      double *wrate)
{
	struct scale_page *pg = sr->pg;
	memset(pg, 0, sizeof(*pg));
	unsigned nproc = readers + (churn ? 1u : 0u);
	pid_t pids[SCALE_MAX_PROCS + 1];
	unsigned started = 0;
	int r = 0;
	for (unsigned i = 0; i < nproc; i++) {
		unsigned slot = i < readers ? i : SCALE_MAX_PROCS;
		pid_t p = fork();
		if (p < 0) {
			r = bench_fail("read_scaling: fork: %s", strerror(errno));
			break;
		}
		if (p == 0) {
			bench_set_signals(SIG_DFL);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != g_pid)
				_exit(1);
			if (i < readers)
				scale_reader(sr->g.name, pg, slot, sr->n);
			scale_writer(sr->g.name, pg, slot);
		}
		pids[started++] = p;
	}
	uint64_t t0 = mono_ns();
	while (r == 0 && (unsigned)atomic_load(&pg->ready) < nproc) {
		if (mono_ns() - t0 > 30000000000ull)
			r = bench_fail("read_scaling: children not ready after 30 s");
		sleep_ns(100000L);
	}
	atomic_store(&pg->go, 1);
	if (r == 0)
		sleep_ns(sr->window_ns);
	atomic_store(&pg->stop, 1);
	for (unsigned i = 0; i < started; i++) {
		int st;
		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			const struct scale_slot *w = &pg->w[i < readers ? i : SCALE_MAX_PROCS];
			r = bench_fail("read_scaling: %s %d failed: %s (key %s)",
				       i < readers ? "reader" : "writer", (int)pids[i],
				       w->err ? fdn_strerror(w->err) : "no error recorded",
				       w->key[0] ? w->key : "-");
		}
	}
	*rate = 0;
	for (unsigned i = 0; i < readers; i++)
		if (pg->w[i].ns)
			*rate += (double)pg->w[i].ops * 1e9 / (double)pg->w[i].ns;
	const struct scale_slot *w = &pg->w[SCALE_MAX_PROCS];
	*wrate = churn && w->ns ? (double)w->ops * 1e9 / (double)w->ns : 0;
	return r;
}

static int scenario_scaling(const struct opts *o)
{
	struct scale_run sr = {.n = o->scale_entries, .window_ns = o->scale_ms * 1000000L};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned maxr = ncpu > 2 ? (unsigned)ncpu : 2u;
	if (maxr > SCALE_MAX_PROCS)
		maxr = SCALE_MAX_PROCS;
	sr.pg =
	    mmap(NULL, sizeof(*sr.pg), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sr.pg == MAP_FAILED)
		return bench_fail("mmap: %s", strerror(errno));
	int r = seg_create(&sr.g, "scaling", sr.n + SCALE_CHURN);
	for (uint64_t i = 0; r == 0 && i < sr.n; i++) {
		/* One attribute, not indexed: a value indexed for a million
		 * entries makes each insert walk 1/32 of them (README). */
		struct key k;
		struct fdn_attr a = {.name = "weight", .type = FDN_ATTR_INT, .v.i = (int64_t)i};
		key_fmt(&k, "agent-", i);
		r = fdn_register(sr.g.s, k.s, k.len, g_pid, &a, 1, 0, NULL);
		if (r)
			r = bench_fail("read_scaling: register %s: %s", k.s, fdn_strerror(r));
	}
	/* rate[churn][readers - 1], best of reps; the writer's pairs/s alongside */
	double rate[2][SCALE_MAX_PROCS] = {{0}}, wrate[SCALE_MAX_PROCS] = {0};
	for (int rep = 0; rep < o->reps && r == 0; rep++) {
		for (unsigned k = 1; k <= maxr && r == 0; k++) {
			for (int churn = 0; churn < 2 && r == 0; churn++) {
				double x, w;
				r = scale_once(&sr, k, churn, &x, &w);
				if (r == 0 && x > rate[churn][k - 1]) {
					rate[churn][k - 1] = x;
					if (churn)
						wrate[k - 1] = w;
				}
			}
		}
	}
	if (r == 0 && fdn_count(sr.g.s) != (int64_t)sr.n)
		r = bench_fail("read_scaling: %" PRId64
			       " entries after the churn, expected %" PRIu64,
			       fdn_count(sr.g.s), sr.n);
	seg_close(&sr.g);
	munmap(sr.pg, sizeof(*sr.pg));
	if (r)
		return r;
	static const char *const rid[] = {"readers_1",  "readers_2",  "readers_3",  "readers_4",
					  "readers_5",  "readers_6",  "readers_7",  "readers_8",
					  "readers_9",  "readers_10", "readers_11", "readers_12",
					  "readers_13", "readers_14", "readers_15", "readers_16"};
	static const char *const rlabel[] = {
	    "1 reader process",    "2 reader processes",  "3 reader processes",
	    "4 reader processes",  "5 reader processes",  "6 reader processes",
	    "7 reader processes",  "8 reader processes",  "9 reader processes",
	    "10 reader processes", "11 reader processes", "12 reader processes",
	    "13 reader processes", "14 reader processes", "15 reader processes",
	    "16 reader processes"};
	for (int churn = 0; churn < 2; churn++) {
		struct bench_result res;
		bench_result_init(&res, "read_scaling", BENCH_RATE, "lookups_per_s", "lookups/s");
		bench_title(&res,
			    "fdn_lookup from 1..%u forked processes, %" PRIu64
			    " entries, %s, %ld ms windows, best of %d, %ld CPUs",
			    maxr, sr.n, churn ? "one writer process churning" : "no writer",
			    o->scale_ms, o->reps, ncpu);
		bench_param(&res, "entries", "%" PRIu64, sr.n);
		bench_param(&res, "writer", "%s", churn ? "true" : "false");
		bench_param(&res, "window_ms", "%ld", o->scale_ms);
		bench_param(&res, "cpus", "%ld", ncpu);
		bench_param(&res, "reps", "%d", o->reps);
		for (unsigned k = 1; k <= maxr; k++)
			bench_add(&res, rid[k - 1], rlabel[k - 1])->v[0] = rate[churn][k - 1];
		if (!churn)
			bench_target_ratio(&res, "readers_2", "readers_1", 1.8);
		bench_emit(&res);
	}
	for (unsigned k = 1; k <= maxr; k++) {
		struct bench_result res;
		bench_result_init(&res, "read_under_churn", BENCH_RATE, "lookups_per_s",
				  "lookups/s");
		bench_title(&res,
			    "%u reader process%s, %" PRIu64
			    " entries, without and with one writer (%.0f register+unregister "
			    "pairs/s)",
			    k, k == 1 ? "" : "es", sr.n, wrate[k - 1]);
		bench_param(&res, "entries", "%" PRIu64, sr.n);
		bench_param(&res, "readers", "%u", k);
		bench_param(&res, "writer_pairs_per_s", "%.0f", wrate[k - 1]);
		bench_param(&res, "cpus", "%ld", ncpu);
		bench_add(&res, "no_writer", "readers, no writer")->v[0] = rate[0][k - 1];
		bench_add(&res, "writer_churning", "readers, one writer churning")->v[0] =
		    rate[1][k - 1];
		bench_target_ratio(&res, "writer_churning", "no_writer", 0.8);
		bench_emit(&res);
	}
	return 0;
}

/* ==== 5. memory per entry ============================================================= */

#define MEM_ATTRS 64u /* encoded attribute bytes per entry */

static int scenario_memory(const struct opts *o)
{
	uint64_t n = o->mem_entries;
	/* One string attribute, not indexed, its value sized so that the
	 * encoding is exactly MEM_ATTRS bytes. */
	char val[MEM_ATTRS + 1];
	unsigned char enc[ENC_CAP];
	struct fdn_attr a = {.name = "meta", .type = FDN_ATTR_STRING, .v.s = val};
	memset(val, 'm', 1);
	val[1] = 0;
	int base = fdn_attrs_encode(&a, 1, enc, sizeof(enc));
	if (base < 0 || (unsigned)base > MEM_ATTRS)
		return bench_fail("memory: encode: %s", base < 0 ? fdn_strerror(base) : "too long");
	size_t vlen = MEM_ATTRS - (unsigned)base + 1;
	memset(val, 'm', vlen);
	val[vlen] = 0;
	if (fdn_attrs_encode(&a, 1, enc, sizeof(enc)) != (int)MEM_ATTRS)
		return bench_fail("memory: a %zu-byte value does not encode to %u bytes", vlen,
				  MEM_ATTRS);
	struct seg g = {0};
	struct fdn_segment_stats before, after;
	if (seg_create_sized(&g, "memory", n, n * 512u + (16u << 20)))
		return -1;
	int r = fdn_segment_stats(g.s, &before);
	uint32_t klen = 0;
	for (uint64_t i = 0; r == 0 && i < n; i++) {
		struct key k;
		key_fmt(&k, "agent-", i);
		klen = k.len;
		r = fdn_register(g.s, k.s, k.len, g_pid, &a, 1, 0, NULL);
		if (r)
			r = bench_fail("memory: register %s: %s (%s)", k.s, fdn_strerror(r),
				       fdn_errname(r));
	}
	if (r == 0 && (r = fdn_segment_stats(g.s, &after)))
		r = bench_fail("memory: stats: %s", fdn_strerror(r));
	seg_close(&g);
	if (r)
		return -1;
	double payload = (double)(klen + MEM_ATTRS);
	double blocks = (double)(after.block_bytes_used - before.block_bytes_used) / (double)n;
	double nblocks = (double)(after.blocks_used - before.blocks_used) / (double)n;
	double pages =
	    (double)(after.heap_pages_used - before.heap_pages_used) * 65536.0 / (double)n;
	/* The state words of every granule of the pages claimed (the region
	 * has one per granule of the heap; those of unclaimed pages are not
	 * in use). */
	double state = pages / 64.0 * 8.0; /* FDN_GRANULE, shm/layout.h */
	double main_buckets = (double)after.tables[0].buckets * 8.0 / (double)n, all_buckets = 0;
	for (uint32_t t = 0; t < after.ntables && t < FDN_STATS_MAX_TABLES; t++)
		all_buckets += (double)after.tables[t].buckets * 8.0 / (double)n;
	struct bench_result res;
	bench_result_init(&res, "memory", BENCH_BYTES, "bytes_per_entry", "bytes/entry");
	bench_title(&res,
		    "%" PRIu64
		    " entries, %u-byte keys, %u bytes of encoded attributes (one string, "
		    "not indexed); %.2f blocks per entry",
		    n, klen, MEM_ATTRS, nblocks);
	bench_param(&res, "entries", "%" PRIu64, n);
	bench_param(&res, "key_bytes", "%u", klen);
	bench_param(&res, "attr_bytes", "%u", MEM_ATTRS);
	bench_param(&res, "blocks_per_entry", "%.3f", nblocks);
	bench_param(&res, "tables", "%u", after.ntables);
	bench_add(&res, "payload", "payload: key + attribute bytes")->v[0] = payload;
	bench_add(&res, "foundation_blocks", "foundation: allocated blocks")->v[0] = blocks;
	bench_add(&res, "foundation_blocks_main_buckets", "foundation: blocks + main-table buckets")
	    ->v[0] = blocks + main_buckets;
	bench_add(&res, "foundation_used", "foundation: blocks + all bucket arrays")->v[0] =
	    blocks + all_buckets;
	bench_add(&res, "foundation_used_state", "foundation: used + block state words")->v[0] =
	    blocks + all_buckets + state;
	bench_add(&res, "foundation_pages", "foundation: heap pages claimed")->v[0] = pages;
	bench_add(&res, "target_limit", "target: 1.5 x payload + 64")->v[0] = 1.5 * payload + 64.0;
	bench_target(&res, "foundation_used_state", blocks + all_buckets + state, true,
		     1.5 * payload + 64.0);
	bench_emit(&res);
	return 0;
}

/* ==== the scenarios ==================================================================

 * Each runs on its own and emits its results.  reaper_latency runs first,
 * with a reaper; the others set FOUNDATION_NO_AUTOREAPER (no deaths).  The
 * services being built (span push+pop, context set+get, flag read, event
 * emit) each become one entry here, measured against fdn_lookup on the
 * same segment in the same run (one bench_result per service, "foundation"
 * = fdn_lookup as the first row). */
struct scenario {
	const char *name;
	int (*run)(const struct opts *o);
	bool reaper; /* needs the library's reaper */
};

/* ==== 5, 6. the changefeed ============================================================ */

#define CF_SUBS_MAX 16
#define CF_LAT_MAX  2000u
#define CF_KEYS     4096u

struct cf_page {
	_Atomic int ready, stop;
	_Atomic uint64_t got[CF_SUBS_MAX];
	double lat_us[CF_SUBS_MAX][CF_LAT_MAX];
};

/* A subscriber: reads every change under prefix as it comes; with lat,
 * records each "lat/N" change's latency at index N; ends when it has
 * `want` changes (0: at stop). */
static __attribute__((noreturn)) void cf_subscriber(const char *name, struct cf_page *pg,
						    unsigned i, const char *prefix, unsigned want,
						    bool lat)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fdn_segment *s;
	fdn_subscription *sub;
	if (fdn_segment_attach(name, 0, &s) || fdn_subscribe(s, prefix, strlen(prefix), 0, &sub))
		_exit(1);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fdn_subscription_fd(sub), &ev))
		_exit(2);
	atomic_fetch_add(&pg->ready, 1);
	struct fdn_change c[64];
	while (!atomic_load(&pg->stop) && (want == 0 || atomic_load(&pg->got[i]) < want)) {
		if (epoll_wait(ep, &ev, 1, 100) <= 0)
			continue;
		for (;;) {
			int n = fdn_subscription_read(sub, c, 64);
			uint64_t now = real_ns();
			if (n < 0)
				_exit(3);
			for (int k = 0; k < n && lat; k++) {
				unsigned idx = (unsigned)atoi(c[k].key + 4);
				if (idx < CF_LAT_MAX)
					pg->lat_us[i][idx] = (double)(now - c[k].time_ns) / 1e3;
			}
			atomic_fetch_add(&pg->got[i], (uint64_t)n);
			if (n < 64)
				break;
		}
	}
	fdn_subscription_close(sub);
	_exit(0);
}

static int cf_wait_ready(struct cf_page *pg, int n)
{
	uint64_t t0 = mono_ns();
	while (atomic_load(&pg->ready) < n) {
		if (mono_ns() - t0 > 10000000000ull)
			return bench_fail("changefeed: subscribers not ready after 10 s");
		sleep_ns(1000000L);
	}
	return 0;
}

static pid_t cf_fork(const char *name, struct cf_page *pg, unsigned i, const char *prefix,
		     unsigned want, bool lat)
{
	pid_t p = fork();
	if (p == 0)
		cf_subscriber(name, pg, i, prefix, want, lat);
	return p;
}

static int scenario_cf_latency(const struct opts *o)
{
	static const unsigned subs[] = {1, 16};
	unsigned n = o->cli.quick ? 200 : CF_LAT_MAX;
	for (size_t si = 0; si < sizeof(subs) / sizeof(subs[0]); si++) {
		struct seg g = {0};
		char tag[32];
		snprintf(tag, sizeof(tag), "cflat%u", subs[si]);
		if (seg_create(&g, tag, 10000))
			return -1;
		struct cf_page *pg = mmap(NULL, sizeof(*pg), PROT_READ | PROT_WRITE,
					  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (pg == MAP_FAILED) {
			seg_close(&g);
			return bench_fail("mmap: %s", strerror(errno));
		}
		pid_t kids[CF_SUBS_MAX];
		for (unsigned i = 0; i < subs[si]; i++)
			kids[i] = cf_fork(g.name, pg, i, "lat/", n, true);
		int r = cf_wait_ready(pg, (int)subs[si]);
		for (unsigned k = 0; k < n && r == 0; k++) {
			char key[16];
			snprintf(key, sizeof(key), "lat/%u", k);
			if (fdn_register(g.s, key, strlen(key), getpid(), NULL, 0, 0, NULL))
				r = bench_fail("changefeed_latency: register %s", key);
			sleep_ns(200000L);
		}
		uint64_t t0 = mono_ns();
		for (unsigned i = 0; i < subs[si] && r == 0; i++)
			while (atomic_load(&pg->got[i]) < n) {
				if (mono_ns() - t0 > 10000000000ull) {
					r = bench_fail(
					    "changefeed_latency: subscriber %u got %" PRIu64
					    " of %u changes",
					    i, atomic_load(&pg->got[i]), n);
					break;
				}
				sleep_ns(1000000L);
			}
		atomic_store(&pg->stop, 1);
		for (unsigned i = 0; i < subs[si]; i++) {
			int st;
			waitpid(kids[i], &st, 0);
			if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
				r = bench_fail("changefeed_latency: subscriber %u failed", i);
		}
		if (r == 0) {
			size_t m = (size_t)subs[si] * n, k = 0;
			double *v = malloc(m * sizeof(double));
			for (unsigned i = 0; v && i < subs[si]; i++)
				for (unsigned j = 0; j < n; j++)
					v[k++] = pg->lat_us[i][j];
			struct bench_result res;
			bench_result_init(&res, "changefeed_latency", BENCH_LATENCY, "us", "us");
			bench_title(&res,
				    "change -> subscriber fd readable -> change read, %u "
				    "subscriber process%s, %u changes 200 us apart",
				    subs[si], subs[si] == 1 ? "" : "es", n);
			bench_param(&res, "subscribers", "%u", subs[si]);
			bench_param(&res, "changes", "%u", n);
			struct bench_sys *sy =
			    bench_add(&res, "foundation", "every (change, subscriber) pair");
			if (v) {
				sy->v[0] = bench_quantile(v, m, 0.5);
				sy->v[1] = bench_quantile(v, m, 0.99);
				sy->v[2] = bench_quantile(v, m, 1.0);
			}
			free(v);
			bench_target(&res, "foundation.p99_us", sy->v[1], true, 1000.0);
			bench_emit(&res);
		}
		munmap(pg, sizeof(*pg));
		seg_close(&g);
		if (r)
			return r;
	}
	return 0;
}

struct cf_sys {
	struct seg g;
	struct cf_page *pg;
	pid_t kids[CF_SUBS_MAX];
	unsigned nsubs;
	struct bench_sys *row;
};

struct cf_rounds {
	struct cf_sys sys[4];
	struct key keys[CF_KEYS];
};

static int64_t cf_slice(void *arg, size_t i, uint64_t at, uint64_t ops)
{
	struct cf_rounds *cr = arg;
	fdn_segment *s = cr->sys[i].g.s;
	for (uint64_t k = 0; k < ops; k++) {
		const struct key *key = &cr->keys[(at + k) % CF_KEYS];
		if (fdn_register(s, key->s, key->len, g_pid, NULL, 0, 0, NULL) ||
		    fdn_unregister(s, key->s, key->len))
			return bench_fail("changefeed_throughput: pair %" PRIu64 " failed", at + k);
	}
	return (int64_t)ops;
}

static int scenario_cf_throughput(const struct opts *o)
{
	static const struct {
		const char *id, *label;
		unsigned subs;
		bool log;
	} cfg[4] = {
	    {"log_off", "change log off", 0, false},
	    {"subs_0", "change log, 0 subscribers", 0, true},
	    {"subs_1", "change log, 1 subscriber", 1, true},
	    {"subs_16", "change log, 16 subscribers", 16, true},
	};
	struct cf_rounds *cr = calloc(1, sizeof(*cr));
	if (!cr)
		return bench_fail("changefeed: %s", strerror(errno));
	for (unsigned i = 0; i < CF_KEYS; i++)
		key_fmt(&cr->keys[i], "cf-", i);
	struct bench_result res;
	bench_result_init(&res, "changefeed_throughput", BENCH_RATE, "pairs_per_s", "pairs/s");
	bench_title(&res,
		    "register + unregister pairs (no attributes, %u keys in turn) with the "
		    "change log off, and on with 0, 1, 16 subscriber processes reading; "
		    "interleaved rounds",
		    CF_KEYS);
	bench_param(&res, "keys", "%u", CF_KEYS);
	bench_param(&res, "rounds", "%u", o->rounds);
	int r = 0;
	size_t built = 0;
	for (size_t i = 0; i < 4 && r == 0; i++) {
		struct cf_sys *cs = &cr->sys[i];
		cs->row = bench_add(&res, cfg[i].id, cfg[i].label);
		snprintf(cs->g.name, sizeof(cs->g.name), "fdn-bench-registry-%d-cf%zu", (int)g_pid,
			 i);
		struct fdn_segment_opts so;
		fdn_segment_opts_init(&so);
		so.entries = 10000;
		so.changes = cfg[i].log ? 0 : FDN_CHANGES_OFF;
		cs->g.shm_slot = bench_shm_track(cs->g.name);
		int cr_ = fdn_segment_create(cs->g.name, &so, &cs->g.s);
		if (cr_) {
			bench_shm_untrack(cs->g.shm_slot);
			cs->g.name[0] = 0;
			r = bench_fail("create segment: %s", fdn_strerror(cr_));
			break;
		}
		built++;
		cs->pg = mmap(NULL, sizeof(*cs->pg), PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (cs->pg == MAP_FAILED) {
			cs->pg = NULL;
			r = bench_fail("mmap: %s", strerror(errno));
			break;
		}
		cs->nsubs = cfg[i].subs;
		for (unsigned k = 0; k < cs->nsubs; k++)
			cs->kids[k] = cf_fork(cs->g.name, cs->pg, k, "", 0, false);
		r = cf_wait_ready(cs->pg, (int)cs->nsubs);
	}
	struct bench_sys *rows[4];
	for (size_t i = 0; i < 4; i++)
		rows[i] = cr->sys[i].row;
	/* One lap of the log first, untimed, on every system: the log's pages
	 * are touched (faulted into this process's mapping) once, as in a
	 * long-running writer, not inside the measured rounds. */
	for (size_t i = 0; i < 4 && r == 0; i++)
		if (cf_slice(cr, i, 0, 16384 / 2) < 0) /* the default log: 16384 */
			r = -1;
	if (r == 0) {
		struct bench_rounds b = {
		    .nsys = 4,
		    .rounds = o->rounds,
		    .warmup = 2,
		    .prewarm = true,
		    .round_ms = o->round_ms,
		    .stream_len = UINT64_MAX / 2,
		    .min_ops = 200,
		    .run = cf_slice,
		    .arg = cr,
		};
		r = bench_rounds_run(&b);
		if (r == 0) {
			bench_rounds_fill(&b, &res, rows);
			bench_param(&res, "pairs_per_round", "%" PRIu64, b.ops);
		}
		bench_rounds_free(&b);
	}
	uint64_t seen[4] = {0};
	for (size_t i = 0; i < built; i++) {
		struct cf_sys *cs = &cr->sys[i];
		if (cs->pg) {
			atomic_store(&cs->pg->stop, 1);
			for (unsigned k = 0; k < cs->nsubs; k++) {
				waitpid(cs->kids[k], NULL, 0);
				seen[i] += atomic_load(&cs->pg->got[k]);
			}
			munmap(cs->pg, sizeof(*cs->pg));
		}
		seg_close(&cs->g);
	}
	free(cr);
	if (r)
		return r;
	bench_say("subscribers read %" PRIu64 " changes (1 subscriber) and %" PRIu64
		  " (16 subscribers, all of them)\n",
		  seen[2], seen[3]);
	bench_target_ratio(&res, "subs_0", "log_off", 0.9);
	bench_show_ratio(&res, "subs_1", "log_off");
	bench_show_ratio(&res, "subs_16", "log_off");
	bench_emit(&res);
	return 0;
}

static int scenario_reaper_run(const struct opts *o)
{
	return scenario_reaper(o, o->argv0);
}

static const struct scenario scenarios[] = {
    {"reaper_latency", scenario_reaper_run, true},
    {"register_unregister", scenario_pairs, false},
    {"read_scaling", scenario_scaling, false},
    {"memory", scenario_memory, false},
    {"changefeed_latency", scenario_cf_latency, false},
    {"changefeed_throughput", scenario_cf_throughput, false},
};
#define NSCEN (sizeof(scenarios) / sizeof(scenarios[0]))

/* ==== command line ==================================================================== */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [--quick] [--json | --json-file PATH] [--scenarios LIST]\n"
		"\n"
		"The registry's public API against process-local liburcu cds_lfht"
#ifdef HAVE_LMDB
		", LMDB"
#endif
		"\nand redis-server (when in $PATH):\n"
		"  reaper_latency       SIGKILL of an owner of 1 and 1000 entries until\n"
		"                       another process sees them gone (p50/p99/max)\n"
		"  register_unregister  fdn_register + fdn_unregister pairs, every system in\n"
		"                       40 interleaved rounds of 40 ms (medians of the\n"
		"                       per-round rates and ratios)\n"
		"  read_scaling         fdn_lookup from 1, 2 (.. CPUs) processes, without and\n"
		"                       with a writer process churning (also read_under_churn)\n"
		"  memory               segment bytes per entry at 1 000 000 entries with\n"
		"                       64 bytes of attributes\n"
		"\n"
		"  --quick            20 deaths per size, pairs in 12 rounds of 10 ms, 10 000\n"
		"                     entries for scaling (100 ms windows), 100 000 for memory,\n"
		"                     one run (CI)\n"
		"  --json             one JSON object per result on stdout, tables on stderr\n"
		"  --json-file PATH   the JSON objects into PATH, tables on stdout\n"
		"  --scenarios LIST   comma-separated names from the list above (default all)\n"
		"  --help             this text\n"
		"\n"
		"foundation-reaperd is $FOUNDATION_REAPERD, else ../tools/foundation-reaperd\n"
		"next to this program.  Exit status: 0, also when a SPEC target is missed;\n"
		"1 on a correctness failure (a key visible after its owner died, a lookup\n"
		"miss or wrong entry, a failed operation); 2 on bad usage.\n");
}

static int parse_scenarios(const char *arg, unsigned *mask)
{
	char buf[256];
	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf))
		return -1;
	*mask = 0;
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i = 0;
		while (i < NSCEN && strcmp(scenarios[i].name, tok) != 0)
			i++;
		if (i == NSCEN)
			return -1;
		*mask |= 1u << i;
	}
	return *mask ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"scenarios", required_argument, NULL, 's'},
	    BENCH_CLI_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	*o = (struct opts){.argv0 = argv[0],
			   .reps = 3,
			   .rounds = 40,
			   .round_ms = 40,
			   .deaths = 200,
			   .pairs = 200000,
			   .redis_pairs = 20000,
			   .scale_entries = 1000000,
			   .scale_ms = 1000,
			   .mem_entries = 1000000};
	int r;
	for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
		switch (c) {
		case 's':
			if (parse_scenarios(optarg, &o->only)) {
				fprintf(stderr,
					PROG ": --scenarios: '%s' is not a list of scenarios\n",
					optarg);
				usage(stderr);
				return 2;
			}
			break;
		default:
			if ((r = bench_cli_opt(&o->cli, c, usage)))
				return r;
		}
	}
	if ((r = bench_cli_end(&o->cli, argc, argv, usage)))
		return r;
	if (o->cli.quick) {
		o->reps = 1;
		o->rounds = 12;
		o->round_ms = 10;
		o->deaths = 20;
		o->pairs = 20000;
		o->redis_pairs = 2000;
		o->scale_entries = 10000;
		o->scale_ms = 100;
		o->mem_entries = 100000;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	int r = parse_args(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r; /* 1: --help */
	g_pid = getpid();
	bench_set_signals(bench_on_signal);
	prctl(PR_SET_TIMERSLACK, 1UL); /* sleeps of the polls end on time */
	attrs_init();
	if (bench_output_open(o.cli.json, o.cli.json_path))
		return 1;
	bench_machine("start");
	int status = 0;
	for (size_t i = 0; i < NSCEN; i++) {
		if (o.only && !(o.only & (1u << i)))
			continue;
		if (scenarios[i].reaper) {
			unsetenv("FOUNDATION_NO_AUTOREAPER");
		} else {
			/* One process or its children, no deaths: no reaper. */
			setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
			sys_urcu_register();
		}
		if (scenarios[i].run(&o))
			status = 1;
	}
	sys_redis_stop();
	sys_urcu_unregister();
	bench_machine("end");
	bench_output_close();
	return status;
}
