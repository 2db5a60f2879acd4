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
 * Reader (read_lock):   ctr = gp_ctr (acquire); BARRIER; ...loads of the table
 * Reader (read_unlock): ctr = 0 (release: the section's loads are done)
 * Grace period g (anyone, fdn__gp_poll): g = fetch_add(gp_ctr, 1) + 1
 *                       (seq_cst); MASTER BARRIER; for every slot in use:
 *                       while 0 < ctr < g, spin -- for a bounded time only;
 *                       when every slot passed, gp_done = max(gp_done, g).
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
 * A process that may issue membarrier(GLOBAL_EXPEDITED) always does, so
 * light and heavy readers can share a segment.  One that may not (a
 * seccomp filter: ENOSYS or EPERM, whatever its own MEMBARRIER_CMD_QUERY
 * said) cannot fence light readers, and a light reader's ctr store may
 * still sit in its store buffer: such a process completes no grace period
 * while any reader slot in use is marked light (FDN_TSLOT_LIGHT, set by the
 * claim CAS itself, so no section of the slot can precede the mark).  It
 * leaves the grace period to a process that can (the reaper, or any other
 * writer) and frees its blocks once gp_done says one completed.
 *
 * Why it is enough.  Let a writer unlink node N and then synchronize, and a
 * reader R hold a reference to N.  R loaded the link that led to N before
 * the unlink, so R's barrier (real, or imposed by the membarrier) precedes
 * the unlink, and R's ctr store precedes that barrier: the writer's load of
 * R's ctr, after its own barrier, sees R's store.  R's snapshot was read
 * before R's barrier, hence before the fetch_add: snapshot < g, and the
 * writer waits until R stores 0.  A reader whose ctr is 0 is outside any
 * section; a reader whose ctr >= g read g with an acquire load, and the
 * fetch_add that made g (a seq_cst RMW, so a release) follows the unlink:
 * every load of R's section follows the unlink, and R cannot reach N.  (A
 * relaxed load would suffice on x86, which never reorders two loads, but
 * not on arm64, where the table load could be satisfied before the gp_ctr
 * load -- and the membarrier cannot help when R's whole section ends
 * before its IPI arrives.)  Nested sections only count the outermost; one
 * opened by a signal handler that interrupted the outermost lock stores
 * ctr itself if it finds it still 0 (shm.h).
 *
 * A reader killed inside a section leaves ctr != 0: grace periods wait until
 * the reclaimer clears the slot (reclaim.c), which it does as soon as the
 * death is known -- liveness comes from the kernel, not from a timeout.
 *
 * Deferred frees, shared grace periods.  A thread that unlinks a node puts
 * (gidx, generation) in its slot's limbo ring (in the segment, so a
 * reclaimer finds it if the thread dies) with a stamp e: gp_ctr read after
 * the unlink.  The block may be freed once gp_done > e: a grace period g > e
 * began with a fetch_add that read a value >= e, so after our load of e,
 * hence after the unlink; every section that could reach the node began
 * before that and has ended.  One completed grace period thus frees every
 * block retired before it by any thread of any process -- no writer runs
 * one of its own per batch.  Grace periods are driven in the background
 * (the reaper polls while blocks wait) and by writers that help (a
 * writer's zero-wait help starts one, with its membarrier, at most once a
 * millisecond among all processes: fdn__gp_help): a poll never waits
 * longer than its budget, so a reader stopped in a section (SIGSTOP, a
 * debugger) costs a writer nothing until its slot holds its spill bound
 * (full rings go to heap chunks: limbo.c, "Spill"); then its next
 * retiring operation waits at most the flush bound and fails FDN_EBUSY,
 * changing nothing (one that retires several blocks, fdn_unregister,
 * makes room for all of them first), and the ones after it fail at once
 * until a grace period completes.  Frees are CAS on the generation
 * (alloc.c), so redoing a free that a killed thread had already done
 * changes nothing.
 *
 * Fenced grace periods.  A poll that cannot finish its grace period g (a
 * reader preempted or stopped inside a section started before g) returns;
 * the next poll that needs no more than g does not start another one with
 * another membarrier -- an IPI to every CPU running a registered process,
 * per retiring operation while the reader stays in.  header.gp_fenced
 * records the newest g whose master barrier was issued (stored, release,
 * after it returned); a poller that loads f > need (acquire) issues a
 * full fence of its own and checks the slots against f as if it had
 * started it.  Enough: the loads of its check follow f's barrier (the
 * acquire of gp_fenced), and that barrier did what the check relies on --
 * a light reader's ctr store before the membarrier is visible to every
 * load after it, and a heavy reader's fence precedes f's fence in the
 * total order of seq_cst fences or follows it (then the reader's section
 * cannot reach a node unlinked before f began), the same argument as for
 * the poller that issued it, with our fence after f's.  A slot claimed
 * after our state load belongs to a reader whose section begins after f:
 * our load follows f's fetch_add.
 *
 * No light reader.  Only light readers need the membarrier: a heavy one
 * fences itself.  So after the fetch_add that made g the poller loads
 * every slot's state (seq_cst); when none in use is light, its own slot
 * apart (the poller is outside any section of it: its own program order
 * shows its ctr at 0), a seq_cst fence is the whole master barrier
 * (fdn__master_barrier) and g counts as fenced.  A slot marked light
 * after that load was claimed by a seq_cst CAS that follows it, hence
 * follows the fetch_add: its reader's sections begin after g (the
 * argument for a slot claimed after the scan, in fdn__gp_poll).  A
 * poller finishing g later through gp_fenced sees the starter's own ctr
 * at 0 or past g: its 0 was stored before it released gp_fenced.  The
 * reaper's slots are heavy (fdn__rcu_heavy), so a writer beside no
 * reader but the reaper issues no membarrier -- a system call that
 * interrupts every CPU running a registered process, of any segment (a
 * lone writer of register+unregister pairs did 9 % more pairs).
 *
 * A stopped reader pins every block retired after it began its section:
 * each writer thread's ring spills into heap chunks behind it (limbo.c,
 * "Spill") up to its slot's bound, a sixteenth of the heap's granules in
 * entries (no spill in a heap under 16 MiB: FDN_LIMBO_MAX blocks).
 * (Interval-based reclamation would bound it by what existed when the
 * reader stopped instead, at the cost of an era check after every link a
 * reader loads -- 2-7 % of a raw lookup, measured on a test program --
 * and of a birth era in every block: 8 bytes the 24-byte node header has
 * no room for, which take the registry's 124-byte entry into the 256-byte
 * class (323.9 B per entry against 179.9, docs/benchmarks.md).  Not
 * chosen: the bound and FDN_EBUSY are documented instead.)
 *
 * Memory orders on a weak machine (arm64).  The acquires, releases and
 * seq_cst accesses above carry the argument; each relaxed access in this
 * file and in limbo.c is one of six kinds, none of which another thread
 * relies on for load order:
 *   - process-private caches (fdn__mb_global, fdn__rcu_light): any value
 *     read is a valid answer (a repeated kernel query; light is set at
 *     attach, before the handle reaches another thread);
 *   - a slot's own fields read back by the one thread that writes them
 *     (limbo_tail in fdn__limbo_add, limbo_head in the reap, a trace slot's
 *     seq): coherence gives a thread its own last store, and the one other
 *     writer, a reclaimer, starts after the owner's death (known from the
 *     kernel, after which all of its stores are visible) or after the
 *     slot's RETIRED state, stored by a seq_cst CAS after the owner's last
 *     write and loaded by the reclaimer with acquire;
 *   - fields published by a later release that their readers acquire
 *     first: limbo[k] and stamp[k] by limbo_tail; a slot's node, old and
 *     tid (and ht.c's op record) by the op's first shared write, a seq_cst
 *     CAS; a trace slot's odd seq by the release fence after it (the
 *     copying reader's acquire fence pairs with it, lib/trace.c);
 *   - hints a CAS re-checks (a slot's state before its claim CAS, a trace
 *     slot's owner, trace_hint, the failure values of the max-CAS loops on
 *     gp_fenced and gp_done): a stale value costs a failed CAS or a slot
 *     skipped, never a wrong decision;
 *   - damage checks on a free slot before its claim (ctr, the limbo
 *     count): a stale value can only make a good slot be skipped;
 *   - the help's rate limits (fdn__gp_help_last, header.gp_help_ns,
 *     fdn_segment.no_light_seen): a stale value starts a grace period
 *     more or fewer, and every grace period is correct whoever starts it
 *     and whenever (the membarrier itself is decided by
 *     fdn__master_barrier's own look at the slots, never by the hint).
 * The gp_ctr load after gp_fenced's acquire in fdn__gp_poll reads at least
 * f: the fetch_add that made f happens before the store of f we read.
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

static _Atomic bool fdn__rcu_heavy_wanted;

void fdn__rcu_heavy(void)
{
	atomic_store(&fdn__rcu_heavy_wanted, true);
}

void fdn__rcu_register(void)
{
	bool ok = !atomic_load(&fdn__rcu_heavy_wanted) && fdn__mb_global_ok() &&
		  fdn__membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
	atomic_store(&fdn__rcu_light, ok);
}

/* Is a reader slot in use marked light, other than the calling thread's own
 * through s?  That one needs no barrier: the poller is outside any section
 * of it (nest 0), so its own program order shows its ctr at 0. */
static bool fdn__light_readers(fdn_segment *s)
{
	const struct fdn_shm_tslot *self = NULL;
	for (int i = 0; i < FDN__MAX_HANDLES_PER_THREAD; i++) {
		const struct fdn__thread *t = &fdn__tls[i];
		if (t->seg == s && t->seg_id == s->id && t->ts && t->nest == 0)
			self = t->ts;
	}
	uint32_t hwm = fdn__tslot_bound(s);
	for (uint32_t i = 0; i < hwm; i++) {
		uint64_t st = atomic_load_explicit(&s->tslots[i].state, memory_order_seq_cst);
		if ((st & FDN_TSLOT_LIGHT) && FDN_TSLOT_KIND(st) == FDN_TSLOT_USED &&
		    &s->tslots[i] != self)
			return true;
	}
	return false;
}

/* The grace period's side of the barrier pair (see top), after the
 * fetch_add that made g.  True when light readers are fenced too: the
 * membarrier was issued, or no slot in use was light ("No light reader"
 * at the top).  False when this process may not issue it (a seccomp
 * filter) or the kernel lacks it (then no process can be light either,
 * and slots are checked as heavy). */
static bool fdn__master_barrier(fdn_segment *s)
{
	atomic_thread_fence(memory_order_seq_cst);
	bool light = fdn__light_readers(s);
	atomic_store_explicit(&s->no_light_seen, !light, memory_order_relaxed);
	if (!light)
		return true;
	return fdn__membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

/* fdn__handles_lock guards fdn__slotrecs: the slots claimed by this
 * process's threads, so detach and thread exit find them. Process-private. */
static pthread_key_t fdn__exit_key;
static pthread_once_t fdn__exit_once = PTHREAD_ONCE_INIT;

static struct fdn_shm_tslot *fdn__slot_forget(struct fdn__thread *t, struct fdn_shm_trace **tr,
					      uint64_t *state);
static void fdn__slot_give_back(fdn_segment *s, struct fdn_shm_tslot *ts, uint64_t state,
				struct fdn_shm_trace *tr);

static void fdn__thread_exit(void *unused)
{
	(void)unused;
	fdn_segment *segs[FDN__MAX_HANDLES_PER_THREAD];
	struct fdn_shm_tslot *slots[FDN__MAX_HANDLES_PER_THREAD];
	struct fdn_shm_trace *traces[FDN__MAX_HANDLES_PER_THREAD];
	uint64_t states[FDN__MAX_HANDLES_PER_THREAD];
	int n = 0;
	pthread_mutex_lock(&fdn__handles_lock);
	for (int i = 0; i < FDN__MAX_HANDLES_PER_THREAD; i++) {
		struct fdn__thread *t = &fdn__tls[i];
		/* A handle detached before this thread exited has already
		 * released the slot and cleared seg_id (fdn__threads_release). */
		if (t->seg && t->seg_id && t->seg->id == t->seg_id) {
			segs[n] = t->seg;
			/* Counted under the lock that unlists the slot: a
			 * detach that no longer finds it here finds the count
			 * instead, and waits before it unmaps. */
			atomic_fetch_add_explicit(&t->seg->givebacks, 1, memory_order_relaxed);
			slots[n] = fdn__slot_forget(t, &traces[n], &states[n]);
			n++;
		}
		memset(t, 0, sizeof(*t));
	}
	fdn__tls_last = NULL;
	pthread_mutex_unlock(&fdn__handles_lock);
	/* Grace periods may wait long: never under the lock.  The release
	 * decrement orders our last touch of the handle and its mapping
	 * before the detach that reads 0 (acquire) and frees them. */
	for (int i = 0; i < n; i++) {
		fdn__slot_give_back(segs[i], slots[i], states[i], traces[i]);
		atomic_fetch_sub_explicit(&segs[i]->givebacks, 1, memory_order_release);
	}
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
	/* The lowest free slot: grace periods look at [0, tslot_hwm) only. */
	uint64_t want =
	    FDN_TSLOT_WORD(FDN_TSLOT_USED, s->proc_idx) |
	    (atomic_load_explicit(&fdn__rcu_light, memory_order_relaxed) ? FDN_TSLOT_LIGHT : 0);
	for (uint32_t i = 0; i < s->nthreads; i++) {
		struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t expect = 0;
		if (atomic_load_explicit(&ts->state, memory_order_relaxed) != 0)
			continue;
		/* A free slot that still holds a section or deferred frees is
		 * damaged (the checker reports it): never use it. */
		if (atomic_load_explicit(&ts->ctr, memory_order_relaxed) != 0 ||
		    fdn__limbo_waiting(ts) != 0 ||
		    atomic_load_explicit(&ts->spill, memory_order_relaxed) != 0)
			continue;
		/* The high-water mark covers the slot before it can be in use. */
		uint32_t hwm = atomic_load(&s->hdr->tslot_hwm);
		while (hwm < i + 1 &&
		       !atomic_compare_exchange_weak(&s->hdr->tslot_hwm, &hwm, i + 1))
			;
		if (!atomic_compare_exchange_strong(&ts->state, &expect, want))
			continue;
		/* A FREE slot has ctr 0, empty limbo and no op pending
		 * (reclaim.c and fdn__slot_give_back establish it). */
		atomic_store_explicit(&ts->node, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->old, 0, memory_order_relaxed);
		atomic_store_explicit(&ts->tid, (uint32_t)gettid(), memory_order_relaxed);
		memset(t, 0, sizeof(*t));
		t->seg = s;
		t->seg_id = s->id;
		t->slot = i;
		t->ts = ts;
		t->state = want;
		return 0;
	}
	return FDN_ENOSPACE;
}

struct fdn__thread *fdn__thread_slow(fdn_segment *s, int *err)
{
	struct fdn__thread *t = NULL;
	*err = fdn__thread_get_slow(s, &t);
	return *err ? NULL : t;
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

/* Wait while slot i is in a section that began before grace period g, at
 * most until deadline (0: no limit). */
static int fdn__wait_slot(fdn_segment *s, uint32_t i, uint64_t g, uint64_t deadline)
{
	_Atomic uint64_t *ctr = &s->tslots[i].ctr;
	for (unsigned spin = 0;; spin++) {
		uint64_t c = atomic_load_explicit(ctr, memory_order_acquire);
		if (c == 0 || c >= g)
			return 0;
		if (deadline == 1)
			return FDN_EBUSY; /* a zero-wait look: never spin */
		if (spin < 64) {
			fdn__cpu_relax();
			continue;
		}
		/* The deadline is looked at before every yield as well as
		 * every sleep: a yield gives away a whole scheduler slice
		 * (milliseconds) when other threads are runnable. */
		if (deadline && fdn__mono_ns() >= deadline)
			return FDN_EBUSY;
		if (spin < 256) {
			sched_yield();
		} else {
			struct timespec d = {0, 20000};
			nanosleep(&d, NULL);
		}
	}
}

/* When this process's help last started a grace period (CLOCK_MONOTONIC).
 * Relaxed, loaded and then stored: two threads may both find the interval
 * passed and each start one.  Only the rate depends on it, never a grace
 * period's correctness. */
static _Atomic uint64_t fdn__gp_help_last;

/*
 * May a writer's help start a grace period now?  Unlimited, a writer beside
 * a reader that is nearly always inside a section started one every few
 * operations, as soon as the last completed: 40 000 membarriers a second
 * from one writer doing 200 000 register+unregister pairs a second, and a
 * reader on the other CPU lost half its lookups to the IPIs (a process
 * issuing only membarriers at that rate cost it as much).  So while a
 * light reader's slot is in use (without one a grace period issues no
 * membarrier, and the help starts one whenever it needs one, with no
 * clock read), the help of all writers of all processes starts at most
 * one per FDN_GP_HELP_NS: header.gp_help_ns holds when the last one was
 * started, and a writer starts one only if it moves that word on by CAS
 * from a value at least FDN_GP_HELP_NS old (a writer that loses the CAS
 * leaves it to the winner, whose grace period covers its blocks too: they
 * were retired before it began).  Relaxed throughout: only the rate
 * depends on these words.  One CAS wins per value of the word; a winner
 * preempted between its clock read and its CAS stores an old time, and
 * the next may start one soon after -- a membarrier more, nothing else.
 * The process's own limit comes first: CLOCK_MONOTONIC differs between time
 * namespaces, and a word stored by a process whose clock is ahead of ours
 * reads as a time in our future -- taken as "passed", or one process ahead
 * by an hour would silence the others' help for an hour.  Then two
 * processes of different clocks both pass each other's words, and each is
 * held to once per FDN_GP_HELP_NS by its own limit (the bound of a 6.0
 * build, which ignores the shared word).  Blocks whose help is refused
 * wait in their ring and spill chunks (limbo.c); a full ring that cannot
 * spill still polls at once (fdn__limbo_room, through fdn__gp_poll).
 */
static bool gp_help_turn(fdn_segment *s)
{
	/* No IPI to limit ("No light reader" at the top), as the last grace
	 * period this handle started found: a hint, not a scan of the slots
	 * per help (each help would load every light reader's slot line,
	 * which its reader writes at every section: a writer beside one light
	 * reader made 1.17 x the pairs with the hint, test_reclaim's
	 * gp_rate_run alone, 3 alternated runs).  A light reader come
	 * since makes the next grace period issue the membarrier
	 * (fdn__master_barrier looks again) and limits the help from then. */
	if (atomic_load_explicit(&s->no_light_seen, memory_order_relaxed))
		return true;
	uint64_t now = fdn__mono_ns();
	if (now - atomic_load_explicit(&fdn__gp_help_last, memory_order_relaxed) < FDN_GP_HELP_NS)
		return false;
	uint64_t last = atomic_load_explicit(&s->hdr->gp_help_ns, memory_order_relaxed);
	int64_t since = (int64_t)(now - last);
	if (since >= 0 && since < (int64_t)FDN_GP_HELP_NS)
		return false;
	if (!atomic_compare_exchange_strong_explicit(&s->hdr->gp_help_ns, &last, now,
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	atomic_store_explicit(&fdn__gp_help_last, now, memory_order_relaxed);
	return true;
}

/* fdn__gp_poll, and fdn__gp_help when help: a new grace period only when
 * gp_help_turn allows. */
static int gp_poll(fdn_segment *s, int64_t budget_ns, uint64_t need, bool help)
{
	if (atomic_load_explicit(&s->hdr->gp_done, memory_order_acquire) > need)
		return 0; /* someone's grace period already covers it */
	/* 1: already past, look once (a writer's help: no clock read). */
	uint64_t deadline = budget_ns < 0    ? 0
			    : budget_ns == 0 ? 1
					     : fdn__mono_ns() + (uint64_t)budget_ns;
	uint64_t g;
	bool fenced;
	uint64_t f = atomic_load_explicit(&s->hdr->gp_fenced, memory_order_acquire);
	if (f > need && f <= atomic_load_explicit(&s->hdr->gp_ctr, memory_order_relaxed)) {
		/* Grace period f covers `need`, and its barrier has been
		 * issued (by whoever started it): finish f by looking at the
		 * slots again (see "Fenced grace periods" at the top). */
		g = f;
		atomic_thread_fence(memory_order_seq_cst);
		fenced = true;
	} else {
		if (help && !gp_help_turn(s))
			return FDN_EBUSY;
		g = atomic_fetch_add_explicit(&s->hdr->gp_ctr, 1, memory_order_seq_cst) + 1;
		fenced = fdn__master_barrier(s); /* pairs with every reader's BARRIER (top) */
		if (fenced) {
			uint64_t cur =
			    atomic_load_explicit(&s->hdr->gp_fenced, memory_order_relaxed);
			while (cur < g && !atomic_compare_exchange_weak_explicit(
					      &s->hdr->gp_fenced, &cur, g, memory_order_release,
					      memory_order_relaxed))
				;
		}
	}
	/* seq_cst like the state loads below: a slot claimed (hwm raised,
	 * then the claim CAS) after this load belongs to a reader whose
	 * section begins after g. */
	uint32_t hwm = fdn__tslot_bound(s);
	for (uint32_t i = 0; i < hwm; i++) {
		/* A free slot has no reader (a thread claims its slot by a
		 * seq_cst CAS before it reads gp_ctr, so a claim we do not see
		 * yet belongs to a reader that starts after g).  A free slot
		 * with ctr != 0 is damage: the checker reports it. */
		uint64_t st = atomic_load_explicit(&s->tslots[i].state, memory_order_seq_cst);
		if (st == 0)
			continue;
		if (!fenced && (st & FDN_TSLOT_LIGHT) && FDN_TSLOT_KIND(st) == FDN_TSLOT_USED) {
			/* A light reader we cannot fence: not ours to finish.
			 * Ring the reaper, which can (it polls the grace
			 * period we started). */
			fdn__doorbell(s);
			return FDN_EBUSY;
		}
		int r = fdn__wait_slot(s, i, g, deadline);
		if (r)
			return r;
	}
	uint64_t done = atomic_load_explicit(&s->hdr->gp_done, memory_order_relaxed);
	while (done < g &&
	       !atomic_compare_exchange_weak_explicit(&s->hdr->gp_done, &done, g,
						      memory_order_release, memory_order_relaxed))
		;
	return 0;
}

int fdn__gp_poll(fdn_segment *s, int64_t budget_ns, uint64_t need)
{
	return gp_poll(s, budget_ns, need, false);
}

int fdn__gp_help(fdn_segment *s, uint64_t need)
{
	return gp_poll(s, 0, need, true);
}

int fdn__grace_period(fdn_segment *s, int64_t timeout_ns)
{
	uint64_t need = atomic_load_explicit(&s->hdr->gp_ctr, memory_order_seq_cst);
	uint64_t deadline = timeout_ns < 0 ? 0 : fdn__mono_ns() + (uint64_t)timeout_ns;
	for (unsigned round = 0;; round++) {
		int64_t budget = 1000000; /* 1 ms per poll */
		if (deadline) {
			uint64_t now = fdn__mono_ns();
			if (now >= deadline)
				budget = 0;
			else if (deadline - now < (uint64_t)budget)
				budget = (int64_t)(deadline - now);
		}
		if (fdn__gp_poll(s, budget, need) == 0 &&
		    atomic_load_explicit(&s->hdr->gp_done, memory_order_acquire) > need)
			return 0;
		if (deadline && fdn__mono_ns() >= deadline)
			return FDN_ETIMEDOUT;
		if (round > 4) {
			struct timespec d = {0, 200000};
			nanosleep(&d, NULL);
		}
	}
}

bool fdn__in_section_of(const fdn_segment *s)
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

/* Unlist t's slot (fdn__handles_lock held); returns the shared slot. */
static struct fdn_shm_tslot *fdn__slot_forget(struct fdn__thread *t, struct fdn_shm_trace **tr,
					      uint64_t *state)
{
	struct fdn_shm_tslot *ts = t->ts;
	*state = t->state;
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

/* End the slot's section, free its limbo once a grace period allows, free
 * it.  A thread never waits long here (thread exit, detach): blocks still
 * waiting after FDN_GIVE_BACK_WAIT_NS are left in the slot, marked
 * RETIRED, for the reaper to adopt and free.  Not under fdn__handles_lock. */
static void fdn__slot_give_back(fdn_segment *s, struct fdn_shm_tslot *ts, uint64_t state,
				struct fdn_shm_trace *tr)
{
	if (fdn__seg_usable(s) != 0 || s->readonly)
		return;
	if (tr)
		fdn__trace_free(tr, s->proc_word);
	/* The thread is exiting or the handle detaching: no section of it
	 * can still be open by contract. */
	atomic_store_explicit(&ts->ctr, 0, memory_order_release);
	if (fdn__limbo_waiting(ts) != 0) {
		fdn__limbo_reap(s, ts);
		if (fdn__limbo_waiting(ts) != 0 && !fdn__in_section_of(s) &&
		    fdn__grace_period(s, FDN_GIVE_BACK_WAIT_NS) == 0)
			fdn__limbo_reap(s, ts);
	}
	uint64_t w = state;
	if (fdn__limbo_waiting(ts) == 0)
		atomic_compare_exchange_strong(&ts->state, &w, 0);
	else
		atomic_compare_exchange_strong(
		    &ts->state, &w, FDN_TSLOT_WORD(FDN_TSLOT_RETIRED, FDN_TSLOT_OWNER(state)));
}

void fdn__threads_release(fdn_segment *s)
{
	for (;;) {
		struct fdn_shm_tslot *ts = NULL;
		struct fdn_shm_trace *tr = NULL;
		uint64_t state = 0;
		pthread_mutex_lock(&fdn__handles_lock);
		for (struct fdn__slotrec *rec = fdn__slotrecs; rec; rec = rec->next) {
			if (rec->seg == s && rec->seg_id == s->id) {
				ts = fdn__slot_forget(rec->t, &tr, &state); /* frees rec */
				break;
			}
		}
		pthread_mutex_unlock(&fdn__handles_lock);
		if (!ts)
			break;
		fdn__slot_give_back(s, ts, state, tr);
	}
	/* Threads that exited while we looked took their slots off the list
	 * first and counted them (fdn__thread_exit): each give-back is
	 * bounded (FDN_GIVE_BACK_WAIT_NS), so this wait is too. */
	while (atomic_load_explicit(&s->givebacks, memory_order_acquire) != 0) {
		struct timespec d = {0, 100000};
		nanosleep(&d, NULL);
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
		uint64_t claimed = fdn__real_ns();
		fdn__trace_write_begin(tr);
		fdn__trace_reset(tr);
		tr->proc_idx = s->proc_idx;
		tr->pid = FDN_PROC_PID(s->proc_word);
		tr->tid = (uint32_t)gettid();
		tr->claimed_real = claimed;
		tr->died_real = tr->died_mono = 0;
		fdn__trace_write_end(tr);
		t->trace = tr;
		*out = tr;
		return 0;
	}
	return FDN_ENOSPACE;
}
