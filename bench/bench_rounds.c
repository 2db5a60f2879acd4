/* bench/bench_rounds.c - the interleaved rounds of bench_common.h: systems
 * timed in turn, round after round, and their statistics. */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- interleaved rounds ---------------------------------------------------------- */

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double bench_quantile(double *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_dbl);
	double pos = q * (double)(n - 1);
	size_t lo = (size_t)pos;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (pos - (double)lo) * (v[lo + 1] - v[lo]);
}

static void stats_of(double *v, size_t n, double out[BENCH_NSTAT])
{
	out[BENCH_MED] = bench_quantile(v, n, 0.5);
	out[BENCH_MIN] = v[0];
	out[BENCH_P10] = bench_quantile(v, n, 0.1);
	out[BENCH_P90] = bench_quantile(v, n, 0.9);
	out[BENCH_MAX] = v[n - 1];
}

/* One round: every system once, from system `first` on.  ns[i] gets the
 * slice's time, done[i] its operations.  0 or -1. */
static int one_round(const struct bench_rounds *b, size_t first, uint64_t at, uint64_t ops,
		     double *ns, double *done)
{
	uint64_t span = b->stream_len - ops + 1;
	for (size_t k = 0; k < b->nsys; k++) {
		size_t i = (first + k) % b->nsys;
		if (b->prepare && b->prepare(b->arg, i))
			return -1;
		/* Untimed, the first quarter of the slice: what the systems
		 * before this one left in the caches is not charged to it.
		 * With warm_ops, that many operations from half the stream
		 * away instead (not the keys then timed). */
		if (b->prewarm && b->warm_ops) {
			uint64_t w = b->warm_ops < span ? b->warm_ops : span;
			if (b->run(b->arg, i, (at + span / 2) % (b->stream_len - w + 1), w) < 0)
				return -1;
		} else if (b->prewarm && ops >= 4 && b->run(b->arg, i, at, ops / 4) < 0) {
			return -1;
		}
		uint64_t t0 = bench_mono_ns();
		int64_t d = b->run(b->arg, i, at, ops);
		uint64_t t1 = bench_mono_ns();
		if (b->finish)
			b->finish(b->arg, i);
		if (d < 0)
			return -1;
		if (d == 0 || (uint64_t)d > ops) {
			fprintf(stderr,
				"%s: system %zu did %" PRId64 " of %" PRIu64 " operations\n",
				bench_prog, i, d, ops);
			return -1;
		}
		ns[i] = t1 > t0 ? (double)(t1 - t0) : 1;
		done[i] = (double)d;
	}
	return 0;
}

int bench_rounds_run(struct bench_rounds *b)
{
	size_t n = b->nsys;
	b->rate = NULL;
	if (n == 0 || n > BENCH_MAX_SYS || b->rounds == 0 || b->min_ops == 0 ||
	    b->stream_len < b->min_ops) {
		fprintf(stderr, "%s: rounds: bad parameters\n", bench_prog);
		return -1;
	}
	b->rate = calloc((size_t)b->rounds * n, sizeof(*b->rate));
	if (!b->rate) {
		fprintf(stderr, "%s: rounds: %s\n", bench_prog, strerror(errno));
		return -1;
	}
	double ns[BENCH_MAX_SYS], done[BENCH_MAX_SYS];
	unsigned warm = b->warmup ? b->warmup : 1;
	b->ops = b->min_ops;
	for (unsigned w = 0; w < warm; w++) {
		if (one_round(b, w % n, 0, b->ops, ns, done))
			return -1;
		if (w == 0) {
			/* Time per requested operation, summed over systems. */
			double per_op = 0;
			for (size_t i = 0; i < n; i++)
				per_op += ns[i] / (double)b->ops;
			double want = b->round_ms * 1e6 / (per_op > 0 ? per_op : 1);
			b->ops = want < (double)b->min_ops      ? b->min_ops
				 : want > (double)b->stream_len ? b->stream_len
								: (uint64_t)want;
		}
	}
	uint64_t span = b->stream_len - b->ops + 1, t0 = bench_mono_ns();
	for (unsigned r = 0; r < b->rounds; r++) {
		uint64_t at = ((uint64_t)r * b->ops) % span;
		if (one_round(b, r % n, at, b->ops, ns, done))
			return -1;
		for (size_t i = 0; i < n; i++)
			b->rate[(size_t)r * n + i] = done[i] * 1e9 / ns[i];
	}
	b->elapsed_ms = (double)(bench_mono_ns() - t0) / 1e6;
	return 0;
}

void bench_rates_fill(struct bench_result *r, struct bench_sys *const *row, const double *rate,
		      size_t rounds, size_t n)
{
	size_t R = rounds;
	double *v = malloc(R * sizeof(*v));
	if (!v)
		return;
	r->rounds = (unsigned)rounds;
	for (size_t i = 0; i < n; i++) {
		size_t ri = (size_t)(row[i] - r->sys);
		for (size_t k = 0; k < R; k++)
			v[k] = rate[k * n + i];
		stats_of(v, R, r->sys_stat[ri]);
		row[i]->v[0] = r->sys_stat[ri][BENCH_MED];
		for (size_t j = 0; j < n; j++) {
			size_t rj = (size_t)(row[j] - r->sys);
			if (i == j)
				continue;
			for (size_t k = 0; k < R; k++)
				v[k] = rate[k * n + i] / rate[k * n + j];
			stats_of(v, R, r->ratio_stat[ri][rj]);
			r->has_ratio[ri][rj] = true;
		}
	}
	free(v);
}

void bench_rounds_fill(const struct bench_rounds *b, struct bench_result *r,
		       struct bench_sys *const *row)
{
	snprintf(r->how, sizeof(r->how),
		 "%u rounds of %" PRIu64 " operations per system, rotating order, %.0f ms per "
		 "round",
		 b->rounds, b->ops, b->elapsed_ms / b->rounds);
	bench_rates_fill(r, row, b->rate, b->rounds, b->nsys);
}

void bench_rounds_free(struct bench_rounds *b)
{
	free(b->rate);
	b->rate = NULL;
}
