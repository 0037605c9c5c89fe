"""The aiobamboo command, driven as a person would: subprocesses on a SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    build_tree,
)

FLOWS = textwrap.dedent(
    """
    from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, Var, build_tree
    from aiobamboo.component import Component, Service


    class Greet(Service):
        async def execute(self, data, parent_data):
            data.outputs.greeting = "hello " + str(data.get_one_of_inputs("who"))
            return True


    class Approve(Service):
        __need_schedule__ = True

        async def execute(self, data, parent_data):
            return True

        async def schedule(self, data, parent_data, callback_data=None):
            data.outputs.approved = callback_data
            return True


    class Check(Service):
        async def execute(self, data, parent_data):
            return bool(data.get_one_of_inputs("ok"))


    class GreetComponent(Component):
        code = "cli_greet"
        bound_service = Greet


    class ApproveComponent(Component):
        code = "cli_approve"
        bound_service = Approve


    class CheckComponent(Component):
        code = "cli_check"
        bound_service = Check


    def build():
        start = EmptyStartEvent(name="start")
        greet = ServiceActivity(component_code="cli_greet", name="greet")
        greet.component.inputs.who = Var(type=Var.SPLICE, value="${who}")
        approve = ServiceActivity(component_code="cli_approve", name="approve")
        check = ServiceActivity(component_code="cli_check", name="check")
        check.component.inputs.ok = Var(type=Var.PLAIN, value=False)
        start.extend(greet).extend(approve).extend(check).extend(EmptyEndEvent(name="end"))
        tree = build_tree(start)
        tree["name"] = "cli flow"
        return tree


    def greeting_only():
        start = EmptyStartEvent()
        greet = ServiceActivity(component_code="cli_greet", name="greet")
        greet.component.inputs.who = Var(type=Var.PLAIN, value="yaml")
        start.extend(greet).extend(EmptyEndEvent())
        return build_tree(start)
    """
)


class Cli:
    """Runs ``aiobamboo`` in a folder of its own, the database named by the environment."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "flows.py").write_text(FLOWS)
        self.env = {**os.environ, "AIOBAMBOO_DB": str(folder / "flows.db")}
        self.env.pop("PYTHONPATH", None)  # the current directory is importable by itself

    def __call__(self, *args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        """Run the command; its exit status must be ``code`` (None: any)."""
        done = subprocess.run(
            [sys.executable, "-m", "aiobamboo.cli", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if code is not None:
            assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "aiobamboo.cli", *args],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)


def _nodes(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: entry}`` of a nested state tree drawn with names."""
    found: dict[str, dict[str, Any]] = {}

    def walk(entry: dict[str, Any]) -> None:
        for child in entry["children"].values():
            found[child["name"]] = child
            walk(child)

    for root in tree.values():  # none while no worker has started the pipeline
        walk(root)
    return found


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_a_pipeline_from_run_to_purge(cli: Cli) -> None:
    started = cli.json("run", "flows:build", "--import", "flows", "--data", "who=tester")
    root = started["id"]
    # No worker holds the file: the command ran the pipeline until it waited.
    nodes = _nodes(cli.json("status", root))
    assert nodes["greet"]["state"] == "FINISHED"
    assert nodes["approve"]["state"] == "RUNNING"
    assert nodes["approve"]["type"] == "ServiceActivity"
    drawn = cli("status", root).stdout
    assert "greet" in drawn
    assert "approve" in drawn
    assert nodes["approve"]["id"] in drawn

    # Someone follows it live meanwhile; the watch ends with the pipeline.
    watch = cli.start("status", root, "--watch", "--interval", "0.1")
    assert watch.stdout is not None
    first = ""  # its first drawing, up to a blank line (or the end, if it failed)
    while (line := watch.stdout.readline()) not in ("\n", ""):
        first += line
    assert "approve" in first
    # explain says what it waits for, and which call would move it.
    explained = cli("explain", root).stdout
    assert f"callback at {nodes['approve']['id']}" in explained, explained
    assert f"unblock: callback(runtime, '{nodes['approve']['id']}'" in explained, explained
    assert cli.json("explain", root)["waits"][0]["kind"] == "callback"
    cli("callback", nodes["approve"]["id"], "--data", '{"approved": true}', "--import", "flows")
    nodes = _nodes(cli.json("status", root))
    assert nodes["check"]["state"] == "FAILED"  # its input says not ok
    cli("retry", nodes["check"]["id"], "--data", '{"ok": true}', "--import", "flows")
    tree = cli.json("status", root)
    assert tree[root]["state"] == "FINISHED"
    watched, _ = watch.communicate(timeout=30)
    assert watch.returncode == 0, watched
    last = [d for d in watched.split("\n\n") if d.strip()][-1].splitlines()
    assert last[1].split()[:4] == ["cli", "flow", "Pipeline", "FINISHED"], last
    history = cli.json("history", nodes["check"]["id"])
    assert len(history) == 1
    assert history[0]["inputs"]["ok"] is False

    listed = cli.json("list", "--state", "FINISHED")
    assert [(p["id"], p["name"]) for p in listed["pipelines"]] == [(root, "cli flow")]
    assert root in cli("list").stdout

    # A second one waits for its callback past --timeout, then is revoked.
    waited = cli("run", "flows:build", "--import", "flows", "--wait", "--timeout", "1", code=4)
    assert "timed out" in waited.stderr
    second = cli.json("list", "--state", "RUNNING")["pipelines"][0]["id"]
    cli("pause", second, "--import", "flows")
    cli("resume", second, "--import", "flows")
    cli("revoke", second, "--import", "flows")
    refused = cli("pause", second, code=1)
    assert "REVOKED" in refused.stderr or "revoked" in refused.stderr.lower()
    cli("status", "p-no-such-pipeline", code=3)

    purged = cli.json("purge", "--finished-before", "now")
    assert purged["purged"] == 2
    assert cli.json("list")["pipelines"] == []
    cli("status", root, code=3)
    assert "up to date" in cli("migrate").stdout


def test_a_command_drives_only_the_pipelines_it_starts_or_operates_on(cli: Cli) -> None:
    """A command acting as the worker of a file no worker holds leaves the other
    pipelines alone: it may not know their components (here, nothing is imported)."""
    waiting = cli.json("run", "flows:build", "--import", "flows", "--data", "who=a")["id"]
    approve = _nodes(cli.json("status", waiting))["approve"]
    assert approve["state"] == "RUNNING"
    # A pipeline with no component: start, fork, join, end.
    start, fork, join = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    start.extend(fork).connect(join)
    join.extend(EmptyEndEvent())
    (cli.folder / "plain.json").write_text(json.dumps(build_tree(start)))
    cli("run", "plain.json", "--wait")
    assert _nodes(cli.json("status", waiting))["approve"]["state"] == "RUNNING"
    cli("callback", approve["id"], "--data", '{"approved": true}', "--import", "flows")
    assert _nodes(cli.json("status", waiting))["approve"]["state"] == "FINISHED"


def test_run_wait_prints_progress_and_exits_by_the_end_state(cli: Cli) -> None:
    import yaml

    sys.path.insert(0, str(cli.folder))
    try:
        import flows  # type: ignore[import-not-found]

        tree = flows.greeting_only()
    finally:
        sys.path.remove(str(cli.folder))
        sys.modules.pop("flows", None)
    (cli.folder / "tree.yaml").write_text(yaml.safe_dump(tree))
    (cli.folder / "tree.json").write_text(json.dumps(flows_tree_again(cli)))
    done = cli("run", "tree.yaml", "--import", "flows", "--wait", "--timeout", "20")
    assert "greet" in done.stdout
    assert "FINISHED" in done.stdout.splitlines()[-1]
    result = cli.json("run", "tree.json", "--import", "flows", "--wait", "--timeout", "20")
    assert result["state"] == "FINISHED"
    # Without --import the component is unknown: the node fails, and so does the command.
    (cli.folder / "other.json").write_text(json.dumps(flows_tree_again(cli)))
    failed = cli("run", "other.json", "--wait", "--timeout", "20", code=1)
    assert "FAILED" in failed.stdout


def flows_tree_again(cli: Cli) -> dict[str, Any]:
    """Another tree (fresh ids) from the flows module, built in a subprocess."""
    code = "import json, flows; print(json.dumps(flows.greeting_only()))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cli.folder, capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def test_bad_input_is_refused_with_a_line_and_an_exit_code(cli: Cli) -> None:
    missing = cli("run", "nowhere.json", code=2)
    assert "cannot read nowhere.json" in missing.stderr
    assert "Traceback" not in missing.stderr
    (cli.folder / "broken.json").write_text("{")
    assert "not valid JSON" in cli("run", "broken.json", code=2).stderr
    assert "neither" in cli("run", "no-colon", code=2).stderr
    assert "cannot import" in cli("run", "flows:build", "--import", "nope_mod", code=2).stderr
    assert "no function" in cli("run", "flows:nothing", code=2).stderr
    assert "--data" in cli("run", "flows:build", "--data", "novalue", code=2).stderr
    assert "--finished-before" in cli("purge", "--finished-before", "soon", code=2).stderr
    assert "callback data" in cli("callback", "n1", "--data", "{", code=2).stderr
    cli("--db", "x", code=2)  # options go after the command
    assert "no database at missing.db" in cli("list", "--db", "missing.db", code=5).stderr
    assert not (cli.folder / "missing.db").exists()
    (cli.folder / "not-a-db").write_text("this is not a database" * 100)
    assert "not-a-db" in cli("list", "--db", "not-a-db", code=5).stderr


def test_a_closed_pipe_ends_quietly(cli: Cli) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aiobamboo.cli", "demo"],
        cwd=cli.folder,
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"aiobamboo demo")
    proc.stdout.close()  # as `aiobamboo demo | head -1` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert err == b""
    assert list(cli.folder.glob("*.db")) == []  # the demo's file was temporary


def test_bench_runs_the_scenarios_beside_the_database_and_leaves_nothing(cli: Cli) -> None:
    out = cli.json("bench", "--scenario", "S3", "--scenario", "S5", "--pipelines", "20")
    s3, s5 = out["results"]["S3"], out["results"]["S5"]
    assert s3["nodes"] > 100
    assert s3["nodes_per_s"] > 0
    assert s5["callbacks_per_s"] > 0
    assert s5["callback_p99_ms"] >= s5["callback_p50_ms"]
    assert s5["peak_rss_mb"] > 0
    table = cli("bench", "--scenario", "S3").stdout
    assert table.splitlines()[0].split()[:3] == ["scenario", "seconds", "nodes/s"]
    assert sorted(p.name for p in cli.folder.iterdir() if p.name != "__pycache__") == ["flows.py"]
    assert "--workers needs" in cli("bench", "--workers", "2", code=2).stderr


def _wait_for_node(cli: Cli, root: str, name: str, state: str, *options: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        node = _nodes(cli.json("status", root, *options)).get(name)
        if node is not None and node["state"] == state:
            return node
        assert time.monotonic() < deadline, (name, state, node)
        time.sleep(0.1)


@pytest.mark.postgres
def test_a_worker_runs_what_the_commands_start_and_operate_on_postgres(cli: Cli) -> None:
    from conftest import PG_DSN, REQUIRE_PG

    schema = "cli_" + uuid.uuid4().hex[:10]
    cli.env["AIOBAMBOO_DB"] = PG_DSN
    probe = cli("migrate", "--schema", schema, code=None)
    if probe.returncode != 0:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_DSN} is not reachable: {probe.stderr}")
        pytest.skip(f"PostgreSQL at {PG_DSN} is not reachable")
    worker = cli.start("worker", "--schema", schema, "--import", "flows")
    try:
        started = cli.json("run", "flows:build", "--schema", schema, "--data", "who=pg")
        root = started["id"]
        approve = _wait_for_node(cli, root, "approve", "RUNNING", "--schema", schema)
        cli("callback", approve["id"], "--schema", schema, "--data", '{"approved": true}')
        check = _wait_for_node(cli, root, "check", "FAILED", "--schema", schema)
        cli("retry", check["id"], "--schema", schema, "--data", '{"ok": true}')
        _wait_for_node(cli, root, "end", "FINISHED", "--schema", schema)
        listed = cli.json("list", "--schema", schema, "--state", "FINISHED")
        assert [p["id"] for p in listed["pipelines"]] == [root]
        refused = cli("bench", "--schema", schema, "--scenario", "S3", code=2)
        assert "already holds pipelines" in refused.stderr  # it would delete them
        assert cli.json("purge", "--schema", schema, "--finished-before", "now")["purged"] == 1
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
        _drop(PG_DSN, schema)
    assert worker.returncode == 0, out


def _drop(dsn: str, schema: str) -> None:
    import anyio
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    anyio.run(drop)
