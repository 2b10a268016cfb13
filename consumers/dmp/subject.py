"""Whom the VIHF names as acting: the document's author, else the responsible person (pure).

The DMP shows who filed each document, and decides access by the acting person's role
(``subject:role``, JDV_J65: a profession, e.g. ``10`` of 1.2.250.1.71.1.2.7, and a
specialty, e.g. ``SM26`` of 1.2.250.1.71.4.2.5; STANDARDS.md §4). When the producer names the
author — PRT SB (PRT-5 ``…&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS``) or the CDA
``author/assignedAuthor/id`` with root 1.2.250.1.71.4.2.1 (IdNat_PS), which the
DocumentEntry's ``authorPerson`` carries as an XCN — *and* the document gives that author's
profession — the CDA ``assignedAuthor/code`` of TRE_G15 (1.2.250.1.213.1.1.4.5, the XDS
authorSpecialty of JDV_J01), ``G15_<profession>[/<specialty>]`` — the VIHF's Subject/NameID,
``subject-id`` and roles are that professional's: the profession, and an ordinal specialty
(``SM…``) when the code has one. Otherwise (a deletion carries no document, an author with a
local id only, a code of another system such as ``AUTOMATE``) the structure's person
responsible for the automated feeding acts, with their own roles (RELAIS_DMP_SUBJECT_ID /
_NAME / _ROLE): NameID, ``subject-id`` and role always name one person. The structure, its
activity sector and the software stay those of the sink.
"""

from __future__ import annotations

import io
import re
from dataclasses import replace
from typing import Final

from lxml import etree

from consumers.ihe.vihf import Role, Subject
from domain.cda_model import PROFESSION_OID, PS_ID_ROOT
from domain.document_id import HL7V3
from domain.xds.metadata import DocumentEntry

#: the VIHF role code systems (JDV_J65, STANDARDS.md §4): profession, ordinal specialty
PROFESSION_ROLE_OID: Final = "1.2.250.1.71.1.2.7"
SPECIALTY_ROLE_OID: Final = "1.2.250.1.71.4.2.5"
#: a TRE_G15 author code: G15_<profession code>[/<specialty code>]
_G15: Final = re.compile(r"^G15_(?P<profession>\d{2})(?:/(?P<specialty>[A-Z0-9]+))?$")
_V3: Final = {"v3": HL7V3}
#: HL7 v2 escape sequences the XCN builder uses, back to their characters
_UNESCAPE: Final = (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\"))


def _unescape(value: str) -> str:
    for sequence, character in _UNESCAPE:
        value = value.replace(sequence, character)
    return value


def subject_of_xcn(xcn: str) -> Subject | None:
    """The professional an XCN names with an IdNat_PS (``id^family^given^…&OID&ISO^D^^^IDNPS``),
    their roles unknown."""
    parts = xcn.split("^")
    if len(parts) < 9 or not parts[0]:
        return None
    authority = parts[8].split("&")
    if len(authority) < 2 or authority[1] != PS_ID_ROOT:
        return None
    family, given = _unescape(parts[1]).strip(), _unescape(parts[2]).strip()
    name = " ".join(p for p in (family, given) if p)  # NOM Prénom, as RELAIS_DMP_SUBJECT_NAME
    return Subject(_unescape(parts[0]), name or _unescape(parts[0]))


def roles_of_g15(code: str, scheme: str) -> tuple[Role, ...]:
    """The VIHF roles of a TRE_G15 author code (() when it names no profession)."""
    match = _G15.match(code) if scheme == PROFESSION_OID else None
    if match is None:
        return ()
    roles = [Role(match["profession"], PROFESSION_ROLE_OID)]
    specialty = match["specialty"] or ""
    if specialty.startswith("SM"):  # the ordinal specialties of the VIHF example (SM26)
        roles.append(Role(specialty, SPECIALTY_ROLE_OID))
    return tuple(roles)


def author_roles(document: bytes, ps_id: str) -> tuple[Role, ...]:
    """The roles the CDA header gives its (first) author, when that author is ``ps_id``.

    Reads the header only: parsing stops at the first ``author`` (no DTD, no network)."""
    events = etree.iterparse(
        io.BytesIO(document),
        events=("end",),
        tag=f"{{{HL7V3}}}author",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
    )
    try:
        author = next((element for _, element in events), None)
    except etree.XMLSyntaxError:
        return ()
    parent = author.getparent() if author is not None else None
    if author is None or parent is None or parent.tag != f"{{{HL7V3}}}ClinicalDocument":
        return ()
    ids = author.xpath(f"v3:assignedAuthor/v3:id[@root='{PS_ID_ROOT}']/@extension", namespaces=_V3)
    code = author.find("v3:assignedAuthor/v3:code", _V3)
    if not isinstance(ids, list) or [str(i) for i in ids] != [ps_id] or code is None:
        return ()
    return roles_of_g15(code.get("code", "").strip(), code.get("codeSystem", "").strip())


def subject_of(entry: DocumentEntry | None, document: bytes | None = None) -> Subject | None:
    """The VIHF subject of a document (its CDA ``document``): its author with their roles,
    or None (the sink's responsible person) when the author or their profession is unknown."""
    if entry is None or document is None:
        return None
    author = subject_of_xcn(entry.author_person)
    if author is None:
        return None
    roles = author_roles(document, author.id)
    return replace(author, roles=roles) if roles else None
