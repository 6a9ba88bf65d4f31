"""The operator dashboard and /docs in a real browser."""

from __future__ import annotations

import asyncio

from playwright.async_api import BrowserContext, Page

from tests.browser.conftest import customer, screenshot
from tests.support.receiver import Receiver, ok, status
from tests.support.service import RunningPostback, wait_until


async def counter(page: Page, name: str) -> int:
    return int(await page.inner_text(f".counter[data-name='{name}'] .value"))


async def test_operator_dashboard(
    postback: RunningPostback, receiver: Receiver, browser: BrowserContext
) -> None:
    keys = []
    for name in ("Acme Logistics", "Rival Corp"):
        _, key = await customer(postback, name)
        keys.append(key)
        async with postback.client(key) as pb:
            await pb.create_endpoint(receiver.on(f"/{name[:4]}-ok", ok))
            await pb.create_endpoint(receiver.on(f"/{name[:4]}-down", status(400)))
            for n in range(3):
                await pb.send("t", {"n": n})

    async def settled() -> bool:  # every attempt recorded, not just sent
        for key in keys:
            async with postback.client(key) as pb:
                page = await pb.list_deliveries()
            if sorted(d.state for d in page.data) != ["dead"] * 3 + ["delivered"] * 3:
                return False
        return True

    await wait_until(settled)

    page = await browser.new_page()
    await page.goto(postback.url + "/ui/operator")
    await page.wait_for_url("**/ui/operator/login")
    await page.fill("#login input[name=token]", "not-the-token")
    await page.click("#login button")
    assert "neither the admin token nor a platform key" in await page.inner_text("#login")
    await page.fill("#login input[name=token]", postback.admin_token)
    await page.click("#login button")
    await page.wait_for_url(postback.url + "/ui/operator")

    accounts = await page.inner_text("#accounts")
    assert "Acme Logistics" in accounts and "Rival Corp" in accounts
    await page.fill("#find-account input[name=q]", "rival")
    await page.click("#find-account button")
    assert "Rival Corp" in await page.inner_text("#accounts")
    assert "Acme Logistics" not in await page.inner_text("#accounts")
    await page.goto(postback.url + "/ui/operator")
    health = page.locator("#endpoint-health tbody tr")
    assert await health.count() == 4
    assert await page.locator("#endpoint-health .tag.failing").count() == 2
    assert await page.locator("#endpoint-health .tag.healthy").count() == 2

    # Live counters: new deliveries show up without a reload (htmx polls the fragment).
    await page.evaluate("window.notReloaded = true")
    await asyncio.sleep(0.5)
    before = await counter(page, "delivered")
    _, key = await customer(postback, "Late Co")
    async with postback.client(key) as pb:
        await pb.create_endpoint(receiver.on("/late", ok))
        for n in range(4):
            await pb.send("t", {"n": n})
    await receiver.wait_for("/late", count=4)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await counter(page, "delivered") < before + 4:
        assert loop.time() < deadline, "the counters did not refresh"
        await asyncio.sleep(0.3)
    assert await page.evaluate("window.notReloaded") is True
    await screenshot(page, "operator-dashboard")

    # Plots of a failing endpoint: throughput and failure rate, drawn as inline SVG.
    await page.click("#endpoint-health tr.health-failing a")
    await page.wait_for_url("**/ui/operator/endpoints/ep_*")
    assert await page.locator("svg.plot").count() == 2
    assert await page.locator("svg.plot polyline.failures").count() == 1
    await screenshot(page, "operator-endpoint-plots")

    # The dead-letter queue across accounts, replayed in bulk.
    await page.click("nav >> text=Dead letters")
    await page.wait_for_url("**/ui/operator/dead-letters")
    boxes = page.locator("#dead-letters input[name=delivery]")
    assert await boxes.count() == 6
    await screenshot(page, "operator-dead-letters")
    for path in ("/Acme-down", "/Riva-down"):
        receiver.on(path, ok)
    for i in range(6):
        await boxes.nth(i).check()
    await page.click("#dead-letters button[type=submit]")
    assert await page.inner_text("#replayed") == "6 deliveries sent again."
    await receiver.wait_for("/Acme-down", count=6)
    await receiver.wait_for("/Riva-down", count=6)


async def test_docs_render_every_operation(
    postback: RunningPostback, browser: BrowserContext
) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    await page.goto(postback.url + "/docs")
    await page.wait_for_selector(".opblock")
    assert await page.locator(".opblock").count() >= 20
    assert await page.locator(".opblock-tag", has_text="endpoints").count() == 1
    assert await page.locator(".opblock-summary-path", has_text="/v1/messages/batch").count() == 1
    assert "Register a callback endpoint" in await page.inner_text("#ui")
    assert not await page.locator(".errors-wrapper").count()  # no "invalid version field"
    assert not errors
    assert all(url.startswith(postback.url) for url in requests)  # every asset served locally
    await screenshot(page, "docs")
