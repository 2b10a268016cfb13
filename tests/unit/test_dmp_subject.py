"""The VIHF names the document's author with their own role, else the responsible person.

NameID, ``subject-id`` and ``subject:role`` always name one person: the author's profession
comes from the CDA ``assignedAuthor/code`` (TRE_G15); without it, the responsible person
acts with their own role. The VIHFs are judged by the DMP sandbox's checks
(:mod:`sandboxes.dmp_vihf`), not by the client.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from consumers.dmp.subject import author_roles, roles_of_g15, subject_of, subject_of_xcn
from consumers.ihe.vihf import Role, SigningKey, Subject, VihfIdentity
from consumers.ihe.vihf_cache import VihfCache
from domain.xds.metadata import document_entry
from ops.demo.samples import DOMINIQUE, LAB, cda
from sandboxes.dmp_vihf import ROLE, SUBJECT_ID, Vihf, verified
from sandboxes.pki import SandboxPki, write_test_pki
from tests.unit.test_dmp_oracle_kit import DATA

PATIENT = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH"
# An hour after collection: the test PKI is made when this module's first test runs (in a
# full run, many minutes after collection) and its certificates are valid from then on.
NOW = datetime.now(UTC) + timedelta(hours=1)
DOCTOR = Role("10", "1.2.250.1.71.1.2.7")
RESPONSIBLE = VihfIdentity(
    structure_id="1120459876",
    subject_id="899900000001",
    subject_name="RESPONSABLE Traitement",
    roles=(DOCTOR, Role("SM26", "1.2.250.1.71.4.2.5")),  # a general practitioner
    activity_sector="SA25^1.2.250.1.71.4.2.4",
    lps_id="relais-test",
    lps_name="Relais",
    lps_version="0.1.0",
    lps_homologation="SANDBOX",
)
BIOLOGIST_ROLES = (DOCTOR, Role("SM03", "1.2.250.1.71.4.2.5"))  # G15_10/SM03 of the demo CDA
CONTENT = cda(LAB, DOMINIQUE, "1.2.250.1.213.1.1.9.4242.1", "texte")
G15 = b'code="G15_10/SM03" displayName="M\xc3\xa9decin - Biologie m\xc3\xa9dicale (SM)"'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SandboxPki:
    return write_test_pki(tmp_path_factory.mktemp("pki"), structure_id=RESPONSIBLE.structure_id)


def judged(cache: VihfCache, pki: SandboxPki, subject: Subject | None = None) -> Vihf:
    return verified(
        cache.signed(PATIENT, NOW, subject),
        ca_file=pki.ca_cert,
        schema_dir=DATA / "ihe-xsd",
        now=NOW,
        client_cert=None,
    )


def test_the_author_is_read_from_an_idnat_ps_xcn_only() -> None:
    xcn = "801234567866^DEMO^Biologiste^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert subject_of_xcn(xcn) == Subject("801234567866", "DEMO Biologiste")
    escaped = "8001^D\\S\\UPONT^Anne^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    assert subject_of_xcn(escaped) == Subject("8001", "D^UPONT Anne")
    local = "42^DEMO^Bio^^^^^^&1.2.250.1.999&ISO^D^^^EI"  # a local id: not an IdNat_PS
    assert subject_of_xcn(local) is None
    assert subject_of_xcn("") is None
    assert subject_of_xcn("^DEMO^Bio^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS") is None


def test_a_tre_g15_author_code_gives_the_profession_and_the_ordinal_specialty() -> None:
    g15 = "1.2.250.1.213.1.1.4.5"
    assert roles_of_g15("G15_10/SM03", g15) == BIOLOGIST_ROLES
    assert roles_of_g15("G15_10", g15) == (DOCTOR,)
    assert roles_of_g15("G15_21/G", g15) == (Role("21", "1.2.250.1.71.1.2.7"),)  # pharmacist
    assert roles_of_g15("AUTOMATE", "1.2.250.1.213.1.1.4.6") == ()  # not a professional
    assert roles_of_g15("G15_10/SM03", "1.2.3") == ()  # another code system


def test_a_document_names_its_author_with_the_author_s_own_role() -> None:
    entry = document_entry(CONTENT, {})
    assert subject_of(entry, CONTENT) == Subject("801234567866", "DEMO Biologiste", BIOLOGIST_ROLES)
    assert author_roles(CONTENT, "801234567866") == BIOLOGIST_ROLES
    assert author_roles(CONTENT, "801234567867") == ()  # another person's code is not theirs
    assert author_roles(b"<not xml", "801234567866") == ()
    assert subject_of(None) is None  # a deletion carries no document
    assert RESPONSIBLE.acting_as(None) is RESPONSIBLE


def test_an_author_without_a_profession_leaves_the_responsible_person_acting() -> None:
    """Naming the author with the responsible person's role would make a biologist a GP."""
    no_code = CONTENT.replace(G15, b'code="AUTOMATE" displayName="Automate"').replace(
        b'codeSystem="1.2.250.1.213.1.1.4.5"', b'codeSystem="1.2.250.1.213.1.1.4.6"', 1
    )
    assert G15 in CONTENT
    entry = document_entry(no_code, {})
    assert subject_of_xcn(entry.author_person) is not None  # the author is known...
    assert subject_of(entry, no_code) is None  # ...but not their profession
    assert subject_of(document_entry(CONTENT, {})) is None  # no document to read it from
    roleless = Subject("801234567866", "DEMO Biologiste")
    assert RESPONSIBLE.acting_as(roleless) is RESPONSIBLE


def test_the_vihf_names_one_person_and_the_cache_keys_on_them(pki: SandboxPki) -> None:
    key = SigningKey(pki.client_cert.read_bytes(), pki.client_key.read_bytes())
    cache = VihfCache(RESPONSIBLE, key)
    author = subject_of(document_entry(CONTENT, {}), CONTENT)
    assert author is not None
    by_author = judged(cache, pki, author)
    assert by_author.subject == "801234567866"
    assert by_author.value(SUBJECT_ID) == "DEMO Biologiste"
    assert by_author.attributes[ROLE] == ("10^1.2.250.1.71.1.2.7", "SM03^1.2.250.1.71.4.2.5")
    assert by_author.value("Identifiant_Structure") == "1120459876"  # still the structure's
    by_default = judged(cache, pki)
    assert by_default.subject == "899900000001"
    assert by_default.value(SUBJECT_ID) == "RESPONSABLE Traitement"
    assert by_default.attributes[ROLE] == ("10^1.2.250.1.71.1.2.7", "SM26^1.2.250.1.71.4.2.5")
    assert cache.signatures == 2  # one per subject: never the author's VIHF for another
    cache.signed(PATIENT, NOW, author)
    cache.signed(PATIENT, NOW, RESPONSIBLE.subject)  # the responsible person, named or not
    roleless = judged(cache, pki, replace(author, roles=()))  # profession unknown
    assert (roleless.subject, roleless.attributes[ROLE]) == (
        "899900000001",
        by_default.attributes[ROLE],
    )
    assert cache.signatures == 2
    other = replace(author, id="801234567867")
    assert judged(cache, pki, other).subject == "801234567867"
    assert cache.signatures == 3
