// clawvisor's syscall monitor, loaded by supervisor/monitors/syscalls.py with BCC.
//
// struct event, the K_* kinds and the sizes are rendered above this file from
// supervisor/monitors/abi.py, and the programs below it: each watched syscall has one
// handler here, enter_NAME(a0..a5) on its raw arguments; one program dispatches to them
// by syscall number from its own tracepoint, or from raw_syscalls where the kernel lacks
// that tracepoint.
//
// Who is watched: a process whose real uid is a workload's, or that sits in a workload's
// cgroup, and from then on by lineage: its tgid goes into `watched_tgids`, and so does
// every process it forks, so gaining uid 0 (a setuid binary, an exploit) does not take a
// process out of sight. Tracepoints only (stable ABI; this kernel refuses kprobes, fentry
// and LSM programs). One walk reads kernel structs (a first-seen process's cwd), at
// offsets from the running kernel's BTF (supervisor/monitors/btf.py), never from the
// headers BCC compiles against (here another kernel's).
//
// Outcomes: an event with an outcome is built at entry (paths are read there: reading
// them at exit would let another thread swap the buffer after the kernel copied it),
// held in `inflight` by thread id, and sent from the exit with the return value. A path
// the entry could not read (its page not faulted in yet) is read again at exit.
//
// Sent through one ring buffer; a failed output is counted in `lost` (the ring buffer has
// no lost-event callback). Each workload has a token bucket; throttling is itself sent.

#include <uapi/linux/ptrace.h>
#include <asm/unistd.h>
#include <linux/capability.h>

// Syscalls newer than the headers BCC compiles against (numbers from 424 on are the same
// on every architecture).
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif

#define AT_FDCWD_ -100
#define O_WRITES (01 | 02 | 0100 | 01000)  // O_WRONLY | O_RDWR | O_CREAT | O_TRUNC
#define O_DIRISH (0200000 | 010000000)     // O_DIRECTORY | O_PATH: likely a dirfd
#define CLONE_THREAD_ 0x00010000

struct pending {
    struct event e;
    u64 upath;    // read the path again at exit from here (the entry read failed)
    u64 upath2;   // the same for a second path (into data)
    u64 uptr;     // pipe: where the two fds are written
    u32 filter;   // apply the read filter at exit (the path was unreadable at entry)
};

struct bucket {
    u64 tokens;     // in thousandths of an event
    u64 last_ns;
    u64 dropped;
    u64 reported_ns;
};

struct prefix {
    u64 len;
    char s[PREFIXLEN];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(watched_uids, u32, u32, 4096);        // uid -> workload index
BPF_HASH(watched_cgroups, u64, u32, 4096);     // cgroup v2 id -> workload index
BPF_HASH(watched_tgids, u32, u32, 65536);      // process -> workload index (lineage)
BPF_HASH(buckets, u32, struct bucket, 4096);   // workload index -> its token bucket
BPF_PERCPU_ARRAY(lost, u64, 1);
BPF_ARRAY(config, u64, 4);                     // [0] events/s per workload, [1] burst
BPF_ARRAY(read_prefixes, struct prefix, NPREFIX);  // read-only opens under these are sent
BPF_TABLE("lru_hash", u32, struct pending, inflight, 16384);  // thread -> event awaiting its exit
BPF_PERCPU_ARRAY(scratch, struct pending, 1);
// (tgid << 32 | fd) for the fds user space keeps a path or kind for (directories,
// memfds, sockets, pipes): their close and dup are sent, no others.
BPF_TABLE("lru_hash", u64, u8, tracked_fds, 65536);

// Most syscalls on a box are not a workload's. Telling so took three hash lookups at
// entry and two more at exit, for every syscall of every process: a fifth more time for
// a syscall-heavy process nobody watches. Each CPU keeps, per tgid slot, the last task
// found unwatched (with the uid and cgroup it had) under a generation, and the check is
// then one array lookup. The generation goes up at every insertion into the watched
// sets (a process first seen, a fork, user space adding uids or cgroups), so no
// remembered verdict outlives a change that could have made it wrong; a uid or cgroup
// change misses the slot by itself.
#define UNWATCHED_SLOTS 64
struct unwatched_task {
    u32 tgid;
    u32 uid;
    u64 cgroup;
    u64 generation;
};
BPF_PERCPU_ARRAY(unwatched, struct unwatched_task, UNWATCHED_SLOTS);
// [0] is raised here (atomically), [1] by user space (its only writer); each only
// grows, so their sum, the generation, never comes back to a value it had.
BPF_ARRAY(generation, u64, 2);

// A record's header: who, which workload, when; the rest zeroed for the handler.
static __always_inline void fill_header(struct event *e, u32 kind, u32 idx) {
    u64 id = bpf_get_current_pid_tgid();
    u64 ug = bpf_get_current_uid_gid();
    e->kind = kind;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->uid = (u32)ug;
    e->gid = ug >> 32;
    e->workload = idx;
    e->ts = bpf_ktime_get_ns();
    e->result = 0;
#pragma unroll
    for (int i = 0; i < NUMS; i++)
        e->num[i] = 0;
    e->path[0] = 0;
    e->data[0] = 0;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
}

#ifdef CWD_WALK
// The one walk through kernel structs: offsets from the running kernel's BTF (btf.py),
// never from the headers BCC compiles against.
BPF_PERCPU_ARRAY(cwd_scratch, struct event, 1);
BPF_TABLE("lru_hash", u32, u32, cwd_wanted, 16384);  // first-seen tgid -> workload index

static __always_inline u64 kread(u64 base, u32 off) {
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (const void *)(base + off));
    return v;
}

// A process seen for the first time (not born watched: those inherit their parent's
// cwd in user space) has its cwd sent as K_CWD from the exit of that first syscall
// (the walk is in the exit programs only: one copy, where BCC allows no calls), before
// the syscall's own event; walked up dentry by dentry and across mounts as d_path
// would, leaf first, one name per CWD_SLOT-byte slot over path and data; num[0] the
// names, num[1] 1 when the walk reached the root. Reading it from /proc later was a
// race: a process that exits at once takes its cwd with it. Not at a chdir's exit (the
// cwd is the new one there): at the next exit.
static __always_inline void cwd_at_exit(long nr) {
    if (nr == __NR_chdir || nr == __NR_fchdir)
        return;
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 *wanted = cwd_wanted.lookup(&tgid);
    if (!wanted)
        return;
    u32 idx = *wanted;
    cwd_wanted.delete(&tgid);
    int zero = 0;
    struct event *e = cwd_scratch.lookup(&zero);
    if (!e)
        return;
    fill_header(e, K_CWD, idx);
    u64 fs = kread(bpf_get_current_task(), OFF_TASK_STRUCT_FS);
    u64 dentry = kread(fs, OFF_FS_STRUCT_PWD + OFF_PATH_DENTRY);
    u64 mnt = kread(fs, OFF_FS_STRUCT_PWD + OFF_PATH_MNT);
    u64 root = kread(fs, OFF_FS_STRUCT_ROOT + OFF_PATH_DENTRY);
    u64 root_mnt = kread(fs, OFF_FS_STRUCT_ROOT + OFF_PATH_MNT);
    char *out = e->path;  // path and data follow each other: CWD_SLOTS slots in all
    s64 names = 0, whole = 0;
#pragma unroll
    for (int i = 0; i < CWD_STEPS; i++) {
        if (dentry == root && mnt == root_mnt) {
            whole = 1;
            break;
        }
        if (dentry == kread(mnt, OFF_VFSMOUNT_MNT_ROOT)) {  // the top of a mount
            u64 mount = mnt - OFF_MOUNT_MNT;
            u64 parent = kread(mount, OFF_MOUNT_MNT_PARENT);
            if (parent == mount) {  // the namespace's root mount
                whole = 1;
                break;
            }
            dentry = kread(mount, OFF_MOUNT_MNT_MOUNTPOINT);
            mnt = parent + OFF_MOUNT_MNT;
            continue;
        }
        if (names >= CWD_SLOTS)
            break;
        u32 len = 0;
        bpf_probe_read_kernel(&len, sizeof(len),
                              (const void *)(dentry + OFF_DENTRY_D_NAME + OFF_QSTR_LEN));
        if (len >= CWD_SLOT)
            break;
        u64 name = kread(dentry, OFF_DENTRY_D_NAME + OFF_QSTR_NAME);
        bpf_probe_read_kernel_str(out + (names & (CWD_SLOTS - 1)) * CWD_SLOT, CWD_SLOT,
                                  (const void *)name);
        names++;
        u64 parent = kread(dentry, OFF_DENTRY_D_PARENT);
        if (parent == dentry)
            break;  // a detached tree: not whole
        dentry = parent;
    }
    e->num[0] = names;
    e->num[1] = whole;
    if (events.ringbuf_output(e, sizeof(*e), 0) < 0) {
        u64 *n = lost.lookup(&zero);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
}
#endif

// The current task was found unwatched on this CPU, as it is now, under the current
// generation: nothing about it is wanted.
static __always_inline u64 current_generation(void) {
    int here = 0, there = 1;
    u64 *ours = generation.lookup(&here);
    u64 *users = generation.lookup(&there);
    return (ours ? *ours : 0) + (users ? *users : 0);
}

static __always_inline int known_unwatched(void) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 slot = tgid & (UNWATCHED_SLOTS - 1);
    struct unwatched_task *u = unwatched.lookup(&slot);
    if (!u || u->tgid != tgid || u->generation != current_generation())
        return 0;
    return u->uid == (u32)bpf_get_current_uid_gid() && u->cgroup == bpf_get_current_cgroup_id();
}

static __always_inline void generation_up(void) {
    int zero = 0;
    u64 *gen = generation.lookup(&zero);
    if (gen)
        __sync_fetch_and_add(gen, 1);
}

static __always_inline u32 watched(void) {
    if (known_unwatched())
        return 0;
    u64 before = current_generation();  // read before the sets: a change after is newer
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u32 *w = watched_tgids.lookup(&tgid);
    if (w)
        return *w;
    u32 uid = bpf_get_current_uid_gid();
    w = watched_uids.lookup(&uid);
    u64 cg = bpf_get_current_cgroup_id();
    if (!w) {
        w = watched_cgroups.lookup(&cg);
        if (!w) {
            u32 slot = tgid & (UNWATCHED_SLOTS - 1);
            struct unwatched_task *u = unwatched.lookup(&slot);
            if (u) {
                u->tgid = tgid;
                u->uid = uid;
                u->cgroup = cg;
                u->generation = before;
            }
            return 0;
        }
    }
    u32 idx = *w;
    // From now on by lineage: a later change of uid keeps this process watched. Any
    // CPU may remember this tgid as unwatched (with another uid, which it may take
    // back): the generation goes up.
    watched_tgids.update(&tgid, &idx);
    generation_up();
#ifdef CWD_WALK
    cwd_wanted.update(&tgid, &idx);  // its cwd goes out at this syscall's exit
#endif
    return idx;
}

static __always_inline u64 fd_key(int fd) {
    return (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) | (u32)fd;
}

static __always_inline int is_tracked(int fd) {
    u64 key = fd_key(fd);
    return tracked_fds.lookup(&key) != 0;
}

static __always_inline void track(int fd) {
    u64 key = fd_key(fd);
    u8 one = 1;
    tracked_fds.update(&key, &one);
}

// Token bucket per workload. Returns 1 to emit, 0 to drop (and counts the drop). A flood
// is a known way to blind a monitor, so throttling is itself reported (at most once a
// second per workload) as K_THROTTLED, which user space turns into an alert.
static __always_inline int admit(u32 idx, u64 now) {
    int zero = 0, one = 1;
    u64 *rate = config.lookup(&zero);
    u64 *burst = config.lookup(&one);
    if (!rate || !burst || *rate == 0)
        return 1;
    struct bucket init = {};
    init.tokens = *burst * 1000;
    init.last_ns = now;
    struct bucket *b = buckets.lookup_or_try_init(&idx, &init);
    if (!b)
        return 1;
    u64 elapsed = now - b->last_ns;
    if (elapsed > 10000000000ULL)  // a full bucket refills well within 10 s; no overflow
        elapsed = 10000000000ULL;
    u64 refill = elapsed * *rate / 1000000;  // thousandths of an event, exact to the ns
    u64 tokens = b->tokens + refill;
    if (tokens > *burst * 1000)
        tokens = *burst * 1000;
    b->last_ns = now;
    if (tokens >= 1000) {
        b->tokens = tokens - 1000;
        return 1;
    }
    b->tokens = tokens;
    __sync_fetch_and_add(&b->dropped, 1);
    if (now - b->reported_ns > 1000000000ULL) {
        b->reported_ns = now;
        return 2;
    }
    return 0;
}

static __always_inline void output(struct event *e) {
    // Two constant sizes, for the verifier: whole, or cut before `data` (abi.DATA_KINDS).
    long r;
    if (USES_DATA(e->kind))
        r = events.ringbuf_output(e, sizeof(*e), 0);
    else
        r = events.ringbuf_output(e, __builtin_offsetof(struct event, data), 0);
    if (r < 0) {
        int zero = 0;
        u64 *n = lost.lookup(&zero);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
}

// The per-CPU scratch record with the header filled in, or 0 when the current process
// is not watched. Bytes past a string's terminator may be left from an earlier record:
// user space never reads past one.
static __always_inline struct pending *begin(u32 kind) {
    u32 idx = watched();
    if (!idx)
        return 0;
    int zero = 0;
    struct pending *p = scratch.lookup(&zero);
    if (!p)
        return 0;
    fill_header(&p->e, kind, idx);
    p->upath = 0;
    p->upath2 = 0;
    p->uptr = 0;
    p->filter = 0;
    return p;
}

// Over its workload's rate: dropped, or sent as the once-a-second K_THROTTLED instead.
static __always_inline int admitted(struct pending *p) {
    int verdict = admit(p->e.workload, p->e.ts);
    if (verdict == 1)
        return 1;
    if (verdict == 2) {
        u32 idx = p->e.workload;
        struct bucket *b = buckets.lookup(&idx);
        p->e.kind = K_THROTTLED;
        p->e.num[0] = b ? b->dropped : 0;
        output(&p->e);
    }
    return 0;
}

// No outcome to wait for: out now.
static __always_inline int send(struct pending *p) {
    if (admitted(p))
        output(&p->e);
    return 0;
}

// Sent from the syscall's exit, with its outcome.
static __always_inline int hold(struct pending *p) {
    if (!admitted(p))
        return 0;
    u32 tid = p->e.tid;
    inflight.update(&tid, p);
    return 0;
}

static __always_inline void read_path(struct pending *p, u64 uptr) {
    if (bpf_probe_read_user_str(p->e.path, PATHLEN, (const void *)uptr) < 0)
        p->upath = uptr;
}

static __always_inline void read_path2(struct pending *p, u64 uptr) {
    if (bpf_probe_read_user_str(p->e.data, PATHLEN, (const void *)uptr) < 0)
        p->upath2 = uptr;
}

// Read-only opens are sent when relative (user space resolves them against the cwd or
// dirfd it tracks, then filters) or under one of the configured prefixes (the homes,
// system secrets).
static __always_inline int wanted_read(const char *path) {
    if (path[0] != '/')
        return 1;
#pragma clang loop unroll(disable)
    for (int j = 0; j < NPREFIX; j++) {
        int k = j;
        struct prefix *pf = read_prefixes.lookup(&k);
        if (!pf || pf->len == 0)
            continue;
        int same = 1;
#pragma clang loop unroll(disable)
        for (int i = 0; i < PREFIXLEN; i++) {
            if (i >= pf->len)
                break;
            if (path[i] != pf->s[i]) {
                same = 0;
                break;
            }
        }
        if (same)
            return 1;
    }
    return 0;
}

static __always_inline int finish(long ret) {
    u32 tid = bpf_get_current_pid_tgid();
    struct pending *p = inflight.lookup(&tid);
    if (!p)
        return 0;
    p->e.result = ret;
    if (p->upath)
        bpf_probe_read_user_str(p->e.path, PATHLEN, (const void *)p->upath);
    if (p->upath2)
        bpf_probe_read_user_str(p->e.data, PATHLEN, (const void *)p->upath2);
    if (p->filter && !wanted_read(p->e.path)) {
        inflight.delete(&tid);
        return 0;
    }
    u32 kind = p->e.kind;
    if (ret >= 0) {
        if ((kind == K_OPEN && (p->e.num[0] & O_DIRISH)) || kind == K_MEMFD ||
            kind == K_SOCKET || kind == K_DUP)
            track((int)ret);
        if (kind == K_PIPE && p->uptr) {
            int fds[2] = {-1, -1};
            bpf_probe_read_user(fds, sizeof(fds), (const void *)p->uptr);
            p->e.num[1] = fds[0];
            p->e.num[2] = fds[1];
            track(fds[0]);
            track(fds[1]);
        }
    }
    output(&p->e);
    inflight.delete(&tid);
    return 0;
}

#ifdef COMPAT_WATCH
// A 32-bit syscall (int 0x80, TS_COMPAT in thread_info.status): the per-syscall
// tracepoints skip every one of them, so an open or exec made that way would pass
// unseen. Caught in raw_syscalls' sys_enter and sent as what it is, with its number.
#define TS_COMPAT_ 0x0002
static __always_inline int compat_syscall(long nr) {
    u32 status = 0;
    bpf_probe_read_kernel(&status, sizeof(status),
                          (const void *)(bpf_get_current_task() + OFF_TASK_STRUCT_THREAD_INFO +
                                         OFF_THREAD_INFO_STATUS));
    if (!(status & TS_COMPAT_))
        return 0;
    struct pending *p = begin(K_COMPAT);
    if (!p)
        return 1;
    p->e.num[0] = nr;
    send(p);
    return 1;
}
#endif

// --- exec --------------------------------------------------------------------------

static __always_inline void read_argv(struct event *e, u64 argv) {
#pragma unroll
    for (int i = 0; i < ARGC; i++) {
        const char *arg = 0;
        bpf_probe_read_user(&arg, sizeof(arg), (const void *)(argv + i * sizeof(arg)));
        if (!arg) {
            e->data[i * ARGLEN] = 0;
            break;
        }
        bpf_probe_read_user_str(&e->data[i * ARGLEN], ARGLEN, arg);
    }
}

// The environment entries that change what a program does or where its history and
// traffic go: LD_*, HISTFILE*, *_proxy / *_PROXY (user space checks the names).
static __always_inline void read_env(struct event *e, u64 envp) {
    int n = 0;
#pragma clang loop unroll(disable)
    for (int i = 0; i < ENVSCAN; i++) {
        const char *var = 0;
        bpf_probe_read_user(&var, sizeof(var), (const void *)(envp + i * sizeof(var)));
        if (!var)
            break;
        char h[4] = {};
        bpf_probe_read_user(h, sizeof(h), var);
        int want = (h[0] == 'L' && h[1] == 'D' && h[2] == '_') ||
                   (h[0] == 'H' && h[1] == 'I' && h[2] == 'S' && h[3] == 'T') ||
                   ((h[0] | 0x20) == 'h' && (h[1] | 0x20) == 't' && (h[2] | 0x20) == 't') ||
                   ((h[0] | 0x20) == 'a' && (h[1] | 0x20) == 'l' && (h[2] | 0x20) == 'l') ||
                   ((h[0] | 0x20) == 'f' && (h[1] | 0x20) == 't' && (h[2] | 0x20) == 'p') ||
                   ((h[0] | 0x20) == 'n' && (h[1] | 0x20) == 'o' && h[2] == '_');
        if (!want)
            continue;
        int slot = n & (ENVC - 1);
        bpf_probe_read_user_str(&e->data[ARGC * ARGLEN + slot * ENVLEN], ENVLEN, var);
        n++;
        if (n >= ENVC)
            break;
    }
    e->num[4] = n;
}

static __always_inline int exec_common(int dfd, u64 filename, u64 argv, u64 envp, int flags,
                                       int at) {
    struct pending *p = begin(K_EXEC);
    if (!p)
        return 0;
    p->e.num[0] = dfd;
    p->e.num[1] = flags;
    p->e.num[2] = at;
    read_path(p, filename);
    read_argv(&p->e, argv);
    read_env(&p->e, envp);
    return hold(p);
}

static __always_inline int enter_execve(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return exec_common(AT_FDCWD_, a0, a1, a2, 0, 0);
}

static __always_inline int enter_execveat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return exec_common((int)a0, a1, a2, a3, (int)a4, 1);
}

#ifdef HAVE_sched_process_exec
// A successful exec does not come back to its old image: its record is sent here, from
// the thread that exec'd (old_pid: a non-leader thread takes the leader's id).
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u32 old = args->old_pid;
    struct pending *p = inflight.lookup(&old);
    if (p && p->e.kind == K_EXEC) {
        p->e.result = 0;
        output(&p->e);
        inflight.delete(&old);
        return 0;
    }
    // An exec whose entry was not seen (it began before the program was attached).
    p = begin(K_EXEC);
    if (!p)
        return 0;
    p->e.num[0] = AT_FDCWD_;
    p->e.num[3] = 1;
    TP_DATA_LOC_READ_STR(p->e.path, filename, PATHLEN);
    return send(p);
}
#endif

// --- files -------------------------------------------------------------------------

static __always_inline int open_common(int dfd, u64 filename, int flags, int mode, int how) {
    struct pending *p = begin(K_OPEN);
    if (!p)
        return 0;
    p->e.num[0] = flags;
    p->e.num[1] = dfd;
    p->e.num[2] = mode;
    p->e.num[3] = how;
    read_path(p, filename);
    if (!(flags & (O_WRITES | O_DIRISH))) {
        if (p->upath)
            p->filter = 1;  // decided at exit, when the path can be read
        else if (!wanted_read(p->e.path))
            return 0;
    }
    return hold(p);
}

static __always_inline int enter_open(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return open_common(AT_FDCWD_, a0, (int)a1, (int)a2, 0);
}

static __always_inline int enter_openat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return open_common((int)a0, a1, (int)a2, (int)a3, 1);
}

static __always_inline int enter_openat2(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    u64 how[2] = {};  // struct open_how: u64 flags, u64 mode, u64 resolve
    bpf_probe_read_user(how, sizeof(how), (const void *)a2);
    return open_common((int)a0, a1, (int)how[0], (int)how[1], 2);
}

static __always_inline int enter_creat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return open_common(AT_FDCWD_, a0, 01 | 0100 | 01000, (int)a1, 3);
}

// Two paths (rename, link): the first in path, the second in data.
static __always_inline int two_paths(u32 kind, int olddfd, u64 oldp, int newdfd, u64 newp,
                                     int flags, int how) {
    struct pending *p = begin(kind);
    if (!p)
        return 0;
    p->e.num[0] = olddfd;
    p->e.num[1] = newdfd;
    p->e.num[2] = flags;
    p->e.num[3] = how;
    read_path(p, oldp);
    read_path2(p, newp);
    return hold(p);
}

static __always_inline int enter_rename(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_RENAME, AT_FDCWD_, a0, AT_FDCWD_, a1, 0, 0);
}

static __always_inline int enter_renameat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_RENAME, (int)a0, a1, (int)a2, a3, 0, 1);
}

static __always_inline int enter_renameat2(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_RENAME, (int)a0, a1, (int)a2, a3, (int)a4, 2);
}

static __always_inline int enter_link(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_LINK, AT_FDCWD_, a0, AT_FDCWD_, a1, 0, 0);
}

static __always_inline int enter_linkat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_LINK, (int)a0, a1, (int)a2, a3, (int)a4, 1);
}

// symlink(target, linkpath): the target is text, never resolved; the link is a path.
static __always_inline int enter_symlink(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_SYMLINK, AT_FDCWD_, a0, AT_FDCWD_, a1, 0, 0);
}

static __always_inline int enter_symlinkat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return two_paths(K_SYMLINK, AT_FDCWD_, a0, (int)a1, a2, 0, 1);
}

static __always_inline int one_path(u32 kind, int dfd, u64 path, s64 n1, s64 n2, s64 n3,
                                    s64 n4) {
    struct pending *p = begin(kind);
    if (!p)
        return 0;
    p->e.num[0] = dfd;
    p->e.num[1] = n1;
    p->e.num[2] = n2;
    p->e.num[3] = n3;
    p->e.num[4] = n4;
    if (path)
        read_path(p, path);
    return hold(p);
}

static __always_inline int enter_unlink(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_UNLINK, AT_FDCWD_, a0, 0, 0, 0, 0);
}

static __always_inline int enter_unlinkat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_UNLINK, (int)a0, a1, (int)a2, 1, 0, 0);
}

static __always_inline int enter_rmdir(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_UNLINK, AT_FDCWD_, a0, 0x200, 2, 0, 0);  // as AT_REMOVEDIR
}

static __always_inline int enter_mknod(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_MKNOD, AT_FDCWD_, a0, (int)a1, (u32)a2, 0, 0);
}

static __always_inline int enter_mknodat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_MKNOD, (int)a0, a1, (int)a2, (u32)a3, 0, 0);
}

// chmod family: num[0] dirfd (or the fd itself when num[2] is 1), num[1] mode.
static __always_inline int enter_chmod(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHMOD, AT_FDCWD_, a0, (u32)a1, 0, 0, 0);
}

static __always_inline int enter_fchmod(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHMOD, (int)a0, 0, (u32)a1, 1, 0, 0);
}

static __always_inline int enter_fchmodat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHMOD, (int)a0, a1, (u32)a2, 0, 0, 0);
}

static __always_inline int enter_fchmodat2(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHMOD, (int)a0, a1, (u32)a2, 0, (int)a3, 0);
}

// chown family: num[1] uid, num[2] gid, num[3] 1 when by fd, num[4] flags.
static __always_inline int enter_chown(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHOWN, AT_FDCWD_, a0, (int)a1, (int)a2, 0, 0);
}

static __always_inline int enter_lchown(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHOWN, AT_FDCWD_, a0, (int)a1, (int)a2, 0, 0x100);
}

static __always_inline int enter_fchown(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHOWN, (int)a0, 0, (int)a1, (int)a2, 1, 0);
}

static __always_inline int enter_fchownat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHOWN, (int)a0, a1, (int)a2, (int)a3, 0, (int)a4);
}

// utimensat: num[1] flags, num[2]/num[3] atime/mtime seconds and num[4] mtime ns when the
// times are given (timestomping sets them; `touch` passes none), num[5] 1 when they are not.
static __always_inline int enter_utimensat(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    struct pending *p = begin(K_UTIMES);
    if (!p)
        return 0;
    p->e.num[0] = (int)a0;
    p->e.num[1] = (int)a3;
    if (a2) {
        s64 ts[4] = {};  // struct __kernel_timespec[2]
        bpf_probe_read_user(ts, sizeof(ts), (const void *)a2);
        p->e.num[2] = ts[0];
        p->e.num[3] = ts[2];
        p->e.num[4] = ts[3];
        p->e.num[5] = (ts[1] == 0x3fffffff && ts[3] == 0x3fffffff) ? 1 : 0;  // UTIME_NOW
    } else {
        p->e.num[5] = 1;
    }
    if (a1)
        read_path(p, a1);
    return hold(p);
}

static __always_inline int enter_memfd_create(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4,
                                              u64 a5) {
    struct pending *p = begin(K_MEMFD);
    if (!p)
        return 0;
    p->e.num[0] = (u32)a1;
    bpf_probe_read_user_str(p->e.path, PATHLEN, (const void *)a0);
    return hold(p);
}

static __always_inline int enter_chdir(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHDIR, AT_FDCWD_, a0, 0, 0, 0, 0);
}

static __always_inline int enter_fchdir(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_CHDIR, (int)a0, 0, 1, 0, 0, 0);
}

// --- file descriptors ---------------------------------------------------------------

static __always_inline int dup_common(int oldfd, int newfd, int flags, int how) {
    // Only what user space keeps a table entry for, and anything onto stdin, stdout
    // or stderr (a socket there is a reverse shell; a pipe there feeds a shell).
    if (!is_tracked(oldfd) && !(newfd >= 0 && newfd <= 2))
        return 0;
    struct pending *p = begin(K_DUP);
    if (!p)
        return 0;
    p->e.num[0] = oldfd;
    p->e.num[1] = newfd;
    p->e.num[2] = flags;
    p->e.num[3] = how;
    return hold(p);
}

static __always_inline int enter_dup(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return dup_common((int)a0, -1, 0, 0);
}

static __always_inline int enter_dup2(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return dup_common((int)a0, (int)a1, 0, 2);
}

static __always_inline int enter_dup3(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return dup_common((int)a0, (int)a1, (int)a2, 3);
}

static __always_inline int enter_fcntl(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    int cmd = (int)a1;
    if (cmd != 0 && cmd != 1030)  // F_DUPFD, F_DUPFD_CLOEXEC
        return 0;
    return dup_common((int)a0, -1, cmd == 1030 ? 02000000 : 0, 4);
}

static __always_inline int enter_close(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    int fd = (int)a0;
    u64 key = fd_key(fd);
    if (!tracked_fds.lookup(&key))
        return 0;  // most closes: one lookup, nothing sent
    tracked_fds.delete(&key);
    struct pending *p = begin(K_CLOSE);
    if (!p)
        return 0;
    p->e.num[0] = fd;
    return send(p);
}

static __always_inline int pipe_common(u64 fds, int flags) {
    struct pending *p = begin(K_PIPE);
    if (!p)
        return 0;
    p->e.num[0] = flags;
    p->uptr = fds;
    return hold(p);
}

static __always_inline int enter_pipe(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return pipe_common(a0, 0);
}

static __always_inline int enter_pipe2(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return pipe_common(a0, (int)a1);
}

// --- network -------------------------------------------------------------------------

// Constant sizes keep the verifier sure of the bounds: sockaddr_in6 is 28 bytes,
// sockaddr_in 16; reading less than the caller gave never faults.
static __always_inline int sockaddr_common(u32 kind, int fd, u64 addr, int len) {
    struct pending *p = begin(kind);
    if (!p)
        return 0;
    p->e.num[0] = fd;
    p->e.num[1] = len;
    if (len >= 28)
        bpf_probe_read_user(p->e.path, 28, (const void *)addr);
    else if (len >= 16)
        bpf_probe_read_user(p->e.path, 16, (const void *)addr);
    else if (len >= 2)
        bpf_probe_read_user(p->e.path, 2, (const void *)addr);
    return hold(p);
}

static __always_inline int enter_connect(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return sockaddr_common(K_CONNECT, (int)a0, a1, (int)a2);
}

static __always_inline int enter_bind(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return sockaddr_common(K_BIND, (int)a0, a1, (int)a2);
}

static __always_inline int numbers(u32 kind, s64 n0, s64 n1, s64 n2, s64 n3) {
    struct pending *p = begin(kind);
    if (!p)
        return 0;
    p->e.num[0] = n0;
    p->e.num[1] = n1;
    p->e.num[2] = n2;
    p->e.num[3] = n3;
    return hold(p);
}

static __always_inline int enter_listen(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_LISTEN, (int)a0, (int)a1, 0, 0);
}

static __always_inline int enter_socket(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SOCKET, (int)a0, (int)a1, (int)a2, 0);
}

// --- privilege ------------------------------------------------------------------------

static __always_inline int enter_ptrace(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_PTRACE, (s64)a0, (int)a1, 0, 0);
}

// The id family: num[0] which call (SC_*), num[1..3] the ids asked for (-1: unchanged).
static __always_inline int enter_setuid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETUID, (int)a0, -1, -1);
}

static __always_inline int enter_setreuid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETREUID, (int)a0, (int)a1, -1);
}

static __always_inline int enter_setresuid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETRESUID, (int)a0, (int)a1, (int)a2);
}

static __always_inline int enter_setgid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETGID, (int)a0, -1, -1);
}

static __always_inline int enter_setregid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETREGID, (int)a0, (int)a1, -1);
}

static __always_inline int enter_setresgid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETRESGID, (int)a0, (int)a1, (int)a2);
}

static __always_inline int enter_setfsuid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETFSUID, (int)a0, -1, -1);
}

static __always_inline int enter_setfsgid(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETID, SC_SETFSGID, (int)a0, -1, -1);
}

// setgroups: num[1] how many, the first GIDS of them in data.
static __always_inline int enter_setgroups(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    struct pending *p = begin(K_SETID);
    if (!p)
        return 0;
    p->e.num[0] = SC_SETGROUPS;
    p->e.num[1] = (int)a0;
    if (a1)
        bpf_probe_read_user(p->e.data, GIDS * sizeof(u32), (const void *)a1);
    return hold(p);
}

// capset: num[0..2] effective, permitted, inheritable (both 32-bit halves).
static __always_inline int enter_capset(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    struct pending *p = begin(K_CAPSET);
    if (!p)
        return 0;
    u32 d[6] = {};  // struct __user_cap_data_struct[2]: effective, permitted, inheritable
    if (a1)
        bpf_probe_read_user(d, sizeof(d), (const void *)a1);
    p->e.num[0] = (s64)(((u64)d[3] << 32) | d[0]);
    p->e.num[1] = (s64)(((u64)d[4] << 32) | d[1]);
    p->e.num[2] = (s64)(((u64)d[5] << 32) | d[2]);
    return hold(p);
}

// --- system --------------------------------------------------------------------------

static __always_inline int enter_mount(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    struct pending *p = begin(K_MOUNT);
    if (!p)
        return 0;
    p->e.num[0] = (s64)a3;
    read_path(p, a1);
    if (a2)
        bpf_probe_read_user_str(&p->e.data[0], ARGLEN, (const void *)a2);
    if (a0)
        bpf_probe_read_user_str(&p->e.data[ARGLEN], ARGLEN, (const void *)a0);
    return hold(p);
}

static __always_inline int enter_umount(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return one_path(K_UMOUNT, AT_FDCWD_, a0, (int)a1, 0, 0, 0);
}

static __always_inline int enter_bpf(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_BPF, (int)a0, 0, 0, 0);
}

static __always_inline int enter_init_module(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4,
                                             u64 a5) {
    return numbers(K_MODULE, 1, -1, (s64)a1, 0);
}

static __always_inline int enter_finit_module(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4,
                                              u64 a5) {
    return numbers(K_MODULE, 2, (int)a0, 0, (int)a2);
}

static __always_inline int enter_unshare(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_UNSHARE, (s64)a0, 0, 0, 0);
}

static __always_inline int enter_setns(u64 a0, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5) {
    return numbers(K_SETNS, (int)a0, (int)a1, 0, 0);
}

// --- lineage and names ----------------------------------------------------------------

#ifdef HAVE_task_newtask
// A new process (not a thread) of a watched one is watched from birth, whatever its uid.
TRACEPOINT_PROBE(task, task_newtask) {
    if (args->clone_flags & CLONE_THREAD_)
        return 0;
    struct pending *p = begin(K_FORK);
    if (!p)
        return 0;
    u32 child = args->pid;
    u32 idx = p->e.workload;
    watched_tgids.update(&child, &idx);
    generation_up();  // a reused pid may be remembered as unwatched
    p->e.num[0] = p->e.pid;
    p->e.num[1] = child;
    return send(p);
}
#endif

#ifdef HAVE_sched_process_exit
// A process ends with its last thread, whichever that is. Taking the group leader's exit
// for the process's was a way out of lineage: a main thread that exits first (SYS_exit)
// or a thread that execs (the kernel ends the leader) left the rest running, unwatched.
TRACEPOINT_PROBE(sched, sched_process_exit) {
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
#if defined(EXIT_GROUP_DEAD)
    if (!args->group_dead)
        return 0;
#elif defined(OFF_SIGNAL_STRUCT_LIVE)
    // signal->live has already been counted down for this thread (do_exit, before here).
    u64 signal = kread(bpf_get_current_task(), OFF_TASK_STRUCT_SIGNAL);
    int live = 1;
    bpf_probe_read_kernel(&live, sizeof(live), (const void *)(signal + OFF_SIGNAL_STRUCT_LIVE));
    if (live != 0)
        return 0;
#else
    if ((u32)id != tgid)
        return 0;  // no way to tell the last thread here: the leader stands for it
#endif
    if (!watched_tgids.lookup(&tgid))
        return 0;
    struct pending *p = begin(K_EXIT);
    watched_tgids.delete(&tgid);  // also when throttled: a pid is reused
    if (!p)
        return 0;
    return send(p);
}
#endif

#ifdef HAVE_task_rename
// A process renaming itself (prctl(PR_SET_NAME), /proc/self/comm): masquerading. The
// rename every exec does is not sent (its exec is).
TRACEPOINT_PROBE(task, task_rename) {
    u32 tid = bpf_get_current_pid_tgid();
    struct pending *held = inflight.lookup(&tid);
    if (held && held->e.kind == K_EXEC)
        return 0;
    struct pending *p = begin(K_COMM);
    if (!p)
        return 0;
    p->e.num[0] = args->pid;
    bpf_probe_read_kernel_str(p->e.path, COMMLEN, args->oldcomm);
    bpf_probe_read_kernel_str(p->e.data, COMMLEN, args->newcomm);
    return send(p);
}
#endif
