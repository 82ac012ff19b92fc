/* lsrchild.c - the child program the Windows harness starts (cross-compiled with mingw-w64).
 *
 *   lsrchild exit CODE               exit with CODE
 *   lsrchild sleep MS                sleep, exit 0
 *   lsrchild flood OUT ERR           write OUT / ERR pattern bytes (pattern_byte) to stdout / stderr
 *   lsrchild cat                     copy stdin to stdout until EOF
 *   lsrchild args ...                print each argument as UTF-8 followed by a NUL byte
 *   lsrchild env NAME                print the variable's value, or "<unset>"
 *   lsrchild cwd                     print the current directory
 *   lsrchild tree [tag=T] [late=MS] N1 N2 ...
 *                                    start N1 children running "tree N2 ...", print "T <pid>\n"
 *                                    (T defaults to "ready"), then after MS start one more child
 *                                    "tree tag=late", then sleep forever
 *   lsrchild spawnexit               start "tree tag=escaped", print "mid <pid>\n", exit 0
 *   lsrchild orphan                  start "spawnexit", print "ready <pid>\n", sleep forever
 *
 * Children share this process's standard handles, so every line reaches the harness's ring.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "pattern.h"

static void write_all(HANDLE h, const void *data, DWORD n)
{
    const char *p = (const char *)data;
    while (n > 0) {
        DWORD done = 0;
        if (!WriteFile(h, p, n, &done, NULL))
            ExitProcess(90);
        p += done;
        n -= done;
    }
}

static void print_line(const char *tag, DWORD pid)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%s %lu\n", tag, (unsigned long)pid);
    write_all(GetStdHandle(STD_OUTPUT_HANDLE), line, (DWORD)n);
}

/* Starts this program again with the given argument string; the child inherits our standard
 * handles.  Returns its pid; exits with 91 when it cannot. */
static DWORD spawn_self(const wchar_t *args)
{
    wchar_t exe[MAX_PATH];
    GetModuleFileNameW(NULL, exe, MAX_PATH);
    wchar_t cmd[1024];
    _snwprintf(cmd, 1024, L"\"%ls\" %ls", exe, args);
    cmd[1023] = L'\0';
    STARTUPINFOW si;
    memset(&si, 0, sizeof(si));
    si.cb = sizeof(si);
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = GetStdHandle(STD_INPUT_HANDLE);
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    PROCESS_INFORMATION pi;
    if (!CreateProcessW(exe, cmd, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi))
        ExitProcess(91);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    return pi.dwProcessId;
}

static void print_utf8(const wchar_t *w, int with_nul)
{
    char buf[4096];
    int n = WideCharToMultiByte(CP_UTF8, 0, w, -1, buf, sizeof(buf), NULL, NULL);
    if (n <= 0)
        ExitProcess(92);
    write_all(GetStdHandle(STD_OUTPUT_HANDLE), buf, (DWORD)(with_nul ? n : n - 1));
}

static int tree(int argc, wchar_t **argv)
{
    const wchar_t *tag = L"ready";
    int late_ms = -1;
    int i = 0;
    for (; i < argc; i++) {
        if (wcsncmp(argv[i], L"tag=", 4) == 0)
            tag = argv[i] + 4;
        else if (wcsncmp(argv[i], L"late=", 5) == 0)
            late_ms = _wtoi(argv[i] + 5);
        else
            break;
    }
    if (i < argc) {
        int n = _wtoi(argv[i]);
        wchar_t rest[512] = L"tree";
        for (int k = i + 1; k < argc; k++) {
            wcscat(rest, L" ");
            wcscat(rest, argv[k]);
        }
        for (int k = 0; k < n; k++)
            spawn_self(rest);
    }
    char ctag[32];
    WideCharToMultiByte(CP_UTF8, 0, tag, -1, ctag, sizeof(ctag), NULL, NULL);
    print_line(ctag, GetCurrentProcessId());
    if (late_ms >= 0) {
        Sleep((DWORD)late_ms);
        spawn_self(L"tree tag=late");
    }
    Sleep(INFINITE);
    return 0;
}

int wmain(int argc, wchar_t **argv)
{
    if (argc < 2)
        return 2;
    const wchar_t *mode = argv[1];
    HANDLE out = GetStdHandle(STD_OUTPUT_HANDLE);
    if (wcscmp(mode, L"exit") == 0 && argc == 3)
        return _wtoi(argv[2]);
    if (wcscmp(mode, L"sleep") == 0 && argc == 3) {
        Sleep((DWORD)_wtoi(argv[2]));
        return 0;
    }
    if (wcscmp(mode, L"flood") == 0 && argc == 4) {
        static unsigned char chunk[4096];
        HANDLE targets[2] = { out, GetStdHandle(STD_ERROR_HANDLE) };
        for (int t = 0; t < 2; t++) {
            size_t total = (size_t)_wtoi(argv[2 + t]);
            for (size_t off = 0; off < total;) {
                size_t n = total - off < sizeof(chunk) ? total - off : sizeof(chunk);
                for (size_t k = 0; k < n; k++)
                    chunk[k] = pattern_byte(off + k, t);
                write_all(targets[t], chunk, (DWORD)n);
                off += n;
            }
        }
        return 0;
    }
    if (wcscmp(mode, L"cat") == 0) {
        char buf[4096];
        DWORD n;
        while (ReadFile(GetStdHandle(STD_INPUT_HANDLE), buf, sizeof(buf), &n, NULL) && n > 0)
            write_all(out, buf, n);
        return 0;
    }
    if (wcscmp(mode, L"args") == 0) {
        for (int i = 2; i < argc; i++)
            print_utf8(argv[i], 1);
        return 0;
    }
    if (wcscmp(mode, L"env") == 0 && argc == 3) {
        wchar_t value[4096];
        DWORD n = GetEnvironmentVariableW(argv[2], value, 4096);
        print_utf8(n > 0 && n < 4096 ? value : L"<unset>", 0);
        return 0;
    }
    if (wcscmp(mode, L"cwd") == 0) {
        wchar_t dir[MAX_PATH];
        GetCurrentDirectoryW(MAX_PATH, dir);
        print_utf8(dir, 0);
        return 0;
    }
    if (wcscmp(mode, L"tree") == 0)
        return tree(argc - 2, argv + 2);
    if (wcscmp(mode, L"spawnexit") == 0) {
        print_line("mid", GetCurrentProcessId());
        spawn_self(L"tree tag=escaped");
        return 0;
    }
    if (wcscmp(mode, L"orphan") == 0) {
        spawn_self(L"spawnexit");
        print_line("ready", GetCurrentProcessId());
        Sleep(INFINITE);
        return 0;
    }
    return 2;
}
