"""The pure prompt builders, the majority vote, and the router's decision parser."""

from __future__ import annotations

import pytest

from loomiq.strategies._prompts import (
    adaptive_prompt,
    analyst_prompt,
    parallel_output,
    refine_prompt,
    router_prompt,
    synthesis_prompt,
)
from loomiq.strategies.adaptive import RouteDecision, parse_decision
from loomiq.strategies.simple import majority

TASK = "Should we migrate the billing service to Postgres?"


def test_the_task_is_in_every_prompt() -> None:
    prompts = [
        refine_prompt(TASK, None),
        refine_prompt(TASK, "draft", "a"),
        analyst_prompt(TASK),
        synthesis_prompt(TASK, [("a", "yes")]),
        router_prompt(TASK, [], [("a", "general")]),
        adaptive_prompt(TASK, []),
        adaptive_prompt(TASK, [("a", "yes")]),
    ]
    for prompt in prompts:
        assert TASK in prompt


def test_the_task_comes_first() -> None:
    # The offline scripted answer reads the task from the first paragraph.
    for prompt in (refine_prompt(TASK, "x", "a"), analyst_prompt(TASK), synthesis_prompt(TASK, [("a", "x")])):
        assert prompt.split("\n\n", 1)[0] == TASK


def test_the_first_refine_prompt_is_the_bare_task() -> None:
    assert refine_prompt(TASK, None) == TASK
    assert adaptive_prompt(TASK, []) == TASK


def test_refine_prompt_carries_the_previous_output_and_its_author() -> None:
    prompt = refine_prompt(TASK, "Use Postgres 16 with logical replication.", "critic")
    assert "Use Postgres 16 with logical replication." in prompt
    assert "(critic)" in prompt
    assert "Improve this answer" in prompt
    assert "()" not in refine_prompt(TASK, "previous text")


def test_analyst_prompt_asks_for_an_independent_answer() -> None:
    assert "independently" in analyst_prompt(TASK)


def test_synthesis_prompt_contains_every_analysis_by_agent() -> None:
    analyses = [("analyst", "Yes, for joins."), ("critic", "No, risky cutover."), ("pragmatist", "Later.")]
    prompt = synthesis_prompt(TASK, analyses)
    for agent, text in analyses:
        assert f"Analysis from {agent}:\n{text}" in prompt
    assert "3 analysts answered" in prompt
    assert prompt.index("analyst:") < prompt.index("critic:") < prompt.index("pragmatist:")


def test_parallel_output_puts_each_answer_under_its_agent() -> None:
    assert parallel_output([("a", "one"), ("b", "two")]) == "## a\none\n\n## b\ntwo"


def test_router_prompt_lists_agents_and_work_so_far() -> None:
    prompt = router_prompt(TASK, [("writer", "A first draft.")], [("writer", "writing"), ("critic", "review")])
    assert "- writer: writing" in prompt
    assert "- critic: review" in prompt
    assert "[writer]\nA first draft." in prompt
    assert '"next"' in prompt and '"done"' in prompt
    assert "(nothing yet)" in router_prompt(TASK, [], [("a", "general")])


def test_adaptive_prompt_refines_the_last_output() -> None:
    prompt = adaptive_prompt(TASK, [("a", "first"), ("b", "second")])
    assert prompt == refine_prompt(TASK, "second", "b")
    assert "first" not in prompt.replace(TASK, "")


# --- majority ----------------------------------------------------------------------------------


def test_majority_picks_the_most_common_answer() -> None:
    assert majority(["Paris", "London", "Paris"]) == "Paris"


def test_majority_ignores_case_and_spacing_and_returns_the_first_spelling() -> None:
    assert majority(["London", "  paris ", "PARIS", "Paris"]) == "  paris "


def test_majority_tie_goes_to_the_first_answer() -> None:
    assert majority(["b", "a", "a", "b"]) == "b"
    assert majority(["only"]) == "only"


# --- parse_decision ----------------------------------------------------------------------------

KNOWN = {"writer", "critic"}


def test_parse_decision_plain_json() -> None:
    decision = parse_decision('{"next": ["writer"], "done": false, "reason": "draft first"}', KNOWN)
    assert decision == RouteDecision(("writer",), False, "draft first")


def test_parse_decision_accepts_a_fenced_block_with_prose_around() -> None:
    text = 'Here is my decision:\n```json\n{"next": ["critic", "writer"], "reason": "both"}\n```\nThanks.'
    decision = parse_decision(text, KNOWN)
    assert decision == RouteDecision(("critic", "writer"), False, "both")


def test_parse_decision_done() -> None:
    assert parse_decision('{"next": [], "done": true, "reason": "complete"}', KNOWN) == RouteDecision(
        (), True, "complete"
    )
    assert parse_decision('{"next": []}', KNOWN).done is True  # no next agent means done


def test_parse_decision_accepts_a_single_id_string() -> None:
    assert parse_decision('{"next": "critic"}', KNOWN).next == ("critic",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("the writer should go next", "no JSON object"),
        ('{"next": ["writer",], }', "router JSON is invalid"),
        ('{"next": ["editor"], "done": false}', "unknown agent(s) editor"),
        ('{"next": ["writer", "ghost", "nobody"]}', "unknown agent(s) ghost, nobody"),
        ('{"next": [], "done": false, "reason": "hmm"}', "neither finished nor named a next agent"),
        ('{"next": [1, 2]}', "must be a list of agent ids"),
        ('{"next": {"writer": 1}}', "must be a list of agent ids"),
    ],
)
def test_parse_decision_rejects_unusable_answers(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_decision(text, KNOWN)
    assert message in str(info.value)
