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
 */
#include <foundation/registry.h>

#include <signal.h>
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

struct count {
	const char *host;
	long n;
};

static int count_cb(void *arg, const struct fdn_entry_view *e)
{
	struct count *c = arg;
	const char *h;
	size_t hl, pl;
	const void *p;
	if (fdn_cluster_key_split(e->key, e->key_len, &h, &hl, &p, &pl) &&
	    hl == strlen(c->host) && memcmp(h, c->host, hl) == 0)
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
		fprintf(stderr, "cluster_probe: host %s has %ld remote entries after %ld ms, not %ld\n",
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
	fprintf(stderr, "cluster_probe: bad command\n");
	return 2;
}
