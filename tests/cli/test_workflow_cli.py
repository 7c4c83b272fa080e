"""`loomiq workflow validate|graph|templates`: exit codes, one line per error with file, line and column,
the Mermaid output, the shipped templates. Through a real subprocess, as a user runs them."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from ..workflows.conftest import RELEASE_NOTES
from .conftest import assert_one_line_error, cli


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "release-notes.yaml").write_text(RELEASE_NOTES, encoding="utf-8")
    broken = RELEASE_NOTES.replace("needs: [draft]", "needs: [draf]").replace(
        "'approved'", "'aproved'").replace("{type: string}", "{type: string, default: 3}")
    (tmp_path / "broken.yaml").write_text(broken, encoding="utf-8")
    return tmp_path


def test_validate_a_valid_workflow(files: Path) -> None:
    proc = cli("workflow", "validate", "release-notes.yaml")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "release-notes.yaml: valid workflow 'release-notes' (4 nodes: 3 task, 1 approval)\n"
    assert proc.stderr == ""


def test_validate_prints_one_line_per_error_and_exits_2(files: Path) -> None:
    proc = cli("workflow", "validate", "broken.yaml")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "broken.yaml:3:36: inputs.version.default: default must be a string, not an integer",
        "broken.yaml:11:13: nodes.approve.needs.0: unknown node 'draf' (did you mean 'draft'?)",
        "broken.yaml:19:36: nodes.publish.if: nodes.approve.decision is never 'aproved' (it is 'approved' or "
        "'rejected')",
        "broken.yaml:20:48: nodes.publish.prompt: nodes.draft is not upstream of 'publish' (add 'draft' to its "
        "needs)",
    ]


def test_validate_json_output(files: Path) -> None:
    proc = cli("workflow", "validate", "broken.yaml", "--json")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["valid"] is False and report["workflow"] == "release-notes"
    assert report["issues"][1] == {"file": "broken.yaml", "line": 11, "column": 13, "path": "nodes.approve.needs.0",
                                   "severity": "error",
                                   "message": "nodes.approve.needs.0: unknown node 'draf' (did you mean 'draft'?)"}
    ok = cli("workflow", "validate", "template:deployment", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] is True


def test_missing_file_and_unknown_template_are_one_line_errors(files: Path) -> None:
    assert_one_line_error(cli("workflow", "validate", "nope.yaml"), "cannot read nope.yaml")
    assert_one_line_error(cli("workflow", "graph", "template:nope"), "no template 'nope'", "bug-fix")


def test_subworkflows_resolve_beside_the_file_and_unknown_ones_warn(files: Path) -> None:
    (files / "parent.yaml").write_text(
        "name: parent\nnodes:\n  notes: {kind: subworkflow, workflow: release-notes, inputs: {version: 1}}\n"
        "  other: {kind: subworkflow, workflow: elsewhere}\n", encoding="utf-8")
    proc = cli("workflow", "validate", "parent.yaml")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "parent.yaml:3:73: nodes.notes.inputs.version: must be a string, not an integer",
        "parent.yaml:4:40: warning: nodes.other.workflow: unknown workflow 'elsewhere'",
    ]


def test_graph_is_a_mermaid_flowchart_with_kinds_and_conditions(files: Path) -> None:
    proc = cli("workflow", "graph", "release-notes.yaml")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[:2] == ["%% workflow release-notes", "flowchart TD"]
    assert '  n_approve{{"<b>approve</b><br/>approval · any admin, operator · 72h → reject"}}' in out
    assert ('  n_publish["<b>publish</b><br/>task · auto<br/>if nodes.approve.decision == '
            "'approved'\"]") in out
    assert "  n_draft --> n_approve" in out and "  n_approve --> n_held_back" in out
    broken = cli("workflow", "graph", "broken.yaml")
    assert broken.returncode == 2 and broken.stdout == "" and len(broken.stderr.splitlines()) == 4


def test_graph_of_a_template_shows_failure_edges_and_handlers(files: Path) -> None:
    proc = cli("workflow", "graph", "template:deployment")
    assert proc.returncode == 0, proc.stderr
    assert "  n_deploy -. fails .-> n_rollback" in proc.stdout
    assert "  n_gate == always ==> n_deploy" in proc.stdout
    assert "n_checks[/\"<b>checks</b><br/>parallel · matrix: check · join all\"\\]" in proc.stdout


def test_templates_lists_names_and_descriptions(files: Path) -> None:
    proc = cli("workflow", "templates")
    assert proc.returncode == 0
    for name in ("bug-fix", "deployment", "feature-development", "security-audit"):
        assert name in proc.stdout
    listed = json.loads(cli("workflow", "templates", "--json").stdout)
    assert [t["name"] for t in listed] == ["bug-fix", "deployment", "feature-development", "security-audit"]
    assert listed[3]["inputs"] == ["title", "standards", "environment"]
    assert all(t["description"] for t in listed)


def test_the_readme_workflow_commands_run_as_written(files: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Workflows and approvals", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]
    assert len(commands) == 6
    for argv in commands:
        assert argv[0] == "loomiq"
        proc = cli(*argv[1:])
        assert proc.returncode == 0, (argv, proc.stderr)
        assert proc.stdout
    assert "feature-development" in cli("workflow", "list").stdout
