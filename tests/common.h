/*
 * tests/common.h - helpers shared by the Criterion tests: unique segment
 * names, segment creation, memory shared with forked children, and the
 * checker as an assertion.
 */
#ifndef FDN_TESTS_COMMON_H
#define FDN_TESTS_COMMON_H

#include "shm/shm.h"

#include <criterion/criterion.h>
#include <foundation/reaper.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/reaper_idle.h"

/* Under an emulator ($FOUNDATION_TEST_EMULATED, set by the cross build's
 * tests: qemu-user runs the foreign binaries): print "SKIP: <why> under
 * qemu-user" and skip the test.  For what the emulator cannot do (seccomp
 * filters, reading a child's /proc/PID/exe or maps as the real program's),
 * never for a failure of the program itself. */
#define t_skip_if_emulated(why)                                                 \
	do {                                                                    \
		const char *emu_ = getenv("FOUNDATION_TEST_EMULATED");          \
		if (emu_ && *emu_) {                                            \
			printf("SKIP: %s under qemu-user (%s)\n", (why), emu_); \
			cr_skip_test("%s under qemu-user", (why));              \
		}                                                               \
	} while (0)

/* A segment name no other test (or run) uses. */
static inline void t_name(char *buf, size_t cap, const char *tag)
{
	static int counter;
	snprintf(buf, cap, "fdn-test-%s-%d-%d", tag, (int)getpid(), counter++);
}

static inline fdn_segment *t_create(const char *name, uint64_t entries, uint64_t heap)
{
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = entries;
	o.heap_bytes = heap;
	o.processes = 256;
	o.threads = 256;
	fdn_segment *s = NULL;
	int r = fdn_segment_create(name, &o, &s);
	cr_assert_eq(r, 0, "create %s: %s", name, fdn_strerror(r));
	return s;
}

static inline uint64_t t_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void t_sleep_ms(unsigned ms)
{
	struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&d, &d) < 0 && errno == EINTR)
		;
}

/* A segment (64 process and reader slots) with its reaper running: the
 * test's environment names the reaper just built (fdn_test ... reaper). */
static inline fdn_segment *t_create_reaped(const char *name, uint64_t entries, uint32_t procs)
{
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = entries;
	o.processes = procs;
	o.threads = 64;
	fdn_segment *s = NULL;
	int r = fdn_segment_create(name, &o, &s);
	cr_assert_eq(r, 0, "create %s: %s", name, fdn_strerror(r));
	for (int i = 0; i < 500 && fdn_reaper_holder(s) == 0; i++)
		t_sleep_ms(10);
	cr_assert_neq(fdn_reaper_holder(s), 0, "no reaper started");
	return s;
}

/* Memory shared with forked children (anonymous, MAP_SHARED). */
static inline void *t_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

static inline void t_print_violation(void *arg, const char *code, const char *msg)
{
	(void)arg;
	fprintf(stderr, "  %s [%s] %s\n", strcmp(code, "note") ? "violation" : "note", code, msg);
}

/*
 * Wait until the segment is quiescent for the checker, which is exact only
 * while no operation is in flight (foundation/segment.h): every process
 * slot free or LIVE with a live process (no death waiting for the reaper
 * or half reclaimed), and the reaper asleep with nothing to do -- twice in
 * a row, 2 ms apart, as a reaper seen asleep may have been woken by a death
 * just looked past.  The reaper writes to the tables after a death is
 * visible to every reader (the purge of the dead owner's entries and index
 * references, then the sweep): a check run meanwhile walks chains that
 * change under it and reports, for a node the reaper unlinks and retires
 * between the checker's two reads of it, "deleted but still linked, no op
 * in flight" together with "retired but still reachable".  With no reaper
 * holding the lease only a LIVE slot of a dead process is waited for (the
 * check would report it; a reaper starting up, seconds on a busy machine,
 * takes it up); a DEAD or LEFT slot is then the test's own doing (one that
 * reclaims by hand, or leaves a slot half reclaimed on purpose).  Bounded:
 * after timeout_ms the check runs anyway and reports what it finds.
 */
static inline void t_settle(fdn_segment *s, unsigned timeout_ms)
{
	uint64_t end = t_mono_ms() + timeout_ms;
	for (int calm = 0; calm < 2;) {
		pid_t reaper = fdn_reaper_holder(s);
		bool settled = true;
		for (uint32_t i = 0; i < s->nprocs && settled; i++) {
			uint64_t w = atomic_load(&s->procs[i].word);
			if (w == 0)
				continue;
			if (FDN_PROC_GONE(w))
				settled = reaper <= 0;
			else
				settled = fdn__proc_alive(s, i, w);
		}
		if (settled && reaper <= 0)
			return;
		if (settled) {
			int idle = fdn_test_reaper_idle(reaper);
			if (idle < 0) {
				/* Cannot see it: give it two of its ticks. */
				t_sleep_ms(500);
				return;
			}
			settled = idle == 1;
		}
		calm = settled ? calm + 1 : 0;
		if (t_mono_ms() > end) {
			fprintf(stderr, "  note: segment not quiescent after %u ms\n", timeout_ms);
			return;
		}
		t_sleep_ms(2);
	}
}

/* The mechanism's audit: tests of shm/ store raw values in the tables. */
static inline void t_assert_clean(fdn_segment *s)
{
	t_settle(s, 60000);
	int v = fdn__seg_check(s, t_print_violation, NULL);
	cr_assert_eq(v, 0, "checker found %d violations", v);
}

/* The whole audit, the registry's included, once the reaper is done. */
static inline void t_assert_all_clean(fdn_segment *s)
{
	t_settle(s, 60000);
	int v = fdn_segment_check(s, t_print_violation, NULL);
	cr_assert_eq(v, 0, "checker found %d violations", v);
}

/* fork(), and the child dies with its parent (a failed assertion ends the
 * test's process: its children must not spin on for ever). */
static inline pid_t t_fork(void)
{
	pid_t parent = getpid();
	pid_t p = fork();
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) /* the parent died before prctl */
			_exit(99);
	}
	return p;
}

/* Wait until a child says it is ready (*ready != 0); fail the test, with
 * its exit status, if it ends first instead of waiting for ever. */
static inline void t_wait_ready(_Atomic int *ready, pid_t child)
{
	while (!atomic_load(ready)) {
		int st;
		if (waitpid(child, &st, WNOHANG) == child && !atomic_load(ready))
			cr_assert_fail("child %d ended before it was ready (status %d)", (int)child,
				       WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
		usleep(1000);
	}
}

/* Wait for a child; true if it exited with status 0. */
static inline int t_wait_ok(pid_t p)
{
	int st;
	if (waitpid(p, &st, 0) < 0)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Put / get / delete with C strings on table 0. */
static inline int t_put(fdn_segment *s, const char *k, uint64_t v, int mode)
{
	return fdn__ht_put(s, 0, k, strlen(k), &v, sizeof(v), mode, NULL, NULL);
}

static inline int t_get(fdn_segment *s, const char *k, uint64_t *v)
{
	struct fdn__thread *t;
	struct fdn__ht_view view;
	int r = fdn__rcu_read_lock(s, &t);
	if (r)
		return r;
	r = fdn__ht_lookup(s, 0, k, strlen(k), &view);
	if (r == 0 && v) {
		if (view.val_len == sizeof(*v))
			memcpy(v, view.val, sizeof(*v));
		else
			r = FDN_ECORRUPT;
	}
	fdn__rcu_read_unlock(t);
	return r;
}

static inline int t_del(fdn_segment *s, const char *k)
{
	return fdn__ht_delete(s, 0, k, strlen(k), NULL);
}

/* Reclaim the process slot of a dead, waited-for child. */
static inline void t_reclaim(fdn_segment *s, pid_t pid)
{
	uint32_t idx;
	if (fdn__proc_find(s, pid, &idx) == 0) {
		int r = fdn__proc_reclaim(s, idx, atomic_load(&s->procs[idx].word), -1);
		cr_assert_eq(r, 0, "reclaim: %s", fdn_strerror(r));
	}
}

#endif
