// SPDX-License-Identifier: GPL-2.0
/*
 * Making the kernel's crng reseed now, from a module.
 *
 * drivers/char/random.c (6.1 and 6.12) exports no reseed. add_vmfork_
 * randomness(), which mixes a VM ID and reseeds, is exported only
 * "#if IS_MODULE(CONFIG_VMGENID)": not where the driver is built in (Debian
 * generic and 6.12) nor where it is absent (Debian cloud). What every
 * kernel since 4.17 has is the RNDRESEEDCRNG ioctl of /dev/random and
 * /dev/urandom (random_ioctl()):
 *
 *	case RNDRESEEDCRNG:
 *		if (!capable(CAP_SYS_ADMIN))
 *			return -EPERM;
 *		if (!crng_ready())
 *			return -ENODATA;
 *		crng_reseed();
 *		return 0;
 *
 * crng_reseed() extracts a new base key from the input pool (so it covers
 * what add_device_randomness() just mixed in, and 32 bytes of RDSEED or
 * RDRAND where the CPU has them) and bumps the base generation, which makes
 * every per-CPU crng (and, on 6.11+, the vDSO's) rekey before its next
 * output. That is exactly the reseed of add_vmfork_randomness().
 *
 * We call that ioctl through vfs_ioctl() on a file of /dev/urandom opened
 * at load, under a copy of the kernel's own credentials (init_task's, as
 * kernel threads run with) made at load, installed with override_creds()
 * for that one call only: capable() is asked about the kernel, never about
 * the process that made us handle a GUID change, and the caller's own
 * credentials are untouched (it is only marked PF_SUPERPRIV, the
 * accounting flag that any capable() success sets). A kernel worker would
 * do the same with a context switch more, which costs milliseconds right
 * after a restore. Why an unprivileged caller may cause it at all:
 * guid_change.c.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/kdev_t.h>
#include <linux/major.h>
#include <linux/random.h>
#include <linux/sched/task.h>

#include "internal.h"

/* drivers/char/mem.c: minor 8 is random, 9 urandom, both random_ioctl() */
#define RANDOM_MINOR	8
#define URANDOM_MINOR	9

static struct file *urandom;
static const struct cred *reseed_cred;

/*
 * Opened once, in the loader's context (root, with /dev), because a
 * worker's root may be the initramfs that has since been emptied. The
 * node must be the memory driver's random or urandom device, whatever its
 * path leads to: its open() installs random.c's own file operations.
 */
int sysgenid_reseed_init(char *why, size_t len)
{
	struct inode *inode;
	struct file *f;

	f = filp_open("/dev/urandom", O_RDONLY, 0);
	if (IS_ERR(f)) {
		snprintf(why, len, "cannot open /dev/urandom: %ld",
			 PTR_ERR(f));
		return PTR_ERR(f);
	}
	inode = file_inode(f);
	if (!S_ISCHR(inode->i_mode) || imajor(inode) != MEM_MAJOR ||
	    (iminor(inode) != URANDOM_MINOR && iminor(inode) != RANDOM_MINOR) ||
	    !f->f_op->unlocked_ioctl) {
		snprintf(why, len, "/dev/urandom is not the random device");
		filp_close(f, NULL);
		return -ENODEV;
	}
	reseed_cred = prepare_kernel_cred(&init_task);
	if (!reseed_cred) {
		snprintf(why, len, "cannot copy the kernel's credentials");
		filp_close(f, NULL);
		return -ENOMEM;
	}
	urandom = f;
	return 0;
}

/*
 * 0 once the crng has reseeded; -ENODATA if it is not seeded at all yet
 * (then the GUID already mixed into the pool is in its first seed); else
 * another error from the ioctl.
 */
int sysgenid_crng_reseed(void)
{
	const struct cred *old;
	long ret;

	if (!urandom)
		return -ENODEV;
	old = override_creds(reseed_cred);
	ret = vfs_ioctl(urandom, RNDRESEEDCRNG, 0);
	revert_creds(old);
	return ret;
}

void sysgenid_reseed_exit(void)
{
	if (!urandom)
		return;
	filp_close(urandom, NULL);
	urandom = NULL;
	put_cred(reseed_cred);
	reseed_cred = NULL;
}
