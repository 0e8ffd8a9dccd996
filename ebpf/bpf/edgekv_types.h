/* Minimal kernel types for edgekv's BPF programs, written by hand instead
 * of a generated multi-megabyte vmlinux.h. Only two kinds of definitions:
 *
 * - user-space ABI that never changes (integer types, map type numbers,
 *   the amd64 struct pt_regs a uprobe program's context points to);
 * - kernel-internal structs with only the fields we read, marked
 *   preserve_access_index so that clang emits CO-RE relocations and the
 *   loader (cilium/ebpf) fixes the offsets from the running kernel's BTF.
 */
#ifndef EDGEKV_TYPES_H
#define EDGEKV_TYPES_H

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

typedef __u8 u8;
typedef __u32 u32;
typedef __s32 s32;
typedef __u64 u64;
typedef __s64 s64;

/* include/uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_TASK_STORAGE = 29,
};
#define BPF_ANY 0
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_LOCAL_STORAGE_GET_F_CREATE (1ULL << 0)

/* include/uapi/linux/bpf.h: filled by bpf_get_ns_current_pid_tgid. */
struct bpf_pidns_info {
	__u32 pid;
	__u32 tgid;
};

/* arch/x86/include/uapi/asm/ptrace.h (64-bit): the register file a uprobe
 * program receives. A user-space ABI, so no CO-RE needed. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
	unsigned long ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

/* include/linux/sched.h: only what the run-queue programs read. */
struct task_struct {
	int pid;  /* thread id */
	int tgid; /* process id */
} __attribute__((preserve_access_index));

#endif /* EDGEKV_TYPES_H */
