"""(in progress)"""

from __future__ import annotations

from sandbox.arm.dispatch import RouteSpec


def route_specs() -> list[RouteSpec]:
    return []
