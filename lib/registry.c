/*
 * registry.c - the registry on the segment's tables.
 *
 * Table "main" (0) maps a key to a record (the node's value; unaligned,
 * read with memcpy):
 *    0  owner_word     the owner's process-slot claim word (LIVE | pid |
 *                      identity) at registration
 *    8  owner_idx      the owner's process slot
 *   12  registered_ns  CLOCK_REALTIME
 *   20  attributes     (lib/attrs.c), val_len - 20 bytes
 * 20 bytes: with a key of up to 16 bytes the node header (24), the key (16)
 * and the whole record share the node's first cache line, so a lookup that
 * needs the owner and the time (fdn_whereis, fdn_lookup_view) reads the
 * bucket line, that line and the owner's process slot (one line per owner,
 * hot in cache when owners are few); with keys up to 24 bytes the owner
 * still is on that line.
 * An entry is visible iff procs[owner_idx].word == owner_word: when the
 * reaper marks the owner DEAD (or the slot is reused), every entry of that
 * owner disappears at once for every reader, before it is physically
 * removed (fdn__registry_purge).
 *
 * The attributes are validated once, when written: every writer stores an
 * encoding that fdn_attrs_encode or fdn_attrs_merge produced (both produce
 * only valid encodings), and readers trust it.  Why a reader never sees a
 * torn entry, so that no checksum or generation check is needed: a node is
 * immutable once published (shm/ht.c: written while private, published by
 * a seq_cst CAS that readers' acquire loads of the links pair with), an
 * update publishes a new node that replaces the old one in one CAS, and a
 * node is not freed before every read-side section that could have reached
 * it has ended (shm/rcu.c).  Inside a section a reader therefore sees
 * exactly the bytes of one published version, for as long as the section
 * lasts -- which is what lets fdn_lookup_view hand out pointers into the
 * node.  The exception is a read-only handle (FDN_SEG_READONLY): it reads
 * without grace periods, so a node may be freed and reused while it reads.
 * Its reads validate the encoding as before, and its views are copies
 * taken under the block's state word (ro_copy).  The checker (the audit
 * below) validates every stored encoding, so a damaged one -- memory
 * corruption, not a writer -- is reported rather than silently trusted;
 * the readers of an encoding (fdn_attrs_*) bound every access by its
 * length whatever the bytes are.
 *
 * Table "index" (1, prefix-hashed) holds one reference per (indexed
 * attribute value, entry), and one per (owner, group of main-table buckets
 * holding its entries) -- the owner references, below: key =
 * [n][name \0 type value-text][entry key], resp. [14][owner prefix][group],
 * where the n-byte prefix is what is hashed, so all entries of one value
 * share a chain and find_by_attribute walks only that chain.  The value is
 * struct ref_val {owner_word, writer_word, owner_idx, writer_idx}: the
 * owner the reference was written for and the process that wrote it --
 * except for an owner reference (below) written by its owner itself, whose
 * value is empty: its prefix names the owner, and the writer is the owner
 * (ref_of).  An owner reference is then one 64-byte block (24-byte node
 * header, 19-byte key).  References are written before the entry and
 * removed after it, so the index may briefly hold a reference whose entry
 * does not (yet or any more) carry the value -- never miss one that does.
 * Readers therefore verify every reference against the main table.  A
 * reference is stale when its owner is dead, or when its entry does not
 * carry its value and its writer is dead (a writer killed between the two
 * steps); the reaper removes stale references (fdn__registry_purge) and
 * the checker reports any it finds afterwards.
 */
#include "lib/internal.h"

#include <foundation/changes.h>
#include <foundation/registry.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define T_MAIN             0u
#define T_INDEX            1u
#define REC_SIZE           20u
#define REC_OFF_WORD       0u
#define REC_OFF_IDX        8u
#define REC_OFF_TIME       12u
#define PREFIX_MAX         255u
#define INDEXED_STRING_MAX 200u

/* A record read out of its node (the stored form is above). */
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

/* ---- the backend ------------------------------------------------------------
 * Every public call starts here: the flags choose the segment or this
 * process's local registry (registry_local.c) per call (backend.c).  The
 * two never exchange entries: see docs/flags.md. */
#define LOCAL_OR_ENFORCED(s, local_call)                             \
	do {                                                         \
		int b_ = fdn__backend((s), FDN__SVC_REGISTRY);       \
		if (b_ != FDN__SHARED)                               \
			return b_ == FDN__LOCAL ? (local_call) : b_; \
	} while (0)

static bool indexed(fdn_segment *s, const char *name);

/* ---- records ------------------------------------------------------------- */

static bool rec_of(const struct fdn__ht_view *v, struct rec *r, const unsigned char **attrs)
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

bool fdn__word_live(const fdn_segment *s, uint32_t idx, uint64_t word)
{
	return idx < s->nprocs && FDN_PROC_STATE(word) == FDN_PROC_LIVE &&
	       atomic_load_explicit(&s->procs[idx].word, memory_order_acquire) == word;
}

/* The entry of view v if it is visible and well-formed. */
static bool visible(const fdn_segment *s, const struct fdn__ht_view *v, struct rec *r,
		    struct fdn_entry_view *e)
{
	const unsigned char *attrs;
	if (!rec_of(v, r, &attrs) || !fdn__word_live(s, r->owner_idx, r->owner_word) ||
	    v->key_len > FDN_REG_KEY_MAX)
		return false;
	/* Validated when written (above); a read-only handle may read a node
	 * being reused, and validates. */
	if (s->readonly && fdn_attrs_validate(attrs, r->attrs_len) != 0)
		return false;
	*e = (struct fdn_entry_view){
	    v->key,           v->key_len, (pid_t)FDN_PROC_PID(r->owner_word),
	    r->registered_ns, attrs,      r->attrs_len};
	return true;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int check_key(size_t klen)
{
	return klen == 0 || klen > FDN_REG_KEY_MAX ? FDN_EINVKEY : 0;
}

/* Is key in the remote namespace (registry.h)?  Such keys are written only
 * with FDN_REG_MIRROR, and a walk returns them only with FDN_REG_REMOTE. */
static bool remote_key(const void *key, size_t klen)
{
	return klen > 0 && ((const unsigned char *)key)[0] == FDN_REG_REMOTE_BYTE;
}

/* A writer's key: the remote namespace with FDN_REG_MIRROR and only then. */
static int check_write_key(const void *key, size_t klen, unsigned flags)
{
	int r = check_key(klen);
	if (r == 0 && remote_key(key, klen) != !!(flags & FDN_REG_MIRROR))
		r = FDN_EINVKEY;
	return r;
}

/* The registry's telemetry: the event `id` of an operation that began at
 * t0 (CLOCK_MONOTONIC; 0 = nobody listened then) and returned r:
 * duration_ns; result ("ok" or the error's name), backend, key (when it is
 * text).  Returns r. */
static int reg_event(fdn_segment *s, enum fdn__ev id, uint64_t t0, const void *key, size_t klen,
		     int r)
{
	if (t0 == 0)
		return r;
	char k[FDN_REG_KEY_MAX + 1];
	size_t n = key && klen <= FDN_REG_KEY_MAX ? klen : 0;
	memcpy(k, key, n);
	k[n] = 0;
	struct fdn_measurement m = {"duration_ns", (double)(fdn__mono_ns() - t0)};
	struct fdn_attr a[3] = {
	    {.name = "result", .type = FDN_ATTR_STRING, .v.s = r ? fdn_errname(r) : "ok"},
	    {.name = "backend",
	     .type = FDN_ATTR_STRING,
	     .v.s = fdn__backend(s, FDN__SVC_REGISTRY) == FDN__SHARED ? "shared" : "local"},
	    {.name = "key", .type = FDN_ATTR_STRING, .v.s = k},
	};
	fdn__emit_id(s, id, &m, 1, a, n && !memchr(key, 0, n) ? 3 : 2);
	return r;
}

/* ---- owners ---------------------------------------------------------------- */

/* The process slot that will own entries of pid: ours, an existing one for
 * that exact process, or a new claim (the reaper is rung and watches it). */
static int owner_slot(fdn_segment *s, pid_t pid, uint32_t *idx, uint64_t *word)
{
	if ((uint32_t)pid == FDN_PROC_PID(s->proc_word)) { /* ourselves, no syscall */
		*idx = s->proc_idx;
		*word = s->proc_word;
		return 0;
	}
	uint64_t ident;
	uint32_t kind;
	int r = fdn__identity(pid, &ident, &kind);
	if (r)
		return r;
	uint64_t want = FDN_PROC_WORD(FDN_PROC_LIVE, (uint32_t)pid, fdn__ident_tag(ident, kind));
	for (uint32_t i = 0; i < s->nprocs; i++) {
		if (atomic_load_explicit(&s->procs[i].word, memory_order_acquire) == want) {
			*idx = i;
			*word = want;
			return 0;
		}
	}
	r = fdn__proc_claim(s, pid, idx, word);
	if (r == FDN_ENOSPACE) {
		/* Slots held for other pids whose entries are all gone (their
		 * unregister could not release them: raced, or killed). */
		for (uint32_t i = 0; i < s->nprocs; i++)
			fdn__registry_release_idle(s, i, atomic_load(&s->procs[i].word));
		r = fdn__proc_claim(s, pid, idx, word);
	}
	/* The word we claimed, not a load of the slot: the reaper may release
	 * an idle slot held for another pid as soon as we are named its
	 * claimer.  Then the registration finds its owner gone and registers
	 * again (reg_register_once); with the slot's word loaded here, it
	 * wrote its entry for owner word 0, removed it as ownerless, and
	 * reported success (stress_overload, test_tools under load). */
	return r;
}

/* ---- index references --------------------------------------------------- */

/* Prefix "name \0 type text" of one indexable value, or 0 if too long. */
static size_t prefix_of(const char *name, const struct fdn_attr *a, const char *item,
			unsigned char *out)
{
	char text[PREFIX_MAX + 1];
	char type;
	switch (a->type) {
	case FDN_ATTR_STRING:
	case FDN_ATTR_LIST:
		if (strlen(item) > INDEXED_STRING_MAX)
			return 0;
		type = 's';
		snprintf(text, sizeof(text), "%s", item);
		break;
	case FDN_ATTR_INT:
		type = 'n';
		snprintf(text, sizeof(text), "%lld", (long long)a->v.i);
		break;
	case FDN_ATTR_DOUBLE:
		/* EQ compares numbers by value: an integral double is indexed
		 * as the integer it equals (1.0 as 1, -0.0 as 0). */
		type = 'n';
		if (a->v.d >= -9.2e18 && a->v.d <= 9.2e18 && a->v.d == (double)(long long)a->v.d)
			snprintf(text, sizeof(text), "%lld", (long long)a->v.d);
		else
			snprintf(text, sizeof(text), "%.17g", a->v.d);
		break;
	case FDN_ATTR_BOOL:
		type = 'b';
		snprintf(text, sizeof(text), "%d", a->v.b ? 1 : 0);
		break;
	default:
		return 0;
	}
	size_t nl = strlen(name), tl = strlen(text);
	if (nl + 2 + tl > PREFIX_MAX)
		return 0;
	memcpy(out, name, nl);
	out[nl] = 0;
	out[nl + 1] = (unsigned char)type;
	memcpy(out + nl + 2, text, tl);
	return nl + 2 + tl;
}

typedef int (*prefix_cb)(void *arg, const unsigned char *prefix, size_t plen);

/* Call cb for the prefix of every indexed value of an encoded set. */
static int each_prefix(fdn_segment *s, const void *attrs, size_t alen, prefix_cb cb, void *arg)
{
	uint32_t n = fdn_attrs_count(attrs, alen);
	for (uint32_t i = 0; i < n; i++) {
		struct fdn_attr a;
		if (fdn_attrs_at(attrs, alen, i, &a) || !indexed(s, a.name))
			continue;
		unsigned char p[PREFIX_MAX];
		uint32_t items = a.type == FDN_ATTR_LIST ? a.v.list.n : 1;
		for (uint32_t k = 0; k < items; k++) {
			const char *item = a.type == FDN_ATTR_LIST     ? fdn_attrs_list_item(&a, k)
					   : a.type == FDN_ATTR_STRING ? a.v.s
								       : "";
			size_t pl = item ? prefix_of(a.name, &a, item, p) : 0;
			if (pl == 0)
				continue;
			int r = cb(arg, p, pl);
			if (r)
				return r;
		}
	}
	return 0;
}

/*
 * The owner references: with the prefix [0 'o' owner_word owner_idx] (an
 * attribute name is never empty, so no attribute prefix starts with 0), one
 * reference per group of GROUP_BUCKETS consecutive main-table buckets that
 * holds an entry of the owner: its key is [14][prefix][group, u32 little-
 * endian], where an entry's group is its bucket / GROUP_BUCKETS.  All
 * references of one owner share its chains, so the reaper finds a dead
 * owner's entries by walking the groups they name: O(entries x
 * GROUP_BUCKETS) bucket words (8 lines a group), not the table.  An owner
 * with many entries has far fewer references than entries (at most one
 * per group: 1 000 000 entries of one owner in 2^21 buckets have 32 768),
 * which is what keeps the registry near 160 bytes per entry; an owner with
 * few has about one per entry (a 64-byte block each).
 *
 * A group's reference exists while some entry of its owner -- visible or
 * not (an owner's death hides its entries before they are removed) -- lies
 * in the group: it is made sure of before each entry and written again after it, like
 * every reference, and removed only when a walk of the group in a
 * read-side section found no entry of that owner (ref_del_suffix, which
 * argues why a concurrent writer's entry is never left without it).
 */
#define OWNER_PREFIX_LEN 14u
#define GROUP_BUCKETS    64u
#define GROUP_LEN        4u

static size_t owner_prefix(uint32_t idx, uint64_t word, unsigned char *out)
{
	out[0] = 0;
	out[1] = 'o';
	memcpy(out + 2, &word, 8);
	memcpy(out + 10, &idx, 4);
	return OWNER_PREFIX_LEN;
}

static bool is_owner_prefix(const unsigned char *prefix, size_t plen)
{
	return plen == OWNER_PREFIX_LEN && prefix[0] == 0 && prefix[1] == 'o';
}

/* The value of reference v: stored, or (an owner reference with an empty
 * value) the owner its prefix names, who also wrote it.  False if v is
 * malformed. */
static bool ref_of(const struct fdn__ht_view *v, struct ref_val *rv)
{
	const unsigned char *k = v->key;
	if (v->key_len < 2 || 1u + k[0] > v->key_len)
		return false;
	if (v->val_len == sizeof(*rv)) {
		memcpy(rv, v->val, sizeof(*rv));
		return true;
	}
	if (v->val_len != 0 || !is_owner_prefix(k + 1, k[0]))
		return false;
	memcpy(&rv->owner_word, k + 3, 8);
	memcpy(&rv->owner_idx, k + 11, 4);
	rv->writer_word = rv->owner_word;
	rv->writer_idx = rv->owner_idx;
	return true;
}

/* Call cb for the owner reference, then every indexed value. */
static int each_ref(fdn_segment *s, uint32_t oidx, uint64_t oword, const void *attrs, size_t alen,
		    prefix_cb cb, void *arg)
{
	unsigned char p[OWNER_PREFIX_LEN];
	int r = cb(arg, p, owner_prefix(oidx, oword, p));
	return r ? r : each_prefix(s, attrs, alen, cb, arg);
}

/* The group of an entry key (see the owner references). */
static uint32_t group_of(fdn_segment *s, const void *key, size_t klen)
{
	return (uint32_t)((fdn__ht_hash(s, T_MAIN, key, klen) & s->bucket_mask[T_MAIN]) /
			  GROUP_BUCKETS);
}

/* What follows the prefix in the reference of (prefix, entry key): the
 * key, or for an owner prefix the key's group (into grp). */
static const void *ref_suffix(fdn_segment *s, const unsigned char *prefix, size_t plen,
			      const void *key, size_t *klen, unsigned char grp[GROUP_LEN])
{
	if (!is_owner_prefix(prefix, plen))
		return key;
	uint32_t g = group_of(s, key, *klen);
	memcpy(grp, &g, GROUP_LEN);
	*klen = GROUP_LEN;
	return grp;
}

/* [plen][prefix][suffix] into buf; returns its length. */
static size_t ref_key_raw(unsigned char *buf, const unsigned char *prefix, size_t plen,
			  const void *suf, size_t slen)
{
	buf[0] = (unsigned char)plen;
	memcpy(buf + 1, prefix, plen);
	memcpy(buf + 1 + plen, suf, slen);
	return 1 + plen + slen;
}

/* The key of the reference (prefix, entry key) into buf; its length. */
static size_t ref_key(fdn_segment *s, unsigned char *buf, const unsigned char *prefix, size_t plen,
		      const void *key, size_t klen)
{
	unsigned char grp[GROUP_LEN];
	const void *suf = ref_suffix(s, prefix, plen, key, &klen, grp);
	return ref_key_raw(buf, prefix, plen, suf, klen);
}

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

static int group_scan_cb(void *arg, const struct fdn__ht_view *v);

static int group_scan(fdn_segment *s, uint32_t g, struct group_scan *gs)
{
	uint64_t nb = s->bucket_mask[T_MAIN] + 1, b0 = (uint64_t)g * GROUP_BUCKETS;
	for (uint64_t b = b0; b < b0 + GROUP_BUCKETS && b < nb; b++) {
		int r = fdn__ht_foreach_bucket(s, T_MAIN, b, group_scan_cb, gs);
		if (r < 0)
			return r;
		if (r > 0)
			break; /* enough */
	}
	return 0;
}

struct ref_op {
	fdn_segment *s;
	const void *key;
	size_t klen;
	uint64_t owner_word;
	uint32_t owner_idx;
	const void *keep; /* delete only prefixes absent from this set */
	size_t keep_len;
	bool ensure; /* put: leave a reference that is there with this value */
};

/* Is the reference k there with exactly this value? */
static bool ref_there(fdn_segment *s, const unsigned char *k, size_t kl, const void *val,
		      size_t vlen)
{
	struct fdn__thread *t;
	if (fdn__rcu_read_lock(s, &t))
		return false;
	struct fdn__ht_view v;
	bool same = fdn__ht_lookup(s, T_INDEX, k, kl, &v) == 0 && v.val_len == vlen &&
		    (vlen == 0 || memcmp(v.val, val, vlen) == 0);
	fdn__rcu_read_unlock(t);
	return same;
}

static int ref_put_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct ref_op *o = arg;
	if (o->klen > FDN_REG_KEY_MAX)
		return FDN_EINVKEY;
	unsigned char k[1 + PREFIX_MAX + FDN_REG_KEY_MAX];
	struct ref_val v = {o->owner_word, o->s->proc_word, o->owner_idx, o->s->proc_idx};
	size_t kl = ref_key(o->s, k, prefix, plen, o->key, o->klen);
	/* An owner reference written by its owner: the prefix says it all. */
	bool self = is_owner_prefix(prefix, plen) && v.owner_word == v.writer_word &&
		    v.owner_idx == v.writer_idx;
	size_t vlen = self ? 0 : sizeof(v);
	if (o->ensure && ref_there(o->s, k, kl, &v, vlen))
		return 0;
	return fdn__ht_put(o->s, T_INDEX, k, kl, &v, vlen, FDN_HT_UPSERT, NULL, NULL);
}

struct has_arg {
	const unsigned char *prefix;
	size_t plen;
};

static int has_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct has_arg *h = arg;
	return plen == h->plen && memcmp(prefix, h->prefix, plen) == 0;
}

/* Does the encoded set produce this prefix? */
static bool set_has(fdn_segment *s, const void *attrs, size_t alen, const unsigned char *prefix,
		    size_t plen)
{
	struct has_arg h = {prefix, plen};
	return attrs && each_prefix(s, attrs, alen, has_cb, &h) == 1;
}

/* Is the reference (prefix, suffix) needed?  An owner reference: its group
 * holds an entry of its owner.  A value's: the entry of key suffix is
 * visible and carries the value.  Read lock held. */
static bool ref_carried(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
			size_t slen)
{
	if (is_owner_prefix(prefix, plen)) {
		if (slen != GROUP_LEN)
			return false;
		struct group_scan gs = {s, 0, 0, NULL, 0, 0, false};
		uint32_t g;
		memcpy(&gs.word, prefix + 2, 8);
		memcpy(&gs.idx, prefix + 10, 4);
		memcpy(&g, suf, GROUP_LEN);
		return group_scan(s, g, &gs) == 0 && gs.any;
	}
	struct fdn__ht_view ev;
	struct rec rc;
	struct fdn_entry_view e;
	return check_key(slen) == 0 && fdn__ht_lookup(s, T_MAIN, suf, slen, &ev) == 0 &&
	       visible(s, &ev, &rc, &e) && set_has(s, e.attrs, e.attrs_len, prefix, plen);
}

/*
 * Remove the reference (prefix, suffix) unless it is needed (ref_carried):
 * for a value, the entry now visible for key carries it; for an owner, an
 * entry of the owner lies in the group.  Decided in a read-side section, then deleted after
 * it, the delete naming the exact reference version seen (gidx and
 * generation: a name that stays valid outside the section, as for
 * remove_entry): a writer that re-wrote the reference meanwhile (every
 * writer makes sure of its references before its entry and writes them
 * again after it) makes the delete fail, so a reference a visible entry carries is never lost.
 * The section protected only the reads; a writer can act between decision
 * and delete whether the delete is inside the section or not, and the
 * second write is what repairs that.  The delete is made outside so that
 * it can flush a full deferred-free list first: inside a section it could
 * not (FDN_EINREAD), and a reaper whose list was full failed every purge
 * of references without entries, retrying for ever (stress_killstorm
 * under ASan; test_registry purge_with_a_full_limbo).
 */
static int ref_del_suffix(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *suf,
			  size_t slen, bool *deleted)
{
	unsigned char k[1 + PREFIX_MAX + FDN_REG_KEY_MAX];
	if (slen > FDN_REG_KEY_MAX)
		return 0;
	size_t kl = ref_key_raw(k, prefix, plen, suf, slen);
	struct fdn__thread *t;
	int r = fdn__rcu_read_lock(s, &t);
	if (r)
		return r;
	struct fdn__ht_view ref, version = {0};
	r = fdn__ht_lookup(s, T_INDEX, k, kl, &ref);
	if (r == 0) {
		version = (struct fdn__ht_view){.gidx = ref.gidx, .gen = ref.gen};
		r = ref_carried(s, prefix, plen, suf, slen) ? 1 : 0;
	}
	fdn__rcu_read_unlock(t);
	if (r == 0 && (r = fdn__ht_delete(s, T_INDEX, k, kl, &version)) == 0 && deleted)
		*deleted = true;
	return r == FDN_ENOTFOUND || r == 1 ? 0 : r;
}

/* The same for the reference of (prefix, entry key). */
static int ref_del_unused(fdn_segment *s, const unsigned char *prefix, size_t plen, const void *key,
			  size_t klen)
{
	unsigned char grp[GROUP_LEN];
	if (klen > FDN_REG_KEY_MAX)
		return 0;
	const void *suf = ref_suffix(s, prefix, plen, key, &klen, grp);
	return ref_del_suffix(s, prefix, plen, suf, klen, NULL);
}

static int ref_del_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct ref_op *o = arg;
	if (o->keep && set_has(o->s, o->keep, o->keep_len, prefix, plen))
		return 0;
	return ref_del_unused(o->s, prefix, plen, o->key, o->klen);
}

/* ---- register ------------------------------------------------------------- */

/* Is the holder of view v alive (visible, and the kernel agrees)? */
static bool holder_alive(fdn_segment *s, const struct fdn__ht_view *v, pid_t *pid)
{
	struct rec r;
	const unsigned char *attrs;
	if (!rec_of(v, &r, &attrs))
		return false;
	*pid = (pid_t)FDN_PROC_PID(r.owner_word);
	return fdn__word_live(s, r.owner_idx, r.owner_word) &&
	       fdn__proc_alive(s, r.owner_idx, r.owner_word);
}

/* Insert or take over: returns 0, FDN_EEXISTS (holder live, no replace,
 * and not pid `mine` -- a registration started again takes over what its
 * earlier attempt left for the same pid), or an error.  On success *old_rec is the replaced record
 * (owner_word 0 if it was an insert) and old holds a copy of its attributes. */
static int put_entry(fdn_segment *s, const void *key, size_t klen, const void *val, size_t vlen,
		     unsigned flags, pid_t mine, pid_t *holder, unsigned char *old,
		     struct rec *old_rec, pid_t pid)
{
	/* A new entry and a takeover are both "registered" in the change log. */
	const struct fdn__chg chg = {FDN_CHANGE_REGISTERED, pid, 0};
	memset(old_rec, 0, sizeof(*old_rec));
	for (int tries = 0; tries < 64; tries++) {
		struct fdn__thread *t;
		/* The section below holds two table operations: make room for
		 * their retirement first (inside it no grace period can pass). */
		int r = fdn__write_room(s);
		if (r || (r = fdn__rcu_read_lock(s, &t)))
			return r;
		struct fdn__ht_view cur;
		r = fdn__ht_put_chg(s, T_MAIN, key, klen, val, vlen, FDN_HT_UNIQUE, NULL, &cur,
				    &chg);
		if (r != FDN_EEXISTS) {
			fdn__rcu_read_unlock(t);
			return r;
		}
		pid_t hp = 0;
		if (!(flags & FDN_REG_REPLACE) && holder_alive(s, &cur, &hp) && hp != mine) {
			fdn__rcu_read_unlock(t);
			if (holder)
				*holder = hp;
			return FDN_EEXISTS;
		}
		struct rec orec = {0};
		const unsigned char *oattrs;
		if (!rec_of(&cur, &orec, &oattrs) || fdn_attrs_validate(oattrs, orec.attrs_len))
			orec.attrs_len = 0; /* damaged: its value refs go by sweep */
		if (orec.attrs_len)
			memcpy(old, oattrs, orec.attrs_len);
		struct fdn__ht_view expect = cur;
		r = fdn__ht_put_chg(s, T_MAIN, key, klen, val, vlen, FDN_HT_REPLACE, &expect, NULL,
				    &chg);
		fdn__rcu_read_unlock(t);
		if (r == 0) {
			*old_rec = orec;
			return 0;
		}
		if (r != FDN_ENOTFOUND)
			return r;
		/* Changed under us (replaced or removed): try again. */
	}
	return FDN_EEXISTS;
}

/* After a failed write: the references written for it that the entry
 * now visible does not carry are removed (those it carries stay: a carried
 * reference is never stale, whoever wrote it). */
static void refs_undo(fdn_segment *s, const void *key, size_t klen, uint32_t oidx, uint64_t oword,
		      const void *attrs, size_t alen)
{
	struct ref_op del = {s, key, klen, 0, 0, NULL, 0, false};
	each_ref(s, oidx, oword, attrs, alen, ref_del_cb, &del);
}

static int remove_entry(fdn_segment *s, const void *key, size_t klen, const struct fdn__ht_view *v,
			uint32_t oidx, uint64_t oword, const unsigned char *attrs, size_t alen,
			unsigned kind);

/*
 * The entry of key, copied out of a read-side section of its own: its
 * version (gidx, generation -- still a valid name after the section, for a
 * conditional replace or delete, which fails if the entry changed), its
 * record, and its attributes (rc->attrs_len bytes into attrs; 0 if they are
 * damaged).  visible_only: FDN_ENOTFOUND unless the entry is visible.
 */
static int copy_entry(fdn_segment *s, const void *key, size_t klen, bool visible_only,
		      struct fdn__ht_view *version, struct rec *rc, unsigned char *attrs)
{
	struct fdn__thread *t;
	int r = fdn__rcu_read_lock(s, &t);
	if (r)
		return r;
	struct fdn__ht_view v;
	const unsigned char *a;
	r = fdn__ht_lookup(s, T_MAIN, key, klen, &v);
	if (r == 0 && !rec_of(&v, rc, &a))
		r = FDN_ENOTFOUND;
	if (r == 0 && visible_only && !fdn__word_live(s, rc->owner_idx, rc->owner_word))
		r = FDN_ENOTFOUND;
	if (r == 0) {
		*version = (struct fdn__ht_view){.gidx = v.gidx, .gen = v.gen};
		if (fdn_attrs_validate(a, rc->attrs_len) != 0)
			rc->attrs_len = 0;
		memcpy(attrs, a, rc->attrs_len);
	}
	fdn__rcu_read_unlock(t);
	return r;
}

/* A writer for another pid whose owner died while it wrote: the reaper may
 * have purged already, so the writer removes its own entry (this version
 * of it only). */
static void drop_if_owner_gone(fdn_segment *s, const void *key, size_t klen, uint32_t oidx,
			       uint64_t oword)
{
	atomic_thread_fence(memory_order_seq_cst); /* our put before the check */
	if (fdn__word_live(s, oidx, oword))
		return;
	struct fdn__ht_view version;
	struct rec r;
	unsigned char copy[FDN_ATTRS_MAX];
	if (copy_entry(s, key, klen, false, &version, &r, copy) == 0 && r.owner_word == oword &&
	    r.owner_idx == oidx)
		remove_entry(s, key, klen, &version, oidx, oword, copy, r.attrs_len,
			     FDN_CHANGE_REMOVED);
}

/* The value of an entry: its record, then its attributes -- an encoding
 * made by fdn_attrs_encode or fdn_attrs_merge, valid by construction
 * (readers trust it: see the top of this file). */
static int build_record(uint32_t owner_idx, uint64_t owner_word, uint64_t reg_ns,
			const unsigned char *attrs, size_t alen, unsigned char *buf)
{
	memcpy(buf + REC_OFF_WORD, &owner_word, 8);
	memcpy(buf + REC_OFF_IDX, &owner_idx, 4);
	memcpy(buf + REC_OFF_TIME, &reg_ns, 8);
	if (alen)
		memmove(buf + REC_SIZE, attrs, alen);
	return (int)(REC_SIZE + alen);
}

/* Every registry write begins here: the handle may write, and (once a
 * second) the reaper that will clean up after its owner still runs. */
static int writable(fdn_segment *s)
{
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (s->readonly)
		return FDN_ERDONLY;
	fdn__reaper_notice(s);
	return 0;
}

/* Is the entry of key visible and owned by (oidx, oword)? */
static bool entry_owned(fdn_segment *s, const void *key, size_t klen, uint32_t oidx, uint64_t oword)
{
	struct fdn__ht_view version;
	struct rec r;
	unsigned char copy[FDN_ATTRS_MAX];
	return copy_entry(s, key, klen, true, &version, &r, copy) == 0 && r.owner_idx == oidx &&
	       r.owner_word == oword;
}

static int reg_register_once(fdn_segment *s, const void *key, size_t klen, pid_t pid,
			     const struct fdn_attr *attrs, size_t n, unsigned flags, bool again,
			     pid_t *holder, bool *released)
{
	unsigned char val[REC_SIZE + FDN_ATTRS_MAX], old[FDN_ATTRS_MAX];
	int r = writable(s);
	if (r)
		return r;
	if ((r = check_write_key(key, klen, flags)))
		return r;
	if (pid <= 0 || (flags & ~(unsigned)(FDN_REG_REPLACE | FDN_REG_MIRROR)))
		return FDN_EINVAL;
	/* A remote entry is owned by the agent that mirrors it: when the
	 * agent dies, the reaper removes its mirror like any dead owner's. */
	if ((flags & FDN_REG_MIRROR) && (uint32_t)pid != FDN_PROC_PID(s->proc_word))
		return FDN_EINVAL;
	int alen = fdn_attrs_encode(attrs, n, val + REC_SIZE, FDN_ATTRS_MAX);
	if (alen < 0)
		return alen;
	uint32_t oidx;
	uint64_t oword;
	if ((r = owner_slot(s, pid, &oidx, &oword)))
		return r;
	int vlen = build_record(oidx, oword, now_ns(), val + REC_SIZE, (size_t)alen, val);
	/* References first: the index never misses a value the entry has. */
	struct ref_op put = {s, key, klen, oword, oidx, NULL, 0, true};
	if ((r = each_ref(s, oidx, oword, val + REC_SIZE, (size_t)alen, ref_put_cb, &put))) {
		refs_undo(s, key, klen, oidx, oword, val + REC_SIZE, (size_t)alen);
		return r;
	}
	struct rec orec;
	r = put_entry(s, key, klen, val, (size_t)vlen, flags, again ? pid : 0, holder, old, &orec,
		      pid);
	if (r) {
		refs_undo(s, key, klen, oidx, oword, val + REC_SIZE, (size_t)alen);
		return r;
	}
	/* Again after the entry, and written even if it is there: repairs a
	 * reference a concurrent remover took between our first pass and our
	 * entry, and makes a remover that decided on the version it saw
	 * before fail its delete (ref_del_suffix).  That second write is
	 * what keeps a carried reference; the first pass only makes the
	 * entry's references exist when it appears, so it leaves one that is
	 * there with our value (the owner's, mostly) as it is. */
	put.ensure = false;
	each_ref(s, oidx, oword, val + REC_SIZE, (size_t)alen, ref_put_cb, &put);
	/* Took over an entry: what it had that we do not (its owner reference,
	 * values) loses its reference. */
	struct ref_op del = {s, key, klen, 0, 0, val + REC_SIZE, (size_t)alen, false};
	if (orec.owner_word)
		each_ref(s, orec.owner_idx, orec.owner_word, old, orec.attrs_len, ref_del_cb, &del);
	/* The owner's slot may have left under us while its process lives:
	 * the reaper releases an idle slot held for another pid
	 * (fdn__proc_release) and may have found it idle before our owner
	 * reference was written.  Then we see its RELEASING mark here (the
	 * store-buffering pair of fdn__proc_release), wait for its decision,
	 * and look whether our entry is still visible under our claim: a
	 * release, or a release and a new claim of the slot with the same
	 * word (the same pid) while the sweep removed our entry, leaves it
	 * not.  Once we found it visible with no release under way, any
	 * later release sees our reference and keeps the slot. */
	if (oidx != s->proc_idx) {
		bool gone = fdn__proc_wait_release(s, oidx, oword);
		if ((gone || !entry_owned(s, key, klen, oidx, oword)) &&
		    fdn__pid_alive(pid, FDN_PROC_IDENT40(oword))) {
			drop_if_owner_gone(s, key, klen, oidx, oword);
			*released = true; /* the caller registers again */
			return 0;
		}
	}
	drop_if_owner_gone(s, key, klen, oidx, oword);
	return 0;
}

static int reg_register(fdn_segment *s, const void *key, size_t klen, pid_t pid,
			const struct fdn_attr *attrs, size_t n, unsigned flags, pid_t *holder)
{
	if ((flags & FDN_REG_MIRROR) && fdn__backend(s, FDN__SVC_REGISTRY) != FDN__SHARED)
		return FDN_EINVAL; /* remote entries live in the segment only */
	if (!(flags & FDN_REG_MIRROR) && remote_key(key, klen))
		return FDN_EINVKEY;
	LOCAL_OR_ENFORCED(s, fdn__local_register(key, klen, pid, attrs, n, flags, holder));
	/* Started again while the slot held for pid is released under each
	 * attempt (see the end of reg_register_once); the reaper releases a
	 * slot at most once a tick, so a second attempt almost always
	 * succeeds.  After REG_ATTEMPTS, FDN_EBUSY: nothing is registered. */
	enum { REG_ATTEMPTS = 64 };
	for (int tries = 0; tries < REG_ATTEMPTS; tries++) {
		bool released = false;
		int r = reg_register_once(s, key, klen, pid, attrs, n, flags, tries > 0, holder,
					  &released);
		if (r || !released)
			return r;
		if (tries >= 4) {
			struct timespec d = {0, 1000000};
			nanosleep(&d, NULL);
		}
	}
	return FDN_EBUSY;
}

/* ---- read ------------------------------------------------------------------ */

/*
 * A read-only handle's copy of the entry of key, made stable by its block's
 * state word (layout.h): the word is read (acquire) before the node, the
 * key is compared again and the record and attributes copied, then the
 * word is read again after an acquire fence.  The same word twice -- ALLOC,
 * with the generation the lookup saw -- means the block was neither freed
 * nor reused in between: every reuse is a claim CAS that raises the
 * generation, and the claimant's writes into the block are ordered after
 * its claim (the release fence in alloc.c's fdn__try_claim), so a copy that
 * read any of them finds the word changed.  A copy that fails is taken
 * again from a new lookup; after RO_TRIES of them, FDN_ETIMEDOUT.  The
 * copied encoding is validated (it may be damaged; see the top of file).
 */
#define RO_TRIES 64

struct ro_entry {
	struct rec rc;
	unsigned char attrs[FDN_ATTRS_MAX];
};

static int ro_copy(fdn_segment *s, const void *key, size_t klen, bool attrs, struct ro_entry *out)
{
	for (int tries = 0; tries < RO_TRIES; tries++) {
		struct fdn__ht_view v;
		int r = fdn__ht_lookup(s, T_MAIN, key, klen, &v);
		if (r)
			return r;
		uint64_t w = atomic_load_explicit(&s->bstate[v.gidx], memory_order_acquire);
		if (FDN_BLOCK_KIND(w) != FDN_BLOCK_ALLOC || FDN_BLOCK_GEN(w) != v.gen)
			continue;
		struct fdn__ht_view now;
		const unsigned char *a;
		fdn__view(fdn__gptr(s, v.gidx), v.gidx, &now);
		bool ok = now.key_len == klen && memcmp(now.key, key, klen) == 0 &&
			  rec_of(&now, &out->rc, &a);
		if (ok && attrs)
			memcpy(out->attrs, a, out->rc.attrs_len);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->bstate[v.gidx], memory_order_relaxed) != w || !ok)
			continue;
		if (!fdn__word_live(s, out->rc.owner_idx, out->rc.owner_word) ||
		    (attrs && fdn_attrs_validate(out->attrs, out->rc.attrs_len) != 0))
			return FDN_ENOTFOUND;
		return 0;
	}
	return FDN_ETIMEDOUT;
}

static int read_args(size_t klen, unsigned flags)
{
	int r = check_key(klen);
	if (r)
		return r;
	return flags & ~(unsigned)FDN_REG_CHECK_ALIVE ? FDN_EINVAL : 0;
}

static int lookup_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags,
			 struct fdn_entry *out);

static int lookup(fdn_segment *s, const void *key, size_t klen, unsigned flags,
		  struct fdn_entry *out)
{
	LOCAL_OR_ENFORCED(s, fdn__local_lookup(key, klen, flags, out));
	return lookup_shared(s, key, klen, flags, out);
}

static void entry_out(const void *key, size_t klen, const struct rec *rc,
		      const unsigned char *attrs, struct fdn_entry *out)
{
	memcpy(out->key, key, klen);
	out->key[klen] = 0;
	out->key_len = (uint32_t)klen;
	out->pid = (pid_t)FDN_PROC_PID(rc->owner_word);
	out->registered_ns = rc->registered_ns;
	out->attrs_len = rc->attrs_len;
	memcpy(out->attrs, attrs, rc->attrs_len);
}

static int lookup_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags,
			 struct fdn_entry *out)
{
	int r = read_args(klen, flags);
	if (r)
		return r;
	struct rec rc;
	if (s->readonly) {
		struct ro_entry c;
		r = ro_copy(s, key, klen, out != NULL, &c);
		if (r == 0 && out)
			entry_out(key, klen, &c.rc, c.attrs, out);
		if (r == 0)
			rc = c.rc;
	} else {
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			return r;
		struct fdn__ht_view v;
		struct fdn_entry_view e;
		r = fdn__ht_lookup(s, T_MAIN, key, klen, &v);
		if (r == 0 && !visible(s, &v, &rc, &e))
			r = FDN_ENOTFOUND;
		if (r == 0 && out)
			entry_out(key, klen, &rc, e.attrs, out);
		fdn__rcu_read_unlock(t);
	}
	if (r == 0 && (flags & FDN_REG_CHECK_ALIVE) &&
	    !fdn__proc_alive(s, rc.owner_idx, rc.owner_word))
		r = FDN_ENOTFOUND;
	return r;
}

/* The owner of the visible entry of key: the bucket line, the node's first
 * line (its record is there: top of file) and the owner's process slot. */
static int whereis_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags, pid_t *pid)
{
	int r = read_args(klen, flags);
	if (r)
		return r;
	struct rec rc;
	if (s->readonly) {
		struct ro_entry c;
		r = ro_copy(s, key, klen, false, &c);
		if (r == 0)
			rc = c.rc;
	} else {
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			return r;
		struct fdn__ht_view v;
		const unsigned char *attrs;
		r = fdn__ht_lookup(s, T_MAIN, key, klen, &v);
		if (r == 0 &&
		    (!rec_of(&v, &rc, &attrs) || !fdn__word_live(s, rc.owner_idx, rc.owner_word)))
			r = FDN_ENOTFOUND;
		fdn__rcu_read_unlock(t);
	}
	if (r == 0 && (flags & FDN_REG_CHECK_ALIVE) &&
	    !fdn__proc_alive(s, rc.owner_idx, rc.owner_word))
		r = FDN_ENOTFOUND;
	if (r == 0)
		*pid = (pid_t)FDN_PROC_PID(rc.owner_word);
	return r;
}

static int whereis(fdn_segment *s, const void *key, size_t klen, unsigned flags, pid_t *pid)
{
	if (!pid)
		return FDN_EINVAL;
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b == FDN__SHARED)
		return whereis_shared(s, key, klen, flags, pid);
	if (b != FDN__LOCAL)
		return b;
	struct fdn_entry *e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	int r = fdn__local_lookup(key, klen, flags, e);
	if (r == 0)
		*pid = e->pid;
	free(e);
	return r;
}

/*
 * The entry handed to cb in place, inside the read-side section of the
 * lookup: the view points into the node, which stays as it is (and
 * allocated) until the section ends (top of file).  FDN_REG_CHECK_ALIVE
 * asks the kernel inside the section (a few system calls: a grace period
 * waits for them, no writer does).  A read-only handle has no section: cb
 * gets a stable copy (ro_copy).
 */
static int view_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags,
		       fdn_entry_cb cb, void *arg)
{
	int r = read_args(klen, flags);
	if (r)
		return r;
	struct fdn_entry_view e;
	struct rec rc;
	if (s->readonly) {
		struct ro_entry *c = malloc(sizeof(*c));
		if (!c)
			return -ENOMEM;
		r = ro_copy(s, key, klen, true, c);
		if (r == 0 && (flags & FDN_REG_CHECK_ALIVE) &&
		    !fdn__proc_alive(s, c->rc.owner_idx, c->rc.owner_word))
			r = FDN_ENOTFOUND;
		if (r == 0) {
			e = (struct fdn_entry_view){key,
						    (uint32_t)klen,
						    (pid_t)FDN_PROC_PID(c->rc.owner_word),
						    c->rc.registered_ns,
						    c->attrs,
						    c->rc.attrs_len};
			r = cb(arg, &e);
		}
		free(c);
		return r;
	}
	struct fdn__thread *t;
	if ((r = fdn__rcu_read_lock(s, &t)))
		return r;
	struct fdn__ht_view v;
	r = fdn__ht_lookup(s, T_MAIN, key, klen, &v);
	if (r == 0 && !visible(s, &v, &rc, &e))
		r = FDN_ENOTFOUND;
	if (r == 0 && (flags & FDN_REG_CHECK_ALIVE) &&
	    !fdn__proc_alive(s, rc.owner_idx, rc.owner_word))
		r = FDN_ENOTFOUND;
	if (r == 0) {
		fdn__user_begin(t); /* the section is now the caller's own */
		r = cb(arg, &e);
		fdn__user_end(t);
	}
	fdn__rcu_read_unlock(t);
	return r;
}

static int lookup_view(fdn_segment *s, const void *key, size_t klen, unsigned flags,
		       fdn_entry_cb cb, void *arg)
{
	if (!cb)
		return FDN_EINVAL;
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b == FDN__SHARED)
		return view_shared(s, key, klen, flags, cb, arg);
	if (b != FDN__LOCAL)
		return b;
	/* The local backend's entries live in this process: handed as a copy. */
	struct fdn_entry *c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	int r = fdn__local_lookup(key, klen, flags, c);
	if (r == 0) {
		struct fdn_entry_view e = {c->key,           c->key_len, c->pid,
					   c->registered_ns, c->attrs,   c->attrs_len};
		r = cb(arg, &e);
	}
	free(c);
	return r;
}

#define ALIVE_CACHE 16

struct walk {
	fdn_segment *s;
	fdn_entry_filter filter;
	void *farg;
	fdn_entry_cb cb;
	void *arg;
	const struct fdn_criterion *crit;
	size_t ncrit;
	int count;
	bool alive;  /* FDN_REG_CHECK_ALIVE */
	bool remote; /* FDN_REG_REMOTE: remote entries too */
	/* The kernel's answers so far, per owner (slot and claim word): an
	 * owner with many entries is asked once per walk. */
	struct {
		uint32_t idx;
		uint64_t word;
		bool alive;
	} seen[ALIVE_CACHE];
	unsigned nseen;
	/* Entries copied out of a read-side section, called back after it
	 * (walk_flush): user code never runs inside a section. */
	unsigned char *buf;
	size_t len, cap;
};

/* One copied entry in walk.buf: its record and view, then key, attrs. */
struct walk_item {
	struct rec r;
	struct fdn_entry_view e;
	size_t size; /* of the whole item, aligned */
};

/* FDN_REG_CHECK_ALIVE: does the kernel say the owner of r is alive? */
static bool walk_owner_alive(struct walk *w, const struct rec *r)
{
	unsigned n = w->nseen < ALIVE_CACHE ? w->nseen : ALIVE_CACHE;
	for (unsigned i = 0; i < n; i++)
		if (w->seen[i].idx == r->owner_idx && w->seen[i].word == r->owner_word)
			return w->seen[i].alive;
	bool alive = fdn__proc_alive(w->s, r->owner_idx, r->owner_word);
	unsigned k = w->nseen++ % ALIVE_CACHE;
	w->seen[k].idx = r->owner_idx;
	w->seen[k].word = r->owner_word;
	w->seen[k].alive = alive;
	return alive;
}

static int walk_one(struct walk *w, const struct rec *r, const struct fdn_entry_view *e)
{
	if (w->filter && !w->filter(w->farg, e))
		return 0;
	if (w->crit && !fdn_criteria_match(w->crit, w->ncrit, e->attrs, e->attrs_len))
		return 0;
	if (w->alive && !walk_owner_alive(w, r))
		return 0;
	w->count++;
	return w->cb ? w->cb(w->arg, e) : 0;
}

/* Copy a visible entry out (read lock held). */
static int walk_collect(struct walk *w, const struct rec *r, const struct fdn_entry_view *e)
{
	size_t need = (sizeof(struct walk_item) + e->key_len + e->attrs_len + 7) & ~(size_t)7;
	if (w->len + need > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64 * 1024;
		while (cap < w->len + need)
			cap *= 2;
		unsigned char *b = realloc(w->buf, cap);
		if (!b)
			return -ENOMEM;
		w->buf = b;
		w->cap = cap;
	}
	struct walk_item *it = (struct walk_item *)(w->buf + w->len);
	unsigned char *p = (unsigned char *)(it + 1);
	it->r = *r;
	it->e = *e;
	it->size = need;
	memcpy(p, e->key, e->key_len);
	memcpy(p + e->key_len, e->attrs, e->attrs_len);
	w->len += need;
	return 0;
}

/* Call back every entry copied since the last flush, outside any section.
 * A callback's non-zero return ends the whole walk with that value. */
static int walk_flush(struct walk *w)
{
	int r = 0;
	for (size_t off = 0; off < w->len && r == 0;) {
		struct walk_item *it = (struct walk_item *)(w->buf + off);
		unsigned char *p = (unsigned char *)(it + 1);
		it->e.key = p;
		it->e.attrs = p + it->e.key_len;
		r = walk_one(w, &it->r, &it->e);
		off += it->size;
	}
	w->len = 0;
	return r;
}

/* End a walk: its buffer goes; its result is r, or the entries counted. */
static int walk_done(struct walk *w, int r)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
	return r ? r : w->count;
}

static int walk_main_cb(void *arg, const struct fdn__ht_view *v)
{
	struct walk *w = arg;
	struct rec r;
	struct fdn_entry_view e;
	if (!visible(w->s, v, &r, &e) || (!w->remote && remote_key(v->key, v->key_len)))
		return 0;
	/* Counting only (no user code to keep out of the section). */
	if (!w->cb && !w->filter)
		return walk_one(w, &r, &e);
	return walk_collect(w, &r, &e);
}

/* The flags a walk accepts: FDN_REG_CHECK_ALIVE, FDN_REG_REMOTE. */
static int walk_flags(unsigned flags)
{
	return flags & ~(unsigned)(FDN_REG_CHECK_ALIVE | FDN_REG_REMOTE) ? FDN_EINVAL : 0;
}

/* Buckets copied per read-side section by a walk of the main table. */
#define WALK_STEP 256u

/* Walk the main table in bounded steps: a section copies the entries of
 * WALK_STEP buckets, the callbacks run after it.  Not a snapshot: an entry
 * registered or removed meanwhile may be seen or not; an entry present
 * throughout is seen exactly once (a key never changes bucket). */
static int walk_all(struct walk *w)
{
	fdn_segment *s = w->s;
	uint64_t nb = s->bucket_mask[T_MAIN] + 1;
	int r = 0;
	for (uint64_t b = 0; b < nb && r == 0; b += WALK_STEP) {
		struct fdn__thread *t = NULL;
		if (!s->readonly && (r = fdn__rcu_read_lock(s, &t)))
			break;
		for (uint64_t k = b; k < b + WALK_STEP && k < nb && r == 0; k++)
			r = fdn__ht_foreach_bucket(s, T_MAIN, k, walk_main_cb, w);
		if (t)
			fdn__rcu_read_unlock(t);
		if (r == 0)
			r = walk_flush(w);
	}
	return walk_done(w, r);
}

int fdn_foreach_flags(fdn_segment *s, unsigned flags, fdn_entry_cb cb, void *arg)
{
	int r = walk_flags(flags);
	if (r)
		return r;
	bool alive = flags & FDN_REG_CHECK_ALIVE;
	LOCAL_OR_ENFORCED(s, fdn__local_walk(NULL, NULL, NULL, 0, alive, cb, arg));
	struct walk w = {
	    .s = s, .cb = cb, .arg = arg, .alive = alive, .remote = flags & FDN_REG_REMOTE};
	return walk_all(&w);
}

int fdn_foreach(fdn_segment *s, fdn_entry_cb cb, void *arg)
{
	return fdn_foreach_flags(s, 0, cb, arg);
}

int fdn_list_flags(fdn_segment *s, unsigned flags, fdn_entry_filter filter, void *farg,
		   fdn_entry_cb cb, void *arg)
{
	int r = walk_flags(flags);
	if (r)
		return r;
	bool alive = flags & FDN_REG_CHECK_ALIVE;
	LOCAL_OR_ENFORCED(s, fdn__local_walk(filter, farg, NULL, 0, alive, cb, arg));
	struct walk w = {.s = s,
			 .filter = filter,
			 .farg = farg,
			 .cb = cb,
			 .arg = arg,
			 .alive = alive,
			 .remote = flags & FDN_REG_REMOTE};
	return walk_all(&w);
}

int fdn_list(fdn_segment *s, fdn_entry_filter filter, void *farg, fdn_entry_cb cb, void *arg)
{
	return fdn_list_flags(s, 0, filter, farg, cb, arg);
}

int64_t fdn_count_flags(fdn_segment *s, unsigned flags)
{
	int r = walk_flags(flags);
	if (r)
		return r;
	bool alive = flags & FDN_REG_CHECK_ALIVE;
	LOCAL_OR_ENFORCED(s, fdn__local_count(alive));
	/* The table's counters are exact for visible entries unless some
	 * owner is dead and not purged yet: then count by walking (and
	 * always when the kernel is to be asked). */
	bool dead = alive;
	for (uint32_t i = 0; i < s->nprocs && !dead; i++)
		dead = FDN_PROC_STATE(atomic_load_explicit(&s->procs[i].word,
							   memory_order_relaxed)) >= FDN_PROC_DEAD;
	/* The counter holds the remote entries too: it answers alone when
	 * they are asked for, or when no agent mirrors into the segment (no
	 * visible cluster status entry, which the agent registers before its
	 * first remote entry and which goes with them when it dies). */
	static const unsigned char status_key[1] = {FDN_REG_REMOTE_BYTE};
	bool mirror = !(flags & FDN_REG_REMOTE) && !dead && !s->readonly &&
		      whereis_shared(s, status_key, 1, 0, &(pid_t){0}) == 0;
	if (!dead && !s->readonly && !mirror)
		return fdn__ht_count(s, T_MAIN);
	struct walk w = {.s = s, .alive = alive, .remote = flags & FDN_REG_REMOTE};
	return walk_all(&w); /* the segment's, whatever the flags say now */
}

int64_t fdn_count(fdn_segment *s)
{
	return fdn_count_flags(s, 0);
}

bool fdn_attr_indexed(fdn_segment *s, const char *name)
{
	/* The local registry indexes nothing (its finds scan). */
	return fdn__backend(s, FDN__SVC_REGISTRY) == FDN__SHARED && indexed(s, name);
}

/* Is name one of the segment's indexed attributes?  The registry's own
 * walks ask this, never fdn_attr_indexed: a flip in the middle of an
 * operation must not change which references it writes or removes. */
static bool indexed(fdn_segment *s, const char *name)
{
	if (!name || !*name)
		return false;
	for (uint32_t i = 0; i < FDN_MAX_INDEXED; i++)
		if (strncmp(s->hdr->indexed[i], name, FDN_INDEXED_NAME_MAX) == 0)
			return true;
	return false;
}

/* ---- find and query through the index ------------------------------------- */

struct idx_walk {
	struct walk *w;
	const unsigned char *prefix;
	size_t plen;
	const char *name;
	const struct fdn_attr *value;
};

/* One index reference: verify it against the main table, then visit. */
static int idx_visit(struct idx_walk *iw, const struct fdn_shm_node *n)
{
	const unsigned char *k = n->data;
	uint32_t kl = fdn_node_key_len(n);
	if (kl < 1 + iw->plen || k[0] != iw->plen || memcmp(k + 1, iw->prefix, iw->plen))
		return 0;
	const unsigned char *ekey = k + 1 + iw->plen;
	size_t eklen = kl - 1 - iw->plen;
	struct fdn__ht_view v;
	struct rec r;
	struct fdn_entry_view e;
	if (check_key(eklen) || (!iw->w->remote && remote_key(ekey, eklen)) ||
	    fdn__ht_lookup(iw->w->s, T_MAIN, ekey, eklen, &v) || !visible(iw->w->s, &v, &r, &e))
		return 0;
	struct fdn_criterion c = {iw->name, FDN_CMP_EQ, *iw->value};
	if (!fdn_criteria_match(&c, 1, e.attrs, e.attrs_len))
		return 0;
	if (!iw->w->cb && !iw->w->filter)
		return walk_one(iw->w, &r, &e);
	return walk_collect(iw->w, &r, &e);
}

typedef int (*ref_node_cb)(void *arg, const struct fdn_shm_node *n, size_t plen);

/* Call cb for every live reference of prefix in its sub-th chain (read
 * lock held).  Bounded. */
static int walk_prefix_sub(fdn_segment *s, const unsigned char *prefix, size_t plen, uint64_t sub,
			   ref_node_cb cb, void *arg)
{
	uint64_t h = fdn__ht_prefix_hash(s, prefix, plen) ^ sub;
	uint64_t w = atomic_load_explicit(&s->buckets[T_INDEX][h & s->bucket_mask[T_INDEX]],
					  memory_order_acquire);
	for (uint64_t steps = 0; FDN_LINK_GIDX(w); steps++) {
		const struct fdn_shm_node *n = fdn__node(s, FDN_LINK_GIDX(w));
		if (!n || steps > s->ngranules)
			return FDN_ECORRUPT;
		w = atomic_load_explicit(&n->next, memory_order_acquire);
		if (n->hash > h)
			break;
		const unsigned char *k = n->data;
		if (n->hash != h || FDN_LINK_MARKED(w) || fdn_node_key_len(n) < 1 + plen ||
		    k[0] != plen || memcmp(k + 1, prefix, plen) != 0)
			continue;
		int r = cb(arg, n, plen);
		if (r)
			return r;
	}
	return 0;
}

/* The same over every chain the prefix's keys hash to (FDN_PREFIX_SPREAD). */
static int walk_prefix(fdn_segment *s, const unsigned char *prefix, size_t plen, ref_node_cb cb,
		       void *arg)
{
	for (uint64_t sub = 0, spread = fdn__prefix_spread(prefix, plen); sub < spread; sub++) {
		int r = walk_prefix_sub(s, prefix, plen, sub, cb, arg);
		if (r)
			return r;
	}
	return 0;
}

static int idx_visit_cb(void *arg, const struct fdn_shm_node *n, size_t plen)
{
	return idx_visit(arg, n);
}

/* Through the index, one chain per read-side section, the callbacks after
 * each: *used is false (and nothing is called) when name is not indexed
 * or the value not indexable -- the caller then walks the table. */
static int find_indexed(struct walk *w, const char *name, const struct fdn_attr *value, bool *used)
{
	*used = false;
	if (!indexed(w->s, name) || value->type == FDN_ATTR_LIST)
		return 0;
	unsigned char p[PREFIX_MAX];
	size_t pl = prefix_of(name, value, value->type == FDN_ATTR_STRING ? value->v.s : "", p);
	if (pl == 0)
		return 0;
	*used = true;
	struct idx_walk iw = {w, p, pl, name, value};
	int r = 0;
	for (uint64_t sub = 0, spread = fdn__prefix_spread(p, pl); sub < spread && r == 0; sub++) {
		struct fdn__thread *t = NULL;
		if (!w->s->readonly && (r = fdn__rcu_read_lock(w->s, &t)))
			break;
		r = walk_prefix_sub(w->s, p, pl, sub, idx_visit_cb, &iw);
		if (t)
			fdn__rcu_read_unlock(t);
		if (r == 0)
			r = walk_flush(w);
	}
	return walk_done(w, r);
}

static int check_value(const char *name, const struct fdn_attr *value)
{
	struct fdn_attr a = *value;
	unsigned char buf[FDN_ATTRS_MAX];
	a.name = name;
	return fdn_attrs_encode(&a, 1, buf, sizeof(buf)) < 0 ? FDN_EINVMETA : 0;
}

int fdn_find_by_attribute_flags(fdn_segment *s, const char *name, const struct fdn_attr *value,
				unsigned flags, fdn_entry_cb cb, void *arg)
{
	if (!value || check_value(name, value))
		return FDN_EINVMETA;
	int r = walk_flags(flags);
	if (r)
		return r;
	bool alive = flags & FDN_REG_CHECK_ALIVE;
	struct fdn_criterion c = {name, FDN_CMP_EQ, *value};
	LOCAL_OR_ENFORCED(s, fdn__local_walk(NULL, NULL, &c, 1, alive, cb, arg));
	struct walk w = {
	    .s = s, .cb = cb, .arg = arg, .alive = alive, .remote = flags & FDN_REG_REMOTE};
	bool used;
	r = find_indexed(&w, name, value, &used);
	if (used)
		return r;
	w.crit = &c;
	w.ncrit = 1;
	return walk_all(&w);
}

int fdn_find_by_attribute(fdn_segment *s, const char *name, const struct fdn_attr *value,
			  fdn_entry_cb cb, void *arg)
{
	return fdn_find_by_attribute_flags(s, name, value, 0, cb, arg);
}

int fdn_query_flags(fdn_segment *s, const struct fdn_criterion *c, size_t n, unsigned flags,
		    fdn_entry_cb cb, void *arg)
{
	int r = fdn_criteria_validate(c, n);
	if (r || (r = walk_flags(flags)))
		return r;
	bool alive = flags & FDN_REG_CHECK_ALIVE;
	LOCAL_OR_ENFORCED(s, fdn__local_walk(NULL, NULL, c, n, alive, cb, arg));
	struct walk w = {.s = s,
			 .cb = cb,
			 .arg = arg,
			 .crit = c,
			 .ncrit = n,
			 .alive = alive,
			 .remote = flags & FDN_REG_REMOTE};
	for (size_t i = 0; i < n; i++) {
		if (c[i].op != FDN_CMP_EQ)
			continue;
		bool used;
		r = find_indexed(&w, c[i].name, &c[i].value, &used);
		if (used)
			return r;
	}
	return walk_all(&w);
}

int fdn_query(fdn_segment *s, const struct fdn_criterion *c, size_t n, fdn_entry_cb cb, void *arg)
{
	return fdn_query_flags(s, c, n, 0, cb, arg);
}

/* ---- update, unregister ---------------------------------------------------- */

static int update(fdn_segment *s, const void *key, size_t klen, const struct fdn_attr *attrs,
		  size_t n, bool merge)
{
	LOCAL_OR_ENFORCED(s, fdn__local_update(key, klen, attrs, n, merge));
	unsigned char upd[FDN_ATTRS_MAX], val[REC_SIZE + FDN_ATTRS_MAX], old[FDN_ATTRS_MAX];
	int r = writable(s);
	if (r || (r = check_write_key(key, klen, 0)))
		return r;
	int ulen = fdn_attrs_encode(attrs, n, upd, sizeof(upd));
	if (ulen < 0)
		return ulen;
	for (int tries = 0; tries < 64; tries++) {
		struct fdn__ht_view expect;
		struct rec rc;
		if ((r = copy_entry(s, key, klen, true, &expect, &rc, old)))
			return r;
		size_t olen = rc.attrs_len;
		int alen = merge ? fdn_attrs_merge(old, olen, upd, (size_t)ulen, val + REC_SIZE,
						   FDN_ATTRS_MAX)
				 : ulen;
		if (alen < 0)
			return alen;
		int vlen = build_record(rc.owner_idx, rc.owner_word, rc.registered_ns,
					merge ? val + REC_SIZE : upd, (size_t)alen, val);
		struct ref_op put = {s, key, klen, rc.owner_word, rc.owner_idx, NULL, 0, true};
		r = each_ref(s, rc.owner_idx, rc.owner_word, val + REC_SIZE, (size_t)alen,
			     ref_put_cb, &put);
		const struct fdn__chg chg = {FDN_CHANGE_UPDATED, (pid_t)FDN_PROC_PID(rc.owner_word),
					     0};
		if (r == 0)
			r = fdn__ht_put_chg(s, T_MAIN, key, klen, val, (size_t)vlen, FDN_HT_REPLACE,
					    &expect, NULL, &chg);
		if (r == 0) {
			put.ensure = false; /* written again: see reg_register_once */
			each_ref(s, rc.owner_idx, rc.owner_word, val + REC_SIZE, (size_t)alen,
				 ref_put_cb, &put);
			struct ref_op del = {s,    key, klen, 0, 0, val + REC_SIZE, (size_t)alen,
					     false};
			each_prefix(s, old, olen, ref_del_cb, &del);
			drop_if_owner_gone(s, key, klen, rc.owner_idx, rc.owner_word);
			return 0;
		}
		/* Not applied: the references written for it go, unless carried. */
		refs_undo(s, key, klen, rc.owner_idx, rc.owner_word, val + REC_SIZE, (size_t)alen);
		if (r != FDN_ENOTFOUND)
			return r;
	}
	return FDN_ENOTFOUND;
}

int fdn_update_attributes(fdn_segment *s, const void *key, size_t klen,
			  const struct fdn_attr *attrs, size_t n)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_UPDATE) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_UPDATE, t0, key, klen,
			 update(s, key, klen, attrs, n, false));
}

int fdn_merge_attributes(fdn_segment *s, const void *key, size_t klen, const struct fdn_attr *attrs,
			 size_t n)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_MERGE) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_MERGE, t0, key, klen, update(s, key, klen, attrs, n, true));
}

/* Delete the main entry of view v (exact version) and then its refs. */
static int remove_entry(fdn_segment *s, const void *key, size_t klen, const struct fdn__ht_view *v,
			uint32_t oidx, uint64_t oword, const unsigned char *attrs, size_t alen,
			unsigned kind)
{
	const struct fdn__chg chg = {kind, (pid_t)FDN_PROC_PID(oword), 0};
	int r = fdn__ht_delete_chg(s, T_MAIN, key, klen, v, &chg);
	if (r)
		return r;
	struct ref_op del = {s, key, klen, 0, 0, NULL, 0, false};
	each_ref(s, oidx, oword, attrs, alen, ref_del_cb, &del);
	return 0;
}

static int unregister_one(fdn_segment *s, const void *key, size_t klen);

static int unregister(fdn_segment *s, const void *key, size_t klen, unsigned flags)
{
	if (flags & ~(unsigned)(FDN_REG_IF_PRESENT | FDN_REG_MIRROR))
		return FDN_EINVAL;
	int r = check_write_key(key, klen, flags);
	if (r == 0)
		r = unregister_one(s, key, klen);
	return r == FDN_ENOTFOUND && (flags & FDN_REG_IF_PRESENT) ? 0 : r;
}

static int unregister_one(fdn_segment *s, const void *key, size_t klen)
{
	LOCAL_OR_ENFORCED(s, fdn__local_unregister(key, klen));
	int r = writable(s);
	if (r || (r = check_key(klen)))
		return r;
	for (int tries = 0; tries < 64; tries++) {
		struct fdn__ht_view version;
		struct rec rc;
		unsigned char attrs[FDN_ATTRS_MAX];
		if ((r = copy_entry(s, key, klen, true, &version, &rc, attrs)))
			return r; /* not there (or an error) */
		r = remove_entry(s, key, klen, &version, rc.owner_idx, rc.owner_word, attrs,
				 rc.attrs_len, FDN_CHANGE_UNREGISTERED);
		if (r == 0)
			fdn__registry_release_idle(s, rc.owner_idx, rc.owner_word);
		if (r != FDN_ENOTFOUND)
			return r;
		/* The version changed under us (replaced or updated): again. */
	}
	return FDN_ENOTFOUND;
}

/* ---- the public operations, with their telemetry ------------------------------ */

int fdn_register(fdn_segment *s, const void *key, size_t klen, pid_t pid,
		 const struct fdn_attr *attrs, size_t n, unsigned flags, pid_t *holder)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_REGISTER) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_REGISTER, t0, key, klen,
			 reg_register(s, key, klen, pid, attrs, n, flags, holder));
}

int fdn_lookup(fdn_segment *s, const void *key, size_t klen, unsigned flags, struct fdn_entry *out)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_LOOKUP) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_LOOKUP, t0, key, klen, lookup(s, key, klen, flags, out));
}

int fdn_whereis_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags, pid_t *pid)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_LOOKUP) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_LOOKUP, t0, key, klen, whereis(s, key, klen, flags, pid));
}

int fdn_whereis(fdn_segment *s, const void *key, size_t klen, pid_t *pid)
{
	return fdn_whereis_flags(s, key, klen, 0, pid);
}

int fdn_lookup_view_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags,
			  fdn_entry_cb cb, void *arg)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_LOOKUP) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_LOOKUP, t0, key, klen,
			 lookup_view(s, key, klen, flags, cb, arg));
}

int fdn_lookup_view(fdn_segment *s, const void *key, size_t klen, fdn_entry_cb cb, void *arg)
{
	return fdn_lookup_view_flags(s, key, klen, 0, cb, arg);
}

int fdn_unregister_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_UNREGISTER) ? fdn__mono_ns() : 0;
	return reg_event(s, FDN__EV_REG_UNREGISTER, t0, key, klen, unregister(s, key, klen, flags));
}

int fdn_unregister(fdn_segment *s, const void *key, size_t klen)
{
	return fdn_unregister_flags(s, key, klen, 0);
}

/* ---- watch ----------------------------------------------------------------- */

int fdn_watch(fdn_segment *s, const void *key, size_t klen, bool present, int64_t timeout_ms)
{
	LOCAL_OR_ENFORCED(s, fdn__local_watch(key, klen, present, timeout_ms));
	int r = check_key(klen);
	if (r)
		return r;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int64_t deadline =
	    timeout_ms < 0 ? -1
			   : (int64_t)t0.tv_sec * 1000000000 + t0.tv_nsec + timeout_ms * 1000000;
	for (;;) {
		/* A destroyed segment never changes again: say so rather than
		 * wait for ever. */
		if ((r = fdn__seg_stale(s)))
			return r;
		uint32_t seen = fdn__watch_begin(s);
		/* The segment's answer, whatever the flags say meanwhile: a
		 * watch keeps the backend it started with. */
		bool here = lookup_shared(s, key, klen, 0, NULL) == 0;
		if (here == present) {
			fdn__watch_end(s);
			return 0;
		}
		/* Wait in slices of at most 250 ms: a destroy by a process that
		 * could not write the header (only unlink the name) is seen by
		 * the check above within one slice.  A read-only handle cannot
		 * tell writers that it waits (the flag is in the header): it
		 * looks again every 20 ms. */
		int64_t slice = (s->readonly ? 20 : 250) * 1000000ll, left = slice;
		if (deadline >= 0) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			left = deadline - ((int64_t)now.tv_sec * 1000000000 + now.tv_nsec);
			if (left <= 0) {
				fdn__watch_end(s);
				return FDN_ETIMEDOUT;
			}
		}
		r = fdn__wait_change(s, seen, left < slice ? left : slice);
		fdn__watch_end(s);
		if (r == FDN_ETIMEDOUT && deadline >= 0 && left <= slice)
			return r;
	}
}

/* ---- purge (the reaper) ------------------------------------------------------ */

bool fdn__ref_stale(fdn_segment *s, const struct fdn__ht_view *v)
{
	struct ref_val rv;
	const unsigned char *k = v->key;
	if (!ref_of(v, &rv))
		return true;
	uint32_t plen = k[0];
	if (ref_carried(s, k + 1, plen, k + 1 + plen, v->key_len - 1 - plen))
		return false; /* whoever wrote it: an entry needs it */
	if (!fdn__word_live(s, rv.owner_idx, rv.owner_word))
		return true; /* written for an owner that is gone */
	/* Not carried: stale unless its writer is alive (mid-operation). */
	return !fdn__word_live(s, rv.writer_idx, rv.writer_word);
}

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

struct purge {
	fdn_segment *s;
	uint32_t table;
	struct victim *v;
	int n;
	uint64_t only_word; /* != 0: remove this owner's entries, live or not */
	uint32_t only_idx;
};

static int collect_cb(void *arg, const struct fdn__ht_view *v)
{
	struct purge *p = arg;
	struct victim *x = &p->v[p->n];
	if (p->table == T_MAIN) {
		struct rec r;
		const unsigned char *attrs;
		if (!rec_of(v, &r, &attrs))
			return 0;
		if (p->only_word ? r.owner_word != p->only_word || r.owner_idx != p->only_idx
				 : fdn__word_live(p->s, r.owner_idx, r.owner_word))
			return 0;
		bool ok =
		    fdn_attrs_validate(attrs, r.attrs_len) == 0 && v->key_len <= FDN_REG_KEY_MAX;
		x->attrs_len = ok ? r.attrs_len : 0; /* damaged: skip its refs */
		memcpy(x->attrs, attrs, x->attrs_len);
		x->owner_idx = r.owner_idx;
		x->owner_word = r.owner_word;
	} else if (p->only_word || !fdn__ref_stale(p->s, v)) {
		return 0; /* an owner's own removal takes its refs with its entries */
	}
	x->version = (struct fdn__ht_view){.gidx = v->gidx, .gen = v->gen};
	x->key_len = v->key_len;
	memcpy(x->key, v->key, v->key_len);
	return ++p->n == PURGE_BATCH;
}

/*
 * The sweep: walk buckets [*cursor, *cursor + budget) of the main table
 * and then the index, removing entries whose owner is not live and stale
 * references.  Resumable: returns 1 when the walk is complete (and resets
 * the cursor), 0 when more remains, or an error (FDN_ETIMEDOUT: call again).
 * The reaper runs it in small steps when idle: a death always finds its
 * entries through the owner's chain first (purge_owner_chain).
 */
static int sweep(fdn_segment *s, uint64_t only_word, uint32_t only_idx, uint64_t *cursor,
		 uint64_t budget)
{
	struct purge p = {s, T_MAIN,    malloc(sizeof(struct victim) * PURGE_BATCH),
			  0, only_word, only_idx};
	if (!p.v)
		return -ENOMEM;
	uint64_t nmain = s->bucket_mask[T_MAIN] + 1, nall = nmain + s->bucket_mask[T_INDEX] + 1;
	int r = 0, stuck = 0;
	uint64_t end = *cursor + budget > nall ? nall : *cursor + budget;
	for (uint64_t c = *cursor; c < end && r == 0;) {
		p.table = c < nmain ? T_MAIN : T_INDEX;
		uint64_t b = c < nmain ? c : c - nmain;
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			break;
		p.n = 0;
		int wr = fdn__ht_foreach_bucket(s, p.table, b, collect_cb, &p);
		fdn__rcu_read_unlock(t);
		if (wr < 0) {
			r = wr;
			break;
		}
		int progress = 0, changed = 0;
		for (int i = 0; i < p.n && r == 0; i++) {
			struct victim *x = &p.v[i];
			int rr = p.table == T_INDEX
				     ? fdn__ht_delete(s, T_INDEX, x->key, x->key_len, &x->version)
				     : remove_entry(s, x->key, x->key_len, &x->version,
						    x->owner_idx, x->owner_word, x->attrs,
						    x->attrs_len, FDN_CHANGE_REMOVED);
			if (rr == FDN_ENOTFOUND)
				changed++; /* its version changed: look again */
			else if (rr)
				r = rr; /* FDN_ETIMEDOUT: the caller retries later */
			else
				progress++;
		}
		/* Next chain when this one is done; look again after a full batch
		 * or a changed version, but never forever on a chain whose
		 * victims cannot be removed (a damaged segment). */
		bool again = p.n == PURGE_BATCH || changed;
		stuck = progress ? 0 : stuck + again;
		if (r == 0 && (!again || stuck > 4)) {
			c++;
			*cursor = c;
			stuck = 0;
		}
	}
	free(p.v);
	if (r)
		return r;
	if (*cursor >= nall) {
		*cursor = 0;
		return 1;
	}
	return 0;
}

int fdn__registry_sweep(fdn_segment *s, uint64_t *cursor, uint64_t budget)
{
	return sweep(s, 0, 0, cursor, budget);
}

struct owner_collect {
	struct victim *v;
	int n;
};

/* One owner reference: its suffix (the group) as the victim's key. */
static int owner_collect_cb(void *arg, const struct fdn_shm_node *nd, size_t plen)
{
	struct owner_collect *c = arg;
	size_t slen = fdn_node_key_len(nd) - 1 - plen;
	if (slen > FDN_REG_KEY_MAX)
		return 0;
	c->v[c->n].key_len = (uint32_t)slen;
	memcpy(c->v[c->n].key, nd->data + 1 + plen, slen);
	return ++c->n == PURGE_BATCH;
}

/* An entry of the scanned owner met in its group (group_scan). */
static int group_scan_cb(void *arg, const struct fdn__ht_view *v)
{
	struct group_scan *gs = arg;
	struct rec r;
	const unsigned char *attrs;
	if (!rec_of(v, &r, &attrs) || r.owner_word != gs->word || r.owner_idx != gs->idx)
		return 0;
	gs->any = true;
	if (!gs->v)
		return 1; /* one is enough */
	struct victim *x = &gs->v[gs->n];
	bool ok = fdn_attrs_validate(attrs, r.attrs_len) == 0 && v->key_len <= FDN_REG_KEY_MAX;
	if (!ok)
		return 0; /* damaged: it keeps its reference, the checker reports it */
	x->version = (struct fdn__ht_view){.gidx = v->gidx, .gen = v->gen};
	x->key_len = v->key_len;
	memcpy(x->key, v->key, v->key_len);
	x->attrs_len = r.attrs_len;
	memcpy(x->attrs, attrs, r.attrs_len);
	x->owner_idx = r.owner_idx;
	x->owner_word = r.owner_word;
	return ++gs->n == gs->max;
}

/* Remove the entries of owner (idx, word) in group g, then the group's
 * reference (prefix), which goes only once no entry of the owner is left
 * there (ref_del_suffix).  *count += entries removed. */
static int purge_group(fdn_segment *s, const unsigned char *prefix, size_t plen, uint32_t idx,
		       uint64_t word, const unsigned char grp[GROUP_LEN], struct victim *v,
		       uint64_t *count, bool *deleted, uint64_t death)
{
	const struct fdn__chg chg = {FDN_CHANGE_REMOVED, (pid_t)FDN_PROC_PID(word), death};
	uint32_t g;
	memcpy(&g, grp, GROUP_LEN);
	int r = 0;
	for (int rounds = 0; r == 0; rounds++) {
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			return r;
		struct group_scan gs = {s, word, idx, v, 0, PURGE_BATCH, false};
		r = group_scan(s, g, &gs);
		fdn__rcu_read_unlock(t);
		if (r || gs.n == 0)
			break;
		int progress = 0;
		for (int i = 0; i < gs.n && r == 0; i++) {
			/* The entry, then its values' references; the group's
			 * own goes after the last entry (below), not once per
			 * entry (each a walk of the group). */
			int rr = fdn__ht_delete_chg(s, T_MAIN, v[i].key, v[i].key_len,
						    &v[i].version, &chg);
			if (rr == 0) {
				struct ref_op del = {s,    v[i].key, v[i].key_len, 0, 0,
						     NULL, 0,        false};
				each_prefix(s, v[i].attrs, v[i].attrs_len, ref_del_cb, &del);
				progress++;
				(*count)++;
			} else if (rr != FDN_ENOTFOUND) {
				r = rr;
			}
		}
		if (!progress && rounds > 4)
			break; /* entries that cannot be removed: the checker reports */
	}
	return r ? r : ref_del_suffix(s, prefix, plen, grp, GROUP_LEN, deleted);
}

/* Up to PURGE_BATCH group references from the owner's chains of the index. */
static int owner_refs(fdn_segment *s, const unsigned char *prefix, size_t plen, struct victim *v,
		      int *n)
{
	struct fdn__thread *t;
	int r = fdn__rcu_read_lock(s, &t);
	if (r)
		return r;
	struct owner_collect c = {v, 0};
	r = walk_prefix(s, prefix, plen, owner_collect_cb, &c);
	fdn__rcu_read_unlock(t);
	*n = c.n;
	return r < 0 ? r : 0;
}

/* Remove what the owner (idx, word) left, through its chains: each group
 * reference leads to GROUP_BUCKETS buckets, O(its entries).  *count
 * receives the entries removed. */
static int purge_owner_chain(fdn_segment *s, uint32_t idx, uint64_t word, uint64_t *count,
			     uint64_t death)
{
	unsigned char prefix[OWNER_PREFIX_LEN];
	size_t plen = owner_prefix(idx, word, prefix);
	struct victim *refs = malloc(sizeof(struct victim) * PURGE_BATCH * 2);
	if (!refs)
		return -ENOMEM;
	struct victim *v = refs + PURGE_BATCH;
	int r = 0, n = 0;
	for (int rounds = 0; r == 0; rounds++) {
		if ((r = owner_refs(s, prefix, plen, refs, &n)) || n == 0)
			break;
		uint64_t before = *count;
		bool deleted = false;
		for (int i = 0; i < n && r == 0; i++) {
			int rr = refs[i].key_len == GROUP_LEN
				     ? purge_group(s, prefix, plen, idx, word, refs[i].key, v,
						   count, &deleted, death)
				     : ref_del_suffix(s, prefix, plen, refs[i].key, refs[i].key_len,
						      &deleted); /* malformed */
			if (rr != 0 && rr != FDN_ENOTFOUND)
				r = rr;
		}
		/* Progress: an entry or a reference removed.  References that
		 * cannot be removed (their entries cannot): the checker
		 * reports them. */
		if (*count == before && !deleted && rounds > 4)
			break;
	}
	free(refs);
	return r;
}

int fdn__registry_purge(fdn_segment *s, const uint32_t *dead_idx, const uint64_t *dead_word,
			const uint64_t *deaths, uint64_t *counts, size_t ndead)
{
	int r = 0;
	uint64_t removed = 0;
	for (size_t i = 0; i < ndead && r == 0; i++) {
		counts[i] = 0;
		r = purge_owner_chain(s, dead_idx[i], dead_word[i], &counts[i],
				      deaths ? deaths[i] : 0);
		removed += counts[i];
	}
	return r ? r : (int)removed;
}

int fdn__registry_purge_owner(fdn_segment *s, uint32_t idx, uint64_t word)
{
	uint64_t n = 0;
	int r = purge_owner_chain(s, idx, word, &n, 0);
	return r ? r : (int)n;
}

int fdn__registry_owner_has_entries(fdn_segment *s, uint32_t idx, uint64_t word)
{
	unsigned char prefix[OWNER_PREFIX_LEN];
	size_t plen = owner_prefix(idx, word, prefix);
	struct victim *v = malloc(sizeof(struct victim) * PURGE_BATCH);
	if (!v)
		return -ENOMEM;
	int n = 0;
	int r = owner_refs(s, prefix, plen, v, &n);
	free(v);
	return r ? r : n > 0;
}

static bool owner_idle(fdn_segment *s, uint32_t idx, uint64_t word)
{
	return fdn__registry_owner_has_entries(s, idx, word) == 0;
}

bool fdn__registry_release_idle(fdn_segment *s, uint32_t idx, uint64_t word)
{
	if (idx >= s->nprocs || idx == s->proc_idx || FDN_PROC_STATE(word) != FDN_PROC_LIVE)
		return false;
	if (atomic_load(&s->procs[idx].word) != word)
		return false;
	return fdn__proc_release(s, idx, word, owner_idle) == 0;
}

/* ---- audit ------------------------------------------------------------------ */

struct audit {
	fdn_segment *s;
	fdn_check_cb cb;
	void *arg;
	int n;
	const void *key;
	size_t klen;
};

static void bad(struct audit *a, const char *msg, const void *key, size_t klen)
{
	char line[400];
	snprintf(line, sizeof(line), "%s: key \"%.*s\"", msg, (int)(klen > 200 ? 200 : klen),
		 (const char *)key);
	a->n++;
	if (a->cb)
		a->cb(a->arg, "registry", line);
}

static int has_ref_cb(void *arg, const unsigned char *prefix, size_t plen)
{
	struct audit *a = arg;
	unsigned char k[1 + PREFIX_MAX + FDN_REG_KEY_MAX];
	size_t kl = ref_key(a->s, k, prefix, plen, a->key, a->klen);
	struct fdn__ht_view v;
	if (fdn__ht_lookup(a->s, T_INDEX, k, kl, &v) != 0)
		bad(a, "indexed value without its index reference", a->key, a->klen);
	return 0;
}

static int audit_main_cb(void *arg, const struct fdn__ht_view *v)
{
	struct audit *a = arg;
	struct rec r;
	struct fdn_entry_view e;
	const unsigned char *attrs;
	/* Readers trust the encoding written (top of this file): the audit
	 * is where a damaged one is found. */
	if (rec_of(v, &r, &attrs) && fdn_attrs_validate(attrs, r.attrs_len) != 0) {
		bad(a, "malformed attribute encoding", v->key, v->key_len);
		return 0;
	}
	if (visible(a->s, v, &r, &e)) {
		a->key = v->key;
		a->klen = v->key_len;
		return each_ref(a->s, r.owner_idx, r.owner_word, e.attrs, e.attrs_len, has_ref_cb,
				a);
	}
	if (!rec_of(v, &r, &attrs)) {
		bad(a, "malformed record", v->key, v->key_len);
		return 0;
	}
	/* Not visible: fine while its owner's slot awaits the reaper (DEAD),
	 * a leak otherwise. */
	uint64_t w = r.owner_idx < a->s->nprocs ? atomic_load(&a->s->procs[r.owner_idx].word) : 0;
	bool awaiting = FDN_PROC_GONE(w) && FDN_PROC_IDENT40(w) == FDN_PROC_IDENT40(r.owner_word);
	if (!awaiting && !fdn__word_live(a->s, r.owner_idx, r.owner_word))
		bad(a, "entry of a vanished owner", v->key, v->key_len);
	return 0;
}

static int audit_index_cb(void *arg, const struct fdn__ht_view *v)
{
	struct audit *a = arg;
	struct ref_val rv;
	if (ref_of(v, &rv)) {
		uint64_t w =
		    rv.owner_idx < a->s->nprocs ? atomic_load(&a->s->procs[rv.owner_idx].word) : 0;
		if (FDN_PROC_GONE(w) && FDN_PROC_IDENT40(w) == FDN_PROC_IDENT40(rv.owner_word))
			return 0; /* awaiting the reaper */
	}
	if (fdn__ref_stale(a->s, v))
		bad(a, "stale index reference", v->key, v->key_len);
	return 0;
}

int fdn__registry_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	struct audit a = {s, cb, arg, 0, NULL, 0};
	struct fdn__thread *t = NULL;
	int r;
	if (!s->readonly && (r = fdn__rcu_read_lock(s, &t)))
		return r;
	r = fdn__ht_foreach(s, T_MAIN, audit_main_cb, &a);
	if (r == 0)
		r = fdn__ht_foreach(s, T_INDEX, audit_index_cb, &a);
	if (t)
		fdn__rcu_read_unlock(t);
	return r < 0 ? r : a.n;
}
