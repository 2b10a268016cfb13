"""The names SOAP, WS-Addressing and ebXML RegRep (ebRIM) give their XML: one place for all.

ITI-18, ITI-41, ITI-62 (:mod:`consumers.ihe`) and the XDM package of a mail
(:mod:`mss_bridge.xdm_metadata`) all write or read ebRIM; the namespaces, association
types and classification schemes they share are here. Facts: IHE ITI TF-3 §4.2 and
../shared/STANDARDS.md §4.
"""

from __future__ import annotations

from typing import Final

SOAP: Final = "http://www.w3.org/2003/05/soap-envelope"
WSA: Final = "http://www.w3.org/2005/08/addressing"
WSSE: Final = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
XDSB: Final = "urn:ihe:iti:xds-b:2007"
LCM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY: Final = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"

HAS_MEMBER: Final = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
STABLE_DOCUMENT: Final = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE: Final = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
REFERENCE_ID_LIST: Final = "urn:ihe:iti:xds:2013:referenceIdList"


class Scheme:
    """IHE classification and external identifier schemes (STANDARDS.md §4)."""

    DE_CLASS: Final = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    DE_TYPE: Final = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    DE_FORMAT: Final = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    DE_CONFIDENTIALITY: Final = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    DE_FACILITY: Final = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    DE_PRACTICE: Final = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    DE_AUTHOR: Final = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    DE_PATIENT_ID: Final = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    DE_UNIQUE_ID: Final = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
    SS_AUTHOR: Final = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
    SS_CONTENT_TYPE: Final = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
    SS_PATIENT_ID: Final = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
    SS_UNIQUE_ID: Final = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
    SS_SOURCE_ID: Final = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
