"""XML plumbing of the DMP sandbox: names, a safe parser, XPath and the independent schemas.

The schemas are the OASIS / W3C / IHE originals under the data folder (``ihe-xsd/``,
../shared/data/MANIFEST.md): SOAP 1.2 envelope, ebRS 3.0 ``lcm`` and ``query``, SAML 2.0
assertion (with W3C XML-DSig). Nothing here comes from the client (``consumers``): the
sandbox reads what it receives with its own code, so that it judges the client.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Final

from lxml import etree

from domain.xds.ebrim import LCM, QUERY, RIM, RS, SOAP, WSA, WSSE, XDSB

SAML: Final = "urn:oasis:names:tc:SAML:2.0:assertion"
DS: Final = "http://www.w3.org/2000/09/xmldsig#"
XOP: Final = "http://www.w3.org/2004/08/xop/include"
HL7: Final = "urn:hl7-org:v3"
XADES: Final = ("http://uri.etsi.org/01903/v1.3.2#", "http://uri.etsi.org/01903/v1.1.1#")
NS: Final = {
    "s": SOAP,
    "wsa": WSA,
    "wsse": WSSE,
    "xdsb": XDSB,
    "lcm": LCM,
    "rim": RIM,
    "rs": RS,
    "query": QUERY,
    "saml": SAML,
    "ds": DS,
    "xop": XOP,
    "v3": HL7,
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}
#: ebRS 3.0 status URNs (ebRS 3.0 §2.1.4)
SUCCESS: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE: Final = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
#: ebRS 3.0 error severities
ERROR: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
WARNING: Final = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"
#: entry points of the schema folder (../shared/data/ihe-xsd), by what they validate
SCHEMA_FILES: Final = {
    "envelope": "soap/soap-1.2-envelope.xsd",
    "lcm": "ebRS30/lcm.xsd",
    "query": "ebRS30/query.xsd",
    "saml": "saml/sstc-saml-schema-assertion-2.0.xsd",
    "xmldsig": "saml/xmldsig-core-schema.xsd",
}


#: libxml2 quotes a wrong value ('...' is not a valid value): a value may be patient data
_REDACT: Final = re.compile(r"'[^']*'(?= is not (?:a )?valid| is not accepted)")


class SchemaInvalid(ValueError):
    """An element is not valid against its schema; the message says where and why."""


def parser() -> etree.XMLParser:
    """No entities, no network, no DTD: what arrives from a client is untrusted."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse(data: bytes) -> etree._Element:
    """The root element of ``data`` (raises :class:`etree.XMLSyntaxError`)."""
    return etree.fromstring(data, parser())


def _xpath(node: etree._Element, path: str, variables: dict[str, str]) -> list[object]:
    found = etree.XPathElementEvaluator(node, namespaces=NS)(path, **variables)
    return list(found) if isinstance(found, list) else [found]


def strings(node: etree._Element, path: str, **variables: str) -> list[str]:
    """The string results of an XPath expression, stripped (namespaces: :data:`NS`)."""
    return [
        str(item.xpath("string(.)") if isinstance(item, etree._Element) else item).strip()
        for item in _xpath(node, path, variables)
    ]


def first(node: etree._Element, path: str, **variables: str) -> str:
    """The first string result of ``path``, or ``""``."""
    found = strings(node, path, **variables)
    return found[0] if found else ""


def elements(node: etree._Element, path: str, **variables: str) -> list[etree._Element]:
    """The element results of an XPath expression."""
    return [item for item in _xpath(node, path, variables) if isinstance(item, etree._Element)]


@functools.lru_cache(maxsize=8)
def _schema(path: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(path)))


def validate(schema_dir: Path, which: str, node: etree._Element) -> None:
    """Validate ``node`` (as a document of its own) against the ``which`` schema."""
    schema = _schema((schema_dir / SCHEMA_FILES[which]).resolve())
    document = etree.fromstring(etree.tostring(node), parser())
    if not schema.validate(document):
        error = schema.error_log.last_error  # type: ignore[attr-defined]
        where = f"line {error.line}" if error is not None else "somewhere"
        reason = _REDACT.sub("a value", error.message) if error is not None else "invalid"
        raise SchemaInvalid(f"not valid against {SCHEMA_FILES[which]} ({where}): {reason}")
