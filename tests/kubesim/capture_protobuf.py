"""Regenerate the protobuf fixtures under tests/kubesim/data/protobuf/ from the real kubectl.

The decoder's table tests must run on bytes kubectl really sends, not on bytes our own code
made, so each fixture pair is captured from kubectl once and kept: ``NAME.pb`` is the body of
``kubectl create ...`` (logged by kubesim at DEBUG level), ``NAME.json`` is what the same
kubectl prints for the same command with ``--dry-run=client -o json``, the object it encoded.
Run it again after a kubectl upgrade: ``.venv/bin/python -m tests.kubesim.capture_protobuf``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import kubesim
from tests.kubesim.conftest import kubectl_binary

DATA = Path(__file__).parent / "data" / "protobuf"
NS = "demo"

#: name -> kubectl arguments after ``create``; run in this order (later ones use earlier ones).
COMMANDS: dict[str, list[str]] = {
    "namespace": ["namespace", NS],
    "configmap-literal": ["configmap", "settings", "-n", NS, "--from-literal=mode=fast",
                          "--from-literal=empty="],
    "configmap-file": ["configmap", "files", "-n", NS, "--from-file=app.conf={dir}/app.conf",
                       "--from-file=blob.bin={dir}/blob.bin"],
    "secret-generic": ["secret", "generic", "creds", "-n", NS, "--from-literal=user=admin",
                       "--from-literal=password=s3cr=t"],
    "secret-docker-registry": ["secret", "docker-registry", "pull", "-n", NS,
                               "--docker-server=registry.example.com", "--docker-username=bot",
                               "--docker-password=pw"],
    "serviceaccount": ["serviceaccount", "builder", "-n", NS],
    "deployment": ["deployment", "web", "-n", NS, "--image=nginx:1.27", "--replicas=3",
                   "--port=8080"],
    "deployment-zero-replicas": ["deployment", "idle", "-n", NS, "--image=nginx",
                                 "--replicas=0"],
    "deployment-two-images": ["deployment", "pair", "-n", NS, "--image=nginx:1.27",
                              "--image=busybox:1.36"],
    "job": ["job", "once", "-n", NS, "--image=busybox:1.36", "--", "sh", "-c", "echo hi"],
    "cronjob": ["cronjob", "tick", "-n", NS, "--image=busybox:1.36", "--schedule=*/5 * * * *",
                "--restart=OnFailure", "--", "date"],
    "job-from-cronjob": ["job", "manual", "-n", NS, "--from=cronjob/tick"],
    "service-clusterip": ["service", "clusterip", "web", "-n", NS, "--tcp=80:8080",
                          "--tcp=443:8443"],
    "service-headless": ["service", "clusterip", "headless", "-n", NS, "--clusterip=None"],
    "service-nodeport": ["service", "nodeport", "np", "-n", NS, "--tcp=80:8080",
                         "--node-port=30080"],
    "service-externalname": ["service", "externalname", "ext", "-n", NS,
                             "--external-name=db.example.com"],
    "role": ["role", "reader", "-n", NS, "--verb=get,list", "--resource=pods,configmaps"],
    "rolebinding": ["rolebinding", "reader", "-n", NS, "--role=reader", "--user=alice",
                    f"--serviceaccount={NS}:builder"],
    "clusterrole": ["clusterrole", "viewer", "--verb=get", "--resource=nodes",
                    "--non-resource-url=/healthz"],
    "clusterrolebinding": ["clusterrolebinding", "viewer", "--clusterrole=viewer",
                           "--group=ops"],
    "ingress": ["ingress", "web", "-n", NS, "--class=nginx",
                "--rule=web.example.com/api*=web:80,tls=web-tls",
                "--rule=web.example.com/=web:http", "--default-backend=web:80",
                "--annotation=team=core"],
    "poddisruptionbudget": ["poddisruptionbudget", "web", "-n", NS, "--selector=app=web",
                            "--min-available=50%"],
}  # fmt: skip


class _Bodies(logging.Handler):
    """Keeps the protobuf bodies kubesim logs at DEBUG level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bodies: list[bytes] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("protobuf body"):
            self.bodies.append(bytes.fromhex(str(record.args[-1])))  # type: ignore[index]


def main() -> None:
    handler = _Bodies()
    logger = logging.getLogger("kubesim")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, kubesim.serve(1) as sim:
        Path(tmp, "app.conf").write_text("listen 8080\nworkers 2\n")
        Path(tmp, "blob.bin").write_bytes(bytes(range(256)))
        kubeconfig = sim.write_kubeconfig(os.path.join(tmp, "kubeconfig"))
        env = {**os.environ, "KUBECONFIG": kubeconfig, "HOME": tmp}
        for name, template in COMMANDS.items():
            args = ["create", *(a.format(dir=tmp) for a in template)]
            split = args.index("--") if "--" in args else len(args)
            dry_args = [*args[:split], "--dry-run=client", "-o", "json", *args[split:]]
            dry = subprocess.run(
                [kubectl_binary(), *dry_args],
                env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            before = len(handler.bodies)
            made = subprocess.run(
                [kubectl_binary(), *args], env=env, capture_output=True, text=True, check=False
            )
            if made.returncode != 0:
                sys.exit(f"{name}: kubectl {' '.join(args)} failed: {made.stderr}")
            if len(handler.bodies) != before + 1:
                sys.exit(f"{name}: expected one protobuf body, saw {len(handler.bodies) - before}")
            (DATA / f"{name}.pb").write_bytes(handler.bodies[-1])
            expected = json.loads(dry.stdout)
            (DATA / f"{name}.json").write_text(json.dumps(expected, indent=2) + "\n")
            print(f"{name}: {len(handler.bodies[-1])} bytes")


if __name__ == "__main__":
    main()
