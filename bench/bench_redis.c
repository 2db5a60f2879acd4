/* bench/bench_redis.c - the RESP client of bench_common.h: commands buffered,
 * flushed, and replies parsed (bench_common.c starts redis-server). */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int wbuf_put(struct bench_redis *r, const void *p, size_t n)
{
	if (r->wlen + n > r->wcap) {
		size_t cap = r->wcap ? r->wcap : 4096;
		while (cap < r->wlen + n)
			cap *= 2;
		char *b = realloc(r->wbuf, cap);
		if (!b)
			return bench_fail("redis: buffer: %s", strerror(errno));
		r->wbuf = b;
		r->wcap = cap;
	}
	memcpy(r->wbuf + r->wlen, p, n);
	r->wlen += n;
	return 0;
}

int bench_redis_cmd(struct bench_redis *r, int argc, const char *const *argv, const size_t *lens)
{
	char head[32];
	int n = snprintf(head, sizeof(head), "*%d\r\n", argc);
	if (wbuf_put(r, head, (size_t)n))
		return -1;
	for (int i = 0; i < argc; i++) {
		size_t len = lens ? lens[i] : strlen(argv[i]);
		n = snprintf(head, sizeof(head), "$%zu\r\n", len);
		if (wbuf_put(r, head, (size_t)n) || wbuf_put(r, argv[i], len) ||
		    wbuf_put(r, "\r\n", 2))
			return -1;
	}
	return 0;
}

int bench_redis_flush(struct bench_redis *r)
{
	size_t off = 0;
	while (off < r->wlen) {
		ssize_t w = write(r->fd, r->wbuf + off, r->wlen - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return bench_fail("redis: write: %s", w < 0 ? strerror(errno) : "closed");
		off += (size_t)w;
	}
	r->wlen = 0;
	return 0;
}

/* At least n unread bytes in rbuf. */
static int rbuf_need(struct bench_redis *r, size_t n)
{
	while (r->rlen - r->rpos < n) {
		if (r->rpos) {
			memmove(r->rbuf, r->rbuf + r->rpos, r->rlen - r->rpos);
			r->rlen -= r->rpos;
			r->rpos = 0;
		}
		if (r->rcap - r->rlen < 4096 || r->rcap < n) {
			size_t cap = r->rcap ? r->rcap * 2 : 65536;
			while (cap < n)
				cap *= 2;
			char *b = realloc(r->rbuf, cap);
			if (!b)
				return bench_fail("redis: buffer: %s", strerror(errno));
			r->rbuf = b;
			r->rcap = cap;
		}
		ssize_t got = read(r->fd, r->rbuf + r->rlen, r->rcap - r->rlen);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return bench_fail("redis: read: %s", got < 0 ? strerror(errno) : "closed");
		r->rlen += (size_t)got;
	}
	return 0;
}

/* The next line (without CRLF) at rbuf + *at, its length in *len. */
static int rbuf_line(struct bench_redis *r, size_t *at, size_t *len)
{
	size_t scanned = 0;
	for (;;) {
		const char *b = r->rbuf + r->rpos;
		size_t have = r->rlen - r->rpos;
		for (size_t i = scanned; i + 1 < have; i++) {
			if (b[i] == '\r' && b[i + 1] == '\n') {
				*at = r->rpos;
				*len = i;
				r->rpos += i + 2;
				return 0;
			}
		}
		scanned = have ? have - 1 : 0;
		if (rbuf_need(r, have + 1))
			return -1;
	}
}

static int64_t parse_i64(const char *s, size_t n, bool *ok)
{
	int64_t v = 0;
	bool neg = n && s[0] == '-';
	*ok = n > (size_t)neg && n < 20;
	for (size_t i = neg; i < n && *ok; i++) {
		if (s[i] < '0' || s[i] > '9')
			*ok = false;
		else
			v = v * 10 + (s[i] - '0');
	}
	return neg ? -v : v;
}

int bench_redis_reply(struct bench_redis *r, struct bench_resp *out)
{
	size_t at, len;
	*out = (struct bench_resp){0};
	if (rbuf_line(r, &at, &len))
		return -1;
	if (len == 0)
		return bench_fail("redis: protocol: empty reply line");
	const char *l = r->rbuf + at;
	bool ok = true;
	out->type = l[0];
	switch (l[0]) {
	case '+':
	case '-':
		out->str = l + 1;
		out->len = len - 1;
		return 0;
	case ':':
		out->integer = parse_i64(l + 1, len - 1, &ok);
		return ok ? 0 : bench_fail("redis: protocol: bad integer");
	case '$': {
		int64_t n = parse_i64(l + 1, len - 1, &ok);
		if (!ok || n < -1)
			return bench_fail("redis: protocol: bad bulk length");
		if (n == -1) {
			out->is_nil = true;
			return 0;
		}
		if (rbuf_need(r, (size_t)n + 2))
			return -1;
		out->str = r->rbuf + r->rpos;
		out->len = (size_t)n;
		r->rpos += (size_t)n + 2;
		return 0;
	}
	default:
		return bench_fail("redis: protocol: reply type '%c' not expected", l[0]);
	}
}

int bench_redis_call(struct bench_redis *r, int argc, const char *const *argv, const size_t *lens,
		     struct bench_resp *out)
{
	if (bench_redis_cmd(r, argc, argv, lens) || bench_redis_flush(r) ||
	    bench_redis_reply(r, out))
		return -1;
	if (out->type == '-')
		return bench_fail("redis: %s: %.*s", argv[0], (int)out->len, out->str);
	return 0;
}
