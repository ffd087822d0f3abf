/* SPDX-License-Identifier: MIT */
/*
 * hetmm/dmirror.h - the "dmirror" reference device: the kernel's
 * lib/test_hmm.c, a fake device that mirrors a process address space with
 * hmm_range_fault() and owns device memory it migrates pages into.
 *
 * Map:
 *   dmirror_probe/remove     module load/unload: up to DMIRROR_NDEVICES
 *                            devices on a machine; minors 0 and 1 have
 *                            DEVICE_PRIVATE memory, 2 and 3 DEVICE_COHERENT
 *   dmirror_open/release     open()/close() of /dev/hmm_dmirrorN by a
 *                            process: a struct dmirror bound to its mm
 *   dmirror_ioctl            the HMM_DMIRROR_* commands on an open mirror
 *   dmirror_mmap             mmap() of the device file: a VM_MIXEDMAP VMA
 *                            of zeroed driver pages (vm_insert_page)
 *   struct hmm_dmirror_cmd   the ioctl argument (lib/test_hmm_uapi.h)
 *   dmirror_device_counters  the allocator's counters (tests, reports)
 *   dmirror_debug_*          test hooks that bypass the protocol
 *
 * Every open mirror has a device page table indexed by virtual page
 * number. Its entries name (by pfn) the struct page the device reaches
 * for that virtual page (a system page, a coherent device page, or a
 * private page of this device) with a permission tag: read-only, atomic
 * (granted by make_device_exclusive) or read-write. They hold no page
 * references: the mirror's interval notifier removes them before the CPU
 * page tables drop the page (spec section 2.8).
 *
 * Device memory comes in DEVMEM_CHUNK_SIZE chunks, one dev_pagemap each,
 * created on demand (PGMAP_ON_DEMAND: a chunk costs no struct pages until
 * its pages are used) and put into service by pgmap offset with
 * pgmap_request_folio(); the driver keeps its own allocator of offsets
 * (free lists of single pages and of PMD-sized folios, plus a cursor over
 * never-used space). A private device grows chunks until the machine's
 * device window is full; a coherent device owns one fixed "special purpose
 * memory" region reserved at probe, so it has at most one chunk, as in the
 * kernel. Each device creates its first chunk at probe.
 *
 * Simulator difference (important when porting to or from the kernel):
 * device memory here has real bytes -- page_address()/folio_address() of a
 * device page points at the device frame -- so the driver keeps device
 * data in the device frames themselves. test_hmm instead allocates a
 * "backing" system page per device-private page and stores it in
 * zone_device_data; we have none. zone_device_data of a device page holds
 * the mirror that migrated it in (used for that mirror's FAIL_ALLOC flag
 * on the way back), and the device page table stores the device page
 * itself where test_hmm stores the backing page.
 *
 * Further deviations from test_hmm (all on the side of safety):
 *   - commands on a mirror whose process has exited fail with -EINVAL
 *     (test_hmm's READ/WRITE would loop forever);
 *   - npages so large that npages << PAGE_SHIFT overflows is -EINVAL;
 *   - migrations erase the range from every mirror of the same device on
 *     the same mm (test_hmm only updates the mirror doing it, leaving
 *     stale entries in a second mirror of the same process);
 *   - the invalidate callback leaves the table alone for the device's own
 *     MIGRATE events, as test_hmm, but still records the sequence, so a
 *     device fault racing the migration retries instead of installing
 *     the page being migrated away;
 *   - dmirror_release() keeps the struct dmirror as a closed shell until
 *     the machine is destroyed, so a command after release fails with
 *     -EINVAL ("no private data") instead of touching freed memory;
 *   - dmirror_remove() closes mirrors still open;
 *   - eviction on RELEASE and remove retries pages that are busy, or
 *     whose system page or copy failed, until the chunk is empty (bounded
 *     by a 10 s budget, then -EBUSY, -ENOMEM or -EIO);
 *   - a new chunk's pages are not all put on the order-0 free list: they
 *     are handed out from a cursor, so any chunk can serve PMD-sized
 *     folios; a single page breaks up a free folio only when nothing else
 *     is left (test_hmm maps a chunk per large request);
 *   - allocations honour the machine's "device_alloc" fault-injection
 *     site as well as HMM_DMIRROR_FLAG_FAIL_ALLOC;
 *   - every migration copy goes through one copy engine that can fail
 *     like DMA (the "device_copy" and "copy_page" sites); the page then
 *     stays where it was: MIGRATE_TO_DEV reads it back as -ENOENT,
 *     MIGRATE_TO_SYS stops with -EIO, a CPU fault gets SIGBUS (-EFAULT),
 *     eviction retries it (test_hmm's copies cannot fail);
 *   - mmap() of the device file takes the process to map into as an
 *     argument (the kernel maps into current->mm, which need not be the
 *     mirror's mm), and fails with -EINVAL on a released mirror.
 *
 * Per-machine state hangs off m->subsys[HETMM_SUBSYS_DRIVERS] (freed with
 * the machine); the "dmirror" checker is registered on first probe.
 *
 * Locking (see drivers/dmirror/dmirror.c for the full rules):
 *   module lock (mutex)      probe, remove, open, release
 *   device devmem_lock       chunk creation and removal
 *   device lock (spinlock)   chunk array, free lists, counters
 *   device mirrors_lock      the list of open mirrors of a device
 *   dmirror mutex            one mirror's device page table; taken by its
 *                            invalidate callback
 * Order: module lock -> mmap_lock -> mirrors_lock -> dmirror mutex;
 * devmem_lock -> device lock.
 */
#ifndef HETMM_DMIRROR_H
#define HETMM_DMIRROR_H

#include <stdint.h>

#include "mm_types.h"
#include "page.h"
#include "phys.h"

#define DMIRROR_NDEVICES 4
#define DMIRROR_RANGE_FAULT_TIMEOUT 1000 /* ms, budget of one fault */
#define DEVMEM_CHUNK_SIZE (256UL << 20)

/* Memory types of the devices (test_hmm_uapi.h). */
#define HMM_DMIRROR_MEMORY_DEVICE_PRIVATE 1
#define HMM_DMIRROR_MEMORY_DEVICE_COHERENT 2

/**
 * struct hmm_dmirror_cmd - the argument of every command.
 * @addr: in: page-aligned virtual address in the mirrored process.
 * @ptr: in: host pointer (cast to uint64_t) to the caller's buffer: data
 *       for READ/WRITE/MIGRATE_TO_DEV/EXCLUSIVE, one byte per page for
 *       SNAPSHOT.
 * @npages: in: pages from @addr (the flags for HMM_DMIRROR_FLAGS).
 * @cpages: out: pages copied/processed.
 * @faults: out: device fault rounds (READ, WRITE).
 */
struct hmm_dmirror_cmd {
	uint64_t addr;
	uint64_t ptr;
	uint64_t npages;
	uint64_t cpages;
	uint64_t faults;
};

/*
 * The command numbers: _IOWR('H', nr, struct hmm_dmirror_cmd) in the
 * asm-generic ioctl encoding (dir 3 << 30 | size << 16 | type << 8 | nr).
 */
#define HMM_DMIRROR_IOWR(nr)                                                 \
	((3U << 30) | ((unsigned int)sizeof(struct hmm_dmirror_cmd) << 16) | \
	 ((unsigned int)'H' << 8) | (unsigned int)(nr))

#define HMM_DMIRROR_READ HMM_DMIRROR_IOWR(0x00)
#define HMM_DMIRROR_WRITE HMM_DMIRROR_IOWR(0x01)
#define HMM_DMIRROR_MIGRATE_TO_DEV HMM_DMIRROR_IOWR(0x02)
#define HMM_DMIRROR_MIGRATE_TO_SYS HMM_DMIRROR_IOWR(0x03)
#define HMM_DMIRROR_SNAPSHOT HMM_DMIRROR_IOWR(0x04)
#define HMM_DMIRROR_EXCLUSIVE HMM_DMIRROR_IOWR(0x05)
#define HMM_DMIRROR_CHECK_EXCLUSIVE HMM_DMIRROR_IOWR(0x06)
#define HMM_DMIRROR_RELEASE HMM_DMIRROR_IOWR(0x07)
#define HMM_DMIRROR_FLAGS HMM_DMIRROR_IOWR(0x08)

/* HMM_DMIRROR_FLAGS: the next allocation of a migration fails, once. */
#define HMM_DMIRROR_FLAG_FAIL_ALLOC (1ULL << 0)

/* One SNAPSHOT byte per page (spec section 5.6). */
enum {
	HMM_DMIRROR_PROT_ERROR = 0xFF,
	HMM_DMIRROR_PROT_NONE = 0x00,
	HMM_DMIRROR_PROT_READ = 0x01,
	HMM_DMIRROR_PROT_WRITE = 0x02,
	HMM_DMIRROR_PROT_PMD = 0x04,
	HMM_DMIRROR_PROT_PUD = 0x08,
	HMM_DMIRROR_PROT_ZERO = 0x10,
	HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20,
	HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30,
	HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40,
	HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50,
};

struct dmirror;

/*
 * dmirror_probe - load the module on @m: minors 0 .. @nr_private - 1 get
 * DEVICE_PRIVATE memory, minors 2 .. 1 + @nr_coherent DEVICE_COHERENT
 * memory; each device maps its first chunk. Registers the "dmirror"
 * checker on first use.
 * Return: 0; -EINVAL (@nr_private or @nr_coherent above 2, or both 0),
 * -EBUSY (already loaded on @m), -ENOSPC/-ENOMEM (no device memory left
 * in the machine's device window; nothing stays loaded).
 */
int dmirror_probe(struct hetmm_machine *m, unsigned int nr_private,
		  unsigned int nr_coherent);

/*
 * dmirror_remove - unload: close mirrors still open, migrate every page
 * still on a device back to system memory (no data is lost), unmap all
 * chunks and give their regions back. A no-op if not loaded.
 */
void dmirror_remove(struct hetmm_machine *m);

/*
 * dmirror_open - open /dev/hmm_dmirror@minor for the process @mm: a mirror
 * with an empty device page table and an interval notifier over
 * [0, ULONG_MAX & PAGE_MASK) of @mm.
 * Return: the mirror, or ERR_PTR(-EINVAL) (NULL @m/@mm, or @mm exiting),
 * ERR_PTR(-ENODEV) (no such device), ERR_PTR(-ENOMEM).
 */
struct dmirror *dmirror_open(struct hetmm_machine *m, unsigned int minor,
			     struct mm_struct *mm);

/*
 * dmirror_ioctl - run one command (spec sections 5.4-5.6).
 * Return: 0, and *@arg updated with cpages/faults; on error *@arg is left
 * as it was. -EINVAL: NULL or closed @d, misaligned addr, npages 0 or
 * overflowing, unknown command, MIGRATE over a hole or an unreadable VMA,
 * a process that has exited; -EFAULT: @arg or the buffer NULL, a device
 * fault on memory the process cannot read; -EPERM: a device write to
 * read-only memory, CHECK_EXCLUSIVE finding atomic access still granted;
 * -ENOENT: pages that did not reach the device; -EBUSY: the fault budget
 * ran out; -ENOMEM; -EIO: MIGRATE_TO_SYS met a failed device copy (the
 * pages before it came back, the rest stayed on the device), RELEASE kept
 * failing to copy a page back until its deadline; -EOPNOTSUPP: EXCLUSIVE
 * on non-anonymous memory.
 */
int dmirror_ioctl(struct dmirror *d, unsigned int cmd,
		  struct hmm_dmirror_cmd *arg);

/*
 * dmirror_mmap - mmap() of the device file @d was opened as (test_hmm's
 * dmirror_fops_mmap), by the process @mm: a new VMA of @len bytes with
 * @prot and @flags as hetmm_mmap_driver() takes them (MAP_SHARED or
 * MAP_PRIVATE, MAP_FIXED, MAP_FIXED_NOREPLACE; @addr is used only with a
 * fixed flag). Every page is a fresh zeroed system page mapped with
 * vm_insert_page(), so the VMA is VM_MIXEDMAP and a private writable
 * mapping is read-only until a CPU write copies the page (a device
 * SNAPSHOT reports READ). The PTEs hold the pages' only references: the
 * pages are freed when the mapping goes (munmap, exit), not at close.
 * @mm may be any live process, not only the mirror's.
 * Return: the address; -EINVAL (NULL or released @d, NULL @mm, bad length,
 * prot, flags or alignment), -ENOMEM (no room, no memory; nothing stays
 * mapped), -EEXIST (MAP_FIXED_NOREPLACE over a mapping).
 */
long dmirror_mmap(struct dmirror *d, struct mm_struct *mm, unsigned long addr,
		  size_t len, int prot, int flags);

/*
 * dmirror_release - close: remove the notifier, drop the device page
 * table, and migrate every page of the device (of any process) back to
 * system memory in one pass, as test_hmm does. Pages busy at that moment
 * stay on the device. Safe to call twice.
 */
void dmirror_release(struct dmirror *d);

/**
 * struct dmirror_counters - one device's allocator.
 * @type: HMM_DMIRROR_MEMORY_DEVICE_*, 0 if the minor is absent.
 * @calloc: device pages ever allocated.
 * @cfree: device pages returned by folio_free() to a live chunk.
 * @in_service: device pages allocated and not yet freed.
 * @nr_chunks: chunks (dev_pagemaps) mapped now, dying ones included.
 * @nr_mirrors: open mirrors.
 */
struct dmirror_counters {
	unsigned int type;
	unsigned long calloc;
	unsigned long cfree;
	unsigned long in_service;
	unsigned int nr_chunks;
	unsigned int nr_mirrors;
};

/* Return: 0, or -ENODEV if the module is not loaded or @minor is absent. */
int dmirror_device_counters(struct hetmm_machine *m, unsigned int minor,
			    struct dmirror_counters *c);

/* Device page-table tags (the test_hmm values). */
#define DPT_XA_TAG_READ 0UL
#define DPT_XA_TAG_ATOMIC 1UL
#define DPT_XA_TAG_WRITE 3UL

/*
 * Test hooks. dmirror_debug_lookup() reads the device page-table entry of
 * the page at @addr: 0 and *@pfn, *@tag, or -ENOENT. dmirror_debug_store()
 * writes one (@pfn -1UL erases) without the notifier protocol, so a test
 * can corrupt the table and watch the checker catch it.
 */
int dmirror_debug_lookup(struct dmirror *d, unsigned long addr,
			 unsigned long *pfn, unsigned long *tag);
int dmirror_debug_store(struct dmirror *d, unsigned long addr,
			unsigned long pfn, unsigned long tag);

#endif /* HETMM_DMIRROR_H */
