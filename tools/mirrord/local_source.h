/*
 * tools/mirrord/local_source.h - what this host holds, as the publisher of
 * foundation-mirrord consumes it: a snapshot, then the changes since, read
 * from the registry's change feed (<foundation/changes.h>,
 * docs/changefeed.md).
 *
 * local_source_snapshot takes fdn_registry_snapshot (keys and pids as of a
 * revision R), reads each entry's attributes with fdn_lookup_view, and
 * (re)positions the subscription after R; local_source_next_changes reads
 * the subscription.  Keys in the remote namespace (first byte
 * FDN_REG_REMOTE_BYTE: the mirrored entries of other hosts and the agent's
 * status entries) are never returned by either: they are dropped from the
 * snapshot's walk and from every change read, so the publisher cannot
 * republish another host's entries.
 *
 * Maps are json-c objects: base64 of the registry key -> the value text in
 * etcd (format.h).  One thread at a time (the publisher's).
 */
#ifndef FDN_MIRRORD_LOCAL_SOURCE_H
#define FDN_MIRRORD_LOCAL_SOURCE_H

#include <foundation/changes.h>
#include <foundation/registry.h>
#include <json-c/json.h>

#include <stdbool.h>
#include <stdint.h>

struct local_source;

/* NULL with errno set (ENOMEM), or *err (an FDN_ code: FDN_ENOLOG for a
 * segment made without a change log) when the subscription fails. */
struct local_source *local_source_open(fdn_segment *s, const char *host, int *err);
void local_source_close(struct local_source *ls);

/* Every local entry now (*snap, a new map) and the change-feed revision it
 * reflects; the subscription is moved to deliver the changes after it.
 * 0, or an FDN_ code (FDN_EOVERFLOW: more changes than the log holds
 * happened during the walk; try again). */
int local_source_snapshot(struct local_source *ls, json_object **snap, uint64_t *rev);

/* The changes read since the last snapshot or next_changes, at most `max`
 * records, folded per key (the last change of a key decides): *puts (a map
 * of entries registered or updated, with their attributes as looked up
 * now) and *dels (an array of base64 keys removed).  Both new objects,
 * possibly empty.  *more: the read stopped at `max` (call again without
 * waiting).  0, FDN_EOVERFLOW (the reader fell behind the ring: take a
 * snapshot, which resynchronises), or another FDN_ code. */
int local_source_next_changes(struct local_source *ls, size_t max, json_object **puts,
			      json_object **dels, bool *more);

/* The number of local keys published as of the last snapshot or
 * next_changes. */
int64_t local_source_size(struct local_source *ls);

/* The subscription's descriptor: readable when a change (or an overrun)
 * waits.  Poll it; never read(2) it. */
int local_source_fd(struct local_source *ls);

/* The revision of the last change read (or of the last snapshot). */
uint64_t local_source_revision(struct local_source *ls);

#endif
