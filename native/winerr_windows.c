/* winerr_windows.c - see winerr_windows.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "winerr_windows.h"

size_t lsr_wide_to_utf8(const wchar_t *w, int n, char *out, size_t cap)
{
    int got = WideCharToMultiByte(CP_UTF8, 0, w, n, out, (int)(cap - 1), NULL, NULL);
    if (got <= 0) {
        /* Too small: convert into a scratch buffer, then cut at a character boundary. */
        int need = WideCharToMultiByte(CP_UTF8, 0, w, n, NULL, 0, NULL, NULL);
        char *tmp = need > 0 ? (char *)malloc((size_t)need) : NULL;
        if (tmp == NULL) {
            out[0] = '\0';
            return 0;
        }
        WideCharToMultiByte(CP_UTF8, 0, w, n, tmp, need, NULL, NULL);
        size_t keep = lsr_utf8_safe_prefix(tmp, cap - 1 < (size_t)need ? cap - 1 : (size_t)need);
        memcpy(out, tmp, keep);
        free(tmp);
        got = (int)keep;
    }
    /* With n < 0 the converted text includes the NUL. */
    if (got > 0 && out[got - 1] == '\0')
        got--;
    out[got] = '\0';
    return (size_t)got;
}

void lsr_win_error(lsr_error *err, const char *call, DWORD code)
{
    if (err == NULL)
        return;
    wchar_t *wtext = NULL;
    char text[200];
    DWORD n = FormatMessageW(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM
                                 | FORMAT_MESSAGE_IGNORE_INSERTS,
                             NULL, code, 0, (LPWSTR)&wtext, 0, NULL);
    if (n == 0 || wtext == NULL) {
        strcpy(text, "unknown error");
    } else {
        /* System texts end with "\r\n"; drop trailing whitespace. */
        while (n > 0 && (wtext[n - 1] == L'\r' || wtext[n - 1] == L'\n' || wtext[n - 1] == L' '))
            n--;
        lsr_wide_to_utf8(wtext, (int)n, text, sizeof(text));
    }
    if (wtext != NULL)
        LocalFree(wtext);
    lsr_error_setf(err, (int)code, "%s: %s (error %lu)", call, text, (unsigned long)code);
}

void lsr_win_error_last(lsr_error *err, const char *call)
{
    lsr_win_error(err, call, GetLastError());
}

wchar_t *lsr_utf8_to_wide(const char *s, const char *what, lsr_error *err)
{
    char call[96];
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0) {
        DWORD code = GetLastError();
        snprintf(call, sizeof(call), "MultiByteToWideChar(%s)", what);
        lsr_win_error(err, call, code);
        return NULL;
    }
    wchar_t *w = (wchar_t *)malloc((size_t)n * sizeof(wchar_t));
    if (w == NULL) {
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return NULL;
    }
    if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        DWORD code = GetLastError();
        free(w);
        snprintf(call, sizeof(call), "MultiByteToWideChar(%s)", what);
        lsr_win_error(err, call, code);
        return NULL;
    }
    return w;
}
