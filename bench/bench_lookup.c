/*
 * bench_lookup.c - fdn-bench: lookup-hit throughput of the shared table.
 *
 * What is measured.  For each table size N, every system below holds the
 * same N keys "agent-%08d" (i = 0 .. N-1), each with a 16-byte value whose
 * first 8 bytes are i, and answers the same stream of M lookups of present
 * keys: indexes drawn uniformly by xorshift64 with a fixed seed, formatted
 * into an array beforehand so that formatting is not timed.  One thread, no
 * writer during the timed loops.  A lookup reads 8 bytes of the value.
 *
 *   foundation      fdn__ht_lookup on table 0 of a private segment, each
 *                   lookup in its own read-side section (fdn__rcu_read_lock,
 *                   lookup, fdn__rcu_read_unlock): the honest cost of one
 *                   lookup by a caller.
 *   foundation (batched section)
 *                   the same, 64 lookups sharing one read-side section.
 *   plain           a process-local open-addressing table (linear probing,
 *                   {hash, record *} slots, capacity a power of two >= 2N):
 *                   what one process can do with nothing shared.
 *   cds_lfht        liburcu's lock-free RCU hash table (memb flavour, as
 *                   many buckets as foundation), urcu_memb_read_lock/unlock
 *                   around each lookup.
 *   lmdb            mdb_get in one long read transaction (reset and renewed
 *                   every 65536 lookups); only when built with LMDB.
 * Everything hashes with XXH3-64 from the shared libxxhash.  Library calls
 * stay calls: liburcu is used without _LGPL_SOURCE (its read lock is not
 * inlined), just as the fdn__ calls come from the static library.
 *
 * How.  Each system runs the whole stream 3 times (--quick: once) and the
 * best run counts; time is CLOCK_MONOTONIC around the loop.  Every lookup
 * must hit and yield the value stored for its key (the sum of the values
 * read is compared with the expected one), and a key that was never
 * inserted must miss: anything else is a correctness failure, reported on
 * stderr, exit status 1.  Timing never fails the run: the SPEC targets are
 * printed as "met" / "MISSED" and the exit status stays 0.
 *
 * Output: one table per size (ops/s, ns per lookup, and foundation's ops/s
 * divided by each system's), then the SPEC targets for that size.  With
 * --json, stdout gets one JSON object per line per (size, system) and one
 * line of ratios per size; the SPEC verdicts then go to stderr.
 */
#include "shm/shm.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "bench_common.h"

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#ifdef HAVE_LMDB
#include <lmdb.h>
#endif

#define BENCH_SEED  0x9E3779B97F4A7C15ull /* hash seed of plain and cds_lfht */
#define STREAM_SEED 0x2545F4914F6CDD1Dull
#define VAL_LEN     16u
#define BATCH       64u
#define LMDB_RENEW  65536u
#define MAX_SIZES   16
#define MAX_ENTRIES 99999999ull /* "agent-%08d" stays 14 bytes */

/* ---- options -------------------------------------------------------------- */

struct opts {
	uint64_t sizes[MAX_SIZES];
	int nsizes;
	size_t lookups;
	int reps;
	bool json;
};

/* ---- cleanup on the way out, signals included ------------------------------ */

const char *const bench_prog = "fdn-bench";

/* ---- keys, values and the lookup stream ------------------------------------ */

struct key {
	char s[15]; /* "agent-%08d", NUL-terminated */
	uint8_t len;
};

static void key_make(struct key *k, uint64_t idx)
{
	memcpy(k->s, "agent-", 6);
	for (int d = 13; d >= 6; d--) {
		k->s[d] = (char)('0' + idx % 10);
		idx /= 10;
	}
	k->s[14] = 0;
	k->len = 14;
}

static void value_make(unsigned char val[VAL_LEN], uint64_t idx)
{
	uint64_t w[2] = {idx, ~idx};
	memcpy(val, w, VAL_LEN);
}

static inline uint64_t load64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

struct stream {
	struct key *keys;
	size_t m;
	uint64_t sum; /* expected sum of the first value words read */
};

static int stream_make(struct stream *st, uint64_t n, size_t m)
{
	st->keys = malloc(m * sizeof(*st->keys));
	if (!st->keys) {
		fprintf(stderr, "fdn-bench: lookup stream: %s\n", strerror(errno));
		return -1;
	}
	st->m = m;
	st->sum = 0;
	uint64_t seed = STREAM_SEED;
	for (size_t i = 0; i < m; i++) {
		uint64_t idx = bench_xorshift64(&seed) % n;
		key_make(&st->keys[i], idx);
		st->sum += idx;
	}
	return 0;
}

/* ---- what a run saw ----------------------------------------------------------- */

struct tally {
	uint64_t hits, misses, sum;
	bool failed;   /* an error other than "not found": the run stopped */
	size_t bad_at; /* first miss or error, index in the stream */
	char msg[160];
};

static __attribute__((noinline, cold)) void tally_miss(struct tally *t, size_t i)
{
	if (t->misses++ == 0 && !t->failed)
		t->bad_at = i;
}

static __attribute__((noinline, cold, format(printf, 3, 4))) void
tally_fail(struct tally *t, size_t i, const char *fmt, ...)
{
	va_list ap;
	t->failed = true;
	t->bad_at = i;
	va_start(ap, fmt);
	vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
	va_end(ap);
}

typedef void (*run_fn)(void *ctx, const struct key *ks, size_t m, struct tally *t);

/* ---- 1. foundation: the shared table ---------------------------------------- */

struct fsys {
	char name[64];
	fdn_segment *seg;
};

static void fsys_ctx_close(struct fsys *c)
{
	if (c->seg) {
		int r = fdn_segment_detach(c->seg);
		if (r)
			fprintf(stderr, "fdn-bench: foundation: detach %s: %s\n", c->name,
				fdn_strerror(r));
		c->seg = NULL;
	}
	if (c->name[0]) {
		int r = fdn_segment_destroy(c->name);
		if (r)
			fprintf(stderr, "fdn-bench: foundation: destroy %s: %s\n", c->name,
				fdn_strerror(r));
		c->name[0] = 0;
		bench_shm_path[0] = 0;
	}
}

static void fsys_close(void *ctx)
{
	fsys_ctx_close(ctx);
	free(ctx);
}

static void fsys_check_cb(void *arg, const char *code, const char *message)
{
	unsigned *shown = arg;
	if ((*shown)++ < 10)
		fprintf(stderr, "fdn-bench: foundation: check: %s: %s\n", code, message);
}

static int fsys_fill(struct fsys *c, uint64_t n)
{
	unsigned char val[VAL_LEN];
	struct key k;
	for (uint64_t i = 0; i < n; i++) {
		key_make(&k, i);
		value_make(val, i);
		int r = fdn__ht_put(c->seg, 0, k.s, k.len, val, VAL_LEN, FDN_HT_UNIQUE, NULL, NULL);
		if (r) {
			fprintf(stderr,
				"fdn-bench: foundation: insert %s (%" PRIu64 " of %" PRIu64
				"): %s (%s)\n",
				k.s, i + 1, n, fdn_strerror(r), fdn_errname(r));
			return -1;
		}
	}
	key_make(&k, 0);
	value_make(val, 0);
	int r = fdn__ht_put(c->seg, 0, k.s, k.len, val, VAL_LEN, FDN_HT_UNIQUE, NULL, NULL);
	if (r != FDN_EEXISTS) {
		fprintf(stderr, "fdn-bench: foundation: second insert of %s: got %s, want %s\n",
			k.s, fdn_errname(r), fdn_errname(FDN_EEXISTS));
		return -1;
	}
	return 0;
}

static int fsys_verify(struct fsys *c, uint64_t n)
{
	int64_t cnt = fdn__ht_count(c->seg, 0);
	if (cnt != (int64_t)n) {
		fprintf(stderr,
			"fdn-bench: foundation: table count is %" PRId64 " after %" PRIu64
			" inserts\n",
			cnt, n);
		return -1;
	}
	unsigned shown = 0;
	int r = fdn__seg_check(c->seg, fsys_check_cb, &shown);
	if (r < 0) {
		fprintf(stderr, "fdn-bench: foundation: check: %s\n", fdn_strerror(r));
		return -1;
	}
	if (r > 0) {
		fprintf(stderr, "fdn-bench: foundation: check: %d violation(s) after filling\n", r);
		return -1;
	}
	return 0;
}

static int fsys_open(void **out, uint64_t n)
{
	struct fsys *c = calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "fdn-bench: foundation: %s\n", strerror(errno));
		return -1;
	}
	snprintf(c->name, sizeof(c->name), "fdn-bench-%d-%" PRIu64, (int)getpid(), n);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = n;
	o.heap_bytes = n * 128u + (4u << 20);
	int r = fdn_segment_create(c->name, &o, &c->seg);
	if (r) {
		fprintf(stderr, "fdn-bench: foundation: create segment %s: %s\n", c->name,
			fdn_strerror(r));
		c->name[0] = 0; /* a failed create removes what it made */
		free(c);
		return -1;
	}
	snprintf(bench_shm_path, sizeof(bench_shm_path), "/dev/shm/%s", c->name);
	if (fsys_fill(c, n) || fsys_verify(c, n)) {
		fsys_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

static void fsys_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->seg;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m; i++) {
		struct fdn__thread *th;
		struct fdn__ht_view v;
		int r = fdn__rcu_read_lock(seg, &th);
		if (r) {
			tally_fail(t, i, "read lock: %s", fdn_strerror(r));
			break;
		}
		r = fdn__ht_lookup(seg, 0, ks[i].s, ks[i].len, &v);
		if (r == 0) {
			hits++;
			sum += load64(v.val);
		}
		fdn__rcu_read_unlock(th);
		if (r == FDN_ENOTFOUND) {
			tally_miss(t, i);
		} else if (r) {
			tally_fail(t, i, "lookup %s: %s (%s)", ks[i].s, fdn_strerror(r),
				   fdn_errname(r));
			break;
		}
	}
	t->hits = hits;
	t->sum = sum;
}

static void fsys_run_batched(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->seg;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m && !t->failed; i += BATCH) {
		size_t end = m - i < BATCH ? m : i + BATCH;
		struct fdn__thread *th;
		int r = fdn__rcu_read_lock(seg, &th);
		if (r) {
			tally_fail(t, i, "read lock: %s", fdn_strerror(r));
			break;
		}
		for (size_t j = i; j < end; j++) {
			struct fdn__ht_view v;
			r = fdn__ht_lookup(seg, 0, ks[j].s, ks[j].len, &v);
			if (r == 0) {
				hits++;
				sum += load64(v.val);
			} else if (r == FDN_ENOTFOUND) {
				tally_miss(t, j);
			} else {
				tally_fail(t, j, "lookup %s: %s (%s)", ks[j].s, fdn_strerror(r),
					   fdn_errname(r));
				break;
			}
		}
		fdn__rcu_read_unlock(th);
	}
	t->hits = hits;
	t->sum = sum;
}

/* ---- 2. plain: process-local open addressing ------------------------------- */

struct rec {
	unsigned char val[VAL_LEN];
	uint32_t klen;
	char key[];
};

struct slot {
	uint64_t hash;
	struct rec *r; /* NULL: empty */
};

struct plain {
	struct slot *slots;
	uint64_t mask;
	uint64_t n;
};

static inline const struct rec *plain_get(const struct plain *p, const char *k, uint32_t kl)
{
	uint64_t h = XXH3_64bits_withSeed(k, kl, BENCH_SEED);
	for (uint64_t i = h & p->mask;; i = (i + 1) & p->mask) {
		const struct slot *s = &p->slots[i];
		if (!s->r)
			return NULL;
		if (s->hash == h && s->r->klen == kl && memcmp(s->r->key, k, kl) == 0)
			return s->r;
	}
}

/* Insert; false if the key is present (capacity >= 2n: never full). */
static bool plain_put(struct plain *p, struct rec *r)
{
	uint64_t h = XXH3_64bits_withSeed(r->key, r->klen, BENCH_SEED);
	for (uint64_t i = h & p->mask;; i = (i + 1) & p->mask) {
		struct slot *s = &p->slots[i];
		if (!s->r) {
			*s = (struct slot){h, r};
			return true;
		}
		if (s->hash == h && s->r->klen == r->klen &&
		    memcmp(s->r->key, r->key, r->klen) == 0)
			return false;
	}
}

static void plain_close(void *ctx)
{
	struct plain *p = ctx;
	for (uint64_t i = 0; p->slots && i <= p->mask; i++)
		free(p->slots[i].r);
	free(p->slots);
	free(p);
}

static uint64_t pow2_at_least(uint64_t x)
{
	uint64_t p = 2;
	while (p < x)
		p <<= 1;
	return p;
}

static int plain_open(void **out, uint64_t n)
{
	struct plain *p = calloc(1, sizeof(*p));
	uint64_t cap = pow2_at_least(2 * n);
	if (p)
		p->slots = calloc(cap, sizeof(*p->slots));
	if (!p || !p->slots) {
		fprintf(stderr, "fdn-bench: plain: table of %" PRIu64 " slots: %s\n", cap,
			strerror(errno));
		free(p);
		return -1;
	}
	p->mask = cap - 1;
	for (uint64_t i = 0; i < n; i++) {
		struct key k;
		key_make(&k, i);
		struct rec *r = malloc(sizeof(*r) + k.len);
		if (!r) {
			fprintf(stderr, "fdn-bench: plain: record: %s\n", strerror(errno));
			plain_close(p);
			return -1;
		}
		value_make(r->val, i);
		r->klen = k.len;
		memcpy(r->key, k.s, k.len);
		if (!plain_put(p, r)) {
			fprintf(stderr, "fdn-bench: plain: insert %s: already present\n", k.s);
			free(r);
			plain_close(p);
			return -1;
		}
	}
	p->n = n;
	*out = p;
	return 0;
}

static void plain_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	const struct plain *p = ctx;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m; i++) {
		const struct rec *r = plain_get(p, ks[i].s, ks[i].len);
		if (r) {
			hits++;
			sum += load64(r->val);
		} else {
			tally_miss(t, i);
		}
	}
	t->hits = hits;
	t->sum = sum;
}

/* ---- 3. liburcu cds_lfht ------------------------------------------------------ */

struct lfnode {
	struct cds_lfht_node node; /* first: a node pointer is an lfnode pointer */
	unsigned char val[VAL_LEN];
	uint32_t klen;
	char key[];
};

struct lfkey {
	const char *s;
	uint32_t len;
};

struct lfht {
	struct cds_lfht *ht;
	struct lfnode **nodes; /* every node, for teardown */
	uint64_t n;
};

static bool g_urcu_registered;

static int lf_match(struct cds_lfht_node *node, const void *key)
{
	const struct lfnode *ln = (const struct lfnode *)node;
	const struct lfkey *k = key;
	return ln->klen == k->len && memcmp(ln->key, k->s, k->len) == 0;
}

static unsigned long lf_hash(const char *s, uint32_t len)
{
	return (unsigned long)XXH3_64bits_withSeed(s, len, BENCH_SEED);
}

static void lfht_close(void *ctx)
{
	struct lfht *l = ctx;
	if (l->ht) {
		for (uint64_t i = 0; i < l->n; i++) {
			urcu_memb_read_lock();
			cds_lfht_del(l->ht, &l->nodes[i]->node);
			urcu_memb_read_unlock();
		}
		urcu_memb_synchronize_rcu();
		int r = cds_lfht_destroy(l->ht, NULL);
		if (r)
			fprintf(stderr, "fdn-bench: cds_lfht: destroy: %s\n", strerror(-r));
	}
	for (uint64_t i = 0; l->nodes && i < l->n; i++)
		free(l->nodes[i]);
	free(l->nodes);
	free(l);
}

static int lfht_insert(struct lfht *l, uint64_t i)
{
	struct key k;
	key_make(&k, i);
	struct lfnode *ln = malloc(sizeof(*ln) + k.len);
	if (!ln) {
		fprintf(stderr, "fdn-bench: cds_lfht: node: %s\n", strerror(errno));
		return -1;
	}
	cds_lfht_node_init(&ln->node);
	value_make(ln->val, i);
	ln->klen = k.len;
	memcpy(ln->key, k.s, k.len);
	struct lfkey lk = {ln->key, ln->klen};
	urcu_memb_read_lock();
	struct cds_lfht_node *got =
	    cds_lfht_add_unique(l->ht, lf_hash(k.s, k.len), lf_match, &lk, &ln->node);
	urcu_memb_read_unlock();
	if (got != &ln->node) {
		fprintf(stderr, "fdn-bench: cds_lfht: insert %s: already present\n", k.s);
		free(ln);
		return -1;
	}
	l->nodes[l->n++] = ln;
	return 0;
}

static int lfht_open(void **out, uint64_t n)
{
	if (!g_urcu_registered) {
		urcu_memb_register_thread();
		g_urcu_registered = true;
	}
	struct lfht *l = calloc(1, sizeof(*l));
	if (l)
		l->nodes = calloc(n, sizeof(*l->nodes));
	if (!l || !l->nodes) {
		fprintf(stderr, "fdn-bench: cds_lfht: %s\n", strerror(errno));
		free(l);
		return -1;
	}
	/* Same bucket count as foundation (2N rounded up), fixed: no resize. */
	unsigned long nb = (unsigned long)pow2_at_least(2 * n);
	l->ht = cds_lfht_new_flavor(nb, nb, nb, 0, &urcu_memb_flavor, NULL);
	if (!l->ht) {
		fprintf(stderr, "fdn-bench: cds_lfht: new table of %lu buckets failed\n", nb);
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

static void lfht_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	struct cds_lfht *ht = ((struct lfht *)ctx)->ht;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m; i++) {
		struct lfkey k = {ks[i].s, ks[i].len};
		struct cds_lfht_iter it;
		urcu_memb_read_lock();
		cds_lfht_lookup(ht, lf_hash(k.s, k.len), lf_match, &k, &it);
		const struct lfnode *ln = (const struct lfnode *)cds_lfht_iter_get_node(&it);
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

/* ---- 4. LMDB ------------------------------------------------------------------- */

#ifdef HAVE_LMDB
static void lmdb_close(void *ctx)
{
	bench_lmdb_close(ctx);
	free(ctx);
}

static int lmdb_fill(struct bench_lmdb *d, uint64_t n)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(d->env, NULL, 0, &txn);
	if (rc)
		return bench_lmdb_fail("begin write transaction", rc);
	rc = mdb_dbi_open(txn, NULL, 0, &d->dbi);
	if (rc) {
		mdb_txn_abort(txn);
		return bench_lmdb_fail("open database", rc);
	}
	for (uint64_t i = 0; i < n; i++) {
		struct key k;
		unsigned char val[VAL_LEN];
		key_make(&k, i);
		value_make(val, i);
		MDB_val mk = {k.len, k.s}, mv = {VAL_LEN, val};
		rc = mdb_put(txn, d->dbi, &mk, &mv, MDB_NOOVERWRITE);
		if (rc) {
			mdb_txn_abort(txn);
			fprintf(stderr, "fdn-bench: lmdb: put %s: %s\n", k.s, mdb_strerror(rc));
			return -1;
		}
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return bench_lmdb_fail("commit", rc);
	return 0;
}

static int lmdb_open(void **out, uint64_t n)
{
	struct bench_lmdb *d = calloc(1, sizeof(*d));
	if (!d) {
		fprintf(stderr, "fdn-bench: lmdb: %s\n", strerror(errno));
		return -1;
	}
	if (bench_lmdb_open(d, "fdn-bench", (size_t)(n * 256u + (64u << 20))) || lmdb_fill(d, n)) {
		lmdb_close(d);
		return -1;
	}
	*out = d;
	return 0;
}

static void lmdb_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	struct bench_lmdb *d = ctx;
	uint64_t hits = 0, sum = 0;
	MDB_txn *txn;
	int rc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		tally_fail(t, 0, "begin read transaction: %s", mdb_strerror(rc));
		return;
	}
	for (size_t i = 0; i < m; i++) {
		if (i && i % LMDB_RENEW == 0) {
			mdb_txn_reset(txn);
			rc = mdb_txn_renew(txn);
			if (rc) {
				tally_fail(t, i, "renew read transaction: %s", mdb_strerror(rc));
				break;
			}
		}
		MDB_val k = {ks[i].len, (void *)ks[i].s}, v;
		rc = mdb_get(txn, d->dbi, &k, &v);
		if (rc == 0) {
			hits++;
			sum += load64(v.mv_data);
		} else if (rc == MDB_NOTFOUND) {
			tally_miss(t, i);
		} else {
			tally_fail(t, i, "get %s: %s", ks[i].s, mdb_strerror(rc));
			break;
		}
	}
	mdb_txn_abort(txn);
	t->hits = hits;
	t->sum = sum;
}
#endif

/* ---- the systems and their rows ---------------------------------------------- */

struct variant {
	const char *label; /* human table */
	const char *id;    /* JSON "system" */
	run_fn run;
};

struct system {
	const char *name;
	int (*open)(void **ctx, uint64_t n);
	void (*close)(void *ctx);
	struct variant v[2]; /* rows; v[1].run NULL if one */
};

enum { ROW_FDN, ROW_FDN_BATCHED, ROW_PLAIN, ROW_LFHT, ROW_LMDB, NROWS };

static const struct system systems[] = {
    {"foundation",
     fsys_open,
     fsys_close,
     {{"foundation", "foundation", fsys_run},
      {"foundation (batched section)", "foundation_batched", fsys_run_batched}}},
    {"plain", plain_open, plain_close, {{"plain", "plain", plain_run}, {0}}},
    {"cds_lfht", lfht_open, lfht_close, {{"cds_lfht", "cds_lfht", lfht_run}, {0}}},
#ifdef HAVE_LMDB
    {"lmdb", lmdb_open, lmdb_close, {{"lmdb", "lmdb", lmdb_run}, {0}}},
#endif
};
#define NSYSTEMS (sizeof(systems) / sizeof(systems[0]))

struct row {
	const char *label, *id;
	double ops; /* best ops/s; 0 = not run */
};

/* ---- measuring and verifying ----------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int verify_run(const char *label, const struct tally *t, const struct stream *st)
{
	if (t->failed) {
		fprintf(stderr, "fdn-bench: %s: lookup %zu of %zu: %s\n", label, t->bad_at + 1,
			st->m, t->msg);
		return -1;
	}
	if (t->misses || t->hits != st->m) {
		fprintf(stderr,
			"fdn-bench: %s: %" PRIu64 " of %zu lookups of present keys missed "
			"(first: %s, lookup %zu); %" PRIu64 " hits\n",
			label, t->misses, st->m, st->keys[t->bad_at].s, t->bad_at + 1, t->hits);
		return -1;
	}
	if (t->sum != st->sum) {
		fprintf(stderr,
			"fdn-bench: %s: wrong values: sum of values read is %" PRIu64
			", expected %" PRIu64 "\n",
			label, t->sum, st->sum);
		return -1;
	}
	return 0;
}

/* A key that was never inserted must miss, without error. */
static int verify_absent(const struct variant *v, void *ctx, uint64_t n)
{
	struct key k;
	struct tally t = {0};
	key_make(&k, n);
	v->run(ctx, &k, 1, &t);
	if (t.failed) {
		fprintf(stderr, "fdn-bench: %s: absent key %s: %s\n", v->label, k.s, t.msg);
		return -1;
	}
	if (t.hits) {
		fprintf(stderr, "fdn-bench: %s: absent key %s was found\n", v->label, k.s);
		return -1;
	}
	return 0;
}

static int measure(const struct variant *v, void *ctx, const struct stream *st, int reps,
		   double *best)
{
	*best = 0;
	for (int rep = 0; rep < reps; rep++) {
		struct tally t = {0};
		double t0 = now_s();
		v->run(ctx, st->keys, st->m, &t);
		double dt = now_s() - t0;
		if (verify_run(v->label, &t, st))
			return -1;
		double ops = dt > 0 ? (double)st->m / dt : 0;
		if (ops > *best)
			*best = ops;
	}
	return 0;
}

/* Build one system, run its rows, tear it down. */
static int bench_system(const struct system *sys, uint64_t n, const struct stream *st, int reps,
			struct row *rows)
{
	void *ctx;
	if (sys->open(&ctx, n))
		return -1;
	int r = 0;
	for (int i = 0; i < 2 && sys->v[i].run && r == 0; i++) {
		r = verify_absent(&sys->v[i], ctx, n);
		if (r == 0)
			r = measure(&sys->v[i], ctx, st, reps, &rows[i].ops);
	}
	sys->close(ctx);
	return r;
}

/* ---- reporting ------------------------------------------------------------------ */

struct target {
	uint64_t entries;
	int row;
	double min; /* foundation / system >= min */
};

static const struct target targets[] = {
    {1000000, ROW_PLAIN, 0.7}, {1000000, ROW_LFHT, 3.0}, {1000000, ROW_LMDB, 8.0},
    {10000, ROW_PLAIN, 0.6},   {10000, ROW_LFHT, 1.0},
};

static double ratio(const struct row *rows, int i)
{
	return rows[i].ops > 0 ? rows[ROW_FDN].ops / rows[i].ops : 0;
}

static void print_table(uint64_t n, const struct opts *o, const struct row *rows)
{
	printf("lookup_hit: %" PRIu64 " entries, %zu lookups of present keys, best of %d run%s\n\n",
	       n, o->lookups, o->reps, o->reps == 1 ? "" : "s");
	printf("  %-30s %14s %10s %13s\n", "system", "ops/s", "ns/lookup", "foundation/x");
	for (int i = 0; i < NROWS; i++) {
		if (rows[i].ops <= 0)
			continue;
		printf("  %-30s %14.0f %10.1f %13.2f\n", rows[i].label, rows[i].ops,
		       1e9 / rows[i].ops, ratio(rows, i));
	}
	printf("\n");
}

static void print_json(uint64_t n, const struct row *rows)
{
	for (int i = 0; i < NROWS; i++) {
		if (rows[i].ops <= 0)
			continue;
		printf("{\"scenario\":\"lookup_hit\",\"entries\":%" PRIu64
		       ",\"system\":\"%s\",\"ops_per_s\":%.1f}\n",
		       n, rows[i].id, rows[i].ops);
	}
	printf("{\"scenario\":\"lookup_hit\",\"entries\":%" PRIu64 ",\"ratios\":{", n);
	const char *sep = "";
	for (int i = ROW_PLAIN; i < NROWS; i++) {
		if (rows[i].ops <= 0)
			continue;
		printf("%s\"foundation/%s\":%.3f", sep, rows[i].id, ratio(rows, i));
		sep = ",";
	}
	printf("}}\n");
	fflush(stdout);
}

static void print_targets(uint64_t n, const struct row *rows, FILE *f)
{
	bool any = false;
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		const struct target *tg = &targets[i];
		if (tg->entries != n || rows[tg->row].ops <= 0)
			continue;
		if (!any)
			fprintf(f, "  SPEC targets at %" PRIu64 " entries:\n", n);
		any = true;
		double got = ratio(rows, tg->row);
		fprintf(f, "    foundation >= %4.2fx %-10s measured %6.2fx   %s\n", tg->min,
			rows[tg->row].id, got, got >= tg->min ? "met" : "MISSED");
	}
	if (any)
		fprintf(f, "\n");
	fflush(f);
}

static int bench_size(const struct opts *o, uint64_t n)
{
	struct stream st;
	if (stream_make(&st, n, o->lookups))
		return -1;
	struct row rows[NROWS] = {0};
	int r = 0;
	for (size_t s = 0; s < NSYSTEMS && r == 0; s++) {
		const struct system *sys = &systems[s];
		int first = s == 0 ? ROW_FDN : ROW_PLAIN + (int)s - 1;
		for (int i = 0; i < 2 && sys->v[i].run; i++) {
			rows[first + i].label = sys->v[i].label;
			rows[first + i].id = sys->v[i].id;
		}
		r = bench_system(sys, n, &st, o->reps, &rows[first]);
	}
	free(st.keys);
	if (r)
		return -1;
	if (o->json) {
		print_json(n, rows);
		print_targets(n, rows, stderr);
	} else {
		print_table(n, o, rows);
		print_targets(n, rows, stdout);
	}
	return 0;
}

/* ---- command line ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f, "usage: fdn-bench [--sizes N[,N...]] [--lookups M] [--json] [--quick]\n"
		   "\n"
		   "Lookup-hit throughput of Foundation's shared table against a plain\n"
		   "open-addressing table, liburcu's cds_lfht"
#ifdef HAVE_LMDB
		   " and LMDB"
#endif
		   ",\nall on the same keys and the same random lookup stream.\n"
		   "\n"
		   "  --sizes LIST   table sizes (entries), default 10000,1000000\n"
		   "  --lookups M    lookups per run, default 2000000\n"
		   "  --json         one JSON object per line (SPEC verdicts on stderr)\n"
		   "  --quick        sizes 10000,100000, 200000 lookups, one run (CI)\n"
		   "  --help         this text\n"
		   "\n"
		   "Exit status: 0, also when a SPEC target is missed; 1 when a lookup\n"
		   "missed or returned a wrong value, or a system failed; 2 on bad usage.\n");
}

static int parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < 1 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_sizes(const char *arg, struct opts *o)
{
	char buf[256];
	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf))
		return -1;
	o->nsizes = 0;
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (o->nsizes == MAX_SIZES || parse_count(tok, MAX_ENTRIES, &o->sizes[o->nsizes]))
			return -1;
		o->nsizes++;
	}
	return o->nsizes ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"sizes", required_argument, NULL, 's'}, {"lookups", required_argument, NULL, 'l'},
	    {"json", no_argument, NULL, 'j'},        {"quick", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
	};
	bool quick = false, have_sizes = false, have_lookups = false;
	uint64_t m = 2000000;
	*o = (struct opts){.sizes = {10000, 1000000}, .nsizes = 2, .reps = 3};
	for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
		switch (c) {
		case 's':
			if (parse_sizes(optarg, o)) {
				fprintf(stderr,
					"fdn-bench: --sizes: '%s' is not a list of up to %d sizes "
					"in 1..%llu\n",
					optarg, MAX_SIZES, MAX_ENTRIES);
				return 2;
			}
			have_sizes = true;
			break;
		case 'l':
			if (parse_count(optarg, 1ull << 32, &m)) {
				fprintf(stderr,
					"fdn-bench: --lookups: '%s' is not a count in 1..%llu\n",
					optarg, 1ull << 32);
				return 2;
			}
			have_lookups = true;
			break;
		case 'j':
			o->json = true;
			break;
		case 'q':
			quick = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fdn-bench: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (quick) {
		o->reps = 1;
		if (!have_sizes) {
			o->sizes[0] = 10000;
			o->sizes[1] = 100000;
			o->nsizes = 2;
		}
		if (!have_lookups)
			m = 200000;
	}
	o->lookups = (size_t)m;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	/* One process, no deaths: no reaper needed for these segments. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	int r = parse_args(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r; /* 1: --help */
	bench_set_signals(bench_on_signal);
	int status = 0;
	for (int i = 0; i < o.nsizes && status == 0; i++)
		if (bench_size(&o, o.sizes[i]))
			status = 1;
	if (g_urcu_registered)
		urcu_memb_unregister_thread();
	return status;
}
