/*
 * bench/sys_lfht.c - liburcu's lock-free RCU hash table, cds_lfht, memb
 * flavour (systems.h): as many buckets as Foundation's table (2N rounded
 * up to a power of two), fixed, XXH3-64.  Library calls stay calls: liburcu
 * is used without _LGPL_SOURCE (its read lock is not inlined), just as the
 * fdn__ calls come from the static library.
 *
 * Lookups: nodes holding the key and its 16-byte value, each lookup in
 * its own read-side section.  Pairs: nodes holding the key and the record
 * (struct rec_hdr, the encoded attributes); malloc a node, add_unique;
 * lookup + del, nodes freed after synchronize_rcu every RETIRE_BATCH
 * deletions (timed); variant 1 also adds and deletes a (value, key)
 * reference in a second table, as Foundation's index does.
 */
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "systems.h"

/* ---- what both workloads share ------------------------------------------------ */

static bool g_urcu_registered;

void sys_urcu_register(void)
{
	if (!g_urcu_registered)
		urcu_memb_register_thread();
	g_urcu_registered = true;
}

void sys_urcu_unregister(void)
{
	if (g_urcu_registered)
		urcu_memb_unregister_thread();
	g_urcu_registered = false;
}

struct lfkey {
	const void *s;
	uint32_t len;
};

static inline unsigned long key_hash(const void *s, size_t len)
{
	return (unsigned long)XXH3_64bits_withSeed(s, len, SYS_HASH_SEED);
}

/* A table for n entries: 2n buckets rounded up, fixed (no resize). */
static struct cds_lfht *lf_table(uint64_t n)
{
	unsigned long nb = (unsigned long)pow2_at_least(2 * n);
	struct cds_lfht *ht = cds_lfht_new_flavor(nb, nb, nb, 0, &urcu_memb_flavor, NULL);
	if (!ht)
		bench_fail("cds_lfht: new table of %lu buckets failed", nb);
	return ht;
}

/* Add unique: 0, or -1 if the key is present. */
static int lf_add(struct cds_lfht *ht, struct cds_lfht_node *node, const void *key, uint32_t klen,
		  cds_lfht_match_fct match)
{
	struct lfkey lk = {key, klen};
	urcu_memb_read_lock();
	struct cds_lfht_node *got = cds_lfht_add_unique(ht, key_hash(key, klen), match, &lk, node);
	urcu_memb_read_unlock();
	return got == node ? 0 : -1;
}

/* Look up and delete: the node removed, or NULL. */
static struct cds_lfht_node *lf_del(struct cds_lfht *ht, const void *key, uint32_t klen,
				    cds_lfht_match_fct match)
{
	struct lfkey lk = {key, klen};
	struct cds_lfht_iter it;
	urcu_memb_read_lock();
	cds_lfht_lookup(ht, key_hash(key, klen), match, &lk, &it);
	struct cds_lfht_node *n = cds_lfht_iter_get_node(&it);
	if (n && cds_lfht_del(ht, n) != 0)
		n = NULL;
	urcu_memb_read_unlock();
	return n;
}

/* Nodes deleted, freed after a grace period per batch. */
struct retire {
	void *p[RETIRE_BATCH];
	unsigned n;
};

static void retire_flush(struct retire *r)
{
	if (r->n == 0)
		return;
	urcu_memb_synchronize_rcu();
	for (unsigned i = 0; i < r->n; i++)
		free(r->p[i]);
	r->n = 0;
}

static void retire_push(struct retire *r, void *p)
{
	if (r->n == RETIRE_BATCH)
		retire_flush(r);
	r->p[r->n++] = p;
}

/* Empty and destroy a table whose nodes were malloc'ed (node first). */
static void lf_destroy(struct cds_lfht *ht)
{
	if (!ht)
		return;
	struct retire *r = calloc(1, sizeof(*r));
	bool more = r != NULL;
	while (more) {
		struct cds_lfht_iter it;
		struct cds_lfht_node *n;
		urcu_memb_read_lock();
		cds_lfht_first(ht, &it);
		while ((n = cds_lfht_iter_get_node(&it)) && r->n < RETIRE_BATCH) {
			if (cds_lfht_del(ht, n) == 0)
				r->p[r->n++] = n;
			cds_lfht_next(ht, &it);
		}
		more = n != NULL;
		urcu_memb_read_unlock();
		retire_flush(r);
	}
	free(r);
	int e = cds_lfht_destroy(ht, NULL);
	if (e)
		bench_fail("cds_lfht: destroy: %s", strerror(-e));
}

/* ==== lookups ====================================================================== */

struct lnode {
	struct cds_lfht_node node; /* first: a node pointer is an lnode pointer */
	unsigned char val[LOOKUP_VAL_LEN];
	uint32_t klen;
	char key[];
};

struct lfht {
	struct cds_lfht *ht;
	struct lnode **nodes; /* every node, for bench_memory */
	uint64_t n;
};

static int lnode_match(struct cds_lfht_node *node, const void *key)
{
	const struct lnode *ln = (const struct lnode *)node;
	const struct lfkey *k = key;
	return ln->klen == k->len && memcmp(ln->key, k->s, k->len) == 0;
}

static void lfht_close(void *ctx)
{
	struct lfht *l = ctx;
	lf_destroy(l->ht); /* frees the nodes */
	free(l->nodes);
	free(l);
}

static int lfht_insert(struct lfht *l, uint64_t i)
{
	struct lookup_key k;
	lookup_key_make(&k, i);
	struct lnode *ln = malloc(sizeof(*ln) + k.len);
	if (!ln)
		return bench_fail("cds_lfht: node: %s", strerror(errno));
	cds_lfht_node_init(&ln->node);
	lookup_value_make(ln->val, i);
	ln->klen = k.len;
	memcpy(ln->key, k.s, k.len);
	if (lf_add(l->ht, &ln->node, ln->key, ln->klen, lnode_match)) {
		free(ln);
		return bench_fail("cds_lfht: insert %s: already present", k.s);
	}
	l->nodes[l->n++] = ln;
	return 0;
}

static int lfht_open(void **out, uint64_t n)
{
	sys_urcu_register();
	struct lfht *l = calloc(1, sizeof(*l));
	if (l)
		l->nodes = calloc(n, sizeof(*l->nodes));
	if (!l || !l->nodes) {
		bench_fail("cds_lfht: %s", strerror(errno));
		free(l);
		return -1;
	}
	l->ht = lf_table(n);
	if (!l->ht) {
		lfht_close(l);
		return -1;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (lfht_insert(l, i)) {
			lfht_close(l);
			return -1;
		}
	}
	*out = l;
	return 0;
}

static void lfht_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	struct cds_lfht *ht = ((struct lfht *)ctx)->ht;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m; i++) {
		struct lfkey k = {ks[i].s, ks[i].len};
		struct cds_lfht_iter it;
		urcu_memb_read_lock();
		cds_lfht_lookup(ht, key_hash(k.s, k.len), lnode_match, &k, &it);
		const struct lnode *ln = (const struct lnode *)cds_lfht_iter_get_node(&it);
		if (ln) {
			hits++;
			sum += load64(ln->val);
		}
		urcu_memb_read_unlock();
		if (!ln)
			tally_miss(t, i);
	}
	t->hits = hits;
	t->sum = sum;
}

static void lfht_where(void *ctx, struct bench_result *r, const char *id)
{
	const struct lfht *l = ctx;
	bench_memory(r, id, "a node (malloc)", l->n ? l->nodes[0] : NULL, sizeof(struct lnode));
	bench_memory(r, id, "node pointer array", l->nodes, (size_t)l->n * sizeof(*l->nodes));
}

const struct lookup_system sys_lfht_lookup = {
    "cds_lfht", lfht_open, lfht_close, lfht_where, {{"cds_lfht", "cds_lfht", lfht_run, 0}, {0}}};

/* ==== register + unregister pairs ================================================== */

struct lfnode {
	struct cds_lfht_node node;
	struct rec_hdr h;
	uint32_t klen;
	char key[KEY_CAP];
	unsigned char attrs[];
};

struct ixnode {
	struct cds_lfht_node node;
	uint32_t klen;
	unsigned char key[IXKEY_CAP];
};

static int lf_match(struct cds_lfht_node *node, const void *key)
{
	const struct lfnode *ln = caa_container_of(node, struct lfnode, node);
	const struct lfkey *k = key;
	return ln->klen == k->len && memcmp(ln->key, k->s, k->len) == 0;
}

static int ix_match(struct cds_lfht_node *node, const void *key)
{
	const struct ixnode *xn = caa_container_of(node, struct ixnode, node);
	const struct lfkey *k = key;
	return xn->klen == k->len && memcmp(xn->key, k->s, k->len) == 0;
}

static struct lfnode *lf_node(const struct key *k, const void *attrs, uint32_t alen)
{
	struct lfnode *ln = malloc(sizeof(*ln) + alen);
	if (!ln)
		return NULL;
	cds_lfht_node_init(&ln->node);
	ln->h = (struct rec_hdr){g_pid, alen, real_ns()};
	ln->klen = k->len;
	memcpy(ln->key, k->s, k->len);
	memcpy(ln->attrs, attrs, alen);
	return ln;
}

struct lfsys {
	struct cds_lfht *ht, *ix;
	struct retire ret;
};

static void lf_sys_close(void *ctx)
{
	struct lfsys *l = ctx;
	lf_destroy(l->ht);
	lf_destroy(l->ix);
	free(l);
}

static int lf_fill(struct lfsys *l, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		struct key k;
		struct fdn_attr a[2];
		unsigned char enc[ENC_CAP];
		pairs_background(&k, a, i);
		int len = fdn_attrs_encode(a, 2, enc, ENC_CAP);
		if (len < 0)
			return bench_fail("encode: %s", fdn_strerror(len));
		struct lfnode *ln = lf_node(&k, enc, (uint32_t)len);
		if (!ln)
			return bench_fail("cds_lfht: node: %s", strerror(errno));
		if (lf_add(l->ht, &ln->node, k.s, k.len, lf_match)) {
			free(ln);
			return bench_fail("cds_lfht: insert %s: already present", k.s);
		}
	}
	return 0;
}

/* The index reference of (capability value, key), as Foundation spells it:
 * name, NUL, type 's', value, entry key.  Returns its length. */
static uint32_t ix_key(unsigned char *buf, const char *cap, const struct key *k)
{
	static const char name[] = "capability";
	size_t cl = strlen(cap), nl = sizeof(name) - 1;
	memcpy(buf, name, nl + 1);
	buf[nl + 1] = 's';
	memcpy(buf + nl + 2, cap, cl);
	memcpy(buf + nl + 2 + cl, k->s, k->len);
	return (uint32_t)(nl + 2 + cl + k->len);
}

static struct ixnode *ix_node(const char *cap, const struct key *k)
{
	struct ixnode *x = malloc(sizeof(*x));
	if (!x)
		return NULL;
	cds_lfht_node_init(&x->node);
	x->klen = ix_key(x->key, cap, k);
	return x;
}

/* The background's index references. */
static int ix_fill(struct lfsys *l, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		struct key k;
		key_fmt(&k, "agent-", i);
		struct ixnode *x = ix_node(g_caps[i % NCAPS], &k);
		if (!x)
			return bench_fail("cds_lfht: node: %s", strerror(errno));
		if (lf_add(l->ix, &x->node, x->key, x->klen, ix_match)) {
			free(x);
			return bench_fail("cds_lfht: index reference of %s already present", k.s);
		}
	}
	return 0;
}

static int lf_pairs_open(void **out)
{
	struct lfsys *l = calloc(1, sizeof(*l));
	if (!l)
		return bench_fail("cds_lfht: %s", strerror(errno));
	l->ht = lf_table(PAIR_BACKGROUND + PAIR_KEYS);
	l->ix = lf_table(PAIR_BACKGROUND + PAIR_KEYS);
	if (!l->ht || !l->ix || lf_fill(l, PAIR_BACKGROUND) || ix_fill(l, PAIR_BACKGROUND)) {
		lf_sys_close(l);
		return -1;
	}
	*out = l;
	return 0;
}

static int lf_pair_add(struct lfsys *l, const struct key *k, const char *cap, size_t i, bool index,
		       struct tally *t)
{
	struct fdn_attr a[2];
	unsigned char buf[ENC_CAP];
	attrs_cap_weight(a, cap, i);
	int alen = fdn_attrs_encode(a, 2, buf, ENC_CAP);
	struct lfnode *ln = alen < 0 ? NULL : lf_node(k, buf, (uint32_t)alen);
	struct ixnode *x = index ? ix_node(cap, k) : NULL;
	if (!ln || (index && !x)) {
		free(ln);
		free(x);
		tally_fail(t, i, "node: %s", alen < 0 ? fdn_strerror(alen) : strerror(errno));
		return -1;
	}
	if (x && lf_add(l->ix, &x->node, x->key, x->klen, ix_match)) {
		free(ln);
		free(x);
		tally_fail(t, i, "index reference of %s already present", k->s);
		return -1;
	}
	if (lf_add(l->ht, &ln->node, k->s, k->len, lf_match)) {
		free(ln);
		tally_fail(t, i, "add %s: already present", k->s);
		return -1;
	}
	return 0;
}

static int lf_pair_del(struct lfsys *l, const struct key *k, const char *cap, size_t i, bool index,
		       struct tally *t)
{
	struct cds_lfht_node *n = lf_del(l->ht, k->s, k->len, lf_match);
	if (!n) {
		tally_fail(t, i, "del %s: not found", k->s);
		return -1;
	}
	retire_push(&l->ret, caa_container_of(n, struct lfnode, node));
	if (!index)
		return 0;
	unsigned char ik[IXKEY_CAP];
	uint32_t iklen = ix_key(ik, cap, k);
	n = lf_del(l->ix, ik, iklen, ix_match);
	if (!n) {
		tally_fail(t, i, "del index reference of %s: not found", k->s);
		return -1;
	}
	retire_push(&l->ret, caa_container_of(n, struct ixnode, node));
	return 0;
}

static void lf_pairs_run(void *ctx, const struct key *keys, size_t pairs, int variant,
			 struct tally *t)
{
	struct lfsys *l = ctx;
	bool index = variant != 0;
	for (size_t i = 0; i < pairs; i++) {
		const struct key *k = &keys[i % PAIR_KEYS];
		if (lf_pair_add(l, k, pair_cap(i), i, index, t) ||
		    lf_pair_del(l, k, pair_cap(i), i, index, t))
			break;
		t->done++;
	}
	retire_flush(&l->ret);
}

static int lf_pairs_check(void *ctx)
{
	struct lfsys *l = ctx;
	long split, after;
	unsigned long count, ixcount;
	urcu_memb_read_lock();
	cds_lfht_count_nodes(l->ht, &split, &count, &after);
	cds_lfht_count_nodes(l->ix, &split, &ixcount, &after);
	urcu_memb_read_unlock();
	if (count != PAIR_BACKGROUND || ixcount != PAIR_BACKGROUND)
		return bench_fail("register_unregister: cds_lfht: %lu entries and %lu references "
				  "left, expected %u of each",
				  count, ixcount, PAIR_BACKGROUND);
	return 0;
}

const struct pairs_system sys_lfht_pairs = {lf_pairs_open, lf_pairs_run, lf_pairs_check,
					    lf_sys_close};
