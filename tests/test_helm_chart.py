"""The Helm chart `charts/ocync`: rendered by Helm, linted, checked against Kubernetes' schemas.

Helm here is helm-python-sdk: Helm's own Go SDK (template engine, values schema, lint) in a
shared library, with no `helm` binary. It runs in a child process, so the Go runtime never
shares this process's signal handlers. Rendered objects are validated with the strict
Kubernetes JSON schemas that kubernetes-validate ships, for the oldest Kubernetes the chart
supports and the newest the package knows. The container's arguments are parsed by ocync's
own command line, and the ConfigMap is loaded as ocync loads its configuration.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from ocync_core.cli import cli
from ocync_core.config import DEFAULT_CACHE, load_config
from ocync_core.health import parse_listen
from ocync_core.sharding import Shard, shard_config
from ocync_core.watch import parse_interval

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "ocync"
EXAMPLES = CHART / "examples"
RELEASE = "mirror"
NAMESPACE = "mirrors"
FULLNAME = "mirror-ocync"
CONFIG_FILE = "/etc/ocync/config.yaml"
SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
OLDEST_KUBERNETES = "1.29"  # Chart.yaml's kubeVersion
KUBE_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.utils.latest_version().rpartition(".")[0])

# name -> (values files under examples/, values over them, release name)
CASES: dict[str, tuple[list[str], dict[str, Any], str]] = {
    "defaults": ([], {}, RELEASE),
    "cronjob": (["cronjob.values.yaml"], {}, RELEASE),
    "job": (["job.values.yaml"], {}, RELEASE),
    "watch": (["watch.values.yaml"], {}, RELEASE),
    "sharded": (["sharded.values.yaml"], {}, RELEASE),
    "sharded-job": ([], {"mode": "job", "shards": 3}, RELEASE),
    "sharded-watch": ([], {"mode": "watch", "shards": 3}, RELEASE),
    "pod-identity": ([], {"workloadIdentity": {"provider": "aws"}}, RELEASE),
    "azure": (
        [],
        {"workloadIdentity": {"provider": "azure", "azure": {"clientId": "c1", "tenantId": "t1"}}},
        RELEASE,
    ),
    "existing-account": ([], {"serviceAccount": {"create": False, "name": "mirror-bot"}}, RELEASE),
    "release-named-ocync": ([], {}, "ocync"),
    "bad-mode": ([], {"mode": "daemon"}, RELEASE),
    "gcp-without-account": ([], {"workloadIdentity": {"provider": "gcp"}}, RELEASE),
    "no-shards": ([], {"shards": 0}, RELEASE),
}
REFUSED = {
    "bad-mode": "value must be one of 'cronjob', 'job', 'watch'",
    "gcp-without-account": "provider=gcp needs workloadIdentity.gcp.serviceAccount",
    "no-shards": "/shards",
}
RENDERED = [name for name in CASES if name not in REFUSED]
LINTED = ["defaults", "cronjob", "job", "watch", "sharded"]
EXAMPLE_CASES = ["cronjob", "job", "watch", "sharded"]

_HELM = r"""
import json, sys
import helm_python as helm

def merged(base, over):
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = merged(out[key], value)
        out[key] = value
    return out

request = json.load(sys.stdin)
chart = helm.Chart.load(request["chart"])
results = {}
for name, case in request["cases"].items():
    values = {}
    for path in case["files"]:  # read as `helm -f` reads them
        with open(path) as handle:
            values = merged(values, helm.values_from_yaml(handle.read()))
    values = merged(values, case["values"])
    result = {"values": chart.merge_values(values)}
    try:
        result["manifests"] = chart.render(
            values, name=case["release"], namespace=request["namespace"], is_install=True
        )
    except helm.HelmError as error:
        result["error"] = str(error)
    if case["lint"]:
        result["lint"] = helm.lint(
            request["chart"], values, strict=True, namespace=request["namespace"]
        )
    results[name] = result
json.dump(results, sys.stdout)
"""


@dataclass(frozen=True)
class Rendered:
    values: dict[str, Any]  # the chart's defaults merged with the case's values, as Helm did
    objects: list[dict[str, Any]]
    error: str | None
    lint: dict[str, Any] | None

    def find(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.objects if o["kind"] == kind]
        if name is not None:
            found = [o for o in found if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {len(found)}"
        return found[0]

    def pods(self) -> list[dict[str, Any]]:
        """The pod templates of the workloads (CronJob, Job, Deployments)."""
        pods = []
        for o in self.objects:
            if o["kind"] == "CronJob":
                pods.append(o["spec"]["jobTemplate"]["spec"]["template"])
            elif o["kind"] in ("Job", "Deployment"):
                pods.append(o["spec"]["template"])
        assert pods, "no workload rendered"
        return pods

    def pod(self) -> dict[str, Any]:
        pods = self.pods()
        assert len(pods) == 1, f"expected one workload, rendered {len(pods)}"
        return pods[0]

    def config_text(self) -> str:
        return self.find("ConfigMap")["data"]["config.yaml"]


@pytest.fixture(scope="module")
def rendered() -> dict[str, Rendered]:
    request = {
        "chart": str(CHART),
        "namespace": NAMESPACE,
        "cases": {
            name: {
                "files": [str(EXAMPLES / f) for f in files],
                "values": values,
                "release": release,
                "lint": name in LINTED,
            }
            for name, (files, values, release) in CASES.items()
        },
    }
    helm = subprocess.run(
        [sys.executable, "-c", _HELM],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert helm.returncode == 0, f"Helm failed to run: {helm.stderr[-2000:]}"
    results = {}
    for name, result in json.loads(helm.stdout).items():
        objects = [
            document
            for template, text in sorted(result.get("manifests", {}).items())
            if template.endswith((".yaml", ".yml"))
            for document in yaml.safe_load_all(text)
            if document
        ]
        results[name] = Rendered(result["values"], objects, result.get("error"), result.get("lint"))
    return results


def container(pod: dict[str, Any]) -> dict[str, Any]:
    (ocync,) = [c for c in pod["spec"]["containers"] if c["name"] == "ocync"]
    return ocync


def env_of(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(pod).get("env", [])}


def parse_args(args: list[str]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The container's arguments as ocync's command line reads them (ENTRYPOINT is `ocync`):
    the global options, the command, and the command's options."""
    at = next(i for i, arg in enumerate(args) if arg in cli.commands)
    group = cli.make_context("ocync", list(args[:at]))
    command = cli.commands[args[at]]
    return group.params, args[at], command.make_context(args[at], list(args[at + 1 :])).params


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """`$(VAR)` in a container's args, expanded as the kubelet does for variables it knows."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)


@functools.cache
def _definitions(version: str) -> Registry:
    text = (SCHEMAS / f"v{version}.0-local-strict" / "_definitions.json").read_text()
    return Resource.from_contents(json.loads(text)) @ Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = SCHEMAS / f"v{version}.0-local-strict" / f"{kind.lower()}-{group}.json"
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ _definitions(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_helm_refuses_values_that_cannot_work(rendered: dict[str, Rendered]) -> None:
    for name, message in REFUSED.items():
        assert rendered[name].error is not None, f"case {name}: Helm rendered values it must refuse"
        assert message in rendered[name].error, (
            f"case {name}: the refusal does not say why: {rendered[name].error}"
        )
    for name in RENDERED:
        assert rendered[name].error is None, f"case {name} does not render: {rendered[name].error}"


@pytest.mark.parametrize("case", LINTED)
def test_the_chart_lints_clean(rendered: dict[str, Rendered], case: str) -> None:
    lint = rendered[case].lint
    assert lint is not None and lint["total_charts_linted"] == 1
    problems = [m for m in lint["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not problems and not lint["errors"], f"helm lint --strict ({case}): {problems}"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", RENDERED)
def test_every_object_is_valid_for_kubernetes(
    rendered: dict[str, Rendered], case: str, version: str
) -> None:
    assert (SCHEMAS / f"v{version}.0-local-strict").is_dir(), (
        f"kubernetes-validate {kubernetes_validate.__version__} ships no schemas for {version}"
    )
    for document in rendered[case].objects:
        validator = _validator(version, document["kind"], document["apiVersion"])
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)
        ]
        assert not errors, (
            f"{document['kind']} {document['metadata']['name']} ({case}) is not valid "
            f"Kubernetes {version}: {errors[:3]}"
        )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "defaults",
            {("ConfigMap", FULLNAME), ("ServiceAccount", FULLNAME), ("CronJob", FULLNAME)},
        ),
        (
            "cronjob",
            {
                ("ConfigMap", FULLNAME),
                ("ServiceAccount", FULLNAME),
                ("CronJob", FULLNAME),
                ("PersistentVolumeClaim", f"{FULLNAME}-cache"),
            },
        ),
        ("job", {("ConfigMap", FULLNAME), ("ServiceAccount", FULLNAME), ("Job", FULLNAME)}),
        (
            "watch",
            {
                ("ConfigMap", FULLNAME),
                ("ServiceAccount", FULLNAME),
                ("Deployment", FULLNAME),
                ("Service", FULLNAME),
            },
        ),
        (
            "sharded",
            {
                ("ConfigMap", FULLNAME),
                ("ServiceAccount", FULLNAME),
                ("CronJob", FULLNAME),
                ("PersistentVolumeClaim", f"{FULLNAME}-cache"),
            },
        ),
        ("sharded-job", {("ConfigMap", FULLNAME), ("ServiceAccount", FULLNAME), ("Job", FULLNAME)}),
        (
            "sharded-watch",
            {("ConfigMap", FULLNAME), ("ServiceAccount", FULLNAME), ("Service", FULLNAME)}
            | {("Deployment", f"{FULLNAME}-shard-{i}") for i in range(3)},
        ),
        (
            "release-named-ocync",
            {("ConfigMap", "ocync"), ("ServiceAccount", "ocync"), ("CronJob", "ocync")},
        ),
    ],
)
def test_each_mode_renders_its_objects(
    rendered: dict[str, Rendered], case: str, expected: set[tuple[str, str]]
) -> None:
    got = [(o["kind"], o["metadata"]["name"]) for o in rendered[case].objects]
    assert len(got) == len(set(got)), f"{case}: an object is rendered twice: {got}"
    assert set(got) == expected, f"{case}: rendered {sorted(got)}, expected {sorted(expected)}"


@pytest.mark.parametrize("case", EXAMPLE_CASES)
def test_the_configmap_holds_the_config_value(rendered: dict[str, Rendered], case: str) -> None:
    config = rendered[case].values["config"]
    text = rendered[case].config_text()
    if isinstance(config, str):
        assert text.strip() == config.strip(), f"{case}: the ConfigMap is not the config text"
    else:
        assert yaml.safe_load(text) == config, f"{case}: the ConfigMap differs from values' config"


@pytest.mark.parametrize("case", EXAMPLE_CASES)
def test_the_config_loads_as_ocync_loads_it(
    rendered: dict[str, Rendered], case: str, tmp_path: Path
) -> None:
    text = rendered[case].config_text()
    pod = rendered[case].pods()[0]
    variables = set(re.findall(r"\$\{(\w+)", text))
    from_secrets = bool(container(pod).get("envFrom"))
    unset = variables - set(env_of(pod))
    assert from_secrets or not unset, f"{case}: ${{{sorted(unset)}}} reach the pod from nowhere"
    path = tmp_path / "config.yaml"
    path.write_text(text)
    config = load_config(path, env={name: "value" for name in variables})
    mappings = yaml.safe_load(text)["mappings"]
    assert len(config.mappings) == len(mappings)
    if case == "job":  # a string config keeps tags as typed: YAML 1.1 would read 1.10 as 1.1
        assert "1.10" in config.mappings[0].tags.include


@pytest.mark.parametrize(
    ("case", "command"),
    [("defaults", "sync"), ("cronjob", "sync"), ("job", "sync"), ("watch", "watch")],
)
def test_the_container_runs_ocync_on_the_configmap(
    rendered: dict[str, Rendered], case: str, command: str
) -> None:
    pod = rendered[case].pod()
    ocync = container(pod)
    assert "command" not in ocync, "the chart must leave the image's ENTRYPOINT (ocync) in place"
    global_options, name, options = parse_args(ocync["args"])
    assert name == command
    assert global_options["log_format"] == rendered[case].values["logFormat"]
    assert options["config_path"] == CONFIG_FILE
    assert options.get("shard") is None, f"{case}: one process must sync the whole config"
    (mount,) = [m for m in ocync["volumeMounts"] if m["mountPath"] == str(Path(CONFIG_FILE).parent)]
    assert "subPath" not in mount, "a subPath mount never sees ConfigMap updates"
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    configmap = rendered[case].find("ConfigMap")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert Path(CONFIG_FILE).name in configmap["data"]


@pytest.mark.parametrize(
    ("case", "account", "annotations"),
    [
        (
            "cronjob",
            FULLNAME,
            {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ocync-mirror"},
        ),
        ("pod-identity", FULLNAME, {}),  # EKS Pod Identity: an association, no annotation
        (
            "watch",
            FULLNAME,
            {"iam.gke.io/gcp-service-account": "ocync-mirror@acme-tools.iam.gserviceaccount.com"},
        ),
        (
            "azure",
            FULLNAME,
            {"azure.workload.identity/client-id": "c1", "azure.workload.identity/tenant-id": "t1"},
        ),
        ("existing-account", "mirror-bot", None),
        ("release-named-ocync", "ocync", {}),
    ],
)
def test_the_service_account_carries_the_workload_identity(
    rendered: dict[str, Rendered], case: str, account: str, annotations: dict[str, str] | None
) -> None:
    result = rendered[case]
    for pod in result.pods():
        assert pod["spec"]["serviceAccountName"] == account
    accounts = [o for o in result.objects if o["kind"] == "ServiceAccount"]
    if annotations is None:
        assert not accounts, f"{case}: serviceAccount.create=false still creates one"
        return
    (created,) = accounts
    assert created["metadata"]["name"] == account
    assert created["metadata"].get("annotations", {}) == annotations
    azure = result.pod()["metadata"]["labels"].get("azure.workload.identity/use")
    assert azure == ("true" if case == "azure" else None), (
        "Azure workload identity injects its token only into pods labelled for it"
    )


def test_env_and_secrets_reach_the_container(rendered: dict[str, Rendered]) -> None:
    cronjob = rendered["cronjob"].pod()
    assert env_of(cronjob)["AWS_USE_FIPS_ENDPOINT"] == {
        "name": "AWS_USE_FIPS_ENDPOINT",
        "value": "true",
    }
    assert container(cronjob)["envFrom"] == [{"secretRef": {"name": "dockerhub"}}]

    watch = rendered["watch"].pod()
    assert env_of(watch)["GHCR_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ghcr", "key": "token"}
    }

    job = rendered["job"].pod()
    docker_config = env_of(job)["DOCKER_CONFIG"]["value"]
    (mount,) = [m for m in container(job)["volumeMounts"] if m["mountPath"] == docker_config]
    (volume,) = [v for v in job["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "registry-creds"
    assert volume["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}], (
        "ocync reads $DOCKER_CONFIG/config.json; the Secret's key must land there"
    )


@pytest.mark.parametrize("case", ["watch", "sharded-watch"])
def test_watch_probes_and_service_use_port_9090(rendered: dict[str, Rendered], case: str) -> None:
    result = rendered[case]
    service = result.find("Service")
    assert service["spec"]["publishNotReadyAddresses"] is True, (
        "metrics of a pod that is not ready (a failing mirror) must still be scraped"
    )
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == 9090
    for pod in result.pods():
        ocync = container(pod)
        ports = {p["name"]: p["containerPort"] for p in ocync["ports"]}
        assert service_port["targetPort"] in ports
        _, name, options = parse_args(ocync["args"])
        assert name == "watch"
        listen = parse_listen(options["listen"])[1]
        assert listen == 9090 == ports[service_port["targetPort"]], (
            f"ocync watch listens on {listen}, the container port is "
            f"{ports[service_port['targetPort']]}: both must be 9090"
        )
        assert parse_interval(options["interval"]) == parse_interval(
            result.values["watch"]["interval"]
        )
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = ocync[probe]["httpGet"]
            assert get["path"] == path, f"{probe} must ask {path}"
            assert ports.get(get["port"], get["port"]) == 9090, f"{probe} must ask port 9090"
        labels = pod["metadata"]["labels"]
        selector = service["spec"]["selector"]
        assert selector.items() <= labels.items(), "the Service does not select the watch pods"


@pytest.mark.parametrize(
    ("case", "shards", "parallelism"), [("sharded", 4, 2), ("sharded-job", 3, 3)]
)
def test_sharded_pods_split_the_mappings(
    rendered: dict[str, Rendered], case: str, shards: int, parallelism: int, tmp_path: Path
) -> None:
    result = rendered[case]
    workload = next(o for o in result.objects if o["kind"] in ("CronJob", "Job"))
    job = (
        workload["spec"]["jobTemplate"]["spec"]
        if workload["kind"] == "CronJob"
        else workload["spec"]
    )
    assert job.get("completionMode") == "Indexed", (
        "a sharded Job must be an Indexed Job: its pods need their index to pick their shard"
    )
    assert (job["completions"], job["parallelism"]) == (shards, parallelism)
    pod = job["template"]
    args = container(pod)["args"]
    assert args[args.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{shards}"
    index = env_of(pod).get("JOB_COMPLETION_INDEX", {})
    assert index.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    ), "$(JOB_COMPLETION_INDEX) expands only to a variable of the container's env"

    path = tmp_path / "config.yaml"
    path.write_text(result.config_text())
    config = load_config(path, env={})
    synced: list[str] = []
    for index in range(shards):
        expanded = [kubelet_expand(a, {"JOB_COMPLETION_INDEX": str(index)}) for a in args]
        _, _, options = parse_args(expanded)
        shard = Shard.parse(options["shard"])
        assert shard == Shard(index, shards)
        synced += [m.key for m in shard_config(config, shard).mappings]
    assert sorted(synced) == sorted(m.key for m in config.mappings), (
        "the shards of the Indexed Job do not sync every mapping exactly once"
    )


def test_sharded_watch_runs_one_deployment_per_shard(rendered: dict[str, Rendered]) -> None:
    deployments = sorted(
        (o for o in rendered["sharded-watch"].objects if o["kind"] == "Deployment"),
        key=lambda o: o["metadata"]["name"],
    )
    shards = []
    for deployment in deployments:
        _, _, options = parse_args(container(deployment["spec"]["template"])["args"])
        shards.append(Shard.parse(options["shard"]))
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"]["type"] == "Recreate", (
            "a rolling update would run two pods of one shard at once"
        )
    assert shards == [Shard(i, 3) for i in range(3)]
    for mine in deployments:
        selector = mine["spec"]["selector"]["matchLabels"]
        selected = [
            other["metadata"]["name"]
            for other in deployments
            if selector.items() <= other["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected == [mine["metadata"]["name"]], f"selectors overlap: {selected}"


def _dockerfile_user() -> tuple[int, int, str]:
    text = (ROOT / "Dockerfile").read_text()
    final = text.rpartition("\nFROM ")[2]
    uid, gid = re.findall(r"^USER (\d+):(\d+)$", final, re.MULTILINE)[-1]
    home = re.search(r"HOME=(\S+)", final)
    assert home, "the Dockerfile's final stage sets no HOME"
    return int(uid), int(gid), home.group(1)


@pytest.mark.parametrize("case", ["defaults", "watch", "sharded"])
def test_the_pod_fits_the_image(rendered: dict[str, Rendered], case: str) -> None:
    uid, gid, home = _dockerfile_user()
    pod = rendered[case].pods()[0]
    security = pod["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid), (
        "the pod must run as the image's own user"
    )
    assert security["runAsNonRoot"] is True
    ocync = container(pod)
    assert ocync["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    writable = {m["mountPath"]: volumes[m["name"]] for m in ocync["volumeMounts"]}
    assert "emptyDir" in writable.get("/tmp", {}), "ocync needs a writable /tmp (staging, scratch)"
    cache_dir = rendered[case].values["cache"]["mountPath"]
    default_cache = Path(DEFAULT_CACHE.replace("~", home, 1))
    assert default_cache.parent == Path(cache_dir), (
        f"the default cache {default_cache} must land on the cache volume ({cache_dir})"
    )
    claim = rendered[case].values["cache"]["type"] == "persistentVolumeClaim"
    assert ("persistentVolumeClaim" in writable[cache_dir]) == claim
    if claim:
        pvc = rendered[case].find("PersistentVolumeClaim")
        assert writable[cache_dir]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert ocync["resources"] == rendered[case].values["resources"]


def test_the_chart_deploys_this_version_of_ocync(rendered: dict[str, Rendered]) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version, "Chart.yaml's appVersion must follow pyproject.toml"
    assert container(rendered["defaults"].pod())["image"] == f"ocync:{version}"
    assert chart["kubeVersion"] == f">={OLDEST_KUBERNETES}.0-0", (
        "the schemas the objects are checked against must start at the chart's kubeVersion"
    )


# Values whose content is Kubernetes' or ocync's own, documented there rather than key by key.
OPAQUE_VALUES = {
    "config",
    "resources",
    "podSecurityContext",
    "securityContext",
    "livenessProbe",
    "readinessProbe",
}


def _value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key not in OPAQUE_VALUES:
            paths += _value_paths(value, f"{prefix}{key}.")
        else:
            paths.append(f"{prefix}{key}")
    return paths


def test_every_value_is_documented() -> None:
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    table = doc.partition("\n## Values\n")[2].partition("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = []
    for path in _value_paths(values):
        parent, _, leaf = path.rpartition(".")
        named = any(
            f"`{path}`" in row or (parent and f"`{parent}." in row and f"`.{leaf}`" in row)
            for row in rows
        )
        if not named:
            missing.append(path)
    assert not missing, f"values missing from docs/kubernetes.md's Values table: {missing}"
