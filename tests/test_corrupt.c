/*
 * test_corrupt.c - random bytes of a segment copy flipped: attach, the
 * checker, lookups, iteration and stats return errors or results, never
 * crash and never hang (the test's timeout is the hang detector).
 */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

static unsigned char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0);
	struct stat st;
	fstat(fd, &st);
	unsigned char *b = malloc((size_t)st.st_size);
	cr_assert_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void write_file(const char *path, const unsigned char *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
}

static int ignore_cb(void *arg, const struct fdn__ht_view *v)
{
	(*(int *)arg)++;
	return 0;
}

/* Everything a reader of a damaged segment may do. */
static void exercise(const char *name, int *attached, int *violations)
{
	fdn_segment *s = NULL;
	int r = fdn_segment_attach(name, FDN_SEG_READONLY, &s);
	if (r) {
		cr_assert_lt(r, 0);
		cr_assert_null(s);
		return;
	}
	(*attached)++;
	int v = fdn_segment_check(s, NULL, NULL);
	cr_assert_geq(v, 0);
	*violations += v > 0;
	for (int i = 0; i < 2000; i += 7) {
		char k[32];
		struct fdn__ht_view view;
		snprintf(k, sizeof(k), "agent-%08d", i);
		r = fdn__ht_lookup(s, 0, k, strlen(k), &view);
		cr_assert(r == 0 || r < 0);
	}
	int n = 0;
	fdn__ht_foreach(s, 0, ignore_cb, &n);
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	fdn_segment_detach(s);
	/* A writable attach only claims a process slot; it must not hang. */
	if (fdn_segment_attach(name, 0, &s) == 0)
		fdn_segment_detach(s);
}

Test(corrupt, random_flips_never_crash_or_hang, .timeout = 300)
{
	char name[128], copy[160], path[256], cpath[300];
	t_name(name, sizeof(name), "corrupt");
	fdn_segment *s = t_create(name, 2000, 0);
	for (int i = 0; i < 2000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_put(s, k, (uint64_t)i, FDN_HT_UNIQUE), 0);
	}
	for (int i = 0; i < 2000; i += 5) {
		char k[32];
		snprintf(k, sizeof(k), "agent-%08d", i);
		cr_assert_eq(t_del(s, k), 0);
	}
	/* Keep the segment attached: its limbo and slots are part of the copy. */
	snprintf(path, sizeof(path), "/dev/shm/%s", name);
	snprintf(copy, sizeof(copy), "%s-copy", name);
	snprintf(cpath, sizeof(cpath), "/dev/shm/%s", copy);
	size_t len;
	unsigned char *orig = read_file(path, &len);
	const struct fdn_shm_header *h = (const void *)orig;
	/* Flip where the data is: header, slots, buckets, page and block
	 * states, and the used part of the heap. */
	const struct {
		uint64_t off, size;
	} zones[] = {
	    {0, FDN_HEADER_SIZE},
	    {h->regions[FDN_REGION_PROCS].off, 4096},
	    {h->regions[FDN_REGION_TSLOTS].off, 8192},
	    {h->regions[FDN_REGION_BUCKETS].off, h->regions[FDN_REGION_BUCKETS].size},
	    {h->regions[FDN_REGION_PAGES].off, 256},
	    {h->regions[FDN_REGION_BSTATE].off, 8 * FDN_PAGE_GRANULES * 4},
	    {h->regions[FDN_REGION_HEAP].off, FDN_PAGE_SIZE * 4},
	};
	unsigned char *buf = malloc(len);
	srand((unsigned)time(NULL));
	int attached = 0, violations = 0, rounds = 600;
	for (int it = 0; it < rounds; it++) {
		memcpy(buf, orig, len);
		int flips = 1 + rand() % 8;
		for (int f = 0; f < flips; f++) {
			int z = rand() % (int)(sizeof(zones) / sizeof(zones[0]));
			uint64_t off = zones[z].off + (uint64_t)rand() % zones[z].size;
			if (off < len)
				buf[off] ^= (unsigned char)(1u << (rand() % 8));
		}
		write_file(cpath, buf, len);
		exercise(copy, &attached, &violations);
	}
	cr_log_info("%d rounds: %d attached, %d with violations", rounds, attached, violations);
	cr_assert_gt(violations, 0, "some flips must be caught by the checker");
	/* The original is untouched. */
	write_file(cpath, orig, len);
	exercise(copy, &attached, &violations);
	fdn_segment_destroy(copy);
	t_assert_clean(s);
	free(buf);
	free(orig);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
}
