#!/usr/bin/env python3
"""Pack a few files into a one-layer OCI image archive (an OCI image layout as a tar) that
`ctr -n k8s.io images import` reads: the sandboxed node's pause and busybox images
(tests/peers/node-up.sh), so no image comes from the internet. Deterministic: fixed mtimes,
uid/gid 0, sorted entries, no compression.

  oci-image.py --out X.tar --name registry.k8s.io/pause:3.10 --entrypoint /pause \
      --file /tmp/pause:/pause:0755 [--symlink /bin/sh:busybox] [--dir /tmp:1777]
"""
import argparse
import hashlib
import io
import json
import sys
import tarfile


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def add_blob(blobs, data):
    d = hashlib.sha256(data).hexdigest()
    blobs["sha256:" + d] = data
    return {"digest": "sha256:" + d, "size": len(data)}


def tar_bytes(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg, mode in sorted(entries, key=lambda e: e[0]):
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = arg
                t.addfile(ti)
            else:
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True, help="full reference, e.g. registry.k8s.io/pause:3.10")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:MODE]")
    p.add_argument("--symlink", action="append", default=[], help="DEST:TARGET")
    p.add_argument("--dir", action="append", default=[], help="DEST[:MODE]")
    a = p.parse_args()

    entries, dirs = [], {}
    def parents(path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]), 0o755)
    for f in a.file:
        src, dest, *mode = f.split(":")
        with open(src, "rb") as fh:
            entries.append((dest.strip("/"), "file", fh.read(), int(mode[0], 8) if mode else 0o755))
        parents(dest)
    for s in a.symlink:
        dest, target = s.split(":", 1)
        entries.append((dest.strip("/"), "symlink", target, 0o777))
        parents(dest)
    for d in a.dir:
        dest, *mode = d.split(":")
        dirs[dest.strip("/")] = int(mode[0], 8) if mode else 0o755
        parents(dest)
    entries += [(d, "dir", None, m) for d, m in dirs.items()]

    layer = tar_bytes(entries)
    blobs = {}
    layer_desc = add_blob(blobs, layer)
    layer_desc["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": a.entrypoint or None, "Cmd": a.cmd or None,
                   "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/tools/oci-image.py"}],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v is not None}
    cfg_desc = add_blob(blobs, canon(config))
    cfg_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg_desc, "layers": [layer_desc]}
    man_desc = add_blob(blobs, canon(manifest))
    man_desc["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    man_desc["annotations"] = {"io.containerd.image.name": a.name,
                               "org.opencontainers.image.ref.name": tag}
    man_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [man_desc]}

    files = [("oci-layout", "file", canon({"imageLayoutVersion": "1.0.0"}), 0o644),
             ("index.json", "file", canon(index), 0o644), ("blobs", "dir", None, 0o755),
             ("blobs/sha256", "dir", None, 0o755)]
    files += [("blobs/sha256/" + d.split(":")[1], "file", b, 0o644) for d, b in blobs.items()]
    with open(a.out, "wb") as fh:
        fh.write(tar_bytes(files))
    print(a.name, man_desc["digest"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
