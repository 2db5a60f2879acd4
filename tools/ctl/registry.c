/*
 * tools/ctl/registry.c - foundation-ctl's registry commands: register,
 * unregister, get, query, update, merge, wait.
 */
#include "ctl/ctl.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cmd_register(struct args *a)
{
	static struct attrset set;
	fdn_segment *s;
	int status = attrs_parse("register", a, &set);
	if (status || (status = attach_registry(a, &s))) {
		attrs_free(&set);
		return status;
	}
	pid_t holder = 0;
	unsigned flags = a->replace ? FDN_REG_REPLACE : 0;
	char host[FDN_HOST_MAX + 1] = "";
	int r = a->unique
		    ? fdn_register_cluster_unique(s, a->key, strlen(a->key), a->pid, set.v, set.n,
						  a->timeout_ms >= 0 ? (int)a->timeout_ms : 5000,
						  host, &holder)
		    : fdn_register(s, a->key, strlen(a->key), a->pid, set.v, set.n, flags, &holder);
	if (r == FDN_EEXISTS && a->unique) {
		char why[128];
		snprintf(why, sizeof(why), "%s (held by host %s, pid %d)", fdn_strerror(r), host,
			 (int)holder);
		status = complain(EXIT_FAIL, why, "register \"%s\"", a->key);
	} else if (r == FDN_EEXISTS && holder > 0) {
		char why[64];
		snprintf(why, sizeof(why), "%s (held by pid %d)", fdn_strerror(r), (int)holder);
		status = complain(EXIT_FAIL, why, "register \"%s\"", a->key);
	} else if (r) {
		status = complain(EXIT_FAIL, fdn_strerror(r), "register \"%s\"", a->key);
	}
	attrs_free(&set);
	return detach(a, s, status);
}

int cmd_unregister(struct args *a)
{
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status)
		return status;
	int r = fdn_unregister(s, a->key, strlen(a->key));
	if (r)
		status = complain(EXIT_FAIL, fdn_strerror(r), "unregister \"%s\"", a->key);
	return detach(a, s, status);
}

/* get KEY: the entry, one row (or one JSON object). */
int cmd_get(struct args *a)
{
	static struct fdn_entry e;
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status)
		return status;
	int r = fdn_lookup(s, a->key, strlen(a->key), 0, &e);
	if (r) {
		status = complain(EXIT_FAIL, fdn_strerror(r), "get \"%s\"", a->key);
	} else if (a->json) {
		json_head(a);
		printf(",\"key\":");
		json_str(stdout, e.key, e.key_len);
		printf(",\"pid\":%d,\"registered_ns\":%" PRIu64 ",\"attributes\":", (int)e.pid,
		       e.registered_ns);
		attr_set(stdout, e.attrs, e.attrs_len, true);
		printf("}\n");
	} else {
		struct row row = {e.key, e.key_len, e.pid, e.registered_ns, e.attrs, e.attrs_len};
		struct rows rs = {.v = &row, .n = 1};
		status = rows_text(stdout, &rs);
	}
	return detach(a, s, status);
}

/* query [--where NAME OP VALUE ...]: the entries every criterion holds for. */
int cmd_query(struct args *a)
{
	static struct fdn_criterion c[MAX_WHERE];
	static const char *items[MAX_WHERE][FDN_ATTR_LIST_MAX];
	char *text[MAX_WHERE] = {0};
	int status = EXIT_OK;
	for (size_t i = 0; i < a->nwhere && status == EXIT_OK; i++) {
		const char *why;
		if (!(text[i] = strdup(a->where_text[i])))
			status = complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "query");
		else if ((why = where_parse(text[i], &c[i], items[i], FDN_ATTR_LIST_MAX)))
			status =
			    usage_error("query", "query --where \"%s\": %s", a->where_text[i], why);
	}
	fdn_segment *s;
	struct rows rs = {0};
	if (status == EXIT_OK && (status = attach_registry(a, &s)) == EXIT_OK) {
		int r = fdn_query(s, c, a->nwhere, rows_collect, &rs);
		if (r < 0) {
			status = complain(EXIT_FAIL, fdn_strerror(r), "query");
		} else {
			if (rs.n)
				qsort(rs.v, rs.n, sizeof(*rs.v), row_cmp);
			if (a->json)
				rows_json(stdout, a->segment, &rs);
			else
				status = rows_text(stdout, &rs);
		}
		status = detach(a, s, status);
	}
	rows_free(&rs);
	for (size_t i = 0; i < a->nwhere; i++)
		free(text[i]);
	return status;
}

/* update (replace all attributes) and merge. */
static int change_attrs(struct args *a, bool merge)
{
	static struct attrset set;
	fdn_segment *s;
	int status = attrs_parse(merge ? "merge" : "update", a, &set);
	if (status || (status = attach_registry(a, &s))) {
		attrs_free(&set);
		return status;
	}
	size_t klen = strlen(a->key);
	int r = merge ? fdn_merge_attributes(s, a->key, klen, set.v, set.n)
		      : fdn_update_attributes(s, a->key, klen, set.v, set.n);
	if (r)
		status = complain(EXIT_FAIL, fdn_strerror(r), "%s \"%s\"",
				  merge ? "merge" : "update", a->key);
	attrs_free(&set);
	return detach(a, s, status);
}

int cmd_update(struct args *a)
{
	/* Replacing every attribute by none wipes them: only when asked. */
	if (a->nattrs == 0 && !a->clear)
		return usage_error("update",
				   "update \"%s\": no --attr given (--clear removes "
				   "every attribute)",
				   a->key);
	if (a->nattrs > 0 && a->clear)
		return usage_error("update", "update --clear: takes no --attr");
	return change_attrs(a, false);
}

int cmd_merge(struct args *a)
{
	return change_attrs(a, true);
}

int cmd_wait(struct args *a)
{
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status)
		return status;
	int r = fdn_watch(s, a->key, strlen(a->key), !a->gone, a->timeout_ms);
	if (r == FDN_ETIMEDOUT) {
		char why[64];
		snprintf(why, sizeof(why), "timed out after %" PRId64 " ms", a->timeout_ms);
		status = complain(EXIT_FAIL, why, "wait \"%s\"", a->key);
	} else if (r) {
		status = complain(EXIT_FAIL, fdn_strerror(r), "wait \"%s\"", a->key);
	}
	return detach(a, s, status);
}
