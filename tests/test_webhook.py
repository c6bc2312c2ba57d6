"""Tests of Git push webhooks: tables over trimmed real payloads in ``tests/data/webhook/``.

Authentication, parsing, URL normalisation and matching are pure, so every case is a row:
headers and body in, a provider, an event, an error or a list of application names out.
Property tests check that no bytes, headers or URL make them raise anything unplanned.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import PermanentError
from reconciler.fleet import Fleet, parse_fleet
from reconciler.webhook import (
    MAX_BODY_BYTES,
    Provider,
    PushEvent,
    WebhookError,
    WebhookMalformed,
    WebhookTooLarge,
    WebhookUnauthorized,
    matching_applications,
    normalise_repo,
    parse,
    verify,
)

DATA = Path(__file__).parent / "data" / "webhook"
GITHUB_SECRET = "gh-s3cret-It's-long"
GITLAB_TOKEN = "gl-t0ken-9f8e7d"
PLAIN_TOKEN = "plain-t0ken-c4b3"
SECRETS: dict[str, str | None] = {
    "github_secret": GITHUB_SECRET,
    "gitlab_token": GITLAB_TOKEN,
    "plain_token": PLAIN_TOKEN,
}
NO_SECRETS: dict[str, str | None] = {
    "github_secret": None,
    "gitlab_token": None,
    "plain_token": None,
}

GITHUB_URLS = (
    "https://github.com/Acme/Platform-Apps.git",
    "git@github.com:Acme/Platform-Apps.git",
    "git://github.com/Acme/Platform-Apps.git",
    "https://github.com/Acme/Platform-Apps",
)
GITLAB_URLS = (
    "https://gitlab.acme.example/Platform/infra/fleet-manifests.git",
    "git@gitlab.acme.example:Platform/infra/fleet-manifests.git",
    "https://gitlab.acme.example/Platform/infra/fleet-manifests",
)


def body_of(name: str) -> bytes:
    return (DATA / name).read_bytes()


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(
    body: bytes, *, event: str = "push", secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }


def gitlab_headers(*, event: str = "Push Hook", token: str = GITLAB_TOKEN) -> dict[str, str]:
    return {
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e",
        "Content-Type": "application/json",
    }


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return parse_fleet(body_of("fleet.yaml"), source="fleet.yaml", base_dir="/fleet")


# --------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------

PUSH = body_of("github-push.json")

VERIFY_OK: list[tuple[str, dict[str, str], Provider]] = [
    ("github", github_headers(PUSH), Provider.GITHUB),
    (
        "github header names in any case",
        {k.lower(): v for k, v in github_headers(PUSH).items()},
        Provider.GITHUB,
    ),
    (
        "github upper-case hex digest",
        {**github_headers(PUSH), "X-Hub-Signature-256": "sha256=" + sign(PUSH)[7:].upper()},
        Provider.GITHUB,
    ),
    ("gitlab", gitlab_headers(), Provider.GITLAB),
    ("gitlab header names in any case", {"x-gitlab-token": GITLAB_TOKEN}, Provider.GITLAB),
    ("plain bearer", {"Authorization": f"Bearer {PLAIN_TOKEN}"}, Provider.PLAIN),
    ("plain bearer scheme in any case", {"authorization": f"bearer {PLAIN_TOKEN}"}, Provider.PLAIN),
    ("plain header", {"X-Reconciler-Token": PLAIN_TOKEN}, Provider.PLAIN),
    (
        "plain both, both right",
        {"X-Reconciler-Token": PLAIN_TOKEN, "Authorization": f"Bearer {PLAIN_TOKEN}"},
        Provider.PLAIN,
    ),
]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [case[1:] for case in VERIFY_OK],
    ids=[case[0] for case in VERIFY_OK],
)
def test_verify_accepts(headers: dict[str, str], expected: Provider) -> None:
    assert verify(headers, PUSH, **SECRETS) is expected


VERIFY_REFUSED: list[tuple[str, dict[str, str], dict[str, str | None], str]] = [
    ("no headers at all", {}, SECRETS, "no signature or token"),
    ("unrelated headers only", {"Content-Type": "application/json"}, SECRETS, "no signature"),
    (
        "github signature missing",
        {"X-GitHub-Event": "push"},
        SECRETS,
        "X-Hub-Signature-256 missing",
    ),
    (
        "github sha1 signature only",
        {"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=0123"},
        SECRETS,
        "SHA-1",
    ),
    (
        "github signature of another body",
        {**github_headers(b"{}")},
        SECRETS,
        "does not match",
    ),
    (
        "github signature with another secret",
        github_headers(PUSH, secret="not-the-secret"),
        SECRETS,
        "does not match",
    ),
    (
        "github signature without algorithm",
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(PUSH)[7:]},
        SECRETS,
        "sha256=<hex digest>",
    ),
    (
        "github signature with wrong algorithm",
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha1=" + sign(PUSH)[7:]},
        SECRETS,
        "sha256=<hex digest>",
    ),
    (
        "github signature empty",
        {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256="},
        SECRETS,
        "sha256=<hex digest>",
    ),
    (
        "github secret not configured",
        github_headers(PUSH),
        {**SECRETS, "github_secret": None},
        "GitHub webhooks are not enabled",
    ),
    (
        "github secret configured empty",
        github_headers(PUSH, secret=""),
        {**SECRETS, "github_secret": ""},
        "GitHub webhooks are not enabled",
    ),
    (
        "github secret left at the .env.example placeholder",
        github_headers(PUSH, secret="change-me"),
        {**SECRETS, "github_secret": "change-me"},
        "GitHub webhooks are not enabled",
    ),
    (
        "gitlab token left at the .env.example placeholder",
        gitlab_headers(token="change-me"),
        {**SECRETS, "gitlab_token": "change-me"},
        "GitLab webhooks are not enabled",
    ),
    (
        "plain token left at the .env.example placeholder",
        {"Authorization": "Bearer change-me"},
        {**SECRETS, "plain_token": "change-me"},
        "plain webhooks are not enabled",
    ),
    ("gitlab token wrong", gitlab_headers(token="nope"), SECRETS, "X-Gitlab-Token is wrong"),
    (
        "gitlab token with a non-ASCII character",
        gitlab_headers(token=GITLAB_TOKEN + "é"),
        SECRETS,
        "X-Gitlab-Token is wrong",
    ),
    ("gitlab token missing", {"X-Gitlab-Event": "Push Hook"}, SECRETS, "X-Gitlab-Token missing"),
    (
        "gitlab token not configured",
        gitlab_headers(),
        {**SECRETS, "gitlab_token": None},
        "GitLab webhooks are not enabled",
    ),
    (
        "gitlab token sent to a github-only installation",
        gitlab_headers(token=GITHUB_SECRET),
        {**NO_SECRETS, "github_secret": GITHUB_SECRET},
        "GitLab webhooks are not enabled",
    ),
    (
        "github and gitlab headers at once",
        {**github_headers(PUSH), **gitlab_headers()},
        SECRETS,
        "both GitHub and GitLab",
    ),
    ("plain token wrong", {"X-Reconciler-Token": "nope"}, SECRETS, "token is wrong"),
    ("plain bearer wrong", {"Authorization": "Bearer nope"}, SECRETS, "token is wrong"),
    (
        "plain one right one wrong",
        {"X-Reconciler-Token": PLAIN_TOKEN, "Authorization": "Bearer nope"},
        SECRETS,
        "token is wrong",
    ),
    (
        "plain basic auth",
        {"Authorization": "Basic dXNlcjpwYXNz"},
        SECRETS,
        "Authorization must be 'Bearer <token>'",
    ),
    ("plain bearer empty", {"Authorization": "Bearer "}, SECRETS, "Bearer <token>"),
    (
        "plain token not configured",
        {"Authorization": f"Bearer {PLAIN_TOKEN}"},
        {**SECRETS, "plain_token": None},
        "plain webhooks are not enabled",
    ),
    (
        "a plain token cannot stand in for a github signature",
        {"X-GitHub-Event": "push", "Authorization": f"Bearer {PLAIN_TOKEN}"},
        SECRETS,
        "X-Hub-Signature-256 missing",
    ),
]


@pytest.mark.parametrize(
    ("headers", "secrets", "fragment"),
    [case[1:] for case in VERIFY_REFUSED],
    ids=[case[0] for case in VERIFY_REFUSED],
)
def test_verify_refuses(headers: dict[str, str], secrets: dict[str, Any], fragment: str) -> None:
    with pytest.raises(WebhookUnauthorized) as info:
        verify(headers, PUSH, **secrets)
    message = str(info.value)
    assert fragment in message
    assert info.value.status == 401
    for secret in (GITHUB_SECRET, GITLAB_TOKEN, PLAIN_TOKEN, sign(PUSH)[7:]):
        assert secret not in message


def test_verify_refuses_oversized_body_before_any_hmac() -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    with pytest.raises(WebhookTooLarge) as info:
        verify(github_headers(body), body, **SECRETS)
    assert info.value.status == 413


def test_errors_carry_http_status_and_are_permanent() -> None:
    assert (WebhookUnauthorized.status, WebhookMalformed.status, WebhookTooLarge.status) == (
        401,
        400,
        413,
    )
    assert issubclass(WebhookTooLarge, WebhookMalformed)
    assert issubclass(WebhookError, PermanentError)
    assert not WebhookError("x").retryable


# --------------------------------------------------------------------------------------
# parse
# --------------------------------------------------------------------------------------

GITHUB_DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
PARSED: list[tuple[str, Provider, dict[str, str], bytes, PushEvent]] = [
    (
        "github push to the default branch",
        Provider.GITHUB,
        github_headers(PUSH),
        PUSH,
        PushEvent(
            repo_urls=GITHUB_URLS,
            ref="refs/heads/main",
            branch="main",
            tag=None,
            commit="9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01",
            delivery=GITHUB_DELIVERY,
            default_branch="main",
            author="Mona Lisa",
            message="guestbook: bump web to 1.4.2",
        ),
    ),
    (
        "github push creating a branch with a slash, upper-case commit id",
        Provider.GITHUB,
        github_headers(body_of("github-push-feature.json")),
        body_of("github-push-feature.json"),
        PushEvent(
            repo_urls=GITHUB_URLS,
            ref="refs/heads/feature/canary",
            branch="feature/canary",
            tag=None,
            commit="b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0",
            delivery=GITHUB_DELIVERY,
            default_branch="main",
        ),
    ),
    (
        "github tag push",
        Provider.GITHUB,
        github_headers(body_of("github-tag-push.json")),
        body_of("github-tag-push.json"),
        PushEvent(
            repo_urls=GITHUB_URLS,
            ref="refs/tags/v1.4.0",
            branch=None,
            tag="v1.4.0",
            commit="9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01",
            delivery=GITHUB_DELIVERY,
            default_branch="main",
            message="guestbook: bump web to 1.4.2",
        ),
    ),
    (
        "github branch deletion",
        Provider.GITHUB,
        github_headers(body_of("github-branch-delete.json")),
        body_of("github-branch-delete.json"),
        PushEvent(
            repo_urls=GITHUB_URLS,
            ref="refs/heads/feature/canary",
            branch="feature/canary",
            tag=None,
            commit=None,
            delivery=GITHUB_DELIVERY,
            default_branch="main",
            deleted=True,
        ),
    ),
    (
        "github form-encoded payload",
        Provider.GITHUB,
        {
            **github_headers(b""),
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        },
        urlencode({"payload": PUSH.decode()}).encode(),
        PushEvent(
            repo_urls=GITHUB_URLS,
            ref="refs/heads/main",
            branch="main",
            tag=None,
            commit="9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01",
            delivery=GITHUB_DELIVERY,
            default_branch="main",
            author="Mona Lisa",
            message="guestbook: bump web to 1.4.2",
        ),
    ),
    (
        "gitlab push",
        Provider.GITLAB,
        gitlab_headers(),
        body_of("gitlab-push.json"),
        PushEvent(
            repo_urls=GITLAB_URLS,
            ref="refs/heads/release",
            branch="release",
            tag=None,
            commit="da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            delivery="13792a34-cac6-4fda-95a8-c58e00a3954e",
            default_branch="release",
            author="John Smith",
            message="monitoring: raise retention to 15d",
        ),
    ),
    (
        "gitlab tag push, idempotency key preferred as delivery id",
        Provider.GITLAB,
        {**gitlab_headers(event="Tag Push Hook"), "Idempotency-Key": "f0e1d2c3"},
        body_of("gitlab-tag-push.json"),
        PushEvent(
            repo_urls=GITLAB_URLS,
            ref="refs/tags/v2.0.0",
            branch=None,
            tag="v2.0.0",
            commit="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
            delivery="f0e1d2c3",
            default_branch="release",
        ),
    ),
    (
        "gitlab branch deletion",
        Provider.GITLAB,
        gitlab_headers(),
        body_of("gitlab-branch-delete.json"),
        PushEvent(
            repo_urls=GITLAB_URLS,
            ref="refs/heads/hotfix",
            branch="hotfix",
            tag=None,
            commit=None,
            delivery="13792a34-cac6-4fda-95a8-c58e00a3954e",
            default_branch="release",
            deleted=True,
        ),
    ),
    (
        "plain push with a bare branch name",
        Provider.PLAIN,
        {"X-Request-Id": "req-1"},
        body_of("plain-push.json"),
        PushEvent(
            repo_urls=("ssh://git@git.internal.example:2222/ops/manifests.git",),
            ref="refs/heads/main",
            branch="main",
            tag=None,
            commit=None,
            delivery="req-1",
        ),
    ),
    (
        "plain push with full ref, commit, default branch; credentials redacted",
        Provider.PLAIN,
        {},
        json.dumps(
            {
                "repo": "https://x-token:hunter2@git.internal.example/ops/manifests.git",
                "ref": "refs/tags/v3",
                "commit": "A" * 40,
                "default_branch": "refs/heads/main",
            }
        ).encode(),
        PushEvent(
            repo_urls=("https://***@git.internal.example/ops/manifests.git",),
            ref="refs/tags/v3",
            branch=None,
            tag="v3",
            commit="a" * 40,
            delivery=None,
            default_branch="main",
        ),
    ),
    (
        "a ref that is neither a branch nor a tag",
        Provider.PLAIN,
        {},
        b'{"repo": "/srv/git/apps", "ref": "refs/notes/commits"}',
        PushEvent(
            repo_urls=("/srv/git/apps",),
            ref="refs/notes/commits",
            branch=None,
            tag=None,
            commit=None,
            delivery=None,
        ),
    ),
    (
        "a delivery id with control characters is dropped, not fatal",
        Provider.PLAIN,
        {"X-Request-Id": "a\nb"},
        b'{"repo": "/srv/git/apps", "ref": "main"}',
        PushEvent(
            repo_urls=("/srv/git/apps",),
            ref="refs/heads/main",
            branch="main",
            tag=None,
            commit=None,
            delivery=None,
        ),
    ),
]


@pytest.mark.parametrize(
    ("provider", "headers", "body", "expected"),
    [case[1:] for case in PARSED],
    ids=[case[0] for case in PARSED],
)
def test_parse(
    provider: Provider, headers: dict[str, str], body: bytes, expected: PushEvent
) -> None:
    assert parse(provider, headers, body) == expected


IGNORED: list[tuple[str, Provider, dict[str, str], bytes]] = [
    (
        "github ping",
        Provider.GITHUB,
        github_headers(b"", event="ping"),
        body_of("github-ping.json"),
    ),
    ("github issues event", Provider.GITHUB, github_headers(b"", event="issues"), b"{}"),
    (
        "gitlab merge request hook",
        Provider.GITLAB,
        gitlab_headers(event="Merge Request Hook"),
        b"not even json",
    ),
]


@pytest.mark.parametrize(
    ("provider", "headers", "body"),
    [case[1:] for case in IGNORED],
    ids=[case[0] for case in IGNORED],
)
def test_parse_ignores_events_other_than_push(
    provider: Provider, headers: dict[str, str], body: bytes
) -> None:
    assert parse(provider, headers, body) is None


def _github_with(**changes: Any) -> bytes:
    payload = json.loads(PUSH)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = payload
        for parent in parents:
            target = target[parent]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return json.dumps(payload).encode()


_DELETE = object()
GH = github_headers(b"")
GL = gitlab_headers()

MALFORMED: list[tuple[str, Provider, dict[str, str], bytes, str]] = [
    ("empty body", Provider.GITHUB, GH, b"", "not valid JSON"),
    ("truncated JSON", Provider.GITHUB, GH, PUSH[:200], "not valid JSON"),
    ("not UTF-8", Provider.GITLAB, GL, b'{"ref": "\xff"}', "not valid JSON"),
    ("deeply nested", Provider.PLAIN, {}, b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ("huge integer", Provider.PLAIN, {}, b'{"repo": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ("JSON array", Provider.GITHUB, GH, b"[1, 2]", "expected a JSON object, got an array"),
    ("JSON string", Provider.PLAIN, {}, b'"main"', "expected a JSON object, got a string"),
    (
        "github without X-GitHub-Event",
        Provider.GITHUB,
        {},
        PUSH,
        "without an X-GitHub-Event header",
    ),
    (
        "github repository missing",
        Provider.GITHUB,
        GH,
        _github_with(repository=_DELETE),
        "GitHub push: repository: required",
    ),
    (
        "github repository not an object",
        Provider.GITHUB,
        GH,
        _github_with(repository="Acme/Platform-Apps"),
        "repository: expected an object, got a string",
    ),
    (
        "github without any URL",
        Provider.GITHUB,
        GH,
        json.dumps({"ref": "refs/heads/main", "repository": {"name": "x"}}).encode(),
        "no repository URL (expected one of clone_url, ssh_url, git_url, html_url)",
    ),
    (
        "github clone_url a number",
        Provider.GITHUB,
        GH,
        _github_with(repository__clone_url=42),
        "repository.clone_url: expected a string, got a number",
    ),
    (
        "github ref missing",
        Provider.GITHUB,
        GH,
        _github_with(ref=_DELETE),
        "GitHub push: ref: required",
    ),
    (
        "github ref null",
        Provider.GITHUB,
        GH,
        _github_with(ref=None),
        "GitHub push: ref: required",
    ),
    ("github ref empty", Provider.GITHUB, GH, _github_with(ref=""), "ref: must not be empty"),
    (
        "github ref with a space",
        Provider.GITHUB,
        GH,
        _github_with(ref="refs/heads/a b"),
        "must not contain spaces",
    ),
    (
        "github ref with control characters",
        Provider.GITHUB,
        GH,
        _github_with(ref="refs/heads/a\u0000"),
        "control characters",
    ),
    (
        "github ref too long",
        Provider.GITHUB,
        GH,
        _github_with(ref="refs/heads/" + "a" * 5000),
        "longer than 4096",
    ),
    (
        "github after not a commit id",
        Provider.GITHUB,
        GH,
        _github_with(after="HEAD~1"),
        "expected a 40 or 64 digit hex commit id",
    ),
    (
        "github deleted a string",
        Provider.GITHUB,
        GH,
        _github_with(deleted="no"),
        "deleted: expected true or false, got a string",
    ),
    (
        "github default_branch a list",
        Provider.GITHUB,
        GH,
        _github_with(repository__default_branch=["main"]),
        "repository.default_branch: expected a string, got an array",
    ),
    (
        "github form body without payload",
        Provider.GITHUB,
        {**GH, "Content-Type": "application/x-www-form-urlencoded"},
        b"other=1",
        "no single 'payload' field",
    ),
    (
        "github form body not decodable",
        Provider.GITHUB,
        {**GH, "Content-Type": "application/x-www-form-urlencoded"},
        b"payload=\xff",
        "cannot be decoded",
    ),
    (
        "gitlab without X-Gitlab-Event",
        Provider.GITLAB,
        {"X-Gitlab-Token": GITLAB_TOKEN},
        body_of("gitlab-push.json"),
        "without an X-Gitlab-Event header",
    ),
    (
        "gitlab project missing",
        Provider.GITLAB,
        GL,
        b'{"ref": "refs/heads/main", "after": null}',
        "GitLab Push Hook: project: required",
    ),
    (
        "gitlab checkout_sha an object",
        Provider.GITLAB,
        GL,
        json.dumps(
            {**json.loads(body_of("gitlab-push.json")), "checkout_sha": {"id": "x"}}
        ).encode(),
        "checkout_sha: expected a string, got an object",
    ),
    ("plain repo missing", Provider.PLAIN, {}, b'{"ref": "main"}', "webhook: repo: required"),
    ("plain ref missing", Provider.PLAIN, {}, b'{"repo": "/srv/git/a"}', "webhook: ref: required"),
    (
        "plain repo a list",
        Provider.PLAIN,
        {},
        b'{"repo": ["/srv/git/a"], "ref": "main"}',
        "webhook: repo: expected a string, got an array",
    ),
    (
        "plain unknown field",
        Provider.PLAIN,
        {},
        b'{"repository": "/srv/git/a", "ref": "main"}',
        'unknown field "repository" (expected repo, ref, commit, default_branch)',
    ),
    (
        "plain commit abbreviated",
        Provider.PLAIN,
        {},
        b'{"repo": "/srv/git/a", "ref": "main", "commit": "abc1234"}',
        "expected a 40 or 64 digit hex commit id",
    ),
]


@pytest.mark.parametrize(
    ("provider", "headers", "body", "fragment"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_parse_refuses_malformed(
    provider: Provider, headers: dict[str, str], body: bytes, fragment: str
) -> None:
    with pytest.raises(WebhookMalformed) as info:
        parse(provider, headers, body)
    assert fragment in str(info.value)
    assert info.value.status == 400


def test_parse_messages_never_show_credentials() -> None:
    body = b'{"repository": "https://user:hunter2@git.example/a", "ref": "main"}'
    with pytest.raises(WebhookMalformed) as info:
        parse(Provider.PLAIN, {}, body)
    assert "hunter2" not in str(info.value)


def test_parse_size_limit() -> None:
    body = b'{"repo": "/srv/git/a", "ref": "main"' + b" " * MAX_BODY_BYTES + b"}"
    with pytest.raises(WebhookTooLarge) as info:
        parse(Provider.PLAIN, {}, body)
    assert info.value.status == 413
    assert f"over the {MAX_BODY_BYTES} byte limit" in str(info.value)
    small = b'{"repo": "/srv/git/a", "ref": "main"}'
    assert parse(Provider.PLAIN, {}, small, max_bytes=len(small)) is not None
    with pytest.raises(WebhookTooLarge):
        parse(Provider.PLAIN, {}, small, max_bytes=len(small) - 1)


# --------------------------------------------------------------------------------------
# normalise_repo
# --------------------------------------------------------------------------------------

NORMALISED: list[tuple[str, str]] = [
    ("https://github.com/org/repo", "https://github.com/org/repo"),
    ("https://github.com/org/repo.git", "https://github.com/org/repo"),
    ("https://github.com/org/repo/", "https://github.com/org/repo"),
    ("https://github.com/org/repo.git/", "https://github.com/org/repo"),
    ("  https://github.com/org/repo\n", "https://github.com/org/repo"),
    ("https://GitHub.COM/Org/Repo", "https://github.com/org/repo"),
    ("HTTPS://github.com/org/repo", "https://github.com/org/repo"),
    ("http://github.com/org/repo", "https://github.com/org/repo"),
    ("https://x-access-token:abc@github.com/org/repo", "https://github.com/org/repo"),
    ("https://token@github.com/org/repo", "https://github.com/org/repo"),
    ("https://github.com:443/org/repo", "https://github.com/org/repo"),
    ("https://github.com//org///repo", "https://github.com/org/repo"),
    ("https://github.com/./org/repo", "https://github.com/org/repo"),
    ("ssh://git@github.com/org/repo.git", "https://github.com/org/repo"),
    ("ssh://git@github.com:22/org/repo.git", "https://github.com/org/repo"),
    ("ssh://git@github.com:org/repo.git", "https://github.com/org/repo"),
    ("git+ssh://git@github.com/org/repo", "https://github.com/org/repo"),
    ("git://github.com/org/repo.git", "https://github.com/org/repo"),
    ("git@github.com:org/repo.git", "https://github.com/org/repo"),
    ("git@github.com:org/repo", "https://github.com/org/repo"),
    ("github.com:org/repo", "https://github.com/org/repo"),
    ("git@GitHub.com:/org/repo.git/", "https://github.com/org/repo"),
    ("git@gitlab.example:group/sub/project.git", "https://gitlab.example/group/sub/project"),
    ("ssh://git@gitlab.example:2222/group/sub/project", "https://gitlab.example/group/sub/project"),
    ("git@[::1]:org/repo.git", "https://[::1]/org/repo"),
    ("ssh://git@[::1]:2222/org/repo", "https://[::1]/org/repo"),
    ("https://host", "https://host"),
    ("/srv/git/apps", "file:///srv/git/apps"),
    ("/srv/git/apps.git", "file:///srv/git/apps"),
    ("/srv/git/apps/.git", "file:///srv/git/apps"),
    ("/srv/git/apps/", "file:///srv/git/apps"),
    ("/srv/git/../git/Apps", "file:///srv/git/Apps"),
    ("file:///srv/git/apps.git", "file:///srv/git/apps"),
    ("file://localhost/srv/git/apps", "file:///srv/git/apps"),
    ("FILE:///srv/git/apps", "file:///srv/git/apps"),
    ("./apps:v2", "file://" + os.path.join(os.getcwd(), "apps:v2")),
    ("relative/apps", "file://" + os.path.join(os.getcwd(), "relative/apps")),
    ("~/git/apps", "file://" + os.path.join(os.path.expanduser("~"), "git/apps")),
]


@pytest.mark.parametrize(("url", "expected"), NORMALISED, ids=[case[0] for case in NORMALISED])
def test_normalise_repo(url: str, expected: str) -> None:
    assert normalise_repo(url) == expected
    assert normalise_repo(expected) == expected


DIFFERENT: list[tuple[str, str]] = [
    ("https://github.com/org/repo", "https://github.com/org/repo2"),
    ("https://github.com/org/repo", "https://gitlab.com/org/repo"),
    ("https://github.com/org/repo", "/github.com/org/repo"),
    ("https://github.com/org/repo", "https://github.com/other/repo"),
    ("/srv/git/Apps", "/srv/git/apps"),
]


@pytest.mark.parametrize(("one", "other"), DIFFERENT)
def test_normalise_repo_keeps_different_repositories_apart(one: str, other: str) -> None:
    assert normalise_repo(one) != normalise_repo(other)


_HOST = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}\.){0,2}[A-Za-z]{2,6}", fullmatch=True)
_SEGMENT = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,12}", fullmatch=True)


@given(
    host=_HOST,
    segments=st.lists(_SEGMENT, min_size=1, max_size=4),
    user=st.sampled_from(["", "git@", "token@", "user:pw@"]),
    port=st.sampled_from(["", ":22", ":443", ":2222"]),
    suffix=st.sampled_from(["", ".git", "/", ".git/"]),
)
def test_normalise_repo_every_spelling_agrees(
    host: str, segments: list[str], user: str, port: str, suffix: str
) -> None:
    path = "/".join(segments)
    spellings = [
        f"https://{user}{host}{port}/{path}{suffix}",
        f"ssh://{user}{host}{port}/{path}{suffix}",
        f"git://{host}{port}/{path}{suffix}",
        # git reads user:pw@host:path as host "user" (and the fleet file refuses it).
        f"{user.replace('user:pw@', 'git@')}{host}:{path}{suffix}",
        f"https://{host.upper()}/{path.upper()}",
    ]
    identities = {normalise_repo(url) for url in spellings}
    assert len(identities) == 1
    (identity,) = identities
    assert normalise_repo(identity) == identity


@given(st.text())
def test_normalise_repo_never_raises(url: str) -> None:
    assert isinstance(normalise_repo(url), str)


# --------------------------------------------------------------------------------------
# matching_applications
# --------------------------------------------------------------------------------------

MATCHED: list[tuple[str, Provider, dict[str, str], bytes, list[str]]] = [
    (
        "github push to main: main, HEAD (main is the default) and the suspended one",
        Provider.GITHUB,
        github_headers(PUSH),
        PUSH,
        ["guestbook", "guestbook-head", "guestbook-paused"],
    ),
    (
        "github push to a feature branch: only the app following it, not HEAD",
        Provider.GITHUB,
        github_headers(body_of("github-push-feature.json")),
        body_of("github-push-feature.json"),
        ["guestbook-canary"],
    ),
    (
        "github tag push: the app pinned to the tag; the commit-pinned one never",
        Provider.GITHUB,
        github_headers(body_of("github-tag-push.json")),
        body_of("github-tag-push.json"),
        ["guestbook-release"],
    ),
    (
        "github branch deletion: still reported, the caller sees event.deleted",
        Provider.GITHUB,
        github_headers(body_of("github-branch-delete.json")),
        body_of("github-branch-delete.json"),
        ["guestbook-canary"],
    ),
    (
        "gitlab push to the default branch",
        Provider.GITLAB,
        gitlab_headers(),
        body_of("gitlab-push.json"),
        ["monitoring", "monitoring-head"],
    ),
    (
        "gitlab tag push matched against refs/tags/ spelling",
        Provider.GITLAB,
        gitlab_headers(event="Tag Push Hook"),
        body_of("gitlab-tag-push.json"),
        ["monitoring-v2"],
    ),
    (
        "gitlab push to another branch",
        Provider.GITLAB,
        gitlab_headers(),
        body_of("gitlab-branch-delete.json"),
        [],
    ),
    (
        "plain push: default branch unknown, so HEAD is skipped",
        Provider.PLAIN,
        {},
        body_of("plain-push.json"),
        ["internal"],
    ),
    (
        "plain push naming the default branch: HEAD included",
        Provider.PLAIN,
        {},
        b'{"repo": "git@git.internal.example:ops/manifests", "ref": "main",'
        b' "default_branch": "main"}',
        ["internal", "internal-head"],
    ),
    (
        "plain push to an unknown repository",
        Provider.PLAIN,
        {},
        b'{"repo": "https://git.internal.example/ops/other", "ref": "main"}',
        [],
    ),
]


@pytest.mark.parametrize(
    ("provider", "headers", "body", "expected"),
    [case[1:] for case in MATCHED],
    ids=[case[0] for case in MATCHED],
)
def test_matching_applications(
    fleet: Fleet, provider: Provider, headers: dict[str, str], body: bytes, expected: list[str]
) -> None:
    event = parse(provider, headers, body)
    assert event is not None
    assert matching_applications(fleet, event) == expected


def test_matching_head_needs_the_default_branch(fleet: Fleet) -> None:
    base = PushEvent(
        repo_urls=("https://github.com/acme/platform-apps",),
        ref="refs/heads/main",
        branch="main",
        tag=None,
        commit=None,
        delivery=None,
    )
    without = matching_applications(fleet, base)
    assert "guestbook-head" not in without
    assert "guestbook" in without
    other = PushEvent(**{**base.__dict__, "default_branch": "develop"})
    assert "guestbook-head" not in matching_applications(fleet, other)
    same = PushEvent(**{**base.__dict__, "default_branch": "main"})
    assert "guestbook-head" in matching_applications(fleet, same)


def test_matching_never_triggers_a_fixed_commit(fleet: Fleet) -> None:
    commit = "9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01"
    event = PushEvent(
        repo_urls=GITHUB_URLS,
        ref=f"refs/heads/{commit}",
        branch=commit,
        tag=None,
        commit=commit,
        delivery=None,
    )
    assert "guestbook-pinned" not in matching_applications(fleet, event)


# --------------------------------------------------------------------------------------
# Whatever arrives, only the webhook errors come out
# --------------------------------------------------------------------------------------

_PROVIDER_HEADERS = st.sampled_from(
    [
        (Provider.GITHUB, github_headers(b"")),
        (
            Provider.GITHUB,
            {**github_headers(b""), "Content-Type": "application/x-www-form-urlencoded"},
        ),
        (Provider.GITLAB, gitlab_headers()),
        (Provider.GITLAB, gitlab_headers(event="Tag Push Hook")),
        (Provider.PLAIN, {}),
    ]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(provider_headers=_PROVIDER_HEADERS, body=st.binary(max_size=2048))
def test_parse_of_any_bytes_raises_only_webhook_errors(
    provider_headers: tuple[Provider, dict[str, str]], body: bytes
) -> None:
    provider, headers = provider_headers
    try:
        event = parse(provider, headers, body)
    except WebhookMalformed:
        return
    assert event is None or isinstance(event, PushEvent)


_FIELDS = st.sampled_from(
    [
        "ref",
        "after",
        "deleted",
        "checkout_sha",
        "repo",
        "commit",
        "default_branch",
        "repository",
        "project",
    ]
)

_NESTED_FIELDS = st.sampled_from(
    ["clone_url", "ssh_url", "git_url", "git_http_url", "git_ssh_url", "default_branch"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    provider_headers=_PROVIDER_HEADERS,
    base=st.sampled_from(["github-push.json", "gitlab-push.json", "plain-push.json"]),
    changes=st.dictionaries(_FIELDS, _JSON, max_size=3),
    nested=st.dictionaries(_NESTED_FIELDS, _JSON, max_size=3),
)
def test_parse_of_mangled_payloads_raises_only_webhook_errors(
    provider_headers: tuple[Provider, dict[str, str]],
    base: str,
    changes: dict[str, Any],
    nested: dict[str, Any],
) -> None:
    provider, headers = provider_headers
    payload = json.loads(body_of(base))
    payload.update(changes)
    for block in ("repository", "project"):
        if isinstance(payload.get(block), dict):
            payload[block].update(nested)
    body = json.dumps(payload).encode()
    if "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        body = urlencode({"payload": body.decode()}).encode()
    try:
        event = parse(provider, headers, body)
    except WebhookMalformed:
        return
    if event is not None:
        assert event.repo_urls
        assert event.branch is None or event.tag is None
        assert event.commit is None or len(event.commit) in (40, 64)


_HEADER_NAMES = st.sampled_from(
    [
        "X-GitHub-Event",
        "X-Hub-Signature-256",
        "X-Hub-Signature",
        "X-Gitlab-Event",
        "X-Gitlab-Token",
        "Authorization",
        "X-Reconciler-Token",
        "Content-Type",
    ]
)


@settings(max_examples=300)
@given(
    headers=st.dictionaries(_HEADER_NAMES, st.text(max_size=80), max_size=5),
    body=st.binary(max_size=256),
    configured=st.booleans(),
)
def test_verify_of_any_headers_raises_only_unauthorized(
    headers: dict[str, str], body: bytes, configured: bool
) -> None:
    secrets = SECRETS if configured else NO_SECRETS
    try:
        provider = verify(headers, body, **secrets)
    except WebhookUnauthorized:
        return
    # Random text cannot guess a secret: only a configured provider with no check to
    # fail could have let it through, and there is none.
    pytest.fail(f"accepted as {provider}: {headers!r}")
