"""``/v1``: the OpenAI-compatible API, in-process and with the official SDK against the real server."""

from __future__ import annotations

import json
import time

import httpx2
import openai
import pytest

from loomiq import Agent, AgentConfig, Orchestrator, RetryPolicy, ScriptedModel
from loomiq.strategies import STRATEGY_NAMES

from .conftest import LiveServer
from .support import bearer, token
from .test_problems import assert_problem

ASK = [{"role": "user", "content": "Should we shard the database?"}]


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads and ``:`` comments of an SSE body, in order (comments prefixed ':')."""
    out = []
    for block in text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                out.append(line[6:])
            elif line.startswith(":"):
                out.append(line)
    return out


def chunks_of(text: str) -> list[dict]:
    return [json.loads(e) for e in sse_events(text) if not e.startswith(":") and e != "[DONE]"]


async def test_completion_sums_usage_over_every_agent(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "consensus", "messages": ASK})
    assert response.status_code == 200, response.text
    assert response.headers["x-loomiq-offline"] == "true"
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "consensus"
    assert body["id"] == f"chatcmpl-{body['loomiq']['task_id']}"
    (choice,) = body["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "stop"
    assert "[offline answer" in choice["message"]["content"]
    agents = (await client.get("/api/agents")).json()["agents"]
    assert body["usage"]["prompt_tokens"] == sum(a["input_tokens"] for a in agents)
    assert body["usage"]["completion_tokens"] == sum(a["output_tokens"] for a in agents)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["loomiq"]["strategy"] == "consensus" and len(body["loomiq"]["answered"]) == 4


async def test_stream_of_one_agent_is_openai_chunks_ending_with_done(client: httpx2.AsyncClient) -> None:
    plain = (await client.post("/v1/chat/completions", json={"model": "analyst", "messages": ASK})).json()
    response = await client.post("/v1/chat/completions", json={
        "model": "analyst", "messages": ASK, "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = chunks_of(response.text)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content) > 1  # streamed in pieces, as generated
    assert "".join(content) == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]


async def test_stream_without_include_usage_has_no_usage_member(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "analyst", "messages": ASK, "stream": True})
    chunks = chunks_of(response.text)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_stream_of_a_strategy_names_steps_then_sends_the_answer(client: httpx2.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={"model": "consensus", "messages": ASK, "stream": True})
    events = sse_events(response.text)
    comments = [e for e in events if e.startswith(":")]
    assert comments == [": step analyst/0: analyst (analyst)", ": step analyst/1: critic (analyst)",
                        ": step analyst/2: pragmatist (analyst)", ": step lead: lead (lead)"]
    assert events.index(comments[-1]) < events.index(next(e for e in events if '"content":"[offline' in e))
    chunks = chunks_of(response.text)
    answer = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert answer.startswith("[offline answer from scripted agent") and "lead" in answer.split("]")[0]
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "consensus", "messages": [{"role": "system", "content": "only a system message"}]}, "messages"),
    ({"model": "analyst", "messages": ASK, "n": 2}, "n"),
    ({"model": "analyst", "messages": ASK, "tools": [{"type": "function", "function": {"name": "no spaces"}}]},
     "tools[0].function.name"),
    ({"model": "analyst", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content"),
])
async def test_unsupported_requests_are_422_naming_the_field(client: httpx2.AsyncClient, body: dict,
                                                             field: str) -> None:
    problem = assert_problem(await client.post("/v1/chat/completions", json=body), 422, "invalid-request")
    assert problem["error"]["param"].startswith(field)


async def test_strategy_that_cannot_run_is_a_problem(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    for ident in ("critic", "pragmatist", "lead"):
        orchestrator.remove_agent(ident)
    problem = assert_problem(await client.post("/v1/chat/completions", json={"model": "consensus", "messages": ASK}),
                             422, "invalid-request")
    assert "consensus" in problem["detail"]


def _broken_agent() -> Agent:
    # A capability nobody else has, so no agent can take over, and one attempt, so no retry delay.
    config = AgentConfig("broken", "scripted", "scripted", capabilities=frozenset({"broken-only"}),
                         retry=RetryPolicy(max_attempts=1))
    return Agent(config, ScriptedModel(failures={i: "server_error" for i in range(10)}))


async def test_a_run_no_agent_could_answer_is_a_502(client: httpx2.AsyncClient, orchestrator: Orchestrator) -> None:
    orchestrator.add_agent(_broken_agent())
    response = await client.post("/v1/chat/completions", json={"model": "broken", "messages": ASK})
    problem = assert_problem(response, 502, "upstream-failed")
    assert "broken" in problem["detail"] and problem["error"]["type"] == "api_error"
    assert problem["loomiq"]["status"] == "failed"

    streamed = await client.post("/v1/chat/completions", json={"model": "broken", "messages": ASK, "stream": True})
    last = json.loads(sse_events(streamed.text)[-1])
    assert last["error"]["type"] == "api_error" and "broken" in last["error"]["message"]


async def test_models_lists_agents_and_strategies(client: httpx2.AsyncClient) -> None:
    body = (await client.get("/v1/models", headers=bearer("viewer"))).json()
    ids = [m["id"] for m in body["data"]]
    assert ids == ["analyst", "critic", "pragmatist", "lead", *STRATEGY_NAMES]
    assert {m["object"] for m in body["data"]} == {"model"}


# The official SDK against the real server --------------------------------------------------------


def _sdk(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=30)


def test_sdk_non_streaming(live_server: LiveServer) -> None:
    with _sdk(live_server, token("operator")) as sdk:
        completion = sdk.chat.completions.create(model="consensus", messages=ASK)  # type: ignore[arg-type]
        assert completion.choices[0].message.content.startswith("[offline answer")
        assert completion.usage is not None and completion.usage.total_tokens > 0
        assert completion.model_extra is not None and completion.model_extra["loomiq"]["strategy"] == "consensus"
        models = [m.id for m in sdk.models.list()]
        assert {"analyst", "critic", "lead", "consensus", "auto"} <= set(models)


def test_sdk_streaming_with_an_api_key(live_server: LiveServer) -> None:
    with httpx2.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {token('admin')}"}) as http:
        key = http.post("/api/keys", json={"role": "operator"}).json()["key"]
    with _sdk(live_server, key) as sdk:
        stream = sdk.chat.completions.create(model="analyst", messages=ASK, stream=True,  # type: ignore[arg-type]
                                             stream_options={"include_usage": True})
        pieces, usage = [], None
        with stream:
            for chunk in stream:
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")
                if chunk.usage is not None:
                    usage = chunk.usage
        assert "".join(pieces).startswith("[offline answer from scripted agent")
        assert usage is not None and usage.completion_tokens > 0


def test_sdk_errors_read_the_problem_documents(live_server: LiveServer) -> None:
    with _sdk(live_server, token("operator")) as sdk:
        with pytest.raises(openai.NotFoundError) as missing:
            sdk.chat.completions.create(model="gpt-4o", messages=ASK)  # type: ignore[arg-type]
        assert "does not exist here" in missing.value.message
        assert missing.value.code == "model_not_found" and missing.value.param == "model"
        with pytest.raises(openai.UnprocessableEntityError):
            sdk.chat.completions.create(model="analyst", messages=[])
    with _sdk(live_server, "lq_000000000000_" + "x" * 43) as sdk, pytest.raises(openai.AuthenticationError):
        sdk.models.list()
    with _sdk(live_server, token("viewer")) as sdk, pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="analyst", messages=ASK)  # type: ignore[arg-type]


def test_client_disconnect_cancels_the_stream_run(live_server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {token('operator')}"}
    with httpx2.Client(base_url=live_server.url, headers=headers, timeout=30) as http:
        request = {"model": "slow", "messages": ASK, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=request) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
            assert first.startswith("data: ")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metrics = http.get("/metrics").text
            if 'loomiq_runs_total{status="cancelled",strategy="single"} 1.0' in metrics:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run was not cancelled after the client left:\n" + metrics[-2000:])
        assert "loomiq_runs_in_progress 0.0" in metrics
