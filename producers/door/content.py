"""What a document may carry through the door: a safe, valid CDA about the PID's patient,
or a PDF without active content (pure).

Policy (docs/door.md): hostile content is **refused, never removed**. Removing a
stylesheet instruction, a schema location or an external reference would change the
bytes a professional signed and the hash the DMP keeps; the sender fixes its export
and resends. A CDA is refused when it

* is not well-formed, has a DOCTYPE, or is not a ClinicalDocument;
* reaches outside itself: an ``xml-stylesheet`` or an ``xsi:schemaLocation`` pointing at
  a URL (``http:``, ``file:``, ``//host``…; the relative paths of the ANS examples are
  kept, a viewer resolves them against its own files), an XInclude, a ``reference`` or
  ``linkHtml`` pointing at a URL — except a WADO link to the images of an imaging report
  (``requestType=WADO``, the CI-SIS CR-IMG template);
* breaks the CDA schema (when the gateway has it) or the CI-SIS header rules;
* describes another patient than PID: INS, birth name, first given name, birth date
  or sex of ``recordTarget`` differing from PID-3/5/7/8.

PDFs: :mod:`producers.door.pdf`. Messages name the rule, never the patient's data.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

from domain.cda_validate import CdaSchema, header_problems_of
from domain.document_id import parse, xpath_strings
from domain.ins_traits import normalise_name
from producers.hl7.patient import PatientIdentity

XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
XINCLUDE: Final = "http://www.w3.org/2001/XInclude"
_SCHEME: Final = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
_HREF: Final = re.compile(r"""href\s*=\s*(["'])(.*?)\1""")
_LOCAL_SCHEMES: Final = ("urn:", "cid:", "data:", "#")
_PATIENT: Final = "/v3:ClinicalDocument/v3:recordTarget/v3:patientRole"


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
    before = root.itersiblings(preceding=True)
    instructions = [
        *(n for n in before if isinstance(n, etree._ProcessingInstruction)),
        *root.iter(etree.PI),
    ]
    if any(_is_url(_pseudo_href(pi.text or "")) for pi in instructions):
        problems.append(
            "processing-instruction: an xml-stylesheet points at a URL (a viewer would fetch "
            "and run it); give a relative path or none"
        )
    found = _CANDIDATES(root)  # in C: only the nodes that may reach outside
    for node in found if isinstance(found, list) else []:
        problems += _reference_problems(node)
    return list(dict.fromkeys(problems))


#: XIncludes, schema locations, reference/@value and linkHtml/@href, in document order
_CANDIDATES: Final = etree.XPath(
    "//xi:* | //@xsi:schemaLocation | //@xsi:noNamespaceSchemaLocation"
    " | //*[local-name()='reference']/@value | //*[local-name()='linkHtml']/@href",
    namespaces={"xi": XINCLUDE, "xsi": XSI},
)


def _reference_problems(node: object) -> list[str]:
    if isinstance(node, etree._Element):
        return ["xinclude: a CDA includes nothing from outside itself"]
    value, attribute = str(node), str(getattr(node, "attrname", ""))
    if attribute in (f"{{{XSI}}}schemaLocation", f"{{{XSI}}}noNamespaceSchemaLocation"):
        locations = value.split()[1::2] if attribute.endswith("}schemaLocation") else [value]
        if any(_is_url(location) for location in locations):
            return ["schema-location: xsi:schemaLocation points at a URL; give none"]
        return []
    name = etree.QName(node.getparent()).localname  # type: ignore[attr-defined]
    if value and _is_url(value) and not _is_wado(value):
        return [f"external-reference: a {name} points at a URL outside the document"]
    return []


def _pseudo_href(text: str) -> str:
    found = _HREF.search(text)
    return found.group(2) if found else ""


def _is_url(value: str) -> bool:
    """A scheme (http:, file:, ftp:...) or a network path (//host, \\\\host); not urn:/cid:/#."""
    value = value.strip()
    if value.startswith(("//", "\\\\")):
        return True
    return bool(_SCHEME.match(value)) and not value.lower().startswith(_LOCAL_SCHEMES)


def _is_wado(value: str) -> bool:
    """A WADO link to a study's images (CI-SIS CR-IMG): the viewer's user follows it."""
    return "requesttype=wado" in value.replace(" ", "").lower()


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
        ("patient-given-name",
         f"{person}/v3:name[v3:family[contains(@qualifier,'BR')]]"
         "/v3:given[not(@qualifier) or contains(@qualifier,'BR')][1]",
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
