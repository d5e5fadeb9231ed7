/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the parts of the sysgenid module share. Each part is one file:
 *
 *	main.c		parameters, the choice of mode, load and unload
 *	counter_dev.c	/dev/sysgenid: the counter, its file operations
 *			and sysfs attributes
 *	vmgenid_acpi.c	the ACPI vmgenid device: where the GUID lives,
 *			whether its page may be offered, and (mode "acpi")
 *			binding the device
 *	crng_reseed.c	making the kernel's crng reseed now
 *	guid_change.c	handling a GUID change once: mix, reseed, bump
 *	sci_path.c	seeing a change in the SCI, reseeding before the
 *			interrupted task runs on
 *	test_hook.c	for the tests: the vmfork callback in hard IRQ
 */
#ifndef SYSGENID_INTERNAL_H
#define SYSGENID_INTERNAL_H

#include <linux/types.h>

/*
 * Quoted on purpose: a kernel that carries its own sysgenid driver also has
 * a <linux/sysgenid.h>, and the include path would pick that one first.
 */
#include "uapi/linux/sysgenid.h"

enum sysgenid_mode {
	/* The kernel has a vmgenid driver; we listen on its vmfork chain. */
	SYSGENID_MODE_NOTIFIER,
	/* It has none; we bind the ACPI device and reseed the kernel RNG. */
	SYSGENID_MODE_ACPI,
};

extern enum sysgenid_mode sysgenid_mode;

/* counter_dev.c */
u32 sysgenid_bump(u32 min_gen);
u32 sysgenid_generation(void);
int sysgenid_dev_init(void);
int sysgenid_dev_register(void);
void sysgenid_dev_unregister(void);
void sysgenid_dev_exit(void);

/*
 * vmgenid_acpi.c. The GUID is readable (sysgenid_guid_present()) once the
 * device is found and mapped; its page is offered to user space only where
 * sysgenid_guid_page_problem() was NULL and the guid_page parameter allows
 * (main.c decides; sysgenid_guid_offered holds the outcome).
 */
bool sysgenid_vmgenid_driver_bound(void);
void sysgenid_vmgenid_driver_put(void);
int sysgenid_vmgenid_find(void);
int sysgenid_vmgenid_bind(void);
void sysgenid_vmgenid_release(void);
bool sysgenid_guid_present(void);
void sysgenid_guid_read(u8 guid[SYSGENID_GUID_SIZE]);
const char *sysgenid_guid_page_problem(void);
phys_addr_t sysgenid_guid_page_phys(void);
unsigned int sysgenid_guid_offset(void);
/* Why the GUID cannot be read, when sysgenid_vmgenid_*() failed. */
extern char sysgenid_vmgenid_why[128];

/* main.c: the outcome of the guid_page decision, for mmap, ioctl, sysfs */
extern bool sysgenid_guid_offered;
extern const char *sysgenid_guid_page_state;

/* crng_reseed.c */
int sysgenid_reseed_init(char *why, size_t len);
int sysgenid_crng_reseed(void);
void sysgenid_reseed_exit(void);

/* guid_change.c */
enum sysgenid_cause {
	SYSGENID_BY_REQUEST,		/* SYSGENID_HANDLE_GUID_CHANGE */
	SYSGENID_BY_ACPI,		/* our ACPI notify handler */
	SYSGENID_BY_KERNEL,		/* the kernel's vmfork notifier */
	SYSGENID_BY_SCI,		/* sci_path.c's thread */
};

void sysgenid_guid_change_init(void);
int sysgenid_guid_handle(enum sysgenid_cause cause);
int sysgenid_notifier_register(void);
void sysgenid_notifier_unregister(void);
void sysgenid_notifier_call(void);
void sysgenid_guid_forget(void);
void sysgenid_fail_next_reseed(void);

/* test_hook.c */
void sysgenid_test_hook_init(void);
void sysgenid_test_hook_exit(void);

/* sci_path.c */
void sysgenid_sci_path_init(void);
void sysgenid_sci_path_exit(void);
int sysgenid_sci_path_show(char *buf, size_t len);

#endif /* SYSGENID_INTERNAL_H */
