/*
 * test_changefeed.c - the change log, subscriptions and snapshots
 * (foundation/changes.h) with real processes: kinds and order, deaths with
 * their graveyard numbers, an overrun recovered by a snapshot, a
 * subscriber stopped with SIGSTOP, a writer killed between its revision
 * and its CAS.
 */
#include "tests/common.h"

#include <foundation/changes.h>
#include <foundation/registry.h>
#include <poll.h>

static fdn_segment *create_log(const char *name, uint32_t changes)
{
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 4096;
	o.processes = 64;
	o.threads = 64;
	o.changes = changes;
	fdn_segment *s = NULL;
	int r = fdn_segment_create(name, &o, &s);
	cr_assert_eq(r, 0, "create %s: %s", name, fdn_strerror(r));
	for (int i = 0; i < 500 && fdn_reaper_holder(s) == 0; i++)
		t_sleep_ms(10);
	cr_assert_neq(fdn_reaper_holder(s), 0, "no reaper started");
	return s;
}

static void done(fdn_segment *s, const char *name)
{
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* Wait up to ms for the fd to be readable. */
static bool readable(int fd, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Read until n changes have arrived (waiting on the fd, 10 s at most). */
static int read_n(fdn_subscription *sub, struct fdn_change *out, int n)
{
	int got = 0;
	uint64_t t0 = t_mono_ms();
	while (got < n && t_mono_ms() - t0 < 10000) {
		if (!readable(fdn_subscription_fd(sub), 1000))
			continue;
		int r = fdn_subscription_read(sub, out + got, (size_t)(n - got));
		cr_assert_geq(r, 0, "read: %s", fdn_strerror(r));
		got += r;
	}
	return got;
}

Test(changefeed, kinds_order_prefix_and_fd)
{
	char name[64];
	t_name(name, sizeof(name), "cf-basic");
	fdn_segment *s = create_log(name, 0);
	fdn_subscription *sub;
	cr_assert_eq(fdn_subscribe(s, "svc/", 4, 0, &sub), 0);
	cr_assert_not(readable(fdn_subscription_fd(sub), 50), "readable with no change");
	struct fdn_attr a = {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "gpu"};
	cr_assert_eq(fdn_register(s, "svc/a", 5, getpid(), &a, 1, 0, NULL), 0);
	cr_assert_eq(fdn_register(s, "other", 5, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_update_attributes(s, "svc/a", 5, NULL, 0), 0);
	cr_assert_eq(fdn_unregister(s, "svc/a", 5), 0);
	cr_assert_eq(fdn_unregister(s, "nope", 4), FDN_ENOTFOUND); /* no record */
	struct fdn_change c[8];
	int n = read_n(sub, c, 3);
	cr_assert_eq(n, 3);
	cr_assert_eq(c[0].kind, FDN_CHANGE_REGISTERED);
	cr_assert_eq(c[1].kind, FDN_CHANGE_UPDATED);
	cr_assert_eq(c[2].kind, FDN_CHANGE_UNREGISTERED);
	for (int i = 0; i < 3; i++) {
		cr_assert_str_eq(c[i].key, "svc/a");
		cr_assert_eq(c[i].pid, getpid());
		cr_assert_eq(c[i].death, FDN_NO_DEATH);
		if (i)
			cr_assert_gt(c[i].revision, c[i - 1].revision);
	}
	/* "other" took a revision between them, filtered out (revisions may
	 * also skip one voided by a reader: a writer preempted for 10 ms
	 * between reserving it and claiming its record takes the next). */
	cr_assert_geq(c[1].revision, c[0].revision + 2);
	cr_assert_eq(fdn_subscription_revision(sub), c[2].revision);
	cr_assert_eq(fdn_subscription_read(sub, c, 8), 0);
	struct fdn_changes_stats st;
	cr_assert_eq(fdn_changes_stats(s, &st), 0);
	cr_assert_eq(st.revision, c[2].revision);
	cr_assert_eq(st.subscribers, 1);
	cr_assert_eq(st.capacity, 16384);
	/* The log without a subscription: all four, oldest first. */
	n = fdn_changes_read(s, NULL, 0, 0, c, 8);
	cr_assert_eq(n, 4);
	cr_assert_str_eq(c[1].key, "other");
	fdn_subscription_close(sub);
	cr_assert_eq(fdn_changes_stats(s, &st), 0);
	cr_assert_eq(st.subscribers, 0);
	done(s, name);
}

Test(changefeed, no_log_option)
{
	char name[64];
	t_name(name, sizeof(name), "cf-off");
	fdn_segment *s = create_log(name, FDN_CHANGES_OFF);
	fdn_subscription *sub = NULL;
	cr_assert_eq(fdn_subscribe(s, NULL, 0, 0, &sub), FDN_ENOLOG);
	cr_assert_eq(fdn_register(s, "k", 1, getpid(), NULL, 0, 0, NULL), 0);
	struct fdn_changes_stats st;
	cr_assert_eq(fdn_changes_stats(s, &st), 0);
	cr_assert_eq(st.capacity, 0);
	cr_assert_eq(st.revision, 0);
	done(s, name);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.changes = 1000; /* not a power of two */
	cr_assert_eq(fdn_segment_create(name, &o, &s), FDN_EINVAL);
}

/* A child that registers keys and is killed: REMOVED records with the
 * death's graveyard number. */
Test(changefeed, death_removals_carry_the_graveyard_number)
{
	char name[64];
	t_name(name, sizeof(name), "cf-death");
	fdn_segment *s = create_log(name, 0);
	fdn_subscription *sub;
	cr_assert_eq(fdn_subscribe(s, "d/", 2, 0, &sub), 0);
	_Atomic int *ready = t_shared(sizeof(*ready));
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		for (int i = 0; i < 3; i++) {
			char k[16];
			snprintf(k, sizeof(k), "d/%d", i);
			if (fdn_register(c, k, strlen(k), getpid(), NULL, 0, 0, NULL))
				_exit(2);
		}
		atomic_store(ready, 1);
		pause();
		_exit(0);
	}
	t_wait_ready(ready, p);
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
	struct fdn_change c[6];
	int n = read_n(sub, c, 6);
	cr_assert_eq(n, 6, "got %d changes", n);
	struct fdn_death d;
	for (int i = 0; i < 100 && (fdn_graveyard(s, &d, 1) != 1 || d.pid != p); i++)
		t_sleep_ms(20);
	cr_assert_eq(d.pid, p);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(c[i].kind, FDN_CHANGE_REGISTERED);
		cr_assert_eq(c[3 + i].kind, FDN_CHANGE_REMOVED);
		cr_assert_eq(c[3 + i].pid, p);
		cr_assert_eq(c[3 + i].death, d.number, "death %llu, graveyard %llu",
			     (unsigned long long)c[3 + i].death, (unsigned long long)d.number);
	}
	fdn_subscription_close(sub);
	done(s, name);
}

/* key -> pid, as a subscriber reconstructs it. */
#define MAXK 256
struct model {
	char key[MAXK][32];
	pid_t pid[MAXK];
	int n;
};

static int model_find(struct model *m, const char *k, uint32_t kl)
{
	for (int i = 0; i < m->n; i++)
		if (strlen(m->key[i]) == kl && memcmp(m->key[i], k, kl) == 0)
			return i;
	return -1;
}

static void model_set(struct model *m, const char *k, uint32_t kl, pid_t pid)
{
	int i = model_find(m, k, kl);
	if (i < 0) {
		cr_assert_lt(m->n, MAXK);
		i = m->n++;
		memcpy(m->key[i], k, kl);
		m->key[i][kl] = 0;
	}
	m->pid[i] = pid;
}

static void model_del(struct model *m, const char *k, uint32_t kl)
{
	int i = model_find(m, k, kl);
	if (i >= 0) {
		m->n--;
		memcpy(m->key[i], m->key[m->n], sizeof(m->key[i]));
		m->pid[i] = m->pid[m->n];
	}
}

static void model_apply(struct model *m, const struct fdn_change *c)
{
	if (c->kind == FDN_CHANGE_REGISTERED || c->kind == FDN_CHANGE_UPDATED)
		model_set(m, c->key, c->key_len, c->pid);
	else
		model_del(m, c->key, c->key_len);
}

static int snap_cb(void *arg, const void *key, uint32_t kl, pid_t pid)
{
	struct model *m = arg;
	cr_assert_lt(kl, 32u);
	model_set(m, key, kl, pid);
	return 0;
}

static int cmp_cb(void *arg, const struct fdn_entry_view *e)
{
	struct model *m = arg;
	int i = model_find(m, e->key, e->key_len);
	cr_assert_geq(i, 0, "registry has %.*s, the model not", (int)e->key_len,
		      (const char *)e->key);
	cr_assert_eq(m->pid[i], e->pid, "%s: pid %d in the model, %d in the registry", m->key[i],
		     (int)m->pid[i], (int)e->pid);
	return 0;
}

static void assert_model_is_registry(fdn_segment *s, struct model *m)
{
	int n = fdn_foreach(s, cmp_cb, m);
	cr_assert_eq(n, m->n, "registry %d entries, model %d", n, m->n);
}

/* A 16-record log: a subscriber that does not read for 40 changes is told
 * FDN_EOVERFLOW, resynchronises from a snapshot and misses nothing. */
Test(changefeed, overrun_then_resync_from_a_snapshot)
{
	char name[64];
	t_name(name, sizeof(name), "cf-over");
	fdn_segment *s = create_log(name, 16);
	fdn_subscription *sub;
	cr_assert_eq(fdn_subscribe(s, NULL, 0, 0, &sub), 0);
	for (int i = 0; i < 40; i++) {
		char k[16];
		snprintf(k, sizeof(k), "o/%d", i % 12);
		if (i % 3 == 2)
			fdn_unregister_flags(s, k, strlen(k), FDN_REG_IF_PRESENT);
		else
			fdn_register(s, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE, NULL);
	}
	cr_assert(readable(fdn_subscription_fd(sub), 5000));
	struct fdn_change c[64];
	cr_assert_eq(fdn_subscription_read(sub, c, 64), FDN_EOVERFLOW);
	cr_assert_eq(fdn_subscription_read(sub, c, 64), FDN_EOVERFLOW, "stays until a seek");
	struct fdn_changes_stats st;
	fdn_changes_stats(s, &st);
	cr_assert_geq(st.overruns, 1);
	struct model *m = calloc(1, sizeof(*m));
	uint64_t rev;
	int n = fdn_registry_snapshot(s, NULL, 0, snap_cb, m, &rev);
	cr_assert_geq(n, 0, "snapshot: %s", fdn_strerror(n));
	cr_assert_eq(rev, st.revision);
	cr_assert_eq(fdn_subscription_seek(sub, rev), 0);
	for (int i = 0; i < 10; i++) {
		char k[16];
		snprintf(k, sizeof(k), "o/%d", i);
		fdn_register(s, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE, NULL);
		if (i & 1)
			fdn_unregister(s, k, strlen(k));
	}
	int got = read_n(sub, c, 15);
	cr_assert_eq(got, 15);
	for (int i = 0; i < got; i++) {
		cr_assert_gt(c[i].revision, i ? c[i - 1].revision : rev, "in order, no repeat");
		model_apply(m, &c[i]);
	}
	assert_model_is_registry(s, m);
	free(m);
	fdn_subscription_close(sub);
	done(s, name);
}

/* Writers' time for n register+unregister pairs. */
static uint64_t churn_ms(fdn_segment *s, int n)
{
	uint64_t t0 = t_mono_ms();
	for (int i = 0; i < n; i++) {
		char k[16];
		snprintf(k, sizeof(k), "c/%d", i % 64);
		fdn_register(s, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE, NULL);
		fdn_unregister(s, k, strlen(k));
	}
	return t_mono_ms() - t0;
}

/* A subscriber in another process stopped with SIGSTOP for 5 s: the
 * writers' churn meanwhile takes about what it takes with no subscriber
 * (a generous bound: the machine is shared), and the subscriber, once
 * continued, learns of the overrun. */
Test(changefeed, stopped_subscriber_does_not_slow_writers, .timeout = 120)
{
	char name[64];
	t_name(name, sizeof(name), "cf-stop");
	fdn_segment *s = create_log(name, 1024);
	uint64_t base = churn_ms(s, 20000);
	_Atomic int *shared = t_shared(sizeof(int) * 2);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		fdn_subscription *sub;
		if (fdn_segment_attach(name, 0, &c) || fdn_subscribe(c, NULL, 0, 0, &sub))
			_exit(1);
		atomic_store(&shared[0], 1);
		struct fdn_change ch[64];
		for (;;) {
			if (!readable(fdn_subscription_fd(sub), 10000))
				_exit(3);
			int r = fdn_subscription_read(sub, ch, 64);
			if (r == FDN_EOVERFLOW) {
				atomic_store(&shared[1], 1);
				_exit(0);
			}
		}
	}
	t_wait_ready(&shared[0], p);
	kill(p, SIGSTOP);
	uint64_t t0 = t_mono_ms();
	uint64_t stopped = 0;
	int rounds = 0;
	while (t_mono_ms() - t0 < 5000) {
		stopped += churn_ms(s, 20000);
		rounds++;
	}
	kill(p, SIGCONT);
	uint64_t per = stopped / (uint64_t)rounds;
	printf("churn of 20000 pairs: %llu ms without a subscriber, %llu ms with one stopped\n",
	       (unsigned long long)base, (unsigned long long)per);
	cr_assert_leq(per, base * 3 + 200, "stopped subscriber: %llu ms vs %llu ms",
		      (unsigned long long)per, (unsigned long long)base);
	/* Writes after the continue wake it; it finds the overrun. */
	churn_ms(s, 2000);
	cr_assert(t_wait_ok(p), "subscriber did not see the overrun");
	cr_assert_eq(atomic_load(&shared[1]), 1);
	done(s, name);
}

/* A writer stopped with a record PENDING holds readers back (head of
 * line); killed there, the reaper settles the record as the registry ends
 * up, and the reader goes on.  The stop is made deterministic by stopping
 * a writer that is inside its op: it registers in a loop, and the test
 * looks for a PENDING record of its slot. */
Test(changefeed, writer_killed_mid_change_is_settled_by_the_reaper, .timeout = 120)
{
	char name[64];
	t_name(name, sizeof(name), "cf-kill");
	fdn_segment *s = create_log(name, 0);
	int settled = 0;
	for (int round = 0; round < 20; round++) {
		_Atomic int *ready = t_shared(sizeof(*ready));
		pid_t p = t_fork();
		if (p == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(1);
			atomic_store(ready, 1);
			for (unsigned i = 0;; i++) {
				char k[16];
				snprintf(k, sizeof(k), "k/%u", i % 8);
				fdn_register(c, k, strlen(k), getpid(), NULL, 0, FDN_REG_REPLACE,
					     NULL);
				fdn_unregister(c, k, strlen(k));
			}
		}
		t_wait_ready(ready, p);
		t_sleep_ms(5 + (unsigned)(round * 7) % 20);
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		munmap(ready, sizeof(*ready));
		/* After the reaper: every revision is decided, and the log ends
		 * with the registry empty of k/ keys once replayed. */
		struct model *m = calloc(1, sizeof(*m));
		uint64_t rev;
		int n = -1;
		for (int i = 0; i < 100; i++) {
			n = fdn_registry_snapshot(s, "k/", 2, snap_cb, m, &rev);
			if (n == 0)
				break;
			m->n = 0;
			t_sleep_ms(20);
		}
		cr_assert_eq(n, 0, "k/ entries of the dead writer stay: %d", n);
		/* No record still pending. */
		struct fdn_changes_stats st;
		fdn_changes_stats(s, &st);
		uint64_t lo = st.revision > 16384 ? st.revision - 16383 : 1;
		for (uint64_t r = lo; r <= st.revision; r++) {
			struct fdn__chg_rec rec;
			int g = fdn__chg_get(s, r, &rec);
			cr_assert(g == FDN__CHG_DONE || g == FDN__CHG_VOID || g == FDN__CHG_GONE,
				  "revision %llu still %d", (unsigned long long)r, g);
		}
		/* Every registered key was removed by a later record. */
		struct fdn_change *c = calloc(16384, sizeof(*c));
		int got = fdn_changes_read(s, "k/", 2, 0, c, 16384);
		struct model *mm = calloc(1, sizeof(*mm));
		for (int i = 0; i < got; i++)
			model_apply(mm, &c[i]);
		cr_assert_eq(mm->n, 0, "the log leaves %d k/ keys", mm->n);
		settled++;
		free(c);
		free(mm);
		free(m);
	}
	cr_assert_eq(settled, 20);
	done(s, name);
}
