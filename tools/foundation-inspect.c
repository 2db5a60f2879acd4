/*
 * foundation-inspect - look at a segment without touching it: registry
 * entries, process slots, the graveyard, usage statistics, the integrity
 * check; as aligned text or as JSON (--json).
 *
 * It attaches with FDN_SEG_READONLY only: the mapping is read-only, no
 * process or reader slot is taken, nothing is ever written, and no reaper is
 * started.  Read-only reads take no grace period, so what a callback copies
 * is validated again before it is printed.
 *
 * JSON strings.  Quote, backslash and control characters (below 0x20, and
 * 0x7f) are written as \" \\ and \u00XX.  Valid UTF-8 passes through as it
 * is; every byte that is not part of a valid UTF-8 sequence (keys may hold
 * any byte) is written as \u00XX, the code point of the same value (as if it
 * were Latin-1).  Text output escapes the same bytes as \xNN.
 *
 * Exit status: 0 done; 1 an error (one line on stderr,
 * "foundation-inspect: <what>: <why>") or a failed check; 2 bad usage.
 */
#include "cli.h"
#include "lib/metrics.h"
#include "shm/shm.h"

#include <foundation/attrs.h>
#include <foundation/changes.h>
#include <foundation/context.h>
#include <foundation/flags.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/segment.h>
#include <foundation/telemetry.h>

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
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>

const char *prog = "foundation-inspect";

struct args {
	const char *segment;
	bool json;
	const char *attr;     /* registry --attr NAME=VALUE */
	const char *prefix;   /* registry --prefix P */
	int32_t pid;          /* spans, graveyard --pid P; 0 = all */
	bool follow;          /* events --follow */
	const char *name;     /* events --name PREFIX */
	uint64_t count;       /* events --count N (0: no limit) */
	uint64_t timeout_s;   /* events --timeout S (0: none) */
	const char *listen;   /* metrics --listen HOST:PORT */
	const char *textfile; /* metrics --textfile PATH */
};

struct command {
	const char *name;
	const char *allowed; /* option letters beyond --json, --segment, --help */
	int (*run)(fdn_segment *s, const struct args *a);
	const char *synopsis;
	const char *help;
};

/* Errors reported so far (dump tells a failed command from a check that
 * found violations by it). */
static unsigned complaints;

__attribute__((format(printf, 3, 4))) static int complain(int status, const char *why,
							  const char *fmt, ...)
{
	va_list ap;
	complaints++;
	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	char buf[256];
	fprintf(stderr, ": %s\n", lower_first(why, buf, sizeof(buf)));
	return status;
}

/* ---- registry ----------------------------------------------------------------- */

/* Entries, all or those with one attribute value. */
static int registry_collect(fdn_segment *s, const struct args *a, struct rows *rs)
{
	const char *items[FDN_ATTR_LIST_MAX];
	struct fdn_attr want;
	char *text = NULL;
	int r;
	if (a->attr) {
		if (!(text = strdup(a->attr)))
			return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "attribute");
		const char *why = attr_parse(text, &want, items, FDN_ATTR_LIST_MAX);
		if (why) {
			r = usage_error("registry", "registry --attr \"%s\": %s", a->attr, why);
			free(text);
			return r;
		}
		r = fdn_find_by_attribute(s, want.name, &want, rows_collect, rs);
	} else {
		r = fdn_foreach(s, rows_collect, rs);
	}
	free(text);
	if (r < 0 && a->attr)
		return complain(EXIT_FAIL, fdn_strerror(r), "attribute \"%s\"", a->attr);
	if (r < 0)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": registry", a->segment);
	return EXIT_OK;
}

static int cmd_registry(fdn_segment *s, const struct args *a)
{
	struct rows rs = {.prefix = a->prefix};
	int status = registry_collect(s, a, &rs);
	if (status == EXIT_OK) {
		if (rs.n)
			qsort(rs.v, rs.n, sizeof(*rs.v), row_cmp);
		if (a->json)
			rows_json(a->segment, &rs);
		else
			status = rows_text(&rs);
	}
	rows_free(&rs);
	return status;
}

/* ---- processes ------------------------------------------------------------------- */

static const char *ident_kind(uint32_t kind)
{
	return kind == FDN_IDENT_PIDFS       ? "pidfs"
	       : kind == FDN_IDENT_STARTTIME ? "starttime"
					     : "none";
}

struct proc_row {
	uint32_t slot;
	uint64_t word, ident, attach_ns;
	uint32_t kind, uid, claimer, readers;
};

/* Slot i as a row; false if the slot is free. */
static bool proc_row(fdn_segment *s, uint32_t i, const uint32_t *readers, struct proc_row *p)
{
	const struct fdn_shm_proc *sp = &s->procs[i];
	uint64_t w = atomic_load_explicit(&sp->word, memory_order_acquire);
	if (FDN_PROC_STATE(w) == FDN_PROC_FREE)
		return false;
	*p = (struct proc_row){i,
			       w,
			       atomic_load_explicit(&sp->ident, memory_order_relaxed),
			       atomic_load_explicit(&sp->attach_ns, memory_order_relaxed),
			       atomic_load_explicit(&sp->ident_kind, memory_order_relaxed),
			       atomic_load_explicit(&sp->uid, memory_order_relaxed),
			       atomic_load_explicit(&sp->claimer_pid, memory_order_relaxed),
			       readers[i]};
	return true;
}

static const char *proc_state(uint64_t w)
{
	return FDN_PROC_STATE(w) == FDN_PROC_LIVE   ? "live"
	       : FDN_PROC_STATE(w) == FDN_PROC_DEAD ? "dead"
	       : FDN_PROC_STATE(w) == FDN_PROC_LEFT ? "left"
						    : "invalid";
}

/* Reader slots in use, per owning process slot. */
static uint32_t *count_readers(fdn_segment *s)
{
	uint32_t *n = calloc(s->nprocs, sizeof(*n));
	if (!n)
		return NULL;
	for (uint32_t t = 0; t < s->nthreads; t++) {
		uint64_t w = atomic_load_explicit(&s->tslots[t].state, memory_order_relaxed);
		if (FDN_TSLOT_KIND(w) == FDN_TSLOT_USED && FDN_TSLOT_OWNER(w) < s->nprocs)
			n[FDN_TSLOT_OWNER(w)]++;
	}
	return n;
}

static void processes_json(fdn_segment *s, const struct args *a, const uint32_t *readers)
{
	struct proc_row p;
	bool first = true;
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
	printf(",\"processes\":[");
	for (uint32_t i = 0; i < s->nprocs; i++) {
		if (!proc_row(s, i, readers, &p))
			continue;
		printf("%s\n  {\"slot\":%u,\"pid\":%u,\"state\":\"%s\",\"ident\":%" PRIu64
		       ",\"ident_kind\":\"%s\",\"uid\":%u,\"attached_ns\":%" PRIu64
		       ",\"claimer_pid\":%u,\"reader_slots\":%u}",
		       first ? "" : ",", p.slot, FDN_PROC_PID(p.word), proc_state(p.word), p.ident,
		       ident_kind(p.kind), p.uid, p.attach_ns, p.claimer, p.readers);
		first = false;
	}
	printf("%s]}\n", first ? "" : "\n");
}

static int processes_text(fdn_segment *s, const uint32_t *readers)
{
	struct table t = {.ncol = 8, .align = "rrllrlrr"};
	struct proc_row p;
	char buf[40];
	const char *head[] = {"SLOT", "PID",      "STATE",   "IDENT",
			      "UID",  "ATTACHED", "READERS", "CLAIMER"};
	for (size_t i = 0; i < 8; i++)
		cellf(&t, "%s", head[i]);
	for (uint32_t i = 0; i < s->nprocs; i++) {
		if (!proc_row(s, i, readers, &p))
			continue;
		cellf(&t, "%u", p.slot);
		cellf(&t, "%u", FDN_PROC_PID(p.word));
		cellf(&t, "%s", proc_state(p.word));
		cellf(&t, "%s:%" PRIu64, ident_kind(p.kind), p.ident);
		cellf(&t, "%u", p.uid);
		cellf(&t, "%s", iso_time(p.attach_ns, buf, sizeof(buf)));
		cellf(&t, "%u", p.readers);
		cellf(&t, "%u", p.claimer);
	}
	return table_done(&t);
}

static int cmd_processes(fdn_segment *s, const struct args *a)
{
	uint32_t *readers = count_readers(s);
	if (!readers)
		return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "processes");
	int status = EXIT_OK;
	if (a->json)
		processes_json(s, a, readers);
	else
		status = processes_text(s, readers);
	free(readers);
	return status;
}

/* ---- spans and contexts: live threads and the graveyard's copies ------------------- */

static const char *status_name(int st)
{
	static const char *const names[] = {"open", "ok", "error", "aborted"};
	return st >= 0 && st <= 3 ? names[st] : "?";
}

static void thread_json(const struct fdn_thread_trace *t)
{
	char buf[40];
	printf("\n  {\"pid\":%d,\"tid\":%u,\"dead\":%s,\"torn\":%s,\"claimed_ns\":%" PRIu64,
	       (int)t->pid, t->tid, t->dead ? "true" : "false", t->torn ? "true" : "false",
	       t->claimed_real);
	if (t->dead)
		printf(",\"died_ns\":%" PRIu64 ",\"died\":\"%s\"", t->died_real,
		       iso_time(t->died_real, buf, sizeof(buf)));
	printf(",\"depth\":%u,\"spans\":[", t->depth);
	for (uint32_t i = 0; i < t->depth; i++) {
		const struct fdn_span_info *sp = &t->spans[i];
		printf("%s\n    {\"depth\":%u,\"name\":", i ? "," : "", sp->depth);
		json_cstr(stdout, sp->name);
		printf(",\"trace_id\":\"%s\",\"span_id\":\"%016" PRIx64
		       "\",\"parent_id\":\"%016" PRIx64
		       "\",\"status\":\"%s\",\"%s\":%.6f,\"events\":%u,\"links\":%u,"
		       "\"attributes\":",
		       sp->trace_id, sp->span_id, sp->parent_id, status_name(sp->status),
		       t->dead ? "duration_ms" : "age_ms", (double)sp->duration_ns / 1e6,
		       sp->nevents, sp->nlinks);
		attr_set(stdout, sp->attrs, sp->attrs_len, true);
		putchar('}');
	}
	printf("],\"context\":{\"correlation_id\":");
	json_cstr(stdout, t->correlation_id);
	printf(",\"operation_id\":");
	json_cstr(stdout, t->operation_id);
	printf(",\"attributes\":");
	attr_set(stdout, t->ctx, t->ctx_len, true);
	printf(",\"breadcrumbs\":[");
	for (uint32_t i = 0; i < t->ncrumbs; i++) {
		const struct fdn_crumb *c = &t->crumbs[i];
		printf("%s{\"time_ns\":%" PRIu64 ",\"module\":", i ? "," : "", c->time_real);
		json_cstr(stdout, c->module);
		printf(",\"function\":");
		json_cstr(stdout, c->function);
		printf(",\"attributes\":");
		attr_set(stdout, c->attrs, c->attrs_len, true);
		putchar('}');
	}
	printf("]}}");
}

static int thread_text(const struct fdn_thread_trace *t)
{
	char buf[40], *cell;
	size_t len;
	printf("pid %d thread %u%s%s: %u open span%s\n", (int)t->pid, t->tid,
	       t->dead ? ", died " : "", t->dead ? iso_time(t->died_real, buf, sizeof(buf)) : "",
	       t->depth, t->depth == 1 ? "" : "s");
	if (t->torn)
		printf("  (copied while being written: fields may be partial)\n");
	if (t->depth) {
		struct table tb = {.ncol = 8, .align = "rllllrll"};
		const char *head[] = {"DEPTH",   "NAME",      "TRACE_ID",
				      "SPAN_ID", "PARENT",    t->dead ? "DURATION_MS" : "AGE_MS",
				      "STATUS",  "ATTRIBUTES"};
		for (size_t i = 0; i < 8; i++)
			cellf(&tb, "%s", head[i]);
		for (uint32_t i = 0; i < t->depth; i++) {
			const struct fdn_span_info *sp = &t->spans[i];
			cellf(&tb, "%u", sp->depth);
			FILE *f = cell_open(&cell, &len);
			if (f)
				text_str(f, sp->name, strlen(sp->name));
			cell_close(&tb, f, &cell);
			cellf(&tb, "%s", sp->trace_id);
			cellf(&tb, "%016" PRIx64, sp->span_id);
			cellf(&tb, "%016" PRIx64, sp->parent_id);
			cellf(&tb, "%.3f", (double)sp->duration_ns / 1e6);
			cellf(&tb, "%s", status_name(sp->status));
			if (sp->attrs_len == 0) {
				cellf(&tb, "-");
				continue;
			}
			f = cell_open(&cell, &len);
			if (f)
				attr_set(f, sp->attrs, sp->attrs_len, false);
			cell_close(&tb, f, &cell);
		}
		if (table_done(&tb) != EXIT_OK)
			return EXIT_FAIL;
	}
	if (t->correlation_id[0] || t->operation_id[0])
		printf("  correlation %s  operation %s\n",
		       t->correlation_id[0] ? t->correlation_id : "-",
		       t->operation_id[0] ? t->operation_id : "-");
	if (t->ctx_len) {
		printf("  context: ");
		attr_set(stdout, t->ctx, t->ctx_len, false);
		putchar('\n');
	}
	for (uint32_t i = 0; i < t->ncrumbs; i++) {
		const struct fdn_crumb *c = &t->crumbs[i];
		printf("  breadcrumb %s %s.%s", iso_time(c->time_real, buf, sizeof(buf)), c->module,
		       c->function);
		if (c->attrs_len) {
			putchar(' ');
			attr_set(stdout, c->attrs, c->attrs_len, false);
		}
		putchar('\n');
	}
	return EXIT_OK;
}

struct threads_out {
	bool json;
	int n;
	int status;
};

static int thread_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct threads_out *o = arg;
	if (o->json) {
		if (o->n)
			putchar(',');
		thread_json(t);
	} else {
		if (o->n)
			putchar('\n');
		if (thread_text(t) != EXIT_OK)
			o->status = EXIT_FAIL;
	}
	o->n++;
	return 0;
}

static int cmd_spans(fdn_segment *s, const struct args *a)
{
	struct threads_out o = {.json = a->json};
	if (a->json) {
		printf("{\"segment\":");
		json_cstr(stdout, a->segment);
		printf(",\"threads\":[");
	}
	int r = fdn_traces_foreach(s, a->pid, thread_cb, &o);
	if (r < 0) {
		fflush(stdout);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": spans", a->segment);
	}
	if (a->json)
		printf("%s],\"count\":%d,\"skipped\":%d}\n", o.n ? "\n" : "", o.n, r);
	else if (o.n == 0)
		printf("no thread holds spans or a context%s\n", a->pid ? " in that process" : "");
	if (!a->json && r > 0)
		printf("%d slot%s skipped: rewritten during every read\n", r, r == 1 ? "" : "s");
	return o.status;
}

/* ---- graveyard --------------------------------------------------------------------- */

static void graveyard_json(const struct args *a, uint64_t total, const struct fdn_death *d, int n)
{
	char buf[40];
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
	printf(",\"deaths_total\":%" PRIu64 ",\"graveyard\":[", total);
	for (int i = 0, k = 0; i < n; i++)
		if (a->pid == 0 || (int32_t)d[i].pid == a->pid)
			printf("%s\n  {\"number\":%" PRIu64
			       ",\"pid\":%d,\"signal\":%d,\"status\":%d,"
			       "\"ident\":%" PRIu64 ",\"died_ns\":%" PRIu64 ",\"died\":\"%s\","
			       "\"latency_ms\":%.6f,\"entries\":%" PRIu64 "}",
			       k++ ? "," : "", d[i].number, (int)d[i].pid, d[i].exit_signal,
			       d[i].exit_status, d[i].ident, d[i].died_ns,
			       iso_time(d[i].died_ns, buf, sizeof(buf)),
			       (double)d[i].latency_ns / 1e6, d[i].entries);
	printf("%s]", n ? "\n" : "");
}

/* "SIGKILL", "-" (it exited), "?" (unknown). */
static void signal_cell(struct table *t, int sig)
{
	const char *name = sig > 0 ? sigabbrev_np(sig) : NULL;
	if (name)
		cellf(t, "SIG%s", name);
	else
		cellf(t, "%s", sig == 0 ? "-" : sig < 0 ? "?" : "unknown");
}

static int graveyard_text(const struct args *a, uint64_t total, const struct fdn_death *d, int n)
{
	struct table t = {.ncol = 7, .align = "rrlrlrr"};
	char buf[40];
	const char *head[] = {"NUMBER", "PID", "SIGNAL", "STATUS", "DIED", "LATENCY_MS", "ENTRIES"};
	printf("%" PRIu64 " deaths in total%s\n", total, n ? "; the most recent first:" : "");
	if (n == 0)
		return EXIT_OK;
	for (size_t i = 0; i < 7; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		if (a->pid != 0 && (int32_t)d[i].pid != a->pid)
			continue;
		cellf(&t, "%" PRIu64, d[i].number);
		cellf(&t, "%d", (int)d[i].pid);
		signal_cell(&t, d[i].exit_signal);
		if (d[i].exit_status >= 0)
			cellf(&t, "%d", d[i].exit_status);
		else
			cellf(&t, "-");
		cellf(&t, "%s", iso_time(d[i].died_ns, buf, sizeof(buf)));
		cellf(&t, "%.3f", (double)d[i].latency_ns / 1e6);
		cellf(&t, "%" PRIu64, d[i].entries);
	}
	return table_done(&t);
}

static int cmd_graveyard(fdn_segment *s, const struct args *a)
{
	static struct fdn_death d[FDN_GRAVEYARD_MAX];
	int n = fdn_graveyard(s, d, (int)FDN_GRAVEYARD_MAX);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": graveyard",
				a->segment);
	uint64_t total = fdn_deaths(s), written, dropped;
	fdn_graveyard_trace_counts(s, &written, &dropped);
	struct threads_out o = {.json = a->json};
	if (a->json) {
		graveyard_json(a, total, d, n);
		printf(",\"threads_total\":%" PRIu64 ",\"threads_dropped\":%" PRIu64
		       ",\"threads\":[",
		       written, dropped);
	} else {
		if (graveyard_text(a, total, d, n) != EXIT_OK)
			return EXIT_FAIL;
		printf("\n%" PRIu64 " dead thread%s copied, %" PRIu64
		       " of them dropped (the oldest)%s\n",
		       written, written == 1 ? "" : "s", dropped,
		       written ? "; what they were doing, the most recent first:" : "");
	}
	int r = fdn_graveyard_traces(s, a->pid, thread_cb, &o);
	if (r < 0) {
		fflush(stdout);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": graveyard",
				a->segment);
	}
	if (a->json)
		printf("%s]}\n", o.n ? "\n" : "");
	return o.status;
}

/* ---- stats --------------------------------------------------------------------------- */

static double load(const struct fdn_table_stats *t)
{
	return t->buckets ? (double)t->entries / (double)t->buckets : 0.0;
}

/* The indexed attributes, comma-separated (at most 8 x 32 bytes). */
static void indexed_names(fdn_segment *s, char *buf, size_t cap)
{
	size_t n = 0;
	buf[0] = 0;
	for (uint32_t i = 0; i < FDN_MAX_INDEXED; i++) {
		const char *name = s->hdr->indexed[i];
		size_t len = strnlen(name, FDN_INDEXED_NAME_MAX);
		if (len && n + len + 2 < cap)
			n += (size_t)snprintf(buf + n, cap - n, "%s%.*s", n ? "," : "", (int)len,
					      name);
	}
}

/* Where the segment lives and what pages back it: its file, the file
 * system (tmpfs, hugetlbfs, ...), the page size of our mapping
 * (KernelPageSize: 2048 kB on hugetlbfs) and how much of it this process
 * maps with huge pages (tmpfs mounted huge=..., or shmem THP; counted over
 * what it touched: the walks of this command). */
struct where {
	char path[PATH_MAX];
	const char *fs;
	uint64_t page_kb, huge_kb;
};

static void segment_where(fdn_segment *s, const char *name, struct where *w)
{
	memset(w, 0, sizeof(*w));
	if (fdn_segment_path(name, w->path, sizeof(w->path)) != 0)
		w->path[0] = 0;
	struct statfs sf;
	w->fs = "other";
	if (fstatfs(s->fd, &sf) == 0)
		w->fs = (unsigned long)sf.f_type == 0x01021994ul   ? "tmpfs"
			: (unsigned long)sf.f_type == 0x958458f6ul ? "hugetlbfs"
								   : "other";
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return;
	char line[256];
	bool in = false;
	uintptr_t base = (uintptr_t)s->base;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, v;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo >= base && hi <= base + s->size;
			continue;
		}
		if (!in)
			continue;
		if (sscanf(line, "KernelPageSize: %lu kB", &v) == 1 && v > w->page_kb)
			w->page_kb = v;
		else if (sscanf(line, "ShmemPmdMapped: %lu kB", &v) == 1 ||
			 sscanf(line, "FilePmdMapped: %lu kB", &v) == 1)
			w->huge_kb += v;
	}
	fclose(f);
	if (strcmp(w->fs, "hugetlbfs") == 0)
		w->huge_kb = s->size / 1024;
}

static void stats_json(fdn_segment *s, const struct args *a, const struct fdn_segment_stats *st,
		       const struct fdn_reaper_status *rs, uint64_t deaths, int64_t visible,
		       const char *indexed, const struct where *w)
{
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
	printf(",\"total_bytes\":%" PRIu64 ",\"abi_major\":%u,\"abi_minor\":%u,"
	       "\"created_ns\":%" PRIu64 ",\"creator_pid\":%u,\"creator_uid\":%u,"
	       "\"processes\":{\"used\":%u,\"capacity\":%u},"
	       "\"reader_slots\":{\"used\":%u,\"capacity\":%u},"
	       "\"trace_slots\":{\"used\":%u,\"capacity\":%u},"
	       "\"graveyard_threads\":{\"written\":%" PRIu64 ",\"capacity\":%u},"
	       "\"event_ring\":{\"capacity\":%u},"
	       "\"heap\":{\"bytes\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"pages_used\":%" PRIu64
	       ",\"blocks_used\":%" PRIu64 ",\"block_bytes_used\":%" PRIu64 "},"
	       "\"gp_counter\":%" PRIu64 ",\"gp_done\":%" PRIu64
	       ",\"reclaim\":{\"pending_blocks\":%" PRIu64 ",\"blocker_pid\":%u"
	       ",\"blocker_tid\":%u},\"reaper_pid\":%d,\"deaths_total\":%" PRIu64
	       ",\"registry_entries\":%" PRId64 ",\"indexed\":",
	       st->total_bytes, st->abi_major, st->abi_minor, st->created_ns, st->creator_pid,
	       st->creator_uid, st->procs_used, st->procs_cap, st->threads_used, st->threads_cap,
	       st->trace_used, st->trace_cap, st->ghosts_written, st->ghosts_cap, st->events_cap,
	       st->heap_bytes, st->heap_pages, st->heap_pages_used, st->blocks_used,
	       st->block_bytes_used, st->gp_counter, st->gp_done, st->reclaim_pending,
	       st->reclaim_blocker_pid, st->reclaim_blocker_tid, (int)rs->pid, deaths, visible);
	putchar('[');
	for (const char *p = indexed; *p;) {
		size_t len = strcspn(p, ",");
		if (p != indexed)
			putchar(',');
		json_str(stdout, p, len);
		p += len + (p[len] == ',');
	}
	printf("],\"tables\":[");
	for (uint32_t i = 0; i < st->ntables && i < FDN_STATS_MAX_TABLES; i++) {
		const struct fdn_table_stats *t = &st->tables[i];
		printf("%s{\"name\":", i ? "," : "");
		json_str(stdout, t->name, strnlen(t->name, sizeof(t->name)));
		printf(",\"entries\":%" PRIu64 ",\"buckets\":%" PRIu64 ",\"load_factor\":",
		       t->entries, t->buckets);
		json_double(stdout, load(t));
		putchar('}');
	}
	char why[512];
	printf("],\"reaper\":{\"pid\":%d,\"stopped\":%s,\"launches\":%u,\"last_launch\":",
	       (int)rs->pid, rs->stopped ? "true" : "false", rs->launches);
	if (rs->last_pid) {
		printf("{\"pid\":%d,\"time_ns\":%" PRIu64 ",\"error\":", (int)rs->last_pid,
		       rs->last_ns);
		if (rs->last_error)
			json_cstr(stdout, fdn_errname(rs->last_error));
		else
			printf("null");
		putchar('}');
	} else {
		printf("null");
	}
	printf(",\"why\":");
	json_cstr(stdout, reaper_why(rs, why, sizeof(why)));
	struct fdn_changes_stats cs;
	fdn_changes_stats(s, &cs);
	printf("},\"changes\":{\"revision\":%" PRIu64 ",\"capacity\":%u,\"subscribers\":%" PRIu64
	       ",\"overruns\":%" PRIu64 ",\"lapped\":%" PRIu64 ",\"stolen\":%" PRIu64 "}",
	       cs.revision, cs.capacity, cs.subscribers, cs.overruns, cs.lapped, cs.stolen);
	printf(",\"file\":");
	json_cstr(stdout, w->path);
	printf(",\"filesystem\":\"%s\",\"page_kb\":%" PRIu64 ",\"huge_kb\":%" PRIu64 "}\n", w->fs,
	       w->page_kb, w->huge_kb);
}

static void stats_text(const struct args *a, const struct fdn_segment_stats *st,
		       const struct fdn_reaper_status *rs, uint64_t deaths, int64_t visible,
		       const char *indexed)
{
	char buf[40];
	printf("segment        \"%s\": %" PRIu64 " bytes, ABI %u.%u\n", a->segment, st->total_bytes,
	       st->abi_major, st->abi_minor);
	printf("created        %s by pid %u (uid %u)\n", iso_time(st->created_ns, buf, sizeof(buf)),
	       st->creator_pid, st->creator_uid);
	char why[512];
	if (rs->pid)
		printf("reaper         pid %d\n", (int)rs->pid);
	else
		printf("reaper         none running: %s\n", reaper_why(rs, why, sizeof(why)));
	printf("deaths         %" PRIu64 " reaped\n", deaths);
	printf("processes      %u / %u slots in use\n", st->procs_used, st->procs_cap);
	printf("reader slots   %u / %u in use\n", st->threads_used, st->threads_cap);
	printf("trace slots    %u / %u in use (span stacks, error contexts)\n", st->trace_used,
	       st->trace_cap);
	printf("graveyard      %" PRIu64 " thread copies written, the newest %u kept\n",
	       st->ghosts_written, st->ghosts_cap);
	printf("heap           %" PRIu64 " / %" PRIu64 " pages used (%" PRIu64 " bytes); %" PRIu64
	       " blocks (%" PRIu64 " bytes) allocated\n",
	       st->heap_pages_used, st->heap_pages, st->heap_bytes, st->blocks_used,
	       st->block_bytes_used);
	printf("grace periods  counter %" PRIu64 ", completed up to %" PRIu64 "\n", st->gp_counter,
	       st->gp_done);
	if (st->reclaim_blocker_pid)
		printf("reclamation    %" PRIu64 " blocks wait; held back by pid %u thread %u "
		       "(its read-side section is the oldest)\n",
		       st->reclaim_pending, st->reclaim_blocker_pid, st->reclaim_blocker_tid);
	else
		printf("reclamation    %" PRIu64 " blocks wait for a grace period\n",
		       st->reclaim_pending);
	printf("registry       %" PRId64 " visible entries; indexed: %s\n", visible,
	       *indexed ? indexed : "(none)");
	for (uint32_t i = 0; i < st->ntables && i < FDN_STATS_MAX_TABLES; i++) {
		const struct fdn_table_stats *t = &st->tables[i];
		printf("table %-8.*s %" PRIu64 " entries in %" PRIu64 " buckets (load %.4f)\n",
		       (int)strnlen(t->name, sizeof(t->name)), t->name, t->entries, t->buckets,
		       load(t));
	}
}

static int cmd_stats(fdn_segment *s, const struct args *a)
{
	struct fdn_segment_stats st;
	char indexed[FDN_MAX_INDEXED * (FDN_INDEXED_NAME_MAX + 1) + 1];
	int r = fdn_segment_stats(s, &st);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": stats", a->segment);
	int64_t visible = fdn_count(s);
	if (visible < 0)
		return complain(EXIT_FAIL, fdn_strerror((int)visible), "segment \"%s\": count",
				a->segment);
	indexed_names(s, indexed, sizeof(indexed));
	struct fdn_reaper_status rs;
	fdn_reaper_status(s, &rs);
	uint64_t deaths = fdn_deaths(s);
	struct where w;
	segment_where(s, a->segment, &w);
	if (a->json) {
		stats_json(s, a, &st, &rs, deaths, visible, indexed, &w);
	} else {
		stats_text(a, &st, &rs, deaths, visible, indexed);
		struct fdn_changes_stats cs;
		fdn_changes_stats(s, &cs);
		if (cs.capacity)
			printf("changes        revision %" PRIu64 "; a log of %u records; %" PRIu64
			       " subscribers; %" PRIu64 " overruns\n",
			       cs.revision, cs.capacity, cs.subscribers, cs.overruns);
		else
			printf("changes        no change log\n");
		printf("file           %s (%s), %" PRIu64 " kB pages, %" PRIu64
		       " kB mapped here with huge pages\n",
		       w.path, w.fs, w.page_kb, w.huge_kb);
	}
	return EXIT_OK;
}

/* ---- changes -------------------------------------------------------------------------- */

static int cmd_changes(fdn_segment *s, const struct args *a)
{
	struct fdn_changes_stats st;
	fdn_changes_stats(s, &st);
	const char *prefix = a->prefix ? a->prefix : "";
	size_t cap = st.capacity ? st.capacity : 1;
	struct fdn_change *c = calloc(cap, sizeof(*c));
	if (!c)
		return complain(EXIT_FAIL, strerror(ENOMEM), "segment \"%s\": changes", a->segment);
	int n = st.capacity ? fdn_changes_read(s, prefix, strlen(prefix), 0, c, cap) : 0;
	if (n < 0) {
		free(c);
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": changes", a->segment);
	}
	char buf[40];
	if (a->json) {
		printf("{\"segment\":");
		json_cstr(stdout, a->segment);
		printf(",\"revision\":%" PRIu64 ",\"capacity\":%u,\"subscribers\":%" PRIu64
		       ",\"overruns\":%" PRIu64 ",\"changes\":[",
		       st.revision, st.capacity, st.subscribers, st.overruns);
		for (int i = 0; i < n; i++) {
			printf("%s\n  {\"revision\":%" PRIu64 ",\"kind\":\"%s\",\"key\":",
			       i ? "," : "", c[i].revision, fdn_change_type_name(c[i].kind));
			json_str(stdout, c[i].key, c[i].key_len);
			printf(",\"pid\":%d,\"time_ns\":%" PRIu64, (int)c[i].pid, c[i].time_ns);
			if (c[i].death != FDN_NO_DEATH)
				printf(",\"death\":%" PRIu64, c[i].death);
			putchar('}');
		}
		printf("%s]}\n", n ? "\n" : "");
		free(c);
		return EXIT_OK;
	}
	if (st.capacity == 0) {
		printf("no change log (the segment was created with --changes off)\n");
		free(c);
		return EXIT_OK;
	}
	printf("revision %" PRIu64 "; the log keeps the last %u changes; %" PRIu64
	       " subscribers; %" PRIu64 " overruns%s\n",
	       st.revision, st.capacity, st.subscribers, st.overruns, n ? "; oldest first:" : "");
	if (n == 0) {
		free(c);
		return EXIT_OK;
	}
	struct table t = {.ncol = 6, .align = "rllrrl"};
	const char *head[] = {"REVISION", "TIME", "KIND", "PID", "DEATH", "KEY"};
	for (size_t i = 0; i < 6; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		cellf(&t, "%" PRIu64, c[i].revision);
		cellf(&t, "%s", iso_time(c[i].time_ns, buf, sizeof(buf)));
		cellf(&t, "%s", fdn_change_type_name(c[i].kind));
		cellf(&t, "%d", (int)c[i].pid);
		if (c[i].death != FDN_NO_DEATH)
			cellf(&t, "%" PRIu64, c[i].death);
		else
			cellf(&t, "-");
		char *cell = NULL;
		size_t len = 0;
		FILE *f = cell_open(&cell, &len);
		if (f)
			text_str(f, c[i].key, c[i].key_len);
		cell_close(&t, f, &cell);
	}
	free(c);
	return table_done(&t);
}

/* ---- check --------------------------------------------------------------------------- */

struct violations {
	bool json;
	int n;
	int nnotes;
	char notes[8][256]; /* JSON: printed after the violations */
};

static void on_violation(void *arg, const char *code, const char *message)
{
	struct violations *v = arg;
	if (strcmp(code, "note") == 0) { /* not a violation */
		if (!v->json) {
			printf("note: ");
			text_str(stdout, message, strlen(message));
			putchar('\n');
		} else if (v->nnotes < 8) {
			snprintf(v->notes[v->nnotes++], sizeof(v->notes[0]), "%s", message);
		}
		return;
	}
	if (v->json) {
		printf("%s\n  {\"code\":", v->n ? "," : "");
		json_cstr(stdout, code);
		printf(",\"message\":");
		json_cstr(stdout, message);
		putchar('}');
	} else {
		printf("[%s] ", code);
		text_str(stdout, message, strlen(message));
		putchar('\n');
	}
	v->n++;
}

static int cmd_check(fdn_segment *s, const struct args *a)
{
	static struct violations v;
	memset(&v, 0, sizeof(v));
	v.json = a->json;
	if (a->json) {
		printf("{\"segment\":");
		json_cstr(stdout, a->segment);
		printf(",\"violations\":[");
	}
	int n = fdn_segment_check(s, on_violation, &v);
	if (a->json) {
		printf("%s],\"count\":%d,\"notes\":[", v.n ? "\n" : "", n < 0 ? v.n : n);
		for (int i = 0; i < v.nnotes; i++) {
			printf("%s", i ? "," : "");
			json_cstr(stdout, v.notes[i]);
		}
		printf("]}\n");
	}
	if (n < 0) {
		fflush(stdout);
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": check", a->segment);
	}
	if (!a->json)
		printf("%d violations\n", n);
	return n > 0 ? EXIT_FAIL : EXIT_OK;
}

/* ---- events ----------------------------------------------------------------------------- */

static volatile sig_atomic_t events_stop;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void events_on_signal(int sig)
{
	events_stop = sig;
}

/* The measurements as {"name":value,...} or name=value,... ("-" if none). */
static void event_measurements(FILE *f, const struct fdn_ring_event *ev, bool json)
{
	if (json)
		putc('{', f);
	else if (ev->nmeasurements == 0)
		putc('-', f);
	for (uint32_t i = 0; i < ev->nmeasurements; i++) {
		if (i)
			putc(',', f);
		if (json) {
			json_cstr(f, ev->measurements[i].name);
			putc(':', f);
			json_double(f, ev->measurements[i].value);
		} else {
			fprintf(f, "%s=%.15g", ev->measurements[i].name, ev->measurements[i].value);
		}
	}
	if (json)
		putc('}', f);
}

static void event_json(const struct fdn_ring_event *ev)
{
	printf("{\"ticket\":%" PRIu64 ",\"name\":", ev->ticket);
	json_cstr(stdout, ev->name);
	printf(",\"time_ns\":%" PRIu64 ",\"mono_ns\":%" PRIu64
	       ",\"pid\":%d,\"tid\":%d,\"seq\":%" PRIu64 ",\"measurements\":",
	       ev->time_ns, ev->mono_ns, (int)ev->pid, (int)ev->tid, ev->seq);
	event_measurements(stdout, ev, true);
	printf(",\"attributes\":");
	attr_set(stdout, ev->attrs, ev->attrs_len, true);
	printf(",\"truncated\":%s}", ev->truncated ? "true" : "false");
}

/* One event as a text line (--follow) or as table cells. */
static void event_text(struct table *t, const struct fdn_ring_event *ev)
{
	char buf[40], *cell;
	size_t len;
	FILE *f;
	if (!t) {
		printf("%s %d %d %" PRIu64 " %s ", iso_time(ev->time_ns, buf, sizeof(buf)),
		       (int)ev->pid, (int)ev->tid, ev->seq, ev->name);
		event_measurements(stdout, ev, false);
		putchar(' ');
		if (fdn_attrs_count(ev->attrs, ev->attrs_len) == 0)
			putchar('-');
		else
			attr_set(stdout, ev->attrs, ev->attrs_len, false);
		printf("%s\n", ev->truncated ? " (truncated)" : "");
		return;
	}
	cellf(t, "%s", iso_time(ev->time_ns, buf, sizeof(buf)));
	cellf(t, "%d", (int)ev->pid);
	cellf(t, "%d", (int)ev->tid);
	cellf(t, "%" PRIu64, ev->seq);
	cellf(t, "%s%s", ev->name, ev->truncated ? " (truncated)" : "");
	f = cell_open(&cell, &len);
	if (f)
		event_measurements(f, ev, false);
	cell_close(t, f, &cell);
	if (fdn_attrs_count(ev->attrs, ev->attrs_len) == 0) {
		cellf(t, "-");
		return;
	}
	f = cell_open(&cell, &len);
	if (f)
		attr_set(f, ev->attrs, ev->attrs_len, false);
	cell_close(t, f, &cell);
}

/* Has the segment's name been removed (or given to another object)? */
static bool segment_gone(fdn_segment *s, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	return fdn_segment_path(name, path, sizeof(path)) != 0 || stat(path, &st) != 0 ||
	       st.st_ino != s->ino || st.st_dev != s->dev;
}

static void events_lost(const struct args *a, uint64_t n, uint64_t incomplete)
{
	if (a->json)
		printf("{\"lost\":%" PRIu64 ",\"incomplete\":%" PRIu64 "}\n", n, incomplete);
	else
		printf("-- lost %" PRIu64 " events%s\n", n,
		       incomplete ? " (some abandoned by their producer)" : "");
}

/* --follow: print the ring, then each event as it comes, one line (one
 * JSON object) each, until --count, --timeout, a signal, or the segment is
 * destroyed. */
static int events_follow(fdn_segment *s, const struct args *a)
{
	struct sigaction sa = {.sa_handler = events_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	static struct fdn_ring_event ev;
	struct fdn_ring_cursor c;
	int r = fdn_ring_cursor_init(s, &c, true);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events", a->segment);
	uint64_t printed = 0, reported = 0, inc_reported = 0, idle = 0;
	uint64_t deadline = a->timeout_s ? mono_ns() + a->timeout_s * 1000000000ull : 0;
	const char *end = NULL;
	while (!end) {
		r = events_stop ? 0 : fdn_ring_next(s, &c, &ev);
		if (r < 0)
			return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events",
					a->segment);
		if (c.lost > reported) {
			events_lost(a, c.lost - reported, c.incomplete - inc_reported);
			reported = c.lost;
			inc_reported = c.incomplete;
		}
		if (r == 1 && (!a->name || fdn_event_prefix_match(a->name, ev.name))) {
			if (a->json) {
				event_json(&ev);
				putchar('\n');
			} else {
				event_text(NULL, &ev);
			}
			if (++printed >= a->count && a->count)
				end = "count";
		} else if (r == 0) {
			fflush(stdout);
			if (events_stop)
				end = "interrupted";
			else if (deadline && mono_ns() >= deadline)
				end = "timeout";
			else if (idle % 64 == 0 && segment_gone(s, a->segment))
				end = "destroyed";
			else if (idle++ % 64 == 0 && fdn__seg_say_truncated(s, prog))
				return EXIT_FAIL;
			else
				usleep(2000);
		}
	}
	if (a->json)
		printf("{\"end\":\"%s\",\"events\":%" PRIu64 ",\"lost\":%" PRIu64 "}\n", end,
		       printed, c.lost);
	else
		printf("-- %" PRIu64 " events, %" PRIu64 " lost (%s)\n", printed, c.lost, end);
	return EXIT_OK;
}

static int cmd_events(fdn_segment *s, const struct args *a)
{
	if (a->name && *a->name && fdn_event_name_check(a->name) != 0 &&
	    !(a->name[strlen(a->name) - 1] == '.'))
		return complain(EXIT_FAIL, fdn_strerror(FDN_EEVNAME), "--name \"%s\"", a->name);
	if (a->follow)
		return events_follow(s, a);
	struct fdn_ring_stats st;
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	int r = fdn_ring_stats(s, &st);
	if (r == 0)
		r = fdn_ring_cursor_init(s, &c, true);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events", a->segment);
	struct table t = {.ncol = 7, .align = "lrrrlll"};
	const char *head[] = {"TIME", "PID", "TID", "SEQ", "NAME", "MEASUREMENTS", "ATTRIBUTES"};
	uint64_t n = 0;
	if (a->json) {
		printf("{\"segment\":");
		json_cstr(stdout, a->segment);
		printf(",\"capacity\":%" PRIu64 ",\"written\":%" PRIu64 ",\"overwritten\":%" PRIu64
		       ",\"lapped\":%" PRIu64 ",\"events\":[",
		       st.capacity, st.written, st.overwritten, st.lapped);
	} else {
		printf("ring: %" PRIu64 " records, %" PRIu64 " events written, %" PRIu64
		       " overwritten\n",
		       st.capacity, st.written, st.overwritten);
		for (size_t i = 0; i < 7; i++)
			cellf(&t, "%s", head[i]);
	}
	while ((!a->count || n < a->count) && (r = fdn_ring_next(s, &c, &ev)) == 1) {
		if (a->name && !fdn_event_prefix_match(a->name, ev.name))
			continue;
		if (a->json) {
			printf("%s\n  ", n ? "," : "");
			event_json(&ev);
		} else {
			event_text(&t, &ev);
		}
		n++;
	}
	if (r < 0) {
		table_free(&t);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events", a->segment);
	}
	if (a->json) {
		printf("%s],\"count\":%" PRIu64 ",\"lost\":%" PRIu64 "}\n", n ? "\n" : "", n,
		       c.lost);
		return EXIT_OK;
	}
	int status = n ? table_done(&t) : (table_free(&t), EXIT_OK);
	if (c.lost)
		events_lost(a, c.lost, c.incomplete);
	return status;
}

/* ---- samplers ------------------------------------------------------------------------- */

struct sampler_rows {
	struct fdn_sampler_stats *v;
	size_t n, cap;
};

static int sampler_collect(void *arg, const struct fdn_sampler_stats *st)
{
	struct sampler_rows *rs = arg;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? 2 * rs->cap : 64;
		struct fdn_sampler_stats *v = realloc(rs->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		rs->v = v;
		rs->cap = cap;
	}
	rs->v[rs->n++] = *st;
	return 0;
}

static int sampler_cmp(const void *pa, const void *pb)
{
	const struct fdn_sampler_stats *a = pa, *b = pb;
	return strcmp(a->name, b->name);
}

static int cmd_samplers(fdn_segment *s, const struct args *a)
{
	struct sampler_rows rs = {0};
	int r = fdn_samplers_foreach(s, sampler_collect, &rs);
	if (r < 0) {
		free(rs.v);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": samplers", a->segment);
	}
	if (rs.n)
		qsort(rs.v, rs.n, sizeof(*rs.v), sampler_cmp);
	struct table t = {.ncol = 5, .align = "llrrr"};
	char spec[64];
	if (a->json) {
		printf("{\"segment\":");
		json_cstr(stdout, a->segment);
		printf(",\"samplers\":[");
	} else {
		const char *head[] = {"NAME", "SAMPLER", "TOTAL", "SAMPLED", "PROBABILITY"};
		for (size_t i = 0; i < 5; i++)
			cellf(&t, "%s", head[i]);
	}
	for (size_t i = 0; i < rs.n; i++) {
		const struct fdn_sampler_stats *st = &rs.v[i];
		fdn_sampler_format(&st->sampler, spec, sizeof(spec));
		if (a->json) {
			printf("%s\n  {\"name\":", i ? "," : "");
			json_cstr(stdout, st->name[0] ? st->name : "?");
			printf(",\"sampler\":");
			json_cstr(stdout, spec);
			printf(",\"total\":%" PRIu64 ",\"sampled\":%" PRIu64 ",\"probability\":",
			       st->total, st->sampled);
			json_double(stdout, st->probability);
			putchar('}');
		} else {
			cellf(&t, "%s", st->name[0] ? st->name : "?");
			cellf(&t, "%s", spec);
			cellf(&t, "%" PRIu64, st->total);
			cellf(&t, "%" PRIu64, st->sampled);
			cellf(&t, "%.4f", st->probability);
		}
	}
	int status = EXIT_OK;
	if (a->json)
		printf("%s],\"count\":%zu}\n", rs.n ? "\n" : "", rs.n);
	else
		status = table_done(&t);
	free(rs.v);
	return status;
}

/* ---- metrics: the Prometheus text exposition format --------------------------------- */

/* "# HELP" and "# TYPE" of a metric family, then its samples. */
static void prom_family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample; labels is "" or ",k=\"v\"" after the segment label.  Segment
 * names are [A-Za-z0-9._-] (fdn__validate_name): no escaping is needed. */
static void prom_sample(const char *name, const struct args *a, const char *labels, double v)
{
	printf("%s{segment=\"%s\"%s} %.17g\n", name, a->segment, labels, v);
}

static void prom_gauge(const char *name, const char *help, const struct args *a, double v)
{
	prom_family(name, "gauge", help);
	prom_sample(name, a, "", v);
}

static void prom_counter(const char *name, const char *help, const struct args *a, double v)
{
	prom_family(name, "counter", help);
	prom_sample(name, a, "", v);
}

/* The reaper's latency: every death since the segment's creation
 * (lib/metrics.h), so no count ever goes down. */
static void prom_latency(fdn_segment *s, const struct args *a)
{
	struct fdn__latency_hist h;
	char labels[48];
	const char *name = "foundation_reaper_latency_seconds";
	fdn__latency_read(s, &h);
	prom_family(name, "histogram",
		    "Time from the reaper learning of a death to the dead process's entries "
		    "vanishing, every death since the segment's creation.");
	for (size_t b = 0; b < FDN_LATENCY_BOUNDS; b++) {
		snprintf(labels, sizeof(labels), ",le=\"%g\"",
			 (double)fdn__latency_bound_ns[b] / 1e9);
		prom_sample("foundation_reaper_latency_seconds_bucket", a, labels,
			    (double)h.cumulative[b]);
	}
	prom_sample("foundation_reaper_latency_seconds_bucket", a, ",le=\"+Inf\"", (double)h.count);
	prom_sample("foundation_reaper_latency_seconds_sum", a, "", (double)h.sum_ns / 1e9);
	prom_sample("foundation_reaper_latency_seconds_count", a, "", (double)h.count);
}

/* ---- cluster: foundation-mirrord's status entries (docs/cluster.md) ----------------- */

/* The agent's status: the entry at key 0x00 and one per host (0x00 host).
 * false when no agent mirrors into the segment. */
struct cluster_view {
	struct fdn_entry st;
	struct fdn_attr hosts;
};

static bool cluster_read(fdn_segment *s, struct cluster_view *v)
{
	static const unsigned char k[1] = {FDN_REG_REMOTE_BYTE};
	return fdn_lookup(s, k, 1, 0, &v->st) == 0 &&
	       fdn_attrs_get(v->st.attrs, v->st.attrs_len, "hosts", &v->hosts) == 0 &&
	       v->hosts.type == FDN_ATTR_LIST;
}

static int64_t attr_int(const struct fdn_entry *e, const char *name)
{
	struct fdn_attr x;
	return fdn_attrs_get(e->attrs, e->attrs_len, name, &x) == 0 && x.type == FDN_ATTR_INT
		   ? x.v.i
		   : -1;
}

static const char *attr_str(const struct fdn_entry *e, const char *name)
{
	struct fdn_attr x;
	return fdn_attrs_get(e->attrs, e->attrs_len, name, &x) == 0 && x.type == FDN_ATTR_STRING
		   ? x.v.s
		   : "";
}

static bool attr_true(const struct fdn_entry *e, const char *name)
{
	struct fdn_attr x;
	return fdn_attrs_get(e->attrs, e->attrs_len, name, &x) == 0 && x.type == FDN_ATTR_BOOL &&
	       x.v.b;
}

/* Host i's own status entry (entries, lease, ttl_left); false if absent. */
static bool cluster_host(fdn_segment *s, const char *h, struct fdn_entry *e)
{
	unsigned char k[2 + FDN_HOST_MAX];
	size_t n = strlen(h);
	if (n > FDN_HOST_MAX)
		return false;
	k[0] = FDN_REG_REMOTE_BYTE;
	memcpy(k + 1, h, n);
	return fdn_lookup(s, k, 1 + n, 0, e) == 0;
}

static int cmd_cluster(fdn_segment *s, const struct args *a)
{
	static struct cluster_view v;
	static struct fdn_entry he;
	if (!cluster_read(s, &v)) { /* a state, not a failure (dump runs it) */
		if (a->json)
			printf("{\"agent\":false}\n");
		else
			printf("no cluster agent (foundation-mirrord) mirrors into this segment\n");
		return EXIT_OK;
	}
	const struct fdn_entry *e = &v.st;
	static const char *const ints[] = {
	    "lease",    "lease_ttl", "published", "mirrored",         "dropped",
	    "revision", "lag",       "resyncs",   "publish_failures", "mirror_failures"};
	if (a->json) {
		printf("{\"agent\":true,\"cluster\":");
		json_cstr(stdout, attr_str(e, "cluster"));
		printf(",\"host\":");
		json_cstr(stdout, attr_str(e, "host"));
		printf(",\"agent_pid\":%d,\"degraded\":%s,\"publisher\":", (int)e->pid,
		       attr_true(e, "degraded") ? "true" : "false");
		json_cstr(stdout, attr_str(e, "publisher"));
		printf(",\"mirror\":");
		json_cstr(stdout, attr_str(e, "mirror"));
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
			printf(",\"%s\":%lld", ints[i], (long long)attr_int(e, ints[i]));
		printf(",\"hosts\":[");
		for (uint32_t i = 0; i < v.hosts.v.list.n; i++) {
			const char *h = fdn_attrs_list_item(&v.hosts, i);
			bool got = cluster_host(s, h, &he);
			printf("%s{\"host\":", i ? "," : "");
			json_cstr(stdout, h);
			printf(",\"entries\":%lld,\"ttl_left\":%lld}",
			       (long long)(got ? attr_int(&he, "entries") : 0),
			       (long long)(got ? attr_int(&he, "ttl_left") : -2));
		}
		printf("]}\n");
		return EXIT_OK;
	}
	printf("cluster %s, host %s, agent pid %d: %s\n", attr_str(e, "cluster"),
	       attr_str(e, "host"), (int)e->pid, attr_true(e, "degraded") ? "DEGRADED" : "ok");
	printf("publisher  %s; lease %llx, ttl %lld s; %lld entries published\n",
	       attr_str(e, "publisher"), (unsigned long long)attr_int(e, "lease"),
	       (long long)attr_int(e, "lease_ttl"), (long long)attr_int(e, "published"));
	printf("mirror     %s; revision %lld, lag %lld revisions; %lld remote entries, %lld "
	       "dropped\n",
	       attr_str(e, "mirror"), (long long)attr_int(e, "revision"),
	       (long long)attr_int(e, "lag"), (long long)attr_int(e, "mirrored"),
	       (long long)attr_int(e, "dropped"));
	struct table t = {.ncol = 3, .align = "lrr"};
	cellf(&t, "HOST");
	cellf(&t, "ENTRIES");
	cellf(&t, "LEASE_TTL_LEFT");
	for (uint32_t i = 0; i < v.hosts.v.list.n; i++) {
		const char *h = fdn_attrs_list_item(&v.hosts, i);
		bool got = cluster_host(s, h, &he);
		int64_t ttl = got ? attr_int(&he, "ttl_left") : -2;
		cellf(&t, "%s", h);
		cellf(&t, "%lld", (long long)(got ? attr_int(&he, "entries") : 0));
		if (ttl >= 0)
			cellf(&t, "%lld s", (long long)ttl);
		else
			cellf(&t, "%s", ttl == -1 ? "expired" : "?");
	}
	return table_done(&t);
}

/* The cluster's metrics, when an agent mirrors into the segment. */
static void prom_cluster(fdn_segment *s, const struct args *a)
{
	static struct cluster_view v;
	if (!cluster_read(s, &v))
		return;
	const struct fdn_entry *e = &v.st;
	prom_gauge("foundation_cluster_degraded", "1 when the cluster mirror is degraded.", a,
		   attr_true(e, "degraded"));
	prom_gauge("foundation_cluster_hosts", "Other hosts with entries mirrored here.", a,
		   v.hosts.v.list.n);
	prom_gauge("foundation_cluster_remote_entries", "Remote entries mirrored here.", a,
		   (double)attr_int(e, "mirrored"));
	prom_gauge("foundation_cluster_published_entries", "Local entries published to etcd.", a,
		   (double)attr_int(e, "published"));
	prom_gauge("foundation_cluster_lag_revisions",
		   "etcd revisions not yet applied by the mirror.", a, (double)attr_int(e, "lag"));
	prom_counter("foundation_cluster_dropped_total",
		     "Remote entries the segment could not hold, since the agent started.", a,
		     (double)attr_int(e, "dropped"));
	prom_counter("foundation_cluster_resyncs_total",
		     "Resynchronisations with etcd, since the agent started.", a,
		     (double)attr_int(e, "resyncs"));
}

static int metrics_print(fdn_segment *s, const struct args *a)
{
	struct fdn_segment_stats st;
	int r = fdn_segment_stats(s, &st);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": metrics", a->segment);
	int64_t visible = fdn_count(s);
	if (visible < 0)
		return complain(EXIT_FAIL, fdn_strerror((int)visible), "segment \"%s\": count",
				a->segment);
	uint32_t states[4] = {0};
	for (uint32_t i = 0; i < s->nprocs; i++)
		states[FDN_PROC_STATE(
		    atomic_load_explicit(&s->procs[i].word, memory_order_relaxed))]++;
	uint64_t written, dropped;
	fdn_graveyard_trace_counts(s, &written, &dropped);
	pid_t reaper = fdn_reaper_holder(s);

	prom_gauge("foundation_segment_bytes", "Size of the segment.", a, (double)st.total_bytes);
	prom_family("foundation_processes", "gauge", "Process slots in use, by state.");
	prom_sample("foundation_processes", a, ",state=\"live\"", states[FDN_PROC_LIVE]);
	prom_sample("foundation_processes", a, ",state=\"dead\"", states[FDN_PROC_DEAD]);
	prom_sample("foundation_processes", a, ",state=\"left\"", states[FDN_PROC_LEFT]);
	prom_gauge("foundation_processes_capacity", "Process slots.", a, st.procs_cap);
	prom_gauge("foundation_reader_slots_used", "Reader (thread) slots in use.", a,
		   st.threads_used);
	prom_gauge("foundation_reader_slots_capacity", "Reader (thread) slots.", a, st.threads_cap);
	prom_gauge("foundation_trace_slots_used", "Trace slots (span stacks, contexts) in use.", a,
		   st.trace_used);
	prom_gauge("foundation_trace_slots_capacity", "Trace slots.", a, st.trace_cap);
	prom_gauge("foundation_heap_bytes_capacity", "Bytes of heap for keys and values.", a,
		   (double)st.heap_bytes);
	prom_gauge("foundation_heap_pages_used", "Heap pages assigned to a size class.", a,
		   (double)st.heap_pages_used);
	prom_gauge("foundation_heap_blocks_used", "Heap blocks allocated.", a,
		   (double)st.blocks_used);
	prom_gauge("foundation_heap_block_bytes_used", "Bytes of the allocated heap blocks.", a,
		   (double)st.block_bytes_used);
	prom_gauge("foundation_registry_entries", "Registry entries visible to lookups.", a,
		   (double)visible);
	prom_cluster(s, a);
	char labels[64];
	const char *fam[3][2] = {{"foundation_table_entries", "Nodes in each table."},
				 {"foundation_table_buckets", "Buckets of each table."},
				 {"foundation_table_load_factor", "Nodes per bucket."}};
	for (int f = 0; f < 3; f++) {
		prom_family(fam[f][0], "gauge", fam[f][1]);
		for (uint32_t i = 0; i < st.ntables && i < FDN_STATS_MAX_TABLES; i++) {
			const struct fdn_table_stats *t = &st.tables[i];
			snprintf(labels, sizeof(labels), ",table=\"%.*s\"",
				 (int)strnlen(t->name, sizeof(t->name)), t->name);
			prom_sample(fam[f][0], a, labels,
				    f == 0   ? (double)t->entries
				    : f == 1 ? (double)t->buckets
					     : load(t));
		}
	}
	static struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int nfl = fdn_flags_list(s, fl, (int)FDN_FLAGS_MAX);
	prom_gauge("foundation_stage", "The migration stage (0..4).", a, fdn_stage(s));
	prom_family("foundation_flag_value", "gauge", "Each feature flag: 0 off .. 100 on.");
	for (int i = 0; i < nfl && i < (int)FDN_FLAGS_MAX; i++) {
		/* flag names are [A-Za-z0-9_.-] (flags.c): no escaping needed */
		snprintf(labels, sizeof(labels), ",flag=\"%.*s\"", (int)FDN_FLAG_NAME_MAX,
			 fl[i].name);
		prom_sample("foundation_flag_value", a, labels, fl[i].value);
	}
	prom_counter("foundation_grace_periods_total", "Grace periods started.", a,
		     (double)(st.gp_counter ? st.gp_counter - 1 : 0));
	prom_gauge("foundation_reclaim_pending_blocks",
		   "Blocks retired and not yet freed (waiting for a grace period).", a,
		   (double)st.reclaim_pending);
	prom_gauge("foundation_reaper_up", "1 if a live reaper holds the lease.", a,
		   reaper > 0 ? 1 : 0);
	prom_counter("foundation_deaths_total", "Deaths reaped.", a, (double)fdn_deaths(s));
	prom_latency(s, a);
	prom_counter("foundation_graveyard_threads_total",
		     "Dead threads whose spans and context were copied to the graveyard.", a,
		     (double)written);
	struct fdn_ring_stats rs;
	if (fdn_ring_stats(s, &rs) == 0) {
		prom_gauge("foundation_event_ring_capacity", "Records in the telemetry ring.", a,
			   (double)rs.capacity);
		prom_counter("foundation_events_written_total", "Events written to the ring.", a,
			     (double)rs.written);
		prom_counter("foundation_events_overwritten_total",
			     "Ring events overwritten by newer ones (the ring keeps the newest).",
			     a, (double)rs.overwritten);
		prom_counter("foundation_events_lapped_total",
			     "Events dropped by a producer stalled for a whole lap of the ring.", a,
			     (double)rs.lapped);
	}
	struct fdn_changes_stats cs;
	if (fdn_changes_stats(s, &cs) == 0 && cs.capacity) {
		prom_gauge("foundation_changes_revision",
			   "The newest revision of the registry's change log.", a,
			   (double)cs.revision);
		prom_gauge("foundation_changes_capacity", "Records the change log keeps.", a,
			   (double)cs.capacity);
		prom_gauge("foundation_changes_subscribers", "Change-log subscriptions open.", a,
			   (double)cs.subscribers);
		prom_counter("foundation_changes_overruns_total",
			     "Subscription reads that found their next change overwritten.", a,
			     (double)cs.overruns);
	}
	prom_counter("foundation_graveyard_threads_dropped_total",
		     "Graveyard thread copies overwritten by newer ones.", a, (double)dropped);
	return EXIT_OK;
}

/* The metrics into memory (*buf, *len; the caller frees *buf). */
static int metrics_render(fdn_segment *s, const struct args *a, char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	/* A server scrapes for as long as it runs: look at the file first. */
	if (fdn__seg_say_truncated(s, prog))
		return EXIT_FAIL;
	FILE *out = stdout, *mem = open_memstream(buf, len);
	if (!mem)
		return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "metrics");
	stdout = mem; /* glibc's stdout is assignable (as dump does) */
	int status = metrics_print(s, a);
	stdout = out;
	if (fclose(mem) != 0 && status == EXIT_OK)
		status = complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "metrics");
	return status;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* --textfile PATH: written to PATH.tmp.PID in the same directory, synced,
 * then renamed over PATH, so a reader (node_exporter's textfile collector,
 * which reads only *.prom) sees the old file or the new one, never part. */
static int metrics_textfile(fdn_segment *s, const struct args *a)
{
	char *buf, tmp[PATH_MAX];
	size_t len;
	int status = metrics_render(s, a, &buf, &len);
	if (status) {
		free(buf);
		return status;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", a->textfile, (int)getpid()) >=
	    sizeof(tmp)) {
		free(buf);
		return complain(EXIT_FAIL, "path too long", "metrics --textfile \"%s\"",
				a->textfile);
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	const char *what = "create";
	if (fd >= 0) {
		what = !write_all(fd, buf, len) ? "write" : fsync(fd) != 0 ? "fsync" : NULL;
		int e = errno;
		if (close(fd) != 0 && !what)
			what = "close";
		else
			errno = e;
		if (!what && rename(tmp, a->textfile) != 0)
			what = "rename";
		if (what) {
			e = errno;
			unlink(tmp);
			errno = e;
		}
	}
	free(buf);
	if (what)
		return complain(EXIT_FAIL, strerror(errno), "metrics --textfile \"%s\": %s %s",
				a->textfile, what, strcmp(what, "rename") == 0 ? "over it" : tmp);
	return EXIT_OK;
}

/* HOST:PORT, HOST an IPv4 address or [IPv6]; PORT 0..65535 (0: any). */
static bool listen_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	uint64_t port;
	if (!colon || (size_t)(colon - text) >= sizeof(host) ||
	    !parse_num(colon + 1, 10, 65535, &port))
		return false;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	memset(ss, 0, sizeof(*ss));
	size_t hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		host[hl - 1] = 0;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return inet_pton(AF_INET6, host + 1, &in6->sin6_addr) == 1;
	}
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	in4->sin_family = AF_INET;
	in4->sin_port = htons((uint16_t)port);
	*len = sizeof(*in4);
	return inet_pton(AF_INET, host, &in4->sin_addr) == 1;
}

/* One HTTP response, then the connection is closed. */
static void http_reply(int fd, int code, const char *reason, const char *type, const char *extra,
		       const char *body, size_t blen, bool head)
{
	char h[512];
	int n = snprintf(h, sizeof(h),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n",
			 code, reason, type, blen, extra);
	if (write_all(fd, h, (size_t)n) && !head)
		write_all(fd, body, blen);
}

#define HTTP_REQUEST_MAX 8192
#define HTTP_TIMEOUT_S   2

/* Serve one connection: GET (or HEAD) /metrics.  Returns false when the
 * segment is gone (the server then stops). */
static bool http_serve(fdn_segment *s, const struct args *a, int fd)
{
	static const char text_type[] = "text/plain; charset=utf-8";
	static char req[HTTP_REQUEST_MAX + 1];
	struct timeval tv = {HTTP_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t n = 0;
	while (n < HTTP_REQUEST_MAX) {
		ssize_t r = recv(fd, req + n, HTTP_REQUEST_MAX - n, 0);
		if (r < 0 && errno == EINTR && !events_stop)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		req[n] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[n] = 0;
	char method[16], target[256];
	if (!strstr(req, "\n\n") && !strstr(req, "\r\n\r\n")) {
		const char *why = n >= HTTP_REQUEST_MAX ? "request too large\n" : "bad request\n";
		http_reply(fd, 400, "Bad Request", text_type, "", why, strlen(why), false);
		/* Unread request bytes at close would reset the connection
		 * before the client reads the reply: end our side, then read
		 * (and drop) what it still sends, 64 KiB and 2 s at most. */
		shutdown(fd, SHUT_WR);
		for (size_t drained = 0; drained < 65536;) {
			ssize_t r = recv(fd, req, HTTP_REQUEST_MAX, 0);
			if (r <= 0)
				break;
			drained += (size_t)r;
		}
		return true;
	}
	if (sscanf(req, "%15s %255s HTTP/1.%*c", method, target) != 2) {
		http_reply(fd, 400, "Bad Request", text_type, "", "bad request\n", 12, false);
		return true;
	}
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		http_reply(fd, 405, "Method Not Allowed", text_type, "Allow: GET, HEAD\r\n",
			   "method not allowed\n", 19, false);
		return true;
	}
	target[strcspn(target, "?")] = 0;
	if (strcmp(target, "/metrics") != 0) {
		http_reply(fd, 404, "Not Found", text_type, "", "not found: try /metrics\n", 24,
			   head);
		return true;
	}
	if (segment_gone(s, a->segment)) {
		static const char gone[] = "segment destroyed\n";
		http_reply(fd, 503, "Service Unavailable", text_type, "", gone, sizeof(gone) - 1,
			   head);
		return false;
	}
	char *body;
	size_t blen;
	if (metrics_render(s, a, &body, &blen) != EXIT_OK) {
		static const char err[] = "metrics failed (see the server's stderr)\n";
		http_reply(fd, 500, "Internal Server Error", text_type, "", err, sizeof(err) - 1,
			   head);
	} else {
		http_reply(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", body,
			   blen, head);
	}
	free(body);
	return true;
}

/* --listen HOST:PORT: an HTTP server for Prometheus, one connection at a
 * time (each bounded: 8 KiB of request, 2 s to send it and to take the
 * reply), until SIGINT or SIGTERM (exit 0) or the segment is destroyed
 * (exit 1). */
static int metrics_listen(fdn_segment *s, const struct args *a)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	if (!listen_addr(a->listen, &ss, &slen))
		return usage_error("metrics",
				   "metrics --listen \"%s\": expected ADDRESS:PORT, "
				   "an IPv4 address or [IPv6], PORT 0..65535",
				   a->listen);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return complain(EXIT_FAIL, strerror(errno), "metrics --listen: socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 16) != 0) {
		int e = errno;
		close(fd);
		return complain(EXIT_FAIL, strerror(e), "metrics --listen \"%s\"", a->listen);
	}
	/* The address bound (PORT 0 picks one), for the log and for scripts. */
	char host[INET6_ADDRSTRLEN];
	slen = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &slen);
	bool v6 = ss.ss_family == AF_INET6;
	inet_ntop(ss.ss_family,
		  v6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
		     : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
		  host, sizeof(host));
	printf("listening on http://%s%s%s:%u/metrics\n", v6 ? "[" : "", host, v6 ? "]" : "",
	       ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			: ((struct sockaddr_in *)&ss)->sin_port));
	fflush(stdout);
	struct sigaction sa = {.sa_handler = events_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	int status = EXIT_OK;
	while (!events_stop) {
		struct pollfd p = {fd, POLLIN, 0};
		/* a signal interrupts poll; the timeout bounds the one that
		 * lands between the check and the call */
		if (poll(&p, 1, 500) <= 0)
			continue;
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		bool go_on = http_serve(s, a, c);
		close(c);
		if (!go_on) {
			status = complain(EXIT_FAIL, "segment destroyed", "segment \"%s\": metrics",
					  a->segment);
			break;
		}
	}
	close(fd);
	return status;
}

static int cmd_metrics(fdn_segment *s, const struct args *a)
{
	if (a->listen)
		return metrics_listen(s, a);
	if (a->textfile)
		return metrics_textfile(s, a);
	return metrics_print(s, a);
}

/* ---- dump: every command's JSON in one document -------------------------------------- */

static const struct command commands[];
static const size_t ncommands;

static int cmd_dump(fdn_segment *s, const struct args *a)
{
	struct args j = *a;
	j.json = true;
	j.attr = j.prefix = NULL;
	j.pid = 0;
	int status = EXIT_OK;
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
	for (size_t i = 0; i < ncommands; i++) {
		const struct command *c = &commands[i];
		if (c->run == cmd_dump || c->run == cmd_metrics)
			continue;
		/* Each command writes its object into memory first: one that
		 * fails half-way (it says why on stderr) becomes null, and the
		 * document stays whole.  (glibc's stdout is assignable.) */
		char *buf = NULL;
		size_t len = 0;
		FILE *out = stdout, *mem = open_memstream(&buf, &len);
		if (!mem)
			return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "dump");
		unsigned before = complaints;
		stdout = mem;
		int st = c->run(s, &j);
		stdout = out;
		fclose(mem);
		printf(",\"%s\":", c->name);
		if (complaints != before || !buf) {
			printf("null");
			status = EXIT_FAIL;
		} else {
			fwrite(buf, 1, len, stdout);
			if (st != EXIT_OK) /* check found violations */
				status = st;
		}
		free(buf);
	}
	printf("}\n");
	return status;
}

/* ---- flags and stages ------------------------------------------------------------------ */

/* on, off or N% */
static const char *flag_text(int v, char *buf, size_t cap)
{
	if (v == FDN_FLAG_ON)
		return "on";
	if (v == FDN_FLAG_OFF)
		return "off";
	snprintf(buf, cap, "%d%%", v);
	return buf;
}

static void flags_json(const struct args *a, int stage, const struct fdn_flag_info *fl, int n)
{
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
	printf(",\"stage\":%d,\"flags\":[", stage);
	for (int i = 0; i < n; i++) {
		printf("%s\n  {\"name\":", i ? "," : "");
		json_cstr(stdout, fl[i].name);
		printf(",\"value\":%d,\"enabled\":%s,\"default\":%d,\"builtin\":%s,"
		       "\"changed_ns\":%" PRIu64 "}",
		       fl[i].value, fl[i].value == FDN_FLAG_ON ? "true" : "false",
		       fl[i].default_value, fl[i].builtin ? "true" : "false", fl[i].changed_ns);
	}
	printf("%s],\"count\":%d}\n", n ? "\n" : "", n);
}

static int flags_text(int stage, const struct fdn_flag_info *fl, int n)
{
	struct table t = {.ncol = 5, .align = "lllll"};
	char v[16], d[16], when[40];
	const char *head[] = {"FLAG", "VALUE", "DEFAULT", "KIND", "CHANGED"};
	printf("stage %d\n", stage);
	for (size_t i = 0; i < 5; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		cellf(&t, "%s", fl[i].name);
		cellf(&t, "%s", flag_text(fl[i].value, v, sizeof(v)));
		cellf(&t, "%s", flag_text(fl[i].default_value, d, sizeof(d)));
		cellf(&t, "%s", fl[i].builtin ? "built-in" : "user");
		cellf(&t, "%s", iso_time(fl[i].changed_ns, when, sizeof(when)));
	}
	return table_done(&t);
}

static int cmd_flags(fdn_segment *s, const struct args *a)
{
	static struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int stage = fdn_stage(s);
	int n = stage < 0 ? stage : fdn_flags_list(s, fl, FDN_FLAGS_MAX);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": flags", a->segment);
	if (n > FDN_FLAGS_MAX)
		n = FDN_FLAGS_MAX;
	if (a->json) {
		flags_json(a, stage, fl, n);
		return EXIT_OK;
	}
	return flags_text(stage, fl, n);
}

static const char *const stage_flags[] = {
    "use_shm_registry",       "enable_migration_monitoring",
    "use_shm_error_context",  "use_shm_telemetry",
    "use_shm_spans",          "use_shm_sampled_events",
    "enforce_no_local_state",
};
#define NSTAGE_FLAGS (sizeof(stage_flags) / sizeof(stage_flags[0]))

static const char *change_kind(enum fdn_change_kind k)
{
	return k == FDN_CHANGE_STAGE ? "stage" : k == FDN_CHANGE_ALERT ? "alert" : "flag";
}

/* "from" and "to" of a change: flag values as on/off/N%, stages as N. */
static const char *change_end(const struct fdn_flag_change *c, int v, char *buf, size_t cap)
{
	if (c->kind == FDN_CHANGE_FLAG && v == FDN_FLAG_CREATED)
		return "(new)";
	if (c->kind == FDN_CHANGE_FLAG)
		return flag_text(v, buf, cap);
	snprintf(buf, cap, "%d", v);
	return buf;
}

static void stages_json(const struct args *a, int stage, uint64_t total,
			const struct fdn_flag_change *h, int n)
{
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
	printf(",\"stage\":%d,\"profiles\":[", stage);
	for (int st = 0; st <= FDN_STAGE_MAX; st++) {
		struct fdn_stage_info si;
		fdn_stage_info(st, &si);
		printf("%s{\"stage\":%d,\"name\":", st ? "," : "", st);
		json_cstr(stdout, si.name);
		printf(",\"description\":");
		json_cstr(stdout, si.description);
		printf(",\"risk\":");
		json_cstr(stdout, si.risk);
		printf(",\"risk_note\":");
		json_cstr(stdout, si.risk_note);
		printf(",\"flags\":[");
		bool first = true;
		for (size_t i = 0; i < NSTAGE_FLAGS; i++) {
			if (!fdn_stage_profile_has(st, stage_flags[i]))
				continue;
			printf("%s\"%s\"", first ? "" : ",", stage_flags[i]);
			first = false;
		}
		printf("]}");
	}
	printf("],\"history_total\":%" PRIu64 ",\"history\":[", total);
	for (int i = 0; i < n; i++) {
		printf("%s\n  {\"number\":%" PRIu64 ",\"time_ns\":%" PRIu64
		       ",\"pid\":%d,\"kind\":\"%s\",\"flag\":",
		       i ? "," : "", h[i].number, h[i].time_ns, (int)h[i].pid,
		       change_kind(h[i].kind));
		json_cstr(stdout, h[i].flag);
		printf(",\"from\":%d,\"to\":%d,\"reason\":", h[i].from, h[i].to);
		json_cstr(stdout, h[i].reason);
		putchar('}');
	}
	printf("%s]}\n", n ? "\n" : "");
}

static int stages_text(int stage, uint64_t total, const struct fdn_flag_change *h, int n)
{
	printf("stage %d of %d; profiles:\n", stage, FDN_STAGE_MAX);
	for (int st = 0; st <= FDN_STAGE_MAX; st++) {
		struct fdn_stage_info si;
		fdn_stage_info(st, &si);
		printf("  %s %d %s (risk %s):", st == stage ? "*" : " ", st, si.name, si.risk);
		bool any = false;
		for (size_t i = 0; i < NSTAGE_FLAGS; i++) {
			if (fdn_stage_profile_has(st, stage_flags[i])) {
				printf(" %s", stage_flags[i]);
				any = true;
			}
		}
		printf("%s\n", any ? "" : " (everything off)");
		printf("      %s %s\n", si.description, si.risk_note);
	}
	printf("%" PRIu64 " changes in total%s\n", total,
	       n ? "; the last ones, oldest first:" : "");
	if (n == 0)
		return EXIT_OK;
	struct table t = {.ncol = 8, .align = "rlrlllll"};
	const char *head[] = {"NUMBER", "TIME", "PID", "KIND", "FLAG", "FROM", "TO", "REASON"};
	char when[40], f[16], to[16];
	for (size_t i = 0; i < 8; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		cellf(&t, "%" PRIu64, h[i].number);
		cellf(&t, "%s", iso_time(h[i].time_ns, when, sizeof(when)));
		cellf(&t, "%d", (int)h[i].pid);
		cellf(&t, "%s", change_kind(h[i].kind));
		cellf(&t, "%s", h[i].flag[0] ? h[i].flag : "-");
		cellf(&t, "%s", change_end(&h[i], h[i].from, f, sizeof(f)));
		cellf(&t, "%s", change_end(&h[i], h[i].to, to, sizeof(to)));
		char *cell;
		size_t len;
		FILE *fp = cell_open(&cell, &len);
		if (fp)
			text_str(fp, h[i].reason, strlen(h[i].reason));
		cell_close(&t, fp, &cell);
	}
	return table_done(&t);
}

static int cmd_stages(fdn_segment *s, const struct args *a)
{
	static struct fdn_flag_change h[FDN_FLAGS_HISTORY];
	int stage = fdn_stage(s);
	uint64_t total = fdn_flags_history_total(s);
	int n = stage < 0 ? stage : fdn_flags_history(s, h, FDN_FLAGS_HISTORY);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": stages", a->segment);
	if (a->json) {
		stages_json(a, stage, total, h, n);
		return EXIT_OK;
	}
	return stages_text(stage, total, h, n);
}

/* ---- commands and usage ------------------------------------------------------------- */

static const struct command commands[] = {
    {"registry", "ap", cmd_registry, "registry [--attr NAME=VALUE] [--prefix P]",
     "Visible registry entries, sorted by key: key, owner pid, registration time\n"
     "(UTC) and attributes.\n"
     "  --attr NAME=VALUE  only entries whose attribute NAME equals VALUE (a list\n"
     "                     attribute: contains it); typed as foundation-ctl's\n"
     "                     --attr: NAME=text a string, NAME=[a,b] a list,\n"
     "                     NAME:=5 / :=1.5 / :=true a number or boolean\n"
     "  --prefix P         only keys that start with P\n"},
    {"processes", "", cmd_processes, "processes",
     "Every process slot in use: slot, pid, state (live, or dead and awaiting the\n"
     "reaper), identity, uid, attach time, reader slots it holds, and the pid that\n"
     "claimed it (another process when it registered for this pid).\n"},
    {"spans", "P", cmd_spans, "spans [--pid P]",
     "Every thread holding spans or an error context, from a consistent copy of\n"
     "its trace slot: its open spans bottom first (depth, name, trace id, span\n"
     "id, parent, age, attributes), its correlation and operation ids, context\n"
     "map and newest breadcrumbs.\n"
     "  --pid P  only the threads of process P\n"},
    {"graveyard", "P", cmd_graveyard, "graveyard [--pid P]",
     "The deaths the reaper has recorded, newest first: pid, the signal that\n"
     "killed it or its exit status, when it was seen, how long its entries took\n"
     "to disappear, and how many entries were removed.  Then what the dead\n"
     "threads were doing: their open spans (status aborted, duration up to the\n"
     "death) and error contexts, copied by the reaper before it freed them; the\n"
     "newest 64 thread copies are kept.\n"
     "  --pid P  only the deaths and threads of process P\n"},
    {"stats", "", cmd_stats, "stats",
     "Capacities and usage: processes, reader slots, heap, tables (entries,\n"
     "buckets, load factor), the grace-period counter, the reaper's pid, the\n"
     "number of deaths reaped, and the change log (revision, subscribers,\n"
     "overruns).\n"},
    {"events", "fnct", cmd_events, "events [--follow] [--name PREFIX] [--count N] [--timeout S]",
     "The telemetry ring, oldest event first: time (UTC), pid, tid, the producing\n"
     "thread's event number, name, measurements, attributes.  Reports events lost\n"
     "to overwriting (the ring keeps the newest) as \"lost N events\".\n"
     "  --follow         then print each new event as it is written, one line each\n"
     "                   (with --json one object per line, then {\"lost\":N,...} for\n"
     "                   a gap and {\"end\":...} last); ends on SIGINT or SIGTERM,\n"
     "                   or when the segment is destroyed\n"
     "  --name PREFIX    only events whose name is PREFIX or continues it at a dot\n"
     "  --count N        stop after N events\n"
     "  --timeout S      stop following after S seconds\n"},
    {"samplers", "", cmd_samplers, "samplers",
     "Every event name's sampler (set with foundation-ctl sampler set, or\n"
     "\"always\" for names seen without one): events that reached it, events it\n"
     "kept, and its current probability.\n"},
    {"changes", "p", cmd_changes, "changes [--prefix P]",
     "The registry's change log, oldest first: revision, time (UTC), kind\n"
     "(registered, updated, unregistered, removed), owner pid, the death's\n"
     "graveyard number for a removal after a death, key.  The log keeps the last\n"
     "N changes (foundation-ctl create --changes N); first the newest revision,\n"
     "the subscriptions open and the overruns they met.  Stops at a change still\n"
     "being made.  foundation-ctl watch follows it.\n"
     "  --prefix P  only keys that start with P\n"},
    {"check", "", cmd_check, "check",
     "Verify every invariant of the segment; print each violation as\n"
     "\"[code] message\", then the count.  Exit 1 if there is any.  Exact only while\n"
     "no writer is in the middle of an operation.  A process that just died and\n"
     "that the running reaper takes up within a second is a \"note: ...\" line\n"
     "(JSON: \"notes\"), not a violation.\n"},
    {"flags", "", cmd_flags, "flags",
     "The current stage and every feature flag: value (on, off or a percentage),\n"
     "default, built-in or user-defined, and when it last changed.\n"},
    {"stages", "", cmd_stages, "stages",
     "The current stage, each stage's profile, and the history of flag and stage\n"
     "changes (the last 64, oldest first): time, pid, flag, from, to, reason.\n"},
    {"metrics", "LW", cmd_metrics, "metrics [--listen ADDRESS:PORT | --textfile PATH]",
     "The segment's counts, capacities and usage, the deaths reaped, the reaper's\n"
     "latency (a histogram) and drop counters, in the Prometheus text exposition\n"
     "format, each sample labelled with the segment.  Every counter and the\n"
     "histogram count since the segment's creation (they never go down).\n"
     "--json is refused (exit 2).\n"
     "  --listen ADDRESS:PORT  serve them over HTTP at /metrics (GET or HEAD; other\n"
     "                         paths 404), ADDRESS an IPv4 address or [IPv6], PORT\n"
     "                         0 for any free one; prints \"listening on URL\" and\n"
     "                         serves one connection at a time (8 KiB request, 2 s\n"
     "                         timeouts) until SIGINT or SIGTERM (exit 0), or the\n"
     "                         segment is destroyed (503, then exit 1)\n"
     "  --textfile PATH        write them to PATH atomically (PATH.tmp.PID, then\n"
     "                         rename), for node_exporter's textfile collector\n"},
    {"cluster", "", cmd_cluster, "cluster",
     "The cluster mirror of foundation-mirrord (docs/cluster.md): the cluster and\n"
     "this host, degraded or not, the publisher (its lease, TTL, entries published),\n"
     "the mirror (revision applied, lag in revisions, remote entries, dropped), and\n"
     "each other host: its entries here and its lease's TTL left.  Without an agent:\n"
     "one line saying so (JSON: {\"agent\": false}), exit 0.\n"},
    {"dump", "", cmd_dump, "dump",
     "Everything as one JSON document: {\"segment\": NAME, and for every other\n"
     "command but metrics, \"COMMAND\": its --json object} (null where a command\n"
     "failed).  Exit 1 if a command failed or the check found violations.\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))
static const size_t ncommands = NCOMMANDS;

static void usage(FILE *f)
{
	fprintf(f, "usage: %s [--segment NAME] [--json] COMMAND [ARGS...]\n\ncommands:\n", prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].synopsis);
	fprintf(f,
		"\n"
		"Show a Foundation segment without changing it (it is mapped read-only).\n"
		"\"%s COMMAND --help\" describes one command.\n"
		"\n"
		"  --segment NAME  segment (default $FOUNDATION_SEGMENT, else \"foundation\")\n"
		"  --json          JSON instead of text: one object; strings escaped as JSON,\n"
		"                  bytes that are not valid UTF-8 as \\u00XX (their Latin-1\n"
		"                  reading); times as nanoseconds since the epoch (*_ns)\n"
		"  --help          this text\n"
		"  --version       print the version and exit\n"
		"--segment and --json are also accepted after the command.\n"
		"\n"
		"Exit status: 0 done; 1 error, or check found violations; 2 bad usage.\n",
		prog);
}

static void command_usage(FILE *f, const struct command *c)
{
	fprintf(f, "usage: %s [--segment NAME] [--json] %s\n\n%s", prog, c->synopsis, c->help);
}

static const struct option all_opts[] = {
    {"attr", required_argument, 0, 'a'},    {"prefix", required_argument, 0, 'p'},
    {"pid", required_argument, 0, 'P'},     {"follow", no_argument, 0, 'f'},
    {"name", required_argument, 0, 'n'},    {"count", required_argument, 0, 'c'},
    {"timeout", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'},
    {"listen", required_argument, 0, 'L'},  {"textfile", required_argument, 0, 'W'},
    {"segment", required_argument, 0, 'S'}, {"help", no_argument, 0, 'h'},
};

#define NOPTS (sizeof(all_opts) / sizeof(all_opts[0]))

/* Parse a command's arguments (argv[0] is its name).  Returns -1 to go on,
 * else the exit status. */
static int parse_command(const struct command *c, int argc, char **argv, struct args *a)
{
	struct option lo[NOPTS + 1];
	char buf[64];
	options_for(all_opts, NOPTS, "jSh", c->allowed, lo);
	optind = 0; /* restart getopt on the command's own arguments */
	for (int o; (o = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
		switch (o) {
		case 'h':
			command_usage(stdout, c);
			return EXIT_OK;
		case 'a':
			a->attr = optarg;
			break;
		case 'p':
			a->prefix = optarg;
			break;
		case 'f':
			a->follow = true;
			break;
		case 'n':
			a->name = optarg;
			break;
		case 'c':
		case 't':
			if (!parse_num(optarg, 10, UINT32_MAX,
				       o == 'c' ? &a->count : &a->timeout_s))
				return usage_error(c->name, "%s --%s \"%s\": bad number", c->name,
						   o == 'c' ? "count" : "timeout", optarg);
			break;
		case 'P': {
			uint64_t v;
			if (!parse_num(optarg, 10, INT32_MAX, &v) || v == 0)
				return usage_error(c->name, "%s --pid \"%s\": not a process id",
						   c->name, optarg);
			a->pid = (int32_t)v;
			break;
		}
		case 'j':
			a->json = true;
			break;
		case 'L':
			a->listen = optarg;
			break;
		case 'W':
			a->textfile = optarg;
			break;
		case 'S':
			a->segment = optarg;
			break;
		default:
			return usage_error(c->name, "%s %s: %s", c->name,
					   bad_option(argv, buf, sizeof(buf)),
					   o == ':' ? "needs a value" : "unknown option");
		}
	}
	if (optind < argc)
		return usage_error(c->name, "%s \"%s\": unexpected argument", c->name,
				   argv[optind]);
	return -1;
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"json", no_argument, 0, 'j'},
					   {"help", no_argument, 0, 'h'},
					   {"version", no_argument, 0, 'v'},
					   {0, 0, 0, 0}};
	struct args a = {0};
	char buf[64];
	opterr = 0; /* every error is one line of ours */
	for (int c; (c = getopt_long(argc, argv, "+:s:jh", lo, NULL)) != -1;) {
		if (c == 's') {
			a.segment = optarg;
		} else if (c == 'j') {
			a.json = true;
		} else if (c == 'v') {
			return print_version();
		} else if (c == 'h') {
			usage(stdout);
			return EXIT_OK;
		} else {
			return usage_error(NULL, "%s: %s", bad_option(argv, buf, sizeof(buf)),
					   c == ':' ? "needs a value" : "unknown option");
		}
	}
	if (optind == argc)
		return usage_error(NULL, "missing COMMAND");
	const struct command *c = find_command(argv[optind]);
	if (!c)
		return usage_error(NULL, "%s: unknown command", argv[optind]);
	int status = parse_command(c, argc - optind, argv + optind, &a);
	if (status >= 0)
		return status;
	if (a.listen && a.textfile)
		return usage_error(c->name, "metrics: --listen or --textfile, not both");
	if (a.json && c->run == cmd_metrics)
		return usage_error(c->name, "metrics --json: metrics prints the Prometheus text "
					    "format only");
	if (!a.segment)
		a.segment = fdn_segment_default_name();
	if (fdn__validate_name(a.segment))
		return usage_error(c->name, "segment \"%s\": invalid name", a.segment);
	fdn_segment *s;
	int r = fdn_segment_attach(a.segment, FDN_SEG_READONLY, &s);
	char why[256];
	if (r)
		return complain(EXIT_FAIL, attach_why(a.segment, r, why, sizeof(why)),
				"segment \"%s\"", a.segment);
	/* A segment truncated under us ends the walk with one line, exit 1
	 * (never a crash): the SIGBUS guard, and a look before each walk. */
	fdn__seg_guard_sigbus(s, prog);
	status = c->run(s, &a);
	fdn_segment_detach(s);
	if (fflush(stdout) != 0 && status == EXIT_OK)
		return complain(EXIT_FAIL, strerror(errno), "output");
	return status;
}
