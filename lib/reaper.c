/*
 * reaper.c - the reaper's library side: the lease, reaping a batch of dead
 * processes, the graveyard, and starting foundation-reaperd (on create and
 * attach, and again when a writer finds it dead).
 *
 * The lease.  header.reaper_lease holds the claim word (LIVE | pid |
 * identity) of the process that reaps; it is taken by one CAS from 0, or
 * from a holder the kernel says is dead.  Two reapers can therefore never
 * both believe they hold it (each CAS expects the value it judged), and a
 * dead reaper's lease is taken over by the next one, which then finishes
 * every half-done reclamation: the reclamation steps are idempotent
 * (shm/reclaim.c, fdn__registry_purge).
 *
 * Reaping a batch (fdn__reap_batch), for the processes the kernel reported
 * dead:
 *   1. reclaim_begin each: its slot becomes DEAD, so its entries vanish for
 *      every reader at once; its operations in flight are resolved and its
 *      read-side sections ended.  This is the moment the latency measures.
 *      The reaper takes this step alone first (fdn__reap_hide), once it
 *      has read the exit status, before anything else that may take time:
 *      its tick, a grace period, the trace copies, the purge.
 *   2. purge the registry: remove the dead owners' entries and stale index
 *      references.
 *   3. record each death in the graveyard (skipping one already recorded:
 *      a reaper killed after recording and before step 4 repeats 2-4).
 *   4. finish each reclamation (a grace period, then the deferred frees and
 *      the slot itself).  A grace period blocked by a death not yet seen
 *      times out and the slot is retried on the next pass.
 */
#include "lib/internal.h"
#include "lib/telemetry.h"
#include "lib/metrics.h"

#include <foundation/reaper.h>

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#ifndef FDN_REAPERD_PATH
#define FDN_REAPERD_PATH "/usr/local/bin/foundation-reaperd"
#endif
/* The install's bin and libexec directories relative to its lib directory
 * (CMakeLists.txt). */
#ifndef FDN_LIB_TO_BINDIR
#define FDN_LIB_TO_BINDIR "../bin"
#endif
#ifndef FDN_LIB_TO_LIBEXECDIR
#define FDN_LIB_TO_LIBEXECDIR "../libexec"
#endif

pid_t fdn_reaper_holder(fdn_segment *s)
{
	uint64_t w = atomic_load_explicit(&s->hdr->reaper_lease, memory_order_acquire);
	if (w == 0)
		return 0;
	/* The lease word has the layout of a claim word: ask the kernel
	 * (a zombie is dead: it reaps nothing). */
	pid_t pid = (pid_t)FDN_PROC_PID(w);
	return fdn__pid_alive(pid, FDN_PROC_IDENT40(w)) ? pid : 0;
}

int fdn_reaper_lease_take(fdn_segment *s)
{
	if (s->readonly)
		return FDN_ERDONLY;
	for (int tries = 0; tries < 8; tries++) {
		uint64_t w = atomic_load_explicit(&s->hdr->reaper_lease, memory_order_acquire);
		if (w == s->proc_word)
			return 0;
		if (w != 0 && fdn_reaper_holder(s) != 0)
			return FDN_EEXISTS;
		if (atomic_compare_exchange_strong(&s->hdr->reaper_lease, &w, s->proc_word)) {
			/* The launch has arrived: the gap between launches
			 * (claim_launch) guards only launches on their way.
			 * After the lease CAS: a launcher that sees the 0
			 * sees the holder when it looks again (launch). */
			atomic_store(&s->hdr->reaper_launch_ns, 0);
			return 0;
		}
	}
	return FDN_EEXISTS;
}

void fdn_reaper_lease_release(fdn_segment *s)
{
	uint64_t w = s->proc_word;
	if (!s->readonly)
		atomic_compare_exchange_strong(&s->hdr->reaper_lease, &w, 0);
}

/* ---- graveyard ------------------------------------------------------------- */

/* The number under which the death of the process of slot idx with
 * identity ident40 is in the graveyard, or UINT64_MAX.  A death is
 * recorded before its slot is freed, so a slot still being reaped may
 * have been recorded by a reaper that died since, or by an earlier pass
 * whose reclaim timed out -- any number of deaths ago, not only the last
 * few: the whole ring is searched (256 entries; an identity names one
 * process for good, so a match is that death). */
static uint64_t recorded_as(fdn_segment *s, uint32_t idx, uint64_t ident40)
{
	uint64_t head = atomic_load(&s->hdr->graveyard_head);
	for (uint64_t k = 0; k < FDN_GRAVEYARD_MAX && k < head; k++) {
		const struct fdn_shm_death *d = &s->graveyard[(head - 1 - k) % FDN_GRAVEYARD_MAX];
		if (d->proc_idx == idx && FDN_PROC_IDENT40(d->ident) == ident40)
			return head - 1 - k;
	}
	return UINT64_MAX;
}

/* Record a death in the graveyard; false if it was already there (a
 * reaper that died after recording it, or an earlier pass). */
static bool record_death(fdn_segment *s, const struct fdn__dead *d)
{
	uint64_t ident40 = FDN_PROC_IDENT40(d->word);
	if (recorded_as(s, d->idx, ident40) != UINT64_MAX)
		return false;
	uint64_t k = atomic_load(&s->hdr->graveyard_head);
	struct fdn_shm_death *g = &s->graveyard[k % FDN_GRAVEYARD_MAX];
	uint64_t seq = atomic_load(&g->seq);
	atomic_store_explicit(&g->seq, seq | 1, memory_order_relaxed); /* odd: writing */
	atomic_thread_fence(memory_order_release);
	g->pid = FDN_PROC_PID(d->word);
	g->exit_signal = d->exit_signal;
	g->exit_status = d->exit_status;
	g->proc_idx = d->idx;
	uint64_t full = atomic_load(&s->procs[d->idx].ident);
	uint32_t kind = atomic_load(&s->procs[d->idx].ident_kind);
	g->ident = fdn__ident_tag(full, kind) == ident40 ? full : ident40;
	g->died_ns = fdn__real_ns();
	g->latency_ns = d->latency_ns;
	g->entries = d->entries;
	atomic_store_explicit(&g->seq, (seq | 1) + 1, memory_order_release); /* even: done */
	atomic_store_explicit(&s->hdr->graveyard_head, k + 1, memory_order_release);
	fdn__latency_record(s, d->latency_ns); /* the monotonic histogram (metrics.h) */
	atomic_fetch_add(&s->hdr->deaths, 1);
	return true;
}

/* The reaper's telemetry: foundation.process.down for a death just
 * recorded: pid, exit_signal (-1 unknown, 0 exited), exit_status (-1 if
 * killed), entries removed, latency_ns (wake-up to entries gone). */
static void down_event(fdn_segment *s, const struct fdn__dead *d)
{
	if (!fdn__emit_enabled(s, FDN__EV_PROCESS_DOWN))
		return;
	struct fdn_measurement m[] = {
	    {"pid", FDN_PROC_PID(d->word)},        {"exit_signal", d->exit_signal},
	    {"exit_status", d->exit_status},       {"entries", (double)d->entries},
	    {"latency_ns", (double)d->latency_ns},
	};
	struct fdn_attr a = {.name = "backend", .type = FDN_ATTR_STRING, .v.s = "shared"};
	fdn__emit_id(s, FDN__EV_PROCESS_DOWN, m, 5, &a, 1);
}

int fdn_graveyard(fdn_segment *s, struct fdn_death *out, int cap)
{
	uint64_t head = atomic_load_explicit(&s->hdr->graveyard_head, memory_order_acquire);
	int n = 0;
	for (uint64_t k = 0; k < FDN_GRAVEYARD_MAX && k < head && n < cap; k++) {
		uint64_t num = head - 1 - k;
		struct fdn_shm_death *g = &s->graveyard[num % FDN_GRAVEYARD_MAX];
		for (int tries = 0; tries < 100; tries++) {
			uint64_t s1 = atomic_load_explicit(&g->seq, memory_order_acquire);
			struct fdn_death d = {
			    num,      (pid_t)g->pid, g->exit_signal, g->exit_status,
			    g->ident, g->died_ns,    g->latency_ns,  g->entries};
			atomic_thread_fence(memory_order_acquire);
			if ((s1 & 1) == 0 && atomic_load(&g->seq) == s1) {
				out[n++] = d;
				break;
			}
		}
	}
	return n;
}

uint64_t fdn_deaths(fdn_segment *s)
{
	return atomic_load(&s->hdr->deaths);
}

/* ---- reaping ---------------------------------------------------------------- */

void fdn__reap_hide(fdn_segment *s, struct fdn__dead *d, size_t n, uint64_t woke_ns)
{
	for (size_t i = 0; i < n; i++) {
		/* Once per death: the daemon hides its deaths before its tick
		 * and fdn__reap_batch hides what it is given, and a second
		 * reclaim_begin would only walk every reader slot again. */
		if (d[i].hidden)
			continue;
		/* A slot its process gave back with things left to clean (LEFT)
		 * was a detach, whatever the caller judged: the daemon's scan
		 * can load the LIVE word, the process then detach and exit, and
		 * its pidfd then say "gone".  Only a detach or an exec
		 * reclamation writes LEFT, and only over the LIVE word, so a
		 * slot that shows it now never died in it (test_registry's
		 * a_detach_seen_late_is_not_a_death). */
		if (atomic_load(&s->procs[d[i].idx].word) ==
		    FDN_PROC_WORD(FDN_PROC_LEFT, FDN_PROC_PID(d[i].word),
				  FDN_PROC_IDENT40(d[i].word)))
			d[i].record = false;
		int r = fdn__proc_reclaim_begin(s, d[i].idx, d[i].word);
		/* A slot given back cleanly before we looked (a detach, a
		 * reaper that lost the lease race): nothing died there. */
		if (r == FDN_ENOTFOUND)
			d[i].record = false;
		d[i].hidden = r == 0 || r == FDN_ENOTFOUND;
		/* The first pass that hid it (a retry keeps the figure). */
		if (d[i].latency_ns == 0 && woke_ns)
			d[i].latency_ns = fdn__mono_ns() - woke_ns;
	}
}

int fdn__reap_batch(fdn_segment *s, struct fdn__dead *d, size_t n, uint64_t woke_ns)
{
	if (n == 0)
		return 0;
	fdn__reap_hide(s, d, n, woke_ns);
	uint32_t *idx = calloc(n, sizeof(*idx));
	uint64_t *word = calloc(n, sizeof(*word)), *counts = calloc(n, sizeof(*counts));
	uint64_t *deaths = calloc(n, sizeof(*deaths));
	if (!idx || !word || !counts || !deaths) {
		free(idx);
		free(word);
		free(counts);
		free(deaths);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		idx[i] = d[i].idx;
		/* Entries name their owner by its LIVE claim word, whatever
		 * form (DEAD, LEFT) the slot showed when it was queued. */
		word[i] = FDN_PROC_WORD(FDN_PROC_LIVE, FDN_PROC_PID(d[i].word),
					FDN_PROC_IDENT40(d[i].word));
	}
	/* What each was doing: its open spans and contexts, copied into the
	 * graveyard before its trace slots are freed (trace.c). */
	for (size_t i = 0; i < n; i++)
		fdn__trace_reap(s, d[i].word, d[i].record);
	/* The entries are invisible now and watchers have been woken; the
	 * purge below is not urgent: let a woken watcher on this CPU run. */
	sched_yield();
	/* The graveyard numbers the deaths will be recorded under (below, in
	 * this order; only the lease holder writes the graveyard), for the
	 * change log's removal records (+ 1: 0 = none).  A death recorded by
	 * an earlier pass keeps its number (recorded_as finds it). */
	uint64_t next = atomic_load(&s->hdr->graveyard_head);
	for (size_t i = 0; i < n; i++) {
		if (!d[i].record)
			continue;
		uint64_t num = recorded_as(s, d[i].idx, FDN_PROC_IDENT40(d[i].word));
		deaths[i] = (num == UINT64_MAX ? next++ : num) + 1;
	}
	int r = fdn__registry_purge(s, idx, word, deaths, counts, n);
	int left = 0;
	/* Finishing waits for a grace period.  One that does not come within
	 * the wait is held by a death not yet seen (or a stopped reader): the
	 * others of this pass wait for the same, so they only look once, and
	 * the reaper goes back to learn of that death.  (Waiting 200 ms for
	 * each kept it away from its pidfds for 200 ms per pending death,
	 * while every writer waited behind the dead reader's slot.) */
	int64_t wait_ns = 200 * 1000000ll;
	for (size_t i = 0; i < n; i++) {
		d[i].entries += counts[i];
		d[i].done = false;
		if (r < 0) { /* purge interrupted (a grace period timed out) */
			left++;
			continue;
		}
		if (d[i].record && record_death(s, &d[i]))
			down_event(s, &d[i]);
		int rr = fdn__proc_reclaim(s, d[i].idx, d[i].word, wait_ns);
		if (rr == FDN_ETIMEDOUT)
			wait_ns = 0;
		d[i].done = rr == 0 || rr == FDN_ENOTFOUND;
		left += !d[i].done;
	}
	free(idx);
	free(word);
	free(counts);
	free(deaths);
	return r < 0 ? r : left;
}

/* ---- starting the reaper ------------------------------------------------------
 *
 * Finding the program (fdn_reaper_locate), launching it without blocking
 * the caller (spawn_reaper), and deciding when to (launch): see
 * foundation/reaper.h for what callers are promised.
 */

/* An executable regular file (a directory passes access(X_OK) too). */
static bool executable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* The directory of the object this code was loaded from: libfoundation.so,
 * or the program that links the library statically.  The link map tells
 * which: the main program's has no name (dladdr would give argv[0], which
 * may be a bare name found through $PATH, or a lie), so /proc/self/exe
 * then.  A library loaded by a relative path (a relative $LD_LIBRARY_PATH
 * entry) names no directory we can trust after a chdir: none then, and
 * the other places are looked at.  false if none. */
static bool own_dir(char *buf, size_t cap)
{
	Dl_info info;
	struct link_map *map = NULL;
	const char *file = NULL;
	char exe[PATH_MAX];
	if (dladdr1((void *)fdn_reaper_locate, &info, (void **)&map, RTLD_DL_LINKMAP) == 0 ||
	    !map || !map->l_name)
		return false;
	if (map->l_name[0] == 0) {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n <= 0)
			return false;
		exe[n] = 0;
		file = exe;
	} else {
		file = map->l_name;
	}
	const char *slash = strrchr(file, '/');
	if (file[0] != '/' || !slash)
		return false;
	size_t len = (size_t)(slash - file);
	if (len == 0) /* "/libfoundation.so" */
		return snprintf(buf, cap, "/") < (int)cap;
	if (len + 1 > cap)
		return false;
	memcpy(buf, file, len);
	buf[len] = 0;
	return true;
}

/* Add a candidate to the list of places looked at ("a, b, c"). */
static void looked_add(char *looked, size_t cap, const char *what)
{
	size_t n = strlen(looked), sep = n ? 2 : 0, len = strlen(what);
	if (n + sep + len + 1 > cap)
		return; /* what does not fit is left out whole */
	memcpy(looked + n, ", ", sep);
	memcpy(looked + n + sep, what, len + 1);
}

int fdn_reaper_locate(char *buf, size_t cap)
{
	char cand[4][PATH_MAX + 64];
	int n = 0;
	const char *env = getenv("FOUNDATION_REAPERD");
	if (env && *env)
		snprintf(cand[n++], sizeof(cand[0]), "%s", env);
	char dir[PATH_MAX];
	if (own_dir(dir, sizeof(dir))) {
		/* The install's bin and libexec directories relative to its
		 * lib directory, as configured (e.g. "../bin" for lib/,
		 * "../../bin" for lib/x86_64-linux-gnu/), whatever prefix the
		 * tree was installed or moved to; and the directory itself (a
		 * statically linked program installed beside the reaper, or a
		 * build tree). */
		snprintf(cand[n++], sizeof(cand[0]), "%s/%s/foundation-reaperd", dir,
			 FDN_LIB_TO_BINDIR);
		snprintf(cand[n++], sizeof(cand[0]), "%s/%s/foundation-reaperd", dir,
			 FDN_LIB_TO_LIBEXECDIR);
		snprintf(cand[n++], sizeof(cand[0]), "%s/foundation-reaperd", dir);
	}
	char looked[1024] = "";
	for (int i = 0; i < n; i++) {
		if (executable(cand[i]))
			return snprintf(buf, cap, "%s", cand[i]) < (int)cap ? 0 : FDN_ETOOBIG;
		looked_add(looked, sizeof(looked), cand[i]);
	}
	if (executable(FDN_REAPERD_PATH))
		return snprintf(buf, cap, "%s", FDN_REAPERD_PATH) < (int)cap ? 0 : FDN_ETOOBIG;
	looked_add(looked, sizeof(looked), FDN_REAPERD_PATH);
	if (cap)
		snprintf(buf, cap, "%s", looked);
	return FDN_ENOREAPER;
}

/*
 * Spawn `path --segment NAME --quiet-if-running`; *pid gets the child.
 * posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK)) copies no page table,
 * whatever the size of the caller.  In the child, before the exec: a new
 * session (the application's terminal and its job-control signals never
 * reach the daemon), every signal at its default disposition and none
 * blocked (an application that ignores SIGTERM must not make its reaper
 * deaf to it), stdin, stdout and stderr on /dev/null, and every other
 * descriptor closed -- closefrom(3), which glibc does with close_range(2)
 * or, on a kernel without it, by walking /proc/self/fd: a socket or pipe
 * end the application left without O_CLOEXEC, at any number, stays the
 * application's alone.  (A libc without the closefrom action leaves that
 * to the reaper, which closes what it inherited before it detaches.)
 */
static int spawn_reaper(const char *path, const char *name, pid_t *pid)
{
	posix_spawnattr_t at;
	posix_spawn_file_actions_t fa;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	int r = posix_spawnattr_init(&at);
	if (r)
		return -r;
	r = posix_spawn_file_actions_init(&fa);
	if (r) {
		posix_spawnattr_destroy(&at);
		return -r;
	}
	if (!r)
		r = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
						      POSIX_SPAWN_SETSIGDEF);
	if (!r)
		r = posix_spawnattr_setsigmask(&at, &none);
	if (!r)
		r = posix_spawnattr_setsigdefault(&at, &all);
	if (!r)
		r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
	if (!r)
		r = posix_spawn_file_actions_adddup2(&fa, 0, 1);
	if (!r)
		r = posix_spawn_file_actions_adddup2(&fa, 0, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	if (!r)
		r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	if (!r) {
		char *argv[] = {(char *)path, "--segment", (char *)name, "--quiet-if-running",
				NULL};
		r = posix_spawn(pid, path, &fa, &at, argv, environ);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return -r;
}

/* Record the outcome of a launch attempt (header.reaper_note): the note's
 * time first, then the note in one store (readers take the word whole). */
static void note_in(struct fdn_shm_header *h, int err)
{
	atomic_store(&h->reaper_note_ns, fdn__real_ns());
	uint64_t w = (uint64_t)(uint32_t)(err < 0 ? -err : 0) << 32 | (uint32_t)getpid();
	atomic_store(&h->reaper_note, w);
}

/*
 * The launch runs on a thread of its own, so that create, attach and the
 * writer that noticed return at once: posix_spawn holds its caller until
 * the child has exec'd, which is 0.4 ms on an idle machine and several ms
 * on a busy one (the child must be scheduled first).  The thread spawns,
 * records the outcome in the segment through a mapping of the header of
 * its own (the caller's handle may be detached and unmapped by then), and
 * then waits for the first process it made: that is the reaper before it
 * detaches (daemon(3) forks and exits at once), our child, which must not
 * stay a zombie.  An application that reaps every child itself
 * (waitpid(-1), SIGCHLD ignored) may take it first: the wait then sees
 * ECHILD and the thread ends.
 *
 * A spawn still in flight is waited for (up to 2 s) by fdn_segment_detach
 * and at exit(), so that a short-lived program (foundation-ctl create)
 * does not end before its reaper is started; a forked child starts with
 * none in flight (the parent's thread is not in it).
 */
struct launch_job {
	struct fdn_shm_header *hdr; /* our own mapping of the header; NULL: no note */
	char path[PATH_MAX + 64];
	char name[FDN_SEGMENT_NAME_MAX + 2];
};

static pthread_mutex_t launch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t launch_cond = PTHREAD_COND_INITIALIZER;
static unsigned launch_inflight; /* spawns started and not yet returned */
static pthread_once_t launch_once = PTHREAD_ONCE_INIT;

static void launch_atfork_child(void)
{
	pthread_mutex_init(&launch_lock, NULL);
	pthread_cond_init(&launch_cond, NULL);
	launch_inflight = 0;
}

static void launch_atexit(void)
{
	fdn__reaper_launch_settle(2000);
}

static void launch_init(void)
{
	pthread_atfork(NULL, NULL, launch_atfork_child);
	atexit(launch_atexit);
}

void fdn__reaper_launch_settle(int64_t timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&launch_lock);
	while (launch_inflight > 0)
		if (pthread_cond_timedwait(&launch_cond, &launch_lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&launch_lock);
}

static void *launch_thread(void *arg)
{
	struct launch_job *j = arg;
	pid_t pid = -1;
	int r = spawn_reaper(j->path, j->name, &pid);
	if (j->hdr) {
		note_in(j->hdr, r);
		munmap(j->hdr, FDN_HEADER_SIZE);
	}
	free(j);
	pthread_mutex_lock(&launch_lock);
	launch_inflight--;
	pthread_cond_broadcast(&launch_cond);
	pthread_mutex_unlock(&launch_lock);
	if (r == 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	return NULL;
}

/* Hand the launch to a thread; without one (no memory, no thread), do it
 * here. */
static int launch_async(fdn_segment *s, const char *path)
{
	pthread_once(&launch_once, launch_init);
	struct launch_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	snprintf(j->path, sizeof(j->path), "%s", path);
	snprintf(j->name, sizeof(j->name), "%s", s->name);
	void *h = mmap(NULL, FDN_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	j->hdr = h == MAP_FAILED ? NULL : h;
	pthread_mutex_lock(&launch_lock);
	launch_inflight++;
	pthread_mutex_unlock(&launch_lock);
	pthread_attr_t at;
	pthread_t t;
	sigset_t all, old;
	/* No signal of the application's is ever handled on our thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_attr_init(&at);
	if (r == 0) {
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		r = pthread_create(&t, &at, launch_thread, j);
		pthread_attr_destroy(&at);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		launch_thread(j); /* waits for the launcher too: a few ms */
	return 0;
}

/* The outcome of an attempt that never reached a spawn; a failure is
 * also the event foundation.reaper.missing {pid; error} (at most one a
 * second per handle: the callers' rate limit). */
static void note(fdn_segment *s, int err)
{
	note_in(s->hdr, err);
	if (err == 0 || s->readonly)
		return;
	struct fdn_measurement m = {"pid", (double)getpid()};
	struct fdn_attr a = {.name = "error", .type = FDN_ATTR_STRING, .v.s = fdn_errname(err)};
	fdn__emit_id(s, FDN__EV_REAPER_MISSING, &m, 1, &a, 1);
}

/* Claim the segment's next launch: true if none was made in the last
 * FDN_REAPER_LAUNCH_GAP_NS (by any process).  The CAS makes one claimant
 * of many that look at once.  A value ahead of our clock by more than the
 * gap was written under another clock (a time namespace): not trusted. */
static bool claim_launch(fdn_segment *s, uint64_t now)
{
	uint64_t last = atomic_load(&s->hdr->reaper_launch_ns);
	if (last != 0 && now < last + FDN_REAPER_LAUNCH_GAP_NS &&
	    last < now + FDN_REAPER_LAUNCH_GAP_NS)
		return false;
	return atomic_compare_exchange_strong(&s->hdr->reaper_launch_ns, &last, now);
}

static bool autostart_off(void)
{
	const char *off = getenv("FOUNDATION_NO_AUTOREAPER");
	return off && strcmp(off, "1") == 0;
}

/* Launch a reaper if none runs.  explicit: fdn_reaper_start (lifts the
 * stop, ignores the gap). */
static int launch(fdn_segment *s, bool explicit)
{
	if (!explicit && (atomic_load(&s->hdr->reaper_stop) & FDN_REAPER_STOP_OPERATOR))
		return 0;
	if (fdn_reaper_holder(s) != 0)
		return 0;
	/* Located before the gap is looked at: whether a program can be
	 * found is answered alike for every caller (FDN_SEG_REQUIRE_REAPER). */
	char path[PATH_MAX + 64];
	int r = fdn_reaper_locate(path, sizeof(path));
	if (r) {
		note(s, r);
		return r;
	}
	uint64_t now = fdn__mono_ns();
	if (explicit)
		atomic_store(&s->hdr->reaper_launch_ns, now);
	else if (!claim_launch(s, now))
		return 0; /* launched by someone less than a gap ago: it is starting */
	/* A reaper may have taken the lease (and cleared the gap) since we
	 * looked: then it runs, and nothing is launched.  The claim is taken
	 * back (CAS: unless another claim replaced it), or it would stand for
	 * a launch that never happens, and a launcher that finds this reaper
	 * dead within the gap would wait for it instead of launching. */
	if (!explicit && fdn_reaper_holder(s) != 0) {
		uint64_t mine = now;
		atomic_compare_exchange_strong(&s->hdr->reaper_launch_ns, &mine, 0);
		return 0;
	}
	atomic_fetch_add(&s->hdr->reaper_launches, 1);
	return launch_async(s, path);
}

int fdn_reaper_autostart(fdn_segment *s)
{
	if (!s)
		return FDN_EINVAL;
	if (s->readonly || autostart_off())
		return 0;
	atomic_store(&s->reaper_check_ns, fdn__mono_ns() + FDN_REAPER_LAUNCH_GAP_NS);
	return launch(s, false);
}

/*
 * Called by every registry write (lib/registry.c).  At most once per
 * FDN_REAPER_LAUNCH_GAP_NS per handle it looks at the lease: one load and
 * a coarse clock read while no check is due; the CAS makes one thread of
 * the handle the one that looks.  A lease that is free, or held by a
 * process the kernel says is dead, means the reaper died (or was never started): launch one,
 * unless the stop is in force (launch).  The look costs a pidfd_open and
 * a stat, once a second.
 */
void fdn__reaper_notice(fdn_segment *s)
{
	uint64_t due = atomic_load_explicit(&s->reaper_check_ns, memory_order_relaxed);
	/* Coarse: every registry write asks, and the gap is a second. */
	uint64_t now = fdn__mono_coarse_ns();
	if (now < due)
		return;
	if (!atomic_compare_exchange_strong(&s->reaper_check_ns, &due,
					    now + FDN_REAPER_LAUNCH_GAP_NS))
		return;
	if (s->readonly || autostart_off())
		return;
	(void)launch(s, false);
}

int fdn_reaper_start(fdn_segment *s)
{
	if (!s)
		return FDN_EINVAL;
	if (s->readonly)
		return FDN_ERDONLY;
	/* Lifted before the launch: a standby reaper (`--wait`) sees it too
	 * and may be the one that takes the lease; ours then exits quietly. */
	atomic_fetch_and(&s->hdr->reaper_stop, ~FDN_REAPER_STOP_OPERATOR);
	return launch(s, true);
}

int fdn_reaper_wait(fdn_segment *s, int64_t timeout_ms)
{
	if (!s)
		return FDN_EINVAL;
	uint64_t start = fdn__mono_ns();
	/* Polled: taking the lease wakes nobody.  1 ms steps at first (a
	 * reaper takes the lease a few ms after its launch), 20 ms later.
	 * A writable handle looks as a writer does (once a second): a launch
	 * lost with a process that died before its spawn is made again. */
	for (unsigned k = 0;; k++) {
		pid_t p = fdn_reaper_holder(s);
		if (p > 0)
			return p;
		if (atomic_load(&s->hdr->destroyed))
			return FDN_ESTALE;
		fdn__reaper_notice(s);
		uint64_t waited = (fdn__mono_ns() - start) / 1000000u;
		if (timeout_ms >= 0 && waited >= (uint64_t)timeout_ms)
			return FDN_ETIMEDOUT;
		struct timespec d = {0, (k < 50 ? 1 : 20) * 1000000L};
		nanosleep(&d, NULL);
	}
}

int fdn_reaper_stop(fdn_segment *s, int64_t timeout_ms)
{
	if (!s)
		return FDN_EINVAL;
	if (s->readonly)
		return FDN_ERDONLY;
	pid_t p = fdn_reaper_holder(s);
	/* Set before the doorbell: the reaper reads the flag after it wakes
	 * (seq_cst on both sides), or at its next tick (250 ms) at the
	 * latest. */
	atomic_fetch_or(&s->hdr->reaper_stop, FDN_REAPER_STOP_OPERATOR);
	fdn__doorbell(s);
	if (p == 0)
		return 0;
	uint64_t start = fdn__mono_ns();
	for (;;) {
		if (fdn_reaper_holder(s) != p)
			return p;
		uint64_t waited = (fdn__mono_ns() - start) / 1000000u;
		if (timeout_ms >= 0 && waited >= (uint64_t)timeout_ms)
			return FDN_ETIMEDOUT;
		struct timespec d = {0, 5 * 1000000L};
		nanosleep(&d, NULL);
	}
}

int fdn_reaper_status(fdn_segment *s, struct fdn_reaper_status *st)
{
	if (!s || !st)
		return FDN_EINVAL;
	memset(st, 0, sizeof(*st));
	st->pid = fdn_reaper_holder(s);
	st->stopped = (atomic_load(&s->hdr->reaper_stop) & FDN_REAPER_STOP_OPERATOR) != 0;
	st->launches = atomic_load(&s->hdr->reaper_launches);
	uint64_t w = atomic_load(&s->hdr->reaper_note);
	st->last_pid = (pid_t)(uint32_t)w;
	st->last_error = -(int)(uint32_t)(w >> 32);
	st->last_ns = atomic_load(&s->hdr->reaper_note_ns);
	return 0;
}
