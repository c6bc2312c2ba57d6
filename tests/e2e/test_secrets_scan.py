"""No Secret value and no credential is left anywhere the platform writes or shows.

An application with Secrets (values under ``data`` and under ``stringData``) is synced by
real worker, beat, webhook and Flower processes holding a fake Git token; it is then
changed in Git, drifted in the cluster and pushed through the webhook, so every path that
records something runs: the render cache, outcomes, histories, the status index, Celery's
results, metrics, forced marks, webhook claims, logs.  Then everything is scanned for the
plaintext and the base64 of every value and for the token:

* every Redis key and value under the installation's prefix, of every type, with zlib
  values inflated and Celery message bodies decoded;
* the log of every component, at DEBUG, as text and as JSON;
* ``reconciler status``, ``history`` and ``get`` in every output format;
* Flower's API (tasks, each task's info, workers);
* the command line of every process the test started.

The cluster itself must hold the values (that is the point of a Secret): the test checks
that too, so a scan that finds nothing is a scan of a working sync.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import FAKE_GIT_TOKEN, Stack, free_port

PLAIN_TOKEN = "webhook-plain-token-" + uuid.uuid4().hex
FLOWER_PASSWORD = "flower-" + uuid.uuid4().hex
FORMATS = ("table", "wide", "json", "yaml", "name")


def _value(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


#: Values under ``data`` (stored base64 in Git) and under ``stringData`` (plaintext in Git).
DATA_VALUE = _value("data-password")
STRING_VALUE = _value("string-token")
#: The values of the second commit, and the one written into the cluster by hand (drift).
NEW_DATA_VALUE = _value("data-password-v2")
NEW_STRING_VALUE = _value("string-token-v2")
DRIFT_VALUE = _value("drifted-by-hand")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret_manifest(data_value: str, string_value: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
type: Opaque
data:
  password: {b64(data_value)}
stringData:
  token: {string_value}
---
apiVersion: v1
kind: Secret
metadata: {{name: only-string-data}}
stringData:
  api-key: {string_value}-second
"""


def forbidden() -> dict[str, str]:
    """Every string that must not appear, by what it is."""
    values = {
        "data value": DATA_VALUE,
        "stringData value": STRING_VALUE,
        "second Secret's value": f"{STRING_VALUE}-second",
        "new data value": NEW_DATA_VALUE,
        "new stringData value": NEW_STRING_VALUE,
        "new second Secret's value": f"{NEW_STRING_VALUE}-second",
        "drifted value": DRIFT_VALUE,
    }
    out: dict[str, str] = {}
    for what, value in values.items():
        out[what] = value
        out[f"base64 of the {what}"] = b64(value)
    out["Git token"] = FAKE_GIT_TOKEN
    out["webhook token"] = PLAIN_TOKEN
    out["Flower password"] = FLOWER_PASSWORD
    return out


def find_leaks(text: str, where: str) -> list[str]:
    return [f"{what} in {where}" for what, value in forbidden().items() if value in text]


# --------------------------------------------------------------------------------------
# Reading everything back
# --------------------------------------------------------------------------------------


def _decoded(raw: bytes) -> Iterator[str]:
    """``raw`` as text, and whatever is wrapped inside it: zlib, Celery message bodies."""
    yield raw.decode("utf-8", "replace")
    with contextlib.suppress(zlib.error):
        yield from _decoded(zlib.decompress(raw))
    try:
        message = json.loads(raw)
    except ValueError:
        return
    if isinstance(message, dict) and message.get("body_encoding") == "base64":
        with contextlib.suppress(ValueError):
            yield from _decoded(base64.b64decode(str(message.get("body", ""))))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def redis_parts(client: redis.Redis, key: bytes) -> list[bytes]:
    """Every part of the value at ``key``: fields and values, members, stream entries."""
    reader: Any = client  # a binary client: every reply is bytes
    kind = _bytes(reader.type(key)).decode()
    parts: list[Any] = []
    if kind == "string":
        parts = [reader.get(key)]
    elif kind == "hash":
        for name, value in reader.hgetall(key).items():
            parts += [name, value]
    elif kind == "list":
        parts = list(reader.lrange(key, 0, -1))
    elif kind == "set":
        parts = list(reader.smembers(key))
    elif kind == "zset":
        parts = [member for member, _ in reader.zrange(key, 0, -1, withscores=True)]
    elif kind == "stream":
        for entry_id, fields in reader.xrange(key):
            parts.append(entry_id)
            for name, value in fields.items():
                parts += [name, value]
    elif kind != "none":  # "none": expired between SCAN and TYPE
        pytest.fail(f"{key!r}: a Redis type the scan does not read: {kind}")
    return [_bytes(part) for part in parts if part is not None]


def redis_texts(client: redis.Redis, prefix: str) -> Iterator[tuple[str, str]]:
    """(key, text) for every key under ``prefix`` and every part of its value."""
    for raw_key in client.scan_iter(match=f"{prefix}*", count=1000):
        key = _bytes(raw_key)
        name = key.decode("utf-8", "replace")
        yield name, name
        for part in redis_parts(client, key):
            for text in _decoded(part):
                yield name, text


def process_group_cmdlines(pgids: set[int]) -> Iterator[tuple[int, str]]:
    """(pid, command line) of every live process in the process groups ``pgids``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) not in pgids:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        yield int(entry.name), cmdline.replace(b"\0", b" ").decode("utf-8", "replace")


def secret_data(stack: Stack, cluster: str, name: str, namespace: str) -> dict[str, str]:
    """The decoded data of a Secret in a cluster: what the platform applied."""
    found: Any = stack.core(cluster).read_namespaced_secret(name, namespace)
    return {key: base64.b64decode(value).decode() for key, value in (found.data or {}).items()}


# --------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_value_or_credential_is_left_anywhere(stack: Stack, log_format: str) -> None:
    import requests  # noqa: PLC0415

    # The most a component ever logs, in both formats (JSON records carry extras).
    stack.env.update(RECONCILER_LOG_LEVEL="DEBUG", RECONCILER_LOG_FORMAT=log_format)
    app = f"secrets-{uuid.uuid4().hex[:8]}"
    stack.write_app(app, deployment=False)
    stack.repo.write(f"{app}/secret.yaml", secret_manifest(DATA_VALUE, STRING_VALUE))
    first = stack.repo.commit("an application with Secrets")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-2"]}, interval="5s"))
    stack.env["RECONCILER_WEBHOOK_TOKEN"] = PLAIN_TOKEN
    targets = [(app, "sim-1"), (app, "sim-2")]

    worker = stack.worker(concurrency=2)
    stack.worker(concurrency=1)  # a second worker: renders shared between processes
    stack.beat()
    port = free_port()
    webhook = stack.start("webhook", "webhook", "--port", str(port))
    flower_port = free_port()
    flower = stack.start("flower", "flower", "--port", str(flower_port),
                         env={"FLOWER_BASIC_AUTH": f"ops:{FLOWER_PASSWORD}"})  # fmt: skip
    flower_url = f"http://127.0.0.1:{flower_port}"

    # 1. A forced sync from the command line, then beat's schedule.
    done = stack.cli("sync", app, "--wait", "--timeout", "90", "-o", "json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    stack.wait_synced(targets, commit=first, timeout=60)
    applied = secret_data(stack, "sim-1", "creds", app)
    assert applied == {"password": DATA_VALUE, "token": STRING_VALUE}

    # 2. New values in Git, announced by the webhook.
    stack.repo.write(f"{app}/secret.yaml", secret_manifest(NEW_DATA_VALUE, NEW_STRING_VALUE))
    second = stack.repo.commit("rotate the Secrets")
    push = {"repo": str(stack.repo.path), "ref": "main", "commit": second}

    def posted() -> bool:
        try:
            reply = requests.post(f"http://127.0.0.1:{port}/hooks/git", json=push, timeout=5,
                                  headers={"Authorization": f"Bearer {PLAIN_TOKEN}"})  # fmt: skip
        except requests.RequestException:
            return False
        assert reply.status_code in (200, 202), reply.text
        return True

    stack.wait_until(posted, timeout=30, what="the webhook to take the push", procs=[webhook])
    stack.wait_synced(targets, commit=second, timeout=60)
    assert any(h["trigger"] == "webhook" for h in stack.history(app, "sim-1"))

    # 3. Drift in the cluster: a hand-written value, healed by the next run.
    stack.core("sim-2").patch_namespaced_secret(
        "creds", app, {"data": {"password": b64(DRIFT_VALUE)}}
    )

    def healed() -> bool:
        return secret_data(stack, "sim-2", "creds", app)["password"] == NEW_DATA_VALUE

    stack.wait_until(healed, timeout=60, what="the drifted Secret to be healed")
    drifted = [h for h in stack.history(app, "sim-2") if h.get("drift")]
    assert drifted, "a run must have recorded the Secret's drift (masked)"

    # --- the scan ---------------------------------------------------------------------
    leaks: list[str] = []
    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys_seen = set()
        for key, text in redis_texts(client, stack.prefix):
            keys_seen.add(key)
            leaks += find_leaks(text, f"Redis {key}")
        assert any(":render:" in key for key in keys_seen), "the render cache was not used"
        assert any(":history:" in key for key in keys_seen)
    finally:
        client.close()

    for fmt in FORMATS:
        for args in (("status",), ("status", app), ("history", app), ("get", app),
                     ("history", app, "--cluster", "sim-2", "-n", "50")):  # fmt: skip
            shown = stack.cli(*args, "-o", fmt, timeout=60)
            assert shown.returncode in (0, 1), (args, fmt, shown.stderr)
            leaks += find_leaks(
                shown.stdout + shown.stderr, f"reconciler {' '.join(args)} -o {fmt}"
            )

    def flower_answers() -> bool:
        try:
            got = requests.get(f"{flower_url}/api/tasks", auth=("ops", FLOWER_PASSWORD), timeout=5)
        except requests.RequestException:
            return False
        return got.status_code == 200 and bool(got.json())

    stack.wait_until(flower_answers, timeout=30, what="Flower to list tasks", procs=[flower])
    tasks = requests.get(f"{flower_url}/api/tasks", auth=("ops", FLOWER_PASSWORD), timeout=10)
    leaks += find_leaks(tasks.text, "Flower /api/tasks")
    for task_id in list(tasks.json())[:50]:
        info = requests.get(f"{flower_url}/api/task/info/{task_id}",
                            auth=("ops", FLOWER_PASSWORD), timeout=10)  # fmt: skip
        leaks += find_leaks(info.text, f"Flower /api/task/info/{task_id}")
    workers = requests.get(f"{flower_url}/api/workers", auth=("ops", FLOWER_PASSWORD), timeout=10)
    leaks += find_leaks(workers.text, "Flower /api/workers")

    pgids = {proc.pid for proc in stack.procs}
    cmdlines = list(process_group_cmdlines(pgids))
    assert len(cmdlines) >= len(stack.procs) + 3, cmdlines  # pool processes are in there
    for pid, cmdline in cmdlines:
        leaks += find_leaks(cmdline, f"/proc/{pid}/cmdline ({cmdline[:60]})")

    for proc in stack.procs:
        if proc.log is not None:
            leaks += find_leaks(proc.log.read_text(errors="replace"), f"{proc.name}'s log")

    assert worker.alive() and webhook.alive() and flower.alive(), stack.logs()
    assert not leaks, "\n".join(leaks)
