/* bench/bench_common.c - see bench_common.h. */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_SHM_TRACKED 8
static char bench_shm_paths[BENCH_SHM_TRACKED][512];
volatile sig_atomic_t bench_kill_pid, bench_term_pid;
#define BENCH_LMDB_TRACKED 4
static char bench_lmdb_files[BENCH_LMDB_TRACKED][2][96]; /* data.mdb, lock.mdb */
static char bench_lmdb_dir[BENCH_LMDB_TRACKED][64];
static volatile sig_atomic_t bench_redis_pid;
static char bench_redis_sock[96], bench_redis_dir[64];

void bench_on_signal(int sig)
{
	if (bench_kill_pid > 0)
		kill((pid_t)bench_kill_pid, SIGKILL);
	for (int i = 0; i < BENCH_SHM_TRACKED; i++)
		if (bench_shm_paths[i][0])
			unlink(bench_shm_paths[i]);
	if (bench_term_pid > 0)
		kill((pid_t)bench_term_pid, SIGTERM);
	for (int e = 0; e < BENCH_LMDB_TRACKED; e++) {
		for (int i = 0; i < 2; i++)
			if (bench_lmdb_files[e][i][0])
				unlink(bench_lmdb_files[e][i]);
		if (bench_lmdb_dir[e][0])
			rmdir(bench_lmdb_dir[e]);
	}
	if (bench_redis_pid > 0)
		kill((pid_t)bench_redis_pid, SIGTERM);
	if (bench_redis_sock[0])
		unlink(bench_redis_sock);
	if (bench_redis_dir[0])
		rmdir(bench_redis_dir);
	signal(sig, SIG_DFL);
	raise(sig);
}

int bench_shm_track(const char *name)
{
	for (int i = 0; i < BENCH_SHM_TRACKED; i++) {
		if (bench_shm_paths[i][0])
			continue;
		/* Fill, then publish the first byte: a handler never sees half a
		 * path. */
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s/%s", bench_shm_dir(), name);
		memcpy(bench_shm_paths[i] + 1, tmp + 1, sizeof(tmp) - 1);
		bench_shm_paths[i][0] = tmp[0];
		return i;
	}
	return -1;
}

void bench_shm_untrack(int slot)
{
	if (slot >= 0 && slot < BENCH_SHM_TRACKED)
		bench_shm_paths[slot][0] = 0;
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

uint64_t bench_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bench_cli_opt(struct bench_cli *c, int opt, void (*usage)(FILE *))
{
	switch (opt) {
	case 'j':
		c->json = true;
		return 0;
	case 'f':
		c->json_path = optarg;
		return 0;
	case 'q':
		c->quick = true;
		return 0;
	case 'h':
		usage(stdout);
		return 1;
	default:
		usage(stderr);
		return 2;
	}
}

int bench_cli_end(const struct bench_cli *c, int argc, char **argv, void (*usage)(FILE *))
{
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", bench_prog, argv[optind]);
		usage(stderr);
		return 2;
	}
	if (c->json && c->json_path) {
		fprintf(stderr, "%s: --json and --json-file: choose one\n", bench_prog);
		return 2;
	}
	return 0;
}

int bench_fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -1;
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
	d->slot = -1;
	d->env = NULL;
	snprintf(d->dir, sizeof(d->dir), "/tmp/%s-lmdb-XXXXXX", tag);
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "%s: lmdb: mkdtemp %s: %s\n", bench_prog, d->dir, strerror(errno));
		d->dir[0] = 0;
		return -1;
	}
	/* Tracked for bench_on_signal in a free slot (a handler removes the
	 * files, then the directory). */
	for (int e = 0; e < BENCH_LMDB_TRACKED && d->slot < 0; e++) {
		if (bench_lmdb_dir[e][0])
			continue;
		d->slot = e;
		snprintf(bench_lmdb_files[e][0], sizeof(bench_lmdb_files[e][0]), "%s/data.mdb",
			 d->dir);
		snprintf(bench_lmdb_files[e][1], sizeof(bench_lmdb_files[e][1]), "%s/lock.mdb",
			 d->dir);
		snprintf(bench_lmdb_dir[e], sizeof(bench_lmdb_dir[e]), "%s", d->dir);
	}
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
	for (int i = 0; i < 2 && d->dir[0]; i++) {
		char f[96];
		snprintf(f, sizeof(f), "%s/%s", d->dir, i ? "lock.mdb" : "data.mdb");
		if (unlink(f) < 0 && errno != ENOENT)
			fprintf(stderr, "%s: lmdb: remove %s: %s\n", bench_prog, f,
				strerror(errno));
	}
	if (d->dir[0] && rmdir(d->dir) < 0)
		fprintf(stderr, "%s: lmdb: remove %s: %s\n", bench_prog, d->dir, strerror(errno));
	d->dir[0] = 0;
	if (d->slot >= 0) {
		bench_lmdb_dir[d->slot][0] = 0;
		bench_lmdb_files[d->slot][0][0] = bench_lmdb_files[d->slot][1][0] = 0;
	}
	d->slot = -1;
}
#endif

/* ---- redis-server ------------------------------------------------------------ */

/* The first executable `name` in $PATH, into path. */
static bool which(const char *name, char *path, size_t cap)
{
	const char *p = getenv("PATH");
	if (!p || !*p)
		p = "/usr/local/bin:/usr/bin:/bin";
	while (*p) {
		size_t n = strcspn(p, ":");
		if (n && (size_t)snprintf(path, cap, "%.*s/%s", (int)n, p, name) < cap &&
		    access(path, X_OK) == 0)
			return true;
		p += n;
		if (*p == ':')
			p++;
	}
	return false;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int redis_connect(struct bench_redis *r)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", r->sock);
	for (int i = 0; i < 500; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return bench_fail("redis: socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
			r->fd = fd;
			return 0;
		}
		close(fd);
		int st;
		if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
			r->pid = 0;
			bench_redis_pid = 0;
			return bench_fail(
			    "redis: redis-server exited before it listened (status 0x%x)", st);
		}
		sleep_ms(10);
	}
	return bench_fail("redis: no connection on %s after 5 s", r->sock);
}

int bench_redis_start(struct bench_redis *r)
{
	char exe[512];
	*r = (struct bench_redis){.fd = -1};
	if (!which("redis-server", exe, sizeof(exe)))
		return 1;
	snprintf(r->dir, sizeof(r->dir), "/tmp/%s-redis-XXXXXX", bench_prog);
	if (!mkdtemp(r->dir)) {
		r->dir[0] = 0;
		return bench_fail("redis: mkdtemp: %s", strerror(errno));
	}
	snprintf(bench_redis_dir, sizeof(bench_redis_dir), "%s", r->dir);
	snprintf(r->sock, sizeof(r->sock), "%s/redis.sock", r->dir);
	snprintf(bench_redis_sock, sizeof(bench_redis_sock), "%s", r->sock);
	pid_t parent = getpid();
	pid_t p = fork();
	if (p < 0) {
		bench_fail("redis: fork: %s", strerror(errno));
		bench_redis_stop(r);
		return -1;
	}
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		/* No TCP, no RDB snapshots, no AOF: memory only. */
		execl(exe, exe, "--port", "0", "--unixsocket", r->sock, "--unixsocketperm", "700",
		      "--save", "", "--appendonly", "no", "--dir", r->dir, "--daemonize", "no",
		      "--loglevel", "warning", "--logfile", "", (char *)NULL);
		_exit(127);
	}
	r->pid = p;
	bench_redis_pid = p;
	if (redis_connect(r)) {
		bench_redis_stop(r);
		return -1;
	}
	struct bench_resp rep;
	const char *ping[] = {"PING"};
	if (bench_redis_call(r, 1, ping, NULL, &rep) || rep.type != '+') {
		if (rep.type != '+')
			bench_fail("redis: PING: unexpected reply");
		bench_redis_stop(r);
		return -1;
	}
	return 0;
}

void bench_redis_stop(struct bench_redis *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		int st;
		while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	r->pid = 0;
	bench_redis_pid = 0;
	if (r->sock[0] && unlink(r->sock) < 0 && errno != ENOENT)
		bench_fail("redis: remove %s: %s", r->sock, strerror(errno));
	r->sock[0] = 0;
	bench_redis_sock[0] = 0;
	if (r->dir[0] && rmdir(r->dir) < 0)
		bench_fail("redis: remove %s: %s", r->dir, strerror(errno));
	r->dir[0] = 0;
	bench_redis_dir[0] = 0;
	free(r->wbuf);
	free(r->rbuf);
	r->wbuf = r->rbuf = NULL;
	r->wlen = r->wcap = r->rpos = r->rlen = r->rcap = 0;
}

static int wbuf_put(struct bench_redis *r, const void *p, size_t n)
{
	if (r->wlen + n > r->wcap) {
		size_t cap = r->wcap ? r->wcap : 4096;
		while (cap < r->wlen + n)
			cap *= 2;
		char *b = realloc(r->wbuf, cap);
		if (!b)
			return bench_fail("redis: buffer: %s", strerror(errno));
		r->wbuf = b;
		r->wcap = cap;
	}
	memcpy(r->wbuf + r->wlen, p, n);
	r->wlen += n;
	return 0;
}

int bench_redis_cmd(struct bench_redis *r, int argc, const char *const *argv, const size_t *lens)
{
	char head[32];
	int n = snprintf(head, sizeof(head), "*%d\r\n", argc);
	if (wbuf_put(r, head, (size_t)n))
		return -1;
	for (int i = 0; i < argc; i++) {
		size_t len = lens ? lens[i] : strlen(argv[i]);
		n = snprintf(head, sizeof(head), "$%zu\r\n", len);
		if (wbuf_put(r, head, (size_t)n) || wbuf_put(r, argv[i], len) ||
		    wbuf_put(r, "\r\n", 2))
			return -1;
	}
	return 0;
}

int bench_redis_flush(struct bench_redis *r)
{
	size_t off = 0;
	while (off < r->wlen) {
		ssize_t w = write(r->fd, r->wbuf + off, r->wlen - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return bench_fail("redis: write: %s", w < 0 ? strerror(errno) : "closed");
		off += (size_t)w;
	}
	r->wlen = 0;
	return 0;
}

/* At least n unread bytes in rbuf. */
static int rbuf_need(struct bench_redis *r, size_t n)
{
	while (r->rlen - r->rpos < n) {
		if (r->rpos) {
			memmove(r->rbuf, r->rbuf + r->rpos, r->rlen - r->rpos);
			r->rlen -= r->rpos;
			r->rpos = 0;
		}
		if (r->rcap - r->rlen < 4096 || r->rcap < n) {
			size_t cap = r->rcap ? r->rcap * 2 : 65536;
			while (cap < n)
				cap *= 2;
			char *b = realloc(r->rbuf, cap);
			if (!b)
				return bench_fail("redis: buffer: %s", strerror(errno));
			r->rbuf = b;
			r->rcap = cap;
		}
		ssize_t got = read(r->fd, r->rbuf + r->rlen, r->rcap - r->rlen);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return bench_fail("redis: read: %s", got < 0 ? strerror(errno) : "closed");
		r->rlen += (size_t)got;
	}
	return 0;
}

/* The next line (without CRLF) at rbuf + *at, its length in *len. */
static int rbuf_line(struct bench_redis *r, size_t *at, size_t *len)
{
	size_t scanned = 0;
	for (;;) {
		const char *b = r->rbuf + r->rpos;
		size_t have = r->rlen - r->rpos;
		for (size_t i = scanned; i + 1 < have; i++) {
			if (b[i] == '\r' && b[i + 1] == '\n') {
				*at = r->rpos;
				*len = i;
				r->rpos += i + 2;
				return 0;
			}
		}
		scanned = have ? have - 1 : 0;
		if (rbuf_need(r, have + 1))
			return -1;
	}
}

static int64_t parse_i64(const char *s, size_t n, bool *ok)
{
	int64_t v = 0;
	bool neg = n && s[0] == '-';
	*ok = n > (size_t)neg && n < 20;
	for (size_t i = neg; i < n && *ok; i++) {
		if (s[i] < '0' || s[i] > '9')
			*ok = false;
		else
			v = v * 10 + (s[i] - '0');
	}
	return neg ? -v : v;
}

int bench_redis_reply(struct bench_redis *r, struct bench_resp *out)
{
	size_t at, len;
	*out = (struct bench_resp){0};
	if (rbuf_line(r, &at, &len))
		return -1;
	if (len == 0)
		return bench_fail("redis: protocol: empty reply line");
	const char *l = r->rbuf + at;
	bool ok = true;
	out->type = l[0];
	switch (l[0]) {
	case '+':
	case '-':
		out->str = l + 1;
		out->len = len - 1;
		return 0;
	case ':':
		out->integer = parse_i64(l + 1, len - 1, &ok);
		return ok ? 0 : bench_fail("redis: protocol: bad integer");
	case '$': {
		int64_t n = parse_i64(l + 1, len - 1, &ok);
		if (!ok || n < -1)
			return bench_fail("redis: protocol: bad bulk length");
		if (n == -1) {
			out->is_nil = true;
			return 0;
		}
		if (rbuf_need(r, (size_t)n + 2))
			return -1;
		out->str = r->rbuf + r->rpos;
		out->len = (size_t)n;
		r->rpos += (size_t)n + 2;
		return 0;
	}
	default:
		return bench_fail("redis: protocol: reply type '%c' not expected", l[0]);
	}
}

int bench_redis_call(struct bench_redis *r, int argc, const char *const *argv, const size_t *lens,
		     struct bench_resp *out)
{
	if (bench_redis_cmd(r, argc, argv, lens) || bench_redis_flush(r) ||
	    bench_redis_reply(r, out))
		return -1;
	if (out->type == '-')
		return bench_fail("redis: %s: %.*s", argv[0], (int)out->len, out->str);
	return 0;
}

/* ---- results ------------------------------------------------------------------ */

static FILE *out_text, *out_json;
static bool out_json_owned;

int bench_output_open(bool json, const char *json_path)
{
	out_text = stdout;
	out_json = NULL;
	if (json) {
		out_json = stdout;
		out_text = stderr;
	}
	if (json_path) {
		out_json = fopen(json_path, "w");
		if (!out_json) {
			fprintf(stderr, "%s: %s: %s\n", bench_prog, json_path, strerror(errno));
			return -1;
		}
		out_json_owned = true;
		out_text = stdout;
	}
	return 0;
}

void bench_output_close(void)
{
	if (out_json_owned && out_json && fclose(out_json) != 0)
		fprintf(stderr, "%s: closing the JSON output: %s\n", bench_prog, strerror(errno));
	out_json = NULL;
	out_json_owned = false;
	fflush(stdout);
}

void bench_say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(out_text ? out_text : stdout, fmt, ap);
	va_end(ap);
	fflush(out_text ? out_text : stdout);
}

void bench_result_init(struct bench_result *r, const char *scenario, enum bench_kind kind,
		       const char *unit, const char *col)
{
	memset(r, 0, sizeof(*r));
	r->scenario = scenario;
	r->kind = kind;
	r->unit = unit;
	r->col = col;
}

void bench_param(struct bench_result *r, const char *name, const char *fmt, ...)
{
	size_t used = strlen(r->params);
	int n = snprintf(r->params + used, sizeof(r->params) - used, "%s\"%s\":", used ? "," : "",
			 name);
	if (n < 0 || (size_t)n >= sizeof(r->params) - used)
		return;
	used += (size_t)n;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->params + used, sizeof(r->params) - used, fmt, ap);
	va_end(ap);
}

void bench_title(struct bench_result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->title, sizeof(r->title), fmt, ap);
	va_end(ap);
}

struct bench_sys *bench_add(struct bench_result *r, const char *id, const char *label)
{
	if (r->n == BENCH_MAX_SYS)
		return NULL;
	struct bench_sys *s = &r->sys[r->n++];
	*s = (struct bench_sys){.id = id, .label = label};
	return s;
}

static const struct bench_sys *find_sys(const struct bench_result *r, const char *id)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->sys[i].id, id) == 0)
			return &r->sys[i];
	return NULL;
}

double bench_value(const struct bench_result *r, const char *id)
{
	const struct bench_sys *s = find_sys(r, id);
	return s ? s->v[0] : 0;
}

void bench_target(struct bench_result *r, const char *what, double measured, bool at_most,
		  double limit)
{
	if (r->ntargets == BENCH_MAX_TARGETS)
		return;
	struct bench_target *t = &r->targets[r->ntargets++];
	snprintf(t->what, sizeof(t->what), "%s", what);
	t->at_most = at_most;
	t->limit = limit;
	t->measured = measured;
}

void bench_target_ratio(struct bench_result *r, const char *num, const char *den, double min)
{
	const struct bench_sys *x = find_sys(r, num), *y = find_sys(r, den);
	if (!x || !y || x->v[0] <= 0 || y->v[0] <= 0)
		return;
	char what[64];
	snprintf(what, sizeof(what), "%s/%s", num, den);
	/* Interleaved rounds: the median of the per-round ratios. */
	size_t i = (size_t)(x - r->sys), j = (size_t)(y - r->sys);
	double v = r->has_ratio[i][j] ? r->ratio_stat[i][j][BENCH_MED] : x->v[0] / y->v[0];
	bench_target(r, what, v, false, min);
}

static bool target_met(const struct bench_target *t)
{
	return t->at_most ? t->measured <= t->limit : t->measured >= t->limit;
}

static double load_1m(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

/* A ratio cell: "median [p10-p90]". */
static void ratio_cell(char *buf, size_t cap, const double st[BENCH_NSTAT])
{
	snprintf(buf, cap, "%.3g [%.3g-%.3g]", st[BENCH_MED], st[BENCH_P10], st[BENCH_P90]);
}

static void emit_text(FILE *f, const struct bench_result *r, double load)
{
	fprintf(f, "%s: %s (load %.2f)\n", r->scenario, r->title, load);
	if (r->rounds)
		fprintf(f, "  %s; medians of the per-round values, [p10-p90]\n", r->how);
	fprintf(f, "\n");
	const struct bench_sys *first = NULL;
	for (size_t i = 0; i < r->n && !first; i++)
		if (r->sys[i].v[0] > 0)
			first = &r->sys[i];
	size_t fi = first ? (size_t)(first - r->sys) : 0;
	if (r->kind == BENCH_LATENCY)
		fprintf(f, "  %-44s %10s %10s %10s\n", "system", "p50 us", "p99 us", "max us");
	else if (r->kind == BENCH_RATE && r->rounds)
		fprintf(f, "  %-44s %14s %10s %25s %21s\n", "system", r->col, "ns/op",
			"ops/s [p10-p90]", "first/x [p10-p90]");
	else if (r->kind == BENCH_RATE)
		fprintf(f, "  %-44s %14s %10s %12s\n", "system", r->col, "ns/op", "first/x");
	else
		fprintf(f, "  %-44s %14s %12s\n", "system", r->col, "x/first");
	for (size_t i = 0; i < r->n; i++) {
		const struct bench_sys *s = &r->sys[i];
		if (s->v[0] <= 0) {
			fprintf(f, "  %-44s %s\n", s->label, s->note ? s->note : "not measured");
			continue;
		}
		if (r->kind == BENCH_LATENCY) {
			fprintf(f, "  %-44s %10.1f %10.1f %10.1f", s->label, s->v[0], s->v[1],
				s->v[2]);
		} else if (r->kind == BENCH_RATE && r->rounds) {
			char spread[48], ratio[48] = "1";
			snprintf(spread, sizeof(spread), "[%.4g-%.4g]", r->sys_stat[i][BENCH_P10],
				 r->sys_stat[i][BENCH_P90]);
			if (i != fi && r->has_ratio[fi][i])
				ratio_cell(ratio, sizeof(ratio), r->ratio_stat[fi][i]);
			fprintf(f, "  %-44s %14.0f %10.1f %25s %21s", s->label, s->v[0],
				1e9 / s->v[0], spread, ratio);
		} else if (r->kind == BENCH_RATE) {
			fprintf(f, "  %-44s %14.0f %10.1f %12.2f", s->label, s->v[0], 1e9 / s->v[0],
				first->v[0] / s->v[0]);
		} else {
			fprintf(f, "  %-44s %14.1f %12.2f", s->label, s->v[0],
				s->v[0] / first->v[0]);
		}
		fprintf(f, "%s%s\n", s->note ? "   " : "", s->note ? s->note : "");
	}
	for (size_t k = 0; k < r->nshow; k++) {
		size_t a = r->show[k][0], b = r->show[k][1];
		if (!r->has_ratio[a][b])
			continue;
		const double *st = r->ratio_stat[a][b];
		char what[80];
		snprintf(what, sizeof(what), "%s/%s", r->sys[a].id, r->sys[b].id);
		fprintf(f, "%s  ratio %-38s median %8.3f   p10-p90 %.3f-%.3f   min-max %.3f-%.3f\n",
			k ? "" : "\n", what, st[BENCH_MED], st[BENCH_P10], st[BENCH_P90],
			st[BENCH_MIN], st[BENCH_MAX]);
	}
	for (size_t i = 0; i < r->ntargets; i++) {
		const struct bench_target *t = &r->targets[i];
		fprintf(f, "%s  target %-40s %s %8.2f   measured %8.2f   %s\n", i ? "" : "\n",
			t->what, t->at_most ? "<=" : ">=", t->limit, t->measured,
			target_met(t) ? "met" : "MISSED");
	}
	if (r->memtext[0])
		fprintf(f, "\n  where the memory lives (/proc/self/smaps):\n%s", r->memtext);
	fprintf(f, "\n");
	fflush(f);
}

static void emit_json(FILE *f, const struct bench_result *r, double load)
{
	fprintf(f, "{\"scenario\":\"%s\",\"program\":\"%s\",\"loadavg_1m\":%.2f,\"params\":{%s}",
		r->scenario, bench_prog, load, r->params);
	fprintf(f, ",\"unit\":\"%s\",\"systems\":{", r->unit);
	const char *sep = "";
	for (size_t i = 0; i < r->n; i++) {
		const struct bench_sys *s = &r->sys[i];
		if (s->v[0] <= 0)
			continue;
		if (r->kind == BENCH_LATENCY)
			fprintf(f, "%s\"%s\":{\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}",
				sep, s->id, s->v[0], s->v[1], s->v[2]);
		else
			fprintf(f, "%s\"%s\":%.6g", sep, s->id, s->v[0]);
		sep = ",";
	}
	fprintf(f, "},\"ratios\":{");
	sep = "";
	for (size_t i = 0; i < r->n && r->kind != BENCH_LATENCY; i++) {
		for (size_t j = 0; j < r->n; j++) {
			const struct bench_sys *a = &r->sys[i], *b = &r->sys[j];
			if (i == j || a->v[0] <= 0 || b->v[0] <= 0)
				continue;
			double v =
			    r->has_ratio[i][j] ? r->ratio_stat[i][j][BENCH_MED] : a->v[0] / b->v[0];
			fprintf(f, "%s\"%s/%s\":%.4g", sep, a->id, b->id, v);
			sep = ",";
		}
	}
	fprintf(f, "}");
	if (r->rounds) {
		/* [min, p10, p90, max] of the per-round values. */
		fprintf(f, ",\"rounds\":%u,\"how\":\"%s\",\"systems_spread\":{", r->rounds, r->how);
		sep = "";
		for (size_t i = 0; i < r->n; i++) {
			const double *st = r->sys_stat[i];
			if (r->sys[i].v[0] <= 0)
				continue;
			fprintf(f, "%s\"%s\":[%.6g,%.6g,%.6g,%.6g]", sep, r->sys[i].id,
				st[BENCH_MIN], st[BENCH_P10], st[BENCH_P90], st[BENCH_MAX]);
			sep = ",";
		}
		fprintf(f, "},\"ratios_spread\":{");
		sep = "";
		for (size_t i = 0; i < r->n; i++)
			for (size_t j = 0; j < r->n; j++) {
				const double *st = r->ratio_stat[i][j];
				if (!r->has_ratio[i][j])
					continue;
				fprintf(f, "%s\"%s/%s\":[%.4g,%.4g,%.4g,%.4g]", sep, r->sys[i].id,
					r->sys[j].id, st[BENCH_MIN], st[BENCH_P10], st[BENCH_P90],
					st[BENCH_MAX]);
				sep = ",";
			}
		fprintf(f, "}");
	}
	if (r->memory[0])
		fprintf(f, ",\"memory\":[%s]", r->memory);
	fprintf(f, ",\"notes\":{");
	sep = "";
	for (size_t i = 0; i < r->n; i++) {
		if (!r->sys[i].note)
			continue;
		fprintf(f, "%s\"%s\":\"%s\"", sep, r->sys[i].id, r->sys[i].note);
		sep = ",";
	}
	fprintf(f, "},\"targets\":[");
	for (size_t i = 0; i < r->ntargets; i++) {
		const struct bench_target *t = &r->targets[i];
		fprintf(f,
			"%s{\"what\":\"%s\",\"op\":\"%s\",\"limit\":%g,\"measured\":%.4g,"
			"\"met\":%s}",
			i ? "," : "", t->what, t->at_most ? "<=" : ">=", t->limit, t->measured,
			target_met(t) ? "true" : "false");
	}
	fprintf(f, "]}\n");
	fflush(f);
}

void bench_emit(const struct bench_result *r)
{
	double load = load_1m();
	if (out_text)
		emit_text(out_text, r, load);
	if (out_json)
		emit_json(out_json, r, load);
}

void bench_show_ratio(struct bench_result *r, const char *num, const char *den)
{
	const struct bench_sys *a = find_sys(r, num), *b = find_sys(r, den);
	if (!a || !b || r->nshow == BENCH_MAX_TARGETS)
		return;
	r->show[r->nshow][0] = (unsigned char)(a - r->sys);
	r->show[r->nshow][1] = (unsigned char)(b - r->sys);
	r->nshow++;
}

/* ---- interleaved rounds ---------------------------------------------------------- */

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double bench_quantile(double *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_dbl);
	double pos = q * (double)(n - 1);
	size_t lo = (size_t)pos;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (pos - (double)lo) * (v[lo + 1] - v[lo]);
}

static void stats_of(double *v, size_t n, double out[BENCH_NSTAT])
{
	out[BENCH_MED] = bench_quantile(v, n, 0.5);
	out[BENCH_MIN] = v[0];
	out[BENCH_P10] = bench_quantile(v, n, 0.1);
	out[BENCH_P90] = bench_quantile(v, n, 0.9);
	out[BENCH_MAX] = v[n - 1];
}

/* One round: every system once, from system `first` on.  ns[i] gets the
 * slice's time, done[i] its operations.  0 or -1. */
static int one_round(const struct bench_rounds *b, size_t first, uint64_t at, uint64_t ops,
		     double *ns, double *done)
{
	for (size_t k = 0; k < b->nsys; k++) {
		size_t i = (first + k) % b->nsys;
		if (b->prepare && b->prepare(b->arg, i))
			return -1;
		/* Untimed, the first quarter of the slice: what the systems
		 * before this one left in the caches is not charged to it. */
		if (b->prewarm && ops >= 4 && b->run(b->arg, i, at, ops / 4) < 0)
			return -1;
		uint64_t t0 = bench_mono_ns();
		int64_t d = b->run(b->arg, i, at, ops);
		uint64_t t1 = bench_mono_ns();
		if (b->finish)
			b->finish(b->arg, i);
		if (d < 0)
			return -1;
		if (d == 0 || (uint64_t)d > ops) {
			fprintf(stderr,
				"%s: system %zu did %" PRId64 " of %" PRIu64 " operations\n",
				bench_prog, i, d, ops);
			return -1;
		}
		ns[i] = t1 > t0 ? (double)(t1 - t0) : 1;
		done[i] = (double)d;
	}
	return 0;
}

int bench_rounds_run(struct bench_rounds *b)
{
	size_t n = b->nsys;
	b->rate = NULL;
	if (n == 0 || n > BENCH_MAX_SYS || b->rounds == 0 || b->min_ops == 0 ||
	    b->stream_len < b->min_ops) {
		fprintf(stderr, "%s: rounds: bad parameters\n", bench_prog);
		return -1;
	}
	b->rate = calloc((size_t)b->rounds * n, sizeof(*b->rate));
	if (!b->rate) {
		fprintf(stderr, "%s: rounds: %s\n", bench_prog, strerror(errno));
		return -1;
	}
	double ns[BENCH_MAX_SYS], done[BENCH_MAX_SYS];
	unsigned warm = b->warmup ? b->warmup : 1;
	b->ops = b->min_ops;
	for (unsigned w = 0; w < warm; w++) {
		if (one_round(b, w % n, 0, b->ops, ns, done))
			return -1;
		if (w == 0) {
			/* Time per requested operation, summed over systems. */
			double per_op = 0;
			for (size_t i = 0; i < n; i++)
				per_op += ns[i] / (double)b->ops;
			double want = b->round_ms * 1e6 / (per_op > 0 ? per_op : 1);
			b->ops = want < (double)b->min_ops      ? b->min_ops
				 : want > (double)b->stream_len ? b->stream_len
								: (uint64_t)want;
		}
	}
	uint64_t span = b->stream_len - b->ops + 1, t0 = bench_mono_ns();
	for (unsigned r = 0; r < b->rounds; r++) {
		uint64_t at = ((uint64_t)r * b->ops) % span;
		if (one_round(b, r % n, at, b->ops, ns, done))
			return -1;
		for (size_t i = 0; i < n; i++)
			b->rate[(size_t)r * n + i] = done[i] * 1e9 / ns[i];
	}
	b->elapsed_ms = (double)(bench_mono_ns() - t0) / 1e6;
	return 0;
}

void bench_rounds_fill(const struct bench_rounds *b, struct bench_result *r,
		       struct bench_sys *const *row)
{
	size_t n = b->nsys, R = b->rounds;
	double *v = malloc(R * sizeof(*v));
	if (!v)
		return;
	r->rounds = b->rounds;
	snprintf(r->how, sizeof(r->how),
		 "%u rounds of %" PRIu64 " operations per system, rotating order, %.0f ms per "
		 "round",
		 b->rounds, b->ops, b->elapsed_ms / b->rounds);
	for (size_t i = 0; i < n; i++) {
		size_t ri = (size_t)(row[i] - r->sys);
		for (size_t k = 0; k < R; k++)
			v[k] = b->rate[k * n + i];
		stats_of(v, R, r->sys_stat[ri]);
		row[i]->v[0] = r->sys_stat[ri][BENCH_MED];
		for (size_t j = 0; j < n; j++) {
			size_t rj = (size_t)(row[j] - r->sys);
			if (i == j)
				continue;
			for (size_t k = 0; k < R; k++)
				v[k] = b->rate[k * n + i] / b->rate[k * n + j];
			stats_of(v, R, r->ratio_stat[ri][rj]);
			r->has_ratio[ri][rj] = true;
		}
	}
	free(v);
}

void bench_rounds_free(struct bench_rounds *b)
{
	free(b->rate);
	b->rate = NULL;
}

/* ---- the machine and the memory ---------------------------------------------------- */

const char *bench_shm_dir(void)
{
	const char *d = getenv("FOUNDATION_SHM_DIR");
	return d && *d ? d : "/dev/shm";
}

/* The first line of path (newline dropped) into buf; "?" if unreadable. */
static void read_line(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	snprintf(buf, cap, "?");
	if (f) {
		if (fgets(buf, (int)cap, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

static void cpu_model(char *buf, size_t cap)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");
	snprintf(buf, cap, "?");
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) == 0) {
			const char *p = strchr(line, ':');
			if (p) {
				p += strspn(p + 1, " \t") + 1;
				snprintf(buf, cap, "%.*s", (int)strcspn(p, "\n"), p);
			}
			break;
		}
	}
	if (f)
		fclose(f);
}

/* The mount holding dir (the longest mount point that is a prefix of its
 * real path): file system type and options. */
static void mount_of(const char *dir, char *fs, size_t fcap, char *opts, size_t ocap)
{
	char real[4096], line[4096];
	snprintf(fs, fcap, "?");
	snprintf(opts, ocap, "?");
	if (!realpath(dir, real))
		return;
	FILE *f = fopen("/proc/self/mounts", "r");
	size_t best = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char dev[512], mnt[1024], type[64], mo[1024];
		if (sscanf(line, "%511s %1023s %63s %1023s", dev, mnt, type, mo) != 4)
			continue;
		size_t ml = strlen(mnt);
		bool under = strcmp(mnt, "/") == 0 ||
			     (strncmp(real, mnt, ml) == 0 && (real[ml] == 0 || real[ml] == '/'));
		if (under && ml >= best) {
			best = ml;
			snprintf(fs, fcap, "%s", type);
			snprintf(opts, ocap, "%s", mo);
		}
	}
	if (f)
		fclose(f);
}

/* JSON string content: quotes, backslashes and control characters out. */
static void json_clean(char *s)
{
	for (; *s; s++)
		if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
			*s = ' ';
}

void bench_machine(const char *when)
{
	char la[128], cpu[256], thp[256], shm[256], fs[64], mo[1024];
	struct utsname u;
	read_line("/proc/loadavg", la, sizeof(la));
	cpu_model(cpu, sizeof(cpu));
	read_line("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof(thp));
	read_line("/sys/kernel/mm/transparent_hugepage/shmem_enabled", shm, sizeof(shm));
	const char *dir = bench_shm_dir();
	mount_of(dir, fs, sizeof(fs), mo, sizeof(mo));
	if (uname(&u) < 0)
		snprintf(u.release, sizeof(u.release), "?");
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	char d[512];
	snprintf(d, sizeof(d), "%s", dir);
	json_clean(la);
	json_clean(cpu);
	json_clean(thp);
	json_clean(shm);
	json_clean(d);
	json_clean(mo);
	if (out_text) {
		fprintf(out_text,
			"machine at %s: load average %s\n"
			"  cpu %s, %ld online, kernel %s\n"
			"  transparent huge pages: anon %s; shmem %s\n"
			"  segment directory %s: %s (%s)\n\n",
			when, la, cpu, ncpu, u.release, thp, shm, d, fs, mo);
		fflush(out_text);
	}
	if (out_json) {
		fprintf(out_json,
			"{\"machine\":\"%s\",\"program\":\"%s\",\"loadavg\":\"%s\","
			"\"cpu_model\":\"%s\",\"nproc\":%ld,\"kernel\":\"%s\",\"thp_anon\":\"%s\","
			"\"thp_shmem\":\"%s\",\"shm_dir\":\"%s\",\"shm_fs\":\"%s\","
			"\"shm_mount_options\":\"%s\"}\n",
			when, bench_prog, la, cpu, ncpu, u.release, thp, shm, d, fs, mo);
		fflush(out_json);
	}
}

struct vma_sum {
	unsigned nvma;
	uint64_t size_kb, rss_kb, anon_huge_kb, shmem_pmd_kb, file_pmd_kb;
	uint64_t page_kb_min, page_kb_max;
	char path[160];
};

static void smaps_field(const char *line, const char *name, uint64_t *acc)
{
	size_t n = strlen(name);
	unsigned long long v;
	if (strncmp(line, name, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%llu", &v) == 1)
		*acc += v;
}

/* Sum the smaps counters of every mapping overlapping [lo, hi). */
static int smaps_of(uintptr_t lo, uintptr_t hi, struct vma_sum *s)
{
	char line[1024];
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	*s = (struct vma_sum){0};
	bool in = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		int off = 0;
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s%n", &a, &b, &off) == 2 && off > 0) {
			in = a < hi && b > lo;
			if (in && s->nvma++ == 0) {
				const char *p = line + off;
				p += strspn(p, " \t");
				int pl = (int)strcspn(p, "\n");
				if (pl)
					snprintf(s->path, sizeof(s->path), "%.*s", pl, p);
				else
					snprintf(s->path, sizeof(s->path), "[anonymous]");
			}
			continue;
		}
		if (!in)
			continue;
		uint64_t kps = 0;
		smaps_field(line, "Size", &s->size_kb);
		smaps_field(line, "Rss", &s->rss_kb);
		smaps_field(line, "AnonHugePages", &s->anon_huge_kb);
		smaps_field(line, "ShmemPmdMapped", &s->shmem_pmd_kb);
		smaps_field(line, "FilePmdMapped", &s->file_pmd_kb);
		smaps_field(line, "KernelPageSize", &kps);
		if (kps) {
			if (!s->page_kb_min || kps < s->page_kb_min)
				s->page_kb_min = kps;
			if (kps > s->page_kb_max)
				s->page_kb_max = kps;
		}
	}
	fclose(f);
	return 0;
}

static void append(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...)
{
	size_t used = strlen(buf);
	if (used + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + used, cap - used, fmt, ap);
	va_end(ap);
}

void bench_memory(struct bench_result *r, const char *id, const char *what, const void *addr,
		  size_t len)
{
	struct vma_sum s;
	const char *sep = r->memory[0] ? "," : "";
	if (!addr || smaps_of((uintptr_t)addr, (uintptr_t)addr + (len ? len : 1), &s) ||
	    s.nvma == 0) {
		append(r->memory, sizeof(r->memory),
		       "%s{\"system\":\"%s\",\"what\":\"%s\",\"located\":false}", sep, id, what);
		append(r->memtext, sizeof(r->memtext), "  %-20s %-24s not located\n", id, what);
		return;
	}
	json_clean(s.path);
	append(r->memory, sizeof(r->memory),
	       "%s{\"system\":\"%s\",\"what\":\"%s\",\"located\":true,\"bytes\":%zu,"
	       "\"mappings\":%u,\"mapping\":\"%s\",\"size_kb\":%" PRIu64 ",\"rss_kb\":%" PRIu64
	       ",\"anon_huge_kb\":%" PRIu64 ",\"shmem_pmd_kb\":%" PRIu64 ",\"file_pmd_kb\":%" PRIu64
	       ",\"kernel_page_kb\":%" PRIu64 ",\"huge\":%s}",
	       sep, id, what, len, s.nvma, s.path, s.size_kb, s.rss_kb, s.anon_huge_kb,
	       s.shmem_pmd_kb, s.file_pmd_kb, s.page_kb_max,
	       s.anon_huge_kb + s.shmem_pmd_kb + s.file_pmd_kb > 0 || s.page_kb_max > 4 ? "true"
											: "false");
	append(r->memtext, sizeof(r->memtext),
	       "  %-20s %-24s %u mapping(s) %s, %" PRIu64 " kB (rss %" PRIu64
	       " kB); AnonHugePages %" PRIu64 " kB, ShmemPmdMapped %" PRIu64
	       " kB, FilePmdMapped %" PRIu64 " kB, KernelPageSize %" PRIu64 " kB\n",
	       id, what, s.nvma, s.path, s.size_kb, s.rss_kb, s.anon_huge_kb, s.shmem_pmd_kb,
	       s.file_pmd_kb, s.page_kb_max);
}
