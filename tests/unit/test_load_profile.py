"""The vague-1 replay profile: arithmetic, curve, plan and synthetic patients (pure)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ins import INS_NIR_TEST, ins_key_valid
from domain.ins_traits import Traits, check_consistency
from ops.load.documents import build
from ops.load.profile import (
    MONTH_DOCUMENTS,
    ArrivalCurve,
    Channel,
    Defect,
    Profile,
    ProfileError,
    Shares,
    expected_mix,
    hourly_weights,
    peak_day_volume,
    peak_to_mean,
    plan,
    synthetic_patient,
)


def test_a_month_is_ten_million_documents_at_about_3_9_per_second() -> None:
    month = Profile(span="month", compress=1.0)
    assert month.span_volume() == MONTH_DOCUMENTS
    assert MONTH_DOCUMENTS / month.span_seconds() == pytest.approx(3.86, abs=0.01)


def test_the_peak_day_is_a_weekday_with_morning_peaks_several_times_the_mean() -> None:
    day = peak_day_volume(Profile(compress=1.0))
    assert MONTH_DOCUMENTS / 30 < day < MONTH_DOCUMENTS / 22
    weights = hourly_weights("day")
    assert max(range(24), key=weights.__getitem__) in range(8, 12)
    assert peak_to_mean("day") > 2.5


def test_the_sector_mix_follows_context_and_city_doctors_are_an_option() -> None:
    mix = expected_mix(Profile(compress=1.0))
    assert set(mix) == {"HOSPITAL", "LAB", "RADIOLOGY"}
    assert mix["HOSPITAL"] == pytest.approx(0.43 / 0.98)
    assert set(expected_mix(Profile(compress=1.0, city_doctors=True))) >= {"CITY"}


@pytest.mark.parametrize(
    "profile",
    [
        Profile(span="week", compress=1.0),
        Profile(),  # neither compress nor rate
        Profile(compress=1.0, rate=2.0),
        Profile(rate=2.0),  # a fixed rate needs a count
        Profile(compress=1.0, shares=Shares(0.5, 0.3, 0.3)),
        Profile(compress=1.0, documents=0),
    ],
)
def test_profiles_that_cannot_be_replayed_are_refused(profile: Profile) -> None:
    with pytest.raises(ProfileError):
        profile.check()


@given(st.lists(st.floats(0, 100), min_size=1, max_size=48).filter(lambda w: sum(w) > 0.1))
def test_the_arrival_curve_is_monotonic_and_stays_in_the_span(weights: list[float]) -> None:
    curve = ArrivalCurve(weights)
    qs = [i / 50 for i in range(51)]
    times = [curve.at(q) for q in qs]
    assert times == sorted(times)
    assert times[0] >= 0.0
    assert times[-1] <= 3600.0 * len(weights)


@given(
    documents=st.integers(1, 400),
    seconds=st.floats(1.0, 10_000.0),
    span=st.sampled_from(["day", "month"]),
    unqualified=st.floats(0, 0.3),
    duplicates=st.floats(0, 0.3),
    bad=st.floats(0, 0.3),
    seed=st.integers(0, 10),
)
@settings(max_examples=40, deadline=None)
def test_a_plan_sends_each_document_once_in_order_within_the_window(
    documents: int,
    seconds: float,
    span: str,
    unqualified: float,
    duplicates: float,
    bad: float,
    seed: int,
) -> None:
    profile = Profile(
        span=span,
        documents=documents,
        compress=86_400 * (30 if span == "month" else 1) / seconds,
        shares=Shares(unqualified, duplicates, bad),
        seed=seed,
    )
    docs = plan(profile)
    assert [d.seq for d in docs] == list(range(documents))
    assert [d.at_s for d in docs] == sorted(d.at_s for d in docs)
    assert docs[0].at_s >= 0.0
    assert docs[-1].at_s <= seconds + 1e-6
    assert len({d.control_id for d in docs}) == documents
    by_seq = {d.seq: d for d in docs}
    for d in docs:
        if d.defect is Defect.DUPLICATE:
            original = by_seq[d.copy_of or 0]
            assert original.seq < d.seq
            assert original.defect is Defect.NONE
            assert (original.patient, original.kind) == (d.patient, d.kind)
        if d.defect is Defect.BAD_HL7:
            assert d.channel is Channel.MLLP
        if d.kind.results[1]:
            assert 5 <= d.results <= 200
        low, high = d.kind.pdf_kb
        assert 1000 * low <= d.pdf_bytes <= 1000 * high
    assert plan(profile) == docs  # same seed, same replay


def test_shares_and_mix_come_out_close_to_the_profile_on_a_large_plan() -> None:
    docs = plan(Profile(documents=20_000, rate=100.0, shares=Shares(0.05, 0.02, 0.02)))
    sectors = Counter(d.sector for d in docs)
    defects = Counter(d.defect for d in docs)
    assert sectors["LAB"] / 20_000 == pytest.approx(0.52 / 0.98, abs=0.02)
    assert defects[Defect.UNQUALIFIED] / 20_000 == pytest.approx(0.05, abs=0.01)
    assert defects[Defect.DUPLICATE] / 20_000 == pytest.approx(0.02, abs=0.006)
    unqualified = {d.patient for d in docs if d.defect is Defect.UNQUALIFIED}
    qualified = {d.patient for d in docs if d.defect is Defect.NONE}
    assert not unqualified & qualified  # a patient is never both


def test_a_fixed_rate_spreads_documents_evenly() -> None:
    docs = plan(Profile(documents=100, rate=10.0))
    assert docs[-1].at_s == pytest.approx(9.95)
    assert docs[1].at_s - docs[0].at_s == pytest.approx(0.1)


@given(st.integers(0, 8_639_999))
def test_synthetic_patients_have_a_valid_test_ins_that_agrees_with_their_traits(n: int) -> None:
    p = synthetic_patient(n)
    assert ins_key_valid(p.ins)
    traits = Traits(p.family, p.given, p.birth_date, p.sex, p.birthplace)
    assert check_consistency(p.ins, INS_NIR_TEST, traits) == []
    assert synthetic_patient(n) == p


def test_synthetic_patients_never_share_an_ins() -> None:
    assert len({synthetic_patient(n).ins for n in range(20_000)}) == 20_000


def test_a_duplicate_carries_the_same_document_as_its_original_under_a_new_msh10() -> None:
    docs = plan(Profile(documents=400, rate=100.0, shares=Shares(0.0, 0.2, 0.0), seed=2))
    copies = [d for d in docs if d.defect is Defect.DUPLICATE]
    assert copies
    for copy in copies[:10]:
        original, again = build(docs[copy.copy_of or 0]), build(copy)
        assert again.unique_id == original.unique_id
        assert again.control_id != original.control_id
        assert again.hl7 is not None
        assert original.hl7 is not None
        assert again.hl7.replace(again.control_id.encode(), b"") == original.hl7.replace(
            original.control_id.encode(), b""
        )
