"""Renders the Kubernetes objects in ``manifests/`` (YAML templates readable by people who know the recipe).

Templates are parsed first, then every scalar that is exactly ``${name}`` is replaced by the value
(which may be a list or mapping), and ``${name}`` inside longer strings by its text. Substituting
after parsing means a value can never inject YAML structure.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import yaml

from keyless_gitops.spec import EnvironmentSpec

MANIFESTS_DIR = Path(__file__).resolve().parents[1] / "manifests"
_WHOLE = re.compile(r"^\$\{([a-z_]+)\}$")


class TemplateError(ValueError):
    pass


def render(template: str, values: dict[str, Any]) -> dict[str, Any]:
    """One manifest with its placeholders filled; a missing or unused value is an error."""
    doc = yaml.safe_load((MANIFESTS_DIR / template).read_text())
    used: set[str] = set()
    out = _fill(doc, values, used, template)
    unused = set(values) - used
    if unused:
        raise TemplateError(f"{template}: values not used: {', '.join(sorted(unused))}")
    if not isinstance(out, dict):
        raise TemplateError(f"{template} is not a mapping")
    return out


def _fill(node: Any, values: dict[str, Any], used: set[str], template: str) -> Any:
    if isinstance(node, dict):
        return {_fill(k, values, used, template): _fill(v, values, used, template) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values, used, template) for v in node]
    if isinstance(node, str) and "${" in node:
        whole = _WHOLE.match(node)
        if whole:
            key = whole.group(1)
            if key not in values:
                raise TemplateError(f"{template}: no value for ${{{key}}}")
            used.add(key)
            return values[key]
        try:
            text = string.Template(node).substitute(values)
        except KeyError as exc:
            raise TemplateError(f"{template}: no value for ${{{exc.args[0]}}}") from exc
        used.update(m.group(1) for m in re.finditer(r"\$\{([a-z_]+)\}", node))
        return text
    return node


def csi_objects(secret_names: list[str]) -> str:
    """The Azure provider's ``objects`` parameter: a YAML string holding an ``array`` of YAML strings."""
    items = "".join(
        f'  - |\n    objectName: {name}\n    objectType: secret\n    objectVersion: ""\n'
        for name in secret_names
    )
    return "array:\n" + items


def env_var_name(secret_name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", secret_name.upper())


def sample_app_manifests(spec: EnvironmentSpec, *, client_id: str, tenant_id: str) -> list[dict[str, Any]]:
    """Namespace, ServiceAccount, SecretProviderClass, Deployment — in apply order."""
    app = spec.sample_app
    secret_names = sorted(spec.secrets)
    common = {"namespace": app.namespace}
    return [
        render("namespace.yaml", common),
        render(
            "serviceaccount.yaml",
            {**common, "service_account": app.service_account, "client_id": client_id},
        ),
        render(
            "secretproviderclass.yaml",
            {
                **common,
                "secret_provider_class": app.secret_provider_class,
                "client_id": client_id,
                "key_vault": spec.names.key_vault,
                "tenant_id": tenant_id,
                "objects": csi_objects(secret_names),
                "secret_objects": [
                    {
                        "secretName": app.synced_secret,
                        "type": "Opaque",
                        "data": [{"objectName": n, "key": n} for n in secret_names],
                    }
                ],
            },
        ),
        render(
            "deployment.yaml",
            {
                **common,
                "app": "sample-app",
                "service_account": app.service_account,
                "image": app.image,
                "secret_provider_class": app.secret_provider_class,
                "env": [
                    {
                        "name": env_var_name(n),
                        "valueFrom": {"secretKeyRef": {"name": app.synced_secret, "key": n}},
                    }
                    for n in secret_names
                ],
            },
        ),
    ]


def application_manifest(spec: EnvironmentSpec) -> dict[str, Any]:
    g = spec.gitops
    return render(
        "application.yaml",
        {
            "application": g.application,
            "argocd_namespace": spec.extension.namespace,
            "project": g.project,
            "repo_url": g.repo_url,
            "target_revision": g.target_revision,
            "path": g.path,
            "destination_namespace": g.destination_namespace,
        },
    )


def argocd_service_account_labels(spec: EnvironmentSpec) -> list[dict[str, Any]]:
    """The workload-identity label on each federated Argo CD ServiceAccount (only that field)."""
    return [
        render(
            "argocd-serviceaccount-label.yaml",
            {"service_account": sa, "namespace": spec.extension.namespace},
        )
        for sa in spec.extension.federated_service_accounts
    ]
