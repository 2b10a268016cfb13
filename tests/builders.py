"""Records the tests need in the shape a stage would have made them."""

from __future__ import annotations

from datetime import datetime

from ops.demo.samples import Patient
from relais.contracts import Record

CARRIED = ("event_id", "submitted_at", "sector", "source", "patient", "document", "hints")


def qualified(submitted: Record, now: datetime, status: str = "QUAL") -> Record:
    """The IdentityQualified record the identity stage emits for ``submitted``."""
    record = {f: submitted[f] for f in CARRIED}
    return record | {"qualified_at": now, "identity_status": status, "identity_attributes": []}


IPP = "000002^^^CHU-X&000897406&N^PI"


def adt_message(
    patient: Patient,
    trigger: str,
    reliability: str,
    *,
    control_id: str = "",
    merged_ipp: str | None = None,
    ipp: str | None = None,
    facility: str = "RELAIS-DEMO",
) -> bytes:
    """An ADT^A01/A04/A08/A40 from ``facility`` (the demo documents' facility by default)."""
    given = patient.given.split()
    pid = (
        f"PID|||{patient.ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
        f"{'~' + ipp if ipp else ''}||"
        f"{patient.family}^{given[0]}^{patient.given}^^^^L||{patient.birth_date}|"
        f"{patient.sex}|||^^^^^^BDL^^{patient.birthplace}" + "|" * 21 + reliability
    )
    segments = [
        f"MSH|^~\\&|GAM|{facility}|RELAIS|RELAIS|20261122||ADT^{trigger}^ADT_A01|"
        f"{control_id or 'ADT' + trigger}|P|2.5|||||FRA|UNICODE UTF-8",
        "EVN||20261122",
        pid,
    ]
    if merged_ipp:
        segments.append(f"MRG|{merged_ipp}")
    segments.append("PV1|1|I")
    return ("\r".join(segments) + "\r").encode()


def ipp_only(raw: bytes, patient: Patient, ipp: str = IPP) -> bytes:
    """The same message with the patient known by a local id (IPP) only, no INS."""
    ins = f"{patient.ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
    return raw.replace(ins.encode(), ipp.encode())
