/*
 * check.c - the full audit of a segment (fdn_segment_check).
 *
 * Reads only; every index is bounds-checked and every walk bounded by the
 * number of heap granules, so any corruption yields violations, never a
 * crash or a hang.  The invariants, in the order they are checked:
 *   header    attach's validation holds (and nothing below runs if not)
 *   proc      claim words well-formed; a LIVE slot's process is alive
 *   tslot     state well-formed; a used slot's owner slot is in use; a free
 *             slot has ctr 0, empty limbo, no op; ctr <= gp_ctr; at most
 *             one op in flight per slot
 *   page      class in range
 *   block     kinds valid; only block starts carry state; gidx 0 reserved
 *   chain     every node is an allocated block start that holds it, with
 *             the right table, hash, bucket, generation, in strict order,
 *             reached once; a marked node is linked only while its marker
 *             has an op in flight
 *   limbo     retired blocks are unreachable and in one limbo only
 *   leak      every allocated block is reachable, in a limbo, or the new
 *             node of an op in flight -- exactly one owner
 *   count     per table, the sum of the slots' counts = live nodes (when no
 *             op is in flight on it)
 *
 * Exact only at a quiescent point (no operation in flight, no reaper at
 * work: foundation/segment.h).  The audit is not a snapshot: it holds no
 * read-side section (a read-only handle has no reader slot) and reads each
 * word once, each at its own moment, so a writer running meanwhile can make
 * it report a state that never existed at any one instant.  The typical
 * case: the walk loads a link to node N; a writer then unlinks N (it was
 * marked), puts it in its limbo and ends its op; the walk then loads N.next
 * (marked: a marked next word never changes) and the marker's op record
 * (ended) -- "node N: deleted but still linked, no op in flight" -- and N,
 * which it counted as reachable, is found in the limbo: "block N: retired
 * but still reachable".  Both, for the same N, is the signature of a check
 * that raced a writer (a standalone program looping this check against a
 * process that upserts and deletes reports the pair within seconds; a
 * check after the writer stopped is clean), as are count differences.
 * No memory order removes it: the link and the next word are different
 * words, and no order makes two loads one instant.  Callers that need an
 * exact answer check once writers and the reaper are idle (stress/stress.h
 * st_settle, tests/common.h t_settle).
 */
#include "shm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

enum { OWN_REACH = 1, OWN_LIMBO = 2, OWN_INFLIGHT = 4 };

struct fdn__ck {
	fdn_segment *s;
	struct fdn__audit au;
	uint8_t *own; /* per granule */
	bool op_on_table[FDN_MAX_TABLES];
};

void fdn__violation(struct fdn__audit *a, const char *code, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	a->n++;
	if (a->cb)
		a->cb(a->arg, code, msg);
}

/* A note: reported through the callback with code "note", not counted. */
__attribute__((format(printf, 2, 3))) static void fdn__note(struct fdn__audit *a, const char *fmt,
							    ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (a->cb)
		a->cb(a->arg, "note", msg);
}

/*
 * A LIVE slot whose process the kernel says is dead is normal for a moment:
 * the reaper marks it DEAD when its pidfd fires, microseconds to (on a busy
 * machine) a few hundred milliseconds later.  So while a live reaper holds
 * the lease the checker gives it FDN_CHECK_PENDING_MS: a slot the reaper
 * takes up in that time (its word changes) is a note, "dead, reclamation
 * pending"; one it has not taken up by then, or any such slot with no live
 * reaper (or one that does not map this segment: a copy's), is the
 * violation "dead and not reclaimed".  (The checker cannot
 * see when a process died; a death the reaper missed for longer is still
 * found: it is not taken up in the second the checker waits.)
 */
#define FDN_CHECK_PENDING_MS 1000u

static void fdn__check_procs(struct fdn__ck *ck)
{
	fdn_segment *s = ck->s;
	uint32_t pending[16], npending = 0;
	uint64_t pword[16];
	uint64_t lease = atomic_load_explicit(&s->hdr->reaper_lease, memory_order_acquire);
	bool reaper = lease != 0 && FDN_PROC_STATE(lease) == FDN_PROC_LIVE &&
		      fdn__pid_alive((pid_t)FDN_PROC_PID(lease), FDN_PROC_IDENT40(lease));
	bool asked = false;
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint64_t w = atomic_load_explicit(&s->procs[i].word, memory_order_acquire);
		if (w == 0)
			continue;
		unsigned st = FDN_PROC_STATE(w);
		if (st == FDN_PROC_FREE)
			fdn__violation(&ck->au, "proc", "process slot %u: invalid state %u", i, st);
		else if (FDN_PROC_PID(w) == 0)
			fdn__violation(&ck->au, "proc", "process slot %u: pid 0", i);
		else if (st == FDN_PROC_LIVE && !fdn__proc_alive(s, i, w)) {
			if (reaper && !asked) {
				asked = true;
				/* A copy of a segment carries the lease of the
				 * original's reaper, which never takes up the
				 * copy's deaths: no wait for those. */
				reaper = fdn__pid_maps((pid_t)FDN_PROC_PID(lease), (uint64_t)s->dev,
						       (uint64_t)s->ino) != 0;
			}
			if (reaper && npending < 16) {
				pending[npending] = i;
				pword[npending++] = w;
			} else {
				fdn__violation(&ck->au, "dead",
					       "process slot %u: pid %u is dead and not reclaimed",
					       i, FDN_PROC_PID(w));
			}
		}
	}
	uint64_t start = fdn__mono_ns() / 1000000u;
	for (uint32_t k = 0; k < npending; k++) {
		uint32_t i = pending[k];
		for (;;) {
			uint64_t w = atomic_load_explicit(&s->procs[i].word, memory_order_acquire);
			uint64_t waited = fdn__mono_ns() / 1000000u - start;
			if (w != pword[k]) {
				fdn__note(
				    &ck->au,
				    "process slot %u: pid %u dead, reclamation pending (taken "
				    "up by the reaper within %llu ms)",
				    i, FDN_PROC_PID(pword[k]), (unsigned long long)waited);
				break;
			}
			if (waited >= FDN_CHECK_PENDING_MS) {
				fdn__violation(&ck->au, "dead",
					       "process slot %u: pid %u is dead and not reclaimed "
					       "(the reaper did not take it up in %u ms)",
					       i, FDN_PROC_PID(pword[k]), FDN_CHECK_PENDING_MS);
				break;
			}
			struct timespec ts = {0, 2000000};
			nanosleep(&ts, NULL);
		}
	}
}

static void fdn__check_tslots(struct fdn__ck *ck)
{
	fdn_segment *s = ck->s;
	uint64_t gp = atomic_load(&s->hdr->gp_ctr);
	for (uint32_t i = 0; i < s->nthreads; i++) {
		struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t st = atomic_load_explicit(&ts->state, memory_order_seq_cst);
		/* Walks for the slots in use stop at the high-water mark
		 * (fdn__tslot_bound), which a claimer raises before its claim:
		 * read after the state, it covers any slot seen in use. */
		uint32_t hwm;
		if (st != 0 && i >= (hwm = fdn__tslot_bound(s)))
			fdn__violation(&ck->au, "tslot",
				       "reader slot %u in use above the high-water mark %u", i,
				       hwm);
		uint64_t ctr = atomic_load_explicit(&ts->ctr, memory_order_relaxed);
		uint64_t lc = fdn_tslot_pending(ts);
		unsigned ops = 0;
		for (uint32_t t = 0; t < s->ntables; t++) {
			unsigned op = FDN_DELTA_OP(atomic_load(&ts->delta[t]));
			if (op > FDN_OP_DELETE)
				fdn__violation(&ck->au, "tslot",
					       "reader slot %u: invalid op %u on table %u", i, op,
					       t);
			if (op != FDN_OP_NONE) {
				ops++;
				ck->op_on_table[t] = true;
			}
		}
		if (ctr > gp)
			fdn__violation(&ck->au, "tslot",
				       "reader slot %u: ctr %llu ahead of gp_ctr %llu", i,
				       (unsigned long long)ctr, (unsigned long long)gp);
		if (lc > FDN_LIMBO_MAX)
			fdn__violation(&ck->au, "tslot", "reader slot %u: limbo count %llu", i,
				       (unsigned long long)lc);
		if (st == 0) {
			if (ctr != 0 || lc != 0 || ops != 0 || atomic_load(&ts->spill) != 0 ||
			    atomic_load(&ts->spill_count) != 0 || atomic_load(&ts->spill_dead) != 0)
				fdn__violation(&ck->au, "tslot", "free reader slot %u holds state",
					       i);
			continue;
		}
		if ((FDN_TSLOT_KIND(st) != FDN_TSLOT_USED &&
		     FDN_TSLOT_KIND(st) != FDN_TSLOT_RETIRED) ||
		    (st >> 33 & 0x7FFFFF) != 0) {
			fdn__violation(&ck->au, "tslot", "reader slot %u: invalid state word", i);
			continue;
		}
		if (FDN_TSLOT_KIND(st) == FDN_TSLOT_RETIRED) {
			/* A departed thread's blocks, waiting for the reaper:
			 * no section, no operation, and something waiting. */
			if (ctr != 0 || ops != 0 || fdn__limbo_waiting(ts) == 0)
				fdn__violation(&ck->au, "tslot",
					       "retired reader slot %u holds state", i);
			continue;
		}
		uint32_t owner = FDN_TSLOT_OWNER(st);
		if (owner >= s->nprocs || atomic_load(&s->procs[owner].word) == 0)
			fdn__violation(&ck->au, "tslot",
				       "reader slot %u: owner process slot %u is not in use", i,
				       owner);
		if (ops > 1)
			fdn__violation(&ck->au, "tslot", "reader slot %u: %u ops in flight", i,
				       ops);
	}
}

/* Pages and block words; marks nothing, counts nothing. */
static void fdn__check_blocks(struct fdn__ck *ck)
{
	fdn_segment *s = ck->s;
	for (uint32_t p = 0; p < s->npages; p++) {
		uint32_t cls = atomic_load(&s->pages[p].cls);
		if (cls > FDN_NCLASSES) {
			fdn__violation(&ck->au, "page", "page %u: invalid class %u", p, cls);
			continue;
		}
		uint32_t step = cls ? 1u << (cls - 1) : FDN_PAGE_GRANULES + 1;
		for (uint32_t k = 0; k < FDN_PAGE_GRANULES; k++) {
			uint64_t g = (uint64_t)p * FDN_PAGE_GRANULES + k;
			uint64_t w = atomic_load_explicit(&s->bstate[g], memory_order_relaxed);
			bool start = cls && k % step == 0;
			if (!start) {
				if (w != 0)
					fdn__violation(&ck->au, "block",
						       "granule %llu: state on a non-block granule",
						       (unsigned long long)g);
				continue;
			}
			unsigned kind = FDN_BLOCK_KIND(w);
			if (g == 0 ? kind != FDN_BLOCK_RESERVED
				   : (kind != FDN_BLOCK_FREE && kind != FDN_BLOCK_ALLOC))
				fdn__violation(&ck->au, "block", "block %llu: invalid kind %u",
					       (unsigned long long)g, kind);
			else if (kind == FDN_BLOCK_FREE &&
				 atomic_load(&((struct fdn_shm_node *)fdn__gptr(s, g))->next) != 0)
				fdn__violation(&ck->au, "block",
					       "free block %llu: first word not zero",
					       (unsigned long long)g);
		}
	}
}

static bool fdn__slot_has_op(const fdn_segment *s, uint32_t marker)
{
	if (marker == 0 || marker > s->nthreads)
		return false;
	const struct fdn_shm_tslot *ts = &s->tslots[marker - 1];
	for (uint32_t t = 0; t < s->ntables; t++)
		if (FDN_DELTA_OP(atomic_load(&ts->delta[t])) != FDN_OP_NONE)
			return true;
	return false;
}

/* One node met on a chain: checks it and whether the chain can go on. */
static bool fdn__check_node(struct fdn__ck *ck, uint32_t t, uint64_t b, uint32_t g,
			    const struct fdn_shm_node **prev, uint64_t *live)
{
	fdn_segment *s = ck->s;
	uint32_t bsize = fdn__block_size(s, g);
	const struct fdn_shm_node *n = fdn__node(s, g);
	if (!bsize || !n) {
		fdn__violation(&ck->au, "chain", "table %u bucket %llu: link to invalid block %u",
			       t, (unsigned long long)b, g);
		return false;
	}
	if (ck->own[g] & OWN_REACH) {
		fdn__violation(&ck->au, "chain",
			       "table %u bucket %llu: node %u reached twice (cycle)", t,
			       (unsigned long long)b, g);
		return false;
	}
	ck->own[g] |= OWN_REACH;
	uint64_t w = atomic_load(&s->bstate[g]);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC)
		fdn__violation(&ck->au, "chain", "table %u: node %u is not an allocated block", t,
			       g);
	else if (FDN_BLOCK_GEN(w) != n->gen)
		fdn__violation(&ck->au, "node", "node %u: generation %u, block says %u", g, n->gen,
			       FDN_BLOCK_GEN(w));
	if (fdn__node_bytes(fdn_node_key_len(n), n->val_len) > bsize)
		fdn__violation(&ck->au, "node", "node %u: %u bytes in a %u-byte block", g,
			       fdn__node_bytes(fdn_node_key_len(n), n->val_len), bsize);
	if (n->key_info & ~(FDN_NODE_KEY_MASK | (0xFu << FDN_NODE_TABLE_SHIFT)))
		fdn__violation(&ck->au, "node", "node %u: key_info 0x%x has reserved bits set", g,
			       (unsigned)n->key_info);
	if (fdn_node_table(n) != t)
		fdn__violation(&ck->au, "node", "node %u: table %u, linked in table %u", g,
			       fdn_node_table(n), t);
	if (fdn__ht_hash(s, t, n->data, fdn_node_key_len(n)) != n->hash)
		fdn__violation(&ck->au, "node", "node %u: hash does not match its key", g);
	else if ((n->hash & s->bucket_mask[t]) != b)
		fdn__violation(&ck->au, "node", "node %u: in bucket %llu, hash says %llu", g,
			       (unsigned long long)b,
			       (unsigned long long)(n->hash & s->bucket_mask[t]));
	uint64_t nx = atomic_load(&n->next);
	if (FDN_LINK_MARKED(nx)) {
		if (!fdn__slot_has_op(s, FDN_LINK_MARKER(nx)))
			fdn__violation(&ck->au, "chain",
				       "node %u: deleted but still linked, no op in flight", g);
	} else {
		(*live)++;
		if (*prev) {
			const struct fdn_shm_node *p = *prev;
			uint32_t pkl = fdn_node_key_len(p), nkl = fdn_node_key_len(n);
			int c = p->hash != n->hash ? (p->hash < n->hash ? -1 : 1)
				: pkl != nkl       ? (pkl < nkl ? -1 : 1)
						   : memcmp(p->data, n->data, nkl);
			if (c == 0)
				fdn__violation(&ck->au, "duplicate",
					       "table %u: key held by two live nodes (%u)", t, g);
			else if (c > 0)
				fdn__violation(&ck->au, "order",
					       "table %u bucket %llu: chain out of order at %u", t,
					       (unsigned long long)b, g);
		}
		*prev = n;
	}
	return true;
}

static void fdn__check_tables(struct fdn__ck *ck)
{
	fdn_segment *s = ck->s;
	uint64_t steps = 0;
	for (uint32_t t = 0; t < s->ntables; t++) {
		uint64_t live = 0, nb = s->bucket_mask[t] + 1;
		for (uint64_t b = 0; b < nb; b++) {
			uint64_t w = atomic_load(&s->buckets[t][b]);
			if (FDN_LINK_MARKED(w) || FDN_LINK_MARKER(w))
				fdn__violation(&ck->au, "chain",
					       "table %u bucket %llu: marked head", t,
					       (unsigned long long)b);
			const struct fdn_shm_node *prev = NULL;
			while (FDN_LINK_GIDX(w)) {
				uint32_t g = FDN_LINK_GIDX(w);
				if (++steps > s->ngranules) {
					fdn__violation(&ck->au, "chain",
						       "more links than blocks: giving up");
					return;
				}
				if (!fdn__check_node(ck, t, b, g, &prev, &live))
					break;
				w = atomic_load(&((struct fdn_shm_node *)fdn__gptr(s, g))->next);
			}
		}
		int64_t sum = fdn__ht_count(s, t);
		if (!ck->op_on_table[t] && sum != (int64_t)live)
			fdn__violation(&ck->au, "count",
				       "table %u: counters say %lld entries, chains hold %llu", t,
				       (long long)sum, (unsigned long long)live);
	}
}

/* Limbo entry e of reader slot i (in its ring, or in one of its chunks:
 * `spilled`).  The ring's entries may also sit in the slot's newest chunk
 * (a death between a spill's link and its ring store): not "two limbos". */
static void fdn__check_entry(struct fdn__ck *ck, uint32_t i, uint64_t e, bool spilled,
			     const struct fdn_shm_spill *newest)
{
	fdn_segment *s = ck->s;
	uint32_t g = (uint32_t)(e >> 32), gen = (uint32_t)e;
	if (!fdn__block_size(s, g) || g == 0) {
		fdn__violation(&ck->au, "limbo", "reader slot %u: limbo entry %u is no block", i,
			       g);
		return;
	}
	uint64_t w = atomic_load(&s->bstate[g]);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || FDN_BLOCK_GEN(w) != gen)
		return; /* already freed: a redone free skips it */
	if (ck->own[g] & OWN_REACH)
		fdn__violation(&ck->au, "limbo", "block %u: retired but still reachable", g);
	if (ck->own[g] & OWN_LIMBO) {
		bool twin = false;
		uint32_t n = newest ? atomic_load(&newest->count) : 0;
		for (uint32_t k = 0; !spilled && k < n && k < FDN_LIMBO_MAX; k++)
			twin |= atomic_load(&newest->limbo[k]) == e;
		if (!twin)
			fdn__violation(&ck->au, "limbo", "block %u: in two limbos", g);
	}
	ck->own[g] |= OWN_LIMBO;
}

/* Spill chunk `l` of reader slot i, read from *at, and its entries (NULL:
 * no chunk).  A live owner unlinks a chunk before it frees it: a link that
 * no longer names a chunk and is no longer in *at was a chunk being
 * dropped while we looked, not damage. */
static const struct fdn_shm_spill *fdn__check_chunk(struct fdn__ck *ck, uint32_t i, uint64_t l,
						    const _Atomic uint64_t *at)
{
	const struct fdn_shm_spill *c = fdn__spill_chunk(ck->s, l);
	if (!c) {
		if (!at || atomic_load(at) == l)
			fdn__violation(&ck->au, "limbo", "reader slot %u: spill link to no chunk",
				       i);
		return NULL;
	}
	uint32_t g = (uint32_t)(l >> 32), n = atomic_load(&c->count);
	if (ck->own[g])
		fdn__violation(&ck->au, "limbo", "block %u: a spill chunk held twice", g);
	ck->own[g] |= OWN_LIMBO;
	if (n > FDN_LIMBO_MAX) {
		fdn__violation(&ck->au, "limbo", "spill chunk %u: %u entries", g, n);
		n = 0;
	}
	for (uint32_t j = 0; j < n; j++)
		fdn__check_entry(ck, i, atomic_load(&c->limbo[j]), true, NULL);
	return c;
}

/* Reader slot i's spill chunks (limbo.c, "Spill"); returns the newest. */
static const struct fdn_shm_spill *fdn__check_spill(struct fdn__ck *ck, uint32_t i)
{
	fdn_segment *s = ck->s;
	struct fdn_shm_tslot *ts = &s->tslots[i];
	const struct fdn_shm_spill *newest = NULL, *c;
	uint64_t dead = atomic_load(&ts->spill_dead);
	bool dead_linked = false;
	unsigned k = 0;
	const _Atomic uint64_t *at = &ts->spill;
	for (uint64_t l = atomic_load(at); l; at = &c->next, l = atomic_load(at)) {
		if (++k > s->spill_max + 1) {
			fdn__violation(&ck->au, "limbo",
				       "reader slot %u: more spill chunks than its bound", i);
			break;
		}
		if (!(c = fdn__check_chunk(ck, i, l, at)))
			break;
		dead_linked |= l == dead;
		if (!newest)
			newest = c;
	}
	/* A chunk being dropped, already unlinked, until it is freed. */
	if (dead && !dead_linked && fdn__spill_chunk(s, dead))
		fdn__check_chunk(ck, i, dead, NULL);
	/* A chunk claimed and not linked yet. */
	uint64_t ng = atomic_load(&ts->spill_new);
	if (ng && ng < s->ngranules) {
		uint64_t w = atomic_load(&s->bstate[ng]);
		if (FDN_BLOCK_KIND(w) == FDN_BLOCK_ALLOC && FDN_BLOCK_OWNER(w) == i + 1)
			ck->own[ng] |= OWN_INFLIGHT;
	}
	return newest;
}

static void fdn__check_ownership(struct fdn__ck *ck)
{
	fdn_segment *s = ck->s;
	for (uint32_t i = 0; i < s->nthreads; i++) {
		struct fdn_shm_tslot *ts = &s->tslots[i];
		if (atomic_load(&ts->state) == 0)
			continue;
		const struct fdn_shm_spill *newest = fdn__check_spill(ck, i);
		uint64_t head = atomic_load(&ts->limbo_head), lc = fdn_tslot_pending(ts);
		for (uint64_t k = 0; k < lc && k < FDN_LIMBO_MAX; k++)
			fdn__check_entry(ck, i, atomic_load(&ts->limbo[(head + k) % FDN_LIMBO_MAX]),
					 false, newest);
		if (fdn__slot_has_op(s, i + 1)) {
			uint64_t g = atomic_load(&ts->node);
			if (g && g < s->ngranules) {
				uint64_t w = atomic_load(&s->bstate[g]);
				if (FDN_BLOCK_KIND(w) == FDN_BLOCK_ALLOC &&
				    FDN_BLOCK_OWNER(w) == i + 1)
					ck->own[g] |= OWN_INFLIGHT;
			}
		}
	}
	for (uint64_t g = 1; g < s->ngranules; g++) {
		uint64_t w = atomic_load_explicit(&s->bstate[g], memory_order_relaxed);
		if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || !fdn__block_size(s, g))
			continue;
		if (ck->own[g] == 0)
			fdn__violation(&ck->au, "leak",
				       "block %llu (allocated by reader slot %u) has no owner",
				       (unsigned long long)g, FDN_BLOCK_OWNER(w) - 1);
	}
}

int fdn__seg_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	if (!s)
		return FDN_EINVAL;
	struct fdn__ck ck = {.s = s, .au = {cb, arg, 0}};
	int r = fdn__validate_header(s->hdr, s->size);
	if (r) {
		fdn__violation(&ck.au, "header", "%s", fdn__strerror(r));
		return ck.au.n;
	}
	ck.own = calloc(s->ngranules, 1);
	if (!ck.own)
		return -ENOMEM;
	fdn__check_procs(&ck);
	fdn__check_tslots(&ck);
	fdn__check_blocks(&ck);
	fdn__check_tables(&ck);
	fdn__check_ownership(&ck);
	free(ck.own);
	return ck.au.n;
}
