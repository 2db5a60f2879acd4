/*
 * lib/telemetry_int.h - what the telemetry files share: telemetry.c
 * (events, handlers, the ring), telemetry_sample.c (this thread's identity,
 * the tables' context and named slots, samplers), telemetry_once.c
 * (once-per, rate limits), telemetry_batch.c (batches), telemetry_audit.c
 * (the audit, a new segment's defaults) and telemetry_names.c.  Calls go
 * one way: audit -> once, batch -> telemetry.c -> sample.  Not for other
 * services: they use lib/internal.h.
 */
#ifndef FDN_LIB_TELEMETRY_INT_H
#define FDN_LIB_TELEMETRY_INT_H

#include "lib/telemetry.h"

/* Where the tables live for one call: the segment's region
 * FDN_SVC_TELEMETRY and header part, or this process's private copy of the
 * same layout (s == NULL, or the sampled-events backend is local). */
struct fdn__tel {
	struct fdn_shm_tel_hdr *hdr;
	unsigned char *region;
	bool shared;
	bool writable;
	uint64_t seg_id; /* the handle's id when shared, else 0 */
};

/* ---- telemetry_sample.c ---------------------------------------------------------------- */

/* A CAS loop of the tables gives up after this many tries (each retry
 * means another caller's CAS succeeded) with the answer that cannot
 * over-admit. */
#define CAS_TRIES (1u << 20)

/* This thread's identity for events: pid and tid (refreshed when the pid
 * changes, as in a fork child), its event count and its generator. */
struct fdn__me {
	pid_t pid, tid;
	uint64_t pseq;
	uint64_t rng;
};
extern _Thread_local struct fdn__me fdn__me;
/* Make fdn__me current (after a fork, or in a new thread). */
void fdn__me_refresh(void);

/* The segment's tables (the region entry is the one attach validated);
 * FDN_EBADSEG. */
int fdn__tel_seg_ctx(fdn_segment *s, struct fdn__tel *t);

/* The tables for s.  write: the caller will change them (FDN_ERDONLY on a
 * read-only handle).  FDN_EFORKED, FDN_EENFORCED, FDN_EBADSEG. */
int fdn__tel_ctx(fdn_segment *s, bool write, struct fdn__tel *t);

/* Named slots (the tables' common form; telemetry_sample.c says how they
 * are claimed): the slot count of table tb (FDN_TEL_T_*), slot i of it,
 * the tag of key a (and b, after a NUL), and the slot of tag -- its index,
 * FDN_ENOTFOUND (claim false) or FDN_ENOSPACE; *fresh: this call claimed
 * it. */
uint32_t fdn__tel_table_n(unsigned tb);
void *fdn__tel_slot_at(const struct fdn__tel *t, unsigned tb, uint32_t i);
uint64_t fdn__tel_tag(const void *a, size_t alen, const void *b, size_t blen);
int fdn__tel_slot_get(const struct fdn__tel *t, unsigned tb, uint64_t tag, bool claim, bool *fresh);
/* A display name into a slot just claimed; out of a slot. */
void fdn__tel_put_name(char *dst, size_t cap, const void *name, size_t len);
void fdn__tel_get_name(char *dst, size_t cap, const char *src, size_t srccap);

/* Admit one request in window win of the fixed-window word w (at most
 * limit per window). */
bool fdn__tel_window_admit(_Atomic uint64_t *w, uint64_t win, uint32_t limit);

/* A sampler spec's parameter, a parameter's bits, sampler slot i, and
 * whether a sampler is well-formed. */
float fdn__sampler_param(uint64_t spec);
uint32_t fdn__sampler_bits(float f);
struct fdn_shm_sampler *fdn__sampler_at(const struct fdn__tel *t, uint32_t i);
bool fdn__sampler_valid(const struct fdn_sampler *sp);

/* Is the process named by a payload of fdn__batch_owner dead? */
bool fdn__tel_owner_dead(const fdn_segment *s, const struct fdn__tel *t, uint32_t pl);

/* ---- telemetry_once.c: what the audit checks of a once-per slot -------------------- */

#define ONCE_WINDOW 512u         /* a key's slots: its home and the next 511 */
#define ONCE_TAKING (1ull << 63) /* `last`: the slot is being taken */

/* ---- telemetry_batch.c: a batch item's tag (shm/layout.h) -------------------------- */

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
static inline bool fdn__batch_gen_before(uint32_t a, uint32_t b)
{
	uint32_t d = (b - a) & 0xFFFFFFu;
	return d != 0 && d < (1u << 23);
}

/* ---- telemetry.c ---------------------------------------------------------------------- */

/* The segment's telemetry header part and its ring (bounds-checked);
 * FDN_EBADSEG if the header's region entry is not the one attach checked. */
int fdn__ring_map(fdn_segment *s, struct fdn_shm_event **ring, uint32_t *n);

static inline struct fdn_shm_tel_hdr *fdn__tel_hdr(fdn_segment *s)
{
	return (struct fdn_shm_tel_hdr *)(void *)s->hdr->telemetry_hdr;
}

/* The sampler's verdict on one event of `name` (nlen bytes, valid): finds
 * or claims the name's slot (cell, if given, caches its index + 1 for this
 * thread), counts the event and applies the spec.  A full table samples
 * everything, uncounted. */
enum {
	FDN__SAMPLED_OUT = 0,      /* dropped */
	FDN__SAMPLED_ALL = 1,      /* to the handlers and the ring */
	FDN__SAMPLED_HANDLERS = 2, /* to this process's handlers only (`handlers`) */
};
int fdn__sampler_decide(struct fdn__tel *t, const char *name, size_t nlen, int32_t *cell);

/* Emit an event whose name (nlen bytes) is already validated. */
int fdn__tel_emit(fdn_segment *s, const char *name, size_t nlen, const struct fdn_measurement *m,
		  size_t nm, const struct fdn_attr *attrs, size_t na);

/* Length of a valid event name, or FDN_EEVNAME (telemetry_names.c). */
int fdn__event_name_len(const char *name);
/* 0 if the nm measurements are well-formed (count, names, finite values),
 * else FDN_EINVAL (telemetry_names.c). */
int fdn__check_measurements(const struct fdn_measurement *m, size_t nm);

/* A uniform double in [0, 1) from this thread's generator. */
double fdn__rand01(void);

/* A batch item's check of its value bits in generation gen, and the
 * RESERVED payload naming the process of s (layout.h, struct
 * fdn_shm_batch; for tests that build items by hand). */
uint32_t fdn__batch_check(uint64_t bits, uint32_t gen);
uint32_t fdn__batch_owner(const fdn_segment *s);

#endif
