"""Azure credentials as a Prefect block, and the one factory that builds every SDK client.

Three ways to authenticate, chosen by which fields are set (all-or-none per way):

- **service principal**: ``tenant_id`` + ``client_id`` + ``client_secret`` (a ``SecretStr``);
- **workload identity** (keyless CI): ``tenant_id`` + ``client_id`` + ``federated_token_file``
  (the OIDC token a CI system writes, exchanged at Entra for an access token);
- **default chain**: none of them (``DefaultAzureCredential``: environment, managed identity, az login).

The endpoint fields (``arm_endpoint``, ``authority_host``, ``ca_bundle``) are the only place that
knows where Azure is; they point at the sandbox when the block is saved from its connection file.
Register with ``prefect block register -m blocks.credentials``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

import jwt
from azure.core.credentials import TokenCredential
from azure.identity import (
    ClientAssertionCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    WorkloadIdentityCredential,
)
from azure.keyvault.secrets import SecretClient
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

C = TypeVar("C")

AZURE_ARM_ENDPOINT = "https://management.azure.com"
AZURE_AUTHORITY_HOST = "https://login.microsoftonline.com"
ARM_SCOPE = "https://management.azure.com/.default"
KEY_VAULT_DNS_SUFFIX = ".vault.azure.net"

AuthMode = Literal["service_principal", "workload_identity", "default_chain"]


@dataclass(frozen=True, kw_only=True)
class Principal:
    object_id: str
    principal_type: str  # "ServicePrincipal" or "User" (role assignments must say which, P2)
    tenant_id: str


class CredentialsError(ValueError):
    """The credentials block is incomplete or inconsistent (raised before any call)."""


class AzureCredentials(Block):
    """Credentials and endpoints for one Azure subscription (or the sandbox standing in for it)."""

    _block_type_name = "Keyless GitOps Azure Credentials"
    _block_type_slug = "keyless-gitops-azure-credentials"
    _documentation_url = "https://learn.microsoft.com/python/api/overview/azure/identity-readme"  # type: ignore[assignment]
    _description = (
        "Service principal, workload-identity token file or default chain, with ARM/Entra endpoints."
    )

    subscription_id: str = Field(..., description="The Azure subscription to provision into.")
    tenant_id: str | None = Field(
        default=None, description="Entra tenant (service principal or workload identity)."
    )
    client_id: str | None = Field(default=None, description="Application (client) id.")
    client_secret: SecretStr | None = Field(default=None, description="Service principal secret.")
    federated_token_file: str | None = Field(
        default=None, description="Path of a federated (OIDC) token file: keyless CI via workload identity."
    )
    arm_endpoint: str = Field(default=AZURE_ARM_ENDPOINT, description="Azure Resource Manager base URL.")
    authority_host: str = Field(default=AZURE_AUTHORITY_HOST, description="Entra ID authority host.")
    arm_scope: str = Field(default=ARM_SCOPE, description="Token scope for ARM.")
    ca_bundle: str | None = Field(
        default=None, description="CA bundle to verify TLS with (the sandbox's CA)."
    )
    disable_instance_discovery: bool = Field(
        default=False,
        description="Skip MSAL instance discovery (for an authority that is not a public cloud).",
    )
    polling_interval: float | None = Field(
        default=None, description="Seconds between LRO polls when the service sends no Retry-After."
    )
    retry_total: int | None = Field(
        default=None, description="azure-core retries of 408/429/5xx (default 10)."
    )

    @model_validator(mode="after")
    def _all_or_none(self) -> AzureCredentials:
        problems = missing_fields(self)
        if problems:
            raise CredentialsError("; ".join(problems))
        return self

    # -- which way ------------------------------------------------------------------------------
    @property
    def mode(self) -> AuthMode:
        if self.client_secret is not None:
            return "service_principal"
        if self.federated_token_file:
            return "workload_identity"
        return "default_chain"

    @property
    def _verify(self) -> dict[str, Any]:
        return {"connection_verify": self.ca_bundle} if self.ca_bundle else {}

    def get_credential(self) -> TokenCredential:
        kwargs: dict[str, Any] = {"authority": self.authority_host, **self._verify}
        if self.disable_instance_discovery:
            kwargs["disable_instance_discovery"] = True
        if self.mode == "service_principal":
            assert self.tenant_id and self.client_id and self.client_secret
            return ClientSecretCredential(
                self.tenant_id, self.client_id, self.client_secret.get_secret_value(), **kwargs
            )
        if self.mode == "workload_identity":
            return WorkloadIdentityCredential(
                tenant_id=self.tenant_id,
                client_id=self.client_id,
                token_file_path=self.federated_token_file,
                **kwargs,
            )
        return DefaultAzureCredential(**kwargs)

    def workload_credential(
        self, tenant_id: str, client_id: str, assertion: Callable[[], str]
    ) -> ClientAssertionCredential:
        """The credential a workload-identity pod uses: a federated ``client_assertion`` (its
        ServiceAccount token) for ``client_id``, at this block's authority (validation's live probe)."""
        kwargs: dict[str, Any] = {"authority": self.authority_host, **self._verify}
        if self.disable_instance_discovery:
            kwargs["disable_instance_discovery"] = True
        return ClientAssertionCredential(tenant_id, client_id, assertion, **kwargs)

    # -- the one client factory -----------------------------------------------------------------
    def get_client(self, client_type: type[C], credential: TokenCredential | None = None) -> C:
        """Any ``azure-mgmt-*`` client, pointed at this block's endpoints."""
        kwargs: dict[str, Any] = {
            "base_url": self.arm_endpoint,
            "credential_scopes": [self.arm_scope],
            **self._verify,
        }
        if self.polling_interval is not None:
            kwargs["polling_interval"] = self.polling_interval
        if self.retry_total is not None:
            kwargs["retry_total"] = self.retry_total
        return client_type(credential or self.get_credential(), self.subscription_id, **kwargs)  # type: ignore[call-arg]

    def get_secret_client(self, vault_url: str, credential: TokenCredential | None = None) -> SecretClient:
        """A Key Vault data-plane client for ``vault_url`` (the vault's ``vaultUri``)."""
        host = urlparse(vault_url).hostname or ""
        kwargs: dict[str, Any] = dict(self._verify)
        if not host.endswith(KEY_VAULT_DNS_SUFFIX):
            # The challenge's resource is https://vault.azure.net, which does not match a
            # non-Azure host; skip that check off Azure (CLIENT-FACTS, SecretClient).
            kwargs["verify_challenge_resource"] = False
        if self.retry_total is not None:
            kwargs["retry_total"] = self.retry_total
        return SecretClient(vault_url, credential or self.get_credential(), **kwargs)

    def pipeline_principal(self, credential: TokenCredential | None = None) -> Principal:
        """Who these credentials sign in as: object id, principalType and tenant.

        Read from the ARM access token's claims (``oid``, ``idtyp``); the token itself is never
        kept, logged or returned.
        """
        token = (credential or self.get_credential()).get_token(self.arm_scope).token
        claims = jwt.decode(token, options={"verify_signature": False})
        oid = claims.get("oid")
        if not oid:
            raise CredentialsError(
                "the access token carries no 'oid' claim; cannot tell the pipeline's principal"
            )
        principal_type = "User" if claims.get("idtyp") == "user" or "upn" in claims else "ServicePrincipal"
        return Principal(
            object_id=str(oid), principal_type=principal_type, tenant_id=str(claims.get("tid") or "")
        )


def missing_fields(creds: AzureCredentials | dict[str, Any]) -> list[str]:
    """What makes these credentials unusable, each naming the fields; empty when complete."""
    get = creds.get if isinstance(creds, dict) else (lambda k: getattr(creds, k, None))
    problems: list[str] = []
    if not get("subscription_id"):
        problems.append("subscription_id is missing")
    secret, token_file = get("client_secret"), get("federated_token_file")
    if secret is not None and token_file:
        problems.append("set either client_secret (service principal) or federated_token_file, not both")
    if secret is not None or token_file:
        way = "client_secret" if secret is not None else "federated_token_file"
        for field in ("tenant_id", "client_id"):
            if not get(field):
                problems.append(f"{field} is missing (needed with {way})")
    elif get("tenant_id") or get("client_id"):
        given = " and ".join(f for f in ("tenant_id", "client_id") if get(f))
        problems.append(f"{given} set but neither client_secret nor federated_token_file")
    for field in ("arm_endpoint", "authority_host"):
        value = get(field)
        if value is not None and not str(value).startswith("https://"):
            problems.append(f"{field} must be an https:// URL (bearer tokens are refused over http)")
    return problems
