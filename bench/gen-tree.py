#!/usr/bin/env python3
"""gen-tree.py DIR MB: a deterministic tree shaped like a Kata payload under DIR/opt/kata: four
large "binaries" (system binaries concatenated, so they compress like real ones), a few
thousand small files from system text/binary files, config files and a symlink."""
import os, sys

root, mb = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300
D = os.path.join(root, "opt/kata")
for sub in ("bin", "share/kata-containers", "share/defaults/kata-containers"):
    os.makedirs(os.path.join(D, sub), exist_ok=True)

def files_under(dirs, lo, hi, limit):
    out = []
    for d in dirs:
        for dp, dn, fn in os.walk(d):
            dn.sort()
            for f in sorted(fn):
                p = os.path.join(dp, f)
                try:
                    if os.path.isfile(p) and not os.path.islink(p) and lo <= os.path.getsize(p) < hi:
                        out.append(p)
                except OSError:
                    pass
                if len(out) >= limit:
                    return out
    return out

big = mb * 80 // 100 // 4 * 1024 * 1024
pool = files_under(["/usr/bin", "/usr/lib/x86_64-linux-gnu"], 200_000, 50_000_000, 400)
for k, name in enumerate(["bin/qemu-system-x86_64", "bin/cloud-hypervisor",
                          "share/kata-containers/kata-containers.img",
                          "share/kata-containers/vmlinux-6.1"]):
    with open(os.path.join(D, name), "wb") as out:
        n, i = 0, k * 13
        while n < big:
            data = open(pool[i % len(pool)], "rb").read()[: big - n]
            out.write(data)
            n += len(data)
            i += 7
os.chmod(os.path.join(D, "bin/qemu-system-x86_64"), 0o755)
os.chmod(os.path.join(D, "bin/cloud-hypervisor"), 0o755)

small_budget = mb * 20 // 100 * 1024 * 1024
src = files_under(["/usr/share/doc", "/usr/share/perl5", "/usr/lib/python3", "/usr/share/locale"],
                  1, 60_000, 20000)
total = 0
for n, f in enumerate(src):
    if total >= small_budget:
        break
    dst = os.path.join(D, "share/kata-containers/firmware", str(n % 40))
    os.makedirs(dst, exist_ok=True)
    data = open(f, "rb").read()
    with open(os.path.join(dst, "f%d-%s" % (n, os.path.basename(f))), "wb") as out:
        out.write(data)
    total += len(data)
for s in ("qemu", "clh", "fc", "qemu-snp", "qemu-tdx"):
    with open(os.path.join(D, "share/defaults/kata-containers/configuration-%s.toml" % s), "w") as f:
        f.write('[hypervisor.%s]\npath = "/opt/kata/bin/qemu-system-x86_64"\n' % s)
os.symlink("vmlinux-6.1", os.path.join(D, "share/kata-containers/vmlinux.container"))
shim = os.path.join(D, "bin/containerd-shim-kata-v2")
with open(shim, "w") as f:
    f.write("#!/bin/sh\necho shim\n")
os.chmod(shim, 0o755)
