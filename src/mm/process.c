// SPDX-License-Identifier: MIT
/*
 * process.c - the mm layer's machine state, process lifetime and the
 * file-descriptor table of the process face.
 *
 * Locking and invariants:
 *   - struct mm_machine is created once per machine, under mm_init_lock,
 *     and published with a release store; it lives until the machine is
 *     destroyed (its subsys_destroy hook).
 *   - mm_list_lock protects the list of live address spaces: an mm is on
 *     it from mm_alloc() until exit_mmap() is done with it.
 *   - proc->lock protects the fd table. A struct file in the table holds
 *     one reference; fork takes one more per inherited fd.
 */
#include <stdio.h>
#include <string.h>

#include <hetmm/check.h>
#include <hetmm/err.h>

#include "internal.h"

#define HETMM_MAX_FDS 256

struct hetmm_process {
	struct mutex lock;
	struct file *fds[HETMM_MAX_FDS];
};

extern const struct hetmm_fs_hooks mm_fs_hooks;

static pthread_mutex_t mm_init_lock = PTHREAD_MUTEX_INITIALIZER;

static void mm_machine_destroy(struct hetmm_machine *m)
{
	struct mm_machine *mmm = m->subsys[HETMM_SUBSYS_MM];

	if (!mmm)
		return;
	HETMM_WARN_ON_ONCE(!list_empty(&mmm->mms));
	if (mmm->fs)
		hetmm_fs_destroy(mmm->fs);
	mutex_destroy(&mmm->mm_list_lock);
	free(mmm->cpus);
	free(mmm);
	m->subsys[HETMM_SUBSYS_MM] = NULL;
}

struct mm_machine *mm_machine(struct hetmm_machine *m)
{
	struct mm_machine *mmm = mm_machine_peek(m);
	struct hetmm_fs *fs;

	if (likely(mmm))
		return mmm;
	pthread_mutex_lock(&mm_init_lock);
	mmm = mm_machine_peek(m);
	if (mmm)
		goto out;
	mmm = calloc(1, sizeof(*mmm));
	if (!mmm)
		goto out;
	mmm->nr_cpus = m->cfg.nr_cpus;
	mmm->thp_mode = THP_MADVISE;
	mmm->thp_use_zero_page = 1;
	if (posix_memalign((void **)&mmm->cpus, 64,
			   sizeof(*mmm->cpus) * mmm->nr_cpus))
		goto fail;
	memset(mmm->cpus, 0, sizeof(*mmm->cpus) * mmm->nr_cpus);
	for (unsigned int i = 0; i < mmm->nr_cpus; i++) {
		spin_lock_init(&mmm->cpus[i].lock);
		mmm->cpus[i].id = i;
	}
	fs = hetmm_fs_create(m);
	if (IS_ERR(fs))
		goto fail_cpus;
	hetmm_fs_set_hooks(fs, &mm_fs_hooks);
	mmm->fs = fs;
	mutex_init(&mmm->mm_list_lock);
	INIT_LIST_HEAD(&mmm->mms);
	m->subsys_destroy[HETMM_SUBSYS_MM] = mm_machine_destroy;
	__atomic_store_n((struct mm_machine **)&m->subsys[HETMM_SUBSYS_MM],
			 mmm, __ATOMIC_RELEASE);
	mm_register_checkers(m);
	goto out;
fail_cpus:
	free(mmm->cpus);
fail:
	free(mmm);
	mmm = NULL;
out:
	pthread_mutex_unlock(&mm_init_lock);
	return mmm;
}

struct hetmm_fs *hetmm_machine_fs(struct hetmm_machine *m)
{
	struct mm_machine *mmm = m ? mm_machine(m) : NULL;

	return mmm ? mmm->fs : NULL;
}

/* ------------------------------------------------------------ processes */

struct mm_struct *hetmm_process_create(struct hetmm_machine *m)
{
	struct hetmm_process *proc;
	struct mm_struct *mm;

	proc = calloc(1, sizeof(*proc));
	if (!proc)
		return ERR_PTR(-ENOMEM);
	mm = mm_alloc(m);
	if (IS_ERR(mm)) {
		free(proc);
		return mm;
	}
	mutex_init(&proc->lock);
	mm->mm_private = proc;
	return mm;
}

void process_exit_files(struct mm_struct *mm)
{
	struct hetmm_process *proc = mm->mm_private;

	if (!proc)
		return;
	for (int i = 0; i < HETMM_MAX_FDS; i++)
		if (proc->fds[i])
			fput(proc->fds[i]);
	mutex_destroy(&proc->lock);
	free(proc);
	mm->mm_private = NULL;
}

void hetmm_exit(struct mm_struct *mm)
{
	if (!mm)
		return;
	process_exit_files(mm);
	mmput(mm);
}

void process_fork_files(struct mm_struct *parent, struct mm_struct *child)
{
	struct hetmm_process *p = parent->mm_private, *c = child->mm_private;

	if (!p || !c)
		return;
	mutex_lock(&p->lock);
	for (int i = 0; i < HETMM_MAX_FDS; i++)
		if (p->fds[i])
			c->fds[i] = get_file(p->fds[i]);
	mutex_unlock(&p->lock);
}

struct file *process_fget(struct mm_struct *mm, int fd)
{
	struct hetmm_process *proc = mm->mm_private;
	struct file *file = NULL;

	if (!proc || fd < 0 || fd >= HETMM_MAX_FDS)
		return NULL;
	mutex_lock(&proc->lock);
	if (proc->fds[fd])
		file = get_file(proc->fds[fd]);
	mutex_unlock(&proc->lock);
	return file;
}

/* ----------------------------------------------------------------- files */

int hetmm_open_kind(struct mm_struct *mm, const char *path, int flags,
		    int kind)
{
	struct hetmm_process *proc;
	struct hetmm_fs *fs;
	struct file *file;
	int fd;

	if (!mm || !(proc = mm->mm_private))
		return -EINVAL;
	fs = hetmm_machine_fs(mm->machine);
	if (!fs)
		return -ENOMEM;
	mutex_lock(&proc->lock);
	for (fd = 0; fd < HETMM_MAX_FDS && proc->fds[fd]; fd++)
		;
	if (fd == HETMM_MAX_FDS) {
		mutex_unlock(&proc->lock);
		return -EMFILE;
	}
	file = hetmm_fs_open(fs, path, flags, kind);
	if (IS_ERR(file)) {
		mutex_unlock(&proc->lock);
		return (int)PTR_ERR(file);
	}
	proc->fds[fd] = file;
	mutex_unlock(&proc->lock);
	return fd;
}

int hetmm_open(struct mm_struct *mm, const char *path, int flags)
{
	return hetmm_open_kind(mm, path, flags, HETMM_FS_TMPFS);
}

int hetmm_close(struct mm_struct *mm, int fd)
{
	struct hetmm_process *proc = mm ? mm->mm_private : NULL;
	struct file *file;

	if (!proc || fd < 0 || fd >= HETMM_MAX_FDS)
		return -EBADF;
	mutex_lock(&proc->lock);
	file = proc->fds[fd];
	proc->fds[fd] = NULL;
	mutex_unlock(&proc->lock);
	if (!file)
		return -EBADF;
	fput(file);
	return 0;
}

int hetmm_ftruncate(struct mm_struct *mm, int fd, off_t len)
{
	struct file *file = mm ? process_fget(mm, fd) : NULL;
	int ret;

	if (!file)
		return -EBADF;
	if (len < 0)
		ret = -EINVAL;
	else if (!(file->f_mode & FMODE_WRITE))
		ret = -EINVAL; /* as Linux: not open for writing */
	else
		ret = file_truncate(file, len);
	fput(file);
	return ret;
}

ssize_t hetmm_pread(struct mm_struct *mm, int fd, void *buf, size_t len,
		    off_t off)
{
	struct file *file = mm ? process_fget(mm, fd) : NULL;
	ssize_t ret;

	if (!file)
		return -EBADF;
	ret = file_pread(file, buf, len, off);
	fput(file);
	return ret;
}

ssize_t hetmm_pwrite(struct mm_struct *mm, int fd, const void *buf,
		     size_t len, off_t off)
{
	struct file *file = mm ? process_fget(mm, fd) : NULL;
	ssize_t ret;

	if (!file)
		return -EBADF;
	ret = file_pwrite(file, buf, len, off);
	fput(file);
	return ret;
}

int hetmm_unlink(struct mm_struct *mm, const char *path)
{
	struct hetmm_fs *fs = mm ? hetmm_machine_fs(mm->machine) : NULL;

	if (!fs)
		return -EINVAL;
	return hetmm_fs_unlink(fs, path);
}

int shmem_zero_setup(struct mm_struct *mm, struct vm_area_struct *vma)
{
	static atomic_ulong seq;
	struct hetmm_fs *fs = hetmm_machine_fs(mm->machine);
	char name[48];
	struct file *file;
	int ret;

	if (!fs)
		return -ENOMEM;
	snprintf(name, sizeof(name), ".shmem-anon-%lu",
		 atomic_fetch_add(&seq, 1));
	file = hetmm_fs_open(fs, name, O_RDWR | O_CREAT | O_EXCL,
			     HETMM_FS_TMPFS);
	if (IS_ERR(file))
		return (int)PTR_ERR(file);
	hetmm_fs_unlink(fs, name);
	ret = file_truncate(file, (loff_t)(vma->vm_end - vma->vm_start));
	if (ret) {
		fput(file);
		return ret;
	}
	vma->vm_file = file;
	vma->vm_pgoff = 0;
	return 0;
}
