/*
 * tools/mirrord/etcd.c - etcd's v3 JSON gateway over libcurl (etcd.h).
 *
 * No HTTP is written here: libcurl does the requests, TLS and failover
 * connections; json-c builds the bodies and parses the answers, including
 * the watch stream, whose newline-separated objects arrive in pieces that
 * json-c's incremental tokener assembles.
 */
#include "etcd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- base64 ---------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *b64_encode(const void *p, size_t n)
{
	const unsigned char *s = p;
	char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		*q++ = b64[v >> 18 & 63];
		*q++ = b64[v >> 12 & 63];
		*q++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*q++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*q = 0;
	return o;
}

unsigned char *b64_decode(const char *t, size_t *n)
{
	size_t len = strlen(t);
	if (len % 4)
		return NULL;
	unsigned char *o = malloc(len / 4 * 3 + 1);
	if (!o)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			char ch = t[i + j];
			const char *at = ch ? strchr(b64, ch) : NULL;
			if (ch == '=' && i + 4 == len && j >= 2) {
				pad++;
				v <<= 6;
				continue;
			}
			if (!at || pad) {
				free(o);
				return NULL;
			}
			v = v << 6 | (uint32_t)(at - b64);
		}
		o[k++] = (unsigned char)(v >> 16);
		if (pad < 2)
			o[k++] = (unsigned char)(v >> 8);
		if (pad < 1)
			o[k++] = (unsigned char)v;
	}
	o[k] = 0;
	*n = k;
	return o;
}

/* ---- requests -------------------------------------------------------------- */

int etcd_init(struct etcd *c, const struct etcd_opts *o, atomic_bool *stop)
{
	memset(c, 0, sizeof(*c));
	c->o = *o;
	c->stop = stop;
	c->h = curl_easy_init();
	if (!c->h) {
		snprintf(c->err, sizeof(c->err), "curl_easy_init failed");
		return -1;
	}
	return 0;
}

void etcd_fini(struct etcd *c)
{
	if (c->h)
		curl_easy_cleanup(c->h);
	free(c->token);
	c->h = NULL;
	c->token = NULL;
}

struct buf {
	char *p;
	size_t len, cap;
};

static size_t buf_write(char *d, size_t sz, size_t nm, void *arg)
{
	struct buf *b = arg;
	size_t n = sz * nm;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = 0;
	return n;
}

static int stop_check(void *arg, curl_off_t a, curl_off_t b, curl_off_t c_, curl_off_t d)
{
	(void)a, (void)b, (void)c_, (void)d;
	atomic_bool *stop = arg;
	return stop && atomic_load(stop) ? 1 : 0;
}

/* The options of one request to endpoint i. */
static struct curl_slist *setup(struct etcd *c, size_t i, const char *path, const char *body,
				long timeout_ms)
{
	char url[512];
	snprintf(url, sizeof(url), "%s%s", c->o.endpoints[i], path);
	CURL *h = c->h;
	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->o.timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, stop_check);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c->stop);
	if (c->o.cacert)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->o.cacert);
	if (c->o.cert)
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->o.cert);
	if (c->o.key)
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->o.key);
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	if (c->token) {
		char a[1024];
		snprintf(a, sizeof(a), "Authorization: %s", c->token);
		hd = curl_slist_append(hd, a);
	}
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
	return hd;
}

static int authenticate(struct etcd *c, size_t i);

/* One POST to endpoint i: 0 and *resp, 1 (transport failure: try
 * another endpoint), -1 (an answer that is an error). */
static int post_one(struct etcd *c, size_t i, const char *path, const char *body,
		    json_object **resp, bool retry_auth, long timeout_ms)
{
	struct buf b = {0};
	struct curl_slist *hd = setup(c, i, path, body, timeout_ms);
	curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, buf_write);
	curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &b);
	CURLcode cr = curl_easy_perform(c->h);
	curl_slist_free_all(hd);
	long code = 0;
	curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &code);
	if (cr != CURLE_OK) {
		snprintf(c->err, sizeof(c->err), "%s: %s", c->o.endpoints[i],
			 curl_easy_strerror(cr));
		free(b.p);
		return 1;
	}
	json_object *j = b.p ? json_tokener_parse(b.p) : NULL;
	free(b.p);
	if (!j) {
		snprintf(c->err, sizeof(c->err), "%s%s: HTTP %ld, not JSON", c->o.endpoints[i],
			 path, code);
		return 1;
	}
	json_object *e;
	if (json_object_object_get_ex(j, "error", &e) && !json_object_is_type(e, json_type_null)) {
		const char *msg = json_object_get_string(e);
		json_object *m;
		if (json_object_object_get_ex(j, "message", &m))
			msg = json_object_get_string(m);
		snprintf(c->err, sizeof(c->err), "%s: %s", c->o.endpoints[i], msg ? msg : "error");
		bool auth =
		    msg && (strstr(msg, "invalid auth token") || strstr(msg, "user name is empty"));
		/* gRPC UNAVAILABLE (14: no leader, member stopping) and
		 * DEADLINE_EXCEEDED (4): another member may answer. */
		int64_t grpc = etcd_i64(j, "code", 0);
		json_object_put(j);
		if (auth && retry_auth && c->o.user && authenticate(c, i) == 0)
			return post_one(c, i, path, body, resp, false, timeout_ms);
		return grpc == 14 || grpc == 4 ? 1 : -1;
	}
	*resp = j;
	return 0;
}

/* The password check of /v3/auth/authenticate is bcrypt, made slow on
 * purpose (tens of milliseconds of the member's CPU, far more on a busy
 * machine): it gets a timeout of its own, at least AUTH_TIMEOUT_MS, and a
 * token is kept until its member refuses it -- never dropped because a
 * request timed out, which made every retry pay the check again and, on a
 * loaded member, never get a token at all. */
#define AUTH_TIMEOUT_MS 10000L

static int authenticate(struct etcd *c, size_t i)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	json_object_object_add(req, "name", json_object_new_string(c->o.user));
	json_object_object_add(req, "password",
			       json_object_new_string(c->o.password ? c->o.password : ""));
	free(c->token);
	c->token = NULL;
	long to = c->o.timeout_ms > AUTH_TIMEOUT_MS ? c->o.timeout_ms : AUTH_TIMEOUT_MS;
	int r = post_one(c, i, "/v3/auth/authenticate", json_object_to_json_string(req), &resp,
			 false, to);
	json_object_put(req);
	if (r)
		return -1;
	json_object *t;
	if (json_object_object_get_ex(resp, "token", &t))
		c->token = strdup(json_object_get_string(t));
	c->token_ep = i;
	json_object_put(resp);
	return c->token ? 0 : -1;
}

/* Endpoint i can be asked: no auth, or a token of that member (one is
 * obtained if needed).  0 or -1. */
static int auth_for(struct etcd *c, size_t i)
{
	if (!c->o.user || (c->token && c->token_ep == i))
		return 0;
	return authenticate(c, i) == 0 ? 0 : -1;
}

int etcd_call(struct etcd *c, const char *path, json_object *req, json_object **resp)
{
	const char *body = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	for (size_t k = 0; k < c->o.nendpoints; k++) {
		size_t i = (c->cur + k) % c->o.nendpoints;
		if (auth_for(c, i) != 0)
			continue;
		int r = post_one(c, i, path, body, resp, true, c->o.timeout_ms);
		if (r <= 0) {
			c->cur = i;
			return r;
		}
	}
	return -1;
}

int64_t etcd_i64(json_object *obj, const char *field, int64_t def)
{
	json_object *v;
	if (!obj || !json_object_object_get_ex(obj, field, &v))
		return def;
	return json_object_get_int64(v);
}

static json_object *i64s(int64_t v)
{
	char t[32];
	snprintf(t, sizeof(t), "%lld", (long long)v);
	return json_object_new_string(t);
}

static void add_b64(json_object *o, const char *field, const void *p, size_t n)
{
	char *t = b64_encode(p, n);
	json_object_object_add(o, field, json_object_new_string(t ? t : ""));
	free(t);
}

int etcd_lease_grant(struct etcd *c, int64_t ttl, int64_t *id)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	json_object_object_add(req, "TTL", i64s(ttl));
	int r = etcd_call(c, "/v3/lease/grant", req, &resp);
	json_object_put(req);
	if (r)
		return r;
	*id = etcd_i64(resp, "ID", 0);
	json_object_put(resp);
	if (*id == 0) {
		snprintf(c->err, sizeof(c->err), "lease grant: no ID in the answer");
		return -1;
	}
	return 0;
}

int etcd_lease_keepalive(struct etcd *c, int64_t id, int64_t *ttl)
{
	json_object *req = json_object_new_object(), *resp = NULL, *res;
	json_object_object_add(req, "ID", i64s(id));
	int r = etcd_call(c, "/v3/lease/keepalive", req, &resp);
	json_object_put(req);
	if (r)
		return r;
	/* The gateway answers a stream of one: {"result": {..., "TTL"}}; a
	 * lease that is gone has no TTL. */
	*ttl = json_object_object_get_ex(resp, "result", &res) ? etcd_i64(res, "TTL", 0) : 0;
	json_object_put(resp);
	return 0;
}

int etcd_lease_revoke(struct etcd *c, int64_t id)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	json_object_object_add(req, "ID", i64s(id));
	int r = etcd_call(c, "/v3/lease/revoke", req, &resp);
	json_object_put(req);
	if (r == 0)
		json_object_put(resp);
	return r;
}

int etcd_lease_ttl(struct etcd *c, int64_t id, int64_t *left)
{
	json_object *req = json_object_new_object(), *resp = NULL;
	json_object_object_add(req, "ID", i64s(id));
	int r = etcd_call(c, "/v3/lease/timetolive", req, &resp);
	json_object_put(req);
	if (r)
		return r;
	*left = etcd_i64(resp, "TTL", -1);
	json_object_put(resp);
	return 0;
}

int etcd_revision(struct etcd *c, int64_t *rev)
{
	json_object *req = json_object_new_object(), *resp = NULL, *h;
	add_b64(req, "key", "\0", 1);
	json_object_object_add(req, "count_only", json_object_new_boolean(1));
	int r = etcd_call(c, "/v3/kv/range", req, &resp);
	json_object_put(req);
	if (r)
		return r;
	*rev = json_object_object_get_ex(resp, "header", &h) ? etcd_i64(h, "revision", 0) : 0;
	json_object_put(resp);
	return 0;
}

char *etcd_range_end(const void *prefix, size_t plen)
{
	unsigned char e[1024];
	if (plen == 0 || plen > sizeof(e))
		return NULL;
	memcpy(e, prefix, plen);
	size_t n = plen;
	while (n > 0 && e[n - 1] == 0xff)
		n--;
	if (n == 0)
		return b64_encode("\0", 1); /* every key */
	e[n - 1]++;
	return b64_encode(e, n);
}

#define PAGE 1000

int etcd_range_prefix(struct etcd *c, const void *prefix, size_t plen, int64_t rev, etcd_kv_cb cb,
		      void *arg, int64_t *at)
{
	char *end = etcd_range_end(prefix, plen);
	char *from = b64_encode(prefix, plen);
	int r = 0;
	*at = rev;
	for (;;) {
		json_object *req = json_object_new_object(), *resp = NULL, *kvs, *more, *h;
		json_object_object_add(req, "key", json_object_new_string(from));
		json_object_object_add(req, "range_end", json_object_new_string(end));
		json_object_object_add(req, "limit", i64s(PAGE));
		if (*at)
			json_object_object_add(req, "revision", i64s(*at));
		r = etcd_call(c, "/v3/kv/range", req, &resp);
		json_object_put(req);
		if (r)
			break;
		/* Every page at the revision the first one read: one snapshot. */
		if (*at == 0 && json_object_object_get_ex(resp, "header", &h))
			*at = etcd_i64(h, "revision", 0);
		size_t n = 0;
		json_object *last = NULL;
		if (json_object_object_get_ex(resp, "kvs", &kvs)) {
			n = json_object_array_length(kvs);
			for (size_t i = 0; i < n && r == 0; i++) {
				last = json_object_array_get_idx(kvs, i);
				r = cb(arg, last);
			}
		}
		bool again = json_object_object_get_ex(resp, "more", &more) &&
			     json_object_get_boolean(more) && last && r == 0;
		if (again) {
			/* The next page starts just after the last key. */
			json_object *k;
			size_t kl = 0;
			unsigned char *kb = NULL;
			if (json_object_object_get_ex(last, "key", &k))
				kb = b64_decode(json_object_get_string(k), &kl);
			free(from);
			from = NULL;
			if (kb) {
				unsigned char *nk = realloc(kb, kl + 1);
				if (nk) {
					nk[kl] = 0;
					from = b64_encode(nk, kl + 1);
					kb = nk;
				}
				free(kb);
			}
			if (!from) {
				json_object_put(resp);
				snprintf(c->err, sizeof(c->err), "range: bad key in the answer");
				r = -1;
				break;
			}
		}
		json_object_put(resp);
		if (!again)
			break;
	}
	free(end);
	free(from);
	return r;
}

/* ---- watch ----------------------------------------------------------------- */

struct watch {
	struct etcd *c;
	json_tokener *tok;
	etcd_watch_cb cb;
	void *arg;
	int r; /* cb's non-zero, or -1 for a cancelled watch */
	bool created;
};

static size_t watch_write(char *d, size_t sz, size_t nm, void *arg)
{
	struct watch *w = arg;
	size_t n = sz * nm, off = 0;
	while (off < n && w->r == 0) {
		json_object *j = json_tokener_parse_ex(w->tok, d + off, (int)(n - off));
		enum json_tokener_error e = json_tokener_get_error(w->tok);
		if (!j) {
			if (e == json_tokener_continue)
				return n; /* the rest of the object comes next */
			snprintf(w->c->err, sizeof(w->c->err), "watch: %s",
				 json_tokener_error_desc(e));
			w->r = -1;
			break;
		}
		off += json_tokener_get_parse_end(w->tok);
		json_tokener_reset(w->tok);
		json_object *res, *x;
		if (!json_object_object_get_ex(j, "result", &res)) {
			const char *m = json_object_object_get_ex(j, "error", &x)
					    ? json_object_to_json_string(x)
					    : "no result";
			snprintf(w->c->err, sizeof(w->c->err), "watch: %s", m);
			w->r = -1;
		} else if (json_object_object_get_ex(res, "canceled", &x) &&
			   json_object_get_boolean(x)) {
			snprintf(w->c->err, sizeof(w->c->err),
				 "watch cancelled (compact revision %lld)",
				 (long long)etcd_i64(res, "compact_revision", 0));
			w->r = -1;
		} else {
			w->created = true;
			w->r = w->cb(w->arg, res);
		}
		json_object_put(j);
	}
	return w->r ? 0 : n; /* 0 ends the transfer */
}

int etcd_watch(struct etcd *c, const void *prefix, size_t plen, int64_t start, etcd_watch_cb cb,
	       void *arg)
{
	json_object *req = json_object_new_object(), *cr = json_object_new_object();
	add_b64(cr, "key", prefix, plen);
	char *end = etcd_range_end(prefix, plen);
	json_object_object_add(cr, "range_end", json_object_new_string(end ? end : ""));
	free(end);
	json_object_object_add(cr, "start_revision", i64s(start));
	json_object_object_add(req, "create_request", cr);
	char *body = strdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
	json_object_put(req);
	int r = -1;
	for (size_t k = 0; k < c->o.nendpoints && body; k++) {
		size_t i = (c->cur + k) % c->o.nendpoints;
		if (auth_for(c, i) != 0)
			continue;
		struct watch w = {c, json_tokener_new(), cb, arg, 0, false};
		struct curl_slist *hd = setup(c, i, "/v3/watch", body, 0);
		curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, watch_write);
		curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &w);
		/* A dead peer that sends no RST: TCP keepalive finds it. */
		curl_easy_setopt(c->h, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(c->h, CURLOPT_TCP_KEEPIDLE, 2L);
		curl_easy_setopt(c->h, CURLOPT_TCP_KEEPINTVL, 1L);
		CURLcode e = curl_easy_perform(c->h);
		curl_slist_free_all(hd);
		json_tokener_free(w.tok);
		if (atomic_load(c->stop)) {
			r = 0;
			break;
		}
		if (w.r) {
			r = w.r;
			break;
		}
		snprintf(c->err, sizeof(c->err), "watch %s: %s", c->o.endpoints[i],
			 e == CURLE_OK ? "the stream ended" : curl_easy_strerror(e));
		if (w.created)
			break; /* it ran, then broke: the caller resynchronises */
		c->cur = (i + 1) % c->o.nendpoints;
	}
	free(body);
	return r;
}

/* ---- transactions ------------------------------------------------------------ */

json_object *etcd_txn_new(void)
{
	json_object *t = json_object_new_object();
	json_object_object_add(t, "compare", json_object_new_array());
	json_object_object_add(t, "success", json_object_new_array());
	json_object_object_add(t, "failure", json_object_new_array());
	return t;
}

void etcd_txn_put(json_object *txn, const void *k, size_t kl, const void *v, size_t vl,
		  int64_t lease)
{
	json_object *op = json_object_new_object(), *p = json_object_new_object(), *s;
	add_b64(p, "key", k, kl);
	add_b64(p, "value", v, vl);
	if (lease)
		json_object_object_add(p, "lease", i64s(lease));
	json_object_object_add(op, "request_put", p);
	json_object_object_get_ex(txn, "success", &s);
	json_object_array_add(s, op);
}

void etcd_txn_del(json_object *txn, const void *k, size_t kl)
{
	json_object *op = json_object_new_object(), *p = json_object_new_object(), *s;
	add_b64(p, "key", k, kl);
	json_object_object_add(op, "request_delete_range", p);
	json_object_object_get_ex(txn, "success", &s);
	json_object_array_add(s, op);
}
