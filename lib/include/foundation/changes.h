/*
 * foundation/changes.h - the registry's changes as a stream any process can
 * poll (docs/changefeed.md).
 *
 * Every change of the registry -- an entry registered (or taken over),
 * its attributes updated, unregistered, or removed by the reaper because
 * its owner died or detached -- is appended to the segment's change log
 * with a revision: a segment-wide sequence number, 1 for the first change,
 * one more for each next.  For any one key, revision order is the order in
 * which its changes took effect.  A change that did not happen (a writer
 * killed before its change took effect, a lost race) never appears.
 *
 * The log is a ring of a fixed number of records (fdn_segment_opts.changes,
 * default 16 384): a reader more than that many changes behind finds its
 * next change overwritten -- FDN_EOVERFLOW -- and resynchronises: a
 * snapshot (fdn_registry_snapshot) states the revision R it reflects, and
 * "the snapshot, then every change after R" neither misses nor repeats a
 * change.
 *
 * What the log tracks is the table: a change record names the key, the
 * owner's pid and the kind, not the attributes (read them with fdn_lookup;
 * they may then be newer than the record).  Entries of a dead owner are
 * invisible to lookups as soon as the reaper sees the death, and leave the
 * table (FDN_CHANGE_REMOVED records) a moment later, when it removes them;
 * a snapshot lists what the table holds, so it may list such an entry
 * whose removal record follows.
 */
#ifndef FOUNDATION_CHANGES_H
#define FOUNDATION_CHANGES_H

#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/registry.h>
#include <foundation/segment.h>

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fdn_change_type {
	FDN_CHANGE_REGISTERED = 1,   /* a new entry, or a takeover of the key */
	FDN_CHANGE_UPDATED = 2,      /* attributes replaced or merged */
	FDN_CHANGE_UNREGISTERED = 3, /* removed by fdn_unregister */
	FDN_CHANGE_REMOVED = 4,      /* removed because its owner died or detached */
};

/* fdn_change.death when no death is known. */
#define FDN_NO_DEATH UINT64_MAX

/* One change. */
struct fdn_change {
	uint64_t revision;
	uint64_t time_ns; /* CLOCK_REALTIME, taken during the call that made
			   * it, before it took effect (a registration: its
			   * entry's registered_ns); see fdn_event.time_ns */
	/* FDN_CHANGE_REMOVED by the reaper after a death: the death's number
	 * in the graveyard (fdn_death.number); else FDN_NO_DEATH. */
	uint64_t death;
	pid_t pid; /* the entry's owner */
	enum fdn_change_type kind;
	uint32_t key_len;
	char key[FDN_REG_KEY_MAX + 1]; /* NUL-terminated copy */
};

typedef struct fdn_subscription fdn_subscription;

/*
 * Subscribe to the changes of keys that begin with prefix (plen bytes; 0:
 * every key) made from now on (fdn_subscribe), or after revision
 * `revision` (fdn_subscribe_from: its changes from revision + 1; a
 * revision older than the log holds gives FDN_EOVERFLOW at the first
 * read).  flags: 0.  The subscription owns an eventfd (fdn_subscription_fd)
 * and a thread of this process that makes it readable; it belongs to this
 * process (not inherited over fork).  Needs a writable handle: FDN_ERDONLY;
 * FDN_ENOLOG (segment made without a change log), FDN_EINVKEY (prefix
 * longer than 255), FDN_EINVAL, -errno (eventfd, thread).  Close it before
 * detaching the segment.
 */
FDN_API int fdn_subscribe(fdn_segment *s, const void *prefix, size_t plen, unsigned flags,
			  fdn_subscription **out);
FDN_API int fdn_subscribe_from(fdn_segment *s, const void *prefix, size_t plen, uint64_t revision,
			       unsigned flags, fdn_subscription **out);

/*
 * The file descriptor to poll: readable (POLLIN / EPOLLIN) while a change
 * under the prefix, or an overrun, waits to be read.  Read the changes with
 * fdn_subscription_read, never read(2) the fd.  It may be readable once
 * with nothing left (a change read before the fd was looked at): then
 * fdn_subscription_read returns 0.  Edge-triggered loops must read until
 * it returns fewer than they asked for.
 */
FDN_API int fdn_subscription_fd(const fdn_subscription *sub);

/*
 * Copy up to n waiting changes into out, in revision order; returns how
 * many (0: none waiting), without blocking.  FDN_EOVERFLOW: the next change
 * was overwritten before it was read -- nothing is copied until
 * fdn_subscription_seek to a snapshot's revision.  A change whose writer is
 * between its decision and its record's completion (a few hundred
 * nanoseconds; for as long as it stays stopped, if it is stopped there)
 * holds back every later one: revision order is never broken.
 */
FDN_API int fdn_subscription_read(fdn_subscription *sub, struct fdn_change *out, size_t n);

/* Deliver the changes after `revision` from now on (after a resync). */
FDN_API int fdn_subscription_seek(fdn_subscription *sub, uint64_t revision);

/* The revision of the last change delivered or skipped (every change up to
 * it has been seen by this subscription). */
FDN_API uint64_t fdn_subscription_revision(const fdn_subscription *sub);

/* Stop the thread, close the fd, free.  NULL is accepted. */
FDN_API void fdn_subscription_close(fdn_subscription *sub);

/*
 * The entries of keys under prefix (plen 0: all) as of one revision,
 * stored in *revision: cb(arg, key, key_len, pid) for each, then returns
 * how many (or cb's non-zero return value, which stops it).  It walks the
 * table and corrects it with the log records written during the walk, so
 * the writers are never stopped; FDN_EOVERFLOW when more changes than the
 * log holds happened during the walk (try again, or give the log more
 * records), FDN_ETIMEDOUT when a writer stopped between its decision and
 * its record held it back for 5 s.  Lists every entry in the table, those
 * of an owner whose death the reaper is removing included (their removal
 * records follow).  cb must not write to the registry.
 */
typedef int (*fdn_snapshot_cb)(void *arg, const void *key, uint32_t key_len, pid_t pid);
FDN_API int fdn_registry_snapshot(fdn_segment *s, const void *prefix, size_t plen,
				  fdn_snapshot_cb cb, void *arg, uint64_t *revision);

/*
 * Read the log without a subscription (read-only handles too): up to n
 * changes under prefix with revision > from, oldest first, skipping
 * those already overwritten (the inspector).  Returns how many.
 */
FDN_API int fdn_changes_read(fdn_segment *s, const void *prefix, size_t plen, uint64_t from,
			     struct fdn_change *out, size_t n);

struct fdn_changes_stats {
	uint64_t revision;    /* the newest revision issued */
	uint32_t capacity;    /* records the log holds (0: no log) */
	uint64_t subscribers; /* subscriptions open, every process */
	uint64_t overruns;    /* reads that found their next change overwritten */
	uint64_t lapped;      /* records lost by a writer stalled a whole lap */
	uint64_t stolen;      /* revisions voided after their writer vanished */
};
FDN_API int fdn_changes_stats(fdn_segment *s, struct fdn_changes_stats *st);

/* "registered", "updated", "unregistered", "removed" ("?" otherwise). */
FDN_API const char *fdn_change_type_name(enum fdn_change_type k);

#ifdef __cplusplus
}
#endif
#endif
