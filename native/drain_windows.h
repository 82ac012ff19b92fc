/* drain_windows.h - background draining of child output pipes into rings on Windows.
 *
 * Design (the Windows counterpart of the POSIX shared drainer thread): ONE I/O completion port and
 * ONE drainer thread serve every pipe of every process, so a thousand sessions cost a thousand
 * pending overlapped reads, not two thousand blocked threads.  Overlapped I/O needs a pipe opened
 * with FILE_FLAG_OVERLAPPED, which CreatePipe cannot give, so each output pipe is a uniquely named
 * byte pipe (lsr_win_output_pipe): our read end is overlapped and never inheritable, the child's
 * write end is inheritable and handed to exactly one CreateProcessW through a handle list.
 *
 * Every reader state change runs on the drainer thread; other threads only post requests to it.
 * A reader's owner (the process object) is reference counted: the drainer holds one reference per
 * started reader, dropped once the reader is finished (pipe closed, ring at EOF), and one per
 * posted detach request, dropped once handled, so the owner can never be freed under a pending
 * read.
 */
#ifndef LSR_DRAIN_WINDOWS_H
#define LSR_DRAIN_WINDOWS_H

#include <stdint.h>
#include "winerr_windows.h"
#include "ringbuf.h"

#define LSR_WIN_READ_CHUNK 8192   /* bytes per overlapped read; the pipe itself buffers 64 KiB */

typedef struct lsr_win_reader {
    OVERLAPPED ov;              /* the one read in flight */
    HANDLE pipe;                /* our overlapped read end; closed by the drainer when finished */
    lsr_ring *ring;
    void (*release)(void *owner);
    void *owner;
    int pending;                /* drainer thread only: a read is in flight */
    int finished;               /* drainer thread only: pipe closed, ring at EOF */
    int detaching;              /* drainer thread only: finish at the next completion */
    DWORD last_error;           /* why reading stopped (ERROR_BROKEN_PIPE = normal end) */
    uint8_t buf[LSR_WIN_READ_CHUNK];
} lsr_win_reader;

/* Creates one output pipe: *parent_read (overlapped, not inheritable) and *child_write
 * (inheritable; close it once the child has been created).  Returns 0, or -1 with *err
 * ("CreateNamedPipeW: ...", "CreateFileW(pipe): ..."); nothing stays open then. */
int lsr_win_output_pipe(HANDLE *parent_read, HANDLE *child_write, lsr_error *err);

/* Starts the shared drainer (once per process) so that later calls cannot fail on it.
 * Returns 0, or -1 with *err ("CreateIoCompletionPort: ...", "CreateThread: ..."). */
int lsr_win_drain_init(lsr_error *err);

/* Hands pipe to the drainer, which appends everything read to ring and sets the ring's EOF when
 * the pipe ends (all write ends closed) or fails.  The caller must already hold one reference on
 * owner for the drainer; release(owner) is called from the drainer thread when the reader is
 * finished.  On success the drainer owns pipe.  Returns 0, or -1 with *err
 * ("CreateIoCompletionPort: ...", "PostQueuedCompletionStatus: ..."): then nothing was taken, the
 * reference stays with the caller and pipe is still the caller's to close. */
int lsr_win_drain_start(lsr_win_reader *r, HANDLE pipe, lsr_ring *ring,
                        void (*release)(void *owner), void *owner, lsr_error *err);

/* Asks the drainer to stop reading: the pending read is cancelled, the pipe closed and the ring
 * gets EOF (bytes already appended stay).  Returns at once; the ring's EOF tells when it is done.
 * The caller must hold one extra reference on the owner for the request; the drainer releases it
 * after handling it (also when the reader had already finished).  Returns 0, or -1 with *err
 * ("PostQueuedCompletionStatus: ...", reference not taken) when the request cannot be posted. */
int lsr_win_drain_detach(lsr_win_reader *r, lsr_error *err);

#endif /* LSR_DRAIN_WINDOWS_H */
