"""Reading a large fleet file: parse and validate, fingerprint, and every target once.

Beat and every worker parse the fleet file whenever it changes, and the CLI on every
command, so parsing must stay small beside a reconcile.  The generated fleet has
``--clusters`` labelled clusters and ``--apps`` applications with a per-environment path
template, each selecting a third of the clusters.

    .venv/bin/python bench/fleet_parse_bench.py [--clusters 100] [--apps 500] [--runs 5]
"""

from __future__ import annotations

import argparse
import time

from reconciler.fleet import parse_fleet


def fleet_text(clusters: int, apps: int) -> str:
    """A fleet file of ``clusters`` clusters and ``apps`` applications."""
    lines = ["clusters:"]
    lines += [
        f"  - {{name: c{i}, labels: {{env: e{i % 3}, region: r{i % 5}}}}}" for i in range(clusters)
    ]
    lines.append("applications:")
    lines += [
        f"  - {{name: a{i}, source: {{repo: https://git.example.org/a{i}.git, "
        f"path: 'apps/{{{{ cluster.labels.env }}}}'}}, "
        f"destination: {{clusters: {{env: e{i % 3}}}}}, sync: {{interval: 30s}}}}"
        for i in range(apps)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print milliseconds per parse, per fingerprint and for every target once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--apps", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    text = fleet_text(args.clusters, args.apps)
    fleet = parse_fleet(text, source="fleet.yaml", base_dir="/")  # warm up
    start = time.perf_counter()
    for _ in range(args.runs):
        fleet = parse_fleet(text, source="fleet.yaml", base_dir="/")
    parse_ms = (time.perf_counter() - start) / args.runs * 1000
    start = time.perf_counter()
    fleet.fingerprint()
    fingerprint_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    targets = [
        fleet.target(app.name, cluster.name)
        for app in fleet.applications
        for cluster in fleet.targets(app)
    ]
    targets_ms = (time.perf_counter() - start) * 1000
    print(f"{args.clusters} clusters, {args.apps} applications, {len(targets)} targets")
    print(f"parse_fleet   {parse_ms:8.1f} ms")
    print(f"fingerprint   {fingerprint_ms:8.1f} ms")
    print(f"every target  {targets_ms:8.1f} ms")


if __name__ == "__main__":
    main()
