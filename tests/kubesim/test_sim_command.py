"""`reconciler sim`: a foreground simulator that writes a kubeconfig and stops on signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml


def wait_for(path: Path, proc: subprocess.Popen[str], deadline: float) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "kubeconfig was not written in time"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sim_serves_clusters_writes_kubeconfig_and_stops(tmp_path: Path, sig: int) -> None:
    kubeconfig = tmp_path / "kc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "sim", "--clusters", "2",
         "--kubeconfig", str(kubeconfig), "--name-prefix", "edge-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(kubeconfig, proc, time.monotonic() + 30)
        config = yaml.safe_load(kubeconfig.read_text())
        assert [c["name"] for c in config["contexts"]] == ["edge-1", "edge-2"]
        server = config["clusters"][1]["cluster"]["server"]
        assert server.endswith("/clusters/edge-2")
        with urllib.request.urlopen(server + "/api/v1/namespaces", timeout=10) as response:
            names = {i["metadata"]["name"] for i in json.load(response)["items"]}
        assert "default" in names
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_sim_refuses_zero_clusters() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "sim", "--clusters", "0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--clusters" in proc.stderr
