/*
 * foundation/context.h - per-thread error context.
 *
 * A thread's context is a map of typed attributes (at most
 * FDN_CTX_MAXLEN encoded bytes), a correlation id, an operation id and the
 * newest FDN_CTX_CRUMBS breadcrumbs.  With the shared backend (the flag
 * use_shm_error_context) it is published in the thread's trace slot in the
 * segment, so foundation-inspect and the graveyard show it; with the local
 * backend (s == NULL, or the flag off) it is thread-local memory.  The two
 * are separate: nothing moves between them on a flip.  A context never
 * leaks to another thread or process: each thread has its own.
 *
 * Every function returns 0 or a negative FDN_E* code.
 */
#ifndef FOUNDATION_CONTEXT_H
#define FOUNDATION_CONTEXT_H

#include <foundation/attrs.h>
#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/segment.h>
#include <foundation/spans.h>

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDN_CTX_MAXLEN         3840u /* encoded context map */
#define FDN_CTX_ID_MAXLEN      63u   /* correlation and operation ids */
#define FDN_CTX_CRUMBS         16u   /* breadcrumbs kept */
#define FDN_CRUMB_MODULE_MAX   39u
#define FDN_CRUMB_FUNC_MAX     63u
#define FDN_CRUMB_ATTRS_MAXLEN 136u

/* Merge attributes into the context (same names replaced).  FDN_ETOOBIG if
 * the result would exceed FDN_CTX_MAXLEN, FDN_EINVMETA for bad attributes;
 * either way nothing changes. */
FDN_API int fdn_ctx_set(fdn_segment *s, const struct fdn_attr *attrs, size_t n);

/* Copy the context map's encoding into buf (read it with fdn_attrs_get /
 * fdn_attrs_at).  *len gets its length; FDN_ETOOBIG if cap is too small. */
FDN_API int fdn_ctx_get(fdn_segment *s, void *buf, size_t cap, size_t *len);

/* Remove one attribute (FDN_ENOTFOUND if absent). */
FDN_API int fdn_ctx_remove(fdn_segment *s, const char *name);

/* Empty the map, the ids and the breadcrumbs. */
FDN_API int fdn_ctx_clear(fdn_segment *s);

/* Merge attrs for the duration of fn(arg), then restore the context map
 * exactly as it was, whatever fn returns.  Returns fn's result, or the
 * error of the merge (then fn is not called). */
FDN_API int fdn_with_context(fdn_segment *s, const struct fdn_attr *attrs, size_t n,
			     int (*fn)(void *arg), void *arg);

enum fdn_ctx_mode {
	FDN_CTX_MERGE = 0,   /* attrs merged into the map (fdn_with_context) */
	FDN_CTX_REPLACE = 1, /* the map is exactly attrs for the duration */
};

/* fdn_with_context with a mode: FDN_CTX_REPLACE runs fn with a map of
 * exactly the n attributes (n = 0: empty), then restores the map as it
 * was.  The ids and breadcrumbs are not touched.  FDN_EINVAL for another
 * mode or no fn; FDN_ETOOBIG, FDN_EINVMETA as fdn_ctx_set (fn not
 * called). */
FDN_API int fdn_with_context_mode(fdn_segment *s, const struct fdn_attr *attrs, size_t n,
				  enum fdn_ctx_mode mode, int (*fn)(void *arg), void *arg);

/* Add a breadcrumb (module <= 39 bytes, function <= 63 bytes, attributes
 * <= FDN_CRUMB_ATTRS_MAXLEN encoded: else FDN_ETOOBIG).  The newest
 * FDN_CTX_CRUMBS are kept. */
FDN_API int fdn_ctx_breadcrumb(fdn_segment *s, const char *module, const char *function,
			       const struct fdn_attr *attrs, size_t n);

/* Set the correlation / operation id (1..63 printable bytes); NULL
 * generates a random one (32 hex characters). */
FDN_API int fdn_ctx_set_correlation_id(fdn_segment *s, const char *id);
FDN_API int fdn_ctx_set_operation_id(fdn_segment *s, const char *id);

/* The ids ("" when unset); either pointer may be NULL. */
FDN_API int fdn_ctx_ids(fdn_segment *s, char corr[FDN_CTX_ID_MAXLEN + 1],
			char op[FDN_CTX_ID_MAXLEN + 1]);

/* Start a child context: the correlation id and map stay, a new operation
 * id is generated (or `operation` used), and the map records the parent's
 * operation id as "parent_operation_id". */
FDN_API int fdn_ctx_child(fdn_segment *s, const char *operation);

/* A breadcrumb as read back. */
struct fdn_crumb {
	uint64_t time_real; /* CLOCK_REALTIME ns */
	char module[FDN_CRUMB_MODULE_MAX + 1];
	char function[FDN_CRUMB_FUNC_MAX + 1];
	uint32_t attrs_len;
	uint8_t attrs[FDN_CRUMB_ATTRS_MAXLEN];
};

#define FDN_ERROR_TYPE_MAX    63u
#define FDN_ERROR_MESSAGE_MAX 1024u

/* An error value with the context it happened in. */
struct fdn_error_report {
	int code;            /* the error */
	const char *message; /* fdn_strerror(code), or text (enrich_error_with) */
	char correlation_id[FDN_CTX_ID_MAXLEN + 1];
	char operation_id[FDN_CTX_ID_MAXLEN + 1];
	char trace_id[FDN_TRACE_ID_HEX + 1]; /* "" if no span was open */
	uint64_t span_id;
	uint32_t ctx_len;
	uint8_t ctx[FDN_CTX_MAXLEN];
	uint32_t ncrumbs; /* oldest first */
	struct fdn_crumb crumbs[FDN_CTX_CRUMBS];
	char type[FDN_ERROR_TYPE_MAX + 1];    /* "" unless given */
	char text[FDN_ERROR_MESSAGE_MAX + 1]; /* the caller's message, or "" */
};

/* Fill *out with code and a copy of this thread's context, ids, breadcrumbs
 * and current span (on the error-context and spans backends in use). */
FDN_API int fdn_enrich_error(fdn_segment *s, int code, struct fdn_error_report *out);

/* fdn_enrich_error with the caller's own error type (0..63 printable
 * bytes, e.g. "db.timeout"; NULL: none) and message (at most
 * FDN_ERROR_MESSAGE_MAX bytes; NULL: fdn_strerror(code)).  out->message
 * then points to out->text (inside *out: a copy of the struct keeps
 * pointing into the original).  FDN_EINVAL (bad type, out NULL),
 * FDN_ETOOBIG (message); on error *out is not filled. */
FDN_API int fdn_enrich_error_with(fdn_segment *s, int code, const char *type, const char *message,
				  struct fdn_error_report *out);

/* ---- handing the context to another process ------------------------------ */

/* Bytes an exported context needs at most, the NUL included. */
#define FDN_CONTEXT_EXPORT_MAX 10752u

/*
 * This thread's whole context -- correlation id, operation id, map and
 * breadcrumbs -- as one string of [A-Za-z0-9_-] after the prefix
 * "fdnctx1.", fit for an environment variable, a command line or a message
 * (base64url of a checksummed binary form).  Returns its length (without
 * the NUL), or FDN_ETOOBIG if cap is too small (FDN_CONTEXT_EXPORT_MAX
 * always suffices).
 */
FDN_API int fdn_context_export(fdn_segment *s, char *out, size_t cap);

/* Replace this thread's context (ids, map, breadcrumbs) with an exported
 * one.  FDN_ECONTEXT if text is malformed (prefix, characters, length,
 * checksum, or a field out of its limits): nothing changes then. */
FDN_API int fdn_context_import(fdn_segment *s, const char *text);

/* Export this thread's context into this process's environment as
 * FOUNDATION_CONTEXT, for a program exec'd from here: such a process
 * imports it into the first thread that uses its error context (once per
 * process, like TRACEPARENT for the first root span; a malformed value is
 * ignored). */
FDN_API int fdn_context_setenv(fdn_segment *s);

/* ---- observing other threads (read-only handles allowed) -------------- */

/* One thread's spans and context, as seen in the segment. */
struct fdn_thread_trace {
	int32_t pid;
	uint32_t tid;
	bool dead;          /* a graveyard copy */
	bool torn;          /* copied while being written (dead writer) */
	uint64_t died_real; /* dead: CLOCK_REALTIME of the copy */
	uint64_t claimed_real;
	uint32_t depth;
	struct fdn_span_info spans[FDN_SPAN_MAX_DEPTH]; /* 0 = bottom */
	char correlation_id[FDN_CTX_ID_MAXLEN + 1];
	char operation_id[FDN_CTX_ID_MAXLEN + 1];
	uint32_t ctx_len;
	uint8_t ctx[FDN_CTX_MAXLEN];
	uint32_t ncrumbs; /* oldest first */
	struct fdn_crumb crumbs[FDN_CTX_CRUMBS];
};

typedef int (*fdn_trace_cb)(void *arg, const struct fdn_thread_trace *t);

/* Call cb for every thread with a trace slot in use (pid 0: all; else that
 * pid's), from a consistent copy of each slot (a slot being rewritten the
 * whole time is skipped and counted).  An open span's duration_ns is its
 * age.  Stops when cb returns non-zero and returns that; else the number
 * of slots skipped (>= 0). */
FDN_API int fdn_traces_foreach(fdn_segment *s, int32_t pid, fdn_trace_cb cb, void *arg);

/* The same over the graveyard's copies of dead threads (newest first);
 * their spans have status ABORTED and duration up to the death. */
FDN_API int fdn_graveyard_traces(fdn_segment *s, int32_t pid, fdn_trace_cb cb, void *arg);

/* Thread copies the graveyard has written, and dropped (overwritten). */
FDN_API void fdn_graveyard_trace_counts(fdn_segment *s, uint64_t *written, uint64_t *dropped);

#ifdef __cplusplus
}
#endif
#endif
