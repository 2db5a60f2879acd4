/*
 * tools/mirrord/unique.c - cluster-unique claims: the unique thread answers
 * the library's requests on an abstract socket, claims the key in etcd and
 * registers it; the publisher releases a claim with its entry and
 * re-checks every claim on a resync.
 *
 * Called by the publisher (claim_release_if, claims_resync) and main
 * (unique_thread); calls txn.c, status.c, etcd.c and the registry.
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
	size_t pl = strlen(agent.prefix);
	unsigned char *k = malloc(pl + sizeof(u) - 1 + klen);
	if (k) {
		memcpy(k, agent.prefix, pl);
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
	json_object_object_add(o, "host", json_object_new_string(agent.host));
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
void claim_release_if(struct batch *b, const char *b64key, bool if_done)
{
	pthread_mutex_lock(&agent.mu);
	json_object *st = NULL, *st2;
	bool held = json_object_object_get_ex(agent.claims, b64key, &st);
	if (held && if_done && !json_object_get_boolean(st))
		held = false; /* pending */
	json_object_get(st);  /* its address identifies this claim (below) */
	pthread_mutex_unlock(&agent.mu);
	size_t kl0;
	unsigned char *k0 = held && if_done ? b64_decode(b64key, &kl0) : NULL;
	if (k0 && fdn_lookup(agent.s, k0, kl0, 0, NULL) == 0)
		held = false; /* the key is held again */
	free(k0);
	if (held) {
		pthread_mutex_lock(&agent.mu);
		/* Re-checked: unique_answer may have claimed it again in
		 * between -- a new state object, never the one we hold a
		 * reference to, so the address tells. */
		if (json_object_object_get_ex(agent.claims, b64key, &st2) && st2 == st)
			json_object_object_del(agent.claims, b64key);
		else
			held = false;
		pthread_mutex_unlock(&agent.mu);
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
int claims_resync(struct etcd *c, json_object *snap, int64_t lease)
{
	pthread_mutex_lock(&agent.mu);
	json_object *claims = json_object_get(agent.claims);
	json_object *keys = json_object_new_array();
	json_object_object_foreach(claims, k, v)
	{
		(void)v;
		json_object_array_add(keys, json_object_new_string(k));
	}
	pthread_mutex_unlock(&agent.mu);
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
			} else if (t == 1 && strcmp(host, agent.host) == 0) {
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
				pthread_mutex_lock(&agent.mu);
				agent.claim_conflicts++;
				json_object_object_del(agent.claims, kb);
				pthread_mutex_unlock(&agent.mu);
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
	pthread_mutex_lock(&agent.mu);
	int64_t lease = agent.pub_ok ? agent.lease : 0;
	pthread_mutex_unlock(&agent.mu);
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
		say(agent.pub_err, "cluster-unique: %s", c->err);
		ans->result = -EHOSTUNREACH;
		return;
	}
	if (t == 1) {
		ans->result = FDN_EEXISTS;
		ans->holder_pid = hp;
		return;
	}
	char *kb = b64_encode(q->key, q->klen);
	pthread_mutex_lock(&agent.mu);
	json_object_object_add(agent.claims, kb, json_object_new_boolean(0)); /* pending */
	pthread_mutex_unlock(&agent.mu);
	pid_t holder = 0;
	int r = fdn_register(agent.s, q->key, q->klen, q->pid, at, n, 0, &holder);
	if (r == 0) {
		/* Registered: from now on the publisher may release the claim
		 * when it reads the entry's removal (claim_release_if). */
		pthread_mutex_lock(&agent.mu);
		json_object *st;
		if (json_object_object_get_ex(agent.claims, kb, &st))
			json_object_object_add(agent.claims, kb, json_object_new_boolean(1));
		pthread_mutex_unlock(&agent.mu);
	} else {
		/* Not registered here: the claim goes again. */
		struct batch b = {c, etcd_txn_new(), 0, 0};
		claim_release_if(&b, kb, false);
		batch_flush(&b);
		json_object_put(b.txn);
		if (r == FDN_EEXISTS) {
			snprintf(ans->host, sizeof(ans->host), "%s", agent.host);
			ans->holder_pid = holder;
		}
	}
	free(kb);
	ans->result = r;
}

void *unique_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	struct etcd c;
	if (etcd_init(&c, &agent.eo, &agent.stop))
		return NULL;
	struct fdn__unique_req *q = malloc(sizeof(*q));
	while (q && !atomic_load(&agent.stop)) {
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
