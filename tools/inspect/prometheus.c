/* tools/inspect/prometheus.c - foundation-inspect's Prometheus writer: the text exposition
 * format every metric goes through (the text and JSON writers are tools/cli.h's). */
#include "inspect/inspect.h"

#include <stdio.h>

/* ---- metrics: the Prometheus text exposition format --------------------------------- */

/* "# HELP" and "# TYPE" of a metric family, then its samples. */
void prom_family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One sample; labels is "" or ",k=\"v\"" after the segment label.  Segment
 * names are [A-Za-z0-9._-] (fdn_segment_name_check): no escaping is needed. */
void prom_sample(const char *name, const struct args *a, const char *labels, double v)
{
	fprintf(a->out, "%s{segment=\"%s\"%s} %.17g\n", name, a->segment, labels, v);
}

void prom_gauge(const char *name, const char *help, const struct args *a, double v)
{
	prom_family(a->out, name, "gauge", help);
	prom_sample(name, a, "", v);
}

void prom_counter(const char *name, const char *help, const struct args *a, double v)
{
	prom_family(a->out, name, "counter", help);
	prom_sample(name, a, "", v);
}
