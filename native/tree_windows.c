/* tree_windows.c - Job Object and ToolHelp snapshot teardown of a process tree (tree_windows.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tree_windows.h"
#include <tlhelp32.h>

#define SNAPSHOT_ROUNDS 4        /* teardown rounds; later rounds catch children born mid-kill */
#define PIN_ACCESS (PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE)

/* ---------------------------------------------------------------- Job Object */

int lsr_win_job_create(HANDLE *job, lsr_error *err)
{
    HANDLE h = CreateJobObjectW(NULL, NULL);
    if (h == NULL) {
        lsr_win_error_last(err, "CreateJobObjectW");
        return -1;
    }
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION info;
    memset(&info, 0, sizeof(info));
    /* No JOB_OBJECT_LIMIT_BREAKAWAY_OK: a descendant must not be able to leave the job. */
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    if (!SetInformationJobObject(h, JobObjectExtendedLimitInformation, &info, sizeof(info))) {
        lsr_win_error_last(err, "SetInformationJobObject");
        CloseHandle(h);
        return -1;
    }
    *job = h;
    return 0;
}

int lsr_win_job_assign(HANDLE job, HANDLE process, lsr_error *err)
{
    if (AssignProcessToJobObject(job, process))
        return 0;
    DWORD code = GetLastError();
    lsr_win_error(err, "AssignProcessToJobObject", code);
    return code == ERROR_ACCESS_DENIED ? 1 : -1;
}

int lsr_win_job_terminate(HANDLE job, DWORD wait_ms, lsr_error *err)
{
    if (!TerminateJobObject(job, 1)) {
        lsr_win_error_last(err, "TerminateJobObject");
        return -1;
    }
    /* TerminateJobObject only starts the kills; wait until the job is empty so "terminated"
     * means the whole tree is gone (with a short, growing sleep: there is no event for it). */
    int64_t deadline = lsr_now_ms() + (int64_t)wait_ms;
    DWORD nap = 1;
    for (;;) {
        JOBOBJECT_BASIC_ACCOUNTING_INFORMATION acct;
        if (!QueryInformationJobObject(job, JobObjectBasicAccountingInformation, &acct,
                                       sizeof(acct), NULL)) {
            lsr_win_error_last(err, "QueryInformationJobObject");
            return -1;
        }
        if (acct.ActiveProcesses == 0)
            return 0;
        if (lsr_now_ms() >= deadline) {
            lsr_error_setf(err, WAIT_TIMEOUT,
                           "TerminateJobObject: %lu processes still active after %lu ms",
                           (unsigned long)acct.ActiveProcesses, (unsigned long)wait_ms);
            return -1;
        }
        Sleep(nap);
        if (nap < 16)
            nap *= 2;
    }
}

/* ---------------------------------------------------------------- snapshot */

uint64_t lsr_win_now_ticks(void)
{
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    return ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
}

int lsr_win_process_created(HANDLE process, uint64_t *ticks, lsr_error *err)
{
    FILETIME created, exited, kernel, user;
    if (!GetProcessTimes(process, &created, &exited, &kernel, &user)) {
        lsr_win_error_last(err, "GetProcessTimes");
        return -1;
    }
    *ticks = ((uint64_t)created.dwHighDateTime << 32) | created.dwLowDateTime;
    return 0;
}

/* Appends a node, growing the array.  Returns 0, or -1 with *err.  */
static int tree_push(lsr_win_tree *t, DWORD pid, HANDLE h, uint64_t created, lsr_error *err)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        lsr_win_tree_node *nodes = (lsr_win_tree_node *)realloc(t->nodes, cap * sizeof(*nodes));
        if (nodes == NULL) {
            lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
            return -1;
        }
        t->nodes = nodes;
        t->cap = cap;
    }
    lsr_win_tree_node *n = &t->nodes[t->count++];
    n->pid = pid;
    n->handle = h;
    n->created = created;
    n->killed = 0;
    return 0;
}

int lsr_win_tree_init(lsr_win_tree *t, HANDLE root, DWORD root_pid, uint64_t root_created,
                      lsr_error *err)
{
    memset(t, 0, sizeof(*t));
    return tree_push(t, root_pid, root, root_created, err);
}

void lsr_win_tree_release(lsr_win_tree *t)
{
    for (size_t i = 1; i < t->count; i++)
        if (t->nodes[i].handle != NULL)
            CloseHandle(t->nodes[i].handle);
    free(t->nodes);
    memset(t, 0, sizeof(*t));
}

static int tree_has_pid(const lsr_win_tree *t, DWORD pid)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->nodes[i].pid == pid)
            return 1;
    return 0;
}

typedef struct snap_entry {
    DWORD pid;
    DWORD ppid;
} snap_entry;

/* Reads every (pid, parent pid) of a fresh snapshot into a malloc'ed array (*out, *n) and takes
 * the cutoff right after the snapshot exists: everything in the snapshot was created before it.
 * Returns 0, or -1 with *err. */
static int read_snapshot(snap_entry **out, size_t *n, uint64_t *cutoff, lsr_error *err)
{
    HANDLE snap = CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0);
    if (snap == INVALID_HANDLE_VALUE) {
        lsr_win_error_last(err, "CreateToolhelp32Snapshot");
        return -1;
    }
    *cutoff = lsr_win_now_ticks();
    size_t cap = 256, count = 0;
    snap_entry *entries = (snap_entry *)malloc(cap * sizeof(*entries));
    if (entries == NULL) {
        CloseHandle(snap);
        lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
        return -1;
    }
    PROCESSENTRY32W pe;
    pe.dwSize = sizeof(pe);
    BOOL more = Process32FirstW(snap, &pe);
    if (!more && GetLastError() != ERROR_NO_MORE_FILES) {
        lsr_win_error_last(err, "Process32FirstW");
        free(entries);
        CloseHandle(snap);
        return -1;
    }
    while (more) {
        if (count == cap) {
            snap_entry *grown = (snap_entry *)realloc(entries, cap * 2 * sizeof(*entries));
            if (grown == NULL) {
                free(entries);
                CloseHandle(snap);
                lsr_error_setf(err, ERROR_NOT_ENOUGH_MEMORY, "malloc: out of memory");
                return -1;
            }
            entries = grown;
            cap *= 2;
        }
        entries[count].pid = pe.th32ProcessID;
        entries[count].ppid = pe.th32ParentProcessID;
        count++;
        more = Process32NextW(snap, &pe);
    }
    CloseHandle(snap);
    *out = entries;
    *n = count;
    return 0;
}

/* Opens, pins and vets one candidate child of `parent` (a copy: the tree array may move).
 * Returns 1 when added to the tree, 0 when rejected or not openable, -1 with *err. */
static int adopt(lsr_win_tree *t, lsr_win_tree_node parent, DWORD pid, uint64_t cutoff,
                 lsr_error *err)
{
    HANDLE h = OpenProcess(PIN_ACCESS, FALSE, pid);
    if (h == NULL) {
        DWORD code = GetLastError();
        if (code == ERROR_INVALID_PARAMETER) {
            /* Gone since the snapshot.  Keep its pid so its orphans, which still name it as
             * parent, are found; they are vetted against this node's parent's creation time. */
            return tree_push(t, pid, NULL, parent.created, err) == 0 ? 1 : -1;
        }
        if (code == ERROR_ACCESS_DENIED)
            return 0;   /* not ours to end (typically an unrelated process with a reused pid) */
        char call[48];
        snprintf(call, sizeof(call), "OpenProcess(pid %lu)", (unsigned long)pid);
        lsr_win_error(err, call, code);
        return -1;
    }
    uint64_t created;
    if (lsr_win_process_created(h, &created, err) != 0) {
        CloseHandle(h);
        return -1;
    }
    if (created > cutoff || created < parent.created) {
        CloseHandle(h);   /* a different process now owns this pid, or never was a child */
        return 0;
    }
    if (tree_push(t, pid, h, created, err) != 0) {
        CloseHandle(h);
        return -1;
    }
    return 1;
}

int lsr_win_tree_collect(lsr_win_tree *t, uint64_t cutoff, lsr_error *err)
{
    snap_entry *entries;
    size_t n;
    uint64_t snap_cutoff;
    if (read_snapshot(&entries, &n, &snap_cutoff, err) != 0)
        return -1;
    if (cutoff == 0)
        cutoff = snap_cutoff;
    int added = 0;
    size_t first_new = t->count;
    /* Breadth-first from every known node: nodes appended here are visited in turn, so the
     * array ends up in parent-before-child order and reverse order is bottom-up. */
    for (size_t i = 0; i < t->count; i++) {
        /* A gone process found by an earlier snapshot has no pinned handle: its pid may belong
         * to someone else by now, so only the snapshot that saw it alive may use it. */
        if (t->nodes[i].handle == NULL && i < first_new)
            continue;
        for (size_t k = 0; k < n; k++) {
            DWORD pid = entries[k].pid;
            if (entries[k].ppid != t->nodes[i].pid || pid == t->nodes[i].pid || tree_has_pid(t, pid))
                continue;
            int rc = adopt(t, t->nodes[i], pid, cutoff, err);
            if (rc < 0) {
                free(entries);
                return -1;
            }
            added += rc;
        }
    }
    free(entries);
    return added;
}

/* TerminateProcess that treats "already exited" as success.  Returns 0 or -1 with *err. */
static int kill_handle(HANDLE h, DWORD pid, lsr_error *err)
{
    if (TerminateProcess(h, 1))
        return 0;
    DWORD code = GetLastError();
    /* Terminating a process that already exited fails with ERROR_ACCESS_DENIED. */
    if (WaitForSingleObject(h, 0) == WAIT_OBJECT_0)
        return 0;
    char call[48];
    snprintf(call, sizeof(call), "TerminateProcess(pid %lu)", (unsigned long)pid);
    lsr_win_error(err, call, code);
    return -1;
}

int lsr_win_tree_kill_from(lsr_win_tree *t, size_t from, lsr_error *err)
{
    int rc = 0;
    if (from < 1)
        from = 1;
    for (size_t i = t->count; i > from; i--) {
        lsr_win_tree_node *node = &t->nodes[i - 1];
        if (node->killed)
            continue;
        node->killed = 1;
        if (node->handle == NULL)
            continue;
        lsr_error e;
        if (kill_handle(node->handle, node->pid, &e) != 0 && rc == 0) {
            rc = -1;
            if (err != NULL)
                *err = e;
        }
    }
    return rc;
}

/* Waits until every pinned process of the tree (root included) is gone, or the deadline passes.
 * Returns 0, or -1 with *err.  */
static int wait_tree_gone(lsr_win_tree *t, int64_t deadline, lsr_error *err)
{
    for (size_t i = 0; i < t->count; i++) {
        HANDLE h = t->nodes[i].handle;
        if (h == NULL)
            continue;
        int64_t left = deadline - lsr_now_ms();
        DWORD rc = WaitForSingleObject(h, left > 0 ? (DWORD)left : 0);
        if (rc == WAIT_FAILED) {
            lsr_win_error_last(err, "WaitForSingleObject");
            return -1;
        }
        if (rc != WAIT_OBJECT_0) {
            lsr_error_setf(err, WAIT_TIMEOUT,
                           "TerminateProcess: pid %lu still running after the tree was killed",
                           (unsigned long)t->nodes[i].pid);
            return -1;
        }
    }
    return 0;
}

int lsr_win_tree_terminate_snapshot(HANDLE root, DWORD root_pid, DWORD wait_ms, lsr_error *err)
{
    lsr_error first;
    int failed = 0;
    uint64_t root_created;
    if (lsr_win_process_created(root, &root_created, err) != 0)
        return -1;
    lsr_win_tree t;
    if (lsr_win_tree_init(&t, root, root_pid, root_created, err) != 0)
        return -1;
    int64_t deadline = lsr_now_ms() + (int64_t)wait_ms;
    for (int round = 0; round < SNAPSHOT_ROUNDS; round++) {
        size_t before = t.count;
        lsr_error e;
        int added = lsr_win_tree_collect(&t, 0, &e);
        if (added < 0) {
            if (!failed) {
                first = e;
                failed = 1;
            }
            break;
        }
        if (lsr_win_tree_kill_from(&t, before, &e) != 0 && !failed) {
            first = e;
            failed = 1;
        }
        if (round == 0) {
            t.nodes[0].killed = 1;
            if (kill_handle(root, root_pid, &e) != 0 && !failed) {
                first = e;
                failed = 1;
            }
        }
        if (added == 0)
            break;
    }
    lsr_error e;
    if (wait_tree_gone(&t, deadline, &e) != 0 && !failed) {
        first = e;
        failed = 1;
    }
    lsr_win_tree_release(&t);
    if (failed && err != NULL)
        *err = first;
    return failed ? -1 : 0;
}
