/* bench/systems.c - what every system's workload shares (systems.h). */
#include "systems.h"

pid_t g_pid;

uint64_t pow2_at_least(uint64_t x)
{
	uint64_t p = 2;
	while (p < x)
		p <<= 1;
	return p;
}

int pairs_background_rec(struct key *k, unsigned char *val, uint64_t i)
{
	struct fdn_attr a[2];
	unsigned char enc[ENC_CAP];
	pairs_background(k, a, i);
	int alen = fdn_attrs_encode(a, 2, enc, ENC_CAP);
	if (alen < 0)
		return bench_fail("encode: %s", fdn_strerror(alen));
	return (int)rec_val(val, enc, (uint32_t)alen);
}
