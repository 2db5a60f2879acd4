/*
 * registry_read.c - the registry's reads: lookup, fdn_whereis and the view
 * of one entry, the walks (foreach, list, count), find and query through
 * the index, and fdn_watch.  The record they read, and why a reader trusts
 * an encoding without checking it again: registry.c, top.  The writes are
 * in registry.c; shared: registry_int.h.
 */
#include "lib/registry_int.h"
#include "lib/telemetry.h"

#include <foundation/registry.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
 * copied encoding is validated (it may be damaged; see registry.c, top).
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

static inline int lookup_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags,
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
static inline void copy_short(unsigned char *d, const unsigned char *s, size_t n)
{
	for (; n > 16; n -= 16, d += 16, s += 16)
		memcpy(d, s, 16);
	/* 0..16 left: two copies that overlap when n is not their sum. */
	if (n >= 8) {
		memcpy(d, s, 8);
		memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		memcpy(d, s, 4);
		memcpy(d + n - 4, s + n - 4, 4);
	} else if (n > 0) {
		d[0] = s[0];
		d[n / 2] = s[n / 2];
		d[n - 1] = s[n - 1];
	}
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

/* A read-only handle's read of key: its record, and its entry into out
 * unless out is NULL.  Out of line: its 4 KiB copy would otherwise sit in
 * the frame of every shared read. */
__attribute__((noinline)) static int ro_read(fdn_segment *s, const void *key, size_t klen,
					     struct fdn_entry *out, struct rec *rc)
{
	struct ro_entry c;
	int r = ro_copy(s, key, klen, out != NULL, &c);
	if (r == 0 && out)
		entry_out(key, klen, &c.rc, c.attrs, out);
	if (r == 0)
		*rc = c.rc;
	return r;
}

/* The three shared reads (this one, whereis_shared and view_shared) are
 * inlined in the public calls: at a million entries a hit's time grows with
 * its instruction count (shm/ht_read.h), and a call with a frame for all
 * their locals was about 25 of a hit's instructions. */
__attribute__((always_inline)) static inline int
lookup_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags, struct fdn_entry *out)
{
	int r = read_args(klen, flags);
	if (r)
		return r;
	struct rec rc = {0}; /* set when r == 0 (GCC cannot tell once inlined) */
	if (s->readonly) {
		r = ro_read(s, key, klen, out, &rc);
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
 * line (its record is there: registry.c, top) and the owner's process slot. */
__attribute__((always_inline)) static inline int
whereis_shared(fdn_segment *s, const void *key, size_t klen, unsigned flags, pid_t *pid)
{
	int r = read_args(klen, flags);
	if (r)
		return r;
	struct rec rc;
	if (s->readonly) {
		r = ro_read(s, key, klen, NULL, &rc);
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
 * allocated) until the section ends (registry.c, top).  FDN_REG_CHECK_ALIVE
 * asks the kernel inside the section (a few system calls: a grace period
 * waits for them, no writer does).  A read-only handle has no section: cb
 * gets a stable copy (ro_copy).
 */
__attribute__((always_inline)) static inline int view_shared(fdn_segment *s, const void *key,
							     size_t klen, unsigned flags,
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

/* ---- the public reads, with their telemetry ------------------------------------ */

/*
 * The common read, decided with one load of the built-in flags word: the
 * registry on the segment (what fdn__backend decides), no handler attached
 * and the lookup event not sampled (fdn__event_fast), so no event
 * and no clock read.  It goes straight to the shared read; anything else
 * takes the general path, which decides the same things one at a time.
 * Why it matters: at a million entries a hit waits for two cache misses
 * (the bucket, then the node), and the CPU overlaps one lookup's misses
 * with the next one's only while the instructions between them fit in its
 * reorder window; the general path's checks and calls kept them apart
 * (a warm fdn_whereis hit: 324 instructions by the general path, 263 by
 * this one).  docs/benchmarks.md has the figures.
 */
static inline bool read_plain(fdn_segment *s)
{
	if (!s || atomic_load_explicit(&fdn__tel_nhandlers, memory_order_relaxed) != 0)
		return false;
	const uint64_t mask = FDN__TEL_FAST_MASK | FDN_BUILTIN_FIELD(FDN__FLAG_USE_SHM_REGISTRY);
	const uint64_t on = FDN__TEL_FAST_ON | FDN__BUILTIN_ON(FDN__FLAG_USE_SHM_REGISTRY);
	return (fdn__flags_word(s) & mask) == on && fdn__event_fast_on(s, FDN__EV_REG_LOOKUP) == 0;
}

/* A read by the general path: the event (when wanted) around the backend's
 * read.  Out of line, so that the plain path's callers need no frame. */
enum read_op { READ_LOOKUP, READ_WHEREIS, READ_VIEW };

struct read_req {
	enum read_op op;
	unsigned flags;
	struct fdn_entry *out; /* READ_LOOKUP */
	pid_t *pid;            /* READ_WHEREIS */
	fdn_entry_cb cb;       /* READ_VIEW */
	void *arg;
};

__attribute__((noinline)) static int read_general(fdn_segment *s, const void *key, size_t klen,
						  const struct read_req *q)
{
	uint64_t t0 = fdn__emit_enabled(s, FDN__EV_REG_LOOKUP) ? fdn__mono_ns() : 0;
	int r = q->op == READ_LOOKUP    ? lookup(s, key, klen, q->flags, q->out)
		: q->op == READ_WHEREIS ? whereis(s, key, klen, q->flags, q->pid)
					: lookup_view(s, key, klen, q->flags, q->cb, q->arg);
	return fdn__reg_event(s, FDN__EV_REG_LOOKUP, t0, key, klen, r);
}

int fdn_lookup(fdn_segment *s, const void *key, size_t klen, unsigned flags, struct fdn_entry *out)
{
	if (read_plain(s))
		return lookup_shared(s, key, klen, flags, out);
	return read_general(s, key, klen,
			    &(struct read_req){.op = READ_LOOKUP, .flags = flags, .out = out});
}

int fdn_whereis_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags, pid_t *pid)
{
	if (pid && read_plain(s))
		return whereis_shared(s, key, klen, flags, pid);
	return read_general(s, key, klen,
			    &(struct read_req){.op = READ_WHEREIS, .flags = flags, .pid = pid});
}

int fdn_whereis(fdn_segment *s, const void *key, size_t klen, pid_t *pid)
{
	return fdn_whereis_flags(s, key, klen, 0, pid);
}

int fdn_lookup_view_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags,
			  fdn_entry_cb cb, void *arg)
{
	if (cb && read_plain(s))
		return view_shared(s, key, klen, flags, cb, arg);
	return read_general(
	    s, key, klen,
	    &(struct read_req){.op = READ_VIEW, .flags = flags, .cb = cb, .arg = arg});
}

int fdn_lookup_view(fdn_segment *s, const void *key, size_t klen, fdn_entry_cb cb, void *arg)
{
	return fdn_lookup_view_flags(s, key, klen, 0, cb, arg);
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
