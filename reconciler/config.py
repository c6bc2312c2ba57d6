"""The fleet file: which clusters exist, which applications go where, and how they sync.

The fleet file comes from Git, so anyone who can push can write it, and it drives every
schedule and every write to every cluster.  It is therefore validated as a whole before
anything runs (DESIGN.md, "Contracts"): all problems are collected and reported together,
one per line, each naming the file, the entry and the field, so a user fixes a file in one
round trip instead of one error at a time.  Repository URLs are checked here because Git
treats some of them (``ext::``, ``-u...``) as commands, and they are never echoed with
credentials in them.

Everything but :func:`load_fleet` is pure: the rest of the platform asks this module which
clusters an application targets and at which path, without touching disk or network.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.errors import ConfigError
from reconciler.model import ObjectKey, type_name
from reconciler.yamlio import dump, load_documents

__all__ = [
    "Application",
    "Cluster",
    "ClusterSelector",
    "Destination",
    "Fleet",
    "FrozenMap",
    "IgnoreRule",
    "LabelRequirement",
    "Operator",
    "Source",
    "SyncPolicy",
    "load_fleet",
    "parse_fleet",
    "redact_url",
]

#: Shortest reconcile interval: below it a hundred applications hammer Git and the API servers.
MIN_INTERVAL_SECONDS = 5.0
#: Longest interval: beyond it "continuous" reconciliation is no longer what the user gets.
MAX_INTERVAL_SECONDS = 30 * 24 * 3600.0
#: Repository URL schemes Git may use; anything else may run a remote helper.
ALLOWED_SCHEMES = frozenset({"https", "http", "ssh", "git", "file"})

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_JSON_POINTER = re.compile(r"(?:/(?:[^~/]|~[01])*)+", re.DOTALL)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
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
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_TEMPLATE_EXPR = re.compile(r"\s*cluster\.(?:(name)|labels\.(\S+))\s*", re.DOTALL)
_TRANSPORT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*::")
_SCHEME_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
_SCP_LIKE = re.compile(
    r"(?:(?P<userinfo>[^/]*)@)?(?P<host>\[[^\]/]*\]|[^:/@\[]*):(?P<path>.*)", re.DOTALL
)
_MAX_SHOWN = 80


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


class FrozenMap(Mapping[str, str]):
    """A read-only, hashable, picklable string map (labels, matchLabels).

    ``MappingProxyType`` would be read-only too, but it can be neither hashed nor pickled
    nor deep-copied, which frozen dataclasses holding it need.
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


def _frozen(data: Mapping[str, str]) -> FrozenMap:
    return data if isinstance(data, FrozenMap) else FrozenMap(data)


@dataclass(frozen=True)
class Cluster:
    """A cluster of the fleet: a kubeconfig context, exactly as kubectl sees it.

    ``kubeconfig`` is stored as written (``~`` unexpanded, None for "``$KUBECONFIG``, then
    ``~/.kube/config``") and resolved by the cluster-client factory when it connects, so
    loading a fleet never depends on the environment of the process that loads it.
    """

    name: str
    context: str
    kubeconfig: str | None = None
    labels: Mapping[str, str] = field(default_factory=FrozenMap)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", _frozen(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """The cluster as it would be written in a fleet file, defaults filled in."""
        return {
            "name": self.name,
            "context": self.context,
            "kubeconfig": self.kubeconfig,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Source:
    """Where an application's manifests live.

    ``repo`` is a URL or an absolute local path (relative paths in the file are resolved
    against the fleet file's directory at load time); ``path`` may be a template, rendered
    per cluster by :meth:`Fleet.source_path`.
    """

    repo: str
    revision: str = "HEAD"
    path: str = "."


class Operator(StrEnum):
    """Label selector operators, as in Kubernetes ``matchExpressions``."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class LabelRequirement:
    """One ``matchExpressions`` entry."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes semantics: ``NotIn`` also matches when the label is absent."""
        if self.operator is Operator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels

    def to_dict(self) -> dict[str, Any]:
        """The requirement as written in a fleet file."""
        return {"key": self.key, "operator": str(self.operator), "values": list(self.values)}


@dataclass(frozen=True)
class ClusterSelector:
    """Which clusters an application targets.

    Either explicit ``names`` or a label selector (``match_labels`` and
    ``match_expressions``, all of which must hold).  The empty selector matches every
    cluster, as an empty Kubernetes label selector does; ``names=()`` matches none.
    """

    match_labels: Mapping[str, str] = field(default_factory=FrozenMap)
    match_expressions: tuple[LabelRequirement, ...] = ()
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "match_labels", _frozen(self.match_labels))

    def matches(self, cluster: Cluster) -> bool:
        """Whether ``cluster`` is targeted by this selector."""
        if self.names is not None:
            return cluster.name in self.names
        labels = cluster.labels
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    def to_dict(self) -> dict[str, Any]:
        """The selector in its long form, as accepted by the fleet file."""
        if self.names is not None:
            return {"names": list(self.names)}
        return {
            "matchLabels": dict(self.match_labels),
            "matchExpressions": [r.to_dict() for r in self.match_expressions],
        }


@dataclass(frozen=True)
class Destination:
    """Where an application goes: its default namespace and its clusters."""

    namespace: str | None = None
    clusters: ClusterSelector = field(default_factory=ClusterSelector)


@dataclass(frozen=True)
class SyncPolicy:
    """How an application is kept in sync; the defaults are the documented ones."""

    automated: bool = True
    prune: bool = True
    self_heal: bool = True
    allow_empty: bool = False
    create_namespace: bool = True
    #: Server-side apply with force: take over fields another manager (``kubectl edit``,
    #: a controller) changed, as Flux and Argo CD do; self-heal needs it.  False reports
    #: such fields as conflicts instead of overwriting them.
    force: bool = True
    interval_seconds: float = 60.0
    suspended: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The policy under the fleet file's field names."""
        return {
            key: _format_duration(self.interval_seconds)
            if key == "interval"
            else getattr(self, attr)
            for key, attr in _SYNC_FIELDS.items()
        }


#: Fleet-file field name -> SyncPolicy attribute.
_SYNC_FIELDS = {
    "automated": "automated",
    "prune": "prune",
    "selfHeal": "self_heal",
    "allowEmpty": "allow_empty",
    "createNamespace": "create_namespace",
    "force": "force",
    "interval": "interval_seconds",
    "suspended": "suspended",
}


@dataclass(frozen=True)
class IgnoreRule:
    """Fields the diff must not compare on matching objects (Argo CD ``ignoreDifferences``).

    ``group`` is ``""`` for the core group; ``name``/``namespace`` of None match any.
    """

    group: str
    kind: str
    name: str | None = None
    namespace: str | None = None
    json_pointers: tuple[str, ...] = ()

    def matches(self, key: ObjectKey) -> bool:
        """Whether this rule applies to the object identified by ``key``."""
        return (
            key.group == self.group
            and key.kind == self.kind
            and (self.name is None or key.name == self.name)
            and (self.namespace is None or key.namespace == self.namespace)
        )

    def to_dict(self) -> dict[str, Any]:
        """The rule as written in a fleet file."""
        return {
            "group": self.group,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "jsonPointers": list(self.json_pointers),
        }


@dataclass(frozen=True)
class Application:
    """A set of manifests from Git, applied to every cluster its selector matches."""

    name: str
    source: Source
    destination: Destination = field(default_factory=Destination)
    sync: SyncPolicy = field(default_factory=SyncPolicy)
    ignore_differences: tuple[IgnoreRule, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The application with every default filled in, for ``-o json`` and fingerprints."""
        return {
            "name": self.name,
            "source": {
                "repo": self.source.repo,
                "revision": self.source.revision,
                "path": self.source.path,
            },
            "destination": {
                "namespace": self.destination.namespace,
                "clusters": self.destination.clusters.to_dict(),
            },
            "sync": self.sync.to_dict(),
            "ignoreDifferences": [rule.to_dict() for rule in self.ignore_differences],
        }


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
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def cluster(self, name: str) -> Cluster:
        """The cluster called ``name``; ConfigError naming close known names otherwise."""
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise ConfigError(
            f"{self.path}: unknown cluster {_q(name)}"
            + _known(name, [c.name for c in self.clusters])
        )

    def application(self, name: str) -> Application:
        """The application called ``name``; ConfigError naming close known names otherwise."""
        for app in self.applications:
            if app.name == name:
                return app
        raise ConfigError(
            f"{self.path}: unknown application {_q(name)}"
            + _known(name, [a.name for a in self.applications])
        )

    def targets(self, app: Application) -> list[Cluster]:
        """The clusters ``app`` goes to, in the order the fleet file lists them."""
        return [cluster for cluster in self.clusters if app.destination.clusters.matches(cluster)]

    def source_path(self, app: Application, cluster: Cluster) -> str:
        """``app``'s manifest path for ``cluster``: the template filled in and normalised.

        The result is relative to the repository root (``"."`` for the root itself) and
        never leaves the repository: an absolute path or a ``..`` escape is a ConfigError.
        """
        try:
            return _render_path(app.source.path, cluster)
        except _TemplateError as exc:
            raise ConfigError(
                f"{self.path}: {self._entry_of(app)}: source.path: {exc.describe(cluster)}"
            ) from None

    def fingerprint(self) -> str:
        """A stable SHA-256 of the normalised fleet; it changes exactly when behaviour may.

        Computed from :meth:`to_dict` (defaults filled, relative repositories resolved),
        so reformatting the file or spelling out a default does not change it.
        """
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The fleet with every default filled in; ``parse_fleet`` reads it back unchanged."""
        return {
            "clusters": [cluster.to_dict() for cluster in self.clusters],
            "applications": [app.to_dict() for app in self.applications],
        }

    def to_yaml(self) -> str:
        """:meth:`to_dict` as YAML, for ``-o yaml`` and for writing a normalised file."""
        return dump(self.to_dict())

    def _entry_of(self, app: Application) -> str:
        for index, known in enumerate(self.applications):
            if known is app or known == app:
                return f"applications[{index}] ({app.name})"
        return f"applications ({app.name})"


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Read and validate the fleet file at ``path``; the only function here that does I/O."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the fleet file: {exc.strerror}") from exc
    base_dir = os.path.dirname(os.path.abspath(source))
    return parse_fleet(data, source=source, base_dir=base_dir)


def parse_fleet(text: str | bytes, *, source: str, base_dir: str) -> Fleet:
    """Validate a fleet file's text as a whole; raise one ConfigError listing every problem.

    ``source`` names the file in messages; ``base_dir`` is where relative repository paths
    are resolved from (the fleet file's directory).  Pure: no file is read.
    """
    try:
        documents = load_documents(text, source=source, error=ConfigError)
    except ConfigError as exc:
        # PyYAML's own messages may span lines; ours are one problem per line.
        raise ConfigError(" ".join(str(exc).split())) from None
    except ValueError as exc:
        # int() refuses integers of more than 4300 digits while PyYAML constructs them.
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if not documents:
        raise ConfigError(
            f"{source}: the fleet file is empty (expected a map with clusters and applications)"
        )
    if len(documents) > 1:
        raise ConfigError(
            f"{documents[1].where}: expected one YAML document, found {len(documents)}"
        )
    return _Parser(source=source, base_dir=base_dir).fleet(documents[0].data)


# --------------------------------------------------------------------------------------
# Repository URLs
# --------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its secret userinfo replaced by ``***``, for logs, messages and Flower.

    Userinfo is secret when it holds a password (``user:password@``) and, for http(s),
    always: a lone "user" there is usually a token.  An ssh user (``git@``) is kept, since
    it is needed to make sense of the address and cannot carry a secret.  Never raises:
    it is called on the way to reporting errors.
    """
    match = _SCHEME_URL.fullmatch(url)
    if match:
        scheme, rest = match.groups()
        authority, slash, tail = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at and (":" in userinfo or scheme.lower() in ("http", "https")):
            authority = "***@" + host
        return f"{scheme}://{authority}{slash}{tail}"
    scp = _SCP_LIKE.fullmatch(url)
    if scp and ":" in (scp.group("userinfo") or "") and not _TRANSPORT.match(url):
        return f"***@{scp.group('host')}:{scp.group('path')}"
    return url


class _Invalid(Exception):
    """Internal: one validation problem; the parser adds the file, entry and field."""


def _check_repo(repo: str, *, base_dir: str) -> str:
    """Refuse repository strings Git would treat as commands or options; resolve paths.

    Git runs ``ext::`` commands and other remote helpers (``transport::address``,
    ``foo://``), and takes a leading ``-`` (in the URL, user or host) as an option to
    ssh or itself; credentials written in the file would end up in logs and in Redis.
    """
    if not repo:
        raise _Invalid("must not be empty")
    if _CONTROL.search(repo):
        raise _Invalid("control characters are not allowed")
    if repo.startswith("-"):
        raise _Invalid(f"{_q(redact_url(repo))}: must not start with '-'")
    if _TRANSPORT.match(repo):
        transport = repo.split("::", 1)[0]
        raise _Invalid(
            f"{_q(redact_url(repo))}: the {_q(transport + '::')} transport form runs a Git "
            "remote helper and is not allowed (use https://, ssh://, git://, file://, "
            "user@host:path or a local path)"
        )
    match = _SCHEME_URL.fullmatch(repo)
    if match:
        scheme, rest = match.groups()
        if scheme.lower() not in ALLOWED_SCHEMES:
            raise _Invalid(
                f"{_q(redact_url(repo))}: scheme {_q(scheme)} is not allowed "
                f"(use one of {', '.join(sorted(ALLOWED_SCHEMES))})"
            )
        authority = rest.partition("/")[0]
        userinfo, at, host = authority.rpartition("@")
        if at and ":" in userinfo:
            raise _Invalid(_credentials_message(repo))
        if at and userinfo.startswith("-"):
            raise _Invalid(f"{_q(redact_url(repo))}: the user must not start with '-'")
        if host.startswith("-"):
            raise _Invalid(f"{_q(redact_url(repo))}: the host must not start with '-'")
        if scheme.lower() != "file" and not host:
            raise _Invalid(f"{_q(redact_url(repo))}: no host")
        return repo
    # git: a colon before the first slash makes it scp-like, [user@]host:path.
    first_colon, first_slash = repo.find(":"), repo.find("/")
    if first_colon != -1 and (first_slash == -1 or first_colon < first_slash):
        scp = _SCP_LIKE.fullmatch(repo)
        if scp is None:
            raise _Invalid(f"{_q(redact_url(repo))}: not a valid user@host:path address")
        userinfo_or_none, host, path = scp.group("userinfo", "host", "path")
        if userinfo_or_none is not None and ":" in userinfo_or_none:
            raise _Invalid(_credentials_message(repo))
        if userinfo_or_none is not None and userinfo_or_none.startswith("-"):
            raise _Invalid(f"{_q(redact_url(repo))}: the user must not start with '-'")
        if not host or host.startswith("-"):
            raise _Invalid(f"{_q(redact_url(repo))}: the host must be set and not start with '-'")
        if not path or path.startswith("-"):
            raise _Invalid(f"{_q(redact_url(repo))}: the path must be set and not start with '-'")
        return repo
    # A local path.  '~' is left for the Git adapter to expand, like kubeconfig paths.
    if repo.startswith("~") or os.path.isabs(repo):
        return repo
    return os.path.normpath(os.path.join(base_dir, repo))


def _credentials_message(repo: str) -> str:
    return (
        f"{_q(redact_url(repo))}: credentials must not be written in the fleet file "
        "(use a Git credential helper, an SSH key or a mounted secret)"
    )


# --------------------------------------------------------------------------------------
# Path templates
# --------------------------------------------------------------------------------------


class _TemplateError(Exception):
    """Internal: a template or path problem, formatted by the caller that knows the entry."""

    def describe(self, cluster: Cluster | None) -> str:
        return str(self)


class _MissingLabel(_TemplateError):
    def __init__(self, template: str, label: str) -> None:
        super().__init__(label)
        self.template = template
        self.label = label

    def describe(self, cluster: Cluster | None) -> str:
        owner = f"cluster {_q(cluster.name)}" if cluster is not None else "the cluster"
        return f"{owner} has no label {_q(self.label)} (used in {_q(self.template)})"


def _template_parts(template: str) -> list[str | tuple[str, str]]:
    """Split a path template into literal text and ``("name", "")``/``("label", key)``.

    Only ``{{ cluster.name }}`` and ``{{ cluster.labels.KEY }}`` exist: a template
    language that can do more would be a way to run code from Git.
    """
    parts: list[str | tuple[str, str]] = []
    position = 0
    for match in _TEMPLATE.finditer(template):
        parts.append(template[position : match.start()])
        position = match.end()
        expression = _TEMPLATE_EXPR.fullmatch(match.group(1))
        if expression is None:
            raise _TemplateError(
                f"unsupported template expression {_q(match.group(0))} "
                "(use {{ cluster.name }} or {{ cluster.labels.KEY }})"
            )
        if expression.group(1):
            parts.append(("name", ""))
        else:
            key = expression.group(2)
            problem = _label_key_problem(key)
            if problem:
                raise _TemplateError(f"{_q(match.group(0))}: invalid label key {problem}")
            parts.append(("label", key))
    parts.append(template[position:])
    for part in parts:
        if isinstance(part, str) and ("{{" in part or "}}" in part):
            raise _TemplateError(f"unbalanced '{{{{' or '}}}}' in {_q(template)}")
    return parts


def _render_path(template: str, cluster: Cluster) -> str:
    pieces: list[str] = []
    for part in _template_parts(template):
        if isinstance(part, str):
            pieces.append(part)
        elif part[0] == "name":
            pieces.append(cluster.name)
        elif part[1] in cluster.labels:
            pieces.append(cluster.labels[part[1]])
        else:
            raise _MissingLabel(template, part[1])
    return _normalise_repo_path("".join(pieces))


def _normalise_repo_path(path: str, *, shown: str | None = None) -> str:
    """Normalise ``path`` relative to a repository root; refuse anything that leaves it.

    ``shown`` is what messages quote, when that is not ``path`` itself (a template).
    """
    quoted = _q(path if shown is None else shown)
    if not path:
        raise _TemplateError('must not be empty (use "." for the repository root)')
    if path.startswith("/"):
        raise _TemplateError(f"{quoted} is absolute; paths are relative to the repository root")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise _TemplateError(f"{quoted} leaves the repository")
    return normal


# --------------------------------------------------------------------------------------
# Small helpers for values and messages
# --------------------------------------------------------------------------------------


def _q(value: object) -> str:
    """Quote a value for a message: escaped (one problem per line) and shortened."""
    text = json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)
    text = _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 4] + '..."'
    return text


def _segment(key: str) -> str:
    """A map key as it appears in a field path; odd keys are quoted."""
    return key if re.fullmatch(r"[A-Za-z0-9_./-]{1,63}", key) else _q(key)




def _suggestion(word: str, options: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest option, ignoring case (``selfheal``)."""
    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word[:100].lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {_q(by_lower[close[0]])}?)" if close else ""


def _known(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name[:100], list(names), n=3, cutoff=0.6)
    if close:
        return " (did you mean " + " or ".join(_q(c) for c in close) + "?)"
    if not names:
        return " (none are defined)"
    if len(names) <= 10:
        return " (known: " + ", ".join(names) + ")"
    return ""


def _dns_label_problem(value: str) -> str | None:
    if len(value) > 63:
        return f"{_q(value)} is longer than 63 characters"
    if not _DNS1123_LABEL.fullmatch(value):
        return (
            f"{_q(value)} is not a DNS-1123 label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    return None


def _label_key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    valid_prefix = (
        bool(prefix)
        and len(prefix) <= 253
        and all(_DNS1123_LABEL.fullmatch(part) for part in prefix.split("."))
    )
    if slash and not valid_prefix:
        return f"{_q(key)}: the prefix must be a DNS-1123 subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"{_q(key)}: the name must be 63 characters or less, of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return None


def _label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            f"{_q(value)}: a label value must be 63 characters or less, of letters, digits, "
            "'-', '_' and '.', starting and ending with a letter or digit"
        )
    return None


def _parse_duration(value: object) -> float:
    """Go-style durations (``30s``, ``5m``, ``1h30m``) or a number of seconds."""
    seconds: float
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Invalid(f"expected a duration such as 30s, 5m or 1h, got {type_name(value)}")
    if isinstance(value, int):
        seconds = float(value) if abs(value) < 10**18 else math.inf
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
        raise _Invalid(f"invalid duration {_q(value)} (use 30s, 5m, 1h)")
    if math.isnan(seconds):
        raise _Invalid(f"invalid duration {_q(value)} (use 30s, 5m, 1h)")
    if seconds < MIN_INTERVAL_SECONDS:
        raise _Invalid(f"{_q(value)} is below the minimum of {MIN_INTERVAL_SECONDS:g}s")
    if seconds > MAX_INTERVAL_SECONDS:
        raise _Invalid(f"{_q(value)} is above the maximum of {MAX_INTERVAL_SECONDS / 3600:g}h")
    return seconds


def _format_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds!r}s"


def _entry(collection: str, index: int, item: object) -> str:
    """``applications[2] (guestbook)``: the index always, the name when there is one."""
    if isinstance(item, dict):
        name = item.get("name")
        if isinstance(name, str) and name:
            shown = name if re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", name) else _q(name)
            return f"{collection}[{index}] ({shown})"
    return f"{collection}[{index}]"


# --------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------

_TOP_FIELDS = ("clusters", "applications", "defaults")
_CLUSTER_FIELDS = ("name", "context", "kubeconfig", "labels")
_APP_FIELDS = ("name", "source", "destination", "sync", "ignoreDifferences")
_SOURCE_FIELDS = ("repo", "revision", "path")
_DESTINATION_FIELDS = ("namespace", "clusters")
_SELECTOR_FIELDS = ("matchLabels", "matchExpressions", "names")
_EXPRESSION_FIELDS = ("key", "operator", "values")
_IGNORE_FIELDS = ("group", "kind", "name", "namespace", "jsonPointers")
_DEFAULTS_FIELDS = ("sync",)
_MAX_LISTED = 5


@dataclass
class _Parser:
    """Walks the loaded document once, collecting every problem instead of stopping."""

    source: str
    base_dir: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    # -- reporting -------------------------------------------------------------------

    def _line(self, entry: str, where: str, message: str) -> str:
        return ": ".join(part for part in (self.source, entry, where, message) if part)

    def error(self, entry: str, where: str, message: str) -> None:
        self.errors.append(self._line(entry, where, message))

    def warn(self, entry: str, where: str, message: str) -> None:
        self.warnings.append(self._line(entry, where, message))

    # -- generic shapes --------------------------------------------------------------

    def mapping(
        self, value: object, *, entry: str, where: str, known: Sequence[str]
    ) -> dict[str, Any] | None:
        """``value`` if it is a map, reporting its unknown keys; None (reported) if not."""
        if not isinstance(value, dict):
            self.error(entry, where, f"expected a map, got {type_name(value)}")
            return None
        for key in value:
            if key not in known:
                path = f"{where}.{_segment(key)}" if where else _segment(key)
                self.error(entry, path, "unknown field" + _suggestion(key, known))
        return value

    def sequence(self, value: object, *, entry: str, where: str) -> list[Any]:
        """``value`` if it is a list; [] for null/absent; [] (reported) otherwise."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(entry, where, f"expected a list, got {type_name(value)}")
            return []
        return value

    def string(
        self, value: object, *, entry: str, where: str, required: bool = False
    ) -> str | None:
        """A string without control characters; None when absent (reported if required)."""
        if value is None:
            if required:
                self.error(entry, where, "required")
            return None
        if not isinstance(value, str):
            hint = f" (quote it: {_q(value)})" if isinstance(value, int | float) else ""
            self.error(entry, where, f"expected a string, got {type_name(value)}{hint}")
            return None
        if _CONTROL.search(value):
            self.error(entry, where, f"{_q(value)}: control characters are not allowed")
            return None
        if required and not value:
            self.error(entry, where, "required (must not be empty)")
            return None
        return value

    def dns_label(self, value: object, *, entry: str, where: str, required: bool) -> str | None:
        text = self.string(value, entry=entry, where=where, required=required)
        if text is None:
            return None
        problem = _dns_label_problem(text)
        if problem:
            self.error(entry, where, problem)
            return None
        return text

    def labels(self, value: object, *, entry: str, where: str) -> dict[str, str] | None:
        """A Kubernetes label map: valid keys, string values (``1`` and ``true`` refused)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(entry, where, f"expected a map of labels, got {type_name(value)}")
            return None
        out: dict[str, str] = {}
        ok = True
        for key, raw in value.items():
            problem = _label_key_problem(key)
            if problem:
                self.error(entry, where, f"invalid label key {problem}")
                ok = False
                continue
            path = f"{where}.{_segment(key)}"
            if not isinstance(raw, str):
                hint = ""
                if isinstance(raw, bool | int | float):
                    hint = f" (quote it: {_q(str(raw).lower() if isinstance(raw, bool) else raw)})"
                self.error(entry, path, f"expected a string, got {type_name(raw)}{hint}")
                ok = False
                continue
            problem = _label_value_problem(raw)
            if problem:
                self.error(entry, path, f"invalid label value {problem}")
                ok = False
                continue
            out[key] = raw
        return out if ok else None

    def boolean(self, value: object, *, entry: str, where: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(entry, where, f"expected true or false, got {type_name(value)}")
        return None

    # -- the document ----------------------------------------------------------------

    def fleet(self, data: object) -> Fleet:
        root = self.mapping(data, entry="", where="", known=_TOP_FIELDS)
        if root is None:
            raise ConfigError(
                f"{self.source}: expected a map with clusters and applications, "
                f"got {type_name(data)}"
            )
        sync_defaults = self.defaults(root.get("defaults"))
        clusters, names_seen = self.clusters(root.get("clusters"))
        applications = self.applications(root.get("applications"), sync_defaults)
        for index, app in applications:
            self.check_targets(index, app, clusters=clusters, names_seen=names_seen)
        if self.errors:
            raise ConfigError("\n".join(self.errors))
        return Fleet(
            clusters=tuple(clusters),
            applications=tuple(app for _, app in applications),
            path=self.source,
            warnings=tuple(self.warnings),
        )

    def defaults(self, value: object) -> dict[str, Any]:
        if value is None:
            return {}
        block = self.mapping(value, entry="defaults", where="", known=_DEFAULTS_FIELDS)
        if block is None:
            return {}
        return self.sync(block.get("sync"), entry="defaults")

    def clusters(self, value: object) -> tuple[list[Cluster], set[str]]:
        """Every valid cluster, and every name written (valid or not)."""
        out: list[Cluster] = []
        first: dict[str, int] = {}
        for index, item in enumerate(self.sequence(value, entry="", where="clusters")):
            entry = _entry("clusters", index, item)
            cluster = self.cluster(item, entry=entry)
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in first:
                self.error(
                    entry, "name", f"duplicate {_q(name)} (already used by clusters[{first[name]}])"
                )
                continue
            if isinstance(name, str):
                first[name] = index
            if cluster is not None:
                out.append(cluster)
        return out, set(first)

    def cluster(self, item: object, *, entry: str) -> Cluster | None:
        block = self.mapping(item, entry=entry, where="", known=_CLUSTER_FIELDS)
        if block is None:
            return None
        before = len(self.errors)
        name = self.dns_label(block.get("name"), entry=entry, where="name", required=True)
        context = self.string(block.get("context"), entry=entry, where="context")
        if context == "":
            self.error(entry, "context", "must not be empty (leave it out to use the name)")
        kubeconfig = self.string(block.get("kubeconfig"), entry=entry, where="kubeconfig")
        if kubeconfig == "":
            self.error(entry, "kubeconfig", "must not be empty (leave it out for the default)")
        labels = self.labels(block.get("labels"), entry=entry, where="labels")
        if len(self.errors) > before or name is None or labels is None:
            return None
        return Cluster(
            name=name, context=context or name, kubeconfig=kubeconfig or None, labels=labels
        )

    def applications(
        self, value: object, sync_defaults: Mapping[str, Any]
    ) -> list[tuple[int, Application]]:
        out: list[tuple[int, Application]] = []
        first: dict[str, int] = {}
        for index, item in enumerate(self.sequence(value, entry="", where="applications")):
            entry = _entry("applications", index, item)
            app = self.application(item, entry=entry, sync_defaults=sync_defaults)
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name in first:
                self.error(
                    entry,
                    "name",
                    f"duplicate {_q(name)} (already used by applications[{first[name]}])",
                )
                continue
            if isinstance(name, str):
                first[name] = index
            if app is not None:
                out.append((index, app))
        return out

    def application(
        self, item: object, *, entry: str, sync_defaults: Mapping[str, Any]
    ) -> Application | None:
        block = self.mapping(item, entry=entry, where="", known=_APP_FIELDS)
        if block is None:
            return None
        before = len(self.errors)
        name = self.dns_label(block.get("name"), entry=entry, where="name", required=True)
        source = self.source_block(block.get("source"), entry=entry)
        destination = self.destination(block.get("destination"), entry=entry)
        overrides = self.sync(block.get("sync"), entry=entry)
        rules = self.ignore_rules(block.get("ignoreDifferences"), entry=entry)
        if len(self.errors) > before or name is None or source is None or destination is None:
            return None
        return Application(
            name=name,
            source=source,
            destination=destination,
            sync=SyncPolicy(**{**sync_defaults, **overrides}),
            ignore_differences=rules,
        )

    def source_block(self, value: object, *, entry: str) -> Source | None:
        if value is None:
            self.error(entry, "source", "required")
            return None
        block = self.mapping(value, entry=entry, where="source", known=_SOURCE_FIELDS)
        if block is None:
            return None
        before = len(self.errors)
        repo = self.string(block.get("repo"), entry=entry, where="source.repo", required=True)
        if repo is not None:
            try:
                repo = _check_repo(repo, base_dir=self.base_dir)
            except _Invalid as exc:
                self.error(entry, "source.repo", str(exc))
        revision = self.string(block.get("revision"), entry=entry, where="source.revision")
        if revision is not None and (
            not revision or revision.startswith("-") or any(c.isspace() for c in revision)
        ):
            self.error(
                entry,
                "source.revision",
                f"{_q(revision)}: expected a branch, tag or commit "
                "(not empty, no spaces, not starting with '-')",
            )
        path = self.string(block.get("path"), entry=entry, where="source.path")
        if path is not None:
            try:
                # Labels and names are single path segments, so rendering with a stand-in
                # catches absolute paths and most escapes before any cluster is known.
                stand_in = "".join(p if isinstance(p, str) else "x" for p in _template_parts(path))
                _normalise_repo_path(stand_in, shown=path)
            except _TemplateError as exc:
                self.error(entry, "source.path", exc.describe(None))
        if len(self.errors) > before or repo is None:
            return None
        return Source(repo=repo, revision=revision or "HEAD", path=path if path else ".")

    def destination(self, value: object, *, entry: str) -> Destination | None:
        if value is None:
            return Destination()
        block = self.mapping(value, entry=entry, where="destination", known=_DESTINATION_FIELDS)
        if block is None:
            return None
        namespace = self.dns_label(
            block.get("namespace"), entry=entry, where="destination.namespace", required=False
        )
        selector = self.selector(block.get("clusters"), entry=entry)
        if selector is None or (block.get("namespace") is not None and namespace is None):
            return None
        return Destination(namespace=namespace, clusters=selector)

    def selector(self, value: object, *, entry: str) -> ClusterSelector | None:
        """Three forms: absent (every cluster), ``{names: [...]}``, a label selector.

        A map without any of the long-form keys is the ``matchLabels`` shorthand.
        """
        where = "destination.clusters"
        if value is None:
            return ClusterSelector()
        if not isinstance(value, dict):
            self.error(
                entry,
                where,
                f"expected a map (labels to match, or matchLabels/matchExpressions/names), "
                f"got {type_name(value)}",
            )
            return None
        if not value.keys() & set(_SELECTOR_FIELDS):
            for key, raw in value.items():
                if not isinstance(raw, str) and _suggestion(key, _SELECTOR_FIELDS):
                    self.error(
                        entry,
                        f"{where}.{_segment(key)}",
                        "unknown field" + _suggestion(key, _SELECTOR_FIELDS),
                    )
                    return None
            shorthand = self.labels(value, entry=entry, where=where)
            return None if shorthand is None else ClusterSelector(match_labels=shorthand)
        block = self.mapping(value, entry=entry, where=where, known=_SELECTOR_FIELDS)
        if block is None:
            return None
        before = len(self.errors)
        if "names" in block:
            if "matchLabels" in block or "matchExpressions" in block:
                self.error(
                    entry,
                    f"{where}.names",
                    "cannot be combined with matchLabels or "
                    "matchExpressions (use one or the other)",
                )
                return None
            names: list[str] = []
            for index, raw in enumerate(
                self.sequence(block["names"], entry=entry, where=f"{where}.names")
            ):
                name = self.dns_label(
                    raw, entry=entry, where=f"{where}.names[{index}]", required=True
                )
                if name is not None:
                    names.append(name)
            if len(self.errors) > before:
                return None
            return ClusterSelector(names=tuple(names))
        match_labels = self.labels(
            block.get("matchLabels"), entry=entry, where=f"{where}.matchLabels"
        )
        expressions: list[LabelRequirement] = []
        raw_expressions = self.sequence(
            block.get("matchExpressions"), entry=entry, where=f"{where}.matchExpressions"
        )
        for index, raw in enumerate(raw_expressions):
            requirement = self.requirement(
                raw, entry=entry, where=f"{where}.matchExpressions[{index}]"
            )
            if requirement is not None:
                expressions.append(requirement)
        if len(self.errors) > before or match_labels is None:
            return None
        return ClusterSelector(match_labels=match_labels, match_expressions=tuple(expressions))

    def requirement(self, value: object, *, entry: str, where: str) -> LabelRequirement | None:
        block = self.mapping(value, entry=entry, where=where, known=_EXPRESSION_FIELDS)
        if block is None:
            return None
        before = len(self.errors)
        key = self.string(block.get("key"), entry=entry, where=f"{where}.key", required=True)
        if key:
            problem = _label_key_problem(key)
            if problem:
                self.error(entry, f"{where}.key", f"invalid label key {problem}")
        operator: Operator | None = None
        raw_operator = self.string(
            block.get("operator"), entry=entry, where=f"{where}.operator", required=True
        )
        if raw_operator:
            try:
                operator = Operator(raw_operator)
            except ValueError:
                choices = [str(op) for op in Operator]
                self.error(
                    entry,
                    f"{where}.operator",
                    f"unknown operator {_q(raw_operator)}{_suggestion(raw_operator, choices)} "
                    f"(use one of {', '.join(choices)})",
                )
        values: list[str] = []
        for index, raw in enumerate(
            self.sequence(block.get("values"), entry=entry, where=f"{where}.values")
        ):
            text = self.string(raw, entry=entry, where=f"{where}.values[{index}]")
            if text is None:
                if raw is None:
                    self.error(entry, f"{where}.values[{index}]", "expected a string, got null")
                continue
            problem = _label_value_problem(text)
            if problem:
                self.error(entry, f"{where}.values[{index}]", f"invalid label value {problem}")
            values.append(text)
        if operator in (Operator.IN, Operator.NOT_IN) and not values and len(self.errors) == before:
            self.error(entry, f"{where}.values", f"required with operator {operator}")
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and values:
            self.error(entry, f"{where}.values", f"must be empty with operator {operator}")
        if len(self.errors) > before or key is None or operator is None:
            return None
        return LabelRequirement(key=key, operator=operator, values=tuple(values))

    def sync(self, value: object, *, entry: str) -> dict[str, Any]:
        """The sync fields written, as SyncPolicy keyword arguments (defaults merge later)."""
        if value is None:
            return {}
        block = self.mapping(value, entry=entry, where="sync", known=tuple(_SYNC_FIELDS))
        if block is None:
            return {}
        out: dict[str, Any] = {}
        for key, attr in _SYNC_FIELDS.items():
            if key not in block:
                continue
            if key == "interval":
                try:
                    out[attr] = _parse_duration(block[key])
                except _Invalid as exc:
                    self.error(entry, "sync.interval", str(exc))
                continue
            flag = self.boolean(block[key], entry=entry, where=f"sync.{key}")
            if flag is not None:
                out[attr] = flag
        return out

    def ignore_rules(self, value: object, *, entry: str) -> tuple[IgnoreRule, ...]:
        rules: list[IgnoreRule] = []
        for index, raw in enumerate(self.sequence(value, entry=entry, where="ignoreDifferences")):
            where = f"ignoreDifferences[{index}]"
            block = self.mapping(raw, entry=entry, where=where, known=_IGNORE_FIELDS)
            if block is None:
                continue
            before = len(self.errors)
            group = self.string(block.get("group"), entry=entry, where=f"{where}.group")
            kind = self.string(block.get("kind"), entry=entry, where=f"{where}.kind", required=True)
            name = self.string(block.get("name"), entry=entry, where=f"{where}.name")
            namespace = self.string(block.get("namespace"), entry=entry, where=f"{where}.namespace")
            pointers: list[str] = []
            raw_pointers = block.get("jsonPointers")
            if raw_pointers is None:
                self.error(entry, f"{where}.jsonPointers", "required")
            for p_index, raw_pointer in enumerate(
                self.sequence(raw_pointers, entry=entry, where=f"{where}.jsonPointers")
            ):
                p_where = f"{where}.jsonPointers[{p_index}]"
                pointer = self.string(raw_pointer, entry=entry, where=p_where)
                if pointer is None:
                    if raw_pointer is None:
                        self.error(entry, p_where, "expected a string, got null")
                    continue
                if not _JSON_POINTER.fullmatch(pointer):
                    self.error(
                        entry,
                        p_where,
                        f"invalid JSON pointer {_q(pointer)} (RFC 6901: starts with '/', "
                        "'~' only as ~0 or ~1; the whole object cannot be ignored)",
                    )
                    continue
                pointers.append(pointer)
            if isinstance(raw_pointers, list) and not raw_pointers:
                self.error(entry, f"{where}.jsonPointers", "must list at least one pointer")
            if len(self.errors) > before or kind is None:
                continue
            rules.append(
                IgnoreRule(
                    group=group or "",
                    kind=kind,
                    name=name or None,
                    namespace=namespace or None,
                    json_pointers=tuple(pointers),
                )
            )
        return tuple(rules)

    # -- checks across entries ---------------------------------------------------------

    def check_targets(
        self, index: int, app: Application, *, clusters: Sequence[Cluster], names_seen: set[str]
    ) -> None:
        """Selector names exist, the path renders on every target, and something matches."""
        entry = f"applications[{index}] ({app.name})"
        selector = app.destination.clusters
        if selector.names is not None:
            for n_index, name in enumerate(selector.names):
                if name not in names_seen:
                    self.error(
                        entry,
                        f"destination.clusters.names[{n_index}]",
                        f"unknown cluster {_q(name)}" + _known(name, sorted(names_seen)),
                    )
        targets = [cluster for cluster in clusters if selector.matches(cluster)]
        if not targets:
            self.warn(entry, "destination.clusters", "matches no cluster; nothing is deployed")
        missing: dict[str, list[str]] = {}
        for cluster in targets:
            try:
                _render_path(app.source.path, cluster)
            except _MissingLabel as exc:
                missing.setdefault(exc.label, []).append(cluster.name)
            except _TemplateError as exc:
                self.error(entry, "source.path", f"on cluster {_q(cluster.name)}: {exc}")
                return
        for label, lacking in missing.items():
            shown = ", ".join(_q(name) for name in lacking[:_MAX_LISTED])
            more = f" and {len(lacking) - _MAX_LISTED} more" if len(lacking) > _MAX_LISTED else ""
            self.error(
                entry,
                "source.path",
                f"label {_q(label)} used in {_q(app.source.path)} is missing on "
                f"cluster{'s' if len(lacking) > 1 else ''} {shown}{more}",
            )
