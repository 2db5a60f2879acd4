/*
 * tools/mirrord/local_source.h - what this host holds, as the publisher of
 * foundation-mirrord consumes it: a snapshot, then the changes since.
 *
 * STAND-IN (docs/cluster.md, "Local changes"): until the changefeed
 * (fdn_registry_snapshot, fdn_subscribe / fdn_subscription_fd /
 * fdn_subscription_read) is merged, local_source.c takes the snapshot with
 * fdn_foreach and finds the changes by rescanning the registry and diffing
 * against the previous scan; local_source_fd is -1 (the publisher polls
 * every --interval).  Swapping in the changefeed replaces local_source.c
 * only: the snapshot's revision becomes the changefeed's, next_changes
 * reads the subscription, fd is the subscription's fd.
 *
 * Maps are json-c objects: base64 of the registry key -> the value text in
 * etcd (format.h).  One thread at a time.
 */
#ifndef FDN_MIRRORD_LOCAL_SOURCE_H
#define FDN_MIRRORD_LOCAL_SOURCE_H

#include <foundation/registry.h>
#include <json-c/json.h>

#include <stdint.h>

struct local_source;

struct local_source *local_source_open(fdn_segment *s, const char *host);
void local_source_close(struct local_source *ls);

/* Every local entry now (*snap, a new map) and the revision it is at
 * (the stand-in: a scan count).  The next next_changes starts from it. */
int local_source_snapshot(struct local_source *ls, json_object **snap, int64_t *rev);

/* The changes since the last snapshot or next_changes: *puts (a map of
 * new or changed entries) and *dels (an array of base64 keys removed).
 * Both new objects, possibly empty. */
int local_source_next_changes(struct local_source *ls, json_object **puts, json_object **dels);

/* The number of local entries as of the last snapshot or next_changes. */
int64_t local_source_size(struct local_source *ls);

/* A descriptor readable when there are changes, or -1: poll. */
int local_source_fd(struct local_source *ls);

#endif
