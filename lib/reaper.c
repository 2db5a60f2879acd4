/*
 * reaper.c - the reaper's library side: the lease, reaping a batch of dead
 * processes, the graveyard, and starting foundation-reaperd on attach.
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
 *   2. purge the registry: remove the dead owners' entries and stale index
 *      references.
 *   3. record each death in the graveyard (skipping one already recorded:
 *      a reaper killed after recording and before step 4 repeats 2-4).
 *   4. finish each reclamation (a grace period, then the deferred frees and
 *      the slot itself).  A grace period blocked by a death not yet seen
 *      times out and the slot is retried on the next pass.
 */
#include "lib/internal.h"
#include "lib/metrics.h"

#include <foundation/reaper.h>

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FDN_REAPERD_PATH
#define FDN_REAPERD_PATH "/usr/local/bin/foundation-reaperd"
#endif

static uint64_t now_real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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
		if (atomic_compare_exchange_strong(&s->hdr->reaper_lease, &w, s->proc_word))
			return 0;
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

static bool already_recorded(fdn_segment *s, uint32_t idx, uint64_t ident40)
{
	uint64_t head = atomic_load(&s->hdr->graveyard_head);
	for (uint64_t k = 0; k < 8 && k < head; k++) {
		struct fdn_shm_death *d = &s->graveyard[(head - 1 - k) % FDN_GRAVEYARD_MAX];
		if (d->proc_idx == idx && FDN_PROC_IDENT40(d->ident) == ident40)
			return true;
	}
	return false;
}

/* Record a death in the graveyard; false if it was already there (a
 * reaper that died after recording it, or an earlier pass). */
static bool record_death(fdn_segment *s, const struct fdn__dead *d)
{
	uint64_t ident40 = FDN_PROC_IDENT40(d->word);
	if (already_recorded(s, d->idx, ident40))
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
	g->died_ns = now_real_ns();
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

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int fdn__reap_batch(fdn_segment *s, struct fdn__dead *d, size_t n, uint64_t woke_ns)
{
	if (n == 0)
		return 0;
	uint32_t *idx = calloc(n, sizeof(*idx));
	uint64_t *word = calloc(n, sizeof(*word)), *counts = calloc(n, sizeof(*counts));
	if (!idx || !word || !counts) {
		free(idx);
		free(word);
		free(counts);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		idx[i] = d[i].idx;
		/* Entries name their owner by its LIVE claim word, whatever
		 * form (DEAD, LEFT) the slot showed when it was queued. */
		word[i] = FDN_PROC_WORD(FDN_PROC_LIVE, FDN_PROC_PID(d[i].word),
					FDN_PROC_IDENT40(d[i].word));
		/* A slot given back cleanly before we looked (a detach, a
		 * reaper that lost the lease race): nothing died there. */
		if (fdn__proc_reclaim_begin(s, d[i].idx, d[i].word) == FDN_ENOTFOUND)
			d[i].record = false;
		d[i].latency_ns = woke_ns ? mono_ns() - woke_ns : 0;
	}
	/* What each was doing: its open spans and contexts, copied into the
	 * graveyard before its trace slots are freed (trace.c). */
	for (size_t i = 0; i < n; i++)
		fdn__trace_reap(s, d[i].word, d[i].record);
	/* The entries are invisible now and watchers have been woken; the
	 * purge below is not urgent: let a woken watcher on this CPU run. */
	sched_yield();
	int r = fdn__registry_purge(s, idx, word, counts, n);
	int left = 0;
	for (size_t i = 0; i < n; i++) {
		d[i].entries += counts[i];
		d[i].done = false;
		if (r < 0) { /* purge interrupted (a grace period timed out) */
			left++;
			continue;
		}
		if (d[i].record && record_death(s, &d[i]))
			down_event(s, &d[i]);
		int rr = fdn__proc_reclaim(s, d[i].idx, d[i].word, 200 * 1000000ll);
		d[i].done = rr == 0 || rr == FDN_ENOTFOUND;
		left += !d[i].done;
	}
	free(idx);
	free(word);
	free(counts);
	return r < 0 ? r : left;
}

/* ---- autostart ---------------------------------------------------------- */

int fdn_reaper_autostart(fdn_segment *s)
{
	const char *off = getenv("FOUNDATION_NO_AUTOREAPER");
	if ((off && strcmp(off, "1") == 0) || s->readonly)
		return 0;
	return fdn_reaper_start(s);
}

int fdn_reaper_start(fdn_segment *s)
{
	if (s->readonly)
		return FDN_ERDONLY;
	if (fdn_reaper_holder(s) != 0)
		return 0;
	const char *path = getenv("FOUNDATION_REAPERD");
	if (!path || !*path)
		path = FDN_REAPERD_PATH;
	if (access(path, X_OK) != 0)
		return -errno;
	pid_t p = fork();
	if (p < 0)
		return -errno;
	if (p == 0) {
		/* Detach twice so the daemon is nobody's child and outlives us. */
		if (setsid() < 0 || fork() != 0)
			_exit(0);
		/* No descriptor of the caller's stays open in the daemon: a
		 * pipe it held would never see end-of-file. */
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		for (int k = 3; k < 1024; k++)
			close(k);
		execl(path, path, "--segment", s->name, "--quiet-if-running", (char *)NULL);
		_exit(127);
	}
	int st;
	while (waitpid(p, &st, 0) < 0 && errno == EINTR)
		;
	return 0;
}
