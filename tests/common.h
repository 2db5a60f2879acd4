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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* The mechanism's audit: tests of shm/ store raw values in the tables. */
static inline void t_assert_clean(fdn_segment *s)
{
	int v = fdn__seg_check(s, t_print_violation, NULL);
	cr_assert_eq(v, 0, "checker found %d violations", v);
}

/* The whole audit, the registry's included. */
static inline void t_assert_all_clean(fdn_segment *s)
{
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
