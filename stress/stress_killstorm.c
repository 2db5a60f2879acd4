/*
 * stress_killstorm - 16 writer processes register, update, merge and
 * unregister their own keys without pause; every 10-100 ms one of them,
 * chosen at random, is SIGKILLed and replaced by a new process.
 *
 * Each writer keeps a journal of what it committed in memory shared with
 * the parent (it survives the writer's death): per key, the version its
 * last completed operation left (0 = absent) and the version whose
 * register/update set the attributes a merge keeps.  Once a second the
 * parent brings the segment to a quiescent point (writers parked between
 * two operations, every death reaped, the reaper asleep: stress.h) and
 * asserts, exactly:
 *   - the checker finds no violation and no leaked block;
 *   - every live writer's journal is what the registry holds: each key
 *     present with its pid and all five attributes as committed, or absent;
 *     the index finds exactly its present keys by its `node` value;
 *   - no key of a killed writer remains, visible or not (raw table lookup);
 *   - fdn_count and the main table's own counter equal the journals' sum.
 * At the end the survivors are killed too and the registry must be empty.
 *
 * Operations are one switch (do_op).  Besides the registry's four, a
 * writer moves its span stack to a random depth 0..6 (ending or starting
 * nested spans: it is usually killed with spans open), merges an
 * attribute into its error context, and emits a telemetry event.  Their
 * trace slots must be freed by the reaper when they die (the checker's
 * trace audit reports a slot whose owner has no process slot), no trace
 * slot may belong to anything but a live writer, and the graveyard's count
 * of thread copies must grow with the kills.
 */
#include "stress.h"

#include <foundation/context.h>
#include <foundation/spans.h>
#include <foundation/telemetry.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_WRITERS 64
#define KEYS        24

enum op_kind {
	OP_REGISTER,
	OP_UPDATE,
	OP_MERGE,
	OP_UNREGISTER,
	OP_SPAN,    /* move the span stack to depth v % 7 (nested start/end) */
	OP_CONTEXT, /* merge an attribute into the error context */
	OP_EVENT,   /* fdn_emit */
	OP_KINDS
};

struct kv {
	uint32_t version; /* 0 = absent */
	uint32_t base;    /* version of the last register/update */
};

/* One writer position's journal (MAP_SHARED: survives the writer). */
struct journal {
	_Atomic uint32_t inc;    /* incarnation writing here */
	_Atomic int parked;      /* between two ops, waiting for the parent */
	_Atomic int32_t pending; /* key of the op in flight, -1 = none */
	uint32_t pad;
	struct kv committed[KEYS];
	_Atomic uint64_t ops;
};

struct control {
	_Atomic int pause;
	_Atomic int stop;
};

static struct st_opts opts = {.seconds = 10};
static int nwriters = 16;
static uint64_t kill_min_ms = 10, kill_max_ms = 100;

static const char usage_text[] =
    "usage: stress_killstorm [--seconds N] [--writers N] [--kill-ms MIN,MAX] [--seed N]\n"
    "\n"
    "Writer processes register, update, merge and unregister their keys without\n"
    "pause while one of them, at random, is SIGKILLed every MIN..MAX ms and\n"
    "replaced.  Once a second: the checker, and every live writer's journal\n"
    "against the registry, and no key of a killed writer left.  Runs the real\n"
    "foundation-reaperd ($FOUNDATION_REAPERD).\n"
    "\n"
    "  --seconds N       run time (default 10; soak: 600)\n"
    "  --writers N       writer processes (default 16, at most 64)\n"
    "  --kill-ms MIN,MAX interval between kills (default 10,100)\n"
    "  --seed N          random seed (default: time and pid)\n"
    "  --verbose         a line per checkpoint\n"
    "\n"
    "Prints one line: ops=N kills=N violations=N leaked=N and figures; exits 0\n"
    "iff violations and leaked are 0.\n";

static int on_opt(int c, const char *arg)
{
	char *end;
	if (c == 'w') {
		nwriters = (int)strtol(arg, &end, 10);
		return *end || nwriters < 1 || nwriters > MAX_WRITERS ? 2 : 0;
	}
	if (c == 'k') {
		kill_min_ms = strtoull(arg, &end, 10);
		if (*end != ',')
			return 2;
		kill_max_ms = strtoull(end + 1, &end, 10);
		return *end || kill_min_ms < 1 || kill_max_ms < kill_min_ms ? 2 : 0;
	}
	return 2;
}

static void key_of(char *k, size_t cap, uint32_t inc, int j)
{
	snprintf(k, cap, "ks-%u-%02d", inc, j);
}

/* The attributes version v (base b) of incarnation inc carries. */
struct attrs_buf {
	char cap0[16], node[16];
	const char *caps[2];
	struct fdn_attr a[5];
};

static void attrs_of(struct attrs_buf *ab, uint32_t inc, uint32_t v, uint32_t b)
{
	snprintf(ab->cap0, sizeof(ab->cap0), "cap-%u", b % 4);
	snprintf(ab->node, sizeof(ab->node), "n%u", inc);
	ab->caps[0] = ab->cap0;
	ab->caps[1] = "all";
	ab->a[0] =
	    (struct fdn_attr){.name = "capability", .type = FDN_ATTR_LIST, .v.list = {ab->caps, 2}};
	ab->a[1] = (struct fdn_attr){
	    .name = "health_status", .type = FDN_ATTR_STRING, .v.s = v % 3 ? "ok" : "degraded"};
	ab->a[2] = (struct fdn_attr){.name = "node", .type = FDN_ATTR_STRING, .v.s = ab->node};
	ab->a[3] = (struct fdn_attr){.name = "version", .type = FDN_ATTR_INT, .v.i = v};
	ab->a[4] = (struct fdn_attr){.name = "load", .type = FDN_ATTR_DOUBLE, .v.d = b / 4.0};
}

/* ---- the writer -------------------------------------------------------- */

/* One operation on key j; returns 0 or the library's error. */
static int do_op(fdn_segment *s, enum op_kind kind, uint32_t inc, int j, uint32_t v, uint32_t b)
{
	char k[32];
	struct attrs_buf ab;
	key_of(k, sizeof(k), inc, j);
	attrs_of(&ab, inc, v, b);
	switch (kind) {
	case OP_REGISTER:
		return fdn_register(s, k, strlen(k), getpid(), ab.a, 5, 0, NULL);
	case OP_UPDATE:
		return fdn_update_attributes(s, k, strlen(k), ab.a, 5);
	case OP_MERGE: { /* version and health change; the rest stays */
		struct fdn_attr m[2] = {ab.a[1], ab.a[3]};
		return fdn_merge_attributes(s, k, strlen(k), m, 2);
	}
	case OP_UNREGISTER:
		return fdn_unregister(s, k, strlen(k));
	case OP_SPAN: {
		int want = (int)(v % 7), d = fdn_span_depth(s), r = 0;
		if (d < 0)
			return d;
		for (; d > want && r == 0; d--)
			r = fdn_span_end(s, v % 5 ? FDN_STATUS_OK : FDN_STATUS_ERROR);
		for (; d < want && r == 0; d++)
			r = fdn_span_start(s, k, &ab.a[3], 1, NULL);
		return r;
	}
	case OP_CONTEXT:
		return fdn_ctx_set(s, &ab.a[2], 2);
	case OP_EVENT: {
		struct fdn_measurement m = {"version", (double)v};
		int r = fdn_emit(s, "stress.killstorm.op", &m, 1, &ab.a[1], 1);
		return r < 0 ? r : 0;
	}
	default:
		return FDN_EINVAL;
	}
}

static void writer(struct control *ctl, struct journal *jr, uint32_t inc, uint64_t seed)
{
	fdn_segment *s;
	int r = fdn_segment_attach(st_segment(), 0, &s);
	if (r) {
		fprintf(stderr, "%s: writer %u: attach: %s\n", st_prog, inc, fdn_strerror(r));
		_exit(2);
	}
	uint64_t x = seed | 1;
	uint32_t v = 0;
	for (;;) {
		if (st_park(&ctl->pause, &ctl->stop, &jr->parked))
			pause(); /* killed by the parent */
		int j = (int)(st_rand(&x) % KEYS);
		uint64_t dice = st_rand(&x) % 8;
		if (dice >= 5) { /* span, context or event: nothing to journal */
			v++;
			r = do_op(s, (enum op_kind)(OP_SPAN + dice - 5), inc, j, v, v);
			if (r) {
				fprintf(stderr, "%s: writer %u: op %d: %s\n", st_prog, inc,
					(int)(OP_SPAN + dice - 5), fdn_strerror(r));
				_exit(3);
			}
			atomic_fetch_add(&jr->ops, 1);
			continue;
		}
		struct kv cur = jr->committed[j], next;
		enum op_kind kind =
		    cur.version == 0 ? OP_REGISTER : (enum op_kind)(OP_UPDATE + st_rand(&x) % 3);
		v++;
		switch (kind) {
		case OP_REGISTER:
		case OP_UPDATE:
			next = (struct kv){v, v};
			break;
		case OP_MERGE:
			next = (struct kv){v, cur.base};
			break;
		default:
			next = (struct kv){0, 0};
		}
		atomic_store(&jr->pending, j);
		r = do_op(s, kind, inc, j, next.version, next.base);
		if (r) {
			fprintf(stderr, "%s: writer %u: op %d on key %d: %s\n", st_prog, inc, kind,
				j, fdn_strerror(r));
			_exit(3);
		}
		jr->committed[j] = next;
		atomic_store(&jr->pending, -1);
		atomic_fetch_add(&jr->ops, 1);
	}
}

/* ---- the parent ------------------------------------------------------------ */

struct pos {
	pid_t pid;
	uint32_t inc;
};

static struct control *ctl;
static struct journal *journals;
static struct pos pos[MAX_WRITERS];
static uint32_t next_inc = 1;
static uint64_t seed_x;
static uint32_t dead_incs[4096];
static int ndead;
static struct st_tally tally;
static uint64_t ops_done, kills, kills_mid_op, dead_checked;

/* Killed incarnations, verified gone at the next checkpoint. */
static void add_dead(uint32_t inc)
{
	if (ndead < (int)(sizeof(dead_incs) / sizeof(dead_incs[0])))
		dead_incs[ndead++] = inc;
}

static void spawn(int p)
{
	struct journal *jr = &journals[p];
	uint32_t inc = next_inc++;
	memset(jr, 0, sizeof(*jr));
	atomic_store(&jr->pending, -1);
	atomic_store(&jr->inc, inc);
	uint64_t seed = st_rand(&seed_x);
	pid_t c = st_fork();
	if (c == 0)
		writer(ctl, jr, inc, seed);
	pos[p] = (struct pos){c, inc};
}

/* A writer that ended without being killed broke the contract. */
static void reap_status(int p, int st)
{
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		st_fail(&tally, "writer %u (pid %d) ended on its own (status %#x)", pos[p].inc,
			(int)pos[p].pid, st);
}

static void kill_one(int p)
{
	int st = st_kill_wait(pos[p].pid);
	reap_status(p, st);
	kills++;
	kills_mid_op += atomic_load(&journals[p].pending) >= 0;
	ops_done += atomic_load(&journals[p].ops);
	add_dead(pos[p].inc);
}

static int count_cb(void *arg, const struct fdn_entry_view *e)
{
	return 0;
}

/* Two decoded attributes hold the same typed value. */
static bool attr_equal(const struct fdn_attr *a, const struct fdn_attr *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case FDN_ATTR_STRING:
		return strcmp(a->v.s, b->v.s) == 0;
	case FDN_ATTR_INT:
		return a->v.i == b->v.i;
	case FDN_ATTR_DOUBLE:
		return a->v.d == b->v.d;
	case FDN_ATTR_BOOL:
		return a->v.b == b->v.b;
	case FDN_ATTR_LIST:
		if (a->v.list.n != b->v.list.n)
			return false;
		for (uint32_t k = 0; k < a->v.list.n; k++) {
			const char *x = fdn_attrs_list_item(a, k), *y = fdn_attrs_list_item(b, k);
			if (!x || !y || strcmp(x, y) != 0)
				return false;
		}
		return true;
	}
	return false;
}

/* Entry j of writer p as committed? */
static void verify_key(fdn_segment *s, int p, int j, const char *when)
{
	const struct journal *jr = &journals[p];
	struct kv want = jr->committed[j];
	char k[32];
	key_of(k, sizeof(k), pos[p].inc, j);
	struct fdn_entry e;
	int r = fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e);
	if (want.version == 0) {
		if (r != FDN_ENOTFOUND)
			st_fail(&tally, "%s: %s: unregistered, lookup gives %s", when, k,
				r ? fdn_errname(r) : "an entry");
		return;
	}
	if (r) {
		st_fail(&tally, "%s: %s (version %u) committed, lookup gives %s", when, k,
			want.version, fdn_errname(r));
		return;
	}
	if (e.pid != pos[p].pid)
		st_fail(&tally, "%s: %s: pid %d, its writer is %d", when, k, (int)e.pid,
			(int)pos[p].pid);
	struct attrs_buf ab;
	attrs_of(&ab, pos[p].inc, want.version, want.base);
	unsigned char enc[FDN_ATTRS_MAX];
	int n = fdn_attrs_encode(ab.a, 5, enc, sizeof(enc));
	/* By name: a merge may store them in another order. */
	bool same = n > 0 && fdn_attrs_count(e.attrs, e.attrs_len) == 5;
	for (int i = 0; i < 5 && same; i++) {
		struct fdn_attr got, exp;
		same = fdn_attrs_get(e.attrs, e.attrs_len, ab.a[i].name, &got) == 0 &&
		       fdn_attrs_get(enc, (size_t)n, ab.a[i].name, &exp) == 0 &&
		       attr_equal(&got, &exp);
	}
	if (!same)
		st_fail(&tally, "%s: %s: attributes differ from version %u (base %u)", when, k,
			want.version, want.base);
}

static uint64_t verify_writers(fdn_segment *s, const char *when)
{
	uint64_t total = 0;
	for (int p = 0; p < nwriters; p++) {
		int present = 0;
		for (int j = 0; j < KEYS; j++) {
			verify_key(s, p, j, when);
			present += journals[p].committed[j].version != 0;
		}
		char node[16];
		snprintf(node, sizeof(node), "n%u", pos[p].inc);
		struct fdn_attr nv = {.type = FDN_ATTR_STRING, .v.s = node};
		int found = fdn_find_by_attribute(s, "node", &nv, count_cb, NULL);
		if (found != present)
			st_fail(&tally, "%s: writer %u: the index finds %d entries, %d committed",
				when, pos[p].inc, found, present);
		total += (uint64_t)present;
	}
	return total;
}

static void verify_dead(fdn_segment *s, const char *when)
{
	for (int d = 0; d < ndead; d++) {
		for (int j = 0; j < KEYS; j++) {
			char k[32];
			key_of(k, sizeof(k), dead_incs[d], j);
			if (st_raw_present(s, k))
				st_fail(&tally, "%s: %s of killed writer %u is still stored", when,
					k, dead_incs[d]);
		}
		dead_checked++;
	}
	ndead = 0;
}

struct trace_arg {
	const char *when;
	uint64_t slots;
};

/* A trace slot in use belongs to a live writer (the parent has none). */
static int trace_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct trace_arg *a = arg;
	a->slots++;
	for (int p = 0; p < nwriters; p++)
		if (pos[p].pid == t->pid)
			return 0;
	st_fail(&tally,
		"%s: a trace slot of pid %d (tid %u, %u spans) is in use, not a live "
		"writer's",
		a->when, (int)t->pid, t->tid, t->depth);
	return 0;
}

static uint64_t verify_traces(fdn_segment *s, const char *when)
{
	struct trace_arg a = {when, 0};
	int r = fdn_traces_foreach(s, 0, trace_cb, &a);
	if (r != 0)
		st_fail(&tally, "%s: fdn_traces_foreach: %d (slots skipped or error)", when, r);
	return a.slots;
}

/* Park every writer, settle, check everything, resume. */
static void checkpoint(fdn_segment *s, pid_t reaper, const char *when, bool resume)
{
	atomic_store(&ctl->pause, 1);
	uint64_t deadline = st_now_ns() + 20000000000ull;
	for (int p = 0; p < nwriters; p++) {
		while (!atomic_load(&journals[p].parked)) {
			int st;
			if (waitpid(pos[p].pid, &st, WNOHANG) == pos[p].pid) {
				st_untrack(pos[p].pid);
				reap_status(p, st);
				ops_done += atomic_load(&journals[p].ops);
				add_dead(pos[p].inc);
				spawn(p); /* parks at once */
			}
			if (st_now_ns() > deadline) {
				st_fail(&tally, "%s: writer %u did not park in 20 s", when,
					pos[p].inc);
				break;
			}
			st_sleep_ns(200000);
		}
	}
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "%s: the segment did not settle", when);
	st_check(s, &tally, when);
	verify_dead(s, when);
	verify_traces(s, when);
	uint64_t want = verify_writers(s, when);
	int64_t count = fdn_count(s), raw = fdn__ht_count(s, 0);
	if (count != (int64_t)want || raw != (int64_t)want)
		st_fail(&tally, "%s: fdn_count %lld, table counter %lld, journals hold %llu", when,
			(long long)count, (long long)raw, (unsigned long long)want);
	if (opts.verbose)
		fprintf(stderr, "%s: %s: %llu entries, %llu kills, violations %llu\n", st_prog,
			when, (unsigned long long)want, (unsigned long long)kills,
			(unsigned long long)tally.violations);
	if (resume)
		atomic_store(&ctl->pause, 0);
}

int main(int argc, char **argv)
{
	static const struct option extra[] = {{"writers", required_argument, 0, 'w'},
					      {"kill-ms", required_argument, 0, 'k'},
					      {0, 0, 0, 0}};
	st_prog = "stress_killstorm";
	st_parse(argc, argv, &opts, usage_text, extra, on_opt);
	st_setup("stress_killstorm", "killstorm");
	seed_x = opts.seed;
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 4096;
	o.heap_bytes = 8u << 20;
	o.processes = 512;
	o.threads = 512;
	fdn_segment *s = st_create(&o);
	pid_t reaper = st_reaper_start();
	uint64_t gy_before = 0, gy_drop0 = 0;
	fdn_graveyard_trace_counts(s, &gy_before, &gy_drop0);
	ctl = st_shared(sizeof(*ctl));
	journals = st_shared(sizeof(struct journal) * MAX_WRITERS);
	for (int p = 0; p < nwriters; p++)
		spawn(p);
	uint64_t t0 = st_now_ns(), end = t0 + (uint64_t)(opts.seconds * 1e9);
	uint64_t next_check = t0 + 1000000000ull;
	uint64_t next_kill = t0 + st_between(&seed_x, kill_min_ms, kill_max_ms) * 1000000ull;
	while (st_now_ns() < end) {
		uint64_t now = st_now_ns(), wake = next_kill < next_check ? next_kill : next_check;
		if (wake > now)
			st_sleep_ns(wake - now);
		if (st_now_ns() >= next_check) {
			checkpoint(s, reaper, "checkpoint", true);
			next_check = st_now_ns() + 1000000000ull;
			next_kill = st_now_ns() +
				    st_between(&seed_x, kill_min_ms, kill_max_ms) * 1000000ull;
			continue;
		}
		int p = (int)(st_rand(&seed_x) % (uint64_t)nwriters);
		kill_one(p);
		spawn(p);
		next_kill += st_between(&seed_x, kill_min_ms, kill_max_ms) * 1000000ull;
	}
	/* The end: a last full checkpoint, then the survivors die too and
	 * nothing of theirs may remain. */
	checkpoint(s, reaper, "final", false);
	atomic_store(&ctl->stop, 1);
	for (int p = 0; p < nwriters; p++) {
		ops_done += atomic_load(&journals[p].ops);
		int st = st_kill_wait(pos[p].pid);
		(void)st;
		add_dead(pos[p].inc);
	}
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "end: the segment did not settle");
	st_check(s, &tally, "end");
	verify_dead(s, "end");
	if (fdn_count(s) != 0 || fdn__ht_count(s, 0) != 0 || fdn__ht_count(s, 1) != 0)
		st_fail(&tally, "end: %lld entries and %lld index references remain",
			(long long)fdn__ht_count(s, 0), (long long)fdn__ht_count(s, 1));
	if (verify_traces(s, "end") != 0)
		st_fail(&tally, "end: trace slots still in use after every writer died");
	uint64_t gy_written = 0, gy_dropped = 0;
	fdn_graveyard_trace_counts(s, &gy_written, &gy_dropped);
	if (kills > 0 && gy_written <= gy_before)
		st_fail(&tally,
			"end: %llu kills, the graveyard's thread copies went from %llu to %llu",
			(unsigned long long)kills, (unsigned long long)gy_before,
			(unsigned long long)gy_written);
	uint64_t deaths = fdn_deaths(s);
	double secs = (double)(st_now_ns() - t0) / 1e9;
	fdn_segment_detach(s);
	st_cleanup();
	return st_summary(ops_done, kills, &tally,
			  "seconds=%.1f writers=%d kills_mid_op=%llu killed_checked=%llu "
			  "deaths_reaped=%llu graveyard_threads=%llu",
			  secs, nwriters, (unsigned long long)kills_mid_op,
			  (unsigned long long)dead_checked, (unsigned long long)deaths,
			  (unsigned long long)(gy_written - gy_before));
}
