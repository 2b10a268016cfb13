"""The INSi exchange as data: requests and answers round trip, faults classify, bad requests fail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ins import INS_C_OLD, INS_NIR, INS_NIR_TEST
from sandboxes.insi import (
    CONFLICT_SENDER_TRAITS,
    DOMINIQUE,
    HOMONYM_BORDEAUX,
    HOMONYM_TOULOUSE,
    IDENTITIES,
    SARAH_LOU,
    InsiSandbox,
    MalformedRequest,
    parse_request,
    traits_agree,
)
from streams.identity.insi_messages import (
    ACTIONS,
    MAX_ANSWER_BYTES,
    InsiAnswer,
    InsiIdentity,
    InsiRejected,
    InsiTraits,
    InsiUnavailable,
    Operation,
    build_answer,
    build_fault,
    build_search_request,
    build_verify_request,
    normalise_trait,
    parse_answer,
)

SEARCH, VERIFY = ACTIONS["search"], ACTIONS["verify"]
TRAITS = DOMINIQUE.traits


def malformed(body: bytes, action: str | None = SEARCH) -> MalformedRequest:
    with pytest.raises(MalformedRequest) as caught:
        parse_request(body, action)
    return caught.value


def test_search_request_round_trips_with_normalised_traits() -> None:
    sent = InsiTraits("Garcia-Hammadi", "Sarah-Lou  Anna", "19770121", "F", "01154")
    request = parse_request(build_search_request(sent), f'"{SEARCH}"')
    assert request.operation == "search"
    assert request.traits == SARAH_LOU.traits
    assert request.ins is None


def test_search_request_without_birthplace() -> None:
    traits = InsiTraits("PAT-TROIS", "DOMINIQUE", "19790328", "F")
    request = parse_request(build_search_request(traits), SEARCH)
    assert request.traits == traits
    assert b"LieuNaissance" not in build_search_request(traits)


def test_verify_request_round_trips() -> None:
    body = build_verify_request(DOMINIQUE.ins, INS_NIR_TEST, TRAITS)
    request = parse_request(body, VERIFY)
    assert (request.operation, request.ins, request.oid) == ("verify", DOMINIQUE.ins, INS_NIR_TEST)
    assert request.traits == TRAITS


def test_corsican_matricule_is_accepted() -> None:
    body = build_verify_request("155022a00403316", INS_NIR_TEST, TRAITS)
    assert parse_request(body, VERIFY).ins == "155022A00403316"


@pytest.mark.parametrize(
    ("operation", "answer"),
    [
        ("search", InsiAnswer("00", (DOMINIQUE,))),
        ("search", InsiAnswer("01")),
        ("search", InsiAnswer("02")),
        ("verify", InsiAnswer("00", (SARAH_LOU,))),
        ("verify", InsiAnswer("01")),
        ("verify", InsiAnswer("03", (HOMONYM_BORDEAUX,))),
    ],
)
def test_answers_round_trip(operation: Operation, answer: InsiAnswer) -> None:
    assert parse_answer(operation, 200, build_answer(operation, answer)) == answer


def test_identity_without_birthplace_round_trips() -> None:
    identity = InsiIdentity("279035121518989", INS_NIR_TEST, "A", "B C", "19790328", "F", None)
    answer = InsiAnswer("00", (identity,))
    assert parse_answer("search", 200, build_answer("search", answer)) == answer


names = st.from_regex(r"[A-Z][A-Z' -]{0,20}[A-Z]", fullmatch=True)


@given(
    birth_name=names,
    given_names=names,
    birthplace=st.none() | st.from_regex(r"[0-9]{5}", fullmatch=True),
)
def test_any_identity_round_trips(
    birth_name: str, given_names: str, birthplace: str | None
) -> None:
    identity = InsiIdentity(
        "279035121518989", INS_NIR_TEST, birth_name, given_names, "19790328", "M", birthplace
    )
    answer = InsiAnswer("00", (identity,))
    assert parse_answer("verify", 200, build_answer("verify", answer)) == answer


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Lefèvre", "LEFEVRE"),
        ("  Jérôme   François ", "JEROME FRANCOIS"),
        ("N’Diaye", "N'DIAYE"),  # noqa: RUF001 - the typographic apostrophe is the point
        ("Œillet-Ærø", "OEILLET-AERO"),
        ("Zoë Noël", "ZOE NOEL"),
    ],
)
def test_normalise_trait(raw: str, normalised: str) -> None:
    assert normalise_trait(raw) == normalised


def test_client_fault_is_a_rejection_without_patient_data() -> None:
    fault = build_fault("InvalidInsKey", f"key of {DOMINIQUE.ins} for PAT-TROIS is wrong")
    with pytest.raises(InsiRejected) as caught:
        parse_answer("verify", 500, fault)
    assert caught.value.code == "InvalidInsKey"
    assert not caught.value.retriable
    assert DOMINIQUE.ins not in str(caught.value)
    assert "PAT-TROIS" not in str(caught.value)


def test_server_fault_is_unavailable() -> None:
    with pytest.raises(InsiUnavailable) as caught:
        parse_answer("search", 500, build_fault("Internal", "boom", client=False))
    assert caught.value.code == "Internal"
    assert caught.value.retriable


def test_fault_code_with_odd_characters_is_not_echoed() -> None:
    with pytest.raises(InsiRejected) as caught:
        parse_answer("search", 500, build_fault("PAT TROIS <279035121518989>", "x"))
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
        (200, build_answer("verify", InsiAnswer("01")), InsiUnavailable, "InvalidAnswer"),
        (200, build_answer("search", InsiAnswer("00")), InsiUnavailable, "InvalidAnswer"),
        (
            200,
            build_answer("search", InsiAnswer("02", (DOMINIQUE,))),
            InsiUnavailable,
            "InvalidAnswer",
        ),
        (
            200,
            build_answer("search", InsiAnswer("03", (DOMINIQUE,))),
            InsiUnavailable,
            "InvalidAnswer",
        ),
        (
            200,
            build_answer("search", InsiAnswer("00", (DOMINIQUE,))).replace(b"PAT-TROIS", b""),
            InsiUnavailable,
            "InvalidAnswer",
        ),
        (200, b"<x>" + b" " * MAX_ANSWER_BYTES + b"</x>", InsiUnavailable, "InvalidAnswer"),
    ],
)
def test_bad_answers_are_classified(
    status: int, body: bytes, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        parse_answer("search", status, body)
    assert getattr(caught.value, "code", None) == code


ENVELOPE = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{}'
    "</soap:Body></soap:Envelope>"
)
REC = '<r:RECSANSVITALE xmlns:r="http://www.cnamts.fr/INSiRecSans">{}</r:RECSANSVITALE>'
FULL = (
    "<r:NomNaissance>PAT-TROIS</r:NomNaissance><r:Prenoms>DOMINIQUE</r:Prenoms>"
    "<r:DateNaissance>{date}</r:DateNaissance><r:Sexe>{sex}</r:Sexe>{extra}"
)


def search_body(date: str = "19790328", sex: str = "F", extra: str = "") -> bytes:
    return ENVELOPE.format(REC.format(FULL.format(date=date, sex=sex, extra=extra))).encode()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not xml", "MalformedXml"),
        (b'<!DOCTYPE x [<!ENTITY a "aaaa">]>' + search_body(), "MalformedXml"),
        (b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>', "MalformedXml"),
        (b"<Envelope/>", "NotSoapEnvelope"),
        (ENVELOPE.format("").encode(), "EmptyBody"),
        (ENVELOPE.format("<a/><b/>").encode(), "EmptyBody"),
        (ENVELOPE.format('<x:Other xmlns:x="urn:x"/>').encode(), "UnknownOperation"),
        (search_body(extra="<r:Matricule>1</r:Matricule>"), "UnexpectedField"),
        (search_body(extra="<r:Sexe>F</r:Sexe>"), "UnexpectedField"),
        (ENVELOPE.format(REC.format("<r:Prenoms>A</r:Prenoms>")).encode(), "MissingField"),
        (search_body(date="1979-03-28"), "InvalidField"),
        (search_body(date="19791328"), "InvalidField"),
        (search_body(sex="X"), "InvalidField"),
        (search_body(extra="<r:LieuNaissance>6322</r:LieuNaissance>"), "InvalidField"),
        (search_body().replace(b"PAT-TROIS", b"PAT3"), "InvalidField"),
    ],
)
def test_malformed_requests_are_named(body: bytes, code: str) -> None:
    assert malformed(body).code == code


def test_soap_action_must_name_the_operation() -> None:
    assert malformed(build_search_request(TRAITS), VERIFY).code == "SoapActionMismatch"
    assert malformed(build_search_request(TRAITS), None).code == "SoapActionMismatch"


@pytest.mark.parametrize(
    ("ins", "oid", "code"),
    [
        ("279035121518988", INS_NIR_TEST, "InvalidInsKey"),
        ("27903512151898", INS_NIR_TEST, "InvalidField"),
        ("979035121518989", INS_NIR_TEST, "InvalidField"),
        ("", INS_NIR_TEST, "MissingField"),
        (DOMINIQUE.ins, INS_C_OLD, "NotAnInsOid"),
        (DOMINIQUE.ins, "", "MissingField"),
    ],
)
def test_malformed_verification(ins: str, oid: str, code: str) -> None:
    assert malformed(build_verify_request(ins, oid, TRAITS), VERIFY).code == code


def test_matching_rules() -> None:
    assert traits_agree(SARAH_LOU, InsiTraits("garcia-hammadi", "Sarah-Lou", "19770121", "F"))
    assert not traits_agree(SARAH_LOU, InsiTraits("GARCIA-HAMMADI", "ANNA", "19770121", "F"))
    assert not traits_agree(SARAH_LOU, InsiTraits("GARCIA-HAMMADI", "", "19770121", "F"))
    assert not traits_agree(DOMINIQUE, InsiTraits("PAT-TROIS", "DOMINIQUE", "19790328", "M"))
    assert not traits_agree(DOMINIQUE, InsiTraits("PAT-TROIS", "DOMINIQUE", "19790329", "F"))
    assert not traits_agree(
        DOMINIQUE, InsiTraits("PAT-TROIS", "DOMINIQUE", "19790328", "F", "63220")
    )
    assert traits_agree(DOMINIQUE, InsiTraits("Pat-Trois", "Dominique", "19790328", "F", "51215"))


def test_sandbox_logic_without_network() -> None:
    sandbox = InsiSandbox()
    homonyms = InsiTraits("MARTIN", "CLAIRE", "19850612", "F")
    assert sandbox.search(homonyms) == InsiAnswer("02")
    located = InsiTraits("MARTIN", "CLAIRE", "19850612", "F", HOMONYM_TOULOUSE.birthplace_code)
    assert sandbox.search(located) == InsiAnswer("00", (HOMONYM_TOULOUSE,))
    conflict = next(i for i in IDENTITIES if i.birth_name == "DURAND")
    assert sandbox.verify(conflict.ins, conflict.oid, CONFLICT_SENDER_TRAITS).code == "03"
    assert sandbox.verify(DOMINIQUE.ins, INS_NIR, TRAITS).code == "01"
