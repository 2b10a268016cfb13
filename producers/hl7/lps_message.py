"""The LPS volet's MDM for a document received by MSSanté, and the DPI's answer (pure).

Volet "Transmission au LPS de document CDA provenant d'un courriel MSSanté" (STANDARDS.md §5,
"Inbound (LPS volet)"; ANS sample ``message_MDM__LPS_MSS_CR_Radio_INIT_N1.er7``): the
platform that polls the mailbox sends each CDA of the XDM package to the DPI as one MDM
v2.6, segments in this order::

    MSH|^~\\&|RELAIS|RELAIS|<DPI app>|<DPI facility>|<ts>||MDM^T02^MDM_T02|<id>|P|2.6|||||FRA|
        UNICODE UTF-8|||1.1^CISIS_CDA_HL7_LPS
    EVN||<ts>
    PID|||<INS>^^^ASIP-SANTE-INS-NIR&<OID>&ISO^INS||<birth name>^<first>^<given>^^^^L||
        <birth date>|<sex>|||^^^^^^BDL^^<COG>|...|<PID-32 status>
    PV1|1|N                                   (PV1-2 N: not applicable, no encounter)
    ORC|NW|                                   (RO for T10, CA for T04)
    OBR|1|||<type>^<label>^LN|
    TXA|1|<type>|TEXT|<ts>||||||||<unique id>|<parent id>||||AU
    OBX|1|ED|<type>^<label>^LN||^text^XML^Base64^<CDA>||||||F|       (C for T10, D for T04)
    PRT||UC||SB^^participation|||||||||||^^X.400^<mail sender>
    PRT||UC||RCT^^participation|||||||||||^^X.400^<receiving mailbox>
    PRT||UC||REPLY^^participation|||||||||||^^X.400^<Reply-To>    (when the mail has one)
    OBX|2|ED|1^<mail subject>||^text^^Base64^<mail body>||||||F|
    OBX|3..6|CWE|MASQUE_PS|INVISIBLE_PATIENT|INVISIBLE_REP_LEGAUX|MODIF_CONF_CODE^…^MetaDMPMSS||
        N^^expandedYes-NoIndicator||||||F|

The MetaDMPMSS values are ``N``: a mail carries no such flags, and the CDA's own
confidentialityCode travels inside the document. :func:`answer_of` reads the DPI's ACK.
Nothing here logs; the message carries patient data and goes only to the DPI.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from producers.hl7.ack import read_msa
from producers.hl7.patient import PatientIdentity
from producers.hl7.segments import escape

PROFILE: Final = "1.1^CISIS_CDA_HL7_LPS"
#: document action -> (trigger, ORC-1, OBX-11): the volet's life cycle (STANDARDS.md §2)
TRIGGERS: Final = {
    "SUBMIT": ("T02", "NW", "F"),
    "REPLACE": ("T10", "RO", "C"),
    "DELETE": ("T04", "CA", "D"),
}
_META: Final = (
    ("MASQUE_PS", "Masqué aux professionnels de Santé"),
    ("INVISIBLE_PATIENT", "Document Non Visible par le patient"),
    ("INVISIBLE_REP_LEGAUX", "Non visible par les représentants Légaux du patient"),
    ("MODIF_CONF_CODE", "Modification Confidentiality Code"),
)
Verdict = Literal["done", "retry", "refused"]


@dataclass(frozen=True)
class LpsMail:
    """What the mail says around the document: who sent it, to which mailbox, its text."""

    sender: str | None
    mailbox: str  # the receiving mailbox (PRT RCT)
    reply_to: str | None = None
    subject: str = ""
    body: str = ""


@dataclass(frozen=True)
class LpsDocument:
    """One CDA of a received mail, its patient, and the DPI it goes to."""

    content: bytes
    type_code: str
    type_label: str
    unique_id: str
    patient: PatientIdentity
    mail: LpsMail
    dpi_facility: str
    dpi_application: str = "DPI"
    action: str = "SUBMIT"
    parent_unique_id: str | None = None
    relais_application: str = "RELAIS"
    relais_facility: str = "RELAIS"


@dataclass(frozen=True)
class DpiAnswer:
    """The DPI's ACK: what to do next, MSA-1, and the error it gave (codes and labels)."""

    verdict: Verdict
    code: str
    error: tuple[str, str] | None = None


def build_lps_mdm(doc: LpsDocument, *, control_id: str, now: datetime) -> bytes:
    """The MDM^T02 (T10, T04) of one document, segments separated by CR, UTF-8."""
    if doc.action not in TRIGGERS:
        raise ValueError(f"unknown document action {doc.action!r}; expected {', '.join(TRIGGERS)}")
    trigger, order, status = TRIGGERS[doc.action]
    ts = now.strftime("%Y%m%d%H%M%S")
    kind = f"{escape(doc.type_code)}^{escape(doc.type_label)}^LN"
    cda = base64.b64encode(doc.content).decode("ascii")
    segments = [
        _msh(doc, trigger, control_id, ts),
        f"EVN||{ts}",
        _pid(doc.patient),
        "PV1|1|N",
        f"ORC|{order}|",
        f"OBR|1|||{kind}|",
        f"TXA|1|{escape(doc.type_code)}|TEXT|{ts}||||||||{escape(doc.unique_id)}|"
        f"{escape(doc.parent_unique_id or '')}||||AU",
        f"OBX|1|ED|{kind}||^text^XML^Base64^{cda}||||||{status}|",
        *_participations(doc.mail),
        _mail_obx(doc.mail),
        *(
            f"OBX|{3 + i}|CWE|{code}^{label}^MetaDMPMSS||N^^expandedYes-NoIndicator||||||F|"
            for i, (code, label) in enumerate(_META)
        ),
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _msh(doc: LpsDocument, trigger: str, control_id: str, ts: str) -> str:
    """From Relais (the platform) to the DPI, v2.6, UTF-8, the LPS profile."""
    fields = ["MSH", "^~\\&", doc.relais_application, doc.relais_facility]
    fields += [doc.dpi_application, doc.dpi_facility, ts, "", f"MDM^{trigger}^MDM_T02"]
    fields += [control_id, "P", "2.6", "", "", "", "", "FRA", "UNICODE UTF-8", "", ""]
    return "|".join([*fields[:2], *(escape(f) for f in fields[2:8]), *fields[8:], PROFILE])


def _pid(patient: PatientIdentity) -> str:
    """PID-3 the INS (CX.5 INS) and the local ids, PID-5 the birth name, the INS traits."""
    ids = []
    if patient.ins:
        oid = escape(patient.ins_oid or "")
        ids.append(f"{escape(patient.ins)}^^^ASIP-SANTE-INS-NIR&{oid}&ISO^INS")
    ids += [f"{escape(value)}^^^{escape(authority)}^PI" for value, authority in patient.local_ids]
    given = patient.given_names.split()
    name = f"{escape(patient.birth_name)}^{escape(given[0] if given else '')}"
    name += f"^{escape(' '.join(given))}^^^^L"
    birthplace = f"^^^^^^BDL^^{escape(patient.birthplace_code)}" if patient.birthplace_code else ""
    fields = ["PID", "", "", "~".join(ids), "", name, "", escape(patient.birth_date)]
    fields += [escape(patient.sex), "", "", birthplace]
    if patient.reliability:
        fields += [""] * 20 + [escape(patient.reliability)]
    return "|".join(fields)


def _participations(mail: LpsMail) -> list[str]:
    parties = [("SB", mail.sender), ("RCT", mail.mailbox), ("REPLY", mail.reply_to)]
    return [
        f"PRT||UC||{role}^^participation|||||||||||^^X.400^{escape(address)}"
        for role, address in parties
        if address
    ]


def _mail_obx(mail: LpsMail) -> str:
    body = base64.b64encode(mail.body.encode("utf-8")).decode("ascii")
    subject = escape(" ".join(mail.subject.split()))
    return f"OBX|2|ED|1^{subject}||^text^^Base64^{body}||||||F|"


def answer_of(answer: bytes) -> DpiAnswer:
    """AA/CA: done; AR/CR: try again later; AE/CE or anything else: refused, with its ERR."""
    msa = read_msa(answer)
    code = msa[0] if msa is not None and msa[0] else "none"
    if code in {"AA", "CA"}:
        return DpiAnswer("done", code)
    if code in {"AR", "CR"}:
        return DpiAnswer("retry", code)
    return DpiAnswer("refused", code, read_err(answer) or (code, "refused by the DPI"))


def read_err(answer: bytes) -> tuple[str, str] | None:
    """(code, label) of the first ERR: ERR-5 (application error), else ERR-3 (table 0357).

    The label is the coded one (ERR-5.2 / ERR-3.2); ERR-8's free text is left out: a
    receiver may quote patient data there, and this label goes into dead letters."""
    for segment in answer.replace(b"\n", b"\r").split(b"\r"):
        if not segment.startswith(b"ERR") or len(segment) < 4:
            continue
        text = segment.decode("utf-8", "replace")
        fields = text.split(text[3])
        for index in (5, 3):
            parts = fields[index].split("^") if len(fields) > index else []
            if parts and parts[0].strip():
                label = parts[1].strip() if len(parts) > 1 and parts[1].strip() else parts[0]
                return parts[0].strip()[:40], label[:80]
    return None
