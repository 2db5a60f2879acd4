/*
 * telemetry_once.c - once-per claims (fdn_emit_once_per) and rate limiters
 * (fdn_rate_limit): tables of the region FDN_SVC_TELEMETRY.
 *
 * Who calls whom.  Called through the public API only (and the audit reads
 * its slots: telemetry_audit.c).  Calls telemetry_sample.c (the named
 * slots, fixed windows, owners), telemetry.c (fdn__tel_emit: a winning
 * once-per call emits) and the clock (shm/clock.c).
 */
#include "lib/telemetry_int.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- once per ---------------------------------------------------------------------- */

/*
 * The claim word `last` holds the CLOCK_MONOTONIC ms (+ 1) of the last
 * winning call.  A caller wins only by CAS from a value L it read to its
 * own time T with L == 0 or T - L >= interval: every win moves the word
 * forward by at least interval from the previous win's value, so two wins
 * are never closer than interval, and of any number of concurrent callers
 * in one interval exactly one CAS succeeds (the others re-read the
 * winner's value, too recent, and are suppressed).
 *
 * CLAIMS EXPIRE.  Unlike the other tables, a once-per slot is reused: a
 * claim whose last win is at least its interval (interval_ms, stored by
 * the winner) old is stale, and a new (name, key) takes the first stale or
 * never-used slot in the ONCE_WINDOW slots from its home.  The bound: a
 * pair is refused (FDN_ENOSPACE) only while every slot of its window
 * holds a claim younger than its interval, so the table never fills for
 * good; with intervals of I ms it holds up to FDN_TEL_ONCE keys claimed
 * within any I ms (fewer if their homes crowd one window).  A window whose
 * first claim expires within 2 ms is waited for (once_place), so short
 * intervals are not refused in a burst.
 *
 * Taking a slot is a CAS of its `last` from the value read (0, or a stale
 * L) to TAKING | the taker's time; then the taker stores interval and the
 * new tag, and last = its time (TAKING cleared).  That is the same CAS
 * word as every win, and no win is a CAS from a TAKING value: a taker and
 * a late caller of the old key never both succeed.  The caller that loses
 * looks for its key again (several times; then it is suppressed: never
 * over-admitted).  A win whose key is no longer the slot's tag afterwards
 * (the slot was taken, completely, between the caller's lookup and its
 * CAS: the tag is stored before last) is no win: it looks again.  A
 * TAKING time older than ONCE_TAKING_STALE (its taker died) is stale.
 * `last` never returns to 0, so a slot with last == 0 (and tag 0) was
 * never used, and no key lives beyond it in its window: a lookup stops
 * there.  One key in two slots is prevented by its home slot's lock
 * (`lock`, held by a process for a few stores: the holder's payload, see
 * fdn__batch_owner; broken when the kernel says the holder died): a key
 * is placed only by a holder of its home lock that looked for it again
 * under the lock.
 */
#define ONCE_LOCK_WAIT    1000000000ull /* ns */
#define ONCE_TAKING_STALE 1000u         /* ms */
#define ONCE_EXPIRY_WAIT  2u            /* ms: see once_place */

static struct fdn_shm_once *once_at(const struct fdn__tel *t, uint32_t i)
{
	return fdn__tel_slot_at(t, FDN_TEL_T_ONCE, i % FDN_TEL_ONCE);
}

/* The slot holding tag in its window, or -1. */
static int once_find(const struct fdn__tel *t, uint64_t tag)
{
	for (uint32_t k = 0; k < ONCE_WINDOW; k++) {
		uint32_t i = (uint32_t)((tag + k) % FDN_TEL_ONCE);
		struct fdn_shm_once *o = once_at(t, i);
		if (atomic_load(&o->tag) == tag)
			return (int)i;
		if (atomic_load(&o->last) == 0 && atomic_load(&o->tag) == 0)
			return -1; /* never used: nothing lives beyond it */
	}
	return -1;
}

static int once_lock(fdn_segment *s, const struct fdn__tel *t, struct fdn_shm_once *home,
		     uint32_t me)
{
	uint64_t start = fdn__mono_ns(), next_check = 1000000u;
	unsigned round = 0;
	for (;;) {
		uint32_t v = 0;
		if (atomic_compare_exchange_strong(&home->lock, &v, me))
			return 0;
		uint64_t waited = fdn__mono_ns() - start;
		if (waited >= next_check) {
			if (fdn__tel_owner_dead(s, t, v) &&
			    atomic_compare_exchange_strong(&home->lock, &v, me))
				return 0;
			next_check = waited + 1000000u;
		}
		if (waited >= ONCE_LOCK_WAIT)
			return FDN_ETIMEDOUT;
		if (round++ < 64) {
			sched_yield();
		} else {
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
	}
}

/* One pass of once_place over tag's window: the slot taken, or
 * FDN_ENOSPACE with *soonest = the ms until the first claim of the window
 * expires. */
static int once_place_pass(const struct fdn__tel *t, uint64_t tag, uint32_t interval_ms,
			   uint64_t *soonest)
{
	uint64_t now = fdn__mono_ms() + 1;
	*soonest = UINT64_MAX;
	for (uint32_t k = 0; k < ONCE_WINDOW; k++) {
		uint32_t i = (uint32_t)((tag + k) % FDN_TEL_ONCE);
		struct fdn_shm_once *o = once_at(t, i);
		uint64_t L = atomic_load(&o->last);
		for (;;) {
			uint64_t at = L & ~ONCE_TAKING;
			uint32_t iv =
			    L & ONCE_TAKING ? ONCE_TAKING_STALE : atomic_load(&o->interval_ms);
			/* A claim later than our time: we were preempted since
			 * reading the clock (by 100 ms and more on a busy
			 * machine, time for other processes to claim every slot
			 * of the window anew).  Judge it by the time now. */
			if (L != 0 && now < at)
				now = fdn__mono_ms() + 1;
			if (L != 0 && (now < at || now - at < iv)) {
				/* A live claim (or one being taken). */
				uint64_t left = at + iv - now;
				*soonest = left < *soonest ? left : *soonest;
				break;
			}
			if (atomic_compare_exchange_strong(&o->last, &L, ONCE_TAKING | now)) {
				atomic_store(&o->interval_ms, interval_ms);
				atomic_store(&o->tag, tag);
				atomic_store_explicit(&o->won, 1, memory_order_relaxed);
				atomic_store_explicit(&o->lost, 0, memory_order_relaxed);
				atomic_store(&o->last, now);
				return (int)i;
			}
		}
	}
	return FDN_ENOSPACE;
}

/* Place tag (holding its home lock) in the first never-used or stale slot
 * of its window, as a win at the time of the take.  A window full of
 * claims of which one expires within ONCE_EXPIRY_WAIT ms is waited for
 * (twice at most): with short intervals a burst of keys fills a window in
 * one millisecond -- seen with 1 ms intervals, eight processes and a busy
 * machine -- and every claim in it is gone at the next tick.  The slot,
 * or FDN_ENOSPACE. */
static int once_place(const struct fdn__tel *t, uint64_t tag, uint32_t interval_ms)
{
	for (int pass = 0;; pass++) {
		uint64_t soonest;
		int i = once_place_pass(t, tag, interval_ms, &soonest);
		if (i >= 0 || pass == 2 || soonest > ONCE_EXPIRY_WAIT)
			return i;
		struct timespec ts = {0, (long)soonest * 1000000L};
		nanosleep(&ts, NULL);
	}
}

int fdn_emit_once_per(fdn_segment *s, const char *name, uint32_t interval_ms, const void *key,
		      size_t klen, const struct fdn_measurement *m, size_t nm,
		      const struct fdn_attr *attrs, size_t na)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	if (interval_ms == 0 || klen > 255 || (klen && !key))
		return FDN_EINVAL;
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, true, &t);
	if (r)
		return r;
	uint64_t tag = fdn__tel_tag(name, (size_t)nlen, key, klen);
	bool won = false;
	for (int again = 0; again < 4; again++) {
		int i = once_find(&t, tag);
		if (i < 0) {
			struct fdn_shm_once *home = once_at(&t, (uint32_t)(tag % FDN_TEL_ONCE));
			uint32_t me = t.shared ? fdn__batch_owner(s) : 0;
			r = once_lock(s, &t, home, me ? me : 1);
			if (r)
				return r;
			i = once_find(&t, tag);
			if (i < 0) {
				i = once_place(&t, tag, interval_ms);
				if (i >= 0)
					fdn__tel_put_name(once_at(&t, (uint32_t)i)->name,
							  sizeof(once_at(&t, 0)->name), name,
							  (size_t)nlen);
				atomic_store(&home->lock, 0);
				if (i < 0) {
					atomic_fetch_add_explicit(&t.hdr->nospace[FDN_TEL_T_ONCE],
								  1, memory_order_relaxed);
					return i;
				}
				won = true;
				break;
			}
			atomic_store(&home->lock, 0);
		}
		struct fdn_shm_once *o = once_at(&t, (uint32_t)i);
		uint64_t now = fdn__mono_ms() + 1, old = atomic_load(&o->last);
		bool busy = false;
		for (uint32_t k = 0; k < CAS_TRIES; k++) {
			if (old & ONCE_TAKING) {
				busy = true; /* being taken for another key */
				break;
			}
			if (old != 0 && (now < old || now - old < interval_ms))
				break;
			if (atomic_compare_exchange_weak(&o->last, &old, now)) {
				won = true;
				break;
			}
		}
		if (won && atomic_load(&o->tag) != tag)
			won = false; /* the slot was another key's by then */
		if (won) {
			atomic_store(&o->interval_ms, interval_ms);
			atomic_fetch_add_explicit(&o->won, 1, memory_order_relaxed);
			break;
		}
		if (!busy && atomic_load(&o->tag) == tag) {
			atomic_fetch_add_explicit(&o->lost, 1, memory_order_relaxed);
			return 0;
		}
		if (busy)
			sched_yield();
		/* The slot went to another key meanwhile: look again. */
	}
	if (!won)
		return 0;
	r = fdn__tel_emit(s, name, (size_t)nlen, m, nm, attrs, na);
	return r < 0 ? r : 1;
}

/* ---- rate limits --------------------------------------------------------------------- */

int fdn_rate_limit(fdn_segment *s, const char *id, uint32_t limit, uint32_t window_ms)
{
	size_t idlen = id ? strnlen(id, 256) : 0;
	if (idlen == 0 || idlen > 255 || limit == 0 || limit > FDN_RATE_COUNT_MAX || window_ms == 0)
		return FDN_EINVAL;
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, true, &t);
	if (r)
		return r;
	unsigned char w[4] = {(unsigned char)window_ms, (unsigned char)(window_ms >> 8),
			      (unsigned char)(window_ms >> 16), (unsigned char)(window_ms >> 24)};
	bool fresh;
	int i = fdn__tel_slot_get(&t, FDN_TEL_T_RATE, fdn__tel_tag(id, idlen, w, 4), true, &fresh);
	if (i < 0)
		return i;
	struct fdn_shm_rate *x = fdn__tel_slot_at(&t, FDN_TEL_T_RATE, (uint32_t)i);
	if (fresh) {
		x->window_ms = window_ms;
		fdn__tel_put_name(x->name, sizeof(x->name), id, idlen);
	}
	bool ok = fdn__tel_window_admit(&x->state, fdn__mono_ms() / window_ms, limit);
	atomic_fetch_add_explicit(ok ? &x->admitted : &x->denied, 1, memory_order_relaxed);
	return ok ? 1 : 0;
}
