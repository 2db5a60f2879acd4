/*
 * tools/ctl/reaper.c - foundation-ctl reaper: status, start, stop.
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

/* ---- the reaper --------------------------------------------------------------- */

/* Poll the lease until it is free, or timeout_ms pass.  The holder's pid,
 * or 0. */
static pid_t reaper_gone(fdn_segment *s, int64_t timeout_ms)
{
	struct timespec tick = {0, 10 * 1000000L};
	for (int64_t waited = 0;; waited += 10) {
		pid_t p = fdn_reaper_holder(s);
		if (p == 0 || waited >= timeout_ms)
			return p;
		nanosleep(&tick, NULL);
	}
}

/* reaper status (field reaper_pid): {"segment":S,"reaper_pid":PID (0:
 * none),"stopped":B,"launches":N,"last_launch":{pid,time_ns,error} or
 * null,"why":TEXT}, or its sentence. */
static void reaper_status_print(const struct args *a, fdn_segment *s)
{
	struct fdn_reaper_status st;
	char why[512];
	fdn_reaper_status(s, &st);
	reaper_why(&st, why, sizeof(why));
	if (a->json) {
		json_head(a);
		printf(",\"reaper_pid\":%d,\"stopped\":%s,\"launches\":%u,\"last_launch\":",
		       (int)st.pid, st.stopped ? "true" : "false", st.launches);
		if (st.last_pid) {
			printf("{\"pid\":%d,\"time_ns\":%llu,\"error\":", (int)st.last_pid,
			       (unsigned long long)st.last_ns);
			if (st.last_error)
				json_cstr(stdout, fdn_errname(st.last_error));
			else
				printf("null");
			putchar('}');
		} else {
			printf("null");
		}
		printf(",\"why\":");
		json_cstr(stdout, why);
		printf("}\n");
	} else if (st.pid) {
		printf("reaper pid %d watches segment \"%s\"\n", (int)st.pid, a->segment);
	} else {
		printf("no reaper running: %s\n", why);
	}
}

/* What reaper start (field reaper_pid) and stop (stopped_pid) did:
 * {"segment":S,FIELD:PID} (0: none), or its sentence. */
static void reaper_print(const struct args *a, const char *field, pid_t p)
{
	if (a->json) {
		json_head(a);
		printf(",\"%s\":%d}\n", field, (int)p);
	} else if (strcmp(field, "stopped_pid") == 0) {
		if (p)
			printf("stopped reaper pid %d", (int)p);
		else
			printf("no reaper was running");
		printf("; none starts until `foundation-ctl reaper start`\n");
	} else {
		printf("reaper pid %d watches segment \"%s\"\n", (int)p, a->segment);
	}
}

/* reaper stop: the sticky stop, then the running reaper's exit.  A reaper
 * of a build before the stop flag does not look at it: after half the
 * time it gets SIGTERM, as stop always did before. */
static int reaper_stop(struct args *a, fdn_segment *s, int64_t timeout)
{
	pid_t p = fdn_reaper_holder(s);
	int r = fdn_reaper_stop(s, timeout / 2);
	if (r >= 0) {
		reaper_print(a, "stopped_pid", r);
		return EXIT_OK;
	}
	if (r != FDN_ETIMEDOUT)
		return complain(EXIT_FAIL, fdn_strerror(r), "reaper stop");
	if (p && fdn_reaper_holder(s) == p && kill(p, SIGTERM) != 0)
		return complain(EXIT_FAIL, strerror(errno), "reaper stop: pid %d", (int)p);
	if (reaper_gone(s, timeout - timeout / 2) != 0)
		return complain(EXIT_FAIL, fdn_strerror(FDN_ETIMEDOUT),
				"reaper stop: pid %d still holds the lease", (int)p);
	reaper_print(a, "stopped_pid", p);
	return EXIT_OK;
}

/* reaper start | stop | status */
int cmd_reaper(struct args *a)
{
	const char *sub = a->nwords ? a->words[0] : "";
	bool start = strcmp(sub, "start") == 0, stop = strcmp(sub, "stop") == 0;
	if (!start && !stop && strcmp(sub, "status") != 0)
		return a->nwords ? usage_error("reaper", "reaper %s: unknown sub-command", sub)
				 : usage_error("reaper", "reaper: missing start, stop or status");
	int64_t timeout = a->timeout_ms >= 0 ? a->timeout_ms : 5000;
	fdn_segment *s;
	/* start and stop write the stop flag: a writable handle, made
	 * without the attach's own autostart (start launches once, itself;
	 * stop must not launch one).  status only looks, read-only. */
	int r = start || stop ? fdn_segment_attach_noreaper(a->segment, &s)
			      : fdn_segment_attach(a->segment, FDN_SEG_READONLY, &s);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\"", a->segment);
	int status = EXIT_OK;
	if (start) {
		pid_t p;
		char looked[1024];
		if ((r = fdn_reaper_start(s)) == FDN_ENOREAPER) {
			fdn_reaper_locate(looked, sizeof(looked));
			fprintf(stderr, "%s: reaper start: no reaper program: looked at %s\n", prog,
				looked);
			status = EXIT_FAIL;
		} else if (r != 0) {
			status = complain(EXIT_FAIL, fdn_strerror(r), "reaper start");
		} else if ((p = fdn_reaper_wait(s, timeout)) <= 0) {
			status = complain(EXIT_FAIL, fdn_strerror(p),
					  "reaper start: no reaper took the lease");
		} else {
			reaper_print(a, "reaper_pid", p);
		}
	} else if (stop) {
		status = reaper_stop(a, s, timeout);
	} else {
		reaper_status_print(a, s);
		status = fdn_reaper_holder(s) ? EXIT_OK : EXIT_FAIL;
	}
	fdn_segment_detach(s);
	return status;
}
