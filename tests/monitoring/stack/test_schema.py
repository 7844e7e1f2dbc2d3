"""The scalar types of stack.yaml: durations, secret detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from monitoring.stack.schema import Listen, looks_like_secret, parse_duration, prom_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("800ms", 0.8), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("15d", 1296000), (90, 90),
    (0.5, 0.5), ("2w", 1209600),
])
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5 minutes", "m5", "-5s", "0s", 0, -1, True, None, [1]])
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(PydanticCustomError):
        parse_duration(bad)


@given(st.integers(min_value=1, max_value=10**9))
def test_prom_duration_round_trips(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(prom_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [
    "gsk_" + "a1B2" * 12, "sk-proj-" + "x" * 40, "sk-or-v1-" + "0f" * 32, "AIzaSyD" + "k" * 32,
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
])
def test_key_shapes_look_like_secrets(value: str) -> None:
    assert looks_like_secret(value)


@pytest.mark.parametrize("value", ["GROQ_API_KEY", "LITELLM_MASTER_KEY", "x", "short value"])
def test_names_do_not_look_like_secrets(value: str) -> None:
    assert not looks_like_secret(value)


@pytest.mark.parametrize(("host", "bind", "url"), [
    ("127.0.0.1", "127.0.0.1:4000", "http://127.0.0.1:4000"),
    ("0.0.0.0", "0.0.0.0:4000", "http://127.0.0.1:4000"),  # noqa: S104 (a bind address)
    ("::", "[::]:4000", "http://[::1]:4000"),
    ("::1", "[::1]:4000", "http://[::1]:4000"),
])
def test_a_wildcard_bind_is_reached_on_loopback(host: str, bind: str, url: str) -> None:
    listen = Listen(host=host, port=4000)
    assert listen.bind == bind
    assert listen.url == url
