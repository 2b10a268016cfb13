"""Liveness and readiness of a Relais process, served beside ``/metrics``.

* ``GET /healthz`` — alive: 200 as long as the process serves HTTP.
* ``GET /readyz`` — ready: 200 when every registered check passes (connected to the
  broker, its dependencies answer), else 503; the JSON body names each check
  and its state, so an operator (or docker-compose's healthcheck) sees why.

Components register their checks on :data:`READINESS` when they start (one
process, one registry, like Prometheus's); a check is a cheap callable
returning ``(ok, detail)`` and must not raise. The details never hold patient
data.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from relais.kafka_clients import Target, connection
from relais.metrics import REGISTRY

Check = Callable[[], tuple[bool, str]]


class Readiness:
    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def register(self, name: str, check: Check) -> None:
        with self._lock:
            self._checks[name] = check

    def report(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        with self._lock:
            checks = dict(self._checks)
        states: dict[str, dict[str, Any]] = {}
        for name, check in sorted(checks.items()):
            try:
                ok, detail = check()
            except Exception as exc:  # a broken check means "not ready", never a crash
                ok, detail = False, f"check failed: {type(exc).__name__}"
            states[name] = {"ok": ok, "detail": detail}
        return all(s["ok"] for s in states.values()), states


READINESS = Readiness()


class Flag:
    """A readiness state a shell flips: e.g. the DMP answered / did not answer."""

    def __init__(self, ok: bool, detail: str) -> None:
        self.ok, self.detail = ok, detail

    def set(self, ok: bool, detail: str) -> None:
        self.ok, self.detail = ok, detail

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.detail


def broker_reachable(bootstrap: Target, timeout_s: float = 1.0) -> Check:
    """A check that one of the bootstrap servers accepts TCP connections (a probe's cost;
    :func:`relais.kafka_access.diagnose` tries TLS too, once, at start)."""
    servers = [s.strip() for s in connection(bootstrap).bootstrap.split(",") if s.strip()]

    def check() -> tuple[bool, str]:
        for server in servers:
            host, _, port = server.rpartition(":")
            try:
                with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                    return True, f"broker {server} reachable"
            except (OSError, ValueError):
                continue
        return False, f"no broker reachable among {', '.join(servers)}"

    return check


def _app(metrics: Callable[..., Iterable[bytes]], readiness: Readiness) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b'{"status": "alive"}']
        if path == "/readyz":
            ready, checks = readiness.report()
            body = json.dumps({"ready": ready, "checks": checks}, sort_keys=True).encode()
            status = "200 OK" if ready else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        return metrics(environ, start_response)

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""


def serve_health_and_metrics(host: str, port: int, readiness: Readiness = READINESS) -> int:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port``; return the port."""
    app = _app(make_wsgi_app(REGISTRY), readiness)
    server = make_server(host, port, app, _Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return int(server.server_port)
