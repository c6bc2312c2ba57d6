"""The shared render cache: a render miss against a hit, the hit rate, and what splits keys.

The Helm chart and the Jsonnet app of ``bench/reconcile_bench.py`` (10 objects each), one
application each, on ``--clusters`` kubesim clusters of one Kubernetes version, half of
them labelled ``env: prod`` and half ``env: dev``; the chart's value file is chosen by
that label (``values-{{ cluster.labels.env }}.yaml``), the Jsonnet app has no per-cluster
input.  Every target's render goes through ``workers.runtime.Runtime.render``, built by
``build_runtime()`` as a worker builds it, against a real Redis (``REDIS_URL`` when it
answers, else an embedded one) under a key prefix of its own.

Per application and round, the cache starts cold for this commit and the targets render
in fleet order: the first target of each key misses (renders, then stores), the others
hit (read, inflate, rebuild the objects).  Reported: the cost of each (wall; CPU of this
process; CPU of the git subprocesses that read the tree), the render alone, what every
target pays before the cache is asked (``render_input`` and ``RenderInput.key()``), the
hit rate, the stored size, and the keys by ``env`` label, with the replicas their cached
render holds.  One more cluster of the same version, ``env: prod``, serves one extra API
group (a CustomResourceDefinition is installed on it), to show what that does to keys.

    .venv/bin/python bench/render_cache_bench.py [--clusters 20] [--rounds 10]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from reconcile_bench import APPLICATIONS, cpu, fleet_text, kubesim, write_repo

from reconciler.engine import GitRenderer, RenderInput
from reconciler.fleet import Target, load_fleet
from reconciler.kube import ClientFactory
from reconciler.store.provision import provide_redis
from workers.runtime import Runtime, build_runtime

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.bench.example.org"},
    "spec": {
        "group": "bench.example.org",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip


@dataclass
class Sample:
    """Seconds: wall, this process's CPU, the git subprocesses' CPU."""

    wall: float
    cpu: float
    git: float


def timed(call: Callable[[], Any]) -> tuple[Any, Sample]:
    (own, children), wall = cpu(), time.perf_counter()
    value = call()
    (own_after, children_after), wall_after = cpu(), time.perf_counter()
    return value, Sample(wall_after - wall, own_after - own, children_after - children)


def median(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.wall for s in samples),
                  statistics.median(s.cpu for s in samples),
                  statistics.median(s.git for s in samples))  # fmt: skip


@dataclass
class AppResult:
    source: str
    targets: int
    first_render: float
    bare: Sample
    inputs: Sample
    misses: list[Sample] = field(default_factory=list)
    hits: list[Sample] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    #: env label -> {key: (value files, clusters, replicas of web-0 in the cached render)}
    keys: dict[str, dict[str, tuple[tuple[str, ...], list[str], Any]]] = field(default_factory=dict)
    extra_key: str = ""


def _replicas(rt: Runtime, commit: str, key: str) -> Any:
    cached = rt.renders.get(commit, key) or []
    for item in cached:
        manifest = item["manifest"]
        if manifest.get("kind") == "Deployment" and manifest["metadata"]["name"] == "web-0":
            return manifest["spec"]["replicas"]
    return None


def _key_of(spec_of: Callable[[Target], RenderInput], target: Target) -> str:
    return spec_of(target).key()


def bench_app(
    rt: Runtime, source: str, *, commit: str, clusters: list[str], extra: str, rounds: int
) -> AppResult:
    fleet = rt.fleet()
    app = APPLICATIONS[source][0]
    targets = [fleet.target(app, name) for name in clusters]
    engine = rt.engine

    def spec_of(target: Target) -> RenderInput:
        return engine.render_input(target, engine.client(target))

    specs = [spec_of(t) for t in targets]  # clients and discovery warm: workers keep both
    keys = [s.key() for s in specs]
    inputs = [timed(functools.partial(_key_of, spec_of, t))[1] for t in targets]
    started = time.perf_counter()
    GitRenderer(engine.source)(specs[0], commit)  # the renderer's first call in this process
    first_render = time.perf_counter() - started
    bare = [timed(lambda: GitRenderer(engine.source)(specs[0], commit))[1] for _ in range(rounds)]
    result = AppResult(source, len(targets), first_render, median(bare), median(inputs))

    for _ in range(rounds):
        for key in set(keys):
            rt.client.delete(rt.keys.render(commit, key))
        seen: set[str] = set()
        for spec, key in zip(specs, keys, strict=True):
            cached = rt.renders.has(commit, key)
            if cached != (key in seen):
                raise SystemExit(f"{source}: key {key[:12]} cached={cached}, expected {not cached}")
            seen.add(key)
            objects, sample = timed(functools.partial(rt.render, spec, commit))
            assert len(objects) == 10, len(objects)
            (result.hits if cached else result.misses).append(sample)
    for target, key in zip(targets, keys, strict=True):
        env = target.cluster.labels["env"]
        entry = result.keys.setdefault(env, {}).setdefault(
            key, (target.value_files, [], _replicas(rt, commit, key))
        )
        entry[1].append(target.cluster.name)
        result.sizes[key] = int(rt.client.strlen(rt.keys.render(commit, key)))
    result.extra_key = spec_of(fleet.target(app, extra)).key()
    return result


def install_crd(base: str, kubeconfig: Path, cluster: str, work: Path) -> None:
    """Apply ``CRD`` on ``cluster`` and wait until discovery serves its group."""
    kube = ClientFactory(cache_dir=work / "crd-client").for_cluster(
        name=cluster, context=cluster, kubeconfig=str(kubeconfig)
    )
    kube.apply(CRD, force=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/clusters/{cluster}/apis", timeout=10) as r:
            groups = [g["name"] for g in json.load(r).get("groups", [])]
        if "bench.example.org" in groups:
            return
        time.sleep(0.05)
    raise SystemExit(f"{cluster}: the CRD's group is not served")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(results: list[AppResult], *, clusters: int, rounds: int, redis_kind: str,
           version: str) -> None:  # fmt: skip
    print(f"render cache through Runtime.render: {clusters} targets per app on {clusters} kubesim "
          f"clusters of one version ({version}), {rounds} rounds from a cold cache; "
          f"Redis: {redis_kind}")  # fmt: skip
    head = (f"  {'app':8} {'renders':>8} {'hits':>5} {'hit rate':>9} "
            f"{'miss: wall/CPU/git ms':>22} {'hit: wall/CPU ms':>17} {'render alone ms':>16} "
            f"{'input+key ms':>13} {'stored':>8}")  # fmt: skip
    print(head)
    for r in results:
        miss, hit = median(r.misses), median(r.hits)
        rate = len(r.hits) / (len(r.hits) + len(r.misses))
        size = max(r.sizes.values())
        print(f"  {r.source:8} {len(r.misses):>8} {len(r.hits):>5} {rate:>8.0%} "
              f"{_ms(miss.wall):>8}/{_ms(miss.cpu)}/{_ms(miss.git):<6} "
              f"{_ms(hit.wall):>9}/{_ms(hit.cpu):<6} {_ms(r.bare.wall):>16} "
              f"{_ms(r.inputs.wall):>13} {size:>6} B")  # fmt: skip
    print("  (medians; 'renders' = misses over all rounds; 'render alone' = "
          "GitRenderer with no cache)")  # fmt: skip
    for r in results:
        print(f"  {r.source:8} first render in this process (before timing): "
              f"{r.first_render * 1000:.1f} ms wall")  # fmt: skip
    print("  keys by cluster label (one render shared by every cluster of a key):")
    for r in results:
        all_keys = {k for by_key in r.keys.values() for k in by_key}
        for env, by_key in sorted(r.keys.items()):
            for key, (files, names, replicas) in by_key.items():
                print(f"    {r.source:8} env={env:5} key {key[:12]}  value files "
                      f"{list(files) or '-'}  {len(names):>3} clusters  "
                      f"web-0 replicas {replicas}")  # fmt: skip
        distinct = "distinct" if len(all_keys) == len(r.keys) else "NOT distinct"
        if r.source == "helm":
            print(
                f"    {r.source:8} {len(all_keys)} keys for {len(r.keys)} value files: {distinct}"
            )
        prod = next(iter(r.keys.get("prod", {})), "")
        same = "the same key" if r.extra_key == prod else "a key of its own"
        print(f"    {r.source:8} env=prod cluster serving one more API group (a CRD): "
              f"{same} ({r.extra_key[:12]})")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=20, help="clusters of one version")
    parser.add_argument("--rounds", type=int, default=10, help="cold-cache rounds per app")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="render-cache-bench-"))
    repo = work / "repo"
    write_repo(repo)
    names = [f"sim-{i}" for i in range(1, args.clusters + 2)]
    extra = names[-1]
    envs = {name: ("prod" if i % 2 == 0 else "dev") for i, name in enumerate(names[:-1])}
    envs[extra] = "prod"
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    given = os.environ.get("REDIS_URL", "")
    with provide_redis() as url, kubesim(work, clusters=len(names)) as (base, kubeconfig):
        redis_kind = "REDIS_URL" if given and url == given else "embedded"
        fleet_file = work / "fleet.yaml"
        fleet_file.write_text(fleet_text(repo=repo, kubeconfig=kubeconfig,
                                         sources=("helm", "jsonnet"), clusters=envs))  # fmt: skip
        load_fleet(str(fleet_file))  # fail early, naming the field, if the file is wrong
        os.environ.update({"REDIS_URL": url, "RECONCILER_REDIS_PREFIX": prefix,
                           "RECONCILER_CONFIG": str(fleet_file),
                           "RECONCILER_CACHE_DIR": str(work / "cache")})  # fmt: skip
        install_crd(base, kubeconfig, extra, work)
        rt = build_runtime()
        try:
            source = rt.fleet().application(APPLICATIONS["helm"][0]).source
            commit = rt.resolve(source, fresh=True)
            results = [
                bench_app(rt, s, commit=commit, clusters=names[:-1], extra=extra,
                          rounds=args.rounds)
                for s in ("helm", "jsonnet")
            ]  # fmt: skip
            version = str(rt.engine.client(rt.fleet().target("bench-helm", "sim-1"))
                          .capabilities()[0])  # fmt: skip
        finally:
            client = redis.Redis.from_url(url)
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
            client.close()
            rt.client.close()
    report(results, clusters=args.clusters, rounds=args.rounds, redis_kind=redis_kind,
           version=version)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
