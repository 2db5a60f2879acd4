/*
 * foundation/telemetry.h - events with handlers, sampling, once-per
 * deduplication, batches, a rate limiter, and the shared event ring.
 *
 * An event has a dotted name ("foundation.registry.lookup": 1..127 bytes,
 * words of [A-Za-z0-9_-] separated by single dots), up to 32 numeric
 * measurements (name of 1..31 bytes of [A-Za-z0-9_.-] -> finite double) and
 * typed attributes (foundation/attrs.h).
 *
 * Where an event goes.  fdn_emit() applies the event name's sampler, then
 * calls every in-process handler whose prefix matches, in the emitting
 * thread, then -- when the segment's telemetry is shared (a segment is
 * given and its telemetry backend is the segment) -- writes it into the
 * segment's event ring, which any process can read (fdn_ring_next,
 * `foundation-inspect events --follow`).  With no handler attached and no
 * ring, an emit costs a few loads and touches no shared memory; its
 * sampler is not consulted and nothing is counted.
 *
 * Shared state.  Samplers, once-per claims, batches and rate limiters live
 * in the segment (fixed tables of named slots shared by every process;
 * FDN_ENOSPACE when a table is full) when the sampled-events backend is
 * the segment, else (s == NULL) in the process.
 *
 * Concurrency.  Every function is safe from any thread of any attached
 * process and never blocks on another process, except fdn_handler_detach,
 * which waits for calls of that handler running in other threads of this
 * process.  Errors are 0 / negative codes of foundation/error.h.
 */
#ifndef FOUNDATION_TELEMETRY_H
#define FOUNDATION_TELEMETRY_H

#include <foundation/attrs.h>
#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/segment.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDN_EVENT_NAME_MAX       127u
#define FDN_MEASUREMENT_NAME_MAX 31u
#define FDN_MEASUREMENTS_MAX     32u
#define FDN_HANDLERS_MAX         64u  /* attached at once, per process */
#define FDN_HANDLER_ID_MAX       63u  /* bytes of a handler id */
#define FDN_EVENT_BODY_MAX       448u /* a ring record's name+measurements+attrs */

struct fdn_measurement {
	const char *name;
	double value;
};

/* An event as a handler receives it; everything points into the emitter's
 * arguments and is valid only during the call. */
struct fdn_event {
	const char *name;
	const struct fdn_measurement *measurements;
	size_t nmeasurements;
	const struct fdn_attr *attrs;
	size_t nattrs;
	/* CLOCK_REALTIME at mono_ns: mono_ns plus the offset between the two
	 * clocks, which the library measures again in each process once it is
	 * 1 ms old -- so it follows a step of the wall clock within 1 ms, and
	 * reads the wall clock about once a millisecond instead of once an
	 * event.  Entries' registered_ns, changes' time_ns and spans' start
	 * times are taken the same way when the call read the monotonic clock
	 * anyway. */
	uint64_t time_ns;
	uint64_t mono_ns; /* CLOCK_MONOTONIC */
	pid_t pid, tid;
};

typedef void (*fdn_event_handler)(const struct fdn_event *ev, void *arg);

/* 0 if name is a valid event name, else FDN_EEVNAME. */
FDN_API int fdn_event_name_check(const char *name);

/* Does prefix select name?  "" selects every name; otherwise name equals
 * prefix or continues it at a dot ("a.b" selects "a.b" and "a.b.c", not
 * "a.bc"); a prefix ending in '.' selects what starts with it. */
FDN_API bool fdn_event_prefix_match(const char *prefix, const char *name);

/*
 * Emit an event (s may be NULL: handlers only, process-local sampler).
 * Returns 1 if it was delivered (sampled, and a handler or the ring took
 * it), 0 if not (its sampler dropped it, or nobody listens), or an error:
 * FDN_EEVNAME, FDN_EINVAL (measurement name or non-finite value, more than
 * FDN_MEASUREMENTS_MAX, NULL arrays), FDN_EINVMETA (attributes), FDN_EFORKED,
 * FDN_EENFORCED (the sampler's backend would be local and local state is
 * forbidden: the same whether or not anybody listens).  Validation happens
 * before anything is delivered.  Attributes that do not fit a ring record
 * are left out of the record (it is flagged truncated), not of the
 * handlers' view.
 */
FDN_API int fdn_emit(fdn_segment *s, const char *name, const struct fdn_measurement *m, size_t nm,
		     const struct fdn_attr *attrs, size_t na);

/*
 * Attach handler fn under a unique id (1..63 bytes) for every event whose
 * name matches prefix (fdn_event_prefix_match).  It is called in the
 * emitting thread, possibly from several threads at once, synchronously.
 * FDN_EEXISTS (id in use), FDN_ENOSPACE (FDN_HANDLERS_MAX attached),
 * FDN_EINVAL.  Process-local: a forked child inherits the handlers.
 */
FDN_API int fdn_handler_attach(const char *id, const char *prefix, fdn_event_handler fn, void *arg);

/*
 * Detach the handler id.  No emission that begins after the call reaches
 * it.  From outside any handler, the call also waits until every call of
 * it in progress in other threads has returned (after it returns, fn and
 * arg are no longer used).  From inside a handler (of any id) it does not
 * wait: calls in progress finish on their own.  FDN_ENOTFOUND.
 */
FDN_API int fdn_handler_detach(const char *id);

/* ---- samplers ------------------------------------------------------------ */

enum fdn_sampler_kind {
	FDN_SAMPLER_ALWAYS = 0,       /* every event (the default)              */
	FDN_SAMPLER_NEVER = 1,        /* none                                   */
	FDN_SAMPLER_RANDOM = 2,       /* each with probability param (0..1)     */
	FDN_SAMPLER_RATE_LIMITED = 3, /* at most param per second (1..2^24-1), exactly that
					 many when more come, across all processes */
	FDN_SAMPLER_RESERVOIR = 4,    /* exactly the first param events after it is set */
	FDN_SAMPLER_ADAPTIVE = 5,     /* about param sampled per second: each second the
					 probability becomes min(1, param / N), N the
					 events of the previous second (1 after a second
					 without events) */
	FDN_SAMPLER_HANDLERS = 6,     /* every event, to the handlers attached in the
					 emitting process only: none is written to the
					 ring (a new segment's default for
					 foundation.span.start and .stop) */
};

struct fdn_sampler {
	enum fdn_sampler_kind kind;
	double param; /* stored as a 32-bit float */
};

/* Parse "always", "never", "random(0.25)", "rate_limited(10)",
 * "reservoir(100)", "adaptive(50)", "handlers".  0 or FDN_ESAMPLER. */
FDN_API int fdn_sampler_parse(const char *text, struct fdn_sampler *out);

/* The same text back (at most 48 bytes). */
FDN_API void fdn_sampler_format(const struct fdn_sampler *sp, char *buf, size_t cap);

/* Set the sampler of event name (exact name); takes effect at once in
 * every process.  Restarts reservoir and adaptive state; keeps the stats.
 * FDN_EEVNAME, FDN_ESAMPLER, FDN_ENOSPACE, FDN_ERDONLY. */
FDN_API int fdn_sampler_set(fdn_segment *s, const char *name, const struct fdn_sampler *sp);

struct fdn_sampler_stats {
	char name[FDN_EVENT_NAME_MAX + 1];
	struct fdn_sampler sampler;
	uint64_t total;     /* events that reached the sampler */
	uint64_t sampled;   /* those it kept */
	double probability; /* adaptive: the current probability; else 1 or 0..1 */
};

/* One event name's sampler and stats.  FDN_ENOTFOUND if it has none (it
 * has never been emitted to a listener nor set). */
FDN_API int fdn_sampler_get(fdn_segment *s, const char *name, struct fdn_sampler_stats *out);

/* Start event name's stats (total, sampled) again from 0, in every
 * process; its sampler and its state (a reservoir's count, a rate
 * window) are unchanged.  Events counted while the reset runs are kept
 * (the counts seen are subtracted, not overwritten).  0, FDN_ENOTFOUND
 * (no sampler slot), FDN_EEVNAME, FDN_ERDONLY, FDN_EFORKED. */
FDN_API int fdn_sampler_reset_stats(fdn_segment *s, const char *name);

/* Every sampler slot in use; cb returns non-zero to stop.  Returns the
 * count visited or cb's value.  Works on read-only handles. */
typedef int (*fdn_sampler_cb)(void *arg, const struct fdn_sampler_stats *st);
FDN_API int fdn_samplers_foreach(fdn_segment *s, fdn_sampler_cb cb, void *arg);

/* ---- once per, batches, rate limits ------------------------------------------------ */

/*
 * Emit the event unless the same (name, key) was emitted by any process in
 * the last interval_ms milliseconds (CLOCK_MONOTONIC): of all concurrent
 * callers exactly one wins (one CAS on the pair's claim word), and two wins
 * are never less than interval_ms apart.  key: 0..255 bytes.  Returns 1 if
 * this call won (the event was then emitted as by fdn_emit), 0 if
 * suppressed, or an error (those of fdn_emit; FDN_ENOSPACE when the pair
 * has no claim slot: nothing is emitted; FDN_ETIMEDOUT if the slot's
 * placement lock stayed with a live process for 1 s).  Claims expire: a
 * claim older than its interval is reused by another pair, so a pair is
 * refused only while the 512 slots of its window (of 4 096) all hold
 * claims younger than their intervals; the table never fills for good.
 * When the first of those claims expires within 2 ms the call waits for
 * it (at most twice) instead of refusing.
 */
FDN_API int fdn_emit_once_per(fdn_segment *s, const char *name, uint32_t interval_ms,
			      const void *key, size_t klen, const struct fdn_measurement *m,
			      size_t nm, const struct fdn_attr *attrs, size_t na);

/* Configure batch name: it is emitted when it holds max_items items
 * (1..64) or its first item is max_age_ms old (>= 1).  Unconfigured
 * batches use 64 items, 1000 ms.  FDN_EINVAL, FDN_EEVNAME, FDN_ENOSPACE. */
FDN_API int fdn_batch_config(fdn_segment *s, const char *name, uint32_t max_items,
			     uint32_t max_age_ms);

/*
 * Add a value (finite) to batch name, from any process.  A batch is
 * emitted exactly once, as the event `name` with measurements count, sum,
 * min, max (and missing, the items whose adder died between reserving and
 * writing them, when not 0), by the caller whose addition fills it or who
 * finds it due.  Every value whose add returned success is in exactly one
 * summary, however the adders and emitters are scheduled: a value whose
 * adder was preempted past the emitter's wait (2 ms before claiming its
 * item, 50 ms while writing it) goes to a later summary (the next one of
 * that batch, or fdn_batch_flush), so a summary can hold fewer than
 * max_items, or values of an earlier generation.  Returns the number of
 * summaries this call emitted (usually 0 or 1), or an error (FDN_EINVAL,
 * FDN_EEVNAME, FDN_ENOSPACE, FDN_ETIMEDOUT after 2^20 lost races).
 */
FDN_API int fdn_batch_add(fdn_segment *s, const char *name, double value);

/* Emit every batch whose age is due; returns how many were emitted. */
FDN_API int fdn_batch_flush_due(fdn_segment *s);

/* Emit batch name now if it holds any item, with every value an earlier
 * emitter had to leave behind: 1, 0 (empty), FDN_ENOTFOUND. */
FDN_API int fdn_batch_flush(fdn_segment *s, const char *name);

/*
 * A fixed-window rate limiter shared by all processes: windows are
 * CLOCK_MONOTONIC milliseconds / window_ms; identifier id (1..255 bytes)
 * with window_ms names one limiter.  Returns 1 (admitted) or 0 (not): never
 * more than limit admissions in a window whatever the concurrency, and
 * exactly limit when more requests come in it.  limit: 1..2^24-1.
 * FDN_EINVAL, FDN_ENOSPACE.
 */
FDN_API int fdn_rate_limit(fdn_segment *s, const char *id, uint32_t limit, uint32_t window_ms);

/* ---- the ring ------------------------------------------------------------------ */

struct fdn_ring_stats {
	uint64_t capacity;    /* records */
	uint64_t written;     /* tickets issued since creation */
	uint64_t overwritten; /* written - capacity, if more: events no longer in the ring */
	uint64_t lapped;      /* events dropped by a producer stalled for a whole lap */
};

FDN_API int fdn_ring_stats(fdn_segment *s, struct fdn_ring_stats *st);

/* A reader's position.  lost counts the events it could not read:
 * overwritten before it got to them, or (incomplete) abandoned by a
 * producer that died while writing or still unfinished after wait_ms. */
struct fdn_ring_cursor {
	uint64_t next; /* the next ticket to read */
	uint64_t lost;
	uint64_t incomplete; /* part of lost */
	uint32_t wait_ms;    /* how long to wait for a record being written (50) */
};

/* Start at the oldest event still in the ring (oldest = true) or at the
 * next one to be written. */
FDN_API int fdn_ring_cursor_init(fdn_segment *s, struct fdn_ring_cursor *c, bool oldest);

/* An event read from the ring (a copy). */
struct fdn_ring_event {
	uint64_t ticket;
	uint64_t time_ns, mono_ns;
	uint64_t seq; /* the producing thread's events so far: increases per (pid, tid) */
	pid_t pid, tid;
	bool truncated; /* measurements or attributes left out */
	char name[FDN_EVENT_NAME_MAX + 1];
	uint32_t nmeasurements;
	struct {
		char name[FDN_MEASUREMENT_NAME_MAX + 1];
		double value;
	} measurements[FDN_MEASUREMENTS_MAX];
	uint32_t attrs_len;
	unsigned char attrs[FDN_EVENT_BODY_MAX]; /* read with fdn_attrs_* */
};

/*
 * The next event at or after c->next, in ticket order (so a producer's
 * events come in the order it emitted them).  1: *ev filled; 0: nothing
 * more yet (c->next is the head); negative: error.  Records it cannot read
 * are skipped and counted in c->lost.  Works on read-only handles; never
 * writes.  Waits at most c->wait_ms per record being written.
 */
FDN_API int fdn_ring_next(fdn_segment *s, struct fdn_ring_cursor *c, struct fdn_ring_event *ev);

#ifdef __cplusplus
}
#endif
#endif
