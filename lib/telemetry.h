/*
 * lib/telemetry.h - the services' own telemetry events (telemetry.c): their
 * ids and names, the fast check before measuring anything, the emit calls,
 * and the telemetry part of a new segment and of the audit.  Included by
 * the services that emit (registry.c, trace.c, flags.c, reaper.c, ...);
 * lib/internal.h does not include it.
 */
#ifndef FDN_LIB_TELEMETRY_H
#define FDN_LIB_TELEMETRY_H

#include "lib/internal.h"

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
	FDN__EV_STAGE_ALERT,     /* foundation.stage.alert         */
	FDN__EV_REAPER_MISSING,  /* foundation.reaper.missing      */
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

/* Does a sampler of kind k (FDN_SPEC_KIND) drop every event of an emitter
 * with no handler attached?  `never`, and `handlers` (no ring record). */
static inline bool fdn__kind_silent_alone(unsigned k)
{
	return k == FDN_SAMPLE_NEVER || k == FDN_SAMPLE_HANDLERS;
}

/* The slot of s->fast_spec (< FDN_FAST_EVENTS) that caches the sampler of
 * event id, or -1. */
static inline int fdn__fast_slot(enum fdn__ev id)
{
	return id == FDN__EV_REG_LOOKUP   ? 0
	       : id == FDN__EV_SPAN_START ? 1
	       : id == FDN__EV_SPAN_STOP  ? 2
					  : -1;
}

/* The built-in flags the fast answer needs on (value 100): telemetry and
 * sampled events shared.  One masked compare of the word. */
#define FDN__BUILTIN_ON(i) ((uint64_t)FDN_FLAG_PCT_MAX << (FDN_BUILTIN_BITS * (i)))
#define FDN__TEL_FAST_MASK                                \
	(FDN_BUILTIN_FIELD(FDN__FLAG_USE_SHM_TELEMETRY) | \
	 FDN_BUILTIN_FIELD(FDN__FLAG_USE_SHM_SAMPLED_EVENTS))
#define FDN__TEL_FAST_ON                                \
	(FDN__BUILTIN_ON(FDN__FLAG_USE_SHM_TELEMETRY) | \
	 FDN__BUILTIN_ON(FDN__FLAG_USE_SHM_SAMPLED_EVENTS))

/* fdn__event_fast once the caller has found (w & FDN__TEL_FAST_MASK) ==
 * FDN__TEL_FAST_ON. */
static inline int fdn__event_fast_on(fdn_segment *s, enum fdn__ev id)
{
	int slot = fdn__fast_slot(id);
	if (slot < 0)
		return -1;
	_Atomic uint64_t *spec = atomic_load_explicit(&s->fast_spec[slot], memory_order_relaxed);
	if (!spec || s->readonly || fdn__seg_usable(s) != 0)
		return -1;
	/* Called with no handler attached. */
	return !fdn__kind_silent_alone(
	    FDN_SPEC_KIND(atomic_load_explicit(spec, memory_order_relaxed)));
}

/* fdn__emit_enabled's answer for a registry lookup, a span start or a span
 * stop with no handler attached, from the built-in word w, on a writable
 * handle whose ring and sampler are the segment's: the sampler's spec,
 * read where an emit found it -- a handful of loads instead of the
 * context checks of the general path (a warm fdn_whereis hit on 10 000
 * entries went from 33 to 26 ns; a span push+pop whose events go nowhere
 * builds no ring record either).  1: wanted, 0: not, -1: not known here
 * (the general path decides). */
static inline int fdn__event_fast(fdn_segment *s, enum fdn__ev id, uint64_t w)
{
	if ((w & FDN__TEL_FAST_MASK) != FDN__TEL_FAST_ON)
		return -1;
	return fdn__event_fast_on(s, id);
}

/* Would an event of this id go anywhere?  A relaxed load when no handler
 * is attached and telemetry is not shared; use it before measuring
 * anything for an event. */
static inline bool fdn__emit_enabled(fdn_segment *s, enum fdn__ev id)
{
	bool handlers = atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) != 0;
	if (!handlers && s) {
		int f = fdn__event_fast(s, id, fdn__flags_word(s));
		if (f >= 0)
			return f;
	}
	if (!handlers && (s == NULL || !fdn__ring_on(s)))
		return false;
	return fdn__emit_wanted(s, id);
}

/* An event in compact form (shm/layout_svc.h): a span's start or stop
 * (flag FDN_EVENT_SPAN) or a registry call's (FDN_EVENT_REG), body (len
 * bytes) at the given times (real_ns 0: read now), to the ring only.
 * Asks the event's sampler like any emit.  1 written, 0 sampled out, or an
 * error -- FDN_EINVAL also when a handler is attached in this process or
 * the ring is not on: the caller then emits the text form. */
int fdn__emit_compact(fdn_segment *s, enum fdn__ev id, unsigned flag, const uint8_t *body,
		      size_t len, uint64_t real_ns, uint64_t mono_ns);
/* Expand a compact span body into ev's name, measurements and attributes
 * (trace_rec.c, the owner of the format).  false if malformed. */
bool fdn__span_rec_expand(const uint8_t *body, size_t len, struct fdn_ring_event *ev);
/* The same for a registry call's body (registry.c, the owner). */
bool fdn__reg_rec_expand(const uint8_t *body, size_t len, struct fdn_ring_event *ev);

/* fdn_emit for a service's own event (its name is known valid). */
int fdn__emit_id(fdn_segment *s, enum fdn__ev id, const struct fdn_measurement *m, size_t nm,
		 const struct fdn_attr *attrs, size_t na);
/* The same, stamped with a monotonic time the caller has just read (an
 * operation's end, whose duration it reports): one clock read fewer. */
int fdn__emit_id_at(fdn_segment *s, enum fdn__ev id, uint64_t mono_ns,
		    const struct fdn_measurement *m, size_t nm, const struct fdn_attr *attrs,
		    size_t na);

/* The telemetry defaults of a new segment (before it is published):
 * foundation.registry.lookup sampled `never`, foundation.span.start and
 * .stop `handlers`. */
int fdn__telemetry_init(fdn_segment *s);

/* The telemetry audit: ring records, and the region's tables (tags unique
 * and reachable by probing, specs and counters well-formed).  Returns
 * violations found. */
int fdn__telemetry_check(fdn_segment *s, fdn_check_cb cb, void *arg);

#endif
