"""Synthetic HL7 v2 messages carrying CDA R2 documents, for the demo and the tests.

Fictitious patients on the INS *test* OID (1.2.250.1.213.1.4.10); the CDA
headers follow CI-SIS (realm FR, typeId, templateIds, recordTarget with INS).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Final

INS_TEST_OID: Final = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True)
class Patient:
    ins: str
    family: str
    given: str
    birth_date: str
    sex: str
    birthplace: str
    reliability: str = "QUAL"


DOMINIQUE: Final = Patient("279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215")
SARAH_LOU: Final = Patient(
    "277010115400329", "GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154"
)
UNQUALIFIED: Final = Patient(
    "279035121518989", "PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215", reliability="PROV"
)
#: Checked against an identity document (VALI): the identity stage asks INSi to make it QUAL.
VALIDATED: Final = Patient(
    "277010115400329",
    "GARCIA-HAMMADI",
    "SARAH-LOU ANNA",
    "19770121",
    "F",
    "01154",
    reliability="VALI",
)


@dataclass(frozen=True)
class Kind:
    label: str
    loinc: str
    title: str
    model_template: str
    message_type: str


LAB: Final = Kind(
    "lab result", "11502-2", "CR d'examens biologiques", "1.2.250.1.213.1.1.1.55", "ORU^R01^ORU_R01"
)
IMAGING: Final = Kind(
    "imaging report",
    "18748-4",
    "CR d'imagerie médicale",
    "1.2.250.1.213.1.1.1.45",
    "ORU^R01^ORU_R01",
)
LETTER: Final = Kind(
    "hospital letter",
    "11490-0",
    "Lettre de liaison à la sortie d'un établissement de soins",
    "1.2.250.1.213.1.1.1.29",
    "MDM^T02^MDM_T02",
)


def cda(kind: Kind, patient: Patient, doc_id: str, text: str) -> bytes:
    """A small CI-SIS-shaped CDA R2 document with a structured body."""
    root, ext = doc_id.rsplit(".", 1)
    given = "".join(f"<given>{g}</given>" for g in patient.given.split())
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <templateId root="2.16.840.1.113883.2.8.2.1"/>
  <templateId root="1.2.250.1.213.1.1.1.1"/>
  <templateId root="{kind.model_template}"/>
  <id root="{root}" extension="{ext}"/>
  <code code="{kind.loinc}" displayName="{kind.title}" codeSystem="2.16.840.1.113883.6.1"/>
  <title>{kind.title}</title>
  <effectiveTime value="20261122101500+0100"/>
  <confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{root}" extension="{ext}"/>
  <versionNumber value="1"/>
  <recordTarget><patientRole>
    <id root="{INS_TEST_OID}" extension="{patient.ins}"/>
    <patient><name><family qualifier="BR">{patient.family}</family>{given}</name>
      <administrativeGenderCode code="{patient.sex}" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="{patient.birth_date}"/>
    </patient>
  </patientRole></recordTarget>
  <author><time value="20261122101500+0100"/><assignedAuthor>
    <id root="1.2.250.1.71.4.2.1" extension="801234567866"/>
  </assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="1.2.250.1.71.4.2.2" extension="1120459876"/>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <component><structuredBody><component><section>
    <title>{kind.title}</title><text>{text}</text>
  </section></component></structuredBody></component>
</ClinicalDocument>
""".encode()


def hl7_message(kind: Kind, patient: Patient, control_id: str, document: bytes) -> bytes:
    """An ORU^R01 (v2.5) or MDM^T02 (v2.6) carrying ``document`` base64 in OBX-5."""
    mdm = kind.message_type.startswith("MDM")
    version = "2.6" if mdm else "2.5"
    data = base64.b64encode(document).decode()
    given = patient.given.split()
    segments = [
        f"MSH|^~\\&|DEMO-SIS|RELAIS-DEMO|PFI|RELAIS|20261122101500||{kind.message_type}|"
        f"{control_id}|P|{version}|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2",
    ]
    if mdm:
        segments.append("EVN||20261122101500")
    segments.append(
        f"PID|||{patient.ins}^^^ASIP-SANTE-INS-NIR&{INS_TEST_OID}&ISO^INS||"
        f"{patient.family}^{given[0]}^{' '.join(given[1:])}^^^^L||{patient.birth_date}|"
        f"{patient.sex}|||^^^^^^BDL^^{patient.birthplace}" + "|" * 21 + patient.reliability
    )
    segments.append("PV1|1|O")
    if mdm:
        segments.append(f"TXA|1|{kind.loinc}^{kind.title}^LN|TEXT|||||||||{control_id}||||||AU")
    else:
        segments += [
            f"ORC|NW|{control_id}^DEMO",
            f"OBR|1|{control_id}^DEMO|{control_id}^DEMO|{kind.loinc}^{kind.title}^LN",
        ]
    obx5 = f"^{'text' if mdm else 'TEXT'}^XML^Base64^{data}"
    segments += [
        f"OBX|1|ED|{kind.loinc}^{kind.title}^LN||{obx5}||||||F",
        "PRT||UC||SB^^participation|801234567866^DEMO^Biologiste^^^^^^"
        "ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",
        "OBX|2|CE|DESTDMP^Destinataire DMP^MetaDMPMSS||Y^^expandedYes-NoIndicator||||||F",
    ]
    return ("\r".join(segments) + "\r").encode()


def sample(kind: Kind, patient: Patient, n: int, *, text: str | None = None) -> bytes:
    """The ``n``-th demo message of ``kind`` for ``patient``."""
    doc_id = f"1.2.250.1.213.1.1.9.4242.{kind.loinc.replace('-', '')}{n:06d}"
    body = cda(kind, patient, doc_id, text or f"{kind.title}, document de démonstration {n}")
    return hl7_message(kind, patient, f"DEMO{kind.loinc.replace('-', '')}{n:06d}", body)
