"""A real Prometheus (Debian's `prometheus`) scrapes a running pipeline; PromQL gives the counts.

Prometheus scrapes every process of a local stack (and the lag monitor) on 127.0.0.1 every
second, loads the alert rules of deploy/prometheus/alerts.yml, and its HTTP API answers
PromQL queries after a known batch: 3 documents delivered, 1 dead-lettered at transcode.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.demo.samples import DOMINIQUE, IMAGING, LAB, LETTER, SARAH_LOU, sample
from ops.localstack import LocalStack, read_landing
from ops.ports import free_port
from producers.hl7.message import parse_message
from producers.publisher import Publisher

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
INSTALL = "install Debian's prometheus package (make system-deps does it)"


@pytest.fixture(scope="module")
async def watched(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("prom")),
        prefix=f"p{uuid.uuid4().hex[:8]}",
        workers=(
            ("worker", "identity"),
            ("worker", "transcode"),
            ("worker", "route"),
            ("sink", "dmp"),
            ("monitor", "--interval", "1"),
        ),
    )
    async with stack as local:
        yield local


@pytest.fixture(scope="module")
def prometheus(watched: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(f"`prometheus` not found on PATH: {INSTALL}")
    work = Path(tmp_path_factory.mktemp("prometheus"))
    shutil.copy(ALERTS, work / "alerts.yml")
    targets = "\n".join(
        f'      - targets: ["127.0.0.1:{p.metrics_port}"]\n        labels: {{service: "{p.name}"}}'
        for p in watched.processes
    )
    (work / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [alerts.yml]\n"
        f"scrape_configs:\n  - job_name: relais\n    static_configs:\n{targets}\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(work / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2):
                    break
            except OSError:
                assert process.poll() is None, (work / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "prometheus did not become ready"
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def api(url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]


def value(url: str, promql: str) -> float | None:
    result = api(url, "query", query=promql)["result"]
    return float(result[0]["value"][1]) if result else None


async def eventually(url: str, promql: str, expected: float, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := value(url, promql)) != expected:
        assert time.monotonic() < deadline, f"{promql} = {got}, expected {expected}"
        await asyncio.sleep(0.5)


def broken_lab_result() -> bytes:
    good = sample(LAB, SARAH_LOU, 44)
    cda = parse_message(good).documents[0].content
    broken = base64.b64encode(b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1'>")
    return good.replace(base64.b64encode(cda), broken)


async def test_prometheus_counts_a_known_batch(watched: LocalStack, prometheus: str) -> None:
    s = watched.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=watched.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        delivered = [
            (await publisher.submit_lab_result(sample(LAB, DOMINIQUE, 41)))[0],
            (await publisher.submit_imaging_report(sample(IMAGING, SARAH_LOU, 42)))[0],
            (await publisher.submit_hospital_document(sample(LETTER, DOMINIQUE, 43)))[0],
        ]
        # escaped the door (an older producer, a replay): transcode still dead-letters it
        await publisher.publish_message(parse_message(broken_lab_result()), sector="LAB")
    await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=90,
        until=lambda lan: set(delivered) <= set(lan.delivered) and len(lan.dead) >= 1,
    )
    url = prometheus
    await eventually(url, 'count(up{job="relais"} == 1)', len(watched.processes))
    await eventually(url, 'sum(relais_deliveries_total{destination="DMP",outcome="DELIVERED"})', 3)
    await eventually(url, 'sum(relais_deadletters_total{stage="transcode"})', 1)
    await eventually(url, 'sum(relais_stage_records_in_total{stage="identity"})', 4)
    # the monitor sees every group caught up: nothing left to process on the DMP topic
    dmp_topic = f"{s.kafka.prefix}.deliveries.dmp.v1"
    # wait for a sample taken after the three requests were written: an older scrape, from when
    # only the first was on the topic and already consumed, also reads lag 0
    ends = f'sum(relais_topic_end_offset{{topic="{dmp_topic}"}})'
    await eventually(url, f"{ends} >= bool 3", 1)
    await eventually(url, f'sum(relais_consumer_lag_records{{topic="{dmp_topic}"}})', 0)
    assert (value(url, f'sum(relais_topic_end_offset{{topic="{dmp_topic}"}})') or 0) >= 3
    latency = 'sum(relais_delivery_latency_seconds_count{destination="DMP"})'
    await eventually(url, latency, 3)
    # the alert rules load and evaluate; the dead letter makes its alert fire
    groups = api(url, "rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    declared = re.findall(r"^\s*- (?:alert|record): (\S+)", ALERTS.read_text(), re.MULTILINE)
    assert set(rules) == set(declared)
    assert all(r["health"] == "ok" for r in rules.values()), rules
    deadline = time.monotonic() + 30
    while not any(
        a["labels"]["alertname"] == "RelaisDeadLettersGrowing" and a["state"] == "firing"
        for a in api(url, "alerts")["alerts"]
    ):
        assert time.monotonic() < deadline, "RelaisDeadLettersGrowing did not fire"
        await asyncio.sleep(0.5)
