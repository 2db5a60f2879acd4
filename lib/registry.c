/*
 * registry.c - the registry's writes on the segment's tables: register,
 * update, unregister (the reads: registry_read.c; the index:
 * registry_index.c; the purge of dead owners' entries: registry_purge.c;
 * the audit: registry_audit.c; shared: registry_int.h).
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

/* The event's attributes: result, backend and, when the key is text, key
 * (k, NUL-terminated).  Its one definition, for the text form and for the
 * expansion of the compact one. */
static size_t reg_event_attrs(int r, bool shared, const char *k, size_t n, struct fdn_attr a[3])
{
	a[0] = (struct fdn_attr){
	    .name = "result", .type = FDN_ATTR_STRING, .v.s = r ? fdn_errname(r) : "ok"};
	a[1] = (struct fdn_attr){
	    .name = "backend", .type = FDN_ATTR_STRING, .v.s = shared ? "shared" : "local"};
	a[2] = (struct fdn_attr){.name = "key", .type = FDN_ATTR_STRING, .v.s = k};
	return n ? 3 : 2;
}

/* The registry's telemetry: the event `id` of an operation that began at
 * t0 (CLOCK_MONOTONIC; 0 = nobody listened then) and returned r:
 * duration_ns; result ("ok" or the error's name), backend, key (when it is
 * text).  With no handler attached in this process, a compact record
 * (FDN_EVENT_REG, shm/layout_svc.h) that readers expand into the same
 * fields.  Returns r. */
int fdn__reg_event(fdn_segment *s, enum fdn__ev id, uint64_t t0, const void *key, size_t klen,
		   int r)
{
	if (t0 == 0)
		return r;
	size_t n = key && klen <= FDN_REG_KEY_MAX ? klen : 0;
	if (n && memchr(key, 0, n))
		n = 0; /* not text: no key attribute */
	uint64_t end = fdn__mono_ns();
	bool shared = fdn__backend(s, FDN__SVC_REGISTRY) == FDN__SHARED;
	/* To the ring in compact form (no text built; readers expand it), as
	 * a span's start and stop, unless a handler in this process needs
	 * the text form (fdn__emit_compact refuses then). */
	if (s && id >= FDN__EV_REG_REGISTER && id <= FDN__EV_REG_MERGE) {
		uint8_t b[FDN_REG_REC_HEAD + FDN_REG_KEY_MAX];
		uint64_t dur = end - t0;
		int32_t res = r;
		b[0] = (uint8_t)(id - FDN__EV_REG_REGISTER + 1);
		b[1] = shared ? 0 : 1;
		b[2] = (uint8_t)n;
		b[3] = 0;
		memcpy(b + 4, &res, 4);
		memcpy(b + 8, &dur, 8);
		memcpy(b + FDN_REG_REC_HEAD, key, n);
		if (fdn__emit_compact(s, id, FDN_EVENT_REG, b, FDN_REG_REC_HEAD + n, 0, end) >= 0)
			return r;
	}
	char k[FDN_REG_KEY_MAX + 1];
	memcpy(k, key, n);
	k[n] = 0;
	struct fdn_measurement m = {"duration_ns", (double)(end - t0)};
	struct fdn_attr a[3];
	fdn__emit_id_at(s, id, end, &m, 1, a, reg_event_attrs(r, shared, k, n, a));
	return r;
}

bool fdn__reg_rec_expand(const uint8_t *b, size_t len, struct fdn_ring_event *ev)
{
	if (len < FDN_REG_REC_HEAD || b[0] < 1 ||
	    b[0] > FDN__EV_REG_MERGE - FDN__EV_REG_REGISTER + 1 || b[1] > 1 || b[3] != 0 ||
	    len != FDN_REG_REC_HEAD + (size_t)b[2] || memchr(b + FDN_REG_REC_HEAD, 0, b[2]))
		return false;
	int32_t res;
	uint64_t dur;
	memcpy(&res, b + 4, 4);
	memcpy(&dur, b + 8, 8);
	char k[FDN_REG_KEY_MAX + 1];
	memcpy(k, b + FDN_REG_REC_HEAD, b[2]);
	k[b[2]] = 0;
	struct fdn_attr a[3];
	int alen = fdn_attrs_encode(a, reg_event_attrs(res, b[1] == 0, k, b[2], a), ev->attrs,
				    sizeof(ev->attrs));
	if (alen < 0)
		return false;
	snprintf(ev->name, sizeof(ev->name), "%s", fdn__ev_names[FDN__EV_REG_REGISTER + b[0] - 1]);
	ev->nmeasurements = 1;
	snprintf(ev->measurements[0].name, sizeof(ev->measurements[0].name), "duration_ns");
	ev->measurements[0].value = (double)dur;
	ev->attrs_len = (uint32_t)alen;
	ev->truncated = false;
	return true;
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
	/* A new entry and a takeover are both "registered" in the change log,
	 * at the entry's registration time. */
	uint64_t reg_ns;
	memcpy(&reg_ns, (const unsigned char *)val + REC_OFF_TIME, 8);
	const struct fdn__chg chg = {FDN_CHANGE_REGISTERED, pid, 0, reg_ns};
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

/* Room kept in the deferred-free list for a signal handler's writes
 * while a registration holds its section: a register and an unregister
 * with a few indexed values.  Past it the handler's writes fail
 * FDN_EREENTERED, as when it interrupts one of our operations. */
#define HANDLER_ROOM 16u

/* Did a write fail because the caller held a read-side section
 * (reg_register_once)?  Inside one no deferred free can be made: out of
 * heap with frees pending, a full list (a signal handler's writes
 * between ours). */
static bool section_failed(int r)
{
	return r == FDN_ENOSPACE || r == FDN_EINREAD || r == FDN_EREENTERED;
}

/* Leave the section *held (if any): the nodes put noted are no longer
 * kept. */
static void section_leave(struct fdn__thread **held, struct ref_op *put)
{
	if (*held)
		fdn__rcu_read_unlock(*held);
	*held = NULL;
	put->nodes = NULL;
	put->at = 0;
}

/* After a failed write: the references written for it that the entry
 * now visible does not carry are removed (those it carries stay: a carried
 * reference is never stale, whoever wrote it). */
static void refs_undo(fdn_segment *s, const void *key, size_t klen, const struct ref_set *rs)
{
	struct ref_op del = {.s = s, .key = key, .klen = klen};
	fdn__reg_set_each(rs, true, fdn__reg_ref_del_cb, &del);
}

/*
 * The entry of key, copied out of a read-side section of its own: its
 * version (gidx, generation -- still a valid name after the section, for a
 * conditional replace or delete, which fails if the entry changed), its
 * record, and its attributes (rc->attrs_len bytes into attrs, at most
 * FDN_ATTRS_MAX: rec_of), as stored -- not validated: readers trust the
 * encoding written (top of this file), and what a removal does with it
 * (fdn__reg_refs_of) skips a damaged value.  An update, which merges into
 * it, validates it (update).  visible_only: FDN_ENOTFOUND unless the entry
 * is visible.
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
	    r.owner_idx == oidx) {
		struct ref_set rs;
		fdn__reg_refs_of(s, oidx, oword, copy, r.attrs_len, &rs);
		fdn__reg_remove_entry(s, key, klen, &version, &rs, FDN_CHANGE_REMOVED, 0);
	}
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
			     pid_t *holder, bool *released, uint64_t now)
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
	int vlen = build_record(oidx, oword, now, val + REC_SIZE, (size_t)alen, val);
	/* Counted before its first reference is made sure of: our own entry in
	 * our count, another owner's by its slot's mark (registry_int.h). */
	if (fdn__held_own(s, oidx, oword))
		fdn__held_add(s, oidx, oword, 1);
	else
		fdn__proc_mark_uncounted(s, oidx, oword);
	/* References first: the index never misses a value the entry has. */
	struct ref_set rs;
	fdn__reg_refs_of(s, oidx, oword, val + REC_SIZE, (size_t)alen, &rs);
	struct ref_op put = {.s = s,
			     .key = key,
			     .klen = klen,
			     .owner_word = oword,
			     .owner_idx = oidx,
			     .top_only = true};
	/* One read-side section from the first pass to the second, so that
	 * the second reads each reference's node instead of looking it up
	 * (fdn__reg_refs_after_entry) -- when the deferred-free list has
	 * room for every block the writes inside may retire (a reference
	 * replaced each, the entry taken over, a signal handler's writes):
	 * inside, none can be freed.  Room is not made for it (that may
	 * wait): without it, the writes go as without the section (the
	 * background keeps the list about a quarter full).  Anything a held
	 * section makes fail (out of heap with frees pending, a full list
	 * after a signal handler's writes) is done again without it. */
	uint32_t nodes[REF_SET_MAX + 1];
	struct fdn__thread *held = NULL;
	if (!rs.partial && fdn__write_room_has(s, rs.n + 1 + HANDLER_ROOM) &&
	    fdn__rcu_read_lock(s, &held) == 0)
		put.nodes = nodes;
	else
		held = NULL;
	r = fdn__reg_set_each(&rs, true, fdn__reg_ref_put_cb, &put);
	if (r && held && section_failed(r)) {
		section_leave(&held, &put);
		r = fdn__reg_set_each(&rs, true, fdn__reg_ref_put_cb, &put);
	}
	if (r) {
		section_leave(&held, &put);
		fdn__held_add(s, oidx, oword, -1);
		refs_undo(s, key, klen, &rs);
		return r;
	}
	struct rec orec;
	r = put_entry(s, key, klen, val, (size_t)vlen, flags, again ? pid : 0, holder, old, &orec,
		      pid);
	if (r && held && section_failed(r)) {
		section_leave(&held, &put);
		r = put_entry(s, key, klen, val, (size_t)vlen, flags, again ? pid : 0, holder, old,
			      &orec, pid);
	}
	if (r) {
		section_leave(&held, &put);
		fdn__held_add(s, oidx, oword, -1);
		refs_undo(s, key, klen, &rs);
		return r;
	}
	/* Took over an entry of ours: it is gone from the count. */
	if (orec.owner_word)
		fdn__held_add(s, orec.owner_idx, orec.owner_word, -1);
	/* Again after the entry: rewrites a reference a concurrent remover
	 * took between our first pass and our entry (the pair argued at
	 * fdn__reg_ref_del_suffix).  The first pass made the entry's
	 * references exist when it appeared. */
	fdn__reg_refs_after_entry(&put, &rs, &held);
	/* Took over an entry: what it had that we do not (its owner reference,
	 * values) loses its reference. */
	if (orec.owner_word) {
		struct ref_op del = {.s = s, .key = key, .klen = klen, .keep = &rs};
		struct ref_set ors;
		fdn__reg_refs_of(s, orec.owner_idx, orec.owner_word, old, orec.attrs_len, &ors);
		fdn__reg_set_each(&ors, true, fdn__reg_ref_del_cb, &del);
	}
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

/* now: the registration's time (CLOCK_REALTIME). */
static int reg_register(fdn_segment *s, const void *key, size_t klen, pid_t pid,
			const struct fdn_attr *attrs, size_t n, unsigned flags, pid_t *holder,
			uint64_t now)
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
					  &released, now);
		if (r || !released)
			return r;
		if (tries >= 4) {
			struct timespec d = {0, 1000000};
			nanosleep(&d, NULL);
		}
	}
	return FDN_EBUSY;
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
		/* Damaged (memory corruption; the checker reports it): merged
		 * into as empty, its values' references left to the sweep. */
		size_t olen = fdn_attrs_validate(old, rc.attrs_len) == 0 ? rc.attrs_len : 0;
		int alen = merge ? fdn_attrs_merge(old, olen, upd, (size_t)ulen, val + REC_SIZE,
						   FDN_ATTRS_MAX)
				 : ulen;
		if (alen < 0)
			return alen;
		int vlen = build_record(rc.owner_idx, rc.owner_word, rc.registered_ns,
					merge ? val + REC_SIZE : upd, (size_t)alen, val);
		struct ref_op put = {.s = s,
				     .key = key,
				     .klen = klen,
				     .owner_word = rc.owner_word,
				     .owner_idx = rc.owner_idx};
		struct ref_set rs;
		fdn__reg_refs_of(s, rc.owner_idx, rc.owner_word, val + REC_SIZE, (size_t)alen, &rs);
		r = fdn__reg_set_each(&rs, true, fdn__reg_ref_put_cb, &put);
		const struct fdn__chg chg = {FDN_CHANGE_UPDATED, (pid_t)FDN_PROC_PID(rc.owner_word),
					     0, 0};
		if (r == 0)
			r = fdn__ht_put_chg(s, T_MAIN, key, klen, val, (size_t)vlen, FDN_HT_REPLACE,
					    &expect, NULL, &chg);
		if (r == 0) {
			fdn__reg_refs_after_entry(&put, &rs, NULL);
			struct ref_op del = {.s = s, .key = key, .klen = klen, .keep = &rs};
			struct ref_set ors;
			fdn__reg_refs_of(s, rc.owner_idx, rc.owner_word, old, olen, &ors);
			fdn__reg_set_each(&ors, false, fdn__reg_ref_del_cb, &del);
			drop_if_owner_gone(s, key, klen, rc.owner_idx, rc.owner_word);
			return 0;
		}
		/* Not applied: the references written for it go, unless carried. */
		refs_undo(s, key, klen, &rs);
		if (r != FDN_ENOTFOUND)
			return r;
	}
	return FDN_ENOTFOUND;
}

int fdn_update_attributes(fdn_segment *s, const void *key, size_t klen,
			  const struct fdn_attr *attrs, size_t n)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_UPDATE) ? fdn__mono_ns() : 0;
	return fdn__reg_event(s, FDN__EV_REG_UPDATE, t0, key, klen,
			      update(s, key, klen, attrs, n, false));
}

int fdn_merge_attributes(fdn_segment *s, const void *key, size_t klen, const struct fdn_attr *attrs,
			 size_t n)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_MERGE) ? fdn__mono_ns() : 0;
	return fdn__reg_event(s, FDN__EV_REG_MERGE, t0, key, klen,
			      update(s, key, klen, attrs, n, true));
}

static int unregister_one(fdn_segment *s, const void *key, size_t klen, uint64_t now);

/* now: the removal's time in the change log (CLOCK_REALTIME; 0: when it
 * is logged). */
static int unregister(fdn_segment *s, const void *key, size_t klen, unsigned flags, uint64_t now)
{
	if (flags & ~(unsigned)(FDN_REG_IF_PRESENT | FDN_REG_MIRROR))
		return FDN_EINVAL;
	int r = check_write_key(key, klen, flags);
	if (r == 0)
		r = unregister_one(s, key, klen, now);
	return r == FDN_ENOTFOUND && (flags & FDN_REG_IF_PRESENT) ? 0 : r;
}

static int unregister_one(fdn_segment *s, const void *key, size_t klen, uint64_t now)
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
		/* Room for every block the removal retires before the first:
		 * the entry, and a reference per prefix (fdn__reg_each_ref: the
		 * owner reference, removed when no longer needed, and each
		 * indexed value).  Behind a reader stopped in a section, at the
		 * writer's backlog bound, the call then fails FDN_EBUSY having
		 * changed nothing, where it removed the entry, waited out the
		 * bound inside a reference's removal and returned 0 (2 s, the
		 * reference left for the sweep).  A value whose reference lies
		 * under two levels (registry_index.c, "Levels": two writers
		 * racing with a raise) retires one more, checked by its own
		 * removal. */
		struct ref_set rs;
		fdn__reg_refs_of(s, rc.owner_idx, rc.owner_word, attrs, rc.attrs_len, &rs);
		if ((r = fdn__write_room_for(s, 1 + fdn__reg_set_count(&rs))))
			return r;
		r = fdn__reg_remove_entry(s, key, klen, &version, &rs, FDN_CHANGE_UNREGISTERED,
					  now);
		if (r == 0 && atomic_load_explicit(&s->nkept, memory_order_relaxed) &&
		    fdn__held_none(s, s->proc_idx, s->proc_word))
			fdn__registry_drop_kept_refs(s);
		if (r == 0)
			fdn__registry_release_idle(s, rc.owner_idx, rc.owner_word);
		if (r != FDN_ENOTFOUND)
			return r;
		/* The version changed under us (replaced or updated): again. */
	}
	return FDN_ENOTFOUND;
}

/* ---- the public operations, with their telemetry ------------------------------ */

/* The wall-clock times of a register and an unregister are those of the
 * monotonic reading their events start with (fdn__real_of), when there is
 * one: two clock reads fewer per pair. */
int fdn_register(fdn_segment *s, const void *key, size_t klen, pid_t pid,
		 const struct fdn_attr *attrs, size_t n, unsigned flags, pid_t *holder)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_REGISTER) ? fdn__mono_ns() : 0;
	uint64_t now = t0 ? fdn__real_of(t0) : fdn__real_ns();
	return fdn__reg_event(s, FDN__EV_REG_REGISTER, t0, key, klen,
			      reg_register(s, key, klen, pid, attrs, n, flags, holder, now));
}

int fdn_unregister_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_UNREGISTER) ? fdn__mono_ns() : 0;
	return fdn__reg_event(s, FDN__EV_REG_UNREGISTER, t0, key, klen,
			      unregister(s, key, klen, flags, t0 ? fdn__real_of(t0) : 0));
}

int fdn_unregister(fdn_segment *s, const void *key, size_t klen)
{
	return fdn_unregister_flags(s, key, klen, 0);
}
