/* A program that uses only the installed library: create, attach, check, destroy. */
#include <foundation/foundation.h>

#include <stdio.h>
#include <unistd.h>

int main(void)
{
	char name[64];
	snprintf(name, sizeof(name), "fdn-consumer-%d", (int)getpid());
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 100;
	fdn_segment *s;
	int r = fdn_segment_create(name, &o, &s);
	if (r) {
		fprintf(stderr, "consumer: create: %s\n", fdn_strerror(r));
		return 1;
	}
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	int v = fdn_segment_check(s, NULL, NULL);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	printf("consumer: %u process slot(s), %d violations, %s\n", st.procs_used, v,
	       fdn_errname(FDN_ENOTFOUND));
	return st.procs_used == 1 && v == 0 ? 0 : 1;
}
