"""The Kubernetes manifests of deploy/kustomize, rendered as `kubectl kustomize` renders
them, and the facts the deploy tests read from them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUSTOMIZE = REPO / "deploy" / "kustomize"
EXAMPLE = KUSTOMIZE / "overlays" / "example"
BASE = KUSTOMIZE / "base"

Doc = dict[str, Any]


def render(folder: Path) -> list[Doc]:
    """Every object `kubectl kustomize folder` prints; skips when kubectl is missing."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not on PATH: the manifests cannot be rendered (`kubectl kustomize`); "
            "install kubectl to run the deploy tests"
        )
    done = subprocess.run(
        [kubectl, "kustomize", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[Doc], kind: str, name_prefix: str = "") -> Doc:
    """The single object of `kind` (whose name starts with `name_prefix`)."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    assert len(found) == 1, f"expected one {kind} {name_prefix!r}, got {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Mounted:
    """A ConfigMap key as the proxy sees it: the file's path in the pod and its text."""

    path: str
    text: str


@dataclass(frozen=True)
class Pod:
    """The proxy's pod template and what it mounts, from one rendering."""

    deployment: Doc
    spec: Doc
    container: Doc
    configmaps: dict[str, Doc]  # by volume name

    def mounted(self, volume: str, key: str) -> Mounted:
        """The ConfigMap behind `volume`, key `key`, at its path in the container."""
        mount = next(m for m in self.container["volumeMounts"] if m["name"] == volume)
        return Mounted(f"{mount['mountPath']}/{key}", self.configmaps[volume]["data"][key])

    def port(self, name: str) -> int:
        """The container port called `name`."""
        port: int = next(p for p in self.container["ports"] if p["name"] == name)["containerPort"]
        return port


def pod(docs: list[Doc]) -> Pod:
    """The Deployment's pod, its `strangler` container and the ConfigMaps it mounts."""
    deployment = one(docs, "Deployment", "strangler")
    spec = deployment["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "strangler")
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    configmaps = {
        v["name"]: by_name[v["configMap"]["name"]] for v in spec["volumes"] if "configMap" in v
    }
    return Pod(deployment, spec, container, configmaps)


# Where the container reads its two files: the image's CMD names the first, strangler.yaml
# (flags.file) the second.
CONFIG_KEY = "strangler.yaml"
FLAGS_KEY = "flags.yaml"
