"""The dispatcher: claim due deliveries, send them, record what happened.

    claim (batch, leased) -> pace per endpoint -> sign -> send -> settle -> record (batch)

Isolation: every endpoint gets a bounded share of the in-flight slots (``per_endpoint``), and
the claim query skips endpoints at their share or paused by a 429, so an endpoint that hangs
until its timeout, or fails everything, holds at most its own share and never the rest.
All decisions (classification, next retry time, pacing) come from ``postback.core``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import ssl
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import aiohttp
import msgspec

from postback import __version__
from postback.core import signing
from postback.core.breaker import CLOSED, BreakerRules, Streak, after_attempt
from postback.core.fanout import part, reserve_size
from postback.core.ids import MonotonicIds, make_id
from postback.core.lifecycle import settle
from postback.core.model import (
    Attempt,
    AttemptRecord,
    ClaimedDelivery,
    DeliveryState,
    Endpoint,
    LeaseOffer,
    SigningSecret,
    static_headers,
)
from postback.core.outcome import AttemptResult, FailureKind, Outcome
from postback.core.policy import RetryPolicy, resolve_policy
from postback.core.throttle import (
    Pacing,
    SendRateMeter,
    broken,
    recovered,
    reserve,
    throttled,
)
from postback.core.validation import storable_text
from postback.dispatch.health import HealthKeeper
from postback.observe.logs import STORAGE_FULL
from postback.observe.metrics import Metrics
from postback.store.base import Storage, StorageError, StorageFull, StorageUnavailable
from postback.transports.auth import AuthError, Authorizer, build_authorizer
from postback.transports.base import OutboundRequest, Transport
from postback.transports.tls import client_ssl_context

log = logging.getLogger("postback.dispatch.loop")
alerts = logging.getLogger("postback.alerts")

DEFAULT_TIMEOUT_MS = 5000
RESERVE_RATE_SPAN_MS = 100
"""A reserve follows the send rate over at least this span: a burst's reserve grows within a
tenth of a second, not after a whole second at a rate guessed too low."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DispatcherSettings:
    max_in_flight: int = 512
    per_endpoint: int = 32
    """In-flight share of one endpoint: the bound on what a hanging endpoint can hold."""
    prefetch: int = 512
    """The most deliveries of an endpoint leased ahead of its share and kept ready in memory,
    when no other process holds any of it (``core.fanout.fleet_room``): a freed slot is
    refilled at once, not after a claim's round trip through the database. Each endpoint's
    reserve is sized to its send rate (``reserve_s``, ``core.fanout.reserve_size``). 0 turns
    it off."""
    reserve_s: float = 0.25
    """How long an endpoint's reserve should last at the rate it is being sent to: longer
    than a claim's round trip, short enough that nothing waits long in memory."""
    claim_batch: int = 256
    lease_ms: int = 30_000
    """How long a dead worker's deliveries wait before another takes them over. A live worker
    renews what it holds every third of it, so an attempt may take longer than the lease."""
    idle_poll_s: float = 0.5
    lease_check_interval_s: float = 5.0
    release_wait_over_s: float = 2.0
    """A delivery that would wait longer than this for its endpoint's pace is handed back."""
    shutdown_timeout_s: float = 10.0
    record_linger_s: float = 0.01
    """Results wait this long for company before they are written: one commit (one fsync)
    then covers hundreds of attempts instead of a few. Only bookkeeping waits, never a send."""
    record_batch: int = 512
    narrow_after_timeouts: int = 3
    """Attempts in a row to one endpoint that time out before its share narrows."""
    narrow_share: int = 4
    """The in-flight share of an endpoint that keeps timing out, until it answers again: each
    of its attempts holds a slot for the whole timeout, and at the full share 16 such
    endpoints would hold every slot of the process (``max_in_flight``)."""
    breaker: BreakerRules = field(default_factory=BreakerRules)
    """When an endpoint that fails everything is paused, and for how long (``core.breaker``)."""


@dataclass(slots=True)
class EndpointRuntime:
    """What the dispatcher keeps per endpoint: config snapshot, pacing, in-flight count."""

    endpoint: Endpoint
    secrets: list[SigningSecret]
    policy: RetryPolicy
    timeout_s: float
    headers: dict[str, str]
    authorizer: Authorizer
    ssl_context: ssl.SSLContext | None = None
    pacing: Pacing = field(default_factory=Pacing)
    """The last shared pacing state this worker saw (the database holds the truth)."""
    meter: SendRateMeter = field(default_factory=SendRateMeter)
    keys: dict[str, bytes] = field(default_factory=dict)
    timeouts_in_a_row: int = 0
    streak: Streak = CLOSED
    """Its failures in a row, for the circuit breaker (``core.breaker``)."""
    next_paced_send_s: float = 0.0
    """On the event loop's clock, the earliest this process may make its next paced send to
    the endpoint (``Dispatcher._keep_spacing``)."""

    @property
    def configured_rate(self) -> float | None:
        return self.endpoint.rate_limit_per_s

    def newest_secret(self, now_ms: int) -> str | None:
        """The Sinch scheme carries one signature: the newest secret's (a rotation takes
        effect at once; the receiver must switch when it rotates)."""
        for secret in self.secrets:
            if secret.expires_at is None or secret.expires_at > now_ms:
                return secret.secret
        return None

    def signing_keys(self, now_ms: int) -> list[bytes]:
        active = []
        for secret in self.secrets:
            if secret.expires_at is None or secret.expires_at > now_ms:
                key = self.keys.get(secret.secret)
                if key is None:
                    key = self.keys[secret.secret] = signing.secret_key(secret.secret)
                active.append(key)
        return active


class Dispatcher:
    def __init__(
        self,
        storage: Storage,
        transport: Transport,
        settings: DispatcherSettings | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        auth_session: Callable[[], aiohttp.ClientSession] | None = None,
        sns_transport: Transport | None = None,
        health: HealthKeeper | None = None,
    ) -> None:
        self.storage = storage
        self.transport = transport
        self.sns_transport = sns_transport
        self._auth_session = auth_session or _no_session
        self.settings = settings or DispatcherSettings()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.health = health or HealthKeeper(storage, self.metrics, clock=clock)
        self.last_tick = time.monotonic()
        """When the claim loop last went round (``/readyz`` checks it is not stuck)."""
        self.user_agent = f"Postback/{__version__}"
        self._runtimes: dict[str, EndpointRuntime] = {}
        self._active: set[str] = set()
        """Loaded endpoints the claim must be told about (``_endpoint_limits``)."""
        self._endpoints_of: dict[str, set[str]] = {}
        """Loaded endpoints by account: an ingest is for one account (``lease_offer``)."""
        self._loading: dict[str, asyncio.Future[EndpointRuntime | None]] = {}
        self._held: dict[str, asyncio.Task[None]] = {}
        self._held_by_endpoint: dict[str, int] = {}
        self._narrowed: dict[str, int] = {}
        """Endpoints that keep timing out, and their narrowed share (``narrow_share``)."""
        self.holder = make_id("hold", int(self.clock() * 1000), os.urandom(10))
        """This dispatcher's name on the leases it holds: the store splits an endpoint's share
        among its holders (``core.fanout.fleet_room``)."""
        self._holders: dict[str, int] = {}
        """Endpoints other processes also hold, and how many processes hold each (this one
        included), as the last lease of each said: this one sends at most its part."""
        self._ready: dict[str, deque[_Ready]] = {}
        """Per endpoint, leased deliveries waiting for one of its in-flight slots (prefetch)."""
        self._ready_count = 0
        self._unsettled: dict[str, str] = {}
        """Deliveries leased to this process whose outcome is not written yet (delivery ->
        endpoint): the store counts them as in flight, and must not count them twice."""
        self._unsettled_by_endpoint: dict[str, int] = {}
        """The same, counted per endpoint (``own_in_flight``: it was a walk over all of them
        twice a claim and once an ingest, tens of thousands when recording fell behind)."""
        self._buffered: set[str] = set()
        """Deliveries whose record or release waits in the buffers for the next flush."""
        """Attempts started and not finished, per endpoint: this process's part of its share."""
        self._wake = asyncio.Event()
        self._records: list[AttemptRecord] = []
        self._records_ready = asyncio.Event()
        self._health_timer: asyncio.TimerHandle | None = None
        self._releases: list[tuple[str, int]] = []
        self._stopping = False
        self._drained = False
        """Set once shutdown's drain is over: only then may the flusher stop (attempts that
        finish, and deliveries handed back, during the drain still need writing)."""
        self._random = random.Random()
        self._attempt_ids = MonotonicIds("att")
        """Attempt ids in the order this process made them (a delivery's attempts list in
        order), drawing randomness once a millisecond rather than once an attempt."""

    # -- public -------------------------------------------------------------------------------

    def wake(self) -> None:
        """New work was stored (or a slot freed): claim now instead of at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._held)

    def lease_offer(
        self, endpoints: Collection[str] | None = None, *, account_id: str | None = None
    ) -> LeaseOffer | None:
        """What this dispatcher can take straight from an ingest in this process (the fast
        path): free slots, and room per endpoint it already knows and may send to at once.
        Endpoints it has not loaded yet, and paced ones, go through the claim path.

        ``endpoints``: the only ones the ingest can reach, when the caller knows them (every
        message names its callback URL); else those of ``account_id`` (an ingest is for one
        account); else every loaded endpoint. Worked out for every endpoint of a platform with
        thousands of customers, the offer was 7 % of the event loop."""
        if endpoints is None and account_id is not None:
            endpoints = self._endpoints_of.get(account_id, ())
        if self._stopping:
            return None
        free = self._capacity()
        if free <= 0:
            return None
        now_ms = int(self.clock() * 1000)
        room: dict[str, int] = {}
        reserves: dict[str, int] = {}
        runtimes = self._runtimes
        candidates = (
            runtimes.items()
            if endpoints is None
            else [(e, runtimes[e]) for e in endpoints if e in runtimes]
        )
        for endpoint_id, runtime in candidates:
            if (
                runtime.configured_rate is not None
                or runtime.pacing.is_paced(None, now_ms)
                or runtime.endpoint.disabled
            ):
                room[endpoint_id] = 0
                continue
            reserve = reserves[endpoint_id] = self._reserve(runtime, now_ms)
            room[endpoint_id] = self._share(endpoint_id) + reserve - self._holding(endpoint_id)
        own = self.own_in_flight()
        return LeaseOffer(
            lease_ms=self.settings.lease_ms,
            total=free,
            share=self.settings.per_endpoint,
            own=own,
            sending=self._sending(own),
            room=room,
            prefetch=reserves,
            holder=self.holder,
        )

    def _reserve(self, runtime: EndpointRuntime, now_ms: int) -> int:
        """How many of an endpoint's deliveries to keep ready beyond its share."""
        settings = self.settings
        return reserve_size(
            runtime.meter.rate(now_ms, RESERVE_RATE_SPAN_MS),
            self._share(runtime.endpoint.id),
            settings.prefetch,
            settings.reserve_s,
        )

    def _share(self, endpoint_id: str) -> int:
        """An endpoint's in-flight share here: ``per_endpoint``, narrower while it keeps timing
        out, and this process's part of it while other processes send to it too."""
        share = self._narrowed.get(endpoint_id, self.settings.per_endpoint)
        holders = self._holders.get(endpoint_id)
        if holders is None:
            return share
        return min(share, part(self.settings.per_endpoint, holders))

    def _note_timeouts(self, runtime: EndpointRuntime, result: AttemptResult) -> None:
        """Narrow the share of an endpoint whose attempts keep timing out; widen it again at
        its first answer (or fast failure), so a few dead customers cannot take every slot."""
        endpoint_id = runtime.endpoint.id
        if result.failure is FailureKind.TIMEOUT:
            runtime.timeouts_in_a_row += 1
            if runtime.timeouts_in_a_row == self.settings.narrow_after_timeouts:
                share = min(self.settings.narrow_share, self.settings.per_endpoint)
                self._narrowed[endpoint_id] = share
                self._hand_back_ready(endpoint_id, keep=share)
                log.info(
                    "endpoint %s timed out %d times in a row: at most %d attempts in flight to "
                    "it until it answers",
                    endpoint_id,
                    runtime.timeouts_in_a_row,
                    share,
                )
        elif runtime.timeouts_in_a_row:
            runtime.timeouts_in_a_row = 0
            if self._narrowed.pop(endpoint_id, None) is not None:
                log.info("endpoint %s answers again: its full share is back", endpoint_id)

    def _hand_back_ready(self, endpoint_id: str, keep: int) -> None:
        """Hand back, due now, what an endpoint has ready beyond ``keep``: leased at its
        full share, it would sit in memory (and in the process's capacity) for minutes."""
        ready = self._ready.get(endpoint_id)
        now_ms = int(self.clock() * 1000)
        while ready and len(ready) > keep:
            self._release_later(ready.pop().item.delivery_id, now_ms)
            self._ready_count -= 1

    def _capacity(self) -> int:
        """How many more deliveries this process may take: its in-flight slots, plus as many
        again ready in memory (what prefetch may hold in all)."""
        limit = self.settings.max_in_flight
        if self.settings.prefetch:
            limit += max(limit, self.settings.prefetch)
        # Results still waiting to be written count too, past a few flushes' worth: when the
        # writer falls behind, sending on would pile up tens of thousands of them in memory,
        # each one a duplicate send should the process die before its flush.
        unrecorded = len(self._buffered) - 4 * self.settings.record_batch
        return limit - len(self._held) - self._ready_count - max(0, unrecorded)

    def _holding(self, endpoint_id: str) -> int:
        """An endpoint's deliveries leased here: in flight and ready."""
        ready = self._ready.get(endpoint_id)
        return self._held_by_endpoint.get(endpoint_id, 0) + (len(ready) if ready else 0)

    def accept(self, leased: list[ClaimedDelivery]) -> None:
        """Deliveries an ingest committed already leased to this dispatcher: send them now,
        with no claim query and no payload read."""
        if leased:
            self.metrics.taken(len(leased), fast=True)
        for item in leased:
            self._start(item, None)

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set, then shut down gracefully."""
        self.storage.watch(self.wake)
        flusher = asyncio.create_task(self._flush_loop(), name="postback-record-flusher")
        try:
            await self._claim_loop(stop)
        finally:
            self._stopping = True
            await self._drain()
            self._drained = True
            # Let the flusher finish what it is writing: cancelling it mid-write would leave
            # us unsure whether that batch committed.
            self._records_ready.set()
            try:
                await asyncio.wait_for(flusher, self.settings.shutdown_timeout_s)
            except TimeoutError:
                log.error(
                    "shutdown with %d attempt records unsaved; their leases will expire and "
                    "the deliveries will be retried",
                    len(self._records),
                )

    # -- claim loop ---------------------------------------------------------------------------

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        next_lease_check = 0.0
        next_renewal = self.clock() + self.settings.lease_ms / 3000
        backoff = 0.1
        while not stop.is_set():
            self.last_tick = time.monotonic()
            now = self.clock()
            now_ms = int(now * 1000)
            failed = False
            try:
                if now >= next_renewal:
                    await self._renew_leases(now_ms)
                    next_renewal = now + self.settings.lease_ms / 3000
                if now >= next_lease_check:
                    expired = await self.storage.expire_leases(now_ms)
                    if expired:
                        log.warning("reclaimed %d deliveries whose lease expired", expired)
                    next_lease_check = now + self.settings.lease_check_interval_s
                capacity = self._capacity()
                claimed = []
                limit = min(capacity, self.settings.claim_batch)
                if limit > 0:
                    exclude, allowance, reserves = self._endpoint_limits(now)
                    own = self.own_in_flight()
                    claimed = await self.storage.claim(
                        now_ms,
                        limit,
                        self.settings.lease_ms,
                        exclude_endpoints=exclude,
                        allowance=allowance,
                        per_endpoint=self.settings.per_endpoint,
                        own_in_flight=own,
                        own_sending=self._sending(own),
                        # An endpoint not loaded here yet: its rate is unknown.
                        prefetch=reserve_size(
                            0, self.settings.per_endpoint, self.settings.prefetch, 0
                        ),
                        reserves=reserves,
                        holder=self.holder,
                    )
                    self.metrics.claimed(len(claimed))
                backoff = 0.1
            except StorageUnavailable as exc:
                if isinstance(exc, StorageFull):
                    STORAGE_FULL.occurred(str(exc))  # once, then once a minute: not per try
                else:
                    log.warning("storage unavailable, retrying in %.1f s: %s", backoff, exc)
                failed = True
            except Exception:
                # Never let one bad batch stop delivery: log it, back off, go on.
                log.exception("claiming deliveries failed; retrying in %.1f s", backoff)
                failed = True
            # The back-off waits outside the handlers: compiled by mypyc, a coroutine that
            # awaited inside an `except` raised the handled exception again later.
            if failed:
                await self._sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if claimed:
                try:
                    await self._start_batch(claimed)
                except Exception:
                    # Each delivery's own failure is handled in _deliver; this is a bug guard.
                    log.exception("starting %d claimed deliveries failed", len(claimed))
            if claimed and len(claimed) >= limit:
                await asyncio.sleep(0)  # full batch: more is probably due; let tasks start
                continue
            await self._idle_wait(stop)

    async def _renew_leases(self, now_ms: int) -> None:
        """Keep the leases of everything held here (in flight, ready, or waiting to be
        recorded): short leases, yet no live worker's delivery is taken over."""
        held = list(self._unsettled)
        if held:
            await self.storage.renew_leases(held, now_ms + self.settings.lease_ms)

    async def _idle_wait(self, stop: asyncio.Event) -> None:
        # Cleared before anything is awaited: a slot freed or an ingest meanwhile must wake us.
        self._wake.clear()
        timeout = self.settings.idle_poll_s
        # try/except, not contextlib.suppress, around awaits in this compiled module: see
        # tests/packaging/test_native.py.
        try:
            now = self.clock()
            exclude, _allowance, _reserves = self._endpoint_limits(now)
            due = await self.storage.next_due_at(exclude)
            if due is not None:
                timeout = min(timeout, max(due / 1000 - self.clock(), 0.0))
        except StorageUnavailable:
            pass
        if timeout <= 0 and self._capacity() <= 0:
            timeout = 0.05
        if timeout > 0:
            waiter = asyncio.create_task(self._wake.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=timeout, return_when="FIRST_COMPLETED")
            waiter.cancel()
            stopper.cancel()
        # Coalesce wake-ups: completions and ingests arriving together share one claim.
        await asyncio.sleep(0.002)

    async def _sleep_or_stop(self, stop: asyncio.Event, seconds: float) -> None:
        try:  # not contextlib.suppress: see _idle_wait
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            return

    def _endpoint_limits(self, now: float) -> tuple[list[str], dict[str, int], dict[str, int]]:
        """Endpoints not to claim now; the room of the others, and their reserves.

        Only the endpoints in ``_active`` are looked at: an idle one (nothing held here, no
        pace or pause, its full share, a reserve no bigger than an unknown endpoint's) gets
        exactly what the store gives an endpoint it is not told about, so it is dropped from
        the set. With thousands of customer endpoints loaded, going over all of them twice a
        claim cost milliseconds of the event loop, and more with every endpoint loaded."""
        exclude: list[str] = []
        allowance: dict[str, int] = {}
        reserves: dict[str, int] = {}
        now_ms = int(now * 1000)
        settings = self.settings
        unknown_reserve = reserve_size(0, settings.per_endpoint, settings.prefetch, 0)
        idle: list[str] = []
        runtimes = self._runtimes
        for endpoint_id in self._active:
            runtime = runtimes.get(endpoint_id)
            if runtime is None:
                idle.append(endpoint_id)
                continue
            holding = self._holding(endpoint_id)
            reserve = self._reserve(runtime, now_ms)
            if (
                not holding
                and reserve <= unknown_reserve
                and runtime.configured_rate is None
                and not runtime.pacing.is_paced(None, now_ms)
                and endpoint_id not in self._narrowed
                and endpoint_id not in self._holders
            ):
                idle.append(endpoint_id)
                continue
            room = self._share(endpoint_id) + reserve - holding
            rate = runtime.pacing.rate(runtime.configured_rate)
            if rate is not None:
                # Claim no more than about a second of this endpoint's pace at a time.
                room = min(room, max(1, math.ceil(rate)) - holding)
            if room <= 0 or runtime.pacing.paused_until_ms > now_ms:
                exclude.append(endpoint_id)
            else:
                allowance[endpoint_id] = room
                reserves[endpoint_id] = reserve
        self._active.difference_update(idle)
        return exclude, allowance, reserves

    async def _start_batch(self, claimed: list[ClaimedDelivery]) -> None:
        """Start attempts; paced endpoints first get send slots from the shared pacing state."""
        if claimed:
            self.metrics.taken(len(claimed), fast=False)
        by_endpoint: dict[str, list[ClaimedDelivery]] = {}
        for item in claimed:
            by_endpoint.setdefault(item.endpoint_id, []).append(item)
        slots: dict[str, list[int]] = {}

        async def prepare(endpoint_id: str, items: list[ClaimedDelivery]) -> None:
            try:
                runtime = await self._runtime(items[0])
            except Exception:
                return  # _deliver meets the same error, logs it and hands the delivery back
            try:
                now_ms = int(self.clock() * 1000)
                if runtime is None:
                    return
                if not (
                    any(i.paced for i in items)
                    or runtime.pacing.is_paced(runtime.configured_rate, now_ms)
                ):
                    return
                rate = runtime.configured_rate
                runtime.pacing, slots[endpoint_id] = await self.storage.pace(
                    endpoint_id, lambda p: _reserved(reserve(p, now_ms, len(items), rate))
                )
            except StorageUnavailable:
                slots[endpoint_id] = [int(self.clock() * 1000) + 1000] * len(items)

        await asyncio.gather(*(prepare(e, items) for e, items in by_endpoint.items()))
        for endpoint_id, items in by_endpoint.items():
            endpoint_slots = slots.get(endpoint_id)
            for i, item in enumerate(items):
                self._start(item, endpoint_slots[i] if endpoint_slots else None)

    def _start(self, item: ClaimedDelivery, not_before_ms: int | None) -> None:
        """Send now if the endpoint has a free slot (and the process one); else keep it ready,
        leased, for the next slot the endpoint frees."""
        endpoint_id = item.endpoint_id
        if item.delivery_id not in self._unsettled:
            self._unsettled[item.delivery_id] = endpoint_id
            counts = self._unsettled_by_endpoint
            counts[endpoint_id] = counts.get(endpoint_id, 0) + 1
        self._active.add(endpoint_id)
        if item.holders > 1:
            self._holders[endpoint_id] = item.holders
        elif self._holders:
            self._holders.pop(endpoint_id, None)
        ready = self._ready.get(endpoint_id)
        if (
            ready
            or self._held_by_endpoint.get(endpoint_id, 0) >= self._share(endpoint_id)
            or len(self._held) >= self.settings.max_in_flight
        ):
            if ready is None:
                ready = self._ready[endpoint_id] = deque()
            ready.append(_Ready(item, not_before_ms, time.monotonic()))
            self._ready_count += 1
            return
        self._launch(item, not_before_ms)

    def _launch(self, item: ClaimedDelivery, not_before_ms: int | None) -> None:
        task = asyncio.create_task(self._deliver(item, not_before_ms))
        self._held[item.delivery_id] = task
        delivery_id = item.delivery_id
        endpoint_id = item.endpoint_id
        held = self._held_by_endpoint
        held[endpoint_id] = held.get(endpoint_id, 0) + 1

        def finished(_task: asyncio.Task[None]) -> None:
            self._held.pop(delivery_id, None)
            if delivery_id not in self._buffered:
                self._settled(delivery_id)  # no write will come for it
            left = held[endpoint_id] - 1
            if left:
                held[endpoint_id] = left
            else:
                del held[endpoint_id]
            self._wake.set()
            if self._ready_count:
                self._launch_ready(endpoint_id)

        task.add_done_callback(finished)

    def _launch_ready(self, endpoint_id: str) -> None:
        """Fill freed slots from the ready deliveries: this endpoint's first, then, if the
        process had run out of slots, the others'."""
        self._launch_ready_of(endpoint_id)
        if self._ready_count and len(self._held) < self.settings.max_in_flight:
            for other in list(self._ready):
                self._launch_ready_of(other)
                if len(self._held) >= self.settings.max_in_flight:
                    break

    def _launch_ready_of(self, endpoint_id: str) -> None:
        ready = self._ready.get(endpoint_id)
        if ready is None:
            return
        share = self._share(endpoint_id)
        held = self._held_by_endpoint
        oldest_s = self.settings.lease_ms / 4000
        while (
            ready
            and held.get(endpoint_id, 0) < share
            and len(self._held) < self.settings.max_in_flight
        ):
            waiting = ready.popleft()
            self._ready_count -= 1
            if time.monotonic() - waiting.since > oldest_s:
                # Too long in memory to trust the rest of its lease with an attempt: hand it
                # back for the claim path rather than risk a second worker sending it too.
                self._release_later(waiting.item.delivery_id, int(self.clock() * 1000))
                continue
            self._launch(waiting.item, waiting.not_before_ms)
        if not ready:
            del self._ready[endpoint_id]

    # -- one delivery -------------------------------------------------------------------------

    def _loaded(self, item: ClaimedDelivery) -> EndpointRuntime | None:
        """The endpoint's runtime if it is loaded and as new as the lease saw it, else None."""
        runtime = self._runtimes.get(item.endpoint_id)
        if runtime is not None and runtime.endpoint.updated_at >= item.endpoint_updated_at:
            return runtime
        return None

    async def _runtime(self, item: ClaimedDelivery) -> EndpointRuntime | None:
        runtime = self._loaded(item)
        if runtime is not None:
            return runtime
        pending = self._loading.get(item.endpoint_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[item.endpoint_id] = pending
            try:
                # What an update must not reset: pacing, meter, keys, credentials, streaks.
                previous = self._runtimes.get(item.endpoint_id)
                loaded = await self._load_runtime(item.endpoint_id, previous)
                pending.set_result(loaded)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()  # mark retrieved; the waiters below re-raise it
                raise
            finally:
                del self._loading[item.endpoint_id]
        return await asyncio.shield(pending)

    async def _load_runtime(
        self, endpoint_id: str, previous: EndpointRuntime | None
    ) -> EndpointRuntime | None:
        endpoint = await self.storage.get_endpoint(None, endpoint_id)
        if endpoint is None:
            gone = self._runtimes.pop(endpoint_id, None)
            if gone is not None:
                self._endpoints_of.get(gone.endpoint.account_id, set()).discard(endpoint_id)
            self._narrowed.pop(endpoint_id, None)
            return None
        secrets = await self.storage.signing_secrets(endpoint_id, int(self.clock() * 1000))
        policy = resolve_policy(endpoint.retry_policy)
        # An attempt may outlast the lease it started with: the claim loop renews the leases of
        # everything this process holds every third of a lease (``_renew_leases``).
        timeout_ms = endpoint.timeout_ms or policy.timeout_ms or DEFAULT_TIMEOUT_MS
        runtime = EndpointRuntime(
            endpoint=endpoint,
            secrets=secrets,
            policy=policy,
            timeout_s=timeout_ms / 1000,
            headers=static_headers(endpoint, self.user_agent),
            authorizer=(
                previous.authorizer
                if previous is not None and previous.endpoint.auth == endpoint.auth
                else build_authorizer(endpoint.auth, self._auth_session)
            ),
            ssl_context=(
                previous.ssl_context
                if previous is not None and previous.endpoint.tls == endpoint.tls
                else (client_ssl_context(endpoint.tls) if endpoint.tls is not None else None)
            ),
            pacing=previous.pacing if previous is not None else Pacing(),
            meter=previous.meter if previous is not None else SendRateMeter(),
            keys=previous.keys if previous is not None else {},
            timeouts_in_a_row=previous.timeouts_in_a_row if previous is not None else 0,
            streak=previous.streak if previous is not None else CLOSED,
            next_paced_send_s=previous.next_paced_send_s if previous is not None else 0.0,
        )
        self._runtimes[endpoint_id] = runtime
        self._active.add(endpoint_id)
        self._endpoints_of.setdefault(endpoint.account_id, set()).add(endpoint_id)
        return runtime

    async def _deliver(self, item: ClaimedDelivery, not_before_ms: int | None) -> None:
        try:
            await self._deliver_one(item, not_before_ms)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or an unreadable endpoint must not strand the delivery: log it and hand it
            # back a little later (it stays visible as pending, and will be tried again).
            log.exception(
                "delivery %s to endpoint %s failed unexpectedly", item.delivery_id, item.endpoint_id
            )
            self._release_later(item.delivery_id, int(self.clock() * 1000) + 30_000)
            self._records_ready.set()

    async def _deliver_one(self, item: ClaimedDelivery, not_before_ms: int | None) -> None:
        runtime = self._loaded(item)  # without awaiting a coroutine on the hot path
        if runtime is None:
            try:
                runtime = await self._runtime(item)
            except StorageUnavailable:
                self._release_later(item.delivery_id, int(self.clock() * 1000) + 1000)
                self._records_ready.set()
                return
            if runtime is None:
                return  # endpoint deleted: its deliveries were dead-lettered with it
        if not_before_ms is not None:
            wait = not_before_ms / 1000 - self.clock()
            if wait > self.settings.release_wait_over_s:
                # Do not hold a lease (and an in-flight slot) through a long pause.
                self._release_later(item.delivery_id, not_before_ms)
                self._records_ready.set()
                return
            if wait > 0:
                await asyncio.sleep(wait)
            await self._keep_spacing(runtime)
        paused_until = runtime.pacing.paused_until_ms
        if paused_until and paused_until > self.clock() * 1000:
            # Paused since this delivery was taken (a 429's Retry-After, the breaker): it waits
            # in the store, not in a slot, and keeps its attempt.
            self._release_later(item.delivery_id, paused_until)
            return
        await self._attempt(item, runtime)

    async def _keep_spacing(self, runtime: EndpointRuntime) -> None:
        """Keep this process's paced sends to an endpoint at least 1/rate apart.

        Why: the shared pacing state hands out send times 1/rate apart, but a process that
        stalls (a long garbage collection, CPU starvation) wakes every send whose time has
        passed at once, and they would leave back to back: a burst over the endpoint's limit.
        Spacing them here costs no write; the sends that were held back go out late, at the
        rate, never faster.
        """
        rate = runtime.pacing.rate(runtime.configured_rate)
        if rate is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, runtime.next_paced_send_s)
        runtime.next_paced_send_s = at + 1.0 / rate
        if at > now:
            await asyncio.sleep(at - now)

    async def _attempt(self, item: ClaimedDelivery, runtime: EndpointRuntime) -> None:
        now = self.clock()
        now_ms = int(now * 1000)
        timestamp = int(now)
        headers = dict(runtime.headers)
        headers["webhook-id"] = item.message_id
        headers["webhook-timestamp"] = str(timestamp)
        if runtime.endpoint.signature_scheme == "sinch":
            secret = runtime.newest_secret(now_ms)
            if secret is not None:
                # From the OS's CSPRNG: a receiver may rely on nonces nobody can predict.
                nonce = make_id("nonce", now_ms, os.urandom(10))[6:]
                headers[signing.SINCH_NONCE] = nonce
                headers[signing.SINCH_TIMESTAMP] = str(timestamp)
                headers[signing.SINCH_ALGORITHM] = signing.SINCH_ALGORITHM_NAME
                headers[signing.SINCH_SIGNATURE] = signing.sinch_signature(
                    secret, item.payload, nonce, timestamp
                )
        else:
            keys = runtime.signing_keys(now_ms)
            if keys:
                headers["webhook-signature"] = signing.signature_header(
                    keys, item.message_id, timestamp, item.payload
                )
        request = OutboundRequest(
            url=runtime.endpoint.url,
            headers=headers,
            body=item.payload,
            timeout_s=runtime.timeout_s,
            endpoint_id=item.endpoint_id,
            message_id=item.message_id,
            event_type=item.event_type,
            ssl_context=runtime.ssl_context,
            sns=runtime.endpoint.destination,
        )
        runtime.meter.sent(now_ms)
        result = await self._send(request, runtime)
        self._note_timeouts(runtime, result)
        finished = self.clock()
        finished_ms = int(finished * 1000)
        attempt_number = item.attempt_count + 1
        settlement = settle(
            result,
            runtime.policy,
            attempt_number - item.schedule_base,
            finished_ms,
            self._random.random(),
        )
        pause_ms = None
        if runtime.streak is not CLOSED or settlement.outcome is not Outcome.DELIVERED:
            runtime.streak, pause_ms = after_attempt(
                runtime.streak, settlement.outcome, now_ms, finished_ms, self.settings.breaker
            )
        if pause_ms is not None:
            await self._open_breaker(runtime, pause_ms, finished_ms)
        elif settlement.outcome is Outcome.THROTTLED or runtime.pacing.ceiling is not None:
            await self._update_pacing(runtime, settlement.outcome, result, finished_ms)
        self.metrics.attempt(settlement.outcome.value, result.duration_ms)
        self.health.observe(item, settlement, result, finished_ms)
        self._buffered.add(item.delivery_id)
        self._records.append(
            AttemptRecord(
                attempt=Attempt(
                    id=self._attempt_ids.next_from(now_ms, self._random.randbytes),
                    delivery_id=item.delivery_id,
                    attempt_number=attempt_number,
                    started_at=now_ms,
                    duration_ms=round(result.duration_ms, 3),
                    outcome=settlement.outcome.value,
                    status_code=result.status_code,
                    error=storable_text(result.error),
                    response_body=storable_text(result.response_body),
                ),
                delivery_id=item.delivery_id,
                state=settlement.state,
                next_attempt_at=settlement.next_attempt_at,
                dead_reason=settlement.dead_reason,
                now=finished_ms,
            )
        )
        self._records_ready.set()
        if settlement.state is DeliveryState.DELIVERED:
            self.metrics.delivered(item.message_created_at, finished_ms, item.event_type)
        elif settlement.state is DeliveryState.ABORTED:
            self.metrics.aborted()
        elif settlement.state is DeliveryState.DEAD:
            self._alert_dead(item, settlement.dead_reason or "", result)

    async def _send(self, request: OutboundRequest, runtime: EndpointRuntime) -> AttemptResult:
        """Send with the endpoint's credentials; a 401 to a refreshable credential (OAuth)
        gets new credentials and one immediate second try (the token may just have been
        revoked or expired early)."""
        transport = self.sns_transport if request.sns is not None else self.transport
        if transport is None:
            return AttemptResult(
                status_code=None, failure=FailureKind.NETWORK, error="no SNS transport configured"
            )
        authorizer = runtime.authorizer
        for _ in range(2):
            try:
                value = await authorizer.authorization()
            except AuthError as exc:
                return AttemptResult(status_code=None, failure=FailureKind.NETWORK, error=str(exc))
            if value is not None:
                request.headers["authorization"] = value
            result = await transport.send(request)
            if result.status_code != 401 or value is None or not authorizer.refreshable:
                return result
            authorizer.invalidate(value)
        return result

    async def _update_pacing(
        self, runtime: EndpointRuntime, outcome: Outcome, result: AttemptResult, now_ms: int
    ) -> None:
        """Share a 429 with the fleet at once; share recovery at most once a second."""
        rate = runtime.configured_rate
        endpoint_id = runtime.endpoint.id
        try:
            if outcome is Outcome.THROTTLED:
                observed = runtime.meter.rate(now_ms)
                runtime.pacing = await self.storage.pace(
                    endpoint_id,
                    lambda p: _same(throttled(p, now_ms, result.retry_after_s, observed, rate)),
                )
            elif (
                outcome is Outcome.DELIVERED
                and runtime.pacing.ceiling is not None
                and recovered(runtime.pacing, now_ms, rate) != runtime.pacing
            ):
                runtime.pacing = await self.storage.pace(
                    endpoint_id, lambda p: _same(recovered(p, now_ms, rate))
                )
        except StorageUnavailable:
            log.warning(
                "could not share pacing for endpoint %s (database unavailable)", endpoint_id
            )

    async def _open_breaker(self, runtime: EndpointRuntime, pause_ms: int, now_ms: int) -> None:
        """Pause an endpoint that fails everything, for the whole fleet, then probe it at one
        request a second (``core.breaker``); what this process holds ready for it goes back."""
        endpoint_id = runtime.endpoint.id
        observed = runtime.meter.rate(now_ms)
        rate = runtime.configured_rate

        def open_(pacing: Pacing) -> Pacing:
            return broken(pacing, now_ms, pause_ms, observed, rate)

        # Here first, before the write is awaited: meanwhile a freed slot would start what is
        # ready for the endpoint, and that attempt's failure would read as a failed probe.
        runtime.pacing = open_(runtime.pacing)
        self._hand_back_ready(endpoint_id, keep=0)
        self.metrics.endpoint_change("breaker_open")
        failures = runtime.streak.failures
        try:
            runtime.pacing = await self.storage.pace(endpoint_id, lambda p: _same(open_(p)))
        except StorageUnavailable:
            log.warning(
                "could not share a pause of endpoint %s (database unavailable)", endpoint_id
            )
        log.info(
            "endpoint %s failed %d attempts in a row: paused for %.0f s, then sent one request "
            "a second until it answers",
            endpoint_id,
            failures,
            pause_ms / 1000,
            extra={"event": "endpoint_breaker_open", "endpoint_id": endpoint_id},
        )

    def _alert_dead(self, item: ClaimedDelivery, reason: str, result: AttemptResult) -> None:
        self.metrics.dead(item.event_type)
        alerts.error(
            "delivery dead: %s",
            reason,
            extra={
                "event": "delivery_dead",
                "account_id": item.account_id,
                "endpoint_id": item.endpoint_id,
                "message_id": item.message_id,
                "delivery_id": item.delivery_id,
                "reason": reason,
                "status_code": result.status_code,
            },
        )

    # -- recording ----------------------------------------------------------------------------

    def _release_later(self, delivery_id: str, due_at: int) -> None:
        self._buffered.add(delivery_id)
        self._releases.append((delivery_id, due_at))
        self._records_ready.set()

    def own_in_flight(self) -> dict[str, int]:
        """Per endpoint, the deliveries the store counts as in flight that are this process's."""
        return dict(self._unsettled_by_endpoint)

    def _sending(self, own: Mapping[str, int]) -> dict[str, int]:
        """Of ``own``, per endpoint, what is in flight or ready here: the rest are finished
        attempts waiting for a record flush, which hold no slot at the endpoint
        (``core.fanout.fleet_room``)."""
        return {endpoint_id: self._holding(endpoint_id) for endpoint_id in own}

    def _settled(self, delivery_id: str) -> None:
        """Its outcome is written (or none will be): the store no longer counts it here."""
        endpoint_id = self._unsettled.pop(delivery_id, None)
        if endpoint_id is not None:
            counts = self._unsettled_by_endpoint
            left = counts[endpoint_id] - 1
            if left:
                counts[endpoint_id] = left
            else:
                del counts[endpoint_id]

    async def _flush_loop(self) -> None:
        try:
            await self._flush_records()
        finally:
            if self._health_timer is not None:
                self._health_timer.cancel()
                self._health_timer = None
        await self._flush_health(force=True)

    async def _flush_records(self) -> None:
        while not (self._drained and not self._records and not self._releases):
            await self._records_ready.wait()
            if not self._stopping and len(self._records) < self.settings.record_batch:
                await asyncio.sleep(self.settings.record_linger_s)
            self._records_ready.clear()
            retry_in_s = 0.0
            try:
                await self._flush_once()
            except StorageUnavailable as exc:
                if isinstance(exc, StorageFull):
                    STORAGE_FULL.occurred(str(exc))
                else:
                    log.warning("could not record attempts yet (%s); retrying", exc)
                retry_in_s = 0.5
            except Exception:
                log.exception("recording attempts failed; retrying")
                retry_in_s = 1.0
            if retry_in_s:  # awaited outside the handlers (see _claim_loop)
                await asyncio.sleep(retry_in_s)
                self._records_ready.set()

    async def _flush_once(self) -> None:
        records, self._records = self._records, []
        releases, self._releases = self._releases, []
        try:
            if records:
                refused: StorageError | None = None
                try:
                    await self.storage.record(records)
                except StorageUnavailable:
                    raise
                except StorageError as exc:
                    refused = exc
                if refused is not None:
                    # Refused, not unavailable: retrying the same batch would fail forever and
                    # hold up every attempt in it. Find the rows the store refuses.
                    await self._record_apart(records, refused)
            for due_at in sorted({due for _, due in releases}):
                await self.storage.release([d for d, due in releases if due == due_at], due_at)
        except BaseException:
            self._records = records + self._records
            self._releases = releases + self._releases
            raise
        for delivery_id in [r.delivery_id for r in records] + [d for d, _ in releases]:
            self._buffered.discard(delivery_id)
            self._settled(delivery_id)
        self.metrics.fold()
        await self._flush_health(force=self._stopping)

    async def _flush_health(self, *, force: bool) -> None:
        later_s = await self.health.flush(force=force)
        if later_s is not None and self._health_timer is None:
            self._health_timer = asyncio.get_running_loop().call_later(later_s, self._health_due)

    def _health_due(self) -> None:
        """Held-back health is due: wake the flusher, records or not."""
        self._health_timer = None
        self._records_ready.set()

    async def _record_apart(self, records: list[AttemptRecord], refusal: StorageError) -> None:
        """Record one by one a batch the store refused. A refused record is tried once more
        without the receiver's text (the likeliest cause); if that is refused too it is
        logged and dropped: the delivery keeps its lease and is sent again when it expires
        (at least once, never lost). ``StorageUnavailable`` still propagates: the whole batch
        is put back, and what was written meanwhile is written once (the statements ignore
        an attempt already stored and settle only a delivery still in flight)."""
        log.warning(
            "the store refused a batch of %d attempt records (%s); recording them one by one",
            len(records),
            type(refusal).__name__,
        )
        for rec in records:
            plain = msgspec.structs.replace(
                rec,
                attempt=msgspec.structs.replace(
                    rec.attempt,
                    response_body=None,
                    error="the attempt's result could not be stored",
                ),
            )
            for candidate in (rec, plain):
                try:
                    await self.storage.record([candidate])
                    break
                except StorageUnavailable:
                    raise
                except StorageError as exc:
                    refusal = exc
            else:
                log.error(
                    "the store refused the attempt record of delivery %s (%s); it will be sent "
                    "again when its lease ends",
                    rec.delivery_id,
                    type(refusal).__name__,
                )

    async def _drain(self) -> None:
        """Let in-flight attempts finish; hand back whatever has not finished in time, and
        what was ready but not started."""
        now_ms = int(self.clock() * 1000)
        for ready in self._ready.values():
            for waiting in ready:
                self._release_later(waiting.item.delivery_id, now_ms)
        self._ready.clear()
        self._ready_count = 0
        if not self._held:
            return
        tasks = list(self._held.values())
        ids = list(self._held)
        _done, not_done = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout_s)
        if not_done:
            for task in not_done:
                task.cancel()
            await asyncio.wait(not_done)
            unfinished = [d for d, t in zip(ids, tasks, strict=True) if t in not_done]
            now_ms = int(self.clock() * 1000)
            for delivery_id in unfinished:
                self._release_later(delivery_id, now_ms)


@dataclass(slots=True)
class _Ready:
    """A leased delivery waiting in memory for a slot of its endpoint."""

    item: ClaimedDelivery
    not_before_ms: int | None
    since: float


def _no_session() -> aiohttp.ClientSession:
    raise AuthError("no HTTP session for fetching credentials")


def _reserved(result: tuple[Pacing, list[int]]) -> tuple[Pacing, tuple[Pacing, list[int]]]:
    """Store the new pacing state; hand back both it and the slots."""
    return result[0], result


def _same(pacing: Pacing) -> tuple[Pacing, Pacing]:
    return pacing, pacing
