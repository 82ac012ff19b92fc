/* proc_windows.c - proc.h on Windows: CreateProcessW in a Job Object (ToolHelp fallback), piped
 * stdio drained by the shared completion-port drainer, non-reaping status from the process handle.
 *
 * Spawn order matters: the child is created suspended, put into its own job, given its readers
 * and exit watcher, and only then resumed, so it cannot start a grandchild outside the job.
 * A process object is reference counted (owner + one per running reader + one per pending detach
 * request) because the drainer thread may still be finishing a read after lsr_proc_free returns.
 *
 * Notes
 * - A bare program name is looked up on PATH (the child's when spec->env sets one), then the system
 *   and Windows directories, "<name>.exe" first; a name not found there is left to CreateProcessW's
 *   own search, so a missing program fails as "CreateProcessW: ... (error 2)".  Batch files are
 *   refused: cmd.exe would re-parse their arguments.
 * - Only the child's three stdio ends are inherited (PROC_THREAD_ATTRIBUTE_HANDLE_LIST).  They are
 *   inheritable from their creation until the child exists, so a CreateProcess elsewhere in the
 *   host that inherits handles WITHOUT a handle list could pick them up in that window (Python's
 *   subprocess uses a handle list); our own parent ends are never inheritable.
 * - The root's exit wakes readers through a thread-pool wait (RegisterWaitForSingleObject), which
 *   serves up to 63 processes per pool thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "proc_windows.h"
#include "drain_windows.h"
#include "tree_windows.h"

#define TREE_KILL_WAIT_MS 2000   /* how long the whole tree may take to die after the kill */
#define ROOT_EXIT_WAIT_MS 2000   /* ... and the root, checked separately */
#define PIPE_EOF_WAIT_MS 1000    /* proc.h: pipes still open after this are detached */
#define DETACH_WAIT_MS 5000      /* a detach is a cancelled read: quick, but stay bounded */
#define STDIN_PIPE_BYTES 65536

struct lsr_proc {
    volatile LONG refs;
    HANDLE process;
    DWORD pid;
    HANDLE job;                 /* NULL with the snapshot strategy */
    int strategy;               /* LSR_WIN_TREE_JOB / LSR_WIN_TREE_SNAPSHOT */
    int broke_away;
    HANDLE exit_wait;           /* RegisterWaitForSingleObject: signals notify on exit */

    lsr_mutex term_mu;          /* serialises lsr_proc_terminate */
    lsr_mutex state_mu;         /* guards final / final_ready */
    int final_ready;
    lsr_exit_status final;

    lsr_mutex stdin_mu;
    HANDLE stdin_w;             /* NULL once closed, or with LSR_STDIN_NULL */
    int stdin_writers;          /* writes in progress */
    int stdin_closing;          /* close requested while a write was running */

    lsr_notify notify;
    int notify_ready;
    lsr_ring rings[2];          /* stdout, stderr */
    int rings_ready;
    lsr_win_reader readers[2];
    int reader_started[2];
    int detach_posted[2];       /* guarded by term_mu (or single-threaded in free) */
};

static volatile LONG g_test_flags;

/* ---------------------------------------------------------------- lifetime */

/* Frees everything; the last reference is gone.  Never fails. */
static void proc_destroy(lsr_proc *p)
{
    if (p->stdin_w != NULL)
        CloseHandle(p->stdin_w);
    if (p->job != NULL)
        CloseHandle(p->job);   /* KILL_ON_JOB_CLOSE: nothing of the tree survives this */
    if (p->process != NULL)
        CloseHandle(p->process);
    for (int i = 0; i < p->rings_ready; i++)
        lsr_ring_destroy(&p->rings[i]);
    if (p->notify_ready)
        lsr_notify_destroy(&p->notify);
    lsr_mutex_destroy(&p->stdin_mu);
    lsr_mutex_destroy(&p->state_mu);
    lsr_mutex_destroy(&p->term_mu);
    free(p);
}

/* Drops one reference (the drainer calls this from its thread).  Never fails. */
static void proc_release(void *owner)
{
    lsr_proc *p = (lsr_proc *)owner;
    if (InterlockedDecrement(&p->refs) == 0)
        proc_destroy(p);
}

/* Called on a thread-pool thread when the root exits: wakes readers waiting on the notifier. */
static VOID CALLBACK on_root_exit(PVOID ctx, BOOLEAN timed_out)
{
    (void)timed_out;
    lsr_notify_signal(&((lsr_proc *)ctx)->notify);
}

/* ---------------------------------------------------------------- wide strings */

typedef struct wbuf {
    wchar_t *s;
    size_t len;
    size_t cap;
    int oom;
} wbuf;

static void wb_put(wbuf *b, const wchar_t *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        wchar_t *grown = (wchar_t *)realloc(b->s, cap * sizeof(wchar_t));
        if (grown == NULL) {
            b->oom = 1;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n * sizeof(wchar_t));
    b->len += n;
    b->s[b->len] = L'\0';
}

static void wb_repeat(wbuf *b, wchar_t c, size_t n)
{
    while (n-- > 0)
        wb_put(b, &c, 1);
}

/* Appends one argument so that the MSVCRT / CommandLineToArgvW parser gives it back unchanged:
 * quoted when empty or holding blanks or quotes; backslashes are doubled only where they precede
 * a quote (an escaped one or the closing one). */
static void append_arg(wbuf *b, const wchar_t *a)
{
    if (*a != L'\0' && wcspbrk(a, L" \t\n\v\"") == NULL) {
        wb_put(b, a, wcslen(a));
        return;
    }
    wb_put(b, L"\"", 1);
    for (const wchar_t *s = a;; s++) {
        size_t slashes = 0;
        while (*s == L'\\') {
            slashes++;
            s++;
        }
        if (*s == L'\0') {
            wb_repeat(b, L'\\', slashes * 2);
            break;
        }
        if (*s == L'"') {
            wb_repeat(b, L'\\', slashes * 2 + 1);
        } else {
            wb_repeat(b, L'\\', slashes);
        }
        wb_put(b, s, 1);
    }
    wb_put(b, L"\"", 1);
}

static int ends_with_ci(const wchar_t *s, const wchar_t *suffix)
{
    size_t n = wcslen(s), m = wcslen(suffix);
    return n >= m && CompareStringOrdinal(s + n - m, (int)m, suffix, (int)m, TRUE) == CSTR_EQUAL;
}

/* Batch files run through cmd.exe, whose quoting rules differ from the MSVCRT ones: arguments
 * could be reinterpreted as commands.  No shell is involved here, so they are refused. */
static int is_batch(const wchar_t *name)
{
    return ends_with_ci(name, L".bat") || ends_with_ci(name, L".cmd");
}

/* "Program, arg1, ..." as one command line.  Returns a malloc'ed string, or NULL with *err. */
static wchar_t *build_command_line(const wchar_t *program, const lsr_proc_spec *spec, lsr_error *err)
{
    wbuf b = { NULL, 0, 0, 0 };
    /* argv[0] is parsed without backslash escapes: quote it whole (quotes cannot occur in it). */
    wb_put(&b, L"\"", 1);
    wb_put(&b, program, wcslen(program));
    wb_put(&b, L"\"", 1);
    for (size_t i = 0; i < spec->nargs; i++) {
        if (spec->args[i] == NULL) {
            free(b.s);
            lsr_error_setf(err, EINVAL, "args: argument %lu is NULL", (unsigned long)i);
            return NULL;
        }
        wchar_t *w = lsr_utf8_to_wide(spec->args[i], "args", err);
        if (w == NULL) {
            free(b.s);
            return NULL;
        }
        wb_put(&b, L" ", 1);
        append_arg(&b, w);
        free(w);
    }
    if (b.oom) {
        free(b.s);
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return NULL;
    }
    return b.s;
}

/* Case-insensitive ordinal order of the names of two "NAME=value" entries. */
static int env_name_cmp(const wchar_t *a, const wchar_t *b)
{
    const wchar_t *ea = wcschr(a + 1, L'='), *eb = wcschr(b + 1, L'=');
    return CompareStringOrdinal(a, (int)(ea - a), b, (int)(eb - b), TRUE) - CSTR_EQUAL;
}

/* The UTF-16 environment block for CREATE_UNICODE_ENVIRONMENT, sorted by name as Windows
 * expects (a stable sort: duplicates keep their order).  Returns malloc'ed memory, or NULL with
 * *err. */
static wchar_t *build_env_block(const char *const *env, lsr_error *err)
{
    size_t n = 0;
    while (env[n] != NULL)
        n++;
    wchar_t **items = (wchar_t **)calloc(n ? n : 1, sizeof(wchar_t *));
    wchar_t *block = NULL;
    if (items == NULL) {
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return NULL;
    }
    size_t total = 2;
    for (size_t i = 0; i < n; i++) {
        items[i] = lsr_utf8_to_wide(env[i], "env", err);
        if (items[i] == NULL)
            goto done;
        /* A leading '=' belongs to the name (Windows keeps "=C:=C:\\dir" entries). */
        if (items[i][0] == L'\0' || wcschr(items[i] + 1, L'=') == NULL) {
            lsr_error_setf(err, EINVAL, "env: entry without '=': %s", env[i]);
            goto done;
        }
        total += wcslen(items[i]) + 1;
    }
    for (size_t i = 1; i < n; i++) {
        wchar_t *cur = items[i];
        size_t j = i;
        while (j > 0 && env_name_cmp(items[j - 1], cur) > 0) {
            items[j] = items[j - 1];
            j--;
        }
        items[j] = cur;
    }
    block = (wchar_t *)malloc(total * sizeof(wchar_t));
    if (block == NULL) {
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        goto done;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = wcslen(items[i]) + 1;
        memcpy(block + pos, items[i], len * sizeof(wchar_t));
        pos += len;
    }
    block[pos++] = L'\0';
    if (n == 0)
        block[pos++] = L'\0';   /* an empty block is still two NULs */
done:
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
    return block;
}

/* The PATH the program is looked up on: the child's when spec->env sets one, else ours, then the
 * system and Windows directories.  Returns malloc'ed memory, or NULL with *err. */
static wchar_t *search_path(const lsr_proc_spec *spec, lsr_error *err)
{
    wbuf b = { NULL, 0, 0, 0 };
    const char *child_path = NULL;
    if (spec->env != NULL)
        for (size_t i = 0; spec->env[i] != NULL; i++)
            if (_strnicmp(spec->env[i], "PATH=", 5) == 0)
                child_path = spec->env[i] + 5;
    if (child_path != NULL) {
        wchar_t *w = lsr_utf8_to_wide(child_path, "env PATH", err);
        if (w == NULL)
            return NULL;
        wb_put(&b, w, wcslen(w));
        free(w);
    } else {
        DWORD need = GetEnvironmentVariableW(L"PATH", NULL, 0);
        if (need > 0) {
            wchar_t *w = (wchar_t *)malloc(need * sizeof(wchar_t));
            if (w != NULL) {
                DWORD got = GetEnvironmentVariableW(L"PATH", w, need);
                if (got > 0 && got < need)
                    wb_put(&b, w, got);
                free(w);
            }
        }
    }
    wchar_t dir[MAX_PATH + 1];
    UINT n = GetSystemDirectoryW(dir, MAX_PATH + 1);
    if (n > 0 && n <= MAX_PATH) {
        wb_put(&b, L";", 1);
        wb_put(&b, dir, n);
    }
    n = GetWindowsDirectoryW(dir, MAX_PATH + 1);
    if (n > 0 && n <= MAX_PATH) {
        wb_put(&b, L";", 1);
        wb_put(&b, dir, n);
    }
    if (b.oom || b.s == NULL) {
        free(b.s);
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return NULL;
    }
    return b.s;
}

/* Looks a bare program name up on the search path, trying "<name>.exe" first, then the name as
 * given when it has an extension.  *found receives a malloc'ed full path, or NULL when the name
 * has a directory part or was not found: CreateProcessW then resolves it itself (and reports a
 * missing program).  Returns 0, or -1 with *err. */
static int resolve_program(const wchar_t *program, const lsr_proc_spec *spec, wchar_t **found,
                           lsr_error *err)
{
    *found = NULL;
    if (wcspbrk(program, L"\\/:") != NULL)
        return 0;
    wchar_t *path = search_path(spec, err);
    if (path == NULL)
        return -1;
    size_t len = wcslen(program);
    wchar_t *with_exe = (wchar_t *)malloc((len + 5) * sizeof(wchar_t));
    wchar_t *out = (wchar_t *)malloc(32768 * sizeof(wchar_t));
    if (with_exe == NULL || out == NULL) {
        free(path);
        free(with_exe);
        free(out);
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return -1;
    }
    memcpy(with_exe, program, len * sizeof(wchar_t));
    memcpy(with_exe + len, L".exe", 5 * sizeof(wchar_t));
    const wchar_t *candidates[2];
    int ncand = 0;
    if (!ends_with_ci(program, L".exe"))
        candidates[ncand++] = with_exe;
    if (wcschr(program, L'.') != NULL)
        candidates[ncand++] = program;
    for (int i = 0; i < ncand && *found == NULL; i++) {
        DWORD got = SearchPathW(path, candidates[i], NULL, 32768, out, NULL);
        if (got > 0 && got < 32768) {
            DWORD attrs = GetFileAttributesW(out);
            if (attrs != INVALID_FILE_ATTRIBUTES && !(attrs & FILE_ATTRIBUTE_DIRECTORY)) {
                *found = out;
                out = NULL;
            }
        }
    }
    free(path);
    free(with_exe);
    free(out);
    return 0;
}

/* ---------------------------------------------------------------- spawn */

typedef struct child_ends {
    HANDLE in, out, err;        /* inheritable ends handed to the child */
} child_ends;

static void close_child_ends(child_ends *c)
{
    if (c->in != NULL)
        CloseHandle(c->in);
    if (c->out != NULL)
        CloseHandle(c->out);
    if (c->err != NULL)
        CloseHandle(c->err);
    c->in = c->out = c->err = NULL;
}

/* Creates the three pipes (or NUL for stdin).  Our ends go into p, the child's into *c.
 * Returns 0, or -1 with *err; ends created so far are left in p / *c for the caller to close. */
static int make_stdio(lsr_proc *p, int stdin_mode, child_ends *c, HANDLE out_read[2],
                      lsr_error *err)
{
    if (stdin_mode == LSR_STDIN_PIPE) {
        if (!CreatePipe(&c->in, &p->stdin_w, NULL, STDIN_PIPE_BYTES)) {
            c->in = p->stdin_w = NULL;
            lsr_win_error_last(err, "CreatePipe");
            return -1;
        }
        if (!SetHandleInformation(c->in, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT)) {
            lsr_win_error_last(err, "SetHandleInformation");
            return -1;
        }
    } else {
        SECURITY_ATTRIBUTES inheritable = { sizeof(SECURITY_ATTRIBUTES), NULL, TRUE };
        c->in = CreateFileW(L"NUL", GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE, &inheritable,
                            OPEN_EXISTING, 0, NULL);
        if (c->in == INVALID_HANDLE_VALUE) {
            c->in = NULL;
            lsr_win_error_last(err, "CreateFileW(NUL)");
            return -1;
        }
    }
    if (lsr_win_output_pipe(&out_read[0], &c->out, err) != 0)
        return -1;
    if (lsr_win_output_pipe(&out_read[1], &c->err, err) != 0)
        return -1;
    return 0;
}

/* CreateProcessW, suspended, inheriting exactly the three child ends.  Breaks away from our own
 * job when we are in one, and retries without breakaway when that is denied.  Returns 0 with
 * *pi filled, or -1 with *err. */
static int create_child(lsr_proc *p, const wchar_t *app, wchar_t *cmdline, wchar_t *env,
                        const wchar_t *cwd, child_ends *c, PROCESS_INFORMATION *pi, lsr_error *err)
{
    BOOL in_job = FALSE;
    if (!IsProcessInJob(GetCurrentProcess(), NULL, &in_job)) {
        lsr_win_error_last(err, "IsProcessInJob");
        return -1;
    }
    SIZE_T size = 0;
    InitializeProcThreadAttributeList(NULL, 1, 0, &size);   /* fails by design: asks the size */
    LPPROC_THREAD_ATTRIBUTE_LIST attrs = (LPPROC_THREAD_ATTRIBUTE_LIST)malloc(size ? size : 64);
    if (attrs == NULL) {
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return -1;
    }
    if (!InitializeProcThreadAttributeList(attrs, 1, 0, &size)) {
        lsr_win_error_last(err, "InitializeProcThreadAttributeList");
        free(attrs);
        return -1;
    }
    HANDLE inherit[3] = { c->in, c->out, c->err };
    int rc = -1;
    if (!UpdateProcThreadAttribute(attrs, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST, inherit,
                                   sizeof(inherit), NULL, NULL)) {
        lsr_win_error_last(err, "UpdateProcThreadAttribute");
        goto done;
    }
    STARTUPINFOEXW si;
    memset(&si, 0, sizeof(si));
    si.StartupInfo.cb = sizeof(si);
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    si.StartupInfo.hStdInput = c->in;
    si.StartupInfo.hStdOutput = c->out;
    si.StartupInfo.hStdError = c->err;
    si.lpAttributeList = attrs;
    DWORD flags = CREATE_NEW_PROCESS_GROUP | CREATE_UNICODE_ENVIRONMENT | CREATE_SUSPENDED
                  | EXTENDED_STARTUPINFO_PRESENT;
    if (in_job)
        flags |= CREATE_BREAKAWAY_FROM_JOB;
    BOOL ok = CreateProcessW(app, cmdline, NULL, NULL, TRUE, flags, env, cwd, &si.StartupInfo, pi);
    if (!ok && in_job && GetLastError() == ERROR_ACCESS_DENIED) {
        /* Our job does not allow breakaway: the child stays in it too (nested under its own job
         * where the system supports that). */
        flags &= ~(DWORD)CREATE_BREAKAWAY_FROM_JOB;
        ok = CreateProcessW(app, cmdline, NULL, NULL, TRUE, flags, env, cwd, &si.StartupInfo, pi);
    } else if (ok && in_job) {
        p->broke_away = 1;
    }
    if (!ok) {
        lsr_win_error_last(err, "CreateProcessW");
        goto done;
    }
    rc = 0;
done:
    DeleteProcThreadAttributeList(attrs);
    free(attrs);
    return rc;
}

/* Checks the parts of spec that need no system call.  Returns 0, or -1 with *err (EINVAL). */
static int check_spec(const lsr_proc_spec *spec, lsr_error *err)
{
    if (spec == NULL || spec->program == NULL || spec->program[0] == '\0') {
        lsr_error_setf(err, EINVAL, "program: must not be empty");
        return -1;
    }
    if (strchr(spec->program, '"') != NULL) {
        lsr_error_setf(err, EINVAL, "program: must not contain '\"' on Windows");
        return -1;
    }
    if (spec->nargs > 0 && spec->args == NULL) {
        lsr_error_setf(err, EINVAL, "args: missing");
        return -1;
    }
    if (spec->buffer_limit == 0) {
        lsr_error_setf(err, EINVAL, "buffer_limit: must be positive");
        return -1;
    }
    if (spec->stdin_mode != LSR_STDIN_PIPE && spec->stdin_mode != LSR_STDIN_NULL) {
        lsr_error_setf(err, EINVAL, "stdin_mode: must be LSR_STDIN_PIPE or LSR_STDIN_NULL");
        return -1;
    }
    return 0;
}

/* Allocates p with its locks, notifier and rings.  Returns NULL with *err. */
static lsr_proc *proc_alloc(size_t buffer_limit, lsr_error *err)
{
    lsr_proc *p = (lsr_proc *)calloc(1, sizeof(*p));
    if (p == NULL) {
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return NULL;
    }
    p->refs = 1;
    lsr_mutex_init(&p->term_mu);
    lsr_mutex_init(&p->state_mu);
    lsr_mutex_init(&p->stdin_mu);
    lsr_notify_init(&p->notify);   /* SRW lock + condition variable: cannot fail on Windows */
    p->notify_ready = 1;
    for (int i = 0; i < 2; i++) {
        int rc = lsr_ring_init(&p->rings[i], buffer_limit, &p->notify);
        if (rc != 0) {
            lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory (%lu byte buffer)",
                           (unsigned long)buffer_limit);
            proc_destroy(p);
            return NULL;
        }
        p->rings_ready = i + 1;
    }
    return p;
}

int lsr_proc_spawn(const lsr_proc_spec *spec, lsr_proc **out, lsr_error *err)
{
    *out = NULL;
    if (check_spec(spec, err) != 0)
        return -1;
    lsr_proc *p = proc_alloc(spec->buffer_limit, err);
    if (p == NULL)
        return -1;
    wchar_t *program = NULL, *app = NULL, *cmdline = NULL, *cwd = NULL, *env = NULL;
    child_ends c = { NULL, NULL, NULL };
    HANDLE out_read[2] = { NULL, NULL };
    PROCESS_INFORMATION pi;
    memset(&pi, 0, sizeof(pi));
    int rc = -1;

    program = lsr_utf8_to_wide(spec->program, "program", err);
    if (program == NULL)
        goto fail;
    if (resolve_program(program, spec, &app, err) != 0)
        goto fail;
    if (is_batch(program) || (app != NULL && is_batch(app))) {
        lsr_error_setf(err, EINVAL, "program: batch files (.bat, .cmd) run through cmd.exe, whose "
                                    "quoting differs; start cmd.exe explicitly");
        goto fail;
    }
    cmdline = build_command_line(program, spec, err);
    if (cmdline == NULL)
        goto fail;
    if (spec->cwd != NULL && (cwd = lsr_utf8_to_wide(spec->cwd, "cwd", err)) == NULL)
        goto fail;
    if (spec->env != NULL && (env = build_env_block(spec->env, err)) == NULL)
        goto fail;
    /* Everything that can fail without a child comes first: then a failure leaves nothing. */
    if (lsr_win_drain_init(err) != 0)
        goto fail;
    if (make_stdio(p, spec->stdin_mode, &c, out_read, err) != 0)
        goto fail;
    p->strategy = LSR_WIN_TREE_SNAPSHOT;
    if (!(InterlockedCompareExchange(&g_test_flags, 0, 0) & LSR_WIN_TEST_FORCE_SNAPSHOT)) {
        if (lsr_win_job_create(&p->job, err) != 0)
            goto fail;
    }
    if (create_child(p, app, cmdline, env, cwd, &c, &pi, err) != 0)
        goto fail;
    p->process = pi.hProcess;
    p->pid = pi.dwProcessId;
    close_child_ends(&c);

    if (p->job != NULL) {
        lsr_error denied;
        int assigned = lsr_win_job_assign(p->job, p->process, &denied);
        if (assigned == 0) {
            p->strategy = LSR_WIN_TREE_JOB;
        } else if (assigned == 1) {
            CloseHandle(p->job);   /* e.g. an outer job that cannot nest: walk the tree instead */
            p->job = NULL;
        } else {
            if (err != NULL)
                *err = denied;
            goto fail_started;
        }
    }
    if (!RegisterWaitForSingleObject(&p->exit_wait, p->process, on_root_exit, p, INFINITE,
                                     WT_EXECUTEONLYONCE)) {
        p->exit_wait = NULL;
        lsr_win_error_last(err, "RegisterWaitForSingleObject");
        goto fail_started;
    }
    for (int i = 0; i < 2; i++) {
        InterlockedIncrement(&p->refs);   /* the drainer's reference for this reader */
        if (lsr_win_drain_start(&p->readers[i], out_read[i], &p->rings[i], proc_release, p, err) != 0) {
            InterlockedDecrement(&p->refs);
            goto fail_started;
        }
        p->reader_started[i] = 1;
        out_read[i] = NULL;
    }
    if (ResumeThread(pi.hThread) == (DWORD)-1) {
        lsr_win_error_last(err, "ResumeThread");
        goto fail_started;
    }
    *out = p;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_PROCS, 1);
    rc = 0;
    goto done;

fail_started:
    /* The child exists but never ran (still suspended): kill it, then the normal teardown. */
    TerminateProcess(p->process, 1);
    for (int i = 0; i < 2; i++)
        if (!p->reader_started[i])
            lsr_ring_set_eof(&p->rings[i]);
    lsr_proc_free(p);
    p = NULL;
fail:
    if (p != NULL)
        proc_release(p);
done:
    close_child_ends(&c);
    for (int i = 0; i < 2; i++)
        if (out_read[i] != NULL)
            CloseHandle(out_read[i]);
    if (pi.hThread != NULL)
        CloseHandle(pi.hThread);
    free(program);
    free(app);
    free(cmdline);
    free(cwd);
    free(env);
    return rc;
}

/* ---------------------------------------------------------------- accessors */

int64_t lsr_proc_pid(const lsr_proc *p)
{
    return (int64_t)p->pid;
}

lsr_ring *lsr_proc_stream(lsr_proc *p, int which)
{
    if (which == LSR_STDOUT)
        return &p->rings[0];
    if (which == LSR_STDERR)
        return &p->rings[1];
    return NULL;
}

lsr_notify *lsr_proc_notify(lsr_proc *p)
{
    return &p->notify;
}

void lsr_proc_win_set_test_flags(unsigned flags)
{
    InterlockedExchange(&g_test_flags, (LONG)flags);
}

int lsr_proc_win_strategy(const lsr_proc *p)
{
    return p->strategy;
}

int lsr_proc_win_broke_away(const lsr_proc *p)
{
    return p->broke_away;
}

HANDLE lsr_proc_win_handle(const lsr_proc *p)
{
    return p->process;
}

/* ---------------------------------------------------------------- stdin */

int lsr_proc_write(lsr_proc *p, const void *data, size_t n, lsr_error *err)
{
    lsr_mutex_lock(&p->stdin_mu);
    if (p->stdin_w == NULL || p->stdin_closing) {
        lsr_mutex_unlock(&p->stdin_mu);
        lsr_error_setf(err, 0, "stdin is closed");
        return -1;
    }
    HANDLE h = p->stdin_w;
    p->stdin_writers++;
    lsr_mutex_unlock(&p->stdin_mu);

    int rc = 0;
    const uint8_t *at = (const uint8_t *)data;
    while (n > 0) {
        DWORD chunk = n > (1u << 30) ? (1u << 30) : (DWORD)n;
        DWORD written = 0;
        if (!WriteFile(h, at, chunk, &written, NULL)) {
            /* A child that closed its stdin or died gives ERROR_NO_DATA / ERROR_BROKEN_PIPE. */
            lsr_win_error_last(err, "WriteFile");
            rc = -1;
            break;
        }
        at += written;
        n -= written;
    }

    lsr_mutex_lock(&p->stdin_mu);
    if (--p->stdin_writers == 0 && p->stdin_closing) {
        CloseHandle(p->stdin_w);
        p->stdin_w = NULL;
        p->stdin_closing = 0;
    }
    lsr_mutex_unlock(&p->stdin_mu);
    return rc;
}

void lsr_proc_close_stdin(lsr_proc *p)
{
    lsr_mutex_lock(&p->stdin_mu);
    if (p->stdin_w != NULL && !p->stdin_closing) {
        if (p->stdin_writers == 0) {
            CloseHandle(p->stdin_w);
            p->stdin_w = NULL;
        } else {
            p->stdin_closing = 1;   /* the last writer closes it */
        }
    }
    lsr_mutex_unlock(&p->stdin_mu);
}

/* ---------------------------------------------------------------- status */

/* Reads the root's state from its handle without changing anything: the handle stays valid and
 * the exit code readable any number of times.  Returns 0, or -1 with *err. */
static int probe(lsr_proc *p, lsr_exit_status *st, lsr_error *err)
{
    memset(st, 0, sizeof(*st));
    DWORD w = WaitForSingleObject(p->process, 0);
    if (w == WAIT_TIMEOUT) {
        st->running = 1;
        st->success = LSR_UNKNOWN;
        return 0;
    }
    if (w != WAIT_OBJECT_0) {
        lsr_win_error_last(err, "WaitForSingleObject");
        return -1;
    }
    DWORD code;
    if (!GetExitCodeProcess(p->process, &code)) {
        lsr_win_error_last(err, "GetExitCodeProcess");
        return -1;
    }
    st->exited = 1;
    st->has_code = 1;
    st->code = (int)code;   /* NTSTATUS crash codes come out negative, as in the reference */
    st->success = code == 0;
    return 0;
}

/* Copies the cached final status.  Returns 1 when there is one. */
static int cached_final(lsr_proc *p, lsr_exit_status *st)
{
    lsr_mutex_lock(&p->state_mu);
    int ready = p->final_ready;
    if (ready)
        *st = p->final;
    lsr_mutex_unlock(&p->state_mu);
    return ready;
}

int lsr_proc_status(lsr_proc *p, lsr_exit_status *st, lsr_error *err)
{
    if (cached_final(p, st))
        return 0;
    return probe(p, st, err);
}

int lsr_proc_wait_exit(lsr_proc *p, int64_t deadline_ms, lsr_exit_status *st, lsr_error *err)
{
    if (cached_final(p, st))
        return 0;
    DWORD wait = INFINITE;
    if (deadline_ms >= 0) {
        int64_t left = deadline_ms - lsr_now_ms();
        wait = left <= 0 ? 0 : left >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)left;
    }
    if (WaitForSingleObject(p->process, wait) == WAIT_FAILED) {
        lsr_win_error_last(err, "WaitForSingleObject");
        return -1;
    }
    return probe(p, st, err);
}

/* ---------------------------------------------------------------- teardown */

/* Waits until both rings reached EOF or the deadline passes.  Returns 1 when both did. */
static int wait_rings_eof(lsr_proc *p, int64_t deadline)
{
    for (;;) {
        uint64_t seen = lsr_notify_seq(&p->notify);
        int eof0, eof1;
        lsr_ring_stats(&p->rings[0], NULL, NULL, NULL, &eof0);
        lsr_ring_stats(&p->rings[1], NULL, NULL, NULL, &eof1);
        if (eof0 && eof1)
            return 1;
        if (lsr_now_ms() >= deadline)
            return 0;
        lsr_notify_wait(&p->notify, seen, deadline);
    }
}

/* Asks the drainer to let go of every reader whose ring has no EOF yet.  term_mu held (or the
 * caller is lsr_proc_free).  Never fails: a request that cannot be posted leaves the reader to
 * end with its pipe, the reference counts keep p alive meanwhile. */
static void detach_readers(lsr_proc *p)
{
    for (int i = 0; i < 2; i++) {
        int eof;
        lsr_ring_stats(&p->rings[i], NULL, NULL, NULL, &eof);
        if (!p->reader_started[i] || p->detach_posted[i] || eof)
            continue;
        InterlockedIncrement(&p->refs);   /* the request's reference */
        if (lsr_win_drain_detach(&p->readers[i], NULL) != 0) {
            InterlockedDecrement(&p->refs);
            continue;
        }
        p->detach_posted[i] = 1;
    }
}

int lsr_proc_terminate(lsr_proc *p, lsr_exit_status *final, lsr_error *err)
{
    lsr_mutex_lock(&p->term_mu);
    if (cached_final(p, final)) {
        lsr_mutex_unlock(&p->term_mu);
        return 0;
    }
    int rc = p->job != NULL ? lsr_win_job_terminate(p->job, TREE_KILL_WAIT_MS, err)
                            : lsr_win_tree_terminate_snapshot(p->process, p->pid,
                                                              TREE_KILL_WAIT_MS, err);
    if (rc != 0) {
        lsr_mutex_unlock(&p->term_mu);
        return -1;
    }
    DWORD w = WaitForSingleObject(p->process, ROOT_EXIT_WAIT_MS);
    if (w != WAIT_OBJECT_0) {
        if (w == WAIT_FAILED)
            lsr_win_error_last(err, "WaitForSingleObject");
        else
            lsr_error_setf(err, WAIT_TIMEOUT, "TerminateProcess: pid %lu still running after %d ms",
                           (unsigned long)p->pid, ROOT_EXIT_WAIT_MS);
        lsr_mutex_unlock(&p->term_mu);
        return -1;
    }
    lsr_exit_status st;
    if (probe(p, &st, err) != 0) {
        lsr_mutex_unlock(&p->term_mu);
        return -1;
    }
    lsr_mutex_lock(&p->state_mu);
    p->final = st;
    p->final_ready = 1;
    lsr_mutex_unlock(&p->state_mu);
    lsr_notify_signal(&p->notify);

    /* The tree is gone, so the pipes end unless something outside it holds a write end. */
    if (!wait_rings_eof(p, lsr_now_ms() + PIPE_EOF_WAIT_MS)) {
        detach_readers(p);
        wait_rings_eof(p, lsr_now_ms() + DETACH_WAIT_MS);
    }
    lsr_mutex_unlock(&p->term_mu);
    *final = st;
    return 0;
}

void lsr_proc_free(lsr_proc *p)
{
    if (p == NULL)
        return;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_PROCS, -1);
    if (p->process != NULL) {
        lsr_exit_status st;
        lsr_error ignored;
        lsr_proc_terminate(p, &st, &ignored);
    }
    if (p->exit_wait != NULL) {
        /* Blocks until a callback already running has returned: it uses p. */
        UnregisterWaitEx(p->exit_wait, INVALID_HANDLE_VALUE);
        p->exit_wait = NULL;
    }
    lsr_mutex_lock(&p->term_mu);
    detach_readers(p);
    lsr_mutex_unlock(&p->term_mu);
    proc_release(p);
}

/* The Windows readers fail their own reads in place (drain_windows.c): no shared drainer can
 * stop behind a client's back. */
int lsr_proc_io_error(lsr_proc *p, lsr_error *err)
{
    (void)p;
    (void)err;
    return 0;
}

int lsr_proc_debug_fail_drainer_malloc(int on)
{
    (void)on;
    return -1;
}

/* Not on Windows: the Python side uses taskkill /T there and never calls these. */
int lsr_proc_foreign_tag(char *tag, lsr_error *err)
{
    tag[0] = '\0';
    lsr_set_error(err, ENOSYS, "lsr_proc_foreign_tag");
    return -1;
}

int lsr_proc_foreign_kill(long root, int root_unreaped, const char *tag, lsr_error *err)
{
    (void)root;
    (void)root_unreaped;
    (void)tag;
    lsr_set_error(err, ENOSYS, "lsr_proc_foreign_kill");
    return -1;
}
