"""The fleet: which clusters exist, which applications go where, and how they sync.

The rest of the platform asks this package which clusters an application targets and at
which paths (:meth:`Fleet.target`), without touching disk or network: everything but
:func:`load_fleet` is pure.  The fleet file's shape is the pydantic model in
:mod:`reconciler.fleet.model` (its JSON Schema is :func:`json_schema`); reading and
reporting are in :mod:`reconciler.fleet.load`, whole-fleet rules in
:mod:`reconciler.fleet.checks`, path templates in :mod:`reconciler.fleet.paths`.
"""

from reconciler.fleet.load import load_fleet, parse_fleet
from reconciler.fleet.model import (
    MAX_INTERVAL_SECONDS,
    MIN_INTERVAL_SECONDS,
    Application,
    Cluster,
    ClusterResources,
    ClusterSelector,
    Destination,
    DirectorySource,
    Fleet,
    FleetFile,
    FrozenMap,
    HelmSource,
    IgnoreRule,
    JsonnetArg,
    JsonnetSource,
    LabelRequirement,
    NamespaceResources,
    Operator,
    Project,
    ProjectDestinations,
    ResourceRule,
    Source,
    SyncPolicy,
    Target,
    json_schema,
)
from reconciler.fleet.repos import redact_url

__all__ = [
    "MAX_INTERVAL_SECONDS",
    "MIN_INTERVAL_SECONDS",
    "Application",
    "Cluster",
    "ClusterResources",
    "ClusterSelector",
    "Destination",
    "DirectorySource",
    "Fleet",
    "FleetFile",
    "FrozenMap",
    "HelmSource",
    "IgnoreRule",
    "JsonnetArg",
    "JsonnetSource",
    "LabelRequirement",
    "NamespaceResources",
    "Operator",
    "Project",
    "ProjectDestinations",
    "ResourceRule",
    "Source",
    "SyncPolicy",
    "Target",
    "json_schema",
    "load_fleet",
    "parse_fleet",
    "redact_url",
]
