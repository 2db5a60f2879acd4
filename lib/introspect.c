/*
 * lib/introspect.c - foundation/introspect.h: the public view of what the
 * programs used to read straight out of shm/ (the process table, the
 * indexed attribute names, the mapping, the latency histogram), built on
 * the internal layer.  Read-only: nothing here writes to a segment.
 */
#include "lib/internal.h"
#include "lib/metrics.h"

#include <foundation/introspect.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The public limits are the format's. */
_Static_assert(FDN_GRAVEYARD_CAPACITY == FDN_GRAVEYARD_MAX, "graveyard capacity");
_Static_assert(FDN_INDEXED_ATTRS_MAX == FDN_MAX_INDEXED, "indexed attributes");
_Static_assert(FDN_INDEXED_ATTR_NAME_MAX == FDN_INDEXED_NAME_MAX, "indexed attribute name");
_Static_assert(FDN_CHANGES_MIN == FDN_MIN_CHANGES && FDN_CHANGES_MAX == FDN_MAX_CHANGES,
	       "change log size");
_Static_assert(FDN_REAPER_LATENCY_BOUNDS == FDN_LATENCY_BOUNDS, "latency buckets");
_Static_assert(FDN_PROCESS_LIVE == FDN_PROC_LIVE && FDN_PROCESS_DEAD == FDN_PROC_DEAD &&
		   FDN_PROCESS_LEFT == FDN_PROC_LEFT,
	       "process states");
_Static_assert((int)FDN_IDENTITY_NONE == (int)FDN_IDENT_NONE &&
		   (int)FDN_IDENTITY_PIDFS == (int)FDN_IDENT_PIDFS &&
		   (int)FDN_IDENTITY_STARTTIME == (int)FDN_IDENT_STARTTIME,
	       "identity kinds");

int fdn_segment_name_check(const char *name)
{
	return fdn__validate_name(name);
}

/* Reader slots in use, per owning process slot. */
static uint32_t *count_readers(fdn_segment *s)
{
	uint32_t *n = calloc(s->nprocs ? s->nprocs : 1, sizeof(*n));
	if (!n)
		return NULL;
	for (uint32_t t = 0, nt = fdn__tslot_bound(s); t < nt; t++) {
		uint64_t w = atomic_load_explicit(&s->tslots[t].state, memory_order_relaxed);
		if (FDN_TSLOT_KIND(w) == FDN_TSLOT_USED && FDN_TSLOT_OWNER(w) < s->nprocs)
			n[FDN_TSLOT_OWNER(w)]++;
	}
	return n;
}

int fdn_processes(fdn_segment *s, fdn_process_cb cb, void *arg)
{
	if (!s || !cb)
		return FDN_EINVAL;
	uint32_t *readers = count_readers(s);
	if (!readers)
		return -ENOMEM;
	int r = 0;
	for (uint32_t i = 0; i < s->nprocs && r == 0; i++) {
		const struct fdn_shm_proc *sp = &s->procs[i];
		uint64_t w = atomic_load_explicit(&sp->word, memory_order_acquire);
		if (FDN_PROC_STATE(w) == FDN_PROC_FREE)
			continue;
		struct fdn_process p = {
		    .slot = i,
		    .pid = FDN_PROC_PID(w),
		    .state = FDN_PROC_STATE(w),
		    .ident = atomic_load_explicit(&sp->ident, memory_order_relaxed),
		    .ident_kind = atomic_load_explicit(&sp->ident_kind, memory_order_relaxed),
		    .uid = atomic_load_explicit(&sp->uid, memory_order_relaxed),
		    .attached_ns = atomic_load_explicit(&sp->attach_ns, memory_order_relaxed),
		    .claimer_pid = atomic_load_explicit(&sp->claimer_pid, memory_order_relaxed),
		    .reader_slots = readers[i],
		};
		r = cb(arg, &p);
	}
	free(readers);
	return r;
}

const char *fdn_process_state_name(unsigned state)
{
	return state == FDN_PROC_LIVE   ? "live"
	       : state == FDN_PROC_DEAD ? "dead"
	       : state == FDN_PROC_LEFT ? "left"
					: "invalid";
}

const char *fdn_identity_kind_name(uint32_t kind)
{
	return kind == FDN_IDENT_PIDFS       ? "pidfs"
	       : kind == FDN_IDENT_STARTTIME ? "starttime"
					     : "none";
}

int fdn_indexed_attributes(fdn_segment *s, char (*names)[FDN_INDEXED_ATTR_NAME_MAX + 1], int cap)
{
	if (!s || (cap > 0 && !names))
		return FDN_EINVAL;
	int n = 0;
	for (uint32_t i = 0; i < FDN_MAX_INDEXED && n < cap; i++) {
		const char *name = s->hdr->indexed[i];
		size_t len = strnlen(name, FDN_INDEXED_NAME_MAX);
		if (!len)
			continue;
		memcpy(names[n], name, len);
		names[n][len] = 0;
		n++;
	}
	return n;
}

int fdn_segment_mapping(fdn_segment *s, struct fdn_segment_mapping *m)
{
	if (!s || !m)
		return FDN_EINVAL;
	*m = (struct fdn_segment_mapping){.base = s->base,
					  .size = s->size,
					  .fd = s->fd,
					  .dev = (uint64_t)s->dev,
					  .ino = (uint64_t)s->ino};
	return 0;
}

void fdn_segment_guard_sigbus(fdn_segment *s, const char *prog)
{
	if (s)
		fdn__seg_guard_sigbus(s, prog);
}

bool fdn_segment_report_truncated(fdn_segment *s, const char *prog)
{
	return s && fdn__seg_say_truncated(s, prog);
}

int fdn_segment_attach_noreaper(const char *name, fdn_segment **out)
{
	return fdn__seg_attach(name, 0, out);
}

int fdn_reaper_latency(fdn_segment *s, struct fdn_reaper_latency *out)
{
	if (!s || !out)
		return FDN_EINVAL;
	struct fdn__latency_hist h;
	fdn__latency_read(s, &h);
	for (size_t b = 0; b < FDN_LATENCY_BOUNDS; b++) {
		out->bound_ns[b] = fdn__latency_bound_ns[b];
		out->cumulative[b] = h.cumulative[b];
	}
	out->count = h.count;
	out->sum_ns = h.sum_ns;
	return 0;
}
