/*
 * lib/trace_int.h - what the trace files share (not exported): trace.c
 * (spans, and the helpers below), trace_context.c (the error context) and
 * trace_graveyard.c (other threads' slots, the graveyard, the audit).
 *
 * Who calls whom: trace_context.c -> trace.c; trace_graveyard.c -> trace.c,
 * trace_context.c; all three -> trace_rec.c (hex, the compact span
 * record), which calls only telemetry_names.c.  trace.c calls neither
 * trace_context.c nor trace_graveyard.c.
 */
#ifndef FDN_LIB_TRACE_INT_H
#define FDN_LIB_TRACE_INT_H

#include "lib/telemetry.h"

#include <foundation/context.h>
#include <foundation/spans.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- trace.c ---------------------------------------------------------------- */

/* This thread's trace struct on the backend the flags choose for svc
 * (*backend: FDN__SHARED or FDN__LOCAL, if not NULL). */
int fdn__tr_slot_for(fdn_segment *s, enum fdn__svc svc, struct fdn_shm_trace **out, int *backend);
/* Random 64-bit values for ids (per thread, reseeded in a fork child). */
uint64_t fdn__tr_rnd64(void);
/* Lowercase hex only; returns false on anything else. */
bool fdn__tr_unhex(const char *in, uint8_t *out, size_t n);
bool fdn__tr_all_zero(const uint8_t *b, size_t n);
/* Encode attributes for a field of `max` bytes: length, or FDN_ETOOBIG /
 * FDN_EINVMETA / FDN_EINVAL. */
int fdn__tr_encode_bounded(const struct fdn_attr *a, size_t n, uint8_t buf[FDN_ATTRS_MAX],
			   size_t max);
/* Stored attribute fields are empty (length 0) or a valid encoding. */
bool fdn__tr_attrs_ok(const void *p, size_t len);
/* Merge upd into base (either may be empty) into out: length or error. */
int fdn__tr_merge(const uint8_t *base, size_t blen, const uint8_t *upd, size_t ulen,
		  uint8_t out[FDN_ATTRS_MAX]);
/* The length of a name of at most max bytes, or FDN_EINVAL / FDN_ETOOBIG. */
int fdn__tr_check_name(const char *name, size_t max);
/* The public view of span sp at depth, timed up to now. */
void fdn__tr_span_info(const struct fdn_shm_span *sp, uint32_t depth, uint64_t now,
		       struct fdn_span_info *o);

/* ---- trace_rec.c ------------------------------------------------------------- */

/* What an event adds to the span's own fields. */
struct span_ev {
	const char *status;     /* stop: "ok", "error", "aborted" */
	uint64_t duration_ns;   /* stop */
	const char *event;      /* record_event: its name */
	const char *link_trace; /* link: the other span */
	uint64_t link_span;
	const char *message;         /* stop: the status message, or NULL */
	const struct fdn_attr *user; /* the caller's attributes */
	size_t nuser;
};

/* n bytes as 2n lowercase hex digits and a terminating 0. */
void fdn__tr_hex(char *out, const uint8_t *b, size_t n);
/* A 64-bit id as 16 hex digits, most significant first (traceparent's). */
void fdn__tr_hex64(char out[17], uint64_t v);
/* A string attribute. */
struct fdn_attr fdn__tr_str_attr(const char *name, const char *value);
/* The compact ring record of a start or stop event of span sp (b: at least
 * FDN_SPAN_REC_HEAD + FDN_SPAN_NAME_MAX bytes): len, or 0 when it does not
 * apply.  Its reader: fdn__span_rec_expand (internal.h). */
size_t fdn__span_rec(uint8_t *b, int backend, enum fdn__ev id, const struct fdn_shm_span *sp,
		     uint32_t depth, const struct span_ev *e);

/* ---- trace_context.c ---------------------------------------------------------- */

/* The breadcrumbs of tr, oldest first, validated. */
void fdn__tr_crumbs_view(const struct fdn_shm_trace *tr, struct fdn_crumb *out, uint32_t *nout);

#endif
