#!/usr/bin/env python3
"""Pushes a file to an OCI registry as a wasm component artifact, with oras-py (PyPI `oras`).

    oci_push.py REGISTRY/REPO:TAG FILE [--config-media-type T] [--layer-media-type T]
                [--user U --password P]

Prints the manifest digest the registry answered (Docker-Content-Digest).
"""

import argparse
import json
import os
import sys
import tempfile

import oras.client

ap = argparse.ArgumentParser()
ap.add_argument("target")
ap.add_argument("file")
ap.add_argument("--config-media-type", default="application/vnd.wasm.config.v0+json")
ap.add_argument("--layer-media-type", default="application/wasm")
ap.add_argument("--user")
ap.add_argument("--password")
args = ap.parse_args()

hostname = args.target.split("/", 1)[0]
client = oras.client.OrasClient(hostname=hostname, insecure=True, auth_backend="basic")
if args.user:
    client.auth.set_basic_auth(args.user, args.password or "")
with tempfile.TemporaryDirectory() as tmp:
    config = os.path.join(tmp, "config.json")
    with open(config, "w") as f:
        json.dump({"architecture": "wasm", "os": "wasip2"}, f)
    # oras names the layer by the file's path: push from the file's own directory.
    os.chdir(os.path.dirname(os.path.abspath(args.file)))
    response = client.push(
        target=args.target,
        files=[f"{os.path.basename(args.file)}:{args.layer_media_type}"],
        manifest_config=f"{config}:{args.config_media_type}",
        disable_path_validation=True,
        quiet=True,
    )
if response.status_code not in (200, 201):
    sys.exit(f"push failed: {response.status_code} {response.text}")
print(response.headers.get("Docker-Content-Digest", ""))
