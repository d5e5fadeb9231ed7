// SPDX-License-Identifier: GPL-2.0
/*
 * The interrupt-time path: the kernel's crng reseeded before the task that
 * the resume interrupted returns to user space.
 *
 * Without it, after a restore the crng reseeds only once the ACPI event has
 * gone through the kernel's slow path: SCI -> GPE dispatch -> the _E05
 * method queued to kacpid and interpreted -> Notify queued to kacpi_notify
 * -> the vmgenid driver (or our ACPI mode) -> crng_reseed(). Every task
 * keeps drawing from the pre-restore crng meanwhile (measured: 3-7 repeated
 * getrandom() values across clones with a drawer that sleeps, ~140 with a
 * busy one, for up to 15 ms under TCG).
 *
 * QEMU (hw/acpi/vmgenid.c, vmgenid_update_guest() from the migration's
 * post_load) writes the new GUID, then acpi_send_event() sets the GPE's
 * status bit and raises the SCI level, all before any vCPU runs; the
 * vmgenid device is created after the board's interrupt controllers, so
 * its post_load runs after theirs and nothing loaded later clears the
 * interrupt. The SCI is then pending when the vCPU resumes and is taken at
 * the first instruction with interrupts enabled: measured (sysfs sci_path,
 * "interrupted=" and "at="), the local timer's interrupt, whose vector
 * ranks higher, comes first and the SCI arrives as soon as irq_exit()
 * enables interrupts for its softirqs (handle_softirqs+0x7d), before any
 * user instruction in every clone (tests/vm/kernel_rng/README.md).
 *
 * ACPICA runs every handler installed with acpi_install_sci_handler() on
 * each SCI, after its own fixed-event and GPE detection, under the raw
 * spinlock acpi_gbl_gpe_lock (drivers/acpi/acpica/evsci.c,
 * acpi_ev_sci_dispatch()): in hard-IRQ context on 6.1 (acpi_irq() from
 * request_irq()), in the SCI's interrupt thread ("irq/9-acpi", SCHED_FIFO)
 * on 6.12, where drivers/acpi/osl.c requests it with
 * request_threaded_irq(..., IRQF_ONESHOT). Either way nothing here may
 * sleep. It is additive: the GPE keeps its _E05 method, the kernel's
 * driver still gets its Notify and runs the vmfork notifier chain
 * (WireGuard & co). Our handler only compares the mapped GUID with the
 * last one it saw (16 bytes, no lock: SCI handlers are serialised by
 * acpi_gbl_gpe_lock) and, if it moved, wakes a SCHED_FIFO kernel thread.
 * That thread runs sysgenid_guid_handle() (mix, reseed through
 * RNDRESEEDCRNG, bump once: the same "handled" state as every other path).
 *
 * Why that is before the interrupted task draws again: waking an RT task
 * sets TIF_NEED_RESCHED on the CFS task that runs (check_preempt_curr());
 * on 6.12 the hard IRQ wakes the SCI's thread, an RT task too, which wakes
 * ours: both run before any CFS task.
 *   - Interrupt in user mode: exit_to_user_mode_loop() schedules before the
 *     return to user space; the FIFO thread runs (and reseeds) first.
 *   - Interrupt in the idle loop: it schedules at once; the FIFO thread
 *     beats any CFS task woken by the same resume (a timer, the RTC).
 *   - Interrupt in kernel mode (a syscall): Debian's kernels are
 *     PREEMPT_DYNAMIC in voluntary mode, so the thread runs at the task's
 *     next cond_resched() or its return to user space. A getrandom() in
 *     flight at the save may still return bytes of the old crng: bytes
 *     produced before the save (identical in every clone whatever the
 *     guest does), or produced after it if the call had not yet reached
 *     crng_make_state(). That is at most one call per task that was inside
 *     the kernel at the save; closing it needs full preemption or a hook
 *     in random.c. Any other syscall returns to user space through the
 *     same resched check, so no later call of that task is affected.
 *   - Other vCPUs: they run on until something interrupts them; the thread
 *     runs on one CPU. See sysgenid(4) for what remains there.
 *
 * Where the conditions do not hold (no GUID to compare, a hardware-reduced
 * ACPI platform whose events come through a GED interrupt rather than the
 * SCI, as Firecracker's, or a vmgenid device that is not QEMU's, whose
 * event path we have not checked) the path is not installed: the module
 * behaves as before, says why in the log and in the sysfs attribute
 * sci_path.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/acpi.h>
#include <linux/atomic.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>
#include <linux/string.h>

#include <asm/irq_regs.h>

#include "internal.h"

static bool sci_path = true;
module_param(sci_path, bool, 0444);
MODULE_PARM_DESC(sci_path,
		 "reseed the kernel RNG from the SCI of a VM restore, before the interrupted task runs again (default 1; 0 is the control)");

/* The QEMU device whose event is \_GPE._E05 -> Notify(VGEN, 0x80). */
#define QEMU_VMGENID_HID	"QEMUVGID"
#define QEMU_VMGENID_GPE	"\\_GPE._E05"

static char sci_state[160] = "not installed";
static struct task_struct *sci_thread;
static bool sci_installed;
/* The GUID the SCI handler last woke the thread for; only it touches it. */
static u8 sci_seen[SYSGENID_GUID_SIZE];
static atomic_t sci_kick = ATOMIC_INIT(0);
static atomic_t sci_count = ATOMIC_INIT(0);
static atomic_t sci_changes = ATOMIC_INIT(0);
static ktime_t sci_changed_at;		/* written before the wake-up */
static ktime_t sci_started_at;		/* by the thread, for sysfs */
static ktime_t sci_handled_at;
/*
 * What the change's SCI interrupted: 'u'ser, 'k'ernel, 'i'dle, or 't' when
 * the handler runs in the SCI's interrupt thread; and who.
 */
static char sci_interrupted = '-';
static char sci_interrupted_comm[TASK_COMM_LEN] = "-";
static unsigned long sci_interrupted_ip;

/* Under acpi_gbl_gpe_lock: a compare, and a wake-up if new. */
static bool sci_guid_moved(void)
{
	u8 now[SYSGENID_GUID_SIZE];
	bool moved;

	sysgenid_guid_read(now);
	moved = memcmp(now, sci_seen, sizeof(now));
	if (moved)
		memcpy(sci_seen, now, sizeof(now));
	return moved;
}

static u32 sysgenid_sci(void *context)
{
	atomic_inc(&sci_count);
	if (sci_guid_moved()) {
		struct pt_regs *regs = get_irq_regs();

		sci_changed_at = ktime_get();
		if (!in_hardirq() || !regs)
			regs = NULL;
		sci_interrupted = !regs ? 't' : is_idle_task(current) ? 'i' :
				  user_mode(regs) ? 'u' : 'k';
		memcpy(sci_interrupted_comm, current->comm, TASK_COMM_LEN);
		sci_interrupted_ip = regs && !user_mode(regs) ?
				     instruction_pointer(regs) : 0;
		atomic_inc(&sci_changes);
		atomic_set(&sci_kick, 1);
		wake_up_process(sci_thread);
	}
	/* Not ours to acknowledge: the GPE code clears what it handled. */
	return ACPI_INTERRUPT_NOT_HANDLED;
}

static int sysgenid_sci_thread(void *data)
{
	for (;;) {
		ktime_t at, done;
		int ret;

		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop()) {
			__set_current_state(TASK_RUNNING);
			return 0;
		}
		if (!atomic_xchg(&sci_kick, 0)) {
			schedule();
			continue;
		}
		__set_current_state(TASK_RUNNING);
		WRITE_ONCE(sci_started_at, ktime_get());
		at = READ_ONCE(sci_changed_at);
		ret = sysgenid_guid_handle(SYSGENID_BY_SCI);
		done = ktime_get();
		WRITE_ONCE(sci_handled_at, done);
		if (ret)
			pr_err("SCI path: GUID change not handled (%d); the ACPI path will retry\n",
			       ret);
		else
			pr_info("SCI path: GUID change seen in the SCI, handled %lld us later\n",
				ktime_us_delta(done, at));
	}
}

/*
 * The cost an SCI that is not a GUID change pays: the compare, measured
 * on the handler's own code at load (the SCI itself is the kernel's).
 */
static void sci_measure_cost(void)
{
	const int n = 100000;
	ktime_t t0;
	s64 ns;
	int i;

	t0 = ktime_get();
	for (i = 0; i < n; i++)
		if (sci_guid_moved())
			break;
	ns = ktime_to_ns(ktime_sub(ktime_get(), t0));
	pr_info("SCI path: %lld.%02lld ns per SCI that is not a GUID change (%d compares)\n",
		div_s64(ns, n), div_s64(ns * 100, n) % 100, n);
}

/* Why the path cannot work here, or NULL. */
static const char *sci_path_problem(void)
{
	acpi_handle gpe;

	if (!sci_path)
		return "off (sci_path=0)";
	if (!sysgenid_guid_present())
		return "not used: the module cannot read the GUID";
	if (acpi_gbl_FADT.flags & ACPI_FADT_HW_REDUCED)
		return "not used: hardware-reduced ACPI (events by GED, not SCI)";
	if (!acpi_dev_present(QEMU_VMGENID_HID, NULL, -1))
		return "not used: no " QEMU_VMGENID_HID " device: unknown event path";
	if (ACPI_FAILURE(acpi_get_handle(NULL, QEMU_VMGENID_GPE, &gpe)))
		return "not used: no " QEMU_VMGENID_GPE " method: unknown GPE";
	return NULL;
}

/* After the GUID is mapped; never fails the load: it degrades. */
void sysgenid_sci_path_init(void)
{
	const char *why = sci_path_problem();
	struct task_struct *t;
	acpi_status status;

	if (why) {
		strscpy(sci_state, why, sizeof(sci_state));
		pr_info("SCI path %s; the kernel RNG reseeds when the ACPI notification is handled\n",
			why);
		return;
	}
	t = kthread_create(sysgenid_sci_thread, NULL, "sysgenid-sci");
	if (IS_ERR(t)) {
		snprintf(sci_state, sizeof(sci_state),
			 "not used: cannot create its thread (%ld)", PTR_ERR(t));
		pr_err("SCI path %s\n", sci_state);
		return;
	}
	sched_set_fifo(t);
	sci_thread = t;
	wake_up_process(t);

	sysgenid_guid_read(sci_seen);
	sci_measure_cost();
	status = acpi_install_sci_handler(sysgenid_sci, NULL);
	if (ACPI_FAILURE(status)) {
		snprintf(sci_state, sizeof(sci_state),
			 "not used: cannot install the SCI handler: %s",
			 acpi_format_exception(status));
		pr_err("SCI path %s\n", sci_state);
		kthread_stop(sci_thread);
		sci_thread = NULL;
		return;
	}
	sci_installed = true;
	/* A change between the read above and now is seen at its SCI. */
	strscpy(sci_state, "active", sizeof(sci_state));
	pr_info("SCI path active: a GUID change seen in the SCI reseeds the kernel RNG from a SCHED_FIFO thread\n");
}

/* Before the GUID is unmapped. */
void sysgenid_sci_path_exit(void)
{
	if (sci_installed)
		/* Under acpi_gbl_gpe_lock: no handler call is in flight after. */
		acpi_remove_sci_handler(sysgenid_sci);
	sci_installed = false;
	if (sci_thread)
		kthread_stop(sci_thread);
	sci_thread = NULL;
}

/*
 * For sysfs: the state, then what the handler has seen, with the
 * CLOCK_MONOTONIC times (ns) of the last change's SCI, of the end of its
 * handling (the reseed) and of the thread's start, and what the SCI
 * interrupted (user mode, kernel mode, the idle task; the task's name),
 * for the kernel-RNG window test.
 */
int sysgenid_sci_path_show(char *buf, size_t len)
{
	int n;

	n = scnprintf(buf, len, "%s\nscis=%d changes=%d ", sci_state,
		      atomic_read(&sci_count), atomic_read(&sci_changes));
	n += scnprintf(buf + n, len - n,
		       "sci_at=%lld handled_at=%lld started_at=%lld interrupted=%c:%.*s at=%pS\n",
		       ktime_to_ns(READ_ONCE(sci_changed_at)),
		       ktime_to_ns(READ_ONCE(sci_handled_at)),
		       ktime_to_ns(READ_ONCE(sci_started_at)),
		       sci_interrupted, TASK_COMM_LEN, sci_interrupted_comm,
		       (void *)sci_interrupted_ip);
	return n;
}
