"""The DMP sink's reading of the patient's stamped word: file, or refuse with a DMP code."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock

import pytest
from aiokafka import TopicPartition

from consumers.dmp.consent import (
    CLOSED,
    FILE_IT,
    OPPOSITION,
    KeptWord,
    consent_refusal,
    err5,
    kept_word,
)
from consumers.dmp.consent_table import UNREADABLE, ConsentTable, ConsentUnreadable
from consumers.dmp.error_codes import Decision, decide
from consumers.dmp.sink import DmpSink
from consumers.dmp.submission import DmpUnavailable
from relais import kafka_clients
from relais.contracts import Codec
from relais.health import Flag
from relais.topics import IDENTITY_CONSENT


def request(action: str = "SUBMIT", **stamp: str | None) -> dict[str, Any]:
    consent = None
    if stamp:
        consent = {"as_of": "20261122", "source_event_id": "adt-1", **stamp}
    return {
        "document": {"action": action, "unique_id": "1.2.3"},
        "patient": {"patient_key": "k", "dmp_consent": consent},
    }


@pytest.mark.parametrize(
    ("stamp", "code", "zam"),
    [
        ({"dmp_status": "FERME"}, CLOSED, "DMPClosed^DMP fermé^DMPERRORCODE"),
        ({"closed_date": "20261120"}, CLOSED, "DMPClosed^DMP fermé^DMPERRORCODE"),
        (
            {"dmp_status": "ACTIF", "feeding": "IO"},
            OPPOSITION,
            "DMPPatientOpposition^Opposition du patient^DMPERRORCODE",
        ),
        # closed and objected: the closed DMP is the reason (nothing can be filed at all)
        ({"dmp_status": "FERME", "feeding": "IO"}, CLOSED, "DMPClosed^DMP fermé^DMPERRORCODE"),
    ],
)
def test_an_objection_or_a_closed_dmp_is_refused_with_its_dmp_code(
    stamp: dict[str, str], code: str, zam: str
) -> None:
    refusal = consent_refusal(request(**stamp))
    assert refusal is not None
    assert refusal.code == code
    assert err5(refusal) == zam
    assert "adt-1" in refusal.detail  # which identity event said it
    assert "replay" in refusal.text  # what the sender can do
    assert decide(code).decision is Decision.REFUSE  # the sink's table: a refusal, not retried


@pytest.mark.parametrize(
    "stamp",
    [
        {"dmp_status": "ACTIF", "feeding": "INO"},
        {"dmp_status": "ACTIF", "feeding": "NA"},
        {"dmp_status": "INEXISTANT"},  # the DMP's own answer (TD0.2) decides, not a stale word
        {"dmp_status": "ACTIF", "closed_date": "20251231"},  # reopened
        {"consultation": "INC"},  # refusing consultation is not objecting to feeding
    ],
)
def test_other_words_let_the_document_be_filed(stamp: dict[str, str]) -> None:
    assert consent_refusal(request(**stamp)) is None


def test_no_stamp_or_a_deletion_is_never_stopped() -> None:
    assert consent_refusal(request()) is None
    assert consent_refusal(request("DELETE", feeding="IO")) is None
    assert consent_refusal(request("REPLACE", feeding="IO")) is not None


def test_the_word_now_decides_over_the_stamp_which_is_the_fallback() -> None:
    objected = {"dmp_status": "ACTIF", "feeding": "IO", "source_event_id": "adt-2"}
    lifted = {"dmp_status": "ACTIF", "feeding": "INO", "source_event_id": "adt-3"}
    # stamped before the objection, filed after it: refused
    refusal = consent_refusal(request(feeding="INO"), objected)
    assert refusal is not None
    assert refusal.code == OPPOSITION
    assert "adt-2" in refusal.detail
    # stamped with the objection, lifted since (a replay): filed
    assert consent_refusal(request(feeding="IO"), lifted) is None
    # nothing published for the patient: the stamp
    assert consent_refusal(request(feeding="IO"), None) is not None
    assert consent_refusal(request("DELETE"), objected) is None


# -- the sink's table of the patients' word now (consumers.dmp.consent_table) ---------------

CODEC = Codec()
TOPIC = IDENTITY_CONSENT.name("t")


def published(patient_key: str, feeding: str, facility: str = "CHU-A") -> bytes:
    names = ("dmp_status", "status_date", "closed_date", "feeding", "feeding_date")
    consent: dict[str, str | None] = dict.fromkeys(
        (*names, "consultation", "consultation_date", "as_of")
    )
    consent |= {"dmp_status": "ACTIF", "feeding": feeding, "feeding_facility": facility}
    consent["source_event_id"] = f"adt-{patient_key}-{feeding}"
    word = {
        "patient_key": patient_key,
        "at": datetime.now(UTC),
        "event_id": "e",
        "consent": consent,
    }
    return CODEC.encode("PatientConsent", word)


class FakeConsumer:
    """One partition of identity.consent, handed out one record per fetch, slowly."""

    def __init__(self, values: list[tuple[bytes, bytes]], delay_s: float = 0.0) -> None:
        self.log, self.delay_s, self.at = values, delay_s, 0
        self.options: dict[str, Any] = {}
        self.from_start = 0

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def topics(self) -> set[str]:
        return {TOPIC}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, len(self.log))

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.log)

    def assign(self, tps: list[TopicPartition]) -> None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.from_start += 1
        self.at = 0

    async def position(self, tp: TopicPartition) -> int:
        return self.at

    async def getmany(
        self, tp: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[SimpleNamespace]]:
        await asyncio.sleep(self.delay_s)
        if self.at >= len(self.log):
            return {}
        key, value = self.log[self.at]
        self.at += 1
        return {tp: [SimpleNamespace(key=key, value=value)]}


def table(consumer: FakeConsumer, monkeypatch: pytest.MonkeyPatch, **limits: float) -> ConsentTable:
    def made(target: Any, **options: Any) -> FakeConsumer:
        consumer.options = options
        return consumer

    monkeypatch.setattr(kafka_clients, "consumer", made)
    return ConsentTable("localhost:9092", "t", CODEC, **limits)


async def test_a_big_partition_is_read_across_tries_from_where_the_last_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review finding: the position was saved only at the end, so a read cut short by its
    time limit began again at 0 the next time, and never finished."""
    log = [(f"p{n}".encode(), published(f"p{n}", "INO")) for n in range(30)]
    log.append((b"k", published("k", "IO")))
    consumer = FakeConsumer(log, delay_s=0.01)
    words = table(consumer, monkeypatch, timeout_s=0.15)
    answered, cut_short = None, []
    for _ in range(10):
        try:
            answered = await words.latest("k")
            break
        except ConsentUnreadable as exc:
            cut_short.append(exc.code)
    assert cut_short[:1] == [UNREADABLE]  # the first read did not finish in time
    assert answered is not None
    assert answered["feeding"] == "IO"
    # the first read from the log's start; a position the log no longer holds: its start too
    assert consumer.from_start == 1
    assert consumer.options["auto_offset_reset"] == "earliest"


async def test_a_filing_waits_a_bounded_time_for_another_partitions_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    words = table(FakeConsumer([]), monkeypatch, lock_wait_s=0.05)
    await words._lock.acquire()  # another partition's filing reads
    with pytest.raises(ConsentUnreadable):
        await asyncio.wait_for(words.latest("k"), 1.0)


class Wedged(ConsentTable):
    """A read stuck in a client call that does not yield to its cancellation (seen after a
    broker restart: the DMP sink's whole poll waited for it, and filed nothing more)."""

    released = asyncio.Event()

    async def _catch_up(self, patient_key: str) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await self.released.wait()  # cancelled, and still not giving up


async def test_a_read_that_ignores_its_cancellation_does_not_hold_the_filing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = FakeConsumer([])
    table(consumer, monkeypatch)  # the fake consumer factory
    words = Wedged("localhost:9092", "t", CODEC, timeout_s=0.1)
    try:
        with pytest.raises(ConsentUnreadable) as caught:
            await asyncio.wait_for(words.latest("k"), 2.0)
        assert caught.value.code == UNREADABLE
        # and the next filing is not held by the read left behind: the lock is free
        with pytest.raises(ConsentUnreadable):
            await asyncio.wait_for(words.latest("k"), 2.0)
    finally:
        Wedged.released.set()


def test_the_table_keeps_only_what_may_refuse_a_filing(monkeypatch: pytest.MonkeyPatch) -> None:
    words = table(FakeConsumer([]), monkeypatch)
    for key, feeding in (("a", "INO"), ("b", "NA"), ("c", "IO")):
        words._apply(key.encode(), published(key, feeding))
    assert words.words["a"] is words.words["b"] is FILE_IT  # one object for all of them
    kept = words.words["c"]
    assert isinstance(kept, KeptWord)
    assert not hasattr(kept, "__dict__")  # slots: no dict per patient
    assert (kept.feeding, kept.feeding_facility, kept.source_event_id) == (
        "IO",
        "CHU-A",
        "adt-c-IO",
    )
    refusal = consent_refusal(request(feeding="INO"), kept.as_record())
    assert refusal is not None
    assert (refusal.code, "adt-c-IO" in refusal.detail) == (OPPOSITION, True)
    assert consent_refusal(request(feeding="IO"), words.words["a"].as_record()) is None
    assert kept_word(None) is None
    words._apply(b"c", None)  # a tombstone
    assert "c" not in words.words


def test_an_unreadable_word_is_retried_without_calling_the_dmp_down() -> None:
    """Review finding: the table's failure set readiness "dmp" down and paused the lifts."""
    sink = SimpleNamespace(dmp_state=Flag(True, "ok"), attempts={}, deliveries=Mock())
    request = {"request_id": "r", "event_id": "e", "submitted_at": datetime.now(UTC)}
    DmpSink._retrying(sink, request, 1, ConsentUnreadable("x", code=UNREADABLE))  # type: ignore[arg-type]
    assert sink.dmp_state.ok
    assert sink.attempts == {"r": 1}
    DmpSink._retrying(sink, request, 2, DmpUnavailable("down", code="HTTP503"))  # type: ignore[arg-type]
    assert not sink.dmp_state.ok
