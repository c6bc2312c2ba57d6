"""The fleet model: clusters, applications, and how each application reaches its clusters.

The model is a set of frozen pydantic dataclasses.  Pydantic owns the shape of the fleet
file (field names in camelCase, types, defaults, unknown fields refused, the JSON Schema
that ``reconciler schema`` prints); the small validators here own the rules pydantic
cannot express in our words (names, label keys, repository URLs, durations), raising
errors worded as the rest of the platform words them.  Checks that need the whole fleet
(duplicate names, selectors naming clusters, templates rendering on every target) live
in :mod:`reconciler.fleet.checks`.

The values are frozen, hashable and picklable: Celery and the tests pickle them, sets and
dict keys hold them, and one fleet is shared by every thread of a worker.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import ArgsKwargs

from reconciler.errors import ConfigError
from reconciler.fleet import paths
from reconciler.fleet.messages import (
    describe,
    has_control,
    invalid,
    invalid_at,
    known,
    literal,
    quote,
    suggestion,
)
from reconciler.fleet.names import (
    MAX_RELEASE_NAME,
    dns_label_problem,
    dns_subdomain_problem,
    label_key_problem,
    label_value_problem,
)
from reconciler.fleet.repos import check_repo
from reconciler.model import ObjectKey, type_name
from reconciler.yamlio import dump

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
    "FleetWindow",
    "FrozenMap",
    "HelmSource",
    "IgnoreRule",
    "JsonnetArg",
    "JsonnetSource",
    "LabelRequirement",
    "NamespaceResources",
    "Notification",
    "Operator",
    "Project",
    "ProjectDestinations",
    "ResourceRule",
    "Rollout",
    "RolloutStep",
    "Source",
    "SyncPolicy",
    "SyncWindow",
    "Target",
    "json_schema",
]

#: Shortest reconcile interval: below it a hundred applications hammer Git and the API servers.
MIN_INTERVAL_SECONDS = 5.0
#: Longest interval: beyond it "continuous" reconciliation is no longer what the user gets.
MAX_INTERVAL_SECONDS = 30 * 24 * 3600.0

_JSON_POINTER = re.compile(r"(?:/(?:[^~/]|~[01])*)+", re.DOTALL)
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,  # Go accepts the micro sign and the Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")

#: Field names as written in the file (camelCase) and in Python (snake_case); a file is
#: read by alias only (see ``parse_fleet``), so ``self_heal`` in YAML is an unknown field.
_CONFIG = ConfigDict(
    extra="forbid",
    alias_generator=to_camel,
    validate_by_alias=True,
    validate_by_name=True,
    use_attribute_docstrings=True,
)


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


class FrozenMap(Mapping[str, str]):
    """A read-only, hashable, picklable string map (labels, matchLabels).

    ``MappingProxyType`` would be read-only too, but it can be neither hashed nor pickled
    nor deep-copied, which frozen values holding it need.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._data: dict[str, str] = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __getstate__(self) -> dict[str, str]:
        return self._data

    def __setstate__(self, state: dict[str, str]) -> None:
        self._data = dict(state)


def _text(value: str) -> str:
    if has_control(value):
        raise invalid(f"{quote(value)}: control characters are not allowed")
    return value


def _required(value: str) -> str:
    if not value:
        raise invalid("required (must not be empty)")
    return value


def _not_empty(hint: str) -> AfterValidator:
    def check(value: str) -> str:
        if not value:
            raise invalid(f"must not be empty ({hint})")
        return value

    return AfterValidator(check)


def _dns_label(value: str) -> str:
    problem = dns_label_problem(value)
    if problem:
        raise invalid(problem)
    return value


def _release_name(value: str) -> str:
    problem = dns_subdomain_problem(value, max_length=MAX_RELEASE_NAME)
    if problem:
        raise invalid(f"invalid Helm release name: {problem}")
    return value


def _label_key(value: str) -> str:
    problem = label_key_problem(value)
    if problem:
        raise invalid(f"invalid label key {problem}")
    return value


def _label_value(value: str) -> str:
    problem = label_value_problem(value)
    if problem:
        raise invalid(f"invalid label value {problem}")
    return value


def _label_map(value: object) -> object:
    if not isinstance(value, Mapping):
        raise invalid(f"expected a map of labels, got {type_name(value)}")
    return value


def _revision(value: str) -> str:
    if not value or value.startswith("-") or any(c.isspace() for c in value):
        raise invalid(
            f"{quote(value)}: expected a branch, tag or commit "
            "(not empty, no spaces, not starting with '-')"
        )
    return value


def _repo(value: str, info: ValidationInfo) -> str:
    base_dir = info.context.get("base_dir") if isinstance(info.context, dict) else None
    try:
        return check_repo(value, base_dir=base_dir)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _repo_dir(value: str) -> str:
    try:
        return paths.repo_path(value) or "."
    except paths.TemplateError as exc:
        raise invalid(str(exc)) from None


def _json_pointer(value: str) -> str:
    if not _JSON_POINTER.fullmatch(value):
        raise invalid(
            f"invalid JSON pointer {quote(value)} (RFC 6901: starts with '/', "
            "'~' only as ~0 or ~1; the whole object cannot be ignored)"
        )
    return value


def _seconds(value: object) -> float:
    """Go-style durations (``30s``, ``5m``, ``1h30m``) or a number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise invalid(f"expected a duration such as 30s, 5m or 1h, got {type_name(value)}")
    if isinstance(value, int):
        seconds = float(value) if abs(value) < 10**18 else (math.inf if value > 0 else -math.inf)
    elif isinstance(value, float):
        seconds = value
    elif _PLAIN_NUMBER.fullmatch(value.strip()):
        seconds = float(value.strip())
    elif _DURATION.fullmatch(value.strip()):
        seconds = sum(
            float(number) * _DURATION_UNITS[unit]
            for number, unit in _DURATION_PART.findall(value.strip())
        )
    else:
        raise invalid(f"invalid duration {quote(value)} (use 30s, 5m, 1h)")
    if math.isnan(seconds):
        raise invalid(f"invalid duration {quote(value)} (use 30s, 5m, 1h)")
    return seconds


def _interval(value: object) -> float:
    seconds = _seconds(value)
    if seconds < MIN_INTERVAL_SECONDS:
        raise invalid(f"{quote(value)} is below the minimum of {MIN_INTERVAL_SECONDS:g}s")
    if seconds > MAX_INTERVAL_SECONDS:
        raise invalid(f"{quote(value)} is above the maximum of {MAX_INTERVAL_SECONDS / 3600:g}h")
    return seconds


def _timeout(value: object) -> float:
    seconds = _seconds(value)
    if not seconds > 0:
        raise invalid(f"{quote(value)} must be above 0")
    if math.isinf(seconds):
        raise invalid(f"{quote(value)} must be a finite duration")
    return seconds


def format_duration(seconds: float) -> str:
    """``60.0`` -> ``"60s"``: durations are written back the way the file accepts them."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds!r}s"


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": rf"^(?:{_DURATION.pattern}|{_PLAIN_NUMBER.pattern})$"},
        {"type": "number"},
    ]
}

#: A string without control characters (they would break one-line messages and logs).
Text = Annotated[str, Strict(), AfterValidator(_text)]
#: A string that must be written and not be empty.
Required = Annotated[Text, AfterValidator(_required)]
#: true or false, and nothing YAML or Python would merely take for one ("yes", 1).
Flag = Annotated[bool, Strict()]
#: A cluster or application name: a DNS-1123 label, since it becomes part of other names.
Name = Annotated[Required, AfterValidator(_dns_label)]
Namespace = Annotated[Text, AfterValidator(_dns_label)]
LabelKey = Annotated[str, Strict(), AfterValidator(_label_key)]
LabelValue = Annotated[str, Strict(), AfterValidator(_label_value)]
#: Kubernetes labels; values must be strings (``1`` and ``true`` are refused, not guessed).
Labels = Annotated[
    Mapping[LabelKey, LabelValue],
    BeforeValidator(_label_map),
    AfterValidator(FrozenMap),
    PlainSerializer(dict, return_type=dict[str, str]),
]
Repo = Annotated[str, Strict(), AfterValidator(_repo)]
Revision = Annotated[Text, AfterValidator(_revision)]
#: A path inside the repository that may hold ``{{ cluster.* }}`` templates; where it
#: leads is checked per cluster (:mod:`reconciler.fleet.paths`).
PathTemplate = Text
RepoDir = Annotated[Text, AfterValidator(_repo_dir)]
JsonPointer = Annotated[Text, AfterValidator(_json_pointer)]
Interval = Annotated[
    float,
    BeforeValidator(_interval),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
Timeout = Annotated[
    float,
    BeforeValidator(_timeout),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]


def _soak(value: object) -> float:
    seconds = _seconds(value)
    if seconds < 0:
        raise invalid(f"{quote(value)} must not be negative")
    if math.isinf(seconds):
        raise invalid(f"{quote(value)} must be a finite duration")
    return seconds


_PERCENT = re.compile(r"(\d{1,3})%")


def _max_unavailable(value: object) -> int | str:
    """A number of clusters (1 or more) or a percentage of the step's (``25%``)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(f"expected a number of clusters or a percentage, got {type_name(value)}")
    if isinstance(value, int):
        if value < 1:
            raise invalid(f"{value} must be at least 1")
        return value
    found = _PERCENT.fullmatch(value.strip())
    if found is None or not 1 <= int(found.group(1)) <= 100:
        raise invalid(f"invalid {quote(value)}: use a number, or a percentage from 1% to 100%")
    return f"{int(found.group(1))}%"


Soak = Annotated[
    float,
    BeforeValidator(_soak),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(_DURATION_SCHEMA),
]
MaxUnavailable = Annotated[
    int | str,
    BeforeValidator(_max_unavailable),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1},
                              {"type": "string", "pattern": r"^\d{1,3}%$"}]}),
]  # fmt: skip


def _name_of(data: dict[str, Any]) -> str:
    return str(data.get("name", ""))


@dataclass(frozen=True, config=_CONFIG)
class _Model:
    """Base of every model read from the file: a null is a field not written.

    Kubernetes reads ``field:`` (null) as "not set", and so do we: the default applies,
    and a required field is reported as required.
    """

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


# --------------------------------------------------------------------------------------
# Clusters and selectors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class Cluster(_Model):
    """A cluster of the fleet: a kubeconfig context, exactly as kubectl sees it.

    ``kubeconfig`` is stored as written (``~`` unexpanded, None for "``$KUBECONFIG``, then
    ``~/.kube/config``") and resolved by the cluster-client factory when it connects, so
    loading a fleet never depends on the environment of the process that loads it.
    """

    name: Name
    """The cluster's name in this fleet (a DNS-1123 label)."""
    context: Annotated[Text, _not_empty("leave it out to use the name")] = Field(
        default_factory=_name_of
    )
    """The kubeconfig context to connect with; defaults to the name."""
    kubeconfig: Annotated[Text, _not_empty("leave it out for the default")] | None = None
    """The kubeconfig file; defaults to $KUBECONFIG, then ~/.kube/config."""
    labels: Labels = Field(default_factory=FrozenMap)
    """Labels that applications select clusters by and that path templates may use."""


class Operator(StrEnum):
    """Label selector operators, as in Kubernetes ``matchExpressions``."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, config=_CONFIG)
class LabelRequirement(_Model):
    """One ``matchExpressions`` entry."""

    key: Annotated[Required, AfterValidator(_label_key)]
    """The label key."""
    operator: Operator
    """In, NotIn, Exists or DoesNotExist."""
    values: tuple[Annotated[Text, AfterValidator(_label_value)], ...] = ()
    """The values for In and NotIn; empty for Exists and DoesNotExist."""

    @model_validator(mode="after")
    def _values_fit_the_operator(self) -> LabelRequirement:
        if self.operator in (Operator.IN, Operator.NOT_IN) and not self.values:
            raise invalid_at("values", f"required with operator {self.operator}", self.values)
        if self.operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and self.values:
            raise invalid_at("values", f"must be empty with operator {self.operator}", self.values)
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: ``NotIn`` also matches when the label is absent."""
        if self.operator is Operator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


_LONG_FORM = ("matchLabels", "matchExpressions", "names")


@dataclass(frozen=True, config=_CONFIG)
class ClusterSelector(_Model):
    """Which clusters an application targets.

    Either explicit ``names`` or a label selector (``matchLabels`` and
    ``matchExpressions``, all of which must hold).  The empty selector matches every
    cluster, as an empty Kubernetes label selector does; ``names: []`` matches none.
    """

    match_labels: Labels = Field(default_factory=FrozenMap)
    """Labels a cluster must have, with these values."""
    match_expressions: tuple[LabelRequirement, ...] = ()
    """Requirements a cluster's labels must meet."""
    names: tuple[Name, ...] | None = None
    """Explicit cluster names; cannot be combined with matchLabels or matchExpressions."""

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "names" in data:
            if "matchLabels" in data or "matchExpressions" in data:
                raise invalid_at(
                    "names",
                    "cannot be combined with matchLabels or matchExpressions "
                    "(use one or the other)",
                    data["names"],
                )
            if data["names"] is None:  # written but empty: no cluster, not every cluster
                return {"names": []}
        return data

    @model_serializer(mode="wrap")
    def _written_form(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self.names is not None:
            return {key: value for key, value in data.items() if key == "names"}
        return {key: value for key, value in data.items() if key != "names"}

    def matches(self, cluster: Cluster) -> bool:
        """Whether ``cluster`` is targeted by this selector."""
        if self.names is not None:
            return cluster.name in self.names
        labels = cluster.labels
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)


def _selector_form(value: object) -> object:
    """Three forms: absent (every cluster), the long form, and a map of labels to match.

    A map without any long-form key is the ``matchLabels`` shorthand, unless a key with a
    map or list value is a near miss of one (``matchLabel: {...}``): that is a typo.
    """
    if isinstance(value, ClusterSelector):
        return value
    if not isinstance(value, dict):
        raise invalid(
            "expected a map (labels to match, or matchLabels/matchExpressions/names), "
            f"got {type_name(value)}"
        )
    if value.keys() & set(_LONG_FORM) or any(
        not isinstance(raw, str) and suggestion(key, _LONG_FORM) for key, raw in value.items()
    ):
        return value
    return ClusterSelector(match_labels=_LABELS.validate_python(value))


#: A field naming clusters: a selector, or a map of labels (the ``matchLabels`` shorthand).
Clusters = Annotated[
    ClusterSelector,
    BeforeValidator(_selector_form, json_schema_input_type=ClusterSelector | Labels),
]


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class HelmSource(_Model):
    """Render the source path as a Helm chart."""

    release_name: Annotated[Required, AfterValidator(_release_name)] | None = None
    """The release name; defaults to the application's name."""
    value_files: tuple[PathTemplate, ...] = ()
    """Value files, relative to the chart path; may use the same templates as the path."""
    values: dict[str, Any] = Field(default_factory=dict)
    """Values merged after the value files."""
    skip_crds: Flag = False
    """Leave out the chart's crds/ directory."""
    engine: Literal["sdk", "binary"] = "sdk"
    """sdk: Helm's Go SDK in-process; binary: `helm template` (needs helm on PATH)."""

    def __hash__(self) -> int:
        # values is a plain dict for the renderers; its canonical JSON stands in for it.
        values = json.dumps(self.values, sort_keys=True, default=str)
        return hash((self.release_name, self.value_files, values, self.skip_crds, self.engine))


@dataclass(frozen=True, config=_CONFIG)
class JsonnetCode(_Model):
    """A Jsonnet argument given as code rather than as a string."""

    code: Text
    """Jsonnet code, evaluated."""


@dataclass(frozen=True, config=_CONFIG)
class JsonnetNamedArg(_Model):
    """A Jsonnet argument in Argo CD's list form."""

    name: Required
    """The argument's name."""
    value: Text
    """A string, or Jsonnet code when code is true."""
    code: Flag = False
    """Whether value is Jsonnet code."""


@dataclass(frozen=True, config=_CONFIG)
class JsonnetArg:
    """A top-level argument or external variable: a string, or Jsonnet code (``code``)."""

    value: str
    code: bool = False

    @model_validator(mode="before")
    @classmethod
    def _written_forms(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"value": _text(data)}
        if isinstance(data, dict):
            return {"value": _JSONNET_CODE.validate_python(data, by_name=False).code, "code": True}
        if isinstance(data, ArgsKwargs | JsonnetArg):
            return data
        hint = f" (quote it: {quote(literal(data))})" if isinstance(data, int | float) else ""
        raise invalid(f"expected a string or a map with code, got {type_name(data)}{hint}")

    @model_serializer(mode="plain")
    def _written_form(self) -> str | dict[str, str]:
        return {"code": self.value} if self.code else self.value


def _jsonnet_args(value: object) -> object:
    """Argo CD's list form ``[{name, value, code}]`` as the map form."""
    if not isinstance(value, list):
        return value
    items = _JSONNET_LIST.validate_python(value, by_name=False)
    out: dict[str, JsonnetArg] = {}
    for index, item in enumerate(items):
        if item.name in out:
            raise invalid_at(index, f"duplicate argument {quote(item.name)}", value[index])
        out[item.name] = JsonnetArg(item.value, item.code)
    return out


JsonnetArgs = Annotated[
    dict[str, JsonnetArg],
    BeforeValidator(
        _jsonnet_args,
        json_schema_input_type=dict[str, Text | JsonnetCode] | list[JsonnetNamedArg],
    ),
]


@dataclass(frozen=True, config=_CONFIG)
class JsonnetSource(_Model):
    """Evaluate the Jsonnet files of the source path."""

    tlas: JsonnetArgs = Field(default_factory=dict)
    """Top-level arguments: name to a string or {code: JSONNET}, or Argo CD's list form."""
    ext_vars: JsonnetArgs = Field(default_factory=dict)
    """External variables, in the same forms as tlas."""
    libs: tuple[RepoDir, ...] = ()
    """Library search paths, relative to the repository root."""

    def __hash__(self) -> int:
        return hash((frozenset(self.tlas.items()), frozenset(self.ext_vars.items()), self.libs))


@dataclass(frozen=True, config=_CONFIG)
class DirectorySource(_Model):
    """Read the plain manifests of the source path."""

    recurse: Flag = True
    """Read subdirectories too."""
    include: Annotated[Text, _not_empty("leave it out to read every file")] | None = None
    """A glob of the files to read."""
    exclude: Annotated[Text, _not_empty("leave it out to exclude nothing")] | None = None
    """A glob of the files to leave out."""


_RENDERERS = ("helm", "jsonnet", "directory")


@dataclass(frozen=True, config=_CONFIG)
class Source(_Model):
    """Where an application's manifests live, and how they are rendered.

    ``repo`` is a URL or an absolute local path (relative paths in the file are resolved
    against the fleet file's directory at load time); ``path`` may be a template, filled
    in for each cluster.  Without helm, jsonnet or directory, the path's content decides
    (a kustomization, or plain manifests).
    """

    repo: Repo
    """A Git URL (https, ssh, git, file, user@host:path) or a local path; no credentials."""
    revision: Revision = "HEAD"
    """A branch, tag or commit."""
    path: PathTemplate = "."
    """The manifests' path in the repository; may use {{ cluster.name }} and
    {{ cluster.labels.KEY }}."""
    helm: HelmSource | None = None
    """Render the path as a Helm chart."""
    jsonnet: JsonnetSource | None = None
    """Evaluate the path's Jsonnet."""
    directory: DirectorySource | None = None
    """Read the path's plain manifests."""

    @model_validator(mode="after")
    def _one_renderer(self) -> Source:
        chosen = [name for name in _RENDERERS if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise invalid(
                f"{' and '.join(chosen)} cannot be combined (use one of {', '.join(_RENDERERS)})"
            )
        return self


# --------------------------------------------------------------------------------------
# Projects: where a group of applications may write, and what
# --------------------------------------------------------------------------------------

#: A glob (``team-*``, ``*``) as Go's ``filepath.Match`` and Python's ``fnmatch`` read it.
Glob = Required


def _kind_of(key: ObjectKey) -> str:
    return f"{key.kind}.{key.group}" if key.group else key.kind


def _shown_rules(rules: Iterable[ResourceRule]) -> str:
    return ", ".join(str(rule) for rule in rules) or "none"


@dataclass(frozen=True, config=_CONFIG)
class ResourceRule(_Model):
    """A group and a kind, each a glob (Argo CD's ``{group, kind}`` entries)."""

    kind: Glob
    """The kind, or a glob such as "*"."""
    group: Text = ""
    """The API group; empty for the core group, "*" for any."""

    def matches(self, key: ObjectKey) -> bool:
        """Whether the object identified by ``key`` is of this group and kind."""
        return fnmatch.fnmatchcase(key.group, self.group) and fnmatch.fnmatchcase(
            key.kind, self.kind
        )

    def __str__(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind


@dataclass(frozen=True, config=_CONFIG)
class NamespaceResources(_Model):
    """Namespaced kinds a project's applications may write: every kind unless told.

    Argo CD's ``namespaceResourceWhitelist`` and ``namespaceResourceBlacklist``.
    """

    allow: tuple[ResourceRule, ...] = (ResourceRule(kind="*", group="*"),)
    """Kinds allowed; every kind when absent."""
    deny: tuple[ResourceRule, ...] = ()
    """Kinds refused even when allowed."""


@dataclass(frozen=True, config=_CONFIG)
class ClusterResources(_Model):
    """Cluster-scoped kinds a project's applications may write: none unless listed.

    Argo CD's ``clusterResourceWhitelist`` and ``clusterResourceBlacklist``: a cluster-scoped
    object (a ClusterRole, a Namespace, a CRD) reaches every tenant of the cluster, so it
    is refused unless the project says otherwise.
    """

    allow: tuple[ResourceRule, ...] = ()
    """Kinds allowed; none when absent."""
    deny: tuple[ResourceRule, ...] = ()
    """Kinds refused even when allowed."""


@dataclass(frozen=True, config=_CONFIG)
class ProjectDestinations(_Model):
    """Where a project's applications may write (Argo CD's ``destinations``)."""

    namespaces: tuple[Glob, ...] = ("*",)
    """Namespaces, as globs ("team-a", "team-a-*"); every namespace when absent."""


@dataclass(frozen=True, config=_CONFIG)
class Project(_Model):
    """A group of applications and what they may write where, as Argo CD's AppProject.

    An application names its project (``applications[].project``); one without a project
    belongs to the project called ``default`` when the file defines one, and is otherwise
    unrestricted, so a fleet file without projects behaves as it always did.
    """

    name: Name
    """The project's name (a DNS-1123 label)."""
    description: Text = ""
    """What the project is for."""
    destinations: ProjectDestinations = Field(default_factory=ProjectDestinations)
    """Where its applications may write."""
    namespace_resources: NamespaceResources = Field(default_factory=NamespaceResources)
    """Namespaced kinds its applications may write."""
    cluster_resources: ClusterResources = Field(default_factory=ClusterResources)
    """Cluster-scoped kinds its applications may write."""

    def permits_namespace(self, namespace: str) -> bool:
        """Whether ``namespace`` is one of the project's destinations."""
        return any(fnmatch.fnmatchcase(namespace, p) for p in self.destinations.namespaces)

    def refusal(self, key: ObjectKey) -> str:
        """Why an application of this project may not write ``key``, or "" when it may.

        ``key`` is a finalized object's: cluster-scoped objects have no namespace.
        """
        shown = quote(self.name)
        if not key.namespace:
            rules, field = self.cluster_resources.allow, "clusterResources"
            denied = self.cluster_resources.deny
            if not any(rule.matches(key) for rule in rules):
                return (
                    f"cluster-scoped kind {_kind_of(key)} is not in {field}.allow of project "
                    f"{shown} (allowed: {_shown_rules(rules)})"
                )
        else:
            if not self.permits_namespace(key.namespace):
                allowed = ", ".join(self.destinations.namespaces)
                return (
                    f"namespace {quote(key.namespace)} is not a destination of project "
                    f"{shown} (destinations.namespaces: {allowed})"
                )
            rules, field = self.namespace_resources.allow, "namespaceResources"
            denied = self.namespace_resources.deny
            if not any(rule.matches(key) for rule in rules):
                return (
                    f"kind {_kind_of(key)} is not in {field}.allow of project {shown} "
                    f"(allowed: {_shown_rules(rules)})"
                )
        refused = next((rule for rule in denied if rule.matches(key)), None)
        if refused is not None:
            return f"kind {_kind_of(key)} is refused by {field}.deny ({refused}) of project {shown}"
        return ""


# --------------------------------------------------------------------------------------
# Applications
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, config=_CONFIG)
class Destination(_Model):
    """Where an application goes: its default namespace and its clusters."""

    namespace: Namespace | None = None
    """The namespace of objects that do not name one."""
    clusters: Clusters = Field(default_factory=ClusterSelector)
    """The clusters: a selector, or a map of labels to match; every cluster when absent."""


@dataclass(frozen=True, config=_CONFIG)
class SyncPolicy(_Model):
    """How an application is kept in sync; the defaults are the documented ones."""

    automated: Flag = True
    """Reconcile on the schedule and on pushes, not only when asked."""
    prune: Flag = True
    """Delete objects that left Git."""
    self_heal: Flag = True
    """Undo changes made in the cluster."""
    allow_empty: Flag = False
    """Allow a render with no object (which would prune everything)."""
    create_namespace: Flag = True
    """Create the destination namespace when missing."""
    force: Flag = True
    """Server-side apply with force: take over fields another manager (``kubectl edit``, a
    controller) changed, as Flux and Argo CD do; self-heal needs it.  False reports such
    fields as conflicts instead of overwriting them."""
    interval_seconds: Interval = Field(default=60.0, alias="interval")
    """How often to reconcile: 30s, 5m, 1h30m, or seconds."""
    suspended: Flag = False
    """Stop scheduled and push-triggered runs (an admin sync still runs)."""
    wave_timeout_seconds: Timeout = Field(default=300.0, alias="waveTimeout")
    """How long a sync wave may take to become healthy before the sync fails."""


_NOT_WRITTEN = object()
#: Fields of IgnoreRule the file must set, though Python gives them defaults (see there).
_IGNORE_REQUIRED = ("kind", "jsonPointers")


def _written(value: object) -> object:
    if value is _NOT_WRITTEN:
        raise invalid("required")
    return value


def _some_pointers(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise invalid("must list at least one pointer")
    return value


def _ignore_rule_schema(schema: dict[str, Any]) -> None:
    schema["required"] = [*schema.get("required", ()), *_IGNORE_REQUIRED]
    for key in _IGNORE_REQUIRED:
        schema["properties"][key].pop("default", None)


@dataclass(frozen=True, config=ConfigDict(**_CONFIG, json_schema_extra=_ignore_rule_schema))
class IgnoreRule(_Model):
    """Fields the diff must not compare on matching objects (Argo CD ``ignoreDifferences``).

    ``group`` is ``""`` for the core group; ``name``/``namespace`` of None match any.
    """

    group: Text = ""
    """The API group; empty for the core group."""
    # kind and jsonPointers must be written in the file; they have Python defaults only
    # because Python wants defaults after group's, which the file may leave out.
    kind: Annotated[Required, BeforeValidator(_written)] = ""
    """The kind of the objects."""
    name: Annotated[Text | None, AfterValidator(lambda value: value or None)] = None
    """Only the object of this name."""
    namespace: Annotated[Text | None, AfterValidator(lambda value: value or None)] = None
    """Only objects in this namespace."""
    json_pointers: Annotated[
        tuple[JsonPointer, ...], BeforeValidator(_written), AfterValidator(_some_pointers)
    ] = ()
    """RFC 6901 pointers to the fields to ignore."""

    @model_validator(mode="before")
    @classmethod
    def _required_in_the_file(cls, data: Any) -> Any:
        if isinstance(data, dict):
            missing = {key: _NOT_WRITTEN for key in _IGNORE_REQUIRED if data.get(key) is None}
            return {**data, **missing}
        return data

    def matches(self, key: ObjectKey) -> bool:
        """Whether this rule applies to the object identified by ``key``."""
        return (
            key.group == self.group
            and key.kind == self.kind
            and (self.name is None or key.name == self.name)
            and (self.namespace is None or key.namespace == self.namespace)
        )


def _cron(value: str) -> str:
    from croniter import croniter  # noqa: PLC0415 - loaded by fleets that have windows only

    text = " ".join(value.split())
    if not croniter.is_valid(text):
        raise invalid(f"invalid cron schedule {quote(value)} (five fields, as crontab: "
                      "minute hour day-of-month month day-of-week)")  # fmt: skip
    return text


def _time_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"unknown time zone {quote(value)} (an IANA name, as Europe/Berlin)"
                      ) from None  # fmt: skip
    return value


@dataclass(frozen=True, config=_CONFIG)
class SyncWindow(_Model):
    """When automatic syncs may run (``allow``) or may not (``deny``), as Argo CD's.

    A window is open from each time ``schedule`` fires, for ``duration``, in ``timeZone``.
    Descriptions are given as ``Field(description=)``, not attribute docstrings, so the
    fleet's windows (a subclass) carry them into the schema too.
    """

    kind: Literal["allow", "deny"] = Field(description=(
        "allow: automatic syncs run only inside it (or another allow window); deny: never "
        "inside it (deny wins over allow)."))  # fmt: skip
    schedule: Annotated[Required, AfterValidator(_cron)] = Field(
        description="When the window opens: a cron expression (0 22 * * *).")
    duration: Timeout = Field(description="How long it stays open (2h).")
    time_zone: Annotated[Required, AfterValidator(_time_zone)] = Field(
        default="UTC", description="The time zone the schedule is read in (an IANA name).")
    manual_sync: Flag = Field(
        default=False,
        description="Let admin syncs (reconciler sync) run when this window would stop them.")


@dataclass(frozen=True, config=_CONFIG)
class FleetWindow(SyncWindow):
    """A sync window for the targets of some clusters (and applications)."""

    clusters: Clusters = Field(default_factory=ClusterSelector)
    """The clusters it applies to: a selector, or a map of labels; every cluster when absent."""
    applications: tuple[Required, ...] = ("*",)
    """The applications it applies to: names or globs (``team-a-*``); every one when absent."""

    def covers(self, app: str, cluster: Cluster) -> bool:
        return self.clusters.matches(cluster) and any(
            fnmatch.fnmatchcase(app, pattern) for pattern in self.applications
        )


#: What a notification endpoint may be told of.
NotificationEvent = Literal[
    "sync-failed", "health-degraded", "drift-healed", "rollout-paused", "rollout-finished"
]
NOTIFICATION_EVENTS: tuple[str, ...] = (
    "sync-failed", "health-degraded", "drift-healed", "rollout-paused", "rollout-finished"
)  # fmt: skip
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise invalid(f"{quote(value)} is not an environment variable name")
    return value


EnvName = Annotated[Required, AfterValidator(_env_name)]


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise invalid(f"{quote(value)} is not an http(s) URL")
    if "@" in value.split("/")[2]:
        raise invalid("must not hold credentials: put the URL in an environment variable "
                      "and name it in urlFromEnv")  # fmt: skip
    return value


@dataclass(frozen=True, config=_CONFIG)
class Notification(_Model):
    """An endpoint told of the events a team alerts on, with a JSON body, or a Slack or
    Microsoft Teams incoming-webhook payload.

    Secrets never sit in the fleet file: a webhook URL that is itself a credential (Slack's
    and Teams' are) comes from ``urlFromEnv``, header values from ``headersFromEnv``, both
    read by the worker that sends.
    """

    name: Name
    """The endpoint's name (logs and metrics name it, never its URL)."""
    url: Annotated[Text, AfterValidator(_http_url)] | None = None
    """Where to POST, when the URL is no secret."""
    url_from_env: EnvName | None = None
    """The environment variable holding the URL (Slack and Teams webhook URLs)."""
    format: Literal["json", "slack", "teams"] = "json"
    """The body: ``json`` (the event as data), ``slack`` or ``teams``."""
    events: tuple[NotificationEvent, ...] = ()
    """The events it is told of; every one when absent."""
    applications: tuple[Required, ...] = ("*",)
    """The applications it is told of: names or globs; every one when absent."""
    clusters: Clusters = Field(default_factory=ClusterSelector)
    """The clusters it is told of: a selector, or a map of labels; every cluster when absent."""
    headers_from_env: Annotated[
        Mapping[Required, EnvName],
        AfterValidator(FrozenMap),
        PlainSerializer(dict, return_type=dict[str, str]),
    ] = Field(default_factory=FrozenMap)
    """Header name -> the environment variable holding its value (``Authorization``)."""
    fold: Timeout = 3600.0
    """One message per target per event within this long, until the event clears."""

    @model_validator(mode="after")
    def _one_url(self) -> Notification:
        if (self.url is None) == (self.url_from_env is None):
            raise invalid_at("url", "give one of url and urlFromEnv", self.url)
        return self

    def wants(self, event: str, app: str, cluster: Cluster | None) -> bool:
        """Whether this endpoint is told of ``event`` on ``app`` (on ``cluster``)."""
        return (
            (not self.events or event in self.events)
            and any(fnmatch.fnmatchcase(app, pattern) for pattern in self.applications)
            and (cluster is None or self.clusters.matches(cluster))
        )


@dataclass(frozen=True, config=_CONFIG)
class RolloutStep(_Model):
    """One step of a progressive rollout: which clusters, how many at once, the gate."""

    clusters: Clusters = Field(default_factory=ClusterSelector)
    """The step's clusters (of the application's): a selector, or a map of labels."""
    max_unavailable: MaxUnavailable = "100%"
    """Clusters of the step updated at a time: a number, or a percentage of the step's."""
    soak: Soak = 0.0
    """How long (seconds) every target of the step stays Synced and Healthy before the next."""

    def batch(self, size: int) -> int:
        """Clusters of a step of ``size`` that may be updating at once (at least one)."""
        if isinstance(self.max_unavailable, int):
            return self.max_unavailable
        percent = int(self.max_unavailable.rstrip("%"))
        return max(1, size * percent // 100)


def _some_steps(value: tuple[RolloutStep, ...]) -> tuple[RolloutStep, ...]:
    if not value:
        raise invalid("must list at least one step")
    return value


@dataclass(frozen=True, config=_CONFIG)
class Rollout(_Model):
    """A new revision reaches the application's clusters step by step, each gated on the
    health of the one before; clusters no step selects come last."""

    steps: Annotated[tuple[RolloutStep, ...], AfterValidator(_some_steps)]
    """The steps, in order; a cluster belongs to the first step that selects it."""


@dataclass(frozen=True, config=_CONFIG)
class Application(_Model):
    """A set of manifests from Git, applied to every cluster its selector matches."""

    name: Name
    """The application's name (a DNS-1123 label)."""
    source: Source
    """Where the manifests live."""
    destination: Destination = Field(default_factory=Destination)
    """Where they go."""
    sync: SyncPolicy = Field(default_factory=SyncPolicy)
    """How they are kept in sync; unset fields come from defaults.sync."""
    ignore_differences: tuple[IgnoreRule, ...] = ()
    """Fields the diff does not compare."""
    project: Name | None = None
    """The project whose rules bind it (projects[].name); "default", when defined, if absent."""
    rollout: Rollout | None = None
    """How a new revision reaches its clusters; every cluster at once when absent."""
    windows: tuple[SyncWindow, ...] = ()
    """When its automatic syncs may run (on every cluster); always when absent."""


@dataclass(frozen=True, config=_CONFIG)
class Defaults(_Model):
    """Defaults for every application."""

    sync: SyncPolicy = Field(default_factory=SyncPolicy)
    """Sync fields applied where an application does not set them."""


@dataclass(frozen=True, config=_CONFIG)
class FleetFile(_Model):
    """A reconciler fleet file: the clusters, and the applications that go to them."""

    clusters: tuple[Cluster, ...] = ()
    """The clusters of the fleet."""
    projects: tuple[Project, ...] = ()
    """Groups of applications and what they may write where; none restricts nothing."""
    applications: tuple[Application, ...] = ()
    """The applications, each reconciled on every cluster it selects."""
    defaults: Defaults = Field(default_factory=Defaults)
    """Settings that every application takes unless it sets its own."""
    windows: tuple[FleetWindow, ...] = ()
    """Sync windows of the targets of some clusters and applications."""
    notifications: tuple[Notification, ...] = ()
    """Endpoints told of failed syncs, Degraded health, healed drift and rollouts."""

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """``defaults.sync`` fills each application's sync, field by field.

        Only the default fields that are valid are applied: an invalid one is reported
        once, under defaults, not again under every application.
        """
        if not isinstance(data, dict):
            return data
        defaults, apps = data.get("defaults"), data.get("applications")
        sync = defaults.get("sync") if isinstance(defaults, dict) else None
        if not isinstance(sync, dict) or not sync or not isinstance(apps, list):
            return data
        try:
            _SYNC.validate_python(sync, by_name=False)
            valid = sync
        except ValidationError as exc:
            wrong = {error["loc"][0] for error in exc.errors() if error["loc"]}
            valid = {key: value for key, value in sync.items() if key not in wrong}
        merged = []
        for item in apps:
            own = item.get("sync") if isinstance(item, dict) else None
            if isinstance(item, dict) and isinstance(own or {}, dict):
                written = {k: v for k, v in (own or {}).items() if v is not None}
                merged.append({**item, "sync": {**valid, **written}})
            else:
                merged.append(item)
        return {**data, "applications": merged}


_LABELS: TypeAdapter[Mapping[str, str]] = TypeAdapter(Labels)
_SYNC = TypeAdapter(SyncPolicy)
_JSONNET_CODE = TypeAdapter(JsonnetCode)
_JSONNET_LIST = TypeAdapter(tuple[JsonnetNamedArg, ...])
_FILE = TypeAdapter(FleetFile)
# Helm values may hold .inf, which to_dict keeps (JSON would make it null) so it round-trips.
_WRITTEN = ConfigDict(ser_json_inf_nan="constants")
_CLUSTERS = TypeAdapter(tuple[Cluster, ...], config=_WRITTEN)
_APPLICATIONS = TypeAdapter(tuple[Application, ...], config=_WRITTEN)
_PROJECTS = TypeAdapter(tuple[Project, ...], config=_WRITTEN)
_WINDOWS = TypeAdapter(tuple[FleetWindow, ...], config=_WRITTEN)
_NOTIFICATIONS = TypeAdapter(tuple[Notification, ...], config=_WRITTEN)
#: The project an application without ``project`` belongs to, when the file defines it.
DEFAULT_PROJECT = "default"


class _Schema(GenerateJsonSchema):
    """Descriptions, not generated titles: ``"title": "Selfheal"`` helps nobody."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _null_is_absent(schema: dict[str, Any]) -> None:
    """An optional field may be written as null, as in the file (see ``_Model``)."""
    required = set(schema.get("required", ()))
    for key, prop in schema.get("properties", {}).items():
        if key in required or {"type": "null"} in prop.get("anyOf", ()):
            continue
        inner = {k: v for k, v in prop.items() if k not in ("default", "description")}
        outer = {k: v for k, v in prop.items() if k in ("default", "description")}
        schema["properties"][key] = {"anyOf": [inner, {"type": "null"}], **outer}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the fleet file (draft 2020-12), for editors and CI linters.

    It describes the shape; rules that need more than one value (duplicate names,
    templates rendering on every cluster) are only checked by ``parse_fleet``.
    """
    schema = _FILE.json_schema(by_alias=True, mode="validation", schema_generator=_Schema)
    schema.pop("title", None)
    for definition in [schema, *schema.get("$defs", {}).values()]:
        _null_is_absent(definition)
    return {
        "$schema": GenerateJsonSchema.schema_dialect,
        "title": "reconciler fleet file",
        **schema,
    }


# --------------------------------------------------------------------------------------
# The fleet and its targets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One application on one cluster, with its paths rendered: the unit of work.

    Built once per run by :meth:`Fleet.target`, so every stage of a reconcile sees the
    same paths.  ``path`` is repository-relative and normalised, ``""`` for the root;
    ``value_files`` are the Helm value files, repository-relative too.
    """

    app: Application
    cluster: Cluster
    path: str
    value_files: tuple[str, ...] = ()
    #: The rules of the application's project; None: the application is unrestricted.
    project: Project | None = None

    @property
    def name(self) -> str:
        """``app/cluster``, as logs and messages name a target."""
        return f"{self.app.name}/{self.cluster.name}"


@dataclass(frozen=True)
class Fleet:
    """A validated fleet file.

    ``path`` is the file it came from (the prefix of every message about it);
    ``warnings`` are problems that do not stop anything, such as a selector that matches
    no cluster yet.
    """

    clusters: tuple[Cluster, ...]
    applications: tuple[Application, ...]
    path: str
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    projects: tuple[Project, ...] = ()
    windows: tuple[FleetWindow, ...] = ()
    notifications: tuple[Notification, ...] = ()

    @functools.cached_property
    def _clusters_by_name(self) -> dict[str, Cluster]:
        # Built once per fleet: a pass over 10,000 targets looks names up 20,000 times.
        return {cluster.name: cluster for cluster in self.clusters}

    @functools.cached_property
    def _application_indexes(self) -> dict[str, int]:
        return {app.name: index for index, app in enumerate(self.applications)}

    def cluster(self, name: str) -> Cluster:
        """The cluster called ``name``; ConfigError naming close known names otherwise."""
        found = self._clusters_by_name.get(name)
        if found is not None:
            return found
        raise ConfigError(
            f"{self.path}: unknown cluster {quote(name)}"
            + known(name, [c.name for c in self.clusters])
        )

    def application(self, name: str) -> Application:
        """The application called ``name``; ConfigError naming close known names otherwise."""
        return self.applications[self._application_index(name)]

    def _application_index(self, name: str) -> int:
        index = self._application_indexes.get(name)
        if index is not None:
            return index
        raise ConfigError(
            f"{self.path}: unknown application {quote(name)}"
            + known(name, [a.name for a in self.applications])
        )

    def project_of(self, app: Application) -> Project | None:
        """The project whose rules bind ``app``; None when nothing restricts it."""
        wanted = app.project or DEFAULT_PROJECT
        return next((p for p in self.projects if p.name == wanted), None)

    def targets(self, app: Application) -> list[Cluster]:
        """The clusters ``app`` goes to, in the order the fleet file lists them."""
        return [cluster for cluster in self.clusters if app.destination.clusters.matches(cluster)]

    def target(self, app: str, cluster: str) -> Target:
        """Application ``app`` on cluster ``cluster``, its templates filled in.

        ConfigError, naming the file, the entry and the field, when either is unknown,
        the application does not select the cluster, or a template does not render for
        it (a label the cluster lacks, a path that leaves the repository).
        """
        index = self._application_index(app)
        application = self.applications[index]
        member = self.cluster(cluster)
        if not application.destination.clusters.matches(member):
            raise ConfigError(
                describe(
                    self.path,
                    ("applications", index, "destination", "clusters"),
                    f"does not select cluster {quote(cluster)}",
                    name=app,
                )
            )
        source = application.source
        try:
            path, value_files = paths.target_paths(
                source.path,
                source.helm.value_files if source.helm else (),
                name=member.name,
                labels=member.labels,
            )
        except paths.PathError as exc:
            raise ConfigError(
                describe(
                    self.path,
                    ("applications", index, "source", *exc.field),
                    exc.error.describe(member.name),
                    name=app,
                )
            ) from None
        return Target(application, member, path, value_files, self.project_of(application))

    def source_path(self, app: Application, cluster: Cluster) -> str:
        """``app``'s manifest path for ``cluster`` (``"."`` for the root); see :meth:`target`."""
        return self.target(app.name, cluster.name).path or "."

    def fingerprint(self) -> str:
        """A stable SHA-256 of the normalised fleet; it changes exactly when behaviour may.

        Computed from :meth:`to_dict` (defaults filled, relative repositories resolved),
        so reformatting the file or spelling out a default does not change it.
        """
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The fleet with every default filled in; ``parse_fleet`` reads it back unchanged.

        ``projects``, ``applications[].project`` and ``applications[].rollout`` appear
        only when written, so the fingerprint of a fleet without them is what it was
        before they existed.
        """
        applications = _APPLICATIONS.dump_python(self.applications, mode="json", by_alias=True)
        for app in applications:
            for optional in ("project", "rollout", "windows"):
                if not app.get(optional):
                    app.pop(optional, None)
        data: dict[str, Any] = {
            "clusters": _CLUSTERS.dump_python(self.clusters, mode="json", by_alias=True),
            "applications": applications,
        }
        if self.projects:
            data["projects"] = _PROJECTS.dump_python(self.projects, mode="json", by_alias=True)
        if self.windows:
            data["windows"] = _WINDOWS.dump_python(self.windows, mode="json", by_alias=True)
        if self.notifications:
            data["notifications"] = _NOTIFICATIONS.dump_python(self.notifications, mode="json",
                                                               by_alias=True)  # fmt: skip
        return data

    def windows_of(self, app: Application, cluster: Cluster) -> tuple[SyncWindow, ...]:
        """The sync windows of ``app`` on ``cluster``: its own, then the fleet's that cover it."""
        return app.windows + tuple(w for w in self.windows if w.covers(app.name, cluster))

    def to_yaml(self) -> str:
        """:meth:`to_dict` as YAML, for ``-o yaml`` and for writing a normalised file."""
        return dump(self.to_dict())
