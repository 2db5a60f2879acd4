/*
 * lib/internal.h - what the services in lib/ share with each other and with
 * the tools (prefix fdn__; not exported).
 */
#ifndef FDN_LIB_INTERNAL_H
#define FDN_LIB_INTERNAL_H

#include "shm/shm.h"

#include <foundation/attrs.h>
#include <foundation/registry.h>
#include <foundation/telemetry.h>

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

/* ---- telemetry (telemetry.c) ----------------------------------------------
 * The services' own events, by id: their names are fixed, so the emit path
 * skips name validation and caches each one's sampler slot per thread. */
enum fdn__ev {
	FDN__EV_REG_REGISTER,    /* foundation.registry.register   */
	FDN__EV_REG_LOOKUP,      /* foundation.registry.lookup     */
	FDN__EV_REG_UNREGISTER,  /* foundation.registry.unregister */
	FDN__EV_REG_UPDATE,      /* foundation.registry.update     */
	FDN__EV_REG_MERGE,       /* foundation.registry.merge      */
	FDN__EV_PROCESS_DOWN,    /* foundation.process.down        */
	FDN__EV_SPAN_START,      /* foundation.span.start          */
	FDN__EV_SPAN_STOP,       /* foundation.span.stop           */
	FDN__EV_SPAN_ATTRIBUTES, /* foundation.span.attributes    */
	FDN__EV_SPAN_EVENT,      /* foundation.span.event          */
	FDN__EV_SPAN_LINK,       /* foundation.span.link           */
	FDN__EV_FLAG_CHANGED,    /* foundation.flag.changed        */
	FDN__EV_STAGE_CHANGED,   /* foundation.stage.changed       */
	FDN__EV_COUNT
};
extern const char *const fdn__ev_names[FDN__EV_COUNT];

/* Handlers attached in this process (the fast path's first load). */
extern _Atomic uint32_t fdn__tel_nhandlers;

/* Does the ring of s take events now?  (Shared telemetry backend on a
 * writable handle.) */
bool fdn__ring_on(fdn_segment *s);
/* The slow half of fdn__emit_enabled: false if the event's sampler is
 * `never` (known from this thread's cache), else true. */
bool fdn__emit_wanted(fdn_segment *s, enum fdn__ev id);

/* Would an event of this id go anywhere?  A relaxed load when no handler
 * is attached and telemetry is not shared; use it before measuring
 * anything for an event. */
static inline bool fdn__emit_enabled(fdn_segment *s, enum fdn__ev id)
{
	if (atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) == 0 &&
	    (s == NULL || !fdn__ring_on(s)))
		return false;
	return fdn__emit_wanted(s, id);
}

/* fdn_emit for a service's own event (its name is known valid). */
int fdn__emit_id(fdn_segment *s, enum fdn__ev id, const struct fdn_measurement *m, size_t nm,
		 const struct fdn_attr *attrs, size_t na);

/* CLOCK_MONOTONIC in ns. */
uint64_t fdn__mono_ns(void);

/* The telemetry audit: ring records, and the region's tables (tags unique
 * and reachable by probing, specs and counters well-formed).  Returns
 * violations found. */
int fdn__telemetry_check(fdn_segment *s, fdn_check_cb cb, void *arg);

/* Is process slot idx still the process whose claim word was `word`? */
bool fdn__word_live(const fdn_segment *s, uint32_t idx, uint64_t word);

/* The registry's garbage collection, run by the reaper after it has marked
 * dead processes DEAD: removes every entry whose owner is not live and
 * every stale index reference (registry.c says which are stale).
 * counts[i] gets the entries removed for (dead_idx[i], dead_word[i]).
 * Returns the number of entries removed, or an error. */
int fdn__registry_purge(fdn_segment *s, const uint32_t *dead_idx, const uint64_t *dead_word,
			uint64_t *counts, size_t ndead);

/* One step of the registry's full sweep (entries of owners no longer
 * live, stale index references): buckets [*cursor, *cursor + budget).
 * 1 when the sweep is complete, 0 if more remains, or an error. */
int fdn__registry_sweep(fdn_segment *s, uint64_t *cursor, uint64_t budget);

/* Remove every entry owned by (idx, word), a process leaving (detach). */
int fdn__registry_purge_owner(fdn_segment *s, uint32_t idx, uint64_t word);

/* The registry's audit: index <-> table agreement, no stale reference, no
 * entry of a vanished owner.  Returns violations found. */
int fdn__registry_check(fdn_segment *s, fdn_check_cb cb, void *arg);

/* Is this index reference stale? (registry.c; the checker uses it too) */
bool fdn__ref_stale(fdn_segment *s, const struct fdn__ht_view *v);

/* A process to reap (reaper.c). */
struct fdn__dead {
	uint32_t idx;    /* its process slot */
	uint64_t word;   /* the slot's claim word when judged dead */
	int exit_signal; /* as the graveyard records it */
	int exit_status;
	bool record;         /* a death (true) or a detach (false) */
	uint64_t latency_ns; /* out: wake-up to entries gone */
	uint64_t entries;    /* out: entries removed */
	bool done;           /* out: slot fully reclaimed */
};

/* Reap a batch of dead processes (see reaper.c).  woke_ns: CLOCK_MONOTONIC
 * when the reaper learnt of them.  Returns how many are not finished
 * (retry them), or an error. */
int fdn__reap_batch(fdn_segment *s, struct fdn__dead *d, size_t n, uint64_t woke_ns);

#endif
