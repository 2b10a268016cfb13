"""The INSi exchange as data: SOAP 1.1 requests, answers and faults (pure, no I/O).

Two operations. *Récupération par traits* (``rechercherInsAvecTraitsIdentite``,
body ``RECSANSVITALE`` in ``http://www.cnamts.fr/INSiRecSans``, names from
STANDARDS.md §1) answers ``00`` one identity, ``01`` none, ``02`` several
(no identity is disclosed then: add first names, then the birthplace COG, and
search again). *Vérification* of a held INS (``verifierIns``, body
``VERIFIERINS``) answers ``00`` the INS is known and the traits agree, ``01``
the INS is unknown to that authority, ``03`` the INS is known but the traits
disagree (INSi's identity comes back so the caller can say which differ). The
GIE's own name for the verification operation was not found: ``verifierIns``
and its namespace are this project's.

Errors never carry patient data: only an error code and a fixed sentence.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final, Literal

from lxml import etree

from domain.document_id import safe_parser

Operation = Literal["search", "verify"]

SOAP_ENV: Final = "http://schemas.xmlsoap.org/soap/envelope/"
NS_SEARCH: Final = "http://www.cnamts.fr/INSiRecSans"
NS_VERIFY: Final = "urn:relais:insi:verification:1"
NS_ERROR: Final = "urn:relais:insi:erreur:1"
ACTIONS: Final[dict[Operation, str]] = {
    "search": "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite",
    "verify": "urn:ServiceIdentiteCertifiee:1.0.0:verifierIns",
}
NAMESPACES: Final[dict[Operation, str]] = {"search": NS_SEARCH, "verify": NS_VERIFY}
BODIES: Final[dict[Operation, str]] = {"search": "RECSANSVITALE", "verify": "VERIFIERINS"}
ANSWER_CODES: Final[dict[Operation, dict[str, str]]] = {
    "search": {
        "00": "Une identité trouvée",
        "01": "Aucune identité trouvée",
        "02": "Plusieurs identités trouvées",
    },
    "verify": {
        "00": "INS et traits concordants",
        "01": "INS inconnu",
        "03": "Traits discordants",
    },
}
# How many identities each code carries: 00 and 03 exactly one, 01 and 02 none.
IDENTITIES_PER_CODE: Final = {"00": 1, "01": 0, "02": 0, "03": 1}
TRAIT_FIELDS: Final = (
    ("birth_name", "NomNaissance"),
    ("given_names", "Prenoms"),
    ("birth_date", "DateNaissance"),
    ("sex", "Sexe"),
    ("birthplace_code", "LieuNaissance"),
)
MAX_ANSWER_BYTES: Final = 1 << 20
# Letters NFKD does not split into a base letter and a diacritic, and apostrophes.
_UNDECOMPOSABLE: Final = str.maketrans(
    {"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "ß": "ss", "ł": "l", "Ł": "L"}
    | {"đ": "d", "Đ": "D", "\u2019": "'", "\u2018": "'", "\u02bc": "'"}
)
_CODE_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


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
    code: str  # "00" | "01" | "02" | "03", see ANSWER_CODES
    identities: tuple[InsiIdentity, ...] = ()


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
    """INSi refused our request as malformed (a SOAP Client fault): retrying cannot help."""


def normalise_trait(text: str) -> str:
    """Upper case without diacritics, as INSi holds traits (Œ -> OE, curly apostrophe -> ')."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_UNDECOMPOSABLE))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.upper().split())


def _envelope(payload: etree._Element) -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    etree.SubElement(env, f"{{{SOAP_ENV}}}Header")
    etree.SubElement(env, f"{{{SOAP_ENV}}}Body").append(payload)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def _add_traits(parent: etree._Element, ns: str, traits: InsiTraits | InsiIdentity) -> None:
    for attribute, name in TRAIT_FIELDS:
        value = getattr(traits, attribute)
        if value is not None:
            etree.SubElement(parent, f"{{{ns}}}{name}").text = value


def build_search_request(traits: InsiTraits) -> bytes:
    """A ``rechercherInsAvecTraitsIdentite`` envelope."""
    body = etree.Element(f"{{{NS_SEARCH}}}RECSANSVITALE", nsmap={"rec": NS_SEARCH})
    _add_traits(body, NS_SEARCH, traits)
    return _envelope(body)


def build_verify_request(ins: str, oid: str, traits: InsiTraits) -> bytes:
    """A ``verifierIns`` envelope: the held matricule, its OID and the held traits."""
    body = etree.Element(f"{{{NS_VERIFY}}}VERIFIERINS", nsmap={"ver": NS_VERIFY})
    etree.SubElement(body, f"{{{NS_VERIFY}}}Matricule").text = ins
    etree.SubElement(body, f"{{{NS_VERIFY}}}OID").text = oid
    _add_traits(body, NS_VERIFY, traits)
    return _envelope(body)


def build_answer(operation: Operation, answer: InsiAnswer) -> bytes:
    """INSi's answer envelope: ``CR`` (code and label) then the identities."""
    ns = NAMESPACES[operation]
    body = etree.Element(f"{{{ns}}}{BODIES[operation]}Reponse", nsmap={"r": ns})
    report = etree.SubElement(body, f"{{{ns}}}CR")
    etree.SubElement(report, f"{{{ns}}}CodeCR").text = answer.code
    label = ANSWER_CODES[operation].get(answer.code, "")
    etree.SubElement(report, f"{{{ns}}}LibelleCR").text = label
    for identity in answer.identities:
        individual = etree.SubElement(body, f"{{{ns}}}Individu")
        etree.SubElement(individual, f"{{{ns}}}Matricule").text = identity.ins
        etree.SubElement(individual, f"{{{ns}}}OID").text = identity.oid
        _add_traits(individual, ns, identity)
    return _envelope(body)


def build_fault(code: str, message: str, *, client: bool = True) -> bytes:
    """A SOAP 1.1 Fault (``soap:Client`` for the caller's error, else ``soap:Server``)."""
    fault = etree.Element(f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = "soap:Client" if client else "soap:Server"
    etree.SubElement(fault, "faultstring").text = message
    detail = etree.SubElement(etree.SubElement(fault, "detail"), f"{{{NS_ERROR}}}Erreur")
    etree.SubElement(detail, f"{{{NS_ERROR}}}Code").text = code
    return _envelope(fault)


def _text(parent: etree._Element, ns: str, name: str) -> str | None:
    found = parent.find(f"{{{ns}}}{name}")
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _fault_error(fault: etree._Element) -> InsiError:
    faultcode = (fault.findtext("faultcode") or "").strip()
    code = fault.findtext(f"detail/{{{NS_ERROR}}}Erreur/{{{NS_ERROR}}}Code") or "SoapFault"
    code = code.strip() if _CODE_SAFE.match(code.strip()) else "SoapFault"
    if faultcode.rpartition(":")[2].split(".")[0] == "Client":
        return InsiRejected(f"INSi refused the request ({code})", code=code)
    return InsiUnavailable(f"INSi reported a server fault ({code})", code=code)


def _identity(individual: etree._Element, ns: str) -> InsiIdentity:
    values = {attribute: _text(individual, ns, name) for attribute, name in TRAIT_FIELDS}
    ins, oid = _text(individual, ns, "Matricule"), _text(individual, ns, "OID")
    required = [ins, oid, *(v for k, v in values.items() if k != "birthplace_code")]
    if any(value is None for value in required):
        raise InsiUnavailable("INSi answer lacks an identity field", code="InvalidAnswer")
    return InsiIdentity(
        ins=str(ins),
        oid=str(oid),
        birth_name=str(values["birth_name"]),
        given_names=str(values["given_names"]),
        birth_date=str(values["birth_date"]),
        sex=str(values["sex"]),
        birthplace_code=values["birthplace_code"],
    )


def _payload(body: bytes) -> etree._Element | None:
    """The SOAP Body's first child, or None when the answer is not a SOAP envelope."""
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


def parse_answer(operation: Operation, status: int, body: bytes) -> InsiAnswer:
    """Read INSi's HTTP answer: an :class:`InsiAnswer`, or raise an :class:`InsiError`.

    SOAP 1.1 sends faults with HTTP 500: a ``Client`` fault is our request's
    fault (:class:`InsiRejected`); anything else that is not a well-formed
    answer is INSi's trouble (:class:`InsiUnavailable`), so documents wait.
    """
    payload = _payload(body) if status not in {408, 429} else None
    if payload is not None and payload.tag == f"{{{SOAP_ENV}}}Fault":
        raise _fault_error(payload)
    if status >= 500 or status in {408, 429}:
        raise InsiUnavailable(f"INSi answered HTTP {status}", code=f"HTTP{status}")
    if status != 200:
        raise InsiRejected(f"INSi answered HTTP {status}", code=f"HTTP{status}")
    ns = NAMESPACES[operation]
    if payload is None or payload.tag != f"{{{ns}}}{BODIES[operation]}Reponse":
        raise InsiUnavailable("INSi answer is not the expected envelope", code="InvalidAnswer")
    code = payload.findtext(f"{{{ns}}}CR/{{{ns}}}CodeCR")
    code = code.strip() if code else None
    if code not in ANSWER_CODES[operation]:
        raise InsiUnavailable("INSi answered an unexpected code", code="InvalidAnswer")
    identities = tuple(_identity(i, ns) for i in payload.iterfind(f"{{{ns}}}Individu"))
    if len(identities) != IDENTITIES_PER_CODE[code]:
        raise InsiUnavailable(
            "INSi answer's identities disagree with its code", code="InvalidAnswer"
        )
    return InsiAnswer(code, identities)
