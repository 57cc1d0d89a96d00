"""The CI examples: the GitHub workflows' structure; their shell steps, and the reusable
action's (action.yml), run for real against the sandbox (plan on a PR, the policy check,
the reviewed plan applied on merge, the nightly drift check, one account of the matrix);
their github-script steps run by node against a recorded GitHub API; and the pre-commit
hook's command run as pre-commit runs it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.ci_support import sandbox_plans

ROOT = Path(__file__).parent.parent
CI = ROOT / "examples" / "ci"
WORKFLOW_FILE = CI / "github" / "workflows" / "reconcile.yml"
MANY_FILE = CI / "github" / "workflows" / "many-accounts.yml"
ACTION_FILE = ROOT / "action.yml"
POLICY = CI / "policy_check.py"
HOOKS_FILE = ROOT / ".pre-commit-hooks.yaml"
QUICKSTART = ROOT / "examples" / "quickstart"
RECONCILE = Path(sys.executable).parent / "reconcile"
CREDENTIALS = ("MAILJET_API_KEY", "MAILJET_SECRET_KEY", "MAILJAWN_API_KEY", "MAILJAWN_PROJECT_ID")
CHECK = "Check that main's manifests are the ones that were planned"  # the apply job's step
BROKEN = "provider: mailjet\ncontacts:\n  - email: a@example.com\n    lists: [nowhere]\n"


def load_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


WORKFLOW: dict[Any, Any] = load_yaml(WORKFLOW_FILE)
JOBS: dict[str, dict[str, Any]] = WORKFLOW["jobs"]
MANY: dict[Any, Any] = load_yaml(MANY_FILE)
ACTION: dict[str, Any] = load_yaml(ACTION_FILE)
ACTION_USES = re.compile(r"your-org/reconcile@v\d+\.\d+\.\d+")


def triggers() -> dict[str, Any]:
    # YAML 1.2 (ruamel) reads the key `on` as a string; a YAML 1.1 reader would make it True.
    found = WORKFLOW.get("on", WORKFLOW.get(True))
    assert isinstance(found, dict)
    return found


def step(job: str, name: str, workflow: dict[Any, Any] = WORKFLOW) -> dict[str, Any]:
    for candidate in workflow["jobs"][job]["steps"]:
        if candidate.get("name") == name:
            return dict(candidate)
    raise AssertionError(f"job {job} has no step named {name!r}")


def scripts(job: str) -> str:
    return "\n".join(s["run"] for s in JOBS[job]["steps"] if "run" in s)


def uses(job: str, action: str, workflow: dict[Any, Any] = WORKFLOW) -> list[dict[str, Any]]:
    steps = workflow["jobs"][job]["steps"]
    return [s for s in steps if str(s.get("uses", "")).startswith(action + "@")]


def action_step(name: str) -> dict[str, Any]:
    (found,) = [s for s in ACTION["runs"]["steps"] if s.get("name") == name]
    return dict(found)


def expand(value: str, context: dict[str, Any]) -> str:
    """A `${{ a.b.c }}` expression naming a value (all these files use besides `if:`)."""

    def lookup(match: re.Match[str]) -> str:
        node: Any = context
        for part in match.group(1).split("."):
            node = node.get(part, "") if isinstance(node, dict) else ""
        return str(node)

    return re.sub(r"\$\{\{\s*([A-Za-z_][\w.-]*)\s*\}\}", lookup, str(value))


def strings(node: Any) -> Iterator[tuple[str, str]]:
    """Every (key, string value) in the document, keys of list items being ''."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                yield str(key), value
            else:
                yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from (("", item),) if isinstance(item, str) else strings(item)


# --- structure -----------------------------------------------------------------------------


def test_triggers_cover_pull_requests_merges_and_a_nightly_schedule() -> None:
    on = triggers()
    manifests = WORKFLOW["env"]["MANIFESTS"].rstrip("/")
    assert on["pull_request"]["paths"] == [f"{manifests}/**"]
    assert on["push"]["branches"] == ["main"]
    assert on["push"]["paths"] == on["pull_request"]["paths"]
    (schedule,) = on["schedule"]
    assert len(schedule["cron"].split()) == 5
    assert set(on["workflow_dispatch"]["inputs"]["action"]["options"]) == {
        "drift",
        "plan",
        "apply",
    }


def test_each_job_runs_on_its_own_events() -> None:
    assert "pull_request" in JOBS["validate"]["if"]
    assert JOBS["plan"]["needs"] == "validate"
    assert "github.repository" in JOBS["plan"]["if"]  # forks get no secrets: skipped
    assert "'push'" in JOBS["apply"]["if"]
    assert "'schedule'" in JOBS["drift"]["if"]


def test_pull_request_plans_once_saves_it_and_keeps_one_comment() -> None:
    plan = step("plan", "Plan")
    assert ACTION_USES.fullmatch(plan["uses"])
    assert plan["with"]["command"] == "plan"
    assert plan["with"]["plan-file"] == "plan.json"
    assert plan["with"]["redact"] == "${{ env.REDACT }}"
    run = action_step("Run reconcile")["run"]
    assert 'reconcile plan "${manifests[@]}" --out "$PLAN_FILE" --format markdown' in run
    assert "--redact" in run
    assert 'reconcile validate "${manifests[@]}"' in run
    assert step("validate", "Validate the manifests")["with"]["command"] == "validate"
    (upload,) = uses("plan", "actions/upload-artifact")
    assert upload["with"]["name"] == "reconcile-plan"
    assert "plan.json" in upload["with"]["path"].split()
    assert "plan-meta.json" in upload["with"]["path"].split()
    assert uses("plan", "actions/github-script") == []  # the action posts the comment
    comment = action_step(COMMENT)
    assert "github.event_name == 'pull_request'" in comment["if"]
    script = comment["with"]["script"]
    assert "<!-- reconcile-plan -->" in script
    assert "updateComment" in script
    assert "createComment" in script
    assert JOBS["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_merge_applies_the_saved_plan_one_at_a_time() -> None:
    applied = step("apply", "Apply the reviewed plan")["with"]
    assert (applied["command"], applied["plan-file"]) == ("apply", "reviewed/plan.json")
    assert 'reconcile apply --plan "$PLAN_FILE"' in action_step("Run reconcile")["run"]
    assert "reconcile plan" not in scripts("apply")  # never re-plans behind the review
    commands = {
        s["with"]["command"] for s in JOBS["apply"]["steps"] if "your-org" in s.get("uses", "")
    }
    assert commands == {"apply"}
    (download,) = uses("apply", "actions/download-artifact")
    assert download["with"]["name"] == "reconcile-plan"
    assert download["with"]["run-id"] == "${{ steps.find.outputs.run_id }}"
    concurrency = JOBS["apply"]["concurrency"]
    assert concurrency["group"] == "reconcile-apply"
    assert concurrency["cancel-in-progress"] is False
    permissions = JOBS["apply"]["permissions"]
    assert "write" not in permissions.values()
    assert permissions["actions"] == "read"


def test_nightly_drift_check_uses_the_detailed_exit_code() -> None:
    assert step("drift", "Check for drift")["with"]["command"] == "drift"
    drift = action_step("Run reconcile")["run"]
    assert 'reconcile plan "${manifests[@]}" --detailed-exitcode' in drift
    assert re.search(r"^\s*2\)", drift, re.MULTILINE)
    (issue,) = uses("drift", "actions/github-script")
    assert "<!-- reconcile-drift -->" in issue["with"]["script"]
    assert JOBS["drift"]["permissions"] == {"contents": "read", "issues": "write"}


def test_permissions_are_granted_per_job() -> None:
    assert WORKFLOW["permissions"] == {}
    for name, job in JOBS.items():
        assert isinstance(job["permissions"], dict), name
        assert job["permissions"].get("contents") == "read", name


def test_credentials_come_only_from_secrets() -> None:
    for name in ("plan", "apply", "drift"):
        env = JOBS[name]["env"]
        for variable in CREDENTIALS:
            assert env[variable] == "${{ secrets." + variable + " }}", (name, variable)
    assert "env" not in JOBS["validate"]  # offline: no credentials at all
    assert not set(CREDENTIALS) & set(WORKFLOW["env"])
    for key, value in strings(WORKFLOW):
        if re.search(r"KEY|SECRET|PASSPHRASE|PROJECT_ID|TOKEN", key):
            assert re.fullmatch(r"\$\{\{ (secrets\.[A-Z_]+|github\.token) \}\}", value), key
        assert not re.search(r"\bmj_[A-Za-z0-9]{8,}|\b[0-9a-f]{32}\b", value), key


def test_scripts_never_interpolate_expressions() -> None:
    every = [("action", s) for s in ACTION["runs"]["steps"]]
    for workflow in (WORKFLOW, MANY):
        every += [(n, s) for n, job in workflow["jobs"].items() for s in job["steps"]]
    for name, item in every:
        body = item.get("run") or item.get("with", {}).get("script", "")
        assert "${{" not in body, (name, item.get("name"))


def test_plan_and_apply_hash_the_manifests_the_same_way() -> None:
    def hash_line(script: str) -> str:
        (line,) = [ln for ln in script.splitlines() if ln.startswith("manifests_sha256=")]
        return line

    planned = hash_line(step("plan", "Record what the plan was made from")["run"])
    checked = hash_line(step("apply", CHECK)["run"])
    assert planned == checked


def test_actions_are_pinned() -> None:
    """GitHub's actions by major version; reconcile's by the tag the pre-commit hook pins."""
    (repo,) = load_yaml(CI / "pre-commit-config.yaml")["repos"]
    every = [("action", s) for s in ACTION["runs"]["steps"]]
    for workflow in (WORKFLOW, MANY):
        every += [(n, s) for n, job in workflow["jobs"].items() for s in job["steps"]]
    ours = 0
    for name, item in every:
        if "uses" not in item:
            continue
        if ACTION_USES.fullmatch(item["uses"]):
            assert item["uses"] == f"your-org/reconcile@{repo['rev']}", name
            ours += 1
        else:
            assert re.fullmatch(r"actions/[a-z-]+@v\d+", item["uses"]), (name, item["uses"])
    assert ours == 7  # validate, plan, apply, drift here; plan, apply, drift per account


# --- the shell steps, run for real against the sandbox ---------------------------------------


class Runner:
    """Runs a workflow step's script the way GitHub does (bash -eo pipefail), with a
    `reconcile` on PATH that adds --sandbox to plan and apply. A step that uses reconcile's
    action runs the action's shell steps (python and reconcile are already installed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "repo"
        shutil.copytree(QUICKSTART, self.work / "audience")
        bin_dir = root / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "reconcile"
        shim.write_text(
            "#!/bin/sh\n"
            'cmd="$1"; shift\n'
            'case "$cmd" in\n'
            f'  plan|apply) exec "{RECONCILE}" "$cmd" --sandbox "$@" ;;\n'
            f'  *) exec "{RECONCILE}" "$cmd" "$@" ;;\n'
            "esac\n",
            encoding="utf-8",
        )
        shim.chmod(0o755)
        self.output = root / "github_output"
        self.summary = root / "step_summary"
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "MANIFESTS": WORKFLOW["env"]["MANIFESTS"],
            "REDACT": "false",
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_RUN_ID": "4242",
        }

    def bash(self, script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=cwd,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run(
        self,
        job: str,
        name: str,
        workflow: dict[Any, Any] = WORKFLOW,
        matrix: dict[str, Any] | None = None,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        self.output.write_text("", encoding="utf-8")
        self.summary.write_text("", encoding="utf-8")
        found = step(job, name, workflow)
        if "run" in found:
            return self.bash(found["run"], self.work, env)
        assert ACTION_USES.fullmatch(found["uses"]), found
        context = {"env": {**self.env, **env}, "matrix": matrix or {}}
        inputs = {key: expand(value, context) for key, value in found["with"].items()}
        return self.action(inputs, **env)

    def action(self, given: dict[str, str], **env: str) -> subprocess.CompletedProcess[str]:
        """action.yml's shell steps after the install: run reconcile, then fail on error."""
        inputs = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
        assert set(given) <= set(inputs), set(given) - set(inputs)
        inputs.update(given)
        context: dict[str, Any] = {"inputs": inputs, "github": {"action_path": str(ROOT)}}
        ran = action_step("Run reconcile")
        cwd = self.work / expand(ran["working-directory"], context)
        step_env = {k: expand(v, context) for k, v in ran["env"].items()}
        result = self.bash(ran["run"], cwd, {**env, **step_env})
        assert result.returncode == 0, result.stderr  # never fails itself: the last step does
        context["steps"] = {"run": {"outputs": self.outputs()}}
        failing = action_step("Fail on error")
        assert failing["if"] == "steps.run.outputs.exit-code != '0'"
        if context["steps"]["run"]["outputs"]["exit-code"] == "0":
            return result
        fail_env = {k: expand(v, context) for k, v in failing["env"].items()}
        failed = self.bash(failing["run"], cwd, {**env, **fail_env})
        return subprocess.CompletedProcess(
            result.args, failed.returncode, result.stdout + failed.stdout, result.stderr
        )

    def outputs(self) -> dict[str, str]:
        lines = self.output.read_text(encoding="utf-8").splitlines()
        return dict(line.split("=", 1) for line in lines)

    def drift(self) -> str | None:
        return self.outputs().get("drift")

    def plan_on_pull_request(self) -> None:
        planned = self.run("plan", "Plan")
        assert planned.returncode == 0, planned.stderr
        assert "### reconcile plan (mailjet)" in self.summary.read_text(encoding="utf-8")
        recorded = self.run(
            "plan", "Record what the plan was made from", PR_NUMBER="7", PLANNED_SHA="abc123"
        )
        assert recorded.returncode == 0, recorded.stderr

    def hand_over(self) -> None:
        """What upload-artifact then download-artifact do: the PR run's files in reviewed/."""
        reviewed = self.work / "reviewed"
        reviewed.mkdir(exist_ok=True)
        for name in ("plan.json", "plan.json.enc", "plan-meta.json"):
            if (self.work / name).exists():
                shutil.move(self.work / name, reviewed / name)


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return Runner(tmp_path)


def test_the_reviewed_plan_is_applied_once(runner: Runner) -> None:
    runner.plan_on_pull_request()
    runner.hand_over()
    assert runner.run("apply", CHECK).returncode == 0

    applied = runner.run("apply", "Apply the reviewed plan")
    assert applied.returncode == 0, applied.stderr
    assert "Apply complete: 28 done, 0 failed, 0 skipped." in applied.stdout
    assert runner.outputs()["exit-code"] == "0"
    assert runner.outputs()["plan-file"] == str(runner.work / "reviewed" / "plan.json")
    reported = runner.run(
        "apply", "Report the apply", APPLY_EXIT_CODE="0", PLAN_RUN_URL="https://run/1"
    )
    assert reported.returncode == 0, reported.stderr
    assert "Applied the plan reviewed in https://run/1." in runner.summary.read_text("utf-8")

    again = runner.run("apply", "Apply the reviewed plan")
    assert again.returncode == 1
    assert "live state moved since this plan was made" in again.stderr
    assert "::error title=reconcile apply failed::reconcile exited 1" in again.stdout
    assert runner.outputs()["exit-code"] == "1"
    reported = runner.run(
        "apply", "Report the apply", APPLY_EXIT_CODE="1", PLAN_RUN_URL="https://run/1"
    )
    assert reported.returncode == 1
    assert "::error title=Apply did not complete::" in reported.stdout


def test_apply_refuses_when_main_has_other_manifests_than_planned(runner: Runner) -> None:
    runner.plan_on_pull_request()
    runner.hand_over()
    manifest = runner.work / "audience" / "audience.yaml"
    manifest.write_text(manifest.read_text("utf-8") + "\n# merged after planning\n", "utf-8")

    checked = runner.run("apply", CHECK)
    assert checked.returncode == 1
    assert "::error title=Main moved since the plan was reviewed::" in checked.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl, as on the runners")
def test_the_saved_plan_can_travel_encrypted(runner: Runner) -> None:
    runner.plan_on_pull_request()
    original = (runner.work / "plan.json").read_text("utf-8")
    missing = runner.run("plan", "Encrypt the saved plan", PLAN_PASSPHRASE="")
    assert missing.returncode == 1
    assert "RECONCILE_PLAN_PASSPHRASE" in missing.stdout

    encrypted = runner.run("plan", "Encrypt the saved plan", PLAN_PASSPHRASE="correct horse")
    assert encrypted.returncode == 0, encrypted.stderr
    assert not (runner.work / "plan.json").exists()
    assert "alice@example.com" not in (runner.work / "plan.json.enc").read_bytes().decode("latin-1")
    runner.hand_over()

    wrong = runner.run("apply", "Decrypt the reviewed plan", PLAN_PASSPHRASE="wrong")
    assert wrong.returncode != 0
    decrypted = runner.run("apply", "Decrypt the reviewed plan", PLAN_PASSPHRASE="correct horse")
    assert decrypted.returncode == 0, decrypted.stderr
    assert (runner.work / "reviewed" / "plan.json").read_text("utf-8") == original
    applied = runner.run("apply", "Apply the reviewed plan")
    assert applied.returncode == 0, applied.stderr


def test_drift_check_reports_changes_then_none_and_fails_on_errors(runner: Runner) -> None:
    drifted = runner.run("drift", "Check for drift")
    assert drifted.returncode == 0, drifted.stderr
    assert runner.drift() == "true"
    assert runner.outputs()["exit-code"] == "2"
    assert "Plan: 28 to create" in runner.summary.read_text("utf-8")
    assert runner.outputs()["markdown-file"] == str(runner.work / "drift.md")
    assert (runner.work / "drift.md").read_text("utf-8").startswith("### reconcile plan")

    failed = runner.run("drift", "Fail on drift")
    assert failed.returncode == 1
    assert "::error title=Audience drift::" in failed.stdout

    subprocess.run(
        [str(RECONCILE), "apply", "--sandbox", "--auto-approve", "audience"],
        cwd=runner.work,
        env=runner.env,
        capture_output=True,
        check=True,
    )
    clean = runner.run("drift", "Check for drift")
    assert clean.returncode == 0, clean.stderr
    assert runner.drift() == "false"

    (runner.work / "audience" / "broken.yaml").write_text("contacts: [{email: nope}]\n", "utf-8")
    broken = runner.run("drift", "Check for drift")
    assert broken.returncode == 1
    assert "::error title=reconcile drift failed::reconcile exited 1" in broken.stdout
    assert runner.drift() is None


def test_redacted_comment_and_issue_but_a_complete_saved_plan(runner: Runner) -> None:
    runner.env["REDACT"] = "true"
    planned = runner.run("plan", "Plan")
    assert planned.returncode == 0, planned.stderr
    assert "alice@example.com" not in (runner.work / "plan.md").read_text("utf-8")
    assert "alice@example.com" in (runner.work / "plan.json").read_text("utf-8")  # apply needs it

    drifted = runner.run("drift", "Check for drift")
    assert drifted.returncode == 0, drifted.stderr
    assert runner.drift() == "true"
    assert "alice@example.com" not in runner.summary.read_text("utf-8")


# --- the github-script steps, run by node against a recorded GitHub API ------------------------

HARNESS = """
const state = JSON.parse(process.env.MOCK_STATE);
const calls = [];
const outputs = {};
const record = (name) => async (params) => { calls.push([name, params]); return { data: {} }; };
const list = (items) => async () => ({ data: items });
const github = {
  paginate: async (method, params) => (await method(params)).data,
  rest: {
    issues: {
      listComments: list(state.comments ?? []),
      listForRepo: list(state.issues ?? []),
      createComment: record('createComment'),
      updateComment: record('updateComment'),
      create: record('create'),
      update: record('update'),
    },
    repos: { listPullRequestsAssociatedWithCommit: list(state.prs ?? []) },
    actions: {
      getWorkflowRun: async ({ run_id }) => ({ data: state.runs[run_id] }),
      listWorkflowRuns: async ({ head_sha, event }) => ({
        data: Object.values(state.runs).filter((r) => r.head_sha === head_sha && r.event === event),
      }),
      listWorkflowRunArtifacts: async ({ run_id }) => ({
        data: { artifacts: (state.artifacts ?? {})[run_id] ?? [] },
      }),
    },
  },
};
const context = {
  repo: { owner: 'o', repo: 'r' }, serverUrl: 'https://github.test', runId: 100,
  eventName: state.event, sha: 'merge1', ref: 'refs/heads/main',
  payload: { pull_request: { number: 7 } },
};
const core = {
  setFailed: (message) => calls.push(['setFailed', message]),
  setOutput: (name, value) => { outputs[name] = value; },
};
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('github', 'context', 'core', 'require', process.env.SCRIPT)(
  github, context, core, require,
).then(() => process.stdout.write(JSON.stringify({ calls, outputs })));
"""
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="needs node, as actions/github-script")


def github_script(
    job: str, name: str, cwd: Path, state: dict[str, Any], **env: str
) -> tuple[list[list[Any]], dict[str, str]]:
    """Run a github-script step's script in node with `github` recording every call
    (job "action": the step of action.yml)."""
    if job == "action":
        found = action_step(name)
    else:
        (found,) = [s for s in uses(job, "actions/github-script") if s["name"] == name]
    fixed = {k: str(v) for k, v in found.get("env", {}).items() if "${{" not in str(v)}
    return node_script(found["with"]["script"], cwd, state, **fixed, **env)


def node_script(
    script: str, cwd: Path, state: dict[str, Any], **env: str
) -> tuple[list[list[Any]], dict[str, str]]:
    assert NODE is not None
    result = subprocess.run(
        [NODE, "-e", HARNESS],
        cwd=cwd,
        env={
            **os.environ,
            **env,
            "SCRIPT": script,
            "MOCK_STATE": json.dumps(state),
            "MANIFESTS": "audience/",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ran = json.loads(result.stdout)
    return ran["calls"], ran["outputs"]


COMMENT = "Post or update the plan comment"
MARKER = "<!-- reconcile-plan -->"


@needs_node
def test_the_plan_comment_is_created_once_then_updated(tmp_path: Path) -> None:
    (tmp_path / "plan.md").write_text("### reconcile plan (mailjet)\n", "utf-8")
    env = {"EXIT_CODE": "0", "PLANNED_SHA": "abcdef123", "MARKDOWN_FILE": str(tmp_path / "plan.md")}
    calls, _ = github_script("action", COMMENT, tmp_path, {"comments": []}, **env)
    [(method, params)] = calls
    assert method == "createComment"
    assert params["issue_number"] == 7
    assert params["body"].startswith(MARKER + "\n### reconcile plan (mailjet)")
    assert "abcdef1" in params["body"]

    comments = [
        {"id": 1, "user": {"type": "User"}, "body": f"quoting {MARKER}"},
        {"id": 2, "user": {"type": "Bot"}, "body": f"{MARKER}\nold plan"},
    ]
    calls, _ = github_script("action", COMMENT, tmp_path, {"comments": comments}, **env)
    [(method, params)] = calls
    assert method == "updateComment"
    assert params["comment_id"] == 2
    assert "### reconcile plan (mailjet)" in params["body"]

    calls, _ = github_script(
        "action", COMMENT, tmp_path, {"comments": comments}, EXIT_CODE="1", PLANNED_SHA="a"
    )
    [(method, params)] = calls
    assert method == "updateComment"
    assert "**reconcile plan failed**" in params["body"]


FIND = "Find the run whose plan was reviewed"


def merge_state(**changes: Any) -> dict[str, Any]:
    def run(number: int, conclusion: str, event: str = "pull_request") -> dict[str, Any]:
        return {
            "id": 500 + number,
            "run_number": number,
            "run_attempt": 1,
            "workflow_id": 9,
            "event": event,
            "head_sha": "head7",
            "conclusion": conclusion,
            "status": "completed",
            "html_url": f"https://github.test/runs/{500 + number}",
        }

    state: dict[str, Any] = {
        "event": "push",
        "prs": [
            {"number": 3, "merged_at": None, "base": {"ref": "main"}, "head": {"sha": "x"}},
            {
                "number": 7,
                "merged_at": "2026-11-24T00:00:00Z",
                "merge_commit_sha": "merge1",
                "base": {"ref": "main"},
                "head": {"sha": "head7"},
            },
        ],
        "runs": {
            "100": {**run(0, "in_progress", "push"), "id": 100, "head_sha": "merge1"},
            "511": run(11, "success"),
            "512": run(12, "success"),
        },
        "artifacts": {"512": [{"name": "reconcile-plan", "expired": False}]},
    }
    return state | changes


@needs_node
def test_the_merge_finds_the_latest_plan_run_of_the_merged_pull_request(tmp_path: Path) -> None:
    calls, outputs = github_script("apply", FIND, tmp_path, merge_state(), PLAN_RUN_ID="")
    assert calls == []
    assert outputs == {
        "pull_request": "7",
        "run_id": "512",
        "run_url": "https://github.test/runs/512",
    }


@needs_node
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prs": []}, "without a merged pull request"),
        ({"artifacts": {"512": [{"name": "reconcile-plan", "expired": True}]}}, "no unexpired"),
        ({"artifacts": {"511": [{"name": "reconcile-plan", "expired": False}]}}, "no unexpired"),
    ],
)
def test_the_merge_applies_nothing_without_a_reviewed_plan(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    calls, outputs = github_script("apply", FIND, tmp_path, merge_state(**changes), PLAN_RUN_ID="")
    [(method, text)] = calls
    assert method == "setFailed"
    assert message in text
    assert "run_id" not in outputs


@needs_node
def test_the_merge_refuses_when_the_last_plan_run_failed(tmp_path: Path) -> None:
    state = merge_state()
    state["runs"]["513"] = {**state["runs"]["512"], "id": 513, "run_number": 13}
    state["runs"]["513"]["conclusion"] = "failure"
    calls, outputs = github_script("apply", FIND, tmp_path, state, PLAN_RUN_ID="")
    [(method, text)] = calls
    assert method == "setFailed"
    assert "ended 'failure'" in text
    assert "run_id" not in outputs


@needs_node
def test_apply_by_hand_takes_the_given_plan_run(tmp_path: Path) -> None:
    state = merge_state(event="workflow_dispatch")
    calls, outputs = github_script("apply", FIND, tmp_path, state, PLAN_RUN_ID="512")
    assert calls == []
    assert outputs["run_id"] == "512"
    calls, _ = github_script("apply", FIND, tmp_path, state, PLAN_RUN_ID="")
    assert calls[0][0] == "setFailed"
    assert "needs plan_run_id" in calls[0][1]


DRIFT_ISSUE = "Open, update or close the drift issue"


@needs_node
def test_drift_opens_then_updates_then_closes_one_issue(tmp_path: Path) -> None:
    (tmp_path / "drift.md").write_text("Plan: 1 to create\n", "utf-8")
    env = {"DRIFT_MD": str(tmp_path / "drift.md")}
    calls, _ = github_script("drift", DRIFT_ISSUE, tmp_path, {"issues": []}, DRIFT="true", **env)
    [(method, params)] = calls
    assert method == "create"
    assert params["labels"] == ["reconcile-drift"]
    assert params["body"].startswith("<!-- reconcile-drift -->")
    assert "Plan: 1 to create" in params["body"]

    issues = [{"number": 4, "body": "<!-- reconcile-drift -->\nold"}]
    calls, _ = github_script(
        "drift", DRIFT_ISSUE, tmp_path, {"issues": issues}, DRIFT="true", **env
    )
    [(method, params)] = calls
    assert (method, params["issue_number"]) == ("update", 4)
    assert "state" not in params

    calls, _ = github_script("drift", DRIFT_ISSUE, tmp_path, {"issues": issues}, DRIFT="false")
    assert [m for m, _ in calls] == ["createComment", "update"]
    assert calls[1][1]["state"] == "closed"

    calls, _ = github_script("drift", DRIFT_ISSUE, tmp_path, {"issues": []}, DRIFT="false")
    assert calls == []


# --- the reusable action (action.yml) --------------------------------------------------------


def test_action_is_composite_with_its_inputs_and_outputs() -> None:
    assert ACTION["runs"]["using"] == "composite"
    inputs = ACTION["inputs"]
    for name in ("manifests", "command", "redact", "args", "working-directory", "python-version"):
        assert name in inputs, name
        assert inputs[name]["description"], name
    assert inputs["command"]["default"] == "plan"
    assert inputs["redact"]["default"] == "true"  # safe for public repositories by default
    assert set(ACTION["outputs"]) >= {"exit-code", "plan-file", "markdown-file", "drift"}
    for name, output in ACTION["outputs"].items():
        assert output["value"] == "${{ steps.run.outputs." + name + " }}"
    for item in ACTION["runs"]["steps"]:
        if "run" in item:
            assert item["shell"] == "bash", item["name"]
    assert action_step("Install reconcile")["env"]["ACTION_PATH"] == "${{ github.action_path }}"


def test_action_takes_every_input_through_the_environment() -> None:
    ran = action_step("Run reconcile")
    assert ran["working-directory"] == "${{ inputs.working-directory }}"
    mentioned = set(re.findall(r"inputs\.([a-z-]+)", json.dumps(ACTION["runs"])))
    assert mentioned <= set(ACTION["inputs"])
    assert set(ACTION["inputs"]) <= mentioned  # every input is used


def test_action_plans_in_a_working_directory_with_extra_arguments(runner: Runner) -> None:
    (runner.work / "accounts").mkdir()
    shutil.move(runner.work / "audience", runner.work / "accounts" / "audience")
    inputs = {"working-directory": "accounts", "manifests": "audience", "redact": "false"}
    planned = runner.action({**inputs, "args": "--strict --quiet"})
    assert planned.returncode == 0, planned.stderr
    outputs = runner.outputs()
    assert outputs["exit-code"] == "0"
    assert outputs["plan-file"] == str(runner.work / "accounts" / "plan.json")
    assert outputs["markdown-file"] == str(runner.work / "accounts" / "plan.md")
    assert outputs["has-changes"] == "true"
    assert json.loads((runner.work / "accounts" / "plan.json").read_text("utf-8"))["changes"]
    assert "alice@example.com" in runner.summary.read_text("utf-8")  # redact: false

    wrong = runner.action({**inputs, "args": "--no-such-option"})
    assert wrong.returncode == 1
    assert runner.outputs()["exit-code"] == "1"
    assert "::error title=reconcile plan failed::reconcile exited 1" in wrong.stdout

    unknown = runner.action({**inputs, "command": "destroy"})
    assert unknown.returncode == 1
    assert "command must be validate, plan, apply or drift" in unknown.stdout


def test_action_validates_offline(runner: Runner) -> None:
    assert runner.action({"command": "validate"}).returncode == 0
    (runner.work / "audience" / "broken.yaml").write_text(BROKEN, "utf-8")
    broken = runner.action({"command": "validate"})
    assert broken.returncode == 1
    assert "broken.yaml:4" in broken.stderr


def test_action_drift_fails_only_when_asked(runner: Runner) -> None:
    assert runner.action({"command": "drift"}).returncode == 0
    assert runner.drift() == "true"
    failing = runner.action({"command": "drift", "fail-on-drift": "true"})
    assert failing.returncode == 1
    assert "::error title=Audience drift::" in failing.stdout


@needs_node
def test_action_comment_is_one_per_account_when_named(tmp_path: Path) -> None:
    (tmp_path / "plan.md").write_text("### reconcile plan (mailjet)\n", "utf-8")
    env = {"EXIT_CODE": "0", "PLANNED_SHA": "abcdef123", "MARKDOWN_FILE": str(tmp_path / "plan.md")}
    other = [{"id": 5, "user": {"type": "Bot"}, "body": f"{MARKER}\nthe unnamed plan"}]
    state = {"comments": other}
    calls, _ = github_script("action", COMMENT, tmp_path, state, COMMENT_NAME="acme-eu", **env)
    [(method, params)] = calls
    assert method == "createComment"  # another account's comment is left alone
    assert params["body"].startswith("<!-- reconcile-plan:acme-eu -->\n**Account `acme-eu`**")
    mine = [{"id": 6, "user": {"type": "Bot"}, "body": "<!-- reconcile-plan:acme-eu -->\nold"}]
    state = {"comments": other + mine}
    calls, _ = github_script("action", COMMENT, tmp_path, state, COMMENT_NAME="acme-eu", **env)
    assert [(m, p.get("comment_id")) for m, p in calls] == [("updateComment", 6)]


# --- the policy check on the plan JSON -----------------------------------------------------


@pytest.fixture(scope="module")
def plans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return sandbox_plans(tmp_path_factory.mktemp("plans"))


def policy(plan: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(POLICY), str(plan), *args],
        env={**os.environ, "GITHUB_ACTIONS": "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_policy_passes_a_plan_that_erases_and_unsubscribes_nobody(plans: dict[str, Path]) -> None:
    result = policy(plans["create"], "--max-opt-outs", "0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policy check passed (28 change(s))." in result.stdout


def test_policy_fails_a_plan_that_erases_anyone(plans: dict[str, Path]) -> None:
    result = policy(plans["erase"])
    assert result.returncode == 1
    assert "::error title=Plan policy::the plan erases 2 contact(s): " in result.stdout
    assert "contact:b***@example.com" in result.stdout
    assert "bob@example.com" not in result.stdout  # CI logs are often public
    assert policy(plans["erase"], "--allow-erase").returncode == 0


def test_policy_fails_a_plan_that_unsubscribes_more_than_allowed(plans: dict[str, Path]) -> None:
    assert policy(plans["unsubscribe"], "--max-opt-outs", "2").returncode == 0
    result = policy(plans["unsubscribe"], "--max-opt-outs", "1")
    assert result.returncode == 1
    assert (
        "takes 2 people out of mailings (2 unsubscribe), more than the 1 allowed" in result.stdout
    )


def test_policy_refuses_what_is_not_a_format_1_plan(plans: dict[str, Path], tmp_path: Path) -> None:
    future = json.loads(plans["create"].read_text("utf-8")) | {"format_version": 2}
    (tmp_path / "future.json").write_text(json.dumps(future), "utf-8")
    result = policy(tmp_path / "future.json")
    assert result.returncode == 2
    assert "format_version 2" in result.stderr
    (tmp_path / "junk.json").write_text("[]", "utf-8")
    assert policy(tmp_path / "junk.json").returncode == 2


def test_the_workflow_runs_the_policy_on_the_pull_request_plan(
    runner: Runner, plans: dict[str, Path]
) -> None:
    check = "Check the plan against policy"
    names = [s.get("name") for s in JOBS["plan"]["steps"]]
    assert names.index("Plan") < names.index(check) < names.index("Upload the plan")
    shutil.copy(plans["erase"], runner.work / "plan.json")
    env = {
        "POLICY_CHECK": str(POLICY),
        "POLICY_MAX_OPT_OUTS": WORKFLOW["env"]["POLICY_MAX_OPT_OUTS"],
    }
    failed = runner.run("plan", check, **env)
    assert failed.returncode == 1
    assert "the plan erases 2 contact(s)" in failed.stdout
    shutil.copy(plans["create"], runner.work / "plan.json")
    assert runner.run("plan", check, **env).returncode == 0
    assert runner.run("plan", check, POLICY_CHECK="").returncode == 0  # "" skips it


# --- many accounts ---------------------------------------------------------------------------

MANY_JOBS: dict[str, dict[str, Any]] = MANY["jobs"]
ACCOUNT_CREDENTIALS = (*CREDENTIALS, "MAILCHIMP_API_KEY")


def test_many_accounts_runs_a_matrix_over_the_changed_accounts() -> None:
    assert MANY["permissions"] == {}
    assert MANY_JOBS["accounts"]["outputs"]["matrix"] == "${{ steps.list.outputs.matrix }}"
    for name in ("plan", "apply", "drift"):
        job = MANY_JOBS[name]
        assert job["needs"] == "accounts"
        assert job["strategy"]["matrix"] == "${{ fromJSON(needs.accounts.outputs.matrix) }}"
        assert job["strategy"]["fail-fast"] is False, name
        assert job["permissions"]["contents"] == "read"
    assert "'pull_request'" in MANY_JOBS["plan"]["if"]
    assert "'push'" in MANY_JOBS["apply"]["if"]
    assert "'schedule'" in MANY_JOBS["drift"]["if"]


def test_many_accounts_serialises_applies_per_account() -> None:
    concurrency = MANY_JOBS["apply"]["concurrency"]
    assert concurrency == {
        "group": "reconcile-apply-${{ matrix.account.name }}",
        "cancel-in-progress": False,
    }
    assert "matrix.account.name" in MANY_JOBS["plan"]["concurrency"]["group"]
    assert "write" not in MANY_JOBS["apply"]["permissions"].values()


def test_many_accounts_gives_each_job_only_its_accounts_secrets() -> None:
    for name in ("plan", "apply", "drift"):
        env = MANY_JOBS[name]["env"]
        for variable in ACCOUNT_CREDENTIALS:
            expected = f"${{{{ secrets[format('{variable}_{{0}}', matrix.account.secret)] }}}}"
            assert env[variable] == expected, (name, variable)
    assert "env" not in MANY_JOBS["accounts"]
    for key, value in strings(MANY):
        if re.search(r"KEY|SECRET|PROJECT_ID|TOKEN", key):
            assert value.startswith(("${{ secrets[", "${{ github.token }}")), key


def test_many_accounts_plans_and_applies_each_accounts_own_artifact() -> None:
    plan = step("plan", "Plan", MANY)
    assert plan["with"]["manifests"] == "${{ matrix.account.dir }}"
    assert plan["with"]["comment-name"] == "${{ matrix.account.name }}"
    (upload,) = uses("plan", "actions/upload-artifact", MANY)
    (download,) = uses("apply", "actions/download-artifact", MANY)
    find = step("apply", FIND, MANY)
    artifact = "reconcile-plan-${{ matrix.account.name }}"
    assert upload["with"]["name"] == download["with"]["name"] == find["env"]["PLAN_ARTIFACT"]
    assert upload["with"]["name"] == artifact
    assert find["with"]["script"] == step("apply", FIND)["with"]["script"]  # one script
    assert step("apply", "Apply the reviewed plan", MANY)["with"]["command"] == "apply"
    assert step("drift", "Check for drift", MANY)["with"]["fail-on-drift"] == "true"

    def hash_line(script: str) -> str:
        (line,) = [ln for ln in script.splitlines() if ln.startswith("manifests_sha256=")]
        return line

    planned = hash_line(step("plan", "Record what the plan was made from", MANY)["run"])
    assert planned == hash_line(step("apply", CHECK, MANY)["run"])
    assert planned == hash_line(step("plan", "Record what the plan was made from")["run"])


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_many_accounts_lists_the_changed_accounts_then_all_at_night(runner: Runner) -> None:
    accounts = runner.work / "accounts"
    for name in ("acme-eu", "acme-us", "beta.shop"):
        shutil.copytree(runner.work / "audience", accounts / name)
    (accounts / "README.md").write_text("one directory per account\n", "utf-8")
    git(runner.work, "init", "-q")
    git(runner.work, "add", "-A")
    git(runner.work, "commit", "-q", "-m", "accounts")
    base = git(runner.work, "rev-parse", "HEAD")
    (accounts / "acme-us" / "audience.yaml").write_text(
        (accounts / "acme-us" / "audience.yaml").read_text("utf-8") + "# changed\n", "utf-8"
    )
    git(runner.work, "commit", "-q", "-am", "change acme-us")
    env = {"ACCOUNTS": MANY["env"]["ACCOUNTS"]}

    def listed(event: str, base_sha: str) -> list[dict[str, str]]:
        ran = runner.run(
            "accounts", "List the accounts", MANY, EVENT=event, BASE_SHA=base_sha, **env
        )
        assert ran.returncode == 0, ran.stderr
        return list(json.loads(runner.outputs()["matrix"])["account"])

    assert listed("pull_request", base) == [
        {"name": "acme-us", "dir": "accounts/acme-us/", "secret": "ACME_US"}
    ]
    nightly = listed("schedule", "")
    assert [a["name"] for a in nightly] == ["acme-eu", "acme-us", "beta.shop"]
    assert nightly[2]["secret"] == "BETA_SHOP"
    assert len(listed("push", "0" * 40)) == 3  # a new branch: no base to compare with

    account = nightly[1]
    planned = runner.run("plan", "Plan", MANY, matrix={"account": account}, REDACT="false")
    assert planned.returncode == 0, planned.stderr
    assert runner.outputs()["plan-file"] == str(runner.work / "plan.json")
    assert "### reconcile plan (mailjet)" in runner.summary.read_text("utf-8")


# --- pre-commit ------------------------------------------------------------------------------


def hook() -> dict[str, Any]:
    hooks = load_yaml(HOOKS_FILE)
    (found,) = [h for h in hooks if h["id"] == "reconcile-validate"]
    return dict(found)


def run_hook(*paths: Path) -> subprocess.CompletedProcess[str]:
    entry = shlex.split(hook()["entry"])
    assert entry[0] == "reconcile"
    return subprocess.run(
        [str(RECONCILE), *entry[1:], *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hook_validates_the_whole_manifest_directory() -> None:
    found = hook()
    assert found["language"] == "python"
    assert found["pass_filenames"] is False  # files reference each other: validate them together
    files = re.compile(found["files"])
    assert all(files.search(n) for n in ("a/people.yaml", "b.yml", "contacts.csv"))
    assert not files.search("reconcile/cli.py")


def test_hook_entry_passes_a_valid_manifest() -> None:
    result = run_hook(QUICKSTART)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Valid: 1 file(s)")


def test_hook_entry_fails_a_broken_manifest(tmp_path: Path) -> None:
    (tmp_path / "audience.yaml").write_text(BROKEN, encoding="utf-8")
    result = run_hook(tmp_path)
    assert result.returncode == 1
    assert "audience.yaml:4" in result.stderr
    assert "nowhere" in result.stderr


def test_example_pre_commit_config_uses_the_hook_on_the_workflows_directory() -> None:
    config = load_yaml(CI / "pre-commit-config.yaml")
    (repo,) = config["repos"]
    (used,) = repo["hooks"]
    assert used["id"] == hook()["id"]
    assert used["args"] == [WORKFLOW["env"]["MANIFESTS"]]
    assert used["args"] == hook()["args"]


def test_action_takes_arguments_with_spaces_one_per_line(runner: Runner) -> None:
    """`args` one per line: a --target glob holding a space reaches reconcile whole."""
    inputs = {"redact": "false", "args": "--target\nlist:beta test*\n--quiet"}
    planned = runner.action(inputs)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads((runner.work / "plan.json").read_text("utf-8"))
    assert plan["partial"] == {"target": ["list:beta test*"], "exclude": []}
