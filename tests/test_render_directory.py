"""Directory sources: which files are read (recurse, include, exclude) as Argo CD reads them."""

from __future__ import annotations

import pytest

from reconciler.errors import RenderError
from reconciler.render import DirectoryOptions, EmptyRender, render
from reconciler.render.plain import glob_match

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"

TREE = {
    name: CM.format(name=name.replace("/", "-").rsplit(".", 1)[0]).encode()
    for name in (
        "config.json",
        "deployment.yaml",
        "service.yml",
        "env-usw2/settings.yaml",
        "env-euw1/settings.yaml",
        "env-euw1/deep/extra.yaml",
    )
}
TREE["config.json"] = b'{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config"}}'
TREE["README.md"] = b"# not a manifest\n"
TREE["scripts/render.sh"] = b"#!/bin/sh\n"


def names(options: DirectoryOptions | None) -> list[str]:
    objects = render(TREE, path="apps/web", directory=options)
    return [o.manifest["metadata"]["name"] for o in objects]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (None, ["config", "deployment", "env-euw1-deep-extra", "env-euw1-settings",
                "env-usw2-settings", "service"]),
        (DirectoryOptions(recurse=False), ["config", "deployment", "service"]),
        (DirectoryOptions(include="*.yaml"),  # "*" crosses "/", as in Argo CD
         ["deployment", "env-euw1-deep-extra", "env-euw1-settings", "env-usw2-settings"]),
        (DirectoryOptions(recurse=False, include="*.yaml"), ["deployment"]),
        (DirectoryOptions(exclude="env-euw1/*"),
         ["config", "deployment", "env-usw2-settings", "service"]),
        (DirectoryOptions(include="{config.json,env-usw2/*}"), ["config", "env-usw2-settings"]),
        (DirectoryOptions(include="{*.yml,*.json}", exclude="config.json"), ["service"]),
        (DirectoryOptions(exclude="{env-*,service.yml}"), ["config", "deployment"]),
        (DirectoryOptions(include="env-[!u]*/settings.yaml"), ["env-euw1-settings"]),
    ],
)  # fmt: skip
def test_recurse_include_exclude(options: DirectoryOptions | None, expected: list[str]) -> None:
    assert names(options) == expected


def test_objects_name_their_repository_file() -> None:
    objects = render(TREE, path="apps/web/", directory=DirectoryOptions(recurse=False))
    assert [o.where for o in objects] == [
        "apps/web/config.json:1",
        "apps/web/deployment.yaml:1",
        "apps/web/service.yml:1",
    ]
    root = render({"a.yaml": CM.format(name="a").encode()}, path=".")
    assert root[0].where == "a.yaml:1"


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.yaml", "a.yaml", True),
        ("*.yaml", "sub/a.yaml", True),
        ("*.yaml", "a.yml", False),
        ("sub/*", "sub/deep/a.yaml", True),
        ("**/*.yaml", "sub/a.yaml", True),
        ("?.yaml", "a.yaml", True),
        ("?.yaml", "ab.yaml", False),
        ("[ab].yaml", "b.yaml", True),
        ("[!ab].yaml", "b.yaml", False),
        ("[a-c].yaml", "c.yaml", True),
        ("{a,b}.yaml", "b.yaml", True),
        ("{a,b}.yaml", "c.yaml", False),
        ("{a.yaml,sub/{x,y}.yaml}", "sub/y.yaml", True),
        ("{a.yaml,sub/{x,y}.yaml}", "sub/z.yaml", False),
        ("{,pre-}a.yaml", "a.yaml", True),
        ("\\*.yaml", "*.yaml", True),
        ("\\*.yaml", "a.yaml", False),
        ("a.yaml", "a.yaml", True),
        ("a.yaml", "xa.yaml", False),
        ("a,b.yaml", "a,b.yaml", True),  # outside braces a comma is a comma
        ("a(b).yaml", "a(b).yaml", True),
    ],
)
def test_glob_matches_as_argo_cd(pattern: str, path: str, matches: bool) -> None:
    assert glob_match(pattern, path) is matches


@pytest.mark.parametrize("pattern", ["{a,b", "[ab", "a\\"])
def test_invalid_glob_is_an_error(pattern: str) -> None:
    with pytest.raises(RenderError, match=r"^glob "):
        glob_match(pattern, "a.yaml")


@pytest.mark.parametrize(
    ("files", "options", "message"),
    [
        ({}, None,
         "apps/web: no manifests found (looked for *.yaml, *.yml, *.json; the path holds no "
         "files)"),
        ({"README.md": b"x", "notes.txt": b"y"}, None,
         "apps/web: no manifests found (looked for *.yaml, *.yml, *.json; 2 other files "
         "present)"),
        ({"sub/a.yaml": CM.format(name="a").encode()}, DirectoryOptions(recurse=False),
         "apps/web: no manifests found (looked for *.yaml, *.yml, *.json in the top folder; "
         "1 manifest files left out by these options)"),
        ({"a.yaml": CM.format(name="a").encode()}, DirectoryOptions(include="*.json"),
         "apps/web: no manifests found (looked for *.yaml, *.yml, *.json matching include "
         "'*.json'; 1 manifest files left out by these options)"),
        ({"a.yaml": b"# all commented out\n", "b.yaml": b"---\n"}, None,
         "apps/web: no objects found (looked for *.yaml, *.yml, *.json; 2 files hold no "
         "documents)"),
        ({"chart/Chart.yaml": b"name: x\n", "chart/templates/x.tpl": b""},
         DirectoryOptions(exclude="chart/*"),
         "apps/web: no manifests found (looked for *.yaml, *.yml, *.json not matching exclude "
         "'chart/*'; 1 manifest files left out by these options; a Helm chart in chart: point "
         "path at it)"),
    ],
)  # fmt: skip
def test_empty_directory_says_what_was_looked_for(
    files: dict[str, bytes], options: DirectoryOptions | None, message: str
) -> None:
    with pytest.raises(EmptyRender) as err:
        render(files, path="apps/web", directory=options)
    assert str(err.value) == message


def test_hidden_files_and_folders_are_never_read() -> None:
    files = {".github/workflow.yaml": b"on: push\n", "a.yaml": CM.format(name="a").encode()}
    assert [o.manifest["metadata"]["name"] for o in render(files)] == ["a"]
