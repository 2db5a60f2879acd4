/*
 * test_rcu.c - grace periods across processes: a reader parked in a
 * read-side section in one process blocks synchronize in another until it
 * leaves; a reader SIGKILLed in a section blocks until its slots are
 * reclaimed, and not after.
 */
#include "common.h"

#include <sched.h>
#include <time.h>

struct park {
	_Atomic int inside;  /* the reader is in its section */
	_Atomic int release; /* the reader may leave */
};

/* heavy: the reader uses a full fence instead of relying on membarrier. */
static pid_t park_reader_mode(const char *name, struct park *pk, bool heavy)
{
	pid_t p = fork();
	if (p == 0) {
		fdn_segment *c;
		struct fdn__thread *t;
		if (fdn_segment_attach(name, 0, &c))
			_exit(2);
		if (heavy)
			atomic_store(&fdn__rcu_light, false);
		if (fdn__rcu_read_lock(c, &t))
			_exit(2);
		atomic_store(&pk->inside, 1);
		while (!atomic_load(&pk->release))
			usleep(1000);
		fdn__rcu_read_unlock(t);
		fdn_segment_detach(c);
		_exit(0);
	}
	while (!atomic_load(&pk->inside))
		usleep(1000);
	return p;
}

static pid_t park_reader(const char *name, struct park *pk)
{
	return park_reader_mode(name, pk, false);
}

Test(rcu, heavy_and_light_readers_both_hold_grace_periods, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0);
	for (int heavy = 0; heavy <= 1; heavy++) {
		struct park *pk = t_shared(sizeof(*pk));
		pid_t r = park_reader_mode(name, pk, heavy);
		cr_assert_eq(fdn__rcu_synchronize(s, 50 * 1000000ll), FDN_ETIMEDOUT);
		atomic_store(&pk->release, 1);
		cr_assert(t_wait_ok(r));
		cr_assert_eq(fdn__rcu_synchronize(s, -1), 0);
	}
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(rcu, parked_reader_blocks_synchronize_until_it_leaves, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0);
	cr_assert_eq(fdn__rcu_synchronize(s, -1), 0, "nobody reading: returns");
	struct park *pk = t_shared(sizeof(*pk));
	pid_t r = park_reader(name, pk);
	cr_assert_eq(fdn__rcu_synchronize(s, 200 * 1000000ll), FDN_ETIMEDOUT);
	cr_assert_eq(fdn__rcu_synchronize(s, 0), FDN_ETIMEDOUT);
	/* A synchronize that is waiting returns once the reader leaves. */
	pid_t w = fork();
	if (w == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(2);
		int rr = fdn__rcu_synchronize(c, -1);
		fdn_segment_detach(c);
		_exit(rr == 0 ? 0 : 3);
	}
	usleep(100000);
	cr_assert_eq(waitpid(w, NULL, WNOHANG), 0, "the writer is still waiting");
	atomic_store(&pk->release, 1);
	cr_assert(t_wait_ok(w));
	cr_assert(t_wait_ok(r));
	cr_assert_eq(fdn__rcu_synchronize(s, -1), 0);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(rcu, new_readers_do_not_block_an_older_grace_period, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0);
	struct fdn__thread *t;
	/* Our own section: synchronize from inside one is refused. */
	cr_assert_eq(fdn__rcu_read_lock(s, &t), 0);
	cr_assert_eq(fdn__rcu_synchronize(s, -1), FDN_EINREAD);
	fdn__rcu_read_unlock(t);
	/* A reader that entered after the counter moved does not block a grace
	 * period that started before it: simulate by reading the snapshot. */
	struct park *pk = t_shared(sizeof(*pk));
	pid_t r = park_reader(name, pk);
	uint64_t g = atomic_load(&s->hdr->gp_ctr);
	int seen = 0;
	for (uint32_t i = 0; i < s->nthreads; i++)
		if (atomic_load(&s->tslots[i].ctr) == g)
			seen++;
	cr_assert_eq(seen, 1, "the parked reader holds the current counter");
	atomic_store(&pk->release, 1);
	cr_assert(t_wait_ok(r));
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(rcu, reader_killed_in_section_blocks_until_reclaimed, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0);
	cr_assert_eq(t_put(s, "a", 1, FDN_HT_UNIQUE), 0);
	struct park *pk = t_shared(sizeof(*pk));
	pid_t r = park_reader(name, pk);
	kill(r, SIGKILL);
	cr_assert_eq(waitpid(r, NULL, 0), r);
	/* Dead, but its slot still says "reading": grace periods wait. */
	cr_assert_eq(fdn__rcu_synchronize(s, 100 * 1000000ll), FDN_ETIMEDOUT);
	cr_assert_eq(fdn__seg_check(s, NULL, NULL), 1, "the dead process is reported");
	t_reclaim(s, r);
	cr_assert_eq(fdn__rcu_synchronize(s, 5000 * 1000000ll), 0);
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	cr_assert_eq(st.procs_used, 1);
	cr_assert_eq(st.threads_used, 1);
	uint64_t v;
	cr_assert_eq(t_get(s, "a", &v), 0);
	t_assert_clean(s);
	/* Reclaiming again is harmless and says the slot is free. */
	uint32_t idx;
	cr_assert_eq(fdn__proc_find(s, r, &idx), FDN_ENOTFOUND);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(rcu, two_dead_readers_begin_both_then_finish, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0);
	struct park *pa = t_shared(sizeof(*pa)), *pb = t_shared(sizeof(*pb));
	pid_t a = park_reader(name, pa), b = park_reader(name, pb);
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	/* Not waited for yet: zombies are dead to the checker. */
	usleep(50000);
	uint32_t ia, ib;
	cr_assert_eq(fdn__proc_find(s, a, &ia), 0);
	cr_assert_eq(fdn__proc_find(s, b, &ib), 0);
	uint64_t wa = atomic_load(&s->procs[ia].word), wb = atomic_load(&s->procs[ib].word);
	cr_assert_not(fdn__proc_alive(s, ia, atomic_load(&s->procs[ia].word)));
	cr_assert_eq(waitpid(a, NULL, 0), a);
	cr_assert_eq(waitpid(b, NULL, 0), b);
	/* Finishing one while the other still pins: a timeout, not a hang. */
	cr_assert_eq(fdn__proc_reclaim(s, ia, wa, 50 * 1000000ll), FDN_ETIMEDOUT);
	cr_assert_eq(fdn__proc_reclaim_begin(s, ib, wb), 0);
	cr_assert_eq(fdn__proc_reclaim(s, ia, wa, -1), 0);
	cr_assert_eq(fdn__proc_reclaim(s, ib, wb, -1), 0);
	cr_assert_eq(fdn__rcu_synchronize(s, -1), 0);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(rcu, reclaim_works_when_dead_threads_hold_every_slot, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 100;
	o.threads = 2;
	fdn_segment *s;
	cr_assert_eq(fdn_segment_create(name, &o, &s), 0);
	struct park *pa = t_shared(sizeof(*pa)), *pb = t_shared(sizeof(*pb));
	pid_t a = park_reader(name, pa), b = park_reader(name, pb);
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	waitpid(a, NULL, 0);
	waitpid(b, NULL, 0);
	cr_assert_eq(t_put(s, "x", 1, FDN_HT_UNIQUE), FDN_ENOSPACE, "no reader slot is free");
	uint32_t ia, ib;
	cr_assert_eq(fdn__proc_find(s, a, &ia), 0);
	cr_assert_eq(fdn__proc_find(s, b, &ib), 0);
	uint64_t wa = atomic_load(&s->procs[ia].word), wb = atomic_load(&s->procs[ib].word);
	cr_assert_eq(fdn__proc_reclaim_begin(s, ia, wa), 0);
	cr_assert_eq(fdn__proc_reclaim_begin(s, ib, wb), 0);
	cr_assert_eq(fdn__proc_reclaim(s, ia, wa, -1), 0);
	cr_assert_eq(fdn__proc_reclaim(s, ib, wb, -1), 0);
	cr_assert_eq(t_put(s, "x", 1, FDN_HT_UNIQUE), 0, "slots are free again");
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(rcu, synchronize_inside_a_section_of_another_handle_is_refused, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0), *s2;
	cr_assert_eq(fdn_segment_attach(name, 0, &s2), 0);
	struct fdn__thread *t;
	cr_assert_eq(fdn__rcu_read_lock(s2, &t), 0);
	cr_assert_eq(fdn__rcu_synchronize(s, -1), FDN_EINREAD, "would wait for itself");
	fdn__rcu_read_unlock(t);
	cr_assert_eq(fdn__rcu_synchronize(s, -1), 0);
	fdn_segment_detach(s2);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* A bounded grace period honours its bound on a busy CPU too: the waiter
 * spins, then yields, then sleeps, and every phase must look at the
 * deadline (a yield costs a scheduler slice when others are runnable). */
Test(rcu, synchronize_timeout_holds_on_a_busy_cpu, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "rcu");
	fdn_segment *s = t_create(name, 100, 0);
	struct park *pk = t_shared(sizeof(*pk));
	pid_t r = park_reader(name, pk);
	cpu_set_t one;
	CPU_ZERO(&one);
	CPU_SET(0, &one);
	cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
	pid_t spin[3];
	for (int i = 0; i < 3; i++) {
		spin[i] = fork();
		if (spin[i] == 0)
			for (;;)
				;
	}
	usleep(20000);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int rr = fdn__rcu_synchronize(s, 50 * 1000000ll);
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
	for (int i = 0; i < 3; i++) {
		kill(spin[i], SIGKILL);
		waitpid(spin[i], NULL, 0);
	}
	atomic_store(&pk->release, 1);
	cr_assert(t_wait_ok(r));
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	cr_log_info("a 50 ms bounded grace period returned after %.1f ms", ms);
	cr_assert_eq(rr, FDN_ETIMEDOUT);
	cr_assert_lt(ms, 300.0, "the 50 ms bound took %.1f ms", ms);
}
