"""One repository-URL type: parsed once, the same answer for the fleet, Git, Redis and webhooks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import SourceError
from reconciler.fleet import redact_url as fleet_redact_url
from reconciler.repourl import Form, RepoURL, identity, redact_url
from reconciler.source import GitSource
from reconciler.source import redact_url as source_redact_url
from reconciler.store.keys import repo_hash, without_userinfo
from reconciler.webhook import normalise_repo

PARSED: list[tuple[str, Form, str, str, str, str, str | None, bool]] = [
    # text, form, scheme, host, port, path, user, has_password
    ("https://github.com/org/repo.git", Form.URL, "https", "github.com", "", "/org/repo.git",
     None, False),
    ("https://tok@GitHub.com:8443/org/repo", Form.URL, "https", "github.com", "8443",
     "/org/repo", "tok", False),
    ("https://u:p@ss@h/r?x=1", Form.URL, "https", "h", "", "/r", "u", True),
    ("ssh://git@[::1]:2222/org/repo", Form.URL, "ssh", "[::1]", "2222", "/org/repo", "git",
     False),
    ("git@github.com:org/repo.git", Form.SCP, "ssh", "github.com", "", "org/repo.git", "git",
     False),
    ("user:pass@host:org/repo.git", Form.SCP, "ssh", "host", "", "org/repo.git", "user", True),
    ("u:p@ss@host:org/repo", Form.SCP, "ssh", "host", "", "org/repo", "u", True),
    ("github.com:org/repo", Form.SCP, "ssh", "github.com", "", "org/repo", None, False),
    ("ext::sh -c touch% /tmp/x", Form.TRANSPORT, "", "", "", "ext::sh -c touch% /tmp/x", None,
     False),
    ("/srv/git/apps", Form.LOCAL, "file", "", "", "/srv/git/apps", None, False),
    ("./apps:v2", Form.LOCAL, "file", "", "", "./apps:v2", None, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "form", "scheme", "host", "port", "path", "user", "has_password"),
    PARSED,
    ids=[case[0] for case in PARSED],
)
def test_parse(
    text: str, form: Form, scheme: str, host: str, port: str, path: str, user: str | None,
    has_password: bool,
) -> None:  # fmt: skip
    url = RepoURL.parse(text)
    assert (url.form, url.scheme, url.host, url.port, url.path, url.user) == (
        form, scheme, host, port, path, user,
    )  # fmt: skip
    assert url.has_password is has_password
    assert "pass" not in repr(url) and ":p@" not in repr(url)


@pytest.mark.parametrize(
    ("text", "redacted", "fetch"),
    [
        ("user:pass@host:org/repo.git", "***@host:org/repo.git", "user@host:org/repo.git"),
        ("https://u:s3cret@h/r.git", "https://***@h/r.git", "https://h/r.git"),
        ("https://tok@h/r.git", "https://***@h/r.git", "https://h/r.git"),
        ("ssh://git:pw@h:22/r", "ssh://***@h:22/r", "ssh://git@h:22/r"),
        ("ssh://git@h:22/r", "ssh://git@h:22/r", "ssh://git@h:22/r"),
        ("git@h:org/r", "git@h:org/r", "git@h:org/r"),
        ("HTTPS://tok@Host/x", "HTTPS://***@Host/x", "https://host/x"),
        ("file:///srv/x/../y", "file:///srv/x/../y", "file:///srv/y"),
    ],
)
def test_redacted_and_fetch_url_never_carry_the_password(
    text: str, redacted: str, fetch: str
) -> None:
    url = RepoURL.parse(text)
    assert url.redacted == redacted
    assert url.fetch_url == fetch
    # The fleet file's messages and the Git source's show the same parse: one with the
    # secret marked, one with no userinfo at all (as Redis keys hash it).
    assert redact_url(text) == fleet_redact_url(text) == redacted
    assert source_redact_url(text) == without_userinfo(text) == url.without_userinfo
    assert "@" not in source_redact_url(text)


def test_scp_like_password_is_redacted_everywhere() -> None:
    text = "user:pass@host:org/repo.git"
    assert "pass" not in source_redact_url(text)
    assert "pass" not in without_userinfo(text)
    assert repo_hash(text) == repo_hash("host:org/repo.git")


SAME_REPOSITORY = [
    "https://github.com/org/repo",
    "https://github.com/org/repo.git",
    "git@github.com:org/repo.git",
    "ssh://git@github.com:22/org/repo",
    "https://x-access-token:abc@github.com/Org/Repo/",
]


def test_every_spelling_has_one_identity() -> None:
    assert {identity(url) for url in SAME_REPOSITORY} == {"https://github.com/org/repo"}
    assert normalise_repo is identity  # the webhook matcher uses this very function


def test_key_keeps_what_distinguishes_fetch_addresses() -> None:
    assert RepoURL.parse("https://tok@GitHub.com/org/repo.git/").key == (
        "https://github.com/org/repo"
    )
    assert RepoURL.parse("git@github.com:org/repo.git").key == "ssh://github.com/org/repo"
    assert RepoURL.parse("https://h/Org/R").key != RepoURL.parse("https://h/org/r").key
    assert RepoURL.parse("https://h:8443/r").key != RepoURL.parse("https://h/r").key


def test_git_source_refuses_scp_password_and_bad_port(tmp_path: Path) -> None:
    source = GitSource(tmp_path / "cache")
    with pytest.raises(SourceError, match=r"^\*\*\*@host:org/repo\.git: an SSH address") as err:
        source.fetch("user:s3cr3t@host:org/repo.git")
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(SourceError, match="'org' is not a port number"):
        source.fetch("ssh://git@host:org/repo.git")


_SECRET = st.from_regex(r"[A-Za-z0-9]{8,16}", fullmatch=True).map(lambda s: f"S3{s}")
_WORD = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    user=_WORD,
    secret=_SECRET,
    host=_WORD,
    path=st.lists(_WORD, min_size=1, max_size=3).map("/".join),
    shape=st.sampled_from(
        ["https://{u}:{p}@{h}/{path}", "ssh://{u}:{p}@{h}:22/{path}", "{u}:{p}@{h}:{path}",
         "http://{u}:{p}@{h}:8080/{path}.git", "git://{u}:{p}@{h}/{path}"]
    ),
)  # fmt: skip
def test_no_rendering_leaks_a_password(
    user: str, secret: str, host: str, path: str, shape: str
) -> None:
    text = shape.format(u=user, p=secret, h=host, path=path)
    url = RepoURL.parse(text)
    assert url.has_password and url.password == secret
    for shown in (url.redacted, url.fetch_url, url.key, url.identity, url.without_userinfo):
        assert secret not in shown


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.text())
def test_parse_never_raises_and_renderings_are_strings(text: str) -> None:
    url = RepoURL.parse(text)
    assert isinstance(url.redacted, str) and isinstance(url.identity, str)
    assert isinstance(url.without_userinfo, str) and isinstance(url.key, str)
    if url.password:
        assert f":{url.password}@" not in url.redacted
