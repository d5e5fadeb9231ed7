# SPDX-License-Identifier: MIT
"""Imported at interpreter start by vmgenid-reseed-random.pth when
VMGENID_RESEED_RANDOM=1 is in the environment: the `random` opt-in for
programs that are not changed (a service gets it with one Environment=
line). Asked for and impossible, it fails closed: the interpreter exits
with status 70 (EX_SOFTWARE) and a message, rather than run unprotected."""
import os
import sys

try:
    import vmgenid
    vmgenid.reseed_random_on_restore()
except BaseException as e:      # noqa: B036 -- fail closed, whatever it is
    sys.stderr.write("VMGENID_RESEED_RANDOM=1: cannot protect the random "
                     "module: %s: %s\n" % (type(e).__name__, e))
    sys.stderr.flush()
    os._exit(70)
