/* bench/bench_common.c - see bench_common.h. */
#include "bench_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char bench_shm_path[256];
volatile sig_atomic_t bench_kill_pid, bench_term_pid;
static char bench_lmdb_files[2][96]; /* data.mdb, lock.mdb */
static char bench_lmdb_dir[64];

void bench_on_signal(int sig)
{
	if (bench_kill_pid > 0)
		kill((pid_t)bench_kill_pid, SIGKILL);
	if (bench_shm_path[0])
		unlink(bench_shm_path);
	if (bench_term_pid > 0)
		kill((pid_t)bench_term_pid, SIGTERM);
	for (int i = 0; i < 2; i++)
		if (bench_lmdb_files[i][0])
			unlink(bench_lmdb_files[i]);
	if (bench_lmdb_dir[0])
		rmdir(bench_lmdb_dir);
	signal(sig, SIG_DFL);
	raise(sig);
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
	snprintf(d->dir, sizeof(d->dir), "/tmp/%s-lmdb-XXXXXX", tag);
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "%s: lmdb: mkdtemp %s: %s\n", bench_prog, d->dir, strerror(errno));
		d->dir[0] = 0;
		return -1;
	}
	snprintf(bench_lmdb_dir, sizeof(bench_lmdb_dir), "%s", d->dir);
	snprintf(bench_lmdb_files[0], sizeof(bench_lmdb_files[0]), "%s/data.mdb", d->dir);
	snprintf(bench_lmdb_files[1], sizeof(bench_lmdb_files[1]), "%s/lock.mdb", d->dir);
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
	for (int i = 0; i < 2; i++) {
		if (bench_lmdb_files[i][0] && unlink(bench_lmdb_files[i]) < 0 && errno != ENOENT)
			fprintf(stderr, "%s: lmdb: remove %s: %s\n", bench_prog,
				bench_lmdb_files[i], strerror(errno));
		bench_lmdb_files[i][0] = 0;
	}
	if (d->dir[0] && rmdir(d->dir) < 0)
		fprintf(stderr, "%s: lmdb: remove %s: %s\n", bench_prog, d->dir, strerror(errno));
	d->dir[0] = 0;
	bench_lmdb_dir[0] = 0;
}
#endif
