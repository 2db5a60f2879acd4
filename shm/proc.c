/*
 * proc.c - process identities and the process table.
 *
 * A pid alone never names a process here: PIDs wrap in seconds.  A slot's
 * claim word carries the pid and 40 bits of an identity the kernel does not
 * reuse (pidfs inode number, or start time), both written by the one CAS
 * that claims the slot (layout.h, struct fdn_shm_proc).
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Start time (clock ticks since boot) from /proc/PID/stat field 22. */
static int fdn__starttime(pid_t pid, uint64_t *out)
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
	/* The command name (field 2) may hold spaces and parentheses: fields
	 * are counted from the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	p++;
	for (int field = 3; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	*out = strtoull(p + 1, NULL, 10);
	return 0;
}

int fdn__identity(pid_t pid, uint64_t *ident, uint32_t *kind)
{
	int fd = fdn__pidfd_open(pid);
	if (fd < 0) {
		/* EINVAL (ENOENT on recent kernels) for a positive pid: it
		 * names a thread that does not lead its thread group -- a
		 * thread of some other process, not a process.  No process has
		 * that pid: as good as ESRCH.  (The
		 * fallback below would otherwise read the thread's start time
		 * from /proc/PID/stat, an identity of another kind, and
		 * fdn__pid_alive could not tell it from the dead owner whose
		 * pid the thread reused: stress_pidreuse met exactly that.) */
		if (errno == ESRCH || (pid > 0 && (errno == EINVAL || errno == ENOENT)))
			return -ESRCH;
	} else {
		struct statfs sfs;
		struct stat st;
		int ok = fstatfs(fd, &sfs) == 0 && (unsigned long)sfs.f_type == PIDFS_MAGIC &&
			 fstat(fd, &st) == 0;
		close(fd);
		if (ok) {
			*ident = (uint64_t)st.st_ino;
			*kind = FDN_IDENT_PIDFS;
			return 0;
		}
	}
	int r = fdn__starttime(pid, ident);
	if (r)
		return r;
	*kind = FDN_IDENT_STARTTIME;
	return 0;
}

static uint64_t fdn__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int fdn__proc_claim(fdn_segment *s, pid_t pid, uint32_t *idx_out)
{
	uint64_t ident;
	uint32_t kind;
	int r = fdn__identity(pid, &ident, &kind);
	if (r)
		return r;
	if ((uint32_t)pid > 0x3FFFFFu)
		return FDN_EINVAL;
	uint64_t word = FDN_PROC_WORD(FDN_PROC_LIVE, (uint32_t)pid, ident);
	/* Start from a pid-derived position so attachers spread out. */
	uint32_t start = (uint32_t)pid % s->nprocs;
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
		atomic_store_explicit(&p->attach_ns, fdn__now_ns(), memory_order_relaxed);
		atomic_store_explicit(&p->claimer_pid, (uint32_t)getpid(), memory_order_release);
		*idx_out = i;
		fdn__doorbell(s);
		return 0;
	}
	return FDN_ENOSPACE;
}

/* A zombie still answers pidfd_open and /proc, but it is dead for us. */
static bool fdn__is_zombie(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

bool fdn__pid_alive(pid_t pid, uint64_t ident40, uint32_t want_kind)
{
	uint64_t ident;
	uint32_t kind;
	int r = fdn__identity(pid, &ident, &kind);
	if (r == -ESRCH)
		return false;
	if (r)
		return true; /* cannot tell (EMFILE, EACCES...): never call it dead */
	if (want_kind != FDN_IDENT_NONE && want_kind != kind)
		return true; /* identity of another kind: cannot compare */
	if (FDN_PROC_IDENT40(ident) != FDN_PROC_IDENT40(ident40))
		return false; /* the pid was reused */
	return !fdn__is_zombie(pid);
}

bool fdn__proc_alive(const fdn_segment *s, uint32_t idx, uint64_t word)
{
	if (FDN_PROC_STATE(word) != FDN_PROC_LIVE)
		return false;
	uint32_t want = idx < s->nprocs
			    ? atomic_load_explicit(&s->procs[idx].ident_kind, memory_order_acquire)
			    : FDN_IDENT_NONE;
	return fdn__pid_alive((pid_t)FDN_PROC_PID(word), FDN_PROC_IDENT40(word), want);
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
