/*
 * tools/mirrord/publisher.c - the publisher (this host's entries into etcd,
 * from the registry's change feed) and the lease's keepalive thread.
 *
 * Called by main (publisher_thread, keepalive_thread); calls
 * local_source.c, txn.c, unique.c (claims), status.c and etcd.c.
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

static int publish_resync(struct etcd *c, struct local_source *ls, int64_t lease)
{
	json_object *snap;
	uint64_t srev;
	int sr = local_source_snapshot(ls, &snap, &srev);
	if (sr) {
		snprintf(c->err, sizeof(c->err), "registry snapshot: %s", fdn_strerror(sr));
		return -1;
	}
	struct held h = {json_object_new_object(), strlen(agent.host_prefix)};
	int64_t at;
	int r = etcd_range_prefix(c, agent.host_prefix, h.plen, 0, held_cb, &h, &at);
	struct batch b = {c, etcd_txn_new(), 0, 0};
	if (r == 0) {
		json_object_object_foreach(snap, k, v)
		{
			json_object *e, *ev, *el;
			bool same =
			    json_object_object_get_ex(h.map, k, &e) &&
			    json_object_object_get_ex(e, "value", &ev) &&
			    json_object_object_get_ex(e, "lease", &el) &&
			    json_object_get_int64(el) == lease &&
			    strcmp(json_object_get_string(ev), json_object_get_string(v)) == 0;
			if (!same)
				batch_put(&b, k, json_object_get_string(v), lease);
		}
		json_object_object_foreach(h.map, k2, v2)
		{
			(void)v2;
			if (!json_object_object_get_ex(snap, k2, NULL))
				batch_del(&b, k2);
		}
		batch_flush(&b);
		r = b.r;
	}
	if (r == 0)
		r = claims_resync(c, snap, lease);
	json_object_put(b.txn);
	json_object_put(h.map);
	if (r == 0) {
		pthread_mutex_lock(&agent.mu);
		agent.published = json_object_object_length(snap);
		agent.resyncs++;
		pthread_mutex_unlock(&agent.mu);
	}
	json_object_put(snap);
	return r;
}

#define READ_MAX 4096 /* changes read per publish_changes */

/* The changes waiting in the feed, put and deleted in etcd.  0; *more: more
 * are waiting (call again without polling).  FDN_EOVERFLOW: the feed
 * overran (resynchronise); -1: etcd or the registry failed (c->err says).
 * Either way nothing read is lost: the resync that follows compares the
 * whole registry with etcd. */
static int publish_changes(struct etcd *c, struct local_source *ls, int64_t lease, bool *more)
{
	json_object *puts, *dels;
	int r = local_source_next_changes(ls, READ_MAX, &puts, &dels, more);
	if (r == FDN_EOVERFLOW)
		return r;
	if (r) {
		snprintf(c->err, sizeof(c->err), "change feed: %s", fdn_strerror(r));
		return -1;
	}
	struct batch b = {c, etcd_txn_new(), 0, 0};
	json_object_object_foreach(puts, k, v) batch_put(&b, k, json_object_get_string(v), lease);
	for (size_t i = 0; i < json_object_array_length(dels); i++) {
		const char *dk = json_object_get_string(json_object_array_get_idx(dels, i));
		batch_del(&b, dk);
		claim_release_if(&b, dk, true);
	}
	batch_flush(&b);
	json_object_put(b.txn);
	if (b.r == 0) {
		pthread_mutex_lock(&agent.mu);
		agent.published = local_source_size(ls);
		pthread_mutex_unlock(&agent.mu);
	}
	json_object_put(puts);
	json_object_put(dels);
	return b.r;
}

static void pub_state(bool ok, struct etcd *c, const char *what)
{
	if (!ok)
		say(agent.pub_err, "publisher: %s: %s", what, c->err);
	pthread_mutex_lock(&agent.mu);
	if (!ok)
		agent.pub_failures++;
	agent.pub_ok = ok;
	pthread_mutex_unlock(&agent.mu);
}

/*
 * The lease's keepalives run in their own thread, every TTL/3, whatever
 * the publisher is doing: a long resync (thousands of puts, hundreds of
 * claims on a slow machine) must not let the lease expire under it.  It
 * only reports: a lease found gone sets lease_lost, a failure to reach
 * etcd sets need_resync (either way the publisher is marked failing); the
 * publisher grants, resynchronises and clears them.
 */
void *keepalive_thread(void *arg)
{
	(void)arg;
	struct etcd c;
	if (etcd_init(&c, &agent.eo, &agent.stop))
		return NULL;
	while (!atomic_load(&agent.stop)) {
		pthread_mutex_lock(&agent.mu);
		int64_t lease = agent.lease_lost ? 0 : agent.lease;
		pthread_mutex_unlock(&agent.mu);
		int64_t ttl = 0;
		if (lease && etcd_lease_keepalive(&c, lease, &ttl)) {
			/* etcd unreachable: the lease may expire meanwhile; the
			 * next keepalive tells. */
			pub_state(false, &c, "keepalive");
			pthread_mutex_lock(&agent.mu);
			agent.need_resync = true;
			pthread_mutex_unlock(&agent.mu);
			wake_publisher();
		} else if (lease) {
			pthread_mutex_lock(&agent.mu);
			if (agent.lease == lease) {
				if (ttl <= 0)
					agent.lease_lost = true;
				else
					agent.lease_ttl = ttl;
			}
			pthread_mutex_unlock(&agent.mu);
			if (ttl <= 0) {
				snprintf(c.err, sizeof(c.err), "lease %llx expired",
					 (long long)lease);
				pub_state(false, &c, "keepalive");
				wake_publisher();
			}
		}
		nap(agent.ttl * 1000 / 3);
	}
	etcd_fini(&c);
	return NULL;
}

/*
 * The publisher: a snapshot published (a resync), then the change feed.
 * It sleeps in poll(2) on two descriptors: the subscription's (readable
 * when a change, or an overrun, waits) and agent.pub_wake (written after agent.stop,
 * agent.lease_lost or agent.need_resync is set).  Every wake-up reads the flags and
 * then the feed to its end, so a change is published one poll wake-up, one
 * read and one transaction after it took effect.  The poll timeout (1 s)
 * only bounds how long a flag could wait if a wake-up were lost; nothing
 * is scanned on it.
 */
void *publisher_thread(void *arg)
{
	(void)arg;
	struct etcd c;
	int err = 0;
	struct local_source *ls = local_source_open(agent.s, agent.host, &err);
	if (!ls || etcd_init(&c, &agent.eo, &agent.stop)) {
		say(agent.pub_err, "publisher: cannot start: %s",
		    err ? fdn_strerror(err) : "out of memory");
		local_source_close(ls);
		return NULL;
	}
	int64_t lease = 0;
	bool resync = true;
	while (!atomic_load(&agent.stop)) {
		pthread_mutex_lock(&agent.mu);
		if (agent.lease_lost)
			lease = 0; /* granted again, everything put again */
		resync |= agent.need_resync;
		agent.need_resync = false;
		pthread_mutex_unlock(&agent.mu);
		if (lease == 0) {
			if (etcd_lease_grant(&c, agent.ttl, &lease)) {
				pub_state(false, &c, "lease grant");
				lease = 0;
				nap(500);
				continue;
			}
			resync = true;
			pthread_mutex_lock(&agent.mu);
			agent.lease = lease;
			agent.lease_lost = false;
			agent.lease_ttl = agent.ttl;
			pthread_mutex_unlock(&agent.mu);
		}
		if (resync) {
			if (publish_resync(&c, ls, lease)) {
				pub_state(false, &c, "resync");
				nap(500);
				continue;
			}
			resync = false;
			pub_state(true, &c, NULL);
		}
		/* The changes after the snapshot (or after the last read). */
		bool more = false;
		int r = publish_changes(&c, ls, lease, &more);
		if (r == FDN_EOVERFLOW) {
			/* Fell behind the ring: the changes overwritten are
			 * unknown, the snapshot's diff with etcd finds them. */
			fprintf(stderr,
				"%s: publisher: change log overrun at revision %llu: "
				"resynchronising\n",
				prog, (unsigned long long)local_source_revision(ls));
			resync = true;
			continue;
		}
		if (r) {
			pub_state(false, &c, "publish");
			resync = true; /* the changes read are not in etcd */
			continue;
		}
		if (more)
			continue;
		struct pollfd p[2] = {{local_source_fd(ls), POLLIN, 0},
				      {agent.pub_wake, POLLIN, 0}};
		if (poll(p, 2, 1000) > 0 && (p[1].revents & POLLIN)) {
			uint64_t v;
			ssize_t n =
			    read(agent.pub_wake, &v, sizeof(v)); /* drain; flags read above */
			(void)n;
		}
	}
	/* A planned stop: the lease goes now, and every key with it. */
	if (lease) {
		atomic_bool no = false;
		c.stop = &no;
		if (etcd_lease_revoke(&c, lease))
			fprintf(stderr, "%s: revoking lease %llx: %s\n", prog, (long long)lease,
				c.err);
	}
	etcd_fini(&c);
	local_source_close(ls);
	return NULL;
}
