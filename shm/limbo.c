/*
 * limbo.c - deferred frees: each reader slot's ring of retired blocks, the
 * spill chunks a full ring goes to, and the help writers give grace
 * periods.
 *
 * A thread that unlinks a block puts (gidx, generation) and a stamp (gp_ctr
 * read after the unlink) in its slot's ring; the block is freed once
 * gp_done > stamp (rcu.c, "Deferred frees, shared grace periods", argues
 * why that suffices, and "Memory orders" covers the relaxed accesses
 * here).  The ring and its chunks live in the segment, so a reclaimer
 * finds a dead thread's blocks (reclaim.c).  Calls rcu.c for grace
 * periods and alloc.c for blocks; called by ht.c around each operation,
 * by reclaim.c and the reaper.
 */
#include "shm.h"

#include <time.h>

/* How long a retiring operation that finds this thread's limbo ring full
 * may wait for a grace period before it fails with FDN_EBUSY (< 0: as long
 * as needed).  The reaper sets its own, shorter. */
static _Thread_local int64_t fdn__flush_timeout_ns = FDN_FLUSH_WAIT_NS;

void fdn__rcu_set_flush_timeout(int64_t ns)
{
	fdn__flush_timeout_ns = ns;
}

void fdn__limbo_add(struct fdn__thread *t, uint32_t gidx, uint32_t gen)
{
	struct fdn_shm_tslot *ts = t->ts;
	/* After the unlink (a seq_cst CAS, ours or another's that we saw):
	 * see the top for why gp_done > stamp then suffices. */
	uint64_t stamp = atomic_load_explicit(&t->seg->hdr->gp_ctr, memory_order_seq_cst);
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_relaxed);
	/* Callers make room before an op that may retire (one per op); only a
	 * damaged slot is full here, and then the block is leaked rather than
	 * written over a waiting entry. */
	if (tail - atomic_load_explicit(&ts->limbo_head, memory_order_relaxed) >= FDN_LIMBO_MAX)
		return;
	atomic_store_explicit(&ts->limbo[tail % FDN_LIMBO_MAX], (uint64_t)gidx << 32 | gen,
			      memory_order_relaxed);
	atomic_store_explicit(&ts->stamp[tail % FDN_LIMBO_MAX], stamp, memory_order_relaxed);
	atomic_store_explicit(&ts->limbo_tail, tail + 1, memory_order_release);
}

/*
 * Free limbo entry k of slot ts.  Entries are freed again after a crash (a
 * thread killed between a free and its head + 1; a reclaimer redoing a dead
 * slot), so the free is generation-checked: the CAS from ALLOC(gen) fails
 * once the block was freed.  Generations are 32 bits, though: could the
 * block have come back, 2^32 claims later, as ALLOC(gen) again?  Only
 * frees after a grace period advance a block's generation for good (a
 * block freed unpublished takes its generation back, alloc.c), and each
 * such free of the block needs gp_done > its entry's stamp, while the next
 * incarnation's stamp is read after that free, so stamps (and gp_done)
 * grow by at least one per incarnation.  So if gp_done - stamp < 2^32 - 1,
 * read after the block word, the ALLOC(gen) we saw is this entry's own
 * incarnation: only this entry's holder frees that one, so it cannot
 * change before our CAS.  Past that distance (a dead thread's ring left
 * unreclaimed for 2^32 grace periods) the block is left allocated -- a
 * leak the checker reports, never a live node freed.
 */
static void fdn__entry_free(fdn_segment *s, uint64_t e, uint64_t stamp)
{
	uint32_t gidx = (uint32_t)(e >> 32), gen = (uint32_t)e;
	if (gidx == 0 || gidx >= s->ngranules)
		return;
	/* Acquire: a reincarnation's claim, and the frees before it, happen
	 * before the gp_done load below, so it sees their grace periods. */
	uint64_t w = atomic_load_explicit(&s->bstate[gidx], memory_order_acquire);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || FDN_BLOCK_GEN(w) != gen)
		return;
	uint64_t done = atomic_load_explicit(&s->hdr->gp_done, memory_order_acquire);
	if (done - stamp >= (1ull << 32) - 1)
		return;
	fdn__free(s, gidx, gen);
}

static void fdn__limbo_free(fdn_segment *s, struct fdn_shm_tslot *ts, uint32_t k)
{
	fdn__entry_free(s, atomic_load_explicit(&ts->limbo[k], memory_order_relaxed),
			atomic_load_explicit(&ts->stamp[k], memory_order_relaxed));
}

/*
 * Spill.  A ring full of blocks that no completed grace period covers
 * means a section older than all of them is still open: a reader
 * preempted, stopped (SIGSTOP, a debugger) or slow.  Rather than wait for
 * it, the owner copies the ring into a chunk (a heap block, layout.h
 * struct fdn_shm_spill), links it at the head of its slot's spill list and
 * empties the ring; its writes go on.  A writer waits only when its slot
 * holds s->spill_max chunks (entries for a sixteenth of the heap's
 * granules, FDN_SPILL_MAX chunks at most) or the heap has no block for one
 * -- the documented backlog bound -- and then as before: FDN_EBUSY after
 * its flush bound.  A heap of fewer than FDN_SPILL_MIN_PAGES pages never
 * spills (s->spill_max = 0): pages never change size class, and a page
 * given to chunks in a heap of a few pages is a large share taken from the
 * entries (test_flags saw FDN_ENOSPACE on a 16-page heap).
 *
 * A spill (the owner, inside its op mark): claim chunk C with the intent
 * in spill_new; write C's entries, count, next = the current head, and
 * stamp = gp_ctr read after them; spill = C (release); limbo_head = tail;
 * spill_new = 0.  A death before the link leaves C allocated to the slot,
 * named by spill_new and not by spill: the reclaimer frees it unpublished
 * (nobody but the slot ever saw it).  A death between the link and the
 * head store leaves the ring's entries both in C and in the ring: both
 * copies are freed, and frees are generation-checked.
 *
 * Freeing.  Chunks are listed newest first and stamps only grow along the
 * list, so the tail is the first chunk a grace period covers.  Once
 * gp_done > its stamp, the owner stores spill_dead = C, unlinks it (its
 * predecessor's next, or spill, = C.next, release), frees C's entries,
 * frees C and clears spill_dead (fdn__spill_drop).  A death anywhere there
 * leaves C named by spill_dead while it is allocated: the reclaimer unlinks
 * it if it is still linked and frees its entries and C again
 * (fdn__spill_free_all).  A reclaimer empties a dead slot's list from its
 * head the same way.  spill_since (the tail's stamp) is a hint that saves
 * the owner a walk of the list per operation while nothing is due; a stale
 * one only delays a reap.
 *
 * Generations.  A chunk is freed only once gp_done > its stamp, which was
 * read after its claim, so every incarnation of a block used as a chunk
 * also costs a grace period: the argument of fdn__entry_free (a block's
 * generation grows by at most one per grace period) holds for chunks as
 * for table nodes.
 */
static uint64_t fdn__spill_link(uint32_t gidx, uint32_t gen)
{
	return (uint64_t)gidx << 32 | gen;
}

struct fdn_shm_spill *fdn__spill_chunk(const fdn_segment *s, uint64_t link)
{
	uint32_t g = (uint32_t)(link >> 32), gen = (uint32_t)link;
	if (g == 0 || g >= s->ngranules || fdn__block_size(s, g) != FDN_SPILL_BYTES)
		return NULL;
	/* Acquire: the writes into the chunk before its link are visible. */
	uint64_t w = atomic_load_explicit(&s->bstate[g], memory_order_acquire);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || FDN_BLOCK_GEN(w) != gen)
		return NULL;
	return fdn__gptr(s, g);
}

/* May slot ts spill another ring, by its count (the heap may still have
 * no block for the chunk)?  Chunks are always full rings, so the entries
 * held count the chunks. */
static bool fdn__spill_allowed(const fdn_segment *s, const struct fdn_shm_tslot *ts)
{
	return atomic_load_explicit(&ts->spill_count, memory_order_relaxed) / FDN_LIMBO_MAX <
	       s->spill_max;
}

/* Hand t's full ring to a new chunk.  false: the slot holds its bound of
 * chunks, or the heap has no block for one. */
static bool fdn__limbo_spill(struct fdn__thread *t)
{
	fdn_segment *s = t->seg;
	struct fdn_shm_tslot *ts = t->ts;
	if (!fdn__spill_allowed(s, ts))
		return false;
	uint64_t held = atomic_load_explicit(&ts->spill_count, memory_order_relaxed);
	uint32_t g, gen;
	if (fdn__alloc_as(t, &ts->spill_new, FDN_SPILL_BYTES, &g, &gen) != 0)
		return false;
	struct fdn_shm_spill *c = fdn__gptr(s, g);
	uint64_t head = atomic_load_explicit(&ts->limbo_head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_relaxed);
	uint32_t n = 0;
	for (; head != tail && n < FDN_LIMBO_MAX; head++, n++) {
		uint32_t k = (uint32_t)(head % FDN_LIMBO_MAX);
		atomic_store_explicit(&c->limbo[n],
				      atomic_load_explicit(&ts->limbo[k], memory_order_relaxed),
				      memory_order_relaxed);
		atomic_store_explicit(&c->stamp_of[n],
				      atomic_load_explicit(&ts->stamp[k], memory_order_relaxed),
				      memory_order_relaxed);
	}
	uint64_t older = atomic_load_explicit(&ts->spill, memory_order_relaxed);
	atomic_store_explicit(&c->count, n, memory_order_relaxed);
	atomic_store_explicit(&c->next, older, memory_order_relaxed);
	/* >= every entry's stamp (each read gp_ctr earlier), and read after
	 * the claim: see "Generations" above. */
	uint64_t stamp = atomic_load_explicit(&s->hdr->gp_ctr, memory_order_seq_cst);
	atomic_store_explicit(&c->stamp, stamp, memory_order_relaxed);
	if (older == 0)
		atomic_store_explicit(&ts->spill_since, stamp, memory_order_relaxed);
	atomic_store_explicit(&ts->spill, fdn__spill_link(g, gen), memory_order_release);
	atomic_store_explicit(&ts->spill_count, held + n, memory_order_relaxed);
	atomic_store_explicit(&ts->limbo_head, tail, memory_order_release);
	atomic_store_explicit(&ts->spill_new, 0, memory_order_relaxed);
	return true;
}

/* Unlink chunk c (`link`, named by *at; at NULL: not linked) and free it
 * with its entries. */
static void fdn__spill_drop(fdn_segment *s, struct fdn_shm_tslot *ts, _Atomic uint64_t *at,
			    uint64_t link, struct fdn_shm_spill *c)
{
	atomic_store_explicit(&ts->spill_dead, link, memory_order_relaxed);
	if (at)
		atomic_store_explicit(at, atomic_load_explicit(&c->next, memory_order_relaxed),
				      memory_order_release);
	uint32_t n = atomic_load_explicit(&c->count, memory_order_relaxed);
	if (n <= FDN_LIMBO_MAX) /* else damaged: leak the entries, the checker reports */
		for (uint32_t k = 0; k < n; k++)
			fdn__entry_free(
			    s, atomic_load_explicit(&c->limbo[k], memory_order_relaxed),
			    atomic_load_explicit(&c->stamp_of[k], memory_order_relaxed));
	uint64_t held = atomic_load_explicit(&ts->spill_count, memory_order_relaxed);
	atomic_store_explicit(&ts->spill_count, held > n ? held - n : 0, memory_order_relaxed);
	fdn__free(s, (uint32_t)(link >> 32), (uint32_t)link);
	atomic_store_explicit(&ts->spill_dead, 0, memory_order_relaxed);
}

/* Free the chunks that gp_done `done` covers, oldest first. */
static void fdn__spill_reap(fdn_segment *s, struct fdn_shm_tslot *ts, uint64_t done)
{
	uint64_t since = atomic_load_explicit(&ts->spill_since, memory_order_relaxed);
	if (since >= done)
		return; /* the oldest chunk is not due yet */
	uint64_t links[FDN_SPILL_MAX + 1];
	struct fdn_shm_spill *chunks[FDN_SPILL_MAX + 1];
	uint32_t n = 0;
	for (uint64_t l = atomic_load_explicit(&ts->spill, memory_order_acquire); l;) {
		if (n == FDN_SPILL_MAX + 1 || !(chunks[n] = fdn__spill_chunk(s, l)))
			return; /* damaged (too long, or no chunk): the checker reports */
		links[n++] = l;
		l = atomic_load_explicit(&chunks[n - 1]->next, memory_order_relaxed);
	}
	while (n > 0 && atomic_load_explicit(&chunks[n - 1]->stamp, memory_order_relaxed) < done) {
		n--;
		fdn__spill_drop(s, ts, n ? &chunks[n - 1]->next : &ts->spill, links[n], chunks[n]);
	}
	atomic_store_explicit(&ts->spill_since,
			      n ? atomic_load_explicit(&chunks[n - 1]->stamp, memory_order_relaxed)
				: 0,
			      memory_order_relaxed);
}

/* After a grace period: free every chunk of slot ts, whose owner is gone
 * (see "Spill" for the states a death leaves). */
static void fdn__spill_free_all(fdn_segment *s, struct fdn_shm_tslot *ts)
{
	uint32_t me = (uint32_t)(ts - s->tslots) + 1;
	uint64_t head = atomic_load_explicit(&ts->spill, memory_order_acquire);
	uint64_t ng = atomic_load_explicit(&ts->spill_new, memory_order_relaxed);
	if (ng && ng < s->ngranules && ng != head >> 32) {
		/* Claimed, never linked. */
		uint64_t w = atomic_load_explicit(&s->bstate[ng], memory_order_acquire);
		if (FDN_BLOCK_KIND(w) == FDN_BLOCK_ALLOC && FDN_BLOCK_OWNER(w) == me &&
		    fdn__block_size(s, ng) == FDN_SPILL_BYTES)
			fdn__free_unpublished(s, (uint32_t)ng, FDN_BLOCK_GEN(w));
	}
	atomic_store_explicit(&ts->spill_new, 0, memory_order_relaxed);
	uint64_t dead = atomic_load_explicit(&ts->spill_dead, memory_order_relaxed);
	struct fdn_shm_spill *c = dead ? fdn__spill_chunk(s, dead) : NULL;
	if (c) {
		/* Being dropped: unlinked already, or still linked once. */
		_Atomic uint64_t *at = &ts->spill;
		for (unsigned k = 0; k <= FDN_SPILL_MAX; k++) {
			uint64_t l = atomic_load_explicit(at, memory_order_relaxed);
			struct fdn_shm_spill *x = l ? fdn__spill_chunk(s, l) : NULL;
			if (l == dead || !x)
				break;
			at = &x->next;
		}
		if (atomic_load_explicit(at, memory_order_relaxed) != dead)
			at = NULL;
		fdn__spill_drop(s, ts, at, dead, c);
	}
	atomic_store_explicit(&ts->spill_dead, 0, memory_order_relaxed);
	for (unsigned k = 0; k <= FDN_SPILL_MAX; k++) {
		uint64_t l = atomic_load_explicit(&ts->spill, memory_order_relaxed);
		if (!l || !(c = fdn__spill_chunk(s, l)))
			break;
		fdn__spill_drop(s, ts, &ts->spill, l, c);
	}
	/* Anything left is damage: leaked (the checker reports the blocks),
	 * never followed again. */
	atomic_store_explicit(&ts->spill, 0, memory_order_relaxed);
	atomic_store_explicit(&ts->spill_count, 0, memory_order_relaxed);
	atomic_store_explicit(&ts->spill_since, 0, memory_order_relaxed);
}

uint64_t fdn__limbo_waiting(const struct fdn_shm_tslot *ts)
{
	uint64_t ring = fdn_tslot_pending(ts);
	return (ring <= FDN_LIMBO_MAX ? ring : FDN_LIMBO_MAX) +
	       atomic_load_explicit(&ts->spill_count, memory_order_relaxed);
}

uint64_t fdn__limbo_newest(const fdn_segment *s, const struct fdn_shm_tslot *ts)
{
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_acquire);
	if (tail != atomic_load_explicit(&ts->limbo_head, memory_order_acquire))
		return atomic_load_explicit(&ts->stamp[(tail - 1) % FDN_LIMBO_MAX],
					    memory_order_relaxed);
	const struct fdn_shm_spill *c =
	    fdn__spill_chunk(s, atomic_load_explicit(&ts->spill, memory_order_acquire));
	return c ? atomic_load_explicit(&c->stamp, memory_order_relaxed) : 0;
}

uint64_t fdn__limbo_reap(fdn_segment *s, struct fdn_shm_tslot *ts)
{
	uint64_t done = atomic_load_explicit(&s->hdr->gp_done, memory_order_acquire);
	if (atomic_load_explicit(&ts->spill, memory_order_relaxed) != 0)
		fdn__spill_reap(s, ts, done);
	uint64_t head = atomic_load_explicit(&ts->limbo_head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_acquire);
	if (tail - head > FDN_LIMBO_MAX)
		return tail - head; /* damaged: touch nothing, the checker reports */
	for (; head != tail; head++) {
		uint32_t k = (uint32_t)(head % FDN_LIMBO_MAX);
		if (atomic_load_explicit(&ts->stamp[k], memory_order_relaxed) >= done)
			break; /* stamps only grow along the ring */
		fdn__limbo_free(s, ts, k);
		atomic_store_explicit(&ts->limbo_head, head + 1, memory_order_release);
	}
	return tail - head;
}

void fdn__limbo_free_all(fdn_segment *s, struct fdn_shm_tslot *ts)
{
	uint64_t head = atomic_load_explicit(&ts->limbo_head, memory_order_relaxed);
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_acquire);
	if (tail - head > FDN_LIMBO_MAX)
		head = tail - FDN_LIMBO_MAX; /* damaged: free what the ring can hold */
	for (; head != tail; head++)
		fdn__limbo_free(s, ts, (uint32_t)(head % FDN_LIMBO_MAX));
	atomic_store_explicit(&ts->limbo_head, tail, memory_order_release);
	fdn__spill_free_all(s, ts);
}

/* The oldest stamp waiting in t's ring (the grace period it needs). */
static uint64_t fdn__limbo_oldest(const struct fdn_shm_tslot *ts)
{
	uint64_t head = atomic_load_explicit(&ts->limbo_head, memory_order_relaxed);
	return atomic_load_explicit(&ts->stamp[head % FDN_LIMBO_MAX], memory_order_relaxed);
}

void fdn__limbo_help(struct fdn__thread *t)
{
	fdn_segment *s = t->seg;
	uint64_t n = fdn__limbo_reap(s, t->ts);
	/* From a quarter of a ring, help the background with a zero-wait
	 * look (never inside our own section: it would wait for ourselves).
	 * Not a short wait: a wait that yields gives the CPU to the very
	 * reader it waits for, a scheduler slice per operation (2 061 pairs/s
	 * beside 2 readers with a 20 us wait).  Not later than a quarter:
	 * helping only from three quarters (or a half) left rings nearly full
	 * whenever a grace period stalled, and test_boundary's main thread,
	 * whose signal handler retires blocks between its room check and its
	 * own section, then got FDN_EREENTERED in 8 of 18 runs under ASan (0
	 * of 10 from a quarter); stress_killstorm under TSan once saw writers
	 * wait past their bound.  The look starts a grace period of its own
	 * at most once a millisecond among all writers (fdn__gp_help):
	 * between two, it only finishes one already fenced. */
	if (n < FDN_LIMBO_MAX / 4 || t->nest || fdn__in_section_of(s))
		return;
	if (fdn__gp_help(s, fdn__limbo_oldest(t->ts)) == 0)
		fdn__limbo_reap(s, t->ts);
}

int fdn__limbo_room(struct fdn__thread *t)
{
	return fdn__limbo_room_for(t, 1);
}

int fdn__limbo_room_for(struct fdn__thread *t, uint32_t n)
{
	fdn_segment *s = t->seg;
	if (n == 0 || n > FDN_LIMBO_MAX)
		n = n ? FDN_LIMBO_MAX : 1;
	const uint64_t room = FDN_LIMBO_MAX - n; /* at most this many waiting */
	if (fdn_tslot_pending(t->ts) <= room)
		return 0;
	if (fdn__limbo_reap(s, t->ts) <= room)
		return 0;
	/* Several: while this slot may still spill, its operations spill
	 * full rings as they go -- never a partial ring here, which would
	 * break the count fdn__spill_allowed relies on.  (A heap with no
	 * block for a chunk still makes one of them wait half-way: the one
	 * case left.) */
	if (n > 1 && fdn__spill_allowed(s, t->ts))
		return 0;
	if (fdn__in_section_of(s))
		return FDN_EINREAD;
	/* Full: every block it holds waits for a section older than all of
	 * them.  Hand them to a chunk ("Spill").  At the spill bound, wait for
	 * that section, bounded -- unless this thread already waited in vain
	 * and no grace period has completed since. */
	if (fdn__limbo_spill(t))
		return 0;
	/* busy_gp is gp_done + 1 when it waited in vain (0: it did not), so
	 * that a wait before any grace period completed counts too. */
	uint64_t done = atomic_load_explicit(&s->hdr->gp_done, memory_order_acquire);
	if (t->busy_gp && t->busy_gp == done + 1) {
		if (fdn__gp_poll(s, 0, fdn__limbo_oldest(t->ts)) == 0 &&
		    fdn__limbo_reap(s, t->ts) <= room) {
			t->busy_gp = 0;
			return 0;
		}
		return FDN_EBUSY;
	}
	t->busy_gp = 0;
	int64_t limit = fdn__flush_timeout_ns;
	uint64_t deadline = limit < 0 ? 0 : fdn__mono_ns() + (uint64_t)limit;
	for (;;) {
		int64_t budget = 1000000;
		if (deadline) {
			uint64_t now = fdn__mono_ns();
			budget = now >= deadline ? 0 : (int64_t)(deadline - now);
			if (budget > 1000000)
				budget = 1000000;
		}
		fdn__gp_poll(s, budget, fdn__limbo_oldest(t->ts));
		if (fdn__limbo_reap(s, t->ts) <= room)
			return 0;
		if (deadline && fdn__mono_ns() >= deadline) {
			t->busy_gp =
			    atomic_load_explicit(&s->hdr->gp_done, memory_order_acquire) + 1;
			return FDN_EBUSY;
		}
		struct timespec d = {0, 500000};
		nanosleep(&d, NULL);
	}
}

int fdn__write_room(fdn_segment *s)
{
	return fdn__write_room_for(s, 1);
}

/* Has t's list room for n more deferred frees as it is? */
static bool has_room(const struct fdn__thread *t, uint32_t n)
{
	return fdn_tslot_pending(t->ts) + n <= FDN_LIMBO_MAX;
}

int fdn__write_room_for(fdn_segment *s, uint32_t n)
{
	struct fdn__thread *t;
	int r = fdn__thread_get(s, &t);
	if (r)
		return r;
	if (t->busy)
		return FDN_EREENTERED; /* a signal handler inside one of our ops */
	if (t->nest || has_room(t, n))
		return 0;
	if ((r = fdn__op_enter(t)) != 0)
		return r;
	r = fdn__limbo_room_for(t, n);
	fdn__op_leave(t);
	return r;
}

bool fdn__write_room_has(fdn_segment *s, uint32_t n)
{
	struct fdn__thread *t;
	return fdn__thread_get(s, &t) == 0 && !t->busy && has_room(t, n);
}

int fdn__write_flush(fdn_segment *s)
{
	struct fdn__thread *t;
	int r = fdn__thread_get(s, &t);
	if (r)
		return r;
	if (t->busy)
		return FDN_EREENTERED;
	if (t->nest || fdn__limbo_waiting(t->ts) == 0)
		return 0;
	if ((r = fdn__op_enter(t)) != 0)
		return r;
	r = fdn__limbo_flush(t);
	fdn__op_leave(t);
	return r ? r : 1;
}

int fdn__limbo_flush(struct fdn__thread *t)
{
	if (fdn__limbo_waiting(t->ts) == 0)
		return 0;
	if (fdn__in_section_of(t->seg))
		return FDN_EINREAD;
	int r = fdn__grace_period(t->seg, fdn__flush_timeout_ns);
	if (r)
		return r;
	fdn__limbo_reap(t->seg, t->ts);
	return 0;
}
