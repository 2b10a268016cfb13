"""Static checks of the production-like docker-compose deployment.

No Docker engine is needed: Debian's ``docker-compose`` (1.29) validates and renders the compose
file, Debian's ``prometheus`` package provides ``promtool`` for the scrape configuration and the
dashboard's PromQL. Both are installed by the test setup (see the Makefile); a missing tool is a
failure with the install command, never a skip.

PyYAML is not a dependency of Relais. When it is not importable here, YAML is parsed by the
interpreter that runs ``docker-compose`` (docker-compose itself depends on PyYAML).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.metrics_catalogue import catalogue

try:
    import yaml
except ImportError:
    yaml = None

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "relais-overview.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "relais.yml"

TIMEOUT_S = 60
INSTALL_HINT = (
    "install it with `DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends {package}` (the test setup target does this)"
)

WORKERS = {
    "identity",
    "transcode",
    "route",
    "dmp-sink",
    "mss-sender",
    "mss-watch",
    "mss-deliver",
    "notify-sink",
    "outcomes",
    "ack-forwarder",
    "monitor",
    "mllp",
}
RELAIS_SERVICES = {"topics", "dmp-sandbox", *WORKERS}
EXPECTED_SERVICES = {"kafka", "prometheus", "grafana", *RELAIS_SERVICES}
PUBLISHED = {"prometheus": "9090", "grafana": "3000", "mllp": "2575"}
LOOPBACK = {"127.0.0.1", "::1"}
METRICS_PORT = "9400"

RELAIS_ENVIRONMENT = {
    "RELAIS_BOOTSTRAP_SERVERS": "kafka:9092",
    "RELAIS_BROKER_KIND": "kafka",
    "RELAIS_TOPIC_PREFIX": "relais",
    "RELAIS_KEYRING_FILE": "/run/secrets/relais_keyring",
    "RELAIS_METRICS_HOST": "0.0.0.0",
    "RELAIS_METRICS_PORT": METRICS_PORT,
    "RELAIS_SESSION_TIMEOUT_S": "30",
}

# The metrics the processes expose (from the code's catalogue; histograms as their three
# Prometheus series), and those the dashboard must show.
RELAIS_METRICS = {
    f"{doc.name}{suffix}"
    for doc in catalogue()
    for suffix in (("_bucket", "_sum", "_count") if doc.kind == "histogram" else ("",))
}
ON_THE_DASHBOARD = {
    "relais_stage_records_in_total",
    "relais_deadletters_total",
    "relais_stage_processing_seconds_bucket",
    "relais_documents_delivered_total",
    "relais_deliveries_total",
    "relais_delivery_latency_seconds_bucket",
    "relais_delivery_oldest_pending_age_seconds",
    "relais_identity_decisions_total",
    "relais_identity_held_documents",
    "relais_consumer_lag_records",
    "relais_insi_call_seconds_bucket",
    "relais_mss_mails_sent_total",
    "relais_notify_deliveries_total",
}
METRIC_NAME = re.compile(r"\brelais_[a-zA-Z0-9_]+")
# Grafana's dashboard variables, replaced by plausible values before promtool parses a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$stage": ".*",
}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not found on PATH: {INSTALL_HINT.format(package=package)}")
    return path


def _run(argv: list[str], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        argv,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        cwd=REPO,
        env=env,
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (
        f"{shlex.join(proc.args)} exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc.stdout


def _compose(*args: str) -> str:
    docker_compose = _tool("docker-compose", "docker-compose")
    return _ok(_run([docker_compose, "-f", str(COMPOSE_FILE), *args]))


def _load_yaml(text: str) -> Any:
    if yaml is not None:
        return yaml.safe_load(text)
    # docker-compose is a Python program that depends on PyYAML: use its interpreter.
    docker_compose = Path(_tool("docker-compose", "docker-compose"))
    with docker_compose.open("rb") as script:
        first_line = script.readline().decode("utf-8", "replace").strip()
    if not first_line.startswith("#!"):
        pytest.fail(
            f"{docker_compose} is not a Python script (no #! line): cannot borrow its PyYAML; "
            "install PyYAML in this environment or Debian's docker-compose"
        )
    interpreter = shlex.split(first_line[2:])
    code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"
    return json.loads(_ok(_run([*interpreter, "-c", code], stdin=text)))


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it (anchors merged, variables set)."""
    config = _load_yaml(_compose("config"))
    assert isinstance(config, dict)
    return config


def _services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = config["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _published(port: str | dict[str, Any]) -> tuple[str | None, str]:
    """(host ip or None when bound to every interface, published host port)."""
    if isinstance(port, dict):
        return port.get("host_ip"), str(port.get("published", ""))
    spec = str(port).split("/", 1)[0]
    if spec.startswith("["):  # [::1]:3000:3000
        host, _, rest = spec[1:].partition("]:")
        return host, rest.split(":", 1)[0]
    parts = spec.split(":")
    if len(parts) == 3:
        return parts[0], parts[1]
    if len(parts) == 2:
        return None, parts[0]
    return None, parts[0]  # container port only: a random host port on every interface


def test_compose_file_validates() -> None:
    _compose("config", "-q")


def test_compose_defines_the_expected_services() -> None:
    services = set(_compose("config", "--services").split())
    assert services == EXPECTED_SERVICES


def test_only_prometheus_grafana_and_mllp_publish_ports_on_loopback(
    compose_config: dict[str, Any],
) -> None:
    published: dict[str, set[str]] = {}
    for name, service in _services(compose_config).items():
        for port in service.get("ports", []):
            host_ip, host_port = _published(port)
            assert host_ip in LOOPBACK, (
                f"service {name!r} publishes {port!r} on every interface: bind it to 127.0.0.1"
            )
            published.setdefault(name, set()).add(host_port)
    assert published == {name: {port} for name, port in PUBLISHED.items()}


def test_relais_services_share_environment_and_keyring_secret(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    for name in RELAIS_SERVICES:
        service = services[name]
        env = _environment(service)
        assert {key: env.get(key) for key in RELAIS_ENVIRONMENT} == RELAIS_ENVIRONMENT, name
        secrets = {s["source"] if isinstance(s, dict) else s for s in service.get("secrets", [])}
        assert "relais_keyring" in secrets, name
        assert services[name].get("image") == services["identity"].get("image"), name
    assert "relais_keyring" in compose_config.get("secrets", {})


def test_workers_wait_for_topics_and_check_their_metrics(compose_config: dict[str, Any]) -> None:
    services = _services(compose_config)
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "healthcheck" in services["kafka"]
    for name in WORKERS:
        service = services[name]
        depends_on = service["depends_on"]
        assert depends_on["kafka"]["condition"] == "service_healthy", name
        assert depends_on["topics"]["condition"] == "service_completed_successfully", name
        assert service["restart"] == "unless-stopped", name
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{METRICS_PORT}/readyz" in probe, name


def test_the_dmp_sink_files_into_the_sandbox_over_its_test_pki(
    compose_config: dict[str, Any],
) -> None:
    services = _services(compose_config)
    sink, sandbox = services["dmp-sink"], services["dmp-sandbox"]
    env = _environment(sink)
    assert env["RELAIS_DMP_URL"] == "https://dmp-sandbox:8080/repository"
    command = sandbox["command"]
    assert command[command.index("--server-name") + 1] == "dmp-sandbox"
    pki = command[command.index("--pki") + 1]
    for variable in ("RELAIS_DMP_CA_FILE", "RELAIS_DMP_CLIENT_CERT", "RELAIS_DMP_CLIENT_KEY"):
        assert env[variable].startswith(pki + "/"), variable
    mounts = {str(v).split(":")[0]: str(v) for v in sink.get("volumes", [])}
    assert any(
        str(v["target"] if isinstance(v, dict) else v).find(pki) >= 0 for v in sink["volumes"]
    )
    assert any(
        str(v["target"] if isinstance(v, dict) else v).find(pki) >= 0 for v in sandbox["volumes"]
    )
    assert mounts


def _scrape_targets() -> list[str]:
    config = _load_yaml(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]


def test_prometheus_scrapes_every_worker_and_only_compose_services(
    compose_config: dict[str, Any],
) -> None:
    services = set(_services(compose_config))
    targets = _scrape_targets()
    hosts = {target.rsplit(":", 1)[0] for target in targets}
    assert hosts <= services, f"scrape targets that are no compose service: {hosts - services}"
    assert hosts == WORKERS, f"workers not scraped: {WORKERS - hosts}"
    assert all(target.endswith(f":{METRICS_PORT}") for target in targets), targets
    assert len(targets) == len(set(targets)), targets


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = _tool("promtool", "prometheus")
    _ok(_run([promtool, "check", "config", str(PROMETHEUS_CONFIG)]))


def _dashboard() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    return dashboard


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # panels inside collapsed rows


def _queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    queries: list[tuple[str, str]] = []
    for panel in _panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        targets = panel.get("targets", [])
        assert targets, f"panel {panel.get('title')!r} has no query"
        queries.extend((f"panel {panel['title']!r}", target["expr"]) for target in targets)
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']!r}", text))
    return queries


def test_dashboard_queries_use_only_exposed_relais_metrics() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "relais-overview"
    assert dashboard["title"]
    queries = _queries(dashboard)
    assert queries
    for where, query in queries:
        names = set(METRIC_NAME.findall(query))
        assert names, f"{where}: query references no relais_ metric: {query}"
        assert names <= RELAIS_METRICS, f"{where}: unknown metrics {names - RELAIS_METRICS}"
    used = {name for _, query in queries for name in METRIC_NAME.findall(query)}
    assert used >= ON_THE_DASHBOARD, f"metrics without a panel: {ON_THE_DASHBOARD - used}"
    titles = [panel.get("title", "") for panel in dashboard["panels"]]
    assert any("Ségur transparency" in title for title in titles)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = _tool("promtool", "prometheus")
    rules = []
    for index, (where, query) in enumerate(_queries(_dashboard())):
        if query.startswith("label_values("):  # Grafana's variable syntax, not PromQL
            continue
        expr = query
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{where}: unhandled Grafana variable in {query}"
        rules.append({"record": f"relais:dashboard_query_{index}", "expr": expr})
    rules_file = tmp_path / "dashboard-rules.yml"
    # JSON is YAML: promtool reads it as a rule file.
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    _ok(_run([promtool, "check", "rules", str(rules_file)]))


def test_grafana_provisioning_matches_compose_mounts(compose_config: dict[str, Any]) -> None:
    grafana = _services(compose_config)["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        source, target = str(volume).split(":")[:2]
        mounts[target] = source
    assert Path(mounts["/etc/grafana/provisioning"]) == GRAFANA / "provisioning"

    providers = _load_yaml(DASHBOARD_PROVIDERS.read_text(encoding="utf-8"))["providers"]
    for provider in providers:
        assert Path(mounts[provider["options"]["path"]]) == DASHBOARD.parent

    datasources = _load_yaml(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    uids = {source["uid"] for source in datasources}
    assert {source["url"] for source in datasources} == {"http://prometheus:9090"}
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] in uids

    env = _environment(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env.get("GF_SECURITY_ADMIN_PASSWORD"), "Grafana admin password must come from env"
