"""Each format edits owned values in the user's text and nothing else: a switch followed by a
restore gives back the byte-identical file, with comments, CRLF and a BOM-less UTF-8 body."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.agents import dotenv, jsonc
from monitoring.agents.formats import Dotenv, FormatError, Item, Jsonc, Toml, Yaml

_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                          blacklist_categories=("Cc", "Cs"),
                                          blacklist_characters="\\\"'#"),
                  min_size=1, max_size=12).map(str.strip).filter(bool)
_newline = st.sampled_from(["\n", "\r\n"])


def _jsonc_file(nl: str, user: str) -> str:
    return nl.join(["{", "  // the user's comment", f'  "theme": {json.dumps(user)},',
                    '  "autoApprove": ["read", /* inline */ "write"],',
                    '  "model": "pf-litellm/groq-70b", // trailing', "}", ""])


@settings(max_examples=60, deadline=None)
@given(_newline, _values, _values)
def test_jsonc_switch_and_restore_is_byte_identical(nl: str, user: str, other: str) -> None:
    fmt = Jsonc()
    before = _jsonc_file(nl, user)
    switched = fmt.set(before, ("model",), other)
    assert fmt.get(switched, ("model",)) == other
    assert "// the user's comment" in switched
    assert "/* inline */" in switched
    assert fmt.set(switched, ("model",), "pf-litellm/groq-70b") == before


@settings(max_examples=60, deadline=None)
@given(_newline, _values, st.dictionaries(_values, _values, min_size=1, max_size=3))
def test_jsonc_inserted_subtree_is_removed_exactly(nl: str, user: str,
                                                   entry: dict[str, str]) -> None:
    fmt = Jsonc()
    before = _jsonc_file(nl, user)
    added = fmt.set(before, ("provider", "pf-x"), entry)
    assert fmt.get(added, ("provider", "pf-x")) == entry
    assert "\r\n" not in added if nl == "\n" else "\n" not in added.replace("\r\n", "")
    assert fmt.delete(added, ("provider",)) == before


def test_strict_json_refuses_a_comment() -> None:
    with pytest.raises(FormatError, match="comment"):
        Jsonc(comments=False).check('{"a": 1 // no\n}')
    with pytest.raises(FormatError, match="line 1 column"):
        Jsonc().check("{ not json")
    with pytest.raises(FormatError, match="second time"):
        Jsonc().check('{"a": 1, "a": 2}')


@settings(max_examples=60, deadline=None)
@given(_newline, _values, _values)
def test_dotenv_off_and_on_again_is_byte_identical(nl: str, url: str, key: str) -> None:
    fmt = Dotenv()
    before = nl.join(["# mine", f"export GOOGLE_GEMINI_BASE_URL=\"{url}\"  # c",
                      f"GEMINI_API_KEY='{key}'", "OTHER=1", ""])
    off = fmt.unset(before, ("GOOGLE_GEMINI_BASE_URL",))
    assert fmt.get(off, ("GOOGLE_GEMINI_BASE_URL",)) is jsonc.MISSING
    assert fmt.set(off, ("GOOGLE_GEMINI_BASE_URL",), url) == before
    other = fmt.set(before, ("GEMINI_API_KEY",), "x-" + key)
    assert fmt.set(other, ("GEMINI_API_KEY",), key) == before
    assert dotenv.OFF not in fmt.set(off, ("GOOGLE_GEMINI_BASE_URL",), "http://p")


@settings(max_examples=60, deadline=None)
@given(_newline, _values, _values, st.booleans())
def test_toml_switch_and_restore_is_byte_identical(nl: str, model: str, other: str,
                                                   literal: bool) -> None:
    fmt = Toml()
    quoted = f"'{model}'" if literal else f'"{model}"'
    before = nl.join(["# codex", f"model = {quoted}  # mine", 'model_provider = "pf-litellm"',
                      "", "[model_providers.pf-litellm]", 'base_url = "http://127.0.0.1:4000/v1"',
                      'wire_api = "responses"', ""])
    switched = fmt.set(fmt.set(before, ("model",), other), ("model_provider",), "pf-groq")
    assert fmt.get(switched, ("model",)) == other
    back = fmt.set(fmt.set(switched, ("model",), model), ("model_provider",), "pf-litellm")
    assert back == before


@settings(max_examples=60, deadline=None)
@given(_newline, st.from_regex(r"[a-z]([a-z0-9/._:-]{0,20}[a-z0-9])?", fullmatch=True),
       st.sampled_from(["", "'", '"']))
def test_yaml_switch_and_restore_is_byte_identical(nl: str, other: str, quote: str) -> None:
    fmt = Yaml()
    before = nl.join(["# aider", f"model: {quote}openai/groq-70b{quote}  # mine",
                      "openai-api-base: http://127.0.0.1:4000/v1", "dark-mode: true",
                      "models:", "  - name: provider-fallback", "    model: m1", ""])
    switched = fmt.set(before, ("model",), other)
    assert fmt.get(switched, ("model",)) == other
    entry = ("models", Item("name", "provider-fallback"), "model")
    switched = fmt.set(switched, entry, other)
    assert fmt.get(switched, entry) == other
    assert fmt.set(fmt.set(switched, entry, "m1"), ("model",), "openai/groq-70b") == before
