#!/usr/bin/env python3
"""Writes a single-layer OCI image archive (an OCI image layout in a tar)
that `ctr images import` reads, from files on disk. Nothing is pulled: the
test bed's node gets its pause and sample-app images this way (the
controller's comes from `make images`).

  oci-image.py --name REF --out FILE.tar [--file SRC:DEST[:MODE]]...
               [--entrypoint JSON] [--cmd JSON] [--user U] [--workdir D] [--env K=V]...

Prints the manifest digest (sha256:...), which is the digest a registry
would serve the image under. Entries are owned by root, dated 1970 and
sorted, so the same inputs give the same digest.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def parse_mode(spec, default):
    parts = spec.split(":")
    mode = int(parts[-1], 8) if len(parts) > 1 and parts[-1] else default
    return parts[0] if len(parts) == 1 else ":".join(parts[:-1]), mode


def layer_tar(files):
    entries = {}  # path in image -> (kind, mode, data)
    def add_parents(path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            entries.setdefault("/".join(parts[:i]), ("dir", 0o755, None))
    for spec in files:
        src, rest = spec.split(":", 1)
        dest, mode = parse_mode(rest, None)
        with open(src, "rb") as f:
            data = f.read()
        if mode is None:
            mode = os.stat(src).st_mode & 0o7777
        add_parents(dest)
        entries[dest.strip("/")] = ("file", mode, data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            kind, mode, data = entries[path]
            info = tarfile.TarInfo(path + ("/" if kind == "dir" else ""))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="image reference, e.g. testbed.local/pause:1")
    p.add_argument("--out", required=True)
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--entrypoint")
    p.add_argument("--cmd")
    p.add_argument("--user")
    p.add_argument("--workdir", default="/")
    p.add_argument("--env", action="append", default=[])
    a = p.parse_args()

    blobs = {}
    def blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return d

    layer = layer_tar(a.file)
    layer_digest = blob(layer)
    config = {"Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
              "WorkingDir": a.workdir}
    if a.entrypoint:
        config["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        config["Cmd"] = json.loads(a.cmd)
    if a.user:
        config["User"] = a.user
    image_config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "testbed/node/oci-image.py"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = blob(config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = blob(manifest_bytes)
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": a.name,
                            "org.opencontainers.image.ref.name": tag},
        }],
    }
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
             "index.json": json.dumps(index, sort_keys=True).encode()}
    for d, data in blobs.items():
        files["blobs/sha256/" + d.split(":", 1)[1]] = data
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in ["blobs", "blobs/sha256"]:
            info = tarfile.TarInfo(path + "/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[path]))
    os.replace(tmp, a.out)
    print(manifest_digest)


if __name__ == "__main__":
    sys.exit(main())
