/* tree_posix.c - see tree_posix.h for the mechanism and why it was chosen. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tree_posix.h"

#ifndef __linux__

int lsr_tree_new_tag(char *tag, lsr_error *err)
{
    (void)err;
    tag[0] = '\0';
    return 0;
}

int lsr_tree_kill(pid_t root, int root_unreaped, const char *tag, lsr_error *err)
{
    (void)root;
    (void)root_unreaped;
    (void)tag;
    (void)err;
    return 0;
}

int lsr_tree_count_tagged(const char *tag, lsr_error *err)
{
    (void)tag;
    (void)err;
    return 0;
}

#else /* __linux__ */

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "lsr_sync.h"

#define TAG_NAME "LUASKILLS_TREE_"
#define SWEEP_MS 500            /* bound of one teardown sweep (a process stuck in the kernel) */
#define WATCHDOG_SWEEP_MS 2000  /* bound of the host-death sweep */
#define PROBE_RANGE_MAX 512     /* up to this many new pids: probe them one by one, else readdir */

/* ---- async-signal-safe helpers (used by the watchdog too: no malloc, no stdio) -------------- */

/* Writes v in decimal at p; returns the end.  Never fails. */
static char *put_uint(char *p, unsigned long long v)
{
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

static char *put_str(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

/* "/proc/<pid>/<leaf>" into buf (>= 40 bytes).  Never fails. */
static void proc_path(char *buf, long pid, const char *leaf)
{
    char *p = put_str(buf, "/proc/");
    p = put_uint(p, (unsigned long long)pid);
    *p++ = '/';
    p = put_str(p, leaf);
    *p = '\0';
}

/* Reads up to cap-1 bytes of a small file, NUL-terminated.  Returns the length or -1. */
static int read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n;
    do {
        n = read(fd, buf, cap - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return (int)n;
}

/* Parent pid and state letter of a process from /proc/<pid>/stat.  Returns 0, or -1 when the
 * process is gone (or unreadable). */
static int read_stat(long pid, long *ppid, char *state)
{
    char path[48], buf[512];
    proc_path(path, pid, "stat");
    int n = read_small(path, buf, sizeof buf);
    if (n <= 0)
        return -1;
    /* "pid (comm) S ppid ...": comm may hold ')' and spaces, so parse after the last ')'. */
    char *close_paren = NULL;
    for (int i = 0; i < n; i++)
        if (buf[i] == ')')
            close_paren = &buf[i];
    if (close_paren == NULL || close_paren + 4 >= buf + n)
        return -1;
    *state = close_paren[2];
    long v = 0;
    for (char *p = close_paren + 4; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    *ppid = v;
    return 0;
}

/* Whether an entry of /proc/<pid>/environ equals `needle` (prefix = 0) or starts with it
 * (prefix = 1).  Streams the file through a stack buffer; unreadable files (other users,
 * kernel threads, processes gone) hold no entry.  Never fails. */
static int environ_has(long pid, const char *needle, size_t nlen, int prefix)
{
    char path[48], buf[4096];
    proc_path(path, pid, "environ");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t pos = 0;     /* bytes of the current entry matched so far */
    int alive = 1;      /* the current entry still matches */
    int found = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n && !found; i++) {
            char c = buf[i];
            if (c == '\0') {
                if (alive && pos == nlen)
                    found = 1;
                pos = 0;
                alive = 1;
            } else if (alive) {
                if (pos < nlen && needle[pos] == c)
                    pos++;
                else if (pos == nlen && prefix)
                    found = 1;
                else
                    alive = 0;
            }
        }
        if (found)
            break;
    }
    close(fd);
    return found;
}

struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Calls visit(pid, ctx) for every numeric entry of /proc (raw getdents64 on a stack buffer, so
 * the watchdog may use it).  Returns 0, or -1 with errno when /proc cannot be opened. */
static int for_each_pid(void (*visit)(long pid, void *ctx), void *ctx)
{
    int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[8192] __attribute__((aligned(8)));
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct linux_dirent64 *d = (struct linux_dirent64 *)(buf + off);
            off += d->d_reclen;
            long pid = 0;
            const char *s = d->d_name;
            if (*s < '1' || *s > '9')
                continue;
            for (; *s >= '0' && *s <= '9'; s++)
                pid = pid * 10 + (*s - '0');
            if (*s == '\0')
                visit(pid, ctx);
        }
    }
    close(fd);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- the host-death watchdog -------------------------------------------------------------- */

struct tagged_sweep {
    const char *needle;
    size_t nlen;
    int prefix;
    int found;      /* live tagged processes seen in this round */
    int kill;       /* signal them (the watchdog) or only count (tests) */
};

static void visit_tagged(long pid, void *ctx)
{
    struct tagged_sweep *s = ctx;
    long ppid;
    char state;
    if (pid == (long)getpid() || read_stat(pid, &ppid, &state) != 0 || state == 'Z' || state == 'X')
        return;
    if (!environ_has(pid, s->needle, s->nlen, s->prefix))
        return;
    s->found++;
    if (s->kill)
        kill((pid_t)pid, SIGKILL);
}

/* The watchdog's life, in the grandchild of a fork() from a possibly multithreaded host: only
 * async-signal-safe calls.  Never returns. */
static void watchdog_main(int pipe_fd, const char *prefix)
{
    /* Own session: a terminal's ^C to the host's group must not end the watchdog first. */
    setsid();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);   /* the host's handlers are meaningless here */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Hold nothing of the host's but the pipe: its other pipes must reach EOF without us. */
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (pipe_fd != 3) {
        dup2(pipe_fd, 3);   /* dup2 clears close-on-exec; harmless, we never exec */
        pipe_fd = 3;
    }
    if (null_fd >= 0) {
        for (int fd = 0; fd < 3; fd++)
            dup2(null_fd, fd);
    }
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0) {
        struct rlimit rl;
        long top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (long)rl.rlim_cur
                                                                              : 65536;
        for (long fd = 4; fd < top; fd++)
            close((int)fd);
    }
    char byte;
    for (;;) {
        ssize_t n = read(pipe_fd, &byte, 1);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;   /* EOF: the host is gone (or exec'd) */
    }
    struct tagged_sweep s = { prefix, strlen(prefix), 1, 0, 1 };
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        s.found = 0;
        for_each_pid(visit_tagged, &s);
        if (s.found == 0)
            break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000
            > WATCHDOG_SWEEP_MS)
            break;
        sleep_ms(2);
    }
    _exit(0);
}

static pthread_mutex_t tag_mu = PTHREAD_MUTEX_INITIALIZER;
static int watchdog_fd = -1;          /* write end of the watchdog pipe; kept for our lifetime */
static pid_t watchdog_owner;          /* getpid() when it was started: a fork()ed copy restarts */
static char tag_prefix[LSR_TREE_TAG_MAX - 24];
static unsigned long long tag_seq;

/* Starts the watchdog (tag_mu held).  Returns 0 or -1 with *err. */
static int start_watchdog_locked(lsr_error *err)
{
    pid_t me = getpid();
    /* The nonce tells our trees from those of an earlier host that had the same pid. */
    char *p = put_str(tag_prefix, TAG_NAME);
    p = put_uint(p, (unsigned long long)me);
    *p++ = '_';
    p = put_uint(p, (unsigned long long)(lsr_now_ms() & 0xffffffffu));
    *p++ = '=';
    *p = '\0';

    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        lsr_set_error(err, errno, "pipe");
        return -1;
    }
    pid_t mid = fork();
    if (mid < 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        lsr_set_error(err, saved, "fork");
        return -1;
    }
    if (mid == 0) {
        /* Child of a possibly multithreaded process: async-signal-safe calls only from here. */
        close(fds[1]);
        pid_t dog = fork();
        if (dog == 0)
            watchdog_main(fds[0], tag_prefix);
        _exit(dog < 0 ? 1 : 0);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        close(fds[1]);
        lsr_error_setf(err, EAGAIN, "fork: %s", strerror(EAGAIN));
        return -1;
    }
    if (watchdog_fd >= 0)
        close(watchdog_fd);   /* a fork()ed copy's inherited end: the parent's watchdog keeps its own */
    watchdog_fd = fds[1];
    watchdog_owner = me;
    return 0;
}

int lsr_tree_new_tag(char *tag, lsr_error *err)
{
    pthread_mutex_lock(&tag_mu);
    if (watchdog_fd < 0 || watchdog_owner != getpid()) {
        if (start_watchdog_locked(err) != 0) {
            pthread_mutex_unlock(&tag_mu);
            tag[0] = '\0';
            return -1;
        }
    }
    char *p = put_str(tag, tag_prefix);
    p = put_uint(p, ++tag_seq);
    *p = '\0';
    pthread_mutex_unlock(&tag_mu);
    return 0;
}

int lsr_tree_count_tagged(const char *tag, lsr_error *err)
{
    struct tagged_sweep s = { tag, strlen(tag), 0, 0, 0 };
    if (for_each_pid(visit_tagged, &s) != 0) {
        lsr_set_error(err, errno, "open");
        return -1;
    }
    return s.found;
}

/* ---- teardown sweep (host side) ------------------------------------------------------------ */

typedef struct candidate {
    long pid;
    long ppid;
    char state;
    char member;
} candidate;

typedef struct candidate_set {
    candidate *items;
    size_t n, cap;
    long root, last;    /* pids in the cyclic interval (root, last] are candidates */
    int link_root;      /* a parent pid equal to root means our root (it is unreaped) */
    int oom;
} candidate_set;

static long read_long_file(const char *path)
{
    char buf[32];
    if (read_small(path, buf, sizeof buf) <= 0)
        return -1;
    long v = 0;
    for (char *p = buf; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (*p - '0');
    return v;
}

static int in_interval(long pid, long root, long last)
{
    return root < last ? pid > root && pid <= last : pid > root || pid <= last;
}

static void add_candidate(long pid, void *ctx)
{
    candidate_set *cs = ctx;
    if (cs->last >= 0 && !in_interval(pid, cs->root, cs->last))
        return;
    candidate c = { pid, 0, 0, 0 };
    if (read_stat(pid, &c.ppid, &c.state) != 0 || c.state == 'Z' || c.state == 'X')
        return;
    if (cs->n == cs->cap) {
        size_t cap = cs->cap ? cs->cap * 2 : 64;
        candidate *grown = realloc(cs->items, cap * sizeof *grown);
        if (grown == NULL) {
            cs->oom = 1;
            return;
        }
        cs->items = grown;
        cs->cap = cap;
    }
    cs->items[cs->n++] = c;
}

/* Live processes created after the root (a superset of its live descendants) into cs.
 * Returns 0, or -1 with *err. */
static int collect(candidate_set *cs, lsr_error *err)
{
    static long pid_max = 0;
    if (pid_max == 0)
        pid_max = read_long_file("/proc/sys/kernel/pid_max");
    cs->n = 0;
    cs->oom = 0;
    cs->last = read_long_file("/proc/sys/kernel/ns_last_pid");
    if (cs->last == cs->root)
        return 0;   /* no process was created since the root: it has no descendants */
    long span = cs->last < 0 || pid_max <= 0 ? -1
                : cs->last > cs->root ? cs->last - cs->root : pid_max - cs->root + cs->last;
    if (span >= 0 && span <= PROBE_RANGE_MAX) {
        for (long i = 1; i <= span; i++) {
            long pid = cs->root + i;
            if (pid >= pid_max)
                pid -= pid_max;
            if (pid > 0)
                add_candidate(pid, cs);
        }
    } else if (for_each_pid(add_candidate, cs) != 0) {
        lsr_set_error(err, errno, "open");
        return -1;
    }
    if (cs->oom) {
        lsr_set_error(err, ENOMEM, "malloc");
        return -1;
    }
    return 0;
}

static candidate *find_candidate(candidate_set *cs, long pid)
{
    for (size_t i = 0; i < cs->n; i++)
        if (cs->items[i].pid == pid)
            return &cs->items[i];
    return NULL;
}

/* Whether pid is a thread of this process (the drainer thread, say: created after the root, so
 * a candidate, but never a member).  Never fails. */
static int own_thread(long pid)
{
    char path[64];
    char *p = put_str(path, "/proc/self/task/");
    p = put_uint(p, (unsigned long long)pid);
    *p = '\0';
    return access(path, F_OK) == 0;
}

/* Marks the members among the candidates and returns how many.  Candidates form a forest by
 * parent links; a forest root (its parent predates our root) is a member when its parent is our
 * root or it carries the tag (an orphan adopted by init or a subreaper); every other candidate
 * is a member exactly when its parent is.  So the environment, the costly read, is only read
 * for forest roots. */
static int mark_members(candidate_set *cs, const char *tag)
{
    int with_tag = tag != NULL && tag[0] != '\0';
    size_t tlen = with_tag ? strlen(tag) : 0;
    long our_parent = (long)getppid();
    for (size_t i = 0; i < cs->n; i++) {
        candidate *c = &cs->items[i];
        if (find_candidate(cs, c->ppid) != NULL)
            continue;   /* decided through its parent below */
        if (cs->link_root && c->ppid == cs->root)
            c->member = 1;
        else if (with_tag && !(c->ppid == our_parent && own_thread(c->pid)))
            c->member = environ_has(c->pid, tag, tlen, 0) ? 1 : 2;
        else
            c->member = 2;   /* known non-member */
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < cs->n; i++) {
            candidate *c = &cs->items[i];
            if (c->member != 0)
                continue;
            candidate *parent = find_candidate(cs, c->ppid);
            if (parent != NULL && parent->member != 0) {
                c->member = parent->member;
                changed = 1;
            }
        }
    }
    int members = 0;
    for (size_t i = 0; i < cs->n; i++) {
        if (cs->items[i].member != 1)
            cs->items[i].member = 0;
        else
            members++;
    }
    return members;
}

int lsr_tree_kill(pid_t root, int root_unreaped, const char *tag, lsr_error *err)
{
    candidate_set cs;
    memset(&cs, 0, sizeof cs);
    cs.root = (long)root;
    cs.link_root = root_unreaped;
    int signalled = 0;
    long pause_ns = 50000L;
    int64_t deadline = lsr_now_ms() + SWEEP_MS;
    for (;;) {
        if (collect(&cs, err) != 0) {
            free(cs.items);
            return -1;
        }
        if (mark_members(&cs, tag) == 0)
            break;
        for (size_t i = 0; i < cs.n; i++) {
            if (cs.items[i].member && kill((pid_t)cs.items[i].pid, SIGKILL) == 0)
                signalled++;
        }
        if (lsr_now_ms() >= deadline)
            break;
        /* Let the signalled processes die (a SIGKILLed process is usually gone within tens of
         * microseconds, so start short); their not-yet-signalled children, orphaned now, keep
         * the tag and are found by the next scan. */
        struct timespec nap = { 0, pause_ns };
        while (nanosleep(&nap, &nap) != 0 && errno == EINTR) {
        }
        if (pause_ns < 4000000L)
            pause_ns *= 2;
    }
    free(cs.items);
    return signalled;
}

#endif /* __linux__ */
