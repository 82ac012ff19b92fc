/* lsr_error.c - see lsr_error.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lsr_error.h"

size_t lsr_utf8_safe_prefix(const char *s, size_t n)
{
    size_t start = n;
    while (start > 0 && ((unsigned char)s[start - 1] & 0xC0) == 0x80)
        start--;
    if (start == 0)
        return 0;
    unsigned char lead = (unsigned char)s[start - 1];
    size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return (start - 1) + need <= n ? n : start - 1;
}

void lsr_error_setf(lsr_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        err->message[0] = '\0';
    else if ((size_t)n >= sizeof err->message)
        err->message[lsr_utf8_safe_prefix(err->message, sizeof err->message - 1)] = '\0';
    err->code = code;
}

void lsr_set_error(lsr_error *err, int code, const char *call)
{
    lsr_error_setf(err, code, "%s: %s", call, strerror(code));
}
