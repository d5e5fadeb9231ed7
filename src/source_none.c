/* SPDX-License-Identifier: MIT */
/* No VM source: a counter that never moves; forks still count. */
#include "vmgenid-internal.h"

static const uint32_t zero_counter;

static int none_open(const char *path, bool explicit_path)
{
	int ret = vmgen_source_adopt(&vmgen_none_ops, VMGEN_SOURCE_NONE, -1,
				     NULL);

	if (ret < 0)
		return ret;
	vmgen_g.src_is_chr = false;
	vmgen_g.notify = VMGEN_NOTIFY_NONE;
	vmgen_describe_u32(&zero_counter);
	return 0;
}

static int none_race_free(const char **reason)
{
	*reason = vmgen_g.watching ?
		  "none, waiting for a source: the machine has a VM device but no source yet (module not loaded?); only forks are seen until it appears" :
		  "no generation source: only forks are seen";
	return 0;
}

const struct vmgen_source_ops vmgen_none_ops = {
	.name = "none",
	.open = none_open,
	.read = vmgen_read_u32,
	.race_free = none_race_free,
	.close = vmgen_source_release,
};
