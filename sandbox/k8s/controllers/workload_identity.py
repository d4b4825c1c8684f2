"""The azure-workload-identity mutating admission webhook, as AKS runs it (``--enable-workload-identity``).

Source: Azure/azure-workload-identity ``pkg/webhook/webhook.go`` and ``consts.go`` (read, not
copied), its docs "Mutating Admission Webhook" and "Service Account Labels and Annotations", and
PITFALLS P13 (PR #695: only pods labelled ``azure.workload.identity/use: "true"`` are mutated; the
MutatingWebhookConfiguration's ``objectSelector`` matches that pod label, so a label on the
ServiceAccount alone does nothing).

What it does on pod CREATE, for a labelled pod:
- reads the pod's ServiceAccount (``default`` when unset); ``azure.workload.identity/client-id``
  gives ``AZURE_CLIENT_ID``, ``azure.workload.identity/tenant-id`` (else the cluster's tenant) gives
  ``AZURE_TENANT_ID``; the webhook adds an env var only when its value is non-empty and the
  container does not already set it (so an SA without the client-id annotation yields no
  ``AZURE_CLIENT_ID`` — the SDK then fails, which is what users see on AKS);
- ``AZURE_FEDERATED_TOKEN_FILE=/var/run/secrets/azure/tokens/azure-identity-token`` and
  ``AZURE_AUTHORITY_HOST`` (public cloud: ``https://login.microsoftonline.com/``; in the sandbox
  the sandbox's own authority, so SDKs inside the "pod" would reach the sandbox Entra);
- a projected ServiceAccount token volume ``azure-identity-token`` (audience
  ``api://AzureADTokenExchange``, ``expirationSeconds`` 3600 or the
  ``azure.workload.identity/service-account-token-expiration`` annotation, 3600..86400) mounted
  read-only at ``/var/run/secrets/azure/tokens`` in every container and init container except
  those in ``azure.workload.identity/skip-containers`` (``;``-separated).

Volume name and mount path are those of the webhook releases AKS ships (v1.x); upstream main has
since moved to hashed ``azure-workload-identity-reserved-*`` names. The proxy sidecar
(``inject-proxy-sidecar``) is not modelled.
"""

from __future__ import annotations

import copy
from typing import Any

from sandbox.k8s.controllers._base import Invalid, Obj

USE_LABEL = "azure.workload.identity/use"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
TENANT_ID_ANNOTATION = "azure.workload.identity/tenant-id"
EXPIRY_ANNOTATION = "azure.workload.identity/service-account-token-expiration"
SKIP_ANNOTATION = "azure.workload.identity/skip-containers"
AUDIENCE = "api://AzureADTokenExchange"
VOLUME_NAME = "azure-identity-token"
MOUNT_PATH = "/var/run/secrets/azure/tokens"
TOKEN_FILE = f"{MOUNT_PATH}/azure-identity-token"
DEFAULT_EXPIRY = 3600


def should_mutate(pod: Obj) -> bool:
    """The webhook's objectSelector: the pod (not the ServiceAccount) carries the label."""
    return (pod.get("metadata", {}).get("labels") or {}).get(USE_LABEL) == "true"


def _expiry(pod: Obj, sa: Obj | None) -> int:
    for src in (pod, sa or {}):
        raw = (src.get("metadata", {}).get("annotations") or {}).get(EXPIRY_ANNOTATION)
        if raw:
            try:
                value = int(raw)
            except ValueError as exc:
                raise Invalid(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from exc
            if not 3600 <= value <= 86400:
                raise Invalid(
                    f"token expiration {value} not valid. Expected value to be between 3600 and 86400"
                )
            return value
    return DEFAULT_EXPIRY


def mutate_pod(pod: Obj, sa: Obj | None, *, tenant_id: str, authority_host: str) -> Obj:
    """Return the pod as the webhook admits it (a copy; unlabelled pods come back unchanged).

    ``sa`` is the pod's ServiceAccount or ``None`` when it does not exist (the real webhook then
    rejects the pod: 400 ``serviceaccounts "x" not found``), raised here as :class:`Invalid`.
    """
    if not should_mutate(pod):
        return pod
    spec = pod.get("spec") or {}
    sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    if sa is None:
        raise Invalid(f'serviceaccounts "{sa_name}" not found')
    out = copy.deepcopy(pod)
    annotations = sa.get("metadata", {}).get("annotations") or {}
    client_id = annotations.get(CLIENT_ID_ANNOTATION, "")
    tenant = annotations.get(TENANT_ID_ANNOTATION, tenant_id)
    expiry = _expiry(pod, sa)
    skip = {
        s.strip()
        for s in ((pod.get("metadata", {}).get("annotations") or {}).get(SKIP_ANNOTATION) or "").split(";")
        if s.strip()
    }
    desired = [
        ("AZURE_CLIENT_ID", client_id),
        ("AZURE_TENANT_ID", tenant),
        ("AZURE_FEDERATED_TOKEN_FILE", TOKEN_FILE),
        ("AZURE_AUTHORITY_HOST", authority_host),
    ]
    ospec = out.setdefault("spec", {})
    for field in ("initContainers", "containers"):
        for container in ospec.get(field) or []:
            if container.get("name") in skip:
                continue
            env: list[dict[str, Any]] = container.setdefault("env", [])
            present = {e.get("name") for e in env}
            for name, value in desired:
                if value and name not in present:
                    env.append({"name": name, "value": value})
            mounts: list[dict[str, Any]] = container.setdefault("volumeMounts", [])
            mount = {"name": VOLUME_NAME, "mountPath": MOUNT_PATH, "readOnly": True}
            for i, m in enumerate(mounts):
                if m.get("name") == VOLUME_NAME:
                    mounts[i] = mount
                    break
            else:
                mounts.append(mount)
    volume = {
        "name": VOLUME_NAME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "path": "azure-identity-token",
                        "expirationSeconds": expiry,
                        "audience": AUDIENCE,
                    }
                }
            ],
            "defaultMode": 420,
        },
    }
    volumes: list[dict[str, Any]] = ospec.setdefault("volumes", [])
    for i, v in enumerate(volumes):
        if v.get("name") == VOLUME_NAME:
            volumes[i] = volume
            break
    else:
        volumes.append(volume)
    return out
