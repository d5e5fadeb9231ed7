/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the vmgenid tool's command line: the input, split at NUL bytes,
 * is argv[1..]; each argument is a heap block of its own size, so that the
 * address sanitizer sees any read past its end. Checked beyond "no crash":
 * the result is 0 or -EINVAL; an error comes with a message; a parse does
 * not modify argv; a watch command's CMD lies inside argv.
 */
#include <errno.h>
#include <string.h>

#include "options.h"
#include "fuzz.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 2], *copy[MAX_ARGS + 2];
	struct vmgenid_opts opts;
	size_t pos = 0;
	int argc = 1, ret;

	argv[0] = strdup("vmgenid");
	while (pos < size && argc <= MAX_ARGS) {
		const uint8_t *end = memchr(data + pos, 0, size - pos);
		size_t len = end ? (size_t)(end - (data + pos)) : size - pos;

		argv[argc] = malloc(len + 1);
		FUZZ_CHECK(argv[argc] != NULL);
		memcpy(argv[argc], data + pos, len);
		argv[argc][len] = '\0';
		argc++;
		pos += len + 1;
	}
	argv[argc] = NULL;
	for (int i = 0; i < argc; i++)
		copy[i] = strdup(argv[i]);

	memset(&opts, 0xa5, sizeof(opts));
	ret = vmgenid_parse_args(argc, argv, &opts);
	FUZZ_CHECK(ret == 0 || ret == -EINVAL);
	if (ret < 0) {
		FUZZ_CHECK(memchr(opts.error, 0, sizeof(opts.error)) != NULL);
		FUZZ_CHECK(opts.error[0] != '\0');
	} else {
		FUZZ_CHECK(opts.command == VMGENID_CMD_HELP ||
			   opts.command == VMGENID_CMD_VERSION ||
			   vmgenid_command_name(opts.command) != NULL);
		if (opts.command == VMGENID_CMD_WATCH) {
			FUZZ_CHECK(opts.cmd_argc >= 1);
			FUZZ_CHECK(opts.cmd_argv > argv &&
				   opts.cmd_argv + opts.cmd_argc <=
				   argv + argc);
		}
	}
	for (int i = 0; i < argc; i++) {
		FUZZ_CHECK(strcmp(copy[i], argv[i]) == 0);
		free(copy[i]);
		free(argv[i]);
	}
	return 0;
}
