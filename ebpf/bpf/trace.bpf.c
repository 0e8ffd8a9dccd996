// BPF programs of edgekv's built-in latency tracing (package ebpf).
//
// Three families, all filtered to one process (target_tgid, see
// is_target):
//   on_marker(_single)      uprobes on the stage markers (package
//                           ebpf/stage): time between consecutive stages of
//                           one batch, paired by batch id.
//   on_sys_enter/exit       tp_btf raw_syscalls sys_enter/sys_exit:
//                           latency of the I/O syscalls in sys_index().
//   on_wakeup(_new)/switch  tp_btf sched_wakeup(_new) + sched_switch:
//                           run-queue latency of the process's threads.
// Every latency goes into a log2 histogram of nanoseconds (struct hist):
// slot i counts values in [2^i, 2^(i+1)), slot 0 also counts 0.
// None of these needs tracefs, kprobes or fentry.

#include "edgekv_types.h"
#include <bpf/bpf_helpers.h>

#define NSLOTS 64
#define NSTAGES 6
#define LAST_STAGE (NSTAGES - 1)
// stage_hists: one histogram per (from, to) stage pair, then the total.
#define STAGE_TOTAL (NSTAGES * NSTAGES)
#define NSYSCALLS 13
#define MAX_BATCHES 65536
#define TASK_RUNNING 0

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// Set by the loader before the programs are loaded.
//
// target_tgid is the traced process's id as the tracer sees it. When the
// tracer runs in the initial PID namespace (pidns_ino == 0) that is the
// kernel's global tgid. Otherwise (a node tracing itself in a container)
// it is local to the tracer's PID namespace (pidns_dev, pidns_ino): the
// programs that run in the context of the traced process translate with
// bpf_get_ns_current_pid_tgid and record the global tgid in global_tgid,
// which the scheduler programs (whose tasks are not current) compare to.
volatile const u32 target_tgid = 0;
volatile const u64 pidns_dev = 0;
volatile const u64 pidns_ino = 0;
// 1: the marker's id argument is at 8(SP) (amd64 assembly, ABI0);
// 0: it is in AX (first integer register of Go's register ABI).
volatile const u8 arg_on_stack = 1;

struct hist {
	u64 slots[NSLOTS];
	u64 sum_ns;
};

struct batch {
	u64 first_ns;
	u64 last_ns;
	u32 last_stage;
	u32 _pad;
};

struct sys_start {
	u64 ts_ns;
	u32 index;
	u32 _pad;
};

// Counters of events that could not be paired.
enum {
	COUNTER_ORPHAN_STAGE = 0,   // a stage marked for an id never received
	COUNTER_OUT_OF_ORDER = 1,   // a stage not after the id's previous one
	COUNTER_BATCH_FULL = 2,     // batches map update failed
	NCOUNTERS = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAGE_TOTAL + 1);
	__type(key, u32);
	__type(value, struct hist);
} stage_hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSTAGES);
	__type(key, u32);
	__type(value, u64);
} stage_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NCOUNTERS);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

// In-flight batches by id. LRU so that batches that never reach the last
// stage (failed proposals) cannot fill it.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_BATCHES);
	__type(key, u64);
	__type(value, struct batch);
} batches SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NSYSCALLS);
	__type(key, u32);
	__type(value, struct hist);
} sys_hists SEC(".maps");

// Syscall in progress, per thread (task-local storage: a pointer away from
// the task, where a hash map costs a locked lookup on every syscall exit).
// ts_ns == 0: none.
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sys_start);
} sys_starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct hist);
} runq_hist SEC(".maps");

// Time each runnable thread of the target was queued (task-local storage;
// 0: not queued).
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, u64);
} runq_starts SEC(".maps");

static __always_inline u32 log2_u64(u64 v)
{
	u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

static __always_inline void record(void *map, u32 key, u64 delta_ns)
{
	struct hist *h = bpf_map_lookup_elem(map, &key);
	if (!h)
		return;
	u32 slot = log2_u64(delta_ns);
	if (slot >= NSLOTS)
		slot = NSLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum_ns, delta_ns);
}

static __always_inline void count(void *map, u32 key)
{
	u64 *c = bpf_map_lookup_elem(map, &key);
	if (c)
		__sync_fetch_and_add(c, 1);
}

// Learned global tgid of the target (namespaced mode only; 0 = not yet).
u32 global_tgid = 0;

// is_target reports whether the current task belongs to the target.
static __always_inline int is_target(u64 pid_tgid)
{
	u32 tgid = pid_tgid >> 32;
	if (pidns_ino == 0)
		return tgid == target_tgid;
	if (global_tgid != 0)
		return tgid == global_tgid;
	struct bpf_pidns_info ns = {};
	if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)))
		return 0; // not in the tracer's PID namespace
	if (ns.tgid != target_tgid)
		return 0;
	global_tgid = tgid;
	return 1;
}

// target_global_tgid returns the target's global tgid, or 0 while it is
// not known yet (0 is never a user process: it is the idle task).
static __always_inline u32 target_global_tgid(void)
{
	if (pidns_ino == 0)
		return target_tgid;
	return global_tgid;
}

static __always_inline int marker_hit(struct pt_regs *ctx)
{
	if (!is_target(bpf_get_current_pid_tgid()))
		return 0;
	u32 stage = (u32)bpf_get_attach_cookie(ctx);
	if (stage >= NSTAGES)
		return 0;
	u64 id = 0;
	if (arg_on_stack) {
		if (bpf_probe_read_user(&id, sizeof(id), (void *)(ctx->sp + 8)))
			return 0;
	} else {
		id = ctx->ax;
	}
	u64 now = bpf_ktime_get_ns();
	count(&stage_hits, stage);

	if (stage == 0) {
		struct batch nb = {.first_ns = now, .last_ns = now, .last_stage = 0};
		if (bpf_map_update_elem(&batches, &id, &nb, BPF_ANY))
			count(&counters, COUNTER_BATCH_FULL);
		return 0;
	}
	struct batch *b = bpf_map_lookup_elem(&batches, &id);
	if (!b) {
		count(&counters, COUNTER_ORPHAN_STAGE);
		return 0;
	}
	u32 from = b->last_stage;
	if (from >= stage || from >= NSTAGES) {
		count(&counters, COUNTER_OUT_OF_ORDER);
		b->last_stage = stage;
		b->last_ns = now;
		return 0;
	}
	record(&stage_hists, from * NSTAGES + stage, now - b->last_ns);
	if (stage == LAST_STAGE) {
		record(&stage_hists, STAGE_TOTAL, now - b->first_ns);
		bpf_map_delete_elem(&batches, &id);
		return 0;
	}
	b->last_stage = stage;
	b->last_ns = now;
	return 0;
}

// The same program twice: on_marker for uprobe_multi links (Linux 6.6+),
// on_marker_single for one classic perf-event uprobe per marker (older
// kernels). The loader keeps only the one it attaches; the stage comes
// from the attach cookie in both.
SEC("uprobe.multi")
int on_marker(struct pt_regs *ctx)
{
	return marker_hit(ctx);
}

SEC("uprobe")
int on_marker_single(struct pt_regs *ctx)
{
	return marker_hit(ctx);
}

// sys_index maps an x86_64 syscall number to its histogram, or -1.
// The order is the contract with syscallNames in the Go package.
static __always_inline int sys_index(long nr)
{
	switch (nr) {
	case 74:  return 0;  // fsync
	case 75:  return 1;  // fdatasync
	case 277: return 2;  // sync_file_range
	case 1:   return 3;  // write
	case 18:  return 4;  // pwrite64
	case 20:  return 5;  // writev
	case 46:  return 6;  // sendmsg
	case 44:  return 7;  // sendto
	case 0:   return 8;  // read
	case 17:  return 9;  // pread64
	case 19:  return 10; // readv
	case 47:  return 11; // recvmsg
	case 45:  return 12; // recvfrom
	}
	return -1;
}

// raw_syscalls:sys_enter(struct pt_regs *regs, long id)
SEC("tp_btf/sys_enter")
int on_sys_enter(u64 *ctx)
{
	if (!is_target(bpf_get_current_pid_tgid()))
		return 0;
	int index = sys_index((long)ctx[1]);
	if (index < 0)
		return 0;
	struct sys_start *s = bpf_task_storage_get(&sys_starts, bpf_get_current_task_btf(), 0,
						   BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return 0;
	s->ts_ns = bpf_ktime_get_ns();
	s->index = index;
	return 0;
}

// raw_syscalls:sys_exit(struct pt_regs *regs, long ret)
SEC("tp_btf/sys_exit")
int on_sys_exit(u64 *ctx)
{
	if (!is_target(bpf_get_current_pid_tgid()))
		return 0;
	struct sys_start *s = bpf_task_storage_get(&sys_starts, bpf_get_current_task_btf(), 0, 0);
	if (!s || s->ts_ns == 0)
		return 0; // not a traced syscall, or entered before attaching
	u64 now = bpf_ktime_get_ns();
	record(&sys_hists, s->index, now - s->ts_ns);
	s->ts_ns = 0;
	return 0;
}

static __always_inline void enqueued(struct task_struct *p)
{
	u32 target = target_global_tgid();
	if (target == 0 || (u32)p->tgid != target)
		return;
	u64 *ts = bpf_task_storage_get(&runq_starts, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (ts)
		*ts = bpf_ktime_get_ns();
}

// sched_wakeup(struct task_struct *p)
SEC("tp_btf/sched_wakeup")
int on_wakeup(u64 *ctx)
{
	enqueued((struct task_struct *)ctx[0]);
	return 0;
}

// sched_wakeup_new(struct task_struct *p)
SEC("tp_btf/sched_wakeup_new")
int on_wakeup_new(u64 *ctx)
{
	enqueued((struct task_struct *)ctx[0]);
	return 0;
}

// sched_switch(bool preempt, struct task_struct *prev,
//              struct task_struct *next, unsigned int prev_state)
SEC("tp_btf/sched_switch")
int on_switch(u64 *ctx)
{
	struct task_struct *prev = (struct task_struct *)ctx[1];
	struct task_struct *next = (struct task_struct *)ctx[2];
	u32 prev_state = (u32)ctx[3];

	// A preempted thread is still runnable: it goes straight back to
	// the run queue.
	if (prev_state == TASK_RUNNING)
		enqueued(prev);

	u32 target = target_global_tgid();
	if (target == 0 || (u32)next->tgid != target)
		return 0;
	u64 *ts = bpf_task_storage_get(&runq_starts, next, 0, 0);
	if (!ts || *ts == 0)
		return 0;
	u64 now = bpf_ktime_get_ns();
	record(&runq_hist, 0, now - *ts);
	*ts = 0;
	return 0;
}
