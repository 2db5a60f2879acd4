/*
 * test_cluster_api.c - the registry's side of the cluster (docs/cluster.md),
 * without etcd: the remote namespace is closed to local writers and left
 * out of the plain walks and counts, FDN_REG_MIRROR writes it only for the
 * caller's own pid, FDN_REG_REMOTE walks include it, fdn_cluster_lookup
 * finds every holder through the status entry's hosts list, and a
 * cluster-unique registration with no agent fails at once, registering
 * nothing.  The agent is played by the test process itself.
 */
#include "tests/common.h"

#include <criterion/criterion.h>
#include <foundation/registry.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

static fdn_segment *s;
static char name[96];

static void setup(void)
{
	t_name(name, sizeof(name), "clapi");
	s = t_create(name, 1024, 0);
}

static void teardown(void)
{
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

TestSuite(cluster_api, .init = setup, .fini = teardown);

/* A remote entry of host h for key k, as the agent writes it. */
static int mirror(const char *h, const char *k, long remote_pid)
{
	unsigned char rk[FDN_REG_KEY_MAX];
	size_t hl = strlen(h), kl = strlen(k);
	rk[0] = FDN_REG_REMOTE_BYTE;
	memcpy(rk + 1, h, hl);
	rk[1 + hl] = FDN_REG_REMOTE_BYTE;
	memcpy(rk + 2 + hl, k, kl);
	struct fdn_attr a[] = {
	    {.name = "node", .type = FDN_ATTR_STRING, .v.s = h},
	    {.name = "remote", .type = FDN_ATTR_BOOL, .v.b = true},
	    {.name = "remote_pid", .type = FDN_ATTR_INT, .v.i = remote_pid},
	    {.name = "remote_registered_ns", .type = FDN_ATTR_INT, .v.i = 42},
	};
	return fdn_register(s, rk, 2 + hl + kl, getpid(), a, 4, FDN_REG_REPLACE | FDN_REG_MIRROR,
			    NULL);
}

static int status(const char *const *hosts, uint32_t n)
{
	static const unsigned char k[1] = {FDN_REG_REMOTE_BYTE};
	struct fdn_attr a = {.name = "hosts", .type = FDN_ATTR_LIST, .v.list = {hosts, n}};
	return fdn_register(s, k, 1, getpid(), &a, 1, FDN_REG_REPLACE | FDN_REG_MIRROR, NULL);
}

static int count_cb(void *arg, const struct fdn_entry_view *e)
{
	(void)e;
	++*(int *)arg;
	return 0;
}

Test(cluster_api, namespace_closed_to_local_writers)
{
	static const char rk[] = "\0h2\0worker-1";
	size_t rl = sizeof(rk) - 1;
	cr_assert_eq(fdn_register(s, rk, rl, getpid(), NULL, 0, 0, NULL), FDN_EINVKEY);
	cr_assert_eq(fdn_register(s, rk, rl, getpid(), NULL, 0, FDN_REG_REPLACE, NULL),
		     FDN_EINVKEY);
	/* The mirror flag: only the remote namespace, only for the caller. */
	cr_assert_eq(fdn_register(s, "worker-1", 8, getpid(), NULL, 0, FDN_REG_MIRROR, NULL),
		     FDN_EINVKEY);
	cr_assert_eq(fdn_register(s, rk, rl, getppid(), NULL, 0, FDN_REG_MIRROR, NULL), FDN_EINVAL);
	cr_assert_eq(mirror("h2", "worker-1", 77), 0);
	struct fdn_attr a = {.name = "x", .type = FDN_ATTR_INT, .v.i = 1};
	cr_assert_eq(fdn_update_attributes(s, rk, rl, &a, 1), FDN_EINVKEY);
	cr_assert_eq(fdn_merge_attributes(s, rk, rl, &a, 1), FDN_EINVKEY);
	cr_assert_eq(fdn_unregister(s, rk, rl), FDN_EINVKEY);
	cr_assert_eq(fdn_unregister_flags(s, "worker-1", 8, FDN_REG_MIRROR), FDN_EINVKEY);
	cr_assert_eq(fdn_unregister_flags(s, rk, rl, FDN_REG_MIRROR), 0);
}

Test(cluster_api, local_semantics_unchanged)
{
	const char *hosts[] = {"h2", "h3"};
	cr_assert_eq(status(hosts, 2), 0);
	cr_assert_eq(mirror("h2", "worker-1", 77), 0);
	cr_assert_eq(mirror("h3", "worker-1", 88), 0);
	struct fdn_entry e;
	cr_assert_eq(fdn_lookup(s, "worker-1", 8, 0, &e), FDN_ENOTFOUND);
	cr_assert_eq(fdn_register(s, "worker-1", 8, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_register(s, "other", 5, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_lookup(s, "worker-1", 8, 0, &e), 0);
	cr_assert_eq(e.pid, getpid());
	/* Plain walks and counts: the two local entries only. */
	int n = 0;
	cr_assert_eq(fdn_foreach(s, count_cb, &n), 2);
	cr_assert_eq(fdn_count(s), 2);
	struct fdn_attr node = {.type = FDN_ATTR_STRING, .v.s = "h2"};
	cr_assert_eq(fdn_find_by_attribute(s, "node", &node, NULL, NULL), 0);
	/* With FDN_REG_REMOTE: the remote ones (and the status entry). */
	cr_assert_eq(fdn_find_by_attribute_flags(s, "node", &node, FDN_REG_REMOTE, NULL, NULL), 1);
	struct fdn_criterion c = {"remote", FDN_CMP_EQ, {.type = FDN_ATTR_BOOL, .v.b = true}};
	cr_assert_eq(fdn_query_flags(s, &c, 1, FDN_REG_REMOTE, NULL, NULL), 2);
	cr_assert_eq(fdn_query(s, &c, 1, NULL, NULL), 0);
	cr_assert_eq(fdn_count_flags(s, FDN_REG_REMOTE), 5);
}

Test(cluster_api, cluster_lookup_every_holder)
{
	const char *hosts[] = {"h2", "h3", "h4"};
	cr_assert_eq(status(hosts, 3), 0);
	cr_assert_eq(mirror("h2", "svc", 77), 0);
	cr_assert_eq(mirror("h4", "svc", 99), 0);
	struct fdn_cluster_entry out[4];
	cr_assert_eq(fdn_cluster_lookup(s, "svc", 3, out, 4), 2);
	cr_assert_str_eq(out[0].host, "h2");
	cr_assert(out[0].remote);
	cr_assert_eq(out[0].e.pid, 77);
	cr_assert_eq(out[0].e.registered_ns, 42);
	cr_assert_str_eq(out[0].e.key, "svc");
	cr_assert_str_eq(out[1].host, "h4");
	cr_assert_eq(out[1].e.pid, 99);
	cr_assert_eq(fdn_register(s, "svc", 3, getpid(), NULL, 0, 0, NULL), 0);
	cr_assert_eq(fdn_cluster_lookup(s, "svc", 3, out, 4), 3);
	cr_assert_str_eq(out[0].host, "");
	cr_assert_not(out[0].remote);
	cr_assert_eq(out[0].e.pid, getpid());
	/* max smaller than the holders: the count is still all of them. */
	cr_assert_eq(fdn_cluster_lookup(s, "svc", 3, out, 1), 3);
	cr_assert_eq(fdn_cluster_lookup(s, "none", 4, out, 4), 0);
	cr_assert_eq(fdn_cluster_lookup(s, "\0x", 2, out, 4), FDN_EINVKEY);
	const char *h;
	size_t hl, pl;
	const void *p;
	cr_assert(fdn_cluster_key_split("\0h2\0svc", 7, &h, &hl, &p, &pl));
	cr_assert_eq(hl, 2);
	cr_assert_eq(pl, 3);
	cr_assert_not(fdn_cluster_key_split("svc", 3, &h, &hl, &p, &pl));
	cr_assert_not(fdn_cluster_key_split("\0h2", 3, &h, &hl, &p, &pl));
}

Test(cluster_api, unique_without_agent)
{
	char host[FDN_HOST_MAX + 1];
	pid_t hp;
	uint64_t t0 = t_mono_ms();
	cr_assert_eq(fdn_register_cluster_unique(s, "solo", 4, getpid(), NULL, 0, 2000, host, &hp),
		     -ECONNREFUSED);
	cr_assert_lt(t_mono_ms() - t0, 2000);
	cr_assert_eq(fdn_lookup(s, "solo", 4, 0, NULL), FDN_ENOTFOUND);
	cr_assert_eq(fdn_register_cluster_unique(s, "\0x", 2, getpid(), NULL, 0, 2000, host, &hp),
		     FDN_EINVKEY);
	cr_assert_eq(fdn_register_cluster_unique(s, "solo", 4, getpid(), NULL, 0, 0, host, &hp),
		     FDN_EINVAL);
}
