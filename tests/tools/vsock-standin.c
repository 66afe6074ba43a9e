/* vsock-standin CMD [ARGS...]: run CMD with one ioctl answered in userspace, so that upstream's
 * `kata-runtime env` can run on a machine without /dev/vhost-vsock (docs/KATA.md).
 *
 * kata-runtime env reserves a guest context id the way it would for a VM: it opens
 * /dev/vhost-vsock and calls ioctl(VHOST_VSOCK_SET_GUEST_CID) until one succeeds. This machine
 * has no vhost-vsock driver and no CUSE to fake a character device, so the test puts a plain
 * file at /dev/vhost-vsock (in a private mount namespace) and this tool installs a seccomp
 * filter that sends exactly that ioctl request to a supervisor (SECCOMP_RET_USER_NOTIF), which
 * answers 0. Every other syscall, and every other ioctl, runs for real. A hand-written fake, used
 * only because the real device cannot exist here; nothing else is faked. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define VHOST_VSOCK_SET_GUEST_CID_REQ 0x4008af60u /* _IOW(0xAF, 0x60, __u64) */

static int send_fd(int sock, int fd)
{
	char data = 'f';
	struct iovec iov = {.iov_base = &data, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char data;
	struct iovec iov = {.iov_base = &data, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	int fd = -1;
	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static int install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, VHOST_VSOCK_SET_GUEST_CID_REQ, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			    &prog);
}

int main(int argc, char **argv)
{
	int sp[2], status;
	if (argc < 2) {
		fprintf(stderr, "usage: vsock-standin CMD [ARGS...]\n");
		return 2;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return perror("socketpair"), 1;
	pid_t pid = fork();
	if (pid < 0)
		return perror("fork"), 1;
	if (pid == 0) {
		int lfd = install_filter();
		if (lfd < 0 || send_fd(sp[1], lfd) < 0) {
			perror("vsock-standin: seccomp listener");
			_exit(126);
		}
		close(lfd);
		execvp(argv[1], argv + 1);
		perror(argv[1]);
		_exit(127);
	}
	close(sp[1]);
	int lfd = recv_fd(sp[0]);
	if (lfd < 0) {
		waitpid(pid, &status, 0);
		return 126;
	}
	unsigned long answered = 0;
	for (;;) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		int n = poll(&p, 1, 200);
		if (n > 0 && (p.revents & POLLIN)) {
			struct seccomp_notif req;
			struct seccomp_notif_resp resp;
			memset(&req, 0, sizeof(req));
			if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, &req) == 0) {
				memset(&resp, 0, sizeof(resp));
				resp.id = req.id; /* val 0, error 0: the CID is taken */
				if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0)
					answered++;
			}
		}
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	fprintf(stderr, "vsock-standin: answered %lu VHOST_VSOCK_SET_GUEST_CID ioctl(s)\n",
		answered);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
