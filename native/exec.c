/* exec.c - one-shot runs over the managed process core (see exec.h).
 *
 * Ownership: a run is referenced by its caller and, while it writes, by the stdin helper thread;
 * whichever lets go last frees it.  So a helper stuck on a pipe that an escaped descendant holds
 * open never blocks the caller, and never writes into freed memory.
 *
 * Threads: the caller's thread runs lsr_exec_wait / lsr_exec_finish; lsr_exec_kill may come from
 * any thread (the run's fields it touches are `killed` and the process, whose functions are
 * thread-safe).  `mu` guards refs, writer_done and killed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "lsr_thread.h"

#define PHASE_RUNNING 0    /* waiting for the root to exit */
#define PHASE_DRAINING 1   /* root exited; waiting for both streams' EOF within the grace time */
#define PHASE_DONE 2

#define WRITER_WAIT_MS 200           /* how long finish waits for the stdin helper to give up */
#define WRITER_STACK (64 * 1024)

struct lsr_exec {
    lsr_proc *proc;
    lsr_mutex mu;
    int refs;
    int writer_done;
    int has_writer;
    uint8_t *stdin_copy;
    size_t stdin_len;
    int64_t deadline;        /* monotonic ms, or -1 */
    int64_t grace_ms;
    int64_t eof_deadline;    /* set when the root exited */
    int phase;
    int timed_out;
    int killed;
    int finished;
    lsr_exit_status final;
};

/* The earlier of two monotonic deadlines (negative = none). */
static int64_t earlier(int64_t a, int64_t b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

static int is_killed(lsr_exec *e)
{
    lsr_mutex_lock(&e->mu);
    int killed = e->killed;
    lsr_mutex_unlock(&e->mu);
    return killed;
}

/* Drops one reference; the last one ends the process (if still needed) and frees the run. */
static void exec_unref(lsr_exec *e)
{
    lsr_mutex_lock(&e->mu);
    int last = --e->refs == 0;
    lsr_mutex_unlock(&e->mu);
    if (!last)
        return;
    lsr_proc_free(e->proc);
    free(e->stdin_copy);
    lsr_mutex_destroy(&e->mu);
    free(e);
}

/* The stdin helper: writes everything (a child that exits or closes its stdin early makes the
 * write fail with EPIPE, which is ignored as the reference ignores it), closes stdin so the child
 * sees EOF, and tells the caller it is done. */
LSR_THREAD_FN(stdin_writer)
{
    lsr_exec *e = (lsr_exec *)arg;
    lsr_error ignored;
    lsr_proc_write(e->proc, e->stdin_copy, e->stdin_len, &ignored);
    lsr_proc_close_stdin(e->proc);
    lsr_mutex_lock(&e->mu);
    e->writer_done = 1;
    lsr_mutex_unlock(&e->mu);
    lsr_notify_signal(lsr_proc_notify(e->proc));
    exec_unref(e);
    LSR_THREAD_RETURN;
}

int lsr_exec_start(const lsr_exec_spec *spec, lsr_exec **out, lsr_error *err)
{
    *out = NULL;
    lsr_exec *e = (lsr_exec *)calloc(1, sizeof *e);
    if (e == NULL) {
        lsr_set_error(err, ENOMEM, "malloc");
        return -1;
    }
    int rc = lsr_mutex_init(&e->mu);
    if (rc != 0) {
        lsr_set_error(err, rc, "pthread_mutex_init");
        free(e);
        return -1;
    }
    lsr_proc_spec ps;
    ps.program = spec->program;
    ps.args = spec->args;
    ps.nargs = spec->nargs;
    ps.cwd = spec->cwd;
    ps.env = spec->env;
    ps.buffer_limit = SIZE_MAX;   /* keep every byte: the rings grow as output arrives */
    ps.stdin_mode = spec->stdin_data != NULL ? LSR_STDIN_PIPE : LSR_STDIN_NULL;
    if (lsr_proc_spawn(&ps, &e->proc, err) != 0) {
        lsr_mutex_destroy(&e->mu);
        free(e);
        return -1;
    }
    e->refs = 1;
    e->grace_ms = spec->grace_ms > 0 ? spec->grace_ms : 0;
    e->deadline = spec->timeout_ms > 0 ? lsr_now_ms() + spec->timeout_ms : -1;

    if (spec->stdin_data != NULL) {
        if (spec->stdin_len <= LSR_EXEC_INLINE_STDIN) {
            lsr_error ignored;
            if (spec->stdin_len > 0)
                lsr_proc_write(e->proc, spec->stdin_data, spec->stdin_len, &ignored);
            lsr_proc_close_stdin(e->proc);
        } else {
            e->stdin_copy = (uint8_t *)malloc(spec->stdin_len);
            if (e->stdin_copy == NULL) {
                lsr_set_error(err, ENOMEM, "malloc");
                exec_unref(e);
                return -1;
            }
            memcpy(e->stdin_copy, spec->stdin_data, spec->stdin_len);
            e->stdin_len = spec->stdin_len;
            e->has_writer = 1;
            e->refs = 2;
            rc = lsr_thread_start_detached(stdin_writer, e, WRITER_STACK);
            if (rc != 0) {
#ifdef _WIN32
                if (err != NULL) {
                    err->code = rc;
                    snprintf(err->message, sizeof err->message, "CreateThread: error %d", rc);
                }
#else
                lsr_set_error(err, rc, "pthread_create");
#endif
                e->refs = 1;
                exec_unref(e);   /* frees the process, which kills the tree */
                return -1;
            }
        }
    }
    *out = e;
    return 0;
}

int64_t lsr_exec_pid(const lsr_exec *e)
{
    return lsr_proc_pid(e->proc);
}

/* Waits until both output streams reached EOF, the run is killed, or `limit` passes.
 * Returns 1 when both reached EOF. */
static int wait_both_eof(lsr_exec *e, int64_t limit)
{
    lsr_notify *notify = lsr_proc_notify(e->proc);
    lsr_ring *out = lsr_proc_stream(e->proc, LSR_STDOUT);
    lsr_ring *err = lsr_proc_stream(e->proc, LSR_STDERR);
    for (;;) {
        uint64_t seen = lsr_notify_seq(notify);
        int eof_out, eof_err;
        lsr_ring_stats(out, NULL, NULL, NULL, &eof_out);
        lsr_ring_stats(err, NULL, NULL, NULL, &eof_err);
        if (eof_out && eof_err)
            return 1;
        if (is_killed(e))
            return 0;
        if (limit >= 0 && lsr_now_ms() >= limit)
            return 0;
        lsr_notify_wait(notify, seen, limit);
    }
}

int lsr_exec_wait(lsr_exec *e, int64_t until_ms, lsr_error *err)
{
    for (;;) {
        if (e->phase == PHASE_DONE)
            return 1;
        if (is_killed(e)) {
            e->phase = PHASE_DONE;
            return 1;
        }
        if (e->phase == PHASE_RUNNING) {
            lsr_exit_status st;
            if (lsr_proc_wait_exit(e->proc, earlier(e->deadline, until_ms), &st, err) != 0)
                return -1;
            int64_t now = lsr_now_ms();
            if (st.exited) {
                /* The grace never stretches the run past its deadline. */
                e->phase = PHASE_DRAINING;
                e->eof_deadline = earlier(now + e->grace_ms, e->deadline);
                if (e->eof_deadline < now)
                    e->eof_deadline = now;
                continue;
            }
            if (e->deadline >= 0 && now >= e->deadline) {
                e->timed_out = 1;
                e->phase = PHASE_DONE;
                return 1;
            }
            if (until_ms >= 0 && now >= until_ms)
                return 0;
            continue;   /* woken early (e.g. by a kill): look again */
        }
        /* PHASE_DRAINING: descendants may still be writing into the inherited pipes. */
        if (wait_both_eof(e, earlier(e->eof_deadline, until_ms))) {
            e->phase = PHASE_DONE;
            return 1;
        }
        int64_t now = lsr_now_ms();
        if (now >= e->eof_deadline) {
            e->phase = PHASE_DONE;
            return 1;
        }
        if (until_ms >= 0 && now >= until_ms)
            return 0;
    }
}

int lsr_exec_kill(lsr_exec *e, lsr_error *err)
{
    lsr_mutex_lock(&e->mu);
    e->killed = 1;
    lsr_mutex_unlock(&e->mu);
    lsr_exit_status st;
    int rc = lsr_proc_terminate(e->proc, &st, err);
    /* The waiter may sleep on the notifier for an exit the drainer no longer reports. */
    lsr_notify_signal(lsr_proc_notify(e->proc));
    return rc;
}

int lsr_exec_finish(lsr_exec *e, lsr_exec_outcome *out, lsr_error *err)
{
    if (!e->finished) {
        lsr_exit_status final;
        if (lsr_proc_terminate(e->proc, &final, err) != 0)
            return -1;
        if (e->has_writer) {
            /* With the tree gone its write fails at once, unless a descendant that left the group
             * holds stdin open; then the helper finishes (and frees) on its own later. */
            lsr_notify *notify = lsr_proc_notify(e->proc);
            int64_t limit = lsr_now_ms() + WRITER_WAIT_MS;
            for (;;) {
                uint64_t seen = lsr_notify_seq(notify);
                lsr_mutex_lock(&e->mu);
                int done = e->writer_done;
                lsr_mutex_unlock(&e->mu);
                if (done || lsr_now_ms() >= limit)
                    break;
                lsr_notify_wait(notify, seen, limit);
            }
        }
        e->final = final;
        e->finished = 1;
        e->phase = PHASE_DONE;
    }
    out->status = e->final;
    out->timed_out = e->timed_out;
    out->killed = is_killed(e);
    return 0;
}

lsr_ring *lsr_exec_stream(lsr_exec *e, int which)
{
    return lsr_proc_stream(e->proc, which);
}

void lsr_exec_release(lsr_exec *e)
{
    if (e == NULL)
        return;
    if (!e->finished) {
        lsr_exec_outcome ignored;
        lsr_exec_finish(e, &ignored, NULL);
    }
    exec_unref(e);
}
