/*
 * bench/bench_common.h - what the benchmark programs share: cleanup of
 * what they create when a signal ends them, the random stream, and the
 * LMDB environment in a temporary directory.
 */
#ifndef FDN_BENCH_COMMON_H
#define FDN_BENCH_COMMON_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef HAVE_LMDB
#include <lmdb.h>
#endif

/* The program's name in messages (each program defines it). */
extern const char *const bench_prog;

/* What bench_on_signal removes or stops: async-signal-safe calls only.
 * Set a path to "" (or a pid to 0) once it is cleaned up normally. */
extern char bench_shm_path[256];             /* "/dev/shm/<segment>" */
extern volatile sig_atomic_t bench_kill_pid; /* SIGKILLed (a child) */
extern volatile sig_atomic_t bench_term_pid; /* SIGTERMed (a reaper) */

/* Clean up as above, then die of the signal. */
void bench_on_signal(int sig);
/* Install handler (bench_on_signal, or SIG_DFL) for SIGINT, SIGTERM, SIGHUP. */
void bench_set_signals(void (*handler)(int));

uint64_t bench_xorshift64(uint64_t *s);

#ifdef HAVE_LMDB
struct bench_lmdb {
	MDB_env *env;
	MDB_dbi dbi;
	char dir[64];
};

/* An environment of mapsize bytes in a new /tmp/<tag>-XXXXXX directory,
 * removed by bench_lmdb_close (or by bench_on_signal).  0 or -1 (said). */
int bench_lmdb_open(struct bench_lmdb *d, const char *tag, size_t mapsize);
/* Close the environment and remove its files and directory. */
void bench_lmdb_close(struct bench_lmdb *d);
/* "prog: lmdb: what: why" on stderr; returns -1. */
int bench_lmdb_fail(const char *what, int rc);
#endif

#endif
