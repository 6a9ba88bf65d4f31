"""Which endpoints get a delivery: the subscribed ones, or a message's own callback_url instead."""

from __future__ import annotations

from postback.core.fanout import delivery_targets
from postback.core.model import NewMessage


def message(callback: str | None = None, fanout: bool = False) -> NewMessage:
    return NewMessage(
        id="msg_1", event_type="t", payload=b"{}", callback_endpoint_id=callback, fanout=fanout
    )


def test_without_a_callback_url_every_subscribed_endpoint() -> None:
    assert delivery_targets(message(), ["ep_a", "ep_b"]) == ["ep_a", "ep_b"]
    assert delivery_targets(message(fanout=True), ["ep_a"]) == ["ep_a"]
    assert delivery_targets(message(), []) == []


def test_a_callback_url_overrides_the_subscribed_endpoints() -> None:
    assert delivery_targets(message("ep_cb"), ["ep_a", "ep_b"]) == ["ep_cb"]
    assert delivery_targets(message("ep_cb"), []) == ["ep_cb"]


def test_fanout_adds_the_callback_url_once() -> None:
    assert delivery_targets(message("ep_cb", fanout=True), ["ep_a"]) == ["ep_a", "ep_cb"]
    assert delivery_targets(message("ep_cb", fanout=True), ["ep_cb", "ep_a"]) == ["ep_cb", "ep_a"]
