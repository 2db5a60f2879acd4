/*
 * tests/test_trace.c - span stacks, error context, propagation and the
 * graveyard's copies of dead threads, on the shared backend (the segment)
 * and the local one (s == NULL), with real forked and exec'd processes.
 */
#include "common.h"
#include "lib/internal.h"

#include <foundation/context.h>
#include <foundation/reaper.h>
#include <foundation/spans.h>
#include <time.h>

static pid_t spawned[256];
static int nspawned;

static void kill_spawned(void)
{
	for (int i = 0; i < nspawned; i++)
		if (spawned[i] > 0)
			kill(spawned[i], SIGKILL);
}

TestSuite(trace, .fini = kill_spawned);

static fdn_segment *tr_create(char *name, size_t cap)
{
	t_name(name, cap, "trace");
	return t_create(name, 1000, 0);
}

/* A segment whose reaper (started by the library) holds the lease. */
static fdn_segment *tr_create_reaped(char *name, size_t cap)
{
	fdn_segment *s = tr_create(name, cap);
	for (int i = 0; i < 500 && fdn_reaper_holder(s) == 0; i++)
		usleep(10000);
	cr_assert_neq(fdn_reaper_holder(s), 0, "the library started a reaper");
	return s;
}

static void tr_destroy(fdn_segment *s, const char *name)
{
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	cr_assert_eq(fdn_segment_destroy(name), 0);
}

static fdn_segment *child_attach(const char *name)
{
	fdn_segment *s = NULL;
	if (fdn_segment_attach(name, 0, &s) != 0)
		_exit(90);
	return s;
}

/* ---- spans, one thread ------------------------------------------------------ */

static void span_basics(fdn_segment *s)
{
	struct fdn_span_info a, b;
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), FDN_ENOSPAN);
	cr_assert_eq(fdn_span_current(s, &a), FDN_ENOSPAN);
	uint64_t root, child;
	struct fdn_attr at = {.name = "user", .type = FDN_ATTR_STRING, .v.s = "bob"};
	cr_assert_eq(fdn_span_start(s, "request", &at, 1, &root), 0);
	cr_assert_eq(fdn_span_start(s, "db.query", NULL, 0, &child), 0);
	cr_assert_eq(fdn_span_depth(s), 2);
	cr_assert_eq(fdn_span_current(s, &b), 0);
	cr_assert_eq(b.span_id, child);
	cr_assert_str_eq(b.name, "db.query");
	cr_assert_eq(b.parent_id, root);
	cr_assert_eq(b.depth, 1);
	char tid[33];
	cr_assert_eq(fdn_span_trace_id(s, tid), 0);
	cr_assert_str_eq(tid, b.trace_id);
	cr_assert_eq(strlen(tid), 32);
	for (int i = 0; i < 32; i++)
		cr_assert(strchr("0123456789abcdef", tid[i]), "lowercase hex");
	/* end_id: not the top / not open */
	cr_assert_eq(fdn_span_end_id(s, root, FDN_STATUS_OK), FDN_ENOTTOP);
	cr_assert_eq(fdn_span_end_id(s, 12345, FDN_STATUS_OK), FDN_ENOSPAN);
	cr_assert_eq(fdn_span_depth(s), 2, "a refused end changes nothing");
	cr_assert_eq(fdn_span_end(s, 42), FDN_EINVAL);
	/* attributes merge into the top; too large is refused whole */
	struct fdn_attr more[2] = {{.name = "rows", .type = FDN_ATTR_INT, .v.i = 3},
				   {.name = "user", .type = FDN_ATTR_STRING, .v.s = "eve"}};
	cr_assert_eq(fdn_span_add_attributes(s, more, 2), 0);
	cr_assert_eq(fdn_span_current(s, &b), 0);
	struct fdn_attr got;
	cr_assert_eq(fdn_attrs_get(b.attrs, b.attrs_len, "user", &got), 0);
	cr_assert_str_eq(got.v.s, "eve");
	char big[300];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	struct fdn_attr huge = {.name = "blob", .type = FDN_ATTR_STRING, .v.s = big};
	cr_assert_eq(fdn_span_add_attributes(s, &huge, 1), FDN_ETOOBIG);
	cr_assert_eq(fdn_span_current(s, &a), 0);
	cr_assert_eq(a.attrs_len, b.attrs_len, "unchanged");
	cr_assert_eq(fdn_span_start(s, "x", &huge, 1, NULL), FDN_ETOOBIG);
	cr_assert_eq(fdn_span_start(s, "", NULL, 0, NULL), FDN_EINVAL);
	memset(big, 'n', 128);
	big[128] = 0;
	cr_assert_eq(fdn_span_start(s, big, NULL, 0, NULL), FDN_EINVAL, "name over 127 bytes");
	cr_assert_eq(fdn_span_record_event(s, "cache.miss", NULL, 0), 0);
	cr_assert_eq(fdn_span_link(s, tid, 7, NULL, 0), 0);
	cr_assert_eq(fdn_span_link(s, "00", 7, NULL, 0), FDN_ETRACEPARENT);
	cr_assert_eq(fdn_span_current(s, &b), 0);
	cr_assert_eq(b.nevents, 1);
	cr_assert_eq(b.nlinks, 1);
	cr_assert_eq(fdn_span_end_id(s, child, FDN_STATUS_ERROR), 0);
	cr_assert_eq(fdn_span_last_ended(s, &a), 0);
	cr_assert_eq(a.span_id, child);
	cr_assert_eq(a.status, FDN_STATUS_ERROR);
	char open_tid[FDN_TRACE_ID_HEX + 1];
	cr_assert_eq(fdn_span_trace_id(s, open_tid), 0);
	cr_assert_str_eq(a.trace_id, open_tid, "the ended child's trace is its parent's");
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(fdn_span_depth(s), 0);
	/* depth is bounded */
	for (unsigned i = 0; i < FDN_SPAN_MAX_DEPTH; i++)
		cr_assert_eq(fdn_span_start(s, "deep", NULL, 0, NULL), 0);
	cr_assert_eq(fdn_span_start(s, "one-more", NULL, 0, NULL), FDN_ESTACKOVF);
	for (unsigned i = 0; i < FDN_SPAN_MAX_DEPTH; i++)
		cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), FDN_ENOSPAN);
	/* a new root span has a new trace id */
	char t1[33], t2[33];
	cr_assert_eq(fdn_span_start(s, "r1", NULL, 0, NULL), 0);
	fdn_span_trace_id(s, t1);
	fdn_span_end(s, FDN_STATUS_OK);
	cr_assert_eq(fdn_span_start(s, "r2", NULL, 0, NULL), 0);
	fdn_span_trace_id(s, t2);
	fdn_span_end(s, FDN_STATUS_OK);
	cr_assert_str_neq(t1, t2);
}

Test(trace, span_basics_shared)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	span_basics(s);
	tr_destroy(s, name);
}

Test(trace, span_basics_local)
{
	span_basics(NULL);
}

static int cb_ok(void *arg)
{
	(void)arg;
	return 7;
}
static int cb_err(void *arg)
{
	(void)arg;
	return FDN_ENOTFOUND;
}
static int cb_abort(void *arg)
{
	(void)arg;
	return FDN_SPAN_ABORT;
}
static int cb_leave_open(void *arg)
{
	fdn_segment *s = arg;
	fdn_span_start(s, "left-open", NULL, 0, NULL);
	return 0;
}

Test(trace, with_span_statuses)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	int (*fns[3])(void *) = {cb_ok, cb_err, cb_abort};
	const int want_ret[3] = {7, FDN_ENOTFOUND, FDN_SPAN_ABORT};
	const int want_st[3] = {FDN_STATUS_OK, FDN_STATUS_ERROR, FDN_STATUS_ABORTED};
	cr_assert_eq(fdn_span_start(s, "outer", NULL, 0, NULL), 0);
	for (int i = 0; i < 1000; i++) {
		int k = i % 3;
		cr_assert_eq(fdn_with_span(s, "step", NULL, 0, fns[k], NULL), want_ret[k]);
		struct fdn_span_info last;
		cr_assert_eq(fdn_span_last_ended(s, &last), 0);
		cr_assert_eq(last.status, want_st[k], "call %d", i);
		cr_assert_str_eq(last.name, "step");
		cr_assert_eq(fdn_span_depth(s), 1);
	}
	/* spans a callback leaves open end ABORTED with it */
	cr_assert_eq(fdn_with_span(s, "w", NULL, 0, cb_leave_open, s), 0);
	cr_assert_eq(fdn_span_depth(s), 1);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(fdn_span_depth(s), 0);
	tr_destroy(s, name);
}

/* ---- propagation ----------------------------------------------------------- */

Test(trace, traceparent_roundtrip_and_malformed)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	uint64_t id;
	cr_assert_eq(fdn_span_start(s, "a", NULL, 0, &id), 0);
	char tp[FDN_TRACEPARENT_LEN + 1], tid[33], t2[33];
	cr_assert_eq(fdn_traceparent(s, tp, sizeof(tp)), 0);
	cr_assert_eq(strlen(tp), FDN_TRACEPARENT_LEN);
	uint64_t parent;
	uint8_t flags;
	cr_assert_eq(fdn_traceparent_parse(tp, t2, &parent, &flags), 0);
	fdn_span_trace_id(s, tid);
	cr_assert_str_eq(t2, tid);
	cr_assert_eq(parent, id);
	cr_assert_eq(flags, 1);
	fdn_span_end(s, FDN_STATUS_OK);
	/* continue: the next root span joins that trace as a child of id */
	cr_assert_eq(fdn_trace_continue(s, tp), 0);
	struct fdn_span_info info;
	cr_assert_eq(fdn_span_start(s, "b", NULL, 0, NULL), 0);
	fdn_span_current(s, &info);
	cr_assert_str_eq(info.trace_id, tid);
	cr_assert_eq(info.parent_id, id);
	fdn_span_end(s, FDN_STATUS_OK);
	const char *bad[] = {
	    "",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
	    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
	    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
	    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(fdn_trace_continue(s, bad[i]), FDN_ETRACEPARENT, "%s", bad[i]);
	cr_assert_eq(fdn_trace_continue(s, NULL), FDN_ETRACEPARENT);
	cr_assert_eq(fdn_traceparent_parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-"
					   "01-extra",
					   NULL, NULL, NULL),
		     0, "a later version may carry more fields");
	cr_assert_eq(fdn_traceparent(s, tp, sizeof(tp)), FDN_ENOSPAN);
	tr_destroy(s, name);
}

Test(trace, traceparent_survives_exec)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	uint64_t id;
	cr_assert_eq(fdn_span_start(s, "parent", NULL, 0, &id), 0);
	char tid[33];
	fdn_span_trace_id(s, tid);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t p = t_fork();
	if (p == 0) {
		/* The forked child exports the parent's context and execs. */
		dup2(fds[1], 1);
		close(fds[0]);
		char tp[FDN_TRACEPARENT_LEN + 1];
		snprintf(tp, sizeof(tp), "00-%s-%016llx-01", tid, (unsigned long long)id);
		setenv("TRACEPARENT", tp, 1);
		execl(TRACE_CHILD, TRACE_CHILD, name, (char *)NULL);
		_exit(91);
	}
	close(fds[1]);
	char out[256] = {0};
	ssize_t n = 0, k;
	while ((k = read(fds[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
		n += k;
	close(fds[0]);
	cr_assert(t_wait_ok(p), "trace_child ran");
	char ctid[33], second[33];
	unsigned long long cparent;
	cr_assert_eq(sscanf(out, "%32s %llx %32s", ctid, &cparent, second), 3, "output: %s", out);
	cr_assert_str_eq(ctid, tid, "the exec'd process continues the parent's trace");
	cr_assert_eq(cparent, id, "as a child of the parent's span");
	cr_assert_str_neq(second, tid, "only its first root span does");
	fdn_span_end(s, FDN_STATUS_OK);
	tr_destroy(s, name);
}

/* ---- error context ----------------------------------------------------------- */

static int64_t ctx_int(fdn_segment *s, const char *key)
{
	uint8_t buf[FDN_CTX_MAXLEN];
	size_t len;
	cr_assert_eq(fdn_ctx_get(s, buf, sizeof(buf), &len), 0);
	struct fdn_attr a;
	if (fdn_attrs_get(buf, len, key, &a) != 0)
		return -1;
	return a.v.i;
}

struct nest {
	fdn_segment *s;
	int level;
};

static int nest_fn(void *arg)
{
	struct nest *n = arg;
	/* at each level the context holds that level */
	cr_assert_eq(ctx_int(n->s, "level"), n->level);
	char key[16];
	snprintf(key, sizeof(key), "k%d", n->level);
	cr_assert_eq(ctx_int(n->s, key), n->level);
	if (n->level == 10)
		return n->level % 2 ? FDN_ENOTFOUND : 0;
	struct nest inner = {n->s, n->level + 1};
	snprintf(key, sizeof(key), "k%d", inner.level);
	struct fdn_attr a[2] = {{.name = "level", .type = FDN_ATTR_INT, .v.i = inner.level},
				{.name = key, .type = FDN_ATTR_INT, .v.i = inner.level}};
	fdn_with_context(n->s, a, 2, nest_fn, &inner);
	cr_assert_eq(ctx_int(n->s, "level"), n->level, "restored after the inner callback");
	return n->level % 3 == 0 ? FDN_EINVAL : 0; /* some levels fail */
}

static void context_basics(fdn_segment *s)
{
	struct fdn_attr base[2] = {{.name = "tenant", .type = FDN_ATTR_STRING, .v.s = "acme"},
				   {.name = "level", .type = FDN_ATTR_INT, .v.i = 0}};
	cr_assert_eq(fdn_ctx_set(s, base, 2), 0);
	struct fdn_attr k0 = {.name = "k0", .type = FDN_ATTR_INT, .v.i = 0};
	cr_assert_eq(fdn_ctx_set(s, &k0, 1), 0);
	uint8_t before[FDN_CTX_MAXLEN], after[FDN_CTX_MAXLEN];
	size_t bl, al;
	cr_assert_eq(fdn_ctx_get(s, before, sizeof(before), &bl), 0);
	for (int i = 0; i < 1000; i++) {
		struct nest n = {s, 0};
		nest_fn(&n);
		cr_assert_eq(fdn_ctx_get(s, after, sizeof(after), &al), 0);
		cr_assert_eq(al, bl, "iteration %d: base intact", i);
		cr_assert_eq(memcmp(before, after, bl), 0);
		cr_assert_eq(ctx_int(s, "k5"), -1, "no nested key remains");
	}
	/* too large: refused, nothing changes */
	static char big[FDN_CTX_MAXLEN];
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	struct fdn_attr huge = {.name = "huge", .type = FDN_ATTR_STRING, .v.s = big};
	cr_assert_eq(fdn_ctx_set(s, &huge, 1), FDN_EINVMETA, "over the 1 KiB string limit");
	big[1000] = 0;
	struct fdn_attr h4[4];
	char nm[4][8];
	for (int i = 0; i < 4; i++) {
		snprintf(nm[i], sizeof(nm[i]), "h%d", i);
		h4[i] = (struct fdn_attr){.name = nm[i], .type = FDN_ATTR_STRING, .v.s = big};
	}
	cr_assert_eq(fdn_ctx_set(s, h4, 4), FDN_ETOOBIG);
	cr_assert_eq(fdn_ctx_get(s, after, sizeof(after), &al), 0);
	cr_assert_eq(al, bl);
	cr_assert_eq(fdn_ctx_get(s, after, 3, &al), FDN_ETOOBIG);
	/* ids, child context, breadcrumbs, enrich */
	char corr[64], op[64];
	cr_assert_eq(fdn_ctx_set_correlation_id(s, "req-42"), 0);
	cr_assert_eq(fdn_ctx_set_operation_id(s, NULL), 0);
	cr_assert_eq(fdn_ctx_ids(s, corr, op), 0);
	cr_assert_str_eq(corr, "req-42");
	cr_assert_eq(strlen(op), 32);
	cr_assert_eq(fdn_ctx_set_correlation_id(s, "has space"), FDN_EINVAL);
	cr_assert_eq(fdn_ctx_child(s, "child-op"), 0);
	char corr2[64], op2[64];
	fdn_ctx_ids(s, corr2, op2);
	cr_assert_str_eq(corr2, "req-42");
	cr_assert_str_eq(op2, "child-op");
	uint8_t buf[FDN_CTX_MAXLEN];
	size_t len;
	fdn_ctx_get(s, buf, sizeof(buf), &len);
	struct fdn_attr pa;
	cr_assert_eq(fdn_attrs_get(buf, len, "parent_operation_id", &pa), 0);
	cr_assert_str_eq(pa.v.s, op);
	for (int i = 0; i < 20; i++) {
		char fn[16];
		snprintf(fn, sizeof(fn), "step%d", i);
		cr_assert_eq(fdn_ctx_breadcrumb(s, "orders", fn, NULL, 0), 0);
	}
	cr_assert_eq(fdn_ctx_breadcrumb(s, "", "f", NULL, 0), FDN_EINVAL);
	memset(big, 'm', 64);
	big[64] = 0;
	cr_assert_eq(fdn_ctx_breadcrumb(s, "mod", big, NULL, 0), FDN_ETOOBIG);
	cr_assert_eq(fdn_span_start(s, "failing", NULL, 0, NULL), 0);
	static struct fdn_error_report rep;
	cr_assert_eq(fdn_enrich_error(s, FDN_ENOTFOUND, &rep), 0);
	cr_assert_eq(rep.code, FDN_ENOTFOUND);
	cr_assert_str_eq(rep.message, "not found");
	cr_assert_str_eq(rep.correlation_id, "req-42");
	cr_assert_eq(rep.ncrumbs, FDN_CTX_CRUMBS, "the newest 16 kept");
	cr_assert_str_eq(rep.crumbs[0].function, "step4");
	cr_assert_str_eq(rep.crumbs[15].function, "step19");
	cr_assert_eq(strlen(rep.trace_id), 32);
	cr_assert_neq(rep.span_id, 0);
	cr_assert_eq(fdn_attrs_get(rep.ctx, rep.ctx_len, "tenant", &pa), 0);
	fdn_span_end(s, FDN_STATUS_ERROR);
	cr_assert_eq(fdn_ctx_clear(s), 0);
	fdn_ctx_get(s, buf, sizeof(buf), &len);
	cr_assert_eq(len, 0);
	fdn_ctx_ids(s, corr, op);
	cr_assert_str_eq(corr, "");
}

Test(trace, context_shared)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	context_basics(s);
	tr_destroy(s, name);
}

Test(trace, context_local)
{
	context_basics(NULL);
}

/* ---- many processes ----------------------------------------------------------- */

/* Each of nproc children runs body(s, i, out); the parent checks they all
 * exited 0. */
static void run_children(const char *name, int nproc, int (*body)(fdn_segment *, int, void *),
			 void *out)
{
	pid_t *pids = calloc((size_t)nproc, sizeof(pid_t));
	for (int i = 0; i < nproc; i++) {
		pid_t p = t_fork();
		cr_assert_geq(p, 0);
		if (p == 0) {
			fdn_segment *s = child_attach(name);
			int r = body(s, i, out);
			fdn_segment_detach(s);
			_exit(r);
		}
		pids[i] = p;
		if (nspawned < 256)
			spawned[nspawned++] = p;
	}
	for (int i = 0; i < nproc; i++) {
		int st;
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %#x", i, st);
	}
	nspawned = 0;
	free(pids);
}

static int ctx_body(fdn_segment *s, int me, void *out)
{
	(void)out;
	for (int k = 0; k < 1000; k++) {
		struct fdn_attr a[2] = {{.name = "who", .type = FDN_ATTR_INT, .v.i = me},
					{.name = "k", .type = FDN_ATTR_INT, .v.i = k}};
		if (fdn_ctx_set(s, a, 2) != 0)
			return 2;
		uint8_t buf[FDN_CTX_MAXLEN];
		size_t len;
		struct fdn_attr w, kk;
		if (fdn_ctx_get(s, buf, sizeof(buf), &len) != 0 ||
		    fdn_attrs_get(buf, len, "who", &w) != 0 ||
		    fdn_attrs_get(buf, len, "k", &kk) != 0)
			return 3;
		if (w.v.i != me || kk.v.i != k || fdn_attrs_count(buf, len) != 2)
			return 4; /* somebody else's context */
	}
	return 0;
}

Test(trace, contexts_never_leak_between_processes)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	run_children(name, 50, ctx_body, NULL);
	tr_destroy(s, name);
}

static int nested_body(fdn_segment *s, int me, void *out)
{
	(void)out;
	char nm[32], tid[33], first[33];
	for (int d = 0; d < 100; d++) {
		snprintf(nm, sizeof(nm), "p%d-d%d", me, d);
		if (fdn_span_start(s, nm, NULL, 0, NULL) != 0)
			return 2;
		struct fdn_span_info cur;
		if (fdn_span_current(s, &cur) != 0 || strcmp(cur.name, nm) != 0 ||
		    cur.depth != (uint32_t)d)
			return 3;
		fdn_span_trace_id(s, tid);
		if (d == 0)
			memcpy(first, tid, sizeof(tid));
		else if (strcmp(tid, first) != 0)
			return 4;
	}
	for (int d = 99; d >= 0; d--) {
		struct fdn_span_info cur;
		snprintf(nm, sizeof(nm), "p%d-d%d", me, d);
		if (fdn_span_current(s, &cur) != 0 || strcmp(cur.name, nm) != 0)
			return 5;
		if (fdn_span_end(s, FDN_STATUS_OK) != 0)
			return 6;
	}
	return fdn_span_depth(s) == 0 ? 0 : 7;
}

Test(trace, spans_never_leak_between_processes)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	run_children(name, 50, nested_body, NULL);
	tr_destroy(s, name);
}

/* 100 chains of 20: trace ids shared down a chain, different across. */
static int chain_body(fdn_segment *s, int me, void *out)
{
	char(*ids)[33] = out;
	char tid[33];
	for (int d = 0; d < 20; d++) {
		if (fdn_span_start(s, "link", NULL, 0, NULL) != 0)
			return 2;
		fdn_span_trace_id(s, tid);
		if (d == 0)
			memcpy(ids[me], tid, 33);
		else if (strcmp(ids[me], tid) != 0)
			return 3;
	}
	for (int d = 0; d < 20; d++)
		if (fdn_span_end(s, FDN_STATUS_OK) != 0)
			return 4;
	if (fdn_span_depth(s) != 0 || fdn_span_end(s, FDN_STATUS_OK) != FDN_ENOSPAN)
		return 5;
	return 0;
}

Test(trace, hundred_chains)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	char(*ids)[33] = t_shared(100 * 33);
	run_children(name, 100, chain_body, ids);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(strlen(ids[i]), 32);
		for (int j = 0; j < i; j++)
			cr_assert_str_neq(ids[i], ids[j], "chains %d and %d", i, j);
	}
	/* every stack ends empty: no slot holds a span any more */
	int open = 0;
	for (uint32_t i = 0; i < s->ntrace; i++)
		open += s->trace[i].depth;
	cr_assert_eq(open, 0);
	tr_destroy(s, name);
}

/* ---- observers ------------------------------------------------------------------ */

struct seen {
	int32_t pid;
	int snapshots, bad;
};

static int observe_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct seen *sn = arg;
	if (t->pid != sn->pid)
		return 0;
	sn->snapshots++;
	/* the writer's stack is always d0..d(n-1), one trace, parent links */
	for (uint32_t i = 0; i < t->depth; i++) {
		char want[16];
		snprintf(want, sizeof(want), "d%u", i);
		if (strcmp(t->spans[i].name, want) != 0 ||
		    strcmp(t->spans[i].trace_id, t->spans[0].trace_id) != 0 ||
		    (i > 0 && t->spans[i].parent_id != t->spans[i - 1].span_id) ||
		    t->spans[i].status != FDN_STATUS_OPEN)
			sn->bad++;
	}
	return 0;
}

Test(trace, readers_see_consistent_stacks)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	_Atomic int *stop = t_shared(2 * sizeof(*stop)), *ready = stop + 1;
	pid_t w = t_fork();
	if (w == 0) {
		fdn_segment *cs = child_attach(name);
		fdn_span_start(cs, "d0", NULL, 0, NULL);
		fdn_span_end(cs, FDN_STATUS_OK);
		atomic_store(ready, 1);
		char nm[16];
		for (unsigned k = 0; !atomic_load(stop); k++) {
			unsigned d = k % 40;
			for (unsigned i = 0; i < d; i++) {
				snprintf(nm, sizeof(nm), "d%u", i);
				fdn_span_start(cs, nm, NULL, 0, NULL);
			}
			for (unsigned i = 0; i < d; i++)
				fdn_span_end(cs, FDN_STATUS_OK);
		}
		fdn_segment_detach(cs);
		_exit(0);
	}
	spawned[nspawned++] = w;
	t_wait_ready(ready, w);
	fdn_segment *ro;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &ro), 0);
	struct seen sn = {.pid = w};
	for (int i = 0; i < 2000; i++)
		cr_assert_geq(fdn_traces_foreach(ro, w, observe_cb, &sn), 0);
	atomic_store(stop, 1);
	cr_assert(t_wait_ok(w));
	nspawned = 0;
	cr_assert_gt(sn.snapshots, 0, "the writer's slot was seen");
	cr_assert_eq(sn.bad, 0, "%d inconsistent spans in %d snapshots", sn.bad, sn.snapshots);
	fdn_segment_detach(ro);
	tr_destroy(s, name);
}

/* ---- the graveyard ---------------------------------------------------------------- */

struct ghost_seen {
	int32_t pid;
	int threads;
	uint32_t depth;
	char names[3][FDN_SPAN_NAME_MAXLEN + 1];
	char trace_id[33];
	int statuses_aborted;
	int64_t order;
	char corr[64];
};

static int ghost_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct ghost_seen *g = arg;
	g->threads++;
	g->depth = t->depth;
	for (uint32_t i = 0; i < t->depth && i < 3; i++) {
		snprintf(g->names[i], sizeof(g->names[i]), "%s", t->spans[i].name);
		g->statuses_aborted += t->spans[i].status == FDN_STATUS_ABORTED;
	}
	if (t->depth)
		memcpy(g->trace_id, t->spans[0].trace_id, 33);
	struct fdn_attr a;
	if (fdn_attrs_get(t->ctx, t->ctx_len, "order", &a) == 0)
		g->order = a.v.i;
	snprintf(g->corr, sizeof(g->corr), "%s", t->correlation_id);
	return 0;
}

static int live_cb(void *arg, const struct fdn_thread_trace *t)
{
	(void)t;
	(*(int *)arg)++;
	return 0;
}

Test(trace, graveyard_keeps_a_killed_workers_spans_and_context)
{
	char name[64];
	fdn_segment *s = tr_create_reaped(name, sizeof(name));
	_Atomic int *ready = t_shared(sizeof(*ready));
	char(*tid)[33] = t_shared(33);
	pid_t w = t_fork();
	if (w == 0) {
		fdn_segment *cs = child_attach(name);
		fdn_span_start(cs, "handle_order", NULL, 0, NULL);
		fdn_span_start(cs, "charge_card", NULL, 0, NULL);
		fdn_span_start(cs, "call_bank", NULL, 0, NULL);
		fdn_span_trace_id(cs, *tid);
		struct fdn_attr a = {.name = "order", .type = FDN_ATTR_INT, .v.i = 4711};
		fdn_ctx_set(cs, &a, 1);
		fdn_ctx_set_correlation_id(cs, "corr-4711");
		atomic_store(ready, 1);
		for (;;)
			pause();
	}
	spawned[nspawned++] = w;
	t_wait_ready(ready, w);
	int live = 0;
	fdn_traces_foreach(s, w, live_cb, &live);
	cr_assert_eq(live, 1, "the worker's slot is visible while it lives");
	kill(w, SIGKILL);
	int st;
	waitpid(w, &st, 0);
	nspawned = 0;
	struct ghost_seen g = {0};
	for (int i = 0; i < 1000 && g.threads == 0; i++) {
		usleep(2000);
		memset(&g, 0, sizeof(g));
		fdn_graveyard_traces(s, w, ghost_cb, &g);
	}
	struct fdn_death dd;
	int nd = fdn_graveyard(s, &dd, 1);
	cr_assert_eq(g.threads, 1,
		     "one thread copy in the graveyard (deaths %d, last pid %d, %llu)", nd,
		     nd > 0 ? (int)dd.pid : 0, (unsigned long long)fdn_deaths(s));
	cr_assert_eq(g.depth, 3);
	cr_assert_str_eq(g.names[0], "handle_order");
	cr_assert_str_eq(g.names[1], "charge_card");
	cr_assert_str_eq(g.names[2], "call_bank");
	cr_assert_eq(g.statuses_aborted, 3);
	cr_assert_str_eq(g.trace_id, *tid);
	cr_assert_eq(g.order, 4711);
	cr_assert_str_eq(g.corr, "corr-4711");
	live = 0;
	fdn_traces_foreach(s, w, live_cb, &live);
	cr_assert_eq(live, 0, "the dead worker's slot is freed");
	/* The death's record is written after the entries are purged, a
	 * moment after the thread copies (lib/reaper.c): wait for it too. */
	for (int i = 0; i < 1000 && (fdn_graveyard(s, &dd, 1) != 1 || dd.pid != w); i++)
		usleep(2000);
	/* The inspector shows the same, as JSON a parser accepts. */
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "%s --segment %s graveyard --json --pid %d | python3 -c '"
		 "import json,sys; d=json.load(sys.stdin); t=d[\"threads\"]; "
		 "assert len(t)==1 and t[0][\"pid\"]==%d and t[0][\"dead\"]; "
		 "assert [s[\"name\"] for s in "
		 "t[0][\"spans\"]]==[\"handle_order\",\"charge_card\",\"call_bank\"]; "
		 "assert all(s[\"trace_id\"]==\"%s\" and s[\"status\"]==\"aborted\" for s in "
		 "t[0][\"spans\"]); "
		 "assert t[0][\"context\"][\"attributes\"]=={\"order\":4711}; "
		 "assert t[0][\"context\"][\"correlation_id\"]==\"corr-4711\"; "
		 "assert d[\"graveyard\"][0][\"pid\"]==%d'",
		 INSPECT, name, (int)w, (int)w, *tid, (int)w);
	cr_assert_eq(system(cmd), 0, "foundation-inspect graveyard --json");
	snprintf(cmd, sizeof(cmd),
		 "%s --segment %s spans --json | python3 -c '"
		 "import json,sys; d=json.load(sys.stdin); "
		 "assert all(t[\"pid\"]!=%d for t in d[\"threads\"])'",
		 INSPECT, name, (int)w);
	cr_assert_eq(system(cmd), 0, "foundation-inspect spans no longer shows the worker");
	uint64_t written, dropped;
	fdn_graveyard_trace_counts(s, &written, &dropped);
	cr_assert_eq(written, 1);
	cr_assert_eq(dropped, 0);
	tr_destroy(s, name);
}

static int torn_cb(void *arg, const struct fdn_thread_trace *t)
{
	*(int *)arg = t->torn ? 1 : 2;
	return 0;
}

/* A thread killed in the middle of a write to its trace slot leaves the
 * slot's sequence word odd for ever.  The reaper copies it into the
 * graveyard at once, marked torn: it does not wait for a writer that will
 * never finish.  (It used to retry 1 000 times with a sched_yield each:
 * 7-11 ms here even with spinners on the reaper's CPU, but 3 s under
 * qemu-user beside 16 runnable writers, while the next death, not yet
 * seen, held every writer back -- stress_killstorm.) */
Test(trace, a_thread_killed_inside_a_trace_write_is_copied_at_once)
{
	char name[64];
	fdn_segment *s = tr_create_reaped(name, sizeof(name));
	_Atomic int *ready = t_shared(sizeof(*ready));
	pid_t w = t_fork();
	if (w == 0) {
		fdn_segment *cs = child_attach(name);
		fdn_span_start(cs, "handle_order", NULL, 0, NULL);
		/* Its own slot, found by pid: a write begun and never ended. */
		struct fdn_shm_trace *mine = NULL;
		for (uint32_t i = 0; i < cs->ntrace && !mine; i++)
			if (atomic_load(&cs->trace[i].owner) != 0 &&
			    cs->trace[i].pid == (uint32_t)getpid())
				mine = &cs->trace[i];
		if (!mine)
			_exit(91);
		fdn__trace_write_begin(mine);
		atomic_store(ready, 1);
		for (;;)
			pause();
	}
	spawned[nspawned++] = w;
	t_wait_ready(ready, w);
	uint64_t t0 = fdn__mono_ns();
	kill(w, SIGKILL);
	int torn = 0;
	for (int i = 0; i < 5000 && torn == 0; i++) {
		fdn_graveyard_traces(s, w, torn_cb, &torn);
		if (torn == 0)
			usleep(2000);
	}
	double secs = (double)(fdn__mono_ns() - t0) / 1e9;
	waitpid(w, NULL, 0);
	nspawned = 0;
	cr_assert_eq(torn, 1, "the dead thread's copy is in the graveyard, marked torn (%d)", torn);
	/* Generous: a busy machine still meets it. */
	cr_assert_lt(secs, 5.0, "copied %.2f s after the kill", secs);
	tr_destroy(s, name);
}

Test(trace, trace_slots_run_out_cleanly)
{
	char name[64];
	t_name(name, sizeof(name), "trace-few");
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 100;
	o.processes = 16;
	o.threads = 16;
	o.spans = 2;
	fdn_segment *s;
	cr_assert_eq(fdn_segment_create(name, &o, &s), 0);
	cr_assert_eq(fdn_span_start(s, "mine", NULL, 0, NULL), 0);
	_Atomic int *res = t_shared(4 * sizeof(int));
	for (int i = 0; i < 3; i++) {
		pid_t p = t_fork();
		if (p == 0) {
			fdn_segment *cs = child_attach(name);
			res[i] = fdn_span_start(cs, "c", NULL, 0, NULL);
			/* exits holding it: detach gives it back */
			fdn_segment_detach(cs);
			_exit(0);
		}
		cr_assert(t_wait_ok(p));
		cr_assert_eq(res[i], 0, "child %d: %s", i, fdn_strerror(res[i]));
	}
	/* two slots: ours and one that each child used and gave back */
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *cs = child_attach(name);
		res[3] = fdn_span_start(cs, "c", NULL, 0, NULL);
		int again = 0;
		pid_t q = t_fork();
		if (q == 0) {
			fdn_segment *gs = child_attach(name);
			int full = fdn_span_start(gs, "g", NULL, 0, NULL) == FDN_ENOSPACE;
			fdn_segment_detach(gs);
			_exit(full ? 0 : 1);
		}
		again = t_wait_ok(q);
		fdn_segment_detach(cs);
		_exit(again ? 0 : 1);
	}
	cr_assert(t_wait_ok(p), "a third holder gets FDN_ENOSPACE");
	cr_assert_eq(res[3], 0);
	fdn_span_end(s, FDN_STATUS_OK);
	tr_destroy(s, name);
}

/* ---- telemetry ------------------------------------------------------------------ */

#include <foundation/telemetry.h>

struct seen_ev {
	int n;
	char names[16][48];
	char status[16][16];
	char span[16][32];
	double duration[16];
	char event[16][32];
	char user[16][16];
};

static const char *ev_attr(const struct fdn_event *ev, const char *name)
{
	for (size_t i = 0; i < ev->nattrs; i++)
		if (strcmp(ev->attrs[i].name, name) == 0 && ev->attrs[i].type == FDN_ATTR_STRING)
			return ev->attrs[i].v.s;
	return "";
}

static void on_span_event(const struct fdn_event *ev, void *arg)
{
	struct seen_ev *se = arg;
	if (se->n >= 16)
		return;
	int k = se->n++;
	snprintf(se->names[k], sizeof(se->names[k]), "%s", ev->name);
	snprintf(se->status[k], sizeof(se->status[k]), "%s", ev_attr(ev, "status"));
	snprintf(se->span[k], sizeof(se->span[k]), "%s", ev_attr(ev, "span"));
	snprintf(se->event[k], sizeof(se->event[k]), "%s", ev_attr(ev, "event"));
	snprintf(se->user[k], sizeof(se->user[k]), "%s", ev_attr(ev, "user"));
	se->duration[k] = -1;
	for (size_t i = 0; i < ev->nmeasurements; i++)
		if (strcmp(ev->measurements[i].name, "duration_ns") == 0)
			se->duration[k] = ev->measurements[i].value;
}

static void span_events(fdn_segment *s)
{
	static struct seen_ev se;
	memset(&se, 0, sizeof(se));
	cr_assert_eq(fdn_handler_attach("trace-test", "foundation.span", on_span_event, &se), 0);
	struct fdn_attr u = {.name = "user", .type = FDN_ATTR_STRING, .v.s = "bob"};
	char tid[33];
	cr_assert_eq(fdn_span_start(s, "outer", &u, 1, NULL), 0);
	fdn_span_trace_id(s, tid);
	cr_assert_eq(fdn_span_add_attributes(s, &u, 1), 0);
	cr_assert_eq(fdn_span_record_event(s, "cache.miss", NULL, 0), 0);
	cr_assert_eq(fdn_span_link(s, tid, 99, NULL, 0), 0);
	cr_assert_eq(fdn_with_span(s, "inner", NULL, 0, cb_err, NULL), FDN_ENOTFOUND);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(fdn_handler_detach("trace-test"), 0);
	cr_assert_eq(fdn_span_start(s, "unseen", NULL, 0, NULL), 0);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	const char *want[] = {"foundation.span.start", "foundation.span.attributes",
			      "foundation.span.event", "foundation.span.link",
			      "foundation.span.start", "foundation.span.stop",
			      "foundation.span.stop"};
	cr_assert_eq(se.n, 7, "%d events seen", se.n);
	for (int i = 0; i < 7; i++)
		cr_assert_str_eq(se.names[i], want[i], "event %d", i);
	cr_assert_str_eq(se.span[0], "outer");
	cr_assert_str_eq(se.user[0], "bob", "the caller's attributes travel with start");
	cr_assert_str_eq(se.event[2], "cache.miss");
	cr_assert_str_eq(se.span[5], "inner");
	cr_assert_str_eq(se.status[5], "error");
	cr_assert_geq(se.duration[5], 0);
	cr_assert_str_eq(se.span[6], "outer");
	cr_assert_str_eq(se.status[6], "ok");
}

Test(trace, span_events_shared)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	span_events(s);
	tr_destroy(s, name);
}

Test(trace, span_events_local)
{
	span_events(NULL);
}

/* ---- span events in the ring: the compact form and the text form ------------ */

static void noop_handler(const struct fdn_event *ev, void *arg)
{
	(void)ev;
	(void)arg;
}

/* The start and stop events of span `span` in the ring, in order. */
static int span_events_from_ring(fdn_segment *s, const char *span, struct fdn_ring_event *out,
				 int max)
{
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	int n = 0;
	cr_assert_eq(fdn_ring_cursor_init(s, &c, true), 0);
	while (fdn_ring_next(s, &c, &ev) == 1) {
		struct fdn_attr a;
		if (strncmp(ev.name, "foundation.span.", 16) != 0 ||
		    fdn_attrs_get(ev.attrs, ev.attrs_len, "span", &a) != 0 || strcmp(a.v.s, span))
			continue;
		if (n < max)
			out[n] = ev;
		n++;
	}
	cr_assert_eq(c.lost, 0);
	return n;
}

/* One attribute as text: strings as they are, else "?". */
static const char *ring_attr(const struct fdn_ring_event *ev, const char *name)
{
	static char buf[8][64];
	static int k;
	struct fdn_attr a;
	char *b = buf[k++ % 8];
	if (fdn_attrs_get(ev->attrs, ev->attrs_len, name, &a) != 0)
		return "(absent)";
	snprintf(b, 64, "%s", a.type == FDN_ATTR_STRING ? a.v.s : "?");
	return b;
}

/* A span's start and stop written to the ring too (a new segment samples
 * them `handlers`: to this process's handlers only). */
static void spans_to_ring(fdn_segment *s, const char *spec)
{
	struct fdn_sampler sp;
	cr_assert_eq(fdn_sampler_parse(spec, &sp), 0);
	cr_assert_eq(fdn_sampler_set(s, "foundation.span.start", &sp), 0);
	cr_assert_eq(fdn_sampler_set(s, "foundation.span.stop", &sp), 0);
}

struct span_seen {
	int start, stop;
};

static void count_span_events(const struct fdn_event *ev, void *arg)
{
	struct span_seen *c = arg;
	c->start += strcmp(ev->name, "foundation.span.start") == 0;
	c->stop += strcmp(ev->name, "foundation.span.stop") == 0;
}

/* A new segment's spans: their start and stop reach a handler attached in
 * the process, and no ring record is written (sampled `handlers`), with or
 * without a handler; set `always`, both are in the ring; `handlers` on an
 * event of one's own does the same. */
Test(trace, span_events_go_to_handlers_only_by_default)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	static struct fdn_ring_event ev[4];
	struct fdn_sampler_stats st;
	cr_assert_eq(fdn_sampler_get(s, "foundation.span.start", &st), 0);
	cr_assert_eq(st.sampler.kind, FDN_SAMPLER_HANDLERS);
	cr_assert_eq(fdn_sampler_get(s, "foundation.span.stop", &st), 0);
	cr_assert_eq(st.sampler.kind, FDN_SAMPLER_HANDLERS);
	cr_assert_eq(fdn_span_start(s, "quiet", NULL, 0, NULL), 0);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(span_events_from_ring(s, "quiet", ev, 4), 0);
	struct span_seen c = {0, 0};
	cr_assert_eq(fdn_handler_attach("count", "foundation.span", count_span_events, &c), 0);
	cr_assert_eq(fdn_span_start(s, "heard", NULL, 0, NULL), 0);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(c.start, 1);
	cr_assert_eq(c.stop, 1);
	cr_assert_eq(span_events_from_ring(s, "heard", ev, 4), 0);
	/* Our own event: handlers yes, ring no; `always`: both. */
	struct fdn_sampler h;
	cr_assert_eq(fdn_sampler_parse("handlers", &h), 0);
	cr_assert_eq(fdn_sampler_set(s, "test.own", &h), 0);
	struct fdn_ring_stats rs0, rs1;
	cr_assert_eq(fdn_ring_stats(s, &rs0), 0);
	cr_assert_eq(fdn_emit(s, "test.own", NULL, 0, NULL, 0), 1);
	cr_assert_eq(fdn_ring_stats(s, &rs1), 0);
	cr_assert_eq(rs1.written, rs0.written, "a `handlers` event written to the ring");
	cr_assert_eq(fdn_handler_detach("count"), 0);
	cr_assert_eq(fdn_emit(s, "test.own", NULL, 0, NULL, 0), 0, "nobody to hand it to");
	spans_to_ring(s, "always");
	cr_assert_eq(fdn_span_start(s, "loud", NULL, 0, NULL), 0);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(span_events_from_ring(s, "loud", ev, 4), 2);
	cr_assert_eq(fdn_segment_check(s, NULL, NULL), 0);
	tr_destroy(s, name);
}

/* With nobody attached in the process, a start and a stop go to the ring
 * in compact form; with a handler attached, in text form.  Readers see
 * the same event either way: names, attributes (same names, same order),
 * measurements; ids and status as the span had them. */
Test(trace, span_events_compact_and_text_read_the_same)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	static struct fdn_ring_event ev[2][4];
	uint64_t id[2];
	char tid[2][33];
	spans_to_ring(s, "always");
	for (int form = 0; form < 2; form++) {
		const char *span = form ? "text.form" : "compact.form";
		if (form)
			cr_assert_eq(
			    fdn_handler_attach("ring-form", "foundation.span", noop_handler, NULL),
			    0);
		cr_assert_eq(fdn_span_start(s, span, NULL, 0, &id[form]), 0);
		cr_assert_eq(fdn_span_trace_id(s, tid[form]), 0);
		cr_assert_eq(fdn_span_end(s, FDN_STATUS_ERROR), 0);
		if (form)
			cr_assert_eq(fdn_handler_detach("ring-form"), 0);
		cr_assert_eq(span_events_from_ring(s, span, ev[form], 4), 2);
	}
	char sid[2][17];
	snprintf(sid[0], 17, "%016llx", (unsigned long long)id[0]);
	snprintf(sid[1], 17, "%016llx", (unsigned long long)id[1]);
	for (int k = 0; k < 2; k++) {
		const struct fdn_ring_event *c = &ev[0][k], *t = &ev[1][k];
		cr_assert_str_eq(c->name, k ? "foundation.span.stop" : "foundation.span.start");
		cr_assert_str_eq(c->name, t->name);
		cr_assert_eq(c->nmeasurements, t->nmeasurements);
		for (uint32_t i = 0; i < c->nmeasurements; i++)
			cr_assert_str_eq(c->measurements[i].name, t->measurements[i].name);
		cr_assert_eq(c->measurements[0].value, 0, "depth");
		cr_assert_eq(fdn_attrs_count(c->attrs, c->attrs_len),
			     fdn_attrs_count(t->attrs, t->attrs_len));
		for (int f = 0; f < 2; f++) {
			const struct fdn_ring_event *e = &ev[f][k];
			cr_assert_str_eq(ring_attr(e, "trace_id"), tid[f]);
			cr_assert_str_eq(ring_attr(e, "span_id"), sid[f]);
			cr_assert_str_eq(ring_attr(e, "parent_id"), "0000000000000000");
			cr_assert_str_eq(ring_attr(e, "backend"), "shared");
			cr_assert_str_eq(ring_attr(e, "status"), k ? "error" : "(absent)");
			cr_assert_eq(e->pid, getpid());
			cr_assert(!e->truncated);
		}
		cr_assert_geq(c->mono_ns, ev[0][0].mono_ns, "stop after start");
	}
	cr_assert_geq(ev[0][1].measurements[1].value, 0, "duration_ns");
	cr_assert_eq(ev[0][1].mono_ns - ev[0][0].mono_ns, (uint64_t)ev[0][1].measurements[1].value,
		     "the stop's time is the start's plus the duration");
	cr_assert_eq(ev[0][1].seq, ev[0][0].seq + 1, "the thread's events in order");
	/* Sampled `never`: no record at all. */
	spans_to_ring(s, "never");
	cr_assert_eq(fdn_span_start(s, "unsampled", NULL, 0, NULL), 0);
	cr_assert_eq(fdn_span_end(s, FDN_STATUS_OK), 0);
	cr_assert_eq(span_events_from_ring(s, "unsampled", ev[0], 4), 0);
	cr_assert_eq(fdn_segment_check(s, NULL, NULL), 0);
	tr_destroy(s, name);
}

/* ---- status, message and attributes at the end ------------------------------ */

/* The stop event of one ended span, read from the ring: status, message,
 * and the attribute "rows". */
static int stop_from_ring(fdn_segment *s, const char *span, char *status, char *message,
			  int64_t *rows)
{
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	int found = 0;
	cr_assert_eq(fdn_ring_cursor_init(s, &c, true), 0);
	while (fdn_ring_next(s, &c, &ev) == 1) {
		struct fdn_attr a;
		if (strcmp(ev.name, "foundation.span.stop") != 0 ||
		    fdn_attrs_get(ev.attrs, ev.attrs_len, "span", &a) != 0 ||
		    strcmp(a.v.s, span) != 0)
			continue;
		found++;
		if (fdn_attrs_get(ev.attrs, ev.attrs_len, "status", &a) == 0)
			snprintf(status, 16, "%s", a.v.s);
		message[0] = 0;
		if (fdn_attrs_get(ev.attrs, ev.attrs_len, "status_message", &a) == 0)
			snprintf(message, 64, "%s", a.v.s);
		*rows = -1;
		if (fdn_attrs_get(ev.attrs, ev.attrs_len, "rows", &a) == 0)
			*rows = a.v.i;
	}
	return found;
}

/* fdn_span_end_status in another process: its stop event, read here from
 * the ring, carries status, message and attributes; the span's own
 * attributes are unchanged; ending a span that is not open is FDN_ENOSPAN
 * whether or not others are open; bad input ends nothing. */
Test(trace, span_end_status_message_and_attributes)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	spans_to_ring(s, "always");
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c = child_attach(name);
		struct fdn_attr at[2] = {{.name = "rows", .type = FDN_ATTR_INT, .v.i = 42},
					 {.name = "table", .type = FDN_ATTR_STRING, .v.s = "t1"}};
		uint64_t id;
		int ok = fdn_span_start(c, "job", NULL, 0, &id) == 0 &&
			 fdn_span_end_status(c, FDN_STATUS_ERROR, "disk full", at, 2) == 0 &&
			 fdn_span_end_id(c, id, FDN_STATUS_OK) == FDN_ENOSPAN;
		fdn_segment_detach(c);
		_exit(ok ? 0 : 1);
	}
	cr_assert(t_wait_ok(p));
	char status[16] = "", message[64] = "";
	int64_t rows = 0;
	cr_assert_eq(stop_from_ring(s, "job", status, message, &rows), 1);
	cr_assert_str_eq(status, "error");
	cr_assert_str_eq(message, "disk full");
	cr_assert_eq(rows, 42);
	/* Here: no message, no attributes; the stored attributes stay. */
	struct fdn_attr u = {.name = "user", .type = FDN_ATTR_STRING, .v.s = "bob"};
	uint64_t outer, inner;
	cr_assert_eq(fdn_span_start(s, "outer", &u, 1, &outer), 0);
	cr_assert_eq(fdn_span_start(s, "inner", NULL, 0, &inner), 0);
	cr_assert_eq(fdn_span_end_status(s, FDN_STATUS_OK, NULL, NULL, 0), 0);
	cr_assert_eq(stop_from_ring(s, "inner", status, message, &rows), 1);
	cr_assert_str_eq(status, "ok");
	cr_assert_str_eq(message, "");
	cr_assert_eq(rows, -1);
	struct fdn_span_info last;
	cr_assert_eq(fdn_span_last_ended(s, &last), 0);
	cr_assert_eq(last.span_id, inner);
	cr_assert_eq(last.status, FDN_STATUS_OK);
	/* Not open: the same code with another span open and with none. */
	cr_assert_eq(fdn_span_end_id(s, inner, FDN_STATUS_OK), FDN_ENOSPAN);
	/* Bad input: nothing ends. */
	static char big[FDN_SPAN_MESSAGE_MAX + 2];
	memset(big, 'm', sizeof(big) - 1);
	struct fdn_attr bad = {.name = "", .type = FDN_ATTR_INT, .v.i = 1};
	cr_assert_eq(fdn_span_end_status(s, 9, "x", NULL, 0), FDN_EINVAL);
	cr_assert_eq(fdn_span_end_status(s, FDN_STATUS_OK, big, NULL, 0), FDN_ETOOBIG);
	cr_assert_eq(fdn_span_end_status(s, FDN_STATUS_OK, "x", &bad, 1), FDN_EINVMETA);
	cr_assert_eq(fdn_span_end_status(s, FDN_STATUS_OK, "x", NULL, 1), FDN_EINVAL);
	cr_assert_eq(fdn_span_depth(s), 1);
	struct fdn_span_info cur;
	cr_assert_eq(fdn_span_current(s, &cur), 0);
	cr_assert_eq(cur.span_id, outer);
	cr_assert_eq(cur.attrs_len > 0, true);
	cr_assert_eq(fdn_span_end_status(s, FDN_STATUS_ABORTED, "", NULL, 0), 0);
	cr_assert_eq(fdn_span_end_status(s, FDN_STATUS_OK, NULL, NULL, 0), FDN_ENOSPAN);
	cr_assert_eq(fdn_span_end_id(s, outer, FDN_STATUS_OK), FDN_ENOSPAN);
	tr_destroy(s, name);
}

/* ---- handing the context over -------------------------------------------------- */

/* A context: ids, a map and three breadcrumbs. */
static void ctx_fill(fdn_segment *s)
{
	struct fdn_attr m[2] = {{.name = "user", .type = FDN_ATTR_STRING, .v.s = "bob"},
				{.name = "n", .type = FDN_ATTR_INT, .v.i = 3}};
	cr_assert_eq(fdn_ctx_clear(s), 0);
	cr_assert_eq(fdn_ctx_set(s, m, 2), 0);
	cr_assert_eq(fdn_ctx_set_correlation_id(s, "req-42"), 0);
	cr_assert_eq(fdn_ctx_set_operation_id(s, "op-1"), 0);
	struct fdn_attr ca = {.name = "rows", .type = FDN_ATTR_INT, .v.i = 7};
	cr_assert_eq(fdn_ctx_breadcrumb(s, "orders", "load", NULL, 0), 0);
	cr_assert_eq(fdn_ctx_breadcrumb(s, "orders", "check", &ca, 1), 0);
	cr_assert_eq(fdn_ctx_breadcrumb(s, "payments", "charge", NULL, 0), 0);
}

/* What a process received, for the parent to compare. */
struct received {
	int import, enrich;
	char corr[64], op[64], type[64], text[64], user[16], crumb_fn[3][64];
	int64_t n, rows;
	uint32_t ncrumbs;
	int code;
};

static void receive(fdn_segment *c, const char *text, struct received *rv)
{
	rv->import = fdn_context_import(c, text);
	static struct fdn_error_report rep;
	rv->enrich = fdn_enrich_error_with(c, FDN_ENOTFOUND, "db.timeout", "row 7 missing", &rep);
	snprintf(rv->corr, sizeof(rv->corr), "%s", rep.correlation_id);
	snprintf(rv->op, sizeof(rv->op), "%s", rep.operation_id);
	snprintf(rv->type, sizeof(rv->type), "%s", rep.type);
	snprintf(rv->text, sizeof(rv->text), "%s", rep.message);
	rv->code = rep.code;
	struct fdn_attr a;
	if (fdn_attrs_get(rep.ctx, rep.ctx_len, "user", &a) == 0)
		snprintf(rv->user, sizeof(rv->user), "%s", a.v.s);
	rv->n = fdn_attrs_get(rep.ctx, rep.ctx_len, "n", &a) == 0 ? a.v.i : -1;
	rv->ncrumbs = rep.ncrumbs;
	for (uint32_t i = 0; i < rep.ncrumbs && i < 3; i++)
		snprintf(rv->crumb_fn[i], sizeof(rv->crumb_fn[i]), "%s", rep.crumbs[i].function);
	rv->rows = rep.ncrumbs >= 2 && fdn_attrs_get(rep.crumbs[1].attrs, rep.crumbs[1].attrs_len,
						     "rows", &a) == 0
		       ? a.v.i
		       : -1;
}

/* Exported here, imported in another process (as a string, as over a
 * pipe or an environment variable): ids, map and breadcrumbs arrive, and
 * an error enriched there carries them with its own type and message. */
Test(trace, context_export_import_across_processes)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	ctx_fill(s);
	static char text[FDN_CONTEXT_EXPORT_MAX];
	int len = fdn_context_export(s, text, sizeof(text));
	cr_assert_gt(len, 8);
	cr_assert_eq((size_t)len, strlen(text));
	cr_assert_eq(strncmp(text, "fdnctx1.", 8), 0);
	for (int i = 8; i < len; i++)
		cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
				 text[i]) != NULL,
			  "character %d: %c", i, text[i]);
	struct received *rv = t_shared(sizeof(*rv));
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c = child_attach(name);
		receive(c, text, rv);
		fdn_segment_detach(c);
		_exit(0);
	}
	cr_assert(t_wait_ok(p));
	cr_assert_eq(rv->import, 0);
	cr_assert_eq(rv->enrich, 0);
	cr_assert_str_eq(rv->corr, "req-42");
	cr_assert_str_eq(rv->op, "op-1");
	cr_assert_str_eq(rv->user, "bob");
	cr_assert_eq(rv->n, 3);
	cr_assert_eq(rv->ncrumbs, 3);
	cr_assert_str_eq(rv->crumb_fn[0], "load");
	cr_assert_str_eq(rv->crumb_fn[1], "check");
	cr_assert_str_eq(rv->crumb_fn[2], "charge");
	cr_assert_eq(rv->rows, 7);
	cr_assert_eq(rv->code, FDN_ENOTFOUND);
	cr_assert_str_eq(rv->type, "db.timeout");
	cr_assert_str_eq(rv->text, "row 7 missing");
	/* The process-local backend takes the same text. */
	cr_assert_eq(fdn_ctx_clear(NULL), 0);
	cr_assert_eq(fdn_context_import(NULL, text), 0);
	char corr[64], op[64];
	cr_assert_eq(fdn_ctx_ids(NULL, corr, op), 0);
	cr_assert_str_eq(corr, "req-42");
	static char again[FDN_CONTEXT_EXPORT_MAX];
	cr_assert_eq(fdn_context_export(NULL, again, sizeof(again)), len);
	cr_assert_str_eq(again, text, "the same context exports the same text");
	tr_destroy(s, name);
}

/* FOUNDATION_CONTEXT: a program exec'd after fdn_context_setenv has the
 * context in the first thread that uses one. */
Test(trace, context_survives_exec)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	ctx_fill(s);
	cr_assert_eq(fdn_context_setenv(s), 0);
	cr_assert_not_null(getenv("FOUNDATION_CONTEXT"));
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t p = t_fork();
	if (p == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(TRACE_CHILD, TRACE_CHILD, name, "context", (char *)NULL);
		_exit(91);
	}
	close(fds[1]);
	char out[256] = {0};
	ssize_t n = 0, k;
	while ((k = read(fds[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
		n += k;
	close(fds[0]);
	cr_assert(t_wait_ok(p), "trace_child ran");
	cr_assert_str_eq(out, "req-42 op-1 3 charge bob\n");
	/* A malformed variable is ignored: the child starts empty. */
	setenv("FOUNDATION_CONTEXT", "fdnctx1.garbage", 1);
	cr_assert_eq(pipe(fds), 0);
	p = t_fork();
	if (p == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(TRACE_CHILD, TRACE_CHILD, name, "context", (char *)NULL);
		_exit(91);
	}
	close(fds[1]);
	memset(out, 0, sizeof(out));
	n = 0;
	while ((k = read(fds[0], out + n, sizeof(out) - 1 - (size_t)n)) > 0)
		n += k;
	close(fds[0]);
	cr_assert(t_wait_ok(p));
	cr_assert_str_eq(out, "- - 0 - -\n");
	unsetenv("FOUNDATION_CONTEXT");
	tr_destroy(s, name);
}

/* Malformed text changes nothing; a short buffer is FDN_ETOOBIG; an empty
 * context round-trips. */
Test(trace, context_import_refuses_malformed_text)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	ctx_fill(s);
	static char text[FDN_CONTEXT_EXPORT_MAX], bad[FDN_CONTEXT_EXPORT_MAX];
	int len = fdn_context_export(s, text, sizeof(text));
	cr_assert_gt(len, 0);
	cr_assert_eq(fdn_context_export(s, bad, (size_t)len), FDN_ETOOBIG);
	cr_assert_eq(fdn_context_export(s, NULL, 0), FDN_ETOOBIG);
	cr_assert_eq(fdn_ctx_clear(s), 0);
	cr_assert_eq(fdn_ctx_set_correlation_id(s, "mine"), 0);
	const char *cases[] = {"", "fdnctx1.", "fdnctx2.AAAA", "xyz", "fdnctx1.@@@@", "fdnctx1.A"};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(fdn_context_import(s, cases[i]), FDN_ECONTEXT, "case %zu", i);
	cr_assert_eq(fdn_context_import(s, NULL), FDN_ECONTEXT);
	/* One character changed anywhere in the body: the checksum (or the
	 * alphabet) refuses it; cut short: refused. */
	for (int i = 8; i < len; i += 7) {
		memcpy(bad, text, (size_t)len + 1);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		cr_assert_eq(fdn_context_import(s, bad), FDN_ECONTEXT, "changed at %d", i);
	}
	memcpy(bad, text, (size_t)len + 1);
	bad[len - 3] = 0;
	cr_assert_eq(fdn_context_import(s, bad), FDN_ECONTEXT);
	char corr[64];
	cr_assert_eq(fdn_ctx_ids(s, corr, NULL), 0);
	cr_assert_str_eq(corr, "mine", "nothing changed");
	/* Empty: exports, and imports to an empty context. */
	cr_assert_eq(fdn_ctx_clear(s), 0);
	cr_assert_gt(fdn_context_export(s, text, sizeof(text)), 8);
	ctx_fill(s);
	cr_assert_eq(fdn_context_import(s, text), 0);
	size_t clen;
	cr_assert_eq(fdn_ctx_get(s, NULL, 0, &clen), 0);
	cr_assert_eq(clen, 0);
	cr_assert_eq(fdn_ctx_ids(s, corr, NULL), 0);
	cr_assert_str_eq(corr, "");
	struct fdn_error_report rep;
	cr_assert_eq(fdn_enrich_error(s, FDN_EINVAL, &rep), 0);
	cr_assert_eq(rep.ncrumbs, 0);
	tr_destroy(s, name);
}

static int replaced_cb(void *arg)
{
	fdn_segment *s = arg;
	uint8_t buf[FDN_CTX_MAXLEN];
	size_t len;
	struct fdn_attr a;
	if (fdn_ctx_get(s, buf, sizeof(buf), &len) || fdn_attrs_count(buf, len) != 1 ||
	    fdn_attrs_get(buf, len, "tenant", &a) || strcmp(a.v.s, "t9") != 0)
		return -100;
	return 5;
}

static int emptied_cb(void *arg)
{
	size_t len = 99;
	return fdn_ctx_get(arg, NULL, 0, &len) == 0 && len == 0 ? 6 : -101;
}

/* fdn_with_context_mode REPLACE: inside, the map is exactly the given
 * attributes (or empty); after, the old map again; ids and crumbs kept. */
static void with_context_replace(fdn_segment *s)
{
	ctx_fill(s);
	uint8_t before[FDN_CTX_MAXLEN], after[FDN_CTX_MAXLEN];
	size_t blen, alen;
	cr_assert_eq(fdn_ctx_get(s, before, sizeof(before), &blen), 0);
	struct fdn_attr t = {.name = "tenant", .type = FDN_ATTR_STRING, .v.s = "t9"};
	cr_assert_eq(fdn_with_context_mode(s, &t, 1, FDN_CTX_REPLACE, replaced_cb, s), 5);
	cr_assert_eq(fdn_with_context_mode(s, NULL, 0, FDN_CTX_REPLACE, emptied_cb, s), 6);
	cr_assert_eq(fdn_ctx_get(s, after, sizeof(after), &alen), 0);
	cr_assert_eq(alen, blen);
	cr_assert_eq(memcmp(before, after, blen), 0);
	char corr[64];
	cr_assert_eq(fdn_ctx_ids(s, corr, NULL), 0);
	cr_assert_str_eq(corr, "req-42");
	/* MERGE is fdn_with_context: the old map plus tenant inside. */
	cr_assert_eq(fdn_with_context_mode(s, &t, 1, FDN_CTX_MERGE, replaced_cb, s), -100);
	cr_assert_eq(fdn_with_context_mode(s, &t, 1, (enum fdn_ctx_mode)7, replaced_cb, s),
		     FDN_EINVAL);
	cr_assert_eq(fdn_with_context_mode(s, &t, 1, FDN_CTX_REPLACE, NULL, s), FDN_EINVAL);
	struct fdn_attr bad = {.name = "", .type = FDN_ATTR_INT};
	cr_assert_eq(fdn_with_context_mode(s, &bad, 1, FDN_CTX_REPLACE, replaced_cb, s),
		     FDN_EINVMETA);
	/* enrich_error_with: bad type, long message; NULL message. */
	static struct fdn_error_report rep;
	static char longmsg[FDN_ERROR_MESSAGE_MAX + 2];
	memset(longmsg, 'x', sizeof(longmsg) - 1);
	cr_assert_eq(fdn_enrich_error_with(s, FDN_EINVAL, "has space", NULL, &rep), FDN_EINVAL);
	cr_assert_eq(fdn_enrich_error_with(s, FDN_EINVAL, "t", longmsg, &rep), FDN_ETOOBIG);
	cr_assert_eq(fdn_enrich_error_with(s, FDN_EINVAL, "t", NULL, NULL), FDN_EINVAL);
	cr_assert_eq(fdn_enrich_error_with(s, FDN_EINVAL, NULL, NULL, &rep), 0);
	cr_assert_str_eq(rep.message, fdn_strerror(FDN_EINVAL));
	cr_assert_str_eq(rep.type, "");
	cr_assert_eq(fdn_ctx_clear(s), 0);
}

/* What another process sees of a thread's map: its attribute count and
 * whether it holds tenant. */
struct seen_map {
	int slots, attrs, tenant;
};

static int seen_map_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct seen_map *m = arg;
	struct fdn_attr a;
	m->slots++;
	m->attrs = (int)fdn_attrs_count(t->ctx, t->ctx_len);
	m->tenant = fdn_attrs_get(t->ctx, t->ctx_len, "tenant", &a) == 0;
	return 0;
}

struct observe_arg {
	const char *name;
	pid_t pid;
	struct seen_map m;
};

/* Runs inside the replaced context: a forked process reads this thread's
 * slot from the segment. */
static int observe_replaced(void *arg)
{
	struct observe_arg *o = arg;
	struct seen_map *shared = t_shared(sizeof(*shared));
	pid_t p = fork();
	if (p == 0) {
		fdn_segment *c = child_attach(o->name);
		fdn_traces_foreach(c, o->pid, seen_map_cb, shared);
		fdn_segment_detach(c);
		_exit(0);
	}
	int ok = t_wait_ok(p);
	o->m = *shared;
	return ok ? 0 : -1;
}

Test(trace, with_context_replace_shared)
{
	char name[64];
	fdn_segment *s = tr_create(name, sizeof(name));
	with_context_replace(s);
	/* Another process sees the replaced map while fn runs, and the
	 * restored one after. */
	ctx_fill(s);
	struct fdn_attr t = {.name = "tenant", .type = FDN_ATTR_STRING, .v.s = "t9"};
	struct observe_arg o = {name, getpid(), {0, 0, 0}};
	cr_assert_eq(fdn_with_context_mode(s, &t, 1, FDN_CTX_REPLACE, observe_replaced, &o), 0);
	cr_assert_eq(o.m.slots, 1);
	cr_assert_eq(o.m.attrs, 1);
	cr_assert_eq(o.m.tenant, 1);
	struct seen_map after = {0, 0, 0};
	cr_assert_geq(fdn_traces_foreach(s, getpid(), seen_map_cb, &after), 0);
	cr_assert_eq(after.attrs, 2, "user and n again");
	cr_assert_eq(after.tenant, 0);
	cr_assert_eq(fdn_ctx_clear(s), 0);
	tr_destroy(s, name);
}

Test(trace, with_context_replace_local)
{
	with_context_replace(NULL);
}
