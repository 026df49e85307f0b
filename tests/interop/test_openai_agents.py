"""SessionDBSession with the real OpenAI Agents SDK: Runner over a scripted offline model,
resume from a reopened store, and the SDK's own SQLiteSession as the behavioural reference."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

agents = pytest.importorskip("agents")

from agents import Agent, ModelResponse, RunConfig, Runner, SQLiteSession, Usage, function_tool  # noqa: E402
from agents.memory import Session  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText  # noqa: E402

import sessiondb  # noqa: E402
from sessiondb import Custom  # noqa: E402
from sessiondb.integrations.openai_agents import CLEAR, ITEMS, POP, SessionDBSession  # noqa: E402

agents.set_tracing_disabled(True)
pytestmark = pytest.mark.anyio
RUN_CONFIG = RunConfig(tracing_disabled=True)


def say(text: str, n: int) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=f"msg_{n}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
    )


def call(name: str, arguments: str, n: int) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        id=f"fc_{n}", call_id=f"call_{n}", type="function_call", name=name, arguments=arguments
    )


class ScriptedModel(Model):
    """An offline model: returns the next scripted output and records every input it was sent."""

    def __init__(self, script: list[list[Any]]) -> None:
        self.script = list(script)
        self.inputs: list[Any] = []

    async def get_response(
        self,
        system_instructions: Any,
        input: Any,
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        self.inputs.append(copy.deepcopy(input))
        return ModelResponse(output=self.script.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the tests use Runner.run")


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def script() -> list[list[Any]]:
    return [
        [call("get_weather", '{"city":"Paris"}', 1)],
        [say("It is sunny in Paris.", 2)],
        [call("get_weather", '{"city":"Rome"}', 3)],
        [say("Rome is sunny too.", 4)],
        [say("You asked about Paris and Rome.", 5)],
    ]


async def run_conversation(session: Any, model: ScriptedModel, prompts: list[str]) -> list[str]:
    agent = Agent(name="weather", instructions="Answer briefly.", model=model, tools=[get_weather])
    outputs = []
    for prompt in prompts:
        result = await Runner.run(agent, prompt, session=session, run_config=RUN_CONFIG)
        outputs.append(result.final_output)
    return outputs


PROMPTS = ["Weather in Paris?", "And in Rome?"]


async def test_runner_conversation_with_tools_then_resume_from_reopened_store(tmp_path: Path) -> None:
    # The SDK's own SQLiteSession runs the same script: the reference for what the model must see.
    reference_model = ScriptedModel(script())
    reference = SQLiteSession("conv", tmp_path / "ref.sqlite")
    expected_outputs = await run_conversation(reference, reference_model, [*PROMPTS, "What did I ask?"])
    expected_items = await reference.get_items()
    reference.close()

    model = ScriptedModel(script()[:4])
    async with sessiondb.open_store(tmp_path / "store") as store:
        session = SessionDBSession("conv", store)
        assert isinstance(session, Session)
        outputs = await run_conversation(session, model, PROMPTS)
        assert outputs == expected_outputs[:2]
        # Turn two was sent turn one's whole history: user, tool call, tool output, answer.
        assert model.inputs == reference_model.inputs[:4]
        assert len(model.inputs[2]) == 5
    # A new process would do exactly this: reopen the directory and carry on.
    async with sessiondb.open_store(tmp_path / "store") as store:
        resumed_model = ScriptedModel(script()[4:])
        session = SessionDBSession("conv", store)
        outputs = await run_conversation(session, resumed_model, ["What did I ask?"])
        assert outputs == expected_outputs[2:]
        assert resumed_model.inputs == reference_model.inputs[4:]
        assert await session.get_items() == expected_items
        # Every SDK write is an event in the log: auditable, and one append per add_items call.
        events = [e async for e in store.read("conv")]
        assert isinstance(events[0].event, sessiondb.SessionStarted)
        assert {type(e.event) for e in events[1:]} == {Custom}
        assert all(e.event.name == ITEMS for e in events[1:])


async def test_sdk_session_expectations_ordering_limit_pop_clear(store: sessiondb.Store) -> None:
    session = SessionDBSession("direct", store)
    assert await session.pop_item() is None
    assert await session.get_items() == []
    items = [{"role": "user", "content": f"Message {i}"} for i in range(1, 4)]
    items += [{"role": "assistant", "content": f"Response {i}"} for i in range(1, 4)]
    items = [items[0], items[3], items[1], items[4], items[2], items[5]]
    await session.add_items(items)
    assert await session.get_items() == items
    assert await session.get_items(limit=2) == items[-2:]
    assert await session.get_items(limit=4) == items[-4:]
    assert await session.get_items(limit=10) == items
    assert await session.get_items(limit=0) == []
    assert await session.pop_item() == items[-1]
    assert await session.get_items() == items[:-1]
    other = SessionDBSession("other", store)
    await other.add_items([{"role": "user", "content": "elsewhere"}])
    assert await session.get_items() == items[:-1]  # pops and adds stay in their own session
    await session.clear_session()
    assert await session.get_items() == []
    assert await other.get_items() == [{"role": "user", "content": "elsewhere"}]
    # Cleared and popped items are still in the log: time travel shows them.
    info = await store.session_info("direct")
    assert await session.items_at(info.version - 1) == items[:-1]
    names = [e.event.name async for e in store.read("direct") if isinstance(e.event, Custom)]
    assert names == [ITEMS, POP, CLEAR]


async def test_settings_limit_and_copies(store: sessiondb.Store) -> None:
    session = SessionDBSession("s", store, session_settings={"limit": 2})
    item = {"role": "user", "content": [{"type": "input_text", "text": "ünïcode \u2028 😀"}]}
    await session.add_items([item, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
    item["content"] = "mutated by the caller afterwards"
    got = await session.get_items()
    assert [i["content"] for i in got] == ["b", "c"]  # settings.limit applies
    got[0]["content"] = "mutated by the reader"
    assert (await session.get_items(limit=3))[0]["content"][0]["text"] == "ünïcode \u2028 😀"
    assert (await session.get_items(limit=3))[1]["content"] == "b"


async def test_get_items_is_served_from_the_projection_without_reading_the_log(store: sessiondb.Store) -> None:
    session = SessionDBSession("p", store)
    await session.add_items([{"role": "user", "content": "one"}])
    await session.get_items()  # builds the projection state once
    reads = 0
    original = store.backend.read_session

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(*args, **kwargs)

    store.backend.read_session = counting  # type: ignore[method-assign]
    for i in range(20):
        await session.add_items([{"role": "assistant", "content": str(i)}])
        assert len(await session.get_items()) == i + 2
    assert await session.pop_item() == {"role": "assistant", "content": "19"}
    assert reads == 0


async def test_many_sdk_sessions_share_one_store_and_its_group_commit(store: sessiondb.Store) -> None:
    import anyio

    sessions = [SessionDBSession(f"user-{i}", store) for i in range(200)]
    before = store.statistics()["batches"]

    async def turn(session: SessionDBSession) -> None:
        await session.add_items([{"role": "user", "content": session.session_id}])

    async with anyio.create_task_group() as group:
        for session in sessions:
            group.start_soon(turn, session)
    assert store.statistics()["batches"] - before < 200  # appends of many sessions shared fsyncs
    for session in sessions:
        assert await session.get_items() == [{"role": "user", "content": session.session_id}]


async def test_concurrent_pops_never_return_the_same_item(store: sessiondb.Store) -> None:
    import anyio

    session = SessionDBSession("q", store)
    await session.add_items([{"n": i} for i in range(30)])
    popped: list[Any] = []

    async def pop() -> None:
        popped.append(await session.pop_item())

    async with anyio.create_task_group() as group:
        for _ in range(40):
            group.start_soon(pop)
    assert sorted(p["n"] for p in popped if p is not None) == list(range(30))
    assert popped.count(None) == 10


async def test_fork_continues_a_conversation_on_a_branch(store: sessiondb.Store) -> None:
    main = SessionDBSession("main", store)
    await main.add_items([{"role": "user", "content": "shared"}])
    child_id = await store.fork("main", branch_name="try-b")
    child = SessionDBSession(child_id, store)
    await child.add_items([{"role": "user", "content": "only on the branch"}])
    assert await main.get_items() == [{"role": "user", "content": "shared"}]
    assert [i["content"] for i in await child.get_items()] == ["shared", "only on the branch"]


async def test_large_add_items_is_split_into_events_of_one_append(store: sessiondb.Store) -> None:
    session = SessionDBSession("big", store)
    await session.add_items([{"n": -1}])
    items = [{"role": "tool", "output": "x" * 1_000_000, "n": i} for i in range(12)]
    batches: list[int] = []
    store.add_batch_listener(lambda batch: batches.append(len(batch)))
    await session.add_items(items)
    assert batches == [1]
    assert [i["n"] for i in await session.get_items()] == list(range(-1, 12))
    assert (await store.session_info("big")).version > 3  # several events, one atomic append


def test_import_sessiondb_does_not_import_the_sdk() -> None:
    code = "import sys, sessiondb, sessiondb.integrations; assert 'agents' not in sys.modules, 'agents imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- differential: SQLiteSession is the reference

item = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=8)})
operation = st.one_of(
    st.tuples(st.just("add"), st.lists(item, max_size=4)),
    st.tuples(st.just("get"), st.none() | st.integers(-2, 6)),
    st.tuples(st.just("pop"), st.none()),
    st.tuples(st.just("clear"), st.none()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=25))
def test_behaves_like_sqlite_session(operations: list[tuple[str, Any]]) -> None:
    import anyio

    anyio.run(_differential, operations)


async def _differential(operations: list[tuple[str, Any]]) -> None:
    reference = SQLiteSession("d")
    async with sessiondb.open_store(":memory:") as store:
        ours = SessionDBSession("d", store)
        for name, argument in operations:
            if name == "add":
                results = [await s.add_items(copy.deepcopy(argument)) for s in (reference, ours)]
            elif name == "get":
                results = [await s.get_items(argument) for s in (reference, ours)]
            elif name == "pop":
                results = [await s.pop_item() for s in (reference, ours)]
            else:
                results = [await s.clear_session() for s in (reference, ours)]
            assert results[0] == results[1], (name, argument)
        assert await reference.get_items() == await ours.get_items()
    reference.close()


async def test_every_call_on_a_store_not_started_or_closed_raises_the_stores_error(tmp_path: Path) -> None:
    store = sessiondb.open_store(tmp_path / "store")
    session = SessionDBSession("s", store)
    for error in (sessiondb.StoreNotStartedError, sessiondb.StoreClosedError):
        with pytest.raises(error):
            await session.get_items()
        with pytest.raises(error):
            await session.add_items([{"role": "user", "content": "hi"}])
        with pytest.raises(error):
            await session.add_items([])
        with pytest.raises(error):
            await session.pop_item()
        with pytest.raises(error):
            await session.clear_session()
        if error is sessiondb.StoreNotStartedError:
            async with store:
                await session.add_items([{"role": "user", "content": "hi"}])


async def test_an_emptied_session_keeps_its_kind(tmp_path: Path) -> None:
    """Cleared or popped to nothing, an SDK session holds "0 items" (its scope says its kind), not "0 messages"."""
    path = tmp_path / "store"
    async with sessiondb.open_store(path) as store:
        cleared, popped = SessionDBSession("cleared", store), SessionDBSession("popped", store)
        for session in (cleared, popped):
            await session.add_items([{"role": "user", "content": "hi"}])
        await cleared.clear_session()
        assert await popped.pop_item() is not None
        for session_id in ("cleared", "popped"):
            info = await store.session_info(session_id)
            assert (info.scope, info.version, info.item_count) == ("openai_agents", 3, 0)

    def cli(*argv: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "sessiondb", *argv], capture_output=True, text=True, check=True, timeout=120
        ).stdout

    rows = json.loads(cli("ls", str(path), "--json"))
    assert {row["session_id"]: row["holds"] for row in rows} == {"cleared": "0 items", "popped": "0 items"}
    assert "0 items" in cli("ls", str(path)) and "0 messages" not in cli("ls", str(path))
    for session_id in ("cleared", "popped"):
        for argv in ((), ("--at", "3")):
            shown = cli("show", str(path), session_id, *argv)
            assert "0 items (an OpenAI Agents SDK session" in shown and "0 message(s)" not in shown
