/*
 * bench/systems.h - the systems the benchmark programs compare, one file
 * each, shared by every program:
 *
 *   sys_foundation.c  Foundation: private segments (struct seg), its raw
 *                     shared table, the registry API on a segment and on
 *                     the process-local backend;
 *   sys_plain.c       a process-local open-addressing table;
 *   sys_lfht.c        liburcu's cds_lfht (memb flavour);
 *   sys_lmdb.c        LMDB in a /tmp directory (HAVE_LMDB);
 *   sys_redis.c       a redis-server this program starts, over a unix
 *                     socket (bench_common.h's client).
 *
 * Each system offers the same small interface per workload, a const
 * table of its functions below: the programs keep only their scenarios,
 * options and reporting, and pick the systems they compare from these
 * tables.  Two workloads:
 *
 *   lookups (fdn-bench): N keys "agent-%08d" with 16-byte values, then
 *     slices of a lookup stream (struct lookup_system);
 *   register + unregister pairs (fdn-bench-registry): PAIR_BACKGROUND
 *     entries with 2 attributes, then pairs over PAIR_KEYS other keys
 *     (struct pairs_system).
 *
 * What a timed loop calls stays in its own file, or is static (inline)
 * here, as it was when each program carried its own copy: the timed loops
 * compile to the same instructions as before the systems moved (checked
 * with objdump when they did; only the offset of the segment pointer in
 * Foundation's lookup context, loaded once per slice, differs).
 */
#ifndef FDN_BENCH_SYSTEMS_H
#define FDN_BENCH_SYSTEMS_H

#include <foundation/registry.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "bench_common.h"

/* Hash seed of the plain table and of cds_lfht (XXH3-64). */
#define SYS_HASH_SEED 0x9E3779B97F4A7C15ull

/* This process (set by main: the pid registered entries carry). */
extern pid_t g_pid;

static inline uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void sleep_ns(long ns)
{
	struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

uint64_t pow2_at_least(uint64_t x);

/* ---- what a timed run saw ----------------------------------------------------
 *
 * Lookups count hits (and sum the values read), pairs count pairs done.
 * Both failure paths are out of line and cold, in every file that uses
 * them (static: as when each program had its own). */
struct tally {
	union {
		uint64_t hits; /* lookups */
		uint64_t done; /* pairs */
	};
	uint64_t misses, sum;
	bool failed;   /* an error other than "not found": the run stopped */
	size_t bad_at; /* first miss or error, index in the slice */
	char msg[200];
};

static __attribute__((noinline, cold, unused)) void tally_miss(struct tally *t, size_t i)
{
	if (t->misses++ == 0 && !t->failed)
		t->bad_at = i;
}

static __attribute__((noinline, cold, unused, format(printf, 3, 4))) void
tally_fail(struct tally *t, size_t i, const char *fmt, ...)
{
	va_list ap;
	t->failed = true;
	t->bad_at = i;
	va_start(ap, fmt);
	vsnprintf(t->msg, sizeof(t->msg), fmt, ap);
	va_end(ap);
}

/* ==== lookups (fdn-bench) ======================================================= */

#define LOOKUP_VAL_LEN 16u
#define LOOKUP_BATCH   64u    /* foundation_batched: lookups per section */
#define LMDB_RENEW     65536u /* lmdb: lookups per read transaction */
#define PIPE_DEPTH     64u    /* redis_pipelined: GETs per round trip */

struct lookup_key {
	char s[15]; /* "agent-%08d", NUL-terminated */
	uint8_t len;
};

static inline void lookup_key_make(struct lookup_key *k, uint64_t idx)
{
	memcpy(k->s, "agent-", 6);
	for (int d = 13; d >= 6; d--) {
		k->s[d] = (char)('0' + idx % 10);
		idx /= 10;
	}
	k->s[14] = 0;
	k->len = 14;
}

static inline uint64_t lookup_key_idx(const struct lookup_key *k)
{
	uint64_t idx = 0;
	for (int d = 6; d < 14; d++)
		idx = idx * 10 + (uint64_t)(k->s[d] - '0');
	return idx;
}

/* Key i's value: its first 8 bytes are i. */
static inline void lookup_value_make(unsigned char val[LOOKUP_VAL_LEN], uint64_t idx)
{
	uint64_t w[2] = {idx, ~idx};
	memcpy(val, w, LOOKUP_VAL_LEN);
}

static inline uint64_t load64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

/* Look up ks[0 .. m): t->hits, t->sum (of the values' first 8 bytes),
 * misses by tally_miss, errors by tally_fail. */
typedef void (*lookup_run_fn)(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t);

#define LOOKUP_VARIANTS 3 /* rows per system */

struct lookup_variant {
	const char *label; /* human table */
	const char *id;    /* JSON "systems" key */
	lookup_run_fn run;
	int share; /* 0: the whole slice; 1: --redis-lookups, 2: --redis-pipelined */
};

/* A system is built once per size on keys 0 .. n - 1 and kept while every
 * row answers both streams.  open returns 0, -1 on failure (said), or 1
 * when the system is not available (its rows say so); where records where
 * its memory lives (bench_memory, under row id). */
struct lookup_system {
	const char *name;
	int (*open)(void **ctx, uint64_t n);
	void (*close)(void *ctx);
	void (*where)(void *ctx, struct bench_result *r, const char *id);
	struct lookup_variant v[LOOKUP_VARIANTS]; /* v[k].id NULL after the last row */
};

extern const struct lookup_system sys_foundation_table;         /* sys_foundation.c */
extern const struct lookup_system sys_foundation_table_batched; /* sys_foundation.c */
extern const struct lookup_system sys_foundation_registry;      /* sys_foundation.c */
extern const struct lookup_system sys_foundation_whereis;       /* sys_foundation.c */
extern const struct lookup_system sys_foundation_view;          /* sys_foundation.c */
extern const struct lookup_system sys_foundation_local;         /* sys_foundation.c */
extern const struct lookup_system sys_plain_lookup;             /* sys_plain.c */
extern const struct lookup_system sys_lfht_lookup;              /* sys_lfht.c */
#ifdef HAVE_LMDB
extern const struct lookup_system sys_lmdb_lookup; /* sys_lmdb.c */
#endif
extern const struct lookup_system sys_redis_lookup; /* sys_redis.c */

/* ==== register + unregister pairs (fdn-bench-registry) ========================== */

#define KEY_CAP         32
#define IXKEY_CAP       96
#define ENC_CAP         128
#define NCAPS           8u
#define PAIR_BACKGROUND 10000u
#define PAIR_KEYS       4096u
#define RETIRE_BATCH    1024u /* cds_lfht: deletions per grace period */

struct key {
	char s[KEY_CAP];
	uint32_t len;
};

static inline void key_fmt(struct key *k, const char *prefix, uint64_t i)
{
	int n = snprintf(k->s, sizeof(k->s), "%s%08" PRIu64, prefix, i);
	k->len = (uint32_t)n;
}

/* In every file that uses them (static: the loops index them as when each
 * program had its own). */
static const char *const g_caps[NCAPS] = {"planner", "coder",   "reviewer",  "tester",
					  "search",  "summary", "translate", "deploy"};
static const char g_solo_cap[] = "solo-capability"; /* carried by no background entry */

static inline void attrs_cap_weight(struct fdn_attr a[2], const char *cap, uint64_t i)
{
	a[0] = (struct fdn_attr){.name = "capability", .type = FDN_ATTR_STRING};
	a[0].v.s = cap;
	a[1] = (struct fdn_attr){.name = "weight", .type = FDN_ATTR_INT};
	a[1].v.i = (int64_t)i;
}

/* Pair i's capability (variant 0). */
static inline const char *pair_cap(size_t i)
{
	return g_caps[i % NCAPS];
}

/* The record cds_lfht, LMDB and Redis keep: this header, then the encoded
 * attributes. */
struct rec_hdr {
	int32_t pid;
	uint32_t attrs_len;
	uint64_t registered_ns;
};

/* The record as LMDB and Redis store it: its length. */
static inline size_t rec_val(unsigned char *buf, const void *attrs, uint32_t alen)
{
	struct rec_hdr h = {g_pid, alen, real_ns()};
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), attrs, alen);
	return sizeof(h) + alen;
}

/* Background entry i: key "agent-%08d", capability g_caps[i % NCAPS],
 * weight i. */
static inline void pairs_background(struct key *k, struct fdn_attr a[2], uint64_t i)
{
	key_fmt(k, "agent-", i);
	attrs_cap_weight(a, g_caps[i % NCAPS], i);
}

/* Background entry i as LMDB and Redis store it: its key into k, its
 * record into val (sizeof(struct rec_hdr) + ENC_CAP bytes); the record's
 * length, or -1 (said). */
int pairs_background_rec(struct key *k, unsigned char *val, uint64_t i);

/* open: the background entries in a new instance, 0, -1 (said), or 1 when
 * the system is not available; run: pairs 0 .. pairs - 1 (keys[i %
 * PAIR_KEYS]), t->done counting them; check, after every run: only the
 * background is left, 0 or -1 (said). */
struct pairs_system {
	int (*open)(void **ctx);
	void (*run)(void *ctx, const struct key *keys, size_t pairs, int variant, struct tally *t);
	int (*check)(void *ctx);
	void (*close)(void *ctx);
};

extern const struct pairs_system sys_foundation_pairs; /* variant 1: g_solo_cap */
extern const struct pairs_system sys_lfht_pairs;       /* variant 1: with an index table */
#ifdef HAVE_LMDB
extern const struct pairs_system sys_lmdb_pairs; /* variant: pairs per write txn */
#endif
extern const struct pairs_system sys_redis_pairs; /* variant: pairs per round trip */

/* ==== sys_foundation.c: segments ================================================= */

struct seg {
	char name[96];
	fdn_segment *s;
	int shm_slot; /* bench_shm_track */
};

/* A new segment "<bench_prog>-<pid>-<tag>", tracked for the signal cleanup;
 * entries 0: the library's default sizing; heap 0: 1 KiB per entry.  0 or
 * -1 (said). */
int seg_create_sized(struct seg *g, const char *tag, uint64_t entries, uint64_t heap);
int seg_create(struct seg *g, const char *tag, uint64_t entries);
/* Wait for the segment's reaper (5 s at most): 0 or -1 (said). */
int seg_wait_reaper(struct seg *g);
/* Detach and destroy; destroy stops the segment's reaper (SIGTERM). */
void seg_close(struct seg *g);

/* ==== sys_lfht.c: this thread's liburcu registration ============================ */

/* Register this thread with urcu-memb once (the library's local backend
 * then uses this registration); unregister it if it was. */
void sys_urcu_register(void);
void sys_urcu_unregister(void);

/* ==== sys_redis.c: the server ==================================================== */

/* Stop the redis-server a system started, if any (at the program's end). */
void sys_redis_stop(void);

#endif
