"""Teardown steps, one Prefect task each, in the order of ``tasks.teardown_plan.TEARDOWN_ORDER``.

Each step reads first and writes only what is there (absent = done, nothing written), so a
second teardown writes nothing. Every wait is bounded (``tasks.common.wait_until``); the
resource group delete is waited on, never fire-and-forget (PITFALLS P22). Deletes of federated
credentials hold the same per-identity lock as their writes (P4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prefect import task
from prefect.tasks import exponential_backoff

from blocks.credentials import AzureCredentials
from keyless_gitops.spec import EnvironmentSpec, Names
from tasks.aks import get_cluster
from tasks.common import (
    is_transient,
    load_credentials,
    lock_name,
    log,
    retry_transient,
    serialized,
    to_rest,
    wait_for_poller,
    wait_until,
)
from tasks.identity import get_identity
from tasks.keyvault import get_key_vault
from tasks.observe import ARGO_GROUP, ARGO_VERSION, kubernetes_api
from tasks.resource_group import get_resource_group
from tasks.teardown_plan import (
    Outcome,
    TeardownIncompleteError,
    TeardownResult,
    TeardownStep,
)

K8S_WAIT = 5 * 60
EXTENSION_WAIT = 20 * 60
GROUP_WAIT = 45 * 60
PURGE_WAIT = 10 * 60
ARGO_FINALIZER = "resources-finalizer.argocd.argoproj.io"


def _result(
    step: TeardownStep, resource: str, outcome: Outcome, started: float, detail: str = ""
) -> TeardownResult:
    r = TeardownResult(
        step=step, resource=resource, outcome=outcome, detail=detail, seconds=round(time.time() - started, 2)
    )
    log().info("teardown %s %s: %s%s", step.value, resource, outcome.value, f" ({detail})" if detail else "")
    return r


def _k8s_absent(fn: Callable[[], Any]) -> bool:
    """Run a Kubernetes call; True when the object is already gone (404)."""
    try:
        fn()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def _cluster_api(creds: AzureCredentials, names: Names) -> k8s.ApiClient | None:
    """The cluster's API client, or None when the cluster is gone (nothing in it to delete)."""
    cluster = get_cluster(creds.get_client(ContainerServiceClient), names)
    if cluster is None or (cluster.get("properties") or {}).get("provisioningState") == "Deleting":
        return None
    return kubernetes_api(creds, names)


@task(
    name="teardown: Argo CD Applications",
    timeout_seconds=K8S_WAIT + 120,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def delete_applications(spec: EnvironmentSpec, credentials_block: str) -> TeardownResult:
    """The Application first, while Argo CD still runs to process its finalizer (P23)."""
    started = time.time()
    names = spec.names
    ns, name = spec.extension.namespace, spec.gitops.application
    resource = f"Application {ns}/{name}"
    api = _cluster_api(load_credentials(credentials_block), names)
    if api is None:
        return _result(TeardownStep.APPLICATIONS, resource, Outcome.ABSENT, started, "cluster gone")
    with api:
        custom = k8s.CustomObjectsApi(api)

        def get() -> Any:
            return custom.get_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "applications", name)

        if _k8s_absent(get):
            return _result(TeardownStep.APPLICATIONS, resource, Outcome.ABSENT, started)
        if not _k8s_absent(
            lambda: custom.delete_namespaced_custom_object(ARGO_GROUP, ARGO_VERSION, ns, "applications", name)
        ):
            try:
                wait_until(lambda: _k8s_absent(get), what=f"{resource} to be deleted", timeout=K8S_WAIT)
            except TimeoutError:
                # A finalizer nobody processes (Argo CD already gone) would hang forever: drop it.
                log().warning("%s still there after %ss: removing its finalizer (P23)", resource, K8S_WAIT)
                _k8s_absent(
                    lambda: custom.patch_namespaced_custom_object(
                        ARGO_GROUP, ARGO_VERSION, ns, "applications", name, {"metadata": {"finalizers": None}}
                    )
                )
                wait_until(lambda: _k8s_absent(get), what=f"{resource} to be deleted", timeout=60)
    return _result(TeardownStep.APPLICATIONS, resource, Outcome.DELETED, started)


@task(
    name="teardown: sample app namespace",
    timeout_seconds=K8S_WAIT + 120,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def delete_sample_namespace(spec: EnvironmentSpec, credentials_block: str) -> list[TeardownResult]:
    """The sample app's namespace and the Application's destination namespace (P19)."""
    started = time.time()
    names = spec.names
    namespaces = [spec.sample_app.namespace, spec.gitops.destination_namespace]
    api = _cluster_api(load_credentials(credentials_block), names)
    if api is None:
        return [
            _result(TeardownStep.SAMPLE_NAMESPACE, f"namespace {ns}", Outcome.ABSENT, started, "cluster gone")
            for ns in namespaces
        ]
    out = []
    with api:
        core = k8s.CoreV1Api(api)
        for ns in namespaces:
            t0 = time.time()
            if _k8s_absent(lambda ns=ns: core.read_namespace(ns)):  # type: ignore[misc]
                out.append(_result(TeardownStep.SAMPLE_NAMESPACE, f"namespace {ns}", Outcome.ABSENT, t0))
                continue
            _k8s_absent(lambda ns=ns: core.delete_namespace(ns))  # type: ignore[misc]
            wait_until(
                lambda ns=ns: _k8s_absent(lambda: core.read_namespace(ns)),  # type: ignore[misc]
                what=f"namespace {ns} to be deleted",
                timeout=K8S_WAIT,
            )
            out.append(_result(TeardownStep.SAMPLE_NAMESPACE, f"namespace {ns}", Outcome.DELETED, t0))
    return out


@task(
    name="teardown: Argo CD extension",
    timeout_seconds=EXTENSION_WAIT + 120,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def delete_extension(spec: EnvironmentSpec, credentials_block: str) -> TeardownResult:
    started = time.time()
    names = spec.names
    resource = f"extension {names.cluster}/{spec.extension.name}"
    client = load_credentials(credentials_block).get_client(SourceControlConfigurationClient)
    args = (
        names.resource_group,
        "Microsoft.ContainerService",
        "managedClusters",
        names.cluster,
        spec.extension.name,
    )
    try:
        client.extensions.get(*args)
    except ResourceNotFoundError:
        return _result(TeardownStep.EXTENSION, resource, Outcome.ABSENT, started)
    with serialized(lock_name("cluster", names.cluster_id), timeout=EXTENSION_WAIT):
        wait_for_poller(
            client.extensions.begin_delete(*args), what=f"{resource} delete", timeout=EXTENSION_WAIT
        )
    return _result(TeardownStep.EXTENSION, resource, Outcome.DELETED, started)


@task(
    name="teardown: federated credentials",
    timeout_seconds=10 * 60,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def delete_federated_credentials(spec: EnvironmentSpec, credentials_block: str) -> list[TeardownResult]:
    """Every federated credential on the identity (the spec's and any added by hand), one at a time."""
    started = time.time()
    names = spec.names
    client = load_credentials(credentials_block).get_client(ManagedServiceIdentityClient)
    if get_identity(client, names) is None:
        return [
            _result(
                TeardownStep.FEDERATED_CREDENTIALS,
                f"{names.identity}/*",
                Outcome.ABSENT,
                started,
                "identity gone",
            )
        ]
    present = [
        str(f.name) for f in client.federated_identity_credentials.list(names.resource_group, names.identity)
    ]
    if not present:
        return [_result(TeardownStep.FEDERATED_CREDENTIALS, f"{names.identity}/*", Outcome.ABSENT, started)]
    out = []
    with serialized(lock_name("fic", names.identity_id)):
        for name in present:
            t0 = time.time()
            client.federated_identity_credentials.delete(names.resource_group, names.identity, name)
            out.append(
                _result(TeardownStep.FEDERATED_CREDENTIALS, f"{names.identity}/{name}", Outcome.DELETED, t0)
            )
    return out


@task(
    name="teardown: role assignments",
    timeout_seconds=10 * 60,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def delete_role_assignments(spec: EnvironmentSpec, credentials_block: str) -> list[TeardownResult]:
    """All role assignments of the environment's identity (anywhere in the subscription, so none is
    left orphaned) and every assignment scoped inside the environment's vault (the pipeline's own
    Secrets Officer grant included)."""
    started = time.time()
    names = spec.names
    creds = load_credentials(credentials_block)
    credential = creds.get_credential()
    auth = creds.get_client(AuthorizationManagementClient, credential)
    identity = get_identity(creds.get_client(ManagedServiceIdentityClient, credential), names)
    found: dict[str, str] = {}
    if identity is not None:
        pid = str((identity.get("properties") or {}).get("principalId"))
        for a in auth.role_assignments.list_for_subscription(filter=f"principalId eq '{pid}'"):
            ra = to_rest(a)
            found[str(ra["id"])] = f"{names.identity} at {(ra.get('properties') or {}).get('scope')}"
    if get_key_vault(creds.get_client(KeyVaultManagementClient, credential), names) is not None:
        for a in auth.role_assignments.list_for_scope(names.key_vault_id, filter="atScope()"):
            ra = to_rest(a)
            scope = str((ra.get("properties") or {}).get("scope", ""))
            if scope.lower() == names.key_vault_id.lower():
                found.setdefault(str(ra["id"]), f"{(ra.get('properties') or {}).get('principalId')} at vault")
    if not found:
        return [_result(TeardownStep.ROLE_ASSIGNMENTS, "role assignments", Outcome.ABSENT, started)]
    out = []
    for ra_id, what in sorted(found.items()):
        t0 = time.time()
        try:
            auth.role_assignments.delete_by_id(ra_id)
            outcome = Outcome.DELETED
        except ResourceNotFoundError:
            outcome = Outcome.ABSENT
        out.append(_result(TeardownStep.ROLE_ASSIGNMENTS, what, outcome, t0))
    return out


@task(
    name="teardown: resource group",
    timeout_seconds=GROUP_WAIT + 300,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def delete_resource_group(spec: EnvironmentSpec, credentials_block: str) -> TeardownResult:
    """The group and everything in it, waited to the end (never ``--no-wait``: P22)."""
    started = time.time()
    names = spec.names
    client = load_credentials(credentials_block).get_client(ResourceManagementClient)
    resource = f"resource group {names.resource_group}"
    if get_resource_group(client, names.resource_group) is None:
        return _result(TeardownStep.RESOURCE_GROUP, resource, Outcome.ABSENT, started)
    poller = client.resource_groups.begin_delete(names.resource_group)
    wait_for_poller(poller, what=f"{resource} delete", timeout=GROUP_WAIT)
    return _result(TeardownStep.RESOURCE_GROUP, resource, Outcome.DELETED, started)


@task(
    name="teardown: purge vault",
    timeout_seconds=PURGE_WAIT + 120,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def purge_vault(spec: EnvironmentSpec, credentials_block: str) -> TeardownResult:
    """Purge the soft-deleted vault so its name is free again (P10), unless purge protection forbids it."""
    started = time.time()
    names = spec.names
    client = load_credentials(credentials_block).get_client(KeyVaultManagementClient)
    resource = f"key vault {names.key_vault}"
    try:
        deleted = to_rest(client.vaults.get_deleted(names.key_vault, spec.location))
    except ResourceNotFoundError:
        return _result(TeardownStep.PURGE_VAULT, resource, Outcome.ABSENT, started, "not soft-deleted")
    props = deleted.get("properties") or {}
    if props.get("purgeProtectionEnabled"):
        return _result(
            TeardownStep.PURGE_VAULT,
            resource,
            Outcome.KEPT,
            started,
            "purge protection is on: the vault stays soft-deleted until "
            f"{props.get('scheduledPurgeDate')} and its name cannot be reused before then",
        )
    try:
        poller = client.vaults.begin_purge_deleted(names.key_vault, spec.location)
        wait_for_poller(poller, what=f"{resource} purge", timeout=PURGE_WAIT)
    except HttpResponseError as exc:
        if exc.status_code == 403 or (exc.error is not None and "Purge" in str(exc.error.code)):
            if is_transient(exc):
                raise
            return _result(
                TeardownStep.PURGE_VAULT,
                resource,
                Outcome.KEPT,
                started,
                f"purge refused ({exc.status_code} {exc.error.code if exc.error else ''}): "
                "purge protection or missing permission; the vault stays soft-deleted",
            )
        raise
    return _result(TeardownStep.PURGE_VAULT, resource, Outcome.DELETED, started, "purged")


@task(
    name="teardown: verify",
    timeout_seconds=300,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_transient,
)
def verify_gone(spec: EnvironmentSpec, credentials_block: str, *, vault_kept: bool) -> TeardownResult:
    """Nothing of the environment is left: no group, no soft-deleted vault (unless it must stay)."""
    started = time.time()
    names = spec.names
    creds = load_credentials(credentials_block)
    credential = creds.get_credential()
    left = []
    if (
        get_resource_group(creds.get_client(ResourceManagementClient, credential), names.resource_group)
        is not None
    ):
        left.append(f"resource group {names.resource_group}")
    kv = creds.get_client(KeyVaultManagementClient, credential)
    try:
        kv.vaults.get_deleted(names.key_vault, spec.location)
        if not vault_kept:
            left.append(f"soft-deleted vault {names.key_vault}")
    except ResourceNotFoundError:
        pass
    if left:
        raise TeardownIncompleteError(f"teardown of {spec.environment} left: {', '.join(left)}")
    return _result(
        TeardownStep.VERIFY,
        spec.environment,
        Outcome.VERIFIED,
        started,
        "nothing left" + (" but the purge-protected soft-deleted vault" if vault_kept else ""),
    )
