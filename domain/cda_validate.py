"""Validate a CDA R2 before delivery: the CDA schema and the CI-SIS header rules.

* :class:`CdaSchema` holds ``CDA_extended.xsd`` (CDA R2 + the ANS extensions),
  compiled once (it takes a while) and shared by every thread.
* :func:`header_problems` runs the project's own checks of the CI-SIS header
  (STANDARDS.md §1 and §3), pure XPath over the document: no schema needed.

Documents are parsed without network, DTD loading or entity expansion, and a
DOCTYPE is refused outright: a CDA never has one. Messages name a rule and
explain it; they never quote the patient's data.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final, Protocol, cast

from lxml import etree

from domain.document_id import HL7V3, parse
from domain.ins import INS_OIDS, ins_key_valid

ENTRY_XSD: Final = "CDA_extended.xsd"
MAX_MESSAGES: Final = 50
CR_BIO_MODEL: Final = "1.2.250.1.213.1.1.1.55"
NS: Final = {"v3": HL7V3}
# HL7 TS with a time and its offset, no fraction (CI-SIS IVL_TS rule): aaaammjjhh[mm[ss]]+zzzz.
_TS_WITH_OFFSET: Final = re.compile(r"^\d{10}(?:\d{2}){0,2}[+-]\d{4}$")
_INS_ROOTS: Final = " or ".join(f"@root='{oid}'" for oid in sorted(INS_OIDS))
_PATIENT: Final = "v3:recordTarget/v3:patientRole"

Check = Callable[[etree._Element], bool]


class _LogEntry(Protocol):  # an lxml _LogEntry (lxml-stubs leave the error log untyped)
    line: int
    message: str


class CdaInvalid(Exception):
    """A CDA that must not be delivered, with every message that says why."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages: tuple[str, ...] = tuple(messages)
        super().__init__("; ".join(self.messages) or "invalid CDA")


#: A value libxml2 quotes in a message ("The value '…' is not accepted", "'…' is not a valid
#: value of the atomic type"): it may be patient data. Element names stay readable.
_QUOTED_VALUE = re.compile(r"(?<=value )'[^']*'|'[^']*'(?= is not (?:a valid|accepted))")


def _redacted(message: str) -> str:
    return _QUOTED_VALUE.sub("'…'", message)


class CdaSchema:
    """``CDA_extended.xsd`` compiled once; ``validate`` may be called from any thread."""

    def __init__(self, schema: etree.XMLSchema) -> None:
        self._schema = schema
        self._lock = threading.Lock()  # the error log lives on the schema object

    @classmethod
    def load(cls, xsd_dir: Path) -> CdaSchema:
        """Compile ``<xsd_dir>/CDA_extended.xsd`` (and the files it includes, from disk only)."""
        parser = etree.XMLParser(no_network=True, resolve_entities=False)
        tree = etree.parse(str(xsd_dir / ENTRY_XSD), parser)
        return cls(etree.XMLSchema(tree))

    def validate(self, document: bytes) -> list[str]:
        """XSD messages (``line N: ...``); empty when the document is schema-valid."""
        root, problems = parse(document)
        return problems if root is None else self.validate_root(root)

    def validate_root(self, root: etree._Element) -> list[str]:
        """:meth:`validate` on a document already parsed (and checked by :func:`root_problems`)."""
        with self._lock:
            if self._schema.validate(root):
                return []
            errors = list(cast("Iterable[_LogEntry]", self._schema.error_log))
        messages = [
            f"line {error.line}: {_redacted(error.message)}" for error in errors[:MAX_MESSAGES]
        ]
        if len(errors) > MAX_MESSAGES:
            messages.append(f"... and {len(errors) - MAX_MESSAGES} more schema errors")
        return messages


def check_document(schema: CdaSchema, document: bytes) -> None:
    """Raise :class:`CdaInvalid` with the schema and header messages, if any."""
    messages = schema.validate(document) + header_problems(document)
    if messages:
        raise CdaInvalid(list(dict.fromkeys(messages)))


# ---------------------------------------------------------------- CI-SIS header rules


def _xpath(expression: str) -> Check:
    compiled = etree.XPath(f"boolean({expression})", namespaces=NS)
    return lambda root: bool(compiled(root))


def _values(root: etree._Element, expression: str) -> list[str]:
    found = root.xpath(expression, namespaces=NS)
    return [str(item) for item in found] if isinstance(found, list) else []


def _timestamp(path: str) -> Check:
    return lambda root: any(_TS_WITH_OFFSET.match(v) for v in _values(root, f"{path}/@value"))


def _ins_key(root: etree._Element) -> bool:
    """Every INS id carries a 15-character matricule with a valid key."""
    matricules = _values(root, f"{_PATIENT}/v3:id[{_INS_ROOTS}]/@extension")
    return bool(matricules) and all(len(m) == 15 and ins_key_valid(m) for m in matricules)


def _version(root: etree._Element) -> bool:
    values = _values(root, "v3:versionNumber/@value")
    return bool(values) and values[0].isdigit() and int(values[0]) > 0


def _template(root_oid: str) -> str:
    return f"v3:templateId[@root='{root_oid}']"


_BR: Final = "contains(concat(' ', normalize-space(@qualifier), ' '), ' BR ')"
_SECTIONS: Final = "v3:component/v3:structuredBody/v3:component/v3:section"

#: (rule, explanation, check) — the rules every CDA the bus emits must pass.
RULES: Final[tuple[tuple[str, str, Check], ...]] = (
    ("realm-code", "realmCode must be FR", _xpath("v3:realmCode[@code='FR']")),
    ("type-id", "typeId must be 2.16.840.1.113883.1.3 / POCD_HD000040",
     _xpath("v3:typeId[@root='2.16.840.1.113883.1.3' and @extension='POCD_HD000040']")),
    ("template-hl7-france", "templateId 2.16.840.1.113883.2.8.2.1 (HL7 France) is required",
     _xpath(_template("2.16.840.1.113883.2.8.2.1"))),
    ("template-ci-sis", "templateId 1.2.250.1.213.1.1.1.1 (CI-SIS) is required",
     _xpath(_template("1.2.250.1.213.1.1.1.1"))),
    ("document-id", "id with a root is required", _xpath("v3:id[normalize-space(@root)]")),
    ("document-code", "code must be a LOINC document type (codeSystem 2.16.840.1.113883.6.1)",
     _xpath("v3:code[normalize-space(@code) and @codeSystem='2.16.840.1.113883.6.1']")),
    ("title", "title must not be empty", _xpath("v3:title[normalize-space()]")),
    ("effective-time", "effectiveTime must be a date and time with its offset (+zzzz)",
     _timestamp("v3:effectiveTime")),
    ("confidentiality", "confidentialityCode must be N, R or V of 2.16.840.1.113883.5.25",
     _xpath("v3:confidentialityCode[(@code='N' or @code='R' or @code='V')"
            " and @codeSystem='2.16.840.1.113883.5.25']")),
    ("language", "languageCode must be fr-FR", _xpath("v3:languageCode[@code='fr-FR']")),
    ("set-id", "setId with a root is required", _xpath("v3:setId[normalize-space(@root)]")),
    ("version-number", "versionNumber must be an integer > 0", _version),
    ("patient-ins", "patientRole/id must carry an INS (OID 1.2.250.1.213.1.4.8, .9, .10 or .11)",
     _xpath(f"{_PATIENT}/v3:id[({_INS_ROOTS}) and normalize-space(@extension)]")),
    ("ins-matricule", "the matricule INS must have 15 characters and a valid key", _ins_key),
    ("birth-name", "the patient's birth name (family qualifier BR) is required",
     _xpath(f"{_PATIENT}/v3:patient/v3:name/v3:family[{_BR} and normalize-space()]")),
    ("gender", "administrativeGenderCode (2.16.840.1.113883.5.1) is required",
     _xpath(f"{_PATIENT}/v3:patient/v3:administrativeGenderCode"
            "[normalize-space(@code) and @codeSystem='2.16.840.1.113883.5.1']")),
    ("birth-time", "the patient's birthTime is required",
     _xpath(f"{_PATIENT}/v3:patient/v3:birthTime[normalize-space(@value)]")),
    ("author", "author needs a time and an assignedAuthor/id",
     _xpath("v3:author[v3:time/@value and v3:assignedAuthor/v3:id[normalize-space(@root)]]")),
    ("custodian", "custodian needs its organisation id",
     _xpath("v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization"
            "/v3:id[normalize-space(@root)]")),
    ("legal-authenticator", "legalAuthenticator needs a time, signatureCode S and an id",
     _xpath("v3:legalAuthenticator[v3:time/@value and v3:signatureCode/@code='S'"
            " and v3:assignedEntity/v3:id[normalize-space(@root)]]")),
    ("replacement", "a relatedDocument RPLC needs parentDocument/id with a root",
     _xpath("not(v3:relatedDocument[@typeCode='RPLC']"
            "[not(v3:parentDocument/v3:id[normalize-space(@root)])])")),
)  # fmt: skip

#: CR-BIO (templateId 1.2.250.1.213.1.1.1.55) model rules.
CR_BIO_RULES: Final[tuple[tuple[str, str, Check], ...]] = (
    ("cr-bio-title", "a CR-BIO title must be \"Compte rendu d'examens biologiques\"",
     _xpath("v3:title[normalize-space()=\"Compte rendu d'examens biologiques\"]")),
    ("cr-bio-code", "a CR-BIO code must be LOINC 11502-2",
     _xpath("v3:code[@code='11502-2' and @codeSystem='2.16.840.1.113883.6.1']")),
    ("cr-bio-chapter", "a CR-BIO needs an FR-CR-BIO-Chapitre section (1.3.6.1.4.1.19376.1.3.3.2.1)",
     _xpath(f"{_SECTIONS}/{_template('1.3.6.1.4.1.19376.1.3.3.2.1')}")),
    ("cr-bio-pdf-copy",
     "a CR-BIO needs the FR-Document-PDF-copie section (1.2.250.1.213.1.1.2.243) holding the PDF",
     _xpath(f"{_SECTIONS}[{_template('1.2.250.1.213.1.1.2.243')}]/v3:entry/v3:organizer"
            "/v3:component/v3:observationMedia/v3:value[@mediaType='application/pdf']")),
)  # fmt: skip


def header_problems(document: bytes) -> list[str]:
    """``rule: explanation`` for each CI-SIS header rule the document breaks."""
    root, problems = parse(document)
    return problems if root is None else header_problems_of(root)


def header_problems_of(root: etree._Element) -> list[str]:
    """:func:`header_problems` on a document already parsed."""
    rules = RULES
    if _values(root, f"{_template(CR_BIO_MODEL)}/@root"):
        rules += CR_BIO_RULES
    return [f"{rule}: {explanation}" for rule, explanation, check in rules if not check(root)]
