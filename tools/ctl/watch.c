/*
 * tools/ctl/watch.c - foundation-ctl watch: the change log, followed.
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

/* ---- watch ------------------------------------------------------------------------ */

static void watch_print(const struct args *a, const struct fdn_change *c)
{
	if (a->json) {
		printf("{\"revision\":%" PRIu64 ",\"kind\":\"%s\",\"key\":", c->revision,
		       fdn_change_type_name(c->kind));
		json_str(stdout, c->key, c->key_len);
		printf(",\"pid\":%d,\"time_ns\":%" PRIu64, (int)c->pid, c->time_ns);
		if (c->death != FDN_NO_DEATH)
			printf(",\"death\":%" PRIu64, c->death);
		printf("}\n");
		return;
	}
	printf("%" PRIu64 " %s pid=%d ", c->revision, fdn_change_type_name(c->kind), (int)c->pid);
	if (c->death != FDN_NO_DEATH)
		printf("death=%" PRIu64 " ", c->death);
	text_str(stdout, c->key, c->key_len);
	putchar('\n');
}

/* Stream changes until SIGINT/SIGTERM (exit 0), --count N of them (exit
 * 0), or an overrun (exit 1: changes were lost to this reader). */
int cmd_watch(struct args *a)
{
	const char *prefix = a->prefix ? a->prefix : "";
	size_t plen = strlen(prefix);
	if (plen > FDN_REG_KEY_MAX)
		return usage_error("watch", "watch --prefix: longer than %u bytes",
				   FDN_REG_KEY_MAX);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	/* Signals arrive through a signalfd beside the subscription's fd: the
	 * loop ends cleanly (the subscription closed, the segment detached).
	 * Blocked before attach: the subscription's thread inherits the mask. */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return complain(EXIT_FAIL, strerror(errno), "watch: signalfd");
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status) {
		close(sfd);
		return status;
	}
	fdn_subscription *sub;
	int r = a->from_set ? fdn_subscribe_from(s, prefix, plen, a->from, 0, &sub)
			    : fdn_subscribe(s, prefix, plen, 0, &sub);
	if (r) {
		close(sfd);
		return detach(a, s, complain(EXIT_FAIL, fdn_strerror(r), "watch \"%s\"", prefix));
	}
	uint64_t printed = 0;
	struct fdn_change ch[64];
	struct pollfd p[2] = {{fdn_subscription_fd(sub), POLLIN, 0}, {sfd, POLLIN, 0}};
	while (!a->count_set || printed < a->count) {
		size_t want = sizeof(ch) / sizeof(ch[0]);
		if (a->count_set && a->count - printed < want)
			want = (size_t)(a->count - printed);
		int n = fdn_subscription_read(sub, ch, want);
		if (n == FDN_EOVERFLOW) {
			char why[128];
			snprintf(why, sizeof(why),
				 "changes after revision %" PRIu64 " were overwritten before "
				 "they were read",
				 fdn_subscription_revision(sub));
			status = complain(EXIT_FAIL, why, "watch \"%s\"", prefix);
			break;
		}
		if (n < 0) {
			status = complain(EXIT_FAIL, fdn_strerror(n), "watch \"%s\"", prefix);
			break;
		}
		for (int i = 0; i < n; i++)
			watch_print(a, &ch[i]);
		printed += (uint64_t)n;
		if (n > 0) {
			fflush(stdout);
			continue; /* more may wait: read again before polling */
		}
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			status = complain(EXIT_FAIL, strerror(errno), "watch: poll");
			break;
		}
		if (p[1].revents & POLLIN)
			break; /* interrupted: done */
	}
	fflush(stdout);
	fdn_subscription_close(sub);
	close(sfd);
	return detach(a, s, status);
}
