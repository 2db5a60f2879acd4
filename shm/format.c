/*
 * format.c - the segment's format as code: where each region lies for given
 * capacities (fdn__layout_compute), the signature of every shared struct's
 * layout (fdn__layout_signature), and the checks a header must pass before
 * a process maps the rest (fdn__validate_header).  The format itself is
 * written down in layout.h; creating and attaching: segment.c.
 */
#include "shm.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <xxhash.h>

/* ---- layout --------------------------------------------------------------- */

static uint64_t fdn__align_page(uint64_t x)
{
	return (x + 4095u) & ~(uint64_t)4095u;
}

int fdn__layout_compute(const struct fdn__caps *c, struct fdn_shm_region r[FDN_NREGIONS],
			struct fdn_shm_region svc[FDN_NSVC_REGIONS], uint64_t *total)
{
	uint32_t nprocs = c->nprocs, nthreads = c->nthreads, npages = c->npages;
	uint32_t ntables = c->ntables;
	const uint64_t *nbuckets = c->nbuckets;
	if (nprocs < 1 || nprocs > FDN_MAX_PROCS || nthreads < 1 || nthreads > FDN_MAX_THREADS ||
	    npages < 1 || npages > FDN_MAX_PAGES || ntables < 1 || ntables > FDN_MAX_TABLES ||
	    c->ntrace < 1 || c->ntrace > FDN_MAX_TRACE || c->nevents < 2 ||
	    c->nevents > FDN_MAX_EVENTS || (c->nevents & (c->nevents - 1)) != 0 ||
	    (c->nchanges != 0 && (c->nchanges < FDN_MIN_CHANGES || c->nchanges > FDN_MAX_CHANGES ||
				  (c->nchanges & (c->nchanges - 1)) != 0)))
		return FDN_EINVAL;
	uint64_t nb = 0;
	for (uint32_t i = 0; i < ntables; i++) {
		uint64_t b = nbuckets[i];
		if (b < 2 || b > FDN_MAX_BUCKETS || (b & (b - 1)) != 0)
			return FDN_EINVAL;
		nb += b;
	}
	memset(r, 0, sizeof(*r) * FDN_NREGIONS);
	uint64_t off = FDN_HEADER_SIZE;
	const uint64_t sizes[7] = {
	    [FDN_REGION_PROCS] = (uint64_t)nprocs * sizeof(struct fdn_shm_proc),
	    [FDN_REGION_TSLOTS] = (uint64_t)nthreads * sizeof(struct fdn_shm_tslot),
	    [FDN_REGION_BUCKETS] = nb * sizeof(uint64_t),
	    [FDN_REGION_PAGES] = (uint64_t)npages * sizeof(struct fdn_shm_page),
	    [FDN_REGION_BSTATE] = (uint64_t)npages * FDN_PAGE_GRANULES * sizeof(uint64_t),
	    [FDN_REGION_HEAP] = (uint64_t)npages * FDN_PAGE_SIZE,
	    [FDN_REGION_GRAVEYARD] = (uint64_t)FDN_GRAVEYARD_MAX * sizeof(struct fdn_shm_death),
	};
	for (int i = 0; i < 7; i++) {
		r[i].off = off;
		r[i].size = sizes[i];
		off = fdn__align_page(off + sizes[i]);
	}
	memset(svc, 0, sizeof(*svc) * FDN_NSVC_REGIONS);
	const uint64_t svc_sizes[FDN_NSVC] = {
	    [FDN_SVC_TRACE] = (uint64_t)c->ntrace * sizeof(struct fdn_shm_trace),
	    [FDN_SVC_GHOSTS] = (uint64_t)FDN_GHOSTS_MAX * sizeof(struct fdn_shm_trace),
	    [FDN_SVC_FLAGS] = FDN_FLAGS_REGION_SIZE,
	    [FDN_SVC_EVENTS] = (uint64_t)c->nevents * FDN_EVENT_SIZE,
	    [FDN_SVC_TELEMETRY] = FDN_TELEMETRY_REGION_SIZE,
	    [FDN_SVC_CHANGES] = (uint64_t)c->nchanges * sizeof(struct fdn_shm_change),
	};
	for (int i = 0; i < FDN_NSVC; i++) {
		if (svc_sizes[i] == 0)
			continue; /* absent (no change log): offset and size 0 */
		svc[i].off = off;
		svc[i].size = svc_sizes[i];
		off = fdn__align_page(off + svc_sizes[i]);
	}
	*total = off;
	return 0;
}

/* A signature of every shared struct's size and field offsets and of every
 * constant of the format: two builds agree on it only if they read the
 * segment the same way. */
uint64_t fdn__layout_signature(void)
{
#define S(T)    sizeof(struct T)
#define O(T, f) offsetof(struct T, f)
	const uint64_t v[] = {
	    S(fdn_shm_header),
	    O(fdn_shm_header, init_state),
	    O(fdn_shm_header, hash_seed),
	    O(fdn_shm_header, nprocs),
	    O(fdn_shm_header, regions),
	    O(fdn_shm_header, gp_ctr),
	    O(fdn_shm_header, pidns_ino),
	    O(fdn_shm_header, destroyed),
	    O(fdn_shm_header, fresh_page_hint),
	    O(fdn_shm_header, tables),
	    S(fdn_shm_table),
	    O(fdn_shm_table, nbuckets),
	    O(fdn_shm_table, buckets_off),
	    S(fdn_shm_proc),
	    O(fdn_shm_proc, ident),
	    O(fdn_shm_proc, uid),
	    O(fdn_shm_proc, uncounted),
	    S(fdn_shm_tslot),
	    O(fdn_shm_tslot, ctr),
	    O(fdn_shm_tslot, node),
	    O(fdn_shm_tslot, old),
	    O(fdn_shm_tslot, delta),
	    O(fdn_shm_tslot, limbo),
	    O(fdn_shm_tslot, stamp),
	    O(fdn_shm_header, gp_done),
	    O(fdn_shm_header, tslot_hwm),
	    S(fdn_shm_page),
	    S(fdn_shm_node),
	    O(fdn_shm_node, hash),
	    O(fdn_shm_node, gen),
	    O(fdn_shm_node, key_info),
	    O(fdn_shm_node, val_len),
	    O(fdn_shm_node, data),
	    FDN_GRANULE,
	    FDN_PAGE_SIZE,
	    FDN_NCLASSES,
	    FDN_MAX_TABLES,
	    FDN_LIMBO_MAX,
	    FDN_LINK_MARK,
	    FDN_KEY_MAX,
	    FDN_VALUE_MAX,
	    sizeof(uint64_t),
	    O(fdn_shm_header, indexed),
	    O(fdn_shm_header, changes),
	    O(fdn_shm_header, reaper_lease),
	    O(fdn_shm_header, graveyard_head),
	    S(fdn_shm_death),
	    O(fdn_shm_death, died_ns),
	    O(fdn_shm_table, flags),
	    FDN_MAX_INDEXED,
	    FDN_INDEXED_NAME_MAX,
	    FDN_GRAVEYARD_MAX,
	    FDN_PREFIX_SPREAD,
	    FDN_PREFIX_SPREAD_WIDE,
	    FDN_PREFIX_SPREAD_MAX,
	    FDN_PREFIX_LEVELS,
	    O(fdn_shm_header, prefix_levels),
	    O(fdn_shm_header, ntrace),
	    O(fdn_shm_header, svc),
	    O(fdn_shm_header, ghost_head),
	    O(fdn_shm_header, flags_hdr),
	    O(fdn_shm_header, telemetry_hdr),
	    FDN_NSVC_REGIONS,
	    S(fdn_shm_change),
	    O(fdn_shm_change, key),
	    O(fdn_shm_tslot, chg),
	    O(fdn_shm_header, chg_hdr),
	    S(fdn_shm_chg_hdr),
	    O(fdn_shm_chg_hdr, nslots),
	    S(fdn_shm_trace),
	    O(fdn_shm_trace, owner),
	    O(fdn_shm_trace, depth),
	    O(fdn_shm_trace, ctx_len),
	    O(fdn_shm_trace, spans),
	    O(fdn_shm_trace, crumbs),
	    O(fdn_shm_trace, ctx),
	    S(fdn_shm_span),
	    O(fdn_shm_span, status),
	    O(fdn_shm_span, name),
	    O(fdn_shm_span, attrs),
	    S(fdn_shm_crumb),
	    O(fdn_shm_crumb, attrs),
	    FDN_SPAN_DEPTH_MAX,
	    FDN_CRUMBS_MAX,
	    FDN_GHOSTS_MAX,
	    FDN_FLAGS_REGION_SIZE,
	    FDN_EVENT_SIZE,
	    FDN_TELEMETRY_REGION_SIZE,
	    S(fdn_shm_flags_hdr),
	    O(fdn_shm_flags_hdr, lock),
	    O(fdn_shm_flags_hdr, hist_total),
	    O(fdn_shm_flags_hdr, nflags),
	    O(fdn_shm_flags_hdr, builtin_default),
	    S(fdn_shm_flag),
	    O(fdn_shm_flag, name),
	    S(fdn_shm_flag_rec),
	    O(fdn_shm_flag_rec, flag),
	    O(fdn_shm_flag_rec, reason),
	    S(fdn_shm_flags_journal),
	    O(fdn_shm_flags_journal, builtin),
	    O(fdn_shm_flags_journal, ops),
	    O(fdn_shm_flags, history),
	    O(fdn_shm_flags, journal),
	    FDN_FLAG_SLOTS,
	    FDN_FLAGS_BUILTIN,
	    FDN_FLAG_HISTORY_LEN,
	    FDN_BUILTIN_STAGE_SHIFT,
	    S(fdn_shm_tel_hdr),
	    O(fdn_shm_tel_hdr, ring_lapped),
	    O(fdn_shm_tel_hdr, nospace),
	    S(fdn_shm_event),
	    O(fdn_shm_event, ticket),
	    O(fdn_shm_event, check),
	    O(fdn_shm_event, pid),
	    O(fdn_shm_event, body_len),
	    O(fdn_shm_event, flags),
	    O(fdn_shm_event, body),
	    FDN_REC_NAME_MAX,
	    FDN_REC_MEAS_NAME_MAX,
	    FDN_REC_MEAS_MAX,
	    S(fdn_shm_sampler),
	    O(fdn_shm_sampler, spec),
	    O(fdn_shm_sampler, window),
	    O(fdn_shm_sampler, prob),
	    O(fdn_shm_sampler, name),
	    S(fdn_shm_once),
	    O(fdn_shm_once, last),
	    O(fdn_shm_once, name),
	    O(fdn_shm_flags_journal, alert),
	    FDN_FLAGREC_ALERT,
	    O(fdn_shm_once, lock),
	    O(fdn_shm_once, interval_ms),
	    FDN_BATCH_IT_LOST,
	    S(fdn_shm_rate),
	    O(fdn_shm_rate, state),
	    O(fdn_shm_rate, window_ms),
	    O(fdn_shm_rate, name),
	    S(fdn_shm_batch),
	    O(fdn_shm_batch, ctl),
	    O(fdn_shm_batch, cfg),
	    O(fdn_shm_batch, name),
	    O(fdn_shm_batch, items),
	    FDN_TEL_SAMPLERS,
	    FDN_TEL_ONCE,
	    FDN_TEL_RATE,
	    FDN_TEL_BATCHES,
	    FDN_BATCH_ITEMS_MAX,
	    FDN_TEL_OFF_ONCE,
	    FDN_TEL_OFF_RATE,
	    FDN_TEL_OFF_BATCHES,
	};
#undef S
#undef O
	return XXH3_64bits(v, sizeof(v));
}

/* ---- a header before attach ---------------------------------------------- */

int fdn__validate_header(const struct fdn_shm_header *h, uint64_t file_size)
{
	if (file_size < FDN_HEADER_SIZE)
		return file_size == 0 ? FDN_EINIT : FDN_ETRUNC;
	uint32_t init = atomic_load_explicit(&h->init_state, memory_order_acquire);
	if (h->magic == 0 && init != FDN_INIT_READY)
		return FDN_EINIT;
	if (h->magic != FDN_MAGIC)
		return FDN_EMAGIC;
	if (h->abi_major != FDN_ABI_MAJOR)
		return FDN_EVERSION;
	if (init != FDN_INIT_READY)
		return init == FDN_INIT_BUSY ? FDN_EINIT : FDN_EBADSEG;
	if (h->layout_sig != fdn__layout_signature())
		return FDN_ELAYOUT;
	if (h->header_size != FDN_HEADER_SIZE || h->page_size != FDN_PAGE_SIZE ||
	    h->granule != FDN_GRANULE || h->nclasses != FDN_NCLASSES ||
	    h->limbo_max != FDN_LIMBO_MAX || h->ntables < 1 || h->ntables > FDN_MAX_TABLES)
		return FDN_EBADSEG;
	uint64_t nb[FDN_MAX_TABLES] = {0};
	uint64_t boff = h->regions[FDN_REGION_BUCKETS].off;
	for (uint32_t i = 0; i < h->ntables; i++) {
		const struct fdn_shm_table *t = &h->tables[i];
		if (memchr(t->name, 0, FDN_TABLE_NAME_MAX) == NULL || t->name[0] == 0 ||
		    t->id != i || (t->flags & ~(uint32_t)FDN_TABLE_PREFIX_HASH) != 0)
			return FDN_EBADSEG;
		if (t->buckets_off != boff)
			return FDN_EBADSEG;
		nb[i] = t->nbuckets;
		if (nb[i] < 2 || nb[i] > FDN_MAX_BUCKETS || (nb[i] & (nb[i] - 1)))
			return FDN_EBADSEG;
		boff += nb[i] * sizeof(uint64_t);
	}
	for (uint32_t i = 0; i < FDN_MAX_INDEXED; i++)
		if (memchr(h->indexed[i], 0, FDN_INDEXED_NAME_MAX) == NULL)
			return FDN_EBADSEG;
	struct fdn__caps c = {
	    .nprocs = h->nprocs,
	    .nthreads = h->nthreads,
	    .npages = h->npages,
	    .ntables = h->ntables,
	    .ntrace = h->ntrace,
	    .nevents = h->nevents,
	    .nchanges = ((const struct fdn_shm_chg_hdr *)(const void *)h->chg_hdr)->nslots};
	memcpy(c.nbuckets, nb, sizeof(c.nbuckets));
	struct fdn_shm_region r[FDN_NREGIONS], svc[FDN_NSVC_REGIONS];
	uint64_t total;
	if (fdn__layout_compute(&c, r, svc, &total))
		return FDN_EBADSEG;
	if (memcmp(r, h->regions, sizeof(r)) != 0 || memcmp(svc, h->svc, sizeof(svc)) != 0)
		return FDN_EBADSEG;
	if (h->total_size != total)
		return FDN_EBADSEG;
	if (file_size < total)
		return FDN_ETRUNC;
	/* Longer only as a hugetlbfs file is: rounded up to its huge page
	 * size (2 MiB or 1 GiB). */
	if (file_size > total &&
	    (file_size % (2u << 20) != 0 || file_size - total >= (uint64_t)1 << 30))
		return FDN_EBADSEG;
	return 0;
}
