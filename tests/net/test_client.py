"""The sync-over-async runner and the redirect codes callers follow by hand."""

import asyncio

import pytest

from pipelines.net.client import REDIRECT_CODES, run_sync


async def _double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def _fail() -> None:
    raise LookupError("boom")


def test_run_sync_from_plain_code() -> None:
    assert run_sync(lambda: _double(21)) == 42


def test_run_sync_inside_a_running_loop_uses_its_own_loop() -> None:
    async def caller() -> tuple[int, bool]:
        outer = asyncio.get_running_loop()
        inner: list[asyncio.AbstractEventLoop] = []

        async def where() -> int:
            inner.append(asyncio.get_running_loop())
            return await _double(4)

        return run_sync(where), inner[0] is not outer

    assert asyncio.run(caller()) == (8, True)


def test_run_sync_reraises_in_the_caller() -> None:
    with pytest.raises(LookupError, match="boom"):
        run_sync(_fail)

    async def caller() -> None:
        run_sync(_fail)

    with pytest.raises(LookupError, match="boom"):
        asyncio.run(caller())


def test_redirect_codes() -> None:
    assert REDIRECT_CODES == {301, 302, 303, 307, 308}
