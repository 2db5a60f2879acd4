/*
 * shm/layout_svc.h - the segment's service regions, to the byte: span
 * stacks and error context, flags and stages, telemetry, the change log.
 * Part of the format document that shm/layout.h begins (its rules hold here:
 * a change to any size, offset or constant below changes the format, and
 * the layout signature in shm/format.c covers these structs too).  Included
 * by layout.h only.
 */
#ifndef FDN_SHM_LAYOUT_SVC_H
#define FDN_SHM_LAYOUT_SVC_H

/* ==== spans and error context (lib/trace.c) ================================
 *
 * A trace slot holds one thread's span stack and error context.  Writers:
 * the owning thread only, under the slot's sequence word (a seqlock: odd
 * while it writes, even when the slot is consistent); readers (inspect, the
 * reaper's copy) copy and retry while seq was odd or changed, a bounded
 * number of times.  A writer killed mid-write leaves seq odd for ever: the
 * reaper copies the slot anyway (its writer is dead) and marks the copy
 * FDN_TRACE_TORN; every length in it is clamped before use.
 *
 * owner: claim word of the owning process (fdn_shm_proc.word, state LIVE);
 *   0 = free.  0 -> W by one CAS (A, the thread's first span or context
 *   call); W -> 0 by the owner (thread exit, detach) or by R after the
 *   owner died and the slot was copied to the graveyard.  A claim's other
 *   fields are written after the CAS, under seq: a claimant dying between
 *   the two leaves a slot R still finds by its owner word.
 */
#define FDN_SPAN_DEPTH_MAX  128u
#define FDN_SPAN_NAME_MAX   127u
#define FDN_SPAN_ATTRS_MAX  192u  /* encoded attributes per span */
#define FDN_CTX_ID_MAX      63u   /* correlation and operation ids */
#define FDN_CTX_ATTRS_MAX   3840u /* encoded context map */
#define FDN_CRUMBS_MAX      16u   /* breadcrumbs kept (the newest) */
#define FDN_CRUMB_ATTRS_MAX 136u
#define FDN_GHOSTS_MAX      64u /* thread copies in the graveyard */

/* fdn_shm_span.status (and the public fdn_span_status) */
enum {
	FDN_SPAN_OPEN = 0,
	FDN_SPAN_OK = 1,
	FDN_SPAN_ERROR = 2,
	FDN_SPAN_ABORTED = 3, /* ended by a death (graveyard) or with_span */
};

/* One open span (384 bytes). */
struct fdn_shm_span {
	uint8_t trace_id[16];              /*   0: never all zero                     */
	uint64_t span_id;                  /*  16: random, never 0                    */
	uint64_t parent_id;                /*  24: 0 = root (or the remote parent)    */
	uint64_t start_ns;                 /*  32: CLOCK_MONOTONIC                    */
	uint64_t start_real;               /*  40: CLOCK_REALTIME ns                  */
	uint32_t status;                   /*  48: FDN_SPAN_*                         */
	uint16_t name_len;                 /*  52: <= FDN_SPAN_NAME_MAX               */
	uint16_t attrs_len;                /*  54: <= FDN_SPAN_ATTRS_MAX              */
	uint32_t nevents;                  /*  56: record_event calls on this span    */
	uint32_t nlinks;                   /*  60: link calls on this span            */
	char name[128];                    /*  64: name_len bytes, then NUL           */
	uint8_t attrs[FDN_SPAN_ATTRS_MAX]; /* 192: fdn_attrs encoding       */
};
static_assert(sizeof(struct fdn_shm_span) == 384, "span record");

/* One breadcrumb (256 bytes). */
struct fdn_shm_crumb {
	uint64_t time_real;                 /*   0: CLOCK_REALTIME ns     */
	char module[40];                    /*   8: NUL-terminated        */
	char function[64];                  /*  48: NUL-terminated        */
	uint16_t attrs_len;                 /* 112                        */
	uint8_t pad[6];                     /* 114                        */
	uint8_t attrs[FDN_CRUMB_ATTRS_MAX]; /* 120                        */
};
static_assert(sizeof(struct fdn_shm_crumb) == 256, "breadcrumb");

/* fdn_shm_trace.flags */
enum {
	FDN_TRACE_TORN = 1u << 0, /* a ghost copied while its writer was mid-write */
};

/* A trace slot (57 344 bytes); the graveyard's ghosts have the same form. */
struct fdn_shm_trace {
	_Atomic uint64_t seq;   /*     0: the seqlock                       */
	_Atomic uint64_t owner; /*     8: claim word of the owner; 0 = free */
	uint32_t proc_idx;      /*    16: the owner's process slot          */
	uint32_t tid;           /*    20: the owning thread (gettid)        */
	uint32_t depth;         /*    24: open spans, <= FDN_SPAN_DEPTH_MAX */
	uint32_t ncrumbs;       /*    28: breadcrumbs ever added (crumb k is
				   crumbs[k % FDN_CRUMBS_MAX])                */
	uint64_t claimed_real;  /*    32: CLOCK_REALTIME ns at the claim    */
	uint64_t died_real;     /*    40: ghosts: CLOCK_REALTIME of the copy */
	uint64_t died_mono;     /*    48: ghosts: CLOCK_MONOTONIC of the copy */
	uint32_t flags;         /*    56: FDN_TRACE_*                       */
	uint16_t corr_len;      /*    60: <= FDN_CTX_ID_MAX                 */
	uint16_t op_len;        /*    62: <= FDN_CTX_ID_MAX                 */
	uint32_t ctx_len;       /*    64: <= FDN_CTX_ATTRS_MAX              */
	uint32_t pid;           /*    68: the owner's pid                   */
	char corr[64];          /*    72: correlation id, NUL-terminated    */
	char op[64];            /*   136: operation id, NUL-terminated      */
	uint8_t pad[56];        /*   200: zero                              */
	struct fdn_shm_span spans[FDN_SPAN_DEPTH_MAX]; /*   256             */
	struct fdn_shm_crumb crumbs[FDN_CRUMBS_MAX];   /* 49408             */
	uint8_t ctx[FDN_CTX_ATTRS_MAX];                /* 53504: context    */
};
static_assert(sizeof(struct fdn_shm_trace) == 57344, "trace slot");
static_assert(offsetof(struct fdn_shm_trace, spans) == 256, "spans");
static_assert(offsetof(struct fdn_shm_trace, crumbs) == 49408, "crumbs");
static_assert(offsetof(struct fdn_shm_trace, ctx) == 53504, "context");

/* ==== flags and stages (lib/flags.c) =======================================
 * The region FDN_SVC_FLAGS and header.flags_hdr; formats below.
 *
 * Who writes what.  Every write to the flags service is made by the holder
 * of the flags lock (flags_hdr.lock), one writer at a time; readers take no
 * lock.  The seven built-in flags and the stage are packed into ONE word
 * (flags_hdr.builtin), so a reader gets all of them, and the stage they
 * belong to, with one load: a stage change or an emergency rollback is one
 * store, never seen half done.  User-defined flags have a value word each.
 *
 * A writer killed at any instruction.  The lock word is the holder's
 * process claim word (pid + identity, fdn_shm_proc.word): a writer that
 * finds it held checks with the kernel whether that process lives, and
 * takes a dead holder's lock over by CAS.  A change is first written in
 * full to the journal (every value it sets, every history record it
 * adds), then the journal is published (state PENDING, release), then
 * applied, then retired (state IDLE).  Applying stores absolute values at
 * fixed places, so it is idempotent: whoever takes a dead holder's lock and
 * finds the journal PENDING applies it again and retires it.  A journal
 * still being written (IDLE) was never applied and is ignored.
 */
#define FDN_FLAGS_REGION_SIZE 65536u
#define FDN_FLAG_SLOTS        128u /* flag slots, built-ins included */
#define FDN_FLAGS_BUILTIN     7u   /* slots 0..6, fixed (lib/flags.c) */
#define FDN_FLAG_NAME_BYTES   48u  /* name field, NUL included */
#define FDN_FLAG_REASON_BYTES 128u
#define FDN_FLAG_HISTORY_LEN  64u /* history records kept (a ring) */
#define FDN_STAGE_LAST        4u
#define FDN_FLAG_PCT_MAX      100u /* values: 0 = off .. 100 = on */

/* flags_hdr.builtin: built-in flag i's value (0..100) in bits 7i+6..7i,
 * i = 0..6; the stage (0..4) in bits 51..49; bits 63..52 zero. */
#define FDN_BUILTIN_BITS        7u
#define FDN_BUILTIN_VALUE(w, i) ((unsigned)(((w) >> (FDN_BUILTIN_BITS * (i))) & 0x7Fu))
#define FDN_BUILTIN_FIELD(i)    ((uint64_t)0x7Fu << (FDN_BUILTIN_BITS * (i))) /* its bits */
#define FDN_BUILTIN_STAGE_SHIFT 49u
#define FDN_BUILTIN_STAGE(w)    ((unsigned)(((w) >> FDN_BUILTIN_STAGE_SHIFT) & 0x7u))
#define FDN_BUILTIN_RESERVED(w) ((w) >> 52)

/* header.flags_hdr (256 bytes at header offset 2048). */
struct fdn_shm_flags_hdr {
	/* 0: the built-in values and the stage (above).  Written by the lock
	 * holder (release), read by A (acquire); C writes the defaults. */
	_Atomic uint64_t builtin;
	/* 8: the flags lock: claim word (fdn_shm_proc.word, state LIVE) of
	 * the process whose writer holds it; 0 = free.  0 -> W by CAS (A);
	 * W -> 0 by the holder; W -> W' by CAS (A) once the kernel says W's
	 * process is dead (its journal is then applied again). */
	_Atomic uint64_t lock;
	/* 16: history records completed; record k is history[k %
	 * FDN_FLAG_HISTORY_LEN].  Lock holder (release); A (acquire). */
	_Atomic uint64_t hist_total;
	/* 24: flag slots in use (FDN_FLAGS_BUILTIN..FDN_FLAG_SLOTS); a slot is
	 * written in full before nflags covers it (release).  Lock holder. */
	_Atomic uint32_t nflags;
	/* 28: the stage at creation (fdn_flags_reset restores it).  C. */
	uint32_t stage_default;
	/* 32: the built-in word at creation (the defaults).  C. */
	uint64_t builtin_default;
	uint64_t reserved[27]; /* 40: zero */
};
static_assert(sizeof(struct fdn_shm_flags_hdr) == 256, "flags header part");
static_assert(offsetof(struct fdn_shm_flags_hdr, lock) == 8, "flags lock");
static_assert(offsetof(struct fdn_shm_flags_hdr, hist_total) == 16, "flags history count");
static_assert(offsetof(struct fdn_shm_flags_hdr, builtin_default) == 32, "flags defaults");

/* A flag slot (64 bytes).  name and dflt are written before the slot is
 * published (nflags) and never change.  value: user flags only (0..100;
 * the built-ins' values live in flags_hdr.builtin, their slot's value
 * stays 0); lock holder (release), A (acquire).  changed_ns: CLOCK_REALTIME
 * of the last change, 0 = never; lock holder. */
struct fdn_shm_flag {
	_Atomic uint32_t value;         /*  0 */
	uint32_t dflt;                  /*  4: default value, 0..100      */
	_Atomic uint64_t changed_ns;    /*  8 */
	char name[FDN_FLAG_NAME_BYTES]; /* 16: NUL-terminated, NUL-padded */
};
static_assert(sizeof(struct fdn_shm_flag) == 64, "flag slot");

/* fdn_shm_flag_rec.kind */
/* ALERT: an alert about the stage (from, to: stages; flag: the alert
 * type, "emergency_rollback"), recorded after the stage record. */
enum { FDN_FLAGREC_FLAG = 1, FDN_FLAGREC_STAGE = 2, FDN_FLAGREC_ALERT = 3 };
#define FDN_FLAGREC_CREATED (-1) /* from: the change created the flag */

/* A history record (256 bytes): change number k (0-based) lives in
 * history[k % FDN_FLAG_HISTORY_LEN].  seq = 2k+1 while it is written, 2k+2
 * when complete (absolute values: a repeated write is idempotent), 0 =
 * never written.  Readers copy and keep the copy only if seq was 2k+2
 * before and after.  Lock holder only. */
struct fdn_shm_flag_rec {
	_Atomic uint64_t seq;               /*   0 */
	uint64_t time_ns;                   /*   8: CLOCK_REALTIME            */
	uint32_t pid;                       /*  16: the writer                */
	uint16_t kind;                      /*  20: FDN_FLAGREC_*             */
	uint16_t reserved0;                 /*  22 */
	int32_t from;                       /*  24: value, stage, or CREATED  */
	int32_t to;                         /*  28 */
	char flag[FDN_FLAG_NAME_BYTES];     /*  32: "" for a stage change     */
	char reason[FDN_FLAG_REASON_BYTES]; /*  80: NUL-terminated            */
	uint8_t pad[48];                    /* 208: zero                      */
};
static_assert(sizeof(struct fdn_shm_flag_rec) == 256, "flag history record");

/* One planned flag change of a journal (16 bytes). */
struct fdn_shm_flag_op {
	uint32_t flag; /* slot index */
	int32_t from;  /* previous value, or FDN_FLAGREC_CREATED */
	int32_t to;
	uint32_t reserved;
};

/* fdn_shm_flags_journal.state */
enum { FDN_JOURNAL_IDLE = 0, FDN_JOURNAL_PENDING = 1 };

/* The journal (2 240 bytes): the change being made, complete before it is
 * published.  Applying it: user flags' values (and nflags for a created
 * one), then `builtin` if has_builtin, then history records hist_base + k
 * for the ops in order and, if stage_to >= 0, one stage record, then (if
 * alert) one alert record, then hist_total.  Lock holder only. */
struct fdn_shm_flags_journal {
	_Atomic uint32_t state;                     /*    0: FDN_JOURNAL_*           */
	uint32_t nops;                              /*    4: <= FDN_FLAG_SLOTS        */
	uint64_t hist_base;                         /*    8 */
	uint64_t time_ns;                           /*   16 */
	uint32_t pid;                               /*   24 */
	int32_t stage_from;                         /*   28 */
	int32_t stage_to;                           /*   32: -1 = no stage record   */
	uint32_t has_builtin;                       /*   36 */
	uint64_t builtin;                           /*   40: the new built-in word  */
	char reason[FDN_FLAG_REASON_BYTES];         /*   48 */
	uint32_t alert;                             /*  176: 1 = emergency rollback */
	uint8_t pad[12];                            /*  180 */
	struct fdn_shm_flag_op ops[FDN_FLAG_SLOTS]; /* 192 */
};
static_assert(sizeof(struct fdn_shm_flags_journal) == 192 + 16 * FDN_FLAG_SLOTS, "journal");

/* The region FDN_SVC_FLAGS: slots, history, journal; the rest zero. */
struct fdn_shm_flags {
	struct fdn_shm_flag flags[FDN_FLAG_SLOTS];             /*     0 */
	struct fdn_shm_flag_rec history[FDN_FLAG_HISTORY_LEN]; /*  8192 */
	struct fdn_shm_flags_journal journal;                  /* 24576 */
};
static_assert(offsetof(struct fdn_shm_flags, history) == 8192, "flag history");
static_assert(offsetof(struct fdn_shm_flags, journal) == 24576, "flag journal");
static_assert(sizeof(struct fdn_shm_flags) <= FDN_FLAGS_REGION_SIZE, "flags region budget");
static_assert(FDN_FLAGS_BUILTIN * FDN_BUILTIN_BITS <= FDN_BUILTIN_STAGE_SHIFT, "built-in word");

/* ==== telemetry (lib/telemetry.c) ==========================================
 * The ring FDN_SVC_EVENTS (nevents records of FDN_EVENT_SIZE bytes), the
 * region FDN_SVC_TELEMETRY and header.telemetry_hdr; formats below. */
#define FDN_EVENT_SIZE            512u
#define FDN_TELEMETRY_REGION_SIZE (1u << 20)

/*
 * header.telemetry_hdr (512 bytes).  All zero at creation: an empty ring,
 * empty tables.
 *
 * ring_head: tickets issued; the event with ticket t goes to record
 *   t % nevents.  fetch_add by A (producers), read by readers.  64 bits:
 *   never wraps.
 * ring_lapped: events whose producer found its record already taken by a
 *   producer one lap ahead (it was stalled for a whole lap): they are lost
 *   at write time, and readers see the gap like an overwrite.  A.
 * nospace[k]: claims refused because table k (FDN_TEL_T_*) was full.  A.
 */
enum {
	FDN_TEL_T_SAMPLERS = 0,
	FDN_TEL_T_ONCE = 1,
	FDN_TEL_T_RATE = 2,
	FDN_TEL_T_BATCHES = 3,
	FDN_TEL_NTABLES = 4,
};

struct fdn_shm_tel_hdr {
	_Atomic uint64_t ring_head;                /*   0: own line            */
	uint8_t pad0[56];                          /*   8                      */
	_Atomic uint64_t ring_lapped;              /*  64                      */
	_Atomic uint64_t nospace[FDN_TEL_NTABLES]; /*  72                      */
	uint8_t reserved[512 - 104];               /* 104: zero                */
};
static_assert(sizeof(struct fdn_shm_tel_hdr) == 512, "telemetry header part");
static_assert(sizeof(((struct fdn_shm_header *)0)->telemetry_hdr) == 512, "its room");
static_assert(offsetof(struct fdn_shm_tel_hdr, ring_lapped) == 64, "ring_lapped");

/*
 * An event record in the ring (FDN_EVENT_SIZE bytes).
 *
 * seq (a per-record seqlock keyed by ticket): 0 never written; 2t + 1 while
 * the producer of ticket t writes it; 2t + 2 once complete.  A producer
 * with ticket t takes the record by CAS from any value < 2t + 1 (an older
 * lap, complete or abandoned by a killed producer); if it finds a value
 * >= 2t + 1 a producer one lap ahead owns it and the event is dropped
 * (ring_lapped).  It then writes every other field and publishes with a
 * CAS 2t + 1 -> 2t + 2 (release).
 * check: XXH3-64 of bytes [24, 64 + body_len) seeded with the ticket.  A
 *   producer stalled for a lap may still be writing when the next lap's
 *   producer has published: a reader accepts a record only if seq is
 *   2t + 2 before and after its copy, ticket is t and check matches.
 * body: the name (name_len bytes, no NUL), then nmeas measurements, each
 *   [u8 n][n name bytes][8 bytes: the double, little-endian], then the
 *   attributes (attrs_len bytes, lib/attrs.c encoding).  What does not fit
 *   is left out and flags has FDN_EVENT_TRUNCATED.
 */
#define FDN_EVENT_BODY        (FDN_EVENT_SIZE - 64u)
#define FDN_REC_NAME_MAX      127u /* the longest event name */
#define FDN_REC_MEAS_NAME_MAX 31u
#define FDN_REC_MEAS_MAX      32u /* measurements per event */

/* FDN_EVENT_SPAN: a span's start or stop event in compact binary form
 * (trace.c, span_rec): name_len, nmeas and attrs_len are 0 and the body
 * is
 *   0 u8 kind (1 start, 2 stop)    1 u8 status (stop: 1 ok, 2 error,
 *   2 u8 backend (0 shared, 1 local)       3 aborted; start: 0)
 *   3 u8 span name length (1..FDN_SPAN_NAME_MAX)
 *   4 u32 depth     8 trace id [16]     24 u64 span id     32 u64 parent id
 *   40 u64 duration_ns (stop; 0 at start)     48 the span's name
 * Readers (fdn_ring_next) expand it into the event the text form carries:
 * name foundation.span.start / .stop, measurements depth (and
 * duration_ns), attributes span, trace_id, span_id, parent_id, backend
 * (and status).  A reader that does not know the flag rejects the record
 * (name_len 0) and counts it lost: it never misreads it. */
#define FDN_SPAN_REC_HEAD 48u
/* FDN_EVENT_REG: a registry call's event (foundation.registry.register,
 * .lookup, .unregister, .update, .merge) in compact binary form
 * (lib/registry.c, fdn__reg_event); name_len, nmeas and attrs_len are 0
 * and the body is
 *   0 u8 call (1 register, 2 lookup, 3 unregister, 4 update, 5 merge)
 *   1 u8 backend (0 shared, 1 local)   2 u8 key length (0: no key)   3 u8 0
 *   4 i32 result (0, or a Foundation error)   8 u64 duration_ns
 *   16 the key (no NUL byte)
 * Readers expand it into the text form: measurement duration_ns,
 * attributes result ("ok" or the error's name), backend and key.  A
 * reader that does not know the flag rejects it, as for FDN_EVENT_SPAN. */
#define FDN_REG_REC_HEAD 16u
enum { FDN_EVENT_TRUNCATED = 1u << 0, FDN_EVENT_SPAN = 1u << 1, FDN_EVENT_REG = 1u << 2 };

struct fdn_shm_event {
	_Atomic uint64_t seq;         /*  0 */
	uint64_t ticket;              /*  8 */
	uint64_t check;               /* 16 */
	uint64_t real_ns;             /* 24: CLOCK_REALTIME                 */
	uint64_t mono_ns;             /* 32: CLOCK_MONOTONIC                */
	uint64_t pseq;                /* 40: the producing thread's count   */
	uint32_t pid;                 /* 48 */
	uint32_t tid;                 /* 52 */
	uint16_t body_len;            /* 56: <= FDN_EVENT_BODY              */
	uint8_t name_len;             /* 58: 1..FDN_REC_NAME_MAX          */
	uint8_t nmeas;                /* 59: <= FDN_REC_MEAS_MAX               */
	uint16_t attrs_len;           /* 60 */
	uint8_t flags;                /* 62: FDN_EVENT_*                    */
	uint8_t reserved;             /* 63 */
	uint8_t body[FDN_EVENT_BODY]; /* 64 */
};
static_assert(sizeof(struct fdn_shm_event) == FDN_EVENT_SIZE, "event record");
static_assert(offsetof(struct fdn_shm_event, real_ns) == 24, "event check start");
static_assert(offsetof(struct fdn_shm_event, body) == 64, "event body");

/*
 * The region FDN_SVC_TELEMETRY: four tables of named slots, each at a fixed
 * offset.  A slot is named by a 64-bit tag, the XXH3-64 (seed 0) of its
 * key bytes (0 is replaced by 1): free while tag == 0, claimed by one CAS
 * 0 -> tag and never freed.  A key's slot is found by linear probing from
 * tag % n, at most n probes; since a slot is never freed, the probe for a
 * key passes only claimed slots before reaching its slot or a free one,
 * and two slots never hold the same tag (a claimant that loses the CAS on
 * a free slot re-reads it before probing on).  Two keys with the same tag
 * would share a slot (probability ~ k^2 / 2^65 for k keys).  The display
 * name is written after the claim; it may be empty if the claimant died.
 * Every table full: FDN_ENOSPACE.
 */
#define FDN_TEL_SAMPLERS     1024u
#define FDN_TEL_ONCE         4096u
#define FDN_TEL_RATE         4096u
#define FDN_TEL_BATCHES      96u
#define FDN_BATCH_ITEMS_MAX  64u
#define FDN_TEL_OFF_SAMPLERS 0u
#define FDN_TEL_OFF_ONCE     262144u
#define FDN_TEL_OFF_RATE     524288u
#define FDN_TEL_OFF_BATCHES  786432u

/* Sampler kinds (fdn_shm_sampler.spec bits 63..56). */
enum {
	FDN_SAMPLE_ALWAYS = 0, /* also an unset slot: spec 0 */
	FDN_SAMPLE_NEVER = 1,
	FDN_SAMPLE_RANDOM = 2,       /* param: probability 0..1          */
	FDN_SAMPLE_RATE_LIMITED = 3, /* param: events per second, integer */
	FDN_SAMPLE_RESERVOIR = 4,    /* param: the first N, integer       */
	FDN_SAMPLE_ADAPTIVE = 5,     /* param: target sampled events / s  */
	FDN_SAMPLE_HANDLERS = 6,     /* every event, to handlers only: no ring record */
};
#define FDN_SPEC_KIND(w)  ((unsigned)((w) >> 56))
#define FDN_SPEC_GEN(w)   ((uint32_t)(((w) >> 32) & 0xFFFFFF))
#define FDN_SPEC_PARAM(w) ((uint32_t)(w)) /* IEEE binary32 bits */
#define FDN_SPEC_WORD(kind, gen, pbits) \
	(((uint64_t)(kind) << 56) | ((uint64_t)((gen)&0xFFFFFF) << 32) | (uint32_t)(pbits))

/*
 * A sampler (256 bytes), one per event name.  Writers A.
 * spec: kind | generation (bumped by every change) | parameter.
 * total, sampled: events that reached the sampler, and those it kept.
 * window: rate_limited and adaptive (one encoding, so a change of kind
 *   never misreads it): CLOCK_MONOTONIC second (bits 63..24) | events
 *   admitted (rate_limited) or seen (adaptive) in it (23..0).
 * reservoir: spec generation (63..40) | events counted (39..0).
 * prob: adaptive's current probability (double bits; 0 = not yet set: 1).
 */
struct fdn_shm_sampler {
	_Atomic uint64_t tag;       /*   0 */
	_Atomic uint64_t spec;      /*   8 */
	_Atomic uint64_t total;     /*  16 */
	_Atomic uint64_t sampled;   /*  24 */
	_Atomic uint64_t window;    /*  32 */
	_Atomic uint64_t reservoir; /*  40 */
	_Atomic uint64_t prob;      /*  48 */
	uint64_t reserved0;         /*  56 */
	char name[128];             /*  64: NUL-terminated; display only */
	uint64_t reserved1[8];      /* 192 */
};
static_assert(sizeof(struct fdn_shm_sampler) == 256, "sampler slot");

/*
 * A once-per claim (64 bytes), one per (event name, key) at a time: a slot
 * whose claim is older than its interval is reused by another pair
 * (lib/telemetry_once.c, once per).  Writers A.
 * last: CLOCK_MONOTONIC ms of the last emission + 1 (0 = never used);
 *   moved forward only by a CAS from a value at least interval_ms older;
 *   bit 63 set while the slot is being taken for another pair.
 * won, lost: calls that emitted, calls suppressed (since the pair took it).
 * lock: the holder (a process, fdn__batch_owner) placing a pair whose home
 *   is this slot; 0 free.
 * interval_ms: the interval of the last win (when the claim goes stale).
 */
struct fdn_shm_once {
	_Atomic uint64_t tag;         /*  0 */
	_Atomic uint64_t last;        /*  8 */
	_Atomic uint64_t won;         /* 16 */
	_Atomic uint64_t lost;        /* 24 */
	char name[24];                /* 32: event name (prefix), display only */
	_Atomic uint32_t lock;        /* 56 */
	_Atomic uint32_t interval_ms; /* 60 */
};
static_assert(sizeof(struct fdn_shm_once) == 64, "once slot");

/*
 * A rate limiter (64 bytes), one per (identifier, window_ms).  Writers A.
 * state: window number (CLOCK_MONOTONIC ms / window_ms, bits 63..24) |
 *   admissions in it (23..0); changed only by CAS.
 */
#define FDN_RATE_COUNT_MAX 0xFFFFFFu
struct fdn_shm_rate {
	_Atomic uint64_t tag;      /*  0 */
	_Atomic uint64_t state;    /*  8 */
	_Atomic uint64_t admitted; /* 16 */
	_Atomic uint64_t denied;   /* 24 */
	uint32_t window_ms;        /* 32: written at the claim (part of the key) */
	uint32_t reserved;         /* 36 */
	char name[24];             /* 40: identifier (prefix), display only */
};
static_assert(sizeof(struct fdn_shm_rate) == 64, "rate slot");

/*
 * A batch (2304 bytes), one per event name.  Writers A.
 * ctl: generation (63..40) | items reserved in it (39..32) | CLOCK_MONOTONIC
 *   ms, low 32 bits, of its first item (31..0).  An adder reserves item c
 *   of generation g by CAS (g, c, t) -> (g, c + 1, t); the adder whose CAS
 *   makes c + 1 == max_items, or any caller that finds the batch older than
 *   max_age_ms, closes it by CAS (g, c, t) -> (g + 1, 0, 0) and is the one
 *   process that emits generation g's summary.
 * cfg: max_items (31..0, 1..FDN_BATCH_ITEMS_MAX) | max_age_ms (63..32);
 *   0 = defaults.
 * items[g & 1][c]: bits (the value) and tag = generation (63..40) | state
 *   (39..32, FDN_BATCH_IT_*) | payload (31..0).  An adder of g claims the
 *   item by CAS from a free state of an older generation to RESERVED(g,
 *   its process: slot + 1 in bits 20..0, 11 bits of the slot's claim word
 *   in 31..21; 0 for process-local tables), writes bits, then CASes to
 *   WRITTEN(g, check of bits and g).  The one CAS that moves a WRITTEN tag
 *   to TAKEN puts the value in a summary; VOID(g): g's emitter stopped
 *   waiting for the adder, which adds again; LOST: the owner died while
 *   RESERVED (counted in missing).  lib/telemetry_batch.c argues it.
 */
#define FDN_BATCH_IT_FREE     0u
#define FDN_BATCH_IT_RESERVED 1u
#define FDN_BATCH_IT_WRITTEN  2u
#define FDN_BATCH_IT_TAKEN    3u
#define FDN_BATCH_IT_VOID     4u
#define FDN_BATCH_IT_LOST     5u
#define FDN_BATCH_IT_TAG(g, st, pl) \
	(((uint64_t)((g)&0xFFFFFFu) << 40) | ((uint64_t)((st)&0xFFu) << 32) | (uint32_t)(pl))
#define FDN_BATCH_IT_GEN(t)   ((uint32_t)((t) >> 40))
#define FDN_BATCH_IT_STATE(t) ((unsigned)((t) >> 32) & 0xFFu)

struct fdn_shm_batch_item {
	_Atomic uint64_t tag;
	_Atomic uint64_t bits;
};

struct fdn_shm_batch {
	_Atomic uint64_t tag;     /*   0 */
	_Atomic uint64_t ctl;     /*   8 */
	_Atomic uint64_t cfg;     /*  16 */
	_Atomic uint64_t added;   /*  24: items added, all generations */
	_Atomic uint64_t flushed; /*  32: summaries emitted */
	_Atomic uint64_t missing; /*  40: items whose adder died (LOST) */
	uint64_t reserved0[2];    /*  48 */
	char name[128];           /*  64: NUL-terminated; display only */
	uint64_t reserved1[8];    /* 192 */
	struct fdn_shm_batch_item items[2][FDN_BATCH_ITEMS_MAX]; /* 256 */
};
static_assert(sizeof(struct fdn_shm_batch) == 2304, "batch slot");
#define FDN_BATCH_GEN(w)   ((uint32_t)((w) >> 40))
#define FDN_BATCH_COUNT(w) ((uint32_t)(((w) >> 32) & 0xFF))
#define FDN_BATCH_T0(w)    ((uint32_t)(w))
#define FDN_BATCH_CTL(gen, count, t0) \
	(((uint64_t)((gen)&0xFFFFFF) << 40) | ((uint64_t)((count)&0xFF) << 32) | (uint32_t)(t0))

static_assert(FDN_TEL_OFF_SAMPLERS + FDN_TEL_SAMPLERS * 256u <= FDN_TEL_OFF_ONCE, "samplers");
static_assert(FDN_TEL_OFF_ONCE + FDN_TEL_ONCE * 64u <= FDN_TEL_OFF_RATE, "once");
static_assert(FDN_TEL_OFF_RATE + FDN_TEL_RATE * 64u <= FDN_TEL_OFF_BATCHES, "rate");
static_assert(FDN_TEL_OFF_BATCHES + FDN_TEL_BATCHES * 2304u <= FDN_TELEMETRY_REGION_SIZE,
	      "batches");

/* ==== the change log (shm/changes.c, lib/changefeed.c) ======================
 * The region FDN_SVC_CHANGES (nslots records of FDN_CHANGE_SIZE bytes,
 * nslots a power of two, 0 = no log) and header.chg_hdr.
 *
 * Revisions: every change of the registry's main table gets one, from
 * head (fetch_add; revision r = the value after the add, so the first is
 * 1).  Record r lives in slot (r - 1) & (nslots - 1), overwriting the
 * record one lap older.
 *
 * header.chg_hdr (128 bytes):
 *   head         revisions issued (A, fetch_add; own line)
 *   subscribers  subscriptions open (A, add / sub; display)
 *   overruns     reads that found their next record overwritten (A)
 *   lapped       records a writer could not write: its slot already held
 *                a record a lap newer (the writer was stalled a whole
 *                lap); readers see them as overwritten (A)
 *   stolen       revisions a reader voided because no writer claimed
 *                their slot in time (a writer killed between reserving
 *                and claiming, or stalled there; A, changes.c)
 *   nslots       slots (C only); 0 = no change log
 */
struct fdn_shm_chg_hdr {
	_Atomic uint64_t head;        /*   0 */
	uint8_t pad0[56];             /*   8 */
	_Atomic uint64_t subscribers; /*  64 */
	_Atomic uint64_t overruns;    /*  72 */
	_Atomic uint64_t lapped;      /*  80 */
	_Atomic uint64_t stolen;      /*  88 */
	uint32_t nslots;              /*  96 */
	uint32_t reserved0;           /* 100 */
	uint64_t reserved1[3];        /* 104 */
};
static_assert(sizeof(struct fdn_shm_chg_hdr) == 128, "change log header part");
static_assert(sizeof(((struct fdn_shm_header *)0)->chg_hdr) == 128, "its room");

/*
 * A change record (320 bytes).
 *
 * state: revision << 2 | FDN_CHG_*; 0 = never written.  A writer holding
 *   revision r claims the slot by CAS from any word whose revision is < r
 *   to (r, PENDING), then writes every other field, then -- after its
 *   table CAS -- moves it by CAS to (r, DONE) if the change took effect or
 *   (r, VOID) if not.  A reader that waits too long for an unclaimed slot
 *   may claim it (r, VOID) itself ("steal"); the writer then finds its
 *   revision void and reserves another.  Readers copy a DONE record and
 *   accept it if state is the same before and after the copy.
 * kind: FDN_CHANGE_* of foundation/changes.h.  death: the graveyard
 *   number + 1 of the owner's death for a removal by the reaper, 0 none.
 * writer: reader-slot index + 1 of the writer (display).
 */
#define FDN_CHANGE_SIZE       320u
#define FDN_CHANGE_KEY_MAX    255u
#define FDN_CHANGES_DEFAULT   16384u
#define FDN_MIN_CHANGES       16u
#define FDN_MAX_CHANGES       (1u << 24)
#define FDN_CHG_PENDING       1u
#define FDN_CHG_DONE          2u
#define FDN_CHG_VOID          3u
#define FDN_CHG_WORD(rev, st) (((uint64_t)(rev) << 2) | (st))
#define FDN_CHG_REV(w)        ((w) >> 2)
#define FDN_CHG_STATE(w)      ((unsigned)((w)&3u))

struct fdn_shm_change {
	_Atomic uint64_t state;                    /*   0 */
	uint64_t time_ns;                          /*   8: CLOCK_REALTIME */
	uint64_t death;                            /*  16 */
	uint32_t pid;                              /*  24 */
	uint16_t key_len;                          /*  28: <= FDN_CHANGE_KEY_MAX */
	uint8_t kind;                              /*  30 */
	uint8_t reserved0;                         /*  31 */
	uint32_t writer;                           /*  32 */
	uint32_t reserved1;                        /*  36 */
	unsigned char key[FDN_CHANGE_KEY_MAX + 1]; /* 40 */
	uint8_t pad[FDN_CHANGE_SIZE - 296];        /* 296 */
};
static_assert(sizeof(struct fdn_shm_change) == FDN_CHANGE_SIZE, "change record");
static_assert(offsetof(struct fdn_shm_change, key) == 40, "change key");

#endif
