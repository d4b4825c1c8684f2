"""Client factories for tests: the real Azure SDK clients pointed at a running sandbox.

``conn`` is the sandbox's connection document (``connection.json`` / the ``conn`` fixture).
Retries are kept but with a small backoff so tests stay fast; LRO polling follows ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from azure.identity import ClientSecretCredential

ARM_SCOPE = "https://management.azure.com/.default"


def credential(conn: dict[str, Any]) -> ClientSecretCredential:
    return ClientSecretCredential(
        conn["tenant_id"],
        conn["client_id"],
        conn["client_secret"],
        authority=conn["authority_host"],
        disable_instance_discovery=True,
        connection_verify=conn["ca_bundle"],
    )


def mgmt_kwargs(conn: dict[str, Any]) -> dict[str, Any]:
    return {
        "base_url": conn["arm_endpoint"],
        "credential_scopes": [ARM_SCOPE],
        "connection_verify": conn["ca_bundle"],
        "retry_backoff_factor": 0.05,
        "retry_backoff_max": 1,
    }


def mgmt_client(cls: type, conn: dict[str, Any], cred: Any = None, **extra: Any) -> Any:
    """``cls(credential, subscription_id, base_url=..., ...)`` for any azure-mgmt client."""
    return cls(cred or credential(conn), conn["subscription_id"], **mgmt_kwargs(conn), **extra)
