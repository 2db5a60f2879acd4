/*
 * test_registry.c - the registry with a real reaper: real processes,
 * real SIGKILL, and the reaper itself killed.
 */
#include "common.h"
#include "lib/internal.h"
#include "lib/registry_int.h"

#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <pthread.h>
#include <time.h>

/* A segment whose reaper (started by the library on create) is running. */
static fdn_segment *reg_create(char *name, size_t cap, uint64_t entries)
{
	t_name(name, cap, "reg");
	fdn_segment *s = t_create(name, entries, 0);
	for (int i = 0; i < 500 && fdn_reaper_holder(s) == 0; i++)
		usleep(10000);
	cr_assert_neq(fdn_reaper_holder(s), 0, "the library started a reaper");
	return s;
}

static void reg_destroy(fdn_segment *s, const char *name)
{
	pid_t reaper = fdn_reaper_holder(s);
	fdn_segment_detach(s);
	cr_assert_eq(fdn_segment_destroy(name), 0);
	/* destroy stops the reaper */
	for (int i = 0; i < 500 && reaper > 0 && kill(reaper, 0) == 0; i++)
		usleep(10000);
}

static int reg(fdn_segment *s, const char *key, pid_t pid, const char *cap, const char *health)
{
	struct fdn_attr a[2] = {{.name = "capability", .type = FDN_ATTR_STRING, .v.s = cap},
				{.name = "health_status", .type = FDN_ATTR_STRING, .v.s = health}};
	return fdn_register(s, key, strlen(key), pid, a, 2, 0, NULL);
}

static pid_t lookup_pid(fdn_segment *s, const char *key)
{
	struct fdn_entry e;
	return fdn_lookup(s, key, strlen(key), 0, &e) == 0 ? e.pid : 0;
}

/* Children still running when a test ends (it failed): killed by fini. */
static pid_t spawned[128];
static int nspawned;

static void kill_spawned(void)
{
	for (int i = 0; i < nspawned; i++)
		if (spawned[i] > 0)
			kill(spawned[i], SIGKILL);
}

TestSuite(registry, .fini = kill_spawned);

/* A child that attaches, registers `key` for itself, reports, and waits. */
static pid_t agent(const char *name, const char *key, _Atomic int *ready)
{
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c) || reg(c, key, getpid(), "http", "ok"))
			_exit(2);
		atomic_fetch_add(ready, 1);
		pause();
		_exit(0);
	}
	if (nspawned < 128)
		spawned[nspawned++] = p;
	return p;
}

Test(registry, bad_input_changes_nothing)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	cr_assert_eq(reg(s, "keep", getpid(), "gpu", "ok"), 0);
	char k256[257];
	memset(k256, 'k', 256);
	k256[256] = 0;
	cr_assert_eq(fdn_register(s, "", 0, getpid(), NULL, 0, 0, NULL), FDN_EINVKEY);
	cr_assert_eq(fdn_register(s, k256, 256, getpid(), NULL, 0, 0, NULL), FDN_EINVKEY);
	cr_assert_eq(fdn_register(s, "x", 1, 0, NULL, 0, 0, NULL), FDN_EINVAL);
	struct fdn_attr bad = {.name = "", .type = FDN_ATTR_STRING, .v.s = "v"};
	cr_assert_eq(fdn_register(s, "x", 1, getpid(), &bad, 1, 0, NULL), FDN_EINVMETA);
	struct fdn_attr badtype = {.name = "t", .type = 9};
	cr_assert_eq(fdn_register(s, "x", 1, getpid(), &badtype, 1, 0, NULL), FDN_EINVMETA);
	static char big[5000];
	memset(big, 'b', 1000);
	const char *items[5] = {big, big, big, big, big};
	struct fdn_attr huge = {.name = "l", .type = FDN_ATTR_LIST, .v.list = {items, 5}};
	cr_assert_eq(fdn_register(s, "x", 1, getpid(), &huge, 1, 0, NULL), FDN_EINVMETA);
	cr_assert_eq(fdn_update_attributes(s, "keep", 4, &bad, 1), FDN_EINVMETA);
	struct fdn_criterion crit = {"capability", 99, {.type = FDN_ATTR_STRING, .v.s = "gpu"}};
	cr_assert_eq(fdn_query(s, &crit, 1, NULL, NULL), FDN_EINVCRIT);
	cr_assert_eq(fdn_lookup(s, "x", 1, 0, NULL), FDN_ENOTFOUND);
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(s, "keep", 4, 0, &e), 0);
	struct fdn_attr cap;
	cr_assert_eq(fdn_attrs_get(e.attrs, e.attrs_len, "capability", &cap), 0);
	cr_assert_str_eq(cap.v.s, "gpu");
	cr_assert_eq(fdn_count(s), 1);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

Test(registry, duplicates_replace_update_merge_unregister)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	pid_t holder = 0;
	cr_assert_eq(reg(s, "orders-db", getpid(), "sql", "ok"), 0);
	struct fdn_attr a = {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "kv"};
	cr_assert_eq(fdn_register(s, "orders-db", 9, getpid(), &a, 1, 0, &holder), FDN_EEXISTS);
	cr_assert_eq(holder, getpid());
	cr_assert_eq(fdn_register(s, "orders-db", 9, getpid(), &a, 1, FDN_REG_REPLACE, NULL), 0);
	struct fdn_attr v = {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "sql"};
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &v, NULL, NULL), 0,
		     "the replaced value left the index");
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &a, NULL, NULL), 1);
	struct fdn_attr node = {.name = "node", .type = FDN_ATTR_STRING, .v.s = "n1"};
	cr_assert_eq(fdn_merge_attributes(s, "orders-db", 9, &node, 1), 0);
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(s, "orders-db", 9, 0, &e), 0);
	cr_assert_eq(fdn_attrs_count(e.attrs, e.attrs_len), 2, "merge kept capability");
	cr_assert_eq(fdn_update_attributes(s, "orders-db", 9, &node, 1), 0);
	cr_assert_eq(fdn_lookup(s, "orders-db", 9, 0, &e), 0);
	cr_assert_eq(fdn_attrs_count(e.attrs, e.attrs_len), 1, "update replaced everything");
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &a, NULL, NULL), 0);
	cr_assert_eq(fdn_find_by_attribute(s, "node", &node, NULL, NULL), 1);
	cr_assert_eq(fdn_unregister(s, "orders-db", 9), 0);
	cr_assert_eq(fdn_unregister(s, "orders-db", 9), FDN_ENOTFOUND);
	cr_assert_eq(fdn_update_attributes(s, "orders-db", 9, &node, 1), FDN_ENOTFOUND);
	cr_assert_eq(fdn_count(s), 0);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

Test(registry, twenty_agents_ten_killed, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	_Atomic int *ready = t_shared(sizeof(int));
	pid_t pids[20];
	char keys[20][32];
	for (int i = 0; i < 20; i++) {
		snprintf(keys[i], sizeof(keys[i]), "agent-%02d", i);
		pids[i] = agent(name, keys[i], ready);
	}
	while (atomic_load(ready) < 20)
		usleep(1000);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(lookup_pid(s, keys[i]), pids[i]);
	for (int i = 0; i < 20; i += 2)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < 20; i += 2) {
		cr_assert_eq(fdn_watch(s, keys[i], strlen(keys[i]), false, 10000), 0,
			     "killed %s disappears", keys[i]);
		waitpid(pids[i], NULL, 0);
	}
	for (int i = 1; i < 20; i += 2)
		cr_assert_eq(lookup_pid(s, keys[i]), pids[i], "%s still resolves", keys[i]);
	cr_assert_eq(fdn_count(s), 10);
	/* Entries vanish before the reaper writes the graveyard (reaper.c). */
	for (int i = 0; i < 1000 && fdn_deaths(s) < 10; i++)
		usleep(10000);
	struct fdn_death d[32];
	int nd = fdn_graveyard(s, d, 32);
	cr_assert_geq(nd, 10);
	int killed = 0;
	for (int k = 0; k < nd; k++) {
		cr_log_info("death %llu: pid %d signal %d status %d entries %llu",
			    (unsigned long long)d[k].number, (int)d[k].pid, d[k].exit_signal,
			    d[k].exit_status, (unsigned long long)d[k].entries);
		killed += d[k].exit_signal == SIGKILL && d[k].entries == 1;
	}
	cr_assert_eq(killed, 10, "the graveyard holds the 10 kills with their entry");
	for (int i = 1; i < 20; i += 2) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	for (int i = 1; i < 20; i += 2)
		cr_assert_eq(fdn_watch(s, keys[i], strlen(keys[i]), false, 10000), 0);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

Test(registry, hundred_agents_exit_on_their_own, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	_Atomic int *ready = t_shared(sizeof(int));
	pid_t pids[100];
	char keys[100][32];
	for (int i = 0; i < 100; i++) {
		snprintf(keys[i], sizeof(keys[i]), "worker-%03d", i);
		pids[i] = t_fork();
		if (pids[i] == 0) {
			fdn_segment *c;
			srand((unsigned)getpid());
			if (fdn_segment_attach(name, 0, &c) ||
			    reg(c, keys[i], getpid(), "job", "ok"))
				_exit(2);
			atomic_fetch_add(ready, 1);
			usleep((useconds_t)(10000 + rand() % 90000));
			_exit(0); /* no detach: the reaper cleans up */
		}
	}
	for (int i = 0; i < 100; i++)
		cr_assert_eq(fdn_watch(s, keys[i], strlen(keys[i]), false, 20000), 0);
	for (int i = 0; i < 100; i++)
		cr_assert(t_wait_ok(pids[i]), "worker %d", i);
	cr_assert_eq(atomic_load(ready), 100);
	cr_assert_eq(fdn_count(s), 0);
	cr_assert_eq(reg(s, "after", getpid(), "x", "ok"), 0);
	cr_assert_eq(lookup_pid(s, "after"), getpid());
	reg_destroy(s, name);
}

Test(registry, registration_is_seen_at_once_from_another_process, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 2000);
	struct slot {
		_Atomic int done;
		_Atomic int seen_ok;
	} *sl = t_shared(sizeof(struct slot) * 20);
	for (int round = 0; round < 50; round++) {
		memset(sl, 0, sizeof(struct slot) * 20);
		/* An observer process checks each registration the moment it
		 * is reported. */
		pid_t obs = t_fork();
		if (obs == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			for (int i = 0; i < 20; i++) {
				while (atomic_load(&sl[i].done) == 0)
					;
				char k[32];
				snprintf(k, sizeof(k), "r%02d-%02d", round, i);
				int want = atomic_load(&sl[i].done);
				atomic_store(&sl[i].seen_ok, lookup_pid(c, k) == want ? 1 : -1);
			}
			fdn_segment_detach(c);
			_exit(0);
		}
		pid_t kids[20];
		for (int i = 0; i < 20; i++) {
			kids[i] = t_fork();
			if (kids[i] == 0) {
				fdn_segment *c;
				char k[32];
				snprintf(k, sizeof(k), "r%02d-%02d", round, i);
				if (fdn_segment_attach(name, 0, &c) ||
				    reg(c, k, getpid(), "a", "ok"))
					_exit(2);
				atomic_store(&sl[i].done, (int)getpid());
				while (atomic_load(&sl[i].seen_ok) == 0)
					usleep(100);
				fdn_segment_detach(c);
				_exit(0);
			}
		}
		for (int i = 0; i < 20; i++)
			cr_assert(t_wait_ok(kids[i]));
		cr_assert(t_wait_ok(obs));
		for (int i = 0; i < 20; i++)
			cr_assert_eq(atomic_load(&sl[i].seen_ok), 1, "round %d agent %d", round, i);
	}
	reg_destroy(s, name);
}

static void stats_now(fdn_segment *s, struct fdn_segment_stats *st)
{
	cr_assert_eq(fdn_segment_stats(s, st), 0);
}

Test(registry, register_unregister_cycles_leave_stats_unchanged, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	cr_assert_eq(reg(s, "warm", getpid(), "a", "ok"), 0); /* our reader slot exists */
	cr_assert_eq(fdn_unregister(s, "warm", 4), 0);
	struct fdn__thread *t;
	cr_assert_eq(fdn__thread_get(s, &t), 0);
	cr_assert_eq(fdn__limbo_flush(t), 0);
	struct fdn_segment_stats a, b;
	stats_now(s, &a);
	for (int i = 0; i < 50; i++) {
		struct fdn_attr at[2] = {{.name = "capability",
					  .type = FDN_ATTR_LIST,
					  .v.list = {(const char *const[]){"gpu", "http"}, 2}},
					 {.name = "node", .type = FDN_ATTR_STRING, .v.s = "n1"}};
		cr_assert_eq(fdn_register(s, "cycle", 5, getpid(), at, 2, 0, NULL), 0);
		cr_assert_eq(fdn_unregister(s, "cycle", 5), 0);
	}
	cr_assert_eq(fdn__limbo_flush(t), 0);
	stats_now(s, &b);
	cr_assert_eq(b.tables[0].entries, a.tables[0].entries);
	cr_assert_eq(b.tables[1].entries, a.tables[1].entries, "no index entry left");
	cr_assert_eq(b.blocks_used, a.blocks_used, "no block left");
	cr_assert_eq(b.procs_used, a.procs_used, "no slot left");
	/* Not threads_used: the reaper takes its reader slot lazily, when it
	 * first needs one, which may fall between the two snapshots. */
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

struct collect {
	int n;
	char keys[1000][16];
};

static int collect_cb(void *arg, const struct fdn_entry_view *e)
{
	struct collect *c = arg;
	memcpy(c->keys[c->n], e->key, e->key_len);
	c->keys[c->n][e->key_len] = 0;
	c->n++;
	return 0;
}

static int cmpstr(const void *a, const void *b)
{
	return strcmp(a, b);
}

Test(registry, query_and_find_agree_with_brute_force, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 2000);
	static const char *caps[] = {"gpu", "http", "sql", "kv"};
	static const char *health[] = {"ok", "degraded", "down"};
	for (int i = 0; i < 1000; i++) {
		char k[16];
		snprintf(k, sizeof(k), "e%04d", i);
		const char *items[2] = {caps[i % 4], caps[(i / 4) % 4]};
		struct fdn_attr at[4] = {
		    {.name = "capability", .type = FDN_ATTR_LIST, .v.list = {items, 2}},
		    {.name = "health_status", .type = FDN_ATTR_STRING, .v.s = health[i % 3]},
		    {.name = "load", .type = FDN_ATTR_INT, .v.i = i % 100},
		    {.name = "weight", .type = FDN_ATTR_DOUBLE, .v.d = (i % 7) * 0.5}};
		cr_assert_eq(fdn_register(s, k, strlen(k), getpid(), at, 4, 0, NULL), 0);
	}
	/* find: capability = gpu (indexed, list elements) */
	static struct collect got, want;
	memset(&got, 0, sizeof(got));
	memset(&want, 0, sizeof(want));
	struct fdn_attr gpu = {.type = FDN_ATTR_STRING, .v.s = "gpu"};
	int n = fdn_find_by_attribute(s, "capability", &gpu, collect_cb, &got);
	for (int i = 0; i < 1000; i++)
		if (i % 4 == 0 || (i / 4) % 4 == 0)
			snprintf(want.keys[want.n++], 16, "e%04d", i);
	cr_assert_eq(n, want.n);
	qsort(got.keys, (size_t)got.n, 16, cmpstr);
	for (int i = 0; i < want.n; i++)
		cr_assert_str_eq(got.keys[i], want.keys[i]);
	/* query: healthy gpu workers with load >= 50 and weight < 2 */
	memset(&got, 0, sizeof(got));
	memset(&want, 0, sizeof(want));
	struct fdn_criterion c[4] = {
	    {"capability", FDN_CMP_EQ, {.type = FDN_ATTR_STRING, .v.s = "gpu"}},
	    {"health_status",
	     FDN_CMP_IN,
	     {.type = FDN_ATTR_LIST, .v.list = {(const char *const[]){"ok", "degraded"}, 2}}},
	    {"load", FDN_CMP_GTE, {.type = FDN_ATTR_INT, .v.i = 50}},
	    {"weight", FDN_CMP_LT, {.type = FDN_ATTR_DOUBLE, .v.d = 2.0}}};
	n = fdn_query(s, c, 4, collect_cb, &got);
	for (int i = 0; i < 1000; i++)
		if ((i % 4 == 0 || (i / 4) % 4 == 0) && i % 3 != 2 && i % 100 >= 50 &&
		    (i % 7) * 0.5 < 2.0)
			snprintf(want.keys[want.n++], 16, "e%04d", i);
	cr_assert_eq(n, want.n, "query found %d, brute force %d", n, want.n);
	qsort(got.keys, (size_t)got.n, 16, cmpstr);
	for (int i = 0; i < want.n; i++)
		cr_assert_str_eq(got.keys[i], want.keys[i]);
	/* a non-indexed attribute: the same answer by scanning */
	memset(&got, 0, sizeof(got));
	struct fdn_attr load7 = {.type = FDN_ATTR_INT, .v.i = 7};
	cr_assert_eq(fdn_find_by_attribute(s, "load", &load7, collect_cb, &got), 10);
	cr_assert_eq(fdn_count(s), 1000);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

Test(registry, supervisor_registers_its_children, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	pid_t kids[10];
	char keys[10][32];
	for (int i = 0; i < 10; i++) {
		kids[i] = t_fork();
		if (kids[i] == 0) {
			pause();
			_exit(0);
		}
		spawned[nspawned++] = kids[i];
		snprintf(keys[i], sizeof(keys[i]), "child-%d", i);
		cr_assert_eq(reg(s, keys[i], kids[i], "work", "ok"), 0);
		cr_assert_eq(lookup_pid(s, keys[i]), kids[i]);
	}
	for (int i = 0; i < 10; i++) {
		kill(kids[i], SIGKILL);
		cr_assert_eq(fdn_watch(s, keys[i], strlen(keys[i]), false, 10000), 0);
		waitpid(kids[i], NULL, 0);
		for (int j = i + 1; j < 10; j++)
			cr_assert_eq(lookup_pid(s, keys[j]), kids[j]);
	}
	cr_assert_eq(fdn_count(s), 0);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/* A registration for a child claims a slot held for the child's pid; the
 * reaper releases such slots once idle (no entry left).  A releaser in
 * another process, releasing every idle slot in a loop, must never make a
 * registration that reported success lose its entry -- the release can
 * fall between the claim and the entry, and the registration then starts
 * again.  (It used to register for owner word 0 in that window, drop the
 * entry as ownerless, and return 0.) */
Test(registry, registrations_for_children_survive_a_releaser, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	enum { KIDS = 16, ROUNDS = 40 };
	pid_t kids[KIDS];
	char keys[KIDS][32];
	for (int i = 0; i < KIDS; i++) {
		kids[i] = t_fork();
		if (kids[i] == 0) {
			pause();
			_exit(0);
		}
		spawned[nspawned++] = kids[i];
		snprintf(keys[i], sizeof(keys[i]), "child-%d", i);
	}
	_Atomic int *stop = t_shared(sizeof(int));
	_Atomic int *ready = t_shared(sizeof(int));
	pid_t rel = t_fork();
	if (rel == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(2);
		atomic_store(ready, 1);
		while (!atomic_load(stop))
			for (uint32_t i = 0; i < c->nprocs; i++)
				fdn__registry_release_idle(c, i, atomic_load(&c->procs[i].word));
		fdn_segment_detach(c);
		_exit(0);
	}
	spawned[nspawned++] = rel;
	t_wait_ready(ready, rel);
	/* FDN_EBUSY (64 attempts each released under it: this releaser loops
	 * without pause, the reaper releases a slot once a tick) registers
	 * nothing; every success must stay. */
	int ok = 0, busy = 0;
	for (int round = 0; round < ROUNDS; round++) {
		bool done[KIDS];
		for (int i = 0; i < KIDS; i++) {
			int rr = reg(s, keys[i], kids[i], "work", "ok");
			cr_assert(rr == 0 || rr == FDN_EBUSY, "round %d: register %s: %s", round,
				  keys[i], fdn_errname(rr));
			done[i] = rr == 0;
			ok += done[i];
			busy += !done[i];
		}
		for (int i = 0; i < KIDS; i++) {
			pid_t got = lookup_pid(s, keys[i]);
			if (done[i])
				cr_assert_eq(got, kids[i], "round %d: %s lost", round, keys[i]);
			else
				cr_assert_eq(got, 0, "round %d: %s: FDN_EBUSY, yet registered",
					     round, keys[i]);
		}
		/* Unregistered: each slot is idle again, and released. */
		for (int i = 0; i < KIDS; i++)
			cr_assert_eq(
			    fdn_unregister_flags(s, keys[i], strlen(keys[i]), FDN_REG_IF_PRESENT),
			    0);
	}
	cr_log_info("%d registered, %d FDN_EBUSY", ok, busy);
	cr_assert_geq(ok, ROUNDS * KIDS / 2, "most registrations succeed (%d of %d)", ok,
		      ROUNDS * KIDS);
	atomic_store(stop, 1);
	int st;
	cr_assert_eq(waitpid(rel, &st, 0), rel);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	for (int i = 0; i < KIDS; i++) {
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
	}
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/* A supervisor stops its child and unregisters it; the reaper was faster:
 * plain unregister says FDN_ENOTFOUND, FDN_REG_IF_PRESENT says 0. */
Test(registry, unregister_if_present_after_the_reaper, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	pid_t kid = t_fork();
	if (kid == 0) {
		pause();
		_exit(0);
	}
	spawned[nspawned++] = kid;
	cr_assert_eq(reg(s, "worker", kid, "work", "ok"), 0);
	cr_assert_eq(reg(s, "other", getpid(), "work", "ok"), 0);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	cr_assert_eq(fdn_watch(s, "worker", 6, false, 10000), 0, "the reaper removed it");
	cr_assert_eq(fdn_unregister(s, "worker", 6), FDN_ENOTFOUND);
	cr_assert_eq(fdn_unregister_flags(s, "worker", 6, FDN_REG_IF_PRESENT), 0);
	/* Present: removed as by fdn_unregister. */
	cr_assert_eq(fdn_unregister_flags(s, "other", 5, FDN_REG_IF_PRESENT), 0);
	cr_assert_eq(lookup_pid(s, "other"), 0);
	cr_assert_eq(fdn_unregister_flags(s, "other", 5, 0), FDN_ENOTFOUND);
	cr_assert_eq(fdn_unregister_flags(s, "other", 5, FDN_REG_CHECK_ALIVE), FDN_EINVAL);
	cr_assert_eq(fdn_unregister_flags(s, "", 0, FDN_REG_IF_PRESENT), FDN_EINVKEY);
	/* The process-local registry: the same. */
	cr_assert_eq(fdn_register(NULL, "loc", 3, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_unregister_flags(NULL, "loc", 3, FDN_REG_IF_PRESENT), 0);
	cr_assert_eq(fdn_unregister(NULL, "loc", 3), FDN_ENOTFOUND);
	cr_assert_eq(fdn_unregister_flags(NULL, "loc", 3, FDN_REG_IF_PRESENT), 0);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

static int collect_keys(void *arg, const struct fdn_entry_view *e)
{
	char *out = arg;
	size_t n = strlen(out);
	snprintf(out + n, 256 - n, "%.*s,", (int)e->key_len, (const char *)e->key);
	return 0;
}

static bool keep_all(void *arg, const struct fdn_entry_view *e)
{
	return true;
}

/* Numbers in the index: an int and an integral double of the same value
 * share their index text, and the extremes of int64 are found.  Each find
 * of the indexed "capability" agrees with the same find of "zone", which
 * is not indexed and is answered by a scan comparing values. */
Test(registry, indexed_numbers_are_found_by_value, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	const struct fdn_attr vals[] = {
	    {.type = FDN_ATTR_INT, .v.i = 0},         {.type = FDN_ATTR_INT, .v.i = -1},
	    {.type = FDN_ATTR_INT, .v.i = 7},         {.type = FDN_ATTR_DOUBLE, .v.d = 7.0},
	    {.type = FDN_ATTR_DOUBLE, .v.d = 2.5},    {.type = FDN_ATTR_INT, .v.i = INT64_MIN},
	    {.type = FDN_ATTR_INT, .v.i = INT64_MAX}, {.type = FDN_ATTR_INT, .v.i = -1234567890123},
	};
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		struct fdn_attr a[2] = {vals[i], vals[i]};
		a[0].name = "capability";
		a[1].name = "zone";
		char k[16];
		snprintf(k, sizeof(k), "n%zu", i);
		cr_assert_eq(fdn_register(s, k, strlen(k), getpid(), a, 2, 0, NULL), 0, "%s", k);
	}
	cr_assert(fdn_attr_indexed(s, "capability"));
	cr_assert_not(fdn_attr_indexed(s, "zone"));
	const struct {
		struct fdn_attr v;
		int want;
	} finds[] = {
	    {{.type = FDN_ATTR_INT, .v.i = 7}, 2},
	    {{.type = FDN_ATTR_DOUBLE, .v.d = 7.0}, 2},
	    {{.type = FDN_ATTR_DOUBLE, .v.d = -0.0}, 1},
	    {{.type = FDN_ATTR_INT, .v.i = -1}, 1},
	    {{.type = FDN_ATTR_DOUBLE, .v.d = 2.5}, 1},
	    {{.type = FDN_ATTR_INT, .v.i = 2}, 0},
	    {{.type = FDN_ATTR_INT, .v.i = INT64_MIN}, 1},
	    {{.type = FDN_ATTR_INT, .v.i = INT64_MAX}, 1},
	    {{.type = FDN_ATTR_INT, .v.i = -1234567890123}, 1},
	    {{.type = FDN_ATTR_INT, .v.i = 1234567890123}, 0},
	};
	for (size_t i = 0; i < sizeof(finds) / sizeof(finds[0]); i++) {
		int by_index = fdn_find_by_attribute(s, "capability", &finds[i].v, NULL, NULL);
		int by_scan = fdn_find_by_attribute(s, "zone", &finds[i].v, NULL, NULL);
		cr_assert_eq(by_index, finds[i].want, "find %zu through the index: %d", i,
			     by_index);
		cr_assert_eq(by_scan, finds[i].want, "find %zu by a scan: %d", i, by_scan);
	}
	reg_destroy(s, name);
}

/* Entries of a dead owner nobody has reaped (no reaper here) are listed by
 * the plain reads, and left out by every read given FDN_REG_CHECK_ALIVE:
 * foreach, list, count, find_by_attribute (indexed and not), query; in the
 * segment and in the process-local registry. */
Test(registry, check_alive_leaves_out_dead_unreaped_owners, .timeout = 120)
{
	char name[128];
	t_name(name, sizeof(name), "reg");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	cr_assert_eq(reg(s, "live", getpid(), "gpu", "ok"), 0);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		struct fdn_attr z = {.name = "zone", .type = FDN_ATTR_STRING, .v.s = "a"};
		if (fdn_segment_attach(name, 0, &c) || reg(c, "dead-1", getpid(), "gpu", "ok") ||
		    reg(c, "dead-2", getpid(), "http", "ok") ||
		    fdn_register(c, "dead-3", 6, getpid(), &z, 1, 0, NULL))
			_exit(2);
		_exit(0); /* dies holding its entries */
	}
	cr_assert(t_wait_ok(p));
	const unsigned A = FDN_REG_CHECK_ALIVE;
	cr_assert_eq(fdn_count(s), 4, "not reaped: still counted");
	cr_assert_eq(fdn_count_flags(s, 0), 4);
	cr_assert_eq(fdn_count_flags(s, A), 1);
	char keys[256] = "";
	cr_assert_eq(fdn_foreach_flags(s, A, collect_keys, keys), 1);
	cr_assert_str_eq(keys, "live,");
	cr_assert_eq(fdn_foreach(s, NULL, NULL), 4);
	keys[0] = 0;
	cr_assert_eq(fdn_list_flags(s, A, keep_all, NULL, collect_keys, keys), 1);
	cr_assert_str_eq(keys, "live,");
	cr_assert_eq(fdn_list_flags(s, 0, keep_all, NULL, NULL, NULL), 4);
	struct fdn_attr gpu = {.type = FDN_ATTR_STRING, .v.s = "gpu"};
	cr_assert(fdn_attr_indexed(s, "capability"));
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &gpu, NULL, NULL), 2);
	keys[0] = 0;
	cr_assert_eq(fdn_find_by_attribute_flags(s, "capability", &gpu, A, collect_keys, keys), 1);
	cr_assert_str_eq(keys, "live,");
	struct fdn_attr za = {.type = FDN_ATTR_STRING, .v.s = "a"};
	cr_assert_not(fdn_attr_indexed(s, "zone"));
	cr_assert_eq(fdn_find_by_attribute_flags(s, "zone", &za, 0, NULL, NULL), 1);
	cr_assert_eq(fdn_find_by_attribute_flags(s, "zone", &za, A, NULL, NULL), 0);
	struct fdn_criterion ok = {
	    "health_status", FDN_CMP_EQ, {.type = FDN_ATTR_STRING, .v.s = "ok"}};
	cr_assert_eq(fdn_query(s, &ok, 1, NULL, NULL), 3);
	cr_assert_eq(fdn_query_flags(s, &ok, 1, A, NULL, NULL), 1);
	/* Bad flags. */
	cr_assert_eq(fdn_count_flags(s, FDN_REG_REPLACE), FDN_EINVAL);
	cr_assert_eq(fdn_foreach_flags(s, 1u << 9, NULL, NULL), FDN_EINVAL);
	cr_assert_eq(fdn_list_flags(s, FDN_REG_IF_PRESENT, NULL, NULL, NULL, NULL), FDN_EINVAL);
	cr_assert_eq(
	    fdn_find_by_attribute_flags(s, "capability", &gpu, FDN_REG_REPLACE, NULL, NULL),
	    FDN_EINVAL);
	cr_assert_eq(fdn_query_flags(s, &ok, 1, FDN_REG_REPLACE, NULL, NULL), FDN_EINVAL);
	/* A read-only handle asks the kernel too. */
	fdn_segment *ro;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &ro), 0);
	cr_assert_eq(fdn_count_flags(ro, A), 1);
	fdn_segment_detach(ro);
	/* The process-local registry: an entry for a pid that then dies. */
	pid_t q = t_fork();
	if (q == 0) {
		pause();
		_exit(0);
	}
	cr_assert_eq(fdn_register(NULL, "loc-dead", 8, q, NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_register(NULL, "loc-live", 8, getpid(), NULL, 0, 0, NULL), 0);
	kill(q, SIGKILL);
	waitpid(q, NULL, 0);
	cr_assert_eq(fdn_count(NULL), 2);
	cr_assert_eq(fdn_count_flags(NULL, A), 1);
	keys[0] = 0;
	cr_assert_eq(fdn_foreach_flags(NULL, A, collect_keys, keys), 1);
	cr_assert_str_eq(keys, "loc-live,");
	cr_assert_eq(fdn_list_flags(NULL, A, keep_all, NULL, NULL, NULL), 1);
	cr_assert_eq(fdn_query_flags(NULL, NULL, 0, A, NULL, NULL), 1);
	cr_assert_eq(fdn_query_flags(NULL, NULL, 0, 0, NULL, NULL), 2);
	/* Reaped: the plain reads agree, and the dead owner's unregister is
	 * a success with FDN_REG_IF_PRESENT. */
	uint32_t idx;
	cr_assert_eq(fdn__proc_find(s, p, &idx), 0);
	struct fdn__dead d = {.idx = idx,
			      .word = atomic_load(&s->procs[idx].word),
			      .exit_signal = 0,
			      .exit_status = 0,
			      .record = true};
	cr_assert_eq(fdn__reap_batch(s, &d, 1, fdn__mono_ns()), 0);
	cr_assert_eq(fdn_count(s), 1);
	cr_assert_eq(fdn_unregister(s, "dead-1", 6), FDN_ENOTFOUND);
	cr_assert_eq(fdn_unregister_flags(s, "dead-1", 6, FDN_REG_IF_PRESENT), 0);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
}

struct check_seen {
	int notes, violations;
	char last[256];
};

static void check_seen_cb(void *arg, const char *code, const char *msg)
{
	struct check_seen *c = arg;
	if (strcmp(code, "note") == 0)
		c->notes++;
	else
		c->violations++;
	snprintf(c->last, sizeof(c->last), "[%s] %s", code, msg);
}

/* A process that just died, its reaper not done yet, is a note while a
 * live reaper takes it up within 1 s, and a violation once it has not:
 * the reaper is SIGSTOPped to hold the death pending. */
Test(registry, checker_notes_a_death_the_reaper_is_taking_up, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	pid_t reaper = fdn_reaper_holder(s);
	for (int round = 0; round < 2; round++) {
		_Atomic int *ready = t_shared(sizeof(int));
		pid_t p = agent(name, round ? "late" : "soon", ready);
		t_wait_ready(ready, p);
		cr_assert_eq(kill(reaper, SIGSTOP), 0);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		/* round 0: the reaper resumes after 200 ms, inside the checker's
		 * wait; round 1: after 1.5 s, past it. */
		pid_t waker = t_fork();
		if (waker == 0) {
			usleep(round ? 1500000 : 200000);
			kill(reaper, SIGCONT);
			_exit(0);
		}
		struct check_seen c = {0, 0, ""};
		int n = fdn_segment_check(s, check_seen_cb, &c);
		cr_assert(t_wait_ok(waker));
		if (round == 0) {
			cr_assert_eq(n, 0, "round 0: %s", c.last);
			cr_assert_eq(c.notes, 1, "round 0: %s", c.last);
		} else {
			cr_assert_eq(n, 1, "round 1: %s", c.last);
			cr_assert_eq(c.violations, 1);
			cr_assert(strstr(c.last, "[dead]") != NULL, "%s", c.last);
		}
		const char *key = round ? "late" : "soon";
		cr_assert_eq(fdn_watch(s, key, strlen(key), false, 20000), 0);
	}
	uint64_t until = fdn__mono_ns() + 30ull * 1000000000u;
	while (fdn_segment_check(s, NULL, NULL) != 0 && fdn__mono_ns() < until)
		usleep(50000);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/* An entry with more indexed values than a write keeps its prefixes for
 * (REF_SET_MAX, registry_int.h: each step then parses the encoding): a
 * register, a takeover that keeps half the values, an update that drops
 * more, and the unregister each leave exactly the references of what is
 * stored, as finds and the checker see. */
static int find_item(fdn_segment *s, int k)
{
	char v[16];
	snprintf(v, sizeof(v), "i%d", k);
	struct fdn_attr a = {.type = FDN_ATTR_STRING, .v.s = v};
	return fdn_find_by_attribute(s, "capability", &a, NULL, NULL);
}

static int reg_items(fdn_segment *s, int from, int to, unsigned flags, bool update)
{
	static char buf[64][16];
	static const char *items[64];
	for (int k = from; k < to; k++) {
		snprintf(buf[k - from], sizeof(buf[0]), "i%d", k);
		items[k - from] = buf[k - from];
	}
	struct fdn_attr a = {.name = "capability", .type = FDN_ATTR_LIST};
	a.v.list.items = items;
	a.v.list.n = (uint32_t)(to - from);
	return update ? fdn_update_attributes(s, "many", 4, &a, 1)
		      : fdn_register(s, "many", 4, getpid(), &a, 1, flags, NULL);
}

Test(registry, entry_with_many_indexed_values_keeps_exact_references)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	cr_assert_eq(reg_items(s, 0, 40, 0, false), 0);
	for (int k = 0; k < 40; k++)
		cr_assert_eq(find_item(s, k), 1, "item %d after the register", k);
	t_assert_all_clean(s);
	cr_assert_eq(reg_items(s, 20, 60, FDN_REG_REPLACE, false), 0);
	for (int k = 0; k < 60; k++)
		cr_assert_eq(find_item(s, k), k >= 20, "item %d after the takeover", k);
	t_assert_all_clean(s);
	cr_assert_eq(reg_items(s, 50, 55, 0, true), 0);
	for (int k = 0; k < 60; k++)
		cr_assert_eq(find_item(s, k), k >= 50 && k < 55, "item %d after the update", k);
	t_assert_all_clean(s);
	cr_assert_eq(fdn_unregister(s, "many", 4), 0);
	for (int k = 0; k < 60; k++)
		cr_assert_eq(find_item(s, k), 0, "item %d after the unregister", k);
	cr_assert_eq(fdn__ht_count(s, T_INDEX), 0, "%lld references left",
		     (long long)fdn__ht_count(s, T_INDEX));
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/* A list attribute of 255 items (FDN_ATTR_LIST_MAX), registered by one
 * process: another reads it whole and finds the entry through the index by
 * its first and last item; 256 items are refused. */
Test(registry, list_attribute_of_255_items_across_processes, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	_Atomic int *ready = t_shared(sizeof(int));
	pid_t p = t_fork();
	if (p == 0) {
		static char buf[256][8];
		static const char *items[256];
		for (int k = 0; k < 256; k++) {
			snprintf(buf[k], sizeof(buf[k]), "c%d", k);
			items[k] = buf[k];
		}
		struct fdn_attr a = {.name = "capability", .type = FDN_ATTR_LIST};
		a.v.list.items = items;
		a.v.list.n = 256;
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c) ||
		    fdn_register(c, "wide", 4, getpid(), &a, 1, 0, NULL) != FDN_EINVMETA)
			_exit(2);
		a.v.list.n = FDN_ATTR_LIST_MAX;
		if (fdn_register(c, "wide", 4, getpid(), &a, 1, 0, NULL))
			_exit(3);
		atomic_store(ready, 1);
		pause();
		_exit(0);
	}
	spawned[nspawned++] = p;
	t_wait_ready(ready, p);
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(s, "wide", 4, 0, &e), 0);
	struct fdn_attr got;
	cr_assert_eq(fdn_attrs_get(e.attrs, e.attrs_len, "capability", &got), 0);
	cr_assert_eq(got.v.list.n, 255);
	cr_assert_str_eq(fdn_attrs_list_item(&got, 0), "c0");
	cr_assert_str_eq(fdn_attrs_list_item(&got, 254), "c254");
	struct fdn_attr first = {.type = FDN_ATTR_STRING, .v.s = "c0"};
	struct fdn_attr last = {.type = FDN_ATTR_STRING, .v.s = "c254"};
	struct fdn_attr beyond = {.type = FDN_ATTR_STRING, .v.s = "c255"};
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &first, NULL, NULL), 1);
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &last, NULL, NULL), 1);
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &beyond, NULL, NULL), 0);
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	cr_assert_eq(fdn_watch(s, "wide", 4, false, 20000), 0);
	uint64_t until = fdn__mono_ns() + 30ull * 1000000000u;
	while (fdn_segment_check(s, NULL, NULL) != 0 && fdn__mono_ns() < until)
		usleep(50000);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

Test(registry, dead_holder_key_is_free_and_watch_times_out)
{
	char name[128];
	t_name(name, sizeof(name), "reg");
	/* No reaper here: the holder's death is not seen by anyone. */
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 100, 0);
	pid_t p = t_fork();
	if (p == 0) {
		pause();
		_exit(0);
	}
	cr_assert_eq(reg(s, "svc", p, "a", "ok"), 0);
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	cr_assert_eq(lookup_pid(s, "svc"), p, "not reaped: still visible");
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(s, "svc", 3, FDN_REG_CHECK_ALIVE, &e), FDN_ENOTFOUND,
		     "the kernel says its owner is dead");
	cr_assert_eq(reg(s, "svc", getpid(), "b", "ok"), 0, "a dead holder's key is free");
	cr_assert_eq(lookup_pid(s, "svc"), getpid());
	cr_assert_eq(fdn_watch(s, "svc", 3, false, 50), FDN_ETIMEDOUT);
	cr_assert_eq(fdn_watch(s, "svc", 3, true, 50), 0);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
}

Test(registry, reaper_killed_mid_reclaim_50_times, .timeout = 300)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 4000);
	cr_assert_eq(reg(s, "survivor", getpid(), "keep", "ok"), 0);
	for (int round = 0; round < 50; round++) {
		_Atomic int *ready = t_shared(sizeof(int));
		pid_t p = t_fork();
		if (p == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			for (int i = 0; i < 1000; i++) {
				char k[32];
				snprintf(k, sizeof(k), "bulk-%04d", i);
				int rr = reg(c, k, getpid(), i % 2 ? "gpu" : "http", "ok");
				if (rr) {
					fprintf(stderr, "register %s: %s\n", k, fdn_strerror(rr));
					_exit(3);
				}
			}
			atomic_store(ready, 1);
			pause();
			_exit(0);
		}
		if (nspawned < 128)
			spawned[nspawned++] = p;
		t_wait_ready(ready, p);
		/* The reaper the previous round's attach started may still be
		 * starting up (seconds, on a busy machine). */
		pid_t reaper = 0;
		uint64_t until = fdn__mono_ns() + 30ull * 1000000000u;
		while ((reaper = fdn_reaper_holder(s)) == 0 && fdn__mono_ns() < until)
			usleep(10000);
		cr_assert_gt(reaper, 0, "round %d: a reaper runs", round);
		kill(p, SIGKILL);
		/* Kill the reaper while it reclaims (at a random moment). */
		struct timespec d = {0, (long)(rand() % 3000) * 1000};
		nanosleep(&d, NULL);
		kill(reaper, SIGKILL);
		waitpid(p, NULL, 0);
		/* A new reaper (the next attach starts one) finishes the job. */
		fdn_segment *again;
		for (int i = 0; i < 500 && kill(reaper, 0) == 0; i++)
			usleep(1000);
		cr_assert_eq(fdn_segment_attach(name, 0, &again), 0);
		int w = fdn_watch(again, "bulk-0999", 9, false, 60000);
		cr_assert_eq(w, 0, "round %d: watch: %s", round, fdn_strerror(w));
		until = fdn__mono_ns() + 30ull * 1000000000u;
		while (fdn_count(again) != 1 && fdn__mono_ns() < until)
			usleep(10000);
		cr_assert_eq(fdn_count(again), 1, "round %d: only the survivor", round);
		cr_assert_eq(lookup_pid(again, "survivor"), getpid());
		fdn_segment_detach(again);
	}
	/* The audit waits (t_settle, up to 60 s) for the last reaper to finish
	 * the purge, the slot of the reaper killed last and its sweep: a check
	 * run while it still deletes sees chains change under it.  (This
	 * test used to loop on fdn_segment_check until one came back clean;
	 * a clean check proves nothing about the next, which could then walk
	 * into the purge's last deletes.) */
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/* A dead owner's references whose entries are gone are removed by
 * conditional deletes; with the reclaimer's deferred-free list full, those
 * deletes must still go through (they used to run inside a read-side
 * section, where the list cannot be flushed: FDN_EINREAD for ever, and
 * the reaper retried in a loop). */
Test(registry, purge_with_a_full_limbo, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "reg");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	pid_t c = t_fork();
	if (c == 0) {
		pause();
		_exit(0);
	}
	cr_assert_eq(reg(s, "orphan", c, "gpu", "ok"), 0);
	/* The entry goes, its references stay: a writer killed between them. */
	cr_assert_eq(fdn__ht_delete(s, 0, "orphan", 6, NULL), 0);
	/* Fill our deferred-free list inside a section of our own. */
	struct fdn__thread *t;
	cr_assert_eq(fdn__rcu_read_lock(s, &t), 0);
	for (int i = 0; i < 200 && fdn_tslot_pending(t->ts) < FDN_LIMBO_MAX; i++) {
		char k[16];
		snprintf(k, sizeof(k), "fill%d", i);
		cr_assert_eq(t_put(s, k, 1, FDN_HT_UNIQUE), 0);
		cr_assert_eq(t_del(s, k), 0);
	}
	fdn__rcu_read_unlock(t);
	cr_assert_eq(fdn_tslot_pending(t->ts), FDN_LIMBO_MAX);
	uint32_t idx;
	cr_assert_eq(fdn__proc_find(s, c, &idx), 0);
	uint64_t w = atomic_load(&s->procs[idx].word);
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	cr_assert_eq(fdn__proc_reclaim_begin(s, idx, w), 0);
	int r = fdn__registry_purge_owner(s, idx, w);
	cr_assert_geq(r, 0, "purge: %s", fdn_errname(r));
	cr_assert_eq(fdn__proc_reclaim(s, idx, w, -1), 0);
	/* Its value references go with the sweep (no entry names them). */
	uint64_t cursor = 0;
	for (int i = 0; i < 1000 && fdn__registry_sweep(s, &cursor, 4096) != 1; i++)
		;
	cr_assert_eq(fdn__ht_count(s, 1), 0, "%lld references left",
		     (long long)fdn__ht_count(s, 1));
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
}

/* A process that detached with things left for the reaper to clean (its
 * slot LEFT) and then exited is no death, even judged one: the daemon's
 * scan can load the slot's LIVE word just before the detach and find the
 * process gone just after (test_prometheus saw a short-lived
 * foundation-ctl counted as a death).  Its entry still goes. */
Test(registry, a_detach_seen_late_is_not_a_death, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "reg");
	setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
	fdn_segment *s = t_create(name, 1000, 0);
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs;
		if (fdn_segment_attach(name, 0, &cs) || reg(cs, "left-behind", getpid(), "x", "ok"))
			_exit(2);
		/* What fdn_segment_detach writes when a reaper will clean up. */
		uint64_t w = cs->proc_word;
		uint64_t left = FDN_PROC_WORD(FDN_PROC_LEFT, FDN_PROC_PID(w), FDN_PROC_IDENT40(w));
		uint32_t idx = cs->proc_idx;
		if (!atomic_compare_exchange_strong(&cs->procs[idx].word, &w, left))
			_exit(3);
		if (write(fds[1], &idx, sizeof(idx)) != sizeof(idx) ||
		    write(fds[1], &w, sizeof(w)) != sizeof(w))
			_exit(4);
		_exit(0);
	}
	close(fds[1]);
	uint32_t idx;
	uint64_t live;
	cr_assert_eq(read(fds[0], &idx, sizeof(idx)), (ssize_t)sizeof(idx));
	cr_assert_eq(read(fds[0], &live, sizeof(live)), (ssize_t)sizeof(live));
	close(fds[0]);
	int st;
	cr_assert_eq(waitpid(c, &st, 0), c);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	cr_assert_eq(fdn__ht_count(s, 0), 1); /* there, if hidden from readers */
	/* Judged dead from the LIVE word, as the scan does. */
	struct fdn__dead d = {.idx = idx, .word = live, .record = true};
	d.exit_signal = d.exit_status = -1;
	cr_assert_eq(fdn__reap_batch(s, &d, 1, fdn__mono_ns()), 0);
	cr_assert(d.done);
	cr_assert_eq(fdn_deaths(s), 0, "a detach was recorded as a death");
	cr_assert_eq(fdn__ht_count(s, 0), 0, "the detached process's entry is still there");
	cr_assert_eq(atomic_load(&s->procs[idx].word), 0);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	unsetenv("FOUNDATION_NO_AUTOREAPER");
}

/* ---- a value shared by very many entries ---------------------------------- */

struct hot_ms {
	_Atomic int ready;
	_Atomic int failed;
	uint64_t shared_ns, distinct_ns;
};

static int count_keys_cb(void *arg, const struct fdn_entry_view *e)
{
	unsigned char *seen = arg;
	unsigned i;
	if (e->key_len == 9 && sscanf((const char *)e->key, "hot-%5u", &i) == 1 && i < 40000)
		seen[i]++;
	else
		seen[40000]++; /* anything else */
	return 0;
}

/* A find of capability "shared" reports hot-00000 .. hot-(n-1) once each
 * and nothing else. */
static void find_hot_once(fdn_segment *s, int n)
{
	static unsigned char seen[40001];
	memset(seen, 0, sizeof(seen));
	struct fdn_attr value = {.type = FDN_ATTR_STRING, .v.s = "shared"};
	int fr = fdn_find_by_attribute(s, "capability", &value, count_keys_cb, seen);
	cr_assert_eq(fr, n, "find: %d (%s)", fr, fdn_strerror(fr));
	for (int i = 0; i < n; i++)
		cr_assert_eq(seen[i], 1, "hot-%05d reported %d times", i, seen[i]);
	cr_assert_eq(seen[40000], 0, "nothing else reported");
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One value held by 40 000 entries of a child process (its references
 * spread over more chains as the value's level rises): registering into
 * it costs about what registering distinct values does, measured in
 * interleaved batches of the same run; a find reports each entry once; the
 * owner's SIGKILL takes every reference, whatever its level. */
Test(registry, a_value_shared_by_many_entries_stays_cheap, .timeout = 300)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 150000);
	struct hot_ms *m = t_shared(sizeof(*m));
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs;
		if (fdn_segment_attach(name, 0, &cs))
			_exit(2);
		char k[32], v[32];
		for (int b = 0; b < 40; b++) {
			uint64_t t0 = mono_ns();
			for (int i = b * 1000; i < (b + 1) * 1000; i++) {
				snprintf(k, sizeof(k), "hot-%05d", i);
				if (reg(cs, k, getpid(), "shared", "ok"))
					atomic_store(&m->failed, 1);
			}
			uint64_t t1 = mono_ns();
			if (b % 4)
				continue;
			for (int i = b * 250; i < (b + 4) * 250; i++) {
				snprintf(k, sizeof(k), "cold-%05d", i);
				snprintf(v, sizeof(v), "value-%d", i);
				if (reg(cs, k, getpid(), v, v))
					atomic_store(&m->failed, 1);
			}
			if (b >= 20) { /* the shared value holds 20 000 or more */
				m->shared_ns += t1 - t0;
				m->distinct_ns += mono_ns() - t1;
			}
		}
		atomic_store(&m->ready, 1);
		pause();
		_exit(0);
	}
	spawned[nspawned++] = c;
	t_wait_ready(&m->ready, c);
	cr_assert_eq(atomic_load(&m->failed), 0, "every registration succeeded");
	/* 20 000 registrations into the shared value, 5 000 of distinct ones. */
	double shared = (double)m->shared_ns / 20000, distinct = (double)m->distinct_ns / 5000;
	fprintf(stderr, "  shared value: %.0f ns per registration, distinct values %.0f (%.2fx)\n",
		shared, distinct, shared / distinct);
	/* With 32 chains per value it was over 15x here. */
	cr_assert_lt(shared / distinct, 5.0, "registering into a shared value costs %.1fx",
		     shared / distinct);

	find_hot_once(s, 40000);
	t_assert_all_clean(s);

	/* Our own: replaced and unregistered, then the child's death. */
	for (int i = 0; i < 3000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "hot-%05d", 40000 + i);
		struct fdn_attr a[2] = {
		    {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "shared"},
		    {.name = "health_status", .type = FDN_ATTR_STRING, .v.s = "ok"}};
		for (unsigned flags = 0; flags <= FDN_REG_REPLACE; flags += FDN_REG_REPLACE) {
			int r = fdn_register(s, k, strlen(k), getpid(), a, 2, flags, NULL);
			cr_assert_eq(r, 0, "%s: %s", k, fdn_strerror(r));
		}
	}
	for (int i = 0; i < 3000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "hot-%05d", 40000 + i);
		cr_assert_eq(fdn_unregister(s, k, strlen(k)), 0);
	}
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	nspawned--;
	uint64_t end = t_mono_ms() + 60000;
	struct fdn_segment_stats st;
	do {
		t_sleep_ms(50);
		stats_now(s, &st);
	} while ((st.tables[0].entries || st.tables[1].entries) && t_mono_ms() < end);
	cr_assert_eq(st.tables[0].entries, 0, "the owner's entries went with it");
	cr_assert_eq(st.tables[1].entries, 0, "every reference went, under every level");
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

struct churn_ctl {
	_Atomic int ready;
	_Atomic int stop;
	_Atomic uint64_t cycles;
};

static int seen_once_cb(void *arg, const struct fdn_entry_view *e)
{
	unsigned char *seen = arg;
	unsigned i;
	if (e->key_len == 9 && sscanf((const char *)e->key, "hot-%5u", &i) == 1 && i < 6000)
		seen[i]++;
	return 0;
}

/* n entries hot-00000.. of one value ("shared"): the first few hundred
 * lie under level 0, the rest under level 1 (registry_index.c,
 * RAISE_STEPS). */
static void reg_hot(fdn_segment *s, int n)
{
	for (int i = 0; i < n; i++) {
		char k[32];
		snprintf(k, sizeof(k), "hot-%05d", i);
		cr_assert_eq(reg(s, k, getpid(), "shared", "ok"), 0);
	}
}

/* Finds through a value whose references lie under two levels, while
 * another process removes and registers its entries again (at least 20 000
 * times, or for a minute): no entry is reported twice by one find, and
 * every entry the churn leaves alone is reported. */
Test(registry, finds_under_churn_report_each_entry_once, .timeout = 300)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 40000);
	reg_hot(s, 6000);
	struct churn_ctl *m = t_shared(sizeof(*m));
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs;
		if (fdn_segment_attach(name, 0, &cs))
			_exit(2);
		atomic_store(&m->ready, 1);
		unsigned x = 7;
		while (!atomic_load(&m->stop)) {
			char k[32];
			x = x * 1103515245u + 12345u;
			/* Only the even entries churn. */
			snprintf(k, sizeof(k), "hot-%05u", ((x >> 8) % 3000) * 2);
			if (fdn_unregister(cs, k, strlen(k)) == 0 &&
			    reg(cs, k, getppid(), "shared", "ok") != 0)
				_exit(3);
			atomic_fetch_add(&m->cycles, 1);
		}
		_exit(0);
	}
	spawned[nspawned++] = c;
	t_wait_ready(&m->ready, c);
	static unsigned char seen[6000];
	struct fdn_attr value = {.type = FDN_ATTR_STRING, .v.s = "shared"};
	uint64_t end = t_mono_ms() + 60000;
	int rounds = 0;
	for (int round = 0; round < 40 || (atomic_load(&m->cycles) < 20000 && t_mono_ms() < end);
	     round++) {
		rounds++;
		memset(seen, 0, sizeof(seen));
		int n = fdn_find_by_attribute(s, "capability", &value, seen_once_cb, seen);
		cr_assert_geq(n, 3000, "find: %d", n);
		for (int i = 0; i < 6000; i++) {
			cr_assert_leq(seen[i], 1, "round %d: hot-%05d reported %d times", round, i,
				      seen[i]);
			if (i % 2)
				cr_assert_eq(seen[i], 1, "round %d: hot-%05d missed", round, i);
		}
	}
	atomic_store(&m->stop, 1);
	cr_assert(t_wait_ok(c), "the churning process ended well");
	nspawned--;
	cr_assert_gt(atomic_load(&m->cycles), 0);
	fprintf(stderr, "  %llu churn cycles beside %d finds\n",
		(unsigned long long)atomic_load(&m->cycles), rounds);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/* A registration looks for its references under the value's current
 * level only (registry_index.c, ref_put): taking over entries whose
 * references were written under level 0, before the value's raise, writes
 * them again under the current level.  A find still reports each entry
 * once, the checker finds nothing amiss, and unregistering the entries
 * removes every reference, under every level. */
Test(registry, a_takeover_after_a_raise_leaves_no_reference_behind)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 20000);
	reg_hot(s, 6000);
	struct fdn_segment_stats st;
	stats_now(s, &st);
	uint64_t before = st.tables[1].entries;
	struct fdn_attr a[2] = {{.name = "capability", .type = FDN_ATTR_STRING, .v.s = "shared"},
				{.name = "health_status", .type = FDN_ATTR_STRING, .v.s = "ok"}};
	for (int i = 0; i < 6000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "hot-%05d", i);
		int r = fdn_register(s, k, strlen(k), getpid(), a, 2, FDN_REG_REPLACE, NULL);
		cr_assert_eq(r, 0, "%s: %s", k, fdn_strerror(r));
	}
	stats_now(s, &st);
	fprintf(stderr, "  references %llu, after the takeovers %llu\n", (unsigned long long)before,
		(unsigned long long)st.tables[1].entries);
	find_hot_once(s, 6000);
	t_assert_all_clean(s);
	for (int i = 0; i < 6000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "hot-%05d", i);
		cr_assert_eq(fdn_unregister(s, k, strlen(k)), 0);
	}
	stats_now(s, &st);
	cr_assert_eq(st.tables[0].entries, 0);
	cr_assert_eq(st.tables[1].entries, 0, "%llu references left",
		     (unsigned long long)st.tables[1].entries);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/*
 * A remover and a writer of the same reference.  Each reference is
 * written once: a remover that deletes one looks again and restores it if
 * an entry now needs it, and a writer looks for its references again after
 * its entry (registry_index.c, fdn__reg_ref_del_suffix).  Threads of one
 * process write the same reference value, so a writer's first pass leaves
 * the version a remover is about to delete; two processes of two threads
 * each churn the same 6 keys (each key always with the same capability)
 * in one bucket group, so both the owner reference of the group and the
 * capability references change hands all the time.  In epochs of 30 ms:
 * all four threads churn, stop, and then every entry left must have its
 * references (the checker) and be found through the index.
 */
struct ref_race_ctl {
	_Atomic int ready;
	_Atomic unsigned go, halt, parked;
	_Atomic int quit, failed;
	_Atomic uint64_t ops;
};

static const char *ref_race_cap(int i)
{
	return i % 2 ? "cap-odd" : "cap-even";
}

struct ref_race {
	fdn_segment *s;
	struct ref_race_ctl *m;
	unsigned seed;
};

static void *ref_race_thread(void *arg)
{
	struct ref_race *rr = arg;
	struct ref_race_ctl *m = rr->m;
	unsigned x = rr->seed, e = 0;
	for (;;) {
		while (atomic_load(&m->go) == e && !atomic_load(&m->quit))
			usleep(100);
		if (atomic_load(&m->quit))
			return NULL;
		e = atomic_load(&m->go);
		while (atomic_load(&m->halt) < e) {
			char k[16];
			x = x * 1103515245u + 12345u;
			int i = (int)((x >> 8) % 6);
			snprintf(k, sizeof(k), "race-%d", i);
			int r = (x >> 20) & 1 ? reg(rr->s, k, getpid(), ref_race_cap(i), "ok")
					      : fdn_unregister(rr->s, k, strlen(k));
			if (r && r != FDN_EEXISTS && r != FDN_ENOTFOUND) {
				fprintf(stderr, "ref_race: %s: %s\n", k, fdn_strerror(r));
				atomic_store(&m->failed, 1);
			}
			atomic_fetch_add(&m->ops, 1);
		}
		atomic_fetch_add(&m->parked, 1);
	}
}

/* Two threads on s until m->quit; 0 if both started. */
static int ref_race_start(fdn_segment *s, struct ref_race_ctl *m, unsigned seed, pthread_t th[2],
			  struct ref_race rr[2])
{
	for (int i = 0; i < 2; i++) {
		rr[i] = (struct ref_race){s, m, seed * 7 + (unsigned)i};
		if (pthread_create(&th[i], NULL, ref_race_thread, &rr[i]))
			return -1;
	}
	return 0;
}

static int count_cb(void *arg, const struct fdn_entry_view *e)
{
	(void)e;
	++*(int *)arg;
	return 0;
}

Test(registry, a_reference_removed_while_written_is_restored, .timeout = 120)
{
	char name[128];
	/* 32 entries: 64 buckets, one owner-reference group. */
	fdn_segment *s = reg_create(name, sizeof(name), 32);
	struct ref_race_ctl *m = t_shared(sizeof(*m));
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs;
		pthread_t th[2];
		struct ref_race rr[2];
		if (fdn_segment_attach(name, 0, &cs) || ref_race_start(cs, m, 11, th, rr))
			_exit(2);
		atomic_store(&m->ready, 1);
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		_exit(0);
	}
	spawned[nspawned++] = c;
	t_wait_ready(&m->ready, c);
	pthread_t th[2];
	struct ref_race rr[2];
	cr_assert_eq(ref_race_start(s, m, 5, th, rr), 0);
	int epochs = 0;
	for (uint64_t end = t_mono_ms() + 3000; t_mono_ms() < end && !atomic_load(&m->failed);) {
		epochs++;
		atomic_store(&m->go, (unsigned)epochs);
		t_sleep_ms(30);
		atomic_store(&m->halt, (unsigned)epochs);
		while (atomic_load(&m->parked) < 4u * (unsigned)epochs)
			t_sleep_ms(1);
		int v = fdn_segment_check(s, t_print_violation, NULL);
		int left = 0, found = 0;
		for (int i = 0; i < 6; i++) {
			char k[16];
			snprintf(k, sizeof(k), "race-%d", i);
			left += lookup_pid(s, k) != 0;
		}
		for (int i = 0; i < 2; i++) {
			struct fdn_attr value = {.type = FDN_ATTR_STRING, .v.s = ref_race_cap(i)};
			cr_assert_geq(
			    fdn_find_by_attribute(s, "capability", &value, count_cb, &found), 0);
		}
		if (v || found != left) {
			atomic_store(&m->quit, 1);
			cr_assert_fail(
			    "epoch %d: checker found %d violations; %d entries, %d found "
			    "through the index",
			    epochs, v, left, found);
		}
	}
	atomic_store(&m->quit, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert(t_wait_ok(c), "the other process ended well");
	nspawned--;
	cr_assert_eq(atomic_load(&m->failed), 0, "an operation failed");
	fprintf(stderr, "  %d epochs, %llu operations\n", epochs,
		(unsigned long long)atomic_load(&m->ops));
	cr_assert_gt(epochs, 10);
	t_assert_all_clean(s);
	reg_destroy(s, name);
}

/*
 * Counted entries (lib/registry_int.h): a process that holds no entry of its
 * own removes its owner reference of a group without walking the group --
 * unless another process wrote an entry for it, which marks its slot.  Here
 * the parent registers a key for the child, and the child then registers
 * and unregisters a key of its own in the same group: the group's owner
 * reference must stay for the parent's entry (the checker reports an entry
 * without it), and the child's death must take that entry with it.
 */
struct counted_ctl {
	_Atomic int ready, go, done;
	char key[32];
	int err;
};

Test(registry, an_entry_written_for_a_process_keeps_its_group_reference, .timeout = 120)
{
	char name[128];
	fdn_segment *s = reg_create(name, sizeof(name), 1000);
	struct counted_ctl *m = t_shared(sizeof(*m));
	/* Two keys of one owner-reference group. */
	const char *ka = "for-the-child";
	uint64_t ga = (fdn__ht_hash(s, 0, ka, strlen(ka)) & s->bucket_mask[0]) / GROUP_BUCKETS;
	for (int i = 0;; i++) {
		cr_assert_lt(i, 1000000, "no key of group %llu", (unsigned long long)ga);
		snprintf(m->key, sizeof(m->key), "own-%d", i);
		if ((fdn__ht_hash(s, 0, m->key, strlen(m->key)) & s->bucket_mask[0]) /
			GROUP_BUCKETS ==
		    ga)
			break;
	}
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs;
		if (fdn_segment_attach(name, 0, &cs))
			_exit(2);
		atomic_store(&m->ready, 1);
		while (!atomic_load(&m->go))
			usleep(1000);
		m->err = reg(cs, m->key, getpid(), "own", "ok");
		if (m->err == 0)
			m->err = fdn_unregister(cs, m->key, strlen(m->key));
		atomic_store(&m->done, 1);
		pause();
		_exit(0);
	}
	spawned[nspawned++] = c;
	t_wait_ready(&m->ready, c);
	cr_assert_eq(reg(s, ka, c, "given", "ok"), 0);
	atomic_store(&m->go, 1);
	while (!atomic_load(&m->done))
		usleep(1000);
	cr_assert_eq(m->err, 0, "the child's register and unregister: %s", fdn_strerror(m->err));
	cr_assert_eq(lookup_pid(s, ka), c);
	t_assert_all_clean(s);
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	nspawned--;
	cr_assert_eq(fdn_watch(s, ka, strlen(ka), false, 10000), 0);
	t_settle(s, 60000);
	cr_assert_eq(fdn__ht_count(s, 0), 0, "the dead child's entry is removed");
	cr_assert_eq(fdn__ht_count(s, 1), 0, "and its references");
	t_assert_all_clean(s);
	reg_destroy(s, name);
}
