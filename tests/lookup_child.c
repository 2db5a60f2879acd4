/*
 * lookup_child - a writer in its own program image for test_lookup (the
 * test forks and execs it, so it attaches like any other process).
 *   lookup_child update SEGMENT KEY N
 *       registers KEY for itself with version 0, then updates its
 *       attributes N times: version i, a check string derived from i and a
 *       padding whose length varies with i (every version has other
 *       attribute lengths than the one before); then waits to be killed,
 *       holding the entry; exits 10 + step on a failure.
 *   lookup_child churn SEGMENT PREFIX M
 *       registers PREFIX-<pid>-<j> for itself, j = 0..M-1, with an
 *       attribute owner = <pid>, unregisters them, and again, until killed;
 *       10 + step on a failure.
 * The version encoding is shared with test_lookup.c (lookup_child.h).
 */
#include "tests/lookup_child.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int update(fdn_segment *s, const char *key, long n)
{
	struct lc_version v;
	lc_version_make(&v, 0);
	if (fdn_register(s, key, strlen(key), getpid(), v.attrs, LC_NATTRS, FDN_REG_REPLACE, NULL))
		return 10;
	for (long i = 1; i <= n; i++) {
		lc_version_make(&v, (uint64_t)i);
		int r = fdn_update_attributes(s, key, strlen(key), v.attrs, LC_NATTRS);
		if (r) {
			fprintf(stderr, "lookup_child: update %ld: %s\n", i, fdn_strerror(r));
			return 11;
		}
	}
	for (;;)
		pause();
}

static int churn(fdn_segment *s, const char *prefix, long m)
{
	char key[128], owner[32];
	snprintf(owner, sizeof(owner), "%d", (int)getpid());
	struct fdn_attr a = {.name = "owner", .type = FDN_ATTR_STRING, .v.s = owner};
	for (;;) {
		for (long j = 0; j < m; j++) {
			snprintf(key, sizeof(key), "%s-%d-%ld", prefix, (int)getpid(), j);
			if (fdn_register(s, key, strlen(key), getpid(), &a, 1, 0, NULL))
				return 12;
		}
		for (long j = 0; j < m; j++) {
			snprintf(key, sizeof(key), "%s-%d-%ld", prefix, (int)getpid(), j);
			if (fdn_unregister(s, key, strlen(key)))
				return 13;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 1;
	fdn_segment *s = NULL;
	if (fdn_segment_attach(argv[2], 0, &s) != 0)
		return 2;
	long n = strtol(argv[4], NULL, 10);
	int r = strcmp(argv[1], "update") == 0  ? update(s, argv[3], n)
		: strcmp(argv[1], "churn") == 0 ? churn(s, argv[3], n)
						: 1;
	fdn_segment_detach(s);
	return r;
}
