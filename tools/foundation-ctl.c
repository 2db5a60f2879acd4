/*
 * foundation-ctl - change a segment from the shell: create and destroy it,
 * register, update and unregister registry entries, wait for a key.
 *
 * Each command attaches, makes one library call and detaches.  Entries
 * registered here belong to the --pid given, not to foundation-ctl: the
 * library claims a process slot for that pid, which the reaper watches, so
 * they stay after this short-lived process detaches and vanish when that pid
 * dies.
 *
 * Exit status: 0 done, 1 the operation failed (one line on stderr,
 * "foundation-ctl: <what>: <why>"), 2 bad usage, bad --attr or --where text
 * included (tools/cli.h has the typed syntax; it is checked before the
 * segment is touched).  --json: the commands that print write one JSON
 * object instead of text; the others refuse it (exit 2).
 */
#include "cli.h"

#include <foundation/attrs.h>
#include <foundation/changes.h>
#include <foundation/flags.h>
#include <foundation/introspect.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <foundation/segment.h>
#include <foundation/telemetry.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sys/signalfd.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/statvfs.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *prog = "foundation-ctl";

#define MAX_ATTRS 32
#define MAX_WHERE 16

/* Everything a command line can say; each command reads what it allows. */
struct args {
	const char *segment;
	const char *key;
	struct fdn_segment_opts opts;
	pid_t pid;
	bool replace, gone, unique;
	int64_t timeout_ms;
	size_t nattrs;
	const char *attr_text[MAX_ATTRS];
	const char *reason; /* stage rollback --reason */
	int nwords;         /* the words after the command (flags, stage) */
	const char *words[4];
	size_t nmeasures; /* emit --measure */
	const char *measure_text[FDN_MEASUREMENTS_MAX];
	uint64_t count; /* emit --count */
	bool json;      /* --json */
	bool clear;     /* update --clear */
	size_t nwhere;  /* query --where */
	const char *where_text[MAX_WHERE];
	const char *prefix; /* watch --prefix */
	bool from_set;      /* watch --from */
	uint64_t from;
	bool count_set; /* --count given */
};

struct command {
	const char *name;
	const char *allowed; /* option letters it takes (see all_opts) */
	bool takes_key;
	int (*run)(struct args *a);
	const char *synopsis;
	const char *help;
};

/* ---- attaching ---------------------------------------------------------------- */

static int attach(const struct args *a, fdn_segment **s)
{
	int r = fdn_segment_attach(a->segment, 0, s);
	char why[256];
	if (r)
		return complain(EXIT_FAIL, attach_why(a->segment, r, why, sizeof(why)),
				"segment \"%s\"", a->segment);
	return EXIT_OK;
}

/* Attach for a registry command.  The registry's backend follows the flags
 * in every process, this one too: with use_shm_registry off an entry would
 * go to this short-lived process's local registry and vanish with it, so
 * the command fails instead of pretending. */
static int attach_registry(const struct args *a, fdn_segment **s)
{
	int status = attach(a, s);
	if (status == EXIT_OK && !fdn_flag_enabled(*s, "use_shm_registry")) {
		fdn_segment_detach(*s);
		return complain(EXIT_FAIL,
				"use_shm_registry is off (the registry is process-local)",
				"segment \"%s\"", a->segment);
	}
	return status;
}

/* Detach: a process that registered for other pids leaves their entries
 * alone (they belong to those pids), so the plain detach is right. */
static int detach(const struct args *a, fdn_segment *s, int status)
{
	int r = fdn_segment_detach(s);
	if (r && status == EXIT_OK)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\": detach", a->segment);
	return status;
}

/* ---- attributes ----------------------------------------------------------------- */

struct attrset {
	struct fdn_attr v[MAX_ATTRS];
	const char *items[MAX_ATTRS][FDN_ATTR_LIST_MAX];
	char *text[MAX_ATTRS]; /* parsed copies: attr_parse cuts them up */
	size_t n;
};

static void attrs_free(struct attrset *set)
{
	for (size_t i = 0; i < set->n; i++)
		free(set->text[i]);
	set->n = 0;
}

/* The --attr texts of command cmd, typed (cli.h); bad text is bad usage. */
static int attrs_parse(const char *cmd, const struct args *a, struct attrset *set)
{
	set->n = 0;
	for (size_t i = 0; i < a->nattrs; i++) {
		char *copy = strdup(a->attr_text[i]);
		if (!copy) {
			attrs_free(set);
			return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "attribute \"%s\"",
					a->attr_text[i]);
		}
		set->text[set->n++] = copy;
		const char *why = attr_parse(copy, &set->v[i], set->items[i], FDN_ATTR_LIST_MAX);
		if (why) {
			attrs_free(set);
			return usage_error(cmd, "%s --attr \"%s\": %s", cmd, a->attr_text[i], why);
		}
	}
	return EXIT_OK;
}

/* ---- output ---------------------------------------------------------------------- */

/* {"segment":NAME,  -- the start of every JSON object printed */
static void json_head(const struct args *a)
{
	printf("{\"segment\":");
	json_cstr(stdout, a->segment);
}

/* ---- commands ------------------------------------------------------------------- */

static int cmd_create(struct args *a)
{
	fdn_segment *s;
	int r = fdn_segment_create(a->segment, &a->opts, &s);
	uint64_t need;
	struct statvfs vfs;
	if (r == FDN_ENOSPACE && fdn_segment_size(&a->opts, &need) == 0 &&
	    statvfs(fdn_segment_dir(), &vfs) == 0)
		return complain(
		    EXIT_FAIL, "no space",
		    "create segment \"%s\": it needs %" PRIu64 " bytes, %s has %" PRIu64 " free",
		    a->segment, need, fdn_segment_dir(), (uint64_t)vfs.f_bavail * vfs.f_frsize);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "create segment \"%s\"", a->segment);
	int status = detach(a, s, EXIT_OK);
	if (status == EXIT_OK && a->json) {
		json_head(a);
		printf(",\"created\":true}\n");
	} else if (status == EXIT_OK) {
		printf("created segment \"%s\"\n", a->segment);
	}
	return status;
}

static int cmd_destroy(struct args *a)
{
	int r = fdn_segment_destroy(a->segment);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "destroy segment \"%s\"", a->segment);
	if (a->json) {
		json_head(a);
		printf(",\"destroyed\":true}\n");
	} else {
		printf("destroyed segment \"%s\"\n", a->segment);
	}
	return EXIT_OK;
}

static int cmd_register(struct args *a)
{
	static struct attrset set;
	fdn_segment *s;
	int status = attrs_parse("register", a, &set);
	if (status || (status = attach_registry(a, &s))) {
		attrs_free(&set);
		return status;
	}
	pid_t holder = 0;
	unsigned flags = a->replace ? FDN_REG_REPLACE : 0;
	char host[FDN_HOST_MAX + 1] = "";
	int r = a->unique
		    ? fdn_register_cluster_unique(s, a->key, strlen(a->key), a->pid, set.v, set.n,
						  a->timeout_ms >= 0 ? (int)a->timeout_ms : 5000,
						  host, &holder)
		    : fdn_register(s, a->key, strlen(a->key), a->pid, set.v, set.n, flags, &holder);
	if (r == FDN_EEXISTS && a->unique) {
		char why[128];
		snprintf(why, sizeof(why), "%s (held by host %s, pid %d)", fdn_strerror(r), host,
			 (int)holder);
		status = complain(EXIT_FAIL, why, "register \"%s\"", a->key);
	} else if (r == FDN_EEXISTS && holder > 0) {
		char why[64];
		snprintf(why, sizeof(why), "%s (held by pid %d)", fdn_strerror(r), (int)holder);
		status = complain(EXIT_FAIL, why, "register \"%s\"", a->key);
	} else if (r) {
		status = complain(EXIT_FAIL, fdn_strerror(r), "register \"%s\"", a->key);
	}
	attrs_free(&set);
	return detach(a, s, status);
}

static int cmd_unregister(struct args *a)
{
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status)
		return status;
	int r = fdn_unregister(s, a->key, strlen(a->key));
	if (r)
		status = complain(EXIT_FAIL, fdn_strerror(r), "unregister \"%s\"", a->key);
	return detach(a, s, status);
}

/* get KEY: the entry, one row (or one JSON object). */
static int cmd_get(struct args *a)
{
	static struct fdn_entry e;
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status)
		return status;
	int r = fdn_lookup(s, a->key, strlen(a->key), 0, &e);
	if (r) {
		status = complain(EXIT_FAIL, fdn_strerror(r), "get \"%s\"", a->key);
	} else if (a->json) {
		json_head(a);
		printf(",\"key\":");
		json_str(stdout, e.key, e.key_len);
		printf(",\"pid\":%d,\"registered_ns\":%" PRIu64 ",\"attributes\":", (int)e.pid,
		       e.registered_ns);
		attr_set(stdout, e.attrs, e.attrs_len, true);
		printf("}\n");
	} else {
		struct row row = {e.key, e.key_len, e.pid, e.registered_ns, e.attrs, e.attrs_len};
		struct rows rs = {.v = &row, .n = 1};
		status = rows_text(stdout, &rs);
	}
	return detach(a, s, status);
}

/* query [--where NAME OP VALUE ...]: the entries every criterion holds for. */
static int cmd_query(struct args *a)
{
	static struct fdn_criterion c[MAX_WHERE];
	static const char *items[MAX_WHERE][FDN_ATTR_LIST_MAX];
	char *text[MAX_WHERE] = {0};
	int status = EXIT_OK;
	for (size_t i = 0; i < a->nwhere && status == EXIT_OK; i++) {
		const char *why;
		if (!(text[i] = strdup(a->where_text[i])))
			status = complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "query");
		else if ((why = where_parse(text[i], &c[i], items[i], FDN_ATTR_LIST_MAX)))
			status =
			    usage_error("query", "query --where \"%s\": %s", a->where_text[i], why);
	}
	fdn_segment *s;
	struct rows rs = {0};
	if (status == EXIT_OK && (status = attach_registry(a, &s)) == EXIT_OK) {
		int r = fdn_query(s, c, a->nwhere, rows_collect, &rs);
		if (r < 0) {
			status = complain(EXIT_FAIL, fdn_strerror(r), "query");
		} else {
			if (rs.n)
				qsort(rs.v, rs.n, sizeof(*rs.v), row_cmp);
			if (a->json)
				rows_json(stdout, a->segment, &rs);
			else
				status = rows_text(stdout, &rs);
		}
		status = detach(a, s, status);
	}
	rows_free(&rs);
	for (size_t i = 0; i < a->nwhere; i++)
		free(text[i]);
	return status;
}

/* update (replace all attributes) and merge. */
static int change_attrs(struct args *a, bool merge)
{
	static struct attrset set;
	fdn_segment *s;
	int status = attrs_parse(merge ? "merge" : "update", a, &set);
	if (status || (status = attach_registry(a, &s))) {
		attrs_free(&set);
		return status;
	}
	size_t klen = strlen(a->key);
	int r = merge ? fdn_merge_attributes(s, a->key, klen, set.v, set.n)
		      : fdn_update_attributes(s, a->key, klen, set.v, set.n);
	if (r)
		status = complain(EXIT_FAIL, fdn_strerror(r), "%s \"%s\"",
				  merge ? "merge" : "update", a->key);
	attrs_free(&set);
	return detach(a, s, status);
}

static int cmd_update(struct args *a)
{
	/* Replacing every attribute by none wipes them: only when asked. */
	if (a->nattrs == 0 && !a->clear)
		return usage_error("update",
				   "update \"%s\": no --attr given (--clear removes "
				   "every attribute)",
				   a->key);
	if (a->nattrs > 0 && a->clear)
		return usage_error("update", "update --clear: takes no --attr");
	return change_attrs(a, false);
}

static int cmd_merge(struct args *a)
{
	return change_attrs(a, true);
}

static int cmd_wait(struct args *a)
{
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status)
		return status;
	int r = fdn_watch(s, a->key, strlen(a->key), !a->gone, a->timeout_ms);
	if (r == FDN_ETIMEDOUT) {
		char why[64];
		snprintf(why, sizeof(why), "timed out after %" PRId64 " ms", a->timeout_ms);
		status = complain(EXIT_FAIL, why, "wait \"%s\"", a->key);
	} else if (r) {
		status = complain(EXIT_FAIL, fdn_strerror(r), "wait \"%s\"", a->key);
	}
	return detach(a, s, status);
}

/* ---- watch ------------------------------------------------------------------------ */

static void watch_print(const struct args *a, const struct fdn_change *c)
{
	if (a->json) {
		printf("{\"revision\":%" PRIu64 ",\"kind\":\"%s\",\"key\":", c->revision,
		       fdn_change_type_name(c->kind));
		json_str(stdout, c->key, c->key_len);
		printf(",\"pid\":%d,\"time_ns\":%" PRIu64, (int)c->pid, c->time_ns);
		if (c->death != FDN_NO_DEATH)
			printf(",\"death\":%" PRIu64, c->death);
		printf("}\n");
		return;
	}
	printf("%" PRIu64 " %s pid=%d ", c->revision, fdn_change_type_name(c->kind), (int)c->pid);
	if (c->death != FDN_NO_DEATH)
		printf("death=%" PRIu64 " ", c->death);
	text_str(stdout, c->key, c->key_len);
	putchar('\n');
}

/* Stream changes until SIGINT/SIGTERM (exit 0), --count N of them (exit
 * 0), or an overrun (exit 1: changes were lost to this reader). */
static int cmd_watch(struct args *a)
{
	const char *prefix = a->prefix ? a->prefix : "";
	size_t plen = strlen(prefix);
	if (plen > FDN_REG_KEY_MAX)
		return usage_error("watch", "watch --prefix: longer than %u bytes",
				   FDN_REG_KEY_MAX);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	/* Signals arrive through a signalfd beside the subscription's fd: the
	 * loop ends cleanly (the subscription closed, the segment detached).
	 * Blocked before attach: the subscription's thread inherits the mask. */
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sfd < 0)
		return complain(EXIT_FAIL, strerror(errno), "watch: signalfd");
	fdn_segment *s;
	int status = attach_registry(a, &s);
	if (status) {
		close(sfd);
		return status;
	}
	fdn_subscription *sub;
	int r = a->from_set ? fdn_subscribe_from(s, prefix, plen, a->from, 0, &sub)
			    : fdn_subscribe(s, prefix, plen, 0, &sub);
	if (r) {
		close(sfd);
		return detach(a, s, complain(EXIT_FAIL, fdn_strerror(r), "watch \"%s\"", prefix));
	}
	uint64_t printed = 0;
	struct fdn_change ch[64];
	struct pollfd p[2] = {{fdn_subscription_fd(sub), POLLIN, 0}, {sfd, POLLIN, 0}};
	while (!a->count_set || printed < a->count) {
		size_t want = sizeof(ch) / sizeof(ch[0]);
		if (a->count_set && a->count - printed < want)
			want = (size_t)(a->count - printed);
		int n = fdn_subscription_read(sub, ch, want);
		if (n == FDN_EOVERFLOW) {
			char why[128];
			snprintf(why, sizeof(why),
				 "changes after revision %" PRIu64 " were overwritten before "
				 "they were read",
				 fdn_subscription_revision(sub));
			status = complain(EXIT_FAIL, why, "watch \"%s\"", prefix);
			break;
		}
		if (n < 0) {
			status = complain(EXIT_FAIL, fdn_strerror(n), "watch \"%s\"", prefix);
			break;
		}
		for (int i = 0; i < n; i++)
			watch_print(a, &ch[i]);
		printed += (uint64_t)n;
		if (n > 0) {
			fflush(stdout);
			continue; /* more may wait: read again before polling */
		}
		if (poll(p, 2, -1) < 0 && errno != EINTR) {
			status = complain(EXIT_FAIL, strerror(errno), "watch: poll");
			break;
		}
		if (p[1].revents & POLLIN)
			break; /* interrupted: done */
	}
	fflush(stdout);
	fdn_subscription_close(sub);
	close(sfd);
	return detach(a, s, status);
}

/* ---- flags and stages -------------------------------------------------------- */

#define FLAGS_HELP                                                                     \
	"Feature flags, shared by every process of the segment (seen at their next\n"  \
	"read).  VALUE is on, off or a percentage 0..100 (\"25\" or \"25%\").\n"       \
	"  set NAME VALUE      change a flag (unknown flag, or a percentage outside\n" \
	"                      0..100: exit 1, nothing changed)\n"                     \
	"  get NAME            print its value: on, off or N%\n"                       \
	"  list                print every flag: name, value, default\n"               \
	"  create NAME [VALUE] a user-defined flag (default value off)\n"              \
	"  reset               every flag to its default, the stage to the one at\n"   \
	"                      creation\n"
#define STAGE_HELP                                                                 \
	"Migration stages 0..4; each applies its profile of the built-in flags.\n" \
	"  migrate N           from stage N-1 to N (only one step forward)\n"      \
	"  rollback N          to any lower stage N\n"                             \
	"    --reason R        why (kept in the history; up to 127 bytes)\n"       \
	"  emergency REASON    every built-in flag off, stage 0\n"                 \
	"An invalid move fails with \"invalid stage transition\" (exit 1).\n"

static int flags_list(const struct args *a, fdn_segment *s)
{
	static struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int n = fdn_flags_list(s, fl, FDN_FLAGS_MAX);
	if (n < 0)
		return complain(EXIT_FAIL, fdn_strerror(n), "segment \"%s\": flags", a->segment);
	if (n > FDN_FLAGS_MAX)
		n = FDN_FLAGS_MAX;
	if (a->json) {
		json_head(a);
		printf(",\"flags\":[");
		for (int i = 0; i < n; i++) {
			printf("%s{\"name\":", i ? "," : "");
			json_cstr(stdout, fl[i].name);
			printf(",\"value\":%d,\"default\":%d}", fl[i].value, fl[i].default_value);
		}
		printf("],\"count\":%d}\n", n);
		return EXIT_OK;
	}
	for (int i = 0; i < n; i++) {
		char v[16], d[16];
		printf("%-47s %-4s (default %s)\n", fl[i].name,
		       flag_text(fl[i].value, v, sizeof(v)),
		       flag_text(fl[i].default_value, d, sizeof(d)));
	}
	return EXIT_OK;
}

/* One flags sub-command on an attached segment. */
static int flags_run(const struct args *a, fdn_segment *s)
{
	const char *sub = a->words[0], *name = a->words[1];
	int r = 0, v = FDN_FLAG_OFF;
	if (strcmp(sub, "list") == 0)
		return flags_list(a, s);
	if (strcmp(sub, "reset") == 0) {
		if ((r = fdn_flags_reset(s)))
			return complain(EXIT_FAIL, fdn_strerror(r), "flags reset");
		return EXIT_OK;
	}
	if (strcmp(sub, "get") == 0) {
		char buf[16];
		if ((r = fdn_flag_get(s, name)) < 0)
			return complain(EXIT_FAIL, fdn_strerror(r), "flags get \"%s\"", name);
		if (a->json) {
			json_head(a);
			printf(",\"flag\":");
			json_cstr(stdout, name);
			printf(",\"value\":%d,\"enabled\":%s}\n", r,
			       r == FDN_FLAG_ON ? "true" : "false");
		} else {
			printf("%s\n", flag_text(r, buf, sizeof(buf)));
		}
		return EXIT_OK;
	}
	if (a->nwords == 3 && (r = fdn_flag_parse_value(a->words[2], &v)))
		return complain(EXIT_FAIL, fdn_strerror(r), "flags %s \"%s\": value \"%s\"", sub,
				name, a->words[2]);
	r = strcmp(sub, "set") == 0 ? fdn_flag_set(s, name, v) : fdn_flag_create(s, name, v);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "flags %s \"%s\"", sub, name);
	return EXIT_OK;
}

static int cmd_flags(struct args *a)
{
	static const struct {
		const char *sub;
		int min, max; /* words, the sub-command's own included */
	} subs[] = {
	    {"set", 3, 3}, {"get", 2, 2}, {"list", 1, 1}, {"create", 2, 3}, {"reset", 1, 1}};
	if (a->nwords == 0)
		return usage_error("flags", "flags: missing set, get, list, create or reset");
	size_t i = 0;
	while (i < sizeof(subs) / sizeof(subs[0]) && strcmp(subs[i].sub, a->words[0]) != 0)
		i++;
	if (i == sizeof(subs) / sizeof(subs[0]))
		return usage_error("flags", "flags %s: unknown sub-command", a->words[0]);
	if (a->nwords < subs[i].min || a->nwords > subs[i].max)
		return usage_error("flags", "flags %s: %s", a->words[0],
				   a->nwords < subs[i].min ? "missing arguments"
							   : "too many arguments");
	fdn_segment *s;
	int status = attach(a, &s);
	if (status)
		return status;
	return detach(a, s, flags_run(a, s));
}

/* A stage number 0..9 (the library refuses those beyond 4). */
static bool stage_num(const char *text, int *n)
{
	uint64_t v;
	if (!parse_num(text, 10, 9, &v))
		return false;
	*n = (int)v;
	return true;
}

static int cmd_stage(struct args *a)
{
	const char *sub = a->nwords ? a->words[0] : "";
	int n = 0;
	bool emergency = strcmp(sub, "emergency") == 0;
	if (!emergency && strcmp(sub, "migrate") != 0 && strcmp(sub, "rollback") != 0)
		return a->nwords
			   ? usage_error("stage", "stage %s: unknown sub-command", sub)
			   : usage_error("stage", "stage: missing migrate, rollback or emergency");
	if (a->nwords != 2)
		return usage_error("stage", "stage %s: missing %s", sub,
				   emergency ? "REASON" : "N");
	if (!emergency && !stage_num(a->words[1], &n))
		return usage_error("stage", "stage %s \"%s\": not a stage number", sub,
				   a->words[1]);
	if (a->reason && strcmp(sub, "rollback") != 0)
		return usage_error("stage", "stage %s --reason: only for rollback", sub);
	fdn_segment *s;
	int status = attach(a, &s);
	if (status)
		return status;
	int r = emergency                     ? fdn_stage_emergency_rollback(s, a->words[1])
		: strcmp(sub, "migrate") == 0 ? fdn_stage_migrate(s, n)
					      : fdn_stage_rollback(s, n, a->reason);
	if (r == FDN_ESTAGE)
		status = complain(EXIT_FAIL, fdn_strerror(r), "stage %s %s (at stage %d)", sub,
				  a->words[1], fdn_stage(s));
	else if (r)
		status = complain(EXIT_FAIL, fdn_strerror(r), "stage %s", sub);
	return detach(a, s, status);
}

/* ---- telemetry ------------------------------------------------------------------ */

/* sampler set NAME SPEC | sampler reset-stats NAME */
static int cmd_sampler(struct args *a)
{
	if (a->nwords == 2 && strcmp(a->words[0], "reset-stats") == 0) {
		const char *name = a->words[1];
		int r = fdn_event_name_check(name);
		if (r)
			return complain(EXIT_FAIL, fdn_strerror(r), "sampler \"%s\"", name);
		fdn_segment *s;
		int status = attach(a, &s);
		if (status)
			return status;
		if ((r = fdn_sampler_reset_stats(s, name)))
			status = complain(EXIT_FAIL, fdn_strerror(r), "sampler reset-stats \"%s\"",
					  name);
		return detach(a, s, status);
	}
	if (a->nwords != 3 || strcmp(a->words[0], "set") != 0)
		return usage_error("sampler",
				   "sampler: expected \"set NAME SPEC\" or \"reset-stats NAME\"");
	const char *name = a->words[1], *text = a->words[2];
	struct fdn_sampler sp;
	int r = fdn_event_name_check(name);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "sampler \"%s\"", name);
	if ((r = fdn_sampler_parse(text, &sp)))
		return complain(EXIT_FAIL, fdn_strerror(r), "sampler \"%s\"", text);
	fdn_segment *s;
	int status = attach(a, &s);
	if (status)
		return status;
	if ((r = fdn_sampler_set(s, name, &sp)))
		status = complain(EXIT_FAIL, fdn_strerror(r), "sampler set \"%s\"", name);
	return detach(a, s, status);
}

/* emit NAME [--measure NAME=NUMBER ...] [--attr NAME=VALUE ...] [--count N] */
static int cmd_emit(struct args *a)
{
	static struct attrset set;
	struct fdn_measurement m[FDN_MEASUREMENTS_MAX];
	char mnames[FDN_MEASUREMENTS_MAX][FDN_MEASUREMENT_NAME_MAX + 1];
	for (size_t i = 0; i < a->nmeasures; i++) {
		const char *t = a->measure_text[i], *eq = strchr(t, '=');
		size_t nl = eq ? (size_t)(eq - t) : 0;
		if (!eq || nl == 0 || nl > FDN_MEASUREMENT_NAME_MAX)
			return usage_error("emit",
					   "emit --measure \"%s\": expected NAME=NUMBER, "
					   "NAME 1..%u bytes",
					   t, FDN_MEASUREMENT_NAME_MAX);
		memcpy(mnames[i], t, nl);
		mnames[i][nl] = 0;
		m[i].name = mnames[i];
		if (!parse_double(eq + 1, &m[i].value))
			return usage_error("emit", "emit --measure \"%s\": not a finite number", t);
	}
	fdn_segment *s;
	int status = attrs_parse("emit", a, &set);
	if (status || (status = attach(a, &s))) {
		attrs_free(&set);
		return status;
	}
	uint64_t n = a->count ? a->count : 1;
	for (uint64_t i = 0; i < n; i++) {
		int r = fdn_emit(s, a->key, m, a->nmeasures, set.v, set.n);
		if (r < 0) {
			status = complain(EXIT_FAIL, fdn_strerror(r), "emit \"%s\"", a->key);
			break;
		}
	}
	attrs_free(&set);
	return detach(a, s, status);
}

/* ---- the reaper --------------------------------------------------------------- */

/* Poll the lease until it is free, or timeout_ms pass.  The holder's pid,
 * or 0. */
static pid_t reaper_gone(fdn_segment *s, int64_t timeout_ms)
{
	struct timespec tick = {0, 10 * 1000000L};
	for (int64_t waited = 0;; waited += 10) {
		pid_t p = fdn_reaper_holder(s);
		if (p == 0 || waited >= timeout_ms)
			return p;
		nanosleep(&tick, NULL);
	}
}

/* reaper status (field reaper_pid): {"segment":S,"reaper_pid":PID (0:
 * none),"stopped":B,"launches":N,"last_launch":{pid,time_ns,error} or
 * null,"why":TEXT}, or its sentence. */
static void reaper_status_print(const struct args *a, fdn_segment *s)
{
	struct fdn_reaper_status st;
	char why[512];
	fdn_reaper_status(s, &st);
	reaper_why(&st, why, sizeof(why));
	if (a->json) {
		json_head(a);
		printf(",\"reaper_pid\":%d,\"stopped\":%s,\"launches\":%u,\"last_launch\":",
		       (int)st.pid, st.stopped ? "true" : "false", st.launches);
		if (st.last_pid) {
			printf("{\"pid\":%d,\"time_ns\":%llu,\"error\":", (int)st.last_pid,
			       (unsigned long long)st.last_ns);
			if (st.last_error)
				json_cstr(stdout, fdn_errname(st.last_error));
			else
				printf("null");
			putchar('}');
		} else {
			printf("null");
		}
		printf(",\"why\":");
		json_cstr(stdout, why);
		printf("}\n");
	} else if (st.pid) {
		printf("reaper pid %d watches segment \"%s\"\n", (int)st.pid, a->segment);
	} else {
		printf("no reaper running: %s\n", why);
	}
}

/* What reaper start (field reaper_pid) and stop (stopped_pid) did:
 * {"segment":S,FIELD:PID} (0: none), or its sentence. */
static void reaper_print(const struct args *a, const char *field, pid_t p)
{
	if (a->json) {
		json_head(a);
		printf(",\"%s\":%d}\n", field, (int)p);
	} else if (strcmp(field, "stopped_pid") == 0) {
		if (p)
			printf("stopped reaper pid %d", (int)p);
		else
			printf("no reaper was running");
		printf("; none starts until `foundation-ctl reaper start`\n");
	} else {
		printf("reaper pid %d watches segment \"%s\"\n", (int)p, a->segment);
	}
}

/* reaper stop: the sticky stop, then the running reaper's exit.  A reaper
 * of a build before the stop flag does not look at it: after half the
 * time it gets SIGTERM, as stop always did before. */
static int reaper_stop(struct args *a, fdn_segment *s, int64_t timeout)
{
	pid_t p = fdn_reaper_holder(s);
	int r = fdn_reaper_stop(s, timeout / 2);
	if (r >= 0) {
		reaper_print(a, "stopped_pid", r);
		return EXIT_OK;
	}
	if (r != FDN_ETIMEDOUT)
		return complain(EXIT_FAIL, fdn_strerror(r), "reaper stop");
	if (p && fdn_reaper_holder(s) == p && kill(p, SIGTERM) != 0)
		return complain(EXIT_FAIL, strerror(errno), "reaper stop: pid %d", (int)p);
	if (reaper_gone(s, timeout - timeout / 2) != 0)
		return complain(EXIT_FAIL, fdn_strerror(FDN_ETIMEDOUT),
				"reaper stop: pid %d still holds the lease", (int)p);
	reaper_print(a, "stopped_pid", p);
	return EXIT_OK;
}

/* reaper start | stop | status */
static int cmd_reaper(struct args *a)
{
	const char *sub = a->nwords ? a->words[0] : "";
	bool start = strcmp(sub, "start") == 0, stop = strcmp(sub, "stop") == 0;
	if (!start && !stop && strcmp(sub, "status") != 0)
		return a->nwords ? usage_error("reaper", "reaper %s: unknown sub-command", sub)
				 : usage_error("reaper", "reaper: missing start, stop or status");
	int64_t timeout = a->timeout_ms >= 0 ? a->timeout_ms : 5000;
	fdn_segment *s;
	/* start and stop write the stop flag: a writable handle, made
	 * without the attach's own autostart (start launches once, itself;
	 * stop must not launch one).  status only looks, read-only. */
	int r = start || stop ? fdn_segment_attach_noreaper(a->segment, &s)
			      : fdn_segment_attach(a->segment, FDN_SEG_READONLY, &s);
	if (r)
		return complain(EXIT_FAIL, fdn_strerror(r), "segment \"%s\"", a->segment);
	int status = EXIT_OK;
	if (start) {
		pid_t p;
		char looked[1024];
		if ((r = fdn_reaper_start(s)) == FDN_ENOREAPER) {
			fdn_reaper_locate(looked, sizeof(looked));
			fprintf(stderr, "%s: reaper start: no reaper program: looked at %s\n", prog,
				looked);
			status = EXIT_FAIL;
		} else if (r != 0) {
			status = complain(EXIT_FAIL, fdn_strerror(r), "reaper start");
		} else if ((p = fdn_reaper_wait(s, timeout)) <= 0) {
			status = complain(EXIT_FAIL, fdn_strerror(p),
					  "reaper start: no reaper took the lease");
		} else {
			reaper_print(a, "reaper_pid", p);
		}
	} else if (stop) {
		status = reaper_stop(a, s, timeout);
	} else {
		reaper_status_print(a, s);
		status = fdn_reaper_holder(s) ? EXIT_OK : EXIT_FAIL;
	}
	fdn_segment_detach(s);
	return status;
}

#define ATTR_HELP                                                                       \
	"                       NAME=text     a string (also \"5\", \"true\")\n"        \
	"                       NAME=[a,b]    a list of strings, up to 64 ([] empty)\n" \
	"                       NAME:=5       an integer (64-bit)\n"                    \
	"                       NAME:=1.5     a finite double (1e3 too)\n"              \
	"                       NAME:=true    a boolean (true or false)\n"              \
	"                     anything else after := is refused (exit 2)\n"
#define WHERE_HELP                                                                      \
	"  --where \"NAME=VALUE\"      equal (a string, or [a,b] a list); for a list\n" \
	"                            attribute: contains VALUE\n"                       \
	"  --where \"NAME:=VALUE\"     equal to a typed value (5, 1.5, true)\n"         \
	"  --where \"NAME!=VALUE\"     not equal (an absent attribute is not equal);\n" \
	"          \"NAME!:=VALUE\"    the same with a typed value\n"                   \
	"  --where \"NAME<V\" (<= > >=) an order: between numbers if V is written as\n" \
	"                            one, else between strings\n"                       \
	"  --where \"NAME in a,b\"     one of the items (also [a,b]); for a list\n"     \
	"                            attribute: any element is one of them\n"           \
	"  --where \"NAME not in a,b\" none of them (an absent attribute qualifies)\n"  \
	"Bad criterion text is refused (exit 2).\n"

static const struct command commands[] = {
    {"create", "EPTHMIXVzLS", false, cmd_create, "create [OPTIONS]",
     "Create the segment (it must not exist) and start its reaper.\n"
     "  --entries N      registry sizing (default 100000)\n"
     "  --processes N    process-table slots (default 4096)\n"
     "  --threads N      reader (thread) slots (default 4096)\n"
     "  --spans N        trace slots: threads holding spans or an error context at\n"
     "                   once (default 256; 56 KiB each, touched only when used)\n"
     "  --events N       telemetry ring records, a power of two (default 4096)\n"
     "  --heap BYTES     bytes for keys and values; suffix K, M or G (x 1024...);\n"
     "                   default 256 x entries, at least 1 MiB\n"
     "  --mode OCTAL     file mode; must include 0600 (default 0600)\n"
     "  --indexed LIST   indexed attributes, comma-separated, at most 8; \"\" = none\n"
     "                   (default " FDN_DEFAULT_INDEXED ")\n"
     "  --changes N|off  change-log records, a power of two 16..16777216 (default\n"
     "                   16384, 320 bytes each); off: no change log (watch and\n"
     "                   subscriptions refused)\n"
     "  --sparse         do not reserve the segment's memory now: smaller until\n"
     "                   used, but a full shm filesystem then kills processes\n"
     "                   with SIGBUS (by default create fails instead)\n"
     "The segment is the file $FOUNDATION_SHM_DIR/NAME (default /dev/shm/NAME).\n"},
    {"destroy", "S", false, cmd_destroy, "destroy",
     "Remove the segment's name and stop its reaper.  Attached processes keep\n"
     "their mapping until they detach.\n"},
    {"register", "parUtS", true, cmd_register,
     "register KEY --pid PID [--attr NAME=VALUE ...] [--replace | --cluster-unique "
     "[--timeout MS]]",
     "Register KEY for process PID (which need not be this one: the entry lives\n"
     "until PID dies or it is unregistered).\n"
     "  --pid PID          the owner (required)\n"
     "  --attr NAME=VALUE  an attribute, up to 32, typed as written:\n" ATTR_HELP
     "  --replace          take the key over even if a live process holds it\n"
     "  --cluster-unique   only if no host of the cluster holds KEY: asks the\n"
     "                     local foundation-mirrord (docs/cluster.md), waiting for\n"
     "                     its verdict at most --timeout MS (default 5000)\n"
     "Fails with \"already exists (held by pid N)\" when a live process holds KEY\n"
     "(\"(held by host H, pid N)\" with --cluster-unique).\n"},
    {"unregister", "S", true, cmd_unregister, "unregister KEY", "Remove the entry KEY.\n"},
    {"get", "S", true, cmd_get, "get KEY",
     "Print the entry KEY: key, owner pid, registration time (UTC), attributes;\n"
     "with --json {\"segment\", \"key\", \"pid\", \"registered_ns\", \"attributes\"}.\n"
     "Exit 1 \"not found\" when no live entry has that key.\n"},
    {"query", "wS", false, cmd_query, "query [--where \"NAME OP VALUE\" ...]",
     "Print the entries for which every criterion holds (none: every entry),\n"
     "sorted by key, as foundation-inspect registry does.  Up to 16 --where:\n" WHERE_HELP},
    {"update", "aCS", true, cmd_update, "update KEY --attr NAME=VALUE ... | --clear",
     "Replace all attributes of KEY by the ones given (typed as for register).\n"
     "  --clear  remove every attribute (update without --attr is refused)\n"},
    {"merge", "aS", true, cmd_merge, "merge KEY --attr NAME=VALUE ...",
     "Set the attributes given on KEY (typed as for register), keeping its others.\n"},
    {"sampler", "S", false, cmd_sampler, "sampler set NAME SPEC | sampler reset-stats NAME",
     "set: the sampler of event NAME in every process: always, never, random(P),\n"
     "rate_limited(PER_SECOND), reservoir(N), adaptive(TARGET_PER_SECOND).\n"
     "A bad SPEC is \"invalid sampler\" (exit 1).\n"
     "reset-stats: start NAME's total and sampled counts again from 0 (its sampler\n"
     "unchanged); a name without a sampler is \"not found\" (exit 1).\n"},
    {"emit", "amcS", true, cmd_emit,
     "emit NAME [--measure NAME=NUMBER ...] [--attr NAME=VALUE ...] [--count N]",
     "Emit the event NAME (into the segment's event ring), N times (default 1).\n"
     "  --measure NAME=NUMBER  a measurement, up to 32; NUMBER a finite decimal\n"
     "  --attr NAME=VALUE      an attribute, typed as for register\n"},
    {"wait", "gtS", true, cmd_wait, "wait KEY [--gone] [--timeout MS]",
     "Block until KEY is registered (or, with --gone, no longer visible: unregistered,\n"
     "or its owner died and was reaped).\n"
     "  --gone        wait for KEY to disappear\n"
     "  --timeout MS  give up after MS milliseconds (exit 1); default: no limit\n"},
    {"watch", "FfcS", false, cmd_watch, "watch [--prefix P] [--from REV] [--count N] [--json]",
     "Print the registry's changes as they happen, one line each, until\n"
     "interrupted (SIGINT, SIGTERM, SIGHUP: exit 0):\n"
     "  REVISION KIND pid=PID [death=N] KEY\n"
     "KIND is registered, updated, unregistered or removed (the owner died or\n"
     "detached; death=N: the death's number in the graveyard).  With --json, one\n"
     "object per line: {\"revision\", \"kind\", \"key\", \"pid\", \"time_ns\"[, \"death\"]}.\n"
     "  --prefix P   only keys that begin with P (default: every key)\n"
     "  --from REV   start with the changes after revision REV (default: now)\n"
     "  --count N    exit after N changes\n"
     "Exit 1 if changes to print were overwritten first (the log holds the last\n"
     "`--changes` of create; a --from older than that), or the segment has no\n"
     "change log.\n"},
    {"flags", "S", false, cmd_flags,
     "flags set NAME VALUE | get NAME | list | create NAME [VALUE] | reset", FLAGS_HELP},
    {"stage", "RS", false, cmd_stage,
     "stage migrate N | rollback N [--reason R] | emergency REASON", STAGE_HELP},
    {"reaper", "tS", false, cmd_reaper, "reaper start | stop | status [--timeout MS]",
     "The segment's reaper (foundation-reaperd).\n"
     "  start   lift a stop, start one unless a live reaper holds the lease\n"
     "          ($FOUNDATION_REAPERD, else the one installed beside the library,\n"
     "          else the configured path), wait until one holds it and print its\n"
     "          pid\n"
     "  stop    stop the reaper and keep it stopped: no autostart, no restart by\n"
     "          a writer until `reaper start` (a flag in the segment); wait until\n"
     "          it has released the lease (a reaper too old to see the flag gets\n"
     "          SIGTERM after half the timeout; none running: says so, exit 0)\n"
     "  status  print the reaper's pid; exit 1 if none runs, saying why (stopped,\n"
     "          no program found, exited)\n"
     "  --timeout MS  how long start and stop wait (default 5000)\n"
     "While no reaper runs, dead processes' entries stay until one starts.\n"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

/* ---- usage ---------------------------------------------------------------------- */

static void usage(FILE *f, const void *unused)
{
	fprintf(f, "usage: %s [--segment NAME] [--json] COMMAND [ARGS...]\n\ncommands:\n", prog);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].synopsis);
	fprintf(f,
		"\n"
		"Change a Foundation segment from the shell.  \"%s COMMAND --help\"\n"
		"describes one command.  A command that changes something prints nothing\n"
		"on success, except create, destroy and reaper start/stop; get, query,\n"
		"flags get, flags list and reaper status print what they find.\n"
		"\n"
		"  --segment NAME  segment (default $FOUNDATION_SEGMENT, else \"foundation\");\n"
		"                  also accepted after the command\n"
		"  --json          one JSON object instead of text, for the commands that\n"
		"                  print (refused by the others); also accepted after the\n"
		"                  command\n"
		"  --help          this text\n"
		"  --version       print the version and exit\n"
		"\n"
		"Exit status: 0 done; 1 the operation failed; 2 bad usage (also bad --attr,\n"
		"--where or number text).\n",
		prog);
}

static void command_usage(FILE *f, const void *ctx)
{
	const struct command *c = ctx;
	fprintf(f, "usage: %s [--segment NAME] %s\n\n%s", prog, c->synopsis, c->help);
}

/* ---- argument parsing ----------------------------------------------------------- */

static const struct option all_opts[] = {
    {"entries", required_argument, 0, 'E'}, {"processes", required_argument, 0, 'P'},
    {"threads", required_argument, 0, 'T'}, {"heap", required_argument, 0, 'H'},
    {"mode", required_argument, 0, 'M'},    {"indexed", required_argument, 0, 'I'},
    {"pid", required_argument, 0, 'p'},     {"attr", required_argument, 0, 'a'},
    {"replace", no_argument, 0, 'r'},       {"gone", no_argument, 0, 'g'},
    {"timeout", required_argument, 0, 't'}, {"segment", required_argument, 0, 'S'},
    {"spans", required_argument, 0, 'X'},   {"events", required_argument, 0, 'V'},
    {"help", no_argument, 0, 'h'},          {"reason", required_argument, 0, 'R'},
    {"measure", required_argument, 0, 'm'}, {"count", required_argument, 0, 'c'},
    {"json", no_argument, 0, 'j'},          {"clear", no_argument, 0, 'C'},
    {"where", required_argument, 0, 'w'},   {"sparse", no_argument, 0, 'z'},
    {"prefix", required_argument, 0, 'F'},  {"from", required_argument, 0, 'f'},
    {"changes", required_argument, 0, 'L'}, {"cluster-unique", no_argument, 0, 'U'},
};

#define NOPTS (sizeof(all_opts) / sizeof(all_opts[0]))

/* BYTES with an optional binary suffix K, M or G. */
static bool parse_bytes(const char *text, uint64_t *out)
{
	char num[32];
	size_t n = strlen(text);
	unsigned shift = 0;
	if (n > 1 && n < sizeof(num) && strchr("kKmMgG", text[n - 1])) {
		const char *sfx = "kKmMgG";
		shift = 10u * (1u + (unsigned)(strchr(sfx, text[n - 1]) - sfx) / 2u);
		memcpy(num, text, n - 1);
		num[n - 1] = 0;
		text = num;
	}
	uint64_t v;
	if (!parse_num(text, 10, UINT64_MAX >> shift, &v))
		return false;
	*out = v << shift;
	return true;
}

/* "--name" of option letter opt. */
static const char *opt_name(int opt)
{
	static char buf[32];
	for (size_t i = 0; i < NOPTS; i++)
		if (all_opts[i].val == opt)
			snprintf(buf, sizeof(buf), "--%s", all_opts[i].name);
	return buf;
}

/* One option's value into a; 0 or EXIT_USAGE. */
static int take_option(const struct command *c, int opt, const char *val, struct args *a)
{
	uint64_t v = 0;
	bool ok = true;
	switch (opt) {
	case 'E':
		ok = parse_num(val, 10, UINT64_MAX, &a->opts.entries);
		break;
	case 'P':
	case 'T':
	case 'X':
	case 'V':
		ok = parse_num(val, 10, UINT32_MAX, &v);
		*(opt == 'P'   ? &a->opts.processes
		  : opt == 'T' ? &a->opts.threads
		  : opt == 'X' ? &a->opts.spans
			       : &a->opts.events) = (uint32_t)v;
		break;
	case 'H':
		ok = parse_bytes(val, &a->opts.heap_bytes);
		break;
	case 'M':
		ok = parse_num(val, 8, 07777, &v);
		a->opts.mode = (uint32_t)v;
		break;
	case 'I':
		a->opts.indexed = val;
		break;
	case 'z':
		a->opts.flags |= FDN_SEG_SPARSE;
		break;
	case 'p':
		ok = parse_num(val, 10, INT32_MAX, &v) && v > 0;
		a->pid = (pid_t)v;
		break;
	case 'a':
		if (a->nattrs == MAX_ATTRS)
			return usage_error(c->name, "%s --attr: at most %d", c->name, MAX_ATTRS);
		a->attr_text[a->nattrs++] = val;
		break;
	case 'r':
		a->replace = true;
		break;
	case 'U':
		a->unique = true;
		break;
	case 'g':
		a->gone = true;
		break;
	case 't':
		ok = parse_num(val, 10, INT64_MAX / 1000000, &v);
		a->timeout_ms = (int64_t)v;
		break;
	case 'S':
		a->segment = val;
		break;
	case 'm':
		if (a->nmeasures == FDN_MEASUREMENTS_MAX)
			return usage_error(c->name, "%s --measure: at most %u", c->name,
					   FDN_MEASUREMENTS_MAX);
		a->measure_text[a->nmeasures++] = val;
		break;
	case 'c':
		ok = parse_num(val, 10, UINT32_MAX, &a->count);
		a->count_set = true;
		break;
	case 'F':
		a->prefix = val;
		break;
	case 'f':
		ok = parse_num(val, 10, UINT64_MAX, &a->from);
		a->from_set = true;
		break;
	case 'L':
		if (strcmp(val, "off") == 0) {
			a->opts.changes = FDN_CHANGES_OFF;
		} else {
			ok = parse_num(val, 10, FDN_CHANGES_MAX, &v) && v >= FDN_CHANGES_MIN &&
			     (v & (v - 1)) == 0;
			a->opts.changes = (uint32_t)v;
		}
		break;
	case 'R':
		a->reason = val;
		break;
	case 'j':
		a->json = true;
		break;
	case 'C':
		a->clear = true;
		break;
	case 'w':
		if (a->nwhere == MAX_WHERE)
			return usage_error(c->name, "%s --where: at most %d", c->name, MAX_WHERE);
		a->where_text[a->nwhere++] = val;
		break;
	}
	if (!ok)
		return usage_error(c->name, "%s %s \"%s\": bad number", c->name, opt_name(opt),
				   val);
	return 0;
}

/* Does the command print on success (and so take --json)? */
static bool prints(const struct command *c, const struct args *a)
{
	if (c->run == cmd_flags)
		return a->nwords == 0 ||
		       (strcmp(a->words[0], "get") == 0 || strcmp(a->words[0], "list") == 0);
	return c->run == cmd_create || c->run == cmd_destroy || c->run == cmd_get ||
	       c->run == cmd_query || c->run == cmd_reaper || c->run == cmd_watch;
}

/* Positional words a command takes after its name (flags, stage). */
static int max_words(const struct command *c)
{
	return c->run == cmd_flags || c->run == cmd_sampler ? 3
	       : c->run == cmd_stage                        ? 2
	       : c->run == cmd_reaper                       ? 1
							    : 0;
}

/* take_option as a cli_take_fn (0 there is CLI_GO_ON here). */
static int take_command_option(void *arg, const void *c, int o, char *val)
{
	int r = take_option(c, o, val, arg);
	return r ? r : CLI_GO_ON;
}

/* Parse a command's arguments (argv[0] is its name).  Returns CLI_GO_ON,
 * else the exit status. */
static int parse_command(const struct command *c, int argc, char **argv, struct args *a)
{
	int status = cli_command_options(argc, argv, c->name, all_opts, NOPTS, "hj", c->allowed,
					 command_usage, take_command_option, a, c);
	if (status != CLI_GO_ON)
		return status;
	while (optind < argc && a->nwords < max_words(c))
		a->words[a->nwords++] = argv[optind++];
	if (c->takes_key && optind < argc)
		a->key = argv[optind++];
	if (optind < argc)
		return usage_error(c->name, "%s \"%s\": unexpected argument", c->name,
				   argv[optind]);
	if (c->takes_key && !a->key)
		return usage_error(c->name, "%s: missing KEY", c->name);
	if (c->run == cmd_register && a->pid == 0)
		return usage_error(c->name, "%s: missing --pid PID", c->name);
	if (c->run == cmd_register && a->unique && a->replace)
		return usage_error(c->name, "%s: --replace and --cluster-unique exclude each other",
				   c->name);
	if (c->run == cmd_register && !a->unique && a->timeout_ms >= 0)
		return usage_error(c->name, "%s --timeout: only with --cluster-unique", c->name);
	if (a->json && !prints(c, a))
		return usage_error(c->name, "%s%s%s --json: prints nothing", c->name,
				   a->nwords ? " " : "", a->nwords ? a->words[0] : "");
	return CLI_GO_ON;
}

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	static struct args a = {.timeout_ms = -1};
	static const struct option lo[] = {{"segment", required_argument, 0, 's'},
					   {"json", no_argument, 0, 'j'},
					   {"help", no_argument, 0, 'h'},
					   {"version", no_argument, 0, 'v'},
					   {0, 0, 0, 0}};
	fdn_segment_opts_init(&a.opts);
	struct cli_global g = {&a.segment, &a.json};
	int status = cli_program_options(argc, argv, "+:s:h", lo, 'v', usage, cli_take_global, &g);
	if (status != CLI_GO_ON)
		return status;
	if (optind == argc)
		return usage_error(NULL, "missing COMMAND");
	const struct command *c = find_command(argv[optind]);
	if (!c)
		return usage_error(NULL, "%s: unknown command", argv[optind]);
	status = parse_command(c, argc - optind, argv + optind, &a);
	if (status != CLI_GO_ON)
		return status;
	if (!a.segment)
		a.segment = fdn_segment_default_name();
	if (fdn_segment_name_check(a.segment))
		return usage_error(c->name, "segment \"%s\": invalid name", a.segment);
	return c->run(&a);
}
