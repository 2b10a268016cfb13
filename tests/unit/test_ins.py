"""INS matricule arithmetic (key = 97 - (N mod 97), Corsica 2A -> 19 and 2B -> 18),
authorities (NIR / NIA / test / demo, INS-C refused) and the matricule's named faults."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from domain.ins import (
    INS_C_OLD,
    INS_NIA,
    INS_NIR,
    INS_NIR_DEMO,
    INS_NIR_TEST,
    INS_OIDS,
    InsKind,
    Mismatch,
    check_matricule,
    ins_key,
    ins_key_valid,
    ins_kind,
    ins_number,
    is_test_oid,
    with_key,
)

DIGITS = "0123456789"
bodies = st.text(alphabet=DIGITS, min_size=13, max_size=13)
corsica_bodies = st.tuples(
    st.text(alphabet=DIGITS, min_size=5, max_size=5),
    st.sampled_from(["2A", "2B"]),
    st.text(alphabet=DIGITS, min_size=6, max_size=6),
)

# Worked examples: the CNAM/ANS worked identity and the ANS test patient.
WORKED = "277010115400329"
ANS_TEST_PATIENT = "279035121518989"


@given(body=bodies)
def test_appending_the_key_gives_a_valid_matricule(body: str) -> None:
    matricule = f"{body}{ins_key(int(body)):02d}"
    assert len(matricule) == 15
    assert ins_number(matricule) == int(body)
    assert ins_key_valid(matricule)


@given(number=st.integers(min_value=0, max_value=10**13 - 1))
def test_key_is_between_1_and_97(number: int) -> None:
    key = ins_key(number)
    assert 1 <= key <= 97
    assert (number + key) % 97 == 0


@given(body=bodies, position=st.integers(min_value=0, max_value=14), digit=st.sampled_from(DIGITS))
def test_any_single_digit_change_invalidates(body: str, position: int, digit: str) -> None:
    matricule = f"{body}{ins_key(int(body)):02d}"
    assume(matricule[position] != digit)
    changed = matricule[:position] + digit + matricule[position + 1 :]
    assert not ins_key_valid(changed)


@given(
    parts=corsica_bodies,
    position=st.integers(min_value=0, max_value=14),
    digit=st.sampled_from(DIGITS),
)
def test_single_digit_change_invalidates_corsica_matricules(
    parts: tuple[str, str, str], position: int, digit: str
) -> None:
    matricule = with_key("".join(parts))
    assume(position not in (5, 6) and matricule[position] != digit)
    changed = matricule[:position] + digit + matricule[position + 1 :]
    assert not ins_key_valid(changed)


@given(parts=corsica_bodies)
def test_corsica_departments_read_as_19_and_18(parts: tuple[str, str, str]) -> None:
    head, dept, tail = parts
    read_as = {"2A": "19", "2B": "18"}[dept]
    number = int(head + read_as + tail)
    matricule = f"{head}{dept}{tail}{ins_key(number):02d}"
    assert ins_number(matricule) == number
    assert ins_key_valid(matricule)
    # 2A and 2B differ by 10**6 in N, which 97 does not divide: their keys differ.
    other = {"2A": "2B", "2B": "2A"}[dept]
    assert not ins_key_valid(f"{head}{other}{tail}{ins_key(number):02d}")


def test_corsica_worked_example() -> None:
    # 1 80 05 2A 004 123: N = 1800519004123 (2A read as 19).
    number = 1800519004123
    key = 97 - number % 97
    assert ins_key_valid(f"180052A004123{key:02d}")
    assert not ins_key_valid(f"180052B004123{key:02d}")


@pytest.mark.parametrize("matricule", [WORKED, ANS_TEST_PATIENT])
def test_reference_matricules_are_valid(matricule: str) -> None:
    assert ins_key_valid(matricule)


@pytest.mark.parametrize(
    "matricule",
    [
        "",
        "27701011540032",  # 14 characters
        "2770101154003299",  # 16 characters
        "2770101154003",  # body only
        "A77010115400329",  # a letter outside the département
        "277A10115400329",  # 2A/2B only count at the département position
        "2770101154003A9",  # a letter in the key
        "27701011540032A",
        "27701012C400329",  # Corsica is 2A or 2B only
        " 77010115400329",
        "27701011540032 ",
        "+77010115400329",
        "27701011540-329",
        "277010115400300",  # key 00 never occurs
        "277010115400330",  # wrong key
    ],
)
def test_malformed_matricules_are_invalid(matricule: str) -> None:
    assert not ins_key_valid(matricule)


@pytest.mark.parametrize("position", [0, 6, 12, 13, 14])
@pytest.mark.parametrize("zero", ["\u0660", "\u06f0", "\uff10", "\u0966"])
def test_non_ascii_digits_are_invalid(position: int, zero: str) -> None:
    """'٣' and friends are str.isdigit() and int() reads them: they must still be refused."""
    digit = int(WORKED[position])
    lookalike = chr(ord(zero) + digit)  # the same digit value in another script
    assert int(lookalike) == digit
    changed = WORKED[:position] + lookalike + WORKED[position + 1 :]
    assert len(changed) == 15
    assert not ins_key_valid(changed)
    if position < 13:
        assert ins_number(changed) is None


def test_arabic_indic_three_is_refused() -> None:
    assert not ins_key_valid("٣" * 15)
    assert not ins_key_valid("2790351215189" + "٨٩")


@given(text=st.text(max_size=20))
def test_any_text_gives_a_boolean_without_raising(text: str) -> None:
    result = ins_key_valid(text)
    assert isinstance(result, bool)
    if result:
        assert len(text) == 15
        assert text.isascii()


def test_ins_oids() -> None:
    assert {INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO} == INS_OIDS
    assert INS_C_OLD not in INS_OIDS


# --- authorities -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("oid", "kind", "test"),
    [
        (INS_NIR, InsKind.NIR, False),
        (INS_NIA, InsKind.NIA, False),
        (INS_NIR_TEST, InsKind.NIR, True),
        (INS_NIR_DEMO, InsKind.NIR, True),
        (INS_C_OLD, None, False),
        ("1.2.250.1.213.1.4.1", None, False),
        ("1.2.250.1.213.1.4.80", None, False),
        ("1.2.250.1.213.1.4.8 ", None, False),
        ("urn:oid:1.2.250.1.213.1.4.8", None, False),
        ("", None, False),
    ],
)
def test_ins_kind_and_test_oids(oid: str, kind: InsKind | None, test: bool) -> None:
    assert ins_kind(oid) is kind
    assert is_test_oid(oid) is test
    assert (ins_kind(oid) is not None) == (oid in INS_OIDS)


@given(oid=st.text(max_size=30))
def test_only_the_four_ins_oids_have_a_kind(oid: str) -> None:
    assert (ins_kind(oid) is not None) == (oid in INS_OIDS)
    assume(oid not in (INS_C_OLD, *INS_OIDS))
    assert check_matricule(WORKED, oid) == [Mismatch.NOT_AN_INS_OID]


# --- with_key ----------------------------------------------------------------------------


@given(body=bodies)
def test_with_key_gives_a_valid_matricule(body: str) -> None:
    matricule = with_key(body)
    assert matricule[:13] == body
    assert ins_key_valid(matricule)


@given(parts=corsica_bodies)
def test_with_key_reads_corsica(parts: tuple[str, str, str]) -> None:
    assert ins_key_valid(with_key("".join(parts)))


@pytest.mark.parametrize(
    "body", ["", "277010115400", "27701011540032", "2770101A54003", "27701012C4003"]
)
def test_with_key_refuses_malformed_bodies(body: str) -> None:
    with pytest.raises(ValueError, match="13 digits"):
        with_key(body)


def test_with_key_on_the_reference_matricules() -> None:
    assert with_key(WORKED[:13]) == WORKED
    assert with_key(ANS_TEST_PATIENT[:13]) == ANS_TEST_PATIENT


# --- any single-character change, of any kind, is detected ---------------------------------

any_body = st.one_of(bodies, corsica_bodies.map("".join))


@given(body=any_body, position=st.integers(min_value=0, max_value=14), char=st.characters())
def test_any_single_character_change_is_detected(body: str, position: int, char: str) -> None:
    """Replace one character by anything at all: the key (or the character check) notices."""
    matricule = with_key(body)
    assume(matricule[position].upper() != char.upper())
    changed = matricule[:position] + char + matricule[position + 1 :]
    assert not ins_key_valid(changed)
    assert Mismatch.BAD_KEY in check_matricule(changed, INS_NIR) or Mismatch.BAD_CHARACTERS in (
        check_matricule(changed, INS_NIR)
    )


@pytest.mark.parametrize(
    ("before", "after"), [("29", "2A"), ("28", "2B"), ("2A", "2B"), ("2B", "2A")]
)
def test_swapping_into_corsica_is_detected(before: str, after: str) -> None:
    matricule = with_key(f"18005{before}004123")
    changed = matricule[:5] + after + matricule[7:]
    assert check_matricule(changed, INS_NIR) == [Mismatch.BAD_KEY]


@pytest.mark.parametrize(("mainland", "corsica"), [("19", "2A"), ("18", "2B")])
def test_the_key_cannot_tell_19_from_2a_nor_18_from_2b(mainland: str, corsica: str) -> None:
    """A fact of the arithmetic: 2A is read as 19 and 2B as 18, so these two-character
    changes keep the key. Only the birthplace trait tells them apart (test_ins_traits)."""
    matricule = with_key(f"18005{mainland}004123")
    changed = matricule[:5] + corsica + matricule[7:]
    assert check_matricule(changed, INS_NIR) == []


# --- check_matricule ---------------------------------------------------------------------


@pytest.mark.parametrize("oid", sorted(INS_OIDS))
@pytest.mark.parametrize("matricule", [WORKED, ANS_TEST_PATIENT, with_key("180052A004123")])
def test_reference_matricules_pass_under_every_ins_oid(matricule: str, oid: str) -> None:
    assert check_matricule(matricule, oid) == []


def test_the_old_ins_c_oid_is_named_apart() -> None:
    assert check_matricule(WORKED, INS_C_OLD) == [Mismatch.INS_C_NOT_AN_INS]
    assert check_matricule(WORKED, "1.2.3.4") == [Mismatch.NOT_AN_INS_OID]


@pytest.mark.parametrize(
    ("matricule", "reasons"),
    [
        ("", [Mismatch.BAD_LENGTH]),
        (WORKED[:14], [Mismatch.BAD_LENGTH]),
        (WORKED + "0", [Mismatch.BAD_LENGTH]),
        ("A77010115400329", [Mismatch.BAD_CHARACTERS]),
        ("27701012C400329", [Mismatch.BAD_CHARACTERS]),
        ("2770101154003A9", [Mismatch.BAD_CHARACTERS]),
        ("27701011540032\u0669", [Mismatch.BAD_CHARACTERS]),
        ("277010115400330", [Mismatch.BAD_KEY]),
        ("277010115400300", [Mismatch.BAD_KEY]),
        ("277010115400398", [Mismatch.BAD_KEY]),
    ],
)
def test_structural_faults_are_named(matricule: str, reasons: list[Mismatch]) -> None:
    assert check_matricule(matricule, INS_NIR) == reasons
    assert check_matricule(matricule, INS_C_OLD) == [Mismatch.INS_C_NOT_AN_INS, *reasons]


@pytest.mark.parametrize("digit", "123478")
def test_sex_digits_that_exist(digit: str) -> None:
    assert check_matricule(with_key(digit + WORKED[1:13]), INS_NIR) == []


@pytest.mark.parametrize("digit", "0569")
def test_other_sex_digits_are_refused(digit: str) -> None:
    assert check_matricule(with_key(digit + WORKED[1:13]), INS_NIR) == [Mismatch.BAD_SEX_DIGIT]


@pytest.mark.parametrize("month", [*range(1, 13), *range(20, 43), 50])
def test_months_that_exist(month: int) -> None:
    """01-12, and 20-42 or 50 for an incomplete civil-status record."""
    assert check_matricule(with_key(f"277{month:02d}01154003"), INS_NIA) == []


@pytest.mark.parametrize("month", [0, 13, 19, 43, 49, 51, 62, 99])
def test_other_months_are_refused(month: int) -> None:
    assert check_matricule(with_key(f"277{month:02d}01154003"), INS_NIA) == [Mismatch.BAD_MONTH]


def test_a_wrong_key_still_reports_the_other_faults() -> None:
    matricule = "5771301154003" + "01"  # sex 5, month 13, and the key is not 97 - N mod 97
    assert not ins_key_valid(matricule)
    assert check_matricule(matricule, INS_NIR) == [
        Mismatch.BAD_KEY,
        Mismatch.BAD_SEX_DIGIT,
        Mismatch.BAD_MONTH,
    ]


@given(text=st.text(max_size=20), oid=st.sampled_from([INS_NIR, INS_C_OLD, "x"]))
def test_check_matricule_never_raises_and_agrees_with_the_key(text: str, oid: str) -> None:
    reasons = check_matricule(text, oid)
    assert all(isinstance(r, Mismatch) for r in reasons)
    if ins_key_valid(text):
        assert Mismatch.BAD_KEY not in reasons
    else:
        assert {Mismatch.BAD_LENGTH, Mismatch.BAD_CHARACTERS, Mismatch.BAD_KEY} & set(reasons)


# --- the reasons -------------------------------------------------------------------------


def test_every_reason_has_a_code_and_an_explanation() -> None:
    codes = [m.value for m in Mismatch]
    assert len(set(codes)) == len(codes)
    for reason in Mismatch:
        assert reason.value == reason.name.lower().replace("_", "-")
        assert reason.explain
        assert reason.explain == reason.explain.strip()
        assert "{" not in reason.explain  # a fixed sentence: no value is ever formatted in
