/*
 * foundation-mirrord - one registry across hosts on etcd (docs/cluster.md).
 *
 * One agent per host, beside the reaper.  Five threads, each with its own
 * etcd connection (struct etcd is one thread's): the three below, the
 * lease's keepalive (keepalive_thread) and the cluster-unique server
 * (unique_thread).
 *
 *  - the publisher puts every local entry under
 *    /foundation/<cluster>/hosts/<host>/registry/<key>, attached to one
 *    lease per host (kept alive every TTL/3 by keepalive_thread), in
 *    transactions of up to 128 operations.  Local changes come from the
 *    registry's change feed (local_source: a snapshot at a revision, then
 *    a subscription from it); the publisher sleeps in poll(2) on the
 *    subscription's fd and on a wake-up eventfd, and publishes each batch
 *    of changes as it arrives -- no periodic scan.  After any failure, and
 *    when it fell behind the change log (FDN_EOVERFLOW), it
 *    resynchronises: the host's keys in etcd are read and diffed against
 *    a fresh snapshot, and the subscription goes on from the snapshot's
 *    revision, so what etcd holds converges to the local registry whatever
 *    was lost.  A lease found gone (the agent was stopped longer than the
 *    TTL, etcd lost it) is granted anew and everything is put again.
 *  - the mirror reads every host's keys at one revision, makes the remote
 *    namespace of the segment equal to them (registers what is missing or
 *    changed, unregisters what etcd does not hold: no ghost), then watches
 *    from the next revision, applying each event in revision order (no
 *    duplicate: a put is a replace keyed by (host, key)).  A broken watch
 *    is a new snapshot and a new watch.
 *  - the status thread writes the status entries (key 0x00: the cluster;
 *    0x00 host: each host) every 500 ms, with each host's lease TTL left,
 *    and emits foundation.cluster.degraded / .recovered on a change.
 *
 * The remote entries are owned by this process (FDN_REG_MIRROR): if it
 * dies, the reaper removes them as any dead owner's entries.  A planned
 * stop (SIGTERM, SIGINT) revokes the lease at once, so other hosts drop
 * this host's entries without waiting for the TTL.
 *
 * Concurrency: the threads share the status fields and the per-host table
 * (struct agent), under a.mu; each writes the segment through the
 * registry's own lock-free calls.  The hosts list of the status entry is
 * written (under a.mu) before a new host's first entry is registered, so
 * fdn_cluster_lookup, which reads the list first, never misses an entry
 * whose host it could not know.
 */
#include "cli.h"
#include "mirrord/etcd.h"
#include "mirrord/format.h"
#include "mirrord/local_source.h"

#include <foundation/telemetry.h>

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

const char *prog = "foundation-mirrord";

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

static struct agent a;

/* End the publisher's wait now: a flag it reads (a.stop, a.lease_lost,
 * a.need_resync) was just set.  The flag is written before the eventfd,
 * and the publisher reads the flags after poll returns, so it cannot
 * miss the flag that woke it. */
static void wake_publisher(void)
{
	uint64_t one = 1;
	ssize_t n = write(a.pub_wake, &one, sizeof(one));
	(void)n; /* EAGAIN: the counter is already non-zero, the wake is due */
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleep ms, or less if the agent is stopping. */
static void nap(long ms)
{
	for (long t = 0; t < ms && !atomic_load(&a.stop); t += 20) {
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

__attribute__((format(printf, 2, 3))) static void say(char *dst, const char *fmt, ...)
{
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&a.mu);
	bool same = strcmp(dst, line) == 0;
	snprintf(dst, 256, "%s", line);
	pthread_mutex_unlock(&a.mu);
	if (!same)
		fprintf(stderr, "%s: %s\n", prog, line);
}

/* ---- the status entries --------------------------------------------------- */

static const unsigned char status_key[1] = {FDN_REG_REMOTE_BYTE};

/* Write the cluster's status entry (a.mu held). */
static void status_write_locked(void)
{
	const char *names[256];
	for (int i = 0; i < a.nhosts; i++)
		names[i] = a.hname[i];
	bool degraded = !a.pub_ok || !a.mir_ok || a.dropped > 0;
	int64_t lag = a.cluster_rev > a.applied_rev ? a.cluster_rev - a.applied_rev : 0;
	struct fdn_attr at[] = {
	    {.name = "cluster", .type = FDN_ATTR_STRING, .v.s = a.cluster},
	    {.name = "host", .type = FDN_ATTR_STRING, .v.s = a.host},
	    {.name = "hosts", .type = FDN_ATTR_LIST, .v.list = {names, (uint32_t)a.nhosts}},
	    {.name = "degraded", .type = FDN_ATTR_BOOL, .v.b = degraded},
	    {.name = "publisher", .type = FDN_ATTR_STRING, .v.s = a.pub_ok ? "ok" : a.pub_err},
	    {.name = "mirror", .type = FDN_ATTR_STRING, .v.s = a.mir_ok ? "ok" : a.mir_err},
	    {.name = "dropped", .type = FDN_ATTR_INT, .v.i = a.dropped},
	    {.name = "lease", .type = FDN_ATTR_INT, .v.i = a.lease},
	    {.name = "lease_ttl", .type = FDN_ATTR_INT, .v.i = a.lease_ttl},
	    {.name = "published", .type = FDN_ATTR_INT, .v.i = a.published},
	    {.name = "mirrored", .type = FDN_ATTR_INT, .v.i = a.mirrored},
	    {.name = "revision", .type = FDN_ATTR_INT, .v.i = a.applied_rev},
	    {.name = "lag", .type = FDN_ATTR_INT, .v.i = lag},
	    {.name = "resyncs", .type = FDN_ATTR_INT, .v.i = (int64_t)a.resyncs},
	    {.name = "publish_failures", .type = FDN_ATTR_INT, .v.i = (int64_t)a.pub_failures},
	    {.name = "mirror_failures", .type = FDN_ATTR_INT, .v.i = (int64_t)a.mir_failures},
	    {.name = "socket", .type = FDN_ATTR_STRING, .v.s = a.sock},
	    {.name = "claims", .type = FDN_ATTR_INT, .v.i = json_object_object_length(a.claims)},
	    {.name = "claim_conflicts", .type = FDN_ATTR_INT, .v.i = (int64_t)a.claim_conflicts},
	};
	fdn_register(a.s, status_key, 1, getpid(), at, sizeof(at) / sizeof(at[0]),
		     FDN_REG_REPLACE | FDN_REG_MIRROR, NULL);
}

/* Index of host h in the table, added if absent (a.mu held): -1 when full. */
static int host_slot(const char *h, bool add)
{
	for (int i = 0; i < a.nhosts; i++)
		if (strcmp(a.hname[i], h) == 0)
			return i;
	if (!add || a.nhosts == 256)
		return -1;
	int i = a.nhosts++;
	snprintf(a.hname[i], sizeof(a.hname[i]), "%s", h);
	a.hi[i] = (struct host_info){.ttl_left = -2};
	/* Listed before its first entry is registered (top of file). */
	status_write_locked();
	return i;
}

/* Write each host's entry and drop hosts left without entries (a.mu). */
static void hosts_write_locked(void)
{
	for (int i = 0; i < a.nhosts;) {
		unsigned char k[2 + FDN_HOST_MAX];
		size_t hl = strlen(a.hname[i]);
		k[0] = FDN_REG_REMOTE_BYTE;
		memcpy(k + 1, a.hname[i], hl);
		if (a.hi[i].entries == 0 && a.hi[i].pending == 0) {
			fdn_unregister_flags(a.s, k, 1 + hl, FDN_REG_MIRROR | FDN_REG_IF_PRESENT);
			a.nhosts--;
			if (i != a.nhosts) {
				memcpy(a.hname[i], a.hname[a.nhosts], sizeof(a.hname[i]));
				a.hi[i] = a.hi[a.nhosts];
			}
			continue;
		}
		struct fdn_attr at[] = {
		    {.name = "entries", .type = FDN_ATTR_INT, .v.i = a.hi[i].entries},
		    {.name = "lease", .type = FDN_ATTR_INT, .v.i = a.hi[i].lease},
		    {.name = "ttl_left", .type = FDN_ATTR_INT, .v.i = a.hi[i].ttl_left},
		};
		fdn_register(a.s, k, 1 + hl, getpid(), at, 3, FDN_REG_REPLACE | FDN_REG_MIRROR,
			     NULL);
		i++;
	}
}

static void *status_thread(void *arg)
{
	(void)arg;
	struct etcd c;
	if (etcd_init(&c, &a.eo, &a.stop))
		return NULL;
	bool was_degraded = false;
	uint64_t next_ttl = 0, start = mono_ms();
	while (!atomic_load(&a.stop)) {
		/* Each host's lease TTL left and the store's revision, asked
		 * once a second outside a.mu (they are network calls). */
		if (mono_ms() >= next_ttl) {
			next_ttl = mono_ms() + 1000;
			int64_t leases[256], left[256];
			int n;
			pthread_mutex_lock(&a.mu);
			n = a.nhosts;
			for (int i = 0; i < n; i++)
				leases[i] = a.hi[i].lease;
			pthread_mutex_unlock(&a.mu);
			for (int i = 0; i < n; i++)
				if (leases[i] == 0 || etcd_lease_ttl(&c, leases[i], &left[i]))
					left[i] = -2;
			int64_t rev = 0;
			bool rev_ok = etcd_revision(&c, &rev) == 0;
			pthread_mutex_lock(&a.mu);
			for (int i = 0; i < n && i < a.nhosts; i++)
				if (a.hi[i].lease == leases[i])
					a.hi[i].ttl_left = left[i];
			if (rev_ok && rev > a.cluster_rev)
				a.cluster_rev = rev;
			pthread_mutex_unlock(&a.mu);
		}
		pthread_mutex_lock(&a.mu);
		bool degraded = !a.pub_ok || !a.mir_ok || a.dropped > 0;
		status_write_locked();
		hosts_write_locked();
		int64_t dropped = a.dropped;
		pthread_mutex_unlock(&a.mu);
		/* Starting is not degraded: the first connection gets
		 * STARTUP_MS before a failure to reach etcd is reported. */
		if (degraded != was_degraded && (!degraded || mono_ms() - start >= STARTUP_MS)) {
			struct fdn_measurement m = {"dropped", (double)dropped};
			struct fdn_attr at[] = {
			    {.name = "cluster", .type = FDN_ATTR_STRING, .v.s = a.cluster},
			    {.name = "host", .type = FDN_ATTR_STRING, .v.s = a.host},
			};
			fdn_emit(a.s,
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

/* ---- the publisher ------------------------------------------------------------ */

struct batch {
	struct etcd *c;
	json_object *txn;
	size_t ops;
	int r;
};

static void batch_flush(struct batch *b)
{
	if (b->ops && b->r == 0) {
		json_object *resp = NULL, *h;
		b->r = etcd_call(b->c, "/v3/kv/txn", b->txn, &resp);
		if (b->r == 0) {
			pthread_mutex_lock(&a.mu);
			if (json_object_object_get_ex(resp, "header", &h) &&
			    etcd_i64(h, "revision", 0) > a.cluster_rev)
				a.cluster_rev = etcd_i64(h, "revision", 0);
			pthread_mutex_unlock(&a.mu);
			json_object_put(resp);
		}
	}
	json_object_put(b->txn);
	b->txn = etcd_txn_new();
	b->ops = 0;
}

/* The etcd key of a local key given in base64 (malloc'ed, *len bytes). */
static unsigned char *etcd_key(const char *b64key, size_t *len)
{
	size_t kl;
	unsigned char *k = b64_decode(b64key, &kl);
	if (!k)
		return NULL;
	size_t pl = strlen(a.host_prefix);
	unsigned char *e = malloc(pl + kl);
	if (e) {
		memcpy(e, a.host_prefix, pl);
		memcpy(e + pl, k, kl);
		*len = pl + kl;
	}
	free(k);
	return e;
}

static void batch_put(struct batch *b, const char *b64key, const char *value, int64_t lease)
{
	size_t kl, pl = strlen(a.host_prefix);
	unsigned char *k = etcd_key(b64key, &kl);
	if (!k)
		return;
	/* Never a remote key (0x00 host 0x00 key, or a status key): those are
	 * other hosts' entries, or this agent's own status.  local_source
	 * leaves them out already; this is the last gate before etcd (deletes
	 * are not gated, so a stray one can still be removed by a resync). */
	if (kl > pl && k[pl] == FDN_REG_REMOTE_BYTE) {
		free(k);
		return;
	}
	etcd_txn_put(b->txn, k, kl, value, strlen(value), lease);
	free(k);
	if (++b->ops == TXN_OPS)
		batch_flush(b);
}

static void batch_del(struct batch *b, const char *b64key)
{
	size_t kl;
	unsigned char *k = etcd_key(b64key, &kl);
	if (!k)
		return;
	etcd_txn_del(b->txn, k, kl);
	free(k);
	if (++b->ops == TXN_OPS)
		batch_flush(b);
}

/* What etcd holds for this host: base64 local key -> {value, lease}. */
struct held {
	json_object *map;
	size_t plen;
};

static int held_cb(void *arg, json_object *kv)
{
	struct held *h = arg;
	json_object *k, *v;
	size_t kl = 0, vl = 0;
	unsigned char *kb = NULL, *vb = NULL;
	if (json_object_object_get_ex(kv, "key", &k))
		kb = b64_decode(json_object_get_string(k), &kl);
	if (json_object_object_get_ex(kv, "value", &v))
		vb = b64_decode(json_object_get_string(v), &vl);
	else
		vb = (unsigned char *)strdup("");
	if (kb && vb && kl > h->plen) {
		char *lk = b64_encode(kb + h->plen, kl - h->plen);
		json_object *e = json_object_new_object();
		json_object_object_add(e, "value", json_object_new_string((char *)vb));
		json_object_object_add(e, "lease", json_object_new_int64(etcd_i64(kv, "lease", 0)));
		json_object_object_add(h->map, lk, e);
		free(lk);
	}
	free(kb);
	free(vb);
	return 0;
}

/* ---- cluster-unique claims ------------------------------------------------------
 *
 * A claim is the etcd key /foundation/<cluster>/unique/<key>, created only
 * if absent (a transaction comparing its create_revision with 0), on the
 * host's lease, value {"format":1,"host":H,"pid":P}.  etcd serialises the
 * transactions: of two hosts racing for a key exactly one creates it.  The
 * claim lives while the local entry does: the publisher deletes it with the
 * entry (claim_release_if), and it goes with the lease if the host dies. */

static unsigned char *claim_key(const void *key, size_t klen, size_t *len)
{
	static const char u[] = "unique/";
	size_t pl = strlen(a.prefix);
	unsigned char *k = malloc(pl + sizeof(u) - 1 + klen);
	if (k) {
		memcpy(k, a.prefix, pl);
		memcpy(k + pl, u, sizeof(u) - 1);
		memcpy(k + pl + sizeof(u) - 1, key, klen);
		*len = pl + sizeof(u) - 1 + klen;
	}
	return k;
}

static char *claim_value(pid_t pid)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "format", json_object_new_int(FDN_CLUSTER_FORMAT));
	json_object_object_add(o, "host", json_object_new_string(a.host));
	json_object_object_add(o, "pid", json_object_new_int64(pid));
	char *t = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return t;
}

/* The entry of b64key left this host: its claim goes, in the batch.
 * if_done: only a claim whose registration finished (not pending) and
 * whose key has no visible entry now.  The publisher reads removals late
 * (after the change log); the removal it reads may be of an earlier
 * holder of the key, and meanwhile unique_answer may have claimed the key
 * again: pending, it keeps its claim (unique_answer releases it itself if
 * its registration fails); registered, the lookup finds it.  A claim
 * whose entry is really gone finds no entry: released.  (An entry of a
 * dead owner is invisible at once: its claim goes a little early.) */
static void claim_release_if(struct batch *b, const char *b64key, bool if_done)
{
	pthread_mutex_lock(&a.mu);
	json_object *st = NULL, *st2;
	bool held = json_object_object_get_ex(a.claims, b64key, &st);
	if (held && if_done && !json_object_get_boolean(st))
		held = false; /* pending */
	json_object_get(st);  /* its address identifies this claim (below) */
	pthread_mutex_unlock(&a.mu);
	size_t kl0;
	unsigned char *k0 = held && if_done ? b64_decode(b64key, &kl0) : NULL;
	if (k0 && fdn_lookup(a.s, k0, kl0, 0, NULL) == 0)
		held = false; /* the key is held again */
	free(k0);
	if (held) {
		pthread_mutex_lock(&a.mu);
		/* Re-checked: unique_answer may have claimed it again in
		 * between -- a new state object, never the one we hold a
		 * reference to, so the address tells. */
		if (json_object_object_get_ex(a.claims, b64key, &st2) && st2 == st)
			json_object_object_del(a.claims, b64key);
		else
			held = false;
		pthread_mutex_unlock(&a.mu);
	}
	json_object_put(st);
	size_t kl, cl;
	unsigned char *k = held ? b64_decode(b64key, &kl) : NULL, *ck;
	if (k && (ck = claim_key(k, kl, &cl))) {
		etcd_txn_del(b->txn, ck, cl);
		free(ck);
		if (++b->ops == TXN_OPS)
			batch_flush(b);
	}
	free(k);
}

/* Create the claim of key for pid if absent.  0 created; 1 held: *host and
 * *hpid say by whom; -1 etcd did not answer. */
static int claim_try(struct etcd *c, const void *key, size_t klen, pid_t pid, int64_t lease,
		     char *host, pid_t *hpid)
{
	size_t cl;
	unsigned char *ck = claim_key(key, klen, &cl);
	char *val = claim_value(pid), *ckb = ck ? b64_encode(ck, cl) : NULL;
	if (!ck || !val || !ckb) {
		free(ck), free(val), free(ckb);
		return -1;
	}
	json_object *t = etcd_txn_new(), *cmp = json_object_new_object(), *arr, *resp = NULL;
	json_object_object_add(cmp, "key", json_object_new_string(ckb));
	json_object_object_add(cmp, "target", json_object_new_string("CREATE"));
	json_object_object_add(cmp, "create_revision", json_object_new_string("0"));
	json_object_object_get_ex(t, "compare", &arr);
	json_object_array_add(arr, cmp);
	etcd_txn_put(t, ck, cl, val, strlen(val), lease);
	json_object *get = json_object_new_object(), *rr = json_object_new_object();
	json_object_object_add(rr, "key", json_object_new_string(ckb));
	json_object_object_add(get, "request_range", rr);
	json_object_object_get_ex(t, "failure", &arr);
	json_object_array_add(arr, get);
	int r = etcd_call(c, "/v3/kv/txn", t, &resp);
	json_object_put(t);
	free(ck), free(val), free(ckb);
	if (r)
		return -1;
	json_object *x, *res, *kvs, *v;
	if (json_object_object_get_ex(resp, "succeeded", &x) && json_object_get_boolean(x)) {
		json_object_put(resp);
		return 0;
	}
	/* Held: the failure branch's range says by whom. */
	snprintf(host, FDN_HOST_MAX + 1, "?");
	*hpid = 0;
	if (json_object_object_get_ex(resp, "responses", &res) &&
	    json_object_array_length(res) == 1 &&
	    json_object_object_get_ex(json_object_array_get_idx(res, 0), "response_range", &x) &&
	    json_object_object_get_ex(x, "kvs", &kvs) && json_object_array_length(kvs) == 1 &&
	    json_object_object_get_ex(json_object_array_get_idx(kvs, 0), "value", &v)) {
		size_t vl;
		unsigned char *vb = b64_decode(json_object_get_string(v), &vl);
		json_object *j = vb ? json_tokener_parse((char *)vb) : NULL, *h, *p;
		if (j && json_object_object_get_ex(j, "host", &h))
			snprintf(host, FDN_HOST_MAX + 1, "%s", json_object_get_string(h));
		if (j && json_object_object_get_ex(j, "pid", &p))
			*hpid = (pid_t)json_object_get_int64(p);
		json_object_put(j);
		free(vb);
	}
	json_object_put(resp);
	return 1;
}

/* After a resync (a new lease, or etcd back): every claim whose entry is
 * still here is taken again on the current lease; one another host took
 * meanwhile (this host's lease had expired) is a conflict, counted and
 * reported: the local entry stays (local entries are never evicted). */
static int claims_resync(struct etcd *c, json_object *snap, int64_t lease)
{
	pthread_mutex_lock(&a.mu);
	json_object *claims = json_object_get(a.claims);
	json_object *keys = json_object_new_array();
	json_object_object_foreach(claims, k, v)
	{
		(void)v;
		json_object_array_add(keys, json_object_new_string(k));
	}
	pthread_mutex_unlock(&a.mu);
	int r = 0;
	for (size_t i = 0; i < json_object_array_length(keys) && r == 0; i++) {
		const char *kb = json_object_get_string(json_object_array_get_idx(keys, i));
		size_t kl;
		unsigned char *key = b64_decode(kb, &kl);
		json_object *cur;
		if (!key)
			continue;
		char host[FDN_HOST_MAX + 1];
		pid_t hp;
		if (!json_object_object_get_ex(snap, kb, &cur)) {
			/* Not in the snapshot: released, unless pending or held
			 * again since (claim_release_if). */
			struct batch b = {c, etcd_txn_new(), 0, 0};
			claim_release_if(&b, kb, true);
			batch_flush(&b);
			json_object_put(b.txn);
			r = b.r;
		} else {
			int t = claim_try(c, key, kl, 0, lease, host, &hp);
			if (t < 0) {
				r = -1;
			} else if (t == 1 && strcmp(host, a.host) == 0) {
				size_t cl;
				unsigned char *ck = claim_key(key, kl, &cl);
				char *val = claim_value(hp);
				struct batch b = {c, etcd_txn_new(), 0, 0};
				etcd_txn_put(b.txn, ck, cl, val, strlen(val), lease);
				b.ops = 1;
				batch_flush(&b);
				json_object_put(b.txn);
				r = b.r;
				free(ck);
				free(val);
			} else if (t == 1) {
				pthread_mutex_lock(&a.mu);
				a.claim_conflicts++;
				json_object_object_del(a.claims, kb);
				pthread_mutex_unlock(&a.mu);
				fprintf(
				    stderr,
				    "%s: cluster-unique key held here was taken by host %s while "
				    "this host's lease was lost; the local entry stays\n",
				    prog, host);
			}
		}
		free(key);
	}
	json_object_put(keys);
	json_object_put(claims);
	return r;
}

/* One request: the verdict. */
static void unique_answer(struct etcd *c, const struct fdn__unique_req *q,
			  struct fdn__unique_ans *ans)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	memset(ans, 0, sizeof(*ans));
	if (q->version != FDN__UNIQUE_VERSION || q->klen == 0 || q->klen > FDN_REG_KEY_MAX ||
	    q->key[0] == FDN_REG_REMOTE_BYTE || q->alen > FDN_ATTRS_MAX || q->pid <= 0 ||
	    fdn_attrs_validate(q->attrs, q->alen) != 0) {
		ans->result = FDN_EINVAL;
		return;
	}
	if (now > q->deadline_ns) {
		ans->result = FDN_ETIMEDOUT; /* the caller gave up: nothing done */
		return;
	}
	pthread_mutex_lock(&a.mu);
	int64_t lease = a.pub_ok ? a.lease : 0;
	pthread_mutex_unlock(&a.mu);
	if (lease == 0) {
		ans->result = -EHOSTUNREACH;
		return;
	}
	/* The attributes, decoded, and cluster_unique = true. */
	static struct fdn_attr at[FDN_ATTRS_MAX / 4 + 1];
	static const char *items[FDN_ATTRS_MAX];
	size_t n = 0, ni = 0;
	uint32_t na = fdn_attrs_count(q->attrs, q->alen);
	for (uint32_t i = 0; i < na && n < sizeof(at) / sizeof(at[0]) - 1; i++) {
		if (fdn_attrs_at(q->attrs, q->alen, i, &at[n]))
			continue;
		if (strcmp(at[n].name, "cluster_unique") == 0)
			continue;
		if (at[n].type == FDN_ATTR_LIST) {
			uint32_t k = at[n].v.list.n;
			if (ni + k > sizeof(items) / sizeof(items[0]))
				break;
			for (uint32_t m = 0; m < k; m++)
				items[ni + m] = fdn_attrs_list_item(&at[n], m);
			at[n].v.list.items = items + ni;
			ni += k;
		}
		n++;
	}
	at[n++] = (struct fdn_attr){.name = "cluster_unique", .type = FDN_ATTR_BOOL, .v.b = true};
	pid_t hp = 0;
	int t = claim_try(c, q->key, q->klen, q->pid, lease, ans->host, &hp);
	if (t < 0) {
		say(a.pub_err, "cluster-unique: %s", c->err);
		ans->result = -EHOSTUNREACH;
		return;
	}
	if (t == 1) {
		ans->result = FDN_EEXISTS;
		ans->holder_pid = hp;
		return;
	}
	char *kb = b64_encode(q->key, q->klen);
	pthread_mutex_lock(&a.mu);
	json_object_object_add(a.claims, kb, json_object_new_boolean(0)); /* pending */
	pthread_mutex_unlock(&a.mu);
	pid_t holder = 0;
	int r = fdn_register(a.s, q->key, q->klen, q->pid, at, n, 0, &holder);
	if (r == 0) {
		/* Registered: from now on the publisher may release the claim
		 * when it reads the entry's removal (claim_release_if). */
		pthread_mutex_lock(&a.mu);
		json_object *st;
		if (json_object_object_get_ex(a.claims, kb, &st))
			json_object_object_add(a.claims, kb, json_object_new_boolean(1));
		pthread_mutex_unlock(&a.mu);
	} else {
		/* Not registered here: the claim goes again. */
		struct batch b = {c, etcd_txn_new(), 0, 0};
		claim_release_if(&b, kb, false);
		batch_flush(&b);
		json_object_put(b.txn);
		if (r == FDN_EEXISTS) {
			snprintf(ans->host, sizeof(ans->host), "%s", a.host);
			ans->holder_pid = holder;
		}
	}
	free(kb);
	ans->result = r;
}

static void *unique_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	struct etcd c;
	if (etcd_init(&c, &a.eo, &a.stop))
		return NULL;
	struct fdn__unique_req *q = malloc(sizeof(*q));
	while (q && !atomic_load(&a.stop)) {
		struct pollfd p = {lfd, POLLIN, 0};
		if (poll(&p, 1, 200) <= 0)
			continue;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		/* Only this user (or root) may ask: the agent registers for
		 * the caller with its own rights on the segment. */
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		struct timeval tv = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		struct fdn__unique_ans ans = {.result = FDN_EINVAL};
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0 &&
		    (cr.uid == 0 || cr.uid == geteuid()) &&
		    recv(fd, q, sizeof(*q), 0) == (ssize_t)sizeof(*q))
			unique_answer(&c, q, &ans);
		send(fd, &ans, sizeof(ans), MSG_NOSIGNAL);
		close(fd);
	}
	free(q);
	etcd_fini(&c);
	return NULL;
}

/* Make etcd hold exactly the local entries, on lease, and move the
 * subscription after the snapshot's revision.  0 or -1 (c->err says). */
static int publish_resync(struct etcd *c, struct local_source *ls, int64_t lease)
{
	json_object *snap;
	uint64_t srev;
	int sr = local_source_snapshot(ls, &snap, &srev);
	if (sr) {
		snprintf(c->err, sizeof(c->err), "registry snapshot: %s", fdn_strerror(sr));
		return -1;
	}
	struct held h = {json_object_new_object(), strlen(a.host_prefix)};
	int64_t at;
	int r = etcd_range_prefix(c, a.host_prefix, h.plen, 0, held_cb, &h, &at);
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
		pthread_mutex_lock(&a.mu);
		a.published = json_object_object_length(snap);
		a.resyncs++;
		pthread_mutex_unlock(&a.mu);
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
		pthread_mutex_lock(&a.mu);
		a.published = local_source_size(ls);
		pthread_mutex_unlock(&a.mu);
	}
	json_object_put(puts);
	json_object_put(dels);
	return b.r;
}

static void pub_state(bool ok, struct etcd *c, const char *what)
{
	if (!ok)
		say(a.pub_err, "publisher: %s: %s", what, c->err);
	pthread_mutex_lock(&a.mu);
	if (!ok)
		a.pub_failures++;
	a.pub_ok = ok;
	pthread_mutex_unlock(&a.mu);
}

/*
 * The lease's keepalives run in their own thread, every TTL/3, whatever
 * the publisher is doing: a long resync (thousands of puts, hundreds of
 * claims on a slow machine) must not let the lease expire under it.  It
 * only reports: a lease found gone sets lease_lost, a failure to reach
 * etcd sets need_resync (either way the publisher is marked failing); the
 * publisher grants, resynchronises and clears them.
 */
static void *keepalive_thread(void *arg)
{
	(void)arg;
	struct etcd c;
	if (etcd_init(&c, &a.eo, &a.stop))
		return NULL;
	while (!atomic_load(&a.stop)) {
		pthread_mutex_lock(&a.mu);
		int64_t lease = a.lease_lost ? 0 : a.lease;
		pthread_mutex_unlock(&a.mu);
		int64_t ttl = 0;
		if (lease && etcd_lease_keepalive(&c, lease, &ttl)) {
			/* etcd unreachable: the lease may expire meanwhile; the
			 * next keepalive tells. */
			pub_state(false, &c, "keepalive");
			pthread_mutex_lock(&a.mu);
			a.need_resync = true;
			pthread_mutex_unlock(&a.mu);
			wake_publisher();
		} else if (lease) {
			pthread_mutex_lock(&a.mu);
			if (a.lease == lease) {
				if (ttl <= 0)
					a.lease_lost = true;
				else
					a.lease_ttl = ttl;
			}
			pthread_mutex_unlock(&a.mu);
			if (ttl <= 0) {
				snprintf(c.err, sizeof(c.err), "lease %llx expired",
					 (long long)lease);
				pub_state(false, &c, "keepalive");
				wake_publisher();
			}
		}
		nap(a.ttl * 1000 / 3);
	}
	etcd_fini(&c);
	return NULL;
}

/*
 * The publisher: a snapshot published (a resync), then the change feed.
 * It sleeps in poll(2) on two descriptors: the subscription's (readable
 * when a change, or an overrun, waits) and a.pub_wake (written after a.stop,
 * a.lease_lost or a.need_resync is set).  Every wake-up reads the flags and
 * then the feed to its end, so a change is published one poll wake-up, one
 * read and one transaction after it took effect.  The poll timeout (1 s)
 * only bounds how long a flag could wait if a wake-up were lost; nothing
 * is scanned on it.
 */
static void *publisher_thread(void *arg)
{
	(void)arg;
	struct etcd c;
	int err = 0;
	struct local_source *ls = local_source_open(a.s, a.host, &err);
	if (!ls || etcd_init(&c, &a.eo, &a.stop)) {
		say(a.pub_err, "publisher: cannot start: %s",
		    err ? fdn_strerror(err) : "out of memory");
		local_source_close(ls);
		return NULL;
	}
	int64_t lease = 0;
	bool resync = true;
	while (!atomic_load(&a.stop)) {
		pthread_mutex_lock(&a.mu);
		if (a.lease_lost)
			lease = 0; /* granted again, everything put again */
		resync |= a.need_resync;
		a.need_resync = false;
		pthread_mutex_unlock(&a.mu);
		if (lease == 0) {
			if (etcd_lease_grant(&c, a.ttl, &lease)) {
				pub_state(false, &c, "lease grant");
				lease = 0;
				nap(500);
				continue;
			}
			resync = true;
			pthread_mutex_lock(&a.mu);
			a.lease = lease;
			a.lease_lost = false;
			a.lease_ttl = a.ttl;
			pthread_mutex_unlock(&a.mu);
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
		struct pollfd p[2] = {{local_source_fd(ls), POLLIN, 0}, {a.pub_wake, POLLIN, 0}};
		if (poll(p, 2, 1000) > 0 && (p[1].revents & POLLIN)) {
			uint64_t v;
			ssize_t n = read(a.pub_wake, &v, sizeof(v)); /* drain; flags read above */
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

/* ---- the mirror --------------------------------------------------------------- */

struct mirror {
	struct etcd c;
	json_object *have; /* base64 etcd key -> mod_revision, registered */
	json_object *seen; /* during a resync: the keys read */
};

/* The host and the remote-namespace key of an etcd key; false when the key
 * is not an entry of another host. */
static bool remote_of(const unsigned char *k, size_t kl, char *host, unsigned char *rk, size_t *rkl)
{
	static const char hosts[] = "hosts/";
	size_t pl = strlen(a.prefix);
	if (kl <= pl + sizeof(hosts) - 1 || memcmp(k, a.prefix, pl) ||
	    memcmp(k + pl, hosts, sizeof(hosts) - 1))
		return false;
	const unsigned char *h = k + pl + sizeof(hosts) - 1, *end = k + kl;
	const unsigned char *slash = memchr(h, '/', (size_t)(end - h));
	static const char reg[] = "/registry/";
	if (!slash || slash == h || (size_t)(slash - h) > FDN_HOST_MAX ||
	    (size_t)(end - slash) <= sizeof(reg) - 1 || memcmp(slash, reg, sizeof(reg) - 1) ||
	    memchr(h, 0, (size_t)(slash - h)))
		return false;
	size_t hl = (size_t)(slash - h);
	memcpy(host, h, hl);
	host[hl] = 0;
	if (strcmp(host, a.host) == 0)
		return false;
	const unsigned char *key = slash + sizeof(reg) - 1;
	size_t klen = (size_t)(end - key);
	*rkl = 2 + hl + klen;
	if (*rkl > FDN_REG_KEY_MAX)
		return true; /* counted as dropped by the caller */
	rk[0] = FDN_REG_REMOTE_BYTE;
	memcpy(rk + 1, host, hl);
	rk[1 + hl] = FDN_REG_REMOTE_BYTE;
	memcpy(rk + 2 + hl, key, klen);
	return true;
}

static void count_host(const char *host, int64_t d, int64_t lease)
{
	pthread_mutex_lock(&a.mu);
	int i = host_slot(host, d > 0);
	if (i >= 0) {
		a.hi[i].entries += d;
		if (lease)
			a.hi[i].lease = lease;
	}
	a.mirrored += d;
	pthread_mutex_unlock(&a.mu);
}

static void drop(const char *why, const char *host)
{
	pthread_mutex_lock(&a.mu);
	int64_t n = ++a.dropped;
	pthread_mutex_unlock(&a.mu);
	/* The first ten, then one line per thousand: a full segment drops
	 * every entry that follows. */
	if (n <= 10 || n % 1000 == 0)
		fprintf(stderr, "%s: an entry of host %s dropped: %s (%lld dropped so far)\n", prog,
			host, why, (long long)n);
}

static void mirror_put(struct mirror *m, json_object *kv)
{
	json_object *k, *v;
	if (!json_object_object_get_ex(kv, "key", &k))
		return;
	const char *kb64 = json_object_get_string(k);
	int64_t mod = etcd_i64(kv, "mod_revision", 0), lease = etcd_i64(kv, "lease", 0);
	if (m->seen)
		json_object_object_add(m->seen, kb64, NULL);
	json_object *cur;
	if (json_object_object_get_ex(m->have, kb64, &cur) && json_object_get_int64(cur) == mod)
		return; /* already applied (a resync that read it again) */
	size_t kl, vl = 0;
	unsigned char *kb = b64_decode(kb64, &kl), *vb = NULL, rk[FDN_REG_KEY_MAX + 64];
	char host[FDN_HOST_MAX + 1];
	size_t rkl;
	if (!kb || !remote_of(kb, kl, host, rk, &rkl))
		goto out;
	if (rkl > FDN_REG_KEY_MAX) {
		drop("host and key longer than a key", host);
		goto out;
	}
	vb = json_object_object_get_ex(kv, "value", &v) ? b64_decode(json_object_get_string(v), &vl)
							: NULL;
	struct remote_attrs *ra = calloc(1, sizeof(*ra));
	const char *why = "no value";
	if (!ra || !vb || json_to_remote_attrs((char *)vb, host, ra, &why)) {
		drop(why, host);
	} else {
		bool fresh = !json_object_object_get_ex(m->have, kb64, NULL);
		/* The host is listed before its entry is registered (top of
		 * file); `pending` keeps the status thread from dropping it,
		 * still without entries, in between (hosts_write_locked). */
		pthread_mutex_lock(&a.mu);
		int hs = host_slot(host, true);
		if (hs >= 0)
			a.hi[hs].pending++;
		pthread_mutex_unlock(&a.mu);
		int r = fdn_register(a.s, rk, rkl, getpid(), ra->a, ra->n,
				     FDN_REG_REPLACE | FDN_REG_MIRROR, NULL);
		pthread_mutex_lock(&a.mu);
		if ((hs = host_slot(host, false)) >= 0) { /* other hosts may have moved it */
			a.hi[hs].pending--;
			if (lease)
				a.hi[hs].lease = lease;
		}
		pthread_mutex_unlock(&a.mu);
		if (r) {
			drop(fdn_strerror(r), host);
			/* A changed entry that no longer fits: the old version
			 * must not stay. */
			if (!fresh)
				fdn_unregister_flags(a.s, rk, rkl,
						     FDN_REG_MIRROR | FDN_REG_IF_PRESENT);
			if (!fresh && json_object_object_get_ex(m->have, kb64, NULL)) {
				json_object_object_del(m->have, kb64);
				count_host(host, -1, 0);
			}
		} else {
			json_object_object_add(m->have, kb64, json_object_new_int64(mod));
			if (fresh)
				count_host(host, 1, 0);
		}
	}
	if (ra)
		remote_attrs_free(ra);
	free(ra);
out:
	free(kb);
	free(vb);
}

static void mirror_del(struct mirror *m, const char *kb64)
{
	if (!json_object_object_get_ex(m->have, kb64, NULL))
		return;
	size_t kl, rkl;
	unsigned char *kb = b64_decode(kb64, &kl), rk[FDN_REG_KEY_MAX + 64];
	char host[FDN_HOST_MAX + 1];
	if (kb && remote_of(kb, kl, host, rk, &rkl) && rkl <= FDN_REG_KEY_MAX) {
		fdn_unregister_flags(a.s, rk, rkl, FDN_REG_MIRROR | FDN_REG_IF_PRESENT);
		count_host(host, -1, 0);
	}
	json_object_object_del(m->have, kb64);
	free(kb);
}

static int range_cb(void *arg, json_object *kv)
{
	mirror_put(arg, kv);
	return 0;
}

static int watch_cb(void *arg, json_object *res)
{
	struct mirror *m = arg;
	json_object *evs, *h, *t, *kv, *k;
	if (json_object_object_get_ex(res, "events", &evs))
		for (size_t i = 0; i < json_object_array_length(evs); i++) {
			json_object *ev = json_object_array_get_idx(evs, i);
			if (!json_object_object_get_ex(ev, "kv", &kv))
				continue;
			bool del = json_object_object_get_ex(ev, "type", &t) &&
				   strcmp(json_object_get_string(t), "DELETE") == 0;
			if (!del)
				mirror_put(m, kv);
			else if (json_object_object_get_ex(kv, "key", &k))
				mirror_del(m, json_object_get_string(k));
		}
	pthread_mutex_lock(&a.mu);
	if (json_object_object_get_ex(res, "header", &h)) {
		int64_t rev = etcd_i64(h, "revision", 0);
		if (rev > a.applied_rev)
			a.applied_rev = rev;
		if (rev > a.cluster_rev)
			a.cluster_rev = rev;
	}
	if (!a.mir_ok)
		a.mir_ok = true; /* the watch answers again */
	pthread_mutex_unlock(&a.mu);
	return 0;
}

static void mir_state(bool ok, struct etcd *c, const char *what)
{
	if (!ok)
		say(a.mir_err, "mirror: %s: %s", what, c->err);
	pthread_mutex_lock(&a.mu);
	if (!ok)
		a.mir_failures++;
	a.mir_ok = ok;
	pthread_mutex_unlock(&a.mu);
}

static void *mirror_thread(void *arg)
{
	(void)arg;
	struct mirror m = {.have = json_object_new_object()};
	if (etcd_init(&m.c, &a.eo, &a.stop))
		return NULL;
	size_t pl = strlen(a.prefix);
	while (!atomic_load(&a.stop)) {
		/* A snapshot at one revision, the segment made equal to it. */
		m.seen = json_object_new_object();
		int64_t at = 0;
		int r = etcd_range_prefix(&m.c, a.prefix, pl, 0, range_cb, &m, &at);
		if (r) {
			json_object_put(m.seen);
			m.seen = NULL;
			mir_state(false, &m.c, "snapshot");
			nap(500);
			continue;
		}
		json_object *gone = json_object_new_array();
		json_object_object_foreach(m.have, k, v)
		{
			(void)v;
			if (!json_object_object_get_ex(m.seen, k, NULL))
				json_object_array_add(gone, json_object_new_string(k));
		}
		for (size_t i = 0; i < json_object_array_length(gone); i++)
			mirror_del(&m, json_object_get_string(json_object_array_get_idx(gone, i)));
		json_object_put(gone);
		json_object_put(m.seen);
		m.seen = NULL;
		pthread_mutex_lock(&a.mu);
		a.applied_rev = at;
		a.resyncs++;
		pthread_mutex_unlock(&a.mu);
		mir_state(true, &m.c, NULL);
		/* Then every change after it, in order. */
		r = etcd_watch(&m.c, a.prefix, pl, at + 1, watch_cb, &m);
		if (atomic_load(&a.stop))
			break;
		mir_state(false, &m.c, "watch");
		nap(200);
	}
	json_object_put(m.have);
	etcd_fini(&m.c);
	return NULL;
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--segment NAME] [--endpoints URL[,URL...]] [--cluster NAME]\n"
		"       [--host ID] [--ttl SECONDS] [--interval MS] [--timeout MS]\n"
		"       [--cacert FILE] [--cert FILE] [--key FILE] [--user NAME[:PASSWORD]]\n"
		"       [--password PASSWORD] [--wait]\n"
		"\n"
		"Publish this host's registry entries into etcd, on a lease kept alive, and\n"
		"mirror every other host's entries into the local segment (docs/cluster.md).\n"
		"\n"
		"  --segment NAME    segment (default $FOUNDATION_SEGMENT, else \"foundation\")\n"
		"  --endpoints URLS  etcd client URLs, comma-separated (default\n"
		"                    http://127.0.0.1:2379)\n"
		"  --cluster NAME    the cluster (default \"default\"): keys under\n"
		"                    /foundation/NAME/\n"
		"  --host ID         this host (default the hostname): [A-Za-z0-9._-], 1..63\n"
		"  --ttl SECONDS     the host's lease TTL (default 5, 2..3600)\n"
		"  --interval MS     accepted and ignored (compatibility): local changes are\n"
		"                    published as the registry's change feed delivers them\n"
		"  --timeout MS      per etcd request (default 2000)\n"
		"  --cacert FILE     TLS: the CA that signed etcd's certificate\n"
		"  --cert FILE       TLS: this client's certificate\n"
		"  --key FILE        TLS: its private key\n"
		"  --user NAME[:PW]  etcd authentication (as etcdctl --user)\n"
		"  --password PW     the password, when not in --user\n"
		"  --wait            wait for the segment to be created (polled every 250 ms)\n"
		"  --help            this text\n"
		"  --version         print the version and exit\n"
		"\n"
		"Exit status: 0 stopped by SIGTERM or SIGINT (the lease revoked); 1 error\n"
		"(the segment cannot be attached, or has no change log); 2 bad usage.\n",
		prog);
}

static bool good_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > FDN_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"segment", required_argument, 0, 's'}, {"endpoints", required_argument, 0, 'e'},
	    {"cluster", required_argument, 0, 'c'}, {"host", required_argument, 0, 'H'},
	    {"ttl", required_argument, 0, 't'},     {"interval", required_argument, 0, 'i'},
	    {"timeout", required_argument, 0, 'T'}, {"cacert", required_argument, 0, 'A'},
	    {"cert", required_argument, 0, 'C'},    {"key", required_argument, 0, 'K'},
	    {"user", required_argument, 0, 'u'},    {"password", required_argument, 0, 'p'},
	    {"wait", no_argument, 0, 'w'},          {"help", no_argument, 0, 'h'},
	    {"version", no_argument, 0, 'V'},       {0, 0, 0, 0}};
	const char *segment = fdn_segment_default_name(), *endpoints = "http://127.0.0.1:2379";
	static char hostname[256];
	char *user = NULL;
	bool wait_seg = false;
	a.cluster = "default";
	a.ttl = 5;
	a.eo.timeout_ms = 2000;
	if (gethostname(hostname, sizeof(hostname) - 1) == 0)
		a.host = hostname;
	int ch;
	char bad[128];
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		uint64_t n;
		switch (ch) {
		case 's':
			segment = optarg;
			break;
		case 'e':
			endpoints = optarg;
			break;
		case 'c':
			a.cluster = optarg;
			break;
		case 'H':
			a.host = optarg;
			break;
		case 't':
			if (!parse_num(optarg, 10, 3600, &n) || n < 2)
				return usage_error(
				    NULL, "--ttl \"%s\": not a number of seconds in 2..3600",
				    optarg);
			a.ttl = (long)n;
			break;
		case 'i':
			/* The rescan period of earlier versions; kept so that
			 * existing command lines and units still start. */
			if (!parse_num(optarg, 10, 60000, &n) || n < 1)
				return usage_error(
				    NULL, "--interval \"%s\": not a number in 1..60000", optarg);
			fprintf(stderr,
				"%s: --interval is ignored: local changes come from the "
				"registry's change feed\n",
				prog);
			break;
		case 'T':
			if (!parse_num(optarg, 10, 600000, &n) || n < 10)
				return usage_error(
				    NULL, "--timeout \"%s\": not a number in 10..600000", optarg);
			a.eo.timeout_ms = (long)n;
			break;
		case 'A':
			a.eo.cacert = optarg;
			break;
		case 'C':
			a.eo.cert = optarg;
			break;
		case 'K':
			a.eo.key = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'p':
			a.eo.password = optarg;
			break;
		case 'w':
			wait_seg = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			return print_version();
		default:
			return usage_error(NULL, "%s: unknown option or missing value",
					   bad_option(argv, bad, sizeof(bad)));
		}
	}
	if (optind < argc)
		return usage_error(NULL, "\"%s\": unexpected argument", argv[optind]);
	if (!a.host || !good_id(a.host))
		return usage_error(NULL, "--host \"%s\": not 1..63 of [A-Za-z0-9._-]",
				   a.host ? a.host : "");
	if (!good_id(a.cluster))
		return usage_error(NULL, "--cluster \"%s\": not 1..63 of [A-Za-z0-9._-]",
				   a.cluster);
	if (user) {
		char *colon = strchr(user, ':');
		if (colon) {
			*colon = 0;
			a.eo.password = colon + 1;
		}
		a.eo.user = user;
	}
	/* The endpoints, split. */
	static char *eps[16];
	char *list = strdup(endpoints), *save = NULL;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (a.eo.nendpoints == 16)
			return usage_error(NULL, "--endpoints: more than 16");
		if (strncmp(t, "http://", 7) && strncmp(t, "https://", 8))
			return usage_error(NULL,
					   "--endpoints \"%s\": not an http:// or https:// URL", t);
		eps[a.eo.nendpoints++] = t;
	}
	if (a.eo.nendpoints == 0)
		return usage_error(NULL, "--endpoints: empty");
	a.eo.endpoints = eps;
	snprintf(a.prefix, sizeof(a.prefix), "/foundation/%s/", a.cluster);
	snprintf(a.host_prefix, sizeof(a.host_prefix), "/foundation/%s/hosts/%s/registry/",
		 a.cluster, a.host);

	int r;
	/* --wait: the segment may appear later (a unit started at boot before
	 * the application); polled every 250 ms until a signal. */
	while ((r = fdn_segment_attach(segment, 0, &a.s)) == FDN_ENOSEG && wait_seg) {
		struct timespec ts = {0, 250 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (r) {
		fprintf(stderr, "%s: segment \"%s\": %s\n", prog, segment, fdn_strerror(r));
		return EXIT_FAIL;
	}
	/* The publisher follows the change log: a segment made without one
	 * (foundation-ctl create --changes off) cannot be published. */
	struct fdn_changes_stats cst;
	if ((r = fdn_changes_stats(a.s, &cst)) != 0 || cst.capacity == 0) {
		fprintf(stderr, "%s: segment \"%s\": %s\n", prog, segment,
			r ? fdn_strerror(r)
			  : "made without a change log (--changes off); the agent needs it");
		fdn_segment_detach(a.s);
		return EXIT_FAIL;
	}
	a.pub_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (a.pub_wake < 0) {
		fprintf(stderr, "%s: eventfd: %s\n", prog, strerror(errno));
		return EXIT_FAIL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fprintf(stderr, "%s: curl_global_init failed\n", prog);
		return EXIT_FAIL;
	}
	pthread_mutex_init(&a.mu, NULL);
	a.pub_ok = a.mir_ok = false;
	snprintf(a.pub_err, sizeof(a.pub_err), "starting");
	snprintf(a.mir_err, sizeof(a.mir_err), "starting");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The socket of cluster-unique requests: an abstract name, per
	 * segment, given to the library by the status entry. */
	a.claims = json_object_new_object();
	snprintf(a.sock, sizeof(a.sock), "foundation-mirrord/%s", segment);
	int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path + 1, a.sock, strlen(a.sock));
	if (lfd < 0 ||
	    bind(lfd, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sock))) != 0 ||
	    listen(lfd, 64) != 0) {
		fprintf(stderr, "%s: socket @%s: %s (another agent for this segment?)\n", prog,
			a.sock, strerror(errno));
		return EXIT_FAIL;
	}
	pthread_mutex_lock(&a.mu);
	status_write_locked(); /* before any remote entry (registry.c: fdn_count) */
	pthread_mutex_unlock(&a.mu);
	pthread_t tp, tm, ts, tu, tk;
	pthread_create(&tu, NULL, unique_thread, (void *)(intptr_t)lfd);
	pthread_create(&tk, NULL, keepalive_thread, NULL);
	pthread_create(&tp, NULL, publisher_thread, NULL);
	pthread_create(&tm, NULL, mirror_thread, NULL);
	pthread_create(&ts, NULL, status_thread, NULL);
	fprintf(stderr, "%s: host %s, cluster %s, segment \"%s\", %zu endpoint(s), ttl %ld s\n",
		prog, a.host, a.cluster, segment, a.eo.nendpoints, a.ttl);
	int sig;
	sigwait(&set, &sig);
	atomic_store(&a.stop, true);
	wake_publisher();
	pthread_join(tp, NULL);
	pthread_join(tm, NULL);
	pthread_join(ts, NULL);
	pthread_join(tu, NULL);
	pthread_join(tk, NULL);
	fprintf(stderr, "%s: stopped (%s), lease revoked\n", prog, strsignal(sig));
	fdn_segment_detach(a.s);
	curl_global_cleanup();
	free(list);
	return EXIT_OK;
}
