/*
 * stress_pause - a writer is SIGSTOPped in the middle of its updates for
 * 0.1-1 s (--stop-ms; soak: 100,5000) while reader processes keep looking
 * up; then SIGCONT.
 *
 * Two writers own 32 stable keys each (registered before the run, then
 * only updated and merged: always present) and 8 churn keys each
 * (registered and unregistered).  They loop without pause, so a SIGSTOP
 * almost always lands inside an operation (counted: stopped_mid_op),
 * often inside a read-side section or holding a freshly claimed block.
 * Three readers look up random stable keys of both writers.
 *
 * Asserted, each stop:
 *   - readers never block: each reader completes lookups while the writer
 *     is stopped, and the longest single lookup started during a stop is
 *     under --max-latency-ms (default 1000, well below the longest stop);
 *     every lookup finds its key with the writer's pid and its own `key`
 *     attribute (a freed and reused node would carry another);
 *   - the stopped writer is alive, not dead: its process slot stays LIVE
 *     with its pid, all its stable keys stay visible (FDN_REG_CHECK_ALIVE),
 *     and the reaper records no death;
 *   - after SIGCONT it continues (its operation count grows).
 * After each stop, at a quiescent point (writers parked, reaper idle: see
 * stress.h): checker clean, each writer's journal equal to the registry
 * (every key present with its committed version, or absent), fdn_count
 * equal to the journals' sum.  At the end the writers detach and the
 * registry must be empty.
 */
#include "stress.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WRITERS 2
#define READERS 3
#define STABLE  32
#define CHURN   8
#define KEYS    (STABLE + CHURN)

struct wjournal {
	_Atomic int ready;
	_Atomic int parked;
	_Atomic int32_t pending;        /* key of the op in flight, -1 = none */
	_Atomic uint32_t version[KEYS]; /* committed; 0 = absent */
	_Atomic uint64_t ops;
};

struct rstate {
	_Atomic int ready;
	_Atomic uint64_t ops;
	_Atomic uint64_t max_ns;        /* longest lookup */
	_Atomic uint64_t max_paused_ns; /* longest lookup started during a stop */
	_Atomic uint64_t errors;
};

struct control {
	_Atomic int pause;   /* writers park */
	_Atomic int stop;    /* the writers end (after the readers) */
	_Atomic int rstop;   /* the readers end */
	_Atomic int stopped; /* a writer is SIGSTOPped now */
	_Atomic pid_t wpid[WRITERS];
	struct wjournal w[WRITERS];
	struct rstate r[READERS];
};

static struct st_opts opts = {.seconds = 10};
static uint64_t stop_min_ms = 100, stop_max_ms = 1000, max_latency_ms = 1000;

static const char usage_text[] =
    "usage: stress_pause [--seconds N] [--stop-ms MIN,MAX] [--max-latency-ms N] [--seed N]\n"
    "\n"
    "Two writers update their keys without pause; one at a time is SIGSTOPped\n"
    "for MIN..MAX ms, mid-update, then SIGCONTed, while three readers keep\n"
    "looking up.  Asserts the readers never block (each makes progress during\n"
    "every stop, no lookup slower than --max-latency-ms), the stopped writer's\n"
    "entries stay and the reaper does not take it for dead, it continues after\n"
    "SIGCONT, and after each stop: checker clean, journals equal the registry.\n"
    "\n"
    "  --seconds N          run time (default 10; soak: 600)\n"
    "  --stop-ms MIN,MAX    how long a writer stays stopped (default 100,1000;\n"
    "                       soak: 100,5000)\n"
    "  --max-latency-ms N   bound on one reader lookup (default 1000)\n"
    "  --seed N             random seed (default: time and pid)\n"
    "  --verbose            a line per stop\n"
    "\n"
    "Prints one line: ops=N kills=N violations=N leaked=N and figures; exits 0\n"
    "iff violations and leaked are 0.\n";

static int on_opt(int c, const char *arg)
{
	char *end;
	if (c == 's') {
		stop_min_ms = strtoull(arg, &end, 10);
		if (*end != ',')
			return 2;
		stop_max_ms = strtoull(end + 1, &end, 10);
		return *end || stop_min_ms < 1 || stop_max_ms < stop_min_ms || stop_max_ms > 600000
			   ? 2
			   : 0;
	}
	if (c == 'l') {
		max_latency_ms = strtoull(arg, &end, 10);
		return *end || max_latency_ms < 1 ? 2 : 0;
	}
	return 2;
}

static struct control *ctl;

static void key_of(char *k, size_t cap, int w, int j)
{
	snprintf(k, cap, "ps-%d-%02d", w, j);
}

/* ---- the writers --------------------------------------------------------- */

static fdn_segment *attach_or_die(const char *who)
{
	fdn_segment *s;
	int r = fdn_segment_attach(st_segment(), 0, &s);
	if (r) {
		fprintf(stderr, "%s: %s: attach: %s\n", st_prog, who, fdn_strerror(r));
		_exit(2);
	}
	return s;
}

static int write_key(fdn_segment *s, int w, int j, uint32_t v, bool fresh)
{
	char k[32];
	key_of(k, sizeof(k), w, j);
	struct fdn_attr a[2] = {{.name = "key", .type = FDN_ATTR_STRING, .v.s = k},
				{.name = "version", .type = FDN_ATTR_INT, .v.i = v}};
	if (fresh)
		return fdn_register(s, k, strlen(k), getpid(), a, 2, 0, NULL);
	if (v % 2)
		return fdn_update_attributes(s, k, strlen(k), a, 2);
	return fdn_merge_attributes(s, k, strlen(k), &a[1], 1);
}

static void writer(int w, uint64_t seed)
{
	struct wjournal *jr = &ctl->w[w];
	fdn_segment *s = attach_or_die("writer");
	uint64_t x = seed | 1;
	uint32_t v = 0;
	for (int j = 0; j < STABLE; j++) {
		int r = write_key(s, w, j, ++v, true);
		if (r) {
			fprintf(stderr, "%s: writer %d: register: %s\n", st_prog, w,
				fdn_strerror(r));
			_exit(3);
		}
		atomic_store(&jr->version[j], v);
	}
	atomic_store(&jr->ready, 1);
	for (;;) {
		if (st_park(&ctl->pause, &ctl->stop, &jr->parked)) {
			fdn_segment_detach(s); /* unregisters what is left */
			_exit(0);
		}
		int j = (int)(st_rand(&x) % KEYS);
		uint32_t cur = atomic_load(&jr->version[j]), next = ++v;
		int r;
		atomic_store(&jr->pending, j);
		if (j >= STABLE && cur != 0) {
			char k[32];
			key_of(k, sizeof(k), w, j);
			r = fdn_unregister(s, k, strlen(k));
			next = 0;
		} else {
			r = write_key(s, w, j, next, cur == 0);
		}
		if (r) {
			fprintf(stderr, "%s: writer %d: key %d: %s\n", st_prog, w, j,
				fdn_strerror(r));
			_exit(3);
		}
		atomic_store(&jr->version[j], next);
		atomic_store(&jr->pending, -1);
		atomic_fetch_add(&jr->ops, 1);
	}
}

/* ---- the readers --------------------------------------------------------- */

static void amax(_Atomic uint64_t *m, uint64_t v)
{
	uint64_t o = atomic_load(m);
	while (v > o && !atomic_compare_exchange_weak(m, &o, v))
		;
}

static void reader(int i, uint64_t seed)
{
	struct rstate *rs = &ctl->r[i];
	fdn_segment *s = attach_or_die("reader");
	uint64_t x = seed | 1;
	atomic_store(&rs->ready, 1);
	while (!atomic_load(&ctl->rstop)) {
		int w = (int)(st_rand(&x) % WRITERS), j = (int)(st_rand(&x) % STABLE);
		char k[32];
		key_of(k, sizeof(k), w, j);
		bool during = atomic_load(&ctl->stopped) != 0;
		struct fdn_entry e;
		uint64_t t0 = st_now_ns();
		int r = fdn_lookup(s, k, strlen(k), 0, &e);
		uint64_t dt = st_now_ns() - t0;
		amax(&rs->max_ns, dt);
		if (during)
			amax(&rs->max_paused_ns, dt);
		struct fdn_attr a;
		if (r != 0 || e.pid != atomic_load(&ctl->wpid[w]) ||
		    fdn_attrs_get(e.attrs, e.attrs_len, "key", &a) != 0 ||
		    a.type != FDN_ATTR_STRING || strcmp(a.v.s, k) != 0) {
			if (atomic_fetch_add(&rs->errors, 1) < 5)
				fprintf(stderr, "%s: reader %d: %s: %s\n", st_prog, i, k,
					r ? fdn_errname(r) : "wrong pid or key attribute");
		}
		atomic_fetch_add(&rs->ops, 1);
	}
	fdn_segment_detach(s);
	_exit(0);
}

/* ---- the parent ---------------------------------------------------------- */

static struct st_tally tally;
static pid_t wpid[WRITERS], rpid[READERS];

static bool slot_live(fdn_segment *s, pid_t pid)
{
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint64_t w = atomic_load(&s->procs[i].word);
		if (FDN_PROC_PID(w) == (uint32_t)pid && FDN_PROC_STATE(w) == FDN_PROC_LIVE)
			return true;
	}
	return false;
}

/* Every stable key of writer w visible, its pid, alive. */
static int visible_stable(fdn_segment *s, int w)
{
	int n = 0;
	for (int j = 0; j < STABLE; j++) {
		char k[32];
		struct fdn_entry e;
		key_of(k, sizeof(k), w, j);
		if (fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e) == 0 && e.pid == wpid[w])
			n++;
	}
	return n;
}

static void verify_journals(fdn_segment *s, const char *when)
{
	uint64_t want = 0;
	for (int w = 0; w < WRITERS; w++)
		for (int j = 0; j < KEYS; j++) {
			uint32_t v = atomic_load(&ctl->w[w].version[j]);
			char k[32];
			struct fdn_entry e;
			key_of(k, sizeof(k), w, j);
			int r = fdn_lookup(s, k, strlen(k), 0, &e);
			struct fdn_attr a;
			if (v == 0) {
				if (r != FDN_ENOTFOUND)
					st_fail(&tally, "%s: %s unregistered, lookup gives %s",
						when, k, r ? fdn_errname(r) : "an entry");
				continue;
			}
			want++;
			if (r != 0 || e.pid != wpid[w] ||
			    fdn_attrs_get(e.attrs, e.attrs_len, "version", &a) != 0 ||
			    a.type != FDN_ATTR_INT || a.v.i != (int64_t)v)
				st_fail(&tally, "%s: %s: version %u committed, lookup gives %s",
					when, k, v, r ? fdn_errname(r) : "another version or pid");
		}
	if (fdn_count(s) != (int64_t)want)
		st_fail(&tally, "%s: fdn_count %lld, journals hold %llu", when,
			(long long)fdn_count(s), (unsigned long long)want);
}

static void park_all(const char *when)
{
	atomic_store(&ctl->pause, 1);
	uint64_t deadline = st_now_ns() + 20000000000ull;
	for (int w = 0; w < WRITERS; w++)
		while (!atomic_load(&ctl->w[w].parked)) {
			if (st_now_ns() > deadline) {
				st_fail(&tally, "%s: writer %d did not park in 20 s", when, w);
				break;
			}
			st_sleep_ns(200000);
		}
}

static void checkpoint(fdn_segment *s, pid_t reaper, const char *when)
{
	park_all(when);
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "%s: the segment did not settle", when);
	st_check(s, &tally, when);
	verify_journals(s, when);
	/* Each writer clears its own parked flag once it leaves the loop. */
	atomic_store(&ctl->pause, 0);
}

static void wait_ready(_Atomic int *flag, const char *who)
{
	uint64_t deadline = st_now_ns() + 10000000000ull;
	while (!atomic_load(flag)) {
		if (st_now_ns() > deadline) {
			fprintf(stderr, "%s: a %s did not start in 10 s\n", st_prog, who);
			exit(1);
		}
		st_sleep_ns(1000000);
	}
}

int main(int argc, char **argv)
{
	static const struct option extra[] = {{"stop-ms", required_argument, 0, 's'},
					      {"max-latency-ms", required_argument, 0, 'l'},
					      {0, 0, 0, 0}};
	st_prog = "stress_pause";
	st_parse(argc, argv, &opts, usage_text, extra, on_opt);
	st_setup("stress_pause", "pause");
	uint64_t x = opts.seed;
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1024;
	o.heap_bytes = 4u << 20;
	o.processes = 64;
	o.threads = 64;
	fdn_segment *s = st_create(&o);
	pid_t reaper = st_reaper_start();
	ctl = st_shared(sizeof(*ctl));
	for (int w = 0; w < WRITERS; w++) {
		atomic_store(&ctl->w[w].pending, -1);
		uint64_t seed = st_rand(&x);
		wpid[w] = st_fork();
		if (wpid[w] == 0)
			writer(w, seed);
		atomic_store(&ctl->wpid[w], wpid[w]);
	}
	for (int w = 0; w < WRITERS; w++)
		wait_ready(&ctl->w[w].ready, "writer");
	for (int i = 0; i < READERS; i++) {
		uint64_t seed = st_rand(&x);
		rpid[i] = st_fork();
		if (rpid[i] == 0)
			reader(i, seed);
	}
	for (int i = 0; i < READERS; i++)
		wait_ready(&ctl->r[i].ready, "reader");

	uint64_t t0 = st_now_ns(), end = t0 + (uint64_t)(opts.seconds * 1e9);
	uint64_t stops = 0, mid_op = 0, longest_stop_ns = 0, stopped_ns = 0;
	uint64_t deaths0 = fdn_deaths(s);
	while (st_now_ns() < end) {
		st_sleep_ns(st_between(&x, 20, 200) * 1000000ull);
		int w = (int)(st_rand(&x) % WRITERS);
		uint64_t d = st_between(&x, stop_min_ms, stop_max_ms) * 1000000ull;
		uint64_t wops = atomic_load(&ctl->w[w].ops), rops[READERS];
		kill(wpid[w], SIGSTOP);
		/* Stopped once /proc says so: from then on it writes nothing. */
		for (int k = 0; k < 1000; k++) {
			char path[64], buf[512];
			snprintf(path, sizeof(path), "/proc/%d/stat", (int)wpid[w]);
			FILE *f = fopen(path, "r");
			size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
			if (f)
				fclose(f);
			buf[n] = 0;
			char *p = strrchr(buf, ')');
			if (p && p[1] == ' ' && p[2] == 'T')
				break;
			st_sleep_ns(100000);
		}
		uint64_t t_stop = st_now_ns();
		atomic_store(&ctl->stopped, 1);
		mid_op += atomic_load(&ctl->w[w].pending) >= 0;
		for (int i = 0; i < READERS; i++)
			rops[i] = atomic_load(&ctl->r[i].ops);
		/* While it is stopped: alive to everyone, its keys stay. */
		do {
			st_sleep_ns(d / 4 < 50000000ull ? d / 4 : 50000000ull);
			if (!slot_live(s, wpid[w]))
				st_fail(&tally,
					"stop %llu: the stopped writer %d's process slot is "
					"not LIVE",
					(unsigned long long)stops, w);
			int vis = visible_stable(s, w);
			if (vis != STABLE)
				st_fail(&tally,
					"stop %llu: %d of the stopped writer's %d keys visible",
					(unsigned long long)stops, vis, STABLE);
			if (fdn_deaths(s) != deaths0)
				st_fail(&tally, "stop %llu: the reaper recorded a death",
					(unsigned long long)stops);
		} while (st_now_ns() - t_stop < d && tally.violations < 20);
		for (int i = 0; i < READERS; i++)
			if (atomic_load(&ctl->r[i].ops) == rops[i])
				st_fail(&tally, "stop %llu: reader %d made no progress in %llu ms",
					(unsigned long long)stops, i,
					(unsigned long long)((st_now_ns() - t_stop) / 1000000));
		atomic_store(&ctl->stopped, 0);
		uint64_t held = st_now_ns() - t_stop;
		stopped_ns += held;
		if (held > longest_stop_ns)
			longest_stop_ns = held;
		kill(wpid[w], SIGCONT);
		stops++;
		/* It continues. */
		uint64_t deadline = st_now_ns() + 10000000000ull;
		while (atomic_load(&ctl->w[w].ops) == wops) {
			if (st_now_ns() > deadline) {
				st_fail(&tally, "stop %llu: writer %d did not continue in 10 s",
					(unsigned long long)stops, w);
				break;
			}
			st_sleep_ns(1000000);
		}
		if (atomic_load(&ctl->w[w].ops) == wops)
			continue;
		if (opts.verbose)
			fprintf(stderr, "%s: stop %llu: writer %d for %llu ms\n", st_prog,
				(unsigned long long)stops, w, (unsigned long long)(held / 1000000));
		checkpoint(s, reaper, "after a stop");
		if (tally.violations >= 20)
			break;
	}
	/* The end: readers and writers leave; nothing of theirs remains. */
	park_all("final");
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "final: the segment did not settle");
	st_check(s, &tally, "final");
	verify_journals(s, "final");
	/* Readers first: a writer's detach removes its keys. */
	atomic_store(&ctl->rstop, 1);
	uint64_t ops = 0, max_ns = 0, max_paused = 0, rerr = 0;
	for (int i = 0; i < READERS; i++) {
		int st;
		waitpid(rpid[i], &st, 0);
		st_untrack(rpid[i]);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			st_fail(&tally, "reader %d ended with status %#x", i, st);
		ops += atomic_load(&ctl->r[i].ops);
		rerr += atomic_load(&ctl->r[i].errors);
		uint64_t m = atomic_load(&ctl->r[i].max_ns),
			 mp = atomic_load(&ctl->r[i].max_paused_ns);
		max_ns = m > max_ns ? m : max_ns;
		max_paused = mp > max_paused ? mp : max_paused;
	}
	atomic_store(&ctl->stop, 1);
	for (int w = 0; w < WRITERS; w++) {
		int st;
		waitpid(wpid[w], &st, 0);
		st_untrack(wpid[w]);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			st_fail(&tally, "writer %d ended with status %#x", w, st);
		ops += atomic_load(&ctl->w[w].ops);
	}
	if (rerr)
		st_fail(&tally, "readers: %llu lookups missed a stable key or saw a wrong entry",
			(unsigned long long)rerr);
	if (max_paused >= max_latency_ms * 1000000ull)
		st_fail(&tally, "a reader lookup during a stop took %.3f ms (bound %llu ms)",
			max_paused / 1e6, (unsigned long long)max_latency_ms);
	if (stops == 0)
		st_fail(&tally, "no writer was stopped (run longer)");
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "end: the segment did not settle");
	st_check(s, &tally, "end");
	if (fdn_count(s) != 0)
		st_fail(&tally, "end: %lld entries remain after every writer detached",
			(long long)fdn_count(s));
	double secs = (double)(st_now_ns() - t0) / 1e9;
	fdn_segment_detach(s);
	st_cleanup();
	return st_summary(ops, 0, &tally,
			  "seconds=%.1f stops=%llu stopped_mid_op=%llu stopped_s=%.1f "
			  "longest_stop_ms=%llu reader_max_ms=%.3f reader_max_during_stop_ms=%.3f",
			  secs, (unsigned long long)stops, (unsigned long long)mid_op,
			  stopped_ns / 1e9, (unsigned long long)(longest_stop_ns / 1000000),
			  max_ns / 1e6, max_paused / 1e6);
}
