"""The INSi sandbox's reading and writing of the teleservice's SOAP 1.2 messages.

Written from the public shape of ``rechercherInsAvecTraitsIdentite`` (docs/insi.md),
independently of Relais's client (:mod:`streams.identity`): a request is an
``Envelope`` whose ``Header`` holds a ``ContexteBAM`` (``urn:siram:bam:ctxbam``,
``Version="01_02"``: ``Id``, ``Temps``, ``Emetteur``, ``COUVERTURE``), a
``ContexteLPS`` (``urn:siram:lps:ctxlps``, ``Nature="CTXLPS" Version="01_00"``: ``Id``,
``Temps``, ``Emetteur``, ``LPS/IDAM[@R=4]``, ``Version``, ``Instance``, ``Nom``) and
WS-Addressing ``Action`` and ``MessageID``; its ``Body`` one ``RECSANSVITALE``
(``http://www.cnamts.fr/INSiRecSans``) in the schema's order: ``NomNaissance``,
``Prenom`` (one or more), ``Sexe``, ``DateNaissance`` (``YYYY-MM-DD``), optional
``LieuNaissance``. Every refusal is a :class:`BadRequest` whose code names the problem.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from lxml import etree

from domain.document_id import safe_parser
from domain.ins_traits import Traits
from sandboxes import Refusal

SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
WSA: Final = "http://www.w3.org/2005/08/addressing"
CTXBAM: Final = "urn:siram:bam:ctxbam"
CTXLPS: Final = "urn:siram:lps:ctxlps"
RECSANS: Final = "http://www.cnamts.fr/INSiRecSans"
RESULTAT: Final = "http://www.cnamts.fr/INSiResultat"
SIRAM: Final = "urn:siram"
ACTION: Final = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
LABELS: Final = {"00": "OK", "01": "Aucune identite trouvee", "02": "Plusieurs identites trouvees"}

NAME = re.compile(r"^[A-Z](?:[A-Z' -]{0,98}[A-Z])?$")
ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
SEX = re.compile(r"^[MF]$")
COG = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
# RECSANSVITALE's sequence, as its element names joined by spaces.
BODY_ORDER = re.compile(r"^NomNaissance( Prenom)+ Sexe DateNaissance( LieuNaissance)?$")


class BadRequest(Refusal):
    """A request INSi refuses: a SOAP 1.2 ``Sender`` fault (HTTP 500, as INSi answers)."""

    default_status = 500


def _child(parent: etree._Element, ns: str, name: str) -> etree._Element | None:
    found = parent.findall(f"{{{ns}}}{name}")
    return found[0] if len(found) == 1 else None


def _text(parent: etree._Element, ns: str, name: str) -> str:
    found = _child(parent, ns, name)
    return (found.text or "").strip() if found is not None else ""


def _timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _envelope(body: bytes) -> etree._Element:
    try:
        tree = etree.fromstring(body, safe_parser()).getroottree()
    except etree.XMLSyntaxError:
        raise BadRequest("MalformedXml", "the request is not well-formed XML") from None
    if tree.docinfo.internalDTD is not None:  # any DOCTYPE, internal subset or not
        raise BadRequest("MalformedXml", "a SOAP message must not have a DTD")
    root = tree.getroot()
    if root.tag != f"{{{SOAP12}}}Envelope":
        raise BadRequest("NotSoap12Envelope", "the root is not a SOAP 1.2 Envelope")
    return root


def check_contexte_lps(header: etree._Element) -> None:
    """The ``ContexteLPS``: who the software is (its CNDA authorisation ``IDAM``)."""
    ctx = _child(header, CTXLPS, "ContexteLPS")
    if ctx is None:
        raise BadRequest("MissingContexteLPS", "the SOAP Header needs one ContexteLPS")
    software = _child(ctx, CTXLPS, "LPS")
    idam = _child(software, CTXLPS, "IDAM") if software is not None else None
    valid = (
        ctx.get("Nature") == "CTXLPS"
        and ctx.get("Version") == "01_00"
        and bool(_text(ctx, CTXLPS, "Id"))
        and _timestamp(_text(ctx, CTXLPS, "Temps"))
        and software is not None
        and idam is not None
        and idam.get("R") == "4"
        and bool((idam.text or "").strip())
        and all(_text(software, CTXLPS, name) for name in ("Version", "Nom"))
    )
    if not valid:
        raise BadRequest(
            "InvalidContexteLPS",
            "ContexteLPS needs Nature CTXLPS, Version 01_00, Id, Temps and LPS "
            "(IDAM R=4, Version, Nom)",
        )


def check_contexte_bam(header: etree._Element) -> None:
    """The ``ContexteBAM``: the request's context (an empty ``COUVERTURE`` without Vitale)."""
    bam = _child(header, CTXBAM, "ContexteBAM")
    if bam is None:
        raise BadRequest("MissingContexteBAM", "the SOAP Header needs one ContexteBAM")
    valid = (
        bam.get("Version") == "01_02"
        and bool(_text(bam, CTXBAM, "Id"))
        and _timestamp(_text(bam, CTXBAM, "Temps"))
        and _child(bam, CTXBAM, "COUVERTURE") is not None
    )
    if not valid:
        raise BadRequest(
            "InvalidContexteBAM", "ContexteBAM needs Version 01_02, Id, Temps and COUVERTURE"
        )


def check_addressing(header: etree._Element, media_action: str | None) -> None:
    """WS-Addressing: the action names the operation, and a MessageID is given."""
    action = _text(header, WSA, "Action")
    if not action:
        raise BadRequest("MissingAction", "the SOAP Header needs a wsa:Action")
    if action != ACTION or media_action not in {None, ACTION}:
        raise BadRequest(
            "ActionMismatch", "the action does not name rechercherInsAvecTraitsIdentite"
        )
    if not _text(header, WSA, "MessageID"):
        raise BadRequest("MissingMessageID", "the SOAP Header needs a wsa:MessageID")


def _checked(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.match(value):
        raise BadRequest("InvalidField", f"{name} has an invalid format")
    return value


def _traits(payload: etree._Element) -> Traits:
    names = [etree.QName(child) for child in payload]
    if any(q.namespace != RECSANS for q in names) or not BODY_ORDER.match(
        " ".join(q.localname for q in names)
    ):
        raise BadRequest(
            "UnexpectedField",
            "RECSANSVITALE holds NomNaissance, Prenom..., Sexe, DateNaissance[, LieuNaissance]",
        )
    values = [(etree.QName(c).localname, (c.text or "").strip()) for c in payload]
    fields = dict(values)
    given = [_checked("Prenom", v, NAME) for n, v in values if n == "Prenom"]
    born = ISO_DATE.match(fields["DateNaissance"])
    if born is None:
        raise BadRequest("InvalidField", "DateNaissance has an invalid format")
    place = fields.get("LieuNaissance")
    return Traits(
        birth_name=_checked("NomNaissance", fields["NomNaissance"], NAME),
        given_names=" ".join(" ".join(given).split()),
        birth_date="".join(born.groups()),
        sex=_checked("Sexe", fields["Sexe"], SEX),
        birthplace_code=None if place is None else _checked("LieuNaissance", place, COG),
    )


def read_request(body: bytes, media_action: str | None) -> Traits:
    """Validate one request as INSi would; the traits it asks about, or :class:`BadRequest`."""
    envelope = _envelope(body)
    header = _child(envelope, SOAP12, "Header")
    if header is None:
        raise BadRequest("MissingContexteLPS", "the request has no SOAP Header")
    check_contexte_lps(header)
    check_contexte_bam(header)
    check_addressing(header, media_action)
    soap_body = _child(envelope, SOAP12, "Body")
    if soap_body is None or len(soap_body) != 1:
        raise BadRequest("EmptyBody", "the SOAP Body must hold exactly one request")
    if soap_body[0].tag != f"{{{RECSANS}}}RECSANSVITALE":
        raise BadRequest("UnknownOperation", "the SOAP Body holds no RECSANSVITALE")
    return _traits(soap_body[0])


def _wrap(payload: etree._Element) -> bytes:
    env = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12})
    etree.SubElement(env, f"{{{SOAP12}}}Body").append(payload)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{RESULTAT}}}{name}")
    element.text = text
    return element


def write_answer(code: str, identity: tuple[str, str, Traits] | None = None) -> bytes:
    """``RESULTAT``: ``CR`` then, for ``00``, the ``INDIVIDU`` (matricule, OID, ``TIQ``)."""
    result = etree.Element(f"{{{RESULTAT}}}RESULTAT", nsmap={"res": RESULTAT})
    report = _add(result, "CR")
    _add(report, "CodeCR", code)
    _add(report, "LibelleCR", LABELS[code])
    if identity is not None:
        ins, oid, traits = identity
        individual = _add(result, "INDIVIDU")
        active = _add(individual, "INSACTIF")
        number = _add(active, "IdIndividu")
        _add(number, "NumIdentifiant", ins[:13])
        _add(number, "Cle", ins[13:])
        _add(active, "OID", oid)
        tiq = _add(individual, "TIQ")
        _add(tiq, "NomNaissance", traits.birth_name)
        _add(tiq, "ListePrenom", traits.given_names)
        _add(tiq, "Sexe", traits.sex)
        d = traits.birth_date
        _add(tiq, "DateNaissance", f"{d[:4]}-{d[4:6]}-{d[6:]}")
        if traits.birthplace_code:
            _add(tiq, "LieuNaissance", traits.birthplace_code)
    return _wrap(result)


def write_fault(code: str, reason: str, *, sender: bool = True) -> bytes:
    """A SOAP 1.2 Fault whose ``siram:Erreur`` detail's ``code`` names the problem."""
    s = f"{{{SOAP12}}}"
    fault = etree.Element(f"{s}Fault", nsmap={"soap": SOAP12, "siram": SIRAM})
    value = etree.SubElement(etree.SubElement(fault, f"{s}Code"), f"{s}Value")
    value.text = "soap:Sender" if sender else "soap:Receiver"
    text = etree.SubElement(etree.SubElement(fault, f"{s}Reason"), f"{s}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = reason
    erreur = etree.SubElement(etree.SubElement(fault, f"{s}Detail"), f"{{{SIRAM}}}Erreur")
    erreur.set("code", code)
    erreur.set("severite", "erreur")
    erreur.text = reason
    return _wrap(fault)
