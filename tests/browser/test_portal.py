"""The customer portal in a real browser: a portal link, endpoints made and changed through
forms, a delivery watched arriving, its attempts, a dead one replayed, and another
customer's data out of reach. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio

from playwright.async_api import BrowserContext, Page

from tests.browser.conftest import customer, screenshot
from tests.support.receiver import Receiver, ok, sequence, status
from tests.support.service import RunningPostback, wait_until


async def reload_until(page: Page, selector: str, timeout: float = 15.0) -> None:
    """Reload until ``selector`` is on the page (the log is not live; a person reloads)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await page.locator(selector).count():
        if loop.time() > deadline:
            raise AssertionError(f"{selector} did not appear on {page.url} within {timeout} s")
        await asyncio.sleep(0.3)
        await page.reload()


async def portal_flow(
    postback: RunningPostback, receiver: Receiver, browser: BrowserContext
) -> None:
    acme, acme_key = await customer(postback, "Acme Logistics")
    _, rival_key = await customer(postback, "Rival Corp")
    async with postback.client(rival_key) as pb:
        await pb.create_endpoint(receiver.on("/rival", ok))
        rival_sent = await pb.send("t", {"secret": "rival"})
    rival_endpoint = rival_sent.deliveries[0].endpoint_id
    rival_delivery = rival_sent.deliveries[0].id
    async with postback.client() as admin:
        link = await admin.create_portal_session(acme.id)
    assert "/ui/portal?token=" in link.url

    page = await browser.new_page()
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await page.goto(link.url)
    await page.wait_for_url(postback.url + "/ui/portal")  # the token is gone from the URL
    assert await page.inner_text("#account-name") == "Acme Logistics"
    [cookie] = [c for c in await browser.cookies() if c["name"] == "postback_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"

    # An endpoint made through the form, for every event type.
    good_url = receiver.on("/good", ok)
    await page.fill("#new-endpoint input[name=url]", good_url)
    await page.fill("#new-endpoint input[name=description]", "order updates")
    await page.click("#new-endpoint button[type=submit]")
    await page.wait_for_url("**/ui/portal/endpoints/ep_*")
    good_id = page.url.rsplit("/", 1)[1]
    assert await page.inner_text("h1") == good_url

    # The signing secret, revealed and rotated in place (htmx); pause and enable.
    await page.goto(f"{postback.url}/ui/portal/endpoints/{good_id}")
    await page.click("#reveal")
    assert (await page.inner_text("code.secret")).startswith("whsec_")
    await page.click("#rotate")
    await page.wait_for_selector("text=Rotated")
    assert await page.locator("code.secret").count() == 2  # the old one still signs 24 h
    await page.click("#toggle button")
    assert await page.inner_text("#state") == "paused"
    await page.click("#toggle button")
    assert await page.inner_text("#state") == "active"

    # A test event, watched arriving at the receiver and in the log, then its attempt.
    await page.select_option("#test-event select[name=event_type]", "t")
    await page.fill("#test-event textarea[name=payload]", '{"order": 42}')
    await page.click("#test-event button[type=submit]")
    await page.wait_for_url("**/ui/portal/deliveries?message_id=msg_*")
    message_id = page.url.rsplit("=", 1)[1]
    [arrived] = await receiver.wait_for("/good")
    assert arrived.body == b'{"order": 42}' and arrived.headers["webhook-id"] == message_id
    await reload_until(page, "tr.state-delivered")
    await screenshot(page, "portal-delivery-log")
    await page.click("tr.state-delivered a")
    await page.wait_for_url("**/ui/portal/deliveries/dlv_*")
    assert await page.inner_text("#attempt-1 .status") == "200"
    await page.click("#attempt-1 summary")
    headers = await page.inner_text("#attempt-1 table.headers")
    assert message_id in headers and "webhook-signature" in headers and "masked" in headers
    await screenshot(page, "portal-attempts")

    # A second endpoint, for type "t" only, that refuses its first message (400: dead at once).
    await page.goto(postback.url + "/ui/portal")
    flaky_url = receiver.on("/flaky", sequence(status(400, body="bad recipient"), ok))
    await page.fill("#new-endpoint input[name=url]", flaky_url)
    await page.uncheck("#new-endpoint input[name=all_event_types]")
    await page.check("#new-endpoint input[name=event_types][value=t]")
    await page.click("#new-endpoint button[type=submit]")
    await page.wait_for_url("**/ui/portal/endpoints/ep_*")
    await page.goto(postback.url + "/ui/portal")
    rows = page.locator("#endpoints tbody tr")
    assert await rows.count() == 2
    assert "t" in await rows.filter(has_text=flaky_url).inner_text()
    await screenshot(page, "portal-endpoints")

    # A message the flaky endpoint refuses, found by its state and replayed.
    async with postback.client(acme_key) as pb:
        sent = await pb.send("t", {"order": 43})
    await receiver.wait_for("/flaky")
    await page.goto(postback.url + "/ui/portal/deliveries")
    await page.select_option("#filters select[name=state]", "dead")
    await page.click("#filters button[type=submit]")
    await reload_until(page, "tr.state-dead")
    assert await page.locator("tbody tr").count() == 1
    await page.click("tr.state-dead a")
    assert await page.inner_text("#delivery-state") == "dead"
    assert "bad recipient" in await page.inner_text("#attempt-1")  # the response body excerpt
    await screenshot(page, "portal-dead-delivery")
    await page.click("#replay-one button")
    await page.wait_for_selector("#replay-one", state="detached")  # replayed: no longer dead
    await page.evaluate("window.notReloaded = true")
    await receiver.wait_for("/flaky", count=2)
    # The page follows the delivery by itself (htmx) until it is final.
    await page.wait_for_selector("#delivery-state.delivered")
    assert await page.evaluate("window.notReloaded") is True
    assert await page.locator("section.attempt").count() == 2
    async with postback.client(acme_key) as pb:
        after = await wait_until(
            lambda: _delivered_to(pb, sent.id, len(sent.deliveries)), timeout=10
        )
    assert after

    # Another customer's data is out of reach, whatever the URL or form says.
    await page.goto(postback.url + "/ui/portal")
    csrf = await page.get_attribute("#new-endpoint input[name=csrf]", "value")
    for path in (
        f"/ui/portal/deliveries/{rival_delivery}",
        f"/ui/portal/endpoints/{rival_endpoint}",
    ):
        response = await page.goto(postback.url + path)
        assert response is not None and response.status == 404, path
        assert "rival" not in (await page.content()).lower()
    refused = await page.request.post(
        f"{postback.url}/ui/portal/endpoints/{rival_endpoint}/toggle", form={"csrf": csrf or ""}
    )
    assert refused.status == 404
    await page.goto(f"{postback.url}/ui/portal/deliveries?search_by=message_id&q={rival_sent.id}")
    assert await page.locator("tbody tr td.muted", has_text="No deliveries").count() == 1
    forged = await page.request.post(f"{postback.url}/ui/portal/endpoints/{good_id}/toggle")
    assert forged.status == 403  # no CSRF token: refused before anything changes
    response = await page.goto(postback.url + "/ui/operator")
    await page.wait_for_url("**/ui/operator/login")  # a portal session is not an operator's
    assert await page.locator("#login").count() == 1
    async with postback.client(rival_key) as pb:
        assert (await pb.get_endpoint(rival_endpoint)).disabled is False


async def _delivered_to(pb: object, message_id: str, count: int) -> bool:
    message = await pb.get_message(message_id)  # type: ignore[attr-defined]
    return sum(d.state == "delivered" for d in message.deliveries) == count


async def test_customer_portal_on_sqlite(
    postback: RunningPostback, receiver: Receiver, browser: BrowserContext
) -> None:
    await portal_flow(postback, receiver, browser)


async def test_customer_portal_on_postgres(
    postback_pg: RunningPostback, receiver: Receiver, browser: BrowserContext
) -> None:
    await portal_flow(postback_pg, receiver, browser)


async def test_expired_or_forged_links_open_nothing(
    postback: RunningPostback, browser: BrowserContext
) -> None:
    acme, _ = await customer(postback, "acme")
    async with postback.client() as admin:
        link = await admin.create_portal_session(acme.id)
    page = await browser.new_page()
    forged = link.url[:-3] + ("AAA" if not link.url.endswith("AAA") else "BBB")
    response = await page.goto(forged)
    assert response is not None and response.status == 401
    assert "expired or is not valid" in await page.inner_text("main")
    assert not [c for c in await browser.cookies() if c["name"] == "postback_session"]
    response = await page.goto(postback.url + "/ui/portal/deliveries")
    assert response is not None and "/ui/portal/expired" in page.url
