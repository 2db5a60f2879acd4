/* tools/inspect/registry.c - foundation-inspect: registry entries and the process table. */
#include "inspect/inspect.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int cmd_registry(fdn_segment *s, const struct args *a)
{
	struct rows rs = {.prefix = a->prefix};
	int status = registry_collect(s, a, &rs);
	if (status == EXIT_OK) {
		if (rs.n)
			qsort(rs.v, rs.n, sizeof(*rs.v), row_cmp);
		if (a->json)
			rows_json(a->out, a->segment, &rs);
		else
			status = rows_text(a->out, &rs);
	}
	rows_free(&rs);
	return status;
}

/* ---- processes ------------------------------------------------------------------- */

/* The process table copied out (fdn_processes), in slot order, into a
 * struct vec of struct fdn_process. */
static int procs_collect(void *arg, const struct fdn_process *p)
{
	return vec_push(arg, p, sizeof(*p)) ? 0 : -ENOMEM;
}

static void processes_json(const struct args *a, const struct vec *ps)
{
	fprintf(a->out, "{\"segment\":");
	json_cstr(a->out, a->segment);
	fprintf(a->out, ",\"processes\":[");
	for (size_t i = 0; i < ps->n; i++) {
		const struct fdn_process *p = (const struct fdn_process *)ps->v + i;
		fprintf(a->out,
			"%s\n  {\"slot\":%u,\"pid\":%u,\"state\":\"%s\",\"ident\":%" PRIu64
			",\"ident_kind\":\"%s\",\"uid\":%u,\"attached_ns\":%" PRIu64
			",\"claimer_pid\":%u,\"reader_slots\":%u}",
			i ? "," : "", p->slot, p->pid, fdn_process_state_name(p->state), p->ident,
			fdn_identity_kind_name(p->ident_kind), p->uid, p->attached_ns,
			p->claimer_pid, p->reader_slots);
	}
	fprintf(a->out, "%s]}\n", ps->n ? "\n" : "");
}

static int processes_text(const struct args *a, const struct vec *ps)
{
	struct table t = {.ncol = 8, .align = "rrllrlrr"};
	char buf[40];
	const char *head[] = {"SLOT", "PID",      "STATE",   "IDENT",
			      "UID",  "ATTACHED", "READERS", "CLAIMER"};
	for (size_t i = 0; i < 8; i++)
		cellf(&t, "%s", head[i]);
	for (size_t i = 0; i < ps->n; i++) {
		const struct fdn_process *p = (const struct fdn_process *)ps->v + i;
		cellf(&t, "%u", p->slot);
		cellf(&t, "%u", p->pid);
		cellf(&t, "%s", fdn_process_state_name(p->state));
		cellf(&t, "%s:%" PRIu64, fdn_identity_kind_name(p->ident_kind), p->ident);
		cellf(&t, "%u", p->uid);
		cellf(&t, "%s", iso_time(p->attached_ns, buf, sizeof(buf)));
		cellf(&t, "%u", p->reader_slots);
		cellf(&t, "%u", p->claimer_pid);
	}
	return table_done(a->out, &t);
}

int cmd_processes(fdn_segment *s, const struct args *a)
{
	struct vec ps = {0};
	int r = fdn_processes(s, procs_collect, &ps);
	if (r) {
		free(ps.v);
		return complain(EXIT_FAIL, fdn_strerror(r < 0 ? r : -ENOMEM), "processes");
	}
	int status = EXIT_OK;
	if (a->json)
		processes_json(a, &ps);
	else
		status = processes_text(a, &ps);
	free(ps.v);
	return status;
}
