/* winerr_windows.h - error reporting and UTF-8 <-> UTF-16 helpers shared by the Windows half of the
 * process core (proc_windows.c, drain_windows.c, tree_windows.c).  Windows only.
 *
 * Every OS failure is reported as "<call>: <FormatMessage text> (error <code>)", e.g.
 * "CreateProcessW: The system cannot find the file specified. (error 2)", with lsr_error.code set
 * to the GetLastError() value, so callers can both show and classify it.
 */
#ifndef LSR_WINERR_WINDOWS_H
#define LSR_WINERR_WINDOWS_H

#ifndef _WIN32
#  error "winerr_windows.h is for Windows builds only"
#endif

#ifndef _WIN32_WINNT
#  define _WIN32_WINNT 0x0602   /* Windows 8: nested jobs, GetSystemTimePreciseAsFileTime */
#endif
#include "lsr_sync.h"           /* <windows.h> with WIN32_LEAN_AND_MEAN */
#include "proc.h"

/* Fills *err (when not NULL) with "<call>: <system text for code> (error <code>)" and
 * err->code = code.  Never fails: an unknown code gets the text "unknown error". */
void lsr_win_error(lsr_error *err, const char *call, DWORD code);

/* Same, with code = GetLastError() read before anything else runs.  Never fails. */
void lsr_win_error_last(lsr_error *err, const char *call);

/* Converts NUL-terminated UTF-8 to a newly malloc'ed NUL-terminated UTF-16 string (free() it).
 * Invalid UTF-8 is an error, not replaced: returns NULL with *err =
 * "MultiByteToWideChar(<what>): ... (error 1113)"; malloc failure gives "malloc: out of memory"
 * (code ERROR_NOT_ENOUGH_MEMORY). */
wchar_t *lsr_utf8_to_wide(const char *s, const char *what, lsr_error *err);

/* Converts n UTF-16 units (n < 0: NUL-terminated) to UTF-8 in out (capacity cap > 0, always
 * NUL-terminated, cut at a character boundary when too small; unpaired surrogates become U+FFFD).
 * Returns the number of bytes written, excluding the NUL.  Never fails. */
size_t lsr_wide_to_utf8(const wchar_t *w, int n, char *out, size_t cap);

#endif /* LSR_WINERR_WINDOWS_H */
