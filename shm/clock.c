/*
 * clock.c - the library's clocks, in nanoseconds, for lib/ and shm/ alike
 * (declared in shm/shm.h).  Calls nothing of the library.
 */
#include "shm.h"

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
