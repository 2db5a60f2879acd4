/*
 * test_flags.c - feature flags, migration stages and the local backends,
 * with real fork()ed processes: percentage rollout, the full table of stage
 * moves and their history, a flip seen by another process, registry
 * workers under 100 flips, local entries invisible elsewhere, enforcement,
 * no segment at all, bad input, a writer killed holding the flags lock,
 * and the checker on a damaged flags region.
 */
#include "common.h"

#include <foundation/context.h>
#include <foundation/spans.h>
#include "lib/internal.h"

#include <foundation/flags.h>
#include <xxhash.h>
#include <foundation/registry.h>

#include <sched.h>

static const char *const builtins[FDN_FLAGS_BUILTIN] = {
    "use_shm_registry",
    "use_shm_error_context",
    "use_shm_telemetry",
    "use_shm_spans",
    "use_shm_sampled_events",
    "enforce_no_local_state",
    "enable_migration_monitoring",
};

static fdn_segment *mk(char *name, size_t cap, const char *tag, const char *defaults)
{
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 4096;
	o.processes = 64;
	o.threads = 64;
	o.spans = 32; /* every worker holds one */
	o.events = 16;
	o.flag_defaults = defaults;
	t_name(name, cap, tag);
	fdn_segment *s = NULL;
	int r = fdn_segment_create(name, &o, &s);
	cr_assert_eq(r, 0, "create %s: %s", name, fdn_strerror(r));
	return s;
}

static void done(fdn_segment *s, const char *name)
{
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

static void assert_profile(fdn_segment *s, int stage)
{
	cr_assert_eq(fdn_stage(s), stage, "stage %d, expected %d", fdn_stage(s), stage);
	for (int i = 0; i < (int)FDN_FLAGS_BUILTIN; i++) {
		int want = fdn_stage_profile_has(stage, builtins[i]) ? FDN_FLAG_ON : FDN_FLAG_OFF;
		cr_assert_eq(fdn_flag_get(s, builtins[i]), want, "stage %d: %s = %d, expected %d",
			     stage, builtins[i], fdn_flag_get(s, builtins[i]), want);
	}
}

/* ---- values, defaults, bad input ----------------------------------------- */

Test(flags, defaults_are_stage_3_and_reset_restores)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "dflt", NULL);
	assert_profile(s, 3);
	cr_assert(fdn_flag_enabled(s, "use_shm_registry"));
	cr_assert_not(fdn_flag_enabled(s, "enforce_no_local_state"));
	cr_assert_eq(fdn_flag_set(s, "use_shm_spans", 40), 0);
	cr_assert_eq(fdn_flag_create(s, "checkout.v2", 10), 0);
	cr_assert_eq(fdn_flag_set(s, "checkout.v2", 90), 0);
	cr_assert_eq(fdn_stage_migrate(s, 4), 0);
	assert_profile(s, 4);
	cr_assert_eq(fdn_flags_reset(s), 0);
	assert_profile(s, 3);
	cr_assert_eq(fdn_flag_get(s, "checkout.v2"), 10);
	struct fdn_flag_info fl[FDN_FLAGS_MAX];
	cr_assert_eq(fdn_flags_list(s, fl, FDN_FLAGS_MAX), 8);
	for (int i = 0; i < 7; i++) {
		cr_assert_str_eq(fl[i].name, builtins[i]);
		cr_assert(fl[i].builtin);
	}
	cr_assert_str_eq(fl[7].name, "checkout.v2");
	cr_assert_eq(fl[7].default_value, 10);
	cr_assert_not(fl[7].builtin);
	done(s, name);
}

Test(flags, creation_defaults_from_options_and_environment)
{
	char name[64];
	fdn_segment *s =
	    mk(name, sizeof(name), "opt",
	       "use_shm_registry=on,enable_migration_monitoring=on,use_shm_telemetry=off,"
	       "use_shm_spans=off,use_shm_sampled_events=25,use_shm_error_context=off");
	/* Stage 1's flags on, the others off but one at 25 %: stage 1. */
	cr_assert_eq(fdn_stage(s), 1);
	cr_assert_eq(fdn_flag_get(s, "use_shm_registry"), 100);
	cr_assert_eq(fdn_flag_get(s, "enable_migration_monitoring"), 100);
	cr_assert_eq(fdn_flag_get(s, "use_shm_error_context"), 0);
	cr_assert_eq(fdn_flag_get(s, "use_shm_spans"), 0);
	cr_assert_eq(fdn_flag_get(s, "use_shm_sampled_events"), 25);
	cr_assert_eq(fdn_flag_get(s, "enforce_no_local_state"), 0);
	done(s, name);

	setenv("FOUNDATION_FLAGS", "use_shm_registry=off,enable_migration_monitoring=0", 1);
	s = mk(name, sizeof(name), "env", NULL);
	cr_assert_eq(fdn_stage(s), 0);
	cr_assert_eq(fdn_flag_get(s, "use_shm_registry"), 0);
	cr_assert_eq(fdn_flag_get(s, "use_shm_spans"), 100);
	done(s, name);
	/* flag_defaults wins over the environment. */
	s = mk(name, sizeof(name), "envopt", "");
	assert_profile(s, 3);
	done(s, name);
	unsetenv("FOUNDATION_FLAGS");

	/* Bad text: a clear error, and no segment left behind. */
	static const struct {
		const char *text;
		int err;
	} bad[] = {
	    {"use_shm_registry=maybe", FDN_EINVAL},
	    {"use_shm_registry=101", FDN_EPERCENT},
	    {"no_such_flag=on", FDN_EUNKFLAG},
	    {"use_shm_registry", FDN_EINVAL},
	    {"use_shm_registry=on,", FDN_EINVAL},
	    {",use_shm_registry=on", FDN_EINVAL},
	    {"9lives=on", FDN_EINVAL},
	    {"use_shm_spans=on,use_shm_spans=off", FDN_EINVAL},
	    {"use_shm_spans=-1", FDN_EPERCENT},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct fdn_segment_opts o;
		fdn_segment_opts_init(&o);
		o.entries = 1024;
		o.flag_defaults = bad[i].text;
		fdn_segment *x = NULL;
		t_name(name, sizeof(name), "bad");
		cr_assert_eq(fdn_segment_create(name, &o, &x), bad[i].err, "\"%s\"", bad[i].text);
		cr_assert_null(x);
		cr_assert_eq(fdn_segment_attach(name, 0, &x), FDN_ENOSEG);
	}
}

Test(flags, bad_input_changes_nothing)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "badin", NULL);
	uint64_t h0 = fdn_flags_history_total(s);
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 101), FDN_EPERCENT);
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", -1), FDN_EPERCENT);
	cr_assert_eq(fdn_flag_set(s, "nope", 1), FDN_EUNKFLAG);
	cr_assert_eq(fdn_flag_set(s, "", 1), FDN_EINVAL);
	cr_assert_eq(fdn_flag_set(s, NULL, 1), FDN_EINVAL);
	cr_assert_eq(fdn_flag_get(s, "nope"), FDN_EUNKFLAG);
	cr_assert_not(fdn_flag_enabled(s, "nope"));
	cr_assert_not(fdn_flag_enabled_for_id(s, "nope", 7));
	cr_assert_eq(fdn_flag_create(s, "use_shm_registry", 0), FDN_EEXISTS);
	cr_assert_eq(fdn_flag_create(s, "bad name", 0), FDN_EINVAL);
	cr_assert_eq(fdn_flag_create(s, "_x", 0), FDN_EINVAL);
	char longname[64];
	memset(longname, 'a', 48);
	longname[48] = 0;
	cr_assert_eq(fdn_flag_create(s, longname, 0), FDN_EINVAL);
	longname[47] = 0;
	cr_assert_eq(fdn_flag_create(s, longname, 0), 0);
	cr_assert_eq(fdn_flag_create(s, "x1", 101), FDN_EPERCENT);
	char reason[200];
	memset(reason, 'r', 128);
	reason[128] = 0;
	cr_assert_eq(fdn_stage_rollback(s, 1, reason), FDN_ETOOBIG);
	cr_assert_eq(fdn_stage_emergency_rollback(s, reason), FDN_ETOOBIG);
	assert_profile(s, 3);
	cr_assert_eq(fdn_flags_history_total(s), h0 + 1); /* only the create */
	/* The table fills up: FDN_ENOSPACE, and the flags stay. */
	for (int i = 9; i <= FDN_FLAGS_MAX + 1; i++) {
		char n[16];
		snprintf(n, sizeof(n), "u%d", i);
		cr_assert_eq(fdn_flag_create(s, n, i % 101), i <= FDN_FLAGS_MAX ? 0 : FDN_ENOSPACE,
			     "create %s", n);
	}
	cr_assert_eq(fdn_flags_list(s, NULL, 0), FDN_FLAGS_MAX);
	cr_assert_eq(fdn_flag_get(s, "u100"), 100);
	/* Values parse. */
	int v;
	cr_assert_eq(fdn_flag_parse_value("on", &v), 0);
	cr_assert_eq(v, 100);
	cr_assert_eq(fdn_flag_parse_value("off", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(fdn_flag_parse_value("35%", &v), 0);
	cr_assert_eq(v, 35);
	cr_assert_eq(fdn_flag_parse_value("101", &v), FDN_EPERCENT);
	cr_assert_eq(fdn_flag_parse_value("99999999999", &v), FDN_EPERCENT);
	cr_assert_eq(fdn_flag_parse_value("", &v), FDN_EINVAL);
	cr_assert_eq(fdn_flag_parse_value("1x", &v), FDN_EINVAL);
	/* A read-only handle reads and cannot write. */
	fdn_segment *ro;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &ro), 0);
	cr_assert_eq(fdn_flag_get(ro, "u100"), 100);
	cr_assert_eq(fdn_flag_set(ro, "u100", 1), FDN_ERDONLY);
	cr_assert_eq(fdn_stage_migrate(ro, 4), FDN_ERDONLY);
	fdn_segment_detach(ro);
	done(s, name);
}

/* ---- percentage rollout -------------------------------------------------- */

static int count_on(fdn_segment *s, const char *flag, unsigned char *bits)
{
	int n = 0;
	for (uint64_t id = 0; id < 1000; id++) {
		bool on = fdn_flag_enabled_for_id(s, flag, id);
		if (bits)
			bits[id] = on;
		n += on;
	}
	return n;
}

Test(flags, percentage_rollout)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "pct", NULL);
	cr_assert_eq(fdn_flag_create(s, "rollout", 50), 0);
	int at50 = count_on(s, "rollout", NULL);
	cr_assert(at50 >= 400 && at50 <= 600, "%d of 1000 on at 50 %%", at50);
	static const int ps[] = {0, 25, 50, 75, 100};
	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(fdn_flag_set(s, "rollout", ps[i]), 0);
		int n = count_on(s, "rollout", NULL);
		cr_assert(abs(n / 10 - ps[i]) <= 10, "%d of 1000 on at %d %%", n, ps[i]);
		if (ps[i] == 0 || ps[i] == 100)
			cr_assert_eq(n, ps[i] * 10);
	}
	/* Monotone: every id on at p is on at p + 1. */
	static unsigned char prev[1000], cur[1000];
	cr_assert_eq(fdn_flag_set(s, "rollout", 0), 0);
	count_on(s, "rollout", prev);
	for (int p = 1; p <= 100; p++) {
		cr_assert_eq(fdn_flag_set(s, "rollout", p), 0);
		count_on(s, "rollout", cur);
		for (int id = 0; id < 1000; id++)
			cr_assert(!prev[id] || cur[id], "id %d on at %d %% but off at %d %%", id,
				  p - 1, p);
		memcpy(prev, cur, sizeof(prev));
	}
	/* Another process computes the same answers. */
	cr_assert_eq(fdn_flag_set(s, "rollout", 37), 0);
	unsigned char *theirs = t_shared(1000);
	static unsigned char mine[1000];
	count_on(s, "rollout", mine);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		count_on(c, "rollout", theirs);
		fdn_segment_detach(c);
		_exit(0);
	}
	cr_assert(t_wait_ok(p));
	cr_assert_eq(memcmp(mine, theirs, 1000), 0);
	/* And the process-memory flags agree too (the hash has no seed of
	 * the segment's). */
	cr_assert_eq(fdn_flag_create(NULL, "rollout", 37), 0);
	count_on(NULL, "rollout", theirs);
	cr_assert_eq(memcmp(mine, theirs, 1000), 0);
	done(s, name);
}

/* String ids: 1 000 user names. */
static int count_on_keys(fdn_segment *s, const char *flag, unsigned char *bits)
{
	int n = 0;
	char key[32];
	for (int i = 0; i < 1000; i++) {
		int kl = snprintf(key, sizeof(key), "user-%d@example.org", i);
		bool on = fdn_flag_enabled_for_key(s, flag, key, (size_t)kl);
		if (bits)
			bits[i] = on;
		n += on;
	}
	return n;
}

/* fdn_flag_enabled_for_key: the same rollout as by id (the key's XXH3 is
 * the id), deterministic in another process, monotone; bad input off. */
Test(flags, percentage_rollout_by_string_key)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "pctkey", NULL);
	cr_assert_eq(fdn_flag_create(s, "by.key", 50), 0);
	int at50 = count_on_keys(s, "by.key", NULL);
	cr_assert(at50 >= 400 && at50 <= 600, "%d of 1000 on at 50 %%", at50);
	cr_assert_eq(fdn_flag_enabled_for_key(s, "by.key", "alice", 5),
		     fdn_flag_enabled_for_id(s, "by.key", XXH3_64bits("alice", 5)));
	static unsigned char prev[1000], cur[1000];
	cr_assert_eq(fdn_flag_set(s, "by.key", 0), 0);
	cr_assert_eq(count_on_keys(s, "by.key", prev), 0);
	for (int p = 1; p <= 100; p++) {
		cr_assert_eq(fdn_flag_set(s, "by.key", p), 0);
		int n = count_on_keys(s, "by.key", cur);
		for (int i = 0; i < 1000; i++)
			cr_assert(!prev[i] || cur[i], "key %d on at %d %% but off at %d %%", i,
				  p - 1, p);
		if (p == 100)
			cr_assert_eq(n, 1000);
		memcpy(prev, cur, sizeof(prev));
	}
	cr_assert_eq(fdn_flag_set(s, "by.key", 30), 0);
	static unsigned char mine[1000];
	unsigned char *theirs = t_shared(1000);
	count_on_keys(s, "by.key", mine);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		count_on_keys(c, "by.key", theirs);
		fdn_segment_detach(c);
		_exit(0);
	}
	cr_assert(t_wait_ok(p));
	cr_assert_eq(memcmp(mine, theirs, 1000), 0);
	cr_assert_not(fdn_flag_enabled_for_key(s, "nope", "k", 1));
	cr_assert_not(fdn_flag_enabled_for_key(s, "by.key", NULL, 3));
	static char big[300];
	memset(big, 'k', sizeof(big));
	cr_assert_not(fdn_flag_enabled_for_key(s, "by.key", big, sizeof(big)));
	cr_assert_eq(fdn_flag_set(s, "by.key", 100), 0);
	cr_assert(fdn_flag_enabled_for_key(s, "by.key", "", 0), "the empty key is an id too");
	done(s, name);
}

/* ---- stages ---------------------------------------------------------------- */

static struct fdn_flag_change seen_events[512];
static int nseen;

static void on_change(void *arg, const struct fdn_flag_change *c)
{
	(void)arg;
	if (nseen < 512)
		seen_events[nseen++] = *c;
}

enum move { MIGRATE, ROLLBACK, EMERGENCY };

static void go_to_stage(fdn_segment *s, int stage)
{
	cr_assert_eq(fdn_stage_emergency_rollback(s, "setup"), 0);
	for (int k = 1; k <= stage; k++)
		cr_assert_eq(fdn_stage_migrate(s, k), 0);
	assert_profile(s, stage);
}

/* The history since h0 is exactly: a record per built-in that differs
 * between the two profiles, in flag order, then the stage record (then,
 * for an emergency rollback, its alert record). */
static void assert_stage_history(fdn_segment *s, uint64_t h0, int from, int to, const char *reason,
				 bool alert)
{
	struct fdn_flag_change h[FDN_FLAGS_HISTORY];
	uint64_t total = fdn_flags_history_total(s);
	int n = fdn_flags_history(s, h, (int)(total - h0));
	cr_assert_eq((uint64_t)n, total - h0);
	int k = 0;
	for (int i = 0; i < (int)FDN_FLAGS_BUILTIN; i++) {
		bool a = fdn_stage_profile_has(from, builtins[i]);
		bool b = fdn_stage_profile_has(to, builtins[i]);
		if (a == b)
			continue;
		cr_assert(k < n);
		cr_assert_eq(h[k].number, h0 + (uint64_t)k);
		cr_assert_eq(h[k].kind, FDN_CHANGE_FLAG);
		cr_assert_str_eq(h[k].flag, builtins[i]);
		cr_assert_eq(h[k].from, a ? 100 : 0);
		cr_assert_eq(h[k].to, b ? 100 : 0);
		cr_assert_eq(h[k].pid, getpid());
		cr_assert_str_eq(h[k].reason, reason);
		k++;
	}
	cr_assert_eq(k, n - 1 - alert, "%d flag records, %d in all", k, n);
	if (alert) {
		cr_assert_eq(h[n - 1].kind, FDN_CHANGE_ALERT);
		cr_assert_str_eq(h[n - 1].flag, "emergency_rollback");
		cr_assert_eq(h[n - 1].from, from);
		cr_assert_eq(h[n - 1].to, to);
		cr_assert_str_eq(h[n - 1].reason, reason);
		cr_assert_eq(h[n - 1].number, h0 + (uint64_t)n - 1);
	}
	cr_assert_eq(h[k].kind, FDN_CHANGE_STAGE);
	cr_assert_eq(h[k].from, from);
	cr_assert_eq(h[k].to, to);
	cr_assert_str_eq(h[k].flag, "");
	cr_assert_str_eq(h[k].reason, reason);
	cr_assert(h[k].time_ns >= h[0].time_ns);
	/* The events: the same changes, in the same order. */
	cr_assert_eq(nseen, n);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(seen_events[i].number, h[i].number);
		cr_assert_eq(seen_events[i].kind, h[i].kind);
		cr_assert_str_eq(seen_events[i].flag, h[i].flag);
		cr_assert_eq(seen_events[i].from, h[i].from);
		cr_assert_eq(seen_events[i].to, h[i].to);
	}
}

Test(flags, stage_table)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "stage", NULL);
	fdn__flags_set_hook(on_change, NULL);
	int moves = 0, refused = 0;
	for (int start = 0; start <= 4; start++) {
		for (int how = MIGRATE; how <= EMERGENCY; how++) {
			for (int n = -1; n <= 5; n++) {
				if (how == EMERGENCY && n != 0)
					continue;
				go_to_stage(s, start);
				uint64_t h0 = fdn_flags_history_total(s);
				nseen = 0;
				bool ok = how == MIGRATE    ? n == start + 1 && n <= 4
					  : how == ROLLBACK ? n >= 0 && n < start
							    : true;
				int r = how == MIGRATE ? fdn_stage_migrate(s, n)
					: how == ROLLBACK
					    ? fdn_stage_rollback(s, n, "bad deploy")
					    : fdn_stage_emergency_rollback(s, "pager");
				const char *why = how == MIGRATE    ? "migrate"
						  : how == ROLLBACK ? "bad deploy"
								    : "pager";
				if (!ok) {
					cr_assert_eq(r, FDN_ESTAGE, "start %d, move %d to %d: %s",
						     start, how, n, fdn_errname(r));
					assert_profile(s, start);
					cr_assert_eq(fdn_flags_history_total(s), h0);
					cr_assert_eq(nseen, 0);
					refused++;
					continue;
				}
				cr_assert_eq(r, 0, "start %d, move %d to %d: %s", start, how, n,
					     fdn_errname(r));
				int to = how == EMERGENCY ? 0 : n;
				assert_profile(s, to);
				assert_stage_history(s, h0, start, to, why, how == EMERGENCY);
				moves++;
			}
		}
	}
	/* 4 migrations, 10 rollbacks and 5 emergencies are valid; every other
	 * of the 5 x (7 + 7) moves is refused. */
	cr_assert_eq(moves, 4 + 10 + 5);
	cr_assert_eq(refused, 5 * 14 - 14);
	fdn__flags_set_hook(NULL, NULL);
	/* A built-in flag set by hand, then an emergency from stage 0 clears it. */
	go_to_stage(s, 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_spans", 30), 0);
	cr_assert_eq(fdn_stage(s), 0);
	cr_assert_eq(fdn_stage_emergency_rollback(s, NULL), 0);
	assert_profile(s, 0);
	struct fdn_flag_change h[3];
	cr_assert_eq(fdn_flags_history(s, h, 3), 3);
	cr_assert_str_eq(h[0].flag, "use_shm_spans");
	cr_assert_eq(h[0].from, 30);
	cr_assert_str_eq(h[1].reason, "emergency");
	cr_assert_eq(h[1].kind, FDN_CHANGE_STAGE);
	cr_assert_eq(h[2].kind, FDN_CHANGE_ALERT);
	cr_assert_str_eq(h[2].flag, "emergency_rollback");
	/* The ring keeps the last 64 of them all. */
	struct fdn_flag_change all[FDN_FLAGS_HISTORY + 8];
	uint64_t total = fdn_flags_history_total(s);
	cr_assert(total > FDN_FLAGS_HISTORY);
	cr_assert_eq(fdn_flags_history(s, all, FDN_FLAGS_HISTORY + 8), FDN_FLAGS_HISTORY);
	for (int i = 0; i < FDN_FLAGS_HISTORY; i++)
		cr_assert_eq(all[i].number, total - FDN_FLAGS_HISTORY + (uint64_t)i);
	done(s, name);
}

Test(flags, concurrent_migrations_one_wins)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "race", NULL);
	go_to_stage(s, 1);
	/* 6 processes race 50 rounds of "migrate to n+1"; exactly one wins
	 * each round. */
	int *wins = t_shared(sizeof(int) * 8);
	_Atomic int *round = t_shared(sizeof(int));
	for (int rnd = 0; rnd < 3; rnd++) {
		go_to_stage(s, 1);
		pid_t kids[6];
		memset(wins, 0, sizeof(int) * 8);
		atomic_store(round, 0);
		for (int i = 0; i < 6; i++) {
			if ((kids[i] = t_fork()) == 0) {
				fdn_segment *c;
				if (fdn_segment_attach(name, 0, &c))
					_exit(1);
				atomic_fetch_add(round, 1);
				while (atomic_load(round) < 6)
					sched_yield();
				int r = fdn_stage_migrate(c, 2);
				if (r == 0)
					__atomic_fetch_add(&wins[0], 1, __ATOMIC_SEQ_CST);
				else if (r != FDN_ESTAGE)
					_exit(2);
				fdn_segment_detach(c);
				_exit(0);
			}
		}
		for (int i = 0; i < 6; i++)
			cr_assert(t_wait_ok(kids[i]));
		cr_assert_eq(wins[0], 1);
		assert_profile(s, 2);
	}
	done(s, name);
}

/* ---- another process sees a flip at its next read ------------------------ */

Test(flags, flip_seen_by_another_process)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "flip", NULL);
	cr_assert_eq(fdn_flag_create(s, "beta", 0), 0);
	int go[2], back[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(back), 0);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		unsigned char cmd;
		/* Each byte: read both flags once, answer; 'x': flip one ourselves. */
		while (read(go[0], &cmd, 1) == 1) {
			if (cmd == 'q')
				break;
			if (cmd == 'x' && fdn_flag_set(c, "beta", 77) != 0)
				_exit(3);
			int v[2] = {fdn_flag_get(c, "beta"),
				    fdn__flag_on(c, FDN__FLAG_USE_SHM_REGISTRY)};
			if (write(back[1], v, sizeof(v)) != sizeof(v))
				_exit(2);
		}
		fdn_segment_detach(c);
		_exit(0);
	}
	for (int i = 0; i <= 20; i++) {
		int want = (i * 37) % 101;
		cr_assert_eq(fdn_flag_set(s, "beta", want), 0);
		cr_assert_eq(fdn_flag_set(s, "use_shm_registry", i % 2 ? 100 : 0), 0);
		int v[2];
		cr_assert_eq(write(go[1], "r", 1), 1);
		cr_assert_eq(read(back[0], v, sizeof(v)), (ssize_t)sizeof(v));
		cr_assert_eq(v[0], want);
		cr_assert_eq(v[1], i % 2);
	}
	/* And the other way round. */
	int v[2];
	cr_assert_eq(write(go[1], "x", 1), 1);
	cr_assert_eq(read(back[0], v, sizeof(v)), (ssize_t)sizeof(v));
	cr_assert_eq(fdn_flag_get(s, "beta"), 77);
	cr_assert_eq(write(go[1], "q", 1), 1);
	cr_assert(t_wait_ok(p));
	done(s, name);
}

/* ---- local and shared registries ------------------------------------------ */

static int reg(fdn_segment *s, const char *key)
{
	struct fdn_attr a = {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "gpu"};
	return fdn_register(s, key, strlen(key), getpid(), &a, 1, FDN_REG_REPLACE, NULL);
}

static int look(fdn_segment *s, const char *key)
{
	return fdn_lookup(s, key, strlen(key), 0, NULL);
}

Test(flags, local_entries_are_invisible_elsewhere)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "local", NULL);
	cr_assert_eq(reg(s, "shared-1"), 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 0), 0);
	cr_assert_eq(reg(s, "local-1"), 0);
	cr_assert_eq(look(s, "local-1"), 0);
	cr_assert_eq(look(s, "shared-1"), FDN_ENOTFOUND); /* the shared one is not local */
	cr_assert_eq(fdn_count(s), 1);
	cr_assert_eq(fdn_attr_indexed(s, "capability"), false);
	struct fdn_attr gpu = {.type = FDN_ATTR_STRING, .v.s = "gpu"};
	cr_assert_eq(fdn_find_by_attribute(s, "capability", &gpu, NULL, NULL), 1);
	int go[2], back[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(back), 0);
	pid_t p = t_fork();
	if (p == 0) {
		/* A fork child starts with no local entries, and its own stay
		 * its own. */
		fdn_segment *c;
		unsigned char b;
		int res[6];
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		res[0] = look(c, "local-1"); /* flags off: our (empty) local */
		res[1] = reg(c, "local-2");  /* local, ours */
		res[2] = look(c, "local-2");
		res[3] = (int)fdn_count(c);
		if (write(back[1], res, sizeof(res)) != sizeof(res) || read(go[0], &b, 1) != 1)
			_exit(2);
		/* The parent turned the shared registry on. */
		res[0] = look(c, "local-1");
		res[1] = look(c, "shared-1");
		res[2] = look(c, "local-2");
		res[3] = (int)fdn_count(c);
		res[4] = fdn_lookup(NULL, "local-2", 7, 0, NULL); /* still in our local */
		res[5] = fdn_attr_indexed(c, "capability");
		if (write(back[1], res, sizeof(res)) != sizeof(res))
			_exit(2);
		fdn_segment_detach(c);
		_exit(0);
	}
	int res[6];
	cr_assert_eq(read(back[0], res, sizeof(res)), (ssize_t)sizeof(res));
	cr_assert_eq(res[0], FDN_ENOTFOUND);
	cr_assert_eq(res[1], 0);
	cr_assert_eq(res[2], 0);
	cr_assert_eq(res[3], 1);
	cr_assert_eq(look(s, "local-2"), FDN_ENOTFOUND); /* the child's local */
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 100), 0);
	cr_assert_eq(write(go[1], "g", 1), 1);
	cr_assert_eq(read(back[0], res, sizeof(res)), (ssize_t)sizeof(res));
	cr_assert_eq(res[0], FDN_ENOTFOUND);
	cr_assert_eq(res[1], 0);
	cr_assert_eq(res[2], FDN_ENOTFOUND);
	cr_assert_eq(res[3], 1);
	cr_assert_eq(res[4], 0);
	cr_assert_eq(res[5], 1);
	cr_assert(t_wait_ok(p));
	/* Back on the shared registry: the local entry waits in the local one. */
	cr_assert_eq(look(s, "local-1"), FDN_ENOTFOUND);
	cr_assert_eq(fdn_lookup(NULL, "local-1", 7, 0, NULL), 0);
	cr_assert_eq(fdn_unregister(NULL, "local-1", 7), 0);
	done(s, name);
}

Test(flags, enforcement_and_no_segment)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "enf", NULL);
	/* No segment: the local registry, under the process-memory flags. */
	cr_assert_eq(reg(NULL, "n-1"), 0);
	cr_assert_eq(look(NULL, "n-1"), 0);
	struct fdn_attr load = {.name = "load", .type = FDN_ATTR_INT, .v.i = 3};
	cr_assert_eq(fdn_merge_attributes(NULL, "n-1", 3, &load, 1), 0);
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(NULL, "n-1", 3, FDN_REG_CHECK_ALIVE, &e), 0);
	cr_assert_eq(e.pid, getpid());
	cr_assert_eq(fdn_attrs_count(e.attrs, e.attrs_len), 2);
	struct fdn_criterion q = {"load", FDN_CMP_GTE, {.type = FDN_ATTR_INT, .v.i = 2}};
	cr_assert_eq(fdn_query(NULL, &q, 1, NULL, NULL), 1);
	pid_t holder = 0;
	struct fdn_attr none[1];
	cr_assert_eq(fdn_register(NULL, "n-1", 3, getpid(), none, 0, 0, &holder), FDN_EEXISTS);
	cr_assert_eq(holder, getpid());
	cr_assert_eq(fdn_register(NULL, "", 0, getpid(), none, 0, 0, NULL), FDN_EINVKEY);
	cr_assert_eq(fdn_register(NULL, "n-2", 3, 0, none, 0, 0, NULL), FDN_EINVAL);
	cr_assert_eq(fdn_update_attributes(NULL, "n-9", 3, none, 0), FDN_ENOTFOUND);
	cr_assert_eq(fdn_watch(NULL, "n-1", 3, true, 0), 0);
	cr_assert_eq(fdn_watch(NULL, "n-3", 3, true, 10), FDN_ETIMEDOUT);
	cr_assert_eq(fdn_unregister(NULL, "n-1", 3), 0);
	cr_assert_eq(fdn_unregister(NULL, "n-1", 3), FDN_ENOTFOUND);
	cr_assert_eq(fdn_count(NULL), 0);

	/* Stage 4 enforces: the registry stays shared, so it works; with
	 * use_shm_registry turned off by hand, every call is refused. */
	cr_assert_eq(fdn_stage_migrate(s, 4), 0);
	cr_assert_eq(reg(s, "e-1"), 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 0), 0);
	cr_assert_eq(reg(s, "e-2"), FDN_EENFORCED);
	cr_assert_eq(look(s, "e-1"), FDN_EENFORCED);
	cr_assert_eq(fdn_count(s), FDN_EENFORCED);
	cr_assert_eq(fdn_foreach(s, NULL, NULL), FDN_EENFORCED);
	cr_assert_eq(fdn_unregister(s, "e-1", 3), FDN_EENFORCED);
	cr_assert_eq(fdn_watch(s, "e-1", 3, true, 0), FDN_EENFORCED);
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 100), 0);
	cr_assert_eq(look(s, "e-1"), 0);
	/* The same for the process-memory flags. */
	cr_assert_eq(fdn_flag_set(NULL, "enforce_no_local_state", 100), 0);
	cr_assert_eq(reg(NULL, "n-1"), FDN_EENFORCED);
	cr_assert_eq(look(NULL, "n-1"), FDN_EENFORCED);
	cr_assert_eq(fdn_flag_set(NULL, "enforce_no_local_state", 0), 0);
	cr_assert_eq(reg(NULL, "n-1"), 0);
	cr_assert_eq(fdn_unregister(NULL, "n-1", 3), 0);
	done(s, name);
}

/* The stage catalogue: every stage named, described, rated; its enables
 * exactly its profile's flags; bad input refused. */
Test(flags, stage_catalogue)
{
	static const char *const risks[] = {"none", "low", "medium", "high"};
	const char *names[FDN_STAGE_MAX + 1];
	int last_risk = -1;
	for (int n = 0; n <= FDN_STAGE_MAX; n++) {
		struct fdn_stage_info si;
		cr_assert_eq(fdn_stage_info(n, &si), 0);
		cr_assert_eq(si.stage, n);
		cr_assert(si.name && *si.name && si.description && *si.description &&
			  si.risk_note && *si.risk_note);
		int risk = -1;
		for (int k = 0; k < 4; k++)
			if (strcmp(si.risk, risks[k]) == 0)
				risk = k;
		cr_assert_geq(risk, 0, "stage %d: risk %s", n, si.risk);
		cr_assert_geq(risk, last_risk, "risk never falls with the stage");
		last_risk = risk;
		int on = 0;
		for (int i = 0; i < (int)FDN_FLAGS_BUILTIN; i++)
			on += fdn_stage_profile_has(n, builtins[i]);
		cr_assert_eq(si.nenables, on, "stage %d", n);
		for (int k = 0; k < si.nenables; k++)
			cr_assert(fdn_stage_profile_has(n, si.enables[k]), "%s", si.enables[k]);
		names[n] = si.name;
		for (int m = 0; m < n; m++)
			cr_assert_str_neq(names[m], si.name);
	}
	struct fdn_stage_info si;
	cr_assert_eq(fdn_stage_info(0, &si), 0);
	cr_assert_eq(si.nenables, 0);
	cr_assert_str_eq(si.risk, "none");
	cr_assert_eq(fdn_stage_info(4, &si), 0);
	cr_assert_str_eq(si.risk, "high");
	cr_assert_eq(fdn_stage_info(-1, &si), FDN_ESTAGE);
	cr_assert_eq(fdn_stage_info(FDN_STAGE_MAX + 1, &si), FDN_ESTAGE);
	cr_assert_eq(fdn_stage_info(1, NULL), FDN_EINVAL);
}

static void count_event(const struct fdn_event *ev, void *arg)
{
	(*(int *)arg)++;
}

/* Under enforcement with the sampled-events backend local, fdn_emit says
 * FDN_EENFORCED whether or not anybody listens (it used to say 0 with no
 * listener); in another process too; with the backend shared it emits. */
Test(flags, emit_under_enforcement_is_one_result)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "enf-emit", NULL);
	cr_assert_eq(fdn_stage_migrate(s, 4), 0);
	cr_assert_eq(fdn_emit(s, "app.x", NULL, 0, NULL, 0), 1, "shared: the ring takes it");
	cr_assert_eq(fdn_flag_set(s, "use_shm_sampled_events", 0), 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_telemetry", 0), 0); /* no ring either */
	cr_assert_eq(fdn_emit(s, "app.x", NULL, 0, NULL, 0), FDN_EENFORCED, "no listener");
	int seen = 0;
	cr_assert_eq(fdn_handler_attach("enf", "app", count_event, &seen), 0);
	cr_assert_eq(fdn_emit(s, "app.x", NULL, 0, NULL, 0), FDN_EENFORCED, "a listener");
	cr_assert_eq(seen, 0);
	cr_assert_eq(fdn_handler_detach("enf"), 0);
	pid_t p = t_fork();
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(2);
		int r = fdn_emit(c, "app.x", NULL, 0, NULL, 0);
		fdn_segment_detach(c);
		_exit(r == FDN_EENFORCED ? 0 : 3);
	}
	cr_assert(t_wait_ok(p));
	/* Bad input is still reported first. */
	cr_assert_eq(fdn_emit(s, "bad name", NULL, 0, NULL, 0), FDN_EEVNAME);
	cr_assert_eq(fdn_flag_set(s, "use_shm_sampled_events", 100), 0);
	cr_assert_eq(fdn_emit(s, "app.x", NULL, 0, NULL, 0), 0, "shared sampler, nobody listens");
	/* The process-memory flags: the same. */
	cr_assert_eq(fdn_flag_set(NULL, "enforce_no_local_state", 100), 0);
	cr_assert_eq(fdn_emit(NULL, "app.x", NULL, 0, NULL, 0), FDN_EENFORCED);
	cr_assert_eq(fdn_flag_set(NULL, "enforce_no_local_state", 0), 0);
	cr_assert_eq(fdn_emit(NULL, "app.x", NULL, 0, NULL, 0), 0);
	done(s, name);
}

/* ---- 10 registry workers while another process flips 100 times ------------ */

#define WORKERS 10

struct flipshare {
	_Atomic int started;
	_Atomic int stop;
	_Atomic long ops[WORKERS];
	_Atomic int phase; /* 1: flips done, register final keys; 2: check */
	_Atomic int ready[4];
	_Atomic int bad; /* a worker saw a result it should never see */
};

static bool allowed(int r)
{
	return r >= 0 || r == FDN_ENOTFOUND || r == FDN_EENFORCED;
}

static void wait_phase(struct flipshare *sh, int phase)
{
	while (atomic_load(&sh->phase) < phase)
		sched_yield();
}

static void worker(const char *name, struct flipshare *sh, int w)
{
	fdn_segment *s;
	if (fdn_segment_attach(name, 0, &s))
		_exit(1);
	char key[32];
	snprintf(key, sizeof(key), "w%d", w);
	struct fdn_attr a[2] = {{.name = "node", .type = FDN_ATTR_STRING, .v.s = "n1"},
				{.name = "n", .type = FDN_ATTR_INT, .v.i = w}};
	struct fdn_attr n1 = {.type = FDN_ATTR_STRING, .v.s = "n1"};
	atomic_fetch_add(&sh->started, 1);
	for (long k = 0; !atomic_load(&sh->stop); k++) {
		int r[6];
		r[0] = fdn_register(s, key, strlen(key), getpid(), a, 2, FDN_REG_REPLACE, NULL);
		r[1] = look(s, key);
		a[1].v.i = k;
		r[2] = fdn_merge_attributes(s, key, strlen(key), &a[1], 1);
		r[3] = fdn_find_by_attribute(s, "node", &n1, NULL, NULL);
		r[4] = (int)fdn_count(s);
		r[5] = fdn_unregister(s, key, strlen(key));
		/* Spans and error context under the same flips.  A flip
		 * between a start and its end sends the end to the other
		 * backend, where no span (or another one) is open: ENOSPAN,
		 * never a crash; spans so stranded may fill a stack. */
		int q[5];
		uint8_t buf[FDN_CTX_MAXLEN];
		size_t len;
		q[0] = fdn_span_start(s, "op", &a[1], 1, NULL);
		q[1] = fdn_ctx_set(s, &a[1], 1);
		q[2] = fdn_span_end(s, FDN_STATUS_OK);
		q[3] = fdn_ctx_get(s, buf, sizeof(buf), &len);
		q[4] = fdn_ctx_clear(s);
		for (int i = 0; i < 6; i++)
			if (!allowed(r[i]))
				atomic_store(&sh->bad, 1000 + i * 100 + (r[i] & 0xff));
		for (int i = 0; i < 5; i++)
			if (!allowed(q[i]) && q[i] != FDN_ENOSPAN && q[i] != FDN_ESTACKOVF)
				atomic_store(&sh->bad, 2000 + i * 100 + (q[i] & 0xff));
		atomic_fetch_add(&sh->ops[w], 1);
	}
	/* Phase 1: the registry is shared: a shared key; then local: a local
	 * key; then each checks what it sees. */
	wait_phase(sh, 1);
	/* What the loop's last round may have left: its register and its
	 * unregister may have gone to different backends. */
	fdn_unregister(s, key, strlen(key));
	fdn_unregister(NULL, key, strlen(key));
	snprintf(key, sizeof(key), "shared-%d", w);
	if (reg(s, key) != 0)
		atomic_store(&sh->bad, 2);
	atomic_fetch_add(&sh->ready[0], 1);
	wait_phase(sh, 2); /* use_shm_registry now off */
	snprintf(key, sizeof(key), "local-%d", w);
	if (reg(s, key) != 0)
		atomic_store(&sh->bad, 3);
	atomic_fetch_add(&sh->ready[1], 1);
	wait_phase(sh, 3); /* every worker registered its local key */
	for (int j = 0; j < WORKERS; j++) {
		snprintf(key, sizeof(key), "local-%d", j);
		if ((look(s, key) == 0) != (j == w))
			atomic_store(&sh->bad, 4);
		snprintf(key, sizeof(key), "shared-%d", j);
		if (fdn_lookup(NULL, key, strlen(key), 0, NULL) != FDN_ENOTFOUND)
			atomic_store(&sh->bad, 5);
	}
	if (fdn_count(s) != 1)
		atomic_store(&sh->bad, 6);
	atomic_fetch_add(&sh->ready[2], 1);
	wait_phase(sh, 4); /* shared again: every shared key, from here too */
	for (int j = 0; j < WORKERS; j++) {
		snprintf(key, sizeof(key), "shared-%d", j);
		if (look(s, key) != 0)
			atomic_store(&sh->bad, 7);
	}
	atomic_fetch_add(&sh->ready[3], 1);
	wait_phase(sh, 5); /* nobody looks any more: our entries may go */
	fdn_segment_detach(s);
	_exit(0);
}

static void flipper(const char *name, struct flipshare *sh)
{
	fdn_segment *s;
	if (fdn_segment_attach(name, 0, &s))
		_exit(1);
	while (atomic_load(&sh->started) < WORKERS)
		sched_yield();
	for (int i = 0; i < 100; i++) {
		/* Let every worker do some operations between two flips. */
		long before[WORKERS];
		for (int w = 0; w < WORKERS; w++)
			before[w] = atomic_load(&sh->ops[w]);
		int r;
		switch (i % 5) {
		case 0:
			r = fdn_flag_set(s, "use_shm_registry", 0);
			break;
		case 1:
			r = fdn_flag_set(s, "use_shm_registry", 100);
			break;
		case 2:
			r = fdn_stage_emergency_rollback(s, "flip");
			break;
		case 3:
			r = fdn_stage_migrate(s, 1);
			break;
		default: /* enforcement while local: FDN_EENFORCED for a while */
			r = fdn_flag_set(s, "use_shm_registry", 0) ?: fdn_flag_set(s, "enforce_no_local_state", 100) ?: fdn_flag_set(s, "enforce_no_local_state", 0);
			break;
		}
		if (r)
			_exit(2);
		for (int w = 0; w < WORKERS; w++)
			while (atomic_load(&sh->ops[w]) < before[w] + 2)
				sched_yield();
	}
	fdn_segment_detach(s);
	_exit(0);
}

Test(flags, registry_workers_under_100_flips, .timeout = 300)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "flips", NULL);
	struct flipshare *sh = t_shared(sizeof(*sh));
	pid_t kids[WORKERS + 1];
	for (int w = 0; w < WORKERS; w++)
		if ((kids[w] = t_fork()) == 0)
			worker(name, sh, w);
	if ((kids[WORKERS] = t_fork()) == 0)
		flipper(name, sh);
	cr_assert(t_wait_ok(kids[WORKERS]), "flipper failed");
	atomic_store(&sh->stop, 1);
	cr_assert_eq(fdn_flag_set(s, "enforce_no_local_state", 0), 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 100), 0);
	atomic_store(&sh->phase, 1);
	while (atomic_load(&sh->ready[0]) < WORKERS)
		sched_yield();
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 0), 0);
	atomic_store(&sh->phase, 2);
	while (atomic_load(&sh->ready[1]) < WORKERS)
		sched_yield();
	atomic_store(&sh->phase, 3);
	while (atomic_load(&sh->ready[2]) < WORKERS)
		sched_yield();
	cr_assert_eq(fdn_flag_set(s, "use_shm_registry", 100), 0);
	/* The parent sees exactly the shared keys (plus any wN a worker's
	 * last shared register left behind, none: each unregisters it). */
	for (int j = 0; j < WORKERS; j++) {
		char key[32];
		snprintf(key, sizeof(key), "shared-%d", j);
		cr_assert_eq(look(s, key), 0);
		snprintf(key, sizeof(key), "local-%d", j);
		cr_assert_eq(look(s, key), FDN_ENOTFOUND);
	}
	cr_assert_eq(fdn_count(s), WORKERS);
	t_assert_all_clean(s);
	atomic_store(&sh->phase, 4);
	while (atomic_load(&sh->ready[3]) < WORKERS)
		sched_yield();
	atomic_store(&sh->phase, 5);
	for (int w = 0; w < WORKERS; w++)
		cr_assert(t_wait_ok(kids[w]), "worker %d failed", w);
	cr_assert_eq(atomic_load(&sh->bad), 0, "a worker saw %d", atomic_load(&sh->bad));
	for (int w = 0; w < WORKERS; w++)
		cr_assert(atomic_load(&sh->ops[w]) >= 200);
	struct fdn_flag_change h[FDN_FLAGS_HISTORY];
	cr_assert(fdn_flags_history(s, h, FDN_FLAGS_HISTORY) == FDN_FLAGS_HISTORY);
	done(s, name);
}

/* ---- a writer killed holding the lock -------------------------------------- */

Test(flags, writer_killed_mid_change_is_completed)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "kill", NULL);
	cr_assert_eq(fdn_flag_create(s, "beta", 5), 0);
	int beta = 7; /* its slot */
	uint64_t h0 = fdn_flags_history_total(s);
	int ready[2];
	cr_assert_eq(pipe(ready), 0);
	pid_t p = t_fork();
	if (p == 0) {
		/* Take the lock and publish a change the way a writer does,
		 * then stop before applying it. */
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(1);
		struct fdn_shm_flags_hdr *h = fdn__flags_hdr(c);
		struct fdn_shm_flags *r =
		    (struct fdn_shm_flags *)(void *)(c->base + c->hdr->svc[FDN_SVC_FLAGS].off);
		uint64_t zero = 0;
		if (!atomic_compare_exchange_strong(&h->lock, &zero, c->proc_word))
			_exit(2);
		struct fdn_shm_flags_journal *j = &r->journal;
		j->nops = 1;
		j->hist_base = atomic_load(&h->hist_total);
		j->time_ns = 1;
		j->pid = (uint32_t)getpid();
		j->stage_from = 3;
		j->stage_to = -1;
		j->has_builtin = 1;
		j->builtin = atomic_load(&h->builtin) & ~0x7Full; /* use_shm_registry off */
		snprintf(j->reason, sizeof(j->reason), "killed");
		j->ops[0] = (struct fdn_shm_flag_op){0, 100, 0, 0};
		atomic_store(&j->state, FDN_JOURNAL_PENDING);
		if (write(ready[1], "k", 1) != 1)
			_exit(3);
		pause(); /* SIGKILLed here, holding the lock */
		_exit(4);
	}
	char b;
	cr_assert_eq(read(ready[0], &b, 1), 1);
	kill(p, SIGKILL);
	int st;
	cr_assert_eq(waitpid(p, &st, 0), p);
	/* The checker sees the dead holder; the next writer repairs it. */
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	t_reclaim(s, p);
	cr_assert_eq(fdn_flag_set(s, "beta", 60), 0);
	cr_assert_eq(fdn_flag_get(s, "use_shm_registry"), 0);
	cr_assert_eq(fdn_flag_get(s, "beta"), 60);
	struct fdn_flag_change h[2];
	cr_assert_eq(fdn_flags_history_total(s), h0 + 2);
	cr_assert_eq(fdn_flags_history(s, h, 2), 2);
	cr_assert_str_eq(h[0].flag, "use_shm_registry");
	cr_assert_str_eq(h[0].reason, "killed");
	cr_assert_eq(h[0].pid, p);
	cr_assert_str_eq(h[1].flag, "beta");
	cr_assert_eq(h[1].from, 5);
	(void)beta;
	done(s, name);
}

/* ---- the checker ------------------------------------------------------------ */

Test(flags, checker_sees_damage)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "chk", NULL);
	cr_assert_eq(fdn_flag_create(s, "beta", 5), 0);
	cr_assert_eq(fdn_stage_migrate(s, 4), 0);
	t_assert_all_clean(s);
	struct fdn_shm_flags_hdr *h = fdn__flags_hdr(s);
	struct fdn_shm_flags *r =
	    (struct fdn_shm_flags *)(void *)(s->base + s->hdr->svc[FDN_SVC_FLAGS].off);
	uint64_t w = atomic_load(&h->builtin);
	/* A stage of 7, a value of 127, reserved bits. */
	atomic_store(&h->builtin, w | (7ull << FDN_BUILTIN_STAGE_SHIFT));
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	atomic_store(&h->builtin, w | 0x7F);
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	cr_assert_eq(fdn_flag_get(s, "use_shm_registry"), 0); /* damage reads as off */
	atomic_store(&h->builtin, w | (1ull << 60));
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	atomic_store(&h->builtin, w);
	/* A user value of 200, a name without its NUL. */
	atomic_store(&r->flags[7].value, 200);
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	cr_assert_eq(fdn_flag_get(s, "beta"), 0);
	atomic_store(&r->flags[7].value, 5);
	char saved[FDN_FLAG_NAME_BYTES];
	memcpy(saved, r->flags[7].name, sizeof(saved));
	memset(r->flags[7].name, 'z', sizeof(saved));
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	cr_assert_eq(fdn_flag_get(s, "beta"), FDN_EUNKFLAG);
	memcpy(r->flags[7].name, saved, sizeof(saved));
	/* A flag count out of bounds, a history count past the records. */
	atomic_store(&h->nflags, 1000);
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	atomic_store(&h->nflags, 8);
	uint64_t total = atomic_load(&h->hist_total);
	atomic_store(&h->hist_total, total + 1);
	cr_assert_gt(fdn_segment_check(s, NULL, NULL), 0);
	atomic_store(&h->hist_total, total);
	t_assert_all_clean(s);
	done(s, name);
}

/* ---- events ------------------------------------------------------------------ */

#include <foundation/telemetry.h>

struct flag_events {
	int n;
	char name[16][32];
	char flag[16][48];
	char reason[16][32];
	char alert[16][32];
	double from[16], to[16];
};

static void on_flag_event(const struct fdn_event *ev, void *arg)
{
	struct flag_events *fe = arg;
	if (fe->n >= 16)
		return;
	int k = fe->n++;
	snprintf(fe->name[k], sizeof(fe->name[k]), "%s", ev->name);
	for (size_t i = 0; i < ev->nattrs; i++) {
		if (strcmp(ev->attrs[i].name, "flag") == 0)
			snprintf(fe->flag[k], sizeof(fe->flag[k]), "%s", ev->attrs[i].v.s);
		if (strcmp(ev->attrs[i].name, "reason") == 0)
			snprintf(fe->reason[k], sizeof(fe->reason[k]), "%s", ev->attrs[i].v.s);
		if (strcmp(ev->attrs[i].name, "alert_type") == 0)
			snprintf(fe->alert[k], sizeof(fe->alert[k]), "%s", ev->attrs[i].v.s);
	}
	for (size_t i = 0; i < ev->nmeasurements; i++)
		*(strcmp(ev->measurements[i].name, "from") == 0 ? &fe->from[k] : &fe->to[k]) =
		    ev->measurements[i].value;
}

Test(flags, changes_emit_events)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "flags-ev", NULL);
	static struct flag_events fe;
	cr_assert_eq(fdn_handler_attach("flags-test", "foundation", on_flag_event, &fe), 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_spans", 40), 0);
	cr_assert_eq(fdn_stage_emergency_rollback(s, "disk full"), 0);
	cr_assert_eq(fdn_handler_detach("flags-test"), 0);
	/* one flag.changed for the set; the rollback: one per flag it changed
	 * (the five still on) and one stage.changed, in that order */
	cr_assert_geq(fe.n, 3);
	cr_assert_str_eq(fe.name[0], "foundation.flag.changed");
	cr_assert_str_eq(fe.flag[0], "use_shm_spans");
	cr_assert_eq(fe.from[0], 100);
	cr_assert_eq(fe.to[0], 40);
	int last = fe.n - 2;
	cr_assert_str_eq(fe.name[last], "foundation.stage.changed");
	cr_assert_eq(fe.from[last], 3);
	cr_assert_eq(fe.to[last], 0);
	cr_assert_str_eq(fe.reason[last], "disk full");
	for (int i = 1; i < last; i++)
		cr_assert_str_eq(fe.name[i], "foundation.flag.changed");
	/* The emergency's alert, last: type, reason, from and to. */
	cr_assert_str_eq(fe.name[fe.n - 1], "foundation.stage.alert");
	cr_assert_str_eq(fe.alert[fe.n - 1], "emergency_rollback");
	cr_assert_str_eq(fe.reason[fe.n - 1], "disk full");
	cr_assert_eq(fe.from[fe.n - 1], 3);
	cr_assert_eq(fe.to[fe.n - 1], 0);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	cr_assert_eq(fdn_segment_destroy(name), 0);
}

/* In a child (its copy of fe, its inherited handler): stages 1 and 2,
 * monitored, each reported. */
static void migrate_child(fdn_segment *c, struct flag_events *fe)
{
	int r = fdn_stage_migrate(c, 1);
	if (r == 0)
		r = fdn_stage_migrate(c, 2);
	if (r)
		_exit(3);
	int stages = 0;
	for (int i = 0; i < fe->n; i++)
		stages += strcmp(fe->name[i], "foundation.stage.changed") == 0;
	_exit(stages == 2 ? 0 : 4);
}

/* enable_migration_monitoring gates the migration telemetry: with it off
 * before and after, stage changes and built-in flag changes emit nothing,
 * user flags still do; turning it on or off is itself reported; with it
 * on, another process's stage changes are reported (by its handlers); a
 * plain rollback has no alert, an emergency one has (in the history too,
 * with monitoring off). */
Test(flags, migration_monitoring_gates_the_stage_events)
{
	char name[64];
	fdn_segment *s = mk(name, sizeof(name), "flags-mon", NULL);
	static struct flag_events fe;
	memset(&fe, 0, sizeof(fe));
	cr_assert_eq(fdn_stage_emergency_rollback(s, "start"), 0); /* stage 0: off */
	cr_assert_eq(fdn_flag_create(s, "mon.user", 0), 0);
	cr_assert_eq(fdn_handler_attach("mon-test", "foundation", on_flag_event, &fe), 0);
	cr_assert_eq(fdn_flag_set(s, "use_shm_spans", 100), 0);
	cr_assert_eq(fdn_stage_emergency_rollback(s, "quiet"), 0);
	cr_assert_eq(fdn_flag_set(s, "mon.user", 50), 0);
	cr_assert_eq(fe.n, 1, "only the user flag: %d events", fe.n);
	cr_assert_str_eq(fe.flag[0], "mon.user");
	/* Monitoring off, but the emergency is in the history with its alert. */
	struct fdn_flag_change h[8];
	int n = fdn_flags_history(s, h, 8);
	cr_assert_geq(n, 3);
	cr_assert_eq(h[n - 2].kind, FDN_CHANGE_ALERT);
	cr_assert_str_eq(h[n - 2].reason, "quiet");
	/* Monitoring turned on: that change is reported, and so is a stage
	 * change another process makes (1: monitoring stays on, 2). */
	memset(&fe, 0, sizeof(fe));
	cr_assert_eq(fdn_flag_set(s, "enable_migration_monitoring", 100), 0);
	cr_assert_eq(fe.n, 1);
	cr_assert_str_eq(fe.flag[0], "enable_migration_monitoring");
	memset(&fe, 0, sizeof(fe));
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0) {
		fdn_segment *c;
		if (fdn_segment_attach(name, 0, &c))
			_exit(2);
		migrate_child(c, &fe);
	}
	cr_assert(t_wait_ok(p));
	t_reclaim(s, p);
	cr_assert_eq(fdn_stage(s), 2);
	/* The child's events went to its own handlers: the parent saw none;
	 * the history has the two stage records. */
	n = fdn_flags_history(s, h, 8);
	cr_assert_eq(h[n - 1].kind, FDN_CHANGE_STAGE);
	cr_assert_eq(h[n - 1].to, 2);
	/* A plain rollback: stage.changed, no alert. */
	cr_assert_eq(fdn_stage_rollback(s, 1, "plain"), 0);
	cr_assert_eq(fe.n, 2, "flag + stage: %d", fe.n);
	cr_assert_str_eq(fe.name[1], "foundation.stage.changed");
	/* Monitoring turned off by hand: that change is reported; then a
	 * rollback to 0 (monitoring off before and after) emits nothing. */
	memset(&fe, 0, sizeof(fe));
	cr_assert_eq(fdn_flag_set(s, "enable_migration_monitoring", 0), 0);
	cr_assert_eq(fe.n, 1);
	cr_assert_eq(fdn_stage_rollback(s, 0, "silent"), 0);
	cr_assert_eq(fe.n, 1, "a rollback without monitoring: %d events", fe.n);
	/* From stage 1 (on) an emergency is reported, with its alert. */
	cr_assert_eq(fdn_stage_migrate(s, 1), 0);
	memset(&fe, 0, sizeof(fe));
	cr_assert_eq(fdn_stage_emergency_rollback(s, "pager"), 0);
	cr_assert_str_eq(fe.name[fe.n - 1], "foundation.stage.alert");
	cr_assert_str_eq(fe.alert[fe.n - 1], "emergency_rollback");
	cr_assert_eq(fe.from[fe.n - 1], 1);
	cr_assert_eq(fe.to[fe.n - 1], 0);
	cr_assert_eq(fdn_handler_detach("mon-test"), 0);
	t_assert_all_clean(s);
	fdn_segment_detach(s);
	cr_assert_eq(fdn_segment_destroy(name), 0);
}

/* An application that registers its thread with liburcu's memb flavour
 * itself, before the local registry's first call: the library uses that
 * registration (registering twice would abort) and leaves it alone. */
#include <urcu/urcu-memb.h>

Test(flags, local_registry_shares_the_application_urcu_registration)
{
	urcu_memb_register_thread();
	cr_assert_eq(fdn_register(NULL, "app-reg", 7, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_lookup(NULL, "app-reg", 7, 0, NULL), 0);
	cr_assert_eq(fdn_unregister(NULL, "app-reg", 7), 0);
	urcu_memb_read_lock(); /* still registered: the library did not undo it */
	urcu_memb_read_unlock();
	urcu_memb_unregister_thread();
}
