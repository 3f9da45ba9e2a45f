"""The Dockerfile, read instruction by instruction and held against pyproject.toml and
the Kubernetes manifests. No Docker engine runs on this machine or in CI, so the image is
not built here; what can drift silently (the user, the command, the config path, the
ports, what the build context lets through) is checked."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass

import pytest
import yaml

from tests.deploy.manifests import CONFIG_KEY, EXAMPLE, REPO, Pod, pod, render

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
BASE_IMAGE = "python:3.11-slim"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, as Docker treats it
    arguments: str


def parse(text: str) -> list[list[Instruction]]:
    """The Dockerfile's instructions, one list per stage (each starts with FROM):
    comments dropped, backslash continuations joined."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), " ".join(arguments.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{instruction.keyword} before the first FROM"
        stages[-1].append(instruction)
    assert not pending, "the Dockerfile ends inside a continued line"
    return stages


STAGES = parse((REPO / "Dockerfile").read_text())
FINAL = STAGES[-1]


def _last(keyword: str, stage: list[Instruction] = FINAL) -> str:
    found = [i.arguments for i in stage if i.keyword == keyword]
    assert found, f"no {keyword} in the final stage"
    return found[-1]


@pytest.fixture(scope="module")
def proxy_pod() -> Pod:
    return pod(render(EXAMPLE))


def test_every_stage_starts_from_the_same_python_base() -> None:
    # The build stage's virtual environment is copied whole: its interpreter path must
    # exist in the final image.
    for stage in STAGES:
        assert stage[0].arguments.split()[0] == BASE_IMAGE


def test_the_image_runs_as_the_numeric_non_root_user_the_pod_asks_for(proxy_pod: Pod) -> None:
    user, _, group = _last("USER").partition(":")
    # Numeric, so the kubelet can enforce runAsNonRoot without reading /etc/passwd.
    assert user.isdigit() and int(user) != 0
    assert int(user) == proxy_pod.spec["securityContext"]["runAsUser"]
    assert int(group) == proxy_pod.spec["securityContext"]["runAsGroup"]


def test_the_entrypoint_is_the_console_script_pyproject_installs() -> None:
    assert json.loads(_last("ENTRYPOINT")) == list(PROJECT["project"]["scripts"])


def test_the_default_command_reads_the_config_where_the_pod_mounts_it(proxy_pod: Pod) -> None:
    command = json.loads(_last("CMD"))
    mounted = proxy_pod.mounted("config", CONFIG_KEY).path
    assert command == ["run", "--config", mounted]
    assert proxy_pod.container["args"] == command  # the manifest says it too, as it runs


def test_the_exposed_ports_are_the_pod_ports_and_the_config_listeners(proxy_pod: Pod) -> None:
    exposed = {int(p.split("/")[0]) for p in _last("EXPOSE").split()}
    assert exposed == {p["containerPort"] for p in proxy_pod.container["ports"]}
    config = yaml.safe_load(proxy_pod.mounted("config", CONFIG_KEY).text)
    listeners = {int(config[k].rsplit(":", 1)[1]) for k in ("listen", "admin_listen")}
    assert exposed == listeners


def test_the_build_copies_and_the_context_lets_through_what_pip_install_reads() -> None:
    needed = {"pyproject.toml", PROJECT["project"]["readme"]}
    needed |= set(PROJECT["tool"]["setuptools"]["package-dir"].values())
    build = STAGES[0]
    copied = set()
    for instruction in build:
        if instruction.keyword == "COPY" and not instruction.arguments.startswith("--from"):
            copied |= {source.rstrip("/") for source in instruction.arguments.split()[:-1]}
    assert copied == needed
    assert any(i.keyword == "RUN" and "pip install ." in i.arguments for i in build)
    # .dockerignore: everything out, then exactly these back in.
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {line[1:] for line in lines if line.startswith("!")} == needed
