/*
 * bench/bench_common.h - what the benchmark programs share: cleanup of
 * what they create when a signal ends them, the random stream, the LMDB
 * environment in a temporary directory, a private redis-server with a
 * small RESP client, the one way every program compares systems
 * (interleaved rounds, below), the machine's state and where each system's
 * memory lives, and the one result format the programs print (a human
 * table, and one JSON object per result).  Defined in bench_common.c
 * (cleanup, options, timing, LMDB, redis-server's process), bench_redis.c
 * (the RESP client), bench_rounds.c (the rounds) and bench_report.c (the
 * results, the machine, memory).
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
extern volatile sig_atomic_t bench_kill_pid; /* SIGKILLed (a child) */
extern volatile sig_atomic_t bench_term_pid; /* SIGTERMed (a reaper) */

/* Segments to unlink on a signal: track the segment's name (its file in
 * bench_shm_dir()) once it exists, untrack it once destroyed.  The slot,
 * or -1 when all 8 are taken (the segment is then not cleaned up). */
int bench_shm_track(const char *name);
void bench_shm_untrack(int slot);

/* Clean up as above, then die of the signal. */
void bench_on_signal(int sig);
/* Install handler (bench_on_signal, or SIG_DFL) for SIGINT, SIGTERM, SIGHUP. */
void bench_set_signals(void (*handler)(int));

/* The options the programs share: --json, --json-file PATH, --quick,
 * --help (getopt_long values 'j', 'f', 'q', 'h'). */
struct bench_cli {
	bool json, quick;
	const char *json_path;
};

/* Their entries of a getopt_long table (<getopt.h>). */
/* clang-format off */
#define BENCH_CLI_LONGOPTS                                                                         \
	{"json", no_argument, NULL, 'j'}, {"json-file", required_argument, NULL, 'f'},             \
	{"quick", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}
/* clang-format on */

/* Record option opt of getopt_long (optarg its argument) when it is one of
 * the shared ones: 0; --help: usage on stdout, 1; anything else: usage on
 * stderr, 2 (bad usage).  Call it for the options a program does not
 * handle itself. */
int bench_cli_opt(struct bench_cli *c, int opt, void (*usage)(FILE *));
/* After getopt_long: 0, or 2 (said) on a stray argument or --json with
 * --json-file. */
int bench_cli_end(const struct bench_cli *c, int argc, char **argv, void (*usage)(FILE *));

/* "prog: message" and a newline on stderr; returns -1. */
__attribute__((format(printf, 1, 2))) int bench_fail(const char *fmt, ...);

uint64_t bench_xorshift64(uint64_t *s);
uint64_t bench_mono_ns(void);

#ifdef HAVE_LMDB
struct bench_lmdb {
	MDB_env *env;
	MDB_dbi dbi;
	char dir[64];
	int slot; /* of the signal cleanup, or -1 */
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

/* Statistics of the per-round values: median, min, p10, p90, max. */
enum { BENCH_MED, BENCH_MIN, BENCH_P10, BENCH_P90, BENCH_MAX, BENCH_NSTAT };

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
	/* Filled by bench_rounds_fill (rounds > 0): each row's ops/s and each
	 * ordered pair's ratio, as statistics of the per-round values. */
	unsigned rounds;
	char how[160]; /* how the rounds ran, for both outputs */
	double sys_stat[BENCH_MAX_SYS][BENCH_NSTAT];
	double ratio_stat[BENCH_MAX_SYS][BENCH_MAX_SYS][BENCH_NSTAT];
	bool has_ratio[BENCH_MAX_SYS][BENCH_MAX_SYS];
	size_t nshow;
	unsigned char show[BENCH_MAX_TARGETS][2]; /* extra ratios printed: rows */
	char memory[3072];                        /* JSON members, bench_memory */
	char memtext[3072];                       /* the same, human */
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

/* Print the ratio num/den (per-round median and spread) under the table
 * too (the first row's ratio to every other is always printed). */
void bench_show_ratio(struct bench_result *r, const char *num, const char *den);

/* Where results go: with json, JSON lines to stdout and the tables to
 * stderr; with json_path, the tables to stdout and JSON lines to that file
 * (created or truncated); else tables to stdout only.  0 or -1 (said). */
int bench_output_open(bool json, const char *json_path);
void bench_output_close(void);
/* Print one result to the outputs chosen. */
void bench_emit(const struct bench_result *r);
/* A line of text for the human output only (a heading, a remark). */
__attribute__((format(printf, 1, 2))) void bench_say(const char *fmt, ...);

/* ---- interleaved rounds ------------------------------------------------------
 *
 * The one way the programs compare systems.  Every system is built first;
 * then bench_rounds_run runs rounds: in each round every system runs the
 * same slice of the program's operation stream (positions at .. at + ops),
 * one after the other, timed with CLOCK_MONOTONIC around the slice alone,
 * and the order rotates from round to round (A B C, B C A, C A B, ...), so
 * that a burst of load from other processes lands on one round rather than
 * on one system, and no system always runs first (cold) or right after
 * another (that left it a cache in some state).  Per round each system's
 * rate is ops done / time; each ratio is taken within the round; what is
 * reported is the median of those per-round values with their spread.
 *
 * Slice length: the first warm-up round runs min_ops per system and
 * calibrates: ops = round_ms / (the sum over systems of the time per
 * requested operation), clamped to [min_ops, stream_len]; the other
 * warm-up rounds run that length, untimed for the results; every measured
 * round runs the same length.  A system may do fewer operations than asked
 * (e.g. a prefix of the slice, for a slow remote server): its rate is what
 * it did over its time.  With prewarm, each system first runs the first
 * quarter of its slice untimed, so that what the previous system left in
 * the caches is not charged to it: the rates are then those of a warm
 * system, as a long run of one system would measure.  With warm_ops, the untimed
 * run is that many operations from half the stream away: enough to leave
 * a small system as warm as a long run of it alone would (the first
 * quarter of the slice warms only the keys then timed). */

/* Run system sys on positions [at, at + ops) of the stream: the number of
 * operations done (1..ops), or -1 on a failure (said). */
typedef int64_t (*bench_slice_fn)(void *arg, size_t sys, uint64_t at, uint64_t ops);
/* Untimed, before and after each slice (e.g. a sampler set for one row
 * only); NULL: nothing.  prepare returns 0 or -1 (said). */
typedef int (*bench_prepare_fn)(void *arg, size_t sys);
typedef void (*bench_finish_fn)(void *arg, size_t sys);

struct bench_rounds {
	/* in */
	size_t nsys;
	unsigned rounds;     /* measured rounds */
	unsigned warmup;     /* rounds run first and dropped (>= 1: calibration) */
	double round_ms;     /* target duration of one round, all systems */
	uint64_t stream_len; /* at + ops <= stream_len */
	uint64_t min_ops;    /* per slice, at least (and the calibration slice) */
	bool prewarm;        /* run ops / 4 of each slice untimed first */
	uint64_t warm_ops;   /* with prewarm: the untimed run's length, from
				elsewhere in the stream (0: ops / 4 of the slice) */
	bench_slice_fn run;
	bench_prepare_fn prepare;
	bench_finish_fn finish;
	void *arg;
	/* out */
	uint64_t ops;      /* slice length chosen */
	double elapsed_ms; /* measured rounds, wall clock */
	double *rate;      /* rounds x nsys ops/s (malloc'd; bench_rounds_free) */
};

/* Run the rounds.  0, or -1 (said; a slice failed or out of memory). */
int bench_rounds_run(struct bench_rounds *b);
/* Fill r's rows from the rounds: row[i] is system i's row (bench_add).
 * v[0] = median ops/s; r->sys_stat, r->ratio_stat as documented above. */
void bench_rounds_fill(const struct bench_rounds *b, struct bench_result *r,
		       struct bench_sys *const *row);
/* The same from any rounds x n matrix of rates (row-major; a round's rates
 * measured interleaved, as bench_rounds_run does): what a program that
 * runs its rounds itself (fdn-bench-registry's read_scaling: windows of
 * forked processes) reports the same way.  r->how is the caller's. */
void bench_rates_fill(struct bench_result *r, struct bench_sys *const *row, const double *rate,
		      size_t rounds, size_t n);
void bench_rounds_free(struct bench_rounds *b);

/* Sort v (n values) and return its q-quantile (0..1, linear between ranks). */
double bench_quantile(double *v, size_t n, double q);

/* ---- the machine and the memory --------------------------------------------
 *
 * bench_machine prints the machine's state (load average, CPU model, CPUs
 * online, kernel, transparent huge pages for anonymous memory and shmem,
 * the file system and mount options of the segment directory) to the
 * human output and as one JSON line {"machine":"start"|"end",...}; call it
 * at the start and at the end of a program. */
void bench_machine(const char *when);

/* The directory segments live in: $FOUNDATION_SHM_DIR, else /dev/shm. */
const char *bench_shm_dir(void);

/* Where [addr, addr + len) lives: the mappings of /proc/self/smaps that
 * overlap it, their sizes and huge-page counters (AnonHugePages,
 * ShmemPmdMapped, FilePmdMapped, KernelPageSize), recorded under system id
 * (what: "segment", "slot array", ...) in r's "memory" member and under
 * its table.  addr NULL: recorded as not located. */
void bench_memory(struct bench_result *r, const char *id, const char *what, const void *addr,
		  size_t len);

#endif
