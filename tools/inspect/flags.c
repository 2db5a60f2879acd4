/* tools/inspect/flags.c - foundation-inspect: feature flags and the migration stage. */
#include "inspect/inspect.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- flags and stages ------------------------------------------------------------------ */

static void flags_json(const struct args *a, int stage, const struct fdn_flag_info *fl, int n)
{
	fprintf(a->out, "{\"segment\":");
	json_cstr(a->out, a->segment);
	fprintf(a->out, ",\"stage\":%d,\"flags\":[", stage);
	for (int i = 0; i < n; i++) {
		fprintf(a->out, "%s\n  {\"name\":", i ? "," : "");
		json_cstr(a->out, fl[i].name);
		fprintf(a->out,
			",\"value\":%d,\"enabled\":%s,\"default\":%d,\"builtin\":%s,"
			"\"changed_ns\":%" PRIu64 "}",
			fl[i].value, fl[i].value == FDN_FLAG_ON ? "true" : "false",
			fl[i].default_value, fl[i].builtin ? "true" : "false", fl[i].changed_ns);
	}
	fprintf(a->out, "%s],\"count\":%d}\n", n ? "\n" : "", n);
}

static int flags_text(FILE *out, int stage, const struct fdn_flag_info *fl, int n)
{
	struct table t = {.ncol = 5, .align = "lllll"};
	char v[16], d[16], when[40];
	const char *head[] = {"FLAG", "VALUE", "DEFAULT", "KIND", "CHANGED"};
	fprintf(out, "stage %d\n", stage);
	for (size_t i = 0; i < 5; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		cellf(&t, "%s", fl[i].name);
		cellf(&t, "%s", flag_text(fl[i].value, v, sizeof(v)));
		cellf(&t, "%s", flag_text(fl[i].default_value, d, sizeof(d)));
		cellf(&t, "%s", fl[i].builtin ? "built-in" : "user");
		cellf(&t, "%s", iso_time(fl[i].changed_ns, when, sizeof(when)));
	}
	return table_done(out, &t);
}

int cmd_flags(fdn_segment *s, const struct args *a)
{
	static struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int stage = fdn_stage(s);
	int n = stage < 0 ? stage : fdn_flags_list(s, fl, FDN_FLAGS_MAX);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": flags", a->segment);
	if (n > FDN_FLAGS_MAX)
		n = FDN_FLAGS_MAX;
	if (a->json) {
		flags_json(a, stage, fl, n);
		return EXIT_OK;
	}
	return flags_text(a->out, stage, fl, n);
}

static const char *const stage_flags[] = {
    "use_shm_registry",       "enable_migration_monitoring",
    "use_shm_error_context",  "use_shm_telemetry",
    "use_shm_spans",          "use_shm_sampled_events",
    "enforce_no_local_state",
};
#define NSTAGE_FLAGS (sizeof(stage_flags) / sizeof(stage_flags[0]))

static const char *change_kind(enum fdn_change_kind k)
{
	return k == FDN_CHANGE_STAGE ? "stage" : k == FDN_CHANGE_ALERT ? "alert" : "flag";
}

/* "from" and "to" of a change: flag values as on/off/N%, stages as N. */
static const char *change_end(const struct fdn_flag_change *c, int v, char *buf, size_t cap)
{
	if (c->kind == FDN_CHANGE_FLAG && v == FDN_FLAG_CREATED)
		return "(new)";
	if (c->kind == FDN_CHANGE_FLAG)
		return flag_text(v, buf, cap);
	snprintf(buf, cap, "%d", v);
	return buf;
}

static void stages_json(const struct args *a, int stage, uint64_t total,
			const struct fdn_flag_change *h, int n)
{
	fprintf(a->out, "{\"segment\":");
	json_cstr(a->out, a->segment);
	fprintf(a->out, ",\"stage\":%d,\"profiles\":[", stage);
	for (int st = 0; st <= FDN_STAGE_MAX; st++) {
		struct fdn_stage_info si;
		fdn_stage_info(st, &si);
		fprintf(a->out, "%s{\"stage\":%d,\"name\":", st ? "," : "", st);
		json_cstr(a->out, si.name);
		fprintf(a->out, ",\"description\":");
		json_cstr(a->out, si.description);
		fprintf(a->out, ",\"risk\":");
		json_cstr(a->out, si.risk);
		fprintf(a->out, ",\"risk_note\":");
		json_cstr(a->out, si.risk_note);
		fprintf(a->out, ",\"flags\":[");
		bool first = true;
		for (size_t i = 0; i < NSTAGE_FLAGS; i++) {
			if (!fdn_stage_profile_has(st, stage_flags[i]))
				continue;
			fprintf(a->out, "%s\"%s\"", first ? "" : ",", stage_flags[i]);
			first = false;
		}
		fprintf(a->out, "]}");
	}
	fprintf(a->out, "],\"history_total\":%" PRIu64 ",\"history\":[", total);
	for (int i = 0; i < n; i++) {
		fprintf(a->out,
			"%s\n  {\"number\":%" PRIu64 ",\"time_ns\":%" PRIu64
			",\"pid\":%d,\"kind\":\"%s\",\"flag\":",
			i ? "," : "", h[i].number, h[i].time_ns, (int)h[i].pid,
			change_kind(h[i].kind));
		json_cstr(a->out, h[i].flag);
		fprintf(a->out, ",\"from\":%d,\"to\":%d,\"reason\":", h[i].from, h[i].to);
		json_cstr(a->out, h[i].reason);
		fputc('}', a->out);
	}
	fprintf(a->out, "%s]}\n", n ? "\n" : "");
}

static int stages_text(FILE *out, int stage, uint64_t total, const struct fdn_flag_change *h, int n)
{
	fprintf(out, "stage %d of %d; profiles:\n", stage, FDN_STAGE_MAX);
	for (int st = 0; st <= FDN_STAGE_MAX; st++) {
		struct fdn_stage_info si;
		fdn_stage_info(st, &si);
		fprintf(out, "  %s %d %s (risk %s):", st == stage ? "*" : " ", st, si.name,
			si.risk);
		bool any = false;
		for (size_t i = 0; i < NSTAGE_FLAGS; i++) {
			if (fdn_stage_profile_has(st, stage_flags[i])) {
				fprintf(out, " %s", stage_flags[i]);
				any = true;
			}
		}
		fprintf(out, "%s\n", any ? "" : " (everything off)");
		fprintf(out, "      %s %s\n", si.description, si.risk_note);
	}
	fprintf(out, "%" PRIu64 " changes in total%s\n", total,
		n ? "; the last ones, oldest first:" : "");
	if (n == 0)
		return EXIT_OK;
	struct table t = {.ncol = 8, .align = "rlrlllll"};
	const char *head[] = {"NUMBER", "TIME", "PID", "KIND", "FLAG", "FROM", "TO", "REASON"};
	char when[40], f[16], to[16];
	for (size_t i = 0; i < 8; i++)
		cellf(&t, "%s", head[i]);
	for (int i = 0; i < n; i++) {
		cellf(&t, "%" PRIu64, h[i].number);
		cellf(&t, "%s", iso_time(h[i].time_ns, when, sizeof(when)));
		cellf(&t, "%d", (int)h[i].pid);
		cellf(&t, "%s", change_kind(h[i].kind));
		cellf(&t, "%s", h[i].flag[0] ? h[i].flag : "-");
		cellf(&t, "%s", change_end(&h[i], h[i].from, f, sizeof(f)));
		cellf(&t, "%s", change_end(&h[i], h[i].to, to, sizeof(to)));
		char *cell;
		size_t len;
		FILE *fp = cell_open(&cell, &len);
		if (fp)
			text_str(fp, h[i].reason, strlen(h[i].reason));
		cell_close(&t, fp, &cell);
	}
	return table_done(out, &t);
}

int cmd_stages(fdn_segment *s, const struct args *a)
{
	static struct fdn_flag_change h[FDN_FLAGS_HISTORY];
	int stage = fdn_stage(s);
	uint64_t total = fdn_flags_history_total(s);
	int n = stage < 0 ? stage : fdn_flags_history(s, h, FDN_FLAGS_HISTORY);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": stages", a->segment);
	if (a->json) {
		stages_json(a, stage, total, h, n);
		return EXIT_OK;
	}
	return stages_text(a->out, stage, total, h, n);
}
