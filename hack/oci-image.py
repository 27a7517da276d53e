#!/usr/bin/env python3
"""Writes an OCI image archive (oci-archive / `ctr images import` format) of one directory tree.

One layer, made reproducible: names sorted, owner and group 0 (numeric), every mtime 0, gzip
without a name or time, so the same tree gives the same digest on any machine. The index
names the image (`io.containerd.image.name` and `org.opencontainers.image.ref.name`), which is
what containerd's import and skopeo read. No Docker, no registry.

  hack/oci-image.py --root DIR --name docker.io/library/gmsa-webhook:0.1.0 \\
      --entrypoint /usr/local/bin/gmsa-webhook --user 65532:65532 --env HTTPS_PORT=8443 \\
      --expose 8443 --expose 8081 --out gmsa-webhook.oci.tar

Prints the manifest digest (sha256:...) on stdout.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def layer_tar(root):
    """The tree under root as an uncompressed tar, in sorted order with fixed metadata."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        paths = []
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs + files):
                paths.append(os.path.join(directory, name))
        for path in sorted(paths, key=lambda p: os.path.relpath(p, root)):
            info = tar.gettarinfo(path, arcname=os.path.relpath(path, root))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.pax_headers = {}
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def blob(out, data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    out.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="directory that becomes the image's filesystem")
    parser.add_argument("--name", required=True, help="full image name, e.g. docker.io/library/x:1")
    parser.add_argument("--entrypoint", action="append", default=[], help="entrypoint word (repeat)")
    parser.add_argument("--cmd", action="append", default=[], help="cmd word (repeat)")
    parser.add_argument("--user", default="", help="user[:group], e.g. 65532:65532")
    parser.add_argument("--env", action="append", default=[], help="NAME=value (repeat)")
    parser.add_argument("--expose", action="append", default=[], help="TCP port (repeat)")
    parser.add_argument("--out", required=True, help="the archive to write")
    args = parser.parse_args()

    if not os.path.isdir(args.root):
        sys.exit(f"oci-image: {args.root} is not a directory")
    tar_bytes = layer_tar(args.root)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=6) as z:
        z.write(tar_bytes)
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + args.env,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    if args.entrypoint:
        config["config"]["Entrypoint"] = args.entrypoint
    if args.cmd:
        config["config"]["Cmd"] = args.cmd
    if args.user:
        config["config"]["User"] = args.user
    if args.expose:
        config["config"]["ExposedPorts"] = {f"{p}/tcp": {} for p in args.expose}

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.USTAR_FORMAT) as out:
        layer = blob(out, gz.getvalue(), MEDIA_LAYER)
        config_desc = blob(out, canonical(config), MEDIA_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config_desc, "layers": [layer]}
        manifest_desc = blob(out, canonical(manifest), MEDIA_MANIFEST)
        manifest_desc["annotations"] = {
            "io.containerd.image.name": args.name,
            "org.opencontainers.image.ref.name": args.name.rsplit(":", 1)[-1],
        }
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
        for name, data in (("oci-layout", canonical({"imageLayoutVersion": "1.0.0"})), ("index.json", canonical(index))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, args.out)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
