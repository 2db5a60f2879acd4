/*
 * foundation/reaper.h - the reaper: the one process per segment that
 * watches every registered process through a pidfd and reclaims what a
 * dead one owned (foundation-reaperd runs it; the library starts one on
 * create and attach when none runs, and again when a writer finds it dead).
 *
 * Liveness comes from the kernel only: a process is dead when its pidfd
 * says so (or when its pid no longer carries its identity); never from a
 * timeout.
 */
#ifndef FOUNDATION_REAPER_H
#define FOUNDATION_REAPER_H

#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/segment.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Starting the reaper.
 *
 * The program is the first executable regular file of: $FOUNDATION_REAPERD;
 * beside the library (the directory of libfoundation.so, or of the program
 * that links it statically): the install's bin directory relative to its
 * lib directory, its libexec directory, and that directory itself; the
 * path configured at build time (fdn_reaper_locate).
 *
 * A launch is asynchronous: the program is found, then spawned by a thread
 * of the library (posix_spawn: a new session, no signal handler, mask or
 * ignored signal of the caller's, stdin/stdout/stderr on /dev/null and no
 * other descriptor of the caller's open in it) while the call returns; the
 * daemon detaches itself (it is nobody's child and outlives the caller)
 * and takes the lease when it has attached, a few milliseconds later.
 * fdn_reaper_wait waits for that.  fdn_segment_detach and exit() wait (up
 * to 2 s) for a spawn still in flight; a process that dies before its
 * spawn loses it, and the next writer starts one.  While a launched reaper has not yet taken the
 * lease, no other launch is made for a second, by any process (header.reaper_launch_ns, cleared by
 * the reaper that takes the lease): processes that attach together, or writers that all notice a
 * dead reaper, start one.
 *
 * Who launches:
 *   - create and a writable attach (fdn_reaper_autostart), unless
 *     $FOUNDATION_NO_AUTOREAPER is "1";
 *   - a writer (register, update, unregister) whose handle has not looked
 *     for a second: it finds the lease free or its holder dead and starts
 *     a new one (so a killed reaper comes back at the next write);
 *   - fdn_reaper_start (foundation-ctl reaper start).
 * Never a read-only handle, never a read.  While `foundation-ctl reaper
 * stop` (fdn_reaper_stop) is in force, only fdn_reaper_start launches.
 * Each attempt is recorded in the segment (fdn_reaper_status): `foundation-
 * inspect stats` and `foundation-ctl reaper status` say why none runs.
 */

/* Start foundation-reaperd for this segment unless a live reaper holds its
 * lease, $FOUNDATION_NO_AUTOREAPER is "1", the stop is in force, or another
 * launch was made less than a second ago.  Returns 0 (launched, or not
 * needed), FDN_ENOREAPER (no program found), or another negative error of
 * the spawn.  Create and attach call it and fail with its error only under
 * FDN_SEG_REQUIRE_REAPER. */
FDN_API int fdn_reaper_autostart(fdn_segment *s);

/* Lift the stop (fdn_reaper_stop) and start a reaper unless a live one
 * holds the lease, whatever $FOUNDATION_NO_AUTOREAPER says and however
 * recent the last launch (foundation-ctl reaper start).  Returns once the
 * program is launched, not when it holds the lease: fdn_reaper_wait.
 * FDN_ERDONLY on a read-only handle. */
FDN_API int fdn_reaper_start(fdn_segment *s);

/* Stop the segment's reaper and keep it stopped: set the stop flag in the
 * segment (no autostart, no writer's restart until fdn_reaper_start) and
 * wait up to timeout_ms (< 0: for ever) for the running reaper to see it,
 * release the lease and exit (a standby reaper, `--wait`, stays and waits
 * for the stop to be lifted).  Returns the pid that held the lease (> 0),
 * 0 if none did, FDN_ETIMEDOUT if it still holds it (a reaper built before
 * the flag existed does not look at it: signal it), FDN_ERDONLY. */
FDN_API int fdn_reaper_stop(fdn_segment *s, int64_t timeout_ms);

/* Wait up to timeout_ms (< 0: for ever) until a live reaper holds the
 * lease.  Returns its pid (> 0), FDN_ETIMEDOUT, or FDN_ESTALE when the
 * segment was destroyed.  Works on read-only handles (which only look); a
 * writable handle also looks as a writer does, once a second, and starts
 * a reaper if none runs (a launch lost with a process that died before
 * its spawn, a reaper that exited). */
FDN_API int fdn_reaper_wait(fdn_segment *s, int64_t timeout_ms);

/* Find the reaper program as a launch would.  0 and its path in buf; or
 * FDN_ENOREAPER and in buf the places looked at, separated by ", "
 * (truncated to cap). */
FDN_API int fdn_reaper_locate(char *buf, size_t cap);

/* What the segment says of its reaper (reads only). */
struct fdn_reaper_status {
	pid_t pid;         /* live lease holder; 0 = none */
	bool stopped;      /* fdn_reaper_stop in force */
	uint32_t launches; /* reapers launched by the library, ever */
	/* The newest launch attempt: the process that made it (0: none yet),
	 * its outcome (0: the program was started; else a negative error,
	 * e.g. FDN_ENOREAPER) and when (CLOCK_REALTIME ns). */
	pid_t last_pid;
	int last_error;
	uint64_t last_ns;
};
FDN_API int fdn_reaper_status(fdn_segment *s, struct fdn_reaper_status *st);

/* Pid of the live process holding the reaper lease, or 0 if none. */
FDN_API pid_t fdn_reaper_holder(fdn_segment *s);

/* Take the lease (it was free, or its holder is dead): 0; FDN_EEXISTS if a
 * live reaper holds it. */
FDN_API int fdn_reaper_lease_take(fdn_segment *s);

/* Give the lease back if we hold it. */
FDN_API void fdn_reaper_lease_release(fdn_segment *s);

/* One death, as the graveyard records it. */
struct fdn_death {
	uint64_t number; /* 0, 1, 2... in order of reaping */
	pid_t pid;
	int exit_signal;     /* the signal that killed it; 0 = exited; -1 = unknown */
	int exit_status;     /* its exit status if it exited, else -1 */
	uint64_t ident;      /* its identity (pidfs inode or start time) */
	uint64_t died_ns;    /* CLOCK_REALTIME when the reaper saw it */
	uint64_t latency_ns; /* from the reaper's wake-up to its entries gone */
	uint64_t entries;    /* registry entries reclaimed */
};

/* Up to cap most recent deaths, newest first; returns how many. Reads only
 * (works on read-only handles). */
FDN_API int fdn_graveyard(fdn_segment *s, struct fdn_death *out, int cap);

/* Total deaths reaped in this segment's life. */
FDN_API uint64_t fdn_deaths(fdn_segment *s);

#ifdef __cplusplus
}
#endif
#endif
