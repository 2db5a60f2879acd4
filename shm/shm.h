/*
 * shm/shm.h - the mechanism layer's internal interface (prefix fdn__).
 *
 * Nothing here is exported from libfoundation.so; the services in lib/, the
 * tools, the tests and the benchmarks use it through the static library.
 * shm/ knows nothing of registries, spans or telemetry.
 */
#ifndef FDN_SHM_H
#define FDN_SHM_H

#include "layout.h"

/* Two public headers, for their definitions only (shm/ calls no function
 * defined in lib/): error.h for the codes, segment.h for fdn_segment,
 * struct fdn_segment_opts, fdn_check_cb and the limits (FDN_SEGMENT_NAME_MAX,
 * FDN_CHANGES_*). */
#include <foundation/error.h>
#include <foundation/segment.h>

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- error.c: every code's message and name (fdn_strerror, fdn_errname) -- */
const char *fdn__strerror(int code);
const char *fdn__errname(int code);

/* ---- clock.c: the library's clocks, in ns (lib/ and shm/ use these) -------- */
uint64_t fdn__mono_ns(void);          /* CLOCK_MONOTONIC */
uint64_t fdn__mono_coarse_ns(void);   /* CLOCK_MONOTONIC_COARSE (clock.c) */
uint64_t fdn__mono_ms(void);          /* CLOCK_MONOTONIC, in ms */
uint64_t fdn__real_ns(void);          /* CLOCK_REALTIME */
uint64_t fdn__real_of(uint64_t mono); /* CLOCK_REALTIME when CLOCK_MONOTONIC read mono */

/* ---- the process-private handle ----------------------------------------- */

struct fdn_segment {
	char name[FDN_SEGMENT_NAME_MAX + 2];
	int fd;
	bool readonly;
	unsigned char *base;
	uint64_t size;
	uint64_t id;         /* process-unique handle id (thread caches key on it) */
	dev_t dev;           /* the object's identity: two handles of one */
	ino_t ino;           /* segment in one process have the same pair */
	uint64_t fork_token; /* fdn__fork_token() when made; differs in any child */
	struct fdn_shm_header *hdr;
	struct fdn_shm_proc *procs;
	struct fdn_shm_tslot *tslots;
	struct fdn_shm_page *pages;
	_Atomic uint64_t *bstate;
	unsigned char *heap;
	uint32_t nprocs, nthreads, npages, ntables;
	uint64_t ngranules;
	uint32_t spill_max; /* spill chunks a reader slot may hold (limbo.c, "Spill") */
	/* The last grace period this handle started found no light reader
	 * (rcu.c, gp_help_turn: a hint; false until one did). */
	_Atomic bool no_light_seen;
	uint64_t seed;
	uint32_t proc_idx; /* our process slot (UINT32_MAX when read-only) */
	uint64_t proc_word;
	/* The count of entries this process wrote for itself, shared by its
	 * handles of the slot (segment.c, struct fdn__procref); NULL: none
	 * kept (read-only, or out of memory), and nothing is counted. */
	_Atomic int64_t *held;
	/* The groups whose owner reference of our slot this handle kept past
	 * the group's last entry, while we held others: bit g % FDN_KEPT_BITS
	 * set keeps every group g' = g (mod FDN_KEPT_BITS), nkept counts the
	 * bits set (lib/registry_index.c, own_ref_kept); all dropped when we
	 * hold none.  4 KiB: one bit per group up to 2^21 main-table buckets
	 * (1 000 000 entries), several groups a bit beyond. */
#define FDN_KEPT_BITS 32768u
	_Atomic uint64_t kept_groups[FDN_KEPT_BITS / 64];
	_Atomic uint32_t nkept;
	struct fdn_shm_death *graveyard;
	struct fdn_shm_trace *trace;  /* ntrace slots (FDN_SVC_TRACE) */
	struct fdn_shm_trace *ghosts; /* FDN_GHOSTS_MAX copies (FDN_SVC_GHOSTS) */
	uint32_t ntrace, nevents;
	struct fdn_shm_chg_hdr *chg_hdr;
	struct fdn_shm_change *changes; /* nchanges records; NULL: no change log */
	uint32_t nchanges;
	_Atomic uint64_t *buckets[FDN_MAX_TABLES];
	uint64_t bucket_mask[FDN_MAX_TABLES];
	uint32_t table_flags[FDN_MAX_TABLES];
	/* Slots that exiting threads have unlisted (under rcu.c's handles
	 * lock) and are still giving back through this handle; detach waits
	 * for 0 before it unmaps (rcu.c, fdn__threads_release). */
	_Atomic uint32_t givebacks;
	/* CLOCK_MONOTONIC before which this handle's writers do not look
	 * whether the reaper still runs (lib/reaper.c, fdn__reaper_notice). */
	_Atomic uint64_t reaper_check_ns;
	/* The spec words of the segment's samplers of the hottest events (a
	 * registry lookup, a span's start and stop: lib/telemetry.h,
	 * fdn__event_fast), once an emit found them; NULL until then.
	 * Sampler slots are never freed: valid while mapped. */
#define FDN_FAST_EVENTS 3u /* lookup, span start, span stop: fdn__fast_slot */
	_Atomic uint64_t *_Atomic fast_spec[FDN_FAST_EVENTS];
};

/* Bumped in every fork child (pthread_atfork). */
extern unsigned fdn__fork_gen;

/*
 * The fork token: a word in a page of its own marked MADV_WIPEONFORK, so it
 * reads 0 in every child however it was made -- fork(), _Fork(),
 * clone() or syscall(SYS_fork), with or without the atfork handlers -- and
 * a new non-zero value is given to it when the child makes its first
 * handle.  A handle keeps the token it was made under: a handle (or a
 * cached reader slot) inherited by a child never matches, so the child
 * never touches its parent's process or reader slots.  One load (the
 * pointer is set once, before the first handle exists).
 */
extern _Atomic uint64_t *fdn__wipe;
static inline uint64_t fdn__fork_token(void)
{
	return atomic_load_explicit(fdn__wipe, memory_order_relaxed);
}

/* Fail with FDN_EFORKED when the handle was made before a fork. */
static inline int fdn__seg_usable(const fdn_segment *s)
{
	return s->fork_token == fdn__fork_token() ? 0 : FDN_EFORKED;
}
/* This process's token, made non-zero (a child's first handle). */
uint64_t fdn__fork_token_take(void);

/* Reader slots [0, fdn__tslot_bound(s)) are the only ones ever claimed:
 * the header's tslot_hwm is raised (seq_cst CAS) before the claim CAS of
 * the slot it covers, and only grows (layout.h).  A walk for the slots in
 * use, or for their counts, stops there: with the default 4 096 slots
 * (2 KiB apart) and a few ever claimed, a reaper's wake-up -> death
 * marked went from 47-65 to 20-25 us at the median.  A slot in use above
 * it is damage `check` reports. */
static inline uint32_t fdn__tslot_bound(const fdn_segment *s)
{
	uint32_t hwm = atomic_load_explicit(&s->hdr->tslot_hwm, memory_order_seq_cst);
	return hwm < s->nthreads ? hwm : s->nthreads;
}

/* ---- segment.c ---------------------------------------------------------- */

/* Compute the region table and total size for these capacities; the one
 * function both create and attach use, so attach can demand equality. */
struct fdn__caps {
	uint32_t nprocs, nthreads, npages, ntables;
	uint64_t nbuckets[FDN_MAX_TABLES];
	uint32_t ntrace, nevents, nchanges;
};
int fdn__layout_compute(const struct fdn__caps *c, struct fdn_shm_region regions[FDN_NREGIONS],
			struct fdn_shm_region svc[FDN_NSVC_REGIONS], uint64_t *total);
uint64_t fdn__layout_signature(void);
int fdn__validate_name(const char *name);
/* What the public fdn_segment_default_name, _dir, _path, _opts_init and
 * _size (lib/segment_api.c) return: $FOUNDATION_SEGMENT or the default
 * name; $FOUNDATION_SHM_DIR or /dev/shm; <dir>/<name> (name NULL: the
 * default); the default options; the bytes a create with opts would map. */
const char *fdn__seg_default_name(void);
const char *fdn__seg_dir(void);
int fdn__seg_path(const char *name, char *buf, size_t cap);
void fdn__seg_opts_defaults(struct fdn_segment_opts *o);
int fdn__seg_size(const struct fdn_segment_opts *opts, uint64_t *bytes);
/* Create / attach (the public fdn_segment_create/attach in lib/ wrap these
 * and start the reaper).  `init` (may be NULL) writes the services' parts
 * of the new segment before it is published (init_state READY), so no
 * attacher ever sees them unset; its error fails the create, which then
 * removes the segment. */
typedef int (*fdn__svc_init_fn)(fdn_segment *s, const struct fdn_segment_opts *o);
int fdn__seg_create(const char *name, const struct fdn_segment_opts *o, fdn__svc_init_fn init,
		    fdn_segment **out);
int fdn__seg_attach(const char *name, unsigned flags, fdn_segment **out);
/* Give back the reader slots and the process slot (set free, or DEAD for
 * the reaper to clean up after), unmap, free the handle. */
void fdn__seg_detach(fdn_segment *s, bool leave_dead);
/* Handles of this process sharing s's process slot (0 for read-only). */
unsigned fdn__seg_proc_refs(fdn_segment *s);
/* Destroy the segment of that name: refuse a file that is not a segment
 * (FDN_EMAGIC, the file untouched), mark it destroyed in its header (when
 * we may write it) and wake its waiters and reaper, then shm_unlink the
 * name.  *lease (may be NULL) gets the reaper lease word seen, 0 if none. */
int fdn__seg_destroy(const char *name, uint64_t *lease);
/* A running audit: every violation goes to cb and is counted (check.c; the
 * services' audits use it too). */
struct fdn__audit {
	fdn_check_cb cb;
	void *arg;
	int n;
};
__attribute__((format(printf, 3, 4))) void fdn__violation(struct fdn__audit *a, const char *code,
							  const char *fmt, ...);

/* The mechanism's audit (check.c); fdn_segment_check adds the services'. */
int fdn__seg_check(fdn_segment *s, fdn_check_cb cb, void *arg);
/* Tell watchers something changed (ht.c after every mutation, reclaim.c
 * after a death): one load when nobody waits. */
void fdn__notify(fdn_segment *s);
/* Wait until header.changes differs from `seen` or timeout_ns passes
 * (< 0: no limit).  Call between fdn__watch_begin and fdn__watch_end. */
int fdn__wait_change(fdn_segment *s, uint32_t seen, int64_t timeout_ns);
uint32_t fdn__watch_begin(fdn_segment *s);
/* FDN_ESTALE when the segment was destroyed (its header says so, or its
 * name no longer leads to it: st_nlink 0), else 0.  A system call. */
int fdn__seg_stale(fdn_segment *s);
/* Ring every waiter of the segment (watchers, the reaper): destroy. */
void fdn__wake_all(struct fdn_shm_header *h);
void fdn__watch_end(fdn_segment *s);
/* Ring the reaper's doorbell (proc.c, after a process-slot claim). */
void fdn__doorbell(fdn_segment *s);
/* Validate a mapped header against the file size (attach's checks). */
int fdn__validate_header(const struct fdn_shm_header *h, uint64_t file_size);
/* For the tools only (the reaper, the inspector): a SIGBUS inside s's
 * mapping ends the process with one line naming the cause ("segment
 * truncated: N bytes, header says M") and exit status 1 (segment.c). */
void fdn__seg_guard_sigbus(fdn_segment *s, const char *prog);
/* For the same tools, before a walk: if s's file is now shorter than the
 * mapping, print the guard's line ("PROG: segment truncated: N bytes,
 * header says M") and return true. */
bool fdn__seg_say_truncated(fdn_segment *s, const char *prog);

/* ---- proc.c: identities and the process table --------------------------- */

/* Identity of a live pid: pidfs inode (kind FDN_IDENT_PIDFS) or start time
 * (FDN_IDENT_STARTTIME, only where this process cannot use pidfds: ENOSYS,
 * EPERM).  -ESRCH: no such process; -EMFILE/-ENFILE: out of descriptors
 * (never answered with the other kind). */
int fdn__identity(pid_t pid, uint64_t *ident, uint32_t *kind);
/* The 40-bit tag of an identity, its kind included (layout.h). */
uint64_t fdn__ident_tag(uint64_t ident, uint32_t kind);
/* The LIVE claim word of pid's process, its identity read now (the word its
 * slot holds if one is claimed for it); fdn__identity's errors. */
int fdn__proc_live_word(pid_t pid, uint64_t *word);
/* Claim a process slot for pid (LIVE): its index into *idx_out and the
 * claim word written into *word_out (may be NULL).  A caller claiming for
 * another pid must use that word, never a load of the slot after the
 * claim: once the claimer is named the reaper may release the slot
 * (fdn__proc_release) and the load would see 0 or another claim. */
int fdn__proc_claim(fdn_segment *s, pid_t pid, uint32_t *idx_out, uint64_t *word_out);
/* At attach: a LIVE slot that already names this process (pid and
 * identity) -- held for it by a supervisor (then taken over: the claimer
 * becomes pid) or left by its own image before an exec (*execd).  One
 * process, one slot, one death.  FDN_ENOTFOUND: claim a new one. */
int fdn__proc_adopt(fdn_segment *s, pid_t pid, uint32_t *idx_out, bool *execd);
/* Mark owner (idx, word) as holding entries its own process does not count
 * (layout.h, fdn_shm_proc.uncounted): a seq_cst CAS, made only while the
 * slot's word is `word`.  Before an entry is written for another owner. */
void fdn__proc_mark_uncounted(fdn_segment *s, uint32_t idx, uint64_t word);
/* Release LIVE slot idx held for another process's pid (claimer_pid is
 * not the pid) if it owns nothing any more: the reaper, or a writer.  The
 * release is named in the caller's own slot (rel_word, rel_name), the
 * claimer is marked RELEASING, then idle(s, idx, word) must say the owner
 * has no entry.  A concurrent adopt or register wins or retries.  0, or
 * FDN_EEXISTS (not released: in use, being claimed, taken, or another
 * thread of this process is releasing); FDN_EINVAL without a slot of our
 * own. */
#define FDN_CLAIMER_RELEASING UINT32_MAX
int fdn__proc_release(fdn_segment *s, uint32_t idx, uint64_t word,
		      bool (*idle)(fdn_segment *, uint32_t, uint64_t));
/* The reaper, once a tick: put back the claimer of every slot left
 * RELEASING by a releaser that died before deciding (proc.c argues when
 * that is known).  seen: nprocs words kept by the caller between calls
 * (zeroed at first), a slot is repaired only if seen alike on two calls.
 * The number repaired. */
int fdn__proc_repair_releases(fdn_segment *s, uint64_t *seen);
/* A writer that has written an owner reference for slot idx, claimed
 * with word: wait while a release of it is being decided (bounded).
 * true: the slot was released (its word changed), or a release stayed
 * undecided for 100 ms; false: no release under way, or one given up. */
bool fdn__proc_wait_release(fdn_segment *s, uint32_t idx, uint64_t word);
/* The process slot holding pid (LIVE or DEAD), or FDN_ENOTFOUND.  By pid
 * alone: for tests and tools that just waited for that pid. */
int fdn__proc_find(const fdn_segment *s, pid_t pid, uint32_t *idx);
/* Is process slot idx, whose claim word was `word`, still that process?
 * False only when the kernel says so: no such pid, another identity, or
 * its pidfd readable (every thread exited).  When it cannot tell (out of
 * descriptors, say) it says alive. */
bool fdn__proc_alive(const fdn_segment *s, uint32_t idx, uint64_t word);
/* The same for a pid and an identity tag (FDN_PROC_IDENT40 of a word). */
bool fdn__pid_alive(pid_t pid, uint64_t tag);
enum { FDN_PID_ALIVE = 0, FDN_PID_DEAD = 1, FDN_PID_UNKNOWN = 2 };
int fdn__pid_state(pid_t pid, uint64_t tag);
/* The same, and a pidfd of that very process in *fd (else -1): open for
 * ALIVE, and for DEAD when the process has exited but is the one tagged
 * (it carries the exit information). */
int fdn__pid_open(pid_t pid, uint64_t tag, int *fd);
/* Does process pid map the file (dev, ino)?  1 yes, 0 no (it exec'd, or
 * unmapped it), -1 cannot tell (no permission, no /proc). */
int fdn__pid_maps(pid_t pid, uint64_t dev, uint64_t ino);

/* ---- rcu.c: cross-process RCU and reader slots -------------------------- */

struct fdn__thread {
	fdn_segment *seg;
	uint64_t seg_id;
	uint32_t slot;
	uint32_t nest;
	/* Non-zero while a table operation of this thread writes the slot's
	 * op line or limbo (ht.c): a call from a signal handler that
	 * interrupted it gets FDN_EREENTERED instead of overwriting them.
	 * volatile: the handler runs on this thread, between any two of its
	 * instructions. */
	volatile sig_atomic_t busy;
	/* 1 while the outermost read lock stores ctr and fences (shm.h). */
	volatile sig_atomic_t entering;
	/* Depth of user callbacks running inside this thread's sections
	 * (fdn_lookup_view's cb).  A write that finds nest > 0 with no such
	 * callback was called from a signal handler that interrupted one of
	 * our own sections: FDN_EREENTERED, not FDN_EINREAD (fdn__op_lock). */
	volatile sig_atomic_t in_cb;
	uint64_t state;       /* the slot's state word as claimed */
	uint64_t busy_gp;     /* gp_done + 1 when its ring was last found stuck full */
	uint64_t spill_since; /* its oldest spill chunk's stamp (0: none) */
	struct fdn_shm_tslot *ts;
	struct fdn_shm_trace *trace;     /* this thread's trace slot, or NULL */
	uint32_t cur_page[FDN_NCLASSES]; /* allocation hints, private */
	uint32_t cur_block[FDN_NCLASSES];
};

/* Mark t busy for one write of its slot's op line or limbo (ht.c's ops,
 * fdn__write_room): FDN_EREENTERED if a signal handler interrupted such a
 * write of this thread, else 0 and the mark is set until fdn__op_leave.
 * The signal fences keep the compiler from moving the slot's writes out of
 * the marked stretch (the handler runs on this thread). */
static inline int fdn__op_enter(struct fdn__thread *t)
{
	if (__builtin_expect(t->busy, 0))
		return FDN_EREENTERED;
	t->busy = 1;
	atomic_signal_fence(memory_order_seq_cst);
	return 0;
}

static inline void fdn__op_leave(struct fdn__thread *t)
{
	atomic_signal_fence(memory_order_seq_cst);
	t->busy = 0;
}

/* User code runs inside t's section from here to fdn__user_end (in_cb). */
static inline void fdn__user_begin(struct fdn__thread *t)
{
	t->in_cb++;
	atomic_signal_fence(memory_order_seq_cst);
}

static inline void fdn__user_end(struct fdn__thread *t)
{
	atomic_signal_fence(memory_order_seq_cst);
	t->in_cb--;
}

extern _Thread_local struct fdn__thread *fdn__tls_last;
/* This process registered for MEMBARRIER_CMD_GLOBAL_EXPEDITED: its readers
 * need only a compiler barrier (rcu.c). */
extern _Atomic bool fdn__rcu_light;
/* Register this process for global expedited membarriers (at attach). */
void fdn__rcu_register(void);
/* Before this process's first attach: its readers fence themselves (heavy)
 * and it does not register, so that grace periods need no membarrier for
 * its slots (the reaper: its sections are rare; rcu.c, "No light
 * reader"). */
void fdn__rcu_heavy(void);
/* In a fork child: drop the parent's slot cache (segment.c's atfork). */
void fdn__rcu_atfork_child(void);

int fdn__thread_get_slow(fdn_segment *s, struct fdn__thread **out);
/* The same, returning the slot (NULL with *err set). */
struct fdn__thread *fdn__thread_slow(fdn_segment *s, int *err);

/* This thread's reader slot for s if it is the one used last (the common
 * case), else NULL: the slow path decides. */
static inline struct fdn__thread *fdn__thread_cached(fdn_segment *s)
{
	struct fdn__thread *t = fdn__tls_last;
	if (__builtin_expect(
		t && t->seg == s && t->seg_id == s->id && s->fork_token == fdn__fork_token(), 1))
		return t;
	return NULL;
}

/* This thread's reader slot for s, claimed on first use.  Errors:
 * FDN_EFORKED, FDN_ERDONLY, FDN_ENOSPACE (no free reader slot). */
static inline int fdn__thread_get(fdn_segment *s, struct fdn__thread **out)
{
	struct fdn__thread *t = fdn__thread_cached(s);
	if (t) {
		*out = t;
		return 0;
	}
	return fdn__thread_get_slow(s, out);
}

/*
 * Enter a read-side section (nestable).  Until the matching unlock, no node
 * reached through the table is freed.  Wait-free: one load, one store and a
 * barrier (a compiler barrier for processes registered with membarrier, a
 * full fence otherwise; rcu.c explains the pairing).
 */
/* The outermost section's start: snapshot gp_ctr into our slot, then the
 * reader's BARRIER (rcu.c). */
static inline void fdn__rcu_enter(fdn_segment *s, struct fdn__thread *t)
{
	/* Acquire, not relaxed: a grace period's fetch_add follows the
	 * unlink it covers; reading its value g here must order our table
	 * loads after that unlink, or we would advertise g (not waited for)
	 * while holding a pointer loaded before it.  x86 never reorders
	 * loads with loads; arm64 does (LDAR is the fix, a plain MOV on
	 * x86).  The light path's membarrier does not help there: the whole
	 * section may end before its IPI. */
	uint64_t g = atomic_load_explicit(&s->hdr->gp_ctr, memory_order_acquire);
	atomic_store_explicit(&t->ts->ctr, g, memory_order_relaxed);
	if (atomic_load_explicit(&fdn__rcu_light, memory_order_relaxed))
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
}

static inline int fdn__rcu_read_lock(fdn_segment *s, struct fdn__thread **out)
{
	/* fdn__thread_get, with the slot returned rather than stored through
	 * a pointer the slow path also receives: a local whose address
	 * escapes lives in memory, and each signal fence below made the
	 * compiler reload it. */
	struct fdn__thread *t = fdn__thread_cached(s);
	int r;
	if (!t && !(t = fdn__thread_slow(s, &r))) {
		*out = NULL;
		return r;
	}
	/* Signal handlers.  A handler runs on this thread between any two of
	 * our instructions and may open its own section.  Three rules keep
	 * both sections covered:
	 *   - nest is raised, and visible to a handler (signal fence), before
	 *     ctr is stored: a handler that finds nest == 0 runs a whole
	 *     section and leaves ctr == 0 *before* we store ours;
	 *   - a handler that finds nest > 0 while the outermost lock has not
	 *     finished (entering: ctr still 0, or stored but not yet fenced)
	 *     stores ctr and fences itself; the outer lock then stores its
	 *     own snapshot, older or equal, and fences;
	 *   - unlock lowers nest before it stores 0 (below).
	 * Without the fences the compiler may move the plain stores of nest
	 * and entering past the atomic ones. */
	uint32_t n = t->nest;
	t->nest = n + 1;
	atomic_signal_fence(memory_order_seq_cst);
	if (n == 0) {
		t->entering = 1;
		atomic_signal_fence(memory_order_seq_cst);
		fdn__rcu_enter(s, t);
		atomic_signal_fence(memory_order_seq_cst);
		t->entering = 0;
	} else if (__builtin_expect(
		       t->entering || atomic_load_explicit(&t->ts->ctr, memory_order_relaxed) == 0,
		       0)) {
		fdn__rcu_enter(s, t);
	}
	*out = t;
	return 0;
}

/* Leave it.  Release: the section's loads happen before a writer that
 * reads 0 here frees what they read. */
static inline void fdn__rcu_read_unlock(struct fdn__thread *t)
{
	uint32_t n = t->nest - 1;
	t->nest = n;
	/* nest first (see lock): a handler between the two finds nest == 0
	 * and runs a section of its own, which ends with ctr = 0 anyway. */
	atomic_signal_fence(memory_order_seq_cst);
	if (n == 0)
		atomic_store_explicit(&t->ts->ctr, 0, memory_order_release);
}

/* Wait until every read-side section that began before the call has ended.
 * Not from inside a read-side section of this segment, through any handle
 * (FDN_EINREAD).  Takes no reader slot.  timeout_ns < 0: wait
 * as long as needed (a dead reader blocks until its slot is cleared). */
int fdn__rcu_synchronize(fdn_segment *s, int64_t timeout_ns);
/* How long a retiring operation whose limbo ring is full waits for a
 * grace period before FDN_EBUSY (default; time for the reaper to reclaim
 * a dead reader on a busy machine), and how long a leaving thread waits
 * before it leaves its blocks to the reaper.  After one FDN_EBUSY the
 * thread's next retiring operations fail at once (one short poll) until
 * a grace period completes: a stopped reader costs writers one wait, not
 * one per call. */
#define FDN_FLUSH_WAIT_NS     (2000 * 1000000ll)
#define FDN_GIVE_BACK_WAIT_NS (100 * 1000000ll)
/* Set this thread's bound (the reaper's: shorter; < 0 = none). */
void fdn__rcu_set_flush_timeout(int64_t ns);
/* One attempt at a grace period, shared by everyone: unless gp_done is
 * already > need, start one (fetch_add, barrier) and look at every reader
 * slot in use, spinning on one still in an older section for at most
 * budget_ns (< 0: no limit, 0: look once).  0: gp_done now covers it;
 * FDN_EBUSY: a section (or a light reader we cannot fence) is in the way. */
int fdn__gp_poll(fdn_segment *s, int64_t budget_ns, uint64_t need);
/* A writer's zero-wait help (limbo.c): fdn__gp_poll(s, 0, need), except
 * that, while a light reader's slot is in use, it starts a grace period of
 * its own -- a membarrier, an IPI to every CPU running a reader -- at most
 * once per FDN_GP_HELP_NS among the helps of all processes
 * (header.gp_help_ns), and of this process (rcu.c);
 * in between it only finishes one whose barrier was issued.  FDN_EBUSY when
 * it did neither. */
#define FDN_GP_HELP_NS (1000 * 1000ull)
int fdn__gp_help(fdn_segment *s, uint64_t need);
/* Wait until a grace period that began after the call has completed (by us
 * or anyone), or timeout_ns passes (< 0: no limit). */
int fdn__grace_period(fdn_segment *s, int64_t timeout_ns);
/* Is this thread inside a read-side section of segment s, through this
 * handle or another handle of the same segment (which would make a grace
 * period wait for ourselves)? */
bool fdn__in_section_of(const fdn_segment *s);
/* Retire block gidx (generation gen) to this thread's limbo ring. */
void fdn__limbo_add(struct fdn__thread *t, uint32_t gidx, uint32_t gen);
/* Free the ring's entries, and the spill chunks, that a completed grace
 * period covers; returns how many of the ring's entries still wait.  The
 * slot's owner only (or R for a dead one's, or the adopter's). */
uint64_t fdn__limbo_reap(fdn_segment *s, struct fdn_shm_tslot *ts);
/* Blocks slot ts holds for a grace period: its ring and its spill chunks. */
uint64_t fdn__limbo_waiting(const struct fdn_shm_tslot *ts);
/* The newest stamp among them (0: none). */
uint64_t fdn__limbo_newest(const fdn_segment *s, const struct fdn_shm_tslot *ts);
/* The chunk a spill link names, or NULL unless it is an allocated block of
 * the chunk's size with the link's generation. */
struct fdn_shm_spill *fdn__spill_chunk(const fdn_segment *s, uint64_t link);
/* After an operation: free what is due; when the ring is a quarter full,
 * one short poll to help.  Never waits long. */
void fdn__limbo_help(struct fdn__thread *t);
/* Before an operation that may retire a block: room in the ring, waiting
 * at most this thread's bound: 0, FDN_EBUSY, FDN_EINREAD. */
int fdn__limbo_room(struct fdn__thread *t);
/* The same for n retirements (1..FDN_LIMBO_MAX): at most FDN_LIMBO_MAX - n
 * blocks left waiting in the ring. */
int fdn__limbo_room_for(struct fdn__thread *t, uint32_t n);
/* Room for one retirement (for n) before a caller enters its own section
 * around table operations (the registry's take-over), or before a call of
 * several operations that must fail before its first one rather than
 * half-way (fdn_unregister): as fdn__limbo_room. */
int fdn__write_room(fdn_segment *s);
int fdn__write_room_for(fdn_segment *s, uint32_t n);
/* Has the calling thread's list room for n more without making any (and
 * is it not inside one of its own operations)?  Never waits. */
bool fdn__write_room_has(fdn_segment *s, uint32_t n);
/* Wait (this thread's bound) for a grace period and free the ring. */
int fdn__limbo_flush(struct fdn__thread *t);
/* The same for a caller that runs its own section around table operations
 * (the registry's take-over) and got FDN_ENOSPACE inside it, where no
 * flush can be made: 1 if blocks waited and were freed (try again), 0 if
 * none waited, or an error.  Outside any section. */
int fdn__write_flush(fdn_segment *s);
/* Give back every reader slot of this handle (detach). */
void fdn__threads_release(fdn_segment *s);
/* This thread's trace slot (span stack and error context), claimed on
 * first use; given back with its reader slot.  FDN_ENOSPACE when all are
 * taken. */
int fdn__thread_trace(fdn_segment *s, struct fdn__thread *t, struct fdn_shm_trace **out);
/* The slot's seqlock, writer side (the owning thread, or the reaper for a
 * dead owner's slot). */
void fdn__trace_write_begin(struct fdn_shm_trace *tr);
void fdn__trace_write_end(struct fdn_shm_trace *tr);
/* Does a trace slot's owner word name the process of claim word `word`
 * (same pid and identity, whatever the state bits)? */
bool fdn__trace_owned_by(uint64_t owner, uint64_t word);
/* Empty slot tr and free it if `word` (a process's claim word) owns it. */
void fdn__trace_free(struct fdn_shm_trace *tr, uint64_t word);

/* Free every limbo entry and spill chunk of slot ts (after a grace period
 * that began after the last of them was retired); the slot's owner is dead
 * or has left it. */
void fdn__limbo_free_all(fdn_segment *s, struct fdn_shm_tslot *ts);

/* ---- alloc.c: the block allocator ---------------------------------------- */

/* Size class for a block of `bytes` (< 0: too big). */
int fdn__size_class(uint32_t bytes);
/* Allocate a block of at least `bytes`; the candidate is recorded in the
 * thread's intent (ts->node) before it is claimed. */
int fdn__alloc(struct fdn__thread *t, uint32_t bytes, uint32_t *gidx, uint32_t *gen);
/* fdn__alloc with the claim intent stored in *intent instead of the slot's
 * `node` (a spill chunk: limbo.c). */
int fdn__alloc_as(struct fdn__thread *t, _Atomic uint64_t *intent, uint32_t bytes, uint32_t *gidx,
		  uint32_t *gen);
/* Free block gidx if it is still ALLOC with generation gen (no-op if not).
 * Zeroes the block's first word first.  Returns true if it freed. */
bool fdn__free(fdn_segment *s, uint32_t gidx, uint32_t gen);
/* The same for a block its allocator never published (an op that failed,
 * or a dead thread's claim the reclaimer found unlinked): the block's
 * generation goes back to what it was before the claim. */
bool fdn__free_unpublished(fdn_segment *s, uint32_t gidx, uint32_t gen);
/* Is gidx the first granule of a block inside an assigned page? Returns the
 * block size, 0 if not. */
uint32_t fdn__block_size(const fdn_segment *s, uint64_t gidx);

/* A spin-wait hint. */
static inline void fdn__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static inline void *fdn__gptr(const fdn_segment *s, uint64_t gidx)
{
	return s->heap + gidx * FDN_GRANULE;
}

/* ---- ht.c: the lock-free hash table -------------------------------------- */

/* A node seen by a lookup; valid until the read-side section ends. */
struct fdn__ht_view {
	uint32_t gidx, gen; /* the version: (gidx, gen) names it uniquely */
	const unsigned char *key;
	uint32_t key_len;
	const unsigned char *val;
	uint32_t val_len;
};

enum {
	FDN_HT_UNIQUE = 0,  /* fail with FDN_EEXISTS if the key is present */
	FDN_HT_UPSERT = 1,  /* insert, or replace the present node atomically */
	FDN_HT_REPLACE = 2, /* replace only `expect` (FDN_ENOTFOUND otherwise) */
};

int fdn__ht_find(fdn_segment *s, const char *name, uint32_t *table);
/* The table's hash of a key: XXH3 with the segment's seed, over the whole
 * key, or over its prefix for FDN_TABLE_PREFIX_HASH tables. */
uint64_t fdn__ht_hash(const fdn_segment *s, uint32_t table, const void *key, size_t len);
/* How many chains the keys of a stored prefix spread over (layout.h). */
static inline uint64_t fdn__prefix_spread(const unsigned char *prefix, size_t n)
{
	if (n && prefix[0] <= 1)
		return FDN_PREFIX_SPREAD_WIDE;
	return n && prefix[0] == 2 ? FDN_PREFIX_SPREAD_MAX : FDN_PREFIX_SPREAD;
}
/* Levelled prefixes (header.prefix_levels).  The level of prefix P (0..2;
 * a seq_cst load, so that a walk begun after an insert completed sees the
 * level the insert used), and raising it to at least lvl. */
unsigned fdn__prefix_level(const fdn_segment *s, const void *prefix, size_t n);
void fdn__prefix_raise(fdn_segment *s, const void *prefix, size_t n, unsigned lvl);
/* The stored prefix of P at level lvl into out (P, or [lvl]P); its length. */
size_t fdn__prefix_at_level(const unsigned char *prefix, size_t n, unsigned lvl,
			    unsigned char *out);
/* How many nodes the calling thread's last insert passed in its chain
 * before its key's place (fdn__ht_put): a long one raises a level. */
extern _Thread_local uint32_t fdn__ht_last_steps;
/* The base hash of a prefix: its keys hash to base ^ k, k < its spread. */
uint64_t fdn__ht_prefix_hash(const fdn_segment *s, const void *prefix, size_t n);
/* Lookup (ht_read.h, inline): caller holds the read lock.  0,
 * FDN_ENOTFOUND, FDN_EINVKEY, FDN_EINVAL (no such table), FDN_ECORRUPT. */
/* Insert / upsert / replace (mode FDN_HT_*).  Takes the read lock itself.
 * existing (may be NULL): the node in the way on FDN_EEXISTS (FDN_HT_UNIQUE)
 * or FDN_ENOTFOUND (FDN_HT_REPLACE, another version); on success the node
 * written (its gidx and gen name it after the call). */
int fdn__ht_put(fdn_segment *s, uint32_t table, const void *key, size_t klen, const void *val,
		size_t vlen, int mode, const struct fdn__ht_view *expect,
		struct fdn__ht_view *existing);
/* Delete the key (expect == NULL) or only that version of it. */
int fdn__ht_delete(fdn_segment *s, uint32_t table, const void *key, size_t klen,
		   const struct fdn__ht_view *expect);
/* Call cb for every live node; caller holds the read lock.  Stops early when
 * cb returns non-zero and returns that value. */
typedef int (*fdn__ht_cb)(void *arg, const struct fdn__ht_view *v);
int fdn__ht_foreach(fdn_segment *s, uint32_t table, fdn__ht_cb cb, void *arg);
/* The same over one bucket's chain. */
int fdn__ht_foreach_bucket(fdn_segment *s, uint32_t table, uint64_t b, fdn__ht_cb cb, void *arg);
/* Ask the CPU for the first node of buckets [b, b + n) of a table, so that
 * a walk of them that follows waits for their misses together rather than
 * one after another (a hint: nothing is read for the caller). */
void fdn__ht_prefetch(const fdn_segment *s, uint32_t table, uint64_t b, uint64_t n);
/* Live entries of a table: the sum of every reader slot's delta. */
int64_t fdn__ht_count(const fdn_segment *s, uint32_t table);
/* Is node gidx linked in its table's chain (reclaim.c)? Read lock held. */
bool fdn__ht_reachable(fdn_segment *s, uint32_t table, uint32_t gidx);
/* Make sure marked node gidx is physically unlinked (a search for its key
 * unlinks every marked node on the way).  Read lock held. */
int fdn__ht_unlink(fdn_segment *s, uint32_t table, uint32_t gidx);
/* fdn__node (ht_read.h): bounds-checked access to a node, NULL if gidx
 * cannot hold one. */

#include "ht_read.h"

/* ---- changes.c: the change log ------------------------------------------- */

/* What a logged table op changes (the registry fills it in). */
struct fdn__chg {
	unsigned kind;  /* FDN_CHANGE_* (foundation/changes.h) */
	pid_t pid;      /* the entry's owner */
	uint64_t death; /* removal by the reaper: graveyard number + 1; else 0 */
	/* CLOCK_REALTIME of the change; 0: read when its record is claimed.
	 * A registration passes its entry's registered_ns (one clock read
	 * fewer, and the same instant in the entry and in the log). */
	uint64_t time_ns;
};

/* A record copied out of the log. */
struct fdn__chg_rec {
	uint64_t rev, time_ns, death;
	uint32_t pid, kind, key_len;
	unsigned char key[FDN_CHANGE_KEY_MAX + 1];
};

/* fdn__chg_get results. */
enum {
	FDN__CHG_DONE = 0,      /* copied into *out */
	FDN__CHG_VOID = 1,      /* a change that did not happen: skip it */
	FDN__CHG_PENDING = 2,   /* its writer's CAS is not decided yet */
	FDN__CHG_UNCLAIMED = 3, /* reserved, its writer has not claimed the slot */
	FDN__CHG_NOTYET = 4,    /* not issued yet */
	FDN__CHG_GONE = 5,      /* overwritten (or lost): an overrun */
};
/* A reader steals an unclaimed revision after waiting this long for it. */
#define FDN__CHG_STEAL_NS 10000000ull

/* Writer side (ht.c), inside the op's retry loop, just before its CAS:
 * reserve a revision and write its record PENDING (0: no log, or c NULL).
 * After the CAS: DONE if it took effect, else VOID. */
uint64_t fdn__chg_begin(struct fdn__thread *t, const struct fdn__chg *c, const void *key,
			uint32_t klen);
void fdn__chg_end(struct fdn__thread *t, uint64_t rev, bool took);
/* The reaper, resolving a dead writer's op: settle the record its slot
 * names.  true if it was still PENDING. */
bool fdn__chg_resolve(fdn_segment *s, struct fdn_shm_tslot *ts, bool took);
/* Read record rev (FDN__CHG_*). */
int fdn__chg_get(fdn_segment *s, uint64_t rev, struct fdn__chg_rec *out);
/* Claim an unclaimed revision VOID (a reader that waited long enough). */
bool fdn__chg_steal(fdn_segment *s, uint64_t rev);
/* Revisions issued so far (0 without a log). */
uint64_t fdn__chg_head(const fdn_segment *s);

/* Logged forms of fdn__ht_put / fdn__ht_delete: c NULL is the plain call. */
int fdn__ht_put_chg(fdn_segment *s, uint32_t table, const void *key, size_t klen, const void *val,
		    size_t vlen, int mode, const struct fdn__ht_view *expect,
		    struct fdn__ht_view *existing, const struct fdn__chg *c);
int fdn__ht_delete_chg(fdn_segment *s, uint32_t table, const void *key, size_t klen,
		       const struct fdn__ht_view *expect, const struct fdn__chg *c);

/* ---- reclaim.c ------------------------------------------------------------ */

/*
 * Reclaim everything process slot `idx` owned, once that process is known to
 * be dead (the caller vouches for it: the reaper learns it from a pidfd):
 * finish or undo its reader slots' operations in flight, end their
 * read-side sections, free their deferred blocks after a grace period, and
 * free the slots.  Idempotent: a reclaimer killed part-way leaves work the
 * next call completes.  One reclaimer per segment at a time (the reaper's
 * lease).  _begin does the part that never waits (mark DEAD, resolve, end
 * the sections): with several dead processes, begin them all, then finish
 * each (reclaim.c says why).  `word` is the slot's claim word when the
 * process was judged dead (LIVE or DEAD form): nothing is done unless the
 * slot still holds that process (FDN_ENOTFOUND: already reclaimed, or
 * the slot now belongs to another process).  Errors: FDN_EINVAL (bad
 * index, our own slot),
 * FDN_ETIMEDOUT (grace period not over: call again), FDN_EINREAD (inside a
 * read-side section), FDN_ERDONLY, FDN_EFORKED.  Needs no reader slot of
 * the caller's: it works when dead threads hold them all.
 */
int fdn__proc_reclaim_begin(fdn_segment *s, uint32_t idx, uint64_t word);
int fdn__proc_reclaim(fdn_segment *s, uint32_t idx, uint64_t word, int64_t timeout_ns);
/* Reclaim every reader slot owned by process slot idx as a dead thread's
 * (resolve its operation, end its section, free its deferred blocks after
 * a grace period, free it), leaving the process slot as it is.  The caller
 * vouches that no thread will use them again: the process exec'd (its new
 * image re-attaching, or the reaper seeing it no longer maps the segment),
 * or the slot's owner is gone.  FDN_ETIMEDOUT: sections ended, blocks
 * kept, call again. */
int fdn__threads_reclaim(fdn_segment *s, uint32_t idx, int64_t timeout_ns);

#endif
