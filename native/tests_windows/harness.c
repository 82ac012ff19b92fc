/* harness.c - tests of the Windows process core (proc_windows.c, drain_windows.c, tree_windows.c)
 * against real child processes.  Cross-compiled with mingw-w64 and run under Wine by run.sh, or
 * natively on Windows.  Children are lsrchild.exe, found next to this executable.
 *
 *   harness.exe                  every test; ends with "N passed, M failed"; exit 1 on failures
 *   harness.exe injob MODE       (started by the harness itself) put this process into a job
 *                                (MODE breakaway / nobreakaway: whether it allows breakaway), then
 *                                run the spawn-from-inside-a-job checks
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"
#include "proc_io.h"
#include "proc_windows.h"
#include "tree_windows.h"
#include "pattern.h"

static int g_passed, g_failed;
static char g_reason[1024];
static char g_child[MAX_PATH * 3];     /* UTF-8 path of lsrchild.exe */
static char g_self[MAX_PATH * 3];      /* UTF-8 path of this harness */
static const char *g_prefix = "";      /* indentation of a nested harness's lines */

/* Fails the current test with a message (returns 0 from the test function). */
#define EXPECT(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            snprintf(g_reason, sizeof(g_reason), __VA_ARGS__);                                    \
            return 0;                                                                             \
        }                                                                                         \
    } while (0)

static double now_ms(void)
{
    static LARGE_INTEGER freq;
    LARGE_INTEGER t;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (double)t.QuadPart * 1000.0 / (double)freq.QuadPart;
}

static void run(const char *name, int (*test)(void))
{
    g_reason[0] = '\0';
    double t0 = now_ms();
    int ok = test();
    double dt = now_ms() - t0;
    lsr_proc_win_set_test_flags(0);
    if (ok) {
        g_passed++;
        printf("%sPASS %s (%.0f ms)\n", g_prefix, name, dt);
    } else {
        g_failed++;
        printf("%sFAIL %s: %s\n", g_prefix, name, g_reason);
    }
    fflush(stdout);
}

/* ---------------------------------------------------------------- helpers */

static lsr_proc_spec child_spec(const char *const *args, size_t nargs)
{
    lsr_proc_spec s;
    memset(&s, 0, sizeof(s));
    s.program = g_child;
    s.args = args;
    s.nargs = nargs;
    s.buffer_limit = 1 << 20;
    s.stdin_mode = LSR_STDIN_PIPE;
    return s;
}

/* Output collected from a process's stdout ring. */
typedef struct outbuf {
    char data[65536];
    size_t len;
} outbuf;

/* Drains stdout into o until it holds `lines` lines starting with tag (NULL: any line), EOF, or
 * the deadline.  Returns the number of matching lines. */
static int read_lines(lsr_proc *p, outbuf *o, const char *tag, int lines, int timeout_ms)
{
    int64_t deadline = lsr_now_ms() + timeout_ms;
    lsr_ring *out = lsr_proc_stream(p, LSR_STDOUT);
    lsr_notify *n = lsr_proc_notify(p);
    for (;;) {
        uint64_t seen = lsr_notify_seq(n);
        size_t room = sizeof(o->data) - 1 - o->len;
        o->len += lsr_ring_drain(out, (uint8_t *)o->data + o->len, room);
        o->data[o->len] = '\0';
        int count = 0;
        size_t taglen = tag ? strlen(tag) : 0;
        for (const char *line = o->data; *line;) {
            const char *nl = strchr(line, '\n');
            if (nl == NULL)
                break;
            if (tag == NULL || (strncmp(line, tag, taglen) == 0 && line[taglen] == ' '))
                count++;
            line = nl + 1;
        }
        size_t held;
        int eof;
        lsr_ring_stats(out, &held, NULL, NULL, &eof);
        if (count >= lines || (held == 0 && eof) || lsr_now_ms() >= deadline)
            return count;
        lsr_notify_wait(n, seen, deadline);
    }
}

/* Waits until both rings are at EOF.  Returns 1 when they are. */
static int wait_both_eof(lsr_proc *p, int timeout_ms)
{
    int64_t deadline = lsr_now_ms() + timeout_ms;
    lsr_notify *n = lsr_proc_notify(p);
    for (;;) {
        uint64_t seen = lsr_notify_seq(n);
        int eof0, eof1;
        lsr_ring_stats(lsr_proc_stream(p, LSR_STDOUT), NULL, NULL, NULL, &eof0);
        lsr_ring_stats(lsr_proc_stream(p, LSR_STDERR), NULL, NULL, NULL, &eof1);
        if (eof0 && eof1)
            return 1;
        if (lsr_now_ms() >= deadline)
            return 0;
        lsr_notify_wait(n, seen, deadline);
    }
}

/* The pids of all "<tag> <pid>" lines in o (up to max).  Returns how many. */
static int pids_with_tag(const outbuf *o, const char *tag, DWORD *pids, int max)
{
    int n = 0;
    size_t taglen = strlen(tag);
    for (const char *line = o->data; *line && n < max;) {
        if (strncmp(line, tag, taglen) == 0 && line[taglen] == ' ')
            pids[n++] = (DWORD)strtoul(line + taglen + 1, NULL, 10);
        const char *nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return n;
}

static int is_alive(HANDLE h)
{
    return WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
}

/* Opens SYNCHRONIZE|TERMINATE handles to pids (NULL where it fails). */
static void open_pids(const DWORD *pids, HANDLE *hs, int n)
{
    for (int i = 0; i < n; i++)
        hs[i] = OpenProcess(SYNCHRONIZE | PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION,
                            FALSE, pids[i]);
}

static void close_all(HANDLE *hs, int n)
{
    for (int i = 0; i < n; i++)
        if (hs[i] != NULL)
            CloseHandle(hs[i]);
}

static int ring_eof(lsr_proc *p, int which)
{
    int eof;
    lsr_ring_stats(lsr_proc_stream(p, which), NULL, NULL, NULL, &eof);
    return eof;
}

/* ---------------------------------------------------------------- spawn errors */

static int test_missing_program(void)
{
    lsr_proc_spec s = child_spec(NULL, 0);
    s.program = "lsr-no-such-program-7f3a";
    lsr_proc *p = (lsr_proc *)1;
    lsr_error e;
    int rc = lsr_proc_spawn(&s, &p, &e);
    EXPECT(rc == -1, "spawn returned %d", rc);
    EXPECT(p == NULL, "out not cleared");
    EXPECT(strncmp(e.message, "CreateProcessW: ", 16) == 0, "message: %s", e.message);
    EXPECT(e.code == ERROR_FILE_NOT_FOUND && strstr(e.message, "(error 2)") != NULL,
           "code %d, message: %s", e.code, e.message);
    printf("%s  missing program -> \"%s\"\n", g_prefix, e.message);
    return 1;
}

static int test_missing_path_program(void)
{
    lsr_proc_spec s = child_spec(NULL, 0);
    s.program = "C:\\no\\such\\dir\\prog.exe";
    lsr_proc *p;
    lsr_error e;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1, "spawn succeeded");
    EXPECT(strncmp(e.message, "CreateProcessW: ", 16) == 0 && e.code != 0, "message: %s", e.message);
    return 1;
}

static int test_bad_cwd(void)
{
    const char *args[] = { "exit", "0" };
    lsr_proc_spec s = child_spec(args, 2);
    s.cwd = "C:\\no\\such\\directory";
    lsr_proc *p;
    lsr_error e;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1, "spawn succeeded");
    EXPECT(strncmp(e.message, "CreateProcessW: ", 16) == 0 && e.code != 0, "message: %s", e.message);
    printf("%s  bad cwd -> \"%s\"\n", g_prefix, e.message);
    return 1;
}

static int test_invalid_spec(void)
{
    lsr_proc *p;
    lsr_error e;
    lsr_proc_spec s = child_spec(NULL, 0);
    s.program = "";
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1 && e.code == EINVAL
               && strcmp(e.message, "program: must not be empty") == 0,
           "empty program: %s", e.message);
    s = child_spec(NULL, 0);
    s.buffer_limit = 0;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1 && strcmp(e.message, "buffer_limit: must be positive") == 0,
           "buffer_limit 0: %s", e.message);
    s = child_spec(NULL, 0);
    s.program = "C:\\x\\run.BAT";
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1 && e.code == EINVAL && strstr(e.message, "batch") != NULL,
           "batch file: %s", e.message);
    const char *bad_utf8[] = { "\xff\xfe" };
    s = child_spec(bad_utf8, 1);
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1
               && strncmp(e.message, "MultiByteToWideChar(args): ", 27) == 0,
           "invalid UTF-8: %s", e.message);
    const char *env[] = { "NOEQUALS", NULL };
    s = child_spec(NULL, 0);
    s.env = env;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == -1 && e.code == EINVAL && strstr(e.message, "env") != NULL,
           "env without '=': %s", e.message);
    return 1;
}

/* ---------------------------------------------------------------- command line, env, cwd */

static int run_to_eof(lsr_proc_spec *s, outbuf *o, lsr_exit_status *st)
{
    lsr_proc *p;
    lsr_error e;
    EXPECT(lsr_proc_spawn(s, &p, &e) == 0, "spawn: %s", e.message);
    o->len = 0;
    read_lines(p, o, "\x01never", 1, 10000);
    int eof = ring_eof(p, LSR_STDOUT);
    int rc = lsr_proc_terminate(p, st, &e);
    lsr_proc_free(p);
    EXPECT(eof, "no EOF on stdout within 10 s");
    EXPECT(rc == 0, "terminate: %s", e.message);
    return 1;
}

static int test_args_roundtrip(void)
{
    const char *args[] = { "args",
                           "",
                           "plain",
                           "two words",
                           "quote\"inside",
                           "trailing\\",
                           "trailing space\\",
                           "back\\\\\"slash",
                           "\\\\server\\share\\",
                           "tab\there",
                           "\"",
                           "%PATH%",
                           "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80" };
    size_t n = sizeof(args) / sizeof(args[0]);
    lsr_proc_spec s = child_spec(args, n);
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_exit_status st;
    int ok = run_to_eof(&s, o, &st);
    if (!ok) {
        free(o);
        return 0;
    }
    const char *at = o->data;
    for (size_t i = 1; i < n; i++) {
        size_t left = o->len - (size_t)(at - o->data);
        size_t len = strnlen(at, left);
        if (len == left || strcmp(at, args[i]) != 0) {
            snprintf(g_reason, sizeof(g_reason), "argument %lu: sent [%s], child saw [%.*s]",
                     (unsigned long)i, args[i], (int)len, at);
            free(o);
            return 0;
        }
        at += len + 1;
    }
    free(o);
    EXPECT(st.exited && st.has_code && st.code == 0, "child exit code %d", st.code);
    return 1;
}

static int test_env_block(void)
{
    SetEnvironmentVariableW(L"LSR_INHERITED", L"from-parent");
    const char *show_inherited[] = { "env", "LSR_INHERITED" };
    const char *show_a[] = { "env", "lsr_a" };
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_exit_status st;

    lsr_proc_spec s = child_spec(show_inherited, 2);
    if (!run_to_eof(&s, o, &st))
        goto fail;
    if (strcmp(o->data, "from-parent") != 0) {
        snprintf(g_reason, sizeof(g_reason), "inherited env: got [%s]", o->data);
        goto fail;
    }
    const char *env[] = { "LSR_Z=last", "LSR_A=first \xc3\xa9", "=C:=C:\\", NULL };
    s.env = env;
    if (!run_to_eof(&s, o, &st))
        goto fail;
    if (strcmp(o->data, "<unset>") != 0) {
        snprintf(g_reason, sizeof(g_reason), "custom env leaked LSR_INHERITED=[%s]", o->data);
        goto fail;
    }
    s = child_spec(show_a, 2);
    s.env = env;
    if (!run_to_eof(&s, o, &st))
        goto fail;
    if (strcmp(o->data, "first \xc3\xa9") != 0) {
        snprintf(g_reason, sizeof(g_reason), "custom env: lsr_a=[%s]", o->data);
        goto fail;
    }
    free(o);
    return 1;
fail:
    free(o);
    return 0;
}

static int test_cwd(void)
{
    const char *args[] = { "cwd" };
    lsr_proc_spec s = child_spec(args, 1);
    s.cwd = "C:\\windows";
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_exit_status st;
    int ok = run_to_eof(&s, o, &st);
    int same = ok && _stricmp(o->data, "C:\\windows") == 0;
    if (ok && !same)
        snprintf(g_reason, sizeof(g_reason), "child cwd [%s]", o->data);
    free(o);
    return same;
}

static int test_program_on_path(void)
{
    /* A bare name is looked up on PATH (".exe" appended); cmd.exe is in the system directory. */
    const char *args[] = { "/d", "/c", "echo", "via-path" };
    lsr_proc_spec s = child_spec(args, 4);
    s.program = "cmd";
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_exit_status st;
    int ok = run_to_eof(&s, o, &st);
    int seen = ok && strstr(o->data, "via-path") != NULL;
    if (ok && !seen)
        snprintf(g_reason, sizeof(g_reason), "cmd output [%s]", o->data);
    free(o);
    return seen;
}

static int test_only_stdio_inherited(void)
{
    /* An inheritable handle of ours must not reach the child: the handle list allows only its
     * three stdio ends.  If it leaked, the pipe below would stay open while the child sleeps. */
    SECURITY_ATTRIBUTES inheritable = { sizeof(SECURITY_ATTRIBUTES), NULL, TRUE };
    HANDLE r, w;
    EXPECT(CreatePipe(&r, &w, &inheritable, 0), "CreatePipe failed");
    const char *args[] = { "sleep", "3000" };
    lsr_proc_spec s = child_spec(args, 2);
    lsr_proc *p;
    lsr_error e;
    int rc = lsr_proc_spawn(&s, &p, &e);
    CloseHandle(w);
    if (rc != 0) {
        CloseHandle(r);
        EXPECT(0, "spawn: %s", e.message);
    }
    double t0 = now_ms();
    char byte;
    DWORD n;
    BOOL got = ReadFile(r, &byte, 1, &n, NULL);   /* EOF at once unless the child holds w */
    double dt = now_ms() - t0;
    CloseHandle(r);
    lsr_exit_status st;
    lsr_proc_terminate(p, &st, &e);
    lsr_proc_free(p);
    EXPECT(!got && dt < 1500, "the child inherited an unrelated handle (pipe EOF after %.0f ms)", dt);
    return 1;
}

/* ---------------------------------------------------------------- status */

static int test_status_does_not_reap(void)
{
    const char *args[] = { "exit", "7" };
    lsr_proc_spec s = child_spec(args, 2);
    lsr_proc *p;
    lsr_error e;
    lsr_exit_status st;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn: %s", e.message);
    EXPECT(lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e) == 0, "wait_exit: %s", e.message);
    EXPECT(st.exited && !st.running && st.has_code && st.code == 7 && st.success == 0,
           "after exit: running=%d exited=%d code=%d success=%d", st.running, st.exited, st.code,
           st.success);
    HANDLE h = lsr_proc_win_handle(p);
    for (int i = 0; i < 5; i++) {
        lsr_exit_status again;
        EXPECT(lsr_proc_status(p, &again, &e) == 0, "status #%d: %s", i, e.message);
        EXPECT(again.exited && again.code == 7 && again.success == 0, "status #%d: code %d", i,
               again.code);
        DWORD code = 0;
        EXPECT(GetExitCodeProcess(h, &code) && code == 7, "handle no longer readable (#%d)", i);
        EXPECT(WaitForSingleObject(h, 0) == WAIT_OBJECT_0, "handle not signalled (#%d)", i);
    }
    lsr_exit_status final;
    EXPECT(lsr_proc_terminate(p, &final, &e) == 0, "terminate: %s", e.message);
    EXPECT(final.exited && final.code == 7 && final.success == 0,
           "terminate replaced the exit status: code %d", final.code);
    EXPECT(lsr_proc_status(p, &st, &e) == 0 && st.code == 7, "cached status code %d", st.code);
    EXPECT(lsr_proc_terminate(p, &final, &e) == 0 && final.code == 7, "second terminate");
    lsr_proc_free(p);
    return 1;
}

static int test_status_running_then_killed(void)
{
    const char *args[] = { "sleep", "60000" };
    lsr_proc_spec s = child_spec(args, 2);
    lsr_proc *p;
    lsr_error e;
    lsr_exit_status st;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn: %s", e.message);
    EXPECT(lsr_proc_status(p, &st, &e) == 0, "status: %s", e.message);
    EXPECT(st.running && !st.exited && st.success == LSR_UNKNOWN && !st.has_code, "not running");
    double t0 = now_ms();
    EXPECT(lsr_proc_wait_exit(p, lsr_now_ms() + 200, &st, &e) == 0 && st.running,
           "wait_exit did not time out");
    EXPECT(now_ms() - t0 >= 150, "wait_exit returned early");
    lsr_exit_status final;
    EXPECT(lsr_proc_terminate(p, &final, &e) == 0, "terminate: %s", e.message);
    EXPECT(final.exited && final.has_code && final.code == 1 && final.success == 0,
           "killed status: code %d success %d", final.code, final.success);
    EXPECT(ring_eof(p, LSR_STDOUT) && ring_eof(p, LSR_STDERR), "rings not at EOF after terminate");
    lsr_proc_free(p);
    return 1;
}

/* ---------------------------------------------------------------- draining */

static int check_newest(lsr_proc *p, int which, size_t total, size_t limit)
{
    lsr_ring *r = lsr_proc_stream(p, which);
    size_t held;
    uint64_t written, dropped;
    int eof;
    lsr_ring_stats(r, &held, &written, &dropped, &eof);
    EXPECT(eof, "stream %d: no EOF", which);
    EXPECT(written == total, "stream %d: %llu bytes arrived, %lu written", which,
           (unsigned long long)written, (unsigned long)total);
    EXPECT(held == limit && dropped == total - limit, "stream %d: held %lu dropped %llu", which,
           (unsigned long)held, (unsigned long long)dropped);
    uint8_t *got = (uint8_t *)malloc(limit);
    size_t n = lsr_ring_drain(r, got, limit);
    for (size_t i = 0; i < n; i++) {
        if (got[i] != pattern_byte(total - limit + i, which - 1)) {
            free(got);
            EXPECT(0, "stream %d: byte %lu of the kept window differs", which, (unsigned long)i);
        }
    }
    free(got);
    return 1;
}

static int test_drain_keeps_newest(void)
{
    const char *args[] = { "flood", "300000", "70001" };
    lsr_proc_spec s = child_spec(args, 3);
    s.buffer_limit = 4096;
    lsr_proc *p;
    lsr_error e;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn: %s", e.message);
    /* Wait for EOF on both without reading: the rings must absorb everything on their own. */
    EXPECT(wait_both_eof(p, 15000), "no EOF within 15 s");
    lsr_exit_status st;
    EXPECT(lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e) == 0 && st.exited && st.code == 0,
           "flood child did not exit cleanly (code %d)", st.code);
    int ok = check_newest(p, LSR_STDOUT, 300000, 4096) && check_newest(p, LSR_STDERR, 70001, 4096);
    lsr_proc_terminate(p, &st, &e);
    lsr_proc_free(p);
    return ok;
}

static int test_stdin_roundtrip(void)
{
    const char *args[] = { "cat" };
    lsr_proc_spec s = child_spec(args, 1);
    lsr_proc *p;
    lsr_error e;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn: %s", e.message);
    const char msg[] = "first line\nsecond MARK";
    EXPECT(lsr_proc_write(p, msg, sizeof(msg) - 1, &e) == 0, "write: %s", e.message);
    lsr_marker markers[2] = { { (const uint8_t *)"MARK", 4, 0 }, { NULL, 0, 0 } };
    double t0 = now_ms();
    int rc = lsr_proc_wait_output(p, markers, lsr_now_ms() + 10000);
    EXPECT(rc == LSR_WAIT_READY, "marker not seen (rc %d)", rc);
    double woke = now_ms() - t0;
    lsr_proc_close_stdin(p);
    lsr_proc_close_stdin(p);
    EXPECT(lsr_proc_write(p, "x", 1, &e) == -1 && e.code == 0 && strcmp(e.message, "stdin is closed") == 0,
           "write after close: %s", e.message);
    lsr_exit_status st;
    EXPECT(lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e) == 0 && st.exited && st.code == 0,
           "cat did not exit after stdin EOF");
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    read_lines(p, o, "\x01never", 1, 5000);
    int same = strcmp(o->data, msg) == 0;
    free(o);
    EXPECT(same, "echo differs");
    lsr_proc_terminate(p, &st, &e);
    lsr_proc_free(p);
    printf("%s  marker wake-up after write: %.1f ms\n", g_prefix, woke);
    return 1;
}

static int test_write_to_exited_child(void)
{
    const char *args[] = { "exit", "0" };
    lsr_proc_spec s = child_spec(args, 2);
    lsr_proc *p;
    lsr_error e;
    lsr_exit_status st;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn: %s", e.message);
    EXPECT(lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e) == 0 && st.exited, "no exit");
    int rc = lsr_proc_write(p, "data", 4, &e);
    EXPECT(rc == -1 && strncmp(e.message, "WriteFile: ", 11) == 0
               && (e.code == ERROR_NO_DATA || e.code == ERROR_BROKEN_PIPE),
           "write to dead child: rc %d, %s", rc, e.message);
    lsr_proc_free(p);
    return 1;
}

static int test_stdin_null(void)
{
    const char *args[] = { "cat" };
    lsr_proc_spec s = child_spec(args, 1);
    s.stdin_mode = LSR_STDIN_NULL;
    lsr_proc *p;
    lsr_error e;
    lsr_exit_status st;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn: %s", e.message);
    EXPECT(lsr_proc_write(p, "x", 1, &e) == -1 && strcmp(e.message, "stdin is closed") == 0,
           "write with NUL stdin: %s", e.message);
    EXPECT(lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e) == 0 && st.exited && st.code == 0,
           "cat on NUL did not exit");
    lsr_proc_free(p);
    return 1;
}

static int test_many_sessions(void)
{
    enum { N = 24 };
    const char *args[] = { "flood", "50000", "1000" };
    lsr_proc *ps[N];
    lsr_error e;
    for (int i = 0; i < N; i++) {
        lsr_proc_spec s = child_spec(args, 3);
        s.buffer_limit = 65536;
        if (lsr_proc_spawn(&s, &ps[i], &e) != 0) {
            for (int k = 0; k < i; k++)
                lsr_proc_free(ps[k]);
            EXPECT(0, "spawn #%d: %s", i, e.message);
        }
    }
    int bad = -1;
    uint64_t got = 0;
    for (int i = 0; i < N; i++) {
        wait_both_eof(ps[i], 20000);
        lsr_ring_stats(lsr_proc_stream(ps[i], LSR_STDOUT), NULL, &got, NULL, NULL);
        if (bad < 0 && got != 50000)
            bad = i;
    }
    for (int i = 0; i < N; i++)
        lsr_proc_free(ps[i]);
    EXPECT(bad < 0, "session %d got %llu of 50000 bytes", bad, (unsigned long long)got);
    return 1;
}

/* ---------------------------------------------------------------- process trees */

/* Spawns lsrchild with args, waits for `expect` "<tag> pid" lines, returns their pids/handles. */
static lsr_proc *spawn_tree(const char *const *args, size_t nargs, const char *tag, int expect,
                            DWORD *pids, HANDLE *hs, outbuf *o, lsr_error *e)
{
    lsr_proc_spec s = child_spec(args, nargs);
    lsr_proc *p;
    if (lsr_proc_spawn(&s, &p, e) != 0)
        return NULL;
    o->len = 0;
    int got = read_lines(p, o, tag, expect, 20000);
    if (got < expect) {
        snprintf(e->message, sizeof(e->message), "only %d of %d '%s' lines: [%s]", got, expect,
                 tag, o->data);
        lsr_exit_status st;
        lsr_proc_terminate(p, &st, e);
        lsr_proc_free(p);
        return NULL;
    }
    pids_with_tag(o, tag, pids, expect);
    open_pids(pids, hs, expect);
    return p;
}

static int count_alive(HANDLE *hs, int n)
{
    int alive = 0;
    for (int i = 0; i < n; i++)
        if (hs[i] != NULL && is_alive(hs[i]))
            alive++;
    return alive;
}

static double g_job_teardown_ms = -1, g_snapshot_teardown_ms = -1;

/* Builds a 10-process tree (root, 3 children, 6 grandchildren), ends it with terminate and checks
 * every process is gone.  Stores the teardown time in *ms. */
static int tree10(int strategy, double *ms)
{
    const char *args[] = { "tree", "3", "2" };
    DWORD pids[10];
    HANDLE hs[10];
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 3, "ready", 10, pids, hs, o, &e);
    free(o);
    EXPECT(p != NULL, "tree: %s", e.message);
    int got_strategy = lsr_proc_win_strategy(p);
    int alive_before = count_alive(hs, 10);
    double t0 = now_ms();
    lsr_exit_status st;
    int rc = lsr_proc_terminate(p, &st, &e);
    *ms = now_ms() - t0;
    int alive_after = count_alive(hs, 10);
    int eof = ring_eof(p, LSR_STDOUT) && ring_eof(p, LSR_STDERR);
    close_all(hs, 10);
    lsr_proc_free(p);
    EXPECT(got_strategy == strategy, "strategy %d, wanted %d", got_strategy, strategy);
    EXPECT(alive_before == 10, "only %d of 10 processes alive before teardown", alive_before);
    EXPECT(rc == 0, "terminate: %s", e.message);
    EXPECT(alive_after == 0, "%d processes survived the teardown", alive_after);
    EXPECT(eof, "pipes not at EOF after teardown");
    EXPECT(st.exited && st.code == 1 && st.success == 0, "root status code %d", st.code);
    return 1;
}

static int test_job_kills_grandchild(void)
{
    const char *args[] = { "tree", "1" };
    DWORD pids[2];
    HANDLE hs[2];
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 2, "ready", 2, pids, hs, o, &e);
    free(o);
    EXPECT(p != NULL, "tree: %s", e.message);
    int strategy = lsr_proc_win_strategy(p);
    DWORD grandchild = pids[0] == (DWORD)lsr_proc_pid(p) ? pids[1] : pids[0];
    HANDLE gh = pids[0] == (DWORD)lsr_proc_pid(p) ? hs[1] : hs[0];
    int was_alive = gh != NULL && is_alive(gh);
    lsr_exit_status st;
    int rc = lsr_proc_terminate(p, &st, &e);
    int dead = gh != NULL && WaitForSingleObject(gh, 0) == WAIT_OBJECT_0;
    if (!dead && gh != NULL)
        TerminateProcess(gh, 9);
    close_all(hs, 2);
    lsr_proc_free(p);
    EXPECT(strategy == LSR_WIN_TREE_JOB, "strategy %d, not the job", strategy);
    EXPECT(was_alive, "grandchild %lu not running before teardown", (unsigned long)grandchild);
    EXPECT(rc == 0, "terminate: %s", e.message);
    EXPECT(dead, "grandchild %lu survived the job teardown", (unsigned long)grandchild);
    return 1;
}

static int test_job_tree10(void)
{
    return tree10(LSR_WIN_TREE_JOB, &g_job_teardown_ms);
}

static int test_job_root_exited_descendant_lives(void)
{
    /* The root exits at once; its child lives on.  Teardown must still end it, and the final
     * status is the root's own exit (code 0), not the kill's. */
    const char *args[] = { "spawnexit" };
    DWORD pids[1];
    HANDLE hs[1];
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 1, "escaped", 1, pids, hs, o, &e);
    free(o);
    EXPECT(p != NULL, "spawnexit: %s", e.message);
    lsr_exit_status st;
    lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e);
    int root_exited = st.exited;
    int alive = hs[0] != NULL && is_alive(hs[0]);
    int rc = lsr_proc_terminate(p, &st, &e);
    int dead = hs[0] != NULL && WaitForSingleObject(hs[0], 0) == WAIT_OBJECT_0;
    if (!dead && hs[0] != NULL)
        TerminateProcess(hs[0], 9);
    close_all(hs, 1);
    lsr_proc_free(p);
    EXPECT(root_exited && alive, "setup: root exited %d, descendant alive %d", root_exited, alive);
    EXPECT(rc == 0, "terminate: %s", e.message);
    EXPECT(dead, "descendant survived");
    EXPECT(st.code == 0 && st.success == 1, "final status code %d, wanted the root's 0", st.code);
    return 1;
}

static int test_snapshot_tree10(void)
{
    lsr_proc_win_set_test_flags(LSR_WIN_TEST_FORCE_SNAPSHOT);
    return tree10(LSR_WIN_TREE_SNAPSHOT, &g_snapshot_teardown_ms);
}

static int test_snapshot_skips_after_cutoff(void)
{
    lsr_proc_win_set_test_flags(LSR_WIN_TEST_FORCE_SNAPSHOT);
    const char *args[] = { "tree", "late=1500", "2" };
    DWORD pids[3], late_pid;
    HANDLE hs[3], late = NULL;
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 3, "ready", 3, pids, hs, o, &e);
    if (p == NULL) {
        free(o);
        EXPECT(0, "tree: %s", e.message);
    }
    uint64_t cutoff = lsr_win_now_ticks();
    int got_late = read_lines(p, o, "late", 1, 20000);
    pids_with_tag(o, "late", &late_pid, 1);
    free(o);
    if (got_late == 1)
        open_pids(&late_pid, &late, 1);

    lsr_win_tree t;
    uint64_t root_created = 0;
    int added = -1, has_late = 0, early_found = 0, kill_rc = -1;
    if (lsr_win_process_created(lsr_proc_win_handle(p), &root_created, &e) == 0
        && lsr_win_tree_init(&t, lsr_proc_win_handle(p), (DWORD)lsr_proc_pid(p), root_created, &e) == 0) {
        added = lsr_win_tree_collect(&t, cutoff, &e);
        for (size_t i = 1; i < t.count; i++) {
            if (t.nodes[i].pid == late_pid)
                has_late = 1;
            for (int k = 0; k < 3; k++)
                if (t.nodes[i].pid == pids[k])
                    early_found++;
        }
        kill_rc = lsr_win_tree_kill_from(&t, 1, &e);
        lsr_win_tree_release(&t);
    }
    Sleep(200);
    int early_alive = 0;
    for (int k = 0; k < 3; k++)
        if (pids[k] != (DWORD)lsr_proc_pid(p) && hs[k] != NULL && is_alive(hs[k]))
            early_alive++;
    int late_alive_after_partial = late != NULL && is_alive(late);
    lsr_exit_status st;
    int rc = lsr_proc_terminate(p, &st, &e);   /* a fresh walk now finds the late child too */
    int late_dead_after_full = late != NULL && WaitForSingleObject(late, 0) == WAIT_OBJECT_0;
    if (late != NULL && !late_dead_after_full)
        TerminateProcess(late, 9);
    close_all(hs, 3);
    if (late != NULL)
        CloseHandle(late);
    lsr_proc_free(p);
    EXPECT(got_late == 1 && late != NULL, "the late child did not start");
    EXPECT(added == 2, "collect added %d nodes, wanted the 2 early children (%s)", added,
           added < 0 ? e.message : "");
    EXPECT(early_found == 2 && !has_late, "early found %d, late included %d", early_found, has_late);
    EXPECT(kill_rc == 0, "kill: %s", e.message);
    EXPECT(early_alive == 0, "%d early children survived", early_alive);
    EXPECT(late_alive_after_partial, "the late child was killed although created after the cutoff");
    EXPECT(rc == 0 && late_dead_after_full, "full teardown: rc %d, late dead %d", rc,
           late_dead_after_full);
    return 1;
}

static int test_snapshot_parent_creation_check(void)
{
    /* Children whose creation precedes their supposed parent's are not its children (pid
     * reuse).  Simulated by claiming the root was created now, after its real children. */
    lsr_proc_win_set_test_flags(LSR_WIN_TEST_FORCE_SNAPSHOT);
    const char *args[] = { "tree", "2" };
    DWORD pids[3];
    HANDLE hs[3];
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 2, "ready", 3, pids, hs, o, &e);
    free(o);
    EXPECT(p != NULL, "tree: %s", e.message);
    lsr_win_tree t;
    int with_future_root = -1, with_real_root = -1;
    if (lsr_win_tree_init(&t, lsr_proc_win_handle(p), (DWORD)lsr_proc_pid(p), lsr_win_now_ticks() + 10000000ull, &e) == 0) {
        with_future_root = lsr_win_tree_collect(&t, 0, &e);
        lsr_win_tree_release(&t);
    }
    uint64_t created;
    if (lsr_win_process_created(lsr_proc_win_handle(p), &created, &e) == 0
        && lsr_win_tree_init(&t, lsr_proc_win_handle(p), (DWORD)lsr_proc_pid(p), created, &e) == 0) {
        with_real_root = lsr_win_tree_collect(&t, 0, &e);
        lsr_win_tree_release(&t);
    }
    lsr_exit_status st;
    int rc = lsr_proc_terminate(p, &st, &e);
    int alive = count_alive(hs, 3);
    close_all(hs, 3);
    lsr_proc_free(p);
    EXPECT(with_future_root == 0, "a root 'born later' adopted %d older processes", with_future_root);
    EXPECT(with_real_root == 2, "real root: %d children found", with_real_root);
    EXPECT(rc == 0 && alive == 0, "teardown: rc %d, %d alive", rc, alive);
    return 1;
}

static int test_detach_pipe_held_by_escapee(void)
{
    /* Snapshot mode: a grandchild whose parent already exited cannot be found from the root, and
     * it holds the stdout pipe.  terminate must still return after ~1 s with the rings at EOF. */
    lsr_proc_win_set_test_flags(LSR_WIN_TEST_FORCE_SNAPSHOT);
    const char *args[] = { "orphan" };
    DWORD pid_escaped = 0, pid_mid = 0;
    HANDLE escaped = NULL, mid = NULL;
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc_spec s = child_spec(args, 1);
    lsr_proc *p;
    if (lsr_proc_spawn(&s, &p, &e) != 0) {
        free(o);
        EXPECT(0, "spawn: %s", e.message);
    }
    read_lines(p, o, "escaped", 1, 20000);
    pids_with_tag(o, "escaped", &pid_escaped, 1);
    pids_with_tag(o, "mid", &pid_mid, 1);
    free(o);
    open_pids(&pid_escaped, &escaped, 1);
    open_pids(&pid_mid, &mid, 1);
    if (mid != NULL) {
        WaitForSingleObject(mid, 10000);   /* the link between root and escapee is gone */
        CloseHandle(mid);
    }
    double t0 = now_ms();
    lsr_exit_status st;
    int rc = lsr_proc_terminate(p, &st, &e);
    double dt = now_ms() - t0;
    int eof = ring_eof(p, LSR_STDOUT) && ring_eof(p, LSR_STDERR);
    int escaped_alive = escaped != NULL && is_alive(escaped);
    if (escaped != NULL) {
        TerminateProcess(escaped, 9);
        WaitForSingleObject(escaped, 5000);
        CloseHandle(escaped);
    }
    lsr_proc_free(p);
    EXPECT(pid_escaped != 0 && escaped_alive, "setup: escapee pid %lu alive %d",
           (unsigned long)pid_escaped, escaped_alive);
    EXPECT(rc == 0, "terminate: %s", e.message);
    EXPECT(eof, "rings not at EOF after detach");
    EXPECT(dt >= 900 && dt < 6000, "terminate took %.0f ms, expected ~1000 (pipe wait + detach)", dt);
    printf("%s  terminate with a pipe held by an escapee: %.0f ms\n", g_prefix, dt);
    return 1;
}

static int test_free_without_terminate(void)
{
    const char *args[] = { "tree", "1" };
    DWORD pids[2];
    HANDLE hs[2];
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 2, "ready", 2, pids, hs, o, &e);
    free(o);
    EXPECT(p != NULL, "tree: %s", e.message);
    lsr_proc_free(p);
    int alive = 0;
    for (int i = 0; i < 2; i++)
        if (hs[i] != NULL && WaitForSingleObject(hs[i], 5000) != WAIT_OBJECT_0)
            alive++;
    close_all(hs, 2);
    EXPECT(alive == 0, "%d processes survived lsr_proc_free", alive);
    return 1;
}

/* ---------------------------------------------------------------- inside a job */

/* Runs in "harness.exe injob MODE": this process is already in a job. */
static int g_expect_breakaway;

static int test_injob_spawn(void)
{
    BOOL in_job = FALSE;
    EXPECT(IsProcessInJob(GetCurrentProcess(), NULL, &in_job) && in_job, "harness is not in a job");
    const char *args[] = { "tree", "1" };
    DWORD pids[2];
    HANDLE hs[2];
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    lsr_error e;
    lsr_proc *p = spawn_tree(args, 2, "ready", 2, pids, hs, o, &e);
    free(o);
    EXPECT(p != NULL, "spawn in a job: %s", e.message);
    int broke = lsr_proc_win_broke_away(p);
    int strategy = lsr_proc_win_strategy(p);
    lsr_exit_status st;
    int rc = lsr_proc_terminate(p, &st, &e);
    int alive = count_alive(hs, 2);
    close_all(hs, 2);
    lsr_proc_free(p);
    printf("%s  in a job (%s): broke away %d, strategy %s\n", g_prefix,
           g_expect_breakaway ? "breakaway allowed" : "breakaway denied", broke,
           strategy == LSR_WIN_TREE_JOB ? "job object" : "toolhelp snapshot");
    EXPECT(broke == g_expect_breakaway, "broke away %d, expected %d", broke, g_expect_breakaway);
    EXPECT(rc == 0, "terminate: %s", e.message);
    EXPECT(alive == 0, "%d processes survived", alive);
    return 1;
}

static int injob_main(const char *mode)
{
    g_prefix = "    ";
    g_expect_breakaway = strcmp(mode, "breakaway") == 0;
    HANDLE job = CreateJobObjectW(NULL, NULL);
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
    memset(&info, 0, sizeof(info));
    info.BasicLimitInformation.LimitFlags =
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | (g_expect_breakaway ? JOB_OBJECT_LIMIT_BREAKAWAY_OK : 0);
    if (job == NULL || !SetInformationJobObject(job, JobObjectExtendedLimitInformation, &info, sizeof(info))
        || !AssignProcessToJobObject(job, GetCurrentProcess())) {
        printf("%sFAIL injob setup: error %lu\n", g_prefix, (unsigned long)GetLastError());
        return 1;
    }
    run("spawn from inside a job", test_injob_spawn);
    printf("%s%d passed, %d failed\n", g_prefix, g_passed, g_failed);
    return g_failed ? 1 : 0;
}

static int run_injob(const char *mode)
{
    const char *args[] = { "injob", mode };
    lsr_proc_spec s = child_spec(args, 2);
    s.program = g_self;
    lsr_proc *p;
    lsr_error e;
    EXPECT(lsr_proc_spawn(&s, &p, &e) == 0, "spawn harness: %s", e.message);
    outbuf *o = (outbuf *)calloc(1, sizeof(outbuf));
    read_lines(p, o, "\x01never", 1, 60000);
    lsr_exit_status st;
    lsr_proc_wait_exit(p, lsr_now_ms() + 10000, &st, &e);
    lsr_proc_terminate(p, &st, &e);
    lsr_proc_free(p);
    fputs(o->data, stdout);
    int ok = strstr(o->data, " 0 failed") != NULL && strstr(o->data, "1 passed") != NULL;
    free(o);
    EXPECT(ok && st.code == 0, "nested harness failed (exit code %d)", st.code);
    return 1;
}

static int test_injob_breakaway_allowed(void)
{
    return run_injob("breakaway");
}

static int test_injob_breakaway_denied(void)
{
    return run_injob("nobreakaway");
}

/* ---------------------------------------------------------------- main */

static void find_paths(void)
{
    wchar_t self[MAX_PATH];
    DWORD n = GetModuleFileNameW(NULL, self, MAX_PATH);
    WideCharToMultiByte(CP_UTF8, 0, self, -1, g_self, sizeof(g_self), NULL, NULL);
    while (n > 0 && self[n - 1] != L'\\')
        n--;
    wcscpy(self + n, L"lsrchild.exe");
    WideCharToMultiByte(CP_UTF8, 0, self, -1, g_child, sizeof(g_child), NULL, NULL);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    find_paths();
    if (argc == 3 && strcmp(argv[1], "injob") == 0)
        return injob_main(argv[2]);

    run("spawn: missing program is a clean error", test_missing_program);
    run("spawn: missing program with a directory", test_missing_path_program);
    run("spawn: bad cwd is a clean error", test_bad_cwd);
    run("spawn: invalid specs are rejected", test_invalid_spec);
    run("command line: arguments round-trip (MSVCRT quoting)", test_args_roundtrip);
    run("environment block: inherited / replaced / sorted", test_env_block);
    run("cwd is applied", test_cwd);
    run("bare program name found on PATH", test_program_on_path);
    run("only the three stdio handles are inherited", test_only_stdio_inherited);
    run("status: probing does not reap", test_status_does_not_reap);
    run("status: running, bounded wait, killed", test_status_running_then_killed);
    run("drain: newest bytes kept beyond the limit", test_drain_keeps_newest);
    run("stdin: write, marker wake-up, close", test_stdin_roundtrip);
    run("stdin: write to an exited child fails", test_write_to_exited_child);
    run("stdin: NUL mode", test_stdin_null);
    run("drain: 24 concurrent sessions", test_many_sessions);
    run("job: teardown kills a grandchild", test_job_kills_grandchild);
    run("job: 10-process tree teardown", test_job_tree10);
    run("job: root exited, descendant still killed", test_job_root_exited_descendant_lives);
    run("snapshot: 10-process tree teardown", test_snapshot_tree10);
    run("snapshot: process created after the cutoff is skipped", test_snapshot_skips_after_cutoff);
    run("snapshot: parent creation-time check", test_snapshot_parent_creation_check);
    run("teardown: pipe held by an escapee is detached", test_detach_pipe_held_by_escapee);
    run("free without terminate ends the tree", test_free_without_terminate);
    run("job: host in a job that allows breakaway", test_injob_breakaway_allowed);
    run("job: host in a job that denies breakaway", test_injob_breakaway_denied);

    printf("teardown of a 10-process tree: job object %.1f ms, toolhelp snapshot %.1f ms\n",
           g_job_teardown_ms, g_snapshot_teardown_ms);
    printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
