/*
 * foundation/registry.h - named processes with typed attributes, shared by
 * every process that attaches the segment, cleaned up when a process dies.
 *
 * An entry maps a key (1..255 bytes) to a pid and a set of attributes
 * (foundation/attrs.h).  The pid is the entry's owner: the entry lives as
 * long as that process, identified by pid *and* an identity the kernel
 * never reuses (shm/proc.c), so a recycled pid never inherits an entry.
 * A process may register entries for another pid (a supervisor for its
 * children); that pid gets its own process slot and is watched the same way.
 *
 * Visibility.  Once the reaper has seen an owner's death, no lookup, list,
 * find, query or count returns its entries: each read checks the owner's
 * process slot (one cache line).  Before the reaper has seen it (or for
 * ever, if no reaper runs), an entry of a dead owner is still returned
 * unless FDN_REG_CHECK_ALIVE asks the kernel: lookup and every *_flags
 * walk (foreach, list, count, find_by_attribute, query) accept it.
 *
 * Concurrency.  Every call is safe from any thread of any attached process.
 * Reads take no lock and never wait for a writer.  Writers are lock-free.
 * fdn_lookup_view's callback runs inside a read-side section (see there);
 * walk callbacks run outside one, on copies.  Callbacks must not call
 * fdn_segment_detach; the views they receive are valid only during the
 * call.
 *
 * Indexed attributes (chosen at segment creation, default capability,
 * health_status, node): find_by_attribute and EQ criteria on them cost
 * O(matches) through a secondary index; on other attributes they scan the
 * table (O(entries)).  String values longer than 200 bytes are not indexed
 * (lookups of them scan).
 */
#ifndef FOUNDATION_REGISTRY_H
#define FOUNDATION_REGISTRY_H

#include <foundation/attrs.h>
#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/segment.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDN_REG_KEY_MAX 255u

enum {
	/* register: overwrite an entry held by a live process. */
	FDN_REG_REPLACE = 1u << 0,
	/* lookup, and the walks' *_flags forms: also ask the kernel whether
	 * the owner is alive (a few syscalls, once per owner per walk); an
	 * entry of a dead owner is then FDN_ENOTFOUND / left out. */
	FDN_REG_CHECK_ALIVE = 1u << 1,
	/* unregister: an entry that is not there (its owner's death already
	 * removed it, say) is success (0), not FDN_ENOTFOUND. */
	FDN_REG_IF_PRESENT = 1u << 2,
	/* register, unregister: the cluster agent (foundation-mirrord) writes
	 * a remote entry, whose key is in the remote namespace (below) and
	 * whose owner is the caller itself.  Reserved to the agent. */
	FDN_REG_MIRROR = 1u << 3,
	/* the walks' *_flags forms (foreach, list, count, find_by_attribute,
	 * query): also return the remote entries (keys in the remote
	 * namespace); without it they are left out, as if absent. */
	FDN_REG_REMOTE = 1u << 4,
};

/*
 * The remote namespace (docs/cluster.md).  Entries of other hosts of a
 * cluster are mirrored into the segment by foundation-mirrord under the key
 * FDN_REG_REMOTE_BYTE, host, FDN_REG_REMOTE_BYTE, key -- kept apart from the
 * local entries, keyed by (host, key).  A key whose first byte is
 * FDN_REG_REMOTE_BYTE is refused (FDN_EINVKEY) by fdn_register,
 * fdn_unregister and the attribute updates without FDN_REG_MIRROR, so
 * local writers can neither create nor change remote entries; lookups of
 * plain keys never see them.  The agent's own status lives under the keys
 * FDN_REG_REMOTE_BYTE (the cluster) and FDN_REG_REMOTE_BYTE, host (one per
 * host).
 */
#define FDN_REG_REMOTE_BYTE 0x00
#define FDN_HOST_MAX        63u

/* An entry copied out of the segment. */
struct fdn_entry {
	char key[FDN_REG_KEY_MAX + 1]; /* NUL-terminated copy; key_len bytes */
	uint32_t key_len;
	pid_t pid;
	uint64_t registered_ns; /* CLOCK_REALTIME at the start of the call
				 * (see fdn_event.time_ns) */
	uint32_t attrs_len;
	unsigned char attrs[FDN_ATTRS_MAX]; /* read with fdn_attrs_* */
};

/* An entry seen in place, during a callback. */
struct fdn_entry_view {
	const void *key;
	uint32_t key_len;
	pid_t pid;
	uint64_t registered_ns;
	const void *attrs;
	uint32_t attrs_len;
};

/* Return non-zero to stop the iteration (the call then returns that value). */
typedef int (*fdn_entry_cb)(void *arg, const struct fdn_entry_view *e);
/* Return true to keep the entry. */
typedef bool (*fdn_entry_filter)(void *arg, const struct fdn_entry_view *e);

/*
 * Register key for pid with n attributes.  Errors: FDN_EINVKEY (empty or
 * longer than 255), FDN_EINVMETA (bad attributes), FDN_EINVAL (pid <= 0),
 * -ESRCH (no such process), FDN_EEXISTS (held by a live process; *holder,
 * if given, receives its pid), FDN_ENOSPACE (table or process table full),
 * FDN_EBUSY (for another pid only: the process slot held for it was
 * released as idle under 64 attempts in a row; nothing registered).
 * A key held by a process that is dead -- reaped or not -- is taken over.
 * On any error nothing stored changes.
 */
FDN_API int fdn_register(fdn_segment *s, const void *key, size_t klen, pid_t pid,
			 const struct fdn_attr *attrs, size_t n, unsigned flags, pid_t *holder);

/* Copy the entry out (out may be NULL: is the key visible?).  flags: 0 or
 * FDN_REG_CHECK_ALIVE.  FDN_ENOTFOUND, FDN_EINVKEY, FDN_EINVAL. */
FDN_API int fdn_lookup(fdn_segment *s, const void *key, size_t klen, unsigned flags,
		       struct fdn_entry *out);

/*
 * Which process serves key?  *pid receives the pid of the visible entry's
 * owner; nothing else is read or copied (a hit reads the bucket, the
 * entry's first cache line and its owner's process slot).  The _flags form
 * takes 0 or FDN_REG_CHECK_ALIVE.  FDN_ENOTFOUND, FDN_EINVKEY, FDN_EINVAL
 * (pid NULL, another flag); on a read-only handle also FDN_ETIMEDOUT (the
 * entry was replaced under each of many attempts to read it).
 */
FDN_API int fdn_whereis(fdn_segment *s, const void *key, size_t klen, pid_t *pid);
FDN_API int fdn_whereis_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags,
			      pid_t *pid);

/*
 * The entry seen in place, without a copy: cb(arg, e) is called once with
 * the entry's key, pid, registration time and attributes (what fdn_lookup
 * copies out), and fdn_lookup_view returns what cb returned.  Without an
 * entry cb is not called: FDN_ENOTFOUND, FDN_EINVKEY, FDN_EINVAL (cb NULL,
 * a flag other than FDN_REG_CHECK_ALIVE), and as fdn_whereis.
 *
 * cb runs inside the read-side section of the lookup: e and everything it
 * points to are valid, and do not change, until cb returns -- an update or
 * removal of the key meanwhile makes a new version, never changes the one
 * seen; copy what must outlive the call.  Inside cb, reads (fdn_lookup,
 * fdn_whereis, fdn_lookup_view, the walks) may be called; writes may fail
 * with FDN_EINREAD (they cannot wait for a grace period there); cb must not
 * call fdn_segment_detach and must not wait for other processes: until it
 * returns, no block retired by any process can be freed.  The local backend
 * and read-only handles (FDN_SEG_READONLY) hand cb a copy instead (a
 * read-only handle reads without grace periods).
 */
FDN_API int fdn_lookup_view(fdn_segment *s, const void *key, size_t klen, fdn_entry_cb cb,
			    void *arg);
FDN_API int fdn_lookup_view_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags,
				  fdn_entry_cb cb, void *arg);

/* Remove the entry (whoever registered it).  FDN_ENOTFOUND, FDN_EINVKEY. */
FDN_API int fdn_unregister(fdn_segment *s, const void *key, size_t klen);

/* fdn_unregister with flags: FDN_REG_IF_PRESENT makes an absent key 0 (a
 * supervisor's stop-then-unregister when the reaper was faster).  Other
 * flags: FDN_EINVAL. */
FDN_API int fdn_unregister_flags(fdn_segment *s, const void *key, size_t klen, unsigned flags);

/* Replace all attributes, or merge (same names replaced, others kept).
 * The owner and registration time stay.  FDN_ENOTFOUND, FDN_EINVMETA. */
FDN_API int fdn_update_attributes(fdn_segment *s, const void *key, size_t klen,
				  const struct fdn_attr *attrs, size_t n);
FDN_API int fdn_merge_attributes(fdn_segment *s, const void *key, size_t klen,
				 const struct fdn_attr *attrs, size_t n);

/* Number of visible entries. */
FDN_API int64_t fdn_count(fdn_segment *s);

/* Every visible entry (in no particular order); with a filter, those it
 * keeps.  Returns the number of entries passed to cb, or cb's non-zero
 * return value if it stopped the walk (negative values are returned as
 * they are), or an error. */
FDN_API int fdn_foreach(fdn_segment *s, fdn_entry_cb cb, void *arg);
FDN_API int fdn_list(fdn_segment *s, fdn_entry_filter filter, void *farg, fdn_entry_cb cb,
		     void *arg);

/* Entries whose attribute `name` equals `value` (for a list attribute:
 * contains it).  Through the index when `name` is indexed, else a scan.
 * Returns the count passed to cb, or an error (FDN_EINVMETA for a bad
 * value). */
FDN_API int fdn_find_by_attribute(fdn_segment *s, const char *name, const struct fdn_attr *value,
				  fdn_entry_cb cb, void *arg);

/* Entries for which every criterion holds.  An EQ criterion on an indexed
 * attribute narrows the walk through the index.  FDN_EINVCRIT. */
FDN_API int fdn_query(fdn_segment *s, const struct fdn_criterion *c, size_t n, fdn_entry_cb cb,
		      void *arg);

/*
 * The same five reads with flags: 0 is the plain call; FDN_REG_CHECK_ALIVE
 * leaves out the entries whose owner the kernel says is dead although the
 * reaper has not seen it yet (and counts by walking); any other flag is
 * FDN_EINVAL.
 */
FDN_API int64_t fdn_count_flags(fdn_segment *s, unsigned flags);
FDN_API int fdn_foreach_flags(fdn_segment *s, unsigned flags, fdn_entry_cb cb, void *arg);
FDN_API int fdn_list_flags(fdn_segment *s, unsigned flags, fdn_entry_filter filter, void *farg,
			   fdn_entry_cb cb, void *arg);
FDN_API int fdn_find_by_attribute_flags(fdn_segment *s, const char *name,
					const struct fdn_attr *value, unsigned flags,
					fdn_entry_cb cb, void *arg);
FDN_API int fdn_query_flags(fdn_segment *s, const struct fdn_criterion *c, size_t n, unsigned flags,
			    fdn_entry_cb cb, void *arg);

/* Is `name` an indexed attribute of this segment? */
FDN_API bool fdn_attr_indexed(fdn_segment *s, const char *name);

/*
 * Block until key is visible (present = true) or not visible (false), or
 * timeout_ms passes (< 0: no limit).  A shared futex wakes the caller on
 * every change of the tables, on every death the reaper sees and on a
 * destroy; besides, every 250 ms it looks whether the segment's name still
 * leads to it (a destroy by a process that could not write to it).  A
 * read-only handle cannot tell writers that it waits: it looks every 20 ms.
 * 0 when the state is reached, FDN_ETIMEDOUT, FDN_EINVKEY, FDN_ESTALE (the
 * segment was destroyed, before or during the wait: noticed within 250 ms).
 */
FDN_API int fdn_watch(fdn_segment *s, const void *key, size_t klen, bool present,
		      int64_t timeout_ms);

/* One holder of a key in the cluster (fdn_cluster_lookup). */
struct fdn_cluster_entry {
	char host[FDN_HOST_MAX + 1]; /* "" for this host's own entry */
	bool remote;
	/* key: the plain key; pid and registered_ns: those on the holder's
	 * host; attrs: the holder's attributes (a remote entry's also carry
	 * node, remote, remote_pid and remote_registered_ns). */
	struct fdn_entry e;
};

/*
 * Every holder of key in the cluster: this host's entry (if any) first,
 * then each remote host's, as mirrored into this segment (one hash lookup
 * per host listed by the agent's status entry).  Fills at most max
 * entries of out and returns how many holders there are (may exceed max),
 * or FDN_EINVKEY, FDN_EINVAL.  0 holders is 0, not an error.
 */
FDN_API int fdn_cluster_lookup(fdn_segment *s, const void *key, size_t klen,
			       struct fdn_cluster_entry *out, size_t max);

/* Split a key of the remote namespace: host and plain key (pointers into
 * key).  false when key is not a remote entry's key. */
FDN_API bool fdn_cluster_key_split(const void *key, size_t klen, const char **host, size_t *hlen,
				   const void **plain, size_t *plen);

/*
 * Register key for pid only if no host of the cluster holds it: the local
 * agent (foundation-mirrord) claims the key in etcd by a transaction (put
 * if absent, on the host's lease), then registers it here with the
 * attribute cluster_unique = true; the claim is released when the entry
 * goes (or with the host's lease).  The library does not talk to etcd: it
 * asks the agent through its socket (the status entry's "socket") and
 * waits for the verdict, at most timeout_ms.
 * 0 registered; FDN_EEXISTS: a host holds it -- *holder_host (if given,
 * FDN_HOST_MAX + 1 bytes) names it, *holder its pid there; -ECONNREFUSED
 * no agent runs for this segment; -EHOSTUNREACH the agent cannot reach
 * etcd; FDN_ETIMEDOUT no verdict in time; FDN_EINVKEY, FDN_EINVMETA,
 * FDN_EINVAL, and fdn_register's errors.  On any error nothing is
 * registered here -- except that after FDN_ETIMEDOUT a verdict reached
 * after the deadline may still have registered the key (the agent drops a
 * request whose deadline has passed when it reads it, not later).
 */
FDN_API int fdn_register_cluster_unique(fdn_segment *s, const void *key, size_t klen, pid_t pid,
					const struct fdn_attr *attrs, size_t n, int timeout_ms,
					char *holder_host, pid_t *holder);

/* The request and answer on the agent's socket (SOCK_SEQPACKET, one of
 * each per connection). */
#define FDN__UNIQUE_VERSION 1u
struct fdn__unique_req {
	uint32_t version;
	int32_t pid;
	uint64_t deadline_ns; /* CLOCK_REALTIME */
	uint32_t klen, alen;
	unsigned char key[FDN_REG_KEY_MAX];
	unsigned char attrs[FDN_ATTRS_MAX];
};
struct fdn__unique_ans {
	int32_t result;
	int32_t holder_pid;
	char host[FDN_HOST_MAX + 1];
};

#ifdef __cplusplus
}
#endif
#endif
