/*
 * reclaim.c - take back what a dead process owned.
 *
 * Called (by the reaper) once the kernel has said a process is gone.  For
 * each reader slot of the process, in this order:
 *
 *  1. Resolve the operation in flight, if any (delta[t] op != NONE).  The
 *     dead thread died inside its read-side section, so its ctr still pins
 *     every node it referenced: `node` and `old` cannot have been freed and
 *     reused, and reading them is safe.
 *       - new node N (insert/upsert): if N is still ALLOC with our slot as
 *         owner, it was published iff it is reachable in its table or its
 *         next word is marked (someone deleted it since).  Published: the
 *         insert happened (count + 1 if it was an insert).  Not published:
 *         free it.
 *       - target E (delete/replace): the dead thread won iff E.next is
 *         marked with its own slot id as marker.  Won: make sure E is
 *         unlinked, put E in the dead slot's limbo unless already there,
 *         count - 1 for a delete.  Lost or not tried: nothing happened
 *         (and for a replace, N was never published: freed as above).
 *     The decision and the new count are stored with the op cleared in one
 *     store, so a reclaimer killed here redoes exactly the same decision.
 *  2. Clear ctr: the dead thread stops blocking grace periods.
 *  3. After a grace period (nobody can still hold those nodes), free every
 *     limbo entry -- frees are generation-checked, so entries the dead
 *     thread had already freed, or a previous reclaimer freed, are skipped --
 *     and then free the slot.
 * Finally the process slot is freed.  Every step is idempotent, and each
 * slot is freed only when nothing in it remains: a reclaimer killed at any
 * point leaves a state from which the next call completes the job.
 *
 * Steps 1-2 (fdn__proc_reclaim_begin) never wait; step 3 waits for a grace
 * period, which a second dead process still pinned in a read-side section
 * would block.  So a reclaimer that knows of several deaths begins all of
 * them before it finishes any, and finishing takes a timeout: on
 * FDN_ETIMEDOUT (a death it has not learnt of yet) it comes back later.
 */
#include "shm.h"

static bool fdn__in_limbo(const struct fdn_shm_tslot *ts, uint64_t entry)
{
	uint64_t head = atomic_load_explicit(&ts->limbo_head, memory_order_acquire);
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_acquire);
	for (uint64_t k = head; k != tail && k - head < FDN_LIMBO_MAX; k++)
		if (atomic_load_explicit(&ts->limbo[k % FDN_LIMBO_MAX], memory_order_relaxed) ==
		    entry)
			return true;
	return false;
}

static void fdn__limbo_add_slot(fdn_segment *s, struct fdn_shm_tslot *ts, uint32_t gidx,
				uint32_t gen)
{
	uint64_t e = (uint64_t)gidx << 32 | gen;
	if (fdn__in_limbo(ts, e))
		return;
	uint64_t tail = atomic_load_explicit(&ts->limbo_tail, memory_order_relaxed);
	if (tail - atomic_load_explicit(&ts->limbo_head, memory_order_relaxed) >= FDN_LIMBO_MAX)
		return; /* cannot happen: an op starts with room for its one entry */
	uint64_t stamp = atomic_load_explicit(&s->hdr->gp_ctr, memory_order_seq_cst);
	atomic_store_explicit(&ts->limbo[tail % FDN_LIMBO_MAX], e, memory_order_relaxed);
	atomic_store_explicit(&ts->stamp[tail % FDN_LIMBO_MAX], stamp, memory_order_relaxed);
	atomic_store_explicit(&ts->limbo_tail, tail + 1, memory_order_release);
}

/* Was the dead slot's new node published?  Frees it if it was not. */
static bool fdn__resolve_new(fdn_segment *s, uint32_t table, uint32_t me, uint64_t gidx)
{
	if (gidx == 0 || gidx >= s->ngranules)
		return false;
	uint64_t w = atomic_load_explicit(&s->bstate[gidx], memory_order_acquire);
	if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || FDN_BLOCK_OWNER(w) != me)
		return false; /* never claimed by this slot, or already freed */
	struct fdn_shm_node *n = fdn__gptr(s, gidx);
	uint64_t nx = atomic_load_explicit(&n->next, memory_order_acquire);
	if (FDN_LINK_MARKED(nx))
		return true; /* published, then deleted by someone */
	/* ALLOC with our slot as owner, and named by our intent: this op's
	 * claim succeeded (the intent is stored only for a block seen FREE,
	 * and a failed claim leaves another owner).  A node is published only
	 * after its whole header is written -- the linking CAS is a release
	 * -- so a header that does not fit the block or names another table
	 * is the previous occupant's, left by a death between the claim and
	 * the header: never published, ours to free.  (Keeping it "on
	 * doubt" leaked it: no limbo, no chain, no op would ever name it
	 * again; stress_reaperkill found such blocks.) */
	if (fdn__node(s, gidx) && fdn_node_table(n) == table &&
	    fdn__ht_reachable(s, table, (uint32_t)gidx))
		return true;
	fdn__free_unpublished(s, (uint32_t)gidx, FDN_BLOCK_GEN(w));
	return false;
}

/* Did the dead slot win the MARK CAS on old?  If so, retire old. */
static bool fdn__resolve_old(fdn_segment *s, struct fdn_shm_tslot *ts, uint32_t table, uint32_t me,
			     uint64_t gidx)
{
	const struct fdn_shm_node *n = fdn__node(s, gidx);
	if (!n)
		return false;
	uint64_t nx = atomic_load_explicit(&n->next, memory_order_acquire);
	if (!FDN_LINK_MARKED(nx) || FDN_LINK_MARKER(nx) != me)
		return false;
	/* Retire only once surely unlinked; on a damaged chain leave it
	 * marked (the checker reports it) rather than free a linked node. */
	if (fdn__ht_unlink(s, table, (uint32_t)gidx) == 0)
		fdn__limbo_add_slot(s, ts, (uint32_t)gidx, n->gen);
	return true;
}

static void fdn__resolve_slot(fdn_segment *s, uint32_t i)
{
	struct fdn_shm_tslot *ts = &s->tslots[i];
	uint32_t me = i + 1;
	unsigned pending = 0;
	for (uint32_t t = 0; t < s->ntables; t++)
		pending += FDN_DELTA_OP(atomic_load(&ts->delta[t])) != FDN_OP_NONE;
	for (uint32_t t = 0; t < s->ntables; t++) {
		uint64_t dw = atomic_load_explicit(&ts->delta[t], memory_order_acquire);
		unsigned op = FDN_DELTA_OP(dw);
		if (op == FDN_OP_NONE)
			continue;
		if (pending > 1)
			op = 0xFF; /* a thread has one op at a time: damaged, touch nothing */
		/* Relaxed: the slot's thread is dead (or its process is), so
		 * every store it made is visible (rcu.c, memory orders). */
		uint64_t node = atomic_load_explicit(&ts->node, memory_order_relaxed);
		uint64_t old = atomic_load_explicit(&ts->old, memory_order_relaxed);
		int change = 0;
		bool took = false; /* did the op take effect? */
		switch (op) {
		case FDN_OP_INSERT:
			change = fdn__resolve_new(s, t, me, node) ? 1 : 0;
			took = change != 0;
			break;
		case FDN_OP_UPSERT:
			if (old != 0 && fdn__resolve_old(s, ts, t, me, old)) {
				took = true;
				break; /* replaced: node is live, count unchanged */
			}
			/* An insert if old == 0; a lost replace (node is then
			 * unreachable and gets freed) otherwise. */
			took = fdn__resolve_new(s, t, me, node) && old == 0;
			change = took ? 1 : 0;
			break;
		case FDN_OP_DELETE:
			change = (old != 0 && fdn__resolve_old(s, ts, t, me, old)) ? -1 : 0;
			took = change != 0;
			break;
		default:
			break; /* unknown op: corrupt; clear it, the checker reports counts */
		}
		/* The op's change-log record (changes.c), before the op is
		 * cleared: a reclaimer killed in between decides the same again
		 * (the decisions above are idempotent), and a record already
		 * settled stays as it is. */
		if (fdn__chg_resolve(s, ts, took))
			fdn__notify(s);
		atomic_store_explicit(&ts->delta[t],
				      FDN_DELTA_WORD(FDN_DELTA_COUNT(dw) + change, FDN_OP_NONE),
				      memory_order_release);
	}
	/* Step 2: the dead thread's section ends now. */
	atomic_store_explicit(&ts->ctr, 0, memory_order_release);
}

static bool fdn__owned_by(const fdn_segment *s, uint32_t i, uint32_t idx)
{
	uint64_t st = atomic_load_explicit(&s->tslots[i].state, memory_order_acquire);
	return FDN_TSLOT_KIND(st) == FDN_TSLOT_USED && FDN_TSLOT_OWNER(st) == idx;
}

static uint64_t fdn__as_dead(uint64_t w)
{
	return FDN_PROC_WORD(FDN_PROC_DEAD, FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
}

static uint64_t fdn__as_left(uint64_t w)
{
	return FDN_PROC_WORD(FDN_PROC_LEFT, FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
}

static uint64_t fdn__as_live(uint64_t w)
{
	return FDN_PROC_WORD(FDN_PROC_LIVE, FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
}

/* After a grace period that began once their sections were ended: free
 * the deferred blocks of every reader slot process slot idx owns, and the
 * slots. */
static void fdn__free_slots_of(fdn_segment *s, uint32_t idx)
{
	for (uint32_t i = 0, n = fdn__tslot_bound(s); i < n; i++) {
		if (!fdn__owned_by(s, i, idx))
			continue;
		struct fdn_shm_tslot *ts = &s->tslots[i];
		fdn__limbo_free_all(s, ts);
		atomic_store_explicit(&ts->node, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->old, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->chg, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->state, 0, memory_order_release);
	}
}

int fdn__proc_reclaim_begin(fdn_segment *s, uint32_t idx, uint64_t word)
{
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (s->readonly)
		return FDN_ERDONLY;
	if (idx >= s->nprocs || idx == s->proc_idx || word == 0)
		return FDN_EINVAL;
	/* Act only on the process judged dead: the slot may have been
	 * reclaimed and claimed again by another process since. */
	_Atomic uint64_t *pw = &s->procs[idx].word;
	uint64_t w = atomic_load_explicit(pw, memory_order_acquire);
	if (w == fdn__as_live(word)) {
		if (!atomic_compare_exchange_strong(pw, &w, fdn__as_dead(word)) &&
		    w != fdn__as_dead(word))
			return FDN_ENOTFOUND;
		fdn__notify(s); /* its entries are gone for every reader now */
	} else if (w != fdn__as_dead(word) && w != fdn__as_left(word)) {
		return FDN_ENOTFOUND; /* already reclaimed (by us or another) */
	}
	/* No read lock of our own: while slot i is resolved its ctr is still
	 * set, and that pins every node reachable now (a grace period begun
	 * now waits for it) -- so the walks below are as safe as in our own
	 * section, and a reclaimer needs no free reader slot.  The slots of
	 * the process were claimed before it died or detached, which the
	 * caller learnt of before this call: fdn__tslot_bound covers them. */
	for (uint32_t i = 0, n = fdn__tslot_bound(s); i < n; i++)
		if (fdn__owned_by(s, i, idx))
			fdn__resolve_slot(s, i);
	return 0;
}

int fdn__proc_reclaim(fdn_segment *s, uint32_t idx, uint64_t word, int64_t timeout_ns)
{
	int r = fdn__proc_reclaim_begin(s, idx, word);
	if (r)
		return r;
	r = fdn__rcu_synchronize(s, timeout_ns);
	if (r)
		return r; /* FDN_ETIMEDOUT: call again later; nothing is lost */
	fdn__free_slots_of(s, idx);
	uint64_t gone = fdn__as_dead(word);
	/* A free slot's claimer is 0 until its next claimant names itself
	 * (fdn__proc_release relies on it). */
	uint64_t cur = atomic_load(&s->procs[idx].word);
	if (cur == gone || cur == fdn__as_left(word))
		atomic_store(&s->procs[idx].claimer_pid, 0);
	if (!atomic_compare_exchange_strong(&s->procs[idx].word, &gone, 0)) {
		gone = fdn__as_left(word);
		atomic_compare_exchange_strong(&s->procs[idx].word, &gone, 0);
	}
	return 0;
}

int fdn__threads_reclaim(fdn_segment *s, uint32_t idx, int64_t timeout_ns)
{
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (s->readonly)
		return FDN_ERDONLY;
	if (idx >= s->nprocs)
		return FDN_EINVAL;
	unsigned n = 0;
	for (uint32_t i = 0, nt = fdn__tslot_bound(s); i < nt; i++)
		if (fdn__owned_by(s, i, idx)) {
			fdn__resolve_slot(s, i);
			n++;
		}
	if (n == 0)
		return 0;
	r = fdn__rcu_synchronize(s, timeout_ns);
	if (r)
		return r; /* sections ended, limbo kept: a later call frees it */
	fdn__free_slots_of(s, idx);
	return 0;
}
