/*
 * proc.c - process identities, liveness, and the process table.
 *
 * A pid alone never names a process here: PIDs wrap in seconds.  A slot's
 * claim word carries the pid and a 40-bit identity tag the kernel does not
 * reuse, both written by the one CAS that claims the slot (layout.h, struct
 * fdn_shm_proc).  The tag says which kind of identity it holds (bit 39):
 * the pidfs inode number of a pidfd, or the process start time.  Whoever
 * checks a process computes the identity of the kind the tag names, so two
 * processes that could compute different kinds never disagree about who is
 * who; when the checker cannot compute that kind it cannot tell, and a
 * process it cannot tell about is alive.
 *
 * Dead means: the kernel says the pid is gone, or the pid now names another
 * process (another identity), or the process's pidfd is readable (it has
 * exited: every thread of it, not only the thread-group leader -- a leader
 * that called pthread_exit() while other threads run shows `Z` in /proc but
 * its pidfd stays unreadable until the last thread exits).
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#ifndef PIDFS_MAGIC
#define PIDFS_MAGIC 0x50494446
#endif

static int fdn__pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* pidfd_open failed with errno e for a positive pid: is the process gone?
 * EINVAL (ENOENT on recent kernels) names a thread that does not lead its
 * thread group -- a thread of some other process, not a process: no process
 * has that pid, as good as ESRCH.  (Reading the thread's start time instead
 * would yield an identity that could match the dead owner whose pid the
 * thread reused: stress_pidreuse met exactly that.) */
static bool fdn__pidfd_gone(int e)
{
	return e == ESRCH || e == EINVAL || e == ENOENT;
}

/* /proc/PID/stat fields after the command name: state (field 3), threads
 * (20) and start time (22).  The command name may hold spaces and
 * parentheses: fields are counted from the last ')'. */
static int fdn__proc_stat(pid_t pid, char *state, long *threads, uint64_t *start)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EIO;
	*state = p[2];
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
		if (field == 19)
			*threads = strtol(p + 1, NULL, 10);
	}
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

uint64_t fdn__ident_tag(uint64_t ident, uint32_t kind)
{
	uint64_t k = kind == FDN_IDENT_STARTTIME ? FDN_IDENT_TAG_STARTTIME : 0;
	return k | (ident & FDN_IDENT_TAG_VALUE);
}

/* The pidfs identity of an open pidfd; -ENOSYS when pidfds are anonymous
 * inodes (kernels before pidfs: every pidfd has the same inode). */
static int fdn__pidfd_ident(int fd, uint64_t *ident)
{
	struct statfs sfs;
	struct stat st;
	if (fstatfs(fd, &sfs) != 0 || (unsigned long)sfs.f_type != PIDFS_MAGIC || fstat(fd, &st))
		return -ENOSYS;
	*ident = (uint64_t)st.st_ino;
	return 0;
}

int fdn__identity(pid_t pid, uint64_t *ident, uint32_t *kind)
{
	if (pid <= 0)
		return -ESRCH;
	int fd = fdn__pidfd_open(pid);
	if (fd < 0) {
		int e = errno;
		if (fdn__pidfd_gone(e))
			return -ESRCH;
		/* Out of descriptors is passing: never record an identity of
		 * another kind for it (the caller retries or fails). */
		if (e == EMFILE || e == ENFILE || e == ENOMEM)
			return -e;
		/* ENOSYS (no pidfd_open), EPERM/EACCES (a seccomp filter):
		 * this process can never use pidfds; the start time is an
		 * identity every other process can compute too, and the tag
		 * says which kind it is. */
	} else {
		int r = fdn__pidfd_ident(fd, ident);
		close(fd);
		if (r == 0) {
			*kind = FDN_IDENT_PIDFS;
			return 0;
		}
	}
	char st;
	long threads;
	int r = fdn__proc_stat(pid, &st, &threads, ident);
	if (r)
		return r;
	*kind = FDN_IDENT_STARTTIME;
	return 0;
}

/* Is any process slot given back (LEFT) or dead, its reclamation due? */
static bool reclaim_pending(const fdn_segment *s)
{
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint32_t st =
		    FDN_PROC_STATE(atomic_load_explicit(&s->procs[i].word, memory_order_relaxed));
		if (st == FDN_PROC_DEAD || st == FDN_PROC_LEFT)
			return true;
	}
	return false;
}

/* One pass over the table for a free slot: FDN_ENOSPACE if none. */
static int claim_free(fdn_segment *s, uint32_t start, uint64_t word, uint64_t ident, uint32_t kind,
		      uint32_t *idx_out)
{
	for (uint32_t k = 0; k < s->nprocs; k++) {
		uint32_t i = (start + k) % s->nprocs;
		struct fdn_shm_proc *p = &s->procs[i];
		uint64_t expect = 0;
		if (atomic_load_explicit(&p->word, memory_order_relaxed) != 0)
			continue;
		/* The claim: pid and identity published together. */
		if (!atomic_compare_exchange_strong(&p->word, &expect, word))
			continue;
		atomic_store_explicit(&p->ident, ident, memory_order_relaxed);
		atomic_store_explicit(&p->ident_kind, kind, memory_order_relaxed);
		atomic_store_explicit(&p->uid, (uint32_t)geteuid(), memory_order_relaxed);
		atomic_store_explicit(&p->attach_ns, fdn__real_ns(), memory_order_relaxed);
		/* No release named by an earlier occupant (fdn__proc_release):
		 * until this store the slot is LIVE, so the repair counts the
		 * stale name as a live releaser's and leaves it alone. */
		atomic_store_explicit(&p->rel_name, 0, memory_order_relaxed);
		atomic_store_explicit(&p->claimer_pid, (uint32_t)getpid(), memory_order_release);
		*idx_out = i;
		fdn__doorbell(s);
		return 0;
	}
	return FDN_ENOSPACE;
}

int fdn__proc_claim(fdn_segment *s, pid_t pid, uint32_t *idx_out, uint64_t *word_out)
{
	uint64_t ident;
	uint32_t kind;
	if ((uint32_t)pid > 0x3FFFFFu || pid <= 0)
		return FDN_EINVAL;
	int r = fdn__identity(pid, &ident, &kind);
	/* Out of descriptors: a short wait may see one closed. */
	for (int tries = 0; tries < 20 && (r == -EMFILE || r == -ENFILE || r == -ENOMEM); tries++) {
		struct timespec d = {0, 1000000};
		nanosleep(&d, NULL);
		r = fdn__identity(pid, &ident, &kind);
	}
	if (r)
		return r;
	uint64_t word = FDN_PROC_WORD(FDN_PROC_LIVE, (uint32_t)pid, fdn__ident_tag(ident, kind));
	/* Start from a pid-derived position so attachers spread out. */
	uint32_t start = (uint32_t)pid % s->nprocs;
	uint64_t t0 = 0;
	for (;;) {
		r = claim_free(s, start, word, ident, kind, idx_out);
		if (r != FDN_ENOSPACE)
			break;
		/* Full, but slots given back or dead wait for the reaper: it
		 * frees them a grace period later, so wait for it (1 s at
		 * most).  A process that detaches and attaches again in a
		 * loop takes a new slot each time, and on a busy machine the
		 * reaper may not run for milliseconds: test_boundary's
		 * detach_while_threads_exit filled 64 slots so under
		 * stress-ng.  No reaper (no lease), or we are it: no wait.
		 * Nor inside a read-side section of ours (a registration from a
		 * signal handler that interrupted one): the reaper frees a slot
		 * only after a grace period, which our section holds back. */
		uint64_t lease = atomic_load(&s->hdr->reaper_lease);
		if (lease == 0 || lease == s->proc_word || fdn__in_section_of(s) ||
		    !reclaim_pending(s))
			break;
		if (t0 == 0) {
			t0 = fdn__mono_ns();
			fdn__doorbell(s);
		} else if (fdn__mono_ns() - t0 >= 1000000000ull) {
			break;
		}
		struct timespec d = {0, 1000000};
		nanosleep(&d, NULL);
	}
	if (r == 0 && word_out)
		*word_out = word;
	return r;
}

int fdn__pid_open(pid_t pid, uint64_t tag, int *fdp)
{
	*fdp = -1;
	if (pid <= 0)
		return FDN_PID_DEAD;
	int fd = fdn__pidfd_open(pid);
	if (fd < 0 && fdn__pidfd_gone(errno))
		return FDN_PID_DEAD;
	int res = FDN_PID_UNKNOWN;
	uint64_t ident;
	if (!(tag & FDN_IDENT_TAG_STARTTIME)) {
		/* pidfs kind: the identity comes from the pidfd itself, so it
		 * is the identity of the process the pidfd pins. */
		if (fd >= 0 && fdn__pidfd_ident(fd, &ident) == 0)
			res = fdn__ident_tag(ident, FDN_IDENT_PIDFS) != tag ? FDN_PID_DEAD
									    : FDN_PID_ALIVE;
	} else {
		/* Start-time kind, read after the pidfd (if any) pins the
		 * process: a pid reused before the pin shows another start. */
		char st;
		long threads;
		int r = fdn__proc_stat(pid, &st, &threads, &ident);
		if (r == -ESRCH)
			res = FDN_PID_DEAD;
		else if (r == 0 && fdn__ident_tag(ident, FDN_IDENT_STARTTIME) != tag)
			res = FDN_PID_DEAD;
		else if (r == 0 && fd < 0)
			/* No pidfd here: a zombie whose other threads have all
			 * exited is dead (a leader that called pthread_exit()
			 * shows Z with threads still counted). */
			res =
			    (st == 'Z' || st == 'X') && threads <= 1 ? FDN_PID_DEAD : FDN_PID_ALIVE;
		else if (r == 0)
			res = FDN_PID_ALIVE;
	}
	if (fd < 0)
		return res;
	if (res == FDN_PID_ALIVE) {
		/* Readable: every thread of the process has exited.  The fd
		 * stays with the caller: it names that very process. */
		struct pollfd p = {fd, POLLIN, 0};
		if (poll(&p, 1, 0) == 1)
			res = FDN_PID_DEAD;
		*fdp = fd;
		return res;
	}
	close(fd); /* another process, or cannot tell */
	return res;
}

int fdn__pid_state(pid_t pid, uint64_t tag)
{
	int fd;
	int r = fdn__pid_open(pid, tag, &fd);
	if (fd >= 0)
		close(fd);
	return r;
}

bool fdn__pid_alive(pid_t pid, uint64_t tag)
{
	/* Cannot tell (out of descriptors, a kind this process cannot
	 * compute): never call it dead. */
	return fdn__pid_state(pid, tag) != FDN_PID_DEAD;
}

bool fdn__proc_alive(const fdn_segment *s, uint32_t idx, uint64_t word)
{
	(void)s;
	(void)idx;
	if (FDN_PROC_STATE(word) != FDN_PROC_LIVE)
		return false;
	return fdn__pid_alive((pid_t)FDN_PROC_PID(word), FDN_PROC_IDENT40(word));
}

int fdn__proc_live_word(pid_t pid, uint64_t *word)
{
	uint64_t ident;
	uint32_t kind;
	int r = fdn__identity(pid, &ident, &kind);
	if (r == 0)
		*word = FDN_PROC_WORD(FDN_PROC_LIVE, (uint32_t)pid, fdn__ident_tag(ident, kind));
	return r;
}

void fdn__proc_mark_uncounted(fdn_segment *s, uint32_t idx, uint64_t word)
{
	if (idx >= s->nprocs)
		return;
	struct fdn_shm_proc *p = &s->procs[idx];
	uint64_t cur = atomic_load(&p->uncounted);
	/* The slot's word is looked at after each load of the mark: a CAS
	 * that succeeds replaced a value read while the slot was still
	 * word's, so a late writer for an earlier owner fails its CAS (the
	 * current owner's mark is there) or stops at the look. */
	while (cur != word && atomic_load(&p->word) == word &&
	       !atomic_compare_exchange_strong(&p->uncounted, &cur, word))
		;
}

int fdn__proc_adopt(fdn_segment *s, pid_t pid, uint32_t *idx_out, bool *execd)
{
	uint64_t want;
	int r = fdn__proc_live_word(pid, &want);
	if (r)
		return r;
	for (uint32_t i = 0; i < s->nprocs; i++) {
		struct fdn_shm_proc *p = &s->procs[i];
		if (atomic_load_explicit(&p->word, memory_order_acquire) != want)
			continue;
		uint32_t c = atomic_load_explicit(&p->claimer_pid, memory_order_acquire);
		if (c == (uint32_t)pid) {
			/* Claimed by this very process, yet no handle of ours
			 * has it: an image of this process before an exec. */
			*execd = true;
			*idx_out = i;
			return 0;
		}
		/* Held for us by another process (a supervisor registered
		 * entries for our pid): ours now, unless the reaper is
		 * releasing it (fdn__proc_release) -- one CAS decides. */
		if (c == FDN_CLAIMER_RELEASING ||
		    !atomic_compare_exchange_strong(&p->claimer_pid, &c, (uint32_t)pid))
			continue;
		if (atomic_load(&p->word) != want)
			continue; /* cannot happen: the release needs the claimer */
		*execd = false;
		*idx_out = i;
		return 0;
	}
	return FDN_ENOTFOUND;
}

/*
 * Releasing a slot held for another pid, and repairing a release whose
 * maker died.
 *
 * The mark.  A releaser (the reaper's tick, or any writer: an unregister
 * that removed the last entry of a slot held for another pid, a claim
 * that found the table full) marks the slot's claimer RELEASING, looks
 * whether the owner still has entries, and then either frees the word
 * (W -> 0; the mark stays until the next claimant names itself) or puts
 * the claimer back (keep).  Registrations for the pid that see the mark
 * wait for that decision (fdn__proc_wait_release).
 *
 * A releaser killed between its mark and its decision -- a writer is
 * SIGKILLed inside an unregister, and the look at the owner's entries is
 * a table walk, long under ASan -- used to leave RELEASING with the word
 * unchanged for good: no later release marks a slot already marked, no
 * adopt takes it, and every registration for that pid waited 100 ms per
 * attempt, 64 attempts, then failed (FDN_EBUSY), again and again
 * (test_changefeed_uv: all 8 writers in fdn__proc_wait_release on the
 * slot held for the test's holder pid, the spawner waiting for them).
 *
 * The name.  So a releaser names its release in its own process slot
 * before it marks: rel_word = W, then rel_name = c << 32 | phase << 28 |
 * idx + 1 (c: the claimer it replaces), phase REL_MARKING; REL_FREEING is
 * stored before the word's CAS; the name is cleared after the last write
 * of the claimer.  One release at a time per process: the name is taken
 * by a CAS from 0, and a thread of ours finding it taken does not release
 * (releases are opportunistic: the next unregister or tick does it).
 * Hence (N): while a slot's claimer is RELEASING over an undecided mark,
 * the process that marked it names (idx, W) in its slot, with REL_FREEING
 * if it may have written the word.
 *
 * The repair (the reaper's tick, fdn__proc_repair_releases): a slot idx
 * whose claimer is RELEASING and whose word w is LIVE, seen so on two
 * ticks in a row with the same w (a claim of a freed slot shows RELEASING
 * too until its claimant names itself: microseconds, not a tick).  Every
 * name of (idx, w) is looked at.  One in a LIVE slot: the maker may be
 * alive, nothing (a stale name of a slot's previous occupant counts as
 * live until its new claimant clears it).  None: nothing (an older
 * library's mark, or a claimant that died before naming itself).  One
 * saying REL_FREEING: nothing -- that maker may have freed the word, and
 * a claim may have taken the slot again with the same word (same pid).
 * Otherwise every name of (idx, w) is in a dead (DEAD, LEFT or freed) slot
 * and says REL_MARKING: by (N) the mark's maker is among them, dead before
 * any word CAS, so the word is still the w it marked, and nothing else
 * moves the claimer -- no release marks a marked slot, no claim takes a
 * LIVE word, adopt skips RELEASING, only the reaper repairs -- until the
 * repair's CAS RELEASING -> c puts the claimer back: the "keep" the maker
 * would have written had its look found entries.  A registration waiting
 * on the mark then sees no release under way and checks its entry as
 * after any keep; the tick releases the slot later if it is idle.
 *
 * Not covered: a mark whose maker died between its word CAS and clearing
 * its name, on a slot claimed again with the same word whose claimant has
 * not named itself for a whole tick -- left RELEASING as before; and a
 * stale REL_MARKING name of the same (idx, w) (its process killed inside
 * a release that found the mark taken) beside such a claimant, preempted
 * for a tick between its claim and its name: the repair then hands that
 * claim a releasable claimer before its claimant writes its own.
 */
enum { REL_MARKING = 1, REL_FREEING = 2 };
#define REL_NAME(c, phase, idx) ((uint64_t)(c) << 32 | (uint64_t)(phase) << 28 | ((idx) + 1u))
#define REL_IDX(n)              ((uint32_t)((n)&0x0FFFFFFFu) - 1u)
#define REL_PHASE(n)            ((unsigned)((n) >> 28) & 0xFu)
#define REL_CLAIMER(n)          ((uint32_t)((n) >> 32))

int fdn__proc_release(fdn_segment *s, uint32_t idx, uint64_t word,
		      bool (*idle)(fdn_segment *, uint32_t, uint64_t))
{
	if (idx >= s->nprocs || FDN_PROC_STATE(word) != FDN_PROC_LIVE || s->proc_idx >= s->nprocs)
		return FDN_EINVAL;
	struct fdn_shm_proc *p = &s->procs[idx];
	struct fdn_shm_proc *me = &s->procs[s->proc_idx];
	/* 0: the slot's claimant has not named itself yet (a free slot's
	 * claimer is 0, and a claim writes it last): never released then --
	 * it may be a process attaching itself. */
	uint32_t c = atomic_load(&p->claimer_pid);
	if (c == 0 || c == FDN_PROC_PID(word) || c == FDN_CLAIMER_RELEASING)
		return FDN_EEXISTS;
	/* The name first (N): taken from 0, so that it is ours alone while
	 * we mark and decide (another thread of ours: no release now); then
	 * the word, before the mark, whose seq_cst CAS publishes both to the
	 * repair's seq_cst load of the claimer.  Killed between the two, we
	 * made no mark: a name with another release's word names nothing
	 * (no match), or names (idx, w) with a claimer c that this slot had
	 * under w, which is all a repair takes from it. */
	uint64_t none = 0;
	if (atomic_load(&me->rel_name) != 0 ||
	    !atomic_compare_exchange_strong(&me->rel_name, &none, REL_NAME(c, REL_MARKING, idx)))
		return FDN_EEXISTS;
	atomic_store(&me->rel_word, word);
	/* Mark first, look second.  A registration for the slot writes its
	 * owner reference and then reads the claimer (fdn__proc_wait_release):
	 * with both sides seq_cst (the store-buffering pattern), either it
	 * sees RELEASING and waits for our decision, or our look below sees
	 * its reference and we keep the slot.  Looking first let a
	 * registration finish unseen between the look and the release: its
	 * entry then named a free slot (stress_overload, "procs full"). */
	int r = FDN_EEXISTS;
	if (atomic_compare_exchange_strong(&p->claimer_pid, &c, FDN_CLAIMER_RELEASING)) {
		atomic_thread_fence(memory_order_seq_cst);
		uint64_t w = word;
		bool freed = false;
		if (idle(s, idx, word)) {
			atomic_store(&me->rel_name, REL_NAME(c, REL_FREEING, idx));
			freed = atomic_compare_exchange_strong(&p->word, &w, 0);
		}
		/* Freed: the mark stays until the next claimant names itself
		 * (clearing it here could overwrite the mark of a release of
		 * that next claim). */
		if (freed)
			r = 0;
		else
			atomic_store(&p->claimer_pid, c);
	}
	atomic_store(&me->rel_name, 0);
	return r;
}

int fdn__proc_repair_releases(fdn_segment *s, uint64_t *seen)
{
	int repaired = 0;
	for (uint32_t i = 0; i < s->nprocs; i++) {
		struct fdn_shm_proc *p = &s->procs[i];
		uint64_t w = atomic_load(&p->word);
		uint64_t before = seen[i];
		seen[i] = 0;
		if (atomic_load(&p->claimer_pid) != FDN_CLAIMER_RELEASING)
			continue;
		/* Freed (the next claim names itself), or a death's. */
		if (FDN_PROC_STATE(w) != FDN_PROC_LIVE || atomic_load(&p->word) != w)
			continue;
		seen[i] = w;
		if (before != w)
			continue; /* looked at again next tick */
		bool found = false, leave = false;
		uint32_t c = 0;
		for (uint32_t j = 0; j < s->nprocs && !leave; j++) {
			struct fdn_shm_proc *q = &s->procs[j];
			uint64_t n = atomic_load(&q->rel_name);
			if (n == 0 || REL_IDX(n) != i || atomic_load(&q->rel_word) != w)
				continue;
			if (FDN_PROC_STATE(atomic_load(&q->word)) == FDN_PROC_LIVE ||
			    REL_PHASE(n) != REL_MARKING)
				leave = true;
			found = true;
			c = REL_CLAIMER(n);
		}
		if (!found || leave)
			continue;
		uint32_t mark = FDN_CLAIMER_RELEASING;
		if (atomic_compare_exchange_strong(&p->claimer_pid, &mark, c)) {
			seen[i] = 0;
			repaired++;
		}
	}
	return repaired;
}

bool fdn__proc_wait_release(fdn_segment *s, uint32_t idx, uint64_t word)
{
	if (idx >= s->nprocs)
		return true;
	struct fdn_shm_proc *p = &s->procs[idx];
	atomic_thread_fence(memory_order_seq_cst);
	/* A release in progress is a few table reads long.  A release that
	 * succeeded leaves RELEASING in place until the slot's next claim
	 * writes its claimer: so the word is looked at too.  RELEASING with
	 * the word unchanged is a release still deciding (or one whose maker
	 * died before deciding: the reaper repairs it within two ticks,
	 * fdn__proc_repair_releases), or a release done and a claim of the
	 * slot with the same word (the same pid) that has not written its
	 * claimer yet: wait in both cases; the caller's look at its entry
	 * decides the second.  After 100 ms the slot counts as released and
	 * the caller registers again (attempts after the repair go by). */
	for (int i = 0; i < 1000; i++) {
		uint32_t c = atomic_load(&p->claimer_pid);
		if (atomic_load(&p->word) != word)
			return true;
		if (c != FDN_CLAIMER_RELEASING)
			return false;
		struct timespec d = {0, 100000};
		nanosleep(&d, NULL);
	}
	return true;
}

int fdn__proc_find(const fdn_segment *s, pid_t pid, uint32_t *idx)
{
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint64_t w = atomic_load_explicit(&s->procs[i].word, memory_order_acquire);
		if (w && FDN_PROC_PID(w) == (uint32_t)pid) {
			*idx = i;
			return 0;
		}
	}
	return FDN_ENOTFOUND;
}

int fdn__pid_maps(pid_t pid, uint64_t dev, uint64_t ino)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT || errno == ESRCH ? 0 : -1;
	char line[512];
	int found = 0;
	bool any = false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		unsigned long long inode;
		any = true;
		/* start-end perms offset maj:min inode [path] */
		if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min, &inode) == 3 &&
		    inode == ino && makedev(maj, min) == dev)
			found = 1;
		/* A line longer than the buffer: skip its rest. */
		while (!strchr(line, '\n') && fgets(line, sizeof(line), f))
			;
	}
	fclose(f);
	/* An empty map: a zombie, or no permission to read it (the kernel
	 * then shows nothing rather than failing the open). */
	return found ? 1 : any ? 0 : -1;
}
