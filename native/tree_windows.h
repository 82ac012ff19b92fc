/* tree_windows.h - the two ways the Windows process core ends a whole process tree.  Windows only.
 *
 * 1. Job Object (preferred).  The child is created suspended, assigned to a dedicated job with
 *    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE and only then resumed, so every descendant it ever starts
 *    is in the job (the job does not allow breakaway).  TerminateJobObject ends all of them, and
 *    closing the job handle (also when our own process dies) does the same.
 *
 * 2. ToolHelp snapshot (fallback when the job assignment is denied, e.g. an outer job without
 *    nesting support).  The tree is rebuilt from a CreateToolhelp32Snapshot by parent pid.  Each
 *    descendant's handle is opened and pinned while walking, which keeps its pid from being
 *    reused until we are done.  A candidate is rejected when its creation time is later than the
 *    snapshot cutoff (the pid was reused after the snapshot) or earlier than its parent's (its
 *    parent pid points at an older, unrelated process that once had that pid).  Descendants are
 *    terminated bottom-up, then the root; further snapshots catch children started during the
 *    teardown.
 */
#ifndef LSR_TREE_WINDOWS_H
#define LSR_TREE_WINDOWS_H

#include <stdint.h>
#include "winerr_windows.h"

/* ---- Job Object strategy ---- */

/* Creates an unnamed, non-inheritable job that kills its processes when its last handle closes
 * and does not let them break away.  Returns 0 with *job set, or -1 with *err
 * ("CreateJobObjectW: ...", "SetInformationJobObject: ..."). */
int lsr_win_job_create(HANDLE *job, lsr_error *err);

/* Puts process (created suspended) into job.  Returns 0 on success, 1 when the system denied it
 * with ERROR_ACCESS_DENIED (the caller falls back to the snapshot strategy; *err says why), or -1
 * with *err ("AssignProcessToJobObject: ..."). */
int lsr_win_job_assign(HANDLE job, HANDLE process, lsr_error *err);

/* Terminates every process of the job (exit code 1) and waits up to wait_ms for the job to hold
 * no active process.  Returns 0, or -1 with *err ("TerminateJobObject: ...",
 * "QueryInformationJobObject: ...", or a message saying how many processes outlived wait_ms). */
int lsr_win_job_terminate(HANDLE job, DWORD wait_ms, lsr_error *err);

/* ---- ToolHelp snapshot strategy ---- */

/* FILETIME ticks (100 ns since 1601, UTC), the unit of process creation times.  Never fails. */
uint64_t lsr_win_now_ticks(void);

/* Creation time of a process (GetProcessTimes).  Returns 0, or -1 with *err
 * ("GetProcessTimes: ..."). */
int lsr_win_process_created(HANDLE process, uint64_t *ticks, lsr_error *err);

typedef struct lsr_win_tree_node {
    DWORD pid;
    HANDLE handle;      /* pinned handle; NULL for a process that was gone when we tried to open
                           it (kept so its surviving children are still found) */
    uint64_t created;   /* creation time; for a gone process, its parent's (the best bound) */
    int killed;         /* TerminateProcess was issued (or the process was gone) */
} lsr_win_tree_node;

typedef struct lsr_win_tree {
    lsr_win_tree_node *nodes;   /* nodes[0] is the root; its handle is borrowed, not owned */
    size_t count;
    size_t cap;
} lsr_win_tree;

/* Starts a tree at a root we hold a handle to.  root_created is the root's creation time
 * (lsr_win_process_created); a test may pass a later value to exercise the parent check.
 * Returns 0, or -1 with *err ("malloc: out of memory"). */
int lsr_win_tree_init(lsr_win_tree *t, HANDLE root, DWORD root_pid, uint64_t root_created,
                      lsr_error *err);

/* Takes one ToolHelp snapshot and adds every descendant of the nodes already in the tree that is
 * not in it yet, pinning each one's handle as it is found.  cutoff = 0 uses the time right after
 * the snapshot was taken; a test may pass an earlier cutoff to see later-created processes
 * rejected.  Returns how many nodes were added, or -1 with *err ("CreateToolhelp32Snapshot: ...",
 * "Process32FirstW: ...", "OpenProcess(pid N): ...", "GetProcessTimes: ..."). */
int lsr_win_tree_collect(lsr_win_tree *t, uint64_t cutoff, lsr_error *err);

/* Terminates nodes[from..count) that are not killed yet, last-found first (bottom-up), skipping
 * the root (index 0).  A process that already exited is not an error.  Returns 0, or -1 with *err
 * from the first failing TerminateProcess ("TerminateProcess(pid N): ..."); it still tries all. */
int lsr_win_tree_kill_from(lsr_win_tree *t, size_t from, lsr_error *err);

/* Closes the pinned handles (not the root's) and frees the nodes.  Never fails. */
void lsr_win_tree_release(lsr_win_tree *t);

/* The whole snapshot teardown: collect + kill bottom-up, then TerminateProcess(root), then more
 * snapshot rounds until one finds nothing new (at most a few), then waits up to wait_ms for every
 * killed process to be gone.  root must stay open during the call.  Returns 0, or -1 with *err
 * (the first error; all steps are still attempted). */
int lsr_win_tree_terminate_snapshot(HANDLE root, DWORD root_pid, DWORD wait_ms, lsr_error *err);

#endif /* LSR_TREE_WINDOWS_H */
