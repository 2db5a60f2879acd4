/*
 * lib/metrics.h - the reaper-latency histogram: counts since the segment's
 * creation, never decreasing (Prometheus rate() and histogram_quantile()
 * need that; the graveyard keeps only the last FDN_GRAVEYARD_MAX deaths).
 *
 * Where it lives.  The segment layout (shm/layout.h) is unchanged: the
 * histogram uses bytes of header.telemetry_hdr that layout.h reserves as
 * zero (struct fdn_shm_tel_hdr.reserved, offsets 104..511 of that part;
 * the part itself is at header offset 2304), so a new segment starts with
 * every count at zero and the layout signature stays the same:
 *
 *   tel_hdr  header   size  field
 *   104      2408     88    bucket[11]: deaths whose latency fell in bucket
 *                           k, i.e. (bound[k-1], bound[k]] (bucket 0 from
 *                           0; bucket 10 above the last bound); each only
 *                           ever incremented
 *   192      2496     8     sum_ns: the latencies' sum, nanoseconds
 *   200..511 2504..   312   still reserved, zero
 *
 * Writer: the reaper holding the lease (one process at a time), with
 * relaxed atomic adds, when it records a death in the graveyard.  Readers
 * derive the cumulative buckets and the count from the per-bucket counts,
 * so every read is a consistent histogram (le="+Inf" equals _count) even
 * when it races the reaper.  A reaper killed between recording a death and
 * counting it leaves the histogram one death behind foundation_deaths_total;
 * a segment created by a build without this histogram counts only the
 * deaths since a reaper of this build took over.
 */
#ifndef FDN_LIB_METRICS_H
#define FDN_LIB_METRICS_H

#include "lib/internal.h"

#include <stdint.h>

#define FDN_LATENCY_BOUNDS 10

/* The upper bounds of the finite buckets, in nanoseconds (100 us .. 1 s). */
extern const uint64_t fdn__latency_bound_ns[FDN_LATENCY_BOUNDS];

struct fdn__latency_hist {
	uint64_t cumulative[FDN_LATENCY_BOUNDS]; /* deaths with latency <= bound */
	uint64_t count;                          /* every death counted (+Inf) */
	uint64_t sum_ns;
};

/* Count one death's latency (the reaper, when it records the death). */
void fdn__latency_record(fdn_segment *s, uint64_t latency_ns);

/* The histogram as it stands (any handle, read-only too). */
void fdn__latency_read(fdn_segment *s, struct fdn__latency_hist *out);

#endif
