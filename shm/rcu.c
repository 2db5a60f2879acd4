/*
 * rcu.c - read-copy-update across processes.
 *
 * liburcu's flavours keep their reader registry in process-private memory,
 * so a grace period there cannot see a reader in another process.  This is
 * the same idea with the registry in the segment.
 *
 * State.  header.gp_ctr is a 64-bit counter that only grows.  Each thread
 * has a reader slot whose `ctr` is 0 outside read-side sections and holds a
 * snapshot of gp_ctr inside one.
 *
 * Reader (read_lock):   ctr = gp_ctr; BARRIER; ...loads of the table
 * Reader (read_unlock): ctr = 0 (release: the section's loads are done)
 * Writer (synchronize): [its unlink CAS]; g = fetch_add(gp_ctr, 1) + 1
 *                       (seq_cst); MASTER BARRIER; for every slot: wait
 *                       while 0 < ctr < g.
 *
 * The barrier pair.  The reader's BARRIER must order its ctr store before
 * the loads of its section, and the writer's MASTER BARRIER its fetch_add
 * before its loads of the ctr words (the store-buffering pattern).  Two
 * ways, chosen per process, both always honoured by every writer:
 *   - heavy: the reader issues a full fence (seq_cst); the writer too.
 *   - light: the reader's process registered with
 *     membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) at attach, and
 *     its BARRIER is only a compiler barrier; the writer's MASTER BARRIER
 *     includes membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which makes
 *     every CPU running a thread of a registered process execute a full
 *     barrier before it returns (a thread not running passes one at its
 *     next context switch).  That barrier stands in for the reader's fence
 *     at whatever point the reader was -- the asymmetric scheme of liburcu's
 *     memb flavour, made cross-process by the GLOBAL variant.
 * A writer always calls membarrier(GLOBAL_EXPEDITED) when the kernel has
 * it, so light and heavy readers can share a segment.
 *
 * Why it is enough.  Let a writer unlink node N and then synchronize, and a
 * reader R hold a reference to N.  R loaded the link that led to N before
 * the unlink, so R's barrier (real, or imposed by the membarrier) precedes
 * the unlink, and R's ctr store precedes that barrier: the writer's load of
 * R's ctr, after its own barrier, sees R's store.  R's snapshot was read
 * before R's barrier, hence before the fetch_add: snapshot < g, and the
 * writer waits until R stores 0.  A reader whose ctr is 0 is outside any
 * section; a reader whose ctr >= g began after the fetch_add, hence after
 * the unlink, and cannot reach N.  Nested sections only count the
 * outermost.
 *
 * A reader killed inside a section leaves ctr != 0: grace periods wait until
 * the reclaimer clears the slot (reclaim.c), which it does as soon as the
 * death is known -- liveness comes from the kernel, not from a timeout.
 *
 * Deferred frees.  A thread that unlinks a node puts (gidx, generation) in
 * its slot's limbo (in the segment, so a reclaimer finds it if the thread
 * dies).  When limbo is full, or at detach, the thread synchronizes and
 * frees every entry; frees are CAS on the generation (alloc.c), so redoing a
 * free that a killed thread had already done changes nothing.
 */
#include "shm.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define FDN__MAX_HANDLES_PER_THREAD 8

static _Thread_local struct fdn__thread fdn__tls[FDN__MAX_HANDLES_PER_THREAD];
_Thread_local struct fdn__thread *fdn__tls_last;
/* How long this thread's deferred-free flushes may wait for a grace period
 * (< 0: as long as needed).  The reaper bounds it: a process that died in a
 * read-side section blocks grace periods until the reaper itself reclaims
 * it, so the reaper must never wait for one unboundedly. */
static _Thread_local int64_t fdn__flush_timeout_ns = -1;

void fdn__rcu_set_flush_timeout(int64_t ns)
{
	fdn__flush_timeout_ns = ns;
}
_Atomic bool fdn__rcu_light;
static struct fdn__slotrec *fdn__slotrecs;
static pthread_mutex_t fdn__handles_lock = PTHREAD_MUTEX_INITIALIZER;

/* 1: the kernel has MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0: not, -1: unknown. */
static _Atomic int fdn__mb_global = -1;

static int fdn__membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

static bool fdn__mb_global_ok(void)
{
	int v = atomic_load_explicit(&fdn__mb_global, memory_order_relaxed);
	if (v < 0) {
		int q = fdn__membarrier(MEMBARRIER_CMD_QUERY);
		v = q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
		    (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
		atomic_store_explicit(&fdn__mb_global, v, memory_order_relaxed);
	}
	return v == 1;
}

void fdn__rcu_atfork_child(void)
{
	/* The child's copy of the forking thread's slot cache names the
	 * parent's reader slots: forget it (records leak, by design: they
	 * describe the parent's state), and start with a fresh lock. */
	memset(fdn__tls, 0, sizeof(fdn__tls));
	fdn__tls_last = NULL;
	fdn__slotrecs = NULL;
	pthread_mutex_init(&fdn__handles_lock, NULL);
	atomic_store(&fdn__rcu_light, false);
}

void fdn__rcu_register(void)
{
	bool ok =
	    fdn__mb_global_ok() && fdn__membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
	atomic_store(&fdn__rcu_light, ok);
}

/* The writer's side of the barrier pair (see top).  If the kernel offers
 * global membarriers but the call fails (a seccomp filter, say), light
 * readers cannot be excluded: the grace period fails and nothing is freed. */
static int fdn__master_barrier(void)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (fdn__mb_global_ok() && fdn__membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0)
		return -errno;
	return 0;
}

/* fdn__handles_lock guards fdn__slotrecs: the slots claimed by this
 * process's threads, so detach and thread exit find them. Process-private. */
static pthread_key_t fdn__exit_key;
static pthread_once_t fdn__exit_once = PTHREAD_ONCE_INIT;

static struct fdn_shm_tslot *fdn__slot_forget(struct fdn__thread *t, struct fdn_shm_trace **tr);
static void fdn__slot_give_back(fdn_segment *s, struct fdn_shm_tslot *ts, struct fdn_shm_trace *tr);

static void fdn__thread_exit(void *unused)
{
	(void)unused;
	fdn_segment *segs[FDN__MAX_HANDLES_PER_THREAD];
	struct fdn_shm_tslot *slots[FDN__MAX_HANDLES_PER_THREAD];
	struct fdn_shm_trace *traces[FDN__MAX_HANDLES_PER_THREAD];
	int n = 0;
	pthread_mutex_lock(&fdn__handles_lock);
	for (int i = 0; i < FDN__MAX_HANDLES_PER_THREAD; i++) {
		struct fdn__thread *t = &fdn__tls[i];
		/* A handle detached before this thread exited has already
		 * released the slot and cleared seg_id (fdn__threads_release). */
		if (t->seg && t->seg_id && t->seg->id == t->seg_id) {
			segs[n] = t->seg;
			slots[n] = fdn__slot_forget(t, &traces[n]);
			n++;
		}
		memset(t, 0, sizeof(*t));
	}
	fdn__tls_last = NULL;
	pthread_mutex_unlock(&fdn__handles_lock);
	/* Grace periods may wait long: never under the lock. */
	for (int i = 0; i < n; i++)
		fdn__slot_give_back(segs[i], slots[i], traces[i]);
}

static void fdn__exit_key_make(void)
{
	pthread_key_create(&fdn__exit_key, fdn__thread_exit);
}

/* Every claimed slot is also listed here so detach can release the slots of
 * threads other than the caller. */
struct fdn__slotrec {
	struct fdn__slotrec *next;
	fdn_segment *seg;
	uint64_t seg_id;
	struct fdn__thread *t;
};

static int fdn__slot_claim(fdn_segment *s, struct fdn__thread *t)
{
	uint32_t start = (uint32_t)(gettid() * 2654435761u) % s->nthreads;
	uint64_t want = FDN_TSLOT_WORD(FDN_TSLOT_USED, s->proc_idx);
	for (uint32_t k = 0; k < s->nthreads; k++) {
		uint32_t i = (start + k) % s->nthreads;
		struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t expect = 0;
		if (atomic_load_explicit(&ts->state, memory_order_relaxed) != 0)
			continue;
		/* A free slot that still holds a section or deferred frees is
		 * damaged (the checker reports it): never use it. */
		if (atomic_load_explicit(&ts->ctr, memory_order_relaxed) != 0 ||
		    atomic_load_explicit(&ts->limbo_count, memory_order_relaxed) != 0)
			continue;
		if (!atomic_compare_exchange_strong(&ts->state, &expect, want))
			continue;
		/* A FREE slot has ctr 0, empty limbo and no op pending
		 * (reclaim.c and fdn__slot_release establish it). */
		atomic_store_explicit(&ts->node, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->old, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->tid, (uint32_t)gettid(), memory_order_relaxed);
		memset(t, 0, sizeof(*t));
		t->seg = s;
		t->seg_id = s->id;
		t->slot = i;
		t->ts = ts;
		return 0;
	}
	return FDN_ENOSPACE;
}

int fdn__thread_get_slow(fdn_segment *s, struct fdn__thread **out)
{
	struct fdn__thread *t;
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (s->readonly)
		return FDN_ERDONLY;
	struct fdn__thread *free_t = NULL;
	for (int i = 0; i < FDN__MAX_HANDLES_PER_THREAD; i++) {
		t = &fdn__tls[i];
		if (t->seg == s && t->seg_id == s->id) {
			fdn__tls_last = t;
			*out = t;
			return 0;
		}
		if (!free_t && t->seg_id == 0)
			free_t = t;
	}
	if (!free_t)
		return FDN_ENOSPACE;
	pthread_once(&fdn__exit_once, fdn__exit_key_make);
	struct fdn__slotrec *rec = malloc(sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	pthread_mutex_lock(&fdn__handles_lock);
	r = fdn__slot_claim(s, free_t);
	if (r == 0) {
		rec->seg = s;
		rec->seg_id = s->id;
		rec->t = free_t;
		rec->next = fdn__slotrecs;
		fdn__slotrecs = rec;
	}
	pthread_mutex_unlock(&fdn__handles_lock);
	if (r) {
		free(rec);
		return r;
	}
	pthread_setspecific(fdn__exit_key, (void *)1);
	fdn__tls_last = free_t;
	*out = free_t;
	return 0;
}

static uint64_t fdn__mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Wait while slot i is in a section that began before grace period g. */
static int fdn__wait_slot(fdn_segment *s, uint32_t i, uint64_t g, uint64_t deadline)
{
	_Atomic uint64_t *ctr = &s->tslots[i].ctr;
	/* A free slot has no reader (a thread claims its slot by a seq_cst CAS
	 * before it reads gp_ctr, so a claim we do not see yet belongs to a
	 * reader that starts after g).  A free slot with ctr != 0 is damage:
	 * the checker reports it, grace periods do not wait on it. */
	if (atomic_load_explicit(&s->tslots[i].state, memory_order_seq_cst) == 0)
		return 0;
	for (unsigned spin = 0;; spin++) {
		uint64_t c = atomic_load_explicit(ctr, memory_order_acquire);
		if (c == 0 || c >= g)
			return 0;
		if (spin < 64) {
			__builtin_ia32_pause();
			continue;
		}
		/* The deadline is looked at before every yield as well as
		 * every sleep.  A yield is not short: with other threads
		 * runnable on this CPU it gives away a whole scheduler slice
		 * (milliseconds), so 192 of them unchecked overran a 50 ms
		 * bound by 1.5 s on a loaded machine -- and the reaper, whose
		 * waits are bounded so that a death it has not seen yet
		 * cannot hold it, sat that long before ending the next dead
		 * reader's section.  A clock read (vDSO) per yield is noise
		 * next to the yield itself. */
		if (deadline && fdn__mono_ns() >= deadline)
			return FDN_ETIMEDOUT;
		if (spin < 256) {
			sched_yield();
		} else {
			struct timespec d = {0, 20000};
			nanosleep(&d, NULL);
		}
	}
}

/* The grace period proper; the caller is outside any read-side section. */
static int fdn__grace_period(fdn_segment *s, int64_t timeout_ns)
{
	uint64_t deadline = 0;
	if (timeout_ns == 0)
		deadline = 1; /* already past: look once */
	else if (timeout_ns > 0)
		deadline = fdn__mono_ns() + (uint64_t)timeout_ns;
	uint64_t g = atomic_fetch_add_explicit(&s->hdr->gp_ctr, 1, memory_order_seq_cst) + 1;
	int mr = fdn__master_barrier(); /* pairs with every reader's BARRIER (see top) */
	if (mr)
		return mr;
	for (uint32_t i = 0; i < s->nthreads; i++) {
		int r = fdn__wait_slot(s, i, g, deadline);
		if (r)
			return r;
	}
	return 0;
}

/* Is this thread inside a read-side section of segment s, through this
 * handle or another handle of the same segment (which would make a grace
 * period wait for ourselves)? */
static bool fdn__in_section_of(const fdn_segment *s)
{
	for (int i = 0; i < FDN__MAX_HANDLES_PER_THREAD; i++) {
		const struct fdn__thread *t = &fdn__tls[i];
		if (t->seg_id && t->nest && t->seg->dev == s->dev && t->seg->ino == s->ino)
			return true;
	}
	return false;
}

int fdn__rcu_synchronize(fdn_segment *s, int64_t timeout_ns)
{
	/* Needs no reader slot of its own: a reclaimer can run when every
	 * slot is held by dead threads. */
	int r = fdn__seg_usable(s);
	if (r)
		return r;
	if (s->readonly)
		return FDN_ERDONLY;
	if (fdn__in_section_of(s))
		return FDN_EINREAD;
	return fdn__grace_period(s, timeout_ns);
}

void fdn__limbo_add(struct fdn__thread *t, uint32_t gidx, uint32_t gen)
{
	struct fdn_shm_tslot *ts = t->ts;
	uint64_t n = atomic_load_explicit(&ts->limbo_count, memory_order_relaxed);
	/* Callers flush before the limbo can overflow (an op starts with a
	 * non-full limbo and retires at most one node), so n < FDN_LIMBO_MAX;
	 * only a damaged slot breaks that, and then the block is leaked rather
	 * than written out of bounds. */
	if (n >= FDN_LIMBO_MAX)
		return;
	atomic_store_explicit(&ts->limbo[n], (uint64_t)gidx << 32 | gen, memory_order_relaxed);
	atomic_store_explicit(&ts->limbo_count, n + 1, memory_order_release);
}

void fdn__limbo_free_all(fdn_segment *s, struct fdn_shm_tslot *ts)
{
	uint64_t n = atomic_load_explicit(&ts->limbo_count, memory_order_acquire);
	if (n > FDN_LIMBO_MAX)
		n = FDN_LIMBO_MAX;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t e = atomic_load_explicit(&ts->limbo[i], memory_order_relaxed);
		/* Generation-checked: a second free of the same entry is a no-op. */
		fdn__free(s, (uint32_t)(e >> 32), (uint32_t)e);
	}
	atomic_store_explicit(&ts->limbo_count, 0, memory_order_release);
}

int fdn__limbo_flush(struct fdn__thread *t)
{
	if (atomic_load_explicit(&t->ts->limbo_count, memory_order_relaxed) == 0)
		return 0;
	if (fdn__in_section_of(t->seg))
		return FDN_EINREAD;
	int r = fdn__grace_period(t->seg, fdn__flush_timeout_ns);
	if (r)
		return r;
	fdn__limbo_free_all(t->seg, t->ts);
	return 0;
}

/* Unlist t's slot (fdn__handles_lock held); returns the shared slot. */
static struct fdn_shm_tslot *fdn__slot_forget(struct fdn__thread *t, struct fdn_shm_trace **tr)
{
	struct fdn_shm_tslot *ts = t->ts;
	*tr = t->trace;
	t->trace = NULL;
	for (struct fdn__slotrec **pp = &fdn__slotrecs; *pp; pp = &(*pp)->next) {
		if ((*pp)->t == t && (*pp)->seg_id == t->seg_id) {
			struct fdn__slotrec *dead = *pp;
			*pp = dead->next;
			free(dead);
			break;
		}
	}
	t->seg_id = 0;
	t->seg = NULL;
	t->nest = 0;
	if (fdn__tls_last == t)
		fdn__tls_last = NULL;
	return ts;
}

/* End the slot's section, free its limbo after a grace period, free it.
 * Not under fdn__handles_lock. */
static void fdn__slot_give_back(fdn_segment *s, struct fdn_shm_tslot *ts, struct fdn_shm_trace *tr)
{
	if (fdn__seg_usable(s) != 0 || s->readonly)
		return;
	if (tr)
		fdn__trace_free(tr, s->proc_word);
	/* The thread is exiting or the handle detaching: no section of it
	 * can still be open by contract. */
	atomic_store_explicit(&ts->ctr, 0, memory_order_release);
	if (atomic_load(&ts->limbo_count) != 0 && fdn__grace_period(s, -1) == 0)
		fdn__limbo_free_all(s, ts);
	uint64_t w = FDN_TSLOT_WORD(FDN_TSLOT_USED, s->proc_idx);
	if (atomic_load(&ts->limbo_count) == 0)
		atomic_compare_exchange_strong(&ts->state, &w, 0);
}

void fdn__threads_release(fdn_segment *s)
{
	for (;;) {
		struct fdn_shm_tslot *ts = NULL;
		struct fdn_shm_trace *tr = NULL;
		pthread_mutex_lock(&fdn__handles_lock);
		for (struct fdn__slotrec *rec = fdn__slotrecs; rec; rec = rec->next) {
			if (rec->seg == s && rec->seg_id == s->id) {
				ts = fdn__slot_forget(rec->t, &tr); /* frees rec */
				break;
			}
		}
		pthread_mutex_unlock(&fdn__handles_lock);
		if (!ts)
			return;
		fdn__slot_give_back(s, ts, tr);
	}
}

/* ---- trace slots ------------------------------------------------------------
 * A thread's span stack and error context (layout.h, "spans and error
 * context").  Claimed on first use like the reader slot, given back with it
 * (thread exit, detach); the reaper frees those of a dead process. */

void fdn__trace_write_begin(struct fdn_shm_trace *tr)
{
	uint64_t q = atomic_load_explicit(&tr->seq, memory_order_relaxed);
	atomic_store_explicit(&tr->seq, q | 1, memory_order_relaxed);
	/* The odd value is visible before any of the writes that follow. */
	atomic_thread_fence(memory_order_release);
}

void fdn__trace_write_end(struct fdn_shm_trace *tr)
{
	uint64_t q = atomic_load_explicit(&tr->seq, memory_order_relaxed);
	/* Release: a reader that sees the even value sees every write. */
	atomic_store_explicit(&tr->seq, (q | 1) + 1, memory_order_release);
}

static void fdn__trace_reset(struct fdn_shm_trace *tr)
{
	tr->depth = 0;
	tr->ncrumbs = 0;
	tr->ctx_len = 0;
	tr->corr_len = tr->op_len = 0;
	tr->corr[0] = tr->op[0] = 0;
	tr->flags = 0;
}

bool fdn__trace_owned_by(uint64_t owner, uint64_t word)
{
	const uint64_t who = ~(3ull << 62); /* pid and identity, not state */
	return owner != 0 && (owner & who) == (word & who);
}

void fdn__trace_free(struct fdn_shm_trace *tr, uint64_t word)
{
	uint64_t w = atomic_load_explicit(&tr->owner, memory_order_acquire);
	if (!fdn__trace_owned_by(w, word))
		return;
	/* Empty it first, so a slot is never free with content.  The caller
	 * is the owning thread or the reaper after the owner died: either way
	 * the only writer. */
	fdn__trace_write_begin(tr);
	fdn__trace_reset(tr);
	/* pid 0 marks a slot claimed but not yet filled in: readers skip it. */
	tr->pid = tr->tid = 0;
	tr->proc_idx = 0;
	fdn__trace_write_end(tr);
	atomic_compare_exchange_strong_explicit(&tr->owner, &w, 0, memory_order_release,
						memory_order_relaxed);
}

int fdn__thread_trace(fdn_segment *s, struct fdn__thread *t, struct fdn_shm_trace **out)
{
	if (t->trace) {
		*out = t->trace;
		return 0;
	}
	uint32_t n = s->ntrace;
	uint32_t start = atomic_load_explicit(&s->hdr->trace_hint, memory_order_relaxed) % n;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = (start + k) % n;
		struct fdn_shm_trace *tr = &s->trace[i];
		uint64_t expect = 0;
		if (atomic_load_explicit(&tr->owner, memory_order_relaxed) != 0)
			continue;
		/* One CAS claims it for this process; the slot's other fields
		 * are ours from here on (only this thread writes them). */
		if (!atomic_compare_exchange_strong(&tr->owner, &expect, s->proc_word))
			continue;
		atomic_store_explicit(&s->hdr->trace_hint, (i + 1) % n, memory_order_relaxed);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		fdn__trace_write_begin(tr);
		fdn__trace_reset(tr);
		tr->proc_idx = s->proc_idx;
		tr->pid = FDN_PROC_PID(s->proc_word);
		tr->tid = (uint32_t)gettid();
		tr->claimed_real = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		tr->died_real = tr->died_mono = 0;
		fdn__trace_write_end(tr);
		t->trace = tr;
		*out = tr;
		return 0;
	}
	return FDN_ENOSPACE;
}
