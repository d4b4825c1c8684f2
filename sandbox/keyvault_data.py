"""(in progress)"""

from __future__ import annotations

from starlette.routing import BaseRoute

from sandbox.context import SandboxContext


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    return []
