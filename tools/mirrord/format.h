/*
 * tools/mirrord/format.h - an entry as stored in etcd (docs/cluster.md,
 * "The value in etcd"), format version 1:
 *
 *   {"format":1,"host":"h1","pid":1234,"registered_ns":1733400000000000000,
 *    "attributes":[{"name":"capability","type":"string","value":"db"},
 *                  {"name":"port","type":"int","value":5432},
 *                  {"name":"load","type":"double","value":0.5},
 *                  {"name":"ready","type":"bool","value":true},
 *                  {"name":"tags","type":"list","value":["a","b"]}]}
 *
 * The key is not in the value: it is the etcd key's tail.
 */
#ifndef FDN_MIRRORD_FORMAT_H
#define FDN_MIRRORD_FORMAT_H

#include <foundation/registry.h>
#include <json-c/json.h>

#define FDN_CLUSTER_FORMAT 1

/* The value text of a local entry (malloc'ed). */
char *entry_to_json(const char *host, const struct fdn_entry_view *e);

/* The attributes a remote entry gets in the segment: those of the value
 * text, then node (the host), remote (true), remote_pid and
 * remote_registered_ns, replacing same-named ones.  Pointers into r->j. */
struct remote_attrs {
	json_object *j;
	size_t n;
	struct fdn_attr a[FDN_ATTRS_MAX / 4 + 4];
	const char *items[FDN_ATTRS_MAX];
};
/* 0, or -1 (not a value of a known format: *why says).  remote_attrs_free
 * after either. */
int json_to_remote_attrs(const char *text, const char *host, struct remote_attrs *r,
			 const char **why);
void remote_attrs_free(struct remote_attrs *r);

#endif
