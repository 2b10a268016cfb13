"""CDA and PDF files as producer inputs, described by a small JSON sidecar (pure).

A CDA R2 file says most of what Relais needs in its header (document id,
type, patient INS and traits); a PDF says nothing, so its sidecar does. The
sidecar sits next to the document as ``<name>.json`` (``report.pdf`` ->
``report.json`` or ``report.pdf.json``)::

    {
      "sector": "RADIOLOGY",
      "sender": {"facility": "CH-EXEMPLE", "application": "RIS"},
      "identity_reliability": "QUAL",
      "flags": {"DESTDMP": true},
      "recipients": ["dr.exemple@test.mssante.fr"],
      "document": {"type_code": "18748-4", "type_label": "CR d'imagerie",
                   "unique_id": "1.2.250.1.999.1.42", "action": "SUBMIT"},
      "patient": {"ins": "...", "ins_oid": "1.2.250.1.213.1.4.10", "birth_name": "...",
                  "given_names": "...", "birth_date": "19790328", "sex": "F",
                  "birthplace_code": "63220"}
    }

``document`` and ``patient`` are required for a PDF and ignored for a CDA
(whose header is authoritative); the identity status is never in a CDA, so
without ``identity_reliability`` the identity counts as provisional and the
document waits in the identity stage.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lxml import etree

from domain.document_id import HL7V3, cda_id, safe_parser, xpath_strings
from domain.ins import INS_OIDS
from producers.hl7.message import PatientIdentity
from producers.submission import SECTORS, Delivery, DocumentInput, Origin


class DocumentFileError(ValueError):
    """A file or its sidecar cannot be published; the message says what to fix."""


@dataclass(frozen=True)
class FileSubmission:
    document: DocumentInput
    patient: PatientIdentity
    origin: Origin
    delivery: Delivery
    sector: str


def sidecar_path(path: Path) -> Path | None:
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> dict[str, Any]:
    found = sidecar_path(path)
    if found is None:
        return {}
    try:
        data = json.loads(found.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentFileError(f"{found}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DocumentFileError(f"{found}: expected a JSON object")
    return data


def _text(data: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise DocumentFileError(f"{where}: '{key}' is required")
        return ""
    if not isinstance(value, str):
        raise DocumentFileError(f"{where}: '{key}' must be a string")
    return value


def cda_patient(root: etree._Element, reliability: str | None) -> PatientIdentity:
    """INS, traits and local ids from ``recordTarget/patientRole``."""
    base = "v3:recordTarget/v3:patientRole"
    ins = ins_oid = None
    local: list[tuple[str, str]] = []
    for element in root.iterfind(f"{base}/v3:id", {"v3": HL7V3}):
        oid, extension = element.get("root", ""), element.get("extension", "")
        if oid in INS_OIDS and ins is None:
            ins, ins_oid = extension, oid
        elif extension:
            local.append((extension, oid))
    person = f"{base}/v3:patient"
    family = xpath_strings(root, f"{person}/v3:name/v3:family[@qualifier='BR']/text()")
    given = xpath_strings(root, f"{person}/v3:name/v3:given[not(@qualifier)]/text()")
    return PatientIdentity(
        ins=ins,
        ins_oid=ins_oid,
        local_ids=tuple(local),
        birth_name=family[0] if family else "",
        given_names=" ".join(given),
        birth_date=next(iter(xpath_strings(root, f"{person}/v3:birthTime/@value")), "")[:8],
        sex=next(iter(xpath_strings(root, f"{person}/v3:administrativeGenderCode/@code")), ""),
        birthplace_code=next(
            iter(xpath_strings(root, f"{person}/v3:birthplace/v3:place/v3:addr/v3:county/text()")),
            None,
        ),
        reliability=reliability,
    )


def _cda_document(content: bytes, path: Path) -> tuple[DocumentInput, etree._Element]:
    try:
        root = etree.fromstring(content, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise DocumentFileError(f"{path}: not well-formed XML (line {exc.lineno})") from None
    doc_id = cda_id(content)
    if doc_id is None:
        raise DocumentFileError(f"{path}: not a CDA R2 ClinicalDocument with an id")
    code = xpath_strings(root, "v3:code/@code")
    if not code:
        raise DocumentFileError(f"{path}: ClinicalDocument/code (document type) is missing")
    label = xpath_strings(root, "v3:code/@displayName") or xpath_strings(root, "v3:title/text()")
    document = DocumentInput(
        content=content,
        media_type="text/xml",
        type_code=code[0],
        type_label=label[0] if label else code[0],
        unique_id=doc_id,
    )
    return document, root


def _pdf_document(content: bytes, meta: dict[str, Any], where: str) -> DocumentInput:
    if not content.startswith(b"%PDF-"):
        raise DocumentFileError(f"{where}: not a PDF (no %PDF- header)")
    action = _text(meta, "action", where, required=False) or "SUBMIT"
    if action not in {"SUBMIT", "REPLACE", "DELETE"}:
        raise DocumentFileError(f"{where}: 'action' is SUBMIT, REPLACE or DELETE")
    return DocumentInput(
        content=content,
        media_type="application/pdf",
        type_code=_text(meta, "type_code", where),
        type_label=_text(meta, "type_label", where),
        unique_id=_text(meta, "unique_id", where),
        action=action,
        parent_unique_id=_text(meta, "parent_unique_id", where, required=False) or None,
    )


def _sidecar_patient(data: dict[str, Any], reliability: str | None, where: str) -> PatientIdentity:
    return PatientIdentity(
        ins=_text(data, "ins", where),
        ins_oid=_text(data, "ins_oid", where),
        local_ids=(),
        birth_name=_text(data, "birth_name", where),
        given_names=_text(data, "given_names", where),
        birth_date=_text(data, "birth_date", where),
        sex=_text(data, "sex", where),
        birthplace_code=_text(data, "birthplace_code", where, required=False) or None,
        reliability=reliability,
    )


def load_document_file(path: Path, content: bytes, sector: str | None) -> FileSubmission:
    """Describe a CDA or PDF file (and its sidecar) as a producer input."""
    if not (content.lstrip().startswith(b"<") or content.startswith(b"%PDF-")):
        raise DocumentFileError(f"{path}: not an HL7 v2 message, a CDA R2 document or a PDF")
    meta = read_sidecar(path)
    where = str(sidecar_path(path) or f"{path} (no sidecar)")
    chosen = sector or _text(meta, "sector", where, required=False) or ""
    if chosen not in SECTORS:
        raise DocumentFileError(
            f"{path}: give --sector or a sidecar 'sector' ({', '.join(SECTORS)})"
        )
    reliability = _text(meta, "identity_reliability", where, required=False) or None
    if content.lstrip().startswith(b"<"):
        document, root = _cda_document(content, path)
        patient = cda_patient(root, reliability)
    else:
        document = _pdf_document(content, dict(meta.get("document") or {}), f"{where}: document")
        patient = _sidecar_patient(
            dict(meta.get("patient") or {}), reliability, f"{where}: patient"
        )
    if not patient.ins:
        raise DocumentFileError(f"{path}: no INS (recordTarget id under an INS OID, or sidecar)")
    sender = dict(meta.get("sender") or {})
    origin = Origin(
        facility=str(sender.get("facility") or "UNKNOWN"),
        application=str(sender.get("application") or "relais-publish"),
        control_id="FILE-" + hashlib.sha256(content).hexdigest()[:16],
        message_type="CDA" if document.media_type == "text/xml" else "PDF",
    )
    flags = {str(k): bool(v) for k, v in dict(meta.get("flags") or {}).items()}
    recipients = tuple(str(r) for r in meta.get("recipients") or ())
    return FileSubmission(document, patient, origin, Delivery(flags, recipients), chosen)
