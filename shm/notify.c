/*
 * notify.c - shared futexes: change notification for watchers, and the
 * reaper's doorbell.
 *
 * Watchers.  A thread that waits for a table to change (a key to appear or
 * go) does:  watch_begin (seen = changes, then watchers = 1, both seq_cst)
 * -> check its condition -> wait_change(seen) -> ... -> watch_end.  A
 * writer, after its mutation (a seq_cst CAS), loads watchers and, when it
 * is set, takes it (exchange to 0), increments changes and wakes every
 * waiter; each waiter that still waits sets watchers again before it
 * checks again.  `watchers` is thus a flag "someone may be waiting", not a
 * count: a waiter killed while waiting (Ctrl-C on `foundation-ctl wait`)
 * leaves it set only until the next write, which clears it and wakes
 * nobody -- no count stays above zero for ever, and writers go back to
 * paying one load.
 *
 * No lost wake-up.  Store buffering: the waiter's store of the flag
 * precedes its check, the writer's mutation precedes its load of the flag,
 * all seq_cst: either the writer sees the flag or the waiter's check sees
 * the mutation.  If the writer sees the flag but another writer took it
 * first, that writer's exchange read the waiter's store, so its increment
 * of changes comes after the waiter read `seen`: the futex wait returns at
 * once.  `seen` is read before the flag is set for the same reason: an
 * increment that made the waiter's flag disappear came after `seen`.
 *
 * The futex words live in the segment (MAP_SHARED), so the non-private
 * futex operations are used: they key on the physical page and work across
 * processes.
 */
#include "shm.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/stat.h>
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
	if (atomic_exchange_explicit(&s->hdr->watchers, 0, memory_order_seq_cst) == 0)
		return; /* another writer took it: it wakes them */
	atomic_fetch_add_explicit(&s->hdr->changes, 1, memory_order_seq_cst);
	fdn__futex(&s->hdr->changes, FUTEX_WAKE, INT_MAX, NULL);
}

uint32_t fdn__watch_begin(fdn_segment *s)
{
	uint32_t seen = atomic_load_explicit(&s->hdr->changes, memory_order_seq_cst);
	/* A read-only mapping cannot raise the flag: its waits are short
	 * slices instead (fdn_watch). */
	if (!s->readonly)
		atomic_store_explicit(&s->hdr->watchers, 1, memory_order_seq_cst);
	return seen;
}

void fdn__watch_end(fdn_segment *s)
{
	/* Nothing to give back: the flag is cleared by the next write. */
	(void)s;
}

int fdn__seg_stale(fdn_segment *s)
{
	struct stat st;
	if (atomic_load_explicit(&s->hdr->destroyed, memory_order_acquire) ||
	    (fstat(s->fd, &st) == 0 && st.st_nlink == 0))
		return FDN_ESTALE;
	return 0;
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

void fdn__wake_all(struct fdn_shm_header *h)
{
	atomic_fetch_add_explicit(&h->changes, 1, memory_order_seq_cst);
	fdn__futex(&h->changes, FUTEX_WAKE, INT_MAX, NULL);
	atomic_fetch_add_explicit(&h->doorbell, 1, memory_order_seq_cst);
	fdn__futex(&h->doorbell, FUTEX_WAKE, INT_MAX, NULL);
}
