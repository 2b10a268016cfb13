"""INS matricule arithmetic: key = 97 - (N mod 97), Corsica 2A -> 19 and 2B -> 18."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from streams.ins import (
    INS_C_OLD,
    INS_NIA,
    INS_NIR,
    INS_NIR_DEMO,
    INS_NIR_TEST,
    INS_OIDS,
    ins_key,
    ins_key_valid,
    ins_number,
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


def with_key(body: str) -> str:
    number = ins_number(body + "00")
    assert number is not None
    return f"{body}{ins_key(number):02d}"


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
