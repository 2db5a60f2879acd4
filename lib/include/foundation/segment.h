/*
 * foundation/segment.h - the shared segment: create, attach, detach, destroy,
 * usage statistics and the integrity checker.
 *
 * A segment is the file <dir>/<name>, dir being $FOUNDATION_SHM_DIR (an
 * absolute path) or by default /dev/shm, where shm_open(3) keeps "/<name>";
 * every cooperating process maps it.  All of Foundation's shared state lives in
 * it; its layout is fixed at creation.  A segment lives until
 * fdn_segment_destroy() (or `foundation-ctl destroy`) or a reboot.
 *
 * Handles.  An fdn_segment handle belongs to the process that made it.  Any
 * thread of that process may use it; each thread takes a reader slot in the
 * segment on first use and gives it back when it exits or at detach.  After
 * fork() the child must not use an inherited handle (calls return
 * FDN_EFORKED): it attaches again.
 *
 * Errors are 0 / negative codes of foundation/error.h.
 */
#ifndef FOUNDATION_SEGMENT_H
#define FOUNDATION_SEGMENT_H

#include <foundation/common.h>
#include <foundation/error.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fdn_segment fdn_segment;

/* Attach flags. */
enum {
	/* Map read-only: no process slot is taken and nothing is written.
	 * Reads are not protected by grace periods: a reader may see an entry
	 * that is being freed, so every read of a read-only handle is
	 * bounds-checked and validated (this is what foundation-inspect uses). */
	FDN_SEG_READONLY = 1u << 0,
	/* Accept a segment owned by another uid, or writable by group/others.
	 * $FOUNDATION_ALLOW_FOREIGN=1 sets it for every attach of the process. */
	FDN_SEG_ALLOW_FOREIGN = 1u << 1,
	/* Fail (FDN_ENOREAPER) rather than go on without a reaper: create
	 * and a writable attach return 0 only if a live reaper holds the
	 * lease, or a reaper program was found and its launch begun (it takes
	 * the lease a few milliseconds later: fdn_reaper_wait; a spawn that
	 * fails after the call returned is recorded, as below).  No effect on
	 * a read-only attach.  A failed create removes
	 * the segment; a failed attach detaches.  Without the flag the failure
	 * is recorded in the segment (`foundation-inspect stats` says why no
	 * reaper runs) and the call succeeds.  No effect with
	 * $FOUNDATION_NO_AUTOREAPER=1 (the deployment runs the reaper, e.g.
	 * under systemd) or while `foundation-ctl reaper stop` is in force.
	 * For create, in fdn_segment_opts.flags. */
	FDN_SEG_REQUIRE_REAPER = 1u << 2,
	/* Create only (opts.flags): do not reserve the file's memory at
	 * create.  The file then holds only the pages touched so far, and
	 * when its filesystem fills up, the process that touches a new page
	 * -- a writer, the reaper, even a read-only inspector -- dies of
	 * SIGBUS.  Without it, create reserves every byte (posix_fallocate)
	 * and fails with FDN_ENOSPACE when they are not there. */
	FDN_SEG_SPARSE = 1u << 3,
};

#define FDN_SEGMENT_DEFAULT_NAME "foundation"
/* The segment format this build reads and writes (major; any minor of it
 * attaches): a segment of another major must be re-created
 * (docs/operations.md). */
#define FDN_SEGMENT_FORMAT_MAJOR 6
#define FDN_SEGMENT_NAME_MAX     200

struct fdn_segment_opts {
	uint64_t entries;          /* sizing of the main table: buckets = 2 x entries
				      (power of two); default 100 000 */
	uint32_t processes;        /* process-table slots; default 4 096 */
	uint32_t threads;          /* reader (thread) slots; default 4 096 */
	uint64_t heap_bytes;       /* bytes for keys and values; 0 = 256 x entries,
				      rounded up to 64 KiB pages, at least 1 MiB */
	uint32_t mode;             /* file mode; 0 = 0600 */
	uint32_t flags;            /* FDN_SEG_REQUIRE_REAPER; FDN_SEG_ALLOW_FOREIGN
				      accepted (no effect on create) */
	const char *indexed;       /* registry attributes with a secondary index,
				      comma-separated, at most 8 names of 1..31 bytes,
				      none starting with a byte below 0x20 (else
				      FDN_EINVAL); NULL = FDN_DEFAULT_INDEXED, "" = none */
	uint32_t spans;            /* trace slots: threads that hold span stacks or
				      error contexts at once; default 256 (56 KiB
				      each, touched only when used) */
	uint32_t events;           /* telemetry ring records, a power of two;
				      default 4 096 */
	const char *flag_defaults; /* initial flag values,
				"name=on|off|PCT,..."; NULL = $FOUNDATION_FLAGS,
				else the built-in defaults */
	uint32_t changes;          /* change-log records (foundation/changes.h), a
				      power of two, 16..2^24; 0 = default 16 384
				      (320 bytes each); FDN_CHANGES_OFF = no change
				      log (writers then pay one branch) */
};

#define FDN_CHANGES_OFF 0xFFFFFFFFu

#define FDN_DEFAULT_INDEXED "capability,health_status,node"

/* The directory segments live in: $FOUNDATION_SHM_DIR when set, else
 * "/dev/shm".  Read on every call; set it before the first create or attach
 * and give every process of the segment the same value. */
FDN_API const char *fdn_segment_dir(void);

/* The file of segment `name` (NULL = default name): "<dir>/<name>" into buf.
 * FDN_EINVAL: bad name, or a $FOUNDATION_SHM_DIR that is not absolute;
 * FDN_ETOOBIG: cap too small (PATH_MAX always suffices). */
FDN_API int fdn_segment_path(const char *name, char *buf, size_t cap);

/* The bytes a create with options o (NULL = defaults) reserves in the
 * directory's filesystem (before rounding up to a hugetlbfs page).
 * FDN_EINVAL for options create would refuse. */
FDN_API int fdn_segment_size(const struct fdn_segment_opts *o, uint64_t *bytes);

/* Fill *o with the defaults above. */
FDN_API void fdn_segment_opts_init(struct fdn_segment_opts *o);

/* The name to use when none is given: $FOUNDATION_SEGMENT, else
 * "foundation". Never NULL. */
FDN_API const char *fdn_segment_default_name(void);

/*
 * Create segment `name` (NULL = default name) with options `o` (NULL =
 * defaults) and attach to it.  The object is created with
 * O_CREAT|O_EXCL|O_NOFOLLOW: an existing segment is never touched.  Its
 * memory is reserved now (see FDN_SEG_SPARSE).
 * Errors: FDN_EINVAL (bad name or capacity), FDN_EEXISTS (already exists),
 * FDN_ENOSPACE (the directory's filesystem has not the memory: compare
 * fdn_segment_size() with statvfs(3) of fdn_segment_dir()), FDN_ENOSEG (no
 * such directory), -EACCES, -ENOMEM, FDN_ENOREAPER (with
 * FDN_SEG_REQUIRE_REAPER).  A failed create removes what it made.  Starts a
 * reaper unless one runs (foundation/reaper.h): asynchronously, the call
 * does not wait for it.
 */
FDN_API int fdn_segment_create(const char *name, const struct fdn_segment_opts *o,
			       fdn_segment **out);

/*
 * Attach to an existing segment and validate it completely before use.
 * Errors, each specific: FDN_ENOSEG (no such segment), -EACCES, FDN_EOWNER
 * (other uid), FDN_EMODE (writable by others), FDN_EINIT (creator has not
 * finished), FDN_ETRUNC (file shorter than its header says), FDN_EMAGIC,
 * FDN_EVERSION (other ABI major), FDN_ELAYOUT (other struct layout),
 * FDN_EBADSEG (inconsistent header), FDN_ENOSPACE (process table full),
 * FDN_ENOREAPER (with FDN_SEG_REQUIRE_REAPER).  A table full only because
 * slots of processes that detached or died still wait for the reaper is
 * waited on (the reaper rung, 1 s at most) before FDN_ENOSPACE; the same
 * holds for a registration for another pid.  A writable attach starts
 * a reaper unless one runs, as create does; a read-only one never does.
 */
FDN_API int fdn_segment_attach(const char *name, unsigned flags, fdn_segment **out);

/*
 * Give back this handle's process slot and reader slots (flushing deferred
 * frees, which waits for a grace period) and unmap.  No other thread may use
 * the handle during or after the call.  NULL is accepted.
 */
FDN_API int fdn_segment_detach(fdn_segment *s);

/* Remove the name (shm_unlink).  Attached processes keep their mapping. */
FDN_API int fdn_segment_destroy(const char *name);

/* The format (FDN_ABI_MAJOR.FDN_ABI_MINOR) a segment's creator wrote, read
 * from its file without attaching: what a tool names when attach fails
 * with FDN_EVERSION or FDN_ELAYOUT.  This build's is FDN_SEGMENT_FORMAT_MAJOR.
 * FDN_ENOSEG, FDN_EMAGIC (not a segment), -errno. */
FDN_API int fdn_segment_format(const char *name, unsigned *major, unsigned *minor);

/* FDN_ETRUNC when the segment's file is now shorter than the mapping
 * (a process with write access truncated it: touching the missing pages
 * raises SIGBUS), else 0.  One fstat(2); the reaper and the inspector call
 * it before each walk.  What a truncation does to applications:
 * docs/deployment.md. */
FDN_API int fdn_segment_verify_size(fdn_segment *s);

/* Name of an attached segment. */
FDN_API const char *fdn_segment_name(const fdn_segment *s);

#define FDN_STATS_MAX_TABLES 16

struct fdn_table_stats {
	char name[24];
	uint64_t entries; /* live entries (sum of per-thread counters) */
	uint64_t buckets;
};

struct fdn_segment_stats {
	uint64_t total_bytes;
	uint32_t abi_major, abi_minor;
	uint64_t created_ns; /* CLOCK_REALTIME at creation */
	uint32_t creator_pid, creator_uid;
	uint32_t procs_cap, procs_used;
	uint32_t threads_cap, threads_used;
	uint64_t heap_bytes, heap_pages, heap_pages_used;
	uint64_t blocks_used, block_bytes_used; /* allocated blocks */
	uint64_t gp_counter;                    /* grace-period counter */
	uint32_t ntables;
	struct fdn_table_stats tables[FDN_STATS_MAX_TABLES];
	uint32_t trace_cap, trace_used; /* trace slots (spans, error context) */
	uint64_t ghosts_written;        /* dead threads copied to the graveyard */
	uint32_t ghosts_cap;            /* copies kept (the newest) */
	uint32_t events_cap;            /* telemetry ring records */
	/* Deferred reclamation: blocks retired and not yet freed (waiting
	 * for a grace period), and the process and thread of the oldest
	 * read-side section still open (what holds them back; 0 if none). */
	uint64_t reclaim_pending;
	uint32_t reclaim_blocker_pid, reclaim_blocker_tid;
	uint64_t gp_done; /* newest grace period known complete */
};

/* Usage, read without locks (a consistent snapshot is not promised while
 * writers run). Works on read-only handles. */
FDN_API int fdn_segment_stats(fdn_segment *s, struct fdn_segment_stats *st);

/* One violation found by the checker: a stable code and a message.  The
 * code "note" is not a violation (not counted): a state the checker saw
 * resolve while it looked, e.g. a process that died and was taken up by
 * the reaper within the second the checker waits for it. */
typedef void (*fdn_check_cb)(void *arg, const char *code, const char *message);

/*
 * Walk the whole segment and verify every invariant: header, process table,
 * reader slots, page and block states, every table chain (bounds, hashes,
 * order, no cycles), that every allocated block is owned exactly once
 * (reachable, awaiting a grace period, or held by an operation in flight),
 * and that entry counts agree.  Calls cb for each violation (cb may be NULL)
 * and returns how many there were (0 = clean), or a negative error.  A
 * process slot whose process is dead while a live reaper holds the lease
 * is waited for up to 1 s: taken up in that time it is a note ("dead,
 * reclamation pending"), else the violation "dead".
 * Exact only while no writer is mid-operation; blocks held by operations in
 * flight are accounted to them, not reported.  Never writes; bounded time on
 * any input, however corrupt.
 */
FDN_API int fdn_segment_check(fdn_segment *s, fdn_check_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
