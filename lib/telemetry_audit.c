/*
 * telemetry_audit.c - the telemetry part of the segment audit (the tables'
 * tags, specs, windows and batch items; the ring's records) and the
 * telemetry defaults of a new segment.
 *
 * Who calls whom.  Called by the segment's audit and creation
 * (fdn__telemetry_check, fdn__telemetry_init; lib/telemetry.h).  Calls
 * telemetry_sample.c (the named slots, samplers), telemetry.c
 * (fdn__ring_map) and the clock (shm/clock.c); reads the once-per and
 * batch formats of telemetry_once.c and telemetry_batch.c
 * (lib/telemetry_int.h).
 */
#include "lib/telemetry_int.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the audit ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Tags: every claimed slot reachable from its home through claimed slots,
 * no tag twice. */
static int check_tags(struct fdn__audit *ck, const struct fdn__tel *t, unsigned tb,
		      const char *what)
{
	uint32_t n = fdn__tel_table_n(tb), used = 0;
	uint64_t *tags = malloc(n * sizeof(*tags));
	if (!tags)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t tag = atomic_load((_Atomic uint64_t *)fdn__tel_slot_at(t, tb, i));
		if (tag == 0)
			continue;
		tags[used++] = tag;
		if (tb == FDN_TEL_T_ONCE && (i + n - (uint32_t)(tag % n)) % n >= ONCE_WINDOW)
			fdn__violation(ck, "telemetry",
				       "once-per slot %u: outside the window of its home slot %u",
				       i, (uint32_t)(tag % n));
		/* A once-per slot is passable once used (last != 0), tag or not. */
		for (uint32_t j = (uint32_t)(tag % n); j != i; j = (j + 1) % n)
			if (atomic_load((_Atomic uint64_t *)fdn__tel_slot_at(t, tb, j)) == 0 &&
			    (tb != FDN_TEL_T_ONCE ||
			     atomic_load(
				 &((struct fdn_shm_once *)fdn__tel_slot_at(t, tb, j))->last) ==
				 0)) {
				fdn__violation(ck, "telemetry",
					       "%s slot %u: unreachable from its home slot %u",
					       what, i, (uint32_t)(tag % n));
				break;
			}
	}
	qsort(tags, used, sizeof(*tags), cmp_u64);
	for (uint32_t i = 1; i < used; i++)
		if (tags[i] == tags[i - 1])
			fdn__violation(ck, "telemetry", "%s: tag %016llx claimed twice", what,
				       (unsigned long long)tags[i]);
	free(tags);
	return 0;
}

static void check_samplers(struct fdn__audit *ck, const struct fdn__tel *t)
{
	for (uint32_t i = 0; i < FDN_TEL_SAMPLERS; i++) {
		struct fdn_shm_sampler *x = fdn__sampler_at(t, i);
		if (atomic_load(&x->tag) == 0)
			continue;
		uint64_t spec = atomic_load(&x->spec);
		struct fdn_sampler sp = {(enum fdn_sampler_kind)FDN_SPEC_KIND(spec),
					 fdn__sampler_param(spec)};
		if (FDN_SPEC_KIND(spec) > FDN_SAMPLE_HANDLERS || !fdn__sampler_valid(&sp))
			fdn__violation(ck, "telemetry", "sampler slot %u: invalid spec %016llx", i,
				       (unsigned long long)spec);
		/* sampled is raised after total, so read it first. */
		uint64_t sampled = atomic_load(&x->sampled), total = atomic_load(&x->total);
		if (sampled > total)
			fdn__violation(ck, "telemetry", "sampler slot %u: %llu sampled of %llu", i,
				       (unsigned long long)sampled, (unsigned long long)total);
	}
}

static void check_windows(struct fdn__audit *ck, const struct fdn__tel *t, uint64_t now_ms)
{
	for (uint32_t i = 0; i < FDN_TEL_ONCE; i++) {
		struct fdn_shm_once *o = fdn__tel_slot_at(t, FDN_TEL_T_ONCE, i);
		uint64_t last = atomic_load(&o->last) & ~ONCE_TAKING;
		if (atomic_load(&o->tag) && last > now_ms + 1)
			fdn__violation(ck, "telemetry",
				       "once-per slot %u: claim in the future (%llu > %llu ms)", i,
				       (unsigned long long)last, (unsigned long long)now_ms + 1);
	}
	for (uint32_t i = 0; i < FDN_TEL_RATE; i++) {
		struct fdn_shm_rate *x = fdn__tel_slot_at(t, FDN_TEL_T_RATE, i);
		uint64_t st = atomic_load(&x->state);
		uint32_t wms = x->window_ms;
		if (atomic_load(&x->tag) && wms && (st >> 24) > now_ms / wms)
			fdn__violation(ck, "telemetry",
				       "rate slot %u: window %llu is in the future", i,
				       (unsigned long long)(st >> 24));
	}
	for (uint32_t i = 0; i < FDN_TEL_BATCHES; i++) {
		struct fdn_shm_batch *b = fdn__tel_slot_at(t, FDN_TEL_T_BATCHES, i);
		uint64_t w = atomic_load(&b->ctl), cfg = atomic_load(&b->cfg);
		if (atomic_load(&b->tag) == 0)
			continue;
		for (unsigned k = 0; k < 2; k++)
			for (uint32_t c = 0; c < FDN_BATCH_ITEMS_MAX; c++) {
				uint64_t T = atomic_load(&b->items[k][c].tag);
				if (IT_STATE(T) > IT_LOST ||
				    (IT_STATE(T) != IT_FREE &&
				     ((IT_GEN(T) & 1) != k ||
				      fdn__batch_gen_before(FDN_BATCH_GEN(atomic_load(&b->ctl)),
							    IT_GEN(T)))))
					fdn__violation(ck, "telemetry",
						       "batch slot %u item %u/%u: tag %016llx "
						       "(generation %u open)",
						       i, k, c, (unsigned long long)T,
						       FDN_BATCH_GEN(atomic_load(&b->ctl)));
			}
		if (FDN_BATCH_COUNT(w) >= FDN_BATCH_ITEMS_MAX ||
		    (uint32_t)cfg > FDN_BATCH_ITEMS_MAX)
			fdn__violation(ck, "telemetry",
				       "batch slot %u: %u items reserved, at most %u", i,
				       FDN_BATCH_COUNT(w),
				       (uint32_t)cfg ? (uint32_t)cfg : FDN_BATCH_ITEMS_MAX);
	}
}

/* Ring records: a record's seq names a ticket of that record, issued. */
static int check_ring(struct fdn__audit *ck, fdn_segment *s)
{
	struct fdn_shm_event *ring;
	uint32_t n;
	int r = fdn__ring_map(s, &ring, &n);
	if (r) {
		fdn__violation(ck, "telemetry", "event ring: %s", fdn_strerror(r));
		return 0;
	}
	uint64_t head = atomic_load(&fdn__tel_hdr(s)->ring_head);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t seq = atomic_load(&ring[i].seq);
		if (seq == 0)
			continue;
		uint64_t t = (seq - 1) / 2;
		if ((t & (n - 1)) != i || t >= head)
			fdn__violation(ck, "telemetry",
				       "event record %u: seq %llu (ticket %llu, head %llu)", i,
				       (unsigned long long)seq, (unsigned long long)t,
				       (unsigned long long)head);
		/* A record of an older ticket under a newer complete seq is
		 * a lapped producer's late write (ring_write): readers reject
		 * it by its ticket and checksum and count it lost.  A newer
		 * ticket than the seq's, or one of another record, cannot be
		 * written by any producer. */
		else if (seq % 2 == 0 && ring[i].ticket != t &&
			 (ring[i].ticket > t || (ring[i].ticket & (n - 1)) != i))
			fdn__violation(ck, "telemetry",
				       "event record %u: complete for ticket %llu, holds %llu", i,
				       (unsigned long long)t, (unsigned long long)ring[i].ticket);
	}
	return 0;
}

int fdn__telemetry_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	struct fdn__audit ck = {cb, arg, 0};
	struct fdn__tel t;
	int r = fdn__tel_seg_ctx(s, &t);
	if (r) {
		fdn__violation(&ck, "telemetry", "telemetry region: %s", fdn_strerror(r));
		return ck.n;
	}
	{
		static const char *const what[FDN_TEL_NTABLES] = {"sampler", "once-per", "rate",
								  "batch"};
		for (unsigned tb = 0; tb < FDN_TEL_NTABLES; tb++)
			if ((r = check_tags(&ck, &t, tb, what[tb])) < 0)
				return r;
		check_samplers(&ck, &t);
		check_windows(&ck, &t, fdn__mono_ms());
	}
	check_ring(&ck, s);
	return ck.n;
}

/* ---- a new segment's defaults ------------------------------------------------------- */

/* The hottest calls' events start without a ring record; every other event
 * starts `always`.
 *  - foundation.registry.lookup: `never`.  With the shared telemetry on (the
 *    default profile) its event would write a ring record on every lookup,
 *    five times the lookup's own cost.
 *  - foundation.span.start and .stop: `handlers`.  Handlers attached in the
 *    emitting process still receive both; the two ring records would make a
 *    span push+pop 5.9-6.0 lookups instead of 2.6 (docs/benchmarks.md).
 * `foundation-ctl sampler set NAME always` (or random(P)...) writes them. */
int fdn__telemetry_init(fdn_segment *s)
{
	static const struct {
		enum fdn__ev id;
		unsigned kind;
	} defaults[] = {{FDN__EV_REG_LOOKUP, FDN_SAMPLE_NEVER},
			{FDN__EV_SPAN_START, FDN_SAMPLE_HANDLERS},
			{FDN__EV_SPAN_STOP, FDN_SAMPLE_HANDLERS}};
	struct fdn__tel t;
	int r = fdn__tel_seg_ctx(s, &t);
	if (r)
		return r;
	for (size_t k = 0; k < sizeof(defaults) / sizeof(defaults[0]); k++) {
		const char *name = fdn__ev_names[defaults[k].id];
		size_t nlen = strlen(name);
		bool fresh;
		int i = fdn__tel_slot_get(&t, FDN_TEL_T_SAMPLERS, fdn__tel_tag(name, nlen, NULL, 0),
					  true, &fresh);
		if (i < 0)
			return i;
		struct fdn_shm_sampler *x = fdn__sampler_at(&t, (uint32_t)i);
		fdn__tel_put_name(x->name, sizeof(x->name), name, nlen);
		atomic_store(&x->spec, FDN_SPEC_WORD(defaults[k].kind, 1, fdn__sampler_bits(0.0f)));
	}
	return 0;
}
