/* stress/stress.c - see stress.h. */
#include "stress.h"
#include "tests/reaper_idle.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef STRESS_REAPERD
#define STRESS_REAPERD "foundation-reaperd"
#endif
#ifndef STRESS_INSPECT
#define STRESS_INSPECT "foundation-inspect"
#endif

const char *st_prog = "stress";

#define MAX_CHILDREN 1024

static char seg_name[96];
static char seg_path[128];
static pid_t parent_pid;
/* Read by the signal handler: plain stores of whole pid_t words. */
static volatile pid_t children[MAX_CHILDREN];

uint64_t st_now_ns(void)
{
	return fdn__mono_ns(); /* the library's clock (shm/clock.c) */
}

void st_sleep_ns(uint64_t ns)
{
	struct timespec d = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	while (nanosleep(&d, &d) != 0 && errno == EINTR)
		;
}

/*
 * The parent stores pause = 1 and then waits for every worker's parked
 * flag; a worker between two operations parks.  After the wait the worker
 * clears parked and looks at pause once more before it goes on: all these
 * are seq_cst, so either the parent's load of parked comes after that
 * clear (it waits on) or the worker's look comes after the parent's
 * pause = 1 (it parks again).  Without the second look, a checkpoint that
 * began between the worker's last look and its clear took it for parked
 * while it went on into an operation: stress_killstorm under qemu-user
 * beside stress-ng then counted one entry more than the journals held.
 */
bool st_park(_Atomic int *pause, _Atomic int *stop, _Atomic int *parked)
{
	while (atomic_load(pause)) {
		atomic_store(parked, 1);
		while (atomic_load(pause) && !(stop && atomic_load(stop)))
			st_sleep_ns(200000);
		if (stop && atomic_load(stop))
			return true;
		atomic_store(parked, 0);
	}
	return false;
}

uint64_t st_rand(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1Dull;
}

uint64_t st_between(uint64_t *x, uint64_t lo, uint64_t hi)
{
	return lo + st_rand(x) % (hi - lo + 1);
}

void *st_shared(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "%s: mmap: %s\n", st_prog, strerror(errno));
		exit(1);
	}
	return p;
}

/* ---- options ------------------------------------------------------------- */

void st_parse(int argc, char **argv, struct st_opts *o, const char *usage_text,
	      const struct option *extra, int (*on_opt)(int c, const char *arg))
{
	struct option lo[32];
	static const struct option common[] = {{"seconds", required_argument, 0, 1000},
					       {"seed", required_argument, 0, 1001},
					       {"verbose", no_argument, 0, 1002},
					       {"help", no_argument, 0, 'h'}};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
		lo[n++] = common[i];
	for (size_t i = 0; extra && extra[i].name && n < 31; i++)
		lo[n++] = extra[i];
	lo[n] = (struct option){0, 0, 0, 0};
	if (o->seed == 0)
		o->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	opterr = 0;
	for (int c; (c = getopt_long(argc, argv, ":h", lo, NULL)) != -1;) {
		char *end = NULL;
		switch (c) {
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 1000:
			o->seconds = strtod(optarg, &end);
			if (*end || o->seconds <= 0 || o->seconds > 30 * 86400.0) {
				fprintf(stderr, "%s: --seconds %s: not a positive number\n",
					st_prog, optarg);
				exit(2);
			}
			break;
		case 1001:
			o->seed = strtoull(optarg, &end, 0);
			if (*end || o->seed == 0) {
				fprintf(stderr, "%s: --seed %s: not a non-zero integer\n", st_prog,
					optarg);
				exit(2);
			}
			break;
		case 1002:
			o->verbose = true;
			break;
		case '?':
		case ':':
			fprintf(stderr, "%s: %s: %s (see %s --help)\n", st_prog, argv[optind - 1],
				c == ':' ? "needs a value" : "unknown option", st_prog);
			exit(2);
		default:
			if (!on_opt || on_opt(c, optarg) != 0) {
				fprintf(stderr, "%s: %s %s: bad value (see %s --help)\n", st_prog,
					argv[optind - 1], optarg ? optarg : "", st_prog);
				exit(2);
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\" (see %s --help)\n", st_prog,
			argv[optind], st_prog);
		exit(2);
	}
}

/* ---- the segment and the children ---------------------------------------- */

static void kill_children(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0)
			kill(children[i], SIGKILL);
}

static void on_signal(int sig)
{
	/* In a forked child that has not reset its handlers: just die. */
	if (getpid() != parent_pid)
		_exit(128 + sig);
	kill_children();
	if (seg_path[0])
		unlink(seg_path); /* what shm_unlink does, async-signal-safe */
	_exit(128 + sig);
}

static void at_exit(void)
{
	if (getpid() == parent_pid)
		st_cleanup();
}

void st_setup(const char *prog, const char *tag)
{
	st_prog = prog;
	parent_pid = getpid();
	snprintf(seg_name, sizeof(seg_name), "fdn-stress-%s-%d", tag, (int)getpid());
	snprintf(seg_path, sizeof(seg_path), "/dev/shm/%s", seg_name);
	/* The programs start and kill the reaper themselves. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	atexit(at_exit);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

const char *st_segment(void)
{
	return seg_name;
}

fdn_segment *st_create(const struct fdn_segment_opts *o)
{
	fdn_segment *s;
	int r = fdn_segment_create(seg_name, o, &s);
	if (r) {
		fprintf(stderr, "%s: create segment \"%s\": %s\n", st_prog, seg_name,
			fdn_strerror(r));
		exit(1);
	}
	return s;
}

static void track(pid_t p)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			children[i] = p;
			return;
		}
	fprintf(stderr, "%s: more than %d children\n", st_prog, MAX_CHILDREN);
	kill(p, SIGKILL);
	exit(1);
}

void st_untrack(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

pid_t st_fork(void)
{
	fflush(stdout);
	fflush(stderr);
	pid_t p = fork();
	if (p < 0) {
		fprintf(stderr, "%s: fork: %s\n", st_prog, strerror(errno));
		exit(1);
	}
	if (p == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent_pid && parent_pid != 0)
			_exit(99); /* the parent died before prctl */
		return 0;
	}
	track(p);
	return p;
}

int st_kill_wait(pid_t pid)
{
	int st = 0;
	kill(pid, SIGKILL);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	st_untrack(pid);
	return st;
}

void st_cleanup(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		pid_t p = children[i];
		if (p > 0) {
			kill(p, SIGKILL);
			waitpid(p, NULL, 0);
			children[i] = 0;
		}
	}
	if (seg_name[0]) {
		fdn__seg_destroy(seg_name, NULL); /* ENOSEG when gone already: fine */
		seg_name[0] = 0;
		seg_path[0] = 0;
	}
}

/* ---- the reaper ------------------------------------------------------------ */

const char *st_reaperd_path(void)
{
	const char *p = getenv("FOUNDATION_REAPERD");
	return p && *p ? p : STRESS_REAPERD;
}

const char *st_inspect_path(void)
{
	const char *p = getenv("FOUNDATION_INSPECT");
	return p && *p ? p : STRESS_INSPECT;
}

pid_t st_reaper_start(void)
{
	const char *path = st_reaperd_path();
	pid_t p = st_fork();
	if (p == 0) {
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			if (fd > 2)
				close(fd);
		}
		if (getenv("STRESS_REAPER_VERBOSE"))
			execl(path, path, "--segment", seg_name, "--foreground", "--verbose",
			      (char *)NULL);
		execl(path, path, "--segment", seg_name, "--foreground", (char *)NULL);
		fprintf(stderr, "%s: exec %s: %s\n", st_prog, path, strerror(errno));
		_exit(127);
	}
	/* Wait until it holds the lease (a killed predecessor's is taken over
	 * once the kernel says that one is dead). */
	fdn_segment *ro;
	if (fdn__seg_attach(seg_name, FDN_SEG_READONLY, &ro) != 0) {
		fprintf(stderr, "%s: attach read-only: segment gone\n", st_prog);
		exit(1);
	}
	uint64_t deadline = st_now_ns() + 10000000000ull;
	while (fdn_reaper_holder(ro) != p) {
		int stw;
		if (waitpid(p, &stw, WNOHANG) == p) {
			fprintf(stderr,
				"%s: the reaper exited (status %#x) before taking the lease\n",
				st_prog, stw);
			exit(1);
		}
		if (st_now_ns() > deadline) {
			fprintf(stderr, "%s: the reaper (pid %d) did not take the lease in 10 s\n",
				st_prog, (int)p);
			exit(1);
		}
		st_sleep_ns(200000);
	}
	fdn__seg_detach(ro, false);
	return p;
}

/* One parser for the tests and this harness: tests/reaper_idle.h. */
bool st_reaper_idle(pid_t reaper)
{
	return fdn_test_reaper_idle(reaper) == 1;
}

/* ---- quiescence and the checker ------------------------------------------- */

/* Why the segment is not quiescent yet ("" if it is). */
static const char *unsettled(fdn_segment *s, pid_t reaper, char *why, size_t cap)
{
	why[0] = 0;
	for (uint32_t i = 0; i < s->nprocs; i++) {
		uint64_t w = atomic_load(&s->procs[i].word);
		if (w == 0)
			continue;
		if (FDN_PROC_GONE(w)) {
			snprintf(why, cap, "process slot %u (pid %u) awaits the reaper", i,
				 FDN_PROC_PID(w));
			return why;
		}
		if (!fdn__proc_alive(s, i, w)) {
			snprintf(why, cap, "process slot %u: pid %u is dead, not yet seen", i,
				 FDN_PROC_PID(w));
			return why;
		}
	}
	if (reaper > 0 && !st_reaper_idle(reaper))
		snprintf(why, cap, "the reaper (pid %d) is busy", (int)reaper);
	return why;
}

/* What holds the segment back: reader slots in a section or with an op in
 * flight, and where the reaper is. */
static void dump_state(fdn_segment *s, pid_t reaper)
{
	uint64_t gp = atomic_load(&s->hdr->gp_ctr);
	for (uint32_t i = 0; i < s->nthreads; i++) {
		struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t st = atomic_load(&ts->state), ctr = atomic_load(&ts->ctr);
		uint64_t d0 = atomic_load(&ts->delta[0]), d1 = atomic_load(&ts->delta[1]);
		if (!st || (ctr == 0 && !FDN_DELTA_OP(d0) && !FDN_DELTA_OP(d1)))
			continue;
		uint32_t o = FDN_TSLOT_OWNER(st);
		uint64_t w = o < s->nprocs ? atomic_load(&s->procs[o].word) : 0;
		fprintf(stderr,
			"  reader slot %u: ctr %llu (gp %llu) ops %u/%u limbo %llu; owner slot %u "
			"state %u pid %u\n",
			i, (unsigned long long)ctr, (unsigned long long)gp, FDN_DELTA_OP(d0),
			FDN_DELTA_OP(d1), (unsigned long long)fdn_tslot_pending(ts), o,
			FDN_PROC_STATE(w), FDN_PROC_PID(w));
	}
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)reaper);
	int fd = reaper > 0 ? open(path, O_RDONLY) : -1;
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n > 0) {
		buf[n] = 0;
		fprintf(stderr, "  reaper %d: syscall %s", (int)reaper, buf);
	}
}

int st_settle(fdn_segment *s, pid_t reaper, int timeout_ms)
{
	char why[160];
	uint64_t deadline = st_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	/* Twice in a row, 1 ms apart: a reaper seen asleep may have been
	 * woken by a death we have just looked past. */
	for (int calm = 0; calm < 2;) {
		if (unsettled(s, reaper, why, sizeof(why))[0]) {
			calm = 0;
			if (st_now_ns() > deadline) {
				fprintf(stderr, "%s: not quiescent after %d ms: %s\n", st_prog,
					timeout_ms, why);
				dump_state(s, reaper);
				return FDN_ETIMEDOUT;
			}
		} else {
			calm++;
		}
		st_sleep_ns(1000000);
	}
	return 0;
}

struct check_arg {
	const char *when;
	int printed;
	uint64_t leaks, others;
};

static void on_violation(void *arg, const char *code, const char *msg)
{
	struct check_arg *a = arg;
	if (strcmp(code, "note") == 0)
		return; /* not a violation (fdn_segment_check) */
	if (strcmp(code, "leak") == 0)
		a->leaks++;
	else
		a->others++;
	if (a->printed++ < 10)
		fprintf(stderr, "%s: %s: violation [%s] %s\n", st_prog, a->when, code, msg);
}

int st_check(fdn_segment *s, struct st_tally *t, const char *when)
{
	struct check_arg a = {when, 0, 0, 0};
	int n = fdn_segment_check(s, on_violation, &a);
	t->checks++;
	if (n < 0) {
		fprintf(stderr, "%s: %s: check failed: %s\n", st_prog, when, fdn_strerror(n));
		t->violations++;
		return n;
	}
	t->violations += a.others;
	t->leaked += a.leaks;
	return n;
}

void st_fail(struct st_tally *t, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: violation: ", st_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	t->violations++;
}

int st_summary(uint64_t ops, uint64_t kills, const struct st_tally *t, const char *fmt, ...)
{
	char extra[512] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(extra, sizeof(extra), fmt, ap);
	va_end(ap);
	printf("ops=%llu kills=%llu violations=%llu leaked=%llu checks=%llu%s%s\n",
	       (unsigned long long)ops, (unsigned long long)kills,
	       (unsigned long long)t->violations, (unsigned long long)t->leaked,
	       (unsigned long long)t->checks, extra[0] ? " " : "", extra);
	fflush(stdout);
	return t->violations == 0 && t->leaked == 0 ? 0 : 1;
}

bool st_raw_present(fdn_segment *s, const char *k)
{
	struct fdn__thread *t;
	struct fdn__ht_view v;
	if (fdn__rcu_read_lock(s, &t))
		return true;
	bool here = fdn__ht_lookup(s, 0, k, strlen(k), &v) == 0;
	fdn__rcu_read_unlock(t);
	return here;
}
