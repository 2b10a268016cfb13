"""IHE ITI-62 Delete Document Set: remove a document's metadata from the registry (pure).

A deletion (ORU OBX-11 ``D``, MDM^T04) reaches the DMP as a
``lcm:RemoveObjectsRequest`` naming the DocumentEntry's entryUUID (found with
ITI-18), in SOAP 1.2 with WS-Addressing and the VIHF; the answer is the usual
``RegistryResponse`` (read with :func:`consumers.ihe.iti41.read_response`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Final

from lxml import etree

from consumers.ihe.iti18 import envelope
from domain.xds.ebrim import LCM, RIM, SOAP, WSA

ACTION: Final = "urn:ihe:iti:2010:DeleteDocumentSet"
RESPONSE_ACTION: Final = "urn:ihe:iti:2010:DeleteDocumentSetResponse"
NS: Final = {"s": SOAP, "a": WSA, "lcm": LCM, "rim": RIM}
CONTENT_TYPE: Final = 'application/soap+xml; charset=utf-8; action="' + ACTION + '"'


class Iti62Error(ValueError):
    """A Delete Document Set that cannot be built (it names no entry)."""


def delete_document_set(
    entry_uuids: Sequence[str],
    *,
    to: str,
    security: etree._Element | None = None,
    message_id: str | None = None,
) -> bytes:
    """The SOAP request removing the given DocumentEntries."""
    if not entry_uuids:
        raise Iti62Error("Delete Document Set needs at least one entryUUID")
    root = envelope(ACTION, message_id or f"urn:uuid:{uuid.uuid4()}", to)
    if security is not None:
        root[0].append(security)
    request = etree.SubElement(
        root[1], f"{{{LCM}}}RemoveObjectsRequest", nsmap={"lcm": LCM, "rim": RIM}
    )
    refs = etree.SubElement(request, f"{{{RIM}}}ObjectRefList")
    for entry in entry_uuids:
        etree.SubElement(refs, f"{{{RIM}}}ObjectRef", id=entry)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
