"""The INSi récupération by traits as data: the SOAP 1.2 request, its answer and faults.

Pure, no I/O. One operation, ``rechercherInsAvecTraitsIdentite`` (WSDL
``DESIR_ICIR_EXP_1.5.0``): the body ``RECSANSVITALE`` (``http://www.cnamts.fr/INSiRecSans``)
carries the birth name, the birth first names (one ``Prenom`` each), the sex, the birth
date ``YYYY-MM-DD`` and, optionally, the birthplace COG; the SOAP header carries the
``ContexteBAM`` (``urn:siram:bam:ctxbam``, version ``01_02``, an empty ``COUVERTURE``:
no carte Vitale), the ``ContexteLPS`` (``urn:siram:lps:ctxlps``, version ``01_00``: the
software's CNDA authorisation ``IDAM``, version, instance and name) and WS-Addressing
``Action`` / ``MessageID``. The answer ``RESULTAT`` (``http://www.cnamts.fr/INSiResultat``)
has ``CR/CodeCR``: ``00`` one identity (``INDIVIDU``: ``INSACTIF`` matricule, key and OID,
``TIQ`` the five traits), ``01`` none, ``02`` several (none disclosed). Faults are SOAP 1.2
(``Sender``: our request; ``Receiver``: INSi's trouble) with a ``siram:Erreur`` detail.
Sources and assumptions: docs/insi.md.

Errors never carry patient data: only an error code and a fixed sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

from lxml import etree

from domain.document_id import safe_parser
from domain.ins_traits import Traits, TraitsError, normalise_traits

SOAP_ENV: Final = "http://www.w3.org/2003/05/soap-envelope"
NS_WSA: Final = "http://www.w3.org/2005/08/addressing"
NS_CTXBAM: Final = "urn:siram:bam:ctxbam"
NS_CTXLPS: Final = "urn:siram:lps:ctxlps"
NS_RECSANS: Final = "http://www.cnamts.fr/INSiRecSans"
NS_RESULTAT: Final = "http://www.cnamts.fr/INSiResultat"
NS_SIRAM: Final = "urn:siram"
ACTION: Final = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
#: SOAP 1.2 over HTTP names the action in the media type.
CONTENT_TYPE: Final = f'application/soap+xml; charset=utf-8; action="{ACTION}"'
CR_LABELS: Final = {
    "00": "OK",
    "01": "Aucune identite trouvee",
    "02": "Plusieurs identites trouvees",
}
# How many identities each code carries: 00 exactly one, 01 and 02 none.
IDENTITIES_PER_CODE: Final = {"00": 1, "01": 0, "02": 0}
TIQ_FIELDS: Final = (
    ("birth_name", "NomNaissance"),
    ("given_names", "ListePrenom"),
    ("sex", "Sexe"),
    ("birth_date", "DateNaissance"),
    ("birthplace_code", "LieuNaissance"),
)
MAX_ANSWER_BYTES: Final = 1 << 20
_CODE_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_COMPACT_DATE = re.compile(r"^[0-9]{8}$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class InsiTraits:
    """The five INS traits as a sender holds them (dates ``YYYYMMDD``, sex ``M``/``F``)."""

    birth_name: str
    given_names: str  # the birth first names, space-separated, in civil-status order
    birth_date: str
    sex: str
    birthplace_code: str | None = None  # COG; 99xxx when born abroad


@dataclass(frozen=True)
class InsiIdentity:
    """An identity as INSi holds it: matricule, assigning authority and the 5 traits."""

    ins: str
    oid: str
    birth_name: str
    given_names: str
    birth_date: str
    sex: str
    birthplace_code: str | None

    @property
    def traits(self) -> InsiTraits:
        return InsiTraits(
            self.birth_name, self.given_names, self.birth_date, self.sex, self.birthplace_code
        )


@dataclass(frozen=True)
class InsiAnswer:
    code: str  # "00" | "01" | "02", see CR_LABELS
    identities: tuple[InsiIdentity, ...] = ()


@dataclass(frozen=True)
class LpsIdentity:
    """Who asks: the ``ContexteLPS`` / ``ContexteBAM`` headers' content."""

    idam: str  # the software's authorisation number from the CNDA (IDAM, R="4")
    name: str  # the software's name
    version: str  # its version
    instance: str  # this installation
    emitter: str  # Emetteur: the structure that calls


class InsiError(Exception):
    """Base of INSi errors; ``retriable`` says whether trying again later can help."""

    retriable = False

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class InsiUnavailable(InsiError):
    """INSi could not answer usefully (timeout, connection, 5xx, garbled answer): wait."""

    retriable = True


class InsiCircuitOpen(InsiUnavailable):
    """The circuit breaker is open: INSi was not called; try again after ``retry_at``."""

    def __init__(self, retry_at: float) -> None:
        super().__init__("INSi circuit is open; call not attempted", code="CircuitOpen")
        self.retry_at = retry_at


class InsiRejected(InsiError):
    """INSi refused our request (a SOAP ``Sender`` fault): retrying cannot help."""


class InvalidBirthDate(InsiRejected, ValueError):
    """A birth date that is not ``YYYYMMDD``: the request cannot be built."""


def normalised(traits: InsiTraits) -> InsiTraits:
    """The traits as INSi holds them, by the national rules of :mod:`domain.ins_traits`.

    Names upper case A-Z without diacritics, every hyphen and apostrophe variant read as
    ``-`` and ``'``, no space around a hyphen; the date ``YYYYMMDD``; sex and COG upper
    case. Raises :class:`InsiRejected` (code ``InvalidTraits``) when a name holds a
    character the rules refuse: such traits cannot be asked about.
    """
    held = Traits(
        traits.birth_name, traits.given_names, traits.birth_date, traits.sex, traits.birthplace_code
    )
    try:
        norm = normalise_traits(held)
    except TraitsError as exc:
        raise InsiRejected(
            f"the traits cannot be sent to INSi: {exc}", code="InvalidTraits"
        ) from None
    return replace(
        traits,
        birth_name=norm.birth_name,
        given_names=norm.given_names,
        birth_date=norm.birth_date,
        sex=norm.sex,
        birthplace_code=norm.birthplace_code,
    )


def iso_date(compact: str) -> str:
    """``YYYYMMDD`` (the sender's form) as INSi's ``YYYY-MM-DD``; :class:`InsiRejected`
    (a ``ValueError`` too) for anything else."""
    if not _COMPACT_DATE.match(compact):
        raise InvalidBirthDate("a birth date is YYYYMMDD", code="InvalidTraits")
    return f"{compact[:4]}-{compact[4:6]}-{compact[6:]}"


def _sub(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = text
    return element


def _contexts(header: etree._Element, lps: LpsIdentity, message_id: str, now: str) -> None:
    bam = _sub(header, NS_CTXBAM, "ContexteBAM")
    bam.set("Version", "01_02")
    for name, text in (("Id", message_id), ("Temps", now), ("Emetteur", lps.emitter)):
        _sub(bam, NS_CTXBAM, name, text)
    _sub(bam, NS_CTXBAM, "COUVERTURE")  # empty: no carte Vitale
    ctx = _sub(header, NS_CTXLPS, "ContexteLPS")
    ctx.set("Nature", "CTXLPS")
    ctx.set("Version", "01_00")
    for name, text in (("Id", message_id), ("Temps", now), ("Emetteur", lps.emitter)):
        _sub(ctx, NS_CTXLPS, name, text)
    software = _sub(ctx, NS_CTXLPS, "LPS")
    _sub(software, NS_CTXLPS, "IDAM", lps.idam).set("R", "4")
    _sub(software, NS_CTXLPS, "Version", lps.version)
    _sub(software, NS_CTXLPS, "Instance", lps.instance)
    _sub(software, NS_CTXLPS, "Nom", lps.name)
    _sub(header, NS_WSA, "Action", ACTION)
    _sub(header, NS_WSA, "MessageID", f"uuid:{message_id}")


def build_request(traits: InsiTraits, lps: LpsIdentity, *, message_id: str, now: datetime) -> bytes:
    """A ``rechercherInsAvecTraitsIdentite`` envelope (traits normalised as INSi holds them,
    see :func:`normalised`; :class:`InsiRejected` when they cannot be)."""
    traits = normalised(traits)
    nsmap = {"soap": SOAP_ENV, "ctxbam": NS_CTXBAM, "ctxlps": NS_CTXLPS, "wsa": NS_WSA}
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap=nsmap)
    stamp = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _contexts(_sub(env, SOAP_ENV, "Header"), lps, message_id, stamp)
    body = etree.SubElement(
        _sub(env, SOAP_ENV, "Body"), f"{{{NS_RECSANS}}}RECSANSVITALE", nsmap={"rec": NS_RECSANS}
    )
    _sub(body, NS_RECSANS, "NomNaissance", traits.birth_name)
    for given in traits.given_names.split():
        _sub(body, NS_RECSANS, "Prenom", given)
    _sub(body, NS_RECSANS, "Sexe", traits.sex)
    _sub(body, NS_RECSANS, "DateNaissance", iso_date(traits.birth_date))
    if traits.birthplace_code:
        _sub(body, NS_RECSANS, "LieuNaissance", traits.birthplace_code)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def _text(parent: etree._Element, path: str) -> str | None:
    found = parent.find(path)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _safe(code: str | None) -> str | None:
    return code if code and _CODE_SAFE.match(code) else None


def _fault_error(fault: etree._Element) -> InsiError:
    s = f"{{{SOAP_ENV}}}"
    value = (_text(fault, f"{s}Code/{s}Value") or "").rpartition(":")[2]
    erreur = fault.find(f"{s}Detail/{{{NS_SIRAM}}}Erreur")
    subcode = (_text(fault, f"{s}Code/{s}Subcode/{s}Value") or "").rpartition(":")[2]
    detail_code = erreur.get("code") if erreur is not None else None
    code = _safe(detail_code) or _safe(subcode) or "SoapFault"
    if value == "Sender":
        return InsiRejected(f"INSi refused the request ({code})", code=code)
    return InsiUnavailable(f"INSi reported a server fault ({code})", code=code)


def _identity(individual: etree._Element) -> InsiIdentity:
    r = f"{{{NS_RESULTAT}}}"
    number = _text(individual, f"{r}INSACTIF/{r}IdIndividu/{r}NumIdentifiant")
    key = _text(individual, f"{r}INSACTIF/{r}IdIndividu/{r}Cle")
    oid = _text(individual, f"{r}INSACTIF/{r}OID")
    values = {attr: _text(individual, f"{r}TIQ/{r}{name}") for attr, name in TIQ_FIELDS}
    required = [number, key, oid, *(v for k, v in values.items() if k != "birthplace_code")]
    born = values["birth_date"] or ""
    if any(value is None for value in required) or not _ISO_DATE.match(born):
        raise InsiUnavailable("INSi answer lacks an identity field", code="InvalidAnswer")
    return InsiIdentity(
        ins=f"{number}{key}",
        oid=str(oid),
        birth_name=str(values["birth_name"]),
        given_names=str(values["given_names"]),
        birth_date=born.replace("-", ""),
        sex=str(values["sex"]),
        birthplace_code=values["birthplace_code"],
    )


def _payload(body: bytes) -> etree._Element | None:
    """The SOAP Body's first child, or None when the answer is not a SOAP 1.2 envelope."""
    if len(body) > MAX_ANSWER_BYTES:
        return None
    try:
        root = etree.fromstring(body, safe_parser())
    except etree.XMLSyntaxError:
        return None
    soap_body = root.find(f"{{{SOAP_ENV}}}Body") if root.tag == f"{{{SOAP_ENV}}}Envelope" else None
    if soap_body is None or len(soap_body) == 0:
        return None
    return soap_body[0]


def parse_answer(status: int, body: bytes) -> InsiAnswer:
    """Read INSi's HTTP answer: an :class:`InsiAnswer`, or raise an :class:`InsiError`.

    A SOAP fault (INSi sends them with HTTP 500) is read whatever the status: a
    ``Sender`` fault is our request's fault (:class:`InsiRejected`); anything else
    that is not a well-formed answer is INSi's trouble (:class:`InsiUnavailable`).
    """
    payload = _payload(body) if status not in {408, 429} else None
    if payload is not None and payload.tag == f"{{{SOAP_ENV}}}Fault":
        raise _fault_error(payload)
    if status >= 500 or status in {408, 429}:
        raise InsiUnavailable(f"INSi answered HTTP {status}", code=f"HTTP{status}")
    if status != 200:
        raise InsiRejected(f"INSi answered HTTP {status}", code=f"HTTP{status}")
    if payload is None or payload.tag != f"{{{NS_RESULTAT}}}RESULTAT":
        raise InsiUnavailable("INSi answer is not the expected envelope", code="InvalidAnswer")
    code = _text(payload, f"{{{NS_RESULTAT}}}CR/{{{NS_RESULTAT}}}CodeCR")
    if code not in CR_LABELS:
        raise InsiUnavailable("INSi answered an unexpected code", code="InvalidAnswer")
    identities = tuple(_identity(i) for i in payload.iterfind(f"{{{NS_RESULTAT}}}INDIVIDU"))
    if len(identities) != IDENTITIES_PER_CODE[code]:
        raise InsiUnavailable(
            "INSi answer's identities disagree with its code", code="InvalidAnswer"
        )
    return InsiAnswer(code, identities)
