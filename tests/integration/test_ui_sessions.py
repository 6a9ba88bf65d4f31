"""UI sessions over plain HTTP: who gets in where, and what a missing CSRF token stops."""

from __future__ import annotations

import re

import aiohttp

from tests.support.service import RunningPostback


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
