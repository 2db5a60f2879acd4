/* test_metrics.c - the reaper-latency histogram (lib/metrics.h): counts
 * since creation, never decreasing, consistent buckets, in reserved bytes
 * of the telemetry header part that the checker and attach accept. */
#include "common.h"
#include "lib/metrics.h"

#include <inttypes.h>

static void assert_hist(fdn_segment *s, const uint64_t want[FDN_LATENCY_BOUNDS], uint64_t count,
			uint64_t sum_ns)
{
	struct fdn__latency_hist h;
	fdn__latency_read(s, &h);
	for (int k = 0; k < FDN_LATENCY_BOUNDS; k++)
		cr_assert_eq(h.cumulative[k], want[k], "bucket %d: %" PRIu64 ", expected %" PRIu64,
			     k, h.cumulative[k], want[k]);
	cr_assert_eq(h.count, count);
	cr_assert_eq(h.sum_ns, sum_ns);
}

Test(metrics, fresh_segment_is_zero_and_bounds_ascend)
{
	char name[64];
	t_name(name, sizeof(name), "met0");
	fdn_segment *s = t_create(name, 100, 0);
	static const uint64_t zero[FDN_LATENCY_BOUNDS];
	assert_hist(s, zero, 0, 0);
	for (int k = 1; k < FDN_LATENCY_BOUNDS; k++)
		cr_assert_gt(fdn__latency_bound_ns[k], fdn__latency_bound_ns[k - 1]);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(metrics, buckets_bounds_inclusive_and_overflow)
{
	char name[64];
	t_name(name, sizeof(name), "met1");
	fdn_segment *s = t_create(name, 100, 0);
	/* 0, exactly the first bound, just above it, exactly 1 s, above 1 s */
	uint64_t lat[] = {0, 100000, 100001, 1000000000, 5000000000};
	uint64_t sum = 0;
	for (size_t i = 0; i < sizeof(lat) / sizeof(lat[0]); i++) {
		fdn__latency_record(s, lat[i]);
		sum += lat[i];
	}
	const uint64_t want[FDN_LATENCY_BOUNDS] = {2, 3, 3, 3, 3, 3, 3, 3, 3, 4};
	assert_hist(s, want, 5, sum);
	t_assert_clean(s);
	fdn_segment_detach(s);
	/* the counts are in the segment: a new handle, read-only, sees them */
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &s), 0);
	assert_hist(s, want, 5, sum);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* More deaths than the graveyard holds: every count keeps growing (the old
 * histogram, computed over the graveyard, stopped at 256). */
Test(metrics, monotonic_past_the_graveyard)
{
	char name[64];
	t_name(name, sizeof(name), "met2");
	fdn_segment *s = t_create(name, 100, 0);
	struct fdn__latency_hist prev = {0}, h;
	for (uint64_t i = 1; i <= 4 * FDN_GRAVEYARD_MAX; i++) {
		fdn__latency_record(s, (i * 7919u) % 2000000000u);
		fdn__latency_read(s, &h);
		cr_assert_eq(h.count, i);
		cr_assert_geq(h.sum_ns, prev.sum_ns);
		for (int k = 0; k < FDN_LATENCY_BOUNDS; k++) {
			cr_assert_geq(h.cumulative[k], prev.cumulative[k]);
			cr_assert_leq(h.cumulative[k], h.count);
			if (k)
				cr_assert_geq(h.cumulative[k], h.cumulative[k - 1]);
		}
		prev = h;
	}
	cr_assert_eq(prev.count, 4 * FDN_GRAVEYARD_MAX);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* A reader racing the writer always sees a whole histogram: cumulative
 * buckets never exceed the count (le="+Inf"), never go down. */
Test(metrics, reader_racing_the_writer_sees_consistent_counts)
{
	char name[64];
	t_name(name, sizeof(name), "met3");
	fdn_segment *s = t_create(name, 100, 0);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		for (uint64_t i = 0; i < 200000; i++)
			fdn__latency_record(c, (i * 104729u) % 1500000000u);
		fdn_segment_detach(c);
		_exit(0);
	}
	struct fdn__latency_hist prev = {0}, h;
	for (int n = 0; n < 20000; n++) {
		fdn__latency_read(s, &h);
		cr_assert_geq(h.count, prev.count);
		for (int k = 0; k < FDN_LATENCY_BOUNDS; k++) {
			cr_assert_leq(h.cumulative[k], h.count);
			cr_assert_geq(h.cumulative[k], prev.cumulative[k]);
		}
		prev = h;
	}
	cr_assert(t_wait_ok(p));
	fdn__latency_read(s, &h);
	cr_assert_eq(h.count, 200000);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
