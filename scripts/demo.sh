#!/bin/sh
# SPDX-License-Identifier: MIT
# The snapshot-clone demo, for a fresh Debian 12 machine, as root:
#
#   scripts/demo.sh
#
# installs the build dependencies, builds libvmgenid with meson (in ./build),
# then boots a Debian kernel under QEMU with a VM generation ID device and
# our sysgenid module, runs an application that emits random tokens, saves
# the VM to a file mid-stream and restores two clones from that one file.
# It shows both clones side by side: an RNG without the library emits the
# same bytes in both (the problem), the RNG that libvmgenid reseeds emits
# different bytes (the fix), plus the generations and the timing figures.
# Then the control: the module limited to its counter (guid_page=0), four
# clones, where tokens committed in the first moments after the restore
# repeat between clones: the race that the first run closes.
set -eu
cd "$(dirname "$0")/.."
build=${DEMO_BUILD_DIR:-build}

say() {
	printf '\n== %s\n' "$*"
}

say "Installing dependencies (Debian packages)"
scripts/install-deps.sh

say "Building with meson in $build/"
if [ -d "$build" ]; then
	meson setup --reconfigure "$build" >/dev/null
else
	meson setup "$build" >/dev/null
fi
# The log keeps the static link's notes about glibc's NSS and dlopen
# (OpenSSL's unused network and engine code) out of the demo's output.
if ! meson compile -C "$build" >"$build/demo-build.log" 2>&1; then
	tail -n 40 "$build/demo-build.log" >&2
	echo "demo: build failed, see $build/demo-build.log" >&2
	exit 1
fi
app=$build/tests/vm/clone/clone_app
if [ ! -x "$app" ]; then
	echo "demo: $app was not built (is libssl-dev installed?)" >&2
	exit 1
fi
# An ordinary OpenSSL program, with and without the provider, where the
# provider was built.
openssl=
if [ -x "$build/tests/vm/clone/rand_tokens" ] &&
   [ -f "$build/provider/vmgenid.so" ]; then
	openssl="--openssl-prog $build/tests/vm/clone/rand_tokens
		--provider $build/provider/vmgenid.so
		--provider-check $build/provider/vmgenid-openssl-check"
fi

say "Snapshot and clone: boot, run the app, save once, restore twice"
cat <<'EOF'
The guest app draws three tokens per round: "libvmgenid" from a ChaCha20
RNG in its memory that a libvmgenid callback reseeds, "openssl" from
OpenSSL's RAND_bytes (its DRBG reseeded by a second callback), and
"control" from the same ChaCha20 code with the same seed but no library.
Each token is built between vmgen_txn_begin() and vmgen_txn_commit() and
printed only if the commit succeeds. Beside it, an OpenSSL program that
knows nothing of libvmgenid draws RAND_bytes() tokens, once with the
libvmgenid provider in its OpenSSL configuration and once without.
EOF
status=0
# $openssl is a list of words
# shellcheck disable=SC2086
python3 tests/vm/clone/snapshot_clone.py --show \
	--app "$app" $openssl \
	--driver driver \
	--workdir "$build/demo" || status=$?

case $status in
0)
	say "Result: the control RNG repeated itself in both clones;" \
	    "libvmgenid's did not, not even right after the restore."
	;;
77)
	say "Skipped: this machine cannot run the VM (see above)."
	exit 77
	;;
*)
	say "FAILED (exit $status); serial logs in $build/demo/"
	exit "$status"
	;;
esac

say "The control: the module limited to its counter (guid_page=0)"
cat <<'EOF'
Without the hypervisor's generation ID the library has only the counter,
which moves once the guest kernel has handled the hypervisor's
notification, tens to hundreds of milliseconds after the restore.
Tokens committed in between carry the old generation ("old-gen commits")
and repeat between clones ("race window"). Four clones this time:
EOF
python3 tests/vm/clone/snapshot_clone.py --brief --mode counter-only \
	--clones 4 --show --rows 4 \
	--app "$app" \
	--driver driver \
	--workdir "$build/demo-control" || status=$?
case $status in
0)
	say "Result: counter alone, tokens repeated right after the" \
	    "restore; with the generation ID read directly, none."
	;;
*)
	say "FAILED (exit $status); serial logs in $build/demo-control/"
	;;
esac
exit "$status"
