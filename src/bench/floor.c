/* The start-time floor `poc bench start` compares runtimes with: the least a runtime must do to run
 * a command isolated as poc does, and nothing else (no configuration, no state, no /dev, no
 * capabilities, no seccomp): clone into six namespaces, an overlay root on fresh upper and work
 * directories, pivot_root, /proc, exec. With CGROUP_DIR and LIMIT_FILE, also a cgroup leaf with a
 * 64 MiB memory limit that the child joins before it runs, removed after it exits.
 *   floor ROOTFS DIR COMMAND [CGROUP_DIR LIMIT_FILE]
 * DIR (on the filesystem of poc's writable layers) is made and removed at every run. Built by
 * `poc bench` with the C compiler when one is installed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *lower, *dir, *command;
static char upper[4096], work[4096], merged[4096];
static int go[2];

static void fail(const char *what) {
  perror(what);
  _exit(121);
}

static int child(void *unused) {
  (void)unused;
  char byte;
  if (read(go[0], &byte, 1) != 1) fail("wait for the parent");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) fail("make / private");
  char options[12288];
  snprintf(options, sizeof options, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
  if (mount("overlay", merged, "overlay", 0, options)) fail("mount the overlay");
  if (chdir(merged)) fail("enter the root");
  if (syscall(SYS_pivot_root, ".", ".")) fail("pivot_root");
  if (umount2(".", MNT_DETACH)) fail("detach the old root");
  if (chdir("/")) fail("chdir /");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) fail("mount /proc");
  char *argv[] = {(char *)command, NULL};
  char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
  execve(command, argv, envp);
  fail("execve");
  return 0;
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) fail(path);
  close(fd);
}

int main(int argc, char **argv) {
  if (argc != 4 && argc != 6) {
    fprintf(stderr, "usage: floor ROOTFS DIR COMMAND [CGROUP_DIR LIMIT_FILE]\n");
    return 2;
  }
  lower = argv[1];
  dir = argv[2];
  command = argv[3];
  const char *cgroup = argc == 6 ? argv[4] : NULL;
  snprintf(upper, sizeof upper, "%s/upper", dir);
  snprintf(work, sizeof work, "%s/work", dir);
  snprintf(merged, sizeof merged, "%s/merged", dir);
  if (mkdir(dir, 0700) || mkdir(upper, 0755) || mkdir(work, 0700) || mkdir(merged, 0755))
    fail("make the layer directories");
  if (cgroup) {
    if (mkdir(cgroup, 0755)) fail("make the cgroup");
    char limit[4200];
    snprintf(limit, sizeof limit, "%s/%s", cgroup, argv[5]);
    write_file(limit, "67108864");
  }
  if (pipe2(go, O_CLOEXEC)) fail("pipe");
  static char stack[1 << 16];
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET |
              CLONE_NEWCGROUP | SIGCHLD;
  pid_t pid = clone(child, stack + sizeof stack, flags, NULL);
  if (pid < 0) fail("clone");
  if (cgroup) {
    char procs[4200], text[32];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", cgroup);
    snprintf(text, sizeof text, "%d", pid);
    write_file(procs, text);
  }
  if (write(go[1], "x", 1) != 1) fail("start the child");
  int status;
  if (waitpid(pid, &status, 0) < 0) fail("wait");
  if (cgroup && rmdir(cgroup)) fail("remove the cgroup");
  /* overlay leaves an empty work/work behind. */
  char workwork[4200];
  snprintf(workwork, sizeof workwork, "%s/work", work);
  rmdir(workwork);
  if (rmdir(work) || rmdir(upper) || rmdir(merged) || rmdir(dir)) fail("remove the layer directories");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
