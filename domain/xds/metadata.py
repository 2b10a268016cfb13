"""The DMP / XDS DocumentEntry metadata of one CDA R2 and its HL7 flags (pure: no I/O).

Mapping per STANDARDS.md §4 (IG transmission mapping.md, ANS CDAHeaderToXDM.xsl); the
code tables and their sources are in :mod:`domain.xds.codes`. Practice setting: the
serviceEvent performer's organisation, as the ANS XSL reads it, else the author's.

Errors: :class:`MetadataError` (``.element`` names the CDA element, ``.rule`` says why)
and its subclasses; messages never quote patient data.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from lxml import etree

from domain.cda_model import ORG_ID_ROOT, PS_ID_ROOT
from domain.document_id import HL7V3, parse
from domain.hl7_time import Hl7TimeError, Instant, instant
from domain.ins import INS_C_OLD, INS_OIDS
from domain.xds import codes
from domain.xds.codes import Coded, ValueSet

__all__ = ["Coded", "DocumentEntry", "MetadataError", "document_entry", "xds_time"]

NS: Final = {"v3": HL7V3}
PS3_20: Final = "urn:dicom-org:ps3-20"  # DICOM PS3.20 CDA extensions (accessionNumber)
DICOM_IMAGING_REPORT: Final = "1.2.840.10008.9.1"  # its serviceEvent/id = Study Instance UID
MIME_TYPE: Final = "text/xml"
_PATIENT: Final = "v3:recordTarget/v3:patientRole/v3:patient"
_ORG: Final = "v3:representedOrganization/v3:standardIndustryClassCode"
_PRACTICE: Final = (  # the serviceEvent performer's organisation, as the ANS XSL, else the author's
    f"v3:documentationOf/v3:serviceEvent/v3:performer/v3:assignedEntity/{_ORG}",
    f"v3:author/v3:assignedAuthor/{_ORG}",
)
_FACILITY: Final = "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility"
_LEGAL: Final = "v3:legalAuthenticator/v3:assignedEntity"
_BR: Final = "[@qualifier='BR']"  # birth name / first birth first name
_PLAIN: Final = "[not(@qualifier)]"  # all the birth first names (CI-SIS)
_BIRTH_DATE: Final = re.compile(r"^\d{4}(?:\d{2}){0,2}")
_HL7_ESCAPES: Final = str.maketrans(
    {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}
)


class MetadataError(ValueError):
    """The XDS metadata cannot be derived: ``element`` names the CDA element, ``rule`` why."""

    def __init__(self, element: str, rule: str) -> None:
        super().__init__(f"{element}: {rule}")
        self.element = element
        self.rule = rule


class NotACda(MetadataError):
    """The bytes are not a well-formed CDA R2 ``ClinicalDocument``."""


class MissingElement(MetadataError):
    """A required element or attribute is absent or empty."""


class CodeOutsideValueSet(MetadataError):
    """A code is not in the value set (or association table) the metadata draws from."""


class InvalidValue(MetadataError):
    """A value has the wrong form: a timestamp that is not HL7 TS, a time without offset."""


@dataclass(frozen=True)
class DocumentEntry:
    """The XDS DocumentEntry of one document, as the DMP (ITI-41) takes it."""

    unique_id: str
    patient_id: str  # CX <INS>^^^&<INS OID>&ISO^NH
    source_patient_id: str  # CX <IPP>^^^&<OID>&ISO^PI, or the patient_id when no IPP
    source_patient_info: tuple[str, ...]  # "PID-5|...", "PID-7|...", "PID-8|...", "PID-11|..."
    class_code: Coded
    type_code: Coded
    format_code: Coded
    confidentiality: tuple[Coded, ...]
    healthcare_facility_type: Coded
    practice_setting: Coded
    creation_time: str  # UTC, YYYYMMDD[HH[MM[SS]]]
    service_start: str | None
    service_stop: str | None
    language: str
    title: str
    mime_type: str
    hash_sha1: str  # hex
    size: int
    author_person: str  # XCN
    author_institution: str  # XON
    legal_authenticator: str | None  # XCN
    reference_ids: tuple[str, ...]  # CXi: order, accession, studyInstanceUID


def document_entry(cda: bytes, flags: Mapping[str, bool]) -> DocumentEntry:
    """The DocumentEntry of ``cda`` (its exact bytes) and the MetaDMPMSS ``flags`` (Y: True)."""
    root, problems = parse(cda)
    if root is None:
        raise NotACda("ClinicalDocument", problems[0] if problems else "not a CDA")
    type_code = _lookup(codes.TYPE_CODES, root, "v3:code", " with an ASS_X16 classCode")
    klass = codes.TYPE_CLASS[type_code.code]
    class_code = _in(codes.CLASS_CODES, klass, codes.CLASS_OID, _label("v3:code"))
    patient_id, source_patient_id = _patient_ids(root)
    start, stop = _service_times(root)
    author = _element(root, "v3:author/v3:assignedAuthor")
    legal = root.find(_LEGAL, NS)
    return DocumentEntry(
        unique_id=_unique_id(root),
        patient_id=patient_id,
        source_patient_id=source_patient_id,
        source_patient_info=_patient_info(root),
        class_code=class_code,
        type_code=type_code,
        format_code=_format_code(root),
        confidentiality=_confidentiality(root, flags),
        healthcare_facility_type=_lookup(codes.FACILITY_TYPES, root, f"{_FACILITY}/v3:code"),
        practice_setting=_practice_setting(root),
        creation_time=xds_time(_required(root, "v3:effectiveTime/@value"), _label("effectiveTime")),
        service_start=start,
        service_stop=stop,
        language=_required(root, "v3:languageCode/@code"),
        title=_required(root, "v3:title/text()"),
        mime_type=MIME_TYPE,
        hash_sha1=hashlib.sha1(cda, usedforsecurity=False).hexdigest(),
        size=len(cda),
        author_person=_xcn(author, "v3:author/v3:assignedAuthor"),
        author_institution=_xon(author),
        legal_authenticator=None if legal is None else _xcn(legal, _LEGAL),
        reference_ids=_reference_ids(root),
    )


def xds_time(value: str, element: str = "time") -> str:
    """HL7 TS -> XDS ``YYYY[MM[DD[HH[MM[SS]]]]]`` in UTC at its precision (a time needs +hhmm)."""
    return _instant(value, element).xds()


def _label(path: str) -> str:
    """The CDA element an expression relative to ClinicalDocument names, for messages."""
    return "ClinicalDocument/" + path.replace("v3:", "").removesuffix("/text()")


def _values(node: etree._Element, path: str) -> list[str]:
    """Non-empty, whitespace-normalised strings an XPath finds (``text()``, attributes)."""
    found = node.xpath(path, namespaces=NS)
    texts = (
        " ".join(str(item).split()) for item in (found if isinstance(found, list) else [found])
    )
    return [text for text in texts if text]


def _first(node: etree._Element, path: str) -> str | None:
    return next(iter(_values(node, path)), None)


def _required(node: etree._Element, path: str, label: str | None = None) -> str:
    if (value := _first(node, path)) is None:
        raise MissingElement(label or _label(path), "required for the DMP/XDS metadata")
    return value


def _element(node: etree._Element, path: str, label: str | None = None) -> etree._Element:
    if (element := node.find(path, NS)) is None:
        raise MissingElement(label or _label(path), "required for the DMP/XDS metadata")
    return element


def _code(node: etree._Element, path: str) -> tuple[str, str]:
    """(code, codeSystem) of the first element at ``path``; both are required."""
    element = node.find(path, NS)
    if element is None or not (code := element.get("code", "").strip()):
        raise MissingElement(_label(f"{path}/@code"), "required for the DMP/XDS metadata")
    if not (scheme := element.get("codeSystem", "").strip()):
        raise MissingElement(_label(f"{path}/@codeSystem"), "a code needs its code system")
    return code, scheme


def _lookup(value_set: ValueSet, node: etree._Element, path: str, why: str = "") -> Coded:
    code, scheme = _code(node, path)
    return _in(value_set, code, scheme, _label(path), why)


def _in(value_set: ValueSet, code: str, scheme: str, label: str, why: str = "") -> Coded:
    if (found := value_set.find(code, scheme)) is None:
        subset = "" if value_set.complete else " (the codes this project handles)"
        rule = f"{code} (code system {scheme}) is not in {value_set.name}{subset}{why}"
        raise CodeOutsideValueSet(label, rule)
    return found


def _esc(value: str) -> str:
    """HL7 v2 escaping of a value put in a CX/XCN/XON component."""
    return value.translate(_HL7_ESCAPES)


def _format_code(root: etree._Element) -> Coded:
    """formatCode: mediaType of a CDA N1 (ASS_A12), else the model templateId (ASS_A11)."""
    if root.find("v3:component/v3:nonXMLBody", NS) is not None:
        path = "v3:component/v3:nonXMLBody/v3:text/@mediaType"
        media_type = _required(root, path)
        if (code := codes.N1_FORMATS.get(media_type)) is None:
            raise CodeOutsideValueSet(_label(path), f"{media_type}: no formatCode in ASS_A12")
    else:
        templates = [t for t in _values(root, "v3:templateId/@root") if t in codes.MODEL_FORMATS]
        models = dict.fromkeys(codes.MODEL_FORMATS[t] for t in templates)
        if len(models) != 1:
            rule = "templateIds of several CDA models: " + ", ".join(models)
            if not models:
                rule = "no CDA model templateId with a formatCode in ASS_A11"
            raise CodeOutsideValueSet("ClinicalDocument/templateId", rule)
        code = next(iter(models))
    return next(c for c in codes.FORMAT_CODES.concepts if c.code == code)  # tested: all there


def _confidentiality(root: etree._Element, flags: Mapping[str, bool]) -> tuple[Coded, ...]:
    """The CDA confidentialityCode (N/R/V), then one JDV_J08 code per MetaDMPMSS flag set."""
    label = _label("v3:confidentialityCode")
    code, scheme = _code(root, "v3:confidentialityCode")
    if scheme != codes.HL7_CONFIDENTIALITY_OID:
        raise CodeOutsideValueSet(label, f"code system {scheme} is not HL7 Confidentiality")
    found = [_in(codes.CONFIDENTIALITY_CODES, code, scheme, label)]
    for flag, extra in codes.FLAG_CONFIDENTIALITY.items():
        if flags.get(flag, False):
            visibility = codes.DMP_VISIBILITY_OID
            found.append(_in(codes.CONFIDENTIALITY_CODES, extra, visibility, f"MetaDMPMSS {flag}"))
    return tuple(found)


def _practice_setting(root: etree._Element) -> Coded:
    """standardIndustryClassCode of the serviceEvent performer's organisation, else the author's."""
    for path in _PRACTICE:  # an element without a code (nullFlavor) does not count
        if root.find(f"{path}[@code]", NS) is not None:
            code, scheme = _code(root, f"{path}[@code]")
            return _in(codes.PRACTICE_SETTINGS, code, scheme, _label(path))
    rule = "no standardIndustryClassCode on the performer's nor on the author's organisation"
    raise MissingElement(_label(_PRACTICE[1]), rule)


def _patient_ids(root: etree._Element) -> tuple[str, str]:
    """patientId (INS CX ^NH) and sourcePatientId (first local id CX ^PI, else the INS CX)."""
    ins: str | None = None
    local: str | None = None
    for element in root.iterfind("v3:recordTarget/v3:patientRole/v3:id", NS):
        oid, value = element.get("root", ""), element.get("extension", "").strip()
        if not oid or not value or oid == INS_C_OLD:
            continue
        if oid in INS_OIDS:
            ins = ins or f"{_esc(value)}^^^&{oid}&ISO^NH"
        elif local is None:
            local = f"{_esc(value)}^^^&{_esc(oid)}&ISO^PI"
    if ins is None:
        rule = "no INS (root = the INS-NIR, INS-NIA, test or demo OID): the DMP needs it"
        raise MissingElement("ClinicalDocument/recordTarget/patientRole/id", rule)
    return ins, local or ins


def _patient_info(root: etree._Element) -> tuple[str, ...]:
    """sourcePatientInfo: birth name and first names, birth date, sex, birthplace (COG)."""
    name = f"{_PATIENT}/v3:name"
    family = _first(root, f"{name}/v3:family{_BR}/text()") or _first(
        root, f"{name}/v3:family{_PLAIN}/text()"
    )
    if family is None:
        raise MissingElement(_label(f"{name}/family"), "the birth name is required")
    givens = _first(root, f"{name}/v3:given{_PLAIN}/text()") or _first(
        root, f"{name}/v3:given{_BR}/text()"
    )
    first, _, others = (givens or "").partition(" ")
    birth = _BIRTH_DATE.match(_required(root, f"{_PATIENT}/v3:birthTime/@value"))
    if birth is None:
        raise InvalidValue(_label(f"{_PATIENT}/birthTime"), "not an HL7 TS date (YYYY[MM[DD]])")
    sex = _lookup(codes.ADMINISTRATIVE_GENDERS, root, f"{_PATIENT}/v3:administrativeGenderCode")
    info = [
        f"PID-5|{_esc(family)}^{_esc(first)}^{_esc(others)}^^^^L",
        f"PID-7|{birth.group(0)}",
        f"PID-8|{codes.PID8_SEX[sex.code]}",
    ]
    if (
        cog := _first(root, f"{_PATIENT}/v3:birthplace/v3:place/v3:addr/v3:county/text()")
    ) is not None:
        info.append(f"PID-11|^^^^^^BDL^^{_esc(cog)}")
    return tuple(info)


def _instant(value: str, element: str) -> Instant:
    try:
        return instant(value)
    except Hl7TimeError as exc:
        raise InvalidValue(element, str(exc)) from None


def _service_times(root: etree._Element) -> tuple[str | None, str | None]:
    """serviceStartTime / serviceStopTime: earliest low and latest high of the serviceEvents."""
    event = "v3:documentationOf/v3:serviceEvent/v3:effectiveTime"
    label = _label(event)
    point = _values(root, f"{event}/@value")
    lows = [_instant(v, f"{label}/low") for v in _values(root, f"{event}/v3:low/@value") + point]
    highs = [_instant(v, f"{label}/high") for v in _values(root, f"{event}/v3:high/@value") + point]
    start = min(lows, key=lambda i: i.at).xds() if lows else None
    stop = max(highs, key=lambda i: i.at).xds() if highs else None
    return start, stop


def _id(parent: etree._Element, label: str, *, extension: bool) -> tuple[str, str]:
    """(root, extension) of the ``id`` of ``parent``; the extension required if ``extension``."""
    element = parent.find("v3:id", NS)
    oid = "" if element is None else element.get("root", "").strip()
    ext = "" if element is None else element.get("extension", "").strip()
    if not oid or (extension and not ext):
        needed = "root and extension" if extension else "root"
        raise MissingElement(f"{label}/id", f"an id with {needed} is required")
    return oid, ext


def _xcn(entity: etree._Element, path: str) -> str:
    """XCN ``id^family^given^^^^^^&root&ISO^D^^^IDNPS`` (EI: a local or structure id)."""
    oid, ident = _id(entity, _label(path), extension=True)
    family = _first(entity, "v3:assignedPerson/v3:name/v3:family/text()") or ""
    given = _first(entity, "v3:assignedPerson/v3:name/v3:given/text()") or ""
    kind = "IDNPS" if oid == PS_ID_ROOT and "/" not in ident else "EI"
    return f"{_esc(ident)}^{_esc(family)}^{_esc(given)}^^^^^^&{_esc(oid)}&ISO^D^^^{kind}"


def _xon(author: etree._Element) -> str:
    """XON ``name^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^<IdNat_Struct>`` of the author's org."""
    path = "v3:author/v3:assignedAuthor/v3:representedOrganization"
    organisation = _element(author, "v3:representedOrganization", _label(path))
    name = _required(organisation, "v3:name/text()", _label(f"{path}/v3:name"))
    id_path = f"v3:id[@root='{ORG_ID_ROOT}']/@extension"
    ident = _required(organisation, id_path, _label(f"{path}/{id_path}"))
    return f"{_esc(name)}^^^^^&{ORG_ID_ROOT}&ISO^IDNST^^^{_esc(ident)}"


def _unique_id(root: etree._Element) -> str:
    """``root`` or ``root.extension`` of ClinicalDocument/id, as domain.document_id.cda_id."""
    oid, extension = _id(root, "ClinicalDocument", extension=False)
    return f"{oid}.{extension}" if extension else oid


def _reference_ids(root: etree._Element) -> tuple[str, ...]:
    """referenceIdList (JDV_J231): order ids, DICOM accession numbers, Study Instance UIDs."""
    found: list[str | None] = []
    for order in root.iterfind("v3:inFulfillmentOf/v3:order", NS):
        found += [_cxi(i, codes.ORDER) for i in order.iterfind("v3:id", NS)]
        accessions = order.iterfind(f"{{{PS3_20}}}accessionNumber")
        found += [_cxi(i, codes.ACCESSION) for i in accessions]
    if DICOM_IMAGING_REPORT in _values(root, "v3:templateId/@root"):
        for study in root.iterfind("v3:documentationOf/v3:serviceEvent/v3:id", NS):
            if study.get("extension") is None:
                found.append(_cxi(study, codes.STUDY_INSTANCE_UID))
    return tuple(dict.fromkeys(ref for ref in found if ref is not None))


def _cxi(element: etree._Element, kind: str) -> str | None:
    """CXi ``value^^^&root&ISO^type``; an id that is a UID alone is ``uid^^^^type``."""
    oid, extension = element.get("root", "").strip(), element.get("extension", "").strip()
    if not oid:
        return None
    if extension:
        return f"{_esc(extension)}^^^&{_esc(oid)}&ISO^{kind}"
    return f"{_esc(oid)}^^^^{kind}"
