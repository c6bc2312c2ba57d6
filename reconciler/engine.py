"""Reconcile one target: one application on one cluster, Git to cluster.

``Engine.reconcile`` is a straight script of named stages, as Flux's kustomize-controller
``reconcile()`` is: source, render, live state, pair and diff, apply, prune, health,
outcome.  Every stage either passes its result on or records why it stopped; nothing
here retries (the caller decides, from the outcome's ``retryable``).

Safety rules kept here, not in callers:

* a server dry-run of every object to be written comes first; if any is rejected, nothing
  is applied and each rejected object is named with the server's reason;
* objects without drift are not written, so resourceVersions do not churn;
* prune candidates are "last inventory, plus live objects carrying both ownership labels,
  minus desired now"; never when the render came out empty unless ``allowEmpty``; never an
  object annotated ``reconciler.dev/prune: "false"``; never what this application does
  not own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from reconciler import inventory as inv
from reconciler.config import Application, Cluster, Fleet, Source
from reconciler.diff import ObjectDiff, diff, pair
from reconciler.errors import ClusterError, ReconcilerError, RenderError
from reconciler.health import aggregate, health_of
from reconciler.kube.client import ClientFactory, KubeClient
from reconciler.masking import masked
from reconciler.model import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PRUNE_ANNOTATION,
    Action,
    Health,
    Manifest,
    ObjectKey,
    SyncStatus,
    group_of,
)
from reconciler.order import phases, sort_for_prune
from reconciler.outcome import Change, Drift, Outcome, Problem, Trigger, timestamp
from reconciler.render import RenderedObject, finalize, render
from reconciler.source import GitSource

#: ``resolve(source, fresh) -> commit``: how the engine learns the revision to apply.
Resolver = Callable[[Source, bool], str]
#: ``objects(source, commit, path) -> rendered objects``: how it gets manifests.
Renderer = Callable[[Source, str, str], list[RenderedObject]]

_CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")


@dataclass(frozen=True)
class Options:
    """How to run: ``dry_run`` writes nothing; ``fresh`` fetches Git before resolving.

    The one-shot CLI always fetches; the workers resolve through a shared revision cache
    (single-flight) and pass their own resolver, so ``fresh`` only reaches Git from there.
    """

    dry_run: bool = False
    fresh: bool = True
    #: A commit already resolved by the caller (the same for every target of one run).
    revision: str | None = None
    #: Seconds to wait for a CRD applied in this run to be Established.
    crd_timeout: float = 60.0


@dataclass
class _Run:
    """State shared by the stages of one run."""

    app: Application
    cluster: Cluster
    trigger: Trigger
    options: Options
    outcome: Outcome
    kube: KubeClient | None = None
    desired: list[Manifest] = field(default_factory=list)
    live: dict[ObjectKey, Manifest] = field(default_factory=dict)
    inventory: inv.Inventory = field(default_factory=inv.Inventory)
    diffs: dict[ObjectKey, ObjectDiff] = field(default_factory=dict)
    orphans: list[Manifest] = field(default_factory=list)
    #: The live object after this run (apply results replace listed ones).
    result: dict[ObjectKey, Manifest] = field(default_factory=dict)
    #: Objects that left Git but stay because ``sync.prune`` is false.
    unpruned: bool = False


class Engine:
    """Reconciles targets; one per worker process, reused (clients and mirrors are cached)."""

    def __init__(
        self,
        *,
        source: GitSource,
        clients: ClientFactory,
        resolver: Resolver | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        self.source = source
        self.clients = clients
        self.resolve = resolver or self.resolve_from_git
        self.objects = renderer or self.render_from_git

    @classmethod
    def local(cls, cache_dir: Path) -> Engine:
        """An engine with a Git mirror cache and cluster clients under ``cache_dir``."""
        return cls(source=GitSource(cache_dir), clients=ClientFactory(cache_dir=cache_dir))

    # -- defaults for the source and render stages --------------------------------------

    def resolve_from_git(self, source: Source, fresh: bool) -> str:
        return self.source.resolve(source.repo, source.revision, fetch=fresh)

    def render_from_git(self, source: Source, commit: str, path: str) -> list[RenderedObject]:
        files = self.source.read_tree(source.repo, commit, path)
        return render(
            files,
            path=path,
            materialise=lambda directory: self.source.export(source.repo, commit, directory),
        )

    # -- the run -------------------------------------------------------------------------

    def reconcile(
        self,
        fleet: Fleet,
        app_name: str,
        cluster_name: str,
        *,
        trigger: Trigger = Trigger.CLI,
        options: Options | None = None,
    ) -> Outcome:
        """Reconcile one target and say what happened; never raises our own errors."""
        options = options or Options()
        started = time.monotonic()
        outcome = Outcome(
            application=app_name,
            cluster=cluster_name,
            trigger=trigger.value,
            started=timestamp(datetime.now(UTC)),
            dry_run=options.dry_run,
        )
        try:
            run = _Run(
                fleet.application(app_name), fleet.cluster(cluster_name), trigger, options, outcome
            )
            self._stages(fleet, run)
        except ReconcilerError as exc:
            outcome.errors.append(Problem(str(exc), exc.retryable))
        if outcome.errors:
            outcome.sync = SyncStatus.FAILED
        outcome.duration = round(time.monotonic() - started, 4)
        return outcome

    def desired(
        self, fleet: Fleet, app: Application, cluster: Cluster, commit: str
    ) -> tuple[list[Manifest], KubeClient]:
        """Stage 2 alone: the objects Git wants on ``cluster`` at ``commit``.

        Reads discovery from the cluster (to know which kinds are namespaced) and writes
        nothing; ``reconciler validate`` uses it as is.
        """
        path = fleet.source_path(app, cluster)
        rendered = self.objects(app.source, commit, "" if path == "." else path)
        kube = self.clients.for_cluster(
            name=cluster.name, context=cluster.context, kubeconfig=cluster.kubeconfig
        )
        manifests = finalize(
            rendered,
            app=app.name,
            default_namespace=app.destination.namespace,
            namespaced=_scope(kube, rendered),
        )
        return manifests, kube

    def _stages(self, fleet: Fleet, run: _Run) -> None:
        app, outcome = run.app, run.outcome
        # 1. Source: the commit this run applies.
        commit = run.options.revision or self.resolve(app.source, run.options.fresh)
        outcome.revision = commit
        # 2. Render: the objects Git wants on this cluster.
        run.desired, run.kube = self.desired(fleet, app, run.cluster, commit)
        kube = run.kube
        # 3. Live state: the inventory, then one list per kind (desired or inventoried).
        run.inventory = inv.from_configmap(
            kube.get("", "ConfigMap", inv.NAMESPACE, inv.name_for(app.name))
        )
        self._read_live(run)
        # 4. Pair and diff, pure.
        self._compare(run)
        if not self._should_apply(run, commit):
            self._finish_without_apply(run)
            return
        # 5. Apply (dry-run of everything first), 6. prune, then record the inventory.
        if not self._apply(run):
            self._health(run)
            return
        self._prune(run)
        self._write_inventory(run, commit)
        # 7. Health and 8. outcome.
        self._health(run)
        if any(c.action is Action.FAILED for c in outcome.changes):
            outcome.sync = SyncStatus.FAILED
        elif run.unpruned:
            outcome.sync = SyncStatus.OUT_OF_SYNC  # objects that left Git are still there
        else:
            outcome.sync = SyncStatus.SYNCED

    def _read_live(self, run: _Run) -> None:
        assert run.kube is not None
        kinds = {(group_of(str(o["apiVersion"])), str(o["kind"])) for o in run.desired}
        kinds |= {(e.key.group, e.key.kind) for e in run.inventory.entries}
        for group, kind in sorted(kinds):
            if run.kube.kind(group, kind) is None:
                continue  # not served (yet): a CRD of this very run, or a deleted one
            for obj in run.kube.list_owned(group, kind, run.app.name):
                run.live[ObjectKey.of(obj)] = obj

    def _compare(self, run: _Run) -> None:
        pairing = pair(run.desired, list(run.live.values()))
        ignore = run.app.ignore_differences
        for desired, live in pairing.pairs:
            result = diff(_masked(desired), masked(live), ignore=ignore)
            run.diffs[result.key] = result
            if result.changed:
                kind = "missing" if live is None else "changed"
                run.outcome.drift.append(
                    Drift(str(result.key), kind, result.changed_paths, result.diff)
                )
        desired_keys = {ObjectKey.of(o) for o in run.desired}
        orphans = {ObjectKey.of(o): o for o in pairing.orphans}
        run.orphans = [
            o for k, o in orphans.items() if k not in desired_keys and _owned(o, run.app)
        ]
        for obj in run.orphans:
            run.outcome.drift.append(Drift(str(ObjectKey.of(obj)), "extra"))

    def _should_apply(self, run: _Run, commit: str) -> bool:
        if run.options.dry_run:
            return False
        if not run.outcome.drift and run.inventory.revision == commit:
            return False
        sync = run.app.sync
        if run.trigger.forced:
            return True
        if not sync.automated or sync.suspended:
            return False
        # Without selfHeal, live drift alone is reported; a new revision is applied.
        return sync.self_heal or run.inventory.revision != commit

    def _finish_without_apply(self, run: _Run) -> None:
        run.result = dict(run.live)
        for obj in run.desired:
            key = ObjectKey.of(obj)
            if not run.diffs[key].changed:
                run.outcome.changes.append(Change(str(key), Action.UNCHANGED))
        self._health(run)
        run.outcome.sync = SyncStatus.OUT_OF_SYNC if run.outcome.drift else SyncStatus.SYNCED

    # -- 5. apply ------------------------------------------------------------------------

    def _apply(self, run: _Run) -> bool:
        """Dry-run every object to write, then apply phase by phase; False when refused."""
        assert run.kube is not None
        kube, outcome = run.kube, run.outcome
        run.result = dict(run.live)
        to_write = [o for o in run.desired if run.diffs[ObjectKey.of(o)].changed]
        for obj in run.desired:
            key = ObjectKey.of(obj)
            if not run.diffs[key].changed:
                outcome.changes.append(Change(str(key), Action.UNCHANGED))
        if not to_write:
            return True
        self._ensure_namespaces(run, to_write)
        served = {(k.group, k.kind) for k in (ObjectKey.of(o) for o in to_write)
                  if kube.kind(k.group, k.kind) is not None}  # fmt: skip
        rejected: list[Problem] = []
        unchanged: set[ObjectKey] = set()
        for obj in to_write:
            key = ObjectKey.of(obj)
            if (key.group, key.kind) not in served:
                continue  # its CRD is applied in this run; validated when applied
            try:
                dry = kube.apply(obj, dry_run=True, force=run.app.sync.force)
            except ClusterError as exc:
                if exc.retryable:
                    raise
                rejected.append(Problem(f"{key}: {exc}", False, str(key)))
                continue
            live = run.live.get(key)
            if live is not None and _same_object(dry, live):
                unchanged.add(key)  # the server sees no change: our diff was stricter
        if rejected:
            outcome.errors.extend(rejected)
            outcome.errors.append(
                Problem(
                    f"server dry-run rejected {len(rejected)} object(s); nothing applied", False
                )
            )
            return False
        for phase in phases(o for o in to_write if ObjectKey.of(o) not in unchanged):
            for obj in phase:
                self._apply_one(run, obj)
            self._wait_for_crds(run, phase)
        for key in unchanged:
            outcome.changes.append(Change(str(key), Action.UNCHANGED, "no change on the server"))
        return True

    def _apply_one(self, run: _Run, obj: Manifest) -> None:
        assert run.kube is not None
        key = ObjectKey.of(obj)
        try:
            applied = run.kube.apply(obj, force=run.app.sync.force)
        except ClusterError as exc:
            if exc.retryable:
                raise
            run.outcome.changes.append(Change(str(key), Action.FAILED, str(exc)))
            run.outcome.errors.append(Problem(f"{key}: {exc}", False, str(key)))
            return
        action = Action.CREATED if key not in run.live else Action.CONFIGURED
        run.outcome.changes.append(Change(str(key), action))
        run.result[key] = applied

    def _ensure_namespaces(self, run: _Run, objs: Sequence[Manifest]) -> None:
        """Namespaces the objects go to must exist; create them when the policy says so."""
        assert run.kube is not None
        declared = {str(o["metadata"]["name"]) for o in run.desired if o["kind"] == "Namespace"}
        needed = sorted(
            {str(o["metadata"].get("namespace")) for o in objs if o["metadata"].get("namespace")}
            - declared
        )
        for name in needed:
            if run.kube.get("", "Namespace", "", name) is not None:
                continue
            if not run.app.sync.create_namespace:
                raise ClusterError(
                    f"Namespace/{name}: does not exist on cluster {run.cluster.name} "
                    "and sync.createNamespace is false"
                )
            manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            run.kube.apply(manifest)
            run.outcome.changes.append(Change(f"Namespace/{name}", Action.CREATED,
                                              "createNamespace"))  # fmt: skip

    def _wait_for_crds(self, run: _Run, phase: Sequence[Manifest]) -> None:
        """After CRDs are applied, wait until Established so their resources can follow."""
        assert run.kube is not None
        crds = [o for o in phase if (group_of(o["apiVersion"]), o["kind"]) == _CRD]
        deadline = time.monotonic() + run.options.crd_timeout
        for crd in crds:
            name = str(crd["metadata"]["name"])
            while True:
                live = run.kube.get(*_CRD, "", name)
                if live is not None and _established(live):
                    break
                if time.monotonic() > deadline:
                    raise ClusterError(f"CustomResourceDefinition/{name}: not Established "
                                       f"after {run.options.crd_timeout:.0f}s")  # fmt: skip
                time.sleep(0.1)
            spec = crd.get("spec") or {}
            run.kube.forget_kind(str(spec.get("group", "")),
                                 str((spec.get("names") or {}).get("kind", "")))  # fmt: skip

    # -- 6. prune ------------------------------------------------------------------------

    def _prune(self, run: _Run) -> None:
        assert run.kube is not None
        outcome, sync = run.outcome, run.app.sync
        if not run.orphans:
            return
        if not run.desired and not sync.allow_empty:
            outcome.errors.append(Problem(
                f"the render produced no objects; refusing to prune {len(run.orphans)} "
                "object(s) (set sync.allowEmpty to allow it)", False))  # fmt: skip
            return
        for obj in sort_for_prune(run.orphans):
            key = ObjectKey.of(obj)
            annotations = obj.get("metadata", {}).get("annotations") or {}
            if not sync.prune:
                outcome.changes.append(Change(str(key), Action.SKIPPED, "sync.prune is false"))
                run.unpruned = True
                continue
            if str(annotations.get(PRUNE_ANNOTATION, "")).lower() == "false":
                outcome.changes.append(
                    Change(str(key), Action.SKIPPED, f'{PRUNE_ANNOTATION}: "false"')
                )
                continue
            try:
                run.kube.delete(key.group, key.kind, key.namespace, key.name)
            except ClusterError as exc:
                if exc.retryable:
                    raise
                outcome.changes.append(Change(str(key), Action.FAILED, str(exc)))
                outcome.errors.append(Problem(f"{key}: prune failed: {exc}", False, str(key)))
                continue
            outcome.changes.append(Change(str(key), Action.PRUNED))
            run.result.pop(key, None)

    def _write_inventory(self, run: _Run, commit: str) -> None:
        """Record what the target now owns: desired, plus what could not be pruned."""
        assert run.kube is not None
        pruned = {c.object for c in run.outcome.changes if c.action is Action.PRUNED}
        kept = [o for o in run.orphans if str(ObjectKey.of(o)) not in pruned]
        # An object kept only by its prune=false annotation is no longer ours to track.
        kept = [o for o in kept if not _prune_disabled(o)]
        failed = any(c.action is Action.FAILED for c in run.outcome.changes)
        revision = run.inventory.revision if failed or run.outcome.errors else commit
        new = inv.Inventory(entries=inv.entries_of([*run.desired, *kept]), revision=revision)
        if run.inventory.exists and (new.entries, new.revision) == (
            run.inventory.entries, run.inventory.revision,
        ):  # fmt: skip
            return
        manifest = inv.to_configmap(run.app.name, new)
        try:
            run.kube.apply(manifest, force=True)
        except ClusterError as exc:
            if exc.status != 404:
                raise
            run.kube.apply(inv.namespace_manifest())
            run.kube.apply(manifest, force=True)

    # -- 7. health -----------------------------------------------------------------------

    def _health(self, run: _Run) -> None:
        results = [health_of(run.result.get(ObjectKey.of(o))) for o in run.desired]
        run.outcome.health = aggregate(results) if run.desired else Health.HEALTHY
        if run.outcome.errors and not run.result:
            run.outcome.health = Health.UNKNOWN


def _scope(
    kube: KubeClient, rendered: Sequence[RenderedObject]
) -> Callable[[str, str], bool | None]:
    """Scope of a kind: from CRDs in the render itself first, else from discovery."""
    from_crds: dict[tuple[str, str], bool] = {}
    for obj in rendered:
        manifest = obj.manifest
        if (group_of(str(manifest.get("apiVersion", ""))), manifest.get("kind")) == _CRD:
            spec = manifest.get("spec") or {}
            names = spec.get("names") or {}
            from_crds[(str(spec.get("group", "")), str(names.get("kind", "")))] = (
                spec.get("scope", "Namespaced") == "Namespaced"
            )

    def namespaced(group: str, kind: str) -> bool | None:
        if (group, kind) in from_crds:
            return from_crds[(group, kind)]
        return kube.namespaced(group, kind)

    return namespaced


def _masked(obj: Manifest) -> Manifest:
    result = masked(obj)
    assert result is not None
    return result


def _owned(obj: Manifest, app: Application) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and labels.get(APP_LABEL) == app.name


def _prune_disabled(obj: Manifest) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(PRUNE_ANNOTATION, "")).lower() == "false"


def _same_object(dry: Manifest, live: Manifest) -> bool:
    """Whether a dry-run result equals the live object, ownership bookkeeping aside."""

    def plain(obj: Manifest) -> Manifest:
        meta = {
            k: v
            for k, v in (obj.get("metadata") or {}).items()
            if k not in {"managedFields", "resourceVersion"}
        }
        return {**obj, "metadata": meta}

    return plain(dry) == plain(live)


def _established(crd: Manifest) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(
        isinstance(c, dict) and c.get("type") == "Established" and c.get("status") == "True"
        for c in conditions
    )


__all__ = ["Engine", "Options", "RenderError", "Trigger"]
