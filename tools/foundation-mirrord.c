/*
 * foundation-mirrord - one registry across hosts on etcd (docs/cluster.md).
 *
 * One agent per host, beside the reaper.  Five threads, each with its own
 * etcd connection (struct etcd is one thread's): the three below, the
 * lease's keepalive (keepalive_thread) and the cluster-unique server
 * (unique_thread).
 *
 *  - the publisher puts every local entry under
 *    /foundation/<cluster>/hosts/<host>/registry/<key>, attached to one
 *    lease per host (kept alive every TTL/3 by keepalive_thread), in
 *    transactions of up to 128 operations.  Local changes come from the
 *    registry's change feed (local_source: a snapshot at a revision, then
 *    a subscription from it); the publisher sleeps in poll(2) on the
 *    subscription's fd and on a wake-up eventfd, and publishes each batch
 *    of changes as it arrives -- no periodic scan.  After any failure, and
 *    when it fell behind the change log (FDN_EOVERFLOW), it
 *    resynchronises: the host's keys in etcd are read and diffed against
 *    a fresh snapshot, and the subscription goes on from the snapshot's
 *    revision, so what etcd holds converges to the local registry whatever
 *    was lost.  A lease found gone (the agent was stopped longer than the
 *    TTL, etcd lost it) is granted anew and everything is put again.
 *  - the mirror reads every host's keys at one revision, makes the remote
 *    namespace of the segment equal to them (registers what is missing or
 *    changed, unregisters what etcd does not hold: no ghost), then watches
 *    from the next revision, applying each event in revision order (no
 *    duplicate: a put is a replace keyed by (host, key)).  A broken watch
 *    is a new snapshot and a new watch.
 *  - the status thread writes the status entries (key 0x00: the cluster;
 *    0x00 host: each host) every 500 ms, with each host's lease TTL left,
 *    and emits foundation.cluster.degraded / .recovered on a change.
 *
 * The remote entries are owned by this process (FDN_REG_MIRROR): if it
 * dies, the reaper removes them as any dead owner's entries.  A planned
 * stop (SIGTERM, SIGINT) revokes the lease at once, so other hosts drop
 * this host's entries without waiting for the TTL.
 *
 * Concurrency: the threads share the status fields and the per-host table
 * (struct agent), under agent.mu; each writes the segment through the
 * registry's own lock-free calls.  The hosts list of the status entry is
 * written (under agent.mu) before a new host's first entry is registered, so
 * fdn_cluster_lookup, which reads the list first, never misses an entry
 * whose host it could not know.
 *
 * The layout: this file holds the usage, the options and main, which
 * starts the threads; tools/mirrord/ holds the parts (agent.h says which).
 */
#include "cli.h"
#include "mirrord/agent.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

const char *prog = "foundation-mirrord";

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: %s [--segment NAME] [--endpoints URL[,URL...]] [--cluster NAME]\n"
		"       [--host ID] [--ttl SECONDS] [--interval MS] [--timeout MS]\n"
		"       [--cacert FILE] [--cert FILE] [--key FILE] [--user NAME[:PASSWORD]]\n"
		"       [--password PASSWORD] [--wait]\n"
		"\n"
		"Publish this host's registry entries into etcd, on a lease kept alive, and\n"
		"mirror every other host's entries into the local segment (docs/cluster.md).\n"
		"\n"
		"  --segment NAME    segment (default $FOUNDATION_SEGMENT, else \"foundation\")\n"
		"  --endpoints URLS  etcd client URLs, comma-separated (default\n"
		"                    http://127.0.0.1:2379)\n"
		"  --cluster NAME    the cluster (default \"default\"): keys under\n"
		"                    /foundation/NAME/\n"
		"  --host ID         this host (default the hostname): [A-Za-z0-9._-], 1..63\n"
		"  --ttl SECONDS     the host's lease TTL (default 5, 2..3600)\n"
		"  --interval MS     accepted and ignored (compatibility): local changes are\n"
		"                    published as the registry's change feed delivers them\n"
		"  --timeout MS      per etcd request (default 2000)\n"
		"  --cacert FILE     TLS: the CA that signed etcd's certificate\n"
		"  --cert FILE       TLS: this client's certificate\n"
		"  --key FILE        TLS: its private key\n"
		"  --user NAME[:PW]  etcd authentication (as etcdctl --user)\n"
		"  --password PW     the password, when not in --user\n"
		"  --wait            wait for the segment to be created (polled every 250 ms)\n"
		"  --help            this text\n"
		"  --version         print the version and exit\n"
		"\n"
		"Exit status: 0 stopped by SIGTERM or SIGINT (the lease revoked); 1 error\n"
		"(the segment cannot be attached, or has no change log); 2 bad usage.\n",
		prog);
}

static bool good_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > FDN_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"segment", required_argument, 0, 's'}, {"endpoints", required_argument, 0, 'e'},
	    {"cluster", required_argument, 0, 'c'}, {"host", required_argument, 0, 'H'},
	    {"ttl", required_argument, 0, 't'},     {"interval", required_argument, 0, 'i'},
	    {"timeout", required_argument, 0, 'T'}, {"cacert", required_argument, 0, 'A'},
	    {"cert", required_argument, 0, 'C'},    {"key", required_argument, 0, 'K'},
	    {"user", required_argument, 0, 'u'},    {"password", required_argument, 0, 'p'},
	    {"wait", no_argument, 0, 'w'},          {"help", no_argument, 0, 'h'},
	    {"version", no_argument, 0, 'V'},       {0, 0, 0, 0}};
	const char *segment = fdn_segment_default_name(), *endpoints = "http://127.0.0.1:2379";
	static char hostname[256];
	char *user = NULL;
	bool wait_seg = false;
	agent.cluster = "default";
	agent.ttl = 5;
	agent.eo.timeout_ms = 2000;
	if (gethostname(hostname, sizeof(hostname) - 1) == 0)
		agent.host = hostname;
	int ch;
	char bad[128];
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		uint64_t n;
		switch (ch) {
		case 's':
			segment = optarg;
			break;
		case 'e':
			endpoints = optarg;
			break;
		case 'c':
			agent.cluster = optarg;
			break;
		case 'H':
			agent.host = optarg;
			break;
		case 't':
			if (!parse_num(optarg, 10, 3600, &n) || n < 2)
				return usage_error(
				    NULL, "--ttl \"%s\": not a number of seconds in 2..3600",
				    optarg);
			agent.ttl = (long)n;
			break;
		case 'i':
			/* The rescan period of earlier versions; kept so that
			 * existing command lines and units still start. */
			if (!parse_num(optarg, 10, 60000, &n) || n < 1)
				return usage_error(
				    NULL, "--interval \"%s\": not a number in 1..60000", optarg);
			fprintf(stderr,
				"%s: --interval is ignored: local changes come from the "
				"registry's change feed\n",
				prog);
			break;
		case 'T':
			if (!parse_num(optarg, 10, 600000, &n) || n < 10)
				return usage_error(
				    NULL, "--timeout \"%s\": not a number in 10..600000", optarg);
			agent.eo.timeout_ms = (long)n;
			break;
		case 'A':
			agent.eo.cacert = optarg;
			break;
		case 'C':
			agent.eo.cert = optarg;
			break;
		case 'K':
			agent.eo.key = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'p':
			agent.eo.password = optarg;
			break;
		case 'w':
			wait_seg = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		case 'V':
			return print_version();
		default:
			return usage_error(NULL, "%s: unknown option or missing value",
					   bad_option(argv, bad, sizeof(bad)));
		}
	}
	if (optind < argc)
		return usage_error(NULL, "\"%s\": unexpected argument", argv[optind]);
	if (!agent.host || !good_id(agent.host))
		return usage_error(NULL, "--host \"%s\": not 1..63 of [A-Za-z0-9._-]",
				   agent.host ? agent.host : "");
	if (!good_id(agent.cluster))
		return usage_error(NULL, "--cluster \"%s\": not 1..63 of [A-Za-z0-9._-]",
				   agent.cluster);
	if (user) {
		char *colon = strchr(user, ':');
		if (colon) {
			*colon = 0;
			agent.eo.password = colon + 1;
		}
		agent.eo.user = user;
	}
	/* The endpoints, split. */
	static char *eps[16];
	char *list = strdup(endpoints), *save = NULL;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (agent.eo.nendpoints == 16)
			return usage_error(NULL, "--endpoints: more than 16");
		if (strncmp(t, "http://", 7) && strncmp(t, "https://", 8))
			return usage_error(NULL,
					   "--endpoints \"%s\": not an http:// or https:// URL", t);
		eps[agent.eo.nendpoints++] = t;
	}
	if (agent.eo.nendpoints == 0)
		return usage_error(NULL, "--endpoints: empty");
	agent.eo.endpoints = eps;
	snprintf(agent.prefix, sizeof(agent.prefix), "/foundation/%s/", agent.cluster);
	snprintf(agent.host_prefix, sizeof(agent.host_prefix), "/foundation/%s/hosts/%s/registry/",
		 agent.cluster, agent.host);

	int r;
	/* --wait: the segment may appear later (a unit started at boot before
	 * the application); polled every 250 ms until a signal. */
	while ((r = fdn_segment_attach(segment, 0, &agent.s)) == FDN_ENOSEG && wait_seg) {
		struct timespec ts = {0, 250 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (r) {
		fprintf(stderr, "%s: segment \"%s\": %s\n", prog, segment, fdn_strerror(r));
		return EXIT_FAIL;
	}
	/* The publisher follows the change log: a segment made without one
	 * (foundation-ctl create --changes off) cannot be published. */
	struct fdn_changes_stats cst;
	if ((r = fdn_changes_stats(agent.s, &cst)) != 0 || cst.capacity == 0) {
		fprintf(stderr, "%s: segment \"%s\": %s\n", prog, segment,
			r ? fdn_strerror(r)
			  : "made without a change log (--changes off); the agent needs it");
		fdn_segment_detach(agent.s);
		return EXIT_FAIL;
	}
	agent.pub_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (agent.pub_wake < 0) {
		fprintf(stderr, "%s: eventfd: %s\n", prog, strerror(errno));
		return EXIT_FAIL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fprintf(stderr, "%s: curl_global_init failed\n", prog);
		return EXIT_FAIL;
	}
	pthread_mutex_init(&agent.mu, NULL);
	agent.pub_ok = agent.mir_ok = false;
	snprintf(agent.pub_err, sizeof(agent.pub_err), "starting");
	snprintf(agent.mir_err, sizeof(agent.mir_err), "starting");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* The socket of cluster-unique requests: an abstract name, per
	 * segment, given to the library by the status entry. */
	agent.claims = json_object_new_object();
	snprintf(agent.sock, sizeof(agent.sock), "foundation-mirrord/%s", segment);
	int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path + 1, agent.sock, strlen(agent.sock));
	if (lfd < 0 ||
	    bind(lfd, (struct sockaddr *)&sa,
		 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(agent.sock))) !=
		0 ||
	    listen(lfd, 64) != 0) {
		fprintf(stderr, "%s: socket @%s: %s (another agent for this segment?)\n", prog,
			agent.sock, strerror(errno));
		return EXIT_FAIL;
	}
	pthread_mutex_lock(&agent.mu);
	status_write_locked(); /* before any remote entry (registry.c: fdn_count) */
	pthread_mutex_unlock(&agent.mu);
	pthread_t tp, tm, ts, tu, tk;
	pthread_create(&tu, NULL, unique_thread, (void *)(intptr_t)lfd);
	pthread_create(&tk, NULL, keepalive_thread, NULL);
	pthread_create(&tp, NULL, publisher_thread, NULL);
	pthread_create(&tm, NULL, mirror_thread, NULL);
	pthread_create(&ts, NULL, status_thread, NULL);
	fprintf(stderr, "%s: host %s, cluster %s, segment \"%s\", %zu endpoint(s), ttl %ld s\n",
		prog, agent.host, agent.cluster, segment, agent.eo.nendpoints, agent.ttl);
	int sig;
	sigwait(&set, &sig);
	atomic_store(&agent.stop, true);
	wake_publisher();
	pthread_join(tp, NULL);
	pthread_join(tm, NULL);
	pthread_join(ts, NULL);
	pthread_join(tu, NULL);
	pthread_join(tk, NULL);
	fprintf(stderr, "%s: stopped (%s), lease revoked\n", prog, strsignal(sig));
	fdn_segment_detach(agent.s);
	curl_global_cleanup();
	free(list);
	return EXIT_OK;
}
