/*
 * launch_latency.c - what starting the reaper adds to create and attach.
 *
 * Each round, on a fresh segment (so that every call really launches a
 * reaper): the time of fdn_segment_create with the reaper's autostart; of
 * fdn_segment_attach of a segment made without one (the attach launches
 * it); and of fdn_segment_create with FOUNDATION_NO_AUTOREAPER=1 (no
 * reaper: the floor).  Between them, untimed: wait for the reaper to hold
 * the lease, detach, destroy (which stops it).  Every launch is of a new
 * segment: the one-launch-a-second limit of a segment never applies.
 *
 * Uses only the public API that every version has (fdn_reaper_holder
 * polled, not fdn_reaper_wait), so bench/launch_latency.sh can run it
 * against the shared library of another build, interleaved.
 *
 * usage: launch_latency ROUNDS TAG   prints "TAG create|attach|bare MS" lines
 */
#include <foundation/reaper.h>
#include <foundation/segment.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void pause_ms(long ms)
{
	struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&d, NULL);
}

/* Wait (untimed) until a reaper holds the lease: at most 10 s. */
static int wait_reaper(fdn_segment *s)
{
	for (int i = 0; i < 1000; i++) {
		if (fdn_reaper_holder(s) > 0)
			return 0;
		pause_ms(10);
	}
	return -1;
}

static void opts(struct fdn_segment_opts *o)
{
	fdn_segment_opts_init(o);
	o->entries = 1000;
	o->processes = 64;
	o->threads = 64;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 10;
	const char *tag = argc > 2 ? argv[2] : "run";
	char name[64];
	struct fdn_segment_opts o;
	opts(&o);
	for (int i = 0; i < rounds; i++) {
		fdn_segment *s, *a;
		snprintf(name, sizeof(name), "fdn-bench-launch-%d-%d", (int)getpid(), i);

		/* create, with its reaper */
		unsetenv("FOUNDATION_NO_AUTOREAPER");
		double t0 = now_ms();
		if (fdn_segment_create(name, &o, &s) != 0)
			return 1;
		double t1 = now_ms();
		printf("%s create %.3f\n", tag, t1 - t0);
		if (wait_reaper(s))
			fprintf(stderr, "launch_latency: no reaper after create\n");
		fdn_segment_detach(s);
		fdn_segment_destroy(name);

		/* attach, launching the reaper of a segment made without one */
		setenv("FOUNDATION_NO_AUTOREAPER", "1", 1);
		double t2 = now_ms();
		if (fdn_segment_create(name, &o, &s) != 0)
			return 1;
		double t3 = now_ms();
		printf("%s bare %.3f\n", tag, t3 - t2);
		unsetenv("FOUNDATION_NO_AUTOREAPER");
		double t4 = now_ms();
		if (fdn_segment_attach(name, 0, &a) != 0)
			return 1;
		double t5 = now_ms();
		printf("%s attach %.3f\n", tag, t5 - t4);
		if (wait_reaper(a))
			fprintf(stderr, "launch_latency: no reaper after attach\n");
		fdn_segment_detach(a);
		fdn_segment_detach(s);
		fdn_segment_destroy(name);
		fflush(stdout);
	}
	return 0;
}
