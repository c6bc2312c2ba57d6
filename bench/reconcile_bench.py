"""API requests and CPU of one target's reconcile: a first sync, then no-op reconciles.

The same 10 objects (3 Deployments, 3 Services, 2 ConfigMaps, a Secret and a
ServiceAccount: 5 kinds) from three sources in one local Git repository:

* ``plain``: one YAML file;
* ``helm``: a chart (``charts/shop``) with helpers in ``_helpers.tpl`` and a value file per
  environment, chosen by the cluster's ``env`` label
  (``valueFiles: ["values-{{ cluster.labels.env }}.yaml"]``); no hooks, so its sync
  writes what the other two write;
* ``jsonnet``: an entry point (``apps/shop/main.jsonnet``) over a library (``lib/``),
  with a top-level argument and an external variable.

Each source is reconciled onto a kubesim cluster of its own, running in its own process.
Requests are counted by kubesim; CPU is this process's own (the engine's, Helm's SDK
included since it runs in process), so the simulator's work is not in it, and the git
subprocesses that read the tree are reported apart.  The revision is resolved once up
front, as the workers' shared revision cache does; the Git fetch is reported apart.  The
renderer is called once before timing (Helm's first call loads the SDK's Go runtime),
reported as "first render"; every reconcile here then renders again (the engine alone
has no render cache: see ``bench/render_cache_bench.py`` for the workers' shared one).

    .venv/bin/python bench/reconcile_bench.py [--source plain|helm|jsonnet|all] [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.engine import Engine, GitRenderer, Options, Renderer, RenderInput
from reconciler.fleet import Fleet, parse_fleet
from reconciler.kube import ClientFactory
from reconciler.model import SyncStatus
from reconciler.render import RenderedObject
from reconciler.source import GitSource
from reconciler.store.provision import free_port

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org",
           "PATH": "/usr/bin:/bin"}  # fmt: skip

SOURCES = ("plain", "helm", "jsonnet")
#: Kinds every source renders: the no-op budget is one list per kind plus the inventory.
KINDS = 5


def _plain_app() -> str:
    docs = []
    for i in range(3):
        docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{i}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web-{i}}}}}
  template:
    metadata: {{labels: {{app: web-{i}}}}}
    spec:
      serviceAccountName: bench
      containers:
        - name: web
          image: nginx:1.27
          ports: [{{containerPort: 8080}}]
          env: [{{name: MODE, value: prod}}, {{name: INDEX, value: "{i}"}}]
          resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{cpu: "1", memory: 1Gi}}}}
""")
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: web-{i}}}
spec:
  selector: {{app: web-{i}}}
  ports: [{{port: 80, targetPort: 8080}}]
""")
    for i in range(2):
        docs.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg-{i}}}\n"
                    f"data: {{a: '1', b: '2'}}\n")  # fmt: skip
    docs.append("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {token: x}\n")
    docs.append("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bench}\n")
    return "---\n".join(docs)


#: The chart: the plain objects, named and labelled by helpers, sized by per-env values.
CHART = {
    "charts/shop/Chart.yaml": "apiVersion: v2\nname: shop\nversion: 1.0.0\nappVersion: '1.27'\n",
    "charts/shop/values.yaml": """\
services: [web-0, web-1, web-2]
configs: [cfg-0, cfg-1]
replicas: 1
mode: dev
image: {repository: nginx, tag: "1.27"}
resources:
  requests: {cpu: 100m, memory: 128Mi}
  limits: {cpu: "1", memory: 1Gi}
serviceAccount: {name: bench}
token: x
""",
    "charts/shop/values-prod.yaml": "replicas: 2\nmode: prod\n",
    "charts/shop/values-dev.yaml": "replicas: 1\nmode: dev\nresources: {requests: {cpu: 50m}}\n",
    "charts/shop/templates/_helpers.tpl": """\
{{- define "shop.selectorLabels" -}}
app: {{ .name }}
{{- end }}

{{- define "shop.labels" -}}
{{ include "shop.selectorLabels" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | trunc 63 }}
{{- end }}

{{- define "shop.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
""",
    "charts/shop/templates/deployments.yaml": """\
{{- range $i, $name := .Values.services }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels: {{- include "shop.labels" (dict "name" $name "root" $) | nindent 4 }}
spec:
  replicas: {{ $.Values.replicas }}
  selector:
    matchLabels: {{- include "shop.selectorLabels" (dict "name" $name) | nindent 6 }}
  template:
    metadata:
      labels: {{- include "shop.selectorLabels" (dict "name" $name) | nindent 8 }}
    spec:
      serviceAccountName: {{ $.Values.serviceAccount.name }}
      containers:
        - name: web
          image: {{ include "shop.image" $ }}
          ports: [{containerPort: 8080}]
          env:
            - {name: MODE, value: {{ $.Values.mode | quote }}}
            - {name: INDEX, value: {{ $i | quote }}}
          resources: {{- toYaml $.Values.resources | nindent 12 }}
{{- end }}
""",
    "charts/shop/templates/services.yaml": """\
{{- range .Values.services }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ . }}
  labels: {{- include "shop.labels" (dict "name" . "root" $) | nindent 4 }}
spec:
  selector: {{- include "shop.selectorLabels" (dict "name" .) | nindent 4 }}
  ports: [{port: 80, targetPort: 8080}]
{{- end }}
""",
    "charts/shop/templates/configmaps.yaml": """\
{{- range .Values.configs }}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ . }}}
data: {a: '1', b: '2', mode: {{ $.Values.mode | quote }}}
{{- end }}
""",
    "charts/shop/templates/secret.yaml": """\
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: {{ .Values.token | quote }}}
""",
    "charts/shop/templates/serviceaccount.yaml": """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: {{ .Values.serviceAccount.name }}}
""",
}

#: The Jsonnet app: the same objects from a library, sized by a TLA and an extVar.
JSONNET = {
    "lib/shop.libsonnet": """{
  labels(name):: { app: name },
  deployment(name, index, replicas, mode):: {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: name },
    spec: {
      replicas: replicas, selector: { matchLabels: $.labels(name) },
      template: {
        metadata: { labels: $.labels(name) },
        spec: {
          serviceAccountName: 'bench',
          containers: [{
            name: 'web', image: 'nginx:1.27', ports: [{ containerPort: 8080 }],
            env: [{ name: 'MODE', value: mode }, { name: 'INDEX', value: std.toString(index) }],
            resources: { requests: { cpu: '100m', memory: '128Mi' },
                         limits: { cpu: '1', memory: '1Gi' } },
          }],
        },
      },
    },
  },
  service(name):: { apiVersion: 'v1', kind: 'Service', metadata: { name: name },
                    spec: { selector: $.labels(name), ports: [{ port: 80, targetPort: 8080 }] } },
  configMap(name):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name },
                      data: { a: '1', b: '2' } },
}
""",
    "apps/shop/main.jsonnet": """local shop = import 'shop.libsonnet';
function(replicas=1)
  local mode = std.extVar('mode');
  local names = ['web-%d' % i for i in std.range(0, 2)];
  [shop.deployment(names[i], i, replicas, mode) for i in std.range(0, 2)]
  + [shop.service(n) for n in names]
  + [shop.configMap('cfg-%d' % i) for i in std.range(0, 1)]
  + [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds' },
      stringData: { token: 'x' } },
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'bench' } },
  ]
""",
}

#: Each source's application entry (name and source) in a fleet file.
APPLICATIONS = {
    "plain": ("bench", "path: app"),
    "helm": ("bench-helm",
             "path: charts/shop, helm: {valueFiles: ['values-{{ cluster.labels.env }}.yaml']}"),
    "jsonnet": ("bench-jsonnet",
                "path: apps/shop, jsonnet: {tlas: {replicas: {code: '2'}}, "
                "extVars: {mode: prod}, libs: [lib]}"),
}  # fmt: skip


def write_repo(repo: Path) -> None:
    """The three sources, committed."""
    files = {"app/all.yaml": _plain_app(), **CHART, **JSONNET}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "app"]):
        subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True)


def fleet_text(
    *, repo: Path, kubeconfig: Path, sources: tuple[str, ...], clusters: dict[str, str]
) -> str:
    """A fleet of ``clusters`` (name -> ``env`` label), each source's app on all of them."""
    lines = ["clusters:"]
    lines += [f"  - {{name: {name}, kubeconfig: {kubeconfig}, labels: {{env: {env}}}}}"
              for name, env in clusters.items()]  # fmt: skip
    lines.append("applications:")
    for source in sources:
        name, spec = APPLICATIONS[source]
        lines += [f"  - name: {name}", f"    source: {{repo: {repo}, {spec}}}",
                  "    destination: {namespace: bench}"]  # fmt: skip
    return "\n".join(lines) + "\n"


@contextmanager
def kubesim(work: Path, *, clusters: int) -> Iterator[tuple[str, Path]]:
    """A kubesim process with ``clusters`` clusters: its base URL and kubeconfig."""
    port = free_port()
    kubeconfig = work / f"kubeconfig-{port}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "kubesim", "--clusters", str(clusters), "--port", str(port),
         "--kubeconfig", str(kubeconfig), "--controller-delay", "0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if time.monotonic() > deadline or sim.poll() is not None:
                raise SystemExit("kubesim did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", kubeconfig
    finally:
        sim.terminate()
        sim.wait(timeout=30)


def requests(base: str, cluster: str = "sim-1") -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/admin/clusters/{cluster}/requests", timeout=10) as r:
        data = json.load(r)
    return {f"{c['verb']} {c['resource']}": c["count"] for c in data["requests"]}


def reset(base: str, cluster: str = "sim-1") -> None:
    request = urllib.request.Request(f"{base}/admin/clusters/{cluster}/requests", method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()


def cpu() -> tuple[float, float]:
    """CPU seconds of this process and of its finished children (git, not kubesim)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


@dataclass
class TimedRenderer:
    """Wraps the engine's render stage and keeps each call's wall and CPU seconds."""

    render: Renderer
    calls: list[tuple[float, float, float]] = field(default_factory=list)

    def __call__(self, spec: RenderInput, commit: str) -> list[RenderedObject]:
        own, children = cpu()
        wall = time.perf_counter()
        try:
            return self.render(spec, commit)
        finally:
            own_after, children_after = cpu()
            self.calls.append((time.perf_counter() - wall, own_after - own,
                               children_after - children))  # fmt: skip

    def mean_since(self, start: int) -> tuple[float, float, float]:
        """Mean (wall, CPU, git CPU) of the calls from index ``start`` on."""
        calls = self.calls[start:]
        n = max(1, len(calls))
        return (sum(c[0] for c in calls) / n, sum(c[1] for c in calls) / n,
                sum(c[2] for c in calls) / n)  # fmt: skip


@dataclass
class Run:
    """One run's figures: requests by verb and resource, CPU (own, git) and wall seconds."""

    requests: dict[str, float]
    cpu: float
    git_cpu: float
    wall: float
    render: tuple[float, float, float]

    @property
    def total(self) -> float:
        return sum(self.requests.values())

    @property
    def discovery(self) -> float:
        return sum(v for k, v in self.requests.items() if k.endswith(" discovery"))

    @property
    def writes(self) -> float:
        return sum(v for k, v in self.requests.items()
                   if k.split()[0] in {"patch", "post", "put", "delete"})  # fmt: skip


@dataclass
class Result:
    source: str
    objects: int
    first_render: float
    first: Run
    noop: Run


def bench_source(
    source: str, *, work: Path, git: GitSource, commit: str, repo: Path, runs: int
) -> Result:
    """First sync and ``runs`` no-op reconciles of ``source``'s app on a fresh cluster."""
    name = APPLICATIONS[source][0]
    with kubesim(work, clusters=1) as (base, kubeconfig):
        fleet: Fleet = parse_fleet(
            fleet_text(repo=repo, kubeconfig=kubeconfig, sources=(source,),
                       clusters={"sim-1": "prod"}),
            source="fleet.yaml", base_dir=str(work),
        )  # fmt: skip
        target = fleet.target(name, "sim-1")
        # The renderer's first call in this process, through a client of its own so the
        # engine below starts with discovery cold.
        warm = Engine(source=git, clients=ClientFactory(cache_dir=work / f"warm-{source}"))
        spec = warm.render_input(target, warm.client(target))
        started = time.perf_counter()
        objects = len(GitRenderer(warm.source)(spec, commit))
        first_render = time.perf_counter() - started

        engine = Engine(source=git, clients=ClientFactory(cache_dir=work / f"kube-{source}"))
        timed = TimedRenderer(GitRenderer(engine.source))
        engine.objects = timed
        options = Options(revision=commit)

        reset(base)
        (own, children), wall = cpu(), time.perf_counter()
        outcome = engine.reconcile(target, options=options)
        (own_after, children_after), wall_after = cpu(), time.perf_counter()
        assert outcome.sync is SyncStatus.SYNCED, outcome.errors
        first = Run(dict(requests(base)), own_after - own, children_after - children,
                    wall_after - wall, timed.mean_since(0))  # fmt: skip

        engine.reconcile(target, options=options)  # settle status writes
        reset(base)
        mark = len(timed.calls)
        (own, children), wall = cpu(), time.perf_counter()
        for _ in range(runs):
            outcome = engine.reconcile(target, options=options)
            assert outcome.sync is SyncStatus.SYNCED and not outcome.drift, outcome.drift
        (own_after, children_after), wall_after = cpu(), time.perf_counter()
        noop = Run({k: v / runs for k, v in requests(base).items()}, (own_after - own) / runs,
                   (children_after - children) / runs, (wall_after - wall) / runs,
                   timed.mean_since(mark))  # fmt: skip
    return Result(source, objects, first_render, first, noop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=[*SOURCES, "all"], default="all")
    parser.add_argument("--runs", type=int, default=50, help="no-op reconciles to average")
    parser.add_argument("--detail", action="store_true", help="requests by verb and resource")
    args = parser.parse_args()
    sources = SOURCES if args.source == "all" else (args.source,)
    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    repo = work / "repo"
    write_repo(repo)
    git = GitSource(work / "cache")
    started = time.perf_counter()
    commit = git.resolve(str(repo), "main", fetch=True)
    fetch_ms = (time.perf_counter() - started) * 1000
    results = [bench_source(s, work=work, git=git, commit=commit, repo=repo, runs=args.runs)
               for s in sources]  # fmt: skip

    print(f"reconcile of a 10-object application ({KINDS} kinds) on one kubesim cluster, "
          "per source (Helm: no hooks)")  # fmt: skip
    print(f"  git fetch + resolve (once, shared by all targets): {fetch_ms:7.1f} ms wall")
    print(
        f"  {'':29} {'API requests':>24} {'CPU ms':>8} {'git CPU':>8} {'wall ms':>8}   "
        "render per target: wall, CPU, git CPU ms"
    )
    print(f"  {'source':8} {'run':20} {'(discovery, writes)':>24}")  # fmt: skip
    for r in results:
        for label, run, fmt in ((f"first sync ({r.objects} obj)", r.first, "{:.0f}"),
                                (f"no-op (mean of {args.runs})", r.noop, "{:.1f}")):  # fmt: skip
            shown = (
                f"{fmt.format(run.total)} ({fmt.format(run.discovery)}, {fmt.format(run.writes)})"
            )
            wall, render_cpu, render_git = run.render
            ms = [run.cpu, run.git_cpu, run.wall, wall, render_cpu, render_git]
            a, b, c, d, e, f = (f"{x * 1000:8.2f}" for x in ms)
            print(f"  {r.source:8} {label:20} {shown:>24} {a} {b} {c}   {d} {e} {f}")
            if args.detail:
                for key, count in sorted(run.requests.items()):
                    print(f"        {key:36} {fmt.format(count)}")
    for r in results:
        print(f"  {r.source:8} first render in this process (before timing): "
              f"{r.first_render * 1000:7.1f} ms wall")  # fmt: skip
    for r in results:
        total = r.noop.total
        verdict = "within" if total <= KINDS + 1 and not r.noop.writes else "OVER"
        print(f"  {r.source:8} budget for a no-op: {KINDS} kinds + 1 = {KINDS + 1} requests, "
              f"no writes -> {verdict} budget ({total:.1f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
