/* A program that uses only the installed library: create (its reaper
 * required: the one installed beside the library is found), attach,
 * check, destroy.  It prints the reaper's program (/proc/PID/exe) for
 * run.sh to compare. */
#include <foundation/foundation.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void)
{
	if (strcmp(fdn_version(), FDN_VERSION_STRING) != 0) {
		fprintf(stderr, "consumer: library %s, headers %s\n", fdn_version(),
			FDN_VERSION_STRING);
		return 1;
	}
	char name[64];
	snprintf(name, sizeof(name), "fdn-consumer-%d", (int)getpid());
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 100;
	o.flags = FDN_SEG_REQUIRE_REAPER;
	fdn_segment *s;
	int r = fdn_segment_create(name, &o, &s);
	if (r) {
		char looked[1024];
		fdn_reaper_locate(looked, sizeof(looked));
		fprintf(stderr, "consumer: create: %s (looked at %s)\n", fdn_strerror(r), looked);
		return 1;
	}
	int reaper = fdn_reaper_wait(s, 20000);
	char link[64], exe[PATH_MAX] = "";
	snprintf(link, sizeof(link), "/proc/%d/exe", reaper);
	ssize_t n = reaper > 0 ? readlink(link, exe, sizeof(exe) - 1) : -1;
	if (n <= 0) {
		fprintf(stderr, "consumer: no reaper took the lease: %s\n", fdn_strerror(reaper));
		return 1;
	}
	exe[n] = 0;
	printf("consumer: reaper %s\n", exe);
	/* One call of each service through the installed library. */
	struct fdn_attr a = {.name = "capability", .type = FDN_ATTR_STRING, .v.s = "gpu"};
	struct fdn_entry e;
	struct fdn_measurement m = {"n", 1};
	char tid[FDN_TRACE_ID_HEX + 1];
	if (fdn_register(s, "consumer", 8, getpid(), &a, 1, 0, NULL) ||
	    fdn_lookup(s, "consumer", 8, 0, &e) || e.pid != getpid() ||
	    fdn_span_start(s, "consume", NULL, 0, NULL) || fdn_span_trace_id(s, tid) ||
	    fdn_ctx_set(s, &a, 1) || fdn_span_end(s, FDN_STATUS_OK) ||
	    !fdn_flag_enabled(s, "use_shm_registry") ||
	    fdn_emit(s, "consumer.ran", &m, 1, NULL, 0) != 1) {
		fprintf(stderr, "consumer: a service call failed\n");
		return 1;
	}
	struct fdn_segment_stats st;
	fdn_segment_stats(s, &st);
	int v = fdn_segment_check(s, NULL, NULL);
	fdn_segment_detach(s);
	fdn_segment_destroy(name);
	printf("consumer: foundation %s, %u process slot(s), %d violations, %s\n", fdn_version(),
	       st.procs_used, v, fdn_errname(FDN_ENOTFOUND));
	/* Two process slots: ours and the reaper's. */
	return st.procs_used == 2 && v == 0 ? 0 : 1;
}
