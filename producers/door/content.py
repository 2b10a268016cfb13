"""What a document may carry through the door: a safe, valid CDA about the PID's patient,
or a PDF without active content (pure).

Policy (docs/door.md): hostile content is **refused, never removed**. Removing a
stylesheet instruction, a schema location or an external reference would change the
bytes a professional signed and the hash the DMP keeps; the sender fixes its export
and resends. A CDA is refused when it

* is not well-formed, has a DOCTYPE, or is not a ClinicalDocument;
* names anything outside itself: an ``xml-stylesheet`` (or any) processing
  instruction, ``xsi:schemaLocation`` / ``xsi:noNamespaceSchemaLocation``, an XInclude,
  a ``reference`` / ``@value`` / ``@src`` pointing at a URL (``http:``, ``file:``…);
* breaks the CDA schema (when the gateway has it) or the CI-SIS header rules;
* describes another patient than PID: INS, birth name, first given name, birth date
  or sex of ``recordTarget`` differing from PID-3/5/7/8.

A PDF is refused when it does not start with ``%PDF-`` or carries active content:
``/JavaScript``, ``/JS``, ``/Launch``, ``/OpenAction`` with an action other than a page
view, ``/AA``, ``/SubmitForm``, ``/ImportData``, ``/RichMedia``, ``/EmbeddedFile`` —
looked for in the file and in its compressed streams (names hex-escaped with ``#xx``
included). Messages name the rule, never the patient's data.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Final

from lxml import etree

from domain.cda_validate import CdaSchema, header_problems_of
from domain.document_id import parse, xpath_strings
from domain.ins_traits import normalise_name
from producers.hl7.patient import PatientIdentity

XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
XINCLUDE: Final = "http://www.w3.org/2001/XInclude"
_EXTERNAL: Final = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
_LOCAL_SCHEMES: Final = ("urn:", "cid:", "data:", "#")
_PATIENT: Final = "/v3:ClinicalDocument/v3:recordTarget/v3:patientRole"
_ACTIVE_PDF: Final = (
    "JavaScript", "JS", "Launch", "AA", "SubmitForm", "ImportData", "RichMedia", "EmbeddedFile",
)  # fmt: skip
_PDF_NAME: Final = re.compile(rb"/([A-Za-z0-9#]+)")
_OPEN_ACTION: Final = re.compile(rb"/OpenAction\s*(<<.*?>>|\[[^\]]*\]|\d+\s+\d+\s+R)", re.DOTALL)
_STREAM: Final = re.compile(rb"stream\r?\n(.*?)endstream", re.DOTALL)
_INFLATE_LIMIT: Final = 8 << 20  # per stream: a zip bomb is read no further


def cda_problems(
    content: bytes, patient: PatientIdentity, schema: CdaSchema | None = None
) -> list[str]:
    """``rule: explanation`` for each reason to refuse a CDA; [] when it may go on."""
    root, problems = parse(content)
    if root is None:
        return problems
    if problems := external_references(root):
        return problems
    if schema is not None:
        problems = schema.validate_root(root)
    return problems + header_problems_of(root) + patient_problems(root, patient)


def external_references(root: etree._Element) -> list[str]:
    """What in the document reaches outside it (stylesheets, schemas, includes, URLs)."""
    problems: list[str] = []
    tree_pis = [
        n for n in root.itersiblings(preceding=True) if isinstance(n, etree._ProcessingInstruction)
    ]
    if tree_pis or any(True for _ in root.iter(etree.PI)):
        problems.append(
            "processing-instruction: a CDA carries no processing instruction "
            "(an xml-stylesheet makes a viewer fetch and run a stylesheet)"
        )
    for element in root.iter(etree.Element):
        for name, value in ((str(k), str(v)) for k, v in element.attrib.items()):
            if name in (f"{{{XSI}}}schemaLocation", f"{{{XSI}}}noNamespaceSchemaLocation"):
                problems.append("schema-location: xsi:schemaLocation points outside the document")
            elif name in ("value", "src", "href") and _points_outside(value, element):
                problems.append(f"external-reference: a {_local(element)}/@{name} is a URL")
        if isinstance(element.tag, str) and element.tag.startswith(f"{{{XINCLUDE}}}"):
            problems.append("xinclude: a CDA includes nothing from outside itself")
    return list(dict.fromkeys(problems))


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _points_outside(value: str, element: etree._Element) -> bool:
    """A URL to fetch: a scheme or ``//`` (urn:, cid:, data: and #fragments stay inside)."""
    fetching = _local(element) in ("reference", "observationMedia", "linkHtml", "renderMultiMedia")
    if not fetching and not value.lower().startswith(("http:", "https:", "ftp:", "file:", "//")):
        return False
    return bool(_EXTERNAL.match(value)) and not value.lower().startswith(_LOCAL_SCHEMES)


def patient_problems(root: etree._Element, patient: PatientIdentity) -> list[str]:
    """Where ``recordTarget`` describes another patient than PID (never quoting either)."""
    problems: list[str] = []
    if patient.ins:
        found = xpath_strings(root, f"{_PATIENT}/v3:id/@extension")
        extensions = {value.upper() for value in found}
        if patient.ins.upper() not in extensions:
            problems.append("patient-ins: the CDA's recordTarget INS is not PID-3's INS")
    person = f"{_PATIENT}/v3:patient"
    compared = (
        ("patient-birth-name", f"{person}/v3:name/v3:family[contains(@qualifier,'BR')]",
         patient.birth_name, "birth name (family BR) is not PID-5.1"),
        ("patient-given-name", f"{person}/v3:name/v3:given[1]",
         patient.given_names.split(" ")[0], "first given name is not PID-5's first one"),
    )  # fmt: skip
    for rule, path, expected, text in compared:
        found = xpath_strings(root, f"{path}/text()")
        if expected and found and not _same_name(found[0], expected, rule):
            problems.append(f"{rule}: the CDA's recordTarget {text}")
    born = xpath_strings(root, f"{person}/v3:birthTime/@value")
    if born and patient.birth_date and born[0][:8] != patient.birth_date[:8]:
        problems.append("patient-birth-date: the CDA's recordTarget birthTime is not PID-7")
    sex = xpath_strings(root, f"{person}/v3:administrativeGenderCode/@code")
    if sex and patient.sex and sex[0].upper() != patient.sex.upper():
        problems.append("patient-sex: the CDA's administrativeGenderCode is not PID-8")
    return problems


def _same_name(cda: str, pid: str, rule: str) -> bool:
    """Normalised names equal; for given names, their first word (CDA ``given`` may hold
    every first name where PID-5.2 holds the first one)."""
    if rule == "patient-given-name":
        return _name(cda).split(" ")[0] == _name(pid).split(" ")[0]
    return _name(cda) == _name(pid)


def _name(value: str) -> str:
    try:
        return normalise_name(value)
    except ValueError:
        return value.strip().upper()


def pdf_problems(content: bytes) -> list[str]:
    """Why a PDF may not be filed: not a PDF, or active content (scripts, launches, forms)."""
    if content.lstrip()[:5] != b"%PDF-":
        return ["pdf-header: the document does not start with %PDF- (not a PDF)"]
    found = sorted(set(_active_names(content)))
    if found:
        names = ", ".join(f"/{n}" for n in found)
        return [
            f"pdf-active-content: the PDF carries {names}; export it without scripts or actions"
        ]
    return []


def _active_names(content: bytes) -> Iterator[str]:
    for chunk in (content, *_inflated_streams(content)):
        for raw in _PDF_NAME.findall(chunk):
            name = _unescape(raw)
            if name in _ACTIVE_PDF:
                yield name
        for action in _OPEN_ACTION.findall(chunk):
            if b"/S" in action and b"/GoTo" not in action:
                yield "OpenAction"


def _unescape(raw: bytes) -> str:
    """A PDF name with its ``#xx`` escapes decoded (``/Java#53cript`` is ``JavaScript``)."""
    text = raw.decode("latin-1")
    return re.sub(r"#([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _inflated_streams(content: bytes) -> Iterator[bytes]:
    for match in _STREAM.finditer(content):
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(match.group(1), _INFLATE_LIMIT)
        except zlib.error:
            continue
        if data:
            yield data
