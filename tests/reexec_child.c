/*
 * reexec_child - the new image of a process that exec'd while attached
 * (test_liveness): it attaches again and reports, by its exit status, what
 * it finds.  argv: SEGMENT KEY.
 *   0  same process slot, its old image's reader slots reclaimed, KEY kept
 *   1  usage   10 attach failed   11 old reader slots left   12 KEY gone
 */
#include "lib/internal.h"

#include <foundation/registry.h>

#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	fdn_segment *s = NULL;
	if (fdn_segment_attach(argv[1], 0, &s) != 0)
		return 10;
	for (uint32_t i = 0; i < s->nthreads; i++) {
		uint64_t st = atomic_load(&s->tslots[i].state);
		if (FDN_TSLOT_KIND(st) == FDN_TSLOT_USED && FDN_TSLOT_OWNER(st) == s->proc_idx)
			return 11;
	}
	int r = fdn_lookup(s, argv[2], strlen(argv[2]), FDN_REG_CHECK_ALIVE, NULL) == 0 ? 0 : 12;
	fdn_segment_detach(s);
	return r;
}
