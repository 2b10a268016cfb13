"""HL7 v2 business acknowledgements ``ZAM`` for the producer (pure, no I/O).

CI-SIS transmission volet (samples in ../shared/data/hl7v2/ZAM_*.hl7): one ZAM per
outcome of a delivery the producer asked for, message structure ``ZAM_Z01``::

    MSH|^~\\&|<Relais app>|<Relais facility>|<producer app>|<producer facility>|<ts>||
        ZAM^<Z0n>^ZAM_Z01|<control id>|P|2.6|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2
    EVN||<ts>
    OBX|1|CWE|<ACK code>^<label>^AckMetierZAM|<original MSH-10>|Y|N^^expandedYes-NoIndicator||||||F|
    OBX|2|XTN|<party code>^<label>^AckMetierZAM||^^X.400^<address>||||||F|     (when known)
    ERR|||207^Application internal error^messageErrorCondition|E|<code>^<label>^<table>|||<text>
                                                      (on N; ERR-4 W for a hold, ERR-8 when known)

The kinds form one table, :data:`KINDS`: Z02 (MSSanté delivery, DSN) and Z03
(MSSanté read/processed, MDN) are built here; Z01 (DMP reception) fits the same
shape (``ACK_RECEPTION_DMP``, ERR-5 table ``DMPERRORCODE``) and is in the table
for the DMP sink to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final

from producers.hl7.segments import escape


@dataclass(frozen=True)
class AckKind:
    """One ZAM trigger: the OBX-3 codes and the ERR-5 error table."""

    trigger: str
    ack_code: str
    ack_label: str
    party_code: str | None
    party_label: str | None
    error_table: str


KINDS: Final = MappingProxyType(
    {
        "Z01": AckKind(
            "Z01", "ACK_RECEPTION_DMP", "Accusé de réception DMP", None, None, "DMPERRORCODE"
        ),
        "Z02": AckKind(
            "Z02",
            "ACK_RECEPTION_MSS",
            "Accusé de réception MSSanté",
            "DESTINATAIRE_MSS",
            "Destinataire MSSanté",
            "SMTPERRORCODE",
        ),
        "Z03": AckKind(
            "Z03",
            "ACK_LECTURE_MSS",
            "Accusé de lecture",
            "LECTEUR_MSS",
            "Lecteur du courriel MSSanté",
            "MSSERRORCODE",
        ),
    }
)


@dataclass(frozen=True)
class BusinessAck:
    """What one ZAM says, and to whom (the producer named in the original MSH-3/4)."""

    kind: str  # Z01 | Z02 | Z03
    accepted: bool
    original_control_id: str
    producer_application: str
    producer_facility: str
    relais_application: str = "RELAIS"
    relais_facility: str = "RELAIS"
    party_address: str | None = None  # the mailbox that received / read the mail
    error: tuple[str, str] | None = None  # (code, label) for ERR-5
    #: ERR-4 (HL7 table 0516): E a refusal, W not delivered yet (held: it may still be)
    severity: str = "E"
    #: ERR-8 user message: what a hospital engineer can do about it (codes and ids only)
    text: str | None = None
    #: ERR-5.3 when the code is not the destination's own (Relais's codes: ``99RELAIS``)
    error_table: str | None = None


def build_business_ack(ack: BusinessAck, *, control_id: str, now: datetime) -> bytes:
    """The ZAM message, segments separated by CR."""
    kind = KINDS.get(ack.kind)
    if kind is None:
        raise ValueError(f"unknown business ack kind {ack.kind!r}; expected {', '.join(KINDS)}")
    ts = now.strftime("%Y%m%d%H%M%S")
    segments = [
        _msh(ack, kind, control_id, ts),
        f"EVN||{ts}",
        f"OBX|1|CWE|{kind.ack_code}^{kind.ack_label}^AckMetierZAM|"
        f"{escape(ack.original_control_id)}|{'Y' if ack.accepted else 'N'}^^expandedYes-NoIndicator"
        "||||||F|",
    ]
    if kind.party_code and ack.party_address:
        segments.append(
            f"OBX|2|XTN|{kind.party_code}^{kind.party_label}^AckMetierZAM||"
            f"^^X.400^{escape(ack.party_address)}||||||F|"
        )
    if not ack.accepted and ack.error is not None:
        code, label = ack.error
        text = f"|||{escape(ack.text)}" if ack.text else ""
        segments.append(
            f"ERR|||207^Application internal error^messageErrorCondition|{escape(ack.severity)}|"
            f"{escape(code)}^{escape(label)}^{ack.error_table or kind.error_table}{text}"
        )
    return ("\r".join(segments) + "\r").encode("utf-8")


def _msh(ack: BusinessAck, kind: AckKind, control_id: str, ts: str) -> str:
    """MSH of a ZAM: from Relais to the producer, v2.6, UTF-8, the CI-SIS profile 2.1."""
    return "|".join(
        [
            "MSH",
            "^~\\&",
            escape(ack.relais_application),
            escape(ack.relais_facility),
            escape(ack.producer_application),
            escape(ack.producer_facility),
            ts,
            "",
            f"ZAM^{kind.trigger}^ZAM_Z01",
            escape(control_id),
            "P",
            "2.6",
            "",
            "",
            "",
            "",
            "FRA",
            "UNICODE UTF-8",
            "",
            "",
            "2.1^CISIS_CDA_HL7_V2",
        ]
    )
