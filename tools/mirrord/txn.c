/*
 * tools/mirrord/txn.c - the publisher's writes to etcd: puts and deletes
 * gathered into transactions of up to TXN_OPS operations (struct batch),
 * and the host's keys read back from etcd (held_cb).
 *
 * Called by publisher.c and unique.c; calls etcd.c.
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

void batch_flush(struct batch *b)
{
	if (b->ops && b->r == 0) {
		json_object *resp = NULL, *h;
		b->r = etcd_call(b->c, "/v3/kv/txn", b->txn, &resp);
		if (b->r == 0) {
			pthread_mutex_lock(&agent.mu);
			if (json_object_object_get_ex(resp, "header", &h) &&
			    etcd_i64(h, "revision", 0) > agent.cluster_rev)
				agent.cluster_rev = etcd_i64(h, "revision", 0);
			pthread_mutex_unlock(&agent.mu);
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
	size_t pl = strlen(agent.host_prefix);
	unsigned char *e = malloc(pl + kl);
	if (e) {
		memcpy(e, agent.host_prefix, pl);
		memcpy(e + pl, k, kl);
		*len = pl + kl;
	}
	free(k);
	return e;
}

void batch_put(struct batch *b, const char *b64key, const char *value, int64_t lease)
{
	size_t kl, pl = strlen(agent.host_prefix);
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

void batch_del(struct batch *b, const char *b64key)
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

int held_cb(void *arg, json_object *kv)
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
