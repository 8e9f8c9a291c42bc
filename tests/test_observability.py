"""Metrics at /metrics and structured logs, against the real service (the refusal without a
token: Flask's test client)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.client import RpcClient
from tests.server import Server


def scrape(server: Server, token: str | None) -> dict[tuple[str, tuple], float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{server.http}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_need_the_token(client: FlaskClient) -> None:
    assert client.get("/metrics").status_code == 401


@pytest.fixture
def quiet_server():
    """A server of its own: nothing else moves its counters during the test."""
    running = Server().start()
    yield running
    running.stop()


def test_counters_move_as_expected(quiet_server: Server) -> None:
    server = quiet_server
    before = scrape(server, server.token)
    with RpcClient(server.url, server.token) as client:
        client.run_to_exit(["sh", "-c", "printf 12345; printf 678 >&2; exit 3"])
        client.run_to_exit(["sleep", "30"], timeout=0.2)
        client.error_of("lookpath", file="no-such-program")
        during = scrape(server, server.token)
    after = scrape(server, server.token)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("procwire_connections_total") == 1
    assert during[("procwire_connections_open", ())] >= 1
    assert moved("procwire_connections_open") == 0
    assert moved("procwire_processes_started_total") == 2
    assert moved("procwire_process_exits_total", reason="exited") == 1
    assert moved("procwire_process_exits_total", reason="timed_out") == 1
    assert moved("procwire_output_bytes_total", stream="stdout") == 5
    assert moved("procwire_output_bytes_total", stream="stderr") == 3
    assert moved("procwire_spawn_seconds_count") == 2
    assert moved("procwire_errors_total", code="-32001") == 1
    assert moved("procwire_messages_total", direction="in") == 3
    assert moved("procwire_messages_total", direction="out") >= 3 + 4  # answers, hello, output and exits


def test_open_metrics_and_json_logs(tmp_path) -> None:
    log_file = tmp_path / "server.log"
    env = {"PROCWIRE_METRICS_OPEN": "true", "PROCWIRE_LOG_FORMAT": "json", "PROCWIRE_LOG_LEVEL": "info"}
    with log_file.open("w") as sink:
        server = Server(env=env, stderr=sink).start()
        try:
            assert ("procwire_connections_total", ()) in scrape(server, None)
            with RpcClient(server.url, server.token) as client:
                client.run_to_exit(["true"])
        finally:
            server.stop()
    records = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    assert records, log_file.read_text()[:500]
    ended = [record for record in records if record.get("message", "").startswith("session ended")]
    assert len(ended) == 1
    assert ended[0]["processes_started"] == 1
    assert ended[0]["remote_addr"] == "127.0.0.1"
    assert ended[0]["messages_in"] == 1
    assert all("levelname" in record for record in records)
