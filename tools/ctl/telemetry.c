/*
 * tools/ctl/telemetry.c - foundation-ctl sampler and emit.
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

/* ---- telemetry ------------------------------------------------------------------ */

/* sampler set NAME SPEC | sampler reset-stats NAME */
int cmd_sampler(struct args *a)
{
	if (a->nwords == 2 && strcmp(a->words[0], "reset-stats") == 0) {
		const char *name = a->words[1];
		int r = fdn_event_name_check(name);
		if (r)
			return complain(EXIT_FAIL, fdn_strerror(r), "sampler \"%s\"", name);
		fdn_segment *s;
		int status = attach(a, &s);
		if (status)
			return status;
		if ((r = fdn_sampler_reset_stats(s, name)))
			status = complain(EXIT_FAIL, fdn_strerror(r), "sampler reset-stats \"%s\"",
					  name);
		return detach(a, s, status);
	}
	if (a->nwords != 3 || strcmp(a->words[0], "set") != 0)
		return usage_error("sampler",
				   "sampler: expected \"set NAME SPEC\" or \"reset-stats NAME\"");
	const char *name = a->words[1], *text = a->words[2];
	struct fdn_sampler sp;
	int r = fdn_event_name_check(name);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "sampler \"%s\"", name);
	if ((r = fdn_sampler_parse(text, &sp)))
		return complain(EXIT_FAIL, fdn_strerror(r), "sampler \"%s\"", text);
	fdn_segment *s;
	int status = attach(a, &s);
	if (status)
		return status;
	if ((r = fdn_sampler_set(s, name, &sp)))
		status = complain(EXIT_FAIL, fdn_strerror(r), "sampler set \"%s\"", name);
	return detach(a, s, status);
}

/* emit NAME [--measure NAME=NUMBER ...] [--attr NAME=VALUE ...] [--count N] */
int cmd_emit(struct args *a)
{
	static struct attrset set;
	struct fdn_measurement m[FDN_MEASUREMENTS_MAX];
	char mnames[FDN_MEASUREMENTS_MAX][FDN_MEASUREMENT_NAME_MAX + 1];
	for (size_t i = 0; i < a->nmeasures; i++) {
		const char *t = a->measure_text[i], *eq = strchr(t, '=');
		size_t nl = eq ? (size_t)(eq - t) : 0;
		if (!eq || nl == 0 || nl > FDN_MEASUREMENT_NAME_MAX)
			return usage_error("emit",
					   "emit --measure \"%s\": expected NAME=NUMBER, "
					   "NAME 1..%u bytes",
					   t, FDN_MEASUREMENT_NAME_MAX);
		memcpy(mnames[i], t, nl);
		mnames[i][nl] = 0;
		m[i].name = mnames[i];
		if (!parse_double(eq + 1, &m[i].value))
			return usage_error("emit", "emit --measure \"%s\": not a finite number", t);
	}
	fdn_segment *s;
	int status = attrs_parse("emit", a, &set);
	if (status || (status = attach(a, &s))) {
		attrs_free(&set);
		return status;
	}
	uint64_t n = a->count ? a->count : 1;
	for (uint64_t i = 0; i < n; i++) {
		int r = fdn_emit(s, a->key, m, a->nmeasures, set.v, set.n);
		if (r < 0) {
			status = complain(EXIT_FAIL, fdn_strerror(r), "emit \"%s\"", a->key);
			break;
		}
	}
	attrs_free(&set);
	return detach(a, s, status);
}
