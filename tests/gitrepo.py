"""Real Git repositories on disk for tests: the git CLI, a fixed author, no user config."""

from __future__ import annotations

import os
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    """Run the git CLI in ``repo`` as a person would; its stdout, stripped."""
    result = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


@dataclass
class GitRepo:
    """A repository that tests write files to and commit."""

    path: Path

    def git(self, *args: str) -> str:
        return git(self.path, *args)

    def write(self, name: str, text: str) -> GitRepo:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
        return self

    def remove(self, name: str) -> GitRepo:
        self.git("rm", "-q", "-r", name)
        return self

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")
