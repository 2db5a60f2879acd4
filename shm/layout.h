/*
 * shm/layout.h - the shared segment, to the byte.
 *
 * This file is the format.  Every struct here lives in shared memory, is
 * mapped by processes that may have been built separately, and must be read
 * the same way by all of them.  Changing any size, offset, constant or state
 * encoding below changes the format: bump FDN_ABI_MAJOR (the layout
 * signature computed in segment.c catches what is forgotten).  The one
 * exception is a field placed in reserved bytes whose zero means "as
 * before": FDN_ABI_MINOR says how.
 *
 * Rules that hold for every byte of the segment:
 *   - No pointer is ever stored.  Blocks are named by granule index (gidx,
 *     the block's byte offset in the heap divided by 64), process slots and
 *     reader slots by index.  Every index read from the segment is
 *     bounds-checked before use; every loop over shared data is bounded by a
 *     capacity from the validated header.
 *   - Every shared mutation is prepared privately and published by one
 *     atomic store or CAS, so a process killed at any instruction leaves
 *     every structure valid (see ht.c and reclaim.c for the argument).
 *   - Atomic fields are C11 _Atomic of lock-free width (32/64 bit), which are
 *     address-free and therefore valid across processes.
 *
 * Segment map (all region offsets are multiples of 4096 and recorded in the
 * header's region table; capacities below come from the header):
 *
 *   0            header                         4096 bytes
 *   PROCS        nprocs   x struct fdn_shm_proc      64 bytes each
 *   TSLOTS       nthreads x struct fdn_shm_tslot   2048 bytes each
 *   BUCKETS      for each table, nbuckets x 8-byte link words
 *   PAGES        npages   x struct fdn_shm_page       8 bytes each
 *   BSTATE       npages x 1024 x 8-byte block state words (one per granule)
 *   HEAP         npages x 64 KiB
 *
 * Writers / readers legend used below:  C = creator (before init_state is
 * READY, nobody else looks), A = any attached process, O = the owner of the
 * slot, R = the process reclaiming a dead owner (the reaper).
 */
#ifndef FDN_SHM_LAYOUT_H
#define FDN_SHM_LAYOUT_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

#define FDN_MAGIC     0x314D48534E444E46ull /* "FNDNSHM1" little-endian */
#define FDN_ABI_MAJOR 6
/* Minor versions: fields placed in bytes that were reserved (zero) in
 * every earlier minor, where zero means the earlier behaviour, so that
 * builds of any minor of one major share a segment (attach checks the
 * major and the layout signature only; the signature leaves these fields
 * out, their offsets are pinned by static_asserts below).  Each minor
 * lists what it added.  Major 3 brought the 24-byte node
 * header and the 20-byte registry record, and the reaper-start fields at
 * header bytes 1760..1791 (reaper_stop, reaper_launches, reaper_launch_ns,
 * reaper_note, reaper_note_ns).  Major 4 (none added yet) brought the
 * change log (FDN_SVC_CHANGES, header.chg_hdr, fdn_shm_tslot.chg): a build
 * without it would change the registry without writing its records, so
 * subscribers would miss changes silently -- a major, not a minor; and
 * header.gp_fenced (byte 272): grace periods whose barrier was issued are
 * finished by any poller without another membarrier.  Major 5 (none added
 * yet) brought levelled prefixes (header.prefix_levels, stored prefixes
 * [1]P and [2]P): a build without them would look for a reference only
 * under its value's first level and miss the others.  Minor 5.1 brought
 * spill chunks (fdn_shm_tslot.spill .. spill_dead, struct fdn_shm_spill):
 * zero means "no chunk", as before; a 5.0 build that reclaims a dead 5.1
 * thread's slot frees its ring but not its chunks (a leak the checker
 * reports, never a block freed early).  Major 6 (none added yet) brought
 * fdn_shm_proc.uncounted: a process whose entries are all its own and
 * counted removes a group's owner reference without walking the group
 * once it holds no entry at all; a build that writes an entry for another
 * owner without marking it would make that owner remove a reference its
 * entry needs.  Minor 6.1 brought header.gp_help_ns: the writers of all
 * processes share one limit on the grace periods their help starts; a
 * 6.0 build ignores the field and limits its own help per process, as
 * before (a rate, never a grace period's correctness).  Minor 6.2 brought
 * the sampler kind FDN_SAMPLE_HANDLERS (layout_svc.h), a new segment's
 * for foundation.span.start and .stop: a 6.1 build reads an unknown kind
 * as `always` (its span events go to the ring, as before) and its check
 * reports the spec invalid. */
#define FDN_ABI_MINOR 2

/* header.reaper_stop */
#define FDN_REAPER_STOP_OPERATOR 1u /* `foundation-ctl reaper stop` */
/* The least time between two launches of a reaper for one segment. */
#define FDN_REAPER_LAUNCH_GAP_NS 1000000000ull

#define FDN_HEADER_SIZE        4096u
#define FDN_CACHELINE          64u
#define FDN_GRANULE            64u    /* heap allocation unit; gidx = offset / 64 */
#define FDN_PAGE_SIZE          65536u /* heap page: all blocks of one size class */
#define FDN_PAGE_GRANULES      1024u
#define FDN_NCLASSES           8u /* block sizes 64 << c, c = 0..7 (64..8192) */
#define FDN_MAX_TABLES         16u
#define FDN_TABLE_NAME_MAX     24u
#define FDN_LIMBO_MAX          108u  /* deferred frees a reader slot may hold */
#define FDN_SPILL_BYTES        2048u /* a spill chunk's block (a full limbo ring) */
#define FDN_SPILL_MAX          256u  /* spill chunks a reader slot may hold, at most */
#define FDN_SPILL_MIN_PAGES    256u  /* heap pages (16 MiB) below which nobody spills */
#define FDN_NREGIONS           8u
#define FDN_PREFIX_SPREAD      32u    /* chains per prefix, power of two */
#define FDN_PREFIX_SPREAD_WIDE 1024u  /* for prefixes whose first byte is 0 or 1 */
#define FDN_PREFIX_SPREAD_MAX  32768u /* for prefixes whose first byte is 2 */
#define FDN_PREFIX_LEVELS      4096u  /* header.prefix_levels: 2 bits each */
#define FDN_MAX_INDEXED        8u     /* indexed registry attributes */
#define FDN_INDEXED_NAME_MAX   32u
#define FDN_GRAVEYARD_MAX      256u /* deaths remembered */
#define FDN_NSVC_REGIONS       8u   /* service regions (enum fdn_svc_region) */

/* Capacity limits (checked at create and at attach). */
#define FDN_MAX_PROCS   (1u << 20)
#define FDN_MAX_THREADS (1u << 20) /* < 2^24: a marker id must fit 24 bits */
#define FDN_MAX_PAGES   (1u << 22) /* 256 GiB of heap: gidx fits 32 bits */
#define FDN_MAX_TRACE   (1u << 16) /* trace slots */
#define FDN_MAX_EVENTS  (1u << 24) /* telemetry ring records */
#define FDN_MAX_BUCKETS (1ull << 32)

enum fdn_region {
	FDN_REGION_PROCS = 0,
	FDN_REGION_TSLOTS = 1,
	FDN_REGION_BUCKETS = 2,
	FDN_REGION_PAGES = 3,
	FDN_REGION_BSTATE = 4,
	FDN_REGION_HEAP = 5,
	FDN_REGION_GRAVEYARD = 6, /* FDN_GRAVEYARD_MAX x struct fdn_shm_death;
				     right after the heap, larger than the
				     largest node: a node read with damaged
				     lengths never leaves the mapping */
				  /* 7: reserved, zero */
};

/*
 * The services' regions (header.svc[], placed after the graveyard, each
 * page-aligned, in this order).  Their formats are at the end of this file,
 * one section per service; a service may use nothing of the segment but its
 * own regions and its own part of the header tail.
 */
enum fdn_svc_region {
	FDN_SVC_TRACE = 0,     /* ntrace x struct fdn_shm_trace: span stacks and
				  error contexts, one slot per thread */
	FDN_SVC_GHOSTS = 1,    /* FDN_GHOSTS_MAX x struct fdn_shm_trace: copies of
				  dead threads' slots (the graveyard's spans) */
	FDN_SVC_FLAGS = 2,     /* FDN_FLAGS_REGION_SIZE bytes: flags, stages */
	FDN_SVC_EVENTS = 3,    /* nevents x FDN_EVENT_SIZE: the telemetry ring */
	FDN_SVC_TELEMETRY = 4, /* FDN_TELEMETRY_REGION_SIZE bytes: samplers,
				  dedup claims, batches, rate limiters */
	FDN_SVC_CHANGES = 5,   /* nchanges x struct fdn_shm_change: the change
				  log (size 0, offset 0: no change log) */
	FDN_NSVC = 6,          /* 6..7: reserved, zero */
};

/* header.init_state */
enum {
	FDN_INIT_EMPTY = 0, /* file zero-filled, creator not started writing */
	FDN_INIT_BUSY = 1,  /* creator is writing the header and regions */
	FDN_INIT_READY = 2, /* published last, with a release store */
};

struct fdn_shm_region {
	uint64_t off;  /* byte offset from the start of the segment */
	uint64_t size; /* bytes */
};

/*
 * A table descriptor (64 bytes).  Written by C only; read by A.
 */
/* fdn_shm_table.flags */
enum {
	/* Keys are [u8 n][n prefix bytes][rest]; the hash is
	 * XXH3(prefix) ^ (XXH3(rest) mod FDN_PREFIX_SPREAD), so the keys of one
	 * prefix lie in FDN_PREFIX_SPREAD chains, found without knowing the
	 * rest (secondary indexes: all entries of one attribute value are
	 * found by walking those chains), and an insert walks 1/SPREAD of
	 * them even when many entries share the value.  A prefix whose first
	 * byte is 0 (the registry's owner references: many per prefix, walked
	 * only when the owner dies) spreads over FDN_PREFIX_SPREAD_WIDE.
	 * A prefix whose first byte is 1 or 2 is a levelled one (below,
	 * header.prefix_levels): its keys spread over FDN_PREFIX_SPREAD_WIDE
	 * resp. FDN_PREFIX_SPREAD_MAX chains. */
	FDN_TABLE_PREFIX_HASH = 1u << 0,
};

struct fdn_shm_table {
	char name[FDN_TABLE_NAME_MAX]; /*  0: NUL-padded; "" = unused slot     */
	uint64_t nbuckets;             /* 24: power of two, >= 2                */
	uint64_t buckets_off;          /* 32: offset of its link-word array     */
	uint32_t id;                   /* 40: index of this descriptor          */
	uint32_t flags;                /* 44: FDN_TABLE_*                       */
	uint64_t reserved1[2];         /* 48: zero                              */
};
static_assert(sizeof(struct fdn_shm_table) == 64, "table descriptor");

/*
 * The header (4096 bytes at offset 0).  Every field but gp_ctr and the
 * allocation hint is written by C before init_state becomes READY and never
 * again; attach validates all of them (segment.c).
 */
struct fdn_shm_header {
	uint64_t magic;                              /*    0: FDN_MAGIC                       */
	uint16_t abi_major;                          /*    8: FDN_ABI_MAJOR                   */
	uint16_t abi_minor;                          /*   10: FDN_ABI_MINOR                   */
	uint32_t header_size;                        /*   12: FDN_HEADER_SIZE                 */
	uint64_t layout_sig;                         /*   16: fdn__layout_signature()         */
	uint64_t total_size;                         /*   24: bytes; = file size              */
	_Atomic uint32_t init_state;                 /*   32: FDN_INIT_*; READY stored last   */
	uint32_t mode;                               /*   36: st_mode bits used at creation   */
	uint64_t hash_seed;                          /*   40: XXH3 seed, from getrandom       */
	uint64_t created_ns;                         /*   48: CLOCK_REALTIME ns               */
	uint32_t creator_pid;                        /*   56                                  */
	uint32_t creator_uid;                        /*   60                                  */
	uint64_t creator_ident;                      /*   64: see fdn_shm_proc.ident          */
	uint64_t cap_entries;                        /*   72: sizing hint given at creation   */
	uint32_t nprocs;                             /*   80: process-table slots             */
	uint32_t nthreads;                           /*   84: reader slots                    */
	uint32_t npages;                             /*   88: heap pages                      */
	uint32_t ntables;                            /*   92: descriptors in use (1..16)      */
	uint32_t page_size;                          /*   96: FDN_PAGE_SIZE                   */
	uint32_t granule;                            /*  100: FDN_GRANULE                     */
	uint32_t nclasses;                           /*  104: FDN_NCLASSES                    */
	uint32_t limbo_max;                          /*  108: FDN_LIMBO_MAX                   */
	uint64_t pidns_ino;                          /*  112: creator's PID namespace (inode  */
	uint64_t pidns_dev;                          /*  120:   and device of /proc/self/ns/pid;
							    0 = unknown)                      */
	struct fdn_shm_region regions[FDN_NREGIONS]; /* 128: see enum fdn_region */
	/* 256: own cache line.  Grace-period counter, starts at 1, only ever
	 * incremented (fetch_add) by A when it starts a grace period; read by
	 * readers at read-lock.  64 bits: never wraps.
	 * gp_done: the newest grace period known complete (every section that
	 * began before its fetch_add has ended); only grows, by CAS (A).  A
	 * block retired when gp_ctr read e may be freed once gp_done > e. */
	alignas(64) _Atomic uint64_t gp_ctr;
	_Atomic uint64_t gp_done;
	/* 272: gp_fenced: the newest grace period g whose master barrier
	 * (membarrier) has been issued; only grows, by CAS (A), after that
	 * barrier returned.  A poller needing g may finish g by looking at
	 * the reader slots again without a barrier of its own (shm/rcu.c).
	 * 0: none yet. */
	_Atomic uint64_t gp_fenced;
	/* 280 (minor 6.1): gp_help_ns: CLOCK_MONOTONIC when a writer's help
	 * last started a grace period, in any process; set by CAS (A).  Only
	 * a rate limit (shm/rcu.c, gp_poll): no grace period's correctness
	 * depends on it.  0: none yet. */
	_Atomic uint64_t gp_help_ns;
	uint8_t pad_gp[32];
	/* 320: own cache line.  Allocation hint: the next never-used heap page
	 * to try.  Written by A with CAS, may be stale: only a hint.
	 * tslot_hwm: reader slots [0, tslot_hwm) have ever been claimed; a
	 * grace period looks at those only.  Only grows (CAS max, A), before
	 * the claim CAS of the slot it covers. */
	alignas(64) _Atomic uint32_t fresh_page_hint;
	_Atomic uint32_t tslot_hwm;
	uint8_t pad_hint[56];
	/* 384 */
	struct fdn_shm_table tables[FDN_MAX_TABLES];
	/* 1408: indexed attribute names of the registry, NUL-padded, "" =
	 * unused.  C only. */
	char indexed[FDN_MAX_INDEXED][FDN_INDEXED_NAME_MAX];
	/* 1664: own line.  Change notification for watchers (a shared futex):
	 * `watchers` is a flag, 1 while some thread may be waiting; a writer
	 * that finds it set after a table mutation or a death clears it,
	 * increments `changes` and wakes its futex.  A waiter reads changes,
	 * sets the flag, checks its condition, then waits on changes (seq_cst
	 * on both sides; shm/notify.c argues it). */
	alignas(64) _Atomic uint32_t changes;
	_Atomic uint32_t watchers;
	uint8_t pad_watch[56];
	/* 1728: own line.  The reaper.
	 * lease: claim word (layout of fdn_shm_proc.word) of the process that
	 *   reaps; 0 = none.  Taken by CAS from 0, or from a holder the kernel
	 *   says is dead.  Written by A (taking), R (releasing).
	 * doorbell: futex word, incremented (and woken) by every process-slot
	 *   claim, so the reaper learns of a new process at once.
	 * deaths: processes reaped so far; graveyard_head: records written (the
	 *   record of death k is graveyard[k % FDN_GRAVEYARD_MAX]).  R only. */
	alignas(64) _Atomic uint64_t reaper_lease;
	_Atomic uint32_t doorbell;
	_Atomic uint32_t destroyed; /* 1: destroyed (A, destroy, before the unlink);
				       every handle's writes then fail FDN_ESTALE
				       and the reaper exits */
	_Atomic uint64_t deaths;
	_Atomic uint64_t graveyard_head;
	/* 1760: starting reapers (ABI minor 1; zero in a minor-0 segment,
	 * which means what it meant there: no stop, no launch, no note).
	 * reaper_stop: FDN_REAPER_STOP_* bits.  STOP is set by `foundation-ctl
	 *   reaper stop` (fdn_reaper_stop) and cleared by `reaper start`
	 *   (fdn_reaper_start) only: while it is set no autostart, no
	 *   writer's restart launches a reaper, and a running reaper (not a
	 *   standby) releases the lease and exits.  A, any time.
	 * reaper_launches: reapers launched by the library, ever (A,
	 *   fetch_add; a count for stats and tests).
	 * reaper_launch_ns: CLOCK_MONOTONIC of the newest launch not yet
	 *   arrived.  A process launches only after moving it by CAS from 0 or
	 *   from a value at least FDN_REAPER_LAUNCH_GAP_NS old, so however many
	 *   processes attach, or notice a dead reaper, at once, one launch per
	 *   gap is made (A); the reaper that takes the lease sets it back to 0
	 *   (after the lease CAS), so that its own death is answered at once.
	 * reaper_note: the outcome of the newest launch attempt, one word so
	 *   that it is read whole: bits 63..32 the negated error (0: the
	 *   program was started), bits 31..0 the pid that tried.  0 = none
	 *   yet.  reaper_note_ns: CLOCK_REALTIME of it, stored just before
	 *   the note (two attempts at once may pair one's time with the
	 *   other's note: the time is a hint).  A. */
	_Atomic uint32_t reaper_stop;
	_Atomic uint32_t reaper_launches;
	_Atomic uint64_t reaper_launch_ns;
	_Atomic uint64_t reaper_note;
	_Atomic uint64_t reaper_note_ns;
	/* 1792: the services' capacities, C only.
	 * ntrace: trace slots (threads holding span stacks or error contexts
	 *   at once); nevents: records in the telemetry ring (a power of two). */
	uint32_t ntrace;
	uint32_t nevents;
	uint64_t reserved_s0[7];
	/* 1856: the services' regions (enum fdn_svc_region), C only. */
	struct fdn_shm_region svc[FDN_NSVC_REGIONS];
	/* 1984: own line.  The graveyard's thread copies: ghost_head counts
	 * copies written (copy k is ghosts[k % FDN_GHOSTS_MAX]); R only.
	 * trace_hint: where the next trace-slot claim starts looking; A, CAS,
	 * only a hint. */
	alignas(64) _Atomic uint64_t ghost_head;
	_Atomic uint32_t trace_hint;
	uint8_t pad_trace[52];
	/* 2048: the flags service's part (its struct, end of this file). */
	uint8_t flags_hdr[256];
	/* 2304: the telemetry service's part (its struct, end of this file). */
	uint8_t telemetry_hdr[512];
	/* 2816: the change log's part (struct fdn_shm_chg_hdr, layout_svc.h). */
	uint8_t chg_hdr[128];
	/* 2944 .. 3071: reserved, zero. */
	uint8_t reserved_tail[128];
	/* 3072: prefix levels (major 5), A, monotone.  FDN_PREFIX_LEVELS
	 * fields of 2 bits, 32 to a word; the field of a prefix P of a
	 * FDN_TABLE_PREFIX_HASH table is number XXH3(P) >> 52 (the segment's
	 * seed).  Level l (0..2): keys of P are written under the stored prefix
	 * P (l = 0) or [l]P (l = 1, 2), whose keys spread over 32, 1 024 resp.
	 * 32 768 chains, so a value shared by very many entries does not make
	 * long chains.  Raised by a writer whose insert under the current
	 * level passed more than a number of nodes in its chain (a CAS that
	 * only raises; the number is the writer's policy, not the format:
	 * lib/registry_index.c, RAISE_STEPS); never lowered.  A key of P may
	 * lie under any level up to the field's: readers look under every one
	 * (lib/registry_index.c).  Prefixes whose fields collide share the
	 * higher level: it costs walks more chains, never a wrong answer. */
	_Atomic uint64_t prefix_levels[FDN_PREFIX_LEVELS / 32];
};
static_assert(sizeof(struct fdn_shm_header) == FDN_HEADER_SIZE, "header size");
static_assert(offsetof(struct fdn_shm_header, init_state) == 32, "init_state");
static_assert(offsetof(struct fdn_shm_header, regions) == 128, "regions");
static_assert(offsetof(struct fdn_shm_header, gp_ctr) == 256, "gp_ctr");
static_assert(offsetof(struct fdn_shm_header, gp_fenced) == 272, "gp_fenced");
static_assert(offsetof(struct fdn_shm_header, gp_help_ns) == 280, "gp_help_ns");
static_assert(offsetof(struct fdn_shm_header, fresh_page_hint) == 320, "hint");
static_assert(offsetof(struct fdn_shm_header, tables) == 384, "tables");
static_assert(offsetof(struct fdn_shm_header, indexed) == 1408, "indexed");
static_assert(offsetof(struct fdn_shm_header, changes) == 1664, "changes");
static_assert(offsetof(struct fdn_shm_header, reaper_lease) == 1728, "reaper");
static_assert(offsetof(struct fdn_shm_header, reaper_stop) == 1760, "reaper control");
static_assert(offsetof(struct fdn_shm_header, reaper_note_ns) == 1784, "reaper note");
static_assert(offsetof(struct fdn_shm_header, ntrace) == 1792, "services");
static_assert(offsetof(struct fdn_shm_header, svc) == 1856, "service regions");
static_assert(offsetof(struct fdn_shm_header, ghost_head) == 1984, "ghosts");
static_assert(offsetof(struct fdn_shm_header, flags_hdr) == 2048, "flags part");
static_assert(offsetof(struct fdn_shm_header, telemetry_hdr) == 2304, "telemetry part");
static_assert(offsetof(struct fdn_shm_header, chg_hdr) == 2816, "change log part");
static_assert(offsetof(struct fdn_shm_header, prefix_levels) == 3072, "prefix levels");

/*
 * A process-table slot (64 bytes).
 *
 * word (the claim word; bits):
 *   63..62  state: 0 FREE (and the whole word is 0), 1 LIVE, 2 DEAD
 *   61..40  pid (pid_max is at most 2^22)
 *   39..0   identity tag: bit 39 the identity's kind (0 pidfs inode,
 *           1 start time), bits 38..0 the low 39 bits of the identity
 * FREE -> LIVE by one CAS (A, claiming for itself or for a child pid): the
 * claim carries pid and identity at once, so a slot never exists whose
 * process cannot be identified, whatever instruction the claimant dies at.
 * LIVE -> DEAD by R once the process is known dead; DEAD -> 0 by R after
 * everything the process owned is reclaimed (reclaim.c); LIVE -> 0 by O at
 * detach, or LIVE -> LEFT (3) by O at detach while a reaper runs, which
 * then removes what it owned like a death's, without recording a death.
 *
 * uncounted: the claim word W of an owner that has entries its own process
 * does not count (lib/registry_int.h, "counted entries"): W is stored (CAS,
 * seq_cst) by any process before it writes an entry for an owner W other
 * than itself, and by a process that adopts its slot (after an exec, or
 * held for it by another).  Never cleared: a value naming an earlier owner
 * of the slot names nobody now (or the same process claiming again, which
 * then only walks groups as every process did before).  A writer stores W
 * only while the slot's word is W (it looks again after each failed CAS),
 * so a late writer for an earlier owner never overwrites the mark of the
 * slot's current one.
 *
 * ident: the full identity, a value the kernel never reuses for another
 * process: the pidfs inode number of a pidfd (kernels with pidfs), else the
 * process start time in clock ticks since boot (/proc/PID/stat field 22).
 * ident_kind says which (the tag in `word` says it too, so the word alone
 * identifies the process).  Written by the claimant after the claim.
 */
#define FDN_PROC_FREE 0u
#define FDN_PROC_LIVE 1u
#define FDN_PROC_DEAD 2u
#define FDN_PROC_LEFT 3u /* detached while a reaper runs: clean up, no death */
/* DEAD or LEFT: awaiting the reaper, its entries already invisible. */
#define FDN_PROC_GONE(w)    (FDN_PROC_STATE(w) >= FDN_PROC_DEAD)
#define FDN_PROC_STATE(w)   ((unsigned)((w) >> 62))
#define FDN_PROC_PID(w)     ((uint32_t)(((w) >> 40) & 0x3FFFFFu))
#define FDN_PROC_IDENT40(w) ((w)&0xFFFFFFFFFFull)
#define FDN_PROC_WORD(st, pid, ident) \
	(((uint64_t)(st) << 62) | ((uint64_t)((pid)&0x3FFFFF) << 40) | ((ident)&0xFFFFFFFFFFull))

enum { FDN_IDENT_NONE = 0, FDN_IDENT_PIDFS = 1, FDN_IDENT_STARTTIME = 2 };
#define FDN_IDENT_TAG_STARTTIME (1ull << 39)
#define FDN_IDENT_TAG_VALUE     ((1ull << 39) - 1)

struct fdn_shm_proc {
	_Atomic uint64_t word;        /*  0: claim word, above                  */
	_Atomic uint64_t ident;       /*  8: full identity (O after claim)      */
	_Atomic uint32_t ident_kind;  /* 16: FDN_IDENT_*                     */
	_Atomic uint32_t uid;         /* 20: (O after claim)                    */
	_Atomic uint64_t attach_ns;   /* 24: CLOCK_REALTIME (O after claim)   */
	_Atomic uint32_t claimer_pid; /* 32: pid that made the claim (written
					 last by the claimant; 0 in a free
					 slot; UINT32_MAX while released) */
	uint32_t reserved0;           /* 36 */
	_Atomic uint64_t rel_word;    /* 40: the release this process is
					 making (O; proc.c): claim word of
					 the slot, then rel_name */
	_Atomic uint64_t rel_name;    /* 48: c << 32 | phase << 28 | idx + 1,
					 0: none (zero in a new claim) */
	_Atomic uint64_t uncounted;   /* 56: a claim word: that owner has entries
					 its own process did not count (A; below) */
};
static_assert(sizeof(struct fdn_shm_proc) == 64, "proc slot");

/*
 * A reader slot (2048 bytes): one per thread that uses the segment.  Line 0
 * is the only line read by other processes' grace periods.
 *
 * state (bits): 63..56 kind (0 FREE - whole word 0, 1 USED, 2 RETIRED),
 * 55..33 zero, 32 FDN_TSLOT_LIGHT, 31..0 owner process-slot index.  FREE -> USED by CAS (O's
 * thread, or R adopting a RETIRED slot); USED -> 0 by O (thread exit,
 * detach) or by R (owner dead), with its limbo empty; USED -> RETIRED by O
 * when its thread leaves with blocks still waiting for a grace period (a
 * thread never waits long for one): R adopts the slot and frees them.
 * Claims take the lowest FREE slot, so grace periods look at few.
 *
 * ctr: the RCU read-side word.  0 = quiescent; otherwise the value of
 * header.gp_ctr read when the outermost read-side section began.  Written by
 * O (and zeroed by R when O is dead); read by every grace period.
 * FDN_TSLOT_LIGHT (state bit 32): the owning process's readers use only a
 * compiler barrier (membarrier-registered, rcu.c): a process that cannot
 * issue the membarrier never completes a grace period while such a slot is
 * in use.  Part of the claim CAS, so no section of the slot precedes it.
 *
 * The op/intent lines record the single table operation in flight, so that R
 * can finish or undo it after O dies (ht.c, reclaim.c):
 *   node: gidx of the block being allocated / inserted (0 = none); written
 *         before the block is claimed, so a claim is never lost.
 *   old:  gidx of the node being deleted or replaced (0 = none).
 *   chg:  the revision of the change-log record this op holds (0 = none):
 *         stored after the revision is reserved and before the record is
 *         claimed, so a record left PENDING by a death is always named
 *         here (R resolves it with the op: shm/changes.c).
 *   delta[t]: per table t, bits 63..8 a signed count of this slot's net
 *         inserts (the table's entry count is the sum over all slots, free
 *         ones included), bits 7..0 the pending op on table t (FDN_OP_*).
 *         Count and op are one word so "committed and counted" is one store.
 * limbo: a ring of blocks this slot unlinked, waiting for a grace period:
 *   entries [limbo_head, limbo_tail) (counters that only grow; entry k is
 *   limbo[k % FDN_LIMBO_MAX]), limbo[i] = gidx << 32 | generation the block
 *   had when retired, stamp[i] = header.gp_ctr read after the unlink.  O
 *   writes limbo[i] and stamp[i], then tail + 1 (release); frees the head
 *   entry once header.gp_done > its stamp, then head + 1.  Frees are
 *   generation-checked, so redoing one (a reclaimer after O died between
 *   the free and head + 1) changes nothing.
 * spill: when the ring is full and no grace period frees it, O copies the
 *   whole ring into a heap block of FDN_SPILL_BYTES (struct fdn_shm_spill,
 *   a "chunk") and empties the ring, so a reader stopped in a section does
 *   not stop writers (limbo.c, "Spill").  Links are gidx << 32 | generation
 *   (0 = none) and are followed only while the block is ALLOC with that
 *   generation.
 *   spill:       the newest chunk; each chunk's `next` the next older one.
 *   spill_count: entries in the chunks (display and bound).
 *   spill_new:   gidx of the chunk being claimed and filled (the claim
 *                intent, as `node` for a table op); 0 once linked.
 *   spill_dead:  the chunk being unlinked and freed; 0 when done.
 *   spill_since: the oldest chunk's stamp, a hint (0: none).
 */
enum { FDN_TSLOT_FREE = 0, FDN_TSLOT_USED = 1, FDN_TSLOT_RETIRED = 2 };
#define FDN_TSLOT_LIGHT             (1ull << 32)
#define FDN_TSLOT_KIND(w)           ((unsigned)((w) >> 56))
#define FDN_TSLOT_OWNER(w)          ((uint32_t)(w))
#define FDN_TSLOT_WORD(kind, owner) (((uint64_t)(kind) << 56) | (uint32_t)(owner))

enum {
	FDN_OP_NONE = 0,
	FDN_OP_INSERT = 1, /* insert-unique of `node` */
	FDN_OP_UPSERT = 2, /* `node` replaces `old`, or is inserted if old == 0 */
	FDN_OP_DELETE = 3, /* delete of `old` */
};
#define FDN_DELTA_OP(w)           ((unsigned)((w)&0xFF))
#define FDN_DELTA_COUNT(w)        ((int64_t)(w) >> 8)
#define FDN_DELTA_WORD(count, op) (((uint64_t)(int64_t)(count) << 8) | ((op)&0xFF))

struct fdn_shm_tslot {
	/* line 0: 0..63 */
	_Atomic uint64_t state; /*   0 */
	_Atomic uint64_t ctr;   /*   8 */
	_Atomic uint32_t tid;   /*  16: gettid() of the thread, display    */
	uint32_t reserved0;     /*  20 */
	uint64_t reserved1[5];  /*  24 */
	/* line 1: 64..127 */
	_Atomic uint64_t node; /*  64 */
	_Atomic uint64_t old;  /*  72 */
	_Atomic uint64_t chg;  /*  80 */
	uint64_t reserved2[5]; /*  88 */
	/* lines 2-3: 128..255 */
	_Atomic uint64_t delta[FDN_MAX_TABLES]; /* 128 */
	/* line 4: 256..319 */
	_Atomic uint64_t limbo_head;  /* 256 */
	_Atomic uint64_t limbo_tail;  /* 264 */
	_Atomic uint64_t spill;       /* 272: minor 1 */
	_Atomic uint64_t spill_count; /* 280: minor 1 */
	_Atomic uint64_t spill_new;   /* 288: minor 1 */
	_Atomic uint64_t spill_dead;  /* 296: minor 1 */
	_Atomic uint64_t spill_since; /* 304: minor 1 */
	uint64_t reserved3;           /* 312 */
	/* 320..1183, 1184..2047 */
	_Atomic uint64_t limbo[FDN_LIMBO_MAX]; /*  320 */
	_Atomic uint64_t stamp[FDN_LIMBO_MAX]; /* 1184 */
};
static_assert(sizeof(struct fdn_shm_tslot) == 2048, "reader slot");
static_assert(offsetof(struct fdn_shm_tslot, node) == 64, "intent line");
static_assert(offsetof(struct fdn_shm_tslot, chg) == 80, "change record line");
static_assert(offsetof(struct fdn_shm_tslot, delta) == 128, "delta lines");
static_assert(offsetof(struct fdn_shm_tslot, limbo_head) == 256, "limbo");
static_assert(offsetof(struct fdn_shm_tslot, stamp) == 1184, "stamps");
static_assert(offsetof(struct fdn_shm_tslot, spill_dead) == 296, "spill");

/*
 * A spill chunk (a heap block of FDN_SPILL_BYTES, minor 1): a full limbo
 * ring handed over by its reader slot (fdn_shm_tslot.spill).  Written by
 * its slot's owner before the link that publishes it; read and freed by the
 * owner, or by a reclaimer once the owner is dead (or its slot adopted).
 * Word 0 is `next`, like a table node's, so a freed chunk reads as "none".
 */
struct fdn_shm_spill {
	_Atomic uint64_t next;                 /*   0: the next older chunk (link), 0 = none     */
	_Atomic uint64_t stamp;                /*   8: gp_ctr read after the chunk was filled:
						*      >= every entry's stamp                    */
	_Atomic uint32_t count;                /*  16: entries, <= FDN_LIMBO_MAX                 */
	uint32_t reserved0;                    /*  20 */
	uint64_t reserved1;                    /*  24 */
	_Atomic uint64_t limbo[FDN_LIMBO_MAX]; /*  32: as fdn_shm_tslot.limbo */
	_Atomic uint64_t stamp_of[FDN_LIMBO_MAX]; /* 896: as fdn_shm_tslot.stamp */
};
static_assert(sizeof(struct fdn_shm_spill) <= FDN_SPILL_BYTES, "spill chunk");

/* Entries waiting in slot ts's limbo (a damaged slot may show more than
 * FDN_LIMBO_MAX: callers clamp). */
static inline uint64_t fdn_tslot_pending(const struct fdn_shm_tslot *ts)
{
	return atomic_load_explicit(&ts->limbo_tail, memory_order_acquire) -
	       atomic_load_explicit(&ts->limbo_head, memory_order_acquire);
}

/*
 * A heap page descriptor (8 bytes).
 * cls: 0 = never used; c + 1 = holds blocks of size 64 << c.  0 -> c + 1 by
 *      CAS (A); never changes afterwards.
 * free_hint: approximate count of free blocks, maintained with atomic adds
 *      by A; only steers the search for a page (it may drift after a crash,
 *      the checker does not rely on it).
 */
struct fdn_shm_page {
	_Atomic uint32_t cls;
	_Atomic uint32_t free_hint;
};
static_assert(sizeof(struct fdn_shm_page) == 8, "page descriptor");

/*
 * Block state words: one 64-bit word per heap granule, indexed by gidx; only
 * the word of a block's first granule is used, the others stay 0.
 *   63..32  generation: incremented by every allocation of the block
 *   31..8   owner: reader-slot index + 1 of the allocating thread
 *    7..0   kind: 0 FREE, 1 ALLOC, 2 RESERVED (gidx 0: the null block)
 * FREE(g) -> ALLOC(g+1, owner) by CAS (the claim, alloc.c); ALLOC(g) ->
 * FREE(g) by CAS, only by whoever holds the block's limbo entry; ALLOC(g)
 * -> FREE(g-1) by the thread that allocated it and never published it (or
 * the reclaimer of that dead thread), so that a generation advances only
 * with a free after a grace period.  The CAS on the generation makes a
 * repeated free (a reclaimer redoing a dead thread's work) a no-op; rcu.c
 * (fdn__limbo_free) argues why 32 bits cannot wrap under it.
 */
enum { FDN_BLOCK_FREE = 0, FDN_BLOCK_ALLOC = 1, FDN_BLOCK_RESERVED = 2 };
#define FDN_BLOCK_KIND(w)  ((unsigned)((w)&0xFF))
#define FDN_BLOCK_OWNER(w) ((uint32_t)(((w) >> 8) & 0xFFFFFF))
#define FDN_BLOCK_GEN(w)   ((uint32_t)((w) >> 32))
#define FDN_BLOCK_WORD(gen, owner, kind) \
	(((uint64_t)(uint32_t)(gen) << 32) | ((uint64_t)((owner)&0xFFFFFF) << 8) | ((kind)&0xFF))

/*
 * Link words: bucket heads and node.next.
 *   63      MARK: the node holding this word is logically deleted
 *   55..32  marker: reader-slot index + 1 of the thread whose CAS set MARK
 *   31..0   gidx of the successor (0 = end of chain)
 * A bucket head is never marked.
 */
#define FDN_LINK_MARK      (1ull << 63)
#define FDN_LINK_GIDX(w)   ((uint32_t)(w))
#define FDN_LINK_MARKER(w) ((uint32_t)(((w) >> 32) & 0xFFFFFF))
#define FDN_LINK_MARKED(w) (((w)&FDN_LINK_MARK) != 0)
#define FDN_LINK_WORD(gidx, marker, mark)                                     \
	((uint64_t)(uint32_t)(gidx) | ((uint64_t)((marker)&0xFFFFFF) << 32) | \
	 ((mark) ? FDN_LINK_MARK : 0))

/*
 * A table node, at the start of its heap block (a 24-byte header):
 *    0  next      link word (above)                 A (CAS), C = allocator
 *    8  hash      XXH3-64 of the key, header seed    allocator, immutable
 *   16  gen       the block's generation (copy)      allocator, immutable
 *   20  key_info  bits 9..0 key length (1..FDN_KEY_MAX), bits 15..12 the
 *                 table id, bits 11..10 zero         allocator, immutable
 *   22  val_len   bytes of value (<= FDN_VALUE_MAX)  allocator, immutable
 *   24  key bytes, then the value at 24 + align8(key length)
 * Everything but `next` is written before the node is published and never
 * after.  Word 0 of a FREE block is 0 (whoever frees a block zeroes it
 * first; a new heap is zero-filled).
 *
 * With a key of up to 16 bytes the first 24 bytes of the value share the
 * node's first cache line with the header and the key (the registry keeps
 * its 20-byte record there, lib/registry.c: a lookup reads the bucket line
 * and this one line).  A block is 64 << c bytes (alloc.c): a registry
 * entry with a 14-byte key and 64 bytes of attributes is 24 + 16 + 20 + 64
 * = 124 bytes, one 128-byte block.
 */
struct fdn_shm_node {
	_Atomic uint64_t next;
	uint64_t hash;
	uint32_t gen;
	uint16_t key_info;
	uint16_t val_len;
	unsigned char data[];
};
static_assert(sizeof(struct fdn_shm_node) == 24, "node header");
static_assert(offsetof(struct fdn_shm_node, gen) == 16, "node gen");
static_assert(offsetof(struct fdn_shm_node, key_info) == 20, "node key_info");
static_assert(offsetof(struct fdn_shm_node, val_len) == 22, "node val_len");

#define FDN_KEY_MAX          1023u                 /* table level; services set less */
#define FDN_VALUE_MAX        (8192u - 24u - 1024u) /* fits the largest class */
#define FDN_NODE_KEY_MASK    0x3FFu
#define FDN_NODE_TABLE_SHIFT 12u
#define FDN_NODE_KEY_INFO(key_len, table) \
	((uint16_t)(((key_len)&FDN_NODE_KEY_MASK) | ((uint32_t)(table) << FDN_NODE_TABLE_SHIFT)))
static_assert(FDN_KEY_MAX <= FDN_NODE_KEY_MASK, "key length fits key_info");
static_assert(FDN_MAX_TABLES <= 16u, "table id fits key_info");
static_assert(FDN_VALUE_MAX <= UINT16_MAX, "val_len fits 16 bits");

static inline uint32_t fdn_node_key_len(const struct fdn_shm_node *n)
{
	return n->key_info & FDN_NODE_KEY_MASK;
}

static inline uint32_t fdn_node_table(const struct fdn_shm_node *n)
{
	return (uint32_t)n->key_info >> FDN_NODE_TABLE_SHIFT;
}

static inline uint32_t fdn__node_bytes(uint32_t key_len, uint32_t val_len)
{
	return (uint32_t)sizeof(struct fdn_shm_node) + ((key_len + 7u) & ~7u) + val_len;
}

/*
 * A graveyard record (64 bytes): one reaped death.  Written by R only (the
 * lease holder), under a per-record sequence word: odd while being written,
 * even when complete.  Readers copy the record and retry if seq was odd or
 * changed while they copied.
 */
struct fdn_shm_death {
	_Atomic uint64_t seq; /*  0 */
	uint32_t pid;         /*  8 */
	int32_t exit_signal;  /* 12: signal that killed it, 0 = exited, -1 = unknown */
	int32_t exit_status;  /* 16: its exit status if it exited, else -1 */
	uint32_t proc_idx;    /* 20: its process slot */
	uint64_t ident;       /* 24: its identity */
	uint64_t died_ns;     /* 32: CLOCK_REALTIME when the reaper saw it */
	uint64_t latency_ns;  /* 40: from the reaper's wake-up to entries gone */
	uint64_t entries;     /* 48: registry entries reclaimed */
	uint64_t reserved;    /* 56 */
};
static_assert(sizeof(struct fdn_shm_death) == 64, "death record");
static_assert(FDN_GRAVEYARD_MAX * 64 >= 24 + FDN_KEY_MAX + 8 + FDN_VALUE_MAX,
	      "the graveyard guards the end of the heap");

/* The service regions (FDN_SVC_*): their own file, the same format. */
#include "layout_svc.h"

#endif
