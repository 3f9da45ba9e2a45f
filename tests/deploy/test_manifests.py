"""deploy/kustomize as a platform team applies it: the example overlay rendered by
`kubectl kustomize`, validated strictly against Kubernetes' own schemas, and the
promises the README makes about it checked on the rendered objects."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from strangler.proxy.config import load_config
from tests.deploy.manifests import (
    BASE,
    CONFIG_KEY,
    EXAMPLE,
    FLAGS_KEY,
    Doc,
    Pod,
    one,
    pod,
    render,
)
from tests.deploy.podmonitor_schema import PODMONITOR_SCHEMA

# The oldest Kubernetes the manifests are written for, and the newest that the pinned
# kubernetes-validate (pyproject.toml, test extra) carries schemas for.
KUBERNETES_VERSIONS = ("1.29", "1.37")
BUILT_IN = {
    "Namespace",
    "ConfigMap",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
}
CUSTOM = {"PodMonitor"}  # no schema in kubernetes-validate: checked against our own

# Secrets for check-config: long enough for HS256 (32 bytes), never real.
DUMMY_ENV = {"STRANGLER_JWT_SECRET": "k" * 48, "STRANGLER_ADMIN_TOKEN": "t" * 32}


@pytest.fixture(scope="module")
def docs() -> list[Doc]:
    return render(EXAMPLE)


@pytest.fixture(scope="module")
def proxy_pod(docs: list[Doc]) -> Pod:
    return pod(docs)


def _kubelet_layout(folder: Path, files: dict[str, str]) -> None:
    """Write `files` the way the kubelet mounts a ConfigMap: the data in a timestamped
    directory, `..data` a symlink to it, each key a symlink through `..data`."""
    stamp = folder / "..2026_11_24_13_51_31.000000001"
    stamp.mkdir(parents=True)
    for key, text in files.items():
        (stamp / key).write_text(text)
    (folder / "..data").symlink_to(stamp.name)
    for key in files:
        (folder / key).symlink_to(f"..data/{key}")


@pytest.fixture
def mounted_config(proxy_pod: Pod, tmp_path: Path) -> Path:
    """The ConfigMaps laid out as in the pod, the config's flags.file moved from the
    pod's mount path to the copy here (the only change to the file); its path."""
    config = proxy_pod.mounted("config", CONFIG_KEY)
    flags = proxy_pod.mounted("flags", FLAGS_KEY)
    flags_dir = tmp_path / "flags"
    _kubelet_layout(flags_dir, {FLAGS_KEY: flags.text})
    assert yaml.safe_load(config.text)["flags"]["file"] == flags.path
    assert config.text.count(flags.path) == 1
    moved = config.text.replace(flags.path, str(flags_dir / FLAGS_KEY))
    _kubelet_layout(tmp_path / "config", {CONFIG_KEY: moved})
    return tmp_path / "config" / CONFIG_KEY


def test_the_example_renders_exactly_the_kinds_it_is_validated_as(docs: list[Doc]) -> None:
    # A new kind must be placed on purpose: strictly validated, or given a schema here.
    assert {d["kind"] for d in docs} == BUILT_IN | CUSTOM


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_object_validates_strictly(docs: list[Doc], version: str) -> None:
    for doc in docs:
        if doc["kind"] in BUILT_IN:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_base_alone_validates_strictly_with_three_replicas(version: str) -> None:
    # A team without an HPA uses the base's replica count.
    docs = render(BASE)
    for doc in docs:
        if doc["kind"] in BUILT_IN:
            kubernetes_validate.validate(doc, version, strict=True)
    assert one(docs, "Deployment")["spec"]["replicas"] == 3


def test_strict_validation_refuses_a_misspelt_field(proxy_pod: Pod) -> None:
    # The check above can fail: an unknown key is an error, not ignored.
    bad = copy.deepcopy(proxy_pod.deployment)
    bad["spec"]["template"]["spec"]["terminationGracePeriod"] = 50
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


def test_the_podmonitor_scrapes_the_admin_port_of_the_proxy_pods(
    docs: list[Doc], proxy_pod: Pod
) -> None:
    monitor = one(docs, "PodMonitor")
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    selector = monitor["spec"]["selector"]["matchLabels"]
    labels = proxy_pod.deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "admin"
    assert endpoint["path"] == "/metrics"
    # job="strangler", as the dashboards' queries expect.
    assert labels[monitor["spec"]["jobLabel"]] == "strangler"
    # /metrics wants the admin token: the scrape reads the one the pods read.
    token = next(e for e in proxy_pod.container["env"] if e["name"] == "STRANGLER_ADMIN_TOKEN")
    assert endpoint["authorization"]["credentials"] == token["valueFrom"]["secretKeyRef"]


def test_the_podmonitor_schema_refuses_a_misspelt_field(docs: list[Doc]) -> None:
    bad = copy.deepcopy(one(docs, "PodMonitor"))
    bad["spec"]["podMetricEndpoints"] = bad["spec"].pop("podMetricsEndpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, PODMONITOR_SCHEMA)


def test_flags_are_a_directory_mount_at_the_path_the_config_names(proxy_pod: Pod) -> None:
    # subPath mounts are copies made once: the kubelet's ..data swap never reaches them.
    assert all("subPath" not in m for m in proxy_pod.container["volumeMounts"])
    assert all("subPathExpr" not in m for m in proxy_pod.container["volumeMounts"])
    config = yaml.safe_load(proxy_pod.mounted("config", CONFIG_KEY).text)
    assert config["flags"]["file"] == proxy_pod.mounted("flags", FLAGS_KEY).path
    # A fixed name, so an edit updates the mounted ConfigMap in place instead of
    # rolling the pods; the config's name carries a hash, so an edit does roll them.
    assert proxy_pod.configmaps["flags"]["metadata"]["name"] == "strangler-flags"
    assert proxy_pod.configmaps["config"]["metadata"]["name"].startswith("strangler-config-")


def test_probes_ask_the_admin_port_and_the_client_port_is_the_only_one_served(
    docs: list[Doc], proxy_pod: Pod
) -> None:
    container = proxy_pod.container
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == "admin"
    config = yaml.safe_load(proxy_pod.mounted("config", CONFIG_KEY).text)
    assert proxy_pod.port("admin") == int(config["admin_listen"].rsplit(":", 1)[1])
    assert proxy_pod.port("client") == int(config["listen"].rsplit(":", 1)[1])
    service = one(docs, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["client"]


def test_termination_grace_covers_the_pause_the_grace_period_and_the_close_timeout(
    proxy_pod: Pod, mounted_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in DUMMY_ENV.items():
        monkeypatch.setenv(name, value)
    relay = load_config(mounted_config).relay  # the real loader: defaults included
    pre_stop = proxy_pod.container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        pause = float(pre_stop["sleep"]["seconds"])
    else:
        command = pre_stop["exec"]["command"]
        assert command[0] == "sleep" and len(command) == 2, command
        pause = float(command[1])
    assert pause > 0
    grace = proxy_pod.spec["terminationGracePeriodSeconds"]
    assert grace >= pause + relay.grace_period + relay.close_timeout


def test_the_configmaps_pass_check_config_as_mounted(mounted_config: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "strangler.proxy", "check-config", "--config", str(mounted_config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **DUMMY_ENV},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: 5 routes, 1 flags"), done.stdout
    assert "warning" not in done.stderr, done.stderr


def test_the_secrets_come_from_a_secret_the_manifests_never_carry(
    docs: list[Doc], proxy_pod: Pod
) -> None:
    assert all(d["kind"] != "Secret" for d in docs)
    config = yaml.safe_load(proxy_pod.mounted("config", CONFIG_KEY).text)
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in proxy_pod.container["env"]}
    assert config["jwt"]["secret_env"] in env
    assert config["admin_auth"]["token_env"] in env
    assert all(ref.get("optional") is not True for ref in env.values())


def test_scaling_in_is_slow_and_the_hpa_owns_the_replica_count(
    docs: list[Doc], proxy_pod: Pod
) -> None:
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == proxy_pod.deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 3
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] >= 600
    assert down["policies"]
    for policy in down["policies"]:
        assert policy["type"] == "Pods" and policy["value"] == 1
        assert policy["periodSeconds"] >= 60
    # Both set, every `kubectl apply` would reset the HPA's count.
    assert "replicas" not in proxy_pod.deployment["spec"]


def test_the_pod_meets_the_restricted_pod_security_standard(
    docs: list[Doc], proxy_pod: Pod
) -> None:
    pod_context = proxy_pod.spec["securityContext"]
    assert pod_context["runAsNonRoot"] is True
    assert pod_context["runAsUser"] != 0
    assert pod_context["seccompProfile"]["type"] == "RuntimeDefault"
    context = proxy_pod.container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"]["drop"] == ["ALL"]
    assert "add" not in context["capabilities"]
    resources = proxy_pod.container["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert {"cpu", "memory"} <= resources["limits"].keys()
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_fleet_settings_find_the_replicas_the_podmonitor_scrapes(
    docs: list[Doc], proxy_pod: Pod
) -> None:
    fleet = yaml.safe_load(proxy_pod.mounted("config", CONFIG_KEY).text)["fleet"]
    monitor = one(docs, "PodMonitor")
    job = proxy_pod.deployment["spec"]["template"]["metadata"]["labels"][
        monitor["spec"]["jobLabel"]
    ]
    assert f'job="{job}"' in fleet["selector"]
    assert f'namespace="{monitor["metadata"]["namespace"]}"' in fleet["selector"]
    # Without Prometheus a fleet drain rate is shared among this many: the most there
    # can be, so a flip never drains faster than the release manager planned.
    assert fleet["replicas"] == one(docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"]
