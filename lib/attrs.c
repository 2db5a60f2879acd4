/*
 * attrs.c - typed attributes: their encoding, its validation and readers,
 * merge, query criteria and the "name=value" parser of foundation/attrs.h.
 *
 * ENCODING FORMAT (the specification; every reader relies on it)
 *
 * All integers are little-endian and unaligned; there is no padding.
 *
 *   offset        size       field
 *   0             2          count: number of attribute records (u16)
 *   2             ...        count records, back to back, in the caller's order
 *
 * Attribute record (5 + name_len + value_len bytes):
 *
 *   0             1          type (u8): 1 STRING, 2 INT, 3 DOUBLE, 4 BOOL, 5 LIST
 *   1             1          name_len (u8): 1..63, the name's bytes without NUL
 *   2             2          value_len (u16): bytes of the value
 *   4             name_len   the name (no NUL among them)
 *   4 + name_len  1          NUL, so that a name can be returned in place
 *   5 + name_len  value_len  the value, by type:
 *
 *   STRING  value_len = strlen + 1, 1..1025: the bytes (no NUL), then one NUL.
 *   INT     value_len = 8: the int64_t, two's complement.
 *   DOUBLE  value_len = 8: the IEEE 754 binary64 bit pattern; finite only
 *           (no NaN, no infinity).
 *   BOOL    value_len = 1: 0 or 1.
 *   LIST    value_len = 2 + sum over the items of (3 + item_len):
 *             u16 n (0..64), then n items, each:
 *             u16 item_len (0..1024, without the NUL), the bytes (no NUL), NUL.
 *
 * The whole encoding is at most FDN_ATTRS_MAX bytes (a record takes at
 * least 7, so count <= 584); names are unique (byte-wise); exactly count
 * records follow the count and nothing after them.  fdn_attrs_validate()
 * accepts exactly these encodings; fdn_attrs_encode() produces them
 * deterministically (same attributes, same order: same bytes).
 *
 * Example: {b = true, t = [x]} is the 21 bytes
 *   02 00 | 04 01 01 00 'b' 00 01 | 05 01 06 00 't' 00 01 00 01 00 'x' 00
 */
#include "lib/internal.h"

#include <foundation/attrs.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HDR_LEN  2u /* the count */
#define REC_HDR  4u /* type, name_len, value_len */
#define REC_MIN  7u /* header, 1-byte name, its NUL, 1-byte value */
#define MAX_RECS ((FDN_ATTRS_MAX - HDR_LEN) / REC_MIN)

/* One record of an encoding, as found by rec_head(). */
struct rec {
	size_t start; /* offset of the record in the encoding */
	size_t size;  /* bytes of the whole record */
	unsigned type;
	size_t nlen;
	size_t vlen;
	const char *name; /* NUL-terminated in the encoding */
	const unsigned char *val;
};

/* ---- little-endian access ------------------------------------------- */

static size_t get16(const unsigned char *b)
{
	return (size_t)b[0] | (size_t)b[1] << 8;
}

static uint64_t get64(const unsigned char *b)
{
	uint64_t v = 0;
	for (unsigned k = 0; k < 8; k++)
		v |= (uint64_t)b[k] << (8 * k);
	return v;
}

static void put16(unsigned char *b, size_t v)
{
	b[0] = (unsigned char)(v & 0xff);
	b[1] = (unsigned char)(v >> 8 & 0xff);
}

static void put64(unsigned char *b, uint64_t v)
{
	for (unsigned k = 0; k < 8; k++)
		b[k] = (unsigned char)(v >> (8 * k) & 0xff);
}

static double get_double(const unsigned char *b)
{
	uint64_t u = get64(b);
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

static int64_t get_int(const unsigned char *b)
{
	uint64_t u = get64(b);
	int64_t i;
	memcpy(&i, &u, sizeof(i));
	return i;
}

/* ---- checks of struct fdn_attr values ------------------------------- */

static bool name_ok(const char *name)
{
	if (!name)
		return false;
	size_t n = strnlen(name, FDN_ATTR_NAME_MAX + 1);
	return n >= 1 && n <= FDN_ATTR_NAME_MAX;
}

static bool str_ok(const char *s)
{
	return s && strnlen(s, FDN_ATTR_STRING_MAX + 1) <= FDN_ATTR_STRING_MAX;
}

/* Encoded bytes of a list value, or 0 if it is not well-formed. */
static size_t list_size(const struct fdn_attr *a)
{
	uint32_t n = a->v.list.n;
	if (n > FDN_ATTR_LIST_MAX || (n > 0 && !a->v.list.items))
		return 0;
	size_t size = 2;
	for (uint32_t k = 0; k < n; k++) {
		if (!str_ok(a->v.list.items[k]))
			return 0;
		size += 3 + strlen(a->v.list.items[k]);
	}
	return size;
}

/* Encoded bytes of a's value, or 0 if the type or value is not well-formed. */
static size_t value_size(const struct fdn_attr *a)
{
	switch (a->type) {
	case FDN_ATTR_STRING: {
		size_t n = a->v.s ? strnlen(a->v.s, FDN_ATTR_STRING_MAX + 1) : SIZE_MAX;
		return n <= FDN_ATTR_STRING_MAX ? n + 1 : 0;
	}
	case FDN_ATTR_INT:
		return 8;
	case FDN_ATTR_DOUBLE:
		return isfinite(a->v.d) ? 8 : 0;
	case FDN_ATTR_BOOL:
		return 1;
	case FDN_ATTR_LIST:
		return list_size(a);
	}
	return 0;
}

/* ---- encoding ------------------------------------------------------- */

/* Is attrs[i]'s name also an earlier one's?  (Names checked: non-empty.) */
static bool name_dup(const struct fdn_attr *attrs, size_t i)
{
	const char *name = attrs[i].name;
	for (size_t j = 0; j < i; j++)
		if (attrs[j].name[0] == name[0] && strcmp(attrs[j].name, name) == 0)
			return true;
	return false;
}

static void put_list(unsigned char *b, const struct fdn_attr *a)
{
	size_t off = 2;
	put16(b, a->v.list.n);
	for (uint32_t k = 0; k < a->v.list.n; k++) {
		size_t len = strlen(a->v.list.items[k]);
		put16(b + off, len);
		memcpy(b + off + 2, a->v.list.items[k], len + 1);
		off += 3 + len;
	}
}

/* a's value, vsize bytes (value_size). */
static void put_value(unsigned char *b, const struct fdn_attr *a, size_t vsize)
{
	uint64_t u;
	switch (a->type) {
	case FDN_ATTR_STRING:
		memcpy(b, a->v.s, vsize);
		break;
	case FDN_ATTR_INT:
		put64(b, (uint64_t)a->v.i);
		break;
	case FDN_ATTR_DOUBLE:
		memcpy(&u, &a->v.d, sizeof(u));
		put64(b, u);
		break;
	case FDN_ATTR_BOOL:
		b[0] = a->v.b ? 1 : 0;
		break;
	case FDN_ATTR_LIST:
		put_list(b, a);
		break;
	}
}

/*
 * Two passes: the first checks every attribute and sizes the whole, so
 * that nothing is written unless all of it is (a bad attribute is
 * FDN_EINVMETA, a short buffer FDN_EINVAL, and buf is left alone); the
 * second writes.  Each name and string is measured once (strnlen,
 * bounded): the first CACHED attributes' lengths are kept for the second
 * pass, later ones measured again.  (Measuring each string three times cost
 * 1 000 instructions to encode a registry event's three short strings.)
 */
#define CACHED 16

/* Name and value lengths of a, or false if it is not well-formed. */
static bool attr_sizes(const struct fdn_attr *a, size_t *nlen, size_t *vsize)
{
	*nlen = a->name ? strnlen(a->name, FDN_ATTR_NAME_MAX + 1) : 0;
	*vsize = *nlen >= 1 && *nlen <= FDN_ATTR_NAME_MAX ? value_size(a) : 0;
	return *vsize != 0;
}

int fdn_attrs_encode(const struct fdn_attr *attrs, size_t n, void *buf, size_t cap)
{
	if ((!attrs && n > 0) || !buf)
		return FDN_EINVAL;
	uint16_t nl[CACHED], vs[CACHED];
	size_t total = HDR_LEN;
	for (size_t i = 0; i < n; i++) {
		size_t nlen, vsize;
		if (!attr_sizes(&attrs[i], &nlen, &vsize))
			return FDN_EINVMETA;
		total += REC_HDR + nlen + 1 + vsize;
		/* Bounds n too (and the duplicate search). */
		if (total > FDN_ATTRS_MAX || name_dup(attrs, i))
			return FDN_EINVMETA;
		if (i < CACHED) {
			nl[i] = (uint16_t)nlen;
			vs[i] = (uint16_t)vsize;
		}
	}
	if (total > cap)
		return FDN_EINVAL;
	unsigned char *b = buf;
	size_t off = HDR_LEN;
	put16(b, n);
	for (size_t i = 0; i < n; i++) {
		const struct fdn_attr *a = &attrs[i];
		size_t nlen, vsize;
		if (i < CACHED)
			nlen = nl[i], vsize = vs[i];
		else
			(void)attr_sizes(a, &nlen, &vsize);
		b[off] = (unsigned char)a->type;
		b[off + 1] = (unsigned char)nlen;
		put16(b + off + 2, vsize);
		memcpy(b + off + REC_HDR, a->name, nlen + 1);
		put_value(b + off + REC_HDR + nlen + 1, a, vsize);
		off += REC_HDR + nlen + 1 + vsize;
	}
	return (int)off;
}

/* ---- parsing an encoding -------------------------------------------- */

/* A string value of vlen bytes: no NUL but the last byte. */
static bool enc_string_ok(const unsigned char *v, size_t vlen)
{
	return vlen >= 1 && vlen <= FDN_ATTR_STRING_MAX + 1 && v[vlen - 1] == 0 &&
	       !memchr(v, 0, vlen - 1);
}

static bool enc_list_ok(const unsigned char *v, size_t vlen)
{
	if (vlen < 2)
		return false;
	size_t n = get16(v), off = 2;
	if (n > FDN_ATTR_LIST_MAX)
		return false;
	for (size_t k = 0; k < n; k++) {
		if (vlen - off < 2)
			return false;
		size_t ilen = get16(v + off);
		if (ilen > FDN_ATTR_STRING_MAX || vlen - off - 2 < ilen + 1 ||
		    !enc_string_ok(v + off + 2, ilen + 1))
			return false;
		off += 3 + ilen;
	}
	return off == vlen;
}

static bool enc_value_ok(unsigned type, const unsigned char *v, size_t vlen)
{
	switch (type) {
	case FDN_ATTR_STRING:
		return enc_string_ok(v, vlen);
	case FDN_ATTR_INT:
		return vlen == 8;
	case FDN_ATTR_DOUBLE:
		return vlen == 8 && isfinite(get_double(v));
	case FDN_ATTR_BOOL:
		return vlen == 1 && v[0] <= 1;
	case FDN_ATTR_LIST:
		return enc_list_ok(v, vlen);
	}
	return false;
}

/* The record at *off (<= len): its lengths fit in len and its name is
 * well-formed (the value is not checked).  Advances *off past it. */
static bool rec_head(const unsigned char *b, size_t len, size_t *off, struct rec *r)
{
	size_t o = *off;
	if (len - o < REC_HDR + 1)
		return false;
	r->type = b[o];
	r->nlen = b[o + 1];
	r->vlen = get16(b + o + 2);
	if (r->nlen < 1 || r->nlen > FDN_ATTR_NAME_MAX || len - o - REC_HDR - 1 < r->nlen + r->vlen)
		return false;
	r->name = (const char *)(b + o + REC_HDR);
	if (memchr(r->name, 0, r->nlen) || b[o + REC_HDR + r->nlen] != 0)
		return false;
	r->val = b + o + REC_HDR + r->nlen + 1;
	r->start = o;
	r->size = REC_HDR + r->nlen + 1 + r->vlen;
	*off = o + r->size;
	return true;
}

/* rec_head() and a well-formed value. */
static bool rec_next(const unsigned char *b, size_t len, size_t *off, struct rec *r)
{
	return rec_head(b, len, off, r) && enc_value_ok(r->type, r->val, r->vlen);
}

static bool rec_named(const struct rec *r, const char *name, size_t nlen)
{
	return r->nlen == nlen && memcmp(r->name, name, nlen) == 0;
}

/* Is the name of r also the name of one of the records at starts[0..n)? */
static bool name_seen(const unsigned char *b, const uint16_t *starts, size_t n, const struct rec *r)
{
	for (size_t j = 0; j < n; j++) {
		const unsigned char *h = b + starts[j];
		if (h[1] == r->nlen && memcmp(h + REC_HDR, r->name, r->nlen) == 0)
			return true;
	}
	return false;
}

int fdn_attrs_validate(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint16_t starts[MAX_RECS];
	if (!b || len < HDR_LEN || len > FDN_ATTRS_MAX)
		return FDN_EINVMETA;
	size_t count = get16(b), off = HDR_LEN;
	if (count > MAX_RECS)
		return FDN_EINVMETA;
	for (size_t i = 0; i < count; i++) {
		struct rec r;
		if (!rec_next(b, len, &off, &r) || name_seen(b, starts, i, &r))
			return FDN_EINVMETA;
		starts[i] = (uint16_t)r.start;
	}
	return off == len ? 0 : FDN_EINVMETA;
}

/* ---- readers -------------------------------------------------------- */

uint32_t fdn_attrs_count(const void *p, size_t len)
{
	return p && len >= HDR_LEN ? (uint32_t)get16(p) : 0;
}

/* Record i, its value checked too. */
static bool rec_at(const unsigned char *b, size_t len, uint32_t i, struct rec *r)
{
	if (!b || len < HDR_LEN || i >= get16(b))
		return false;
	size_t off = HDR_LEN;
	for (uint32_t k = 0; k < i; k++)
		if (!rec_head(b, len, &off, r))
			return false;
	return rec_next(b, len, &off, r);
}

/* The record called name[0..nlen), its value checked too. */
static bool rec_find(const unsigned char *b, size_t len, const char *name, size_t nlen,
		     struct rec *r)
{
	if (!b || len < HDR_LEN)
		return false;
	size_t count = get16(b), off = HDR_LEN;
	for (size_t k = 0; k < count; k++) {
		if (!rec_head(b, len, &off, r))
			return false;
		if (rec_named(r, name, nlen))
			return enc_value_ok(r->type, r->val, r->vlen);
	}
	return false;
}

static void rec_to_attr(const struct rec *r, struct fdn_attr *out)
{
	memset(out, 0, sizeof(*out));
	out->name = r->name;
	out->type = (enum fdn_attr_type)r->type;
	switch (r->type) {
	case FDN_ATTR_STRING:
		out->v.s = (const char *)r->val;
		break;
	case FDN_ATTR_INT:
		out->v.i = get_int(r->val);
		break;
	case FDN_ATTR_DOUBLE:
		out->v.d = get_double(r->val);
		break;
	case FDN_ATTR_BOOL:
		out->v.b = r->val[0] != 0;
		break;
	case FDN_ATTR_LIST:
		out->v.list.items = NULL;
		out->v.list.n = (uint32_t)get16(r->val);
		break;
	}
}

int fdn_attrs_at(const void *p, size_t len, uint32_t i, struct fdn_attr *out)
{
	struct rec r;
	if (!out || !rec_at(p, len, i, &r))
		return FDN_ENOTFOUND;
	rec_to_attr(&r, out);
	return 0;
}

int fdn__attrs_next(const void *p, size_t len, size_t *off, struct fdn_attr *out)
{
	const unsigned char *b = p;
	struct rec r;
	if (!b || len < HDR_LEN || *off < HDR_LEN || *off > len || !rec_head(b, len, off, &r))
		return FDN_ENOTFOUND;
	if (!enc_value_ok(r.type, r.val, r.vlen))
		return FDN_EINVMETA;
	rec_to_attr(&r, out);
	return 0;
}

int fdn_attrs_get(const void *p, size_t len, const char *name, struct fdn_attr *out)
{
	struct rec r;
	if (!out || !name || !rec_find(p, len, name, strnlen(name, FDN_ATTR_NAME_MAX + 1), &r))
		return FDN_ENOTFOUND;
	rec_to_attr(&r, out);
	return 0;
}

/* Item k of the list whose record has the name `name` (in an encoding):
 * the record header is just before the name, the value just after it. */
static const char *enc_list_item(const char *name, uint32_t k)
{
	const unsigned char *h = (const unsigned char *)name - REC_HDR;
	size_t nlen = h[1], vlen = get16(h + 2);
	if (h[0] != FDN_ATTR_LIST || nlen < 1 || nlen > FDN_ATTR_NAME_MAX ||
	    h[REC_HDR + nlen] != 0 || vlen < 2)
		return NULL;
	const unsigned char *v = h + REC_HDR + nlen + 1;
	size_t off = 2;
	if (k >= get16(v))
		return NULL;
	for (uint32_t j = 0;; j++) {
		if (vlen - off < 2)
			return NULL;
		size_t ilen = get16(v + off);
		if (vlen - off - 2 < ilen + 1 || v[off + 2 + ilen] != 0)
			return NULL;
		if (j == k)
			return (const char *)(v + off + 2);
		off += 3 + ilen;
	}
}

const char *fdn_attrs_list_item(const struct fdn_attr *list, uint32_t k)
{
	if (!list || list->type != FDN_ATTR_LIST || k >= list->v.list.n)
		return NULL;
	if (list->v.list.items) /* built by the caller */
		return list->v.list.items[k];
	return list->name ? enc_list_item(list->name, k) : NULL;
}

/* ---- merge ---------------------------------------------------------- */

/* Copy (if out) the merged records of two validated encodings (len 0: no
 * attributes); returns the size of the merged encoding, sets *count. */
static size_t merge_into(const unsigned char *base, size_t blen, const unsigned char *upd,
			 size_t ulen, unsigned char *out, size_t *count)
{
	size_t total = HDR_LEN, off = HDR_LEN, n = 0;
	struct rec r, u;
	for (size_t k = 0; blen && k < get16(base); k++, n++) {
		if (!rec_head(base, blen, &off, &r))
			break;
		const struct rec *src = rec_find(upd, ulen, r.name, r.nlen, &u) ? &u : &r;
		if (out)
			memcpy(out + total, src->name - REC_HDR, src->size);
		total += src->size;
	}
	off = HDR_LEN;
	for (size_t k = 0; ulen && k < get16(upd); k++) {
		if (!rec_head(upd, ulen, &off, &u))
			break;
		if (rec_find(base, blen, u.name, u.nlen, &r))
			continue;
		if (out)
			memcpy(out + total, upd + u.start, u.size);
		total += u.size;
		n++;
	}
	*count = n;
	return total;
}

int fdn_attrs_merge(const void *base, size_t blen, const void *upd, size_t ulen, void *buf,
		    size_t cap)
{
	size_t count;
	if ((!base && blen > 0) || (!upd && ulen > 0) || !buf)
		return FDN_EINVAL;
	if ((blen > 0 && fdn_attrs_validate(base, blen) != 0) ||
	    (ulen > 0 && fdn_attrs_validate(upd, ulen) != 0))
		return FDN_EINVMETA;
	size_t total = merge_into(base, blen, upd, ulen, NULL, &count);
	if (total > FDN_ATTRS_MAX)
		return FDN_EINVMETA;
	if (total > cap)
		return FDN_EINVAL;
	merge_into(base, blen, upd, ulen, buf, &count);
	put16(buf, count);
	return (int)total;
}

/* ---- criteria ------------------------------------------------------- */

static bool crit_ok(const struct fdn_criterion *c)
{
	enum fdn_attr_type t = c->value.type;
	if (!name_ok(c->name) || value_size(&c->value) == 0)
		return false;
	switch (c->op) {
	case FDN_CMP_EQ:
	case FDN_CMP_NEQ:
		return true;
	case FDN_CMP_GT:
	case FDN_CMP_LT:
	case FDN_CMP_GTE:
	case FDN_CMP_LTE:
		return t != FDN_ATTR_BOOL && t != FDN_ATTR_LIST;
	case FDN_CMP_IN:
	case FDN_CMP_NOT_IN:
		return t == FDN_ATTR_LIST;
	}
	return false;
}

int fdn_criteria_validate(const struct fdn_criterion *c, size_t n)
{
	if (!c && n > 0)
		return FDN_EINVCRIT;
	for (size_t i = 0; i < n; i++)
		if (!crit_ok(&c[i]))
			return FDN_EINVCRIT;
	return 0;
}

static bool is_num(const struct fdn_attr *a)
{
	return a->type == FDN_ATTR_INT || a->type == FDN_ATTR_DOUBLE;
}

static int sign(int v)
{
	return (v > 0) - (v < 0);
}

/* Exact comparison of an integer and a (finite) double: -1, 0 or 1. */
static int cmp_int_double(int64_t i, double d)
{
	if (d >= 9223372036854775808.0) /* 2^63 */
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	int64_t t = (int64_t)d; /* in range: truncates toward zero */
	if (i != t)
		return i < t ? -1 : 1;
	double frac = d - (double)t; /* exact */
	return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_num(const struct fdn_attr *a, const struct fdn_attr *b)
{
	if (a->type == FDN_ATTR_INT && b->type == FDN_ATTR_INT)
		return (a->v.i > b->v.i) - (a->v.i < b->v.i);
	if (a->type == FDN_ATTR_DOUBLE && b->type == FDN_ATTR_DOUBLE)
		return (a->v.d > b->v.d) - (a->v.d < b->v.d);
	if (a->type == FDN_ATTR_INT)
		return cmp_int_double(a->v.i, b->v.d);
	return -cmp_int_double(b->v.i, a->v.d);
}

/* Order attribute a against value v: false if they are not comparable. */
static bool ordered(const struct fdn_attr *a, const struct fdn_attr *v, int *r)
{
	if (is_num(a) && is_num(v)) {
		*r = cmp_num(a, v);
		return true;
	}
	if (a->type == FDN_ATTR_STRING && v->type == FDN_ATTR_STRING) {
		*r = sign(strcmp(a->v.s, v->v.s));
		return true;
	}
	return false;
}

static bool list_has(const struct fdn_attr *list, const char *s)
{
	for (uint32_t k = 0; k < list->v.list.n; k++) {
		const char *item = fdn_attrs_list_item(list, k);
		if (!item)
			return false;
		if (strcmp(item, s) == 0)
			return true;
	}
	return false;
}

static bool lists_equal(const struct fdn_attr *a, const struct fdn_attr *b)
{
	if (a->v.list.n != b->v.list.n)
		return false;
	for (uint32_t k = 0; k < a->v.list.n; k++) {
		const char *x = fdn_attrs_list_item(a, k), *y = fdn_attrs_list_item(b, k);
		if (!x || !y || strcmp(x, y) != 0)
			return false;
	}
	return true;
}

/* EQ of attribute a and criterion value v: numbers by value, strings
 * byte-wise, a string value is in a list attribute, a list value has the
 * same items in the same order; any other pair of types is unequal. */
static bool attr_eq(const struct fdn_attr *a, const struct fdn_attr *v)
{
	int r;
	switch (v->type) {
	case FDN_ATTR_STRING:
		if (a->type == FDN_ATTR_LIST)
			return list_has(a, v->v.s);
		return ordered(a, v, &r) && r == 0;
	case FDN_ATTR_INT:
	case FDN_ATTR_DOUBLE:
		return ordered(a, v, &r) && r == 0;
	case FDN_ATTR_BOOL:
		return a->type == FDN_ATTR_BOOL && a->v.b == v->v.b;
	case FDN_ATTR_LIST:
		return a->type == FDN_ATTR_LIST && lists_equal(a, v);
	}
	return false;
}

/* IN of attribute a and the list v. */
static bool attr_in(const struct fdn_attr *a, const struct fdn_attr *v)
{
	if (a->type == FDN_ATTR_STRING)
		return list_has(v, a->v.s);
	if (a->type != FDN_ATTR_LIST)
		return false;
	for (uint32_t k = 0; k < a->v.list.n; k++) {
		const char *item = fdn_attrs_list_item(a, k);
		if (!item)
			return false;
		if (list_has(v, item))
			return true;
	}
	return false;
}

static bool crit_holds(const struct fdn_criterion *c, const void *p, size_t len)
{
	struct fdn_attr a;
	int r;
	if (!crit_ok(c))
		return false;
	if (fdn_attrs_get(p, len, c->name, &a) != 0)
		return c->op == FDN_CMP_NEQ || c->op == FDN_CMP_NOT_IN;
	switch (c->op) {
	case FDN_CMP_EQ:
		return attr_eq(&a, &c->value);
	case FDN_CMP_NEQ:
		return !attr_eq(&a, &c->value);
	case FDN_CMP_GT:
		return ordered(&a, &c->value, &r) && r > 0;
	case FDN_CMP_LT:
		return ordered(&a, &c->value, &r) && r < 0;
	case FDN_CMP_GTE:
		return ordered(&a, &c->value, &r) && r >= 0;
	case FDN_CMP_LTE:
		return ordered(&a, &c->value, &r) && r <= 0;
	case FDN_CMP_IN:
		return attr_in(&a, &c->value);
	case FDN_CMP_NOT_IN:
		return !attr_in(&a, &c->value);
	}
	return false;
}

bool fdn_criteria_match(const struct fdn_criterion *c, size_t n, const void *attrs, size_t len)
{
	if (!c && n > 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!crit_holds(&c[i], attrs, len))
			return false;
	return true;
}

/* ---- "name=value" --------------------------------------------------- */

/* Only these characters may make a number: no spaces, hex, inf or nan. */
static bool numeric_chars(const char *s)
{
	return s[0] != '\0' && s[strspn(s, "0123456789+-.eE")] == '\0';
}

static bool attr_int(const char *s, int64_t *out)
{
	char *end;
	if (!numeric_chars(s))
		return false;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

static bool attr_double(const char *s, double *out)
{
	char *end;
	if (!numeric_chars(s))
		return false;
	double d = strtod(s, &end);
	if (*end != '\0' || !isfinite(d))
		return false;
	*out = d;
	return true;
}

/* "[...]": items split on commas; text is changed only once all is checked. */
static int parse_list(char *s, size_t len, struct fdn_attr *a, const char **items, uint32_t cap)
{
	char *in = s + 1, *end = s + len - 1;
	uint32_t n = 0;
	size_t item = 0;
	for (char *q = in; q < end && n <= FDN_ATTR_LIST_MAX; q++) {
		n += q == in;
		n += *q == ',';
		item = *q == ',' ? 0 : item + 1;
		if (item > FDN_ATTR_STRING_MAX)
			return FDN_EINVMETA;
	}
	if (n > FDN_ATTR_LIST_MAX || n > cap || (n > 0 && !items))
		return FDN_EINVMETA;
	*end = '\0';
	for (uint32_t k = 0; k < n; k++) {
		items[k] = in;
		in += strcspn(in, ",");
		*in++ = '\0';
	}
	a->type = FDN_ATTR_LIST;
	a->v.list.items = items;
	a->v.list.n = n;
	return 0;
}

static int parse_value(char *s, struct fdn_attr *a, const char **items, uint32_t cap)
{
	size_t len = strlen(s);
	if (attr_int(s, &a->v.i)) {
		a->type = FDN_ATTR_INT;
	} else if (attr_double(s, &a->v.d)) {
		a->type = FDN_ATTR_DOUBLE;
	} else if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
		a->type = FDN_ATTR_BOOL;
		a->v.b = s[0] == 't';
	} else if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
		return parse_list(s, len, a, items, cap);
	} else {
		if (len > FDN_ATTR_STRING_MAX)
			return FDN_EINVMETA;
		a->type = FDN_ATTR_STRING;
		a->v.s = s;
	}
	return 0;
}

int fdn_attr_parse(char *text, struct fdn_attr *out, const char **items, uint32_t items_cap)
{
	struct fdn_attr a;
	if (!text || !out)
		return FDN_EINVMETA;
	char *eq = strchr(text, '=');
	size_t nlen = eq ? (size_t)(eq - text) : 0;
	if (nlen < 1 || nlen > FDN_ATTR_NAME_MAX)
		return FDN_EINVMETA;
	memset(&a, 0, sizeof(a));
	a.name = text;
	int rc = parse_value(eq + 1, &a, items, items_cap);
	if (rc != 0)
		return rc;
	*eq = '\0';
	*out = a;
	return 0;
}
