/*
 * foundation-demo - the README's main job.
 *
 * Creates a private segment (the library starts its reaper), forks worker
 * processes that register themselves with attributes, answers "which
 * workers have capability gpu?" from yet another process, SIGKILLs one
 * worker and shows its entry vanish (a watch, not a sleep) and its death in
 * the graveyard, prints the segment's statistics and the checker's verdict,
 * stops the workers, and removes the segment.  Ends by itself in a second
 * or two and leaves no process behind.
 */
#include "shm/shm.h"

#include <foundation/foundation.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "foundation-demo";

#define MAX_WORKERS 16

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--segment NAME] [--workers N]\n"
		"\n"
		"Creates a private shared segment (the library starts its reaper), forks N\n"
		"workers that register themselves with attributes, queries them from another\n"
		"process, SIGKILLs one and shows its entry vanish and its death in the\n"
		"graveyard, then prints the segment's statistics and integrity check and\n"
		"removes the segment.\n"
		"\n"
		"  --segment NAME  segment name (default: foundation-demo-<pid>)\n"
		"  --workers N     worker processes (default 6, 2..%d)\n"
		"  --help          this text\n",
		prog, MAX_WORKERS);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, fdn_strerror(err));
	exit(1);
}

/* The reaper next to this program, unless one is named already. */
static void find_reaper(void)
{
	char self[PATH_MAX], path[PATH_MAX + 32];
	if (getenv("FOUNDATION_REAPERD"))
		return;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return;
	*slash = 0;
	snprintf(path, sizeof(path), "%s/foundation-reaperd", self);
	if (access(path, X_OK) == 0)
		setenv("FOUNDATION_REAPERD", path, 1);
}

/* A worker: register "worker-N" for itself with attributes, then wait. */
static void worker(const char *name, int n, int ready_fd)
{
	static const char *caps[] = {"gpu", "http", "sql"};
	const char *items[2] = {caps[n % 3], n % 2 ? "batch" : "stream"};
	struct fdn_attr a[3] = {
	    {.name = "capability", .type = FDN_ATTR_LIST, .v.list = {items, 2}},
	    {.name = "health_status", .type = FDN_ATTR_STRING, .v.s = n == 4 ? "degraded" : "ok"},
	    {.name = "node", .type = FDN_ATTR_STRING, .v.s = n < 3 ? "node-a" : "node-b"}};
	char key[32];
	fdn_segment *s;
	snprintf(key, sizeof(key), "worker-%d", n);
	if (fdn_segment_attach(name, 0, &s) ||
	    fdn_register(s, key, strlen(key), getpid(), a, 3, 0, NULL))
		_exit(2);
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1)
		_exit(3);
	pause();
	_exit(0);
}

static void print_attrs(const void *attrs, uint32_t len)
{
	uint32_t n = fdn_attrs_count(attrs, len);
	for (uint32_t i = 0; i < n; i++) {
		struct fdn_attr a;
		if (fdn_attrs_at(attrs, len, i, &a))
			continue;
		printf("%s%s=", i ? " " : "", a.name);
		if (a.type == FDN_ATTR_LIST) {
			printf("[");
			for (uint32_t k = 0; k < a.v.list.n; k++)
				printf("%s%s", k ? "," : "", fdn_attrs_list_item(&a, k));
			printf("]");
		} else if (a.type == FDN_ATTR_STRING) {
			printf("%s", a.v.s);
		} else if (a.type == FDN_ATTR_INT) {
			printf("%lld", (long long)a.v.i);
		}
	}
}

static int print_entry(void *arg, const struct fdn_entry_view *e)
{
	(void)arg;
	printf("    %-10.*s pid %-7d ", (int)e->key_len, (const char *)e->key, (int)e->pid);
	print_attrs(e->attrs, e->attrs_len);
	printf("\n");
	return 0;
}

static void print_registry(fdn_segment *s, const char *title)
{
	printf("%s (%lld entries):\n", title, (long long)fdn_count(s));
	fdn_foreach(s, print_entry, NULL);
}

static void print_violation(void *arg, const char *code, const char *msg)
{
	(void)arg;
	printf("    violation [%s] %s\n", code, msg);
}

/* From a separate process: the healthy gpu workers. */
static pid_t query_process(const char *name)
{
	fflush(stdout);
	pid_t p = fork();
	if (p != 0)
		return p;
	fdn_segment *s;
	if (fdn_segment_attach(name, FDN_SEG_READONLY, &s))
		_exit(2);
	const char *healthy[] = {"ok"};
	struct fdn_criterion c[2] = {
	    {"capability", FDN_CMP_EQ, {.type = FDN_ATTR_STRING, .v.s = "gpu"}},
	    {"health_status", FDN_CMP_IN, {.type = FDN_ATTR_LIST, .v.list = {healthy, 1}}}};
	printf("\nanother process (pid %d) asks: which healthy workers have capability gpu?\n",
	       (int)getpid());
	int n = fdn_query(s, c, 2, print_entry, NULL);
	printf("    %d found\n", n);
	fflush(stdout);
	fdn_segment_detach(s);
	_exit(n >= 0 ? 0 : 1);
}

int main(int argc, char **argv)
{
	char defname[64];
	const char *name = NULL;
	int nworkers = 6;
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"workers", required_argument, 0, 'w'},
					   {"help", no_argument, 0, 'h'},
					   {0, 0, 0, 0}};
	for (int c; (c = getopt_long(argc, argv, "s:w:h", lo, NULL)) != -1;) {
		switch (c) {
		case 's':
			name = optarg;
			break;
		case 'w':
			nworkers = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || nworkers < 2 || nworkers > MAX_WORKERS) {
		fprintf(stderr, "%s: bad arguments (see --help)\n", prog);
		return 2;
	}
	if (!name) {
		snprintf(defname, sizeof(defname), "foundation-demo-%d", (int)getpid());
		name = defname;
	}
	find_reaper();
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1000;
	fdn_segment *s;
	int r = fdn_segment_create(name, &o, &s);
	if (r)
		die("create segment", r);
	for (int i = 0; i < 500 && fdn_reaper_holder(s) == 0; i++)
		usleep(10000);
	printf("created segment \"%s\"; reaper pid %d watches it\n", name,
	       (int)fdn_reaper_holder(s));

	int pfd[2];
	if (pipe(pfd) != 0)
		die("pipe", -errno);
	pid_t pids[MAX_WORKERS];
	fflush(stdout);
	for (int i = 0; i < nworkers; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork", -errno);
		if (pids[i] == 0) {
			close(pfd[0]);
			worker(name, i, pfd[1]);
		}
	}
	close(pfd[1]);
	for (int i = 0; i < nworkers; i++) {
		char c;
		if (read(pfd[0], &c, 1) != 1)
			die("a worker failed to register", FDN_EINVAL);
	}
	close(pfd[0]);
	printf("\n");
	print_registry(s, "registry");
	waitpid(query_process(name), NULL, 0);

	pid_t victim = pids[1];
	printf("\nSIGKILL worker-1 (pid %d)...\n", (int)victim);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	kill(victim, SIGKILL);
	r = fdn_watch(s, "worker-1", 8, false, 10000);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (r)
		die("waiting for worker-1 to vanish", r);
	printf("    its entry vanished %.0f us after the kill (seen through fdn_watch)\n",
	       (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3);
	waitpid(victim, NULL, 0);
	for (int i = 0; i < 500 && fdn_deaths(s) < 1; i++)
		usleep(2000);
	struct fdn_death d;
	if (fdn_graveyard(s, &d, 1) == 1)
		printf(
		    "    graveyard: pid %d, signal %d, %llu entries removed, reaper took %.1f us\n",
		    (int)d.pid, d.exit_signal, (unsigned long long)d.entries,
		    (double)d.latency_ns / 1e3);
	printf("\n");
	print_registry(s, "registry after the kill");

	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	printf("\nstatistics:\n");
	printf("    %u / %u process slots, %u / %u reader slots in use\n", st.procs_used,
	       st.procs_cap, st.threads_used, st.threads_cap);
	printf("    heap: %llu blocks (%llu bytes) in %llu of %llu pages\n",
	       (unsigned long long)st.blocks_used, (unsigned long long)st.block_bytes_used,
	       (unsigned long long)st.heap_pages_used, (unsigned long long)st.heap_pages);
	for (uint32_t i = 0; i < st.ntables; i++)
		printf("    table %-5s %llu nodes in %llu buckets\n", st.tables[i].name,
		       (unsigned long long)st.tables[i].entries,
		       (unsigned long long)st.tables[i].buckets);

	printf("\nstopping the other workers...\n");
	for (int i = 0; i < nworkers; i++)
		if (pids[i] != victim)
			kill(pids[i], SIGKILL);
	for (int i = 0; i < nworkers; i++) {
		char key[32];
		snprintf(key, sizeof(key), "worker-%d", i);
		fdn_watch(s, key, strlen(key), false, 10000);
		if (pids[i] != victim)
			waitpid(pids[i], NULL, 0);
	}
	for (int i = 0; i < 500 && fdn_segment_check(s, NULL, NULL) != 0; i++)
		usleep(10000); /* the reaper finishing its clean-up */
	printf("    %lld entries left\n", (long long)fdn_count(s));
	printf("\nintegrity check:\n");
	int v = fdn_segment_check(s, print_violation, NULL);
	printf("    %d violations\n", v);

	fdn_segment_detach(s);
	fdn_segment_destroy(name); /* also stops the reaper */
	printf("\nsegment \"%s\" removed. %s\n", name, v == 0 ? "demo OK" : "demo FAILED");
	return v == 0 ? 0 : 1;
}
