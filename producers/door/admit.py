"""Admit one HL7 v2 message, or refuse it with the reason an engineer can act on (pure).

:func:`admit` is everything deterministic the door checks before it answers: the
message rules (:func:`producers.hl7.message.parse_message`), then the sender's test
policy (MSH-11), the patient (INS consistent with the PID traits), the MetaDMPMSS
combination, the MSSanté recipients and each document's content
(:mod:`producers.door.content`). It is synchronous and CPU-bound: the gateway runs it
in a process pool (its arguments and results pickle), so a pathological message never
holds up the event loop. What needs the bus (a document id already filed) is checked
after it, by :mod:`producers.door.known_documents`.

Every refusal is an :class:`~producers.hl7.errors.Hl7ValidationError`: ERR-3 from HL7
table 0357, ERR-5 the volet's application code, the location, and a text naming the
rule (never the patient's data). docs/door.md lists them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final

from domain.cda_validate import CdaSchema
from domain.ins import Mismatch
from domain.ins_traits import Traits, TraitsError, check_consistency
from domain.metadata_flags import effective_flags, mssante_combination_problem
from domain.mssante_address import parse_address, patient_address
from producers.door.content import cda_problems
from producers.door.known_documents import DocumentKey, document_keys
from producers.door.pdf import pdf_problems
from producers.hl7 import text_report
from producers.hl7.errors import Hl7Error, Hl7ValidationError
from producers.hl7.message import (
    EmbeddedDocument,
    Hl7Message,
    MessageHeader,
    message_digest,
    parse_message,
    read_header,
)
from producers.hl7.patient import PatientIdentity
from relais.mail.errors import AddressError

log = logging.getLogger(__name__)


#: What the door refuses: the matricule itself, and its digits against PID-7/8.
REFUSED_AT_THE_DOOR: Final = frozenset(
    {
        Mismatch.BAD_LENGTH,
        Mismatch.BAD_CHARACTERS,
        Mismatch.BAD_KEY,
        Mismatch.BAD_SEX_DIGIT,
        Mismatch.BAD_MONTH,
        Mismatch.NOT_AN_INS_OID,
        Mismatch.INS_C_NOT_AN_INS,
        Mismatch.SEX_MISMATCH,
        Mismatch.BIRTH_YEAR_MISMATCH,
        Mismatch.BIRTH_MONTH_MISMATCH,
    }
)
TEST_PROCESSING: Final = frozenset({"T", "D"})
MAX_SHOWN: Final = 5


@dataclass(frozen=True)
class DoorPolicy:
    """What the door enforces beyond HL7 itself; picklable (it crosses the process pool).

    ``test_messages`` (accept | refuse) applies to MSH-11 T/D from every sender unless
    ``test_messages_by_sender`` (MSH-4 -> accept | refuse) says otherwise; accepted test
    messages go to the test topic, which reaches no DMP, mailbox or patient.
    """

    cda_xsd_dir: Path | None = None
    mail_domains: tuple[str, ...] = ()
    test_messages: str = "accept"
    test_messages_by_sender: Mapping[str, str] = field(default_factory=dict)
    refuse_unknown_parents: bool = True

    def accepts_tests_from(self, facility: str) -> bool:
        """By MSH-4 as sent, else its first component (HD.1: ``CHU-X`` of ``CHU-X^1.2…^ISO``)."""
        by_sender = self.test_messages_by_sender
        choice = by_sender.get(facility) or by_sender.get(facility.split("^", 1)[0])
        return (choice or self.test_messages) == "accept"


@dataclass(frozen=True)
class Admitted:
    """A message the door lets in, and its documents as the ids registry sees them."""

    message: Hl7Message
    keys: tuple[DocumentKey, ...]


@dataclass(frozen=True)
class Refused:
    """A refusal and what its ACK needs of the MSH, both found in the worker process."""

    error: Hl7Error
    header: MessageHeader | None


def admit_or_refuse(payload: bytes, policy: DoorPolicy) -> Admitted | Refused:
    """:func:`admit`, returning the refusal with the MSH read (a pathological MSH costs
    its reading here, in the worker, not in the gateway's event loop)."""
    try:
        return admitted(payload, policy)
    except Hl7Error as error:
        return Refused(error, read_header(payload))
    except Exception as exc:  # a bug meeting this input: the same bytes fail again, so AE
        name = type(exc).__name__
        log.error("door check failed on message %s: %s", message_digest(payload)[:12], name)
        internal = Hl7ValidationError(
            f"Relais could not check this message ({type(exc).__name__}); resending it "
            "unchanged fails again: report it to the Relais operator with its MSH-10",
            hl7_error_code="207",
            app_error_code="906",
        )
        try:
            header = read_header(payload)
        except Exception:
            header = None
        return Refused(internal, header)


def is_test(message: Hl7Message) -> bool:
    """MSH-11 T (training) or D (debugging): accepted for the test topic only."""
    return message.processing_id in TEST_PROCESSING


@cache
def cda_schema(xsd_dir: Path | None) -> CdaSchema | None:
    """The compiled CDA schema, once per process (a pool worker compiles it on first use)."""
    return CdaSchema.load(xsd_dir) if xsd_dir is not None else None


def admit(payload: bytes, policy: DoorPolicy) -> Hl7Message:
    """The parsed message when every door rule holds; else ``Hl7Error`` (AE with its ERR)."""
    return admitted(payload, policy).message


def admitted(payload: bytes, policy: DoorPolicy) -> Admitted:
    """:func:`admit`, with the documents' ids and digests for the registry (read once)."""
    message = parse_message(payload)
    if is_test(message) and not policy.accepts_tests_from(message.sending_facility):
        raise Hl7ValidationError(
            f"test messages (MSH-11 {message.processing_id}) from this sender are refused "
            "here; send them to the test gateway, or ask Relais to accept them "
            "(RELAIS_MLLP_TEST_MESSAGES)",
            hl7_error_code="202",
            app_error_code="906",
            location="MSH-11",
        )
    keys = document_keys(message)
    if message.documents:
        check_distinct(keys)
        check_patient(message)
        check_delivery(message, policy)
        for document in message.documents:
            check_content(message, document, policy)
    return Admitted(message, keys)


def check_distinct(keys: tuple[DocumentKey, ...]) -> None:
    """Two documents of one message never share an id: the second would be dropped as a copy."""
    ids = [key.unique_id for key in keys]
    if len(set(ids)) < len(ids):
        raise Hl7ValidationError(
            "two documents of this message have the same id (OBX-1 set id, or the same CDA "
            "id); give each document its own OBX-1 and id",
            hl7_error_code="205",
            app_error_code="906",
            location="OBX-1",
        )


def check_patient(message: Hl7Message) -> None:
    """An INS in PID-3 must be a valid matricule agreeing with PID's sex, birth year and month.

    The birthplace (COG codes change, merged communes) and incomplete traits are left to
    the identity stage, which asks INSi: they hold a document, they do not refuse it.
    """
    patient = message.patient
    if not patient.ins or not patient.ins_oid:
        return
    traits = Traits(
        patient.birth_name,
        patient.given_names,
        patient.birth_date,
        patient.sex,
        patient.birthplace_code,
    )
    try:
        reasons = check_consistency(patient.ins, patient.ins_oid, traits)
    except TraitsError as exc:
        reasons = [exc.reason]
    reasons = [reason for reason in reasons if reason in REFUSED_AT_THE_DOOR]
    if reasons:
        rules = "; ".join(reason.explain for reason in reasons[:MAX_SHOWN])
        raise Hl7ValidationError(
            f"the INS in PID-3 does not agree with the traits of PID-5/7/8/11: {rules}",
            hl7_error_code="207",
            app_error_code="904",
            location="PID-3",
        )


def check_delivery(message: Hl7Message, policy: DoorPolicy) -> None:
    """The MetaDMPMSS combination the volet allows, and deliverable MSSanté recipients."""
    if problem := mssante_combination_problem(message.flags):
        raise Hl7ValidationError(
            problem, hl7_error_code="207", app_error_code="906", location="OBX"
        )
    recipients = [p for p in message.participants if p.role == "RCT"]
    for number, participant in enumerate(recipients, start=1):
        if not participant.address:
            continue
        try:
            parse_address(participant.address, policy.mail_domains)
        except AddressError as exc:
            raise _at_prt(f"PRT RCT #{number}: {exc}") from None
    flags = effective_flags(message.flags)
    if flags["DESTMSSANTEPS"] and not any(p.address for p in recipients):
        raise _at_prt(
            "DESTMSSANTEPS=Y needs at least one PRT with PRT-4 RCT and its MSSanté "
            "address in PRT-15.4"
        )
    if flags["DESTMSSANTEPAT"]:
        try:
            patient_address(message.patient.ins or "")
        except AddressError:
            raise Hl7ValidationError(
                "DESTMSSANTEPAT=Y needs the patient's INS (15-character matricule with a "
                "valid key) in PID-3: the patient's mailbox is <INS>@patient.mssante.fr",
                hl7_error_code="101",
                app_error_code="903",
                location="PID-3",
            ) from None


def _at_prt(text: str) -> Hl7ValidationError:
    return Hl7ValidationError(text, hl7_error_code="103", app_error_code="906", location="PRT-15")


def content_problems(
    content: bytes, media_type: str, patient: PatientIdentity, policy: DoorPolicy
) -> list[str]:
    """Why a CDA or PDF may not go in (also for ``relais publish`` files); [] when it may."""
    if media_type == "text/xml":
        return cda_problems(content, patient, cda_schema(policy.cda_xsd_dir))
    if media_type == text_report.MEDIA:  # the report's text; the PDF with it, if any
        pdf = text_report.decode_text_report(content).pdf
        return pdf_problems(pdf) if pdf is not None else []
    return pdf_problems(content)


def check_content(message: Hl7Message, document: EmbeddedDocument, policy: DoorPolicy) -> None:
    """The document itself: a safe, valid CDA about PID's patient, or a PDF without scripts."""
    problems = content_problems(document.content, document.media_type, message.patient, policy)
    if not problems:
        return
    patient_rules = [p for p in problems if p.startswith("patient-")]
    shown = "; ".join(problems[:MAX_SHOWN])
    more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
    raise Hl7ValidationError(
        f"document OBX-1 {document.set_id} refused: {shown}{more}",
        hl7_error_code="207",
        app_error_code="904" if patient_rules else "906",
        location="OBX-5",
    )
