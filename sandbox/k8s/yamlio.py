"""YAML parsing for the cluster side: libyaml's ``CSafeLoader`` when PyYAML was built with it.

The vendored Argo CD Application CRD is 416 kB: the pure-Python ``SafeLoader`` takes ~0.45 s for
it, libyaml ~0.05 s. Both loaders accept the same documents (safe tags only).

Alias bombs: the Kubernetes API server decodes YAML with go-yaml, which refuses a document whose
aliases expand excessively ("yaml: document contains excessive aliasing"). PyYAML shares an aliased
node instead of copying it, so a "billion laughs" document loads at once and explodes later, when it
is serialised or walked. A document with aliases is therefore measured as if expanded (bounded work)
and refused above :data:`MAX_EXPANDED_NODES`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_EXPANDED_NODES = 1_000_000  # the biggest real manifests (the Application CRD) expand to ~60 000


class ExcessiveAliasing(yaml.YAMLError):
    def __init__(self) -> None:
        super().__init__("yaml: document contains excessive aliasing")


def _check_expansion(doc: Any) -> Any:
    budget = MAX_EXPANDED_NODES
    stack = [doc]
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:
            raise ExcessiveAliasing()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return doc


def _has_aliases(text: str | bytes) -> bool:
    return ("*" in text) if isinstance(text, str) else (b"*" in text)


def load(text: str | bytes) -> Any:
    doc = yaml.load(text, Loader=Loader)  # noqa: S506 - a safe loader
    return _check_expansion(doc) if _has_aliases(text) else doc


def load_all(text: str | bytes) -> Iterator[Any]:
    check = _has_aliases(text)
    for doc in yaml.load_all(text, Loader=Loader):
        yield _check_expansion(doc) if check else doc
