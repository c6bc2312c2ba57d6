"""Fixtures for the cluster clients against kubesim over HTTP: a fresh simulator per test
(tests here install CRDs on one cluster and must not leak them into another test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import kubesim
from kubesim.runtime import SimHandle


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    """Three simulated clusters, sim-1 to sim-3, serving the same built-in APIs."""
    with kubesim.serve(3, controller_delay=0.05) as handle:
        yield handle


@pytest.fixture
def kubeconfig(sim: SimHandle, tmp_path: Path) -> str:
    return sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
