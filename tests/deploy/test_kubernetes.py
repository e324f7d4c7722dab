"""deploy/kubernetes: every overlay builds with kustomize, validates against the
Kubernetes schemas, and holds to what the platform team was promised: probes,
resources, non-root read-only containers, disruption budgets, two replicators, the
gateway as a native sidecar, no secret inlined, and network policies that let only
gateways reach providers and keep the regional NATS inside its namespace."""

from __future__ import annotations

import importlib
import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # the test extra's: the schemas of each Kubernetes release
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "kubernetes" / "overlays"
KUBERNETES_VERSION = "1.30.0"
SERVING = {"cordon-gateway", "cordon-audit-api", "cordon-replicator", "cordon-aggregator", "nats"}
ESTATE = ROOT / "deploy" / "nats" / "estate.yaml"


def _build(overlay: str) -> list[dict[str, Any]]:
    return _kustomize(OVERLAYS / overlay)


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize` builds from `directory`, as documents."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH (its built-in kustomize builds the overlays)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["central", "eu-west", "us-east"])
def built(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, _build(request.param)


def _workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
    return spec


def test_every_object_validates_against_the_kubernetes_schemas(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = built
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_containers_run_as_non_root_read_only_with_probes_and_limits(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = built
    for doc in [*_workloads(docs), *(d for d in docs if d["kind"] == "Pod")]:
        spec = _pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True, doc["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{doc['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            if doc["metadata"]["name"] in SERVING or container["name"] == "cordon-gateway":
                assert "readinessProbe" in container and "livenessProbe" in container, where


def test_each_serving_workload_has_a_disruption_budget(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = built
    budgets = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    names = {d["metadata"]["name"] for d in _workloads(docs)}
    assert names & SERVING <= budgets


def test_no_secret_is_inlined(built: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = built
    assert not [d for d in docs if d["kind"] == "Secret"]
    text = yaml.safe_dump_all(docs)
    for marker in ("BEGIN PRIVATE KEY", "sk-", "SUAA", "password:"):  # nkey seeds start SU
        assert marker not in text, marker
    for doc in [*_workloads(docs), *(d for d in docs if d["kind"] == "Pod")]:
        for container in [*_pod_spec(doc).get("initContainers", []), *_pod_spec(doc)["containers"]]:
            for env in container.get("env", []):
                if any(w in env["name"] for w in ("KEY", "PASSWORD", "TOKEN", "SECRET")):
                    assert "valueFrom" in env, (doc["metadata"]["name"], env["name"])


def test_central_runs_two_replicators_and_regions_one_sealer(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = built
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in _workloads(docs)}
    if overlay == "central":
        assert replicas["cordon-replicator"] == 2 and replicas["cordon-aggregator"] == 1
    else:
        assert replicas["cordon-sealer"] == 1 and replicas["cordon-gateway"] >= 2
        assert all(
            d["metadata"]["namespace"] == f"cordon-{overlay}"
            for d in docs
            if "namespace" in d["metadata"]
        )


def test_the_gateway_runs_beside_an_agent_as_a_native_sidecar(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = built
    if overlay == "central":
        pytest.skip("no agents in central")
    (agent,) = [d for d in docs if d["kind"] == "Pod"]
    (sidecar,) = agent["spec"]["initContainers"]
    assert sidecar["restartPolicy"] == "Always" and "startupProbe" in sidecar
    assert any(
        e == {"name": "OPENAI_BASE_URL", "value": "http://127.0.0.1:8401/v1"}
        for e in agent["spec"]["containers"][0]["env"]
    )


def test_only_gateways_reach_providers_and_nats_stays_in_its_region(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    overlay, docs = built
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    to_world = [
        (name, spec)
        for name, spec in policies.items()
        for rule in spec.get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer and any(p.get("port") == 443 for p in rule.get("ports", []))
    ]
    if overlay == "central":
        assert not to_world  # nothing central reaches a provider
        return
    assert [name for name, _ in to_world] == ["gateways-reach-providers"]
    roles = to_world[0][1]["podSelector"]["matchExpressions"][0]["values"]
    assert sorted(roles) == ["agent", "gateway"]
    nats = policies["regional-nats"]
    assert all(peer == {"podSelector": {}} for rule in nats["ingress"] for peer in rule["from"])


def test_each_place_runs_its_nats_as_three_servers_in_three_zones(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    _, docs = built
    (nats,) = [d for d in _workloads(docs) if d["metadata"]["name"] == "nats"]
    assert nats["spec"]["replicas"] == 3
    spec = _pod_spec(nats)
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["whenUnsatisfiable"] == "DoNotSchedule" and spread["maxSkew"] == 1
    server, exporter = spec["containers"]
    assert server["args"] == ["-c", "/etc/nats/config/$(POD_NAME).conf"]
    assert exporter["image"].startswith("natsio/prometheus-nats-exporter:")
    assert exporter["image"].split(":")[1][0].isdigit()  # a pinned release, not latest
    (budget,) = [
        d for d in docs if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "nats"
    ]
    assert budget["spec"]["maxUnavailable"] == 1  # two of three keep every stream's quorum
    assert not [v for v in spec["volumes"] if "secret" in v and v["name"] == "config"]


def test_each_nats_server_has_the_nats_exporter_beside_it_for_prometheus(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    """The names deploy/prometheus and deploy/grafana read: the exporter's varz and
    JetStream collectors, each server labelled by its own name, scraped on :7777."""
    _, docs = built
    (nats,) = [d for d in _workloads(docs) if d["metadata"]["name"] == "nats"]
    (exporter,) = [c for c in _pod_spec(nats)["containers"] if c["name"] == "exporter"]
    args = exporter["args"]
    assert {"-varz", "-jsz=all", "-use_internal_server_name"} <= set(args)
    assert args[-1] == "http://localhost:8222"  # the server's monitor port, in the pod
    assert exporter["ports"] == [{"name": "metrics", "containerPort": 7777}]
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "nats"]
    assert {"name": "metrics", "port": 7777, "targetPort": "metrics"} in service["spec"]["ports"]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    (rule,) = policies["nats-metrics-scrapes"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 7777}]


def test_every_nats_url_in_the_settings_names_the_estates_servers(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    """The overlays' settings dial every server estate.yaml renders for the place (pod,
    service, namespace), and the StatefulSet is what serves those names."""
    overlay, docs = built
    place = yaml.safe_load(ESTATE.read_text())
    nodes = place["central"] if overlay == "central" else place["regions"][overlay]
    expected = {tuple(n["host"].split(".")[:3]) for n in nodes["nodes"]}
    (nats,) = [d for d in _workloads(docs) if d["metadata"]["name"] == "nats"]
    namespace, service = nats["metadata"]["namespace"], nats["spec"]["serviceName"]
    pods = {(f"nats-{i}", service, namespace) for i in range(nats["spec"]["replicas"])}
    assert expected == pods
    settings = [
        json.loads(text)
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("cordon-")
        for text in d["data"].values()
    ]
    urls = [
        value["url"]
        for each in settings
        for key, value in each.items()
        if key.endswith("_nats") and isinstance(value, dict)
    ]
    assert urls
    for url in urls:
        hosts = {tuple(u.split("//")[1].split(":")[0].split(".")[:3]) for u in url.split(",")}
        assert hosts == expected, url


def _terraform_workloads(overlay: str) -> set[str]:
    """The workloads Terraform makes a role for in this place (its `access` map's keys)."""
    module = "central" if overlay == "central" else "region"
    text = (ROOT / "terraform" / "modules" / module / "main.tf").read_text()
    block = text[text.index("  access = {") :]
    block = block[: block.index("\n  }\n")]
    return set(re.findall(r"^\s+([\w-]+)\s+=\s+\[", block, re.MULTILINE))


def test_each_workload_runs_as_the_service_account_terraform_gave_a_role(
    built: tuple[str, list[dict[str, Any]]],
) -> None:
    """Terraform's roles trust `cordon-<workload>` in the place's namespace; the overlay's
    terraform-patch.yaml annotates exactly those accounts, and the pods run as them."""
    overlay, docs = built
    accounts = {
        d["metadata"]["name"]: d["metadata"].get("annotations", {})
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    assert set(accounts) == {f"cordon-{w}" for w in _terraform_workloads(overlay)}
    for name, notes in accounts.items():
        assert notes["eks.amazonaws.com/role-arn"].endswith(f"role/cordon-{overlay}-{name[7:]}")
    for doc in _workloads(docs):
        assert _pod_spec(doc)["serviceAccountName"] in accounts, doc["metadata"]["name"]


LOADERS = {
    "aggregator.json": "aggregator.api:AggregatorSettings.load",
    "replicator.json": "replicator.service:ReplicatorSettings.load",
    "gateway.json": "gateway.settings:load",
    "gateway-sidecar.json": "gateway.settings:load",
    "sealer.json": "gateway.ledger.sealer:SealerSettings.load",
    "audit-api.json": "gateway.ledger.audit_api:AuditApiSettings.load",
}


def _loader(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("place", ["central", "eu-west", "us-east"])
def test_every_overlay_settings_file_loads_once_its_placeholders_are_filled(
    place: str, tmp_path: Path
) -> None:
    """What docs/deploy.md has the platform engineer fill in (the `*_HEX` placeholders)
    is all a settings file lacks: each then loads in the process that reads it."""
    (tmp_path / "pseudonym.secret").write_text(secrets.token_hex(32))
    files = sorted((OVERLAYS / place / "config").glob("*.json"))
    assert {f.name for f in files} <= set(LOADERS)
    for file in files:
        text = file.read_text().replace("/var/run/secrets/cordon", str(tmp_path))
        filled = re.sub(r'"[A-Z][A-Z_]+_HEX"', lambda _: json.dumps(secrets.token_hex(32)), text)
        (tmp_path / file.name).write_text(filled)
        settings = _loader(LOADERS[file.name])(tmp_path / file.name)
        if file.name == "aggregator.json":  # its witness verifies every region it serves
            assert set(settings.regional_public_keys) == set(json.loads(text)["regions"])


COMPONENTS = ROOT / "deploy" / "kubernetes" / "components"
ESO = "external-secrets.io/"


def _build_with_component(overlay: str, component: str, tmp_path: Path) -> list[dict[str, Any]]:
    """The overlay as docs/deploy.md has a platform team change it: a copy of
    deploy/kubernetes whose region overlay lists the component, built by kustomize."""
    tree = tmp_path / "kubernetes"
    shutil.copytree(ROOT / "deploy" / "kubernetes", tree)
    kustomization = tree / "overlays" / overlay / "kustomization.yaml"
    assert "components:" not in kustomization.read_text()
    with kustomization.open("a") as out:
        out.write(f"components:\n  - ../../components/{component}\n")
    return _kustomize(kustomization.parent)


@pytest.mark.parametrize("component", ["external-secrets-vault", "external-secrets-aws"])
def test_an_external_secrets_component_fills_the_secret_the_gateway_mounts_as_its_store(
    component: str, tmp_path: Path
) -> None:
    """Examples kustomize builds, no more (nothing here runs External Secrets Operator):
    the ExternalSecret writes the Secret mounted at the gateway's secret_store_dir, with
    the keys its environment reads too, and refreshes it so a rotation reaches the file."""
    docs = _build_with_component("eu-west", component, tmp_path)
    for doc in docs:
        if not doc["apiVersion"].startswith(ESO):  # ESO's CRDs are not Kubernetes' schemas
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert not [d for d in docs if d["kind"] == "Secret"]

    eso = [d for d in docs if d["apiVersion"].startswith(ESO)]
    assert {d["apiVersion"] for d in eso} == {"external-secrets.io/v1"}
    assert all(d["metadata"]["namespace"] == "cordon-eu-west" for d in eso)
    (external,) = [d for d in eso if d["kind"] == "ExternalSecret"]
    (store,) = [d for d in eso if d["kind"] == "SecretStore"]
    spec = external["spec"]
    assert spec["secretStoreRef"] == {"name": store["metadata"]["name"], "kind": "SecretStore"}
    assert re.fullmatch(r"[1-9]\d*[smh]", spec["refreshInterval"])  # "0" would never refresh
    (auth,) = next(iter(store["spec"]["provider"].values()))["auth"].values()
    assert auth["serviceAccountRef"] == {"name": "cordon-gateway"}

    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    store_dir = json.loads(config["data"]["gateway.json"])["secret_store_dir"]
    (gateway,) = [d for d in _workloads(docs) if d["metadata"]["name"] == "cordon-gateway"]
    pod = _pod_spec(gateway)
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == store_dir]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert spec["target"]["name"] == volume["secret"]["secretName"]
    assert not volume["secret"].get("items")  # every key of the Secret is a file of the store

    written = {entry["secretKey"] for entry in spec["data"]}
    assert {"OPENAI_API_KEY", "AZURE_OPENAI_KEY"} <= written
    env_keys = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for e in container["env"]
        if e["valueFrom"]["secretKeyRef"]["name"] == spec["target"]["name"]
    }
    assert env_keys <= written
