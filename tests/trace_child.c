/*
 * tests/trace_child.c - exec'd by test_trace with TRACEPARENT set: attaches
 * to the segment named by argv[1], starts two root spans one after the
 * other and prints "<trace id of the first> <its parent id, hex> <trace id
 * of the second>".
 */
#include <foundation/foundation.h>

#include <stdio.h>

int main(int argc, char **argv)
{
	fdn_segment *s;
	if (argc != 2 || fdn_segment_attach(argv[1], 0, &s) != 0)
		return 2;
	struct fdn_span_info a, b;
	if (fdn_span_start(s, "child-root", NULL, 0, NULL) != 0 || fdn_span_current(s, &a) != 0 ||
	    fdn_span_end(s, FDN_STATUS_OK) != 0)
		return 3;
	if (fdn_span_start(s, "child-second", NULL, 0, NULL) != 0 || fdn_span_current(s, &b) != 0 ||
	    fdn_span_end(s, FDN_STATUS_OK) != 0)
		return 4;
	printf("%s %llx %s\n", a.trace_id, (unsigned long long)a.parent_id, b.trace_id);
	fdn_segment_detach(s);
	return 0;
}
