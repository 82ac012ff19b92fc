/* drain_windows.c - the shared I/O-completion-port drainer of child output pipes
 * (drain_windows.h). */
#include <stddef.h>
#include <string.h>

#include "drain_windows.h"

/* Completion keys: what a dequeued packet means. */
#define PKT_READ ((ULONG_PTR)1)     /* an overlapped ReadFile finished */
#define PKT_START ((ULONG_PTR)2)    /* lsr_win_drain_start: issue the first read */
#define PKT_DETACH ((ULONG_PTR)3)   /* lsr_win_drain_detach: stop reading */

#define PIPE_BUFFER_BYTES 65536

static INIT_ONCE g_once = INIT_ONCE_STATIC_INIT;
static HANDLE g_port;
static volatile LONG g_pipe_serial;

/* ---------------------------------------------------------------- output pipes */

/* Appends the decimal digits of v to w at *pos.  Never fails (w is large enough). */
static void put_decimal(wchar_t *w, size_t *pos, unsigned long long v)
{
    wchar_t digits[24];
    int n = 0;
    do {
        digits[n++] = (wchar_t)(L'0' + (int)(v % 10));
        v /= 10;
    } while (v != 0);
    while (n > 0)
        w[(*pos)++] = digits[--n];
}

int lsr_win_output_pipe(HANDLE *parent_read, HANDLE *child_write, lsr_error *err)
{
    static const wchar_t prefix[] = L"\\\\.\\pipe\\luaskills-";
    /* A name someone else already holds fails with ERROR_ACCESS_DENIED (we ask for the first
     * instance): try a few fresh names before giving up. */
    for (int attempt = 0;; attempt++) {
        wchar_t name[96];
        size_t pos = 0;
        memcpy(name, prefix, sizeof(prefix) - sizeof(wchar_t));
        pos = sizeof(prefix) / sizeof(wchar_t) - 1;
        put_decimal(name, &pos, GetCurrentProcessId());
        name[pos++] = L'-';
        put_decimal(name, &pos, (unsigned long long)(unsigned long)InterlockedIncrement(&g_pipe_serial));
        name[pos++] = L'-';
        put_decimal(name, &pos, GetTickCount64());
        name[pos] = L'\0';

        HANDLE server = CreateNamedPipeW(
            name, PIPE_ACCESS_INBOUND | FILE_FLAG_OVERLAPPED | FILE_FLAG_FIRST_PIPE_INSTANCE,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, 1,
            PIPE_BUFFER_BYTES, PIPE_BUFFER_BYTES, 0, NULL);
        if (server == INVALID_HANDLE_VALUE) {
            DWORD code = GetLastError();
            if ((code == ERROR_ACCESS_DENIED || code == ERROR_PIPE_BUSY) && attempt < 8)
                continue;
            lsr_win_error(err, "CreateNamedPipeW", code);
            return -1;
        }
        SECURITY_ATTRIBUTES inheritable = { sizeof(SECURITY_ATTRIBUTES), NULL, TRUE };
        /* FILE_READ_ATTRIBUTES lets the child query its stdout (GetFileType, isatty checks). */
        HANDLE client = CreateFileW(name, GENERIC_WRITE | FILE_READ_ATTRIBUTES, 0, &inheritable,
                                    OPEN_EXISTING, 0, NULL);
        if (client == INVALID_HANDLE_VALUE) {
            lsr_win_error_last(err, "CreateFileW(pipe)");
            CloseHandle(server);
            return -1;
        }
        *parent_read = server;
        *child_write = client;
        return 0;
    }
}

/* ---------------------------------------------------------------- drainer thread */

/* Ends a reader: closes the pipe, sets the ring's EOF, drops the drainer's reference.  The owner
 * (and r with it) may be freed by the release, so nothing touches r afterwards. */
static void finish(lsr_win_reader *r)
{
    if (r->finished)
        return;
    r->finished = 1;
    if (r->pipe != NULL)
        CloseHandle(r->pipe);
    r->pipe = NULL;
    lsr_ring_set_eof(r->ring);
    r->release(r->owner);
}

/* Issues the next overlapped read; a read that cannot even start ends the reader. */
static void issue_read(lsr_win_reader *r)
{
    memset(&r->ov, 0, sizeof(r->ov));
    /* The handle is bound to the port, so even an immediate success queues a packet. */
    if (ReadFile(r->pipe, r->buf, sizeof(r->buf), NULL, &r->ov) || GetLastError() == ERROR_IO_PENDING) {
        r->pending = 1;
        return;
    }
    r->last_error = GetLastError();
    finish(r);
}

static void on_read_done(lsr_win_reader *r, BOOL ok, DWORD n, DWORD code)
{
    r->pending = 0;
    if (n > 0)
        lsr_ring_append(r->ring, r->buf, n);
    if (!ok) {
        /* ERROR_BROKEN_PIPE: every write end is closed, the normal end of the stream. */
        r->last_error = code;
        finish(r);
    } else if (r->detaching) {
        r->last_error = ERROR_OPERATION_ABORTED;
        finish(r);
    } else {
        issue_read(r);   /* a zero-byte read is a zero-byte write by the child, not EOF */
    }
}

static void on_detach(lsr_win_reader *r)
{
    /* The request's own reference keeps r alive until the release at the end. */
    void (*release)(void *) = r->release;
    void *owner = r->owner;
    if (!r->finished) {
        r->detaching = 1;
        if (!r->pending)
            finish(r);
        else if (!CancelIoEx(r->pipe, &r->ov) && GetLastError() != ERROR_NOT_FOUND) {
            /* Cannot cancel: closing the handle aborts the read instead. */
            CloseHandle(r->pipe);
            r->pipe = NULL;
        }
        /* A read was in flight: its packet (cancelled, or completed just before) still arrives
         * and finishes the reader, so r must stay untouched until then. */
    }
    release(owner);
}

static DWORD WINAPI drainer_main(LPVOID unused)
{
    (void)unused;
    for (;;) {
        DWORD n = 0;
        ULONG_PTR key = 0;
        OVERLAPPED *ov = NULL;
        BOOL ok = GetQueuedCompletionStatus(g_port, &n, &key, &ov, INFINITE);
        DWORD code = ok ? 0 : GetLastError();
        if (ov == NULL) {
            /* The port itself failed; it is never closed, so this is not expected.  Do not spin. */
            Sleep(10);
            continue;
        }
        lsr_win_reader *r = CONTAINING_RECORD(ov, lsr_win_reader, ov);
        if (key == PKT_START)
            issue_read(r);
        else if (key == PKT_DETACH)
            on_detach(r);
        else
            on_read_done(r, ok, n, code);
    }
    return 0;
}

static BOOL CALLBACK start_drainer(PINIT_ONCE once, PVOID param, PVOID *context)
{
    (void)once;
    (void)context;
    lsr_error *err = (lsr_error *)param;
    HANDLE port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (port == NULL) {
        lsr_win_error_last(err, "CreateIoCompletionPort");
        return FALSE;
    }
    g_port = port;
    /* The drainer lives as long as the process; a small stack is plenty. */
    HANDLE thread = CreateThread(NULL, 64 * 1024, drainer_main, NULL,
                                 STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (thread == NULL) {
        lsr_win_error_last(err, "CreateThread");
        g_port = NULL;
        CloseHandle(port);
        return FALSE;   /* InitOnce lets the next caller try again */
    }
    CloseHandle(thread);
    return TRUE;
}

int lsr_win_drain_init(lsr_error *err)
{
    lsr_error local;
    if (err == NULL)
        err = &local;
    err->code = 0;
    err->message[0] = '\0';
    if (!InitOnceExecuteOnce(&g_once, start_drainer, err, NULL)) {
        if (err->message[0] == '\0')
            lsr_win_error_last(err, "InitOnceExecuteOnce");
        return -1;
    }
    return 0;
}

int lsr_win_drain_start(lsr_win_reader *r, HANDLE pipe, lsr_ring *ring,
                        void (*release)(void *owner), void *owner, lsr_error *err)
{
    if (lsr_win_drain_init(err) != 0)
        return -1;
    memset(r, 0, offsetof(lsr_win_reader, buf));
    r->pipe = pipe;
    r->ring = ring;
    r->release = release;
    r->owner = owner;
    if (CreateIoCompletionPort(pipe, g_port, PKT_READ, 0) == NULL) {
        lsr_win_error_last(err, "CreateIoCompletionPort");
        r->pipe = NULL;
        return -1;
    }
    /* The first read is issued by the drainer too, so only its thread touches reader state. */
    if (!PostQueuedCompletionStatus(g_port, 0, PKT_START, &r->ov)) {
        lsr_win_error_last(err, "PostQueuedCompletionStatus");
        r->pipe = NULL;
        return -1;
    }
    return 0;
}

int lsr_win_drain_detach(lsr_win_reader *r, lsr_error *err)
{
    if (!PostQueuedCompletionStatus(g_port, 0, PKT_DETACH, &r->ov)) {
        lsr_win_error_last(err, "PostQueuedCompletionStatus");
        return -1;
    }
    return 0;
}
