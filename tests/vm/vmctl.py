#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boot a Debian kernel under QEMU with a vmgenid device, run test programs
in it, save it to a file and restore clones from that file.

The command line, and the name the tests import: the code is in the
package vmharness/ next to this file, one module per concern; every name
of it is a name of this module (see vmharness/__init__.py). Standard
library only. See README.md next to this file for the guest conventions
and the command line.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
	sys.path.insert(0, _here)

import vmharness  # noqa: E402

vmharness._reexport(sys.modules[__name__])

if __name__ == '__main__':
	sys.exit(main())  # noqa: F821 (set by _reexport)
