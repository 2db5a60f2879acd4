/*
 * bench/bench_common.h - what the benchmark programs share: cleanup of
 * what they create when a signal ends them, the random stream, the LMDB
 * environment in a temporary directory, a private redis-server with a
 * small RESP client, and the one result format both programs print (a
 * human table, and one JSON object per result).
 */
#ifndef FDN_BENCH_COMMON_H
#define FDN_BENCH_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

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
uint64_t bench_mono_ns(void);

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

/* ---- redis-server on a private unix socket -------------------------------
 *
 * bench_redis_start runs `redis-server` (found in $PATH) with no TCP port,
 * no persistence, listening on a socket in a new /tmp directory, and
 * connects to it.  The server dies with this process (PR_SET_PDEATHSIG),
 * and bench_on_signal stops it and removes the directory.  The client
 * speaks RESP directly: commands are appended to a buffer and sent by
 * bench_redis_flush, so that k commands flushed at once are k pipelined
 * requests; replies are read one at a time. */
struct bench_redis {
	pid_t pid;
	int fd;
	char dir[64], sock[96];
	char *wbuf, *rbuf;
	size_t wlen, wcap, rpos, rlen, rcap;
};

/* One reply.  str points into the client's buffer: valid until the next
 * bench_redis_reply.  type: '+' status, '-' error, ':' integer, '$' bulk
 * (len, or nil with is_nil). */
struct bench_resp {
	char type;
	bool is_nil;
	int64_t integer;
	const char *str;
	size_t len;
};

/* 0 started; 1 no redis-server in $PATH (nothing said); -1 failed (said). */
int bench_redis_start(struct bench_redis *r);
void bench_redis_stop(struct bench_redis *r);
/* Append one command of argc arguments (lens[i] bytes each; lens NULL:
 * NUL-terminated strings). */
int bench_redis_cmd(struct bench_redis *r, int argc, const char *const *argv, const size_t *lens);
/* Send what is buffered.  0 or -1 (said). */
int bench_redis_flush(struct bench_redis *r);
/* Read the next reply.  0 or -1 (said: connection or protocol error). */
int bench_redis_reply(struct bench_redis *r, struct bench_resp *out);
/* One command, flushed, its reply read: 0, or -1 (said) also on an error
 * reply. */
int bench_redis_call(struct bench_redis *r, int argc, const char *const *argv, const size_t *lens,
		     struct bench_resp *out);

/* ---- results -------------------------------------------------------------
 *
 * One result is one scenario with its parameters and every system measured
 * in it, in the same run.  The human form is a table (value, ns per
 * operation for rates, and the first system's value divided by each
 * other's) followed by the targets; the JSON form is one object per line:
 *
 *   {"scenario":"lookup_hit","program":"fdn-bench","loadavg_1m":0.31,
 *    "params":{"entries":10000,...},"unit":"lookups_per_s",
 *    "systems":{"foundation":8.6e7,...},
 *    "ratios":{"foundation/plain":0.68,"plain/foundation":1.47,...},
 *    "notes":{"redis":"first 20000 lookups of the stream"},
 *    "targets":[{"what":"foundation/plain","op":">=","limit":0.7,
 *                "measured":0.65,"met":false}]}
 *
 * ratios holds every ordered pair of measured systems.  Latency results
 * (kind BENCH_LATENCY) give each system {"p50_us","p99_us","max_us"} and
 * no ratios. */
enum bench_kind { BENCH_RATE, BENCH_LATENCY, BENCH_BYTES };

#define BENCH_MAX_SYS     16
#define BENCH_MAX_TARGETS 8

struct bench_sys {
	const char *id;    /* JSON key: [a-z0-9_] */
	const char *label; /* human table */
	double v[3];       /* RATE, BYTES: v[0]; LATENCY: p50, p99, max (us) */
	const char *note;  /* or NULL; a system with a note and no value is
			      listed as not measured */
};

struct bench_target {
	char what[64];
	bool at_most; /* measured <= limit; else measured >= limit */
	double limit, measured;
};

struct bench_result {
	const char *scenario;
	enum bench_kind kind;
	const char *unit; /* JSON unit, e.g. "lookups_per_s" */
	const char *col;  /* human column heading, e.g. "lookups/s" */
	char title[256];  /* human heading */
	char params[512]; /* JSON members, built by bench_param */
	size_t n;
	struct bench_sys sys[BENCH_MAX_SYS];
	size_t ntargets;
	struct bench_target targets[BENCH_MAX_TARGETS];
};

void bench_result_init(struct bench_result *r, const char *scenario, enum bench_kind kind,
		       const char *unit, const char *col);
/* Append one parameter: name and a JSON value built from fmt. */
__attribute__((format(printf, 3, 4))) void bench_param(struct bench_result *r, const char *name,
						       const char *fmt, ...);
__attribute__((format(printf, 2, 3))) void bench_title(struct bench_result *r, const char *fmt,
						       ...);
/* A new system row (zeroed), or NULL when the table is full. */
struct bench_sys *bench_add(struct bench_result *r, const char *id, const char *label);
/* v[0] of system id, 0 when absent or not measured. */
double bench_value(const struct bench_result *r, const char *id);
/* Target: value(num) / value(den) >= min; skipped when either is missing. */
void bench_target_ratio(struct bench_result *r, const char *num, const char *den, double min);
/* Target on a measured quantity: measured <= limit (at_most) or >= limit. */
void bench_target(struct bench_result *r, const char *what, double measured, bool at_most,
		  double limit);

/* Where results go: with json, JSON lines to stdout and the tables to
 * stderr; with json_path, the tables to stdout and JSON lines to that file
 * (created or truncated); else tables to stdout only.  0 or -1 (said). */
int bench_output_open(bool json, const char *json_path);
void bench_output_close(void);
/* Print one result to the outputs chosen. */
void bench_emit(const struct bench_result *r);
/* A line of text for the human output only (a heading, a remark). */
__attribute__((format(printf, 1, 2))) void bench_say(const char *fmt, ...);

#endif
