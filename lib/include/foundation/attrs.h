/*
 * foundation/attrs.h - typed attributes of registry entries, and query
 * criteria over them.
 *
 * An attribute is a name (1..63 bytes, no NUL) and a typed value: a string
 * (UTF-8 text without NUL, up to 1024 bytes), a signed 64-bit integer, a
 * double (finite), a boolean, or a list of up to 255 strings.  A set of
 * attributes encodes to at most FDN_ATTRS_MAX bytes (see the format in
 * lib/attrs.c); anything else is FDN_EINVMETA and nothing is stored.  Names
 * are unique within a set.
 *
 * Building a set: fill an array of struct fdn_attr and call
 * fdn_attrs_encode().  Reading one (from a lookup): the fdn_attrs_* readers
 * below work on the encoded bytes and return pointers into them.
 */
#ifndef FOUNDATION_ATTRS_H
#define FOUNDATION_ATTRS_H

#include <foundation/common.h>
#include <foundation/error.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDN_ATTRS_MAX       4096u /* encoded bytes per entry */
#define FDN_ATTR_NAME_MAX   63u
#define FDN_ATTR_STRING_MAX 1024u
#define FDN_ATTR_LIST_MAX   255u

enum fdn_attr_type {
	FDN_ATTR_STRING = 1,
	FDN_ATTR_INT = 2,
	FDN_ATTR_DOUBLE = 3,
	FDN_ATTR_BOOL = 4,
	FDN_ATTR_LIST = 5, /* list of strings */
};

struct fdn_attr {
	const char *name;
	enum fdn_attr_type type;
	union {
		const char *s; /* STRING: NUL-terminated */
		int64_t i;
		double d;
		bool b;
		struct {
			const char *const *items; /* NUL-terminated strings */
			uint32_t n;
		} list;
	} v;
};

/*
 * Encode n attributes into buf (capacity cap).  Returns the encoded length
 * (>= 2), or FDN_EINVMETA (bad name, type, value, duplicate name, or more
 * than FDN_ATTRS_MAX bytes), FDN_EINVAL (NULL where an array is needed).
 * Deterministic: the same attributes in the same order give the same bytes.
 */
FDN_API int fdn_attrs_encode(const struct fdn_attr *attrs, size_t n, void *buf, size_t cap);

/* Check that len bytes at p are a well-formed encoding (every read of an
 * encoding from shared memory goes through this first).  0 or
 * FDN_EINVMETA. */
FDN_API int fdn_attrs_validate(const void *p, size_t len);

/* Number of attributes of a valid encoding. */
FDN_API uint32_t fdn_attrs_count(const void *p, size_t len);

/* The i-th attribute (0-based) of a valid encoding: out->name and string
 * values point into the encoding; a list's items cannot be returned as an
 * array, so out->v.list.items is NULL and out->v.list.n the count: use
 * fdn_attrs_list_item().  0 or FDN_ENOTFOUND. */
FDN_API int fdn_attrs_at(const void *p, size_t len, uint32_t i, struct fdn_attr *out);

/* The attribute called name.  0 or FDN_ENOTFOUND. */
FDN_API int fdn_attrs_get(const void *p, size_t len, const char *name, struct fdn_attr *out);

/* Item k of a list attribute obtained from fdn_attrs_at/get (NULL past the
 * end). */
FDN_API const char *fdn_attrs_list_item(const struct fdn_attr *list, uint32_t k);

/* Merge: the attributes of `upd` replace same-named ones of `base`, the
 * others of `base` are kept (base order first, then new names in upd
 * order).  Writes the encoding to buf; returns its length or FDN_EINVMETA
 * (result too large), FDN_EINVAL. */
FDN_API int fdn_attrs_merge(const void *base, size_t blen, const void *upd, size_t ulen, void *buf,
			    size_t cap);

/* ---- criteria --------------------------------------------------------- */

enum fdn_cmp {
	FDN_CMP_EQ = 1, /* equal; on a list attribute: the list contains it   */
	FDN_CMP_NEQ,    /* not EQ (an absent attribute is "not equal")        */
	FDN_CMP_GT,     /* numbers (int and double compare as numbers), or    */
	FDN_CMP_LT,     /* strings (byte order); other types: no match        */
	FDN_CMP_GTE,
	FDN_CMP_LTE,
	FDN_CMP_IN,     /* value is a LIST: the attribute (a string, or any   */
	FDN_CMP_NOT_IN, /* element of a list attribute) is one of its items   */
};

struct fdn_criterion {
	const char *name;
	enum fdn_cmp op;
	struct fdn_attr value; /* value.name is ignored */
};

/* Check criteria before use: known op, well-formed value, IN/NOT_IN with a
 * LIST value, GT..LTE not with a BOOL or LIST value.  0 or FDN_EINVCRIT. */
FDN_API int fdn_criteria_validate(const struct fdn_criterion *c, size_t n);

/* Do all n criteria hold for the encoded attributes?  (Validated input.)
 * An absent attribute satisfies only NEQ and NOT_IN. */
FDN_API bool fdn_criteria_match(const struct fdn_criterion *c, size_t n, const void *attrs,
				size_t len);

/* Parse "name=value", the type guessed from the value: an integer if the
 * whole value parses as one, then a double, "true"/"false" as a bool, a
 * value with commas inside "[a,b,c]" as a list, else a string.  (The
 * command-line tools do not guess: they take the typed form, "n:=5" for a
 * number, "k=5" a string; see foundation-ctl(1).)  The name and
 * string parts point into `text`, which is modified (NUL-terminated in
 * place); list items go to items[0..items_cap).  0 or FDN_EINVMETA. */
FDN_API int fdn_attr_parse(char *text, struct fdn_attr *out, const char **items,
			   uint32_t items_cap);

#ifdef __cplusplus
}
#endif
#endif
