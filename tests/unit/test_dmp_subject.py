"""The VIHF names the document's author when the producer gives one, else the responsible person."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from consumers.dmp.subject import subject_of, subject_of_xcn
from consumers.ihe.vihf import Role, SigningKey, Subject, VihfIdentity, verify_vihf
from consumers.ihe.vihf_cache import VihfCache
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from sandboxes.pki import SandboxPki, write_test_pki

PATIENT = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
NOW = datetime.now(UTC)
RESPONSIBLE = VihfIdentity(
    structure_id="1120459876",
    subject_id="899900000001",
    subject_name="RESPONSABLE Traitement",
    roles=(Role("10", "1.2.250.1.71.1.2.7"),),
    activity_sector="SA25^1.2.250.1.71.4.2.4",
    lps_id="relais-test",
    lps_name="Relais",
    lps_version="0.1.0",
    lps_homologation="SANDBOX",
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=RESPONSIBLE.structure_id)


def test_the_author_is_read_from_an_idnat_ps_xcn_only() -> None:
    xcn = "801234567866^DEMO^Biologiste^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert subject_of_xcn(xcn) == Subject("801234567866", "DEMO Biologiste")
    escaped = "8001^D\\S\\UPONT^Anne^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert subject_of_xcn(escaped) == Subject("8001", "D^UPONT Anne")
    local = "42^DEMO^Bio^^^^^^&1.2.250.1.999&ISO^D^^^EI"  # a local id: not an IdNat_PS
    assert subject_of_xcn(local) is None
    assert subject_of_xcn("") is None
    assert subject_of_xcn("^DEMO^Bio^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS") is None


def test_a_document_names_its_author_and_a_deletion_the_responsible_person() -> None:
    entry = document_entry(cda(LAB, DOMINIQUE, "1.2.250.1.213.1.1.9.4242.1", "texte"), {})
    assert subject_of(entry) == Subject("801234567866", "DEMO Biologiste")
    assert subject_of(None) is None  # a deletion carries no document
    assert RESPONSIBLE.acting_as(None) is RESPONSIBLE


def test_the_vihf_names_the_subject_and_the_cache_keys_on_it(pki: SandboxPki) -> None:
    key = SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    cache = VihfCache(RESPONSIBLE, key)
    author = Subject("801234567866", "DEMO Biologiste")
    by_author = verify_vihf(cache.signed(PATIENT, NOW, author), pki.ca_cert, now=NOW)
    assert by_author.name_id == "801234567866"
    assert by_author.value("urn:oasis:names:tc:xspa:1.0:subject:subject-id") == "DEMO Biologiste"
    assert by_author.value("Identifiant_Structure") == "1120459876"  # still the structure's
    by_default = verify_vihf(cache.signed(PATIENT, NOW), pki.ca_cert, now=NOW)
    assert by_default.name_id == "899900000001"
    assert cache.signatures == 2  # one per subject: never the author's VIHF for another
    cache.signed(PATIENT, NOW, author)
    cache.signed(PATIENT, NOW, RESPONSIBLE.subject)  # the responsible person, named or not
    assert cache.signatures == 2
    other = replace(author, id="801234567867")
    assert verify_vihf(cache.signed(PATIENT, NOW, other), pki.ca_cert, now=NOW).name_id == (
        "801234567867"
    )
    assert cache.signatures == 3
