/* tools/inspect/stats.c - foundation-inspect: usage statistics, the change log, the integrity
 * check. */
#include "inspect/inspect.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/statfs.h>

/* ---- stats --------------------------------------------------------------------------- */

double load(const struct fdn_table_stats *t)
{
	return t->buckets ? (double)t->entries / (double)t->buckets : 0.0;
}

/* The indexed attributes, comma-separated (at most 8 x 32 bytes). */
static void indexed_names(fdn_segment *s, char *buf, size_t cap)
{
	char names[FDN_INDEXED_ATTRS_MAX][FDN_INDEXED_ATTR_NAME_MAX + 1];
	int count = fdn_indexed_attributes(s, names, FDN_INDEXED_ATTRS_MAX);
	size_t n = 0;
	buf[0] = 0;
	for (int i = 0; i < count; i++) {
		size_t len = strlen(names[i]);
		if (n + len + 2 < cap)
			n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? "," : "", names[i]);
	}
}

/* Where the segment lives and what pages back it: its file, the file
 * system (tmpfs, hugetlbfs, ...), the page size of our mapping
 * (KernelPageSize: 2048 kB on hugetlbfs) and how much of it this process
 * maps with huge pages (tmpfs mounted huge=..., or shmem THP; counted over
 * what it touched: the walks of this command). */
struct where {
	char path[PATH_MAX];
	const char *fs;
	uint64_t page_kb, huge_kb;
};

static void segment_where(fdn_segment *s, const char *name, struct where *w)
{
	memset(w, 0, sizeof(*w));
	struct fdn_segment_mapping m;
	if (fdn_segment_mapping(s, &m) != 0)
		m = (struct fdn_segment_mapping){.fd = -1};
	if (fdn_segment_path(name, w->path, sizeof(w->path)) != 0)
		w->path[0] = 0;
	struct statfs sf;
	w->fs = "other";
	if (fstatfs(m.fd, &sf) == 0)
		w->fs = (unsigned long)sf.f_type == 0x01021994ul   ? "tmpfs"
			: (unsigned long)sf.f_type == 0x958458f6ul ? "hugetlbfs"
								   : "other";
	FILE *f = fopen("/proc/self/smaps", "r");
	if (!f)
		return;
	char line[256];
	bool in = false;
	uintptr_t base = (uintptr_t)m.base;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, v;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = lo >= base && hi <= base + m.size;
			continue;
		}
		if (!in)
			continue;
		if (sscanf(line, "KernelPageSize: %lu kB", &v) == 1 && v > w->page_kb)
			w->page_kb = v;
		else if (sscanf(line, "ShmemPmdMapped: %lu kB", &v) == 1 ||
			 sscanf(line, "FilePmdMapped: %lu kB", &v) == 1)
			w->huge_kb += v;
	}
	fclose(f);
	if (strcmp(w->fs, "hugetlbfs") == 0)
		w->huge_kb = m.size / 1024;
}

static void stats_json(fdn_segment *s, const struct args *a, const struct fdn_segment_stats *st,
		       const struct fdn_reaper_status *rs, uint64_t deaths, int64_t visible,
		       const char *indexed, const struct where *w)
{
	fprintf(a->out, "{\"segment\":");
	json_cstr(a->out, a->segment);
	fprintf(a->out,
		",\"total_bytes\":%" PRIu64 ",\"abi_major\":%u,\"abi_minor\":%u,"
		"\"created_ns\":%" PRIu64 ",\"creator_pid\":%u,\"creator_uid\":%u,"
		"\"processes\":{\"used\":%u,\"capacity\":%u},"
		"\"reader_slots\":{\"used\":%u,\"capacity\":%u},"
		"\"trace_slots\":{\"used\":%u,\"capacity\":%u},"
		"\"graveyard_threads\":{\"written\":%" PRIu64 ",\"capacity\":%u},"
		"\"event_ring\":{\"capacity\":%u},"
		"\"heap\":{\"bytes\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"pages_used\":%" PRIu64
		",\"blocks_used\":%" PRIu64 ",\"block_bytes_used\":%" PRIu64 "},"
		"\"gp_counter\":%" PRIu64 ",\"gp_done\":%" PRIu64
		",\"reclaim\":{\"pending_blocks\":%" PRIu64 ",\"blocker_pid\":%u"
		",\"blocker_tid\":%u},\"reaper_pid\":%d,\"deaths_total\":%" PRIu64
		",\"registry_entries\":%" PRId64 ",\"indexed\":",
		st->total_bytes, st->abi_major, st->abi_minor, st->created_ns, st->creator_pid,
		st->creator_uid, st->procs_used, st->procs_cap, st->threads_used, st->threads_cap,
		st->trace_used, st->trace_cap, st->ghosts_written, st->ghosts_cap, st->events_cap,
		st->heap_bytes, st->heap_pages, st->heap_pages_used, st->blocks_used,
		st->block_bytes_used, st->gp_counter, st->gp_done, st->reclaim_pending,
		st->reclaim_blocker_pid, st->reclaim_blocker_tid, (int)rs->pid, deaths, visible);
	fputc('[', a->out);
	for (const char *p = indexed; *p;) {
		size_t len = strcspn(p, ",");
		if (p != indexed)
			fputc(',', a->out);
		json_str(a->out, p, len);
		p += len + (p[len] == ',');
	}
	fprintf(a->out, "],\"tables\":[");
	for (uint32_t i = 0; i < st->ntables && i < FDN_STATS_MAX_TABLES; i++) {
		const struct fdn_table_stats *t = &st->tables[i];
		fprintf(a->out, "%s{\"name\":", i ? "," : "");
		json_str(a->out, t->name, strnlen(t->name, sizeof(t->name)));
		fprintf(a->out, ",\"entries\":%" PRIu64 ",\"buckets\":%" PRIu64 ",\"load_factor\":",
			t->entries, t->buckets);
		json_double(a->out, load(t));
		fputc('}', a->out);
	}
	char why[512];
	fprintf(a->out, "],\"reaper\":{\"pid\":%d,\"stopped\":%s,\"launches\":%u,\"last_launch\":",
		(int)rs->pid, rs->stopped ? "true" : "false", rs->launches);
	if (rs->last_pid) {
		fprintf(a->out, "{\"pid\":%d,\"time_ns\":%" PRIu64 ",\"error\":", (int)rs->last_pid,
			rs->last_ns);
		if (rs->last_error)
			json_cstr(a->out, fdn_errname(rs->last_error));
		else
			fprintf(a->out, "null");
		fputc('}', a->out);
	} else {
		fprintf(a->out, "null");
	}
	fprintf(a->out, ",\"why\":");
	json_cstr(a->out, reaper_why(rs, why, sizeof(why)));
	struct fdn_changes_stats cs;
	fdn_changes_stats(s, &cs);
	fprintf(a->out,
		"},\"changes\":{\"revision\":%" PRIu64 ",\"capacity\":%u,\"subscribers\":%" PRIu64
		",\"overruns\":%" PRIu64 ",\"lapped\":%" PRIu64 ",\"stolen\":%" PRIu64 "}",
		cs.revision, cs.capacity, cs.subscribers, cs.overruns, cs.lapped, cs.stolen);
	fprintf(a->out, ",\"file\":");
	json_cstr(a->out, w->path);
	fprintf(a->out, ",\"filesystem\":\"%s\",\"page_kb\":%" PRIu64 ",\"huge_kb\":%" PRIu64 "}\n",
		w->fs, w->page_kb, w->huge_kb);
}

static void stats_text(const struct args *a, const struct fdn_segment_stats *st,
		       const struct fdn_reaper_status *rs, uint64_t deaths, int64_t visible,
		       const char *indexed)
{
	char buf[40];
	fprintf(a->out, "segment        \"%s\": %" PRIu64 " bytes, ABI %u.%u\n", a->segment,
		st->total_bytes, st->abi_major, st->abi_minor);
	fprintf(a->out, "created        %s by pid %u (uid %u)\n",
		iso_time(st->created_ns, buf, sizeof(buf)), st->creator_pid, st->creator_uid);
	char why[512];
	if (rs->pid)
		fprintf(a->out, "reaper         pid %d\n", (int)rs->pid);
	else
		fprintf(a->out, "reaper         none running: %s\n",
			reaper_why(rs, why, sizeof(why)));
	fprintf(a->out, "deaths         %" PRIu64 " reaped\n", deaths);
	fprintf(a->out, "processes      %u / %u slots in use\n", st->procs_used, st->procs_cap);
	fprintf(a->out, "reader slots   %u / %u in use\n", st->threads_used, st->threads_cap);
	fprintf(a->out, "trace slots    %u / %u in use (span stacks, error contexts)\n",
		st->trace_used, st->trace_cap);
	fprintf(a->out, "graveyard      %" PRIu64 " thread copies written, the newest %u kept\n",
		st->ghosts_written, st->ghosts_cap);
	fprintf(a->out,
		"heap           %" PRIu64 " / %" PRIu64 " pages used (%" PRIu64 " bytes); %" PRIu64
		" blocks (%" PRIu64 " bytes) allocated\n",
		st->heap_pages_used, st->heap_pages, st->heap_bytes, st->blocks_used,
		st->block_bytes_used);
	fprintf(a->out, "grace periods  counter %" PRIu64 ", completed up to %" PRIu64 "\n",
		st->gp_counter, st->gp_done);
	if (st->reclaim_blocker_pid)
		fprintf(a->out,
			"reclamation    %" PRIu64 " blocks wait; held back by pid %u thread %u "
			"(its read-side section is the oldest)\n",
			st->reclaim_pending, st->reclaim_blocker_pid, st->reclaim_blocker_tid);
	else
		fprintf(a->out, "reclamation    %" PRIu64 " blocks wait for a grace period\n",
			st->reclaim_pending);
	fprintf(a->out, "registry       %" PRId64 " visible entries; indexed: %s\n", visible,
		*indexed ? indexed : "(none)");
	for (uint32_t i = 0; i < st->ntables && i < FDN_STATS_MAX_TABLES; i++) {
		const struct fdn_table_stats *t = &st->tables[i];
		fprintf(a->out,
			"table %-8.*s %" PRIu64 " entries in %" PRIu64 " buckets (load %.4f)\n",
			(int)strnlen(t->name, sizeof(t->name)), t->name, t->entries, t->buckets,
			load(t));
	}
}

int segment_counts(fdn_segment *s, const struct args *a, const char *what,
		   struct fdn_segment_stats *st, int64_t *visible)
{
	int r = fdn_segment_stats(s, st);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": %s", a->segment, what);
	*visible = fdn_count(s);
	if (*visible < 0)
		return complain(EXIT_FAIL, fdn_strerror((int)*visible), "segment \"%s\": count",
				a->segment);
	return EXIT_OK;
}

int cmd_stats(fdn_segment *s, const struct args *a)
{
	struct fdn_segment_stats st;
	char indexed[FDN_INDEXED_ATTRS_MAX * (FDN_INDEXED_ATTR_NAME_MAX + 1) + 1];
	int64_t visible;
	int status = segment_counts(s, a, "stats", &st, &visible);
	if (status != EXIT_OK)
		return status;
	indexed_names(s, indexed, sizeof(indexed));
	struct fdn_reaper_status rs;
	fdn_reaper_status(s, &rs);
	uint64_t deaths = fdn_deaths(s);
	struct where w;
	segment_where(s, a->segment, &w);
	if (a->json) {
		stats_json(s, a, &st, &rs, deaths, visible, indexed, &w);
	} else {
		stats_text(a, &st, &rs, deaths, visible, indexed);
		struct fdn_changes_stats cs;
		fdn_changes_stats(s, &cs);
		if (cs.capacity)
			fprintf(a->out,
				"changes        revision %" PRIu64 "; a log of %u records; %" PRIu64
				" subscribers; %" PRIu64 " overruns\n",
				cs.revision, cs.capacity, cs.subscribers, cs.overruns);
		else
			fprintf(a->out, "changes        no change log\n");
		fprintf(a->out,
			"file           %s (%s), %" PRIu64 " kB pages, %" PRIu64
			" kB mapped here with huge pages\n",
			w.path, w.fs, w.page_kb, w.huge_kb);
	}
	return EXIT_OK;
}

/* ---- changes -------------------------------------------------------------------------- */

int cmd_changes(fdn_segment *s, const struct args *a)
{
	struct fdn_changes_stats st;
	fdn_changes_stats(s, &st);
	const char *prefix = a->prefix ? a->prefix : "";
	size_t cap = st.capacity ? st.capacity : 1;
	struct fdn_change *c = calloc(cap, sizeof(*c));
	if (!c)
		return complain(EXIT_FAIL, strerror(ENOMEM), "segment \"%s\": changes", a->segment);
	int n = st.capacity ? fdn_changes_read(s, prefix, strlen(prefix), 0, c, cap) : 0;
	if (n < 0) {
		free(c);
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": changes", a->segment);
	}
	char buf[40];
	if (a->json) {
		fprintf(a->out, "{\"segment\":");
		json_cstr(a->out, a->segment);
		fprintf(a->out,
			",\"revision\":%" PRIu64 ",\"capacity\":%u,\"subscribers\":%" PRIu64
			",\"overruns\":%" PRIu64 ",\"changes\":[",
			st.revision, st.capacity, st.subscribers, st.overruns);
		for (int i = 0; i < n; i++) {
			fprintf(a->out, "%s\n  {\"revision\":%" PRIu64 ",\"kind\":\"%s\",\"key\":",
				i ? "," : "", c[i].revision, fdn_change_type_name(c[i].kind));
			json_str(a->out, c[i].key, c[i].key_len);
			fprintf(a->out, ",\"pid\":%d,\"time_ns\":%" PRIu64, (int)c[i].pid,
				c[i].time_ns);
			if (c[i].death != FDN_NO_DEATH)
				fprintf(a->out, ",\"death\":%" PRIu64, c[i].death);
			fputc('}', a->out);
		}
		fprintf(a->out, "%s]}\n", n ? "\n" : "");
		free(c);
		return EXIT_OK;
	}
	if (st.capacity == 0) {
		fprintf(a->out, "no change log (the segment was created with --changes off)\n");
		free(c);
		return EXIT_OK;
	}
	fprintf(a->out,
		"revision %" PRIu64 "; the log keeps the last %u changes; %" PRIu64
		" subscribers; %" PRIu64 " overruns%s\n",
		st.revision, st.capacity, st.subscribers, st.overruns, n ? "; oldest first:" : "");
	if (n == 0) {
		free(c);
		return EXIT_OK;
	}
	struct table t = {.ncol = 6, .align = "rllrrl"};
	const char *head[] = {"REVISION", "TIME", "KIND", "PID", "DEATH", "KEY"};
	for (size_t i = 0; i < 6; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		cellf(&t, "%" PRIu64, c[i].revision);
		cellf(&t, "%s", iso_time(c[i].time_ns, buf, sizeof(buf)));
		cellf(&t, "%s", fdn_change_type_name(c[i].kind));
		cellf(&t, "%d", (int)c[i].pid);
		if (c[i].death != FDN_NO_DEATH)
			cellf(&t, "%" PRIu64, c[i].death);
		else
			cellf(&t, "-");
		char *cell = NULL;
		size_t len = 0;
		FILE *f = cell_open(&cell, &len);
		if (f)
			text_str(f, c[i].key, c[i].key_len);
		cell_close(&t, f, &cell);
	}
	free(c);
	return table_done(a->out, &t);
}

/* ---- check --------------------------------------------------------------------------- */

struct violations {
	FILE *out;
	bool json;
	int n;
	int nnotes;
	char notes[8][256]; /* JSON: printed after the violations */
};

static void on_violation(void *arg, const char *code, const char *message)
{
	struct violations *v = arg;
	FILE *out = v->out;
	if (strcmp(code, "note") == 0) { /* not a violation */
		if (!v->json) {
			fprintf(out, "note: ");
			text_str(out, message, strlen(message));
			fputc('\n', out);
		} else if (v->nnotes < 8) {
			snprintf(v->notes[v->nnotes++], sizeof(v->notes[0]), "%s", message);
		}
		return;
	}
	if (v->json) {
		fprintf(out, "%s\n  {\"code\":", v->n ? "," : "");
		json_cstr(out, code);
		fprintf(out, ",\"message\":");
		json_cstr(out, message);
		fputc('}', out);
	} else {
		fprintf(out, "[%s] ", code);
		text_str(out, message, strlen(message));
		fputc('\n', out);
	}
	v->n++;
}

int cmd_check(fdn_segment *s, const struct args *a)
{
	static struct violations v;
	memset(&v, 0, sizeof(v));
	v.out = a->out;
	v.json = a->json;
	if (a->json) {
		fprintf(a->out, "{\"segment\":");
		json_cstr(a->out, a->segment);
		fprintf(a->out, ",\"violations\":[");
	}
	int n = fdn_segment_check(s, on_violation, &v);
	if (a->json) {
		fprintf(a->out, "%s],\"count\":%d,\"notes\":[", v.n ? "\n" : "", n < 0 ? v.n : n);
		for (int i = 0; i < v.nnotes; i++) {
			fprintf(a->out, "%s", i ? "," : "");
			json_cstr(a->out, v.notes[i]);
		}
		fprintf(a->out, "]}\n");
	}
	if (n < 0) {
		fflush(a->out);
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": check", a->segment);
	}
	if (!a->json)
		fprintf(a->out, "%d violations\n", n);
	return n > 0 ? EXIT_FAIL : EXIT_OK;
}
