/*
 * test_segment.c - create / attach / detach / destroy, and every error of
 * attach, each from a crafted bad segment.
 */
#include "common.h"

#include <dirent.h>
#include <pthread.h>

#include <fcntl.h>
#include <sys/stat.h>

static void shm_file(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "/dev/shm/%s", name);
}

/* Overwrite `len` bytes at `off` of a (detached) segment's file. */
static void poke(const char *name, off_t off, const void *bytes, size_t len)
{
	char path[256];
	shm_file(path, sizeof(path), name);
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, bytes, len, off), (ssize_t)len);
	close(fd);
}

/* A fresh segment holding one key, detached; returns its name in buf. */
static void make_detached(char *buf, size_t cap)
{
	t_name(buf, cap, "seg");
	fdn_segment *s = t_create(buf, 1000, 0);
	cr_assert_eq(t_put(s, "kept", 42, FDN_HT_UNIQUE), 0);
	fdn_segment_detach(s);
}

static int attach_err(const char *name)
{
	fdn_segment *s = NULL;
	int r = fdn_segment_attach(name, 0, &s);
	if (r == 0)
		fdn_segment_detach(s);
	else
		cr_assert_null(s);
	return r;
}

Test(segment, create_attach_detach_destroy)
{
	char name[128];
	t_name(name, sizeof(name), "seg");
	fdn_segment *a = t_create(name, 1000, 0);
	cr_assert_str_eq(fdn_segment_name(a), name);
	cr_assert_eq(t_put(a, "k1", 7, FDN_HT_UNIQUE), 0);
	fdn_segment *b;
	cr_assert_eq(fdn_segment_attach(name, 0, &b), 0);
	uint64_t v = 0;
	cr_assert_eq(t_get(b, "k1", &v), 0);
	cr_assert_eq(v, 7);
	struct fdn_segment_stats st;
	cr_assert_eq(fdn_segment_stats(b, &st), 0);
	cr_assert_eq(st.procs_used, 1, "one process, one slot, however many handles");
	cr_assert_eq(st.tables[0].entries, 1);
	cr_assert_eq(st.tables[0].buckets, 2048);
	cr_assert_eq(st.abi_major, FDN_ABI_MAJOR);
	cr_assert_eq(st.creator_pid, (uint32_t)getpid());
	fdn_segment_detach(b);
	fdn_segment_detach(a);
	/* Still there after every detach; gone after destroy. */
	cr_assert_eq(fdn_segment_attach(name, 0, &a), 0);
	cr_assert_eq(t_get(a, "k1", &v), 0);
	t_assert_clean(a);
	fdn_segment_detach(a);
	cr_assert_eq(fdn_segment_destroy(name), 0);
	cr_assert_eq(attach_err(name), FDN_ENOSEG);
	cr_assert_eq(fdn_segment_destroy(name), FDN_ENOSEG);
}

Test(segment, file_mode_and_exclusive_create)
{
	char name[128], path[256];
	t_name(name, sizeof(name), "seg");
	fdn_segment *a = t_create(name, 1000, 0);
	shm_file(path, sizeof(path), name);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	fdn_segment *b = NULL;
	cr_assert_eq(fdn_segment_create(name, NULL, &b), FDN_EEXISTS);
	cr_assert_null(b);
	uint64_t v;
	cr_assert_eq(t_get(a, "missing", &v), FDN_ENOTFOUND);
	fdn_segment_detach(a);
	fdn_segment_destroy(name);
}

Test(segment, group_mode_option)
{
	char name[128], path[256];
	t_name(name, sizeof(name), "seg");
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 100;
	o.mode = 0640;
	fdn_segment *a;
	cr_assert_eq(fdn_segment_create(name, &o, &a), 0);
	shm_file(path, sizeof(path), name);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0640);
	fdn_segment_detach(a);
	fdn_segment_destroy(name);
}

Test(segment, bad_names_and_options)
{
	fdn_segment *s = NULL;
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cr_assert_eq(fdn_segment_create("", NULL, &s), FDN_EINVAL);
	cr_assert_eq(fdn_segment_create("a/b", NULL, &s), FDN_EINVAL);
	cr_assert_eq(fdn_segment_create("..", NULL, &s), FDN_EINVAL);
	cr_assert_eq(fdn_segment_create(longname, NULL, &s), FDN_EINVAL);
	cr_assert_eq(fdn_segment_attach("no such", 0, &s), FDN_EINVAL);
	cr_assert_eq(fdn_segment_attach("fdn-test-never-created", 0, &s), FDN_ENOSEG);
	cr_assert_eq(fdn_segment_attach("x", 0x80, &s), FDN_EINVAL);
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 0;
	cr_assert_eq(fdn_segment_create("fdn-test-bad-opts", &o, &s), FDN_EINVAL);
	fdn_segment_opts_init(&o);
	o.mode = 0400; /* the owner must be able to write */
	cr_assert_eq(fdn_segment_create("fdn-test-bad-opts", &o, &s), FDN_EINVAL);
	/* Indexed names: not empty, not too many or too long, no control
	 * byte first (the index's own prefixes start with 0, 1 or 2). */
	const char *bad_indexed[] = {"zone,,gpu", "\001zone", "\002", "zone,\037x", ","};
	for (size_t i = 0; i < sizeof(bad_indexed) / sizeof(bad_indexed[0]); i++) {
		fdn_segment_opts_init(&o);
		o.indexed = bad_indexed[i];
		cr_assert_eq(fdn_segment_create("fdn-test-bad-opts", &o, &s), FDN_EINVAL, "%zu", i);
	}
	cr_assert_null(s);
	cr_assert_eq(fdn_segment_attach("fdn-test-bad-opts", 0, &s), FDN_ENOSEG);
}

Test(segment, default_name_from_environment)
{
	setenv("FOUNDATION_SEGMENT", "fdn-test-env-name", 1);
	cr_assert_str_eq(fdn_segment_default_name(), "fdn-test-env-name");
	unsetenv("FOUNDATION_SEGMENT");
	cr_assert_str_eq(fdn_segment_default_name(), "foundation");
}

/* The writable-mode refusal needs no privilege: it runs as any user. */
Test(segment, writable_mode)
{
	char name[128], path[256];
	make_detached(name, sizeof(name));
	shm_file(path, sizeof(path), name);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(attach_err(name), FDN_EMODE);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(attach_err(name), 0);
	fdn_segment_destroy(name);
}

Test(segment, foreign_owner_and_writable_mode)
{
	/* Giving the file to another user takes root (CAP_CHOWN). */
	if (geteuid() != 0) {
		fprintf(stderr, "segment::foreign_owner_and_writable_mode: skipped: "
				"chown to another user needs root\n");
		cr_skip_test("chown to another user needs root");
	}
	char name[128], path[256];
	make_detached(name, sizeof(name));
	shm_file(path, sizeof(path), name);
	cr_assert_eq(chown(path, 12345, getegid()), 0);
	cr_assert_eq(attach_err(name), FDN_EOWNER);
	fdn_segment *s;
	/* Foreign: another user's segment of one of our groups. */
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_ALLOW_FOREIGN, &s), 0);
	fdn_segment_detach(s);
	cr_assert_eq(chmod(path, 0660), 0);
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_ALLOW_FOREIGN, &s), 0);
	fdn_segment_detach(s);
	/* Never any owner, any mode: another group, or world-writable. */
	cr_assert_eq(chown(path, 12345, 12345), 0);
	s = NULL;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_ALLOW_FOREIGN, &s), FDN_EOWNER);
	cr_assert_eq(chown(path, 12345, getegid()), 0);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_ALLOW_FOREIGN, &s), FDN_EMODE);
	cr_assert_null(s);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(chown(path, geteuid(), getegid()), 0);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(attach_err(name), FDN_EMODE);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(attach_err(name), 0);
	fdn_segment_destroy(name);
}

Test(segment, crafted_headers_each_give_their_error)
{
	char name[128];
	make_detached(name, sizeof(name));
	struct fdn_shm_header h0;
	char path[256];
	shm_file(path, sizeof(path), name);
	int fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, &h0, sizeof(h0), 0), (ssize_t)sizeof(h0));
	close(fd);
	struct {
		size_t off, len;
		uint64_t value;
		int expect;
	} cases[] = {
	    {offsetof(struct fdn_shm_header, magic), 8, 0x1122334455667788ull, FDN_EMAGIC},
	    {offsetof(struct fdn_shm_header, abi_major), 2, FDN_ABI_MAJOR + 1, FDN_EVERSION},
	    {offsetof(struct fdn_shm_header, layout_sig), 8, 12345, FDN_ELAYOUT},
	    {offsetof(struct fdn_shm_header, init_state), 4, FDN_INIT_BUSY, FDN_EINIT},
	    {offsetof(struct fdn_shm_header, init_state), 4, 77, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, total_size), 8, 4096 * 3, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, nprocs), 4, 0, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, npages), 4, 1000000, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, regions) + 16, 8, 8192, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, tables) + 24, 8, 3, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, ntables), 4, 17, FDN_EBADSEG},
	    {offsetof(struct fdn_shm_header, granule), 4, 32, FDN_EBADSEG},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		poke(name, (off_t)cases[i].off, &cases[i].value, cases[i].len);
		int r = attach_err(name);
		cr_expect_eq(r, cases[i].expect, "case %zu: got %s, want %s", i, fdn_errname(r),
			     fdn_errname(cases[i].expect));
		poke(name, 0, &h0, sizeof(h0)); /* restore */
	}
	/* Magic zero while not ready: the creator has not started. */
	struct fdn_shm_header z = h0;
	z.magic = 0;
	atomic_store(&z.init_state, FDN_INIT_EMPTY);
	poke(name, 0, &z, sizeof(z));
	cr_assert_eq(attach_err(name), FDN_EINIT);
	poke(name, 0, &h0, sizeof(h0));
	/* Restored: attaches again and nothing stored was lost. */
	fdn_segment *s;
	cr_assert_eq(fdn_segment_attach(name, 0, &s), 0);
	uint64_t v = 0;
	cr_assert_eq(t_get(s, "kept", &v), 0);
	cr_assert_eq(v, 42);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(segment, truncated_and_empty_files)
{
	char name[128], path[256];
	make_detached(name, sizeof(name));
	shm_file(path, sizeof(path), name);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(truncate(path, st.st_size - 4096), 0);
	cr_assert_eq(attach_err(name), FDN_ETRUNC);
	cr_assert_eq(truncate(path, 100), 0);
	cr_assert_eq(attach_err(name), FDN_ETRUNC);
	cr_assert_eq(truncate(path, 0), 0);
	cr_assert_eq(attach_err(name), FDN_EINIT);
	cr_assert_eq(truncate(path, st.st_size), 0); /* zero-filled again */
	cr_assert_eq(attach_err(name), FDN_EINIT);
	fdn_segment_destroy(name);
	/* Longer than the header says: not a segment this build made. */
	make_detached(name, sizeof(name));
	shm_file(path, sizeof(path), name);
	cr_assert_eq(truncate(path, st.st_size + 4096), 0);
	cr_assert_eq(attach_err(name), FDN_EBADSEG);
	fdn_segment_destroy(name);
}

Test(segment, readonly_attach_writes_nothing)
{
	char name[128];
	make_detached(name, sizeof(name));
	fdn_segment *s;
	cr_assert_eq(fdn_segment_attach(name, FDN_SEG_READONLY, &s), 0);
	struct fdn_segment_stats st;
	cr_assert_eq(fdn_segment_stats(s, &st), 0);
	cr_assert_eq(st.procs_used, 0, "a read-only handle takes no process slot");
	cr_assert_eq(st.tables[0].entries, 1);
	cr_assert_eq(t_put(s, "new", 1, FDN_HT_UNIQUE), FDN_ERDONLY);
	cr_assert_eq(t_del(s, "kept"), FDN_ERDONLY);
	cr_assert_eq(fdn__seg_check(s, NULL, NULL), 0);
	/* Lookups without a read lock are what a read-only handle does. */
	struct fdn__ht_view v;
	cr_assert_eq(fdn__ht_lookup(s, 0, "kept", 4, &v), 0);
	cr_assert_eq(v.val_len, 8);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

Test(segment, inherited_handle_refused_in_fork_child)
{
	char name[128];
	t_name(name, sizeof(name), "seg");
	fdn_segment *s = t_create(name, 100, 0);
	/* Used before the fork: the child inherits a warm thread cache. */
	cr_assert_eq(t_put(s, "before", 1, FDN_HT_UNIQUE), 0);
	pid_t p = fork();
	if (p == 0) {
		int bad = t_put(s, "x", 1, FDN_HT_UNIQUE) == FDN_EFORKED &&
			  t_get(s, "before", NULL) == FDN_EFORKED;
		fdn_segment *c;
		int ok =
		    fdn_segment_attach(name, 0, &c) == 0 && t_put(c, "y", 2, FDN_HT_UNIQUE) == 0;
		fdn_segment_detach(c);
		_exit(bad && ok ? 0 : 1);
	}
	cr_assert(t_wait_ok(p));
	cr_assert_eq(t_get(s, "x", NULL), FDN_ENOTFOUND);
	cr_assert_eq(t_get(s, "y", NULL), 0);
	t_assert_clean(s);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}

static void *sleeper(void *arg)
{
	_Atomic int *stop = arg;
	while (!atomic_load(stop))
		usleep(1000);
	return NULL;
}

/* A dead owner's pid may come back as the id of a thread of another
 * process.  A thread is not a process: never alive as that owner. */
Test(segment, a_thread_id_is_not_a_live_owner)
{
	_Atomic int stop = 0;
	_Atomic pid_t tid = 0;
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, sleeper, (void *)&stop), 0);
	/* The thread's id, from /proc/self/task (it is not our pid). */
	for (int i = 0; i < 1000 && tid == 0; i++) {
		DIR *d = opendir("/proc/self/task");
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (atoi(e->d_name) > 0 && atoi(e->d_name) != getpid())
				tid = atoi(e->d_name);
		if (d)
			closedir(d);
	}
	cr_assert_gt(tid, 0);
	uint64_t ident;
	uint32_t kind;
	int r = fdn__identity(tid, &ident, &kind);
	bool alive = fdn__pid_alive(tid, 12345);
	atomic_store(&stop, 1);
	pthread_join(th, NULL);
	cr_assert_eq(r, -ESRCH, "identity of a thread id: %d", r);
	cr_assert_not(alive, "a thread id taken for a live owner");
}
