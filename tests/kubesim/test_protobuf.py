"""The protobuf decoder, on bodies captured from the real kubectl and on hand-made edge cases.

Each captured body (``data/protobuf/NAME.pb``) must decode to exactly the JSON kubectl prints
for the same command with ``--dry-run=client -o json`` (``NAME.json``): that is the object it
encoded, so the two together pin the field tables and the Go-marshalling rules (empty structs
kept, zero scalars dropped unless pointers).  Regenerate them with
``python -m tests.kubesim.capture_protobuf``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubesim import protobuf

DATA = Path(__file__).parent / "data" / "protobuf"
FIXTURES = sorted(p.stem for p in DATA.glob("*.pb"))


def test_every_generator_has_a_fixture() -> None:
    for name in ("namespace", "configmap-literal", "configmap-file", "secret-generic",
                 "serviceaccount", "deployment", "job", "service-clusterip"):  # fmt: skip
        assert name in FIXTURES


@pytest.mark.parametrize("name", FIXTURES)
def test_captured_body_decodes_to_what_kubectl_encoded(name: str) -> None:
    body = (DATA / f"{name}.pb").read_bytes()
    expected = json.loads((DATA / f"{name}.json").read_text())
    assert protobuf.decode(body) == expected


# -- a minimal encoder, to build the edge cases kubectl never sends ------------------------


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes, *extra: bytes) -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    return protobuf.MAGIC + field(1, type_meta) + field(2, raw) + b"".join(extra)


def meta(name: str) -> bytes:
    return field(1, name)


def decode(api_version: str, kind: str, raw: bytes) -> dict[str, Any]:
    return protobuf.decode(envelope(api_version, kind, raw))


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    unknown = (
        varint(99 << 3) + varint(7)                    # varint
        + varint(98 << 3 | 1) + b"\x00" * 8            # fixed64
        + field(97, b"\x01\x02")                       # length-delimited
        + varint(96 << 3 | 5) + b"\x00" * 4            # fixed32
    )  # fmt: skip
    obj = decode("v1", "ConfigMap", field(1, meta("c") + unknown) + unknown)
    assert obj == {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"}}


def test_zero_scalars_follow_go_marshalling() -> None:
    spec = (
        field(1, 0)        # replicas *int32 = 0: kept
        + field(5, 0)      # minReadySeconds int32 = 0: omitted
        + field(7, 0)      # paused bool = false: omitted
        + field(4, b"")    # strategy struct, empty: written as {}
    )  # fmt: skip
    obj = decode("apps/v1", "Deployment", field(1, meta("d")) + field(2, spec))
    assert obj["spec"] == {"replicas": 0, "strategy": {}}


def test_required_fields_keep_their_zero_value() -> None:
    container = field(1, "")  # Container.name has no omitempty
    pod_spec = field(2, container)
    template = field(2, pod_spec)
    obj = decode("batch/v1", "Job", field(1, meta("j")) + field(2, field(6, template)))
    assert obj["spec"]["template"]["spec"]["containers"] == [{"name": ""}]


def test_negative_numbers_are_twos_complement() -> None:
    spec = field(1, -1) + field(3, -5)  # parallelism int32, activeDeadlineSeconds int64
    obj = decode("batch/v1", "Job", field(1, meta("j")) + field(2, spec))
    assert obj["spec"] == {"parallelism": -1, "activeDeadlineSeconds": -5}


def test_packed_and_unpacked_repeated_integers() -> None:
    packed = field(4, varint(1) + varint(2) + varint(300))  # supplementalGroups, packed
    unpacked = field(4, 7)
    pod_spec = field(14, packed + unpacked)  # securityContext
    obj = decode("batch/v1", "Job", field(1, meta("j")) + field(2, field(6, field(2, pod_spec))))
    assert obj["spec"]["template"]["spec"]["securityContext"] == {
        "supplementalGroups": [1, 2, 300, 7]
    }


def test_int_or_string_quantity_time_and_inline_structs() -> None:
    rolling = field(1, field(1, 1) + field(3, "25%")) + field(2, field(2, 0))
    strategy = field(1, "RollingUpdate") + field(2, rolling)
    limits = field(1, field(1, "cpu") + field(2, field(1, "500m")))
    probe = field(1, field(2, field(1, "/healthz") + field(2, field(2, 8080))))  # inline httpGet
    container = field(1, "app") + field(8, limits) + field(10, probe)
    template = field(2, field(2, container))
    created = field(8, field(1, 1_700_000_000))
    spec = field(3, template) + field(4, strategy)
    obj = decode("apps/v1", "Deployment", field(1, meta("d") + created) + field(2, spec))
    assert obj["metadata"]["creationTimestamp"] == "2023-11-14T22:13:20Z"
    assert obj["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0},
    }  # fmt: skip
    (got,) = obj["spec"]["template"]["spec"]["containers"]
    assert got == {
        "name": "app",
        "resources": {"limits": {"cpu": "500m"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
    }


def test_map_entries_keep_empty_values_and_bytes_are_base64() -> None:
    data = field(2, field(1, "empty")) + field(2, field(1, "k") + field(2, b"\xff\x00"))
    obj = decode("v1", "Secret", field(1, meta("s")) + data)
    assert obj["data"] == {"empty": "", "k": "/wA="}


def test_last_occurrence_of_a_singular_field_wins() -> None:
    obj = decode("v1", "Secret", field(1, meta("s")) + field(3, "a") + field(3, "b"))
    assert obj["type"] == "b"


BAD_BODIES = {
    "no magic": (b'{"kind": "ConfigMap"}', "prefix"),
    "truncated varint": (protobuf.MAGIC + b"\x0a\xff", "runtime.Unknown: truncated varint"),
    "overlong field": (protobuf.MAGIC + b"\x0a\x10ab", "16 bytes long but only 2 remain"),
    "no type meta": (protobuf.MAGIC + field(2, b""), "no apiVersion or kind"),
    "group wire type": (envelope("v1", "ConfigMap", b"\x0b"), "unsupported wire type 3"),
    "bad nested field": (
        envelope("v1", "ConfigMap", field(1, b"\x0a\x05ab")), "ConfigMap.metadata: field 1"),
    "gzip": (envelope("v1", "ConfigMap", b"", field(3, "gzip")), "contentEncoding 'gzip'"),
    "string where number": (envelope("apps/v1", "Deployment", field(2, field(1, "x"))),
                            "Deployment.spec.replicas: expected a varint"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_unreadable_bodies_say_what_could_not_be_read(name: str) -> None:
    body, message = BAD_BODIES[name]
    with pytest.raises(protobuf.ProtobufError) as caught:
        protobuf.decode(body)
    assert not isinstance(caught.value, protobuf.UnsupportedKind)
    assert message in str(caught.value)


def test_a_kind_outside_the_tables_is_unsupported_not_malformed() -> None:
    with pytest.raises(protobuf.UnsupportedKind, match="apps/v1 StatefulSet"):
        decode("apps/v1", "StatefulSet", field(1, meta("s")))
