/*
 * registry_index.c - the registry's secondary index (table "index", 1):
 * its references, written and removed with the entries by registry.c and
 * the purge (registry_purge.c); the walks of a prefix's chains; the
 * removal of an entry with its references.  Calls none of the other
 * registry files (registry_int.h).
 *
 * Table "index" (1, prefix-hashed) holds one reference per (indexed
 * attribute value, entry), and one per (owner, group of main-table buckets
 * holding its entries; while the owner lives, possibly one that held them:
 * own_ref_kept) -- the owner references, below: key =
 * [n][name \0 type value-text][entry key], resp. [14][owner prefix][group],
 * where the n-byte prefix is what is hashed, so all entries of one value
 * lie in its prefix's chains (32 of them, more for a value many entries
 * hold: "Levels" below) and find_by_attribute walks only those.  The value is
 * struct ref_val {owner_word, writer_word, owner_idx, writer_idx}: the
 * owner the reference was written for and the process that wrote it --
 * except for an owner reference (below) written by its owner itself, whose
 * value is empty: its prefix names the owner, and the writer is the owner
 * (fdn__reg_ref_of).  An owner reference is then one 64-byte block (24-byte node
 * header, 19-byte key).  References are written before the entry and
 * removed after it, so the index may briefly hold a reference whose entry
 * does not (yet or any more) carry the value -- and misses one that does
 * only for the moment between a concurrent remover's delete and the write
 * that restores it (fdn__reg_ref_del_suffix).  Readers therefore verify every reference against the
 * main table.  A reference is stale when its owner is dead, or when its entry does not carry its
 * value and its writer is dead (a writer killed between the two steps); the reaper removes stale
 * references (fdn__registry_purge) and the checker reports any it finds afterwards.
 */
#include "lib/registry_int.h"

#include <stdio.h>
#include <string.h>

/* The decimal text of v into out (at least 21 bytes), NUL-terminated: what
 * "%lld" prints, without snprintf's cost on every indexed write. */
static void int_text(int64_t v, char *out)
{
	char tmp[21];
	size_t n = 0;
	uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
	do
		tmp[n++] = (char)('0' + u % 10u);
	while ((u /= 10u) != 0);
	if (v < 0)
		*out++ = '-';
	while (n)
		*out++ = tmp[--n];
	*out = 0;
}

/* Prefix "name \0 type text" of one indexable value, or 0 if too long. */
size_t fdn__reg_prefix_of(const char *name, const struct fdn_attr *a, const char *item,
			  unsigned char *out)
{
	char text[PREFIX_MAX + 1];
	char type;
	size_t il;
	switch (a->type) {
	case FDN_ATTR_STRING:
	case FDN_ATTR_LIST:
		if ((il = strlen(item)) > INDEXED_STRING_MAX)
			return 0;
		type = 's';
		memcpy(text, item, il + 1);
		break;
	case FDN_ATTR_INT:
		type = 'n';
		int_text(a->v.i, text);
		break;
	case FDN_ATTR_DOUBLE:
		/* EQ compares numbers by value: an integral double is indexed
		 * as the integer it equals (1.0 as 1, -0.0 as 0). */
		type = 'n';
		if (a->v.d >= -9.2e18 && a->v.d <= 9.2e18 && a->v.d == (double)(long long)a->v.d)
			int_text((int64_t)a->v.d, text);
		else
			snprintf(text, sizeof(text), "%.17g", a->v.d);
		break;
	case FDN_ATTR_BOOL:
		type = 'b';
		snprintf(text, sizeof(text), "%d", a->v.b ? 1 : 0);
		break;
	default:
		return 0;
	}
	size_t nl = strlen(name), tl = strlen(text);
	if (nl + 2 + tl > PREFIX_MAX)
		return 0;
	memcpy(out, name, nl);
	out[nl] = 0;
	out[nl + 1] = (unsigned char)type;
	memcpy(out + nl + 2, text, tl);
	return nl + 2 + tl;
}

/* Call cb for the prefix of every indexed value of an encoded set. */
int fdn__reg_each_prefix(fdn_segment *s, const void *attrs, size_t alen, prefix_cb cb, void *arg)
{
	uint32_t n = fdn_attrs_count(attrs, alen);
	size_t off = 2;
	for (uint32_t i = 0; i < n; i++) {
		struct fdn_attr a;
		int d = fdn__attrs_next(attrs, alen, &off, &a);
		if (d == FDN_ENOTFOUND)
			break;
		if (d || !fdn__reg_indexed(s, a.name))
			continue;
		unsigned char p[PREFIX_MAX];
		uint32_t items = a.type == FDN_ATTR_LIST ? a.v.list.n : 1;
		for (uint32_t k = 0; k < items; k++) {
			const char *item = a.type == FDN_ATTR_LIST     ? fdn_attrs_list_item(&a, k)
					   : a.type == FDN_ATTR_STRING ? a.v.s
								       : "";
			size_t pl = item ? fdn__reg_prefix_of(a.name, &a, item, p) : 0;
			if (pl == 0)
				continue;
			int r = cb(arg, p, pl);
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * The owner references: with the prefix [0 'o' owner_word owner_idx] (an
 * attribute name is never empty, so no attribute prefix starts with 0), one
 * reference per group of GROUP_BUCKETS consecutive main-table buckets that
 * holds an entry of the owner: its key is [14][prefix][group, u32 little-
 * endian], where an entry's group is its bucket / GROUP_BUCKETS.  All
 * references of one owner share its chains, so the reaper finds a dead
 * owner's entries by walking the groups they name: O(entries x
 * GROUP_BUCKETS) bucket words (8 lines a group), not the table.  An owner
 * with many entries has far fewer references than entries (at most one
 * per group: 1 000 000 entries of one owner in 2^21 buckets have 32 768),
 * which is what keeps the registry near 160 bytes per entry; an owner with
 * few has about one per entry (a 64-byte block each).
 *
 * A group's reference exists while some entry of its owner -- visible or
 * not (an owner's death hides its entries before they are removed) -- lies
 * in the group: it is made sure of before each entry and looked for again
 * after it, like every reference, and removed only when a walk of the
 * group in a read-side section found no entry of that owner
 * (fdn__reg_ref_del_suffix, which argues why a concurrent writer's entry
 * is never left without it) -- or, for a process's own references, when
 * it holds no entry at all (counted entries, registry_int.h), which needs
 * no walk.
 */

size_t fdn__reg_owner_prefix(uint32_t idx, uint64_t word, unsigned char *out)
{
	out[0] = 0;
	out[1] = 'o';
	memcpy(out + 2, &word, 8);
	memcpy(out + 10, &idx, 4);
	return OWNER_PREFIX_LEN;
}

static bool is_owner_prefix(const unsigned char *prefix, size_t plen)
{
	return plen == OWNER_PREFIX_LEN && prefix[0] == 0 && prefix[1] == 'o';
}

/* The owner (word, slot) an owner prefix names; false if it is not one. */
static bool owner_of(const unsigned char *prefix, size_t plen, uint64_t *word, uint32_t *idx)
{
	if (!is_owner_prefix(prefix, plen))
		return false;
	memcpy(word, prefix + 2, 8);
	memcpy(idx, prefix + 10, 4);
	return true;
}

/* The value of reference v: stored, or (an owner reference with an empty
 * value) the owner its prefix names, who also wrote it.  False if v is
 * malformed. */
bool fdn__reg_ref_of(const struct fdn__ht_view *v, struct ref_val *rv)
{
	const unsigned char *k = v->key;
	if (v->key_len < 2 || 1u + k[0] > v->key_len)
		return false;
	if (v->val_len == sizeof(*rv)) {
		memcpy(rv, v->val, sizeof(*rv));
		return true;
	}
	if (v->val_len != 0 || !owner_of(k + 1, k[0], &rv->owner_word, &rv->owner_idx))
		return false;
	rv->writer_word = rv->owner_word;
	rv->writer_idx = rv->owner_idx;
	return true;
}

/* Call cb for the owner reference, then every indexed value. */
int fdn__reg_each_ref(fdn_segment *s, uint32_t oidx, uint64_t oword, const void *attrs, size_t alen,
		      prefix_cb cb, void *arg)
{
	unsigned char p[OWNER_PREFIX_LEN];
	int r = cb(arg, p, fdn__reg_owner_prefix(oidx, oword, p));
	return r ? r : fdn__reg_each_prefix(s, attrs, alen, cb, arg);
}

static int collect_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct ref_set *rs = arg;
	size_t at = rs->off[rs->n];
	if (rs->n == REF_SET_MAX + 1 || at + plen > REF_SET_BYTES)
		return 1; /* too many: partial */
	memcpy(rs->buf + at, prefix, plen);
	rs->off[++rs->n] = (uint16_t)(at + plen);
	return 0;
}

void fdn__reg_refs_of(fdn_segment *s, uint32_t oidx, uint64_t oword, const void *attrs, size_t alen,
		      struct ref_set *rs)
{
	rs->s = s;
	rs->attrs = attrs;
	rs->alen = alen;
	rs->owner_word = oword;
	rs->owner_idx = oidx;
	rs->n = 0;
	rs->off[0] = 0;
	rs->partial = fdn__reg_each_ref(s, oidx, oword, attrs, alen, collect_cb, rs) != 0;
}

int fdn__reg_set_each(const struct ref_set *rs, bool owner, prefix_cb cb, void *arg)
{
	if (rs->partial) {
		if (owner)
			return fdn__reg_each_ref(rs->s, rs->owner_idx, rs->owner_word, rs->attrs,
						 rs->alen, cb, arg);
		return fdn__reg_each_prefix(rs->s, rs->attrs, rs->alen, cb, arg);
	}
	for (uint32_t i = owner ? 0 : 1; i < rs->n; i++) {
		int r = cb(arg, rs->buf + rs->off[i], (size_t)(rs->off[i + 1] - rs->off[i]));
		if (r)
			return r;
	}
	return 0;
}

static int count_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	(void)prefix;
	(void)plen;
	++*(uint32_t *)arg;
	return 0;
}

uint32_t fdn__reg_set_count(const struct ref_set *rs)
{
	uint32_t n = 0;
	if (!rs->partial)
		return rs->n;
	fdn__reg_set_each(rs, true, count_cb, &n);
	return n;
}

struct has_arg {
	const unsigned char *prefix;
	size_t plen;
};

static int has_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct has_arg *h = arg;
	return plen == h->plen && memcmp(prefix, h->prefix, plen) == 0;
}

/* Is prefix one of rs's (the owner's included)? */
static bool set_has(const struct ref_set *rs, const unsigned char *prefix, size_t plen)
{
	struct has_arg h = {prefix, plen};
	return fdn__reg_set_each(rs, true, has_cb, &h) == 1;
}

/* Does the encoded set produce this prefix (a value's)? */
static bool attrs_have(fdn_segment *s, const void *attrs, size_t alen, const unsigned char *prefix,
		       size_t plen)
{
	struct has_arg h = {prefix, plen};
	return attrs && fdn__reg_each_prefix(s, attrs, alen, has_cb, &h) == 1;
}

/* The group of an entry key (see the owner references). */
static uint32_t group_of(fdn_segment *s, const void *key, size_t klen)
{
	return (uint32_t)((fdn__ht_hash(s, T_MAIN, key, klen) & s->bucket_mask[T_MAIN]) /
			  GROUP_BUCKETS);
}

/* What follows the prefix in the reference of (prefix, entry key): the
 * key, or for an owner prefix the key's group (into grp). */
static const void *ref_suffix(fdn_segment *s, const unsigned char *prefix, size_t plen,
			      const void *key, size_t *klen, unsigned char grp[GROUP_LEN])
{
	if (!is_owner_prefix(prefix, plen))
		return key;
	uint32_t g = group_of(s, key, *klen);
	memcpy(grp, &g, GROUP_LEN);
	*klen = GROUP_LEN;
	return grp;
}

/* [plen][prefix][suffix] into buf; returns its length. */
static size_t ref_key_raw(unsigned char *buf, const unsigned char *prefix, size_t plen,
			  const void *suf, size_t slen)
{
	buf[0] = (unsigned char)plen;
	memcpy(buf + 1, prefix, plen);
	memcpy(buf + 1 + plen, suf, slen);
	return 1 + plen + slen;
}

/*
 * Levels.  The references of a value shared by very many entries would
 * make long chains (all of a value's references lie in its prefix's
 * chains).  So a value's prefix P has a level (header.prefix_levels, shm/
 * layout.h): its references are written under the stored prefix P (level
 * 0, 32 chains), [1]P (1 024 chains) or [2]P (32 768), the level the writer
 * read; a writer whose insert passed more than RAISE_STEPS nodes raises
 * it.  Levels never go down, so a reference lies under some level up to the
 * current one: lookups and removals try each, and a walk visits each and
 * reports a reference found under a lower level only if none of the same
 * entry lies under a higher one (two writers racing with a raise can leave
 * both).  A walk goes from the top level down and a removal from the bottom
 * up: an entry the walk reported under a higher level has its lower
 * reference removed first, and one registered again writes under the top
 * level (or where its reference lies), so no entry is reported twice by
 * one walk, even when it is removed and registered again meanwhile.
 * Owner references have no levels: one per group bounds them.
 * An attribute name never starts with a byte below 0x20 (fdn__set_indexed),
 * so a stored prefix starting with 1 or 2 is always a levelled one.
 * The level is loaded seq_cst and raised by a seq_cst CAS: an operation
 * that happens after an insert (it found the entry the insert's writer
 * published afterwards, or began after it returned) reads the level that
 * insert read, or a higher one (coherence, and the single order of seq_cst
 * accesses), so it looks under the level the reference was written to.
 * A crash between an insert and its raise leaves the level low: the next
 * long insert raises it.  A raise with no insert after it costs walks
 * chains, nothing else.
 */
/* The steps past which an insert raises its value's level.  A writer's
 * policy, not the format: writers of different thresholds share a segment
 * (a reference lies under some level up to the current one whatever raised
 * it).  16: a value of 10 000 / 8 = 1 250 holders (fdn-bench-registry's
 * register_unregister) then lies under level 1, about one reference a chain,
 * where with 48 it stayed under level 0 at ~39 a chain, walked twice a pair
 * on lines other work had evicted: 212 k -> 399 k pairs/s (8 gave 391 k).
 * The price is paid by finds: a value's references lie under more levels,
 * and one found under a lower level is looked up under the higher ones.  A
 * find of 1 250 holders took 168-185 us against 126-142 with 48, one of
 * 12 500 holders (100 000 entries) 7.8 ms against 4.0.  Writes are the
 * hotter path. */
#define RAISE_STEPS 16u

unsigned fdn__reg_level(fdn_segment *s, const unsigned char *prefix, size_t plen)
{
	return is_owner_prefix(prefix, plen) ? 0 : fdn__prefix_level(s, prefix, plen);
}

/* The value's prefix of a stored one: without its level byte. */
static void logical_prefix(const unsigned char **prefix, size_t *plen)
{
	if (*plen && ((*prefix)[0] == 1 || (*prefix)[0] == 2)) {
		++*prefix;
		--*plen;
	}
}

/* The key of the reference (prefix, suffix) under level lvl into buf. */
static size_t ref_key_at(unsigned char *buf, const unsigned char *prefix, size_t plen, unsigned lvl,
			 const void *suf, size_t slen)
{
	unsigned char sp[1 + PREFIX_MAX];
	size_t n = fdn__prefix_at_level(prefix, plen, lvl, sp);
	return ref_key_raw(buf, sp, n, suf, slen);
}

/* The highest level in [floor, top] under which the reference (prefix,
 * suffix) lies, its node in *v; -1 if none.  Read lock held. */
static int ref_lookup(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
		      size_t slen, unsigned top, unsigned floor, struct fdn__ht_view *v)
{
	for (int l = (int)top; l >= (int)floor; l--) {
		unsigned char k[REF_KEY_MAX];
		size_t kl = ref_key_at(k, prefix, plen, (unsigned)l, suf, slen);
		if (fdn__ht_lookup(s, T_INDEX, k, kl, v) == 0)
			return l;
	}
	return -1;
}

bool fdn__reg_ref_exists(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *key,
			 size_t klen)
{
	unsigned char grp[GROUP_LEN];
	const void *suf = ref_suffix(s, prefix, plen, key, &klen, grp);
	struct fdn__ht_view v;
	return ref_lookup(s, prefix, plen, suf, klen, fdn__reg_level(s, prefix, plen), 0, &v) >= 0;
}

bool fdn__reg_ref_above(fdn_segment *s, const unsigned char *prefix, size_t plen, unsigned lvl,
			unsigned top, const void *key, size_t klen)
{
	struct fdn__ht_view v;
	return ref_lookup(s, prefix, plen, key, klen, top, lvl + 1, &v) >= 0;
}

static int group_scan_cb(void *arg, const struct fdn__ht_view *v);

int fdn__reg_group_scan(fdn_segment *s, uint32_t g, struct group_scan *gs)
{
	uint64_t nb = s->bucket_mask[T_MAIN] + 1, b0 = (uint64_t)g * GROUP_BUCKETS;
	/* At 1 000 000 entries a group holds about 32 nodes, each a cache
	 * miss: fetched together, the walk below waits for them about once.
	 * The purge, which collects them all, fetches the whole group at
	 * once; a question of whether the owner has any entry there
	 * (fdn_unregister's) usually ends in the first buckets, so it fetches
	 * a line of bucket words (8) at a time: with the whole group fetched,
	 * 64 nodes (4 KiB) per unregister were read into the cache for about
	 * one looked at. */
	uint64_t batch = gs->v ? GROUP_BUCKETS : FDN_CACHELINE / sizeof(uint64_t);
	for (uint64_t b = b0; b < b0 + GROUP_BUCKETS && b < nb; b++) {
		if ((b - b0) % batch == 0)
			fdn__ht_prefetch(s, T_MAIN, b, batch);
		int r = fdn__ht_foreach_bucket(s, T_MAIN, b, group_scan_cb, gs);
		if (r < 0)
			return r;
		if (r > 0)
			break; /* enough */
	}
	return 0;
}

/*
 * Write the reference (prefix, suffix) for owner (oword, oidx), written by
 * this process: one that is there with this value is left as it is (so a
 * make-sure-of costs one lookup per level); otherwise it is written under
 * the level where it lies, or under the prefix's current level if it lies
 * nowhere.
 *
 * top_only: look under the current level only, and write there if it is
 * not there -- a registration's puts.  A value raised to a higher level
 * keeps the references written under the lower one before the raise (for
 * its long-lived entries, for ever), so a lookup there walks them: with
 * 10 000 entries of 8 values, about 16 a chain under level 0, walked twice
 * a register; not looking there gave fdn-bench-registry's pairs 1.05-
 * 1.12 x (docs/benchmarks.md).  A reference of the same entry may lie
 * under a lower level too (a registration that takes over its own key, a
 * stale one): it is then there twice, which the levels allow (two writers
 * racing with a raise leave the same, "Levels" above): walks report it
 * once, and the removal tries every level.  An update keeps the full look
 * (it would otherwise write every unchanged value of an entry registered
 * before a raise again).
 */
static int ref_put(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
		   size_t slen, uint64_t oword, uint32_t oidx, bool top_only, uint32_t *node)
{
	*node = 0;
	struct ref_val v = {oword, s->proc_word, oidx, s->proc_idx};
	/* An owner reference written by its owner: the prefix says it all. */
	bool self = is_owner_prefix(prefix, plen) && v.owner_word == v.writer_word &&
		    v.owner_idx == v.writer_idx;
	size_t vlen = self ? 0 : sizeof(v);
	unsigned top = fdn__reg_level(s, prefix, plen), lvl = top;
	unsigned char k[REF_KEY_MAX];
	struct fdn__ht_view wrote = {0};
	/* A value's reference in a registration (top_only) is usually absent
	 * (a new entry): inserted at once, the insert's own search being the
	 * look (a lookup fewer a register).  Present (FDN_EEXISTS), the look
	 * below decides, in a section, whether the node there serves.  An
	 * owner's group reference is usually present: looked up first. */
	int r = FDN_EEXISTS;
	if (top_only && !is_owner_prefix(prefix, plen))
		r = fdn__ht_put(s, T_INDEX, k, ref_key_at(k, prefix, plen, top, suf, slen), &v,
				vlen, FDN_HT_UNIQUE, NULL, &wrote);
	if (r == FDN_EEXISTS) {
		struct fdn__thread *t;
		if (fdn__rcu_read_lock(s, &t) == 0) {
			struct fdn__ht_view ev;
			int l =
			    ref_lookup(s, prefix, plen, suf, slen, top, top_only ? top : 0, &ev);
			bool same = l >= 0 && ev.val_len == vlen &&
				    (vlen == 0 || memcmp(ev.val, &v, vlen) == 0);
			fdn__rcu_read_unlock(t);
			if (same) {
				*node = ev.gidx;
				return 0;
			}
			lvl = l >= 0 ? (unsigned)l : top;
		}
		r = fdn__ht_put(s, T_INDEX, k, ref_key_at(k, prefix, plen, lvl, suf, slen), &v,
				vlen, FDN_HT_UPSERT, NULL, &wrote);
	}
	if (r == 0)
		*node = wrote.gidx;
	if (r == 0 && lvl == top && top < 2 && !is_owner_prefix(prefix, plen) &&
	    fdn__ht_last_steps > RAISE_STEPS)
		fdn__prefix_raise(s, prefix, plen, top + 1);
	return r;
}

/*
 * Make sure of the reference (prefix, entry key) -- before an entry is
 * written, and again after it (fdn__reg_refs_after_entry) -- each time a
 * lookup per level when it is there (ref_put).  Why the second look is
 * enough, with no second write: fdn__reg_ref_del_suffix.
 */
int fdn__reg_ref_put_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct ref_op *o = arg;
	if (o->klen > FDN_REG_KEY_MAX)
		return FDN_EINVKEY;
	unsigned char grp[GROUP_LEN];
	size_t slen = o->klen;
	const void *suf = ref_suffix(o->s, prefix, plen, o->key, &slen, grp);
	uint32_t node;
	int r =
	    ref_put(o->s, prefix, plen, suf, slen, o->owner_word, o->owner_idx, o->top_only, &node);
	if (o->nodes && o->at <= REF_SET_MAX)
		o->nodes[o->at++] = node;
	return r;
}

/*
 * After the entry's publication: each reference made sure of again.  The
 * writer's half of the store-buffering pair argued at
 * fdn__reg_ref_del_suffix -- the publication, this fence, then a read of
 * the reference's node -- is usually one load a reference: when the writer
 * has held one read-side section since its first pass (o->nodes), the node
 * each reference had then (found, or written) cannot have been freed
 * meanwhile, whoever removed it, so its `next` word is still that node's
 * and says whether a delete (or a newer version) marked it.  Unmarked, read
 * after our fence: a remover's marking CAS comes later in that word's
 * modification order, so (the C11 fence rule) the remover's fence comes
 * after ours in their single total order, and its look afterwards finds
 * our entry and writes the reference again.  Marked, or not known: the
 * full look (a lookup per level, and a write when absent), as without the
 * section.  The two lookups (an owner and a value reference) were about
 * 1 400 of a register+unregister pair's 11 200 instructions; with the
 * section held a pair takes 10 450 (docs/benchmarks.md).
 */
int fdn__reg_refs_after_entry(struct ref_op *o, const struct ref_set *rs, struct fdn__thread **held)
{
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t *nodes = o->nodes;
	bool known = nodes && held && *held && !rs->partial && o->at == rs->n;
	uint32_t look = 0; /* bit i: reference i needs the full look */
	for (uint32_t i = 0; known && i < rs->n; i++) {
		const struct fdn_shm_node *n = nodes[i] ? fdn__node(o->s, nodes[i]) : NULL;
		if (!n || FDN_LINK_MARKED(atomic_load_explicit(&n->next, memory_order_acquire)))
			look |= 1u << i;
	}
	/* The full looks outside the section: a write there may need room
	 * in the deferred-free list, which a section cannot make. */
	if (held && *held)
		fdn__rcu_read_unlock(*held);
	if (held)
		*held = NULL;
	o->nodes = NULL;
	if (!known)
		return fdn__reg_set_each(rs, true, fdn__reg_ref_put_cb, o);
	for (uint32_t i = 0; i < rs->n; i++) {
		if (!(look & (1u << i)))
			continue;
		int r = fdn__reg_ref_put_cb(o, rs->buf + rs->off[i],
					    (size_t)(rs->off[i + 1] - rs->off[i]));
		if (r)
			return r;
	}
	return 0;
}

/* An owner reference of ours whose owner holds no entry at all (counted
 * entries, registry_int.h): not needed, whatever its group holds. */
static bool owner_holds_none(fdn_segment *s, const unsigned char *prefix, size_t plen)
{
	uint64_t w;
	uint32_t i;
	return owner_of(prefix, plen, &w, &i) && fdn__held_none(s, i, w);
}

/* Is the reference (prefix, suffix) needed?  An owner reference: its group
 * holds an entry of its owner.  A value's: the entry of key suffix is
 * visible and carries the value.  The owner the reference is needed for
 * into *oword, *oidx (may be NULL).  Read lock held. */
static bool carried_for(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
			size_t slen, uint64_t *oword, uint32_t *oidx)
{
	uint64_t w;
	uint32_t i;
	if (owner_of(prefix, plen, &w, &i)) {
		if (slen != GROUP_LEN)
			return false;
		struct group_scan gs = {s, w, i, NULL, 0, 0, false};
		uint32_t g;
		memcpy(&g, suf, GROUP_LEN);
		if (fdn__reg_group_scan(s, g, &gs) != 0 || !gs.any)
			return false;
	} else {
		logical_prefix(&prefix, &plen);
		struct fdn__ht_view ev;
		struct rec rc;
		struct fdn_entry_view e;
		if (check_key(slen) != 0 || fdn__ht_lookup(s, T_MAIN, suf, slen, &ev) != 0 ||
		    !visible(s, &ev, &rc, &e) || !attrs_have(s, e.attrs, e.attrs_len, prefix, plen))
			return false;
		w = rc.owner_word;
		i = rc.owner_idx;
	}
	if (oword)
		*oword = w, *oidx = i;
	return true;
}

bool fdn__reg_ref_carried(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
			  size_t slen)
{
	return carried_for(s, prefix, plen, suf, slen, NULL, NULL);
}

/*
 * Remove the reference (prefix, suffix) unless it is needed
 * (fdn__reg_ref_carried): for a value, the entry now visible for key
 * carries it; for an owner, an entry of the owner lies in the group.
 * Decided in a read-side section, then deleted after it, the delete naming
 * the exact reference version seen (gidx and generation: a name that
 * stays valid outside the section, as for fdn__reg_remove_entry).  The
 * delete is made outside the section so that it can flush a full
 * deferred-free list first: inside a section it could not (FDN_EINREAD),
 * and a reaper whose list was full failed every purge of references
 * without entries, retrying for ever (stress_killstorm under ASan;
 * test_registry purge_with_a_full_limbo).
 *
 * A writer W can publish an entry E that needs the reference R between
 * our decision and our delete: W made sure of R before E, and found it (a
 * version we then delete).  Each reference is therefore written once, and
 * both sides look again afterwards -- a store-buffering pair:
 *
 *   W: publish E (CAS);  fence(seq_cst);  look for R  -- absent: write it
 *   U: delete R (CAS);   fence(seq_cst);  is R needed? -- E there: write it
 *
 * (W's side is fdn__reg_refs_after_entry; U's is below.)  Of the two
 * fences one comes first in the single total order of seq_cst fences.  If
 * W's does, U's look (after its fence) reads E's link word as W's CAS left
 * it or later: it finds E -- or E already removed, and then R is not
 * needed.  If U's does, W's look reads R's node's `next` word as our
 * delete's marking CAS left it or later: W finds R gone (or a newer
 * version someone wrote since) and writes it.  So a reference a visible
 * entry needs is never left missing by a live pair.  As before, a process
 * killed between the steps is what the checker's "indexed value without
 * its index reference" would report; and a reference written again for an
 * entry removed meanwhile is stale, which the sweep removes once its
 * writer is gone.  This replaced a second write of every reference after
 * each entry (one table insert, one retirement): a register now writes
 * each reference at most once, and an unregister looks once more only
 * after a delete that took.
 */
int fdn__reg_ref_del_suffix(fdn_segment *s, const unsigned char *prefix, size_t plen,
			    const void *suf, size_t slen, bool *deleted)
{
	unsigned char k[REF_KEY_MAX];
	if (slen > FDN_REG_KEY_MAX)
		return 0;
	size_t kl = ref_key_raw(k, prefix, plen, suf, slen);
	struct fdn__thread *t;
	int r = fdn__rcu_read_lock(s, &t);
	if (r)
		return r;
	struct fdn__ht_view ref, version = {0};
	r = fdn__ht_lookup(s, T_INDEX, k, kl, &ref);
	if (r == 0) {
		version = (struct fdn__ht_view){.gidx = ref.gidx, .gen = ref.gen};
		r = !owner_holds_none(s, prefix, plen) &&
			    fdn__reg_ref_carried(s, prefix, plen, suf, slen)
			? 1
			: 0;
	}
	fdn__rcu_read_unlock(t);
	if (r == 0)
		r = fdn__ht_delete(s, T_INDEX, k, kl, &version);
	if (r == 0) {
		atomic_thread_fence(memory_order_seq_cst);
		uint64_t oword = 0;
		uint32_t oidx = 0;
		bool need = false;
		if ((r = fdn__rcu_read_lock(s, &t)))
			return r;
		need = !owner_holds_none(s, prefix, plen) &&
		       carried_for(s, prefix, plen, suf, slen, &oword, &oidx);
		fdn__rcu_read_unlock(t);
		if (need) {
			logical_prefix(&prefix, &plen);
			uint32_t node;
			r = ref_put(s, prefix, plen, suf, slen, oword, oidx, false, &node);
		} else if (deleted) {
			*deleted = true;
		}
	}
	return r == FDN_ENOTFOUND || r == 1 ? 0 : r;
}

/* The same for the reference of (prefix, entry key), under every level. */
static int ref_del_unused(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *key,
			  size_t klen)
{
	unsigned char grp[GROUP_LEN];
	if (klen > FDN_REG_KEY_MAX)
		return 0;
	const void *suf = ref_suffix(s, prefix, plen, key, &klen, grp);
	unsigned top = fdn__reg_level(s, prefix, plen);
	int r = 0;
	for (unsigned l = 0; l <= top && r == 0; l++) {
		unsigned char sp[1 + PREFIX_MAX];
		size_t n = fdn__prefix_at_level(prefix, plen, l, sp);
		r = fdn__reg_ref_del_suffix(s, sp, n, suf, klen, NULL);
	}
	return r;
}

/* Is prefix the owner reference of this process's own slot, while it
 * still holds entries (counted)?  Then the reference of key's group is
 * kept when an entry of the group goes: deciding whether another entry of
 * ours still lies in the group costs two walks of its 64 buckets (before
 * the delete and after), about 32 nodes each at 1 000 000 entries; with 1
 * to 100 entries of its own besides, a process's register+unregister pair
 * took 1.1 us instead of 0.68.  Keeping is always safe: readers verify
 * every reference against the main table (top of this file), the purge
 * walks the group and finds nothing there, and fdn__ref_stale calls a
 * reference of a live owner written by itself not stale.  And bounded, by
 * the number of groups (one reference each: at most one byte per main-
 * table bucket): the handle notes each group it keeps a reference of in a
 * bitmap (kept_groups, an atomic OR; racing threads noting one group agree
 * on its bit).  It held 64 groups before, and past them an unregister
 * walked: with 4 096 keys over the 512 groups of fdn-bench-registry's
 * pairs, 86 % of unregisters walked a group (callgrind: 25 830 of
 * 30 000).  The unregister through
 * this handle that leaves the process no entry removes them
 * (fdn__registry_drop_kept_refs; through another handle they wait for a
 * later one), and the purge when the process detaches or dies takes any
 * left.  Not for another process's slot: an owner with references counts
 * as holding entries when its slot is released
 * (fdn__registry_release_idle). */
static bool own_ref_kept(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *key,
			 size_t klen)
{
	uint64_t w;
	uint32_t i;
	if (klen > FDN_REG_KEY_MAX || !owner_of(prefix, plen, &w, &i) || !fdn__held_own(s, i, w) ||
	    atomic_load_explicit(s->held, memory_order_seq_cst) <= 0)
		return false;
	uint32_t b = group_of(s, key, klen) % FDN_KEPT_BITS;
	uint64_t bit = (uint64_t)1 << (b % 64);
	_Atomic uint64_t *c = &s->kept_groups[b / 64];
	if (atomic_load_explicit(c, memory_order_relaxed) & bit)
		return true;
	if (!(atomic_fetch_or_explicit(c, bit, memory_order_relaxed) & bit))
		atomic_fetch_add_explicit(&s->nkept, 1, memory_order_relaxed);
	return true;
}

int fdn__reg_ref_del_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct ref_op *o = arg;
	if (o->keep && set_has(o->keep, prefix, plen))
		return 0;
	if (own_ref_kept(o->s, prefix, plen, o->key, o->klen))
		return 0;
	return ref_del_unused(o->s, prefix, plen, o->key, o->klen);
}

/* An entry of the scanned owner met in its group (group_scan). */
static int group_scan_cb(void *arg, const struct fdn__ht_view *v)
{
	struct group_scan *gs = arg;
	struct rec r;
	const unsigned char *attrs;
	if (!rec_of(v, &r, &attrs) || r.owner_word != gs->word || r.owner_idx != gs->idx)
		return 0;
	gs->any = true;
	if (!gs->v)
		return 1; /* one is enough */
	struct victim *x = &gs->v[gs->n];
	bool ok = fdn_attrs_validate(attrs, r.attrs_len) == 0 && v->key_len <= FDN_REG_KEY_MAX;
	if (!ok)
		return 0; /* damaged: it keeps its reference, the checker reports it */
	x->version = (struct fdn__ht_view){.gidx = v->gidx, .gen = v->gen};
	x->key_len = v->key_len;
	memcpy(x->key, v->key, v->key_len);
	x->attrs_len = r.attrs_len;
	memcpy(x->attrs, attrs, r.attrs_len);
	x->owner_idx = r.owner_idx;
	x->owner_word = r.owner_word;
	return ++gs->n == gs->max;
}

bool fdn_attr_indexed(fdn_segment *s, const char *name)
{
	/* The local registry indexes nothing (its finds scan). */
	return fdn__backend(s, FDN__SVC_REGISTRY) == FDN__SHARED && fdn__reg_indexed(s, name);
}

/* Is name one of the segment's indexed attributes?  The registry's own
 * walks ask this, never fdn_attr_indexed: a flip in the middle of an
 * operation must not change which references it writes or removes. */
bool fdn__reg_indexed(fdn_segment *s, const char *name)
{
	if (!name || !*name)
		return false;
	/* The first byte first: most names match no slot, and a free slot
	 * (empty name) none. */
	for (uint32_t i = 0; i < FDN_MAX_INDEXED; i++)
		if (s->hdr->indexed[i][0] == name[0] &&
		    strncmp(s->hdr->indexed[i], name, FDN_INDEXED_NAME_MAX) == 0)
			return true;
	return false;
}

/* Call cb for every live reference of prefix in its sub-th chain (read
 * lock held).  Bounded. */
int fdn__reg_walk_prefix_sub(fdn_segment *s, const unsigned char *prefix, size_t plen, uint64_t sub,
			     ref_node_cb cb, void *arg)
{
	uint64_t h = fdn__ht_prefix_hash(s, prefix, plen) ^ sub;
	uint64_t w = atomic_load_explicit(&s->buckets[T_INDEX][h & s->bucket_mask[T_INDEX]],
					  memory_order_acquire);
	for (uint64_t steps = 0; FDN_LINK_GIDX(w); steps++) {
		const struct fdn_shm_node *n = fdn__node(s, FDN_LINK_GIDX(w));
		if (!n || steps > s->ngranules)
			return FDN_ECORRUPT;
		w = atomic_load_explicit(&n->next, memory_order_acquire);
		if (n->hash > h)
			break;
		const unsigned char *k = n->data;
		if (n->hash != h || FDN_LINK_MARKED(w) || fdn_node_key_len(n) < 1 + plen ||
		    k[0] != plen || memcmp(k + 1, prefix, plen) != 0)
			continue;
		int r = cb(arg, n, plen);
		if (r)
			return r;
	}
	return 0;
}

/* The same over every chain the prefix's keys hash to (fdn__prefix_spread). */
int fdn__reg_walk_prefix(fdn_segment *s, const unsigned char *prefix, size_t plen, ref_node_cb cb,
			 void *arg)
{
	for (uint64_t sub = 0, spread = fdn__prefix_spread(prefix, plen); sub < spread; sub++) {
		int r = fdn__reg_walk_prefix_sub(s, prefix, plen, sub, cb, arg);
		if (r)
			return r;
	}
	return 0;
}

/* Delete the main entry of view v (exact version) and then its refs;
 * logged as a change of kind at time now (0: when logged). */
int fdn__reg_remove_entry(fdn_segment *s, const void *key, size_t klen,
			  const struct fdn__ht_view *v, const struct ref_set *rs, unsigned kind,
			  uint64_t now)
{
	const struct fdn__chg chg = {kind, (pid_t)FDN_PROC_PID(rs->owner_word), 0, now};
	int r = fdn__ht_delete_chg(s, T_MAIN, key, klen, v, &chg);
	if (r)
		return r;
	fdn__held_add(s, rs->owner_idx, rs->owner_word, -1); /* ours: gone from the count */
	struct ref_op del = {.s = s, .key = key, .klen = klen};
	fdn__reg_set_each(rs, true, fdn__reg_ref_del_cb, &del);
	return 0;
}
