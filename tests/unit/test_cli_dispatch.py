"""`cloudtuner server` is dispatched before typer and the client commands; help still goes through typer."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from cloudtuner.cli import main as cli_main

CLIENT_SIDE = ("typer", "click", "rich", "httpx", "cloudtuner.cli.common", "cloudtuner.client.http")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDTUNER_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "cloudtuner.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], (None, None, None)),
        (["--port", "9000"], (None, 9000, None)),
        (["--host", "127.0.0.2", "--port=9001", "--data-dir", "/tmp/x"], ("127.0.0.2", 9001, Path("/tmp/x"))),
        (["--data-dir=rel/dir", "--host=::1"], ("::1", None, Path("rel/dir"))),
        (["--port", "1", "--port", "2"], (None, 2, None)),  # the last one wins, as with click
    ],
)
def test_plain_server_options_are_parsed(args: list[str], expected: tuple[object, ...]) -> None:
    assert cli_main.parse_server_args(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--port"],
        ["--port", "abc"],
        ["--port", "-1"],
        ["--port", "８"],  # a digit, but not one click would take: left to typer
        ["--host", "--port", "9"],
        ["--host="],
        ["--bogus"],
        ["--version"],
        ["extra"],
        ["--", "--port", "9"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert cli_main.parse_server_args(args) is None


def test_server_is_dispatched_without_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []

    def serve(host: str | None, port: int | None, data_dir: Path | None) -> int:
        calls.append((host, port, data_dir))
        return 7

    fake = types.ModuleType("fake_serve")
    fake.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_serve", fake)
    monkeypatch.setattr(cli_main, "SERVE_MODULE", "fake_serve")
    monkeypatch.setattr(cli_main, "build_app", lambda: pytest.fail("typer was used for a plain `server`"))
    monkeypatch.setattr(sys, "argv", ["cloudtuner", "server", "--port", "9000", "--data-dir", "d"])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 7
    assert calls == [(None, 9000, Path("d"))]


def test_typer_runs_server_with_options_it_alone_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--port 0_8` is not plain to the fast path; typer still hands it to serve()."""
    calls: list[tuple[object, ...]] = []
    fake = types.ModuleType("fake_serve")
    fake.serve = lambda *args: calls.append(args) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_serve", fake)
    monkeypatch.setattr(cli_main, "SERVE_MODULE", "fake_serve")
    monkeypatch.setattr(sys, "argv", ["cloudtuner", "server", "--port", "0_8"])
    with pytest.raises(SystemExit) as exited:
        cli_main.main()
    assert exited.value.code == 0
    assert calls == [(None, 8, None)]


def test_importing_the_entry_point_loads_no_client_code() -> None:
    modules = ", ".join(repr(m) for m in CLIENT_SIDE)
    code = (
        "import sys, cloudtuner.cli.main as m\n"
        "assert m.parse_server_args(['--port', '9']) == (None, 9, None)\n"
        f"print(sorted(x for x in ({modules},) if x in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_root_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("server", "jobs", "configs"):
        assert command in result.stdout
    assert "--version" in result.stdout


def test_server_help_goes_through_typer() -> None:
    result = run_cli("server", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--data-dir"):
        assert option in result.stdout
    assert "background scheduler" in result.stdout


def test_server_usage_errors_come_from_typer() -> None:
    result = run_cli("server", "--port", "abc")
    assert result.returncode == 2
    assert "Invalid value" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cloudtuner {cli_main.__version__}"


def test_app_attribute_is_the_typer_app() -> None:
    import typer

    assert isinstance(cli_main.app, typer.Typer)
    assert cli_main.app is cli_main.build_app()
