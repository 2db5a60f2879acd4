/*
 * trace_context.c - the error context (foundation/context.h): the context
 * map, ids and breadcrumbs in this thread's trace struct, enrichment of
 * error reports, and handing the context over to another process (export,
 * import, FOUNDATION_CONTEXT).  Calls trace.c (trace_int.h); the graveyard
 * (trace_graveyard.c) calls fdn__tr_crumbs_view.  Writes follow trace.c's
 * concurrency rule (the slot's seqlock).
 */
#include "lib/trace_int.h"

#include <foundation/context.h>
#include <foundation/spans.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static_assert(FDN_CTX_MAXLEN == FDN_CTX_ATTRS_MAX, "context");
static_assert(FDN_CTX_ID_MAXLEN == FDN_CTX_ID_MAX, "ids");
static_assert(FDN_CTX_CRUMBS == FDN_CRUMBS_MAX, "breadcrumbs");
static_assert(FDN_CRUMB_ATTRS_MAXLEN == FDN_CRUMB_ATTRS_MAX, "breadcrumb attributes");

/* ---- error context ------------------------------------------------------------- */

static void ctx_env_import(struct fdn_shm_trace *tr);

/* FOUNDATION_CONTEXT is imported by the first use of an error context in
 * the process (any thread, either backend), once. */
static atomic_bool ctx_env_used;

static int ctx_slot(fdn_segment *s, struct fdn_shm_trace **tr)
{
	int r = fdn__tr_slot_for(s, FDN__SVC_ERROR_CONTEXT, tr, NULL);
	if (r == 0 && !atomic_load_explicit(&ctx_env_used, memory_order_relaxed) &&
	    !atomic_exchange(&ctx_env_used, true))
		ctx_env_import(*tr);
	return r;
}

/* Write the context map (len <= FDN_CTX_ATTRS_MAX). */
static void ctx_store(struct fdn_shm_trace *tr, const uint8_t *p, size_t len)
{
	fdn__trace_write_begin(tr);
	memcpy(tr->ctx, p, len);
	tr->ctx_len = (uint32_t)len;
	fdn__trace_write_end(tr);
}

int fdn_ctx_set(fdn_segment *s, const struct fdn_attr *attrs, size_t n)
{
	uint8_t upd[FDN_ATTRS_MAX], out[FDN_ATTRS_MAX];
	int ul = fdn__tr_encode_bounded(attrs, n, upd, FDN_ATTRS_MAX);
	if (ul < 0)
		return ul;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	int len = fdn__tr_merge(tr->ctx, tr->ctx_len, upd, (size_t)ul, out);
	if (len < 0)
		return len == FDN_EINVMETA && ul > 0 ? FDN_ETOOBIG : len;
	if ((size_t)len > FDN_CTX_ATTRS_MAX)
		return FDN_ETOOBIG;
	ctx_store(tr, out, (size_t)len);
	return 0;
}

int fdn_ctx_get(fdn_segment *s, void *buf, size_t cap, size_t *len)
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	if (len)
		*len = tr->ctx_len;
	if (cap < tr->ctx_len || (!buf && tr->ctx_len))
		return FDN_ETOOBIG;
	if (tr->ctx_len) /* buf may be NULL for an empty context */
		memcpy(buf, tr->ctx, tr->ctx_len);
	return 0;
}

int fdn_ctx_clear(fdn_segment *s)
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	fdn__trace_write_begin(tr);
	tr->ctx_len = 0;
	tr->ncrumbs = 0;
	tr->corr_len = tr->op_len = 0;
	tr->corr[0] = tr->op[0] = 0;
	fdn__trace_write_end(tr);
	return 0;
}

int fdn_with_context(fdn_segment *s, const struct fdn_attr *attrs, size_t n, int (*fn)(void *arg),
		     void *arg)
{
	return fdn_with_context_mode(s, attrs, n, FDN_CTX_MERGE, fn, arg);
}

int fdn_with_context_mode(fdn_segment *s, const struct fdn_attr *attrs, size_t n,
			  enum fdn_ctx_mode mode, int (*fn)(void *arg), void *arg)
{
	if (!fn || (mode != FDN_CTX_MERGE && mode != FDN_CTX_REPLACE))
		return FDN_EINVAL;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	uint8_t saved[FDN_CTX_ATTRS_MAX];
	size_t saved_len = tr->ctx_len;
	memcpy(saved, tr->ctx, saved_len);
	if (mode == FDN_CTX_REPLACE) {
		uint8_t enc[FDN_ATTRS_MAX];
		int len = fdn__tr_encode_bounded(attrs, n, enc, FDN_CTX_ATTRS_MAX);
		if (len < 0)
			return len;
		ctx_store(tr, enc, (size_t)len);
	} else if ((r = fdn_ctx_set(s, attrs, n))) {
		return r;
	}
	int res = fn(arg);
	/* The callback may have flipped the backend: restore on the slot the
	 * context was saved from. */
	ctx_store(tr, saved, saved_len);
	return res;
}

int fdn_ctx_breadcrumb(fdn_segment *s, const char *module, const char *function,
		       const struct fdn_attr *attrs, size_t n)
{
	int ml = fdn__tr_check_name(module, FDN_CRUMB_MODULE_MAX);
	if (ml < 0)
		return ml;
	int fl = fdn__tr_check_name(function, FDN_CRUMB_FUNC_MAX);
	if (fl < 0)
		return fl;
	uint8_t enc[FDN_ATTRS_MAX];
	int al = fdn__tr_encode_bounded(attrs, n, enc, FDN_CRUMB_ATTRS_MAX);
	if (al < 0)
		return al;
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	struct fdn_shm_crumb *c = &tr->crumbs[tr->ncrumbs % FDN_CRUMBS_MAX];
	fdn__trace_write_begin(tr);
	c->time_real = fdn__real_ns();
	memset(c->module, 0, sizeof(c->module));
	memcpy(c->module, module, (size_t)ml);
	memset(c->function, 0, sizeof(c->function));
	memcpy(c->function, function, (size_t)fl);
	c->attrs_len = (uint16_t)al;
	memcpy(c->attrs, enc, (size_t)al);
	tr->ncrumbs++;
	fdn__trace_write_end(tr);
	return 0;
}

/* A printable id of 1..63 bytes, or a random one. */
static int make_id(const char *id, char out[FDN_CTX_ID_MAX + 1])
{
	if (!id) {
		uint8_t b[16];
		uint64_t a = fdn__tr_rnd64(), c = fdn__tr_rnd64();
		memcpy(b, &a, 8);
		memcpy(b + 8, &c, 8);
		fdn__tr_hex(out, b, 16);
		return 32;
	}
	size_t n = strnlen(id, FDN_CTX_ID_MAX + 1);
	if (n == 0 || n > FDN_CTX_ID_MAX)
		return FDN_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (id[i] < 0x21 || id[i] > 0x7e)
			return FDN_EINVAL;
	memcpy(out, id, n);
	out[n] = 0;
	return (int)n;
}

/* id made an id into v, and this thread's context slot: the id's length,
 * or make_id's or ctx_slot's error. */
static int id_slot(fdn_segment *s, const char *id, char v[FDN_CTX_ID_MAX + 1],
		   struct fdn_shm_trace **tr)
{
	int n = make_id(id, v);
	if (n < 0)
		return n;
	int r = ctx_slot(s, tr);
	return r ? r : n;
}

static int set_id(fdn_segment *s, const char *id, bool corr)
{
	char v[FDN_CTX_ID_MAX + 1];
	struct fdn_shm_trace *tr;
	int n = id_slot(s, id, v, &tr);
	if (n < 0)
		return n;
	fdn__trace_write_begin(tr);
	memcpy(corr ? tr->corr : tr->op, v, (size_t)n + 1);
	if (corr)
		tr->corr_len = (uint16_t)n;
	else
		tr->op_len = (uint16_t)n;
	fdn__trace_write_end(tr);
	return 0;
}

int fdn_ctx_set_correlation_id(fdn_segment *s, const char *id)
{
	return set_id(s, id, true);
}

int fdn_ctx_set_operation_id(fdn_segment *s, const char *id)
{
	return set_id(s, id, false);
}

int fdn_ctx_ids(fdn_segment *s, char corr[FDN_CTX_ID_MAX + 1], char op[FDN_CTX_ID_MAX + 1])
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	if (corr)
		memcpy(corr, tr->corr, (size_t)tr->corr_len + 1);
	if (op)
		memcpy(op, tr->op, (size_t)tr->op_len + 1);
	return 0;
}

int fdn_ctx_child(fdn_segment *s, const char *operation)
{
	char v[FDN_CTX_ID_MAX + 1];
	struct fdn_shm_trace *tr;
	int n = id_slot(s, operation, v, &tr);
	if (n < 0)
		return n;
	if (tr->op_len > 0) {
		char parent[FDN_CTX_ID_MAX + 1];
		memcpy(parent, tr->op, (size_t)tr->op_len + 1);
		struct fdn_attr a = {
		    .name = "parent_operation_id", .type = FDN_ATTR_STRING, .v.s = parent};
		int r = fdn_ctx_set(s, &a, 1);
		if (r)
			return r;
	}
	return set_id(s, v, false);
}

void fdn__tr_crumbs_view(const struct fdn_shm_trace *tr, struct fdn_crumb *out, uint32_t *nout)
{
	uint32_t total = tr->ncrumbs, n = total < FDN_CRUMBS_MAX ? total : FDN_CRUMBS_MAX;
	for (uint32_t i = 0; i < n; i++) {
		const struct fdn_shm_crumb *c = &tr->crumbs[(total - n + i) % FDN_CRUMBS_MAX];
		struct fdn_crumb *o = &out[i];
		o->time_real = c->time_real;
		memcpy(o->module, c->module, sizeof(o->module) - 1);
		o->module[sizeof(o->module) - 1] = 0;
		memcpy(o->function, c->function, sizeof(o->function) - 1);
		o->function[sizeof(o->function) - 1] = 0;
		o->attrs_len =
		    c->attrs_len <= FDN_CRUMB_ATTRS_MAX && fdn__tr_attrs_ok(c->attrs, c->attrs_len)
			? c->attrs_len
			: 0;
		memcpy(o->attrs, c->attrs, o->attrs_len);
	}
	*nout = n;
}

int fdn_enrich_error_with(fdn_segment *s, int code, const char *type, const char *message,
			  struct fdn_error_report *out)
{
	if (!out)
		return FDN_EINVAL;
	size_t tl = type ? strnlen(type, FDN_ERROR_TYPE_MAX + 1) : 0;
	if (tl > FDN_ERROR_TYPE_MAX)
		return FDN_EINVAL;
	for (size_t i = 0; i < tl; i++)
		if (type[i] < 0x21 || type[i] > 0x7e)
			return FDN_EINVAL;
	size_t ml = message ? strnlen(message, FDN_ERROR_MESSAGE_MAX + 1) : 0;
	if (ml > FDN_ERROR_MESSAGE_MAX)
		return FDN_ETOOBIG;
	int r = fdn_enrich_error(s, code, out);
	if (r)
		return r;
	memcpy(out->type, type ? type : "", tl);
	out->type[tl] = 0;
	if (message) {
		memcpy(out->text, message, ml);
		out->text[ml] = 0;
		out->message = out->text;
	}
	return 0;
}

int fdn_enrich_error(fdn_segment *s, int code, struct fdn_error_report *out)
{
	if (!out)
		return FDN_EINVAL;
	memset(out, 0, sizeof(*out));
	out->code = code;
	out->message = fdn_strerror(code);
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	memcpy(out->correlation_id, tr->corr, (size_t)tr->corr_len + 1);
	memcpy(out->operation_id, tr->op, (size_t)tr->op_len + 1);
	out->ctx_len = tr->ctx_len;
	memcpy(out->ctx, tr->ctx, tr->ctx_len);
	fdn__tr_crumbs_view(tr, out->crumbs, &out->ncrumbs);
	if (fdn__tr_slot_for(s, FDN__SVC_SPANS, &tr, NULL) == 0 && tr->depth > 0) {
		fdn__tr_hex(out->trace_id, tr->spans[tr->depth - 1].trace_id, 16);
		out->span_id = tr->spans[tr->depth - 1].span_id;
	}
	return 0;
}

/* ---- handing the context over ---------------------------------------------------
 *
 * The binary form (little-endian): version 1; corr_len, corr; op_len, op;
 * u16 ctx_len, ctx; ncrumbs (<= 16, oldest first), each: u64 time_real,
 * module_len, module, function_len, function, u16 attrs_len, attrs; then
 * u32: the low half of XXH3-64 of everything before it.  The text:
 * CTX_PREFIX and the base64url of that (no padding). */

#define CTX_PREFIX     "fdnctx1."
#define CTX_PREFIX_LEN 8u
#define CTX_BIN_MAX                                                                        \
	(1u + 1u + FDN_CTX_ID_MAX + 1u + FDN_CTX_ID_MAX + 2u + FDN_CTX_ATTRS_MAX + 1u +    \
	 FDN_CRUMBS_MAX * (8u + 1u + FDN_CRUMB_MODULE_MAX + 1u + FDN_CRUMB_FUNC_MAX + 2u + \
			   FDN_CRUMB_ATTRS_MAX) +                                          \
	 4u)
static_assert(CTX_PREFIX_LEN + (CTX_BIN_MAX + 2u) / 3u * 4u + 1u <= FDN_CONTEXT_EXPORT_MAX,
	      "export bound");

struct ctx_data {
	char corr[FDN_CTX_ID_MAX + 1], op[FDN_CTX_ID_MAX + 1];
	size_t corr_len, op_len, ctx_len;
	uint8_t ctx[FDN_CTX_ATTRS_MAX];
	uint32_t ncrumbs;
	struct fdn_shm_crumb crumbs[FDN_CRUMBS_MAX];
};

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		if (i + 1 < n)
			out[o++] = b64[v >> 6 & 63];
		if (i + 2 < n)
			out[o++] = b64[v & 63];
	}
	return o;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

/* Decode n characters; the length of the bytes, or -1. */
static long b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
	if (n % 4 == 1)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		size_t k = n - i < 4 ? n - i : 4;
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			int d = j < k ? b64_val(in[i + j]) : 0;
			if (d < 0)
				return -1;
			v = v << 6 | (uint32_t)d;
		}
		size_t bytes = k - 1;
		if (o + bytes > cap)
			return -1;
		for (size_t j = 0; j < bytes; j++)
			out[o++] = (uint8_t)(v >> (16 - 8 * j));
	}
	return (long)o;
}

/* The thread's context out of its slot, as stored (oldest crumb first). */
static void ctx_read(const struct fdn_shm_trace *tr, struct ctx_data *d)
{
	d->corr_len = tr->corr_len <= FDN_CTX_ID_MAX ? tr->corr_len : 0;
	memcpy(d->corr, tr->corr, d->corr_len);
	d->op_len = tr->op_len <= FDN_CTX_ID_MAX ? tr->op_len : 0;
	memcpy(d->op, tr->op, d->op_len);
	d->ctx_len = tr->ctx_len <= FDN_CTX_ATTRS_MAX ? tr->ctx_len : 0;
	memcpy(d->ctx, tr->ctx, d->ctx_len);
	uint32_t total = tr->ncrumbs, n = total < FDN_CRUMBS_MAX ? total : FDN_CRUMBS_MAX;
	for (uint32_t i = 0; i < n; i++)
		d->crumbs[i] = tr->crumbs[(total - n + i) % FDN_CRUMBS_MAX];
	d->ncrumbs = n;
}

static size_t put_bytes(uint8_t *b, size_t o, const void *p, size_t n)
{
	memcpy(b + o, p, n);
	return o + n;
}

static size_t ctx_to_bin(const struct ctx_data *d, uint8_t *b)
{
	size_t o = 0;
	b[o++] = 1;
	b[o++] = (uint8_t)d->corr_len;
	o = put_bytes(b, o, d->corr, d->corr_len);
	b[o++] = (uint8_t)d->op_len;
	o = put_bytes(b, o, d->op, d->op_len);
	b[o++] = (uint8_t)d->ctx_len;
	b[o++] = (uint8_t)(d->ctx_len >> 8);
	o = put_bytes(b, o, d->ctx, d->ctx_len);
	b[o++] = (uint8_t)d->ncrumbs;
	for (uint32_t i = 0; i < d->ncrumbs; i++) {
		const struct fdn_shm_crumb *c = &d->crumbs[i];
		for (int k = 0; k < 8; k++)
			b[o++] = (uint8_t)(c->time_real >> (8 * k));
		size_t ml = strnlen(c->module, FDN_CRUMB_MODULE_MAX);
		size_t fl = strnlen(c->function, FDN_CRUMB_FUNC_MAX);
		size_t al = c->attrs_len <= FDN_CRUMB_ATTRS_MAX ? c->attrs_len : 0;
		b[o++] = (uint8_t)ml;
		o = put_bytes(b, o, c->module, ml);
		b[o++] = (uint8_t)fl;
		o = put_bytes(b, o, c->function, fl);
		b[o++] = (uint8_t)al;
		b[o++] = (uint8_t)(al >> 8);
		o = put_bytes(b, o, c->attrs, al);
	}
	uint32_t check = (uint32_t)XXH3_64bits(b, o);
	for (int k = 0; k < 4; k++)
		b[o++] = (uint8_t)(check >> (8 * k));
	return o;
}

static bool id_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

/* A reader of the binary form: each take checks the bytes are there. */
struct rd {
	const uint8_t *b;
	size_t n, o;
	bool bad;
};

static const uint8_t *take(struct rd *r, size_t k)
{
	if (r->bad || r->n - r->o < k) {
		r->bad = true;
		return NULL;
	}
	const uint8_t *p = r->b + r->o;
	r->o += k;
	return p;
}

static size_t take_len(struct rd *r, int bytes)
{
	const uint8_t *p = take(r, (size_t)bytes);
	if (!p)
		return 0;
	return bytes == 1 ? p[0] : (size_t)p[0] | (size_t)p[1] << 8;
}

/* Parse and check an exported context: 0 or FDN_ECONTEXT. */
static int ctx_decode(const char *text, struct ctx_data *d, uint8_t *bin)
{
	if (!text || strncmp(text, CTX_PREFIX, CTX_PREFIX_LEN) != 0)
		return FDN_ECONTEXT;
	const char *body = text + CTX_PREFIX_LEN;
	size_t tl = strnlen(body, FDN_CONTEXT_EXPORT_MAX);
	if (tl >= FDN_CONTEXT_EXPORT_MAX)
		return FDN_ECONTEXT;
	long bl = b64_decode(body, tl, bin, CTX_BIN_MAX);
	if (bl < 6)
		return FDN_ECONTEXT;
	size_t n = (size_t)bl - 4;
	uint32_t check = (uint32_t)bin[n] | (uint32_t)bin[n + 1] << 8 | (uint32_t)bin[n + 2] << 16 |
			 (uint32_t)bin[n + 3] << 24;
	if (check != (uint32_t)XXH3_64bits(bin, n) || bin[0] != 1)
		return FDN_ECONTEXT;
	struct rd r = {bin, n, 1, false};
	memset(d, 0, sizeof(*d));
	d->corr_len = take_len(&r, 1);
	const uint8_t *p = take(&r, d->corr_len);
	if (r.bad || d->corr_len > FDN_CTX_ID_MAX || !id_ok((const char *)p, d->corr_len))
		return FDN_ECONTEXT;
	memcpy(d->corr, p, d->corr_len);
	d->op_len = take_len(&r, 1);
	p = take(&r, d->op_len);
	if (r.bad || d->op_len > FDN_CTX_ID_MAX || !id_ok((const char *)p, d->op_len))
		return FDN_ECONTEXT;
	memcpy(d->op, p, d->op_len);
	d->ctx_len = take_len(&r, 2);
	p = take(&r, d->ctx_len);
	if (r.bad || d->ctx_len > FDN_CTX_ATTRS_MAX || !fdn__tr_attrs_ok(p, d->ctx_len))
		return FDN_ECONTEXT;
	memcpy(d->ctx, p, d->ctx_len);
	d->ncrumbs = (uint32_t)take_len(&r, 1);
	if (r.bad || d->ncrumbs > FDN_CRUMBS_MAX)
		return FDN_ECONTEXT;
	for (uint32_t i = 0; i < d->ncrumbs; i++) {
		struct fdn_shm_crumb *c = &d->crumbs[i];
		p = take(&r, 8);
		for (int k = 0; p && k < 8; k++)
			c->time_real |= (uint64_t)p[k] << (8 * k);
		size_t ml = take_len(&r, 1);
		const uint8_t *m = take(&r, ml);
		size_t fl = take_len(&r, 1);
		const uint8_t *f = take(&r, fl);
		size_t al = take_len(&r, 2);
		const uint8_t *a = take(&r, al);
		if (r.bad || ml == 0 || ml > FDN_CRUMB_MODULE_MAX || memchr(m, 0, ml) || fl == 0 ||
		    fl > FDN_CRUMB_FUNC_MAX || memchr(f, 0, fl) || al > FDN_CRUMB_ATTRS_MAX ||
		    !fdn__tr_attrs_ok(a, al))
			return FDN_ECONTEXT;
		memcpy(c->module, m, ml);
		memcpy(c->function, f, fl);
		c->attrs_len = (uint16_t)al;
		memcpy(c->attrs, a, al);
	}
	return r.o == n ? 0 : FDN_ECONTEXT;
}

/* Make d the thread's context, in one write. */
static void ctx_write(struct fdn_shm_trace *tr, const struct ctx_data *d)
{
	fdn__trace_write_begin(tr);
	memcpy(tr->corr, d->corr, d->corr_len);
	tr->corr[d->corr_len] = 0;
	tr->corr_len = (uint16_t)d->corr_len;
	memcpy(tr->op, d->op, d->op_len);
	tr->op[d->op_len] = 0;
	tr->op_len = (uint16_t)d->op_len;
	memcpy(tr->ctx, d->ctx, d->ctx_len);
	tr->ctx_len = (uint32_t)d->ctx_len;
	for (uint32_t i = 0; i < d->ncrumbs; i++)
		tr->crumbs[i] = d->crumbs[i];
	tr->ncrumbs = d->ncrumbs;
	fdn__trace_write_end(tr);
}

int fdn_context_export(fdn_segment *s, char *out, size_t cap)
{
	struct fdn_shm_trace *tr;
	int r = ctx_slot(s, &tr);
	if (r)
		return r;
	struct ctx_data *d = malloc(sizeof(*d) + CTX_BIN_MAX);
	if (!d)
		return -ENOMEM;
	uint8_t *bin = (uint8_t *)(d + 1);
	ctx_read(tr, d);
	size_t bl = ctx_to_bin(d, bin);
	size_t need = CTX_PREFIX_LEN + (bl * 4 + 2) / 3;
	if (!out || cap < need + 1) {
		free(d);
		return FDN_ETOOBIG;
	}
	memcpy(out, CTX_PREFIX, CTX_PREFIX_LEN);
	size_t tl = b64_encode(bin, bl, out + CTX_PREFIX_LEN);
	out[CTX_PREFIX_LEN + tl] = 0;
	free(d);
	return (int)(CTX_PREFIX_LEN + tl);
}

int fdn_context_import(fdn_segment *s, const char *text)
{
	struct ctx_data *d = malloc(sizeof(*d) + CTX_BIN_MAX);
	if (!d)
		return -ENOMEM;
	int r = ctx_decode(text, d, (uint8_t *)(d + 1));
	struct fdn_shm_trace *tr;
	if (r == 0 && (r = ctx_slot(s, &tr)) == 0)
		ctx_write(tr, d);
	free(d);
	return r;
}

int fdn_context_setenv(fdn_segment *s)
{
	char *text = malloc(FDN_CONTEXT_EXPORT_MAX);
	if (!text)
		return -ENOMEM;
	int r = fdn_context_export(s, text, FDN_CONTEXT_EXPORT_MAX);
	if (r >= 0)
		r = setenv("FOUNDATION_CONTEXT", text, 1) == 0 ? 0 : -errno;
	free(text);
	return r;
}

static void ctx_env_import(struct fdn_shm_trace *tr)
{
	const char *env = getenv("FOUNDATION_CONTEXT");
	if (!env || !*env)
		return;
	struct ctx_data *d = malloc(sizeof(*d) + CTX_BIN_MAX);
	if (!d)
		return;
	if (ctx_decode(env, d, (uint8_t *)(d + 1)) == 0)
		ctx_write(tr, d);
	free(d);
}
