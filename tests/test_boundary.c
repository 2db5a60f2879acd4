/*
 * test_boundary.c - no process dies because of the segment: a full shm
 * filesystem (a small tmpfs in a private mount namespace), the segment
 * directory, detach racing thread exit, library calls from a signal handler
 * in the middle of the same thread's calls, dlclose with a pool thread
 * alive.  Real processes: each case runs in a forked child, so a crash is
 * a failed test with its signal named, never a crashed runner.
 */
#include "common.h"

#include <foundation/registry.h>
#include <foundation/spans.h>
#include <foundation/telemetry.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run fn in a forked child; its exit status (0 = passed), or 128 + the
 * signal that killed it. */
static int in_child(int (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t p = fork();
	cr_assert_geq(p, 0, "fork");
	if (p == 0)
		_exit(fn(arg));
	int st;
	while (waitpid(p, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static bool is_root(void)
{
	if (geteuid() == 0)
		return true;
	cr_log_warn("SKIP: needs root (a tmpfs mounted in a private mount namespace)");
	return false;
}

/* ---- a full shm filesystem -------------------------------------------------------- */

/* In a private mount namespace: an 8 MiB tmpfs as the segment directory. */
static int small_tmpfs(char *dir, size_t cap)
{
	snprintf(dir, cap, "/tmp/fdn-boundary-%d", (int)getpid());
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return 10;
	mkdir(dir, 0700);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=8m,mode=0700") < 0)
		return 11;
	setenv("FOUNDATION_SHM_DIR", dir, 1);
	return 0;
}

static int full_tmpfs_child(void *arg)
{
	(void)arg;
	char dir[128], path[PATH_MAX];
	int r = small_tmpfs(dir, sizeof(dir));
	if (r)
		return r;
	/* The default segment (57 MB) does not fit: refused, nothing left. */
	fdn_segment *s = NULL;
	r = fdn_segment_create("big", NULL, &s);
	if (r != FDN_ENOSPACE || s)
		return 20;
	if (fdn_segment_path("big", path, sizeof(path)) != 0 || access(path, F_OK) == 0)
		return 21;
	/* One that fits works, in that directory, and its memory is all
	 * there at once (no page left for a later fault to allocate). */
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1000;
	o.processes = 16;
	o.threads = 16;
	o.spans = 4;
	o.events = 64;
	o.changes = 64;
	uint64_t need = 0;
	if (fdn_segment_size(&o, &need) != 0 || need == 0 || need > (7u << 20))
		return 22;
	if (fdn_segment_create("small", &o, &s) != 0)
		return 23;
	struct stat st;
	if (fdn_segment_path("small", path, sizeof(path)) != 0 || stat(path, &st) != 0 ||
	    (uint64_t)st.st_blocks * 512 < need)
		return 24;
	if (fdn_register(s, "k", 1, getpid(), NULL, 0, 0, NULL) != 0)
		return 25;
	/* Now the rest of the filesystem is too small for a second one. */
	fdn_segment *s2 = NULL;
	o.entries = 20000;
	if (fdn_segment_create("second", &o, &s2) != FDN_ENOSPACE)
		return 26;
	/* The sparse opt-in: created, nothing reserved (documented risk). */
	o.flags = FDN_SEG_SPARSE;
	if (fdn_segment_create("second", &o, &s2) != 0)
		return 27;
	if (fdn_segment_path("second", path, sizeof(path)) != 0 || stat(path, &st) != 0 ||
	    (uint64_t)st.st_blocks * 512 >= need)
		return 28;
	fdn_segment_detach(s2);
	fdn_segment_destroy("second");
	/* What was stored before is still there. */
	struct fdn_entry e;
	if (fdn_lookup(s, "k", 1, 0, &e) != 0 || e.pid != getpid())
		return 29;
	fdn_segment_detach(s);
	fdn_segment_destroy("small");
	umount(dir);
	rmdir(dir);
	return 0;
}

Test(boundary, full_shm_filesystem_refuses_create, .timeout = 60)
{
	if (!is_root())
		return;
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	int r = in_child(full_tmpfs_child, NULL);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
	cr_assert_eq(r, 0, "child failed at step %d", r);
}

Test(boundary, segment_directory_from_the_environment, .timeout = 60)
{
	char dir[128], name[64], path[PATH_MAX];
	snprintf(dir, sizeof(dir), "/tmp/fdn-shmdir-%d", (int)getpid());
	cr_assert_eq(mkdir(dir, 0700), 0);
	t_name(name, sizeof(name), "dir");
	setenv("FOUNDATION_SHM_DIR", dir, 1);
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	cr_assert_str_eq(fdn_segment_dir(), dir);
	fdn_segment *s = t_create(name, 1000, 0);
	cr_assert_eq(fdn_segment_path(name, path, sizeof(path)), 0);
	char want[PATH_MAX];
	snprintf(want, sizeof(want), "%s/%s", dir, name);
	cr_assert_str_eq(path, want);
	cr_assert_eq(access(path, F_OK), 0, "no %s", path);
	fdn_segment *a = NULL;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &a), 0);
	/* Truncated under a read-only handle: the look says so (and a
	 * read-only detach only unmaps: nothing of the lost pages is touched). */
	cr_assert_eq(fdn_segment_verify_size(a), 0);
	fdn_segment_detach(s);
	cr_assert_eq(truncate(path, 4096), 0);
	cr_assert_eq(fdn_segment_verify_size(a), FDN_ETRUNC);
	fdn_segment_detach(a);
	cr_assert_eq(fdn_segment_destroy(name), 0);
	cr_assert_neq(access(path, F_OK), 0);
	/* A relative directory names nothing stable: refused. */
	setenv("FOUNDATION_SHM_DIR", "relative/dir", 1);
	cr_assert_eq(fdn_segment_create(name, NULL, &s), FDN_EINVAL);
	cr_assert_eq(fdn_segment_attach(name, 0, &s), FDN_EINVAL);
	/* A missing directory: no such segment (attach), create says so too. */
	setenv("FOUNDATION_SHM_DIR", "/nonexistent-fdn-dir", 1);
	cr_assert_eq(fdn_segment_attach(name, 0, &s), FDN_ENOSEG);
	cr_assert_eq(fdn_segment_create(name, NULL, &s), FDN_ENOSEG);
	unsetenv("FOUNDATION_SHM_DIR");
	unsetenv("FOUNDATION_NO_AUTOREAPER");
	rmdir(dir);
}

/* ---- detach racing thread exit ----------------------------------------------------- */

struct race {
	fdn_segment *s;
	pthread_barrier_t *go;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	char k[32];
	snprintf(k, sizeof(k), "t-%lu", (unsigned long)pthread_self());
	/* Takes a reader slot and leaves a block in limbo to give back. */
	fdn_register(r->s, k, strlen(k), getpid(), NULL, 0, 0, NULL);
	fdn_unregister(r->s, k, strlen(k));
	pthread_barrier_wait(r->go);
	return NULL; /* exits now: its slot is given back through r->s */
}

static int detach_race_child(void *arg)
{
	const char *name = arg;
	enum { THREADS = 4 };
	for (int round = 0; round < 100; round++) {
		fdn_segment *s = NULL;
		int e = fdn_segment_attach(name, 0, &s);
		if (e != 0) {
			fprintf(stderr, "round %d: attach: %s\n", round, fdn_strerror(e));
			return 10;
		}
		pthread_barrier_t go;
		pthread_barrier_init(&go, NULL, THREADS + 1);
		struct race r = {s, &go};
		pthread_t t[THREADS];
		for (int i = 0; i < THREADS; i++)
			pthread_create(&t[i], NULL, race_thread, &r);
		pthread_barrier_wait(&go);
		/* The threads are exiting: detach under them. */
		fdn_segment_detach(s);
		for (int i = 0; i < THREADS; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&go);
	}
	return 0;
}

Test(boundary, detach_while_threads_exit, .timeout = 300)
{
	char name[64];
	t_name(name, sizeof(name), "detach");
	fdn_segment *s = t_create_reaped(name, 1000, 64);
	int r = in_child(detach_race_child, name);
	cr_assert_eq(r, 0, "child: %d (128 + signal if it crashed)", r);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* A table full of slots given back (LEFT) and not yet freed by the reaper:
 * an attach waits for the reaper (1 s at most) instead of failing.  The
 * reaper is stopped while 6 attach/detach cycles fill the 8-slot table. */
static int fill_child(void *arg)
{
	const char *name = arg;
	for (int i = 0; i < 6; i++) {
		fdn_segment *s;
		int e = fdn_segment_attach(name, 0, &s);
		if (e != 0) {
			fprintf(stderr, "fill %d: attach: %s\n", i, fdn_strerror(e));
			return 10;
		}
		fdn_segment_detach(s);
	}
	return 0;
}

static int attach_child(void *arg)
{
	fdn_segment *s;
	int e = fdn_segment_attach(arg, 0, &s);
	if (e != 0) {
		fprintf(stderr, "attach: %s\n", fdn_strerror(e));
		return e == FDN_ENOSPACE ? 20 : 10;
	}
	fdn_segment_detach(s);
	return 0;
}

static bool table_full(fdn_segment *s)
{
	for (uint32_t i = 0; i < s->nprocs; i++)
		if (atomic_load(&s->procs[i].word) == 0)
			return false;
	return true;
}

Test(boundary, attach_waits_for_slots_given_back, .timeout = 120)
{
	char name[64];
	t_name(name, sizeof(name), "full");
	fdn_segment *s = t_create_reaped(name, 1000, 8);
	pid_t reaper = fdn_reaper_holder(s);
	cr_assert_eq(kill(reaper, SIGSTOP), 0);
	cr_assert_eq(in_child(fill_child, name), 0);
	cr_assert(table_full(s), "6 detached slots and 2 live ones fill 8");
	/* The reaper stays stopped: the wait ends at its bound. */
	uint64_t t0 = t_mono_ms();
	cr_assert_eq(in_child(attach_child, name), 20, "FDN_ENOSPACE with the reaper stopped");
	uint64_t waited = t_mono_ms() - t0;
	cr_assert_geq(waited, 900, "gave up after %llu ms, not after about 1 s",
		      (unsigned long long)waited);
	/* Continued while an attach waits: the attach gets a slot. */
	fflush(NULL);
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0)
		_exit(attach_child(name));
	t_sleep_ms(200);
	cr_assert_eq(kill(reaper, SIGCONT), 0);
	int st;
	cr_assert_eq(waitpid(c, &st, 0), c);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "attach beside a running reaper: %#x", st);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* ---- calls from a signal handler ----------------------------------------------------- */

static fdn_segment *sig_seg;
static atomic_ulong sig_ok, sig_reentered, sig_other, sig_calls;
static atomic_int sig_other_code;

static void count(int r)
{
	if (r == 0 || r == FDN_ENOTFOUND)
		atomic_fetch_add(&sig_ok, 1);
	else if (r == FDN_EREENTERED)
		atomic_fetch_add(&sig_reentered, 1);
	else {
		atomic_fetch_add(&sig_other, 1);
		atomic_store(&sig_other_code, r);
	}
}

static void on_alarm(int sig)
{
	(void)sig;
	int saved = errno;
	unsigned long n = atomic_fetch_add(&sig_calls, 1);
	char k[32];
	snprintf(k, sizeof(k), "sig-%lu", n % 16);
	int r = fdn_register(sig_seg, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE, NULL);
	count(r);
	if (r == 0)
		count(fdn_unregister(sig_seg, k, strlen(k)));
	struct fdn_entry e;
	count(fdn_lookup(sig_seg, "main-0", 6, 0, &e));
	uint64_t id;
	r = fdn_span_start(sig_seg, "in-handler", NULL, 0, &id);
	count(r);
	if (r == 0)
		count(fdn_span_end(sig_seg, FDN_STATUS_OK));
	errno = saved;
}

static int signal_child(void *arg)
{
	const char *name = arg;
	if (fdn_segment_attach(name, 0, &sig_seg) != 0)
		return 10;
	/* First calls outside any handler: the slots are claimed (with
	 * malloc and a mutex, which a handler must not do). */
	uint64_t id;
	if (fdn_register(sig_seg, "main-0", 6, getpid(), NULL, 0, FDN_REG_REPLACE, NULL) ||
	    fdn_span_start(sig_seg, "warm", NULL, 0, &id) || fdn_span_end(sig_seg, FDN_STATUS_OK))
		return 11;
	struct sigaction sa = {.sa_handler = on_alarm};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 50}, {0, 50}};
	setitimer(ITIMER_REAL, &it, NULL);
	/* A stream of writes and spans, interrupted anywhere. */
	uint64_t t0 = t_mono_ms();
	unsigned i = 0;
	while (t_mono_ms() - t0 < 3000 || atomic_load(&sig_calls) < 2000) {
		char k[32];
		snprintf(k, sizeof(k), "main-%u", 1 + i++ % 64);
		int r =
		    fdn_register(sig_seg, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE, NULL);
		if (r == 0)
			r = fdn_unregister(sig_seg, k, strlen(k));
		if (r == 0 && (r = fdn_span_start(sig_seg, "main", NULL, 0, &id)) == 0)
			r = fdn_span_end(sig_seg, FDN_STATUS_OK);
		if (r != 0 && r != FDN_EBUSY) {
			fprintf(stderr, "main loop, round %u: %s\n", i, fdn_errname(r));
			return 12;
		}
		if (t_mono_ms() - t0 > 60000)
			return 13;
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	printf("signal handler: %lu calls, %lu ok, %lu FDN_EREENTERED, %lu other (last %d)\n",
	       atomic_load(&sig_calls), atomic_load(&sig_ok), atomic_load(&sig_reentered),
	       atomic_load(&sig_other), atomic_load(&sig_other_code));
	fflush(stdout);
	if (atomic_load(&sig_other) != 0)
		return 14;
	if (atomic_load(&sig_ok) == 0)
		return 15;
	/* Every nested call that went through left nothing behind: only
	 * main-0 remains, and the span stack is empty. */
	if (fdn_count(sig_seg) != 1 || fdn_span_depth(sig_seg) != 0)
		return 16;
	/* Nothing left for the reaper to purge while the parent checks. */
	if (fdn_unregister(sig_seg, "main-0", 6) != 0)
		return 17;
	fdn_segment_detach(sig_seg);
	return 0;
}

Test(boundary, calls_from_a_signal_handler_never_corrupt, .timeout = 300)
{
	char name[64];
	t_name(name, sizeof(name), "signal");
	fdn_segment *s = t_create_reaped(name, 10000, 64);
	int r = in_child(signal_child, name);
	cr_assert_eq(r, 0, "child failed at step %d (128 + signal if it crashed)", r);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* ---- dlopen / dlclose with a pool thread ------------------------------------------- */

struct pool {
	int (*attach)(const char *, unsigned, fdn_segment **);
	int (*reg)(fdn_segment *, const char *, size_t, pid_t, const struct fdn_attr *, size_t,
		   unsigned, struct fdn_entry *);
	int (*detach)(fdn_segment *);
	const char *name;
	int ready[2], go[2];
	int result;
};

static void *pool_thread(void *arg)
{
	struct pool *p = arg;
	fdn_segment *s = NULL;
	/* Uses the library (its thread-exit destructor is now armed), then
	 * waits until the library has been closed, then exits. */
	p->result = p->attach(p->name, 0, &s);
	if (p->result == 0)
		p->result = p->reg(s, "pool", 4, getpid(), NULL, 0, FDN_REG_REPLACE, NULL);
	if (p->result == 0)
		p->result = p->detach(s);
	(void)!write(p->ready[1], "r", 1);
	char c;
	(void)!read(p->go[0], &c, 1);
	return NULL;
}

static int dlclose_child(void *arg)
{
	void *h = dlopen(FDN_SHARED_LIB, RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return 10;
	struct pool p = {.name = arg};
	*(void **)&p.attach = dlsym(h, "fdn_segment_attach");
	*(void **)&p.reg = dlsym(h, "fdn_register");
	*(void **)&p.detach = dlsym(h, "fdn_segment_detach");
	if (!p.attach || !p.reg || !p.detach || pipe(p.go) < 0 || pipe(p.ready) < 0)
		return 11;
	pthread_t t;
	pthread_create(&t, NULL, pool_thread, &p);
	/* Once the thread has used the library, close it under the thread. */
	char c;
	if (read(p.ready[0], &c, 1) != 1)
		return 14;
	if (dlclose(h) != 0)
		return 12;
	(void)!write(p.go[1], "x", 1);
	pthread_join(t, NULL); /* the thread exits after dlclose */
	return p.result == 0 ? 0 : 13;
}

Test(boundary, dlclose_with_a_pool_thread, .timeout = 60)
{
	char name[64];
	t_name(name, sizeof(name), "dlclose");
	fdn_segment *s = t_create_reaped(name, 1000, 64);
	for (int round = 0; round < 5; round++) {
		int r = in_child(dlclose_child, name);
		cr_assert_eq(r, 0, "round %d: child %d (128 + signal if it crashed)", round, r);
	}
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
