"""The environment spec: recipe defaults, kept suffix (P1), naming rules, version/keys/HA (P16, P17)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from keyless_gitops.spec import (
    AKS_STORE_DEMO_REVISION,
    EnvironmentSpec,
    SpecError,
    derive_suffix,
    preset,
)

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def test_dev_defaults_are_the_recipes_values() -> None:
    spec = EnvironmentSpec().for_subscription(SUB)
    names = spec.names
    suffix = derive_suffix(SUB, "dev")
    assert names.resource_group == f"rg-gitops-demo-{suffix}"
    assert names.cluster == "aks-gitops-cluster"
    assert names.key_vault == f"kv-gitops-{suffix}"
    assert names.identity == f"mi-argocd-{suffix}"
    assert spec.location == "eastus"
    assert spec.node_count == 3
    assert spec.secrets == {
        "database-connection-string": "keyless-gitops-dev-database-connection-string",
        "api-key": "keyless-gitops-dev-api-key",
    }
    assert spec.federated_subjects == {
        "argocd-application-controller": "system:serviceaccount:argocd:argocd-application-controller",
        "argocd-server": "system:serviceaccount:argocd:argocd-server",
        "sample-app": "system:serviceaccount:sample-app:sample-app-sa",
    }
    assert spec.gitops.repo_url == "https://github.com/Azure-Samples/aks-store-demo.git"
    assert spec.gitops.target_revision == AKS_STORE_DEMO_REVISION
    assert spec.gitops.path == "kustomize/overlays/dev"
    assert spec.gitops.destination_namespace == "aks-store-demo"
    assert spec.extension.high_availability is False


def test_suffix_is_derived_once_and_kept_not_random() -> None:
    """P1: the same subscription and environment always give the same names."""
    a = EnvironmentSpec().for_subscription(SUB).names
    b = EnvironmentSpec().for_subscription(SUB.upper()).names
    assert a == b.model_copy(update={"subscription_id": a.subscription_id})
    assert len(derive_suffix(SUB, "dev")) == 6
    assert derive_suffix(SUB, "dev") != derive_suffix(SUB, "staging")
    assert derive_suffix(SUB, "dev") != derive_suffix("11111111-1bf0-4dda-aec3-cb9272f09590", "dev")


def test_explicit_suffix_wins() -> None:
    spec = EnvironmentSpec(suffix="abc123").for_subscription(SUB)
    assert spec.names.key_vault == "kv-gitops-abc123"


def test_names_need_a_subscription() -> None:
    with pytest.raises(SpecError, match="not bound"):
        _ = EnvironmentSpec().names


def test_subscription_mismatch_is_refused() -> None:
    with pytest.raises(SpecError, match="credentials are for"):
        EnvironmentSpec(subscription_id=SUB).for_subscription("22222222-1bf0-4dda-aec3-cb9272f09590")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("key_vault_name", "kv-gitops-{suffix}-too-long-name", "3-24"),
        ("key_vault_name", "1kv{suffix}", "starting with a letter"),
        ("key_vault_name", "kv_{suffix}", "3-24"),
        ("key_vault_name", "kv--x{suffix}", "consecutive hyphens"),
        ("resource_group", "rg-{suffix}.", "not ending in a period"),
        ("cluster_name", "-aks", "letters, digits"),
        ("identity_name", "mi", "3-128"),
        ("resource_group", "rg-{nope}", "only {suffix} and {env}"),
    ],
)
def test_azure_naming_rules(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        EnvironmentSpec(**{field: value})  # type: ignore[arg-type]


def test_vault_name_at_the_limit_is_accepted() -> None:
    spec = EnvironmentSpec(key_vault_name="kv-gitops-abcdefg-{suffix}", suffix="abcdef")  # 24 chars
    assert len(spec.for_subscription(SUB).names.key_vault) == 24


def test_unknown_location_is_refused_and_display_names_normalised() -> None:
    with pytest.raises(ValidationError, match="unknown Azure location"):
        EnvironmentSpec(location="moon-1")
    assert EnvironmentSpec(location="East US").location == "eastus"


def test_unknown_extension_version_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown Argo CD extension version"):
        EnvironmentSpec(extension={"version": "9.9.9"})  # type: ignore[arg-type]


def test_ha_needs_enough_nodes_per_version() -> None:
    """P17: HA needs 4 nodes on 1.0.0-preview (3 on 0.0.x); refused up front."""
    with pytest.raises(ValidationError, match="at least 4 nodes"):
        EnvironmentSpec(extension={"high_availability": True}, node_count=3)  # type: ignore[arg-type]
    EnvironmentSpec(extension={"high_availability": True}, node_count=4)  # type: ignore[arg-type]
    EnvironmentSpec(extension={"version": "0.0.7-preview", "high_availability": True}, node_count=3)  # type: ignore[arg-type]


def test_extra_settings_cannot_use_another_versions_keys() -> None:
    """P16: the recipe's 0.0.x keys sent to 1.0.0-preview would be silently ignored."""
    with pytest.raises(ValidationError, match="another extension version"):
        EnvironmentSpec(extension={"extra_settings": {"workloadIdentity.enable": "true"}})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="keys the pipeline owns"):
        EnvironmentSpec(extension={"extra_settings": {"redis-ha.enabled": "true"}})  # type: ignore[arg-type]


def test_gitops_revision_must_be_pinned_and_namespace_its_own() -> None:
    with pytest.raises(ValidationError, match="pinned"):
        EnvironmentSpec(gitops={"target_revision": "HEAD"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must differ"):
        EnvironmentSpec(gitops={"destination_namespace": "sample-app"})  # type: ignore[arg-type]


def test_secret_block_names_are_validated() -> None:
    with pytest.raises(ValidationError, match="Prefect Secret block name"):
        EnvironmentSpec(secrets={"api-key": "Not A Slug"})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        EnvironmentSpec(clustr_name="x")  # type: ignore[call-arg]


def test_presets() -> None:
    assert preset("dev") == EnvironmentSpec()
    prod = preset("prod")
    assert prod.protected and prod.purge_protection
    assert preset("staging").environment == "staging"


def test_spec_roundtrips_as_a_flow_parameter() -> None:
    """Prefect sends parameters as JSON: the spec must survive a dump/validate round trip."""
    spec = EnvironmentSpec(environment="qa", tags={"team": "platform"}).for_subscription(SUB)
    assert EnvironmentSpec.model_validate_json(spec.model_dump_json()) == spec
    schema = EnvironmentSpec.model_json_schema()
    assert "extension" in schema["properties"] and "secrets" in schema["properties"]
