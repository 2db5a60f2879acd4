/*
 * alloc.c - the block allocator of the heap.
 *
 * The heap is npages pages of 64 KiB.  A page is given a size class (block
 * size 64 << c) by one CAS the first time it is needed and keeps it.  Each
 * block has a state word (layout.h) and the allocation of a block is the CAS
 * FREE(g) -> ALLOC(g + 1, owner) on that word: claim and ownership are one
 * atomic step, so no block is ever "taken but unowned".
 *
 * Crash consistency.  Before the CAS the thread writes the candidate's gidx
 * to its reader slot's `node` field (`spill_new` for a spill chunk, limbo.c);
 * a thread killed after the CAS therefore always leaves the block named in
 * its slot, and the reclaimer recognises it
 * by the owner field (reclaim.c).  Freeing is the CAS ALLOC(g) -> FREE(g)
 * done by the single party responsible for the block (its limbo holder, or
 * its allocator if it was never published); the generation makes a repeated
 * free a no-op.  Word 0 of every FREE block is zero (fdn__free zeroes it
 * before the CAS; the heap starts zero-filled), so a freshly claimed block
 * never shows a stale link.
 *
 * Search.  Each thread keeps a private current page per class.  When it is
 * full the thread looks for another page of the class whose free_hint is
 * non-zero, then claims a never-used page, then scans every page of the
 * class ignoring hints, and only then reports FDN_ENOSPACE.  Every loop is
 * bounded by npages and the blocks per page.  Pages never change class:
 * a heap churned through many sizes can report no space for one class while
 * another has room (fdn_segment_stats shows the pages per class).
 *
 * Memory orders on a weak machine (arm64).  A free is the release CAS
 * ALLOC -> FREE after zeroing word 0; the claim is a seq_cst CAS that
 * reads that value, so it acquires the zeroed word (and every write of
 * the block's last holder).  Page classes are set by CAS and loaded with
 * acquire before a block size is computed from them.  The relaxed
 * accesses are hints that a CAS re-checks (a block's state before its
 * claim, a page's class before the class CAS, free_hint and
 * fresh_page_hint: stale, they cost a failed CAS or a page visited in
 * vain), the claim intent in the reader slot (ordered before the claim by
 * the seq_cst CAS, see fdn__try_claim), and the zeroed word before the
 * releasing CAS.
 */
#include "shm.h"

int fdn__size_class(uint32_t bytes)
{
	for (int c = 0; c < (int)FDN_NCLASSES; c++)
		if (bytes <= (FDN_GRANULE << c))
			return c;
	return -1;
}

uint32_t fdn__block_size(const fdn_segment *s, uint64_t gidx)
{
	uint64_t p = gidx / FDN_PAGE_GRANULES;
	if (p >= s->npages)
		return 0;
	uint32_t cls = atomic_load_explicit(&s->pages[p].cls, memory_order_acquire);
	if (cls == 0 || cls > FDN_NCLASSES)
		return 0;
	uint32_t step = 1u << (cls - 1);
	if ((gidx % FDN_PAGE_GRANULES) % step != 0)
		return 0;
	return step * FDN_GRANULE;
}

static bool fdn__try_claim(struct fdn__thread *t, _Atomic uint64_t *intent, uint64_t gidx,
			   uint32_t *gen)
{
	fdn_segment *s = t->seg;
	uint64_t w = atomic_load_explicit(&s->bstate[gidx], memory_order_relaxed);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_FREE)
		return false;
	/* Intent first: the claim below must never be unrecorded. */
	atomic_store_explicit(intent, gidx, memory_order_relaxed);
	uint32_t g = FDN_BLOCK_GEN(w) + 1;
	uint64_t nw = FDN_BLOCK_WORD(g, t->slot + 1, FDN_BLOCK_ALLOC);
	/* seq_cst: orders the intent store before the claim, and the claim
	 * before our writes into the block. */
	if (!atomic_compare_exchange_strong(&s->bstate[gidx], &w, nw))
		return false;
	/* Release: our writes into the block come after the claim for every
	 * reader too.  A read-only handle copies a node and keeps the copy only
	 * if the state word did not change meanwhile (registry.c, ro_copy): if
	 * its copy read any byte written below, its acquire fence pairs with
	 * this one and it sees our claim. */
	atomic_thread_fence(memory_order_release);
	atomic_fetch_sub_explicit(&s->pages[gidx / FDN_PAGE_GRANULES].free_hint, 1,
				  memory_order_relaxed);
	*gen = g;
	return true;
}

/* Scan page p (of class c) from block `from`, wrapping around once. */
static bool fdn__claim_in_page(struct fdn__thread *t, _Atomic uint64_t *intent, uint32_t p, int c,
			       uint32_t from, uint32_t *gidx, uint32_t *gen)
{
	uint32_t step = 1u << c, nblocks = FDN_PAGE_GRANULES >> c;
	for (uint32_t k = 0; k < nblocks; k++) {
		uint32_t b = (from + k) % nblocks;
		uint64_t g = (uint64_t)p * FDN_PAGE_GRANULES + (uint64_t)b * step;
		if (fdn__try_claim(t, intent, g, gen)) {
			t->cur_page[c] = p;
			t->cur_block[c] = b + 1;
			*gidx = (uint32_t)g;
			return true;
		}
	}
	return false;
}

static bool fdn__page_is(const fdn_segment *s, uint32_t p, int c)
{
	return atomic_load_explicit(&s->pages[p].cls, memory_order_acquire) == (uint32_t)c + 1;
}

static bool fdn__page_hint_free(const fdn_segment *s, uint32_t p)
{
	/* The hint may have drifted below zero (a crash between claim and
	 * decrement): treat huge values as "maybe". */
	return atomic_load_explicit(&s->pages[p].free_hint, memory_order_relaxed) != 0;
}

static bool fdn__claim_fresh_page(struct fdn__thread *t, _Atomic uint64_t *intent, int c,
				  uint32_t *gidx, uint32_t *gen)
{
	fdn_segment *s = t->seg;
	uint32_t h = atomic_load_explicit(&s->hdr->fresh_page_hint, memory_order_relaxed);
	if (h >= s->npages)
		h = 0;
	for (uint32_t k = 0; k < s->npages; k++) {
		uint32_t p = (h + k) % s->npages;
		uint32_t zero = 0;
		if (atomic_load_explicit(&s->pages[p].cls, memory_order_relaxed) != 0)
			continue;
		if (!atomic_compare_exchange_strong(&s->pages[p].cls, &zero, (uint32_t)c + 1))
			continue;
		atomic_store_explicit(&s->pages[p].free_hint, FDN_PAGE_GRANULES >> c,
				      memory_order_relaxed);
		atomic_store_explicit(&s->hdr->fresh_page_hint, p + 1, memory_order_relaxed);
		if (fdn__claim_in_page(t, intent, p, c, 0, gidx, gen))
			return true;
	}
	return false;
}

int fdn__alloc_as(struct fdn__thread *t, _Atomic uint64_t *intent, uint32_t bytes, uint32_t *gidx,
		  uint32_t *gen)
{
	fdn_segment *s = t->seg;
	int c = fdn__size_class(bytes);
	if (c < 0)
		return FDN_EINVAL;
	uint32_t cur = t->cur_page[c];
	if (cur < s->npages && fdn__page_is(s, cur, c) &&
	    fdn__claim_in_page(t, intent, cur, c, t->cur_block[c], gidx, gen))
		return 0;
	for (uint32_t k = 1; k <= s->npages; k++) {
		uint32_t p = (cur + k) % s->npages;
		if (fdn__page_is(s, p, c) && fdn__page_hint_free(s, p) &&
		    fdn__claim_in_page(t, intent, p, c, 0, gidx, gen))
			return 0;
	}
	if (fdn__claim_fresh_page(t, intent, c, gidx, gen))
		return 0;
	for (uint32_t p = 0; p < s->npages; p++)
		if (fdn__page_is(s, p, c) && fdn__claim_in_page(t, intent, p, c, 0, gidx, gen))
			return 0;
	atomic_store_explicit(intent, 0, memory_order_relaxed);
	return FDN_ENOSPACE;
}

int fdn__alloc(struct fdn__thread *t, uint32_t bytes, uint32_t *gidx, uint32_t *gen)
{
	return fdn__alloc_as(t, &t->ts->node, bytes, gidx, gen);
}

/* ALLOC(gen) -> FREE(left): the block's next claim makes it left + 1. */
static bool fdn__free_as(fdn_segment *s, uint32_t gidx, uint32_t gen, uint32_t left)
{
	if (gidx == 0 || gidx >= s->ngranules)
		return false;
	uint64_t w = atomic_load_explicit(&s->bstate[gidx], memory_order_acquire);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || FDN_BLOCK_GEN(w) != gen)
		return false;
	/* Only the party responsible for this (gidx, gen) frees it, so nobody
	 * else writes the block between the check above and the CAS below. */
	struct fdn_shm_node *n = fdn__gptr(s, gidx);
	atomic_store_explicit(&n->next, 0, memory_order_relaxed);
	/* release: the zeroed word is visible before the block can be claimed */
	if (!atomic_compare_exchange_strong_explicit(&s->bstate[gidx], &w,
						     FDN_BLOCK_WORD(left, 0, FDN_BLOCK_FREE),
						     memory_order_release, memory_order_relaxed))
		return false;
	atomic_fetch_add_explicit(&s->pages[gidx / FDN_PAGE_GRANULES].free_hint, 1,
				  memory_order_relaxed);
	return true;
}

bool fdn__free(fdn_segment *s, uint32_t gidx, uint32_t gen)
{
	return fdn__free_as(s, gidx, gen, gen);
}

bool fdn__free_unpublished(fdn_segment *s, uint32_t gidx, uint32_t gen)
{
	/* Nobody ever saw this incarnation (no chain, no view, no limbo entry
	 * names it): giving the generation back changes nothing for anyone,
	 * and keeps the count of generations equal to the count of frees
	 * after a grace period -- which is what bounds a limbo entry's
	 * generation wrap (limbo.c, fdn__entry_free). */
	return fdn__free_as(s, gidx, gen, gen - 1);
}
