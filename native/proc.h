/* proc.h - a managed child process: its own process tree, piped stdin, and stdout/stderr drained in
 * the background into two bounded rings.
 *
 * Platform split: native/proc_posix.c + native/drain_posix.c implement this header on POSIX,
 * native/proc_windows.c + native/drain_windows.c on Windows.  The platform-neutral helpers built on
 * top of it (wait for output / a marker, peek) live in proc_io.h as inline functions, so both
 * platforms share them without another source file.
 *
 * Model
 * - lsr_proc_spawn starts the child in its own process tree (POSIX: its own process group;
 *   Windows: a Job Object, ToolHelp fallback) with stdout/stderr piped and stdin piped or the null
 *   device.  No shell is involved.  Failure to start the program (missing, not executable, bad cwd)
 *   is reported by lsr_proc_spawn itself, never as a child that exits with 127.
 * - Both output pipes are drained by background machinery (POSIX: one shared drainer thread for
 *   all processes) into the rings returned by lsr_proc_stream.  A ring keeps only its newest
 *   `buffer_limit` bytes, so the child never blocks on a full pipe.  At end of stream the ring gets
 *   EOF (lsr_ring_set_eof).
 * - Both rings share ONE notifier (lsr_proc_notify): it is signalled on every append, on each EOF,
 *   and when the child's exit is detected, so a reader waits once for any of them.
 * - Status probes never reap: the child stays a zombie (POSIX) until lsr_proc_terminate, so its
 *   pid and process-group id cannot be reused while we may still signal them.
 * - lsr_proc_terminate kills the whole tree, reaps the root once, caches the final status and waits
 *   (bounded) until the drainers are done with both pipes.  It is idempotent.
 *
 * Threading: every function may be called from any thread, concurrently with the others, except
 * lsr_proc_free (no other call on that process may be running or follow it).  Blocking functions
 * must be called without the GIL; none of them touches Python objects.
 *
 * Error contract: functions returning int return 0 on success and -1 on failure, after filling
 * *err (when err is not NULL) with the OS error code (errno / GetLastError(), 0 when the failure is
 * not an OS error) and a message that names the failing system call, e.g.
 * "posix_spawn: No such file or directory", "waitid: No such process".  Callers prefix it with
 * their own operation name ("process.session.open: ...").
 */
#ifndef LSR_PROC_H
#define LSR_PROC_H

#include <stddef.h>
#include <stdint.h>
#include "lsr_error.h"
#include "notify.h"
#include "ringbuf.h"


/* Which output stream (lsr_proc_stream). */
#define LSR_STDOUT 1
#define LSR_STDERR 2

/* What the child's stdin is connected to. */
#define LSR_STDIN_PIPE 0   /* a pipe we write with lsr_proc_write */
#define LSR_STDIN_NULL 1   /* /dev/null (NUL on Windows) */

/* Tri-state for lsr_exit_status.success. */
#define LSR_UNKNOWN (-1)

typedef struct lsr_proc_spec {
    const char *program;            /* UTF-8; looked up on PATH when it has no directory part */
    const char *const *args;        /* arguments after the program (UTF-8), nargs of them */
    size_t nargs;
    const char *cwd;                /* working directory, or NULL to inherit ours */
    const char *const *env;         /* NULL-terminated "KEY=VALUE" list, or NULL to inherit */
    size_t buffer_limit;            /* bytes kept per output ring; must be > 0 */
    int stdin_mode;                 /* LSR_STDIN_PIPE or LSR_STDIN_NULL */
} lsr_proc_spec;

typedef struct lsr_exit_status {
    int running;    /* 1 while the root process has not exited */
    int exited;     /* 1 once it has exited (or its status can no longer be obtained) */
    int success;    /* 1 / 0 when known, LSR_UNKNOWN otherwise (running, or status lost) */
    int has_code;   /* 1 when `code` is meaningful */
    int code;       /* exit code of a normal exit.  A death by signal reports has_code = 0 and
                       success = 0 (the reference's snapshot gives code = nil, success = false) */
    int signal;     /* POSIX: the signal that killed it, else 0.  Always 0 on Windows */
} lsr_exit_status;

typedef struct lsr_proc lsr_proc;   /* opaque, one per child */

/* Starts a child as described by spec.  On success stores a new process in *out (free it with
 * lsr_proc_free) and returns 0.  Returns -1 with *err filled when the spec is invalid (code EINVAL,
 * e.g. "buffer_limit: must be positive"), when a pipe / ring / thread cannot be created, or when
 * the program cannot be started (e.g. "posix_spawn: No such file or directory",
 * "CreateProcessW: ..."); nothing is left running or open then. */
int lsr_proc_spawn(const lsr_proc_spec *spec, lsr_proc **out, lsr_error *err);

/* The child's process id.  Never fails. */
int64_t lsr_proc_pid(const lsr_proc *p);

/* Writes all n bytes to the child's stdin, blocking while the pipe is full (call without the GIL).
 * Returns 0, or -1 with *err: message "stdin is closed" (code 0) after lsr_proc_close_stdin or with
 * LSR_STDIN_NULL; "write: Broken pipe" (EPIPE) when the child closed its end; other write errors.
 * A partial write before an error is not undone.  SIGPIPE is never raised in our process. */
int lsr_proc_write(lsr_proc *p, const void *data, size_t n, lsr_error *err);

/* Closes our end of the child's stdin so it sees EOF; a write in progress finishes or fails first
 * (the fd is closed when it returns).  Idempotent.  Never fails. */
void lsr_proc_close_stdin(lsr_proc *p);

/* The ring that holds the drained output of LSR_STDOUT or LSR_STDERR (NULL for another value).
 * Valid until lsr_proc_free; keeps its bytes after terminate.  Never fails. */
lsr_ring *lsr_proc_stream(lsr_proc *p, int which);

/* The notifier shared by both rings, also signalled when the child's exit is detected.
 * Valid until lsr_proc_free.  Never fails. */
lsr_notify *lsr_proc_notify(lsr_proc *p);

/* Blocks until the notifier's sequence differs from `seen` (output, EOF or exit) or the monotonic
 * deadline (negative = none) passes; it may also return early, so callers loop on their predicate
 * (lsr_proc_wait_output does).  Readers use it instead of lsr_notify_wait so a platform can wake
 * them faster: on Linux one waiting reader polls the pipes itself and drains what arrives, so a
 * child's reply wakes it directly rather than through the drainer thread.  Call without the GIL.
 * Never fails. */
#ifdef _WIN32
static inline void lsr_proc_wait_event(lsr_proc *p, uint64_t seen, int64_t deadline_ms)
{
    lsr_notify_wait(lsr_proc_notify(p), seen, deadline_ms);
}
#else
void lsr_proc_wait_event(lsr_proc *p, uint64_t seen, int64_t deadline_ms);
#endif

/* Non-reaping status probe (POSIX: waitid WEXITED|WNOHANG|WNOWAIT).  After lsr_proc_terminate it
 * returns the cached final status without a system call.  When the status was lost because
 * something else reaped the child (ECHILD) it reports exited = 1, success = LSR_UNKNOWN,
 * has_code = 0, like the reference.  Returns 0 with *st filled, or -1 with *err ("waitid: ..."). */
int lsr_proc_status(lsr_proc *p, lsr_exit_status *st, lsr_error *err);

/* Waits (without reaping) until the root process has exited or the monotonic deadline
 * (lsr_now_ms based; negative = no deadline) passes, then fills *st like lsr_proc_status:
 * st->exited tells which happened.  Wakes as soon as the exit is detected where the platform can
 * signal it (pidfd / process handle); otherwise probes with a short backoff.  Call without the GIL.
 * Returns 0, or -1 with *err from the status probe. */
int lsr_proc_wait_exit(lsr_proc *p, int64_t deadline_ms, lsr_exit_status *st, lsr_error *err);

/* Ends the whole tree and reaps the root, once: kills every process of the tree (POSIX: SIGKILL to
 * the process group while the root is still unreaped, so the group id cannot have been reused, plus
 * the root itself; on Linux first every descendant that left the group or session, found by parent
 * links and by the tree's environment tag, see tree_posix.h), reaps the root, caches and returns its final status in *final (a root that had
 * exited before keeps its own exit status).  Then waits up to 1000 ms for both output pipes to
 * reach EOF; pipes still held open after that (by an escaped descendant) are detached and closed,
 * and their rings get EOF.  Bytes already drained stay readable.  Later calls return the cached
 * status at once.  stdin stays open (writes then fail with EPIPE) until lsr_proc_free.
 * Returns 0, or -1 with *err ("killpg: Operation not permitted", "TerminateJobObject: ...");
 * the caller may retry. */
int lsr_proc_terminate(lsr_proc *p, lsr_exit_status *final, lsr_error *err);

/* Terminates the tree if lsr_proc_terminate did not run yet (errors are ignored), closes every
 * handle, detaches from the drainer and frees p.  p == NULL is a no-op.  In a forked child of the
 * process that spawned p it only releases memory and descriptors: it never signals or reaps the
 * parent's children.  Never fails. */
void lsr_proc_free(lsr_proc *p);

/* Returns 0, or -1 with *err when the background machinery that moves the child's output into
 * the rings failed and stopped (e.g. "malloc: Cannot allocate memory" for the drainer's buffer);
 * the rings then got EOF early, so a reader that saw EOF checks this to tell a real end of
 * output from a failure.  Never blocks. */
int lsr_proc_io_error(lsr_proc *p, lsr_error *err);

/* LSR_DEBUG builds only: the next start of the background drainer fails its buffer allocation,
 * so tests can see lsr_proc_io_error report it.  Returns 0, or -1 in other builds and on
 * platforms without a drainer thread (nothing changes). */
int lsr_proc_debug_fail_drainer_malloc(int on);

/* Trees started outside the process core: io.popen and the managed os.execute run `sh -c`
 * through Python's subprocess (they need blocking pipe semantics the rings do not give).  The
 * same complete teardown reaches them through these two calls (POSIX; tree_posix.h says how). */
#define LSR_PROC_TAG_MAX 64
/* Fills tag (LSR_PROC_TAG_MAX bytes) with a new "NAME=VALUE" entry for the child's environment.
 * Returns 0 (tag "" where escaped descendants are not tracked: POSIX without /proc), or -1 with
 * *err naming the failing call ("pipe", "fork": the host-death watchdog could not start).
 * Windows: -1 with ENOSYS (a Job Object or taskkill /T holds trees there). */
int lsr_proc_foreign_tag(char *tag, lsr_error *err);
/* Kills every live descendant of `root` (not the root): by parent links while root_unreaped, and
 * by `tag` (may be ""), then rescans until none is left (bounded, ~500 ms).  Call it before
 * killing and reaping the root.  Returns 0, or -1 with *err ("open", "malloc").  The GIL must not
 * be held (it reads /proc).  Windows: -1 with ENOSYS. */
int lsr_proc_foreign_kill(long root, int root_unreaped, const char *tag, lsr_error *err);

/* Platform-neutral inline helpers over the functions above: see proc_io.h. */

#endif /* LSR_PROC_H */
