/*
 * test_multiproc.c - writers in several real processes at once.
 */
#include "common.h"

#define NPROC 4
#define PER   50000

static void key(char *k, size_t cap, int i)
{
	snprintf(k, cap, "agent-%08d", i);
}

Test(multiproc, four_writers_disjoint_then_everyone_finds_all, .timeout = 300)
{
	char name[128];
	t_name(name, sizeof(name), "mp");
	fdn_segment *s = t_create(name, NPROC * PER, 0);
	pid_t pids[NPROC];
	for (int p = 0; p < NPROC; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			char k[32];
			for (int i = p * PER; i < (p + 1) * PER; i++) {
				key(k, sizeof(k), i);
				if (t_put(c, k, (uint64_t)i, FDN_HT_UNIQUE))
					_exit(3);
			}
			fdn_segment_detach(c);
			_exit(0);
		}
	}
	for (int p = 0; p < NPROC; p++)
		cr_assert(t_wait_ok(pids[p]), "writer %d failed", p);
	/* Every process -- four fresh ones -- finds all 200 000. */
	for (int p = 0; p < NPROC; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			char k[32];
			for (int i = 0; i < NPROC * PER; i++) {
				uint64_t v;
				key(k, sizeof(k), (i + p * 7919) % (NPROC * PER));
				if (t_get(c, k, &v) ||
				    v != (uint64_t)((i + p * 7919) % (NPROC * PER)))
					_exit(4);
			}
			fdn_segment_detach(c);
			_exit(0);
		}
	}
	for (int p = 0; p < NPROC; p++)
		cr_assert(t_wait_ok(pids[p]), "reader %d missed a key", p);
	cr_assert_eq(fdn__ht_count(s, 0), NPROC * PER);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

#define RACERS 8
#define RKEYS  1000

Test(multiproc, eight_racers_same_keys_each_won_once, .timeout = 120)
{
	char name[128];
	t_name(name, sizeof(name), "race");
	fdn_segment *s = t_create(name, 10000, 0);
	/* wins[k][p] = 1 if racer p won key k; exists[p] = its EEXISTS count. */
	int(*wins)[RACERS] = t_shared(sizeof(int) * RKEYS * RACERS);
	int *exists = t_shared(sizeof(int) * RACERS);
	_Atomic int *go = t_shared(sizeof(int));
	pid_t pids[RACERS];
	for (int p = 0; p < RACERS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			while (!atomic_load(go))
				;
			char k[32];
			for (int i = 0; i < RKEYS; i++) {
				key(k, sizeof(k), i);
				int r = t_put(c, k, (uint64_t)p, FDN_HT_UNIQUE);
				if (r == 0)
					wins[i][p] = 1;
				else if (r == FDN_EEXISTS)
					exists[p]++;
				else
					_exit(3);
			}
			fdn_segment_detach(c);
			_exit(0);
		}
	}
	atomic_store(go, 1);
	for (int p = 0; p < RACERS; p++)
		cr_assert(t_wait_ok(pids[p]));
	int total_exists = 0;
	for (int p = 0; p < RACERS; p++)
		total_exists += exists[p];
	cr_assert_eq(total_exists, RKEYS * (RACERS - 1));
	for (int i = 0; i < RKEYS; i++) {
		int n = 0, winner = -1;
		for (int p = 0; p < RACERS; p++)
			if (wins[i][p]) {
				n++;
				winner = p;
			}
		cr_assert_eq(n, 1, "key %d won %d times", i, n);
		char k[32];
		uint64_t v;
		key(k, sizeof(k), i);
		cr_assert_eq(t_get(s, k, &v), 0);
		cr_assert_eq(v, (uint64_t)winner, "the stored value is the winner's");
	}
	cr_assert_eq(fdn__ht_count(s, 0), RKEYS);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(multiproc, concurrent_upserts_and_deletes_stay_consistent, .timeout = 120)
{
	char name[128];
	t_name(name, sizeof(name), "churn");
	fdn_segment *s = t_create(name, 10000, 0);
	pid_t pids[4];
	for (int p = 0; p < 4; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			fdn_segment *c;
			if (fdn_segment_attach(name, 0, &c))
				_exit(2);
			char k[32];
			uint64_t x = 88172645463325252ull ^ (uint64_t)p;
			for (int i = 0; i < 40000; i++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				key(k, sizeof(k), (int)(x % 200));
				int r = (x >> 20) % 3 == 0 ? t_del(c, k)
							   : t_put(c, k, x, FDN_HT_UPSERT);
				if (r && r != FDN_ENOTFOUND)
					_exit(3);
			}
			fdn_segment_detach(c);
			_exit(0);
		}
	}
	for (int p = 0; p < 4; p++)
		cr_assert(t_wait_ok(pids[p]));
	t_assert_clean(s);
	int64_t present = 0;
	for (int i = 0; i < 200; i++) {
		char k[32];
		key(k, sizeof(k), i);
		present += t_get(s, k, NULL) == 0;
	}
	cr_assert_eq(fdn__ht_count(s, 0), present);
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	/* Every detached writer flushed its limbo: only live nodes remain. */
	cr_assert_eq(st.blocks_used, (uint64_t)present);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
