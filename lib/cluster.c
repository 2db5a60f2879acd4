/*
 * cluster.c - the cluster's answers from the segment: every holder of a key
 * across hosts (docs/cluster.md).
 *
 * foundation-mirrord mirrors every other host's entries into this segment
 * under keys of the remote namespace (registry.h: 0x00 host 0x00 key) and
 * keeps one status entry, key 0x00, whose list attribute "hosts" names the
 * hosts it mirrors.  A cluster lookup is then one hash lookup for the local
 * entry and one per host: shared-memory reads, no call to the agent or to
 * etcd.  Each lookup is the registry's own (lock-free, never waits for a
 * writer); the set returned is not a snapshot -- a host's entry removed
 * or added between two of the lookups may be seen or not, as with any
 * two lookups.
 */
#include "shm/shm.h"

#include <foundation/registry.h>

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

bool fdn_cluster_key_split(const void *key, size_t klen, const char **host, size_t *hlen,
			   const void **plain, size_t *plen)
{
	const unsigned char *k = key;
	if (!k || klen < 3 || k[0] != FDN_REG_REMOTE_BYTE)
		return false;
	const unsigned char *sep = memchr(k + 1, FDN_REG_REMOTE_BYTE, klen - 1);
	if (!sep || sep == k + 1 || sep == k + klen - 1)
		return false;
	*host = (const char *)(k + 1);
	*hlen = (size_t)(sep - (k + 1));
	*plain = sep + 1;
	*plen = klen - (size_t)(sep + 1 - k);
	return true;
}

/* A remote entry copied out as its holder's host sees it: plain key, the
 * pid and registration time on that host (attributes remote_pid,
 * remote_registered_ns). */
static void fill_remote(struct fdn_cluster_entry *o, const struct fdn_entry *e, const char *host,
			size_t hlen, const void *key, size_t klen)
{
	memcpy(o->host, host, hlen);
	o->host[hlen] = 0;
	o->remote = true;
	o->e = *e;
	memcpy(o->e.key, key, klen);
	o->e.key[klen] = 0;
	o->e.key_len = (uint32_t)klen;
	struct fdn_attr a;
	if (fdn_attrs_get(e->attrs, e->attrs_len, "remote_pid", &a) == 0 && a.type == FDN_ATTR_INT)
		o->e.pid = (pid_t)a.v.i;
	if (fdn_attrs_get(e->attrs, e->attrs_len, "remote_registered_ns", &a) == 0 &&
	    a.type == FDN_ATTR_INT)
		o->e.registered_ns = (uint64_t)a.v.i;
}

int fdn_cluster_lookup(fdn_segment *s, const void *key, size_t klen, struct fdn_cluster_entry *out,
		       size_t max)
{
	if (!key || klen == 0 || klen > FDN_REG_KEY_MAX ||
	    ((const unsigned char *)key)[0] == FDN_REG_REMOTE_BYTE)
		return FDN_EINVKEY;
	if (!out && max)
		return FDN_EINVAL;
	struct fdn_entry *e = malloc(sizeof(*e)), *st = malloc(sizeof(*st));
	if (!e || !st) {
		free(e);
		free(st);
		return -ENOMEM;
	}
	int n = 0;
	int r = fdn_lookup(s, key, klen, 0, e);
	if (r == 0) {
		if (max > 0) {
			out[0].host[0] = 0;
			out[0].remote = false;
			out[0].e = *e;
		}
		n++;
	} else if (r != FDN_ENOTFOUND) {
		goto done;
	}
	static const unsigned char status_key[1] = {FDN_REG_REMOTE_BYTE};
	struct fdn_attr hosts;
	r = 0;
	if (fdn_lookup(s, status_key, 1, 0, st) != 0 ||
	    fdn_attrs_get(st->attrs, st->attrs_len, "hosts", &hosts) != 0 ||
	    hosts.type != FDN_ATTR_LIST)
		goto done; /* no agent mirrors into this segment */
	for (uint32_t i = 0; i < hosts.v.list.n; i++) {
		const char *h = fdn_attrs_list_item(&hosts, i);
		size_t hlen = h ? strlen(h) : 0;
		if (hlen == 0 || hlen > FDN_HOST_MAX || 2 + hlen + klen > FDN_REG_KEY_MAX)
			continue;
		unsigned char rk[FDN_REG_KEY_MAX];
		rk[0] = FDN_REG_REMOTE_BYTE;
		memcpy(rk + 1, h, hlen);
		rk[1 + hlen] = FDN_REG_REMOTE_BYTE;
		memcpy(rk + 2 + hlen, key, klen);
		if (fdn_lookup(s, rk, 2 + hlen + klen, 0, e) != 0)
			continue;
		if ((size_t)n < max)
			fill_remote(&out[n], e, h, hlen, key, klen);
		n++;
	}
done:
	free(e);
	free(st);
	return r ? r : n;
}

/* ---- cluster-unique registration: a question to the local agent ------------- */

int fdn_register_cluster_unique(fdn_segment *s, const void *key, size_t klen, pid_t pid,
				const struct fdn_attr *attrs, size_t n, int timeout_ms,
				char *holder_host, pid_t *holder)
{
	if (!key || klen == 0 || klen > FDN_REG_KEY_MAX ||
	    ((const unsigned char *)key)[0] == FDN_REG_REMOTE_BYTE)
		return FDN_EINVKEY;
	if (pid <= 0 || timeout_ms <= 0)
		return FDN_EINVAL;
	struct fdn__unique_req *q = calloc(1, sizeof(*q));
	struct fdn_entry *st = malloc(sizeof(*st));
	int r = 0, fd = -1;
	if (!q || !st) {
		r = -ENOMEM;
		goto out;
	}
	int alen = fdn_attrs_encode(attrs, n, q->attrs, sizeof(q->attrs));
	if (alen < 0) {
		r = alen;
		goto out;
	}
	/* Where the agent listens: its status entry says. */
	static const unsigned char status_key[1] = {FDN_REG_REMOTE_BYTE};
	struct fdn_attr sock;
	if (fdn_lookup(s, status_key, 1, 0, st) != 0 ||
	    fdn_attrs_get(st->attrs, st->attrs_len, "socket", &sock) != 0 ||
	    sock.type != FDN_ATTR_STRING ||
	    strlen(sock.v.s) + 1 >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		r = -ECONNREFUSED;
		goto out;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	/* An abstract name: sun_path[0] = 0, then the name. */
	size_t sl = strlen(sock.v.s);
	memcpy(sa.sun_path + 1, sock.v.s, sl);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa,
			      (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + sl)) != 0) {
		r = -ECONNREFUSED;
		goto out;
	}
	q->version = FDN__UNIQUE_VERSION;
	q->pid = pid;
	q->deadline_ns = fdn__real_ns() + (uint64_t)timeout_ms * 1000000ull;
	q->klen = (uint32_t)klen;
	q->alen = (uint32_t)alen;
	memcpy(q->key, key, klen);
	if (send(fd, q, sizeof(*q), MSG_NOSIGNAL) != (ssize_t)sizeof(*q)) {
		r = -ECONNREFUSED;
		goto out;
	}
	struct pollfd p = {fd, POLLIN, 0};
	int pr;
	do
		pr = poll(&p, 1, timeout_ms);
	while (pr < 0 && errno == EINTR);
	struct fdn__unique_ans ans;
	if (pr <= 0) {
		r = FDN_ETIMEDOUT;
		goto out;
	}
	if (recv(fd, &ans, sizeof(ans), 0) != (ssize_t)sizeof(ans)) {
		r = -ECONNREFUSED; /* the agent went away */
		goto out;
	}
	ans.host[FDN_HOST_MAX] = 0;
	r = ans.result;
	if (r == FDN_EEXISTS) {
		if (holder_host)
			memcpy(holder_host, ans.host, FDN_HOST_MAX + 1);
		if (holder)
			*holder = ans.holder_pid;
	}
out:
	if (fd >= 0)
		close(fd);
	free(q);
	free(st);
	return r;
}
