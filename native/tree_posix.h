/* tree_posix.h - complete teardown of a POSIX process tree: every descendant, including those that
 * left the root's process group or session (setsid, double-fork daemons, `set -m` jobs,
 * setpgid).  Private to proc_posix.c.
 *
 * Why this mechanism (and not a subreaper supervisor or a cgroup)
 * ---------------------------------------------------------------
 * Requirements: the host stays the parent of every root it spawns (its pidfd and non-reaping
 * waitid(WNOWAIT) probe keep working, the root's pid and group id stay reserved until our one
 * reap); the host never becomes a subreaper (os.waitpid(-1) users and `subprocess` would then
 * reap or see strangers) and installs no signal handler; spawning /bin/true stays cheaper than
 * subprocess.run; closing one session kills that session's tree only.
 *
 * - A PR_SET_CHILD_SUBREAPER supervisor only adopts orphans of its own descendants, so it would
 *   have to be the parent (ancestor) of the roots: the host would lose its parenthood of them.
 *   Worse, one shared supervisor cannot tell which tree an adopted orphan came from (its parent,
 *   the only link, is dead by then), so per-session teardown would need one subreaper process
 *   per tree: an extra fork per spawn.  fork() of a Python host costs ~1.9 ms on the reference
 *   VM against ~0.6-0.9 ms for a whole subprocess.run, which breaks the spawn budget.
 * - cgroup v2 needs a writable delegated cgroup; the one on the reference machine
 *   (/sys/fs/cgroup/unified, hybrid setup) is read-only, and most hosts have none.
 *
 * So each tree carries a per-tree tag in its environment, "LUASKILLS_TREE_<hostpid>_<nonce>=<n>",
 * which every descendant inherits whatever it does to its session or process group.  Teardown
 * (lsr_tree_kill) finds the tree's processes in /proc two ways: by parent links from the still
 * unreaped root (this also catches descendants that cleared their environment while their parent
 * chain is intact) and by the tag (which catches orphans adopted by init or another subreaper,
 * e.g. a double-fork daemon, whose parent chain is gone).  It SIGKILLs them and rescans until no
 * live member is left.  Only processes created after the root can be members, so the scan is
 * limited to pids allocated since (the kernel's ns_last_pid): a tree that never forked costs one
 * small read, which keeps exec of /bin/true within budget.
 *
 * Host death (SIGKILL included): a watchdog process, started lazily once per host (double fork,
 * so it is not the host's child and never shows up in os.waitpid(-1)), blocks on a pipe whose
 * write end only the host holds (close-on-exec).  When the host dies the kernel closes it; the
 * watchdog sees EOF, kills every process tagged with the host's prefix and exits.
 * PR_SET_PDEATHSIG is not used: it fires when the *thread* that forked exits, not the process,
 * and a Python thread that opened the first session may well end before the host.  The watchdog
 * is forked from a multithreaded host, so its side uses only async-signal-safe calls (raw
 * open/read/getdents64/kill/nanosleep on stack buffers; no malloc, no stdio).
 *
 * Limits, documented in README (Safety): a descendant that both clears its environment and
 * loses its parent chain before teardown (e.g. `env -i setsid daemon` from an intermediate that
 * exits) is not found; a host that fork()s without exec shares the watchdog pipe with that child,
 * so the watchdog fires only when both are gone.  macOS/BSD (no /proc): process groups only.
 */
#ifndef LSR_TREE_POSIX_H
#define LSR_TREE_POSIX_H

#include <stddef.h>
#include <sys/types.h>
#include "lsr_error.h"

#define LSR_TREE_TAG_MAX 64

/* Whether this build tracks escaped descendants (Linux); elsewhere the calls below do nothing
 * and teardown relies on the process group. */
#ifdef __linux__
#  define LSR_TREE_TRACKING 1
#else
#  define LSR_TREE_TRACKING 0
#endif

/* Fills tag (capacity LSR_TREE_TAG_MAX) with a new "NAME=VALUE" environment entry unique to one
 * tree of this host, and starts the host-death watchdog on first use.  Returns 0, or -1 with *err
 * ("pipe: ...", "fork: ...") when the watchdog cannot be started (then no tag is made; the tree is
 * still torn down through its process group).  Thread-safe. */
int lsr_tree_new_tag(char *tag, lsr_error *err);

/* Kills every live process of the tree rooted at `root` (spawned by us) except the root itself:
 * its descendants by parent links (only while root_unreaped: a reaped root's pid may name another
 * process) and every process whose environment holds `tag` (NULL: parent links only).  `root`
 * also bounds the scan: only pids allocated after it are looked at.  SIGKILLs them and rescans until a scan finds none alive or ~500 ms
 * passed (a process stuck in the kernel).  Call it before killing and reaping the root.  Returns
 * the number of signals sent, or -1 with *err ("malloc: ...", "open: ...").  Never blocks
 * longer than that bound.  Limit: an orphan adopted by a subreaper that itself started after the
 * root and is not a member is judged through that parent, not by its tag. */
int lsr_tree_kill(pid_t root, int root_unreaped, const char *tag, lsr_error *err);

/* Number of live processes (not zombies) whose environment holds exactly `tag`, for tests.
 * Returns -1 with *err when /proc cannot be read. */
int lsr_tree_count_tagged(const char *tag, lsr_error *err);

#endif /* LSR_TREE_POSIX_H */
