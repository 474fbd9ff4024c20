// clawvisor's syscall monitor: tracepoints only (their argument layout comes from the
// running kernel's format files, so mismatched headers cannot shift a field), filtered
// in the kernel to the workload uids in `watched`, throttled per uid, and sent to user
// space through one ring buffer. A failed ringbuf_reserve is counted in `lost`: the ring
// buffer itself has no lost-event callback.
//
// The loader defines HAVE_<tracepoint> for each tracepoint this kernel has, so a missing
// one is reported as such instead of failing the whole program.

#include <uapi/linux/ptrace.h>
#include <linux/capability.h>

#define ARGC 8
#define ARGLEN 64
#define PATHLEN 256

enum kind {
    K_EXEC = 1, K_EXECVEAT = 2, K_EXEC_DONE = 3, K_CONNECT = 4, K_OPEN = 5, K_PTRACE = 6,
    K_SETUID = 7, K_CAPSET = 8, K_MOUNT = 9, K_UMOUNT = 10, K_BPF = 11, K_MODULE = 12,
    K_UNSHARE = 13, K_SETNS = 14, K_FORK = 15, K_EXIT = 16, K_THROTTLED = 17,
};

struct event {
    u32 kind;
    u32 pid;       // thread group id (what user space calls the pid)
    u32 tid;
    u32 uid;
    u64 ts;        // ktime ns
    s64 num[4];    // per-kind numbers: flags, ids, request, family...
    char comm[16];
    char path[PATHLEN];           // filename, sockaddr bytes, mount point...
    char argv[ARGC][ARGLEN];      // exec arguments (first ARGC)
};

struct bucket {
    u64 tokens;     // in thousandths of an event
    u64 last_ns;
    u64 dropped;
    u64 reported_ns;
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(watched, u32, u32, 4096);          // uid -> workload index
BPF_HASH(buckets, u32, struct bucket, 4096);
BPF_PERCPU_ARRAY(lost, u64, 1);
BPF_ARRAY(config, u64, 4);                  // [0] events/s per uid, [1] burst, [2] open prefix len
struct prefix { char s[PATHLEN]; };
BPF_ARRAY(open_prefix, struct prefix, 1);   // home_root: read-only opens under it are reported

static __always_inline int watched_uid(u32 *uid_out) {
    u32 uid = bpf_get_current_uid_gid();
    if (!watched.lookup(&uid))
        return 0;
    *uid_out = uid;
    return 1;
}

// Token bucket per uid. Returns 1 to emit, 0 to drop (and counts the drop). A flood is
// a known way to blind a monitor, so throttling is itself reported (at most once a
// second per uid) as K_THROTTLED, which user space turns into an alert.
static __always_inline int admit(u32 uid, u64 now) {
    int zero = 0, one = 1;
    u64 *rate = config.lookup(&zero);
    u64 *burst = config.lookup(&one);
    if (!rate || !burst || *rate == 0)
        return 1;
    struct bucket init = {};
    init.tokens = *burst * 1000;
    init.last_ns = now;
    struct bucket *b = buckets.lookup_or_try_init(&uid, &init);
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
        return 2;  // emit a K_THROTTLED event instead of this one
    }
    return 0;
}

static __always_inline struct event *start(u32 kind, u32 uid) {
    u64 now = bpf_ktime_get_ns();
    int verdict = admit(uid, now);
    if (verdict == 0)
        return 0;
    struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        int zero = 0;
        u64 *n = lost.lookup(&zero);
        if (n)
            (*n)++;
        return 0;
    }
    u64 id = bpf_get_current_pid_tgid();
    e->kind = verdict == 2 ? K_THROTTLED : kind;
    e->pid = id >> 32;
    e->tid = (u32)id;
    e->uid = uid;
    e->ts = now;
    e->num[0] = e->num[1] = e->num[2] = e->num[3] = 0;
    e->path[0] = 0;
    e->argv[0][0] = 0;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    if (verdict == 2) {
        struct bucket *b = buckets.lookup(&uid);
        if (b)
            e->num[0] = b->dropped;
    }
    return e;
}

// BCC rewrites map calls, but not inside macros: the probe macro below calls this.
static __always_inline void submit(struct event *e) {
    events.ringbuf_submit(e, 0);
}

static __always_inline void read_argv(struct event *e, const char *const *argv) {
#pragma unroll
    for (int i = 0; i < ARGC; i++) {
        const char *arg = 0;
        bpf_probe_read_user(&arg, sizeof(arg), &argv[i]);
        if (!arg) {
            e->argv[i][0] = 0;
            break;
        }
        bpf_probe_read_user_str(e->argv[i], ARGLEN, arg);
    }
}

#ifdef HAVE_sys_enter_execve
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_EXEC, uid);
    if (!e) return 0;
    if (e->kind == K_EXEC) {
        bpf_probe_read_user_str(e->path, PATHLEN, args->filename);
        read_argv(e, (const char *const *)args->argv);
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_execveat
TRACEPOINT_PROBE(syscalls, sys_enter_execveat) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_EXECVEAT, uid);
    if (!e) return 0;
    if (e->kind == K_EXECVEAT) {
        e->num[0] = args->fd;
        e->num[1] = args->flags;
        bpf_probe_read_user_str(e->path, PATHLEN, args->filename);
        read_argv(e, (const char *const *)args->argv);
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sched_process_exec
TRACEPOINT_PROBE(sched, sched_process_exec) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_EXEC_DONE, uid);
    if (!e) return 0;
    if (e->kind == K_EXEC_DONE) {
        e->num[0] = args->old_pid;
        TP_DATA_LOC_READ_STR(e->path, filename, PATHLEN);
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_connect
TRACEPOINT_PROBE(syscalls, sys_enter_connect) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_CONNECT, uid);
    if (!e) return 0;
    if (e->kind == K_CONNECT) {
        e->num[0] = args->fd;
        e->num[1] = args->addrlen;
        // Constant sizes keep the verifier sure of the bounds: sockaddr_in6 is 28
        // bytes, sockaddr_in 16; reading less than the caller gave never faults.
        long len = args->addrlen;
        const void *addr = (const void *)args->uservaddr;
        if (len >= 28)
            bpf_probe_read_user(e->path, 28, addr);
        else if (len >= 16)
            bpf_probe_read_user(e->path, 16, addr);
        else if (len >= 2)
            bpf_probe_read_user(e->path, 2, addr);
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_openat
TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    int flags = args->flags;
    // O_WRONLY | O_RDWR | O_CREAT | O_TRUNC: a write. Other opens only under the
    // configured prefix (home_root: another workload's home is under it).
    int writes = flags & (01 | 02 | 0100 | 01000);
    char head[PATHLEN] = {};
    if (!writes) {
        int zero = 0, two = 2;
        u64 *plen = config.lookup(&two);
        struct prefix *p = open_prefix.lookup(&zero);
        if (!plen || !p || *plen == 0)
            return 0;
        char *prefix = p->s;
        bpf_probe_read_user_str(head, PATHLEN, args->filename);
        u64 n = *plen;
#pragma unroll
        for (int i = 0; i < 64; i++) {
            if (i >= n) break;
            if (head[i] != prefix[i]) return 0;
        }
    }
    struct event *e = start(K_OPEN, uid);
    if (!e) return 0;
    if (e->kind == K_OPEN) {
        e->num[0] = flags;
        e->num[1] = args->dfd;
        bpf_probe_read_user_str(e->path, PATHLEN, args->filename);
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_ptrace
TRACEPOINT_PROBE(syscalls, sys_enter_ptrace) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_PTRACE, uid);
    if (!e) return 0;
    if (e->kind == K_PTRACE) {
        e->num[0] = args->request;
        e->num[1] = args->pid;
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#define SETID_PROBE(name, nr, a, b, c)                                        \
    TRACEPOINT_PROBE(syscalls, sys_enter_##name) {                            \
        u32 uid;                                                              \
        if (!watched_uid(&uid)) return 0;                                     \
        struct event *e = start(K_SETUID, uid);                               \
        if (!e) return 0;                                                     \
        if (e->kind == K_SETUID) {                                            \
            e->num[0] = nr; e->num[1] = a; e->num[2] = b; e->num[3] = c;      \
        }                                                                     \
        submit(e);                                                            \
        return 0;                                                             \
    }

#ifdef HAVE_sys_enter_setuid
SETID_PROBE(setuid, 1, args->uid, -1, -1)
#endif
#ifdef HAVE_sys_enter_setreuid
SETID_PROBE(setreuid, 2, args->ruid, args->euid, -1)
#endif
#ifdef HAVE_sys_enter_setresuid
SETID_PROBE(setresuid, 3, args->ruid, args->euid, args->suid)
#endif
#ifdef HAVE_sys_enter_setgid
SETID_PROBE(setgid, 4, args->gid, -1, -1)
#endif
#ifdef HAVE_sys_enter_setresgid
SETID_PROBE(setresgid, 5, args->rgid, args->egid, args->sgid)
#endif

#ifdef HAVE_sys_enter_capset
TRACEPOINT_PROBE(syscalls, sys_enter_capset) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_CAPSET, uid);
    if (e) events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_mount
TRACEPOINT_PROBE(syscalls, sys_enter_mount) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_MOUNT, uid);
    if (!e) return 0;
    if (e->kind == K_MOUNT) {
        e->num[0] = args->flags;
        bpf_probe_read_user_str(e->path, PATHLEN, args->dir_name);
        bpf_probe_read_user_str(e->argv[0], ARGLEN, args->type);
        bpf_probe_read_user_str(e->argv[1], ARGLEN, args->dev_name);
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_umount
TRACEPOINT_PROBE(syscalls, sys_enter_umount) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_UMOUNT, uid);
    if (!e) return 0;
    if (e->kind == K_UMOUNT)
        bpf_probe_read_user_str(e->path, PATHLEN, args->name);
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_bpf
TRACEPOINT_PROBE(syscalls, sys_enter_bpf) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_BPF, uid);
    if (!e) return 0;
    if (e->kind == K_BPF)
        e->num[0] = args->cmd;
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_init_module
TRACEPOINT_PROBE(syscalls, sys_enter_init_module) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_MODULE, uid);
    if (!e) return 0;
    if (e->kind == K_MODULE)
        e->num[0] = 1;
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_finit_module
TRACEPOINT_PROBE(syscalls, sys_enter_finit_module) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_MODULE, uid);
    if (!e) return 0;
    if (e->kind == K_MODULE) {
        e->num[0] = 2;
        e->num[1] = args->fd;
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_unshare
TRACEPOINT_PROBE(syscalls, sys_enter_unshare) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_UNSHARE, uid);
    if (!e) return 0;
    if (e->kind == K_UNSHARE)
        e->num[0] = args->unshare_flags;
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sys_enter_setns
TRACEPOINT_PROBE(syscalls, sys_enter_setns) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_SETNS, uid);
    if (!e) return 0;
    if (e->kind == K_SETNS) {
        e->num[0] = args->fd;
        e->num[1] = args->flags;
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

// Lineage: fork and exit are never throttled away silently (they keep the process
// table true), but they do count against the bucket like everything else.
#ifdef HAVE_sched_process_fork
TRACEPOINT_PROBE(sched, sched_process_fork) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    struct event *e = start(K_FORK, uid);
    if (!e) return 0;
    if (e->kind == K_FORK) {
        e->num[0] = args->parent_pid;
        e->num[1] = args->child_pid;
    }
    events.ringbuf_submit(e, 0);
    return 0;
}
#endif

#ifdef HAVE_sched_process_exit
TRACEPOINT_PROBE(sched, sched_process_exit) {
    u32 uid;
    if (!watched_uid(&uid)) return 0;
    u64 id = bpf_get_current_pid_tgid();
    if ((u32)id != (id >> 32))
        return 0;  // a thread, not the process
    struct event *e = start(K_EXIT, uid);
    if (e) events.ringbuf_submit(e, 0);
    return 0;
}
#endif
