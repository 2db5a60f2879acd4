/*
 * telemetry_names.c - the names of events: the services' own (fdn__ev_names,
 * by id) and the rule every event and measurement name follows (words of
 * [A-Za-z0-9_-] joined by dots).  Used by telemetry.c (emission),
 * telemetry_sample.c (samplers), telemetry_once.c (once-per),
 * telemetry_batch.c (batches) and trace_rec.c (the compact span record);
 * calls nothing of the library.
 */
#include "lib/telemetry_int.h"

#include <math.h>
#include <string.h>

const char *const fdn__ev_names[FDN__EV_COUNT] = {
    [FDN__EV_REG_REGISTER] = "foundation.registry.register",
    [FDN__EV_REG_LOOKUP] = "foundation.registry.lookup",
    [FDN__EV_REG_UNREGISTER] = "foundation.registry.unregister",
    [FDN__EV_REG_UPDATE] = "foundation.registry.update",
    [FDN__EV_REG_MERGE] = "foundation.registry.merge",
    [FDN__EV_PROCESS_DOWN] = "foundation.process.down",
    [FDN__EV_SPAN_START] = "foundation.span.start",
    [FDN__EV_SPAN_STOP] = "foundation.span.stop",
    [FDN__EV_SPAN_ATTRIBUTES] = "foundation.span.attributes",
    [FDN__EV_SPAN_EVENT] = "foundation.span.event",
    [FDN__EV_SPAN_LINK] = "foundation.span.link",
    [FDN__EV_FLAG_CHANGED] = "foundation.flag.changed",
    [FDN__EV_STAGE_CHANGED] = "foundation.stage.changed",
    [FDN__EV_STAGE_ALERT] = "foundation.stage.alert",
    [FDN__EV_REAPER_MISSING] = "foundation.reaper.missing",
};

static bool word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

int fdn__event_name_len(const char *name)
{
	if (!name)
		return FDN_EEVNAME;
	size_t i = 0;
	bool word = false; /* inside a word: a dot may follow */
	for (; name[i]; i++) {
		if (i >= FDN_EVENT_NAME_MAX)
			return FDN_EEVNAME;
		if (name[i] == '.') {
			if (!word)
				return FDN_EEVNAME;
			word = false;
		} else if (word_char(name[i])) {
			word = true;
		} else {
			return FDN_EEVNAME;
		}
	}
	return word ? (int)i : FDN_EEVNAME;
}

int fdn_event_name_check(const char *name)
{
	int n = fdn__event_name_len(name);
	return n < 0 ? n : 0;
}

bool fdn_event_prefix_match(const char *prefix, const char *name)
{
	size_t n = strlen(prefix);
	if (n == 0)
		return true;
	if (strncmp(prefix, name, n) != 0)
		return false;
	return prefix[n - 1] == '.' || name[n] == 0 || name[n] == '.';
}

int fdn__check_measurements(const struct fdn_measurement *m, size_t nm)
{
	if (nm > FDN_MEASUREMENTS_MAX || (nm && !m))
		return FDN_EINVAL;
	for (size_t i = 0; i < nm; i++) {
		const char *p = m[i].name;
		size_t len = p ? strnlen(p, FDN_MEASUREMENT_NAME_MAX + 1) : 0;
		if (len == 0 || len > FDN_MEASUREMENT_NAME_MAX || !isfinite(m[i].value))
			return FDN_EINVAL;
		for (size_t k = 0; k < len; k++)
			if (!word_char(p[k]) && p[k] != '.')
				return FDN_EINVAL;
	}
	return 0;
}
