"""Jsonnet applications evaluated by Google's Jsonnet, imports confined to the repository."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import RenderError
from reconciler.render import (
    EmptyRender,
    JsonnetArg,
    JsonnetOptions,
    RenderedObject,
    SourceKind,
    detect,
    render,
)
from reconciler.render.jsonnet import error_message

REPO = Path(__file__).parent / "data" / "render" / "jsonnet"
GUESTBOOK = "apps/guestbook"
OPTIONS = JsonnetOptions(
    tlas={"env": JsonnetArg("prod"), "replicas": JsonnetArg("1 + 2", code=True)},
    ext_vars={
        "region": JsonnetArg("eu-west-1"),
        "features": JsonnetArg("['search', 'cart']", code=True),
    },
    libs=("lib",),
)


def files_under(repo: Path, path: str) -> dict[str, bytes]:
    base = repo / path
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def copier(repo: Path) -> Callable[[Path], None]:
    def copy(dest: Path) -> None:
        shutil.copytree(repo, dest, dirs_exist_ok=True, symlinks=True)

    return copy


def render_app(
    path: str, options: JsonnetOptions | None = OPTIONS, *, repo: Path = REPO
) -> list[RenderedObject]:
    return render(files_under(repo, path), path=path, materialise=copier(repo), jsonnet=options)


def inline(source: str, options: JsonnetOptions | None = None) -> list[RenderedObject]:
    return render({"main.jsonnet": source.encode()}, path="apps/x", jsonnet=options)


def test_detected_from_top_level_entry_points() -> None:
    assert detect(files_under(REPO, GUESTBOOK)) is SourceKind.JSONNET
    assert detect({"lib.libsonnet": b"{}"}) is SourceKind.DIRECTORY
    assert detect({"sub/app.jsonnet": b"{}"}) is SourceKind.DIRECTORY


def test_entry_points_with_tlas_ext_vars_and_libs() -> None:
    objects = render_app(GUESTBOOK)
    assert [(o.source, o.manifest["metadata"]["name"], o.index, o.item) for o in objects] == [
        ("apps/guestbook/list.jsonnet", "listed-a", 0, 0),
        ("apps/guestbook/list.jsonnet", "listed-b", 0, 1),
        ("apps/guestbook/main.jsonnet", "guestbook-prod", 0, None),  # TLA string
        ("apps/guestbook/main.jsonnet", "guestbook-region", 1, None),
        ("apps/guestbook/main.jsonnet", "guestbook-features", 2, None),
    ]
    deployment, region, features = (o.manifest for o in objects[2:])
    assert deployment["spec"]["replicas"] == 3  # TLA code
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/guestbook:1.2.0"  # params.libsonnet, beside main
    assert region["data"] == {"region": "eu-west-1"}  # extVar string
    assert features["data"] == {"search": "on", "cart": "on"}  # extVar code


def test_library_needs_its_path() -> None:
    with pytest.raises(RenderError) as err:
        render_app(GUESTBOOK, JsonnetOptions(tlas=OPTIONS.tlas, ext_vars=OPTIONS.ext_vars))
    assert str(err.value).startswith(
        'apps/guestbook/list.jsonnet:1: couldn\'t open import "k8s.libsonnet": '
        "no match locally or in the Jsonnet library paths"
    )


def test_later_library_paths_win(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for lib, value in (("one", "first"), ("two", "second")):
        (repo / lib).mkdir(parents=True)
        (repo / lib / "v.libsonnet").write_text(f"'{value}'")
    (repo / "app").mkdir()
    (repo / "app" / "main.jsonnet").write_text(
        "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: import 'v.libsonnet'}}"
    )
    objects = render_app("app", JsonnetOptions(libs=("one", "two")), repo=repo)
    assert objects[0].manifest["metadata"]["name"] == "second"


def test_error_names_file_and_line() -> None:
    options = JsonnetOptions(ext_vars={"env": JsonnetArg("dev")}, libs=("lib",))
    with pytest.raises(RenderError) as err:
        render_app("apps/broken", options)
    # The innermost frame first, then the frames that led there, as Jsonnet traces them.
    assert str(err.value).startswith(
        "apps/broken/main.jsonnet:5: unknown environment dev (from apps/broken/main.jsonnet:7, "
        "lib/k8s.libsonnet:"
    )


@pytest.mark.parametrize(
    ("source", "options", "message"),
    [
        ("{\n  a: nosuch,\n}", None, r"^apps/x/main\.jsonnet:2: Unknown variable: nosuch$"),
        ("std.extVar('missing')", None,
         r"^apps/x/main\.jsonnet:1: undefined external variable: missing$"),
        ("function(replicas) {}", JsonnetOptions(tlas={"replicas": JsonnetArg("3 +", code=True)}),
         r"^apps/x/main\.jsonnet: tla:replicas:1: "),
        ("function(env) {}", None, r"^apps/x/main\.jsonnet: .*parameter env not bound"),
        ("std.parseInt('x')", None, r"^apps/x/main\.jsonnet:1: x is not a base 10 integer$"),
    ],
)  # fmt: skip
def test_errors_start_with_the_repository_file(
    source: str, options: JsonnetOptions | None, message: str
) -> None:
    with pytest.raises(RenderError, match=message):
        inline(source, options)


def test_error_message_strips_stdlib_frames() -> None:
    text = (
        "RUNTIME ERROR: zz is not a base 10 integer\n\tstd.jsonnet:(93:7)-(94:31)\tfunction <f>\n"
        "\tlib/k.libsonnet:1:10-25\tfunction <anonymous>\n\tapps/web/m.jsonnet:1:1-31\t\n"
    )
    known = {"apps/web/m.jsonnet", "lib/k.libsonnet"}
    assert error_message(text, entry="apps/web/m.jsonnet", known=known) == (
        "lib/k.libsonnet:1: zz is not a base 10 integer (from apps/web/m.jsonnet:1)"
    )


def test_import_leaving_the_repository_is_refused() -> None:
    with pytest.raises(RenderError) as err:
        render_app("apps/escape", JsonnetOptions())
    assert str(err.value).startswith(
        'apps/escape/main.jsonnet:1: couldn\'t open import "../../../outside.libsonnet": '
        "outside the repository, refused"
    )


@pytest.mark.parametrize("target", ["/etc/hostname", "../../../../../../etc/hostname"])
def test_import_of_a_file_outside_is_refused(target: str) -> None:
    with pytest.raises(RenderError, match="outside the repository, refused"):
        inline(f"importstr '{target}'")


def test_symlink_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "token.libsonnet").write_text("'s3cr3t'")
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "vendor").symlink_to(secret, target_is_directory=True)
    (repo / "app" / "main.jsonnet").write_text(
        "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'x'},"
        " data: {t: import 'token.libsonnet'}}"
    )
    with pytest.raises(RenderError, match="outside the repository, refused"):
        render_app("app", JsonnetOptions(libs=("vendor",)), repo=repo)


def test_library_path_leaving_the_repository_is_refused() -> None:
    with pytest.raises(RenderError, match=r"^apps/x: jsonnet library path '\.\./\.\./x' leaves"):
        inline("{}", JsonnetOptions(libs=("../../x",)))


CM = "{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: '%s'}}"


@pytest.mark.parametrize(
    ("source", "names"),
    [
        (CM % "one", ["one"]),
        (f"[{CM % 'a'}, {CM % 'b'}]", ["a", "b"]),
        (f"[[{CM % 'a'}], [[{CM % 'b'}], []], {CM % 'c'}]", ["a", "b", "c"]),
        (f"{{apiVersion: 'v1', kind: 'List', items: [{CM % 'a'}, {CM % 'b'}]}}", ["a", "b"]),
        (f"[{CM % 'a'}, {{apiVersion: 'v1', kind: 'List', items: [{CM % 'b'}]}}]", ["a", "b"]),
    ],
)
def test_output_object_array_nested_arrays_and_list(source: str, names: list[str]) -> None:
    assert [o.manifest["metadata"]["name"] for o in inline(source)] == names


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (f"[{CM % 'a'}, 'text']", r"^apps/x/main\.jsonnet:1: output item 2 is a string"),
        ("{kind: 'ConfigMap', metadata: {name: 'a'}}",
         r"^apps/x/main\.jsonnet:1: output item 1 has no apiVersion$"),
        ("{deployment: {}, service: {}}", r"output item 1 has no apiVersion"),
    ],
)  # fmt: skip
def test_output_that_is_not_objects(source: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        inline(source)


def test_empty_output_is_an_empty_render() -> None:
    with pytest.raises(EmptyRender, match=r"^apps/x: Jsonnet rendered no objects \(from main"):
        inline("[]")


def test_path_local_imports_need_no_materialised_repository() -> None:
    def refuse(_: Path) -> None:
        raise AssertionError("materialised without need")

    files = {"main.jsonnet": b"import 'lib/cm.libsonnet'", "lib/cm.libsonnet": CM.encode() % b"x"}
    objects = render(files, path="apps/x", materialise=refuse, jsonnet=JsonnetOptions())
    assert objects[0].manifest["metadata"]["name"] == "x"


def test_jsonnet_only_in_subfolders_is_named_in_the_empty_error() -> None:
    with pytest.raises(EmptyRender) as err:
        render(files_under(REPO, "apps/nested"), path="apps/nested")
    assert str(err.value) == (
        "apps/nested: no manifests found (looked for *.yaml, *.yml, *.json; 3 .jsonnet files "
        "present: set source.jsonnet, or point path at the folder that holds them)"
    )


def _render_in(queue: Any) -> None:
    source = '{apiVersion: "v1", kind: "ConfigMap", metadata: {name: "in-pool"}}'
    try:
        queue.put([o.manifest["metadata"]["name"] for o in inline(source)])
    except BaseException as exc:  # reported to the test, not lost in the child
        queue.put(f"{type(exc).__name__}: {exc}")


def test_evaluates_inside_a_daemonic_pool_process() -> None:
    """Celery's pool processes are daemonic; the evaluation's own child must still start."""
    import multiprocessing  # noqa: PLC0415

    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    pool_process = context.Process(target=_render_in, args=(queue,), daemon=True)
    pool_process.start()
    try:
        assert queue.get(timeout=30) == ["in-pool"]
    finally:
        pool_process.join(timeout=30)
