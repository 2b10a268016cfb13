"""A lab's ORU^R01 with local codes becomes a LOINC-coded CR-BIO N3 filed at the DMP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from ops.cli.main import main
from ops.demo.samples import DOMINIQUE, lab_report_sample
from ops.localstack import LocalStack, read_landing
from producers.publisher import Publisher
from relais.document_store import FileStore
from relais.document_store.bodies import document_prefix
from relais.document_store.open import open_store
from tests.shared_data import shared

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "catalogues"
V3 = {"v3": "urn:hl7-org:v3"}


@pytest.fixture(scope="module")
async def lab_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalStack]:
    async with LocalStack(
        Path(tmp_path_factory.mktemp("lab")),
        prefix=f"l{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        catalogue_dir=FIXTURES,
        loinc_table=shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv"),
        ucum_units=shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml"),
    ) as local:
        yield local


async def test_lab_results_are_transcoded_to_loinc_and_filed(lab_stack: LocalStack) -> None:
    s = lab_stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=lab_stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [event_id] = await publisher.submit_lab_result(lab_report_sample(DOMINIQUE, 1))
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=90,
        until=lambda lan: event_id in lan.delivered or bool(lan.dead),
    )
    assert landing.dead == [], [d["reason"] for d in landing.dead]
    status = landing.delivered[event_id]
    cda = etree.fromstring(lab_stack.sandbox.content[status["document_unique_id"]])
    codes = cda.xpath("//v3:observation/v3:code/@code", namespaces=V3)
    assert {"3016-3", "718-7"} <= set(codes)  # mapped with LABO-X's catalogue
    assert cda.xpath("//v3:observation/v3:code/v3:translation/@code", namespaces=V3) == ["CRPX"]
    assert cda.xpath("v3:code/@code", namespaces=V3) == ["11502-2"]


async def test_a_correction_files_version_two_replacing_the_original(
    lab_stack: LocalStack,
) -> None:
    s = lab_stack.settings
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=lab_stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [first] = await publisher.submit_lab_result(lab_report_sample(DOMINIQUE, 7))
        [second] = await publisher.submit_lab_result(lab_report_sample(DOMINIQUE, 7, status="C"))
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=90,
        until=lambda lan: {first, second} <= set(lan.delivered) or bool(lan.dead),
    )
    assert landing.dead == [], [d["reason"] for d in landing.dead]
    original_id = landing.delivered[first]["document_unique_id"]
    corrected_id = landing.delivered[second]["document_unique_id"]
    assert original_id != corrected_id
    corrected = etree.fromstring(lab_stack.sandbox.content[corrected_id])
    assert corrected.xpath("v3:setId/@root", namespaces=V3) == [original_id]
    assert corrected.xpath("v3:versionNumber/@value", namespaces=V3) == ["2"]
    parent = "v3:relatedDocument[@typeCode='RPLC']/v3:parentDocument/v3:id/@root"
    assert corrected.xpath(parent, namespaces=V3) == [original_id]


async def test_the_catalogue_report_lists_what_the_traffic_showed(lab_stack: LocalStack) -> None:
    s = lab_stack.settings
    raw = lab_report_sample(DOMINIQUE, 8).replace(b"|13.9|g/dL|", b"|139|g/L|")
    async with Publisher(
        bootstrap=s.kafka.bootstrap, keyring=lab_stack.keyring, topic_prefix=s.kafka.prefix
    ) as publisher:
        [event_id] = await publisher.submit_lab_result(raw)
    landing = await read_landing(
        s.kafka.bootstrap,
        s.kafka.prefix,
        timeout_s=90,
        until=lambda lan: event_id in lan.delivered or bool(lan.dead),
    )
    assert event_id in landing.delivered
    args = [
        "catalogue",
        "report",
        "LABO-X",
        "--seen",
        "--dir",
        str(FIXTURES),
        "--loinc",
        str(shared("loinc", "loinc_fr_labels_from_ans_crbio_examples.csv")),
        "--ucum",
        str(shared("jdv", "UCUM_2.16.840.1.113883.6.8.xml")),
    ]
    env = {"RELAIS_BOOTSTRAP_SERVERS": s.kafka.bootstrap, "RELAIS_TOPIC_PREFIX": s.kafka.prefix}
    result = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)
    assert result.exit_code == 1, result.output
    traffic = result.output.split("## Seen in traffic")[1]
    assert "| LABO-X | 2026-06 | HB | unit-mismatch | 1 |" in traffic
    assert "(sent g/L, catalogue g/dL)" in traffic
    assert "| CRPX | unmapped |" in traffic
    assert "| TSH1 |" not in traffic  # mapped with the catalogue's unit: nothing to fix


async def test_a_deletion_removes_the_current_version_from_the_dmp(lab_stack: LocalStack) -> None:
    s = lab_stack.settings
    sandbox = lab_stack.sandbox
    store = open_store(s)  # the folder every process of the stack shares
    assert isinstance(store, FileStore)
    async with Publisher(
        bootstrap=s.kafka.bootstrap,
        keyring=lab_stack.keyring,
        topic_prefix=s.kafka.prefix,
        store=store,
    ) as publisher:
        [first] = await publisher.submit_lab_result(lab_report_sample(DOMINIQUE, 9))
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            timeout_s=90,
            until=lambda lan: first in lan.delivered,
        )
        filed_id = landing.delivered[first]["document_unique_id"]
        assert sandbox.filed[filed_id].status == "Approved"
        cda = document_prefix(lab_stack.keyring, filed_id)
        assert [p.name for p in store.root.iterdir()].count(cda) == 1  # the CDA transcode built
        [gone] = await publisher.submit_lab_result(lab_report_sample(DOMINIQUE, 9, status="D"))
    landing = await read_landing(
        s.kafka.bootstrap, s.kafka.prefix, timeout_s=90, until=lambda lan: gone in lan.delivered
    )
    status = landing.delivered[gone]
    assert status["outcome"] == "DELIVERED", status
    # the deleted CDA's body is erased; the producer's lab results wait for the retention
    assert status["detail"] == "deleted from the DMP; stored bodies erased: 1"
    assert cda not in [p.name for p in store.root.iterdir()]
    assert status["document_unique_id"] == filed_id
    assert sandbox.filed[filed_id].status == "Deleted"
    assert sandbox.deletions[filed_id] == 1
