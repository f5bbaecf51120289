from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sheetsync.cli import cli


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, project: Path, *args: str):
    return runner.invoke(cli, ["-C", str(project), *args], catch_exceptions=False)


def test_commands_have_help_with_an_example(runner: CliRunner) -> None:
    for name, command in cli.commands.items():
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example:" in (command.help or ""), f"{name} has no example in its help"


def test_help_does_not_import_heavy_libraries() -> None:
    code = ("import sys; from sheetsync.cli import cli; "
            "heavy = [m for m in ('tensorflow', 'gspread', 'pandas', 'openpyxl') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "sheetsync", "--help"], capture_output=True,
                         text=True, check=True)
    assert "push" in out.stdout and "pull" in out.stdout


def test_loop_through_the_cli(runner: CliRunner, data_root: Path, tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    result = run(runner, proj, "init", str(data_root))
    assert result.exit_code == 0 and "recorded v1" in result.output
    result = run(runner, proj, "push")
    assert result.exit_code == 0 and "pushed 19 rows" in result.output
    result = run(runner, proj, "status")
    assert "no pending edits" in result.output and "total" in result.output
    result = run(runner, proj, "pull")
    assert "nothing to pull" in result.output
    result = run(runner, proj, "log")
    assert result.exit_code == 0 and "init" in result.output
    result = run(runner, proj, "diff", "v1")
    assert "no differences" in result.output


def test_errors_are_one_line_with_exit_codes(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["-C", str(tmp_path), "push"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no sheetsync.toml")
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["-C", str(tmp_path), "init", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "does not exist" in result.output


def test_validation_error_exit_code_and_rows(runner: CliRunner, data_root: Path, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from sheetsync.sheets.local import header_row

    proj = tmp_path / "proj"
    run(runner, proj, "init", str(data_root))
    run(runner, proj, "push")
    wb_path = proj / "sheetsync.xlsx"
    wb = load_workbook(wb_path)
    ws = wb["data"]
    head = header_row(ws)  # 2: an info line is row 1
    header = [c.value for c in ws[head]]
    ws.cell(head + 2, header.index("label") + 1).value = "cat"
    wb.save(wb_path)
    result = runner.invoke(cli, ["-C", str(proj), "pull"])
    assert result.exit_code == 3
    assert f"row {head + 2}, column 'label': 'cat' is not a class" in result.output
    result = runner.invoke(cli, ["-C", str(proj), "push"])
    assert result.exit_code == 4 and "never pulled" in result.output


def test_bad_config_is_a_clean_error(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "sheetsync.toml").write_text("root = [unclosed")
    result = runner.invoke(cli, ["-C", str(tmp_path), "status"])
    assert result.exit_code == 1 and "not valid TOML" in result.output
    (tmp_path / "sheetsync.toml").write_text('root = "d"\nclasses = ["a", "../b"]\n')
    result = runner.invoke(cli, ["-C", str(tmp_path), "status"])
    assert result.exit_code == 1 and "cannot be a class" in result.output


def test_every_command_of_the_group_maps_library_errors_to_one_line_and_its_exit_code() -> None:
    # One wrapper for the whole group: a command added later needs no error handling of its own.
    from sheetsync.errors import UnpulledEditsError

    @cli.command("raises-for-test")
    def raises() -> None:
        raise UnpulledEditsError("the sheet holds 2 edits never pulled")

    try:
        result = CliRunner().invoke(cli, ["raises-for-test"])
    finally:
        cli.commands.pop("raises-for-test")
    assert result.exit_code == UnpulledEditsError.exit_code == 4
    assert result.output == "Error: the sheet holds 2 edits never pulled\n"
