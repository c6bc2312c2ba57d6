"""Git push webhooks: who sent them, what was pushed, which applications it concerns.

Beat reconciles every application on its interval; a push webhook lets ``POST /hooks/git``
reconcile the applications that follow the pushed branch or tag at once instead.  The
endpoint faces the internet, so everything here assumes a hostile sender:

* :func:`verify` authenticates the raw body *before* it is parsed, and refuses a provider
  whose secret is not configured: an unsigned push is never accepted, since a forged one
  would let anyone make every worker fetch and apply at will.  Secrets are compared in
  constant time and never appear in a message.
* :func:`parse` turns the body into a small :class:`PushEvent`, with a size limit, strict
  types and a message naming the field for anything malformed; no other exception escapes
  it, whatever the bytes.
* :func:`matching_applications` matches the pushed repository against each application's
  ``source.repo`` through :func:`normalise_repo`, because GitHub reports
  ``https://github.com/org/repo.git`` while the fleet file may say
  ``git@github.com:org/repo``.

* :func:`push_identity` names what a push changed, (repository, ref, commit), whatever
  its delivery id: a signature covers the body, not the headers, so anyone who saw one
  signed push can replay it under fresh delivery ids; the endpoint queues each identity
  once within a window.
* :class:`RateLimiter` bounds the requests of one source address before any work (a
  token bucket per address, the clock passed in).
* :func:`check_content_type` refuses bodies that are not JSON or GitHub's form encoding.

Everything is pure (no I/O, no clock): the HTTP layer reads the request, calls these in
order and maps :attr:`WebhookError.status` to the answer (401, 400, 413, 415).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeGuard
from urllib.parse import parse_qs

from reconciler.errors import PermanentError
from reconciler.fleet import Fleet, redact_url
from reconciler.model import type_name
from reconciler.repourl import identity as normalise_repo

__all__ = [
    "MAX_BODY_BYTES",
    "Provider",
    "PushEvent",
    "RateLimiter",
    "WebhookError",
    "WebhookMalformed",
    "WebhookTooLarge",
    "WebhookUnauthorized",
    "WebhookUnsupportedType",
    "check_content_type",
    "claimed_provider",
    "matching_applications",
    "normalise_repo",
    "parse",
    "push_identity",
    "source_of",
    "verify",
]

#: Largest body accepted.  Push payloads list at most 20 commits and are far smaller; the
#: limit bounds the memory and HMAC work an unauthenticated sender can cause.
MAX_BODY_BYTES = 1024 * 1024
#: Longest string field accepted (URLs, refs, ids); anything longer is not a real push.
MAX_FIELD_CHARS = 4096

_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ZERO_COMMIT = re.compile(r"0{40}|0{64}")
_SHOWN_CHARS = 60
#: The placeholder of ``compose/.env.example``: a secret everyone knows is no secret.
_PLACEHOLDERS = frozenset({"change-me"})

_GITHUB_EVENT = "x-github-event"
_GITHUB_SIGNATURE = "x-hub-signature-256"
_GITHUB_SIGNATURE_SHA1 = "x-hub-signature"
_GITHUB_DELIVERY = "x-github-delivery"
_GITLAB_EVENT = "x-gitlab-event"
_GITLAB_TOKEN = "x-gitlab-token"
_GITLAB_DELIVERY = ("idempotency-key", "x-gitlab-event-uuid")
_PLAIN_TOKEN = "x-reconciler-token"
_PLAIN_DELIVERY = "x-request-id"
_AUTHORIZATION = "authorization"
_CONTENT_TYPE = "content-type"

_GITHUB_URL_FIELDS = ("clone_url", "ssh_url", "git_url", "html_url")
_GITLAB_URL_FIELDS = ("git_http_url", "git_ssh_url", "web_url")
_GITLAB_PUSH_EVENTS = frozenset({"Push Hook", "Tag Push Hook"})
_PLAIN_FIELDS = ("repo", "ref", "commit", "default_branch")


# --------------------------------------------------------------------------------------
# Errors and results
# --------------------------------------------------------------------------------------


class WebhookError(PermanentError):
    """A webhook request the endpoint refuses; ``status`` is the HTTP answer to give.

    Permanent: the same request sent again gets the same answer.
    """

    status: int = 400


class WebhookUnauthorized(WebhookError):
    """Missing or wrong signature or token, or a provider with no secret configured."""

    status = 401


class WebhookMalformed(WebhookError):
    """The body is not a push event we understand: bad JSON, wrong types, missing fields."""

    status = 400


class WebhookTooLarge(WebhookMalformed):
    """The body is over the size limit; a kind of malformed request, answered with 413."""

    status = 413


class WebhookUnsupportedType(WebhookError):
    """A body in a content type no provider sends (JSON, or GitHub's form encoding)."""

    status = 415


class Provider(StrEnum):
    """Who sent a webhook, as established by :func:`verify`."""

    GITHUB = "github"
    GITLAB = "gitlab"
    PLAIN = "plain"


@dataclass(frozen=True)
class PushEvent:
    """What a push changed, in the terms applications are matched on.

    ``repo_urls`` holds every URL form the provider reported for the repository (redacted
    of any userinfo), since the fleet file may use any of them.  ``branch`` or ``tag`` is
    set from a ``refs/heads/`` or ``refs/tags/`` ``ref`` (neither for other refs);
    ``commit`` is the new head, None when unknown or when the ref was deleted.
    ``default_branch`` is the repository's default branch when the provider says so: it
    decides whether applications following ``HEAD`` are concerned.
    """

    repo_urls: tuple[str, ...]
    ref: str
    branch: str | None
    tag: str | None
    commit: str | None
    delivery: str | None
    default_branch: str | None = None
    deleted: bool = False
    #: The head commit's author and the first line of its message, when the provider
    #: says (outcomes record why they ran); never used to decide anything.
    author: str | None = None
    message: str | None = None


# --------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    github_secret: str | None,
    gitlab_token: str | None,
    plain_token: str | None,
) -> Provider:
    """Authenticate a webhook request and say which provider sent it.

    The provider is recognised by its headers (``X-GitHub-Event``/``X-Hub-Signature-256``,
    ``X-Gitlab-Event``/``X-Gitlab-Token``, otherwise a plain request with
    ``Authorization: Bearer`` or ``X-Reconciler-Token``), then its proof is checked
    against that provider's secret only.  An empty secret, or the ``change-me``
    placeholder of ``compose/.env.example``, counts as not configured: an HMAC keyed with
    a value everyone knows proves nothing.  Raises WebhookUnauthorized, or WebhookTooLarge
    before any HMAC work on an oversized body.
    """
    _check_size(body, MAX_BODY_BYTES)
    lowered = _lower_keys(headers)
    github = any(name in lowered for name in (_GITHUB_EVENT, _GITHUB_SIGNATURE))
    gitlab = any(name in lowered for name in (_GITLAB_EVENT, _GITLAB_TOKEN))
    if github and gitlab:
        raise WebhookUnauthorized("both GitHub and GitLab headers are present; refusing")
    if github:
        _verify_github(lowered, body, secret=github_secret)
        return Provider.GITHUB
    if gitlab:
        _verify_gitlab(lowered, token=gitlab_token)
        return Provider.GITLAB
    if _AUTHORIZATION in lowered or _PLAIN_TOKEN in lowered:
        _verify_plain(lowered, token=plain_token)
        return Provider.PLAIN
    raise WebhookUnauthorized(
        "no signature or token: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab) "
        "or Authorization: Bearer <token>"
    )


def claimed_provider(headers: Mapping[str, str]) -> Provider | None:
    """The provider a request's headers name, before any proof is checked; None for none.

    :func:`verify` recognises the provider the same way.  This answer is for counting
    and logging a delivery that is refused: it says who the request claims to be, which
    a refusal does not establish.  Headers of two providers at once name none.
    """
    lowered = _lower_keys(headers)
    github = any(name in lowered for name in (_GITHUB_EVENT, _GITHUB_SIGNATURE))
    gitlab = any(name in lowered for name in (_GITLAB_EVENT, _GITLAB_TOKEN))
    if github != gitlab:
        return Provider.GITHUB if github else Provider.GITLAB
    if not github and (_AUTHORIZATION in lowered or _PLAIN_TOKEN in lowered):
        return Provider.PLAIN
    return None


def _verify_github(headers: Mapping[str, str], body: bytes, *, secret: str | None) -> None:
    if not _configured(secret):
        raise WebhookUnauthorized(
            "GitHub webhooks are not enabled (no secret configured, or the change-me placeholder)"
        )
    signature = headers.get(_GITHUB_SIGNATURE)
    if signature is None:
        if _GITHUB_SIGNATURE_SHA1 in headers:
            raise WebhookUnauthorized(
                "X-Hub-Signature-256 missing (SHA-1 X-Hub-Signature is not accepted)"
            )
        raise WebhookUnauthorized("X-Hub-Signature-256 missing: set a secret on the webhook")
    algorithm, _, given = signature.strip().partition("=")
    if algorithm.lower() != "sha256" or not given:
        raise WebhookUnauthorized("X-Hub-Signature-256 must be 'sha256=<hex digest>'")
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    if not _equal(given.lower(), expected):
        raise WebhookUnauthorized("X-Hub-Signature-256 does not match the body")


def _verify_gitlab(headers: Mapping[str, str], *, token: str | None) -> None:
    if not _configured(token):
        raise WebhookUnauthorized(
            "GitLab webhooks are not enabled (no token configured, or the change-me placeholder)"
        )
    given = headers.get(_GITLAB_TOKEN)
    if given is None:
        raise WebhookUnauthorized("X-Gitlab-Token missing: set a secret token on the webhook")
    if not _equal(given, token):
        raise WebhookUnauthorized("X-Gitlab-Token is wrong")


def _verify_plain(headers: Mapping[str, str], *, token: str | None) -> None:
    if not _configured(token):
        raise WebhookUnauthorized(
            "plain webhooks are not enabled (no token configured, or the change-me placeholder)"
        )
    presented: list[str] = []
    authorization = headers.get(_AUTHORIZATION)
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise WebhookUnauthorized("Authorization must be 'Bearer <token>'")
        presented.append(credentials.strip())
    if _PLAIN_TOKEN in headers:
        presented.append(headers[_PLAIN_TOKEN].strip())
    # Every token presented must be right: a wrong one next to a right one is a probe.
    results = [_equal(given, token) for given in presented]
    if not all(results):
        raise WebhookUnauthorized("the webhook token is wrong")


def _configured(secret: str | None) -> TypeGuard[str]:
    return bool(secret) and secret not in _PLACEHOLDERS


def _equal(given: str, expected: str) -> bool:
    """Constant-time comparison that works for any text (compare_digest wants ASCII str)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """HTTP header names are case-insensitive; the last of repeated names wins."""
    return {str(name).lower(): value for name, value in headers.items()}


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------


def parse(
    provider: Provider,
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_bytes: int = MAX_BODY_BYTES,
) -> PushEvent | None:
    """The push in an authenticated request, or None for an event that is not a push.

    GitHub ``ping`` and other subscribed events, and GitLab hooks other than ``Push Hook``
    and ``Tag Push Hook``, return None: the endpoint acknowledges them and does nothing.
    Raises WebhookMalformed (WebhookTooLarge over ``max_bytes``) and nothing else.
    """
    _check_size(body, max_bytes)
    lowered = _lower_keys(headers)
    if provider is Provider.GITHUB:
        return _parse_github(lowered, body)
    if provider is Provider.GITLAB:
        return _parse_gitlab(lowered, body)
    return _parse_plain(lowered, body)


def _parse_github(headers: Mapping[str, str], body: bytes) -> PushEvent | None:
    event = headers.get(_GITHUB_EVENT)
    if event is None:
        raise WebhookMalformed("GitHub webhook without an X-GitHub-Event header")
    if event.strip().lower() != "push":
        return None
    where = "GitHub push"
    content_type = headers.get(_CONTENT_TYPE, "").partition(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        body = _form_payload(body, where=where)
    payload = _load_object(body, where=where)
    repository = _mapping(payload.get("repository"), where=f"{where}: repository")
    urls = _urls(repository, _GITHUB_URL_FIELDS, where=f"{where}: repository")
    after = _optional_text(payload.get("after"), where=f"{where}: after")
    deleted = _boolean(payload.get("deleted"), where=f"{where}: deleted")
    head = payload.get("head_commit")
    return _event(
        urls=urls,
        ref=_text(payload.get("ref"), where=f"{where}: ref"),
        after=after,
        deleted=deleted,
        delivery=headers.get(_GITHUB_DELIVERY),
        about=head if isinstance(head, dict) else None,
        default_branch=_optional_text(
            repository.get("default_branch"), where=f"{where}: repository.default_branch"
        ),
        where=where,
    )


def _parse_gitlab(headers: Mapping[str, str], body: bytes) -> PushEvent | None:
    event = headers.get(_GITLAB_EVENT)
    if event is None:
        raise WebhookMalformed("GitLab webhook without an X-Gitlab-Event header")
    if event.strip() not in _GITLAB_PUSH_EVENTS:
        return None
    where = f"GitLab {event.strip()}"
    payload = _load_object(body, where=where)
    project = _mapping(payload.get("project"), where=f"{where}: project")
    urls = _urls(project, _GITLAB_URL_FIELDS, where=f"{where}: project")
    # checkout_sha is the new head (null when the ref was deleted); `after` is all zeros
    # then, and older GitLab versions send only `after`.
    checkout = _optional_text(payload.get("checkout_sha"), where=f"{where}: checkout_sha")
    after = _optional_text(payload.get("after"), where=f"{where}: after")
    deleted = after is not None and _ZERO_COMMIT.fullmatch(after) is not None
    delivery = next((headers[name] for name in _GITLAB_DELIVERY if name in headers), None)
    listed = payload.get("commits")
    commits: list[Any] = listed if isinstance(listed, list) else []
    head = next((c for c in commits if isinstance(c, dict) and c.get("id") == (checkout or after)),
                commits[-1] if commits and isinstance(commits[-1], dict) else None)  # fmt: skip
    return _event(
        urls=urls,
        ref=_text(payload.get("ref"), where=f"{where}: ref"),
        after=checkout or after,
        deleted=deleted,
        delivery=delivery,
        about=head,
        default_branch=_optional_text(
            project.get("default_branch"), where=f"{where}: project.default_branch"
        ),
        where=where,
    )


def _parse_plain(headers: Mapping[str, str], body: bytes) -> PushEvent:
    where = "webhook"
    payload = _load_object(body, where=where)
    unknown = sorted(str(key) for key in payload if key not in _PLAIN_FIELDS)
    if unknown:
        raise WebhookMalformed(
            f"{where}: unknown field {_shown(unknown[0])} (expected {', '.join(_PLAIN_FIELDS)})"
        )
    repo = _text(payload.get("repo"), where=f"{where}: repo")
    ref = _text(payload.get("ref"), where=f"{where}: ref")
    if not ref.startswith("refs/"):
        ref = f"refs/heads/{ref}"  # a bare name is a branch, as `git push origin main` says
    return _event(
        urls=(redact_url(repo),),
        ref=ref,
        after=_optional_text(payload.get("commit"), where=f"{where}: commit"),
        deleted=False,
        delivery=headers.get(_PLAIN_DELIVERY),
        default_branch=_optional_text(
            payload.get("default_branch"), where=f"{where}: default_branch"
        ),
        where=where,
    )


def _event(
    *,
    urls: tuple[str, ...],
    ref: str,
    after: str | None,
    deleted: bool,
    delivery: str | None,
    default_branch: str | None,
    where: str,
    about: Mapping[str, Any] | None = None,
) -> PushEvent:
    """Assemble a PushEvent from checked fields; the ref and commit are checked here.

    ``about``: the head commit as the provider describes it (``message``, ``author``);
    what it holds is only recorded, so anything unusable in it is dropped, not refused.
    """
    if any(c.isspace() for c in ref):
        raise WebhookMalformed(f"{where}: ref {_shown(ref)}: must not contain spaces")
    branch = _ref_name(ref, "refs/heads/")
    tag = _ref_name(ref, "refs/tags/")
    commit: str | None = None
    if after is not None:
        commit = after.lower()
        if _COMMIT.fullmatch(commit) is None:
            raise WebhookMalformed(
                f"{where}: commit {_shown(after)}: expected a 40 or 64 digit hex commit id"
            )
        if _ZERO_COMMIT.fullmatch(commit):
            commit, deleted = None, True
    if default_branch is not None:
        default_branch = default_branch.removeprefix("refs/heads/")
    if delivery is not None:
        delivery = delivery.strip()
        if not delivery or len(delivery) > 200 or _CONTROL.search(delivery):
            delivery = None  # only used to correlate logs; a bad one is dropped, not fatal
    author = (about or {}).get("author")
    name = author.get("name") if isinstance(author, dict) else None
    message = (about or {}).get("message")
    return PushEvent(
        repo_urls=urls,
        ref=ref,
        branch=branch,
        tag=tag,
        commit=commit,
        delivery=delivery,
        default_branch=default_branch,
        deleted=deleted,
        author=_line_of(name, 100),
        message=_line_of(message, 200),
    )


def _line_of(value: object, limit: int) -> str | None:
    """The first line of a provider's free text, without control characters, bounded."""
    if not isinstance(value, str) or not value.strip():
        return None
    line = _CONTROL.sub("", value.strip().splitlines()[0]).strip()
    return (line if len(line) <= limit else line[: limit - 1] + "…") or None


def _ref_name(ref: str, prefix: str) -> str | None:
    name = ref.removeprefix(prefix)
    return name if name != ref and name else None


def _check_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise WebhookTooLarge(f"webhook body is {len(body)} bytes, over the {limit} byte limit")


def _form_payload(body: bytes, *, where: str) -> bytes:
    """GitHub's ``application/x-www-form-urlencoded`` content type: JSON in ``payload=``."""
    try:
        fields = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookMalformed(f"{where}: the form body cannot be decoded") from exc
    values = fields.get("payload")
    if not values or len(values) != 1:
        raise WebhookMalformed(f"{where}: the form body has no single 'payload' field")
    return values[0].encode("utf-8", "surrogatepass")


def _load_object(body: bytes, *, where: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers too long to convert.
        raise WebhookMalformed(f"{where}: the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise WebhookMalformed(f"{where}: expected a JSON object, got {_json_type(data)}")
    return data


def _mapping(value: object, *, where: str) -> dict[str, Any]:
    if value is None:
        raise WebhookMalformed(f"{where}: required")
    if not isinstance(value, dict):
        raise WebhookMalformed(f"{where}: expected an object, got {_json_type(value)}")
    return value


def _urls(block: Mapping[str, Any], fields: tuple[str, ...], *, where: str) -> tuple[str, ...]:
    """Every URL form present, redacted and deduplicated; at least one is required."""
    urls: list[str] = []
    for name in fields:
        url = _optional_text(block.get(name), where=f"{where}.{name}")
        if url is not None and redact_url(url) not in urls:
            urls.append(redact_url(url))
    if not urls:
        raise WebhookMalformed(f"{where}: no repository URL (expected one of {', '.join(fields)})")
    return tuple(urls)


def _text(value: object, *, where: str) -> str:
    """A required non-empty, bounded, printable string."""
    text = _optional_text(value, where=where)
    if text is None:
        raise WebhookMalformed(f"{where}: required")
    return text


def _optional_text(value: object, *, where: str) -> str | None:
    """Like :func:`_text`, but None when the field is absent or null."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookMalformed(f"{where}: expected a string, got {_json_type(value)}")
    if not value.strip():
        raise WebhookMalformed(f"{where}: must not be empty")
    if len(value) > MAX_FIELD_CHARS:
        raise WebhookMalformed(f"{where}: longer than {MAX_FIELD_CHARS} characters")
    if _CONTROL.search(value):
        raise WebhookMalformed(f"{where}: control characters are not allowed")
    return value


def _boolean(value: object, *, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise WebhookMalformed(f"{where}: expected true or false, got {_json_type(value)}")
    return value


def _shown(value: str) -> str:
    """A value quoted for a message, cut short and stripped of credentials."""
    text = redact_url(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return json.dumps(text)


#: Content types of a push: JSON (every provider, ``+json`` variants included) and
#: GitHub's ``application/x-www-form-urlencoded`` (JSON in ``payload=``).  A request with
#: no Content-Type, or the generic ``application/octet-stream`` that HTTP libraries send
#: for raw bytes, is read as JSON too: both say nothing about the body.
_JSON_TYPES = frozenset({"application/json", "text/json", "application/octet-stream"})
_FORM_TYPE = "application/x-www-form-urlencoded"


def check_content_type(headers: Mapping[str, str]) -> None:
    """Raise WebhookUnsupportedType (415) for a body no provider would send.

    Checked before the body is read: a multipart upload or a text body is refused
    without reading or authenticating it.
    """
    raw = _lower_keys(headers).get(_CONTENT_TYPE)
    if raw is None or not raw.strip():
        return
    media = raw.partition(";")[0].strip().lower()
    if media in _JSON_TYPES or media == _FORM_TYPE or media.endswith("+json"):
        return
    raise WebhookUnsupportedType(
        f"content type {_shown(media)} is not accepted: send application/json "
        "(GitHub: application/x-www-form-urlencoded is accepted too)"
    )


def push_identity(event: PushEvent) -> str:
    """What a push changed, as text: its repository, ref and commit, nothing else.

    Equal for every delivery of one push, whoever sends it and under whatever delivery
    id, so the endpoint can queue it once (the signature does not cover headers, so a
    delivery id proves nothing).  The repository is every URL form the push reported,
    normalised; a push without a commit (a deleted ref, a plain push that names none)
    says so, and is told apart from one that names a commit.
    """
    repos = sorted({normalise_repo(url) for url in event.repo_urls})
    commit = event.commit or ("deleted" if event.deleted else "-")
    return "\n".join([*repos, event.ref, commit])


#: Source addresses a limiter remembers at once; the least recently seen is forgotten
#: first (which only gives it a full bucket again), so memory stays bounded.
MAX_TRACKED_SOURCES = 10_000


def source_of(address: str | None) -> str:
    """The source a request is limited as: its IPv4 address, or its IPv6 /64.

    One host on IPv6 usually holds a whole /64, and could otherwise change address at
    every request.  Anything that is not an address (a Unix socket) is one source.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    """A token bucket per source: ``per_minute`` requests, refilled evenly over a minute.

    A source may send ``per_minute`` requests at once (a burst of pushes after a merge
    train), then one every ``60 / per_minute`` seconds.  Kept in the process that refuses
    (no Redis): a refusal must cost less than the request, also when Redis is slow or
    down.  Behind several webhook servers each one allows that rate.  ``now`` is a
    monotonic clock reading in seconds, passed in so the limiter stays pure.
    """

    def __init__(self, per_minute: int, *, max_sources: int = MAX_TRACKED_SOURCES) -> None:
        if per_minute < 0:
            raise ValueError(f"per_minute must be 0 (no limit) or more, not {per_minute!r}")
        self.per_minute = per_minute
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when the limit is 0: every request is allowed."""
        return self.per_minute > 0

    def allow(self, source: str, now: float) -> float:
        """0 when ``source`` may send a request now (and it is counted), else the seconds
        until it may (for ``Retry-After``)."""
        if not self.enabled:
            return 0.0
        capacity = float(self.per_minute)
        rate = capacity / 60.0
        tokens, last = self._buckets.pop(source, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - last) * rate)
        if tokens >= 1.0:
            self._buckets[source] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[source] = (tokens, now)
            wait = (1.0 - tokens) / rate
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        """``wait`` as a ``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait)))


# --------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------


def matching_applications(fleet: Fleet, event: PushEvent) -> list[str]:
    """Names of the applications ``event`` may have changed, in fleet file order.

    An application matches when its ``source.repo`` names one of the event's repositories
    (:func:`normalise_repo`) and its ``source.revision`` is the pushed branch or tag (bare
    or as ``refs/heads/``/``refs/tags/``), or ``HEAD`` and the push went to the default
    branch the provider reported (without one, ``HEAD`` applications are skipped rather
    than guessed).  A full commit id never matches: a fixed commit does not change.
    Suspended applications are included; the caller decides what to do with them.
    """
    repos = {normalise_repo(url) for url in event.repo_urls}
    wanted: set[str] = set()
    if event.branch is not None:
        wanted |= {event.branch, f"refs/heads/{event.branch}"}
        if event.default_branch is not None and event.branch == event.default_branch:
            wanted.add("HEAD")
    if event.tag is not None:
        wanted |= {event.tag, f"refs/tags/{event.tag}"}
    return [
        app.name
        for app in fleet.applications
        if app.source.revision in wanted
        and _COMMIT.fullmatch(app.source.revision.lower()) is None
        and normalise_repo(app.source.repo) in repos
    ]


def _json_type(value: object) -> str:
    return type_name(value, json_terms=True)
