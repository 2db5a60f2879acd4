/*
 * test_lookup.c - fdn_whereis and fdn_lookup_view next to fdn_lookup: the
 * same answers, views that never show a torn entry while another process
 * (its own program image: lookup_child) updates it, and fdn_whereis in
 * step with fdn_lookup while processes are SIGKILLed mid-registration and
 * the reaper (started by the library) takes their entries away.
 */
#include "common.h"
#include "lib/internal.h"
#include "tests/lookup_child.h"

#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <time.h>

/* Children still running when a test ends (it failed): killed by fini. */
static pid_t spawned[256];
static int nspawned;

static void kill_spawned(void)
{
	for (int i = 0; i < nspawned; i++)
		if (spawned[i] > 0)
			kill(spawned[i], SIGKILL);
}

TestSuite(lookup, .fini = kill_spawned);

/* fork + exec lookup_child with argv[1..4]. */
static pid_t spawn_child(const char *mode, const char *seg, const char *arg, long n)
{
	char num[32];
	snprintf(num, sizeof(num), "%ld", n);
	pid_t p = t_fork();
	cr_assert_geq(p, 0);
	if (p == 0) {
		execl(LOOKUP_CHILD, "lookup_child", mode, seg, arg, num, (char *)NULL);
		_exit(127);
	}
	if (nspawned < 256)
		spawned[nspawned++] = p;
	return p;
}

/* What a view callback saw: a copy of the view, checked against lookup. */
struct seen {
	int calls;
	char key[FDN_REG_KEY_MAX + 1];
	uint32_t key_len;
	pid_t pid;
	uint64_t registered_ns;
	unsigned char attrs[FDN_ATTRS_MAX];
	uint32_t attrs_len;
	int ret; /* what the callback returns */
};

static int see_cb(void *arg, const struct fdn_entry_view *e)
{
	struct seen *s = arg;
	s->calls++;
	memcpy(s->key, e->key, e->key_len);
	s->key[e->key_len] = 0;
	s->key_len = e->key_len;
	s->pid = e->pid;
	s->registered_ns = e->registered_ns;
	memcpy(s->attrs, e->attrs, e->attrs_len);
	s->attrs_len = e->attrs_len;
	return s->ret;
}

/* fdn_whereis, fdn_lookup_view and fdn_lookup give the same entry. */
static void assert_agree(fdn_segment *s, const char *key, pid_t want)
{
	size_t kl = strlen(key);
	struct fdn_entry e;
	pid_t pid = 0;
	struct seen v = {0};
	cr_assert_eq(fdn_lookup(s, key, kl, 0, &e), 0, "lookup %s", key);
	cr_assert_eq(fdn_whereis(s, key, kl, &pid), 0, "whereis %s", key);
	cr_assert_eq(fdn_lookup_view(s, key, kl, see_cb, &v), 0, "view %s", key);
	cr_assert_eq(v.calls, 1);
	cr_assert_eq(e.pid, want);
	cr_assert_eq(pid, want);
	cr_assert_eq(v.pid, want);
	cr_assert_eq(v.key_len, kl);
	cr_assert_str_eq(v.key, key);
	cr_assert_eq(v.registered_ns, e.registered_ns);
	cr_assert_eq(v.attrs_len, e.attrs_len);
	cr_assert_eq(memcmp(v.attrs, e.attrs, e.attrs_len), 0);
}

Test(lookup, whereis_and_view_agree_with_lookup_and_reject_bad_input)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	char key[FDN_REG_KEY_MAX + 2];
	for (int i = 0; i < 200; i++) {
		struct lc_version v;
		lc_version_make(&v, (uint64_t)i);
		/* Keys of 1 to 200 bytes: the record leaves the first line. */
		snprintf(key, sizeof(key), "%0*d", i + 1, i);
		cr_assert_eq(
		    fdn_register(s, key, strlen(key), getpid(), v.attrs, LC_NATTRS, 0, NULL), 0);
	}
	for (int i = 0; i < 200; i++) {
		snprintf(key, sizeof(key), "%0*d", i + 1, i);
		assert_agree(s, key, getpid());
		struct seen v = {0};
		cr_assert_eq(fdn_lookup_view(s, key, strlen(key), see_cb, &v), 0);
		cr_assert_eq(lc_version_of(v.attrs, v.attrs_len), i);
	}
	/* Absent: the callback is not called. */
	pid_t pid = 12345;
	struct seen v = {0};
	cr_assert_eq(fdn_whereis(s, "absent", 6, &pid), FDN_ENOTFOUND);
	cr_assert_eq(pid, 12345);
	cr_assert_eq(fdn_lookup_view(s, "absent", 6, see_cb, &v), FDN_ENOTFOUND);
	cr_assert_eq(v.calls, 0);
	/* The callback's value is returned. */
	v.ret = 77;
	cr_assert_eq(fdn_lookup_view(s, "0", 1, see_cb, &v), 77);
	cr_assert_eq(v.calls, 1);
	v.ret = FDN_EEXISTS;
	cr_assert_eq(fdn_lookup_view(s, "0", 1, see_cb, &v), FDN_EEXISTS);
	/* Bad input. */
	memset(key, 'x', sizeof(key));
	cr_assert_eq(fdn_whereis(s, key, 0, &pid), FDN_EINVKEY);
	cr_assert_eq(fdn_whereis(s, key, FDN_REG_KEY_MAX + 1, &pid), FDN_EINVKEY);
	cr_assert_eq(fdn_lookup_view(s, key, 0, see_cb, &v), FDN_EINVKEY);
	cr_assert_eq(fdn_lookup_view(s, key, FDN_REG_KEY_MAX + 1, see_cb, &v), FDN_EINVKEY);
	cr_assert_eq(fdn_whereis(s, "0", 1, NULL), FDN_EINVAL);
	cr_assert_eq(fdn_lookup_view(s, "0", 1, NULL, NULL), FDN_EINVAL);
	cr_assert_eq(fdn_whereis_flags(s, "0", 1, FDN_REG_REPLACE, &pid), FDN_EINVAL);
	cr_assert_eq(fdn_lookup_view_flags(s, "0", 1, FDN_REG_IF_PRESENT, see_cb, &v), FDN_EINVAL);
	/* A read-only handle: copies taken under the block's state word. */
	fdn_segment *ro;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &ro), 0);
	for (int i = 0; i < 200; i += 17) {
		snprintf(key, sizeof(key), "%0*d", i + 1, i);
		assert_agree(ro, key, getpid());
	}
	cr_assert_eq(fdn_whereis(ro, "absent", 6, &pid), FDN_ENOTFOUND);
	fdn_segment_detach(ro);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* Writes from inside a view callback: the callback's section is its
 * caller's own, so once the deferred-free list is full the next retiring
 * write is refused with FDN_EINREAD (not FDN_EREENTERED, which is for a
 * signal handler that interrupted a call), and refused writes change
 * nothing. */
struct churn {
	fdn_segment *s;
	int done; /* register+unregister pairs that went through */
	int r;    /* the first refusal */
	char key[32];
};

static int churn_cb(void *arg, const struct fdn_entry_view *e)
{
	(void)e;
	struct churn *c = arg;
	for (int i = 0; i < 1000 && c->r == 0; i++) {
		snprintf(c->key, sizeof(c->key), "in-cb-%d", i);
		c->r = fdn_register(c->s, c->key, strlen(c->key), getpid(), NULL, 0, 0, NULL);
		if (c->r == 0 && (c->r = fdn_unregister(c->s, c->key, strlen(c->key))) == 0)
			c->done++;
	}
	return 0;
}

Test(lookup, writes_inside_a_view_callback_end_with_einread)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	cr_assert_eq(fdn_register(s, "anchor", 6, getpid(), NULL, 0, 0, NULL), 0);
	struct churn c = {.s = s};
	cr_assert_eq(fdn_lookup_view(s, "anchor", 6, churn_cb, &c), 0);
	cr_assert_eq(c.r, FDN_EINREAD, "%s", fdn_errname(c.r));
	cr_assert_gt(c.done, 0, "some writes fit before the list is full");
	cr_assert_lt(c.done, 1000);
	/* The refused write changed nothing: its key is there or not, as
	 * before the call; outside the section the list is flushed. */
	pid_t pid;
	int left = fdn_whereis(s, c.key, strlen(c.key), &pid) == 0;
	cr_assert_eq(fdn_count(s), 1 + left);
	if (left)
		cr_assert_eq(fdn_unregister(s, c.key, strlen(c.key)), 0);
	cr_assert_eq(fdn_register(s, "after", 5, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_unregister(s, "after", 5), 0);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(lookup, check_alive_and_a_dead_unreaped_owner)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	pid_t p = t_fork();
	if (p == 0) {
		pause();
		_exit(0);
	}
	struct fdn_attr a = {.name = "role", .type = FDN_ATTR_STRING, .v.s = "child"};
	cr_assert_eq(fdn_register(s, "child", 5, p, &a, 1, 0, NULL), 0);
	assert_agree(s, "child", p);
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	/* No reaper: still visible, unless the kernel is asked. */
	pid_t pid = 0;
	struct seen v = {0};
	cr_assert_eq(fdn_whereis(s, "child", 5, &pid), 0);
	cr_assert_eq(pid, p);
	cr_assert_eq(fdn_whereis_flags(s, "child", 5, FDN_REG_CHECK_ALIVE, &pid), FDN_ENOTFOUND);
	cr_assert_eq(fdn_lookup_view_flags(s, "child", 5, 0, see_cb, &v), 0);
	cr_assert_eq(fdn_lookup_view_flags(s, "child", 5, FDN_REG_CHECK_ALIVE, see_cb, &v),
		     FDN_ENOTFOUND);
	cr_assert_eq(v.calls, 1, "not called for a dead owner");
	cr_assert_eq(fdn_lookup(s, "child", 5, FDN_REG_CHECK_ALIVE, NULL), FDN_ENOTFOUND);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* Reads from inside the callback: the section nests. */
struct nest {
	fdn_segment *s;
	pid_t inner_pid;
	int inner_r, view_r;
	struct seen inner;
};

static int nest_cb(void *arg, const struct fdn_entry_view *e)
{
	struct nest *n = arg;
	(void)e;
	n->inner_r = fdn_whereis(n->s, "b", 1, &n->inner_pid);
	n->view_r = fdn_lookup_view(n->s, "b", 1, see_cb, &n->inner);
	return 0;
}

Test(lookup, reads_inside_the_callback)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	cr_assert_eq(fdn_register(s, "a", 1, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_register(s, "b", 1, getpid(), NULL, 0, 0, NULL), 0);
	struct nest n = {.s = s};
	cr_assert_eq(fdn_lookup_view(s, "a", 1, nest_cb, &n), 0);
	cr_assert_eq(n.inner_r, 0);
	cr_assert_eq(n.inner_pid, getpid());
	cr_assert_eq(n.view_r, 0);
	cr_assert_eq(n.inner.calls, 1);
	cr_assert_str_eq(n.inner.key, "b");
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* n keys ("k-<i>") of n different groups of 64 main-table buckets, each
 * registered by this process: one owner reference per group.  The keys
 * into keys[n][16], the groups into groups[n]. */
static void register_in_groups(fdn_segment *s, int n, char (*keys)[16], uint64_t *groups)
{
	int have = 0;
	for (int i = 0; have < n && i < 100000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k-%d", i);
		uint64_t g = (fdn__ht_hash(s, 0, k, strlen(k)) & s->bucket_mask[0]) / 64;
		bool seen = false;
		for (int j = 0; j < have && !seen; j++)
			seen = groups[j] == g;
		if (seen)
			continue;
		groups[have] = g;
		snprintf(keys[have++], 16, "%s", k);
	}
	cr_assert_eq(have, n);
	for (int i = 0; i < n; i++)
		cr_assert_eq(fdn_register(s, keys[i], strlen(keys[i]), getpid(), NULL, 0, 0, NULL),
			     0);
	cr_assert_eq(fdn__ht_count(s, 1), n, "one owner reference per group");
}

/* The unregister of the process's last entry k removes every reference
 * kept; the segment goes. */
static void last_unregister_then_destroy(fdn_segment *s, const char *name, const char *k)
{
	cr_assert_eq(fdn_unregister(s, k, strlen(k)), 0);
	cr_assert_eq(fdn__ht_count(s, 1), 0, "%lld references left after the last entry",
		     (long long)fdn__ht_count(s, 1));
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
}

/* An unregister keeps its owner's reference to the entry's group while the
 * process holds other entries (no walk of the group to see whether it is
 * still needed); the unregister that leaves it none removes every
 * reference kept.  The checker takes a kept reference for what it is. */
Test(lookup, owner_references_kept_while_entries_are_held)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	/* Three keys in three different groups of 64 buckets. */
	char keys[3][16];
	uint64_t groups[3];
	register_in_groups(s, 3, keys, groups);
	cr_assert_eq(fdn_unregister(s, keys[1], strlen(keys[1])), 0);
	cr_assert_eq(fdn__ht_count(s, 1), 3, "the reference kept while others are held");
	t_assert_all_clean(s);
	/* Registered again: the kept reference serves, none is added. */
	cr_assert_eq(fdn_register(s, keys[1], strlen(keys[1]), getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn__ht_count(s, 1), 3);
	cr_assert_eq(fdn_unregister(s, keys[1], strlen(keys[1])), 0);
	cr_assert_eq(fdn_unregister(s, keys[0], strlen(keys[0])), 0);
	cr_assert_eq(fdn__ht_count(s, 1), 3);
	t_assert_all_clean(s);
	last_unregister_then_destroy(s, name, keys[2]);
}

/* Kept references are bounded by the groups, not by a count: entries in
 * 300 groups (more than the 64 a handle once noted, past which an
 * unregister walked its group), all but one unregistered, keep all 300;
 * the last unregister removes them. */
Test(lookup, owner_references_kept_in_every_group)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 100000, 0);
	enum { NG = 300 };
	static char keys[NG][16];
	static uint64_t groups[NG];
	register_in_groups(s, NG, keys, groups);
	for (int i = 1; i < NG; i++)
		cr_assert_eq(fdn_unregister(s, keys[i], strlen(keys[i])), 0);
	cr_assert_eq(fdn__ht_count(s, 1), NG, "%lld references: all kept while one entry is held",
		     (long long)fdn__ht_count(s, 1));
	t_assert_all_clean(s);
	last_unregister_then_destroy(s, name, keys[0]);
}

/* A registry entry with a 14-byte key and 64 bytes of attributes takes one
 * 128-byte block; its owner has one reference (a 64-byte block) per group
 * of 64 main-table buckets holding its entries. */
Test(lookup, an_entry_takes_128_bytes_and_its_owner_one_reference_per_group)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	char val[64];
	struct fdn_attr a = {.name = "meta", .type = FDN_ATTR_STRING, .v.s = val};
	memset(val, 'm', sizeof(val));
	val[64 - 2 - 4 - 4 - 1 - 1] = 0; /* count, header, name, NUL, value NUL */
	unsigned char enc[FDN_ATTRS_MAX];
	cr_assert_eq(fdn_attrs_encode(&a, 1, enc, sizeof(enc)), 64);
	struct fdn_segment_stats before, after;
	cr_assert_eq(fdn_segment_stats(s, &before), 0);
	bool group[4096] = {false};
	unsigned groups = 0;
	cr_assert_leq(s->bucket_mask[0] + 1, 64u * 4096);
	for (int i = 0; i < 100; i++) {
		char key[16];
		snprintf(key, sizeof(key), "agent-%08d", i);
		cr_assert_eq(strlen(key), 14);
		cr_assert_eq(fdn_register(s, key, 14, getpid(), &a, 1, 0, NULL), 0);
		uint64_t g = (fdn__ht_hash(s, 0, key, 14) & s->bucket_mask[0]) / 64;
		groups += !group[g];
		group[g] = true;
	}
	/* Each register writes the owner reference twice (before and after
	 * the entry): the first copies wait in our limbo; free them. */
	struct fdn__thread *t;
	cr_assert_eq(fdn__thread_get(s, &t), 0);
	cr_assert_eq(fdn__limbo_flush(t), 0);
	cr_assert_eq(fdn_segment_stats(s, &after), 0);
	cr_assert_eq(after.block_bytes_used - before.block_bytes_used, 100u * 128 + groups * 64u,
		     "%llu bytes, %llu blocks",
		     (unsigned long long)(after.block_bytes_used - before.block_bytes_used),
		     (unsigned long long)(after.blocks_used - before.blocks_used));
	cr_assert_eq(after.blocks_used - before.blocks_used, 100u + groups);
	cr_assert_lt(groups, 100u, "entries share groups");
	/* Unregistered: every block back, the references with the entries. */
	for (int i = 0; i < 100; i++) {
		char key[16];
		snprintf(key, sizeof(key), "agent-%08d", i);
		cr_assert_eq(fdn_unregister(s, key, 14), 0);
	}
	cr_assert_eq(fdn__limbo_flush(t), 0);
	struct fdn_segment_stats empty;
	cr_assert_eq(fdn_segment_stats(s, &empty), 0);
	cr_assert_eq(empty.blocks_used, before.blocks_used);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/*
 * Many views while another process updates the entry: every view is one
 * consistent version (lc_version_of), versions never go back for one
 * reader, and the bytes a callback was handed do not change while it runs
 * (copied at entry, compared again after a pause inside the callback).
 */
#define UPDATES 3000
#define READERS 2

struct torn {
	_Atomic uint64_t views, torn, backwards, moved, missing;
};

struct reader {
	int64_t last;
	struct torn *t;
	unsigned spin;
};

static int check_cb(void *arg, const struct fdn_entry_view *e)
{
	struct reader *r = arg;
	unsigned char copy[FDN_ATTRS_MAX];
	uint32_t len = e->attrs_len;
	memcpy(copy, e->attrs, len);
	int64_t ver = lc_version_of(e->attrs, len);
	atomic_fetch_add(&r->t->views, 1);
	if (ver < 0)
		atomic_fetch_add(&r->t->torn, 1);
	else if (ver < r->last)
		atomic_fetch_add(&r->t->backwards, 1);
	else
		r->last = ver;
	/* Stay inside a while: the writer goes on replacing the entry. */
	for (volatile unsigned k = 0; k < r->spin; k++)
		;
	if (e->attrs_len != len || memcmp(copy, e->attrs, len) != 0)
		atomic_fetch_add(&r->t->moved, 1);
	return 0;
}

/* Read until the last version is seen, or *stop. */
static void read_until(fdn_segment *s, const char *key, struct reader *r, _Atomic int *stop)
{
	while (r->last < UPDATES && !atomic_load(stop)) {
		int rc = fdn_lookup_view(s, key, strlen(key), check_cb, r);
		if (rc == FDN_ENOTFOUND)
			atomic_fetch_add(&r->t->missing, 1);
		else if (rc != 0)
			atomic_fetch_add(&r->t->torn, 1);
	}
}

Test(lookup, views_never_see_a_torn_entry_while_another_process_updates, .timeout = 300)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	fdn_segment *s = t_create_reaped(name, 1000, 64);
	struct torn *t = t_shared(sizeof(*t));
	_Atomic int *stop = t_shared(sizeof(*stop));
	pid_t w = spawn_child("update", name, "torn-key", UPDATES);
	/* Wait for the first version. */
	pid_t holder = 0;
	for (uint64_t end = t_mono_ms() + 60000;
	     fdn_whereis(s, "torn-key", 8, &holder) != 0 && t_mono_ms() < end;)
		t_sleep_ms(2);
	cr_assert_eq(holder, w, "the writer registered");
	pid_t readers[READERS];
	for (int i = 0; i < READERS; i++) {
		readers[i] = t_fork();
		if (readers[i] == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			struct reader r = {-1, t, 200u * (unsigned)i};
			read_until(c, "torn-key", &r, stop);
			fdn_segment_detach(c);
			_exit(r.last == UPDATES ? 0 : 3);
		}
	}
	/* The test's own process reads too, until the last version; the
	 * writer then holds its entry until it is killed. */
	struct reader r = {-1, t, 1000};
	uint64_t deadline = t_mono_ms() + 240000;
	int st = 0;
	while (r.last < UPDATES && t_mono_ms() < deadline) {
		if (waitpid(w, &st, WNOHANG) == w)
			cr_assert_fail("the writer ended: status %#x", st);
		for (int k = 0; k < 64; k++)
			fdn_lookup_view(s, "torn-key", 8, check_cb, &r);
	}
	if (r.last < UPDATES)
		atomic_store(stop, 1);
	for (int i = 0; i < READERS; i++)
		cr_assert(t_wait_ok(readers[i]), "reader %d failed or saw no last version", i);
	cr_log_info("%llu views, %llu missing", (unsigned long long)atomic_load(&t->views),
		    (unsigned long long)atomic_load(&t->missing));
	cr_assert_eq(r.last, UPDATES, "the last version was seen");
	cr_assert_eq(atomic_load(&t->torn), 0, "torn views");
	cr_assert_eq(atomic_load(&t->backwards), 0, "a version went back");
	cr_assert_eq(atomic_load(&t->moved), 0, "a view changed during its callback");
	cr_assert_eq(atomic_load(&t->missing), 0, "an updated entry was missing");
	/* The last version, by all three calls. */
	struct seen v = {0};
	cr_assert_eq(fdn_lookup_view(s, "torn-key", 8, see_cb, &v), 0);
	cr_assert_eq(lc_version_of(v.attrs, v.attrs_len), UPDATES);
	assert_agree(s, "torn-key", w);
	/* The writer killed: the reaper takes its entry. */
	kill(w, SIGKILL);
	waitpid(w, NULL, 0);
	for (uint64_t end = t_mono_ms() + 60000;
	     fdn_whereis(s, "torn-key", 8, &holder) == 0 && t_mono_ms() < end;)
		t_sleep_ms(2);
	cr_assert_eq(fdn_whereis(s, "torn-key", 8, &holder), FDN_ENOTFOUND);
	cr_assert_eq(fdn_lookup(s, "torn-key", 8, 0, NULL), FDN_ENOTFOUND);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/*
 * A kill storm: processes (lookup_child churn) register and unregister
 * keys named after their pid and are SIGKILLed at random points.  Every
 * answer of fdn_whereis names the key's own process; fdn_lookup agrees
 * with it whenever both find the entry; once the storm is over and the
 * reaper has caught up, the dead processes' keys are gone for both and the
 * segment checks clean.
 */
#define STORM_KILLS 40
#define STORM_KEYS  20

struct storm {
	_Atomic uint64_t answers, found, wrong, disagree;
};

/* Ask about every key p may hold; returns how many were found. */
static int probe(fdn_segment *s, pid_t p, struct storm *st)
{
	int found = 0;
	char key[64];
	for (int j = 0; j < STORM_KEYS; j++) {
		snprintf(key, sizeof(key), "ks-%d-%d", (int)p, j);
		size_t kl = strlen(key);
		pid_t w1 = 0, w2 = 0;
		struct fdn_entry e;
		int r1 = fdn_whereis(s, key, kl, &w1);
		int rl = fdn_lookup(s, key, kl, 0, &e);
		int r2 = fdn_whereis(s, key, kl, &w2);
		atomic_fetch_add(&st->answers, 1);
		if ((r1 && r1 != FDN_ENOTFOUND) || (r2 && r2 != FDN_ENOTFOUND) ||
		    (rl && rl != FDN_ENOTFOUND) || (r1 == 0 && w1 != p) || (r2 == 0 && w2 != p) ||
		    (rl == 0 && e.pid != p))
			atomic_fetch_add(&st->wrong, 1);
		/* Found before and after the lookup: the lookup must find it
		 * too (a key is not re-registered within one probe: its
		 * owner's loop takes longer than three lookups... unless it
		 * is unregistered and registered again in between, which
		 * whereis cannot tell; count a disagreement only when the
		 * owner is dead, when nothing can re-register it). */
		if (r1 == 0 && r2 == 0 && rl != 0 && kill(p, 0) != 0)
			atomic_fetch_add(&st->disagree, 1);
		if (r1 == 0) {
			atomic_fetch_add(&st->found, 1);
			found++;
		}
	}
	return found;
}

Test(lookup, whereis_agrees_with_lookup_under_a_kill_storm, .timeout = 300)
{
	char name[128];
	t_name(name, sizeof(name), "lk");
	fdn_segment *s = t_create_reaped(name, 4096, 128);
	struct storm *st = t_shared(sizeof(*st));
	pid_t all[STORM_KILLS + 2];
	int n = 0;
	unsigned seed = (unsigned)getpid();
	pid_t live[2];
	live[0] = all[n++] = spawn_child("churn", name, "ks", STORM_KEYS);
	live[1] = all[n++] = spawn_child("churn", name, "ks", STORM_KEYS);
	for (int k = 0; k < STORM_KILLS; k++) {
		int victim = k % 2;
		/* A random moment, once the victim has registered something
		 * (an exec'd child under ASan on a busy machine may take a
		 * while to start). */
		uint64_t until = t_mono_ms() + 5 + (uint64_t)(rand_r(&seed) % 40);
		uint64_t deadline = t_mono_ms() + 120000;
		bool seen = false;
		while (t_mono_ms() < until || !seen) {
			seen |= probe(s, live[victim], st) > 0;
			probe(s, live[1 - victim], st);
			cr_assert_lt(t_mono_ms(), deadline, "churn child %d registered nothing",
				     (int)live[victim]);
		}
		kill(live[victim], SIGKILL);
		int ws;
		waitpid(live[victim], &ws, 0);
		cr_assert(WIFSIGNALED(ws), "churn child %d failed: status %#x", (int)live[victim],
			  ws);
		probe(s, live[victim], st); /* dead: only the reaper's pace decides */
		live[victim] = all[n++] = spawn_child("churn", name, "ks", STORM_KEYS);
	}
	for (int v = 0; v < 2; v++) {
		kill(live[v], SIGKILL);
		waitpid(live[v], NULL, 0);
	}
	/* The reaper catches up: every key of every process gone, for both. */
	uint64_t deadline = t_mono_ms() + 60000;
	while (fdn_count(s) != 0 && t_mono_ms() < deadline)
		t_sleep_ms(10);
	cr_assert_eq(fdn_count(s), 0, "entries of dead processes left");
	for (int i = 0; i < n; i++) {
		char key[64];
		for (int j = 0; j < STORM_KEYS; j++) {
			snprintf(key, sizeof(key), "ks-%d-%d", (int)all[i], j);
			pid_t w = 0;
			cr_assert_eq(fdn_whereis(s, key, strlen(key), &w), FDN_ENOTFOUND, "%s",
				     key);
			cr_assert_eq(fdn_lookup(s, key, strlen(key), 0, NULL), FDN_ENOTFOUND, "%s",
				     key);
		}
	}
	cr_log_info("%llu answers, %llu found", (unsigned long long)atomic_load(&st->answers),
		    (unsigned long long)atomic_load(&st->found));
	cr_assert_gt(atomic_load(&st->found), 0, "the storm registered something");
	cr_assert_eq(atomic_load(&st->wrong), 0, "an answer named another process");
	cr_assert_eq(atomic_load(&st->disagree), 0, "whereis found what lookup did not");
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
