"""Beat's durable copies of the suspensions keep no cluster client between passes.

Against kubesim over HTTP; ``beat.durable`` is what beat's leader runs on a restore and
whenever the suspended set changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from beat import durable
from beat.durable import SuspensionCopies
from kubesim.runtime import SimHandle
from reconciler.fleet import Fleet, parse_fleet
from reconciler.kube import ClientFactory


def fleet(tmp_path: Path, kubeconfig: str, sim: SimHandle) -> Fleet:
    text = "clusters:\n"
    for name in sim.names:
        text += f"  - {{name: {name}, kubeconfig: {kubeconfig}}}\n"
    text += "applications:\n  - {name: a, source: {repo: /r}}\n"
    return parse_fleet(text, source="fleet.yaml", base_dir=str(tmp_path))


def test_a_pass_over_the_fleet_leaves_no_client_behind(
    sim: SimHandle, kubeconfig: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(durable, "RETRY_EVERY", 0.0)  # a failed cluster is due again at once
    clients = ClientFactory(cache_dir=tmp_path / "cache")
    copies = SuspensionCopies(clients)
    try:
        the_fleet = fleet(tmp_path, kubeconfig, sim)
        assert copies.write(the_fleet, {"a"}) == 3
        assert len(clients) == 0
        found, unreachable = copies.read(the_fleet)
        assert (found, unreachable) == ({"a"}, [])
        assert len(clients) == 0
        # A cluster that fails stays pending; reading it again later leaves none either.
        sim.set_faults("sim-2", down=True)
        found, unreachable = copies.read(the_fleet)
        assert unreachable == ["sim-2"] and len(clients) == 0
        sim.set_faults("sim-2", down=False)
        assert copies.merge_pending(the_fleet) == {"a"}
        assert copies.pending == set() and len(clients) == 0
    finally:
        copies.close()
