/* Events and counters shared by trace.bpf.c and src/trace/abi.rs (keep the two in step). */
#ifndef POC_TRACE_H
#define POC_TRACE_H

#define NAME_LEN 32
#define HIST_BUCKETS 32

enum event_kind {
	EVENT_LIMIT_WRITE = 1,
	EVENT_THROTTLE = 2,
};

/* A write(2) to a cgroup file of the container, from its entry to its return. */
struct limit_event {
	__u32 kind;
	__u32 pid;
	__u32 tid;
	__u32 reclaim_passes;
	__u64 ts_start;
	__u64 ts_end;
	__s64 ret;
	__u64 dir_ino;
	__u64 reclaim_ns;
	__u64 reclaimed_pages;
	char comm[16];
	char file[NAME_LEN];
	char value[NAME_LEN];
};

/* The first time a task of the container was switched out with its group throttled, after a
 * write of a CPU quota. */
struct throttle_event {
	__u32 kind;
	__u32 pid;
	__u32 cpu;
	__u32 pad;
	__u64 ts;
	__u64 armed_ts;
};

/* --mem, summed over CPUs by user space. */
struct mem_counters {
	__u64 faults_user;
	__u64 faults_kernel;
	__u64 lru_isolated;
	__u64 reclaim_passes;
	__u64 reclaim_ns;
	__u64 reclaimed_pages;
};

/* --sched, summed over CPUs by user space. Run-queue waits: from the moment a task of the
 * container became runnable (woken, or switched out still runnable) to the moment it ran. */
struct sched_counters {
	__u64 waits;
	__u64 wait_ns;
	__u64 wait_max_ns;
	__u64 throttled_wait_ns;
	__u64 throttled_switches;
	__u64 preempted_switches;
	__u64 hist[HIST_BUCKETS];
};

/* --net: where a packet of the container is on its way, one segment at a time. "Out" is from
 * the container to the host (or another container), "in" the way back. */
enum net_segment {
	SEG_OUT_VETH = 0,   /* start_xmit on the container's eth0 -> netif_receive_skb on the host veth */
	SEG_OUT_BRIDGE = 1, /* netif_receive_skb on the host veth -> on the bridge (host stack) or xmit on another port */
	SEG_IN_BRIDGE = 2,  /* start_xmit on the bridge (or receive on another port) -> start_xmit on the host veth */
	SEG_IN_VETH = 3,    /* start_xmit on the host veth -> netif_receive_skb on the container's eth0 */
	NET_SEGMENTS = 4,
};

/* Latency histogram of one segment, log-linear: values under 16 ns have a bucket each, then 16
 * buckets per power of two (each about 4% wide); the last bucket holds everything above. */
#define NET_SUB_BITS 4
#define NET_BUCKETS 512

struct net_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[NET_BUCKETS];
};

/* Packets and bytes entering the veth, [0] out of the container, [1] into it. */
struct net_counters {
	__u64 packets[2];
	__u64 bytes[2];
};

/* A dropped packet: where it was (0: in the container's stack, on its eth0 or host veth outside
 * the path; 1 + the segment it was in) and the kernel's reason (enum skb_drop_reason). */
struct net_drop_key {
	__u32 place;
	__u32 reason;
};

#endif
