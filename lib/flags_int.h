/*
 * lib/flags_int.h - what flags.c, flags_write.c and flags_audit.c share
 * (not exported).  flags_write.c and flags_audit.c call flags.c;
 * flags_audit.c also calls flags_write.c (fdn__fl_holder_alive).
 */
#ifndef FDN_LIB_FLAGS_INT_H
#define FDN_LIB_FLAGS_INT_H

#include "lib/internal.h"

#include <foundation/flags.h>

#define ALERT_EMERGENCY "emergency_rollback" /* the alert type of an emergency */

/* The flags of s (NULL: this process's memory), as one call sees them. */
struct fview {
	fdn_segment *s; /* NULL: process memory */
	struct fdn_shm_flags_hdr *h;
	struct fdn_shm_flags *r;
};

enum { V_READ = 0, V_READ_ANY = 1, V_WRITE = 2 };
/* V_READ_ANY: the bool reads, which use the built-in defaults when
 * $FOUNDATION_FLAGS was bad; the other calls report it.  0 or an error. */
int fdn__fl_view(fdn_segment *s, int mode, struct fview *v);
/* Slots in use (bounded). */
uint32_t fdn__fl_nflags(const struct fview *v);
/* Slot index of a flag (name already valid), or -1. */
int fdn__fl_find(const struct fview *v, const char *name);
/* Flag i's value, from the built-in word (built-in flags) or its slot. */
int fdn__fl_value_at(const struct fview *v, uint64_t word, uint32_t i);
/* A slot's name, NUL-terminated whatever the segment holds. */
void fdn__fl_slot_name(const struct fview *v, uint32_t i, char out[FDN_FLAG_NAME_BYTES]);
bool fdn__fl_name_ok(const char *name);
int fdn__fl_clamp_value(unsigned v);
/* The built-in word with flag i set to v; the word of a stage's profile. */
uint64_t fdn__fl_word_set(uint64_t w, unsigned i, unsigned v);
uint64_t fdn__fl_word_of_profile(unsigned stage);
/* A built-in flag's id, or -1. */
int fdn__fl_builtin_id(const char *name);
extern const char *const fdn__fl_builtin_names[FDN_FLAGS_BUILTIN];

/* flags_write.c: does the lock word name a live process? */
bool fdn__fl_holder_alive(uint64_t w);

#endif
