/*
 * tools/ctl/segment.c - foundation-ctl create and destroy.
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

int cmd_create(struct args *a)
{
	fdn_segment *s;
	int r = fdn_segment_create(a->segment, &a->opts, &s);
	uint64_t need;
	struct statvfs vfs;
	if (r == FDN_ENOSPACE && fdn_segment_size(&a->opts, &need) == 0 &&
	    statvfs(fdn_segment_dir(), &vfs) == 0)
		return complain(
		    EXIT_FAIL, "no space",
		    "create segment \"%s\": it needs %" PRIu64 " bytes, %s has %" PRIu64 " free",
		    a->segment, need, fdn_segment_dir(), (uint64_t)vfs.f_bavail * vfs.f_frsize);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "create segment \"%s\"", a->segment);
	int status = detach(a, s, EXIT_OK);
	if (status == EXIT_OK && a->json) {
		json_head(a);
		printf(",\"created\":true}\n");
	} else if (status == EXIT_OK) {
		printf("created segment \"%s\"\n", a->segment);
	}
	return status;
}

int cmd_destroy(struct args *a)
{
	int r = fdn_segment_destroy(a->segment);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "destroy segment \"%s\"", a->segment);
	if (a->json) {
		json_head(a);
		printf(",\"destroyed\":true}\n");
	} else {
		printf("destroyed segment \"%s\"\n", a->segment);
	}
	return EXIT_OK;
}
