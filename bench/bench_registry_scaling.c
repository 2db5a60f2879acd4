/* bench/bench_registry_scaling.c - fdn-bench-registry's read_scaling,
 * read_under_churn and memory (scenarios 3 and 4 of bench_registry.c):
 * forked readers with and without a writer; bytes per entry. */
#include "bench_registry.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STREAM_SEED 0x2545F4914F6CDD1Dull

/* ==== 4. read scaling ================================================================ */

#define SCALE_STREAM    (1u << 18) /* keys per reader, looked up cyclically */
#define SCALE_MAX_PROCS 14         /* readers, at most: with the control's 2 rows, BENCH_MAX_SYS */
#define SCALE_CHURN     4096u      /* keys the writer cycles through */
#define CHURN_TARGET    0.9        /* readers beside a writer keep this share of their rate */
#define WRITER_TARGET   1e5        /* the writer's pairs/s beside 2 readers */

struct scale_slot {
	_Alignas(64) uint64_t ops, ns;
	int err; /* 0, or a Foundation error; misses: FDN_ENOTFOUND */
	char key[KEY_CAP];
};

struct scale_page {
	_Atomic int ready, go, stop;
	struct scale_slot w[SCALE_MAX_PROCS + 1]; /* readers, then the writer */
};

/* A process that could not get ready: its error, counted as ready so
 * that the parent does not wait for it. */
static __attribute__((noreturn)) void scale_unready(struct scale_page *pg, struct scale_slot *me,
						    int err)
{
	me->err = err;
	atomic_fetch_add(&pg->ready, 1);
	_exit(1);
}

/* What every process of a window does once set up -- each reader, the
 * writer, the spinner: say it is ready, wait for go, then step until stop
 * or an error; its operations, its time and the error into its slot, and
 * exit.  step does some operations, adds them to *done, and returns 0 or
 * an error (having put the key into its slot). */
typedef int (*scale_step_fn)(void *arg, uint64_t *done);

static __attribute__((noreturn)) void scale_window(struct scale_page *pg, struct scale_slot *me,
						   scale_step_fn step, void *arg, fdn_segment *s)
{
	atomic_fetch_add(&pg->ready, 1);
	while (!atomic_load(&pg->go))
		sleep_ns(20000L);
	uint64_t t0 = bench_mono_ns(), ops = 0;
	int r = 0;
	while (!atomic_load_explicit(&pg->stop, memory_order_relaxed) && r == 0)
		r = step(arg, &ops);
	me->ns = bench_mono_ns() - t0;
	me->ops = ops;
	me->err = r;
	if (s)
		fdn_segment_detach(s);
	_exit(r ? 1 : 0);
}

/* The control reader: the same stream of the same keys in the plain
 * open-addressing table (sys_plain.c) the parent built before forking, so
 * that every reader reads the same physical pages, as the registry's
 * readers do: what 2 readers make of 1 without any registry. */
struct plain_reader {
	void *plain;
	const struct lookup_key *keys;
	struct scale_slot *me;
};

static int plain_step(void *arg, uint64_t *done)
{
	struct plain_reader *p = arg;
	struct tally t = {0};
	const struct lookup_key *k = &p->keys[*done % SCALE_STREAM]; /* 1024 divides it */
	sys_plain_lookup.v[0].run(p->plain, k, 1024, &t);
	*done += 1024;
	if (t.hits == 1024)
		return 0;
	memcpy(p->me->key, k[t.bad_at].s, k[t.bad_at].len + 1u);
	return FDN_ENOTFOUND;
}

static __attribute__((noreturn)) void scale_plain_reader(void *plain, struct scale_page *pg,
							 unsigned i, uint64_t n)
{
	struct scale_slot *me = &pg->w[i];
	struct lookup_key *keys = malloc(SCALE_STREAM * sizeof(*keys));
	if (!keys)
		scale_unready(pg, me, -ENOMEM);
	uint64_t seed = STREAM_SEED + i;
	for (size_t j = 0; j < SCALE_STREAM; j++)
		lookup_key_make(&keys[j], bench_xorshift64(&seed) % n);
	struct plain_reader p = {plain, keys, me};
	scale_window(pg, me, plain_step, &p, NULL);
}

/* A registry reader: fdn_lookup of its stream, 1024 at a time; every hit
 * must name this benchmark's process. */
struct reg_reader {
	fdn_segment *s;
	const struct key *keys;
	struct scale_slot *me;
};

static int reg_step(void *arg, uint64_t *done)
{
	struct reg_reader *p = arg;
	struct fdn_entry e;
	int r = 0;
	for (size_t j = 0; j < 1024 && r == 0; j++) {
		const struct key *k = &p->keys[(*done + j) % SCALE_STREAM];
		r = fdn_lookup(p->s, k->s, k->len, 0, &e);
		if (r == 0 && e.pid != g_pid)
			r = FDN_ECORRUPT;
		if (r)
			memcpy(p->me->key, k->s, k->len + 1);
	}
	*done += 1024;
	return r;
}

static __attribute__((noreturn)) void scale_reader(const char *name, struct scale_page *pg,
						   unsigned i, uint64_t n)
{
	struct scale_slot *me = &pg->w[i];
	fdn_segment *s;
	struct key *keys = malloc(SCALE_STREAM * sizeof(*keys));
	int r = keys ? fdn_segment_attach(name, 0, &s) : -ENOMEM;
	if (r)
		scale_unready(pg, me, r);
	uint64_t seed = STREAM_SEED + i;
	for (size_t j = 0; j < SCALE_STREAM; j++)
		key_fmt(&keys[j], "agent-", bench_xorshift64(&seed) % n);
	/* Its whole stream once before its window: a process that has just
	 * attached takes a minor fault on its first touch of each page (1 000
	 * 000 entries: about 45 000 pages), and two readers attached together
	 * take them on the same pages at once.  Inside the window, 2 readers
	 * made 1.54 and 1.55 x one in two runs while the plain table's readers,
	 * whose page tables fork copied, made 1.95 and 1.81.  The rates are
	 * now those of readers that have been running, as the control's are.
	 * (MADV_POPULATE_READ of the mapping would also allocate every page of
	 * the segment's unused heap.) */
	struct reg_reader p = {s, keys, me};
	uint64_t warm = 0;
	for (size_t j = 0; j < SCALE_STREAM / 1024 && r == 0; j++)
		r = reg_step(&p, &warm);
	if (r)
		scale_unready(pg, me, r);
	scale_window(pg, me, reg_step, &p, s);
}

/* The writer: register + unregister pairs over SCALE_CHURN keys. */
struct churn_writer {
	fdn_segment *s;
	const struct key *keys;
	struct scale_slot *me;
	pid_t pid;
};

static int churn_step(void *arg, uint64_t *done)
{
	struct churn_writer *p = arg;
	const struct key *k = &p->keys[*done % SCALE_CHURN];
	struct fdn_attr a[2];
	attrs_cap_weight(a, g_caps[*done % NCAPS], *done);
	int r = fdn_register(p->s, k->s, k->len, p->pid, a, 2, 0, NULL);
	if (r == 0)
		r = fdn_unregister(p->s, k->s, k->len);
	if (r)
		memcpy(p->me->key, k->s, k->len + 1);
	++*done;
	return r;
}

static __attribute__((noreturn)) void scale_writer(const char *name, struct scale_page *pg,
						   unsigned i)
{
	struct scale_slot *me = &pg->w[i];
	fdn_segment *s;
	struct key *keys = malloc(SCALE_CHURN * sizeof(*keys));
	int r = keys ? fdn_segment_attach(name, 0, &s) : -ENOMEM;
	if (r)
		scale_unready(pg, me, r);
	for (unsigned j = 0; j < SCALE_CHURN; j++)
		key_fmt(&keys[j], "churn-", j);
	struct churn_writer p = {s, keys, me, getpid()};
	scale_window(pg, me, churn_step, &p, s);
}

/* The control for read_under_churn: a process that only burns CPU (it
 * never maps the segment).  What a reader loses beside it is the
 * machine's (a CPU shared with a sibling thread or another guest), not
 * the registry's. */
static int spin_step(void *arg, uint64_t *done)
{
	volatile uint64_t *x = arg;
	for (int j = 0; j < 1000; j++)
		*x = *x * 6364136223846793005ull + 1442695040888963407ull;
	++*done;
	return 0;
}

static __attribute__((noreturn)) void scale_spinner(struct scale_page *pg, unsigned i)
{
	volatile uint64_t x = 1;
	scale_window(pg, &pg->w[i], spin_step, (void *)&x, NULL);
}

struct scale_run {
	struct seg g;
	void *plain; /* the control's table (sys_plain.c), or NULL */
	struct scale_page *pg;
	uint64_t n;
	long window_ns;
};

/* What runs beside the readers; BESIDE_PLAIN: nothing, and the readers
 * read the plain table instead (the control of read_scaling). */
enum { BESIDE_NONE, BESIDE_WRITER, BESIDE_SPINNER, BESIDE_KINDS, BESIDE_PLAIN = BESIDE_KINDS };

/* One window: readers reader processes (and a writer or a spinner) forked,
 * started together, stopped after the window.  Sum of the readers'
 * lookups/s, and the writer's pairs/s. */
static int scale_once(struct scale_run *sr, unsigned readers, int beside, double *rate,
		      double *wrate)
{
	bool churn = beside == BESIDE_WRITER || beside == BESIDE_SPINNER;
	struct scale_page *pg = sr->pg;
	memset(pg, 0, sizeof(*pg));
	unsigned nproc = readers + (churn ? 1u : 0u);
	pid_t pids[SCALE_MAX_PROCS + 1];
	unsigned started = 0;
	int r = 0;
	for (unsigned i = 0; i < nproc; i++) {
		unsigned slot = i < readers ? i : SCALE_MAX_PROCS;
		pid_t p = fork();
		if (p < 0) {
			r = bench_fail("read_scaling: fork: %s", strerror(errno));
			break;
		}
		if (p == 0) {
			bench_set_signals(SIG_DFL);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != g_pid)
				_exit(1);
			if (i < readers && beside == BESIDE_PLAIN)
				scale_plain_reader(sr->plain, pg, slot, sr->n);
			if (i < readers)
				scale_reader(sr->g.name, pg, slot, sr->n);
			if (beside == BESIDE_SPINNER)
				scale_spinner(pg, slot);
			scale_writer(sr->g.name, pg, slot);
		}
		pids[started++] = p;
	}
	uint64_t t0 = bench_mono_ns();
	while (r == 0 && (unsigned)atomic_load(&pg->ready) < nproc) {
		if (bench_mono_ns() - t0 > 30000000000ull)
			r = bench_fail("read_scaling: children not ready after 30 s");
		sleep_ns(100000L);
	}
	atomic_store(&pg->go, 1);
	if (r == 0)
		sleep_ns(sr->window_ns);
	atomic_store(&pg->stop, 1);
	for (unsigned i = 0; i < started; i++) {
		int st;
		while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
			;
		if (r == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			const struct scale_slot *w = &pg->w[i < readers ? i : SCALE_MAX_PROCS];
			r = bench_fail("read_scaling: %s %d failed: %s (key %s)",
				       i < readers ? "reader" : "writer", (int)pids[i],
				       w->err ? fdn_strerror(w->err) : "no error recorded",
				       w->key[0] ? w->key : "-");
		}
	}
	*rate = 0;
	for (unsigned i = 0; i < readers; i++)
		if (pg->w[i].ns)
			*rate += (double)pg->w[i].ops * 1e9 / (double)pg->w[i].ns;
	const struct scale_slot *w = &pg->w[SCALE_MAX_PROCS];
	*wrate = beside == BESIDE_WRITER && w->ns ? (double)w->ops * 1e9 / (double)w->ns : 0;
	return r;
}

int scenario_scaling(const struct opts *o)
{
	struct scale_run sr = {.n = o->scale_entries, .window_ns = o->scale_ms * 1000000L};
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned maxr = ncpu > 2 ? (unsigned)ncpu : 2u;
	if (maxr > SCALE_MAX_PROCS)
		maxr = SCALE_MAX_PROCS;
	sr.pg =
	    mmap(NULL, sizeof(*sr.pg), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sr.pg == MAP_FAILED)
		return bench_fail("mmap: %s", strerror(errno));
	int r = seg_create(&sr.g, "scaling", sr.n + SCALE_CHURN);
	for (uint64_t i = 0; r == 0 && i < sr.n; i++) {
		/* One attribute, not indexed: a value indexed for a million
		 * entries makes each insert walk 1/32 of them (README). */
		struct key k;
		struct fdn_attr a = {.name = "weight", .type = FDN_ATTR_INT, .v.i = (int64_t)i};
		key_fmt(&k, "agent-", i);
		r = fdn_register(sr.g.s, k.s, k.len, g_pid, &a, 1, 0, NULL);
		if (r)
			r = bench_fail("read_scaling: register %s: %s", k.s, fdn_strerror(r));
	}
	if (r == 0 && sys_plain_lookup.open(&sr.plain, sr.n))
		r = -1;
	/* Every configuration once per round -- k readers beside nothing, the
	 * writer or the spinner, then 1 and 2 readers of the plain table (the
	 * control) -- in an order that rotates from round to round, as
	 * bench_rounds_run runs systems: a burst of load from elsewhere lands
	 * on one round, and each ratio is taken within a round.  rate: the
	 * readers' lookups/s, wr: the writer's pairs/s, [round][config]. */
	unsigned ncfg = maxr * BESIDE_KINDS + 2, R = (unsigned)o->scale_rounds;
	double *rate = calloc((size_t)R * ncfg, sizeof(*rate));
	double *wr = calloc((size_t)R * ncfg, sizeof(*wr));
	double *m = calloc((size_t)R * ncfg, sizeof(*m));
	if (r == 0 && (!rate || !wr || !m))
		r = bench_fail("read_scaling: %s", strerror(ENOMEM));
	uint64_t t0 = bench_mono_ns();
	for (unsigned rd = 0; rd < R && r == 0; rd++) {
		for (unsigned j = 0; j < ncfg && r == 0; j++) {
			unsigned c = (rd + j) % ncfg, p = maxr * BESIDE_KINDS;
			r = scale_once(&sr, c < p ? c / BESIDE_KINDS + 1 : c - p + 1,
				       c < p ? (int)(c % BESIDE_KINDS) : BESIDE_PLAIN,
				       &rate[(size_t)rd * ncfg + c], &wr[(size_t)rd * ncfg + c]);
		}
	}
	double round_ms = R ? (double)(bench_mono_ns() - t0) / 1e6 / R : 0;
	if (r == 0 && fdn_count(sr.g.s) != (int64_t)sr.n)
		r = bench_fail("read_scaling: %" PRId64
			       " entries after the churn, expected %" PRIu64,
			       fdn_count(sr.g.s), sr.n);
	seg_close(&sr.g);
	if (sr.plain)
		sys_plain_lookup.close(sr.plain);
	munmap(sr.pg, sizeof(*sr.pg));
	if (r) {
		free(rate);
		free(wr);
		free(m);
		return r;
	}
#define CFG(k, b)                                                          \
	((b) == BESIDE_PLAIN ? (size_t)maxr * BESIDE_KINDS + (size_t)(k)-1 \
			     : (size_t)((k)-1) * BESIDE_KINDS + (size_t)(b))
	char how[160];
	snprintf(how, sizeof(how),
		 "%u rounds, each every configuration once (%u) in rotating order, windows of %ld "
		 "ms, %.0f ms per round",
		 R, ncfg, o->scale_ms, round_ms);
	static const char *const rid[] = {"readers_1",  "readers_2",  "readers_3",  "readers_4",
					  "readers_5",  "readers_6",  "readers_7",  "readers_8",
					  "readers_9",  "readers_10", "readers_11", "readers_12",
					  "readers_13", "readers_14", "readers_15", "readers_16"};
	static const char *const rlabel[] = {
	    "1 reader process",    "2 reader processes",  "3 reader processes",
	    "4 reader processes",  "5 reader processes",  "6 reader processes",
	    "7 reader processes",  "8 reader processes",  "9 reader processes",
	    "10 reader processes", "11 reader processes", "12 reader processes",
	    "13 reader processes", "14 reader processes", "15 reader processes",
	    "16 reader processes"};
	for (int churn = 0; churn < 2; churn++) {
		int b = churn ? BESIDE_WRITER : BESIDE_NONE;
		struct bench_result res;
		bench_result_init(&res, "read_scaling", BENCH_RATE, "lookups_per_s", "lookups/s");
		bench_title(&res,
			    "fdn_lookup from 1..%u forked processes, %" PRIu64
			    " entries, %s, %ld ms windows, medians of %u interleaved rounds, %ld "
			    "CPUs",
			    maxr, sr.n, churn ? "one writer process churning" : "no writer",
			    o->scale_ms, R, ncpu);
		bench_param(&res, "entries", "%" PRIu64, sr.n);
		bench_param(&res, "writer", "%s", churn ? "true" : "false");
		bench_param(&res, "window_ms", "%ld", o->scale_ms);
		bench_param(&res, "cpus", "%ld", ncpu);
		bench_param(&res, "rounds", "%u", R);
		/* Without a writer, the plain table's 1 and 2 readers too. */
		unsigned nrow = churn ? maxr : maxr + 2;
		struct bench_sys *row[SCALE_MAX_PROCS + 2];
		for (unsigned c = 0; c < nrow; c++) {
			bool plain = c >= maxr;
			unsigned k = plain ? c - maxr + 1 : c + 1;
			row[c] =
			    plain ? bench_add(&res, k == 1 ? "plain_readers_1" : "plain_readers_2",
					      k == 1 ? "plain table, 1 reader"
						     : "plain table, 2 readers")
				  : bench_add(&res, rid[k - 1], rlabel[k - 1]);
			for (unsigned rd = 0; rd < R; rd++)
				m[(size_t)rd * nrow + c] =
				    rate[(size_t)rd * ncfg + CFG(k, plain ? BESIDE_PLAIN : b)];
		}
		bench_rates_fill(&res, row, m, R, nrow);
		snprintf(res.how, sizeof(res.how), "%s", how);
		if (!churn) {
			bench_target_ratio(&res, "readers_2", "readers_1", 1.8);
			bench_show_ratio(&res, "plain_readers_2", "plain_readers_1");
		}
		bench_emit(&res);
	}
	for (unsigned k = 1; k <= maxr; k++) {
		/* The writer's pairs/s: the median of its windows. */
		for (unsigned rd = 0; rd < R; rd++)
			m[rd] = wr[(size_t)rd * ncfg + CFG(k, BESIDE_WRITER)];
		double wmed = bench_quantile(m, R, 0.5);
		struct bench_result res;
		bench_result_init(&res, "read_under_churn", BENCH_RATE, "lookups_per_s",
				  "lookups/s");
		bench_title(&res,
			    "%u reader process%s, %" PRIu64
			    " entries, without and with one writer (%.0f register+unregister "
			    "pairs/s)",
			    k, k == 1 ? "" : "es", sr.n, wmed);
		bench_param(&res, "entries", "%" PRIu64, sr.n);
		bench_param(&res, "readers", "%u", k);
		bench_param(&res, "writer_pairs_per_s", "%.0f", wmed);
		bench_param(&res, "cpus", "%ld", ncpu);
		bench_param(&res, "rounds", "%u", R);
		static const char *const bid[] = {"no_writer", "writer_churning", "spinner"};
		static const char *const blabel[] = {"readers, no writer",
						     "readers, one writer churning",
						     "readers, one process spinning (no segment)"};
		struct bench_sys *row[BESIDE_KINDS];
		for (int b = 0; b < BESIDE_KINDS; b++) {
			row[b] = bench_add(&res, bid[b], blabel[b]);
			for (unsigned rd = 0; rd < R; rd++)
				m[(size_t)rd * BESIDE_KINDS + (size_t)b] =
				    rate[(size_t)rd * ncfg + CFG(k, b)];
		}
		bench_rates_fill(&res, row, m, R, BESIDE_KINDS);
		snprintf(res.how, sizeof(res.how), "%s", how);
		/* The ratio is judged while the writer has a CPU of its own; beyond
		 * that the spinner's row shows what the CPUs' sharing costs. */
		if (k < (unsigned)ncpu)
			bench_target_ratio(&res, "writer_churning", "no_writer", CHURN_TARGET);
		if (k == 2)
			bench_target(&res, "writer_pairs_per_s", wmed, false, WRITER_TARGET);
		bench_emit(&res);
	}
#undef CFG
	free(rate);
	free(wr);
	free(m);
	return 0;
}

/* ==== 5. memory per entry ============================================================= */

#define MEM_ATTRS 64u /* encoded attribute bytes per entry */

int scenario_memory(const struct opts *o)
{
	uint64_t n = o->mem_entries;
	/* One string attribute, not indexed, its value sized so that the
	 * encoding is exactly MEM_ATTRS bytes. */
	char val[MEM_ATTRS + 1];
	unsigned char enc[ENC_CAP];
	struct fdn_attr a = {.name = "meta", .type = FDN_ATTR_STRING, .v.s = val};
	memset(val, 'm', 1);
	val[1] = 0;
	int base = fdn_attrs_encode(&a, 1, enc, sizeof(enc));
	if (base < 0 || (unsigned)base > MEM_ATTRS)
		return bench_fail("memory: encode: %s", base < 0 ? fdn_strerror(base) : "too long");
	size_t vlen = MEM_ATTRS - (unsigned)base + 1;
	memset(val, 'm', vlen);
	val[vlen] = 0;
	if (fdn_attrs_encode(&a, 1, enc, sizeof(enc)) != (int)MEM_ATTRS)
		return bench_fail("memory: a %zu-byte value does not encode to %u bytes", vlen,
				  MEM_ATTRS);
	struct seg g = {0};
	struct fdn_segment_stats before, after;
	if (seg_create_sized(&g, "memory", n, n * 512u + (16u << 20)))
		return -1;
	int r = fdn_segment_stats(g.s, &before);
	uint32_t klen = 0;
	for (uint64_t i = 0; r == 0 && i < n; i++) {
		struct key k;
		key_fmt(&k, "agent-", i);
		klen = k.len;
		r = fdn_register(g.s, k.s, k.len, g_pid, &a, 1, 0, NULL);
		if (r)
			r = bench_fail("memory: register %s: %s (%s)", k.s, fdn_strerror(r),
				       fdn_errname(r));
	}
	if (r == 0 && (r = fdn_segment_stats(g.s, &after)))
		r = bench_fail("memory: stats: %s", fdn_strerror(r));
	seg_close(&g);
	if (r)
		return -1;
	double payload = (double)(klen + MEM_ATTRS);
	double blocks = (double)(after.block_bytes_used - before.block_bytes_used) / (double)n;
	double nblocks = (double)(after.blocks_used - before.blocks_used) / (double)n;
	double pages =
	    (double)(after.heap_pages_used - before.heap_pages_used) * 65536.0 / (double)n;
	/* The state words of every granule of the pages claimed (the region
	 * has one per granule of the heap; those of unclaimed pages are not
	 * in use). */
	double state = pages / 64.0 * 8.0; /* FDN_GRANULE, shm/layout.h */
	double main_buckets = (double)after.tables[0].buckets * 8.0 / (double)n, all_buckets = 0;
	for (uint32_t t = 0; t < after.ntables && t < FDN_STATS_MAX_TABLES; t++)
		all_buckets += (double)after.tables[t].buckets * 8.0 / (double)n;
	struct bench_result res;
	bench_result_init(&res, "memory", BENCH_BYTES, "bytes_per_entry", "bytes/entry");
	bench_title(&res,
		    "%" PRIu64
		    " entries, %u-byte keys, %u bytes of encoded attributes (one string, "
		    "not indexed); %.2f blocks per entry",
		    n, klen, MEM_ATTRS, nblocks);
	bench_param(&res, "entries", "%" PRIu64, n);
	bench_param(&res, "key_bytes", "%u", klen);
	bench_param(&res, "attr_bytes", "%u", MEM_ATTRS);
	bench_param(&res, "blocks_per_entry", "%.3f", nblocks);
	bench_param(&res, "tables", "%u", after.ntables);
	bench_add(&res, "payload", "payload: key + attribute bytes")->v[0] = payload;
	bench_add(&res, "foundation_blocks", "foundation: allocated blocks")->v[0] = blocks;
	bench_add(&res, "foundation_blocks_main_buckets", "foundation: blocks + main-table buckets")
	    ->v[0] = blocks + main_buckets;
	bench_add(&res, "foundation_used", "foundation: blocks + all bucket arrays")->v[0] =
	    blocks + all_buckets;
	bench_add(&res, "foundation_used_state", "foundation: used + block state words")->v[0] =
	    blocks + all_buckets + state;
	bench_add(&res, "foundation_pages", "foundation: heap pages claimed")->v[0] = pages;
	bench_add(&res, "target_limit", "target: 1.5 x payload + 64")->v[0] = 1.5 * payload + 64.0;
	bench_target(&res, "foundation_used_state", blocks + all_buckets + state, true,
		     1.5 * payload + 64.0);
	bench_emit(&res);
	return 0;
}
