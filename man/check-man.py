#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks for the man pages, run by the test suite.

  check-man.py coverage HEADER MANDIR [--installed PAGE...]
      Every function declared VMGEN_PUBLIC in HEADER has a section 3 page
      in MANDIR (a page or a .so link to one) that names it in NAME, gives
      its exact prototype in SYNOPSIS and says which release added it.
      Every page in MANDIR is in the --installed list, and every .so link
      resolves to a page in MANDIR.

  check-man.py lint MANDIR
      `man --warnings -l` prints nothing on stderr for every page (a .so
      link is checked through the page it names).  Exit 77 without man(1).

  check-man.py examples MANDIR INCDIR CC...
      The C in the EXAMPLE section of every page in sections 3 and 7
      compiles without warnings against INCDIR's <vmgenid.h>; the
      application's own helpers (my_*) are declared by a stub prelude.

The parsing is deliberately small: it reads the subset of man(7) that
these pages use, and fails loudly on anything it cannot read rather than
passing.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

PAGE_RE = re.compile(r'^[A-Za-z0-9_.-]+\.[1-8]$')
RELEASE_RE = re.compile(r'added\s+in\s+libvmgenid\s+\d+\.\d+\.\d+')


def fail(msgs):
    for m in msgs:
        print('FAIL: ' + m)
    print('%d problem(s)' % len(msgs))
    return 1


def public_functions(header):
    """{name: normalised prototype} of the VMGEN_PUBLIC functions."""
    with open(header, encoding='utf-8') as f:
        text = f.read()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'//[^\n]*', ' ', text)
    # Preprocessor lines (#define VMGEN_PUBLIC, #ifdef) are not declarations.
    text = '\n'.join(l for l in text.split('\n')
                     if not l.lstrip().startswith('#'))
    funcs = {}
    for m in re.finditer(r'\bVMGEN_PUBLIC\b([^;{}]*);', text):
        decl = m.group(1)
        name = re.search(r'\b(vmgen_\w+)\s*\(', decl)
        if name is None or name.group(1).startswith('vmgen__'):
            continue        # a variable, or the internal slow path
        funcs[name.group(1)] = normalise(decl + ';')
    return funcs


def normalise(proto):
    proto = re.sub(r'\s+', ' ', proto).strip()
    proto = re.sub(r'\s*([(),;])\s*', r'\1', proto)
    proto = re.sub(r',', ', ', proto)
    proto = re.sub(r'\*\s+', '*', proto)
    return proto


def roff_args(line):
    """Split the arguments of a macro line as troff does."""
    args, cur, i, quoted, have = [], '', 0, False, False
    while i < len(line):
        c = line[i]
        if quoted:
            if c == '"':
                if line[i + 1:i + 2] == '"':
                    cur += '"'
                    i += 1
                else:
                    quoted = False
            else:
                cur += c
        elif c == '"' and not have:
            quoted, have = True, True
        elif c in ' \t':
            if have:
                args.append(cur)
            cur, have = '', False
        else:
            cur += c
            have = True
        i += 1
    if have:
        args.append(cur)
    return args


def unescape(s):
    s = s.replace('\\-', '-').replace('\\e', '\\').replace('\\%', '')
    s = s.replace('\\&', '').replace('\\(aq', "'")
    return re.sub(r'\\f[BIRP]', '', s)


def section(src, name):
    m = re.search(r'^\.SH "?%s"?\s*\n(.*?)(?=^\.SH|\Z)' % name, src,
                  re.S | re.M)
    return m.group(1) if m else None


def synopsis_lines(src):
    """The SYNOPSIS as plain text, one output line per list entry."""
    body = section(src, 'SYNOPSIS')
    if body is None:
        return []
    out = []
    for line in body.split('\n'):
        if line.startswith('.'):
            m = re.match(r'\.(B|I|BI|IB|BR|RB|IR|RI)\s(.*)', line)
            if m is None:
                continue        # .nf, .fi, .PP
            args = roff_args(m.group(2))
            sep = ' ' if m.group(1) in ('B', 'I') else ''
            line = sep.join(args)
        out.append(unescape(line))
    # A prototype continues on the next line while its parenthesis is open.
    joined, cur = [], ''
    for line in out:
        cur = (cur + ' ' + line) if cur else line
        if cur.count('(') <= cur.count(')'):
            joined.append(cur)
            cur = ''
    if cur:
        joined.append(cur)
    return [normalise(l) for l in joined]


def read_page(mandir, fname):
    """(text, resolved file name) of a page, following one .so link."""
    path = os.path.join(mandir, fname)
    with open(path, encoding='utf-8') as f:
        src = f.read()
    m = re.match(r'\.so\s+(\S+)\s*$', src)
    if m is None:
        return src, fname, None
    target = os.path.basename(m.group(1))
    if not os.path.dirname(m.group(1)).startswith('man'):
        return None, fname, '.so %s: not of the form manN/PAGE' % m.group(1)
    tpath = os.path.join(mandir, target)
    if not os.path.isfile(tpath):
        return None, fname, '.so %s: no such page in man/' % m.group(1)
    with open(tpath, encoding='utf-8') as f:
        tsrc = f.read()
    if tsrc.startswith('.so'):
        return None, fname, '.so %s: a link to a link' % m.group(1)
    return tsrc, target, None


def coverage(header, mandir, installed):
    errs = []
    funcs = public_functions(header)
    if len(funcs) == 0:
        return fail(['%s: no VMGEN_PUBLIC function found' % header])
    pages = sorted(f for f in os.listdir(mandir) if PAGE_RE.match(f))
    for fname in pages:
        src, _, err = read_page(mandir, fname)
        if err:
            errs.append('%s: %s' % (fname, err))
        if installed is not None and fname not in installed:
            errs.append('%s: not installed by man/meson.build' % fname)
    for name, proto in sorted(funcs.items()):
        fname = name + '.3'
        if not os.path.isfile(os.path.join(mandir, fname)):
            errs.append('%s(): no page %s' % (name, fname))
            continue
        src, real, err = read_page(mandir, fname)
        if err:
            continue        # reported above
        names = section(src, 'NAME') or ''
        names = unescape(names).split(' - ')[0]
        if name not in [n.strip() for n in names.split(',')]:
            errs.append('%s(): %s does not name it in NAME' % (name, real))
        if proto not in synopsis_lines(src):
            errs.append('%s(): %s SYNOPSIS lacks the prototype "%s"'
                        % (name, real, proto))
        if not RELEASE_RE.search(unescape(src)):
            errs.append('%s(): %s does not say the release that added it'
                        % (name, real))
        for sec in ('RETURN VALUE', 'SEE ALSO'):
            if section(src, sec) is None:
                errs.append('%s(): %s has no %s section' % (name, real, sec))
    if errs:
        return fail(errs)
    print('ok: %d functions, %d pages' % (len(funcs), len(pages)))
    return 0


def lint(mandir):
    man = shutil.which('man')
    if man is None:
        print('SKIP: man(1) not found (Debian: apt-get install man-db)')
        return 77
    env = dict(os.environ, LC_ALL='C', MANWIDTH='80', MAN_KEEP_FORMATTING='')
    env.pop('MANPAGER', None)
    env.pop('PAGER', None)
    errs, n = [], 0
    for fname in sorted(f for f in os.listdir(mandir) if PAGE_RE.match(f)):
        _, real, err = read_page(mandir, fname)
        if err:
            errs.append('%s: %s' % (fname, err))
            continue
        if real != fname:
            continue        # a .so link: its target is checked on its own
        n += 1
        r = subprocess.run([man, '--warnings', '-l',
                            os.path.join(mandir, fname)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=env, timeout=60)
        msg = r.stderr.decode('utf-8', 'replace').strip()
        if r.returncode != 0 or msg:
            errs.append('%s: man exit %d: %s' % (fname, r.returncode, msg))
        elif len(r.stdout) == 0:
            errs.append('%s: renders to nothing' % fname)
    if errs:
        return fail(errs)
    print('ok: %d pages render without warnings' % n)
    return 0


# The examples call the application's own code; declare it.
EXAMPLE_PRELUDE = """#include <stddef.h>
struct my_rng { int state; };
extern struct my_rng my_rng;
int my_rng_reseed(void *rng);
void my_rng_bytes(void *buf, size_t len);
void my_rng_token(struct my_rng *rng, char *token);
int my_send(int sock, const void *buf, size_t len);
#line 1
"""


def examples(mandir, incdir, cc):
    errs, n = [], 0
    tmp = tempfile.mkdtemp(prefix='man-examples-')
    try:
        for fname in sorted(f for f in os.listdir(mandir) if PAGE_RE.match(f)):
            if not fname.endswith(('.3', '.7')):
                continue        # sections 1 and 4 show shell, not C
            src, real, err = read_page(mandir, fname)
            if err or real != fname:
                continue
            body = section(src, 'EXAMPLES?')
            if body is None:
                continue
            m = re.search(r'^\.EX\n(.*?)^\.EE', body, re.S | re.M)
            if m is None:
                errs.append('%s: EXAMPLE without .EX/.EE' % fname)
                continue
            code = m.group(1).replace('\\e', '\\').replace('\\-', '-')
            code = code.replace('\\&', '')
            cfile = os.path.join(tmp, fname.replace('.', '_') + '.c')
            with open(cfile, 'w', encoding='utf-8') as f:
                f.write(EXAMPLE_PRELUDE + code)
            n += 1
            r = subprocess.run(cc + ['-std=gnu11', '-Wall', '-Wextra',
                                     '-Wno-unused-parameter', '-Werror',
                                     '-I', incdir, '-c', cfile, '-o',
                                     os.devnull],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            if r.returncode != 0:
                errs.append('%s: EXAMPLE does not compile:\n%s'
                            % (fname, r.stdout.decode('utf-8', 'replace')))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if n == 0:
        errs.append('no EXAMPLE found in %s' % mandir)
    if errs:
        return fail(errs)
    print('ok: %d examples compile' % n)
    return 0


def main(argv):
    if len(argv) >= 4 and argv[1] == 'coverage':
        installed = None
        if '--installed' in argv:
            i = argv.index('--installed')
            installed = set(os.path.basename(p) for p in argv[i + 1:])
        return coverage(argv[2], argv[3], installed)
    if len(argv) == 3 and argv[1] == 'lint':
        return lint(argv[2])
    if len(argv) >= 5 and argv[1] == 'examples':
        return examples(argv[2], argv[3], argv[4:])
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
