/* bench/bench_common.c - see bench_common.h: signals and the cleanup of what a
 * run creates (segments, LMDB directories, redis-server), options, timing,
 * LMDB, starting and stopping redis-server.  The RESP client is
 * bench_redis.c, the results bench_report.c, the rounds bench_rounds.c. */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_SHM_TRACKED 8
static char bench_shm_paths[BENCH_SHM_TRACKED][512];
volatile sig_atomic_t bench_kill_pid, bench_term_pid;
#define BENCH_LMDB_TRACKED 4
static char bench_lmdb_files[BENCH_LMDB_TRACKED][2][96]; /* data.mdb, lock.mdb */
static char bench_lmdb_dir[BENCH_LMDB_TRACKED][64];
static volatile sig_atomic_t bench_redis_pid;
static char bench_redis_sock[96], bench_redis_dir[64];

void bench_on_signal(int sig)
{
	if (bench_kill_pid > 0)
		kill((pid_t)bench_kill_pid, SIGKILL);
	for (int i = 0; i < BENCH_SHM_TRACKED; i++)
		if (bench_shm_paths[i][0])
			unlink(bench_shm_paths[i]);
	if (bench_term_pid > 0)
		kill((pid_t)bench_term_pid, SIGTERM);
	for (int e = 0; e < BENCH_LMDB_TRACKED; e++) {
		for (int i = 0; i < 2; i++)
			if (bench_lmdb_files[e][i][0])
				unlink(bench_lmdb_files[e][i]);
		if (bench_lmdb_dir[e][0])
			rmdir(bench_lmdb_dir[e]);
	}
	if (bench_redis_pid > 0)
		kill((pid_t)bench_redis_pid, SIGTERM);
	if (bench_redis_sock[0])
		unlink(bench_redis_sock);
	if (bench_redis_dir[0])
		rmdir(bench_redis_dir);
	signal(sig, SIG_DFL);
	raise(sig);
}

int bench_shm_track(const char *name)
{
	for (int i = 0; i < BENCH_SHM_TRACKED; i++) {
		if (bench_shm_paths[i][0])
			continue;
		/* Fill, then publish the first byte: a handler never sees half a
		 * path. */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s/%s", bench_shm_dir(), name);
		memcpy(bench_shm_paths[i] + 1, tmp + 1, sizeof(tmp) - 1);
		bench_shm_paths[i][0] = tmp[0];
		return i;
	}
	return -1;
}

void bench_shm_untrack(int slot)
{
	if (slot >= 0 && slot < BENCH_SHM_TRACKED)
		bench_shm_paths[slot][0] = 0;
}

void bench_set_signals(void (*handler)(int))
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

uint64_t bench_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_cli_opt(struct bench_cli *c, int opt, void (*usage)(FILE *))
{
	switch (opt) {
	case 'j':
		c->json = true;
		return 0;
	case 'f':
		c->json_path = optarg;
		return 0;
	case 'q':
		c->quick = true;
		return 0;
	case 'h':
		usage(stdout);
		return 1;
	default:
		usage(stderr);
		return 2;
	}
}

int bench_cli_end(const struct bench_cli *c, int argc, char **argv, void (*usage)(FILE *))
{
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", bench_prog, argv[optind]);
		usage(stderr);
		return 2;
	}
	if (c->json && c->json_path) {
		fprintf(stderr, "%s: --json and --json-file: choose one\n", bench_prog);
		return 2;
	}
	return 0;
}

int bench_fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
}

uint64_t bench_xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

#ifdef HAVE_LMDB
int bench_lmdb_fail(const char *what, int rc)
{
	fprintf(stderr, "%s: lmdb: %s: %s\n", bench_prog, what, mdb_strerror(rc));
	return -1;
}

int bench_lmdb_open(struct bench_lmdb *d, const char *tag, size_t mapsize)
{
	d->slot = -1;
	d->env = NULL;
	snprintf(d->dir, sizeof(d->dir), "/tmp/%s-lmdb-XXXXXX", tag);
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "%s: lmdb: mkdtemp %s: %s\n", bench_prog, d->dir, strerror(errno));
		d->dir[0] = 0;
		return -1;
	}
	/* Tracked for bench_on_signal in a free slot (a handler removes the
	 * files, then the directory). */
	for (int e = 0; e < BENCH_LMDB_TRACKED && d->slot < 0; e++) {
		if (bench_lmdb_dir[e][0])
			continue;
		d->slot = e;
		snprintf(bench_lmdb_files[e][0], sizeof(bench_lmdb_files[e][0]), "%s/data.mdb",
			 d->dir);
		snprintf(bench_lmdb_files[e][1], sizeof(bench_lmdb_files[e][1]), "%s/lock.mdb",
			 d->dir);
		snprintf(bench_lmdb_dir[e], sizeof(bench_lmdb_dir[e]), "%s", d->dir);
	}
	int rc = mdb_env_create(&d->env);
	if (rc) {
		d->env = NULL;
		return bench_lmdb_fail("create environment", rc);
	}
	if ((rc = mdb_env_set_mapsize(d->env, mapsize)))
		return bench_lmdb_fail("set map size", rc);
	rc = mdb_env_open(d->env, d->dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP, 0600);
	if (rc)
		return bench_lmdb_fail("open environment", rc);
	return 0;
}

void bench_lmdb_close(struct bench_lmdb *d)
{
	if (d->env)
		mdb_env_close(d->env);
	d->env = NULL;
	for (int i = 0; i < 2 && d->dir[0]; i++) {
		char f[96];
		snprintf(f, sizeof(f), "%s/%s", d->dir, i ? "lock.mdb" : "data.mdb");
		if (unlink(f) < 0 && errno != ENOENT)
			fprintf(stderr, "%s: lmdb: remove %s: %s\n", bench_prog, f,
				strerror(errno));
	}
	if (d->dir[0] && rmdir(d->dir) < 0)
		fprintf(stderr, "%s: lmdb: remove %s: %s\n", bench_prog, d->dir, strerror(errno));
	d->dir[0] = 0;
	if (d->slot >= 0) {
		bench_lmdb_dir[d->slot][0] = 0;
		bench_lmdb_files[d->slot][0][0] = bench_lmdb_files[d->slot][1][0] = 0;
	}
	d->slot = -1;
}
#endif

/* ---- redis-server ------------------------------------------------------------ */

/* The first executable `name` in $PATH, into path. */
static bool which(const char *name, char *path, size_t cap)
{
	const char *p = getenv("PATH");
	if (!p || !*p)
		p = "/usr/local/bin:/usr/bin:/bin";
	while (*p) {
		size_t n = strcspn(p, ":");
		if (n && (size_t)snprintf(path, cap, "%.*s/%s", (int)n, p, name) < cap &&
		    access(path, X_OK) == 0)
			return true;
		p += n;
		if (*p == ':')
			p++;
	}
	return false;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int redis_connect(struct bench_redis *r)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", r->sock);
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return bench_fail("redis: socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			r->fd = fd;
			return 0;
		}
		close(fd);
		int st;
		if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
			r->pid = 0;
			bench_redis_pid = 0;
			return bench_fail(
			    "redis: redis-server exited before it listened (status 0x%x)", st);
		}
		sleep_ms(10);
	}
	return bench_fail("redis: no connection on %s after 5 s", r->sock);
}

int bench_redis_start(struct bench_redis *r)
{
	char exe[512];
	*r = (struct bench_redis){.fd = -1};
	if (!which("redis-server", exe, sizeof(exe)))
		return 1;
	snprintf(r->dir, sizeof(r->dir), "/tmp/%s-redis-XXXXXX", bench_prog);
	if (!mkdtemp(r->dir)) {
		r->dir[0] = 0;
		return bench_fail("redis: mkdtemp: %s", strerror(errno));
	}
	snprintf(bench_redis_dir, sizeof(bench_redis_dir), "%s", r->dir);
	snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
	snprintf(bench_redis_sock, sizeof(bench_redis_sock), "%s", r->sock);
	pid_t parent = getpid();
	pid_t p = fork();
	if (p < 0) {
		bench_fail("redis: fork: %s", strerror(errno));
		bench_redis_stop(r);
		return -1;
	}
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		/* No TCP, no RDB snapshots, no AOF: memory only. */
		execl(exe, exe, "--port", "0", "--unixsocket", r->sock, "--unixsocketperm", "700",
		      "--save", "", "--appendonly", "no", "--dir", r->dir, "--daemonize", "no",
		      "--loglevel", "warning", "--logfile", "", (char *)NULL);
		_exit(127);
	}
	r->pid = p;
	bench_redis_pid = p;
	if (redis_connect(r)) {
		bench_redis_stop(r);
		return -1;
	}
	struct bench_resp rep;
	const char *ping[] = {"PING"};
	if (bench_redis_call(r, 1, ping, NULL, &rep) || rep.type != '+') {
		if (rep.type != '+')
			bench_fail("redis: PING: unexpected reply");
		bench_redis_stop(r);
		return -1;
	}
	return 0;
}

void bench_redis_stop(struct bench_redis *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		int st;
		while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	r->pid = 0;
	bench_redis_pid = 0;
	if (r->sock[0] && unlink(r->sock) < 0 && errno != ENOENT)
		bench_fail("redis: remove %s: %s", r->sock, strerror(errno));
	r->sock[0] = 0;
	bench_redis_sock[0] = 0;
	if (r->dir[0] && rmdir(r->dir) < 0)
		bench_fail("redis: remove %s: %s", r->dir, strerror(errno));
	r->dir[0] = 0;
	bench_redis_dir[0] = 0;
	free(r->wbuf);
	free(r->rbuf);
	r->wbuf = r->rbuf = NULL;
	r->wlen = r->wcap = r->rpos = r->rlen = r->rcap = 0;
}
