/* lsr_sync.h - the one place where mutexes, condition variables and clocks are chosen per platform.
 *
 * POSIX uses pthreads with a CLOCK_MONOTONIC condition clock (macOS has no
 * pthread_condattr_setclock, so it waits with pthread_cond_timedwait_relative_np); Windows uses
 * SRWLOCK + CONDITION_VARIABLE.  Everything else in native/ includes this header instead of
 * <pthread.h> or <windows.h> for synchronisation, so no other file needs a platform #ifdef for it.
 */
#ifndef LSR_SYNC_H
#define LSR_SYNC_H

#include <stdint.h>

#ifdef _WIN32
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
typedef SRWLOCK lsr_mutex;
typedef CONDITION_VARIABLE lsr_cond;
#else
#  include <pthread.h>
#  include <time.h>
#  include <errno.h>
typedef pthread_mutex_t lsr_mutex;
typedef pthread_cond_t lsr_cond;
#endif

/* Monotonic clock in milliseconds.  Never fails. */
static inline int64_t lsr_now_ms(void)
{
#ifdef _WIN32
    return (int64_t)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

/* Initialise a mutex.  Returns 0, or the errno of pthread_mutex_init. */
static inline int lsr_mutex_init(lsr_mutex *mu)
{
#ifdef _WIN32
    InitializeSRWLock(mu);
    return 0;
#else
    return pthread_mutex_init(mu, NULL);
#endif
}

static inline void lsr_mutex_destroy(lsr_mutex *mu)
{
#ifdef _WIN32
    (void)mu;
#else
    pthread_mutex_destroy(mu);
#endif
}

static inline void lsr_mutex_lock(lsr_mutex *mu)
{
#ifdef _WIN32
    AcquireSRWLockExclusive(mu);
#else
    pthread_mutex_lock(mu);
#endif
}

static inline void lsr_mutex_unlock(lsr_mutex *mu)
{
#ifdef _WIN32
    ReleaseSRWLockExclusive(mu);
#else
    pthread_mutex_unlock(mu);
#endif
}

/* Initialise a condition variable whose timed waits use the monotonic clock.
 * Returns 0, or the errno of pthread_condattr_* / pthread_cond_init. */
static inline int lsr_cond_init(lsr_cond *cv)
{
#ifdef _WIN32
    InitializeConditionVariable(cv);
    return 0;
#elif defined(__APPLE__)
    return pthread_cond_init(cv, NULL);
#else
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
#endif
}

static inline void lsr_cond_destroy(lsr_cond *cv)
{
#ifdef _WIN32
    (void)cv;
#else
    pthread_cond_destroy(cv);
#endif
}

static inline void lsr_cond_broadcast(lsr_cond *cv)
{
#ifdef _WIN32
    WakeAllConditionVariable(cv);
#else
    pthread_cond_broadcast(cv);
#endif
}

/* Wait on cv (mu held) until signalled or until the monotonic deadline_ms passes.
 * deadline_ms < 0 waits without a deadline.  Spurious wake-ups are possible: callers loop on
 * their predicate.  Never fails. */
static inline void lsr_cond_wait_until(lsr_cond *cv, lsr_mutex *mu, int64_t deadline_ms)
{
#ifdef _WIN32
    DWORD wait = INFINITE;
    if (deadline_ms >= 0) {
        int64_t left = deadline_ms - lsr_now_ms();
        wait = left <= 0 ? 0 : (DWORD)(left > 0x7fffffff ? 0x7fffffff : left);
    }
    SleepConditionVariableSRW(cv, mu, wait, 0);
#else
    if (deadline_ms < 0) {
        pthread_cond_wait(cv, mu);
        return;
    }
#  ifdef __APPLE__
    int64_t left = deadline_ms - lsr_now_ms();
    if (left <= 0)
        return;
    struct timespec rel = { (time_t)(left / 1000), (long)(left % 1000) * 1000000L };
    pthread_cond_timedwait_relative_np(cv, mu, &rel);
#  else
    struct timespec abs = { (time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000L };
    pthread_cond_timedwait(cv, mu, &abs);
#  endif
#endif
}

#endif /* LSR_SYNC_H */
