"""Kubernetes objects in the cluster: the sample app's namespace, ServiceAccount, SecretProviderClass
and Deployment, and the Argo CD Application — rendered from ``manifests/`` and applied server-side.

Idempotent: each object is read first and applied (server-side apply, field manager
``keyless-gitops``) only when the live object does not already hold every field of the manifest;
a second run writes nothing. The kubeconfig is fetched from ARM inside each task and kept in
memory (P24). Readiness is awaited with ``wait_until``: the Deployment's pods ready with both
secrets mounted (``SecretProviderClassPodStatus``) and synced into the Secret (P12); the
Application on ``status.sync.status`` / ``status.health.status`` (P15).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from prefect import task
from prefect.tasks import exponential_backoff

from keyless_gitops.manifests import application_manifest, sample_app_manifests
from keyless_gitops.spec import EnvironmentSpec
from tasks.aks import ClusterFacts
from tasks.common import (
    Change,
    StepFacts,
    Stopwatch,
    is_transient,
    load_credentials,
    log,
    retry_transient,
    wait_until,
)
from tasks.extension import ExtensionFacts
from tasks.identity import FederatedCredentialFacts, IdentityFacts
from tasks.keyvault import VaultFacts
from tasks.kube_apply import _ref, apply_object, kube_client
from tasks.roles import RoleAssignmentFacts
from tasks.secrets import SecretsFacts

CONFIG_HASH_ANNOTATION = "keyless-gitops/config-hash"
APP_READY_TIMEOUT = 10 * 60
APPLICATION_TIMEOUT = 15 * 60


@dataclass(frozen=True, kw_only=True)
class KubeObjectsFacts(StepFacts):
    objects: tuple[tuple[str, Change], ...]  # ("Kind/namespace/name", change)


def _overall(changes: list[Change]) -> Change:
    if all(c == "unchanged" for c in changes):
        return "unchanged"
    return "created" if "created" in changes else "updated"


def _apply_all(dyn: DynamicClient, manifests: list[dict[str, Any]]) -> list[tuple[str, Change]]:
    out = []
    for m in manifests:
        change = apply_object(dyn, m)
        log().info("%s: %s", _ref(m), change)
        out.append((_ref(m), change))
    return out


_TASK = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
    persist_result=True,
)


@task(name="workload identity objects", timeout_seconds=300, **_TASK)  # type: ignore[call-overload]
def ensure_workload_objects(
    spec: EnvironmentSpec,
    credentials_block: str,
    cluster: ClusterFacts,
    identity: IdentityFacts,
    vault: VaultFacts,
) -> KubeObjectsFacts:
    """Namespace, ServiceAccount (annotated and labelled) and SecretProviderClass (P11, P12)."""
    watch = Stopwatch()
    names = spec.names
    manifests = sample_app_manifests(spec, client_id=identity.client_id, tenant_id=vault.tenant_id)[:3]
    with kube_client(load_credentials(credentials_block), names) as api:
        done = _apply_all(DynamicClient(api), manifests)
    return KubeObjectsFacts(
        step="workload",
        resource=f"{spec.sample_app.namespace}: namespace, {spec.sample_app.service_account}, "
        f"{spec.sample_app.secret_provider_class}",
        id=f"{cluster.id}/namespaces/{spec.sample_app.namespace}",
        change=_overall([c for _, c in done]),
        objects=tuple(done),
        **watch.stamp(),
    )


def _config_hash(*parts: object) -> str:
    """Changes when what the pods picked up at start changes (identity, SPC, FICs, role, secrets)."""
    return hashlib.sha256(json.dumps([str(p) for p in parts], sort_keys=True).encode()).hexdigest()[:16]


def sample_app_status(dyn: DynamicClient, spec: EnvironmentSpec) -> tuple[bool, str]:
    """(ready, description): pods ready, every secret mounted and synced into the Secret."""
    app = spec.sample_app
    deploy = dyn.resources.get(api_version="apps/v1", kind="Deployment").get(
        name="sample-app", namespace=app.namespace
    )
    status = deploy.status or {}
    want = deploy.spec.replicas or 1
    ready = status.get("readyReplicas") or 0
    updated = status.get("updatedReplicas") or 0
    if (status.get("observedGeneration") or 0) < deploy.metadata.generation or ready < want or updated < want:
        pods = dyn.resources.get(api_version="v1", kind="Pod").get(
            namespace=app.namespace, label_selector="app=sample-app"
        )
        reasons = []
        for pod in pods.items:
            for cs in (pod.status or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting")
                if waiting:
                    reasons.append(f"{pod.metadata.name}: {waiting.get('reason')}")
            if not reasons:
                reasons.append(f"{pod.metadata.name}: {(pod.status or {}).get('phase')}")
        return False, f"{ready}/{want} pods ready" + (f" ({'; '.join(reasons)})" if reasons else "")
    spcps = dyn.resources.get(
        api_version="secrets-store.csi.x-k8s.io/v1", kind="SecretProviderClassPodStatus"
    ).get(namespace=app.namespace)
    mounted = [
        s
        for s in spcps.items
        if (s.status or {}).get("secretProviderClassName") == app.secret_provider_class
        and (s.status or {}).get("mounted")
        and len((s.status or {}).get("objects") or []) >= len(spec.secrets)
    ]
    if not mounted:
        return False, "pods ready but no SecretProviderClassPodStatus shows the secrets mounted"
    try:
        secret = dyn.resources.get(api_version="v1", kind="Secret").get(
            name=app.synced_secret, namespace=app.namespace
        )
    except NotFoundError:
        return False, f"Secret {app.synced_secret} not synced yet"
    missing = set(spec.secrets) - set((secret.data or {}).keys())
    if missing:
        return False, f"Secret {app.synced_secret} lacks {', '.join(sorted(missing))}"
    return True, f"{ready}/{want} pods ready, {len(spec.secrets)} secrets mounted and synced"


@task(name="sample app", timeout_seconds=APP_READY_TIMEOUT + 120, **_TASK)  # type: ignore[call-overload]
def ensure_sample_app(
    spec: EnvironmentSpec,
    credentials_block: str,
    cluster: ClusterFacts,
    identity: IdentityFacts,
    vault: VaultFacts,
    workload: KubeObjectsFacts,
    secrets: SecretsFacts,
    reader: RoleAssignmentFacts,
    federated: list[FederatedCredentialFacts],
) -> KubeObjectsFacts:
    """The Deployment (pod label P13, CSI volume), then wait: pods ready, secrets mounted and synced."""
    watch = Stopwatch()
    names = spec.names
    deployment = sample_app_manifests(spec, client_id=identity.client_id, tenant_id=vault.tenant_id)[3]
    deployment["spec"]["template"]["metadata"]["annotations"] = {
        CONFIG_HASH_ANNOTATION: _config_hash(
            identity.client_id,
            vault.vault_uri,
            [ref for ref, _ in workload.objects],
            sorted((f.subject, f.issuer) for f in federated),
            reader.id,
            [(s.name, s.version) for s in secrets.secrets],
        )
    }
    with kube_client(load_credentials(credentials_block), names) as api:
        dyn = DynamicClient(api)
        change = apply_object(dyn, deployment)
        log().info("%s: %s", _ref(deployment), change)
        last = ["not checked"]

        def ready() -> bool:
            ok, last[0] = sample_app_status(dyn, spec)
            return ok

        wait_until(
            ready,
            what=f"sample app in {spec.sample_app.namespace} (pods ready, secrets mounted)",
            timeout=APP_READY_TIMEOUT,
            interval=0.25,
            max_interval=5.0,
            retry_on=is_transient,
            describe=lambda: last[0],
        )
        log().info("sample app: %s", last[0])
    return KubeObjectsFacts(
        step="sample_app",
        resource=f"{spec.sample_app.namespace}/sample-app",
        id=f"{cluster.id}/namespaces/{spec.sample_app.namespace}/deployments/sample-app",
        change=change,
        objects=((_ref(deployment), change),),
        **watch.stamp(),
    )


class ApplicationBroken(RuntimeError):
    """Argo CD keeps reporting an error it will not recover from by itself (e.g. an unknown revision)."""


# Argo CD condition types that mean the source cannot be rendered at all (argo-cd
# pkg/apis/application/v1alpha1/types.go ApplicationConditionType).
FATAL_CONDITIONS = frozenset({"ComparisonError", "InvalidSpecError"})
FATAL_GRACE = 60.0


def application_status(dyn: DynamicClient, spec: EnvironmentSpec) -> tuple[bool, str]:
    """(synced and healthy, description)."""
    ok, desc, _ = _application_status(dyn, spec)
    return ok, desc


def _application_status(dyn: DynamicClient, spec: EnvironmentSpec) -> tuple[bool, str, bool]:
    """(synced and healthy, description, a fatal condition is present)."""
    g = spec.gitops
    app = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Application").get(
        name=g.application, namespace=spec.extension.namespace
    )
    status = app.to_dict().get("status") or {}
    sync = (status.get("sync") or {}).get("status")
    health = (status.get("health") or {}).get("status")
    revision = (status.get("sync") or {}).get("revision")
    desc = f"sync {sync}, health {health}, revision {revision}"
    problems = [f"{c.get('type')}: {c.get('message')}" for c in status.get("conditions") or []]
    if problems:
        desc += "; " + "; ".join(problems)[:500]
    fatal = any(c.get("type") in FATAL_CONDITIONS for c in status.get("conditions") or [])
    return sync == "Synced" and health == "Healthy", desc, fatal


@task(name="Argo CD application", timeout_seconds=APPLICATION_TIMEOUT + 120, **_TASK)  # type: ignore[call-overload]
def ensure_gitops_application(
    spec: EnvironmentSpec, credentials_block: str, cluster: ClusterFacts, extension: ExtensionFacts
) -> KubeObjectsFacts:
    """The Application (pinned revision, own namespace, prune/selfHeal); wait: Synced + Healthy."""
    watch = Stopwatch()
    names = spec.names
    manifest = application_manifest(spec)
    with kube_client(load_credentials(credentials_block), names) as api:
        dyn = DynamicClient(api)
        change = apply_object(dyn, manifest)
        log().info("%s: %s", _ref(manifest), change)
        last = ["not checked"]

        fatal_since: list[float] = []

        def synced() -> bool:
            ok, last[0], fatal = _application_status(dyn, spec)
            if not fatal:
                fatal_since.clear()
            elif not fatal_since:
                fatal_since.append(time.monotonic())
            elif time.monotonic() - fatal_since[0] > FATAL_GRACE:
                raise ApplicationBroken(f"Application {spec.gitops.application}: {last[0]}")
            return ok

        wait_until(
            synced,
            what=f"Application {spec.gitops.application} Synced and Healthy",
            timeout=APPLICATION_TIMEOUT,
            interval=0.25,
            max_interval=5.0,
            retry_on=lambda e: is_transient(e) or (isinstance(e, ApiException) and e.status == 404),
            describe=lambda: last[0],
        )
        log().info("application %s: %s", spec.gitops.application, last[0])
    return KubeObjectsFacts(
        step="application",
        resource=f"{spec.extension.namespace}/{spec.gitops.application}",
        id=f"{cluster.id}/namespaces/{spec.extension.namespace}/applications/{spec.gitops.application}",
        change=change,
        objects=((_ref(manifest), change),),
        **watch.stamp(),
    )
