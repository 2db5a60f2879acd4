/*
 * trace.c - span stacks and error context (foundation/spans.h,
 * foundation/context.h), and the graveyard's copies of dead threads.
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
 * owner reads its own slot directly.  Anybody else (foundation-inspect,
 * the checker, the reaper) copies the slot and keeps the copy only if the
 * sequence word was even and unchanged across the copy; a slot rewritten
 * during every one of FDN__COPY_TRIES attempts is skipped, so a reader
 * never waits for a writer.  The copied bytes are then validated like
 * any other shared data (lengths clamped, encodings validated): a torn or
 * corrupt slot yields a clear mark, never a crash.
 *
 * The graveyard.  When the reaper reclaims a dead process it copies each of
 * its non-empty trace slots into the ghost ring (header.ghost_head, copy k
 * in ghosts[k % FDN_GHOSTS_MAX]) under the ghost's own seqlock, marking the
 * open spans ABORTED and timing them up to the copy, then frees the slot.
 * A reaper killed between the copy and the free leaves the slot owned by
 * the dead process; the next reaper finds the copy already there (same
 * owner, thread and claim time) and does not write it twice.
 */
#include "lib/internal.h"

#include <foundation/context.h>
#include <foundation/spans.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static_assert(FDN_SPAN_MAX_DEPTH == FDN_SPAN_DEPTH_MAX, "depth");
static_assert(FDN_SPAN_NAME_MAXLEN == FDN_SPAN_NAME_MAX, "span name");
static_assert(FDN_SPAN_ATTRS_MAXLEN == FDN_SPAN_ATTRS_MAX, "span attributes");
static_assert(FDN_CTX_MAXLEN == FDN_CTX_ATTRS_MAX, "context");
static_assert(FDN_CTX_ID_MAXLEN == FDN_CTX_ID_MAX, "ids");
static_assert(FDN_CTX_CRUMBS == FDN_CRUMBS_MAX, "breadcrumbs");
static_assert(FDN_CRUMB_ATTRS_MAXLEN == FDN_CRUMB_ATTRS_MAX, "breadcrumb attributes");
static_assert((int)FDN_STATUS_OK == (int)FDN_SPAN_OK &&
		  (int)FDN_STATUS_ERROR == (int)FDN_SPAN_ERROR &&
		  (int)FDN_STATUS_ABORTED == (int)FDN_SPAN_ABORTED &&
		  (int)FDN_STATUS_OPEN == (int)FDN_SPAN_OPEN,
	      "status values");

#define FDN__COPY_TRIES 1000

/* ---- per-thread state ------------------------------------------------------ */

struct trace_tls {
	struct fdn_shm_trace *local; /* the local backend, or NULL */
	unsigned fork_gen;           /* fdn__fork_gen when rng was seeded */
	bool seeded;
	uint64_t rng;
	/* The span ended last, per backend (FDN__LOCAL, FDN__SHARED). */
	bool has_last[2];
	struct fdn_span_info last[2];
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
static uint64_t rnd64(void)
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
		v = rnd64();
	while (v == 0);
	return v;
}

static void hex(char *out, const uint8_t *b, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

/* A 64-bit id as 16 hex digits, most significant first (traceparent's). */
static void hex64(char out[17], uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	hex(out, b, 8);
}

/* Lowercase hex only; returns false on anything else. */
static bool unhex(const char *in, uint8_t *out, size_t n)
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

static bool all_zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* This thread's trace struct on the backend the flags choose for svc. */
static int slot_for(fdn_segment *s, enum fdn__svc svc, struct fdn_shm_trace **out, int *backend)
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
static int encode_bounded(const struct fdn_attr *a, size_t n, uint8_t buf[FDN_ATTRS_MAX],
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
static bool attrs_ok(const void *p, size_t len)
{
	return len == 0 || fdn_attrs_validate(p, len) == 0;
}

/* Merge upd into base (either may be empty) into out: length or error. */
static int merge(const uint8_t *base, size_t blen, const uint8_t *upd, size_t ulen,
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

static int check_name(const char *name, size_t max)
{
	if (!name)
		return FDN_EINVAL;
	size_t n = strnlen(name, max + 1);
	return n == 0 ? FDN_EINVAL : n > max ? FDN_ETOOBIG : (int)n;
}

/* ---- telemetry ------------------------------------------------------------ */

static struct fdn_attr str_attr(const char *name, const char *value)
{
	return (struct fdn_attr){.name = name, .type = FDN_ATTR_STRING, .v.s = value};
}

/* What an event adds to the span's own fields. */
struct span_ev {
	const char *status;     /* stop: "ok", "error", "aborted" */
	uint64_t duration_ns;   /* stop */
	const char *event;      /* record_event: its name */
	const char *link_trace; /* link: the other span */
	uint64_t link_span;
	const char *message;         /* stop: the status message, or NULL */
	const struct fdn_attr *user; /* the caller's attributes */
	size_t nuser;
};

#define SPAN_EV_USER_MAX 64 /* caller attributes carried by one event */

/* The one place spans emit their telemetry events: foundation.span.start,
 * .stop, .attributes, .event and .link, each with the attributes span,
 * trace_id, span_id, parent_id (16 hex), backend ("shared" or "local"), the
 * event's own (status; event; link.trace_id, link.span_id) and the
 * caller's (at most SPAN_EV_USER_MAX; dropped if a name collides with
 * ours), and the measurements depth and, for stop, duration_ns.  Nothing
 * is built unless somebody listens (fdn__emit_enabled). */
/* The compact ring record of a start or stop event (shm/layout.h,
 * FDN_EVENT_SPAN): len, or 0 when it does not apply. */
static size_t span_rec(uint8_t *b, int backend, enum fdn__ev id, const struct fdn_shm_span *sp,
		       uint32_t depth, const struct span_ev *e)
{
	size_t nl = sp->name_len <= FDN_SPAN_NAME_MAX ? sp->name_len : FDN_SPAN_NAME_MAX;
	if (nl == 0)
		return 0;
	uint8_t st = 0;
	if (id == FDN__EV_SPAN_STOP) {
		st = strcmp(e->status, "ok") == 0 ? 1 : strcmp(e->status, "error") == 0 ? 2 : 3;
	}
	b[0] = id == FDN__EV_SPAN_START ? 1 : 2;
	b[1] = st;
	b[2] = backend == FDN__SHARED ? 0 : 1;
	b[3] = (uint8_t)nl;
	memcpy(b + 4, &depth, 4);
	memcpy(b + 8, sp->trace_id, 16);
	memcpy(b + 24, &sp->span_id, 8);
	memcpy(b + 32, &sp->parent_id, 8);
	memcpy(b + 40, &e->duration_ns, 8);
	memcpy(b + FDN_SPAN_REC_HEAD, sp->name, nl);
	return FDN_SPAN_REC_HEAD + nl;
}

bool fdn__span_rec_expand(const uint8_t *b, size_t len, struct fdn_ring_event *ev)
{
	static const char *const st_names[] = {"", "ok", "error", "aborted"};
	if (len < FDN_SPAN_REC_HEAD || (b[0] != 1 && b[0] != 2) || b[2] > 1 || b[3] == 0 ||
	    b[3] > FDN_SPAN_NAME_MAX || len != FDN_SPAN_REC_HEAD + b[3] ||
	    (b[0] == 2 ? b[1] < 1 || b[1] > 3 : b[1] != 0))
		return false;
	bool stop = b[0] == 2;
	uint32_t depth;
	uint64_t sid, pid, dur;
	memcpy(&depth, b + 4, 4);
	memcpy(&sid, b + 24, 8);
	memcpy(&pid, b + 32, 8);
	memcpy(&dur, b + 40, 8);
	char name[FDN_SPAN_NAME_MAX + 1], tid[33], sh[17], ph[17];
	memcpy(name, b + FDN_SPAN_REC_HEAD, b[3]);
	name[b[3]] = 0;
	for (size_t i = 0; i < b[3]; i++)
		if (name[i] == 0)
			return false;
	hex(tid, b + 8, 16);
	hex64(sh, sid);
	hex64(ph, pid);
	/* The same attributes and measurements, in the same order, as
	 * span_emit gives the text form. */
	struct fdn_attr a[6] = {str_attr("span", name),
				str_attr("trace_id", tid),
				str_attr("span_id", sh),
				str_attr("parent_id", ph),
				str_attr("backend", b[2] ? "local" : "shared"),
				str_attr("status", st_names[b[1]])};
	size_t na = stop ? 6 : 5;
	const char *evname = fdn__ev_names[stop ? FDN__EV_SPAN_STOP : FDN__EV_SPAN_START];
	snprintf(ev->name, sizeof(ev->name), "%s", evname);
	snprintf(ev->measurements[0].name, sizeof(ev->measurements[0].name), "depth");
	ev->measurements[0].value = depth;
	snprintf(ev->measurements[1].name, sizeof(ev->measurements[1].name), "duration_ns");
	ev->measurements[1].value = (double)dur;
	ev->nmeasurements = stop ? 2 : 1;
	int alen = fdn_attrs_encode(a, na, ev->attrs, sizeof(ev->attrs));
	if (alen < 0)
		return false;
	ev->attrs_len = (uint32_t)alen;
	ev->truncated = false;
	return true;
}

static void span_emit(fdn_segment *s, int backend, enum fdn__ev id, const struct fdn_shm_span *sp,
		      uint32_t depth, const struct span_ev *e)
{
	if (!fdn__emit_enabled(s, id))
		return;
	/* Nobody in this process listens, so the event goes to the ring
	 * only: a start or stop without a message or the caller's attributes
	 * is written in compact form (no text built; readers expand it).  A
	 * handler attached after the load below misses this event, as it
	 * would any event emitted before its attach returned. */
	if ((id == FDN__EV_SPAN_START || id == FDN__EV_SPAN_STOP) && !e->message && !e->nuser &&
	    s && atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) == 0) {
		uint8_t rec[FDN_SPAN_REC_HEAD + FDN_SPAN_NAME_MAX];
		size_t len = span_rec(rec, backend, id, sp, depth, e);
		uint64_t mono = sp->start_ns + e->duration_ns,
			 real = sp->start_real + e->duration_ns;
		if (len && fdn__emit_span_rec(s, id, rec, len, real, mono) >= 0)
			return;
	}
	char name[FDN_SPAN_NAME_MAX + 1], tid[33], sid[17], par[17], lsid[17];
	size_t nl = sp->name_len <= FDN_SPAN_NAME_MAX ? sp->name_len : FDN_SPAN_NAME_MAX;
	memcpy(name, sp->name, nl);
	name[nl] = 0;
	hex(tid, sp->trace_id, 16);
	hex64(sid, sp->span_id);
	hex64(par, sp->parent_id);
	hex64(lsid, e->link_span);
	struct fdn_attr a[10 + SPAN_EV_USER_MAX];
	size_t na = 0;
	a[na++] = str_attr("span", name);
	a[na++] = str_attr("trace_id", tid);
	a[na++] = str_attr("span_id", sid);
	a[na++] = str_attr("parent_id", par);
	a[na++] = str_attr("backend", backend == FDN__SHARED ? "shared" : "local");
	if (e->status)
		a[na++] = str_attr("status", e->status);
	if (e->message)
		a[na++] = str_attr("status_message", e->message);
	if (e->event)
		a[na++] = str_attr("event", e->event);
	if (e->link_trace) {
		a[na++] = str_attr("link.trace_id", e->link_trace);
		a[na++] = str_attr("link.span_id", lsid);
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

static void span_info(const struct fdn_shm_span *sp, uint32_t depth, uint64_t now,
		      struct fdn_span_info *o)
{
	hex(o->trace_id, sp->trace_id, 16);
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

int fdn_span_start(fdn_segment *s, const char *name, const struct fdn_attr *attrs, size_t n,
		   uint64_t *span_id)
{
	int nl = check_name(name, FDN_SPAN_NAME_MAX);
	if (nl < 0)
		return nl == FDN_ETOOBIG ? FDN_EINVAL : nl;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = encode_bounded(attrs, n, enc, FDN_SPAN_ATTRS_MAX);
	if (al < 0)
		return al;
	struct fdn_shm_trace *tr;
	int b;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, &b);
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
				unhex(tp_trace, tid, 16);
		}
		if (!from_env) {
			parent = 0;
			do {
				uint64_t a = rnd64(), c = rnd64();
				memcpy(tid, &a, 8);
				memcpy(tid + 8, &c, 8);
			} while (all_zero(tid, 16));
		}
	}
	uint64_t id = rnd_nonzero();
	fdn__trace_write_begin(tr);
	memcpy(sp->trace_id, tid, 16);
	sp->span_id = id;
	sp->parent_id = parent;
	sp->start_ns = fdn__mono_ns();
	sp->start_real = fdn__real_ns();
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
	span_info(sp, d - 1, now, last);
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

int fdn_span_end(fdn_segment *s, int status)
{
	if (!status_ok(status))
		return FDN_EINVAL;
	struct fdn_shm_trace *tr;
	int b;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, &b);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
	span_pop(s, b, tr, status, NULL, NULL, 0);
	return 0;
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
	int al = encode_bounded(attrs, n, enc, FDN_ATTRS_MAX);
	if (al < 0)
		return al;
	struct fdn_shm_trace *tr;
	int b;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, &b);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
	span_pop(s, b, tr, status, message, attrs, n);
	return 0;
}

int fdn_span_end_id(fdn_segment *s, uint64_t id, int status)
{
	if (!status_ok(status))
		return FDN_EINVAL;
	struct fdn_shm_trace *tr;
	int b;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, &b);
	if (r)
		return r;
	uint32_t d = tr->depth;
	if (d == 0)
		return FDN_ENOSPAN;
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
	int r = slot_for(s, FDN__SVC_SPANS, &tr, NULL);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
	if (out)
		span_info(&tr->spans[tr->depth - 1], tr->depth - 1, fdn__mono_ns(), out);
	return 0;
}

int fdn_span_last_ended(fdn_segment *s, struct fdn_span_info *out)
{
	int b = fdn__backend(s, FDN__SVC_SPANS);
	if (b < 0)
		return b;
	if (!tls.has_last[b])
		return FDN_ENOSPAN;
	if (out)
		*out = tls.last[b];
	return 0;
}

int fdn_span_trace_id(fdn_segment *s, char out[FDN_TRACE_ID_HEX + 1])
{
	struct fdn_shm_trace *tr;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, NULL);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
	hex(out, tr->spans[tr->depth - 1].trace_id, 16);
	return 0;
}

int fdn_span_depth(fdn_segment *s)
{
	struct fdn_shm_trace *tr;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, NULL);
	return r ? r : (int)tr->depth;
}

int fdn_span_add_attributes(fdn_segment *s, const struct fdn_attr *attrs, size_t n)
{
	uint8_t upd[FDN_ATTRS_MAX], out[FDN_ATTRS_MAX];
	int ul = encode_bounded(attrs, n, upd, FDN_ATTRS_MAX);
	if (ul < 0)
		return ul;
	struct fdn_shm_trace *tr;
	int b;
	int r = slot_for(s, FDN__SVC_SPANS, &tr, &b);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
	struct fdn_shm_span *sp = &tr->spans[tr->depth - 1];
	int len = merge(sp->attrs, sp->attrs_len, upd, (size_t)ul, out);
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
	int r = slot_for(s, FDN__SVC_SPANS, &tr, &b);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
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
	int nl = check_name(name, FDN_SPAN_NAME_MAX);
	if (nl < 0)
		return nl == FDN_ETOOBIG ? FDN_EINVAL : nl;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = encode_bounded(attrs, n, enc, FDN_ATTRS_MAX);
	return al < 0 ? al
		      : span_note(s, &(struct span_ev){.event = name, .user = attrs, .nuser = n});
}

int fdn_span_link(fdn_segment *s, const char *trace_id, uint64_t span_id,
		  const struct fdn_attr *attrs, size_t n)
{
	uint8_t t[16];
	if (!trace_id || strnlen(trace_id, 33) != 32 || !unhex(trace_id, t, 16) || all_zero(t, 16))
		return FDN_ETRACEPARENT;
	if (span_id == 0)
		return FDN_EINVAL;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = encode_bounded(attrs, n, enc, FDN_ATTRS_MAX);
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
	if (slot_for(s, FDN__SVC_SPANS, &tr, &b) != 0)
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
	if (!unhex(tp, &ver, 1) || !unhex(tp + 3, t, 16) || !unhex(tp + 36, p, 8) ||
	    !unhex(tp + 53, &f, 1))
		return FDN_ETRACEPARENT;
	/* Version 00 has exactly these fields; a later one may append more
	 * after a '-'; ff is invalid. */
	if (ver == 0xff || (ver == 0 && n != FDN_TRACEPARENT_LEN) ||
	    (ver != 0 && n > FDN_TRACEPARENT_LEN && tp[FDN_TRACEPARENT_LEN] != '-'))
		return FDN_ETRACEPARENT;
	if (all_zero(t, 16) || all_zero(p, 8))
		return FDN_ETRACEPARENT;
	if (trace_id)
		hex(trace_id, t, 16);
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
	int r = slot_for(s, FDN__SVC_SPANS, &tr, NULL);
	if (r)
		return r;
	if (tr->depth == 0)
		return FDN_ENOSPAN;
	const struct fdn_shm_span *sp = &tr->spans[tr->depth - 1];
	char t[33];
	hex(t, sp->trace_id, 16);
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
	unhex(t, tls.ptrace, 16);
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

/* ---- error context ------------------------------------------------------------- */

static void ctx_env_import(struct fdn_shm_trace *tr);

/* FOUNDATION_CONTEXT is imported by the first use of an error context in
 * the process (any thread, either backend), once. */
static atomic_bool ctx_env_used;

static int ctx_slot(fdn_segment *s, struct fdn_shm_trace **tr)
{
	int r = slot_for(s, FDN__SVC_ERROR_CONTEXT, tr, NULL);
	if (r == 0 && !atomic_load_explicit(&ctx_env_used, memory_order_relaxed) &&
	    !atomic_exchange(&ctx_env_used, true))
		ctx_env_import(*tr);
	return r;
}

/* Write the context map (len <= FDN_CTX_ATTRS_MAX). */
static void ctx_store(struct fdn_shm_trace *tr, const uint8_t *p, size_t len)
{
	fdn__trace_write_begin(tr);
	memcpy(tr->ctx, p, len);
	tr->ctx_len = (uint32_t)len;
	fdn__trace_write_end(tr);
}

int fdn_ctx_set(fdn_segment *s, const struct fdn_attr *attrs, size_t n)
{
	uint8_t upd[FDN_ATTRS_MAX], out[FDN_ATTRS_MAX];
	int ul = encode_bounded(attrs, n, upd, FDN_ATTRS_MAX);
	if (ul < 0)
		return ul;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	int len = merge(tr->ctx, tr->ctx_len, upd, (size_t)ul, out);
	if (len < 0)
		return len == FDN_EINVMETA && ul > 0 ? FDN_ETOOBIG : len;
	if ((size_t)len > FDN_CTX_ATTRS_MAX)
		return FDN_ETOOBIG;
	ctx_store(tr, out, (size_t)len);
	return 0;
}

int fdn_ctx_get(fdn_segment *s, void *buf, size_t cap, size_t *len)
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	if (len)
		*len = tr->ctx_len;
	if (cap < tr->ctx_len || (!buf && tr->ctx_len))
		return FDN_ETOOBIG;
	if (tr->ctx_len) /* buf may be NULL for an empty context */
		memcpy(buf, tr->ctx, tr->ctx_len);
	return 0;
}

int fdn_ctx_clear(fdn_segment *s)
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	fdn__trace_write_begin(tr);
	tr->ctx_len = 0;
	tr->ncrumbs = 0;
	tr->corr_len = tr->op_len = 0;
	tr->corr[0] = tr->op[0] = 0;
	fdn__trace_write_end(tr);
	return 0;
}

int fdn_with_context(fdn_segment *s, const struct fdn_attr *attrs, size_t n, int (*fn)(void *arg),
		     void *arg)
{
	return fdn_with_context_mode(s, attrs, n, FDN_CTX_MERGE, fn, arg);
}

int fdn_with_context_mode(fdn_segment *s, const struct fdn_attr *attrs, size_t n,
			  enum fdn_ctx_mode mode, int (*fn)(void *arg), void *arg)
{
	if (!fn || (mode != FDN_CTX_MERGE && mode != FDN_CTX_REPLACE))
		return FDN_EINVAL;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	uint8_t saved[FDN_CTX_ATTRS_MAX];
	size_t saved_len = tr->ctx_len;
	memcpy(saved, tr->ctx, saved_len);
	if (mode == FDN_CTX_REPLACE) {
		uint8_t enc[FDN_ATTRS_MAX];
		int len = encode_bounded(attrs, n, enc, FDN_CTX_ATTRS_MAX);
		if (len < 0)
			return len;
		ctx_store(tr, enc, (size_t)len);
	} else if ((r = fdn_ctx_set(s, attrs, n))) {
		return r;
	}
	int res = fn(arg);
	/* The callback may have flipped the backend: restore on the slot the
	 * context was saved from. */
	ctx_store(tr, saved, saved_len);
	return res;
}

int fdn_ctx_breadcrumb(fdn_segment *s, const char *module, const char *function,
		       const struct fdn_attr *attrs, size_t n)
{
	int ml = check_name(module, FDN_CRUMB_MODULE_MAX);
	if (ml < 0)
		return ml;
	int fl = check_name(function, FDN_CRUMB_FUNC_MAX);
	if (fl < 0)
		return fl;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = encode_bounded(attrs, n, enc, FDN_CRUMB_ATTRS_MAX);
	if (al < 0)
		return al;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	struct fdn_shm_crumb *c = &tr->crumbs[tr->ncrumbs % FDN_CRUMBS_MAX];
	fdn__trace_write_begin(tr);
	c->time_real = fdn__real_ns();
	memset(c->module, 0, sizeof(c->module));
	memcpy(c->module, module, (size_t)ml);
	memset(c->function, 0, sizeof(c->function));
	memcpy(c->function, function, (size_t)fl);
	c->attrs_len = (uint16_t)al;
	memcpy(c->attrs, enc, (size_t)al);
	tr->ncrumbs++;
	fdn__trace_write_end(tr);
	return 0;
}

/* A printable id of 1..63 bytes, or a random one. */
static int make_id(const char *id, char out[FDN_CTX_ID_MAX + 1])
{
	if (!id) {
		uint8_t b[16];
		uint64_t a = rnd64(), c = rnd64();
		memcpy(b, &a, 8);
		memcpy(b + 8, &c, 8);
		hex(out, b, 16);
		return 32;
	}
	size_t n = strnlen(id, FDN_CTX_ID_MAX + 1);
	if (n == 0 || n > FDN_CTX_ID_MAX)
		return FDN_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return FDN_EINVAL;
	memcpy(out, id, n);
	out[n] = 0;
	return (int)n;
}

static int set_id(fdn_segment *s, const char *id, bool corr)
{
	char v[FDN_CTX_ID_MAX + 1];
	int n = make_id(id, v);
	if (n < 0)
		return n;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	fdn__trace_write_begin(tr);
	memcpy(corr ? tr->corr : tr->op, v, (size_t)n + 1);
	if (corr)
		tr->corr_len = (uint16_t)n;
	else
		tr->op_len = (uint16_t)n;
	fdn__trace_write_end(tr);
	return 0;
}

int fdn_ctx_set_correlation_id(fdn_segment *s, const char *id)
{
	return set_id(s, id, true);
}

int fdn_ctx_set_operation_id(fdn_segment *s, const char *id)
{
	return set_id(s, id, false);
}

int fdn_ctx_ids(fdn_segment *s, char corr[FDN_CTX_ID_MAX + 1], char op[FDN_CTX_ID_MAX + 1])
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	if (corr)
		memcpy(corr, tr->corr, (size_t)tr->corr_len + 1);
	if (op)
		memcpy(op, tr->op, (size_t)tr->op_len + 1);
	return 0;
}

int fdn_ctx_child(fdn_segment *s, const char *operation)
{
	char v[FDN_CTX_ID_MAX + 1];
	int n = make_id(operation, v);
	if (n < 0)
		return n;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	if (tr->op_len > 0) {
		char parent[FDN_CTX_ID_MAX + 1];
		memcpy(parent, tr->op, (size_t)tr->op_len + 1);
		struct fdn_attr a = {
		    .name = "parent_operation_id", .type = FDN_ATTR_STRING, .v.s = parent};
		r = fdn_ctx_set(s, &a, 1);
		if (r)
			return r;
	}
	return set_id(s, v, false);
}

static void crumbs_view(const struct fdn_shm_trace *tr, struct fdn_crumb *out, uint32_t *nout)
{
	uint32_t total = tr->ncrumbs, n = total < FDN_CRUMBS_MAX ? total : FDN_CRUMBS_MAX;
	for (uint32_t i = 0; i < n; i++) {
		const struct fdn_shm_crumb *c = &tr->crumbs[(total - n + i) % FDN_CRUMBS_MAX];
		struct fdn_crumb *o = &out[i];
		o->time_real = c->time_real;
		memcpy(o->module, c->module, sizeof(o->module) - 1);
		o->module[sizeof(o->module) - 1] = 0;
		memcpy(o->function, c->function, sizeof(o->function) - 1);
		o->function[sizeof(o->function) - 1] = 0;
		o->attrs_len =
		    c->attrs_len <= FDN_CRUMB_ATTRS_MAX && attrs_ok(c->attrs, c->attrs_len)
			? c->attrs_len
			: 0;
		memcpy(o->attrs, c->attrs, o->attrs_len);
	}
	*nout = n;
}

int fdn_enrich_error_with(fdn_segment *s, int code, const char *type, const char *message,
			  struct fdn_error_report *out)
{
	if (!out)
		return FDN_EINVAL;
	size_t tl = type ? strnlen(type, FDN_ERROR_TYPE_MAX + 1) : 0;
	if (tl > FDN_ERROR_TYPE_MAX)
		return FDN_EINVAL;
	for (size_t i = 0; i < tl; i++)
		if (type[i] < 0x21 || type[i] > 0x7e)
			return FDN_EINVAL;
	size_t ml = message ? strnlen(message, FDN_ERROR_MESSAGE_MAX + 1) : 0;
	if (ml > FDN_ERROR_MESSAGE_MAX)
		return FDN_ETOOBIG;
	int r = fdn_enrich_error(s, code, out);
	if (r)
		return r;
	memcpy(out->type, type ? type : "", tl);
	out->type[tl] = 0;
	if (message) {
		memcpy(out->text, message, ml);
		out->text[ml] = 0;
		out->message = out->text;
	}
	return 0;
}

int fdn_enrich_error(fdn_segment *s, int code, struct fdn_error_report *out)
{
	if (!out)
		return FDN_EINVAL;
	memset(out, 0, sizeof(*out));
	out->code = code;
	out->message = fdn_strerror(code);
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	memcpy(out->correlation_id, tr->corr, (size_t)tr->corr_len + 1);
	memcpy(out->operation_id, tr->op, (size_t)tr->op_len + 1);
	out->ctx_len = tr->ctx_len;
	memcpy(out->ctx, tr->ctx, tr->ctx_len);
	crumbs_view(tr, out->crumbs, &out->ncrumbs);
	if (slot_for(s, FDN__SVC_SPANS, &tr, NULL) == 0 && tr->depth > 0) {
		hex(out->trace_id, tr->spans[tr->depth - 1].trace_id, 16);
		out->span_id = tr->spans[tr->depth - 1].span_id;
	}
	return 0;
}

/* ---- handing the context over ---------------------------------------------------
 *
 * The binary form (little-endian): version 1; corr_len, corr; op_len, op;
 * u16 ctx_len, ctx; ncrumbs (<= 16, oldest first), each: u64 time_real,
 * module_len, module, function_len, function, u16 attrs_len, attrs; then
 * u32: the low half of XXH3-64 of everything before it.  The text:
 * CTX_PREFIX and the base64url of that (no padding). */

#define CTX_PREFIX     "fdnctx1."
#define CTX_PREFIX_LEN 8u
#define CTX_BIN_MAX                                                                        \
	(1u + 1u + FDN_CTX_ID_MAX + 1u + FDN_CTX_ID_MAX + 2u + FDN_CTX_ATTRS_MAX + 1u +    \
	 FDN_CRUMBS_MAX * (8u + 1u + FDN_CRUMB_MODULE_MAX + 1u + FDN_CRUMB_FUNC_MAX + 2u + \
			   FDN_CRUMB_ATTRS_MAX) +                                          \
	 4u)
static_assert(CTX_PREFIX_LEN + (CTX_BIN_MAX + 2u) / 3u * 4u + 1u <= FDN_CONTEXT_EXPORT_MAX,
	      "export bound");

struct ctx_data {
	char corr[FDN_CTX_ID_MAX + 1], op[FDN_CTX_ID_MAX + 1];
	size_t corr_len, op_len, ctx_len;
	uint8_t ctx[FDN_CTX_ATTRS_MAX];
	uint32_t ncrumbs;
	struct fdn_shm_crumb crumbs[FDN_CRUMBS_MAX];
};

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = b64[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = b64[v & 63];
	}
	return o;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* Decode n characters; the length of the bytes, or -1. */
static long b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
	if (n % 4 == 1)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		size_t k = n - i < 4 ? n - i : 4;
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			int d = j < k ? b64_val(in[i + j]) : 0;
			if (d < 0)
				return -1;
			v = v << 6 | (uint32_t)d;
		}
		size_t bytes = k - 1;
		if (o + bytes > cap)
			return -1;
		for (size_t j = 0; j < bytes; j++)
			out[o++] = (uint8_t)(v >> (16 - 8 * j));
	}
	return (long)o;
}

/* The thread's context out of its slot, as stored (oldest crumb first). */
static void ctx_read(const struct fdn_shm_trace *tr, struct ctx_data *d)
{
	d->corr_len = tr->corr_len <= FDN_CTX_ID_MAX ? tr->corr_len : 0;
	memcpy(d->corr, tr->corr, d->corr_len);
	d->op_len = tr->op_len <= FDN_CTX_ID_MAX ? tr->op_len : 0;
	memcpy(d->op, tr->op, d->op_len);
	d->ctx_len = tr->ctx_len <= FDN_CTX_ATTRS_MAX ? tr->ctx_len : 0;
	memcpy(d->ctx, tr->ctx, d->ctx_len);
	uint32_t total = tr->ncrumbs, n = total < FDN_CRUMBS_MAX ? total : FDN_CRUMBS_MAX;
	for (uint32_t i = 0; i < n; i++)
		d->crumbs[i] = tr->crumbs[(total - n + i) % FDN_CRUMBS_MAX];
	d->ncrumbs = n;
}

static size_t put_bytes(uint8_t *b, size_t o, const void *p, size_t n)
{
	memcpy(b + o, p, n);
	return o + n;
}

static size_t ctx_to_bin(const struct ctx_data *d, uint8_t *b)
{
	size_t o = 0;
	b[o++] = 1;
	b[o++] = (uint8_t)d->corr_len;
	o = put_bytes(b, o, d->corr, d->corr_len);
	b[o++] = (uint8_t)d->op_len;
	o = put_bytes(b, o, d->op, d->op_len);
	b[o++] = (uint8_t)d->ctx_len;
	b[o++] = (uint8_t)(d->ctx_len >> 8);
	o = put_bytes(b, o, d->ctx, d->ctx_len);
	b[o++] = (uint8_t)d->ncrumbs;
	for (uint32_t i = 0; i < d->ncrumbs; i++) {
		const struct fdn_shm_crumb *c = &d->crumbs[i];
		for (int k = 0; k < 8; k++)
			b[o++] = (uint8_t)(c->time_real >> (8 * k));
		size_t ml = strnlen(c->module, FDN_CRUMB_MODULE_MAX);
		size_t fl = strnlen(c->function, FDN_CRUMB_FUNC_MAX);
		size_t al = c->attrs_len <= FDN_CRUMB_ATTRS_MAX ? c->attrs_len : 0;
		b[o++] = (uint8_t)ml;
		o = put_bytes(b, o, c->module, ml);
		b[o++] = (uint8_t)fl;
		o = put_bytes(b, o, c->function, fl);
		b[o++] = (uint8_t)al;
		b[o++] = (uint8_t)(al >> 8);
		o = put_bytes(b, o, c->attrs, al);
	}
	uint32_t check = (uint32_t)XXH3_64bits(b, o);
	for (int k = 0; k < 4; k++)
		b[o++] = (uint8_t)(check >> (8 * k));
	return o;
}

static bool id_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

/* A reader of the binary form: each take checks the bytes are there. */
struct rd {
	const uint8_t *b;
	size_t n, o;
	bool bad;
};

static const uint8_t *take(struct rd *r, size_t k)
{
	if (r->bad || r->n - r->o < k) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->b + r->o;
	r->o += k;
	return p;
}

static size_t take_len(struct rd *r, int bytes)
{
	const uint8_t *p = take(r, (size_t)bytes);
	if (!p)
		return 0;
	return bytes == 1 ? p[0] : (size_t)p[0] | (size_t)p[1] << 8;
}

/* Parse and check an exported context: 0 or FDN_ECONTEXT. */
static int ctx_decode(const char *text, struct ctx_data *d, uint8_t *bin)
{
	if (!text || strncmp(text, CTX_PREFIX, CTX_PREFIX_LEN) != 0)
		return FDN_ECONTEXT;
	const char *body = text + CTX_PREFIX_LEN;
	size_t tl = strnlen(body, FDN_CONTEXT_EXPORT_MAX);
	if (tl >= FDN_CONTEXT_EXPORT_MAX)
		return FDN_ECONTEXT;
	long bl = b64_decode(body, tl, bin, CTX_BIN_MAX);
	if (bl < 6)
		return FDN_ECONTEXT;
	size_t n = (size_t)bl - 4;
	uint32_t check = (uint32_t)bin[n] | (uint32_t)bin[n + 1] << 8 | (uint32_t)bin[n + 2] << 16 |
			 (uint32_t)bin[n + 3] << 24;
	if (check != (uint32_t)XXH3_64bits(bin, n) || bin[0] != 1)
		return FDN_ECONTEXT;
	struct rd r = {bin, n, 1, false};
	memset(d, 0, sizeof(*d));
	d->corr_len = take_len(&r, 1);
	const uint8_t *p = take(&r, d->corr_len);
	if (r.bad || d->corr_len > FDN_CTX_ID_MAX || !id_ok((const char *)p, d->corr_len))
		return FDN_ECONTEXT;
	memcpy(d->corr, p, d->corr_len);
	d->op_len = take_len(&r, 1);
	p = take(&r, d->op_len);
	if (r.bad || d->op_len > FDN_CTX_ID_MAX || !id_ok((const char *)p, d->op_len))
		return FDN_ECONTEXT;
	memcpy(d->op, p, d->op_len);
	d->ctx_len = take_len(&r, 2);
	p = take(&r, d->ctx_len);
	if (r.bad || d->ctx_len > FDN_CTX_ATTRS_MAX || !attrs_ok(p, d->ctx_len))
		return FDN_ECONTEXT;
	memcpy(d->ctx, p, d->ctx_len);
	d->ncrumbs = (uint32_t)take_len(&r, 1);
	if (r.bad || d->ncrumbs > FDN_CRUMBS_MAX)
		return FDN_ECONTEXT;
	for (uint32_t i = 0; i < d->ncrumbs; i++) {
		struct fdn_shm_crumb *c = &d->crumbs[i];
		p = take(&r, 8);
		for (int k = 0; p && k < 8; k++)
			c->time_real |= (uint64_t)p[k] << (8 * k);
		size_t ml = take_len(&r, 1);
		const uint8_t *m = take(&r, ml);
		size_t fl = take_len(&r, 1);
		const uint8_t *f = take(&r, fl);
		size_t al = take_len(&r, 2);
		const uint8_t *a = take(&r, al);
		if (r.bad || ml == 0 || ml > FDN_CRUMB_MODULE_MAX || memchr(m, 0, ml) || fl == 0 ||
		    fl > FDN_CRUMB_FUNC_MAX || memchr(f, 0, fl) || al > FDN_CRUMB_ATTRS_MAX ||
		    !attrs_ok(a, al))
			return FDN_ECONTEXT;
		memcpy(c->module, m, ml);
		memcpy(c->function, f, fl);
		c->attrs_len = (uint16_t)al;
		memcpy(c->attrs, a, al);
	}
	return r.o == n ? 0 : FDN_ECONTEXT;
}

/* Make d the thread's context, in one write. */
static void ctx_write(struct fdn_shm_trace *tr, const struct ctx_data *d)
{
	fdn__trace_write_begin(tr);
	memcpy(tr->corr, d->corr, d->corr_len);
	tr->corr[d->corr_len] = 0;
	tr->corr_len = (uint16_t)d->corr_len;
	memcpy(tr->op, d->op, d->op_len);
	tr->op[d->op_len] = 0;
	tr->op_len = (uint16_t)d->op_len;
	memcpy(tr->ctx, d->ctx, d->ctx_len);
	tr->ctx_len = (uint32_t)d->ctx_len;
	for (uint32_t i = 0; i < d->ncrumbs; i++)
		tr->crumbs[i] = d->crumbs[i];
	tr->ncrumbs = d->ncrumbs;
	fdn__trace_write_end(tr);
}

int fdn_context_export(fdn_segment *s, char *out, size_t cap)
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	struct ctx_data *d = malloc(sizeof(*d) + CTX_BIN_MAX);
	if (!d)
		return -ENOMEM;
	uint8_t *bin = (uint8_t *)(d + 1);
	ctx_read(tr, d);
	size_t bl = ctx_to_bin(d, bin);
	size_t need = CTX_PREFIX_LEN + (bl * 4 + 2) / 3;
	if (!out || cap < need + 1) {
		free(d);
		return FDN_ETOOBIG;
	}
	memcpy(out, CTX_PREFIX, CTX_PREFIX_LEN);
	size_t tl = b64_encode(bin, bl, out + CTX_PREFIX_LEN);
	out[CTX_PREFIX_LEN + tl] = 0;
	free(d);
	return (int)(CTX_PREFIX_LEN + tl);
}

int fdn_context_import(fdn_segment *s, const char *text)
{
	struct ctx_data *d = malloc(sizeof(*d) + CTX_BIN_MAX);
	if (!d)
		return -ENOMEM;
	int r = ctx_decode(text, d, (uint8_t *)(d + 1));
	struct fdn_shm_trace *tr;
	if (r == 0 && (r = ctx_slot(s, &tr)) == 0)
		ctx_write(tr, d);
	free(d);
	return r;
}

int fdn_context_setenv(fdn_segment *s)
{
	char *text = malloc(FDN_CONTEXT_EXPORT_MAX);
	if (!text)
		return -ENOMEM;
	int r = fdn_context_export(s, text, FDN_CONTEXT_EXPORT_MAX);
	if (r >= 0)
		r = setenv("FOUNDATION_CONTEXT", text, 1) == 0 ? 0 : -errno;
	free(text);
	return r;
}

static void ctx_env_import(struct fdn_shm_trace *tr)
{
	const char *env = getenv("FOUNDATION_CONTEXT");
	if (!env || !*env)
		return;
	struct ctx_data *d = malloc(sizeof(*d) + CTX_BIN_MAX);
	if (!d)
		return;
	if (ctx_decode(env, d, (uint8_t *)(d + 1)) == 0)
		ctx_write(tr, d);
	free(d);
}

/* ---- reading other threads' slots -------------------------------------------- */

/* Copy src to dst: the header, the open spans, the breadcrumbs and the
 * context.  true if the copy is consistent (seq even and unchanged); with
 * `any`, also keep an inconsistent copy (a dead writer's) after the tries. */
static bool slot_copy(const struct fdn_shm_trace *src, struct fdn_shm_trace *dst, bool any,
		      bool *torn)
{
	const size_t head = offsetof(struct fdn_shm_trace, spans);
	for (int k = 0; k < FDN__COPY_TRIES; k++) {
		uint64_t s1 = atomic_load_explicit(&src->seq, memory_order_acquire);
		bool last = k == FDN__COPY_TRIES - 1;
		if ((s1 & 1) && !(any && last)) {
			sched_yield();
			continue;
		}
		memcpy((void *)dst, (const void *)src, head);
		uint32_t d = dst->depth <= FDN_SPAN_DEPTH_MAX ? dst->depth : FDN_SPAN_DEPTH_MAX;
		uint32_t cl = dst->ctx_len <= FDN_CTX_ATTRS_MAX ? dst->ctx_len : FDN_CTX_ATTRS_MAX;
		memcpy(dst->spans, src->spans, d * sizeof(struct fdn_shm_span));
		memcpy(dst->crumbs, src->crumbs, sizeof(dst->crumbs));
		memcpy(dst->ctx, src->ctx, cl);
		dst->depth = d;
		dst->ctx_len = cl;
		atomic_thread_fence(memory_order_acquire);
		uint64_t s2 = atomic_load_explicit(&src->seq, memory_order_relaxed);
		bool ok = s1 == s2 && !(s1 & 1);
		if (ok || (any && last)) {
			if (torn)
				*torn = !ok;
			return true;
		}
	}
	return false;
}

/* Decode a private copy into the public view, validating every field. */
static void slot_view(const struct fdn_shm_trace *c, bool dead, uint64_t now,
		      struct fdn_thread_trace *v)
{
	v->pid = (int32_t)c->pid;
	v->tid = c->tid;
	v->dead = dead;
	v->torn = (c->flags & FDN_TRACE_TORN) != 0;
	v->died_real = c->died_real;
	v->claimed_real = c->claimed_real;
	v->depth = c->depth <= FDN_SPAN_DEPTH_MAX ? c->depth : FDN_SPAN_DEPTH_MAX;
	uint64_t end = dead ? c->died_mono : now;
	for (uint32_t i = 0; i < v->depth; i++) {
		span_info(&c->spans[i], i, end, &v->spans[i]);
		if (!attrs_ok(v->spans[i].attrs, v->spans[i].attrs_len)) {
			v->spans[i].attrs_len = 0;
			v->torn = true;
		}
		if (v->spans[i].status > FDN_SPAN_ABORTED)
			v->spans[i].status = FDN_SPAN_ABORTED;
	}
	size_t cl = c->corr_len <= FDN_CTX_ID_MAX ? c->corr_len : 0;
	memcpy(v->correlation_id, c->corr, cl);
	v->correlation_id[cl] = 0;
	size_t ol = c->op_len <= FDN_CTX_ID_MAX ? c->op_len : 0;
	memcpy(v->operation_id, c->op, ol);
	v->operation_id[ol] = 0;
	v->ctx_len = c->ctx_len <= FDN_CTX_ATTRS_MAX ? c->ctx_len : 0;
	if (!attrs_ok(c->ctx, v->ctx_len)) {
		v->ctx_len = 0;
		v->torn = true;
	}
	memcpy(v->ctx, c->ctx, v->ctx_len);
	crumbs_view(c, v->crumbs, &v->ncrumbs);
}

static bool slot_empty(const struct fdn_shm_trace *c)
{
	return c->depth == 0 && c->ctx_len == 0 && c->ncrumbs == 0 && c->corr_len == 0 &&
	       c->op_len == 0;
}

/* Walk n slots of base (live ones: owner != 0; ghosts: the newest first). */
static int traces_walk(fdn_segment *s, bool ghosts, int32_t pid, fdn_trace_cb cb, void *arg)
{
	if (!s || !cb)
		return FDN_EINVAL;
	struct fdn_shm_trace *c = malloc(sizeof(*c));
	struct fdn_thread_trace *v = malloc(sizeof(*v));
	if (!c || !v) {
		free(c);
		free(v);
		return -ENOMEM;
	}
	uint64_t head = atomic_load_explicit(&s->hdr->ghost_head, memory_order_acquire);
	uint64_t n = ghosts ? (head < FDN_GHOSTS_MAX ? head : FDN_GHOSTS_MAX) : s->ntrace;
	uint64_t now = fdn__mono_ns();
	int skipped = 0, r = 0;
	for (uint64_t k = 0; k < n && r == 0; k++) {
		const struct fdn_shm_trace *src =
		    ghosts ? &s->ghosts[(head - 1 - k) % FDN_GHOSTS_MAX] : &s->trace[k];
		if (atomic_load_explicit(&src->owner, memory_order_acquire) == 0)
			continue;
		bool torn = false;
		if (!slot_copy(src, c, false, &torn)) {
			skipped++;
			continue;
		}
		/* pid 0: claimed, not yet filled in (rcu.c). */
		if (c->owner == 0 || c->pid == 0 || (pid != 0 && (int32_t)c->pid != pid))
			continue;
		slot_view(c, ghosts, now, v);
		r = cb(arg, v);
	}
	free(c);
	free(v);
	return r != 0 ? r : skipped;
}

int fdn_traces_foreach(fdn_segment *s, int32_t pid, fdn_trace_cb cb, void *arg)
{
	return traces_walk(s, false, pid, cb, arg);
}

int fdn_graveyard_traces(fdn_segment *s, int32_t pid, fdn_trace_cb cb, void *arg)
{
	return traces_walk(s, true, pid, cb, arg);
}

void fdn_graveyard_trace_counts(fdn_segment *s, uint64_t *written, uint64_t *dropped)
{
	uint64_t h = s ? atomic_load_explicit(&s->hdr->ghost_head, memory_order_acquire) : 0;
	if (written)
		*written = h;
	if (dropped)
		*dropped = h > FDN_GHOSTS_MAX ? h - FDN_GHOSTS_MAX : 0;
}

/* ---- the reaper's side ---------------------------------------------------------- */

/* Is there a ghost of this slot already (a previous reaper's copy)? */
static bool ghost_exists(fdn_segment *s, const struct fdn_shm_trace *c)
{
	uint64_t head = atomic_load_explicit(&s->hdr->ghost_head, memory_order_acquire);
	uint64_t n = head < FDN_GHOSTS_MAX ? head : FDN_GHOSTS_MAX;
	for (uint64_t k = 0; k < n; k++) {
		const struct fdn_shm_trace *g = &s->ghosts[(head - 1 - k) % FDN_GHOSTS_MAX];
		if (atomic_load_explicit(&g->owner, memory_order_relaxed) ==
			atomic_load_explicit(&c->owner, memory_order_relaxed) &&
		    g->tid == c->tid && g->claimed_real == c->claimed_real)
			return true;
	}
	return false;
}

static void ghost_put(fdn_segment *s, struct fdn_shm_trace *c, bool torn)
{
	if (slot_empty(c) || ghost_exists(s, c))
		return;
	uint64_t k = atomic_load_explicit(&s->hdr->ghost_head, memory_order_relaxed);
	struct fdn_shm_trace *g = &s->ghosts[k % FDN_GHOSTS_MAX];
	uint64_t died_mono = fdn__mono_ns(), died_real = fdn__real_ns();
	fdn__trace_write_begin(g);
	atomic_store_explicit(&g->owner, atomic_load_explicit(&c->owner, memory_order_relaxed),
			      memory_order_relaxed);
	g->proc_idx = c->proc_idx;
	g->tid = c->tid;
	g->pid = c->pid;
	g->depth = c->depth;
	g->ncrumbs = c->ncrumbs;
	g->claimed_real = c->claimed_real;
	g->died_real = died_real;
	g->died_mono = died_mono;
	g->flags = torn ? FDN_TRACE_TORN : 0;
	g->corr_len = c->corr_len;
	g->op_len = c->op_len;
	g->ctx_len = c->ctx_len;
	memcpy(g->corr, c->corr, sizeof(g->corr));
	memcpy(g->op, c->op, sizeof(g->op));
	memcpy(g->spans, c->spans, c->depth * sizeof(struct fdn_shm_span));
	for (uint32_t i = 0; i < c->depth; i++)
		g->spans[i].status = FDN_SPAN_ABORTED;
	memcpy(g->crumbs, c->crumbs, sizeof(g->crumbs));
	memcpy(g->ctx, c->ctx, c->ctx_len);
	fdn__trace_write_end(g);
	atomic_store_explicit(&s->hdr->ghost_head, k + 1, memory_order_release);
}

int fdn__trace_reap(fdn_segment *s, uint64_t word, bool record)
{
	struct fdn_shm_trace *c = record ? malloc(sizeof(*c)) : NULL;
	if (record && !c)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->ntrace; i++) {
		struct fdn_shm_trace *tr = &s->trace[i];
		uint64_t owner = atomic_load_explicit(&tr->owner, memory_order_acquire);
		if (!fdn__trace_owned_by(owner, word))
			continue;
		bool torn = false;
		/* The owner is dead: the slot no longer changes, so the copy
		 * is taken whatever its sequence word says. */
		if (c && slot_copy(tr, c, true, &torn))
			ghost_put(s, c, torn);
		fdn__trace_free(tr, word);
	}
	free(c);
	return 0;
}

int fdn__trace_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	struct fdn_shm_trace *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	struct fdn__audit au = {cb, arg, 0};
	for (uint32_t i = 0; i < s->ntrace; i++) {
		const struct fdn_shm_trace *tr = &s->trace[i];
		uint64_t owner = atomic_load_explicit(&tr->owner, memory_order_acquire);
		if (owner == 0 || !slot_copy(tr, c, false, NULL) || c->pid == 0)
			continue;
		const char *what = NULL;
		if (c->depth > FDN_SPAN_DEPTH_MAX || tr->depth > FDN_SPAN_DEPTH_MAX)
			what = "depth out of range";
		else if (c->ctx_len > FDN_CTX_ATTRS_MAX || !attrs_ok(c->ctx, c->ctx_len))
			what = "bad context map";
		else if (c->corr_len > FDN_CTX_ID_MAX || c->op_len > FDN_CTX_ID_MAX)
			what = "bad context id";
		else if (c->proc_idx >= s->nprocs || c->pid != FDN_PROC_PID(c->owner))
			what = "owner fields disagree";
		/* A slot is freed before its owner's process slot (detach,
		 * thread exit, the reaper): an owner with no process slot is
		 * a slot nobody will ever free. */
		else if (!fdn__trace_owned_by(atomic_load(&s->procs[c->proc_idx].word), owner))
			what = "owner has no process slot (leaked)";
		for (uint32_t k = 0; !what && k < c->depth; k++) {
			const struct fdn_shm_span *sp = &c->spans[k];
			if (sp->name_len == 0 || sp->name_len > FDN_SPAN_NAME_MAX ||
			    sp->attrs_len > FDN_SPAN_ATTRS_MAX ||
			    !attrs_ok(sp->attrs, sp->attrs_len) || sp->status != FDN_SPAN_OPEN ||
			    sp->span_id == 0 || all_zero(sp->trace_id, 16))
				what = "bad span record";
		}
		if (what)
			fdn__violation(&au, "trace", "trace slot %u (pid %u): %s", i, c->pid, what);
	}
	free(c);
	return au.n;
}
