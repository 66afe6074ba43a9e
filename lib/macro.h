/* Small language helpers shared by every module: cleanup attributes, ownership transfer
 * (TAKE_PTR / TAKE_FD), array sizes. Modelled on systemd's macro.h; nothing here allocates. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _warn_unused_ __attribute__((warn_unused_result))

static inline void kd_freep(void *p)
{
	free(*(void **)p);
}

static inline void kd_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

static inline void kd_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_free_ _cleanup_(kd_freep)
#define _cleanup_close_ _cleanup_(kd_closep)
#define _cleanup_fclose_ _cleanup_(kd_fclosep)

/* Define a cleanup function for a pointer type: DEFINE_CLEANUP(json_object *, json_object_put) */
#define DEFINE_CLEANUP(type, func)                                                                 \
	static inline void func##p(type *p)                                                        \
	{                                                                                          \
		if (*p)                                                                            \
			func(*p);                                                                  \
	}

/* Move ownership out of a cleanup variable. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _ptr_ = (p);                                                         \
		(p) = NULL;                                                                        \
		_ptr_;                                                                             \
	})

#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _fd_ = (fd);                                                                   \
		(fd) = -1;                                                                         \
		_fd_;                                                                              \
	})

static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}
