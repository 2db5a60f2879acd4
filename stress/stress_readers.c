/*
 * stress_readers - readers SIGKILLed inside read-side sections while
 * writers delete, replace and free.
 *
 * Readers loop: enter a section (fdn__rcu_read_lock), walk the registry's
 * table in place (fdn__ht_foreach: fdn_foreach calls back with copies,
 * outside any section) keeping the views of up to 8 entries -- pointers
 * into the segment's heap -- with a private copy of their bytes, then
 * dwell 0..500 us inside the section re-reading those views, and leave.  Nodes reached in a section
 * are not freed before it ends (shm/rcu.c), so the bytes behind a view must never change: a node
 * freed and reused under a reader (writers recycle same-sized blocks at
 * once) shows as a changed key or value, and every entry's "self"
 * attribute must equal its key.  That is the use-after-free detector;
 * AddressSanitizer (the ASan build runs this program too) watches the
 * process-private side.
 *
 * The parent SIGKILLs a random reader every 5..30 ms -- mostly inside a
 * section (the reader's in_section flag at its death says) -- and times
 * from the kill until the reaper has freed the reader's process slot.
 * Writers call fdn__rcu_synchronize every 16 operations and record the
 * longest wait: a dead reader's section blocks grace periods until the
 * reaper ends it, so that wait is bounded by the reaper's latency, not by
 * luck.  Checked: the checker once a second at a quiescent point, every
 * writer's committed keys, no view ever changed, and the longest grace
 * period within the longest reclamation plus a generous 1 s.
 */
#include "stress.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 32
#define KEYS      32
#define HELD      8

struct wjournal {
	_Atomic int parked;
	_Atomic int32_t pending;
	uint32_t committed[KEYS]; /* gen, 0 = absent */
	_Atomic uint64_t ops, syncs, gp_max_ns, gp_total_ns;
};

struct rjournal {
	_Atomic int parked;
	_Atomic int in_section;
	_Atomic uint64_t sections, views, changed, bad_self;
};

struct control {
	_Atomic int pause;
};

static struct st_opts opts = {.seconds = 10};
static int nwriters = 4, nreaders = 4;
static struct control *ctl;
static struct wjournal *wj;
static struct rjournal *rj;

static const char usage_text[] =
    "usage: stress_readers [--seconds N] [--writers N] [--readers N] [--seed N]\n"
    "\n"
    "Readers are SIGKILLed inside read-side sections (every 5..30 ms) while\n"
    "writers register, replace and unregister, and free what they removed after\n"
    "grace periods.  Checks that no reader ever sees a node change under it (use\n"
    "after free), that grace periods end within the reaper's latency, and the\n"
    "checker once a second.  Runs the real foundation-reaperd.\n"
    "\n"
    "  --seconds N  run time (default 10)\n"
    "  --writers N  writer processes (default 4)\n"
    "  --readers N  reader processes (default 4)\n"
    "  --seed N     random seed\n"
    "  --verbose    a line per checkpoint\n";

static int on_opt(int c, const char *arg)
{
	char *end;
	long v = strtol(arg, &end, 10);
	if (*end || v < 1 || v > MAX_PROCS)
		return 2;
	if (c == 'w')
		nwriters = (int)v;
	else
		nreaders = (int)v;
	return 0;
}

static void key_of(char *k, size_t cap, int w, int j)
{
	snprintf(k, cap, "rd-%d-%02d", w, j);
}

static void park(_Atomic int *parked)
{
	st_park(&ctl->pause, NULL, parked);
}

/* ---- writers ---------------------------------------------------------------- */

static void writer(int w, uint64_t seed)
{
	fdn_segment *s;
	struct wjournal *j = &wj[w];
	if (fdn_segment_attach(st_segment(), 0, &s))
		_exit(2);
	uint64_t x = seed | 1;
	static const char pad[] = "................................................................"
				  "....................................";
	for (uint32_t gen = 1;; gen++) {
		park(&j->parked);
		int k = (int)(st_rand(&x) % KEYS);
		char key[32];
		key_of(key, sizeof(key), w, k);
		/* "self" repeats the key: a reader checks them against each
		 * other; "pad" varies the size so blocks of several classes
		 * are recycled. */
		struct fdn_attr a[3] = {
		    {.name = "self", .type = FDN_ATTR_STRING, .v.s = key},
		    {.name = "gen", .type = FDN_ATTR_INT, .v.i = gen},
		    {.name = "pad", .type = FDN_ATTR_STRING, .v.s = pad + st_rand(&x) % 90}};
		uint32_t cur = j->committed[k], next;
		int r;
		atomic_store(&j->pending, k);
		if (cur == 0) {
			r = fdn_register(s, key, strlen(key), getpid(), a, 3, 0, NULL);
			next = gen;
		} else if (st_rand(&x) % 2) {
			r = fdn_update_attributes(s, key, strlen(key), a, 3);
			next = gen;
		} else {
			r = fdn_unregister(s, key, strlen(key));
			next = 0;
		}
		if (r) {
			fprintf(stderr, "%s: writer %d: %s: %s\n", st_prog, w, key,
				fdn_strerror(r));
			_exit(3);
		}
		j->committed[k] = next;
		atomic_store(&j->pending, -1);
		atomic_fetch_add(&j->ops, 1);
		if (gen % 16 == 0) {
			uint64_t t0 = st_now_ns();
			r = fdn__rcu_synchronize(s, -1);
			uint64_t d = st_now_ns() - t0;
			if (r) {
				fprintf(stderr, "%s: writer %d: synchronize: %s\n", st_prog, w,
					fdn_strerror(r));
				_exit(3);
			}
			atomic_fetch_add(&j->syncs, 1);
			atomic_fetch_add(&j->gp_total_ns, d);
			if (d > atomic_load(&j->gp_max_ns))
				atomic_store(&j->gp_max_ns, d);
		}
	}
}

/* ---- readers -------------------------------------------------------------- */

struct held {
	const void *key, *attrs; /* into the segment */
	uint32_t key_len, attrs_len;
	unsigned char key_copy[64];
	unsigned char attrs_copy[512];
};

struct rwalk {
	struct rjournal *j;
	struct held h[HELD];
	int n;
};

static void check_self(struct rjournal *j, const void *key, uint32_t klen, const void *attrs,
		       uint32_t alen)
{
	struct fdn_attr self;
	if (fdn_attrs_get(attrs, alen, "self", &self) != 0 || self.type != FDN_ATTR_STRING ||
	    strlen(self.v.s) != klen || memcmp(self.v.s, key, klen) != 0)
		atomic_fetch_add(&j->bad_self, 1);
}

static int keep_cb(void *arg, const struct fdn__ht_view *v)
{
	struct rwalk *w = arg;
	if (v->val_len < FDN__REG_REC_SIZE)
		return 0;
	const unsigned char *attrs = v->val + FDN__REG_REC_SIZE;
	uint32_t alen = v->val_len - FDN__REG_REC_SIZE;
	check_self(w->j, v->key, v->key_len, attrs, alen);
	atomic_fetch_add(&w->j->views, 1);
	if (w->n < HELD && v->key_len <= sizeof(w->h[0].key_copy) &&
	    alen <= sizeof(w->h[0].attrs_copy)) {
		struct held *h = &w->h[w->n++];
		h->key = v->key;
		h->attrs = attrs;
		h->key_len = v->key_len;
		h->attrs_len = alen;
		memcpy(h->key_copy, v->key, v->key_len);
		memcpy(h->attrs_copy, attrs, alen);
	}
	return 0;
}

static void reader(int r, uint64_t seed)
{
	fdn_segment *s;
	struct rjournal *j = &rj[r];
	if (fdn_segment_attach(st_segment(), 0, &s))
		_exit(2);
	uint64_t x = seed | 1;
	static struct rwalk w;
	for (;;) {
		park(&j->parked);
		struct fdn__thread *t;
		if (fdn__rcu_read_lock(s, &t))
			_exit(2);
		atomic_store(&j->in_section, 1);
		w.j = j;
		w.n = 0;
		fdn__ht_foreach(s, FDN__REG_TABLE, keep_cb, &w);
		/* Dwell in the section, the views in hand, while writers
		 * remove and free. */
		uint64_t until = st_now_ns() + st_rand(&x) % 500000;
		do {
			for (int i = 0; i < w.n; i++) {
				struct held *h = &w.h[i];
				if (memcmp(h->key, h->key_copy, h->key_len) != 0 ||
				    memcmp(h->attrs, h->attrs_copy, h->attrs_len) != 0) {
					atomic_fetch_add(&j->changed, 1);
					h->key_len = h->attrs_len = 0; /* count it once */
				}
			}
		} while (st_now_ns() < until);
		atomic_store(&j->in_section, 0);
		fdn__rcu_read_unlock(t);
		atomic_fetch_add(&j->sections, 1);
	}
}

/* ---- the parent ----------------------------------------------------------- */

static pid_t wpid[MAX_PROCS], rpid[MAX_PROCS];
static uint64_t seed_x;
static struct st_tally tally;
static uint64_t end_max_ns, end_total_ns;
static uint64_t kills, kills_in_section, reclaim_max_ns, reclaim_total_ns, reader_sections;
static uint64_t views_total, changed_total, bad_self_total;

static void spawn_reader(int r)
{
	uint64_t seed = st_rand(&seed_x);
	memset(&rj[r], 0, sizeof(rj[r]));
	pid_t c = st_fork();
	if (c == 0)
		reader(r, seed);
	rpid[r] = c;
}

static void harvest_reader(int r)
{
	reader_sections += atomic_load(&rj[r].sections);
	views_total += atomic_load(&rj[r].views);
	changed_total += atomic_load(&rj[r].changed);
	bad_self_total += atomic_load(&rj[r].bad_self);
}

/* Kill reader r, then time until the reaper has freed its process slot. */
static void kill_reader(fdn_segment *s, int r)
{
	uint32_t idx, slot = UINT32_MAX;
	uint64_t word = 0;
	if (fdn__proc_find(s, rpid[r], &idx) == 0) {
		word = atomic_load(&s->procs[idx].word);
		for (uint32_t i = 0; i < s->nthreads && slot == UINT32_MAX; i++)
			if (atomic_load(&s->tslots[i].state) == FDN_TSLOT_WORD(FDN_TSLOT_USED, idx))
				slot = i;
	}
	uint64_t t0 = st_now_ns();
	int st = st_kill_wait(rpid[r]);
	if (!WIFSIGNALED(st))
		st_fail(&tally, "reader %d ended on its own (status %#x)", r, st);
	kills++;
	kills_in_section += atomic_load(&rj[r].in_section) != 0;
	harvest_reader(r);
	if (word) {
		/* The section ends when the reaper resolves the slot (its ctr
		 * cleared): what a grace period waits for. */
		while (slot != UINT32_MAX && atomic_load(&s->tslots[slot].ctr) != 0 &&
		       atomic_load(&s->procs[idx].word) == word &&
		       st_now_ns() - t0 < 30000000000ull)
			st_sleep_ns(20000);
		uint64_t e = st_now_ns() - t0;
		end_total_ns += e;
		if (e > end_max_ns)
			end_max_ns = e;
		/* Reclaimed: the slot no longer holds that process, LIVE or
		 * DEAD (the reaper marks it DEAD first, frees it last). */
		uint64_t dead =
		    FDN_PROC_WORD(FDN_PROC_DEAD, FDN_PROC_PID(word), FDN_PROC_IDENT40(word));
		for (uint64_t w; (w = atomic_load(&s->procs[idx].word)) == word || w == dead;) {
			if (st_now_ns() - t0 > 30000000000ull) {
				st_fail(&tally, "reader %d: slot not reclaimed in 30 s", r);
				break;
			}
			st_sleep_ns(50000);
		}
		uint64_t d = st_now_ns() - t0;
		reclaim_total_ns += d;
		if (d > reclaim_max_ns)
			reclaim_max_ns = d;
	}
	spawn_reader(r);
}

static void verify_writers(fdn_segment *s, const char *when)
{
	uint64_t want = 0;
	for (int w = 0; w < nwriters; w++) {
		for (int k = 0; k < KEYS; k++) {
			char key[32];
			key_of(key, sizeof(key), w, k);
			struct fdn_entry e;
			int r = fdn_lookup(s, key, strlen(key), 0, &e);
			uint32_t gen = wj[w].committed[k];
			struct fdn_attr g;
			if (gen == 0 && r != FDN_ENOTFOUND)
				st_fail(&tally, "%s: %s unregistered but %s", when, key,
					r ? fdn_errname(r) : "found");
			else if (gen && (r != 0 || e.pid != wpid[w] ||
					 fdn_attrs_get(e.attrs, e.attrs_len, "gen", &g) != 0 ||
					 g.type != FDN_ATTR_INT || g.v.i != gen))
				st_fail(&tally, "%s: %s: not generation %u of writer %d (%s)", when,
					key, gen, w, r ? fdn_errname(r) : "other content");
			want += gen != 0;
		}
	}
	if (fdn_count(s) != (int64_t)want)
		st_fail(&tally, "%s: %lld entries, writers committed %llu", when,
			(long long)fdn_count(s), (unsigned long long)want);
}

static void checkpoint(fdn_segment *s, pid_t reaper, const char *when)
{
	atomic_store(&ctl->pause, 1);
	uint64_t deadline = st_now_ns() + 20000000000ull;
	for (int i = 0; i < nwriters + nreaders; i++) {
		_Atomic int *parked = i < nwriters ? &wj[i].parked : &rj[i - nwriters].parked;
		while (!atomic_load(parked) && st_now_ns() < deadline)
			st_sleep_ns(200000);
		if (!atomic_load(parked))
			st_fail(&tally, "%s: process %d did not park", when, i);
	}
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "%s: the segment did not settle", when);
	st_check(s, &tally, when);
	verify_writers(s, when);
	if (opts.verbose)
		fprintf(stderr,
			"%s: %s: kills %llu, section end max %.2f ms, reclaim max %.2f ms\n",
			st_prog, when, (unsigned long long)kills, end_max_ns / 1e6,
			reclaim_max_ns / 1e6);
	atomic_store(&ctl->pause, 0);
}

int main(int argc, char **argv)
{
	static const struct option extra[] = {{"writers", required_argument, 0, 'w'},
					      {"readers", required_argument, 0, 'r'},
					      {0, 0, 0, 0}};
	st_prog = "stress_readers";
	st_parse(argc, argv, &opts, usage_text, extra, on_opt);
	st_setup("stress_readers", "readers");
	seed_x = opts.seed;
	struct fdn_segment_opts o;
	fdn_segment_opts_init(&o);
	o.entries = 1024;
	o.heap_bytes = 4u << 20;
	o.processes = 256;
	o.threads = 256;
	fdn_segment *s = st_create(&o);
	pid_t reaper = st_reaper_start();
	ctl = st_shared(sizeof(*ctl));
	wj = st_shared(sizeof(*wj) * MAX_PROCS);
	rj = st_shared(sizeof(*rj) * MAX_PROCS);
	for (int w = 0; w < nwriters; w++) {
		atomic_store(&wj[w].pending, -1);
		uint64_t seed = st_rand(&seed_x);
		pid_t c = st_fork();
		if (c == 0)
			writer(w, seed);
		wpid[w] = c;
	}
	for (int r = 0; r < nreaders; r++)
		spawn_reader(r);
	uint64_t t0 = st_now_ns(), end = t0 + (uint64_t)(opts.seconds * 1e9);
	uint64_t next_check = t0 + 1000000000ull;
	while (st_now_ns() < end) {
		st_sleep_ns(st_between(&seed_x, 5, 30) * 1000000ull);
		if (st_now_ns() >= next_check) {
			checkpoint(s, reaper, "checkpoint");
			next_check = st_now_ns() + 1000000000ull;
			continue;
		}
		kill_reader(s, (int)(st_rand(&seed_x) % (uint64_t)nreaders));
	}
	checkpoint(s, reaper, "final");
	atomic_store(&ctl->pause, 1);
	uint64_t wops = 0, syncs = 0, gp_max = 0, gp_total = 0;
	for (int w = 0; w < nwriters; w++) {
		int st = st_kill_wait(wpid[w]);
		if (!WIFSIGNALED(st))
			st_fail(&tally, "writer %d ended on its own (status %#x)", w, st);
		wops += atomic_load(&wj[w].ops);
		syncs += atomic_load(&wj[w].syncs);
		gp_total += atomic_load(&wj[w].gp_total_ns);
		if (atomic_load(&wj[w].gp_max_ns) > gp_max)
			gp_max = atomic_load(&wj[w].gp_max_ns);
	}
	for (int r = 0; r < nreaders; r++) {
		st_kill_wait(rpid[r]);
		harvest_reader(r);
	}
	if (st_settle(s, reaper, 20000) != 0)
		st_fail(&tally, "end: the segment did not settle");
	st_check(s, &tally, "end");
	if (fdn__ht_count(s, 0) != 0 || fdn__ht_count(s, 1) != 0)
		st_fail(&tally, "end: %lld entries, %lld index references remain",
			(long long)fdn__ht_count(s, 0), (long long)fdn__ht_count(s, 1));
	if (changed_total)
		st_fail(&tally, "%llu views changed under a reader (use after free)",
			(unsigned long long)changed_total);
	if (bad_self_total)
		st_fail(&tally, "%llu entries whose key and \"self\" differ",
			(unsigned long long)bad_self_total);
	if (kills_in_section == 0)
		st_fail(&tally, "no reader was killed inside a section");
	/* A grace period waits for live readers' short sections and for dead
	 * ones until the reaper ends them: never much longer than the
	 * slowest reclamation. */
	if (gp_max > reclaim_max_ns + 1000000000ull)
		st_fail(&tally, "a grace period took %.1f ms; reclamation at most %.1f ms",
			gp_max / 1e6, reclaim_max_ns / 1e6);
	fdn_segment_detach(s);
	st_cleanup();
	return st_summary(wops + reader_sections, kills, &tally,
			  "kills_in_section=%llu reader_sections=%llu views=%llu changed=%llu "
			  "gp_waits=%llu gp_max_ms=%.2f gp_mean_ms=%.3f section_end_max_ms=%.2f "
			  "reclaim_max_ms=%.2f reclaim_mean_ms=%.2f",
			  (unsigned long long)kills_in_section, (unsigned long long)reader_sections,
			  (unsigned long long)views_total, (unsigned long long)changed_total,
			  (unsigned long long)syncs, gp_max / 1e6,
			  syncs ? gp_total / 1e6 / (double)syncs : 0.0, end_max_ns / 1e6,
			  reclaim_max_ns / 1e6,
			  kills ? reclaim_total_ns / 1e6 / (double)kills : 0.0);
}
