/*
 * registry_purge.c - the removal of what dead owners left: their entries
 * through their owner references (fdn__registry_purge, called by the reaper,
 * lib/reaper.c), the sweep of the whole table (fdn__registry_sweep), stale
 * references (fdn__ref_stale), and the release of a process slot that owns
 * nothing any more (fdn__registry_release_idle, called by registry.c).
 * Calls registry_index.c only (registry_int.h).
 */
#include "lib/registry_int.h"

#include <foundation/changes.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool fdn__ref_stale(fdn_segment *s, const struct fdn__ht_view *v)
{
	struct ref_val rv;
	const unsigned char *k = v->key;
	if (!fdn__reg_ref_of(v, &rv))
		return true;
	uint32_t plen = k[0];
	if (fdn__reg_ref_carried(s, k + 1, plen, k + 1 + plen, v->key_len - 1 - plen))
		return false; /* whoever wrote it: an entry needs it */
	if (!fdn__word_live(s, rv.owner_idx, rv.owner_word))
		return true; /* written for an owner that is gone */
	/* Not carried: stale unless its writer is alive (mid-operation). */
	return !fdn__word_live(s, rv.writer_idx, rv.writer_word);
}

struct purge {
	fdn_segment *s;
	uint32_t table;
	struct victim *v;
	int n;
	uint64_t only_word; /* != 0: remove this owner's entries, live or not */
	uint32_t only_idx;
};

static int collect_cb(void *arg, const struct fdn__ht_view *v)
{
	struct purge *p = arg;
	struct victim *x = &p->v[p->n];
	if (p->table == T_MAIN) {
		struct rec r;
		const unsigned char *attrs;
		if (!rec_of(v, &r, &attrs))
			return 0;
		if (p->only_word ? r.owner_word != p->only_word || r.owner_idx != p->only_idx
				 : fdn__word_live(p->s, r.owner_idx, r.owner_word))
			return 0;
		bool ok =
		    fdn_attrs_validate(attrs, r.attrs_len) == 0 && v->key_len <= FDN_REG_KEY_MAX;
		x->attrs_len = ok ? r.attrs_len : 0; /* damaged: skip its refs */
		memcpy(x->attrs, attrs, x->attrs_len);
		x->owner_idx = r.owner_idx;
		x->owner_word = r.owner_word;
	} else if (p->only_word || !fdn__ref_stale(p->s, v)) {
		return 0; /* an owner's own removal takes its refs with its entries */
	}
	x->version = (struct fdn__ht_view){.gidx = v->gidx, .gen = v->gen};
	x->key_len = v->key_len;
	memcpy(x->key, v->key, v->key_len);
	return ++p->n == PURGE_BATCH;
}

/*
 * The sweep: walk buckets [*cursor, *cursor + budget) of the main table
 * and then the index, removing entries whose owner is not live and stale
 * references.  Resumable: returns 1 when the walk is complete (and resets
 * the cursor), 0 when more remains, or an error (FDN_ETIMEDOUT: call again).
 * The reaper runs it in small steps when idle: a death always finds its
 * entries through the owner's chain first (purge_owner_chain).
 */
static int sweep(fdn_segment *s, uint64_t only_word, uint32_t only_idx, uint64_t *cursor,
		 uint64_t budget)
{
	struct purge p = {s, T_MAIN,    malloc(sizeof(struct victim) * PURGE_BATCH),
			  0, only_word, only_idx};
	if (!p.v)
		return -ENOMEM;
	uint64_t nmain = s->bucket_mask[T_MAIN] + 1, nall = nmain + s->bucket_mask[T_INDEX] + 1;
	int r = 0, stuck = 0;
	uint64_t end = *cursor + budget > nall ? nall : *cursor + budget;
	for (uint64_t c = *cursor; c < end && r == 0;) {
		p.table = c < nmain ? T_MAIN : T_INDEX;
		uint64_t b = c < nmain ? c : c - nmain;
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			break;
		p.n = 0;
		int wr = fdn__ht_foreach_bucket(s, p.table, b, collect_cb, &p);
		fdn__rcu_read_unlock(t);
		if (wr < 0) {
			r = wr;
			break;
		}
		int progress = 0, changed = 0;
		for (int i = 0; i < p.n && r == 0; i++) {
			struct victim *x = &p.v[i];
			int rr;
			if (p.table == T_INDEX) {
				rr = fdn__ht_delete(s, T_INDEX, x->key, x->key_len, &x->version);
			} else {
				struct ref_set rs;
				fdn__reg_refs_of(s, x->owner_idx, x->owner_word, x->attrs,
						 x->attrs_len, &rs);
				rr = fdn__reg_remove_entry(s, x->key, x->key_len, &x->version, &rs,
							   FDN_CHANGE_REMOVED, 0);
			}
			if (rr == FDN_ENOTFOUND)
				changed++; /* its version changed: look again */
			else if (rr)
				r = rr; /* FDN_ETIMEDOUT: the caller retries later */
			else
				progress++;
		}
		/* Next chain when this one is done; look again after a full batch
		 * or a changed version, but never forever on a chain whose
		 * victims cannot be removed (a damaged segment). */
		bool again = p.n == PURGE_BATCH || changed;
		stuck = progress ? 0 : stuck + again;
		if (r == 0 && (!again || stuck > 4)) {
			c++;
			*cursor = c;
			stuck = 0;
		}
	}
	free(p.v);
	if (r)
		return r;
	if (*cursor >= nall) {
		*cursor = 0;
		return 1;
	}
	return 0;
}

int fdn__registry_sweep(fdn_segment *s, uint64_t *cursor, uint64_t budget)
{
	return sweep(s, 0, 0, cursor, budget);
}

struct owner_collect {
	struct victim *v;
	int n;
};

/* One owner reference: its suffix (the group) as the victim's key. */
static int owner_collect_cb(void *arg, const struct fdn_shm_node *nd, size_t plen)
{
	struct owner_collect *c = arg;
	size_t slen = fdn_node_key_len(nd) - 1 - plen;
	if (slen > FDN_REG_KEY_MAX)
		return 0;
	c->v[c->n].key_len = (uint32_t)slen;
	memcpy(c->v[c->n].key, nd->data + 1 + plen, slen);
	return ++c->n == PURGE_BATCH;
}

/* Remove the entries of owner (idx, word) in group g, then the group's
 * reference (prefix), which goes only once no entry of the owner is left
 * there (fdn__reg_ref_del_suffix).  *count += entries removed. */
static int purge_group(fdn_segment *s, const unsigned char *prefix, size_t plen, uint32_t idx,
		       uint64_t word, const unsigned char grp[GROUP_LEN], struct victim *v,
		       uint64_t *count, bool *deleted, uint64_t death)
{
	const struct fdn__chg chg = {FDN_CHANGE_REMOVED, (pid_t)FDN_PROC_PID(word), death, 0};
	uint32_t g;
	memcpy(&g, grp, GROUP_LEN);
	int r = 0;
	for (int rounds = 0; r == 0; rounds++) {
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			return r;
		struct group_scan gs = {s, word, idx, v, 0, PURGE_BATCH, false};
		r = fdn__reg_group_scan(s, g, &gs);
		fdn__rcu_read_unlock(t);
		if (r || gs.n == 0)
			break;
		int progress = 0;
		for (int i = 0; i < gs.n && r == 0; i++) {
			/* The entry, then its values' references; the group's
			 * own goes after the last entry (below), not once per
			 * entry (each a walk of the group). */
			int rr = fdn__ht_delete_chg(s, T_MAIN, v[i].key, v[i].key_len,
						    &v[i].version, &chg);
			if (rr == 0) {
				struct ref_op del = {.s = s, .key = v[i].key, .klen = v[i].key_len};
				fdn__reg_each_prefix(s, v[i].attrs, v[i].attrs_len,
						     fdn__reg_ref_del_cb, &del);
				progress++;
				(*count)++;
			} else if (rr != FDN_ENOTFOUND) {
				r = rr;
			}
		}
		if (!progress && rounds > 4)
			break; /* entries that cannot be removed: the checker reports */
	}
	return r ? r : fdn__reg_ref_del_suffix(s, prefix, plen, grp, GROUP_LEN, deleted);
}

/* Up to PURGE_BATCH group references from the owner's chains of the index. */
static int owner_refs(fdn_segment *s, const unsigned char *prefix, size_t plen, struct victim *v,
		      int *n)
{
	struct fdn__thread *t;
	int r = fdn__rcu_read_lock(s, &t);
	if (r)
		return r;
	struct owner_collect c = {v, 0};
	r = fdn__reg_walk_prefix(s, prefix, plen, owner_collect_cb, &c);
	fdn__rcu_read_unlock(t);
	*n = c.n;
	return r < 0 ? r : 0;
}

/* Remove what the owner (idx, word) left, through its chains: each group
 * reference leads to GROUP_BUCKETS buckets, O(its entries).  *count
 * receives the entries removed. */
static int purge_owner_chain(fdn_segment *s, uint32_t idx, uint64_t word, uint64_t *count,
			     uint64_t death)
{
	unsigned char prefix[OWNER_PREFIX_LEN];
	size_t plen = fdn__reg_owner_prefix(idx, word, prefix);
	struct victim *refs = malloc(sizeof(struct victim) * PURGE_BATCH * 2);
	if (!refs)
		return -ENOMEM;
	struct victim *v = refs + PURGE_BATCH;
	int r = 0, n = 0;
	for (int rounds = 0; r == 0; rounds++) {
		if ((r = owner_refs(s, prefix, plen, refs, &n)) || n == 0)
			break;
		uint64_t before = *count;
		bool deleted = false;
		for (int i = 0; i < n && r == 0; i++) {
			int rr = refs[i].key_len == GROUP_LEN
				     ? purge_group(s, prefix, plen, idx, word, refs[i].key, v,
						   count, &deleted, death)
				     : fdn__reg_ref_del_suffix(s, prefix, plen, refs[i].key,
							       refs[i].key_len,
							       &deleted); /* malformed */
			if (rr != 0 && rr != FDN_ENOTFOUND)
				r = rr;
		}
		/* Progress: an entry or a reference removed.  References that
		 * cannot be removed (their entries cannot): the checker
		 * reports them. */
		if (*count == before && !deleted && rounds > 4)
			break;
	}
	free(refs);
	return r;
}

int fdn__registry_purge(fdn_segment *s, const uint32_t *dead_idx, const uint64_t *dead_word,
			const uint64_t *deaths, uint64_t *counts, size_t ndead)
{
	int r = 0;
	uint64_t removed = 0;
	for (size_t i = 0; i < ndead && r == 0; i++) {
		counts[i] = 0;
		r = purge_owner_chain(s, dead_idx[i], dead_word[i], &counts[i],
				      deaths ? deaths[i] : 0);
		removed += counts[i];
	}
	return r ? r : (int)removed;
}

int fdn__registry_purge_owner(fdn_segment *s, uint32_t idx, uint64_t word)
{
	uint64_t n = 0;
	int r = purge_owner_chain(s, idx, word, &n, 0);
	return r ? r : (int)n;
}

void fdn__registry_drop_kept_refs(fdn_segment *s)
{
	if (atomic_exchange_explicit(&s->nkept, 0, memory_order_relaxed) == 0)
		return;
	unsigned char prefix[OWNER_PREFIX_LEN];
	size_t plen = fdn__reg_owner_prefix(s->proc_idx, s->proc_word, prefix);
	/* The groups noted, each bit's taken out of the set by its word's
	 * exchange (one taker; a group kept again meanwhile is noted again,
	 * its reference dropped by a later call or at our purge).  Each
	 * removal decides as an unregister's does (fdn__reg_ref_del_suffix):
	 * while we hold none without walking the group, and a reference an
	 * entry of ours needs again (another thread's registration meanwhile)
	 * stays.  A bit stands for every group of its residue: those without
	 * a reference cost a lookup that misses. */
	uint64_t ngroups = (s->bucket_mask[T_MAIN] + GROUP_BUCKETS) / GROUP_BUCKETS;
	for (uint32_t k = 0; k < FDN_KEPT_BITS / 64; k++) {
		uint64_t bits =
		    atomic_exchange_explicit(&s->kept_groups[k], 0, memory_order_relaxed);
		for (; bits; bits &= bits - 1) {
			uint64_t b = (uint64_t)k * 64 + (uint64_t)__builtin_ctzll(bits);
			for (uint64_t g64 = b; g64 < ngroups; g64 += FDN_KEPT_BITS) {
				uint32_t g = (uint32_t)g64;
				unsigned char grp[GROUP_LEN];
				memcpy(grp, &g, GROUP_LEN);
				(void)fdn__reg_ref_del_suffix(s, prefix, plen, grp, GROUP_LEN,
							      NULL);
			}
		}
	}
}

int fdn__registry_owner_has_entries(fdn_segment *s, uint32_t idx, uint64_t word)
{
	unsigned char prefix[OWNER_PREFIX_LEN];
	size_t plen = fdn__reg_owner_prefix(idx, word, prefix);
	struct victim *v = malloc(sizeof(struct victim) * PURGE_BATCH);
	if (!v)
		return -ENOMEM;
	int n = 0;
	int r = owner_refs(s, prefix, plen, v, &n);
	free(v);
	return r ? r : n > 0;
}

static bool owner_idle(fdn_segment *s, uint32_t idx, uint64_t word)
{
	return fdn__registry_owner_has_entries(s, idx, word) == 0;
}

bool fdn__registry_release_idle(fdn_segment *s, uint32_t idx, uint64_t word)
{
	if (idx >= s->nprocs || idx == s->proc_idx || FDN_PROC_STATE(word) != FDN_PROC_LIVE)
		return false;
	if (atomic_load(&s->procs[idx].word) != word)
		return false;
	return fdn__proc_release(s, idx, word, owner_idle) == 0;
}
