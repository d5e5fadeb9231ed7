// SPDX-License-Identifier: GPL-2.0
/*
 * sysgenid: the SysGenID system generation counter on stock kernels.
 *
 * The counter moves when the VM generation ID changes, after the kernel's
 * RNG has reseeded. Two modes, chosen at load by what is bound:
 *
 *   "notifier"	the kernel's vmgenid driver is bound to the device: it
 *		reseeds and runs the vmfork notifier chain, on which we
 *		listen;
 *   "acpi"	it is not (Debian's cloud kernel has none; elsewhere it
 *		may be a module not loaded, blacklisted or unbound): we
 *		bind the ACPI device ourselves and do the kernel's part too.
 *
 * In both, where the module can read the GUID, SYSGENID_HANDLE_GUID_CHANGE
 * lets user space have a change handled at once, and the page holding the
 * GUID may be mapped read-only (parameter guid_page; see sysgenid(4)).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/namei.h>
#include <linux/random.h>
#include <linux/string.h>
#include <linux/version.h>

#include <asm/archrandom.h>

#include "internal.h"

/*
 * arch_get_random_seed_longs() and the RNG behind add_vmfork_randomness()
 * as this module knows them date from 6.0; tested on 6.1 and 6.12.
 */
#if KERNEL_VERSION(6, 0, 0) > LINUX_VERSION_CODE
#error "sysgenid needs Linux 6.0 or later (tested on 6.1 and 6.12)"
#endif

static int guid_page = -1;
module_param(guid_page, int, 0444);
MODULE_PARM_DESC(guid_page,
		 "map the vmgenid GUID page for user space: -1 auto (where the page holds only the GUID and the CPU has an RNG; default), 1 wherever the page holds only the GUID, 0 never");

enum sysgenid_mode sysgenid_mode;
bool sysgenid_guid_offered;
static char guid_page_state[192];
const char *sysgenid_guid_page_state = guid_page_state;

/*
 * Another provider of /dev/sysgenid: the in-kernel driver of Amazon Linux
 * (found by the symbol it exports, even before /sys is mounted) or any
 * other misc device of that name. Checking first avoids the sysfs
 * duplicate-name stack dump that misc_register() would cause.
 */
static const char *sysgenid_other_provider(void)
{
	struct path path;
	void *sym;

	sym = __symbol_get("sysgenid_bump_generation");
	if (sym) {
		symbol_put_addr(sym);
		return "the kernel's own sysgenid driver";
	}
	if (!kern_path("/sys/class/misc/" SYSGENID_DEVICE_NAME, 0, &path)) {
		path_put(&path);
		return "another misc device";
	}
	return NULL;
}

/*
 * Whether the crng's reseed draws from the CPU: extract_entropy() mixes
 * RDSEED or RDRAND output into every new key where they work. Then even a
 * sibling clone that knows the pre-fork pool and the GUID cannot predict
 * the key after the reseed, and the GUID's secrecy protects nothing.
 */
static bool sysgenid_cpu_has_rng(void)
{
	unsigned long v;
	bool ok;

	ok = arch_get_random_seed_longs(&v, 1) || arch_get_random_longs(&v, 1);
	memzero_explicit(&v, sizeof(v));
	return ok;
}

static const char no_cpu_rng[] =
	"no CPU RNG feeds the kernel's reseed (guid_page=1 offers the page anyway)";

/* Decides whether the GUID page is offered; says why not. */
static void sysgenid_decide_guid_page(const char *no_guid)
{
	const char *why = NULL;

	if (!guid_page)
		why = "disabled by guid_page=0";
	else if (!sysgenid_guid_present())
		why = no_guid;
	else if (sysgenid_guid_page_problem())
		why = sysgenid_guid_page_problem();
	else if (guid_page < 0 && !sysgenid_cpu_has_rng())
		why = no_cpu_rng;

	sysgenid_guid_offered = !why;
	if (why) {
		snprintf(guid_page_state, sizeof(guid_page_state),
			 "not offered: %s", why);
		pr_info("GUID page not offered: %s\n", why);
	} else {
		strscpy(guid_page_state, "offered", sizeof(guid_page_state));
		pr_info("GUID page offered (GUID at byte %u)\n",
			sysgenid_guid_offset());
	}
}

static int __init sysgenid_init(void)
{
	char no_reseed[96] = "";
	const char *other;
	int ret;

	if (guid_page < -1 || guid_page > 1) {
		pr_err("guid_page=%d: must be -1 (auto), 0 or 1; not loading\n",
		       guid_page);
		return -EINVAL;
	}
	other = sysgenid_other_provider();
	if (other) {
		pr_err("/dev/%s is already provided by %s; not loading\n",
		       SYSGENID_DEVICE_NAME, other);
		return -EEXIST;
	}
	/*
	 * The notifier functions are inline stubs without CONFIG_VMGENID;
	 * with it, the notifications come only from a bound driver.
	 */
	sysgenid_mode = IS_ENABLED(CONFIG_VMGENID) &&
			sysgenid_vmgenid_driver_bound() ?
			SYSGENID_MODE_NOTIFIER : SYSGENID_MODE_ACPI;

	ret = sysgenid_dev_init();
	if (ret) {
		sysgenid_vmgenid_driver_put();
		return ret;
	}
	sysgenid_reseed_init(no_reseed, sizeof(no_reseed));

	if (sysgenid_mode == SYSGENID_MODE_ACPI) {
		if (no_reseed[0]) {
			pr_err("no vmgenid driver is bound and the module cannot reseed the kernel RNG (%s); not loading\n",
			       no_reseed);
			ret = -ENODEV;
			goto err_reseed;
		}
		ret = sysgenid_vmgenid_bind();
		if (ret) {
			pr_err("no vmgenid driver is bound and %s: nothing would move the counter; not loading\n",
			       sysgenid_vmgenid_why);
			ret = -ENODEV;
			goto err_reseed;
		}
	} else if (!no_reseed[0] && sysgenid_vmgenid_find()) {
		pr_info("%s: the counter follows the kernel's notifier only\n",
			sysgenid_vmgenid_why);
	}
	sysgenid_decide_guid_page(no_reseed[0] ? no_reseed :
				  sysgenid_vmgenid_why);

	if (sysgenid_mode == SYSGENID_MODE_NOTIFIER) {
		ret = sysgenid_notifier_register();
		if (ret)
			goto err_vmgenid;
	}
	sysgenid_sci_path_init();
	ret = sysgenid_dev_register();
	if (ret)
		goto err_sci;
	sysgenid_test_hook_init();

	if (sysgenid_mode == SYSGENID_MODE_ACPI)
		pr_info("mode acpi: no vmgenid driver is bound; the module reseeds the kernel RNG on each GUID change, then bumps the counter\n");
	else
		pr_info("mode notifier: the kernel's vmgenid driver reseeds its RNG; the counter follows its vmfork notifier%s\n",
			sysgenid_guid_present() ?
			" or an earlier SYSGENID_HANDLE_GUID_CHANGE" : "");
	return 0;

err_sci:
	sysgenid_sci_path_exit();
	if (sysgenid_mode == SYSGENID_MODE_NOTIFIER)
		sysgenid_notifier_unregister();
err_vmgenid:
	sysgenid_vmgenid_release();
err_reseed:
	sysgenid_reseed_exit();
	sysgenid_dev_exit();
	sysgenid_vmgenid_driver_put();
	return ret;
}

static void __exit sysgenid_exit(void)
{
	sysgenid_test_hook_exit();
	sysgenid_dev_unregister();
	sysgenid_sci_path_exit();
	/* Both wait for a handler in flight, which may reseed and bump. */
	if (sysgenid_mode == SYSGENID_MODE_NOTIFIER)
		sysgenid_notifier_unregister();
	sysgenid_vmgenid_release();
	sysgenid_reseed_exit();
	sysgenid_dev_exit();
	sysgenid_vmgenid_driver_put();
}

module_init(sysgenid_init);
module_exit(sysgenid_exit);

MODULE_DESCRIPTION("SysGenID: VM generation counter for user space");
MODULE_LICENSE("GPL");
MODULE_VERSION("0.2.0");
