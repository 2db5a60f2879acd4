/*
 * changefeed.c - subscriptions, snapshots and reads of the change log
 * (foundation/changes.h; the log itself: shm/changes.c).
 *
 * How a subscription's fd becomes readable, across processes, without
 * polling.  It reuses the one notification mechanism of the segment
 * (shm/notify.c): header.watchers, a flag "someone may be waiting", and
 * header.changes, a shared futex.  Every table change already ends with
 * fdn__notify: one load of the flag while it is clear; when it is set, the
 * writer clears it, increments `changes` and wakes the futex.  Each
 * subscription has a thread of its own process that
 *     seen = fdn__watch_begin (reads `changes`, sets the flag),
 *     scans the log from its position (the reads below),
 *     finds a change under its prefix (or an overrun): writes its eventfd,
 *       then waits on a private word until the application has read
 *       (fdn_subscription_read) -- the flag is not set meanwhile;
 *     finds nothing: fdn__wait_change(seen) -- no lost wake-up, notify.c
 *       argues it: a change made after the flag was set wakes the futex,
 *       one made before it is found by the scan.
 * So the cost to writers is one load when nobody waits, and an exchange,
 * an increment and one FUTEX_WAKE when some thread waits -- once per
 * change at most, whatever the number of subscribers (they share the flag
 * and the futex).  A subscriber that stops reading stops setting the flag
 * once its fd is readable; one that is stopped (SIGSTOP) or dies leaves it
 * set until the next write, which clears it: from then on writers pay the
 * one load again.  No writer ever waits for a subscriber (the log is a
 * ring that overwrites, and a reader never holds a slot).
 *
 * Head of line: a record still PENDING (its writer between the claim and
 * the CAS) is waited for with short timed waits (1 ms, doubling to 100 ms)
 * while it lasts: its completion may come without a notify (a record made
 * VOID by the reaper wakes too; one by its writer does, see changes.c).
 * An unclaimed revision (a writer killed between its reservation and its
 * claim) is voided after FDN__CHG_STEAL_NS (changes.c).
 */
#include "lib/internal.h"

#include <foundation/changes.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct fdn_subscription {
	fdn_segment *s;
	unsigned char prefix[FDN_REG_KEY_MAX];
	uint32_t plen;
	int efd;
	pthread_t thread;
	/* The next revision to deliver; written by the application's reads,
	 * read by the thread. */
	_Atomic uint64_t pos;
	/* 1: the thread looks for changes; 0: the fd is readable, the thread
	 * waits (private futex) until a read sets it back to 1. */
	_Atomic uint32_t armed;
	_Atomic uint32_t stop;
	bool overflow; /* the application's side: an overrun reported */
};

static void private_wait(_Atomic uint32_t *w, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void private_wake(_Atomic uint32_t *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static bool under(const struct fdn__chg_rec *r, const void *prefix, size_t plen)
{
	return plen == 0 || (r->key_len >= plen && memcmp(r->key, prefix, plen) == 0);
}

static void to_change(const struct fdn__chg_rec *r, struct fdn_change *c)
{
	c->revision = r->rev;
	c->time_ns = r->time_ns;
	c->death = r->death ? r->death - 1 : FDN_NO_DEATH;
	c->pid = (pid_t)r->pid;
	c->kind = (enum fdn_change_type)r->kind;
	c->key_len = r->key_len;
	memcpy(c->key, r->key, r->key_len);
	c->key[r->key_len] = 0;
}

const char *fdn_change_type_name(enum fdn_change_type k)
{
	switch (k) {
	case FDN_CHANGE_REGISTERED:
		return "registered";
	case FDN_CHANGE_UPDATED:
		return "updated";
	case FDN_CHANGE_UNREGISTERED:
		return "unregistered";
	case FDN_CHANGE_REMOVED:
		return "removed";
	}
	return "?";
}

/* ---- the subscription's thread ---------------------------------------------- */

/* Scan from *scan: 1 = something to read (a change under the prefix, or an
 * overrun), 0 = nothing yet, 2 = blocked at the head of the line (a record
 * pending or unclaimed: *since is when that began, for stealing). */
static int scan(struct fdn_subscription *sub, uint64_t *scan_pos, uint64_t *since)
{
	fdn_segment *s = sub->s;
	uint64_t p = atomic_load_explicit(&sub->pos, memory_order_acquire);
	if (*scan_pos < p)
		*scan_pos = p;
	uint64_t head = fdn__chg_head(s);
	for (uint64_t rev = *scan_pos; rev <= head; rev++) {
		struct fdn__chg_rec r;
		int st = fdn__chg_get(s, rev, &r);
		switch (st) {
		case FDN__CHG_DONE:
			if (under(&r, sub->prefix, sub->plen)) {
				*scan_pos = rev; /* read it, then look past it */
				return 1;
			}
			break;
		case FDN__CHG_VOID:
			break;
		case FDN__CHG_GONE:
			*scan_pos = rev;
			return 1; /* the read reports the overrun */
		case FDN__CHG_UNCLAIMED:
			if (*since && fdn__mono_ns() - *since > FDN__CHG_STEAL_NS &&
			    fdn__chg_steal(s, rev))
				continue; /* now VOID: go on (rev++ of the loop) */
					  /* fallthrough */
		case FDN__CHG_PENDING:
			*scan_pos = rev;
			if (!*since)
				*since = fdn__mono_ns();
			return 2;
		default: /* NOTYET: head moved back? never; stop */
			*scan_pos = rev;
			return 0;
		}
		*scan_pos = rev + 1;
		*since = 0;
	}
	return 0;
}

static void *sub_thread(void *arg)
{
	struct fdn_subscription *sub = arg;
	fdn_segment *s = sub->s;
	uint64_t scan_pos = 0, since = 0;
	int64_t backoff = 1000000;
	while (!atomic_load(&sub->stop)) {
		if (!atomic_load(&sub->armed)) {
			private_wait(&sub->armed, 0);
			continue;
		}
		uint32_t seen = fdn__watch_begin(s);
		int r = scan(sub, &scan_pos, &since);
		if (r == 1) {
			/* Disarm first: a read that drains the fd after our write
			 * re-arms us, one before it leaves the fd readable (a
			 * spurious readiness, never a lost one). */
			atomic_store(&sub->armed, 0);
			uint64_t one = 1;
			ssize_t w = write(sub->efd, &one, sizeof(one));
			(void)w;
			backoff = 1000000;
			continue;
		}
		if (r == 2) {
			fdn__wait_change(s, seen, backoff);
			backoff = backoff * 2 > 100000000 ? 100000000 : backoff * 2;
		} else {
			backoff = 1000000;
			fdn__wait_change(s, seen, -1);
		}
	}
	return NULL;
}

/* ---- subscriptions ------------------------------------------------------------ */

/* The checks every reader of the log starts with: a prefix of a key's
 * length, a usable writable handle, a segment with a change log. */
static int log_args(fdn_segment *s, const void *prefix, size_t plen)
{
	if (plen && !prefix)
		return FDN_EINVAL;
	if (plen > FDN_REG_KEY_MAX)
		return FDN_EINVKEY;
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (s->readonly)
		return FDN_ERDONLY;
	return s->changes ? 0 : FDN_ENOLOG;
}

static int sub_open(fdn_segment *s, const void *prefix, size_t plen, bool from, uint64_t revision,
		    unsigned flags, fdn_subscription **out)
{
	if (!out)
		return FDN_EINVAL;
	*out = NULL;
	if (!s || flags != 0)
		return FDN_EINVAL;
	int r = log_args(s, prefix, plen);
	if (r)
		return r;
	struct fdn_subscription *sub = calloc(1, sizeof(*sub));
	if (!sub)
		return -ENOMEM;
	sub->s = s;
	sub->plen = (uint32_t)plen;
	if (plen)
		memcpy(sub->prefix, prefix, plen);
	atomic_store(&sub->pos, (from ? revision : fdn__chg_head(s)) + 1);
	atomic_store(&sub->armed, 1);
	sub->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sub->efd < 0) {
		r = -errno;
		free(sub);
		return r;
	}
	if ((r = pthread_create(&sub->thread, NULL, sub_thread, sub)) != 0) {
		close(sub->efd);
		free(sub);
		return -r;
	}
	atomic_fetch_add(&s->chg_hdr->subscribers, 1);
	*out = sub;
	return 0;
}

int fdn_subscribe(fdn_segment *s, const void *prefix, size_t plen, unsigned flags,
		  fdn_subscription **out)
{
	return sub_open(s, prefix, plen, false, 0, flags, out);
}

int fdn_subscribe_from(fdn_segment *s, const void *prefix, size_t plen, uint64_t revision,
		       unsigned flags, fdn_subscription **out)
{
	return sub_open(s, prefix, plen, true, revision, flags, out);
}

int fdn_subscription_fd(const fdn_subscription *sub)
{
	return sub ? sub->efd : FDN_EINVAL;
}

uint64_t fdn_subscription_revision(const fdn_subscription *sub)
{
	return sub ? atomic_load(&sub->pos) - 1 : 0;
}

static void rearm(fdn_subscription *sub)
{
	uint64_t v;
	ssize_t n = read(sub->efd, &v, sizeof(v)); /* drain (non-blocking) */
	(void)n;
	atomic_store(&sub->armed, 1);
	private_wake(&sub->armed);
}

int fdn_subscription_read(fdn_subscription *sub, struct fdn_change *out, size_t n)
{
	if (!sub || (n && !out))
		return FDN_EINVAL;
	int r = fdn__seg_usable(sub->s);
	if (r)
		return r;
	/* Drain before reading: a change that comes after our reads makes
	 * the thread write the fd again. */
	rearm(sub);
	if (sub->overflow)
		return FDN_EOVERFLOW;
	uint64_t p = atomic_load(&sub->pos);
	size_t got = 0;
	while (got < n) {
		struct fdn__chg_rec rec;
		int st = fdn__chg_get(sub->s, p, &rec);
		if (st == FDN__CHG_GONE) {
			sub->overflow = true;
			atomic_fetch_add(&sub->s->chg_hdr->overruns, 1);
			break;
		}
		if (st == FDN__CHG_VOID) {
			p++;
			continue;
		}
		if (st != FDN__CHG_DONE)
			break; /* pending, unclaimed, or not yet issued */
		p++;
		if (under(&rec, sub->prefix, sub->plen))
			to_change(&rec, &out[got++]);
	}
	atomic_store(&sub->pos, p);
	if (got == 0 && sub->overflow)
		return FDN_EOVERFLOW;
	return (int)got;
}

int fdn_subscription_seek(fdn_subscription *sub, uint64_t revision)
{
	if (!sub)
		return FDN_EINVAL;
	atomic_store(&sub->pos, revision + 1);
	sub->overflow = false;
	rearm(sub);
	return 0;
}

static void wake_watchers(fdn_segment *s)
{
	atomic_fetch_add_explicit(&s->hdr->changes, 1, memory_order_seq_cst);
	syscall(SYS_futex, (uint32_t *)&s->hdr->changes, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

void fdn_subscription_close(fdn_subscription *sub)
{
	if (!sub)
		return;
	atomic_store(&sub->stop, 1);
	atomic_store(&sub->armed, 1);
	private_wake(&sub->armed);
	/* Its thread may sleep on the shared futex: wake it (and, harmlessly,
	 * every other waiter of the segment, which looks again). */
	wake_watchers(sub->s);
	pthread_join(sub->thread, NULL);
	atomic_fetch_sub(&sub->s->chg_hdr->subscribers, 1);
	close(sub->efd);
	free(sub);
}

/* ---- reads without a subscription --------------------------------------------- */

int fdn_changes_read(fdn_segment *s, const void *prefix, size_t plen, uint64_t from,
		     struct fdn_change *out, size_t n)
{
	if (!s || (n && !out) || (plen && !prefix))
		return FDN_EINVAL;
	if (!s->changes)
		return FDN_ENOLOG;
	uint64_t head = fdn__chg_head(s);
	uint64_t lo = head > s->nchanges ? head - s->nchanges + 1 : 1;
	if (from + 1 > lo)
		lo = from + 1;
	size_t got = 0;
	for (uint64_t rev = lo; rev <= head && got < n; rev++) {
		struct fdn__chg_rec r;
		int st = fdn__chg_get(s, rev, &r);
		if (st == FDN__CHG_PENDING || st == FDN__CHG_UNCLAIMED)
			break; /* in revision order: stop at the head of the line */
		if (st == FDN__CHG_DONE && under(&r, prefix, plen))
			to_change(&r, &out[got++]);
	}
	return (int)got;
}

int fdn_changes_stats(fdn_segment *s, struct fdn_changes_stats *st)
{
	if (!s || !st)
		return FDN_EINVAL;
	memset(st, 0, sizeof(*st));
	st->capacity = s->nchanges;
	st->revision = atomic_load(&s->chg_hdr->head);
	st->subscribers = atomic_load(&s->chg_hdr->subscribers);
	st->overruns = atomic_load(&s->chg_hdr->overruns);
	st->lapped = atomic_load(&s->chg_hdr->lapped);
	st->stolen = atomic_load(&s->chg_hdr->stolen);
	return 0;
}

/* ---- snapshots ------------------------------------------------------------------
 *
 * R0 = head; wait until every revision <= R0 is decided; walk the table
 * (each key is seen as of some instant of the walk); R1 = head; wait until
 * every revision <= R1 is decided; then for each key, the state at R1 is
 * the effect of its last DONE record in (R0, R1] if it has one, else what
 * the walk saw.  Why: a change of key K that took effect before the walk
 * saw K has a revision <= R1 (reserved before its CAS, before R1 was
 * read); one with a revision <= R0 took effect before the walk began
 * (decided before it).  So if K has no DONE record in (R0, R1], the walk
 * saw exactly the effect of K's changes <= R0 = K at R1; if it has, its
 * changes took effect in revision order (changes.c) and the last one is K
 * at R1.  Records of (R0, R1] overwritten meanwhile: FDN_EOVERFLOW.
 * "Decided": every revision of the window is DONE, VOID or overwritten, and
 * no reader slot still names a revision <= R (a writer stalled a whole lap
 * whose record was overwritten).  Not covered: a writer stopped for a whole
 * lap of the log between its fetch_add and the store that names the
 * revision in its slot (two adjacent instructions): its change, if it
 * then happens, may be missing from a snapshot taken meanwhile, as it is
 * from every reader (they see that revision as overwritten).
 */

struct snap_item {
	uint64_t seq; /* 0: seen by the walk; else the record's revision */
	uint64_t koff;
	uint32_t klen;
	pid_t pid;
	bool gone; /* an unregister / removal */
};

struct snap {
	fdn_segment *s;
	const unsigned char *prefix;
	size_t plen;
	struct snap_item *it;
	size_t n, cap;
	unsigned char *keys;
	size_t klen_used, kcap;
	int err;
};

static int snap_add(struct snap *sn, const void *key, uint32_t klen, pid_t pid, uint64_t seq,
		    bool gone)
{
	if (sn->n == sn->cap) {
		size_t cap = sn->cap ? sn->cap * 2 : 1024;
		struct snap_item *it = realloc(sn->it, cap * sizeof(*it));
		if (!it)
			return -ENOMEM;
		sn->it = it;
		sn->cap = cap;
	}
	if (sn->klen_used + klen > sn->kcap) {
		size_t cap = sn->kcap ? sn->kcap * 2 : 65536;
		while (cap < sn->klen_used + klen)
			cap *= 2;
		unsigned char *k = realloc(sn->keys, cap);
		if (!k)
			return -ENOMEM;
		sn->keys = k;
		sn->kcap = cap;
	}
	memcpy(sn->keys + sn->klen_used, key, klen);
	sn->it[sn->n++] = (struct snap_item){seq, sn->klen_used, klen, pid, gone};
	sn->klen_used += klen;
	return 0;
}

static int snap_walk_cb(void *arg, const struct fdn__ht_view *v)
{
	struct snap *sn = arg;
	uint64_t word;
	if (v->val_len < FDN__REG_REC_SIZE || v->key_len > FDN_REG_KEY_MAX ||
	    (sn->plen && (v->key_len < sn->plen || memcmp(v->key, sn->prefix, sn->plen) != 0)))
		return 0;
	memcpy(&word, v->val, 8);
	int r = snap_add(sn, v->key, v->key_len, (pid_t)FDN_PROC_PID(word), 0, false);
	if (r) {
		sn->err = r;
		return 1;
	}
	return 0;
}

static const struct snap *cmp_ctx;
static int snap_cmp(const void *a, const void *b)
{
	const struct snap_item *x = a, *y = b;
	uint32_t m = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(cmp_ctx->keys + x->koff, cmp_ctx->keys + y->koff, m);
	if (c)
		return c;
	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Every revision <= upto decided (above); FDN_ETIMEDOUT after deadline. */
static int settle_upto(fdn_segment *s, uint64_t upto, uint64_t deadline)
{
	uint64_t lo = upto > s->nchanges ? upto - s->nchanges + 1 : 1;
	uint64_t since = 0;
	for (uint64_t rev = lo; rev <= upto;) {
		struct fdn__chg_rec r;
		int st = fdn__chg_get(s, rev, &r);
		if (st == FDN__CHG_PENDING || st == FDN__CHG_UNCLAIMED) {
			uint64_t now = fdn__mono_ns();
			if (!since)
				since = now;
			if (st == FDN__CHG_UNCLAIMED && now - since > FDN__CHG_STEAL_NS &&
			    fdn__chg_steal(s, rev))
				continue;
			if (now > deadline)
				return FDN_ETIMEDOUT;
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
			continue;
		}
		since = 0;
		rev++;
	}
	uint32_t hwm = fdn__tslot_bound(s);
	for (uint32_t i = 0; i < hwm; i++) {
		for (;;) {
			uint64_t c = atomic_load_explicit(&s->tslots[i].chg, memory_order_acquire);
			if (c == 0 || c > upto || c < lo)
				break; /* c in the window: decided above */
			if (fdn__mono_ns() > deadline)
				return FDN_ETIMEDOUT;
			struct timespec ts = {0, 50000};
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;

int fdn_registry_snapshot(fdn_segment *s, const void *prefix, size_t plen, fdn_snapshot_cb cb,
			  void *arg, uint64_t *revision)
{
	if (!s || !cb || !revision)
		return FDN_EINVAL;
	int r = log_args(s, prefix, plen);
	if (r)
		return r;
	struct snap sn = {.s = s, .prefix = prefix, .plen = plen};
	uint64_t deadline = fdn__mono_ns() + 5000000000ull;
	for (int attempt = 0;; attempt++) {
		sn.n = 0;
		sn.klen_used = 0;
		sn.err = 0;
		uint64_t r0 = fdn__chg_head(s);
		if ((r = settle_upto(s, r0, deadline)))
			break;
		struct fdn__thread *t;
		if ((r = fdn__rcu_read_lock(s, &t)))
			break;
		r = fdn__ht_foreach(s, FDN__REG_TABLE, snap_walk_cb, &sn);
		fdn__rcu_read_unlock(t);
		if (sn.err || r < 0) {
			r = sn.err ? sn.err : r;
			break;
		}
		uint64_t r1 = fdn__chg_head(s);
		if ((r = settle_upto(s, r1, deadline)))
			break;
		bool gone = false;
		for (uint64_t rev = r0 + 1; rev <= r1 && !gone; rev++) {
			struct fdn__chg_rec rec;
			int st = fdn__chg_get(s, rev, &rec);
			if (st == FDN__CHG_GONE) {
				gone = true;
			} else if (st == FDN__CHG_DONE && under(&rec, prefix, plen)) {
				bool del = rec.kind == FDN_CHANGE_UNREGISTERED ||
					   rec.kind == FDN_CHANGE_REMOVED;
				if ((r = snap_add(&sn, rec.key, rec.key_len, (pid_t)rec.pid, rev,
						  del)))
					break;
			}
		}
		if (r)
			break;
		if (gone) {
			r = FDN_EOVERFLOW;
			if (attempt < 4)
				continue;
			break;
		}
		/* The last item of each key is its state at r1. */
		pthread_mutex_lock(&snap_lock);
		cmp_ctx = &sn;
		if (sn.n)
			qsort(sn.it, sn.n, sizeof(*sn.it), snap_cmp);
		pthread_mutex_unlock(&snap_lock);
		*revision = r1;
		int count = 0;
		r = 0;
		for (size_t i = 0; i < sn.n && r == 0; i++) {
			const struct snap_item *x = &sn.it[i];
			if (i + 1 < sn.n && x->klen == sn.it[i + 1].klen &&
			    memcmp(sn.keys + x->koff, sn.keys + sn.it[i + 1].koff, x->klen) == 0)
				continue; /* a later state of the same key follows */
			if (x->gone)
				continue;
			count++;
			r = cb(arg, sn.keys + x->koff, x->klen, x->pid);
		}
		if (r == 0)
			r = count;
		break;
	}
	free(sn.it);
	free(sn.keys);
	return r;
}
