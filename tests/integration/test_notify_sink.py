"""The notification sink on the real broker with real SMTP servers and a real SMS gateway.

Each test has its own topic prefix; requests are produced as the routing stage would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from consumers.notify.channels import Channels
from consumers.notify.preferences import Preferences, parse_preferences, preference_key
from consumers.notify.rate import RateLimit
from consumers.notify.sink import NotifySink
from ops.broker import LocalBroker
from ops.localstack import scrape
from relais.contracts import Codec, Record
from relais.delivery_status import delivery_status
from relais.keyring import Keyring
from relais.metrics import REGISTRY
from relais.topic_admin import ensure_topics
from relais.topics import DELIVERY_NOTIFY, DELIVERY_STATUS
from tests.integration import test_notify_channels as shared
from tests.integration.test_notify_channels import (
    Gateway,
    MailServers,
    assert_no_health_data,
    channel_config,
    free_port,
    notify_request,
    patient,
)

# The real SMTP servers and SMS gateway of the channel tests, as fixtures here too.
mail_servers = shared.mail_servers
gateway = shared.gateway

SARAH = patient("277010115400329")
LOUIS = patient("180036912345612")


@pytest.fixture(scope="module")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalBroker]:
    log = Path(tmp_path_factory.mktemp("notify-broker")) / "broker.log"
    async with LocalBroker(f"127.0.0.1:{free_port()}", log_path=log) as local:
        yield local


@pytest.fixture
async def prefix(broker: LocalBroker, mail_servers: MailServers, gateway: Gateway) -> str:
    mail_servers.operator.clear()
    mail_servers.relay.clear()
    gateway.clear()
    name = f"n{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker.bootstrap, name)
    return name


async def produce(bootstrap: str, prefix: str, requests: list[Record]) -> None:
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for request in requests:
            await producer.send_and_wait(
                DELIVERY_NOTIFY.name(prefix),
                codec.encode("DeliveryRequest", request),
                key=request["patient"]["patient_key"].encode(),
            )
    finally:
        await producer.stop()


async def statuses(
    bootstrap: str, prefix: str, until: Callable[[list[Record]], bool], timeout_s: float = 30
) -> list[Record]:
    """Every NOTIFY status from the start, read until ``until(statuses)`` (then 1 s more)."""
    codec = Codec()
    consumer = AIOKafkaConsumer(
        DELIVERY_STATUS.name(prefix),
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    found: list[Record] = []
    await consumer.start()
    try:
        deadline, settle = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found += [codec.decode(m.value, expected="DeliveryStatus")[1] for m in batch]
            if settle is None and until(found):
                settle = time.monotonic() + 1.0
    finally:
        await consumer.stop()
    return found


def outcomes(found: list[Record]) -> dict[str, list[str]]:
    by_request: dict[str, list[str]] = {}
    for status in found:
        by_request.setdefault(status["request_id"], []).append(status["outcome"])
    return by_request


def final(requests: list[Record]) -> Callable[[list[Record]], bool]:
    wanted = {r["request_id"] for r in requests}

    def done(found: list[Record]) -> bool:
        settled = {s["request_id"] for s in found if s["outcome"] != "RETRYING"}
        return wanted <= settled

    return done


@asynccontextmanager
async def running(
    bootstrap: str,
    prefix: str,
    keyring: Keyring,
    servers: MailServers,
    gateway: Gateway,
    *,
    preferences: Preferences | None = None,
    rate: RateLimit | None = None,
    group: str | None = None,
) -> AsyncIterator[NotifySink]:
    channels = Channels(channel_config(servers, gateway.url))
    sink = NotifySink(
        bootstrap=bootstrap,
        prefix=prefix,
        keyring=keyring,
        sender=channels,
        preferences=preferences or Preferences(),
        rate=rate or RateLimit(100, 3600),
        session_timeout_s=4,
        group_id=group,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await channels.close()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def key_of(keyring: Keyring, who: Any) -> str:
    return preference_key(keyring, who.ins, who.ins_oid)


async def test_each_patient_by_their_channel_embargo_and_never_visible(
    broker: LocalBroker, prefix: str, mail_servers: MailServers, gateway: Gateway
) -> None:
    keyring = Keyring.generate()
    prefs = parse_preferences(
        json.dumps(
            {
                "version": 1,
                "patients": {
                    key_of(keyring, SARAH): {"channel": "email", "address": "sarah@example.org"},
                    key_of(keyring, LOUIS): {"channel": "sms", "phone": "+33612345678"},
                },
            }
        )
    )
    now = datetime.now(UTC)
    embargo_ends = now.replace(microsecond=0) + timedelta(seconds=6)
    embargoed = notify_request(keyring, visible_from=embargo_ends)
    hidden = notify_request(keyring, visible_from=None)
    visible = [
        notify_request(keyring, visible_from=now - timedelta(minutes=1)),
        notify_request(keyring, who=SARAH, visible_from=now),
        notify_request(keyring, who=LOUIS, visible_from=now),
    ]
    requests = [embargoed, hidden, *visible]  # the embargoed one first, on the same partition
    delivered_before = metric(
        "relais_notify_deliveries_total", channel="mssante", outcome="delivered"
    )
    await produce(broker.bootstrap, prefix, requests)
    async with running(broker.bootstrap, prefix, keyring, mail_servers, gateway, preferences=prefs):
        found = await statuses(broker.bootstrap, prefix, final([*visible, hidden]), 30)
        early = outcomes(found)
        assert early.get(embargoed["request_id"]) == ["RETRYING"]  # still embargoed, and says so
        [waiting] = [s for s in found if s["request_id"] == embargoed["request_id"]]
        assert waiting["code"] == "EMBARGOED"
        assert metric("relais_notify_pending", state="embargoed") == 1
        found = await statuses(broker.bootstrap, prefix, final(requests), 30)

    assert outcomes(found) == {
        embargoed["request_id"]: ["RETRYING", "DELIVERED"],
        hidden["request_id"]: ["REJECTED"],
        **{r["request_id"]: ["DELIVERED"] for r in visible},
    }
    [rejected] = [s for s in found if s["request_id"] == hidden["request_id"]]
    assert rejected["code"] == "NOT_VISIBLE_TO_PATIENT"
    # Dominique (no preference): her Mon espace santé mailbox, once per document.
    to_mailbox = mail_servers.operator.mails
    assert [m.recipients for m in to_mailbox] == [["279035121518989@patient.mssante.fr"]] * 2
    assert to_mailbox[1].at >= embargo_ends.timestamp()  # ...and told only once it lifted
    [to_sarah] = mail_servers.relay.mails
    assert to_sarah.recipients == ["sarah@example.org"]
    [sms] = gateway.posts
    assert sms["to"] == "+33612345678"
    # The INS is the mailbox address (To), never in the words; the other channels have none.
    for text in [m.text for m in to_mailbox] + [to_sarah.text, to_sarah.raw.decode(), str(sms)]:
        assert_no_health_data(text)
    after = metric("relais_notify_deliveries_total", channel="mssante", outcome="delivered")
    assert after - delivered_before == 2
    assert metric("relais_notify_latency_seconds_count", channel="email") >= 1
    assert metric("relais_notify_pending", state="embargoed") == 0


async def test_retries_without_duplicates_and_redelivery_is_a_duplicate(
    broker: LocalBroker, prefix: str, mail_servers: MailServers, gateway: Gateway
) -> None:
    keyring = Keyring.generate()
    prefs = parse_preferences(
        json.dumps(
            {
                "version": 1,
                "patients": {key_of(keyring, LOUIS): {"channel": "sms", "phone": "+33600000001"}},
            }
        )
    )
    by_sms = notify_request(keyring, who=LOUIS)
    by_mailbox = notify_request(keyring)
    gateway.answers += [(500, {}), (429, {"Retry-After": "1"})]
    mail_servers.operator.refuse += ["421 4.7.0 busy"]
    retries_before = metric("relais_notify_retries_total", channel="sms")
    await produce(broker.bootstrap, prefix, [by_sms, by_mailbox])
    async with running(broker.bootstrap, prefix, keyring, mail_servers, gateway, preferences=prefs):
        found = await statuses(broker.bootstrap, prefix, final([by_sms, by_mailbox]), 40)
    assert outcomes(found) == {
        by_sms["request_id"]: ["RETRYING", "DELIVERED"],  # one RETRYING, not one per try
        by_mailbox["request_id"]: ["RETRYING", "DELIVERED"],
    }
    delivered = next(
        s for s in found if s["outcome"] == "DELIVERED" and s["request_id"] == by_sms["request_id"]
    )
    assert delivered["attempt"] == 3
    assert len(gateway.posts) == 3
    assert len(gateway.delivered) == 1
    assert len(mail_servers.operator.mails) == 1
    assert metric("relais_notify_retries_total", channel="sms") - retries_before == 2

    # A crash after the ledger entry but before the commit = the requests read again:
    # a sink in a fresh consumer group reads them all from the start. Nobody is told twice.
    async with running(
        broker.bootstrap, prefix, keyring, mail_servers, gateway, preferences=prefs, group="again"
    ):
        again = await statuses(
            broker.bootstrap, prefix, lambda f: sum(s["outcome"] == "DUPLICATE" for s in f) >= 2
        )
    assert [s["outcome"] for s in again].count("DUPLICATE") == 2
    assert len(gateway.posts) == 3
    assert len(mail_servers.operator.mails) == 1


async def test_rate_limit_merges_and_an_embargo_survives_a_restart(
    broker: LocalBroker, prefix: str, mail_servers: MailServers, gateway: Gateway
) -> None:
    keyring = Keyring.generate()
    dominique = [notify_request(keyring, visible_from=datetime.now(UTC)) for _ in range(3)]
    rate = RateLimit(limit=1, window_s=5)
    async with running(broker.bootstrap, prefix, keyring, mail_servers, gateway, rate=rate):
        await produce(broker.bootstrap, prefix, dominique[:1])
        await statuses(broker.bootstrap, prefix, final(dominique[:1]))
        # whole seconds: the bus carries milliseconds (Avro timestamp-millis)
        embargo_ends = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=7)
        sarah = notify_request(keyring, who=SARAH, visible_from=embargo_ends)
        await produce(broker.bootstrap, prefix, [*dominique[1:], sarah])
        await until(
            lambda: (
                metric("relais_notify_pending", state="due") == 2
                and metric("relais_notify_pending", state="embargoed") == 1
            )
        )  # two held by the limit, one embargoed
        assert len(mail_servers.operator.mails) == 1
    # Stopped with all three waiting: a new worker reads them back from the ledger.
    assert datetime.now(UTC) < embargo_ends
    async with running(broker.bootstrap, prefix, keyring, mail_servers, gateway, rate=rate):
        found = await statuses(broker.bootstrap, prefix, final([*dominique, sarah]), 40)
    assert outcomes(found) == {
        **{r["request_id"]: ["DELIVERED"] for r in dominique},
        sarah["request_id"]: ["RETRYING", "DELIVERED"],  # EMBARGOED first, then told
    }
    mails = mail_servers.operator.mails
    to_dominique = [m for m in mails if m.recipients[0].startswith("279035121518989")]
    [to_sarah] = [m for m in mails if m.recipients[0].startswith("277010115400329")]
    assert len(to_dominique) == 2  # 1 per 5 s: the second one tells both held documents
    assert "2 nouveaux documents" in to_dominique[1].text
    assert to_dominique[1].at - to_dominique[0].at >= 5 - 0.5
    assert to_sarah.at >= embargo_ends.timestamp()
    assert metric("relais_notify_rate_limited_total") >= 1


async def until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_killed_worker_loses_nothing(
    broker: LocalBroker, prefix: str, mail_servers: MailServers, gateway: Gateway, tmp_path: Path
) -> None:
    """SIGKILL of ``relais sink notify`` while the gateway holds a request unanswered.

    The gateway got the 8th SMS but the worker died before the answer: the next worker
    sends it again with the same Idempotency-Key, which the gateway drops. Every patient
    is told exactly once; the worker itself is at-least-once only in that window.
    """
    keyring = Keyring.generate()
    keyring_file = tmp_path / "keyring.json"
    keyring.write(keyring_file)
    people = [patient(ins) for ins in _valid_ins(12)]
    prefs_file = tmp_path / "prefs.json"
    prefs_file.write_text(
        json.dumps(
            {
                "version": 1,
                "patients": {
                    key_of(keyring, p): {"channel": "sms", "phone": f"+336000000{n:02d}"}
                    for n, p in enumerate(people)
                },
            }
        )
    )
    requests = [notify_request(keyring, who=p) for p in people]
    await produce(broker.bootstrap, prefix, requests)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")},
        "RELAIS_BOOTSTRAP_SERVERS": broker.bootstrap,
        "RELAIS_TOPIC_PREFIX": prefix,
        "RELAIS_KEYRING_FILE": str(keyring_file),
        "RELAIS_NOTIFY_PREFERENCES": str(prefs_file),
        "RELAIS_NOTIFY_SMS_URL": gateway.url,
        "RELAIS_METRICS_HOST": "127.0.0.1",
        "RELAIS_LOG_LEVEL": "warn",
        "RELAIS_SESSION_TIMEOUT_S": "4",
    }
    log = (tmp_path / "sink.log").open("ab")
    ports = [free_port(), free_port()]

    def spawn(port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "ops", "sink", "notify"],
            env={**env, "RELAIS_METRICS_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    first = spawn(ports[0])
    gateway.delay_s = 0.05

    def kill_on_eighth(n: int) -> None:
        if n == 8:
            first.send_signal(signal.SIGKILL)

    gateway.on_post = kill_on_eighth
    try:
        await asyncio.to_thread(first.wait, 60)
        assert len(gateway.delivered) < len(requests)
        gateway.on_post = None
        second = spawn(ports[1])
        try:
            found = await statuses(broker.bootstrap, prefix, final(requests), 60)
            samples = scrape(ports[1])
        finally:
            second.send_signal(signal.SIGTERM)
            await asyncio.to_thread(second.wait, 30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    assert second.returncode == 0
    assert all(o == ["DELIVERED"] for o in outcomes(found).values())
    assert set(outcomes(found)) == {r["request_id"] for r in requests}
    keys = [p["key"] for p in gateway.posts]
    assert len(gateway.delivered) == len(requests)  # every patient told, once
    resent = [k for k in set(keys) if keys.count(k) > 1]
    assert resent == [keys[7]]  # only the one the worker died on, with the same key
    assert samples['relais_notify_deliveries_total{channel="sms",outcome="delivered"}'] >= 1


def _valid_ins(count: int) -> list[str]:
    """Matricules with a valid key (97 - n mod 97), women born in 1980."""
    out = []
    for n in range(count):
        body = f"2800175{n:03d}{100 + n:03d}"
        out.append(f"{body}{97 - int(body) % 97:02d}")
    return out


async def produce_dmp_statuses(
    bootstrap: str, prefix: str, answers: list[tuple[Record, str]]
) -> None:
    """The DMP sink's statuses for these requests' documents (same event, same key)."""
    codec = Codec()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for request, outcome in answers:
            status = delivery_status(
                event_id=request["event_id"],
                request_id=f"dmp-{request['request_id']}",
                destination="DMP",
                document_unique_id=request["document"]["unique_id"],
                outcome=outcome,
                code="DMPClosed" if outcome == "REJECTED" else None,
                detail=None,
                attempt=1,
                now=datetime.now(UTC),
                submitted_at=request["submitted_at"],
            )
            await producer.send_and_wait(
                DELIVERY_STATUS.name(prefix),
                codec.encode("DeliveryStatus", status),
                key=request["patient"]["patient_key"].encode(),
            )
    finally:
        await producer.stop()


async def test_notifications_follow_the_dmp_success_not_the_routing_decision(
    broker: LocalBroker, prefix: str, mail_servers: MailServers, gateway: Gateway
) -> None:
    """Issue 15, point 2: a document whose DMP filing is refused is never notified."""
    keyring = Keyring.generate()
    to_dmp = {"DESTDMP": True}
    filed = notify_request(keyring, flags=to_dmp)
    refused = notify_request(keyring, who=LOUIS, flags=to_dmp)
    filed_first = notify_request(keyring, who=SARAH, flags=to_dmp)  # DMP answered before routing
    await produce_dmp_statuses(broker.bootstrap, prefix, [(filed_first, "DELIVERED")])
    await produce(broker.bootstrap, prefix, [filed, refused])
    waiting = {filed["request_id"], refused["request_id"]}
    async with running(broker.bootstrap, prefix, keyring, mail_servers, gateway):
        # Routed, not yet filed: both wait, and nobody is told.
        found = await statuses(
            broker.bootstrap, prefix, lambda f: waiting <= set(outcomes(f)), timeout_s=30
        )
        early = outcomes(found)
        assert early[filed["request_id"]] == ["RETRYING"]
        assert early[refused["request_id"]] == ["RETRYING"]
        assert {s["code"] for s in found if s["destination"] == "NOTIFY"} == {"WAITING_FOR_DMP"}
        assert mail_servers.operator.mails == []
        # The DMP files one and refuses the other; the third's request comes after its filing.
        await produce_dmp_statuses(
            broker.bootstrap, prefix, [(filed, "DELIVERED"), (refused, "REJECTED")]
        )
        await produce(broker.bootstrap, prefix, [filed_first])
        found = await statuses(broker.bootstrap, prefix, final([filed, refused, filed_first]), 30)
    notify = [s for s in found if s["destination"] == "NOTIFY"]
    assert outcomes(notify) == {
        filed["request_id"]: ["RETRYING", "DELIVERED"],
        refused["request_id"]: ["RETRYING", "REJECTED"],
        filed_first["request_id"]: ["DELIVERED"],
    }
    [cancelled] = [s for s in notify if s["outcome"] == "REJECTED"]
    assert cancelled["code"] == "DMP_REFUSED"
    # Each filed document's patient told once; the refused one's patient heard nothing.
    told = sorted(m.recipients[0].split("@")[0] for m in mail_servers.operator.mails)
    assert told == sorted([str(SARAH.ins), "279035121518989"])
