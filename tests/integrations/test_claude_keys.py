"""The key -> session id mapping: injective, reversible, and every id passes sessiondb's validator."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sessiondb._ids import validate_session_id
from sessiondb.integrations._claude_keys import (
    decode_session_id,
    encode_key,
    generation_id,
    project_part,
    project_prefix,
)

_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x85\u2028\u2029/\\")
part = st.text(_CHARS, min_size=1, max_size=12).filter(lambda p: p not in (".", ".."))
subpath = st.lists(part, min_size=1, max_size=3).map("/".join)
keys = st.builds(
    lambda p, s, sub: {"project_key": p, "session_id": s, **({"subpath": sub} if sub is not None else {})},
    part | st.sampled_from(["~", "%", "%7E", "~~2", "a~b"]),
    part | st.sampled_from(["~", "%25", "x~~3"]),
    st.none() | subpath | st.sampled_from(["subagents/agent-1", "a~~2", "~/~"]),
)


@given(keys, st.integers(1, 10_000))
def test_every_key_round_trips_through_a_valid_id(key: dict[str, Any], generation: int) -> None:
    encoded = generation_id(encode_key(key), generation)
    assert validate_session_id(encoded) == encoded
    decoded = decode_session_id(encoded)
    assert decoded is not None
    assert (decoded.project_key, decoded.session_id, decoded.subpath) == (
        key["project_key"],
        key["session_id"],
        key.get("subpath"),
    )
    assert decoded.generation == generation
    assert encoded.startswith(project_prefix(key["project_key"]))


@given(keys, keys)
def test_different_keys_get_different_ids(a: dict[str, Any], b: dict[str, Any]) -> None:
    if a != b:
        assert encode_key(a) != encode_key(b)


def test_ids_of_other_writers_are_not_keys() -> None:
    for other in ["session-1-2", "cc~only", "cc~a~b~c~d", "cc~~x", "cc~a~~b"]:
        assert decode_session_id(other) is None


def test_the_sdks_longest_project_keys_fit_with_a_uuid_session() -> None:
    from claude_agent_sdk import project_key_for_directory

    project_key = project_key_for_directory("/" + "deep/" * 100 + "app")  # truncated to 200 + a hash
    assert len(project_key) > 200
    encoded = encode_key({"project_key": project_key, "session_id": "4f1c2a3b-0000-4000-8000-123456789abc"})
    assert validate_session_id(generation_id(encoded, 9_999))
    # Long project keys are hashed in ids; listing still finds the project's sessions by its key.
    assert project_part(project_key).startswith("%h") and encoded.startswith(project_prefix(project_key))
