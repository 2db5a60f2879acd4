/*
 * tools/ctl/flags.c - foundation-ctl flags and stage.
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

/* ---- flags and stages -------------------------------------------------------- */

static int flags_list(const struct args *a, fdn_segment *s)
{
	static struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int n = fdn_flags_list(s, fl, FDN_FLAGS_MAX);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": flags", a->segment);
	if (n > FDN_FLAGS_MAX)
		n = FDN_FLAGS_MAX;
	if (a->json) {
		json_head(a);
		printf(",\"flags\":[");
		for (int i = 0; i < n; i++) {
			printf("%s{\"name\":", i ? "," : "");
			json_cstr(stdout, fl[i].name);
			printf(",\"value\":%d,\"default\":%d}", fl[i].value, fl[i].default_value);
		}
		printf("],\"count\":%d}\n", n);
		return EXIT_OK;
	}
	for (int i = 0; i < n; i++) {
		char v[16], d[16];
		printf("%-47s %-4s (default %s)\n", fl[i].name,
		       flag_text(fl[i].value, v, sizeof(v)),
		       flag_text(fl[i].default_value, d, sizeof(d)));
	}
	return EXIT_OK;
}

/* One flags sub-command on an attached segment. */
static int flags_run(const struct args *a, fdn_segment *s)
{
	const char *sub = a->words[0], *name = a->words[1];
	int r = 0, v = FDN_FLAG_OFF;
	if (strcmp(sub, "list") == 0)
		return flags_list(a, s);
	if (strcmp(sub, "reset") == 0) {
		if ((r = fdn_flags_reset(s)))
			return complain(EXIT_FAIL, fdn_strerror(r), "flags reset");
		return EXIT_OK;
	}
	if (strcmp(sub, "get") == 0) {
		char buf[16];
		if ((r = fdn_flag_get(s, name)) < 0)
			return complain(EXIT_FAIL, fdn_strerror(r), "flags get \"%s\"", name);
		if (a->json) {
			json_head(a);
			printf(",\"flag\":");
			json_cstr(stdout, name);
			printf(",\"value\":%d,\"enabled\":%s}\n", r,
			       r == FDN_FLAG_ON ? "true" : "false");
		} else {
			printf("%s\n", flag_text(r, buf, sizeof(buf)));
		}
		return EXIT_OK;
	}
	if (a->nwords == 3 && (r = fdn_flag_parse_value(a->words[2], &v)))
		return complain(EXIT_FAIL, fdn_strerror(r), "flags %s \"%s\": value \"%s\"", sub,
				name, a->words[2]);
	r = strcmp(sub, "set") == 0 ? fdn_flag_set(s, name, v) : fdn_flag_create(s, name, v);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "flags %s \"%s\"", sub, name);
	return EXIT_OK;
}

int cmd_flags(struct args *a)
{
	static const struct {
		const char *sub;
		int min, max; /* words, the sub-command's own included */
	} subs[] = {
	    {"set", 3, 3}, {"get", 2, 2}, {"list", 1, 1}, {"create", 2, 3}, {"reset", 1, 1}};
	if (a->nwords == 0)
		return usage_error("flags", "flags: missing set, get, list, create or reset");
	size_t i = 0;
	while (i < sizeof(subs) / sizeof(subs[0]) && strcmp(subs[i].sub, a->words[0]) != 0)
		i++;
	if (i == sizeof(subs) / sizeof(subs[0]))
		return usage_error("flags", "flags %s: unknown sub-command", a->words[0]);
	if (a->nwords < subs[i].min || a->nwords > subs[i].max)
		return usage_error("flags", "flags %s: %s", a->words[0],
				   a->nwords < subs[i].min ? "missing arguments"
							   : "too many arguments");
	fdn_segment *s;
	int status = attach(a, &s);
	if (status)
		return status;
	return detach(a, s, flags_run(a, s));
}

/* A stage number 0..9 (the library refuses those beyond 4). */
static bool stage_num(const char *text, int *n)
{
	uint64_t v;
	if (!parse_num(text, 10, 9, &v))
		return false;
	*n = (int)v;
	return true;
}

int cmd_stage(struct args *a)
{
	const char *sub = a->nwords ? a->words[0] : "";
	int n = 0;
	bool emergency = strcmp(sub, "emergency") == 0;
	if (!emergency && strcmp(sub, "migrate") != 0 && strcmp(sub, "rollback") != 0)
		return a->nwords
			   ? usage_error("stage", "stage %s: unknown sub-command", sub)
			   : usage_error("stage", "stage: missing migrate, rollback or emergency");
	if (a->nwords != 2)
		return usage_error("stage", "stage %s: missing %s", sub,
				   emergency ? "REASON" : "N");
	if (!emergency && !stage_num(a->words[1], &n))
		return usage_error("stage", "stage %s \"%s\": not a stage number", sub,
				   a->words[1]);
	if (a->reason && strcmp(sub, "rollback") != 0)
		return usage_error("stage", "stage %s --reason: only for rollback", sub);
	fdn_segment *s;
	int status = attach(a, &s);
	if (status)
		return status;
	int r = emergency                     ? fdn_stage_emergency_rollback(s, a->words[1])
		: strcmp(sub, "migrate") == 0 ? fdn_stage_migrate(s, n)
					      : fdn_stage_rollback(s, n, a->reason);
	if (r == FDN_ESTAGE)
		status = complain(EXIT_FAIL, fdn_strerror(r), "stage %s %s (at stage %d)", sub,
				  a->words[1], fdn_stage(s));
	else if (r)
		status = complain(EXIT_FAIL, fdn_strerror(r), "stage %s", sub);
	return detach(a, s, status);
}
