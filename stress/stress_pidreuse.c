/*
 * stress_pidreuse - a dead owner's pid given to a new process is never
 * taken for the dead owner.
 *
 * The scenario runs inside a new PID namespace (unshare(CLONE_NEWPID |
 * CLONE_NEWNS); its first child is the namespace's init and the driver),
 * with a fresh /proc mounted in a private mount namespace and that
 * namespace's kernel.pid_max lowered to 400 (pid_max is per namespace
 * since Linux 6.14), so pids wrap after a hundred forks.  If namespaces
 * are refused, the driver runs in this namespace and cycles through the
 * whole pid space instead, and says so ("mode=fallback").
 *
 * A round, with no reaper running:
 *   1. three victims attach and register 5 entries each; they are killed;
 *   2. their entries are still visible (nobody reaped them) but
 *      FDN_REG_CHECK_ALIVE says not found, and fdn__proc_alive says dead;
 *   3. processes are forked until one gets a victim's pid; that process
 *      checks, from inside: its pid's lookups with FDN_REG_CHECK_ALIVE
 *      still fail, fdn__proc_alive on the victim's slot is false, it
 *      registers a key of its own (a new slot, another identity, same pid)
 *      and takes over the victim's first key (a dead holder's key is free);
 *   4. the reaper (the real foundation-reaperd, inside the namespace) is
 *      started: every other entry of the victims goes, the new process's
 *      entries stay, its slot stays LIVE, the graveyard records the
 *      victims with their own identities; the checker is clean;
 *   5. the new process is killed, reaped, and the reaper stopped.
 * Rounds repeat until --seconds have passed.
 */
#include "stress.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define VICTIMS    3
#define PER_VICTIM 5
#define PID_MAX_NS 400

struct victim {
	pid_t pid;
	uint32_t idx;
	uint64_t word;
};

/* Shared between the driver (in the namespace) and the top process. */
struct shared {
	_Atomic int ready;
	struct victim v[VICTIMS];
	_Atomic pid_t reuser;     /* the process that got a victim's pid */
	_Atomic int reuser_done;  /* its checks are done */
	_Atomic int reuser_fails; /* ... and how many failed */
	int reuse_of;             /* which victim */
	uint64_t reuser_word;
	struct st_tally tally;
	uint64_t rounds, ops, kills, forks, max_forks, reused;
	int fallback;
	int done;
};

static struct st_opts opts = {.seconds = 5};
static struct shared *sh;

static const char usage_text[] =
    "usage: stress_pidreuse [--seconds N] [--seed N]\n"
    "\n"
    "In a new PID namespace with pid_max lowered (or, if namespaces are refused,\n"
    "by cycling through every pid), registered processes die with no reaper\n"
    "running, then processes are forked until one receives a dead owner's pid.\n"
    "That process must never be taken for the dead owner, its registrations get\n"
    "a fresh identity, and the dead owner's entries are reclaimed when the reaper\n"
    "(the real foundation-reaperd) returns.  Rounds repeat for N seconds.\n"
    "\n"
    "  --seconds N  run time (default 5)\n"
    "  --verbose    a line per round\n";

static void dkey(char *k, size_t cap, uint64_t round, int v, int i)
{
	snprintf(k, cap, "dead-%llu-%d-%d", (unsigned long long)round, v, i);
}

static pid_t child(void)
{
	pid_t p = fork();
	if (p == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL);
	return p;
}

static int reg(fdn_segment *s, const char *k)
{
	struct fdn_attr a = {.name = "node", .type = FDN_ATTR_STRING, .v.s = "pidreuse"};
	return fdn_register(s, k, strlen(k), getpid(), &a, 1, 0, NULL);
}

/* Step 3, inside the process that got victim v's pid. */
static void reuser(uint64_t round, int v)
{
	int fails = 0;
	fdn_segment *s;
	if (fdn_segment_attach(st_segment(), 0, &s)) {
		atomic_store(&sh->reuser_fails, 100);
		atomic_store(&sh->reuser_done, 1);
		pause();
	}
	struct victim *x = &sh->v[v];
	char k[64];
	struct fdn_entry e;
	dkey(k, sizeof(k), round, v, 1);
	/* Unreaped: the entry is still visible, with our very pid... */
	if (fdn_lookup(s, k, strlen(k), 0, &e) != 0 || e.pid != getpid())
		fails++;
	/* ...but the kernel, asked, says its owner is dead. */
	if (fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e) != FDN_ENOTFOUND)
		fails++;
	if (fdn__proc_alive(s, x->idx, x->word))
		fails++;
	/* Our own slot: same pid, another identity, another slot. */
	if (s->proc_idx == x->idx || s->proc_word == x->word ||
	    FDN_PROC_PID(s->proc_word) != FDN_PROC_PID(x->word))
		fails++;
	snprintf(k, sizeof(k), "reuse-%llu", (unsigned long long)round);
	if (reg(s, k) != 0 || fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e) != 0 ||
	    e.pid != getpid())
		fails++;
	/* A dead holder's key is free, whoever has its pid now. */
	dkey(k, sizeof(k), round, v, 0);
	if (reg(s, k) != 0 || fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e) != 0)
		fails++;
	sh->reuser_word = s->proc_word;
	atomic_store(&sh->reuser_fails, fails);
	atomic_store(&sh->reuser_done, 1);
	for (;;)
		pause();
}

static pid_t reaper_start(void)
{
	const char *path = getenv("FOUNDATION_REAPERD");
	pid_t p = child();
	if (p == 0) {
		int fd = open("/dev/null", O_RDWR);
		dup2(fd, 1);
		execl(path, path, "--segment", st_segment(), "--foreground", (char *)NULL);
		_exit(127);
	}
	return p;
}

static void wait_lease(fdn_segment *s, pid_t reaper)
{
	for (int i = 0; i < 10000 && fdn_reaper_holder(s) != reaper; i++)
		st_sleep_ns(1000000);
	if (fdn_reaper_holder(s) != reaper)
		st_fail(&sh->tally, "the reaper did not take the lease");
}

static void one_round(fdn_segment *s, uint64_t round)
{
	struct st_tally *T = &sh->tally;
	_Atomic int *ready = &sh->ready;
	atomic_store(ready, 0);
	/* After a wrap the kernel hands out pids from 300 (RESERVED_PIDS)
	 * up: victims get pids of that range, so that one comes back. */
	for (int i = 0; i < 2 * PID_MAX_NS && !sh->fallback; i++) {
		pid_t p = child();
		if (p == 0)
			_exit(0);
		waitpid(p, NULL, 0);
		if (p >= 300 && p < PID_MAX_NS - 2 * VICTIMS)
			break;
	}
	/* 1. victims */
	for (int v = 0; v < VICTIMS; v++) {
		pid_t p = child();
		if (p == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(st_segment(), 0, &c))
				_exit(2);
			for (int i = 0; i < PER_VICTIM; i++) {
				char k[64];
				dkey(k, sizeof(k), round, v, i);
				if (reg(c, k))
					_exit(3);
			}
			atomic_fetch_add(ready, 1);
			for (;;)
				pause();
		}
		sh->v[v].pid = p;
	}
	while (atomic_load(ready) < VICTIMS)
		st_sleep_ns(200000);
	for (int v = 0; v < VICTIMS; v++) {
		struct victim *x = &sh->v[v];
		if (fdn__proc_find(s, x->pid, &x->idx) != 0)
			st_fail(T, "victim %d has no slot", (int)x->pid);
		x->word = atomic_load(&s->procs[x->idx].word);
		kill(x->pid, SIGKILL);
		waitpid(x->pid, NULL, 0);
		sh->kills++;
		sh->ops += PER_VICTIM;
	}
	/* 2. dead, unreaped */
	for (int v = 0; v < VICTIMS; v++) {
		char k[64];
		struct fdn_entry e;
		dkey(k, sizeof(k), round, v, 2);
		if (fdn_lookup(s, k, strlen(k), 0, &e) != 0 || e.pid != sh->v[v].pid)
			st_fail(T, "round %llu: %s: an unreaped entry must stay visible",
				(unsigned long long)round, k);
		if (fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e) != FDN_ENOTFOUND)
			st_fail(T, "round %llu: %s: CHECK_ALIVE finds a dead owner",
				(unsigned long long)round, k);
		if (fdn__proc_alive(s, sh->v[v].idx, sh->v[v].word))
			st_fail(T, "round %llu: victim %d taken for alive",
				(unsigned long long)round, (int)sh->v[v].pid);
	}
	/* 3. fork until a victim's pid comes back */
	atomic_store(&sh->reuser, 0);
	atomic_store(&sh->reuser_done, 0);
	uint64_t limit = sh->fallback ? 4u * 4194304u : 20u * PID_MAX_NS, forks = 0;
	pid_t got = 0;
	while (!got && forks < limit) {
		pid_t p = child();
		if (p == 0) {
			for (int v = 0; v < VICTIMS; v++)
				if (getpid() == sh->v[v].pid) {
					sh->reuse_of = v;
					atomic_store(&sh->reuser, getpid());
					reuser(round, v);
				}
			_exit(0);
		}
		forks++;
		for (int v = 0; v < VICTIMS; v++)
			if (p == sh->v[v].pid)
				got = p;
		if (!got)
			waitpid(p, NULL, 0);
	}
	sh->forks += forks;
	if (forks > sh->max_forks)
		sh->max_forks = forks;
	if (!got) {
		st_fail(T, "round %llu: no victim pid came back in %llu forks",
			(unsigned long long)round, (unsigned long long)forks);
		return;
	}
	while (!atomic_load(&sh->reuser_done))
		st_sleep_ns(200000);
	sh->reused++;
	sh->ops += 2;
	if (atomic_load(&sh->reuser_fails))
		st_fail(T, "round %llu: %d checks failed in the process with pid %d",
			(unsigned long long)round, atomic_load(&sh->reuser_fails), (int)got);
	/* 4. the reaper returns */
	pid_t reaper = reaper_start();
	wait_lease(s, reaper);
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(T, "round %llu: did not settle", (unsigned long long)round);
	st_check(s, T, "round");
	int rv = sh->reuse_of;
	for (int v = 0; v < VICTIMS; v++)
		for (int i = 0; i < PER_VICTIM; i++) {
			char k[64];
			dkey(k, sizeof(k), round, v, i);
			bool taken = v == rv && i == 0;
			struct fdn_entry e;
			int r = fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e);
			if (taken ? (r != 0 || e.pid != got) : st_raw_present(s, k))
				st_fail(T, "round %llu: %s: %s", (unsigned long long)round, k,
					taken ? "the new process's entry is lost"
					      : "the dead owner's entry remains");
		}
	char k[64];
	snprintf(k, sizeof(k), "reuse-%llu", (unsigned long long)round);
	struct fdn_entry e;
	if (fdn_lookup(s, k, strlen(k), FDN_REG_CHECK_ALIVE, &e) != 0 || e.pid != got)
		st_fail(T, "round %llu: the new process's own entry is lost",
			(unsigned long long)round);
	uint32_t ridx;
	if (fdn__proc_find(s, got, &ridx) != 0 ||
	    atomic_load(&s->procs[ridx].word) != sh->reuser_word)
		st_fail(T, "round %llu: the new process's slot is not LIVE",
			(unsigned long long)round);
	/* The victims' deaths, recorded under their own identities. */
	struct fdn_death d[32];
	int nd = fdn_graveyard(s, d, 32);
	for (int v = 0; v < VICTIMS; v++) {
		int seen = 0;
		for (int j = 0; j < nd; j++)
			seen += d[j].pid == sh->v[v].pid &&
				FDN_PROC_IDENT40(d[j].ident) == FDN_PROC_IDENT40(sh->v[v].word);
		if (seen != 1)
			st_fail(T, "round %llu: victim %d recorded %d times",
				(unsigned long long)round, (int)sh->v[v].pid, seen);
	}
	/* 5. clean up for the next round */
	kill(got, SIGKILL);
	waitpid(got, NULL, 0);
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(T, "round %llu: the new process was not reaped", (unsigned long long)round);
	if (fdn_count(s) != 0)
		st_fail(T, "round %llu: %lld entries left", (unsigned long long)round,
			(long long)fdn_count(s));
	kill(reaper, SIGTERM);
	waitpid(reaper, NULL, 0);
}

/* The driver: pid 1 of the new namespace (or a plain child in fallback). */
static void driver(bool in_ns)
{
	if (in_ns) {
		if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) {
			fprintf(stderr, "%s: mounting /proc in the namespace: %s\n", st_prog,
				strerror(errno));
			_exit(4);
		}
		int fd = open("/proc/sys/kernel/pid_max", O_WRONLY);
		char v[16];
		int n = snprintf(v, sizeof(v), "%d", PID_MAX_NS);
		if (fd < 0 || write(fd, v, (size_t)n) != n) {
			fprintf(stderr, "%s: lowering pid_max in the namespace: %s\n", st_prog,
				strerror(errno));
			_exit(4);
		}
		close(fd);
	}
	fdn_segment *s;
	if (in_ns) {
		/* A writable attach needs the creator's PID namespace (pids in
		 * a segment are its creator's namespace's): the segment the top
		 * process made is replaced by one made in here. */
		struct fdn_segment_opts o;
		fdn_segment_opts_init(&o);
		o.entries = 1024;
		o.processes = 64;
		o.threads = 64;
		fdn_segment_destroy(st_segment());
		if (fdn_segment_create(st_segment(), &o, &s))
			_exit(5);
	} else if (fdn_segment_attach(st_segment(), 0, &s)) {
		_exit(5);
	}
	uint64_t end = st_now_ns() + (uint64_t)(opts.seconds * 1e9);
	for (uint64_t round = 1; round == 1 || st_now_ns() < end; round++) {
		one_round(s, round);
		sh->rounds = round;
		if (opts.verbose)
			fprintf(stderr, "%s: round %llu: %llu forks to a reused pid\n", st_prog,
				(unsigned long long)round, (unsigned long long)sh->max_forks);
		if (sh->fallback)
			break; /* one round of a full pid cycle is enough */
	}
	st_check(s, &sh->tally, "end");
	fdn_segment_detach(s);
	sh->done = 1;
	_exit(0);
}

int main(int argc, char **argv)
{
	st_prog = "stress_pidreuse";
	st_parse(argc, argv, &opts, usage_text, NULL, NULL);
	st_setup("stress_pidreuse", "pidreuse");
	if (!getenv("FOUNDATION_REAPERD"))
		setenv("FOUNDATION_REAPERD", st_reaperd_path(), 1);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1024;
	o.processes = 64;
	o.threads = 64;
	fdn_segment *s = st_create(&o);
	/* This process is not in the namespace: its slot would look dead
	 * from there.  Give it back (no reaper runs: it is freed at once). */
	fdn_segment_detach(s);
	sh = st_shared(sizeof(*sh));
	uint64_t t0 = st_now_ns();
	pid_t c = st_fork();
	if (c == 0) {
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) {
			fprintf(stderr,
				"%s: unshare(CLONE_NEWPID|CLONE_NEWNS): %s: cycling pids in "
				"this namespace instead\n",
				st_prog, strerror(errno));
			sh->fallback = 1;
			driver(false);
		}
		pid_t init = fork();
		if (init == 0)
			driver(true);
		int st;
		waitpid(init, &st, 0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	}
	int st;
	waitpid(c, &st, 0);
	st_untrack(c);
	struct st_tally t = sh->tally;
	if (!sh->done)
		st_fail(&t, "the driver ended early (status %#x)", st);
	st_cleanup();
	return st_summary(sh->ops, sh->kills, &t,
			  "mode=%s rounds=%llu reused=%llu forks=%llu max_forks_to_reuse=%llu "
			  "seconds=%.1f",
			  sh->fallback ? "fallback" : "namespace", (unsigned long long)sh->rounds,
			  (unsigned long long)sh->reused, (unsigned long long)sh->forks,
			  (unsigned long long)sh->max_forks, (double)(st_now_ns() - t0) / 1e9);
}
