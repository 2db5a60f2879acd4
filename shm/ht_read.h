/*
 * shm/ht_read.h - the read side of the hash table (ht.c has the algorithm),
 * inline: a lookup is the hot path of every service, and at a million
 * entries its speed is bounded by how many lookups the CPU can keep in
 * flight, which every instruction saved raises.
 */
#ifndef FDN_SHM_HT_READ_H
#define FDN_SHM_HT_READ_H

#include <string.h>
/* XXH3 inline.  GCC's -Warray-bounds, seeing a caller's short constant key
 * propagated into XXH3's branches for long inputs (which that length
 * never takes), warns about reads those branches would make. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Warray-bounds"
#define XXH_INLINE_ALL
#include <xxhash.h>
#pragma GCC diagnostic pop

/* XXH3-64 of a key with seed.  XXH3_64bits_withSeed hashes every input of
 * at most 16 bytes by XXH3_len_0to16_64b with the default secret; called
 * directly (xxhash 0.8's private API, compiled in with XXH_INLINE_ALL) a
 * short key skips the dispatch on its length and a call GCC keeps out of
 * line.  The same value either way: stored hashes do not change, and
 * test_table checks the two against each other for lengths 0 to 40. */
__attribute__((always_inline)) static inline uint64_t fdn__xxh3(const void *key, size_t len,
								uint64_t seed)
{
#if XXH_VERSION_NUMBER >= 800 && XXH_VERSION_NUMBER < 900
	if (len <= 16)
		return XXH3_len_0to16_64b((const xxh_u8 *)key, len, XXH3_kSecret, seed);
#endif
	return XXH3_64bits_withSeed(key, len, seed);
}

/* The hash of key in table (fdn__ht_hash, ht.c, is this, out of line), with
 * XXH3 compiled in place: the library call and its dispatch were 58 of a
 * warm fdn_whereis hit's 345 instructions.  A prefix-hashed table (the
 * registry's index) hashes the n-byte prefix after the length byte k[0],
 * and spreads a prefix's keys over fdn__prefix_spread chains by the rest. */
__attribute__((always_inline)) static inline uint64_t
fdn__ht_hash_of(const fdn_segment *s, uint32_t table, const void *key, size_t len)
{
	if (s->table_flags[table] & FDN_TABLE_PREFIX_HASH) {
		const unsigned char *k = key;
		size_t n = len ? k[0] : 0;
		if (len == 0 || n > len - 1)
			n = len ? len - 1 : 0; /* malformed: hash what there is */
		uint64_t rest = fdn__xxh3(k + 1 + n, len ? len - 1 - n : 0, s->seed);
		return fdn__ht_prefix_hash(s, k + 1, n) ^
		       (rest & (fdn__prefix_spread(k + 1, n) - 1));
	}
	return fdn__xxh3(key, len, s->seed);
}

static inline const struct fdn_shm_node *fdn__node(const fdn_segment *s, uint64_t gidx)
{
	if (gidx == 0 || gidx >= s->ngranules)
		return NULL;
	const struct fdn_shm_node *n = fdn__gptr(s, gidx);
	uint32_t kl = fdn_node_key_len(n), vl = n->val_len;
	if (kl == 0 || kl > FDN_KEY_MAX || vl > FDN_VALUE_MAX)
		return NULL;
	if (gidx * FDN_GRANULE + fdn__node_bytes(kl, vl) > s->ngranules * FDN_GRANULE)
		return NULL;
	return n;
}

static inline uint64_t fdn__load8(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

/* Equal keys of equal length kl, without a library call for the common
 * short keys (8..24 bytes: overlapping 8-byte loads).  A longer key's last
 * 8 bytes first: in the registry's index, keys of one chain share their
 * first 20 bytes or more ([length][prefix]) and differ in the entry key at
 * their end. */
static inline bool fdn__key_eq(const unsigned char *a, const unsigned char *b, uint32_t kl)
{
	if (kl > 24)
		return fdn__load8(a + kl - 8) == fdn__load8(b + kl - 8) &&
		       memcmp(a, b, kl - 8) == 0;
	if (kl < 8)
		return memcmp(a, b, kl) == 0;
	uint64_t d =
	    (fdn__load8(a) ^ fdn__load8(b)) | (fdn__load8(a + kl - 8) ^ fdn__load8(b + kl - 8));
	if (kl > 16)
		d |= fdn__load8(a + 8) ^ fdn__load8(b + 8);
	return d == 0;
}

/* Chain order: hash, then key length, then key bytes. */
static inline int fdn__cmp(const struct fdn_shm_node *n, uint64_t h, const void *key, uint32_t kl)
{
	if (n->hash != h)
		return n->hash < h ? -1 : 1;
	uint32_t nkl = fdn_node_key_len(n);
	if (nkl != kl)
		return nkl < kl ? -1 : 1;
	/* Keys of 8 to 24 bytes: equality inline (a hit; order only on a
	 * 64-bit hash collision, rare).  Other lengths: one memcmp gives
	 * both.  Nodes of equal hash are the rule in a prefix-hashed table
	 * (a value's references share its chain's hash), whose keys are
	 * longer than 24 bytes: a walk there called memcmp twice a node. */
	if (kl >= 8 && kl <= 24 && fdn__key_eq(n->data, key, kl))
		return 0;
	return memcmp(n->data, key, kl);
}

static inline void fdn__view(const struct fdn_shm_node *n, uint32_t gidx, struct fdn__ht_view *v)
{
	/* Each length read once and clamped (the key length is masked to
	 * FDN_KEY_MAX by fdn_node_key_len): a read-only handle reads without
	 * grace periods, so the node may change after fdn__node checked it.
	 * Clamped lengths stay inside the mapping: the heap is followed by
	 * the graveyard region, larger than the largest node. */
	uint32_t kl = fdn_node_key_len(n), vl = n->val_len;
	vl = vl > FDN_VALUE_MAX ? FDN_VALUE_MAX : vl;
	v->gidx = gidx;
	v->gen = n->gen;
	v->key = n->data;
	v->key_len = kl;
	v->val = n->data + ((kl + 7u) & ~7u);
	v->val_len = vl;
}

static inline int fdn__check_key(const fdn_segment *s, uint32_t table, size_t klen)
{
	if (table >= s->ntables)
		return FDN_EINVAL;
	if (klen == 0 || klen > FDN_KEY_MAX)
		return FDN_EINVKEY;
	return 0;
}

/*
 * The lookup checks of each node on its chain only what memory safety
 * needs: its index below ngranules (the header is in the heap) and a bound
 * on the steps (a damaged chain that loops ends).  Its key length is
 * masked to FDN_KEY_MAX and its value length clamped (fdn__view), so every
 * byte a caller reads stays inside the mapping (the heap is followed by the
 * graveyard region, larger than the largest node), whatever the node holds.
 * A node with implausible lengths -- damage, which `check` reports
 * (fdn__node) -- compares unequal or ends the chain early; the lookup does
 * not look for it: at a million entries a hit's time grows with its
 * instruction count (the CPU overlaps one lookup's cache misses with the
 * next one's only while the instructions between fit in its reorder
 * window), and those checks were a seventh of a raw hit's.  Inlined in
 * every caller for the same reason: out of line, GCC made one copy for all
 * key lengths and a frame (about 20 instructions a call).
 */
__attribute__((always_inline)) static inline int fdn__ht_lookup(fdn_segment *s, uint32_t table,
								const void *key, size_t klen,
								struct fdn__ht_view *out)
{
	int r = fdn__check_key(s, table, klen);
	if (r)
		return r;
	uint64_t h = fdn__ht_hash_of(s, table, key, klen);
	uint64_t ng = s->ngranules;
	/* acquire: pairs with the publishing CAS, so the node is complete. */
	uint64_t w = atomic_load_explicit(&s->buckets[table][h & s->bucket_mask[table]],
					  memory_order_acquire);
	for (uint64_t steps = 0;; steps++) {
		uint32_t g = FDN_LINK_GIDX(w);
		if (g == 0)
			return FDN_ENOTFOUND;
		if (g >= ng || steps > ng)
			return FDN_ECORRUPT;
		const struct fdn_shm_node *n = fdn__gptr(s, g);
		uint64_t nx = atomic_load_explicit(&n->next, memory_order_acquire);
		if (n->hash > h)
			return FDN_ENOTFOUND;
		/* Among nodes of equal hash, equality only: the chain's order
		 * by key would end a miss at the first greater key, but costs
		 * an ordering compare a node (a memcmp call for long keys),
		 * where equality mostly decides on one 8-byte load; a miss
		 * walks to the end of its hash's run instead.  Runs are one
		 * node long but in the registry's index, where a value's
		 * references share their chain's hash. */
		if (n->hash == h && fdn_node_key_len(n) == klen &&
		    fdn__key_eq(n->data, key, (uint32_t)klen) && !FDN_LINK_MARKED(nx)) {
			fdn__view(n, g, out);
			return 0;
		}
		/* A marked node with our key may have been replaced: its next
		 * leads to the new version. */
		w = nx;
	}
}

#endif
