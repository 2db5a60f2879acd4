/*
 * ht.c - the lock-free hash table of the segment.
 *
 * Structure.  A table is a fixed power-of-two array of bucket link words;
 * each bucket holds a singly linked chain of nodes sorted by (hash, key
 * length, key bytes).  Nodes are heap blocks (layout.h, struct
 * fdn_shm_node) named by gidx.  The chains are Harris-Michael lists: a node
 * is deleted logically by setting MARK in its own `next` word, then
 * physically by a CAS on its predecessor's link.  Buckets are twice the
 * entry capacity, so a hit reads about one bucket line and one node line.
 *
 * Progress.  Lookups are wait-free apart from the chain length: they take
 * no lock, write nothing and never retry.  Writers are lock-free: a CAS fails
 * only because another writer's CAS succeeded.  Nothing a writer holds can
 * block anyone: there is no lock.
 *
 * Linearisation points.
 *   insert (key absent):  the CAS pred.link: cur -> N.
 *   delete:               the CAS E.next: succ -> succ | MARK | me.
 *   replace (E by N):     the CAS E.next: succ -> N | MARK | me, with
 *                         N.next = succ prepared before.  One CAS makes E
 *                         deleted and N reachable (through E, until E is
 *                         unlinked): no reader ever finds the key absent
 *                         nor sees both versions live.
 *   lookup:               the load of the `next` word of the node it
 *                         returns (unmarked: live at that instant).
 * Whoever wins the MARK CAS, and only they, retires the node (their reader
 * slot id is in the marker bits, which is how a reclaimer tells who won).
 *
 * Why a reader never sees a torn node.  A node is filled completely while
 * private and published by a CAS (seq_cst, hence release); readers load
 * links with acquire, so every field of a node reached through a link is the
 * published one.  Key, hash, lengths and value never change once published.
 *
 * Why memory is never reused under a reader.  The retiring writer first
 * makes sure the node is unlinked (a completed search for its key has
 * passed it: Harris' invariant is that a marked node is unlinked before
 * any search can complete past its position), then puts it in its limbo;
 * it is freed only after a grace period (rcu.c).  Every table operation,
 * reads included, runs inside a read-side section, which also excludes ABA
 * on every CAS here: a gidx we compare against cannot be freed and reused
 * while we are in the section.
 *
 * A SIGKILL at any line.  Before its first shared write an operation
 * records in its reader slot: the op (in delta[table], with the slot's net
 * count), the new node (written before the block is even claimed) and the
 * target node (before the MARK CAS).  The thread dies inside its read-side
 * section, which pins every node it referenced until a reclaimer has read
 * that record and finished or undone the operation (reclaim.c).  The
 * possible leftovers are: a claimed, never-published block (freed by the
 * reclaimer), a marked but still linked node (unlinked by the next search
 * that passes it, by anyone), a retired node not yet in limbo (added by the
 * reclaimer) -- never a torn chain, and never a lock.
 *
 * Memory orders on a weak machine (arm64).  Links are loaded with acquire
 * and written by seq_cst CAS (a release), which is what the two arguments
 * above need.  The relaxed accesses are: the op record in the reader slot
 * (delta, node, old), written before the op's first shared write, itself a
 * seq_cst CAS, so no shared effect of the op can be visible without the
 * record (and the reclaimer reads it only after the thread's death or its
 * slot's RETIRED state, rcu.c); a new node's own next word, written while
 * the node is private and published by the CAS that links it; the
 * destroyed flag, an early refusal whose staleness costs nothing (a write
 * to a destroyed segment lands in memory no new segment uses); and the
 * per-slot counts summed by fdn__ht_count, a figure that is exact only
 * while no writer runs.
 */
#include "shm.h"

#include <string.h>
#include <xxhash.h>

#define FDN__RETRY_MAX (1u << 22) /* a corrupt segment must not loop forever */

uint64_t fdn__ht_hash(const fdn_segment *s, uint32_t table, const void *key, size_t len)
{
	return fdn__ht_hash_of(s, table, key, len);
}

uint64_t fdn__ht_prefix_hash(const fdn_segment *s, const void *prefix, size_t n)
{
	return fdn__xxh3(prefix, n, s->seed);
}

_Thread_local uint32_t fdn__ht_last_steps;

/* Where the level of prefix P lives: a word of header.prefix_levels and
 * the shift of its 2-bit field. */
static _Atomic uint64_t *fdn__level_word(const fdn_segment *s, const void *prefix, size_t n,
					 unsigned *shift)
{
	uint64_t f = fdn__ht_prefix_hash(s, prefix, n) >> 52; /* < FDN_PREFIX_LEVELS */
	*shift = (unsigned)(f % 32u) * 2u;
	return (_Atomic uint64_t *)&s->hdr->prefix_levels[f / 32u];
}

unsigned fdn__prefix_level(const fdn_segment *s, const void *prefix, size_t n)
{
	unsigned shift;
	_Atomic uint64_t *w = fdn__level_word(s, prefix, n, &shift);
	unsigned l = (unsigned)(atomic_load(w) >> shift) & 3u;
	return l > 2 ? 2 : l; /* 3 is never written: damage reads as the top */
}

void fdn__prefix_raise(fdn_segment *s, const void *prefix, size_t n, unsigned lvl)
{
	if (s->readonly || lvl > 2)
		return;
	unsigned shift;
	_Atomic uint64_t *w = fdn__level_word(s, prefix, n, &shift);
	uint64_t old = atomic_load(w);
	while (((old >> shift) & 3u) < lvl &&
	       !atomic_compare_exchange_weak(w, &old,
					     (old & ~(3ull << shift)) | ((uint64_t)lvl << shift))) {
	}
}

size_t fdn__prefix_at_level(const unsigned char *prefix, size_t n, unsigned lvl, unsigned char *out)
{
	size_t o = 0;
	if (lvl)
		out[o++] = (unsigned char)lvl;
	memcpy(out + o, prefix, n);
	return o + n;
}

int fdn__ht_find(fdn_segment *s, const char *name, uint32_t *table)
{
	for (uint32_t i = 0; i < s->ntables; i++) {
		if (strncmp(s->hdr->tables[i].name, name, FDN_TABLE_NAME_MAX) == 0) {
			*table = i;
			return 0;
		}
	}
	return FDN_ENOTFOUND;
}

/* Where a key is, or would go, in its chain. */
struct fdn__pos {
	_Atomic uint64_t *prev; /* the link word that points at cur      */
	uint64_t prev_val;      /* its value: cur, unmarked                */
	uint32_t cur;           /* first unmarked node >= key, or 0        */
	uint64_t cur_next;      /* cur's next word as read (unmarked)      */
	bool found;             /* cur holds the key                       */
};

/*
 * Michael's search: find the position of (h, key), unlinking every marked
 * node met on the way.  On return prev -> cur was observed with both
 * unmarked.  Read lock held.
 */
static int fdn__search(fdn_segment *s, uint32_t table, uint64_t h, const void *key, uint32_t kl,
		       struct fdn__pos *p)
{
	for (uint32_t retries = 0; retries < FDN__RETRY_MAX; retries++) {
		_Atomic uint64_t *prev = &s->buckets[table][h & s->bucket_mask[table]];
		uint64_t pw = atomic_load_explicit(prev, memory_order_acquire);
		uint64_t steps = 0;
		for (;;) {
			uint32_t cur = FDN_LINK_GIDX(pw);
			if (cur == 0) {
				*p = (struct fdn__pos){prev, pw, 0, 0, false};
				fdn__ht_last_steps = (uint32_t)steps;
				return 0;
			}
			const struct fdn_shm_node *cn = fdn__node(s, cur);
			if (!cn || ++steps > s->ngranules)
				return FDN_ECORRUPT;
			struct fdn_shm_node *n = (struct fdn_shm_node *)cn;
			uint64_t nx = atomic_load_explicit(&n->next, memory_order_acquire);
			if (FDN_LINK_MARKED(nx)) {
				/* Help: unlink the deleted node.  Fails if prev
				 * changed or got marked; then start over. */
				uint64_t succ = FDN_LINK_WORD(FDN_LINK_GIDX(nx), 0, 0);
				if (!atomic_compare_exchange_strong(prev, &pw, succ))
					break;
				pw = succ;
				continue;
			}
			int c = fdn__cmp(n, h, key, kl);
			if (c >= 0) {
				*p = (struct fdn__pos){prev, pw, cur, nx, c == 0};
				fdn__ht_last_steps = (uint32_t)steps;
				return 0;
			}
			prev = &n->next;
			pw = nx;
		}
	}
	return FDN_ECORRUPT;
}

static struct fdn_shm_node *fdn__wnode(fdn_segment *s, uint32_t gidx)
{
	return (struct fdn_shm_node *)fdn__gptr(s, gidx);
}

int fdn__ht_unlink(fdn_segment *s, uint32_t table, uint32_t gidx)
{
	const struct fdn_shm_node *n = fdn__node(s, gidx);
	if (!n || table >= s->ntables)
		return FDN_ECORRUPT;
	struct fdn__pos p;
	return fdn__search(s, table, n->hash, n->data, fdn_node_key_len(n), &p);
}

bool fdn__ht_reachable(fdn_segment *s, uint32_t table, uint32_t gidx)
{
	const struct fdn_shm_node *n = fdn__node(s, gidx);
	if (!n || table >= s->ntables)
		return false;
	uint64_t w = atomic_load_explicit(&s->buckets[table][n->hash & s->bucket_mask[table]],
					  memory_order_acquire);
	for (uint64_t steps = 0; steps <= s->ngranules; steps++) {
		uint32_t g = FDN_LINK_GIDX(w);
		if (g == 0)
			return false;
		if (g == gidx)
			return true;
		const struct fdn_shm_node *m = fdn__node(s, g);
		if (!m)
			return false;
		w = atomic_load_explicit(&m->next, memory_order_acquire);
	}
	return false;
}

/* Record the op in flight on `table` (count unchanged). */
static uint64_t fdn__op_begin(struct fdn__thread *t, uint32_t table, unsigned op)
{
	struct fdn_shm_tslot *ts = t->ts;
	int64_t count =
	    FDN_DELTA_COUNT(atomic_load_explicit(&ts->delta[table], memory_order_relaxed));
	atomic_store_explicit(&ts->node, 0, memory_order_relaxed);
	atomic_store_explicit(&ts->old, 0, memory_order_relaxed);
	atomic_store_explicit(&ts->delta[table], FDN_DELTA_WORD(count, op), memory_order_relaxed);
	/* The record must be visible (to a reclaimer, after our death) before
	 * any shared write of the op; the first is a seq_cst CAS. */
	return (uint64_t)count;
}

/* Commit: count changes by `change` and the op is over, in one store. */
static void fdn__op_end(struct fdn__thread *t, uint32_t table, uint64_t count, int change)
{
	atomic_store_explicit(&t->ts->delta[table],
			      FDN_DELTA_WORD((int64_t)count + change, FDN_OP_NONE),
			      memory_order_release);
}

/* After an op: free the limbo when it is full (outside the section). */
static void fdn__op_after(struct fdn__thread *t)
{
	fdn__limbo_help(t);
}

/* Enter the read-side section of a writing op, with room in the limbo for
 * the one node the op may retire.  Inside a section the limbo cannot be
 * flushed: after FDN_LIMBO_MAX retiring ops there, FDN_EINREAD from a
 * callback of fdn_lookup_view (the caller's own section), FDN_EREENTERED
 * from a signal handler that interrupted a call holding a section. */
static int fdn__op_lock(fdn_segment *s, struct fdn__thread **out)
{
	struct fdn__thread *t;
	int r = fdn__thread_get(s, &t);
	if (r)
		return r;
	/* A signal handler that interrupted one of our ops: the slot's op
	 * line and limbo are that op's until it ends (fdn__op_leave). */
	if ((r = fdn__op_enter(t)) != 0)
		return r;
	/* A destroyed segment takes no more writes: its name may already
	 * belong to a new segment that this handle does not map. */
	if (__builtin_expect(atomic_load_explicit(&s->hdr->destroyed, memory_order_relaxed), 0))
		r = FDN_ESTALE;
	else if (fdn_tslot_pending(t->ts) >= FDN_LIMBO_MAX)
		r = !t->nest ? fdn__limbo_room(t) : t->in_cb ? FDN_EINREAD : FDN_EREENTERED;
	if (r == 0)
		r = fdn__rcu_read_lock(s, out);
	if (r)
		fdn__op_leave(t);
	return r;
}

/* Mark E (our op's target: p->cur, found by our search) and retire it
 * once unlinked. */
static bool fdn__mark_and_retire(struct fdn__thread *t, uint32_t table, const struct fdn__pos *p,
				 uint64_t desired)
{
	fdn_segment *s = t->seg;
	uint32_t e = p->cur;
	uint64_t expect_next = p->cur_next;
	struct fdn_shm_node *en = fdn__wnode(s, e);
	atomic_store_explicit(&t->ts->old, e, memory_order_relaxed);
	if (!atomic_compare_exchange_strong(&en->next, &expect_next, desired)) {
		atomic_store_explicit(&t->ts->old, 0, memory_order_relaxed);
		return false;
	}
	/* E is ours to retire.  Unlink it (or see it unlinked), then limbo:
	 * first by the CAS a search would make, on the link our search saw
	 * point at E (still E, unmarked: then E is out of the chain; the
	 * predecessor is not freed while our section lasts), else by a search,
	 * which unlinks every marked node on its way (Michael's delete).  One
	 * search a delete instead of two.  On a damaged chain the search
	 * fails: E stays marked and is never freed while it might still be
	 * linked (the checker reports it). */
	uint64_t seen = p->prev_val;
	if (atomic_compare_exchange_strong(p->prev, &seen,
					   FDN_LINK_WORD(FDN_LINK_GIDX(desired), 0, 0)) ||
	    fdn__ht_unlink(s, table, e) == 0)
		fdn__limbo_add(t, e, en->gen);
	return true;
}

static int fdn__put_locked(struct fdn__thread *t, uint32_t table, const void *key, uint32_t kl,
			   const void *val, uint32_t vl, int mode,
			   const struct fdn__ht_view *expect, struct fdn__ht_view *existing,
			   const struct fdn__chg *c)
{
	fdn_segment *s = t->seg;
	uint64_t h = fdn__ht_hash_of(s, table, key, kl);
	uint64_t count =
	    fdn__op_begin(t, table, mode == FDN_HT_UNIQUE ? FDN_OP_INSERT : FDN_OP_UPSERT);
	uint32_t g, gen;
	int r = fdn__alloc(t, fdn__node_bytes(kl, vl), &g, &gen);
	if (r) {
		fdn__op_end(t, table, count, 0);
		return r;
	}
	struct fdn_shm_node *n = fdn__wnode(s, g);
	n->hash = h;
	n->gen = gen;
	n->key_info = FDN_NODE_KEY_INFO(kl, table);
	n->val_len = (uint16_t)vl;
	memcpy(n->data, key, kl);
	memset(n->data + kl, 0, ((kl + 7u) & ~7u) - kl);
	if (vl)
		memcpy(n->data + ((kl + 7u) & ~7u), val, vl);

	for (uint32_t retries = 0; retries < FDN__RETRY_MAX; retries++) {
		struct fdn__pos p;
		r = fdn__search(s, table, h, key, kl, &p);
		if (r)
			break;
		if (p.found) {
			const struct fdn_shm_node *en = fdn__wnode(s, p.cur);
			bool wanted = mode == FDN_HT_UPSERT ||
				      (mode == FDN_HT_REPLACE && expect && expect->gidx == p.cur &&
				       expect->gen == en->gen);
			if (!wanted) {
				if (existing)
					fdn__view(en, p.cur, existing);
				r = mode == FDN_HT_UNIQUE ? FDN_EEXISTS : FDN_ENOTFOUND;
				break;
			}
			uint32_t succ = FDN_LINK_GIDX(p.cur_next);
			atomic_store_explicit(&n->next, FDN_LINK_WORD(succ, 0, 0),
					      memory_order_relaxed);
			/* The revision: after the search, before the CAS
			 * (changes.c argues the order). */
			uint64_t rev = fdn__chg_begin(t, c, key, kl);
			bool won =
			    fdn__mark_and_retire(t, table, &p, FDN_LINK_WORD(g, t->slot + 1, 1));
			fdn__chg_end(t, rev, won);
			if (won) {
				fdn__op_end(t, table, count, 0);
				fdn__notify(s);
				if (existing)
					fdn__view(n, g, existing);
				return 0;
			}
			continue;
		}
		if (mode == FDN_HT_REPLACE) {
			r = FDN_ENOTFOUND;
			break;
		}
		atomic_store_explicit(&n->next, FDN_LINK_WORD(p.cur, 0, 0), memory_order_relaxed);
		uint64_t rev = fdn__chg_begin(t, c, key, kl);
		/* Publish N (seq_cst CAS: release for the node's fields). */
		bool won =
		    atomic_compare_exchange_strong(p.prev, &p.prev_val, FDN_LINK_WORD(g, 0, 0));
		fdn__chg_end(t, rev, won);
		if (won) {
			fdn__op_end(t, table, count, +1);
			fdn__notify(s);
			if (existing)
				fdn__view(n, g, existing);
			return 0;
		}
	}
	if (r == 0)
		r = FDN_ECORRUPT;
	/* Not published: give the block back. */
	fdn__free_unpublished(s, g, gen);
	fdn__op_end(t, table, count, 0);
	return r;
}

int fdn__ht_put(fdn_segment *s, uint32_t table, const void *key, size_t klen, const void *val,
		size_t vlen, int mode, const struct fdn__ht_view *expect,
		struct fdn__ht_view *existing)
{
	return fdn__ht_put_chg(s, table, key, klen, val, vlen, mode, expect, existing, NULL);
}

int fdn__ht_put_chg(fdn_segment *s, uint32_t table, const void *key, size_t klen, const void *val,
		    size_t vlen, int mode, const struct fdn__ht_view *expect,
		    struct fdn__ht_view *existing, const struct fdn__chg *c)
{
	int r = fdn__check_key(s, table, klen);
	if (r)
		return r;
	if (vlen > FDN_VALUE_MAX || (vlen && !val) || mode < FDN_HT_UNIQUE ||
	    mode > FDN_HT_REPLACE || (mode == FDN_HT_REPLACE && !expect))
		return FDN_EINVAL;
	for (int attempt = 0; attempt < 2; attempt++) {
		struct fdn__thread *t;
		r = fdn__op_lock(s, &t);
		if (r)
			return r;
		bool outer = t->nest == 1;
		r = fdn__put_locked(t, table, key, (uint32_t)klen, val, (uint32_t)vlen, mode,
				    expect, existing, c);
		fdn__rcu_read_unlock(t);
		if (!outer) {
			fdn__op_leave(t);
			return r;
		}
		/* Out of heap with frees pending in limbo: free them, retry. */
		if (r == FDN_ENOSPACE && attempt == 0 && fdn__limbo_waiting(t->ts) > 0) {
			fdn__limbo_flush(t);
			fdn__op_leave(t);
			continue;
		}
		fdn__op_after(t);
		fdn__op_leave(t);
		return r;
	}
	return r;
}

int fdn__ht_delete(fdn_segment *s, uint32_t table, const void *key, size_t klen,
		   const struct fdn__ht_view *expect)
{
	return fdn__ht_delete_chg(s, table, key, klen, expect, NULL);
}

int fdn__ht_delete_chg(fdn_segment *s, uint32_t table, const void *key, size_t klen,
		       const struct fdn__ht_view *expect, const struct fdn__chg *c)
{
	int r = fdn__check_key(s, table, klen);
	if (r)
		return r;
	struct fdn__thread *t;
	r = fdn__op_lock(s, &t);
	if (r)
		return r;
	uint64_t h = fdn__ht_hash_of(s, table, key, klen);
	uint64_t count = fdn__op_begin(t, table, FDN_OP_DELETE);
	int change = 0;
	r = FDN_ECORRUPT;
	for (uint32_t retries = 0; retries < FDN__RETRY_MAX; retries++) {
		struct fdn__pos p;
		r = fdn__search(s, table, h, key, (uint32_t)klen, &p);
		if (r)
			break;
		if (!p.found || (expect && (expect->gidx != p.cur ||
					    expect->gen != fdn__wnode(s, p.cur)->gen))) {
			r = FDN_ENOTFOUND;
			break;
		}
		uint64_t marked = p.cur_next | FDN_LINK_MARK | ((uint64_t)(t->slot + 1) << 32);
		uint64_t rev = fdn__chg_begin(t, c, key, (uint32_t)klen);
		bool won = fdn__mark_and_retire(t, table, &p, marked);
		fdn__chg_end(t, rev, won);
		if (won) {
			change = -1;
			r = 0;
			break;
		}
		r = FDN_ECORRUPT;
	}
	fdn__op_end(t, table, count, change);
	if (change)
		fdn__notify(s);
	bool outer = t->nest == 1;
	fdn__rcu_read_unlock(t);
	if (outer)
		fdn__op_after(t);
	fdn__op_leave(t);
	return r;
}

/* Walk chain b; *steps counts links across calls (a damaged segment must
 * not make a walk longer than the heap has blocks). */
static int fdn__walk_bucket(fdn_segment *s, uint32_t table, uint64_t b, uint64_t *steps,
			    fdn__ht_cb cb, void *arg)
{
	uint64_t w = atomic_load_explicit(&s->buckets[table][b], memory_order_acquire);
	while (FDN_LINK_GIDX(w)) {
		uint32_t g = FDN_LINK_GIDX(w);
		const struct fdn_shm_node *n = fdn__node(s, g);
		if (!n || ++*steps > s->ngranules)
			return FDN_ECORRUPT;
		w = atomic_load_explicit(&n->next, memory_order_acquire);
		if (FDN_LINK_MARKED(w))
			continue;
		struct fdn__ht_view v;
		fdn__view(n, g, &v);
		int r = cb(arg, &v);
		if (r)
			return r;
	}
	return 0;
}

void fdn__ht_prefetch(const fdn_segment *s, uint32_t table, uint64_t b, uint64_t n)
{
	if (table >= s->ntables)
		return;
	/* Relaxed: a hint; the walk that follows loads each link again. */
	for (uint64_t k = 0; k < n && b + k <= s->bucket_mask[table]; k++) {
		uint64_t w = atomic_load_explicit(&s->buckets[table][b + k], memory_order_relaxed);
		uint64_t g = FDN_LINK_GIDX(w);
		if (g && g < s->ngranules)
			__builtin_prefetch(fdn__gptr(s, g));
	}
}

int fdn__ht_foreach_bucket(fdn_segment *s, uint32_t table, uint64_t b, fdn__ht_cb cb, void *arg)
{
	uint64_t steps = 0;
	if (table >= s->ntables || b > s->bucket_mask[table])
		return FDN_EINVAL;
	return fdn__walk_bucket(s, table, b, &steps, cb, arg);
}

int fdn__ht_foreach(fdn_segment *s, uint32_t table, fdn__ht_cb cb, void *arg)
{
	if (table >= s->ntables)
		return FDN_EINVAL;
	uint64_t steps = 0, nb = s->bucket_mask[table] + 1;
	for (uint64_t b = 0; b < nb; b++) {
		int r = fdn__walk_bucket(s, table, b, &steps, cb, arg);
		if (r)
			return r;
	}
	return 0;
}

int64_t fdn__ht_count(const fdn_segment *s, uint32_t table)
{
	int64_t sum = 0;
	if (table >= s->ntables)
		return FDN_EINVAL;
	for (uint32_t i = 0, n = fdn__tslot_bound(s); i < n; i++)
		sum += FDN_DELTA_COUNT(
		    atomic_load_explicit(&s->tslots[i].delta[table], memory_order_relaxed));
	return sum;
}
