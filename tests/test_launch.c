/*
 * test_launch.c - how the library starts the reaper: what the daemon
 * inherits from the application (nothing), finding the program or saying
 * where it looked, the restart by a writer that finds the reaper dead, the
 * sticky stop, and one launch a second however many processes attach.
 * Every test runs real processes: the application is a forked child, the
 * reaper the foundation-reaperd just built ($FOUNDATION_REAPERD).
 */
#include "tests/common.h"

#include <foundation/registry.h>
#include <foundation/telemetry.h>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

/* Generous bounds: a loaded 2-core machine may take seconds to start a
 * process. */
#define WAIT_MS 20000

static int wait_holder_gone(fdn_segment *s, pid_t p)
{
	for (int i = 0; i < WAIT_MS / 10; i++) {
		if (fdn_reaper_holder(s) != p)
			return 1;
		t_sleep_ms(10);
	}
	return 0;
}

struct launched {
	_Atomic int ready;
	pid_t reaper;
	int port;
	int err;
};

/* The application: a listening socket at descriptor 2000 and a pipe's
 * write end at 1500, neither close-on-exec; SIGTERM and SIGINT ignored;
 * it creates the segment (its reaper is started), and exits without a
 * word to anyone, as a server that is killed or just ends. */
static void application(const char *name, int pipe_w, struct launched *out)
{
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	int sock = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (sock < 0 || bind(sock, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(sock, 4) != 0 ||
	    getsockname(sock, (struct sockaddr *)&a, &len) != 0 || dup2(sock, 2000) != 2000 ||
	    dup2(pipe_w, 1500) != 1500)
		_exit(2);
	close(sock);
	close(pipe_w);
	out->port = ntohs(a.sin_port);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1000;
	o.processes = 64;
	o.threads = 64;
	o.flags = FDN_SEG_REQUIRE_REAPER;
	fdn_segment *s;
	int r = fdn_segment_create(name, &o, &s);
	if (r == 0)
		r = fdn_reaper_wait(s, WAIT_MS);
	if (r > 0)
		out->reaper = r;
	else
		out->err = r;
	atomic_store(&out->ready, 1);
	_exit(r > 0 ? 0 : 3);
}

/* What /proc/PID/fd/FD links to, or "" if it cannot be read. */
static void fd_target(pid_t pid, int fd, char *buf, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	ssize_t n = readlink(path, buf, cap - 1);
	buf[n > 0 ? n : 0] = 0;
}

/* Field 4 (ppid) and 6 (session) of /proc/PID/stat. */
static void stat_ids(pid_t pid, int *ppid, int *sid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	cr_assert_not_null(f, "no /proc entry for the reaper %d", (int)pid);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char state;
	int pgrp;
	cr_assert_eq(sscanf(strrchr(buf, ')') + 2, "%c %d %d %d", &state, ppid, &pgrp, sid), 4);
}

Test(launch, holds_nothing_of_the_application)
{
	char name[64];
	t_name(name, sizeof(name), "launchfd");
	struct launched *L = t_shared(sizeof(*L));
	int pfd[2];
	cr_assert_eq(pipe(pfd), 0);
	pid_t app = t_fork();
	if (app == 0) {
		close(pfd[0]);
		application(name, pfd[1], L);
	}
	close(pfd[1]);
	t_wait_ready(&L->ready, app);
	int st;
	cr_assert_eq(waitpid(app, &st, 0), app);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "application: %s", fdn_strerror(L->err));
	pid_t reaper = L->reaper;

	/* The pipe: its only writer was the application, so end-of-file
	 * (a reaper holding its copy would keep it open for ever). */
	struct pollfd p = {pfd[0], POLLIN, 0};
	cr_assert_eq(poll(&p, 1, WAIT_MS), 1, "the pipe is still open after its writer exited");
	char c;
	cr_assert_eq(read(pfd[0], &c, 1), 0, "the pipe is still open after its writer exited");
	close(pfd[0]);

	/* The port: free again, bound without SO_REUSEADDR. */
	int sock = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)L->port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	cr_assert_eq(bind(sock, (struct sockaddr *)&a, sizeof(a)), 0,
		     "port %d still bound after the application exited: %s", L->port,
		     strerror(errno));
	close(sock);

	/* The reaper's descriptors: stdin, stdout, stderr on /dev/null; no
	 * socket, no pipe; nothing of the application's numbers. */
	char dir[64], target[256];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)reaper);
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "reaper %d: %s", (int)reaper, strerror(errno));
	int seen = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		fd_target(reaper, fd, target, sizeof(target));
		cr_assert(strncmp(target, "socket:", 7) != 0 && strncmp(target, "pipe:", 5) != 0,
			  "reaper %d holds fd %d -> %s", (int)reaper, fd, target);
		cr_assert(fd != 1500 && fd != 2000, "reaper %d holds fd %d", (int)reaper, fd);
		if (fd <= 2)
			cr_assert_str_eq(target, "/dev/null", "reaper fd %d -> %s", fd, target);
		seen++;
	}
	closedir(d);
	cr_assert_geq(seen, 3);

	/* Nobody's child, in a session of its own. */
	int ppid, sid;
	stat_ids(reaper, &ppid, &sid);
	cr_assert_neq(ppid, (int)app);
	cr_assert_neq(sid, (int)getsid(0), "the reaper is in the test's session");

	/* The application ignored SIGTERM: its reaper does not. */
	fdn_segment *s;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &s), 0);
	cr_assert_eq(fdn_reaper_holder(s), reaper);
	cr_assert_eq(kill(reaper, SIGTERM), 0);
	cr_assert(wait_holder_gone(s, reaper), "reaper %d ignored SIGTERM", (int)reaper);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* The configured path (the build's) may exist on this machine: then no
 * missing program can be shown. */
static bool configured_reaper_installed(void)
{
	return access(FDN_REAPERD_PATH, X_OK) == 0;
}

Test(launch, no_program_is_an_error_only_when_required)
{
	if (configured_reaper_installed())
		cr_skip_test("%s is installed: the library would start it", FDN_REAPERD_PATH);
	char name[64];
	t_name(name, sizeof(name), "noreaper");
	char *saved = strdup(getenv("FOUNDATION_REAPERD") ? getenv("FOUNDATION_REAPERD") : "");
	setenv("FOUNDATION_REAPERD", "/nonexistent/foundation-reaperd", 1);

	char looked[1024];
	cr_assert_eq(fdn_reaper_locate(looked, sizeof(looked)), FDN_ENOREAPER);
	cr_assert(strstr(looked, "/nonexistent/foundation-reaperd") != NULL, "%s", looked);
	cr_assert(strstr(looked, FDN_REAPERD_PATH) != NULL, "%s", looked);
	cr_assert(strstr(fdn_strerror(FDN_ENOREAPER), "FOUNDATION_REAPERD") != NULL);

	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1000;
	o.processes = 64;
	o.threads = 64;
	o.flags = FDN_SEG_REQUIRE_REAPER;
	fdn_segment *s = NULL;
	cr_assert_eq(fdn_segment_create(name, &o, &s), FDN_ENOREAPER);
	cr_assert_null(s);
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &s), FDN_ENOSEG,
		     "a create that failed left its segment");

	/* Not required: the create succeeds, and the segment says why no
	 * reaper runs. */
	o.flags = 0;
	cr_assert_eq(fdn_segment_create(name, &o, &s), 0);
	struct fdn_reaper_status st;
	cr_assert_eq(fdn_reaper_status(s, &st), 0);
	cr_assert_eq(st.pid, 0);
	cr_assert_eq(st.last_pid, getpid());
	cr_assert_eq(st.last_error, FDN_ENOREAPER);
	cr_assert_eq(st.launches, 0);
	cr_assert_gt(st.last_ns, 0);
	/* ... and the ring has the event foundation.reaper.missing. */
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	bool missing = false;
	cr_assert_eq(fdn_ring_cursor_init(s, &c, true), 0);
	while (!missing && fdn_ring_next(s, &c, &ev) == 1)
		missing = strcmp(ev.name, "foundation.reaper.missing") == 0 &&
			  ev.nmeasurements == 1 && ev.measurements[0].value == (double)getpid();
	cr_assert(missing, "no foundation.reaper.missing event with our pid in the ring");

	fdn_segment *s2 = NULL;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_REQUIRE_REAPER, &s2), FDN_ENOREAPER);
	cr_assert_null(s2);
	cr_assert_eq(fdn_segment_attach(name, 0, &s2), 0);
	fdn_segment_detach(s2);

	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	if (*saved)
		setenv("FOUNDATION_REAPERD", saved, 1);
	else
		unsetenv("FOUNDATION_REAPERD");
	free(saved);
}

/* Register k (owned by this process) and unregister it: two writes. */
static void write_once(fdn_segment *s)
{
	cr_assert_eq(fdn_register(s, "k", 1, getpid(), NULL, 0, FDN_REG_REPLACE, NULL), 0);
	cr_assert_eq(fdn_unregister(s, "k", 1), 0);
}

Test(launch, a_writer_restarts_a_dead_reaper_reads_never_do)
{
	char name[64];
	t_name(name, sizeof(name), "restart");
	fdn_segment *s = t_create_reaped(name, 1000, 64);
	pid_t first = fdn_reaper_holder(s);
	struct fdn_reaper_status st;
	fdn_reaper_status(s, &st);
	uint32_t before = st.launches;
	cr_assert_eq(kill(first, SIGKILL), 0);
	cr_assert(wait_holder_gone(s, first), "reaper %d survived SIGKILL", (int)first);

	/* Reads, on this handle and on a read-only one, for over a second
	 * (past the writers' check interval): no reaper. */
	fdn_segment *ro;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &ro), 0);
	uint64_t t0 = t_mono_ms();
	while (t_mono_ms() - t0 < 1500) {
		struct fdn_entry e;
		cr_assert_eq(fdn_lookup(s, "k", 1, 0, &e), FDN_ENOTFOUND);
		cr_assert_eq(fdn_lookup(ro, "k", 1, 0, &e), FDN_ENOTFOUND);
		cr_assert_geq(fdn_count(ro), 0);
		t_sleep_ms(20);
	}
	cr_assert_eq(fdn_reaper_holder(s), 0, "a read started a reaper");
	fdn_reaper_status(s, &st);
	cr_assert_eq(st.launches, before, "a read launched a reaper");
	fdn_segment_detach(ro);

	/* Writes: the first that looks starts one. */
	t0 = t_mono_ms();
	pid_t second = 0;
	while ((second = fdn_reaper_holder(s)) == 0 && t_mono_ms() - t0 < WAIT_MS) {
		write_once(s);
		t_sleep_ms(20);
	}
	uint64_t took = t_mono_ms() - t0;
	cr_assert_gt(second, 0, "no reaper restarted after %llu ms of writes",
		     (unsigned long long)took);
	cr_assert_neq(second, first);
	/* One launch per second at most, however many writes looked. */
	fdn_reaper_status(s, &st);
	cr_assert_geq(st.launches, before + 1);
	cr_assert_leq(st.launches, before + 2 + took / 1000, "%u launches in %llu ms",
		      st.launches - before, (unsigned long long)took);

	/* The new one reaps: a child's entry goes when it dies. */
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs;
		if (fdn_segment_attach(name, 0, &cs) ||
		    fdn_register(cs, "child", 5, getpid(), NULL, 0, 0, NULL))
			_exit(1);
		_exit(0);
	}
	cr_assert(t_wait_ok(c));
	cr_assert_eq(fdn_watch(s, "child", 5, false, WAIT_MS), 0,
		     "the restarted reaper did not remove a dead child's entry");
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(launch, stop_is_sticky_until_start)
{
	char name[64];
	t_name(name, sizeof(name), "stop");
	fdn_segment *s = t_create_reaped(name, 1000, 64);
	pid_t first = fdn_reaper_holder(s);
	cr_assert_eq(fdn_reaper_stop(s, WAIT_MS), first);
	cr_assert_eq(fdn_reaper_holder(s), 0);
	struct fdn_reaper_status st;
	fdn_reaper_status(s, &st);
	cr_assert(st.stopped);
	uint32_t before = st.launches;

	/* Writes past the check interval, and a new writable attach: none
	 * starts one. */
	uint64_t t0 = t_mono_ms();
	while (t_mono_ms() - t0 < 1500) {
		write_once(s);
		t_sleep_ms(20);
	}
	fdn_segment *s2;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_REQUIRE_REAPER, &s2), 0);
	write_once(s2);
	t_sleep_ms(200);
	cr_assert_eq(fdn_reaper_holder(s), 0, "a reaper started while stopped");
	fdn_reaper_status(s, &st);
	cr_assert_eq(st.launches, before);
	cr_assert(st.stopped);
	fdn_segment_detach(s2);

	/* fdn_reaper_start lifts it. */
	cr_assert_eq(fdn_reaper_start(s), 0);
	int p = fdn_reaper_wait(s, WAIT_MS);
	cr_assert_gt(p, 0, "no reaper after start: %s", fdn_strerror(p));
	fdn_reaper_status(s, &st);
	cr_assert(!st.stopped);
	cr_assert_eq(st.launches, before + 1);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(launch, many_attachers_one_launch_a_second)
{
	char name[64];
	t_name(name, sizeof(name), "herd");
	/* Made without a reaper; eight processes then attach at once. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
	enum { N = 8 };
	_Atomic int *go = t_shared(sizeof(*go));
	pid_t kids[N];
	for (int i = 0; i < N; i++) {
		kids[i] = t_fork();
		if (kids[i] == 0) {
			while (!atomic_load(go))
				;
			fdn_segment *cs;
			int r = fdn_segment_attach(name, 0, &cs);
			if (r == 0)
				fdn_segment_detach(cs);
			_exit(r == 0 ? 0 : 1);
		}
	}
	uint64_t t0 = t_mono_ms();
	atomic_store(go, 1);
	for (int i = 0; i < N; i++)
		cr_assert(t_wait_ok(kids[i]));
	int p = fdn_reaper_wait(s, WAIT_MS);
	uint64_t took = t_mono_ms() - t0;
	cr_assert_gt(p, 0, "no reaper: %s", fdn_strerror(p));
	struct fdn_reaper_status st;
	fdn_reaper_status(s, &st);
	cr_assert_geq(st.launches, 1);
	cr_assert_leq(st.launches, 1 + took / 1000, "%u launches for %d attaches in %llu ms",
		      st.launches, N, (unsigned long long)took);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
