/* proc_posix.c - proc.h on POSIX: posix_spawn into a new process group, pipes drained by the shared
 * drainer (drain_posix.c), waitid(WNOWAIT) status probes, killpg teardown before the one reap.
 *
 * Invariant that makes signalling safe: the root child is reaped only by lsr_proc_terminate, after
 * the group kill.  Until then it exists (at least as a zombie), so neither its pid nor its process
 * group id can have been handed to another process.  With a pidfd (Linux >= 5.3) its exit also
 * wakes readers through the drainer.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#  include <sys/syscall.h>
#endif

#include "proc.h"
#include "drain_posix.h"
#include "tree_posix.h"

#ifdef __APPLE__
#  include <crt_externs.h>
#  define environ (*_NSGetEnviron())   /* a loadable module cannot link `environ` directly */
#else
extern char **environ;
#endif

#define DRAIN_WAIT_MS 1000   /* how long terminate waits for both pipes to reach EOF */

struct lsr_proc {
    lsr_notify notify;      /* shared by both rings and the exit detection */
    lsr_ring out;
    lsr_ring err;
    lsr_drain_client drain;
    pid_t pid;
    pid_t owner;            /* getpid() of the spawning process: a fork()ed copy never kills */
    int pidfd;              /* -1 when pidfds are unavailable */
    lsr_mutex mu;           /* guards everything below */
    int stdin_fd;           /* -1 once closed (or /dev/null) */
    int stdin_writers;      /* writes in progress; the fd is closed when the last one ends */
    int stdin_closing;
    int zombie_known;       /* the root exited; `zombie` holds what WNOWAIT reported */
    lsr_exit_status zombie;
    int final_known;        /* terminate reaped the root; `final` is cached for good */
    lsr_exit_status final;
    char tree_tag[LSR_TREE_TAG_MAX];   /* environment entry marking the tree, or "" (tree_posix.h) */
    int sweep_pending;                 /* terminate still owes the sweep of escaped descendants */
};

static const lsr_exit_status RUNNING_STATUS = { 1, 0, LSR_UNKNOWN, 0, 0, 0 };
static const lsr_exit_status LOST_STATUS = { 0, 1, LSR_UNKNOWN, 0, 0, 0 };

/* ---- descriptors ----------------------------------------------------------------------------- */

/* Moves fd above 2 so dup2 onto 0/1/2 in the child always creates a fresh, inheritable copy
 * (dup2(fd, fd) would keep close-on-exec).  Returns the fd to use, or -1 with errno. */
static int lift_fd(int fd)
{
    if (fd > 2)
        return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return moved;
}

/* A close-on-exec pipe with both ends above 2.  Returns 0 or an errno. */
static int make_pipe(int fds[2])
{
#if defined(__linux__) || defined(__FreeBSD__) || defined(__NetBSD__) || defined(__OpenBSD__)
    if (pipe2(fds, O_CLOEXEC) != 0)
        return errno;
#else
    if (pipe(fds) != 0)
        return errno;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
    for (int i = 0; i < 2; i++) {
        fds[i] = lift_fd(fds[i]);
        if (fds[i] < 0) {
            int saved = errno;
            if (fds[1 - i] >= 0)
                close(fds[1 - i]);
            fds[0] = fds[1] = -1;
            return saved;
        }
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int open_pidfd(pid_t pid)
{
#if defined(__linux__) && defined(SYS_pidfd_open) && !defined(LSR_NO_PIDFD)
    /* -DLSR_NO_PIDFD builds exercise the fallback (probing) path in tests. */
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);   /* always close-on-exec */
    return fd >= 0 ? fd : -1;                         /* ENOSYS, EPERM (seccomp): no pidfd */
#else
    (void)pid;
    return -1;
#endif
}

/* ---- spawn ----------------------------------------------------------------------------------- */

/* The error for a failed posix_spawn: a missing working directory is named as such (posix_spawn
 * reports chdir failures with the same errno as a missing program). */
static void spawn_error(lsr_error *err, int code, const char *cwd)
{
    struct stat st;
    if (cwd != NULL) {
        if (stat(cwd, &st) != 0) {
            lsr_set_error(err, errno, "chdir");
            return;
        }
        if (!S_ISDIR(st.st_mode)) {
            lsr_set_error(err, ENOTDIR, "chdir");
            return;
        }
        if (code == EACCES && access(cwd, X_OK) != 0) {
            lsr_set_error(err, EACCES, "chdir");
            return;
        }
    }
    lsr_set_error(err, code, "posix_spawn");
}

/* posix_spawn_file_actions_addchdir_np exists from glibc 2.29 (and on macOS / FreeBSD).  It is
 * detected from the C library's headers at build time: a build against an older glibc (e.g. the
 * manylinux2014 image, glibc 2.17) cannot reference the versioned symbol, and a build against a
 * newer one does not load on an older glibc anyway, so the headers of the build's own glibc are
 * exactly the right test, with no probe in setup.py.  -DLSR_NO_ADDCHDIR forces the fallback so
 * tests exercise it on any machine. */
#if !defined(LSR_NO_ADDCHDIR) \
    && ((defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))) \
        || defined(__APPLE__) || defined(__FreeBSD__))
#  define LSR_HAVE_ADDCHDIR 1
#else
#  define LSR_HAVE_ADDCHDIR 0
#endif

#if !LSR_HAVE_ADDCHDIR
/* What the vfork()ed child reports through its close-on-exec pipe when it fails. */
typedef struct spawn_failure {
    int step;    /* 1: chdir, 2: exec */
    int code;    /* errno */
} spawn_failure;

/* Fallback for spawning with a working directory where posix_spawn cannot chdir: vfork, then in
 * the child (which shares our memory and may run while other threads hold locks) only
 * async-signal-safe system calls on data prepared before the vfork: stdio, new process group,
 * default signal handlers and an empty mask (the same as posix_spawn's attributes), chdir, then
 * execve over PATH like posix_spawnp.  All signals are blocked around the vfork so no handler of
 * ours runs in the child.  Returns 0 or an errno with *failed_call "chdir" / "posix_spawn"
 * (so callers report it exactly like the posix_spawn path), or "pipe" / "vfork". */
static int spawn_in_dir(const char *program, char *const *argv, char *const *envp, const char *cwd,
                        int in_fd, int out_fd, int err_fd, pid_t *pid, const char **failed_call)
{
    int report[2];
    int rc = make_pipe(report);
    if (rc != 0) {
        *failed_call = "pipe";
        return rc;
    }
    /* PATH is read now: the child must not call getenv (not async-signal-safe). */
    const char *path = strchr(program, '/') != NULL ? NULL : getenv("PATH");
    if (strchr(program, '/') == NULL && path == NULL)
        path = "/bin:/usr/bin";
    size_t plen = strlen(program);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t child = vfork();
    if (child == 0) {
        spawn_failure f = { 2, 0 };
        int null_fd = -1;
        if (in_fd < 0)
            null_fd = open("/dev/null", O_RDONLY);
        if (dup2(in_fd >= 0 ? in_fd : null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0
            || setpgid(0, 0) != 0) {
            f.code = errno;
            goto fail;
        }
        struct sigaction dfl, cur;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &cur) != 0)
                continue;
            /* Handlers of ours must not run here; ignored signals stay ignored across exec,
             * except the two Python ignores for itself (like POSIX_SPAWN_SETSIGDEF). */
            if (cur.sa_handler != SIG_IGN || sig == SIGPIPE
#ifdef SIGXFSZ
                || sig == SIGXFSZ
#endif
            )
                sigaction(sig, &dfl, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (chdir(cwd) != 0) {
            f.step = 1;
            f.code = errno;
            goto fail;
        }
        if (path == NULL) {
            execve(program, argv, envp);
            f.code = errno;
            goto fail;
        }
        /* PATH search like execvp: remember EACCES, keep looking on ENOENT / ENOTDIR. */
        f.code = ENOENT;
        char full[4096];
        for (const char *dir = path;; dir++) {
            const char *end = dir;
            while (*end != '\0' && *end != ':')
                end++;
            size_t dlen = (size_t)(end - dir);
            if (dlen + 1 + plen + 1 <= sizeof full) {
                memcpy(full, dlen ? dir : ".", dlen ? dlen : 1);
                size_t at = dlen ? dlen : 1;
                full[at++] = '/';
                memcpy(full + at, program, plen + 1);
                execve(full, argv, envp);
                if (errno == EACCES)
                    f.code = EACCES;
                else if (errno != ENOENT && errno != ENOTDIR)
                    f.code = errno;
            }
            if (*end == '\0')
                break;
            dir = end;
        }
    fail:
        while (write(report[1], &f, sizeof f) < 0 && errno == EINTR) {
        }
        _exit(127);
    }
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        *failed_call = "vfork";
        return saved;
    }
    spawn_failure f;
    ssize_t got;
    do {
        got = read(report[0], &f, sizeof f);
    } while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got == (ssize_t)sizeof f) {
        /* The child never ran the program: reap it, so the failure leaves nothing behind. */
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR) {
        }
        *failed_call = f.step == 1 ? "chdir" : "posix_spawn";
        return f.code;
    }
    *pid = child;
    return 0;
}
#endif

/* Runs posix_spawnp with the child's stdio on the given fds, in a new process group, with the
 * signals Python ignores (SIGPIPE, SIGXFSZ) back at their defaults.  Returns 0 or an errno;
 * *failed_call names the step that failed. */
static int spawn_child(const lsr_proc_spec *spec, const char *tree_tag, int in_fd, int out_fd,
                       int err_fd, pid_t *pid, const char **failed_call)
{
    size_t argc = spec->nargs + 1;
    char **argv = calloc(argc + 1, sizeof *argv);
    if (argv == NULL) {
        *failed_call = "malloc";
        return ENOMEM;
    }
    argv[0] = (char *)spec->program;
    for (size_t i = 0; i < spec->nargs; i++)
        argv[i + 1] = (char *)spec->args[i];

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) {
        free(argv);
        *failed_call = "posix_spawn_file_actions_init";
        return rc;
    }
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        free(argv);
        *failed_call = "posix_spawnattr_init";
        return rc;
    }
    *failed_call = "posix_spawn_file_actions";
    if (in_fd >= 0)
        rc = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    else
        rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    /* Like Python's subprocess: the child gets stdio only, not descriptors the host left
     * inheritable (ours are all close-on-exec anyway), so nothing else can hold its pipes. */
    if (rc == 0)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
#if LSR_HAVE_ADDCHDIR
    if (rc == 0 && spec->cwd != NULL) {
        *failed_call = "posix_spawn_file_actions_addchdir_np";
        rc = posix_spawn_file_actions_addchdir_np(&fa, spec->cwd);
    }
#endif
    if (rc == 0) {
        sigset_t none, defaults;
        sigemptyset(&none);
        sigemptyset(&defaults);
        sigaddset(&defaults, SIGPIPE);
#ifdef SIGXFSZ
        sigaddset(&defaults, SIGXFSZ);
#endif
        *failed_call = "posix_spawnattr";
        rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK
                                                 | POSIX_SPAWN_SETSIGDEF);
        if (rc == 0)
            rc = posix_spawnattr_setpgroup(&attr, 0);
        if (rc == 0)
            rc = posix_spawnattr_setsigmask(&attr, &none);
        if (rc == 0)
            rc = posix_spawnattr_setsigdefault(&attr, &defaults);
    }
    char **tagged_env = NULL;
    char *const *envp = spec->env != NULL ? (char *const *)spec->env : environ;
    if (rc == 0 && tree_tag[0] != '\0') {
        /* Every descendant inherits the tree's tag, whatever it does to its group or session. */
        size_t n = 0;
        while (envp[n] != NULL)
            n++;
        tagged_env = malloc((n + 2) * sizeof *tagged_env);
        if (tagged_env == NULL) {
            *failed_call = "malloc";
            rc = ENOMEM;
        } else {
            memcpy(tagged_env, envp, n * sizeof *tagged_env);
            tagged_env[n] = (char *)tree_tag;
            tagged_env[n + 1] = NULL;
            envp = tagged_env;
        }
    }
    if (rc == 0) {
        *failed_call = "posix_spawn";
#if !LSR_HAVE_ADDCHDIR
        if (spec->cwd != NULL)
            rc = spawn_in_dir(spec->program, argv, envp, spec->cwd, in_fd, out_fd, err_fd, pid,
                              failed_call);
        else
#endif
            rc = posix_spawnp(pid, spec->program, &fa, &attr, argv, envp);
    }
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    free(tagged_env);
    free(argv);
    return rc;
}

int lsr_proc_spawn(const lsr_proc_spec *spec, lsr_proc **out, lsr_error *err)
{
    *out = NULL;
    if (spec == NULL || spec->program == NULL || spec->program[0] == '\0') {
        lsr_error_setf(err, EINVAL, "program: must not be empty");
        return -1;
    }
    if (spec->buffer_limit == 0) {
        lsr_error_setf(err, EINVAL, "buffer_limit: must be positive");
        return -1;
    }
    if (spec->nargs > 0 && spec->args == NULL) {
        lsr_error_setf(err, EINVAL, "args: missing");
        return -1;
    }
    lsr_proc *p = calloc(1, sizeof *p);
    if (p == NULL) {
        lsr_set_error(err, ENOMEM, "malloc");
        return -1;
    }
    int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
    int rc = lsr_notify_init(&p->notify);
    if (rc != 0) {
        lsr_set_error(err, rc, "pthread_cond_init");
        free(p);
        return -1;
    }
    rc = lsr_ring_init(&p->out, spec->buffer_limit, &p->notify);
    if (rc != 0) {
        lsr_set_error(err, rc, rc == ENOMEM ? "malloc" : "pthread_mutex_init");
        goto fail_notify;
    }
    rc = lsr_ring_init(&p->err, spec->buffer_limit, &p->notify);
    if (rc != 0) {
        lsr_set_error(err, rc, rc == ENOMEM ? "malloc" : "pthread_mutex_init");
        goto fail_out;
    }
    rc = lsr_mutex_init(&p->mu);
    if (rc != 0) {
        lsr_set_error(err, rc, "pthread_mutex_init");
        goto fail_err;
    }
    rc = lsr_drain_client_init(&p->drain);
    if (rc != 0) {
        lsr_set_error(err, rc, "pthread_mutex_init");
        lsr_mutex_destroy(&p->mu);
        goto fail_err;
    }
    if ((spec->stdin_mode == LSR_STDIN_PIPE && (rc = make_pipe(in_pipe)) != 0)
        || (rc = make_pipe(out_pipe)) != 0 || (rc = make_pipe(err_pipe)) != 0) {
        lsr_set_error(err, rc, "pipe");
        goto fail_pipes;
    }
    /* Our read ends are non-blocking for the drainer; the child's ends stay blocking. */
    if (fcntl(out_pipe[0], F_SETFL, O_NONBLOCK) != 0 || fcntl(err_pipe[0], F_SETFL, O_NONBLOCK) != 0) {
        lsr_set_error(err, errno, "fcntl");
        goto fail_pipes;
    }
    /* Without a tag (the watchdog could not start) the process group still holds the tree. */
    lsr_tree_new_tag(p->tree_tag, NULL);
    const char *failed_call = "posix_spawn";
    rc = spawn_child(spec, p->tree_tag, in_pipe[0], out_pipe[1], err_pipe[1], &p->pid, &failed_call);
    if (rc != 0) {
        if (strcmp(failed_call, "posix_spawn") == 0 || strcmp(failed_call, "chdir") == 0)
            spawn_error(err, rc, spec->cwd);
        else
            lsr_set_error(err, rc, failed_call);
        goto fail_pipes;
    }
    /* The child holds its own copies now; ours would keep EOF from ever arriving. */
    close_fd(&in_pipe[0]);
    close_fd(&out_pipe[1]);
    close_fd(&err_pipe[1]);
    p->owner = getpid();
    p->pidfd = open_pidfd(p->pid);
    p->stdin_fd = in_pipe[1];
    p->drain.fd[LSR_DRAIN_OUT] = out_pipe[0];
    p->drain.fd[LSR_DRAIN_ERR] = err_pipe[0];
    p->drain.fd[LSR_DRAIN_PID] = p->pidfd;
    p->drain.ring[0] = &p->out;
    p->drain.ring[1] = &p->err;
    p->drain.notify = &p->notify;
    if (lsr_drain_attach(&p->drain, err) != 0) {
        /* Undo the start: the tree dies and the root is reaped before the fds go. */
        killpg(p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR) {
        }
        close_fd(&p->pidfd);
        close_fd(&in_pipe[1]);
        close_fd(&out_pipe[0]);
        close_fd(&err_pipe[0]);
        lsr_drain_client_destroy(&p->drain);
        lsr_mutex_destroy(&p->mu);
        goto fail_err;
    }
    *out = p;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_PROCS, 1);
    return 0;

fail_pipes:
    for (int i = 0; i < 2; i++) {
        close_fd(&in_pipe[i]);
        close_fd(&out_pipe[i]);
        close_fd(&err_pipe[i]);
    }
    lsr_drain_client_destroy(&p->drain);
    lsr_mutex_destroy(&p->mu);
fail_err:
    lsr_ring_destroy(&p->err);
fail_out:
    lsr_ring_destroy(&p->out);
fail_notify:
    lsr_notify_destroy(&p->notify);
    free(p);
    return -1;
}

int64_t lsr_proc_pid(const lsr_proc *p)
{
    return (int64_t)p->pid;
}

lsr_ring *lsr_proc_stream(lsr_proc *p, int which)
{
    return which == LSR_STDOUT ? &p->out : which == LSR_STDERR ? &p->err : NULL;
}

lsr_notify *lsr_proc_notify(lsr_proc *p)
{
    return &p->notify;
}

int lsr_proc_io_error(lsr_proc *p, lsr_error *err)
{
    return lsr_drain_failure(&p->drain, err);
}

int lsr_proc_debug_fail_drainer_malloc(int on)
{
    return lsr_drain_debug_fail_malloc(on);
}

int lsr_proc_foreign_tag(char *tag, lsr_error *err)
{
    return lsr_tree_new_tag(tag, err);
}

int lsr_proc_foreign_kill(long root, int root_unreaped, const char *tag, lsr_error *err)
{
    return lsr_tree_kill((pid_t)root, root_unreaped, tag[0] != '\0' ? tag : NULL, err) < 0 ? -1 : 0;
}

void lsr_proc_wait_event(lsr_proc *p, uint64_t seen, int64_t deadline_ms)
{
    lsr_drain_wait(&p->drain, seen, deadline_ms);
}

/* ---- stdin ----------------------------------------------------------------------------------- */

/* Writes everything with SIGPIPE blocked in this thread, so a dead reader gives EPIPE instead of
 * killing a host that did not ignore SIGPIPE; a SIGPIPE we caused is consumed.  Returns 0 or an
 * errno. */
static int write_all(int fd, const uint8_t *data, size_t n)
{
    /* Python hosts ignore SIGPIPE already: then one query replaces the mask dance. */
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_IGN
        && !(current.sa_flags & SA_SIGINFO)) {
        while (n > 0) {
            ssize_t w = write(fd, data, n);
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return errno;
            }
            data += w;
            n -= (size_t)w;
        }
        return 0;
    }
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    int rc = 0;
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = errno;
            break;
        }
        data += w;
        n -= (size_t)w;
    }
    if (rc == EPIPE && !was_pending) {
        /* Consume the SIGPIPE our write raised (pending, since it is blocked here).  sigwait is
         * only called when it is pending, so it cannot block (macOS has no sigtimedwait). */
        sigemptyset(&pending);
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
            int signo;
            sigwait(&pipe_set, &signo);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int lsr_proc_write(lsr_proc *p, const void *data, size_t n, lsr_error *err)
{
    lsr_mutex_lock(&p->mu);
    if (p->stdin_fd < 0 || p->stdin_closing) {
        lsr_mutex_unlock(&p->mu);
        lsr_error_setf(err, 0, "stdin is closed");
        return -1;
    }
    int fd = p->stdin_fd;
    p->stdin_writers++;
    lsr_mutex_unlock(&p->mu);

    int rc = n > 0 ? write_all(fd, (const uint8_t *)data, n) : 0;

    lsr_mutex_lock(&p->mu);
    if (--p->stdin_writers == 0 && p->stdin_closing)
        close_fd(&p->stdin_fd);
    lsr_mutex_unlock(&p->mu);
    if (rc != 0) {
        lsr_set_error(err, rc, "write");
        return -1;
    }
    return 0;
}

void lsr_proc_close_stdin(lsr_proc *p)
{
    lsr_mutex_lock(&p->mu);
    p->stdin_closing = 1;
    if (p->stdin_writers == 0)
        close_fd(&p->stdin_fd);
    lsr_mutex_unlock(&p->mu);
}

/* ---- status ---------------------------------------------------------------------------------- */

static lsr_exit_status status_from_wait(int wstatus)
{
    lsr_exit_status st = { 0, 1, 0, 0, 0, 0 };
    if (WIFEXITED(wstatus)) {
        st.has_code = 1;
        st.code = WEXITSTATUS(wstatus);
        st.success = st.code == 0;
    } else if (WIFSIGNALED(wstatus)) {
        st.signal = WTERMSIG(wstatus);
    }
    return st;
}

/* The WNOWAIT probe itself (p->mu held).  Returns 0, or -1 with *err. */
static int probe_locked(lsr_proc *p, lsr_exit_status *st, lsr_error *err)
{
    if (p->final_known) {
        *st = p->final;
        return 0;
    }
    if (p->zombie_known) {
        *st = p->zombie;
        return 0;
    }
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int rc;
    do {
        rc = waitid(P_PID, (id_t)p->pid, &info, WEXITED | WNOHANG | WNOWAIT);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        if (errno == ECHILD) {   /* reaped behind our back: the status is gone */
            *st = LOST_STATUS;
            return 0;
        }
        lsr_set_error(err, errno, "waitid");
        return -1;
    }
    if (info.si_pid == 0) {
        *st = RUNNING_STATUS;
        return 0;
    }
    lsr_exit_status z = { 0, 1, 0, 0, 0, 0 };
    if (info.si_code == CLD_EXITED) {
        z.has_code = 1;
        z.code = info.si_status;
        z.success = info.si_status == 0;
    } else {
        z.signal = info.si_status;   /* CLD_KILLED / CLD_DUMPED */
    }
    p->zombie = z;               /* a zombie's status never changes: no more system calls */
    p->zombie_known = 1;
    *st = z;
    return 0;
}

int lsr_proc_status(lsr_proc *p, lsr_exit_status *st, lsr_error *err)
{
    lsr_mutex_lock(&p->mu);
    int rc = probe_locked(p, st, err);
    lsr_mutex_unlock(&p->mu);
    return rc;
}

int lsr_proc_wait_exit(lsr_proc *p, int64_t deadline_ms, lsr_exit_status *st, lsr_error *err)
{
    int64_t backoff_ms = 1;
    for (;;) {
        uint64_t seen = lsr_notify_seq(&p->notify);
        int watched = lsr_drain_watches_pid(&p->drain);
        int seen_exit = __atomic_load_n(&p->drain.exit_seen, __ATOMIC_ACQUIRE);
        if (!watched || seen_exit) {
            if (lsr_proc_status(p, st, err) != 0)
                return -1;
            if (st->exited)
                return 0;
        }
        int64_t now = lsr_now_ms();
        if (deadline_ms >= 0 && now >= deadline_ms)
            return lsr_proc_status(p, st, err);
        if (watched && !seen_exit) {
            /* The drainer signals the notifier when the pidfd reports the exit. */
            lsr_notify_wait(&p->notify, seen, deadline_ms);
        } else {
            /* No exit notification on this system: probe with a short backoff. */
            int64_t nap = backoff_ms;
            if (deadline_ms >= 0 && deadline_ms - now < nap)
                nap = deadline_ms - now;
            struct timespec ts = { (time_t)(nap / 1000), (long)(nap % 1000) * 1000000L };
            nanosleep(&ts, NULL);
            if (backoff_ms < 20)
                backoff_ms *= 2;
        }
    }
}

/* ---- teardown -------------------------------------------------------------------------------- */

/* Kills the tree and reaps the root once (p->mu held).  Returns 0 or -1 with *err. */
static int kill_and_reap_locked(lsr_proc *p, lsr_error *err)
{
    if (p->final_known)
        return 0;
#if LSR_TREE_TRACKING
    /* Freeze a running root and its group so they fork no more, then kill every descendant that
     * left the group (tree_posix.h) while the root's parent links still lead to them.  A failed
     * sweep (out of memory, no /proc) still leaves the group kill below. */
    lsr_exit_status now;
    int running = probe_locked(p, &now, NULL) != 0 || now.running;
    int eof_out, eof_err;
    lsr_ring_stats(&p->out, NULL, NULL, NULL, &eof_out);
    lsr_ring_stats(&p->err, NULL, NULL, NULL, &eof_err);
    if (running) {
        killpg(p->pid, SIGSTOP);
        kill(p->pid, SIGSTOP);
        lsr_tree_kill(p->pid, 1, p->tree_tag, NULL);
    } else if (eof_out && eof_err) {
        /* An exited root whose pipes nobody holds any more: its parent links are gone already,
         * so the sweep can as well run after the drainer let go of this process, which keeps
         * a lone run's drainer thread from going back to sleep before it is stopped. */
        p->sweep_pending = 1;
    } else {
        lsr_tree_kill(p->pid, 1, p->tree_tag, NULL);   /* an escapee may hold the pipes: now */
    }
#endif
    /* The root is unreaped here, so its group id still names our tree (see the file comment).  A
     * root that already exited leaves the group alive as long as any descendant is in it. */
    if (killpg(p->pid, SIGKILL) != 0 && errno != ESRCH) {
        lsr_set_error(err, errno, "killpg");
        return -1;
    }
    /* The root itself, in case it moved to another group or session. */
    if (kill(p->pid, SIGKILL) != 0 && errno != ESRCH) {
        lsr_set_error(err, errno, "kill");
        return -1;
    }
    int wstatus = 0;
    pid_t got;
    do {
        got = waitpid(p->pid, &wstatus, 0);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno != ECHILD) {
            lsr_set_error(err, errno, "waitpid");
            return -1;
        }
        p->final = p->zombie_known ? p->zombie : LOST_STATUS;
    } else {
        p->final = status_from_wait(wstatus);
    }
    p->final_known = 1;
    return 0;
}

/* Waits until both rings reached EOF or the deadline passes.  Returns 1 when both did. */
static int wait_streams_closed(lsr_proc *p, int64_t deadline_ms)
{
    for (;;) {
        uint64_t seen = lsr_notify_seq(&p->notify);
        int eof_out, eof_err;
        lsr_ring_stats(&p->out, NULL, NULL, NULL, &eof_out);
        lsr_ring_stats(&p->err, NULL, NULL, NULL, &eof_err);
        if (eof_out && eof_err)
            return 1;
        if (lsr_now_ms() >= deadline_ms)
            return 0;
        lsr_notify_wait(&p->notify, seen, deadline_ms);
    }
}

int lsr_proc_terminate(lsr_proc *p, lsr_exit_status *final, lsr_error *err)
{
    lsr_mutex_lock(&p->mu);
    if (!p->final_known) {
        if (p->owner != getpid()) {
            /* A fork()ed copy: the tree belongs to the parent, whose status we cannot know. */
            p->final = LOST_STATUS;
            p->final_known = 1;
        } else if (kill_and_reap_locked(p, err) != 0) {
            lsr_mutex_unlock(&p->mu);
            return -1;
        }
    }
    *final = p->final;
    lsr_mutex_unlock(&p->mu);

    /* The pidfd has nothing more to say; the pipes close as soon as the killed tree is gone,
     * unless a descendant escaped the group (setsid) and still holds them. */
    lsr_drain_forget_pid(&p->drain);
    lsr_drain_unmute(&p->drain);
    int closed = wait_streams_closed(p, lsr_now_ms() + DRAIN_WAIT_MS);
    lsr_mutex_lock(&p->mu);
    int sweep = p->sweep_pending;
    p->sweep_pending = 0;
    lsr_mutex_unlock(&p->mu);
    if (!closed || sweep)
        lsr_drain_detach(&p->drain);   /* nothing more can arrive: both at EOF, or given up */
#if LSR_TREE_TRACKING
    if (sweep)
        lsr_tree_kill(p->pid, 0, p->tree_tag, NULL);   /* the root is reaped: by tag only */
#endif
    return 0;
}

void lsr_proc_free(lsr_proc *p)
{
    if (p == NULL)
        return;
    LSR_DEBUG_LIVE_ADD(LSR_LIVE_PROCS, -1);
    lsr_exit_status ignored;
    if (p->owner == getpid())
        lsr_proc_terminate(p, &ignored, NULL);
    lsr_drain_detach(&p->drain);
    lsr_drain_client_destroy(&p->drain);
    close_fd(&p->stdin_fd);
    close_fd(&p->pidfd);
    lsr_mutex_destroy(&p->mu);
    lsr_ring_destroy(&p->err);
    lsr_ring_destroy(&p->out);
    lsr_notify_destroy(&p->notify);
    free(p);
}
