"""Whom the VIHF names as acting: the document's author, else the responsible person (pure).

The DMP shows who filed each document. When the producer names the author — PRT SB
(PRT-5 ``…&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS``) or the CDA ``author/assignedAuthor/id`` with
root 1.2.250.1.71.4.2.1 (IdNat_PS), which the DocumentEntry's ``authorPerson`` carries as an
XCN — the VIHF's Subject/NameID and ``subject-id`` are that professional. Otherwise (a
deletion carries no document, an author with a local id only) they are the structure's
person responsible for the automated feeding (RELAIS_DMP_SUBJECT_ID / _NAME). The structure,
its roles and activity sector, and the software stay those of the sink.
"""

from __future__ import annotations

from typing import Final

from consumers.ihe.vihf import Subject
from domain.cda_model import PS_ID_ROOT
from domain.xds.metadata import DocumentEntry

#: HL7 v2 escape sequences the XCN builder uses, back to their characters
_UNESCAPE: Final = (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\"))


def _unescape(value: str) -> str:
    for sequence, character in _UNESCAPE:
        value = value.replace(sequence, character)
    return value


def subject_of_xcn(xcn: str) -> Subject | None:
    """The professional an XCN names with an IdNat_PS (``id^family^given^…&OID&ISO^D^^^IDNPS``)."""
    parts = xcn.split("^")
    if len(parts) < 9 or not parts[0]:
        return None
    authority = parts[8].split("&")
    if len(authority) < 2 or authority[1] != PS_ID_ROOT:
        return None
    family, given = _unescape(parts[1]).strip(), _unescape(parts[2]).strip()
    name = " ".join(p for p in (family, given) if p)  # NOM Prénom, as RELAIS_DMP_SUBJECT_NAME
    return Subject(_unescape(parts[0]), name or _unescape(parts[0]))


def subject_of(entry: DocumentEntry | None) -> Subject | None:
    """The VIHF subject of a document (None: the sink's responsible person)."""
    if entry is None:
        return None
    return subject_of_xcn(entry.author_person)
