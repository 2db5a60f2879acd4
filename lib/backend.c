/*
 * backend.c - which backend serves a service's call: the segment (shared)
 * or the process-local one, chosen per call by the flags, as in the seed.
 *
 *   registry        <- use_shm_registry
 *   error context   <- use_shm_error_context
 *   spans           <- use_shm_spans
 *   telemetry       <- use_shm_telemetry
 *   sampled events  <- use_shm_sampled_events
 *
 * The choice reads the built-in word once: the service's flag and
 * enforce_no_local_state come from the same snapshot, so a call never
 * combines two different profiles (a stage change is one store).  A local
 * choice while enforce_no_local_state is on is FDN_EENFORCED.  Without a
 * segment (s == NULL) the backend is local, under the process-memory
 * flags' enforcement.  A read-only handle (the inspector's) always reads the
 * segment: it is a window onto shared state, and it has no local state of
 * its own to show.
 *
 * Who calls whom.  Every service's public calls call fdn__backend
 * (registry.c, trace*.c, telemetry.c, telemetry_sample.c, ...); this file
 * reads the flags word (lib/internal.h, flags.c's header) and calls
 * nothing else.
 */
#include "lib/internal.h"

static const enum fdn__flag_id svc_flag[] = {
    [FDN__SVC_REGISTRY] = FDN__FLAG_USE_SHM_REGISTRY,
    [FDN__SVC_ERROR_CONTEXT] = FDN__FLAG_USE_SHM_ERROR_CONTEXT,
    [FDN__SVC_SPANS] = FDN__FLAG_USE_SHM_SPANS,
    [FDN__SVC_TELEMETRY] = FDN__FLAG_USE_SHM_TELEMETRY,
    [FDN__SVC_SAMPLED_EVENTS] = FDN__FLAG_USE_SHM_SAMPLED_EVENTS,
};

int fdn__backend(fdn_segment *s, enum fdn__svc svc)
{
	if (s && s->readonly)
		return FDN__SHARED;
	uint64_t w = fdn__flags_word(s);
	if (s && FDN_BUILTIN_VALUE(w, svc_flag[svc]) == FDN_FLAG_PCT_MAX)
		return FDN__SHARED;
	if (FDN_BUILTIN_VALUE(w, FDN__FLAG_ENFORCE_NO_LOCAL_STATE) == FDN_FLAG_PCT_MAX)
		return FDN_EENFORCED;
	return FDN__LOCAL;
}
