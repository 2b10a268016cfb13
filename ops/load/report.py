"""The report of a replay: Markdown, a PNG chart and a JSON summary.

Figures only from what was measured in the run: the senders' answers, the
audit trail and delivery statuses read back from the bus, the DMP sandbox's
counts and the process sampler. Latency percentiles come from HDR histograms
(:mod:`ops.load.latency`).
"""

from __future__ import annotations

import json
import os
import platform
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.load.latency import (
    STAGES,
    Percentiles,
    of_values,
    per_window,
    percentiles,
    stage_histograms,
)
from ops.load.profile import Profile, expected_mix, peak_to_mean
from ops.load.runner import LoadResult


@dataclass(frozen=True)
class Figures:
    """The headline numbers of a run (also written to summary.json)."""

    documents: int
    offered_per_s: float  # documents sent / sending window
    answered_per_s: float  # answers / time to the last answer
    delivered: int
    sustained_per_s: float  # delivered at the DMP / (last delivery - first send)
    settled_s: float
    ok: bool
    latency: list[Percentiles]


def delivered_events(result: LoadResult) -> list[str]:
    ok = {"DELIVERED", "DUPLICATE"}
    return [e for e, statuses in result.observed.dmp.items() if ok & set(statuses)]


def dmp_filings(result: LoadResult) -> dict[str, int]:
    """Documents the DMP sandbox holds, ITI-41 requests for them, the most for one."""
    filings = result.observed.filings
    return {
        "documents": len(filings),
        "requests": sum(filings.values()),
        "max_per_document": max(filings.values(), default=0),
    }


def figures(result: LoadResult) -> Figures:
    events = delivered_events(result)
    stamps = result.observed.stamps
    last = max((stamps[e]["DELIVERED"] - result.t0_epoch for e in events), default=0.0)
    first_send = min((a.sent_s for a in result.answers), default=0.0)
    window = result.config.profile.wall_seconds()
    entry = of_values(
        "entry (send -> ACK)", (1000 * (a.answered_s - a.sent_s) for a in result.answers)
    )
    stages = stage_histograms(stamps, events)
    latency = [entry] + [percentiles(name, stages[name]) for name, _, _ in STAGES]
    return Figures(
        documents=len(result.sent),
        offered_per_s=len(result.sent) / window if window else 0.0,
        answered_per_s=len(result.answers) / result.send_s if result.send_s else 0.0,
        delivered=len(events),
        sustained_per_s=len(events) / (last - first_send) if last > first_send else 0.0,
        settled_s=result.drained_s,
        ok=result.accounting.ok,
        latency=latency,
    )


def write_report(result: LoadResult, command: str) -> list[Path]:
    """report.md, report.png (when matplotlib is installed), summary.json, accounting.csv."""
    out = result.config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    fig = figures(result)
    written = [out / "report.md", out / "summary.json", out / "accounting.csv"]
    chart = _chart(result, out / "report.png")
    if chart is not None:
        written.append(chart)
    (out / "report.md").write_text(markdown(result, fig, command, chart is not None))
    (out / "summary.json").write_text(json.dumps(summary(result, fig), indent=2) + "\n")
    lines = ["seq,expected,outcome,problem"]
    lines += [
        f'{x.seq},{x.expected},"{x.outcome}",{x.problem or ""}' for x in result.accounting.lines
    ]
    (out / "accounting.csv").write_text("\n".join(lines) + "\n")
    return written


def summary(result: LoadResult, fig: Figures) -> dict[str, Any]:
    c = result.config
    return {
        "documents": fig.documents,
        "workers": c.workers,
        "combined": c.combined,
        "chaos": c.chaos,
        "offered_per_s": round(fig.offered_per_s, 2),
        "answered_per_s": round(fig.answered_per_s, 2),
        "delivered": fig.delivered,
        "sustained_per_s": round(fig.sustained_per_s, 2),
        "settled_s": round(fig.settled_s, 1),
        "accounting": result.accounting.summary(),
        "ok": fig.ok,
        "outcomes": dict(result.accounting.outcomes()),
        "latency_ms": {p.name: [p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms] for p in fig.latency},
        "processes": {u.name: [round(u.cpu_s, 1), round(u.peak_rss_mb)] for u in result.usage},
        "mb_sent": round(sum(result.sizes.values()) / 1e6, 1),
        "dmp_sandbox": dmp_filings(result),
        "mails": {"received": result.observed.mails[0], "message_ids": result.observed.mails[1]},
        "chaos_events": [[round(e.at_s, 1), e.what, e.recovered_s] for e in result.chaos],
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _profile_lines(result: LoadResult) -> list[str]:
    p: Profile = result.config.profile
    docs = result.documents
    sectors = Counter(d.sector for d in docs)
    defects = Counter(d.defect.value for d in docs)
    pace = (
        f"fixed rate {p.rate:g} docs/s"
        if p.rate
        else f"compression x{p.compress:g} (the {p.span} in {p.wall_seconds():.0f} s)"
    )
    full = p.span_volume()
    lines = [
        f"- span: {p.span} ({full:,} documents at national volume); sent {len(docs):,} "
        f"({100 * len(docs) / full:.3f} % of it), {pace}",
        f"- daily curve: peak hour / mean hour = {peak_to_mean('day'):.2f}",
        "- sector mix (sent / profile): "
        + ", ".join(
            f"{name} {sectors[name]} / {100 * share:.0f} %"
            for name, share in expected_mix(p).items()
        ),
        "- defects: " + ", ".join(f"{k} {n}" for k, n in sorted(defects.items())),
        f"- sent {sum(result.sizes.values()) / 1e6:.1f} MB; built in {result.build_s:.1f} s "
        "before the clock started",
    ]
    for kind in sorted({d.kind.name for d in docs}):
        mine = [d for d in docs if d.kind.name == kind]
        size = sum(result.sizes[d.seq] for d in mine) / len(mine) / 1000
        extra = ""
        if mine[0].results:
            extra = f", {sum(d.results for d in mine) / len(mine):.0f} results on average"
        lines.append(f"- {kind}: {len(mine)} documents, {size:.0f} KB on average{extra}")
    return lines


def markdown(result: LoadResult, fig: Figures, command: str, chart: bool) -> str:
    """report.md: the run and its profile, the accounting, throughput and latency, the
    processes, the chaos events and the chart."""
    out = [*_head_lines(result, command), *_accounting_lines(result)]
    out += _throughput_lines(result, fig) + _process_lines(result) + _chaos_lines(result)
    if chart:
        out += ["## Chart", "", "![rates and latency](report.png)", ""]
    return "\n".join(out)


def _head_lines(result: LoadResult, command: str) -> list[str]:
    """The title, how the run was made, and the profile it replayed."""
    c = result.config
    layout = "identity+transcode+route in one process" if c.combined else "one stage per process"
    return [
        "# Relais load replay",
        "",
        f"- command: `{command}`",
        f"- machine: {machine()}",
        f"- broker: tansu on {result.broker_storage}; {c.workers} process(es) per stage "
        f"({layout}) and {c.workers} DMP sink(s); {c.connections} MLLP connections, "
        f"{c.library_tasks} library callers",
        *[f"- note: {n}" for n in result.notes],
        "",
        "## Profile",
        "",
        *_profile_lines(result),
        "",
    ]


def _accounting_lines(result: LoadResult) -> list[str]:
    """Outcomes per document, what the DMP sandbox holds, what was routed, the problems."""
    acc = result.accounting
    dmp = dmp_filings(result)
    out = [
        "## Accounting",
        "",
        f"**{acc.summary()}**",
        "",
        "| outcome | documents |",
        "|---|---|",
        *[f"| {k} | {n} |" for k, n in sorted(Counter(x.outcome for x in acc.lines).items())],
        "",
        f"DMP sandbox: {dmp['documents']} documents, {dmp['requests']} ITI-41 requests, "
        f"at most {dmp['max_per_document']} per document.",
        _routed_line(result),
        "",
    ]
    if not acc.ok:
        out += ["Problems (first 30):", ""]
        out += [
            f"- #{x.seq}: {x.problem}, expected {x.expected}, got {x.outcome}"
            for x in acc.lines
            if x.problem
        ][:30]
        out.append("")
    return out


def _routed_line(result: LoadResult) -> str:
    """The route stage's requests, and whether mails and notifications were accounted."""
    return (
        "Routed (requests made by the route stage): "
        + ", ".join(f"{d} {n}" for d, n in sorted(result.accounting.routed.items()))
        + (
            ". MSSanté and notification outcomes are accounted (a notification under embargo "
            "counts as scheduled); the MSSanté operator sandbox received "
            f"{result.observed.mails[0]} mails with {result.observed.mails[1]} distinct "
            "Message-IDs (a mail resent after a crash keeps its Message-ID)."
            if result.observed.checked
            else ". --no-mail: only the DMP sink runs; NOTIFY and MSSANTE requests stay on "
            "their topics and are not accounted."
        )
    )


def _throughput_lines(result: LoadResult, fig: Figures) -> list[str]:
    """Offered, answered and sustained rates; latency percentiles per stage."""
    return [
        "## Throughput",
        "",
        f"- offered: {fig.offered_per_s:.2f} documents/s over "
        f"{result.config.profile.wall_seconds():.0f} s",
        f"- answered by the entry points: {fig.answered_per_s:.2f} documents/s "
        f"(last answer at {result.send_s:.1f} s)",
        f"- **sustained, filed at the DMP: {fig.sustained_per_s:.2f} documents/s** "
        f"({fig.delivered} documents; everything settled at {fig.settled_s:.1f} s)",
        "",
        "## Latency (ms, HDR histograms)",
        "",
        "| stage | documents | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
        *[f"| {p.name} | {p.count} | {p.p50_ms:.0f} | {p.p95_ms:.0f} | {p.p99_ms:.0f} | "
          f"{p.max_ms:.0f} |" for p in fig.latency],
        "",
        "A stage's latency runs from the previous stage's audit event to its own: its work "
        "plus the time the record waited in its input topic.",
        "",
    ]  # fmt: skip


def _process_lines(result: LoadResult) -> list[str]:
    """CPU and memory of each process over the run (every incarnation)."""
    return [
        "## Processes",
        "",
        "| process | incarnations | CPU s | CPU % of the run | peak RSS MB |",
        "|---|---|---|---|---|",
        *[f"| {u.name} | {u.incarnations} | {u.cpu_s:.1f} | "
          f"{100 * u.cpu_s / max(result.drained_s, 1e-9):.0f} | {u.peak_rss_mb:.0f} |"
          for u in result.usage],
        "",
    ]  # fmt: skip


def _chaos_lines(result: LoadResult) -> list[str]:
    """The kills and the broker restart, when and how long until each came back."""
    if not result.chaos:
        return []
    out = ["## Chaos", "", "| at s | what | back after s |", "|---|---|---|"]
    out += [
        f"| {e.at_s:.1f} | {e.what} | "
        f"{'exited again' if e.recovered_s is None else f'{e.recovered_s:.1f}'} |"
        for e in result.chaos
    ]
    out.append("")
    return out


def _series(result: LoadResult) -> dict[str, list[tuple[float, float]]]:
    stamps, t0 = result.observed.stamps, result.t0_epoch
    events = delivered_events(result)
    delivered = [stamps[e]["DELIVERED"] - t0 for e in events]
    e2e = [
        (stamps[e]["DELIVERED"] - t0, 1000 * (stamps[e]["DELIVERED"] - stamps[e]["RECEIVED"]))
        for e in events
        if "RECEIVED" in stamps[e]
    ]
    return {
        "offered": _rate([d.at_s for d in result.documents], window_s(result)),
        "answered": _rate([a.answered_s for a in result.answers], window_s(result)),
        "filed at the DMP": _rate(delivered, window_s(result)),
        "e2e": e2e,
    }


def window_s(result: LoadResult) -> float:
    """Chart windows: about 60 over the run, at least a second."""
    return float(max(1, round(result.drained_s / 60)))


def _rate(times: list[float], window: float) -> list[tuple[float, float]]:
    counts = Counter(int(t // window) for t in times)
    if not counts:
        return []
    return [(k * window, counts.get(k, 0) / window) for k in range(max(counts) + 1)]


def _chart(result: LoadResult, path: Path) -> Path | None:
    try:
        import matplotlib  # noqa: PLC0415 (optional: pip install relais[load])

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    series = _series(result)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in ("offered", "answered", "filed at the DMP"):
        points = series[name]
        top.plot([t for t, _ in points], [v for _, v in points], ".-", label=name)
    top.set_ylabel(f"documents/s ({window_s(result):g} s windows)")
    top.legend(loc="upper left")
    windows = per_window(series["e2e"], window_s(result))
    times = [w[0] for w in windows]
    bottom.plot(times, [w[1] for w in windows], ".-", label="end to end p50")
    bottom.plot(times, [w[2] for w in windows], ".-", label="end to end p99")
    bottom.set_yscale("log")
    bottom.set_ylabel("ms (by delivery time)")
    bottom.set_xlabel("replay seconds")
    bottom.legend(loc="upper left")
    for event in result.chaos:
        for axis in (top, bottom):
            axis.axvline(event.at_s, color="red", alpha=0.4, linestyle="--")
    top.set_title("Relais load replay" + (" (chaos: red lines)" if result.chaos else ""))
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
