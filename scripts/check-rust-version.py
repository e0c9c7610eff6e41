#!/usr/bin/env python3
"""Checks that the Rust the Dockerfile builds with and Cargo.toml's rust-version are at least the
rust-version of every dependency the binary is built from (dev-dependencies excluded), so
`docker build` with the locked dependencies cannot fail on a too-old compiler."""
import json
import re
import subprocess
import sys


def version(text):
    return tuple(int(part) for part in text.split(".")[:2])


metadata = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--locked"],
    check=True, capture_output=True, text=True).stdout)
packages = {p["id"]: p for p in metadata["packages"]}
nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
root = metadata["resolve"]["root"]

needed, seen, todo = {}, set(), [root]
while todo:
    node = nodes[todo.pop()]
    for dep in node["deps"]:
        if not any(k["kind"] in (None, "build") for k in dep["dep_kinds"]):
            continue
        if dep["pkg"] in seen:
            continue
        seen.add(dep["pkg"])
        todo.append(dep["pkg"])
        package = packages[dep["pkg"]]
        if package.get("rust_version"):
            needed[f'{package["name"]} {package["version"]}'] = version(package["rust_version"])

highest = max(needed.values(), default=(1, 0))
culprits = [name for name, v in needed.items() if v == highest]
manifest = version(packages[root]["rust_version"])
image = re.search(r"^FROM rust:(\d+\.\d+)", open("Dockerfile").read(), re.M)
problems = []
if manifest < highest:
    problems.append(f"Cargo.toml rust-version {manifest} < {highest} needed by {culprits}")
if not image or version(image.group(1)) < highest:
    problems.append(f"Dockerfile builder image {image and image.group(1)} < {highest} needed by {culprits}")
if problems:
    sys.exit("\n".join(problems))
print(f"ok: dependencies need Rust {'.'.join(map(str, highest))} ({', '.join(culprits)})")
