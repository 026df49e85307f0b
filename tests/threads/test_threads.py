"""A store used from other threads and event loops: the OpenAI Agents SDK's ``Runner.run_sync`` in worker
threads, a thread pool calling ``SessionDBSession``, reads and subscriptions iterated from another loop, and
the clear errors for what cannot work (a closed, stopped or blocked store loop). Every wait is bounded: a
hand-off that hangs fails the test instead of stalling the run."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

agents = pytest.importorskip("agents")

from agents import Agent, ModelResponse, RunConfig, Runner, Usage  # noqa: E402
from agents.models.interface import Model  # noqa: E402
from openai.types.responses import ResponseOutputMessage, ResponseOutputText  # noqa: E402

import sessiondb  # noqa: E402
from sessiondb import Message  # noqa: E402
from sessiondb.integrations.openai_agents import SessionDBSession  # noqa: E402

agents.set_tracing_disabled(True)
pytestmark = pytest.mark.anyio
RUN_CONFIG = RunConfig(tracing_disabled=True)
THREADS = 4
TURNS = 3
# Generous: on a loaded 2-core machine a turn takes milliseconds; only a hang gets near this.
WAIT_SECONDS = 60.0
_T = TypeVar("_T")


class EchoModel(Model):
    """An offline model: answers each turn with the newest user message and how many items it was sent."""

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
        items = input if isinstance(input, list) else [{"role": "user", "content": input}]
        user = [item["content"] for item in items if isinstance(item, dict) and item.get("role") == "user"]
        text = f"echo {user[-1]} after {len(items)} items"
        reply = ResponseOutputMessage(
            id=f"msg_{len(items)}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
        )
        return ModelResponse(output=[reply], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the tests use Runner.run_sync")


async def in_daemon_thread(job: Callable[[], _T]) -> _T:
    """Run ``job`` in a daemon thread; wait at most WAIT_SECONDS (a hung thread cannot keep the run alive)."""
    loop = asyncio.get_running_loop()
    result: asyncio.Future[_T] = loop.create_future()

    def run() -> None:
        try:
            value = job()
        except BaseException as exc:
            loop.call_soon_threadsafe(result.set_exception, exc)
        else:
            loop.call_soon_threadsafe(result.set_result, value)

    threading.Thread(target=run, daemon=True).start()
    return await asyncio.wait_for(result, WAIT_SECONDS)


def run_sync_conversation(store: sessiondb.Store, index: int) -> list[str]:
    """TURNS turns of one conversation with ``Runner.run_sync``, in this (worker) thread."""
    agent = Agent(name="echo", instructions="Repeat the user.", model=EchoModel())
    session = SessionDBSession(f"conversation-{index}", store)
    try:
        return [
            str(Runner.run_sync(agent, f"prompt {index}.{turn}", session=session, run_config=RUN_CONFIG).final_output)
            for turn in range(TURNS)
        ]
    finally:
        # run_sync leaves the thread's default loop open on purpose; this thread is done with it.
        asyncio.get_event_loop_policy().get_event_loop().close()


async def test_runner_run_sync_in_worker_threads(store_target: str) -> None:
    async with sessiondb.open_store(store_target) as store:
        replies = await asyncio.gather(
            *(in_daemon_thread(lambda i=i: run_sync_conversation(store, i)) for i in range(THREADS))  # type: ignore[misc]
        )
        for index, answers in enumerate(replies):
            # The model saw the whole history each turn: the session was read back from the worker thread.
            assert answers == [f"echo prompt {index}.{turn} after {2 * turn + 1} items" for turn in range(TURNS)]
            items = await SessionDBSession(f"conversation-{index}", store).get_items()
            assert [item.get("role") for item in items] == ["user", "assistant"] * TURNS
            assert [item["content"] for item in items[::2]] == [f"prompt {index}.{turn}" for turn in range(TURNS)]
    async with sessiondb.open_store(store_target) as reopened:  # durable, not only visible
        assert len(await SessionDBSession("conversation-0", reopened).get_items()) == 2 * TURNS


async def test_thread_pool_calls_sessiondb_session(store_target: str) -> None:
    jobs = 24

    def job(store: sessiondb.Store, index: int) -> list[Any]:
        async def work() -> list[Any]:
            own = SessionDBSession(f"own-{index}", store)
            shared = SessionDBSession("shared", store)
            await shared.add_items([{"role": "user", "content": f"job {index}"}])
            await own.add_items([{"role": "user", "content": f"a{index}"}, {"role": "user", "content": f"b{index}"}])
            popped = await own.pop_item()
            assert popped == {"role": "user", "content": f"b{index}"}
            assert await own.items_at(2) == [{"role": "user", "content": f"a{index}"}, popped]  # read() from here
            return await own.get_items()

        # The bound runs on this thread's own loop: a hand-off that never completes fails here.
        return asyncio.run(asyncio.wait_for(work(), WAIT_SECONDS))

    async with sessiondb.open_store(store_target) as store:
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(loop.run_in_executor(pool, job, store, i) for i in range(jobs))), WAIT_SECONDS
            )
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        assert results == [[{"role": "user", "content": f"a{i}"}] for i in range(jobs)]
        shared = await SessionDBSession("shared", store).get_items()
        assert sorted(item["content"] for item in shared) == sorted(f"job {i}" for i in range(jobs))
        assert (await store.load("shared")).version == jobs + 1  # one atomic append each, none twice


async def test_reads_and_subscriptions_iterated_from_another_thread(store_target: str) -> None:
    count = 20
    async with sessiondb.open_store(store_target) as store:
        sid = await store.create_session()
        subscribed = threading.Event()

        def follow() -> tuple[list[int], list[int], list[int]]:
            async def run() -> tuple[list[int], list[int], list[int]]:
                versions: list[int] = []
                positions: list[int] = []
                async with store.subscribe(sid) as one, store.subscribe_all() as every:
                    subscribed.set()
                    async for recorded in one:
                        versions.append(recorded.version)
                        if recorded.version == count + 1:
                            break
                    async for recorded in every:
                        positions.append(recorded.position)
                        if len(positions) == count + 1:
                            break
                read = [recorded.version async for recorded in store.read(sid, after=5, up_to=9)]
                partly = store.read(sid)
                read.append((await anext(partly)).version)
                await partly.aclose()  # type: ignore[attr-defined]  # closed on the store's loop, half read
                return versions, positions, read

            return asyncio.run(asyncio.wait_for(run(), WAIT_SECONDS))

        following = asyncio.ensure_future(in_daemon_thread(follow))
        await asyncio.wait_for(asyncio.to_thread(subscribed.wait), WAIT_SECONDS)
        for index in range(count):
            await store.append(sid, Message.user(f"message {index}"))
        versions, positions, read = await following
        assert versions == list(range(1, count + 2))
        assert positions == sorted(positions) and len(set(positions)) == count + 1
        assert read == [6, 7, 8, 9, 1]


def test_a_store_whose_loop_closed_raises_at_once(tmp_path: Any) -> None:
    store = sessiondb.open_store(tmp_path / "store")
    asyncio.run(store.start())  # that loop ends (and cancels the writer) when start() returns
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(asyncio.run, store.list_sessions())
        with pytest.raises(sessiondb.StoreLoopError, match="is closed"):
            future.result(timeout=WAIT_SECONDS)
    with pytest.raises(sessiondb.StoreLoopError, match="is closed"):  # and from this thread too
        asyncio.run(store.list_sessions())


def test_a_store_whose_loop_is_stopped_raises_at_once(tmp_path: Any) -> None:
    loop = asyncio.new_event_loop()
    store = sessiondb.open_store(tmp_path / "store")
    try:
        loop.run_until_complete(store.start())
        sid = loop.run_until_complete(store.create_session())
        # The same thread, another loop, while the store's loop is stopped: nothing could serve the call.
        with pytest.raises(sessiondb.StoreLoopError, match="not running"):
            asyncio.run(store.append(sid, Message.user("never")))
        assert loop.run_until_complete(store.load(sid)).version == 1
    finally:
        loop.run_until_complete(store.aclose())
        loop.close()


async def test_a_blocked_store_loop_gets_the_call_withdrawn(store_target: str) -> None:
    async with sessiondb.open_store(store_target) as store:
        sid = await store.create_session()
        store._home.pickup_seconds = 0.5
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            # The store's loop waits synchronously for a thread that needs the store: a deadlock without the bound.
            future = pool.submit(asyncio.run, store.append(sid, Message.user("withdrawn")))
            with pytest.raises(sessiondb.StoreLoopError, match="Nothing was done"):
                future.result(timeout=WAIT_SECONDS)
        assert (await store.load(sid)).version == 1  # withdrawn calls never run, not even later
        await asyncio.sleep(0)
        assert (await store.load(sid)).version == 1


async def test_a_cancelled_caller_cancels_its_call_on_the_store_loop(store_target: str) -> None:
    from sessiondb._subscriptions import _hubs

    async with sessiondb.open_store(store_target) as store:
        sid = await store.create_session()
        subscription = store.subscribe(sid, after=1)  # nothing after version 1 yet: its next step waits

        def wait_briefly() -> str:
            async def run() -> str:
                try:
                    await asyncio.wait_for(anext(subscription), 0.2)
                except TimeoutError:
                    return "timed out"
                return "got an event"

            return asyncio.run(run())

        assert await in_daemon_thread(wait_briefly) == "timed out"
        hub = _hubs[store]
        for _ in range(1_000):  # the cancellation reaches the store's loop within a few of its steps
            if not hub.by_session:
                break
            await asyncio.sleep(0)
        assert not hub.by_session, "the step left waiting on the store's loop was not cancelled"
        assert await store.append(sid, Message.user("after")) == 2  # the store goes on


async def test_another_loop_on_the_store_loops_thread_raises_at_once(tmp_path: Any) -> None:
    # What nest_asyncio-style code does: run a second loop inside a step of the store's loop.
    async with sessiondb.open_store(tmp_path / "store") as store:
        home = asyncio.get_running_loop()
        nested = asyncio.new_event_loop()
        asyncio._set_running_loop(None)
        try:
            with pytest.raises(sessiondb.StoreLoopError, match="thread of the store's own loop"):
                nested.run_until_complete(store.list_sessions())
        finally:
            nested.close()
            asyncio._set_running_loop(home)
        assert await store.list_sessions() == []


async def test_claw_import_and_export_from_another_thread(store_target: str, tmp_path: Any) -> None:
    async with sessiondb.open_store(store_target) as store:
        sid = await store.create_session(session_id="claw-source")
        await store.append(sid, Message.user("hello"), Message.assistant([sessiondb.Text("hi")]))
        exported = tmp_path / "claw-source.jsonl"

        def export_then_import() -> list[str]:
            async def run() -> list[str]:
                await sessiondb.export_claw_session(store, sid, exported)
                first = await sessiondb.import_claw_files(store, exported, if_exists="skip")  # exists: skipped
                return [skipped[1] for skipped in first.skipped_sessions]

            return asyncio.run(asyncio.wait_for(run(), WAIT_SECONDS))

        assert await in_daemon_thread(export_then_import) == ["claw-source"]
        assert exported.read_text().count("\n") >= 2
