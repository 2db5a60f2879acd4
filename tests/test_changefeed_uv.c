/*
 * test_changefeed_uv.c - a real libuv loop receives every change of the
 * registry made by 8 writer processes doing 10 000 random registers,
 * updates and unregisters, with SIGKILLs among them (each killed writer is
 * replaced by one that finishes its share).  The loop's subscription
 * starts from a snapshot taken while the writers run; at the end, the
 * state reconstructed from the snapshot and the changes equals the
 * registry exactly (key -> owner pid), and a new snapshot agrees.
 */
#include "tests/common.h"

#include <foundation/changes.h>
#include <foundation/registry.h>
#include <uv.h>

#define WRITERS   8
#define TOTAL_OPS 10000
#define NKEYS     96
#define KILLS     8

struct shared {
	_Atomic int ops[WRITERS];   /* ops done by slot i (all its processes) */
	_Atomic int ready[WRITERS]; /* its current process is attached */
	_Atomic int started;        /* the spawner's first 8 writers are attached */
	_Atomic int done;           /* 1: every writer ended; 2: a writer failed */
	_Atomic int kills;
	/* The first process of slot 0 stops a quarter through its work
	 * until it is killed: at least one kill in the middle of the
	 * writes, however fast they are (8 x 1 250 operations ended within
	 * the spawner's first 10 ms sleep once, with no kill at all). */
	_Atomic int park_taken, parked;
	pid_t holder;
};

static char segname[64];
static struct shared *sh;

static void writer(int slot, int quota)
{
	fdn_segment *s;
	if (fdn_segment_attach(segname, 0, &s))
		_exit(1);
	unsigned seed = (unsigned)getpid() * 2654435761u;
	bool park = slot == 0 && atomic_exchange(&sh->park_taken, 1) == 0;
	atomic_store(&sh->ready[slot], 1);
	while (atomic_load(&sh->ops[slot]) < quota) {
		char k[16];
		snprintf(k, sizeof(k), "uv/%u", rand_r(&seed) % NKEYS);
		struct fdn_attr a = {.name = "n", .type = FDN_ATTR_INT, .v.i = rand_r(&seed)};
		unsigned op = rand_r(&seed) % 10;
		if (op < 4)
			fdn_register(s, k, strlen(k), getpid(), &a, 1, op & 1 ? FDN_REG_REPLACE : 0,
				     NULL);
		else if (op < 6)
			fdn_register(s, k, strlen(k), sh->holder, &a, 1, FDN_REG_REPLACE, NULL);
		else if (op < 8)
			fdn_merge_attributes(s, k, strlen(k), &a, 1);
		else
			fdn_unregister(s, k, strlen(k));
		atomic_fetch_add(&sh->ops[slot], 1);
		if (park && atomic_load(&sh->ops[slot]) >= quota / 4) {
			atomic_store(&sh->parked, 1);
			for (;;)
				pause(); /* until the spawner's SIGKILL */
		}
	}
	fdn_segment_detach(s);
	_exit(0);
}

/* key -> pid */
struct model {
	char key[NKEYS][16];
	pid_t pid[NKEYS];
	bool used[NKEYS];
};

static int key_index(const void *k, uint32_t kl)
{
	char buf[16];
	if (kl < 4 || kl > 10)
		return -1;
	memcpy(buf, k, kl);
	buf[kl] = 0;
	int i = atoi(buf + 3);
	return i >= 0 && i < NKEYS ? i : -1;
}

static int model_snap_cb(void *arg, const void *key, uint32_t kl, pid_t pid)
{
	struct model *m = arg;
	int i = key_index(key, kl);
	cr_assert_geq(i, 0, "snapshot: unexpected key");
	m->used[i] = true;
	m->pid[i] = pid;
	return 0;
}

struct cmp {
	struct model *m;
	int seen, mismatch;
};

static int cmp_cb(void *arg, const struct fdn_entry_view *e)
{
	struct cmp *c = arg;
	int i = key_index(e->key, e->key_len);
	c->seen++;
	if (i < 0 || !c->m->used[i] || c->m->pid[i] != e->pid)
		c->mismatch++;
	return 0;
}

/* Mismatches between the model and the registry's visible entries. */
static int differences(fdn_segment *s, struct model *m)
{
	struct cmp c = {m, 0, 0};
	int n = fdn_foreach(s, cmp_cb, &c);
	int used = 0;
	for (int i = 0; i < NKEYS; i++)
		used += m->used[i];
	return n < 0 ? 1 : c.mismatch + (c.seen != used);
}

struct loopstate {
	fdn_segment *s;
	fdn_subscription *sub;
	struct model m;
	uint64_t last_rev;
	uint64_t changes;
	pid_t pids[WRITERS];
	int kills;
	int quota;
	uint64_t t0, done_at;
	bool writers_done, finished;
	uv_poll_t poll;
	uv_timer_t timer;
};

static void drain(struct loopstate *ls)
{
	struct fdn_change c[128];
	for (;;) {
		int n = fdn_subscription_read(ls->sub, c, 128);
		cr_assert_geq(n, 0, "subscription read: %s", fdn_strerror(n));
		for (int i = 0; i < n; i++) {
			cr_assert_gt(c[i].revision, ls->last_rev, "revision order");
			ls->last_rev = c[i].revision;
			int k = key_index(c[i].key, c[i].key_len);
			cr_assert_geq(k, 0, "unexpected key %s", c[i].key);
			if (c[i].kind == FDN_CHANGE_REGISTERED || c[i].kind == FDN_CHANGE_UPDATED) {
				ls->m.used[k] = true;
				ls->m.pid[k] = c[i].pid;
			} else {
				ls->m.used[k] = false;
			}
		}
		ls->changes += (uint64_t)n;
		if (n < 128)
			return;
	}
}

static void on_readable(uv_poll_t *h, int status, int events)
{
	(void)events;
	cr_assert_eq(status, 0);
	drain(h->data);
}

static pid_t spawn(int slot, int quota)
{
	atomic_store(&sh->ready[slot], 0);
	pid_t p = t_fork();
	if (p == 0)
		writer(slot, quota);
	return p;
}

/* The writers' side, in a process of its own forked before this one has a
 * subscription (and so a thread): a fork of a multi-threaded process may
 * inherit a lock another thread held (the sanitizers' allocator). */
static __attribute__((noreturn)) void spawner(int quota)
{
	pid_t pids[WRITERS];
	for (int i = 0; i < WRITERS; i++)
		pids[i] = spawn(i, quota);
	for (int i = 0; i < WRITERS; i++)
		while (!atomic_load(&sh->ready[i]))
			t_sleep_ms(1);
	atomic_store(&sh->started, 1);
	int kills = 0, left = WRITERS;
	while (left > 0) {
		t_sleep_ms(10);
		for (int i = 0; i < WRITERS; i++) {
			int st;
			if (!pids[i] || waitpid(pids[i], &st, WNOHANG) != pids[i])
				continue;
			if (!((WIFEXITED(st) && WEXITSTATUS(st) == 0) ||
			      (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))) {
				atomic_store(&sh->done, 2);
				_exit(1);
			}
			pids[i] = atomic_load(&sh->ops[i]) < quota ? spawn(i, quota) : 0;
			left -= pids[i] == 0;
		}
		/* A kill now and then, in the middle of the writers' work;
		 * the parked writer first. */
		if (kills == 0 && atomic_load(&sh->parked) && pids[0]) {
			kill(pids[0], SIGKILL);
			kills++;
			continue;
		}
		int i = (int)(t_mono_ms() % WRITERS);
		if (kills < KILLS && pids[i] && atomic_load(&sh->ready[i]) &&
		    atomic_load(&sh->ops[i]) > quota / 10) {
			kill(pids[i], SIGKILL);
			kills++;
		}
	}
	atomic_store(&sh->kills, kills);
	atomic_store(&sh->done, 1);
	_exit(0);
}

static void on_tick(uv_timer_t *t)
{
	struct loopstate *ls = t->data;
	uint64_t now = t_mono_ms();
	if (now - ls->t0 >= 400000) { /* minutes only on a loaded machine under ASan */
		struct fdn_changes_stats st;
		fdn_changes_stats(ls->s, &st);
		cr_assert_fail("did not converge in 400 s: writers %s, head %llu, read up to %llu, "
			       "%d differences, %llu stolen",
			       ls->writers_done ? "done" : "running",
			       (unsigned long long)st.revision,
			       (unsigned long long)fdn_subscription_revision(ls->sub),
			       differences(ls->s, &ls->m), (unsigned long long)st.stolen);
	}
	if (!ls->writers_done) {
		int d = atomic_load(&sh->done);
		cr_assert_neq(d, 2, "a writer ended badly");
		if (d == 1) {
			ls->writers_done = true;
			ls->done_at = now;
		}
		return;
	}
	/* Writers gone: once the reaper has removed what the dead ones left
	 * and every change is read, the model must be the registry. */
	drain(ls);
	struct fdn_changes_stats st;
	fdn_changes_stats(ls->s, &st);
	if (ls->last_rev <= st.revision && fdn_subscription_revision(ls->sub) == st.revision &&
	    differences(ls->s, &ls->m) == 0) {
		ls->finished = true;
		uv_poll_stop(&ls->poll);
		uv_timer_stop(&ls->timer);
		uv_close((uv_handle_t *)&ls->poll, NULL);
		uv_close((uv_handle_t *)&ls->timer, NULL);
	}
}

Test(changefeed_uv, libuv_loop_sees_every_change_of_8_killed_writers, .timeout = 500)
{
	t_name(segname, sizeof(segname), "cf-uv");
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 4096;
	o.processes = 128;
	o.threads = 128;
	fdn_segment *s = NULL;
	cr_assert_eq(fdn_segment_create(segname, &o, &s), 0);
	for (int i = 0; i < 500 && fdn_reaper_holder(s) == 0; i++)
		t_sleep_ms(10);
	cr_assert_neq(fdn_reaper_holder(s), 0, "no reaper");
	sh = t_shared(sizeof(*sh));
	pid_t holder = t_fork();
	if (holder == 0) {
		for (;;)
			pause();
	}
	sh->holder = holder;
	/* Some entries before anything starts. */
	for (int i = 0; i < NKEYS; i += 4) {
		char k[16];
		snprintf(k, sizeof(k), "uv/%d", i);
		cr_assert_eq(fdn_register(s, k, strlen(k), holder, NULL, 0, 0, NULL), 0);
	}
	struct loopstate *ls = calloc(1, sizeof(*ls));
	ls->s = s;
	ls->quota = TOTAL_OPS / WRITERS;
	ls->t0 = t_mono_ms();
	pid_t sp = t_fork();
	if (sp == 0)
		spawner(ls->quota);
	/* The snapshot is taken while they write; the subscription resumes
	 * right after its revision. */
	t_wait_ready(&sh->started, sp);
	uint64_t rev;
	int n = fdn_registry_snapshot(s, "uv/", 3, model_snap_cb, &ls->m, &rev);
	cr_assert_geq(n, 0, "snapshot: %s", fdn_strerror(n));
	ls->last_rev = rev;
	cr_assert_eq(fdn_subscribe_from(s, "uv/", 3, rev, 0, &ls->sub), 0);

	uv_loop_t loop;
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(uv_poll_init(&loop, &ls->poll, fdn_subscription_fd(ls->sub)), 0);
	ls->poll.data = ls;
	cr_assert_eq(uv_poll_start(&ls->poll, UV_READABLE, on_readable), 0);
	cr_assert_eq(uv_timer_init(&loop, &ls->timer), 0);
	ls->timer.data = ls;
	cr_assert_eq(uv_timer_start(&ls->timer, on_tick, 10, 10), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	cr_assert(ls->finished);
	cr_assert(t_wait_ok(sp), "the writers' spawner failed");
	ls->kills = atomic_load(&sh->kills);
	cr_assert_eq(uv_loop_close(&loop), 0);

	int total = 0;
	for (int i = 0; i < WRITERS; i++)
		total += atomic_load(&sh->ops[i]);
	cr_assert_geq(total, TOTAL_OPS);
	cr_assert_geq(ls->kills, 1);
	/* Exactly the registry, and a fresh snapshot says the same. */
	cr_assert_eq(differences(s, &ls->m), 0);
	struct model *again = calloc(1, sizeof(*again));
	uint64_t rev2;
	n = fdn_registry_snapshot(s, "uv/", 3, model_snap_cb, again, &rev2);
	cr_assert_geq(n, 0);
	cr_assert_eq(rev2, fdn_subscription_revision(ls->sub), "nothing changed since");
	for (int i = 0; i < NKEYS; i++) {
		cr_assert_eq(again->used[i], ls->m.used[i], "uv/%d presence", i);
		if (again->used[i])
			cr_assert_eq(again->pid[i], ls->m.pid[i], "uv/%d pid", i);
	}
	printf("libuv loop: %llu changes from revision %llu, %d kills, %d ops\n",
	       (unsigned long long)ls->changes, (unsigned long long)rev, ls->kills, total);
	fdn_subscription_close(ls->sub);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	free(again);
	free(ls);
	fdn_segment_detach(s);
	fdn_segment_destroy(segname);
}
