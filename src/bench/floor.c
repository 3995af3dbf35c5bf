/* The start-time floor `poc bench start` compares runtimes with: the least a runtime must do to run
 * a command isolated as poc does, and nothing else (no configuration, no state, no /dev, no
 * capabilities, no seccomp): clone into six namespaces, an overlay root on fresh upper and work
 * directories, pivot_root, /proc, exec. With CGROUP_DIR and LIMIT_FILE, also a cgroup leaf with a
 * 64 MiB memory limit, removed after the child exits. The child is born in it on cgroup v2
 * (clone3's CLONE_INTO_CGROUP) and joins it itself on v1 (its own tid into `tasks`), as poc does:
 * a parent writing the child's pid into cgroup.procs takes a global lock that waits for an RCU
 * grace period when it has not been used for a while (5-13 ms here), which no runtime must pay.
 *   floor ROOTFS DIR COMMAND [CGROUP_DIR LIMIT_FILE]
 * DIR (on the filesystem of poc's writable layers) is made and removed at every run. Built by
 * `poc bench` with the C compiler when one is installed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *lower, *dir, *command, *join_tasks;
static char upper[4096], work[4096], merged[4096];
static int go[2];

static void fail(const char *what) {
  perror(what);
  _exit(121);
}

static void write_file(const char *path, const char *text);

static void child(void) {
  char byte;
  if (read(go[0], &byte, 1) != 1) fail("wait for the parent");
  if (join_tasks) write_file(join_tasks, "0");
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
  int v2 = cgroup && strcmp(argv[5], "memory.max") == 0;
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
  static char tasks[4200];
  int cgroup_fd = -1;
  if (cgroup && v2) {
    cgroup_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgroup_fd < 0) fail("open the cgroup");
  } else if (cgroup) {
    snprintf(tasks, sizeof tasks, "%s/tasks", cgroup);
    join_tasks = tasks;
  }
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET |
               CLONE_NEWCGROUP | (cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  args.exit_signal = SIGCHLD;
  args.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
  pid_t pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) fail("clone3");
  if (pid == 0) child();
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
