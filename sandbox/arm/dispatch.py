"""ARM path parsing: segment patterns matched case-insensitively, as ARM does.

The SDKs send ``/resourcegroups/`` (lower case) while providers use ``/resourceGroups/``
(CLIENT-FACTS.md), so every literal segment compares lower-cased. ``*`` captures one segment.
Scoped providers (role assignments, role definitions, cluster extensions) are found from the
right: ``{scope}/providers/Microsoft.Authorization/roleAssignments/{name}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response

from sandbox.arm.common import ArmRequest

Handler = Callable[[ArmRequest, list[str]], Awaitable[Response]]


@dataclass(frozen=True)
class RouteSpec:
    methods: frozenset[str]
    pattern: tuple[str, ...]
    provider: str  # which api-versions apply
    handler: Handler


def match(segments: list[str], pattern: tuple[str, ...]) -> list[str] | None:
    if len(segments) != len(pattern):
        return None
    captures: list[str] = []
    for seg, pat in zip(segments, pattern, strict=True):
        if pat == "*":
            if not seg:
                return None
            captures.append(seg)
        elif seg.lower() != pat.lower():
            return None
    return captures


def split_scoped(segments: list[str], provider: str, rtype: str) -> tuple[str, list[str]] | None:
    """``(scope, rest)`` for ``{scope}/providers/{provider}/{rtype}[/rest...]`` (the last such)."""
    low = [s.lower() for s in segments]
    for i in range(len(low) - 3, -1, -1):
        if low[i] == "providers" and low[i + 1] == provider.lower() and low[i + 2] == rtype.lower():
            scope = "/" + "/".join(segments[:i]) if i else ""
            return scope, segments[i + 3 :]
    return None


def segments_of(path: str) -> list[str]:
    return [s for s in path.strip("/").split("/")]
