/*
 * telemetry.c - events: emission, in-process handlers, the shared ring.
 *
 * Who calls whom.  The services emit through this file (lib/telemetry.h),
 * and telemetry_once.c and telemetry_batch.c emit their events through it
 * (fdn__tel_emit); telemetry_audit.c maps the ring (fdn__ring_map).  It
 * calls backend.c (fdn__backend), telemetry_names.c (the names),
 * trace_rec.c (expanding a compact span record) and telemetry_sample.c
 * (fdn__tel_ctx, fdn__sampler_decide: every emit asks its event's sampler;
 * fdn__me: this thread's pid, tid and event count), none of which calls
 * back.
 *
 * EMISSION.  fdn_emit validates, asks the event name's sampler, calls the
 * matching handlers in the calling thread, then writes the ring.  The fast
 * path (nobody listens) is one relaxed load of the handler count and, with
 * a segment, the telemetry backend's answer; nothing shared is touched, the
 * clock is not read, the sampler is not consulted.
 *
 * HANDLERS (process-local).  A fixed array of FDN_HANDLERS_MAX slots.  Each
 * slot has a state word (generation << 2 | FREE, ACTIVE, DETACHING or
 * ORPHAN) and an in-flight count.  attach and detach serialise on a mutex
 * among themselves; emitters never lock.  An attach fills a FREE slot's
 * fields, then publishes ACTIVE with a release store.  An emitter loads the
 * state (acquire), increments in-flight, loads the state again and calls the
 * handler only if it is the same ACTIVE word; it then decrements.  Detach
 * stores DETACHING, then waits for in-flight to reach 0 and frees the slot
 * (generation + 1).  The increment and the re-load (emitter) and the store
 * and the in-flight load (detacher) are all seq_cst, so either the emitter
 * sees DETACHING and does not call, or the detacher sees the increment and
 * waits for the call to end: after detach returns the handler is never
 * called again and its fields are not read.  The generation in the word
 * means an emitter that raced with a detach and a new attach of the same
 * slot compares unequal and skips.  A detach from inside any handler must
 * not wait (the call it is in may be the one it would wait for): it stores
 * ORPHAN instead, and whoever brings in-flight to 0 with ORPHAN showing
 * frees the slot (one CAS, so one freer).  Fields of a slot are written only
 * while it is FREE and in-flight holds no call of it.
 *
 * THE RING (region FDN_SVC_EVENTS, shm/layout.h).  A producer takes ticket
 * t by fetch_add on ring_head and record t % n by CAS on its seq word from
 * any value below 2t + 1 (so a record abandoned by a killed producer is
 * simply taken by the next lap), writes it, and publishes 2t + 2.  It never
 * waits for anyone.  A reader follows tickets in order: a record whose seq
 * is 2t + 2 before and after its copy, whose ticket field is t and whose
 * checksum matches is event t; a larger seq means a later lap overwrote it
 * (lost); a smaller one means it is being written: the reader waits up to
 * wait_ms, then skips it as incomplete.  A reader more than n tickets
 * behind the head jumps to head - n and counts the difference as lost.
 * Tickets are taken in program order within a thread, so a thread's events
 * are read in the order it emitted them.
 */
#include "lib/telemetry_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static_assert(FDN_EVENT_NAME_MAX == FDN_REC_NAME_MAX, "event name bound");
static_assert(FDN_MEASUREMENT_NAME_MAX == FDN_REC_MEAS_NAME_MAX, "measurement name bound");
static_assert(FDN_MEASUREMENTS_MAX == FDN_REC_MEAS_MAX, "measurements bound");
static_assert(FDN_EVENT_BODY_MAX == FDN_EVENT_BODY, "record body");

_Atomic uint32_t fdn__tel_nhandlers;

/* ---- handlers -------------------------------------------------------------------- */

enum { H_FREE = 0, H_ACTIVE = 1, H_DETACHING = 2, H_ORPHAN = 3 };
#define H_ST(w)        ((unsigned)((w)&3u))
#define H_GEN(w)       ((w) >> 2)
#define H_WORD(gen, s) (((uint64_t)(gen) << 2) | (s))

struct hslot {
	_Atomic uint64_t state;
	_Atomic uint32_t inflight;
	fdn_event_handler fn;
	void *arg;
	char id[FDN_HANDLER_ID_MAX + 1];
	char prefix[FDN_EVENT_NAME_MAX + 1];
};

static struct hslot hslots[FDN_HANDLERS_MAX];
static _Atomic uint32_t hslots_used; /* high-water mark: slots ever filled */
static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local uint32_t in_handler; /* handler calls this thread is in */

/* The slot of an attached (ACTIVE) id, under hlock; -1 if none. */
static int hslot_find(const char *id)
{
	uint32_t used = atomic_load(&hslots_used);
	for (uint32_t i = 0; i < used; i++)
		if (H_ST(atomic_load(&hslots[i].state)) == H_ACTIVE &&
		    strcmp(hslots[i].id, id) == 0)
			return (int)i;
	return -1;
}

int fdn_handler_attach(const char *id, const char *prefix, fdn_event_handler fn, void *arg)
{
	if (!id || !prefix || !fn)
		return FDN_EINVAL;
	size_t il = strlen(id), pl = strlen(prefix);
	if (il == 0 || il > FDN_HANDLER_ID_MAX || pl > FDN_EVENT_NAME_MAX)
		return FDN_EINVAL;
	int r = FDN_ENOSPACE;
	pthread_mutex_lock(&hlock);
	if (hslot_find(id) >= 0) {
		r = FDN_EEXISTS;
		goto out;
	}
	for (uint32_t i = 0; i < FDN_HANDLERS_MAX; i++) {
		struct hslot *h = &hslots[i];
		uint64_t w = atomic_load(&h->state);
		if (H_ST(w) != H_FREE)
			continue;
		h->fn = fn;
		h->arg = arg;
		memcpy(h->id, id, il + 1);
		memcpy(h->prefix, prefix, pl + 1);
		if (i >= atomic_load(&hslots_used))
			atomic_store(&hslots_used, i + 1);
		/* Release: the fields above happen-before an emitter's acquire
		 * load that sees ACTIVE. */
		atomic_store_explicit(&h->state, H_WORD(H_GEN(w), H_ACTIVE), memory_order_release);
		atomic_fetch_add(&fdn__tel_nhandlers, 1);
		r = 0;
		break;
	}
out:
	pthread_mutex_unlock(&hlock);
	return r;
}

/* Free slot h if it still holds word w (DETACHING or ORPHAN). */
static void hslot_free(struct hslot *h, uint64_t w)
{
	atomic_compare_exchange_strong(&h->state, &w, H_WORD(H_GEN(w) + 1, H_FREE));
}

int fdn_handler_detach(const char *id)
{
	if (!id)
		return FDN_EINVAL;
	pthread_mutex_lock(&hlock);
	int i = hslot_find(id);
	if (i < 0) {
		pthread_mutex_unlock(&hlock);
		return FDN_ENOTFOUND;
	}
	struct hslot *h = &hslots[i];
	uint64_t w = atomic_load(&h->state);
	bool wait = in_handler == 0;
	uint64_t nw = H_WORD(H_GEN(w), wait ? H_DETACHING : H_ORPHAN);
	atomic_store(&h->state, nw); /* seq_cst: pairs with the emitter's re-load */
	atomic_fetch_sub(&fdn__tel_nhandlers, 1);
	pthread_mutex_unlock(&hlock);
	if (!wait) {
		/* Nobody may be in it: then free it ourselves (or the last
		 * emitter out does: one CAS wins). */
		if (atomic_load(&h->inflight) == 0)
			hslot_free(h, nw);
		return 0;
	}
	for (unsigned spins = 0; atomic_load(&h->inflight) != 0; spins++) {
		if (spins < 100) {
			sched_yield();
		} else {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL);
		}
	}
	hslot_free(h, nw);
	return 0;
}

static void call_handlers(const struct fdn_event *ev)
{
	uint32_t used = atomic_load_explicit(&hslots_used, memory_order_acquire);
	for (uint32_t i = 0; i < used; i++) {
		struct hslot *h = &hslots[i];
		uint64_t w = atomic_load_explicit(&h->state, memory_order_acquire);
		if (H_ST(w) != H_ACTIVE)
			continue;
		atomic_fetch_add(&h->inflight, 1);
		if (atomic_load(&h->state) == w && fdn_event_prefix_match(h->prefix, ev->name)) {
			in_handler++;
			h->fn(ev, h->arg);
			in_handler--;
		}
		if (atomic_fetch_sub(&h->inflight, 1) == 1) {
			uint64_t now = atomic_load(&h->state);
			if (H_ST(now) == H_ORPHAN)
				hslot_free(h, now);
		}
	}
}

/* ---- the ring: writing ------------------------------------------------------------- */

int fdn__ring_map(fdn_segment *s, struct fdn_shm_event **ring, uint32_t *n)
{
	const struct fdn_shm_region *r = &s->hdr->svc[FDN_SVC_EVENTS];
	uint64_t off = r->off, size = (uint64_t)s->nevents * FDN_EVENT_SIZE;
	if (s->nevents < 2 || (s->nevents & (s->nevents - 1)) || r->size != size ||
	    off % 4096 != 0 || off > s->size || size > s->size - off)
		return FDN_EBADSEG;
	*ring = (struct fdn_shm_event *)(void *)(s->base + off);
	*n = s->nevents;
	return 0;
}

bool fdn__ring_on(fdn_segment *s)
{
	return !s->readonly && fdn__seg_usable(s) == 0 &&
	       fdn__backend(s, FDN__SVC_TELEMETRY) == FDN__SHARED;
}

/* Lay out the record's body: name, the measurements that fit, the
 * attributes that fit (a prefix of them, re-encoded).  Returns body_len. */
static size_t rec_body(struct fdn_shm_event *rec, const struct fdn_event *ev, size_t nlen,
		       const unsigned char *abuf, int alen)
{
	uint8_t *b = rec->body;
	size_t off = nlen;
	memcpy(b, ev->name, nlen);
	rec->name_len = (uint8_t)nlen;
	for (size_t i = 0; i < ev->nmeasurements; i++) {
		size_t ml = strlen(ev->measurements[i].name);
		if (off + 1 + ml + 8 > FDN_EVENT_BODY - 2) { /* keep room for 0 attributes */
			rec->flags |= FDN_EVENT_TRUNCATED;
			break;
		}
		b[off] = (uint8_t)ml;
		memcpy(b + off + 1, ev->measurements[i].name, ml);
		memcpy(b + off + 1 + ml, &ev->measurements[i].value, 8);
		off += 1 + ml + 8;
		rec->nmeas++;
	}
	size_t room = FDN_EVENT_BODY - off;
	if (alen >= 0 && (size_t)alen <= room) {
		memcpy(b + off, abuf, (size_t)alen);
		rec->attrs_len = (uint16_t)alen;
		return off + (size_t)alen;
	}
	/* Too long: the longest prefix of the attributes that fits. */
	rec->flags |= FDN_EVENT_TRUNCATED;
	for (size_t k = ev->nattrs; k-- > 0;) {
		int l = fdn_attrs_encode(ev->attrs, k, b + off, room);
		if (l >= 0) {
			rec->attrs_len = (uint16_t)l;
			return off + (size_t)l;
		}
	}
	rec->attrs_len = 0;
	return off;
}

static uint64_t rec_check(const struct fdn_shm_event *rec, uint64_t ticket)
{
	return XXH3_64bits_withSeed(&rec->real_ns, 40u + rec->body_len, ticket);
}

/* Publish rec (header from real_ns on and body filled; seq, ticket and
 * check are set here) as the next ticket. */
static int ring_put(fdn_segment *s, struct fdn_shm_event *rec)
{
	struct fdn_shm_event *ring;
	uint32_t n;
	int r = fdn__ring_map(s, &ring, &n);
	if (r)
		return r;
	struct fdn_shm_tel_hdr *th = fdn__tel_hdr(s);
	uint64_t t = atomic_fetch_add_explicit(&th->ring_head, 1, memory_order_relaxed);
	struct fdn_shm_event *e = &ring[t & (n - 1)];
	/* The next record is most likely this thread's next one: fetch its
	 * first two lines (header and a short body) for writing now, while
	 * this one is written; the ring (FDN_EVENT_SIZE bytes a record) is
	 * too large to stay in the nearest caches.  A hint only. */
	struct fdn_shm_event *next = &ring[(t + 1) & (n - 1)];
	__builtin_prefetch(next, 1, 3);
	__builtin_prefetch((char *)next + 64, 1, 3);
	uint64_t want = 2 * t + 1, old = atomic_load_explicit(&e->seq, memory_order_relaxed);
	do {
		if (old >= want) { /* a producer one lap ahead has it */
			atomic_fetch_add_explicit(&th->ring_lapped, 1, memory_order_relaxed);
			return 0;
		}
	} while (!atomic_compare_exchange_weak_explicit(&e->seq, &old, want, memory_order_relaxed,
							memory_order_relaxed));
	/* Pairs with the reader's acquire fence between its copy and its
	 * second seq load: a reader that copied any byte written below sees
	 * seq >= want there, and drops the copy. */
	atomic_thread_fence(memory_order_release);
	rec->ticket = t;
	rec->check = rec_check(rec, t);
	memcpy((unsigned char *)e + 8, (unsigned char *)rec + 8, 56u + rec->body_len);
	/* Release: the record happens-before a reader's acquire load of
	 * 2t + 2.  Fails only if a later lap took the record meanwhile: this
	 * producer was descheduled for a whole lap and its copy may have
	 * landed on the newer record, which readers then reject (ticket and
	 * checksum) and count lost, like this event; the lapped counter says
	 * so too. */
	if (!atomic_compare_exchange_strong_explicit(&e->seq, &want, want + 1, memory_order_release,
						     memory_order_relaxed))
		atomic_fetch_add_explicit(&th->ring_lapped, 1, memory_order_relaxed);
	return 0;
}

static int ring_write(fdn_segment *s, const struct fdn_event *ev, size_t nlen,
		      const unsigned char *abuf, int alen)
{
	struct fdn_shm_event rec;
	memset(&rec, 0, offsetof(struct fdn_shm_event, body));
	rec.real_ns = ev->time_ns;
	rec.mono_ns = ev->mono_ns;
	rec.pseq = ++fdn__me.pseq;
	rec.pid = (uint32_t)ev->pid;
	rec.tid = (uint32_t)ev->tid;
	rec.body_len = (uint16_t)rec_body(&rec, ev, nlen, abuf, alen);
	return ring_put(s, &rec);
}

/* ---- emission ---------------------------------------------------------------------------- */

/* The thread's cache of the services' sampler slots (index + 1; 0 =
 * unknown).  Slots are never freed, so an index stays right for the
 * life of the segment (or of the process, for the local tables). */
static _Thread_local struct {
	uint64_t seg_id;
	int32_t slot[FDN__EV_COUNT];
} cache_shared, cache_local;

static int32_t *sampler_cell(const struct fdn__tel *t, int id)
{
	if (id < 0)
		return NULL;
	if (!t->shared)
		return &cache_local.slot[id];
	if (cache_shared.seg_id != t->seg_id) {
		memset(&cache_shared, 0, sizeof(cache_shared));
		cache_shared.seg_id = t->seg_id;
	}
	return &cache_shared.slot[id];
}

/* The sampler slot this thread's cell names, or NULL if not known yet. */
static struct fdn_shm_sampler *cached_sampler(const struct fdn__tel *t, const int32_t *cell)
{
	if (!cell || *cell <= 0 || (uint32_t)*cell > FDN_TEL_SAMPLERS)
		return NULL;
	return (struct fdn_shm_sampler *)(void *)(t->region + FDN_TEL_OFF_SAMPLERS) + (*cell - 1);
}

static unsigned sampler_kind(const struct fdn_shm_sampler *sp)
{
	return FDN_SPEC_KIND(atomic_load_explicit(&sp->spec, memory_order_relaxed));
}

/* Does the cached sampler drop every event of an emitter with no handler
 * attached (fdn__kind_silent_alone)?  Such events are dropped before they
 * are counted.  A slot not known yet: false, the sampler decides. */
static bool cached_silent_alone(const struct fdn__tel *t, const int32_t *cell)
{
	struct fdn_shm_sampler *sp = cached_sampler(t, cell);
	return sp && fdn__kind_silent_alone(sampler_kind(sp));
}

/* The segment's own sampler of one of the hottest events: fdn__emit_enabled
 * (fdn__event_fast) reads it directly from now on. */
static void remember_fast(fdn_segment *s, const struct fdn__tel *t, int id,
			  struct fdn_shm_sampler *sp)
{
	int slot = fdn__fast_slot((enum fdn__ev)id);
	if (slot >= 0 && sp && t->shared && s && !s->readonly &&
	    !atomic_load_explicit(&s->fast_spec[slot], memory_order_relaxed))
		atomic_store_explicit(&s->fast_spec[slot], &sp->spec, memory_order_relaxed);
}

/* The sampler's tables for an emit: the segment's, or the process's when
 * the handle cannot write them. */
static int emit_ctx(fdn_segment *s, struct fdn__tel *t)
{
	int r = fdn__tel_ctx(s, true, t);
	return r == FDN_ERDONLY ? fdn__tel_ctx(NULL, true, t) : r;
}

/* mono: the event's monotonic time if the caller has just read it, else 0. */
static int emit_core(fdn_segment *s, const char *name, size_t nlen, int id, uint64_t mono,
		     const struct fdn_measurement *m, size_t nm, const struct fdn_attr *attrs,
		     size_t na)
{
	bool handlers = atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) != 0;
	bool ring = s && fdn__ring_on(s);
	if (!handlers && !ring) {
		/* Nobody listens: 0, unless the sampler's backend would be a
		 * forbidden local one -- then FDN_EENFORCED, as it is when a
		 * handler listens (one result whoever listens; one more load
		 * of the flags word). */
		return fdn__backend(s, FDN__SVC_SAMPLED_EVENTS) == FDN_EENFORCED ? FDN_EENFORCED
										 : 0;
	}
	int r;
	if ((r = fdn__check_measurements(m, nm)))
		return r;
	if (na && !attrs)
		return FDN_EINVAL;
	unsigned char abuf[FDN_ATTRS_MAX];
	int alen = fdn_attrs_encode(attrs, na, abuf, sizeof(abuf));
	if (alen < 0)
		return alen;
	struct fdn__tel t;
	if ((r = emit_ctx(s, &t)))
		return r;
	int d = fdn__sampler_decide(&t, name, nlen, sampler_cell(&t, id));
	if (d == FDN__SAMPLED_HANDLERS)
		ring = false;
	if (d == FDN__SAMPLED_OUT || (!handlers && !ring))
		return 0;
	fdn__me_refresh();
	if (!mono)
		mono = fdn__mono_ns();
	struct fdn_event ev = {name, m,           nm,         attrs, na, fdn__real_of(mono),
			       mono, fdn__me.pid, fdn__me.tid};
	if (handlers)
		call_handlers(&ev);
	if (ring && (r = ring_write(s, &ev, nlen, abuf, alen)))
		return r;
	return 1;
}

int fdn__emit_compact(fdn_segment *s, enum fdn__ev id, unsigned flag, const uint8_t *body,
		      size_t len, uint64_t real, uint64_t mono)
{
	size_t head = flag == FDN_EVENT_SPAN  ? FDN_SPAN_REC_HEAD
		      : flag == FDN_EVENT_REG ? FDN_REG_REC_HEAD
					      : SIZE_MAX;
	/* A handler attached in this process needs the text form: the
	 * caller builds it instead.  (A handler attached after this load
	 * misses the event, as it would any event emitted before its attach
	 * returned.) */
	if (!s || atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) != 0 ||
	    !fdn__ring_on(s) || len < head || len > FDN_EVENT_BODY)
		return FDN_EINVAL;
	struct fdn__tel t;
	int r = emit_ctx(s, &t);
	if (r)
		return r;
	int32_t *cell = sampler_cell(&t, (int)id);
	remember_fast(s, &t, (int)id, cached_sampler(&t, cell));
	if (cached_silent_alone(&t, cell))
		return 0;
	const char *name = fdn__ev_names[id];
	/* No handler here: `handlers` keeps nothing either. */
	if (fdn__sampler_decide(&t, name, strlen(name), cell) != FDN__SAMPLED_ALL)
		return 0;
	fdn__me_refresh();
	struct fdn_shm_event rec;
	memset(&rec, 0, offsetof(struct fdn_shm_event, body));
	rec.real_ns = real ? real : fdn__real_of(mono); /* 0: when mono was read */
	rec.mono_ns = mono;
	rec.pseq = ++fdn__me.pseq;
	rec.pid = (uint32_t)fdn__me.pid;
	rec.tid = (uint32_t)fdn__me.tid;
	rec.flags = (uint8_t)flag;
	rec.body_len = (uint16_t)len;
	memcpy(rec.body, body, len);
	if ((r = ring_put(s, &rec)))
		return r;
	return 1;
}

int fdn__tel_emit(fdn_segment *s, const char *name, size_t nlen, const struct fdn_measurement *m,
		  size_t nm, const struct fdn_attr *attrs, size_t na)
{
	return emit_core(s, name, nlen, -1, 0, m, nm, attrs, na);
}

int fdn_emit(fdn_segment *s, const char *name, const struct fdn_measurement *m, size_t nm,
	     const struct fdn_attr *attrs, size_t na)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	if (s && fdn__seg_usable(s))
		return FDN_EFORKED;
	return emit_core(s, name, (size_t)nlen, -1, 0, m, nm, attrs, na);
}

int fdn__emit_id(fdn_segment *s, enum fdn__ev id, const struct fdn_measurement *m, size_t nm,
		 const struct fdn_attr *attrs, size_t na)
{
	if ((unsigned)id >= FDN__EV_COUNT)
		return FDN_EINVAL;
	const char *name = fdn__ev_names[id];
	return emit_core(s, name, strlen(name), (int)id, 0, m, nm, attrs, na);
}

int fdn__emit_id_at(fdn_segment *s, enum fdn__ev id, uint64_t mono_ns,
		    const struct fdn_measurement *m, size_t nm, const struct fdn_attr *attrs,
		    size_t na)
{
	if ((unsigned)id >= FDN__EV_COUNT)
		return FDN_EINVAL;
	const char *name = fdn__ev_names[id];
	return emit_core(s, name, strlen(name), (int)id, mono_ns, m, nm, attrs, na);
}

bool fdn__emit_wanted(fdn_segment *s, enum fdn__ev id)
{
	struct fdn__tel t;
	if ((unsigned)id >= FDN__EV_COUNT || emit_ctx(s, &t))
		return true; /* let the emit itself report */
	int32_t *cell = sampler_cell(&t, (int)id);
	struct fdn_shm_sampler *sp = cached_sampler(&t, cell);
	if (!sp)
		return true;
	remember_fast(s, &t, id, sp);
	unsigned k = sampler_kind(sp);
	if (k == FDN_SAMPLE_HANDLERS)
		return atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) != 0;
	return k != FDN_SAMPLE_NEVER;
}

/* ---- the ring: reading ---------------------------------------------------------------- */

int fdn_ring_stats(fdn_segment *s, struct fdn_ring_stats *st)
{
	struct fdn_shm_event *ring;
	uint32_t n;
	if (!s || !st)
		return FDN_EINVAL;
	int r = fdn__ring_map(s, &ring, &n);
	if (r)
		return r;
	struct fdn_shm_tel_hdr *th = fdn__tel_hdr(s);
	st->capacity = n;
	st->written = atomic_load_explicit(&th->ring_head, memory_order_acquire);
	st->overwritten = st->written > n ? st->written - n : 0;
	st->lapped = atomic_load_explicit(&th->ring_lapped, memory_order_relaxed);
	return 0;
}

int fdn_ring_cursor_init(fdn_segment *s, struct fdn_ring_cursor *c, bool oldest)
{
	struct fdn_ring_stats st;
	if (!c)
		return FDN_EINVAL;
	int r = fdn_ring_stats(s, &st);
	if (r)
		return r;
	*c = (struct fdn_ring_cursor){.next = oldest ? st.overwritten : st.written, .wait_ms = 50};
	return 0;
}

/* Decode a private copy of record t into ev; false if it is not a
 * well-formed, untorn record of ticket t. */
/* The fields of ev that come from the record's header: its ticket t,
 * times, count, pid and tid. */
static void rec_stamp(const struct fdn_shm_event *rec, uint64_t t, struct fdn_ring_event *ev)
{
	ev->ticket = t;
	ev->time_ns = rec->real_ns;
	ev->mono_ns = rec->mono_ns;
	ev->seq = rec->pseq;
	ev->pid = (pid_t)rec->pid;
	ev->tid = (pid_t)rec->tid;
}

static bool rec_decode(const struct fdn_shm_event *rec, uint64_t t, struct fdn_ring_event *ev)
{
	if (rec->flags & (FDN_EVENT_SPAN | FDN_EVENT_REG)) {
		bool span = rec->flags & FDN_EVENT_SPAN;
		if (rec->ticket != t || rec->body_len > FDN_EVENT_BODY || rec->name_len != 0 ||
		    rec->nmeas != 0 || rec->attrs_len != 0 ||
		    (rec->flags & FDN_EVENT_REG && span) || rec->check != rec_check(rec, t) ||
		    !(span ? fdn__span_rec_expand : fdn__reg_rec_expand)(rec->body, rec->body_len,
									 ev))
			return false;
		rec_stamp(rec, t, ev);
		return true;
	}
	if (rec->ticket != t || rec->body_len > FDN_EVENT_BODY || rec->name_len == 0 ||
	    rec->name_len > FDN_EVENT_NAME_MAX || rec->nmeas > FDN_MEASUREMENTS_MAX ||
	    rec->check != rec_check(rec, t))
		return false;
	const uint8_t *b = rec->body;
	size_t off = rec->name_len, end = rec->body_len;
	if (off > end)
		return false;
	memcpy(ev->name, b, off);
	ev->name[off] = 0;
	for (uint32_t i = 0; i < rec->nmeas; i++) {
		size_t ml = off < end ? b[off] : 0;
		if (ml == 0 || ml > FDN_MEASUREMENT_NAME_MAX || end - off < 1 + ml + 8)
			return false;
		memcpy(ev->measurements[i].name, b + off + 1, ml);
		ev->measurements[i].name[ml] = 0;
		memcpy(&ev->measurements[i].value, b + off + 1 + ml, 8);
		off += 1 + ml + 8;
	}
	if (end - off != rec->attrs_len ||
	    (rec->attrs_len && fdn_attrs_validate(b + off, rec->attrs_len) != 0))
		return false;
	memcpy(ev->attrs, b + off, rec->attrs_len);
	ev->attrs_len = rec->attrs_len;
	ev->nmeasurements = rec->nmeas;
	rec_stamp(rec, t, ev);
	ev->truncated = (rec->flags & FDN_EVENT_TRUNCATED) != 0;
	return true;
}

/* Read record t: 1 read, 0 lost (overwritten, torn), -1 incomplete (still
 * not written after wait_ms). */
static int rec_read(const struct fdn_shm_event *e, uint64_t t, uint32_t wait_ms,
		    struct fdn_ring_event *ev)
{
	static _Thread_local struct fdn_shm_event copy;
	uint64_t deadline = 0;
	for (unsigned spins = 0;; spins++) {
		uint64_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
		if (s1 == 2 * t + 2) {
			memcpy(&copy, e, sizeof(copy));
			/* Pairs with the writer's release fence after its claim. */
			atomic_thread_fence(memory_order_acquire);
			if (atomic_load_explicit(&e->seq, memory_order_relaxed) != s1)
				return 0;
			return rec_decode(&copy, t, ev) ? 1 : 0;
		}
		if (s1 > 2 * t + 2)
			return 0;
		uint64_t now = fdn__mono_ns();
		if (deadline == 0)
			deadline = now + (uint64_t)wait_ms * 1000000u;
		else if (now >= deadline)
			return -1;
		if (spins < 50) {
			sched_yield();
		} else {
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
	}
}

int fdn_ring_next(fdn_segment *s, struct fdn_ring_cursor *c, struct fdn_ring_event *ev)
{
	struct fdn_shm_event *ring;
	uint32_t n;
	if (!s || !c || !ev)
		return FDN_EINVAL;
	int r = fdn__ring_map(s, &ring, &n);
	if (r)
		return r;
	struct fdn_shm_tel_hdr *th = fdn__tel_hdr(s);
	uint64_t head = atomic_load_explicit(&th->ring_head, memory_order_acquire);
	for (uint32_t k = 0; k <= n; k++) { /* at most one lap per call */
		if (c->next >= head)
			return 0;
		if (head - c->next > n) {
			c->lost += head - n - c->next;
			c->next = head - n;
		}
		uint64_t t = c->next++;
		int got = rec_read(&ring[t & (n - 1)], t, c->wait_ms, ev);
		if (got == 1)
			return 1;
		c->lost++;
		c->incomplete += got < 0;
		head = atomic_load_explicit(&th->ring_head, memory_order_acquire);
	}
	return 0;
}
