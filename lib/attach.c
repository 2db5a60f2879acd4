/*
 * attach.c - the public create/attach: the mechanism's own (shm/segment.c)
 * plus what a program that only links the library expects: a reaper
 * watching the segment (lib/reaper.c).
 */
#include "lib/internal.h"

#include <foundation/reaper.h>
#include <foundation/segment.h>

#include <signal.h>
#include <unistd.h>

/* The services' parts of a new segment, written before it is published. */
static int services_init(fdn_segment *s, const struct fdn_segment_opts *o)
{
	int r = fdn__flags_init(s, o);
	return r ? r : fdn__telemetry_init(s);
}

int fdn_segment_create(const char *name, const struct fdn_segment_opts *o, fdn_segment **out)
{
	int r = fdn__seg_create(name, o, services_init, out);
	if (r == 0)
		fdn_reaper_autostart(*out);
	return r;
}

int fdn_segment_attach(const char *name, unsigned flags, fdn_segment **out)
{
	int r = fdn__seg_attach(name, flags, out);
	if (r == 0 && !(flags & FDN_SEG_READONLY))
		fdn_reaper_autostart(*out);
	return r;
}

int fdn_segment_detach(fdn_segment *s)
{
	if (!s)
		return 0;
	bool writer = !s->readonly && fdn__seg_usable(s) == 0 && s->proc_idx != UINT32_MAX;
	pid_t reaper = writer ? fdn_reaper_holder(s) : 0;
	if (writer && (reaper == 0 || reaper == getpid())) {
		/* Nobody else will clean up after us: remove our entries now. */
		fdn__registry_purge_owner(s, s->proc_idx, s->proc_word);
	}
	fdn__seg_detach(s, writer && reaper != 0 && reaper != getpid());
	return 0;
}

int fdn_segment_check(fdn_segment *s, fdn_check_cb cb, void *arg)
{
	if (!s)
		return FDN_EINVAL;
	int n = fdn__seg_check(s, cb, arg);
	if (n < 0)
		return n;
	/* The registry is audited only on a segment whose mechanism is sound:
	 * its walks trust the chains the mechanism audit has verified. */
	if (n == 0) {
		int m = fdn__registry_check(s, cb, arg);
		n = m < 0 ? m : n + m;
	}
	/* The trace slots and the flags region stand apart from the tables:
	 * always audited. */
	if (n >= 0) {
		int m = fdn__trace_check(s, cb, arg);
		n = m < 0 ? m : n + m;
	}
	if (n >= 0) {
		int m = fdn__flags_check(s, cb, arg);
		n = m < 0 ? m : n + m;
	}
	/* The telemetry regions need only a sound header. */
	if (n >= 0 && fdn__validate_header(s->hdr, s->size) == 0) {
		int m = fdn__telemetry_check(s, cb, arg);
		n = m < 0 ? m : n + m;
	}
	return n;
}

int fdn_segment_destroy(const char *name)
{
	/* The reaper would otherwise watch a segment nobody can attach any
	 * more: stop it (SIGTERM: it releases the lease and exits). */
	fdn_segment *s;
	pid_t reaper = 0;
	if (fdn__seg_attach(name, FDN_SEG_READONLY | FDN_SEG_ALLOW_FOREIGN, &s) == 0) {
		reaper = fdn_reaper_holder(s);
		fdn__seg_detach(s, false);
	}
	int r = fdn__seg_destroy(name);
	if (r == 0 && reaper > 0 && reaper != getpid())
		kill(reaper, SIGTERM);
	return r;
}
