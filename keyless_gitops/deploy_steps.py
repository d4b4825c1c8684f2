"""A ``prefect deploy`` build step: the per-environment parameters kept in ``deployments/*.yaml``.

``prefect.yaml`` runs :func:`load_environments` as a build step (id ``envs``) and templates each
deployment's parameters from its output (``"{{ envs.dev.spec }}"``): the whole value of a
placeholder-only field is replaced by the object, so the spec stays a structured parameter (the
Prefect UI renders it as a form). Each file is validated against ``EnvironmentSpec`` at deploy
time, so a typo fails ``prefect deploy`` instead of the first scheduled run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keyless_gitops.spec import EnvironmentSpec

PROJECT_DIR = Path(__file__).resolve().parents[1]


def load_environments(directory: str = "deployments") -> dict[str, Any]:
    """``{"project_dir": ..., "<env>": {"spec": {...}, "credentials_block": ..., ...}}`` per file."""
    base = Path(directory)
    if not base.is_absolute():
        base = PROJECT_DIR / base
    out: dict[str, Any] = {"project_dir": str(PROJECT_DIR)}
    for path in sorted(base.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text()) or {}
        if "spec" not in doc:
            continue  # not an environment file (e.g. the CI workflow)
        spec = EnvironmentSpec.model_validate(doc["spec"])
        if spec.environment != path.stem:
            raise ValueError(f"{path}: spec.environment is {spec.environment!r}, expected {path.stem!r}")
        out[path.stem] = {
            "spec": doc["spec"],
            "credentials_block": doc.get("credentials_block", f"keyless-gitops-{path.stem}"),
            "generate_missing_secrets": bool(doc.get("generate_missing_secrets", False)),
            "remediate": bool(doc.get("remediate", False)),
            "validate_cron": str(doc.get("validate_cron", "0 * * * *")),
        }
    return out
