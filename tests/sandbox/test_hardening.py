"""A fresh pair of eyes on the sandbox: bad input, secrets, restarts, concurrency, fidelity.

Each test names the rule it holds the sandbox to (an azure-specs file, a Kubernetes API convention,
a PITFALLS row or CLIENT-FACTS line).
"""

from __future__ import annotations

import time

import yaml

from sandbox.k8s import yamlio
from sandbox.k8s.service import load_crd


def test_load_crd_parses_with_libyaml_once() -> None:
    """The 416 kB Application CRD took ~0.45 s per parse with the pure-Python loader."""
    if yaml.__with_libyaml__:
        assert yamlio.Loader is yaml.CSafeLoader
    started = time.perf_counter()
    docs = [load_crd("application-crd.yaml") for _ in range(4)]
    assert time.perf_counter() - started < 1.0
    assert docs[0]["metadata"]["name"] == "applications.argoproj.io"
    docs[0]["metadata"]["name"] = "changed"  # callers get their own copy
    assert load_crd("application-crd.yaml")["metadata"]["name"] == "applications.argoproj.io"
