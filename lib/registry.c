/*
 * registry.c - the registry's public calls on the segment's tables (the
 * index: registry_index.c; the purge of dead owners' entries:
 * registry_purge.c; the audit: registry_audit.c; shared: registry_int.h).
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
 * taken under the block's state word (ro_copy).  The checker
 * (registry_audit.c) validates every stored encoding, so a damaged one --
 * memory corruption, not a writer -- is reported rather than silently
 * trusted; the readers of an encoding (fdn_attrs_*) bound every access
 * by its length whatever the bytes are.
 *
 * The index (table 1) and its references: see registry_index.c.
 */
#include "lib/registry_int.h"
#include "lib/telemetry.h"

#include <foundation/changes.h>
#include <foundation/registry.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the backend ------------------------------------------------------------
 * Every public call starts here: the flags choose the segment or this
 * process's local registry (registry_local.c) per call (backend.c).  The
 * two never exchange entries: see docs/flags.md.  Each public call asks
 * fdn__backend(s, FDN__SVC_REGISTRY) first and branches: FDN__SHARED goes on
 * here, FDN__LOCAL calls the local registry's same operation, anything else
 * (FDN_EENFORCED) is returned. */

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
	uint64_t end = fdn__mono_ns();
	struct fdn_measurement m = {"duration_ns", (double)(end - t0)};
	struct fdn_attr a[3] = {
	    {.name = "result", .type = FDN_ATTR_STRING, .v.s = r ? fdn_errname(r) : "ok"},
	    {.name = "backend",
	     .type = FDN_ATTR_STRING,
	     .v.s = fdn__backend(s, FDN__SVC_REGISTRY) == FDN__SHARED ? "shared" : "local"},
	    {.name = "key", .type = FDN_ATTR_STRING, .v.s = k},
	};
	fdn__emit_id_at(s, id, end, &m, 1, a, n && !memchr(key, 0, n) ? 3 : 2);
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
	uint64_t want;
	int r = fdn__proc_live_word(pid, &want);
	if (r)
		return r;
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

/* FDN_EREENTERED from a put inside put_entry's own section, once the
 * section is left: a signal handler that ran between our room check and
 * the put filled this thread's deferred-free ring with its own
 * retirements, and inside a section no room can be made -- the room check
 * at the top of the loop can make it, unless an outer section (the code
 * a handler interrupted) is still held.  (test_boundary's main loop,
 * whose SIGALRM handler registers and unregisters, got the error once in a
 * CI run under ASan.) */
static bool again_after_handler(fdn_segment *s)
{
	return !fdn__in_section_of(s);
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
	bool flushed = false;
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
			/* Out of heap with our frees still waiting for a grace
			 * period: inside the section the put could not free
			 * them; outside it, once. */
			if (r == FDN_ENOSPACE && !flushed && fdn__write_flush(s) > 0) {
				flushed = true;
				continue;
			}
			if (r == FDN_EREENTERED && again_after_handler(s))
				continue;
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
		if (r == FDN_EREENTERED && again_after_handler(s))
			continue;
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
	struct ref_op del = {s, key, klen, 0, 0, NULL, 0};
	fdn__reg_each_ref(s, oidx, oword, attrs, alen, fdn__reg_ref_del_cb, &del);
}

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
		fdn__reg_remove_entry(s, key, klen, &version, oidx, oword, copy, r.attrs_len,
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
	int vlen = build_record(oidx, oword, fdn__real_ns(), val + REC_SIZE, (size_t)alen, val);
	/* Counted before its first reference is made sure of: our own entry in
	 * our count, another owner's by its slot's mark (registry_int.h). */
	if (fdn__held_own(s, oidx, oword))
		fdn__held_add(s, oidx, oword, 1);
	else
		fdn__proc_mark_uncounted(s, oidx, oword);
	/* References first: the index never misses a value the entry has. */
	struct ref_op put = {s, key, klen, oword, oidx, NULL, 0};
	if ((r = fdn__reg_each_ref(s, oidx, oword, val + REC_SIZE, (size_t)alen,
				   fdn__reg_ref_put_cb, &put))) {
		fdn__held_add(s, oidx, oword, -1);
		refs_undo(s, key, klen, oidx, oword, val + REC_SIZE, (size_t)alen);
		return r;
	}
	struct rec orec;
	r = put_entry(s, key, klen, val, (size_t)vlen, flags, again ? pid : 0, holder, old, &orec,
		      pid);
	if (r) {
		fdn__held_add(s, oidx, oword, -1);
		refs_undo(s, key, klen, oidx, oword, val + REC_SIZE, (size_t)alen);
		return r;
	}
	/* Took over an entry of ours: it is gone from the count. */
	if (orec.owner_word)
		fdn__held_add(s, orec.owner_idx, orec.owner_word, -1);
	/* Again after the entry, a lookup each: rewrites a reference a
	 * concurrent remover took between our first pass and our entry (the
	 * pair argued at fdn__reg_ref_del_suffix).  The first pass made the
	 * entry's references exist when it appeared. */
	fdn__reg_refs_after_entry(&put, val + REC_SIZE, (size_t)alen);
	/* Took over an entry: what it had that we do not (its owner reference,
	 * values) loses its reference. */
	struct ref_op del = {s, key, klen, 0, 0, val + REC_SIZE, (size_t)alen};
	if (orec.owner_word)
		fdn__reg_each_ref(s, orec.owner_idx, orec.owner_word, old, orec.attrs_len,
				  fdn__reg_ref_del_cb, &del);
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL
			   ? fdn__local_register(key, klen, pid, attrs, n, flags, holder)
			   : b;
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_lookup(key, klen, flags, out) : b;
	return lookup_shared(s, key, klen, flags, out);
}

/* memcpy for the few dozen bytes of a key or an attribute set: 16 bytes a
 * step, then the tail.  (GCC compiled a memcpy of a length known only at
 * run time inline as `rep movsq`: in a loop of hits on 10 000 entries,
 * fdn_lookup took 15-30 ns a hit more than fdn_lookup_view with it, 6-9 ns
 * with this.) */
static void copy_short(unsigned char *d, const unsigned char *s, size_t n)
{
	for (; n >= 16; n -= 16, d += 16, s += 16)
		memcpy(d, s, 16);
	if (n >= 8) {
		memcpy(d, s, 8);
		d += 8, s += 8, n -= 8;
	}
	while (n--)
		*d++ = *s++;
}

static void entry_out(const void *key, size_t klen, const struct rec *rc,
		      const unsigned char *attrs, struct fdn_entry *out)
{
	copy_short((unsigned char *)out->key, key, klen);
	out->key[klen] = 0;
	out->key_len = (uint32_t)klen;
	out->pid = (pid_t)FDN_PROC_PID(rc->owner_word);
	out->registered_ns = rc->registered_ns;
	out->attrs_len = rc->attrs_len;
	copy_short(out->attrs, attrs, rc->attrs_len);
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_walk(NULL, NULL, NULL, 0, alive, cb, arg) : b;
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_walk(filter, farg, NULL, 0, alive, cb, arg) : b;
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_count(alive) : b;
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

/* ---- find and query through the index ------------------------------------- */

struct idx_walk {
	struct walk *w;
	const unsigned char *prefix; /* stored, under level lvl */
	size_t plen;
	const char *name;
	const struct fdn_attr *value;
	const unsigned char *vprefix; /* the value's */
	size_t vplen;
	unsigned lvl, top;
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
	if (iw->lvl < iw->top &&
	    fdn__reg_ref_above(iw->w->s, iw->vprefix, iw->vplen, iw->lvl, iw->top, ekey, eklen))
		return 0; /* reported under the higher level */
	struct fdn_criterion c = {iw->name, FDN_CMP_EQ, *iw->value};
	if (!fdn_criteria_match(&c, 1, e.attrs, e.attrs_len))
		return 0;
	if (!iw->w->cb && !iw->w->filter)
		return walk_one(iw->w, &r, &e);
	return walk_collect(iw->w, &r, &e);
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
	if (!fdn__reg_indexed(w->s, name) || value->type == FDN_ATTR_LIST)
		return 0;
	unsigned char p[PREFIX_MAX];
	size_t pl =
	    fdn__reg_prefix_of(name, value, value->type == FDN_ATTR_STRING ? value->v.s : "", p);
	if (pl == 0)
		return 0;
	*used = true;
	/* From the top level down (registry_index.c, "Levels"). */
	unsigned char sp[1 + PREFIX_MAX];
	unsigned top = fdn__reg_level(w->s, p, pl);
	struct idx_walk iw = {w, sp, 0, name, value, p, pl, top, top};
	int r = 0;
	for (int l = (int)top; l >= 0 && r == 0; l--) {
		iw.lvl = (unsigned)l;
		iw.plen = fdn__prefix_at_level(p, pl, iw.lvl, sp);
		uint64_t spread = fdn__prefix_spread(sp, iw.plen);
		for (uint64_t sub = 0; sub < spread && r == 0; sub++) {
			struct fdn__thread *t = NULL;
			if (!w->s->readonly && (r = fdn__rcu_read_lock(w->s, &t)))
				break;
			r = fdn__reg_walk_prefix_sub(w->s, sp, iw.plen, sub, idx_visit_cb, &iw);
			if (t)
				fdn__rcu_read_unlock(t);
			if (r == 0)
				r = walk_flush(w);
		}
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_walk(NULL, NULL, &c, 1, alive, cb, arg) : b;
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_walk(NULL, NULL, c, n, alive, cb, arg) : b;
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_update(key, klen, attrs, n, merge) : b;
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
		struct ref_op put = {s, key, klen, rc.owner_word, rc.owner_idx, NULL, 0};
		r = fdn__reg_each_ref(s, rc.owner_idx, rc.owner_word, val + REC_SIZE, (size_t)alen,
				      fdn__reg_ref_put_cb, &put);
		const struct fdn__chg chg = {FDN_CHANGE_UPDATED, (pid_t)FDN_PROC_PID(rc.owner_word),
					     0};
		if (r == 0)
			r = fdn__ht_put_chg(s, T_MAIN, key, klen, val, (size_t)vlen, FDN_HT_REPLACE,
					    &expect, NULL, &chg);
		if (r == 0) {
			fdn__reg_refs_after_entry(&put, val + REC_SIZE, (size_t)alen);
			struct ref_op del = {s, key, klen, 0, 0, val + REC_SIZE, (size_t)alen};
			fdn__reg_each_prefix(s, old, olen, fdn__reg_ref_del_cb, &del);
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_unregister(key, klen) : b;
	int r = writable(s);
	if (r || (r = check_key(klen)))
		return r;
	for (int tries = 0; tries < 64; tries++) {
		struct fdn__ht_view version;
		struct rec rc;
		unsigned char attrs[FDN_ATTRS_MAX];
		if ((r = copy_entry(s, key, klen, true, &version, &rc, attrs)))
			return r; /* not there (or an error) */
		r = fdn__reg_remove_entry(s, key, klen, &version, rc.owner_idx, rc.owner_word,
					  attrs, rc.attrs_len, FDN_CHANGE_UNREGISTERED);
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
	int b = fdn__backend(s, FDN__SVC_REGISTRY);
	if (b != FDN__SHARED)
		return b == FDN__LOCAL ? fdn__local_watch(key, klen, present, timeout_ms) : b;
	int r = check_key(klen);
	if (r)
		return r;
	int64_t deadline = timeout_ms < 0 ? -1 : (int64_t)fdn__mono_ns() + timeout_ms * 1000000;
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
			left = deadline - (int64_t)fdn__mono_ns();
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
