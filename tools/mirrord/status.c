/*
 * tools/mirrord/status.c - the agent's shared state (struct agent, under
 * agent.mu), its small helpers (the publisher's wake-up, the clock, naps,
 * error lines) and the status entries: key 0x00 (the cluster) and 0x00
 * host (each host), written by the status thread every 500 ms.
 *
 * Called by every thread of the agent; calls the registry (public API).
 */
#include "mirrord/agent.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct agent agent;

/* End the publisher's wait now: a flag it reads (agent.stop, agent.lease_lost,
 * agent.need_resync) was just set.  The flag is written before the eventfd,
 * and the publisher reads the flags after poll returns, so it cannot
 * miss the flag that woke it. */
void wake_publisher(void)
{
	uint64_t one = 1;
	ssize_t n = write(agent.pub_wake, &one, sizeof(one));
	(void)n; /* EAGAIN: the counter is already non-zero, the wake is due */
}

uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleep ms, or less if the agent is stopping. */
void nap(long ms)
{
	for (long t = 0; t < ms && !atomic_load(&agent.stop); t += 20) {
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

__attribute__((format(printf, 2, 3))) void say(char *dst, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&agent.mu);
	bool same = strcmp(dst, line) == 0;
	snprintf(dst, 256, "%s", line);
	pthread_mutex_unlock(&agent.mu);
	if (!same)
		fprintf(stderr, "%s: %s\n", prog, line);
}

/* ---- the status entries --------------------------------------------------- */

static const unsigned char status_key[1] = {FDN_REG_REMOTE_BYTE};

/* Write the cluster's status entry (agent.mu held). */
void status_write_locked(void)
{
	const char *names[256];
	for (int i = 0; i < agent.nhosts; i++)
		names[i] = agent.hname[i];
	bool degraded = !agent.pub_ok || !agent.mir_ok || agent.dropped > 0;
	int64_t lag =
	    agent.cluster_rev > agent.applied_rev ? agent.cluster_rev - agent.applied_rev : 0;
	struct fdn_attr at[] = {
	    {.name = "cluster", .type = FDN_ATTR_STRING, .v.s = agent.cluster},
	    {.name = "host", .type = FDN_ATTR_STRING, .v.s = agent.host},
	    {.name = "hosts", .type = FDN_ATTR_LIST, .v.list = {names, (uint32_t)agent.nhosts}},
	    {.name = "degraded", .type = FDN_ATTR_BOOL, .v.b = degraded},
	    {.name = "publisher",
	     .type = FDN_ATTR_STRING,
	     .v.s = agent.pub_ok ? "ok" : agent.pub_err},
	    {.name = "mirror", .type = FDN_ATTR_STRING, .v.s = agent.mir_ok ? "ok" : agent.mir_err},
	    {.name = "dropped", .type = FDN_ATTR_INT, .v.i = agent.dropped},
	    {.name = "lease", .type = FDN_ATTR_INT, .v.i = agent.lease},
	    {.name = "lease_ttl", .type = FDN_ATTR_INT, .v.i = agent.lease_ttl},
	    {.name = "published", .type = FDN_ATTR_INT, .v.i = agent.published},
	    {.name = "mirrored", .type = FDN_ATTR_INT, .v.i = agent.mirrored},
	    {.name = "revision", .type = FDN_ATTR_INT, .v.i = agent.applied_rev},
	    {.name = "lag", .type = FDN_ATTR_INT, .v.i = lag},
	    {.name = "resyncs", .type = FDN_ATTR_INT, .v.i = (int64_t)agent.resyncs},
	    {.name = "publish_failures", .type = FDN_ATTR_INT, .v.i = (int64_t)agent.pub_failures},
	    {.name = "mirror_failures", .type = FDN_ATTR_INT, .v.i = (int64_t)agent.mir_failures},
	    {.name = "socket", .type = FDN_ATTR_STRING, .v.s = agent.sock},
	    {.name = "claims",
	     .type = FDN_ATTR_INT,
	     .v.i = json_object_object_length(agent.claims)},
	    {.name = "claim_conflicts",
	     .type = FDN_ATTR_INT,
	     .v.i = (int64_t)agent.claim_conflicts},
	};
	fdn_register(agent.s, status_key, 1, getpid(), at, sizeof(at) / sizeof(at[0]),
		     FDN_REG_REPLACE | FDN_REG_MIRROR, NULL);
}

/* Index of host h in the table, added if absent (agent.mu held): -1 when full. */
int host_slot(const char *h, bool add)
{
	for (int i = 0; i < agent.nhosts; i++)
		if (strcmp(agent.hname[i], h) == 0)
			return i;
	if (!add || agent.nhosts == 256)
		return -1;
	int i = agent.nhosts++;
	snprintf(agent.hname[i], sizeof(agent.hname[i]), "%s", h);
	agent.hi[i] = (struct host_info){.ttl_left = -2};
	/* Listed before its first entry is registered (top of file). */
	status_write_locked();
	return i;
}

/* Write each host's entry and drop hosts left without entries (agent.mu). */
void hosts_write_locked(void)
{
	for (int i = 0; i < agent.nhosts;) {
		unsigned char k[2 + FDN_HOST_MAX];
		size_t hl = strlen(agent.hname[i]);
		k[0] = FDN_REG_REMOTE_BYTE;
		memcpy(k + 1, agent.hname[i], hl);
		if (agent.hi[i].entries == 0 && agent.hi[i].pending == 0) {
			fdn_unregister_flags(agent.s, k, 1 + hl,
					     FDN_REG_MIRROR | FDN_REG_IF_PRESENT);
			agent.nhosts--;
			if (i != agent.nhosts) {
				memcpy(agent.hname[i], agent.hname[agent.nhosts],
				       sizeof(agent.hname[i]));
				agent.hi[i] = agent.hi[agent.nhosts];
			}
			continue;
		}
		struct fdn_attr at[] = {
		    {.name = "entries", .type = FDN_ATTR_INT, .v.i = agent.hi[i].entries},
		    {.name = "lease", .type = FDN_ATTR_INT, .v.i = agent.hi[i].lease},
		    {.name = "ttl_left", .type = FDN_ATTR_INT, .v.i = agent.hi[i].ttl_left},
		};
		fdn_register(agent.s, k, 1 + hl, getpid(), at, 3, FDN_REG_REPLACE | FDN_REG_MIRROR,
			     NULL);
		i++;
	}
}

void *status_thread(void *arg)
{
	(void)arg;
	struct etcd c;
	if (etcd_init(&c, &agent.eo, &agent.stop))
		return NULL;
	bool was_degraded = false;
	uint64_t next_ttl = 0, start = mono_ms();
	while (!atomic_load(&agent.stop)) {
		/* Each host's lease TTL left and the store's revision, asked
		 * once a second outside agent.mu (they are network calls). */
		if (mono_ms() >= next_ttl) {
			next_ttl = mono_ms() + 1000;
			int64_t leases[256], left[256];
			int n;
			pthread_mutex_lock(&agent.mu);
			n = agent.nhosts;
			for (int i = 0; i < n; i++)
				leases[i] = agent.hi[i].lease;
			pthread_mutex_unlock(&agent.mu);
			for (int i = 0; i < n; i++)
				if (leases[i] == 0 || etcd_lease_ttl(&c, leases[i], &left[i]))
					left[i] = -2;
			int64_t rev = 0;
			bool rev_ok = etcd_revision(&c, &rev) == 0;
			pthread_mutex_lock(&agent.mu);
			for (int i = 0; i < n && i < agent.nhosts; i++)
				if (agent.hi[i].lease == leases[i])
					agent.hi[i].ttl_left = left[i];
			if (rev_ok && rev > agent.cluster_rev)
				agent.cluster_rev = rev;
			pthread_mutex_unlock(&agent.mu);
		}
		pthread_mutex_lock(&agent.mu);
		bool degraded = !agent.pub_ok || !agent.mir_ok || agent.dropped > 0;
		status_write_locked();
		hosts_write_locked();
		int64_t dropped = agent.dropped;
		pthread_mutex_unlock(&agent.mu);
		/* Starting is not degraded: the first connection gets
		 * STARTUP_MS before a failure to reach etcd is reported. */
		if (degraded != was_degraded && (!degraded || mono_ms() - start >= STARTUP_MS)) {
			struct fdn_measurement m = {"dropped", (double)dropped};
			struct fdn_attr at[] = {
			    {.name = "cluster", .type = FDN_ATTR_STRING, .v.s = agent.cluster},
			    {.name = "host", .type = FDN_ATTR_STRING, .v.s = agent.host},
			};
			fdn_emit(agent.s,
				 degraded ? "foundation.cluster.degraded"
					  : "foundation.cluster.recovered",
				 &m, 1, at, 2);
			fprintf(stderr, "%s: mirror %s\n", prog,
				degraded ? "degraded" : "recovered");
			was_degraded = degraded;
		}
		nap(500);
	}
	etcd_fini(&c);
	return NULL;
}
