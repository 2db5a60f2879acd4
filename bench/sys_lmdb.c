/*
 * bench/sys_lmdb.c - LMDB (systems.h): an environment in a /tmp directory
 * (bench_lmdb_open: MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP), removed
 * at close.  Lookups: mdb_get in one long read transaction, reset and
 * renewed every LMDB_RENEW lookups.  Pairs: put + del of the record
 * (struct rec_hdr, the encoded attributes), `variant` pairs per write
 * transaction.  Built only when LMDB is found (HAVE_LMDB).
 */
#include <lmdb.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "systems.h"

/* Record i of a fill: its key and value, in buf when they need room. */
typedef int (*lmdb_rec_fn)(uint64_t i, MDB_val *k, MDB_val *v, unsigned char *buf);
#define LMDB_REC_BUF 256

static void lmdb_close(void *ctx)
{
	bench_lmdb_close(ctx);
	free(ctx);
}

/* A new environment of mapsize bytes holding records 0 .. n - 1, each
 * put with MDB_NOOVERWRITE in one write transaction.  0 or -1 (said). */
static int lmdb_open_filled(void **out, size_t mapsize, uint64_t n, lmdb_rec_fn rec)
{
	struct bench_lmdb *d = calloc(1, sizeof(*d));
	if (!d)
		return bench_fail("lmdb: %s", strerror(errno));
	if (bench_lmdb_open(d, bench_prog, mapsize)) {
		lmdb_close(d);
		return -1;
	}
	MDB_txn *txn;
	int rc = mdb_txn_begin(d->env, NULL, 0, &txn);
	if (rc) {
		lmdb_close(d);
		return bench_lmdb_fail("begin write transaction", rc);
	}
	if ((rc = mdb_dbi_open(txn, NULL, 0, &d->dbi))) {
		mdb_txn_abort(txn);
		lmdb_close(d);
		return bench_lmdb_fail("open database", rc);
	}
	for (uint64_t i = 0; i < n; i++) {
		_Alignas(uint64_t) unsigned char buf[LMDB_REC_BUF];
		MDB_val mk, mv;
		if (rec(i, &mk, &mv, buf)) {
			mdb_txn_abort(txn);
			lmdb_close(d);
			return -1;
		}
		rc = mdb_put(txn, d->dbi, &mk, &mv, MDB_NOOVERWRITE);
		if (rc) {
			mdb_txn_abort(txn);
			lmdb_close(d);
			return bench_fail("lmdb: put %.*s: %s", (int)mk.mv_size,
					  (const char *)mk.mv_data, mdb_strerror(rc));
		}
	}
	if ((rc = mdb_txn_commit(txn))) {
		lmdb_close(d);
		return bench_lmdb_fail("commit", rc);
	}
	*out = d;
	return 0;
}

/* ==== lookups ====================================================================== */

static int lookup_rec(uint64_t i, MDB_val *k, MDB_val *v, unsigned char *buf)
{
	struct lookup_key *key = (struct lookup_key *)(void *)buf;
	unsigned char *val = buf + sizeof(*key);
	lookup_key_make(key, i);
	lookup_value_make(val, i);
	*k = (MDB_val){key->len, key->s};
	*v = (MDB_val){LOOKUP_VAL_LEN, val};
	return 0;
}

static int lmdb_lookup_open(void **out, uint64_t n)
{
	return lmdb_open_filled(out, (size_t)(n * 256u + (64u << 20)), n, lookup_rec);
}

static void lmdb_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
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

static void lmdb_where(void *ctx, struct bench_result *r, const char *id)
{
	/* The map's address is where a value read points (me_mapaddr is set
	 * only for MDB_FIXEDMAP). */
	struct bench_lmdb *d = ctx;
	MDB_txn *txn;
	struct lookup_key k;
	lookup_key_make(&k, 0);
	MDB_val mk = {k.len, k.s}, mv = {0, NULL};
	if (mdb_txn_begin(d->env, NULL, MDB_RDONLY, &txn) == 0) {
		if (mdb_get(txn, d->dbi, &mk, &mv) != 0)
			mv.mv_data = NULL;
		mdb_txn_abort(txn);
	}
	bench_memory(r, id, "data.mdb map (a value)", mv.mv_data, LOOKUP_VAL_LEN);
}

const struct lookup_system sys_lmdb_lookup = {
    "lmdb",
    lmdb_lookup_open,
    lmdb_close,
    lmdb_where,
    {{"lmdb (mdb_get, one read txn)", "lmdb", lmdb_run, 0}, {0}}};

/* ==== register + unregister pairs ================================================== */

static int pairs_rec(uint64_t i, MDB_val *k, MDB_val *v, unsigned char *buf)
{
	struct key *key = (struct key *)(void *)buf;
	unsigned char *val = buf + sizeof(*key);
	_Static_assert(sizeof(struct key) + sizeof(struct rec_hdr) + ENC_CAP <= LMDB_REC_BUF,
		       "a pairs record fits");
	int vlen = pairs_background_rec(key, val, i);
	if (vlen < 0)
		return -1;
	*k = (MDB_val){key->len, key->s};
	*v = (MDB_val){(size_t)vlen, val};
	return 0;
}

static int lmdb_pairs_open(void **out)
{
	return lmdb_open_filled(out, (size_t)(PAIR_BACKGROUND * 512u + (256u << 20)),
				PAIR_BACKGROUND, pairs_rec);
}

static int lmdb_pair(struct bench_lmdb *d, MDB_txn *txn, const struct key *k, size_t i)
{
	struct fdn_attr a[2];
	unsigned char enc[ENC_CAP], val[sizeof(struct rec_hdr) + ENC_CAP];
	attrs_cap_weight(a, pair_cap(i), i);
	int alen = fdn_attrs_encode(a, 2, enc, ENC_CAP);
	if (alen < 0)
		return alen;
	MDB_val mk = {k->len, (void *)k->s}, mv = {rec_val(val, enc, (uint32_t)alen), val};
	int rc = mdb_put(txn, d->dbi, &mk, &mv, MDB_NOOVERWRITE);
	if (rc == 0)
		rc = mdb_del(txn, d->dbi, &mk, NULL);
	return rc;
}

/* variant: pairs per write transaction. */
static void lmdb_pairs_run(void *ctx, const struct key *keys, size_t pairs, int variant,
			   struct tally *t)
{
	struct bench_lmdb *d = ctx;
	size_t per = (size_t)variant;
	for (size_t i = 0; i < pairs; i += per) {
		MDB_txn *txn;
		int rc = mdb_txn_begin(d->env, NULL, 0, &txn);
		if (rc) {
			tally_fail(t, i, "begin write transaction: %s", mdb_strerror(rc));
			return;
		}
		size_t end = pairs - i < per ? pairs : i + per;
		for (size_t j = i; j < end && rc == 0; j++)
			rc = lmdb_pair(d, txn, &keys[j % PAIR_KEYS], j);
		if (rc) {
			mdb_txn_abort(txn);
			tally_fail(t, i, "put/del: %s", mdb_strerror(rc));
			return;
		}
		if ((rc = mdb_txn_commit(txn))) {
			tally_fail(t, i, "commit: %s", mdb_strerror(rc));
			return;
		}
		t->done += end - i;
	}
}

static int lmdb_pairs_check(void *ctx)
{
	struct bench_lmdb *d = ctx;
	MDB_stat ms;
	int rc = mdb_env_stat(d->env, &ms);
	if (rc)
		return bench_lmdb_fail("stat", rc);
	if (ms.ms_entries != PAIR_BACKGROUND)
		return bench_fail("register_unregister: lmdb: %zu entries left, expected %u",
				  ms.ms_entries, PAIR_BACKGROUND);
	return 0;
}

const struct pairs_system sys_lmdb_pairs = {lmdb_pairs_open, lmdb_pairs_run, lmdb_pairs_check,
					    lmdb_close};
