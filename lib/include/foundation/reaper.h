/*
 * foundation/reaper.h - the reaper: the one process per segment that
 * watches every registered process through a pidfd and reclaims what a
 * dead one owned (foundation-reaperd runs it; the library starts one on
 * attach when none runs).
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
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Start foundation-reaperd for this segment unless a live reaper holds its
 * lease or $FOUNDATION_NO_AUTOREAPER is "1".  The program is
 * $FOUNDATION_REAPERD, else the installed one.  The daemon is detached (its
 * own session, double fork): it outlives the caller.  Returns 0 (started,
 * or not needed), or a negative error; attach ignores failures, and
 * `foundation-inspect stats` shows whether a reaper runs.
 */
FDN_API int fdn_reaper_autostart(fdn_segment *s);

/* The same, whatever $FOUNDATION_NO_AUTOREAPER says (foundation-ctl reaper
 * start).  Returns once the program is launched, not when it holds the
 * lease: poll fdn_reaper_holder. */
FDN_API int fdn_reaper_start(fdn_segment *s);

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
