/*
 * bench/sys_plain.c - a process-local open-addressing table (systems.h):
 * linear probing, {hash, record *} slots, capacity a power of two >= 2N,
 * XXH3-64: what one process can do with nothing shared.  Lookups only.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "systems.h"

struct rec {
	unsigned char val[LOOKUP_VAL_LEN];
	uint32_t klen;
	char key[];
};

struct slot {
	uint64_t hash;
	struct rec *r; /* NULL: empty */
};

struct plain {
	struct slot *slots;
	uint64_t mask;
	uint64_t n;
};

static inline const struct rec *plain_get(const struct plain *p, const char *k, uint32_t kl)
{
	uint64_t h = XXH3_64bits_withSeed(k, kl, SYS_HASH_SEED);
	for (uint64_t i = h & p->mask;; i = (i + 1) & p->mask) {
		const struct slot *s = &p->slots[i];
		if (!s->r)
			return NULL;
		if (s->hash == h && s->r->klen == kl && memcmp(s->r->key, k, kl) == 0)
			return s->r;
	}
}

/* Insert; false if the key is present (capacity >= 2n: never full). */
static bool plain_put(struct plain *p, struct rec *r)
{
	uint64_t h = XXH3_64bits_withSeed(r->key, r->klen, SYS_HASH_SEED);
	for (uint64_t i = h & p->mask;; i = (i + 1) & p->mask) {
		struct slot *s = &p->slots[i];
		if (!s->r) {
			*s = (struct slot){h, r};
			return true;
		}
		if (s->hash == h && s->r->klen == r->klen &&
		    memcmp(s->r->key, r->key, r->klen) == 0)
			return false;
	}
}

static void plain_close(void *ctx)
{
	struct plain *p = ctx;
	for (uint64_t i = 0; p->slots && i <= p->mask; i++)
		free(p->slots[i].r);
	free(p->slots);
	free(p);
}

static int plain_open(void **out, uint64_t n)
{
	struct plain *p = calloc(1, sizeof(*p));
	uint64_t cap = pow2_at_least(2 * n);
	if (p)
		p->slots = calloc(cap, sizeof(*p->slots));
	if (!p || !p->slots) {
		bench_fail("plain: table of %" PRIu64 " slots: %s", cap, strerror(errno));
		free(p);
		return -1;
	}
	p->mask = cap - 1;
	for (uint64_t i = 0; i < n; i++) {
		struct lookup_key k;
		lookup_key_make(&k, i);
		struct rec *r = malloc(sizeof(*r) + k.len);
		if (!r) {
			bench_fail("plain: record: %s", strerror(errno));
			plain_close(p);
			return -1;
		}
		lookup_value_make(r->val, i);
		r->klen = k.len;
		memcpy(r->key, k.s, k.len);
		if (!plain_put(p, r)) {
			bench_fail("plain: insert %s: already present", k.s);
			free(r);
			plain_close(p);
			return -1;
		}
	}
	p->n = n;
	*out = p;
	return 0;
}

static void plain_run(void *ctx, const struct lookup_key *ks, size_t m, struct tally *t)
{
	const struct plain *p = ctx;
	uint64_t hits = 0, sum = 0;
	for (size_t i = 0; i < m; i++) {
		const struct rec *r = plain_get(p, ks[i].s, ks[i].len);
		if (r) {
			hits++;
			sum += load64(r->val);
		} else {
			tally_miss(t, i);
		}
	}
	t->hits = hits;
	t->sum = sum;
}

static void plain_where(void *ctx, struct bench_result *r, const char *id)
{
	const struct plain *p = ctx;
	bench_memory(r, id, "slot array", p->slots, (size_t)(p->mask + 1) * sizeof(*p->slots));
	const struct rec *first = NULL;
	for (uint64_t i = 0; i <= p->mask && !first; i++)
		first = p->slots[i].r;
	bench_memory(r, id, "a record (malloc)", first, sizeof(*first));
}

const struct lookup_system sys_plain_lookup = {
    "plain",
    plain_open,
    plain_close,
    plain_where,
    {{"plain (open addressing)", "plain", plain_run, 0}, {0}}};
