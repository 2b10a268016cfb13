"""The client's side of the INSi exchange as data: the request's shape, answers, faults,
and the pure steps of the identity stage (narrowing after a 02, the comparison)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lxml import etree

from domain.ins_traits import Traits
from sandboxes.insi import DOMINIQUE, SARAH_LOU
from sandboxes.insi_soap import read_request, write_answer, write_fault
from streams.identity.insi import differences, narrowings
from streams.identity.insi_messages import (
    ACTION,
    MAX_ANSWER_BYTES,
    NS_CTXBAM,
    NS_CTXLPS,
    NS_RECSANS,
    NS_WSA,
    SOAP_ENV,
    InsiAnswer,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
    LpsIdentity,
    build_request,
    iso_date,
    parse_answer,
)

LPS = LpsIdentity("IDAM-42", "Relais", "1.2.3", "relais-test", "1120459876")
NOW = datetime(2026, 3, 1, 8, 30, 0, 123000, tzinfo=UTC)
TRAITS = InsiTraits("Pat-Trois", "Dominique Anne", "19790328", "F", "51215")
IDENTITY = InsiIdentity(**vars(DOMINIQUE))
# A récupération's answer written by hand in the teleservice's shape (docs/insi.md).
ANSWER_00 = b"""<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>
<RESULTAT xmlns="http://www.cnamts.fr/INSiResultat"><CR><CodeCR>00</CodeCR>
<LibelleCR>OK</LibelleCR></CR><INDIVIDU><INSACTIF><IdIndividu>
<NumIdentifiant>2790351215189</NumIdentifiant><Cle>89</Cle></IdIndividu>
<OID>1.2.250.1.213.1.4.10</OID></INSACTIF><TIQ><NomNaissance>PAT-TROIS</NomNaissance>
<ListePrenom>DOMINIQUE</ListePrenom><Sexe>F</Sexe><DateNaissance>1979-03-28</DateNaissance>
<LieuNaissance>51215</LieuNaissance></TIQ></INDIVIDU></RESULTAT></soap:Body></soap:Envelope>"""


def request() -> etree._Element:
    return etree.fromstring(build_request(TRAITS, LPS, message_id="m-1", now=NOW))


def test_the_request_has_the_teleservice_shape() -> None:
    root = request()
    assert root.tag == f"{{{SOAP_ENV}}}Envelope"
    header = root.find(f"{{{SOAP_ENV}}}Header")
    assert header is not None
    lps = header.find(f"{{{NS_CTXLPS}}}ContexteLPS")
    bam = header.find(f"{{{NS_CTXBAM}}}ContexteBAM")
    assert lps is not None
    assert bam is not None
    assert (lps.get("Nature"), lps.get("Version"), bam.get("Version")) == (
        "CTXLPS",
        "01_00",
        "01_02",
    )
    idam = lps.find(f"{{{NS_CTXLPS}}}LPS/{{{NS_CTXLPS}}}IDAM")
    assert idam is not None
    assert (idam.text, idam.get("R")) == ("IDAM-42", "4")
    assert lps.findtext(f"{{{NS_CTXLPS}}}Temps") == "2026-03-01T08:30:00.123Z"
    assert bam.findtext(f"{{{NS_CTXBAM}}}Emetteur") == "1120459876"
    assert bam.find(f"{{{NS_CTXBAM}}}COUVERTURE") is not None
    assert header.findtext(f"{{{NS_WSA}}}Action") == ACTION
    assert header.findtext(f"{{{NS_WSA}}}MessageID") == "uuid:m-1"
    body = root.find(f"{{{SOAP_ENV}}}Body/{{{NS_RECSANS}}}RECSANSVITALE")
    assert body is not None
    assert [(etree.QName(e).localname, e.text) for e in body] == [
        ("NomNaissance", "PAT-TROIS"),
        ("Prenom", "DOMINIQUE"),
        ("Prenom", "ANNE"),
        ("Sexe", "F"),
        ("DateNaissance", "1979-03-28"),
        ("LieuNaissance", "51215"),
    ]


def test_the_sandbox_reads_what_the_client_writes() -> None:
    body = build_request(TRAITS, LPS, message_id="m-1", now=NOW)
    assert read_request(body, ACTION) == Traits(
        "PAT-TROIS", "DOMINIQUE ANNE", "19790328", "F", "51215"
    )


def test_a_request_without_birthplace_has_no_lieu_naissance() -> None:
    traits = InsiTraits("Pat-Trois", "Dominique", "19790328", "F")
    body = build_request(traits, LPS, message_id="m", now=NOW)
    assert b"LieuNaissance" not in body


def test_a_birth_date_must_be_compact() -> None:
    assert iso_date("19790328") == "1979-03-28"
    with pytest.raises(ValueError, match="YYYYMMDD"):
        iso_date("1979-03-28")


def test_the_handwritten_answer_is_read() -> None:
    assert parse_answer(200, ANSWER_00) == InsiAnswer("00", (IDENTITY,))


@pytest.mark.parametrize("code", ["01", "02"])
def test_answers_without_identity(code: str) -> None:
    assert parse_answer(200, write_answer(code)) == InsiAnswer(code)


def test_an_identity_without_birthplace_is_read() -> None:
    traits = Traits("PAT-TROIS", "DOMINIQUE", "19790328", "F", None)
    answer = parse_answer(200, write_answer("00", (DOMINIQUE.ins, DOMINIQUE.oid, traits)))
    assert answer.identities[0].birthplace_code is None


def sent_names(traits: InsiTraits) -> tuple[str, ...]:
    body = read_request(build_request(traits, LPS, message_id="m", now=NOW), ACTION)
    return body.birth_name, body.given_names


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("Lefèvre", "LEFEVRE"),
        ("N’Diaye", "N'DIAYE"),  # noqa: RUF001
        ("N\u00b4DIAYE", "N'DIAYE"),
        ("Jean - Pierre", "JEAN-PIERRE"),
        ("JEAN–PIERRE", "JEAN-PIERRE"),  # noqa: RUF001
        ("Œdipe  Zoé", "OEDIPE ZOE"),
    ],
)
def test_the_request_carries_names_by_the_national_rules(raw: str, sent: str) -> None:
    assert sent_names(InsiTraits(raw, raw, "19790328", "F")) == (sent, sent)


def test_the_request_normalises_the_date_sex_and_birthplace() -> None:
    body = build_request(
        InsiTraits("X", "Y", "1979-03-28", " f ", "2a004"), LPS, message_id="m", now=NOW
    )
    assert read_request(body, ACTION) == Traits("X", "Y", "19790328", "F", "2A004")


def test_traits_outside_the_rules_are_rejected_before_sending() -> None:
    with pytest.raises(InsiRejected, match="A-Z") as caught:
        build_request(InsiTraits("X2", "Y", "19790328", "F"), LPS, message_id="m", now=NOW)
    assert caught.value.code == "InvalidTraits"
    assert "X2" not in str(caught.value)


def test_a_sender_fault_is_a_rejection_without_patient_data() -> None:
    fault = write_fault("InvalidField", f"key of {DOMINIQUE.ins} for PAT-TROIS is wrong")
    with pytest.raises(InsiRejected) as caught:
        parse_answer(500, fault)
    assert caught.value.code == "InvalidField"
    assert not caught.value.retriable
    assert DOMINIQUE.ins not in str(caught.value)
    assert "PAT-TROIS" not in str(caught.value)


def test_a_receiver_fault_is_unavailable() -> None:
    with pytest.raises(InsiUnavailable) as caught:
        parse_answer(500, write_fault("desir_999", "boom", sender=False))
    assert caught.value.code == "desir_999"
    assert caught.value.retriable


def test_a_fault_code_with_odd_characters_is_not_echoed() -> None:
    with pytest.raises(InsiRejected) as caught:
        parse_answer(500, write_fault("PAT TROIS <279035121518989>", "x"))
    assert caught.value.code == "SoapFault"


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (503, b"Service Unavailable", InsiUnavailable, "HTTP503"),
        (502, b"", InsiUnavailable, "HTTP502"),
        (429, b"slow down", InsiUnavailable, "HTTP429"),
        (408, b"", InsiUnavailable, "HTTP408"),
        (404, b"not found", InsiRejected, "HTTP404"),
        (200, b"not xml", InsiUnavailable, "InvalidAnswer"),
        (200, b"<a/>", InsiUnavailable, "InvalidAnswer"),
        (200, ANSWER_00.replace(b"2003/05", b"2003/99"), InsiUnavailable, "InvalidAnswer"),
        (200, ANSWER_00.replace(b">00<", b">03<"), InsiUnavailable, "InvalidAnswer"),
        (200, ANSWER_00.replace(b">00<", b">02<"), InsiUnavailable, "InvalidAnswer"),
        (200, ANSWER_00.replace(b"PAT-TROIS", b""), InsiUnavailable, "InvalidAnswer"),
        (200, ANSWER_00.replace(b"1979-03-28", b"19790328"), InsiUnavailable, "InvalidAnswer"),
        (200, write_answer("00"), InsiUnavailable, "InvalidAnswer"),
        (200, b"<x>" + b" " * MAX_ANSWER_BYTES + b"</x>", InsiUnavailable, "InvalidAnswer"),
    ],
)
def test_bad_answers_are_classified(
    status: int, body: bytes, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        parse_answer(status, body)
    assert getattr(caught.value, "code", None) == code


def test_narrowings_add_every_first_name_then_the_birthplace() -> None:
    steps = narrowings(TRAITS)
    assert [(n, t.given_names, t.birthplace_code) for n, t in steps] == [
        (None, "DOMINIQUE", None),
        ("first-names", "DOMINIQUE ANNE", None),
        ("birthplace", "DOMINIQUE ANNE", "51215"),
    ]


def test_narrowings_never_repeat_a_request() -> None:
    one_name = InsiTraits("PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215")
    assert [n for n, _ in narrowings(one_name)] == [None, "birthplace"]
    assert [n for n, _ in narrowings(InsiTraits("X", "Y", "20000101", "M"))] == [None]


def test_differences_name_every_trait_that_differs() -> None:
    held = InsiTraits("Pat-Trois", "Dominique", "19790328", "F", "51215")
    assert differences(DOMINIQUE.ins, DOMINIQUE.oid, held, IDENTITY) == []
    other = InsiTraits("PAT-TROIS", "DOMINIQUE ANNE", "19790329", "M", None)
    assert differences(SARAH_LOU.ins, "1.2.250.1.213.1.4.8", other, IDENTITY) == [
        "ins",
        "oid",
        "given_names",
        "birth_date",
        "sex",
        "birthplace_code",
    ]


@pytest.mark.parametrize(
    ("held", "insi"),
    [
        ("GARCIA - HAMMADI", "GARCIA-HAMMADI"),
        ("GARCIA–HAMMADI", "GARCIA-HAMMADI"),  # noqa: RUF001
        ("N\u00b4DIAYE", "N'DIAYE"),
    ],
)
def test_names_the_consistency_check_accepts_agree_with_insi(held: str, insi: str) -> None:
    found = InsiIdentity("279035121518989", DOMINIQUE.oid, insi, "JEAN", "19790328", "F", "51215")
    mine = InsiTraits(held, "Jean", "1979-03-28", "f", "51215")
    assert differences(found.ins, found.oid, mine, found) == []
