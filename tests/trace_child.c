/*
 * tests/trace_child.c - exec'd by test_trace with TRACEPARENT set: attaches
 * to the segment named by argv[1], starts two root spans one after the
 * other and prints "<trace id of the first> <its parent id, hex> <trace id
 * of the second>".  With argv[2] "context" (FOUNDATION_CONTEXT set) it
 * prints its error context instead: "<correlation id> <operation id>
 * <breadcrumbs> <last crumb's function> <the map's user>".
 */
#include <foundation/foundation.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	fdn_segment *s;
	if (argc < 2 || fdn_segment_attach(argv[1], 0, &s) != 0)
		return 2;
	if (argc == 3 && strcmp(argv[2], "context") == 0) {
		static struct fdn_error_report rep;
		if (fdn_enrich_error(s, FDN_ENOTFOUND, &rep) != 0)
			return 5;
		struct fdn_attr user;
		if (fdn_attrs_get(rep.ctx, rep.ctx_len, "user", &user) != 0)
			user.v.s = "-";
		printf("%s %s %u %s %s\n", rep.correlation_id[0] ? rep.correlation_id : "-",
		       rep.operation_id[0] ? rep.operation_id : "-", rep.ncrumbs,
		       rep.ncrumbs ? rep.crumbs[rep.ncrumbs - 1].function : "-", user.v.s);
		fdn_segment_detach(s);
		return 0;
	}
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
