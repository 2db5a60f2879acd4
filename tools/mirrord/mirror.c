/*
 * tools/mirrord/mirror.c - the mirror: every other host's entries from
 * etcd into the remote namespace of the segment, by a snapshot at one
 * revision and then a watch from the next.
 *
 * Called by main (mirror_thread); calls status.c (the hosts table),
 * format.c, etcd.c and the registry.
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
	size_t pl = strlen(agent.prefix);
	if (kl <= pl + sizeof(hosts) - 1 || memcmp(k, agent.prefix, pl) ||
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
	if (strcmp(host, agent.host) == 0)
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
	pthread_mutex_lock(&agent.mu);
	int i = host_slot(host, d > 0);
	if (i >= 0) {
		agent.hi[i].entries += d;
		if (lease)
			agent.hi[i].lease = lease;
	}
	agent.mirrored += d;
	pthread_mutex_unlock(&agent.mu);
}

static void drop(const char *why, const char *host)
{
	pthread_mutex_lock(&agent.mu);
	int64_t n = ++agent.dropped;
	pthread_mutex_unlock(&agent.mu);
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
		pthread_mutex_lock(&agent.mu);
		int hs = host_slot(host, true);
		if (hs >= 0)
			agent.hi[hs].pending++;
		pthread_mutex_unlock(&agent.mu);
		int r = fdn_register(agent.s, rk, rkl, getpid(), ra->a, ra->n,
				     FDN_REG_REPLACE | FDN_REG_MIRROR, NULL);
		pthread_mutex_lock(&agent.mu);
		if ((hs = host_slot(host, false)) >= 0) { /* other hosts may have moved it */
			agent.hi[hs].pending--;
			if (lease)
				agent.hi[hs].lease = lease;
		}
		pthread_mutex_unlock(&agent.mu);
		if (r) {
			drop(fdn_strerror(r), host);
			/* A changed entry that no longer fits: the old version
			 * must not stay. */
			if (!fresh)
				fdn_unregister_flags(agent.s, rk, rkl,
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
		fdn_unregister_flags(agent.s, rk, rkl, FDN_REG_MIRROR | FDN_REG_IF_PRESENT);
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
	pthread_mutex_lock(&agent.mu);
	if (json_object_object_get_ex(res, "header", &h)) {
		int64_t rev = etcd_i64(h, "revision", 0);
		if (rev > agent.applied_rev)
			agent.applied_rev = rev;
		if (rev > agent.cluster_rev)
			agent.cluster_rev = rev;
	}
	if (!agent.mir_ok)
		agent.mir_ok = true; /* the watch answers again */
	pthread_mutex_unlock(&agent.mu);
	return 0;
}

static void mir_state(bool ok, struct etcd *c, const char *what)
{
	if (!ok)
		say(agent.mir_err, "mirror: %s: %s", what, c->err);
	pthread_mutex_lock(&agent.mu);
	if (!ok)
		agent.mir_failures++;
	agent.mir_ok = ok;
	pthread_mutex_unlock(&agent.mu);
}

void *mirror_thread(void *arg)
{
	(void)arg;
	struct mirror m = {.have = json_object_new_object()};
	if (etcd_init(&m.c, &agent.eo, &agent.stop))
		return NULL;
	size_t pl = strlen(agent.prefix);
	while (!atomic_load(&agent.stop)) {
		/* A snapshot at one revision, the segment made equal to it. */
		m.seen = json_object_new_object();
		int64_t at = 0;
		int r = etcd_range_prefix(&m.c, agent.prefix, pl, 0, range_cb, &m, &at);
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
		pthread_mutex_lock(&agent.mu);
		agent.applied_rev = at;
		agent.resyncs++;
		pthread_mutex_unlock(&agent.mu);
		mir_state(true, &m.c, NULL);
		/* Then every change after it, in order. */
		r = etcd_watch(&m.c, agent.prefix, pl, at + 1, watch_cb, &m);
		if (atomic_load(&agent.stop))
			break;
		mir_state(false, &m.c, "watch");
		nap(200);
	}
	json_object_put(m.have);
	etcd_fini(&m.c);
	return NULL;
}
