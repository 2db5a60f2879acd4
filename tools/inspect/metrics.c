/* tools/inspect/metrics.c - foundation-inspect: the metrics command: print, --textfile, --listen (a
 * small HTTP server). */
#include "inspect/inspect.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* The reaper's latency: every death since the segment's creation
 * (fdn_reaper_latency), so no count ever goes down. */
static void prom_latency(fdn_segment *s, const struct args *a)
{
	struct fdn_reaper_latency h;
	char labels[48];
	const char *name = "foundation_reaper_latency_seconds";
	if (fdn_reaper_latency(s, &h) != 0)
		memset(&h, 0, sizeof(h));
	prom_family(a->out, name, "histogram",
		    "Time from the reaper learning of a death to the dead process's entries "
		    "vanishing, every death since the segment's creation.");
	for (size_t b = 0; b < FDN_REAPER_LATENCY_BOUNDS; b++) {
		snprintf(labels, sizeof(labels), ",le=\"%g\"", (double)h.bound_ns[b] / 1e9);
		prom_sample("foundation_reaper_latency_seconds_bucket", a, labels,
			    (double)h.cumulative[b]);
	}
	prom_sample("foundation_reaper_latency_seconds_bucket", a, ",le=\"+Inf\"", (double)h.count);
	prom_sample("foundation_reaper_latency_seconds_sum", a, "", (double)h.sum_ns / 1e9);
	prom_sample("foundation_reaper_latency_seconds_count", a, "", (double)h.count);
}

/* Process slots per state (an fdn_process_cb). */
static int count_state(void *arg, const struct fdn_process *p)
{
	((uint32_t *)arg)[p->state & 3]++;
	return 0;
}

static int metrics_print(fdn_segment *s, const struct args *a)
{
	struct fdn_segment_stats st;
	int64_t visible;
	int status = segment_counts(s, a, "metrics", &st, &visible);
	if (status != EXIT_OK)
		return status;
	uint32_t states[4] = {0};
	fdn_processes(s, count_state, states);
	uint64_t written, dropped;
	fdn_graveyard_trace_counts(s, &written, &dropped);
	pid_t reaper = fdn_reaper_holder(s);

	prom_gauge("foundation_segment_bytes", "Size of the segment.", a, (double)st.total_bytes);
	prom_family(a->out, "foundation_processes", "gauge", "Process slots in use, by state.");
	prom_sample("foundation_processes", a, ",state=\"live\"", states[FDN_PROCESS_LIVE]);
	prom_sample("foundation_processes", a, ",state=\"dead\"", states[FDN_PROCESS_DEAD]);
	prom_sample("foundation_processes", a, ",state=\"left\"", states[FDN_PROCESS_LEFT]);
	prom_gauge("foundation_processes_capacity", "Process slots.", a, st.procs_cap);
	prom_gauge("foundation_reader_slots_used", "Reader (thread) slots in use.", a,
		   st.threads_used);
	prom_gauge("foundation_reader_slots_capacity", "Reader (thread) slots.", a, st.threads_cap);
	prom_gauge("foundation_trace_slots_used", "Trace slots (span stacks, contexts) in use.", a,
		   st.trace_used);
	prom_gauge("foundation_trace_slots_capacity", "Trace slots.", a, st.trace_cap);
	prom_gauge("foundation_heap_bytes_capacity", "Bytes of heap for keys and values.", a,
		   (double)st.heap_bytes);
	prom_gauge("foundation_heap_pages_used", "Heap pages assigned to a size class.", a,
		   (double)st.heap_pages_used);
	prom_gauge("foundation_heap_blocks_used", "Heap blocks allocated.", a,
		   (double)st.blocks_used);
	prom_gauge("foundation_heap_block_bytes_used", "Bytes of the allocated heap blocks.", a,
		   (double)st.block_bytes_used);
	prom_gauge("foundation_registry_entries", "Registry entries visible to lookups.", a,
		   (double)visible);
	prom_cluster(s, a);
	char labels[64];
	const char *fam[3][2] = {{"foundation_table_entries", "Nodes in each table."},
				 {"foundation_table_buckets", "Buckets of each table."},
				 {"foundation_table_load_factor", "Nodes per bucket."}};
	for (int f = 0; f < 3; f++) {
		prom_family(a->out, fam[f][0], "gauge", fam[f][1]);
		for (uint32_t i = 0; i < st.ntables && i < FDN_STATS_MAX_TABLES; i++) {
			const struct fdn_table_stats *t = &st.tables[i];
			snprintf(labels, sizeof(labels), ",table=\"%.*s\"",
				 (int)strnlen(t->name, sizeof(t->name)), t->name);
			prom_sample(fam[f][0], a, labels,
				    f == 0   ? (double)t->entries
				    : f == 1 ? (double)t->buckets
					     : load(t));
		}
	}
	static struct fdn_flag_info fl[FDN_FLAGS_MAX];
	int nfl = fdn_flags_list(s, fl, (int)FDN_FLAGS_MAX);
	prom_gauge("foundation_stage", "The migration stage (0..4).", a, fdn_stage(s));
	prom_family(a->out, "foundation_flag_value", "gauge",
		    "Each feature flag: 0 off .. 100 on.");
	for (int i = 0; i < nfl && i < (int)FDN_FLAGS_MAX; i++) {
		/* flag names are [A-Za-z0-9_.-] (flags.c): no escaping needed */
		snprintf(labels, sizeof(labels), ",flag=\"%.*s\"", (int)FDN_FLAG_NAME_MAX,
			 fl[i].name);
		prom_sample("foundation_flag_value", a, labels, fl[i].value);
	}
	prom_counter("foundation_grace_periods_total", "Grace periods started.", a,
		     (double)(st.gp_counter ? st.gp_counter - 1 : 0));
	prom_gauge("foundation_reclaim_pending_blocks",
		   "Blocks retired and not yet freed (waiting for a grace period).", a,
		   (double)st.reclaim_pending);
	prom_gauge("foundation_reaper_up", "1 if a live reaper holds the lease.", a,
		   reaper > 0 ? 1 : 0);
	prom_counter("foundation_deaths_total", "Deaths reaped.", a, (double)fdn_deaths(s));
	prom_latency(s, a);
	prom_counter("foundation_graveyard_threads_total",
		     "Dead threads whose spans and context were copied to the graveyard.", a,
		     (double)written);
	struct fdn_ring_stats rs;
	if (fdn_ring_stats(s, &rs) == 0) {
		prom_gauge("foundation_event_ring_capacity", "Records in the telemetry ring.", a,
			   (double)rs.capacity);
		prom_counter("foundation_events_written_total", "Events written to the ring.", a,
			     (double)rs.written);
		prom_counter("foundation_events_overwritten_total",
			     "Ring events overwritten by newer ones (the ring keeps the newest).",
			     a, (double)rs.overwritten);
		prom_counter("foundation_events_lapped_total",
			     "Events dropped by a producer stalled for a whole lap of the ring.", a,
			     (double)rs.lapped);
	}
	struct fdn_changes_stats cs;
	if (fdn_changes_stats(s, &cs) == 0 && cs.capacity) {
		prom_gauge("foundation_changes_revision",
			   "The newest revision of the registry's change log.", a,
			   (double)cs.revision);
		prom_gauge("foundation_changes_capacity", "Records the change log keeps.", a,
			   (double)cs.capacity);
		prom_gauge("foundation_changes_subscribers", "Change-log subscriptions open.", a,
			   (double)cs.subscribers);
		prom_counter("foundation_changes_overruns_total",
			     "Subscription reads that found their next change overwritten.", a,
			     (double)cs.overruns);
	}
	prom_counter("foundation_graveyard_threads_dropped_total",
		     "Graveyard thread copies overwritten by newer ones.", a, (double)dropped);
	return EXIT_OK;
}

/* The metrics into memory (*buf, *len; the caller frees *buf). */
static int metrics_render(fdn_segment *s, const struct args *a, char **buf, size_t *len)
{
	*buf = NULL;
	*len = 0;
	/* A server scrapes for as long as it runs: look at the file first. */
	if (fdn_segment_report_truncated(s, prog))
		return EXIT_FAIL;
	FILE *mem = open_memstream(buf, len);
	if (!mem)
		return complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "metrics");
	struct args m = *a;
	m.out = mem;
	int status = metrics_print(s, &m);
	if (fclose(mem) != 0 && status == EXIT_OK)
		status = complain(EXIT_FAIL, fdn_strerror(-ENOMEM), "metrics");
	return status;
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == ENOTSOCK)
			w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* --textfile PATH: written to PATH.tmp.PID in the same directory, synced,
 * then renamed over PATH, so a reader (node_exporter's textfile collector,
 * which reads only *.prom) sees the old file or the new one, never part. */
static int metrics_textfile(fdn_segment *s, const struct args *a)
{
	char *buf, tmp[PATH_MAX];
	size_t len;
	int status = metrics_render(s, a, &buf, &len);
	if (status) {
		free(buf);
		return status;
	}
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", a->textfile, (int)getpid()) >=
	    sizeof(tmp)) {
		free(buf);
		return complain(EXIT_FAIL, "path too long", "metrics --textfile \"%s\"",
				a->textfile);
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	const char *what = "create";
	if (fd >= 0) {
		what = !write_all(fd, buf, len) ? "write" : fsync(fd) != 0 ? "fsync" : NULL;
		int e = errno;
		if (close(fd) != 0 && !what)
			what = "close";
		else
			errno = e;
		if (!what && rename(tmp, a->textfile) != 0)
			what = "rename";
		if (what) {
			e = errno;
			unlink(tmp);
			errno = e;
		}
	}
	free(buf);
	if (what)
		return complain(EXIT_FAIL, strerror(errno), "metrics --textfile \"%s\": %s %s",
				a->textfile, what, strcmp(what, "rename") == 0 ? "over it" : tmp);
	return EXIT_OK;
}

/* HOST:PORT, HOST an IPv4 address or [IPv6]; PORT 0..65535 (0: any). */
static bool listen_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon = strrchr(text, ':');
	uint64_t port;
	if (!colon || (size_t)(colon - text) >= sizeof(host) ||
	    !parse_num(colon + 1, 10, 65535, &port))
		return false;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = 0;
	memset(ss, 0, sizeof(*ss));
	size_t hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
		host[hl - 1] = 0;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return inet_pton(AF_INET6, host + 1, &in6->sin6_addr) == 1;
	}
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	in4->sin_family = AF_INET;
	in4->sin_port = htons((uint16_t)port);
	*len = sizeof(*in4);
	return inet_pton(AF_INET, host, &in4->sin_addr) == 1;
}

/* One HTTP response, then the connection is closed. */
static void http_reply(int fd, int code, const char *reason, const char *type, const char *extra,
		       const char *body, size_t blen, bool head)
{
	char h[512];
	int n = snprintf(h, sizeof(h),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
			 "Connection: close\r\n\r\n",
			 code, reason, type, blen, extra);
	if (write_all(fd, h, (size_t)n) && !head)
		write_all(fd, body, blen);
}

#define HTTP_REQUEST_MAX 8192
#define HTTP_TIMEOUT_S   2

/* Serve one connection: GET (or HEAD) /metrics.  Returns false when the
 * segment is gone (the server then stops). */
static bool http_serve(fdn_segment *s, const struct args *a, int fd)
{
	static const char text_type[] = "text/plain; charset=utf-8";
	static char req[HTTP_REQUEST_MAX + 1];
	struct timeval tv = {HTTP_TIMEOUT_S, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	size_t n = 0;
	while (n < HTTP_REQUEST_MAX) {
		ssize_t r = recv(fd, req + n, HTTP_REQUEST_MAX - n, 0);
		if (r < 0 && errno == EINTR && !events_stop)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		req[n] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[n] = 0;
	char method[16], target[256];
	if (!strstr(req, "\n\n") && !strstr(req, "\r\n\r\n")) {
		const char *why = n >= HTTP_REQUEST_MAX ? "request too large\n" : "bad request\n";
		http_reply(fd, 400, "Bad Request", text_type, "", why, strlen(why), false);
		/* Unread request bytes at close would reset the connection
		 * before the client reads the reply: end our side, then read
		 * (and drop) what it still sends, 64 KiB and 2 s at most. */
		shutdown(fd, SHUT_WR);
		for (size_t drained = 0; drained < 65536;) {
			ssize_t r = recv(fd, req, HTTP_REQUEST_MAX, 0);
			if (r <= 0)
				break;
			drained += (size_t)r;
		}
		return true;
	}
	if (sscanf(req, "%15s %255s HTTP/1.%*c", method, target) != 2) {
		http_reply(fd, 400, "Bad Request", text_type, "", "bad request\n", 12, false);
		return true;
	}
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		http_reply(fd, 405, "Method Not Allowed", text_type, "Allow: GET, HEAD\r\n",
			   "method not allowed\n", 19, false);
		return true;
	}
	target[strcspn(target, "?")] = 0;
	if (strcmp(target, "/metrics") != 0) {
		http_reply(fd, 404, "Not Found", text_type, "", "not found: try /metrics\n", 24,
			   head);
		return true;
	}
	if (segment_gone(s, a->segment)) {
		static const char gone[] = "segment destroyed\n";
		http_reply(fd, 503, "Service Unavailable", text_type, "", gone, sizeof(gone) - 1,
			   head);
		return false;
	}
	char *body;
	size_t blen;
	if (metrics_render(s, a, &body, &blen) != EXIT_OK) {
		static const char err[] = "metrics failed (see the server's stderr)\n";
		http_reply(fd, 500, "Internal Server Error", text_type, "", err, sizeof(err) - 1,
			   head);
	} else {
		http_reply(fd, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "", body,
			   blen, head);
	}
	free(body);
	return true;
}

/* --listen HOST:PORT: an HTTP server for Prometheus, one connection at a
 * time (each bounded: 8 KiB of request, 2 s to send it and to take the
 * reply), until SIGINT or SIGTERM (exit 0) or the segment is destroyed
 * (exit 1). */
static int metrics_listen(fdn_segment *s, const struct args *a)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	if (!listen_addr(a->listen, &ss, &slen))
		return usage_error("metrics",
				   "metrics --listen \"%s\": expected ADDRESS:PORT, "
				   "an IPv4 address or [IPv6], PORT 0..65535",
				   a->listen);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0)
		return complain(EXIT_FAIL, strerror(errno), "metrics --listen: socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 16) != 0) {
		int e = errno;
		close(fd);
		return complain(EXIT_FAIL, strerror(e), "metrics --listen \"%s\"", a->listen);
	}
	/* The address bound (PORT 0 picks one), for the log and for scripts. */
	char host[INET6_ADDRSTRLEN];
	slen = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &slen);
	bool v6 = ss.ss_family == AF_INET6;
	inet_ntop(ss.ss_family,
		  v6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
		     : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
		  host, sizeof(host));
	fprintf(a->out, "listening on http://%s%s%s:%u/metrics\n", v6 ? "[" : "", host,
		v6 ? "]" : "",
		ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			 : ((struct sockaddr_in *)&ss)->sin_port));
	fflush(a->out);
	struct sigaction sa = {.sa_handler = events_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	int status = EXIT_OK;
	while (!events_stop) {
		struct pollfd p = {fd, POLLIN, 0};
		/* a signal interrupts poll; the timeout bounds the one that
		 * lands between the check and the call */
		if (poll(&p, 1, 500) <= 0)
			continue;
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		bool go_on = http_serve(s, a, c);
		close(c);
		if (!go_on) {
			status = complain(EXIT_FAIL, "segment destroyed", "segment \"%s\": metrics",
					  a->segment);
			break;
		}
	}
	close(fd);
	return status;
}

int cmd_metrics(fdn_segment *s, const struct args *a)
{
	if (a->listen)
		return metrics_listen(s, a);
	if (a->textfile)
		return metrics_textfile(s, a);
	return metrics_print(s, a);
}
