"""The environment spec: everything one environment of the recipe's stack needs, validated before any call.

It is the provision flow's parameter (a pydantic model, so the Prefect UI renders it as a form).
The ``dev`` defaults are the recipe's own values (``recipe/secure-gitops-workload-identity-argocd.md``)
with its defects fixed (PITFALLS P1, P16-P19).

**How the name suffix is kept (P1).** The recipe builds ``RESOURCE_GROUP`` from ``RANDOM_SUFFIX``
before setting it, and a fresh random suffix on every run would create a new stack each time. Here
the suffix is *derived*, not drawn: ``sha256("<subscription>/<environment>")[:6]`` unless ``suffix``
is given. It is therefore generated once per (subscription, environment) and kept without any
state file: every run, every machine and every Prefect deployment computes the same names, and two
subscriptions using the same environment name still get distinct globally-unique vault names. The
flow binds the subscription from its credentials (``spec.for_subscription``); set ``suffix``
explicitly to pin names independently of the subscription.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# -- Azure naming rules -------------------------------------------------------------------------
# Sources: learn.microsoft.com "Naming rules and restrictions for Azure resources"
# (Microsoft.Resources/resourcegroups, Microsoft.ContainerService/managedClusters,
# Microsoft.KeyVault/vaults, Microsoft.ManagedIdentity/userAssignedIdentities).
NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "resource_group": (
        re.compile(r"^[-\w.()]{1,89}[-\w()]$"),
        "1-90 characters: letters, digits, underscores, hyphens, periods and parentheses; "
        "not ending in a period",
    ),
    "cluster": (
        re.compile(r"^[A-Za-z0-9][-_A-Za-z0-9]{0,61}[A-Za-z0-9]$|^[A-Za-z0-9]$"),
        "1-63 characters: letters, digits, underscores and hyphens; "
        "starting and ending with a letter or digit",
    ),
    "key_vault": (
        re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{1,22}[A-Za-z0-9]$"),
        "3-24 characters: letters, digits and hyphens; starting with a letter, ending with a letter or "
        "digit, no consecutive hyphens (and globally unique)",
    ),
    "identity": (
        re.compile(r"^[A-Za-z0-9][-_A-Za-z0-9]{2,127}$"),
        "3-128 characters: letters, digits, hyphens and underscores; starting with a letter or digit",
    ),
}

# Azure public-cloud regions (``az account list-locations --query [].name``), the ones AKS, Key Vault
# and managed identities are offered in.
KNOWN_LOCATIONS: frozenset[str] = frozenset(
    """
    australiacentral australiaeast australiasoutheast austriaeast belgiumcentral brazilsouth
    canadacentral canadaeast centralindia centralus chilecentral eastasia eastus eastus2 francecentral
    germanywestcentral indonesiacentral israelcentral italynorth japaneast japanwest jioindiawest
    koreacentral koreasouth malaysiawest mexicocentral newzealandnorth northcentralus northeurope
    norwayeast polandcentral qatarcentral southafricanorth southcentralus southeastasia southindia
    spaincentral swedencentral switzerlandnorth uaenorth uksouth ukwest westcentralus westeurope
    westus westus2 westus3
    """.split()
)

# -- The Argo CD extension: configuration keys per version (P16), HA node minimum (P17) ----------
# Source: azure-specs/argocd-extension-notes.md (tutorial revisions S2a/S2b for 0.0.x, S1/S4/S5 for
# 1.0.0-preview and later). Unknown versions are refused before any call.


class ExtensionKeys(BaseModel):
    model_config = ConfigDict(frozen=True)

    workload_identity_enabled: str
    workload_identity_client_id: str
    high_availability: str
    ha_min_nodes: int
    fixed: dict[str, str] = Field(default_factory=dict)


_KEYS_0_0_X = ExtensionKeys(
    workload_identity_enabled="workloadIdentity.enable",
    workload_identity_client_id="workloadIdentity.clientId",
    high_availability="deployWithHighAvailability",
    ha_min_nodes=3,
    fixed={"namespaceInstall": "false"},
)
_KEYS_1_X = ExtensionKeys(
    workload_identity_enabled="azure.workloadIdentity.enabled",
    workload_identity_client_id="azure.workloadIdentity.clientId",
    high_availability="redis-ha.enabled",
    ha_min_nodes=4,
)
EXTENSION_KEYS: dict[str, ExtensionKeys] = {
    "0.0.7-preview": _KEYS_0_0_X,
    "1.0.0-preview": _KEYS_1_X,
}
RELEASE_TRAINS = ("preview", "stable")

# Built-in role definition ids (learn.microsoft.com "Azure built-in roles", Security section).
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"

WORKLOAD_IDENTITY_AUDIENCE = "api://AzureADTokenExchange"

# aks-store-demo at the commit the sandbox fixture holds (sandbox/fixtures/README.md).
AKS_STORE_DEMO_REPO = "https://github.com/Azure-Samples/aks-store-demo.git"
AKS_STORE_DEMO_REVISION = "7ce10c5110d6a52d3517dfb6d7a7b7b2edf2e5a5"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_BLOCK_NAME = r"^[a-z0-9][-a-z0-9]{0,62}$"
_SECRET_NAME = r"^[A-Za-z0-9-]{1,127}$"  # noqa: S105 - a name pattern
_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

DnsLabel = Annotated[str, Field(pattern=_DNS_LABEL)]


class SpecError(ValueError):
    """The spec cannot work; raised before any call to Azure."""


class ExtensionSpec(BaseModel):
    """The Argo CD cluster extension, pinned (P16, P18)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: DnsLabel = "argocd"
    version: str = Field(default="1.0.0-preview", description="Pinned extension version (a known one).")
    release_train: Literal["preview", "stable"] = "preview"
    high_availability: bool = Field(default=False, description="Argo CD HA (needs enough nodes, P17).")
    namespace: DnsLabel = "argocd"
    federated_service_accounts: tuple[DnsLabel, ...] = Field(
        default=("argocd-application-controller", "argocd-server"),
        description="Argo CD ServiceAccounts that get a federated credential on the identity.",
    )
    extra_settings: dict[str, str] = Field(
        default_factory=dict, description="More configurationSettings for this version (not secret)."
    )

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: str) -> str:
        if v not in EXTENSION_KEYS:
            raise ValueError(
                f"unknown Argo CD extension version {v!r}; known: {', '.join(sorted(EXTENSION_KEYS))} "
                "(each version has its own configuration keys, PITFALLS P16)"
            )
        return v

    @property
    def key_map(self) -> ExtensionKeys:
        return EXTENSION_KEYS[self.version]

    @model_validator(mode="after")
    def _no_foreign_keys(self) -> ExtensionSpec:
        keys = self.key_map
        owned = {keys.workload_identity_enabled, keys.workload_identity_client_id, keys.high_availability}
        owned |= set(keys.fixed)
        clash = owned & set(self.extra_settings)
        if clash:
            raise ValueError(f"extra_settings may not set keys the pipeline owns: {', '.join(sorted(clash))}")
        other = {
            k
            for other_keys in EXTENSION_KEYS.values()
            if other_keys is not keys
            for k in (
                other_keys.workload_identity_enabled,
                other_keys.workload_identity_client_id,
                other_keys.high_availability,
                *other_keys.fixed,
            )
        }
        stale = other & set(self.extra_settings)
        if stale:
            raise ValueError(
                f"extra_settings has keys of another extension version ({', '.join(sorted(stale))}); "
                f"version {self.version} ignores them (PITFALLS P16)"
            )
        return self


class GitOpsSource(BaseModel):
    """The Argo CD Application: the real aks-store-demo, pinned, into its own namespace (P19)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    application: DnsLabel = "sample-app-gitops"
    repo_url: str = Field(default=AKS_STORE_DEMO_REPO, pattern=r"^https://\S+$")
    target_revision: str = Field(
        default=AKS_STORE_DEMO_REVISION, description="A pinned revision (commit or tag), not HEAD."
    )
    path: str = "kustomize/overlays/dev"
    destination_namespace: DnsLabel = "aks-store-demo"
    project: DnsLabel = "default"

    @field_validator("target_revision")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.strip().upper() in ("", "HEAD") or v.startswith("refs/heads/"):
            raise ValueError(
                "target_revision must be pinned (a commit or a tag), not a moving branch or HEAD"
            )
        return v


class SampleApp(BaseModel):
    """The recipe's sample app that reads Key Vault secrets through workload identity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: DnsLabel = "sample-app"
    service_account: DnsLabel = "sample-app-sa"
    secret_provider_class: DnsLabel = "sample-app-secrets"  # noqa: S105 - a name
    synced_secret: DnsLabel = Field(
        default="sample-app-secrets", description="Kubernetes Secret from secretObjects (P12)."
    )
    image: str = "nginx:1.27"
    federated_credential: DnsLabel = "sample-app"


class EnvironmentSpec(BaseModel):
    """One environment of the keyless GitOps stack. Names may contain ``{suffix}`` and ``{env}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: str = Field(
        default="dev", pattern=r"^[a-z][a-z0-9]{0,9}$", description="Short environment name."
    )
    subscription_id: str | None = Field(
        default=None, pattern=_UUID, description="Azure subscription; empty = the credentials' subscription."
    )
    location: str = "eastus"
    suffix: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]{3,8}$",
        description="Name suffix; empty = derived from subscription and environment (kept, never random).",
    )
    resource_group: str = "rg-gitops-demo-{suffix}"
    cluster_name: str = "aks-gitops-cluster"
    key_vault_name: str = "kv-gitops-{suffix}"
    identity_name: str = "mi-argocd-{suffix}"
    node_count: int = Field(default=3, ge=1, le=100)
    node_vm_size: str = Field(default="Standard_DS2_v2", pattern=r"^Standard_[A-Za-z0-9_]+$")
    kubernetes_version: str | None = Field(default=None, pattern=r"^\d+\.\d+(\.\d+)?$")
    soft_delete_retention_days: int = Field(default=7, ge=7, le=90)
    purge_protection: bool = False
    extension: ExtensionSpec = Field(default_factory=ExtensionSpec)
    gitops: GitOpsSource = Field(default_factory=GitOpsSource)
    sample_app: SampleApp = Field(default_factory=SampleApp)
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Key Vault secret name -> Prefect Secret block name holding its value. "
        "Empty = the recipe's two secrets, blocks named keyless-gitops-<env>-<secret>.",
    )
    tags: dict[str, str] = Field(
        default_factory=lambda: {"purpose": "gitops-demo", "environment": "development"}
    )
    protected: bool = Field(default=False, description="Teardown refuses unless confirmed by name.")

    # -- validation -----------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        env = data.get("environment", "dev")
        if not data.get("secrets"):
            data["secrets"] = {
                name: f"keyless-gitops-{env}-{name}" for name in ("database-connection-string", "api-key")
            }
        if data.get("suffix") is None and data.get("subscription_id"):
            data["suffix"] = derive_suffix(str(data["subscription_id"]), str(env))
        return data

    @field_validator("location")
    @classmethod
    def _known_location(cls, v: str) -> str:
        loc = v.replace(" ", "").lower()
        if loc not in KNOWN_LOCATIONS:
            raise ValueError(f"unknown Azure location {v!r}")
        return loc

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, v: dict[str, str]) -> dict[str, str]:
        for secret, block in v.items():
            if not re.match(_SECRET_NAME, secret):
                raise ValueError(f"Key Vault secret name {secret!r}: 1-127 letters, digits and hyphens")
            if not re.match(_BLOCK_NAME, block):
                raise ValueError(f"Prefect Secret block name {block!r}: lowercase letters, digits and dashes")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 45:  # 50 per resource; the pipeline adds its own
            raise ValueError("at most 45 tags")
        for k, val in v.items():
            if not k or len(k) > 512 or any(c in k for c in "<>%&\\?/") or len(val) > 256:
                raise ValueError(f"invalid tag {k!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> EnvironmentSpec:
        # Names are checked with the real suffix when known, else with a derived-length placeholder.
        for kind, template in self._templates().items():
            rendered = self._render(template, self.suffix or "a00000")
            pattern, rule = NAME_RULES[kind]
            if not pattern.match(rendered):
                raise ValueError(f"{kind} name {rendered!r} breaks Azure's naming rule: {rule}")
        keys = self.extension.key_map
        if self.extension.high_availability and self.node_count < keys.ha_min_nodes:
            raise ValueError(
                f"Argo CD HA with extension {self.extension.version} needs at least "
                f"{keys.ha_min_nodes} nodes "
                f"(node_count is {self.node_count}); set extension.high_availability=false (PITFALLS P17)"
            )
        namespaces = {self.sample_app.namespace, self.gitops.destination_namespace, self.extension.namespace}
        if len(namespaces) < 3:
            raise ValueError(
                "sample_app.namespace, gitops.destination_namespace and extension.namespace must differ "
                "(the Application gets its own namespace, PITFALLS P19)"
            )
        fic_names = [*self.extension.federated_service_accounts, self.sample_app.federated_credential]
        if len(set(fic_names)) != len(fic_names):
            raise ValueError("federated credential names must be unique per identity (PITFALLS P5)")
        if len(fic_names) > 20:
            raise ValueError("at most 20 federated credentials per identity (PITFALLS P5)")
        if not self.secrets:
            raise ValueError("at least one secret to seed")
        return self

    # -- names ----------------------------------------------------------------------------------
    def _templates(self) -> dict[str, str]:
        return {
            "resource_group": self.resource_group,
            "cluster": self.cluster_name,
            "key_vault": self.key_vault_name,
            "identity": self.identity_name,
        }

    def _render(self, template: str, suffix: str) -> str:
        try:
            return template.format(suffix=suffix, env=self.environment)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"name template {template!r}: only {{suffix}} and {{env}} may be used") from exc

    def for_subscription(self, subscription_id: str) -> EnvironmentSpec:
        """This spec bound to a subscription (the credentials'), its suffix derived if not set."""
        if self.subscription_id and self.subscription_id.lower() != subscription_id.lower():
            raise SpecError(
                f"the spec names subscription {self.subscription_id} but the credentials are for "
                f"{subscription_id}"
            )
        data = self.model_dump()
        data["subscription_id"] = subscription_id
        return EnvironmentSpec.model_validate(data)

    @property
    def names(self) -> Names:
        if not self.suffix or not self.subscription_id:
            raise SpecError("the spec is not bound to a subscription yet (call for_subscription)")
        return Names(
            subscription_id=self.subscription_id,
            resource_group=self._render(self.resource_group, self.suffix),
            cluster=self._render(self.cluster_name, self.suffix),
            key_vault=self._render(self.key_vault_name, self.suffix),
            identity=self._render(self.identity_name, self.suffix),
        )

    @property
    def all_tags(self) -> dict[str, str]:
        return {**self.tags, "managed-by": "keyless-gitops", "keyless-gitops-env": self.environment}

    @property
    def federated_subjects(self) -> dict[str, str]:
        """Federated credential name -> ServiceAccount subject, built from the real accounts (P7)."""
        subjects = {
            sa: f"system:serviceaccount:{self.extension.namespace}:{sa}"
            for sa in self.extension.federated_service_accounts
        }
        subjects[self.sample_app.federated_credential] = (
            f"system:serviceaccount:{self.sample_app.namespace}:{self.sample_app.service_account}"
        )
        return subjects


class Names(BaseModel):
    """The resolved Azure names and ids of one bound environment."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    resource_group: str
    cluster: str
    key_vault: str
    identity: str

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"

    @property
    def cluster_id(self) -> str:
        return f"{self.resource_group_id}/providers/Microsoft.ContainerService/managedClusters/{self.cluster}"

    @property
    def key_vault_id(self) -> str:
        return f"{self.resource_group_id}/providers/Microsoft.KeyVault/vaults/{self.key_vault}"

    @property
    def identity_id(self) -> str:
        rp = "Microsoft.ManagedIdentity/userAssignedIdentities"
        return f"{self.resource_group_id}/providers/{rp}/{self.identity}"

    def role_definition_id(self, role_guid: str) -> str:
        rp = "Microsoft.Authorization/roleDefinitions"
        return f"/subscriptions/{self.subscription_id}/providers/{rp}/{role_guid}"


def derive_suffix(subscription_id: str, environment: str) -> str:
    """The kept suffix: the same for the same (subscription, environment), everywhere (P1)."""
    return hashlib.sha256(f"{subscription_id.lower()}/{environment}".encode()).hexdigest()[:6]


def preset(environment: str) -> EnvironmentSpec:
    """The built-in spec of an environment: ``dev`` is the recipe; ``prod`` is protected."""
    if environment == "prod":
        return EnvironmentSpec(
            environment="prod",
            tags={"purpose": "gitops-demo", "environment": "production"},
            protected=True,
            purge_protection=True,
            soft_delete_retention_days=90,
        )
    if environment == "dev":
        return EnvironmentSpec()
    return EnvironmentSpec(
        environment=environment, tags={"purpose": "gitops-demo", "environment": environment}
    )
