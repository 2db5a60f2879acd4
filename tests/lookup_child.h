/*
 * lookup_child.h - the self-checking entry versions of test_lookup and
 * lookup_child: version i has the attributes
 *   version = i (int)
 *   check   = "v<i>:<hex of i * 0x9E3779B97F4A7C15>" (string)
 *   pad     = (i * 7) % 61 + 1 times the letter 'a' + i % 26 (string)
 * so that a reader holding attributes of two versions at once -- a torn
 * entry -- finds check or pad disagreeing with version.
 */
#ifndef FDN_TESTS_LOOKUP_CHILD_H
#define FDN_TESTS_LOOKUP_CHILD_H

#include <foundation/registry.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define LC_NATTRS 3

struct lc_version {
	struct fdn_attr attrs[LC_NATTRS];
	char check[48];
	char pad[64];
};

static inline void lc_check_of(uint64_t i, char *out, size_t cap)
{
	snprintf(out, cap, "v%" PRIu64 ":%" PRIx64, i, (uint64_t)(i * 0x9E3779B97F4A7C15ull));
}

static inline size_t lc_pad_len(uint64_t i)
{
	return (size_t)((i * 7) % 61 + 1);
}

static inline void lc_version_make(struct lc_version *v, uint64_t i)
{
	lc_check_of(i, v->check, sizeof(v->check));
	size_t n = lc_pad_len(i);
	memset(v->pad, 'a' + (int)(i % 26), n);
	v->pad[n] = 0;
	v->attrs[0] = (struct fdn_attr){.name = "version", .type = FDN_ATTR_INT, .v.i = (int64_t)i};
	v->attrs[1] = (struct fdn_attr){.name = "check", .type = FDN_ATTR_STRING, .v.s = v->check};
	v->attrs[2] = (struct fdn_attr){.name = "pad", .type = FDN_ATTR_STRING, .v.s = v->pad};
}

/* The version of an encoding if it is a consistent one, else -1. */
static inline int64_t lc_version_of(const void *attrs, size_t len)
{
	struct fdn_attr ver, check, pad;
	if (fdn_attrs_get(attrs, len, "version", &ver) || ver.type != FDN_ATTR_INT || ver.v.i < 0 ||
	    fdn_attrs_get(attrs, len, "check", &check) || check.type != FDN_ATTR_STRING ||
	    fdn_attrs_get(attrs, len, "pad", &pad) || pad.type != FDN_ATTR_STRING)
		return -1;
	uint64_t i = (uint64_t)ver.v.i;
	char want[48];
	lc_check_of(i, want, sizeof(want));
	if (strcmp(check.v.s, want) != 0 || strlen(pad.v.s) != lc_pad_len(i))
		return -1;
	for (const char *p = pad.v.s; *p; p++)
		if (*p != 'a' + (int)(i % 26))
			return -1;
	return (int64_t)i;
}

#endif
