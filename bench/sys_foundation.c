/*
 * bench/sys_foundation.c - Foundation as the benchmarks run it
 * (systems.h): private segments; for the lookups its raw shared table
 * (fdn__ht_lookup, one read-side section per lookup or 64 per section),
 * the registry API on a segment (fdn_lookup, fdn_whereis, fdn_lookup_view)
 * and on the process-local backend (s == NULL); for the pairs
 * fdn_register + fdn_unregister.
 */
#include "shm/shm.h"

#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/segment.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "systems.h"

/* ---- segments ---------------------------------------------------------------- */

int seg_create_sized(struct seg *g, const char *tag, uint64_t entries, uint64_t heap)
{
	snprintf(g->name, sizeof(g->name), "%s-%d-%s", bench_prog, (int)g_pid, tag);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	if (entries) {
		o.entries = entries;
		o.heap_bytes = heap ? heap : entries * 1024u + (8u << 20);
	}
	g->shm_slot = bench_shm_track(g->name);
	int r = fdn_segment_create(g->name, &o, &g->s);
	if (r) {
		bench_shm_untrack(g->shm_slot);
		g->name[0] = 0; /* a failed create removes what it made */
		return bench_fail("create segment: %s (%s)", fdn_strerror(r), fdn_errname(r));
	}
	return 0;
}

int seg_create(struct seg *g, const char *tag, uint64_t entries)
{
	return seg_create_sized(g, tag, entries, 0);
}

int seg_wait_reaper(struct seg *g)
{
	for (int i = 0; i < 500; i++) {
		pid_t p = fdn_reaper_holder(g->s);
		if (p) {
			bench_term_pid = p;
			return 0;
		}
		sleep_ns(10000000L);
	}
	return bench_fail("segment %s: no reaper after 5 s (FOUNDATION_REAPERD=%s)", g->name,
			  getenv("FOUNDATION_REAPERD"));
}

void seg_close(struct seg *g)
{
	pid_t reaper = g->s ? fdn_reaper_holder(g->s) : 0;
	if (g->s)
		fdn_segment_detach(g->s);
	g->s = NULL;
	if (g->name[0]) {
		int r = fdn_segment_destroy(g->name);
		if (r)
			bench_fail("destroy %s: %s", g->name, fdn_strerror(r));
	}
	if (g->name[0])
		bench_shm_untrack(g->shm_slot);
	g->name[0] = 0;
	for (int i = 0; i < 200 && reaper > 0 && kill(reaper, 0) == 0; i++)
		sleep_ns(10000000L);
	if (reaper > 0 && kill(reaper, 0) == 0)
		bench_fail("reaper %d still runs 2 s after the segment was destroyed", (int)reaper);
	bench_term_pid = 0;
}

/* The check's findings but notes, the first `limit` of them. */
struct check_say {
	const char *what;
	unsigned shown, limit;
};

static void check_cb(void *arg, const char *code, const char *message)
{
	struct check_say *c = arg;
	if (strcmp(code, "note") != 0 && c->shown++ < c->limit)
		bench_fail("%s: check: %s: %s", c->what, code, message);
}

/* ==== lookups ====================================================================== */

struct fsys {
	struct seg g; /* g.s NULL: the local backend */
	uint64_t n;   /* entries registered (the local backend's close) */
};

static void fsys_close(void *ctx)
{
	seg_close(&((struct fsys *)ctx)->g);
	free(ctx);
}

/* ---- the shared table ---- */

static int fsys_fill(struct fsys *c, uint64_t n)
{
	unsigned char val[LOOKUP_VAL_LEN];
	struct lookup_key k;
	for (uint64_t i = 0; i < n; i++) {
		lookup_key_make(&k, i);
		lookup_value_make(val, i);
		int r = fdn__ht_put(c->g.s, 0, k.s, k.len, val, LOOKUP_VAL_LEN, FDN_HT_UNIQUE, NULL,
				    NULL);
		if (r)
			return bench_fail("foundation: insert %s (%" PRIu64 " of %" PRIu64
					  "): %s (%s)",
					  k.s, i + 1, n, fdn_strerror(r), fdn_errname(r));
	}
	lookup_key_make(&k, 0);
	lookup_value_make(val, 0);
	int r = fdn__ht_put(c->g.s, 0, k.s, k.len, val, LOOKUP_VAL_LEN, FDN_HT_UNIQUE, NULL, NULL);
	if (r != FDN_EEXISTS)
		return bench_fail("foundation: second insert of %s: got %s, want %s", k.s,
				  fdn_errname(r), fdn_errname(FDN_EEXISTS));
	return 0;
}

static int fsys_verify(struct fsys *c, uint64_t n)
{
	int64_t cnt = fdn__ht_count(c->g.s, 0);
	if (cnt != (int64_t)n)
		return bench_fail(
		    "foundation: table count is %" PRId64 " after %" PRIu64 " inserts", cnt, n);
	struct check_say say = {"foundation", 0, 10};
	int r = fdn__seg_check(c->g.s, check_cb, &say);
	if (r < 0)
		return bench_fail("foundation: check: %s", fdn_strerror(r));
	if (r > 0)
		return bench_fail("foundation: check: %d violation(s) after filling", r);
	return 0;
}

/* Each row of fdn-bench has a segment of its own (tag names it): rows
 * sharing one would find each other's lines and TLB entries warm. */
static int fsys_open_tag(void **out, uint64_t n, const char *what)
{
	struct fsys *c = calloc(1, sizeof(*c));
	if (!c)
		return bench_fail("foundation: %s", strerror(errno));
	char tag[32];
	snprintf(tag, sizeof(tag), "%s%" PRIu64, what, n);
	if (seg_create_sized(&c->g, tag, n, n * 128u + (4u << 20))) {
		free(c);
		return -1;
	}
	if (fsys_fill(c, n) || fsys_verify(c, n)) {
		fsys_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

static int fsys_open(void **out, uint64_t n)
{
	return fsys_open_tag(out, n, "");
}

static int fsys_open_batched(void **out, uint64_t n)
{
	return fsys_open_tag(out, n, "b");
}

static void fsys_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->g.s;
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

static void fsys_run_batched(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->g.s;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m && !t->failed; i += LOOKUP_BATCH) {
		size_t end = m - i < LOOKUP_BATCH ? m : i + LOOKUP_BATCH;
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

/* Where a system's memory lives, for bench_memory (under row id). */
static void fsys_where(void *ctx, struct bench_result *r, const char *id)
{
	const struct fsys *c = ctx;
	bench_memory(r, id, "segment", c->g.s->base, (size_t)c->g.s->size);
}

const struct lookup_system sys_foundation_table = {
    "foundation",
    fsys_open,
    fsys_close,
    fsys_where,
    {{"foundation (raw table)", "foundation", fsys_run, 0}}};

const struct lookup_system sys_foundation_table_batched = {
    "foundation (64 per section)",
    fsys_open_batched,
    fsys_close,
    fsys_where,
    {{"foundation (raw table, 64 per section)", "foundation_batched", fsys_run_batched, 0}}};

/* ---- the registry API ---- */

/* A registry entry's value is one int attribute "v" = i; its encoding ends
 * with the 8 bytes of i (checked when the segment is filled). */
static int freg_fill(struct fsys *c, uint64_t n)
{
	pid_t me = getpid();
	for (uint64_t i = 0; i < n; i++) {
		struct lookup_key k;
		struct fdn_attr a = {.name = "v", .type = FDN_ATTR_INT, .v.i = (int64_t)i};
		lookup_key_make(&k, i);
		int r = fdn_register(c->g.s, k.s, k.len, me, &a, 1, 0, NULL);
		if (r)
			return bench_fail("fdn_register %s: %s (%s)", k.s, fdn_strerror(r),
					  fdn_errname(r));
	}
	int64_t cnt = fdn_count(c->g.s);
	if (cnt != (int64_t)n)
		return bench_fail("fdn_count is %" PRId64 " after %" PRIu64 " registers", cnt, n);
	struct lookup_key k;
	struct fdn_entry e;
	lookup_key_make(&k, n - 1);
	int r = fdn_lookup(c->g.s, k.s, k.len, 0, &e);
	if (r || e.attrs_len < 8 || load64(e.attrs + e.attrs_len - 8) != n - 1)
		return bench_fail("fdn_lookup %s: %s, or its attribute does not end "
				  "with the value",
				  k.s, r ? fdn_strerror(r) : "found");
	return 0;
}

static int freg_open_tag(void **out, uint64_t n, const char *what)
{
	struct fsys *c = calloc(1, sizeof(*c));
	if (!c)
		return bench_fail("foundation: %s", strerror(errno));
	char tag[32];
	snprintf(tag, sizeof(tag), "%s-%" PRIu64, what, n);
	if (seg_create_sized(&c->g, tag, n, n * 256u + (8u << 20))) {
		free(c);
		return -1;
	}
	if (freg_fill(c, n)) {
		fsys_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

static int freg_open(void **out, uint64_t n)
{
	return freg_open_tag(out, n, "reg");
}

static int freg_open_whereis(void **out, uint64_t n)
{
	return freg_open_tag(out, n, "whereis");
}

static int freg_open_view(void **out, uint64_t n)
{
	return freg_open_tag(out, n, "view");
}

/* fdn_whereis: every hit must name this process; the value summed is the
 * key's index (the registry holds no value fdn_whereis reads). */
static void freg_whereis_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->g.s;
	uint64_t hits = 0, sum = 0;
	pid_t me = getpid();
	for (size_t i = 0; i < m; i++) {
		pid_t pid;
		int r = fdn_whereis(seg, ks[i].s, ks[i].len, &pid);
		if (r == 0 && pid == me) {
			hits++;
			sum += lookup_key_idx(&ks[i]);
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

static void freg_view_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->g.s;
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

static void freg_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	fdn_segment *seg = ((struct fsys *)ctx)->g.s;
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

const struct lookup_system sys_foundation_registry = {
    "foundation (fdn_lookup)",
    freg_open,
    fsys_close,
    fsys_where,
    {{"foundation (registry API, fdn_lookup)", "foundation_registry", freg_run, 0}}};

const struct lookup_system sys_foundation_whereis = {
    "foundation (fdn_whereis)",
    freg_open_whereis,
    fsys_close,
    fsys_where,
    {{"foundation (registry API, fdn_whereis)", "foundation_whereis", freg_whereis_run, 0}}};

const struct lookup_system sys_foundation_view = {
    "foundation (fdn_lookup_view)",
    freg_open_view,
    fsys_close,
    fsys_where,
    {{"foundation (registry API, fdn_lookup_view)", "foundation_view", freg_view_run, 0}}};

/* ---- the local backend: the same API, no segment ---- */

/* With s == NULL every registry call uses the process-local backend (a
 * liburcu cds_lfht in this process's memory): the same fill, the same run. */
static void flocal_close(void *ctx)
{
	struct fsys *c = ctx;
	for (uint64_t i = 0; i < c->n; i++) {
		struct lookup_key k;
		lookup_key_make(&k, i);
		fdn_unregister(NULL, k.s, k.len);
	}
	free(c);
}

static int flocal_open(void **out, uint64_t n)
{
	struct fsys *c = calloc(1, sizeof(*c));
	if (!c)
		return bench_fail("foundation (local): %s", strerror(errno));
	c->n = n;
	if (freg_fill(c, n)) {
		flocal_close(c);
		return -1;
	}
	*out = c;
	return 0;
}

static void flocal_where(void *ctx, struct bench_result *r, const char *id)
{
	(void)ctx; /* the library's cds_lfht nodes: its heap, not reachable here */
	bench_memory(r, id, "library heap", NULL, 0);
}

const struct lookup_system sys_foundation_local = {
    "foundation (local backend)",
    flocal_open,
    flocal_close,
    flocal_where,
    {{"foundation (local backend)", "foundation_local", freg_run, 0}, {0}}};

/* ==== register + unregister pairs ================================================== */

static int fs_pairs_open(void **out)
{
	struct seg *g = calloc(1, sizeof(*g));
	if (!g)
		return bench_fail("foundation: %s", strerror(errno));
	static unsigned seq; /* two rows, two segments open at once */
	char tag[32];
	snprintf(tag, sizeof(tag), "pairs-%u", seq++);
	if (seg_create(g, tag, PAIR_BACKGROUND + PAIR_KEYS)) {
		free(g);
		return -1;
	}
	for (uint64_t i = 0; i < PAIR_BACKGROUND; i++) {
		struct key k;
		struct fdn_attr a[2];
		pairs_background(&k, a, i);
		int r = fdn_register(g->s, k.s, k.len, g_pid, a, 2, 0, NULL);
		if (r) {
			seg_close(g);
			free(g);
			return bench_fail("foundation: register %s: %s", k.s, fdn_strerror(r));
		}
	}
	*out = g;
	return 0;
}

static void fs_pairs_run(void *ctx, const struct key *keys, size_t pairs, int variant,
			 struct tally *t)
{
	fdn_segment *s = ((struct seg *)ctx)->s;
	for (size_t i = 0; i < pairs; i++) {
		const struct key *k = &keys[i % PAIR_KEYS];
		struct fdn_attr a[2];
		attrs_cap_weight(a, variant ? g_solo_cap : pair_cap(i), i);
		int r = fdn_register(s, k->s, k->len, g_pid, a, 2, 0, NULL);
		if (r) {
			tally_fail(t, i, "fdn_register %s: %s (%s)", k->s, fdn_strerror(r),
				   fdn_errname(r));
			return;
		}
		r = fdn_unregister(s, k->s, k->len);
		if (r) {
			tally_fail(t, i, "fdn_unregister %s: %s (%s)", k->s, fdn_strerror(r),
				   fdn_errname(r));
			return;
		}
		t->done++;
	}
}

static int fs_pairs_check(void *ctx)
{
	fdn_segment *s = ((struct seg *)ctx)->s;
	int64_t cnt = fdn_count(s);
	if (cnt != PAIR_BACKGROUND)
		return bench_fail("register_unregister: foundation: %" PRId64
				  " entries left, expected %u",
				  cnt, PAIR_BACKGROUND);
	struct check_say say = {"register_unregister: foundation", 0, 5};
	int r = fdn_segment_check(s, check_cb, &say);
	if (r)
		return bench_fail("register_unregister: foundation: check: %d (%s)", r,
				  r < 0 ? fdn_strerror(r) : "violations");
	return 0;
}

static void fs_pairs_close(void *ctx)
{
	seg_close(ctx);
	free(ctx);
}

const struct pairs_system sys_foundation_pairs = {fs_pairs_open, fs_pairs_run, fs_pairs_check,
						  fs_pairs_close};
