/*
 * telemetry_sample.c - the bottom of the telemetry files: this thread's
 * identity and generator, where the tables live (region FDN_SVC_TELEMETRY,
 * formats in shm/layout.h, or this process's copy), their named slots and
 * fixed windows, the samplers, and the owner payload of once-per locks and
 * batch items.
 *
 * Who calls whom.  Called by telemetry.c (fdn__tel_ctx, fdn__sampler_decide:
 * every emit asks its sampler; fdn__me for the event's pid, tid and
 * count), telemetry_once.c, telemetry_batch.c and telemetry_audit.c (the
 * slots, windows, owners), and the public sampler calls (fdn_sampler_*).
 * Calls no other telemetry file: backend.c (fdn__backend, in
 * fdn__tel_ctx), the clock (shm/clock.c) and the process table
 * (fdn__proc_alive) only.
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
#include <sys/random.h>
#include <unistd.h>
#include <xxhash.h>

static_assert((int)FDN_SAMPLER_ALWAYS == FDN_SAMPLE_ALWAYS &&
		  (int)FDN_SAMPLER_NEVER == FDN_SAMPLE_NEVER &&
		  (int)FDN_SAMPLER_RANDOM == FDN_SAMPLE_RANDOM &&
		  (int)FDN_SAMPLER_RATE_LIMITED == FDN_SAMPLE_RATE_LIMITED &&
		  (int)FDN_SAMPLER_RESERVOIR == FDN_SAMPLE_RESERVOIR &&
		  (int)FDN_SAMPLER_ADAPTIVE == FDN_SAMPLE_ADAPTIVE &&
		  (int)FDN_SAMPLER_HANDLERS == FDN_SAMPLE_HANDLERS,
	      "sampler kinds");

/* ---- identity, randomness --------------------------------------------------- */

/* The process's pid, refreshed in a fork child; per thread: its tid, its
 * event count and its generator, refreshed when the pid changes. */
static _Atomic pid_t proc_pid;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
_Thread_local struct fdn__me fdn__me;

static void on_fork_child(void)
{
	atomic_store(&proc_pid, getpid());
}

static void fork_hook(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
	atomic_store(&proc_pid, getpid());
}

void fdn__me_refresh(void)
{
	pthread_once(&fork_once, fork_hook);
	pid_t pid = atomic_load_explicit(&proc_pid, memory_order_relaxed);
	if (__builtin_expect(fdn__me.pid == pid && pid != 0, 1))
		return;
	fdn__me.pid = pid;
	fdn__me.tid = gettid();
	fdn__me.pseq = 0;
	if (getrandom(&fdn__me.rng, sizeof(fdn__me.rng), GRND_NONBLOCK) != sizeof(fdn__me.rng))
		fdn__me.rng = fdn__real_ns() ^ ((uint64_t)fdn__me.tid << 32);
	fdn__me.rng |= 1;
}

double fdn__rand01(void)
{
	fdn__me_refresh();
	/* xorshift64*: private to the thread. */
	uint64_t x = fdn__me.rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	fdn__me.rng = x;
	return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

/* The process-local tables (s == NULL or a local backend): the same
 * layout, in this process's memory (untouched pages cost nothing). */
static _Alignas(4096) unsigned char local_region[FDN_TELEMETRY_REGION_SIZE];
static struct fdn_shm_tel_hdr local_hdr;

/* The segment's tables (the region entry is the one attach validated). */
int fdn__tel_seg_ctx(fdn_segment *s, struct fdn__tel *t)
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
			return fdn__tel_seg_ctx(s, t);
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

uint32_t fdn__tel_table_n(unsigned tb)
{
	return tables[tb].n;
}

void *fdn__tel_slot_at(const struct fdn__tel *t, unsigned tb, uint32_t i)
{
	return t->region + tables[tb].off + (size_t)i * tables[tb].stride;
}

/* The tag of key a (and b, after a NUL). */
uint64_t fdn__tel_tag(const void *a, size_t alen, const void *b, size_t blen)
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
int fdn__tel_slot_get(const struct fdn__tel *t, unsigned tb, uint64_t tag, bool claim, bool *fresh)
{
	uint32_t n = fdn__tel_table_n(tb);
	*fresh = false;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (uint32_t)((tag + k) % n);
		_Atomic uint64_t *w = fdn__tel_slot_at(t, tb, i);
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
void fdn__tel_put_name(char *dst, size_t cap, const void *name, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, name, len);
	dst[len] = 0;
}

/* A display name out of a slot (NUL-terminated, any bytes). */
void fdn__tel_get_name(char *dst, size_t cap, const char *src, size_t srccap)
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
bool fdn__tel_window_admit(_Atomic uint64_t *w, uint64_t win, uint32_t limit)
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

float fdn__sampler_param(uint64_t spec)
{
	uint32_t bits = FDN_SPEC_PARAM(spec);
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

uint32_t fdn__sampler_bits(float f)
{
	uint32_t bits;
	memcpy(&bits, &f, sizeof(bits));
	return bits;
}

struct fdn_shm_sampler *fdn__sampler_at(const struct fdn__tel *t, uint32_t i)
{
	return fdn__tel_slot_at(t, FDN_TEL_T_SAMPLERS, i);
}

/* reservoir(n): exactly the first n events since the spec (generation gen)
 * was set.  The word holds the generation it counts for and the count; a
 * CAS raises the count from below n, or restarts it at 1 for a newer
 * generation.  A caller whose spec is older than the word's re-reads the
 * spec (it only ever changes forward).  1 keep, 0 drop, -1 spec changed. */
static int reservoir_take(struct fdn_shm_sampler *sp, uint64_t spec)
{
	uint64_t gen = FDN_SPEC_GEN(spec), n = (uint64_t)fdn__sampler_param(spec);
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
			double p = nprev > 0 ? (double)fdn__sampler_param(spec) / nprev : 1.0;
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

static int sampler_apply(struct fdn_shm_sampler *sp)
{
	atomic_fetch_add(&sp->total, 1);
	bool keep = true, handlers_only = false;
	for (int again = 0; again < 4; again++) {
		uint64_t spec = atomic_load(&sp->spec);
		switch (FDN_SPEC_KIND(spec)) {
		case FDN_SAMPLE_NEVER:
			keep = false;
			break;
		case FDN_SAMPLE_RANDOM:
			keep = fdn__rand01() < fdn__sampler_param(spec);
			break;
		case FDN_SAMPLE_RATE_LIMITED:
			keep = fdn__tel_window_admit(&sp->window, fdn__mono_ms() / 1000u,
						     (uint32_t)fdn__sampler_param(spec));
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
		case FDN_SAMPLE_HANDLERS:
			handlers_only = true;
			break;
		default: /* always (and anything unknown) */
			keep = true;
			break;
		}
		break;
	}
	if (!keep)
		return FDN__SAMPLED_OUT;
	atomic_fetch_add(&sp->sampled, 1);
	return handlers_only ? FDN__SAMPLED_HANDLERS : FDN__SAMPLED_ALL;
}

int fdn__sampler_decide(struct fdn__tel *t, const char *name, size_t nlen, int32_t *cell)
{
	int i;
	if (cell && *cell > 0 && (uint32_t)*cell <= FDN_TEL_SAMPLERS) {
		i = *cell - 1;
	} else {
		bool fresh;
		i = fdn__tel_slot_get(t, FDN_TEL_T_SAMPLERS, fdn__tel_tag(name, nlen, NULL, 0),
				      true, &fresh);
		if (i < 0)
			return FDN__SAMPLED_ALL;
		if (fresh)
			fdn__tel_put_name(fdn__sampler_at(t, (uint32_t)i)->name, 128, name, nlen);
		if (cell)
			*cell = i + 1;
	}
	return sampler_apply(fdn__sampler_at(t, (uint32_t)i));
}

bool fdn__sampler_valid(const struct fdn_sampler *sp)
{
	double p = sp->param;
	switch (sp->kind) {
	case FDN_SAMPLER_ALWAYS:
	case FDN_SAMPLER_NEVER:
	case FDN_SAMPLER_HANDLERS:
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

static const char *const kind_names[] = {"always",    "never",    "random",  "rate_limited",
					 "reservoir", "adaptive", "handlers"};
#define NKINDS (sizeof(kind_names) / sizeof(kind_names[0]))

/* A kind without a parameter. */
static bool bare_kind(unsigned k)
{
	return k <= FDN_SAMPLER_NEVER || k == FDN_SAMPLER_HANDLERS;
}

int fdn_sampler_parse(const char *text, struct fdn_sampler *out)
{
	if (!text || !out)
		return FDN_ESAMPLER;
	for (unsigned k = 0; k < NKINDS; k++) {
		size_t n = strlen(kind_names[k]);
		if (strncmp(text, kind_names[k], n) != 0)
			continue;
		struct fdn_sampler sp = {(enum fdn_sampler_kind)k, 0};
		const char *rest = text + n;
		if (bare_kind(k)) {
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
		if (!fdn__sampler_valid(&sp))
			return FDN_ESAMPLER;
		*out = sp;
		return 0;
	}
	return FDN_ESAMPLER;
}

void fdn_sampler_format(const struct fdn_sampler *sp, char *buf, size_t cap)
{
	unsigned k = (unsigned)sp->kind;
	if (k >= NKINDS)
		snprintf(buf, cap, "invalid(%u)", k);
	else if (bare_kind(k))
		snprintf(buf, cap, "%s", kind_names[k]);
	else
		snprintf(buf, cap, "%s(%.9g)", kind_names[k], sp->param);
}

int fdn_sampler_set(fdn_segment *s, const char *name, const struct fdn_sampler *sp)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	if (!sp || !fdn__sampler_valid(sp))
		return FDN_ESAMPLER;
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, true, &t);
	if (r)
		return r;
	bool fresh;
	int i = fdn__tel_slot_get(&t, FDN_TEL_T_SAMPLERS, fdn__tel_tag(name, (size_t)nlen, NULL, 0),
				  true, &fresh);
	if (i < 0)
		return i;
	struct fdn_shm_sampler *x = fdn__sampler_at(&t, (uint32_t)i);
	if (fresh)
		fdn__tel_put_name(x->name, sizeof(x->name), name, (size_t)nlen);
	/* Adaptive restarts at p = 1 in a new second.  (rate_limited keeps
	 * its window: setting the same limit again admits no more.) */
	if (sp->kind == FDN_SAMPLER_ADAPTIVE) {
		atomic_store(&x->prob, 0);
		atomic_store(&x->window, 0);
	}
	uint64_t old = atomic_load(&x->spec);
	uint32_t pb = fdn__sampler_bits((float)sp->param);
	while (!atomic_compare_exchange_weak(&x->spec, &old,
					     FDN_SPEC_WORD(sp->kind, FDN_SPEC_GEN(old) + 1, pb)))
		;
	return 0;
}

static void sampler_stats(const struct fdn_shm_sampler *x, struct fdn_sampler_stats *out)
{
	fdn__tel_get_name(out->name, sizeof(out->name), x->name, sizeof(x->name));
	uint64_t spec = atomic_load(&x->spec);
	out->sampler.kind = (enum fdn_sampler_kind)FDN_SPEC_KIND(spec);
	out->sampler.param = fdn__sampler_param(spec);
	out->sampled = atomic_load(&x->sampled);
	out->total = atomic_load(&x->total);
	switch (FDN_SPEC_KIND(spec)) {
	case FDN_SAMPLE_NEVER:
		out->probability = 0;
		break;
	case FDN_SAMPLE_RANDOM:
		out->probability = fdn__sampler_param(spec);
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

/* The existing sampler slot of name (nlen bytes, valid) in the tables of s
 * (write: the caller will change it); FDN_ENOTFOUND if it has none. */
static int sampler_find(fdn_segment *s, const char *name, size_t nlen, bool write,
			struct fdn_shm_sampler **x)
{
	struct fdn__tel t;
	int r = fdn__tel_ctx(s, write, &t);
	if (r)
		return r;
	bool fresh;
	int i = fdn__tel_slot_get(&t, FDN_TEL_T_SAMPLERS, fdn__tel_tag(name, nlen, NULL, 0), false,
				  &fresh);
	if (i < 0)
		return i;
	*x = fdn__sampler_at(&t, (uint32_t)i);
	return 0;
}

int fdn_sampler_get(fdn_segment *s, const char *name, struct fdn_sampler_stats *out)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	if (!out)
		return FDN_EINVAL;
	struct fdn_shm_sampler *x;
	int r = sampler_find(s, name, (size_t)nlen, false, &x);
	if (r)
		return r;
	sampler_stats(x, out);
	return 0;
}

int fdn_sampler_reset_stats(fdn_segment *s, const char *name)
{
	int nlen = fdn__event_name_len(name);
	if (nlen < 0)
		return nlen;
	struct fdn_shm_sampler *x;
	int r = sampler_find(s, name, (size_t)nlen, true, &x);
	if (r)
		return r;
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
		struct fdn_shm_sampler *x = fdn__sampler_at(&t, i);
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
bool fdn__tel_owner_dead(const fdn_segment *s, const struct fdn__tel *t, uint32_t pl)
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
