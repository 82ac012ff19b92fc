/* proc_windows.h - Windows-only extras of proc_windows.c beyond the platform-neutral proc.h:
 * introspection and test hooks for native/tests_windows/harness.c.  Production code (the Cython
 * layer) uses proc.h only.
 */
#ifndef LSR_PROC_WINDOWS_H
#define LSR_PROC_WINDOWS_H

#include "winerr_windows.h"

/* How a process's tree is ended (lsr_proc_win_strategy). */
#define LSR_WIN_TREE_JOB 1        /* dedicated Job Object */
#define LSR_WIN_TREE_SNAPSHOT 2   /* ToolHelp snapshot walk with pinned handles */

/* Test flags (lsr_proc_win_set_test_flags). */
#define LSR_WIN_TEST_FORCE_SNAPSHOT 1   /* behave as if AssignProcessToJobObject were denied */

/* Sets process-wide test flags for later spawns; 0 restores normal behaviour.  Never fails. */
void lsr_proc_win_set_test_flags(unsigned flags);

/* LSR_WIN_TREE_JOB or LSR_WIN_TREE_SNAPSHOT.  Never fails. */
int lsr_proc_win_strategy(const lsr_proc *p);

/* 1 when CREATE_BREAKAWAY_FROM_JOB was used for this child (our process is in a job that allows
 * it), 0 otherwise.  Never fails. */
int lsr_proc_win_broke_away(const lsr_proc *p);

/* The root process handle (valid until lsr_proc_free; do not close it).  Never fails. */
HANDLE lsr_proc_win_handle(const lsr_proc *p);

#endif /* LSR_PROC_WINDOWS_H */
