"""The Git adapter against real repositories made on disk with the git CLI."""

from __future__ import annotations

import base64
import contextlib
import http.server
import multiprocessing
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from reconciler.errors import SourceError, SourceUnavailable
from reconciler.source import GitSource, check_path, default_cache_dir, redact_url
from reconciler.source.git import _Remote
from tests.gitrepo import git


def commit_files(repo: Path, files: dict[str, str], message: str = "change") -> str:
    """Write ``files`` into the work tree, commit everything, return the commit id."""
    for name, content in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit on ``main``: an app folder and a README."""
    path = tmp_path / "origin"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit_files(
        path,
        {
            "README.md": "hello\n",
            "apps/web/deploy.yaml": "kind: Deployment\n",
            "apps/web/sub/svc.yaml": "kind: Service\n",
        },
        "first",
    )
    return path


@pytest.fixture
def source(tmp_path: Path) -> GitSource:
    return GitSource(tmp_path / "cache", timeout=30, lock_timeout=30)


def test_default_cache_dir_follows_environment(tmp_path: Path) -> None:
    assert default_cache_dir({"RECONCILER_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert default_cache_dir({}) == Path(os.path.expanduser("~/.cache/reconciler"))


def test_resolves_branch_tag_head_and_short_ids(source: GitSource, repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "-a", "v1", "-m", "release")  # annotated: must be peeled
    git(repo, "tag", "light")
    second = commit_files(repo, {"apps/web/deploy.yaml": "kind: Deployment\n# 2\n"})
    url = str(repo)

    assert source.resolve(url, "main") == second
    assert source.resolve(url, "HEAD") == second
    assert source.resolve(url, "v1") == first
    assert source.resolve(url, "light") == first
    assert source.resolve(url, first) == first
    assert source.resolve(url, first[:8]) == first
    assert source.resolve(url, "refs/heads/main") == second
    assert source.resolve(f"file://{repo}", "main") == second
    mirror = source.mirror_path(url)
    assert mirror.parent == source.cache_dir / "git"
    assert mirror.name.endswith(".git") and len(mirror.name) == 16 + 4
    assert (mirror / "HEAD").is_file()
    assert source.fetch_count == 1  # the mirror was cloned once, then used as is


def test_new_commit_seen_only_after_fetch(source: GitSource, repo: Path) -> None:
    url = str(repo)
    before = source.resolve(url, "main")
    after = commit_files(repo, {"apps/web/new.yaml": "kind: ConfigMap\n"})

    assert source.resolve(url, "main") == before
    assert source.resolve(url, "main", fetch=True) == after
    assert source.fetch_count == 2
    source.fetch(url)
    assert source.fetch_count == 3


def test_deleted_branch_is_pruned(source: GitSource, repo: Path) -> None:
    git(repo, "branch", "feature")
    url = str(repo)
    source.resolve(url, "feature")
    git(repo, "branch", "-D", "feature")
    with pytest.raises(SourceError, match="unknown revision 'feature'"):
        source.resolve(url, "feature", fetch=True)


def test_read_tree_at_older_commit_without_checkout(source: GitSource, repo: Path) -> None:
    url = str(repo)
    old = source.resolve(url, "main")
    commit_files(repo, {"apps/web/deploy.yaml": "changed\n", "apps/web/extra.yaml": "x\n"})
    source.fetch(url)

    assert source.read_tree(url, old, "apps/web") == {
        "deploy.yaml": b"kind: Deployment\n",
        "sub/svc.yaml": b"kind: Service\n",
    }
    assert set(source.read_tree(url, old, "")) == {
        "README.md",
        "apps/web/deploy.yaml",
        "apps/web/sub/svc.yaml",
    }
    assert source.read_tree(url, old, "./apps/web/") == source.read_tree(url, old, "apps/web")
    assert not (source.mirror_path(url) / "apps").exists()  # bare: nothing checked out


def test_unknown_revision_names_url_and_revision(source: GitSource, repo: Path) -> None:
    with pytest.raises(SourceError) as err:
        source.resolve(str(repo), "no-such-branch")
    assert str(repo) in str(err.value) and "no-such-branch" in str(err.value)


@pytest.mark.parametrize(
    "revision", ["--upload-pack=touch", "main..other", "main@{1}", "HEAD~1", "a b", "x:y", ""]
)
def test_unsafe_revisions_refused(source: GitSource, repo: Path, revision: str) -> None:
    with pytest.raises(SourceError, match="invalid revision"):
        source.resolve(str(repo), revision)


@pytest.mark.parametrize("path", ["../etc", "apps/../../x", "/etc", "apps/..\\.."])
def test_path_escape_refused(source: GitSource, repo: Path, path: str) -> None:
    commit = source.resolve(str(repo), "main")
    with pytest.raises(SourceError):
        source.read_tree(str(repo), commit, path)


def test_check_path_normalises() -> None:
    assert check_path("") == ""
    assert check_path(".") == ""
    assert check_path("apps//web/") == "apps/web"


def test_missing_path_named(source: GitSource, repo: Path) -> None:
    commit = source.resolve(str(repo), "main")
    with pytest.raises(SourceError, match="'apps/nope' does not exist"):
        source.read_tree(str(repo), commit, "apps/nope")
    with pytest.raises(SourceError, match="not a directory"):
        source.read_tree(str(repo), commit, "README.md")


def test_symlinks_inside_repository_followed(source: GitSource, repo: Path) -> None:
    (repo / "shared").mkdir()
    (repo / "shared" / "cm.yaml").write_text("kind: ConfigMap\n")
    (repo / "apps/web/cm.yaml").symlink_to("../../shared/cm.yaml")
    (repo / "apps/web/common").symlink_to("../../shared")
    commit = commit_files(repo, {})

    tree = source.read_tree(str(repo), commit, "apps/web")
    assert tree["cm.yaml"] == b"kind: ConfigMap\n"
    assert tree["common/cm.yaml"] == b"kind: ConfigMap\n"


@pytest.mark.parametrize("target", ["../../../outside.yaml", "/etc/passwd"])
def test_symlink_escaping_repository_refused(source: GitSource, repo: Path, target: str) -> None:
    (repo / "apps/web/evil.yaml").symlink_to(target)
    commit = commit_files(repo, {})
    with pytest.raises(SourceError, match=r"apps/web/evil\.yaml.*leaves the repository"):
        source.read_tree(str(repo), commit, "apps/web")


def test_symlink_loop_refused(source: GitSource, repo: Path) -> None:
    (repo / "apps/web/loop").symlink_to("..")
    commit = commit_files(repo, {})
    with pytest.raises(SourceError, match="symlink loop"):
        source.read_tree(str(repo), commit, "apps/web")


def test_oversized_file_refused(source: GitSource, repo: Path) -> None:
    commit = commit_files(repo, {"apps/web/big.yaml": "#" * (4 * 1024 * 1024 + 1)})
    with pytest.raises(SourceError, match=r"apps/web/big\.yaml: file is \d+ bytes"):
        source.read_tree(str(repo), commit, "apps/web")


def test_export_writes_whole_tree(source: GitSource, repo: Path, tmp_path: Path) -> None:
    (repo / "apps/web/link.yaml").symlink_to("deploy.yaml")
    commit = commit_files(repo, {})
    dest = tmp_path / "export"
    dest.mkdir()
    source.export(str(repo), commit, dest)
    assert (dest / "README.md").read_text() == "hello\n"
    assert (dest / "apps/web/sub/svc.yaml").read_text() == "kind: Service\n"
    assert (dest / "apps/web/link.yaml").is_symlink()
    assert (dest / "apps/web/link.yaml").read_text() == "kind: Deployment\n"


def test_ext_transport_refused_and_nothing_runs(source: GitSource, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    urls = ("ext::sh -c touch% /tmp/pwned", f"ext::sh -c touch% {marker}", "fd::17", "x::y")
    for url in urls:
        with pytest.raises(SourceError, match="refused"):
            source.fetch(url)
    with pytest.raises(SourceError, match="scheme"):
        source.fetch(f"ext://sh -c touch {marker}")
    assert not marker.exists()
    assert not (source.cache_dir / "git").exists()  # refused before any git ran


def test_url_starting_with_dash_refused(source: GitSource) -> None:
    with pytest.raises(SourceError, match="may not start with '-'"):
        source.fetch("--upload-pack=touch /tmp/pwned")
    with pytest.raises(SourceError, match="may not start with '-'"):
        source.fetch("ssh://-oProxyCommand=touch/x.git")


def test_unreachable_server_is_transient(source: GitSource) -> None:
    with pytest.raises(SourceUnavailable) as err:
        source.resolve("http://127.0.0.1:1/x.git", "main")
    assert err.value.retryable
    assert "http://127.0.0.1:1/x.git" in str(err.value)


def test_missing_local_repository_is_permanent(source: GitSource, tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        source.fetch(str(tmp_path / "nope"))
    assert not isinstance(err.value, SourceUnavailable)
    assert not list((source.cache_dir / "git").glob("*.git"))  # no half-made mirror left


def test_credentials_never_in_messages(tmp_path: Path) -> None:
    source = GitSource(
        tmp_path / "cache", timeout=30, environ={"RECONCILER_GIT_TOKEN": "t0ken-secret"}
    )
    url = "https://user:s3cret@127.0.0.1:1/x.git"
    with pytest.raises(SourceUnavailable) as err:
        source.fetch(url)
    assert "s3cret" not in str(err.value)
    assert "https://127.0.0.1:1/x.git" in str(err.value)
    with pytest.raises(SourceUnavailable) as err:
        source.fetch("https://127.0.0.1:1/y.git")
    assert "t0ken-secret" not in str(err.value)
    assert redact_url(url) == "https://127.0.0.1:1/x.git"
    assert redact_url("git@github.com:org/repo.git") == "github.com:org/repo.git"
    assert redact_url("user:pass@host:org/repo.git") == "host:org/repo.git"
    assert source.mirror_path(url) == source.mirror_path("https://127.0.0.1:1/x.git")


def test_mirror_config_holds_no_credentials(tmp_path: Path, repo: Path) -> None:
    # A file:// URL has no userinfo to test with, so check the stored URL is the clean one.
    source = GitSource(tmp_path / "cache")
    source.fetch(f"file://{repo}")
    config = (source.mirror_path(f"file://{repo}") / "config").read_text()
    assert f"url = file://{repo}" in config
    assert "hooksPath" not in config


def _fetch_in_process(cache: str, url: str, queue: multiprocessing.Queue[str]) -> None:
    try:
        source = GitSource(cache, timeout=60, lock_timeout=60)
        source.fetch(url)
        queue.put(source.resolve(url, "main"))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(f"error: {exc!r}")


def test_concurrent_fetches_share_one_valid_mirror(tmp_path: Path, repo: Path) -> None:
    for index in range(20):
        commit_files(repo, {f"apps/many/f{index}.yaml": f"n: {index}\n"})
    expected = git(repo, "rev-parse", "HEAD")
    cache = str(tmp_path / "cache")
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = context.Queue()
    workers = [
        context.Process(target=_fetch_in_process, args=(cache, str(repo), queue)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert results == [expected] * len(workers)
    mirror = GitSource(cache).mirror_path(str(repo))
    subprocess.run(["git", "--git-dir", str(mirror), "fsck", "--strict"], check=True)
    assert [p.name for p in (tmp_path / "cache" / "git").iterdir() if p.is_dir()] == [mirror.name]


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """Asks for Basic auth; answers 404 once given ``user:s3cret`` (records what it saw)."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        header = self.headers.get("Authorization", "")
        type(self).seen.append(header)
        if header == "Basic " + base64.b64encode(b"user:s3cret").decode():
            self.send_response(404)
        else:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``host:port`` of a local HTTP server run by ``handler`` in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth_server() -> Iterator[str]:
    _AuthHandler.seen = []
    with _serving(_AuthHandler) as address:
        yield address


def test_credentials_reach_server_through_askpass_only(tmp_path: Path, auth_server: str) -> None:
    source = GitSource(tmp_path / "cache", timeout=30)
    with pytest.raises(SourceError) as err:
        source.fetch(f"http://user:s3cret@{auth_server}/x.git")
    assert not isinstance(err.value, SourceUnavailable)  # the server answered: permanent
    assert "s3cret" not in str(err.value)
    expected = "Basic " + base64.b64encode(b"user:s3cret").decode()
    assert expected in _AuthHandler.seen  # given to git by askpass, not in the URL
    assert not list((tmp_path / "cache" / "git").glob("*.git"))


def test_environment_token_not_sent_over_plain_http(tmp_path: Path, auth_server: str) -> None:
    source = GitSource(tmp_path / "cache", timeout=30, environ={"RECONCILER_GIT_TOKEN": "tok"})
    with pytest.raises(SourceError, match="could not read Username"):
        source.fetch(f"http://{auth_server}/x.git")
    assert all(not header for header in _AuthHandler.seen)


def test_mirror_names_normalise_urls(source: GitSource) -> None:
    same = [
        "https://GitHub.com/org/repo.git",
        "https://github.com/org/repo",
        "https://token:x@github.com/org/repo.git/",
    ]
    assert len({source.mirror_path(url) for url in same}) == 1
    assert source.mirror_path("git@github.com:org/repo.git") == source.mirror_path(
        "ssh://git@github.com/org/repo"
    )
    assert source.mirror_path("https://github.com/org/other") != source.mirror_path(same[0])


def test_read_trees_matches_read_tree_path_by_path(
    source: GitSource, repo: Path, tmp_path: Path
) -> None:
    (repo / "shared").mkdir()
    (repo / "shared/cm.yaml").write_text("kind: ConfigMap\n")
    (repo / "apps/web/common").symlink_to("../../shared")
    (repo / "apps/bad").mkdir()
    (repo / "apps/bad/evil.yaml").symlink_to(tmp_path / "outside.yaml")
    commit = commit_files(repo, {})
    url = str(repo)
    paths = ["apps/web", "", "apps/web/sub", "apps/bad", "missing", "README.md"]
    trees = source.read_trees(url, commit, paths)
    assert list(trees) == paths
    for path in paths:
        got = trees[path]
        try:
            expected = source.read_tree(url, commit, path)
        except SourceError as exc:
            assert isinstance(got, SourceError), path
            assert str(got) == str(exc)
        else:
            assert got == expected, path
    assert trees["apps/web"]["common/cm.yaml"] == b"kind: ConfigMap\n"
    assert "leaves the repository" in str(trees["apps/bad"])


# -- the network side on GitPython: its guards, and nothing inherited reaching git ---------


def _unchecked_remote(fetch_url: str) -> _Remote:
    """A remote as if ``_parse_remote`` had let ``fetch_url`` through: GitPython's turn."""
    return _Remote(fetch_url, "crafted", fetch_url, "file", "", None, None)


def _nothing_made(source: GitSource) -> bool:
    return not (source.cache_dir / "git").exists()


@pytest.mark.parametrize(
    ("url", "check"),
    [
        ("ext::sh -c touch% {marker}", "unsafe-protocol"),
        ("--upload-pack=touch {marker}", "unsafe-option"),
    ],
)
def test_gitpython_guards_refuse_before_any_git_runs(
    source: GitSource, tmp_path: Path, url: str, check: str
) -> None:
    marker = tmp_path / "pwned"
    remote = _unchecked_remote(url.format(marker=marker))
    with pytest.raises(SourceError, match=f"refused by GitPython's {check} check"):
        source._fetch(remote, source._mirror(remote))
    assert not marker.exists()
    assert _nothing_made(source)  # refused before a lock, a staging mirror or a git


@pytest.mark.parametrize(
    "name", ["GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_SSL_NO_VERIFY", "GIT_QUARANTINE_PATH"]
)
def test_inherited_variable_git_obeys_whatever_its_value_stops_the_fetch(
    source: GitSource, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, str(tmp_path))
    with pytest.raises(SourceError, match=f"{name} is set in the reconciler's environment"):
        source.fetch(str(repo))
    assert _nothing_made(source)


def test_inherited_repository_variables_do_not_redirect_the_mirror(
    source: GitSource, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy.git"
    git(tmp_path, "init", "-q", "--bare", str(decoy))
    expected = git(repo, "rev-parse", "HEAD")
    with monkeypatch.context() as env:
        # Where `git init --bare` (no directory argument, as GitPython runs it) and
        # `git fetch` would otherwise write: the decoy.
        env.setenv("GIT_DIR", str(decoy))
        env.setenv("GIT_OBJECT_DIRECTORY", str(decoy / "objects"))
        env.setenv("GIT_INDEX_FILE", str(decoy / "index"))
        env.setenv("GIT_NAMESPACE", "elsewhere")
        assert source.resolve(str(repo), "main", fetch=True) == expected
    mirror = source.mirror_path(str(repo))
    assert git(mirror, "--git-dir", str(mirror), "rev-parse", "refs/heads/main") == expected
    assert git(decoy, "--git-dir", str(decoy), "for-each-ref") == ""
    assert "origin" not in (decoy / "config").read_text()
    assert not list((decoy / "objects").glob("??"))


def test_inherited_configuration_does_not_reconfigure_git(
    source: GitSource, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    git(decoy, "init", "-q", "-b", "main")
    decoy_commit = commit_files(decoy, {"apps/web/deploy.yaml": "kind: Decoy\n"})
    expected = git(repo, "rev-parse", "HEAD")
    marker = tmp_path / "pwned"
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    exec_path = tmp_path / "exec-path"  # where git looks for git-upload-pack first
    exec_path.mkdir()
    for program in (hooks / "reference-transaction", exec_path / "git-upload-pack"):
        program.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
        program.chmod(0o755)
    templates = tmp_path / "templates"  # `git init` copies a template's config
    templates.mkdir()
    redirect = f'[url "file://{decoy}"]\n\tinsteadOf = file://{repo}\n'
    (templates / "config").write_text(redirect)
    url = f"file://{repo}"
    with monkeypatch.context() as env:
        env.setenv("GIT_CONFIG_COUNT", "2")
        env.setenv("GIT_CONFIG_KEY_0", f"url.file://{decoy}.insteadOf")
        env.setenv("GIT_CONFIG_VALUE_0", url)
        env.setenv("GIT_CONFIG_KEY_1", "core.hooksPath")
        env.setenv("GIT_CONFIG_VALUE_1", str(hooks))
        env.setenv("GIT_CONFIG_PARAMETERS", f"'url.file://{decoy}.insteadof'='{url}'")
        env.setenv("GIT_TEMPLATE_DIR", str(templates))
        env.setenv("GIT_CONFIG_GLOBAL", str(templates / "config"))
        env.setenv("GIT_EXEC_PATH", str(exec_path))
        env.setenv("GIT_ALLOW_PROTOCOL", "ext")
        assert source.resolve(url, "main", fetch=True) == expected
    assert source.resolve(url, "main") != decoy_commit
    assert not marker.exists()
    assert "insteadOf" not in (source.mirror_path(url) / "config").read_text()


def test_inherited_askpass_never_runs(
    source: GitSource, auth_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "askpass-ran"
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\ntouch {marker}\necho user\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("GIT_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    with pytest.raises(SourceError, match="could not read Username"):
        source.fetch(f"http://{auth_server}/x.git")
    assert not marker.exists()
    assert all(not header for header in _AuthHandler.seen)


def test_inherited_environment_never_reaches_git_helpers(
    source: GitSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``ssh`` records the environment git gives it, then fails to connect."""
    dump = tmp_path / "ssh-env"
    marker = tmp_path / "pwned"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(
        f'#!/bin/sh\necho "$@" > {dump}.args\nenv > {dump}\n'
        "echo 'ssh: connect to host example.invalid port 22: Connection refused' >&2\nexit 255\n"
    )
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECONCILER_GIT_TOKEN", "t0ken-from-environment")
    monkeypatch.setenv("RECONCILER_GIT_PASSWORD", "passw0rd-from-environment")
    monkeypatch.setenv("GIT_SSH_COMMAND", f"touch {marker}; ssh")
    monkeypatch.setenv("GIT_SSH", str(fake_ssh))
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.sshCommand")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", f"touch {marker}; ssh")
    monkeypatch.setenv("GIT_TRACE", str(tmp_path / "trace"))
    with pytest.raises(SourceUnavailable) as err:
        source.fetch("ssh://git@example.invalid/org/repo.git")
    assert "ssh: connect to host" in str(err.value)  # git's whole stderr was classified
    seen = dump.read_text()
    assert "-o BatchMode=yes" in Path(f"{dump}.args").read_text()  # our ssh command
    assert "t0ken-from-environment" not in seen and "passw0rd-from-environment" not in seen
    assert "RECONCILER_GIT_TOKEN=\n" in seen  # present only as an empty override
    assert "t0ken-from-environment" not in str(err.value)
    assert not marker.exists()
    assert not (tmp_path / "trace").exists()


class _GitHTTPHandler(http.server.BaseHTTPRequestHandler):
    """Smart HTTP through ``git http-backend``, for ``user:s3cret`` only."""

    root: ClassVar[Path]
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        header = self.headers.get("Authorization", "")
        type(self).seen.append(header)
        if header != "Basic " + base64.b64encode(b"user:s3cret").decode():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
            "REQUEST_METHOD": self.command, "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }  # fmt: skip
        out = subprocess.run(
            ["git", "http-backend"], input=body, env=env, capture_output=True, check=True
        ).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def git_http_server(repo: Path) -> Iterator[str]:
    _GitHTTPHandler.root = repo.parent
    _GitHTTPHandler.seen = []
    with _serving(_GitHTTPHandler) as address:
        yield f"{address}/{repo.name}"


def test_authenticated_fetch_keeps_the_secret_out_of_the_mirror(
    tmp_path: Path, repo: Path, git_http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_GIT_TOKEN", "t0ken-from-environment")  # https only
    source = GitSource(tmp_path / "cache", timeout=30)
    url = f"http://user:s3cret@{git_http_server}"
    assert source.resolve(url, "main", fetch=True) == git(repo, "rev-parse", "HEAD")
    expected = "Basic " + base64.b64encode(b"user:s3cret").decode()
    assert expected in _GitHTTPHandler.seen  # given to git by askpass, not in the URL
    mirror = source.mirror_path(url)
    assert f"url = http://{git_http_server}\n" in (mirror / "config").read_text()
    for path in mirror.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"s3cret" not in content and b"t0ken-from-environment" not in content, path


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """Accepts one connection and never answers; the event is set once it is closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    closed = threading.Event()

    def hold() -> None:
        conn, _ = listener.accept()
        with conn:
            while conn.recv(65536):
                pass
        closed.set()

    threading.Thread(target=hold, daemon=True).start()
    yield f"127.0.0.1:{listener.getsockname()[1]}", closed
    listener.close()


def test_fetch_timeout_is_transient_and_kills_the_helpers(
    tmp_path: Path, silent_server: tuple[str, threading.Event]
) -> None:
    address, closed = silent_server
    source = GitSource(tmp_path / "cache", timeout=1)
    with pytest.raises(SourceUnavailable, match=r"x\.git: git fetch timed out after 1s"):
        source.fetch(f"http://{address}/x.git")
    assert closed.wait(30)  # git-remote-http, which held the connection, was killed too
    assert not [p for p in (tmp_path / "cache" / "git").iterdir() if p.is_dir()]
