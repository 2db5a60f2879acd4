/*
 * trace.c - span stacks (foundation/spans.h) and their propagation
 * (traceparent), and what the trace files share: this thread's trace
 * struct (fdn__tr_slot_for), ids, attribute fields (trace_int.h); hex
 * and the compact span record are trace_rec.c's.
 * The error context: trace_context.c; other threads' and dead threads'
 * slots (inspection, the graveyard, the audit): trace_graveyard.c.  Both
 * call this file; it calls neither.
 *
 * One representation for everything: struct fdn_shm_trace (layout.h).  The
 * shared backend is the thread's trace slot in the segment; the local
 * backend is a private struct of the same form, allocated per thread.  The
 * same code runs on both; the flags choose per call (fdn__backend), spans
 * by use_shm_spans and contexts by use_shm_error_context, so a thread may
 * keep its spans in one and its context in the other.
 *
 * Concurrency.  A slot is written by its owning thread only, each change
 * between fdn__trace_write_begin and _end (the slot's seqlock, rcu.c).  The
 * owner reads its own slot directly; anybody else copies it
 * (trace_graveyard.c, which says how).
 */
#include "lib/trace_int.h"

#include <foundation/context.h>
#include <foundation/spans.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static_assert(FDN_SPAN_MAX_DEPTH == FDN_SPAN_DEPTH_MAX, "depth");
static_assert(FDN_SPAN_NAME_MAXLEN == FDN_SPAN_NAME_MAX, "span name");
static_assert(FDN_SPAN_ATTRS_MAXLEN == FDN_SPAN_ATTRS_MAX, "span attributes");
static_assert((int)FDN_STATUS_OK == (int)FDN_SPAN_OK &&
		  (int)FDN_STATUS_ERROR == (int)FDN_SPAN_ERROR &&
		  (int)FDN_STATUS_ABORTED == (int)FDN_SPAN_ABORTED &&
		  (int)FDN_STATUS_OPEN == (int)FDN_SPAN_OPEN,
	      "status values");

/* ---- per-thread state ------------------------------------------------------ */

struct trace_tls {
	struct fdn_shm_trace *local; /* the local backend, or NULL */
	unsigned fork_gen;           /* fdn__fork_gen when rng was seeded */
	bool seeded;
	uint64_t rng;
	/* The span ended last, per backend (FDN__LOCAL, FDN__SHARED); its
	 * trace id is kept raw in last_tid and put in hex only when asked for
	 * (fdn_span_last_ended): every pop writes it, few read it. */
	bool has_last[2];
	struct fdn_span_info last[2];
	uint8_t last_tid[2][16];
	/* A remote parent for the next root span (fdn_trace_continue). */
	bool pending;
	uint8_t ptrace[16];
	uint64_t pparent;
};

static _Thread_local struct trace_tls tls;
static pthread_key_t local_key;
static pthread_once_t local_once = PTHREAD_ONCE_INIT;
/* TRACEPARENT from the environment is looked at by the first root span of
 * the process (any thread), and used by it if well formed. */
static atomic_bool env_used;

static void local_free(void *p)
{
	free(p);
}

static void local_key_make(void)
{
	pthread_key_create(&local_key, local_free);
}

/* Random 64-bit values for ids: xorshift64* seeded from getrandom, reseeded
 * in a fork child (which would otherwise repeat its parent's ids). */
uint64_t fdn__tr_rnd64(void)
{
	if (!tls.seeded || tls.fork_gen != fdn__fork_gen) {
		uint64_t x = 0;
		if (getrandom(&x, sizeof(x), 0) != sizeof(x))
			x = fdn__mono_ns() ^ ((uint64_t)gettid() << 32);
		tls.rng = x ? x : 0x9E3779B97F4A7C15ull;
		tls.fork_gen = fdn__fork_gen;
		tls.seeded = true;
	}
	tls.rng ^= tls.rng >> 12;
	tls.rng ^= tls.rng << 25;
	tls.rng ^= tls.rng >> 27;
	return tls.rng * 2685821657736338717ull;
}

static uint64_t rnd_nonzero(void)
{
	uint64_t v;
	do
		v = fdn__tr_rnd64();
	while (v == 0);
	return v;
}

/* Lowercase hex only; returns false on anything else. */
bool fdn__tr_unhex(const char *in, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < 2 * n; i++) {
		char c = in[i];
		int v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else
			return false;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return true;
}

bool fdn__tr_all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* This thread's trace struct on the backend the flags choose for svc. */
int fdn__tr_slot_for(fdn_segment *s, enum fdn__svc svc, struct fdn_shm_trace **out, int *backend)
{
	int b = fdn__backend(s, svc);
	if (b < 0)
		return b;
	if (backend)
		*backend = b;
	if (b == FDN__SHARED) {
		struct fdn__thread *t;
		int r = fdn__thread_get(s, &t);
		if (r == 0)
			r = fdn__thread_trace(s, t, out);
		/* Only this thread writes its slot: an odd sequence here means
		 * a signal handler interrupted our own write of it. */
		if (r == 0 && (atomic_load_explicit(&(*out)->seq, memory_order_relaxed) & 1))
			r = FDN_EREENTERED;
		return r;
	}
	if (!tls.local) {
		pthread_once(&local_once, local_key_make);
		tls.local = calloc(1, sizeof(*tls.local));
		if (!tls.local)
			return -ENOMEM;
		pthread_setspecific(local_key, tls.local);
		tls.local->tid = (uint32_t)gettid();
		tls.local->pid = (uint32_t)getpid();
	}
	*out = tls.local;
	return (atomic_load_explicit(&tls.local->seq, memory_order_relaxed) & 1) ? FDN_EREENTERED
										 : 0;
}

/* Encode attributes for a field of `max` bytes: length, or FDN_ETOOBIG /
 * FDN_EINVMETA / FDN_EINVAL. */
int fdn__tr_encode_bounded(const struct fdn_attr *a, size_t n, uint8_t buf[FDN_ATTRS_MAX],
			   size_t max)
{
	if (n == 0)
		return 0;
	if (!a)
		return FDN_EINVAL;
	int len = fdn_attrs_encode(a, n, buf, FDN_ATTRS_MAX);
	if (len < 0)
		return len;
	return (size_t)len > max ? FDN_ETOOBIG : len;
}

/* Stored attribute fields are empty (length 0) or a valid encoding. */
bool fdn__tr_attrs_ok(const void *p, size_t len)
{
	return len == 0 || fdn_attrs_validate(p, len) == 0;
}

/* Merge upd into base (either may be empty) into out: length or error. */
int fdn__tr_merge(const uint8_t *base, size_t blen, const uint8_t *upd, size_t ulen,
		  uint8_t out[FDN_ATTRS_MAX])
{
	static const uint8_t empty[2] = {0, 0}; /* no attributes */
	if (ulen == 0) {
		memcpy(out, base, blen);
		return (int)blen;
	}
	if (blen == 0) {
		base = empty;
		blen = sizeof(empty);
	}
	return fdn_attrs_merge(base, blen, upd, ulen, out, FDN_ATTRS_MAX);
}

int fdn__tr_check_name(const char *name, size_t max)
{
	if (!name)
		return FDN_EINVAL;
	size_t n = strnlen(name, max + 1);
	return n == 0 ? FDN_EINVAL : n > max ? FDN_ETOOBIG : (int)n;
}

/* ---- telemetry ------------------------------------------------------------ */

#define SPAN_EV_USER_MAX 64 /* caller attributes carried by one event */

/* The one place spans emit their telemetry events: foundation.span.start,
 * .stop, .attributes, .event and .link, each with the attributes span,
 * trace_id, span_id, parent_id (16 hex), backend ("shared" or "local"), the
 * event's own (status; event; link.trace_id, link.span_id) and the
 * caller's (at most SPAN_EV_USER_MAX; dropped if a name collides with
 * ours), and the measurements depth and, for stop, duration_ns.  Nothing
 * is built unless somebody listens (fdn__emit_enabled). */
static void span_emit(fdn_segment *s, int backend, enum fdn__ev id, const struct fdn_shm_span *sp,
		      uint32_t depth, const struct span_ev *e)
{
	/* A start or stop without a message or the caller's attributes goes
	 * to the ring in compact form (no text built; readers expand it)
	 * unless a handler in this process needs the text form
	 * (fdn__emit_compact refuses then, and the text path below decides).
	 * fdn__emit_compact asks the sampler itself: the record is built
	 * before anyone is asked whether it is wanted (a few stores; a
	 * sampler that says `never` costs what fdn__emit_enabled does). */
	/* Sampled out, or `handlers` with none attached: nothing is built
	 * (the segment's sampler read through the handle, fdn__event_fast). */
	if (s && atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) == 0 &&
	    fdn__event_fast(s, id, fdn__flags_word(s)) == 0)
		return;
	if ((id == FDN__EV_SPAN_START || id == FDN__EV_SPAN_STOP) && !e->message && !e->nuser &&
	    s) {
		uint8_t rec[FDN_SPAN_REC_HEAD + FDN_SPAN_NAME_MAX];
		size_t len = fdn__span_rec(rec, backend, id, sp, depth, e);
		uint64_t mono = sp->start_ns + e->duration_ns,
			 real = sp->start_real + e->duration_ns;
		if (len && fdn__emit_compact(s, id, FDN_EVENT_SPAN, rec, len, real, mono) >= 0)
			return;
	}
	if (!fdn__emit_enabled(s, id))
		return;
	char name[FDN_SPAN_NAME_MAX + 1], tid[33], sid[17], par[17], lsid[17];
	size_t nl = sp->name_len <= FDN_SPAN_NAME_MAX ? sp->name_len : FDN_SPAN_NAME_MAX;
	memcpy(name, sp->name, nl);
	name[nl] = 0;
	fdn__tr_hex(tid, sp->trace_id, 16);
	fdn__tr_hex64(sid, sp->span_id);
	fdn__tr_hex64(par, sp->parent_id);
	fdn__tr_hex64(lsid, e->link_span);
	struct fdn_attr a[10 + SPAN_EV_USER_MAX];
	size_t na = 0;
	a[na++] = fdn__tr_str_attr("span", name);
	a[na++] = fdn__tr_str_attr("trace_id", tid);
	a[na++] = fdn__tr_str_attr("span_id", sid);
	a[na++] = fdn__tr_str_attr("parent_id", par);
	a[na++] = fdn__tr_str_attr("backend", backend == FDN__SHARED ? "shared" : "local");
	if (e->status)
		a[na++] = fdn__tr_str_attr("status", e->status);
	if (e->message)
		a[na++] = fdn__tr_str_attr("status_message", e->message);
	if (e->event)
		a[na++] = fdn__tr_str_attr("event", e->event);
	if (e->link_trace) {
		a[na++] = fdn__tr_str_attr("link.trace_id", e->link_trace);
		a[na++] = fdn__tr_str_attr("link.span_id", lsid);
	}
	size_t own = na;
	for (size_t i = 0; i < e->nuser && i < SPAN_EV_USER_MAX; i++)
		a[na++] = e->user[i];
	struct fdn_measurement m[2] = {{"depth", depth}, {"duration_ns", (double)e->duration_ns}};
	size_t nm = id == FDN__EV_SPAN_STOP ? 2 : 1;
	if (fdn__emit_id(s, id, m, nm, a, na) == FDN_EINVMETA && na > own)
		fdn__emit_id(s, id, m, nm, a, own);
}

/* ---- spans ----------------------------------------------------------------- */

/* This thread's span stack on the backend the flags choose for spans, with
 * an open span: 0, FDN_ENOSPAN (none open), or fdn__tr_slot_for's error. */
static int top_span(fdn_segment *s, struct fdn_shm_trace **tr, int *backend)
{
	int r = fdn__tr_slot_for(s, FDN__SVC_SPANS, tr, backend);
	if (r)
		return r;
	return (*tr)->depth == 0 ? FDN_ENOSPAN : 0;
}

/* The n attributes encoded into enc (checked first), then top_span: the
 * encoded length, or an error of either. */
static int top_span_attrs(fdn_segment *s, const struct fdn_attr *attrs, size_t n,
			  uint8_t enc[FDN_ATTRS_MAX], struct fdn_shm_trace **tr, int *backend)
{
	int len = fdn__tr_encode_bounded(attrs, n, enc, FDN_ATTRS_MAX);
	if (len < 0)
		return len;
	int r = top_span(s, tr, backend);
	return r ? r : len;
}

/* fdn__tr_span_info without the trace id. */
static void span_info_fields(const struct fdn_shm_span *sp, uint32_t depth, uint64_t now,
			     struct fdn_span_info *o)
{
	o->span_id = sp->span_id;
	o->parent_id = sp->parent_id;
	o->start_ns = sp->start_ns;
	o->duration_ns = now > sp->start_ns ? now - sp->start_ns : 0;
	o->status = (int)sp->status;
	o->depth = depth;
	o->nevents = sp->nevents;
	o->nlinks = sp->nlinks;
	size_t nl = sp->name_len <= FDN_SPAN_NAME_MAX ? sp->name_len : FDN_SPAN_NAME_MAX;
	memcpy(o->name, sp->name, nl);
	o->name[nl] = 0;
	o->attrs_len = sp->attrs_len <= FDN_SPAN_ATTRS_MAX ? sp->attrs_len : 0;
	memcpy(o->attrs, sp->attrs, o->attrs_len);
}

void fdn__tr_span_info(const struct fdn_shm_span *sp, uint32_t depth, uint64_t now,
		       struct fdn_span_info *o)
{
	fdn__tr_hex(o->trace_id, sp->trace_id, 16);
	span_info_fields(sp, depth, now, o);
}

int fdn_span_start(fdn_segment *s, const char *name, const struct fdn_attr *attrs, size_t n,
		   uint64_t *span_id)
{
	int nl = fdn__tr_check_name(name, FDN_SPAN_NAME_MAX);
	if (nl < 0)
		return nl == FDN_ETOOBIG ? FDN_EINVAL : nl;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = fdn__tr_encode_bounded(attrs, n, enc, FDN_SPAN_ATTRS_MAX);
	if (al < 0)
		return al;
	struct fdn_shm_trace *tr;
	int b;
	int r = fdn__tr_slot_for(s, FDN__SVC_SPANS, &tr, &b);
	if (r)
		return r;
	uint32_t d = tr->depth;
	if (d >= FDN_SPAN_DEPTH_MAX)
		return FDN_ESTACKOVF;
	struct fdn_shm_span *sp = &tr->spans[d];
	uint8_t tid[16];
	uint64_t parent = 0;
	if (d > 0) {
		memcpy(tid, tr->spans[d - 1].trace_id, 16);
		parent = tr->spans[d - 1].span_id;
	} else if (tls.pending) {
		memcpy(tid, tls.ptrace, 16);
		parent = tls.pparent;
		tls.pending = false;
	} else {
		char tp_trace[FDN_TRACE_ID_HEX + 1];
		bool from_env = false;
		/* The process's first root span looks at the environment, once:
		 * no later root span pays for a getenv. */
		if (!atomic_load_explicit(&env_used, memory_order_relaxed) &&
		    !atomic_exchange(&env_used, true)) {
			const char *env = getenv("TRACEPARENT");
			from_env = env && fdn_traceparent_parse(env, tp_trace, &parent, NULL) == 0;
			if (from_env)
				fdn__tr_unhex(tp_trace, tid, 16);
		}
		if (!from_env) {
			parent = 0;
			do {
				uint64_t a = fdn__tr_rnd64(), c = fdn__tr_rnd64();
				memcpy(tid, &a, 8);
				memcpy(tid + 8, &c, 8);
			} while (fdn__tr_all_zero(tid, 16));
		}
	}
	uint64_t id = rnd_nonzero();
	fdn__trace_write_begin(tr);
	memcpy(sp->trace_id, tid, 16);
	sp->span_id = id;
	sp->parent_id = parent;
	sp->start_ns = fdn__mono_ns();
	sp->start_real = fdn__real_of(sp->start_ns);
	sp->status = FDN_SPAN_OPEN;
	sp->name_len = (uint16_t)nl;
	memcpy(sp->name, name, (size_t)nl);
	sp->name[nl] = 0;
	sp->attrs_len = (uint16_t)al;
	memcpy(sp->attrs, enc, (size_t)al);
	sp->nevents = sp->nlinks = 0;
	tr->depth = d + 1;
	fdn__trace_write_end(tr);
	if (span_id)
		*span_id = id;
	span_emit(s, b, FDN__EV_SPAN_START, sp, d, &(struct span_ev){.user = attrs, .nuser = n});
	return 0;
}

static bool status_ok(int st)
{
	return st == FDN_SPAN_OK || st == FDN_SPAN_ERROR || st == FDN_SPAN_ABORTED;
}

/* Pop the top span of tr with status st (depth > 0); its stop event
 * carries message and the n attributes (may be 0). */
static void span_pop(fdn_segment *s, int b, struct fdn_shm_trace *tr, int st, const char *message,
		     const struct fdn_attr *attrs, size_t n)
{
	uint32_t d = tr->depth;
	struct fdn_shm_span *sp = &tr->spans[d - 1];
	uint64_t now = fdn__mono_ns();
	struct fdn_span_info *last = &tls.last[b];
	span_info_fields(sp, d - 1, now, last);
	memcpy(tls.last_tid[b], sp->trace_id, 16);
	last->status = st;
	tls.has_last[b] = true;
	fdn__trace_write_begin(tr);
	sp->status = (uint32_t)st;
	tr->depth = d - 1;
	fdn__trace_write_end(tr);
	static const char *const names[] = {"open", "ok", "error", "aborted"};
	span_emit(s, b, FDN__EV_SPAN_STOP, sp, d - 1,
		  &(struct span_ev){.status = names[st],
				    .duration_ns = last->duration_ns,
				    .message = message,
				    .user = attrs,
				    .nuser = n});
}

int fdn_span_end_status(fdn_segment *s, int status, const char *message,
			const struct fdn_attr *attrs, size_t n)
{
	if (!status_ok(status))
		return FDN_EINVAL;
	if (message && strnlen(message, FDN_SPAN_MESSAGE_MAX + 1) > FDN_SPAN_MESSAGE_MAX)
		return FDN_ETOOBIG;
	if (n > SPAN_EV_USER_MAX)
		return FDN_ETOOBIG;
	uint8_t enc[FDN_ATTRS_MAX];
	struct fdn_shm_trace *tr;
	int b;
	int al = top_span_attrs(s, attrs, n, enc, &tr, &b);
	if (al < 0)
		return al;
	span_pop(s, b, tr, status, message, attrs, n);
	return 0;
}

int fdn_span_end(fdn_segment *s, int status)
{
	return fdn_span_end_status(s, status, NULL, NULL, 0);
}

int fdn_span_end_id(fdn_segment *s, uint64_t id, int status)
{
	if (!status_ok(status))
		return FDN_EINVAL;
	struct fdn_shm_trace *tr;
	int b;
	int r = top_span(s, &tr, &b);
	if (r)
		return r;
	uint32_t d = tr->depth;
	if (tr->spans[d - 1].span_id != id) {
		for (uint32_t k = 0; k + 1 < d; k++)
			if (tr->spans[k].span_id == id)
				return FDN_ENOTTOP;
		return FDN_ENOSPAN; /* not open: as with an empty stack */
	}
	span_pop(s, b, tr, status, NULL, NULL, 0);
	return 0;
}

int fdn_span_current(fdn_segment *s, struct fdn_span_info *out)
{
	struct fdn_shm_trace *tr;
	int r = top_span(s, &tr, NULL);
	if (r)
		return r;
	if (out)
		fdn__tr_span_info(&tr->spans[tr->depth - 1], tr->depth - 1, fdn__mono_ns(), out);
	return 0;
}

int fdn_span_last_ended(fdn_segment *s, struct fdn_span_info *out)
{
	int b = fdn__backend(s, FDN__SVC_SPANS);
	if (b < 0)
		return b;
	if (!tls.has_last[b])
		return FDN_ENOSPAN;
	if (out) {
		*out = tls.last[b];
		fdn__tr_hex(out->trace_id, tls.last_tid[b], 16);
	}
	return 0;
}

int fdn_span_trace_id(fdn_segment *s, char out[FDN_TRACE_ID_HEX + 1])
{
	struct fdn_shm_trace *tr;
	int r = top_span(s, &tr, NULL);
	if (r)
		return r;
	fdn__tr_hex(out, tr->spans[tr->depth - 1].trace_id, 16);
	return 0;
}

int fdn_span_depth(fdn_segment *s)
{
	struct fdn_shm_trace *tr;
	int r = fdn__tr_slot_for(s, FDN__SVC_SPANS, &tr, NULL);
	return r ? r : (int)tr->depth;
}

int fdn_span_add_attributes(fdn_segment *s, const struct fdn_attr *attrs, size_t n)
{
	uint8_t upd[FDN_ATTRS_MAX], out[FDN_ATTRS_MAX];
	struct fdn_shm_trace *tr;
	int b;
	int ul = top_span_attrs(s, attrs, n, upd, &tr, &b);
	if (ul < 0)
		return ul;
	struct fdn_shm_span *sp = &tr->spans[tr->depth - 1];
	int len = fdn__tr_merge(sp->attrs, sp->attrs_len, upd, (size_t)ul, out);
	if (len < 0)
		return len == FDN_EINVMETA && ul > 0 ? FDN_ETOOBIG : len;
	if ((size_t)len > FDN_SPAN_ATTRS_MAX)
		return FDN_ETOOBIG;
	fdn__trace_write_begin(tr);
	memcpy(sp->attrs, out, (size_t)len);
	sp->attrs_len = (uint16_t)len;
	fdn__trace_write_end(tr);
	span_emit(s, b, FDN__EV_SPAN_ATTRIBUTES, sp, tr->depth - 1,
		  &(struct span_ev){.user = attrs, .nuser = n});
	return 0;
}

/* Count an event or a link on the top span and emit it. */
static int span_note(fdn_segment *s, const struct span_ev *e)
{
	struct fdn_shm_trace *tr;
	int b;
	int r = top_span(s, &tr, &b);
	if (r)
		return r;
	struct fdn_shm_span *sp = &tr->spans[tr->depth - 1];
	fdn__trace_write_begin(tr);
	if (e->link_trace)
		sp->nlinks++;
	else
		sp->nevents++;
	fdn__trace_write_end(tr);
	span_emit(s, b, e->link_trace ? FDN__EV_SPAN_LINK : FDN__EV_SPAN_EVENT, sp, tr->depth - 1,
		  e);
	return 0;
}

int fdn_span_record_event(fdn_segment *s, const char *name, const struct fdn_attr *attrs, size_t n)
{
	int nl = fdn__tr_check_name(name, FDN_SPAN_NAME_MAX);
	if (nl < 0)
		return nl == FDN_ETOOBIG ? FDN_EINVAL : nl;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = fdn__tr_encode_bounded(attrs, n, enc, FDN_ATTRS_MAX);
	return al < 0 ? al
		      : span_note(s, &(struct span_ev){.event = name, .user = attrs, .nuser = n});
}

int fdn_span_link(fdn_segment *s, const char *trace_id, uint64_t span_id,
		  const struct fdn_attr *attrs, size_t n)
{
	uint8_t t[16];
	if (!trace_id || strnlen(trace_id, 33) != 32 || !fdn__tr_unhex(trace_id, t, 16) ||
	    fdn__tr_all_zero(t, 16))
		return FDN_ETRACEPARENT;
	if (span_id == 0)
		return FDN_EINVAL;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = fdn__tr_encode_bounded(attrs, n, enc, FDN_ATTRS_MAX);
	return al < 0 ? al
		      : span_note(s, &(struct span_ev){.link_trace = trace_id,
						       .link_span = span_id,
						       .user = attrs,
						       .nuser = n});
}

int fdn_with_span(fdn_segment *s, const char *name, const struct fdn_attr *attrs, size_t n,
		  int (*fn)(void *arg), void *arg)
{
	if (!fn)
		return FDN_EINVAL;
	uint64_t id;
	int r = fdn_span_start(s, name, attrs, n, &id);
	if (r)
		return r;
	int res = fn(arg);
	int st = res >= 0 ? FDN_SPAN_OK : res == FDN_SPAN_ABORT ? FDN_SPAN_ABORTED : FDN_SPAN_ERROR;
	struct fdn_shm_trace *tr;
	int b;
	if (fdn__tr_slot_for(s, FDN__SVC_SPANS, &tr, &b) != 0)
		return res;
	/* Spans the callback left open above ours end ABORTED; if it ended
	 * ours itself there is nothing left to end. */
	for (uint32_t k = tr->depth; k > 0; k--) {
		if (tr->spans[k - 1].span_id == id) {
			while (tr->depth > k)
				span_pop(s, b, tr, FDN_SPAN_ABORTED, NULL, NULL, 0);
			span_pop(s, b, tr, st, NULL, NULL, 0);
			break;
		}
	}
	return res;
}

/* ---- propagation ------------------------------------------------------------- */

int fdn_traceparent_parse(const char *tp, char trace_id[FDN_TRACE_ID_HEX + 1], uint64_t *parent_id,
			  uint8_t *flags)
{
	if (!tp)
		return FDN_ETRACEPARENT;
	size_t n = strnlen(tp, 512);
	uint8_t ver, t[16], p[8], f;
	if (n < FDN_TRACEPARENT_LEN || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
		return FDN_ETRACEPARENT;
	if (!fdn__tr_unhex(tp, &ver, 1) || !fdn__tr_unhex(tp + 3, t, 16) ||
	    !fdn__tr_unhex(tp + 36, p, 8) || !fdn__tr_unhex(tp + 53, &f, 1))
		return FDN_ETRACEPARENT;
	/* Version 00 has exactly these fields; a later one may append more
	 * after a '-'; ff is invalid. */
	if (ver == 0xff || (ver == 0 && n != FDN_TRACEPARENT_LEN) ||
	    (ver != 0 && n > FDN_TRACEPARENT_LEN && tp[FDN_TRACEPARENT_LEN] != '-'))
		return FDN_ETRACEPARENT;
	if (fdn__tr_all_zero(t, 16) || fdn__tr_all_zero(p, 8))
		return FDN_ETRACEPARENT;
	if (trace_id)
		fdn__tr_hex(trace_id, t, 16);
	if (parent_id) {
		uint64_t v = 0;
		for (int i = 0; i < 8; i++)
			v = v << 8 | p[i];
		*parent_id = v;
	}
	if (flags)
		*flags = f;
	return 0;
}

int fdn_traceparent(fdn_segment *s, char *out, size_t cap)
{
	if (!out || cap < FDN_TRACEPARENT_LEN + 1)
		return FDN_EINVAL;
	struct fdn_shm_trace *tr;
	int r = top_span(s, &tr, NULL);
	if (r)
		return r;
	const struct fdn_shm_span *sp = &tr->spans[tr->depth - 1];
	char t[33];
	fdn__tr_hex(t, sp->trace_id, 16);
	snprintf(out, cap, "00-%s-%016llx-01", t, (unsigned long long)sp->span_id);
	return 0;
}

int fdn_trace_continue(fdn_segment *s, const char *tp)
{
	(void)s;
	char t[FDN_TRACE_ID_HEX + 1];
	uint64_t p;
	int r = fdn_traceparent_parse(tp, t, &p, NULL);
	if (r)
		return r;
	fdn__tr_unhex(t, tls.ptrace, 16);
	tls.pparent = p;
	tls.pending = true;
	return 0;
}

int fdn_traceparent_setenv(fdn_segment *s)
{
	char tp[FDN_TRACEPARENT_LEN + 1];
	int r = fdn_traceparent(s, tp, sizeof(tp));
	if (r)
		return r;
	return setenv("TRACEPARENT", tp, 1) == 0 ? 0 : -errno;
}
