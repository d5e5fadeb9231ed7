/* SPDX-License-Identifier: MIT */
/*
 * The harness's own guest program: proves that a VM restored by vmctl.py
 * really is a new VM generation, without our module or library, so that a
 * failure in the module tests cannot be the harness's fault.
 *
 *   selftest KO PHASE
 *
 * before-save (and abi): the vmgenid ACPI device is there and, where the
 * kernel has a vmgenid driver, bound to it (where it has none, as Debian's
 * cloud kernel, unbound); read the generation ID from guest memory; keep it
 * and a marker in /tmp (memory that the snapshot carries).
 * after-restore: the marker survived; the generation ID in memory changed;
 * where the kernel has the driver, it logged its VM-fork reseed, and a
 * getrandom() token is printed for the host to compare between clones (two
 * clones of one snapshot print the same token unless the kernel reseeded).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define STATE_FILE "/tmp/vmctl-selftest.state"
#define FORK_LINE "crng reseeded due to virtual machine fork"
/* QEMU's device: _HID "QEMUVGID", _CID "VM_Gen_Counter" */
#define VMGENID_ACPI "/sys/bus/acpi/devices/QEMUVGID:00"
/*
 * The kernel's driver, drivers/virt/vmgenid.c: an ACPI driver through
 * 6.9, bound to the ACPI device itself; from 6.10 a platform driver, bound
 * to the platform device that ACPI enumerates for it (the ACPI device's
 * physical_node). Neither exists where the kernel has no driver.
 */
#define DRIVER_ACPI "/sys/bus/acpi/drivers/vmgenid"
#define DRIVER_PLATFORM "/sys/bus/platform/drivers/vmgenid"
#define ACPI_TABLES "/sys/firmware/acpi/tables"
/*
 * QEMU's vmgenid SSDT begins with Name (VGIA, <dword>), which the firmware
 * patches to the address of the GUID's page; the GUID is 40 bytes into it
 * (QEMU hw/acpi/vmgenid.c, VMGENID_GUID_OFFSET; the ADDR method adds it).
 */
#define VGIA_AML "\x08VGIA\x0c"
#define VGIA_AML_LEN 6
#define GUID_OFFSET 40
#define GUID_SIZE 16
/*
 * The notifier runs within about a second of the restore; be generous.
 * VMCTL_SELFTEST_RESEED_WAIT_MS (kernel command line) shortens the wait in
 * the negative run, where the reseed must not come.
 */
#define RESEED_WAIT_MS 60000

static int passed, failed, num;

static void check(int ok, const char *name)
{
	printf("%sok %d - %s\n", ok ? "" : "not ", ++num, name);
	if (ok)
		passed++;
	else
		failed++;
}

static void skip(const char *name, const char *why)
{
	printf("ok %d - %s # SKIP %s\n", ++num, name, why);
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/*
 * Read /dev/kmsg from the start of the ring until FORK_LINE shows up or
 * the timeout passes; waiting with poll() on new records, not sleeping.
 */
static int wait_kmsg(const char *needle, int timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	char rec[8192];
	int fd, found = 0;

	fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (!found) {
		ssize_t n = read(fd, rec, sizeof(rec) - 1);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long left;

		if (n > 0) {
			rec[n] = '\0';
			found = strstr(rec, needle) != NULL;
			continue;
		}
		if (n < 0 && errno == EPIPE)	/* overwritten records */
			continue;
		if (n < 0 && errno != EAGAIN)
			break;
		left = deadline - now_ms();
		if (left <= 0)
			break;
		poll(&pfd, 1, (int)left);
	}
	close(fd);
	return found;
}

static int kernel_has_driver(void)
{
	return access(DRIVER_ACPI, F_OK) == 0 ||
	       access(DRIVER_PLATFORM, F_OK) == 0;
}

/* Name of the driver bound to the sysfs device dev, "" if none. */
static const char *bound_driver(const char *dev)
{
	static char target[PATH_MAX];
	char link[PATH_MAX];
	ssize_t n;
	char *slash;

	snprintf(link, sizeof(link), "%s/driver", dev);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return "";
	target[n] = '\0';
	slash = strrchr(target, '/');
	return slash ? slash + 1 : target;
}

/* The vmgenid device is bound to the kernel's driver named vmgenid. */
static int bound_to_vmgenid(void)
{
	if (!strcmp(bound_driver(VMGENID_ACPI), "vmgenid")) {
		printf("# vmgenid binds the ACPI device (ACPI driver)\n");
		return 1;
	}
	if (!strcmp(bound_driver(VMGENID_ACPI "/physical_node"),
		    "vmgenid")) {
		printf("# vmgenid binds its platform device (platform driver)\n");
		return 1;
	}
	return 0;
}

static int unbound(void)
{
	return !*bound_driver(VMGENID_ACPI) &&
	       !*bound_driver(VMGENID_ACPI "/physical_node");
}

/* The GUID page's address from the SSDT holding VGIA; 0 if not found. */
static uint32_t vgia_address(void)
{
	static unsigned char tab[65536];
	uint32_t addr = 0;
	struct dirent *de;
	DIR *d;

	d = opendir(ACPI_TABLES);
	if (!d)
		return 0;
	while (!addr && (de = readdir(d))) {
		char path[PATH_MAX];
		ssize_t n, i;
		int fd;

		if (strncmp(de->d_name, "SSDT", 4))
			continue;
		snprintf(path, sizeof(path), ACPI_TABLES "/%s", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, tab, sizeof(tab));
		close(fd);
		for (i = 0; i + VGIA_AML_LEN + 4 <= n; i++) {
			const unsigned char *v = tab + i + VGIA_AML_LEN;

			if (memcmp(tab + i, VGIA_AML, VGIA_AML_LEN))
				continue;
			addr = v[0] | v[1] << 8 | v[2] << 16 |
			       (uint32_t)v[3] << 24;
			break;
		}
	}
	closedir(d);
	return addr;
}

/*
 * The generation ID as the hypervisor wrote it, read from guest memory
 * through /dev/mem; no driver involved, so it works on every kernel. The
 * firmware reserves the page above the RAM the kernel maps: x86's
 * STRICT_DEVMEM lets it be mapped (it is no System RAM), but read() only
 * serves addresses below high_memory. 0 or a negative errno.
 */
static int read_guid(unsigned char guid[GUID_SIZE])
{
	uint32_t addr = vgia_address() + GUID_OFFSET;
	long pagesz = sysconf(_SC_PAGESIZE);
	off_t base = addr & ~(pagesz - 1);
	unsigned char *map;
	int fd;

	if (addr == GUID_OFFSET)
		return -ENOENT;
	fd = open("/dev/mem", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* two pages: the GUID may cross a page boundary */
	map = mmap(NULL, 2 * pagesz, PROT_READ, MAP_SHARED, fd, base);
	close(fd);
	if (map == MAP_FAILED)
		return -errno;
	memcpy(guid, map + (addr - base), GUID_SIZE);
	munmap(map, 2 * pagesz);
	return 0;
}

static void print_hex(const char *label, const unsigned char *b, int n)
{
	int i;

	printf("%s", label);
	for (i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

/* As QEMU's guid= takes it: the first three fields are little-endian. */
static void print_guid(const unsigned char *g)
{
	printf("# generation ID in memory: %02x%02x%02x%02x-%02x%02x-%02x%02x-"
	       "%02x%02x-%02x%02x%02x%02x%02x%02x\n", g[3], g[2], g[1], g[0],
	       g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13],
	       g[14], g[15]);
}

static void before_save(void)
{
	unsigned char tok[16], guid[GUID_SIZE];
	int err;
	FILE *f;

	check(access(VMGENID_ACPI, F_OK) == 0,
	      "vmgenid ACPI device QEMUVGID:00 present");
	if (kernel_has_driver())
		check(bound_to_vmgenid(),
		      "vmgenid ACPI device bound to the kernel driver");
	else
		check(unbound(),
		      "vmgenid ACPI device unbound: the kernel has no vmgenid driver");
	err = read_guid(guid);
	if (err)
		printf("# reading the GUID: %s\n", strerror(-err));
	else
		print_guid(guid);
	check(!err, "generation ID read from guest memory");
	check(access("/dev/ttyS1", F_OK) == 0, "control port /dev/ttyS1");
	check(getrandom(tok, sizeof(tok), GRND_NONBLOCK) == sizeof(tok),
	      "kernel RNG ready before the save");
	f = fopen(STATE_FILE, "w");
	check(f && fprintf(f, "saved\n") > 0 &&
	      fwrite(guid, 1, GUID_SIZE, f) == GUID_SIZE && fclose(f) == 0,
	      "marker and generation ID written to tmpfs");
}

static void after_restore(void)
{
	const char *wait = getenv("VMCTL_SELFTEST_RESEED_WAIT_MS");
	int wait_ms = wait ? atoi(wait) : RESEED_WAIT_MS;
	unsigned char tok[16], old[GUID_SIZE], guid[GUID_SIZE];
	char buf[16] = "";
	int have_old, err;
	FILE *f;

	f = fopen(STATE_FILE, "r");
	have_old = f && fgets(buf, sizeof(buf), f) &&
		   !strcmp(buf, "saved\n") &&
		   fread(old, 1, GUID_SIZE, f) == GUID_SIZE;
	check(have_old, "marker from before the save survived the restore");
	if (f)
		fclose(f);

	/* written by the hypervisor before the guest runs again */
	err = read_guid(guid);
	if (err)
		printf("# reading the GUID: %s\n", strerror(-err));
	else
		print_guid(guid);
	check(have_old && !err && memcmp(old, guid, GUID_SIZE),
	      "generation ID in memory changed by the restore");
	if (!err)	/* each clone gets its own */
		print_hex("vmctl-distinct: ", guid, GUID_SIZE);

	if (!kernel_has_driver()) {
		/* nothing in the kernel reseeds: tokens may be equal */
		skip("VM-fork reseed of the kernel RNG",
		     "the kernel has no vmgenid driver");
		return;
	}
	check(wait_kmsg(FORK_LINE, wait_ms) == 1,
	      "kernel reseeded its RNG for the VM fork");
	if (getrandom(tok, sizeof(tok), 0) == sizeof(tok))
		/* the host requires these to differ between clones */
		print_hex("vmctl-distinct: ", tok, sizeof(tok));
}

int main(int argc, char **argv)
{
	const char *ph = argc > 2 ? argv[2] : "abi";

	if (!strcmp(ph, "abi") || !strcmp(ph, "before-save")) {
		before_save();
	} else if (!strcmp(ph, "after-restore")) {
		after_restore();
	} else {
		fprintf(stderr, "usage: %s KO abi|before-save|after-restore\n",
			argv[0]);
		return 2;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
