#!/usr/bin/env python3
"""payload-v1.py IN OUT [--no-shims]: rewrite a payload (any format) as format 1, the layout
kata-deploy wrote before format 2: one zstd stream, the manifest first ("format":1, no blob
fields), then every entry sorted by path. Tests use it to check that old payloads still install;
--no-shims also empties the manifest's "shims" (a payload install must refuse)."""
import io, json, subprocess, sys, tarfile


def main():
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and sys.argv[3] != "--no-shims"):
        raise SystemExit(__doc__)
    raw = subprocess.run(["zstd", "-q", "-dc", sys.argv[1]], check=True,
                         stdout=subprocess.PIPE).stdout
    src = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    members = src.getmembers()
    manifest = json.loads(src.extractfile(members[0]).read())
    manifest["format"] = 1
    for c in manifest["components"]:
        for k in ("blob_sha256", "blob_size", "tar_size"):
            c.pop(k, None)
    if len(sys.argv) == 4:
        manifest["shims"] = {}
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    out = io.BytesIO()
    dst = tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT)
    info = tarfile.TarInfo("kata-payload.json")
    info.size, info.mode, info.mtime = len(text), 0o644, members[0].mtime
    dst.addfile(info, io.BytesIO(text))
    for m in sorted(members[1:], key=lambda m: m.name.encode()):
        dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    dst.close()
    subprocess.run(["zstd", "-q", "-f", "-o", sys.argv[2]], input=out.getvalue(), check=True)


if __name__ == "__main__":
    main()
