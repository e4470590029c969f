/*
 * berth-pause is the init of a pod's shared PID namespace: berth-monitor
 * starts it with CLONE_NEWPID, and the pod's containers join its namespace
 * through /proc/PID/ns/pid. An init only has to reap the orphans the
 * namespace hands it and to end when told; this one also ends when its
 * monitor dies (EOF on the lifeline pipe, fd 3), because a pod's PID
 * namespace must not outlive its monitor.
 *
 * It is freestanding C — raw system calls, no libc — so that a pod pays a
 * page or two for it, not a Go runtime's few MB nor a static libc's
 * start-up pages (issue #15). Built by `make build`:
 *
 *   gcc -Os -static -nostdlib -fno-stack-protector -s -o bin/berth-pause pause.c
 */

typedef long i64;
typedef unsigned long u64;

#if defined(__x86_64__)
enum { SYS_read = 0, SYS_rt_sigprocmask = 14, SYS_wait4 = 61, SYS_fcntl = 72, SYS_ppoll = 271, SYS_signalfd4 = 289, SYS_exit_group = 231 };

static i64 sys(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e)
{
	i64 ret;
	register i64 r10 __asm__("r10") = d;
	register i64 r8 __asm__("r8") = e;
	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
	return ret;
}

__asm__(".globl _start\n_start:\n xor %rbp,%rbp\n and $-16,%rsp\n call pause_main\n hlt\n");
#elif defined(__aarch64__)
enum { SYS_read = 63, SYS_rt_sigprocmask = 135, SYS_wait4 = 260, SYS_fcntl = 25, SYS_ppoll = 73, SYS_signalfd4 = 74, SYS_exit_group = 94 };

static i64 sys(i64 n, i64 a, i64 b, i64 c, i64 d, i64 e)
{
	register i64 x8 __asm__("x8") = n;
	register i64 x0 __asm__("x0") = a;
	register i64 x1 __asm__("x1") = b;
	register i64 x2 __asm__("x2") = c;
	register i64 x3 __asm__("x3") = d;
	register i64 x4 __asm__("x4") = e;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
	return x0;
}

__asm__(".globl _start\n_start:\n mov x29, #0\n mov x30, #0\n bl pause_main\n");
#else
#error "berth-pause: add this architecture's system call numbers"
#endif

enum {
	LIFELINE_FD = 3,
	SIGINT_ = 2,
	SIGTERM_ = 15,
	SIGCHLD_ = 17,
	SIG_BLOCK_ = 0,
	SFD_CLOEXEC_ = 02000000,
	F_GETFD_ = 1,
	POLLIN_ = 1,
	WNOHANG_ = 1,
	EINTR_ = 4,
	EAGAIN_ = 11,
};

struct pollfd_ {
	int fd;
	short events, revents;
};

/* struct signalfd_siginfo is 128 bytes; ssi_signo comes first. */
struct siginfo_ {
	unsigned int signo;
	unsigned char rest[124];
};

static void quit(int code)
{
	for (;;)
		sys(SYS_exit_group, code, 0, 0, 0, 0);
}

void pause_main(void)
{
	u64 set = 1UL << (SIGCHLD_ - 1) | 1UL << (SIGTERM_ - 1) | 1UL << (SIGINT_ - 1);
	/* Blocked, so they arrive only through the signalfd. */
	if (sys(SYS_rt_sigprocmask, SIG_BLOCK_, (i64)&set, 0, sizeof set, 0) != 0)
		quit(1);
	i64 sfd = sys(SYS_signalfd4, -1, (i64)&set, sizeof set, SFD_CLOEXEC_, 0);
	if (sfd < 0)
		quit(1);
	/* Without a lifeline (started by hand) only a signal ends it. */
	int nfds = sys(SYS_fcntl, LIFELINE_FD, F_GETFD_, 0, 0, 0) >= 0 ? 2 : 1;
	struct pollfd_ fds[2] = { { (int)sfd, POLLIN_, 0 }, { LIFELINE_FD, POLLIN_, 0 } };
	for (;;) {
		i64 n = sys(SYS_ppoll, (i64)fds, nfds, 0, 0, sizeof set);
		if (n == -EINTR_)
			continue;
		if (n < 0)
			quit(1);
		if (nfds == 2 && fds[1].revents) {
			char buf[64];
			i64 r = sys(SYS_read, LIFELINE_FD, (i64)buf, sizeof buf, 0, 0);
			if (r == 0 || (r < 0 && r != -EINTR_ && r != -EAGAIN_))
				quit(0); /* the monitor is gone */
		}
		if (fds[0].revents & POLLIN_) {
			/* One signal per wakeup; ppoll reports the next at once. */
			struct siginfo_ si;
			if (sys(SYS_read, sfd, (i64)&si, sizeof si, 0, 0) == sizeof si) {
				if (si.signo == SIGTERM_ || si.signo == SIGINT_)
					quit(0);
				/* SIGCHLD: signals coalesce, so reap every child. */
				while (sys(SYS_wait4, -1, 0, WNOHANG_, 0, 0) > 0)
					;
			}
		}
	}
}
