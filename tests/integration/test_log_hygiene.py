"""No patient data in any log, at any level: a small pipeline at RELAIS_LOG_LEVEL=debug.

A lab result for DOMINIQUE, with a doctor's and the patient's MSSanté mailboxes, goes through
a real MLLP gateway, the stages, the DMP sink (its VIHF names the patient), the MSSanté sender
(SMTP to the operator sandbox) and the notification sink, every process at debug. Then every
log is searched for the patient's INS, names, birth date and the mailbox addresses.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.demo.samples import DOMINIQUE
from ops.localstack import LocalStack, read_landing
from ops.ports import free_port
from tests.integration.mllp_client import exchange
from tests.integration.test_fanout_e2e import DOCTOR, FIXTURES, message
from tests.shared_data import shared

PRIVATE = {
    "INS": DOMINIQUE.ins,
    "birth name": DOMINIQUE.family,
    "given name": DOMINIQUE.given,
    "birth date": DOMINIQUE.birth_date,
    "doctor's mailbox": DOCTOR,
    "patient's mailbox": f"{DOMINIQUE.ins}@patient.mssante.fr",
}


@pytest.fixture(scope="module")
async def debug_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[LocalStack, int]]:
    port = free_port()
    stack = LocalStack(
        Path(tmp_path_factory.mktemp("hygiene")),
        prefix=f"h{uuid.uuid4().hex[:8]}",
        catalogue_dir=FIXTURES,
        loinc_table=shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv"),
        ucum_units=shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml"),
        workers=(
            ("worker", "identity"),
            ("worker", "transcode"),
            ("worker", "route"),
            ("sink", "dmp"),
            ("mllp", "--host", "127.0.0.1", "--port", str(port)),
        ),
        mail=True,
        extra_environment={"RELAIS_LOG_LEVEL": "debug", "RELAIS_MSS_READ_RECEIPT": "no"},
    )
    async with stack as local:
        yield local, port


async def test_a_debug_run_logs_no_patient_data(debug_stack: tuple[LocalStack, int]) -> None:
    stack, port = debug_stack
    await stack.wait_for_metrics()
    ack = await exchange(port, message(71))
    assert b"MSA|AA|" in ack, ack
    s = stack.settings
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=120,
        until=lambda lan: len(lan.delivered) >= 1 and len(lan.statuses) >= 3,
    )
    assert landing.dead == [], [d["reason"] for d in landing.dead]
    destinations = {destination for _, destination in landing.statuses}
    assert destinations >= {"DMP", "MSSANTE", "NOTIFY"}, destinations
    logs = {p.name: p.read_text(errors="replace") for p in stack.work_dir.glob("*.log")}
    assert any(" DEBUG " in text for text in logs.values()), "the run was not at debug level"
    found = [
        f"{what} in {name}"
        for name, text in logs.items()
        for what, value in PRIVATE.items()
        if value.lower() in text.lower()
    ]
    assert found == []
