/*
 * test_table.c - the hash table in one process: every operation, bad input,
 * a full heap, iteration and counts, and the checker catching corruption.
 */
#include "common.h"

static fdn_segment *seg;
static char segname[128];

static void setup(void)
{
	t_name(segname, sizeof(segname), "table");
	seg = t_create(segname, 4096, 0);
}

static void teardown(void)
{
	fdn_segment_detach(seg);
	fdn_segment_destroy(segname);
}

TestSuite(table, .init = setup, .fini = teardown);

Test(table, insert_lookup_delete)
{
	uint64_t v = 0;
	cr_assert_eq(t_put(seg, "orders-db", 11, FDN_HT_UNIQUE), 0);
	cr_assert_eq(t_get(seg, "orders-db", &v), 0);
	cr_assert_eq(v, 11);
	cr_assert_eq(t_get(seg, "orders-dc", &v), FDN_ENOTFOUND);
	cr_assert_eq(t_del(seg, "orders-db"), 0);
	cr_assert_eq(t_get(seg, "orders-db", &v), FDN_ENOTFOUND);
	cr_assert_eq(t_del(seg, "orders-db"), FDN_ENOTFOUND);
	cr_assert_eq(fdn__ht_count(seg, 0), 0);
	t_assert_clean(seg);
}

Test(table, duplicate_reports_the_holder)
{
	cr_assert_eq(t_put(seg, "web-1", 1, FDN_HT_UNIQUE), 0);
	struct fdn__thread *t;
	cr_assert_eq(fdn__rcu_read_lock(seg, &t), 0);
	struct fdn__ht_view held;
	uint64_t two = 2, got;
	int r = fdn__ht_put(seg, 0, "web-1", 5, &two, 8, FDN_HT_UNIQUE, NULL, &held);
	cr_assert_eq(r, FDN_EEXISTS);
	memcpy(&got, held.val, 8);
	cr_assert_eq(got, 1, "the existing value is reported");
	fdn__rcu_read_unlock(t);
	cr_assert_eq(t_get(seg, "web-1", &got), 0);
	cr_assert_eq(got, 1, "nothing changed");
	cr_assert_eq(fdn__ht_count(seg, 0), 1);
	t_assert_clean(seg);
}

Test(table, upsert_and_conditional_replace)
{
	uint64_t v;
	cr_assert_eq(t_put(seg, "k", 1, FDN_HT_UPSERT), 0); /* inserts */
	cr_assert_eq(t_put(seg, "k", 2, FDN_HT_UPSERT), 0); /* replaces */
	cr_assert_eq(t_get(seg, "k", &v), 0);
	cr_assert_eq(v, 2);
	cr_assert_eq(fdn__ht_count(seg, 0), 1);

	struct fdn__thread *t;
	struct fdn__ht_view cur;
	cr_assert_eq(fdn__rcu_read_lock(seg, &t), 0);
	cr_assert_eq(fdn__ht_lookup(seg, 0, "k", 1, &cur), 0);
	struct fdn__ht_view version = cur;
	fdn__rcu_read_unlock(t);
	uint64_t three = 3, four = 4;
	cr_assert_eq(fdn__ht_put(seg, 0, "k", 1, &three, 8, FDN_HT_REPLACE, &version, NULL), 0);
	/* The same expected version again: it is gone now. */
	cr_assert_eq(fdn__ht_put(seg, 0, "k", 1, &four, 8, FDN_HT_REPLACE, &version, NULL),
		     FDN_ENOTFOUND);
	cr_assert_eq(t_get(seg, "k", &v), 0);
	cr_assert_eq(v, 3);
	/* Conditional delete of a stale version fails, of nothing else. */
	cr_assert_eq(fdn__ht_delete(seg, 0, "k", 1, &version), FDN_ENOTFOUND);
	cr_assert_eq(t_get(seg, "k", &v), 0);
	cr_assert_eq(fdn__ht_put(seg, 0, "absent", 6, &four, 8, FDN_HT_REPLACE, &version, NULL),
		     FDN_ENOTFOUND);
	cr_assert_eq(t_get(seg, "absent", NULL), FDN_ENOTFOUND);
	cr_assert_eq(fdn__ht_count(seg, 0), 1);
	t_assert_clean(seg);
}

Test(table, bad_keys_and_values_change_nothing)
{
	char k256[FDN_KEY_MAX + 2]; /* one byte over the table's limit */
	memset(k256, 'k', FDN_KEY_MAX + 1);
	k256[FDN_KEY_MAX + 1] = 0;
	cr_assert_eq(t_put(seg, "keep", 5, FDN_HT_UNIQUE), 0);
	cr_assert_eq(fdn__ht_put(seg, 0, "", 0, "v", 1, FDN_HT_UNIQUE, NULL, NULL), FDN_EINVKEY);
	cr_assert_eq(t_put(seg, k256, 1, FDN_HT_UNIQUE), FDN_EINVKEY);
	cr_assert_eq(t_get(seg, k256, NULL), FDN_EINVKEY);
	cr_assert_eq(t_del(seg, k256), FDN_EINVKEY);
	cr_assert_eq(fdn__ht_delete(seg, 0, "", 0, NULL), FDN_EINVKEY);
	static char big[FDN_VALUE_MAX + 1];
	cr_assert_eq(fdn__ht_put(seg, 0, "big", 3, big, sizeof(big), FDN_HT_UNIQUE, NULL, NULL),
		     FDN_EINVAL);
	cr_assert_eq(fdn__ht_put(seg, 0, "big", 3, big, FDN_VALUE_MAX, FDN_HT_UNIQUE, NULL, NULL),
		     0, "the largest value fits");
	cr_assert_eq(fdn__ht_put(seg, 7, "keep", 4, big, 1, FDN_HT_UNIQUE, NULL, NULL), FDN_EINVAL);
	/* FDN_KEY_MAX bytes is the longest key. */
	k256[FDN_KEY_MAX] = 0;
	cr_assert_eq(t_put(seg, k256, 9, FDN_HT_UNIQUE), 0);
	uint64_t v;
	cr_assert_eq(t_get(seg, "keep", &v), 0);
	cr_assert_eq(v, 5);
	cr_assert_eq(fdn__ht_count(seg, 0), 3);
	t_assert_clean(seg);
}

static int count_cb(void *arg, const struct fdn__ht_view *v)
{
	uint64_t x;
	memcpy(&x, v->val, 8);
	*(uint64_t *)arg += x;
	return 0;
}

Test(table, foreach_and_count_after_churn)
{
	char k[32];
	for (int i = 0; i < 3000; i++) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_put(seg, k, (uint64_t)i, FDN_HT_UNIQUE), 0);
	}
	for (int i = 0; i < 3000; i += 3) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_del(seg, k), 0);
	}
	uint64_t sum = 0, expect = 0;
	for (int i = 0; i < 3000; i++)
		if (i % 3)
			expect += (uint64_t)i;
	struct fdn__thread *t;
	cr_assert_eq(fdn__rcu_read_lock(seg, &t), 0);
	cr_assert_eq(fdn__ht_foreach(seg, 0, count_cb, &sum), 0);
	fdn__rcu_read_unlock(t);
	cr_assert_eq(sum, expect);
	cr_assert_eq(fdn__ht_count(seg, 0), 2000);
	t_assert_clean(seg);
}

Test(table, full_heap_fails_cleanly_and_keeps_everything)
{
	char name[128], k[32];
	t_name(name, sizeof(name), "full");
	fdn_segment *s = t_create(name, 100, 1 << 20); /* 16 pages */
	int n = 0, r;
	for (;; n++) {
		snprintf(k, sizeof(k), "agent-%08d", n);
		r = t_put(s, k, (uint64_t)n, FDN_HT_UNIQUE);
		if (r)
			break;
	}
	cr_assert_eq(r, FDN_ENOSPACE, "got %s", fdn_errname(r));
	cr_assert_gt(n, 10000, "a 1 MiB heap holds >10k small entries (got %d)", n);
	cr_assert_eq(t_put(s, "one-more", 1, FDN_HT_UNIQUE), FDN_ENOSPACE);
	cr_assert_eq(fdn__ht_count(s, 0), n);
	for (int i = 0; i < n; i++) {
		uint64_t v;
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_get(s, k, &v), 0);
		cr_assert_eq(v, (uint64_t)i);
	}
	t_assert_clean(s);
	/* Deleting makes room again (after the deferred frees). */
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_del(s, k), 0);
	}
	cr_assert_eq(t_put(s, "one-more", 1, FDN_HT_UNIQUE), 0);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

static void count_above_mark(void *arg, const char *code, const char *msg)
{
	t_print_violation(arg, code, msg);
	if (strstr(msg, "above the high-water mark"))
		++*(int *)arg;
}

Test(table, checker_catches_damage)
{
	char k[32];
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_put(seg, k, (uint64_t)i, FDN_HT_UNIQUE), 0);
	}
	t_assert_clean(seg);
	struct fdn__thread *t;
	struct fdn__ht_view v;
	cr_assert_eq(fdn__rcu_read_lock(seg, &t), 0);
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-00000007", 14, &v), 0);
	fdn__rcu_read_unlock(t);
	struct fdn_shm_node *n = fdn__gptr(seg, v.gidx);

	/* A key byte changed under its hash. */
	n->data[0] ^= 1;
	cr_assert_geq(fdn__seg_check(seg, NULL, NULL), 1);
	n->data[0] ^= 1;
	t_assert_clean(seg);

	/* An allocated block nobody owns: a leak. */
	uint64_t g = v.gidx + 1;
	while (fdn__block_size(seg, g) == 0 ||
	       FDN_BLOCK_KIND(atomic_load(&seg->bstate[g])) != FDN_BLOCK_FREE)
		g++;
	atomic_store(&seg->bstate[g], FDN_BLOCK_WORD(1, 1, FDN_BLOCK_ALLOC));
	cr_assert_eq(fdn__seg_check(seg, NULL, NULL), 1);
	atomic_store(&seg->bstate[g], FDN_BLOCK_WORD(1, 0, FDN_BLOCK_FREE));

	/* A counter that disagrees with the chains. */
	struct fdn_shm_tslot *ts = t->ts;
	uint64_t d = atomic_load(&ts->delta[0]);
	atomic_store(&ts->delta[0], FDN_DELTA_WORD(FDN_DELTA_COUNT(d) + 1, FDN_OP_NONE));
	cr_assert_eq(fdn__seg_check(seg, NULL, NULL), 1);
	atomic_store(&ts->delta[0], d);

	/* A high-water mark below a slot in use: walks for the slots in use
	 * (a reclaimer's, the count's) would miss it. */
	uint32_t hwm = atomic_load(&seg->hdr->tslot_hwm);
	cr_assert_gt(hwm, t->slot, "the mark covers our slot");
	atomic_store(&seg->hdr->tslot_hwm, t->slot);
	int above = 0;
	cr_assert_geq(fdn__seg_check(seg, count_above_mark, &above), 1);
	cr_assert_eq(above, 1, "our slot is reported in use above the mark");
	atomic_store(&seg->hdr->tslot_hwm, hwm);
	t_assert_clean(seg);

	/* A cycle in a chain: reported, and the walk ends. */
	uint64_t saved = atomic_load(&n->next);
	atomic_store(&n->next, FDN_LINK_WORD(v.gidx, 0, 0));
	cr_assert_geq(fdn__seg_check(seg, NULL, NULL), 1);
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-zzzzzzzz", 14, &v) < 0, 1);
	atomic_store(&n->next, saved);
	t_assert_clean(seg);
}

/* fdn__xxh3 takes XXH3's short-input path itself for keys of up to 16
 * bytes: it must give what XXH3_64bits_withSeed gives (stored hashes
 * depend on it), for every length and seed. */
Test(table, short_key_hash_is_xxh3)
{
	unsigned char k[40];
	for (size_t i = 0; i < sizeof(k); i++)
		k[i] = (unsigned char)(i * 37u + 11u);
	const uint64_t seeds[] = {0, 1, 0x9E3779B97F4A7C15ull, seg->seed};
	for (size_t si = 0; si < sizeof(seeds) / sizeof(seeds[0]); si++)
		for (size_t len = 0; len <= sizeof(k); len++)
			cr_assert_eq(fdn__xxh3(k, len, seeds[si]),
				     XXH3_64bits_withSeed(k, len, seeds[si]),
				     "length %zu, seed %zu", len, si);
}

/* The lookup checks of a node only what keeps its reads in the mapping:
 * implausible lengths make it compare unequal, never read outside, and a
 * link past the heap is FDN_ECORRUPT. */
Test(table, lookup_survives_damaged_nodes)
{
	char k[32];
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_put(seg, k, (uint64_t)i, FDN_HT_UNIQUE), 0);
	}
	struct fdn__thread *t;
	struct fdn__ht_view v;
	cr_assert_eq(fdn__rcu_read_lock(seg, &t), 0);
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-00000042", 14, &v), 0);
	struct fdn_shm_node *n = fdn__gptr(seg, v.gidx);
	uint16_t ki = n->key_info, vl = n->val_len;
	n->key_info = (uint16_t)(ki | FDN_NODE_KEY_MASK);
	n->val_len = UINT16_MAX;
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-00000042", 14, &v), FDN_ENOTFOUND);
	n->key_info = (uint16_t)(ki & ~FDN_NODE_KEY_MASK); /* key length 0 */
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-00000042", 14, &v), FDN_ENOTFOUND);
	n->key_info = ki;
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-00000042", 14, &v), 0);
	cr_assert_eq(v.val_len, FDN_VALUE_MAX, "a damaged value length is clamped");
	n->val_len = vl;
	uint64_t h = fdn__ht_hash(seg, 0, "agent-zzzzzzzz", 14);
	_Atomic uint64_t *b = &seg->buckets[0][h & seg->bucket_mask[0]];
	uint64_t saved = atomic_load(b);
	atomic_store(b, FDN_LINK_WORD((uint32_t)seg->ngranules, 0, 0));
	cr_assert_eq(fdn__ht_lookup(seg, 0, "agent-zzzzzzzz", 14, &v), FDN_ECORRUPT);
	atomic_store(b, saved);
	fdn__rcu_read_unlock(t);
	t_assert_clean(seg);
}

Test(table, retiring_ops_inside_a_held_section_are_bounded)
{
	char k[32];
	for (int i = 0; i < (int)FDN_LIMBO_MAX + 12; i++) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_put(seg, k, (uint64_t)i, FDN_HT_UNIQUE), 0);
	}
	struct fdn__thread *t;
	cr_assert_eq(fdn__rcu_read_lock(seg, &t), 0);
	fdn__user_begin(t); /* a caller's own section, as in fdn_lookup_view's cb */
	int i = 0, r = 0;
	for (; i < (int)FDN_LIMBO_MAX + 12; i++) {
		snprintf(k, sizeof(k), "agent-%08d", i);
		if ((r = t_del(seg, k)) != 0)
			break;
	}
	cr_assert_eq(r, FDN_EINREAD);
	cr_assert_eq(i, FDN_LIMBO_MAX, "one limbo's worth of deletes fit in one section");
	cr_assert_eq(t_get(seg, k, NULL), 0, "the refused delete changed nothing");
	fdn__user_end(t);
	/* A section that is no caller's: a signal handler inside our call. */
	cr_assert_eq(t_del(seg, k), FDN_EREENTERED);
	fdn__rcu_read_unlock(t);
	cr_assert_eq(t_del(seg, k), 0, "outside the section the limbo is flushed first");
	cr_assert_eq(fdn__ht_count(seg, 0), 12 - 1);
	t_assert_clean(seg);
}

Test(table, allocator_claims_frees_once_and_versions_blocks)
{
	cr_assert_eq(fdn__size_class(1), 0);
	cr_assert_eq(fdn__size_class(64), 0);
	cr_assert_eq(fdn__size_class(65), 1);
	cr_assert_eq(fdn__size_class(8192), 7);
	cr_assert_eq(fdn__size_class(8193), -1);
	struct fdn__thread *t;
	cr_assert_eq(fdn__thread_get(seg, &t), 0);
	uint32_t g, gen, g2, gen2;
	cr_assert_eq(fdn__alloc(t, 100, &g, &gen), 0);
	cr_assert_eq(fdn__block_size(seg, g), 128);
	cr_assert_eq(atomic_load(&t->ts->node), g, "the claim is recorded in the slot");
	uint64_t w = atomic_load(&seg->bstate[g]);
	cr_assert_eq(FDN_BLOCK_KIND(w), FDN_BLOCK_ALLOC);
	cr_assert_eq(FDN_BLOCK_OWNER(w), t->slot + 1);
	cr_assert_eq(FDN_BLOCK_GEN(w), gen);
	cr_assert_not(fdn__free(seg, g, gen + 1), "a stale generation frees nothing");
	cr_assert(fdn__free(seg, g, gen));
	cr_assert_not(fdn__free(seg, g, gen), "a second free is a no-op");
	cr_assert_eq(fdn__alloc(t, 100, &g2, &gen2), 0);
	if (g2 == g)
		cr_assert_eq(gen2, gen + 1, "a reused block gets a new generation");
	cr_assert(fdn__free(seg, g2, gen2));
	cr_assert_eq(fdn__alloc(t, 9000, &g2, &gen2), FDN_EINVAL);
	cr_assert_eq(fdn__block_size(seg, 0), 64, "gidx 0: the reserved null block");
	cr_assert_eq(fdn__block_size(seg, g + 1), 0, "not a block start");
	cr_assert_eq(fdn__block_size(seg, seg->ngranules), 0);
	atomic_store(&t->ts->node, 0);
	t_assert_clean(seg);
}
