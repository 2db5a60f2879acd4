/*
 * stress_corrupt - damaged copies of a populated segment: attach
 * read-only, the checker, every walk, and every foundation-inspect
 * command must give a result or an error, never a crash or a hang.
 *
 * The original is populated through the real API by two child processes
 * (registry entries with attributes, nested spans and a context, user
 * flags, flag changes and a stage migration (the history), sampler
 * settings and events in the ring); one of them is SIGKILLed with its
 * spans open, so the reaper copies its trace into the graveyard.  Then,
 * for --seconds (or --copies N), a copy of the file with random damage is
 * written under a new private name:
 *   flip    1..64 random bytes anywhere;
 *   region  1..16 random bytes in one part (header, process and reader
 *           slots, table, heap, services, trace slots, ring);
 *   window  a 64-byte run of random bytes;
 *   trunc   the file cut to a random length (sometimes inside the header);
 *   in_use  1..8 bytes flipped among those the original holds non-zero
 *           (whatever structure is in use there: a flip in the megabytes
 *           of zeroed service regions says less);
 * and each copy goes through
 *   - cw_walk (corrupt_walk.h) in a forked child with alarm(10): it must
 *     exit 0 (a signal is a crash, SIGALRM a hang);
 *   - every foundation-inspect command (text, and --json for some), with
 *     a 10 s timeout: each run must exit 0, or 1 with a message on
 *     stderr; never a signal, never the timeout, never another status.
 * (check and dump exit 1 with the violations on stdout: counted as flagged.)
 * The summary counts copies, attaches refused, copies the checker flags,
 * inspect runs and their exit-1 errors, crashes and hangs (both must be 0:
 * each is a violation).
 */
#include "corrupt_walk.h"
#include "stress.h"

#include <foundation/spans.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct st_opts opts = {.seconds = 10};
static uint64_t max_copies;
static const char *corpus_dir;
static bool all_inspect_json = false;

static const char usage_text[] =
    "usage: stress_corrupt [--seconds N] [--copies N] [--seed N]\n"
    "\n"
    "Copies of a populated segment with random bytes flipped, or truncated,\n"
    "under new private names: read-only attach, the checker and every walk in\n"
    "a child (alarm 10 s), and every foundation-inspect command\n"
    "($FOUNDATION_INSPECT) with a 10 s timeout.  No crash, no hang; inspect\n"
    "exits 0, or 1 with a message on stderr.\n"
    "\n"
    "  --seconds N   run time (default 10)\n"
    "  --copies N    stop after N copies (default: no limit)\n"
    "  --seed N      random seed (default: time and pid)\n"
    "  --corpus DIR  also write the fresh and the populated segment, encoded for\n"
    "                fuzz_segment (corrupt_walk.h), as DIR/fresh.rle, DIR/populated.rle\n"
    "  --all-json    run every inspect command with --json too on every copy\n"
    "  --verbose     a line per copy that the checker or inspect rejects\n"
    "\n"
    "Prints one line: ops=N kills=N violations=N leaked=N and figures; exits 0\n"
    "iff violations and leaked are 0.\n";

static int on_opt(int c, const char *arg)
{
	char *end;
	if (c == 'c') {
		max_copies = strtoull(arg, &end, 10);
		return *end || max_copies == 0 ? 2 : 0;
	}
	if (c == 'C') {
		corpus_dir = arg;
		return 0;
	}
	if (c == 'J') {
		all_inspect_json = true;
		return 0;
	}
	return 2;
}

static struct st_tally tally;

/* ---- the original ------------------------------------------------------------ */

static int populate(fdn_segment *s, int who, bool keep_open)
{
	int r = 0;
	char k[32], node[16];
	snprintf(node, sizeof(node), "n%d", who);
	for (int i = 0; i < 60 && r == 0; i++) {
		snprintf(k, sizeof(k), "agent-%d-%03d", who, i);
		const char *caps[2] = {"store", i % 2 ? "fetch" : "index"};
		struct fdn_attr a[4] = {
		    {.name = "capability", .type = FDN_ATTR_LIST, .v.list = {caps, 2}},
		    {.name = "health_status", .type = FDN_ATTR_STRING, .v.s = i % 3 ? "ok" : "bad"},
		    {.name = "node", .type = FDN_ATTR_STRING, .v.s = node},
		    {.name = "load", .type = FDN_ATTR_DOUBLE, .v.d = i / 8.0}};
		r = fdn_register(s, k, strlen(k), getpid(), a, 4, 0, NULL);
	}
	for (int i = 0; i < 60 && r == 0; i += 3) {
		snprintf(k, sizeof(k), "agent-%d-%03d", who, i);
		r = fdn_unregister(s, k, strlen(k)); /* freed blocks in the heap */
	}
	struct fdn_attr sa = {.name = "job", .type = FDN_ATTR_INT, .v.i = who};
	for (int d = 0; d < 3 && r == 0; d++)
		r = fdn_span_start(s, d ? "stress.corrupt.inner" : "stress.corrupt.outer", &sa, 1,
				   NULL);
	if (r == 0)
		r = fdn_span_record_event(s, "stress.corrupt.step", &sa, 1);
	if (r == 0)
		r = fdn_ctx_set(s, &sa, 1);
	if (r == 0)
		r = fdn_ctx_set_correlation_id(s, "corr-stress-corrupt");
	if (r == 0)
		r = fdn_ctx_breadcrumb(s, "stress", "populate", &sa, 1);
	for (int i = 0; i < 6 && r == 0; i++) {
		snprintf(k, sizeof(k), "corrupt_%d_%d", who, i);
		r = fdn_flag_create(s, k, i * 20);
		if (r == 0)
			r = fdn_flag_set(s, k, 100 - i * 10);
	}
	struct fdn_sampler sp = {FDN_SAMPLER_RANDOM, 0.5};
	if (r == 0)
		r = fdn_sampler_set(s, "stress.corrupt.sampled", &sp);
	for (int i = 0; i < 40 && r >= 0; i++) {
		struct fdn_measurement m = {"i", (double)i};
		r = fdn_emit(s, "stress.corrupt.event", &m, 1, &sa, 1);
	}
	if (r >= 0)
		r = fdn_rate_limit(s, "stress.corrupt", 10, 1000);
	if (r >= 0)
		r = fdn_batch_add(s, "stress.corrupt.batch", 1.5);
	if (r >= 0 && !keep_open)
		for (int d = 0; d < 1 && r == 0; d++)
			r = fdn_span_end(s, FDN_STATUS_OK);
	return r < 0 ? r : 0;
}

static void populator(int who, bool keep_open, _Atomic int *report)
{
	fdn_segment *s;
	int r = fdn_segment_attach(st_segment(), 0, &s);
	if (r == 0)
		r = populate(s, who, keep_open);
	atomic_store(report, r);
	for (;;)
		pause();
}

static unsigned char *read_all(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		fprintf(stderr, "%s: %s: %s\n", st_prog, path, strerror(errno));
		exit(1);
	}
	unsigned char *b = malloc((size_t)st.st_size);
	if (!b || pread(fd, b, (size_t)st.st_size, 0) != st.st_size) {
		fprintf(stderr, "%s: read %s failed\n", st_prog, path);
		exit(1);
	}
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

/* The segment as it is now, encoded for the fuzz target, into DIR/file. */
static void save_corpus(const char *file)
{
	if (!corpus_dir)
		return;
	char src[160], dst[512];
	snprintf(src, sizeof(src), "/dev/shm/%s", st_segment());
	snprintf(dst, sizeof(dst), "%s/%s", corpus_dir, file);
	size_t len;
	unsigned char *b = read_all(src, &len);
	FILE *f = fopen(dst, "wb");
	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", st_prog, dst, strerror(errno));
		exit(1);
	}
	cw_encode(f, b, len);
	fclose(f);
	free(b);
}

/* ---- one copy -------------------------------------------------------------------- */

static char copy_name[128], copy_path[160];
static uint64_t crashes, hangs, inspect_runs, inspect_errors, inspect_flagged, inspect_bad;
static uint64_t attach_refused, checker_flagged, walk_runs;

static void write_copy(const unsigned char *b, size_t len)
{
	int fd = open(copy_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
	if (fd < 0 || write(fd, b, len) != (ssize_t)len) {
		fprintf(stderr, "%s: write %s: %s\n", st_prog, copy_path, strerror(errno));
		exit(1);
	}
	close(fd);
}

/* Wait for pid with a timeout; kill it on expiry.  Returns the status, and
 * *timed_out. */
static int wait_timeout(pid_t pid, int seconds, bool *timed_out)
{
	uint64_t deadline = st_now_ns() + (uint64_t)seconds * 1000000000ull;
	int st = 0;
	*timed_out = false;
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			st = 0;
			break;
		}
		if (st_now_ns() > deadline) {
			*timed_out = true;
			st = st_kill_wait(pid);
			break;
		}
		st_sleep_ns(500000);
	}
	st_untrack(pid);
	return st;
}

static void walk_copy(const char *what)
{
	_Atomic int *res = st_shared(sizeof(struct cw_result));
	struct cw_result *cr = (struct cw_result *)res;
	memset(cr, 0, sizeof(*cr));
	pid_t p = st_fork();
	if (p == 0) {
		alarm(10);
		struct cw_result r;
		cw_walk(copy_name, &r);
		*cr = r;
		_exit(0);
	}
	bool to;
	int st = wait_timeout(p, 12, &to);
	walk_runs++;
	if (to || (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)) {
		hangs++;
		st_fail(&tally, "%s: the walk hung", what);
	} else if (WIFSIGNALED(st)) {
		crashes++;
		st_fail(&tally, "%s: the walk died by signal %d", what, WTERMSIG(st));
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		st_fail(&tally, "%s: the walk exited with status %#x", what, st);
	} else {
		attach_refused += cr->attach != 0;
		checker_flagged += cr->attach == 0 && cr->violations != 0;
		if (opts.verbose && (cr->attach || cr->violations))
			fprintf(stderr, "%s: %s: attach %s, checker %d\n", st_prog, what,
				cr->attach ? fdn_errname(cr->attach) : "ok", cr->violations);
	}
	munmap((void *)res, sizeof(struct cw_result));
}

static const char *const commands[] = {"registry", "processes", "spans",    "graveyard",
				       "stats",    "events",    "samplers", "check",
				       "flags",    "stages",    "metrics",  "dump"};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void inspect_copy(const char *what, int cmd, bool json)
{
	/* metrics refuses --json (bad usage, exit 2): run its text form */
	if (json && strcmp(commands[cmd], "metrics") == 0)
		json = false;
	char errpath[] = "/tmp/stress_corrupt_err_XXXXXX";
	int efd = mkstemp(errpath);
	if (efd < 0) {
		fprintf(stderr, "%s: mkstemp: %s\n", st_prog, strerror(errno));
		exit(1);
	}
	unlink(errpath);
	char outpath[] = "/tmp/stress_corrupt_out_XXXXXX";
	int ofd = mkstemp(outpath);
	if (ofd < 0) {
		fprintf(stderr, "%s: mkstemp: %s\n", st_prog, strerror(errno));
		exit(1);
	}
	unlink(outpath);
	const char *path = st_inspect_path();
	pid_t p = st_fork();
	if (p == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(ofd, 1);
		dup2(efd, 2);
		if (json)
			execl(path, path, "--segment", copy_name, "--json", commands[cmd],
			      (char *)NULL);
		else
			execl(path, path, "--segment", copy_name, commands[cmd], (char *)NULL);
		_exit(127);
	}
	bool to;
	int st = wait_timeout(p, 10, &to);
	off_t errlen = lseek(efd, 0, SEEK_END);
	char msg[200] = "";
	if (errlen > 0) {
		ssize_t n = pread(efd, msg, sizeof(msg) - 1, 0);
		msg[n > 0 ? n : 0] = 0;
		char *nl = strchr(msg, '\n');
		if (nl)
			*nl = 0;
	}
	close(efd);
	off_t outlen = lseek(ofd, 0, SEEK_END);
	close(ofd);
	/* check and dump report violations on stdout and exit 1 (the tool's
	 * contract: 1 = the segment is not sound). */
	bool reports = strcmp(commands[cmd], "check") == 0 || strcmp(commands[cmd], "dump") == 0;
	inspect_runs++;
	if (to) {
		hangs++;
		st_fail(&tally, "%s: inspect %s%s hung (killed after 10 s)", what, commands[cmd],
			json ? " --json" : "");
	} else if (WIFSIGNALED(st)) {
		crashes++;
		st_fail(&tally, "%s: inspect %s%s died by signal %d", what, commands[cmd],
			json ? " --json" : "", WTERMSIG(st));
	} else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		/* a result */
	} else if (WIFEXITED(st) && WEXITSTATUS(st) == 1 && errlen > 0) {
		inspect_errors++;
	} else if (WIFEXITED(st) && WEXITSTATUS(st) == 1 && reports && outlen > 0) {
		inspect_flagged++;
	} else {
		inspect_bad++;
		st_fail(&tally, "%s: inspect %s%s exited with status %d%s (%s)", what,
			commands[cmd], json ? " --json" : "", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			errlen > 0 ? "" : " and no message", msg);
	}
}

/* The parts of the file, from the header (for region damage). */
struct part {
	const char *name;
	size_t off, len;
};

int main(int argc, char **argv)
{
	static const struct option extra[] = {{"copies", required_argument, 0, 'c'},
					      {"all-json", no_argument, 0, 'J'},
					      {"corpus", required_argument, 0, 'C'},
					      {0, 0, 0, 0}};
	st_prog = "stress_corrupt";
	st_parse(argc, argv, &opts, usage_text, extra, on_opt);
	st_setup("stress_corrupt", "corrupt");
	uint64_t x = opts.seed;
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 256;
	o.heap_bytes = 1u << 20;
	o.processes = 16;
	o.threads = 16;
	o.spans = 4;
	o.events = 64;
	fdn_segment *s = st_create(&o);
	pid_t reaper = st_reaper_start();
	if (st_settle(s, reaper, 20000) == 0)
		save_corpus("fresh.rle");
	_Atomic int *report = st_shared(sizeof(*report) * 2);
	pid_t pop[2];
	for (int i = 0; i < 2; i++) {
		atomic_store(&report[i], 1);
		pop[i] = st_fork();
		if (pop[i] == 0)
			populator(i, i == 0, &report[i]);
		while (atomic_load(&report[i]) == 1)
			st_sleep_ns(1000000);
		if (atomic_load(&report[i]) != 0) {
			fprintf(stderr, "%s: populating: %s\n", st_prog,
				fdn_strerror(atomic_load(&report[i])));
			return 1;
		}
	}
	/* The first dies with its spans open: a graveyard copy. */
	st_kill_wait(pop[0]);
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "the original did not settle");
	st_check(s, &tally, "original");
	save_corpus("populated.rle");
	uint64_t gw = 0, gd = 0;
	fdn_graveyard_trace_counts(s, &gw, &gd);
	if (gw == 0)
		st_fail(&tally, "original: no thread copy in the graveyard");
	/* Nothing writes now (the survivor waits, the reaper is idle). */
	char orig_path[160];
	snprintf(copy_name, sizeof(copy_name), "%s-copy", st_segment());
	snprintf(copy_path, sizeof(copy_path), "/dev/shm/%s", copy_name);
	snprintf(orig_path, sizeof(orig_path), "/dev/shm/%s", st_segment());
	size_t len;
	unsigned char *orig = read_all(orig_path, &len);
	unsigned char *buf = malloc(len);
	snprintf(copy_name, sizeof(copy_name), "%s-copy", st_segment());
	snprintf(copy_path, sizeof(copy_path), "/dev/shm/%s", copy_name);
	/* The fuzz target's encoding gives the same file back. */
	char *enc = NULL;
	size_t enclen = 0;
	FILE *mf = open_memstream(&enc, &enclen);
	cw_encode(mf, orig, len);
	fclose(mf);
	if (cw_decode_to_shm((const uint8_t *)enc, enclen, copy_name) != 0)
		st_fail(&tally, "decoding the encoded original failed");
	size_t dlen;
	unsigned char *dec = read_all(copy_path, &dlen);
	if (dlen != len || memcmp(dec, orig, len) != 0)
		st_fail(&tally, "the encoded original decodes to another file");
	free(dec);
	free(enc);
	/* The pristine copy: every command exits 0. */
	write_copy(orig, len);
	walk_copy("pristine copy");
	for (size_t c = 0; c < NCOMMANDS; c++)
		inspect_copy("pristine copy", (int)c, false);
	if (inspect_errors || inspect_flagged)
		st_fail(&tally, "pristine copy: %llu inspect commands failed",
			(unsigned long long)(inspect_errors + inspect_flagged));
	inspect_errors = inspect_flagged = 0;

	const struct part parts[] = {
	    {"header", 0,
	     s->procs ? (size_t)((unsigned char *)s->procs - (unsigned char *)s->hdr) : 4096},
	    {"procs", (size_t)((unsigned char *)s->procs - (unsigned char *)s->hdr),
	     s->nprocs * sizeof(*s->procs)},
	    {"tslots", (size_t)((unsigned char *)s->tslots - (unsigned char *)s->hdr),
	     s->nthreads * sizeof(*s->tslots)},
	    {"trace", (size_t)((unsigned char *)s->trace - (unsigned char *)s->hdr),
	     s->ntrace * sizeof(*s->trace)},
	    {"all", 0, len},
	};
	const size_t nparts = sizeof(parts) / sizeof(parts[0]);
	uint64_t t0 = st_now_ns(), end = t0 + (uint64_t)(opts.seconds * 1e9), copies = 0;
	uint64_t kinds[5] = {0};
	/* Where the original holds something (every structure in use: nodes,
	 * slots, flags, ring records, the graveyard, telemetry slots). */
	size_t nnz = 0, *nz = malloc(len * sizeof(size_t) / 16 + 64 * sizeof(size_t));
	for (size_t i = 0; nz && i < len && nnz < len / 16 + 64; i++)
		if (orig[i])
			nz[nnz++] = i;
	while ((max_copies ? copies < max_copies : st_now_ns() < end) && tally.violations < 20) {
		memcpy(buf, orig, len);
		size_t clen = len;
		int kind = (int)(st_rand(&x) % (nnz ? 5 : 4));
		char what[96];
		if (kind == 0) {
			int n = (int)st_between(&x, 1, 64);
			for (int i = 0; i < n; i++)
				buf[st_rand(&x) % len] ^= (unsigned char)st_between(&x, 1, 255);
			snprintf(what, sizeof(what), "copy %llu (%d bytes flipped)",
				 (unsigned long long)copies, n);
		} else if (kind == 1) {
			const struct part *pt = &parts[st_rand(&x) % nparts];
			size_t plen = pt->len && pt->off + pt->len <= len ? pt->len : len - pt->off;
			int n = (int)st_between(&x, 1, 16);
			for (int i = 0; i < n; i++)
				buf[pt->off + st_rand(&x) % plen] ^=
				    (unsigned char)st_between(&x, 1, 255);
			snprintf(what, sizeof(what), "copy %llu (%d bytes flipped in %s)",
				 (unsigned long long)copies, n, pt->name);
		} else if (kind == 2) {
			size_t at = st_rand(&x) % (len - 64);
			for (int i = 0; i < 64; i++)
				buf[at + i] = (unsigned char)st_rand(&x);
			snprintf(what, sizeof(what), "copy %llu (64 random bytes at %zu)",
				 (unsigned long long)copies, at);
		} else if (kind == 4) {
			int n = (int)st_between(&x, 1, 8);
			for (int i = 0; i < n; i++)
				buf[nz[st_rand(&x) % nnz]] ^= (unsigned char)st_between(&x, 1, 255);
			snprintf(what, sizeof(what), "copy %llu (%d bytes in use flipped)",
				 (unsigned long long)copies, n);
		} else {
			clen = st_rand(&x) % 2 ? st_rand(&x) % 8192 : st_rand(&x) % len;
			snprintf(what, sizeof(what), "copy %llu (truncated to %zu of %zu)",
				 (unsigned long long)copies, clen, len);
		}
		kinds[kind]++;
		write_copy(buf, clen);
		walk_copy(what);
		/* Every command on every copy; --json on a rotating one. */
		for (size_t c = 0; c < NCOMMANDS; c++)
			inspect_copy(what, (int)c, false);
		inspect_copy(what, (int)(copies % NCOMMANDS), true);
		if (all_inspect_json)
			for (size_t c = 0; c < NCOMMANDS; c++)
				inspect_copy(what, (int)c, true);
		copies++;
	}
	/* The copy's magic may be damaged: destroy would rightly refuse. */
	unlink(copy_path);
	/* The original is untouched by all this. */
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "end: the original did not settle");
	st_check(s, &tally, "original at the end");
	double secs = (double)(st_now_ns() - t0) / 1e9;
	fdn_segment_detach(s);
	st_cleanup();
	free(orig);
	free(buf);
	free(nz);
	return st_summary(
	    copies * (NCOMMANDS + 2), 1, &tally,
	    "seconds=%.1f copies=%llu flipped=%llu region=%llu window=%llu truncated=%llu "
	    "in_use=%llu "
	    "size=%zu attach_refused=%llu checker_flagged=%llu walks=%llu inspect_runs=%llu "
	    "inspect_errors=%llu inspect_flagged=%llu crashes=%llu hangs=%llu",
	    secs, (unsigned long long)copies, (unsigned long long)kinds[0],
	    (unsigned long long)kinds[1], (unsigned long long)kinds[2],
	    (unsigned long long)kinds[3], (unsigned long long)kinds[4], len,
	    (unsigned long long)attach_refused, (unsigned long long)checker_flagged,
	    (unsigned long long)walk_runs, (unsigned long long)inspect_runs,
	    (unsigned long long)inspect_errors, (unsigned long long)inspect_flagged,
	    (unsigned long long)crashes, (unsigned long long)hangs);
}
