/*
 * test_reclaim.c - writers never wait for readers: a reader stopped inside
 * a section, a callback that blocks, a writer that may not issue
 * membarrier beside light readers; callbacks run outside read-side
 * sections and their -1 stops every walk.  Real processes.
 */
#include "common.h"
#include "lib/internal.h"

#include <foundation/reaper.h>
#include <foundation/registry.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int reg_cap(fdn_segment *s, const char *k, const char *cap)
{
	struct fdn_attr a[2] = {
	    {.name = "capability", .type = FDN_ATTR_STRING, .v.s = cap},
	    {.name = "zone", .type = FDN_ATTR_STRING, .v.s = "z1"},
	};
	return fdn_register(s, k, strlen(k), getpid(), a, 2, FDN_REG_REPLACE, NULL);
}

/* One register+unregister pair; the error of the first step that failed. */
static int pair_as(fdn_segment *s, const char *tag, unsigned i)
{
	char k[32];
	snprintf(k, sizeof(k), "%s-%u", tag, i % 64);
	int r = reg_cap(s, k, "gpu");
	return r ? r : fdn_unregister(s, k, strlen(k));
}

static int pair(fdn_segment *s, unsigned i)
{
	return pair_as(s, "churn", i);
}

/* ---- callbacks ------------------------------------------------------------------ */

static int calls;

static int stop_at_once(void *arg, const struct fdn_entry_view *e)
{
	(void)arg;
	(void)e;
	calls++;
	return -1;
}

Test(reclaim, minus_one_stops_every_walk_after_one_call, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "stop");
	fdn_segment *s = t_create_reaped(name, 10000, 64);
	for (int i = 0; i < 20; i++) {
		char k[32];
		snprintf(k, sizeof(k), "w%d", i);
		cr_assert_eq(reg_cap(s, k, "gpu"), 0);
	}
	struct fdn_attr gpu = {.type = FDN_ATTR_STRING, .v.s = "gpu"};
	struct fdn_attr z1 = {.type = FDN_ATTR_STRING, .v.s = "z1"};
	cr_assert(fdn_attr_indexed(s, "capability"));
	cr_assert_not(fdn_attr_indexed(s, "zone"));
	calls = 0;
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &gpu, stop_at_once, NULL), -1);
	cr_assert_eq(calls, 1, "indexed find: %d calls", calls);
	calls = 0;
	cr_assert_eq(fdn_find_by_attribute(s, "zone", &z1, stop_at_once, NULL), -1);
	cr_assert_eq(calls, 1, "unindexed find: %d calls", calls);
	calls = 0;
	struct fdn_criterion c = {"capability", FDN_CMP_EQ, gpu};
	cr_assert_eq(fdn_query(s, &c, 1, stop_at_once, NULL), -1);
	cr_assert_eq(calls, 1, "indexed query: %d calls", calls);
	calls = 0;
	struct fdn_criterion cz = {"zone", FDN_CMP_EQ, z1};
	cr_assert_eq(fdn_query(s, &cz, 1, stop_at_once, NULL), -1);
	cr_assert_eq(calls, 1, "unindexed query: %d calls", calls);
	calls = 0;
	cr_assert_eq(fdn_foreach(s, stop_at_once, NULL), -1);
	cr_assert_eq(calls, 1, "foreach: %d calls", calls);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

static int write_from_callback(void *arg, const struct fdn_entry_view *e)
{
	fdn_segment *s = arg;
	(void)e;
	/* Outside any read-side section: the library is usable here. */
	if (reg_cap(s, "from-callback", "cpu") != 0)
		return 1;
	if (fdn_unregister(s, "from-callback", 13) != 0)
		return 2;
	return fdn__rcu_synchronize(s, 5000 * 1000000ll) == 0 ? 0 : 3;
}

Test(reclaim, callbacks_run_outside_read_side_sections, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "cbout");
	fdn_segment *s = t_create_reaped(name, 10000, 64);
	for (int i = 0; i < 5; i++) {
		char k[32];
		snprintf(k, sizeof(k), "e%d", i);
		cr_assert_eq(reg_cap(s, k, "gpu"), 0);
	}
	struct fdn_attr gpu = {.type = FDN_ATTR_STRING, .v.s = "gpu"};
	cr_assert_eq(fdn_foreach(s, write_from_callback, s), 5);
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &gpu, write_from_callback, s), 5);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

static int block_two_seconds(void *arg, const struct fdn_entry_view *e)
{
	(void)arg;
	(void)e;
	t_sleep_ms(2000);
	return -1;
}

Test(reclaim, a_blocking_callback_costs_writers_nothing, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "cbblock");
	fdn_segment *s = t_create_reaped(name, 10000, 64);
	cr_assert_eq(reg_cap(s, "held", "gpu"), 0);
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *x = NULL;
		if (fdn_segment_attach(name, 0, &x) != 0)
			_exit(1);
		char c = 'r';
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		_exit(fdn_foreach(x, block_two_seconds, NULL) == -1 ? 0 : 3);
	}
	close(pfd[1]);
	char c;
	cr_assert_eq(read(pfd[0], &c, 1), 1);
	t_sleep_ms(100);
	uint64_t t0 = t_mono_ms();
	unsigned ok = 0, busy = 0;
	while (t_mono_ms() - t0 < 1500) {
		int r = pair(s, ok);
		ok += r == 0;
		busy += r == FDN_EBUSY;
		cr_assert(r == 0 || r == FDN_EBUSY, "pair: %s", fdn_strerror(r));
	}
	cr_assert_eq(busy, 0, "a blocked callback held writers back");
	cr_assert_gt(ok, 2 * FDN_LIMBO_MAX, "only %u pairs", ok);
	cr_assert(t_wait_ok(p));
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* ---- the grace periods a writer's help starts ----------------------------------------- */

struct gp_rate {
	uint64_t g, ms; /* grace periods started in ms milliseconds */
	unsigned ok;    /* this process's pairs */
};

/* A reader process nearly always inside a section (fdn_lookup in a loop),
 * `writers` writer processes and this one doing register+unregister pairs
 * for a second.  No reaper: every grace period counted is a writer's. */
static struct gp_rate gp_rate_run(const char *tag, int writers)
{
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	char name[128];
	t_name(name, sizeof(name), tag);
	fdn_segment *s = t_create(name, 100000, 0);
	cr_assert_eq(reg_cap(s, "held", "gpu"), 0);
	/* [0] reader ready, [1] stop, [2] writers ready, [3] go */
	_Atomic int *flag = t_shared(4 * sizeof(int));
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *x = NULL;
		if (fdn_segment_attach(name, 0, &x) != 0)
			_exit(1);
		struct fdn_entry e;
		atomic_store(&flag[0], 1);
		while (!atomic_load(&flag[1]))
			if (fdn_lookup(x, "held", 4, 0, &e) != 0)
				_exit(2);
		fdn_segment_detach(x); /* no reaper here to reclaim its slot */
		_exit(0);
	}
	t_wait_ready(&flag[0], p);
	pid_t w[4];
	cr_assert_leq(writers, 4);
	for (int i = 0; i < writers; i++) {
		w[i] = t_fork();
		if (w[i] == 0) {
			fdn_segment *x = NULL;
			if (fdn_segment_attach(name, 0, &x) != 0)
				_exit(1);
			char wtag[16];
			snprintf(wtag, sizeof(wtag), "w%d", i);
			atomic_fetch_add(&flag[2], 1);
			while (!atomic_load(&flag[3]))
				;
			for (unsigned n = 0; !atomic_load(&flag[1]); n++)
				if (pair_as(x, wtag, n) != 0)
					_exit(2);
			fdn_segment_detach(x);
			_exit(0);
		}
	}
	while (atomic_load(&flag[2]) < writers)
		t_sleep_ms(1);
	atomic_store(&flag[3], 1);
	struct gp_rate r = {0};
	uint64_t g0 = atomic_load(&s->hdr->gp_ctr), t0 = t_mono_ms();
	while (t_mono_ms() - t0 < 1000) {
		int e = pair(s, r.ok);
		cr_assert_eq(e, 0, "pair %u: %s", r.ok, fdn_strerror(e));
		r.ok++;
	}
	r.ms = t_mono_ms() - t0;
	r.g = atomic_load(&s->hdr->gp_ctr) - g0;
	atomic_store(&flag[1], 1);
	cr_assert(t_wait_ok(p), "the reader failed");
	for (int i = 0; i < writers; i++)
		cr_assert(t_wait_ok(w[i]), "writer %d failed", i);
	/* The blocks still wait for one: a last grace period frees them all. */
	cr_assert_eq(fdn__grace_period(s, 5000000000ll), 0);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
	printf("%s: %u pairs here, %llu grace periods in %llu ms\n", tag, r.ok,
	       (unsigned long long)r.g, (unsigned long long)r.ms);
	return r;
}

/* A writer beside the reader: its help starts at most one grace period a
 * millisecond (fdn__gp_help).  Without the limit it started one whenever
 * the last had completed (here, with the limit set to 1 ns: 14 738 and
 * 16 316 in the second), each a membarrier that interrupts the reader's
 * CPU. */
Test(reclaim, a_writer_starts_at_most_a_grace_period_a_millisecond, .timeout = 60)
{
	struct gp_rate r = gp_rate_run("gprate", 0);
	cr_assert_gt(r.ok, 2 * FDN_LIMBO_MAX, "only %u pairs", r.ok);
	cr_assert_leq(r.g, 2 * r.ms + 20, "%llu grace periods in %llu ms", (unsigned long long)r.g,
		      (unsigned long long)r.ms);
}

/* Three writer processes beside the same reader: their help together starts
 * at most about one grace period a millisecond (header.gp_help_ns), not one
 * a millisecond each.  Limited per process only, this test counted
 * 1 474-1 491 in the second, and failed (the processes share two CPUs with
 * the reader); with the shared limit 992-995.  The bound allows a quarter
 * more than one a millisecond: a helper preempted between its clock read
 * and its grace period starts one late. */
Test(reclaim, writers_of_several_processes_share_the_help_limit, .timeout = 60)
{
	struct gp_rate r = gp_rate_run("gpshare", 2);
	cr_assert_leq(r.g, r.ms + r.ms / 4 + 20, "%llu grace periods in %llu ms",
		      (unsigned long long)r.g, (unsigned long long)r.ms);
}

/* ---- a reader stopped inside a section ---------------------------------------------- */

/* 100 000 entries: a heap of 16 MiB or more, where full rings spill. */
Test(reclaim, stopped_reader_bounded_backlog_then_ebusy_then_drains, .timeout = 120)
{
	char name[128];
	t_name(name, sizeof(name), "stopped");
	fdn_segment *s = t_create_reaped(name, 100000, 64);
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *x = NULL;
		struct fdn__thread *t;
		if (fdn_segment_attach(name, 0, &x) != 0 || fdn__rcu_read_lock(x, &t) != 0)
			_exit(1);
		char c = 'r';
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		raise(SIGSTOP); /* stopped inside its section */
		fdn__rcu_read_unlock(t);
		_exit(0);
	}
	close(pfd[1]);
	char c;
	cr_assert_eq(read(pfd[0], &c, 1), 1);
	int st;
	cr_assert_eq(waitpid(p, &st, WUNTRACED), p);
	cr_assert(WIFSTOPPED(st));
	/* The writer goes on until its backlog bound, then FDN_EBUSY within
	 * the documented wait (500 ms; generous bound here). */
	unsigned ok = 0;
	int r = 0;
	bool unreg = false, odd = false;
	char k[32];
	uint64_t t0 = t_mono_ms(), slowest = 0, slowest_ok = 0;
	for (unsigned i = 0; i < 100000 && r == 0; i++) {
		snprintf(k, sizeof(k), "churn-%u", i % 64);
		uint64_t a = t_mono_ms();
		/* Once the last chunk has spilled, one entry without
		 * attributes: its unregister retires one block where the
		 * others retire two (the entry and its capability's
		 * reference), so the ring's last fill ends one short of full
		 * and the unregister after that meets the bound half-way. */
		struct fdn__thread *me;
		bool plain = !odd && fdn__thread_get(s, &me) == 0 && s->spill_max &&
			     atomic_load(&me->ts->spill_count) / FDN_LIMBO_MAX >= s->spill_max;
		odd |= plain;
		r = plain ? fdn_register(s, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE, NULL)
			  : reg_cap(s, k, "gpu");
		unreg = r == 0;
		if (r == 0)
			r = fdn_unregister(s, k, strlen(k));
		uint64_t e = t_mono_ms();
		slowest = e - a > slowest ? e - a : slowest;
		if (r == 0 && e - a > slowest_ok)
			slowest_ok = e - a;
		ok += r == 0;
	}
	printf("stopped reader: %u pairs, then FDN_EBUSY from %s; slowest %llu ms, slowest that "
	       "succeeded %llu ms\n",
	       ok, unreg ? "an unregister" : "a register", (unsigned long long)slowest,
	       (unsigned long long)slowest_ok);
	cr_assert(odd, "the writer never reached its last spill chunk");
	cr_assert_eq(r, FDN_EBUSY, "expected FDN_EBUSY at the backlog bound: %s", fdn_strerror(r));
	/* The call that met the bound failed whole: an unregister left its
	 * entry (it once removed the entry, then waited out the bound in a
	 * reference's removal and returned 0 -- a successful pair of over
	 * 2 s), a register left none. */
	struct fdn_entry fe;
	cr_assert_eq(fdn_lookup(s, k, strlen(k), 0, &fe), unreg ? 0 : FDN_ENOTFOUND,
		     "%s after its %s failed FDN_EBUSY", k, unreg ? "unregister" : "register");
	cr_assert_lt(slowest_ok, 1800,
		     "a call that succeeded took %llu ms (the flush bound is 2 s)",
		     (unsigned long long)slowest_ok);
	if (unreg) {
		/* The next one fails at once, and changes nothing either. */
		uint64_t a = t_mono_ms();
		cr_assert_eq(fdn_unregister(s, k, strlen(k)), FDN_EBUSY);
		cr_assert_lt(t_mono_ms() - a, 1000);
		cr_assert_eq(fdn_lookup(s, k, strlen(k), 0, &fe), 0);
	}
	/* Far past one limbo ring: full rings went to spill chunks. */
	cr_assert_gt(ok, 4 * FDN_LIMBO_MAX, "only %u pairs before FDN_EBUSY", ok);
	cr_log_info("%u pairs before FDN_EBUSY", ok);
	cr_assert_lt(slowest, 5000, "one call waited %llu ms", (unsigned long long)slowest);
	cr_assert_lt(t_mono_ms() - t0, 30000);
	/* What waits, and who holds it back, is visible. */
	struct fdn_segment_stats stats;
	fdn_segment_stats(s, &stats);
	cr_assert_gt(stats.reclaim_pending, 4 * FDN_LIMBO_MAX, "%llu blocks wait",
		     (unsigned long long)stats.reclaim_pending);
	cr_assert_eq(stats.reclaim_blocker_pid, (uint32_t)p, "blocker %u, stopped reader %d",
		     stats.reclaim_blocker_pid, (int)p);
	/* Nothing half done: the segment is consistent.  (No settling: the
	 * reaper is never idle while a section holds blocks back, and no
	 * process has died.) */
	int v = fdn_segment_check(s, t_print_violation, NULL);
	cr_assert_eq(v, 0, "checker found %d violations", v);
	/* SIGCONT: the reader leaves its section, the backlog drains. */
	kill(p, SIGCONT);
	cr_assert(t_wait_ok(p));
	uint64_t t1 = t_mono_ms();
	unsigned after = 0;
	while (t_mono_ms() - t1 < 3000 && after < 10 * FDN_LIMBO_MAX)
		after += pair(s, after) == 0;
	cr_assert_geq(after, 10 * FDN_LIMBO_MAX, "after SIGCONT only %u pairs", after);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* ---- spill chunks: a writer killed in each state a spill passes through ---------------- */

/* A reader process parked inside a section until *release. */
static pid_t park_in_section(const char *name, _Atomic int *inside, _Atomic int *release)
{
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *x;
		struct fdn__thread *t;
		if (fdn_segment_attach(name, 0, &x) || fdn__rcu_read_lock(x, &t))
			_exit(2);
		atomic_store(inside, 1);
		while (!atomic_load(release))
			usleep(1000);
		fdn__rcu_read_unlock(t);
		fdn_segment_detach(x);
		_exit(0);
	}
	while (!atomic_load(inside))
		usleep(1000);
	return p;
}

/* The states a death can leave (limbo.c, "Spill"). */
enum spill_state {
	SPILL_CLAIMED, /* chunk claimed and half filled, not linked */
	SPILL_LINKED,  /* chunk linked, the ring not emptied yet */
	SPILL_DROPPED, /* oldest chunk unlinked, named by spill_dead, not freed */
	SPILL_MANY,    /* several chunks and a ring, at rest */
	SPILL_STATES
};

static void spill_child(const char *name, enum spill_state state)
{
	fdn_segment *c;
	struct fdn__thread *t;
	if (fdn_segment_attach(name, 0, &c) || fdn__thread_get(c, &t))
		_exit(2);
	struct fdn_shm_tslot *ts = t->ts;
	/* Each put+delete retires one node; the parked reader keeps every
	 * retired node waiting. */
	unsigned ops = state == SPILL_MANY ? 5 * FDN_LIMBO_MAX + 7 : FDN_LIMBO_MAX;
	if (state == SPILL_DROPPED)
		ops = 2 * FDN_LIMBO_MAX;
	for (unsigned i = 0; i < ops; i++)
		if (t_put(c, "spilled", i + 1, FDN_HT_UPSERT) || t_del(c, "spilled"))
			_exit(3);
	if (fdn_tslot_pending(ts) != FDN_LIMBO_MAX && state != SPILL_MANY)
		_exit(4);
	uint64_t head = atomic_load(&ts->spill);
	uint32_t g, gen;
	switch (state) {
	case SPILL_CLAIMED:
	case SPILL_LINKED: {
		if (fdn__alloc_as(t, &ts->spill_new, FDN_SPILL_BYTES, &g, &gen))
			_exit(5);
		struct fdn_shm_spill *ch = fdn__gptr(c, g);
		uint64_t h = atomic_load(&ts->limbo_head);
		unsigned n = state == SPILL_CLAIMED ? FDN_LIMBO_MAX / 2 : FDN_LIMBO_MAX;
		for (unsigned k = 0; k < n; k++) {
			atomic_store(&ch->limbo[k],
				     atomic_load(&ts->limbo[(h + k) % FDN_LIMBO_MAX]));
			atomic_store(&ch->stamp_of[k],
				     atomic_load(&ts->stamp[(h + k) % FDN_LIMBO_MAX]));
		}
		atomic_store(&ch->count, n);
		if (state == SPILL_LINKED) {
			atomic_store(&ch->next, head);
			atomic_store(&ch->stamp, atomic_load(&c->hdr->gp_ctr));
			atomic_store(&ts->spill, (uint64_t)g << 32 | gen);
			atomic_store(&ts->spill_count, atomic_load(&ts->spill_count) + n);
		}
		break;
	}
	case SPILL_DROPPED:
		/* One chunk (the first ring), a full ring again: unlink the
		 * chunk as fdn__spill_drop does, and die before freeing it. */
		if (head == 0 || fdn__spill_chunk(c, head) == NULL)
			_exit(6);
		atomic_store(&ts->spill_dead, head);
		atomic_store(&ts->spill, 0);
		break;
	case SPILL_MANY:
		if (atomic_load(&ts->spill_count) < 4 * FDN_LIMBO_MAX)
			_exit(7);
		break;
	default:
		break;
	}
	kill(getpid(), SIGKILL);
}

Test(reclaim, writer_killed_in_each_spill_state_leaves_nothing, .timeout = 120)
{
	char name[128];
	t_name(name, sizeof(name), "spillkill");
	/* A heap of 32 MiB: at least FDN_SPILL_MIN_PAGES pages. */
	fdn_segment *s = t_create(name, 4096, 32u << 20);
	for (int state = 0; state < SPILL_STATES; state++) {
		_Atomic int *flags = t_shared(2 * sizeof(_Atomic int));
		pid_t reader = park_in_section(name, &flags[0], &flags[1]);
		pid_t w = t_fork();
		if (w == 0)
			spill_child(name, (enum spill_state)state);
		int st;
		cr_assert_eq(waitpid(w, &st, 0), w);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
			  "state %d: the writer failed before its death (%#x)", state, st);
		struct fdn_segment_stats ss;
		fdn_segment_stats(s, &ss);
		cr_assert_geq(ss.reclaim_pending, FDN_LIMBO_MAX, "state %d: %llu pending", state,
			      (unsigned long long)ss.reclaim_pending);
		atomic_store(&flags[1], 1);
		cr_assert(t_wait_ok(reader));
		t_reclaim(s, reader);
		t_reclaim(s, w);
		t_assert_clean(s);
		fdn_segment_stats(s, &ss);
		cr_assert_eq(ss.blocks_used, 0, "state %d: %llu blocks left", state,
			     (unsigned long long)ss.blocks_used);
		cr_assert_eq(ss.reclaim_pending, 0, "state %d", state);
	}
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* ---- a writer that may not issue membarrier ------------------------------------------- */

/* Install seccomp filter f (n instructions) on this process: 0 or -1. */
static int install_filter(struct sock_filter *f, unsigned short n)
{
	struct sock_fprog prog = {n, f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

static int deny_membarrier(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	return install_filter(f, sizeof(f) / sizeof(f[0]));
}

/* A filter that kills the process at its first
 * membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED); other commands pass. */
static int kill_on_global_membarrier(void)
{
	struct sock_filter f[] = {
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 3),
	    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
	    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 1),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
	    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	return install_filter(f, sizeof(f) / sizeof(f[0]));
}

/*
 * A writer beside no light reader (a heavy reader process, whose membarrier
 * is denied, and the reaper, heavy by design) ends its grace periods with a
 * fence alone: under a filter that kills it at its first
 * membarrier(GLOBAL_EXPEDITED), it makes its pairs and grace periods and
 * lives.  Beside a light reader the same writer must issue one, and the
 * filter kills it: the check can fail.
 */
Test(reclaim, no_membarrier_when_no_reader_is_light, .timeout = 120)
{
	char name[128];
	t_name(name, sizeof(name), "nolight");
	fdn_segment *s = t_create_reaped(name, 10000, 64);
	_Atomic int *flag = t_shared(2 * sizeof(int)); /* [0] reader ready, [1] stop */
	for (int light = 0; light < 2; light++) {
		atomic_store(&flag[0], 0);
		atomic_store(&flag[1], 0);
		pid_t reader = t_fork();
		if (reader == 0) {
			if (!light && deny_membarrier() != 0)
				_exit(77);
			fdn_segment *x = NULL;
			struct fdn_entry e;
			if (fdn_segment_attach(name, 0, &x) != 0)
				_exit(1);
			if (atomic_load(&fdn__rcu_light) != (bool)light)
				_exit(3);
			fdn_lookup(x, "none", 4, 0, &e); /* claims its reader slot */
			atomic_store(&flag[0], 1);
			while (!atomic_load(&flag[1]))
				fdn_lookup(x, "none", 4, 0, &e);
			fdn_segment_detach(x);
			_exit(0);
		}
		t_wait_ready(&flag[0], reader);
		pid_t writer = t_fork();
		if (writer == 0) {
			if (kill_on_global_membarrier() != 0)
				_exit(77);
			fdn_segment *x = NULL;
			if (fdn_segment_attach(name, 0, &x) != 0)
				_exit(1);
			for (unsigned i = 0; i < 20 * FDN_LIMBO_MAX; i++)
				if (pair(x, i) != 0)
					_exit(2);
			for (int i = 0; i < 20; i++)
				if (fdn__rcu_synchronize(x, 5000 * 1000000ll) != 0)
					_exit(4);
			fdn_segment_detach(x);
			_exit(0);
		}
		int st;
		cr_assert_eq(waitpid(writer, &st, 0), writer);
		atomic_store(&flag[1], 1);
		int rst;
		cr_assert_eq(waitpid(reader, &rst, 0), reader);
		if ((WIFEXITED(st) && WEXITSTATUS(st) == 77) ||
		    (WIFEXITED(rst) && WEXITSTATUS(rst) == 77)) {
			fprintf(stderr, "skip: seccomp unavailable here\n");
			break;
		}
		cr_assert(WIFEXITED(rst) && WEXITSTATUS(rst) == 0, "reader (light %d): status %d",
			  light, WIFEXITED(rst) ? WEXITSTATUS(rst) : -1);
		if (!light)
			cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
				  "writer beside heavy readers: %s %d",
				  WIFSIGNALED(st) ? "signal" : "status",
				  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		else
			cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
				  "writer beside a light reader: not killed at its membarrier "
				  "(%s %d)",
				  WIFSIGNALED(st) ? "signal" : "status",
				  WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		t_reclaim(s, writer);
	}
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

struct litmus {
	_Atomic uint64_t x, y;
	_Atomic int done;
	_Atomic uint64_t sections, violations, gps;
};

Test(reclaim, seccomp_writer_never_ends_a_grace_period_under_a_light_reader, .timeout = 300)
{
	char name[128];
	t_name(name, sizeof(name), "litmus");
	fdn_segment *s = t_create_reaped(name, 10000, 64);
	struct litmus *L = t_shared(sizeof(*L));
	pid_t reader = t_fork();
	if (reader == 0) {
		fdn_segment *x = NULL;
		if (fdn_segment_attach(name, 0, &x) != 0)
			_exit(1);
		struct fdn__thread *t;
		uint64_t n = 0, bad = 0;
		while (!atomic_load_explicit(&L->done, memory_order_relaxed)) {
			if (fdn__rcu_read_lock(x, &t) != 0)
				_exit(2);
			uint64_t a = atomic_load_explicit(&L->x, memory_order_relaxed);
			/* A section long enough for a writer's grace period
			 * to fit inside it if nothing holds it back. */
			for (int k = 0; k < 64; k++)
				fdn__cpu_relax();
			uint64_t b = atomic_load_explicit(&L->y, memory_order_relaxed);
			fdn__rcu_read_unlock(t);
			bad += b > a; /* a grace period ended under this section */
			if ((++n & 4095) == 0)
				atomic_store(&L->sections, n);
		}
		atomic_store(&L->sections, n);
		atomic_store(&L->violations, bad);
		_exit(atomic_load(&fdn__rcu_light) ? 0 : 3); /* it was a light reader */
	}
	pid_t writer = t_fork();
	if (writer == 0) {
		if (deny_membarrier() != 0)
			_exit(77);
		fdn_segment *x = NULL;
		if (fdn_segment_attach(name, 0, &x) != 0)
			_exit(1);
		uint64_t t0 = t_mono_ms(), i = 0;
		/* Grace periods (FDN_LITMUS_GPS, default 20 000) until the
		 * reader has made 10^6 sections too (120 s at most). */
		const char *e = getenv("FDN_LITMUS_GPS");
		uint64_t want = e ? strtoull(e, NULL, 10) : 20000;
		while (t_mono_ms() - t0 < 120000 &&
		       (i < want || atomic_load(&L->sections) < 1000000)) {
			i++;
			atomic_store_explicit(&L->x, i, memory_order_seq_cst);
			if (fdn__rcu_synchronize(x, 10000 * 1000000ll) != 0)
				_exit(4);
			atomic_store_explicit(&L->y, i, memory_order_seq_cst);
		}
		atomic_store(&L->gps, i);
		_exit(0);
	}
	int st;
	waitpid(writer, &st, 0);
	atomic_store(&L->done, 1);
	cr_assert(t_wait_ok(reader), "the reader failed (or was not light)");
	if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
		fprintf(stderr, "skip: seccomp unavailable here\n");
		fdn_segment_detach(s);
		fdn_segment_destroy(name);
		return;
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer: status %d",
		  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	fprintf(stderr, "litmus: %llu grace periods, %llu reader sections, %llu violations\n",
		(unsigned long long)atomic_load(&L->gps),
		(unsigned long long)atomic_load(&L->sections),
		(unsigned long long)atomic_load(&L->violations));
	cr_assert_eq(atomic_load(&L->violations), 0);
	cr_assert_geq(atomic_load(&L->gps), 2000);
	cr_assert_geq(atomic_load(&L->sections), 1000000);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
