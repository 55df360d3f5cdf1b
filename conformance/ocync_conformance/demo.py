"""`make demo`: two local registries, a multi-arch image seeded into one, `ocync copy` to the other.

Everything lives in a temporary directory and the registries are stopped at the end.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from ocync_conformance.images import build_image_layout, seed_registry
from ocync_conformance.registry_process import RegistryProcess

__all__ = ["main"]


def _inspect_raw(reference: str) -> bytes:
    return subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True,
        check=True,
    ).stdout


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="ocync-demo-") as scratch:
        work = Path(scratch)
        with (
            RegistryProcess(workdir=work / "source") as source,
            RegistryProcess(workdir=work / "target") as target,
        ):
            _step(f"two docker-registry instances: source {source.url}, target {target.url}")
            image = build_image_layout(
                work / "layout", tag="v1", layer_sizes=(2 * 1024 * 1024, 256 * 1024)
            )
            _step(f"seeding demo/app:v1 (OCI index {image.digest[:19]}, linux/amd64 + linux/arm64)")
            seed_registry(work / "layout", "v1", source.host, "demo/app")

            src = f"{source.host}/demo/app:v1"
            dst = f"{target.host}/mirror/app:v1"
            _step(f"ocync copy {src} {dst}")
            copy = subprocess.run([sys.executable, "-m", "ocync_core", "copy", src, dst])
            if copy.returncode != 0:
                return copy.returncode

            _step("the target, as skopeo sees it")
            for name, ref in (("source", src), ("target", dst)):
                raw = _inspect_raw(ref)
                print(f"  {name} index  {ref}  sha256:{hashlib.sha256(raw).hexdigest()}")
            for child in image.children:
                digests = {
                    name: "sha256:"
                    + hashlib.sha256(_inspect_raw(f"{ref}@{child.digest}")).hexdigest()
                    for name, ref in (
                        ("source", src.rsplit(":", 1)[0]),
                        ("target", dst.rsplit(":", 1)[0]),
                    )
                }
                same = "identical" if digests["source"] == digests["target"] else "DIFFERENT"
                print(f"  {child.platform:<12} {digests['target']}  {same}")

            _step("copying again: nothing to do")
            again = subprocess.run([sys.executable, "-m", "ocync_core", "copy", src, dst])
            _step("stopping the registries")
            return again.returncode


if __name__ == "__main__":
    raise SystemExit(main())
