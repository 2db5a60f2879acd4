/* tools/inspect/cluster.c - foundation-inspect: foundation-mirrord's status entries: the cluster
 * command and its metrics. */
#include "inspect/inspect.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* ---- cluster: foundation-mirrord's status entries (docs/cluster.md) ----------------- */

/* The agent's status: the entry at key 0x00 and one per host (0x00 host).
 * false when no agent mirrors into the segment. */
struct cluster_view {
	struct fdn_entry st;
	struct fdn_attr hosts;
};

static bool cluster_read(fdn_segment *s, struct cluster_view *v)
{
	static const unsigned char k[1] = {FDN_REG_REMOTE_BYTE};
	return fdn_lookup(s, k, 1, 0, &v->st) == 0 &&
	       fdn_attrs_get(v->st.attrs, v->st.attrs_len, "hosts", &v->hosts) == 0 &&
	       v->hosts.type == FDN_ATTR_LIST;
}

static int64_t attr_int(const struct fdn_entry *e, const char *name)
{
	struct fdn_attr x;
	return fdn_attrs_get(e->attrs, e->attrs_len, name, &x) == 0 && x.type == FDN_ATTR_INT
		   ? x.v.i
		   : -1;
}

static const char *attr_str(const struct fdn_entry *e, const char *name)
{
	struct fdn_attr x;
	return fdn_attrs_get(e->attrs, e->attrs_len, name, &x) == 0 && x.type == FDN_ATTR_STRING
		   ? x.v.s
		   : "";
}

static bool attr_true(const struct fdn_entry *e, const char *name)
{
	struct fdn_attr x;
	return fdn_attrs_get(e->attrs, e->attrs_len, name, &x) == 0 && x.type == FDN_ATTR_BOOL &&
	       x.v.b;
}

/* Host i's own status entry (entries, lease, ttl_left); false if absent. */
static bool cluster_host(fdn_segment *s, const char *h, struct fdn_entry *e)
{
	unsigned char k[2 + FDN_HOST_MAX];
	size_t n = strlen(h);
	if (n > FDN_HOST_MAX)
		return false;
	k[0] = FDN_REG_REMOTE_BYTE;
	memcpy(k + 1, h, n);
	return fdn_lookup(s, k, 1 + n, 0, e) == 0;
}

int cmd_cluster(fdn_segment *s, const struct args *a)
{
	static struct cluster_view v;
	static struct fdn_entry he;
	if (!cluster_read(s, &v)) { /* a state, not a failure (dump runs it) */
		if (a->json)
			fprintf(a->out, "{\"agent\":false}\n");
		else
			fprintf(
			    a->out,
			    "no cluster agent (foundation-mirrord) mirrors into this segment\n");
		return EXIT_OK;
	}
	const struct fdn_entry *e = &v.st;
	static const char *const ints[] = {
	    "lease",    "lease_ttl", "published", "mirrored",         "dropped",
	    "revision", "lag",       "resyncs",   "publish_failures", "mirror_failures"};
	if (a->json) {
		fprintf(a->out, "{\"agent\":true,\"cluster\":");
		json_cstr(a->out, attr_str(e, "cluster"));
		fprintf(a->out, ",\"host\":");
		json_cstr(a->out, attr_str(e, "host"));
		fprintf(a->out, ",\"agent_pid\":%d,\"degraded\":%s,\"publisher\":", (int)e->pid,
			attr_true(e, "degraded") ? "true" : "false");
		json_cstr(a->out, attr_str(e, "publisher"));
		fprintf(a->out, ",\"mirror\":");
		json_cstr(a->out, attr_str(e, "mirror"));
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
			fprintf(a->out, ",\"%s\":%lld", ints[i], (long long)attr_int(e, ints[i]));
		fprintf(a->out, ",\"hosts\":[");
		for (uint32_t i = 0; i < v.hosts.v.list.n; i++) {
			const char *h = fdn_attrs_list_item(&v.hosts, i);
			bool got = cluster_host(s, h, &he);
			fprintf(a->out, "%s{\"host\":", i ? "," : "");
			json_cstr(a->out, h);
			fprintf(a->out, ",\"entries\":%lld,\"ttl_left\":%lld}",
				(long long)(got ? attr_int(&he, "entries") : 0),
				(long long)(got ? attr_int(&he, "ttl_left") : -2));
		}
		fprintf(a->out, "]}\n");
		return EXIT_OK;
	}
	fprintf(a->out, "cluster %s, host %s, agent pid %d: %s\n", attr_str(e, "cluster"),
		attr_str(e, "host"), (int)e->pid, attr_true(e, "degraded") ? "DEGRADED" : "ok");
	fprintf(a->out, "publisher  %s; lease %llx, ttl %lld s; %lld entries published\n",
		attr_str(e, "publisher"), (unsigned long long)attr_int(e, "lease"),
		(long long)attr_int(e, "lease_ttl"), (long long)attr_int(e, "published"));
	fprintf(a->out,
		"mirror     %s; revision %lld, lag %lld revisions; %lld remote entries, %lld "
		"dropped\n",
		attr_str(e, "mirror"), (long long)attr_int(e, "revision"),
		(long long)attr_int(e, "lag"), (long long)attr_int(e, "mirrored"),
		(long long)attr_int(e, "dropped"));
	struct table t = {.ncol = 3, .align = "lrr"};
	cellf(&t, "HOST");
	cellf(&t, "ENTRIES");
	cellf(&t, "LEASE_TTL_LEFT");
	for (uint32_t i = 0; i < v.hosts.v.list.n; i++) {
		const char *h = fdn_attrs_list_item(&v.hosts, i);
		bool got = cluster_host(s, h, &he);
		int64_t ttl = got ? attr_int(&he, "ttl_left") : -2;
		cellf(&t, "%s", h);
		cellf(&t, "%lld", (long long)(got ? attr_int(&he, "entries") : 0));
		if (ttl >= 0)
			cellf(&t, "%lld s", (long long)ttl);
		else
			cellf(&t, "%s", ttl == -1 ? "expired" : "?");
	}
	return table_done(a->out, &t);
}

/* The cluster's metrics, when an agent mirrors into the segment. */
void prom_cluster(fdn_segment *s, const struct args *a)
{
	static struct cluster_view v;
	if (!cluster_read(s, &v))
		return;
	const struct fdn_entry *e = &v.st;
	prom_gauge("foundation_cluster_degraded", "1 when the cluster mirror is degraded.", a,
		   attr_true(e, "degraded"));
	prom_gauge("foundation_cluster_hosts", "Other hosts with entries mirrored here.", a,
		   v.hosts.v.list.n);
	prom_gauge("foundation_cluster_remote_entries", "Remote entries mirrored here.", a,
		   (double)attr_int(e, "mirrored"));
	prom_gauge("foundation_cluster_published_entries", "Local entries published to etcd.", a,
		   (double)attr_int(e, "published"));
	prom_gauge("foundation_cluster_lag_revisions",
		   "etcd revisions not yet applied by the mirror.", a, (double)attr_int(e, "lag"));
	prom_counter("foundation_cluster_dropped_total",
		     "Remote entries the segment could not hold, since the agent started.", a,
		     (double)attr_int(e, "dropped"));
	prom_counter("foundation_cluster_resyncs_total",
		     "Resynchronisations with etcd, since the agent started.", a,
		     (double)attr_int(e, "resyncs"));
}
