"""The operator console in a real headless browser (Debian's chromium driven by Playwright),
over a real stack: broker, workers, DMP sink and sandbox, ``relais index run`` into a real
PostgreSQL server, and ``relais console serve``.

The operator signs in (a wrong password first), finds a document by its MSH-10, opens its
journey, goes to its dead letter (the DMP refused it), replays it once the DMP takes
documents again, sees it delivered, and finds the replay, under their name, in the journey.
No page shows the patient's identity. The journey page is saved as a PNG (and as the
README's screenshot when ``RELAIS_SCREENSHOT_DIR`` names a folder).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from playwright.async_api import Locator, Page, expect

from ops.demo.samples import DOMINIQUE, LAB, sample
from ops.localstack import LocalStack, Process, read_landing
from ops.ports import free_port
from producers.publisher import Publisher
from tests.integration.browser import browser_fixture, launch_s, page_fixture  # noqa: F401
from tests.integration.postgres import create_database
from tests.shared_data import shared

OPERATOR, PASSWORD = "camille", "correct horse battery staple"
#: the DMP sandbox refuses with a code no table lists: REJECTED, dead-lettered by the sink
REFUSAL = "DMPSomethingNobodyListed"
INDEX_LAG_S = 30.0  # how long the index may take to show what the topics said
REPLAY_WAIT_MS = 60_000  # the replay's page reloads itself until the outcome is final


@dataclass
class Console:
    stack: LocalStack
    url: str  # http://127.0.0.1:PORT
    process: Process


async def relais(stack: LocalStack, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """Run the real command line with the stack's settings; (exit code, stdout + stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", *args,
        env=stack.environment(0),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def serving(process: Process, url: str, timeout_s: float = 30) -> None:
    """Wait until the console answers /healthz (it fails if the process exits first)."""
    deadline = time.monotonic() + timeout_s
    async with ClientSession(timeout=ClientTimeout(total=2)) as http:
        while True:
            assert process.popen.poll() is None, process.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no console on {url}: see {process.log_path}"
            try:
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def console(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: str,
) -> AsyncIterator[Console]:
    """A stack of its own (the test tells its DMP sandbox to refuse), its index process and
    its console, with one operator account."""
    work = Path(tmp_path_factory.mktemp("console-browser"))
    port = free_port()
    environment = {
        "RELAIS_INDEX_URL": create_database(postgres_server),  # a database of its own
        "RELAIS_CONSOLE_HOST": "127.0.0.1",
        "RELAIS_CONSOLE_PORT": str(port),
        "RELAIS_CONSOLE_ACCOUNTS": str(work / "console-accounts.json"),
    }
    async with LocalStack(
        work / "stack",
        prefix=f"w{uuid.uuid4().hex[:8]}",
        cda_xsd_dir=shared("cda-xsd"),
        extra_environment=environment,
    ) as stack:
        stack.spawn("index", "run")  # it reads the topics while the account is made
        code, out = await relais(
            stack, "console", "account", "add", OPERATOR, "--role", "operator",
            "--password-stdin",
            stdin=f"{PASSWORD}\n".encode(),
        )  # fmt: skip
        assert code == 0, out
        process = stack.spawn("console", "serve")
        url = f"http://127.0.0.1:{port}"
        await serving(process, url)
        yield Console(stack, url, process)


async def test_the_browser_opens_a_page_served_on_localhost(page: Page) -> None:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="<title>t</title><h1>Bonjour</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await page.goto(f"http://127.0.0.1:{port}/")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Bonjour")
    finally:
        await runner.cleanup()
    assert launch_s
    assert launch_s[-1] < 20, f"chromium took {launch_s} s to start"


async def dead_lettered_document(stack: LocalStack) -> tuple[str, str, str]:
    """A lab result the DMP refuses: (MSH-10, event id, dead letter id)."""
    s = stack.settings
    n = random.randrange(100_000, 1_000_000)  # an MSH-10 no other test sent
    msh10 = f"DEMO{LAB.loinc.replace('-', '')}{n:06d}"
    stack.sandbox.refuse_with = REFUSAL
    try:
        async with Publisher(
            bootstrap=s.kafka.bootstrap, keyring=stack.keyring, topic_prefix=s.kafka.prefix
        ) as publisher:
            [event_id] = await publisher.submit_lab_result(sample(LAB, DOMINIQUE, n))
        landing = await read_landing(
            s.kafka.bootstrap,
            s.kafka.prefix,
            until=lambda got: any(d["event_id"] == event_id for d in got.dead),
            timeout_s=60,
        )
    finally:
        stack.sandbox.refuse_with = None  # the DMP takes documents again: the replay's fix
    [letter] = [d for d in landing.dead if d["event_id"] == event_id]
    assert (letter["stage"], letter["reason_code"]) == ("dmp-sink", "dmp-rejected")
    return msh10, event_id, letter["dead_letter_id"]


async def until_shown(page: Page, shown: Callable[[], Awaitable[bool]], what: str) -> None:
    """Reload ``page`` until ``shown()`` (the index is near-real-time), INDEX_LAG_S at most."""
    deadline = time.monotonic() + INDEX_LAG_S
    while not await shown():
        assert time.monotonic() < deadline, f"{what}: not shown after {INDEX_LAG_S} s"
        await asyncio.sleep(0.5)
        await page.reload()


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file; it fails if the file is not one."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


async def actions(steps: Locator) -> list[str]:
    """The journey's steps, in the page's order: ``component ACTION by operator``."""
    return [" ".join(t.split()) for t in await steps.all_inner_texts()]


async def sign_in(page: Page, url: str) -> None:
    """A wrong password first (refused, with a message), then the right one."""
    await page.goto(f"{url}/")
    await expect(page).to_have_url(re.compile(r"/sign-in"))
    for password, status in (("not the password", 401), (PASSWORD, 200)):
        await page.get_by_label("Name").fill(OPERATOR)
        await page.get_by_label("Password").fill(password)
        async with page.expect_navigation() as answered:
            await page.get_by_role("button", name="Sign in").click()
        assert (await answered.value) is not None
        if status == 401:
            await expect(page.get_by_test_id("sign-in-error")).to_have_text(
                "wrong name or password"
            )
            await expect(page.get_by_test_id("operator-name")).to_have_count(0)
    await expect(page.get_by_test_id("operator-name")).to_have_text(OPERATOR)


async def test_sign_in_search_journey_replay_delivered(
    console: Console, page: Page, tmp_path: Path
) -> None:
    msh10, event_id, dead_letter_id = await dead_lettered_document(console.stack)
    pages: list[str] = []  # every page's HTML, checked for patient identity at the end
    await sign_in(page, console.url)
    pages.append(await page.content())

    # search by MSH-10: one hit, once the index has it
    await page.get_by_label("MSH-10").fill(msh10)
    await page.get_by_role("button", name="Search").click()
    await expect(page).to_have_url(re.compile(f"msh10={msh10}"))
    hits = page.get_by_test_id("result-row")
    await until_shown(page, lambda: _count_is(hits, 1), "the MSH-10's hit")
    await expect(hits).to_have_attribute("data-event-id", event_id)
    pages.append(await page.content())

    # the journey: received first, then dead-lettered by the DMP sink
    await hits.get_by_test_id("journey-link").click()
    await expect(page).to_have_url(f"{console.url}/documents/{event_id}")
    steps = page.get_by_test_id("journey-step")
    await until_shown(page, lambda: _has(steps, "DEAD_LETTERED"), "the dead letter")
    story = await actions(steps)
    assert "RECEIVED" in story[0], story
    dead_at = next(i for i, row in enumerate(story) if "DEAD_LETTERED" in row)
    assert "dmp-sink" in story[dead_at], story
    journey_url = page.url
    pages.append(await page.content())

    # the dead letter: replayed; the outcome page follows it until the DMP took it
    await steps.nth(dead_at).get_by_test_id("dead-letter-link").click()
    await expect(page.get_by_test_id("letter-id")).to_have_text(dead_letter_id)
    await expect(page.get_by_test_id("letter")).to_contain_text(REFUSAL)
    pages.append(await page.content())
    await page.get_by_test_id("replay-button").click()
    outcome = page.get_by_test_id("dlq-outcome").filter(has_text=re.compile("delivered", re.I))
    await expect(outcome).to_have_count(1, timeout=REPLAY_WAIT_MS)
    await expect(page.get_by_test_id("replay-status")).to_have_attribute("data-state", "settled")
    await expect(outcome).to_have_attribute("data-failed", "false")
    pages.append(await page.content())
    assert sum(console.stack.sandbox.submissions.values()) == 1  # the DMP holds it once

    # back to the journey: the replay, under the operator's name, then the delivery
    await page.goto(journey_url)
    await until_shown(page, lambda: _has(steps, "DELIVERED"), "the delivery in the journey")
    story = await actions(steps)
    replayed = [i for i, row in enumerate(story) if "REPLAYED" in row]
    assert replayed, story
    assert replayed[-1] > dead_at, story
    assert f"by {OPERATOR}" in story[replayed[-1]], story
    assert any("DELIVERED" in row for row in story[replayed[-1] + 1 :]), story
    pages.append(await page.content())
    await screenshot(page, tmp_path)

    # no page showed who the patient is
    for html in pages:
        for identity in (DOMINIQUE.ins, DOMINIQUE.family, DOMINIQUE.given, DOMINIQUE.birth_date):
            assert identity not in html


async def screenshot(page: Page, tmp_path: Path) -> None:
    """The page, full length, to a temporary file always, and to RELAIS_SCREENSHOT_DIR
    (``console-journey.png``, the README's) when set."""
    shot = tmp_path / "console-journey.png"
    await page.screenshot(path=shot, full_page=True)
    width, height = png_size(shot)
    assert width == 1280
    assert 400 <= height <= 8000, height
    assert shot.stat().st_size > 20_000  # text and colours, not a blank page
    folder = os.environ.get("RELAIS_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(folder) / "console-journey.png")


async def _has(rows: Locator, text: str) -> bool:
    return any(text in row for row in await actions(rows))


async def _count_is(rows: Locator, n: int) -> bool:
    return await rows.count() == n
