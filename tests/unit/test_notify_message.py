"""Notification words (French, no health data) and patient preferences."""

from __future__ import annotations

import email
import itertools
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.notify.message import (
    GSM_BASIC,
    Kind,
    MailHeaders,
    Notice,
    mail_message,
    mail_text,
    message_id,
    notice_of,
    sms_text,
)
from consumers.notify.preferences import (
    Channel,
    PreferencesError,
    load_preferences,
    parse_preferences,
    preference_key,
)
from producers.hl7.message import PatientIdentity
from producers.submission import patient_key_of
from relais.keyring import Keyring

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
KEY_A = "a" * 64
KEY_B = "b" * 64


# Words ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "subject", "headline"),
    [
        (
            [Kind.NEW],
            "Nouveau document disponible dans Mon espace santé",
            "Un nouveau document est disponible dans votre profil Mon espace santé.",
        ),
        (
            [Kind.UPDATED],
            "Un document a été mis à jour dans Mon espace santé",
            "Un document de votre profil Mon espace santé a été mis à jour.",
        ),
        (
            [Kind.NEW, Kind.NEW, Kind.UPDATED],
            "Nouveaux documents disponibles dans Mon espace santé",
            "3 nouveaux documents sont disponibles dans votre profil Mon espace santé.",
        ),
        (
            [Kind.UPDATED, Kind.UPDATED],
            "Nouveaux documents disponibles dans Mon espace santé",
            "2 documents de votre profil Mon espace santé ont été mis à jour.",
        ),
    ],
)
def test_french_words_for_each_case(kinds: list[Kind], subject: str, headline: str) -> None:
    notice = notice_of(kinds)
    assert notice.subject == subject
    assert notice.headline == headline
    text = mail_text(notice)
    assert text.startswith("Bonjour,\n\n" + headline)
    assert "https://www.monespacesante.fr" in text
    assert "aucune information médicale" in text
    assert ("Pour le consulter" if len(kinds) == 1 else "Pour les consulter") in text


def test_a_notice_is_about_at_least_one_document() -> None:
    with pytest.raises(ValueError, match="at least one document"):
        Notice(0, frozenset({Kind.NEW}))
    with pytest.raises(ValueError, match="at least one document"):
        notice_of([])


@given(count=st.integers(min_value=1, max_value=99_999), mix=st.sampled_from([0, 1, 2]))
def test_every_sms_fits_one_gsm_segment(count: int, mix: int) -> None:
    kinds = [frozenset({Kind.NEW}), frozenset({Kind.UPDATED}), frozenset(Kind)][mix]
    text = sms_text(Notice(count, kinds))
    assert len(text) <= 160
    assert set(text) <= GSM_BASIC
    assert text.startswith("Mon espace santé : ")


def test_the_text_depends_on_nothing_but_the_count_and_kinds() -> None:
    """The composer has no access to a request: the words are a closed, small set."""
    texts = {
        (mail_text(notice_of(list(kinds))), sms_text(notice_of(list(kinds))))
        for n in (1, 2)
        for kinds in itertools.product(Kind, repeat=n)
    }
    assert len(texts) == 4  # 1 new, 1 updated, 2 new (or mixed), 2 updated
    for mail, sms in texts:
        for word in ("biologie", "résultat", "analyse", "imagerie", "Dr", "CHU", "laboratoire"):
            assert word not in mail
            assert word not in sms


def test_mail_message_headers() -> None:
    notice = notice_of([Kind.NEW])
    ident = message_id(["r2", "r1"], "relais.mssante.fr")
    assert ident == message_id(["r1", "r2"], "relais.mssante.fr")  # order does not matter
    assert ident != message_id(["r1"], "relais.mssante.fr")
    headers = MailHeaders("relais@relais.mssante.fr", "x@patient.mssante.fr", ident, True)
    raw = mail_message(notice, headers, date=NOW).as_bytes()
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == notice.subject
    assert parsed["Message-ID"] == ident
    assert parsed["X-MSS-MES"] == "FIN"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"] == "Sun, 22 Nov 2026 09:30:00 +0000"
    body = parsed.get_body().get_content()  # type: ignore[union-attr]
    assert body == mail_text(notice)
    assert not parsed.is_multipart()  # never an attachment

    plain = MailHeaders("noreply@chu.example", "p@example.org", ident, False)
    assert mail_message(notice, plain, date=NOW)["X-MSS-MES"] is None


# Preferences ---------------------------------------------------------------------


def test_preferences_by_patient_key_with_the_mailbox_as_default() -> None:
    prefs = parse_preferences(
        '{"version": 1, "patients": {'
        f'"{KEY_A}": {{"channel": "email", "address": " marie@example.org "}},'
        f'"{KEY_B}": {{"channel": "sms", "phone": "+33 6 12 34 56 78"}},'
        f'"{"c" * 64}": {{"channel": "none"}}}}}}'
    )
    assert len(prefs) == 3
    assert prefs.of(KEY_A).channel is Channel.EMAIL
    assert prefs.of(KEY_A).address == "marie@example.org"
    assert prefs.of(KEY_B).address == "+33612345678"
    assert prefs.of("c" * 64).channel is Channel.NONE
    assert prefs.of("d" * 64).channel is Channel.MSSANTE
    assert "marie" not in repr(prefs.of(KEY_A))
    assert "marie" not in repr(prefs)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('{"channel": "pigeon"}', "channel must be one of mssante, email, sms, none"),
        ('{"channel": "email", "address": "marie.example.org"}', "valid e-mail address"),
        ('{"channel": "email"}', "valid e-mail address"),
        ('{"channel": "sms", "phone": "0612345678"}', "international form"),
        ('"email"', "expected an object"),
    ],
)
def test_a_bad_entry_is_named_and_its_data_not_echoed(entry: str, message: str) -> None:
    with pytest.raises(PreferencesError, match=message) as caught:
        parse_preferences(f'{{"version": 1, "patients": {{"{KEY_A}": {entry}}}}}', origin="p.json")
    text = str(caught.value)
    assert text.startswith("p.json: patient aaaaaaaa…")
    assert "0612345678" not in text
    assert "marie" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ('{"patients": {}}', '"version": 1'),
        ('{"version": 1, "patients": []}', "map patient keys"),
        ('{"version": 1, "patients": {"279035121518989": {"channel": "none"}}}', "64 hex"),
    ],
)
def test_a_bad_file_says_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(PreferencesError, match=message):
        parse_preferences(text)


def test_load_preferences(tmp_path: Path) -> None:
    assert len(load_preferences(None)) == 0
    with pytest.raises(PreferencesError, match="RELAIS_NOTIFY_PREFERENCES"):
        load_preferences(tmp_path / "missing.json")
    path = tmp_path / "prefs.json"
    path.write_text(f'{{"version": 1, "patients": {{"{KEY_A}": {{"channel": "none"}}}}}}')
    assert load_preferences(path).of(KEY_A).channel is Channel.NONE


def test_preference_key_is_the_records_patient_key() -> None:
    keyring = Keyring.generate()
    patient = PatientIdentity(
        ins="279035121518989",
        ins_oid="1.2.250.1.213.1.4.8",
        local_ids=(),
        birth_name="PAT-TROIS",
        given_names="DOMINIQUE",
        birth_date="19790328",
        sex="F",
        birthplace_code="51215",
        reliability="VALI",
    )
    expected = patient_key_of(keyring, patient, "ANY-FACILITY")
    assert preference_key(keyring, "279035121518989", "1.2.250.1.213.1.4.8") == expected
