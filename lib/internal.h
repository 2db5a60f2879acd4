/*
 * lib/internal.h - what the services in lib/ share with each other and with
 * the tools (prefix fdn__; not exported).
 */
#ifndef FDN_LIB_INTERNAL_H
#define FDN_LIB_INTERNAL_H

#include "shm/shm.h"

#include <foundation/attrs.h>
#include <foundation/flags.h>
#include <foundation/registry.h>
#include <foundation/telemetry.h>

/* The attribute at *off of an encoding (start with *off = 2, past the
 * count) and *off moved past it: 0; FDN_EINVMETA for a record whose value
 * is malformed (*off is past it: the caller may go on); FDN_ENOTFOUND at
 * the end or at a malformed header.  One walk of a set where
 * fdn_attrs_at(i) starts again from the first record for each i. */
int fdn__attrs_next(const void *p, size_t len, size_t *off, struct fdn_attr *out);

/* ---- backends (backend.c) ------------------------------------------------
 * Each service has a shared backend (the segment) and a process-local one;
 * the flags choose per call. */
enum fdn__svc {
	FDN__SVC_REGISTRY,
	FDN__SVC_ERROR_CONTEXT,
	FDN__SVC_SPANS,
	FDN__SVC_TELEMETRY,
	FDN__SVC_SAMPLED_EVENTS,
};
enum { FDN__LOCAL = 0, FDN__SHARED = 1 };
/* FDN__SHARED, FDN__LOCAL, or FDN_EENFORCED when the local backend is
 * chosen while local state is forbidden.  s may be NULL (no segment). */
int fdn__backend(fdn_segment *s, enum fdn__svc svc);

/* ---- flags and stages (flags.c) -------------------------------------------
 * The built-in flags have fixed ids (their bit field in the built-in word,
 * layout.h): fdn__flag_on(s, id) is one acquire load.  s == NULL reads the
 * process-memory flags. */
enum fdn__flag_id {
	FDN__FLAG_USE_SHM_REGISTRY = 0,
	FDN__FLAG_USE_SHM_ERROR_CONTEXT = 1,
	FDN__FLAG_USE_SHM_TELEMETRY = 2,
	FDN__FLAG_USE_SHM_SPANS = 3,
	FDN__FLAG_USE_SHM_SAMPLED_EVENTS = 4,
	FDN__FLAG_ENFORCE_NO_LOCAL_STATE = 5,
	FDN__FLAG_ENABLE_MIGRATION_MONITORING = 6,
};

/* The flags of this process's memory (s == NULL), set from
 * $FOUNDATION_FLAGS when the library is loaded. */
extern struct fdn_shm_flags_hdr fdn__proc_flags_hdr;

static inline struct fdn_shm_flags_hdr *fdn__flags_hdr(fdn_segment *s)
{
	return s ? (struct fdn_shm_flags_hdr *)(void *)s->hdr->flags_hdr : &fdn__proc_flags_hdr;
}

/* The built-in word: every built-in flag and the stage, one snapshot.
 * Acquire: pairs with the writer's release store of the word. */
static inline uint64_t fdn__flags_word(fdn_segment *s)
{
	return atomic_load_explicit(&fdn__flags_hdr(s)->builtin, memory_order_acquire);
}

static inline bool fdn__flag_on(fdn_segment *s, enum fdn__flag_id id)
{
	return FDN_BUILTIN_VALUE(fdn__flags_word(s), id) == FDN_FLAG_PCT_MAX;
}

/* Write the flags part of a new segment (creation defaults from
 * o->flag_defaults, else $FOUNDATION_FLAGS, else built-in).  Before the
 * segment is published.  FDN_EINVAL, FDN_EUNKFLAG, FDN_EPERCENT for bad
 * default text. */
int fdn__flags_init(fdn_segment *s, const struct fdn_segment_opts *o);

/* The flags service's audit (names, values, stage, history, lock). */
int fdn__flags_check(fdn_segment *s, fdn_check_cb cb, void *arg);

/* An in-process observer of flag and stage changes, called after each
 * change is applied, in the changing thread, outside the flags lock (tests
 * use it; the telemetry events are emitted from the same two helpers in
 * flags.c).  NULL removes it. */
struct fdn_flag_change;
typedef void (*fdn__flags_hook_fn)(void *arg, const struct fdn_flag_change *c);
void fdn__flags_set_hook(fdn__flags_hook_fn fn, void *arg);

/* ---- the local registry (registry_local.c) ---------------------------------
 * The process-private registry (the seed's process dictionary): the same
 * contracts as the public registry calls, on a liburcu cds_lfht in this
 * process's memory.  registry.c dispatches to these. */
int fdn__local_register(const void *key, size_t klen, pid_t pid, const struct fdn_attr *attrs,
			size_t n, unsigned flags, pid_t *holder);
int fdn__local_lookup(const void *key, size_t klen, unsigned flags, struct fdn_entry *out);
int fdn__local_unregister(const void *key, size_t klen);
int fdn__local_update(const void *key, size_t klen, const struct fdn_attr *attrs, size_t n,
		      bool merge);
/* alive: count only entries whose owner the kernel says is alive. */
int64_t fdn__local_count(bool alive);
/* Every entry passing filter (may be NULL) and the n criteria (c may be
 * NULL), and (alive) whose owner the kernel says is alive; returns as
 * fdn_list. */
int fdn__local_walk(fdn_entry_filter filter, void *farg, const struct fdn_criterion *c, size_t n,
		    bool alive, fdn_entry_cb cb, void *arg);
int fdn__local_watch(const void *key, size_t klen, bool present, int64_t timeout_ms);

/* ---- telemetry: the services' own events are declared in lib/telemetry.h
 * (not included here: backend.c, which telemetry.c calls, reads this file). */

/* The registry's garbage collection, run by the reaper after it has marked
 * dead processes DEAD: removes every entry whose owner is not live and
 * every stale index reference (registry_purge.c says which are stale).
 * counts[i] gets the entries removed for (dead_idx[i], dead_word[i]);
 * their change-log records carry deaths[i] (graveyard number + 1 of the
 * death, 0 none; deaths may be NULL).  Returns the number of entries removed, or an error. */
int fdn__registry_purge(fdn_segment *s, const uint32_t *dead_idx, const uint64_t *dead_word,
			const uint64_t *deaths, uint64_t *counts, size_t ndead);

/* One step of the registry's full sweep (entries of owners no longer
 * live, stale index references): buckets [*cursor, *cursor + budget).
 * 1 when the sweep is complete, 0 if more remains, or an error. */
int fdn__registry_sweep(fdn_segment *s, uint64_t *cursor, uint64_t budget);

/* The registry's main table is table 0; an entry's value is a 20-byte
 * record header followed by its encoded attributes (registry.c). */
#define FDN__REG_TABLE    0u
#define FDN__REG_REC_SIZE 20u
/* Remove every entry owned by (idx, word), a process leaving (detach). */
int fdn__registry_purge_owner(fdn_segment *s, uint32_t idx, uint64_t word);
/* This process holds no entry any more: remove the owner references of its
 * slot that its unregisters kept (lib/registry_index.c, own_ref_kept), so
 * that a process that unregistered everything leaves no reference. */
void fdn__registry_drop_kept_refs(fdn_segment *s);
/* Does the owner (idx, word) hold any entry (its owner chain not empty)?
 * 1 yes, 0 no, or an error. */
int fdn__registry_owner_has_entries(fdn_segment *s, uint32_t idx, uint64_t word);
/* Release process slot idx (claim word `word`) if it is held for another
 * pid than its claimer's and owns no entry any more: one process, one slot,
 * for as long as it owns something.  True if released. */
bool fdn__registry_release_idle(fdn_segment *s, uint32_t idx, uint64_t word);

/* The registry's audit: index <-> table agreement, no stale reference, no
 * entry of a vanished owner.  Returns violations found. */
int fdn__registry_check(fdn_segment *s, fdn_check_cb cb, void *arg);

/* Is this index reference stale? (registry_purge.c; the checker uses it too) */
bool fdn__ref_stale(fdn_segment *s, const struct fdn__ht_view *v);

/* Copy a dead process's non-empty trace slots into the graveyard (if
 * record) and free them; `word` is its claim word (trace.c). */
int fdn__trace_reap(fdn_segment *s, uint64_t word, bool record);

/* The trace slots' audit.  Returns violations found. */
int fdn__trace_check(fdn_segment *s, fdn_check_cb cb, void *arg);

/* A process to reap (reaper.c). */
struct fdn__dead {
	uint32_t idx;    /* its process slot */
	uint64_t word;   /* the slot's claim word when judged dead */
	int exit_signal; /* as the graveyard records it */
	int exit_status;
	bool record;         /* a death (true) or a detach (false) */
	uint64_t latency_ns; /* out: wake-up to entries gone (0 in: not yet) */
	bool hidden;         /* out: reclaim_begin done (fdn__reap_hide) */
	uint64_t entries;    /* out: entries removed */
	bool done;           /* out: slot fully reclaimed */
};

/* fdn_segment_create without the reaper (attach.c): foundation-reaperd
 * --create makes the segment it will reap itself. */
int fdn__segment_create_bare(const char *name, const struct fdn_segment_opts *o, fdn_segment **out);

/* Wait up to timeout_ms for the reaper launches this process has handed to
 * a thread and that have not yet spawned (reaper.c): detach and exit wait,
 * so that a short-lived program's launch is not lost. */
void fdn__reaper_launch_settle(int64_t timeout_ms);

/* A registry write is about to happen on s: look, at most once a second
 * per handle, whether the reaper still runs, and launch one if it does not
 * (reaper.c; never on a read-only handle). */
void fdn__reaper_notice(fdn_segment *s);

/* Reap a batch of dead processes (see reaper.c).  woke_ns: CLOCK_MONOTONIC
 * when the reaper learnt of them.  Returns how many are not finished
 * (retry them), or an error. */
int fdn__reap_batch(fdn_segment *s, struct fdn__dead *d, size_t n, uint64_t woke_ns);

/* Its first step alone: mark each owner dead, which hides its entries from
 * every reader and wakes watchers, and note the latency of the first pass
 * that does.  Never waits; repeating it is harmless (reaper.c). */
void fdn__reap_hide(fdn_segment *s, struct fdn__dead *d, size_t n, uint64_t woke_ns);

#endif
