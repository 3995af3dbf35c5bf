/* The device table shared by devices.bpf.c and src/cgroups/devices.rs (keep the two in step). */
#ifndef POC_DEVICES_H
#define POC_DEVICES_H

/* A major or minor number that matches any (the kernel's own wildcard, ~0). */
#define DEV_ANY 0xffffffffu
/* The key whose value says the default is allow (1) rather than deny (absent or 0); no device
 * has type 0. */
#define DEV_DEFAULT_TYPE 0
#define MAX_DEVICE_ENTRIES 512

/* type: BPF_DEVCG_DEV_BLOCK (1) or BPF_DEVCG_DEV_CHAR (2). The value is a set of
 * BPF_DEVCG_ACC_MKNOD (1), READ (2), WRITE (4): the access the entry allows when the default is
 * deny, or refuses when the default is allow. */
struct dev_key {
	__u32 type;
	__u32 major;
	__u32 minor;
};

#endif
