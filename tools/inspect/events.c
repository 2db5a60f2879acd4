/* tools/inspect/events.c - foundation-inspect: the telemetry ring (events, --follow) and the
 * samplers. */
#include "inspect/inspect.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>
#include <sys/stat.h>

/* ---- events ----------------------------------------------------------------------------- */

volatile sig_atomic_t events_stop;

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void events_on_signal(int sig)
{
	events_stop = sig;
}

/* The measurements as {"name":value,...} or name=value,... ("-" if none). */
static void event_measurements(FILE *f, const struct fdn_ring_event *ev, bool json)
{
	if (json)
		putc('{', f);
	else if (ev->nmeasurements == 0)
		putc('-', f);
	for (uint32_t i = 0; i < ev->nmeasurements; i++) {
		if (i)
			putc(',', f);
		if (json) {
			json_cstr(f, ev->measurements[i].name);
			putc(':', f);
			json_double(f, ev->measurements[i].value);
		} else {
			fprintf(f, "%s=%.15g", ev->measurements[i].name, ev->measurements[i].value);
		}
	}
	if (json)
		putc('}', f);
}

static void event_json(FILE *out, const struct fdn_ring_event *ev)
{
	fprintf(out, "{\"ticket\":%" PRIu64 ",\"name\":", ev->ticket);
	json_cstr(out, ev->name);
	fprintf(out,
		",\"time_ns\":%" PRIu64 ",\"mono_ns\":%" PRIu64
		",\"pid\":%d,\"tid\":%d,\"seq\":%" PRIu64 ",\"measurements\":",
		ev->time_ns, ev->mono_ns, (int)ev->pid, (int)ev->tid, ev->seq);
	event_measurements(out, ev, true);
	fprintf(out, ",\"attributes\":");
	attr_set(out, ev->attrs, ev->attrs_len, true);
	fprintf(out, ",\"truncated\":%s}", ev->truncated ? "true" : "false");
}

/* One event as a text line (--follow) or as table cells. */
static void event_text(FILE *out, struct table *t, const struct fdn_ring_event *ev)
{
	char buf[40], *cell;
	size_t len;
	FILE *f;
	if (!t) {
		fprintf(out, "%s %d %d %" PRIu64 " %s ", iso_time(ev->time_ns, buf, sizeof(buf)),
			(int)ev->pid, (int)ev->tid, ev->seq, ev->name);
		event_measurements(out, ev, false);
		fputc(' ', out);
		if (fdn_attrs_count(ev->attrs, ev->attrs_len) == 0)
			fputc('-', out);
		else
			attr_set(out, ev->attrs, ev->attrs_len, false);
		fprintf(out, "%s\n", ev->truncated ? " (truncated)" : "");
		return;
	}
	cellf(t, "%s", iso_time(ev->time_ns, buf, sizeof(buf)));
	cellf(t, "%d", (int)ev->pid);
	cellf(t, "%d", (int)ev->tid);
	cellf(t, "%" PRIu64, ev->seq);
	cellf(t, "%s%s", ev->name, ev->truncated ? " (truncated)" : "");
	f = cell_open(&cell, &len);
	if (f)
		event_measurements(f, ev, false);
	cell_close(t, f, &cell);
	if (fdn_attrs_count(ev->attrs, ev->attrs_len) == 0) {
		cellf(t, "-");
		return;
	}
	f = cell_open(&cell, &len);
	if (f)
		attr_set(f, ev->attrs, ev->attrs_len, false);
	cell_close(t, f, &cell);
}

/* Has the segment's name been removed (or given to another object)? */
bool segment_gone(fdn_segment *s, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	struct fdn_segment_mapping m;
	return fdn_segment_mapping(s, &m) != 0 || fdn_segment_path(name, path, sizeof(path)) != 0 ||
	       stat(path, &st) != 0 || (uint64_t)st.st_ino != m.ino || (uint64_t)st.st_dev != m.dev;
}

static void events_lost(const struct args *a, uint64_t n, uint64_t incomplete)
{
	if (a->json)
		fprintf(a->out, "{\"lost\":%" PRIu64 ",\"incomplete\":%" PRIu64 "}\n", n,
			incomplete);
	else
		fprintf(a->out, "-- lost %" PRIu64 " events%s\n", n,
			incomplete ? " (some abandoned by their producer)" : "");
}

/* --follow: print the ring, then each event as it comes, one line (one
 * JSON object) each, until --count, --timeout, a signal, or the segment is
 * destroyed. */
static int events_follow(fdn_segment *s, const struct args *a)
{
	struct sigaction sa = {.sa_handler = events_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	static struct fdn_ring_event ev;
	struct fdn_ring_cursor c;
	int r = fdn_ring_cursor_init(s, &c, true);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events", a->segment);
	uint64_t printed = 0, reported = 0, inc_reported = 0, idle = 0;
	uint64_t deadline = a->timeout_s ? mono_ns() + a->timeout_s * 1000000000ull : 0;
	const char *end = NULL;
	while (!end) {
		r = events_stop ? 0 : fdn_ring_next(s, &c, &ev);
		if (r < 0)
			return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events",
					a->segment);
		if (c.lost > reported) {
			events_lost(a, c.lost - reported, c.incomplete - inc_reported);
			reported = c.lost;
			inc_reported = c.incomplete;
		}
		if (r == 1 && (!a->name || fdn_event_prefix_match(a->name, ev.name))) {
			if (a->json) {
				event_json(a->out, &ev);
				fputc('\n', a->out);
			} else {
				event_text(a->out, NULL, &ev);
			}
			if (++printed >= a->count && a->count)
				end = "count";
		} else if (r == 0) {
			fflush(a->out);
			if (events_stop)
				end = "interrupted";
			else if (deadline && mono_ns() >= deadline)
				end = "timeout";
			else if (idle % 64 == 0 && segment_gone(s, a->segment))
				end = "destroyed";
			else if (idle++ % 64 == 0 && fdn_segment_report_truncated(s, prog))
				return EXIT_FAIL;
			else
				usleep(2000);
		}
	}
	if (a->json)
		fprintf(a->out, "{\"end\":\"%s\",\"events\":%" PRIu64 ",\"lost\":%" PRIu64 "}\n",
			end, printed, c.lost);
	else
		fprintf(a->out, "-- %" PRIu64 " events, %" PRIu64 " lost (%s)\n", printed, c.lost,
			end);
	return EXIT_OK;
}

int cmd_events(fdn_segment *s, const struct args *a)
{
	if (a->name && *a->name && fdn_event_name_check(a->name) != 0 &&
	    !(a->name[strlen(a->name) - 1] == '.'))
		return complain(EXIT_FAIL, fdn_strerror(FDN_EEVNAME), "--name \"%s\"", a->name);
	if (a->follow)
		return events_follow(s, a);
	struct fdn_ring_stats st;
	struct fdn_ring_cursor c;
	static struct fdn_ring_event ev;
	int r = fdn_ring_stats(s, &st);
	if (r == 0)
		r = fdn_ring_cursor_init(s, &c, true);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events", a->segment);
	struct table t = {.ncol = 7, .align = "lrrrlll"};
	const char *head[] = {"TIME", "PID", "TID", "SEQ", "NAME", "MEASUREMENTS", "ATTRIBUTES"};
	uint64_t n = 0;
	if (a->json) {
		fprintf(a->out, "{\"segment\":");
		json_cstr(a->out, a->segment);
		fprintf(a->out,
			",\"capacity\":%" PRIu64 ",\"written\":%" PRIu64 ",\"overwritten\":%" PRIu64
			",\"lapped\":%" PRIu64 ",\"events\":[",
			st.capacity, st.written, st.overwritten, st.lapped);
	} else {
		fprintf(a->out,
			"ring: %" PRIu64 " records, %" PRIu64 " events written, %" PRIu64
			" overwritten\n",
			st.capacity, st.written, st.overwritten);
		for (size_t i = 0; i < 7; i++)
			cellf(&t, "%s", head[i]);
	}
	while ((!a->count || n < a->count) && (r = fdn_ring_next(s, &c, &ev)) == 1) {
		if (a->name && !fdn_event_prefix_match(a->name, ev.name))
			continue;
		if (a->json) {
			fprintf(a->out, "%s\n  ", n ? "," : "");
			event_json(a->out, &ev);
		} else {
			event_text(a->out, &t, &ev);
		}
		n++;
	}
	if (r < 0) {
		table_free(&t);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": events", a->segment);
	}
	if (a->json) {
		fprintf(a->out, "%s],\"count\":%" PRIu64 ",\"lost\":%" PRIu64 "}\n", n ? "\n" : "",
			n, c.lost);
		return EXIT_OK;
	}
	int status = n ? table_done(a->out, &t) : (table_free(&t), EXIT_OK);
	if (c.lost)
		events_lost(a, c.lost, c.incomplete);
	return status;
}

/* ---- samplers ------------------------------------------------------------------------- */

/* The samplers copied out, into a struct vec of struct fdn_sampler_stats. */
static int sampler_collect(void *arg, const struct fdn_sampler_stats *st)
{
	return vec_push(arg, st, sizeof(*st)) ? 0 : -ENOMEM;
}

static int sampler_cmp(const void *pa, const void *pb)
{
	const struct fdn_sampler_stats *a = pa, *b = pb;
	return strcmp(a->name, b->name);
}

int cmd_samplers(fdn_segment *s, const struct args *a)
{
	struct vec rs = {0};
	int r = fdn_samplers_foreach(s, sampler_collect, &rs);
	if (r < 0) {
		free(rs.v);
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": samplers", a->segment);
	}
	if (rs.n)
		qsort(rs.v, rs.n, sizeof(struct fdn_sampler_stats), sampler_cmp);
	struct table t = {.ncol = 5, .align = "llrrr"};
	char spec[64];
	if (a->json) {
		fprintf(a->out, "{\"segment\":");
		json_cstr(a->out, a->segment);
		fprintf(a->out, ",\"samplers\":[");
	} else {
		const char *head[] = {"NAME", "SAMPLER", "TOTAL", "SAMPLED", "PROBABILITY"};
		for (size_t i = 0; i < 5; i++)
			cellf(&t, "%s", head[i]);
	}
	for (size_t i = 0; i < rs.n; i++) {
		const struct fdn_sampler_stats *st = (const struct fdn_sampler_stats *)rs.v + i;
		fdn_sampler_format(&st->sampler, spec, sizeof(spec));
		if (a->json) {
			fprintf(a->out, "%s\n  {\"name\":", i ? "," : "");
			json_cstr(a->out, st->name[0] ? st->name : "?");
			fprintf(a->out, ",\"sampler\":");
			json_cstr(a->out, spec);
			fprintf(a->out,
				",\"total\":%" PRIu64 ",\"sampled\":%" PRIu64 ",\"probability\":",
				st->total, st->sampled);
			json_double(a->out, st->probability);
			fputc('}', a->out);
		} else {
			cellf(&t, "%s", st->name[0] ? st->name : "?");
			cellf(&t, "%s", spec);
			cellf(&t, "%" PRIu64, st->total);
			cellf(&t, "%" PRIu64, st->sampled);
			cellf(&t, "%.4f", st->probability);
		}
	}
	int status = EXIT_OK;
	if (a->json)
		fprintf(a->out, "%s],\"count\":%zu}\n", rs.n ? "\n" : "", rs.n);
	else
		status = table_done(a->out, &t);
	free(rs.v);
	return status;
}
