"""Message-level HL7 v2 rules read before the content: cardinality, MSH-10, MSH-11, MSH-21.

Refused here rather than guessed at downstream (issue "the door"): a second PID would
file one patient's document under another's; a test message must never reach a patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from producers.hl7.segments import MessageHeader, Segment

_MSH10_MAX: Final = 20  # HL7 v2.5 MSH-10 is ST(20); v2.6 allows 199
#: MSH-11 (HL7 table 0103): P reaches production destinations; T and D go to the test topic.
PROCESSING_IDS: Final = frozenset({"P", "T", "D"})
LPS_PROFILE: Final = "CISIS_CDA_HL7_LPS"
LPS_REFUSAL: Final = (
    "MSH-21 names the LPS profile (CISIS_CDA_HL7_LPS): that profile carries documents a PFI "
    "received by MSSanté to a DPI, it is not a way to transmit documents to Relais; send them "
    "with the 'Transmission de documents CDA en HL7v2' profile (MSH-21 2.1^CISIS_CDA_HL7_V2)"
)


def check_cardinality(segments: Sequence[Segment]) -> None:
    """One patient and (MDM) one TXA per message: a second one is refused, never guessed at.

    A repeated PATIENT_RESULT group would otherwise file the second patient's document
    under the first PID; a message per patient is what the volet and MSSanté expect.
    """
    for name, what in (("PID", "patient"), ("TXA", "document header")):
        found = [s for s in segments if s.name == name]
        if len(found) > 1:
            raise found[1].error(
                None,
                f"this message has {len(found)} {name} segments; Relais accepts one "
                f"{what} per message: send one message per {what}",
                "198",
                "906",
            )


def check_control_id(msh: Segment, header: MessageHeader) -> None:
    limit = 199 if header.version.startswith("2.6") else _MSH10_MAX
    if len(header.control_id) > limit:
        raise msh.error(
            10,
            f"MSH-10 (message control id) has {len(header.control_id)} characters; "
            f"HL7 {header.version[:3]} allows {limit}",
            "102",
        )


def check_processing(msh: Segment, header: MessageHeader) -> None:
    if header.processing_id not in PROCESSING_IDS:
        raise msh.error(
            11,
            f"MSH-11 (processing id) is '{shown(header.processing_id)}'; send P (production), "
            "T (training/test) or D (debugging)",
            "202",
        )


def shown(value: str) -> str:
    """A code quoted back to the sender (never patient data), kept short and printable."""
    return "".join(c if c.isprintable() else "?" for c in value[:24])
