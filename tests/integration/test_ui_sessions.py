"""UI sessions over plain HTTP: who gets in where, and what a missing CSRF token stops."""

from __future__ import annotations

import re

import aiohttp
import pytest

from postback.cli.config import ConfigError, Settings
from tests.support.payloads import ANY_OBJECT
from tests.support.receiver import Receiver, status
from tests.support.service import RunningPostback, start_postback, wait_until


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_a_platform_key_signs_in_until_it_is_revoked(postback: RunningPostback) -> None:
    async with postback.client() as admin:
        platform = await admin.create_key(platform=True)
        account = await admin.create_account("acme")
    async with session() as browser:
        async with browser.post(
            postback.url + "/ui/operator/login", data={"token": account.api_key}
        ) as refused:
            assert refused.status == 401  # an account key is no operator
        async with browser.post(
            postback.url + "/ui/operator/login", data={"token": platform.key}
        ) as signed_in:
            assert signed_in.status == 200 and str(signed_in.url).endswith("/ui/operator")
            assert "acme" in await signed_in.text()
        async with postback.client(platform.key) as itself:
            await itself.revoke_key(platform.id)
        async with browser.get(postback.url + "/ui/operator") as after:
            assert str(after.url).endswith("/ui/operator/login")  # the session ended with the key


async def test_portal_sessions_stay_in_their_account_and_need_csrf(
    postback: RunningPostback,
) -> None:
    async with postback.client() as admin:
        acme = await admin.create_account("acme")
        link = await admin.create_portal_session(acme.id)
    async with session() as browser:
        async with browser.get(link.url) as opened:
            assert opened.status == 200
            cookie = opened.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
        async with browser.get(postback.url + "/ui/portal") as home:
            html = await home.text()
            match = re.search(r'name="csrf" value="([^"]+)"', html)
            assert home.status == 200 and match
        for path in ("/ui/operator", "/ui/operator/dead-letters", "/ui/operator/counters"):
            async with browser.get(postback.url + path) as operator:
                assert str(operator.url).endswith("/ui/operator/login"), path
        async with browser.post(
            postback.url + "/ui/operator/dead-letters/replay",
            data={"csrf": match.group(1), "delivery": f"{acme.id}:dlv_x"},
        ) as replay:
            assert replay.status == 401  # a portal session is not an operator session
        async with browser.post(
            postback.url + "/ui/portal/endpoints",
            data={"url": "http://127.0.0.1:9/hook"},
        ) as forged:
            assert forged.status == 403  # no CSRF token: nothing created
        async with postback.client(acme.api_key) as pb:
            assert (await pb.list_endpoints()).data == []


async def _portal(postback: RunningPostback, account_id: str) -> tuple[aiohttp.ClientSession, str]:
    """A browser-like session signed in to one account's portal, and its CSRF token."""
    async with postback.client() as admin:
        link = await admin.create_portal_session(account_id)
    browser = session()
    async with browser.get(link.url) as opened:
        assert opened.status == 200
    async with browser.get(postback.url + "/ui/portal") as home:
        match = re.search(r'name="csrf" value="([^"]+)"', await home.text())
    assert match
    return browser, match.group(1)


@pytest.mark.parametrize(
    ("headers", "secure"),
    [
        ({}, False),
        ({"X-Forwarded-Proto": "https"}, True),
        ({"X-Forwarded-Proto": "https, http"}, True),
        ({"Forwarded": 'for=192.0.2.60;proto="https";by=203.0.113.43'}, True),
        ({"X-Forwarded-Proto": "http"}, False),
    ],
)
async def test_the_session_cookie_is_secure_behind_a_proxy_that_ends_tls(
    postback: RunningPostback, headers: dict[str, str], secure: bool
) -> None:
    """Behind a proxy that terminates TLS the connection is plain HTTP; the proxy's word that
    the browser is on HTTPS makes the session cookie ``Secure``."""
    async with postback.client() as admin:
        acme = await admin.create_account("acme")
        link = await admin.create_portal_session(acme.id)
    async with session() as browser, browser.get(link.url, headers=headers) as opened:
        assert opened.status == 200
        attributes = [a.strip().lower() for a in opened.headers["Set-Cookie"].split(";")]
        assert ("secure" in attributes) is secure


async def test_portal_search_and_bulk_replay_stay_in_the_account(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with postback.client() as admin:
        acme = await admin.create_account("acme")
        rival = await admin.create_account("rival")
    async with postback.client(acme.api_key) as pb:
        await pb.create_event_type("t", ANY_OBJECT)
        await pb.create_endpoint(receiver.on("/down", status(400)))
        keyed = await pb.send("t", {"n": 1}, idempotency_key="order-7")
        other = await pb.send("t", {"n": 2})
        await receiver.wait_for("/down", count=2)
    async with postback.client(rival.api_key) as pb:
        await pb.create_event_type("t", ANY_OBJECT)
        await pb.create_endpoint(receiver.on("/rival", status(400)))
        foreign = await pb.send("t", {"n": 3})
        await receiver.wait_for("/rival")
    account_id = acme.id
    ids = [keyed.deliveries[0].id, other.deliveries[0].id]
    browser, csrf = await _portal(postback, account_id)
    async with browser:

        async def log(query: str) -> tuple[int, str]:
            async with browser.get(f"{postback.url}/ui/portal/deliveries?{query}") as page:
                return page.status, await page.text()

        _, by_key = await log("search_by=idempotency_key&q=order-7")
        assert ids[0] in by_key and ids[1] not in by_key
        status_code, bad = await log("search_by=payload&q=x")
        assert status_code == 400 and "search by" in bad
        status_code, _ = await log("state=lost")
        assert status_code == 400

        async def dead() -> bool:
            _, text = await log("state=dead")
            return all(i in text for i in ids)

        await wait_until(dead)
        async with browser.post(
            postback.url + "/ui/portal/deliveries/replay",
            data=[("csrf", csrf), *(("delivery_id", i) for i in [*ids, foreign.deliveries[0].id])],
        ) as replayed:
            text = await replayed.text()
        assert replayed.status == 200 and "2 deliveries sent again" in text
        assert foreign.deliveries[0].id in text  # listed as not replayed: not this account's
    await receiver.wait_for("/down", count=4)
    assert len(receiver.at("/rival")) == 1  # the other account's delivery stayed dead


async def test_a_deleted_endpoints_deliveries_stay_readable(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with postback.client() as admin:
        acme = await admin.create_account("acme")
    async with postback.client(acme.api_key) as pb:
        await pb.create_event_type("t", ANY_OBJECT)
        endpoint = await pb.create_endpoint(receiver.on("/gone", status(200)))
        sent = await pb.send("t", {"n": 1})

        async def recorded() -> bool:
            [delivery] = (await pb.get_message(sent.id)).deliveries
            return delivery.state == "delivered"

        await wait_until(recorded)  # the attempt is stored, not just sent
        await pb.delete_endpoint(endpoint.id)
    browser, _ = await _portal(postback, acme.id)
    async with (
        browser,
        browser.get(f"{postback.url}/ui/portal/deliveries/{sent.deliveries[0].id}") as page,
    ):
        text = await page.text()
    assert page.status == 200 and "(deleted)" in text and "Attempt 1" in text


async def test_framing_is_refused_unless_an_origin_is_configured(
    postback: RunningPostback, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with session() as browser, browser.get(postback.url + "/ui/operator/login") as page:
        assert "frame-ancestors 'self';" in page.headers["Content-Security-Policy"]
        assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    monkeypatch.setenv("POSTBACK_UI_FRAME_ANCESTORS", "https://app.example.com;script-src *")
    with pytest.raises(ConfigError, match="POSTBACK_UI_FRAME_ANCESTORS"):
        Settings.from_env()
    monkeypatch.setenv("POSTBACK_UI_FRAME_ANCESTORS", "https://app.example.com")
    embedded = await start_postback(
        sqlite_url + ".2", ui_frame_ancestors=Settings.from_env().ui_frame_ancestors
    )
    try:
        async with session() as browser, browser.get(embedded.url + "/ui/operator/login") as page:
            policy = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'self' https://app.example.com;" in policy
    finally:
        await embedded.shutdown()


async def test_a_test_event_goes_to_its_endpoint_only(
    postback: RunningPostback, receiver: Receiver
) -> None:
    async with postback.client() as admin:
        acme = await admin.create_account("acme")
    async with postback.client(acme.api_key) as pb:
        await pb.create_event_type("t", ANY_OBJECT)
        target = await pb.create_endpoint(receiver.on("/target", status(200)))
        await pb.create_endpoint(receiver.on("/bystander", status(200)))
    browser, csrf = await _portal(postback, acme.id)
    async with (
        browser,
        browser.post(
            f"{postback.url}/ui/portal/endpoints/{target.id}/test",
            data={"csrf": csrf, "event_type": "t", "payload": '{"test": true}'},
        ) as sent,
    ):
        message_id = str(sent.url).rsplit("=", 1)[1]
    [arrived] = await receiver.wait_for("/target")
    assert arrived.body == b'{"test": true}' and arrived.headers["webhook-id"] == message_id
    async with postback.client(acme.api_key) as pb:
        message = await pb.get_message(message_id)
    assert [d.endpoint_id for d in message.deliveries] == [target.id]
    assert receiver.at("/bystander") == []


async def test_bad_form_input_is_a_4xx_page_naming_the_field(postback: RunningPostback) -> None:
    async with postback.client() as admin:
        acme = await admin.create_account("acme")
    browser, csrf = await _portal(postback, acme.id)
    async with browser:
        async with browser.post(
            postback.url + "/ui/portal/endpoints", data={"csrf": csrf, "url": "not a url"}
        ) as bad_url:
            assert bad_url.status == 400 and "(url)" in await bad_url.text()
        async with browser.post(
            postback.url + "/ui/portal/endpoints/ep_missing/test",
            data={"csrf": csrf, "event_type": "t", "payload": "{}"},
        ) as missing:
            assert missing.status == 404
        async with browser.get(postback.url + "/ui/portal/deliveries?since=yesterday") as when:
            assert when.status == 400 and "(since)" in await when.text()
    async with postback.client(acme.api_key) as pb:
        assert (await pb.list_endpoints()).data == []
