/*
 * stress_reaperkill - the reaper SIGKILLed while it reclaims.
 *
 * Each round a victim process attaches and registers 20..200 entries (a
 * quarter of the victims are killed while still registering), the victim
 * is SIGKILLed, and 0..3 ms later -- while the reaper is marking it dead,
 * purging its entries and index references, recording its death or
 * freeing its slots -- the reaper itself is SIGKILLed and a new one
 * started (it takes the dead one's lease and finishes what was left: every
 * step is idempotent, lib/reaper.c).  Two survivor processes hold 100
 * entries each throughout.
 *
 * Once a second, at a quiescent point (stress.h), and at the end:
 *   - the checker: no violation (a block freed twice or freed while linked
 *     shows as a free block in a chain or a broken node), no leaked block;
 *   - every key of every killed victim is gone (raw table lookup);
 *   - the survivors' 200 entries are all there with their attributes, and
 *     the main table holds exactly those;
 *   - every killed victim whose record is still in the graveyard's window
 *     is recorded exactly once (nothing lost, nothing twice).
 */
#include "stress.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SURVIVORS    2
#define SURVIVOR_ENT 100
#define MAX_PENDING  4096

struct vshare {
	_Atomic int registered; /* entries the victim has registered */
	_Atomic int done;
};

static struct st_opts opts = {.seconds = 10};
static long want_kills;
static struct st_tally tally;

static const char usage_text[] =
    "usage: stress_reaperkill [--seconds N] [--kills N] [--seed N]\n"
    "\n"
    "Victim processes register entries and are SIGKILLed; 0..3 ms later the\n"
    "reaper (the real foundation-reaperd) is SIGKILLed too and a new one started.\n"
    "Once a second: the checker, the survivors' entries intact, every killed\n"
    "victim's keys gone, its death recorded exactly once.\n"
    "\n"
    "  --seconds N  run time (default 10), unless --kills is given\n"
    "  --kills N    run until N reaper kills (the soak: 1000)\n"
    "  --seed N     random seed\n"
    "  --verbose    a line per checkpoint\n";

static int on_opt(int c, const char *arg)
{
	char *end;
	want_kills = strtol(arg, &end, 10);
	return *end || want_kills < 1 ? 2 : 0;
}

static int reg(fdn_segment *s, const char *k, int i, const char *node)
{
	struct fdn_attr a[3] = {
	    {.name = "capability", .type = FDN_ATTR_STRING, .v.s = i % 2 ? "gpu" : "http"},
	    {.name = "node", .type = FDN_ATTR_STRING, .v.s = node},
	    {.name = "i", .type = FDN_ATTR_INT, .v.i = i}};
	return fdn_register(s, k, strlen(k), getpid(), a, 3, 0, NULL);
}

/* A victim or a survivor: register n entries "PREFIX-i", then wait. */
static void registrant(const char *prefix, int n, struct vshare *vs)
{
	fdn_segment *s;
	if (fdn_segment_attach(st_segment(), 0, &s))
		_exit(2);
	for (int i = 0; i < n; i++) {
		char k[48];
		snprintf(k, sizeof(k), "%s-%d", prefix, i);
		int r = reg(s, k, i, prefix);
		if (r) {
			fprintf(stderr, "%s: %s: %s\n", st_prog, k, fdn_strerror(r));
			_exit(3);
		}
		atomic_store(&vs->registered, i + 1);
	}
	atomic_store(&vs->done, 1);
	for (;;)
		pause();
}

struct dead_victim {
	uint32_t round;
	pid_t pid;
	uint64_t ident40;
	int entries; /* how many it had registered (at least) */
};

static struct dead_victim pending[MAX_PENDING];
static int npending;
static uint64_t graveyard_checked, keys_checked;

static void verify(fdn_segment *s, pid_t *surv, const char *when)
{
	/* Survivors intact. */
	for (int v = 0; v < SURVIVORS; v++) {
		for (int i = 0; i < SURVIVOR_ENT; i++) {
			char k[48];
			snprintf(k, sizeof(k), "surv%d-%d", v, i);
			struct fdn_entry e;
			struct fdn_attr a;
			int r = fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e);
			if (r || e.pid != surv[v] ||
			    fdn_attrs_get(e.attrs, e.attrs_len, "i", &a) != 0 ||
			    a.type != FDN_ATTR_INT || a.v.i != i ||
			    fdn_attrs_count(e.attrs, e.attrs_len) != 3)
				st_fail(&tally, "%s: survivor entry %s lost or changed (%s)", when,
					k, r ? fdn_errname(r) : "content");
		}
	}
	if (fdn__ht_count(s, 0) != SURVIVORS * SURVIVOR_ENT ||
	    fdn_count(s) != SURVIVORS * SURVIVOR_ENT)
		st_fail(&tally, "%s: %lld entries stored, %d expected", when,
			(long long)fdn__ht_count(s, 0), SURVIVORS * SURVIVOR_ENT);
	/* Victims gone, each death recorded once while the window holds it. */
	struct fdn_death d[FDN_GRAVEYARD_MAX];
	int nd = fdn_graveyard(s, d, FDN_GRAVEYARD_MAX);
	/* Every death since the last checkpoint is still in the window? */
	static uint64_t deaths_prev;
	uint64_t deaths_now = fdn_deaths(s);
	bool window = deaths_now - deaths_prev <= FDN_GRAVEYARD_MAX;
	deaths_prev = deaths_now;
	for (int p = 0; p < npending; p++) {
		struct dead_victim *x = &pending[p];
		for (int i = 0; i < x->entries + 1; i++) {
			char k[48];
			snprintf(k, sizeof(k), "v%u-%d", x->round, i);
			if (st_raw_present(s, k))
				st_fail(&tally, "%s: %s of killed victim %d is still stored", when,
					k, (int)x->pid);
			keys_checked++;
		}
		if (!window || x->ident40 == 0)
			continue;
		int seen = 0;
		for (int k = 0; k < nd; k++)
			seen += d[k].pid == x->pid && FDN_PROC_IDENT40(d[k].ident) == x->ident40;
		if (seen != 1)
			st_fail(&tally, "%s: victim %d recorded %d times in the graveyard", when,
				(int)x->pid, seen);
		graveyard_checked++;
	}
	npending = 0;
}

static void checkpoint(fdn_segment *s, pid_t reaper, pid_t *surv, const char *when)
{
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "%s: the segment did not settle", when);
	st_check(s, &tally, when);
	verify(s, surv, when);
}

int main(int argc, char **argv)
{
	static const struct option extra[] = {{"kills", required_argument, 0, 'k'}, {0, 0, 0, 0}};
	st_prog = "stress_reaperkill";
	st_parse(argc, argv, &opts, usage_text, extra, on_opt);
	st_setup("stress_reaperkill", "reaperkill");
	uint64_t x = opts.seed;
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 4096;
	o.heap_bytes = 8u << 20;
	o.processes = 256;
	o.threads = 256;
	fdn_segment *s = st_create(&o);
	pid_t reaper = st_reaper_start();
	struct vshare *vs = st_shared(sizeof(*vs) * (SURVIVORS + 1));
	pid_t surv[SURVIVORS];
	for (int v = 0; v < SURVIVORS; v++) {
		char prefix[16];
		snprintf(prefix, sizeof(prefix), "surv%d", v);
		surv[v] = st_fork();
		if (surv[v] == 0)
			registrant(prefix, SURVIVOR_ENT, &vs[v]);
		while (!atomic_load(&vs[v].done))
			st_sleep_ns(1000000);
	}
	uint64_t t0 = st_now_ns(), end = t0 + (uint64_t)(opts.seconds * 1e9);
	uint64_t next_check = t0 + 1000000000ull, ops = SURVIVORS * SURVIVOR_ENT;
	uint64_t kills = 0, victims = 0, mid_register = 0;
	for (uint32_t round = 1;; round++) {
		if (want_kills ? kills >= (uint64_t)want_kills : st_now_ns() >= end)
			break;
		struct vshare *v = &vs[SURVIVORS];
		memset(v, 0, sizeof(*v));
		int n = (int)st_between(&x, 20, 200);
		bool early = st_rand(&x) % 4 == 0;
		char prefix[24];
		snprintf(prefix, sizeof(prefix), "v%u", round);
		pid_t vp = st_fork();
		if (vp == 0)
			registrant(prefix, n, v);
		/* Killed mid-registration, or once it is done. */
		int until = early ? (int)st_between(&x, 1, (uint64_t)n) : n;
		while (atomic_load(&v->registered) < until) {
			int st;
			if (waitpid(vp, &st, WNOHANG) == vp) {
				st_untrack(vp);
				st_fail(&tally, "victim %d ended on its own (status %#x)", (int)vp,
					st);
				break;
			}
			st_sleep_ns(100000);
		}
		uint32_t idx;
		uint64_t ident40 = 0;
		if (fdn__proc_find(s, vp, &idx) == 0)
			ident40 = FDN_PROC_IDENT40(atomic_load(&s->procs[idx].word));
		st_kill_wait(vp);
		int had = atomic_load(&v->registered);
		ops += (uint64_t)had;
		victims++;
		mid_register += had < n;
		if (npending < MAX_PENDING)
			pending[npending++] = (struct dead_victim){round, vp, ident40, had};
		/* Kill the reaper while it works on the victim. */
		st_sleep_ns(st_rand(&x) % 3000000);
		st_kill_wait(reaper);
		kills++;
		reaper = st_reaper_start();
		/* Once a second, and every 100 rounds so that the graveyard's
		 * window (256 records, two deaths a round) still holds every
		 * victim since the last check. */
		if (st_now_ns() >= next_check || npending >= 100) {
			checkpoint(s, reaper, surv, "checkpoint");
			if (opts.verbose)
				fprintf(stderr, "%s: %llu reaper kills, violations %llu\n", st_prog,
					(unsigned long long)kills,
					(unsigned long long)tally.violations);
			next_check = st_now_ns() + 1000000000ull;
		}
	}
	checkpoint(s, reaper, surv, "final");
	for (int v = 0; v < SURVIVORS; v++)
		st_kill_wait(surv[v]);
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "end: the segment did not settle");
	st_check(s, &tally, "end");
	if (fdn__ht_count(s, 0) != 0 || fdn__ht_count(s, 1) != 0)
		st_fail(&tally, "end: %lld entries, %lld index references remain",
			(long long)fdn__ht_count(s, 0), (long long)fdn__ht_count(s, 1));
	uint64_t deaths = fdn_deaths(s);
	double secs = (double)(st_now_ns() - t0) / 1e9;
	fdn_segment_detach(s);
	st_cleanup();
	return st_summary(ops, kills, &tally,
			  "seconds=%.1f victims=%llu killed_mid_register=%llu keys_checked=%llu "
			  "graveyard_checked=%llu deaths_reaped=%llu",
			  secs, (unsigned long long)victims, (unsigned long long)mid_register,
			  (unsigned long long)keys_checked, (unsigned long long)graveyard_checked,
			  (unsigned long long)deaths);
}
