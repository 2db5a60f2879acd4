/*
 * test_introspect.c - foundation/introspect.h, the calls foundation-inspect
 * is built on: the process table as another process sees it (a forked
 * child that attaches and registers), the indexed attribute names, the
 * mapping, the reaper's latency histogram and the segment-name rule.
 */
#include "common.h"

#include <foundation/introspect.h>
#include <foundation/reaper.h>
#include <foundation/registry.h>
#include <sys/stat.h>

TestSuite(introspect);

struct seen {
	int n;
	struct fdn_process p[16];
	int stop_after; /* return 99 after this many, 0 = never */
};

static int collect(void *arg, const struct fdn_process *p)
{
	struct seen *s = arg;
	if (s->n < 16)
		s->p[s->n] = *p;
	s->n++;
	return s->stop_after && s->n >= s->stop_after ? 99 : 0;
}

static const struct fdn_process *find_pid(const struct seen *s, pid_t pid)
{
	for (int i = 0; i < s->n && i < 16; i++)
		if (s->p[i].pid == (uint32_t)pid)
			return &s->p[i];
	return NULL;
}

Test(introspect, processes_lists_this_process_and_a_child)
{
	char name[128];
	t_name(name, sizeof(name), "intro");
	fdn_segment *s = t_create(name, 1000, 0);
	int go[2], ready[2];
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(ready), 0);
	pid_t c = t_fork();
	if (c == 0) {
		fdn_segment *cs = NULL;
		char b = 1;
		if (fdn_segment_attach(name, 0, &cs) != 0 ||
		    fdn_register(cs, "child", 5, getpid(), NULL, 0, 0, NULL) != 0)
			b = 0;
		(void)!write(ready[1], &b, 1);
		(void)!read(go[0], &b, 1);
		_exit(0);
	}
	char b = 0;
	cr_assert_eq(read(ready[0], &b, 1), 1);
	cr_assert_eq(b, 1, "the child could not attach and register");
	struct seen seen = {0};
	cr_assert_eq(fdn_processes(s, collect, &seen), 0);
	cr_assert_geq(seen.n, 2);
	const struct fdn_process *me = find_pid(&seen, getpid());
	const struct fdn_process *ch = find_pid(&seen, c);
	cr_assert_not_null(me, "this process is not listed");
	cr_assert_not_null(ch, "the child is not listed");
	for (const struct fdn_process *p = me; p; p = p == me ? ch : NULL) {
		cr_assert_eq(p->state, FDN_PROCESS_LIVE);
		cr_assert_str_eq(fdn_process_state_name(p->state), "live");
		cr_assert_neq(p->ident_kind, FDN_IDENTITY_NONE);
		cr_assert_neq(p->ident, 0);
		cr_assert_eq(p->uid, getuid());
		cr_assert_gt(p->attached_ns, 0);
		cr_assert_eq(p->claimer_pid, p->pid, "each attached itself");
	}
	cr_assert_geq(ch->reader_slots, 1, "the child's writing thread holds a reader slot");
	cr_assert_neq(me->slot, ch->slot);
	/* A non-zero return stops the walk and is returned. */
	struct seen one = {.stop_after = 1};
	cr_assert_eq(fdn_processes(s, collect, &one), 99);
	cr_assert_eq(one.n, 1);
	cr_assert_eq(fdn_processes(s, NULL, NULL), FDN_EINVAL);
	cr_assert_eq(fdn_processes(NULL, collect, &one), FDN_EINVAL);
	cr_assert_str_eq(fdn_process_state_name(0), "invalid");
	cr_assert_str_eq(fdn_identity_kind_name(FDN_IDENTITY_PIDFS), "pidfs");
	cr_assert_str_eq(fdn_identity_kind_name(FDN_IDENTITY_STARTTIME), "starttime");
	cr_assert_eq(write(go[1], &b, 1), 1);
	waitpid(c, NULL, 0);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(introspect, indexed_attributes_mapping_latency_and_names)
{
	char name[128];
	t_name(name, sizeof(name), "intro");
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 100;
	o.indexed = "zone,capability";
	fdn_segment *s = NULL;
	cr_assert_eq(fdn_segment_create(name, &o, &s), 0);
	char names[FDN_INDEXED_ATTRS_MAX][FDN_INDEXED_ATTR_NAME_MAX + 1];
	cr_assert_eq(fdn_indexed_attributes(s, names, FDN_INDEXED_ATTRS_MAX), 2);
	cr_assert_str_eq(names[0], "zone");
	cr_assert_str_eq(names[1], "capability");
	cr_assert_eq(fdn_indexed_attributes(s, names, 1), 1, "at most cap names");
	cr_assert_eq(fdn_indexed_attributes(s, NULL, 1), FDN_EINVAL);
	/* The mapping is the segment's file. */
	struct fdn_segment_mapping m;
	cr_assert_eq(fdn_segment_mapping(s, &m), 0);
	cr_assert_not_null(m.base);
	struct stat st;
	cr_assert_eq(fstat(m.fd, &st), 0);
	cr_assert_eq((uint64_t)st.st_ino, m.ino);
	cr_assert_eq((uint64_t)st.st_dev, m.dev);
	cr_assert_eq((uint64_t)st.st_size, m.size);
	cr_assert_eq(fdn_segment_mapping(s, NULL), FDN_EINVAL);
	/* No death yet: an empty histogram with increasing bounds. */
	struct fdn_reaper_latency l;
	cr_assert_eq(fdn_reaper_latency(s, &l), 0);
	cr_assert_eq(l.count, 0);
	for (int b = 0; b < FDN_REAPER_LATENCY_BOUNDS; b++) {
		cr_assert_eq(l.cumulative[b], 0);
		if (b)
			cr_assert_gt(l.bound_ns[b], l.bound_ns[b - 1]);
	}
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	/* The name rule. */
	cr_assert_eq(fdn_segment_name_check("fdn-a_b.1"), 0);
	cr_assert_eq(fdn_segment_name_check(""), FDN_EINVAL);
	cr_assert_eq(fdn_segment_name_check("."), FDN_EINVAL);
	cr_assert_eq(fdn_segment_name_check(".."), FDN_EINVAL);
	cr_assert_eq(fdn_segment_name_check("a/b"), FDN_EINVAL);
	cr_assert_eq(fdn_segment_name_check("a b"), FDN_EINVAL);
	char longname[FDN_SEGMENT_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cr_assert_eq(fdn_segment_name_check(longname), FDN_EINVAL);
	longname[FDN_SEGMENT_NAME_MAX] = 0;
	cr_assert_eq(fdn_segment_name_check(longname), 0);
}
