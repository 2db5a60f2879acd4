/*
 * foundation/error.h - error codes.
 *
 * Every function of libfoundation returns 0 (or a non-negative count) on
 * success and a negative code on failure:
 *   -errno               for a failed system call (-ENOMEM, -EACCES, ...);
 *   FDN_E... (below)     for Foundation's own errors, all in the reserved
 *                        range [FDN_ERR_LAST, FDN_ERR_FIRST], which no errno
 *                        value reaches.
 * fdn_strerror() and fdn_errname() accept both kinds.
 *
 * The table FDN_ERRNO_MAP is the only place an error is defined: the enum,
 * the messages and the names are all generated from it.
 */
#ifndef FOUNDATION_ERROR_H
#define FOUNDATION_ERROR_H

#include <foundation/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(NAME, message) -- append only: the numeric values are part of the ABI. */
#define FDN_ERRNO_MAP(X)                                                                         \
	X(EXISTS, "already exists")                                                              \
	X(NOTFOUND, "not found")                                                                 \
	X(NOSPACE, "no space")                                                                   \
	X(INVKEY, "invalid key")                                                                 \
	X(INVMETA, "invalid metadata")                                                           \
	X(UNSUPATTR, "unsupported attribute")                                                    \
	X(INVCRIT, "invalid criteria")                                                           \
	X(UNKFLAG, "unknown flag")                                                               \
	X(BADSEG, "bad segment")                                                                 \
	X(VERSION, "version mismatch")                                                           \
	X(STACKOVF, "stack overflow")                                                            \
	X(NOSPAN, "no active span")                                                              \
	X(ENFORCED, "enforced")                                                                  \
	X(NOSEG, "segment not found")                                                            \
	X(MAGIC, "wrong magic: not a Foundation segment")                                        \
	X(LAYOUT, "layout mismatch: built with other struct layouts")                            \
	X(TRUNC, "segment truncated")                                                            \
	X(INIT, "segment still initialising")                                                    \
	X(OWNER, "segment owned by another user")                                                \
	X(MODE, "segment is writable by other users")                                            \
	X(INVAL, "invalid argument")                                                             \
	X(FORKED, "handle used in a forked child; attach again")                                 \
	X(RDONLY, "segment attached read-only")                                                  \
	X(CORRUPT, "corruption detected")                                                        \
	X(INREAD, "called inside a read-side section")                                           \
	X(TIMEDOUT, "timed out")                                                                 \
	X(NOTTOP, "span is not the top of the stack")                                            \
	X(TRACEPARENT, "malformed traceparent")                                                  \
	X(TOOBIG, "too large")                                                                   \
	X(STAGE, "invalid stage transition")                                                     \
	X(PERCENT, "percentage outside 0..100")                                                  \
	X(SAMPLER, "invalid sampler")                                                            \
	X(EVNAME, "invalid event name")                                                          \
	X(NAMESPACE, "segment made in another PID namespace: share the creator's PID namespace") \
	X(STALE, "segment was destroyed: attach again")                                          \
	X(BUSY, "reclamation backlog full: a reader is stopped inside a read-side section")      \
	X(CONTEXT, "malformed context")                                                          \
	X(REENTERED, "called from a signal handler that interrupted a call of this thread")      \
	X(NOREAPER, "no reaper program: looked at $FOUNDATION_REAPERD, beside libfoundation "    \
		    "(../bin, ../libexec, its own directory) and the configured path")           \
	X(OVERFLOW, "changes were overwritten before they were read: resynchronise")             \
	X(NOLOG, "segment has no change log (created with changes off)")

/* The reserved range: FDN_ERR_LAST <= code <= FDN_ERR_FIRST. */
#define FDN_ERR_FIRST (-30400)

enum fdn__err_index {
#define FDN__ERR_INDEX(name, msg) FDN__EIDX_##name,
	FDN_ERRNO_MAP(FDN__ERR_INDEX)
#undef FDN__ERR_INDEX
	    FDN__EIDX_COUNT
};

enum fdn_errno {
#define FDN__ERR_CODE(name, msg) FDN_E##name = FDN_ERR_FIRST - FDN__EIDX_##name,
	FDN_ERRNO_MAP(FDN__ERR_CODE)
#undef FDN__ERR_CODE
	    FDN_ERR_LAST = FDN_ERR_FIRST - FDN__EIDX_COUNT + 1
};

/* Message for any code this library returns: Foundation's own, or -errno.
 * Never NULL; an unknown code gives "unknown error". Thread-safe. */
FDN_API const char *fdn_strerror(int code);

/* Symbolic name: "FDN_ENOTFOUND", "ENOENT", ... or "UNKNOWN". Thread-safe. */
FDN_API const char *fdn_errname(int code);

#ifdef __cplusplus
}
#endif
#endif
