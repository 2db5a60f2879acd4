/* bench/bench_registry_stopped.c - fdn-bench-registry's stopped_reader
 * (scenario 7 of bench_registry.c): a writer beside a reader process that
 * is stopped (SIGSTOP) inside a read-side section, against the same writer
 * beside the same reader running. */
#include "bench_registry.h"
#include "shm/shm.h" /* FDN_FLUSH_WAIT_NS, FDN_LIMBO_MAX: the documented bounds */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The reader's side, in a page shared with it. */
struct stop_page {
	_Atomic int stop;  /* parent: enter a section and stop inside it */
	_Atomic int left;  /* reader: sections left after a stop (count) */
	_Atomic int quit;  /* parent: exit */
	_Atomic int ready; /* reader: attached, reading */
	_Atomic uint64_t lookups;
};

static struct stop_page *g_page;

static int stop_inside(void *arg, const struct fdn_entry_view *e)
{
	(void)arg;
	(void)e;
	raise(SIGSTOP); /* inside the section: grace periods wait for us */
	return 0;
}

static void reader_main(const char *name, const struct key *probe)
{
	fdn_segment *s = NULL;
	if (fdn_segment_attach(name, 0, &s) != 0)
		_exit(1);
	atomic_store(&g_page->ready, 1);
	uint64_t n = 0;
	while (!atomic_load_explicit(&g_page->quit, memory_order_relaxed)) {
		if (atomic_load_explicit(&g_page->stop, memory_order_acquire)) {
			if (fdn_lookup_view(s, probe->s, probe->len, stop_inside, NULL) != 0)
				_exit(2);
			atomic_store(&g_page->stop, 0);
			atomic_fetch_add(&g_page->left, 1);
			continue;
		}
		pid_t pid;
		if (fdn_whereis(s, probe->s, probe->len, &pid) != 0 || pid != g_pid)
			_exit(3);
		if ((++n & 1023) == 0)
			atomic_store_explicit(&g_page->lookups, n, memory_order_relaxed);
	}
	fdn_segment_detach(s);
	_exit(0);
}

struct stopped {
	fdn_segment *s;
	pid_t reader;
	const struct key *keys;
	uint64_t busy; /* FDN_EBUSY seen in a round: the round was too long */
};

/* Enter: the reader stops inside a section (system 1 only). */
static int stopped_prepare(void *arg, size_t sys)
{
	struct stopped *st = arg;
	if (sys == 0)
		return 0;
	atomic_store_explicit(&g_page->stop, 1, memory_order_release);
	int ws = 0;
	if (waitpid(st->reader, &ws, WUNTRACED) != st->reader || !WIFSTOPPED(ws))
		return bench_fail("stopped_reader: the reader did not stop (status %d)", ws);
	return 0;
}

static int resume(pid_t reader)
{
	int left = atomic_load(&g_page->left);
	kill(reader, SIGCONT);
	for (uint64_t t0 = bench_mono_ns(); atomic_load(&g_page->left) == left;) {
		if (bench_mono_ns() - t0 > 5000000000ull)
			return bench_fail("stopped_reader: the reader did not leave its section");
		usleep(50);
	}
	return 0;
}

static void stopped_finish(void *arg, size_t sys)
{
	struct stopped *st = arg;
	if (sys == 1)
		resume(st->reader);
}

/* Pair i: register and unregister keys[i % PAIR_KEYS]; 0, or the error.
 * A key already there is ours: its unregister failed FDN_EBUSY (which
 * changes nothing), and the pair goes on with the unregister. */
static int one_pair(fdn_segment *s, const struct key *keys, uint64_t i)
{
	const struct key *k = &keys[i % PAIR_KEYS];
	struct fdn_attr a[2];
	attrs_cap_weight(a, pair_cap(i), i);
	int r = fdn_register(s, k->s, k->len, g_pid, a, 2, 0, NULL);
	return r && r != FDN_EEXISTS ? r : fdn_unregister(s, k->s, k->len);
}

static int64_t stopped_slice(void *arg, size_t sys, uint64_t at, uint64_t ops)
{
	struct stopped *st = arg;
	(void)sys;
	for (uint64_t i = at; i < at + ops; i++) {
		int r = one_pair(st->s, st->keys, i);
		if (r == FDN_EBUSY) {
			st->busy++;
			return i > at ? (int64_t)(i - at) : 1;
		}
		if (r)
			return bench_fail("stopped_reader: pair %" PRIu64 ": %s", i,
					  fdn_strerror(r));
	}
	return (int64_t)ops;
}

static uint64_t pending(fdn_segment *s, uint32_t *blocker)
{
	struct fdn_segment_stats ss;
	if (fdn_segment_stats(s, &ss) != 0)
		return UINT64_MAX;
	if (blocker)
		*blocker = ss.reclaim_blocker_pid;
	return ss.reclaim_pending;
}

/*
 * The long stop: the reader stopped inside a section for stop_ms while the
 * writer makes pairs; then SIGCONT and pairs until the blocks waiting for
 * a grace period are back to what they were before.  0 or -1 (said).
 */
static int long_stop(struct stopped *st, const struct opts *o, struct bench_result *res)
{
	uint64_t stop_ms = o->cli.quick ? 1000 : 10000;
	uint64_t base = pending(st->s, NULL);
	if (stopped_prepare(st, 1))
		return -1;
	uint64_t t0 = bench_mono_ns(), i = 0, before = 0, busy = 0;
	uint64_t first_busy_ns = 0, busy_wait_ns = 0, fast_max_ns = 0, peak = 0;
	uint32_t blocker = 0;
	int r = 0;
	while (bench_mono_ns() - t0 < stop_ms * 1000000ull) {
		uint64_t a = bench_mono_ns();
		r = one_pair(st->s, st->keys, i);
		uint64_t d = bench_mono_ns() - a;
		if (r == 0 && busy == 0) {
			before = ++i;
			continue;
		}
		if (r != FDN_EBUSY)
			break;
		if (busy++ == 0) {
			first_busy_ns = a - t0;
			busy_wait_ns = d;
			peak = pending(st->s, &blocker);
		} else if (d > fast_max_ns) {
			fast_max_ns = d;
		}
		if (busy > 1)
			usleep(1000); /* a client backing off; the failures stay fast */
		r = 0;
	}
	if (r)
		return bench_fail("stopped_reader: pair %" PRIu64 " behind the stopped reader: %s",
				  i, fdn_strerror(r));
	uint64_t stopped_ns = bench_mono_ns() - t0;
	if (busy == 0)
		peak = pending(st->s, &blocker);
	if (resume(st->reader))
		return -1;
	uint64_t c0 = bench_mono_ns(), first_ok_ns = 0, drained_ns = 0;
	for (uint64_t j = 0;; j++) {
		r = one_pair(st->s, st->keys, i + j);
		if (r && r != FDN_EBUSY)
			return bench_fail("stopped_reader: pair after SIGCONT: %s",
					  fdn_strerror(r));
		if (r == 0 && !first_ok_ns)
			first_ok_ns = bench_mono_ns() - c0;
		if (pending(st->s, NULL) <= base + 2 * FDN_LIMBO_MAX) {
			drained_ns = bench_mono_ns() - c0;
			break;
		}
		if (bench_mono_ns() - c0 > 10000000000ull)
			return bench_fail("stopped_reader: %" PRIu64 " blocks still wait 10 s "
					  "after SIGCONT",
					  pending(st->s, NULL));
	}
	if (blocker != (uint32_t)st->reader)
		return bench_fail("stopped_reader: the stats named pid %u as holding reclamation "
				  "back, not the stopped reader %d",
				  blocker, (int)st->reader);
	double rate = before && busy ? (double)before / ((double)first_busy_ns / 1e9)
				     : (double)before / ((double)stopped_ns / 1e9);
	bench_say("stopped_reader: the reader stopped inside a section for %.1f s: %" PRIu64
		  " pairs (%.0f/s) before the first FDN_EBUSY, %.1f ms into the stop; that call "
		  "waited %.1f ms (the flush bound is %.0f ms); %" PRIu64 " calls after it, each "
		  "FDN_EBUSY in at most %.3f ms; at the bound %" PRIu64
		  " blocks waited for a grace period, held back by pid %u (the reader); after "
		  "SIGCONT the first pair in %.3f ms, drained in %.1f ms\n",
		  (double)stopped_ns / 1e9, before, rate, (double)first_busy_ns / 1e6,
		  (double)busy_wait_ns / 1e6, (double)FDN_FLUSH_WAIT_NS / 1e6, busy ? busy - 1 : 0,
		  (double)fast_max_ns / 1e6, peak, blocker, (double)first_ok_ns / 1e6,
		  (double)drained_ns / 1e6);
	bench_param(res, "stop_ms", "%" PRIu64, stop_ms);
	bench_param(res, "pairs_before_ebusy", "%" PRIu64, before);
	bench_param(res, "ms_to_ebusy", "%.3f", busy ? (double)first_busy_ns / 1e6 : -1.0);
	bench_param(res, "ebusy_wait_ms", "%.3f", (double)busy_wait_ns / 1e6);
	bench_param(res, "fast_ebusy_max_ms", "%.3f", (double)fast_max_ns / 1e6);
	bench_param(res, "pending_at_bound", "%" PRIu64, peak);
	bench_param(res, "first_pair_after_sigcont_ms", "%.3f", (double)first_ok_ns / 1e6);
	bench_param(res, "drained_ms", "%.3f", (double)drained_ns / 1e6);
	bench_add(res, "until_bound", "writer, reader stopped, until FDN_EBUSY")->v[0] = rate;
	bench_emit(res);
	return 0;
}

int scenario_stopped(const struct opts *o)
{
	struct key *keys = malloc(PAIR_KEYS * sizeof(*keys));
	if (!keys)
		return bench_fail("stopped_reader: %s", strerror(errno));
	for (unsigned i = 0; i < PAIR_KEYS; i++)
		key_fmt(&keys[i], "agent-", PAIR_BACKGROUND + i);
	g_page =
	    mmap(NULL, sizeof(*g_page), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (g_page == MAP_FAILED) {
		free(keys);
		return bench_fail("stopped_reader: mmap: %s", strerror(errno));
	}
	/* A segment sized for 1 000 000 entries: its heap is large enough that
	 * a writer's spill bound is FDN_SPILL_MAX chunks, not a sixteenth of
	 * the heap. */
	struct seg g = {0};
	int r = seg_create(&g, "stopped", 1000000);
	for (uint64_t i = 0; r == 0 && i < PAIR_BACKGROUND; i++) {
		struct key k;
		struct fdn_attr a[2];
		pairs_background(&k, a, i);
		if ((r = fdn_register(g.s, k.s, k.len, g_pid, a, 2, 0, NULL)))
			r = bench_fail("stopped_reader: register %s: %s", k.s, fdn_strerror(r));
	}
	struct key probe;
	key_fmt(&probe, "agent-", 0);
	pid_t reader = -1;
	if (r == 0) {
		fflush(NULL);
		reader = fork();
		if (reader == 0)
			reader_main(g.name, &probe);
		if (reader < 0)
			r = bench_fail("stopped_reader: fork: %s", strerror(errno));
	}
	while (r == 0 && !atomic_load(&g_page->ready)) {
		int ws = 0;
		if (waitpid(reader, &ws, WNOHANG) == reader) {
			reader = -1;
			r = bench_fail("stopped_reader: the reader exited (status %d)", ws);
		}
		usleep(1000);
	}
	struct bench_result res;
	bench_result_init(&res, "stopped_reader", BENCH_RATE, "pairs_per_s", "pairs/s");
	bench_title(&res,
		    "register+unregister pairs (%u background entries, %u keys) beside a reader "
		    "process looking up, and beside it stopped (SIGSTOP) inside a read-side "
		    "section, interleaved rounds",
		    PAIR_BACKGROUND, PAIR_KEYS);
	struct stopped st = {.s = g.s, .reader = reader, .keys = keys};
	/* Short rounds: a round's pairs behind the stopped reader must stay
	 * under the writer's spill bound (FDN_SPILL_MAX chunks of
	 * FDN_LIMBO_MAX blocks, about 9 000 pairs). */
	struct bench_rounds b = {
	    .nsys = 2,
	    .rounds = o->rounds,
	    .warmup = 2,
	    .round_ms = 8,
	    .stream_len = 1u << 30,
	    .min_ops = 200,
	    .run = stopped_slice,
	    .prepare = stopped_prepare,
	    .finish = stopped_finish,
	    .arg = &st,
	};
	if (r == 0) {
		struct bench_sys *row[2] = {
		    bench_add(&res, "reader_running", "writer, reader looking up"),
		    bench_add(&res, "reader_stopped", "writer, reader stopped in a section")};
		r = bench_rounds_run(&b);
		if (r == 0) {
			bench_rounds_fill(&b, &res, row);
			bench_param(&res, "pairs_per_round", "%" PRIu64, b.ops);
			bench_param(&res, "ebusy_rounds", "%" PRIu64, st.busy);
			if (st.busy)
				row[1]->note = "FDN_EBUSY in some rounds: the bound was reached";
		}
		bench_rounds_free(&b);
	}
	if (r == 0) {
		bench_target_ratio(&res, "reader_stopped", "reader_running", 0.9);
		bench_emit(&res);
		struct bench_result lr;
		bench_result_init(&lr, "stopped_reader_bound", BENCH_RATE, "pairs_per_s",
				  "pairs/s");
		bench_title(&lr,
			    "the same writer beside the reader stopped inside a section for %s: "
			    "pairs until the backlog bound",
			    o->cli.quick ? "1 s" : "10 s");
		r = long_stop(&st, o, &lr);
	}
	if (reader > 0) {
		atomic_store(&g_page->quit, 1);
		kill(reader, SIGCONT);
		int ws = 0;
		waitpid(reader, &ws, 0);
		if (r == 0 && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
			r = bench_fail("stopped_reader: the reader failed (status %d)", ws);
	}
	if (g.s)
		seg_close(&g);
	munmap(g_page, sizeof(*g_page));
	free(keys);
	return r ? 1 : 0;
}
