/*
 * stress/stress.h - what the stress programs share: a private segment that
 * is destroyed on every way out, the children they fork (killed with them),
 * the real foundation-reaperd started and killed at will, the moment the
 * segment is quiescent, the checker as a tally, and the summary line.
 *
 * Quiescence.  fdn_segment_check is exact only while no operation is in
 * flight (shm/check.c).  The programs therefore check at quiescent points:
 * their workers park between two operations (a flag in shared memory), and
 * st_settle() waits until every process slot is either free or LIVE with a
 * live process (the reaper has finished every death) and the reaper sleeps
 * in epoll_wait with no timeout: no death pending, no retry, the full sweep
 * complete (tools/foundation-reaperd.c, run()).  From then on nothing
 * writes to the segment but the parent.
 */
#ifndef FDN_STRESS_H
#define FDN_STRESS_H

#include "lib/internal.h"

#include <foundation/foundation.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* The program's name in every message. */
extern const char *st_prog;

/* Common options: --seconds, --seed, --verbose, --help. */
struct st_opts {
	double seconds;
	uint64_t seed;
	bool verbose;
};

/* Parse the common options and the program's own (extra, terminated by a
 * zero entry, handled by on_opt which returns 0, or 2 on a bad value).
 * Prints usage on --help (exit 0) or on a bad option (exit 2). */
struct option;
void st_parse(int argc, char **argv, struct st_opts *o, const char *usage_text,
	      const struct option *extra, int (*on_opt)(int c, const char *arg));

/* Name a private segment "fdn-stress-TAG-PID", install the handlers that
 * remove it and kill every child on SIGINT/SIGTERM/SIGHUP (and at exit),
 * and keep the library from starting reapers of its own. */
void st_setup(const char *prog, const char *tag);
const char *st_segment(void);
/* Create the segment (dies on error). */
fdn_segment *st_create(const struct fdn_segment_opts *o);

/* Children.  st_fork: a tracked child that dies with us (PDEATHSIG). */
pid_t st_fork(void);
void st_untrack(pid_t pid);
/* Kill with SIGKILL and reap; returns the wait status. */
int st_kill_wait(pid_t pid);
/* Remove the segment and kill every tracked child (idempotent). */
void st_cleanup(void);

/* The real reaper, our child (--foreground): started and waited for until
 * it holds the lease (dies if it does not within 10 s). */
pid_t st_reaper_start(void);
/* Asleep in epoll_wait with no timeout (from /proc/PID/syscall). */
bool st_reaper_idle(pid_t reaper);
/* Path of foundation-reaperd ($FOUNDATION_REAPERD, else built-in). */
const char *st_reaperd_path(void);
/* Path of foundation-inspect ($FOUNDATION_INSPECT, else built-in). */
const char *st_inspect_path(void);

/* Wait (up to timeout_ms) until the segment is quiescent (see top); reaper
 * 0 = none runs (only the slot condition).  0, or FDN_ETIMEDOUT with the
 * reason printed. */
int st_settle(fdn_segment *s, pid_t reaper, int timeout_ms);

/* The checker's tally: violations other than leaks, and leaked blocks
 * (code "leak": allocated, not reachable, in no limbo, no op in flight). */
struct st_tally {
	uint64_t checks, violations, leaked;
};
/* Run fdn_segment_check; print the first violations with `when`. */
int st_check(fdn_segment *s, struct st_tally *t, const char *when);

/* A violation of the program's own contract (printed, counted). */
__attribute__((format(printf, 2, 3))) void st_fail(struct st_tally *t, const char *fmt, ...);

/* Anonymous shared memory for parent and children (zeroed). */
void *st_shared(size_t size);

/* Is key k stored in the registry's main table at all, visible or not (a
 * raw table lookup: an entry of a dead owner counts)?  true on error. */
bool st_raw_present(fdn_segment *s, const char *k);

uint64_t st_now_ns(void);
void st_sleep_ns(uint64_t ns);
/* A worker's side of a quiescent point: while *pause is set, say parked
 * and wait.  Returns true (still parked) once *stop is set (stop may be
 * NULL), false when the worker may go on. */
bool st_park(_Atomic int *pause, _Atomic int *stop, _Atomic int *parked);
/* xorshift64*: deterministic per seed. */
uint64_t st_rand(uint64_t *x);
/* Uniform in [lo, hi]. */
uint64_t st_between(uint64_t *x, uint64_t lo, uint64_t hi);

/* The summary line: "ops=N kills=N violations=N leaked=N" and the
 * program's figures (fmt) on the same line.  Returns the exit status:
 * 0 iff violations and leaked are both 0. */
__attribute__((format(printf, 4, 5))) int
st_summary(uint64_t ops, uint64_t kills, const struct st_tally *t, const char *fmt, ...);

#endif
