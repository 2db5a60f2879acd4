/*
 * lib/registry_int.h - what the registry's files share (not exported):
 * the stored forms of an entry (struct rec) and of an index reference
 * (struct ref_val), their readers, and the index helpers that the public
 * calls (registry.c), the purge (registry_purge.c) and the audit
 * (registry_audit.c) call in registry_index.c.
 *
 * Who calls whom: registry.c (the writes) -> registry_purge.c (release of
 * idle slots) -> registry_index.c; registry_read.c (the reads) ->
 * registry_index.c, and registry.c for its telemetry only
 * (fdn__reg_event); registry_audit.c -> registry_purge.c (fdn__ref_stale),
 * registry_index.c.  registry_index.c calls none of them.  The reaper
 * (lib/reaper.c) calls registry_purge.c; registry.c calls the reaper
 * (fdn__reaper_notice, in writable).
 */
#ifndef FDN_LIB_REGISTRY_INT_H
#define FDN_LIB_REGISTRY_INT_H

#include "lib/internal.h"
#include "lib/telemetry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define T_MAIN             0u
#define T_INDEX            1u
#define REC_SIZE           20u
#define REC_OFF_WORD       0u
#define REC_OFF_IDX        8u
#define REC_OFF_TIME       12u
#define PREFIX_MAX         255u
#define INDEXED_STRING_MAX 200u
/* A reference's key: [n][level byte][prefix][entry key or group]. */
#define REF_KEY_MAX (2u + PREFIX_MAX + FDN_REG_KEY_MAX)

/* A record read out of its node (the stored form: top of registry.c). */
struct rec {
	uint64_t owner_word;
	uint32_t owner_idx;
	uint32_t attrs_len; /* val_len - REC_SIZE */
	uint64_t registered_ns;
};
_Static_assert(REC_SIZE == FDN__REG_REC_SIZE && T_MAIN == FDN__REG_TABLE, "internal.h");
/* A main-table node with a 16-byte key keeps its record on its first line. */
_Static_assert(sizeof(struct fdn_shm_node) + 16u + REC_SIZE <= FDN_CACHELINE, "record line");

struct ref_val {
	uint64_t owner_word;
	uint64_t writer_word;
	uint32_t owner_idx;
	uint32_t writer_idx;
};
_Static_assert(sizeof(struct ref_val) == 24, "reference value");

/* ---- records ------------------------------------------------------------- */

static inline bool rec_of(const struct fdn__ht_view *v, struct rec *r, const unsigned char **attrs)
{
	if (v->val_len < REC_SIZE || v->val_len - REC_SIZE > FDN_ATTRS_MAX)
		return false;
	memcpy(&r->owner_word, v->val + REC_OFF_WORD, 8);
	memcpy(&r->owner_idx, v->val + REC_OFF_IDX, 4);
	memcpy(&r->registered_ns, v->val + REC_OFF_TIME, 8);
	r->attrs_len = v->val_len - REC_SIZE;
	*attrs = v->val + REC_SIZE;
	return true;
}

/* Is process slot idx still the process whose claim word was `word`? */
static inline bool fdn__word_live(const fdn_segment *s, uint32_t idx, uint64_t word)
{
	return idx < s->nprocs && FDN_PROC_STATE(word) == FDN_PROC_LIVE &&
	       atomic_load_explicit(&s->procs[idx].word, memory_order_acquire) == word;
}

/* The entry of view v if it is visible and well-formed. */
static inline bool visible(const fdn_segment *s, const struct fdn__ht_view *v, struct rec *r,
			   struct fdn_entry_view *e)
{
	const unsigned char *attrs;
	if (!rec_of(v, r, &attrs) || !fdn__word_live(s, r->owner_idx, r->owner_word) ||
	    v->key_len > FDN_REG_KEY_MAX)
		return false;
	/* Validated when written (registry.c, top); a read-only handle may read a node
	 * being reused, and validates. */
	if (s->readonly && fdn_attrs_validate(attrs, r->attrs_len) != 0)
		return false;
	*e = (struct fdn_entry_view){
	    v->key,           v->key_len, (pid_t)FDN_PROC_PID(r->owner_word),
	    r->registered_ns, attrs,      r->attrs_len};
	return true;
}

static inline int check_key(size_t klen)
{
	return klen == 0 || klen > FDN_REG_KEY_MAX ? FDN_EINVKEY : 0;
}

/* Is key in the remote namespace (registry.h)?  Such keys are written only
 * with FDN_REG_MIRROR, and a walk returns them only with FDN_REG_REMOTE. */
static inline bool remote_key(const void *key, size_t klen)
{
	return klen > 0 && ((const unsigned char *)key)[0] == FDN_REG_REMOTE_BYTE;
}

/* The registry's telemetry (registry.c): the event `id` of an operation
 * that began at t0 (CLOCK_MONOTONIC; 0 = nobody listened then) and
 * returned r.  Returns r. */
int fdn__reg_event(fdn_segment *s, enum fdn__ev id, uint64_t t0, const void *key, size_t klen,
		   int r);

/* ---- counted entries ---------------------------------------------------------
 *
 * An unregister that leaves an owner with no entry in a group of the main
 * table removes the group's owner reference (registry_index.c), and to know
 * that it may, it walks the group: 64 buckets, about 32 nodes at 1 000 000
 * entries -- a cache miss each, twice (before its delete and after).  A
 * process can skip both walks for its own entries once it holds none at
 * all, if it knows that: *s->held counts the registrations it made for
 * itself (owner (s->proc_idx, s->proc_word)) -- raised before the first
 * reference is made sure of, lowered after the entry was removed by this
 * process or not written -- and the slot's `uncounted` mark (layout.h) says
 * whether anyone else wrote an entry for it.  A count can only be too high
 * (an entry of ours removed by another process, a takeover): that costs
 * the shortcut, never a reference.
 *
 * Why "held 0 and not marked, after our fence" means no entry needs the
 * reference, in the store-buffering pair of fdn__reg_ref_del_suffix: a
 * writer W of an entry E of ours raises held (a seq_cst RMW) -- or marks
 * the slot (a seq_cst CAS) -- before it makes sure of the reference,
 * publishes E, fences and looks for the reference again.  If that RMW
 * precedes our load in the single order of seq_cst operations, we see
 * held > 0 (or the mark) and walk the group as before.  If it follows our
 * load, it follows our fence, which follows our delete: W's fence comes
 * after ours, so W's look sees our delete and W writes the reference
 * again.  An entry published before any of that was counted (or marked)
 * and is still counted. */

/* Is (idx, word) this process's own slot, counted? */
static inline bool fdn__held_own(const fdn_segment *s, uint32_t idx, uint64_t word)
{
	return s->held && idx == s->proc_idx && word == s->proc_word;
}

static inline void fdn__held_add(fdn_segment *s, uint32_t idx, uint64_t word, int64_t d)
{
	if (fdn__held_own(s, idx, word))
		atomic_fetch_add_explicit(s->held, d, memory_order_seq_cst);
}

/* Does owner (idx, word) -- ours -- hold no entry at all?  False whenever
 * it cannot tell (another owner, or uncounted entries). */
static inline bool fdn__held_none(const fdn_segment *s, uint32_t idx, uint64_t word)
{
	return fdn__held_own(s, idx, word) &&
	       atomic_load_explicit(s->held, memory_order_seq_cst) == 0 &&
	       atomic_load_explicit(&s->procs[idx].uncounted, memory_order_seq_cst) != word;
}

/* ---- index references (registry_index.c) --------------------------------- */

typedef int (*prefix_cb)(void *arg, const unsigned char *prefix, size_t plen);

/* The owner references: see registry_index.c. */
#define OWNER_PREFIX_LEN 14u
#define GROUP_BUCKETS    64u
#define GROUP_LEN        4u

/* One node to remove, copied out of its read-side section: deletes retire
 * nodes, and a section holds at most FDN_LIMBO_MAX of those, so the purge
 * collects a few victims per section and deletes them outside. */
#define PURGE_BATCH 16
struct victim {
	struct fdn__ht_view version; /* gidx, gen only */
	uint32_t key_len, attrs_len;
	uint32_t owner_idx;
	uint64_t owner_word;
	unsigned char key[FDN_KEY_MAX];
	unsigned char attrs[FDN_ATTRS_MAX];
};

/* Does group g of the main table hold an entry of owner (idx, word)?  And
 * (victims != NULL) up to max of them, copied out.  Read lock held. */
struct victim;
struct group_scan {
	fdn_segment *s;
	uint64_t word;
	uint32_t idx;
	struct victim *v;
	int n, max;
	bool any;
};

struct ref_op {
	fdn_segment *s;
	const void *key;
	size_t klen;
	uint64_t owner_word;
	uint32_t owner_idx;
	const struct ref_set *keep; /* delete only prefixes absent from this set */
	bool top_only;              /* put: look under the current level only (ref_put) */
	/* put, inside a section the caller holds until its entry's
	 * references are made sure of again (reg_register_once): the node
	 * of each reference, by its position in the set (fdn__reg_set_each's
	 * order; 0: not known); NULL: not kept. */
	uint32_t *nodes;
	uint32_t at;
};

typedef int (*ref_node_cb)(void *arg, const struct fdn_shm_node *n, size_t plen);

/*
 * The references of one entry: its owner's prefix, then each indexed
 * value's, in fdn__reg_each_ref's order -- built once per operation
 * (fdn__reg_refs_of) and walked by each of its steps (fdn__reg_set_each).
 * A register+unregister pair parsed the same encoding into the same
 * prefixes five times, about 8 % of its instructions.  An entry with
 * more than REF_SET_MAX indexed values, or REF_SET_BYTES of prefixes,
 * keeps only its encoding (partial), which every walk then parses.  The
 * encoding (attrs) must outlive the set.
 */
#define REF_SET_MAX   16u
#define REF_SET_BYTES 1024u
struct ref_set {
	fdn_segment *s;
	const void *attrs;
	size_t alen;
	uint64_t owner_word;
	uint32_t owner_idx;
	uint32_t n; /* prefixes held, the owner's included */
	bool partial;
	uint16_t off[REF_SET_MAX + 2]; /* prefix i: buf[off[i] .. off[i + 1]) */
	unsigned char buf[REF_SET_BYTES];
};

bool fdn__reg_indexed(fdn_segment *s, const char *name);
size_t fdn__reg_prefix_of(const char *name, const struct fdn_attr *a, const char *item,
			  unsigned char *out);
int fdn__reg_each_prefix(fdn_segment *s, const void *attrs, size_t alen, prefix_cb cb, void *arg);
size_t fdn__reg_owner_prefix(uint32_t idx, uint64_t word, unsigned char *out);
bool fdn__reg_ref_of(const struct fdn__ht_view *v, struct ref_val *rv);
int fdn__reg_each_ref(fdn_segment *s, uint32_t oidx, uint64_t oword, const void *attrs, size_t alen,
		      prefix_cb cb, void *arg);
void fdn__reg_refs_of(fdn_segment *s, uint32_t oidx, uint64_t oword, const void *attrs, size_t alen,
		      struct ref_set *rs);
/* cb for each prefix of rs (owner: the owner's too, first); stops at the
 * first non-zero return, which it returns. */
int fdn__reg_set_each(const struct ref_set *rs, bool owner, prefix_cb cb, void *arg);
/* The number of references of rs (the owner's included). */
uint32_t fdn__reg_set_count(const struct ref_set *rs);
/* A value's level (registry_index.c, "Levels"): 0 for an owner prefix. */
unsigned fdn__reg_level(fdn_segment *s, const unsigned char *prefix, size_t plen);
/* Is the reference of (prefix, entry key) under some level?  Read lock held. */
bool fdn__reg_ref_exists(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *key,
			 size_t klen);
/* Is the reference of (prefix, entry key) also under a level in (lvl, top]?
 * Read lock held. */
bool fdn__reg_ref_above(fdn_segment *s, const unsigned char *prefix, size_t plen, unsigned lvl,
			unsigned top, const void *key, size_t klen);
int fdn__reg_group_scan(fdn_segment *s, uint32_t g, struct group_scan *gs);
int fdn__reg_ref_put_cb(void *arg, const unsigned char *prefix, size_t plen);
/* After the entry of o->key (encoded attrs) was published: make sure of
 * its references again (registry_index.c, fdn__reg_ref_del_suffix). */
/* held (may be NULL): the section the caller has held since its first
 * pass (*held NULL if none; o->nodes then NULL too), left here. */
int fdn__reg_refs_after_entry(struct ref_op *o, const struct ref_set *rs,
			      struct fdn__thread **held);
bool fdn__reg_ref_carried(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
			  size_t slen);
int fdn__reg_ref_del_suffix(fdn_segment *s, const unsigned char *prefix, size_t plen,
			    const void *suf, size_t slen, bool *deleted);
int fdn__reg_ref_del_cb(void *arg, const unsigned char *prefix, size_t plen);
int fdn__reg_walk_prefix_sub(fdn_segment *s, const unsigned char *prefix, size_t plen, uint64_t sub,
			     ref_node_cb cb, void *arg);
int fdn__reg_walk_prefix(fdn_segment *s, const unsigned char *prefix, size_t plen, ref_node_cb cb,
			 void *arg);
int fdn__reg_remove_entry(fdn_segment *s, const void *key, size_t klen,
			  const struct fdn__ht_view *v, const struct ref_set *rs, unsigned kind,
			  uint64_t now);

#endif
