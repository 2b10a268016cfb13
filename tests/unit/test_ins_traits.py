"""INS traits: national normalisation of names, birth dates, and consistency with the matricule."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.ins import (
    INCOMPLETE_MONTHS,
    INS_C_OLD,
    INS_NIA,
    INS_NIR,
    INS_NIR_TEST,
    INS_OIDS,
    Mismatch,
    with_key,
)
from domain.ins_traits import (
    BirthDate,
    Traits,
    TraitsError,
    check_consistency,
    check_traits,
    normalise_birth_date,
    normalise_name,
    normalise_traits,
    parse_birth_date,
)

ALLOWED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ -'")

# The worked identity of CONTEXT.md and the ANS test patient of STANDARDS.md §1.
WORKED = "277010115400329"
SARAH_LOU = Traits("GARCIA-HAMMADI", "SARAH-LOU ANNA", "19770121", "F", "01154")
ANS_TEST_PATIENT = "279035121518989"
DOMINIQUE = Traits("PAT-TROIS", "DOMINIQUE", "19790328", "F", "51215")


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Éloïse-Marie d'Arc", "ELOISE-MARIE D'ARC"),
        ("  de   la  Fontaine ", "DE LA FONTAINE"),
        ("Œdipe", "OEDIPE"),
        ("Lætitia", "LAETITIA"),
        ("Strauß", "STRAUSS"),
        ("François", "FRANCOIS"),
        ("Hélène Zoé", "HELENE ZOE"),
        ("Søren Łukasz", "SOREN LUKASZ"),
        ("GARCIA-HAMMADI", "GARCIA-HAMMADI"),
        ("sarah-lou anna", "SARAH-LOU ANNA"),
        ("L\u2019Hôpital", "L'HOPITAL"),  # typographic apostrophe
        ("Jean\u2013Pierre", "JEAN-PIERRE"),  # en dash
        ("Jean\u00a0Pierre", "JEAN PIERRE"),  # no-break space
        ("Jean\tPierre", "JEAN PIERRE"),
        ("Dupont - Durand", "DUPONT-DURAND"),
        ("DUPONT--DURAND", "DUPONT--DURAND"),  # the 2005-2011 double-name separator is kept
        ("Dupont -- Durand", "DUPONT--DURAND"),
        ("Dupont---Durand", "DUPONT--DURAND"),
        ("-Martin-", "MARTIN"),
        ("\u2019t Hooft", "'T HOOFT"),  # the apostrophe belongs to the name
        ("O''Neill", "O'NEILL"),
        ("Jo\u00adsé", "JOSE"),  # soft hyphen: an invisible format character
        ("\uff2d\uff41\uff52\uff49\uff45", "MARIE"),  # full-width letters
        ("", ""),
        ("   ", ""),
        ("- ' -", ""),  # no letter: nothing of a name
    ],
)
def test_names_follow_the_national_rules(raw: str, normalised: str) -> None:
    assert normalise_name(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "Jean2",
        "Jean.",
        "Jean, Pierre",
        "Marie/Anne",
        "Ζωή",
        "Анна",
        "李",
        "Jean_Pierre",
        "A&B",
        "?",
    ],
)
def test_other_characters_are_refused_without_echoing_the_name(raw: str) -> None:
    with pytest.raises(TraitsError) as caught:
        normalise_name(raw)
    assert caught.value.reason is Mismatch.INVALID_CHARACTER
    assert caught.value.reason.value == "invalid-character"
    assert str(caught.value) == Mismatch.INVALID_CHARACTER.explain
    assert raw not in str(caught.value)


@given(text=st.text(max_size=40))
def test_normalisation_is_idempotent_and_only_keeps_the_allowed_characters(text: str) -> None:
    reason: Mismatch | None = None
    try:
        name = normalise_name(text)
    except TraitsError as error:
        name, reason = "", error.reason
    if reason is not None:
        assert reason is Mismatch.INVALID_CHARACTER
        return
    assert set(name) <= ALLOWED
    assert normalise_name(name) == name
    assert name == name.strip(" -")
    for run in ("  ", "---", " -", "- ", "''"):
        assert run not in name
    assert name == "" or any(c.isalpha() for c in name)


french = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzàâäçéèêëîïôöùûüÿœæABCDEÉÈÇÀŒÆ -'\u2019\u2013",
    max_size=40,
)


@given(text=french)
def test_french_names_always_normalise(text: str) -> None:
    name = normalise_name(text)
    assert set(name) <= ALLOWED
    assert normalise_name(text.upper()) == name
    assert normalise_name(text.lower()) == name


# --- birth dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("19790328", BirthDate(1979, 3, 28)),
        ("20000229", BirthDate(2000, 2, 29)),
        ("19790300", BirthDate(1979, 3, None)),
        ("19790000", BirthDate(1979, None, None)),
    ],
)
def test_birth_dates_full_and_partial(value: str, parsed: BirthDate) -> None:
    assert parse_birth_date(value) == parsed
    assert parsed.partial == (parsed.day is None)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1979032",
        "197903281",
        "19790230",
        "19000229",
        "19791301",
        "19790028",
        "00000101",
        "1979-03-28",
        "1979032\u0668",
        "abcdefgh",
    ],
)
def test_bad_birth_dates(value: str) -> None:
    assert parse_birth_date(value) is None


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("19790328", "19790328"),
        (" 1979-03-28 ", "19790328"),
        ("1979-03", "19790300"),
        ("197903", "19790300"),
        ("1979", "19790000"),
        ("28/03/1979", "28/03/1979"),  # left for the check to refuse
    ],
)
def test_birth_date_normalisation(value: str, normalised: str) -> None:
    assert normalise_birth_date(value) == normalised


@given(day=st.dates())
def test_every_calendar_day_parses(day: datetime.date) -> None:
    compact = f"{day.year:04d}{day.month:02d}{day.day:02d}"
    assert parse_birth_date(compact) == BirthDate(day.year, day.month, day.day)
    assert normalise_birth_date(day.isoformat()) == compact


# --- traits ------------------------------------------------------------------------------


def test_normalise_traits() -> None:
    raw = Traits(" garcia-hammadi ", "Sarah-Lou  Anna", "1977-01-21", " f", " 01154 ")
    assert normalise_traits(raw) == SARAH_LOU
    assert normalise_traits(SARAH_LOU) == SARAH_LOU
    assert normalise_traits(replace(SARAH_LOU, birthplace_code="  ")).birthplace_code is None
    assert normalise_traits(replace(SARAH_LOU, birthplace_code="2a004")).birthplace_code == "2A004"
    assert SARAH_LOU.first_given_name == "SARAH-LOU"
    with pytest.raises(TraitsError):
        normalise_traits(replace(SARAH_LOU, given_names="Sarah 2"))


@pytest.mark.parametrize(
    ("change", "reasons"),
    [
        ({}, []),
        ({"birth_name": " - "}, [Mismatch.EMPTY_BIRTH_NAME]),
        ({"given_names": ""}, [Mismatch.EMPTY_GIVEN_NAMES]),
        ({"birth_name": "X1", "given_names": "Y2"}, [Mismatch.INVALID_CHARACTER]),
        (
            {"birth_name": "", "given_names": "Y2"},
            [Mismatch.INVALID_CHARACTER, Mismatch.EMPTY_BIRTH_NAME],
        ),
        ({"birth_date": "19770132"}, [Mismatch.BAD_BIRTH_DATE]),
        ({"sex": "U"}, [Mismatch.BAD_SEX]),
        ({"sex": "H"}, [Mismatch.BAD_SEX]),
        ({"birthplace_code": None}, [Mismatch.MISSING_BIRTHPLACE]),
        ({"birthplace_code": "0115"}, [Mismatch.BAD_BIRTHPLACE]),
        ({"birthplace_code": "2C004"}, [Mismatch.BAD_BIRTHPLACE]),
        ({"birthplace_code": "01 54"}, [Mismatch.BAD_BIRTHPLACE]),
        ({"birthplace_code": "0115\u0664"}, [Mismatch.BAD_BIRTHPLACE]),
    ],
)
def test_check_traits(change: dict[str, str | None], reasons: list[Mismatch]) -> None:
    traits = replace(SARAH_LOU, **change)  # type: ignore[arg-type]
    assert check_traits(traits) == reasons


# --- the worked examples -----------------------------------------------------------------


@pytest.mark.parametrize("oid", sorted(INS_OIDS))
def test_the_worked_identity_is_consistent(oid: str) -> None:
    assert check_consistency(WORKED, oid, SARAH_LOU) == []
    raw = Traits("Garcia-Hammadi", "Sarah-Lou Anna", "1977-01-21", "f", "01154")
    assert check_consistency(WORKED, oid, raw) == []


def test_the_ans_test_patient_is_born_in_51215_not_63220() -> None:
    """2 79 03 51 215 189 89: born in March 1979 in commune 215 of the Marne, COG 51215
    (the county in the ANS CDA examples). The ANS HL7 sample puts 63220 in PID-11 BDL:
    that sample's traits disagree with its own matricule, and the check says so."""
    assert check_consistency(ANS_TEST_PATIENT, INS_NIR_TEST, DOMINIQUE) == []
    hl7_sample = replace(DOMINIQUE, birthplace_code="63220")
    assert check_consistency(ANS_TEST_PATIENT, INS_NIR_TEST, hl7_sample) == [
        Mismatch.BIRTHPLACE_MISMATCH
    ]


def test_matricule_faults_come_first() -> None:
    assert check_consistency(WORKED, INS_C_OLD, SARAH_LOU) == [Mismatch.INS_C_NOT_AN_INS]
    assert check_consistency(WORKED[:14], INS_NIR, SARAH_LOU) == [Mismatch.BAD_LENGTH]
    assert check_consistency("277010115400330", INS_NIR, replace(SARAH_LOU, sex="M")) == [
        Mismatch.BAD_KEY,
        Mismatch.SEX_MISMATCH,
    ]
    assert check_consistency("", "", Traits("", "", "", "", None)) == [
        Mismatch.NOT_AN_INS_OID,
        Mismatch.BAD_LENGTH,
        Mismatch.EMPTY_BIRTH_NAME,
        Mismatch.EMPTY_GIVEN_NAMES,
        Mismatch.BAD_BIRTH_DATE,
        Mismatch.BAD_SEX,
        Mismatch.MISSING_BIRTHPLACE,
    ]


def test_a_missing_birthplace_is_named_and_nothing_else() -> None:
    assert check_consistency(WORKED, INS_NIR, replace(SARAH_LOU, birthplace_code=None)) == [
        Mismatch.MISSING_BIRTHPLACE
    ]


# --- birthplace rules, by example --------------------------------------------------------


def matricule(place: str, sex: str = "1", year: str = "60", month: str = "05") -> str:
    return with_key(f"{sex}{year}{month}{place}123")


def traits_born(code: str | None, date: str = "19600517", sex: str = "M") -> Traits:
    return Traits("MARTIN", "JEAN", date, sex, code)


@pytest.mark.parametrize(
    ("place", "code", "reasons"),
    [
        ("2A004", "2A004", []),
        ("2A004", "2B004", [Mismatch.BIRTHPLACE_MISMATCH]),
        ("20004", "2A004", []),  # Corsica before 1976: département 20 in the NIR
        ("2B033", "20033", []),
        ("20004", "2A005", [Mismatch.BIRTHPLACE_MISMATCH]),
        ("19004", "2A004", [Mismatch.BIRTHPLACE_MISMATCH]),  # same key, different place
        ("97411", "97411", []),  # La Réunion: 3-digit département, 2-digit commune
        ("97411", "97412", [Mismatch.BIRTHPLACE_MISMATCH]),
        ("98735", "98735", []),
        ("75115", "75056", []),  # Paris: arrondissement in the NIR, commune in the traits
        ("75056", "75115", []),
        ("75115", "75116", [Mismatch.BIRTHPLACE_MISMATCH]),
        ("69383", "69123", []),  # Lyon
        ("13208", "13055", []),  # Marseille
        ("13208", "69123", [Mismatch.BIRTHPLACE_MISMATCH]),
        ("99352", "99352", []),  # born abroad: 99 + country
        ("99352", "99350", [Mismatch.BIRTH_COUNTRY_MISMATCH]),
        ("99352", "63220", [Mismatch.BORN_ABROAD_MISMATCH]),
        ("63220", "99100", [Mismatch.BORN_ABROAD_MISMATCH]),
        ("92050", "99352", []),  # Algeria before 1962
        ("95123", "99350", []),  # Morocco before 1956
        ("96123", "99351", []),  # Tunisia before 1956
        ("92050", "99350", [Mismatch.BORN_ABROAD_MISMATCH]),
        ("92050", "92050", []),
    ],
)
def test_birthplace_rules(place: str, code: str, reasons: list[Mismatch]) -> None:
    assert check_consistency(matricule(place), INS_NIR, traits_born(code)) == reasons


@pytest.mark.parametrize("sex", "137")
def test_odd_sex_digits_are_male(sex: str) -> None:
    ins = matricule("63220", sex=sex)
    assert check_consistency(ins, INS_NIA, traits_born("63220", sex="M")) == []
    assert check_consistency(ins, INS_NIA, traits_born("63220", sex="F")) == [Mismatch.SEX_MISMATCH]


@pytest.mark.parametrize("sex", "248")
def test_even_sex_digits_are_female(sex: str) -> None:
    ins = matricule("63220", sex=sex)
    assert check_consistency(ins, INS_NIA, traits_born("63220", sex="F")) == []
    assert check_consistency(ins, INS_NIA, traits_born("63220", sex="M")) == [Mismatch.SEX_MISMATCH]


def test_a_bad_sex_digit_is_not_also_a_sex_mismatch() -> None:
    assert check_consistency(matricule("63220", sex="5"), INS_NIR, traits_born("63220")) == [
        Mismatch.BAD_SEX_DIGIT
    ]


def test_month_rules() -> None:
    ins = matricule("63220")
    assert check_consistency(ins, INS_NIR, traits_born("63220", "19600500")) == []
    assert check_consistency(ins, INS_NIR, traits_born("63220", "19600000")) == [
        Mismatch.BIRTH_MONTH_MISMATCH  # the NIR knows a month the traits do not
    ]
    bad = matricule("63220", month="13")
    assert check_consistency(bad, INS_NIR, traits_born("63220")) == [Mismatch.BAD_MONTH]


def test_the_year_is_compared_on_two_digits() -> None:
    ins = matricule("63220", year="60")
    assert check_consistency(ins, INS_NIR, traits_born("63220", "18600517")) == []
    assert check_consistency(ins, INS_NIR, traits_born("63220", "19610517")) == [
        Mismatch.BIRTH_YEAR_MISMATCH
    ]


# --- consistency, property-based ---------------------------------------------------------


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


# Mainland départements without the documented equivalences (Corsica 20, the arrondissements
# of Paris 75, Lyon 69, Marseille 13); those are covered by the examples above.
mainland = st.tuples(
    st.integers(min_value=1, max_value=95).filter(lambda d: d not in (13, 20, 69, 75)),
    digits(3),
).map(lambda t: f"{t[0]:02d}{t[1]}")
corsica = st.tuples(st.sampled_from(["2A", "2B"]), digits(3)).map("".join)
overseas = st.tuples(st.sampled_from(["971", "972", "973", "974", "976", "987", "988"]), digits(2))
# Countries other than Algeria, Morocco, Tunisia (whose pre-independence codes are examples).
abroad = st.integers(min_value=100, max_value=999).filter(lambda c: c not in (350, 351, 352))
places = st.one_of(mainland, corsica, overseas.map("".join), abroad.map(lambda c: f"99{c}"))


@st.composite
def identities(draw: st.DrawFn) -> tuple[str, Traits]:
    """A matricule built FROM random traits: sex, year, month, birthplace."""
    sex = draw(st.sampled_from("MF"))
    digit = draw(st.sampled_from({"M": "137", "F": "248"}[sex]))
    year = draw(st.integers(min_value=1890, max_value=2099))
    month = draw(st.integers(min_value=1, max_value=12))
    day = draw(st.integers(min_value=1, max_value=28))
    place = draw(places)
    body = f"{digit}{year % 100:02d}{month:02d}{place}{draw(digits(3))}"
    name = draw(st.sampled_from(["MARTIN", "GARCIA-HAMMADI", "D'ARC", "DUPONT--DURAND"]))
    return with_key(body), Traits(name, "JEAN", f"{year}{month:02d}{day:02d}", sex, place)


oids = st.sampled_from(sorted(INS_OIDS))


@given(identity=identities(), oid=oids)
def test_a_matricule_built_from_traits_is_consistent_with_them(
    identity: tuple[str, Traits], oid: str
) -> None:
    ins, traits = identity
    assert check_consistency(ins, oid, traits) == []


@given(identity=identities(), oid=oids)
def test_changing_the_sex_is_a_sex_mismatch(identity: tuple[str, Traits], oid: str) -> None:
    ins, traits = identity
    other = replace(traits, sex={"M": "F", "F": "M"}[traits.sex])
    assert check_consistency(ins, oid, other) == [Mismatch.SEX_MISMATCH]


@given(identity=identities(), oid=oids, year=st.integers(min_value=1890, max_value=2099))
def test_changing_the_year_is_a_year_mismatch(
    identity: tuple[str, Traits], oid: str, year: int
) -> None:
    ins, traits = identity
    other = replace(traits, birth_date=f"{year}{traits.birth_date[4:]}")
    expected = [] if year % 100 == int(traits.birth_date[2:4]) else [Mismatch.BIRTH_YEAR_MISMATCH]
    assert check_consistency(ins, oid, other) == expected


@given(identity=identities(), oid=oids, month=st.integers(min_value=0, max_value=12))
def test_changing_the_month_is_a_month_mismatch(
    identity: tuple[str, Traits], oid: str, month: int
) -> None:
    ins, traits = identity
    day = traits.birth_date[6:] if month else "00"
    other = replace(traits, birth_date=f"{traits.birth_date[:4]}{month:02d}{day}")
    same = month == int(traits.birth_date[4:6])
    assert check_consistency(ins, oid, other) == ([] if same else [Mismatch.BIRTH_MONTH_MISMATCH])


@given(identity=identities(), oid=oids, day=st.integers(min_value=0, max_value=28))
def test_the_day_and_the_names_are_not_in_the_matricule(
    identity: tuple[str, Traits], oid: str, day: int
) -> None:
    ins, traits = identity
    other = replace(traits, birth_date=f"{traits.birth_date[:6]}{day:02d}", birth_name="OTHER")
    assert check_consistency(ins, oid, other) == []


@given(identity=identities(), oid=oids, place=places)
def test_changing_the_birthplace_is_the_named_place_mismatch(
    identity: tuple[str, Traits], oid: str, place: str
) -> None:
    ins, traits = identity
    assert traits.birthplace_code is not None
    assume(place != traits.birthplace_code)
    abroad = (traits.birthplace_code.startswith("99"), place.startswith("99"))
    if all(abroad):
        expected = Mismatch.BIRTH_COUNTRY_MISMATCH
    elif any(abroad):
        expected = Mismatch.BORN_ABROAD_MISMATCH
    else:
        expected = Mismatch.BIRTHPLACE_MISMATCH
    other = replace(traits, birthplace_code=place)
    assert check_consistency(ins, oid, other) == [expected]


@given(
    identity=identities(),
    oid=oids,
    month=st.sampled_from(sorted(INCOMPLETE_MONTHS)),
    traits_month=st.integers(min_value=0, max_value=12),
)
def test_incomplete_civil_status_months_agree_with_any_birth_month(
    identity: tuple[str, Traits], oid: str, month: int, traits_month: int
) -> None:
    ins, traits = identity
    incomplete = with_key(f"{ins[:3]}{month:02d}{ins[5:13]}")
    day = traits.birth_date[6:] if traits_month else "00"
    other = replace(traits, birth_date=f"{traits.birth_date[:4]}{traits_month:02d}{day}")
    assert check_consistency(incomplete, oid, other) == []


@given(identity=identities(), oid=st.sampled_from([INS_C_OLD, "1.2.3"]))
def test_the_authority_is_checked_even_when_the_digits_agree(
    identity: tuple[str, Traits], oid: str
) -> None:
    ins, traits = identity
    expected = Mismatch.INS_C_NOT_AN_INS if oid == INS_C_OLD else Mismatch.NOT_AN_INS_OID
    assert check_consistency(ins, oid, traits) == [expected]


@given(
    ins=st.text(max_size=16),
    oid=st.sampled_from([INS_NIR, INS_NIA, "x"]),
    traits=st.builds(
        Traits,
        st.text(max_size=10),
        st.text(max_size=10),
        st.text(max_size=10),
        st.text(max_size=2),
        st.none() | st.text(max_size=6),
    ),
)
def test_check_consistency_never_raises(ins: str, oid: str, traits: Traits) -> None:
    reasons = check_consistency(ins, oid, traits)
    assert all(isinstance(r, Mismatch) for r in reasons)
    assert len(set(reasons)) == len(reasons)


def test_nia_gets_every_check() -> None:
    ins = matricule("99352", sex="7", year="85", month="31")
    assert check_consistency(ins, INS_NIA, traits_born("99352", "19850000", "M")) == []
    assert check_consistency(ins, INS_NIA, traits_born("99351", "19850000", "F")) == [
        Mismatch.SEX_MISMATCH,
        Mismatch.BIRTH_COUNTRY_MISMATCH,
    ]
    assert check_consistency(ins, INS_NIA, traits_born("99352", "19860000", "M")) == [
        Mismatch.BIRTH_YEAR_MISMATCH
    ]


def test_every_failure_message_is_the_rule_alone() -> None:
    reasons = check_consistency(
        ANS_TEST_PATIENT, INS_NIR_TEST, Traits("PAT-TROIS", "DOMINIQUE", "19800101", "M", "63220")
    )
    assert reasons == [
        Mismatch.SEX_MISMATCH,
        Mismatch.BIRTH_YEAR_MISMATCH,
        Mismatch.BIRTH_MONTH_MISMATCH,
        Mismatch.BIRTHPLACE_MISMATCH,
    ]
    for reason in reasons:
        for value in ("PAT-TROIS", "DOMINIQUE", "1980", "63220", ANS_TEST_PATIENT, "51215"):
            assert value not in reason.explain


def test_traits_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SARAH_LOU.sex = "M"  # type: ignore[misc]
