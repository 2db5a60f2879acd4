/*
 * tests/reaper_idle.h - is a reaper asleep with nothing to do?  Shared by
 * the Criterion tests (tests/common.h, t_settle) and the stress harness
 * (stress/stress.c, st_reaper_idle).
 *
 * /proc/PID/syscall shows the reaper in epoll_wait (or epoll_pwait, whose
 * fourth argument is also the timeout) with its idle timeout: the 250 ms
 * tick (0xfa) or none (-1, printed in either width).  Any other timeout
 * means a death pending, a retry, a reclamation backlog or a sweep under
 * way (tools/foundation-reaperd.c, run()).  The numbers are this
 * architecture's (x86-64: 232, 281; arm64 has only epoll_pwait, 22);
 * under qemu-user ($FOUNDATION_TEST_EMULATED) the kernel shows the host's
 * numbers (x86-64 here), not the emulated program's.
 */
#ifndef FDN_TESTS_REAPER_IDLE_H
#define FDN_TESTS_REAPER_IDLE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>

/* 1 idle, 0 busy (running, or in another call or timeout), -1 the file
 * cannot be read (a kernel or policy that hides it). */
static inline int fdn_test_reaper_idle(pid_t reaper)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)reaper);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	if (n == 0)
		return -1;
	buf[n] = 0;
	long nr = -1;
	char to[32] = "";
	if (sscanf(buf, "%ld %*s %*s %*s %31s", &nr, to) != 2)
		return 0; /* "running", or not in a system call */
	const char *emu = getenv("FOUNDATION_TEST_EMULATED");
	int ep = nr == SYS_epoll_pwait || (emu && *emu && (nr == 232 || nr == 281));
#ifdef SYS_epoll_wait
	ep = ep || nr == SYS_epoll_wait;
#endif
	return ep && (strcmp(to, "0xfa") == 0 || strcmp(to, "0xffffffff") == 0 ||
		      strcmp(to, "0xffffffffffffffff") == 0);
}

#endif
