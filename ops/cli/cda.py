"""``relais cda check``: a CDA against the CDA R2 schema and the ANS's own rules, for
integrators (the same oracle the tests run on every kind of CDA Relais emits)."""

from __future__ import annotations

from pathlib import Path

import click

from domain.cda_validate import CdaSchema
from ops.cda_rules import AnsRules, RulesError
from ops.cli.context import settings_of


@click.group()
def cda() -> None:
    """CDA R2 documents: check them as the ANS does."""


@cda.command("check")
@click.argument(
    "paths",
    metavar="FILE...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--rules",
    "rules_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="the ANS rules: the folder with schematrons/ and jeuxDeValeurs/ "
    "(ansforge/TestContenuCDA-3-0; ../shared/data/ans-tcda here)",
)
@click.option(
    "--xsd-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="folder of CDA_extended.xsd [RELAIS_CDA_XSD_DIR]; without it, no schema check",
)
@click.pass_context
def check_cmd(
    ctx: click.Context, paths: tuple[Path, ...], rules_dir: Path, xsd_dir: Path | None
) -> None:
    """Check CDA files: the CDA R2 schema (XSD), then the ANS schematrons that apply.

    A structured document (N3) is judged by its model's schematron (CR-BIO, CR-IMG, LDL-SES,
    by its type code), and every document by IHE.sch and CI-SIS_ModelesDeContenusCDA.sch.
    Prints each failure with the rule's own text and where it is; exit 1 when a file fails.

    \b
    Example:
      relais cda check report.xml --rules ../shared/data/ans-tcda --xsd-dir ../shared/data/cda-xsd
    """
    folder = xsd_dir or settings_of(ctx).stages.cda_xsd_dir
    schema = CdaSchema.load(folder) if folder else None
    failed = 0
    try:
        with AnsRules(rules_dir) as rules:
            for path in paths:
                failed += _report(path, schema, rules)
    except RulesError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{len(paths) - failed} of {len(paths)} conformant")
    if failed:
        ctx.exit(1)


def _report(path: Path, schema: CdaSchema | None, rules: AnsRules) -> int:
    document = path.read_bytes()
    problems = schema.validate(document) if schema else []
    if problems:  # the rules assume a schema-valid document
        click.echo(f"{path}: not valid against the CDA R2 schema")
        for problem in problems:
            click.echo(f"  XSD: {problem}")
        return 1
    findings = rules.check(document)
    if findings and findings[0].rules == "XML":  # not well-formed: no rule could run
        click.echo(f"{path}: {findings[0]}")
        return 1
    judged = ", ".join(Path(r).stem for r in rules.rule_sets(document))
    if not findings:
        xsd = "XSD, " if schema else ""
        click.echo(f"{path}: conformant ({xsd}{judged})")
        return 0
    click.echo(f"{path}: {len(findings)} failed rule(s) ({judged})")
    for finding in findings:
        click.echo(f"  {finding}")
    return 1
