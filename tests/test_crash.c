/*
 * test_crash.c - a writer SIGKILLed at random moments of a stream of
 * inserts, upserts and deletes, 200 times on the same segment.  After each
 * kill and reclaim the checker finds nothing, and every key holds what the
 * writer's last completed operation on it committed (the one operation in
 * flight may have happened or not, and nothing else).
 */
#include "common.h"

#include <time.h>

#define KEYS   256
#define ROUNDS 200

struct journal {
	uint64_t expect[KEYS];   /* 0 = absent, else the value */
	_Atomic int pending;     /* key of the op in flight, -1 = none */
	uint64_t pending_result; /* what that key holds if the op took */
	_Atomic uint64_t ops;    /* completed ops */
};

static void key(char *k, size_t cap, int i)
{
	snprintf(k, cap, "crash-%04d", i);
}

static void writer(const char *name, struct journal *j, uint64_t seed)
{
	fdn_segment *s;
	if (fdn_segment_attach(name, 0, &s))
		_exit(2);
	uint64_t x = seed | 1;
	for (uint64_t n = 1;; n++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		int i = (int)(x % KEYS), kind = (int)((x >> 32) % 3);
		char k[32];
		key(k, sizeof(k), i);
		uint64_t v = (seed << 24) ^ n;
		j->pending_result = kind == 2 ? 0 : v;
		atomic_store(&j->pending, i);
		int r = kind == 0   ? t_put(s, k, v, FDN_HT_UNIQUE)
			: kind == 1 ? t_put(s, k, v, FDN_HT_UPSERT)
				    : t_del(s, k);
		if (r == 0)
			j->expect[i] = j->pending_result;
		else if (r != FDN_EEXISTS && r != FDN_ENOTFOUND)
			_exit(3);
		atomic_store(&j->pending, -1);
		atomic_fetch_add(&j->ops, 1);
	}
}

/* Returns 1 if an op was in flight when the writer died. */
static int verify(fdn_segment *s, struct journal *j, int round)
{
	int pending = atomic_load(&j->pending), present = 0;
	for (int i = 0; i < KEYS; i++) {
		char k[32];
		uint64_t v = 0;
		key(k, sizeof(k), i);
		int r = t_get(s, k, &v);
		cr_assert(r == 0 || r == FDN_ENOTFOUND, "round %d: lookup %s", round,
			  fdn_errname(r));
		uint64_t got = r == 0 ? v : 0;
		present += r == 0;
		if (i == pending && got == j->pending_result)
			j->expect[i] = got; /* the op in flight took effect */
		cr_assert_eq(got, j->expect[i], "round %d: key %d holds %llx, committed %llx",
			     round, i, (unsigned long long)got, (unsigned long long)j->expect[i]);
	}
	atomic_store(&j->pending, -1);
	cr_assert_eq(fdn__ht_count(s, 0), present, "round %d: count", round);
	return pending >= 0;
}

Test(crash, writer_killed_at_random_200_times, .timeout = 300)
{
	char name[128];
	t_name(name, sizeof(name), "crash");
	fdn_segment *s = t_create(name, 4096, 0);
	struct journal *j = t_shared(sizeof(*j));
	atomic_store(&j->pending, -1);
	srand((unsigned)time(NULL));
	uint64_t total_ops = 0;
	int in_flight = 0;
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t before = atomic_load(&j->ops);
		pid_t p = fork();
		if (p == 0)
			writer(name, j, (uint64_t)round + 1);
		while (atomic_load(&j->ops) == before) /* until it is writing */
			cr_assert_eq(waitpid(p, NULL, WNOHANG), 0, "round %d: writer died", round);
		usleep((useconds_t)(rand() % 2000));
		kill(p, SIGKILL);
		int st;
		cr_assert_eq(waitpid(p, &st, 0), p);
		cr_assert(WIFSIGNALED(st), "round %d: the writer failed on its own (%d)", round,
			  WEXITSTATUS(st));
		t_reclaim(s, p);
		int v = fdn__seg_check(s, t_print_violation, NULL);
		cr_assert_eq(v, 0, "round %d: %d violations", round, v);
		in_flight += verify(s, j, round);
		total_ops += atomic_load(&j->ops) - before;
	}
	cr_log_info("%d kills, %d inside an operation, %llu committed ops", ROUNDS, in_flight,
		    (unsigned long long)total_ops);
	cr_assert_gt(in_flight, ROUNDS / 4, "kills must land inside operations");
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	cr_assert_eq(st.procs_used, 1);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

/* A writer killed after claiming a block for an insert and before writing
 * the node's header leaves the block's previous header in place: here a
 * node of table 0 while the op is on table 1.  The reclaimer must still
 * free the block (it was never published), not keep it "on doubt". */
Test(crash, killed_between_claim_and_header, .timeout = 60)
{
	char name[128];
	t_name(name, sizeof(name), "crash");
	fdn_segment *s = t_create(name, 256, 0);
	pid_t p = fork();
	if (p == 0) {
		fdn_segment *c;
		struct fdn__thread *t;
		if (fdn_segment_attach(name, 0, &c) || fdn__rcu_read_lock(c, &t))
			_exit(2);
		/* What fdn__ht_put does up to the claim, on table 1. */
		atomic_store(&t->ts->delta[1], FDN_DELTA_WORD(0, FDN_OP_UPSERT));
		uint32_t g, gen;
		if (fdn__alloc(t, 100, &g, &gen))
			_exit(3);
		struct fdn_shm_node *n = fdn__gptr(c, g);
		n->key_info = FDN_NODE_KEY_INFO(3, 0); /* the previous occupant's header */
		n->hash = 12345;
		kill(getpid(), SIGKILL);
	}
	int st;
	cr_assert_eq(waitpid(p, &st, 0), p);
	cr_assert(WIFSIGNALED(st), "the child failed before its death (%#x)", st);
	t_reclaim(s, p);
	t_assert_clean(s);
	struct fdn_segment_stats ss;
	fdn_segment_stats(s, &ss);
	cr_assert_eq(ss.blocks_used, 0, "%llu blocks left", (unsigned long long)ss.blocks_used);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
