/*
 * stress/corrupt_walk.h - what a reader of a damaged segment may do, shared
 * by stress_corrupt and the libFuzzer target fuzz_segment: attach the
 * named segment read-only and run the checker and every walk
 * foundation-inspect runs (registry, trace slots, graveyard, event ring,
 * flags and their history, samplers, stats).  Each must return an error or
 * a result: a crash or a hang is the bug these programs look for.
 */
#ifndef FDN_CORRUPT_WALK_H
#define FDN_CORRUPT_WALK_H

#include <foundation/context.h>
#include <foundation/flags.h>
#include <foundation/foundation.h>
#include <foundation/registry.h>
#include <foundation/telemetry.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * The corpus format.  A segment is megabytes of mostly zero bytes (fixed
 * service regions; a few hundred bytes set in a fresh one), so the fuzz
 * target's input is the file run-length encoded: records
 *   0x00, u32 n (little-endian)          n zero bytes
 *   0x01, u16 n (little-endian), n bytes  those bytes
 * in file order; any other tag, or a record cut short, ends the input.  The
 * decoded length, capped at CW_MAX_FILE, is the file's length, so a
 * mutated length truncates or extends the file.
 */
#define CW_MAX_FILE (64u << 20)

static inline uint32_t cw_le(const uint8_t *p, int n)
{
	uint32_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Encode buf into f. */
static inline void cw_encode(FILE *f, const uint8_t *buf, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		if (buf[i] == 0) {
			while (j < len && buf[j] == 0 && j - i < 0xFFFFFFFFu)
				j++;
			uint32_t n = (uint32_t)(j - i);
			uint8_t h[5] = {0, (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16),
					(uint8_t)(n >> 24)};
			fwrite(h, 1, 5, f);
		} else {
			/* A literal run ends at 8 zero bytes in a row or 65535. */
			size_t zeros = 0;
			while (j < len && j - i < 0xFFFF && zeros < 8) {
				zeros = buf[j] ? 0 : zeros + 1;
				j++;
			}
			if (zeros == 8)
				j -= 8;
			uint16_t n = (uint16_t)(j - i);
			uint8_t h[3] = {1, (uint8_t)n, (uint8_t)(n >> 8)};
			fwrite(h, 1, 3, f);
			fwrite(buf + i, 1, n, f);
		}
		i = j;
	}
}

/* Decode data into the shm object /dev/shm/NAME (created, 0600): zero runs
 * are holes of the file.  0, or -1 if the object cannot be written. */
static inline int cw_decode_to_shm(const uint8_t *data, size_t size, const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	size_t i = 0;
	uint64_t off = 0;
	while (i < size && off < CW_MAX_FILE) {
		uint8_t tag = data[i];
		if (tag == 0 && i + 5 <= size) {
			off += cw_le(data + i + 1, 4);
			i += 5;
		} else if (tag == 1 && i + 3 <= size) {
			uint32_t n = cw_le(data + i + 1, 2);
			if (i + 3 + n > size)
				break;
			if (off + n > CW_MAX_FILE)
				n = (uint32_t)(CW_MAX_FILE - off);
			if (pwrite(fd, data + i + 3, n, (off_t)off) != (ssize_t)n) {
				close(fd);
				return -1;
			}
			off += n;
			i += 3 + (size_t)cw_le(data + i + 1, 2);
		} else {
			break;
		}
	}
	if (off > CW_MAX_FILE)
		off = CW_MAX_FILE;
	int r = ftruncate(fd, (off_t)off);
	close(fd);
	return r == 0 ? 0 : -1;
}

struct cw_result {
	int attach;     /* 0 or the attach error */
	int violations; /* the checker's count, or its error */
	uint64_t items; /* entries, threads, events, flags, samplers seen */
};

static int cw_entry(void *arg, const struct fdn_entry_view *e)
{
	(void)e;
	++*(uint64_t *)arg;
	return 0;
}

static int cw_trace(void *arg, const struct fdn_thread_trace *t)
{
	(void)t;
	++*(uint64_t *)arg;
	return 0;
}

static int cw_sampler(void *arg, const struct fdn_sampler_stats *st)
{
	(void)st;
	++*(uint64_t *)arg;
	return 0;
}

static int cw_violation_count;
static void cw_violation(void *arg, const char *code, const char *msg)
{
	(void)arg;
	(void)msg;
	if (strcmp(code, "note") != 0) /* a note is not a violation */
		cw_violation_count++;
}

/* Attach `name` read-only and walk everything; detach. */
static inline void cw_walk(const char *name, struct cw_result *out)
{
	fdn_segment *s = NULL;
	out->items = 0;
	out->violations = 0;
	out->attach = fdn_segment_attach(name, FDN_SEG_READONLY, &s);
	if (out->attach != 0)
		return;
	cw_violation_count = 0;
	out->violations = fdn_segment_check(s, cw_violation, NULL);
	fdn_foreach(s, cw_entry, &out->items);
	fdn_count(s);
	fdn_traces_foreach(s, 0, cw_trace, &out->items);
	fdn_graveyard_traces(s, 0, cw_trace, &out->items);
	uint64_t w, d;
	fdn_graveyard_trace_counts(s, &w, &d);
	struct fdn_ring_stats rs;
	fdn_ring_stats(s, &rs);
	struct fdn_ring_cursor c;
	struct fdn_ring_event *ev = malloc(sizeof(*ev));
	if (ev && fdn_ring_cursor_init(s, &c, true) == 0) {
		c.wait_ms = 1;
		/* Bounded: at most the ring's records and a lap more. */
		for (int i = 0; i < 100000 && fdn_ring_next(s, &c, ev) == 1; i++)
			out->items++;
	}
	free(ev);
	struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int nf = fdn_flags_list(s, fl, FDN_FLAGS_MAX);
	if (nf > 0)
		out->items += (uint64_t)nf;
	struct fdn_flag_change hist[FDN_FLAGS_HISTORY];
	fdn_flags_history(s, hist, FDN_FLAGS_HISTORY);
	fdn_flags_history_total(s);
	fdn_stage(s);
	fdn_flag_get(s, "use_shm_spans");
	fdn_samplers_foreach(s, cw_sampler, &out->items);
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	fdn_deaths(s);
	fdn_segment_detach(s);
}

#endif
