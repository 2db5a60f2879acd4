/*
 * trace_graveyard.c - other threads' trace slots: inspection
 * (fdn_traces_foreach), the graveyard's copies of dead threads
 * (fdn_graveyard_traces, fdn__trace_reap for the reaper) and the audit
 * (fdn__trace_check).  Calls trace.c and trace_context.c (trace_int.h).
 *
 * Concurrency.  A slot is written by its owning thread only (trace.c).
 * Anybody else (foundation-inspect, the checker, the reaper) copies the
 * slot and keeps the copy only if the sequence word was even and unchanged
 * across the copy; a slot rewritten during every one of FDN__COPY_TRIES
 * attempts is skipped, so a reader never waits for a writer.  The copied
 * bytes are then validated like any other shared data (lengths clamped,
 * encodings validated): a torn or corrupt slot yields a clear mark, never a
 * crash.
 *
 * The graveyard.  When the reaper reclaims a dead process it copies each of
 * its non-empty trace slots into the ghost ring (header.ghost_head, copy k
 * in ghosts[k % FDN_GHOSTS_MAX]) under the ghost's own seqlock, marking the
 * open spans ABORTED and timing them up to the copy, then frees the slot.
 * A reaper killed between the copy and the free leaves the slot owned by
 * the dead process; the next reaper finds the copy already there (same
 * owner, thread and claim time) and does not write it twice.
 */
#include "lib/trace_int.h"

#include <foundation/context.h>
#include <foundation/spans.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define FDN__COPY_TRIES 1000

/* ---- reading other threads' slots -------------------------------------------- */

/* Copy src to dst: the header, the open spans, the breadcrumbs and the
 * context.  true if the copy is consistent (seq even and unchanged).  With
 * `any` (the owner is dead, so the slot no longer changes) the first copy
 * is kept whatever the sequence word says, *torn telling whether it was
 * odd: waiting for a dead writer to finish is waiting for nothing.  (The
 * reaper once spent 3 s here in sched_yield, behind 16 runnable writers,
 * on a thread killed inside a span write; meanwhile a death it had not
 * yet learnt of, killed inside a read-side section, held every writer
 * past its 2 s bound: stress_killstorm under qemu-user.) */
static bool slot_copy(const struct fdn_shm_trace *src, struct fdn_shm_trace *dst, bool any,
		      bool *torn)
{
	const size_t head = offsetof(struct fdn_shm_trace, spans);
	for (int k = 0; k < FDN__COPY_TRIES; k++) {
		uint64_t s1 = atomic_load_explicit(&src->seq, memory_order_acquire);
		bool last = any || k == FDN__COPY_TRIES - 1;
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
		fdn__tr_span_info(&c->spans[i], i, end, &v->spans[i]);
		if (!fdn__tr_attrs_ok(v->spans[i].attrs, v->spans[i].attrs_len)) {
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
	if (!fdn__tr_attrs_ok(c->ctx, v->ctx_len)) {
		v->ctx_len = 0;
		v->torn = true;
	}
	memcpy(v->ctx, c->ctx, v->ctx_len);
	fdn__tr_crumbs_view(c, v->crumbs, &v->ncrumbs);
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
		else if (c->ctx_len > FDN_CTX_ATTRS_MAX || !fdn__tr_attrs_ok(c->ctx, c->ctx_len))
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
			    !fdn__tr_attrs_ok(sp->attrs, sp->attrs_len) ||
			    sp->status != FDN_SPAN_OPEN || sp->span_id == 0 ||
			    fdn__tr_all_zero(sp->trace_id, 16))
				what = "bad span record";
		}
		if (what)
			fdn__violation(&au, "trace", "trace slot %u (pid %u): %s", i, c->pid, what);
	}
	free(c);
	return au.n;
}
