/*
 * attach.c - the public create/attach: the mechanism's own (shm/segment.c)
 * plus what a program that only links the library expects: a reaper
 * watching the segment (lib/reaper.c).
 */
#include "lib/internal.h"
#include "lib/telemetry.h"

#include <foundation/reaper.h>
#include <foundation/segment.h>

#include <poll.h>
#include <stdbool.h>
#include <unistd.h>

/* The services' parts of a new segment, written before it is published. */
static int services_init(fdn_segment *s, const struct fdn_segment_opts *o)
{
	int r = fdn__flags_init(s, o);
	return r ? r : fdn__telemetry_init(s);
}

int fdn__segment_create_bare(const char *name, const struct fdn_segment_opts *o, fdn_segment **out)
{
	return fdn__seg_create(name, o, services_init, out);
}

/* The reaper, once the segment is ours: launched without waiting for it
 * (lib/reaper.c).  Its failure fails the call only when the caller
 * required a reaper; it is recorded in the segment either way. */
static int start_reaper(fdn_segment *s, bool require)
{
	int r = fdn_reaper_autostart(s);
	return require ? r : 0;
}

int fdn_segment_create(const char *name, const struct fdn_segment_opts *o, fdn_segment **out)
{
	int r = fdn__seg_create(name, o, services_init, out);
	if (r == 0 && (r = start_reaper(*out, o && (o->flags & FDN_SEG_REQUIRE_REAPER))) != 0) {
		/* Removed as any failed create's: nobody can have relied on
		 * a segment whose create failed. */
		fdn_segment_detach(*out);
		fdn_segment_destroy(name ? name : fdn_segment_default_name());
		*out = NULL;
	}
	return r;
}

int fdn_segment_attach(const char *name, unsigned flags, fdn_segment **out)
{
	bool require = (flags & FDN_SEG_REQUIRE_REAPER) != 0;
	int r = fdn__seg_attach(name, flags & ~(unsigned)FDN_SEG_REQUIRE_REAPER, out);
	if (r == 0 && !(flags & FDN_SEG_READONLY) && (r = start_reaper(*out, require)) != 0) {
		fdn_segment_detach(*out);
		*out = NULL;
	}
	return r;
}

int fdn_segment_detach(fdn_segment *s)
{
	if (!s)
		return 0;
	/* A reaper launch still spawning (lib/reaper.c): let it start before
	 * this handle (perhaps the program's last act) goes. */
	fdn__reaper_launch_settle(2000);
	/* The last of this process's handles on the segment gives the slot
	 * (and so its entries) up; an earlier one only its reader slots. */
	bool writer = !s->readonly && fdn__seg_usable(s) == 0 && s->proc_idx != UINT32_MAX &&
		      fdn__seg_proc_refs(s) <= 1;
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
	/* No signal: a pid read from a segment that anyone of its group may
	 * write is no pid to send signals to.  The reaper sees the destroy
	 * itself (the header flag and the doorbell, or its name gone at its
	 * next tick) and exits; we wait a little for it, so that a create
	 * right after us does not meet the old reaper. */
	uint64_t lease = 0;
	int r = fdn__seg_destroy(name, &lease);
	if (r == 0 && FDN_PROC_STATE(lease) == FDN_PROC_LIVE &&
	    FDN_PROC_PID(lease) != (uint32_t)getpid()) {
		int fd;
		if (fdn__pid_open((pid_t)FDN_PROC_PID(lease), FDN_PROC_IDENT40(lease), &fd) ==
			FDN_PID_ALIVE &&
		    fd >= 0) {
			struct pollfd p = {fd, POLLIN, 0};
			(void)poll(&p, 1, 2000);
		}
		if (fd >= 0)
			close(fd);
	}
	return r;
}
