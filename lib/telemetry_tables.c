/*
 * telemetry_tables.c - the shared decision tables: samplers, once-per
 * claims, rate limiters and batches (region FDN_SVC_TELEMETRY, formats in
 * shm/layout.h), and the telemetry audit.
 *
 * Who calls whom.  telemetry.c calls fdn__tel_ctx and fdn__sampler_decide
 * (every emit asks its sampler); this file calls telemetry.c back:
 * fdn__tel_emit (once-per, batches), fdn__rand01 (samplers), fdn__ring_map
 * (the audit).  Also backend.c (fdn__backend, in fdn__tel_ctx),
 * telemetry_names.c and the clock (shm/clock.c).  The circle with
 * telemetry.c: see the top of telemetry.c.
 *
 * NAMED SLOTS.  Each table is an array of slots named by a 64-bit tag
 * (XXH3 of the key).  A slot is claimed by one CAS 0 -> tag and never freed;
 * a key's slot is found by linear probing from tag % n.  Because slots are
 * never freed, every slot between a key's home and its slot was claimed
 * (by another tag) before the key's slot was, so every prober of that key
 * passes them and stops at the same slot: a tag is in at most one slot.
 * (A claimant that loses the CAS on a free slot re-reads it: if the winner
 * has its tag, that is its slot.)  A full table gives FDN_ENOSPACE and
 * changes nothing.  Distinct keys with equal tags share a slot: they are
 * one key to these tables (odds ~ k^2 / 2^65 with k keys).
 *
 * Each decision is then one CAS on one word of the slot; the argument for
 * each is at its function.  Every CAS loop retries only because another
 * caller's CAS on the same word succeeded, so the loops are lock-free; they
 * are also capped (CAS_TRIES) and give the answer that cannot over-admit
 * (not sampled, not admitted, suppressed) if the cap is ever reached.
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
#include <xxhash.h>

#define CAS_TRIES (1u << 20)

static_assert((int)FDN_SAMPLER_ALWAYS == FDN_SAMPLE_ALWAYS &&
		  (int)FDN_SAMPLER_NEVER == FDN_SAMPLE_NEVER &&
		  (int)FDN_SAMPLER_RANDOM == FDN_SAMPLE_RANDOM &&
		  (int)FDN_SAMPLER_RATE_LIMITED == FDN_SAMPLE_RATE_LIMITED &&
		  (int)FDN_SAMPLER_RESERVOIR == FDN_SAMPLE_RESERVOIR &&
		  (int)FDN_SAMPLER_ADAPTIVE == FDN_SAMPLE_ADAPTIVE,
	      "sampler kinds");

/* The process-local tables (s == NULL or a local backend): the same
 * layout, in this process's memory (untouched pages cost nothing). */
static _Alignas(4096) unsigned char local_region[FDN_TELEMETRY_REGION_SIZE];
static struct fdn_shm_tel_hdr local_hdr;

/* The segment's tables (the region entry is the one attach validated). */
static int seg_ctx(fdn_segment *s, struct fdn__tel *t)
{
	const struct fdn_shm_region *rg = &s->hdr->svc[FDN_SVC_TELEMETRY];
	if (rg->size != FDN_TELEMETRY_REGION_SIZE || rg->off % 4096 != 0 || rg->off > s->size ||
	    rg->size > s->size - rg->off)
		return FDN_EBADSEG;
	*t = (struct fdn__tel){fdn__tel_hdr(s), s->base + rg->off, true, !s->readonly, s->id};
	return 0;
}

int fdn__tel_ctx(fdn_segment *s, bool write, struct fdn__tel *t)
{
	if (s) {
		int r = fdn__seg_usable(s);
		if (r)
			return r;
		int b = fdn__backend(s, FDN__SVC_SAMPLED_EVENTS);
		if (b < 0)
			return b;
		if (b == FDN__SHARED) {
			if (write && s->readonly)
				return FDN_ERDONLY;
			return seg_ctx(s, t);
		}
	} else {
		int b = fdn__backend(NULL, FDN__SVC_SAMPLED_EVENTS);
		if (b < 0)
			return b;
	}
	*t = (struct fdn__tel){&local_hdr, local_region, false, true, 0};
	return 0;
}

/* ---- named slots ------------------------------------------------------------------- */

struct table {
	size_t off, stride;
	uint32_t n;
};

static const struct table tables[FDN_TEL_NTABLES] = {
    [FDN_TEL_T_SAMPLERS] = {FDN_TEL_OFF_SAMPLERS, sizeof(struct fdn_shm_sampler), FDN_TEL_SAMPLERS},
    [FDN_TEL_T_ONCE] = {FDN_TEL_OFF_ONCE, sizeof(struct fdn_shm_once), FDN_TEL_ONCE},
    [FDN_TEL_T_RATE] = {FDN_TEL_OFF_RATE, sizeof(struct fdn_shm_rate), FDN_TEL_RATE},
    [FDN_TEL_T_BATCHES] = {FDN_TEL_OFF_BATCHES, sizeof(struct fdn_shm_batch), FDN_TEL_BATCHES},
};

static void *slot_at(const struct fdn__tel *t, unsigned tb, uint32_t i)
{
	return t->region + tables[tb].off + (size_t)i * tables[tb].stride;
}

/* The tag of key a (and b, after a NUL). */
static uint64_t tag_of(const void *a, size_t alen, const void *b, size_t blen)
{
	unsigned char buf[FDN_EVENT_NAME_MAX + 1 + 256 + 8];
	if (alen + 1 + blen > sizeof(buf))
		return 1;
	memcpy(buf, a, alen);
	buf[alen] = 0;
	if (blen)
		memcpy(buf + alen + 1, b, blen);
	uint64_t h = XXH3_64bits(buf, alen + 1 + blen);
	return h ? h : 1;
}

/*
 * The slot of tag in table tb: its index, FDN_ENOTFOUND (claim false), or
 * FDN_ENOSPACE.  *fresh: this call claimed it (the caller then writes the
 * display fields).  At most n probes.
 */
static int slot_get(const struct fdn__tel *t, unsigned tb, uint64_t tag, bool claim, bool *fresh)
{
	uint32_t n = tables[tb].n;
	*fresh = false;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (uint32_t)((tag + k) % n);
		_Atomic uint64_t *w = slot_at(t, tb, i);
		uint64_t v = atomic_load_explicit(w, memory_order_acquire);
		if (v == 0) {
			if (!claim || !t->writable)
				return FDN_ENOTFOUND;
			if (atomic_compare_exchange_strong(w, &v, tag)) {
				*fresh = true;
				return (int)i;
			}
			/* Lost the slot: v is the winner's tag. */
		}
		if (v == tag)
			return (int)i;
	}
	if (claim && t->writable)
		atomic_fetch_add_explicit(&t->hdr->nospace[tb], 1, memory_order_relaxed);
	return claim && t->writable ? FDN_ENOSPACE : FDN_ENOTFOUND;
}

/* A display name into a slot just claimed. */
static void put_name(char *dst, size_t cap, const void *name, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, name, len);
	dst[len] = 0;
}

/* A display name out of a slot (NUL-terminated, any bytes). */
static void get_name(char *dst, size_t cap, const char *src, size_t srccap)
{
	size_t len = strnlen(src, srccap < cap ? srccap : cap - 1);
	memcpy(dst, src, len);
	dst[len] = 0;
}

/* ---- fixed windows (rate_limited samplers and rate limiters) ---------------------- */

/*
 * Admit one request in window `win` of the word w: bits 63..24 the window
 * number, 23..0 the admissions in it.  A request is admitted only by a CAS
 * that raises the count of the window the word holds, from below limit, or
 * that starts a later window at 1; window numbers in the word only grow.
 * So each window's count goes 0..limit one admission per successful CAS:
 * never more than limit.  A request is refused only after reading a count
 * >= limit in the window it is counted in (a request whose clock is behind
 * the word counts in the word's window): if more than limit requests come
 * in a window, exactly limit are admitted.
 */
static bool window_admit(_Atomic uint64_t *w, uint64_t win, uint32_t limit)
{
	uint64_t old = atomic_load(w);
	win &= (1ull << 40) - 1;
	for (uint32_t k = 0; k < CAS_TRIES; k++) {
		uint64_t ow = old >> 24, c = old & FDN_RATE_COUNT_MAX, nw;
		if (ow >= win) {
			if (c >= limit)
				return false;
			nw = old + 1;
		} else {
			nw = win << 24 | 1;
		}
		if (atomic_compare_exchange_weak(w, &old, nw))
			return true;
	}
	return false;
}

/* ---- samplers ------------------------------------------------------------------- */

static float param_of(uint64_t spec)
{
	uint32_t bits = FDN_SPEC_PARAM(spec);
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

static uint32_t bits_of(float f)
{
	uint32_t bits;
	memcpy(&bits, &f, sizeof(bits));
	return bits;
}

static struct fdn_shm_sampler *sampler_at(const struct fdn__tel *t, uint32_t i)
{
	return slot_at(t, FDN_TEL_T_SAMPLERS, i);
}

/* reservoir(n): exactly the first n events since the spec (generation gen)
 * was set.  The word holds the generation it counts for and the count; a
 * CAS raises the count from below n, or restarts it at 1 for a newer
 * generation.  A caller whose spec is older than the word's re-reads the
 * spec (it only ever changes forward).  1 keep, 0 drop, -1 spec changed. */
static int reservoir_take(struct fdn_shm_sampler *sp, uint64_t spec)
{
	uint64_t gen = FDN_SPEC_GEN(spec), n = (uint64_t)param_of(spec);
	uint64_t old = atomic_load(&sp->reservoir);
	for (uint32_t k = 0; k < CAS_TRIES; k++) {
		uint64_t g = old >> 40, c = old & ((1ull << 40) - 1), nw;
		if (g != gen) {
			if (FDN_SPEC_GEN(atomic_load(&sp->spec)) != gen)
				return -1;
			nw = gen << 40 | 1; /* the word is from an older spec */
			if (n == 0)
				return 0;
		} else {
			if (c >= n)
				return 0;
			nw = old + 1;
		}
		if (atomic_compare_exchange_weak(&sp->reservoir, &old, nw))
			return 1;
	}
	return 0;
}

/* adaptive(target): the first event of a second (the one whose CAS moves
 * the window word to it) sets p = min(1, target / N), N the events counted
 * in the second before (none: p = 1); every event is kept with
 * probability p. */
static bool adaptive_take(struct fdn_shm_sampler *sp, uint64_t spec)
{
	uint64_t sec = fdn__mono_ms() / 1000u & ((1ull << 40) - 1);
	uint64_t old = atomic_load(&sp->window);
	for (uint32_t k = 0; k < CAS_TRIES; k++) {
		uint64_t ws = old >> 24, c = old & FDN_RATE_COUNT_MAX;
		if (ws >= sec) {
			if (c == FDN_RATE_COUNT_MAX ||
			    atomic_compare_exchange_weak(&sp->window, &old, old + 1))
				break;
			continue;
		}
		if (atomic_compare_exchange_weak(&sp->window, &old, sec << 24 | 1)) {
			double nprev = ws + 1 == sec ? (double)c : 0.0;
			double p = nprev > 0 ? (double)param_of(spec) / nprev : 1.0;
			p = p < 1.0 ? p : 1.0;
			uint64_t pb;
			memcpy(&pb, &p, sizeof(pb));
			atomic_store_explicit(&sp->prob, pb, memory_order_relaxed);
			break;
		}
	}
	uint64_t pb = atomic_load_explicit(&sp->prob, memory_order_relaxed);
	double p = 1.0;
	if (pb)
		memcpy(&p, &pb, sizeof(p));
	return p >= 1.0 || fdn__rand01() < p;
}

static bool sampler_apply(struct fdn_shm_sampler *sp)
{
	atomic_fetch_add(&sp->total, 1);
	bool keep = true;
	for (int again = 0; again < 4; again++) {
		uint64_t spec = atomic_load(&sp->spec);
		switch (FDN_SPEC_KIND(spec)) {
		case FDN_SAMPLE_NEVER:
			keep = false;
			break;
		case FDN_SAMPLE_RANDOM:
			keep = fdn__rand01() < param_of(spec);
			break;
		case FDN_SAMPLE_RATE_LIMITED:
			keep = window_admit(&sp->window, fdn__mono_ms() / 1000u,
					    (uint32_t)param_of(spec));
			break;
		case FDN_SAMPLE_RESERVOIR: {
			int k = reservoir_take(sp, spec);
			if (k < 0)
				continue;
			keep = k == 1;
			break;
		}
		case FDN_SAMPLE_ADAPTIVE:
			keep = adaptive_take(sp, spec);
			break;
		default: /* always (and anything unknown) */
			keep = true;
			break;
		}
		break;
	}
	if (keep)
		atomic_fetch_add(&sp->sampled, 1);
	return keep;
}

bool fdn__sampler_decide(struct fdn__tel *t, const char *name, size_t nlen, int32_t *cell)
{
	int i;
	if (cell && *cell > 0 && (uint32_t)*cell <= FDN_TEL_SAMPLERS) {
		i = *cell - 1;
	} else {
		bool fresh;
		i = slot_get(t, FDN_TEL_T_SAMPLERS, tag_of(name, nlen, NULL, 0), true, &fresh);
		if (i < 0)
			return true;
		if (fresh)
			put_name(sampler_at(t, (uint32_t)i)->name, 128, name, nlen);
		if (cell)
			*cell = i + 1;
	}
	return sampler_apply(sampler_at(t, (uint32_t)i));
}

static bool sampler_valid(const struct fdn_sampler *sp)
{
	double p = sp->param;
	switch (sp->kind) {
	case FDN_SAMPLER_ALWAYS:
	case FDN_SAMPLER_NEVER:
		return true;
	case FDN_SAMPLER_RANDOM:
		return p >= 0 && p <= 1;
	case FDN_SAMPLER_RATE_LIMITED:
		return p >= 1 && p <= FDN_RATE_COUNT_MAX && p == (double)(uint32_t)p;
	case FDN_SAMPLER_RESERVOIR:
		return p >= 0 && p <= (1u << 24) && p == (double)(uint32_t)p;
	case FDN_SAMPLER_ADAPTIVE:
		return p > 0 && p <= 1e9;
	}
	return false;
}

static const char *const kind_names[] = {"always",       "never",     "random",
					 "rate_limited", "reservoir", "adaptive"};

int fdn_sampler_parse(const char *text, struct fdn_sampler *out)
{
	if (!text || !out)
		return FDN_ESAMPLER;
	for (unsigned k = 0; k < 6; k++) {
		size_t n = strlen(kind_names[k]);
		if (strncmp(text, kind_names[k], n) != 0)
			continue;
		struct fdn_sampler sp = {(enum fdn_sampler_kind)k, 0};
		const char *rest = text + n;
		if (k <= FDN_SAMPLER_NEVER) {
			if (*rest)
				continue;
		} else {
			char *end;
			if (*rest != '(' || !rest[1] || rest[1] == ' ')
				continue;
			sp.param = strtod(rest + 1, &end);
			if (end == rest + 1 || end[0] != ')' || end[1] != 0 || !isfinite(sp.param))
				return FDN_ESAMPLER;
		}
		if (!sampler_valid(&sp))
			return FDN_ESAMPLER;
		*out = sp;
		return 0;
	}
	return FDN_ESAMPLER;
}

void fdn_sampler_format(const struct fdn_sampler *sp, char *buf, size_t cap)
{
	unsigned k = (unsigned)sp->kind;
	if (k > 5)
		snprintf(buf, cap, "invalid(%u)", k);
	else if (k <= FDN_SAMPLER_NEVER)
		snprintf(buf, cap, "%s", kind_names[k]);
	else
		snprintf(buf, cap, "%s(%.9g)", kind_names[k], sp->param);
}

int fdn_sampler_set(fdn_segment *s, const char *name, const struct fdn_sampler *sp)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	if (!sp || !sampler_valid(sp))
		return FDN_ESAMPLER;
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, true, &t);
	if (r)
		return r;
	bool fresh;
	int i = slot_get(&t, FDN_TEL_T_SAMPLERS, tag_of(name, (size_t)nlen, NULL, 0), true, &fresh);
	if (i < 0)
		return i;
	struct fdn_shm_sampler *x = sampler_at(&t, (uint32_t)i);
	if (fresh)
		put_name(x->name, sizeof(x->name), name, (size_t)nlen);
	/* Adaptive restarts at p = 1 in a new second.  (rate_limited keeps
	 * its window: setting the same limit again admits no more.) */
	if (sp->kind == FDN_SAMPLER_ADAPTIVE) {
		atomic_store(&x->prob, 0);
		atomic_store(&x->window, 0);
	}
	uint64_t old = atomic_load(&x->spec);
	uint32_t pb = bits_of((float)sp->param);
	while (!atomic_compare_exchange_weak(&x->spec, &old,
					     FDN_SPEC_WORD(sp->kind, FDN_SPEC_GEN(old) + 1, pb)))
		;
	return 0;
}

static void sampler_stats(const struct fdn_shm_sampler *x, struct fdn_sampler_stats *out)
{
	get_name(out->name, sizeof(out->name), x->name, sizeof(x->name));
	uint64_t spec = atomic_load(&x->spec);
	out->sampler.kind = (enum fdn_sampler_kind)FDN_SPEC_KIND(spec);
	out->sampler.param = param_of(spec);
	out->sampled = atomic_load(&x->sampled);
	out->total = atomic_load(&x->total);
	switch (FDN_SPEC_KIND(spec)) {
	case FDN_SAMPLE_NEVER:
		out->probability = 0;
		break;
	case FDN_SAMPLE_RANDOM:
		out->probability = param_of(spec);
		break;
	case FDN_SAMPLE_ADAPTIVE: {
		uint64_t pb = atomic_load(&x->prob);
		out->probability = 1.0;
		if (pb)
			memcpy(&out->probability, &pb, sizeof(double));
		break;
	}
	case FDN_SAMPLE_RATE_LIMITED:
	case FDN_SAMPLE_RESERVOIR:
		out->probability = out->total ? (double)out->sampled / (double)out->total : 1.0;
		break;
	default:
		out->probability = 1.0;
	}
}

int fdn_sampler_get(fdn_segment *s, const char *name, struct fdn_sampler_stats *out)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	if (!out)
		return FDN_EINVAL;
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, false, &t);
	if (r)
		return r;
	bool fresh;
	int i =
	    slot_get(&t, FDN_TEL_T_SAMPLERS, tag_of(name, (size_t)nlen, NULL, 0), false, &fresh);
	if (i < 0)
		return i;
	sampler_stats(sampler_at(&t, (uint32_t)i), out);
	return 0;
}

int fdn_sampler_reset_stats(fdn_segment *s, const char *name)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, true, &t);
	if (r)
		return r;
	bool fresh;
	int i =
	    slot_get(&t, FDN_TEL_T_SAMPLERS, tag_of(name, (size_t)nlen, NULL, 0), false, &fresh);
	if (i < 0)
		return i;
	struct fdn_shm_sampler *x = sampler_at(&t, (uint32_t)i);
	/* sampled first, as the audit reads them: an event counts total
	 * before sampled, so subtracting what was seen, sampled then total,
	 * keeps every later event and leaves sampled <= total except for an
	 * event caught between its two increments. */
	uint64_t sampled = atomic_load(&x->sampled);
	atomic_fetch_sub(&x->sampled, sampled);
	uint64_t total = atomic_load(&x->total);
	atomic_fetch_sub(&x->total, total);
	return 0;
}

int fdn_samplers_foreach(fdn_segment *s, fdn_sampler_cb cb, void *arg)
{
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, false, &t);
	if (r)
		return r;
	int n = 0;
	for (uint32_t i = 0; i < FDN_TEL_SAMPLERS; i++) {
		struct fdn_shm_sampler *x = sampler_at(&t, i);
		if (atomic_load_explicit(&x->tag, memory_order_acquire) == 0)
			continue;
		struct fdn_sampler_stats st;
		sampler_stats(x, &st);
		n++;
		if (cb && (r = cb(arg, &st)) != 0)
			return r;
	}
	return n;
}

/* ---- owners: a process named in 32 bits ------------------------------------------- */

/* 11 bits of a process slot's claim word. */
static uint32_t owner_mix(uint64_t w)
{
	return (uint32_t)((w * 0x9E3779B97F4A7C15ull) >> 53);
}

/* A payload naming this process (a batch item's RESERVED owner, a
 * once-per home lock's holder): its slot + 1 (21 bits) and 11 bits of the
 * slot's claim word.  0 without a process slot. */
uint32_t fdn__batch_owner(const fdn_segment *s)
{
	if (!s || s->proc_idx >= s->nprocs)
		return 0;
	return (s->proc_idx + 1) | owner_mix(s->proc_word) << 21;
}

/* Is the owner named by a payload of fdn__batch_owner dead?  Its slot no longer
 * holds the claim word it had (reclaimed, or the reaper marked it dead),
 * or fdn__proc_alive says so.  (11 bits: a reused slot passes for the
 * old owner once in 2048 reuses; the item then waits for the new
 * process.) */
static bool owner_dead(const fdn_segment *s, const struct fdn__tel *t, uint32_t pl)
{
	if (!t->shared || pl == 0)
		return false;
	uint32_t idx = (pl & 0x1FFFFFu) - 1;
	if (idx >= s->nprocs)
		return true; /* no process ever had it */
	uint64_t w = atomic_load_explicit(&s->procs[idx].word, memory_order_acquire);
	if (owner_mix(w) != pl >> 21)
		return true;
	return !fdn__proc_alive(s, idx, w);
}

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
#define ONCE_WINDOW       512u
#define ONCE_LOCK_WAIT    1000000000ull /* ns */
#define ONCE_TAKING       (1ull << 63)
#define ONCE_TAKING_STALE 1000u /* ms */
#define ONCE_EXPIRY_WAIT  2u    /* ms: see once_place */

static struct fdn_shm_once *once_at(const struct fdn__tel *t, uint32_t i)
{
	return slot_at(t, FDN_TEL_T_ONCE, i % FDN_TEL_ONCE);
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
			if (owner_dead(s, t, v) &&
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
	uint64_t tag = tag_of(name, (size_t)nlen, key, klen);
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
					put_name(once_at(&t, (uint32_t)i)->name,
						 sizeof(once_at(&t, 0)->name), name, (size_t)nlen);
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
	int i = slot_get(&t, FDN_TEL_T_RATE, tag_of(id, idlen, w, 4), true, &fresh);
	if (i < 0)
		return i;
	struct fdn_shm_rate *x = slot_at(&t, FDN_TEL_T_RATE, (uint32_t)i);
	if (fresh) {
		x->window_ms = window_ms;
		put_name(x->name, sizeof(x->name), id, idlen);
	}
	bool ok = window_admit(&x->state, fdn__mono_ms() / window_ms, limit);
	atomic_fetch_add_explicit(ok ? &x->admitted : &x->denied, 1, memory_order_relaxed);
	return ok ? 1 : 0;
}

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
 * says is dead (owner_dead): adders that died mid-add.  A process
 * that dies while emitting loses the values it had taken (the summary is
 * never emitted); an adder that dies between its reservation and claiming
 * its item leaves no value behind and is not counted.
 */

#define BATCH_ITEMS_DEFAULT 64u
#define BATCH_AGE_DEFAULT   1000u
#define BATCH_ARRIVE_WAIT   (2u * 1000000u)  /* ns */
#define BATCH_WRITE_WAIT    (50u * 1000000u) /* ns */

enum {
	IT_FREE = FDN_BATCH_IT_FREE,
	IT_RESERVED = FDN_BATCH_IT_RESERVED,
	IT_WRITTEN = FDN_BATCH_IT_WRITTEN,
	IT_TAKEN = FDN_BATCH_IT_TAKEN,
	IT_VOID = FDN_BATCH_IT_VOID,
	IT_LOST = FDN_BATCH_IT_LOST,
};
#define IT_TAG   FDN_BATCH_IT_TAG
#define IT_GEN   FDN_BATCH_IT_GEN
#define IT_STATE FDN_BATCH_IT_STATE

/* Generation a is before b (24-bit, modulo wrap). */
static bool gen_before(uint32_t a, uint32_t b)
{
	uint32_t d = (b - a) & 0xFFFFFFu;
	return d != 0 && d < (1u << 23);
}

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
				if (owner_dead(s, t, (uint32_t)T)) {
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
		if (st != IT_FREE && !gen_before(tg, g))
			return; /* a later generation has it: resolved long ago */
		/* An older tag: g's adder has not claimed the item yet. */
		if (st == IT_WRITTEN) {
			item_take(b, it, T, a); /* an older value nobody took */
			continue;
		}
		if (st == IT_RESERVED) {
			/* An older adder still writes: g's adder will give
			 * up this item when it sees it. */
			if (owner_dead(s, t, (uint32_t)T)) {
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
			while (IT_STATE(T) == IT_WRITTEN && gen_before(IT_GEN(T), limit)) {
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
		if (st != IT_FREE && !gen_before(IT_GEN(T), g))
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
	int i = slot_get(t, FDN_TEL_T_BATCHES, tag_of(name, (size_t)*nlen, NULL, 0), claim, &fresh);
	if (i < 0)
		return i;
	*out = slot_at(t, FDN_TEL_T_BATCHES, (uint32_t)i);
	if (fresh)
		put_name((*out)->name, sizeof((*out)->name), name, (size_t)*nlen);
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
	get_name(buf, FDN_EVENT_NAME_MAX + 1, b->name, sizeof(b->name));
	int n = fdn__event_name_len(buf);
	if (n < 0 || tag_of(buf, (size_t)n, NULL, 0) != atomic_load(&b->tag))
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
		struct fdn_shm_batch *b = slot_at(&t, FDN_TEL_T_BATCHES, i);
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

/* ---- the audit ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Tags: every claimed slot reachable from its home through claimed slots,
 * no tag twice. */
static int check_tags(struct fdn__audit *ck, const struct fdn__tel *t, unsigned tb,
		      const char *what)
{
	uint32_t n = tables[tb].n, used = 0;
	uint64_t *tags = malloc(n * sizeof(*tags));
	if (!tags)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t tag = atomic_load((_Atomic uint64_t *)slot_at(t, tb, i));
		if (tag == 0)
			continue;
		tags[used++] = tag;
		if (tb == FDN_TEL_T_ONCE && (i + n - (uint32_t)(tag % n)) % n >= ONCE_WINDOW)
			fdn__violation(ck, "telemetry",
				       "once-per slot %u: outside the window of its home slot %u",
				       i, (uint32_t)(tag % n));
		/* A once-per slot is passable once used (last != 0), tag or not. */
		for (uint32_t j = (uint32_t)(tag % n); j != i; j = (j + 1) % n)
			if (atomic_load((_Atomic uint64_t *)slot_at(t, tb, j)) == 0 &&
			    (tb != FDN_TEL_T_ONCE ||
			     atomic_load(&((struct fdn_shm_once *)slot_at(t, tb, j))->last) == 0)) {
				fdn__violation(ck, "telemetry",
					       "%s slot %u: unreachable from its home slot %u",
					       what, i, (uint32_t)(tag % n));
				break;
			}
	}
	qsort(tags, used, sizeof(*tags), cmp_u64);
	for (uint32_t i = 1; i < used; i++)
		if (tags[i] == tags[i - 1])
			fdn__violation(ck, "telemetry", "%s: tag %016llx claimed twice", what,
				       (unsigned long long)tags[i]);
	free(tags);
	return 0;
}

static void check_samplers(struct fdn__audit *ck, const struct fdn__tel *t)
{
	for (uint32_t i = 0; i < FDN_TEL_SAMPLERS; i++) {
		struct fdn_shm_sampler *x = sampler_at(t, i);
		if (atomic_load(&x->tag) == 0)
			continue;
		uint64_t spec = atomic_load(&x->spec);
		struct fdn_sampler sp = {(enum fdn_sampler_kind)FDN_SPEC_KIND(spec),
					 param_of(spec)};
		if (FDN_SPEC_KIND(spec) > FDN_SAMPLE_ADAPTIVE || !sampler_valid(&sp))
			fdn__violation(ck, "telemetry", "sampler slot %u: invalid spec %016llx", i,
				       (unsigned long long)spec);
		/* sampled is raised after total, so read it first. */
		uint64_t sampled = atomic_load(&x->sampled), total = atomic_load(&x->total);
		if (sampled > total)
			fdn__violation(ck, "telemetry", "sampler slot %u: %llu sampled of %llu", i,
				       (unsigned long long)sampled, (unsigned long long)total);
	}
}

static void check_windows(struct fdn__audit *ck, const struct fdn__tel *t, uint64_t now_ms)
{
	for (uint32_t i = 0; i < FDN_TEL_ONCE; i++) {
		struct fdn_shm_once *o = slot_at(t, FDN_TEL_T_ONCE, i);
		uint64_t last = atomic_load(&o->last) & ~ONCE_TAKING;
		if (atomic_load(&o->tag) && last > now_ms + 1)
			fdn__violation(ck, "telemetry",
				       "once-per slot %u: claim in the future (%llu > %llu ms)", i,
				       (unsigned long long)last, (unsigned long long)now_ms + 1);
	}
	for (uint32_t i = 0; i < FDN_TEL_RATE; i++) {
		struct fdn_shm_rate *x = slot_at(t, FDN_TEL_T_RATE, i);
		uint64_t st = atomic_load(&x->state);
		uint32_t wms = x->window_ms;
		if (atomic_load(&x->tag) && wms && (st >> 24) > now_ms / wms)
			fdn__violation(ck, "telemetry",
				       "rate slot %u: window %llu is in the future", i,
				       (unsigned long long)(st >> 24));
	}
	for (uint32_t i = 0; i < FDN_TEL_BATCHES; i++) {
		struct fdn_shm_batch *b = slot_at(t, FDN_TEL_T_BATCHES, i);
		uint64_t w = atomic_load(&b->ctl), cfg = atomic_load(&b->cfg);
		if (atomic_load(&b->tag) == 0)
			continue;
		for (unsigned k = 0; k < 2; k++)
			for (uint32_t c = 0; c < FDN_BATCH_ITEMS_MAX; c++) {
				uint64_t T = atomic_load(&b->items[k][c].tag);
				if (IT_STATE(T) > IT_LOST ||
				    (IT_STATE(T) != IT_FREE &&
				     ((IT_GEN(T) & 1) != k ||
				      gen_before(FDN_BATCH_GEN(atomic_load(&b->ctl)), IT_GEN(T)))))
					fdn__violation(ck, "telemetry",
						       "batch slot %u item %u/%u: tag %016llx "
						       "(generation %u open)",
						       i, k, c, (unsigned long long)T,
						       FDN_BATCH_GEN(atomic_load(&b->ctl)));
			}
		if (FDN_BATCH_COUNT(w) >= FDN_BATCH_ITEMS_MAX ||
		    (uint32_t)cfg > FDN_BATCH_ITEMS_MAX)
			fdn__violation(ck, "telemetry",
				       "batch slot %u: %u items reserved, at most %u", i,
				       FDN_BATCH_COUNT(w),
				       (uint32_t)cfg ? (uint32_t)cfg : FDN_BATCH_ITEMS_MAX);
	}
}

/* Ring records: a record's seq names a ticket of that record, issued. */
static int check_ring(struct fdn__audit *ck, fdn_segment *s)
{
	struct fdn_shm_event *ring;
	uint32_t n;
	int r = fdn__ring_map(s, &ring, &n);
	if (r) {
		fdn__violation(ck, "telemetry", "event ring: %s", fdn_strerror(r));
		return 0;
	}
	uint64_t head = atomic_load(&fdn__tel_hdr(s)->ring_head);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t seq = atomic_load(&ring[i].seq);
		if (seq == 0)
			continue;
		uint64_t t = (seq - 1) / 2;
		if ((t & (n - 1)) != i || t >= head)
			fdn__violation(ck, "telemetry",
				       "event record %u: seq %llu (ticket %llu, head %llu)", i,
				       (unsigned long long)seq, (unsigned long long)t,
				       (unsigned long long)head);
		/* A record of an older ticket under a newer complete seq is
		 * a lapped producer's late write (ring_write): readers reject
		 * it by its ticket and checksum and count it lost.  A newer
		 * ticket than the seq's, or one of another record, cannot be
		 * written by any producer. */
		else if (seq % 2 == 0 && ring[i].ticket != t &&
			 (ring[i].ticket > t || (ring[i].ticket & (n - 1)) != i))
			fdn__violation(ck, "telemetry",
				       "event record %u: complete for ticket %llu, holds %llu", i,
				       (unsigned long long)t, (unsigned long long)ring[i].ticket);
	}
	return 0;
}

int fdn__telemetry_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	struct fdn__audit ck = {cb, arg, 0};
	struct fdn__tel t;
	int r = seg_ctx(s, &t);
	if (r) {
		fdn__violation(&ck, "telemetry", "telemetry region: %s", fdn_strerror(r));
		return ck.n;
	}
	{
		static const char *const what[FDN_TEL_NTABLES] = {"sampler", "once-per", "rate",
								  "batch"};
		for (unsigned tb = 0; tb < FDN_TEL_NTABLES; tb++)
			if ((r = check_tags(&ck, &t, tb, what[tb])) < 0)
				return r;
		check_samplers(&ck, &t);
		check_windows(&ck, &t, fdn__mono_ms());
	}
	check_ring(&ck, s);
	return ck.n;
}

/* ---- a new segment's defaults ------------------------------------------------------- */

/* foundation.registry.lookup, the hottest call, starts sampled `never`: with
 * the shared telemetry on (the default profile) its event would otherwise
 * write a ring record on every lookup, five times the lookup's own cost.
 * Every other event starts `always`.  `foundation-ctl sampler set
 * foundation.registry.lookup always` (or random(P)...) turns it on. */
int fdn__telemetry_init(fdn_segment *s)
{
	struct fdn__tel t;
	int r = seg_ctx(s, &t);
	if (r)
		return r;
	const char *name = fdn__ev_names[FDN__EV_REG_LOOKUP];
	size_t nlen = strlen(name);
	bool fresh;
	int i = slot_get(&t, FDN_TEL_T_SAMPLERS, tag_of(name, nlen, NULL, 0), true, &fresh);
	if (i < 0)
		return i;
	struct fdn_shm_sampler *x = sampler_at(&t, (uint32_t)i);
	put_name(x->name, sizeof(x->name), name, nlen);
	atomic_store(&x->spec, FDN_SPEC_WORD(FDN_SAMPLER_NEVER, 1, bits_of(0.0f)));
	return 0;
}
