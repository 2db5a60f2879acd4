/* bench/bench_registry_changefeed.c - fdn-bench-registry's
 * changefeed_latency and changefeed_throughput (scenarios 5 and 6 of
 * bench_registry.c): subscriber processes on epoll, and register +
 * unregister pairs with the change log off and on. */
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
	uint64_t t0 = bench_mono_ns();
	while (atomic_load(&pg->ready) < n) {
		if (bench_mono_ns() - t0 > 10000000000ull)
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

int scenario_cf_latency(const struct opts *o)
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
		uint64_t t0 = bench_mono_ns();
		for (unsigned i = 0; i < subs[si] && r == 0; i++)
			while (atomic_load(&pg->got[i]) < n) {
				if (bench_mono_ns() - t0 > 10000000000ull) {
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

int scenario_cf_throughput(const struct opts *o)
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
