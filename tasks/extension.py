"""The Argo CD cluster extension (``Microsoft.ArgoCD``), pinned.

``ensure_argocd_extension`` GETs the extension and PUTs only when it is missing or its type,
version, release train, auto-upgrade flag or configuration settings differ. The body carries the
version's own configuration keys (P16), HA explicit (P17), and ``releaseTrain`` and
``autoUpgradeMinorVersion`` explicit (the SDK would send Stable/true, P18). The identity goes in
through the extension configuration, not by annotating its ServiceAccounts by hand (P14). The
install is a long LRO (P22), serialised with other mutations of the same cluster (P20).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient
from kubernetes.dynamic import DynamicClient
from prefect import task
from prefect.tasks import exponential_backoff

from keyless_gitops.bodies import differs, extension_body
from keyless_gitops.manifests import argocd_service_account_labels
from keyless_gitops.spec import EXTENSION_KEYS, EnvironmentSpec, Names
from tasks.aks import ClusterFacts
from tasks.common import (
    Change,
    StepFacts,
    Stopwatch,
    load_credentials,
    lock_name,
    log,
    provisioning_state,
    retry_transient,
    serialized,
    to_rest,
    wait_for_poller,
    wait_until,
    wait_until_settled,
)
from tasks.identity import IdentityFacts
from tasks.kube_apply import apply_object, get_object, kube_client

INSTALL_TIMEOUT = 20 * 60
CLUSTER_RP = "Microsoft.ContainerService"
CLUSTER_TYPE = "managedClusters"
BUSY_STATES = frozenset({"Creating", "Updating", "Deleting"})


@dataclass(frozen=True, kw_only=True)
class ExtensionFacts(StepFacts):
    version: str
    release_train: str
    namespace: str


class ExtensionFailed(RuntimeError):
    pass


def get_extension(client: SourceControlConfigurationClient, names: Names, name: str) -> dict[str, Any] | None:
    try:
        return to_rest(
            client.extensions.get(names.resource_group, CLUSTER_RP, CLUSTER_TYPE, names.cluster, name)
        )
    except ResourceNotFoundError:
        return None


_state = provisioning_state


@task(
    name="Argo CD extension",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_condition_fn=retry_transient,
    timeout_seconds=INSTALL_TIMEOUT + 10 * 60,
    persist_result=True,
)
def ensure_argocd_extension(
    spec: EnvironmentSpec, credentials_block: str, cluster: ClusterFacts, identity: IdentityFacts
) -> ExtensionFacts:
    watch = Stopwatch()
    names = spec.names
    ext = spec.extension
    creds = load_credentials(credentials_block)
    client = creds.get_client(SourceControlConfigurationClient)
    desired = extension_body(spec, identity.client_id)
    actual = get_extension(client, names, ext.name)
    if _state(actual) in BUSY_STATES:
        actual = wait_until_settled(
            lambda: get_extension(client, names, ext.name),
            BUSY_STATES,
            what=f"extension {ext.name} to finish {_state(actual)}",
            timeout=INSTALL_TIMEOUT,
        )
    change: Change = "unchanged"
    if actual is None:
        change = "created"
    else:
        installed = str(actual.get("properties", {}).get("version") or "")
        if installed in EXTENSION_KEYS and EXTENSION_KEYS[installed] != ext.key_map:
            raise ExtensionFailed(
                f"extension {ext.name} runs {installed}, whose configuration keys differ from "
                f"{ext.version}'s; "
                "Microsoft documents this change as uninstall and reinstall (PITFALLS P16): remove the "
                "extension first (teardown), then provision again"
            )
        diff = differs(desired, actual)
        if diff or _state(actual) != "Succeeded":
            change = "updated"
            log().info("extension %s differs at %s (state %s)", ext.name, ", ".join(diff), _state(actual))
    if change != "unchanged":
        log().info("extension %s %s on %s: installing (long operation)", ext.name, ext.version, names.cluster)
        with serialized(lock_name("cluster", names.cluster_id), timeout=INSTALL_TIMEOUT):
            poller = client.extensions.begin_create(
                names.resource_group,
                CLUSTER_RP,
                CLUSTER_TYPE,
                names.cluster,
                ext.name,
                desired,
            )
            actual = to_rest(wait_for_poller(poller, what=f"extension {ext.name}", timeout=INSTALL_TIMEOUT))
    assert actual is not None
    if _state(actual) != "Succeeded":
        raise ExtensionFailed(f"extension {ext.name} is {_state(actual)}")
    # Recipe step 7's label on Argo CD's ServiceAccounts (the annotation comes from the settings).
    with kube_client(creds, names) as api:
        dyn = DynamicClient(api)
        for manifest in argocd_service_account_labels(spec):

            def exists(m: dict[str, Any] = manifest) -> bool:
                return get_object(dyn, m) is not None

            wait_until(
                exists,
                what=f"ServiceAccount {ext.namespace}/{manifest['metadata']['name']} from the extension",
                timeout=300,
                interval=0.5,
            )
            if apply_object(dyn, manifest) != "unchanged" and change == "unchanged":
                change = "updated"
    log().info("extension %s: %s", ext.name, change)
    return ExtensionFacts(
        step="extension",
        resource=f"{names.cluster}/{ext.name}",
        id=str(
            actual.get("id")
            or f"{cluster.id}/providers/Microsoft.KubernetesConfiguration/extensions/{ext.name}"
        ),
        change=change,
        version=ext.version,
        release_train=ext.release_train,
        namespace=ext.namespace,
        **watch.stamp(),
    )
