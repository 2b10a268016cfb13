"""/healthz, /readyz and /metrics from one port; readiness says which check fails and why."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from relais.health import Flag, Readiness, broker_reachable, serve_health_and_metrics


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_ready_only_when_every_check_passes() -> None:
    readiness = Readiness()
    dmp = Flag(True, "DMP answering")
    readiness.register("dmp", dmp)
    port = serve_health_and_metrics("127.0.0.1", 0, readiness)
    assert get(port, "/healthz") == (200, b'{"status": "alive"}')
    status, body = get(port, "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "ready": True,
        "checks": {"dmp": {"ok": True, "detail": "DMP answering"}},
    }
    dmp.set(False, "DMP unavailable (HTTP503)")
    status, body = get(port, "/readyz")
    assert status == 503
    assert json.loads(body)["checks"]["dmp"] == {"ok": False, "detail": "DMP unavailable (HTTP503)"}
    status, metrics = get(port, "/metrics")
    assert status == 200
    assert b"# HELP" in metrics


def test_a_check_that_raises_means_not_ready() -> None:
    readiness = Readiness()

    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    readiness.register("broken", broken)
    assert readiness.report() == (
        False,
        {"broken": {"ok": False, "detail": "check failed: RuntimeError"}},
    )


def test_broker_reachability_is_a_real_connection() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert broker_reachable(f"127.0.0.1:{port}")()[0] is True
    listener.close()
    ok, detail = broker_reachable(f"127.0.0.1:{port},bad-entry")()
    assert ok is False
    assert "no broker reachable" in detail
