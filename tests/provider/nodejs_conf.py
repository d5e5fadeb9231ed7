#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Debian's Node.js (linked to the system's libssl3) with the provider's
documented system-wide setup: this system's openssl.cnf plus the .include
line. Node reads `nodejs_conf`, not `openssl_conf`; the .include file sets
it. Checked: node loads the provider and draws bytes; it fails closed (no
bytes, non-zero exit) when the configured module is missing; without the
.include it draws bytes with no provider (the control); with
--openssl-shared-config it still works; and, where strace is installed,
a generation step makes node's next draw reseed from the OS (a getrandom
call), which the control does not, and with vmgenid-node-preload.js so do
Math.random() and crypto.randomUUID().

Node comes from $VMGENID_TEST_NODEJS, else a node on PATH that links
libssl.so.3, else Debian's nodejs package, downloaded once with apt-get
into the cache (keyed by its version) and run from there, with its
/usr/share/nodejs overlaid in a private mount namespace (not with
VMGENID_TEST_OFFLINE=1). Exits 77, with the reason, where none of these
can run.
Usage: nodejs_conf.py CACHE INCLUDE_FILE PRELOAD_JS"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
TIMEOUT = 120   # a hang guard, never a measurement


def skip(why):
    print("SKIP:", why)
    sys.exit(SKIP)


def fail(why):
    print("FAIL:", why)
    sys.exit(1)


def run(argv, env=None, **kw):
    return subprocess.run(argv, env=env, capture_output=True, text=True,
                          errors="replace", timeout=TIMEOUT, **kw)


def links_libssl(path):
    try:
        out = run(["ldd", path]).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libssl.so.3" in out


def debian_nodejs(cache):
    """[argv prefix, LD_LIBRARY_PATH] for Debian's node, unpacked in the
    cache, or skip."""
    if os.environ.get("VMGENID_TEST_OFFLINE") == "1":
        skip("no node linked to libssl.so.3 here, and VMGENID_TEST_OFFLINE=1 "
             "forbids fetching Debian's nodejs")
    for tool in ("apt-cache", "apt-get", "dpkg-deb", "unshare", "mount"):
        if not shutil.which(tool):
            skip(f"no {tool}: cannot fetch and run Debian's nodejs")
    madison = run(["apt-cache", "madison", "nodejs"]).stdout
    versions = [v for v in re.findall(r"^\s*nodejs \| (\S+) \|", madison,
                                      re.M) if "nodesource" not in v]
    if not versions:
        skip("apt knows no Debian nodejs package")
    version = versions[0]
    root = os.path.join(cache, "debian-nodejs-" + version)
    stamp = os.path.join(root, ".complete")
    if not os.path.exists(stamp):
        deps = run(["apt-cache", "depends", "nodejs=" + version]).stdout
        libnode = re.findall(r"Depends: (libnode\d+)", deps)
        if not libnode:
            skip(f"nodejs {version} depends on no libnode package")
        more = run(["apt-cache", "depends",
                    f"{libnode[0]}={version}"]).stdout
        pkgs = ["nodejs=" + version, f"{libnode[0]}={version}"] + \
            sorted(set(re.findall(r"Depends: (node-[\w.+-]+)", more)))
        os.makedirs(cache, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            got = run(["apt-get", "download"] + pkgs, cwd=tmp)
            if got.returncode != 0:
                skip("apt-get download " + " ".join(pkgs) + ": " +
                     got.stderr.strip()[-300:])
            part = os.path.join(tmp, "root")
            for deb in sorted(os.listdir(tmp)):
                if deb.endswith(".deb"):
                    x = run(["dpkg-deb", "-x", os.path.join(tmp, deb), part])
                    if x.returncode != 0:
                        fail(f"dpkg-deb -x {deb}: {x.stderr}")
            if os.path.exists(root):
                shutil.rmtree(root)
            os.rename(part, root)
        with open(stamp, "w") as f:
            f.write(" ".join(pkgs) + "\n")
    node = os.path.join(root, "usr", "bin", "node")
    libdirs = [os.path.join(root, "usr", "lib", d)
               for d in os.listdir(os.path.join(root, "usr", "lib"))
               if os.path.isdir(os.path.join(root, "usr", "lib", d))]
    ld_path = ":".join(libdirs)
    missing = [l for l in run(["ldd", node], env=dict(
        os.environ, LD_LIBRARY_PATH=ld_path)).stdout.splitlines()
        if "not found" in l]
    if missing:
        skip("Debian's node needs libraries this system lacks: " +
             "; ".join(l.strip() for l in missing))
    # Its builtins live in /usr/share/nodejs: overlay the package's
    # /usr/share on the system's, in a private mount namespace (as root,
    # or in a user namespace).
    share = os.path.join(root, "usr", "share")
    script = ('mount -t overlay overlay -o "lowerdir=$0:/usr/share" '
              '/usr/share && exec "$@"')
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else \
        ["unshare", "-rm"]
    prefix = unshare + ["--", "sh", "-c", script, share, node]
    probe = run(prefix + ["-e", "console.log(process.versions.openssl)"],
                env=dict(os.environ, LD_LIBRARY_PATH=ld_path,
                         OPENSSL_CONF="/dev/null"))
    if probe.returncode != 0:
        skip("cannot run Debian's node from the cache (no mount "
             "namespace here?): " + probe.stderr.strip()[-300:])
    return prefix, ld_path


def find_node(cache):
    explicit = os.environ.get("VMGENID_TEST_NODEJS")
    if explicit:
        return [explicit], ""
    for name in ("nodejs", "node"):
        path = shutil.which(name)
        if path and links_libssl(os.path.realpath(path)):
            return [path], ""
    return debian_nodejs(cache)


MAPS = ("const maps = require('fs').readFileSync('/proc/self/maps', "
        "'utf8');")
DRAW = MAPS + ("const c = require('crypto');"
               "console.log(c.randomBytes(16).toString('hex'),"
               " /\\/vmgenid\\.so$/m.test(maps) ? 'provider' : 'none',"
               " c.randomUUID({disableEntropyCache: true}));")
STEP = ("const c = require('crypto'), fs = require('fs');"
        "const draw = () => DRAW;"
        "draw();"
        "const fd = fs.openSync(process.env.VMGENID_SOURCE.slice(5), 'r+');"
        "const b = Buffer.alloc(4); fs.readSync(fd, b, 0, 4, 0);"
        "b.writeUInt32LE(b.readUInt32LE(0) + 1);"
        "process.stderr.write('STEP\\n');"
        "fs.writeSync(fd, b, 0, 4, 0);"
        "console.log(draw());")


def step_script(draw):
    return STEP.replace("DRAW", draw)


def main():
    cache, include = sys.argv[1], sys.argv[2]
    preload = os.path.abspath(sys.argv[3])
    node, ld_path = find_node(cache)
    dirs = run(["openssl", "version", "-d"]).stdout if \
        shutil.which("openssl") else ""
    m = re.search(r'OPENSSLDIR: "(.*)"', dirs)
    system_cnf = os.path.join(m.group(1) if m else "/usr/lib/ssl",
                              "openssl.cnf")
    if not os.path.isfile(system_cnf):
        skip(f"no system openssl.cnf ({system_cnf})")
    with open(system_cnf) as f:
        system = f.read()
    with open(include) as f:
        inc = f.read()
    if not re.search(r"^module = .*\.so$", inc, re.M):
        fail(f"{include} names no module")

    with tempfile.TemporaryDirectory(prefix="vmgenid-node-") as tmp:
        missing_inc = os.path.join(tmp, "include-missing-module.cnf")
        with open(missing_inc, "w") as f:
            f.write(re.sub(r"^module = .*$",
                           "module = " + os.path.join(tmp, "no-such.so"),
                           inc, flags=re.M))
        confs = {}
        for name, extra in (("setup", ".include " + include),
                            ("missing", ".include " + missing_inc),
                            ("control", "")):
            confs[name] = os.path.join(tmp, name + ".cnf")
            with open(confs[name], "w") as f:
                f.write(system + "\n" + extra + "\n")
        gen = os.path.join(tmp, "generation")
        with open(gen, "wb") as f:
            f.write(b"\x01\x00\x00\x00")

        def node_run(conf, script, *flags, wrap=()):
            env = dict(os.environ, OPENSSL_CONF=confs[conf],
                       VMGENID_SOURCE="file:" + gen)
            if ld_path:
                env["LD_LIBRARY_PATH"] = ld_path
            return run(list(wrap) + node + list(flags) + ["-e", script],
                       env=env)

        version = node_run("control", "console.log(process.version, "
                           "process.versions.openssl)").stdout.strip()
        print("node:", " ".join(node), version)
        line = re.compile(r"^[0-9a-f]{32} (provider|none) "
                          r"[0-9a-f-]{36}$")

        r = node_run("setup", DRAW)
        out = r.stdout.strip()
        if r.returncode != 0 or not line.match(out) or \
                not out.split()[1] == "provider":
            fail(f"with the setup: exit {r.returncode}, {out!r}, "
                 f"{r.stderr.strip()[-500:]!r}")
        print("ok: with the .include line node loads the provider and draws")

        r = node_run("setup", DRAW, "--openssl-shared-config")
        if r.returncode != 0 or "provider" not in r.stdout:
            fail(f"--openssl-shared-config: exit {r.returncode}, "
                 f"{r.stdout!r} {r.stderr.strip()[-500:]!r}")
        print("ok: with --openssl-shared-config too")

        r = node_run("missing", DRAW)
        if r.returncode == 0 or re.search(r"[0-9a-f]{32}", r.stdout):
            fail(f"module missing: node exited {r.returncode} and printed "
                 f"{r.stdout!r}")
        print(f"ok: with the module missing node fails closed "
              f"(exit {r.returncode}, no bytes)")

        r = node_run("control", DRAW)
        out = r.stdout.strip()
        if r.returncode != 0 or not line.match(out) or \
                out.split()[1] != "none":
            fail(f"control: exit {r.returncode}, {out!r}")
        print("ok: control: without the .include node draws, no provider")

        if not shutil.which("strace"):
            print("SKIP (the rest): no strace, the reseed on a step is "
                  "not observed here")
            return 0
        def getrandoms_after_step(conf, draw, *flags):
            r = node_run(conf, step_script(draw), *flags,
                         wrap=["strace", "-f", "-qq", "-e",
                               "trace=getrandom,write"])
            after = r.stderr.split("STEP", 1)
            if r.returncode != 0 or len(after) != 2:
                fail(f"{conf} {draw} under strace: exit {r.returncode}, "
                     f"{r.stderr[-500:]!r}")
            return after[1].count("getrandom(")

        bytes_ = "c.randomBytes(16).toString('hex')"
        counts = {c: getrandoms_after_step(c, bytes_)
                  for c in ("setup", "control")}
        if counts["setup"] < 1 or counts["control"] != 0:
            fail(f"getrandom calls after a step: {counts}")
        print(f"ok: after a generation step node reseeds from the OS "
              f"(getrandom calls: {counts['setup']} with the setup, "
              f"{counts['control']} in the control)")

        # The preload: Math.random and randomUUID() draw through OpenSSL.
        for draw in ("Math.random()", "c.randomUUID()"):
            plain = getrandoms_after_step("setup", draw)
            pre = getrandoms_after_step("setup", draw, "--require", preload)
            if pre < 1 or plain != 0:
                fail(f"{draw} after a step: {pre} getrandom calls with "
                     f"the preload, {plain} without")
            print(f"ok: with the preload {draw} reseeds after a step "
                  f"({pre} getrandom calls; {plain} without it)")
        r = node_run("setup", "const c = require('crypto');"
                     "const v = Array.from({length: 1000}, Math.random);"
                     "console.log(v.every(x => x >= 0 && x < 1),"
                     " new Set(v).size, c.randomUUID(),"
                     " c.randomUUID({disableEntropyCache: false}))",
                     "--require", preload)
        m = re.fullmatch(r"true 1000 ([0-9a-f-]{36}) ([0-9a-f-]{36})\n",
                         r.stdout)
        if r.returncode != 0 or not m:
            fail(f"preload values: {r.stdout!r} {r.stderr[-300:]!r}")
        print("ok: the preload's Math.random is in [0, 1), UUIDs well formed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
