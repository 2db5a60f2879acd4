/*
 * backend.c - which backend serves a service's call: the segment or the
 * process-local one.
 *
 * Until the flags service decides it, a call with a segment uses the
 * segment and a call without one (s == NULL) uses the local backend.
 */
#include "lib/internal.h"

int fdn__backend(fdn_segment *s, enum fdn__svc svc)
{
	(void)svc;
	return s != NULL ? FDN__SHARED : FDN__LOCAL;
}
