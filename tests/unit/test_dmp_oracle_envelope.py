"""The DMP sandbox's envelope oracle: MTOM/XOP, the SOAP 1.2 schema, WS-Addressing.

Each check: the right message (the client's, put back together by the test) is accepted,
and one wrong message is refused with the fault or error the specifications name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from ops.cli.main import main as relais
from sandboxes import SandboxSetupError
from sandboxes.dmp import DmpSandbox
from sandboxes.dmp_xml import NS
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import (
    IDENTITY,
    Package,
    client_request,
    fault,
    package,
    refusal,
    sandbox_of,
    success,
)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=IDENTITY.structure_id)


def test_the_right_request_is_filed_as_sent_and_as_reassembled(pki: SandboxPki) -> None:
    sandbox = sandbox_of(pki)
    assert success(sandbox.file(*client_request(pki)))
    again = package(pki)
    assert success(sandbox.file(*again.wire()))  # the same document: a warning, no error
    assert len(sandbox.filed) == 1


def test_the_root_part_must_be_xop_with_soap_12_inside(pki: SandboxPki) -> None:
    wrong = package(pki)
    wrong.root_type = "text/xml"
    assert fault(sandbox_of(pki).file(*wrong.wire()))[1] == "rim:InvalidRequestException"
    content_type, body = package(pki).wire()
    no_start_info = content_type.replace('; start-info="application/soap+xml"', "")
    assert "start-info" in fault(sandbox_of(pki).file(no_start_info, body))[2]


def test_an_include_must_name_a_part_and_a_part_an_entry(pki: SandboxPki) -> None:
    dangling = package(pki)
    dangling.parts = {f"x{cid}": data for cid, data in dangling.parts.items()}
    assert "xop:Include" in fault(sandbox_of(pki).file(*dangling.wire()))[2]
    extra = package(pki)
    extra.parts["stray@oracle"] = b"<x/>"
    assert refusal(sandbox_of(pki).file(*extra.wire()))[0] == "XDSMissingDocumentMetadata"


def test_the_envelope_must_be_valid_against_the_soap_12_schema(pki: SandboxPki) -> None:
    wrong = package(pki)
    etree.SubElement(wrong.root, f"{{{NS['s']}}}Body")  # a second Body
    code, subcode, reason = fault(sandbox_of(pki).file(*wrong.wire()))
    assert (code, subcode) == ("env:Sender", "rim:InvalidRequestException")
    assert "soap-1.2-envelope.xsd" in reason


def test_a_soap_11_envelope_is_a_version_mismatch(pki: SandboxPki) -> None:
    wrong = package(pki)
    root = etree.fromstring(etree.tostring(wrong.root).replace(NS["s"].encode(), SOAP11.encode()))
    wrong.root = root
    assert fault(sandbox_of(pki).file(*wrong.wire()))[0] == "env:VersionMismatch"


def test_ws_addressing_action_message_id_and_to(pki: SandboxPki) -> None:
    no_id = package(pki).drop("//wsa:MessageID")
    subcode = fault(sandbox_of(pki).file(*no_id.wire()))[1]
    assert subcode == "wsa:MessageAddressingHeaderRequired"
    wrong = package(pki)
    wrong.one("//wsa:Action").text = "urn:ihe:iti:2007:RegisterDocumentSet-b"
    assert fault(sandbox_of(pki).file(*wrong.wire()))[1] == "wsa:ActionNotSupported"


def test_a_header_it_must_understand_but_does_not_is_a_fault(pki: SandboxPki) -> None:
    wrong = package(pki)
    header = wrong.one("/s:Envelope/s:Header")
    etree.SubElement(header, "{urn:example}Unknown", {f"{{{NS['s']}}}mustUnderstand": "true"})
    assert fault(sandbox_of(pki).file(*wrong.wire()))[0] == "env:MustUnderstand"


def test_the_body_must_be_a_provide_and_register_request(pki: SandboxPki) -> None:
    wrong = package(pki)
    body = wrong.one("/s:Envelope/s:Body")
    body.replace(body[0], etree.Element("{urn:ihe:iti:xds-b:2007}RetrieveDocumentSetRequest"))
    assert "ProvideAndRegister" in fault(sandbox_of(pki).file(*wrong.wire()))[2]


def test_plain_soap_is_not_mtom_and_other_types_are_refused(pki: SandboxPki) -> None:
    _, body = package(pki).wire()
    assert fault(sandbox_of(pki).file("text/plain", body))[1] == "rim:InvalidRequestException"


def test_a_missing_data_folder_stops_the_sandbox_naming_the_option(
    pki: SandboxPki, tmp_path: Path
) -> None:
    with pytest.raises(SandboxSetupError, match="--data-dir"):
        DmpSandbox(pki.ca_cert, data_dir=tmp_path / "nowhere")
    (tmp_path / "partial" / "ihe-xsd").mkdir(parents=True)  # schemas, but no value sets
    with pytest.raises(SandboxSetupError, match="JDV_J07"):
        DmpSandbox(pki.ca_cert, data_dir=tmp_path / "partial")


def test_package_round_trip_keeps_the_document_bytes(pki: SandboxPki) -> None:
    content_type, body = client_request(pki)
    pack = Package.of(content_type, body)
    assert any(part.startswith(b"<?xml") for part in pack.parts.values())


def test_the_cli_stops_on_a_missing_data_folder_naming_the_option(tmp_path: Path) -> None:
    args = ["sandbox", "dmp", "--pki", str(tmp_path / "pki"), "--data-dir", str(tmp_path / "x")]
    result = CliRunner().invoke(relais, args)
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert "--data-dir" in line
