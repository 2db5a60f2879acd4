/* tools/inspect/spans.c - foundation-inspect: spans and contexts of live threads, and the
 * graveyard. */
#include "inspect/inspect.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- spans and contexts: live threads and the graveyard's copies ------------------- */

static const char *status_name(int st)
{
	static const char *const names[] = {"open", "ok", "error", "aborted"};
	return st >= 0 && st <= 3 ? names[st] : "?";
}

static void thread_json(FILE *out, const struct fdn_thread_trace *t)
{
	char buf[40];
	fprintf(out, "\n  {\"pid\":%d,\"tid\":%u,\"dead\":%s,\"torn\":%s,\"claimed_ns\":%" PRIu64,
		(int)t->pid, t->tid, t->dead ? "true" : "false", t->torn ? "true" : "false",
		t->claimed_real);
	if (t->dead)
		fprintf(out, ",\"died_ns\":%" PRIu64 ",\"died\":\"%s\"", t->died_real,
			iso_time(t->died_real, buf, sizeof(buf)));
	fprintf(out, ",\"depth\":%u,\"spans\":[", t->depth);
	for (uint32_t i = 0; i < t->depth; i++) {
		const struct fdn_span_info *sp = &t->spans[i];
		fprintf(out, "%s\n    {\"depth\":%u,\"name\":", i ? "," : "", sp->depth);
		json_cstr(out, sp->name);
		fprintf(out,
			",\"trace_id\":\"%s\",\"span_id\":\"%016" PRIx64
			"\",\"parent_id\":\"%016" PRIx64
			"\",\"status\":\"%s\",\"%s\":%.6f,\"events\":%u,\"links\":%u,"
			"\"attributes\":",
			sp->trace_id, sp->span_id, sp->parent_id, status_name(sp->status),
			t->dead ? "duration_ms" : "age_ms", (double)sp->duration_ns / 1e6,
			sp->nevents, sp->nlinks);
		attr_set(out, sp->attrs, sp->attrs_len, true);
		fputc('}', out);
	}
	fprintf(out, "],\"context\":{\"correlation_id\":");
	json_cstr(out, t->correlation_id);
	fprintf(out, ",\"operation_id\":");
	json_cstr(out, t->operation_id);
	fprintf(out, ",\"attributes\":");
	attr_set(out, t->ctx, t->ctx_len, true);
	fprintf(out, ",\"breadcrumbs\":[");
	for (uint32_t i = 0; i < t->ncrumbs; i++) {
		const struct fdn_crumb *c = &t->crumbs[i];
		fprintf(out, "%s{\"time_ns\":%" PRIu64 ",\"module\":", i ? "," : "", c->time_real);
		json_cstr(out, c->module);
		fprintf(out, ",\"function\":");
		json_cstr(out, c->function);
		fprintf(out, ",\"attributes\":");
		attr_set(out, c->attrs, c->attrs_len, true);
		fputc('}', out);
	}
	fprintf(out, "]}}");
}

static int thread_text(FILE *out, const struct fdn_thread_trace *t)
{
	char buf[40], *cell;
	size_t len;
	fprintf(out, "pid %d thread %u%s%s: %u open span%s\n", (int)t->pid, t->tid,
		t->dead ? ", died " : "", t->dead ? iso_time(t->died_real, buf, sizeof(buf)) : "",
		t->depth, t->depth == 1 ? "" : "s");
	if (t->torn)
		fprintf(out, "  (copied while being written: fields may be partial)\n");
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
		if (table_done(out, &tb) != EXIT_OK)
			return EXIT_FAIL;
	}
	if (t->correlation_id[0] || t->operation_id[0])
		fprintf(out, "  correlation %s  operation %s\n",
			t->correlation_id[0] ? t->correlation_id : "-",
			t->operation_id[0] ? t->operation_id : "-");
	if (t->ctx_len) {
		fprintf(out, "  context: ");
		attr_set(out, t->ctx, t->ctx_len, false);
		fputc('\n', out);
	}
	for (uint32_t i = 0; i < t->ncrumbs; i++) {
		const struct fdn_crumb *c = &t->crumbs[i];
		fprintf(out, "  breadcrumb %s %s.%s", iso_time(c->time_real, buf, sizeof(buf)),
			c->module, c->function);
		if (c->attrs_len) {
			fputc(' ', out);
			attr_set(out, c->attrs, c->attrs_len, false);
		}
		fputc('\n', out);
	}
	return EXIT_OK;
}

struct threads_out {
	FILE *out;
	bool json;
	int n;
	int status;
};

static int thread_cb(void *arg, const struct fdn_thread_trace *t)
{
	struct threads_out *o = arg;
	if (o->json) {
		if (o->n)
			fputc(',', o->out);
		thread_json(o->out, t);
	} else {
		if (o->n)
			fputc('\n', o->out);
		if (thread_text(o->out, t) != EXIT_OK)
			o->status = EXIT_FAIL;
	}
	o->n++;
	return 0;
}

int cmd_spans(fdn_segment *s, const struct args *a)
{
	struct threads_out o = {.out = a->out, .json = a->json};
	if (a->json) {
		fprintf(a->out, "{\"segment\":");
		json_cstr(a->out, a->segment);
		fprintf(a->out, ",\"threads\":[");
	}
	int r = fdn_traces_foreach(s, a->pid, thread_cb, &o);
	if (r < 0) {
		fflush(a->out);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": spans", a->segment);
	}
	if (a->json)
		fprintf(a->out, "%s],\"count\":%d,\"skipped\":%d}\n", o.n ? "\n" : "", o.n, r);
	else if (o.n == 0)
		fprintf(a->out, "no thread holds spans or a context%s\n",
			a->pid ? " in that process" : "");
	if (!a->json && r > 0)
		fprintf(a->out, "%d slot%s skipped: rewritten during every read\n", r,
			r == 1 ? "" : "s");
	return o.status;
}

/* ---- graveyard --------------------------------------------------------------------- */

static void graveyard_json(const struct args *a, uint64_t total, const struct fdn_death *d, int n)
{
	char buf[40];
	fprintf(a->out, "{\"segment\":");
	json_cstr(a->out, a->segment);
	fprintf(a->out, ",\"deaths_total\":%" PRIu64 ",\"graveyard\":[", total);
	for (int i = 0, k = 0; i < n; i++)
		if (a->pid == 0 || (int32_t)d[i].pid == a->pid)
			fprintf(a->out,
				"%s\n  {\"number\":%" PRIu64
				",\"pid\":%d,\"signal\":%d,\"status\":%d,"
				"\"ident\":%" PRIu64 ",\"died_ns\":%" PRIu64 ",\"died\":\"%s\","
				"\"latency_ms\":%.6f,\"entries\":%" PRIu64 "}",
				k++ ? "," : "", d[i].number, (int)d[i].pid, d[i].exit_signal,
				d[i].exit_status, d[i].ident, d[i].died_ns,
				iso_time(d[i].died_ns, buf, sizeof(buf)),
				(double)d[i].latency_ns / 1e6, d[i].entries);
	fprintf(a->out, "%s]", n ? "\n" : "");
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
	fprintf(a->out, "%" PRIu64 " deaths in total%s\n", total,
		n ? "; the most recent first:" : "");
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
	return table_done(a->out, &t);
}

int cmd_graveyard(fdn_segment *s, const struct args *a)
{
	static struct fdn_death d[FDN_GRAVEYARD_CAPACITY];
	int n = fdn_graveyard(s, d, (int)FDN_GRAVEYARD_CAPACITY);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": graveyard",
				a->segment);
	uint64_t total = fdn_deaths(s), written, dropped;
	fdn_graveyard_trace_counts(s, &written, &dropped);
	struct threads_out o = {.out = a->out, .json = a->json};
	if (a->json) {
		graveyard_json(a, total, d, n);
		fprintf(a->out,
			",\"threads_total\":%" PRIu64 ",\"threads_dropped\":%" PRIu64
			",\"threads\":[",
			written, dropped);
	} else {
		if (graveyard_text(a, total, d, n) != EXIT_OK)
			return EXIT_FAIL;
		fprintf(a->out,
			"\n%" PRIu64 " dead thread%s copied, %" PRIu64
			" of them dropped (the oldest)%s\n",
			written, written == 1 ? "" : "s", dropped,
			written ? "; what they were doing, the most recent first:" : "");
	}
	int r = fdn_graveyard_traces(s, a->pid, thread_cb, &o);
	if (r < 0) {
		fflush(a->out);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": graveyard",
				a->segment);
	}
	if (a->json)
		fprintf(a->out, "%s]}\n", o.n ? "\n" : "");
	return o.status;
}
