"""(in progress)"""

from __future__ import annotations

from typing import Any


def resolve(segments: list[str], method: str) -> Any:
    return None
