/*
 * notify.c - shared futexes: change notification for watchers, and the
 * reaper's doorbell.
 *
 * Watchers.  A thread that waits for a table to change (a key to appear or
 * go) does:  watch_begin (watchers++, seq_cst) -> seen = changes -> check
 * its condition -> wait_change(seen) -> ... -> watch_end.  A writer, after
 * its mutation (a seq_cst CAS), loads watchers and, when non-zero,
 * increments changes and wakes the futex.  Store-buffering argument: the
 * waiter's increment precedes its check, the writer's mutation precedes its
 * load of watchers, all seq_cst: either the writer sees the waiter (and
 * bumps changes, so the futex wait returns at once or is woken) or the
 * waiter's check sees the mutation.  Nothing polls; a writer pays one load
 * when nobody waits.
 *
 * The futex words live in the segment (MAP_SHARED), so the non-private
 * futex operations are used: they key on the physical page and work across
 * processes.
 */
#include "shm.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long fdn__futex(_Atomic uint32_t *addr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void fdn__notify(fdn_segment *s)
{
	if (s->readonly)
		return;
	if (atomic_load_explicit(&s->hdr->watchers, memory_order_seq_cst) == 0)
		return;
	atomic_fetch_add_explicit(&s->hdr->changes, 1, memory_order_seq_cst);
	fdn__futex(&s->hdr->changes, FUTEX_WAKE, INT_MAX, NULL);
}

uint32_t fdn__watch_begin(fdn_segment *s)
{
	atomic_fetch_add_explicit(&s->hdr->watchers, 1, memory_order_seq_cst);
	return atomic_load_explicit(&s->hdr->changes, memory_order_seq_cst);
}

void fdn__watch_end(fdn_segment *s)
{
	atomic_fetch_sub_explicit(&s->hdr->watchers, 1, memory_order_seq_cst);
}

int fdn__wait_change(fdn_segment *s, uint32_t seen, int64_t timeout_ns)
{
	struct timespec ts, *tp = NULL;
	if (timeout_ns >= 0) {
		ts.tv_sec = (time_t)(timeout_ns / 1000000000);
		ts.tv_nsec = (long)(timeout_ns % 1000000000);
		tp = &ts;
	}
	if (fdn__futex(&s->hdr->changes, FUTEX_WAIT, seen, tp) < 0 && errno == ETIMEDOUT)
		return FDN_ETIMEDOUT;
	return 0; /* woken, value already changed (EAGAIN) or a signal */
}

void fdn__doorbell(fdn_segment *s)
{
	atomic_fetch_add_explicit(&s->hdr->doorbell, 1, memory_order_seq_cst);
	fdn__futex(&s->hdr->doorbell, FUTEX_WAKE, INT_MAX, NULL);
}
