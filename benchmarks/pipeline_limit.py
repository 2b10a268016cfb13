"""The pipeline against W and L, in one run, on the same documents (issue 16, point 7).

Run: ``.venv/bin/python -m benchmarks.pipeline_limit [--documents N] [--workers W]``.

W
    The essential work per document on one core (:mod:`benchmarks.limit_work`): base64
    decode, SHA-256, AES-256-GCM seal + open, lxml parse + XSD validation, Avro.
L
    The simplest correct program from MLLP to the DMP sandbox through the same hops, bodies
    stored once (FileStore, fsync), references on the topics, no checks
    (:mod:`benchmarks.limit_claim`).
L (full documents)
    The first L: the records with their sealed documents inline, burst onto a topic and
    relayed through 4 topic-to-topic hops by plain aiokafka processes.
pipeline
    The real stack from MLLP to the DMP sandbox (:mod:`benchmarks.limit_pipeline`).

Each measurement has its own fresh broker; each prints CPU ms per document per process.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.limit_bus import Message
from benchmarks.limit_pipeline import XSD_DEFAULT, measure_pipeline
from benchmarks.limit_runs import Run, measure_claim, measure_full
from benchmarks.limit_work import essential_work
from benchmarks.mllp_ingest import machine_info
from ops.load.documents import build
from ops.load.profile import Profile, Shares, plan
from relais.topics import DEFAULT_PARTITIONS


def documents(count: int) -> list[Message]:
    """``count`` good documents of the vague-1 mix (no city doctors), as HL7 messages."""
    docs = plan(Profile(documents=count, rate=1000.0, shares=Shares(0, 0, 0), seed=9))
    out = []
    for doc in docs:
        built = build(doc)
        assert built.hl7 is not None
        out.append(Message(built.hl7, built.control_id))
    return out


def work_lines(work: dict[str, float]) -> list[str]:
    total = sum(work.values())
    lines = ["| W: essential work, one core | ms per document |", "|---|---|"]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in work.items()]
    lines += [
        f"| **W (sum)** | **{total:.2f}** |",
        "",
        f"W = {total:.2f} ms per document: {1000 / total:.0f} documents/s on one core, "
        f"{2000 / total:.0f} on two.",
    ]
    return lines


def run_lines(runs: Sequence[Run], pipeline: Run) -> list[str]:
    lines = [
        "| measurement | documents | seconds | documents/s | entry done at s | pipeline / this | "
        "broker held (records / MB) | broker RSS MB | CPU ms per document (all processes) | "
        "cores busy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rss = f"{run.broker_rss_mb:.0f}" if run.broker_rss_mb else "?"
        cpu = sum(run.cpu_s.values())
        lines.append(
            f"| {run.name} | {run.documents} | {run.seconds:.2f} | {run.rate:.1f} | "
            f"{run.entry_s:.2f} | {pipeline.rate / run.rate:.3f} | "
            f"{run.held.records} / {run.held.bytes / 1e6:.1f} | "
            f"{rss} | {1000 * cpu / run.documents:.1f} | {cpu / run.seconds:.2f} |"
        )
    return lines


def cpu_lines(runs: Sequence[Run]) -> list[str]:
    lines = [
        "| measurement | process | CPU s | CPU ms per document | share of one core |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        for name, cpu in sorted(run.cpu_s.items(), key=lambda kv: -kv[1]):
            lines.append(
                f"| {run.name} | {name} | {cpu:.2f} | {1000 * cpu / run.documents:.1f} | "
                f"{100 * cpu / run.seconds:.0f} % |"
            )
    return lines


def report(work: dict[str, float], claim: Run, full: Run, pipeline: Run, mb: float) -> list[str]:
    busiest, cpu = max(pipeline.cpu_s.items(), key=lambda kv: kv[1])
    total = sum(pipeline.cpu_s.values())
    return [
        *machine_info(),
        f"Documents: {pipeline.documents} timed (+1 warm-up) of the vague-1 mix (no city "
        f"doctors), {mb:.1f} MB of HL7; {DEFAULT_PARTITIONS} partitions per topic; a fresh "
        "broker (tansu, memory://) per measurement.",
        "",
        *work_lines(work),
        "",
        *run_lines([claim, full, pipeline], pipeline),
        "",
        f"Pipeline / L = **{pipeline.rate / claim.rate:.3f}**; pipeline / L (full documents) = "
        f"**{pipeline.rate / full.rate:.3f}**.",
        "",
        *cpu_lines([claim, full, pipeline]),
        "",
        f"Pipeline: {1000 * total / pipeline.documents:.1f} ms of CPU per document in all; "
        f"busiest process **{busiest}** ({1000 * cpu / pipeline.documents:.1f} ms per document, "
        f"{100 * cpu / pipeline.seconds:.0f} % of one core); all processes together kept "
        f"{total / pipeline.seconds:.2f} cores busy.",
    ]


async def run(count: int, workers: int, connections: int, xsd: Path | None) -> None:
    work_dir = (Path(".relais") / f"bench-pipeline-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    messages = documents(count + 1)
    raws = [m.raw for m in messages]
    mb = sum(len(r) for r in raws[1:]) / 1e6
    print(f"built {len(messages)} messages ({mb:.1f} MB); timing W", flush=True)
    work = essential_work(raws[1:], xsd)
    print(f"W = {sum(work.values()):.2f} ms per document; now L", flush=True)
    claim = await measure_claim(messages, connections, work_dir / "claim")
    print(f"L = {claim.rate:.1f} documents/s; now L (full documents)", flush=True)
    full = await measure_full(raws)
    print(f"L (full documents) = {full.rate:.1f} documents/s; now the pipeline", flush=True)
    pipeline = await measure_pipeline(messages, connections, workers, work_dir / "stack", xsd)
    print("\n".join(report(work, claim, full, pipeline, mb)))
    forget_bodies(work_dir)


def forget_bodies(work_dir: Path) -> None:
    """Remove the stored bodies and filed documents of a run that went through (logs stay)."""
    for folder in ("claim/store", "stack/data", "stack/dmp-sandbox"):
        shutil.rmtree(work_dir / folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=100, help="timed documents (100)")
    parser.add_argument("--workers", type=int, default=1, help="processes per stage (1)")
    parser.add_argument("--connections", type=int, default=4, help="MLLP connections (4)")
    parser.add_argument("--xsd-dir", type=Path, default=XSD_DEFAULT, help="CDA_extended.xsd's")
    args = parser.parse_args(argv)
    xsd = args.xsd_dir.resolve() if (args.xsd_dir / "CDA_extended.xsd").is_file() else None
    asyncio.run(run(args.documents, args.workers, args.connections, xsd))


if __name__ == "__main__":
    main()
