"""The transcode stage: produce a deliverable CI-SIS CDA R2 document (pure core).

Documents that are CDA already are checked and passed through. A PDF is wrapped
as an N1 CDA (:mod:`streams.transcode.cda_wrap`), HL7 lab results become a
CR-BIO N3 (:mod:`streams.transcode.lab_report`, coded with each laboratory's
catalogue, :mod:`streams.transcode.lab_catalogue`) and a report sent as text a
CR-IMG or LDL-SES N3, or an N1 saying why not (:mod:`streams.transcode.ris_report`,
docs/cda.md); Relais gives those CDAs their ids and versions
(:mod:`streams.transcode.document_series`). Every CDA,
received or built, is then checked the same way: well-formed XML (parsed
without network or entity expansion), a ``ClinicalDocument`` in the HL7 v3
namespace, whose ``recordTarget`` carries the same INS as the message (PID-3
must equal the CDA ids), whose ``id`` is the document's unique id, that follows
the CI-SIS header rules and, when ``RELAIS_CDA_XSD_DIR`` names the CDA R2
schema, validates against it. The CI-SIS model is named from the templateIds.
Anything else is dead-lettered with the validation messages, never sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, NoReturn

from lxml import etree

from domain.cda_validate import CdaSchema, header_problems_of
from domain.document_id import HL7V3, cda_id_of, parse, root_problems, safe_parser, xpath_strings
from domain.hl7_time import Hl7TimeError, instant
from domain.ins import INS_OIDS
from domain.lab_results import LAB_REPORT_MEDIA
from producers.hl7.text_report import MEDIA as TEXT_REPORT_MEDIA
from relais.audit import audit_event
from relais.contracts import Record
from relais.deadletter import StageFailure
from relais.topics import AUDIT, QUALIFIED, READY
from streams.stage import Output, Stage, StageContext, read_traits
from streams.transcode.cda_wrap import wrap_pdf
from streams.transcode.document_series import State, Version, assign, latest
from streams.transcode.lab_report import LabReferences, build_lab_report, traffic_findings
from streams.transcode.ris_report import build_text_report

NS: Final = {"v3": HL7V3}
MODELS: Final = {
    "1.2.250.1.213.1.1.1.55": "CR-BIO",
    "1.2.250.1.213.1.1.1.45": "CR-IMG",
    "1.2.250.1.213.1.1.1.29": "LDL-SES",
    "1.3.6.1.4.1.19376.1.2.20": "N1 (XDS-SD)",
}


class TranscodeFailure(StageFailure):
    reason_code = "cda-invalid"


def parse_cda(content: bytes) -> etree._Element:
    """The document's root, parsed once (no network, no entity expansion)."""
    try:
        root = etree.fromstring(content, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise TranscodeFailure(
            f"document is not well-formed XML: line {exc.lineno}: {exc.msg}",
            reason_code="cda-not-well-formed",
        ) from None
    if root.tag != f"{{{HL7V3}}}ClinicalDocument":
        raise TranscodeFailure(f"root element is {root.tag}, not an HL7 v3 ClinicalDocument")
    return root


def check_cda(
    content: bytes, *, ins: str | None, unique_id: str, ins_oid: str | None = None
) -> str:
    """Check a CDA document; return its CI-SIS model name."""
    return check_root(parse_cda(content), ins=ins, unique_id=unique_id, ins_oid=ins_oid)


def check_root(
    root: etree._Element, *, ins: str | None, unique_id: str, ins_oid: str | None = None
) -> str:
    """:func:`check_cda` on a parsed document."""
    if cda_id_of(root) != unique_id:
        raise TranscodeFailure("ClinicalDocument/id differs from the document id the sender gave")
    patient_ids = [
        extension
        for oid in ([ins_oid] if ins_oid else sorted(INS_OIDS))
        for extension in xpath_strings(
            root, "v3:recordTarget/v3:patientRole/v3:id[@root=$oid]/@extension", oid=oid
        )
    ]
    if ins and ins not in patient_ids:
        raise TranscodeFailure(
            "recordTarget does not carry the INS of the message (PID-3 must equal the CDA ids)",
            reason_code="cda-ins-mismatch",
        )
    templates = xpath_strings(root, "v3:templateId/@root")
    level = "N3" if root.find("v3:component/v3:structuredBody", NS) is not None else "N1"
    model = next((MODELS[t] for t in templates if t in MODELS), "CDA R2")
    return f"{model} {level}" if "N1" not in model else model


DICOM_MODALITY: Final = "1.2.840.10008.2.16.4"
_MODALITIES: Final = (
    "v3:documentationOf/v3:serviceEvent/v3:code/v3:translation[@codeSystem=$system]/@code"
)


def modalities(content: bytes) -> list[str]:
    """The DICOM acquisition modalities a CR-IMG declares (serviceEvent code translations)."""
    return modalities_of(parse_cda(content))


def modalities_of(root: etree._Element) -> list[str]:
    return sorted(set(xpath_strings(root, _MODALITIES, system=DICOM_MODALITY)))


def validate(content: bytes, schema: CdaSchema | None) -> None:
    """CI-SIS header rules always; the CDA R2 schema when one is configured."""
    root, problems = parse(content)
    if root is None:
        _refuse_header(problems)
    else:
        validate_root(root, schema)


def validate_root(root: etree._Element, schema: CdaSchema | None) -> None:
    """:func:`validate` on the document the stage already parsed."""
    problems = root_problems(root) or header_problems_of(root)
    if problems:
        _refuse_header(problems)
    errors = schema.validate_root(root) if schema is not None else []
    if errors:
        raise TranscodeFailure(
            "CDA does not validate against the CDA R2 schema: " + "; ".join(errors[:10]),
            reason_code="cda-schema-invalid",
        )


def _refuse_header(problems: list[str]) -> NoReturn:
    raise TranscodeFailure(
        "CDA header breaks CI-SIS rules: " + "; ".join(problems),
        reason_code="cda-header-invalid",
    )


def _as_cda(
    document: Record, cda: bytes, version: Version, event_id: str, ctx: StageContext
) -> Record:
    """The document record now carrying the CDA (stored once, for the same event)."""
    content = ctx.seal_content(cda, unique_id=version.cda_id, event_id=event_id)
    return {
        **document,
        "unique_id": version.cda_id,
        "media_type": "text/xml",
        "content_sha256": hashlib.sha256(cda).hexdigest(),
        "size_bytes": len(cda),
        "content": content,
        "parent_unique_id": version.replaces,
    }


MEDIA: Final = frozenset({"text/xml", "application/pdf", LAB_REPORT_MEDIA, TEXT_REPORT_MEDIA})


def transcode_stage(schema: CdaSchema | None, lab: LabReferences | None = None) -> Stage:
    """The stage, validating every document against ``schema`` (None: header rules only)
    and mapping lab results with ``lab`` (None: lab reports are dead-lettered, saying why)."""

    def handle_validated(record: Record, ctx: StageContext) -> list[Output]:
        return _handle(record, ctx, schema, lab)

    return Stage(
        "transcode",
        QUALIFIED,
        "IdentityQualified",
        handle_validated,
        stateful=True,
        reads_body=True,
    )


def handle(record: Record, ctx: StageContext) -> list[Output]:
    return _handle(record, ctx, None, None)


def _handle(
    record: Record, ctx: StageContext, schema: CdaSchema | None, lab: LabReferences | None
) -> list[Output]:
    document = record["document"]
    _check_media(document["media_type"])
    traits = read_traits(record, ctx)
    state = ctx.state if ctx.state is not None else {}
    built = document["media_type"] != "text/xml"  # Relais builds the CDA, and owns its ids
    if document["action"] == "DELETE":  # it names a document: its bytes are never read
        return [_deletion(record, document, state if built else None)]
    content = ctx.content(record)
    detail: str | None = None
    if built:
        document, content, detail = _build(record, content, traits, state=state, lab=lab, ctx=ctx)
    root = parse_cda(content)
    model = check_root(
        root,
        ins=traits.get("ins"),
        ins_oid=traits.get("ins_oid"),
        unique_id=document["unique_id"],
    )
    validate_root(root, schema)
    ready = _ready(
        record,
        document,
        model=model,
        found_modalities=modalities_of(root),
        ctx=ctx,
        validated=validated_at(root),
    )
    return [ready, _transcoded(record, document, model, detail=detail, ctx=ctx, key=ready.key)]


def _check_media(media_type: str) -> None:
    if media_type not in MEDIA:
        raise TranscodeFailure(
            f"media type {media_type} cannot be transcoded: send a CDA R2, a PDF, "
            "lab results with the report's PDF, or a report as text",
            reason_code="unsupported-media",
        )


def _build(
    record: Record,
    content: bytes,
    traits: Mapping[str, Any],
    *,
    state: State,
    lab: LabReferences | None,
    ctx: StageContext,
) -> tuple[Record, bytes, str | None]:
    """The CDA Relais builds (PDF as N1, lab results as CR-BIO N3, a text report as CR-IMG N3
    or N1), the document record carrying it, and what the audit event says (the lab traffic's
    findings, how a text report was built; None for a PDF)."""
    document = record["document"]
    version = assign(
        state,
        unique_id=document["unique_id"],
        action=document["action"],
        parent_unique_id=document.get("parent_unique_id"),
        event_id=record["event_id"],
    )
    detail: str | None = None
    if document["media_type"] == "application/pdf":
        cda, _ = wrap_pdf(record, content, traits, version)
    elif document["media_type"] == TEXT_REPORT_MEDIA:  # CR-IMG N3, or N1 saying why
        cda, detail = build_text_report(record, content, traits, version)
    else:
        cda, _, coded = build_lab_report(record, content, traits, lab, version)
        assert lab is not None  # build_lab_report refuses lab reports without references
        found = traffic_findings(record["source"]["facility"], coded, lab)
        detail = "\n".join(f.line() for f in found) or None
    return _as_cda(document, cda, version, record["event_id"], ctx), cda, detail


def _transcoded(
    record: Record,
    document: Record,
    model: str,
    *,
    detail: str | None,
    ctx: StageContext,
    key: bytes | None,
) -> Output:
    """The TRANSCODED audit event: the CI-SIS model, and what the lab traffic showed."""
    audit = audit_event(
        event_id=record["event_id"],
        component="transcode",
        action="TRANSCODED",
        outcome=model,
        now=ctx.now,
        document_unique_id=document["unique_id"],
        detail=detail,
    )
    return Output(AUDIT, "AuditEvent", audit, key)


def validated_at(root: etree._Element) -> datetime | None:
    """legalAuthenticator/time: when the responsible professional validated the document."""
    found = xpath_strings(root, "v3:legalAuthenticator/v3:time/@value")
    try:
        return instant(found[0]).at if found else None
    except Hl7TimeError:
        return None  # the header rules already vouched for the time; a bare date has no offset


def _deletion(record: Record, document: Record, state: State | None) -> Output:
    """A deletion names the document to delete; there is no new CDA to build or check.

    For a CDA Relais built, the name is the CDA id of the series' current version.
    """
    if state is not None:
        document = {**document, "unique_id": latest(state, document["unique_id"])}
    return _ready(record, document, model="deletion", found_modalities=[], ctx=None, validated=None)


def _ready(
    record: Record,
    document: Record,
    *,
    model: str,
    found_modalities: list[str],
    ctx: StageContext | None,
    validated: datetime | None,
) -> Output:
    ready = {
        "modalities": found_modalities,
        "event_id": record["event_id"],
        "ready_at": ctx.now if ctx else record["submitted_at"],
        "submitted_at": record["submitted_at"],
        "sector": record["sector"],
        "source": record["source"],
        "patient": record["patient"],
        "identity_status": record["identity_status"],
        "document": document,
        "cda_model": model,
        "hints": record["hints"],
        "validated_at": validated,
    }
    return Output(READY, "DocumentReady", ready, record["patient"]["patient_key"].encode())
