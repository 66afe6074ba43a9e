#!/usr/bin/env python3
"""Upstream Kata release tarballs in miniature, for tests/integration/test-import.sh.

  mkupstream.py tree 3|4 DIR      DIR/opt/kata laid out as kata-static-3.x / 4.x
  mkupstream.py tar DIR OUT       tar DIR the way kata-deploy-merge-builds.sh does
                                  ("./opt/kata/...", GNU format, owner 0); OUT ends in
                                  .tar.zst (zstd CLI) or .tar.xz
  mkupstream.py hostile CASE OUT  a small upstream-shaped .tar.zst with one hostile entry

The layout follows upstream's build scripts (tools/packaging/kata-deploy/local-build/
kata-deploy-binaries.sh, tools/packaging/static-build/, tools/packaging/kernel/build-kernel.sh,
tools/packaging/guest-image/build_image.sh, src/runtime{,-rs}/Makefile): binaries are tiny
scripts, and each configuration-<shim>.toml has the sections and path keys of upstream's
templates (src/runtime/config/*.toml.in, src/runtime-rs/config/*.toml.in).
"""
import io
import os
import subprocess
import sys
import tarfile

P = "/opt/kata"
KV = "6.12.47-170"


def write(root, rel, text, mode=0o644):
    path = os.path.join(root, "opt/kata", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def link(root, rel, target):
    path = os.path.join(root, "opt/kata", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def binary(root, rel, what):
    write(root, rel, "#!/bin/sh\necho '%s'\n" % what, 0o755)


def hypervisor(section, **keys):
    """A [hypervisor.X] table with upstream's key names, plus the tables every template has."""
    out = ["# Copyright (c) 2017-2026 Intel Corporation and the Kata Containers authors",
           "# XXX: WARNING: this file is auto-generated.", "",
           "[hypervisor.%s]" % section]
    for k, v in keys.items():
        if isinstance(v, list):
            out.append("%s = [%s]" % (k, ", ".join('"%s"' % x for x in v)))
        elif isinstance(v, bool):
            out.append("%s = %s" % (k, "true" if v else "false"))
        elif isinstance(v, int):
            out.append("%s = %d" % (k, v))
        elif isinstance(v, tuple):  # an array of tables, [[hypervisor.X.<name>]]
            for t in v[1]:
                out.append("")
                out.append("[[hypervisor.%s.%s]]" % (section, v[0]))
                out += ['%s = "%s"' % kv for kv in t.items()]
        else:
            out.append('%s = "%s"' % (k, v))
    out += ["", "[factory]", "enable_template = false", "",
            "[agent.kata]", "dial_timeout = 45", "", "[runtime]",
            'internetworking_model = "tcfilter"', "sandbox_cgroup_only = false",
            "static_sandbox_resource_mgmt = false", 'vfio_mode = "guest-kernel"',
            "disable_guest_empty_dir = false", 'kubelet_root_dir = "/var/lib/kubelet"', ""]
    return "\n".join(out)


def qemu_like(path, kernel, image=None, initrd=None, firmware="", shared_fs="virtio-fs",
              extensions=None, valid=None):
    keys = {"path": path, "kernel": kernel}
    if image:
        keys["image"] = image
    if initrd:
        keys["initrd"] = initrd
    keys.update(machine_type="q35", rootfs_type="ext4", firmware=firmware, firmware_volume="",
                valid_hypervisor_paths=valid or [path], kernel_params="",
                default_vcpus=1, default_memory=2048, shared_fs=shared_fs,
                virtio_fs_daemon=P + "/libexec/virtiofsd",
                valid_virtio_fs_daemon_paths=[P + "/libexec/virtiofsd"],
                virtio_fs_cache="auto", block_device_driver="virtio-scsi",
                valid_entropy_sources=["/dev/urandom", "/dev/random", ""],
                vhost_user_store_path="/var/run/kata-containers/vhost-user",
                valid_vhost_user_store_paths=["/var/run/kata-containers/vhost-user"],
                enable_annotations=["enable_iommu", "virtio_fs_extra_args", "kernel_params"])
    if extensions:
        keys["guest_extension_images"] = ("guest_extension_images", extensions)
    return keys


def tree(version, root):
    share = "share/kata-containers/"
    write(root, "VERSION", version + "\n")
    write(root, "versions.yaml", "assets:\n  kernel:\n    version: v6.12.47\n")
    # shim-v2-go
    for b in ("containerd-shim-kata-v2", "kata-runtime", "kata-monitor"):
        binary(root, "bin/" + b, "%s %s (Go)" % (b, version))
    binary(root, "bin/kata-collect-data.sh", "collect")
    write(root, "share/bash-completion/completions/kata-runtime", "complete -F _kata kata-runtime\n")
    # hypervisors, virtiofsd, nydus, firmware
    binary(root, "bin/qemu-system-x86_64", "QEMU emulator version 10.2.0 (kata-static)")
    for f in ("bios-256k.bin", "efi-virtio.rom", "kvmvapic.bin", "linuxboot_dma.bin"):
        write(root, "share/kata-qemu/qemu/" + f, "firmware %s\n" % f)
    binary(root, "libexec/kata-qemu/qemu-bridge-helper", "bridge helper")
    binary(root, "bin/cloud-hypervisor", "cloud-hypervisor v48.0")
    binary(root, "bin/firecracker", "Firecracker v1.12.1")
    binary(root, "bin/jailer", "Jailer v1.12.1")
    binary(root, "libexec/virtiofsd", "virtiofsd 1.13.2")
    binary(root, "libexec/nydusd", "nydusd v2.3.6")
    write(root, "share/ovmf/OVMF.fd", "OVMF\n")
    write(root, "share/ovmf/AMDSEV.fd", "AMDSEV\n")
    # kernels: build-kernel.sh install_kata()
    for suffix in ("", "-debug", "-confidential") + (("-dragonball-experimental",) if version >= "4" else ()):
        for kind in ("vmlinux", "vmlinuz"):
            write(root, share + "%s-%s%s" % (kind, KV, suffix), "%s %s%s\n" % (kind, KV, suffix))
            link(root, share + "%s%s.container" % (kind, suffix), "%s-%s%s" % (kind, KV, suffix))
        write(root, share + "config-%s%s" % (KV, suffix), "CONFIG_VIRTIO=y\n")
        write(root, share + "System.map-%s%s" % (KV, suffix), "ffffffff81000000 T _text\n")
    # guest images: build_image.sh (kata-containers*.img -> the versioned artifact)
    write(root, share + "kata-ubuntu-noble.image", "rootfs image\n")
    link(root, share + "kata-containers.img", "kata-ubuntu-noble.image")
    write(root, share + "kata-alpine-3.22.initrd", "initrd\n")
    link(root, share + "kata-containers-initrd.img", "kata-alpine-3.22.initrd")
    write(root, share + "kata-ubuntu-noble-confidential.image", "confidential image\n")
    link(root, share + "kata-containers-confidential.img", "kata-ubuntu-noble-confidential.image")
    write(root, share + "kata-alpine-3.22-confidential.initrd", "confidential initrd\n")
    link(root, share + "kata-containers-initrd-confidential.img", "kata-alpine-3.22-confidential.initrd")
    write(root, share + "root_hash_confidential.txt", "root_hash=abc\n")

    go = "share/defaults/kata-containers/"
    img, ker = P + "/" + share + "kata-containers.img", P + "/" + share + "vmlinux.container"
    configs = {
        "qemu": hypervisor("qemu", **qemu_like(P + "/bin/qemu-system-x86_64", ker, image=img)),
        "clh": hypervisor("clh", path=P + "/bin/cloud-hypervisor", kernel=ker, image=img,
                          valid_hypervisor_paths=[P + "/bin/cloud-hypervisor"],
                          virtio_fs_daemon=P + "/libexec/virtiofsd",
                          valid_virtio_fs_daemon_paths=[P + "/libexec/virtiofsd"],
                          shared_fs="virtio-fs", default_memory=2048),
        "fc": hypervisor("firecracker", path=P + "/bin/firecracker", jailer_path=P + "/bin/jailer",
                         kernel=ker, image=img,
                         valid_hypervisor_paths=[P + "/bin/firecracker"],
                         valid_jailer_paths=[P + "/bin/jailer"], default_memory=2048),
        "qemu-snp": hypervisor("qemu", **qemu_like(
            P + "/bin/qemu-system-x86_64", P + "/" + share + "vmlinuz-confidential.container",
            initrd=P + "/" + share + "kata-containers-initrd-confidential.img",
            firmware=P + "/share/ovmf/AMDSEV.fd", shared_fs="none")),
        "remote": hypervisor("remote", remote_hypervisor_socket="/run/peerpod/hypervisor.sock",
                             remote_hypervisor_timeout=600, default_memory=2048),
        # upstream ships it, but not stratovirt itself: import leaves it out
        "stratovirt": hypervisor("stratovirt", path=P + "/bin/stratovirt", kernel=ker, image=img,
                                 valid_hypervisor_paths=[P + "/bin/stratovirt"]),
    }
    for shim, text in configs.items():
        write(root, go + "configuration-%s.toml" % shim, text)
    link(root, go + "configuration.toml", "configuration-qemu.toml")
    if version < "4":
        return

    # 4.x: runtime-rs (src/runtime-rs/Makefile: BINDIR runtime-rs/bin, CONFDIR .../runtime-rs)
    binary(root, "runtime-rs/bin/containerd-shim-kata-v2", "containerd-shim-kata-v2 %s (runtime-rs)" % version)
    binary(root, "bin/qemu-system-x86_64-no-shared-fs", "QEMU emulator version 10.2.0 (kata-static-no-shared-fs)")
    write(root, "share/kata-qemu-no-shared-fs/qemu/bios-256k.bin", "firmware no-shared-fs\n")
    write(root, share + "kata-ubuntu-noble-coco-extension.image", "coco extension\n")
    link(root, share + "kata-containers-coco-extension.img", "kata-ubuntu-noble-coco-extension.image")
    write(root, share + "root_hash_coco-extension.txt", "root_hash=def\n")
    write(root, share + "root_hash_base.txt", "root_hash=012\n")
    rs = go + "runtime-rs/"
    rconfigs = {
        "qemu-runtime-rs": hypervisor("qemu", **qemu_like(P + "/bin/qemu-system-x86_64", ker, image=img)),
        "clh-runtime-rs": hypervisor("clh", path=P + "/bin/cloud-hypervisor", kernel=ker, image=img,
                                     valid_hypervisor_paths=[P + "/bin/cloud-hypervisor"],
                                     virtio_fs_daemon=P + "/libexec/virtiofsd", shared_fs="virtio-fs"),
        "dragonball": hypervisor("dragonball",
                                 kernel=P + "/" + share + "vmlinux-dragonball-experimental.container",
                                 image=img, default_memory=2048, shared_fs="inline-virtio-fs"),
        "qemu-coco-dev-runtime-rs": hypervisor("qemu", **qemu_like(
            P + "/bin/qemu-system-x86_64-no-shared-fs", P + "/" + share + "vmlinuz-confidential.container",
            image=img, shared_fs="none",
            valid=[P + "/bin/qemu-system-x86_64-no-shared-fs"],
            extensions=[{"name": "coco",
                         "path": P + "/" + share + "kata-containers-coco-extension.img",
                         "verity_params": "root_hash=def"}])),
        # runtime-rs installs these too; upstream's kata-deploy has no such shims
        "rs-fc": hypervisor("firecracker", path=P + "/bin/firecracker", kernel=ker, image=img),
        "remote": hypervisor("remote", remote_hypervisor_socket="/run/peerpod/hypervisor.sock"),
    }
    for shim, text in rconfigs.items():
        write(root, rs + "configuration-%s.toml" % shim, text)
    link(root, rs + "configuration.toml", "configuration-qemu-runtime-rs.toml")


def add(tf, name, data=b"", mode=0o644, kind=tarfile.REGTYPE, linkname="", size=None):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.linkname, ti.mtime = kind, mode, linkname, 1700000000
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if kind == tarfile.REGTYPE:
        ti.size = len(data) if size is None else size
        if size is not None:  # a header that lies: no data follows
            tf.fileobj.write(ti.tobuf(tf.format, tf.encoding, tf.errors))
            tf.offset += tarfile.BLOCKSIZE
            return
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)


def compress(raw, out):
    if out.endswith(".tar.xz"):
        import lzma
        data = lzma.compress(raw, preset=1)
    else:
        data = subprocess.run(["zstd", "-q", "-3", "-c"], input=raw, stdout=subprocess.PIPE,
                              check=True).stdout
    with open(out, "wb") as f:
        f.write(data)


def tar_tree(src, out):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        def f(ti):
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            return ti
        tf.add(src, arcname=".", recursive=False, filter=f)
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames.sort()
            for n in sorted(dirnames) + sorted(filenames):
                p = os.path.join(dirpath, n)
                tf.add(p, arcname="./" + os.path.relpath(p, src), recursive=False, filter=f)
    compress(buf.getvalue(), out)


def hostile(case, out):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        if case == "payload":
            add(tf, "kata-payload.json", b"{}")
        add(tf, "./", kind=tarfile.DIRTYPE, mode=0o755)
        add(tf, "./opt/", kind=tarfile.DIRTYPE, mode=0o755)
        add(tf, "./opt/kata/", kind=tarfile.DIRTYPE, mode=0o755)
        add(tf, "./opt/kata/bin/containerd-shim-kata-v2", b"#!/bin/sh\n", 0o755)
        add(tf, "./opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
            hypervisor("qemu", path=P + "/bin/containerd-shim-kata-v2").encode())
        k = "./opt/kata/"
        if case == "outside":
            add(tf, "./etc/cron.d/evil", b"* * * * * root evil\n")
        elif case == "dotdot":
            add(tf, k + "../../etc/evil", b"evil\n")
        elif case == "absolute":
            add(tf, "/opt/kata/bin/evil", b"evil\n", 0o755)
        elif case == "abs-symlink":
            add(tf, k + "bin/evil", kind=tarfile.SYMTYPE, linkname="/etc/shadow")
        elif case == "escape-symlink":
            add(tf, k + "share/evil", kind=tarfile.SYMTYPE, linkname="../../../etc")
        elif case == "through-symlink":
            add(tf, k + "lnk", kind=tarfile.SYMTYPE, linkname="bin")
            add(tf, k + "lnk/evil", b"evil\n")
        elif case == "hardlink-escape":
            add(tf, k + "bin/evil", kind=tarfile.LNKTYPE, linkname="etc/passwd")
        elif case == "setuid":
            add(tf, k + "bin/evil", b"#!/bin/sh\n", 0o4755)
        elif case == "device":
            add(tf, k + "dev/evil", kind=tarfile.CHRTYPE, mode=0o666)
        elif case == "fifo":
            add(tf, k + "evil", kind=tarfile.FIFOTYPE)
        elif case == "huge":
            add(tf, k + "share/kata-containers/evil.img", size=5 << 30)
        elif case == "duplicate":
            add(tf, k + "bin/containerd-shim-kata-v2", b"#!/bin/sh\necho replaced\n", 0o755)
        elif case != "payload":
            sys.exit("unknown case " + case)
    compress(buf.getvalue(), out)


if __name__ == "__main__":
    if sys.argv[1] == "tree":
        tree("3.21.0" if sys.argv[2] == "3" else "4.1.0", sys.argv[3])
    elif sys.argv[1] == "tar":
        tar_tree(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "hostile":
        hostile(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
