/*
 * cluster_probe - the test_cluster.sh and bench_cluster.sh helper: drives
 * one simulated host's segment.
 *
 *   cluster_probe reg SEG PREFIX N        register PREFIX-0..N-1 for itself,
 *                                         print "ready", hold them until SIGTERM
 *   cluster_probe dump SEG                every entry, local and remote, one line
 *                                         each: "HOST KEY" (HOST "-" for local),
 *                                         sorted by the caller
 *   cluster_probe wait SEG HOST N MS      until host HOST has exactly N remote
 *                                         entries (N = 0: none); prints the ms it
 *                                         took; exit 1 after MS
 *   cluster_probe lookup SEG KEY          fdn_cluster_lookup: "HOST PID" per holder
 *   cluster_probe status SEG              the agent's status entry, NAME=VALUE
 *   cluster_probe unique SEG KEY MS       fdn_register_cluster_unique for itself:
 *                                         "registered", or "held HOST PID", or
 *                                         the error's name (exit 1); then exits
 *   cluster_probe race SEG PREFIX N T0MS  for i < N, at CLOCK_REALTIME T0MS +
 *                                         20 i ms: cluster-unique PREFIX-i; prints
 *                                         "i won" or "i lost HOST"; prints "done"
 *                                         and holds what it won until SIGTERM
 * and for bench_cluster.sh:
 *   cluster_probe latency SEGA SEGB N     N times: register a key on A, time
 *                                         until B's segment holds it (remote);
 *                                         prints p50, p99, max in microseconds
 *   cluster_probe lookups SEG LKEY RKEY N [HOST]
 *                                         ns per lookup: local fdn_lookup of
 *                                         LKEY, fdn_cluster_lookup of RKEY (a
 *                                         remote holder), and with HOST (RKEY's
 *                                         holder) fdn_lookup of its remote
 *                                         key, 0x00 HOST 0x00 RKEY
 *   cluster_probe burst SEGA SEGB HOSTA N register N keys on A at once; ms
 *                                         until B holds all: N / s sustained
 */
#include <foundation/registry.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct count {
	const char *host;
	long n;
};
static int count_cb(void *arg, const struct fdn_entry_view *e);

static int lost(const char *key, const char *how)
{
	fprintf(stderr, "cluster_probe: lookups: %s of %s found nothing\n", how, key);
	return 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Does B hold key as some other host's entry? */
static bool remote_holder(fdn_segment *b, const char *key)
{
	struct fdn_cluster_entry out[4];
	int n = fdn_cluster_lookup(b, key, strlen(key), out, 4);
	for (int i = 0; i < n && i < 4; i++)
		if (out[i].remote)
			return true;
	return false;
}

static int bench(fdn_segment *s, int argc, char **argv)
{
	const char *cmd = argv[1];
	fdn_segment *b = NULL;
	if ((strcmp(cmd, "latency") == 0 || strcmp(cmd, "burst") == 0) &&
	    fdn_segment_attach(argv[3], 0, &b) != 0)
		return 1;
	if (strcmp(cmd, "latency") == 0 && argc == 5) {
		long n = atol(argv[4]);
		uint64_t *us = calloc((size_t)n, sizeof(*us));
		for (long i = 0; i < n; i++) {
			char k[64];
			snprintf(k, sizeof(k), "lat-%d-%ld", (int)getpid(), i);
			uint64_t t0 = now_ns();
			if (fdn_register(s, k, strlen(k), getpid(), NULL, 0, 0, NULL))
				return 1;
			while (!remote_holder(b, k)) {
				if (now_ns() - t0 > 10000000000ull) {
					fprintf(stderr, "cluster_probe: %s not seen in 10 s\n", k);
					return 1;
				}
				usleep(50);
			}
			us[i] = (now_ns() - t0) / 1000;
			fdn_unregister(s, k, strlen(k));
			usleep(20000); /* not in phase with the agent's interval */
		}
		qsort(us, (size_t)n, sizeof(*us), cmp_u64);
		printf("p50_us=%llu p99_us=%llu max_us=%llu n=%ld\n", (unsigned long long)us[n / 2],
		       (unsigned long long)us[(n * 99) / 100], (unsigned long long)us[n - 1], n);
		return 0;
	}
	if (strcmp(cmd, "burst") == 0 && argc == 6) {
		long n = atol(argv[5]);
		/* B's count with remote entries: the table's counter. */
		int64_t base = fdn_count_flags(b, FDN_REG_REMOTE);
		uint64_t t0 = now_ns();
		for (long i = 0; i < n; i++) {
			char k[64];
			snprintf(k, sizeof(k), "burst-%ld", i);
			if (fdn_register(s, k, strlen(k), getpid(), NULL, 0, 0, NULL))
				return 1;
		}
		uint64_t t1 = now_ns();
		/* Every 10 ms: the count walks the table while an owner is dead
		 * and not yet reaped (an agent stopped before), and a walk of
		 * tens of thousands of entries every ms would compete with the
		 * agents for the 2 cores. */
		while (fdn_count_flags(b, FDN_REG_REMOTE) < base + n) {
			if (now_ns() - t0 > 120000000000ull)
				return 1;
			usleep(10000);
		}
		double secs = (double)(now_ns() - t0) / 1e9;
		printf("registered_ms=%.1f visible_ms=%.1f rate_per_s=%.0f n=%ld\n",
		       (double)(t1 - t0) / 1e6, secs * 1e3, (double)n / secs, n);
		return 0;
	}
	if (strcmp(cmd, "lookups") == 0 && (argc == 6 || argc == 7)) {
		long n = atol(argv[5]);
		struct fdn_entry e;
		struct fdn_cluster_entry out[4];
		uint64_t t0 = now_ns();
		for (long i = 0; i < n; i++)
			if (fdn_lookup(s, argv[3], strlen(argv[3]), 0, &e))
				return lost(argv[3], "fdn_lookup");
		uint64_t t1 = now_ns();
		for (long i = 0; i < n; i++)
			if (fdn_cluster_lookup(s, argv[4], strlen(argv[4]), out, 4) < 1)
				return lost(argv[4], "fdn_cluster_lookup");
		uint64_t t2 = now_ns();
		printf("local_lookup_ns=%.0f cluster_lookup_remote_ns=%.0f",
		       (double)(t1 - t0) / (double)n, (double)(t2 - t1) / (double)n);
		if (argc == 7) {
			/* The remote entry itself: one hash lookup, like a
			 * local one (fdn_cluster_lookup makes one per host). */
			char rk[FDN_REG_KEY_MAX];
			size_t hl = strlen(argv[6]), kl = strlen(argv[4]);
			if (2 + hl + kl > sizeof(rk))
				return 2;
			rk[0] = FDN_REG_REMOTE_BYTE;
			memcpy(rk + 1, argv[6], hl);
			rk[1 + hl] = FDN_REG_REMOTE_BYTE;
			memcpy(rk + 2 + hl, argv[4], kl);
			uint64_t t3 = now_ns();
			for (long i = 0; i < n; i++)
				if (fdn_lookup(s, rk, 2 + hl + kl, 0, &e))
					return lost(argv[4], "fdn_lookup of the remote key");
			printf(" remote_lookup_ns=%.0f", (double)(now_ns() - t3) / (double)n);
		}
		printf(" n=%ld\n", n);
		return 0;
	}
	return 2;
}

static int dump_cb(void *arg, const struct fdn_entry_view *e)
{
	(void)arg;
	const char *h;
	size_t hl, pl;
	const void *p;
	if (fdn_cluster_key_split(e->key, e->key_len, &h, &hl, &p, &pl))
		printf("%.*s %.*s\n", (int)hl, h, (int)pl, (const char *)p);
	else if (((const unsigned char *)e->key)[0] != FDN_REG_REMOTE_BYTE)
		printf("- %.*s\n", (int)e->key_len, (const char *)e->key);
	return 0;
}

static int count_cb(void *arg, const struct fdn_entry_view *e)
{
	struct count *c = arg;
	const char *h;
	size_t hl, pl;
	const void *p;
	if (fdn_cluster_key_split(e->key, e->key_len, &h, &hl, &p, &pl) && hl == strlen(c->host) &&
	    memcmp(h, c->host, hl) == 0)
		c->n++;
	return 0;
}

static long host_count(fdn_segment *s, const char *host)
{
	struct count c = {host, 0};
	int r = fdn_foreach_flags(s, FDN_REG_REMOTE, count_cb, &c);
	return r < 0 ? r : c.n;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "cluster_probe: missing arguments\n");
		return 2;
	}
	fdn_segment *s;
	int r = fdn_segment_attach(argv[2], 0, &s);
	if (r) {
		fprintf(stderr, "cluster_probe: %s: %s\n", argv[2], fdn_strerror(r));
		return 1;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "reg") == 0 && argc == 5) {
		long n = atol(argv[4]);
		for (long i = 0; i < n; i++) {
			char k[256];
			int kl = snprintf(k, sizeof(k), "%s-%ld", argv[3], i);
			struct fdn_attr at[] = {
			    {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "worker"},
			    {.name = "index", .type = FDN_ATTR_INT, .v.i = i},
			};
			if ((r = fdn_register(s, k, (size_t)kl, getpid(), at, 2, 0, NULL))) {
				fprintf(stderr, "cluster_probe: register %s: %s\n", k,
					fdn_strerror(r));
				return 1;
			}
		}
		printf("ready\n");
		fflush(stdout);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigprocmask(SIG_BLOCK, &set, NULL);
		int sig;
		sigwait(&set, &sig);
		return 0;
	}
	if (strcmp(cmd, "dump") == 0) {
		r = fdn_foreach_flags(s, FDN_REG_REMOTE, dump_cb, NULL);
		return r < 0 ? 1 : 0;
	}
	if (strcmp(cmd, "wait") == 0 && argc == 6) {
		long want = atol(argv[4]);
		uint64_t t0 = now_ms(), limit = (uint64_t)atol(argv[5]);
		long n = -1;
		while (now_ms() - t0 <= limit) {
			if ((n = host_count(s, argv[3])) == want) {
				printf("%llu\n", (unsigned long long)(now_ms() - t0));
				return 0;
			}
			usleep(10000);
		}
		fprintf(stderr,
			"cluster_probe: host %s has %ld remote entries after %ld ms, not %ld\n",
			argv[3], n, limit, want);
		return 1;
	}
	if (strcmp(cmd, "lookup") == 0 && argc == 4) {
		struct fdn_cluster_entry out[16];
		r = fdn_cluster_lookup(s, argv[3], strlen(argv[3]), out, 16);
		if (r < 0) {
			fprintf(stderr, "cluster_probe: lookup: %s\n", fdn_strerror(r));
			return 1;
		}
		for (int i = 0; i < r && i < 16; i++)
			printf("%s %d\n", out[i].remote ? out[i].host : "-", (int)out[i].e.pid);
		return 0;
	}
	if (strcmp(cmd, "status") == 0) {
		static const unsigned char k[1] = {FDN_REG_REMOTE_BYTE};
		struct fdn_entry e;
		if ((r = fdn_lookup(s, k, 1, 0, &e))) {
			fprintf(stderr, "cluster_probe: no status: %s\n", fdn_strerror(r));
			return 1;
		}
		for (uint32_t i = 0; i < fdn_attrs_count(e.attrs, e.attrs_len); i++) {
			struct fdn_attr a;
			fdn_attrs_at(e.attrs, e.attrs_len, i, &a);
			if (a.type == FDN_ATTR_INT)
				printf("%s=%lld\n", a.name, (long long)a.v.i);
			else if (a.type == FDN_ATTR_BOOL)
				printf("%s=%s\n", a.name, a.v.b ? "true" : "false");
			else if (a.type == FDN_ATTR_STRING)
				printf("%s=%s\n", a.name, a.v.s);
			else if (a.type == FDN_ATTR_LIST) {
				printf("%s=", a.name);
				for (uint32_t k2 = 0; k2 < a.v.list.n; k2++)
					printf("%s%s", k2 ? "," : "", fdn_attrs_list_item(&a, k2));
				printf("\n");
			}
		}
		return 0;
	}
	if (strcmp(cmd, "unique") == 0 && argc == 5) {
		char host[FDN_HOST_MAX + 1];
		pid_t hp = 0;
		r = fdn_register_cluster_unique(s, argv[3], strlen(argv[3]), getpid(), NULL, 0,
						atoi(argv[4]), host, &hp);
		if (r == 0)
			printf("registered\n");
		else if (r == FDN_EEXISTS)
			printf("held %s %d\n", host, (int)hp);
		else
			printf("%s\n", fdn_errname(r));
		return r == 0 || r == FDN_EEXISTS ? 0 : 1;
	}
	if (strcmp(cmd, "race") == 0 && argc == 6) {
		long n = atol(argv[4]);
		uint64_t t0 = (uint64_t)atoll(argv[5]);
		for (long i = 0; i < n; i++) {
			struct timespec ts;
			uint64_t at = t0 + (uint64_t)i * 20;
			for (;;) {
				clock_gettime(CLOCK_REALTIME, &ts);
				uint64_t ms =
				    (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
				if (ms >= at)
					break;
				usleep((useconds_t)((at - ms) * 1000));
			}
			char k[128], host[FDN_HOST_MAX + 1];
			snprintf(k, sizeof(k), "%s-%ld", argv[3], i);
			pid_t hp;
			r = fdn_register_cluster_unique(s, k, strlen(k), getpid(), NULL, 0, 5000,
							host, &hp);
			if (r == 0)
				printf("%ld won\n", i);
			else if (r == FDN_EEXISTS)
				printf("%ld lost %s\n", i, host);
			else
				printf("%ld error %s\n", i, fdn_errname(r));
		}
		printf("done\n");
		fflush(stdout);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGTERM);
		sigprocmask(SIG_BLOCK, &set, NULL);
		int sig;
		sigwait(&set, &sig);
		return 0;
	}
	r = bench(s, argc, argv);
	if (r == 2)
		fprintf(stderr, "cluster_probe: bad command\n");
	return r;
}
