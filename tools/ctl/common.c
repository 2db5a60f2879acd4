/*
 * tools/ctl/common.c - what every foundation-ctl command uses: attaching
 * (for a registry command: only with the shared registry on), detaching,
 * the --attr texts typed, the head of a JSON object.
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

/* ---- attaching ---------------------------------------------------------------- */

int attach(const struct args *a, fdn_segment **s)
{
	int r = fdn_segment_attach(a->segment, 0, s);
	char why[256];
	if (r)
		return complain(EXIT_FAIL, attach_why(a->segment, r, why, sizeof(why)),
				"segment \"%s\"", a->segment);
	return EXIT_OK;
}

/* Attach for a registry command.  The registry's backend follows the flags
 * in every process, this one too: with use_shm_registry off an entry would
 * go to this short-lived process's local registry and vanish with it, so
 * the command fails instead of pretending. */
int attach_registry(const struct args *a, fdn_segment **s)
{
	int status = attach(a, s);
	if (status == EXIT_OK && !fdn_flag_enabled(*s, "use_shm_registry")) {
		fdn_segment_detach(*s);
		return complain(EXIT_FAIL,
				"use_shm_registry is off (the registry is process-local)",
				"segment \"%s\"", a->segment);
	}
	return status;
}

/* Detach: a process that registered for other pids leaves their entries
 * alone (they belong to those pids), so the plain detach is right. */
int detach(const struct args *a, fdn_segment *s, int status)
{
	int r = fdn_segment_detach(s);
	if (r && status == EXIT_OK)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": detach", a->segment);
	return status;
}

/* ---- attributes ----------------------------------------------------------------- */

void attrs_free(struct attrset *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->text[i]);
	set->n = 0;
}

/* The --attr texts of command cmd, typed (cli.h); bad text is bad usage. */
int attrs_parse(const char *cmd, const struct args *a, struct attrset *set)
{
	set->n = 0;
	for (size_t i = 0; i < a->nattrs; i++) {
		char *copy = strdup(a->attr_text[i]);
		if (!copy) {
			attrs_free(set);
			return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "attribute \"%s\"",
					a->attr_text[i]);
		}
		set->text[set->n++] = copy;
		const char *why = attr_parse(copy, &set->v[i], set->items[i], FDN_ATTR_LIST_MAX);
		if (why) {
			attrs_free(set);
			return usage_error(cmd, "%s --attr \"%s\": %s", cmd, a->attr_text[i], why);
		}
	}
	return EXIT_OK;
}

/* ---- output ---------------------------------------------------------------------- */

/* {"segment":NAME,  -- the start of every JSON object printed */
void json_head(const struct args *a)
{
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
}
