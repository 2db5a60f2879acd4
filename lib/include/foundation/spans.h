/*
 * foundation/spans.h - per-thread span stacks and trace propagation.
 *
 * Each thread has a stack of open spans.  With the shared backend (the
 * flag use_shm_spans; see flags) the stack lives in the segment, in a trace
 * slot only the owning thread writes, so `foundation-inspect spans` shows
 * what every thread of every process is doing, and when a process dies the
 * reaper copies its open spans, marked aborted, into the graveyard.  With
 * the local backend (s == NULL, or the flag off) the stack is thread-local
 * memory, invisible to other processes.  The two stacks are separate: a
 * span started on one backend is not seen on the other after a flip.
 *
 * Every function returns 0 or a negative FDN_E* code.
 */
#ifndef FOUNDATION_SPANS_H
#define FOUNDATION_SPANS_H

#include <foundation/attrs.h>
#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/segment.h>

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDN_SPAN_MAX_DEPTH    128u /* open spans per thread */
#define FDN_SPAN_NAME_MAXLEN  127u
#define FDN_SPAN_ATTRS_MAXLEN 192u /* encoded attribute bytes per span */
#define FDN_TRACE_ID_HEX      32u
#define FDN_TRACEPARENT_LEN   55u   /* "00-<32 hex>-<16 hex>-<2 hex>" */
#define FDN_SPAN_MESSAGE_MAX  1024u /* bytes of a status message */

enum fdn_span_status {
	FDN_STATUS_OPEN = 0,
	FDN_STATUS_OK = 1,
	FDN_STATUS_ERROR = 2,
	FDN_STATUS_ABORTED = 3,
};

/* A span as the API returns it. */
struct fdn_span_info {
	char trace_id[FDN_TRACE_ID_HEX + 1]; /* 32 lowercase hex */
	uint64_t span_id;
	uint64_t parent_id;   /* 0 for a root span with no remote parent */
	uint64_t start_ns;    /* CLOCK_MONOTONIC */
	uint64_t duration_ns; /* at the end; for an open span, so far */
	int status;           /* enum fdn_span_status */
	uint32_t depth;       /* 0 = bottom of the stack */
	uint32_t nevents, nlinks;
	char name[FDN_SPAN_NAME_MAXLEN + 1];
	uint32_t attrs_len;
	uint8_t attrs[FDN_SPAN_ATTRS_MAXLEN]; /* fdn_attrs encoding */
};

/* Open a span on this thread's stack: a child of the top span (same trace
 * id), or a root span with a new random trace id, or, for a root span
 * after fdn_trace_continue (or in a process started with TRACEPARENT in its
 * environment, for its first root span), a child of that remote parent.
 * name: 1..127 bytes.  Errors: FDN_EINVAL (name), FDN_ETOOBIG (attributes
 * over FDN_SPAN_ATTRS_MAXLEN encoded), FDN_EINVMETA (bad attributes),
 * FDN_ESTACKOVF (FDN_SPAN_MAX_DEPTH open), FDN_ENOSPACE (no free trace slot
 * in the segment), FDN_EENFORCED.  *span_id may be NULL. */
FDN_API int fdn_span_start(fdn_segment *s, const char *name, const struct fdn_attr *attrs, size_t n,
			   uint64_t *span_id);

/* End the top span with status FDN_STATUS_OK, _ERROR or _ABORTED.
 * FDN_ENOSPAN if no span is open. */
FDN_API int fdn_span_end(fdn_segment *s, int status);

/* End span `id`, which must be the top: FDN_ENOTTOP (nothing changes) if it
 * is open but not the top; FDN_ENOSPAN if it is not open (ended already,
 * never started, or the stack is empty), like fdn_span_end on an empty
 * stack. */
FDN_API int fdn_span_end_id(fdn_segment *s, uint64_t id, int status);

/* End the top span with status (FDN_STATUS_OK, _ERROR, _ABORTED), a status
 * message (NULL for none; at most FDN_SPAN_MESSAGE_MAX bytes) and n
 * attributes (at most 64, valid as for fdn_attrs_encode): the stop event
 * foundation.span.stop carries the message as `status_message` and the
 * attributes after its own (one whose name collides with its own is
 * dropped with the rest, as for the other span events).  The span's stored
 * attributes do not change.  FDN_EINVAL (status), FDN_ETOOBIG (message or
 * more than 64 attributes), FDN_EINVMETA (attributes), FDN_ENOSPAN (no
 * span open); on error nothing ends. */
FDN_API int fdn_span_end_status(fdn_segment *s, int status, const char *message,
				const struct fdn_attr *attrs, size_t n);

/* The top span.  FDN_ENOSPAN if none. */
FDN_API int fdn_span_current(fdn_segment *s, struct fdn_span_info *out);

/* The span this thread ended last (its status and duration). FDN_ENOSPAN
 * if it has ended none on this backend. */
FDN_API int fdn_span_last_ended(fdn_segment *s, struct fdn_span_info *out);

/* The current trace id as 32 lowercase hex characters and a NUL. */
FDN_API int fdn_span_trace_id(fdn_segment *s, char out[FDN_TRACE_ID_HEX + 1]);

/* Number of open spans of this thread. */
FDN_API int fdn_span_depth(fdn_segment *s);

/* Merge attributes into the top span (same names replaced).  FDN_ENOSPAN,
 * FDN_ETOOBIG (the result would not fit; nothing changes). */
FDN_API int fdn_span_add_attributes(fdn_segment *s, const struct fdn_attr *attrs, size_t n);

/* Record an event on the top span (counted on the span; emitted as the
 * telemetry event foundation.span.event). */
FDN_API int fdn_span_record_event(fdn_segment *s, const char *name, const struct fdn_attr *attrs,
				  size_t n);

/* Link the top span to another span (trace id: 32 hex; counted on the
 * span; emitted as foundation.span.link).  FDN_ETRACEPARENT for a bad
 * trace id, FDN_EINVAL for span id 0. */
FDN_API int fdn_span_link(fdn_segment *s, const char *trace_id, uint64_t span_id,
			  const struct fdn_attr *attrs, size_t n);

/* Return this from a fdn_with_span callback to end its span ABORTED. */
#define FDN_SPAN_ABORT (-0x7ffffff0)

/* Run fn(arg) inside a new span and end the span with the callback's
 * outcome: a result >= 0 is OK, FDN_SPAN_ABORT is ABORTED, any other
 * negative result is ERROR.  Returns fn's result, or the error of
 * fdn_span_start (then fn is not called). */
FDN_API int fdn_with_span(fdn_segment *s, const char *name, const struct fdn_attr *attrs, size_t n,
			  int (*fn)(void *arg), void *arg);

/* ---- propagation (W3C Trace Context) ---------------------------------- */

/* The top span as a traceparent header: "00-<trace>-<span>-01".
 * out needs FDN_TRACEPARENT_LEN + 1 bytes.  FDN_ENOSPAN if none open. */
FDN_API int fdn_traceparent(fdn_segment *s, char *out, size_t cap);

/* Parse a traceparent (version 00 exactly; a later version with at least
 * the same fields).  FDN_ETRACEPARENT if malformed: wrong length, upper
 * case or non-hex, version ff, an all-zero trace or parent id. */
FDN_API int fdn_traceparent_parse(const char *tp, char trace_id[FDN_TRACE_ID_HEX + 1],
				  uint64_t *parent_id, uint8_t *flags);

/* Make this thread's next root span a child of the remote span tp names.
 * FDN_ETRACEPARENT if malformed (nothing changes). */
FDN_API int fdn_trace_continue(fdn_segment *s, const char *tp);

/* Put the top span's traceparent in this process's environment
 * (TRACEPARENT), so a program exec'd from here continues the trace. */
FDN_API int fdn_traceparent_setenv(fdn_segment *s);

#ifdef __cplusplus
}
#endif
#endif
