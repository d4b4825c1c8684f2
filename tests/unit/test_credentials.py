"""The credentials block: all-or-none validation, modes, secret masking, the one client factory."""

from __future__ import annotations

import pytest
from azure.identity import ClientSecretCredential, DefaultAzureCredential, WorkloadIdentityCredential
from azure.mgmt.containerservice import ContainerServiceClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from blocks.credentials import AzureCredentials, missing_fields

SANDBOXY = {
    "subscription_id": "sub",
    "tenant_id": "tenant",
    "client_id": "client",
    "client_secret": "s3cr3t-canary",
    "arm_endpoint": "https://127.0.0.1:8443",
    "authority_host": "https://127.0.0.1:8443",
    "ca_bundle": "/nonexistent/ca.pem",
    "disable_instance_discovery": True,
    "polling_interval": 1.0,
}


class TestAzureCredentialsBlock(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return AzureCredentials


def test_modes() -> None:
    assert AzureCredentials(**SANDBOXY).mode == "service_principal"
    wi = AzureCredentials(subscription_id="s", tenant_id="t", client_id="c", federated_token_file="/tok")
    assert wi.mode == "workload_identity"
    assert isinstance(wi.get_credential(), WorkloadIdentityCredential)
    assert AzureCredentials(subscription_id="s").mode == "default_chain"
    assert isinstance(AzureCredentials(subscription_id="s").get_credential(), DefaultAzureCredential)
    assert isinstance(AzureCredentials(**SANDBOXY).get_credential(), ClientSecretCredential)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"client_secret": "x"}, "tenant_id is missing"),
        ({"client_secret": "x", "tenant_id": "t"}, "client_id is missing"),
        ({"federated_token_file": "/t", "client_id": "c"}, "tenant_id is missing"),
        (
            {"client_secret": "x", "federated_token_file": "/t", "tenant_id": "t", "client_id": "c"},
            "not both",
        ),
        ({"tenant_id": "t", "client_id": "c"}, "neither client_secret nor federated_token_file"),
        ({"arm_endpoint": "http://127.0.0.1"}, "https"),
    ],
)
def test_all_or_none(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):  # pydantic wraps the validator's CredentialsError
        AzureCredentials(subscription_id="s", **fields)


def test_missing_fields_names_the_subscription() -> None:
    assert missing_fields({}) == ["subscription_id is missing"]


def test_secret_is_masked() -> None:
    creds = AzureCredentials(**SANDBOXY)
    assert "s3cr3t-canary" not in repr(creds)
    assert "s3cr3t-canary" not in str(creds.model_dump())


def test_factory_points_every_client_at_the_blocks_endpoints() -> None:
    creds = AzureCredentials(**SANDBOXY)
    for cls in (ManagedServiceIdentityClient, ContainerServiceClient):
        client = creds.get_client(cls)
        assert client._config.credential_scopes == ["https://management.azure.com/.default"]
        assert client._config.polling_interval == 1.0
    assert creds.get_client(ContainerServiceClient)._config.base_url == "https://127.0.0.1:8443"
    assert creds.get_client(ManagedServiceIdentityClient)._client._base_url == "https://127.0.0.1:8443"
    secret_client = creds.get_secret_client("https://127.0.0.1:8443/vaults/kv-x/")
    assert secret_client.vault_url == "https://127.0.0.1:8443/vaults/kv-x"
