/*
 * foundation/flags.h - feature flags shared by every process of a segment,
 * and the migration stages that switch the services between their local
 * (process-private) and shared (segment) backends.
 *
 * Values.  A flag's value is a percentage 0..100: 0 is "off", 100 is "on",
 * anything between is a rollout: fdn_flag_enabled_for_id() is true for
 * about that share of ids, and the same ids at every higher percentage.
 * fdn_flag_enabled() (no id) is true only when the flag is fully on.
 *
 * Where flags live.  With a segment, in the segment: a change made by any
 * process (or `foundation-ctl flags set`) is seen by every attached
 * process on its next read.  With s == NULL, in this process's memory,
 * from $FOUNDATION_FLAGS at load time (else the built-in defaults).
 *
 * The migration's flags (built in, always present):
 *   use_shm_registry, use_shm_error_context, use_shm_telemetry,
 *   use_shm_spans, use_shm_sampled_events   the service uses the segment
 *                                           (else its local backend)
 *   enforce_no_local_state                  a local backend is an error
 *                                           (FDN_EENFORCED)
 *   enable_migration_monitoring             migration telemetry: the
 *                                           stage events, the alert and
 *                                           built-in flag events are
 *                                           emitted only when it is on
 *                                           before or after the change
 * Built-in defaults: the stage-3 profile (every service shared, local
 * state allowed).  User-defined flags: fdn_flag_create().
 *
 * Stages 0..4 and their profiles (the flags of the profile are on, every
 * other built-in flag off):
 *   0  none
 *   1  use_shm_registry, enable_migration_monitoring
 *   2  + use_shm_error_context
 *   3  + use_shm_telemetry, use_shm_spans, use_shm_sampled_events
 *   4  + enforce_no_local_state
 * The built-in flags and the stage are one word in the segment: a reader
 * never sees half a profile.
 *
 * History.  Every change of a flag or of the stage is recorded (time,
 * from, to, reason, pid) in a ring of the last FDN_FLAGS_HISTORY changes,
 * numbered from 0 for the segment's life.
 *
 * Concurrency.  Reads take no lock: a built-in flag costs one atomic load,
 * a user flag a search of the name table and one load.  Writers from any
 * thread of any process are serialised by a lock word in the segment that
 * names the holder's process; a writer that finds the holder dead (the
 * kernel says so) takes the lock over and completes the dead writer's
 * change from its journal, so nobody waits on a dead process.  A writer
 * waits at most about 5 s for a live holder (FDN_ETIMEDOUT: nothing
 * changed).  Every write returns 0 or a negative code and on error changes
 * nothing.  Writes need a read-write handle (FDN_ERDONLY).
 */
#ifndef FOUNDATION_FLAGS_H
#define FOUNDATION_FLAGS_H

#include <foundation/common.h>
#include <foundation/error.h>
#include <foundation/segment.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FDN_FLAG_OFF        0
#define FDN_FLAG_ON         100
#define FDN_FLAG_NAME_MAX   47  /* bytes of a flag name */
#define FDN_FLAG_REASON_MAX 127 /* bytes of a stage change's reason */
#define FDN_FLAGS_MAX       128 /* flags per segment, the 7 built-ins included */
#define FDN_FLAGS_HISTORY   64  /* history records kept */
#define FDN_STAGE_MAX       4

/* Is the flag fully on?  Unknown names, and bad ones, are off. */
FDN_API bool fdn_flag_enabled(fdn_segment *s, const char *name);

/* Is the flag on for this id?  on iff XXH3(name, seed = id) % 100 < value:
 * deterministic per (flag, id) in every process and every segment, none at
 * 0, all at 100, about value % of ids, and an id on at p stays on at every
 * higher p.  Unknown names are off. */
FDN_API bool fdn_flag_enabled_for_id(fdn_segment *s, const char *name, uint64_t id);

/* The same for a string id (a user name, a tenant): key (klen bytes, any
 * bytes, 0..255) stands for the id XXH3-64(key), so the answer is
 * deterministic per (flag, key) everywhere and monotone in the value like
 * fdn_flag_enabled_for_id's.  Unknown flags, a NULL key with klen > 0 and
 * klen > 255 are off. */
FDN_API bool fdn_flag_enabled_for_key(fdn_segment *s, const char *name, const void *key,
				      size_t klen);

/* The value, 0..100; FDN_EUNKFLAG (unknown), FDN_EINVAL (bad name). */
FDN_API int fdn_flag_get(fdn_segment *s, const char *name);

/* Set a flag to value 0..100 (FDN_FLAG_OFF, FDN_FLAG_ON or a percentage).
 * FDN_EPERCENT (outside 0..100), FDN_EUNKFLAG, FDN_EINVAL, FDN_ERDONLY,
 * FDN_ETIMEDOUT.  Setting a flag to the value it has records nothing.  A
 * built-in flag set by hand leaves the stage number as it was (the stage
 * says which profile was last applied). */
FDN_API int fdn_flag_set(fdn_segment *s, const char *name, int value);

/* Create a user-defined flag with this value (also its default, which
 * fdn_flags_reset restores).  Names: 1..47 bytes of [A-Za-z0-9_.-],
 * starting with a letter.  FDN_EEXISTS, FDN_EINVAL (bad name),
 * FDN_EPERCENT, FDN_ENOSPACE (FDN_FLAGS_MAX flags exist). */
FDN_API int fdn_flag_create(fdn_segment *s, const char *name, int value);

/* Parse "on", "off", "N" or "N%" (N decimal): 0, FDN_EPERCENT (a number
 * outside 0..100), FDN_EINVAL (anything else). */
FDN_API int fdn_flag_parse_value(const char *text, int *value);

struct fdn_flag_info {
	char name[FDN_FLAG_NAME_MAX + 1];
	int value;           /* 0..100 */
	int default_value;   /* what fdn_flags_reset restores */
	bool builtin;        /* one of the seven migration flags */
	uint64_t changed_ns; /* CLOCK_REALTIME of the last change; 0 = never */
};

/* Up to cap flags, built-ins first, then user flags in creation order;
 * returns how many there are in all (may exceed cap), or an error. */
FDN_API int fdn_flags_list(fdn_segment *s, struct fdn_flag_info *out, int cap);

/* Every flag back to its default (the segment's creation defaults, user
 * flags to their creation value) and the stage to the one at creation.
 * Each flag that changes, and the stage, is recorded ("reset"). */
FDN_API int fdn_flags_reset(fdn_segment *s);

/* The current stage, 0..4, or an error. */
FDN_API int fdn_stage(fdn_segment *s);

/* Move from stage n - 1 to stage n (exactly one step forward) and apply
 * n's profile.  FDN_ESTAGE for any other n (skipping, staying, going back,
 * outside 0..4): nothing changes. */
FDN_API int fdn_stage_migrate(fdn_segment *s, int n);

/* Go back to any lower stage n and apply its full profile.  reason: up to
 * 127 bytes (NULL = ""), FDN_ETOOBIG beyond.  FDN_ESTAGE unless
 * 0 <= n < current stage: nothing changes. */
FDN_API int fdn_stage_rollback(fdn_segment *s, int n, const char *reason);

/* Every built-in flag off and stage 0, from any stage (also from 0, to
 * clear flags set by hand).  reason as above.  User flags are untouched.
 * Besides the stage change it records an alert (FDN_CHANGE_ALERT, type
 * "emergency_rollback") and emits `foundation.stage.alert` {alert_type,
 * reason, from, to} (when monitored, as below). */
FDN_API int fdn_stage_emergency_rollback(fdn_segment *s, const char *reason);

/* Is flag `name` on in stage n's profile?  (false for n outside 0..4 and
 * for names that are not built-in.) */
FDN_API bool fdn_stage_profile_has(int n, const char *name);

#define FDN_FLAGS_BUILTIN_COUNT 7 /* the migration's built-in flags */

/* The catalogue entry of a stage, for tools: static strings. */
struct fdn_stage_info {
	int stage;               /* 0..FDN_STAGE_MAX */
	const char *name;        /* a short name, e.g. "registry" */
	const char *description; /* one sentence: what moving to it does */
	const char *risk;        /* "none", "low", "medium" or "high" */
	const char *risk_note;   /* why, in one sentence */
	int nenables;            /* the built-in flags its profile turns on */
	const char *enables[FDN_FLAGS_BUILTIN_COUNT];
};

/* Stage n's catalogue entry.  FDN_ESTAGE for n outside 0..FDN_STAGE_MAX,
 * FDN_EINVAL for out NULL.  Needs no segment: the catalogue is the same
 * everywhere. */
FDN_API int fdn_stage_info(int n, struct fdn_stage_info *out);

/* ALERT: an emergency rollback's alert (flag: the alert type,
 * "emergency_rollback"; from, to: stages), recorded right after its stage
 * change. */
enum fdn_change_kind { FDN_CHANGE_FLAG = 1, FDN_CHANGE_STAGE = 2, FDN_CHANGE_ALERT = 3 };

#define FDN_FLAG_CREATED (-1) /* fdn_flag_change.from of a created flag */

/* One recorded change. */
struct fdn_flag_change {
	uint64_t number;  /* 0, 1, 2 ... for the segment's life */
	uint64_t time_ns; /* CLOCK_REALTIME */
	pid_t pid;        /* the process that made it */
	enum fdn_change_kind kind;
	char flag[FDN_FLAG_NAME_MAX + 1]; /* FLAG: its name; STAGE: ""; ALERT: type */
	int from, to;                     /* values, or stages; FDN_FLAG_CREATED */
	char reason[FDN_FLAG_REASON_MAX + 1];
};

/* The kept changes, oldest first (at most the last FDN_FLAGS_HISTORY, and
 * at most cap: the newest cap of them).  Returns how many were copied.
 * A record being overwritten while it is read is left out. */
FDN_API int fdn_flags_history(fdn_segment *s, struct fdn_flag_change *out, int cap);

/* Changes recorded in the segment's (or the process's) life. */
FDN_API uint64_t fdn_flags_history_total(fdn_segment *s);

#ifdef __cplusplus
}
#endif
#endif
