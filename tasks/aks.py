"""AKS managed cluster: OIDC issuer, workload identity and the Key Vault CSI addon, all at create.

``ensure_cluster`` GETs the cluster and PUTs the full desired state only when something differs
(there is no PATCH for managed clusters; the addon goes into the create call, PITFALLS P21). The
create is a long LRO, waited with a deadline and progress lines (P22); mutations of one cluster
are serialised across runs with a global concurrency limit (P20). ``get_kubeconfig`` returns the
user kubeconfig as bytes, to be kept in memory only (P24).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.containerservice import ContainerServiceClient
from prefect import task
from prefect.tasks import exponential_backoff

from blocks.credentials import AzureCredentials
from keyless_gitops.bodies import differs, managed_cluster_body
from keyless_gitops.spec import EnvironmentSpec, Names
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
    wait_until_settled,
)
from tasks.resource_group import ResourceGroupFacts

CREATE_TIMEOUT = 30 * 60
BUSY_STATES = frozenset({"Creating", "Updating", "Upgrading", "Scaling", "Starting", "Stopping", "Deleting"})


@dataclass(frozen=True, kw_only=True)
class ClusterFacts(StepFacts):
    issuer_url: str
    fqdn: str | None


class ClusterNotReady(RuntimeError):
    pass


def get_cluster(client: ContainerServiceClient, names: Names) -> dict[str, Any] | None:
    try:
        return to_rest(client.managed_clusters.get(names.resource_group, names.cluster))
    except ResourceNotFoundError:
        return None


_state = provisioning_state


def _cluster_diff(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    want = {k: v for k, v in desired.items() if k != "location"}
    props = dict(want["properties"])
    props.pop("dnsPrefix", None)  # immutable after create; not ours to reconcile
    want["properties"] = props
    return differs(want, actual)


@task(
    name="AKS cluster",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_condition_fn=retry_transient,
    timeout_seconds=CREATE_TIMEOUT + 15 * 60,
    persist_result=True,
)
def ensure_cluster(
    spec: EnvironmentSpec, credentials_block: str, resource_group: ResourceGroupFacts
) -> ClusterFacts:
    """In ``resource_group`` (which must exist first)."""
    watch = Stopwatch()
    names = spec.names
    client = load_credentials(credentials_block).get_client(ContainerServiceClient)
    desired = managed_cluster_body(spec)
    actual = get_cluster(client, names)
    if _state(actual) in BUSY_STATES:
        log().info("cluster %s is %s; waiting for it to settle", names.cluster, _state(actual))

        actual = wait_until_settled(
            lambda: get_cluster(client, names),
            BUSY_STATES,
            what=f"cluster {names.cluster} to finish {_state(actual)}",
            timeout=CREATE_TIMEOUT,
        )
    change: Change = "unchanged"
    if actual is None:
        change = "created"
    else:
        diff = _cluster_diff(desired, actual)
        if diff or _state(actual) != "Succeeded":
            change = "updated"
            log().info("cluster %s differs at %s (state %s)", names.cluster, ", ".join(diff), _state(actual))
    if change != "unchanged":
        log().info(
            "cluster %s: %s (long operation)",
            names.cluster,
            "creating" if change == "created" else "updating",
        )
        with serialized(lock_name("cluster", names.cluster_id), timeout=CREATE_TIMEOUT):
            poller = client.managed_clusters.begin_create_or_update(
                names.resource_group,
                names.cluster,
                desired,  # type: ignore[call-overload]
            )
            actual = to_rest(wait_for_poller(poller, what=f"cluster {names.cluster}", timeout=CREATE_TIMEOUT))
    assert actual is not None
    props = actual.get("properties", {})
    if props.get("provisioningState") != "Succeeded":
        raise ClusterNotReady(f"cluster {names.cluster} is {props.get('provisioningState')}")
    issuer = (props.get("oidcIssuerProfile") or {}).get("issuerURL")
    if not issuer:
        raise ClusterNotReady(f"cluster {names.cluster} reports no OIDC issuer URL")
    log().info("cluster %s: %s (issuer %s)", names.cluster, change, issuer)
    return ClusterFacts(
        step="cluster",
        resource=names.cluster,
        id=str(actual.get("id") or names.cluster_id),
        change=change,
        issuer_url=issuer,  # verbatim: FIC issuers must match it exactly (P7)
        fqdn=props.get("fqdn"),
        **watch.stamp(),
    )


def get_kubeconfig(creds: AzureCredentials, names: Names) -> bytes:
    """The cluster's user kubeconfig (a credential: keep it in memory, never log or return it)."""
    client = creds.get_client(ContainerServiceClient)
    result = client.managed_clusters.list_cluster_user_credentials(names.resource_group, names.cluster)
    kubeconfigs = result.kubeconfigs or []
    if not kubeconfigs or kubeconfigs[0].value is None:
        raise ClusterNotReady(f"cluster {names.cluster} returned no kubeconfig")
    return bytes(kubeconfigs[0].value)
