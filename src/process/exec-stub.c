/*
 * poc's exec stub: the program a container process runs from a sealed memfd just before its own
 * command, so that no process the container can see ever executes from poc's binary. A command that
 * names /proc/self/exe as its interpreter (CVE-2019-5736) then reaches this stub's sealed copy,
 * never the host's poc. No libc: a handful of raw system calls, built static by build.rs.
 *
 * argv: "poc-exec" SYNC_FD PATH ARG0 ARGS...   environment: the command's.
 * On success SYNC_FD closes on exec (the parent sees EOF); on failure the stub sends 'X' and
 * the errno byte on it and exits 127.
 */
#if defined(__x86_64__)
#define SYS_write 1
#define SYS_fcntl 72
#define SYS_execve 59
#define SYS_exit 60
static long syscall3(long n, long a, long b, long c) {
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call stub_main\n hlt\n");
#elif defined(__aarch64__)
#define SYS_write 64
#define SYS_fcntl 25
#define SYS_execve 221
#define SYS_exit 93
static long syscall3(long n, long a, long b, long c) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
  return x0;
}
__asm__(".globl _start\n_start:\n mov x0, sp\n bl stub_main\n");
#else
#error "the exec stub knows x86_64 and aarch64"
#endif

#define F_SETFD 2
#define FD_CLOEXEC 1

__attribute__((noreturn)) static void leave(int code) {
  for (;;)
    syscall3(SYS_exit, code, 0, 0);
}

__attribute__((noreturn, used)) void stub_main(long *stack) {
  long argc = stack[0];
  char **argv = (char **)(stack + 1);
  char **envp = argv + argc + 1;
  if (argc < 4)
    leave(127);
  long fd = 0;
  for (const char *p = argv[1]; *p; p++) {
    if (*p < '0' || *p > '9')
      leave(127);
    fd = fd * 10 + (*p - '0');
  }
  syscall3(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
  long err = syscall3(SYS_execve, (long)argv[2], (long)(argv + 3), (long)envp);
  unsigned char msg[2] = {'X', (unsigned char)-err};
  syscall3(SYS_write, fd, (long)msg, 2);
  leave(127);
}
