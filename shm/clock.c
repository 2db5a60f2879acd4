/*
 * clock.c - the library's clocks, in nanoseconds, for lib/ and shm/ alike
 * (declared in shm/shm.h).  Calls nothing of the library.
 */
#include "shm.h"

#include <stdatomic.h>
#include <time.h>

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t fdn__mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

/* CLOCK_MONOTONIC_COARSE: the same time base, behind by up to a tick (a
 * few ms), for checks on a scale of seconds made on every write (5 ns
 * here against 25 for the precise clock, which a guest may read through
 * its hypervisor's clock page). */
uint64_t fdn__mono_coarse_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC_COARSE);
}

uint64_t fdn__mono_ms(void)
{
	return fdn__mono_ns() / 1000000u;
}

uint64_t fdn__real_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

/*
 * The wall-clock time at which CLOCK_MONOTONIC read mono: mono plus the
 * offset between the two clocks, as this process last measured it -- at
 * most FDN_REAL_OFFSET_NS of monotonic time ago, else measured again (two
 * reads).  A writer stamps its records and events with the monotonic time
 * it read anyway for their durations, and reads the wall clock about once
 * a millisecond instead of on every call: a register+unregister pair read
 * the precise clocks eight times (each 25-30 ns through a guest's clock
 * page), now four.  Slewing (adjtime, NTP) moves both clocks alike, so the
 * offset changes only when the wall clock is stepped; a step is then
 * followed within the interval (at once by a call that comes later than
 * that after the last).
 *
 * The offset and the time it was measured at are two words that threads
 * refresh concurrently: `at` is stored (release) after `off` and loaded
 * (acquire) before it, so a reader that sees a measurement's `at` sees its
 * offset or a later one -- either a measured offset, never the initial 0
 * with a nonzero `at`.  A time namespace gives the process its own
 * monotonic clock, which it measures its own offset against.
 */
#define FDN_REAL_OFFSET_NS 1000000ull

static _Atomic uint64_t real_off, real_at;

uint64_t fdn__real_of(uint64_t mono)
{
	uint64_t at = atomic_load_explicit(&real_at, memory_order_acquire);
	/* A mono before at (read before another thread measured) is served
	 * by that fresher measurement. */
	if (at == 0 || (mono > at && mono - at >= FDN_REAL_OFFSET_NS)) {
		uint64_t m = fdn__mono_ns(), r = fdn__real_ns();
		atomic_store_explicit(&real_off, r - m, memory_order_relaxed);
		atomic_store_explicit(&real_at, m, memory_order_release);
		return mono + (r - m);
	}
	return mono + atomic_load_explicit(&real_off, memory_order_relaxed);
}
