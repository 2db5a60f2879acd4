/*
 * segment.c - create, attach (with full validation), detach, destroy; names,
 * paths and sizes (the public calls on them: lib/segment_api.c; the layout
 * of the regions and the header's checks: format.c).
 *
 * Creation protocol.  The creator makes the object with
 * O_CREAT|O_EXCL|O_NOFOLLOW (so it never adopts someone else's file), sets
 * its size (the kernel zero-fills it), writes init_state = BUSY, then every
 * header field and region, and publishes init_state = READY with a release
 * store.  An attacher loads init_state with acquire before it trusts any
 * other field (pairs with that release).  A creator killed part-way leaves a
 * segment that attach reports as "still initialising"; destroy it and create
 * again.
 */
#include "shm.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <limits.h>
#include <time.h>
#include <unistd.h>

unsigned fdn__fork_gen;
static _Atomic uint64_t fdn__next_handle_id = 1;
static pthread_once_t fdn__atfork_once = PTHREAD_ONCE_INIT;

/* Until the first handle: a word that is never a token (tokens are odd). */
static _Atomic uint64_t fdn__wipe_fallback;
_Atomic uint64_t *fdn__wipe = &fdn__wipe_fallback;
/* Tokens handed out in this process and its ancestors: a child inherits
 * the counter, so its next token differs from every token it inherited. */
static _Atomic uint64_t fdn__token_ctr;

static void fdn__procrefs_forget(void);

static void fdn__atfork_child(void)
{
	fdn__fork_gen++;
	/* Where MADV_WIPEONFORK is missing, the handlers do what the kernel
	 * would; with it, this is a no-op. */
	atomic_store(fdn__wipe, 0);
	fdn__rcu_atfork_child();
	fdn__procrefs_forget();
}

static void fdn__atfork_register(void)
{
	pthread_atfork(NULL, NULL, fdn__atfork_child);
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		/* Without the advice (a kernel before 4.14) the page is
		 * copied like any other: the atfork handler still covers
		 * fork(); raw forks are then not detected. */
		(void)madvise(p, 4096, MADV_WIPEONFORK);
		atomic_store((_Atomic uint64_t *)p, atomic_load(&fdn__wipe_fallback));
		fdn__wipe = p;
	}
}

uint64_t fdn__fork_token_take(void)
{
	uint64_t t = fdn__fork_token();
	if (t != 0)
		return t;
	/* First handle of this process, or of a child that inherited
	 * handles: a fresh odd value.  A child made without the atfork
	 * handlers also holds copies of its parent's slot caches and
	 * handle list: they are dropped here (the child had no handle of
	 * its own before this one, so nothing of its own is lost). */
	uint64_t fresh = (atomic_fetch_add(&fdn__token_ctr, 1) + 1) << 1 | 1;
	if (atomic_compare_exchange_strong(fdn__wipe, &t, fresh)) {
		if (fresh > 3) { /* not the first token: a child's */
			fdn__rcu_atfork_child();
			fdn__procrefs_forget();
		}
		return fresh;
	}
	return t; /* another thread gave it one */
}

/* ---- one process, one slot ----------------------------------------------------
 * Every writable handle of one segment in this process shares one process
 * slot: a second attach takes a reference, the last detach gives the slot
 * back.  Process-private, under fdn__refs_lock; keyed by the segment's
 * (dev, ino) and the fork token (a child's inherited entries never match). */
struct fdn__procref {
	struct fdn__procref *next;
	dev_t dev;
	ino_t ino;
	uint64_t token;
	uint32_t idx;
	uint64_t word;
	unsigned refs;
	/* Entries this process has written for itself (idx, word) and not
	 * removed, with its registrations in flight (lib/registry_int.h,
	 * "counted entries"); s->held of every handle sharing the slot. */
	_Atomic int64_t held;
};
static struct fdn__procref *fdn__refs;
static pthread_mutex_t fdn__refs_lock = PTHREAD_MUTEX_INITIALIZER;

/* In a child: the list names the parent's slots, and its lock may have
 * been held by a thread that does not exist here.  The entries leak (they
 * describe the parent). */
static void fdn__procrefs_forget(void)
{
	fdn__refs = NULL;
	pthread_mutex_init(&fdn__refs_lock, NULL);
}

/* A reference to the slot this process already has in s's segment. */
static bool fdn__procref_take(fdn_segment *s)
{
	bool found = false;
	pthread_mutex_lock(&fdn__refs_lock);
	for (struct fdn__procref *r = fdn__refs; r; r = r->next) {
		if (r->dev == s->dev && r->ino == s->ino && r->token == s->fork_token &&
		    atomic_load(&s->procs[r->idx].word) == r->word) {
			r->refs++;
			s->proc_idx = r->idx;
			s->proc_word = r->word;
			s->held = &r->held;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&fdn__refs_lock);
	return found;
}

static void fdn__procref_add(fdn_segment *s)
{
	struct fdn__procref *r = calloc(1, sizeof(*r));
	if (!r)
		return; /* a later attach claims a slot of its own: still correct
			   (and with held NULL, nothing is counted) */
	*r = (struct fdn__procref){NULL,        s->dev,       s->ino, s->fork_token,
				   s->proc_idx, s->proc_word, 1,      0};
	s->held = &r->held;
	pthread_mutex_lock(&fdn__refs_lock);
	r->next = fdn__refs;
	fdn__refs = r;
	pthread_mutex_unlock(&fdn__refs_lock);
}

/* Drop s's reference; true when it was the last (or none was kept). */
static bool fdn__procref_drop(fdn_segment *s)
{
	bool last = true;
	pthread_mutex_lock(&fdn__refs_lock);
	for (struct fdn__procref **pp = &fdn__refs; *pp; pp = &(*pp)->next) {
		struct fdn__procref *r = *pp;
		if (r->dev == s->dev && r->ino == s->ino && r->token == s->fork_token &&
		    r->idx == s->proc_idx && r->word == s->proc_word) {
			if (--r->refs == 0) {
				*pp = r->next;
				free(r);
			} else {
				last = false;
			}
			break;
		}
	}
	pthread_mutex_unlock(&fdn__refs_lock);
	return last;
}

unsigned fdn__seg_proc_refs(fdn_segment *s)
{
	unsigned n = 0;
	pthread_mutex_lock(&fdn__refs_lock);
	for (struct fdn__procref *r = fdn__refs; r; r = r->next)
		if (r->dev == s->dev && r->ino == s->ino && r->token == s->fork_token &&
		    r->idx == s->proc_idx)
			n = r->refs;
	pthread_mutex_unlock(&fdn__refs_lock);
	return n;
}

/* This process's slot for a writable handle: shared with another handle,
 * adopted (held for us, or left by our image before an exec), or new. */
static int fdn__seg_take_slot(fdn_segment *s)
{
	if (fdn__procref_take(s))
		return 0;
	bool execd = false;
	int r = fdn__proc_adopt(s, getpid(), &s->proc_idx, &execd);
	bool adopted = r == 0;
	if (r == FDN_ENOTFOUND)
		r = fdn__proc_claim(s, getpid(), &s->proc_idx, NULL);
	if (r)
		return r;
	s->proc_word = atomic_load(&s->procs[s->proc_idx].word);
	/* An adopted slot may own entries this process never counted: those
	 * its image wrote before an exec, or another wrote for it. */
	if (adopted)
		fdn__proc_mark_uncounted(s, s->proc_idx, s->proc_word);
	if (execd) {
		/* The reader slots of our image before the exec: no thread of
		 * it runs any more.  Our entries stay ours. */
		(void)fdn__threads_reclaim(s, s->proc_idx, 1000 * 1000000ll);
	}
	fdn__procref_add(s);
	return 0;
}

int fdn__validate_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > FDN_SEGMENT_NAME_MAX)
		return FDN_EINVAL;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return FDN_EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return FDN_EINVAL;
	}
	return 0;
}

const char *fdn__seg_default_name(void)
{
	const char *e = getenv("FOUNDATION_SEGMENT");
	return (e && *e) ? e : FDN_SEGMENT_DEFAULT_NAME;
}

void fdn__seg_opts_defaults(struct fdn_segment_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->entries = 100000;
	o->processes = 4096;
	o->threads = 4096;
	o->heap_bytes = 0;
	o->mode = 0600;
	o->spans = 256;
	o->events = 4096;
	o->changes = FDN_CHANGES_DEFAULT;
}

/* Is gid this process's effective or a supplementary group? */
static bool fdn__in_group(gid_t gid)
{
	if (gid == getegid())
		return true;
	gid_t g[256];
	int n = getgroups(256, g);
	for (int i = 0; i < n; i++)
		if (g[i] == gid)
			return true;
	return false;
}

/* This process's PID namespace; 0s when /proc cannot tell. */
static void fdn__pidns(uint64_t *ino, uint64_t *dev)
{
	struct stat st;
	if (stat("/proc/self/ns/pid", &st) == 0) {
		*ino = (uint64_t)st.st_ino;
		*dev = (uint64_t)st.st_dev;
	} else {
		*ino = *dev = 0;
	}
}

static uint64_t fdn__pow2_at_least(uint64_t x)
{
	uint64_t p = 2;
	while (p < x && p < FDN_MAX_BUCKETS)
		p <<= 1;
	return p;
}

/* ---- mapping ------------------------------------------------------------ */

/* Ask for transparent huge pages on the mapping: a lookup in a large table
 * touches a random bucket and a random node, and with 4 KiB pages both are
 * TLB misses.  Takes effect where the administrator allows THP for shared
 * memory (/sys/kernel/mm/transparent_hugepage/shmem_enabled = advise or
 * always); elsewhere the kernel ignores it. */
static void fdn__seg_advise(fdn_segment *s)
{
	(void)madvise(s->base, s->size, MADV_HUGEPAGE);
}

/* Derive the handle's views from validated header fields h (a private
 * copy at attach). */
static void fdn__seg_bind(fdn_segment *s, const struct fdn_shm_header *h)
{
	fdn__seg_advise(s);
	s->hdr = (struct fdn_shm_header *)s->base;
	s->procs = (struct fdn_shm_proc *)(s->base + h->regions[FDN_REGION_PROCS].off);
	s->tslots = (struct fdn_shm_tslot *)(s->base + h->regions[FDN_REGION_TSLOTS].off);
	s->pages = (struct fdn_shm_page *)(s->base + h->regions[FDN_REGION_PAGES].off);
	s->bstate = (_Atomic uint64_t *)(s->base + h->regions[FDN_REGION_BSTATE].off);
	s->heap = s->base + h->regions[FDN_REGION_HEAP].off;
	s->graveyard = (struct fdn_shm_death *)(s->base + h->regions[FDN_REGION_GRAVEYARD].off);
	s->trace = (struct fdn_shm_trace *)(s->base + h->svc[FDN_SVC_TRACE].off);
	s->ghosts = (struct fdn_shm_trace *)(s->base + h->svc[FDN_SVC_GHOSTS].off);
	s->ntrace = h->ntrace;
	s->nevents = h->nevents;
	s->chg_hdr = (struct fdn_shm_chg_hdr *)(void *)s->hdr->chg_hdr;
	s->nchanges = ((const struct fdn_shm_chg_hdr *)(const void *)h->chg_hdr)->nslots;
	s->changes =
	    s->nchanges ? (struct fdn_shm_change *)(s->base + h->svc[FDN_SVC_CHANGES].off) : NULL;
	s->nprocs = h->nprocs;
	s->nthreads = h->nthreads;
	s->npages = h->npages;
	s->ntables = h->ntables;
	s->ngranules = (uint64_t)h->npages * FDN_PAGE_GRANULES;
	/* One slot's chunks name at most a sixteenth of the heap's granules;
	 * a small heap does not spill (limbo.c, "Spill"). */
	uint64_t sm = h->npages < FDN_SPILL_MIN_PAGES ? 0 : s->ngranules / (16 * FDN_LIMBO_MAX);
	s->spill_max = sm > FDN_SPILL_MAX ? FDN_SPILL_MAX : (uint32_t)sm;
	s->seed = h->hash_seed;
	for (uint32_t i = 0; i < h->ntables; i++) {
		s->buckets[i] = (_Atomic uint64_t *)(s->base + h->tables[i].buckets_off);
		s->bucket_mask[i] = h->tables[i].nbuckets - 1;
		s->table_flags[i] = h->tables[i].flags;
	}
}

static fdn_segment *fdn__seg_new(const char *name)
{
	pthread_once(&fdn__atfork_once, fdn__atfork_register);
	fdn_segment *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->fd = -1;
	s->id = atomic_fetch_add(&fdn__next_handle_id, 1);
	s->fork_token = fdn__fork_token_take();
	s->proc_idx = UINT32_MAX;
	return s;
}

static void fdn__seg_free(fdn_segment *s)
{
	if (s->base)
		munmap(s->base, s->size);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

/* ---- where segments live ------------------------------------------------
 *
 * A segment is the file <dir>/<name>: dir is $FOUNDATION_SHM_DIR when set,
 * else /dev/shm (where shm_open(3) puts "/<name>").  The directory is an
 * environment variable, not a create option: every process that attaches by
 * name (the reaper, the tools, a systemd unit) must find the same file, and
 * the environment is what they share.  Another tmpfs (say one mounted with
 * huge=within_size) or a hugetlbfs mount gives the segment huge pages. */

const char *fdn__seg_dir(void)
{
	const char *d = getenv("FOUNDATION_SHM_DIR");
	return (d && *d) ? d : "/dev/shm";
}

int fdn__seg_path(const char *name, char *buf, size_t cap)
{
	if (!name)
		name = fdn__seg_default_name();
	int r = fdn__validate_name(name);
	if (r)
		return r;
	const char *dir = fdn__seg_dir();
	/* A relative directory would name another file for every working
	 * directory. */
	if (dir[0] != '/')
		return FDN_EINVAL;
	size_t dl = strlen(dir);
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	int n = snprintf(buf, cap, "%.*s/%s", (int)dl, dir, name);
	if (n < 0 || (size_t)n >= cap)
		return FDN_ETOOBIG;
	return 0;
}

#define FDN__HUGETLBFS_MAGIC 0x958458f6

/* The page size a file of fd's filesystem must be sized in: hugetlbfs
 * files hold whole huge pages; 0 for any other filesystem. */
static uint64_t fdn__fs_page(int fd)
{
	struct statfs sf;
	if (fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == FDN__HUGETLBFS_MAGIC)
		return (uint64_t)sf.f_bsize;
	return 0;
}

/* Give file fd its `bytes` of memory now, so that no later page fault can
 * fail (a fault on a tmpfs hole allocates; when the filesystem is full it
 * raises SIGBUS in whichever process touches the page first). */
static int fdn__reserve(int fd, uint64_t bytes)
{
	int e = posix_fallocate(fd, 0, (off_t)bytes);
	if (e == 0)
		return 0;
	return e == ENOSPC ? FDN_ENOSPACE : -e;
}

/* Parse "a,b,c" into the header's indexed-attribute names. */
static int fdn__set_indexed(struct fdn_shm_header *h, const char *list)
{
	uint32_t n = 0;
	const char *p = list;
	while (*p) {
		size_t len = strcspn(p, ",");
		/* A name never starts with a control byte: the index's stored
		 * prefixes that start with 0, 1 or 2 are its own (layout.h). */
		if (len == 0 || len >= FDN_INDEXED_NAME_MAX || n >= FDN_MAX_INDEXED ||
		    (unsigned char)p[0] < 0x20)
			return FDN_EINVAL;
		memcpy(h->indexed[n++], p, len);
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* Options *opts (NULL = defaults) checked and completed into *o, and the
 * layout they give. */
static int fdn__create_plan(const struct fdn_segment_opts *opts, struct fdn_segment_opts *o,
			    struct fdn__caps *c, struct fdn_shm_region *regions,
			    struct fdn_shm_region *svc, uint64_t *total)
{
	if (opts)
		*o = *opts;
	else
		fdn__seg_opts_defaults(o);
	if (o->mode == 0)
		o->mode = 0600;
	if (o->entries < 1 || o->entries > (1ull << 31) || o->processes < 1 ||
	    o->processes > FDN_MAX_PROCS || o->threads < 1 || o->threads > FDN_MAX_THREADS ||
	    (o->mode & ~0777u) != 0 || (o->mode & 0600) != 0600 ||
	    (o->flags &
	     ~(uint32_t)(FDN_SEG_ALLOW_FOREIGN | FDN_SEG_SPARSE | FDN_SEG_REQUIRE_REAPER)) != 0)
		return FDN_EINVAL;
	/* World-writable: any local user could corrupt it, and no attacher
	 * accepts it (FDN_EMODE): refused at once rather than made useless. */
	if (o->mode & S_IWOTH)
		return FDN_EMODE;
	uint64_t heap = o->heap_bytes ? o->heap_bytes : o->entries * 256u;
	if (heap < (1u << 20))
		heap = 1u << 20;
	uint64_t npages = (heap + FDN_PAGE_SIZE - 1) / FDN_PAGE_SIZE;
	if (npages > FDN_MAX_PAGES)
		return FDN_EINVAL;
	/* Table 0 "main" (the registry) and table 1 "index" (its secondary
	 * index, prefix-hashed), each with 2 x entries buckets. */
	*c = (struct fdn__caps){
	    .nprocs = o->processes,
	    .nthreads = o->threads,
	    .npages = (uint32_t)npages,
	    .ntables = 2,
	    .nbuckets = {fdn__pow2_at_least(o->entries * 2), fdn__pow2_at_least(o->entries * 2)},
	    .ntrace = o->spans,
	    .nevents = o->events,
	    .nchanges = o->changes == FDN_CHANGES_OFF ? 0
			: o->changes == 0             ? FDN_CHANGES_DEFAULT
						      : o->changes};
	return fdn__layout_compute(c, regions, svc, total);
}

int fdn__seg_size(const struct fdn_segment_opts *opts, uint64_t *bytes)
{
	struct fdn_segment_opts o;
	struct fdn__caps c;
	struct fdn_shm_region regions[FDN_NREGIONS], svc[FDN_NSVC_REGIONS];
	if (!bytes)
		return FDN_EINVAL;
	*bytes = 0;
	return fdn__create_plan(opts, &o, &c, regions, svc, bytes);
}

/* *name (the default name if NULL) and its path. */
static int name_path(const char **name, char path[PATH_MAX])
{
	if (!*name)
		*name = fdn__seg_default_name();
	return fdn__seg_path(*name, path, PATH_MAX);
}

int fdn__seg_create(const char *name, const struct fdn_segment_opts *opts, fdn__svc_init_fn init,
		    fdn_segment **out)
{
	struct fdn_segment_opts o;
	char path[PATH_MAX];
	if (!out)
		return FDN_EINVAL;
	*out = NULL;
	int r = name_path(&name, path);
	if (r)
		return r;
	struct fdn__caps c;
	struct fdn_shm_region regions[FDN_NREGIONS], svc[FDN_NSVC_REGIONS];
	uint64_t total;
	r = fdn__create_plan(opts, &o, &c, regions, svc, &total);
	if (r)
		return r;
	uint64_t npages = c.npages;
	const uint64_t *nb = c.nbuckets;

	fdn_segment *s = fdn__seg_new(name);
	if (!s)
		return -ENOMEM;
	s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, o.mode);
	if (s->fd < 0) {
		r = errno == EEXIST ? FDN_EEXISTS : errno == ENOENT ? FDN_ENOSEG : -errno;
		fdn__seg_free(s);
		return r;
	}
	/* The file's size: the layout's, in whole pages of its filesystem. */
	uint64_t fpage = fdn__fs_page(s->fd), fsize = total;
	if (fpage)
		fsize = (total + fpage - 1) / fpage * fpage;
	/* The umask may have narrowed the mode: set it exactly. */
	struct stat st;
	if (fchmod(s->fd, o.mode) < 0 || ftruncate(s->fd, (off_t)fsize) < 0 ||
	    fstat(s->fd, &st) < 0) {
		r = errno == ENOSPC || errno == ENOMEM ? FDN_ENOSPACE : -errno;
		goto fail;
	}
	/* Reserved before anything is written: when the memory is not there
	 * the create fails here, with FDN_ENOSPACE, instead of a process
	 * dying of SIGBUS later.  FDN_SEG_SPARSE skips it (docs/deployment.md). */
	if (!(o.flags & FDN_SEG_SPARSE) && (r = fdn__reserve(s->fd, fsize)) != 0)
		goto fail;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->size = fsize;
	s->base = mmap(NULL, fsize, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		r = -errno;
		goto fail;
	}
	struct fdn_shm_header *h = (struct fdn_shm_header *)s->base;
	atomic_store_explicit(&h->init_state, FDN_INIT_BUSY, memory_order_relaxed);
	h->magic = FDN_MAGIC;
	h->abi_major = FDN_ABI_MAJOR;
	h->abi_minor = FDN_ABI_MINOR;
	h->header_size = FDN_HEADER_SIZE;
	h->layout_sig = fdn__layout_signature();
	h->total_size = total;
	h->mode = o.mode;
	if (getrandom(&h->hash_seed, sizeof(h->hash_seed), 0) != sizeof(h->hash_seed))
		h->hash_seed = fdn__real_ns() ^ ((uint64_t)getpid() << 32);
	h->created_ns = fdn__real_ns();
	h->creator_pid = (uint32_t)getpid();
	h->creator_uid = (uint32_t)geteuid();
	fdn__pidns(&h->pidns_ino, &h->pidns_dev);
	uint32_t kind;
	if (fdn__identity(getpid(), &h->creator_ident, &kind))
		h->creator_ident = 0;
	h->cap_entries = o.entries;
	h->nprocs = o.processes;
	h->nthreads = o.threads;
	h->npages = (uint32_t)npages;
	h->ntables = 2;
	h->page_size = FDN_PAGE_SIZE;
	h->granule = FDN_GRANULE;
	h->nclasses = FDN_NCLASSES;
	h->limbo_max = FDN_LIMBO_MAX;
	memcpy(h->regions, regions, sizeof(regions));
	h->ntrace = o.spans;
	h->nevents = o.events;
	((struct fdn_shm_chg_hdr *)(void *)h->chg_hdr)->nslots = c.nchanges;
	memcpy(h->svc, svc, sizeof(svc));
	atomic_store_explicit(&h->gp_ctr, 1, memory_order_relaxed);
	atomic_store_explicit(&h->fresh_page_hint, 0, memory_order_relaxed);
	static const char *const table_names[2] = {"main", "index"};
	uint64_t boff = regions[FDN_REGION_BUCKETS].off;
	for (uint32_t t = 0; t < 2; t++) {
		snprintf(h->tables[t].name, FDN_TABLE_NAME_MAX, "%s", table_names[t]);
		h->tables[t].nbuckets = nb[t];
		h->tables[t].buckets_off = boff;
		h->tables[t].id = t;
		h->tables[t].flags = t == 1 ? FDN_TABLE_PREFIX_HASH : 0;
		boff += nb[t] * sizeof(uint64_t);
	}
	r = fdn__set_indexed(h, o.indexed ? o.indexed : FDN_DEFAULT_INDEXED);
	if (r)
		goto fail;
	fdn__seg_bind(s, h);
	/* gidx 0 is the null link: its block is reserved forever.  Page 0 is
	 * given class 0 (64-byte blocks) so the checker can account for it. */
	atomic_store_explicit(&s->pages[0].cls, 1, memory_order_relaxed);
	atomic_store_explicit(&s->pages[0].free_hint, FDN_PAGE_GRANULES - 1, memory_order_relaxed);
	atomic_store_explicit(&s->bstate[0], FDN_BLOCK_WORD(0, 0, FDN_BLOCK_RESERVED),
			      memory_order_relaxed);
	if (init && (r = init(s, &o)) != 0)
		goto fail;
	/* Publish: everything above happens-before any attacher's acquire. */
	atomic_store_explicit(&h->init_state, FDN_INIT_READY, memory_order_release);

	r = fdn__seg_take_slot(s);
	if (r)
		goto fail;
	fdn__rcu_register();
	*out = s;
	return 0;
fail:
	unlink(path);
	fdn__seg_free(s);
	return r;
}

int fdn__seg_attach(const char *name, unsigned flags, fdn_segment **out)
{
	char path[PATH_MAX];
	if (!out)
		return FDN_EINVAL;
	*out = NULL;
	int r = name_path(&name, path);
	if (r)
		return r;
	if (flags & ~(unsigned)(FDN_SEG_READONLY | FDN_SEG_ALLOW_FOREIGN))
		return FDN_EINVAL;
	bool ro = (flags & FDN_SEG_READONLY) != 0;
	fdn_segment *s = fdn__seg_new(name);
	if (!s)
		return -ENOMEM;
	s->readonly = ro;
	s->fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC, 0);
	if (s->fd < 0) {
		r = errno == ENOENT ? FDN_ENOSEG : -errno;
		goto fail;
	}
	struct stat st;
	if (fstat(s->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	/* FOUNDATION_ALLOW_FOREIGN=1 says the same for a whole process (and
	 * the reaper it starts, which inherits the environment): a segment
	 * shared by a group (docs/deployment.md). */
	const char *foreign = getenv("FOUNDATION_ALLOW_FOREIGN");
	if (foreign && strcmp(foreign, "1") == 0)
		flags |= FDN_SEG_ALLOW_FOREIGN;
	/* Ours, writable by nobody else; or, when foreign segments are
	 * allowed, of one of our groups and writable by no one outside it
	 * (never "any owner, any mode": a world-writable segment is anyone's
	 * to corrupt). */
	if (st.st_mode & S_IWOTH) {
		r = FDN_EMODE;
		goto fail;
	}
	if (!(flags & FDN_SEG_ALLOW_FOREIGN)) {
		if (st.st_uid != geteuid()) {
			r = FDN_EOWNER;
			goto fail;
		}
		if (st.st_mode & S_IWGRP) {
			r = FDN_EMODE;
			goto fail;
		}
	} else if (st.st_uid != geteuid() && !fdn__in_group(st.st_gid)) {
		r = FDN_EOWNER;
		goto fail;
	}
	if ((uint64_t)st.st_size < FDN_HEADER_SIZE) {
		r = st.st_size == 0 ? FDN_EINIT : FDN_ETRUNC;
		goto fail;
	}
	s->size = (uint64_t)st.st_size;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->base = mmap(NULL, s->size, PROT_READ | (ro ? 0 : PROT_WRITE), MAP_SHARED, s->fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		r = -errno;
		goto fail;
	}
	/* Validate a private copy and size everything from it: the shared
	 * header could be changed (by a foreign writer, or damage) between
	 * the check and the use. */
	struct fdn_shm_header *hc = malloc(sizeof(*hc));
	if (!hc) {
		r = -ENOMEM;
		goto fail;
	}
	memcpy(hc, s->base, sizeof(*hc));
	r = fdn__validate_header(hc, s->size);
	if (r == 0)
		fdn__seg_bind(s, hc);
	free(hc);
	if (r)
		goto fail;
	if (!ro && s->hdr->pidns_ino != 0) {
		/* Pids in the segment are the creator's namespace's: another
		 * namespace's pid names another process (or none). */
		uint64_t ino, dev;
		fdn__pidns(&ino, &dev);
		if (ino != s->hdr->pidns_ino || dev != s->hdr->pidns_dev) {
			r = FDN_ENAMESPACE;
			goto fail;
		}
	}
	if (!ro) {
		r = fdn__seg_take_slot(s);
		if (r)
			goto fail;
		fdn__rcu_register();
	}
	*out = s;
	return 0;
fail:
	fdn__seg_free(s);
	return r;
}

void fdn__seg_detach(fdn_segment *s, bool leave_dead)
{
	/* Every slot record of this handle goes, usable or not: a thread
	 * that exits later must not find the handle it is about to free
	 * (fdn__slot_give_back gives nothing back to a stale segment). */
	if (!s->readonly)
		fdn__threads_release(s);
	if (!s->readonly && fdn__seg_usable(s) == 0) {
		if (s->proc_idx != UINT32_MAX && fdn__procref_drop(s)) {
			/* Only change the slot if it is still ours.  DEAD hands it
			 * to the reaper (it then removes what we owned). */
			uint64_t w = s->proc_word;
			uint64_t to = leave_dead ? FDN_PROC_WORD(FDN_PROC_LEFT, FDN_PROC_PID(w),
								 FDN_PROC_IDENT40(w))
						 : 0;
			/* A free slot's claimer is 0 until its next claimant
			 * names itself (fdn__proc_release relies on it). */
			if (!leave_dead && atomic_load(&s->procs[s->proc_idx].word) == w)
				atomic_store(&s->procs[s->proc_idx].claimer_pid, 0);
			if (atomic_compare_exchange_strong(&s->procs[s->proc_idx].word, &w, to) &&
			    leave_dead) {
				fdn__notify(s);
				fdn__doorbell(s);
			}
		}
	}
	fdn__seg_free(s);
}

int fdn__seg_destroy(const char *name, uint64_t *lease)
{
	char path[PATH_MAX];
	if (lease)
		*lease = 0;
	int r = name_path(&name, path);
	if (r)
		return r;
	bool rw = true;
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0 && errno == EACCES) {
		rw = false;
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	}
	if (fd < 0 && errno != EACCES)
		return errno == ENOENT ? FDN_ENOSEG : -errno;
	if (fd >= 0) {
		/* Only a Foundation segment, or a file a creator left empty or
		 * zero (killed before it wrote the magic), is ours to remove. */
		struct stat st;
		uint64_t magic = 0;
		if (fstat(fd, &st) < 0) {
			r = -errno;
			close(fd);
			return r;
		}
		if (st.st_size >= (off_t)sizeof(magic) &&
		    pread(fd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic))
			magic = 1; /* unreadable: not known to be ours */
		if (magic != 0 && magic != FDN_MAGIC) {
			close(fd);
			return FDN_EMAGIC;
		}
		if (magic == FDN_MAGIC && rw && st.st_size >= (off_t)FDN_HEADER_SIZE) {
			struct fdn_shm_header *h =
			    mmap(NULL, FDN_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			if (h != MAP_FAILED) {
				/* Before the unlink: a handle that sees the name
				 * gone has seen the flag too. */
				atomic_store_explicit(&h->destroyed, 1, memory_order_seq_cst);
				if (lease)
					*lease = atomic_load(&h->reaper_lease);
				fdn__wake_all(h);
				munmap(h, FDN_HEADER_SIZE);
			}
		}
		close(fd);
	}
	if (unlink(path) < 0)
		return errno == ENOENT ? FDN_ENOSEG : -errno;
	return 0;
}

/* ---- the tools' SIGBUS guard -------------------------------------------------
 *
 * A process that shrinks the file (ftruncate) makes every later touch of
 * the lost pages raise SIGBUS in every process that maps it; so does a
 * sparse segment's first touch of a page when its filesystem is full.  A
 * tool (the reaper, the inspector) cannot recover the walk it was in, but
 * it can say why it stops: the handler looks at the file again (fstat is
 * async-signal-safe), writes one line and exits 1, as the reaper's death
 * from any other cause would leave the segment (SIGKILL-safe at every
 * instruction).  A fault outside the segment is not ours to explain: the
 * default action then runs (a core dump, as without the guard).  The
 * library never installs it for applications (their signals are theirs). */

static struct {
	int fd;
	const char *prog;
	uintptr_t lo, hi;
	uint64_t size;
} fdn__guard = {.fd = -1};

static size_t fdn__utoa(char *out, uint64_t v)
{
	char tmp[24];
	size_t n = 0, k = 0;
	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (n)
		out[k++] = tmp[--n];
	return k;
}

static size_t fdn__cat(char *buf, size_t at, const char *text)
{
	while (*text && at < 255)
		buf[at++] = *text++;
	return at;
}

static void fdn__on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	uintptr_t a = (uintptr_t)si->si_addr;
	if (fdn__guard.fd < 0 || a < fdn__guard.lo || a >= fdn__guard.hi) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	char buf[256];
	size_t n = fdn__cat(buf, 0, fdn__guard.prog);
	struct stat st;
	if (fstat(fdn__guard.fd, &st) == 0 && (uint64_t)st.st_size < fdn__guard.size) {
		n = fdn__cat(buf, n, ": segment truncated: ");
		n += fdn__utoa(buf + n, (uint64_t)st.st_size);
		n = fdn__cat(buf, n, " bytes, header says ");
		n += fdn__utoa(buf + n, fdn__guard.size);
	} else {
		n = fdn__cat(buf, n,
			     ": memory fault (SIGBUS) in the segment: its filesystem "
			     "has no memory for a page (a sparse segment on a full "
			     "filesystem?)");
	}
	n = fdn__cat(buf, n, "\n");
	(void)!write(2, buf, n);
	_exit(1);
}

bool fdn__seg_say_truncated(fdn_segment *s, const char *prog)
{
	struct stat st;
	if (fstat(s->fd, &st) != 0 || (uint64_t)st.st_size >= s->size)
		return false;
	/* The same line as the SIGBUS guard's (fdn__on_sigbus). */
	fprintf(stderr, "%s: segment truncated: %lld bytes, header says %llu\n", prog,
		(long long)st.st_size, (unsigned long long)s->size);
	return true;
}

void fdn__seg_guard_sigbus(fdn_segment *s, const char *prog)
{
	fdn__guard.fd = s->fd;
	fdn__guard.prog = prog;
	fdn__guard.lo = (uintptr_t)s->base;
	fdn__guard.hi = (uintptr_t)s->base + s->size;
	fdn__guard.size = s->size;
	struct sigaction sa = {.sa_sigaction = fdn__on_sigbus, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
}
