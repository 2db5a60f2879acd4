/*
 * trace_rec.c - the text forms of trace ids (hex) and the compact ring
 * record of a span's start or stop (shm/layout.h, FDN_EVENT_SPAN): written
 * by trace.c (span_emit), expanded by its readers (telemetry.c,
 * fdn__span_rec_expand).  Calls telemetry_names.c only.
 */
#include "lib/trace_int.h"

#include <stdio.h>
#include <string.h>

void fdn__tr_hex(char *out, const uint8_t *b, size_t n)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[b[i] >> 4];
		out[2 * i + 1] = d[b[i] & 15];
	}
	out[2 * n] = 0;
}

/* A 64-bit id as 16 hex digits, most significant first (traceparent's). */
void fdn__tr_hex64(char out[17], uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (56 - 8 * i));
	fdn__tr_hex(out, b, 8);
}

struct fdn_attr fdn__tr_str_attr(const char *name, const char *value)
{
	return (struct fdn_attr){.name = name, .type = FDN_ATTR_STRING, .v.s = value};
}

/* The compact ring record of a start or stop event (shm/layout.h,
 * FDN_EVENT_SPAN): len, or 0 when it does not apply. */
size_t fdn__span_rec(uint8_t *b, int backend, enum fdn__ev id, const struct fdn_shm_span *sp,
		     uint32_t depth, const struct span_ev *e)
{
	size_t nl = sp->name_len <= FDN_SPAN_NAME_MAX ? sp->name_len : FDN_SPAN_NAME_MAX;
	if (nl == 0)
		return 0;
	uint8_t st = 0;
	if (id == FDN__EV_SPAN_STOP) {
		st = strcmp(e->status, "ok") == 0 ? 1 : strcmp(e->status, "error") == 0 ? 2 : 3;
	}
	b[0] = id == FDN__EV_SPAN_START ? 1 : 2;
	b[1] = st;
	b[2] = backend == FDN__SHARED ? 0 : 1;
	b[3] = (uint8_t)nl;
	memcpy(b + 4, &depth, 4);
	memcpy(b + 8, sp->trace_id, 16);
	memcpy(b + 24, &sp->span_id, 8);
	memcpy(b + 32, &sp->parent_id, 8);
	memcpy(b + 40, &e->duration_ns, 8);
	memcpy(b + FDN_SPAN_REC_HEAD, sp->name, nl);
	return FDN_SPAN_REC_HEAD + nl;
}

bool fdn__span_rec_expand(const uint8_t *b, size_t len, struct fdn_ring_event *ev)
{
	static const char *const st_names[] = {"", "ok", "error", "aborted"};
	if (len < FDN_SPAN_REC_HEAD || (b[0] != 1 && b[0] != 2) || b[2] > 1 || b[3] == 0 ||
	    b[3] > FDN_SPAN_NAME_MAX || len != FDN_SPAN_REC_HEAD + b[3] ||
	    (b[0] == 2 ? b[1] < 1 || b[1] > 3 : b[1] != 0))
		return false;
	bool stop = b[0] == 2;
	uint32_t depth;
	uint64_t sid, pid, dur;
	memcpy(&depth, b + 4, 4);
	memcpy(&sid, b + 24, 8);
	memcpy(&pid, b + 32, 8);
	memcpy(&dur, b + 40, 8);
	char name[FDN_SPAN_NAME_MAX + 1], tid[33], sh[17], ph[17];
	memcpy(name, b + FDN_SPAN_REC_HEAD, b[3]);
	name[b[3]] = 0;
	for (size_t i = 0; i < b[3]; i++)
		if (name[i] == 0)
			return false;
	fdn__tr_hex(tid, b + 8, 16);
	fdn__tr_hex64(sh, sid);
	fdn__tr_hex64(ph, pid);
	/* The same attributes and measurements, in the same order, as
	 * span_emit gives the text form. */
	struct fdn_attr a[6] = {fdn__tr_str_attr("span", name),
				fdn__tr_str_attr("trace_id", tid),
				fdn__tr_str_attr("span_id", sh),
				fdn__tr_str_attr("parent_id", ph),
				fdn__tr_str_attr("backend", b[2] ? "local" : "shared"),
				fdn__tr_str_attr("status", st_names[b[1]])};
	size_t na = stop ? 6 : 5;
	const char *evname = fdn__ev_names[stop ? FDN__EV_SPAN_STOP : FDN__EV_SPAN_START];
	snprintf(ev->name, sizeof(ev->name), "%s", evname);
	snprintf(ev->measurements[0].name, sizeof(ev->measurements[0].name), "depth");
	ev->measurements[0].value = depth;
	snprintf(ev->measurements[1].name, sizeof(ev->measurements[1].name), "duration_ns");
	ev->measurements[1].value = (double)dur;
	ev->nmeasurements = stop ? 2 : 1;
	int alen = fdn_attrs_encode(a, na, ev->attrs, sizeof(ev->attrs));
	if (alen < 0)
		return false;
	ev->attrs_len = (uint32_t)alen;
	ev->truncated = false;
	return true;
}
