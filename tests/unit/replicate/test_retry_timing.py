"""Backoff, Retry-After and the create gate, with the clock and the waits injected (nothing sleeps)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from cloudtuner.core.errors import ProviderRejectedError, ProviderUnavailableError
from cloudtuner.providers.replicate import CreateThrottle, RetryPolicy
from cloudtuner.providers.replicate.client import OUTCOME_UNKNOWN, CreateGate, ReplicateHTTP, retry_after_seconds

from .timing import FakeTime

# --- pure computations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_number", "jitter", "expected"),
    [(0, 0.0, 0.25), (0, 1.0, 0.5), (1, 0.5, 0.75), (2, 0.0, 1.0), (3, 0.5, 3.0), (4, 1.0, 4.0), (500, 0.0, 2.0)],
)
def test_backoff_doubles_up_to_a_ceiling_with_jitter_in_its_upper_half(
    retry_number: int, jitter: float, expected: float
) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert policy.backoff(retry_number, jitter) == pytest.approx(expected)


def test_jitter_outside_its_range_is_clamped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    assert policy.backoff(0, -3.0) == pytest.approx(0.5)
    assert policy.backoff(0, 7.0) == pytest.approx(1.0)


def test_a_retry_after_is_waited_for_plus_a_little_jitter_never_less() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, retry_after_jitter=0.1)
    assert policy.wait(0, 7.0, 0.0) == pytest.approx(7.0)
    assert policy.wait(0, 7.0, 1.0) == pytest.approx(7.7)
    assert policy.wait(3, 0.0, 1.0) == 0.0
    # Without a hint, the backoff applies.
    assert policy.wait(2, None, 0.0) == pytest.approx(1.0)


def test_create_throttle_caps_retry_after_and_grows_without_it() -> None:
    throttle = CreateThrottle(max_wait_seconds=60.0, base_delay=1.0, max_delay=30.0, retry_after_jitter=0.1)
    assert throttle.delay(1, 5.0, 0.0) == pytest.approx(5.0)
    assert throttle.delay(1, 5.0, 1.0) == pytest.approx(5.5)
    assert throttle.delay(1, 3600.0, 0.0) == 60.0  # the cap
    assert [throttle.delay(n, None, 1.0) for n in (1, 2, 3, 6, 9)] == pytest.approx([1.0, 2.0, 4.0, 30.0, 30.0])
    assert throttle.delay(1, None, 0.0) == pytest.approx(0.5)


def test_retry_after_forms_and_nonsense() -> None:
    now = FakeTime().now()
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds(" 12 ") == 12.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == 90.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=90), usegmt=True), now=now) == 0.0
    for nonsense in ("-1", "nan", "inf", "", "Tuesday", "Mon, 99 Foo 2026 99:99:99 GMT"):
        assert retry_after_seconds(nonsense, now=now) is None


async def test_create_gate_holds_calls_back_for_the_delay_it_was_given() -> None:
    clock = FakeTime(jitter=0.0)
    gate = CreateGate(CreateThrottle(max_wait_seconds=60.0), clock.timing)
    assert await gate.wait() == 0.0
    assert gate.refused(10.0) == 10.0
    clock.advance(4.0)
    assert gate.remaining() == pytest.approx(6.0)
    assert await gate.wait() == pytest.approx(6.0)
    assert clock.sleeps == [pytest.approx(6.0)]
    assert await gate.wait() == 0.0  # open again
    # 429s in a row without Retry-After back off further; an accepted create starts over.
    assert [gate.refused(None) for _ in range(3)] == pytest.approx([1.0, 2.0, 4.0])
    gate.accepted()
    assert gate.refused(None) == pytest.approx(0.5)
    # A later, shorter delay never shortens a longer one already imposed.
    gate.refused(30.0)
    gate.refused(1.0)
    assert gate.remaining() == pytest.approx(30.0)


# --- the HTTP layer, on a scripted transport ----------------------------------------------------------

Responder = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests from a list of replies, recording each request with the fake time it came."""

    def __init__(self, clock: FakeTime, *replies: httpx.Response | Responder) -> None:
        self.clock = clock
        self.replies = list(replies)
        self.seen: list[tuple[str, str, float]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, self.clock.monotonic()))
        reply = self.replies.pop(0)
        return reply if isinstance(reply, httpx.Response) else reply(request)


def reply(status: int, retry_after: str | None = None, body: object | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    payload = body if body is not None else ({"id": "p1"} if status < 400 else {"detail": f"status {status}"})
    return httpx.Response(status, json=payload, headers=headers)


async def token() -> str:
    return "r8_unit"


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(jitter=0.5)


@pytest.fixture
async def make_http(clock: FakeTime) -> AsyncIterator[Callable[..., tuple[ReplicateHTTP, Script]]]:
    made: list[ReplicateHTTP] = []

    def build(*replies: httpx.Response | Responder, **kwargs: object) -> tuple[ReplicateHTTP, Script]:
        script = Script(clock, *replies)
        http = ReplicateHTTP(
            "http://replicate.invalid/v1",
            token,
            transport=httpx.MockTransport(script),
            timing=clock.timing,
            **kwargs,  # type: ignore[arg-type]
        )
        made.append(http)
        return http, script

    yield build
    for http in made:
        await http.aclose()


async def test_reads_wait_for_retry_after_given_as_seconds_or_as_a_date(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], clock: FakeTime
) -> None:
    when = format_datetime(clock.now() + timedelta(seconds=10), usegmt=True)
    http, script = make_http(reply(429, "2"), reply(503, when), reply(200), retry=RetryPolicy(budget_seconds=30.0))
    assert await http.get_json("predictions/p1", action="read") == {"id": "p1"}
    # 2 s plus 5 % jitter (half of the 10 % allowed); then until the date (7.9 s later) plus 5 %.
    assert clock.sleeps == pytest.approx([2.1, 7.9 * 1.05])
    assert [at - script.seen[0][2] for _m, _p, at in script.seen] == pytest.approx([0.0, 2.1, 2.1 + 7.9 * 1.05])


async def test_reads_without_retry_after_back_off(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], clock: FakeTime
) -> None:
    http, _script = make_http(reply(500), reply(502), reply(504), reply(200), retry=RetryPolicy(attempts=4))
    await http.get_json("account", action="read")
    assert clock.sleeps == pytest.approx([0.375, 0.75, 1.5])


async def test_a_wait_past_the_budget_is_not_taken(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], clock: FakeTime
) -> None:
    http, script = make_http(reply(429, "30"), reply(200), retry=RetryPolicy(budget_seconds=10.0))
    with pytest.raises(ProviderUnavailableError, match="asked to wait 30 s"):
        await http.get_json("account", action="read")
    assert clock.sleeps == []
    assert len(script.seen) == 1


async def test_reads_stop_after_the_attempts(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], clock: FakeTime
) -> None:
    http, script = make_http(*(reply(503) for _ in range(3)), retry=RetryPolicy(attempts=3))
    with pytest.raises(ProviderUnavailableError, match="HTTP 503"):
        await http.get_json("account", action="read")
    assert len(script.seen) == 3
    assert len(clock.sleeps) == 2


async def test_a_throttled_create_is_sent_once_and_the_next_create_waits_for_retry_after(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], clock: FakeTime
) -> None:
    http, script = make_http(reply(429, "8"), reply(201), reply(201))
    with pytest.raises(ProviderUnavailableError, match=r"Nothing was created; the next create call waits 8\.4 s"):
        await http.request("POST", "predictions", retry=False, creates=True, json_body={}, action="create")
    assert len(script.seen) == 1 and clock.sleeps == []
    # Reads are not held back by the create gate ...
    clock.advance(3.0)
    await http.request("GET", "predictions", retry=True, action="list")
    assert clock.sleeps == []
    # ... the next create is, for the rest of Retry-After (with its jitter).
    await http.request("POST", "predictions", retry=False, creates=True, json_body={}, action="create")
    assert clock.sleeps == pytest.approx([5.4])
    assert script.seen[2][2] - script.seen[0][2] == pytest.approx(8.4)
    assert http.create_gate.strikes == 0


async def test_a_create_retry_after_is_capped(make_http: Callable[..., tuple[ReplicateHTTP, Script]]) -> None:
    http, _script = make_http(reply(429, "86400"), create_throttle=CreateThrottle(max_wait_seconds=45.0))
    with pytest.raises(ProviderUnavailableError, match="waits 45 s"):
        await http.request("POST", "predictions", retry=False, creates=True, json_body={}, action="create")
    assert http.create_gate.remaining() == 45.0


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_a_create_that_failed_otherwise_does_not_close_the_gate(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], status: int
) -> None:
    http, script = make_http(reply(status, "5"))
    with pytest.raises(ProviderUnavailableError):
        await http.request("POST", "predictions", retry=False, creates=True, json_body={}, action="create")
    assert len(script.seen) == 1
    assert http.create_gate.remaining() == 0.0


async def test_a_create_is_never_retried(make_http: Callable[..., tuple[ReplicateHTTP, Script]]) -> None:
    http, _script = make_http()
    with pytest.raises(ValueError, match="never retried"):
        await http.request("POST", "predictions", retry=True, creates=True, action="create")


async def test_a_proxy_asking_for_credentials_is_not_replicate_refusing(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]],
) -> None:
    http, script = make_http(httpx.Response(407, text="Proxy Authentication Required"))
    with pytest.raises(ProviderUnavailableError, match=r"proxy .* asks for credentials \(HTTP 407\)"):
        await http.get_json("account", action="read")
    assert len(script.seen) == 1


async def test_other_refusals_are_not_retried(make_http: Callable[..., tuple[ReplicateHTTP, Script]]) -> None:
    http, script = make_http(reply(422, body={"detail": "input.images is required"}))
    with pytest.raises(ProviderRejectedError, match="images is required"):
        await http.get_json("account", action="read")
    assert len(script.seen) == 1


def raising(exc: type[httpx.RequestError]) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)

    return respond


@pytest.mark.parametrize(
    ("failure", "unknown"),
    [
        (httpx.ReadTimeout, True),
        (httpx.RemoteProtocolError, True),
        (httpx.ReadError, True),
        (httpx.WriteTimeout, True),
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.ProxyError, False),
    ],
)
async def test_a_create_without_a_reply_is_marked_as_an_unknown_outcome(
    make_http: Callable[..., tuple[ReplicateHTTP, Script]], failure: type[httpx.RequestError], unknown: bool
) -> None:
    http, script = make_http(raising(failure))
    with pytest.raises(ProviderUnavailableError) as caught:
        await http.request("POST", "predictions", retry=False, creates=True, json_body={}, action="create")
    assert (caught.value.context.get("create_outcome") == OUTCOME_UNKNOWN) is unknown
    assert len(script.seen) == 1
    assert http.create_gate.remaining() == 0.0
