"""The INSi sandbox as an oracle, without the network: what it refuses (each problem
named) and accepts, and how it matches traits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from lxml import etree

from domain.ins_traits import Traits
from sandboxes.insi import (
    CONFLICT,
    CONFLICT_SENDER_TRAITS,
    DOMINIQUE,
    HOMONYM_BORDEAUX,
    LUCIE_ANNE,
    InsiSandbox,
    matches,
    media_action,
)
from sandboxes.insi_soap import ACTION, BadRequest, read_request
from streams.identity.insi_messages import (
    NS_RECSANS,
    NS_WSA,
    InsiTraits,
    LpsIdentity,
    build_request,
)

LPS = LpsIdentity("IDAM-42", "Relais", "1.2.3", "relais-test", "1120459876")
GOOD = build_request(
    InsiTraits("PAT-TROIS", "DOMINIQUE", "19790328", "F"),
    LPS,
    message_id=str(uuid.uuid4()),
    now=datetime.now(UTC),
)


def refusal(body: bytes, action: str | None = ACTION) -> str:
    with pytest.raises(BadRequest) as caught:
        read_request(body, action)
    return caught.value.code


def edited(namespace: str, name: str, *, text: str | None = None, drop: bool = False) -> bytes:
    root = etree.fromstring(GOOD)
    for element in root.iter(f"{{{namespace}}}{name}"):
        if drop:
            element.getparent().remove(element)  # type: ignore[union-attr]
        else:
            element.text = text
    return bytes(etree.tostring(root))


def test_the_right_request_is_accepted() -> None:
    assert read_request(GOOD, ACTION) == Traits("PAT-TROIS", "DOMINIQUE", "19790328", "F", None)
    assert read_request(GOOD, None) == read_request(GOOD, ACTION)  # no action parameter


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (GOOD.replace(b"ContexteLPS", b"ContexteXYZ"), "MissingContexteLPS"),
        (GOOD.replace(b"ContexteBAM", b"ContexteXYZ"), "MissingContexteBAM"),
        (GOOD.replace(b'Version="01_00"', b'Version="02_00"'), "InvalidContexteLPS"),
        (GOOD.replace(b'R="4"', b'R="3"'), "InvalidContexteLPS"),
        (GOOD.replace(b'Version="01_02"', b'Version="01_01"'), "InvalidContexteBAM"),
        (GOOD.replace(b"COUVERTURE", b"COUVERTURA"), "InvalidContexteBAM"),
        (edited(NS_WSA, "Action", drop=True), "MissingAction"),
        (edited(NS_WSA, "Action", text="urn:other"), "ActionMismatch"),
        (edited(NS_WSA, "MessageID", drop=True), "MissingMessageID"),
        (GOOD.replace(b"2003/05/soap-envelope", b"soap/envelope/"), "NotSoap12Envelope"),
        (b"<!DOCTYPE x []>" + GOOD.split(b"?>", 1)[1], "MalformedXml"),
        (GOOD.replace(b"RECSANSVITALE", b"RECVITALE"), "UnknownOperation"),
        (edited(NS_RECSANS, "RECSANSVITALE", drop=True), "EmptyBody"),
        (edited(NS_RECSANS, "Prenom", drop=True), "UnexpectedField"),
        (edited(NS_RECSANS, "NomNaissance", text="pat-trois"), "InvalidField"),
        (edited(NS_RECSANS, "DateNaissance", text="19790328"), "InvalidField"),
    ],
)
def test_each_wrong_request_is_refused_with_its_problem_named(body: bytes, code: str) -> None:
    assert refusal(body) == code


def test_a_wrong_action_in_the_media_type_is_refused() -> None:
    assert refusal(GOOD, "urn:ServiceIdentiteCertifiee:1.0.0:autre") == "ActionMismatch"
    assert media_action('application/soap+xml; charset=utf-8; action="urn:x"') == (
        "application/soap+xml",
        "urn:x",
    )


def test_fields_out_of_the_schema_order_are_refused() -> None:
    swapped = GOOD.replace(b"<rec:Sexe>F</rec:Sexe>", b"").replace(
        b"</rec:DateNaissance>", b"</rec:DateNaissance><rec:Sexe>F</rec:Sexe>"
    )
    assert refusal(swapped) == "UnexpectedField"


def test_matching_rules() -> None:
    assert matches(DOMINIQUE, DOMINIQUE.traits)
    assert matches(CONFLICT, CONFLICT_SENDER_TRAITS)  # every first name among INSi's
    assert not matches(LUCIE_ANNE, Traits("BERNARD", "LUCIE MARIE", "19900315", "F", None))
    assert not matches(HOMONYM_BORDEAUX, Traits("MARTIN", "CLAIRE", "19850612", "F", "31555"))
    assert not matches(DOMINIQUE, Traits("PAT-TROIS", "", "19790328", "F", None))


def test_the_sandbox_answers_without_network() -> None:
    sandbox = InsiSandbox()
    response = sandbox.respond(GOOD, 'application/soap+xml; action="' + ACTION + '"')
    assert response.status == 200
    assert sandbox.answers == {"00": 1}
    refused = sandbox.respond(GOOD, "text/xml")
    assert refused.status == 415
    assert sandbox.faults == {"UnsupportedMediaType": 1}
