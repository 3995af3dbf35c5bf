// SPDX-License-Identifier: GPL-2.0
/* poc trace: what the kernel does for one container, filtered in the kernel by its cgroup (the
 * cgroup2 id; on hybrid hosts the container's leaf in the unified hierarchy) and, for limit
 * writes, by the directories of its cgroup files. Tracepoints only (tp_btf): this kernel has no
 * kprobes and refuses fentry. User space loads only the programs of the chosen mode. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "trace.h"

char LICENSE[] SEC("license") = "GPL";

#define NR_WRITE 1 /* x86_64 */
#define TASK_RUNNING 0
#define CGROUP_SUPER_MAGIC 0x27e0eb
#define CGROUP2_SUPER_MAGIC 0x63677270

const volatile __u64 target_cgid = 0;

/* Inode numbers of the container's cgroup directories (one per hierarchy). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, __u8);
} target_dirs SEC(".maps");

struct write_state {
	__u64 ts_start;
	__u64 dir_ino;
	__u64 reclaim_start;
	__u64 reclaim_ns;
	__u64 reclaimed_pages;
	__u32 reclaim_passes;
	__u32 pad;
	char file[NAME_LEN];
	char value[NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct write_state);
} writes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* When a CPU quota write returned (0: not armed). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} armed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mem_counters);
} mem SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} reclaim_start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sched_counters);
} sched SEC(".maps");

struct wait_state {
	__u64 since;
	__u64 throttled;
};

/* LRU: a task that exits while runnable never gets its entry deleted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct wait_state);
} waiting SEC(".maps");

static __always_inline __u64 task_cgid(struct task_struct *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

/* Only the field we read: `throttled` is an int in 6.1 and a one-bit field in 6.18; the
 * bitfield relocations give its place and width in the running kernel either way. (The kernel's
 * own, 64-byte aligned, struct cfs_rq makes clang 14 fail on field-info relocations.) */
struct cfs_rq___poc {
	int throttled;
} __attribute__((preserve_access_index));

static __always_inline bool group_throttled(struct task_struct *t)
{
	struct cfs_rq___poc *rq = (void *)BPF_CORE_READ(t, se.cfs_rq);
	if (!rq)
		return false;
	return BPF_CORE_READ_BITFIELD_PROBED(rq, throttled) != 0;
}

/* ---- --limits: writes to the container's cgroup files, by anyone ---- */

SEC("tp_btf/sys_enter")
int BPF_PROG(limits_enter, struct pt_regs *regs, long id)
{
	if (id != NR_WRITE)
		return 0;
	int fd = (int)BPF_CORE_READ(regs, di);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
	if (fd < 0 || (unsigned int)fd >= max)
		return 0;
	struct file *file = NULL;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	if (!file)
		return 0;
	unsigned long magic = BPF_CORE_READ(file, f_inode, i_sb, s_magic);
	if (magic != CGROUP_SUPER_MAGIC && magic != CGROUP2_SUPER_MAGIC)
		return 0;
	struct dentry *dentry = BPF_CORE_READ(file, f_path.dentry);
	__u64 dir = BPF_CORE_READ(dentry, d_parent, d_inode, i_ino);
	if (!bpf_map_lookup_elem(&target_dirs, &dir))
		return 0;
	struct write_state st = {};
	st.dir_ino = dir;
	bpf_probe_read_kernel_str(st.file, sizeof(st.file), BPF_CORE_READ(dentry, d_name.name));
	/* The written bytes (not a C string: read exactly what was written, up to the buffer). */
	__u64 count = BPF_CORE_READ(regs, dx);
	if (count > NAME_LEN - 1)
		count = NAME_LEN - 1;
	if (count > 0)
		bpf_probe_read_user(st.value, count & (NAME_LEN - 1), (void *)BPF_CORE_READ(regs, si));
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	st.ts_start = bpf_ktime_get_ns();
	bpf_map_update_elem(&writes, &tid, &st, BPF_ANY);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(limits_exit, struct pt_regs *regs, long ret)
{
	if (BPF_CORE_READ(regs, orig_ax) != NR_WRITE)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	struct write_state *st = bpf_map_lookup_elem(&writes, &tid);
	if (!st)
		return 0;
	struct limit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->kind = EVENT_LIMIT_WRITE;
		e->pid = pid_tgid >> 32;
		e->tid = tid;
		e->ts_start = st->ts_start;
		e->ts_end = now;
		e->ret = ret;
		e->dir_ino = st->dir_ino;
		e->reclaim_passes = st->reclaim_passes;
		e->reclaim_ns = st->reclaim_ns;
		e->reclaimed_pages = st->reclaimed_pages;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		__builtin_memcpy(e->file, st->file, NAME_LEN);
		__builtin_memcpy(e->value, st->value, NAME_LEN);
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	}
	/* cpu.max (v2) or cpu.cfs_quota_us (v1): watch for the first throttled switch-out. */
	if (ret > 0 && st->file[0] == 'c' && st->file[1] == 'p' && st->file[2] == 'u' &&
	    st->file[3] == '.' && (st->file[4] == 'm' || (st->file[4] == 'c' && st->file[8] == 'q'))) {
		__u32 zero = 0;
		bpf_map_update_elem(&armed, &zero, &now, BPF_ANY);
	}
	bpf_map_delete_elem(&writes, &tid);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(limits_reclaim_begin, int order, gfp_t gfp)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct write_state *st = bpf_map_lookup_elem(&writes, &tid);
	if (st)
		st->reclaim_start = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(limits_reclaim_end, unsigned long nr_reclaimed)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct write_state *st = bpf_map_lookup_elem(&writes, &tid);
	if (st && st->reclaim_start) {
		st->reclaim_passes++;
		st->reclaim_ns += bpf_ktime_get_ns() - st->reclaim_start;
		st->reclaimed_pages += nr_reclaimed;
		st->reclaim_start = 0;
	}
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(limits_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 zero = 0;
	__u64 *since = bpf_map_lookup_elem(&armed, &zero);
	if (!since || !*since || prev_state != TASK_RUNNING)
		return 0;
	if (task_cgid(prev) != target_cgid || !group_throttled(prev))
		return 0;
	struct throttle_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (e) {
		e->kind = EVENT_THROTTLE;
		e->pid = BPF_CORE_READ(prev, pid);
		e->cpu = bpf_get_smp_processor_id();
		e->ts = bpf_ktime_get_ns();
		e->armed_ts = *since;
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	}
	*since = 0;
	return 0;
}

/* ---- --mem: faults, LRU isolation and memcg reclaim by the container's tasks ---- */

static __always_inline struct mem_counters *mem_of_current(void)
{
	if (bpf_get_current_cgroup_id() != target_cgid)
		return NULL;
	__u32 zero = 0;
	return bpf_map_lookup_elem(&mem, &zero);
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(mem_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error)
{
	struct mem_counters *c = mem_of_current();
	if (c)
		c->faults_user++;
	return 0;
}

/* Faults in the kernel on user addresses: read(2) into a fresh buffer, for one. */
SEC("tp_btf/page_fault_kernel")
int BPF_PROG(mem_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error)
{
	struct mem_counters *c = mem_of_current();
	if (c)
		c->faults_kernel++;
	return 0;
}

SEC("tp_btf/mm_vmscan_lru_isolate")
int BPF_PROG(mem_lru_isolate, int highest_zoneidx, int order, unsigned long nr_requested,
	     unsigned long nr_scanned, unsigned long nr_skipped, unsigned long nr_taken, int lru)
{
	struct mem_counters *c = mem_of_current();
	if (c)
		c->lru_isolated += nr_taken;
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(mem_reclaim_begin, int order, gfp_t gfp)
{
	if (bpf_get_current_cgroup_id() != target_cgid)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&reclaim_start, &tid, &now, BPF_ANY);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(mem_reclaim_end, unsigned long nr_reclaimed)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *start = bpf_map_lookup_elem(&reclaim_start, &tid);
	if (!start)
		return 0;
	__u64 took = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&reclaim_start, &tid);
	struct mem_counters *c = mem_of_current();
	if (c) {
		c->reclaim_passes++;
		c->reclaim_ns += took;
		c->reclaimed_pages += nr_reclaimed;
	}
	return 0;
}

/* ---- --sched: run-queue waits of the container's tasks, and why they waited ---- */

static __always_inline void runnable(struct task_struct *t, __u64 throttled)
{
	__u32 pid = BPF_CORE_READ(t, pid);
	struct wait_state w = { .since = bpf_ktime_get_ns(), .throttled = throttled };
	bpf_map_update_elem(&waiting, &pid, &w, BPF_ANY);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	if (task_cgid(p) == target_cgid)
		runnable(p, 0);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	if (task_cgid(p) == target_cgid)
		runnable(p, 0);
	return 0;
}

static __always_inline __u32 log2_bucket(__u64 v)
{
	__u32 b = 0;
#pragma unroll
	for (int i = 0; i < HIST_BUCKETS - 1; i++) {
		if (v >= 2) {
			v >>= 1;
			b++;
		}
	}
	return b;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u32 zero = 0;
	struct sched_counters *c = bpf_map_lookup_elem(&sched, &zero);
	if (!c)
		return 0;
	if (prev_state == TASK_RUNNING && task_cgid(prev) == target_cgid) {
		__u64 throttled = group_throttled(prev);
		if (throttled)
			c->throttled_switches++;
		else
			c->preempted_switches++;
		runnable(prev, throttled);
	}
	if (task_cgid(next) != target_cgid)
		return 0;
	__u32 pid = BPF_CORE_READ(next, pid);
	struct wait_state *w = bpf_map_lookup_elem(&waiting, &pid);
	if (!w)
		return 0;
	__u64 waited = bpf_ktime_get_ns() - w->since;
	c->waits++;
	c->wait_ns += waited;
	if (waited > c->wait_max_ns)
		c->wait_max_ns = waited;
	if (w->throttled)
		c->throttled_wait_ns += waited;
	__u32 b = log2_bucket(waited);
	if (b < HIST_BUCKETS)
		c->hist[b]++;
	bpf_map_delete_elem(&waiting, &pid);
	return 0;
}

/* ---- --net: the container's packets between its eth0 and the host, per skb ---- */

/* The container's two ends of its veth pair and its bridge, by (network namespace inode,
 * ifindex): ifindexes repeat across namespaces. */
const volatile __u32 net_host_ns = 0;
const volatile __u32 net_cont_ns = 0;
const volatile __u32 net_if_cont = 0;
const volatile __u32 net_if_host = 0;
const volatile __u32 net_if_bridge = 0;
/* The address of the kernel's br_handle_frame (from /proc/kallsyms), or 0. */
const volatile __u64 net_br_handle_frame = 0;

/* An entry older than this belongs to a freed skb whose address was reused: not a latency. */
#define NET_MAX_AGE_NS 1000000000ULL

enum dev_role { DEV_OTHER, DEV_CONT, DEV_HOST, DEV_BRIDGE };

struct in_flight {
	__u64 since;
	__u32 seg;
	__u32 pad;
};

/* Keyed by skb address. LRU: packets that leave the path where it is not watched (flooded
 * clones, packets of other containers entering the bridge) are never deleted. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct in_flight);
} net_flight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NET_SEGMENTS);
	__type(key, __u32);
	__type(value, struct net_hist);
} net_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct net_counters);
} net_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct net_drop_key);
	__type(value, __u64);
} net_drops SEC(".maps");

static __always_inline enum dev_role dev_role(const struct net_device *dev)
{
	if (!dev)
		return DEV_OTHER;
	__u32 ifindex = BPF_CORE_READ(dev, ifindex);
	if (ifindex != net_if_cont && ifindex != net_if_host && ifindex != net_if_bridge)
		return DEV_OTHER;
	__u32 ns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	if (ns == net_cont_ns && ifindex == net_if_cont)
		return DEV_CONT;
	if (ns != net_host_ns)
		return DEV_OTHER;
	if (ifindex == net_if_host)
		return DEV_HOST;
	return ifindex == net_if_bridge ? DEV_BRIDGE : DEV_OTHER;
}

static __always_inline bool bridge_port(const struct net_device *dev)
{
	/* A bridge's port is the device whose rx_handler is the bridge's: no enum relocation
	 * (netdev_priv_flags is an ENUM64 in 6.1's BTF, which aya 0.14 cannot relocate) and no type
	 * of the bridge module (not in vmlinux's BTF where it is a module). 0: not known. */
	if (!net_br_handle_frame)
		return false;
	return (__u64)BPF_CORE_READ(dev, rx_handler) == net_br_handle_frame;
}

static __always_inline __u32 net_bucket(__u64 v)
{
	if (v < (1 << NET_SUB_BITS))
		return v;
	__u32 msb = 0;
	__u64 x = v;
	if (x >> 32) {
		x >>= 32;
		msb += 32;
	}
	if (x >> 16) {
		x >>= 16;
		msb += 16;
	}
	if (x >> 8) {
		x >>= 8;
		msb += 8;
	}
	if (x >> 4) {
		x >>= 4;
		msb += 4;
	}
	if (x >> 2) {
		x >>= 2;
		msb += 2;
	}
	if (x >> 1)
		msb += 1;
	__u32 sub = (v >> (msb - NET_SUB_BITS)) & ((1 << NET_SUB_BITS) - 1);
	__u32 b = ((msb - NET_SUB_BITS + 1) << NET_SUB_BITS) + sub;
	return b < NET_BUCKETS ? b : NET_BUCKETS - 1;
}

static __always_inline void net_enter(const struct sk_buff *skb, __u32 seg, __u64 now)
{
	__u64 key = (__u64)skb;
	struct in_flight f = { .since = now, .seg = seg };
	bpf_map_update_elem(&net_flight, &key, &f, BPF_ANY);
}

enum leave { NOT_IN_FLIGHT, ELSEWHERE, LEFT };

/* Counts `took` in segment `seg`'s histogram. */
static __always_inline void net_record(__u32 seg, __u64 took)
{
	struct net_hist *h = bpf_map_lookup_elem(&net_hist, &seg);
	if (!h)
		return;
	h->count++;
	h->sum_ns += took;
	__u32 b = net_bucket(took);
	/* Hidden from clang, which would otherwise drop the mask as redundant: 6.1's verifier does
	 * not carry net_bucket's bound through the zero-extension. */
	asm volatile("" : "+r"(b));
	h->buckets[b & (NET_BUCKETS - 1)]++;
}

/* Ends segment `seg` of the skb, recording how long it took, if that is where the skb was. */
static __always_inline enum leave net_leave(const struct sk_buff *skb, __u32 seg, __u64 now)
{
	__u64 key = (__u64)skb;
	struct in_flight *f = bpf_map_lookup_elem(&net_flight, &key);
	if (!f)
		return NOT_IN_FLIGHT;
	__u64 took = now - f->since;
	if (f->seg != seg || took > NET_MAX_AGE_NS)
		return ELSEWHERE;
	net_record(seg, took);
	return LEFT;
}

/* Ends segment `seg` (if that is where the skb was) and starts `next`, in the same entry: one
 * lookup per hop in the middle of the path, an update only for an skb not seen before. */
static __always_inline void net_pass(const struct sk_buff *skb, __u32 seg, __u32 next, __u64 now)
{
	__u64 key = (__u64)skb;
	struct in_flight *f = bpf_map_lookup_elem(&net_flight, &key);
	if (!f) {
		net_enter(skb, next, now);
		return;
	}
	__u64 took = now - f->since;
	if (f->seg == seg && took <= NET_MAX_AGE_NS)
		net_record(seg, took);
	f->since = now;
	f->seg = next;
}

static __always_inline void net_forget(const struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	bpf_map_delete_elem(&net_flight, &key);
}

static __always_inline void net_entered_veth(const struct sk_buff *skb, int dir)
{
	__u32 zero = 0;
	struct net_counters *c = bpf_map_lookup_elem(&net_count, &zero);
	if (!c)
		return;
	c->packets[dir & 1]++;
	c->bytes[dir & 1] += BPF_CORE_READ(skb, len);
}

/* The clock is read only for the devices of the path: not for every packet of the host. */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(net_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	switch (dev_role(dev)) {
	case DEV_CONT:
		net_entered_veth(skb, 0);
		net_enter(skb, SEG_OUT_VETH, bpf_ktime_get_ns());
		break;
	case DEV_BRIDGE:
		net_enter(skb, SEG_IN_BRIDGE, bpf_ktime_get_ns());
		break;
	case DEV_HOST:
		net_entered_veth(skb, 1);
		net_pass(skb, SEG_IN_BRIDGE, SEG_IN_VETH, bpf_ktime_get_ns());
		break;
	default:
		/* Forwarded by the bridge to another port: another container. */
		if (bridge_port(dev) &&
		    net_leave(skb, SEG_OUT_BRIDGE, bpf_ktime_get_ns()) != NOT_IN_FLIGHT)
			net_forget(skb);
	}
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(net_receive, struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	switch (dev_role(dev)) {
	case DEV_HOST:
		net_pass(skb, SEG_OUT_VETH, SEG_OUT_BRIDGE, bpf_ktime_get_ns());
		break;
	case DEV_BRIDGE:
		if (net_leave(skb, SEG_OUT_BRIDGE, bpf_ktime_get_ns()) != NOT_IN_FLIGHT)
			net_forget(skb);
		break;
	case DEV_CONT:
		if (net_leave(skb, SEG_IN_VETH, bpf_ktime_get_ns()) != NOT_IN_FLIGHT)
			net_forget(skb);
		break;
	default:
		/* From another container into the bridge: perhaps on its way to this one. */
		if (dev && bridge_port(dev))
			net_enter(skb, SEG_IN_BRIDGE, bpf_ktime_get_ns());
	}
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(net_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u64 key = (__u64)skb;
	struct net_drop_key k = { .reason = reason };
	struct in_flight *f = bpf_map_lookup_elem(&net_flight, &key);
	if (f) {
		/* On its way in through the bridge a packet may be another container's: not counted. */
		bool ours = f->seg != SEG_IN_BRIDGE &&
			    bpf_ktime_get_ns() - f->since <= NET_MAX_AGE_NS;
		k.place = 1 + f->seg;
		bpf_map_delete_elem(&net_flight, &key);
		if (!ours)
			return 0;
	} else {
		enum dev_role role = dev_role(BPF_CORE_READ(skb, dev));
		if (role != DEV_CONT && role != DEV_HOST)
			return 0;
	}
	__u64 one = 1;
	__u64 *n = bpf_map_lookup_elem(&net_drops, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&net_drops, &k, &one, BPF_NOEXIST);
	return 0;
}
