"""A full disk: 503 ``storage_full`` with Retry-After, one log line (not one per request, no
traceback), nothing lost, and service again once space is freed. Run on a real full
filesystem: a small tmpfs mounted for the test (the tests run as root)."""

from __future__ import annotations

import contextlib
import errno
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import pytest

from postback.core.errors import StorageFull, StorageUnavailable
from postback.observe.logs import RecurringCondition
from postback.store.postgres import _translated
from tests.support.receiver import Receiver, status
from tests.support.service import start_postback, wait_until


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem has no byte left."""
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")


async def test_a_full_disk_answers_503_logs_once_and_recovers(
    small_disk: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    service = await start_postback(f"sqlite:///{small_disk / 'postback.db'}")
    try:
        async with await service.new_account() as setup:
            key = setup.api_key
            await setup.create_endpoint(receiver.on("/full", status(200)))
        filler = small_disk / "filler"
        fill(filler)
        caplog.clear()
        body = msgspec.json.encode({"event_type": "t", "payload": {"pad": "x" * 50_000}})
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        answers = []
        async with aiohttp.ClientSession() as session:
            for _ in range(30):
                async with session.post(
                    service.url + "/v1/messages", data=body, headers=headers
                ) as response:
                    answers.append(
                        (
                            response.status,
                            await response.json(),
                            response.headers.get("Retry-After"),
                        )
                    )
            assert {status for status, _, _ in answers} == {503}, answers[0]
            assert {a["error"]["code"] for _, a, _ in answers} == {"storage_full"}
            assert {retry_after for _, _, retry_after in answers} == {"30"}

            # One line for the condition, no traceback, nothing per request.
            full = [r for r in caplog.records if "storage is full" in r.getMessage()]
            assert len(full) == 1 and full[0].levelno == logging.ERROR
            assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR][1:]

            filler.unlink()  # the operator frees space

            async def stored() -> int | None:
                async with session.post(
                    service.url + "/v1/messages", data=body, headers=headers
                ) as response:
                    return response.status if response.status == 202 else None

            assert await wait_until(stored) == 202
        assert any("cleared" in r.getMessage() for r in caplog.records)
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await service.shutdown()


def test_recurring_condition_logs_once_then_a_summary_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    condition = RecurringCondition(logging.getLogger("t"), "disk full", clock=lambda: now[0])
    for second in range(0, 150):
        now[0] = float(second)
        for _ in range(10):
            condition.occurred("no space")
    condition.cleared()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "disk full: no space (refusing writes until it clears)"
    assert lines[1:3] == [
        "disk full: still so; 600 operations refused in the last 60 s",
        "disk full: still so; 600 operations refused in the last 60 s",
    ]
    assert lines[3] == "disk full: cleared after 1500 refused operations"
    assert len(lines) == 4


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            asyncpg.DiskFullError('could not extend file "base/1/2": No space left on device'),
            StorageFull,
        ),
        (asyncpg.CannotConnectNowError("starting up"), StorageUnavailable),
    ],
)
async def test_postgres_disk_full_is_translated_at_the_seam(
    error: Exception, expected: type[Exception]
) -> None:
    with pytest.raises(expected) as raised, _translated():
        raise error
    assert type(raised.value) is expected
