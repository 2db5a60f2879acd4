/*
 * changes.c - the change log: one record per change of the registry's main
 * table, in revision order (layout.h, "the change log").
 *
 * Writers (ht.c, for an op given a struct fdn__chg).  Inside the op's
 * retry loop, after the search that observed the key's current state and
 * before the CAS that decides the change:
 *     rev = fetch_add(head) + 1;  ts->chg = rev;
 *     claim slot(rev): CAS state (older revision) -> (rev, PENDING);
 *     write key, pid, kind, time;
 *     CAS of the op;
 *     state (rev, PENDING) -> (rev, DONE) if the CAS succeeded, else
 *     (rev, VOID) and the loop reserves a new revision for its next try.
 *
 * Per-key order.  Let X then Y be two successful changes of one key K (in
 * the order their CASes took effect).  Y's CAS succeeds on a word its
 * search read: the link word that points where K would go (insert) or K's
 * node's `next` word (replace, delete).  X's CAS changed the state of K:
 * it either wrote that very word or marked the node Y's search would have
 * had to find; in every case a search that ran entirely before X's CAS
 * read a word that X's CAS (or the unlink that follows a mark) changed,
 * and a CAS expecting it fails (no ABA: every op runs inside a read-side
 * section, so no node it names is freed and reused under it).  So Y's
 * search observed X's result, i.e. ended after X's CAS; Y reserved its
 * revision after that search, and X reserved its own before its CAS:
 * rev(X) < rev(Y).  Revision order is the order of effect for every key,
 * so "state at revision R, then the DONE records after R in revision
 * order" reconstructs the table (changes of different keys commute).
 *
 * A death.  The writer's reader slot names the revision (ts->chg) from
 * before the claim to the end of the op, and the op in flight (ht.c).
 * The reaper resolves the op (reclaim.c) and with it the record: DONE if
 * the op took effect, VOID if it was undone.  A record therefore never
 * states a change that did not happen, and every change that happened has
 * a DONE record.  A writer killed (or stopped) between the fetch_add and
 * the claim leaves its slot unclaimed: a reader that has waited
 * FDN__CHG_STEAL_NS for it claims it VOID (fdn__chg_steal).  A live writer
 * that finds its revision stolen has not made its CAS yet: it reserves a
 * new revision (still after its search), so a steal never loses a change.
 *
 * Head of line.  Readers deliver in revision order and stop at the first
 * PENDING record: a writer stopped (SIGSTOP, a debugger) between its claim
 * and its CAS holds every reader back until it runs again or dies.  A
 * PENDING record lasts a few hundred nanoseconds otherwise.
 *
 * Writers never wait for readers: a reader holds no slot, and a slow one
 * finds its next record overwritten (FDN__CHG_GONE: an overrun).
 */
#include "shm.h"

#include <string.h>
#include <time.h>

static struct fdn_shm_change *slot_of(fdn_segment *s, uint64_t rev)
{
	return &s->changes[(rev - 1) & (s->nchanges - 1)];
}

uint64_t fdn__chg_begin(struct fdn__thread *t, const struct fdn__chg *c, const void *key,
			uint32_t klen)
{
	fdn_segment *s = t->seg;
	if (!c || !s->changes)
		return 0;
	for (;;) {
		uint64_t rev =
		    atomic_fetch_add_explicit(&s->chg_hdr->head, 1, memory_order_seq_cst) + 1;
		/* Named before the claim: a record can be PENDING only while
		 * its writer's slot names it (the reaper's resolution reads it
		 * after our death; a live reader that sees our claim -- a
		 * seq_cst CAS, so a release of this store -- sees it too). */
		atomic_store_explicit(&t->ts->chg, rev, memory_order_relaxed);
		struct fdn_shm_change *r = slot_of(s, rev);
		uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
		for (;;) {
			if (FDN_CHG_REV(w) >= rev)
				break;
			if (atomic_compare_exchange_weak_explicit(
				&r->state, &w, FDN_CHG_WORD(rev, FDN_CHG_PENDING),
				memory_order_seq_cst, memory_order_acquire))
				break;
		}
		if (FDN_CHG_REV(w) == rev && FDN_CHG_STATE(w) == FDN_CHG_VOID)
			continue; /* stolen by a reader: our CAS has not happened, retry */
		if (FDN_CHG_REV(w) > rev) {
			/* A lap newer (we stalled a whole lap): no record; readers
			 * see the revision as overwritten. */
			atomic_fetch_add_explicit(&s->chg_hdr->lapped, 1, memory_order_relaxed);
			return rev;
		}
		/* Ours, PENDING: the fields are read only once it is DONE. */
		r->time_ns = c->time_ns ? c->time_ns : fdn__real_ns();
		r->death = c->death;
		r->pid = (uint32_t)c->pid;
		r->key_len = (uint16_t)(klen > FDN_CHANGE_KEY_MAX ? FDN_CHANGE_KEY_MAX : klen);
		r->kind = (uint8_t)c->kind;
		r->writer = t->slot + 1;
		memcpy(r->key, key, r->key_len);
		/* The next record is most often this thread's next change:
		 * its line (5 MiB of ring by default, a miss each lap) is
		 * fetched while the op goes on. */
		__builtin_prefetch(&slot_of(s, rev + 1)->state, 1);
		return rev;
	}
}

/* PENDING -> DONE / VOID, if the record is still that revision's. */
static bool settle(fdn_segment *s, uint64_t rev, bool took)
{
	struct fdn_shm_change *r = slot_of(s, rev);
	uint64_t w = FDN_CHG_WORD(rev, FDN_CHG_PENDING);
	return atomic_compare_exchange_strong_explicit(
	    &r->state, &w, FDN_CHG_WORD(rev, took ? FDN_CHG_DONE : FDN_CHG_VOID),
	    memory_order_release, memory_order_relaxed);
}

void fdn__chg_end(struct fdn__thread *t, uint64_t rev, bool took)
{
	if (rev == 0)
		return;
	settle(t->seg, rev, took);
	atomic_store_explicit(&t->ts->chg, 0, memory_order_relaxed);
	/* A void record wakes readers too: one may wait on it (head of line);
	 * a DONE one is announced by the op's own notify. */
	if (!took)
		fdn__notify(t->seg);
}

bool fdn__chg_resolve(fdn_segment *s, struct fdn_shm_tslot *ts, bool took)
{
	uint64_t rev = atomic_load_explicit(&ts->chg, memory_order_acquire);
	if (rev == 0 || !s->changes)
		return false;
	bool changed = settle(s, rev, took);
	atomic_store_explicit(&ts->chg, 0, memory_order_release);
	return changed;
}

int fdn__chg_get(fdn_segment *s, uint64_t rev, struct fdn__chg_rec *out)
{
	if (!s->changes)
		return FDN__CHG_GONE;
	if (rev == 0 || rev > atomic_load_explicit(&s->chg_hdr->head, memory_order_acquire))
		return FDN__CHG_NOTYET;
	struct fdn_shm_change *r = slot_of(s, rev);
	uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
	if (FDN_CHG_REV(w) > rev)
		return FDN__CHG_GONE;
	if (FDN_CHG_REV(w) < rev)
		return FDN__CHG_UNCLAIMED;
	if (FDN_CHG_STATE(w) == FDN_CHG_PENDING)
		return FDN__CHG_PENDING;
	if (FDN_CHG_STATE(w) == FDN_CHG_VOID)
		return FDN__CHG_VOID;
	out->rev = rev;
	out->time_ns = r->time_ns;
	out->death = r->death;
	out->pid = r->pid;
	out->kind = r->kind;
	out->key_len = r->key_len > FDN_CHANGE_KEY_MAX ? FDN_CHANGE_KEY_MAX : r->key_len;
	memcpy(out->key, r->key, out->key_len);
	/* The copy is good only if no later lap claimed the slot meanwhile
	 * (the claim CAS precedes that writer's field writes). */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&r->state, memory_order_relaxed) != w)
		return FDN__CHG_GONE;
	return FDN__CHG_DONE;
}

bool fdn__chg_steal(fdn_segment *s, uint64_t rev)
{
	if (!s->changes || s->readonly)
		return false;
	struct fdn_shm_change *r = slot_of(s, rev);
	uint64_t w = atomic_load_explicit(&r->state, memory_order_acquire);
	while (FDN_CHG_REV(w) < rev) {
		if (atomic_compare_exchange_weak(&r->state, &w, FDN_CHG_WORD(rev, FDN_CHG_VOID))) {
			atomic_fetch_add_explicit(&s->chg_hdr->stolen, 1, memory_order_relaxed);
			return true;
		}
	}
	return false;
}

uint64_t fdn__chg_head(const fdn_segment *s)
{
	return s->changes ? atomic_load_explicit(&s->chg_hdr->head, memory_order_acquire) : 0;
}
