/*
 * telemetry_batch.c - batches (fdn_batch_add, fdn_batch_flush...): values
 * added by many processes, emitted as one summary event per batch
 * (table FDN_TEL_T_BATCHES of the region FDN_SVC_TELEMETRY).
 *
 * Who calls whom.  Called through the public API only (and the audit reads
 * its slots: telemetry_audit.c).  Calls telemetry_sample.c (the named
 * slots, owners), telemetry.c (fdn__tel_emit: a summary is an event) and
 * the clock (shm/clock.c).
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

/* ---- batches --------------------------------------------------------------------------- */

/*
 * Every value added lands in exactly one summary.  The argument:
 *
 * ITEM WORDS.  Item c of bank k is two words: bits (the value) and tag =
 * generation (63..40) | state (39..32) | payload (31..0).  States:
 *   0         never used;
 *   RESERVED  an adder of that generation owns the item and is writing
 *             bits (payload: its process, fdn__batch_owner);
 *   WRITTEN   bits hold a value no summary has yet (payload: a check of
 *             the bits and the generation);
 *   TAKEN     the value was taken into a summary;
 *   VOID      the emitter of that generation gave up waiting for its
 *             adder, whose reservation is void (it adds again);
 *   LOST      the owner died while RESERVED: its value is missing.
 * Every change of a tag is a CAS from a value its author read, to a tag
 * of the same or a later generation (generations in one item only grow;
 * they wrap after 2^24, so an actor stalled for 2^23 generations of one
 * batch could be confused; nothing else can be).  Hence no tag value ever
 * comes back (no ABA): a CAS from T succeeds only if nobody changed the
 * item since T was read.
 *
 * ONE OWNER PER VALUE.  A value enters the batch by the CAS RESERVED ->
 * WRITTEN of its adder and leaves it by the one CAS that moves that item
 * away from WRITTEN (to TAKEN, by an emitter or a sweep, which then puts
 * it in the summary it emits).  Only one CAS from a given WRITTEN tag can
 * succeed, so no value is in two summaries.  bits are written only by the
 * adder holding RESERVED (it got there by CAS from a free state; nobody
 * else can leave RESERVED except on the kernel's word that the owner is
 * dead), so bits are stable while the tag says WRITTEN, and a taker reads
 * them between its load of the tag and its CAS (acquire/release on the
 * tag order the accesses).
 *
 * NOTHING LEFT BEHIND.  A generation g ends when a CAS on ctl closes it
 * with n reservations; its closer (one caller) collects items 0..n-1 of
 * bank g & 1 (batch_collect): it takes WRITTEN(g); waits for RESERVED(g)
 * (writing is two stores) up to BATCH_WRITE_WAIT, LOST if the owner died;
 * an item its adder has not reached yet it waits for up to
 * BATCH_ARRIVE_WAIT, then VOIDs (the adder sees VOID(g), or a later
 * generation, and adds its value again under a new reservation: the
 * adder returns only once its value is WRITTEN).  An adder never
 * overwrites an item whose older value is still WRITTEN or RESERVED: it
 * gives up that reservation and adds again.  So a value is never
 * overwritten; it can only be left WRITTEN after its generation's emitter
 * passed (the emitter stopped waiting for a preempted writer, or the item
 * was written late into a free item).  Such a value is taken by the next
 * emitter that meets it: every emitter sweeps both banks for values of
 * generations before g - 1, fdn_batch_flush for every generation before
 * the open one, and an emitter meeting an older WRITTEN value at an
 * item of its own generation takes it.  Nothing waits without bound: a
 * preempted adder or emitter delays a summary, never drops a value.
 *
 * missing counts exactly the items found RESERVED by a process the kernel
 * says is dead (fdn__tel_owner_dead): adders that died mid-add.  A process
 * that dies while emitting loses the values it had taken (the summary is
 * never emitted); an adder that dies between its reservation and claiming
 * its item leaves no value behind and is not counted.
 */

#define BATCH_ITEMS_DEFAULT 64u
#define BATCH_AGE_DEFAULT   1000u
#define BATCH_ARRIVE_WAIT   (2u * 1000000u)  /* ns */
#define BATCH_WRITE_WAIT    (50u * 1000000u) /* ns */

uint32_t fdn__batch_check(uint64_t bits, uint32_t gen)
{
	uint64_t z = bits ^ ((uint64_t)gen << 40) ^ 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}

static void batch_cfg(const struct fdn_shm_batch *b, uint32_t *items, uint32_t *age)
{
	uint64_t c = atomic_load_explicit(&b->cfg, memory_order_relaxed);
	*items = (uint32_t)c;
	*age = (uint32_t)(c >> 32);
	if (*items == 0 || *items > FDN_BATCH_ITEMS_MAX)
		*items = BATCH_ITEMS_DEFAULT;
	if (*age == 0)
		*age = BATCH_AGE_DEFAULT;
}

/* A summary being collected. */
struct batch_sum {
	double sum, mn, mx;
	uint32_t got, missing;
};

static void sum_add(struct batch_sum *a, double v)
{
	a->mn = a->got == 0 || v < a->mn ? v : a->mn;
	a->mx = a->got == 0 || v > a->mx ? v : a->mx;
	a->sum += v;
	a->got++;
}

/* Take the value of item `it`, whose tag was T (WRITTEN), into a: true if
 * this caller's CAS moved it to TAKEN.  A value that fails its check (a
 * damaged segment) is taken and counted missing. */
static bool item_take(struct fdn_shm_batch *b, struct fdn_shm_batch_item *it, uint64_t T,
		      struct batch_sum *a)
{
	uint64_t bits = atomic_load_explicit(&it->bits, memory_order_relaxed);
	if (!atomic_compare_exchange_strong(&it->tag, &T, IT_TAG(IT_GEN(T), IT_TAKEN, 0)))
		return false;
	double v;
	memcpy(&v, &bits, sizeof(v));
	if ((uint32_t)T == fdn__batch_check(bits, IT_GEN(T)) && isfinite(v)) {
		sum_add(a, v);
	} else {
		a->missing++;
		atomic_fetch_add(&b->missing, 1);
	}
	return true;
}

/* Declare item `it` (tag T, RESERVED by a dead owner) lost. */
static bool item_lose(struct fdn_shm_batch *b, struct fdn_shm_batch_item *it, uint64_t T,
		      struct batch_sum *a)
{
	if (!atomic_compare_exchange_strong(&it->tag, &T, IT_TAG(IT_GEN(T), IT_LOST, 0)))
		return false;
	a->missing++;
	atomic_fetch_add(&b->missing, 1);
	return true;
}

/* Wait a little: yields first, then short sleeps (a preempted peer needs
 * the CPU this caller holds). */
static void batch_pause(unsigned *round)
{
	if ((*round)++ < 64) {
		sched_yield();
		return;
	}
	struct timespec ts = {0, 50000};
	nanosleep(&ts, NULL);
}

/* The closer of generation g collects item c of bank g & 1 into a. */
static void batch_collect(fdn_segment *s, const struct fdn__tel *t, struct fdn_shm_batch *b,
			  uint32_t g, uint32_t c, struct batch_sum *a)
{
	struct fdn_shm_batch_item *it = &b->items[g & 1][c];
	uint64_t start = fdn__mono_ns(), next_check = 0;
	unsigned round = 0;
	for (;;) {
		uint64_t T = atomic_load_explicit(&it->tag, memory_order_acquire);
		unsigned st = IT_STATE(T);
		uint32_t tg = IT_GEN(T);
		uint64_t waited = fdn__mono_ns() - start;
		if (st != IT_FREE && tg == g) {
			if (st == IT_WRITTEN) {
				if (item_take(b, it, T, a))
					return;
				continue;
			}
			if (st != IT_RESERVED)
				return; /* TAKEN, VOID or LOST: resolved */
			/* Its adder is between its two stores. */
			if (waited >= next_check) {
				if (fdn__tel_owner_dead(s, t, (uint32_t)T)) {
					if (item_lose(b, it, T, a))
						return;
					continue;
				}
				next_check = waited + 1000000u;
			}
			if (waited >= BATCH_WRITE_WAIT)
				return; /* left WRITTEN later: a later sweep takes it */
			batch_pause(&round);
			continue;
		}
		if (st != IT_FREE && !fdn__batch_gen_before(tg, g))
			return; /* a later generation has it: resolved long ago */
		/* An older tag: g's adder has not claimed the item yet. */
		if (st == IT_WRITTEN) {
			item_take(b, it, T, a); /* an older value nobody took */
			continue;
		}
		if (st == IT_RESERVED) {
			/* An older adder still writes: g's adder will give
			 * up this item when it sees it. */
			if (fdn__tel_owner_dead(s, t, (uint32_t)T)) {
				item_lose(b, it, T, a);
				continue;
			}
			return;
		}
		if (waited < BATCH_ARRIVE_WAIT) {
			batch_pause(&round);
			continue;
		}
		uint64_t v = IT_TAG(g, IT_VOID, 0);
		if (atomic_compare_exchange_strong(&it->tag, &T, v))
			return;
	}
}

/* Take every WRITTEN value of a generation before `limit` in both banks:
 * values whose emitter had passed their item. */
static void batch_sweep(struct fdn_shm_batch *b, uint32_t limit, struct batch_sum *a)
{
	for (unsigned k = 0; k < 2; k++)
		for (uint32_t c = 0; c < FDN_BATCH_ITEMS_MAX; c++) {
			struct fdn_shm_batch_item *it = &b->items[k][c];
			uint64_t T = atomic_load_explicit(&it->tag, memory_order_acquire);
			while (IT_STATE(T) == IT_WRITTEN &&
			       fdn__batch_gen_before(IT_GEN(T), limit)) {
				if (item_take(b, it, T, a))
					break;
				T = atomic_load_explicit(&it->tag, memory_order_acquire);
			}
		}
}

/* Summarise generation g (n items) of batch b, which this caller closed
 * (n == 0: no generation closed, only the sweep), and emit it if it has
 * anything.  Sweeps generations before `limit`.  1 emitted, 0 nothing. */
static int batch_emit(fdn_segment *s, const struct fdn__tel *t, struct fdn_shm_batch *b,
		      const char *name, size_t nlen, uint32_t g, uint32_t n, uint32_t limit)
{
	struct batch_sum a = {0, 0, 0, 0, 0};
	for (uint32_t c = 0; c < n && c < FDN_BATCH_ITEMS_MAX; c++)
		batch_collect(s, t, b, g, c, &a);
	batch_sweep(b, limit, &a);
	if (a.got == 0 && a.missing == 0)
		return 0; /* every reservation was void: nothing to report */
	atomic_fetch_add(&b->flushed, 1);
	if (!name)
		return 1; /* a batch whose name was never written: discarded */
	struct fdn_measurement m[5] = {
	    {"count", a.got}, {"sum", a.sum}, {"min", a.mn}, {"max", a.mx}, {"missing", a.missing}};
	int r = fdn__tel_emit(s, name, nlen, m, a.missing ? 5 : 4, NULL, 0);
	return r < 0 ? r : 1;
}

/* Put value into item c of generation g, reserved by this caller: true
 * once it is WRITTEN; false if the reservation is void (the emitter gave
 * up on it, or an older value still holds the item): add it again. */
static bool item_put(const fdn_segment *s, const struct fdn__tel *t, struct fdn_shm_batch *b,
		     uint32_t g, uint32_t c, double value)
{
	struct fdn_shm_batch_item *it = &b->items[g & 1][c];
	uint64_t T = atomic_load_explicit(&it->tag, memory_order_acquire);
	uint64_t mine = IT_TAG(g, IT_RESERVED, t->shared ? fdn__batch_owner(s) : 0);
	for (;;) {
		unsigned st = IT_STATE(T);
		if (st != IT_FREE && !fdn__batch_gen_before(IT_GEN(T), g))
			return false; /* VOID(g), or a later generation's */
		if (st == IT_WRITTEN || st == IT_RESERVED)
			return false; /* an older value not yet taken */
		if (atomic_compare_exchange_strong(&it->tag, &T, mine))
			break;
	}
	uint64_t bits;
	memcpy(&bits, &value, sizeof(bits));
	atomic_store_explicit(&it->bits, bits, memory_order_relaxed);
	/* Release: the bits before the tag that publishes them. */
	if (!atomic_compare_exchange_strong(&it->tag, &mine,
					    IT_TAG(g, IT_WRITTEN, fdn__batch_check(bits, g))))
		return false; /* declared dead: only on a kernel's mistake */
	atomic_fetch_add_explicit(&b->added, 1, memory_order_relaxed);
	return true;
}

/* Close generation g of b if its control word is still w: true if this
 * caller closed it (and must emit it). */
static bool batch_close(struct fdn_shm_batch *b, uint64_t w)
{
	return atomic_compare_exchange_strong(&b->ctl, &w,
					      FDN_BATCH_CTL(FDN_BATCH_GEN(w) + 1, 0, 0));
}

static bool batch_due(uint64_t w, uint32_t max_items, uint32_t age, uint32_t now32)
{
	uint32_t c = FDN_BATCH_COUNT(w);
	return c > 0 && (c >= max_items || (uint32_t)(now32 - FDN_BATCH_T0(w)) >= age);
}

static int batch_slot(fdn_segment *s, const char *name, bool claim, struct fdn__tel *t,
		      struct fdn_shm_batch **out, int *nlen)
{
	*nlen = fdn__event_name_len(name);
	if (*nlen < 0)
		return *nlen;
	int r = fdn__tel_ctx(s, true, t);
	if (r)
		return r;
	bool fresh;
	int i = fdn__tel_slot_get(t, FDN_TEL_T_BATCHES, fdn__tel_tag(name, (size_t)*nlen, NULL, 0),
				  claim, &fresh);
	if (i < 0)
		return i;
	*out = fdn__tel_slot_at(t, FDN_TEL_T_BATCHES, (uint32_t)i);
	if (fresh)
		fdn__tel_put_name((*out)->name, sizeof((*out)->name), name, (size_t)*nlen);
	return 0;
}

int fdn_batch_config(fdn_segment *s, const char *name, uint32_t max_items, uint32_t max_age_ms)
{
	struct fdn__tel t;
	struct fdn_shm_batch *b;
	int nlen;
	if (max_items == 0 || max_items > FDN_BATCH_ITEMS_MAX || max_age_ms == 0)
		return fdn__event_name_len(name) < 0 ? FDN_EEVNAME : FDN_EINVAL;
	int r = batch_slot(s, name, true, &t, &b, &nlen);
	if (r)
		return r;
	atomic_store(&b->cfg, (uint64_t)max_age_ms << 32 | max_items);
	return 0;
}

/*
 * Exactly once per generation: a generation ends only by a CAS of the
 * control word from (g, c, t) to (g + 1, 0, 0), which succeeds for one
 * caller; that caller alone emits g.  An adder reserves item c of g by CAS
 * (g, c, t) -> (g, c + 1, t), or, when c + 1 reaches max_items, by the
 * closing CAS itself (it then puts its item and emits).  It then puts its
 * value into the item (item_put; the argument for the items is above
 * batch_collect); a void reservation makes it reserve again.
 */
int fdn_batch_add(fdn_segment *s, const char *name, double value)
{
	struct fdn__tel t;
	struct fdn_shm_batch *b;
	int nlen;
	if (!isfinite(value))
		return fdn__event_name_len(name) < 0 ? FDN_EEVNAME : FDN_EINVAL;
	int r = batch_slot(s, name, true, &t, &b, &nlen);
	if (r)
		return r;
	uint32_t max_items, age, emitted = 0;
	batch_cfg(b, &max_items, &age);
	uint64_t w = atomic_load(&b->ctl);
	for (uint32_t k = 0; k < CAS_TRIES; k++) {
		uint32_t g = FDN_BATCH_GEN(w), c = FDN_BATCH_COUNT(w);
		uint32_t now32 = (uint32_t)fdn__mono_ms();
		if (batch_due(w, max_items, age, now32)) {
			if (batch_close(b, w)) {
				r = batch_emit(s, &t, b, name, (size_t)nlen, g, c, g - 1);
				if (r < 0)
					return r;
				emitted += (uint32_t)r;
			}
			w = atomic_load(&b->ctl);
			continue;
		}
		bool fills = c + 1 >= max_items;
		uint64_t nw = fills ? FDN_BATCH_CTL(g + 1, 0, 0)
				    : FDN_BATCH_CTL(g, c + 1, c == 0 ? now32 : FDN_BATCH_T0(w));
		if (!atomic_compare_exchange_weak(&b->ctl, &w, nw))
			continue;
		bool put = item_put(s, &t, b, g, c, value);
		if (fills) {
			r = batch_emit(s, &t, b, name, (size_t)nlen, g, c + 1, g - 1);
			if (r < 0)
				return r;
			emitted += (uint32_t)r;
		}
		if (put)
			return (int)emitted;
		w = atomic_load(&b->ctl);
	}
	return FDN_ETIMEDOUT;
}

/* The event name of a batch slot, if its display name is whole and is the
 * slot's key; else NULL. */
static const char *batch_name(const struct fdn_shm_batch *b, char *buf, size_t *nlen)
{
	fdn__tel_get_name(buf, FDN_EVENT_NAME_MAX + 1, b->name, sizeof(b->name));
	int n = fdn__event_name_len(buf);
	if (n < 0 || fdn__tel_tag(buf, (size_t)n, NULL, 0) != atomic_load(&b->tag))
		return NULL;
	*nlen = (size_t)n;
	return buf;
}

/* Close the open generation of b if it holds items (due_only: and is
 * due) and emit it; all: also take every value an emitter passed. */
static int batch_flush_slot(fdn_segment *s, const struct fdn__tel *t, struct fdn_shm_batch *b,
			    bool due_only)
{
	char buf[FDN_EVENT_NAME_MAX + 1];
	size_t nlen = 0;
	uint32_t max_items, age;
	batch_cfg(b, &max_items, &age);
	uint32_t now32 = (uint32_t)fdn__mono_ms();
	uint64_t w = atomic_load(&b->ctl);
	uint32_t g = FDN_BATCH_GEN(w), n = FDN_BATCH_COUNT(w);
	if (n == 0 || (due_only && !batch_due(w, max_items, age, now32))) {
		if (due_only)
			return 0;
		n = 0; /* nothing open: only the values left behind */
	} else if (!batch_close(b, w)) {
		return 0; /* someone else closed it (and emits it) */
	}
	const char *name = batch_name(b, buf, &nlen);
	return batch_emit(s, t, b, name, nlen, g, n, due_only ? g - 1 : g + (n ? 1 : 0));
}

int fdn_batch_flush_due(fdn_segment *s)
{
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, true, &t), n = 0;
	if (r)
		return r;
	for (uint32_t i = 0; i < FDN_TEL_BATCHES; i++) {
		struct fdn_shm_batch *b = fdn__tel_slot_at(&t, FDN_TEL_T_BATCHES, i);
		if (atomic_load_explicit(&b->tag, memory_order_acquire) == 0)
			continue;
		r = batch_flush_slot(s, &t, b, true);
		if (r < 0)
			return r;
		n += r;
	}
	return n;
}

int fdn_batch_flush(fdn_segment *s, const char *name)
{
	struct fdn__tel t;
	struct fdn_shm_batch *b;
	int nlen;
	int r = batch_slot(s, name, false, &t, &b, &nlen);
	return r ? r : batch_flush_slot(s, &t, b, false);
}
