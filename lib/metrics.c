/* lib/metrics.c - the reaper-latency histogram (see metrics.h). */
#include "lib/metrics.h"

#include <stdatomic.h>
#include <stddef.h>

const uint64_t fdn__latency_bound_ns[FDN_LATENCY_BOUNDS] = {
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 100000000, 1000000000,
};

/* The histogram's words in the telemetry header part's reserved bytes. */
struct shm_latency {
	_Atomic uint64_t bucket[FDN_LATENCY_BOUNDS + 1];
	_Atomic uint64_t sum_ns;
};

#define LATENCY_OFFSET 104u /* in struct fdn_shm_tel_hdr */

static_assert(offsetof(struct fdn_shm_tel_hdr, reserved) == LATENCY_OFFSET, "metrics.h offsets");
static_assert(LATENCY_OFFSET % 8 == 0, "aligned words");
static_assert(LATENCY_OFFSET + sizeof(struct shm_latency) <= sizeof(struct fdn_shm_tel_hdr),
	      "within the reserved bytes");

static struct shm_latency *latency(fdn_segment *s)
{
	return (struct shm_latency *)(void *)(s->hdr->telemetry_hdr + LATENCY_OFFSET);
}

void fdn__latency_record(fdn_segment *s, uint64_t latency_ns)
{
	struct shm_latency *h = latency(s);
	size_t k = 0;
	while (k < FDN_LATENCY_BOUNDS && latency_ns > fdn__latency_bound_ns[k])
		k++;
	atomic_fetch_add_explicit(&h->sum_ns, latency_ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->bucket[k], 1, memory_order_relaxed);
}

void fdn__latency_read(fdn_segment *s, struct fdn__latency_hist *out)
{
	struct shm_latency *h = latency(s);
	uint64_t total = 0;
	for (size_t k = 0; k <= FDN_LATENCY_BOUNDS; k++) {
		total += atomic_load_explicit(&h->bucket[k], memory_order_relaxed);
		if (k < FDN_LATENCY_BOUNDS)
			out->cumulative[k] = total;
	}
	out->count = total;
	out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
