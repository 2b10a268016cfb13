"""``relais load``: replay vague-1 volumes against a whole local stack and account for them.

Registered on the main group by :mod:`ops.cli.main`.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ops.cli.context import settings_of

if TYPE_CHECKING:
    from ops.load.profile import Profile
    from ops.load.runner import LoadConfig, LoadResult

DEFAULT_XSD = Path("../shared/data/cda-xsd")


@click.command("load")
@click.option(
    "--span",
    type=click.Choice(["day", "month"]),
    default="day",
    show_default=True,
    help="the peak weekday of vague-1 volume, or the whole month (10 M documents)",
)
@click.option(
    "--documents",
    type=int,
    help="documents to send: a sample of the span's "
    "volume, spread over the same daily curve [default: the whole span]",
)
@click.option(
    "--compress", type=float, help="profile seconds per wall second (360: a day in 4 minutes)"
)
@click.option(
    "--span-in",
    "span_in_s",
    type=float,
    help="replay the span in this many wall seconds (instead of --compress)",
)
@click.option(
    "--rate", type=float, help="a fixed rate in documents/s, no daily curve (needs --documents)"
)
@click.option(
    "--city-doctors", is_flag=True, help="add city doctors (2 %, through the producer library)"
)
@click.option(
    "--unqualified",
    default=0.02,
    show_default=True,
    help="share of provisional identities (held by the identity stage)",
)
@click.option(
    "--duplicates",
    default=0.01,
    show_default=True,
    help="share of documents sent a second time (new MSH-10)",
)
@click.option(
    "--bad-inputs",
    default=0.01,
    show_default=True,
    help="share of bad inputs (truncated CDA, or an HL7 message without PID)",
)
@click.option("--patients", default=5000, show_default=True, help="synthetic patients (test INS)")
@click.option("--seed", default=1, show_default=True, help="same seed, same replay")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="processes of every stage (identity, transcode, route), sink (DMP, MSSanté, "
    "notify; outcomes stays one) and MLLP gateway (sharing one port: SO_REUSEPORT); up to "
    "RELAIS_PARTITIONS share the work",
)
@click.option(
    "--combined",
    is_flag=True,
    help="each worker process runs identity, transcode and route together",
)
@click.option("--connections", default=4, show_default=True, help="MLLP sender connections")
@click.option(
    "--library-tasks",
    default=4,
    show_default=True,
    help="concurrent producer-library callers (imaging, city doctors)",
)
@click.option(
    "--chaos",
    is_flag=True,
    help="SIGKILL random workers during the replay and "
    "restart them; run the broker on s3:// (an S3 store by moto) and restart it once",
)
@click.option("--kills", default=4, show_default=True, help="worker kills with --chaos")
@click.option(
    "--mail/--no-mail",
    default=True,
    show_default=True,
    help="run the MSSanté operator sandbox, the MSSanté sender and the notify sink, and "
    "account for every mail and notification the route stage asked for",
)
@click.option(
    "--drain-timeout",
    "drain_timeout_s",
    default=300.0,
    show_default=True,
    help="seconds to wait, after the last send, for every document's outcome",
)
@click.option(
    "--cda-xsd-dir",
    type=click.Path(path_type=Path),
    help=f"CDA R2 schemas for the transcode stage [default: {DEFAULT_XSD} if present]",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="report folder [default: RELAIS_DATA_DIR/load-<time>]",
)
@click.option(
    "--progress-every",
    "progress_s",
    default=5.0,
    show_default=True,
    help="seconds between two progress lines",
)
@click.pass_context
def load_cmd(ctx: click.Context, /, **options: Any) -> None:
    """Replay vague-1 volumes against a whole local stack and account for every document.

    Starts a fresh broker, the DMP and INSi sandboxes, the workers and the MLLP
    gateway; sends synthetic documents (test INS) through MLLP (hospitals, labs)
    and the producer library (imaging, city doctors) following the sector mix and
    daily curve of ../shared/CONTEXT.md; waits until each has landed; writes
    report.md, report.png, summary.json and accounting.csv. Exit code 1 when a
    document is missing, doubled or landed where it should not.

    \b
    Examples:
      relais load --documents 300 --span-in 60                 # a peak day in a minute
      relais load --documents 2000 --rate 20 --workers 2
      relais load --documents 1500 --span-in 180 --chaos
    """
    config = _config(ctx, LoadOptions(**options))
    click.echo(f"relais load -> {config.out_dir}", err=True)
    result = _run(config)
    _report(result)


@dataclass(frozen=True)
class LoadOptions:
    """The options of ``relais load``, under the names click gives them."""

    span: str
    documents: int | None
    compress: float | None
    span_in_s: float | None
    rate: float | None
    city_doctors: bool
    unqualified: float
    duplicates: float
    bad_inputs: float
    patients: int
    seed: int
    workers: int
    combined: bool
    connections: int
    library_tasks: int
    chaos: bool
    kills: int
    mail: bool
    drain_timeout_s: float
    cda_xsd_dir: Path | None
    out: Path | None
    progress_s: float

    def profile(self) -> Profile:
        """What to replay (``--span-in`` sets the compression); a bad mix is a usage error."""
        from ops.load.profile import Profile, ProfileError, Shares  # noqa: PLC0415

        compress = self.compress
        if self.span_in_s is not None:
            compress = 86_400.0 * (30 if self.span == "month" else 1) / self.span_in_s
        try:
            profile = Profile(
                span=self.span,
                documents=self.documents,
                compress=compress,
                rate=self.rate,
                city_doctors=self.city_doctors,
                shares=Shares(self.unqualified, self.duplicates, self.bad_inputs),
                seed=self.seed,
                patients=self.patients,
            )
            profile.check()
        except ProfileError as exc:
            raise click.UsageError(str(exc)) from None
        return profile


def _config(ctx: click.Context, o: LoadOptions) -> LoadConfig:
    """The replay's configuration: the profile, the report folder, the CDA schemas."""
    from ops.load.runner import LoadConfig  # noqa: PLC0415

    profile = o.profile()
    folder = o.out or settings_of(ctx).process.data_dir / f"load-{time.strftime('%Y%m%d-%H%M%S')}"
    xsd = o.cda_xsd_dir or (DEFAULT_XSD if DEFAULT_XSD.is_dir() else None)
    return LoadConfig(
        profile=profile,
        out_dir=folder.resolve(),
        workers=o.workers,
        combined=o.combined,
        connections=o.connections,
        library_tasks=o.library_tasks,
        chaos=o.chaos,
        kills=o.kills,
        mail=o.mail,
        drain_timeout_s=o.drain_timeout_s,
        progress_s=o.progress_s,
        partitions=settings_of(ctx).kafka.partitions,
        patient_keys=settings_of(ctx).keys.patient_keys,  # RELAIS_PATIENT_KEYS=no: without
        cda_xsd_dir=xsd.resolve() if xsd else None,
    )


def _run(config: LoadConfig) -> LoadResult:
    """The replay, its progress lines on stderr."""
    from ops.load.chaos import S3Error  # noqa: PLC0415
    from ops.load.runner import run_load  # noqa: PLC0415

    try:
        return asyncio.run(run_load(config, lambda line: click.echo(line, err=True)))
    except S3Error as exc:
        raise click.ClickException(f"--chaos needs an S3 store for the broker: {exc}") from None


def _report(result: LoadResult) -> None:
    """Write the report files and print the accounting; a document lost, doubled or landed
    where it should not is an error (exit code 1)."""
    from ops.load.accounting import check  # noqa: PLC0415
    from ops.load.report import write_report  # noqa: PLC0415

    command = "relais load " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    for path in write_report(result, command):
        click.echo(f"wrote {path}", err=True)
    click.echo(result.accounting.summary())
    try:
        check(result.accounting)
    except AssertionError as exc:
        raise click.ClickException(f"documents lost or doubled: {exc}") from None
