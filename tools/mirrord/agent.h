/*
 * tools/mirrord/agent.h - what the parts of foundation-mirrord share: the
 * agent's state (struct agent, one per process) and each part's entry
 * points: status.c (the state, helpers, status entries), txn.c (etcd
 * transactions), unique.c (cluster-unique claims), publisher.c (the
 * publisher, the keepalive), mirror.c (the mirror).  etcd.c, format.c and
 * local_source.c are the agent's libraries.  foundation-mirrord.c holds
 * main.  Calls go publisher -> unique -> txn -> etcd; every part uses
 * status.c.
 */
#ifndef FDN_MIRRORD_AGENT_H
#define FDN_MIRRORD_AGENT_H

#include "mirrord/etcd.h"
#include "mirrord/format.h"
#include "mirrord/local_source.h"

#include <foundation/registry.h>
#include <foundation/segment.h>
#include <foundation/telemetry.h>

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

extern const char *prog;

#define TXN_OPS    128 /* etcd's default --max-txn-ops */
#define STARTUP_MS 3000

struct host_info {
	int64_t entries;
	int64_t pending; /* entries being registered, not yet counted */
	int64_t lease;
	int64_t ttl_left; /* -1: gone; -2: not asked yet */
};

struct agent {
	fdn_segment *s;
	const char *cluster, *host;
	long ttl;
	int pub_wake; /* eventfd: the publisher's wait ends (stop, resync) */
	struct etcd_opts eo;
	atomic_bool stop;
	char prefix[256];      /* /foundation/<cluster>/ */
	char host_prefix[512]; /* ...hosts/<host>/registry/ */

	pthread_mutex_t mu; /* everything below */
	int64_t lease, lease_ttl, published, cluster_rev, applied_rev, mirrored, dropped;
	bool pub_ok, mir_ok;
	bool lease_lost;  /* the keepalive found the lease gone */
	bool need_resync; /* the keepalive could not reach etcd */
	uint64_t pub_failures, mir_failures, resyncs;
	char pub_err[256], mir_err[256];
	/* base64 key -> bool: cluster-unique keys claimed here; false while
	 * the claim's local registration is under way (unique_answer,
	 * claim_release_if). */
	json_object *claims;
	char sock[128]; /* the abstract socket name of cluster-unique requests */
	uint64_t claim_conflicts;
	struct host_info hi[256];
	char hname[256][FDN_HOST_MAX + 1];
	int nhosts;
};

extern struct agent agent;

/* ---- status.c ------------------------------------------------------------------------- */

/* End the publisher's wait now: a flag it reads (agent.stop,
 * agent.lease_lost, agent.need_resync) was just set. */
void wake_publisher(void);
uint64_t mono_ms(void);
/* Sleep ms, or less if the agent is stopping. */
void nap(long ms);
/* dst (256 bytes, under agent.mu) = the line; printed on stderr when it
 * changed. */
__attribute__((format(printf, 2, 3))) void say(char *dst, const char *fmt, ...);
/* The status entry of the cluster, under agent.mu. */
void status_write_locked(void);
/* The slot of host h in agent.hi (add: a new one if absent), or -1. */
int host_slot(const char *h, bool add);
/* The hosts list of the status entry, under agent.mu. */
void hosts_write_locked(void);
void *status_thread(void *arg);

/* ---- txn.c ---------------------------------------------------------------------------- */

/* Puts and deletes for etcd, sent in transactions of up to TXN_OPS (r: the
 * first failure). */
struct batch {
	struct etcd *c;
	json_object *txn;
	size_t ops;
	int r;
};

/* Send what is gathered (b->r: the first failure). */
void batch_flush(struct batch *b);
/* Put value on lease at the host's etcd key of a local key in base64. */
void batch_put(struct batch *b, const char *b64key, const char *value, int64_t lease);
/* Delete the host's etcd key of a local key in base64. */
void batch_del(struct batch *b, const char *b64key);

/* What etcd holds for this host: base64 local key -> {value, lease}. */
struct held {
	json_object *map;
	size_t plen;
};

/* An etcd range callback filling a struct held. */
int held_cb(void *arg, json_object *kv);

/* ---- unique.c ------------------------------------------------------------------------- */

/* Delete the claim of a local key in base64 with its entry (if_done: only
 * a claim whose registration is done, and whose entry is gone). */
void claim_release_if(struct batch *b, const char *b64key, bool if_done);
/* Take every claim whose entry is still here again on lease. */
int claims_resync(struct etcd *c, json_object *snap, int64_t lease);
/* Answer the library's cluster-unique requests (agent.sock). */
void *unique_thread(void *arg);

/* ---- publisher.c, mirror.c ------------------------------------------------------------ */

void *keepalive_thread(void *arg);
void *publisher_thread(void *arg);
void *mirror_thread(void *arg);

#endif
