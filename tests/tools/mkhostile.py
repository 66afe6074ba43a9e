#!/usr/bin/env python3
"""Write hostile kata-deploy payloads for the extraction tests (docs/PAYLOAD.md).

    mkhostile.py CASE OUT [OUTSIDE]
    mkhostile.py --tree DIR CASE OUT

--tree starts from a real tree (DIR holds opt/kata/, e.g. artifacts/demo/tree) packed as one
component "kata" with a shim per configuration-<shim>.toml, so the payload would install but
for the one thing the case adds (the integration tests install these).

CASE is one of the names in CASES below; OUT is the .tar.zst to write; OUTSIDE is a directory
the escapes aim at (default /tmp/kd-outside). Every payload starts with a manifest that passes
kd_payload_open() (except the *-manifest cases, which test its validation), followed by tar
entries in which one thing is wrong. Python's tarfile writes whatever we ask for, which is the
point: libarchive's writer and ours normalise too much to produce these.
"""
import hashlib
import io
import json
import subprocess
import sys
import tarfile

PREFIX = "opt/kata/"


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Payload:
    def __init__(self):
        # manifest files (relative to opt/kata/) and tar entries, kept separately so a case can
        # make them disagree.
        self.files = []
        self.entries = []

    def add(self, path, kind, mode=0o755, data=b"", target=None, manifest=True, tar=True,
            tar_path=None, tar_mode=None, tar_data=None, tar_target=None):
        if manifest:
            f = {"path": path, "type": kind, "mode": "%04o" % mode}
            if kind == "file":
                f["size"] = len(data)
                f["sha256"] = sha(data)
            if target is not None:
                f["target"] = target
            self.files.append(f)
        if tar:
            self.entries.append({
                "name": tar_path if tar_path is not None else PREFIX + path,
                "kind": kind,
                "mode": tar_mode if tar_mode is not None else mode,
                "data": tar_data if tar_data is not None else data,
                "target": tar_target if tar_target is not None else target,
            })

    def base(self):
        self.add("bin", "dir")
        self.add("bin/a", "file", 0o755, b"hello\n")
        self.add("share", "dir")
        self.add("share/b", "file", 0o644, b"data\n" * 3)

    def from_tree(self, top):
        """Every entry below top/opt/kata, modes normalised as the packer does."""
        import os
        root = os.path.join(top, PREFIX)
        self.shims = {}
        for d, dirs, files in sorted(os.walk(root)):
            dirs.sort()
            rel = os.path.relpath(d, root)
            if rel != ".":
                self.add(rel, "dir")
            for n in sorted(files + [x for x in dirs if os.path.islink(os.path.join(d, x))]):
                full = os.path.join(d, n)
                path = n if rel == "." else rel + "/" + n
                if os.path.islink(full):
                    self.add(path, "symlink", 0o777, target=os.readlink(full))
                else:
                    mode = 0o755 if os.stat(full).st_mode & 0o111 else 0o644
                    with open(full, "rb") as f:
                        self.add(path, "file", mode, f.read())
                    if n.startswith("configuration-") and n.endswith(".toml"):
                        self.shims[n[len("configuration-"):-len(".toml")]] = ["kata"]

    def remove(self, path):
        self.files = [f for f in self.files if f["path"] != path]
        self.entries = [e for e in self.entries if e["name"] != PREFIX + path]

    def manifest(self):
        return {
            "format": 1,
            "version": "1.0",
            "arch": "x86_64",
            "components": [{"name": "kata", "version": "1.0",
                            "files": sorted(self.files, key=lambda f: f["path"])}],
            "shims": getattr(self, "shims", None) or {"qemu": ["kata"]},
        }

    def write(self, out, corrupt_manifest=None):
        m = self.manifest()
        if corrupt_manifest:
            corrupt_manifest(m)
        mj = json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            ti = tarfile.TarInfo("kata-payload.json")
            ti.size = len(mj)
            ti.mode = 0o644
            t.addfile(ti, io.BytesIO(mj))
            # From a tree: format 1's order (sorted by path), as the packer writes it.
            entries = self.entries
            if getattr(self, "shims", None):
                entries = sorted(entries, key=lambda e: e["name"])
            for e in entries:
                ti = tarfile.TarInfo(e["name"])
                ti.mode = e["mode"]
                data = None
                if e["kind"] == "file":
                    ti.type = tarfile.REGTYPE
                    ti.size = len(e["data"])
                    data = io.BytesIO(e["data"])
                elif e["kind"] == "dir":
                    ti.type = tarfile.DIRTYPE
                elif e["kind"] == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = e["target"]
                elif e["kind"] == "hardlink":
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = e["target"]
                elif e["kind"] == "chr":
                    ti.type = tarfile.CHRTYPE
                    ti.devmajor, ti.devminor = 1, 3
                elif e["kind"] == "fifo":
                    ti.type = tarfile.FIFOTYPE
                t.addfile(ti, data)
        z = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), stdout=subprocess.PIPE,
                           check=True)
        with open(out, "wb") as f:
            f.write(z.stdout)


def case(p, name, outside, tree=None):
    if tree:
        p.from_tree(tree)
    else:
        p.base()
    if name == "chain-escape":
        # Issue 14: each link stays inside when read lexically; resolved through s (which
        # leads to the tree's root), x climbs seven levels from there: to the host's /etc.
        d = "d1"
        p.add(d, "dir")
        for i in range(2, 7):
            d += "/d%d" % i
            p.add(d, "dir")
        p.add(d + "/s", "symlink", 0o777, target="../../../../../..")
        p.add(d + "/x", "symlink", 0o777, target="s/../../../../../../../etc/shadow")
        if tree:
            img = "share/kata-containers/kata-containers.img"
            p.remove(img)
            p.add(img, "symlink", 0o777, target="../../" + d + "/x")
        else:
            p.add("share/img", "symlink", 0o777, target="../" + d + "/x")
    elif name == "writable-file":
        p.add("share/w", "file", 0o666, b"anyone may change me\n")
    elif name == "writable-exec":
        p.add("bin/w", "file", 0o777, b"#!/bin/sh\n")
    elif name == "writable-dir":
        p.add("wdir", "dir", 0o777)
        p.add("wdir/f", "file", 0o644, b"replaceable through its directory\n")
    elif name == "writable-tar":
        p.add("share/t", "file", 0o644, b"0644 in the manifest\n", tar_mode=0o666)
    elif name == "reserved-name":
        p.add(".#kd.staging-x", "dir")
        p.add(".#kd.staging-x/f", "file", 0o644, b"recover deletes this as debris\n")
    elif name == "reserved-name-deep":
        p.add("share/.#kd.1.tmp", "file", 0o644, b"a temporary name of ours\n")
    elif name == "config-symlink":
        # Issue 14 item 14: the shim's configuration is a link (inside the tree) to a file.
        cfg = "share/defaults/kata-containers/configuration-qemu.toml"
        data = next(e["data"] for e in p.entries if e["name"] == PREFIX + cfg)
        p.remove(cfg)
        p.add("share/defaults/kata-containers/qemu.toml", "file", 0o644, data)
        p.add(cfg, "symlink", 0o777, target="qemu.toml")
    elif name == "newline-name":
        # A tar entry whose name would print a line of its own and clear the terminal.
        p.add("bin/x", "file", 0o644, b"x\n", manifest=False,
              tar_path=PREFIX + "bin/evil\nkata-deploy: info: installed fine\x1b[2J")
    elif name == "group-writable-dir":
        p.add("gdir", "dir", 0o775)
    elif name == "dotdot":
        p.add("x", "file", 0o644, b"evil\n", manifest=False,
              tar_path=PREFIX + "../outside/dotdot")
    elif name == "absolute":
        p.add("x", "file", 0o644, b"evil\n", manifest=False, tar_path=outside + "/absolute")
    elif name == "outside-prefix":
        p.add("x", "file", 0o644, b"evil\n", manifest=False, tar_path="etc/evil")
    elif name == "symlink-escape-manifest":
        p.add("bin/esc", "symlink", 0o777, target="../../../outside")
    elif name == "symlink-escape":
        p.add("bin/esc", "symlink", 0o777, target="a", tar_target=outside)
    elif name == "hardlink-escape":
        p.add("bin/h", "hardlink", 0o755, target="bin/a", tar_target=outside + "/passwd")
    elif name == "hardlink-escape-manifest":
        p.add("bin/h", "hardlink", 0o755, target="../../etc/passwd")
    elif name == "symlink-then-file":
        # The manifest says lib/ is a directory; the tar makes it a symlink out of the tree and
        # then writes through it.
        p.add("lib", "dir", tar=False)
        p.add("lib", "symlink", 0o777, target=outside, manifest=False)
        p.add("lib/x", "file", 0o644, b"through the link\n")
    elif name == "symlink-then-file-manifest":
        p.add("lib", "symlink", 0o777, target="bin")
        p.add("lib/x", "file", 0o644, b"through the link\n")
    elif name == "device":
        p.add("bin/null", "chr", 0o666, manifest=False)
    elif name == "fifo":
        p.add("bin/fifo", "fifo", 0o644, manifest=False)
    elif name == "setuid":
        p.add("bin/su", "file", 0o755, b"root\n", tar_mode=0o4755)
    elif name == "setuid-manifest":
        p.add("bin/su", "file", 0o4755, b"root\n")
    elif name == "size-mismatch":
        p.add("bin/big", "file", 0o755, b"small\n", tar_data=b"much larger than that\n" * 10)
    elif name == "digest-mismatch":
        p.add("bin/c", "file", 0o755, b"expected\n", tar_data=b"tampered\n")
    elif name == "not-in-manifest":
        p.add("bin/extra", "file", 0o755, b"extra\n", manifest=False)
    elif name == "missing":
        p.add("share/c", "file", 0o644, b"never shipped\n", tar=False)
    elif name == "duplicate":
        p.add("bin/d", "file", 0o644, b"one\n")
        p.entries.append(dict(p.entries[-1], data=b"two\n"))
    elif name == "type-mismatch":
        p.add("bin/t", "file", 0o644, b"file\n", manifest=True, tar=False)
        p.add("bin/t", "dir", 0o755, manifest=False)
    else:
        raise SystemExit("mkhostile: unknown case %r (known: %s)" % (name, ", ".join(CASES)))


CASES = ["chain-escape", "writable-file", "writable-exec", "writable-dir",
         "group-writable-dir", "writable-tar", "reserved-name", "reserved-name-deep", "config-symlink", "newline-name", "dotdot", "absolute", "outside-prefix", "symlink-escape-manifest", "symlink-escape",
         "hardlink-escape", "hardlink-escape-manifest", "symlink-then-file",
         "symlink-then-file-manifest", "device", "fifo", "setuid", "setuid-manifest",
         "size-mismatch", "digest-mismatch", "not-in-manifest", "missing", "duplicate",
         "type-mismatch"]


def main():
    args = sys.argv[1:]
    tree = None
    if args[:1] == ["--tree"] and len(args) == 4:
        tree, args = args[1], args[2:]
    if len(args) not in (2, 3):
        raise SystemExit(__doc__)
    p = Payload()
    case(p, args[0], args[2] if len(args) == 3 else "/tmp/kd-outside", tree)
    p.write(args[1])


if __name__ == "__main__":
    main()
