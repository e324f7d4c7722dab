"""deploy/kubernetes/examples/sidecar-local: an agent with a local-mode Cordon sidecar.
It builds with kustomize and validates against the Kubernetes schemas, holds to what
the overlays hold to (non-root, read-only, probes, requests and limits, no secret
inlined), keeps the provider key out of the agent's reach, mounts the policy so a
ConfigMap update reaches the sidecar, and its files, as the pod mounts them, start a
sidecar that enforces the seed's policy and makes the caller key the agent reads."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_kubernetes import KUBERNETES_VERSION, ROOT, _kustomize, _pod_spec

EXAMPLE = ROOT / "deploy" / "kubernetes" / "examples" / "sidecar-local"
SEED = ROOT / "tests" / "seed_configs" / "sidecar.yaml"
COMMAND = [
    "sidecar",
    *("--config", "/etc/cordon/cordon.yaml"),
    *("--config", "/etc/cordon-local/local.yaml"),
]
STATE = "/var/lib/cordon"


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return _kustomize(EXAMPLE)


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment


def _configmaps(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def test_the_example_validates_against_the_kubernetes_schemas(docs: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in docs} == {"Deployment", "ConfigMap", "NetworkPolicy"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_example_runs_non_root_read_only_with_probes_and_limits(
    docs: list[dict[str, Any]],
) -> None:
    spec = _pod_spec(_deployment(docs))
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for container in [*spec["initContainers"], *spec["containers"]]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
    (sidecar,) = spec["initContainers"]
    assert sidecar["resources"]["requests"]["memory"] == "48Mi"
    assert sidecar["resources"]["limits"]["memory"] == "64Mi"


def test_the_sidecar_is_native_and_runs_the_two_files(docs: list[dict[str, Any]]) -> None:
    spec = _pod_spec(_deployment(docs))
    (sidecar,) = spec["initContainers"]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == COMMAND
    port = {p["name"]: p["containerPort"] for p in sidecar["ports"]}["cordon"]
    assert port == 41002
    for probe in ("startupProbe", "readinessProbe"):
        assert sidecar[probe]["httpGet"] == {"path": "/readyz", "port": "cordon"}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "cordon"}
    (agent,) = spec["containers"]
    assert {"name": "OPENAI_BASE_URL", "value": f"http://127.0.0.1:{port}/v1"} in agent["env"]


def test_only_the_sidecar_holds_the_provider_key_and_no_secret_is_inlined(
    docs: list[dict[str, Any]],
) -> None:
    assert not [d for d in docs if d["kind"] == "Secret"]
    text = yaml.safe_dump_all(docs)
    for marker in ("BEGIN PRIVATE KEY", "sk-", "password:"):
        assert marker not in text, marker
    spec = _pod_spec(_deployment(docs))
    (sidecar,) = spec["initContainers"]
    (agent,) = spec["containers"]
    (provider_key,) = sidecar["env"]
    assert provider_key["name"] == "OPENAI_API_KEY"
    assert provider_key["valueFrom"]["secretKeyRef"]["key"] == "OPENAI_API_KEY"
    assert not [e for e in agent["env"] if "valueFrom" in e or "KEY" in e["name"]]
    assert not agent.get("envFrom")


def test_the_agent_sees_the_caller_key_file_and_nothing_else_of_the_state(
    docs: list[dict[str, Any]],
) -> None:
    spec = _pod_spec(_deployment(docs))
    (sidecar,) = spec["initContainers"]
    (agent,) = spec["containers"]
    state = {m["mountPath"]: m for m in sidecar["volumeMounts"]}[STATE]
    (mount,) = agent["volumeMounts"]
    assert mount["name"] == state["name"] and mount["subPath"] == "caller.key"
    assert mount["readOnly"] is True
    assert {"name": "CORDON_CALLER_FILE", "value": mount["mountPath"]} in agent["env"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[state["name"]]


def test_the_policy_configmap_is_the_seed_file_mounted_so_updates_reach_it(
    docs: list[dict[str, Any]],
) -> None:
    """The seed's sidecar.yaml byte for byte, under a name that does not change with its
    content (an edit updates it in place), mounted as a directory (a subPath mount
    would never see the kubelet's update)."""
    spec = _pod_spec(_deployment(docs))
    (sidecar,) = spec["initContainers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    maps = _configmaps(docs)
    mounted = {}
    for mount in sidecar["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            assert "subPath" not in mount, mount
            mounted[mount["mountPath"]] = maps[volume["configMap"]["name"]]
    assert mounted["/etc/cordon"]["metadata"]["name"] == "cordon-policy"
    assert mounted["/etc/cordon"]["data"]["cordon.yaml"] == SEED.read_text()
    local = yaml.safe_load(mounted["/etc/cordon-local"]["data"]["local.yaml"])
    assert local["gateway"]["config_reload"] is True
    assert local["gateway"]["state_dir"] == STATE


def test_the_network_policy_lets_the_pod_reach_dns_and_https_only(
    docs: list[dict[str, Any]],
) -> None:
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    spec = policy["spec"]
    labels = _deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"} and not spec.get("ingress")
    ports = sorted(p["port"] for rule in spec["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443]


def _mounted_as_the_pod_mounts_them(docs: list[dict[str, Any]], root: Path) -> list[Path]:
    """The ConfigMaps' files where the pod sees them, under `root`, the emptyDir too."""
    maps = _configmaps(docs)
    files = []
    for argument in COMMAND[2::2]:
        path = root / argument.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        (text,) = [m["data"][path.name] for m in maps.values() if path.name in m["data"]]
        path.write_text(text.replace(STATE, str(root / STATE.lstrip("/"))))
        files.append(path)
    return files


async def test_the_examples_files_start_a_sidecar_that_enforces_the_seed(
    docs: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's two files, as mounted, start a sidecar that answers /readyz, writes the
    caller key the agent reads (0600), and redacts an email in the answer."""
    from tests.gateway.sidecar.harness import in_process_sidecar, real_provider_names

    files = _mounted_as_the_pod_mounts_them(docs, tmp_path)
    local = tmp_path / "loopback-proxy.yaml"  # the test's provider is behind a loopback proxy
    local.write_text("gateway:\n  allow_loopback_upstreams: true\n")
    async with (
        real_provider_names(tmp_path, monkeypatch),
        in_process_sidecar([*files, local]) as running,
    ):
        config = running.sidecar.config
        assert config.reload and config.settings.port == 41002
        assert config.settings.host == "0.0.0.0"
        assert config.state_dir == tmp_path / STATE.lstrip("/")
        ready = await running.client.get("/readyz")
        assert ready.status_code == 200
        key_file = config.state_dir / "caller.key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        answer = await running.openai().chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "mail jane.doe@example.com"}]
        )
    assert answer.choices[0].message.content == "echo: mail [EMAIL]"
