/*
 * tools/mirrord/etcd.h - a client of etcd's v3 JSON gateway (etcd 3.4:
 * POST /v3/..., keys and values base64 in the JSON) over libcurl, the
 * JSON read and written by json-c.  docs/cluster.md argues the choice.
 *
 * One struct etcd is one connection's state (a curl easy handle, the
 * endpoint in use, the auth token): one thread at a time.  Every call tries
 * the endpoint in use, then each other endpoint once, so a cluster with a
 * member down keeps answering.  Errors: -1 and a one-line reason in
 * c->err (transport: no endpoint answered; gRPC: the gateway's error).
 */
#ifndef FDN_MIRRORD_ETCD_H
#define FDN_MIRRORD_ETCD_H

#include <curl/curl.h>
#include <json-c/json.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct etcd_opts {
	char **endpoints; /* "http://127.0.0.1:2379", "https://..." */
	size_t nendpoints;
	const char *cacert, *cert, *key; /* TLS, as etcdctl --cacert/--cert/--key */
	const char *user, *password;     /* auth, as etcdctl --user */
	long timeout_ms;                 /* per request (a watch: connect only) */
};

struct etcd {
	struct etcd_opts o;
	size_t cur; /* the endpoint in use */
	CURL *h;
	char *token;     /* after /v3/auth/authenticate */
	size_t token_ep; /* the endpoint that issued it (a token is per member) */
	char err[256];
	atomic_bool *stop; /* a watch returns soon after *stop turns true */
};

int etcd_init(struct etcd *c, const struct etcd_opts *o, atomic_bool *stop);
void etcd_fini(struct etcd *c);

/* base64 (RFC 4648, padded) of n bytes; malloc'ed, NUL-terminated. */
char *b64_encode(const void *p, size_t n);
/* Decoded bytes of a base64 text (malloc'ed, *n bytes, NUL added), or
 * NULL for bad text. */
unsigned char *b64_decode(const char *t, size_t *n);

/* POST path (e.g. "/v3/kv/range") with the JSON body req (not consumed);
 * *resp the parsed answer (json_object_put it).  0 or -1 (c->err). */
int etcd_call(struct etcd *c, const char *path, json_object *req, json_object **resp);

/* An int64 field of obj (the gateway writes them as strings); def if
 * absent. */
int64_t etcd_i64(json_object *obj, const char *field, int64_t def);

int etcd_lease_grant(struct etcd *c, int64_t ttl, int64_t *id);
/* One keepalive: *ttl the lease's TTL after it, 0 when the lease is gone
 * (expired or revoked). */
int etcd_lease_keepalive(struct etcd *c, int64_t id, int64_t *ttl);
int etcd_lease_revoke(struct etcd *c, int64_t id);
/* Seconds left of lease id; -1 when it is gone. */
int etcd_lease_ttl(struct etcd *c, int64_t id, int64_t *left);

/* The revision of the store (a range of one key). */
int etcd_revision(struct etcd *c, int64_t *rev);

/* Every key under prefix at revision rev (0: now), in pages; cb(arg, kv)
 * for each kv object ({key, value, mod_revision, lease} as the gateway
 * writes them); *at receives the revision read. */
typedef int (*etcd_kv_cb)(void *arg, json_object *kv);
int etcd_range_prefix(struct etcd *c, const void *prefix, size_t plen, int64_t rev, etcd_kv_cb cb,
		      void *arg, int64_t *at);

/* Watch every key under prefix from revision start (streaming POST
 * /v3/watch): cb(arg, result) for each response's "result" object (its
 * header and events).  Returns when *c->stop turns true (0), when cb
 * returns non-zero (that value), or on a failure (-1: the connection
 * broke, or the watch was cancelled -- compaction: c->err says). */
typedef int (*etcd_watch_cb)(void *arg, json_object *result);
int etcd_watch(struct etcd *c, const void *prefix, size_t plen, int64_t start, etcd_watch_cb cb,
	       void *arg);

/* A txn request in the making: "compare", "success", "failure" arrays. */
json_object *etcd_txn_new(void);
/* Append a put (lease 0: none) or a delete of one key to txn's success. */
void etcd_txn_put(json_object *txn, const void *k, size_t kl, const void *v, size_t vl,
		  int64_t lease);
void etcd_txn_del(json_object *txn, const void *k, size_t kl);
/* The prefix's range_end (the prefix with its last byte raised), base64. */
char *etcd_range_end(const void *prefix, size_t plen);

#endif
