"""The one place that turns REDIS_URL into clients: plain URLs, Sentinel lists, Celery."""

from __future__ import annotations

import pytest

from reconciler.errors import ConfigError
from reconciler.store import connect


def test_a_plain_url_stays_as_it_is() -> None:
    found = connect.target("redis://127.0.0.1:6379/2")
    assert not found.is_sentinel and found.url == "redis://127.0.0.1:6379/2"
    conf = connect.celery_settings(found)
    assert conf["broker_url"] == conf["result_backend"] == conf["redbeat_redis_url"]
    assert conf["broker_connection_max_retries"] is None
    assert "master_name" not in conf["broker_transport_options"]


def test_sentinels_become_each_librarys_spelling() -> None:
    url = "sentinel://:pw@10.0.0.1:26379/3;sentinel://10.0.0.2:26380"
    found = connect.target(url, master="primary")
    assert found.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (found.master, found.db, found.password) == ("primary", 3, "pw")
    conf = connect.celery_settings(found)
    # kombu reads the list itself, and each part must carry the password and database:
    # when it fails over to the next Sentinel it takes that part's own.
    assert conf["broker_url"] == conf["result_backend"]
    assert conf["broker_url"] == "sentinel://:pw@10.0.0.1:26379/3;sentinel://:pw@10.0.0.2:26380/3"
    assert conf["broker_transport_options"]["master_name"] == "primary"
    assert conf["result_backend_transport_options"]["master_name"] == "primary"
    assert conf["redbeat_redis_url"] == "redis-sentinel://10.0.0.1:26379/3"
    assert conf["redbeat_redis_options"]["sentinels"] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert conf["redbeat_redis_options"]["service_name"] == "primary"


def test_a_sentinel_password_is_quoted_on_every_part() -> None:
    found = connect.target("sentinel://10.0.0.1:26379;sentinel://:p%40ss%3Bw@10.0.0.2/1")
    assert found.password == "p@ss;w" and found.db == 1
    parts = found.url.split(";")
    assert parts == ["sentinel://:p%40ss%3Bw@10.0.0.1:26379/1"] * 1 + [
        "sentinel://:p%40ss%3Bw@10.0.0.2:26379/1"
    ]
    assert connect.target(found.url) == found


def test_a_bad_sentinel_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="sentinel://host:port"):
        connect.target("sentinel://10.0.0.1:26379;redis://x")


def test_a_client_answers_and_retries(redis_url: str) -> None:
    client = connect.client(redis_url)
    assert client.ping()
    assert client.get_retry() is not None
    client.close()
