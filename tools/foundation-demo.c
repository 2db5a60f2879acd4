/*
 * foundation-demo - the README's main job.
 *
 * Creates a private segment (the library starts its reaper), forks worker
 * processes that register themselves with attributes and, like a server in
 * the middle of a request, open nested spans and set an error context.  It
 * shows the registry and what one worker is doing through foundation-inspect's
 * own output, answers "which healthy workers have capability gpu?" from yet
 * another process, SIGKILLs that worker and shows its entry vanish (a watch,
 * not a sleep), the registry after, and what the worker was doing when it
 * died (its spans and context, from the graveyard), then the statistics and
 * the checker's verdict; it stops the workers and removes the segment.  Ends
 * by itself in a second or two and leaves no process behind.
 *
 * Stopped early -- SIGPIPE (foundation-demo | head -3), SIGINT, SIGTERM, any
 * death -- it leaves nothing either: the workers and the programs it runs
 * die with it (PR_SET_PDEATHSIG), and a guardian process, which ignores
 * those signals and holds a pipe from the demo, destroys the segment (which
 * stops its reaper) when the pipe closes without the demo having said it
 * finished.
 */
#include "cli.h"

#include <foundation/foundation.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/context.h>
#include <foundation/spans.h>
#include <foundation/telemetry.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *prog = "foundation-demo";

#define MAX_WORKERS 16

static void usage(FILE *f, const void *unused)
{
	fprintf(f,
		"usage: %s [--segment NAME] [--workers N]\n"
		"\n"
		"Creates a private shared segment (the library starts its reaper), forks N\n"
		"workers that register themselves with attributes, open nested spans and set\n"
		"an error context; shows them with foundation-inspect, queries them from\n"
		"another process, SIGKILLs one and shows its entry vanish and what it was\n"
		"doing in the graveyard, then the segment's statistics and integrity check;\n"
		"stops the workers and removes the segment.\n"
		"\n"
		"  --segment NAME  segment name (default: foundation-demo-<pid>)\n"
		"  --workers N     worker processes (default 6, 2..%d)\n"
		"  --help          this text\n"
		"  --version       print the version and exit\n"
		"\n"
		"Exit status: 0 done; 1 failed; 2 bad usage.\n",
		prog, MAX_WORKERS);
}

/* The guardian's pipe (write end), or -1; and the guardian. */
static int guard_fd = -1;
static pid_t guard_pid = -1;

/* In a child of the demo (a worker, a program it runs): die with the demo,
 * and leave the guardian's pipe to the demo alone. */
static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent) /* it died before prctl */
		_exit(1);
	if (guard_fd >= 0)
		close(guard_fd);
}

/* Tell the guardian: 'c' the segment is created (destroy it if the demo
 * dies), 'd' the demo removed it itself. */
static void guard_say(char c)
{
	if (guard_fd >= 0 && write(guard_fd, &c, 1) != 1) {
		/* the guardian is gone: nothing more it can do */
	}
}

/* Start the guardian of segment `name`: it waits for the end of the pipe
 * from the demo, then destroys the segment if the demo created it and did
 * not remove it.  Ignores the signals that stop the demo (a Ctrl-C reaches
 * the whole process group); its stdout goes to /dev/null, so a reader of the
 * demo's output sees its end when the demo ends. */
static pid_t guardian_start(const char *name)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	pid_t g = fork();
	if (g != 0) {
		close(pfd[0]);
		if (g > 0)
			guard_fd = pfd[1], guard_pid = g;
		else
			close(pfd[1]);
		return g;
	}
	close(pfd[1]);
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0)
		dup2(null, STDOUT_FILENO);
	bool created = false, done = false;
	char c;
	for (ssize_t n; (n = read(pfd[0], &c, 1)) != 0;) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		created |= c == 'c';
		done |= c == 'd';
	}
	if (created && !done)
		fdn_segment_destroy(name); /* also stops the reaper */
	_exit(0);
}

static void die(const char *what, int err)
{
	char buf[256];
	fprintf(stderr, "%s: %s: %s\n", prog, what,
		lower_first(fdn_strerror(err), buf, sizeof(buf)));
	exit(1);
}

/* The directory of this program (for the tools built or installed next to
 * it), or "" if unknown. */
static const char *self_dir(void)
{
	static char dir[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	if (n <= 0)
		return "";
	dir[n] = 0;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	return dir;
}

/* Program `tool` next to this one, else the installed one. */
static void tool_path(const char *tool, const char *installed, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", self_dir(), tool);
	if (access(out, X_OK) != 0)
		snprintf(out, cap, "%s", installed);
}

static char inspect_path[PATH_MAX + 32];

/* The reaper and foundation-inspect next to this program, unless named
 * already ($FOUNDATION_REAPERD, $FOUNDATION_INSPECT). */
static void find_tools(void)
{
	char path[PATH_MAX + 32];
	tool_path("foundation-reaperd", FDN_BINDIR "/foundation-reaperd", path, sizeof(path));
	if (!getenv("FOUNDATION_REAPERD"))
		setenv("FOUNDATION_REAPERD", path, 1);
	const char *inspect = getenv("FOUNDATION_INSPECT");
	if (inspect && *inspect)
		snprintf(inspect_path, sizeof(inspect_path), "%s", inspect);
	else
		tool_path("foundation-inspect", FDN_BINDIR "/foundation-inspect", inspect_path,
			  sizeof(inspect_path));
	if (access(inspect_path, X_OK) != 0) {
		char buf[256];
		fprintf(stderr, "%s: %s: %s\n", prog, inspect_path,
			lower_first(strerror(errno), buf, sizeof(buf)));
		exit(1);
	}
}

/* Run foundation-inspect on the segment and show its output, as a user
 * typing the command would see it. */
static void show(const char *segment, const char *title, const char *const *args)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "$ foundation-inspect --segment %s", segment);
	for (int i = 0; args[i] && n < (int)sizeof(line); i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, " %s", args[i]);
	if (*title)
		printf("\n%s\n", title);
	printf("%s\n", line);
	fflush(stdout);
	pid_t parent = getpid(), p = fork();
	if (p == 0) {
		die_with_parent(parent);
		const char *argv[16] = {inspect_path, "--segment", segment};
		for (int i = 0; args[i] && i < 12; i++)
			argv[3 + i] = args[i];
		execv(inspect_path, (char *const *)argv);
		_exit(127);
	}
	int st;
	if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		printf("(foundation-inspect failed)\n");
	fflush(stdout);
}

/* A worker: register "worker-N" for itself with attributes, then, like a
 * server in the middle of a request, hold three nested spans and an error
 * context, and wait. */
static void worker(const char *name, int n, int ready_fd)
{
	static const char *caps[] = {"gpu", "http", "sql"};
	const char *items[2] = {caps[n % 3], n % 2 ? "batch" : "stream"};
	struct fdn_attr a[3] = {
	    {.name = "capability", .type = FDN_ATTR_LIST, .v.list = {items, 2}},
	    {.name = "health_status", .type = FDN_ATTR_STRING, .v.s = n == 4 ? "degraded" : "ok"},
	    {.name = "node", .type = FDN_ATTR_STRING, .v.s = n < 3 ? "node-a" : "node-b"}};
	char key[32], corr[32];
	fdn_segment *s;
	snprintf(key, sizeof(key), "worker-%d", n);
	if (fdn_segment_attach(name, 0, &s) ||
	    fdn_register(s, key, strlen(key), getpid(), a, 3, 0, NULL))
		_exit(2);
	struct fdn_attr who = {.name = "worker", .type = FDN_ATTR_INT, .v.i = n};
	struct fdn_attr route = {.name = "route", .type = FDN_ATTR_STRING, .v.s = "/orders"};
	struct fdn_attr table = {.name = "table", .type = FDN_ATTR_STRING, .v.s = "orders"};
	struct fdn_attr ctx[2] = {
	    {.name = "tenant", .type = FDN_ATTR_STRING, .v.s = n % 2 ? "globex" : "acme"},
	    {.name = "order_id", .type = FDN_ATTR_INT, .v.i = 4700 + n}};
	snprintf(corr, sizeof(corr), "req-%d-%d", n, (int)getpid());
	if (fdn_span_start(s, "serve", &who, 1, NULL) ||
	    fdn_span_start(s, "handle_request", &route, 1, NULL) ||
	    fdn_ctx_set_correlation_id(s, corr) || fdn_ctx_set(s, ctx, 2) ||
	    fdn_ctx_breadcrumb(s, "orders", "load_order", NULL, 0) ||
	    fdn_span_start(s, "query_db", &table, 1, NULL))
		_exit(3);
	/* An event of the application's own, into the shared ring. */
	struct fdn_measurement queue = {"queue_depth", (double)(3 * n)};
	if (fdn_emit(s, "demo.worker.ready", &queue, 1, &a[2], 1) < 0)
		_exit(5);
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1)
		_exit(4);
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

/* Wait (up to 5 s) for the reaper's foundation.process.down of pid. */
static bool down_seen(fdn_segment *s, pid_t pid)
{
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	if (fdn_ring_cursor_init(s, &c, true) != 0)
		return false;
	for (int i = 0; i < 2500; i++) {
		int r;
		while ((r = fdn_ring_next(s, &c, &ev)) == 1)
			for (uint32_t k = 0; k < ev.nmeasurements; k++)
				if (strcmp(ev.name, "foundation.process.down") == 0 &&
				    strcmp(ev.measurements[k].name, "pid") == 0 &&
				    ev.measurements[k].value == (double)pid)
					return true;
		if (r < 0)
			return false;
		usleep(2000);
	}
	return false;
}

/* From a separate process: the healthy gpu workers. */
static pid_t query_process(const char *name)
{
	fflush(stdout);
	pid_t parent = getpid(), p = fork();
	if (p != 0)
		return p;
	die_with_parent(parent);
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

struct opts {
	const char *name;
	int nworkers;
};

/* --segment, --workers (a cli_take_fn). */
static int take_option(void *arg, const void *unused, int c, char *val)
{
	struct opts *o = arg;
	uint64_t nw;
	if (c == 's') {
		o->name = val;
	} else {
		if (!parse_num(val, 10, MAX_WORKERS, &nw) || nw < 2)
			return usage_error(NULL, "--workers \"%s\": not a number 2..%d", val,
					   MAX_WORKERS);
		o->nworkers = (int)nw;
	}
	return CLI_GO_ON;
}

int main(int argc, char **argv)
{
	char defname[64];
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"workers", required_argument, 0, 'w'},
					   {"help", no_argument, 0, 'h'},
					   {"version", no_argument, 0, 'V'},
					   {0, 0, 0, 0}};
	struct opts opt = {.nworkers = 6};
	int status = cli_program_options(argc, argv, ":s:w:h", lo, 'V', usage, take_option, &opt);
	if (status != CLI_GO_ON)
		return status;
	const char *name = opt.name;
	int nworkers = opt.nworkers;
	if (optind != argc)
		return usage_error(NULL, "\"%s\": unexpected argument", argv[optind]);
	if (name && fdn_segment_name_check(name))
		return usage_error(NULL, "segment \"%s\": invalid name", name);
	if (!name) {
		snprintf(defname, sizeof(defname), "foundation-demo-%d", (int)getpid());
		name = defname;
	}
	find_tools();
	if (guardian_start(name) < 0)
		die("guardian", -errno);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1000;
	fdn_segment *s;
	int r = fdn_segment_create(name, &o, &s);
	if (r)
		die("create segment", r);
	guard_say('c');
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
		pid_t parent = getpid();
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork", -errno);
		if (pids[i] == 0) {
			die_with_parent(parent);
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
	char vpid[16];
	pid_t victim = pids[1];
	snprintf(vpid, sizeof(vpid), "%d", (int)victim);
	show(name, "The registry: each worker registered itself with typed attributes.",
	     (const char *[]){"registry", NULL});
	waitpid(query_process(name), NULL, 0);
	show(name, "What worker-1 is doing right now: three nested spans and an error context.",
	     (const char *[]){"spans", "--pid", vpid, NULL});

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
	/* The reaper's last step for a death is its event: once it is in the
	 * ring, the graveyard holds the death and the thread copy too. */
	if (!down_seen(s, victim))
		die("waiting for the reaper's foundation.process.down", FDN_ETIMEDOUT);
	show(name, "The registry after the kill: worker-1 is gone.",
	     (const char *[]){"registry", NULL});
	show(name,
	     "The graveyard: how worker-1 died, and what it was doing (its spans, now\n"
	     "aborted, and its context), copied by the reaper before it cleaned up.",
	     (const char *[]){"graveyard", "--pid", vpid, NULL});
	show(name,
	     "The event ring, filtered: the workers' own events, then the reaper's record\n"
	     "of the death (foundation.process.down).",
	     (const char *[]){"events", "--name", "demo", NULL});
	show(name, "", (const char *[]){"events", "--name", "foundation.process", NULL});
	show(name,
	     "The feature flags and the migration stage: every service uses the shared\n"
	     "segment (stage 3); foundation-ctl stage rollback would move them back.",
	     (const char *[]){"flags", NULL});
	show(name, "Statistics.", (const char *[]){"stats", NULL});

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
	int v = fdn_segment_check(s, NULL, NULL);
	show(name, "The integrity check: every block, chain, slot and index verified.",
	     (const char *[]){"check", NULL});

	fdn_segment_detach(s);
	fdn_segment_destroy(name); /* also stops the reaper */
	guard_say('d');
	close(guard_fd);
	waitpid(guard_pid, NULL, 0);
	printf("\nsegment \"%s\" removed. %s\n", name, v == 0 ? "demo OK" : "demo FAILED");
	return v == 0 ? 0 : 1;
}
