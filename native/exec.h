/* exec.h - one-shot execution of a child process to completion, over the managed process core
 * (proc.h).  Platform-neutral: native/exec.c uses only proc.h, the rings and lsr_thread.h.
 *
 * A run
 * - spawns the child in its own process tree (proc.h) with stdout and stderr drained into rings
 *   without a byte limit, so all output is kept (the rings grow as the bytes arrive);
 * - feeds stdin, when given, then closes it: small inputs are written at once, larger ones by a
 *   detached helper thread, so a child that never reads its stdin cannot stall the run past its
 *   deadline (the helper fails with EPIPE once the tree is gone);
 * - waits for the root process, at most until the deadline (timeout_ms).  When the root exits in
 *   time, descendants still holding stdout/stderr open get grace_ms (but never beyond the
 *   deadline) to finish writing;
 * - then ends whatever is left of the tree and reaps the root (lsr_proc_terminate), so nothing
 *   the run started outlives it, and reports the root's status and whether the deadline passed.
 *
 * Use: lsr_exec_start, then lsr_exec_wait until it returns 1 (in slices, so the caller can react
 * to interrupts between them), lsr_exec_finish, read both rings (lsr_exec_stream), and
 * lsr_exec_release.  lsr_exec_kill may be called from another thread at any time to end the run
 * early.  Blocking functions must be called without the GIL; none touches Python objects.
 *
 * Error contract: functions returning int return 0 on success (lsr_exec_wait: 0 or 1) and -1 on
 * failure, with *err filled as in proc.h (the failing system call named in the message).
 */
#ifndef LSR_EXEC_H
#define LSR_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include "proc.h"

/* Stdin inputs up to this size are written by the caller's thread: a pipe always holds this much
 * (POSIX _POSIX_PIPE_BUF), so the write cannot block. */
#define LSR_EXEC_INLINE_STDIN 512

typedef struct lsr_exec_spec {
    const char *program;            /* as lsr_proc_spec: UTF-8, looked up on PATH */
    const char *const *args;        /* arguments after the program, nargs of them */
    size_t nargs;
    const char *cwd;                /* or NULL */
    const char *const *env;         /* full "KEY=VALUE" list, NULL-terminated, or NULL to inherit */
    const uint8_t *stdin_data;      /* bytes for stdin (copied); NULL: stdin is the null device */
    size_t stdin_len;               /* may be 0: the child then reads EOF at once */
    int64_t timeout_ms;             /* > 0: the run ends at this deadline; <= 0: no deadline */
    int64_t grace_ms;               /* >= 0: how long descendants may hold the output pipes open
                                       after the root exited */
} lsr_exec_spec;

typedef struct lsr_exec_outcome {
    lsr_exit_status status;         /* the root's final status (proc.h semantics) */
    int timed_out;                  /* 1 when the deadline passed before the root exited */
    int killed;                     /* 1 when lsr_exec_kill ended the run */
} lsr_exec_outcome;

typedef struct lsr_exec lsr_exec;   /* opaque, one per run */

/* Starts a run.  On success stores it in *out and returns 0.  Returns -1 with *err when the child
 * cannot be started (lsr_proc_spawn's errors, e.g. "posix_spawn: No such file or directory") or
 * when memory or the stdin helper thread cannot be had ("malloc: ...", "pthread_create: ...");
 * nothing is left running then. */
int lsr_exec_start(const lsr_exec_spec *spec, lsr_exec **out, lsr_error *err);

/* The child's process id.  Never fails. */
int64_t lsr_exec_pid(const lsr_exec *e);

/* Advances the run until it is complete (returns 1) or the monotonic time until_ms (lsr_now_ms
 * based; negative = no limit) passes first (returns 0).  Complete means: the deadline passed, or
 * the root exited and both output streams reached EOF or the grace time ran out, or the run was
 * killed.  One thread at a time.  Returns -1 with *err when the status probe fails
 * ("waitid: ..."). */
int lsr_exec_wait(lsr_exec *e, int64_t until_ms, lsr_error *err);

/* Ends the run early from any thread: kills the tree (lsr_proc_terminate) and wakes a waiter.
 * Idempotent.  Returns -1 with *err when the kill fails ("killpg: ..."). */
int lsr_exec_kill(lsr_exec *e, lsr_error *err);

/* Ends what is left of the tree, reaps the root and waits briefly for the stdin helper, then fills
 * *out.  Call once lsr_exec_wait returned 1 (or earlier to abandon the run: the tree is killed).
 * The rings then hold all output and get no more bytes.  Returns -1 with *err when the teardown
 * fails ("killpg: ...", "waitpid: ..."); it may be retried. */
int lsr_exec_finish(lsr_exec *e, lsr_exec_outcome *out, lsr_error *err);

/* The ring holding the output of LSR_STDOUT or LSR_STDERR (NULL for another value); valid until
 * lsr_exec_release.  Never fails. */
lsr_ring *lsr_exec_stream(lsr_exec *e, int which);

/* Gives the run back: finishes it when lsr_exec_finish did not run (killing the tree), and frees
 * everything once the stdin helper is done too.  e == NULL is a no-op.  Never fails. */
void lsr_exec_release(lsr_exec *e);

#endif /* LSR_EXEC_H */
