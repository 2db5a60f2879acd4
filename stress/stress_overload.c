/*
 * stress_overload - every table of a segment filled to capacity, every
 * further write refused with FDN_ENOSPACE exactly, nothing stored lost,
 * and (where the table frees) the space usable again after deletions.
 *
 * Each round creates a fresh small segment and fills, in turn:
 *   procs    process slots: entries registered for forked children's pids
 *            (each pid claims a slot) until FDN_ENOSPACE; then another pid's
 *            registration and a new process's attach both give
 *            FDN_ENOSPACE, every child's entry is still there; three
 *            children are killed, the reaper frees their slots, and three
 *            new pids fit again;
 *   threads  reader slots: threads each take one (a lookup) until one gets
 *            FDN_ENOSPACE; further threads get it for lookups and writes;
 *            the holders still find their key; two end, two new fit;
 *   traces   trace slots: two child processes and then threads each open a
 *            span until FDN_ENOSPACE; further threads get it for spans and
 *            context; fdn_traces_foreach shows every holder's open span by
 *            name; one child is killed and two threads end, three new
 *            spans fit;
 *   flags    user flags until FDN_ENOSPACE (FDN_FLAGS_MAX in all); every
 *            flag keeps its value; the existing ones still change (flags
 *            are never deleted: there is no space to give back);
 *   telemetry rate-limiter ids, samplers, once-per claims and batches
 *            until FDN_ENOSPACE; the ids stored still answer (their slots
 *            are never freed, by design: telemetry_sample.c);
 *   entries  registry entries with attributes until FDN_ENOSPACE, then the
 *            smallest entries until FDN_ENOSPACE: the heap is full; further
 *            registrations of every size and a growing update give
 *            FDN_ENOSPACE and change nothing; every entry is there with its
 *            attributes; a quarter are unregistered and as many new ones of
 *            the same size fit again.
 * After each part: the segment settles and the checker must be clean.
 */
#include "stress.h"

#include <foundation/context.h>
#include <foundation/flags.h>
#include <foundation/spans.h>
#include <foundation/telemetry.h>

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPROCS   24
#define NTHREADS 20
#define NTRACES  16
#define MAX_HOLD 64 /* threads held at once, above every capacity here */

static struct st_opts opts = {.seconds = 10};
static struct st_tally tally;
static uint64_t writes, refused;
static pid_t reaper;

static const char usage_text[] =
    "usage: stress_overload [--seconds N] [--seed N]\n"
    "\n"
    "Rounds on a fresh small segment: process slots, reader slots, trace\n"
    "slots, user flags, telemetry tables and the registry's heap are each\n"
    "filled until FDN_ENOSPACE; every further write must fail with it,\n"
    "nothing stored may be lost, and after deletions the space is usable\n"
    "again (tables that free).  Checker after every part.\n"
    "\n"
    "  --seconds N   run rounds for N seconds (default 10; at least one round)\n"
    "  --seed N      random seed (default: time and pid)\n"
    "  --verbose     a line per part\n"
    "\n"
    "Prints one line: ops=N kills=N violations=N leaked=N and figures; exits 0\n"
    "iff violations and leaked are 0.\n";

/* A write that must be refused for lack of space. */
static void expect_nospace(int r, const char *what)
{
	refused++;
	if (r != FDN_ENOSPACE)
		st_fail(&tally, "%s: expected FDN_ENOSPACE, got %s", what,
			r < 0    ? fdn_errname(r)
			: r == 0 ? "success"
				 : "a positive result");
}

static void settle_check(fdn_segment *s, const char *when)
{
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "%s: the segment did not settle", when);
	st_check(s, &tally, when);
	if (opts.verbose)
		fprintf(stderr, "%s: %s: violations %llu\n", st_prog, when,
			(unsigned long long)tally.violations);
}

/* ---- held threads ---------------------------------------------------------- */

enum act { ACT_LOOKUP, ACT_REGISTER, ACT_SPAN, ACT_CONTEXT };

struct held {
	pthread_t th;
	fdn_segment *s;
	enum act act;
	int idx;
	_Atomic int result; /* 1 = pending, else the action's result */
	_Atomic int release;
	_Atomic int again; /* the check run before leaving */
	_Atomic int again_result;
};

static int run_act(struct held *h)
{
	char k[32];
	struct fdn_entry e;
	switch (h->act) {
	case ACT_LOOKUP: { /* takes a reader slot; finds the key */
		int r = fdn_lookup(h->s, "ov-held", 7, 0, &e);
		return r;
	}
	case ACT_REGISTER:
		snprintf(k, sizeof(k), "ov-t%d", h->idx);
		return fdn_register(h->s, k, strlen(k), getpid(), NULL, 0, 0, NULL);
	case ACT_SPAN: {
		snprintf(k, sizeof(k), "ov.span.%d", h->idx);
		return fdn_span_start(h->s, k, NULL, 0, NULL);
	}
	case ACT_CONTEXT: {
		struct fdn_attr a = {.name = "ov", .type = FDN_ATTR_INT, .v.i = h->idx};
		return fdn_ctx_set(h->s, &a, 1);
	}
	}
	return FDN_EINVAL;
}

static void *held_main(void *arg)
{
	struct held *h = arg;
	atomic_store(&h->result, run_act(h));
	while (!atomic_load(&h->release)) {
		if (atomic_load(&h->again) == 1) {
			struct fdn_entry e;
			int r = h->act == ACT_LOOKUP ? fdn_lookup(h->s, "ov-held", 7, 0, &e)
						     : fdn_span_depth(h->s);
			atomic_store(&h->again_result, r);
			atomic_store(&h->again, 2);
		}
		st_sleep_ns(200000);
	}
	return NULL;
}

/* Start a held thread and wait for its action's result. */
static int held_start(struct held *h, fdn_segment *s, enum act act, int idx)
{
	memset(h, 0, sizeof(*h));
	h->s = s;
	h->act = act;
	h->idx = idx;
	atomic_store(&h->result, 1);
	if (pthread_create(&h->th, NULL, held_main, h) != 0) {
		fprintf(stderr, "%s: pthread_create failed\n", st_prog);
		exit(1);
	}
	while (atomic_load(&h->result) == 1)
		st_sleep_ns(100000);
	writes++;
	return atomic_load(&h->result);
}

static int held_again(struct held *h)
{
	atomic_store(&h->again, 1);
	while (atomic_load(&h->again) != 2)
		st_sleep_ns(100000);
	return atomic_load(&h->again_result);
}

static void held_end(struct held *h)
{
	atomic_store(&h->release, 1);
	pthread_join(h->th, NULL);
}

/* ---- children -------------------------------------------------------------- */

/* A child that does `what` (0 none, 1 attach and report, 2 attach and
 * open a span) and then waits to be killed. */
static pid_t child(int what, _Atomic int *report)
{
	pid_t p = st_fork();
	if (p)
		return p;
	if (what) {
		fdn_segment *s;
		int r = fdn_segment_attach(st_segment(), 0, &s);
		if (r == 0 && what == 2)
			r = fdn_span_start(s, "ov.child.span", NULL, 0, NULL);
		atomic_store(report, r);
	}
	for (;;)
		pause();
}

static int wait_report(_Atomic int *report)
{
	uint64_t deadline = st_now_ns() + 10000000000ull;
	while (atomic_load(report) == 1) {
		if (st_now_ns() > deadline)
			return FDN_ETIMEDOUT;
		st_sleep_ns(200000);
	}
	return atomic_load(report);
}

/* ---- process slots ---------------------------------------------------------- */

static int part_procs(fdn_segment *s, _Atomic int *report)
{
	pid_t kids[NPROCS + 8];
	int n = 0, r = 0;
	char k[32];
	while (n < NPROCS + 4) {
		kids[n] = child(0, NULL);
		snprintf(k, sizeof(k), "pp-%d", (int)kids[n]);
		struct fdn_attr a = {.name = "i", .type = FDN_ATTR_INT, .v.i = n};
		r = fdn_register(s, k, strlen(k), kids[n], &a, 1, 0, NULL);
		writes++;
		if (r)
			break;
		n++;
	}
	expect_nospace(r, "register for one pid more than process slots");
	if (r == 0) {
		st_kill_wait(kids[n]);
		return n;
	}
	/* kids[n] has no slot: another key of it is refused again. */
	snprintf(k, sizeof(k), "pp-%d-b", (int)kids[n]);
	expect_nospace(fdn_register(s, k, strlen(k), kids[n], NULL, 0, 0, NULL),
		       "register again for the pid with no slot");
	st_kill_wait(kids[n]);
	/* A new process cannot attach. */
	atomic_store(report, 1);
	pid_t late = child(1, report);
	expect_nospace(wait_report(report), "attach with the process table full");
	st_kill_wait(late);
	/* A pid with a slot takes more entries. */
	snprintf(k, sizeof(k), "pp-%d-2", (int)kids[0]);
	r = fdn_register(s, k, strlen(k), kids[0], NULL, 0, 0, NULL);
	writes++;
	if (r)
		st_fail(&tally, "procs full: a second key for a pid with a slot: %s",
			fdn_errname(r));
	fdn_unregister(s, k, strlen(k));
	/* Nothing lost. */
	for (int i = 0; i < n; i++) {
		struct fdn_entry e;
		struct fdn_attr a;
		snprintf(k, sizeof(k), "pp-%d", (int)kids[i]);
		r = fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e);
		if (r || e.pid != kids[i] || fdn_attrs_get(e.attrs, e.attrs_len, "i", &a) ||
		    a.v.i != i)
			st_fail(&tally, "procs full: %s lost or changed (%s)", k,
				r ? fdn_errname(r) : "pid or attribute");
	}
	settle_check(s, "procs full");
	/* Three die: the reaper frees their slots and entries. */
	for (int i = 0; i < 3 && i < n; i++)
		st_kill_wait(kids[i]);
	settle_check(s, "procs after kills");
	for (int i = 0; i < 3 && i < n; i++) {
		snprintf(k, sizeof(k), "pp-%d", (int)kids[i]);
		struct fdn_entry e;
		if (fdn_lookup(s, k, strlen(k), 0, &e) != FDN_ENOTFOUND)
			st_fail(&tally, "procs: %s of a killed child still there", k);
		kids[i] = child(0, NULL);
		snprintf(k, sizeof(k), "pp-%d", (int)kids[i]);
		r = fdn_register(s, k, strlen(k), kids[i], NULL, 0, 0, NULL);
		writes++;
		if (r)
			st_fail(&tally, "procs: after three deaths, a new pid: %s", fdn_errname(r));
	}
	for (int i = 0; i < n; i++)
		st_kill_wait(kids[i]);
	settle_check(s, "procs end");
	if (fdn_count(s) != 0)
		st_fail(&tally, "procs end: %lld entries remain", (long long)fdn_count(s));
	return n;
}

/* ---- reader slots ----------------------------------------------------------- */

static int part_threads(fdn_segment *s)
{
	static struct held h[MAX_HOLD];
	int n = 0, r = 0;
	if (fdn_register(s, "ov-held", 7, getpid(), NULL, 0, 0, NULL) != 0)
		st_fail(&tally, "threads: register ov-held failed");
	while (n < MAX_HOLD - 4) {
		r = held_start(&h[n], s, ACT_LOOKUP, n);
		if (r != 0)
			break;
		n++;
	}
	int extra = n;
	expect_nospace(r, "a lookup from a thread with every reader slot taken");
	extra++;
	r = held_start(&h[extra++], s, ACT_REGISTER, 1000);
	expect_nospace(r, "a register from a thread with every reader slot taken");
	for (int i = 0; i < n; i++) {
		r = held_again(&h[i]);
		if (r != 0)
			st_fail(&tally, "threads full: holder %d's lookup: %s", i, fdn_errname(r));
	}
	for (int i = n; i < extra; i++)
		held_end(&h[i]);
	settle_check(s, "threads full");
	/* Two end: their slots are given back at thread exit. */
	held_end(&h[0]);
	held_end(&h[1]);
	for (int i = 0; i < 2; i++) {
		r = held_start(&h[i], s, ACT_LOOKUP, i);
		if (r != 0)
			st_fail(&tally, "threads: after two ended, a new thread's lookup: %s",
				fdn_errname(r));
	}
	for (int i = 0; i < n; i++)
		held_end(&h[i]);
	fdn_unregister(s, "ov-held", 7);
	settle_check(s, "threads end");
	return n;
}

/* ---- trace slots ------------------------------------------------------------ */

struct trace_count {
	int spans, children, threads;
};

static int trace_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct trace_count *c = arg;
	if (t->depth != 1) {
		st_fail(&tally, "traces full: pid %d tid %u has %u spans, 1 opened", (int)t->pid,
			t->tid, t->depth);
		return 0;
	}
	c->spans++;
	if (strcmp(t->spans[0].name, "ov.child.span") == 0)
		c->children++;
	else if (strncmp(t->spans[0].name, "ov.span.", 8) == 0)
		c->threads++;
	else
		st_fail(&tally, "traces full: unexpected span \"%s\"", t->spans[0].name);
	return 0;
}

static int part_traces(fdn_segment *s, _Atomic int *report)
{
	static struct held h[MAX_HOLD];
	pid_t kids[2];
	for (int i = 0; i < 2; i++) {
		atomic_store(report, 1);
		kids[i] = child(2, report);
		int r = wait_report(report);
		writes++;
		if (r)
			st_fail(&tally, "traces: a child's span: %s", fdn_errname(r));
	}
	int n = 0, r = 0;
	while (n < MAX_HOLD - 4) {
		r = held_start(&h[n], s, ACT_SPAN, n);
		if (r != 0)
			break;
		n++;
	}
	int extra = n;
	expect_nospace(r, "a span from a thread with every trace slot taken");
	extra++;
	r = held_start(&h[extra++], s, ACT_CONTEXT, 1000);
	expect_nospace(r, "a context set from a thread with every trace slot taken");
	for (int i = n; i < extra; i++)
		held_end(&h[i]);
	struct trace_count c = {0};
	r = fdn_traces_foreach(s, 0, trace_cb, &c);
	if (r != 0 || c.children != 2 || c.threads != n || c.spans != (int)s->ntrace)
		st_fail(&tally,
			"traces full: %d slots, seen %d spans (%d of children, %d of %d threads), "
			"foreach %d",
			(int)s->ntrace, c.spans, c.children, c.threads, n, r);
	for (int i = 0; i < n; i++)
		if (held_again(&h[i]) != 1)
			st_fail(&tally, "traces full: thread %d lost its span", i);
	settle_check(s, "traces full");
	/* A child dies (the reaper frees its slot), two threads end. */
	st_kill_wait(kids[0]);
	held_end(&h[0]);
	held_end(&h[1]);
	settle_check(s, "traces after frees");
	for (int i = 0; i < 3; i++) {
		r = held_start(&h[n + i], s, ACT_SPAN, n + i);
		if (r != 0)
			st_fail(&tally, "traces: after three slots freed, a new span: %s",
				fdn_errname(r));
	}
	for (int i = 2; i < n + 3; i++)
		held_end(&h[i]);
	st_kill_wait(kids[1]);
	settle_check(s, "traces end");
	struct trace_count left = {0};
	fdn_traces_foreach(s, 0, trace_cb, &left);
	if (left.spans != 0)
		st_fail(&tally, "traces end: %d slots still in use", left.spans);
	return n + 2;
}

/* ---- flags -------------------------------------------------------------------- */

static int part_flags(fdn_segment *s)
{
	int n = 0, r = 0;
	char name[32];
	for (; n < 2 * FDN_FLAGS_MAX; n++) {
		snprintf(name, sizeof(name), "ov_flag_%d", n);
		r = fdn_flag_create(s, name, n % 101);
		writes++;
		if (r)
			break;
	}
	expect_nospace(r, "a user flag beyond FDN_FLAGS_MAX");
	expect_nospace(fdn_flag_create(s, "ov_flag_more", 1), "another user flag");
	int total = fdn_flags_list(s, NULL, 0);
	if (total != FDN_FLAGS_MAX)
		st_fail(&tally, "flags full: %d flags listed, FDN_FLAGS_MAX is %d", total,
			FDN_FLAGS_MAX);
	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "ov_flag_%d", i);
		if (fdn_flag_get(s, name) != i % 101)
			st_fail(&tally, "flags full: %s is %d, created %d", name,
				fdn_flag_get(s, name), i % 101);
	}
	snprintf(name, sizeof(name), "ov_flag_%d", 0);
	r = fdn_flag_set(s, name, 55);
	writes++;
	if (r || fdn_flag_get(s, name) != 55)
		st_fail(&tally, "flags full: changing an existing flag: %s", fdn_errname(r));
	if (fdn_flag_get(s, "ov_flag_more") != FDN_EUNKFLAG)
		st_fail(&tally, "flags full: the refused flag exists");
	settle_check(s, "flags full");
	return n;
}

/* ---- telemetry tables ------------------------------------------------------- */

static int part_telemetry(fdn_segment *s, int counts[4])
{
	char id[48];
	int r = 0, n;
	/* Rate limiters: each new id takes a slot. */
	for (n = 0; n < 2 * (int)FDN_TEL_RATE; n++) {
		snprintf(id, sizeof(id), "ov.rate.%d", n);
		r = fdn_rate_limit(s, id, 2, 600000);
		writes++;
		if (r != 1)
			break;
	}
	counts[0] = n;
	expect_nospace(r, "a rate-limiter id with the table full");
	expect_nospace(fdn_rate_limit(s, "ov.rate.more", 2, 600000), "another rate-limiter id");
	/* Stored ids still count: a second admission, then a refusal. */
	for (int i = 0; i < n; i += 97) {
		snprintf(id, sizeof(id), "ov.rate.%d", i);
		int a = fdn_rate_limit(s, id, 2, 600000), b = fdn_rate_limit(s, id, 2, 600000);
		if (a != 1 || b != 0)
			st_fail(&tally, "rate full: %s admitted %d then %d (want 1, 0)", id, a, b);
	}
	/* Samplers. */
	struct fdn_sampler sp = {FDN_SAMPLER_RANDOM, 0.5};
	for (n = 0; n < 2 * (int)FDN_TEL_SAMPLERS; n++) {
		snprintf(id, sizeof(id), "ov.sampler.e%d", n);
		r = fdn_sampler_set(s, id, &sp);
		writes++;
		if (r)
			break;
	}
	counts[1] = n;
	expect_nospace(r, "a sampler with the table full");
	for (int i = 0; i < n; i += 31) {
		struct fdn_sampler_stats st;
		snprintf(id, sizeof(id), "ov.sampler.e%d", i);
		if (fdn_sampler_get(s, id, &st) != 0 || st.sampler.kind != FDN_SAMPLER_RANDOM)
			st_fail(&tally, "samplers full: %s lost", id);
	}
	/* Once-per claims (each a new key). */
	for (n = 0; n < 2 * (int)FDN_TEL_ONCE; n++) {
		snprintf(id, sizeof(id), "k%d", n);
		r = fdn_emit_once_per(s, "ov.once", 600000, id, strlen(id), NULL, 0, NULL, 0);
		writes++;
		if (r < 0)
			break;
	}
	counts[2] = n;
	expect_nospace(r, "a once-per key with the table full");
	for (int i = 0; i < n; i += 101) {
		snprintf(id, sizeof(id), "k%d", i);
		r = fdn_emit_once_per(s, "ov.once", 600000, id, strlen(id), NULL, 0, NULL, 0);
		if (r != 0)
			st_fail(&tally, "once full: key %s won again within its interval (%d)", id,
				r);
	}
	/* Batches. */
	for (n = 0; n < 4 * (int)FDN_TEL_BATCHES; n++) {
		snprintf(id, sizeof(id), "ov.batch.b%d", n);
		r = fdn_batch_config(s, id, 8, 600000);
		writes++;
		if (r)
			break;
	}
	counts[3] = n;
	expect_nospace(r, "a batch with the table full");
	settle_check(s, "telemetry full");
	return counts[0] + counts[1] + counts[2] + counts[3];
}

/* ---- registry entries ------------------------------------------------------- */

static void big_attrs(struct fdn_attr a[3], char *pad, const char *k, int i)
{
	memset(pad, 'a' + i % 26, 96);
	pad[96] = 0;
	a[0] = (struct fdn_attr){.name = "self", .type = FDN_ATTR_STRING, .v.s = k};
	a[1] = (struct fdn_attr){.name = "i", .type = FDN_ATTR_INT, .v.i = i};
	a[2] = (struct fdn_attr){.name = "pad", .type = FDN_ATTR_STRING, .v.s = pad};
}

static bool entry_ok(fdn_segment *s, const char *k, int i, bool big)
{
	struct fdn_entry e;
	struct fdn_attr a;
	if (fdn_lookup(s, k, strlen(k), 0, &e) != 0 || e.pid != getpid())
		return false;
	if (!big) /* no attributes: the 2-byte empty encoding (lib/attrs.c) */
		return fdn_attrs_count(e.attrs, e.attrs_len) == 0;
	return fdn_attrs_count(e.attrs, e.attrs_len) == 3 &&
	       fdn_attrs_get(e.attrs, e.attrs_len, "self", &a) == 0 && strcmp(a.v.s, k) == 0 &&
	       fdn_attrs_get(e.attrs, e.attrs_len, "i", &a) == 0 && a.v.i == i &&
	       fdn_attrs_get(e.attrs, e.attrs_len, "pad", &a) == 0 && a.v.s[0] == 'a' + i % 26;
}

static int part_entries(fdn_segment *s, int *smalls_out)
{
	char k[32], pad[128];
	struct fdn_attr a[3];
	int big = 0, small = 0, r = 0;
	for (; big < 1000000; big++) {
		snprintf(k, sizeof(k), "ov-%07d", big);
		big_attrs(a, pad, k, big);
		r = fdn_register(s, k, strlen(k), getpid(), a, 3, 0, NULL);
		writes++;
		if (r)
			break;
	}
	expect_nospace(r, "registering until the heap is full");
	/* A refused register may leave blocks in its deferred-free list (a
	 * reference it wrote and then removed, registry.c), which the next
	 * write gets: full is when the same key is refused 8 times in a
	 * row. */
	for (int in_a_row = 0; small < 1000000 && in_a_row < 8;) {
		snprintf(k, sizeof(k), "%x", small);
		r = fdn_register(s, k, strlen(k), getpid(), NULL, 0, 0, NULL);
		writes++;
		if (r == 0)
			small++, in_a_row = 0;
		else if (r == FDN_ENOSPACE)
			in_a_row++;
		else
			break;
	}
	expect_nospace(r, "registering the smallest entries until full");
	*smalls_out = small;
	/* Every further write of any size is refused. */
	expect_nospace(fdn_register(s, "z", 1, getpid(), NULL, 0, 0, NULL), "a 1-byte entry");
	snprintf(k, sizeof(k), "ov-more");
	big_attrs(a, pad, k, 7);
	expect_nospace(fdn_register(s, k, strlen(k), getpid(), a, 3, 0, NULL), "a large entry");
	char bigpad[1024];
	memset(bigpad, 'q', sizeof(bigpad) - 1);
	bigpad[sizeof(bigpad) - 1] = 0;
	struct fdn_attr grow = {.name = "pad", .type = FDN_ATTR_STRING, .v.s = bigpad};
	expect_nospace(fdn_merge_attributes(s, "ov-0000000", 10, &grow, 1),
		       "an update that grows an entry");
	/* Nothing lost, nothing changed. */
	int64_t want = big + small;
	if (fdn_count(s) != want)
		st_fail(&tally, "entries full: fdn_count %lld, %lld stored",
			(long long)fdn_count(s), (long long)want);
	for (int i = 0; i < big; i++) {
		snprintf(k, sizeof(k), "ov-%07d", i);
		if (!entry_ok(s, k, i, true))
			st_fail(&tally, "entries full: %s lost or changed", k);
	}
	for (int i = 0; i < small; i++) {
		snprintf(k, sizeof(k), "%x", i);
		if (!entry_ok(s, k, i, false))
			st_fail(&tally, "entries full: %s lost or changed", k);
	}
	settle_check(s, "entries full");
	/* A quarter of the large entries go; as many new ones fit. */
	int gone = 0;
	for (int i = 0; i < big; i += 4, gone++) {
		snprintf(k, sizeof(k), "ov-%07d", i);
		r = fdn_unregister(s, k, strlen(k));
		writes++;
		if (r)
			st_fail(&tally, "entries: unregister %s: %s", k, fdn_errname(r));
	}
	int again = 0;
	for (; again < gone; again++) {
		snprintf(k, sizeof(k), "ov-n%06d", again);
		big_attrs(a, pad, k, again);
		r = fdn_register(s, k, strlen(k), getpid(), a, 3, 0, NULL);
		writes++;
		if (r) {
			st_fail(&tally, "entries: after %d unregistered, only %d fit again (%s)",
				gone, again, fdn_errname(r));
			break;
		}
	}
	for (int i = 0; i < again; i++) {
		snprintf(k, sizeof(k), "ov-n%06d", i);
		if (!entry_ok(s, k, i, true))
			st_fail(&tally, "entries: %s lost or changed", k);
	}
	settle_check(s, "entries refilled");
	return big;
}

int main(int argc, char **argv)
{
	st_prog = "stress_overload";
	st_parse(argc, argv, &opts, usage_text, NULL, NULL);
	st_setup("stress_overload", "overload");
	_Atomic int *report = st_shared(sizeof(*report));
	uint64_t t0 = st_now_ns(), end = t0 + (uint64_t)(opts.seconds * 1e9);
	uint64_t rounds = 0, kills = 0;
	int procs = 0, threads = 0, traces = 0, flags = 0, entries = 0, smalls = 0, tel[4] = {0};
	do {
		struct fdn_segment_opts o;
		fdn_segment_opts_init(&o);
		o.entries = 1024;
		o.heap_bytes = 1u << 20;
		o.processes = NPROCS;
		o.threads = NTHREADS;
		o.spans = NTRACES;
		o.indexed = "";
		fdn_segment *s = st_create(&o);
		reaper = st_reaper_start();
		procs = part_procs(s, report);
		threads = part_threads(s);
		traces = part_traces(s, report);
		flags = part_flags(s);
		part_telemetry(s, tel);
		entries = part_entries(s, &smalls);
		kills += (uint64_t)procs + 2 + 2;
		fdn_segment_detach(s);
		st_cleanup(); /* the reaper and the segment */
		st_setup("stress_overload", "overload");
		rounds++;
	} while (st_now_ns() < end && tally.violations == 0);
	return st_summary(writes, kills, &tally,
			  "seconds=%.1f rounds=%llu refused=%llu procs=%d threads=%d traces=%d "
			  "user_flags=%d rate_ids=%d samplers=%d once_keys=%d batches=%d "
			  "entries=%d+%d",
			  (double)(st_now_ns() - t0) / 1e9, (unsigned long long)rounds,
			  (unsigned long long)refused, procs, threads, traces, flags, tel[0],
			  tel[1], tel[2], tel[3], entries, smalls);
}
