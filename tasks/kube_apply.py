"""Server-side apply of rendered manifests with the ``keyless-gitops`` field manager, read-first.

An object is applied only when the live object does not already hold every field of the manifest,
so a re-run writes nothing. The kubeconfig comes from ARM at run time and stays in memory (P24).
"""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from blocks.credentials import AzureCredentials
from keyless_gitops.bodies import differs
from keyless_gitops.spec import Names
from tasks.aks import get_kubeconfig
from tasks.common import Change

FIELD_MANAGER = "keyless-gitops"


def kube_client(creds: AzureCredentials, names: Names) -> ApiClient:
    """An API client for the cluster, built from the kubeconfig in memory (never written or logged)."""
    kubeconfig = yaml.safe_load(get_kubeconfig(creds, names))
    return kube_config.new_client_from_config_dict(kubeconfig)


def _ref(manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    return "/".join(p for p in (manifest["kind"], meta.get("namespace"), meta["name"]) if p)


def get_object(dyn: DynamicClient, manifest: dict[str, Any]) -> dict[str, Any] | None:
    resource = dyn.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    meta = manifest["metadata"]
    try:
        obj = resource.get(name=meta["name"], namespace=meta.get("namespace"))
    except NotFoundError:
        return None
    return dict(obj.to_dict())


def apply_object(dyn: DynamicClient, manifest: dict[str, Any]) -> Change:
    """Server-side apply ``manifest`` unless the live object already holds all of it."""
    actual = get_object(dyn, manifest)
    if actual is not None and not differs(manifest, actual):
        return "unchanged"
    resource = dyn.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    dyn.server_side_apply(
        resource,
        body=manifest,
        namespace=manifest["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )
    return "created" if actual is None else "updated"
