"""The shell blocks of the guides run, line by line, as the reader would type them.

Every ```sh block of every page of ``docs/`` is read; a line ending in ``\\``
continues on the next, ``#`` starts a comment. Each block is a shell session
of its own (an ``export`` lasts until the block ends) in the page's folder, a
fresh temporary directory holding the files the page's commands name
(``flows.py``, ``release.json``, ``answer.json``, the package ``myapp``, see
``FILES``). The commands of one page share one database: ``./aiobamboo.db``,
as the page says when no ``--db`` is given.

A line runs when it starts with ``aiobamboo`` (or environment assignments
followed by ``uvicorn``), and must exit 0. Every other line is listed in
``NOT_RUN`` with the reason, so that a new line the test cannot run fails
until someone decides what to do with it; an entry no page has any more fails
too.

What the test changes before running a line, so that it runs here:

- **Placeholder ids.** An id in a command (``p`` or ``e`` and 32 hex digits,
  as ``aiobamboo status`` prints them) stands for a pipeline or a node in the
  state the text around it describes: ``PLACEHOLDERS`` says which, and the
  test creates that object in the page's database before the page's blocks
  run, then puts its real id in place of the placeholder. Give each object in
  a different state its own placeholder in the docs.
- **Postgres.** A ``postgresql://`` DSN becomes the test's DSN, and every
  command on Postgres gets a fresh schema of the page (``--schema`` replaced
  or added), dropped at the end. Without a reachable server those lines are
  skipped (they fail with ``AIOBAMBOO_REQUIRE_POSTGRES=1``).
- **Long-running commands** (``worker``, ``serve``, ``uvicorn``) are started,
  stopped with SIGTERM once they report ready (a worker's "running
  pipelines" log line; the HTTP API answering), and must exit 0. Servers get
  a free ``--port``.
- **Benchmarks** run with ``--pipelines 20`` (replaced or added): the sizes
  of the page are what a benchmark measures, not what a test can afford.
- ``$NAME`` is read from the page's environment (``TOKEN`` is set).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
FENCE = re.compile(r"^ *```(\S*)[ \t]*$", re.MULTILINE)
PLACEHOLDER = re.compile(r"\b[pe][0-9a-f]{32}\b")
#: The languages a fenced block of the docs may name; ``text`` is output, not run.
LANGUAGES = {"python", "py", "sh", "text", "json", "yaml"}

#: Lines of the guides that this test does not run, and why.
NOT_RUN: dict[str, str] = {
    "git clone <the aiobamboo repository> aiobamboo && cd aiobamboo": (
        "names the reader's copy of the repository, and the test runs inside one"
    ),
    "python3 -m venv .venv && . .venv/bin/activate": (
        "the test runs in the environment the repository's development set-up made"
    ),
    "pip install .": "installs packages; the test environment has every extra installed",
    'pip install ".[postgres]"': "installs packages; the test environment has them",
    'pip install ".[yaml]"': "installs packages; the test environment has them",
    "pip install 'aiobamboo[web]'": "installs packages; the test environment has them",
}

#: The files the page's commands name, written in the page's folder before its blocks run.
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
            data.outputs.asked = True
            return True

        async def schedule(self, data, parent_data, callback_data=None):
            data.outputs.answer = callback_data
            return True


    class Fetch(Service):
        async def execute(self, data, parent_data):
            url = data.get_one_of_inputs("url")
            if not url:
                data.outputs.ex_data = "no url to fetch"
                return False
            data.outputs.fetched = url  # the docs' example fetches nothing for real
            return True


    class GreetComponent(Component):
        code = "docs_greet"
        bound_service = Greet


    class ApproveComponent(Component):
        code = "docs_approve"
        bound_service = Approve


    class FetchComponent(Component):
        code = "docs_fetch"
        bound_service = Fetch


    def _one(node):
        start = EmptyStartEvent(name="start")
        start.extend(node).extend(EmptyEndEvent(name="end"))
        return build_tree(start)


    def build_release():
        greet = ServiceActivity(component_code="docs_greet", name="greet")
        greet.component.inputs.who = Var(type=Var.SPLICE, value="${release}")
        return _one(greet)


    def greeting():
        greet = ServiceActivity(component_code="docs_greet", name="greet")
        greet.component.inputs.who = Var(type=Var.PLAIN, value="file")
        return _one(greet)


    def approval():
        return _one(ServiceActivity(component_code="docs_approve", name="approve"))


    def fetch():
        node = ServiceActivity(component_code="docs_fetch", name="fetch")
        node.component.inputs.url = Var(type=Var.PLAIN, value="")
        return _one(node)
    """
)


def _files(folder: Path) -> None:
    import json

    import yaml

    (folder / "flows.py").write_text(FLOWS)
    (folder / "myapp").mkdir()
    (folder / "myapp" / "__init__.py").write_text("")
    (folder / "myapp" / "components.py").write_text("from flows import *  # noqa: F403\n")
    (folder / "answer.json").write_text('{"approved": false}\n')
    flows = _load_flows(folder)
    (folder / "release.json").write_text(json.dumps(flows["greeting"]()))
    (folder / "release.yaml").write_text(yaml.safe_dump(flows["greeting"]()))


def _load_flows(folder: Path) -> dict[str, Any]:
    """flows.py's names, its components registered in a library of their own."""
    from unittest import mock

    from aiobamboo.component import ComponentLibrary

    library = ComponentLibrary()
    namespace: dict[str, Any] = {"__name__": "docs_flows"}
    with mock.patch.object(ComponentLibrary, "default", library):
        exec(compile((folder / "flows.py").read_text(), "flows.py", "exec"), namespace)
    namespace["library"] = library
    return namespace


# Placeholders: what each stands for, made on a runtime of the page's database.
Maker = Callable[[Any, dict[str, Any]], Awaitable[str]]


async def _node_in(runtime: Any, tree: dict[str, Any], name: str, state: str) -> str:
    """Start ``tree``; the id of its node ``name`` once that node is in ``state``."""
    from aiobamboo import api

    node_id = next(k for k, v in tree["activities"].items() if v["name"] == name)
    (await api.run_pipeline(runtime, tree)).unwrap()
    with anyio.fail_after(20):
        while True:
            found = (await api.get_children_states(runtime, node_id)).data or {}
            entry = found.get(node_id, {})
            outputs = (await api.get_execution_data_outputs(runtime, node_id)).data or {}
            # RUNNING and waiting: its execute() has run
            if entry.get("state") == state and (state != "RUNNING" or outputs.get("asked")):
                return node_id
            await anyio.sleep(0.02)


async def _finished_pipeline(runtime: Any, flows: dict[str, Any]) -> str:
    tree = flows["greeting"]()
    await _node_in(runtime, tree, "greet", "FINISHED")
    return str(tree["id"])


async def _waiting_pipeline(runtime: Any, flows: dict[str, Any]) -> str:
    tree = flows["approval"]()
    await _node_in(runtime, tree, "approve", "RUNNING")
    return str(tree["id"])


async def _waiting_node(runtime: Any, flows: dict[str, Any]) -> str:
    return await _node_in(runtime, flows["approval"](), "approve", "RUNNING")


async def _failed_node(runtime: Any, flows: dict[str, Any]) -> str:
    return await _node_in(runtime, flows["fetch"](), "fetch", "FAILED")


async def _retried_node(runtime: Any, flows: dict[str, Any]) -> str:
    from aiobamboo import api

    node_id = await _failed_node(runtime, flows)
    (await api.retry_node(runtime, node_id, data={"url": "https://example.org"})).unwrap()
    with anyio.fail_after(20):
        while True:
            found = (await api.get_children_states(runtime, node_id)).data or {}
            if found[node_id]["state"] == "FINISHED":
                break
            await anyio.sleep(0.02)
    return node_id


#: ``{placeholder: (what it stands for, how the test makes one)}``
PLACEHOLDERS: dict[str, tuple[str, Maker]] = {
    "p0c5e2c4cc6ab4a4c8f0d8a1b8e29c2a1": ("a finished pipeline", _finished_pipeline),
    "e09d58e0ae75b49da83eddbf34d9342d7": (
        "a node that failed, was retried and finished",
        _retried_node,
    ),
    "e5fdb720b2d9f4f13a86e3b59958ee070": ("a node waiting for a callback", _waiting_node),
    "ef0f7c3c565af4bfb8cb72349776aeca8": ("a node waiting for a callback", _waiting_node),
    "ed0ba6d6c0b6b465f90ef6d56ac17c4a6": ("a failed node", _failed_node),
    "e31d4d4bd5ddf4a6eb74242d8d7f2b825": ("a failed node", _failed_node),
    "ecf8120618846431a886ef6800d8d0111": ("a running node (waiting for a callback)", _waiting_node),
    "pda98350fc2294ce7b35cb47b0127c303": ("a pipeline waiting for a callback", _waiting_pipeline),
}


def blocks(page: str) -> list[str]:
    return SH_BLOCK.findall((DOCS / page).read_text())


def lines_of(block: str) -> list[str]:
    """The block's command lines: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [
        _without_comment(line) for line in joined.splitlines() if shlex.split(line, comments=True)
    ]


def _without_comment(line: str) -> str:
    """The line up to its comment (a ``#`` outside quotes, after a space), stripped."""
    quote: str | None = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip()
    return line.strip()


PAGES = sorted(p.name for p in DOCS.glob("*.md") if SH_BLOCK.search(p.read_text()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _set_option(words: list[str], option: str, value: str) -> list[str]:
    if option in words:
        words = list(words)
        words[words.index(option) + 1] = value
        return words
    return [*words, option, value]


class Page:
    """A page's folder, database and environment; runs its lines."""

    def __init__(self, page: str, folder: Path) -> None:
        from conftest import PG_DSN

        self.page = page
        self.folder = folder
        self.pg_dsn = PG_DSN
        self.schema = "docs_" + uuid.uuid4().hex[:10]
        self.used_schema = False
        self.ids: dict[str, str] = {}
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("AIOBAMBOO_") and k != "PYTHONPATH"
        }
        self.env["PATH"] = bin_dir + os.pathsep + self.env.get("PATH", "")
        self.env["TOKEN"] = "a token for the docs test"

    def prepare(self) -> None:
        _files(self.folder)
        wanted = sorted({m for b in blocks(self.page) for m in PLACEHOLDER.findall(b)})
        unknown = [m for m in wanted if m not in PLACEHOLDERS]
        assert not unknown, (
            f"{self.page}: ids the test does not know, add them to PLACEHOLDERS: {unknown}"
        )
        if wanted:
            anyio.run(self._make, wanted)

    async def _make(self, wanted: list[str]) -> None:
        from aiobamboo_sqlite import SQLiteRuntime

        flows = _load_flows(self.folder)
        # Closed again before the commands run: they carry the pipelines on themselves.
        async with SQLiteRuntime(self.folder / "aiobamboo.db", components=flows["library"]) as rt:
            for placeholder in wanted:
                self.ids[placeholder] = await PLACEHOLDERS[placeholder][1](rt, flows)

    def run_block(self, block: str) -> None:
        env = dict(self.env)
        for line in lines_of(block):
            if line in NOT_RUN:
                continue
            words = shlex.split(line)
            if words[0] == "export":
                for assignment in words[1:]:
                    name, _, value = assignment.partition("=")
                    env[name] = os.path.expandvars(value)
                continue
            prefix: dict[str, str] = {}
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                prefix[name] = value
            runnable = bool(words) and words[0] in ("aiobamboo", "uvicorn")
            assert runnable, (
                f"{self.page}: the test cannot run {line!r}: list it in NOT_RUN with the "
                "reason, or make it an aiobamboo command"
            )
            self.run_line(line, words, {**env, **prefix})

    def run_line(self, line: str, words: list[str], env: dict[str, str]) -> None:
        words = [self._substitute(w, env) for w in words]
        for name, value in list(env.items()):
            env[name] = self._substitute(value, env)
        on_postgres = any(w.startswith("postgresql://") for w in words) or env.get(
            "AIOBAMBOO_DB", ""
        ).startswith("postgresql://")
        if on_postgres:
            self._need_postgres()
            self.used_schema = True
            if words[0] == "uvicorn":
                env["AIOBAMBOO_SCHEMA"] = self.schema
            else:
                words = _set_option(words, "--schema", self.schema)
        if words[:2] == ["aiobamboo", "bench"]:
            words = _set_option(words, "--pipelines", "20")
        argv = [shutil.which(words[0], path=env["PATH"]) or words[0], *words[1:]]
        if words[0] == "uvicorn" or words[1:2] in (["serve"], ["worker"]):
            self._run_until_ready(line, argv, env)
            return
        done = subprocess.run(
            argv, cwd=self.folder, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, (
            f"{self.page}: {line!r} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )

    def _substitute(self, word: str, env: dict[str, str]) -> str:
        word = PLACEHOLDER.sub(lambda m: self.ids[m.group(0)], word)
        if word.startswith("postgresql://"):
            return self.pg_dsn
        return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), m.group(0)), word)

    def _need_postgres(self) -> None:
        from conftest import REQUIRE_PG

        reason = _postgres_unreachable(self.pg_dsn)
        if reason is not None:
            if REQUIRE_PG:
                pytest.fail(reason)
            pytest.skip(reason)

    def _run_until_ready(self, line: str, argv: list[str], env: dict[str, str]) -> None:
        port: int | None = None
        if argv[1] != "worker":
            port = _free_port()
            argv = _set_option(argv, "--port", str(port))
        proc = subprocess.Popen(
            argv,
            cwd=self.folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # uvicorn --workers: its children stop with it
        )
        try:
            assert proc.stdout is not None
            if port is None:
                _wait_for_line(proc, "running pipelines", line)
            else:
                _wait_for_http(proc, port, line)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
        assert proc.returncode == 0, f"{self.page}: {line!r} exited {proc.returncode}\n{out}"

    def close(self) -> None:
        if self.used_schema:
            _drop(self.pg_dsn, self.schema)


def _wait_for_line(proc: subprocess.Popen[str], text: str, line: str) -> None:
    """Until the process writes ``text``; read on a thread, so a silent process cannot hang us."""
    assert proc.stdout is not None
    stdout = proc.stdout
    seen: list[str] = []
    found = threading.Event()

    def read() -> None:
        for out in stdout:
            seen.append(out)
            if text in out:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 30
    while not found.wait(0.1):
        assert proc.poll() is None or found.is_set(), f"{line!r} ended: {''.join(seen)}"
        assert time.monotonic() < deadline, f"{line!r} did not report {text!r}: {''.join(seen)}"


def _wait_for_http(proc: subprocess.Popen[str], port: int, line: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"{line!r} ended at once: {proc.communicate()[0]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/openapi.json").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{line!r} did not answer on port {port}"
        time.sleep(0.1)


_pg_reason: list[str | None] = []


def _postgres_unreachable(dsn: str) -> str | None:
    if not _pg_reason:
        import asyncpg

        async def probe() -> None:
            conn = await asyncpg.connect(dsn, timeout=3)
            await conn.close()

        try:
            anyio.run(probe)
            _pg_reason.append(None)
        except Exception as exc:  # any failure to connect means: no server for this test
            _pg_reason.append(f"PostgreSQL at {dsn} is not reachable: {exc}")
    return _pg_reason[0]


def _drop(dsn: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    anyio.run(drop)


@pytest.mark.parametrize("page", PAGES)
def test_the_shell_blocks_of_the_page_run(page: str, tmp_path: Path) -> None:
    runner = Page(page, tmp_path)
    try:
        runner.prepare()
        for block in blocks(page):
            runner.run_block(block)
    finally:
        runner.close()


def test_every_line_the_test_does_not_run_is_still_in_the_docs() -> None:
    lines = {line for page in PAGES for block in blocks(page) for line in lines_of(block)}
    assert sorted(set(NOT_RUN) - lines) == []


def test_every_placeholder_is_still_in_the_docs() -> None:
    text = "".join(block for page in PAGES for block in blocks(page))
    assert sorted(set(PLACEHOLDERS) - set(PLACEHOLDER.findall(text))) == []


def test_every_fenced_block_names_its_language() -> None:
    """A block without a language is neither run nor marked as output: say which it is."""
    bad = []
    for path in sorted(DOCS.glob("*.md")):
        opening = True
        for match in FENCE.finditer(path.read_text()):
            if opening and match.group(1) not in LANGUAGES:
                line = path.read_text().count("\n", 0, match.start()) + 1
                bad.append(f"{path.name}:{line} {match.group(0).strip()!r}")
            opening = not opening
    assert bad == []


def test_a_line_the_test_cannot_run_fails_it(tmp_path: Path) -> None:
    runner = Page("cli.md", tmp_path)
    with pytest.raises(AssertionError, match="cannot run 'make install'"):
        runner.run_block("make install\n")


def test_a_failing_command_fails_the_test(tmp_path: Path) -> None:
    runner = Page("cli.md", tmp_path)
    with pytest.raises(AssertionError, match="exited 3"):
        runner.run_block("aiobamboo migrate\naiobamboo status no-such-pipeline\n")


SAMPLE = re.compile(r"^```text\n\$ (aiobamboo run .*?)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
PROGRESS = re.compile(r"^\d\d:\d\d:\d\d  (.+?) +(\w+) +([A-Z_]+)$")


def test_the_sample_output_of_run_wait_has_the_shape_of_the_real_one(tmp_path: Path) -> None:
    """cli.md shows ``run --wait`` on the demo, which waits for an approval: the real output,
    cut short by ``--timeout``, has the same first line and the same kind of lines."""
    [(command, sample)] = SAMPLE.findall((DOCS / "cli.md").read_text())
    runner = Page("cli.md", tmp_path)
    argv = [shutil.which("aiobamboo", path=runner.env["PATH"]) or "aiobamboo"]
    argv += [*shlex.split(command)[1:], "--timeout", "3"]
    done = subprocess.run(
        argv, cwd=tmp_path, env=runner.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 4, done  # the timeout ran out while the approval waits
    real = done.stdout.splitlines()
    shown = [line for line in sample.splitlines() if line != "..."]
    assert re.fullmatch(r"pipeline p[0-9a-f]{32}", real[0]), real
    assert re.fullmatch(r"pipeline p[0-9a-f]{32}", shown[0]), shown
    steps = [PROGRESS.match(line) for line in real[1:]]
    assert all(steps), real
    seen = {m.groups() for m in steps if m}
    for line in shown[1:]:
        match = PROGRESS.match(line)
        assert match, f"cli.md's sample line {line!r} does not look like run --wait's"
        assert match.groups() in seen, f"{line!r} is not in the real output:\n{done.stdout}"
