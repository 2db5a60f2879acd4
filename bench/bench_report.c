/* bench/bench_report.c - the results of bench_common.h: text and JSON output,
 * targets, the machine's description and memory figures. */
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
