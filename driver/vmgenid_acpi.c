// SPDX-License-Identifier: GPL-2.0
/*
 * The ACPI VM Generation ID device: where the hypervisor's GUID lives, and
 * whether the page that holds it may be shown to user space.
 *
 * The device is the one drivers/virt/vmgenid.c matches (_CID
 * "VM_GEN_COUNTER" or "VMGENCTR"; QEMU's _HID is "QEMUVGID"). Its ADDR
 * method returns a package of two integers, the low and high 32 bits of
 * the GUID's physical address; the kernel driver memremap()s it
 * MEMREMAP_WB, and so do we.
 *
 * QEMU (hw/acpi/vmgenid.c, include/hw/acpi/vmgenid.h) puts the GUID in
 * the fw_cfg blob "etc/vmgenid_guid": VMGENID_FW_CFG_SIZE (4096) bytes
 * that the firmware allocates page-aligned, zero but for the GUID at
 * VMGENID_GUID_OFFSET (40); ADDR returns the blob's address + 40. The
 * firmware places it in reserved memory (E820 reserved under SeaBIOS, ACPI
 * NVS under OVMF), never System RAM. QEMU writes a new GUID there in the
 * migration's post_load, before any vCPU runs, then raises the ACPI
 * notification.
 *
 * Where the kernel has a vmgenid driver, that driver owns the device and we
 * only look it up; where it has none, we bind it (mode "acpi").
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/acpi.h>
#include <linux/device.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/string.h>

#include "internal.h"

/* include/hw/acpi/vmgenid.h of QEMU */
#define QEMU_VMGENID_GUID_OFFSET	40

static const struct acpi_device_id sysgenid_vmgenid_ids[] = {
	{ "VMGENCTR", 0 },
	{ "VM_GEN_COUNTER", 0 },
	{ }
};

char sysgenid_vmgenid_why[128];

static void *vmgenid_map;		/* the GUID's page, or its 16 bytes */
static const u8 *vmgenid_guid;		/* the GUID in that mapping */
static phys_addr_t vmgenid_page_phys;
static unsigned int vmgenid_offset;	/* of the GUID in its page */
static char vmgenid_page_why[128];	/* empty: the page holds only it */
static struct acpi_device *vmgenid_bound;	/* mode "acpi" only */
static bool vmgenid_registered;		/* mode "acpi" only */
/* The GUID's page, claimed in the iomem tree while we may map it. */
static struct resource vmgenid_res;
static bool vmgenid_res_claimed;
/* Mode "notifier": the kernel's driver, pinned while we listen to it. */
static struct module *vmgenid_driver_owner;
static bool vmgenid_driver_pinned;

bool sysgenid_guid_present(void)
{
	return vmgenid_guid;
}

void sysgenid_guid_read(u8 guid[SYSGENID_GUID_SIZE])
{
	memcpy(guid, vmgenid_guid, SYSGENID_GUID_SIZE);
}

const char *sysgenid_guid_page_problem(void)
{
	return vmgenid_page_why[0] ? vmgenid_page_why : NULL;
}

phys_addr_t sysgenid_guid_page_phys(void)
{
	return vmgenid_page_phys;
}

unsigned int sysgenid_guid_offset(void)
{
	return vmgenid_offset;
}

static void vmgenid_release_page(void)
{
	if (vmgenid_res_claimed)
		remove_resource(&vmgenid_res);
	vmgenid_res_claimed = false;
}

/*
 * Claims the GUID's page exclusively, as a child of the resource that
 * holds it: that must be firmware's reserved or ACPI NVS memory (QEMU's
 * blob under SeaBIOS or OVMF), nested at any depth but under no System
 * RAM, and nothing else may lie inside the page. So no MMIO window, PCI
 * BAR, pmem, hole or RAM is ever mapped, and while the module is loaded
 * nothing else can claim the frame that every later mmap() maps. NULL, or
 * why not. The ancestors of our resource are firmware's, never removed.
 */
static const char *vmgenid_claim_page(void)
{
	struct resource *r;

	vmgenid_res = (struct resource) {
		.name = "sysgenid GUID page",
		.start = vmgenid_page_phys,
		.end = vmgenid_page_phys + PAGE_SIZE - 1,
		.flags = IORESOURCE_MEM | IORESOURCE_BUSY |
			 IORESOURCE_EXCLUSIVE,
	};
	if (insert_resource(&iomem_resource, &vmgenid_res))
		return "the GUID's page is claimed already or crosses a resource boundary";
	vmgenid_res_claimed = true;
	if (vmgenid_res.child)
		return "the GUID's page holds another resource";
	r = vmgenid_res.parent;
	if (r == &iomem_resource ||
	    (r->desc != IORES_DESC_RESERVED &&
	     r->desc != IORES_DESC_ACPI_NV_STORAGE))
		return "the GUID's page is not in reserved or ACPI NVS memory";
	for (; r && r != &iomem_resource; r = r->parent)
		if (r->flags & IORESOURCE_SYSRAM)
			return "the GUID's page is System RAM";
	return NULL;
}

/*
 * Whether the page may be mapped into user space: QEMU's layout, claimed
 * inside firmware's reserved memory, nothing in it but a non-zero GUID.
 * Anything else there (Firecracker and Hyper-V place the 16 bytes among
 * other firmware data) would be shown along with it.
 */
static void vmgenid_check_page(const u8 *page)
{
	const unsigned int end = vmgenid_offset + SYSGENID_GUID_SIZE;
	const char *where;
	const u8 *other;

	if (vmgenid_offset != QEMU_VMGENID_GUID_OFFSET) {
		snprintf(vmgenid_page_why, sizeof(vmgenid_page_why),
			 "the GUID is at offset %u of its page, not QEMU's %u",
			 vmgenid_offset, QEMU_VMGENID_GUID_OFFSET);
		return;
	}
	where = vmgenid_claim_page();
	if (where) {
		strscpy(vmgenid_page_why, where, sizeof(vmgenid_page_why));
		vmgenid_release_page();
		return;
	}
	if (!memchr_inv(page + vmgenid_offset, 0, SYSGENID_GUID_SIZE)) {
		strscpy(vmgenid_page_why, "the GUID is all zero",
			sizeof(vmgenid_page_why));
		vmgenid_release_page();
		return;
	}
	other = memchr_inv(page, 0, vmgenid_offset);
	if (!other)
		other = memchr_inv(page + end, 0, PAGE_SIZE - end);
	if (other) {
		snprintf(vmgenid_page_why, sizeof(vmgenid_page_why),
			 "the GUID's page holds other data (at byte %td)",
			 other - page);
		vmgenid_release_page();
	}
}

/* Evaluates ADDR and maps the GUID; 0, or an error and a reason. */
static int vmgenid_map_guid(struct acpi_device *adev)
{
	struct acpi_buffer parsed = { ACPI_ALLOCATE_BUFFER };
	union acpi_object *obj;
	phys_addr_t phys;
	acpi_status status;
	int ret = 0;

	status = acpi_evaluate_object(adev->handle, "ADDR", NULL, &parsed);
	if (ACPI_FAILURE(status)) {
		snprintf(sysgenid_vmgenid_why, sizeof(sysgenid_vmgenid_why),
			 "%s: cannot evaluate ADDR: %s", dev_name(&adev->dev),
			 acpi_format_exception(status));
		return -ENODEV;
	}
	obj = parsed.pointer;
	if (!obj || obj->type != ACPI_TYPE_PACKAGE || obj->package.count != 2 ||
	    obj->package.elements[0].type != ACPI_TYPE_INTEGER ||
	    obj->package.elements[1].type != ACPI_TYPE_INTEGER) {
		snprintf(sysgenid_vmgenid_why, sizeof(sysgenid_vmgenid_why),
			 "%s: ADDR is not a package of two integers",
			 dev_name(&adev->dev));
		ret = -EINVAL;
		goto out;
	}
	phys = (obj->package.elements[0].integer.value & 0xffffffffULL) |
	       (obj->package.elements[1].integer.value << 32);
	vmgenid_offset = offset_in_page(phys);
	vmgenid_page_phys = phys - vmgenid_offset;

	if (vmgenid_offset > PAGE_SIZE - SYSGENID_GUID_SIZE) {
		/* Across two pages: read it as the kernel driver does. */
		vmgenid_map = memremap(phys, SYSGENID_GUID_SIZE, MEMREMAP_WB);
		vmgenid_guid = vmgenid_map;
		strscpy(vmgenid_page_why, "the GUID spans two pages",
			sizeof(vmgenid_page_why));
	} else {
		vmgenid_map = memremap(vmgenid_page_phys, PAGE_SIZE,
				       MEMREMAP_WB);
		vmgenid_guid = vmgenid_map ? vmgenid_map + vmgenid_offset :
			       NULL;
		if (vmgenid_map)
			vmgenid_check_page(vmgenid_map);
	}
	if (!vmgenid_map) {
		/* No address: this text is shown in world-readable sysfs. */
		snprintf(sysgenid_vmgenid_why, sizeof(sysgenid_vmgenid_why),
			 "%s: cannot map the GUID", dev_name(&adev->dev));
		ret = -ENOMEM;
		goto out;
	}
	/* Before any notification can come: this boot's GUID is handled. */
	sysgenid_guid_change_init();
out:
	ACPI_FREE(parsed.pointer);
	return ret;
}

static void vmgenid_unmap_guid(void)
{
	vmgenid_release_page();
	if (vmgenid_map)
		memunmap(vmgenid_map);
	vmgenid_map = NULL;
	vmgenid_guid = NULL;
}

/* The first vmgenid ACPI device, with a reference; or NULL. */
static struct acpi_device *vmgenid_find_adev(void)
{
	const struct acpi_device_id *id;
	struct acpi_device *adev = NULL;

	for (id = sysgenid_vmgenid_ids; id->id[0] && !adev; id++)
		adev = acpi_dev_get_first_match_dev(id->id, NULL, -1);
	return adev;
}

static bool vmgenid_adev_exists(void)
{
	struct acpi_device *adev = vmgenid_find_adev();

	acpi_dev_put(adev);
	return adev;
}

/* Stops driver_for_each_device() at the first device: one is bound. */
static int vmgenid_any_device(struct device *dev, void *data)
{
	return 1;
}

/*
 * Whether the kernel's vmgenid driver is bound to a device now, so that
 * its vmfork notifications will come: CONFIG_VMGENID alone does not say
 * (a module not loaded or blacklisted, a failed probe, an unbind). 6.10+:
 * a platform driver (ACPI or device tree); up to 6.9: an ACPI driver bound
 * to the ACPI device itself. If so, its module is pinned until
 * sysgenid_vmgenid_driver_put(), so the notifications cannot stop by its
 * unloading (an unbind through sysfs by root still can).
 */
bool sysgenid_vmgenid_driver_bound(void)
{
	struct acpi_device *adev;
	struct device_driver *drv;

	drv = driver_find("vmgenid", &platform_bus_type);
	if (drv && try_module_get(drv->owner)) {
		if (driver_for_each_device(drv, NULL, NULL,
					   vmgenid_any_device) > 0) {
			vmgenid_driver_owner = drv->owner;
			vmgenid_driver_pinned = true;
			return true;
		}
		module_put(drv->owner);
	}

	adev = vmgenid_find_adev();
	if (!adev)
		return false;
	device_lock(&adev->dev);
	drv = adev->dev.driver;
	if (drv && !strcmp(drv->name, "vmgenid") &&
	    try_module_get(drv->owner)) {
		vmgenid_driver_owner = drv->owner;
		vmgenid_driver_pinned = true;
	}
	device_unlock(&adev->dev);
	acpi_dev_put(adev);
	return vmgenid_driver_pinned;
}

void sysgenid_vmgenid_driver_put(void)
{
	if (vmgenid_driver_pinned)
		module_put(vmgenid_driver_owner);
	vmgenid_driver_pinned = false;
}

/*
 * Mode "notifier": the kernel's driver has the device; find it only to
 * read the GUID. 0, or an error with the reason in sysgenid_vmgenid_why.
 */
int sysgenid_vmgenid_find(void)
{
	struct acpi_device *adev = vmgenid_find_adev();
	int ret;

	if (!adev) {
		strscpy(sysgenid_vmgenid_why,
			"no ACPI vmgenid device (VM_GEN_COUNTER, VMGENCTR)",
			sizeof(sysgenid_vmgenid_why));
		return -ENODEV;
	}
	ret = vmgenid_map_guid(adev);
	acpi_dev_put(adev);
	return ret;
}

/* Mode "acpi": a notification from the device. Process context. */
static void sysgenid_acpi_notify(struct acpi_device *adev, u32 event)
{
	sysgenid_guid_handle(SYSGENID_BY_ACPI);
}

static int sysgenid_acpi_add(struct acpi_device *adev)
{
	int ret;

	/* QEMU permits one vmgenid device; the counter follows one GUID. */
	if (vmgenid_bound)
		return -EBUSY;
	ret = vmgenid_map_guid(adev);
	if (ret) {
		pr_err("%s\n", sysgenid_vmgenid_why);
		return ret;
	}
	vmgenid_bound = adev;
	return 0;
}

static struct acpi_driver sysgenid_acpi_driver = {
	.name = "sysgenid",
	.ids = sysgenid_vmgenid_ids,
	.ops = {
		.add = sysgenid_acpi_add,
		/*
		 * No .remove (its type changed in 6.2): the device is not
		 * hot-pluggable, and unloading unmaps after unregistering.
		 */
		.notify = sysgenid_acpi_notify,
	},
	/*
	 * No unbind through sysfs: without .remove it would leave the device
	 * half bound and the counter deaf while "mode" still said acpi.
	 */
	.drv.suppress_bind_attrs = true,
#ifndef acpi_bus_register_driver
	/* Later kernels set it through the macro of that name. */
	.owner = THIS_MODULE,
#endif
};

/*
 * Mode "acpi": bind the device. Binding is synchronous, so on return we
 * know whether a device was there. 0, or -ENODEV with the reason.
 */
int sysgenid_vmgenid_bind(void)
{
	int ret = acpi_bus_register_driver(&sysgenid_acpi_driver);

	if (ret) {
		snprintf(sysgenid_vmgenid_why, sizeof(sysgenid_vmgenid_why),
			 "cannot register the ACPI driver: %d", ret);
		return ret;
	}
	vmgenid_registered = true;
	if (!vmgenid_bound) {
		sysgenid_vmgenid_release();
		if (!sysgenid_vmgenid_why[0] && vmgenid_adev_exists())
			strscpy(sysgenid_vmgenid_why,
				"the ACPI vmgenid device could not be bound (busy, or left in use by a driver unbound from it)",
				sizeof(sysgenid_vmgenid_why));
		else if (!sysgenid_vmgenid_why[0])
			strscpy(sysgenid_vmgenid_why,
				"no ACPI vmgenid device (VM_GEN_COUNTER, VMGENCTR)",
				sizeof(sysgenid_vmgenid_why));
		return -ENODEV;
	}
	pr_info("bound %s\n", dev_name(&vmgenid_bound->dev));
	return 0;
}

void sysgenid_vmgenid_release(void)
{
	if (vmgenid_registered)
		/* Waits for a notification in flight. */
		acpi_bus_unregister_driver(&sysgenid_acpi_driver);
	vmgenid_registered = false;
	vmgenid_bound = NULL;
	vmgenid_unmap_guid();
}
