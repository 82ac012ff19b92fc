/* lsr_error.h - the one error convention of the native core.
 *
 * Every C function that can fail returns -1 (or NULL) and fills a caller-provided lsr_error with
 * the OS error code and a message that names the failing call, e.g. "waitid: No such process".
 * These are the only writers of an lsr_error: every source file (POSIX and Windows) uses them,
 * so messages look the same everywhere.  (luahook.c keeps its char-buffer convention.)
 */
#ifndef LSR_ERROR_H
#define LSR_ERROR_H

#define LSR_ERROR_MESSAGE_MAX 256

typedef struct lsr_error {
    int code;                              /* errno / GetLastError(); 0 = not an OS error */
    char message[LSR_ERROR_MESSAGE_MAX];   /* "<call>: <system text>", NUL-terminated UTF-8 */
} lsr_error;

/* Fills *err (when not NULL) with "<call>: <strerror(code)>" and err->code = code.
 * Never fails. */
void lsr_set_error(lsr_error *err, int code, const char *call);

/* Fills *err (when not NULL) with a printf-style message and the given code (0 = not an OS
 * error).  The message is cut at a UTF-8 character boundary when it does not fit.  Never fails. */
void lsr_error_setf(lsr_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8 sequence, so a cut
 * message never shows a broken character.  Never fails. */
#include <stddef.h>
size_t lsr_utf8_safe_prefix(const char *s, size_t n);

#endif /* LSR_ERROR_H */
