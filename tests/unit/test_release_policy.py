"""Release rules: the default policy, merging, explanations, TOML loading, MSSanté combinations."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import metadata_flags
from domain.visibility import visibility_flags
from streams.route import release_policy as rp
from streams.route.release_policy import (
    DEFAULT_POLICY,
    Decision,
    Delay,
    Effect,
    Match,
    PolicyError,
    Rule,
)
from tests.shared_data import REPO, shared

VALIDATED = datetime(2026, 1, 31, 10, 30, tzinfo=UTC)
IMAGING, LAB_REPORT, DISCHARGE = "18748-4", "11502-2", "11490-0"
TOML_TEXT = files("streams.route").joinpath("release_policy.toml").read_text(encoding="utf-8")
ALL_FLAGS = sorted(rp.FLAG_DEFAULTS)
VOLET = "(volet CDA en HL7v2, règles de gestion MSSanté)"


def run(policy: tuple[Rule, ...] = DEFAULT_POLICY, **document: Any) -> Decision:
    defaults: dict[str, Any] = {"type_code": LAB_REPORT, "sector": "LAB", "flags": {}}
    return rp.decide(policy, **({"validated_at": VALIDATED} | defaults | document))


def applied(decision: Decision) -> list[str]:
    return [e.rule for e in decision.rules]


def delay_rule(name: str, delay: Delay, **match: Any) -> Rule:
    return Rule(name, f"{name} test rule", Match(**match), Effect(patient_visible_after=delay))


def hide_rule(name: str, *, patient: bool = False, professionals: bool = False) -> Rule:
    effect = Effect(hidden_from_patient=patient, hidden_from_professionals=professionals)
    return Rule(name, f"{name} test rule", Match(), effect)


# --- the default policy, rule by rule ---------------------------------------------------
def test_the_toml_file_is_the_default_policy() -> None:
    assert rp.load_policy(TOML_TEXT) == DEFAULT_POLICY
    rp.check_policy(DEFAULT_POLICY)


def test_a_document_no_rule_restricts_is_visible_on_validation() -> None:
    decision = run(cda_model="CR-BIO N3")
    assert decision == Decision(VALIDATED, VALIDATED, False, False, ())
    assert decision.visible_to_patient(VALIDATED)


@pytest.mark.parametrize("sector", sorted(rp.SECTORS))
def test_imaging_reports_reach_the_patient_15_days_after_validation(sector: str) -> None:
    decision = run(type_code=IMAGING, sector=sector, cda_model="CR-IMG N1", modalities=("CT",))
    assert decision.patient_visible_from == VALIDATED + timedelta(days=15)
    assert applied(decision) == ["imaging-report-delay"]
    assert not decision.visible_to_patient(VALIDATED + timedelta(days=14, hours=23))
    assert decision.visible_to_patient(VALIDATED + timedelta(days=15))


@pytest.mark.parametrize("modality", ["NM", "PT"])
def test_nuclear_medicine_reports_reach_the_patient_a_calendar_month_later(modality: str) -> None:
    decision = run(type_code=IMAGING, modalities=("CT", modality), cda_model="CR-IMG N3")
    # One month after 31 January is the last day of February, later than the 15-day rule.
    assert decision.patient_visible_from == datetime(2026, 2, 28, 10, 30, tzinfo=UTC)
    assert applied(decision) == ["imaging-report-delay", "nuclear-medicine-delay"]
    assert run(type_code=DISCHARGE, modalities=(modality,)).patient_visible_from == VALIDATED


def test_invisible_patient_means_never_visible_whatever_the_delays() -> None:
    decision = run(type_code=IMAGING, modalities=("NM",), flags={"INVISIBLE_PATIENT": True})
    assert decision.patient_visible_from is None
    assert not decision.visible_to_patient(VALIDATED + timedelta(days=3650))
    assert applied(decision)[-1] == "flag-invisible-patient"


def test_masque_ps_and_invisible_rep_legaux_hide_from_their_audience_only() -> None:
    ps, legal = run(flags={"MASQUE_PS": True}), run(flags={"INVISIBLE_REP_LEGAUX": True})
    hides = [
        (d.hidden_from_professionals, d.hidden_from_legal_representatives) for d in (ps, legal)
    ]
    assert hides == [(True, False), (False, True)]
    assert ps.patient_visible_from == legal.patient_visible_from == VALIDATED
    assert (applied(ps), applied(legal)) == (["flag-masque-ps"], ["flag-invisible-rep-legaux"])


def test_flags_set_to_n_and_unknown_flags_change_nothing() -> None:
    flags = dict.fromkeys(rp.HIDING_FLAGS, False) | {"SOMETHING_ELSE": True}
    assert run(flags=flags) == run(flags={})


def test_delays_are_counted_in_the_validation_time_zone_which_must_be_given() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run(validated_at=datetime(2026, 1, 31, 10, 30))
    paris = timezone(timedelta(hours=1))
    at = datetime(2028, 1, 31, 18, 0, tzinfo=paris)
    assert Delay(months=1).after(at) == datetime(2028, 2, 29, 18, 0, tzinfo=paris)  # leap year
    assert Delay(months=11, days=1).after(at) == datetime(2029, 1, 1, 18, 0, tzinfo=paris)


# --- order, merging and matching -------------------------------------------------------
def test_the_latest_date_wins_whatever_the_order_and_rules_are_listed_in_order() -> None:
    month, fortnight = delay_rule("month", Delay(months=1)), delay_rule("fortnight", Delay(days=15))
    forward, backward = run((month, fortnight)), run((fortnight, month))
    assert forward.patient_visible_from == datetime(2026, 2, 28, 10, 30, tzinfo=UTC)
    assert backward.patient_visible_from == forward.patient_visible_from
    assert (applied(forward), applied(backward)) == (["month", "fortnight"], ["fortnight", "month"])


def test_any_hiding_wins_over_a_later_delay_and_a_zero_delay_is_still_explained() -> None:
    hide, delay = hide_rule("hide", patient=True), delay_rule("delay", Delay(days=2))
    for policy in ((hide, delay), (delay, hide)):
        assert run(policy).patient_visible_from is None
    decision = run((delay_rule("none", rp.parse_delay("0 days")),))
    assert (decision.patient_visible_from, applied(decision)) == (VALIDATED, ["none"])


def test_match_conditions_must_all_hold() -> None:
    hospital = {"sectors": frozenset({"HOSPITAL"}), "flags": frozenset({("DESTDMP", True)})}
    policy = (delay_rule("r", Delay(days=1), cda_models=frozenset({"CR-IMG"}), **hospital),)
    assert applied(run(policy, sector="HOSPITAL", cda_model="CR-IMG N1")) == ["r"]
    assert applied(run(policy, sector="HOSPITAL", cda_model="CR-IMG N3")) == ["r"]
    assert applied(run(policy, sector="LAB", cda_model="CR-IMG N1")) == []
    assert applied(run(policy, sector="HOSPITAL", cda_model="CR-IMGX N1")) == []
    assert applied(run(policy, sector="HOSPITAL", cda_model=None)) == []
    # DESTDMP left out means Y (as streams.route.stage reads it); N stops the rule.
    no_dmp = {"DESTDMP": False}
    assert applied(run(policy, sector="HOSPITAL", cda_model="CR-IMG N1", flags=no_dmp)) == []
    exact = (delay_rule("n1", Delay(days=1), cda_models=frozenset({"CR-IMG N1"})),)
    assert applied(run(exact, cda_model="CR-IMG N1")) == ["n1"]
    assert applied(run(exact, cda_model="CR-IMG N3")) == []


# --- explanations ----------------------------------------------------------------------
def test_the_explanation_names_every_applied_rule_in_order_with_what_and_why() -> None:
    flags = {"MASQUE_PS": True, "INVISIBLE_REP_LEGAUX": True}
    decision = run(type_code=IMAGING, modalities=("NM",), flags=flags)
    lines = rp.explain(decision).splitlines()
    assert applied(decision) == [
        "imaging-report-delay",
        "nuclear-medicine-delay",
        "flag-masque-ps",
        "flag-invisible-rep-legaux",
    ]
    assert [line.split(":")[0].removeprefix("rule ") for line in lines[:-1]] == applied(decision)
    assert lines[:3] == [
        "rule imaging-report-delay: visible to the patient from 2026-02-15T10:30:00+00:00 "
        "(15 days after validation) because type code 18748-4 is one of [18748-4]",
        "rule nuclear-medicine-delay: visible to the patient from 2026-02-28T10:30:00+00:00 "
        "(1 month after validation) because type code 18748-4 is one of [18748-4] "
        "and modality NM is one of [NM, PT]",
        "rule flag-masque-ps: hidden from professionals because flag MASQUE_PS=Y",
    ]
    assert lines[-1] == (
        "outcome: visible to the patient from 2026-02-28T10:30:00+00:00; "
        "hidden from professionals; hidden from legal representatives"
    )


def test_the_explanation_of_an_unrestricted_and_of_a_hidden_document() -> None:
    assert rp.explain(run()) == (
        "no rule applied: nothing restricts this document\n"
        "outcome: visible to the patient from 2026-01-31T10:30:00+00:00 (on validation); "
        "visible to professionals; visible to legal representatives"
    )
    assert rp.explain(run(flags={"INVISIBLE_PATIENT": True})).splitlines() == [
        "rule flag-invisible-patient: never visible to the patient "
        "because flag INVISIBLE_PATIENT=Y",
        "outcome: never visible to the patient; visible to professionals; "
        "visible to legal representatives",
    ]
    decision = run((hide_rule("all", professionals=True),))
    assert decision.rules[0].because == "the rule applies to every document"


# --- durations -------------------------------------------------------------------------
DURATIONS = {  # text -> (months, days)
    **dict.fromkeys(("15d", "15 days", "15 Days", "15 jours", "P15D", "p15d"), (0, 15)),
    **dict.fromkeys(("2 weeks", "P2W"), (0, 14)),
    **dict.fromkeys(("1 month", "1 mois", "1mo", "P1M"), (1, 0)),
    **{"1 day": (0, 1), "1 year": (12, 0), "1 month 15 days": (1, 15), "0 days": (0, 0)},
    **{"1 month, 2 weeks": (1, 14), "P1Y2M3W4D": (14, 25)},
}
BAD_DURATIONS = ["", "15", "15 dayz", "fifteen days", "-1 day", "1.5 days", "P", "PT12H", "15d x"]


def test_durations() -> None:
    for text, delay in DURATIONS.items():
        assert rp.parse_delay(text) == Delay(*delay), text
        assert rp.parse_delay(str(Delay(*delay))) == Delay(*delay)  # and its text reads back
    for text in BAD_DURATIONS:
        with pytest.raises(PolicyError, match="bad duration"):
            rp.parse_delay(text)


# --- loading the policy: errors an operator can act on --------------------------------
#: Edits of the shipped TOML (replace the first "old" with "new"; \n is a newline) and the error
#: each one must give. "<all>" replaces the whole text.
POLICY_ERRORS = r"""
<all>                               | [[rule]                                  | not valid TOML
<all>                               |                                          | a policy is a list of \[\[rule\]\] tables
[[rule]]                            | version = 2\n[[rule]]                    | a policy is a list of \[\[rule\]\] tables
type_codes = ["18748-4"]\n[rule.eff | type_code = ["18748-4"]\n[rule.eff     | ^rule 1 \(imaging-report-delay\): unknown field type_code in \[rule.match\]; expected cda_models, flags, modalities, sectors, type_codes$
name = "imaging-report-delay"       | name = "imaging-report-delay"\nwhen = 1  | ^rule 1 \(imaging-report-delay\): unknown field when in \[\[rule\]\]; expected description, effect, match, name$
= "15 days"                         | = "15 days"\nhidden = true               | ^rule 1 \(imaging-report-delay\): unknown field hidden in \[rule.effect\]
= "15 days"                         | = "15"                                   | ^rule 1 \(imaging-report-delay\): bad duration '15': write e.g.
= "1 month"                         | = "a month"                              | ^rule 2 \(nuclear-medicine-delay\): bad duration 'a month'
= "15 days"                         | = 15                                     | patient_visible_after in \[rule.effect\] must be a string
{ MASQUE_PS = true }                | { MASQUE = true }                        | ^rule 4 \(flag-masque-ps\): unknown flag MASQUE; flags: ACK_LECTURE_MSS, ACK_RECEPTION
{ MASQUE_PS = true }                | { MASQUE_PS = "Y" }                      | flags in \[rule.match\] must be a table of FLAG = true\|false
{ MASQUE_PS = true }                | { MASQUE_PS = false }                    | a rule cannot require MASQUE_PS=N
type_codes = ["18748-4"]            | type_codes = [18748]                     | type_codes in \[rule.match\] must be a list of strings
type_codes = ["18748-4"]            | sectors = ["HOSPITALS"]                  | unknown sector HOSPITALS; sectors: CITY, HOSPITAL
type_codes = ["18748-4"]            | type_codes = [""]                        | empty string in a match condition
hidden_from_patient = true          | hidden_from_patient = "yes"              | hidden_from_patient in \[rule.effect\] must be true\|false
hidden_from_patient = true          | hidden_from_patient = false              | rule 3 \(flag-invisible-patient\): the effect does nothing
[rule.effect]\npatient_visible_after = "15 days"\n |                          | ^rule 1 \(imaging-report-delay\): missing effect
[rule.match]\ntype_codes = ["18748-4"]\n[rule.e |  [rule.e                    | ^rule 1 \(imaging-report-delay\): missing match
name = "imaging-report-delay"       | name = "Imaging report"                  | rule name 'Imaging report': use lower-case
name = "imaging-report-delay"       | name = "flag-masque-ps"                  | rule names must be unique: flag-masque-ps used twice
flags = { MASQUE_PS = true }        | sectors = ["LAB"]\nflags = { MASQUE_PS = true } | the policy must honour MASQUE_PS: add a rule
"""


def edited(old: str, new: str) -> str:
    if old == "<all>":
        return new
    assert old in TOML_TEXT, old
    return TOML_TEXT.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        tuple(cell.strip().replace("\\n", "\n") for cell in row.split(" | "))
        for row in POLICY_ERRORS.strip().splitlines()
    ],
)
def test_policy_errors(old: str, new: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        rp.load_policy(edited(old, new))


def test_an_edited_policy_loads_and_takes_effect() -> None:
    policy = rp.load_policy(edited('= "15 days"', '= "P3W"'))
    assert policy[0].effect.patient_visible_after == Delay(days=21)
    assert run(policy, type_code=IMAGING).patient_visible_from == VALIDATED + timedelta(days=21)


def test_policies_built_in_code_are_checked_too() -> None:
    with pytest.raises(PolicyError, match="must honour INVISIBLE_PATIENT"):
        rp.check_policy(DEFAULT_POLICY[:2] + DEFAULT_POLICY[3:])
    with pytest.raises(PolicyError, match="unknown flag"):
        Match(flags=frozenset({("INVISIBLE", True)}))
    with pytest.raises(PolicyError, match="named twice"):
        Match(flags=frozenset({("DESTDMP", True), ("DESTDMP", False)}))
    with pytest.raises(PolicyError, match="negative"):
        Delay(days=-1)


def test_the_sectors_are_those_of_the_schema() -> None:
    schema = json.loads((REPO / "schemas" / "types" / "Sector.avsc").read_text())
    assert set(schema["symbols"]) == rp.SECTORS


def test_jdv_j07_has_no_nuclear_medicine_type_so_the_modality_tells_it() -> None:
    jdv = shared("jdv", "JDV_J07_XdsTypeCode_CISIS.xml").read_text(encoding="utf-8")
    names = re.findall(r'code="([^"]+)"\s+codeSystem="[^"]+"\s+displayName="([^"]+)"', jdv)
    assert (IMAGING, "CR d'imagerie médicale") in names
    assert not [n for n in names if re.search(r"(?i)nucl|scinti|isotop|\bTEP\b", n[1])]


# --- MSSanté combinations: all 2^10 flag values against a plain encoding of the volet ----
def volet_allows(f: dict[str, bool]) -> bool:
    """regles-gestion-mssante.md, read row by row (a case not in the table is an error)."""

    def no(*names: str) -> bool:
        return not any(f[name] for name in names)

    ps, patient, secret = f["DESTMSSANTEPS"], f["DESTMSSANTEPAT"], f["CONNEXION_SECRETE"]
    if ps and patient:
        return no("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX") and not secret
    if ps:  # the row reads "MASQUE_PS : Y ou N"
        return f["INVISIBLE_PATIENT"] and no("INVISIBLE_REP_LEGAUX") and not secret
    if patient:
        return no("INVISIBLE_PATIENT", "CONNEXION_SECRETE", "DESTDMP")
    return True  # no MSSanté exchange asked: the table does not apply


def test_mssante_combinations_all_2_power_10() -> None:
    combinations = list(itertools.product([False, True], repeat=len(ALL_FLAGS)))
    assert len(combinations) == 2**10
    for values in combinations:
        flags = dict(zip(ALL_FLAGS, values, strict=True))
        problem = metadata_flags.mssante_combination_problem(flags)
        assert (problem is None) == volet_allows(flags), (flags, problem)
        # A flag left out reads as its default (DESTDMP=Y, the others N).
        sparse = {k: v for k, v in flags.items() if v != metadata_flags.FLAG_DEFAULTS[k]}
        assert metadata_flags.mssante_combination_problem(sparse) == problem
        if problem is not None:
            assert problem.endswith(VOLET)
            got = problem.split("; got ")[1].removesuffix(f" {VOLET}").split(", ")
            assert got
            assert all(flags[term.split("=")[0]] == term.endswith("=Y") for term in got)


def test_mssante_problem_texts() -> None:
    both = {"DESTMSSANTEPS": True, "DESTMSSANTEPAT": True, "MASQUE_PS": True}
    assert metadata_flags.mssante_combination_problem(both) == (
        "MSSanté to the professionals and the patient (DESTMSSANTEPS=Y, DESTMSSANTEPAT=Y) requires "
        f"MASQUE_PS=N, INVISIBLE_PATIENT=N, INVISIBLE_REP_LEGAUX=N, CONNEXION_SECRETE=N; "
        f"got MASQUE_PS=Y {VOLET}"
    )
    assert metadata_flags.mssante_combination_problem({"DESTMSSANTEPAT": True}) == (
        "MSSanté to the patient only (DESTMSSANTEPS=N, DESTMSSANTEPAT=Y) requires "
        f"INVISIBLE_PATIENT=N, CONNEXION_SECRETE=N, DESTDMP=N; got DESTDMP=Y {VOLET}"
    )
    assert "professionals only" in (
        metadata_flags.mssante_combination_problem({"DESTMSSANTEPS": True}) or ""
    )
    # The flags of the ANS sample ORU_R01_CR-BIO_N1+N3_initial (see test_hl7_message.py).
    sample = {flag: flag.startswith(("DEST", "ACK_")) for flag in ALL_FLAGS}
    assert metadata_flags.mssante_combination_problem(sample) is None


# --- properties ------------------------------------------------------------------------
CODES = st.sampled_from([IMAGING, LAB_REPORT, DISCHARGE])
FLAGS = st.dictionaries(st.sampled_from(ALL_FLAGS), st.booleans())
MATCHES = st.builds(
    Match,
    type_codes=st.frozensets(CODES, max_size=2),
    sectors=st.frozensets(st.sampled_from(sorted(rp.SECTORS)), max_size=2),
    cda_models=st.frozensets(st.sampled_from(["CR-IMG", "CR-BIO N3", "CR-IMG N1"]), max_size=1),
    modalities=st.frozensets(st.sampled_from(["NM", "PT", "CT"]), max_size=2),
    # Rules may only require hiding flags to be Y (Match refuses N).
    flags=FLAGS.map(lambda d: frozenset((k, v or k in rp.HIDING_FLAGS) for k, v in d.items())),
)
DELAYS = st.none() | st.builds(Delay, st.integers(0, 3), st.integers(0, 40))
EFFECTS = st.tuples(DELAYS, st.booleans(), st.booleans(), st.booleans()).map(
    lambda t: Effect(*t) if t[0] is not None or any(t[1:]) else Effect(hidden_from_patient=True)
)
NAMES = st.from_regex(r"[a-z]{1,8}", fullmatch=True)
RULES = st.builds(Rule, NAMES, st.just("test"), MATCHES, EFFECTS)
POLICIES = st.lists(RULES, max_size=6).map(lambda rules: (*rules, *DEFAULT_POLICY))
TIMES = st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC))
DOCUMENTS = st.fixed_dictionaries(
    {
        "type_code": CODES,
        "sector": st.sampled_from(sorted(rp.SECTORS)),
        "cda_model": st.sampled_from([None, "CR-IMG N1", "CR-IMG N3", "CR-BIO N3"]),
        "modalities": st.frozensets(st.sampled_from(["NM", "PT", "CT", "MR"])),
        "validated_at": TIMES,
    }
)


@settings(max_examples=300, deadline=None)
@given(POLICIES, DOCUMENTS, FLAGS, st.sampled_from(sorted(rp.HIDING_FLAGS)))
def test_raising_a_hiding_flag_never_makes_a_document_more_visible(
    policy: tuple[Rule, ...], document: dict[str, Any], flags: dict[str, bool], flag: str
) -> None:
    before = rp.decide(policy, flags=flags, **document)
    after = rp.decide(policy, flags=flags | {flag: True}, **document)
    was, now = before.patient_visible_from, after.patient_visible_from
    assert now is None or (was is not None and now >= was)
    assert after.hidden_from_professionals >= before.hidden_from_professionals
    assert after.hidden_from_legal_representatives >= before.hidden_from_legal_representatives
    assert set(applied(before)) <= set(applied(after))
    # Every policy here honours the producer's flag.
    field = rp.HIDING_FLAGS[flag]
    patient_hidden = after.patient_visible_from is None
    assert patient_hidden if field == "hidden_from_patient" else getattr(after, field)


@settings(max_examples=200, deadline=None)
@given(st.lists(RULES, max_size=6), DOCUMENTS, FLAGS, st.randoms(use_true_random=False))
def test_the_outcome_is_the_most_restrictive_of_the_applied_rules_in_any_order(
    rules: list[Rule], document: dict[str, Any], flags: dict[str, bool], random: Any
) -> None:
    shuffled = random.sample(rules, len(rules))
    first = rp.decide(rules, flags=flags, **document)
    second = rp.decide(shuffled, flags=flags, **document)
    assert replace(first, rules=()) == replace(second, rules=())
    assert sorted(applied(first)) == sorted(applied(second))
    chosen = [rule.effect for rule in rules if rp.decide((rule,), flags=flags, **document).rules]
    assert len(chosen) == len(first.rules)
    delays = [e.patient_visible_after for e in chosen if e.patient_visible_after is not None]
    latest = max([first.validated_at, *(delay.after(first.validated_at) for delay in delays)])
    hidden = any(e.hidden_from_patient for e in chosen)
    assert first.patient_visible_from == (None if hidden else latest)
    assert first.hidden_from_professionals == any(e.hidden_from_professionals for e in chosen)
    legal = any(e.hidden_from_legal_representatives for e in chosen)
    assert first.hidden_from_legal_representatives == legal


def test_the_dmp_files_a_document_under_embargo_invisible_to_the_patient() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    release = {
        "patient_visible_from": now + timedelta(days=15),
        "hidden_from_professionals": False,
        "hidden_from_legal_representatives": False,
        "explanation": "",
    }
    assert visibility_flags(release, now)["INVISIBLE_PATIENT"] is True
    assert visibility_flags(release, now + timedelta(days=15))["INVISIBLE_PATIENT"] is False
    assert visibility_flags({**release, "patient_visible_from": None}, now)["INVISIBLE_PATIENT"]
    assert visibility_flags(None, now) == {}
