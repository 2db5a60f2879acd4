/*
 * foundation/introspect.h - looking inside a segment: the process table,
 * the indexed attributes, the mapping, the reaper's latency histogram, and
 * the few helpers the programs (foundation-inspect, foundation-ctl,
 * foundation-demo) need beyond the services' own calls.
 *
 * Everything here reads only, and works on read-only handles
 * (FDN_SEG_READONLY), except fdn_segment_attach_noreaper, which makes a
 * writable handle.  Reads take no grace period: a value copied out is a
 * snapshot that may already be stale.
 */
#ifndef FOUNDATION_INTROSPECT_H
#define FOUNDATION_INTROSPECT_H

#include <foundation/common.h>
#include <foundation/segment.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits of the segment format --------------------------------------------- */

/* Deaths the graveyard remembers: room enough for fdn_graveyard's out. */
#define FDN_GRAVEYARD_CAPACITY 256
/* Indexed registry attributes a segment can have, and the longest name. */
#define FDN_INDEXED_ATTRS_MAX     8
#define FDN_INDEXED_ATTR_NAME_MAX 32
/* The change log's size (fdn_segment_opts.changes): a power of two in
 * [FDN_CHANGES_MIN, FDN_CHANGES_MAX]. */
#define FDN_CHANGES_MIN 16u
#define FDN_CHANGES_MAX (1u << 24)

/* ---- names --------------------------------------------------------------------- */

/* 0 if name is a valid segment name (1..FDN_SEGMENT_NAME_MAX characters of
 * [A-Za-z0-9._-], not "." or ".."), else FDN_EINVAL.  Such a name never
 * needs quoting or escaping (file names, Prometheus labels). */
FDN_API int fdn_segment_name_check(const char *name);

/* ---- the process table --------------------------------------------------------- */

/* A process slot's state (free slots are never reported). */
enum fdn_process_state {
	FDN_PROCESS_LIVE = 1, /* attached */
	FDN_PROCESS_DEAD = 2, /* died; the reaper has yet to clean up after it */
	FDN_PROCESS_LEFT = 3, /* detached while a reaper runs; it cleans up, no death */
};

/* How a process's identity was taken (fdn_process.ident). */
enum fdn_identity_kind {
	FDN_IDENTITY_NONE = 0,
	FDN_IDENTITY_PIDFS = 1,     /* the inode of its pidfd */
	FDN_IDENTITY_STARTTIME = 2, /* its start time (/proc/PID/stat) */
};

/* One process slot in use. */
struct fdn_process {
	uint32_t slot;         /* index in the process table */
	uint32_t pid;          /* in the creator's PID namespace */
	unsigned state;        /* enum fdn_process_state */
	uint64_t ident;        /* its identity, of kind ident_kind */
	uint32_t ident_kind;   /* enum fdn_identity_kind */
	uint32_t uid;          /* the user it ran as */
	uint64_t attached_ns;  /* CLOCK_REALTIME of its attach */
	uint32_t claimer_pid;  /* the process that claimed the slot: itself when
				  it attached, the registering process when
				  another registered it; UINT32_MAX while the
				  slot is being released */
	uint32_t reader_slots; /* reader (thread) slots it holds */
};

/* Called once per process slot in use, in slot order; a non-zero return
 * stops the walk and is returned by fdn_processes. */
typedef int (*fdn_process_cb)(void *arg, const struct fdn_process *p);

/* Walk the process table: each slot in use (live, dead or left) with its
 * pid, identity, attach time, claimer and the reader slots it holds.
 * Returns 0, cb's non-zero return, FDN_EINVAL, or -ENOMEM. */
FDN_API int fdn_processes(fdn_segment *s, fdn_process_cb cb, void *arg);

/* A name of fdn_process_state ("live", "dead", "left"; "invalid" for any
 * other value), and of fdn_identity_kind ("pidfs", "starttime", "none");
 * static strings. */
FDN_API const char *fdn_process_state_name(unsigned state);
FDN_API const char *fdn_identity_kind_name(uint32_t kind);

/* ---- indexed attributes -------------------------------------------------------- */

/* The names of the segment's indexed registry attributes, in index order,
 * NUL-terminated, up to cap of them (FDN_INDEXED_ATTRS_MAX is always
 * enough); returns how many, or FDN_EINVAL. */
FDN_API int fdn_indexed_attributes(fdn_segment *s, char (*names)[FDN_INDEXED_ATTR_NAME_MAX + 1],
				   int cap);

/* ---- the mapping --------------------------------------------------------------- */

/* Where a handle maps its segment.  fd stays the handle's: do not close it
 * (it serves fstat / fstatfs, e.g. to learn the file system). */
struct fdn_segment_mapping {
	const void *base;  /* the mapping's first byte */
	uint64_t size;     /* its length: the segment's size when attached */
	int fd;            /* the segment's open file */
	uint64_t dev, ino; /* the file's device and inode when attached */
};

/* Fill *m; 0 or FDN_EINVAL. */
FDN_API int fdn_segment_mapping(fdn_segment *s, struct fdn_segment_mapping *m);

/* For a program that walks a segment someone may truncate (the
 * inspector, the reaper): from now on a SIGBUS inside s's mapping ends
 * the process with one line on stderr, "PROG: segment truncated: N bytes,
 * header says M", and exit status 1.  Installs a SIGBUS handler; one
 * segment per process. */
FDN_API void fdn_segment_guard_sigbus(fdn_segment *s, const char *prog);

/* Before a walk: if s's file is now shorter than the mapping, print the
 * guard's line ("PROG: segment truncated: N bytes, header says M") on
 * stderr and return true; else false. */
FDN_API bool fdn_segment_report_truncated(fdn_segment *s, const char *prog);

/* ---- attaching without a reaper ------------------------------------------------ */

/* A writable attach that starts no reaper (fdn_segment_attach starts one
 * when none runs): for a program that manages the reaper itself, as
 * `foundation-ctl reaper start|stop` does.  Otherwise as
 * fdn_segment_attach(name, 0, out); detach with fdn_segment_detach. */
FDN_API int fdn_segment_attach_noreaper(const char *name, fdn_segment **out);

/* ---- the reaper's latency ------------------------------------------------------ */

#define FDN_REAPER_LATENCY_BOUNDS 10

/* Time from the reaper learning of a death to the dead process's entries
 * vanishing, every death since the segment's creation (a cumulative
 * histogram, as Prometheus wants it: no count ever goes down). */
struct fdn_reaper_latency {
	uint64_t bound_ns[FDN_REAPER_LATENCY_BOUNDS];   /* finite upper bounds, 100 us .. 1 s */
	uint64_t cumulative[FDN_REAPER_LATENCY_BOUNDS]; /* deaths with latency <= bound */
	uint64_t count;                                 /* every death counted (+Inf) */
	uint64_t sum_ns;                                /* their latencies' sum */
};

/* Fill *out; 0 or FDN_EINVAL.  Works on read-only handles. */
FDN_API int fdn_reaper_latency(fdn_segment *s, struct fdn_reaper_latency *out);

#ifdef __cplusplus
}
#endif

#endif
