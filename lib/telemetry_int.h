/*
 * lib/telemetry_int.h - what telemetry.c (events, handlers, the ring) and
 * telemetry_tables.c (samplers, once-per, rate limits, batches, audit)
 * share.  Not for other services: they use lib/internal.h.
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

/* The tables for s.  write: the caller will change them (FDN_ERDONLY on a
 * read-only handle).  FDN_EFORKED, FDN_EENFORCED, FDN_EBADSEG. */
int fdn__tel_ctx(fdn_segment *s, bool write, struct fdn__tel *t);

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
bool fdn__sampler_decide(struct fdn__tel *t, const char *name, size_t nlen, int32_t *cell);

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
