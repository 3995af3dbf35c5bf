// SPDX-License-Identifier: GPL-2.0
/* poc's device rules for a container on a cgroup v2 host: the devices controller of cgroup v1,
 * as a BPF_PROG_TYPE_CGROUP_DEVICE program. User space reduces the container's ordered rules to a
 * table (devices.h) with the kernel v1 controller's own semantics, so that one list of rules means
 * the same on both kinds of host; this program only looks the access up. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "devices.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_DEVICE_ENTRIES);
	__type(key, struct dev_key);
	__type(value, __u32);
} devices SEC(".maps");

/* bpf_cgroup_dev_ctx, declared here without vmlinux.h's preserve_access_index: it is UAPI, so the
 * object carries no CO-RE relocation and loads without parsing the kernel's BTF. */
struct dev_ctx {
	__u32 access_type; /* access << 16 | device type */
	__u32 major;
	__u32 minor;
};

/* The entry for one of the four ways a rule can name the device, if there is one. */
static __always_inline __u32 *entry(__u32 type, __u32 major, __u32 minor)
{
	struct dev_key key = { .type = type, .major = major, .minor = minor };

	return bpf_map_lookup_elem(&devices, &key);
}

/* Default deny: one entry must allow every access asked for (O_RDWR asks for two at once).
 * Default allow: any entry that refuses part of it refuses. As cgroup v1 decides. */
static __always_inline int decide(__u32 *allowed_by_entry, __u32 access, int default_allow)
{
	if (!allowed_by_entry)
		return -1;
	if (default_allow)
		return (*allowed_by_entry & access) ? 0 : -1;
	return (access & ~*allowed_by_entry) ? -1 : 1;
}

SEC("cgroup/dev")
int poc_devices(struct bpf_cgroup_dev_ctx *kctx)
{
	struct dev_ctx *ctx = (struct dev_ctx *)kctx;
	__u32 type = ctx->access_type & 0xffff;
	__u32 access = ctx->access_type >> 16;
	__u32 major = ctx->major;
	__u32 minor = ctx->minor;
	__u32 *mode = entry(DEV_DEFAULT_TYPE, 0, 0);
	int default_allow = mode && *mode == 1;
	int verdict;

	if ((verdict = decide(entry(type, major, minor), access, default_allow)) >= 0)
		return verdict;
	if ((verdict = decide(entry(type, major, DEV_ANY), access, default_allow)) >= 0)
		return verdict;
	if ((verdict = decide(entry(type, DEV_ANY, minor), access, default_allow)) >= 0)
		return verdict;
	if ((verdict = decide(entry(type, DEV_ANY, DEV_ANY), access, default_allow)) >= 0)
		return verdict;
	return default_allow;
}
