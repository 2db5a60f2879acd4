/*
 * bench_lookup.c - fdn-bench: lookup throughput, hits and misses, of
 * Foundation against the systems it is meant to beat, all in one run.
 *
 * What is measured.  For each table size N (default 10 000, 100 000 and
 * 1 000 000), every system below holds the same N keys "agent-%08d"
 * (i = 0 .. N-1), each with a 16-byte value whose first 8 bytes are i, and
 * answers the same two streams of M lookups (default 2 000 000):
 *   lookup_hit   indexes drawn uniformly from [0, N) by xorshift64 with a
 *                fixed seed: every lookup must hit and read its value;
 *   lookup_miss  the same draws plus N: keys in [N, 2N), never inserted:
 *                every lookup must miss.
 * Keys are formatted into an array beforehand, so formatting is not timed.
 * One thread, no writer during the timed loops.  A hit reads 8 bytes of
 * the value.
 *
 *   foundation      fdn__ht_lookup on table 0 of a private segment (shared
 *                   mode: a MAP_SHARED segment in /dev/shm), each lookup in
 *                   its own read-side section: the raw table.
 *   foundation (64 per section)
 *                   the same, 64 lookups sharing one read-side section.
 *   foundation (fdn_lookup)
 *                   the registry API on a registry segment: entries carry
 *                   one int attribute (i), and each lookup copies the entry
 *                   out (key, pid, time, attributes) after checking that its
 *                   owner lives.
 *   foundation (fdn_whereis)
 *                   the same segment, fdn_whereis: the owner's pid only, no
 *                   copy (a hit reads the pid; the value checked is the
 *                   index, recovered from the key).
 *   foundation (fdn_lookup_view)
 *                   the same segment, fdn_lookup_view: a callback reads the
 *                   attribute's 8 bytes in place.
 *   foundation (local backend)
 *                   the registry API with no segment (s == NULL): the
 *                   process-local cds_lfht backend the flags can select
 *   plain           a process-local open-addressing table (linear probing,
 *                   {hash, record *} slots, capacity a power of two >= 2N):
 *                   what one process can do with nothing shared.
 *   cds_lfht        liburcu's lock-free RCU hash table (memb flavour, as
 *                   many buckets as foundation), urcu_memb_read_lock/unlock
 *                   around each lookup.
 *   lmdb            mdb_get in one long read transaction (reset and renewed
 *                   every 65536 lookups); only when built with LMDB.
 *   redis           GET over a unix socket to a redis-server this program
 *                   starts (bench_common.c), one round trip per GET, on the
 *                   first --redis-lookups keys of the stream (a round trip
 *                   costs tens of microseconds); only when redis-server is
 *                   in $PATH.
 *   redis (pipelined)
 *                   the same GETs sent 64 at a time, on the first
 *                   --redis-pipelined keys of the stream.
 * Every system but redis hashes with XXH3-64 from the shared libxxhash.
 * Library calls stay calls: liburcu is used without _LGPL_SOURCE (its read
 * lock is not inlined), just as the fdn__ calls come from the static
 * library.
 *
 * How.  Each system runs each stream 3 times (--quick: once) and the best
 * run counts; time is CLOCK_MONOTONIC around the loop.  Every hit must
 * yield the value stored for its key (the sum of the values read is
 * compared with the expected one) and every miss must miss: anything else
 * is a correctness failure, reported on stderr, exit status 1.  Timing
 * never fails the run: the SPEC targets are printed as "met" / "MISSED"
 * and the exit status stays 0.
 *
 * Output (bench_common.h): per size and stream one result -- a table with
 * each system's lookups/s and the first system's rate divided by each,
 * then the SPEC targets; with --json one JSON object per result on stdout
 * (tables on stderr); --json-file PATH writes the JSON there and the
 * tables to stdout.
 */
#include "shm/shm.h"

#include <foundation/registry.h>

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
#define MAX_ENTRIES 49999999ull /* misses go to 2N - 1: "agent-%08d" stays 14 bytes */
#define PIPE_DEPTH  64u

/* ---- options -------------------------------------------------------------- */

struct opts {
	uint64_t sizes[MAX_SIZES];
	int nsizes;
	size_t lookups;
	size_t redis_lookups, redis_pipelined; /* prefixes of the stream */
	unsigned rounds;
	double round_ms;
	bool json;
	const char *json_path;
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

static uint64_t key_idx(const struct key *k)
{
	uint64_t idx = 0;
	for (int d = 6; d < 14; d++)
		idx = idx * 10 + (uint64_t)(k->s[d] - '0');
	return idx;
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
	bool hit; /* keys present (lookup_hit) or absent (lookup_miss) */
};

/* offset 0: present keys; offset n: the same draws + n, never inserted. */
static int stream_make(struct stream *st, uint64_t n, size_t m, uint64_t offset)
{
	st->keys = malloc(m * sizeof(*st->keys));
	if (!st->keys) {
		fprintf(stderr, "fdn-bench: lookup stream: %s\n", strerror(errno));
		return -1;
	}
	st->m = m;
	st->hit = offset == 0;
	uint64_t seed = STREAM_SEED;
	for (size_t i = 0; i < m; i++)
		key_make(&st->keys[i], bench_xorshift64(&seed) % n + offset);
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
	fdn_segment *seg; /* NULL: the local backend */
	uint64_t n;       /* entries registered (the local backend's close) */
	int shm_slot;     /* bench_shm_track */
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
		bench_shm_untrack(c->shm_slot);
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
	if (strcmp(code, "note") != 0 && (*shown)++ < 10)
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
	c->shm_slot = bench_shm_track(c->name);
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

/* ---- 5. foundation (fdn_lookup): the registry API ------------------------------- */

/* A registry entry's value is one int attribute "v" = i; its encoding ends
 * with the 8 bytes of i (checked when the segment is filled). */
static int freg_fill(struct fsys *c, uint64_t n)
{
	pid_t me = getpid();
	for (uint64_t i = 0; i < n; i++) {
		struct key k;
		struct fdn_attr a = {.name = "v", .type = FDN_ATTR_INT, .v.i = (int64_t)i};
		key_make(&k, i);
		int r = fdn_register(c->seg, k.s, k.len, me, &a, 1, 0, NULL);
		if (r) {
			fprintf(stderr, "fdn-bench: fdn_register %s: %s (%s)\n", k.s,
				fdn_strerror(r), fdn_errname(r));
			return -1;
		}
	}
	int64_t cnt = fdn_count(c->seg);
	if (cnt != (int64_t)n) {
		fprintf(stderr, "fdn-bench: fdn_count is %" PRId64 " after %" PRIu64 " registers\n",
			cnt, n);
		return -1;
	}
	struct key k;
	struct fdn_entry e;
	key_make(&k, n - 1);
	int r = fdn_lookup(c->seg, k.s, k.len, 0, &e);
	if (r || e.attrs_len < 8 || load64(e.attrs + e.attrs_len - 8) != n - 1) {
		fprintf(stderr,
			"fdn-bench: fdn_lookup %s: %s, or its attribute does not end "
			"with the value\n",
			k.s, r ? fdn_strerror(r) : "found");
		return -1;
	}
	return 0;
}

static int freg_open(void **out, uint64_t n)
{
	struct fsys *c = calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "fdn-bench: foundation: %s\n", strerror(errno));
		return -1;
	}
	snprintf(c->name, sizeof(c->name), "fdn-bench-%d-reg-%" PRIu64, (int)getpid(), n);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = n;
	o.heap_bytes = n * 256u + (8u << 20);
	int r = fdn_segment_create(c->name, &o, &c->seg);
	if (r) {
		fprintf(stderr, "fdn-bench: foundation: create segment %s: %s\n", c->name,
			fdn_strerror(r));
		free(c);
		return -1;
	}
	c->shm_slot = bench_shm_track(c->name);
	if (freg_fill(c, n)) {
		fsys_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

/* fdn_whereis: every hit must name this process; the value summed is the
 * key's index (the registry holds no value fdn_whereis reads). */
static void freg_whereis_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->seg;
	uint64_t hits = 0, sum = 0;
	pid_t me = getpid();
	for (size_t i = 0; i < m; i++) {
		pid_t pid;
		int r = fdn_whereis(seg, ks[i].s, ks[i].len, &pid);
		if (r == 0 && pid == me) {
			hits++;
			sum += key_idx(&ks[i]);
		} else if (r == FDN_ENOTFOUND) {
			tally_miss(t, i);
		} else {
			tally_fail(t, i, "fdn_whereis %s: %s (%s), pid %d", ks[i].s,
				   r ? fdn_strerror(r) : "found", r ? fdn_errname(r) : "-",
				   r ? 0 : (int)pid);
			break;
		}
	}
	t->hits = hits;
	t->sum = sum;
}

static int view_cb(void *arg, const struct fdn_entry_view *e)
{
	*(uint64_t *)arg = load64((const unsigned char *)e->attrs + e->attrs_len - 8);
	return 0;
}

static void freg_view_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->seg;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m; i++) {
		uint64_t v = 0;
		int r = fdn_lookup_view(seg, ks[i].s, ks[i].len, view_cb, &v);
		if (r == 0) {
			hits++;
			sum += v;
		} else if (r == FDN_ENOTFOUND) {
			tally_miss(t, i);
		} else {
			tally_fail(t, i, "fdn_lookup_view %s: %s (%s)", ks[i].s, fdn_strerror(r),
				   fdn_errname(r));
			break;
		}
	}
	t->hits = hits;
	t->sum = sum;
}

static void freg_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->seg;
	uint64_t hits = 0, sum = 0;
	struct fdn_entry e;
	for (size_t i = 0; i < m; i++) {
		int r = fdn_lookup(seg, ks[i].s, ks[i].len, 0, &e);
		if (r == 0) {
			hits++;
			sum += load64(e.attrs + e.attrs_len - 8);
		} else if (r == FDN_ENOTFOUND) {
			tally_miss(t, i);
		} else {
			tally_fail(t, i, "fdn_lookup %s: %s (%s)", ks[i].s, fdn_strerror(r),
				   fdn_errname(r));
			break;
		}
	}
	t->hits = hits;
	t->sum = sum;
}

/* ---- 5b. foundation (local backend): the same API, no segment -------------------- */

/* With s == NULL every registry call uses the process-local backend (a
 * liburcu cds_lfht in this process's memory): the same fill, the same run. */
static void flocal_close(void *ctx)
{
	struct fsys *c = ctx;
	for (uint64_t i = 0; i < c->n; i++) {
		struct key k;
		key_make(&k, i);
		fdn_unregister(NULL, k.s, k.len);
	}
	free(c);
}

static int flocal_open(void **out, uint64_t n)
{
	struct fsys *c = calloc(1, sizeof(*c));
	if (!c) {
		fprintf(stderr, "fdn-bench: foundation (local): %s\n", strerror(errno));
		return -1;
	}
	c->n = n;
	if (freg_fill(c, n)) {
		flocal_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

/* ---- 6. redis over a unix socket ------------------------------------------------ */

static struct bench_redis g_redis;
static int g_redis_state; /* 0 not tried, 1 running, -1 absent or failed */

static int redis_open(void **out, uint64_t n)
{
	if (g_redis_state == 0)
		g_redis_state = bench_redis_start(&g_redis) == 0 ? 1 : -1;
	if (g_redis_state < 0)
		return 1; /* not measured */
	struct bench_redis *r = &g_redis;
	struct bench_resp rep;
	const char *flush[] = {"FLUSHALL"};
	if (bench_redis_call(r, 1, flush, NULL, &rep))
		return -1;
	for (uint64_t i = 0; i < n;) {
		uint64_t end = n - i < 1000 ? n : i + 1000;
		for (uint64_t j = i; j < end; j++) {
			struct key k;
			unsigned char val[VAL_LEN];
			key_make(&k, j);
			value_make(val, j);
			const char *argv[] = {"SET", k.s, (const char *)val};
			size_t lens[] = {3, k.len, VAL_LEN};
			if (bench_redis_cmd(r, 3, argv, lens))
				return -1;
		}
		if (bench_redis_flush(r))
			return -1;
		for (; i < end; i++) {
			if (bench_redis_reply(r, &rep))
				return -1;
			if (rep.type != '+') {
				fprintf(stderr, "fdn-bench: redis: SET: unexpected reply '%c'\n",
					rep.type);
				return -1;
			}
		}
	}
	const char *dbsize[] = {"DBSIZE"};
	if (bench_redis_call(r, 1, dbsize, NULL, &rep))
		return -1;
	if (rep.type != ':' || rep.integer != (int64_t)n) {
		fprintf(stderr, "fdn-bench: redis: DBSIZE %" PRId64 " after %" PRIu64 " SETs\n",
			rep.integer, n);
		return -1;
	}
	*out = r;
	return 0;
}

static void redis_close(void *ctx)
{
	(void)ctx; /* the server runs until the program ends */
}

static inline void redis_tally(struct tally *t, size_t i, const struct bench_resp *rep,
			       uint64_t *hits, uint64_t *sum)
{
	if (rep->type == '$' && !rep->is_nil && rep->len == VAL_LEN) {
		(*hits)++;
		*sum += load64(rep->str);
	} else if (rep->type == '$' && rep->is_nil) {
		tally_miss(t, i);
	} else {
		tally_fail(t, i, "GET: reply of type '%c', %zu bytes", rep->type, rep->len);
	}
}

static void redis_get_n(void *ctx, const struct key *ks, size_t m, struct tally *t, size_t depth)
{
	struct bench_redis *r = ctx;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m && !t->failed; i += depth) {
		size_t end = m - i < depth ? m : i + depth;
		for (size_t j = i; j < end; j++) {
			const char *argv[] = {"GET", ks[j].s};
			size_t lens[] = {3, ks[j].len};
			bench_redis_cmd(r, 2, argv, lens);
		}
		if (bench_redis_flush(r)) {
			tally_fail(t, i, "GET: write failed");
			break;
		}
		for (size_t j = i; j < end && !t->failed; j++) {
			struct bench_resp rep;
			if (bench_redis_reply(r, &rep))
				tally_fail(t, j, "GET: read failed");
			else
				redis_tally(t, j, &rep, &hits, &sum);
		}
	}
	t->hits = hits;
	t->sum = sum;
}

static void redis_run(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	redis_get_n(ctx, ks, m, t, 1);
}

static void redis_run_pipelined(void *ctx, const struct key *ks, size_t m, struct tally *t)
{
	redis_get_n(ctx, ks, m, t, PIPE_DEPTH);
}

/* ---- the systems and their rows ---------------------------------------------- */

/* Where a system's memory lives, for bench_memory (under row id). */
static void fsys_where(void *ctx, struct bench_result *r, const char *id)
{
	const struct fsys *c = ctx;
	bench_memory(r, id, "segment", c->seg->base, (size_t)c->seg->size);
}

static void flocal_where(void *ctx, struct bench_result *r, const char *id)
{
	(void)ctx; /* the library's cds_lfht nodes: its heap, not reachable here */
	bench_memory(r, id, "library heap", NULL, 0);
}

static void plain_where(void *ctx, struct bench_result *r, const char *id)
{
	const struct plain *p = ctx;
	bench_memory(r, id, "slot array", p->slots, (size_t)(p->mask + 1) * sizeof(*p->slots));
	const struct rec *first = NULL;
	for (uint64_t i = 0; i <= p->mask && !first; i++)
		first = p->slots[i].r;
	bench_memory(r, id, "a record (malloc)", first, sizeof(*first));
}

static void lfht_where(void *ctx, struct bench_result *r, const char *id)
{
	const struct lfht *l = ctx;
	bench_memory(r, id, "a node (malloc)", l->n ? l->nodes[0] : NULL, sizeof(struct lfnode));
	bench_memory(r, id, "node pointer array", l->nodes, (size_t)l->n * sizeof(*l->nodes));
}

#ifdef HAVE_LMDB
static void lmdb_where(void *ctx, struct bench_result *r, const char *id)
{
	/* The map's address is where a value read points (me_mapaddr is set
	 * only for MDB_FIXEDMAP). */
	struct bench_lmdb *d = ctx;
	MDB_txn *txn;
	struct key k;
	key_make(&k, 0);
	MDB_val mk = {k.len, k.s}, mv = {0, NULL};
	if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (mdb_get(txn, d->dbi, &mk, &mv) != 0)
			mv.mv_data = NULL;
		mdb_txn_abort(txn);
	}
	bench_memory(r, id, "data.mdb map (a value)", mv.mv_data, VAL_LEN);
}
#endif

static void redis_where(void *ctx, struct bench_result *r, const char *id)
{
	(void)ctx;
	bench_memory(r, id, "redis-server process", NULL, 0);
}

#define NVARIANTS 3 /* rows per system */

struct variant {
	const char *label; /* human table */
	const char *id;    /* JSON "systems" key */
	run_fn run;
	int share; /* 0: the whole slice; 1: --redis-lookups, 2: --redis-pipelined */
};

/* A system is built once per size and kept while every row of every
 * system answers both streams in interleaved rounds; then it is torn
 * down.  open returns 0, -1 on failure, or 1 when the system is not
 * available (its rows say so). */
struct system {
	const char *name;
	int (*open)(void **ctx, uint64_t n);
	void (*close)(void *ctx);
	void (*where)(void *ctx, struct bench_result *r, const char *id);
	struct variant v[NVARIANTS]; /* v[k].id NULL after the last row */
};

/* The row that SPEC ratios are taken against is "foundation" (the raw
 * table: the first row).  To add a system, add its entry here: nothing
 * else changes. */
static const struct system systems[] = {
    {"foundation",
     fsys_open,
     fsys_close,
     fsys_where,
     {{"foundation (raw table)", "foundation", fsys_run, 0},
      {"foundation (raw table, 64 per section)", "foundation_batched", fsys_run_batched, 0}}},
    {"foundation (fdn_lookup)",
     freg_open,
     fsys_close,
     fsys_where,
     {{"foundation (registry API, fdn_lookup)", "foundation_registry", freg_run, 0},
      {"foundation (registry API, fdn_whereis)", "foundation_whereis", freg_whereis_run, 0},
      {"foundation (registry API, fdn_lookup_view)", "foundation_view", freg_view_run, 0}}},
    {"foundation (local backend)",
     flocal_open,
     flocal_close,
     flocal_where,
     {{"foundation (local backend)", "foundation_local", freg_run, 0}, {0}}},
    {"plain",
     plain_open,
     plain_close,
     plain_where,
     {{"plain (open addressing)", "plain", plain_run, 0}, {0}}},
    {"cds_lfht", lfht_open, lfht_close, lfht_where, {{"cds_lfht", "cds_lfht", lfht_run, 0}, {0}}},
#ifdef HAVE_LMDB
    {"lmdb",
     lmdb_open,
     lmdb_close,
     lmdb_where,
     {{"lmdb (mdb_get, one read txn)", "lmdb", lmdb_run, 0}, {0}}},
#endif
    {"redis",
     redis_open,
     redis_close,
     redis_where,
     {{"redis (GET, one round trip each)", "redis", redis_run, 1},
      {"redis (GET, pipelined 64)", "redis_pipelined", redis_run_pipelined, 2}}},
};
#define NSYSTEMS (sizeof(systems) / sizeof(systems[0]))

/* ---- measuring and verifying ----------------------------------------------- */

/* Operations of a slice of `ops` that a row answers: all of them, or for
 * redis the same fraction of the slice as --redis-lookups (or
 * --redis-pipelined) is of --lookups, at least 1. */
static uint64_t share_of(const struct opts *o, int share, uint64_t ops)
{
	if (share == 0)
		return ops;
	double f =
	    (double)(share == 1 ? o->redis_lookups : o->redis_pipelined) / (double)o->lookups;
	uint64_t m = (uint64_t)((double)ops * (f < 1 ? f : 1));
	return m ? m : 1;
}

static int verify_run(const char *label, const struct tally *t, const struct stream *st,
		      const uint64_t *psum, size_t at, size_t m)
{
	if (t->failed) {
		fprintf(stderr, "fdn-bench: %s: lookup %zu of the stream: %s\n", label,
			t->bad_at + at + 1, t->msg);
		return -1;
	}
	if (st->hit && (t->misses || t->hits != m)) {
		fprintf(stderr,
			"fdn-bench: %s: %" PRIu64 " of %zu lookups of present keys missed "
			"(first: %s); %" PRIu64 " hits\n",
			label, t->misses, m, st->keys[at + t->bad_at].s, t->hits);
		return -1;
	}
	if (!st->hit && (t->hits || t->misses != m)) {
		fprintf(stderr,
			"fdn-bench: %s: %" PRIu64 " of %zu lookups of absent keys hit, %" PRIu64
			" missed\n",
			label, t->hits, m, t->misses);
		return -1;
	}
	uint64_t want = st->hit ? psum[at + m] - psum[at] : 0;
	if (t->sum != want) {
		fprintf(stderr,
			"fdn-bench: %s: wrong values: sum of values read is %" PRIu64
			", expected %" PRIu64 "\n",
			label, t->sum, want);
		return -1;
	}
	return 0;
}

/* The rows taking part in one stream's rounds. */
struct live_row {
	const struct variant *v;
	void *ctx;
	struct bench_sys *row;
};

struct lookup_rounds {
	const struct opts *o;
	const struct stream *st;
	const uint64_t *psum; /* psum[i]: sum of the values of keys [0, i) (hit stream) */
	struct live_row rows[BENCH_MAX_SYS];
};

static int64_t lookup_slice(void *arg, size_t sys, uint64_t at, uint64_t ops)
{
	struct lookup_rounds *lr = arg;
	const struct live_row *lv = &lr->rows[sys];
	size_t m = (size_t)share_of(lr->o, lv->v->share, ops);
	struct tally t = {0};
	lv->v->run(lv->ctx, lr->st->keys + at, m, &t);
	if (verify_run(lv->v->label, &t, lr->st, lr->psum, (size_t)at, m))
		return -1;
	return (int64_t)m;
}

/* ---- reporting ------------------------------------------------------------------ */

struct target {
	uint64_t entries;
	const char *num; /* NULL: "foundation", the raw table */
	const char *den;
	double min; /* num / den >= min */
};

/* The registry API's rows: what a caller of the public lookups gets,
 * against a process-local table. */
static const struct target targets[] = {
    {1000000, NULL, "plain", 0.7},
    {1000000, NULL, "cds_lfht", 3.0},
    {1000000, NULL, "lmdb", 8.0},
    {1000000, NULL, "redis", 300},
    {10000, NULL, "plain", 0.6},
    {10000, NULL, "cds_lfht", 1.0},
    {1000000, "foundation_whereis", "plain", 0.6},
    {1000000, "foundation_registry", "plain", 0.4},
    {1000000, "foundation_registry", "cds_lfht", 1.2},
    {10000, "foundation_registry", "plain", 0.5},
};

/* The ratios printed under every table besides first/x. */
static const char *const shown[][2] = {
    {"foundation_registry", "plain"},
    {"foundation_registry", "cds_lfht"},
    {"foundation_registry", "lmdb"},
    {"foundation_registry", "foundation_local"},
};

static int bench_size(const struct opts *o, uint64_t n)
{
	struct stream st[2] = {{0}, {0}};
	uint64_t *psum = malloc((o->lookups + 1) * sizeof(*psum));
	if (!psum || stream_make(&st[0], n, o->lookups, 0) ||
	    stream_make(&st[1], n, o->lookups, n)) {
		if (!psum)
			fprintf(stderr, "fdn-bench: prefix sums: %s\n", strerror(errno));
		free(psum);
		free(st[0].keys);
		return -1;
	}
	psum[0] = 0;
	for (size_t i = 0; i < o->lookups; i++)
		psum[i + 1] = psum[i] + key_idx(&st[0].keys[i]);

	struct bench_result res[2];
	static const char *const names[2] = {"lookup_hit", "lookup_miss"};
	for (int s = 0; s < 2; s++) {
		bench_result_init(&res[s], names[s], BENCH_RATE, "lookups_per_s", "lookups/s");
		bench_title(&res[s],
			    "%" PRIu64 " entries, lookups of %s keys, every system built "
			    "first, then interleaved rounds",
			    n, s ? "absent" : "present");
		bench_param(&res[s], "entries", "%" PRIu64, n);
		bench_param(&res[s], "stream", "%zu", o->lookups);
		bench_param(&res[s], "redis_share", "%.4g",
			    (double)o->redis_lookups / (double)o->lookups);
		bench_param(&res[s], "redis_pipelined_share", "%.4g",
			    (double)o->redis_pipelined / (double)o->lookups);
		bench_param(&res[s], "rounds", "%u", o->rounds);
		bench_param(&res[s], "round_ms", "%g", o->round_ms);
		bench_param(&res[s], "value_bytes", "%u", VAL_LEN);
	}

	/* Build every system on the same keys, all kept open. */
	void *ctx[NSYSTEMS] = {0};
	int state[NSYSTEMS] = {0}; /* 0 open, 1 not available */
	struct lookup_rounds lr[2] = {{o, &st[0], psum, {{0}}}, {o, &st[1], psum, {{0}}}};
	size_t nlive = 0;
	int r = 0;
	for (size_t i = 0; i < NSYSTEMS && r == 0; i++) {
		const struct system *sys = &systems[i];
		int got = sys->open(&ctx[i], n);
		if (got < 0) {
			r = -1;
			state[i] = 1;
			break;
		}
		state[i] = got;
		for (int v = 0; v < NVARIANTS && sys->v[v].id; v++) {
			for (int s = 0; s < 2; s++) {
				struct bench_sys *row =
				    bench_add(&res[s], sys->v[v].id, sys->v[v].label);
				if (got > 0) {
					row->note =
					    "not measured: redis-server not found or failed";
					continue;
				}
				if (sys->v[v].share)
					row->note = sys->v[v].share == 1
							? "a --redis-lookups share of each slice"
							: "a --redis-pipelined share of each slice";
				lr[s].rows[nlive] = (struct live_row){&sys->v[v], ctx[i], row};
			}
			if (got == 0)
				nlive++;
		}
	}
	for (int s = 0; s < 2 && r == 0; s++) {
		struct bench_rounds b = {
		    .nsys = nlive,
		    .rounds = o->rounds,
		    .warmup = 2,
		    .prewarm = true,
		    .round_ms = o->round_ms,
		    .stream_len = o->lookups,
		    .min_ops = o->lookups < 1000 ? o->lookups : 1000,
		    .run = lookup_slice,
		    .arg = &lr[s],
		};
		r = bench_rounds_run(&b);
		if (r == 0) {
			struct bench_sys *rows[BENCH_MAX_SYS];
			for (size_t i = 0; i < nlive; i++)
				rows[i] = lr[s].rows[i].row;
			bench_rounds_fill(&b, &res[s], rows);
			bench_param(&res[s], "ops_per_round", "%" PRIu64, b.ops);
		}
		bench_rounds_free(&b);
	}
	for (size_t i = 0; i < NSYSTEMS && r == 0; i++)
		if (ctx[i] && state[i] == 0)
			systems[i].where(ctx[i], &res[0], systems[i].v[0].id);
	for (size_t i = NSYSTEMS; i-- > 0;)
		if (ctx[i] && state[i] == 0)
			systems[i].close(ctx[i]);
	free(st[0].keys);
	free(st[1].keys);
	free(psum);
	if (r)
		return -1;
	for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
		if (targets[i].entries == n)
			bench_target_ratio(&res[0], "foundation", targets[i].den, targets[i].min);
	for (int s = 0; s < 2; s++)
		for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
			bench_show_ratio(&res[s], shown[i][0], shown[i][1]);
	bench_emit(&res[0]);
	bench_emit(&res[1]);
	return 0;
}

/* ---- command line ---------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fdn-bench [--sizes N[,N...]] [--lookups M] [--redis-lookups M]\n"
		"                 [--redis-pipelined M] [--rounds R] [--round-ms T]\n"
		"                 [--json | --json-file PATH] [--quick]\n"
		"\n"
		"Lookup hits and misses: Foundation's shared table and registry API against\n"
		"a plain open-addressing table, liburcu's cds_lfht"
#ifdef HAVE_LMDB
		", LMDB"
#endif
		" and redis-server\n"
		"(when in $PATH), on the same keys and the same random lookup streams.\n"
		"\n"
		"  --sizes LIST          table sizes (entries), default 10000,100000,1000000\n"
		"  --lookups M           length of the lookup stream, default 2000000\n"
		"  --redis-lookups M     redis answers this share (M / --lookups) of each\n"
		"                        slice one round trip at a time, default 20000\n"
		"  --redis-pipelined M   and this share 64 per round trip, default 200000\n"
		"  --rounds R            interleaved rounds per stream and size, default 40\n"
		"  --round-ms T          target duration of a round (all systems), default 40\n"
		"  --json                one JSON object per result on stdout, tables on stderr\n"
		"  --json-file PATH      the JSON objects into PATH, tables on stdout\n"
		"  --quick               sizes 10000,100000, 200000 lookups (redis 2000 and\n"
		"                        20000), 12 rounds of 10 ms (CI)\n"
		"  --help                this text\n"
		"\n"
		"Exit status: 0, also when a SPEC target is missed; 1 when a lookup\n"
		"missed or hit wrongly or returned a wrong value, or a system failed;\n"
		"2 on bad usage.\n");
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
	    {"sizes", required_argument, NULL, 's'},
	    {"lookups", required_argument, NULL, 'l'},
	    {"redis-lookups", required_argument, NULL, 'r'},
	    {"redis-pipelined", required_argument, NULL, 'p'},
	    {"json", no_argument, NULL, 'j'},
	    {"json-file", required_argument, NULL, 'f'},
	    {"rounds", required_argument, NULL, 'R'},
	    {"round-ms", required_argument, NULL, 'M'},
	    {"quick", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool quick = false, have_sizes = false, have_lookups = false, have_redis = false,
	     have_pipe = false;
	uint64_t m = 2000000, rm = 20000, pm = 200000;
	*o = (struct opts){
	    .sizes = {10000, 100000, 1000000}, .nsizes = 3, .rounds = 40, .round_ms = 40};
	bool have_rounds = false, have_ms = false;
	for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
		uint64_t *cnt = c == 'l' ? &m : c == 'r' ? &rm : &pm;
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
		case 'r':
		case 'p':
			if (parse_count(optarg, 1ull << 32, cnt)) {
				fprintf(stderr, "fdn-bench: --%s: '%s' is not a count in 1..%llu\n",
					c == 'l'   ? "lookups"
					: c == 'r' ? "redis-lookups"
						   : "redis-pipelined",
					optarg, 1ull << 32);
				return 2;
			}
			have_lookups |= c == 'l';
			have_redis |= c == 'r';
			have_pipe |= c == 'p';
			break;
		case 'R':
		case 'M': {
			uint64_t v;
			if (parse_count(optarg, c == 'R' ? 100000 : 10000, &v)) {
				fprintf(stderr, "fdn-bench: --%s: '%s' is not a count in 1..%d\n",
					c == 'R' ? "rounds" : "round-ms", optarg,
					c == 'R' ? 100000 : 10000);
				return 2;
			}
			if (c == 'R') {
				o->rounds = (unsigned)v;
				have_rounds = true;
			} else {
				o->round_ms = (double)v;
				have_ms = true;
			}
			break;
		}
		case 'j':
			o->json = true;
			break;
		case 'f':
			o->json_path = optarg;
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
	if (o->json && o->json_path) {
		fprintf(stderr, "fdn-bench: --json and --json-file: choose one\n");
		return 2;
	}
	if (quick) {
		if (!have_rounds)
			o->rounds = 12;
		if (!have_ms)
			o->round_ms = 10;
		if (!have_sizes) {
			o->sizes[0] = 10000;
			o->sizes[1] = 100000;
			o->nsizes = 2;
		}
		if (!have_lookups)
			m = 200000;
		if (!have_redis)
			rm = 2000;
		if (!have_pipe)
			pm = 20000;
	}
	o->lookups = (size_t)m;
	o->redis_lookups = (size_t)rm;
	o->redis_pipelined = (size_t)pm;
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
	if (bench_output_open(o.json, o.json_path))
		return 1;
	bench_machine("start");
	/* This thread reads cds_lfht itself: register it before the library's
	 * local backend could (the library then uses this registration). */
	urcu_memb_register_thread();
	g_urcu_registered = true;
	int status = 0;
	for (int i = 0; i < o.nsizes && status == 0; i++)
		if (bench_size(&o, o.sizes[i]))
			status = 1;
	if (g_redis_state > 0)
		bench_redis_stop(&g_redis);
	if (g_urcu_registered)
		urcu_memb_unregister_thread();
	bench_machine("end");
	bench_output_close();
	return status;
}
