/* bench/bench_registry_reaper.c - fdn-bench-registry's reaper_latency
 * (scenario 1 of bench_registry.c): deaths of children holding E keys,
 * timed as another process, the reaper and the graveyard see them. */
#include "bench_registry.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

#define NNODES 1000u /* a multiple of NCAPS */

/* ---- attributes ------------------------------------------------------------- */

static char g_nodes[NNODES][16];

static void attrs_cap_node(struct fdn_attr a[2], uint64_t i)
{
	a[0] = (struct fdn_attr){.name = "capability", .type = FDN_ATTR_STRING};
	a[0].v.s = g_caps[i % NCAPS];
	a[1] = (struct fdn_attr){.name = "node", .type = FDN_ATTR_STRING};
	a[1].v.s = g_nodes[i % NNODES];
}

void attrs_init(void)
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
	struct lat parent, reaper, purged, kernel;
};

struct reap_run {
	struct seg g;
	struct ready_page *page;
	unsigned e;
	uint32_t idle_procs; /* process slots in use with no child: us and the reaper */
	double *parent_us, *reaper_us, *purged_us, *kernel_us;
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
	uint64_t t0 = bench_mono_ns();
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
		if (bench_mono_ns() - t0 > 30000000000ull)
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
	uint64_t t0 = bench_mono_ns();
	while (fdn_deaths(s) == before) {
		if (bench_mono_ns() - t0 > RECORD_WAIT_NS)
			return -1;
		sleep_ns(POLL_NS);
	}
	*at = bench_mono_ns();
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
	uint64_t t0 = bench_mono_ns();
	while (procs_used(rr->g.s) > rr->idle_procs) {
		if (bench_mono_ns() - t0 > RECORD_WAIT_NS) {
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

/* One death timed by the parent's own pidfd of the child: kill -> the
 * kernel says it is gone, the share of the latency no reaper can remove
 * (the victim's exit: on this kind of machine mostly the teardown of its
 * address space).  The reaper reaps it as any other death. */
static int death_kernel(struct reap_run *rr, unsigned round, unsigned i)
{
	reaper_idle(rr);
	uint64_t before = fdn_deaths(rr->g.s);
	pid_t p = child_start(rr, round);
	if (p < 0)
		return -1;
	int fd = (int)syscall(SYS_pidfd_open, p, 0);
	if (fd < 0) {
		kill(p, SIGKILL);
		child_reap(p);
		return bench_fail("pidfd_open: %s", strerror(errno));
	}
	sleep_ns(SETTLE_NS);
	uint64_t t0 = bench_mono_ns();
	kill(p, SIGKILL);
	struct pollfd pf = {fd, POLLIN, 0};
	int pr;
	while ((pr = poll(&pf, 1, WATCH_MS)) < 0 && errno == EINTR)
		;
	uint64_t t1 = bench_mono_ns(), t2;
	close(fd);
	int rec = wait_record(rr->g.s, before, &t2);
	child_reap(p);
	if (pr != 1)
		return bench_fail("reaper_latency: pidfd of killed pid %d not readable after %d ms",
				  (int)p, WATCH_MS);
	if (rec)
		return bench_fail(
		    "reaper_latency: the death of pid %d was not recorded within 10 s", (int)p);
	rr->kernel_us[i] = (double)(t1 - t0) / 1e3;
	return 0;
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
	uint64_t t0 = bench_mono_ns();
	kill(p, SIGKILL);
	int r = fdn_watch(rr->g.s, last.s, last.len, false, WATCH_MS);
	uint64_t t1 = bench_mono_ns(), t2 = 0;
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
	double *buf = calloc(4 * (size_t)deaths, sizeof(double));
	if (!buf)
		return bench_fail("reaper_latency: %s", strerror(errno));
	rr->parent_us = buf;
	rr->reaper_us = buf + deaths;
	rr->purged_us = buf + 2 * (size_t)deaths;
	rr->kernel_us = buf + 3 * (size_t)deaths;
	rr->odd = 0;
	int r = 0;
	/* Interleaved: a death seen through fdn_watch, then one timed by the
	 * parent's pidfd (its keys those of round deaths + i). */
	for (unsigned i = 0; i < deaths && r == 0; i++) {
		r = death_once(rr, i);
		if (r == 0)
			r = death_kernel(rr, deaths + i, i);
	}
	if (r == 0) {
		*res = (struct reap_result){rr->e,
					    deaths,
					    rr->odd,
					    lat_of(rr->parent_us, deaths),
					    lat_of(rr->reaper_us, deaths),
					    lat_of(rr->purged_us, deaths),
					    lat_of(rr->kernel_us, deaths)};
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
		    {"kernel_exit", "kill -> pidfd readable (the kernel)", &res[i].kernel},
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

int scenario_reaper(const struct opts *o, const char *argv0)
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
