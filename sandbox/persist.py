"""State that survives a restart: one JSON document per area, written atomically on every change."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class StateFile:
    """A JSON document on disk with an in-memory copy.

    Read with :meth:`read` (a snapshot you must not mutate); change with ``with state.change() as data:``,
    which holds the lock, lets you mutate ``data`` in place and saves atomically on exit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def read(self) -> dict[str, Any]:
        with self._lock:
            return self._data

    @contextmanager
    def change(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield self._data
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        # 0600: a vault's state holds its secret values, as Key Vault's own storage does.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self._data, separators=(",", ":")))
        os.replace(tmp, self.path)
