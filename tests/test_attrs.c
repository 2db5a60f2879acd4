/*
 * test_attrs.c - typed attributes: encoding round trips and exact bytes,
 * every rule of the format (encode refuses, validate rejects, damaged
 * encodings never crash a reader), merge, criteria and "name=value".
 */
#include <criterion/criterion.h>
#include <foundation/attrs.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* clang-format off */
#define AS(n, x)     {.name = (n), .type = FDN_ATTR_STRING, .v.s = (x)}
#define AI(n, x)     {.name = (n), .type = FDN_ATTR_INT, .v.i = (x)}
#define AD(n, x)     {.name = (n), .type = FDN_ATTR_DOUBLE, .v.d = (x)}
#define AB(n, x)     {.name = (n), .type = FDN_ATTR_BOOL, .v.b = (x)}
#define AL(nm, a, k) {.name = (nm), .type = FDN_ATTR_LIST, .v.list = {.items = (a), .n = (k)}}
/* clang-format on */
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define BAD      FDN_EINVMETA

/* A NUL-terminated string of n copies of c, to free. */
static char *rep(char c, size_t n)
{
	char *s = malloc(n + 1);
	cr_assert_not_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static int encode(const struct fdn_attr *a, size_t n, unsigned char *buf)
{
	return fdn_attrs_encode(a, n, buf, FDN_ATTRS_MAX);
}

/* encode must refuse with `want` and leave the buffer alone. */
static void refuse(const struct fdn_attr *a, size_t n, size_t cap, int want)
{
	unsigned char buf[FDN_ATTRS_MAX + 16];
	memset(buf, 0xa5, sizeof(buf));
	cr_assert_eq(fdn_attrs_encode(a, n, buf, cap), want);
	for (size_t k = 0; k < sizeof(buf); k++)
		cr_assert_eq(buf[k], 0xa5, "byte %zu written on failure", k);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

/* ---- the sample encoding of the format, byte by byte -------------------- */

static const char *const XE[] = {"x", ""};
static const struct fdn_attr sample[] = {
    AI("a", -2), AS("s", "hi"), AB("b", true), AL("l", XE, 2), AD("d", 1.0),
};
static const unsigned char sample_bytes[] = {
    5, 0,                                                                  /* count */
    2, 1, 8, 0, 'a', 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,    /* @2 */
    1, 1, 3, 0, 's', 0, 'h',  'i',  0,                                     /* @16 */
    4, 1, 1, 0, 'b', 0, 1,                                                 /* @25 */
    5, 1, 9, 0, 'l', 0, 2,    0,    1,    0,    'x',  0,    0,    0,    0, /* @32 */
    3, 1, 8, 0, 'd', 0, 0,    0,    0,    0,    0,    0,    0xf0, 0x3f,    /* @47 */
};

Test(attrs, exact_bytes_of_the_format)
{
	unsigned char buf[FDN_ATTRS_MAX];
	int len = encode(sample, NELEM(sample), buf);
	cr_assert_eq(len, (int)sizeof(sample_bytes));
	cr_assert_arr_eq(buf, sample_bytes, sizeof(sample_bytes));
	cr_assert_eq(fdn_attrs_validate(sample_bytes, sizeof(sample_bytes)), 0);

	unsigned char empty[4] = {0xff, 0xff, 0xff, 0xff};
	cr_assert_eq(fdn_attrs_encode(NULL, 0, empty, sizeof(empty)), 2);
	cr_assert_eq(empty[0], 0);
	cr_assert_eq(empty[1], 0);
	cr_assert_eq(empty[2], 0xff);
	cr_assert_eq(fdn_attrs_validate(empty, 2), 0);
	cr_assert_eq(fdn_attrs_count(empty, 2), 0);
}

Test(attrs, deterministic)
{
	unsigned char b1[FDN_ATTRS_MAX], b2[FDN_ATTRS_MAX];
	memset(b1, 1, sizeof(b1));
	memset(b2, 2, sizeof(b2));
	int l1 = encode(sample, NELEM(sample), b1), l2 = encode(sample, NELEM(sample), b2);
	cr_assert_eq(l1, l2);
	cr_assert_arr_eq(b1, b2, (size_t)l1);

	struct fdn_attr swapped[NELEM(sample)];
	memcpy(swapped, sample, sizeof(sample));
	swapped[0] = sample[1];
	swapped[1] = sample[0];
	cr_assert_eq(encode(swapped, NELEM(swapped), b2), l1);
	cr_assert_neq(memcmp(b1, b2, (size_t)l1), 0, "order is part of the encoding");
}

/* ---- round trips ------------------------------------------------------ */

static void assert_same(const struct fdn_attr *got, const struct fdn_attr *want)
{
	cr_assert_str_eq(got->name, want->name);
	cr_assert_eq(got->type, want->type, "%s: type", want->name);
	switch (want->type) {
	case FDN_ATTR_STRING:
		cr_assert_str_eq(got->v.s, want->v.s);
		break;
	case FDN_ATTR_INT:
		cr_assert_eq(got->v.i, want->v.i);
		break;
	case FDN_ATTR_DOUBLE:
		cr_assert_eq(memcmp(&got->v.d, &want->v.d, sizeof(double)), 0, "%s", want->name);
		break;
	case FDN_ATTR_BOOL:
		cr_assert_eq(got->v.b, want->v.b);
		break;
	case FDN_ATTR_LIST:
		cr_assert_null(got->v.list.items);
		cr_assert_eq(got->v.list.n, want->v.list.n);
		for (uint32_t k = 0; k < want->v.list.n; k++)
			cr_assert_str_eq(fdn_attrs_list_item(got, k), want->v.list.items[k]);
		cr_assert_null(fdn_attrs_list_item(got, want->v.list.n));
		break;
	}
}

static void round_trip(const struct fdn_attr *a, size_t n)
{
	unsigned char buf[FDN_ATTRS_MAX];
	int len = encode(a, n, buf);
	cr_assert_geq(len, 2, "encode: %d", len);
	cr_assert_eq(fdn_attrs_validate(buf, (size_t)len), 0);
	cr_assert_eq(fdn_attrs_count(buf, (size_t)len), n);
	for (size_t i = 0; i < n; i++) {
		struct fdn_attr got, byname;
		cr_assert_eq(fdn_attrs_at(buf, (size_t)len, (uint32_t)i, &got), 0);
		assert_same(&got, &a[i]);
		cr_assert_eq(fdn_attrs_get(buf, (size_t)len, a[i].name, &byname), 0);
		assert_same(&byname, &a[i]);
		cr_assert_eq(byname.name, got.name);
	}
}

Test(attrs, round_trip_every_type)
{
	static const char *const none[1] = {NULL};
	static const char *const abc[] = {"alpha", "", "γ"};
	const char *items64[FDN_ATTR_LIST_MAX];
	for (unsigned k = 0; k < FDN_ATTR_LIST_MAX; k++)
		items64[k] = k % 2 ? "odd" : "e";
	char *s1024 = rep('q', FDN_ATTR_STRING_MAX);
	char *n63 = rep('n', FDN_ATTR_NAME_MAX);
	const struct fdn_attr a[] = {
	    AS("str", "hello, wörld"),
	    AS("empty", ""),
	    AS("long", s1024),
	    AI("zero", 0),
	    AI("min", INT64_MIN),
	    AI("max", INT64_MAX),
	    AI("neg", -1234567890123),
	    AD("pi", 3.141592653589793),
	    AD("negzero", -0.0),
	    AD("huge", DBL_MAX),
	    AD("tiny", DBL_TRUE_MIN),
	    AD("negsmall", -1e-300),
	    AB("yes", true),
	    AB("no", false),
	    AL("nolist", none, 0),
	    AL("abc", abc, 3),
	    AL("sixtyfour", items64, FDN_ATTR_LIST_MAX),
	    AI(n63, 63),
	};
	round_trip(a, NELEM(a));
	round_trip(a, 0);
	round_trip(sample, NELEM(sample));
	free(s1024);
	free(n63);
}

/* ---- encode refuses every bad input ----------------------------------- */

Test(attrs, encode_rejects_bad_names)
{
	char *n64 = rep('n', FDN_ATTR_NAME_MAX + 1), *n63 = rep('n', FDN_ATTR_NAME_MAX);
	const struct fdn_attr empty[] = {AI("", 1)}, null[] = {AI(NULL, 1)},
			      long64[] = {AI(n64, 1)}, ok63[] = {AI(n63, 1)};
	refuse(empty, 1, FDN_ATTRS_MAX, BAD);
	refuse(null, 1, FDN_ATTRS_MAX, BAD);
	refuse(long64, 1, FDN_ATTRS_MAX, BAD);
	unsigned char buf[FDN_ATTRS_MAX];
	cr_assert_eq(encode(ok63, 1, buf), 2 + 5 + 63 + 8);

	const struct fdn_attr dup[] = {AI("a", 1), AB("b", true), AS("a", "x")};
	refuse(dup, 3, FDN_ATTRS_MAX, BAD);
	refuse(dup, 3, 0, BAD);
	cr_assert_eq(encode(dup, 2, buf), 2 + 14 + 7);
	const struct fdn_attr similar[] = {AI("a", 1), AI("A", 1), AI("aa", 1)};
	cr_assert_eq(encode(similar, 3, buf), 2 + 14 + 14 + 15);
	free(n64);
	free(n63);
}

Test(attrs, encode_rejects_bad_values)
{
	char *s1025 = rep('s', FDN_ATTR_STRING_MAX + 1);
	static const char *const null_item[] = {"a", NULL};
	const char *items65[FDN_ATTR_LIST_MAX + 1];
	for (unsigned k = 0; k <= FDN_ATTR_LIST_MAX; k++)
		items65[k] = "i";
	const char *long_item[] = {s1025};
	struct fdn_attr bad[] = {
	    AS("s", s1025),
	    AS("s", NULL),
	    AD("d", NAN),
	    AD("d", -NAN),
	    AD("d", INFINITY),
	    AD("d", -INFINITY),
	    AL("l", items65, FDN_ATTR_LIST_MAX + 1),
	    AL("l", NULL, 1),
	    AL("l", null_item, 2),
	    AL("l", long_item, 1),
	    AI("t", 0),
	    AI("t", 0),
	};
	bad[10].type = (enum fdn_attr_type)0;
	bad[11].type = (enum fdn_attr_type)6;
	for (size_t k = 0; k < NELEM(bad); k++) {
		const struct fdn_attr one[] = {AB("ok", true), bad[k]};
		refuse(one, 2, FDN_ATTRS_MAX, BAD);
	}
	/* The limits themselves are fine. */
	unsigned char buf[FDN_ATTRS_MAX];
	s1025[FDN_ATTR_STRING_MAX] = '\0';
	const struct fdn_attr s1024[] = {AS("s", s1025)};
	cr_assert_eq(encode(s1024, 1, buf), 2 + 5 + 1 + 1025);
	const struct fdn_attr l64[] = {AL("l", items65, FDN_ATTR_LIST_MAX)};
	cr_assert_eq(encode(l64, 1, buf), 2 + 5 + 1 + 2 + FDN_ATTR_LIST_MAX * 4);
	const struct fdn_attr l1024[] = {AL("l", long_item, 1)};
	cr_assert_eq(encode(l1024, 1, buf), 2 + 5 + 1 + 2 + 3 + 1024);
	free(s1025);
}

Test(attrs, encode_total_limit)
{
	/* 3 records of 1031 bytes + one of 5 + 1 + 995 = exactly 4096. */
	char *s1024 = rep('x', 1024), *rest = rep('y', 994);
	struct fdn_attr a[] = {AS("a", s1024), AS("b", s1024), AS("c", s1024), AS("d", rest)};
	unsigned char buf[FDN_ATTRS_MAX];
	cr_assert_eq(encode(a, 4, buf), (int)FDN_ATTRS_MAX);
	cr_assert_eq(fdn_attrs_validate(buf, FDN_ATTRS_MAX), 0);
	char *more = rep('y', 995);
	a[3].v.s = more;
	refuse(a, 4, FDN_ATTRS_MAX + 16, BAD);
	a[3].v.s = s1024;
	refuse(a, 4, FDN_ATTRS_MAX + 16, BAD);

	/* Many small attributes: 585 records of 7 bytes are too many. */
	enum { MANY = 600 };
	static char names[MANY][4];
	static struct fdn_attr many[MANY];
	for (int k = 0; k < MANY; k++) {
		snprintf(names[k], sizeof(names[k]), "%c%c", 'A' + k / 40, 'A' + k % 40);
		many[k] = (struct fdn_attr)AB(names[k], k & 1);
	}
	/* Records of 8 bytes with 2-byte names: 511 fit (4090 bytes), 512 not. */
	cr_assert_eq(encode(many, 511, buf), 4090);
	refuse(many, 512, FDN_ATTRS_MAX + 16, BAD);
	refuse(many, MANY, FDN_ATTRS_MAX + 16, BAD);
	free(s1024);
	free(rest);
	free(more);
}

Test(attrs, encode_argument_errors)
{
	unsigned char buf[FDN_ATTRS_MAX];
	refuse(NULL, 1, FDN_ATTRS_MAX, FDN_EINVAL);
	cr_assert_eq(fdn_attrs_encode(sample, NELEM(sample), NULL, 100), FDN_EINVAL);
	refuse(sample, NELEM(sample), sizeof(sample_bytes) - 1, FDN_EINVAL);
	refuse(NULL, 0, 1, FDN_EINVAL);
	cr_assert_eq(fdn_attrs_encode(sample, NELEM(sample), buf, sizeof(sample_bytes)),
		     (int)sizeof(sample_bytes));
}

/* ---- validate: every rule, on damaged copies of the sample ------------ */

/* validate() of the sample with bytes at off replaced by v[0..n). */
static int validate_patched(size_t off, const unsigned char *v, size_t n)
{
	unsigned char b[sizeof(sample_bytes)];
	memcpy(b, sample_bytes, sizeof(b));
	memcpy(b + off, v, n);
	return fdn_attrs_validate(b, sizeof(b));
}

#define PATCH(off, ...)                                               \
	validate_patched((off), (const unsigned char[]){__VA_ARGS__}, \
			 sizeof((const unsigned char[]){__VA_ARGS__}))

Test(attrs, validate_rejects_each_rule)
{
	cr_assert_eq(PATCH(0, 5), 0);    /* control: unchanged */
	cr_assert_eq(PATCH(29, 'c'), 0); /* control: "b" renamed "c" */
	cr_assert_eq(PATCH(0, 6), BAD);  /* count too big */
	cr_assert_eq(PATCH(0, 4), BAD);  /* count too small: trailing */
	cr_assert_eq(PATCH(0, 0), BAD);
	cr_assert_eq(PATCH(0, 5, 1), BAD);        /* 261 */
	cr_assert_eq(PATCH(2, 0), BAD);           /* type 0 */
	cr_assert_eq(PATCH(2, 6), BAD);           /* type 6 */
	cr_assert_eq(PATCH(2, 3), BAD);           /* INT -2 read as a DOUBLE: a NaN */
	cr_assert_eq(PATCH(3, 0), BAD);           /* name_len 0 */
	cr_assert_eq(PATCH(3, 2), BAD);           /* name_len 2 */
	cr_assert_eq(PATCH(6, 0), BAD);           /* NUL inside the name */
	cr_assert_eq(PATCH(7, 'z'), BAD);         /* no NUL after the name */
	cr_assert_eq(PATCH(4, 7), BAD);           /* INT of 7 bytes */
	cr_assert_eq(PATCH(4, 9), BAD);           /* INT of 9 bytes */
	cr_assert_eq(PATCH(18, 2), BAD);          /* STRING value_len 2 */
	cr_assert_eq(PATCH(18, 4), BAD);          /* STRING value_len 4 */
	cr_assert_eq(PATCH(22, 0), BAD);          /* NUL inside a string */
	cr_assert_eq(PATCH(24, 'j'), BAD);        /* string without its NUL */
	cr_assert_eq(PATCH(31, 2), BAD);          /* bool 2 */
	cr_assert_eq(PATCH(31, 0xff), BAD);       /* bool 255 */
	cr_assert_eq(PATCH(31, 0), 0);            /* bool 0 */
	cr_assert_eq(PATCH(27, 2), BAD);          /* BOOL of 2 bytes */
	cr_assert_eq(PATCH(27, 0), BAD);          /* BOOL of 0 bytes */
	cr_assert_eq(PATCH(29, 'a'), BAD);        /* duplicate name "a" */
	cr_assert_eq(PATCH(36, 's'), BAD);        /* duplicate name "s" */
	cr_assert_eq(PATCH(38, 3), BAD);          /* list claims 3 items */
	cr_assert_eq(PATCH(38, 1), BAD);          /* list claims 1 item: 3 bytes left */
	cr_assert_eq(PATCH(38, 65), BAD);         /* list of 65 */
	cr_assert_eq(PATCH(40, 2), BAD);          /* item longer than the list */
	cr_assert_eq(PATCH(40, 0), BAD);          /* item shorter: NUL misplaced */
	cr_assert_eq(PATCH(42, 0), BAD);          /* NUL inside an item */
	cr_assert_eq(PATCH(43, 'q'), BAD);        /* item without its NUL */
	cr_assert_eq(PATCH(46, 'q'), BAD);        /* empty item without its NUL */
	cr_assert_eq(PATCH(34, 8), BAD);          /* LIST value_len 8 */
	cr_assert_eq(PATCH(34, 10), BAD);         /* LIST value_len 10 */
	cr_assert_eq(PATCH(59, 0xf8, 0x7f), BAD); /* NaN */
	cr_assert_eq(PATCH(59, 0xf0, 0x7f), BAD); /* +inf */
	cr_assert_eq(PATCH(59, 0xf0, 0xff), BAD); /* -inf */
	cr_assert_eq(PATCH(59, 0xef, 0x7f), 0);   /* DBL_MAX-ish: finite */
	cr_assert_eq(PATCH(53, 1, 0, 0, 0, 0, 0, 0xf0, 0x7f), BAD); /* NaN payload */
	cr_assert_eq(PATCH(49, 0, 1), BAD);                         /* DOUBLE value_len 256 */
}

/* count 1, one BOOL record whose name has nlen bytes. */
static int validate_named(size_t nlen)
{
	unsigned char b[2 + 5 + 255 + 1] = {1, 0, FDN_ATTR_BOOL, (unsigned char)nlen, 1, 0};
	memset(b + 6, 'n', nlen);
	b[6 + nlen] = 0;
	b[7 + nlen] = 1;
	return fdn_attrs_validate(b, 8 + nlen);
}

/* count 1, one STRING record "s" of slen bytes. */
static int validate_string(size_t slen)
{
	static unsigned char b[2 + 6 + 2000];
	size_t vlen = slen + 1;
	unsigned char h[] = {
	    1, 0, FDN_ATTR_STRING, 1, (unsigned char)vlen, (unsigned char)(vlen >> 8), 's', 0};
	memcpy(b, h, sizeof(h));
	memset(b + 8, 'v', slen);
	b[8 + slen] = 0;
	return fdn_attrs_validate(b, 8 + vlen);
}

/* count 1, one LIST record "l" of n items "i". */
static int validate_list(size_t n)
{
	static unsigned char b[2 + 6 + 2 + 4 * 300];
	size_t vlen = 2 + 4 * n;
	unsigned char h[] = {1,
			     0,
			     FDN_ATTR_LIST,
			     1,
			     (unsigned char)vlen,
			     (unsigned char)(vlen >> 8),
			     'l',
			     0,
			     (unsigned char)n,
			     (unsigned char)(n >> 8)};
	memcpy(b, h, sizeof(h));
	for (size_t k = 0; k < n; k++)
		memcpy(b + 10 + 4 * k, (const unsigned char[]){1, 0, 'i', 0}, 4);
	return fdn_attrs_validate(b, 8 + vlen);
}

Test(attrs, validate_limits)
{
	cr_assert_eq(validate_named(1), 0);
	cr_assert_eq(validate_named(63), 0);
	cr_assert_eq(validate_named(64), BAD);
	cr_assert_eq(validate_named(255), BAD);
	cr_assert_eq(validate_string(0), 0);
	cr_assert_eq(validate_string(1024), 0);
	cr_assert_eq(validate_string(1025), BAD);
	cr_assert_eq(validate_string(1999), BAD);
	cr_assert_eq(validate_list(0), 0);
	cr_assert_eq(validate_list(64), 0);
	cr_assert_eq(validate_list(255), 0);
	cr_assert_eq(validate_list(256), BAD);
	cr_assert_eq(validate_list(300), BAD);

	unsigned char empty[2] = {0, 0};
	cr_assert_eq(fdn_attrs_validate(empty, 2), 0);
	cr_assert_eq(fdn_attrs_validate(empty, 1), BAD);
	cr_assert_eq(fdn_attrs_validate(empty, 0), BAD);
	cr_assert_eq(fdn_attrs_validate(NULL, 0), BAD);
	cr_assert_eq(fdn_attrs_validate(NULL, 2), BAD);

	/* More than FDN_ATTRS_MAX bytes, whatever they hold. */
	static unsigned char big[FDN_ATTRS_MAX + 1];
	cr_assert_eq(fdn_attrs_validate(big, sizeof(big)), BAD);
	cr_assert_eq(fdn_attrs_validate(big, FDN_ATTRS_MAX), BAD); /* trailing zeros */
}

/* Exact-size heap copy, so that a read past the end is a real overrun. */
static unsigned char *copy(const unsigned char *p, size_t len)
{
	unsigned char *c = malloc(len ? len : 1);
	cr_assert_not_null(c);
	memcpy(c, p, len);
	return c;
}

Test(attrs, validate_rejects_truncation_and_extension)
{
	for (size_t len = 0; len < sizeof(sample_bytes); len++) {
		unsigned char *c = copy(sample_bytes, len);
		cr_assert_eq(fdn_attrs_validate(c, len), BAD, "truncated to %zu", len);
		free(c);
	}
	unsigned char ext[sizeof(sample_bytes) + 8];
	memcpy(ext, sample_bytes, sizeof(sample_bytes));
	for (size_t extra = 1; extra <= 8; extra++) {
		for (unsigned v = 0; v < 256; v += 51) {
			memset(ext + sizeof(sample_bytes), (int)v, extra);
			cr_assert_eq(fdn_attrs_validate(ext, sizeof(sample_bytes) + extra), BAD);
		}
	}
}

/* Whatever validate says about p, the readers must not crash; when it
 * accepts, decoding and re-encoding gives the very same bytes (validate
 * accepts only what encode produces). */
static int exercise(const unsigned char *p, size_t len)
{
	int v = fdn_attrs_validate(p, len);
	cr_assert(v == 0 || v == BAD, "validate: %d", v);
	uint32_t n = fdn_attrs_count(p, len);
	static struct fdn_attr a[600];
	static const char *items[600][FDN_ATTR_LIST_MAX];
	size_t got = 0;
	for (uint32_t i = 0; i < n + 1 && i < 600; i++) {
		struct fdn_attr x, y;
		if (fdn_attrs_at(p, len, i, &x) != 0)
			continue;
		int g = fdn_attrs_get(p, len, x.name, &y);
		cr_assert(v != 0 || g == 0, "get(%s): %d", x.name, g);
		cr_assert_not_null(x.name);
		for (uint32_t k = 0; x.type == FDN_ATTR_LIST && k <= x.v.list.n; k++) {
			const char *it = fdn_attrs_list_item(&x, k);
			if (k < FDN_ATTR_LIST_MAX)
				items[got][k] = it;
			cr_assert(k < x.v.list.n || it == NULL);
		}
		if (x.type == FDN_ATTR_LIST)
			x.v.list.items = items[got];
		a[got++] = x;
	}
	if (v != 0)
		return v;
	cr_assert_eq(got, n);
	unsigned char re[FDN_ATTRS_MAX];
	cr_assert_eq(encode(a, got, re), (int)len);
	cr_assert_arr_eq(re, p, len);
	return v;
}

Test(attrs, validate_every_byte_flipped)
{
	size_t len = sizeof(sample_bytes), accepted = 0;
	for (size_t off = 0; off < len; off++) {
		for (unsigned v = 0; v < 256; v++) {
			unsigned char *c = copy(sample_bytes, len);
			c[off] = (unsigned char)v;
			accepted += exercise(c, len) == 0;
			free(c);
		}
	}
	/* The values that keep it valid, per byte: any for the 8 bytes of the
	 * INT and the 7 low bytes of the DOUBLE 1.0 (15 * 256), 254 for its
	 * top byte (0x7f, 0xff make an infinity), any but NUL for the string
	 * and item letters (3 * 255), any but NUL and the 4 other names for a
	 * name (5 * 251), 0 or 1 for the bool (2), DOUBLE or INT for the last
	 * type (2), and only the original for the 35 other bytes. */
	cr_assert_eq(accepted, 15 * 256 + 254 + 3 * 255 + 5 * 251 + 2 + 2 + 35);
}

Test(attrs, validate_random_garbage)
{
	int accepted = 0;
	for (int round = 0; round < 20000; round++) {
		size_t len = rnd() % 200;
		unsigned char *c = malloc(len + 1);
		cr_assert_not_null(c);
		for (size_t k = 0; k < len; k++)
			c[k] = (unsigned char)rnd();
		if (len >= 2 && round % 2) /* plausible counts */
			c[0] = (unsigned char)(rnd() % 8), c[1] = 0;
		accepted += exercise(c, len) == 0;
		free(c);
	}
	/* Random damage to a valid encoding, several bytes at a time. */
	for (int round = 0; round < 20000; round++) {
		size_t len = sizeof(sample_bytes) - rnd() % 3;
		unsigned char *c = copy(sample_bytes, len);
		for (unsigned k = rnd() % 4 + 1; k > 0; k--)
			c[rnd() % len] = (unsigned char)(rnd() % 4 == 0 ? rnd() : rnd() % 12);
		accepted += exercise(c, len) == 0;
		free(c);
	}
	/* Some were accepted: exercise() re-encoded them byte for byte. */
	cr_assert_gt(accepted, 500);
}

/* ---- readers ---------------------------------------------------------- */

Test(attrs, readers)
{
	unsigned char buf[FDN_ATTRS_MAX];
	int len = encode(sample, NELEM(sample), buf);
	size_t n = (size_t)len;
	struct fdn_attr a;
	cr_assert_eq(fdn_attrs_count(buf, n), 5);
	cr_assert_eq(fdn_attrs_count(NULL, 0), 0);
	cr_assert_eq(fdn_attrs_count(buf, 1), 0);

	cr_assert_eq(fdn_attrs_at(buf, n, 5, &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_at(buf, n, UINT32_MAX, &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_at(NULL, 0, 0, &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_get(buf, n, "zz", &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_get(buf, n, "", &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_get(buf, n, NULL, &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_get(buf, n, "ss", &a), FDN_ENOTFOUND);

	/* Names and strings point into the encoding, NUL-terminated there. */
	cr_assert_eq(fdn_attrs_at(buf, n, 1, &a), 0);
	cr_assert_eq((const unsigned char *)a.name, buf + 2 + 14 + 4);
	cr_assert_eq((const unsigned char *)a.v.s, buf + 2 + 14 + 6);
	cr_assert_eq(fdn_attrs_get(buf, n, "l", &a), 0);
	cr_assert_eq(a.type, FDN_ATTR_LIST);
	cr_assert_null(a.v.list.items);
	cr_assert_eq(a.v.list.n, 2);
	cr_assert_eq((const unsigned char *)fdn_attrs_list_item(&a, 0), buf + 42);
	cr_assert_str_eq(fdn_attrs_list_item(&a, 0), "x");
	cr_assert_str_eq(fdn_attrs_list_item(&a, 1), "");
	cr_assert_null(fdn_attrs_list_item(&a, 2));
	cr_assert_null(fdn_attrs_list_item(&a, UINT32_MAX));
	cr_assert_null(fdn_attrs_list_item(NULL, 0));

	cr_assert_eq(fdn_attrs_get(buf, n, "s", &a), 0);
	cr_assert_null(fdn_attrs_list_item(&a, 0), "not a list");

	/* A list built by the caller. */
	static const char *const ab[] = {"a", "b"};
	const struct fdn_attr mine = AL("m", ab, 2);
	cr_assert_str_eq(fdn_attrs_list_item(&mine, 1), "b");
	cr_assert_null(fdn_attrs_list_item(&mine, 2));

	/* A too-short length is never read past. */
	cr_assert_eq(fdn_attrs_at(buf, 30, 2, &a), FDN_ENOTFOUND);
	cr_assert_eq(fdn_attrs_at(buf, 30, 1, &a), 0);
	cr_assert_eq(fdn_attrs_get(buf, 30, "d", &a), FDN_ENOTFOUND);
}

/* ---- merge ------------------------------------------------------------ */

static int enc_into(const struct fdn_attr *a, size_t n, unsigned char *buf)
{
	int len = encode(a, n, buf);
	cr_assert_geq(len, 2);
	return len;
}

static void assert_merge(const struct fdn_attr *b, size_t nb, const struct fdn_attr *u, size_t nu,
			 const struct fdn_attr *want, size_t nw)
{
	unsigned char bb[FDN_ATTRS_MAX], ub[FDN_ATTRS_MAX], wb[FDN_ATTRS_MAX], out[FDN_ATTRS_MAX];
	int bl = enc_into(b, nb, bb), ul = enc_into(u, nu, ub), wl = enc_into(want, nw, wb);
	int ml = fdn_attrs_merge(bb, (size_t)bl, ub, (size_t)ul, out, sizeof(out));
	cr_assert_eq(ml, wl, "merge: %d, want %d", ml, wl);
	cr_assert_arr_eq(out, wb, (size_t)wl);
	cr_assert_eq(fdn_attrs_validate(out, (size_t)ml), 0);
}

Test(attrs, merge_replace_keep_add)
{
	const struct fdn_attr base[] = {AI("a", 1), AS("b", "x"), AB("c", true)};
	const struct fdn_attr upd[] = {AS("d", "new"), AI("b", 2), AB("c", true)};
	const struct fdn_attr want[] = {AI("a", 1), AI("b", 2), AB("c", true), AS("d", "new")};
	assert_merge(base, 3, upd, 3, want, 4);
	assert_merge(base, 3, upd, 0, base, 3);  /* nothing to update */
	assert_merge(base, 0, upd, 3, upd, 3);   /* nothing to keep */
	assert_merge(base, 3, base, 3, base, 3); /* same attributes */
	assert_merge(sample, 5, base, 3,
		     (const struct fdn_attr[]){AI("a", 1), AS("s", "hi"), AS("b", "x"),
					       AL("l", XE, 2), AD("d", 1.0), AB("c", true)},
		     6);
	static const char *const z[] = {"z"};
	const struct fdn_attr upd2[] = {AL("a", z, 1)};
	const struct fdn_attr want2[] = {AL("a", z, 1), AS("b", "x"), AB("c", true)};
	assert_merge(base, 3, upd2, 1, want2, 3);

	/* A length of 0 is an empty set too. */
	unsigned char ub[FDN_ATTRS_MAX], out[FDN_ATTRS_MAX];
	int ul = enc_into(upd, 3, ub);
	cr_assert_eq(fdn_attrs_merge(NULL, 0, ub, (size_t)ul, out, sizeof(out)), ul);
	cr_assert_arr_eq(out, ub, (size_t)ul);
	cr_assert_eq(fdn_attrs_merge(ub, (size_t)ul, NULL, 0, out, sizeof(out)), ul);
	cr_assert_arr_eq(out, ub, (size_t)ul);
	cr_assert_eq(fdn_attrs_merge(NULL, 0, NULL, 0, out, sizeof(out)), 2);
	cr_assert_eq(out[0], 0);
	cr_assert_eq(out[1], 0);
}

Test(attrs, merge_errors)
{
	char *s1024 = rep('x', 1024);
	const struct fdn_attr base[] = {AS("a", s1024), AS("b", s1024), AS("c", s1024)};
	const struct fdn_attr add[] = {AS("d", s1024)};
	const struct fdn_attr repl[] = {AS("a", s1024), AI("b", 1)};
	unsigned char bb[FDN_ATTRS_MAX], ab[FDN_ATTRS_MAX], rb[FDN_ATTRS_MAX];
	static unsigned char out[FDN_ATTRS_MAX + 100];
	int bl = enc_into(base, 3, bb), al = enc_into(add, 1, ab), rl = enc_into(repl, 2, rb);

	cr_assert_eq(fdn_attrs_merge(bb, (size_t)bl, ab, (size_t)al, out, sizeof(out)), BAD);
	int ml = fdn_attrs_merge(bb, (size_t)bl, rb, (size_t)rl, out, sizeof(out));
	cr_assert_eq(ml, bl - 1024 - 1 + 8, "replacing does not grow");
	cr_assert_eq(fdn_attrs_merge(bb, (size_t)bl, rb, (size_t)rl, out, (size_t)ml - 1),
		     FDN_EINVAL);
	cr_assert_eq(fdn_attrs_merge(bb, (size_t)bl, rb, (size_t)rl, NULL, 4096), FDN_EINVAL);
	cr_assert_eq(fdn_attrs_merge(NULL, 5, rb, (size_t)rl, out, sizeof(out)), FDN_EINVAL);
	cr_assert_eq(fdn_attrs_merge(bb, (size_t)bl, NULL, 5, out, sizeof(out)), FDN_EINVAL);

	/* Damaged inputs. */
	cr_assert_eq(fdn_attrs_merge(bb, (size_t)bl - 1, rb, (size_t)rl, out, sizeof(out)), BAD);
	cr_assert_eq(fdn_attrs_merge(bb, (size_t)bl, rb, 1, out, sizeof(out)), BAD);
	unsigned char bad[sizeof(sample_bytes)];
	memcpy(bad, sample_bytes, sizeof(bad));
	bad[31] = 7; /* bool 7 */
	cr_assert_eq(fdn_attrs_merge(bad, sizeof(bad), rb, (size_t)rl, out, sizeof(out)), BAD);
	free(s1024);
}

/* ---- criteria --------------------------------------------------------- */

static const char *const L_XYZ[] = {"x", "y", "z"};
static const char *const L_XY[] = {"x", "y"};
static const char *const L_ZYX[] = {"z", "y", "x"};
static const char *const L_ALPHA_BETA[] = {"alpha", "beta"};
static const char *const L_ALPHA[] = {"alpha"};
static const char *const L_BETA[] = {"beta"};
static const char *const L_AZ[] = {"a", "z"};
static const char *const L_AB[] = {"a", "b"};
static const char *const L_X[] = {"x"};
static const char *const L_10[] = {"10"};
static const char *const L_TRUE[] = {"true"};

static const struct fdn_attr crit_attrs[] = {
    AS("s", "beta"),
    AI("i", 10),
    AD("d", 2.5),
    AB("b", true),
    AL("l", L_XYZ, 3),
    AL("e", NULL, 0),
    AI("big", 9007199254740993), /* 2^53 + 1: not a double */
    AI("max", INT64_MAX),
    AI("min", INT64_MIN),
    AD("negzero", -0.0),
};

struct row {
	const char *name;
	enum fdn_cmp op;
	struct fdn_attr value;
	bool want;
	int line;
};

/* clang-format off */
#define ROW(n, op, v, want) {(n), FDN_CMP_##op, v, (want), __LINE__}
/* clang-format on */
#define VS(x) AS(NULL, x)
#define VI(x) AI(NULL, x)
#define VD(x) AD(NULL, x)
#define VB(x) AB(NULL, x)
#define VL(a) AL(NULL, a, NELEM(a))

static const struct row rows[] = {
    /* STRING "beta" */
    ROW("s", EQ, VS("beta"), true), ROW("s", EQ, VS("alpha"), false),
    ROW("s", EQ, VS("Beta"), false), ROW("s", EQ, VI(1), false), ROW("s", EQ, VB(true), false),
    ROW("s", EQ, VL(L_BETA), false), ROW("s", NEQ, VS("beta"), false),
    ROW("s", NEQ, VS("alpha"), true), ROW("s", NEQ, VI(1), true), ROW("s", GT, VS("alpha"), true),
    ROW("s", GT, VS("beta"), false), ROW("s", GT, VS("gamma"), false),
    ROW("s", GT, VS("Beta"), true), /* 'b' > 'B' */
    ROW("s", GT, VS("bet"), true), ROW("s", GT, VS(""), true), ROW("s", GT, VI(1), false),
    ROW("s", LT, VS("gamma"), true), ROW("s", LT, VS("betaa"), true),
    ROW("s", LT, VS("beta"), false), ROW("s", LT, VS("alpha"), false), ROW("s", LT, VD(1e9), false),
    ROW("s", GTE, VS("beta"), true), ROW("s", GTE, VS("gamma"), false),
    ROW("s", GTE, VS("alpha"), true), ROW("s", LTE, VS("beta"), true),
    ROW("s", LTE, VS("alpha"), false), ROW("s", LTE, VS("gamma"), true),
    ROW("s", IN, VL(L_ALPHA_BETA), true), ROW("s", IN, VL(L_ALPHA), false),
    ROW("s", IN, AL(NULL, NULL, 0), false), ROW("s", NOT_IN, VL(L_ALPHA), true),
    ROW("s", NOT_IN, VL(L_BETA), false),
    /* INT 10 */
    ROW("i", EQ, VI(10), true), ROW("i", EQ, VI(11), false), ROW("i", EQ, VD(10.0), true),
    ROW("i", EQ, VD(10.5), false), ROW("i", EQ, VS("10"), false), ROW("i", EQ, VB(true), false),
    ROW("i", NEQ, VI(10), false), ROW("i", NEQ, VD(10.0), false), ROW("i", NEQ, VI(-10), true),
    ROW("i", NEQ, VS("10"), true), ROW("i", GT, VI(9), true), ROW("i", GT, VI(10), false),
    ROW("i", GT, VI(-100), true), ROW("i", GT, VD(9.5), true), ROW("i", GT, VD(10.0), false),
    ROW("i", GT, VS("a"), false), ROW("i", LT, VI(11), true), ROW("i", LT, VI(10), false),
    ROW("i", LT, VI(-3), false), ROW("i", LT, VD(10.5), true), ROW("i", LT, VD(10.0), false),
    ROW("i", GTE, VI(10), true), ROW("i", GTE, VI(11), false), ROW("i", GTE, VD(10.0), true),
    ROW("i", GTE, VD(10.5), false), ROW("i", LTE, VI(10), true), ROW("i", LTE, VI(9), false),
    ROW("i", LTE, VD(9.99), false), ROW("i", LTE, VD(10.01), true), ROW("i", IN, VL(L_10), false),
    ROW("i", NOT_IN, VL(L_10), true),
    /* DOUBLE 2.5 */
    ROW("d", EQ, VD(2.5), true), ROW("d", EQ, VD(2.4), false), ROW("d", EQ, VI(2), false),
    ROW("d", EQ, VS("2.5"), false), ROW("d", NEQ, VD(2.5), false), ROW("d", NEQ, VI(2), true),
    ROW("d", NEQ, VS("2.5"), true), ROW("d", GT, VI(2), true), ROW("d", GT, VI(3), false),
    ROW("d", GT, VD(2.4), true), ROW("d", GT, VD(2.5), false), ROW("d", GT, VS("a"), false),
    ROW("d", LT, VI(3), true), ROW("d", LT, VI(2), false), ROW("d", LT, VD(2.5), false),
    ROW("d", LT, VD(-1e300), false), ROW("d", GTE, VD(2.5), true), ROW("d", GTE, VD(2.6), false),
    ROW("d", GTE, VI(2), true), ROW("d", LTE, VD(2.5), true), ROW("d", LTE, VI(2), false),
    ROW("d", LTE, VI(3), true), ROW("d", IN, VL(L_ALPHA), false),
    ROW("d", NOT_IN, VL(L_ALPHA), true), ROW("negzero", EQ, VD(0.0), true),
    ROW("negzero", EQ, VI(0), true), ROW("negzero", LT, VI(0), false),
    ROW("negzero", GTE, VI(0), true),
    /* BOOL true */
    ROW("b", EQ, VB(true), true), ROW("b", EQ, VB(false), false), ROW("b", EQ, VI(1), false),
    ROW("b", EQ, VS("true"), false), ROW("b", NEQ, VB(false), true), ROW("b", NEQ, VB(true), false),
    ROW("b", NEQ, VI(1), true), ROW("b", GT, VS("a"), false), ROW("b", LT, VI(5), false),
    ROW("b", GTE, VD(0.0), false), ROW("b", LTE, VI(1), false), ROW("b", IN, VL(L_TRUE), false),
    ROW("b", NOT_IN, VL(L_TRUE), true),
    /* LIST [x, y, z] */
    ROW("l", EQ, VS("y"), true), ROW("l", EQ, VS("x"), true), ROW("l", EQ, VS("w"), false),
    ROW("l", EQ, VS(""), false), ROW("l", NEQ, VS("y"), false), ROW("l", NEQ, VS("w"), true),
    ROW("l", EQ, VL(L_XYZ), true), ROW("l", EQ, VL(L_XY), false), ROW("l", EQ, VL(L_ZYX), false),
    ROW("l", NEQ, VL(L_XYZ), false), ROW("l", NEQ, VL(L_XY), true), ROW("l", EQ, VI(1), false),
    ROW("l", NEQ, VI(1), true), ROW("l", GT, VS("a"), false), ROW("l", LT, VS("zz"), false),
    ROW("l", GTE, VI(0), false), ROW("l", LTE, VD(1.0), false), ROW("l", IN, VL(L_AZ), true),
    ROW("l", IN, VL(L_AB), false), ROW("l", IN, AL(NULL, NULL, 0), false),
    ROW("l", NOT_IN, VL(L_AZ), false), ROW("l", NOT_IN, VL(L_AB), true),
    ROW("e", EQ, VS("x"), false), ROW("e", NEQ, VS("x"), true),
    ROW("e", EQ, AL(NULL, NULL, 0), true), ROW("e", EQ, VL(L_X), false),
    ROW("e", IN, VL(L_X), false), ROW("e", NOT_IN, VL(L_X), true),
    /* Integers beyond a double's precision compare exactly. */
    ROW("big", EQ, VD(9007199254740992.0), false), ROW("big", NEQ, VD(9007199254740992.0), true),
    ROW("big", GT, VD(9007199254740992.0), true), ROW("big", LT, VD(9007199254740994.0), true),
    ROW("big", EQ, VI(9007199254740993), true), ROW("max", LT, VD(9223372036854775808.0), true),
    ROW("max", EQ, VD(9223372036854775808.0), false),
    ROW("max", GT, VD(9223372036854774784.0), true), ROW("max", LT, VD(1e300), true),
    ROW("min", EQ, VD(-9223372036854775808.0), true),
    ROW("min", GT, VD(-9223372036854775808.0), false),
    ROW("min", GTE, VD(-9223372036854775808.0), true), ROW("min", GT, VD(-1e300), true),
    ROW("min", LT, VI(INT64_MIN + 1), true),
    /* An absent attribute satisfies only NEQ and NOT_IN. */
    ROW("none", EQ, VS("x"), false), ROW("none", EQ, VI(0), false), ROW("none", EQ, VL(L_X), false),
    ROW("none", NEQ, VS("x"), true), ROW("none", NEQ, VB(true), true),
    ROW("none", NEQ, VD(0.0), true), ROW("none", GT, VI(1), false), ROW("none", LT, VI(1), false),
    ROW("none", GTE, VS(""), false), ROW("none", LTE, VD(1.0), false),
    ROW("none", IN, VL(L_X), false), ROW("none", NOT_IN, VL(L_X), true),
    ROW("S", EQ, VS("beta"), false), /* names are case-sensitive */
};

static void crit_buf(unsigned char *buf, size_t *len)
{
	int l = encode(crit_attrs, NELEM(crit_attrs), buf);
	cr_assert_geq(l, 2);
	*len = (size_t)l;
}

Test(criteria, every_op_on_every_type)
{
	unsigned char buf[FDN_ATTRS_MAX];
	size_t len;
	crit_buf(buf, &len);
	for (size_t k = 0; k < NELEM(rows); k++) {
		const struct row *r = &rows[k];
		struct fdn_criterion c = {.name = r->name, .op = r->op, .value = r->value};
		cr_assert_eq(fdn_criteria_validate(&c, 1), 0, "line %d: invalid", r->line);
		bool got = fdn_criteria_match(&c, 1, buf, len);
		cr_expect_eq(got, r->want, "line %d: %s op %d: got %d", r->line, r->name,
			     (int)r->op, got);
	}
}

Test(criteria, all_must_hold)
{
	unsigned char buf[FDN_ATTRS_MAX];
	size_t len;
	crit_buf(buf, &len);
	struct fdn_criterion c[] = {
	    {.name = "s", .op = FDN_CMP_EQ, .value = VS("beta")},
	    {.name = "i", .op = FDN_CMP_GTE, .value = VD(9.5)},
	    {.name = "l", .op = FDN_CMP_IN, .value = VL(L_AZ)},
	    {.name = "none", .op = FDN_CMP_NOT_IN, .value = VL(L_AZ)},
	};
	cr_assert_eq(fdn_criteria_validate(c, 4), 0);
	cr_assert(fdn_criteria_match(c, 4, buf, len));
	cr_assert(fdn_criteria_match(c, 0, buf, len));
	cr_assert(fdn_criteria_match(NULL, 0, buf, len));
	c[1].value.v.d = 10.5;
	cr_assert_not(fdn_criteria_match(c, 4, buf, len));
	cr_assert(fdn_criteria_match(c, 1, buf, len));

	/* An empty attribute set: only NEQ and NOT_IN hold. */
	unsigned char empty[2] = {0, 0};
	cr_assert_not(fdn_criteria_match(c, 1, empty, 2));
	struct fdn_criterion neq = {.name = "s", .op = FDN_CMP_NEQ, .value = VS("beta")};
	cr_assert(fdn_criteria_match(&neq, 1, empty, 2));
	cr_assert(fdn_criteria_match(&c[3], 1, empty, 2));
}

Test(criteria, validate_errors)
{
	char *n64 = rep('n', 64);
	const char *items65[FDN_ATTR_LIST_MAX + 1];
	for (unsigned k = 0; k <= FDN_ATTR_LIST_MAX; k++)
		items65[k] = "i";
	const struct fdn_criterion bad[] = {
	    {.name = "a", .op = (enum fdn_cmp)0, .value = VI(1)},
	    {.name = "a", .op = (enum fdn_cmp)99, .value = VI(1)},
	    {.name = "a", .op = (enum fdn_cmp)9, .value = VL(L_X)},
	    {.name = "a", .op = FDN_CMP_IN, .value = VS("x")},
	    {.name = "a", .op = FDN_CMP_NOT_IN, .value = VI(1)},
	    {.name = "a", .op = FDN_CMP_IN, .value = VB(true)},
	    {.name = "a", .op = FDN_CMP_GT, .value = VB(true)},
	    {.name = "a", .op = FDN_CMP_LT, .value = VB(false)},
	    {.name = "a", .op = FDN_CMP_GTE, .value = VL(L_X)},
	    {.name = "a", .op = FDN_CMP_LTE, .value = VL(L_X)},
	    {.name = NULL, .op = FDN_CMP_EQ, .value = VI(1)},
	    {.name = "", .op = FDN_CMP_EQ, .value = VI(1)},
	    {.name = n64, .op = FDN_CMP_EQ, .value = VI(1)},
	    {.name = "a", .op = FDN_CMP_EQ, .value = VD(NAN)},
	    {.name = "a", .op = FDN_CMP_GT, .value = VD(INFINITY)},
	    {.name = "a", .op = FDN_CMP_EQ, .value = VS(NULL)},
	    {.name = "a", .op = FDN_CMP_IN, .value = AL(NULL, items65, FDN_ATTR_LIST_MAX + 1)},
	    {.name = "a", .op = FDN_CMP_IN, .value = AL(NULL, NULL, 2)},
	    {.name = "a", .op = FDN_CMP_EQ, .value = {.type = (enum fdn_attr_type)7}},
	};
	unsigned char buf[FDN_ATTRS_MAX];
	size_t len;
	crit_buf(buf, &len);
	for (size_t k = 0; k < NELEM(bad); k++) {
		struct fdn_criterion two[2] = {{.name = "s", .op = FDN_CMP_EQ, .value = VS("beta")},
					       bad[k]};
		cr_assert_eq(fdn_criteria_validate(&bad[k], 1), FDN_EINVCRIT, "case %zu", k);
		cr_assert_eq(fdn_criteria_validate(two, 2), FDN_EINVCRIT, "case %zu", k);
		cr_assert_eq(fdn_criteria_validate(two, 1), 0);
		/* Used anyway: never a match (and never a crash). */
		cr_assert_not(fdn_criteria_match(&bad[k], 1, buf, len), "case %zu", k);
	}
	cr_assert_eq(fdn_criteria_validate(NULL, 1), FDN_EINVCRIT);
	cr_assert_eq(fdn_criteria_validate(NULL, 0), 0);
	const struct fdn_criterion good[] = {
	    {.name = "a", .op = FDN_CMP_EQ, .value = VL(L_X)},
	    {.name = "a", .op = FDN_CMP_NEQ, .value = VB(false)},
	    {.name = "a", .op = FDN_CMP_GT, .value = VS("x")},
	    {.name = "a", .op = FDN_CMP_LTE, .value = VD(-1.5)},
	    {.name = "a", .op = FDN_CMP_IN, .value = AL(NULL, NULL, 0)},
	    {.name = "a", .op = FDN_CMP_NOT_IN, .value = AL(NULL, items65, 64)},
	};
	cr_assert_eq(fdn_criteria_validate(good, NELEM(good)), 0);
	free(n64);
}

/* ---- "name=value" ----------------------------------------------------- */

static struct fdn_attr parse_ok(char *text, const char **items, uint32_t cap)
{
	struct fdn_attr a;
	char *eq = strchr(text, '=');
	int r = fdn_attr_parse(text, &a, items, cap);
	cr_assert_eq(r, 0, "parse: %d", r);
	cr_assert_eq(a.name, text);
	cr_assert_eq(*eq, '\0', "name terminated in place");
	unsigned char buf[FDN_ATTRS_MAX];
	cr_assert_geq(encode(&a, 1, buf), 2, "a parsed attribute encodes");
	return a;
}

#define PARSE(lit) parse_ok((char[]){lit}, items, NELEM(items))

Test(parse, each_form)
{
	const char *items[FDN_ATTR_LIST_MAX];
	struct fdn_attr a;

	a = PARSE("n=42");
	cr_assert_str_eq(a.name, "n");
	cr_assert_eq(a.type, FDN_ATTR_INT);
	cr_assert_eq(a.v.i, 42);
	a = PARSE("count=-7");
	cr_assert_str_eq(a.name, "count");
	cr_assert_eq(a.type, FDN_ATTR_INT);
	cr_assert_eq(a.v.i, -7);
	a = PARSE("n=+5");
	cr_assert_eq(a.type, FDN_ATTR_INT);
	cr_assert_eq(a.v.i, 5);
	a = PARSE("n=007");
	cr_assert_eq(a.type, FDN_ATTR_INT);
	cr_assert_eq(a.v.i, 7);
	a = PARSE("n=9223372036854775807");
	cr_assert_eq(a.type, FDN_ATTR_INT);
	cr_assert_eq(a.v.i, INT64_MAX);
	a = PARSE("n=-9223372036854775808");
	cr_assert_eq(a.type, FDN_ATTR_INT);
	cr_assert_eq(a.v.i, INT64_MIN);

	a = PARSE("n=0.5");
	cr_assert_eq(a.type, FDN_ATTR_DOUBLE);
	cr_assert_eq(a.v.d, 0.5);
	a = PARSE("n=-1e3");
	cr_assert_eq(a.type, FDN_ATTR_DOUBLE);
	cr_assert_eq(a.v.d, -1000.0);
	a = PARSE("n=.25");
	cr_assert_eq(a.type, FDN_ATTR_DOUBLE);
	cr_assert_eq(a.v.d, 0.25);
	a = PARSE("n=99999999999999999999"); /* too big for an integer */
	cr_assert_eq(a.type, FDN_ATTR_DOUBLE);
	cr_assert_eq(a.v.d, 1e20);

	a = PARSE("flag=true");
	cr_assert_eq(a.type, FDN_ATTR_BOOL);
	cr_assert_eq(a.v.b, true);
	a = PARSE("flag=false");
	cr_assert_eq(a.type, FDN_ATTR_BOOL);
	cr_assert_eq(a.v.b, false);

	a = PARSE("tags=[a,b,c]");
	cr_assert_eq(a.type, FDN_ATTR_LIST);
	cr_assert_eq(a.v.list.items, items);
	cr_assert_eq(a.v.list.n, 3);
	cr_assert_str_eq(items[0], "a");
	cr_assert_str_eq(items[1], "b");
	cr_assert_str_eq(items[2], "c");
	a = PARSE("tags=[]");
	cr_assert_eq(a.type, FDN_ATTR_LIST);
	cr_assert_eq(a.v.list.n, 0);
	a = PARSE("tags=[solo]");
	cr_assert_eq(a.type, FDN_ATTR_LIST);
	cr_assert_eq(a.v.list.n, 1);
	cr_assert_str_eq(items[0], "solo");
	a = PARSE("tags=[a,,b ,]");
	cr_assert_eq(a.type, FDN_ATTR_LIST);
	cr_assert_eq(a.v.list.n, 4);
	cr_assert_str_eq(items[0], "a");
	cr_assert_str_eq(items[1], "");
	cr_assert_str_eq(items[2], "b ");
	cr_assert_str_eq(items[3], "");
	a = PARSE("tags=[1,true]");
	cr_assert_eq(a.type, FDN_ATTR_LIST);
	cr_assert_str_eq(items[0], "1");
	cr_assert_str_eq(items[1], "true");

	static const struct {
		const char *text, *value;
	} strings[] = {
	    {"s=hello", "hello"}, {"s=", ""},           {"s=a=b", "a=b"},     {"s=True", "True"},
	    {"s= 42", " 42"},     {"s=42 ", "42 "},     {"s=0x10", "0x10"},   {"s=inf", "inf"},
	    {"s=nan", "nan"},     {"s=1e999", "1e999"}, {"s=[a,b", "[a,b"},   {"s=a,b]", "a,b]"},
	    {"s=[", "["},         {"s=-", "-"},         {"s=1.2.3", "1.2.3"}, {"s=x[a]", "x[a]"},
	    {"s=héllo", "héllo"},
	};
	for (size_t k = 0; k < NELEM(strings); k++) {
		char text[64];
		snprintf(text, sizeof(text), "%s", strings[k].text);
		a = parse_ok(text, items, NELEM(items));
		cr_assert_eq(a.type, FDN_ATTR_STRING, "%s", strings[k].text);
		cr_assert_str_eq(a.v.s, strings[k].value);
		cr_assert_eq(a.v.s, text + 2);
	}
}

Test(parse, bad_forms)
{
	const char *items[4];
	struct fdn_attr a;
	static const char *const bad[] = {"novalue", "=5", "=", ""};
	for (size_t k = 0; k < NELEM(bad); k++) {
		char text[16];
		snprintf(text, sizeof(text), "%s", bad[k]);
		cr_assert_eq(fdn_attr_parse(text, &a, items, 4), BAD, "%s", bad[k]);
		cr_assert_str_eq(text, bad[k], "unchanged");
	}
	cr_assert_eq(fdn_attr_parse(NULL, &a, items, 4), BAD);
	cr_assert_eq(fdn_attr_parse((char[]){"a=1"}, NULL, items, 4), BAD);

	/* Names of 63 and 64 bytes. */
	char text[2200];
	char *n63 = rep('n', 63), *n64 = rep('n', 64), *v1024 = rep('v', 1024),
	     *v1025 = rep('v', 1025);
	snprintf(text, sizeof(text), "%s=1", n63);
	cr_assert_eq(fdn_attr_parse(text, &a, items, 4), 0);
	cr_assert_eq(strlen(a.name), 63);
	snprintf(text, sizeof(text), "%s=1", n64);
	cr_assert_eq(fdn_attr_parse(text, &a, items, 4), BAD);

	/* Strings and list items of 1024 and 1025 bytes. */
	snprintf(text, sizeof(text), "s=%s", v1024);
	cr_assert_eq(fdn_attr_parse(text, &a, items, 4), 0);
	cr_assert_eq(strlen(a.v.s), 1024);
	snprintf(text, sizeof(text), "s=%s", v1025);
	cr_assert_eq(fdn_attr_parse(text, &a, items, 4), BAD);
	snprintf(text, sizeof(text), "l=[a,%s]", v1024);
	cr_assert_eq(fdn_attr_parse(text, &a, items, 4), 0);
	cr_assert_eq(strlen(items[1]), 1024);
	snprintf(text, sizeof(text), "l=[a,%s,b]", v1025);
	char keep[sizeof(text)];
	memcpy(keep, text, sizeof(text));
	cr_assert_eq(fdn_attr_parse(text, &a, items, 4), BAD);
	cr_assert_str_eq(text, keep, "unchanged on failure");

	/* More items than room, than FDN_ATTR_LIST_MAX. */
	char list[] = "l=[a,b,c,d,e]";
	cr_assert_eq(fdn_attr_parse(list, &a, items, 4), BAD);
	cr_assert_str_eq(list, "l=[a,b,c,d,e]");
	cr_assert_eq(fdn_attr_parse((char[]){"l=[a]"}, &a, NULL, 0), BAD);
	cr_assert_eq(fdn_attr_parse((char[]){"l=[]"}, &a, NULL, 0), 0);
	cr_assert_eq(a.v.list.n, 0);
	const char *many[300];
	size_t off = (size_t)snprintf(text, sizeof(text), "l=[");
	for (int k = 0; k < 256; k++)
		off += (size_t)snprintf(text + off, sizeof(text) - off, k ? ",%d" : "%d", k);
	snprintf(text + off, sizeof(text) - off, "]");
	memcpy(keep, text, sizeof(text));
	cr_assert_eq(fdn_attr_parse(text, &a, many, 300), BAD);
	cr_assert_str_eq(text, keep, "unchanged on failure");
	text[off - 4] = ']'; /* drop ",255": 255 items */
	text[off - 3] = '\0';
	cr_assert_eq(fdn_attr_parse(text, &a, many, 300), 0);
	cr_assert_eq(a.v.list.n, 255);
	cr_assert_str_eq(many[254], "254");
	free(n63);
	free(n64);
	free(v1024);
	free(v1025);
}
