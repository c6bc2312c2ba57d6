"""Reconcile one target: one application on one cluster, Git to cluster.

``Engine.reconcile`` is a straight script of named stages, as Flux's kustomize-controller
``reconcile()`` is: source, render, live state, plan, then (when the plan says to sync)
namespaces, stage one (Namespaces and CRDs), server dry-run of the rest, PreSync hooks,
the waves (each gated on the health of the one before when the sync has waves or hooks),
prune, inventory, PostSync hooks; finally health and the verdict.  A stage that fails
stops the run with a named ``Reason``; the sync status is decided in one place
(``_verdict``).  Nothing here retries: the caller decides, from ``Outcome.retryable``.

What to do is decided by the pure ``reconciler.plan``; this module only does it.  Safety
rules kept here, not in callers:

* a server dry-run of every object of stage two comes before any of them, and before any
  hook runs: one rejection applies nothing more, and each rejected object is named;
* objects without drift are not written, so resourceVersions do not churn, and hooks run
  only when a sync writes something (a new revision or healed drift);
* a change the server refuses as immutable fails naming the field, unless the object
  allows replacement (``Replace=true``): then it is deleted and created again;
* prune candidates are "last inventory, plus live objects carrying both ownership labels,
  minus desired now"; never when the render came out empty unless ``allowEmpty``;
* an object another application owns, or one outside the project's allow-lists, fails
  the target before anything is written (``OwnedElsewhere``, ``NotPermitted``); only
  objects whose live labels name this application are pruned, and never a Namespace that
  holds another application's objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from reconciler import inventory as inv
from reconciler.errors import (
    ClusterError,
    ClusterUnavailable,
    Invalid,
    ReconcilerError,
    RenderError,
)
from reconciler.fleet import Source, Target
from reconciler.health import aggregate, health_of
from reconciler.hooks import DeletePolicy, Hook, HookResult, Phase, is_hook
from reconciler.inventory import Inventory
from reconciler.kube.client import ClientFactory, KubeClient
from reconciler.model import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Action,
    Health,
    Manifest,
    ObjectKey,
    SyncStatus,
    group_of,
    resource_version,
)
from reconciler.outcome import Change, HookRun, Outcome, Problem, Reason, Trigger, timestamp
from reconciler.ownership import namespaces_to_prune, neighbours
from reconciler.plan import Plan, plan
from reconciler.render import (
    DirectoryOptions,
    EmptyRender,
    HelmOptions,
    JsonnetArg,
    JsonnetOptions,
    RenderedObject,
    SourceKind,
    detect,
    finalize,
    render,
)
from reconciler.source import GitSource

_CRD = ("apiextensions.k8s.io", "CustomResourceDefinition")


@dataclass(frozen=True)
class RenderInput:
    """Everything a render depends on besides the commit; its ``key`` names cached renders.

    ``helm`` is the application's own Helm options; ``chart`` the options a chart found
    by detection renders with (release name, namespace and the cluster's
    ``.Capabilities``), used only when the path turns out to hold one.  Capabilities are
    per cluster version, so every cluster of one version shares one cached render.
    """

    repo: str
    path: str
    chart: HelmOptions
    helm: HelmOptions | None = None
    jsonnet: JsonnetOptions | None = None
    directory: DirectoryOptions | None = None

    def key(self) -> str:
        """A stable digest of the inputs, for the render cache.

        ``chart`` counts only when the kind is left to detection (it is used only then),
        so Jsonnet and directory renders are shared by every cluster whatever its
        version or API groups.
        """
        detected = self.helm is None and self.jsonnet is None and self.directory is None
        data = {
            "repo": self.repo,
            "path": self.path,
            "chart": _plain(self.chart) if detected else None,
            "helm": _plain(self.helm),
            "jsonnet": _plain(self.jsonnet),
            "directory": _plain(self.directory),
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


#: ``resolve(source, fresh) -> commit``: how the engine learns the revision to apply.
Resolver = Callable[[Source, bool], str]
#: ``objects(input, commit) -> rendered objects``: how it gets manifests.
Renderer = Callable[[RenderInput, str], list[RenderedObject]]


@dataclass(frozen=True)
class Options:
    """How to run: ``dry_run`` writes nothing; ``fresh`` fetches Git before resolving.

    The one-shot CLI always fetches; the workers resolve through a shared revision cache
    (single-flight) and pass their own resolver, so ``fresh`` only reaches Git from there.
    """

    dry_run: bool = False
    fresh: bool = True
    #: Prune for this run whatever ``sync.prune`` says (True, as ``argocd app sync
    #: --prune``), or never (False); None follows the application's policy.
    prune: bool | None = None
    #: A commit already resolved by the caller (the same for every target of one run).
    revision: str | None = None
    #: Seconds to wait for a CRD applied in this run to be Established, or for an object
    #: being replaced to be gone.
    crd_timeout: float = 60.0
    #: First pause between health polls of a wave or a hook; it grows to ``max_poll``.
    poll: float = 0.05
    max_poll: float = 1.0
    #: ``time.monotonic()`` by which the run must be over (a worker's task time limit).
    #: A wave or hook still waited on then stops the run as retryable: the next run
    #: finds the waves already applied and Healthy, and goes on from there.
    deadline: float | None = None

    def wait_until(self, seconds: float) -> tuple[float, bool]:
        """The deadline of a wait of ``seconds`` from now, and whether the run's cuts it."""
        wanted = time.monotonic() + seconds
        if self.deadline is not None and self.deadline < wanted:
            return self.deadline, True
        return wanted, False


class _Stop(ReconcilerError):
    """A stage stopped the run: the named reason and the problems to record.

    An error of ours, so callers of a single stage (``desired``) handle it as any other.
    """

    def __init__(self, reason: Reason, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems) or reason.value)
        self.reason = reason
        self.problems = list(problems)
        self.retryable = bool(self.problems) and all(p.retryable for p in self.problems)


@contextmanager
def _stage(reason: Reason) -> Iterator[None]:
    """Any error of ours raised inside the block stops the run with ``reason``."""
    try:
        yield
    except _Stop:
        raise
    except ReconcilerError as exc:
        raise _Stop(reason, [Problem(str(exc), exc.retryable)]) from exc


@dataclass
class _Applied:
    """The live objects as this run leaves them (apply results replace listed ones)."""

    objects: dict[ObjectKey, Manifest] = field(default_factory=dict)


@dataclass(frozen=True)
class Preview:
    """What a sync of one target at one revision would do (``Engine.preview``)."""

    target: Target
    revision: str | None
    #: The plan of a forced sync; None when a stage stopped it (``errors`` say why).
    plan: Plan | None
    errors: tuple[Problem, ...] = ()
    reason: str = ""
    #: How writes were confirmed: ``server dry-run``, or why only client-side.
    checked: str = ""
    #: Writes the server's dry-run found would leave the object as it is.
    server_unchanged: frozenset[ObjectKey] = frozenset()
    #: Writes the server's dry-run rejected, with its message.
    rejected: Mapping[ObjectKey, str] = field(default_factory=dict)


class GitResolver:
    """The source stage, uncached: the commit a revision names, from the Git mirror."""

    def __init__(self, source: GitSource) -> None:
        self.source = source

    def __call__(self, source: Source, fresh: bool) -> str:
        return self.source.resolve(source.repo, source.revision, fetch=fresh)


class GitRenderer:
    """The render stage, uncached: read the tree at a commit, render it."""

    def __init__(self, source: GitSource) -> None:
        self.source = source

    def __call__(self, spec: RenderInput, commit: str) -> list[RenderedObject]:
        files = self.source.read_tree(spec.repo, commit, spec.path)
        helm = spec.helm
        if helm is None and spec.jsonnet is None and spec.directory is None:
            helm = spec.chart if detect(files) is SourceKind.HELM else None
        return render(
            files,
            path=spec.path,
            materialise=lambda directory: self.source.export(spec.repo, commit, directory),
            helm=helm,
            jsonnet=spec.jsonnet,
            directory=spec.directory,
        )


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
        """``resolver`` and ``renderer`` are the source and render stages: by default
        straight from ``source``; the workers pass cached ones (shared through Redis)."""
        self.source = source
        self.clients = clients
        self.resolve: Resolver = resolver or GitResolver(source)
        self.objects: Renderer = renderer or GitRenderer(source)

    @classmethod
    def local(cls, cache_dir: Path) -> Engine:
        """An engine with a Git mirror cache and cluster clients under ``cache_dir``."""
        return cls(source=GitSource(cache_dir), clients=ClientFactory(cache_dir=cache_dir))

    # -- the run -------------------------------------------------------------------------

    def reconcile(
        self,
        target: Target,
        *,
        trigger: Trigger = Trigger.CLI,
        options: Options | None = None,
    ) -> Outcome:
        """Reconcile one target and say what happened; never raises our own errors."""
        options = options or Options()
        started = time.monotonic()
        app = target.app
        outcome = Outcome(
            application=app.name,
            cluster=target.cluster.name,
            trigger=trigger.value,
            started=timestamp(datetime.now(UTC)),
            dry_run=options.dry_run,
        )
        the_plan: Plan | None = None
        applied = _Applied()
        executed = False
        try:
            # 1. Source: the commit this run applies.
            with _stage(Reason.SOURCE_FAILED):
                commit = options.revision or self.resolve(app.source, options.fresh)
            outcome.revision = commit
            # 2.-4. Render, live state, plan.
            kube, the_plan, live, inventory, namespaces = self._planned(
                target, commit, trigger, options.prune)
            applied.objects = {ObjectKey.of(o): o for o in live}
            outcome.drift.extend(the_plan.drift)
            if the_plan.refused:  # nothing is written, not even in a dry run's report
                raise _Stop(the_plan.refused[0].reason, [
                    Problem(r.message, False, str(r.key)) for r in the_plan.refused
                ])  # fmt: skip
            outcome.changes.extend(Change(str(k), Action.UNCHANGED) for k in the_plan.unchanged)
            # 5. Sync, when the plan says so.
            if the_plan.sync and not options.dry_run:
                executed = True
                try:
                    self._sync(kube, target, the_plan, inventory, options, outcome, applied,
                               namespaces)  # fmt: skip
                finally:
                    _note_adopted(outcome, the_plan)
        except _Stop as stop:
            outcome.reason = stop.reason.value
            outcome.errors.extend(stop.problems)
        # 6. Health of what the run leaves, and 7. the verdict.
        if the_plan is not None and not outcome.errors:
            versions = [resource_version(o) for o in applied.objects.values()]
            known = [v for v in versions if v is not None]
            outcome.observed_rv = max(known) if known and len(known) == len(versions) else None
        outcome.health = _health(the_plan, applied, outcome)
        outcome.sync = _verdict(outcome, the_plan, executed=executed)
        outcome.duration = round(time.monotonic() - started, 4)
        return outcome

    def _planned(
        self, target: Target, commit: str, trigger: Trigger, prune: bool | None
    ) -> tuple[KubeClient, Plan, list[Manifest], Inventory, dict[str, bool]]:
        """Stages 2 to 4, which read and never write: render, live state, the plan.

        Returns the cluster's client, the plan, the live objects it was made from, the
        inventory, and the namespaces whose existence was learnt (by name).
        """
        app = target.app
        # 2. Render: the objects Git wants on this cluster.
        desired, kube = self.desired(target, commit)
        # 3. Live state: the inventory, then one list per kind (desired or inventoried).
        with _stage(Reason.LIVE_STATE_FAILED):
            inventory = inv.from_configmap(
                kube.get("", "ConfigMap", inv.NAMESPACE, inv.name_for(app.name))
            )
            live = self._read_live(kube, app.name, desired, inventory)
        # 4. Plan, pure: drift, what to refuse, write, prune and run.  It needs who owns
        #    the live copy of each desired object, and for a Namespace it may prune, which
        #    other applications have objects in it.
        namespaces: dict[str, bool] = {}  # existence, learnt once per run
        with _stage(Reason.LIVE_STATE_FAILED):
            live += self._read_unowned(kube, desired, live, namespaces)
            neighbours = self._read_neighbours(kube, app.name, desired, live)
        with _stage(Reason.RENDER_FAILED):
            policy = app.sync if prune is None else dataclasses.replace(app.sync, prune=prune)
            the_plan = plan(desired, live, inventory, policy, trigger, commit,
                            app=app.name, ignore=app.ignore_differences,
                            rules=target.project, neighbours=neighbours)  # fmt: skip
        return kube, the_plan, live, inventory, namespaces

    def preview(self, target: Target, commit: str) -> Preview:
        """What a sync of ``target`` at ``commit`` would do, found without writing.

        The plan a forced sync would make (what to create, change, prune, which hooks
        run), each write then checked by the server's dry-run where the namespace exists:
        a change the server's defaults make disappear is no change, a write it rejects is
        named.  Read access is enough: a dry-run the cluster does not permit is skipped,
        and the plan says it compared client-side.
        """
        try:
            kube, the_plan, live, _inventory, namespaces = self._planned(
                target, commit, Trigger.CLI, None)
            if the_plan.refused:
                raise _Stop(the_plan.refused[0].reason, [
                    Problem(r.message, False, str(r.key)) for r in the_plan.refused
                ])  # fmt: skip
            with _stage(Reason.LIVE_STATE_FAILED):
                return self._checked_preview(target, kube, the_plan, live, namespaces)
        except _Stop as stop:
            return Preview(target, commit, None, errors=tuple(stop.problems),
                           reason=stop.reason.value)  # fmt: skip

    def _checked_preview(
        self,
        target: Target,
        kube: KubeClient,
        the_plan: Plan,
        live: Sequence[Manifest],
        namespaces: dict[str, bool],
    ) -> Preview:
        by_key = {ObjectKey.of(o): o for o in live}
        creating = {str((o.get("metadata") or {}).get("name", ""))
                    for o in the_plan.scaffolding if o.get("kind") == "Namespace"}  # fmt: skip

        def checkable(obj: Manifest) -> bool:
            namespace = _namespace_of(obj)
            return not namespace or (
                namespace not in creating and _namespace_exists(kube, namespace, namespaces)
            )

        writes = [o for o in the_plan.writes if checkable(o)]
        unchanged: set[ObjectKey] = set()
        rejected: dict[ObjectKey, str] = {}
        checked = "server dry-run"
        answers = kube.apply_all(writes, dry_run=True, force=target.app.sync.force)
        for obj, answer in zip(writes, answers, strict=True):
            key = ObjectKey.of(obj)
            if isinstance(answer, ClusterError) and answer.status == 403:
                checked = f"client-side (the server dry-run is not permitted: {answer})"
                unchanged.clear()
                rejected.clear()
                break
            if isinstance(answer, ClusterUnavailable):
                raise answer
            if isinstance(answer, ReconcilerError):
                rejected[key] = str(answer)
                continue
            found = by_key.get(key)
            if found is not None and _same_object(answer, found):
                unchanged.add(key)
        return Preview(target, the_plan.revision, the_plan, checked=checked,
                       server_unchanged=frozenset(unchanged),
                       rejected=MappingProxyType(rejected))  # fmt: skip

    def desired(self, target: Target, commit: str) -> tuple[list[Manifest], KubeClient]:
        """The render stage alone: the objects Git wants on the target's cluster at ``commit``.

        Reads discovery from the cluster (which kinds are namespaced; for Helm, the
        version and API versions) and writes nothing; ``reconciler validate`` uses it as is.
        Raises ``_Stop`` with ``RenderFailed`` (or the stage that could not reach the
        cluster); an empty render is an error unless ``sync.allowEmpty``.
        """
        app = target.app
        with _stage(Reason.LIVE_STATE_FAILED):
            kube = self.client(target)
            spec = self.render_input(target, kube)
        with _stage(Reason.RENDER_FAILED):
            try:
                rendered = self.objects(spec, commit)
            except EmptyRender as exc:
                if not app.sync.allow_empty:
                    raise RenderError(
                        f"{exc}; nothing is applied or pruned (set "
                        "sync.allowEmpty to sync an empty render)"
                    ) from exc
                rendered = []
            manifests = finalize(
                rendered,
                app=app.name,
                default_namespace=app.destination.namespace,
                namespaced=_scope(kube, rendered),
            )
        return manifests, kube

    def client(self, target: Target) -> KubeClient:
        """The (reused) client of the target's cluster."""
        cluster = target.cluster
        return self.clients.for_cluster(
            name=cluster.name, context=cluster.context, kubeconfig=cluster.kubeconfig
        )

    def render_input(self, target: Target, kube: KubeClient) -> RenderInput:
        """What the target's render depends on.

        The cluster's version and API groups (Helm's ``.Capabilities``) are read once per
        client (three requests, then kept) whatever the source, because a path left to
        detection may turn out to hold a chart.
        """
        source, app = target.app.source, target.app
        kube_version, api_versions = kube.capabilities()
        chart = HelmOptions(release_name=app.name, namespace=app.destination.namespace,
                            kube_version=kube_version, api_versions=api_versions)  # fmt: skip
        helm = None
        if source.helm is not None:
            helm = HelmOptions(
                release_name=source.helm.release_name or app.name,
                namespace=app.destination.namespace,
                value_files=target.value_files,
                values=dict(source.helm.values),
                skip_crds=source.helm.skip_crds,
                engine=source.helm.engine,
                kube_version=kube_version,
                api_versions=api_versions,
            )
        jsonnet = None
        if source.jsonnet is not None:
            jsonnet = JsonnetOptions(
                tlas={k: JsonnetArg(v.value, v.code) for k, v in source.jsonnet.tlas.items()},
                ext_vars={
                    k: JsonnetArg(v.value, v.code) for k, v in source.jsonnet.ext_vars.items()
                },
                libs=tuple(source.jsonnet.libs),
            )
        directory = None
        if source.directory is not None:
            d = source.directory
            directory = DirectoryOptions(recurse=d.recurse, include=d.include, exclude=d.exclude)
        return RenderInput(source.repo, target.path, chart, helm, jsonnet, directory)

    def _read_live(
        self, kube: KubeClient, app: str, desired: Sequence[Manifest], inventory: inv.Inventory
    ) -> list[Manifest]:
        """One list per kind the target has or had, by ownership labels."""
        kinds = {(group_of(str(o["apiVersion"])), str(o["kind"])) for o in desired}
        kinds |= {(e.key.group, e.key.kind) for e in inventory.entries}
        # Not served (yet): a CRD of this very run, or a deleted one: nothing to list.
        served = [(group, kind) for group, kind in sorted(kinds) if kube.kind(group, kind)]
        return [obj for found in kube.list_owned_all(served, app) for obj in found]

    def _read_unowned(
        self,
        kube: KubeClient,
        desired: Sequence[Manifest],
        live: Sequence[Manifest],
        namespaces: dict[str, bool],
    ) -> list[Manifest]:
        """The live copy of each desired object not listed as this application's.

        Whoever owns it, the plan must see it: to refuse another application's object, or
        to adopt one nobody owns.  Nothing can exist in a namespace that does not: a
        first sync into a new namespace pays one read (the namespace's), not one per
        object; later runs find their objects in the owned lists and pay nothing.
        ``namespaces`` collects what was learnt, for the sync's namespace stage.
        """
        listed = {ObjectKey.of(o) for o in live}
        found: list[Manifest] = []
        for obj in desired:
            key = ObjectKey.of(obj)
            if key in listed or not key.name or is_hook(obj):
                continue
            if kube.kind(key.group, key.kind) is None:
                continue  # a kind this very run creates: nothing of it exists yet
            if key.namespace and not _namespace_exists(kube, key.namespace, namespaces):
                continue
            copy = kube.get(key.group, key.kind, key.namespace, key.name)
            if copy is not None:
                copy.setdefault("apiVersion", obj["apiVersion"])
                copy.setdefault("kind", key.kind)
                found.append(copy)
        return found

    def _read_neighbours(
        self, kube: KubeClient, app: str, desired: Sequence[Manifest], live: Sequence[Manifest]
    ) -> dict[str, frozenset[str]]:
        """Other applications' namespaces, from their inventories; read only when a
        Namespace of this application may be pruned."""
        if not namespaces_to_prune(desired, live, app=app):
            return {}
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{inv.INVENTORY_LABEL}"
        found = kube.list_selected("", "ConfigMap", selector, namespace=inv.NAMESPACE)
        inventories = {
            str(((o.get("metadata") or {}).get("labels") or {}).get(inv.INVENTORY_LABEL, "")):
                inv.from_configmap(o)
            for o in found
        }  # fmt: skip
        return neighbours(inventories, app=app)

    # -- the sync ------------------------------------------------------------------------

    def _sync(
        self,
        kube: KubeClient,
        target: Target,
        the_plan: Plan,
        inventory: inv.Inventory,
        options: Options,
        outcome: Outcome,
        applied: _Applied,
        namespaces: dict[str, bool],
    ) -> None:
        """Execute a plan, stage by stage; a failing stage raises ``_Stop``.

        Namespaces and CRDs go first (stage one) so the dry-run of the rest sees them and
        hooks can run in a namespace the repository declares, as Argo CD creates
        namespaces before PreSync.  On a permanent failure after that, SyncFail hooks run.
        """
        sync = target.app.sync
        run_hooks = the_plan.changes_anything
        outcome.hooks.extend(
            HookRun(s.object, s.phase, HookResult.SKIPPED.value, s.reason)
            for s in the_plan.skipped_hooks
        )
        hooks = _Hooks(self, kube, the_plan, options, outcome, sync.wave_timeout_seconds)
        with _stage(Reason.NAMESPACE_MISSING):
            self._ensure_namespaces(kube, target, the_plan, run_hooks, outcome, namespaces)
        # Stage one: Namespaces and CRDs, dry-run then applied, CRDs Established.
        stage_one = _dry_run(kube, the_plan.scaffolding, the_plan, applied, force=sync.force)
        with _stage(Reason.APPLY_FAILED):
            for obj in the_plan.scaffolding:
                self._apply_one(kube, obj, applied, outcome, force=sync.force,
                                unchanged=stage_one.unchanged,
                                replace=stage_one.replace)  # fmt: skip
            self._wait_for_crds(kube, the_plan.scaffolding, options)
        try:
            # Stage two: everything else, dry-run first; one rejection applies nothing more.
            rest = [o for wave in the_plan.waves for o in wave.writes]
            checked = _dry_run(kube, rest, the_plan, applied, force=sync.force)
            if run_hooks:
                hooks.run(the_plan.hooks[Phase.PRE_SYNC], Phase.PRE_SYNC)
            for index, wave in enumerate(the_plan.waves):
                with _stage(Reason.APPLY_FAILED):
                    for obj in wave.writes:
                        self._apply_one(kube, obj, applied, outcome, force=sync.force,
                                        unchanged=checked.unchanged, replace=checked.replace,
                                        timeout=options.crd_timeout)  # fmt: skip
                if run_hooks and wave.hooks:
                    hooks.run(wave.hooks, Phase.SYNC)
                later = index + 1 < len(the_plan.waves) or (
                    run_hooks and bool(the_plan.hooks[Phase.POST_SYNC])
                )
                if the_plan.gated and later:
                    self._wait_healthy(kube, wave.number, wave.objects, applied, options,
                                       sync.wave_timeout_seconds)  # fmt: skip
            with _stage(Reason.PRUNE_FAILED):
                self._prune(kube, the_plan, applied, outcome)
            with _stage(Reason.INVENTORY_FAILED):
                self._write_inventory(kube, target, the_plan, inventory, outcome)
            if run_hooks:
                hooks.run(the_plan.hooks[Phase.POST_SYNC], Phase.POST_SYNC)
        except _Stop as stop:
            if run_hooks and not stop.retryable and the_plan.hooks[Phase.SYNC_FAIL]:
                try:
                    hooks.run(the_plan.hooks[Phase.SYNC_FAIL], Phase.SYNC_FAIL, fail=False)
                except _Stop as also:  # the sync's own failure stays the reason
                    stop.problems.extend(also.problems)
            raise

    def _ensure_namespaces(
        self,
        kube: KubeClient,
        target: Target,
        the_plan: Plan,
        run_hooks: bool,
        outcome: Outcome,
        namespaces: dict[str, bool],
    ) -> None:
        """Namespaces the writes and hooks go to must exist, be declared, or be created."""
        declared = {ObjectKey.of(o).name for o in the_plan.resources if o["kind"] == "Namespace"}
        objs: list[Manifest] = list(the_plan.writes)
        if run_hooks:
            objs.extend(h.manifest for phase in the_plan.hooks.values() for h in phase)
            objs.extend(h.manifest for wave in the_plan.waves for h in wave.hooks)
        needed = sorted({ObjectKey.of(o).namespace for o in objs} - declared - {""})
        for name in needed:
            if _namespace_exists(kube, name, namespaces):
                continue
            if not target.app.sync.create_namespace:
                raise _Stop(Reason.NAMESPACE_MISSING, [Problem(
                    f"Namespace/{name}: does not exist on cluster {target.cluster.name}, is not "
                    "declared in Git, and sync.createNamespace is false", False)])  # fmt: skip
            manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            kube.apply(manifest)
            namespaces[name] = True
            outcome.changes.append(Change(f"Namespace/{name}", Action.CREATED, "createNamespace"))

    def _apply_one(
        self,
        kube: KubeClient,
        obj: Manifest,
        applied: _Applied,
        outcome: Outcome,
        *,
        force: bool,
        unchanged: dict[ObjectKey, str],
        replace: dict[ObjectKey, str],
        timeout: float = 60.0,
    ) -> None:
        """Apply one object (or replace it, when the dry-run said so); record the change."""
        key = ObjectKey.of(obj)
        if key in unchanged:
            outcome.changes.append(Change(str(key), Action.UNCHANGED, unchanged[key]))
            return
        if key in replace:
            kube.delete(key.group, key.kind, key.namespace, key.name, propagation="Foreground")
            _wait_gone(kube, key, timeout)
            applied.objects[key] = kube.apply(obj, force=force)
            outcome.changes.append(Change(str(key), Action.REPLACED, replace[key]))
            return
        try:
            result = kube.apply(obj, force=force)
        except ClusterUnavailable:
            raise
        except ReconcilerError as exc:
            outcome.changes.append(Change(str(key), Action.FAILED, str(exc)))
            raise _Stop(Reason.APPLY_FAILED, [Problem(str(exc), False, str(key))]) from exc
        action = Action.CREATED if key not in applied.objects else Action.CONFIGURED
        outcome.changes.append(Change(str(key), action))
        applied.objects[key] = result

    def _wait_for_crds(self, kube: KubeClient, objs: Sequence[Manifest], options: Options) -> None:
        """After CRDs are applied, wait until Established so their resources can follow."""
        crds = [o for o in objs if (group_of(o["apiVersion"]), o["kind"]) == _CRD]
        deadline = time.monotonic() + options.crd_timeout
        for crd in crds:
            name = str(crd["metadata"]["name"])
            pause = options.poll
            while True:
                live = kube.get(*_CRD, "", name)
                if live is not None and _established(live):
                    break
                if time.monotonic() > deadline:
                    raise _Stop(Reason.APPLY_FAILED, [Problem(
                        f"CustomResourceDefinition/{name}: not Established after "
                        f"{options.crd_timeout:.0f}s", True)])  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 1.5, options.max_poll)
            spec = crd.get("spec") or {}
            kube.forget_kind(str(spec.get("group", "")),
                             str((spec.get("names") or {}).get("kind", "")))  # fmt: skip

    def _wait_healthy(
        self,
        kube: KubeClient,
        number: int,
        objs: Sequence[Manifest],
        applied: _Applied,
        options: Options,
        timeout: float,
    ) -> None:
        """Every object of a wave Healthy, re-read from the cluster, within ``timeout``."""
        pending = {ObjectKey.of(o) for o in objs}
        deadline, cut = options.wait_until(timeout)
        pause = options.poll
        with _stage(Reason.WAVE_FAILED):
            while True:
                states: dict[ObjectKey, tuple[Health, str]] = {}
                for key in sorted(pending):
                    live = kube.get(key.group, key.kind, key.namespace, key.name)
                    if live is not None:
                        applied.objects[key] = live
                    result = health_of(live)
                    states[key] = (result.status, result.message)
                degraded = [k for k, (h, _) in states.items() if h is Health.DEGRADED]
                if degraded:
                    raise _Stop(Reason.WAVE_FAILED, [
                        Problem(f"{k}: wave {number}: Degraded: {states[k][1]}", False, str(k))
                        for k in degraded
                    ])  # fmt: skip
                pending = {k for k, (h, _) in states.items()
                           if h not in (Health.HEALTHY, Health.SUSPENDED)}  # fmt: skip
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    waited = "when the run's time ran out" if cut else f"after {timeout:g}s"
                    raise _Stop(Reason.WAVE_TIMEOUT, [
                        Problem(f"{k}: wave {number} not Healthy {waited}: "
                                f"{states[k][0].value}: {states[k][1]}", cut, str(k))
                        for k in sorted(pending)
                    ])  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 1.5, options.max_poll)

    def _prune(self, kube: KubeClient, the_plan: Plan, applied: _Applied, outcome: Outcome) -> None:
        """Delete what left Git, in reverse apply order; keep what is protected."""
        for kept in the_plan.kept:
            outcome.changes.append(Change(str(ObjectKey.of(kept.object)), Action.SKIPPED,
                                          kept.reason))  # fmt: skip
        if the_plan.refuse_empty_prune:
            raise _Stop(Reason.PRUNE_REFUSED, [Problem(
                "the render produced no objects; refusing to prune "
                f"{sum(d.kind == 'extra' for d in the_plan.drift)} object(s) "
                "(set sync.allowEmpty to allow it)", False)])  # fmt: skip
        for obj in the_plan.prune:
            key = ObjectKey.of(obj)
            try:
                kube.delete(key.group, key.kind, key.namespace, key.name)
            except ClusterUnavailable:
                raise
            except ReconcilerError as exc:
                outcome.changes.append(Change(str(key), Action.FAILED, str(exc)))
                continue  # stays in the inventory; the run fails once it is recorded
            outcome.changes.append(Change(str(key), Action.PRUNED))
            applied.objects.pop(key, None)

    def _write_inventory(
        self,
        kube: KubeClient,
        target: Target,
        the_plan: Plan,
        inventory: inv.Inventory,
        outcome: Outcome,
    ) -> None:
        """Record what the target now owns: desired, plus what could not be pruned."""
        pruned = {c.object for c in outcome.changes if c.action is Action.PRUNED}
        kept = [k.object for k in the_plan.kept if k.by_policy]
        kept += [o for o in the_plan.prune if str(ObjectKey.of(o)) not in pruned]
        failed = [c for c in outcome.changes if c.action is Action.FAILED]
        revision = inventory.revision if failed else the_plan.revision
        new = inv.Inventory(entries=inv.entries_of([*the_plan.resources, *kept]), revision=revision)
        if not (
            inventory.exists
            and (new.entries, new.revision) == (inventory.entries, inventory.revision)
        ):
            write_system_configmap(kube, inv.to_configmap(target.app.name, new))
        if failed:
            raise _Stop(Reason.PRUNE_FAILED, [
                Problem(f"{c.reason} (prune)", False, c.object) for c in failed
            ])  # fmt: skip


class _Hooks:
    """Runs the hooks of one phase: wave by wave, each wave's hooks at once, then waited on."""

    def __init__(
        self,
        engine: Engine,
        kube: KubeClient,
        the_plan: Plan,
        options: Options,
        outcome: Outcome,
        timeout: float,
    ) -> None:
        self.engine = engine
        self.kube = kube
        self.plan = the_plan
        self.options = options
        self.outcome = outcome
        self.timeout = timeout

    def run(self, hooks: Sequence[Hook], phase: Phase, *, fail: bool = True) -> None:
        """Run ``hooks`` in wave order; a failed one stops the run (``HookFailed``).

        With ``fail`` False (SyncFail hooks, already on a failure path) a failing hook is
        only recorded.
        """
        waves: dict[int, list[Hook]] = {}
        for hook in hooks:
            waves.setdefault(hook.wave, []).append(hook)
        for number in sorted(waves):
            with _stage(Reason.HOOK_FAILED):
                started = [(hook, self._start(hook)) for hook in waves[number]]
                results = self._wait(started)
            failed: list[Problem] = []
            for hook, (name, result, message) in zip(waves[number], results, strict=True):
                self.outcome.hooks.append(HookRun(name, phase.value, result.value, message))
                self._cleanup(hook, name, result)
                if result is not HookResult.SUCCEEDED:
                    failed.append(Problem(f"{name}: {phase.value} hook {result.value.lower()}: "
                                          f"{message}", False, name))  # fmt: skip
            if failed and fail:
                raise _Stop(Reason.HOOK_FAILED, failed)

    def _start(self, hook: Hook) -> ObjectKey:
        """Create the hook's object (after deleting its last run, when the policy says so)."""
        kube, key = self.kube, hook.key
        if hook.generated:
            created = kube.create(hook.manifest)
            return ObjectKey.of(created)
        recreate = DeletePolicy.BEFORE_HOOK_CREATION in hook.delete_policies
        if recreate and kube.delete(key.group, key.kind, key.namespace, key.name,
                                    propagation="Foreground"):  # fmt: skip
            _wait_gone(kube, key, self.options.crd_timeout)
        try:
            kube.apply(hook.manifest, force=True)
        except Invalid as exc:
            if not exc.immutable_fields:
                raise
            raise RenderError(
                f"{exc}; the hook's last run is still there: give it the delete policy "
                "BeforeHookCreation (the default) or HookSucceeded"
            ) from exc
        return key

    def _wait(self, started: list[tuple[Hook, ObjectKey]]) -> list[tuple[str, HookResult, str]]:
        """Poll every started hook until each has succeeded or failed, or time is up."""
        deadline, cut = self.options.wait_until(self.timeout)
        pause = self.options.poll
        done: dict[ObjectKey, tuple[HookResult, str]] = {}
        while True:
            for _, key in started:
                if key in done:
                    continue
                live = self.kube.get(key.group, key.kind, key.namespace, key.name)
                result, message = _hook_state(live)
                if result is not HookResult.RUNNING:
                    done[key] = (result, message)
            if len(done) == len(started) or time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 1.5, self.options.max_poll)
        if cut and len(done) < len(started):
            raise _Stop(Reason.HOOK_FAILED, [
                Problem(f"{key}: hook still running when the run's time ran out", True, str(key))
                for _, key in started if key not in done
            ])  # fmt: skip
        return [
            (str(key), *done.get(key, (HookResult.RUNNING,
                                       f"did not complete within {self.timeout:g}s")))
            for _, key in started
        ]  # fmt: skip

    def _cleanup(self, hook: Hook, name: str, result: HookResult) -> None:
        """Delete a finished hook when its delete policy asks for it."""
        policies = hook.delete_policies
        if (result is HookResult.SUCCEEDED and DeletePolicy.HOOK_SUCCEEDED in policies) or (
            result is HookResult.FAILED and DeletePolicy.HOOK_FAILED in policies
        ):
            key = _key_from(hook, name)
            try:
                self.kube.delete(key.group, key.kind, key.namespace, key.name)
            except ReconcilerError as exc:
                self.outcome.errors.append(Problem(f"{exc} (hook delete policy)", exc.retryable,
                                                   name))  # fmt: skip


@dataclass(frozen=True)
class _Checked:
    """What the server dry-run said: objects it sees no change in, objects to replace."""

    unchanged: dict[ObjectKey, str]
    replace: dict[ObjectKey, str]


def write_system_configmap(kube: KubeClient, manifest: Manifest) -> None:
    """Apply a ConfigMap of ``reconciler-system``, creating the namespace the first time.

    The platform's own records in a cluster (inventories, the suspensions' copy) live
    there; a cluster that never had one answers 404 for the namespace, once.
    """
    try:
        kube.apply(manifest, force=True)
    except ReconcilerError as exc:
        if getattr(exc, "status", None) != 404:
            raise
        kube.apply(inv.namespace_manifest())
        kube.apply(manifest, force=True)


def _namespace_of(obj: Manifest) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _namespace_exists(kube: KubeClient, name: str, known: dict[str, bool]) -> bool:
    """Whether namespace ``name`` exists: asked of the cluster once per run."""
    if name not in known:
        known[name] = kube.get("", "Namespace", "", name) is not None
    return known[name]


def _dry_run(
    kube: KubeClient, objs: Sequence[Manifest], the_plan: Plan, applied: _Applied, *, force: bool
) -> _Checked:
    """Server dry-run of ``objs``; raises ``_Stop(DryRunRejected)`` naming every rejection.

    An object whose change the server refuses as immutable is to be replaced when it
    allows it, and is otherwise rejected naming the fields.
    """
    rejected: list[Problem] = []
    unchanged: dict[ObjectKey, str] = {}
    replace: dict[ObjectKey, str] = {}
    # Every dry-run at once (they change nothing), judged in order as if one by one.
    for obj, answer in zip(objs, kube.apply_all(objs, dry_run=True, force=force), strict=True):
        key = ObjectKey.of(obj)
        try:
            if isinstance(answer, ReconcilerError):
                raise answer
            dry = answer
        except ClusterUnavailable as exc:
            raise _Stop(Reason.DRY_RUN_REJECTED, [Problem(str(exc), True, str(key))]) from exc
        except Invalid as exc:
            fields = exc.immutable_fields
            if fields and key in the_plan.replaceable:
                replace[key] = f"immutable field {', '.join(fields)} changed; replaced"
                continue
            message = str(exc)
            if fields:
                message = (f"{key}: immutable field {', '.join(fields)} cannot change ({exc}); "
                           "annotate the object with argocd.argoproj.io/sync-options: "
                           'Replace=true (or reconciler.dev/replace: "true") to delete and '
                           "recreate it")  # fmt: skip
            rejected.append(Problem(message, False, str(key)))
            continue
        except ReconcilerError as exc:
            rejected.append(Problem(str(exc), exc.retryable, str(key)))
            continue
        live = applied.objects.get(key)
        if live is not None and _same_object(dry, live):
            unchanged[key] = "no change on the server"
    if rejected:
        summary = f"server dry-run rejected {len(rejected)} object(s); nothing more applied"
        rejected.append(Problem(summary, False))
        raise _Stop(Reason.DRY_RUN_REJECTED, rejected)
    return _Checked(unchanged, replace)


def _hook_state(live: Manifest | None) -> tuple[HookResult, str]:
    """Whether a hook's object finished: Jobs complete, Pods succeed, others are Healthy."""
    if live is None:
        return HookResult.FAILED, "the hook's object disappeared before it completed"
    if live.get("kind") == "Pod" and group_of(str(live.get("apiVersion", ""))) == "":
        phase = (live.get("status") or {}).get("phase")
        if phase == "Succeeded":
            return HookResult.SUCCEEDED, "Pod succeeded"
        if phase == "Failed":
            return HookResult.FAILED, str((live.get("status") or {}).get("message") or "Pod failed")
        return HookResult.RUNNING, f"Pod is {phase or 'Pending'}"
    result = health_of(live)
    if result.status is Health.HEALTHY:
        return HookResult.SUCCEEDED, result.message
    if result.status is Health.DEGRADED:
        return HookResult.FAILED, result.message
    return HookResult.RUNNING, result.message


def _key_from(hook: Hook, name: str) -> ObjectKey:
    """The key of a started hook, from its shown name (generated names are only known then)."""
    key = hook.key
    if key.name:
        return key
    return ObjectKey(key.group, key.kind, key.namespace, name.rsplit("/", 1)[-1])


def _wait_gone(kube: KubeClient, key: ObjectKey, timeout: float) -> None:
    """Poll until ``key`` no longer exists (finalizers may hold it for a while)."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while kube.get(key.group, key.kind, key.namespace, key.name) is not None:
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"{key}: still present {timeout:g}s after its deletion")
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)


def _health(the_plan: Plan | None, applied: _Applied, outcome: Outcome) -> Health:
    """A target's health: the worst of its resources', as they are after the run."""
    if the_plan is None:
        return Health.UNKNOWN
    if not the_plan.resources:
        return Health.HEALTHY
    results = [health_of(applied.objects.get(ObjectKey.of(o))) for o in the_plan.resources]
    health = aggregate(results)
    if outcome.errors and not applied.objects:
        return Health.UNKNOWN
    return health


def _note_adopted(outcome: Outcome, the_plan: Plan) -> None:
    """Say so on the change of each object this run took over from no owner."""
    adopted = {str(k) for k in the_plan.adopted}
    outcome.changes[:] = [
        dataclasses.replace(c, reason=c.reason or "adopted: the live object had no owner")
        if c.object in adopted and c.action in (Action.CONFIGURED, Action.REPLACED) else c
        for c in outcome.changes
    ]  # fmt: skip


def _verdict(outcome: Outcome, the_plan: Plan | None, *, executed: bool) -> SyncStatus:
    """The one place a run's sync status is decided."""
    if outcome.errors or the_plan is None:
        return SyncStatus.FAILED
    if not executed:
        return SyncStatus.OUT_OF_SYNC if the_plan.drift else SyncStatus.SYNCED
    if any(kept.by_policy for kept in the_plan.kept):
        return SyncStatus.OUT_OF_SYNC  # objects that left Git are still there
    return SyncStatus.SYNCED


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


def _plain(options: Any) -> Any:
    """A render option object as JSON-ready data (dataclasses and mappings)."""
    if options is None:
        return None
    if hasattr(options, "__dataclass_fields__"):
        return {name: _plain(getattr(options, name)) for name in options.__dataclass_fields__}
    if isinstance(options, dict) or hasattr(options, "items"):
        return {str(k): _plain(v) for k, v in dict(options).items()}
    if isinstance(options, list | tuple):
        return [_plain(v) for v in options]
    return options


__all__ = ["Engine", "GitRenderer", "GitResolver", "Options", "Preview", "RenderInput",
           "Renderer", "Resolver", "Trigger"]
