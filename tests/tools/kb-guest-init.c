/* /init of the initramfs that boot-tests the guest kernel component under QEMU TCG
 * (tests/integration/test-builder.sh): prints what a Kata guest needs from the kernel —
 * its release, the CPUs online, the virtio devices it bound, its filesystems, a vsock socket,
 * a file read over virtio-9p, the cgroup v2 controllers, the namespaces a container gets, a
 * seccomp filter and inotify — then powers off. Built with `cc -static`: no loader in the
 * initramfs. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void print_file_line(const char *label, const char *path)
{
	char buf[4096] = "";
	FILE *f = fopen(path, "re");
	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = '\0';
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = '\0';
	printf("KB %s=%s\n", label, f ? buf : strerror(errno));
}

/* Virtio device IDs bound to a driver (virtio spec 5: 2 blk, 3 console, 4 rng, 5 balloon,
 * 8 scsi, 9 9p). */
static void print_virtio(void)
{
	DIR *d = opendir("/sys/bus/virtio/devices");
	struct dirent *e;
	printf("KB virtio=");
	while (d && (e = readdir(d))) {
		char path[512], id[32] = "", drv[512];
		FILE *f;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/device", e->d_name);
		if ((f = fopen(path, "re"))) {
			if (!fgets(id, sizeof(id), f))
				id[0] = '\0';
			fclose(f);
		}
		id[strcspn(id, "\n")] = '\0';
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/driver", e->d_name);
		ssize_t n = readlink(path, drv, sizeof(drv) - 1);
		drv[n > 0 ? n : 0] = '\0';
		printf("%s:%s ", id, strrchr(drv, '/') ? strrchr(drv, '/') + 1 : "unbound");
	}
	printf("\n");
	if (d)
		closedir(d);
}

static void print_filesystems(void)
{
	char line[256];
	FILE *f = fopen("/proc/filesystems", "re");
	printf("KB fs=");
	while (f && fgets(line, sizeof(line), f)) {
		char *name = strrchr(line, '\t');
		name = name ? name + 1 : line;
		name[strcspn(name, "\n")] = '\0';
		printf("%s ", name);
	}
	printf("\n");
	if (f)
		fclose(f);
}

/* What the agent creates for each container: every namespace at once, in a child. */
static void print_namespaces(void)
{
	int status = 0;
	pid_t pid = fork();
	if (pid == 0)
		_exit(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
			      CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP) == 0
			      ? 0
			      : errno);
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		printf("KB ns=fork: %s\n", strerror(errno));
	else
		printf("KB ns=%s\n",
		       WIFEXITED(status) && WEXITSTATUS(status) == 0
			       ? "ok"
			       : strerror(WIFEXITED(status) ? WEXITSTATUS(status) : EINTR));
}

/* An allow-everything filter installed in a child: the kernel takes seccomp filters. */
static void print_seccomp(void)
{
	int status = 0;
	pid_t pid = fork();
	if (pid == 0) {
		struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
		struct sock_fprog prog = {.len = 1, .filter = allow};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			_exit(errno);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		printf("KB seccomp=fork: %s\n", strerror(errno));
	else
		printf("KB seccomp=%s\n",
		       WIFEXITED(status) && WEXITSTATUS(status) == 0
			       ? "ok"
			       : strerror(WIFEXITED(status) ? WEXITSTATUS(status) : EINTR));
}

int main(void)
{
	struct utsname u;
	int fd;

	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/mnt", 0755);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	uname(&u);
	printf("KB-GUEST-UP release=%s machine=%s\n", u.release, u.machine);
	print_file_line("cpus", "/sys/devices/system/cpu/online");
	print_virtio();
	print_filesystems();
	fd = socket(AF_VSOCK, SOCK_STREAM, 0);
	printf("KB vsock=%s\n", fd >= 0 ? "ok" : strerror(errno));
	if (mount("kbshare", "/mnt", "9p", 0, "trans=virtio,version=9p2000.L") == 0)
		print_file_line("9p", "/mnt/marker");
	else
		printf("KB 9p=mount: %s\n", strerror(errno));
	print_file_line("blk", "/sys/block/vda/size");
	print_file_line("pmem", "/sys/block/pmem0/size");
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", 0, NULL) == 0)
		print_file_line("cgroup2", "/sys/fs/cgroup/cgroup.controllers");
	else
		printf("KB cgroup2=mount: %s\n", strerror(errno));
	print_namespaces();
	print_seccomp();
	fd = inotify_init1(IN_CLOEXEC);
	printf("KB inotify=%s\n",
	       fd >= 0 && inotify_add_watch(fd, "/", IN_CREATE) >= 0 ? "ok" : strerror(errno));
	printf("KB-GUEST-DONE\n");
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT); /* qemu -no-reboot exits */
	return 0;
}
