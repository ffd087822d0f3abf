// SPDX-License-Identifier: MIT
/*
 * base.c - assertion reporting, errno names, thread identity.
 *
 * Locking and invariants: the thread-id counter is a single atomic; thread
 * ids are never reused within a process, so a lock owner field can never
 * name a different thread than the one that took the lock.
 */
#include <stdatomic.h>
#include <string.h>

#include <hetmm/compiler.h>
#include <hetmm/err.h>
#include <hetmm/lock.h>

void hetmm_bug(const char *file, int line, const char *func, const char *expr)
{
	fprintf(stderr, "hetmm BUG at %s:%d %s(): %s\n", file, line, func,
		expr);
	fflush(stderr);
	abort();
}

void hetmm_warn(const char *file, int line, const char *func, const char *expr)
{
	fprintf(stderr, "hetmm WARNING at %s:%d %s(): %s\n", file, line, func,
		expr);
}

__hetmm_tls unsigned int __hetmm_tid;
static atomic_uint hetmm_next_tid = 1;

unsigned int __hetmm_thread_id_slow(void)
{
	__hetmm_tid = atomic_fetch_add(&hetmm_next_tid, 1);
	return __hetmm_tid;
}

const char *hetmm_errname(int err)
{
	static const struct {
		int err;
		const char *name;
	} names[] = {
		{ 0, "0" },
		{ -EPERM, "-EPERM" },
		{ -ENOENT, "-ENOENT" },
		{ -EINTR, "-EINTR" },
		{ -EIO, "-EIO" },
		{ -E2BIG, "-E2BIG" },
		{ -EBADF, "-EBADF" },
		{ -EAGAIN, "-EAGAIN" },
		{ -ENOMEM, "-ENOMEM" },
		{ -EACCES, "-EACCES" },
		{ -EFAULT, "-EFAULT" },
		{ -EBUSY, "-EBUSY" },
		{ -EEXIST, "-EEXIST" },
		{ -ENODEV, "-ENODEV" },
		{ -EINVAL, "-EINVAL" },
		{ -EMFILE, "-EMFILE" },
		{ -EFBIG, "-EFBIG" },
		{ -ENOSPC, "-ENOSPC" },
		{ -ERANGE, "-ERANGE" },
		{ -EDEADLK, "-EDEADLK" },
		{ -ENOSYS, "-ENOSYS" },
		{ -EOVERFLOW, "-EOVERFLOW" },
		{ -EOPNOTSUPP, "-EOPNOTSUPP" },
		{ -EHWPOISON, "-EHWPOISON" },
		{ -EUCLEAN, "-EUCLEAN" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].err == err)
			return names[i].name;
	return "-E?";
}
