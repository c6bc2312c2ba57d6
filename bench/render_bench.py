"""Time per ``render()`` call: a Helm chart (Helm's SDK), a Jsonnet app and plain YAML.

Each source yields the same ten objects (3 Deployments, 3 Services, 3 ConfigMaps and a
ServiceAccount) from a small repository written to a temporary directory; every call
materialises that repository into a fresh directory, as the engine does with its Git
export, so the figures include what a worker pays per render.  The first call of each
source is reported apart: it includes loading Helm's SDK (a Go runtime) or warming
Python's caches.  ``helm template`` is timed too when ``helm`` is on PATH.  Jsonnet's
floor is the C++ VM's own start (it parses its standard library for every evaluation,
about 30 ms here), paid once per entry point.

    .venv/bin/python bench/render_bench.py [--runs 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.render import HelmOptions, JsonnetArg, JsonnetOptions, render

SERVICES = 3

CHART = {
    "charts/shop/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 1.0.0\n",
    "charts/shop/values.yaml": "services: [web, api, worker]\nreplicas: 2\nimage: nginx:1.27\n",
    "charts/shop/templates/_helpers.tpl": (
        '{{- define "shop.labels" -}}\napp.kubernetes.io/instance: {{ .Release.Name }}\n'
        "{{- end }}\n"
    ),
    "charts/shop/templates/services.yaml": """\
{{- range .Values.services }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ . }}
  labels: {{- include "shop.labels" $ | nindent 4 }}
spec:
  replicas: {{ $.Values.replicas }}
  selector: {matchLabels: {app: {{ . }}}}
  template:
    metadata: {labels: {app: {{ . }}}}
    spec:
      serviceAccountName: shop
      containers: [{name: {{ . }}, image: {{ $.Values.image }}}]
---
apiVersion: v1
kind: Service
metadata: {name: {{ . }}}
spec:
  selector: {app: {{ . }}}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ . }}-settings}
data: {MODE: {{ $.Values.mode | default "prod" | quote }}}
{{- end }}
""",
    "charts/shop/templates/serviceaccount.yaml": (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: shop}\n"
    ),
    "envs/prod/values.yaml": "replicas: 3\nmode: prod\n",
}

JSONNET = {
    "lib/k.libsonnet": """{
  deployment(name, replicas, image):: {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: name },
    spec: {
      replicas: replicas, selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { serviceAccountName: 'shop', containers: [{ name: name, image: image }] },
      },
    },
  },
  service(name):: { apiVersion: 'v1', kind: 'Service', metadata: { name: name },
                    spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 8080 }] } },
  configMap(name, mode):: { apiVersion: 'v1', kind: 'ConfigMap',
                            metadata: { name: name + '-settings' }, data: { MODE: mode } },
}
""",
    "apps/shop/main.jsonnet": """local k = import 'k.libsonnet';
function(replicas=2)
  [[k.deployment(s, replicas, 'nginx:1.27'), k.service(s), k.configMap(s, std.extVar('mode'))]
   for s in ['web', 'api', 'worker']]
  + [{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'shop' } }]
""",
}


def _plain() -> dict[str, str]:
    files = {"apps/plain/serviceaccount.yaml": "apiVersion: v1\nkind: ServiceAccount\n"
             "metadata: {name: shop}\n"}  # fmt: skip
    for name in ("web", "api", "worker"):
        files[f"apps/plain/{name}.yaml"] = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: shop
      containers: [{{name: {name}, image: "nginx:1.27"}}]
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}-settings}}
data: {{MODE: prod}}
"""
    return files


def write_repo(root: Path) -> None:
    for name, text in {**CHART, **JSONNET, **_plain()}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def files_under(root: Path, path: str) -> dict[str, bytes]:
    base = root / path
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def measure(call: Callable[[], int], runs: int) -> tuple[float, list[float], int]:
    """Seconds of the first call, of each later one, and the objects rendered."""
    started = time.perf_counter()
    count = call()
    first = time.perf_counter() - started
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return first, times, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed calls per source")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="render-bench-") as tmp:
        repo = Path(tmp) / "repo"
        write_repo(repo)

        def materialise(dest: Path) -> None:
            shutil.copytree(repo, dest, dirs_exist_ok=True)

        helm = HelmOptions(
            release_name="shop", namespace="prod", value_files=("envs/prod/values.yaml",),
            kube_version="v1.31.0", api_versions=("apps/v1", "apps/v1/Deployment"),
        )  # fmt: skip
        jsonnet = JsonnetOptions(
            tlas={"replicas": JsonnetArg("3", code=True)},
            ext_vars={"mode": JsonnetArg("prod")},
            libs=("lib",),
        )
        sources: list[tuple[str, str, HelmOptions | None, JsonnetOptions | None]] = [
            ("plain YAML", "apps/plain", None, None),
            ("Helm (SDK)", "charts/shop", helm, None),
            ("Jsonnet", "apps/shop", None, jsonnet),
        ]
        if shutil.which("helm"):
            binary = dataclasses.replace(helm, engine="binary")
            sources.append(("Helm (helm template)", "charts/shop", binary, None))
        print(f"render() per call, {args.runs} runs after a first one; repository materialised "
              "into a fresh directory each call")  # fmt: skip
        print(f"{'source':<22}{'objects':>8}{'first ms':>10}{'min ms':>9}{'median ms':>11}"
              f"{'p95 ms':>9}{'mean ms':>9}")  # fmt: skip
        for label, path, helm_options, jsonnet_options in sources:
            files = files_under(repo, path)

            def call(
                files: dict[str, bytes] = files,
                path: str = path,
                helm_options: HelmOptions | None = helm_options,
                jsonnet_options: JsonnetOptions | None = jsonnet_options,
            ) -> int:
                objects = render(
                    files, path=path, materialise=materialise,
                    helm=helm_options, jsonnet=jsonnet_options,
                )  # fmt: skip
                return len(objects)

            first, times, count = measure(call, args.runs)
            ms = sorted(t * 1000 for t in times)
            p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
            median, mean = statistics.median(ms), statistics.fmean(ms)
            print(f"{label:<22}{count:>8}{first * 1000:>10.1f}{ms[0]:>9.2f}"
                  f"{median:>11.2f}{p95:>9.2f}{mean:>9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
