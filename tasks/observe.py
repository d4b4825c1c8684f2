"""Read-only observation of one environment for validation: GET and list calls only.

Every read goes through the credentials block's client factory (the real SDKs and the real
``kubernetes`` client, against Azure or the sandbox alike). The only POSTs are read-only by
definition (token grants, ``listClusterUserCredential``, TokenRequest); tests assert the sandbox journal shows
no write during validation.

Two end-to-end proofs, both comparing SHA-256 hashes **in this module** and keeping only whether
they match (no return value, log line, exception text or artifact carries values or hashes):
the synced Kubernetes Secret against the vault's current value (the chain held at the last mount),
and a live walk of the chain as the app's ServiceAccount — TokenRequest (a short-lived token, not
stored; read-only like a token grant), Entra ``client_assertion`` exchange, Key Vault read — which
proves it holds now and names the link where it breaks (``_live_chain``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.kubernetesconfiguration import SourceControlConfigurationClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from blocks.credentials import AzureCredentials
from keyless_gitops.spec import EnvironmentSpec, Names
from tasks.aks import get_cluster, get_kubeconfig
from tasks.common import to_rest
from tasks.identity import get_identity
from tasks.keyvault import get_key_vault
from tasks.observation import (
    ApplicationObs,
    ClusterObs,
    DeploymentObs,
    ExtensionObs,
    FederatedCredentialObs,
    IdentityObs,
    LiveChainObs,
    MountObs,
    Observation,
    PodObs,
    ProofObs,
    ResourceGroupObs,
    RoleAssignmentObs,
    SecretObs,
    SecretProviderClassObs,
    ServiceAccountObs,
    VaultObs,
)
from tasks.resource_group import get_resource_group

T = TypeVar("T")

SPC_GROUP, SPC_VERSION = "secrets-store.csi.x-k8s.io", "v1"
ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"
SAMPLE_DEPLOYMENT = "sample-app"  # keyless_gitops.manifests.sample_app_manifests names it so

_READ_ERRORS = (HttpResponseError, ServiceRequestError, ApiException, HTTPError, OSError)


def _why(exc: BaseException) -> str:
    """A short reason for a failed read: type and status/code, never a response body."""
    if isinstance(exc, HttpResponseError):
        code = exc.error.code if exc.error is not None else None
        return f"{type(exc).__name__} {exc.status_code}{f' {code}' if code else ''}"
    if isinstance(exc, ApiException):
        return f"ApiException {exc.status} {exc.reason or ''}".strip()
    return type(exc).__name__


class _Reader:
    """Runs reads, turning failures into ``errors[area]`` instead of aborting the validation."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def read(self, area: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except _READ_ERRORS as exc:
            self.errors[area] = _why(exc)
            return None


def _k8s_get(fn: Callable[[], T]) -> T | None:
    """A Kubernetes GET where 404 means absent."""
    try:
        return fn()
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def observe(spec: EnvironmentSpec, creds: AzureCredentials) -> tuple[Observation, str]:
    """Everything validation needs, read-only; returns the observation and the tenant id."""
    names = spec.names
    r = _Reader()
    credential = creds.get_credential()
    tenant_id = creds.tenant_id or creds.pipeline_principal(credential).tenant_id

    def client(kind: type[T]) -> T:
        return creds.get_client(kind, credential)

    rg = r.read(
        "resource_group", lambda: get_resource_group(client(ResourceManagementClient), names.resource_group)
    )
    cluster = r.read("cluster", lambda: get_cluster(client(ContainerServiceClient), names)) if rg else None
    vault = r.read("vault", lambda: get_key_vault(client(KeyVaultManagementClient), names)) if rg else None
    msi = client(ManagedServiceIdentityClient)
    identity = r.read("identity", lambda: get_identity(msi, names)) if rg else None

    obs: dict[str, Any] = {}
    if rg:
        obs["resource_group"] = ResourceGroupObs(
            location=str(rg.get("location", "")),
            provisioning_state=(rg.get("properties") or {}).get("provisioningState"),
        )
    cluster_obs = _cluster(cluster) if cluster else None
    obs["cluster"] = cluster_obs
    vault_uri: str | None = None
    if vault:
        props = vault.get("properties") or {}
        vault_uri = props.get("vaultUri")
        obs["vault"] = VaultObs(
            provisioning_state=props.get("provisioningState"),
            rbac_authorization=bool(props.get("enableRbacAuthorization")),
            vault_uri=vault_uri,
            tenant_id=props.get("tenantId"),
        )

    # -- secrets: versions and enabled flags; values only hashed, in memory, for the proof --------
    vault_hashes: dict[str, bytes] = {}
    secrets: dict[str, SecretObs | None] = {}
    if vault_uri:
        sc = creds.get_secret_client(vault_uri, credential)
        try:
            for name in spec.secrets:
                try:
                    s = sc.get_secret(name)
                except ResourceNotFoundError:
                    secrets[name] = None
                    continue
                secrets[name] = SecretObs(version=s.properties.version, enabled=bool(s.properties.enabled))
                if s.value is not None:
                    vault_hashes[name] = _sha256(s.value.encode())
        except _READ_ERRORS as exc:
            r.errors["secrets"] = _why(exc)
            secrets = {}
    obs["secrets"] = secrets

    # -- identity, federated credentials, role assignments ---------------------------------------
    principal_id: str | None = None
    if identity:
        props = identity.get("properties") or {}
        principal_id = str(props.get("principalId"))
        obs["identity"] = IdentityObs(
            client_id=str(props.get("clientId")), principal_id=principal_id, tenant_id=props.get("tenantId")
        )
        fics = r.read(
            "federated_credentials",
            lambda: [
                to_rest(f)
                for f in msi.federated_identity_credentials.list(names.resource_group, names.identity)
            ],
        )
        obs["federated_credentials"] = {
            str(f.get("name")): FederatedCredentialObs(
                issuer=str((f.get("properties") or {}).get("issuer")),
                subject=str((f.get("properties") or {}).get("subject")),
                audiences=tuple((f.get("properties") or {}).get("audiences") or ()),
            )
            for f in fics or []
        }
        auth = client(AuthorizationManagementClient)
        assignments = r.read(
            "role_assignments",
            lambda: [
                to_rest(a)
                for a in auth.role_assignments.list_for_subscription(
                    filter=f"principalId eq '{principal_id}'"
                )
            ],
        )
        obs["role_assignments"] = tuple(
            RoleAssignmentObs(
                id=str(a.get("id")),
                scope=str((a.get("properties") or {}).get("scope")),
                role_definition_id=str((a.get("properties") or {}).get("roleDefinitionId")),
                principal_type=(a.get("properties") or {}).get("principalType"),
            )
            for a in assignments or []
            if str((a.get("properties") or {}).get("principalId", "")).lower() == principal_id.lower()
        )

    # -- the Argo CD extension ---------------------------------------------------------------------
    if cluster:
        ext_client = client(SourceControlConfigurationClient)

        def get_ext() -> dict[str, Any] | None:
            try:
                return to_rest(
                    ext_client.extensions.get(
                        names.resource_group,
                        "Microsoft.ContainerService",
                        "managedClusters",
                        names.cluster,
                        spec.extension.name,
                    )
                )
            except ResourceNotFoundError:
                return None

        ext = r.read("extension", get_ext)
        if ext:
            props = ext.get("properties") or {}
            obs["extension"] = ExtensionObs(
                provisioning_state=props.get("provisioningState"),
                version=props.get("version"),
                release_train=props.get("releaseTrain"),
                auto_upgrade_minor_version=props.get("autoUpgradeMinorVersion"),
                settings={str(k): str(v) for k, v in (props.get("configurationSettings") or {}).items()},
            )

    # -- Kubernetes and Argo CD ----------------------------------------------------------------------
    if cluster_obs is not None and cluster_obs.provisioning_state == "Succeeded":
        try:
            _observe_cluster(spec, names, creds, vault_hashes, secrets, obs)
            if vault_uri and vault_hashes:
                obs["live_chain"] = _live_chain(spec, names, creds, tenant_id, vault_uri, vault_hashes, obs)
        except _READ_ERRORS as exc:
            r.errors["kubernetes"] = _why(exc)
    elif cluster is not None:
        r.errors["kubernetes"] = f"cluster is {cluster_obs.provisioning_state if cluster_obs else 'absent'}"
    if "secrets" in r.errors:
        r.errors["proof"] = r.errors["secrets"]
    return Observation(**obs, errors=dict(r.errors)), tenant_id


WORKLOAD_AUDIENCE = "api://AzureADTokenExchange"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
_AADSTS = re.compile(r"AADSTS\d+")


def _live_chain(
    spec: EnvironmentSpec,
    names: Names,
    creds: AzureCredentials,
    tenant_id: str,
    vault_uri: str,
    vault_hashes: dict[str, bytes],
    obs: dict[str, Any],
) -> LiveChainObs:
    """Walk the keyless chain now, as the sample app would: a ServiceAccount token from the cluster
    (TokenRequest: nothing is stored), exchanged at Entra for the client id the ServiceAccount is
    annotated with, then each seeded secret read from Key Vault with that token and compared by
    SHA-256 with what the pipeline reads. The mounted copy proves the chain held at the last mount;
    this proves it holds now. Values and hashes never leave this function."""
    app = spec.sample_app
    sa: ServiceAccountObs | None = (obs.get("service_accounts") or {}).get(
        f"{app.namespace}/{app.service_account}"
    )
    client_id = sa.annotations.get(CLIENT_ID_ANNOTATION) if sa else None
    if sa is None:
        return LiveChainObs(client_id=None, error="Kubernetes: ServiceAccount missing", matches={})
    if not client_id:
        return LiveChainObs(
            client_id=None, error=f"Kubernetes: no {CLIENT_ID_ANNOTATION} annotation", matches={}
        )
    api = kubernetes_api(creds, names)
    with api:
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(audiences=[WORKLOAD_AUDIENCE], expiration_seconds=600)
        )
        try:
            granted = k8s.CoreV1Api(api).create_namespaced_service_account_token(
                app.service_account, app.namespace, request
            )
        except ApiException as exc:
            return LiveChainObs(
                client_id=client_id, error=f"Kubernetes TokenRequest {exc.status}", matches={}
            )
    if granted.status is None or not granted.status.token:
        return LiveChainObs(
            client_id=client_id, error="Kubernetes TokenRequest returned no token", matches={}
        )
    token = str(granted.status.token)
    reader = creds.get_secret_client(
        vault_uri, creds.workload_credential(tenant_id, client_id, lambda: token)
    )
    matches: dict[str, bool] = {}
    try:
        for name, expected in vault_hashes.items():
            value = reader.get_secret(name).value or ""
            matches[name] = hmac.compare_digest(_sha256(value.encode()), expected)
            del value
    except ClientAuthenticationError as exc:
        code = _AADSTS.search(str(exc))
        return LiveChainObs(
            client_id=client_id, error=f"Entra {code.group(0) if code else type(exc).__name__}", matches={}
        )
    except HttpResponseError as exc:
        inner = getattr(exc.error, "innererror", None) or {}
        detail = f" ({inner['code']})" if isinstance(inner, dict) and inner.get("code") else ""
        return LiveChainObs(
            client_id=client_id, error=f"Key Vault {_why(exc).split(' ', 1)[1]}{detail}", matches={}
        )
    return LiveChainObs(client_id=client_id, error=None, matches=matches)


def _cluster(c: dict[str, Any]) -> ClusterObs:
    props = c.get("properties") or {}
    addons = {str(k).lower(): v for k, v in (props.get("addonProfiles") or {}).items()}
    oidc = props.get("oidcIssuerProfile") or {}
    return ClusterObs(
        provisioning_state=props.get("provisioningState"),
        power_state=(props.get("powerState") or {}).get("code"),
        oidc_issuer_enabled=bool(oidc.get("enabled")),
        issuer_url=oidc.get("issuerURL"),
        workload_identity_enabled=bool(
            ((props.get("securityProfile") or {}).get("workloadIdentity") or {}).get("enabled")
        ),
        csi_addon_enabled=bool((addons.get("azurekeyvaultsecretsprovider") or {}).get("enabled")),
    )


def kubernetes_api(creds: AzureCredentials, names: Names) -> k8s.ApiClient:
    """A ``kubernetes`` client for the cluster; the kubeconfig stays in memory (P24)."""
    kubeconfig = yaml.safe_load(get_kubeconfig(creds, names))
    return k8s_config.new_client_from_config_dict(kubeconfig)


def _pod_ready(pod: Any) -> bool:
    if (pod.status.phase or "") != "Running":
        return False
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _object_names(objects_param: str | None) -> tuple[str, ...]:
    """The Azure provider's ``objects`` parameter: YAML ``array`` of YAML strings (P11)."""
    if not objects_param:
        return ()
    try:
        doc = yaml.safe_load(objects_param) or {}
        items = [yaml.safe_load(i) if isinstance(i, str) else i for i in doc.get("array") or []]
        return tuple(str(i.get("objectAlias") or i.get("objectName")) for i in items if isinstance(i, dict))
    except (yaml.YAMLError, AttributeError):
        return ("(unparseable objects parameter)",)


def _object_name(obj_id: str) -> str:
    """SecretProviderClassPodStatus ``objects[].id`` is ``<type>/<name>`` (the Azure provider)."""
    return obj_id.rsplit("/", 1)[-1]


def _observe_cluster(
    spec: EnvironmentSpec,
    names: Names,
    creds: AzureCredentials,
    vault_hashes: dict[str, bytes],
    secrets: dict[str, SecretObs | None],
    obs: dict[str, Any],
) -> None:
    api = kubernetes_api(creds, names)
    with api:
        core, apps, custom = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.CustomObjectsApi(api)
        app = spec.sample_app
        ext_ns = spec.extension.namespace
        accounts = [(ext_ns, sa) for sa in spec.extension.federated_service_accounts]
        accounts.append((app.namespace, app.service_account))
        sas: dict[str, ServiceAccountObs | None] = {}
        pods: dict[str, tuple[PodObs, ...]] = {}
        pods_by_ns: dict[str, list[Any]] = {}
        for ns, sa in accounts:
            got: Any = _k8s_get(lambda ns=ns, sa=sa: core.read_namespaced_service_account(sa, ns))  # type: ignore[misc]
            sas[f"{ns}/{sa}"] = (
                None
                if got is None
                else ServiceAccountObs(
                    annotations=dict(got.metadata.annotations or {}), labels=dict(got.metadata.labels or {})
                )
            )
            if ns not in pods_by_ns:
                pods_by_ns[ns] = list(core.list_namespaced_pod(ns).items)
            pods[f"{ns}/{sa}"] = tuple(
                PodObs(
                    name=p.metadata.name,
                    labels=dict(p.metadata.labels or {}),
                    ready=_pod_ready(p),
                    service_account=p.spec.service_account_name,
                )
                for p in pods_by_ns[ns]
                if p.spec.service_account_name == sa and p.metadata.deletion_timestamp is None
            )
        obs["service_accounts"] = sas
        obs["pods"] = pods

        dep: Any = _k8s_get(lambda: apps.read_namespaced_deployment(SAMPLE_DEPLOYMENT, app.namespace))
        if dep is not None:
            obs["deployment"] = DeploymentObs(
                replicas=int(dep.spec.replicas or 0),
                ready_replicas=int(dep.status.ready_replicas or 0),
                template_labels=dict(dep.spec.template.metadata.labels or {}),
            )

        spc: Any = _k8s_get(
            lambda: custom.get_namespaced_custom_object(
                SPC_GROUP, SPC_VERSION, app.namespace, "secretproviderclasses", app.secret_provider_class
            )
        )
        if spc is not None:
            params = {str(k): str(v) for k, v in ((spc.get("spec") or {}).get("parameters") or {}).items()}
            obs["secret_provider_class"] = SecretProviderClassObs(
                parameters=params,
                object_names=_object_names(params.get("objects")),
                secret_objects=tuple((spc.get("spec") or {}).get("secretObjects") or ()),
            )

        # Mounts of the sample app's ready pods, as the CSI driver recorded them.
        ready_pods = {p.name for p in pods.get(f"{app.namespace}/{app.service_account}", ()) if p.ready}
        statuses: list[Any] = custom.list_namespaced_custom_object(  # type: ignore[attr-defined]
            SPC_GROUP, SPC_VERSION, app.namespace, "secretproviderclasspodstatuses"
        ).get("items", [])
        mounts = []
        for st in statuses:
            status = st.get("status") or {}
            if status.get("secretProviderClassName") != app.secret_provider_class:
                continue
            if status.get("podName") not in ready_pods:
                continue
            mounts.append(
                MountObs(
                    pod=str(status.get("podName")),
                    mounted=bool(status.get("mounted")),
                    versions={
                        _object_name(str(o.get("id"))): str(o.get("version"))
                        for o in status.get("objects") or []
                    },
                )
            )
        obs["mounts"] = tuple(mounts)

        # The end-to-end proof: versions, and sha256 of the synced Secret vs the vault's value.
        synced: Any = _k8s_get(lambda: core.read_namespaced_secret(app.synced_secret, app.namespace))
        synced_data = dict((synced.data or {}) if synced is not None else {})
        spc_obs: SecretProviderClassObs | None = obs.get("secret_provider_class")
        key_of = {
            str(item.get("objectName")): str(item.get("key"))
            for so in (spc_obs.secret_objects if spc_obs else ())
            if so.get("secretName") == app.synced_secret
            for item in so.get("data") or []
        }
        proofs = {}
        for name in spec.secrets:
            s = secrets.get(name)
            encoded = synced_data.get(key_of.get(name, name))
            match: bool | None = None
            if encoded is not None and name in vault_hashes:
                match = hmac.compare_digest(_sha256(base64.b64decode(encoded)), vault_hashes[name])
            proofs[name] = ProofObs(
                vault_version=s.version if s else None,
                mounted_versions=tuple(m.versions.get(name, "(not mounted)") for m in mounts),
                synced_matches_vault=match,
            )
        obs["proofs"] = proofs

        application: Any = _k8s_get(
            lambda: custom.get_namespaced_custom_object(
                ARGO_GROUP, ARGO_VERSION, ext_ns, "applications", spec.gitops.application
            )
        )
        if application is not None:
            status = application.get("status") or {}
            sync = status.get("sync") or {}
            obs["application"] = ApplicationObs(
                sync_status=sync.get("status"),
                health_status=(status.get("health") or {}).get("status"),
                revision=sync.get("revision"),
                target_revision=((application.get("spec") or {}).get("source") or {}).get("targetRevision"),
                resources_out_of_sync=tuple(
                    f"{res.get('kind')}/{res.get('name')}"
                    for res in status.get("resources") or []
                    if res.get("status") == "OutOfSync"
                ),
            )
