/* lsr_thread.h - detached helper threads, chosen per platform in this one header.
 *
 * A thread function is declared with LSR_THREAD_FN(name) and ends with LSR_THREAD_RETURN, so the
 * same body compiles as a pthread start routine and as a Windows thread procedure.
 */
#ifndef LSR_THREAD_H
#define LSR_THREAD_H

#include "lsr_sync.h"

#ifdef _WIN32
#  define LSR_THREAD_FN(name) static DWORD WINAPI name(LPVOID arg)
#  define LSR_THREAD_RETURN return 0
typedef LPTHREAD_START_ROUTINE lsr_thread_fn;
#else
#  include <signal.h>
#  define LSR_THREAD_FN(name) static void *name(void *arg)
#  define LSR_THREAD_RETURN return NULL
typedef void *(*lsr_thread_fn)(void *);
#endif

/* Starts fn(arg) on a new detached thread with a small stack (stack_bytes; 0 = the platform
 * default).  On POSIX every signal is blocked in the new thread, so it never takes a signal meant
 * for the interpreter.  Returns 0, or the error code of pthread_create / CreateThread (the
 * thread did not start and fn will not run). */
static inline int lsr_thread_start_detached(lsr_thread_fn fn, void *arg, size_t stack_bytes)
{
#ifdef _WIN32
    HANDLE thread = CreateThread(NULL, stack_bytes, fn, arg, STACK_SIZE_PARAM_IS_A_RESERVATION,
                                 NULL);
    if (thread == NULL)
        return (int)GetLastError();
    CloseHandle(thread);
    return 0;
#else
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return rc;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (stack_bytes > 0)
        pthread_attr_setstacksize(&attr, stack_bytes);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t thread;
    rc = pthread_create(&thread, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
#endif
}

#endif /* LSR_THREAD_H */
