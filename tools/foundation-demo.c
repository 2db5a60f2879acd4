/*
 * foundation-demo - the README's main job.
 *
 * Until the registry and its tools exist, the demo shows the mechanism they
 * stand on: it creates a private segment, forks writer processes that fill
 * the shared table with disjoint keys, forks a reader that finds every key
 * written by the others, SIGKILLs a writer in the middle of its stream and
 * reclaims what it owned, then prints the segment's statistics and the
 * checker's verdict and removes the segment.
 */
#include "shm/shm.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "foundation-demo";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--segment NAME] [--writers N] [--keys N]\n"
		"\n"
		"Creates a private shared segment, has N writer processes insert disjoint\n"
		"keys into its lock-free table, a reader process look them all up, SIGKILLs\n"
		"one more writer mid-stream and reclaims what it held, then prints the\n"
		"segment statistics and the integrity check, and removes the segment.\n"
		"\n"
		"  --segment NAME  segment name (default: foundation-demo-<pid>)\n"
		"  --writers N     writer processes (default 4, at most 64)\n"
		"  --keys N        keys per writer (default 20000)\n"
		"  --help          this text\n",
		prog);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, fdn_strerror(err));
	exit(1);
}

static void key_of(char *buf, size_t cap, int writer, int i)
{
	snprintf(buf, cap, "w%02d-agent-%08d", writer, i);
}

/* A writer: attach, insert its keys with its pid as the value, detach. */
static int run_writer(const char *name, int w, int nkeys)
{
	fdn_segment *s;
	int r = fdn_segment_attach(name, 0, &s);
	if (r)
		die("writer: attach", r);
	for (int i = 0; i < nkeys; i++) {
		char key[64];
		uint64_t val = (uint64_t)getpid() << 32 | (uint32_t)i;
		key_of(key, sizeof(key), w, i);
		r = fdn__ht_put(s, 0, key, strlen(key), &val, sizeof(val), FDN_HT_UNIQUE, NULL,
				NULL);
		if (r)
			die("writer: insert", r);
	}
	fdn_segment_detach(s);
	return 0;
}

/* The reader: every key of every writer must be there. */
static int run_reader(const char *name, int writers, int nkeys)
{
	fdn_segment *s;
	int r = fdn_segment_attach(name, 0, &s);
	if (r)
		die("reader: attach", r);
	long found = 0;
	for (int w = 0; w < writers; w++) {
		for (int i = 0; i < nkeys; i++) {
			char key[64];
			struct fdn__thread *t;
			struct fdn__ht_view v;
			key_of(key, sizeof(key), w, i);
			if ((r = fdn__rcu_read_lock(s, &t)))
				die("reader: read lock", r);
			if (fdn__ht_lookup(s, 0, key, strlen(key), &v) == 0)
				found++;
			fdn__rcu_read_unlock(t);
		}
	}
	printf("  reader pid %d found %ld of %ld keys\n", (int)getpid(), found,
	       (long)writers * nkeys);
	fdn_segment_detach(s);
	return found == (long)writers * nkeys ? 0 : 1;
}

static pid_t spawn(int (*fn)(const char *, int, int), const char *name, int a, int b)
{
	fflush(stdout); /* the child must not print the parent's buffer again */
	pid_t p = fork();
	if (p < 0)
		die("fork", -errno);
	if (p == 0) {
		int rc = fn(name, a, b);
		fflush(stdout);
		_exit(rc);
	}
	return p;
}

static int wait_ok(pid_t p)
{
	int st;
	if (waitpid(p, &st, 0) < 0)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void print_violation(void *arg, const char *code, const char *msg)
{
	(void)arg;
	printf("  violation [%s] %s\n", code, msg);
}

static void print_stats(fdn_segment *s)
{
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	printf("  segment      %-12s %llu bytes, ABI %u.%u\n", fdn_segment_name(s),
	       (unsigned long long)st.total_bytes, st.abi_major, st.abi_minor);
	printf("  processes    %u / %u slots in use\n", st.procs_used, st.procs_cap);
	printf("  threads      %u / %u reader slots in use\n", st.threads_used, st.threads_cap);
	printf("  heap         %llu / %llu pages, %llu blocks (%llu bytes) allocated\n",
	       (unsigned long long)st.heap_pages_used, (unsigned long long)st.heap_pages,
	       (unsigned long long)st.blocks_used, (unsigned long long)st.block_bytes_used);
	printf("  grace period counter %llu\n", (unsigned long long)st.gp_counter);
	for (uint32_t i = 0; i < st.ntables; i++)
		printf("  table %-6s %llu entries in %llu buckets (load %.2f)\n", st.tables[i].name,
		       (unsigned long long)st.tables[i].entries,
		       (unsigned long long)st.tables[i].buckets,
		       (double)st.tables[i].entries / (double)st.tables[i].buckets);
}

/* A writer that never stops, to be killed; returns its process slot. */
static pid_t spawn_victim(const char *name)
{
	return spawn(run_writer, name, 99, 1 << 30);
}

int main(int argc, char **argv)
{
	char defname[64];
	const char *name = NULL;
	int writers = 4, nkeys = 20000;
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"writers", required_argument, 0, 'w'},
					   {"keys", required_argument, 0, 'k'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	for (int c; (c = getopt_long(argc, argv, "s:w:k:h", lo, NULL)) != -1;) {
		switch (c) {
		case 's':
			name = optarg;
			break;
		case 'w':
			writers = atoi(optarg);
			break;
		case 'k':
			nkeys = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || writers < 1 || writers > 64 || nkeys < 1 || nkeys > 1000000) {
		fprintf(stderr, "%s: bad arguments (see --help)\n", prog);
		return 2;
	}
	/* This demo reclaims its killed writer itself, to show the mechanism:
	 * no reaper daemon may do it at the same time. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	if (!name) {
		snprintf(defname, sizeof(defname), "foundation-demo-%d", (int)getpid());
		name = defname;
	}
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = (uint64_t)writers * (uint64_t)nkeys + 100000;
	fdn_segment *s;
	int r = fdn_segment_create(name, &o, &s);
	if (r)
		die("create segment", r);
	printf("created segment \"%s\"\n", name);

	printf("\n%d writer processes insert %d keys each...\n", writers, nkeys);
	pid_t pids[64];
	for (int w = 0; w < writers; w++)
		pids[w] = spawn(run_writer, name, w, nkeys);
	int ok = 1;
	for (int w = 0; w < writers; w++)
		ok &= wait_ok(pids[w]);
	printf("  writers done: %s\n", ok ? "all succeeded" : "FAILED");

	printf("\na reader process looks every key up...\n");
	ok &= wait_ok(spawn(run_reader, name, writers, nkeys));

	printf("\none more writer is SIGKILLed mid-stream, then reclaimed...\n");
	pid_t victim = spawn_victim(name);
	struct timespec d = {0, 150 * 1000000};
	nanosleep(&d, NULL);
	kill(victim, SIGKILL);
	waitpid(victim, NULL, 0);
	uint32_t idx;
	if (fdn__proc_find(s, victim, &idx) == 0 &&
	    (r = fdn__proc_reclaim(s, idx, atomic_load(&s->procs[idx].word), -1)) != 0)
		die("reclaim", r);
	printf("  killed pid %d; its slots reclaimed; its committed keys stay, counted\n",
	       (int)victim);

	printf("\nstatistics:\n");
	print_stats(s);
	printf("\nintegrity check:\n");
	int v = fdn_segment_check(s, print_violation, NULL);
	printf("  %d violations\n", v);
	ok &= v == 0;

	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	printf("\nsegment \"%s\" removed. %s\n", name, ok ? "demo OK" : "demo FAILED");
	return ok ? 0 : 1;
}
