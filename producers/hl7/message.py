"""Pure HL7 v2 reading for the producers side (no I/O): ``parse_message``.

Supported (CI-SIS volet "Transmission de document(s) CDA en HL7v2", IHE PAM FR):
``ORU^R01`` v2.5 (1 or 2 document OBX; ORC-1 NW/RO/CA must match OBX-11 F/C/D),
``MDM^T02|T10|T04`` v2.6 (one document OBX, TXA; OBX-11 F/C/D) and
``ADT^A01|A04|A08|A40`` v2.5.x (identity only). The splitting and decoding live
in ``producers.hl7.segments``, the patient (PID) in ``producers.hl7.patient``; this
module holds the message model and the volet rules.
Error messages name fields, never their patient data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Final

from domain.lab_results import LabResult
from producers.hl7 import text_report
from producers.hl7.consent import DmpConsent, read_consent
from producers.hl7.errors import Hl7ValidationError
from producers.hl7.patient import PatientIdentity, read_patient
from producers.hl7.results import lab_results
from producers.hl7.rules import (
    LPS_PROFILE,
    LPS_REFUSAL,
    check_cardinality,
    check_control_id,
    check_processing,
)
from producers.hl7.segments import (
    CHARSETS,
    MessageHeader,
    Segment,
    component,
    decode_message,
    load_segments,
    read_header,
    read_msh,
)

__all__ = [
    "CHARSETS",
    "DOCUMENT_TYPES",
    "IDENTITY_TYPES",
    "EmbeddedDocument",
    "Hl7Message",
    "MessageHeader",
    "Participant",
    "PatientIdentity",
    "decode_message",
    "message_digest",
    "parse_message",
    "read_header",
]

DOCUMENT_TYPES: Final = frozenset({"ORU^R01", "MDM^T02", "MDM^T10", "MDM^T04"})
IDENTITY_TYPES: Final = frozenset({"ADT^A01", "ADT^A04", "ADT^A08", "ADT^A40"})
META_CODING_SYSTEM: Final = "METADMPMSS"
_ORC_STATUS: Final = MappingProxyType({"NW": "F", "RO": "C", "CA": "D"})
_MDM_STATUS: Final = MappingProxyType({"MDM^T02": "F", "MDM^T10": "C", "MDM^T04": "D"})
_MEDIA_TYPES: Final = MappingProxyType({"XML": "text/xml", "PDF": "application/pdf"})
_OID_RE: Final = re.compile(r"[0-2](?:\.[0-9]+)+")


@dataclass(frozen=True)
class Participant:
    """PRT: role (SB, RCT, REPLY), PRT-5 person, PRT-8 organisation, PRT-15.4 address."""

    role: str
    person_id: str | None
    family: str | None
    given: str | None
    id_authority_oid: str | None
    organisation_id: str | None
    address: str | None


@dataclass(frozen=True)
class EmbeddedDocument:
    """A document OBX (OBX-2 ED): OBX-3 type, OBX-5.5 decoded, OBX-11 F/C/D, OBX-1."""

    type_code: str
    type_label: str
    coding_system: str
    media_type: str
    content: bytes
    result_status: str
    set_id: int


@dataclass(frozen=True)
class Hl7Message(MessageHeader):
    """A supported message: the MSH fields (inherited) plus what the bus needs."""

    patient: PatientIdentity
    documents: tuple[EmbeddedDocument, ...]
    participants: tuple[Participant, ...]
    flags: Mapping[str, bool] = field(hash=False)  # MetaDMPMSS code -> Y/N
    mail_bodies: Mapping[str, str] = field(hash=False)  # CORPSMAIL_PS / CORPSMAIL_PATIENT
    order_control: str | None
    document_unique_id: str | None
    parent_document_id: str | None
    visit_class: str | None
    merged_ids: tuple[tuple[str, str], ...] = ()  # ADT^A40: MRG-1 ids of the absorbed record
    results: tuple[LabResult, ...] = ()  # ORU^R01: structured results (OBX NM/ST/CE...)
    dmp_consent: DmpConsent | None = None  # ADT A01/A04/A08: PAM FR ZFA (consent.py)

    def __reduce__(self) -> tuple[object, tuple[dict[str, object]]]:
        """Pickled (the gateway's worker pool) with its read-only mappings as plain dicts."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(flags=dict(self.flags), mail_bodies=dict(self.mail_bodies))
        return _unpickle_message, (values,)


def _unpickle_message(values: dict[str, object]) -> Hl7Message:
    for name in ("flags", "mail_bodies"):
        values[name] = MappingProxyType(values[name])  # type: ignore[arg-type]
    return Hl7Message(**values)  # type: ignore[arg-type]


def message_digest(raw: bytes) -> str:
    """SHA-256 hex of the raw bytes: what logs may show instead of the content."""
    return hashlib.sha256(raw).hexdigest()


def _opt(value: str) -> str | None:
    return value or None


def parse_message(raw: bytes) -> Hl7Message:
    """Parse and check one inbound message; raises ``Hl7ParseError`` or ``Hl7ValidationError``."""
    segments = load_segments(decode_message(raw))
    header = read_msh(segments[0])
    _check_header(segments[0], header)
    kind = header.message_type
    is_document = kind in DOCUMENT_TYPES
    check_cardinality(segments)
    patient = read_patient(_required(segments, "PID"), strict=is_document)
    obx = [s for s in segments if s.name == "OBX"]
    meta = [s for s in obx if _is_metadata(s)]
    doc_obx = [s for s in obx if s.get(2) == "ED" and not _is_metadata(s)] if is_document else []
    documents = tuple(_document(s) for s in doc_obx)
    report = _text_report(kind, segments, documents) if is_document else None
    if report is not None:  # a report sent as text: one document the transcode stage builds
        documents = (report,)
    elif is_document:
        _check_documents(kind, segments, doc_obx)
    unique_id, parent_id = _document_ids(kind, segments)
    flags, bodies = _metadata(meta, CHARSETS[header.charset.strip().upper()])
    orc, pv1 = _first(segments, "ORC"), _first(segments, "PV1")
    return Hl7Message(
        **vars(header),
        patient=patient,
        documents=documents,
        participants=tuple(_participant(s) for s in segments if s.name == "PRT"),
        flags=MappingProxyType(flags),
        mail_bodies=MappingProxyType(bodies),
        order_control=_opt(orc.get(1)) if orc else None,
        document_unique_id=unique_id,
        parent_document_id=parent_id,
        visit_class=_opt(pv1.get(2)) if pv1 else None,
        merged_ids=_merged_ids(segments) if kind == "ADT^A40" else (),
        dmp_consent=read_consent(segments, kind),
        results=lab_results([s for s in obx if not _is_metadata(s)])
        if kind == "ORU^R01" and report is None
        else (),
    )


def _text_report(
    kind: str, segments: Sequence[Segment], documents: tuple[EmbeddedDocument, ...]
) -> EmbeddedDocument | None:
    """A report sent as text (:mod:`producers.hl7.text_report`), its PDF with it, or None."""
    media = {d.media_type: d.content for d in reversed(documents)}
    if not text_report.is_text_report(kind, segments, "text/xml" in media):
        return None
    report, status = text_report.read_text_report(kind, segments, media.get("application/pdf"))
    content = text_report.encode_text_report(report)
    label = report.type_label
    return EmbeddedDocument(report.type_code, label, "LN", text_report.MEDIA, content, status, 1)


def _merged_ids(segments: Sequence[Segment]) -> tuple[tuple[str, str], ...]:
    """MRG-1 of a merge: the identifiers of the record absorbed into PID's."""
    mrg = _required(segments, "MRG")
    ids = tuple(
        (component(rep, 1), component(rep, 4, 1) or component(rep, 4, 2))  # as PID-3 local ids
        for rep in mrg.reps(1)
        if component(rep, 1)
    )
    if not ids or not all(authority for _, authority in ids):
        raise mrg.error(
            1, "MRG-1 needs the absorbed identifiers with their authority (CX.4)", "101"
        )
    return ids


def _is_metadata(obx: Segment) -> bool:
    return obx.get(3, 3).upper() == META_CODING_SYSTEM


def _first(segments: Sequence[Segment], name: str) -> Segment | None:
    return next((s for s in segments if s.name == name), None)


def _required(segments: Sequence[Segment], name: str) -> Segment:
    found = _first(segments, name)
    if found is None:
        raise Hl7ValidationError(
            f"the {name} segment is required in this message", hl7_error_code="101", location=name
        )
    return found


def _shown(value: str) -> str:
    """A code quoted back to the sender (never patient data), kept short and printable."""
    return "".join(c if c.isprintable() else "?" for c in value[:24])


def _check_header(msh: Segment, header: MessageHeader) -> None:
    required = {9: header.message_type, 10: header.control_id, 12: header.version}
    labels = {9: "message type", 10: "message control id", 12: "version id"}
    for num, value in required.items():
        if not value:
            raise msh.error(num, f"MSH-{num} ({labels[num]}) is required", "101")
    check_control_id(msh, header)
    check_processing(msh, header)
    if LPS_PROFILE in header.profile.upper():
        raise msh.error(21, LPS_REFUSAL, "103", "906")
    kind, version = header.message_type, header.version
    if kind not in DOCUMENT_TYPES | IDENTITY_TYPES:
        raise msh.error(
            9,
            f"message type '{_shown(kind)}' is not accepted; send ORU^R01, "
            "MDM^T02/T10/T04 or ADT^A01/A04/A08/A40",
            "200",
        )
    wanted = {"ORU": "2.5", "MDM": "2.6"}.get(kind[:3])
    if wanted is None and (version == "2.5" or version.startswith("2.5.")):
        return
    if version != wanted:
        raise msh.error(
            12,
            f"{kind} must be sent as HL7 version {wanted or '2.5'} (MSH-12 is '{_shown(version)}')",
            "203",
        )


def _document(obx: Segment) -> EmbeddedDocument:
    code, system = obx.get(3, 1), obx.get(3, 3)
    if not code or not system:
        raise obx.error(3, "OBX-3 must give the document type code and its coding system", "101")
    if system.upper() not in ("LN", "TRE_A05"):
        raise obx.error(3, "OBX-3.3 (document type coding system) must be LN or TRE_A05", "103")
    media_type = _MEDIA_TYPES.get(obx.get(5, 3).upper())
    if media_type is None:
        raise obx.error(5, "OBX-5.3 must be XML (CDA) or PDF", "103")
    if obx.get(5, 4).upper() != "BASE64":
        raise obx.error(5, "OBX-5.4 must be Base64", "102")
    return EmbeddedDocument(
        type_code=code,
        type_label=obx.get(3, 2),
        coding_system=system,
        media_type=media_type,
        content=_base64(obx, strict=True),
        result_status=obx.get(11),
        set_id=_set_id(obx),
    )


def _base64(obx: Segment, *, strict: bool) -> bytes:
    data = obx.get(5, 5)
    if not data:
        raise obx.error(5, "OBX-5.5 must hold the base64-encoded data", "101")
    if not strict:  # mail bodies: tolerate a missing padding or a cut last character
        data = data.rstrip("=")
        data = data[:-1] if len(data) % 4 == 1 else data
        data += "=" * (-len(data) % 4)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise obx.error(
            5, "OBX-5.5 is not valid base64 (A-Z a-z 0-9 + / only, padded with =)", "102"
        ) from None


def _set_id(obx: Segment) -> int:
    value = obx.get(1)
    if not value:
        return obx.sequence
    if not re.fullmatch(r"[0-9]{1,9}", value):
        raise obx.error(1, "OBX-1 (set id) must be a number", "102")
    return int(value)


def _check_documents(kind: str, segments: Sequence[Segment], doc_obx: Sequence[Segment]) -> None:
    if not doc_obx:
        raise Hl7ValidationError(
            "the message needs an OBX with OBX-2 = ED carrying the document "
            "(OBX-3 = its type, coding system LN or TRE_A05)",
            hl7_error_code="101",
            location="OBX",
        )
    limit = 2 if kind == "ORU^R01" else 1
    if len(doc_obx) > limit:
        raise doc_obx[limit].error(None, f"{kind} carries at most {limit} document OBX", "198")
    expected, source = _expected_status(kind, segments)
    for obx in doc_obx:
        if obx.get(11) != expected:
            raise obx.error(
                11,
                f"OBX-11 is '{_shown(obx.get(11))}' but {source} requires '{expected}' "
                "(F initial, C replacement, D deletion)",
                "207",
                "906",
            )


def _expected_status(kind: str, segments: Sequence[Segment]) -> tuple[str, str]:
    if kind != "ORU^R01":
        return _MDM_STATUS[kind], f"MSH-9 '{kind}'"
    orc = _required(segments, "ORC")
    control = orc.get(1)
    if not control:
        raise orc.error(1, "ORC-1 is required (NW new, RO replacement, CA deletion)", "101")
    if control not in _ORC_STATUS:
        raise orc.error(1, "ORC-1 must be NW (new), RO (replacement) or CA (deletion)", "103")
    return _ORC_STATUS[control], f"ORC-1 '{control}'"


def _document_ids(kind: str, segments: Sequence[Segment]) -> tuple[str | None, str | None]:
    """Unique id (and parent id) as ``root^extension`` when EI.3 is given, else EI.1."""
    if kind == "ORU^R01":
        obr = _first(segments, "OBR")
        return (_opt(obr.get(3)) if obr else None), None
    if kind not in DOCUMENT_TYPES:
        return None, None
    txa = _required(segments, "TXA")
    unique, parent = _entity_id(txa, 12), _entity_id(txa, 13)
    if not unique:
        raise txa.error(12, "TXA-12 must hold the unique id of the document (the CDA id)", "101")
    if kind == "MDM^T10" and not parent:
        raise txa.error(13, "MDM^T10 is a replacement: TXA-13 must hold the replaced id", "101")
    return unique, parent or None


def _entity_id(seg: Segment, num: int) -> str:
    extension, root = seg.get(num, 1), seg.get(num, 3)
    return f"{root}^{extension}" if root and extension else extension or root


def _metadata(meta: Sequence[Segment], codec: str) -> tuple[dict[str, bool], dict[str, str]]:
    flags: dict[str, bool] = {}
    bodies: dict[str, str] = {}
    for obx in meta:
        code = obx.get(3)
        if obx.get(2) == "ED":
            bodies[code] = _text(_base64(obx, strict=False), codec)
            continue
        value = obx.get(5)
        if value not in ("Y", "N"):
            message = f"OBX-5 of {_shown(code)} must be Y or N"
            raise obx.error(5, message, "103" if value else "101")
        flags[code] = value == "Y"
    return flags, bodies


def _text(data: bytes, codec: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace")


def _participant(prt: Segment) -> Participant:
    authority = prt.get(5, 9, 2) or prt.get(5, 9, 1)
    address = next((a for rep in prt.reps(15) if (a := component(rep, 4))), "")
    return Participant(
        role=prt.get(4),
        person_id=_opt(prt.get(5)),
        family=_opt(prt.get(5, 2)),
        given=_opt(prt.get(5, 3)),
        id_authority_oid=authority if _OID_RE.fullmatch(authority) else None,
        organisation_id=_opt(prt.get(8, 10) or prt.get(8, 1)),
        address=_opt(address),
    )
