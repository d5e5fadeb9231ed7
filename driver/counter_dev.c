// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/sysgenid: the SysGenID system generation counter, as carried by
 * Amazon Linux kernels: a read-only page with the u32 counter at offset 0,
 * blocking read, poll, acknowledgment by write, and the watcher-tracking
 * ioctls. The extensions of this module: a second mmap offset for the page
 * that holds the hypervisor's GUID, two ioctls that go with it, and sysfs
 * attributes. What moves the counter is guid_change.c's business.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cred.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/ktime.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include "internal.h"

/* Per open file: the last change this fd acknowledged. */
struct sysgenid_file {
	unsigned long acked_seq;
	bool tracked;
};

/*
 * sysgenid_lock serialises every change of the counter, the acknowledged
 * generations and the watcher counts, so that the counts always agree with
 * the fds. Readers that only test "is this fd outdated" (read, poll, the
 * wait conditions) look without the lock; a stale answer there is
 * corrected by the wake-up that follows every change.
 */
static DEFINE_SPINLOCK(sysgenid_lock);
static u32 sysgenid_gen;
/*
 * Changes so far. An fd acknowledges a change, not a value: triggers can
 * bring the u32 counter back to a value an fd acknowledged long ago, and
 * that fd must still count as behind (for read, poll and the watcher
 * counts, which a bump resets to "every tracked fd is behind").
 */
static unsigned long sysgenid_seq;
static unsigned int sysgenid_watchers;	/* fds with tracking on */
static unsigned int sysgenid_outdated;	/* tracked fds behind the counter */
static u32 *sysgenid_page;		/* what user space maps */
static DECLARE_WAIT_QUEUE_HEAD(sysgenid_read_wq);
static DECLARE_WAIT_QUEUE_HEAD(sysgenid_outdated_wq);

static bool sysgenid_fd_outdated(const struct sysgenid_file *f)
{
	/* Pairs with the smp_wmb() in sysgenid_bump(): see there. */
	smp_rmb();
	return READ_ONCE(f->acked_seq) != READ_ONCE(sysgenid_seq);
}

/*
 * The counter's one change. A trigger (refuse_wrap) is refused with
 * -EOVERFLOW where the counter is U32_MAX: a lazy reader of the mapped
 * page compares the counter with the value it saw, and a counter brought
 * back to that value (ABA) would hide every change in between. Only a
 * privileged trigger can bring the counter near U32_MAX (restores alone
 * take 2^32 changes), so the kernel's own changes still wrap there.
 */
static int sysgenid_change(u32 min_gen, bool refuse_wrap, u32 *out)
{
	u32 gen;

	spin_lock(&sysgenid_lock);
	if (refuse_wrap && sysgenid_gen == U32_MAX) {
		spin_unlock(&sysgenid_lock);
		return -EOVERFLOW;
	}
	gen = max(min_gen, sysgenid_gen + 1);
	/* Only u32 wrap-around can make max() land on the current value. */
	if (gen == sysgenid_gen)
		gen++;
	WRITE_ONCE(sysgenid_gen, gen);
	WRITE_ONCE(sysgenid_seq, sysgenid_seq + 1);
	/* Every tracked fd is behind now, whether or not it was before. */
	WRITE_ONCE(sysgenid_outdated, sysgenid_watchers);
	/*
	 * Publish to the mapped page last: whoever sees the new value there
	 * and then calls read() or poll() must find its fd outdated.
	 */
	smp_wmb();
	WRITE_ONCE(*sysgenid_page, gen);
	spin_unlock(&sysgenid_lock);

	wake_up_interruptible_all(&sysgenid_read_wq);
	wake_up_interruptible_all(&sysgenid_outdated_wq);
	*out = gen;
	return 0;
}

u32 sysgenid_bump(u32 min_gen)
{
	u32 gen;

	sysgenid_change(min_gen, false, &gen);
	return gen;
}

/* SYSGENID_TRIGGER_GEN_UPDATE */
static int sysgenid_trigger(u32 min_gen)
{
	u32 gen;

	return sysgenid_change(min_gen, true, &gen);
}

u32 sysgenid_generation(void)
{
	return READ_ONCE(sysgenid_gen);
}

/* Called with sysgenid_lock held; true when the last outdated fd left. */
static bool sysgenid_put_outdated(void)
{
	WRITE_ONCE(sysgenid_outdated, sysgenid_outdated - 1);
	return sysgenid_outdated == 0;
}

static void sysgenid_set_tracking(struct sysgenid_file *f, bool on)
{
	bool wake = false;

	spin_lock(&sysgenid_lock);
	if (on && !f->tracked) {
		f->tracked = true;
		WRITE_ONCE(sysgenid_watchers, sysgenid_watchers + 1);
		if (f->acked_seq != sysgenid_seq)
			WRITE_ONCE(sysgenid_outdated, sysgenid_outdated + 1);
	} else if (!on && f->tracked) {
		f->tracked = false;
		WRITE_ONCE(sysgenid_watchers, sysgenid_watchers - 1);
		if (f->acked_seq != sysgenid_seq)
			wake = sysgenid_put_outdated();
	}
	spin_unlock(&sysgenid_lock);

	if (wake)
		wake_up_interruptible_all(&sysgenid_outdated_wq);
}

static int sysgenid_open(struct inode *inode, struct file *file)
{
	struct sysgenid_file *f;

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	f->acked_seq = READ_ONCE(sysgenid_seq);
	file->private_data = f;
	return 0;
}

static int sysgenid_release(struct inode *inode, struct file *file)
{
	struct sysgenid_file *f = file->private_data;

	/* A closed fd must not hold up SYSGENID_WAIT_WATCHERS. */
	sysgenid_set_tracking(f, false);
	kfree(f);
	return 0;
}

static ssize_t sysgenid_read(struct file *file, char __user *buf, size_t len,
			     loff_t *ppos)
{
	struct sysgenid_file *f = file->private_data;
	u32 gen;
	int ret;

	/* No partial counters. */
	if (len < sizeof(gen))
		return -EINVAL;

	if (!sysgenid_fd_outdated(f)) {
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		ret = wait_event_interruptible(sysgenid_read_wq,
					       sysgenid_fd_outdated(f));
		if (ret)
			return ret;
	}

	gen = READ_ONCE(sysgenid_gen);
	if (copy_to_user(buf, &gen, sizeof(gen)))
		return -EFAULT;
	return sizeof(gen);
}

static ssize_t sysgenid_write(struct file *file, const char __user *buf,
			      size_t len, loff_t *ppos)
{
	struct sysgenid_file *f = file->private_data;
	bool wake = false;
	u32 gen;

	if (len != sizeof(gen))
		return -ENOBUFS;
	if (copy_from_user(&gen, buf, sizeof(gen)))
		return -EFAULT;

	spin_lock(&sysgenid_lock);
	/* Acknowledging anything but the current counter is a mistake. */
	if (gen != sysgenid_gen) {
		spin_unlock(&sysgenid_lock);
		return -EINVAL;
	}
	if (f->acked_seq != sysgenid_seq) {
		WRITE_ONCE(f->acked_seq, sysgenid_seq);
		if (f->tracked)
			wake = sysgenid_put_outdated();
	}
	spin_unlock(&sysgenid_lock);

	if (wake)
		wake_up_interruptible_all(&sysgenid_outdated_wq);
	return sizeof(gen);
}

static __poll_t sysgenid_poll(struct file *file, poll_table *wait)
{
	struct sysgenid_file *f = file->private_data;

	poll_wait(file, &sysgenid_read_wq, wait);
	return sysgenid_fd_outdated(f) ? EPOLLIN | EPOLLRDNORM : 0;
}

static bool sysgenid_wait_done(const struct sysgenid_file *f)
{
	return !READ_ONCE(sysgenid_outdated) || sysgenid_fd_outdated(f);
}

static long sysgenid_wait_watchers(struct sysgenid_file *f,
				   unsigned long timeout_ms)
{
	ktime_t timeout = KTIME_MAX;
	long ret;

	/* 0 waits forever; so does anything too long to express in ns. */
	if (timeout_ms && timeout_ms < KTIME_MAX / NSEC_PER_MSEC)
		timeout = ms_to_ktime(timeout_ms);

	/*
	 * Wake also when the caller falls behind: an orchestrator that waits
	 * for others must first handle a change itself, or it waits on a
	 * system that it has not yet adjusted.
	 */
	ret = wait_event_interruptible_hrtimeout(sysgenid_outdated_wq,
						 sysgenid_wait_done(f), timeout);
	/*
	 * The original ABI's EINTR for a caller that fell behind: no signal
	 * is involved, so it is never restarted.
	 */
	if (sysgenid_fd_outdated(f))
		return -EINTR;
	/*
	 * A signal: a restart would begin the whole timeout again, so a
	 * bounded wait fails with EINTR; an unbounded one is restarted
	 * where the handler asks for it (SA_RESTART).
	 */
	if (ret == -ERESTARTSYS && timeout != KTIME_MAX)
		return -EINTR;
	/* 0, -ETIME on timeout (as the original driver), or -ERESTARTSYS. */
	return ret;
}

static long sysgenid_ioctl(struct file *file, unsigned int cmd,
			   unsigned long arg)
{
	struct sysgenid_file *f = file->private_data;

	switch (cmd) {
	case SYSGENID_SET_WATCHER_TRACKING:
		/*
		 * A tracked fd holds up SYSGENID_WAIT_WATCHERS until it
		 * acknowledges, which takes write access: refuse a watcher
		 * that could never let the waiters go.
		 */
		if (arg && !(file->f_mode & FMODE_WRITE))
			return -EBADF;
		sysgenid_set_tracking(f, arg != 0);
		return 0;
	case SYSGENID_WAIT_WATCHERS:
		return sysgenid_wait_watchers(f, arg);
	case SYSGENID_TRIGGER_GEN_UPDATE:
		/*
		 * The counter is system-wide, so the capability must be held
		 * in the initial user namespace, not in a container's.
		 */
		if (!checkpoint_restore_ns_capable(&init_user_ns))
			return -EACCES;
		if (arg > U32_MAX)
			return -EINVAL;
		return sysgenid_trigger(arg);
	case SYSGENID_GET_GUID_OFFSET:
		if (arg)
			return -EINVAL;
		if (!sysgenid_guid_offered)
			return -ENODEV;
		return sysgenid_guid_offset();
	case SYSGENID_HANDLE_GUID_CHANGE:
		/*
		 * No privilege: only a real change of the GUID does anything,
		 * once (guid_change.c).
		 */
		if (arg)
			return -EINVAL;
		if (!sysgenid_guid_present())
			return -ENODEV;
		return sysgenid_guid_handle(SYSGENID_BY_REQUEST);
	default:
		return -ENOTTY;
	}
}

static void sysgenid_vma_seal(struct vm_area_struct *vma,
			      vm_flags_t set)
{
	/*
	 * Without VM_MAYWRITE, neither mprotect() nor a forced ptrace write
	 * can make the shared page writable, and without VM_MAYEXEC no
	 * mprotect() can make it executable; DONTEXPAND stops mremap() from
	 * growing the mapping past it.
	 */
	set |= VM_DONTEXPAND | VM_DONTDUMP;
#if KERNEL_VERSION(6, 3, 0) <= LINUX_VERSION_CODE
	vm_flags_mod(vma, set, VM_MAYWRITE | VM_MAYEXEC);
#else
	vma->vm_flags |= set;
	vma->vm_flags &= ~(VM_MAYWRITE | VM_MAYEXEC);
#endif
}

/*
 * The counter page is inserted when it is first touched, and again after
 * MADV_DONTNEED (or anything else) zapped it: a read never gets SIGBUS.
 * The mapping holds a reference on the file and so on this module: the
 * page cannot be freed while it is mapped.
 */
static vm_fault_t sysgenid_counter_fault(struct vm_fault *vmf)
{
	struct page *page = virt_to_page(sysgenid_page);

	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct sysgenid_counter_vm_ops = {
	.fault = sysgenid_counter_fault,
};

/*
 * The hypervisor's page itself, not a copy: the hypervisor rewrites the
 * GUID before any vCPU runs after a restore, so a reader sees the new one
 * at its first instruction. The page is firmware memory, claimed by us
 * inside a reserved or ACPI NVS region, that holds nothing but the
 * vmgenid blob (checked at load; vmgenid_acpi.c).
 */
static int sysgenid_mmap_guid(struct vm_area_struct *vma)
{
	/*
	 * remap_pfn_range() makes it VM_PFNMAP: madvise(MADV_DONTNEED)
	 * refuses such a mapping (EINVAL), so no fault handler is needed.
	 */
	sysgenid_vma_seal(vma, 0);
	return remap_pfn_range(vma, vma->vm_start,
			       PHYS_PFN(sysgenid_guid_page_phys()), PAGE_SIZE,
			       vma->vm_page_prot);
}

static int sysgenid_mmap(struct file *file, struct vm_area_struct *vma)
{
	if (vma->vm_pgoff > SYSGENID_GUID_PGOFF || vma_pages(vma) != 1)
		return -EINVAL;
	if (vma->vm_pgoff == SYSGENID_GUID_PGOFF && !sysgenid_guid_offered)
		return -ENODEV;
	if (vma->vm_flags & (VM_WRITE | VM_EXEC))
		return -EPERM;
	/*
	 * Both pages are shared read-only views; a private mapping could be
	 * made writable by copy-on-write. VM_MAYSHARE, not VM_SHARED: mmap()
	 * drops VM_SHARED from a shared mapping of a file not open for
	 * writing.
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (vma->vm_pgoff == SYSGENID_GUID_PGOFF)
		return sysgenid_mmap_guid(vma);

	vma->vm_ops = &sysgenid_counter_vm_ops;
	sysgenid_vma_seal(vma, 0);
	return 0;
}

static const struct file_operations sysgenid_fops = {
	.owner		= THIS_MODULE,
	.open		= sysgenid_open,
	.release	= sysgenid_release,
	.read		= sysgenid_read,
	.write		= sysgenid_write,
	.poll		= sysgenid_poll,
	.unlocked_ioctl	= sysgenid_ioctl,
	/* The arguments are plain integers, the same in both ABIs. */
	.compat_ioctl	= sysgenid_ioctl,
	.mmap		= sysgenid_mmap,
	.llseek		= noop_llseek,
};

/*
 * Read-only views for tools such as "vmgenid status"; not part of the
 * original ABI.
 */
static ssize_t generation_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(sysgenid_gen));
}
static DEVICE_ATTR_RO(generation);

static ssize_t watchers_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(sysgenid_watchers));
}
static DEVICE_ATTR_RO(watchers);

static ssize_t outdated_watchers_show(struct device *dev,
				      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(sysgenid_outdated));
}
static DEVICE_ATTR_RO(outdated_watchers);

static ssize_t mode_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	return sysfs_emit(buf, "%s\n", sysgenid_mode == SYSGENID_MODE_ACPI ?
			  "acpi" : "notifier");
}
static DEVICE_ATTR_RO(mode);

static ssize_t guid_page_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", sysgenid_guid_page_state);
}
static DEVICE_ATTR_RO(guid_page);

static ssize_t sci_path_show(struct device *dev,
			     struct device_attribute *attr, char *buf)
{
	return sysgenid_sci_path_show(buf, PAGE_SIZE);
}
static DEVICE_ATTR_RO(sci_path);

static struct attribute *sysgenid_attrs[] = {
	&dev_attr_generation.attr,
	&dev_attr_watchers.attr,
	&dev_attr_outdated_watchers.attr,
	&dev_attr_mode.attr,
	&dev_attr_guid_page.attr,
	&dev_attr_sci_path.attr,
	NULL
};
ATTRIBUTE_GROUPS(sysgenid);

static struct miscdevice sysgenid_misc = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= SYSGENID_DEVICE_NAME,
	.fops	= &sysgenid_fops,
	.groups	= sysgenid_groups,
	.mode	= 0644,
};

int sysgenid_dev_init(void)
{
	sysgenid_page = (u32 *)get_zeroed_page(GFP_KERNEL);
	return sysgenid_page ? 0 : -ENOMEM;
}

int sysgenid_dev_register(void)
{
	int ret = misc_register(&sysgenid_misc);

	if (ret)
		pr_err("cannot register /dev/%s: %d\n", SYSGENID_DEVICE_NAME,
		       ret);
	return ret;
}

/* After the last user of the counter is gone (main.c orders the exit). */
void sysgenid_dev_exit(void)
{
	free_page((unsigned long)sysgenid_page);
}

void sysgenid_dev_unregister(void)
{
	misc_deregister(&sysgenid_misc);
}
