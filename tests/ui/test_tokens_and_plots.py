"""The UI's pure parts: signed tokens (time passed in) and the SVG plots."""

from __future__ import annotations

import pytest

from postback.core.model import ActivityPoint
from postback.ui import tokens
from postback.ui.plots import failure_rate_svg, throughput_svg
from postback.ui.tokens import SessionTokenInvalid

KEY = b"k" * 32
T0 = 1_800_000_000_000


def test_a_link_opens_for_its_account_until_it_expires() -> None:
    link = tokens.issue(KEY, "portal-link", T0, 60_000, "acc_1")
    claims = tokens.verify(KEY, link, "portal-link", T0 + 59_999)
    assert claims.account == "acc_1" and claims.kind == "portal-link"
    with pytest.raises(SessionTokenInvalid, match="expired"):
        tokens.verify(KEY, link, "portal-link", T0 + 60_000)


@pytest.mark.parametrize(
    ("made_as", "used_as"),
    [("portal-link", "portal"), ("portal", "operator"), ("portal-link", "operator")],
)
def test_a_token_works_only_for_what_it_was_made_for(made_as: str, used_as: str) -> None:
    token = tokens.issue(KEY, made_as, T0, 60_000, "acc_1")  # type: ignore[arg-type]
    with pytest.raises(SessionTokenInvalid):
        tokens.verify(KEY, token, used_as, T0)  # type: ignore[arg-type]


def test_forged_or_altered_tokens_are_refused() -> None:
    token = tokens.issue(KEY, "portal", T0, 60_000, "acc_1")
    body, _, mac = token.partition(".")
    other_body = tokens.issue(KEY, "portal", T0, 60_000, "acc_2").partition(".")[0]
    for bad in (
        tokens.issue(b"x" * 32, "portal", T0, 60_000, "acc_1"),  # another server's key
        f"{other_body}.{mac}",  # another account's claims under this signature
        body,
        "",
        "!!!.???",
    ):
        with pytest.raises(SessionTokenInvalid):
            tokens.verify(KEY, bad, "portal", T0)


def test_csrf_tokens_belong_to_one_session() -> None:
    one = tokens.verify(KEY, tokens.issue(KEY, "portal", T0, 60_000, "a"), "portal", T0)
    two = tokens.verify(KEY, tokens.issue(KEY, "portal", T0, 60_000, "a"), "portal", T0)
    assert tokens.check_csrf(KEY, one, tokens.csrf_token(KEY, one))
    assert not tokens.check_csrf(KEY, one, tokens.csrf_token(KEY, two))
    assert not tokens.check_csrf(KEY, one, "")


def test_plots_scale_to_their_data_and_escape_nothing_they_do_not_own() -> None:
    points = [
        ActivityPoint(bucket_start=T0 + i * 60_000, attempts=a, failures=f)
        for i, (a, f) in enumerate([(0, 0), (10, 5), (4, 4)])
    ]
    throughput = throughput_svg(points, 60)
    assert throughput.startswith("<svg") and throughput.endswith("</svg>")
    assert ">10<" in throughput  # the y axis tops at the busiest bucket
    rate = failure_rate_svg(points, 60)
    # 0 % at the empty bucket (bottom), 50 %, then 100 % (top of the plot area)
    ys = [float(p.split(",")[1]) for p in rate.split('points="')[1].split('"')[0].split()]
    assert ys[0] > ys[1] > ys[2]
    assert ys[1] == pytest.approx((ys[0] + ys[2]) / 2)
    assert throughput_svg([], 60).count("<polyline") == 2  # no data: an empty plot, no error
