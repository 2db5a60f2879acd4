/*
 * segment_api.c - the public calls of foundation/segment.h that name, size,
 * describe and count a segment, on top of shm/'s internal functions
 * (shm/segment.c: fdn__seg_default_name, fdn__seg_dir, fdn__seg_path,
 * fdn__seg_opts_defaults, fdn__seg_size).  Create, attach, detach, destroy
 * and check are lib/attach.c's.  Calls shm/ only.
 */
#include "shm/shm.h"

#include <foundation/segment.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *fdn_segment_default_name(void)
{
	return fdn__seg_default_name();
}

void fdn_segment_opts_init(struct fdn_segment_opts *o)
{
	fdn__seg_opts_defaults(o);
}

const char *fdn_segment_dir(void)
{
	return fdn__seg_dir();
}

int fdn_segment_path(const char *name, char *buf, size_t cap)
{
	return fdn__seg_path(name, buf, cap);
}

int fdn_segment_size(const struct fdn_segment_opts *opts, uint64_t *bytes)
{
	return fdn__seg_size(opts, bytes);
}

static_assert(FDN_SEGMENT_FORMAT_MAJOR == FDN_ABI_MAJOR, "segment.h names the format major");

int fdn_segment_format(const char *name, unsigned *major, unsigned *minor)
{
	char path[PATH_MAX];
	int r = fdn_segment_path(name, path, sizeof(path));
	if (r)
		return r;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? FDN_ENOSEG : -errno;
	unsigned char h[12];
	ssize_t n = pread(fd, h, sizeof(h), 0);
	close(fd);
	uint64_t magic;
	uint16_t ma, mi;
	if (n != (ssize_t)sizeof(h))
		return FDN_EMAGIC;
	memcpy(&magic, h, 8);
	memcpy(&ma, h + 8, 2);
	memcpy(&mi, h + 10, 2);
	if (magic != FDN_MAGIC)
		return FDN_EMAGIC;
	if (major)
		*major = ma;
	if (minor)
		*minor = mi;
	return 0;
}

int fdn_segment_verify_size(fdn_segment *s)
{
	struct stat st;
	if (!s)
		return FDN_EINVAL;
	if (fstat(s->fd, &st) < 0)
		return -errno;
	return (uint64_t)st.st_size < s->size ? FDN_ETRUNC : 0;
}

const char *fdn_segment_name(const fdn_segment *s)
{
	return s ? s->name : "";
}

int fdn_segment_stats(fdn_segment *s, struct fdn_segment_stats *st)
{
	if (!s || !st)
		return FDN_EINVAL;
	memset(st, 0, sizeof(*st));
	const struct fdn_shm_header *h = s->hdr;
	st->total_bytes = h->total_size;
	st->abi_major = h->abi_major;
	st->abi_minor = h->abi_minor;
	st->created_ns = h->created_ns;
	st->creator_pid = h->creator_pid;
	st->creator_uid = h->creator_uid;
	st->procs_cap = s->nprocs;
	st->threads_cap = s->nthreads;
	for (uint32_t i = 0; i < s->nprocs; i++)
		if (atomic_load_explicit(&s->procs[i].word, memory_order_relaxed) != 0)
			st->procs_used++;
	for (uint32_t i = 0, n = fdn__tslot_bound(s); i < n; i++)
		if (atomic_load_explicit(&s->tslots[i].state, memory_order_relaxed) != 0)
			st->threads_used++;
	st->heap_pages = s->npages;
	st->heap_bytes = (uint64_t)s->npages * FDN_PAGE_SIZE;
	for (uint32_t p = 0; p < s->npages; p++) {
		uint32_t c = atomic_load_explicit(&s->pages[p].cls, memory_order_relaxed);
		if (c == 0 || c > FDN_NCLASSES)
			continue;
		st->heap_pages_used++;
		uint32_t step = 1u << (c - 1);
		for (uint32_t g = 0; g < FDN_PAGE_GRANULES; g += step) {
			uint64_t w = atomic_load_explicit(
			    &s->bstate[(uint64_t)p * FDN_PAGE_GRANULES + g], memory_order_relaxed);
			if (FDN_BLOCK_KIND(w) == FDN_BLOCK_ALLOC) {
				st->blocks_used++;
				st->block_bytes_used += (uint64_t)step * FDN_GRANULE;
			}
		}
	}
	st->gp_counter = atomic_load(&s->hdr->gp_ctr);
	st->gp_done = atomic_load(&s->hdr->gp_done);
	uint64_t oldest = UINT64_MAX;
	uint32_t hwm = fdn__tslot_bound(s);
	for (uint32_t i = 0; i < hwm; i++) {
		const struct fdn_shm_tslot *ts = &s->tslots[i];
		uint64_t state = atomic_load_explicit(&ts->state, memory_order_relaxed);
		if (state == 0)
			continue;
		st->reclaim_pending += fdn__limbo_waiting(ts);
		uint64_t c = atomic_load_explicit(&ts->ctr, memory_order_relaxed);
		uint32_t owner = FDN_TSLOT_OWNER(state);
		if (c != 0 && c < oldest && owner < s->nprocs) {
			oldest = c;
			st->reclaim_blocker_pid = FDN_PROC_PID(
			    atomic_load_explicit(&s->procs[owner].word, memory_order_relaxed));
			st->reclaim_blocker_tid =
			    atomic_load_explicit(&ts->tid, memory_order_relaxed);
		}
	}
	/* A section newer than every waiting block holds nothing back. */
	if (st->reclaim_pending == 0)
		st->reclaim_blocker_pid = st->reclaim_blocker_tid = 0;
	st->trace_cap = s->ntrace;
	for (uint32_t i = 0; i < s->ntrace; i++)
		if (atomic_load_explicit(&s->trace[i].owner, memory_order_relaxed) != 0)
			st->trace_used++;
	st->ghosts_written = atomic_load_explicit(&s->hdr->ghost_head, memory_order_relaxed);
	st->ghosts_cap = FDN_GHOSTS_MAX;
	st->events_cap = s->nevents;
	st->ntables = s->ntables;
	for (uint32_t t = 0; t < s->ntables && t < FDN_STATS_MAX_TABLES; t++) {
		memcpy(st->tables[t].name, h->tables[t].name, FDN_TABLE_NAME_MAX);
		st->tables[t].name[FDN_TABLE_NAME_MAX - 1] = 0;
		int64_t c = fdn__ht_count(s, t);
		st->tables[t].entries = c < 0 ? 0 : (uint64_t)c;
		st->tables[t].buckets = h->tables[t].nbuckets;
	}
	return 0;
}
