/*
 * bench_registry.c - fdn-bench-registry: the registry's public API, against
 * process-local liburcu cds_lfht and LMDB doing the same work.
 *
 * What is measured, all in one run:
 *
 * 1. reaper_latency.  A private segment with the library's default sizing;
 *    the library starts its reaper from $FOUNDATION_REAPERD (set here to
 *    ../tools/foundation-reaperd next to this program when unset).  For
 *    E = 1 and E = 1000: fork a child that attaches, registers E keys for
 *    itself (attributes capability and node, both indexed), says so through
 *    a MAP_SHARED page and pauses.  1 ms later (the reaper opened the
 *    child's pidfd when its attach rang the doorbell) the parent reads
 *    CLOCK_MONOTONIC, SIGKILLs the child and blocks in fdn_watch(last key,
 *    absent); then all E keys must miss fdn_lookup.  Per death:
 *      parent   kill -> fdn_watch returns: what another process sees;
 *      reaper   the graveyard's latency_ns: the reaper's wake-up to the
 *               owner's slot marked dead (which hides all its entries);
 *      purged   kill -> the graveyard record appears: the reaper writes it
 *               after removing the entries and their index references
 *               (polled every 10 us).
 *      kernel   interleaved with those, as many deaths of the same kind
 *               timed by the parent's own pidfd of the child: kill -> the
 *               kernel reports it gone, the share no reaper can remove.
 *    200 deaths of each kind per E (--quick: 20); p50, p99 (nearest rank)
 *    and max.
 *
 * 2. register_unregister.  10 000 background entries "agent-%08d"
 *    (capability one of 8 values, integer weight); then P pairs register +
 *    unregister of the next 4096 keys in turn, with the same 2 attributes,
 *    capability indexed:
 *      foundation           fdn_register + fdn_unregister, capability one of
 *                           the background's 8 values;
 *      foundation (unique)  the same with a value no other entry carries
 *                           (the index chain of a value holds every entry
 *                           carrying it: this row shows what that costs);
 *      cds_lfht             malloc a node, encode the attributes, add_unique;
 *                           lookup + del; nodes freed after synchronize_rcu
 *                           every 1024 deletions (timed);
 *      cds_lfht+index       the same plus a (value, key) reference added and
 *                           deleted in a second cds_lfht, as Foundation's
 *                           index does (hashed over the whole reference);
 *      lmdb (txn per pair)  put + del in one write transaction per pair;
 *      lmdb (batched)       1000 pairs per write transaction.
 *      redis                SET key record NX, then DEL, to a redis-server
 *                           this program starts on a private unix socket
 *                           (bench_common.c): one round trip per command on
 *                           the first --redis-pairs pairs, and 64 pairs
 *                           per round trip.
 *    LMDB runs with MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP in a /tmp
 *    directory removed afterwards.
 *
 * 3. read_scaling and read_under_churn.  A segment of 1 000 000 entries
 *    (--quick: 10 000; one int attribute each, not indexed); k = 1, 2, .. CPUs
 *    reader processes, forked, each attached anew, each looking up its own
 *    random stream of present keys with fdn_lookup; alone, beside one
 *    more process registering and unregistering 4096 other keys as fast as
 *    it can, and beside one that only burns CPU (never maps the segment:
 *    what the readers lose beside it is the machine's -- a CPU shared
 *    with a sibling thread or another guest -- not the registry's).  They
 *    start together and stop after a 250 ms window (100 ms); each reader
 *    times itself and the readers' lookups/s are summed.  15 rounds (3),
 *    each running every configuration (k readers x alone, writer,
 *    spinner) once, in an order that rotates from round to round; each
 *    ratio is taken within a round, and the medians of the per-round
 *    values are reported with their spread (bench_rates_fill).
 *    read_scaling gives k readers against 1 (target 2 >= 1.8 x 1);
 *    read_under_churn, per k, with the writer against alone (target
 *    >= 0.9 while k < CPUs: the writer has a CPU of its own), with the
 *    spinner against alone (no target), and the writer's pairs/s beside 2
 *    readers (target >= 100 000).  Every lookup must hit the right owner.
 *
 * 4. memory.  1 000 000 entries (--quick: 100 000), 14-byte keys, one
 *    string attribute (not indexed) encoding to 64 bytes, registered into
 *    a fresh segment; bytes per entry from fdn_segment_stats: the
 *    allocator's blocks in use (after - before), with the bucket arrays,
 *    and with the allocator's block state words of the heap pages claimed
 *    (8 bytes per 64-byte granule, layout.h), against the payload (key +
 *    attribute bytes); target <= 1.5 x payload + 64 on the last.
 *
 * 5. changefeed_latency.  S = 1 and S = 16 subscriber processes (forked,
 *    each attached anew, each with a subscription to "lat/" in an epoll
 *    loop); the parent registers N keys (2000; --quick 200), one every
 *    200 us.  For every (change, subscriber) pair: the change's time_ns
 *    (CLOCK_REALTIME, taken by the writer just before its CAS) to the
 *    moment fdn_subscription_read returned it in the subscriber, after
 *    epoll said the fd was readable.  p50, p99, max; target p99 <= 1 ms.
 *
 * 6. changefeed_throughput.  register + unregister pairs (no attributes,
 *    4096 keys in turn) on four segments built first: one created with the
 *    change log off, and three with it on and 0, 1 and 16 subscriber
 *    processes reading everything as it comes (epoll loops); interleaved
 *    rounds as in 2, after one untimed lap of the log on each segment (its
 *    pages faulted in).  Target: log on, no subscriber >= 0.9 x log off.
 *
 * 7. stopped_reader.  A segment sized for 1 000 000 entries (so a writer's
 *    backlog bound is its FDN_SPILL_MAX chunks), the 10 000 background
 *    entries of 2, and one reader process doing fdn_whereis in a loop.
 *    Interleaved rounds of register+unregister pairs as in 2 (8 ms a
 *    round, short enough to stay under the bound): the writer beside the
 *    reader looking up, and beside it stopped inside a section (a
 *    fdn_lookup_view callback that raises SIGSTOP; SIGCONT after the
 *    slice).  Target: stopped >= 0.9 x running.  Then one long stop, 10 s
 *    (--quick 1 s): pairs until the first FDN_EBUSY, how long that call
 *    waited (the flush bound), how fast the calls after it fail, the
 *    blocks waiting and the pid fdn_segment_stats names as holding them
 *    back (must be the reader's: the inspector shows the same), and after
 *    SIGCONT how long until a pair succeeds and the waiting blocks are
 *    drained.
 *
 * The compared systems of 2 are one file each, bench/sys_*.c (systems.h),
 * shared with fdn-bench; this file holds the scenarios, options and
 * reporting.
 *
 * How.  Throughput is timed with CLOCK_MONOTONIC around
 * the whole loop, best of 3 runs (--quick: 1).  Correctness failures -- a
 * key still visible after its owner died, a lookup that misses or returns
 * a wrong entry, a failed register or unregister -- go to stderr and make
 * the exit status 1.  Timing never fails the run: the SPEC targets (reaper
 * p99 <= 1 ms as the parent sees it; register+unregister foundation >= 1x
 * cds_lfht) are printed as met / MISSED and the status stays 0.
 *
 * Output (bench_common.h): a table per result, then its SPEC targets; with
 * --json one JSON object per result on stdout (tables on stderr);
 * --json-file PATH writes the JSON there and the tables to stdout.
 *
 * The layout: this file holds the scenario table, the options and main;
 * each scenario is a file bench_registry_*.c (bench_registry.h says which).
 */
#include "bench_registry.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const bench_prog = PROG;

/* ==== the scenarios ==================================================================

 * Each runs on its own and emits its results.  reaper_latency runs first,
 * with a reaper; the others set FOUNDATION_NO_AUTOREAPER (no deaths).  The
 * services being built (span push+pop, context set+get, flag read, event
 * emit) each become one entry here, measured against fdn_lookup on the
 * same segment in the same run (one bench_result per service, "foundation"
 * = fdn_lookup as the first row). */
struct scenario {
	const char *name;
	int (*run)(const struct opts *o);
	bool reaper; /* needs the library's reaper */
};

static int scenario_reaper_run(const struct opts *o)
{
	return scenario_reaper(o, o->argv0);
}

static const struct scenario scenarios[] = {
    {"reaper_latency", scenario_reaper_run, true},
    {"register_unregister", scenario_pairs, false},
    {"read_scaling", scenario_scaling, false},
    {"memory", scenario_memory, false},
    {"changefeed_latency", scenario_cf_latency, false},
    {"changefeed_throughput", scenario_cf_throughput, false},
    {"stopped_reader", scenario_stopped, false},
};
#define NSCEN (sizeof(scenarios) / sizeof(scenarios[0]))

/* ==== command line ==================================================================== */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: " PROG " [--quick] [--json | --json-file PATH] [--scenarios LIST]\n"
		"\n"
		"The registry's public API against process-local liburcu cds_lfht"
#ifdef HAVE_LMDB
		", LMDB"
#endif
		"\nand redis-server (when in $PATH):\n"
		"  reaper_latency       SIGKILL of an owner of 1 and 1000 entries until\n"
		"                       another process sees them gone (p50/p99/max)\n"
		"  register_unregister  fdn_register + fdn_unregister pairs, every system in\n"
		"                       40 interleaved rounds of 40 ms (medians of the\n"
		"                       per-round rates and ratios)\n"
		"  read_scaling         fdn_lookup from 1, 2 (.. CPUs) processes, without and\n"
		"                       with a writer process churning (also read_under_churn),\n"
		"                       15 interleaved rounds of 250 ms windows (medians)\n"
		"  memory               segment bytes per entry at 1 000 000 entries with\n"
		"                       64 bytes of attributes\n"
		"  changefeed_latency   a change until a subscriber process reads it\n"
		"  changefeed_throughput  pairs with the change log off and on (0, 1, 16\n"
		"                       subscribers)\n"
		"  stopped_reader       pairs beside a reader stopped inside a section\n"
		"                       (rounds against it running; then a 10 s stop:\n"
		"                       pairs until FDN_EBUSY, drain after SIGCONT)\n"
		"\n"
		"  --quick            20 deaths per size, pairs in 12 rounds of 10 ms, 10 000\n"
		"                     entries for scaling (3 rounds of 100 ms windows), 100 000\n"
		"                     for memory,\n"
		"                     one run (CI)\n"
		"  --json             one JSON object per result on stdout, tables on stderr\n"
		"  --json-file PATH   the JSON objects into PATH, tables on stdout\n"
		"  --scenarios LIST   comma-separated names from the list above (default all)\n"
		"  --help             this text\n"
		"\n"
		"foundation-reaperd is $FOUNDATION_REAPERD, else ../tools/foundation-reaperd\n"
		"next to this program.  Exit status: 0, also when a SPEC target is missed;\n"
		"1 on a correctness failure (a key visible after its owner died, a lookup\n"
		"miss or wrong entry, a failed operation); 2 on bad usage.\n");
}

static int parse_scenarios(const char *arg, unsigned *mask)
{
	char buf[256];
	if (snprintf(buf, sizeof(buf), "%s", arg) >= (int)sizeof(buf))
		return -1;
	*mask = 0;
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i = 0;
		while (i < NSCEN && strcmp(scenarios[i].name, tok) != 0)
			i++;
		if (i == NSCEN)
			return -1;
		*mask |= 1u << i;
	}
	return *mask ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"scenarios", required_argument, NULL, 's'},
	    BENCH_CLI_LONGOPTS,
	    {NULL, 0, NULL, 0},
	};
	*o = (struct opts){.argv0 = argv[0],
			   .scale_rounds = 15,
			   .rounds = 40,
			   .round_ms = 40,
			   .deaths = 200,
			   .pairs = 200000,
			   .redis_pairs = 20000,
			   .scale_entries = 1000000,
			   .scale_ms = 250,
			   .mem_entries = 1000000};
	int r;
	for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
		switch (c) {
		case 's':
			if (parse_scenarios(optarg, &o->only)) {
				fprintf(stderr,
					PROG ": --scenarios: '%s' is not a list of scenarios\n",
					optarg);
				usage(stderr);
				return 2;
			}
			break;
		default:
			if ((r = bench_cli_opt(&o->cli, c, usage)))
				return r;
		}
	}
	if ((r = bench_cli_end(&o->cli, argc, argv, usage)))
		return r;
	if (o->cli.quick) {
		o->scale_rounds = 3;
		o->rounds = 12;
		o->round_ms = 10;
		o->deaths = 20;
		o->pairs = 20000;
		o->redis_pairs = 2000;
		o->scale_entries = 10000;
		o->scale_ms = 100;
		o->mem_entries = 100000;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	int r = parse_args(argc, argv, &o);
	if (r)
		return r == 1 ? 0 : r; /* 1: --help */
	g_pid = getpid();
	bench_set_signals(bench_on_signal);
	prctl(PR_SET_TIMERSLACK, 1UL); /* sleeps of the polls end on time */
	attrs_init();
	if (bench_output_open(o.cli.json, o.cli.json_path))
		return 1;
	bench_machine("start");
	int status = 0;
	for (size_t i = 0; i < NSCEN; i++) {
		if (o.only && !(o.only & (1u << i)))
			continue;
		if (scenarios[i].reaper) {
			unsetenv("FOUNDATION_NO_AUTOREAPER");
		} else {
			/* One process or its children, no deaths: no reaper. */
			setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
			sys_urcu_register();
		}
		if (scenarios[i].run(&o))
			status = 1;
	}
	sys_redis_stop();
	sys_urcu_unregister();
	bench_machine("end");
	bench_output_close();
	return status;
}
