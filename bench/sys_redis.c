/*
 * bench/sys_redis.c - Redis (systems.h): one redis-server per program,
 * started on first use by bench_redis_start (no TCP port, no persistence,
 * a private unix socket; found in $PATH, else the system is not
 * available), flushed and filled by each system built on it, stopped at
 * the program's end.  Lookups: GET, one round trip each or PIPE_DEPTH per
 * round trip.  Pairs: SET key record NX, then DEL; `variant` pairs per
 * round trip (1: SET, its reply, DEL, its reply).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "systems.h"

#define FILL_BATCH 1000u /* SETs per round trip while filling */

static struct bench_redis g_redis;
static int g_redis_state; /* 0 not tried, 1 running, -1 absent or failed */

void sys_redis_stop(void)
{
	if (g_redis_state > 0)
		bench_redis_stop(&g_redis);
	g_redis_state = 0;
}

static int redis_expect(const struct bench_resp *rep, char type, int64_t integer, const char *what)
{
	if (rep->type == type && (type != ':' || rep->integer == integer))
		return 0;
	return bench_fail("redis: %s: unexpected reply '%c' %.*s", what, rep->type,
			  rep->type == '-' ? (int)rep->len : 0, rep->type == '-' ? rep->str : "");
}

/* Record i of a fill: SET's key and value (lens), in buf when they need
 * room.  0 or -1 (said). */
typedef int (*redis_rec_fn)(uint64_t i, const char *argv[3], size_t lens[3], unsigned char *buf);
#define REDIS_REC_BUF 256

/* The server, emptied, then records 0 .. n - 1 SET: 0, 1 when redis is not
 * available (nothing said), or -1 (said). */
static int redis_open_filled(void **out, uint64_t n, redis_rec_fn rec)
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
		uint64_t end = n - i < FILL_BATCH ? n : i + FILL_BATCH;
		for (uint64_t j = i; j < end; j++) {
			_Alignas(uint64_t) unsigned char buf[REDIS_REC_BUF];
			const char *argv[3] = {"SET"};
			size_t lens[3] = {3};
			if (rec(j, argv, lens, buf) || bench_redis_cmd(r, 3, argv, lens))
				return -1;
		}
		if (bench_redis_flush(r))
			return -1;
		for (; i < end; i++)
			if (bench_redis_reply(r, &rep) || redis_expect(&rep, '+', 0, "SET"))
				return -1;
	}
	const char *dbsize[] = {"DBSIZE"};
	if (bench_redis_call(r, 1, dbsize, NULL, &rep))
		return -1;
	if (rep.type != ':' || rep.integer != (int64_t)n)
		return bench_fail("redis: DBSIZE %" PRId64 " after %" PRIu64 " SETs", rep.integer,
				  n);
	*out = r;
	return 0;
}

static void redis_close(void *ctx)
{
	(void)ctx; /* the server runs until the program ends */
}

/* ==== lookups ====================================================================== */

static int lookup_rec(uint64_t i, const char *argv[3], size_t lens[3], unsigned char *buf)
{
	struct lookup_key *k = (struct lookup_key *)(void *)buf;
	unsigned char *val = buf + sizeof(*k);
	lookup_key_make(k, i);
	lookup_value_make(val, i);
	argv[1] = k->s;
	lens[1] = k->len;
	argv[2] = (const char *)val;
	lens[2] = LOOKUP_VAL_LEN;
	return 0;
}

static int redis_lookup_open(void **out, uint64_t n)
{
	return redis_open_filled(out, n, lookup_rec);
}

static inline void redis_tally(struct tally *t, size_t i, const struct bench_resp *rep,
			       uint64_t *hits, uint64_t *sum)
{
	if (rep->type == '$' && !rep->is_nil && rep->len == LOOKUP_VAL_LEN) {
		(*hits)++;
		*sum += load64(rep->str);
	} else if (rep->type == '$' && rep->is_nil) {
		tally_miss(t, i);
	} else {
		tally_fail(t, i, "GET: reply of type '%c', %zu bytes", rep->type, rep->len);
	}
}

static void redis_get_n(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t,
			size_t depth)
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

static void redis_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	redis_get_n(ctx, ks, m, t, 1);
}

static void redis_run_pipelined(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	redis_get_n(ctx, ks, m, t, PIPE_DEPTH);
}

static void redis_where(void *ctx, struct bench_result *r, const char *id)
{
	(void)ctx;
	bench_memory(r, id, "redis-server process", NULL, 0);
}

const struct lookup_system sys_redis_lookup = {
    "redis",
    redis_lookup_open,
    redis_close,
    redis_where,
    {{"redis (GET, one round trip each)", "redis", redis_run, 1},
     {"redis (GET, pipelined 64)", "redis_pipelined", redis_run_pipelined, 2}}};

/* ==== register + unregister pairs ================================================== */

/* Background entries, the same record as LMDB's. */
static int pairs_rec(uint64_t i, const char *argv[3], size_t lens[3], unsigned char *buf)
{
	struct key *k = (struct key *)(void *)buf;
	unsigned char *val = buf + sizeof(*k);
	_Static_assert(sizeof(struct key) + sizeof(struct rec_hdr) + ENC_CAP <= REDIS_REC_BUF,
		       "a pairs record fits");
	int vlen = pairs_background_rec(k, val, i);
	if (vlen < 0)
		return -1;
	argv[1] = k->s;
	lens[1] = k->len;
	argv[2] = (const char *)val;
	lens[2] = (size_t)vlen;
	return 0;
}

static int redis_pairs_open(void **out)
{
	return redis_open_filled(out, PAIR_BACKGROUND, pairs_rec);
}

/* variant: pairs per round trip (1: SET, reply, DEL, reply). */
static void redis_pairs_run(void *ctx, const struct key *keys, size_t pairs, int variant,
			    struct tally *t)
{
	struct bench_redis *r = ctx;
	size_t per = (size_t)variant;
	for (size_t i = 0; i < pairs; i += per) {
		size_t end = pairs - i < per ? pairs : i + per;
		for (size_t j = i; j < end; j++) {
			const struct key *k = &keys[j % PAIR_KEYS];
			struct fdn_attr a[2];
			unsigned char enc[ENC_CAP], val[sizeof(struct rec_hdr) + ENC_CAP];
			attrs_cap_weight(a, pair_cap(j), j);
			int alen = fdn_attrs_encode(a, 2, enc, ENC_CAP);
			const char *set[] = {"SET", k->s, (const char *)val, "NX"};
			size_t slens[] = {3, k->len, rec_val(val, enc, (uint32_t)alen), 2};
			const char *del[] = {"DEL", k->s};
			size_t dlens[] = {3, k->len};
			if (alen < 0 || bench_redis_cmd(r, 4, set, slens)) {
				tally_fail(t, j, "SET: encode or buffer");
				return;
			}
			if (per == 1) { /* the reply before the next command */
				struct bench_resp rep;
				if (bench_redis_flush(r) || bench_redis_reply(r, &rep) ||
				    redis_expect(&rep, '+', 0, "SET NX")) {
					tally_fail(t, j, "SET NX %s failed", k->s);
					return;
				}
			}
			if (bench_redis_cmd(r, 2, del, dlens)) {
				tally_fail(t, j, "DEL: buffer");
				return;
			}
		}
		if (bench_redis_flush(r)) {
			tally_fail(t, i, "write failed");
			return;
		}
		for (size_t j = i; j < end; j++) {
			struct bench_resp rep;
			if (per > 1 &&
			    (bench_redis_reply(r, &rep) || redis_expect(&rep, '+', 0, "SET NX"))) {
				tally_fail(t, j, "SET NX failed");
				return;
			}
			if (bench_redis_reply(r, &rep) || redis_expect(&rep, ':', 1, "DEL")) {
				tally_fail(t, j, "DEL failed");
				return;
			}
		}
		t->done += end - i;
	}
}

static int redis_pairs_check(void *ctx)
{
	struct bench_resp rep;
	const char *dbsize[] = {"DBSIZE"};
	if (bench_redis_call(ctx, 1, dbsize, NULL, &rep))
		return -1;
	if (rep.type != ':' || rep.integer != PAIR_BACKGROUND)
		return bench_fail("register_unregister: redis: %" PRId64 " keys left, expected %u",
				  rep.integer, PAIR_BACKGROUND);
	return 0;
}

const struct pairs_system sys_redis_pairs = {redis_pairs_open, redis_pairs_run, redis_pairs_check,
					     redis_close};
