/*
 * foundation-reaperd - watches every process of a segment through a pidfd
 * and reclaims what a dead one owned.
 *
 * One reaper per segment: it holds the lease in the segment header
 * (lib/reaper.c).  It learns of new processes from the segment's doorbell
 * (a shared futex rung by every process-slot claim, forwarded to an eventfd
 * by a small thread), opens a pidfd for each, checks that the pid still
 * carries the slot's identity (so a recycled pid is never taken for the
 * dead owner), and waits for the pidfds in an epoll set.  When the kernel
 * reports deaths it reaps them as a batch (fdn__reap_batch).  Liveness
 * comes from the kernel only: no timeouts, no heartbeats.
 *
 * Why it lives here, beside lib/ and shm/, and not in tools/: the reaper
 * is the one program that drives the library's internals (shm/shm.h,
 * lib/internal.h) -- it claims and reclaims process slots, runs grace
 * periods and frees what the dead held.  The other programs (tools/) use
 * the public API only (the foundation headers).  It shares their command-line
 * scaffold, tools/cli.h.
 */
#include "lib/internal.h"
#include "tools/cli.h"

#include <foundation/reaper.h>

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

const char *prog = "foundation-reaperd";

/* PIDFD_GET_INFO (Linux 6.13; exit information since 6.15). */
struct pidfd_info_v0 {
	uint64_t mask;
	uint64_t cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
	uint32_t coredump_mask;
	uint32_t spare1;
};
#define FDN_PIDFD_INFO_EXIT (1ull << 3)
#define FDN_PIDFD_GET_INFO  _IOWR(0xFF, 11, struct pidfd_info_v0)

struct watch {
	int fd;        /* pidfd, -1 if none */
	uint64_t word; /* the claim word it watches */
};

struct bell {
	fdn_segment *s;
	int fd;
	uint32_t seen; /* the doorbell word before the first scan */
	_Atomic bool stop;
	pthread_t thread;
};

struct reaper {
	fdn_segment *s;
	int ep, doorbell_fd, sig_fd;
	struct watch *w;
	struct fdn__dead *pending; /* reaped but not finished: retried */
	size_t npending;
	bool verbose;
	bool rescan; /* a process could not be looked at: scan again soon */
	uint64_t reaped;
	uint64_t last_tick;  /* CLOCK_MONOTONIC of the last tick */
	uint64_t *stall_ctr; /* per reader slot: the section seen at the last tick */
	uint64_t *stall_ns;  /*   and since when (0: not stalled) */
	uint32_t maps_cursor;
	uint64_t *rel_seen; /* per process slot: fdn__proc_repair_releases */
	uint64_t last_poll; /* CLOCK_MONOTONIC of the last grace-period poll */
	bool backlog;       /* blocks were waiting at the last look */
	struct bell bell;
};

static void usage(FILE *f, const void *unused)
{
	fprintf(f,
		"usage: %s [--segment NAME] [--foreground] [--quiet-if-running] [--verbose]\n"
		"       %*s [--wait] [--create [--mode OCTAL]]\n"
		"\n"
		"Watch every process attached to (or registered in) the segment through a\n"
		"pidfd, and when one dies remove its registry entries, reclaim its slots and\n"
		"deferred blocks, and record the death in the graveyard.  One reaper runs\n"
		"per segment (it holds the lease in the segment); the library starts one on\n"
		"create and attach unless FOUNDATION_NO_AUTOREAPER=1.  Stops on SIGTERM or\n"
		"SIGINT, and on `foundation-ctl reaper stop`.\n"
		"\n"
		"  --segment NAME      segment (default $FOUNDATION_SEGMENT or \"foundation\")\n"
		"  --foreground        do not detach (systemd, debugging); tells systemd its\n"
		"                      state ($NOTIFY_SOCKET: READY=1, STATUS=)\n"
		"  --quiet-if-running  exit 0 silently when another reaper holds the lease\n"
		"  --wait              a service: wait for the segment to appear (and again\n"
		"                      after a destroy), stand by while another reaper holds\n"
		"                      the lease and take it over when that one dies, stand by\n"
		"                      while `reaper stop` is in force; exits only on a signal\n"
		"                      or an error\n"
		"  --create            create the segment when it is missing (default\n"
		"                      capacities; owner and group: the reaper's)\n"
		"  --mode OCTAL        the mode of a segment it creates (default 0600)\n"
		"  --verbose           log every death on stderr\n"
		"  --help              this text\n"
		"  --version           print the version and exit\n"
		"\n"
		"Exit status: 0 stopped by a signal or by `foundation-ctl reaper stop`, or\n"
		"another reaper runs (with --quiet-if-running); 1 error; 2 bad usage; 3 the\n"
		"segment was destroyed (checked at every doorbell and every 250 ms); 4\n"
		"another reaper took the lease.  With --wait only 0, 1 and 2.\n",
		prog, (int)strlen(prog), "");
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- the doorbell: futex -> eventfd ---------------------------------------- */

static void *doorbell_thread(void *arg)
{
	struct bell *b = arg;
	_Atomic uint32_t *word = &b->s->hdr->doorbell;
	uint32_t seen = b->seen;
	while (!atomic_load(&b->stop)) {
		syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, seen, NULL, NULL, 0);
		uint32_t now = atomic_load(word);
		if (now != seen) {
			seen = now;
			uint64_t one = 1;
			if (write(b->fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
				return NULL;
		}
	}
	return NULL;
}

/* ---- watching ---------------------------------------------------------------- */

static void decode_wait_status(int code, int *sig, int *status)
{
	if ((code & 0x7f) == 0) { /* WIFEXITED */
		*sig = 0;
		*status = (code >> 8) & 0xff;
	} else {
		*sig = code & 0x7f;
	}
}

/* The wait status of a zombie, from /proc/PID/stat field 52 (exit_code):
 * only while the process is a zombie, i.e. still the one the pidfd names
 * (its parent has not reaped it, so its pid cannot be reused yet). */
static bool zombie_status(pid_t pid, int *code)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || p[2] != 'Z')
		return false;
	for (int field = 2; field < 52 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return false;
	*code = atoi(p + 1);
	return true;
}

/* Exit information of a dead process: from its pidfd once its parent has
 * reaped it (PIDFD_GET_INFO), from /proc while it is a zombie. */
static void exit_info(int pidfd, pid_t pid, int *sig, int *status)
{
	struct pidfd_info_v0 info = {.mask = FDN_PIDFD_INFO_EXIT};
	int code;
	*sig = -1;
	*status = -1;
	if (pidfd < 0)
		return;
	/* The pidfd turns readable as the process exits; its /proc entry
	 * shows the zombie a moment later: look a few times (< 1 ms). */
	for (int tries = 0; tries < 40; tries++) {
		if (ioctl(pidfd, FDN_PIDFD_GET_INFO, &info) == 0 &&
		    (info.mask & FDN_PIDFD_INFO_EXIT)) {
			decode_wait_status(info.exit_code, sig, status);
			return;
		}
		if (zombie_status(pid, &code)) {
			decode_wait_status(code, sig, status);
			return;
		}
		struct timespec d = {0, 20000};
		nanosleep(&d, NULL);
		info.mask = FDN_PIDFD_INFO_EXIT;
	}
}

static bool pidfd_dead(int fd)
{
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, 0) == 1;
}

/* Open a pidfd for slot word w and check that it is that very process.
 * Returns the fd, -1 if the process is already gone, -2 if we cannot tell
 * (out of descriptors...): never judged dead on that.  The fd of a process
 * that has just exited is returned too: it has exit information
 * (pidfd_dead tells). */
static int open_verified(uint64_t w)
{
	int fd;
	int r = fdn__pid_open((pid_t)FDN_PROC_PID(w), FDN_PROC_IDENT40(w), &fd);
	if (r == FDN_PID_UNKNOWN || (r == FDN_PID_ALIVE && fd < 0))
		return -2; /* alive but unwatchable here: looked at again */
	return fd;
}

/* Queue the process of slot idx (claim word `word`) for reaping; fd: its
 * pidfd, for the exit information.  Read here, before the death is made
 * visible: a parent woken by it may reap the zombie at once, and where
 * PIDFD_GET_INFO gives no exit information (kernels before 6.15) the
 * zombie's /proc entry is the only place to read it from.  (Read after the
 * death was marked, the signal was lost: test_demo under qemu-user.) */
static void queue_dead(struct reaper *R, uint32_t idx, uint64_t word, int fd, bool death)
{
	struct fdn__dead d = {.idx = idx, .word = word, .record = death};
	d.exit_signal = d.exit_status = -1;
	if (death)
		exit_info(fd, (pid_t)FDN_PROC_PID(word), &d.exit_signal, &d.exit_status);
	/* One entry per (slot, process), whatever state the slot showed. */
	for (size_t i = 0; i < R->npending; i++)
		if (R->pending[i].idx == idx &&
		    FDN_PROC_IDENT40(R->pending[i].word) == FDN_PROC_IDENT40(word) &&
		    FDN_PROC_PID(R->pending[i].word) == FDN_PROC_PID(word))
			return;
	if (R->npending >= 2 * (size_t)R->s->nprocs)
		return; /* cannot happen: one per slot and process */
	R->pending[R->npending++] = d;
}

static void unwatch(struct reaper *R, uint32_t i)
{
	if (R->w[i].fd >= 0) {
		epoll_ctl(R->ep, EPOLL_CTL_DEL, R->w[i].fd, NULL);
		close(R->w[i].fd);
	}
	R->w[i] = (struct watch){-1, 0};
}

/* Bring the watch set in line with the process table. */
static void scan(struct reaper *R)
{
	fdn_segment *s = R->s;
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint64_t w = atomic_load(&s->procs[i].word);
		if (w == R->w[i].word)
			continue;
		unwatch(R, i);
		if (w == 0 || i == s->proc_idx)
			continue;
		if (FDN_PROC_STATE(w) == FDN_PROC_LEFT) {
			queue_dead(R, i, w, -1, false); /* a detach: clean up, no death */
			continue;
		}
		if (FDN_PROC_STATE(w) == FDN_PROC_DEAD) {
			/* A detach, or a reclamation a killed reaper left. */
			uint64_t live =
			    FDN_PROC_WORD(FDN_PROC_LIVE, FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
			int fd = open_verified(live);
			if (fd == -2) {
				R->rescan = true;
				continue;
			}
			bool alive = fd >= 0 && !pidfd_dead(fd);
			queue_dead(R, i, w, fd, !alive);
			if (fd >= 0)
				close(fd);
			continue;
		}
		int fd = open_verified(w);
		if (fd == -2) {
			R->rescan = true; /* unwatched for now: look again soon */
			continue;
		}
		if (fd < 0 || pidfd_dead(fd)) {
			queue_dead(R, i, w, fd, true);
			if (fd >= 0)
				close(fd);
			continue;
		}
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
		if (epoll_ctl(R->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			continue;
		}
		R->w[i] = (struct watch){fd, w};
	}
}

static void reap_pending(struct reaper *R, uint64_t woke)
{
	if (R->npending == 0)
		return;
	fdn__reap_batch(R->s, R->pending, R->npending, woke);
	size_t keep = 0;
	for (size_t i = 0; i < R->npending; i++) {
		struct fdn__dead *d = &R->pending[i];
		if (d->done) {
			R->reaped++;
			if (R->verbose && d->record)
				fprintf(stderr,
					"%s: pid %u died (signal %d, status %d): %llu entries "
					"removed in %.3f ms\n",
					prog, FDN_PROC_PID(d->word), d->exit_signal, d->exit_status,
					(unsigned long long)d->entries,
					(double)d->latency_ns / 1e6);
			if (R->w[d->idx].word == d->word)
				unwatch(R, d->idx);
			continue;
		}
		d->record = false; /* recorded once; the retry only finishes it */
		R->pending[keep++] = *d;
	}
	R->npending = keep;
}

/* Exit statuses besides 0/1/2 (usage), and why run() returned. */
enum { EXIT_DESTROYED = 3, EXIT_LEASE_LOST = 4 };
enum { RUN_STOPPED = 100 }; /* `foundation-ctl reaper stop`: exit 0, or stand by (--wait) */

static bool stop_requested(fdn_segment *s)
{
	return (atomic_load(&s->hdr->reaper_stop) & FDN_REAPER_STOP_OPERATOR) != 0;
}
#define TICK_NS       (250 * 1000000ull)
#define STALL_NS      (500 * 1000000ull) /* a section older than this is looked at */
#define MAPS_PER_TICK 8u

/* The process of slot i exec'd (it no longer maps the segment): its new
 * image has no handle, so nothing of the old one will run again.  Reclaim
 * it as a detach (no death): its reader slots, its entries, its slot. */
static void maybe_execd(struct reaper *R, uint32_t i)
{
	fdn_segment *s = R->s;
	uint64_t w = atomic_load(&s->procs[i].word);
	if (FDN_PROC_STATE(w) != FDN_PROC_LIVE || i == s->proc_idx)
		return;
	/* A slot claimed for another pid (a supervisor's registration)
	 * names a process that never mapped the segment. */
	if (atomic_load(&s->procs[i].claimer_pid) != FDN_PROC_PID(w))
		return;
	struct stat st;
	if (fstat(s->fd, &st) != 0 ||
	    fdn__pid_maps((pid_t)FDN_PROC_PID(w), (uint64_t)st.st_dev, (uint64_t)st.st_ino) != 0)
		return;
	/* Still that process (not dead: the pidfd says death): as a detach. */
	if (fdn__pid_state((pid_t)FDN_PROC_PID(w), FDN_PROC_IDENT40(w)) != FDN_PID_ALIVE)
		return;
	uint64_t left = FDN_PROC_WORD(FDN_PROC_LEFT, FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
	if (!atomic_compare_exchange_strong(&s->procs[i].word, &w, left))
		return;
	if (R->verbose)
		fprintf(stderr, "%s: pid %u no longer maps the segment (exec): reclaimed\n", prog,
			FDN_PROC_PID(w));
	fdn__notify(s);
	queue_dead(R, i, left, -1, false);
}

/*
 * The periodic tick (every TICK_NS, whatever else happens, busy or idle):
 *  - the segment destroyed (header flag, or its name gone): exit;
 *  - the lease no longer ours (a second reaper took it believing us dead):
 *    exit, never two reapers;
 *  - a full scan of the process table: a process whose claim we have not
 *    yet matched with a verified pidfd (its doorbell ring lost to a race,
 *    a pidfd we could not open) is looked at again within one tick, so a
 *    death is never missed for longer than that: every LIVE slot is either
 *    in the epoll set with a pidfd verified against its identity (a death
 *    makes it readable) or is looked at by the next tick;
 *  - reader slots pinned in one section for over STALL_NS, and a few more
 *    processes each tick round robin: if the process no longer maps the
 *    segment it exec'd, and is reclaimed as a detach.
 */
static int tick(struct reaper *R)
{
	fdn_segment *s = R->s;
	if (fdn__seg_stale(s))
		return EXIT_DESTROYED;
	/* Before the walks: a truncated file would raise SIGBUS in them (the
	 * guard installed in main catches what happens between two looks). */
	if (fdn__seg_say_truncated(s, prog))
		return FDN_ETRUNC;
	if (atomic_load(&s->hdr->reaper_lease) != s->proc_word)
		return EXIT_LEASE_LOST;
	if (stop_requested(s))
		return RUN_STOPPED;
	scan(R);
	uint64_t now = mono_ns();
	uint64_t g = atomic_load(&s->hdr->gp_ctr);
	for (uint32_t i = 0; i < s->nthreads; i++) {
		uint64_t st = atomic_load_explicit(&s->tslots[i].state, memory_order_relaxed);
		uint64_t c = atomic_load_explicit(&s->tslots[i].ctr, memory_order_relaxed);
		if (st == 0 || c == 0 || c >= g || c != R->stall_ctr[i]) {
			R->stall_ctr[i] = c;
			R->stall_ns[i] = now;
			continue;
		}
		if (now - R->stall_ns[i] >= STALL_NS) {
			R->stall_ns[i] = now; /* looked at again after another STALL_NS */
			uint32_t owner = FDN_TSLOT_OWNER(st);
			if (owner < s->nprocs)
				maybe_execd(R, owner);
		}
	}
	for (uint32_t k = 0; k < MAPS_PER_TICK && k < s->nprocs; k++) {
		maybe_execd(R, R->maps_cursor);
		R->maps_cursor = (R->maps_cursor + 1) % s->nprocs;
	}
	/* A release whose maker died between its mark and its decision
	 * (proc.c): the slot's claimer back, before the releases below. */
	int repaired = R->rel_seen ? fdn__proc_repair_releases(s, R->rel_seen) : 0;
	if (repaired > 0 && R->verbose)
		fprintf(stderr, "%s: %d release(s) left by dead processes repaired\n", prog,
			repaired);
	/* Slots held for other pids that own nothing any more (their last
	 * unregister raced or was killed before it released them). */
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint64_t w = atomic_load(&s->procs[i].word);
		if (FDN_PROC_STATE(w) == FDN_PROC_LIVE && i != s->proc_idx &&
		    atomic_load(&s->procs[i].claimer_pid) != FDN_PROC_PID(w))
			fdn__registry_release_idle(s, i, w);
	}
	return 0;
}

/*
 * The background side of reclamation (shm/rcu.c): while any reader slot
 * holds blocks waiting for a grace period, poll one every POLL_NS (a
 * bounded attempt: a reader stopped in a section makes it fail, never
 * wait), so writers find their blocks freeable without running grace
 * periods themselves.  Slots left RETIRED by threads that exited with
 * blocks still waiting are adopted (ours from then on: if we die, the next
 * reaper reclaims them with our slot) and emptied as grace periods pass.
 */
#define POLL_NS (2 * 1000000ull)

/* Free what is due in the slots we adopted; give back the empty ones --
 * never our own thread's slot, which its thread cache still names. */
static void reap_adopted(fdn_segment *s, uint32_t hwm)
{
	uint64_t mine = FDN_TSLOT_WORD(FDN_TSLOT_USED, s->proc_idx);
	struct fdn__thread *self = fdn__tls_last;
	uint32_t own = self && self->seg == s ? self->slot : UINT32_MAX;
	for (uint32_t i = 0; i < hwm; i++) {
		struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t st = atomic_load(&ts->state);
		if (st != mine || i == own || atomic_load(&ts->ctr) != 0)
			continue;
		if (fdn__limbo_reap(s, ts) == 0 && fdn__limbo_waiting(ts) == 0)
			atomic_compare_exchange_strong(&ts->state, &st, 0);
	}
}

static void drive_reclamation(struct reaper *R, uint64_t now, bool rung)
{
	fdn_segment *s = R->s;
	/* A grace period started and not finished: someone waits for it
	 * (a writer that cannot fence light readers rings the doorbell). */
	bool asked = atomic_load(&s->hdr->gp_done) + 1 < atomic_load(&s->hdr->gp_ctr);
	if (now - R->last_poll < (rung && asked ? POLL_NS / 20 : POLL_NS))
		return;
	R->last_poll = now;
	uint32_t hwm = atomic_load(&s->hdr->tslot_hwm);
	if (hwm > s->nthreads)
		hwm = s->nthreads;
	uint64_t done = atomic_load(&s->hdr->gp_done);
	bool waiting = false;
	for (uint32_t i = 0; i < hwm; i++) {
		struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t st = atomic_load(&ts->state);
		if (FDN_TSLOT_KIND(st) == FDN_TSLOT_RETIRED)
			atomic_compare_exchange_strong(&ts->state, &st,
						       FDN_TSLOT_WORD(FDN_TSLOT_USED, s->proc_idx));
		/* Blocks that need a grace period still to come: the newest
		 * one's stamp is not yet covered.  (Blocks already covered are
		 * freed by their thread's next write, or by us if adopted.) */
		if (st != 0 && fdn__limbo_waiting(ts) != 0 && fdn__limbo_newest(s, ts) >= done)
			waiting = true;
	}
	if (waiting || asked)
		fdn__gp_poll(s, 1000000, atomic_load(&s->hdr->gp_ctr));
	reap_adopted(s, hwm);
	R->backlog = (waiting || asked) && atomic_load(&s->hdr->gp_done) == done;
}

static int run(struct reaper *R)
{
	/* A destroy that came between our attach and our lease found no
	 * reaper to wait for: we see it here. */
	if (fdn__seg_stale(R->s))
		return EXIT_DESTROYED;
	scan(R);
	reap_pending(R, mono_ns());
	/* The full sweep (stale index references, entries a killed writer or
	 * reaper left) runs in small steps whenever nothing else is waiting:
	 * a death never waits for it. */
	/* A pass walks the buckets once, from a cursor.  A death during a
	 * pass can make references stale in buckets the pass has already
	 * walked: then one more whole pass follows (sweep_dirty), so that
	 * once the reaper sleeps without a timeout nothing stale is left --
	 * stress_killstorm found stale references at a quiescent point. */
	bool sweep_due = true, sweep_dirty = false;
	uint64_t cursor = 0;
	R->last_tick = mono_ns();
	for (;;) {
		struct epoll_event ev[64];
		int timeout = sweep_due                  ? 0
			      : R->backlog               ? (int)(POLL_NS / 1000000)
			      : R->npending || R->rescan ? 100
							 : (int)(TICK_NS / 1000000);
		int n = epoll_wait(R->ep, ev, 64, timeout);
		if (n < 0 && errno != EINTR)
			return -errno;
		uint64_t woke = mono_ns();
		bool rescan = R->rescan;
		R->rescan = false;
		for (int k = 0; k < n; k++) {
			uint32_t id = ev[k].data.u32;
			if (id == UINT32_MAX - 1) {
				uint64_t v;
				if (read(R->doorbell_fd, &v, sizeof(v)) < 0)
					continue;
				rescan = true;
				/* A destroy rings too: gone at once, not at the tick;
				 * and so does a stop (fdn_reaper_stop). */
				if (atomic_load(&R->s->hdr->destroyed))
					return EXIT_DESTROYED;
				if (stop_requested(R->s))
					return RUN_STOPPED;
			} else if (id == UINT32_MAX) {
				return 0; /* SIGTERM / SIGINT */
			} else if (id < R->s->nprocs && R->w[id].fd >= 0) {
				/* It may have detached before it exited: no death. */
				uint64_t cur = atomic_load(&R->s->procs[id].word);
				bool death = FDN_PROC_STATE(cur) != FDN_PROC_LEFT;
				queue_dead(R, id, R->w[id].word, R->w[id].fd, death);
				epoll_ctl(R->ep, EPOLL_CTL_DEL, R->w[id].fd, NULL);
			}
		}
		/* Deaths first: their entries vanish before the tick's walks,
		 * a grace period or a purge can take any time. */
		fdn__reap_hide(R->s, R->pending, R->npending, woke);
		if (woke - R->last_tick >= TICK_NS) {
			R->last_tick = woke;
			int t = tick(R);
			if (t)
				return t;
			reap_pending(R, woke);
		}
		drive_reclamation(R, woke, rescan);
		size_t before = R->npending;
		reap_pending(R, woke);
		if (rescan) {
			scan(R);
			reap_pending(R, woke);
		}
		if (n > 0 || before) {
			sweep_dirty = sweep_dirty || (sweep_due && cursor != 0);
			sweep_due = true;
		} else if (sweep_due && fdn__registry_sweep(R->s, &cursor, 1024) == 1) {
			sweep_due = sweep_dirty; /* cursor is back at 0 */
			sweep_dirty = false;
		}
	}
}

/* One pidfd per watched process: make room for a full process table. */
static void raise_fd_limit(uint32_t nprocs)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t want = (rlim_t)nprocs + 64;
	if (rl.rlim_cur >= want)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0 && rl.rlim_max < want)
		fprintf(stderr,
			"%s: only %llu descriptors for %u processes: some will be watched late\n",
			prog, (unsigned long long)rl.rlim_max, nprocs);
}

static int setup(struct reaper *R)
{
	R->ep = epoll_create1(EPOLL_CLOEXEC);
	R->doorbell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	R->w = calloc(R->s->nprocs, sizeof(*R->w));
	R->pending = calloc(2 * (size_t)R->s->nprocs, sizeof(*R->pending));
	R->stall_ctr = calloc(R->s->nthreads, sizeof(*R->stall_ctr));
	R->stall_ns = calloc(R->s->nthreads, sizeof(*R->stall_ns));
	R->rel_seen = calloc(R->s->nprocs, sizeof(*R->rel_seen));
	if (R->ep < 0 || R->doorbell_fd < 0 || R->sig_fd < 0 || !R->w || !R->pending ||
	    !R->stall_ctr || !R->stall_ns || !R->rel_seen)
		return -ENOMEM;
	for (uint32_t i = 0; i < R->s->nprocs; i++)
		R->w[i].fd = -1;
	struct epoll_event e1 = {.events = EPOLLIN, .data.u32 = UINT32_MAX - 1};
	struct epoll_event e2 = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	if (epoll_ctl(R->ep, EPOLL_CTL_ADD, R->doorbell_fd, &e1) ||
	    epoll_ctl(R->ep, EPOLL_CTL_ADD, R->sig_fd, &e2))
		return -errno;
	R->bell.s = R->s;
	R->bell.fd = R->doorbell_fd;
	/* Read the doorbell before the first scan (run), not when the thread
	 * happens to start: a process that claims its slot after the scan
	 * has looked at it rings after this load (claim, then ring, both
	 * seq_cst), so the thread sees a new value and the process is found
	 * by the rescan.  Read later, that ring could be taken for the old
	 * value and the process never watched. */
	R->bell.seen = atomic_load(&R->s->hdr->doorbell);
	if (pthread_create(&R->bell.thread, NULL, doorbell_thread, &R->bell))
		return -EAGAIN;
	return 0;
}

/* Stop the doorbell thread before the segment is unmapped under it. */
static void stop_doorbell(struct reaper *R)
{
	atomic_store(&R->bell.stop, true);
	fdn__doorbell(R->s); /* wakes it (and any other reaper: harmless) */
	pthread_join(R->bell.thread, NULL);
}

/* ---- the service: notify, wait, stand by ----------------------------------- */

struct opts {
	const char *name;
	bool foreground, quiet, verbose;
	bool wait;   /* --wait: wait for the segment, stand by behind a live reaper */
	bool create; /* --create: make the segment when it is missing */
	uint32_t mode;
	bool mode_given; /* --mode (only with --create) */
	int sig_fd;      /* SIGTERM, SIGINT */
};

/*
 * The systemd notification protocol (sd_notify(3)), implemented here
 * rather than linked from libsystemd: one datagram of "KEY=VALUE" lines
 * to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" in
 * the abstract namespace).  Only with --foreground: a reaper the library
 * starts inherits the application's environment, and must never speak
 * for the application's own unit (it runs without --foreground, and main
 * removes the variable).
 */
static void notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notify(const char *fmt, ...)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(msg))
		return;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
		     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

/* Where the service stands, for the log (--wait) and the service manager:
 * READY=1 with the first of them (see "Readiness" in the unit file). */
static void standing(const struct opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void standing(const struct opts *o, const char *fmt, ...)
{
	static bool ready;
	static char last[256];
	char line[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (strcmp(line, last) == 0)
		return;
	snprintf(last, sizeof(last), "%s", line);
	if (o->wait || o->verbose)
		fprintf(stderr, "%s: %s\n", prog, line);
	if (o->foreground) {
		notify("%sSTATUS=%s\nMAINPID=%d", ready ? "" : "READY=1\n", line, (int)getpid());
		ready = true;
	}
}

/* Sleep up to ms, or until a stop signal (true) or fd (>= 0) is readable. */
static bool pause_for(const struct opts *o, int fd, int ms)
{
	struct pollfd p[2] = {{o->sig_fd, POLLIN, 0}, {fd, POLLIN, 0}};
	if (poll(p, fd >= 0 ? 2 : 1, ms) > 0 && (p[0].revents & POLLIN)) {
		struct signalfd_siginfo si;
		if (read(o->sig_fd, &si, sizeof(si)) < 0)
			return false;
		return true;
	}
	return false;
}

/* Close every descriptor above stderr that we were started with: a
 * daemon holds nothing of whoever started it (the library's launch closes
 * them already; a shell or an older library may not).  close_range(2),
 * else one by one from /proc/self/fd. */
static void close_inherited(void)
{
	if (close_range(3, ~0U, 0) == 0)
		return;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int keep = dirfd(d), fds[256], n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL && n < 256;) {
		int fd = atoi(e->d_name);
		if (fd > 2 && fd != keep)
			fds[n++] = fd;
	}
	closedir(d);
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

enum { SERVE_SIGNAL = 0, SERVE_ERROR = 1 };

/* Attach (creating with --create); with --wait, wait for the segment to
 * appear and be initialised.  0 with the handle, GOT_SIGNAL, or
 * SERVE_ERROR. */
enum { GOT_SIGNAL = -2 };
static int get_segment(const struct opts *o, fdn_segment **s)
{
	for (;;) {
		int r = fdn__seg_attach(o->name, 0, s);
		if (r == FDN_ENOSEG && o->create) {
			struct fdn_segment_opts so;
			fdn_segment_opts_init(&so);
			so.mode = o->mode;
			r = fdn__segment_create_bare(o->name, &so, s);
			if (r == 0)
				fprintf(stderr, "%s: created segment \"%s\" (mode %04o)\n", prog,
					o->name, (unsigned)o->mode);
			else if (r == FDN_EEXISTS)
				continue; /* made by someone else meanwhile: attach */
		}
		if (r == 0)
			return 0;
		if (o->wait && (r == FDN_ENOSEG || r == FDN_EINIT)) {
			standing(o, "waiting for segment \"%s\" to appear", o->name);
			if (pause_for(o, -1, 250))
				return GOT_SIGNAL;
			continue;
		}
		unsigned ma, mi;
		if ((r == FDN_EVERSION || r == FDN_ELAYOUT) &&
		    fdn_segment_format(o->name, &ma, &mi) == 0)
			fprintf(stderr,
				"%s: segment \"%s\": %s: made in format %u.%u, this build reads "
				"format %u.x: stop its processes, destroy and re-create it\n",
				prog, o->name, fdn_strerror(r), ma, mi,
				(unsigned)FDN_SEGMENT_FORMAT_MAJOR);
		else
			fprintf(stderr, "%s: segment \"%s\": %s\n", prog, o->name, fdn_strerror(r));
		if (r == FDN_EOWNER && geteuid() == 0)
			fprintf(stderr,
				"%s: run the reaper as the user that owns the segment (the "
				"unit's User= and Group=; see foundation-reaperd(1))\n",
				prog);
		return SERVE_ERROR;
	}
}

/* One term of service: attach, hold the lease (or stand by behind the
 * live holder, --wait), reap until the segment is destroyed, the lease is
 * lost, a stop is asked, or a signal.  Returns SERVE_SIGNAL, SERVE_ERROR,
 * EXIT_DESTROYED, EXIT_LEASE_LOST, RUN_STOPPED, or -1: another reaper
 * holds the lease (without --wait). */
static int serve(const struct opts *o)
{
	struct reaper R = {.verbose = o->verbose, .sig_fd = o->sig_fd};
	int r = get_segment(o, &R.s);
	if (r)
		return r == GOT_SIGNAL ? SERVE_SIGNAL : r;
	fdn__seg_guard_sigbus(R.s, prog);
	for (;;) {
		if (fdn__seg_stale(R.s)) {
			fdn__seg_detach(R.s, false);
			return EXIT_DESTROYED;
		}
		if (stop_requested(R.s)) {
			if (!o->wait) {
				fdn__seg_detach(R.s, false);
				return RUN_STOPPED;
			}
			standing(o, "stopped by `foundation-ctl reaper stop`: standing by until "
				    "`foundation-ctl reaper start`");
			if (pause_for(o, -1, 250)) {
				fdn__seg_detach(R.s, false);
				return SERVE_SIGNAL;
			}
			continue;
		}
		if (fdn_reaper_lease_take(R.s) == 0)
			break;
		uint64_t w = atomic_load(&R.s->hdr->reaper_lease);
		pid_t holder = fdn_reaper_holder(R.s);
		if (!o->wait) {
			fdn__seg_detach(R.s, false);
			if (!o->quiet)
				fprintf(
				    stderr,
				    "%s: segment \"%s\": another reaper (pid %d) holds the lease\n",
				    prog, o->name, (int)holder);
			return -1;
		}
		/* Stand by: the holder's pidfd turns readable when it dies
		 * (then the CAS above takes the lease from it); the tick
		 * looks at the stop, the destroy and a lease given back. */
		standing(o, "standby: reaper pid %d holds the lease of segment \"%s\"", (int)holder,
			 o->name);
		int fd = -1;
		if (holder && fdn__pid_open(holder, FDN_PROC_IDENT40(w), &fd) != FDN_PID_ALIVE &&
		    fd >= 0) {
			close(fd);
			fd = -1;
		}
		bool sig = pause_for(o, fd, 250);
		if (fd >= 0)
			close(fd);
		if (sig) {
			fdn__seg_detach(R.s, false);
			return SERVE_SIGNAL;
		}
	}
	raise_fd_limit(R.s->nprocs);
	if ((r = setup(&R))) {
		fprintf(stderr, "%s: setup: %s\n", prog, fdn_strerror(r));
		fdn_reaper_lease_release(R.s);
		fdn__seg_detach(R.s, false);
		return SERVE_ERROR;
	}
	standing(o, "reaping segment \"%s\" (pid %d holds the lease)", o->name, (int)getpid());
	r = run(&R);
	if (r == FDN_ETRUNC)
		_exit(1); /* said; nothing of the segment is safe to touch now */
	stop_doorbell(&R);
	fdn_reaper_lease_release(R.s);
	for (uint32_t i = 0; i < R.s->nprocs; i++)
		unwatch(&R, i);
	fdn__seg_detach(R.s, false);
	free(R.w);
	free(R.pending);
	free(R.stall_ctr);
	free(R.rel_seen);
	free(R.stall_ns);
	close(R.ep);
	close(R.doorbell_fd);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, fdn_strerror(r));
		return SERVE_ERROR;
	}
	return r;
}

/* Every option but --help and --version (a cli_take_fn). */
static int take_option(void *arg, const void *unused, int c, char *val)
{
	struct opts *o = arg;
	uint64_t mode;
	switch (c) {
	case 's':
		o->name = val;
		break;
	case 'f':
		o->foreground = true;
		break;
	case 'q':
		o->quiet = true;
		break;
	case 'v':
		o->verbose = true;
		break;
	case 'w':
		o->wait = true;
		break;
	case 'c':
		o->create = true;
		break;
	case 'm':
		if (!parse_num(val, 8, 0777, &mode))
			return usage_error(NULL, "--mode %s: not an octal mode of 0..0777", val);
		o->mode = (uint32_t)mode;
		o->mode_given = true;
		break;
	}
	return CLI_GO_ON;
}

int main(int argc, char **argv)
{
	struct opts o = {.mode = 0600};
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"foreground", no_argument, 0, 'f'},
					   {"quiet-if-running", no_argument, 0, 'q'},
					   {"verbose", no_argument, 0, 'v'},
					   {"wait", no_argument, 0, 'w'},
					   {"create", no_argument, 0, 'c'},
					   {"mode", required_argument, 0, 'm'},
					   {"help", no_argument, 0, 'h'},
					   {"version", no_argument, 0, 'V'},
					   {0, 0, 0, 0}};
	int status =
	    cli_program_options(argc, argv, ":s:fqvwcm:h", lo, 'V', usage, take_option, &o);
	if (status != CLI_GO_ON)
		return status;
	if (optind != argc)
		return usage_error(NULL, "\"%s\": unexpected argument", argv[optind]);
	if (o.mode_given && !o.create)
		return usage_error(NULL, "--mode: only with --create");
	if (!o.name)
		o.name = fdn_segment_default_name();
	if (fdn__validate_name(o.name)) {
		fprintf(stderr, "%s: segment \"%s\": invalid name\n", prog, o.name);
		return 2;
	}
	/* Detach from the terminal first: the slot and lease are then taken
	 * by the process that will hold them.  stderr stays for the log. */
	if (!o.foreground) {
		unsetenv("NOTIFY_SOCKET"); /* the application's, not ours */
		close_inherited();
		if (daemon(0, 1) != 0) {
			fprintf(stderr, "%s: daemon: %s\n", prog, strerror(errno));
			return 1;
		}
	}
	/* Heavy reader slots (rcu.c, "No light reader"): a writer beside only
	 * the reaper then ends its grace periods without a membarrier, which
	 * interrupts every CPU running a registered process.  The reaper's
	 * own sections are rare (a purge, a check): a fence each costs
	 * nothing there. */
	fdn__rcu_heavy();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread: they inherit */
	o.sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (o.sig_fd < 0) {
		fprintf(stderr, "%s: signalfd: %s\n", prog, strerror(errno));
		return 1;
	}
	/* Never wait unboundedly for a grace period: a process that died in
	 * a read-side section holds it until we reclaim that process. */
	fdn__rcu_set_flush_timeout(100 * 1000000ll);
	for (;;) {
		int r = serve(&o);
		/* With --wait the service outlives a segment, a lease and a
		 * stop: it goes back to waiting (for the segment to appear
		 * again, for the lease, for `reaper start`). */
		if (o.wait && (r == EXIT_DESTROYED || r == EXIT_LEASE_LOST || r == RUN_STOPPED)) {
			if (r == EXIT_DESTROYED)
				fprintf(stderr, "%s: segment \"%s\" was destroyed\n", prog, o.name);
			else if (r == EXIT_LEASE_LOST)
				fprintf(stderr, "%s: segment \"%s\": lost the reaper lease\n", prog,
					o.name);
			continue;
		}
		if (r == EXIT_DESTROYED && o.verbose)
			fprintf(stderr, "%s: segment \"%s\" was destroyed: exiting\n", prog,
				o.name);
		if (r == EXIT_LEASE_LOST)
			fprintf(stderr, "%s: segment \"%s\": lost the reaper lease: exiting\n",
				prog, o.name);
		if (r == RUN_STOPPED)
			fprintf(stderr,
				"%s: segment \"%s\": stopped by `foundation-ctl reaper stop`: "
				"exiting\n",
				prog, o.name);
		status = r == RUN_STOPPED ? 0 : r == -1 ? (o.quiet ? 0 : 1) : r;
		break;
	}
	if (o.foreground)
		notify("STOPPING=1");
	close(o.sig_fd);
	return status;
}
