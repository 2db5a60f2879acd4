/*
 * registry_local.c - the local registry: the seed's process dictionary.
 * The public registry calls come here when use_shm_registry is off (or
 * without a segment); entries live in this process's memory, invisible to
 * every other process, and are never seen by the reaper.
 *
 * Structure.  One liburcu cds_lfht per process (16 384 buckets, fixed: no
 * resize worker thread, see below), keyed by XXH3 of the key.  A node is
 * immutable once published: update and merge publish a new node with
 * cds_lfht_replace, register over a dead or replaced holder likewise, and
 * unregister removes with cds_lfht_del.  Readers (lookup, walks) run in an
 * RCU read-side section and never wait; a removed node is freed after a
 * grace period.
 *
 * Flavour: memb.  QSBR makes readers free but needs every reader thread to
 * announce quiescent states periodically: a library cannot ask that of its
 * callers' threads.  memb needs only that a reader thread is registered,
 * which we do on a thread's first call (unregistered by a thread-specific
 * destructor at thread exit); its read lock is a compiler barrier plus a
 * counter, synchronize a membarrier.  We never use call_rcu nor the
 * resizing worker, so liburcu starts no thread in the caller's process:
 * frees are synchronous in the writer (deferred to the end of the
 * outermost read-side section when a writer runs inside one, e.g. from a
 * walk's callback).
 *
 * fork().  Local state belongs to one process: a fork child starts with an
 * empty local registry (its copy of the parent's entries is removed on its
 * first local call).  liburcu cannot run grace periods in a child forked
 * while other threads of the parent were registered readers (their reader
 * state was copied, their threads were not): such a child never frees the
 * local nodes it removes (it keeps them on a list) rather than wait for
 * readers that do not exist.
 *
 * Liveness.  An entry records its owner's pid and identity (as the shared
 * registry does: a recycled pid is not its owner).  With no reaper, an
 * entry of a dead owner stays visible until it is unregistered or taken
 * over (a register finds its holder dead); FDN_REG_CHECK_ALIVE asks the
 * kernel on lookup.
 */
/* liburcu's inline fast paths, and its per-thread reader record (whether
 * the application has registered a thread itself: thread_ready). */
#define _LGPL_SOURCE
#include "lib/internal.h"

#include <urcu/urcu-memb.h>
/* rculfhash.h after the flavour header: it uses its definitions. */
#include <urcu/rculfhash.h>

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define LOCAL_BUCKETS     (1ul << 14)
#define LOCAL_BUCKETS_MAX (1ul << 26)
#define LOCAL_SEED        0x6C6F63616C726567ull /* any fixed value: hashes stay in-process */
#define LOCAL_TRIES       64

struct lnode {
	struct cds_lfht_node node;
	struct lnode *next_retired; /* the retiring thread's list */
	pid_t pid;
	uint32_t ident_kind;
	uint64_t ident;
	uint64_t registered_ns;
	uint32_t key_len;
	uint32_t attrs_len;
	unsigned char data[]; /* key bytes, then the encoded attributes */
};

struct lkey {
	const void *key;
	size_t len;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static struct cds_lfht *g_ht;
static pthread_key_t g_thread_key;
static _Atomic int64_t g_count;
/* Change notification for fdn_watch (see local_changed). */
static _Atomic uint32_t g_changes, g_watchers;
/* fork: the generation the table belongs to, bumped in every child. */
static _Atomic unsigned g_fork_gen;
static unsigned g_table_gen;
static pthread_mutex_t g_child_lock = PTHREAD_MUTEX_INITIALIZER;
/* Threads registered with liburcu; a child of a process with others
 * registered cannot run grace periods (tainted) and keeps what it removes
 * on g_kept. */
static _Atomic int g_registered;
static _Atomic bool g_tainted;
static pthread_mutex_t g_kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lnode *g_kept;

struct lthread {
	bool registered; /* by us: we unregister it at thread exit */
	bool borrowed;   /* by the application before our first call: its own */
	unsigned nest;
	struct lnode *retired;
	pid_t self_pid;     /* this process's identity, cached (a fork child's */
	uint32_t self_kind; /* pid differs: computed again) */
	uint64_t self_ident;
};
static _Thread_local struct lthread lt;

/* ---- setup, threads, fork ------------------------------------------------ */

static void thread_exit(void *unused)
{
	(void)unused;
	if (lt.registered) {
		urcu_memb_unregister_thread();
		lt.registered = false;
		atomic_fetch_sub(&g_registered, 1);
	}
}

static void atfork_child(void)
{
	/* Only this thread exists now: the others' registrations are copies. */
	int others = atomic_load(&g_registered) - (lt.registered ? 1 : 0);
	if (others > 0)
		atomic_store(&g_tainted, true);
	atomic_store(&g_registered, lt.registered ? 1 : 0);
	atomic_fetch_add(&g_fork_gen, 1);
}

static void setup(void)
{
	g_ht = cds_lfht_new_flavor(LOCAL_BUCKETS, LOCAL_BUCKETS, LOCAL_BUCKETS_MAX, 0,
				   &urcu_memb_flavor, NULL);
	pthread_key_create(&g_thread_key, thread_exit);
	pthread_atfork(NULL, NULL, atfork_child);
}

static void thread_ready(void)
{
	if (lt.registered || lt.borrowed)
		return;
	/* An application using liburcu's memb flavour itself may have
	 * registered this thread already (registering twice is an assertion
	 * failure): then its registration serves us too, and stays its to
	 * undo.  It must not unregister the thread while calling us. */
	if (URCU_TLS(urcu_memb_reader).registered) {
		lt.borrowed = true;
		return;
	}
	urcu_memb_register_thread();
	lt.registered = true;
	atomic_fetch_add(&g_registered, 1);
	pthread_setspecific(g_thread_key, &lt); /* any non-NULL: runs the destructor */
}

/* Free the retired nodes after a grace period (outside any read section). */
static void retired_flush(void)
{
	struct lnode *list = lt.retired;
	lt.retired = NULL;
	if (!list)
		return;
	if (atomic_load(&g_tainted)) {
		pthread_mutex_lock(&g_kept_lock);
		while (list) {
			struct lnode *next = list->next_retired;
			list->next_retired = g_kept;
			g_kept = list;
			list = next;
		}
		pthread_mutex_unlock(&g_kept_lock);
		return;
	}
	urcu_memb_synchronize_rcu();
	while (list) {
		struct lnode *next = list->next_retired;
		free(list);
		list = next;
	}
}

static void read_lock(void)
{
	if (lt.nest++ == 0)
		urcu_memb_read_lock();
}

static void read_unlock(void)
{
	if (--lt.nest == 0) {
		urcu_memb_read_unlock();
		retired_flush();
	}
}

/* A node unlinked by this thread: freed at the end of the outermost read
 * section (or now). */
static void retire(struct lnode *n)
{
	n->next_retired = lt.retired;
	lt.retired = n;
	if (lt.nest == 0)
		retired_flush();
}

static int match(struct cds_lfht_node *node, const void *key)
{
	const struct lnode *n = caa_container_of(node, struct lnode, node);
	const struct lkey *k = key;
	return n->key_len == k->len && memcmp(n->data, k->key, k->len) == 0;
}

static unsigned long hash(const void *key, size_t len)
{
	return (unsigned long)XXH3_64bits_withSeed(key, len, LOCAL_SEED);
}

/* In a fork child: drop the copy of the parent's entries. */
static void child_clear(void)
{
	pthread_mutex_lock(&g_child_lock);
	unsigned gen = atomic_load(&g_fork_gen);
	if (g_table_gen != gen) {
		struct cds_lfht_iter it;
		struct lnode *n;
		read_lock();
		cds_lfht_for_each_entry(g_ht, &it, n, node)
		{
			if (cds_lfht_del(g_ht, &n->node) == 0)
				retire(n);
		}
		atomic_store(&g_count, 0);
		read_unlock();
		g_table_gen = gen;
	}
	pthread_mutex_unlock(&g_child_lock);
}

/* Before every call: the table, this thread's registration, the fork. */
static int ready(void)
{
	pthread_once(&g_once, setup);
	if (!g_ht)
		return -ENOMEM;
	thread_ready();
	if (atomic_load_explicit(&g_fork_gen, memory_order_relaxed) != g_table_gen)
		child_clear();
	return 0;
}

/* Tell watchers: seq_cst on both sides (local_watch): either the writer
 * sees the watcher, or the watcher sees the change. */
static void local_changed(void)
{
	atomic_fetch_add(&g_changes, 1);
	if (atomic_load(&g_watchers))
		syscall(SYS_futex, &g_changes, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* ---- entries ---------------------------------------------------------------- */

static struct lnode *node_new(const void *key, size_t klen, pid_t pid, uint64_t ident,
			      uint32_t kind, uint64_t reg_ns, const void *attrs, size_t alen)
{
	struct lnode *n = malloc(sizeof(*n) + klen + alen);
	if (!n)
		return NULL;
	cds_lfht_node_init(&n->node);
	n->next_retired = NULL;
	n->pid = pid;
	n->ident_kind = kind;
	n->ident = ident;
	n->registered_ns = reg_ns;
	n->key_len = (uint32_t)klen;
	n->attrs_len = (uint32_t)alen;
	memcpy(n->data, key, klen);
	if (alen)
		memcpy(n->data + klen, attrs, alen);
	return n;
}

/* The identity of pid (this process's from the thread's cache). */
static int identity_of(pid_t pid, uint64_t *ident, uint32_t *kind)
{
	if (pid == lt.self_pid && pid == getpid()) {
		*ident = lt.self_ident;
		*kind = lt.self_kind;
		return 0;
	}
	int r = fdn__identity(pid, ident, kind);
	if (r == 0 && pid == getpid()) {
		lt.self_pid = pid;
		lt.self_ident = *ident;
		lt.self_kind = *kind;
	}
	return r;
}

static bool owner_alive(const struct lnode *n)
{
	if (n->pid == getpid())
		return true;
	return fdn__pid_alive(n->pid, fdn__ident_tag(n->ident, n->ident_kind));
}

static struct fdn_entry_view view_of(const struct lnode *n)
{
	return (struct fdn_entry_view){n->data,          n->key_len,           n->pid,
				       n->registered_ns, n->data + n->key_len, n->attrs_len};
}

/* The node of key (read lock held), with its iterator. */
static struct lnode *find(const void *key, size_t klen, unsigned long h, struct cds_lfht_iter *it)
{
	struct lkey k = {key, klen};
	cds_lfht_lookup(g_ht, h, match, &k, it);
	struct cds_lfht_node *node = cds_lfht_iter_get_node(it);
	return node ? caa_container_of(node, struct lnode, node) : NULL;
}

static int check_key(size_t klen)
{
	return klen == 0 || klen > FDN_REG_KEY_MAX ? FDN_EINVKEY : 0;
}

/* ---- the calls ---------------------------------------------------------------- */

/* Buckets the table was last resized to.  It grows (doubling) once it
 * holds twice as many entries, by the inserting thread, synchronously
 * (cds_lfht_resize: outside any read-side section, under liburcu's resize
 * mutex).  No automatic resize: liburcu would do it in a call_rcu thread,
 * which a fork child does not have.  It never shrinks. */
static _Atomic unsigned long g_size = LOCAL_BUCKETS;

static void maybe_grow(void)
{
	unsigned long n = (unsigned long)atomic_load(&g_count), sz = atomic_load(&g_size);
	if (n <= 2 * sz || sz >= LOCAL_BUCKETS_MAX || lt.nest != 0)
		return;
	unsigned long want = sz;
	while (want < n && want < LOCAL_BUCKETS_MAX)
		want <<= 1;
	if (atomic_compare_exchange_strong(&g_size, &sz, want))
		cds_lfht_resize(g_ht, want);
}

int fdn__local_register(const void *key, size_t klen, pid_t pid, const struct fdn_attr *attrs,
			size_t n, unsigned flags, pid_t *holder)
{
	unsigned char enc[FDN_ATTRS_MAX];
	int r = check_key(klen);
	if (r)
		return r;
	if (pid <= 0 || (flags & ~(unsigned)FDN_REG_REPLACE))
		return FDN_EINVAL;
	int alen = fdn_attrs_encode(attrs, n, enc, sizeof(enc));
	if (alen < 0)
		return alen;
	uint64_t ident;
	uint32_t kind;
	if ((r = identity_of(pid, &ident, &kind)))
		return r;
	if ((r = ready()))
		return r;
	struct lnode *nn = node_new(key, klen, pid, ident, kind, fdn__real_ns(), enc, (size_t)alen);
	if (!nn)
		return -ENOMEM;
	struct lkey k = {key, klen};
	unsigned long h = hash(key, klen);
	for (int tries = 0; tries < LOCAL_TRIES; tries++) {
		read_lock();
		struct cds_lfht_node *got = cds_lfht_add_unique(g_ht, h, match, &k, &nn->node);
		if (got == &nn->node) {
			atomic_fetch_add(&g_count, 1);
			read_unlock();
			local_changed();
			maybe_grow();
			return 0;
		}
		struct lnode *old = caa_container_of(got, struct lnode, node);
		if (!(flags & FDN_REG_REPLACE) && owner_alive(old)) {
			if (holder)
				*holder = old->pid;
			read_unlock();
			free(nn);
			return FDN_EEXISTS;
		}
		struct cds_lfht_iter it;
		if (find(key, klen, h, &it) == old &&
		    cds_lfht_replace(g_ht, &it, h, match, &k, &nn->node) == 0) {
			retire(old);
			read_unlock();
			local_changed();
			return 0;
		}
		read_unlock(); /* changed under us: again */
	}
	free(nn);
	return FDN_EEXISTS;
}

int fdn__local_lookup(const void *key, size_t klen, unsigned flags, struct fdn_entry *out)
{
	int r = check_key(klen);
	if (r)
		return r;
	if (flags & ~(unsigned)FDN_REG_CHECK_ALIVE)
		return FDN_EINVAL;
	if ((r = ready()))
		return r;
	struct cds_lfht_iter it;
	bool alive = true;
	read_lock();
	struct lnode *n = find(key, klen, hash(key, klen), &it);
	if (n && out) {
		memcpy(out->key, n->data, n->key_len);
		out->key[n->key_len] = 0;
		out->key_len = n->key_len;
		out->pid = n->pid;
		out->registered_ns = n->registered_ns;
		out->attrs_len = n->attrs_len;
		memcpy(out->attrs, n->data + n->key_len, n->attrs_len);
	}
	if (n && (flags & FDN_REG_CHECK_ALIVE))
		alive = owner_alive(n);
	read_unlock();
	return n && alive ? 0 : FDN_ENOTFOUND;
}

int fdn__local_unregister(const void *key, size_t klen)
{
	int r = check_key(klen);
	if (r || (r = ready()))
		return r;
	unsigned long h = hash(key, klen);
	for (int tries = 0; tries < LOCAL_TRIES; tries++) {
		struct cds_lfht_iter it;
		read_lock();
		struct lnode *n = find(key, klen, h, &it);
		if (!n) {
			read_unlock();
			return FDN_ENOTFOUND;
		}
		if (cds_lfht_del(g_ht, &n->node) == 0) {
			atomic_fetch_sub(&g_count, 1);
			retire(n);
			read_unlock();
			local_changed();
			return 0;
		}
		read_unlock(); /* removed or replaced under us: again */
	}
	return FDN_ENOTFOUND;
}

int fdn__local_update(const void *key, size_t klen, const struct fdn_attr *attrs, size_t n,
		      bool merge)
{
	unsigned char upd[FDN_ATTRS_MAX], buf[FDN_ATTRS_MAX];
	int r = check_key(klen);
	if (r)
		return r;
	int ulen = fdn_attrs_encode(attrs, n, upd, sizeof(upd));
	if (ulen < 0)
		return ulen;
	if ((r = ready()))
		return r;
	struct lkey k = {key, klen};
	unsigned long h = hash(key, klen);
	for (int tries = 0; tries < LOCAL_TRIES; tries++) {
		struct cds_lfht_iter it;
		read_lock();
		struct lnode *old = find(key, klen, h, &it);
		if (!old) {
			read_unlock();
			return FDN_ENOTFOUND;
		}
		const unsigned char *a = upd;
		int alen = ulen;
		if (merge) {
			alen = fdn_attrs_merge(old->data + old->key_len, old->attrs_len, upd,
					       (size_t)ulen, buf, sizeof(buf));
			a = buf;
		}
		if (alen < 0) {
			read_unlock();
			return alen;
		}
		struct lnode *nn = node_new(key, klen, old->pid, old->ident, old->ident_kind,
					    old->registered_ns, a, (size_t)alen);
		if (!nn) {
			read_unlock();
			return -ENOMEM;
		}
		if (cds_lfht_replace(g_ht, &it, h, match, &k, &nn->node) == 0) {
			retire(old);
			read_unlock();
			local_changed();
			return 0;
		}
		read_unlock();
		free(nn); /* never published */
	}
	return FDN_ENOTFOUND;
}

int64_t fdn__local_count(bool alive)
{
	int r = ready();
	if (r)
		return r;
	if (alive)
		return fdn__local_walk(NULL, NULL, NULL, 0, true, NULL, NULL);
	return atomic_load(&g_count);
}

int fdn__local_walk(fdn_entry_filter filter, void *farg, const struct fdn_criterion *c, size_t n,
		    bool alive, fdn_entry_cb cb, void *arg)
{
	int r = ready();
	if (r)
		return r;
	struct cds_lfht_iter it;
	struct lnode *ln;
	int count = 0;
	read_lock();
	cds_lfht_for_each_entry(g_ht, &it, ln, node)
	{
		struct fdn_entry_view e = view_of(ln);
		if (filter && !filter(farg, &e))
			continue;
		if (c && !fdn_criteria_match(c, n, e.attrs, e.attrs_len))
			continue;
		if (alive && !owner_alive(ln))
			continue;
		count++;
		if (cb && (r = cb(arg, &e)) != 0)
			break;
	}
	read_unlock();
	return r ? r : count;
}

int fdn__local_watch(const void *key, size_t klen, bool present, int64_t timeout_ms)
{
	int r = check_key(klen);
	if (r || (r = ready()))
		return r;
	int64_t start = (int64_t)fdn__mono_ns();
	for (;;) {
		atomic_fetch_add(&g_watchers, 1);
		uint32_t seen = atomic_load(&g_changes);
		bool here = fdn__local_lookup(key, klen, 0, NULL) == 0;
		if (here == present) {
			atomic_fetch_sub(&g_watchers, 1);
			return 0;
		}
		struct timespec ts, *tp = NULL;
		if (timeout_ms >= 0) {
			int64_t left = start + timeout_ms * 1000000 - (int64_t)fdn__mono_ns();
			if (left <= 0) {
				atomic_fetch_sub(&g_watchers, 1);
				return FDN_ETIMEDOUT;
			}
			ts = (struct timespec){left / 1000000000, left % 1000000000};
			tp = &ts;
		}
		syscall(SYS_futex, &g_changes, FUTEX_WAIT_PRIVATE, seen, tp, NULL, 0);
		atomic_fetch_sub(&g_watchers, 1);
	}
}
