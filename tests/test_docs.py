"""The README and the docs/ pages checked against the project: what they tell people to run exists.

The README must stay short and open with the two commands; every relative link (and the heading
it points at) must exist; every ``sheetsync <command> --option``, ``make <target>`` and
``python -m <module>`` written in code must be a real command, option, target and module; the
module tables of docs/development.md must name every module. Figures are compared with their
benches elsewhere (the one-write limit: tests/test_pull_defects.py).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import click
import pytest

from sheetsync.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
OPTION = re.compile(r"^--?[A-Za-z][\w-]*(=.*)?$")
PUNCT = "`()'\",;:"


def _ids(pages: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in pages]


def code_snippets(text: str) -> list[str]:
    """Each line of a fenced block, and each inline code span outside them."""
    lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
    prose = FENCE.sub("", text)
    spans = [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return lines + spans


def segments(snippet: str) -> list[list[str]]:
    """A snippet cut into shell commands (comments dropped), each as its tokens."""
    snippet = re.split(r"(?:^|\s)#", snippet, maxsplit=1)[0]
    snippet = re.sub(r"\(sheetsync\b", "(", snippet)  # "(sheetsync combined)": a name, no command
    parts = re.split(r"\|\||\||;|&&|>>", snippet)
    return [[tok.strip(PUNCT) for tok in part.split()] for part in parts]


def _opts(params: list[click.Parameter]) -> tuple[set[str], set[str]]:
    """(every option name, the names of options that take a value)."""
    names: set[str] = {"--help"}
    valued: set[str] = set()
    for p in params:
        if isinstance(p, click.Option):
            names.update(p.opts + p.secondary_opts)
            if not p.is_flag and not p.count:
                valued.update(p.opts)
    return names, valued


def command_problems(snippet: str) -> list[str]:
    """What in one snippet is not a real ``sheetsync`` command or option."""
    assert isinstance(cli, click.Group)
    problems = []
    for toks in segments(snippet):
        starts = [i + 1 for i, tok in enumerate(toks)
                  if re.split(r"[/=]", tok)[-1] == "sheetsync" and (i == 0 or toks[i - 1] not in ("from", "import"))]
        if not starts and toks and toks[0] in cli.commands and any(OPTION.match(t) for t in toks[1:]):
            starts = [0]  # `push --force`: a command written without the program's name
        for i in starts:
            names, valued = _opts(cli.params)
            while i < len(toks) and OPTION.match(toks[i]):
                if toks[i].split("=")[0] not in names:
                    problems.append(f"{snippet!r}: sheetsync has no option {toks[i]}")
                i += 2 if toks[i] in valued else 1
            if i >= len(toks):
                continue
            command = cli.commands.get(toks[i])
            if command is None:
                problems.append(f"{snippet!r}: sheetsync has no command {toks[i]!r}")
                continue
            names, _ = _opts(command.params)
            problems += [f"{snippet!r}: sheetsync {toks[i]} has no option {tok}"
                         for tok in toks[i + 1:] if OPTION.match(tok) and tok.split("=")[0] not in names]
    return problems


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.MULTILINE))


def make_problems(snippet: str, targets: set[str]) -> list[str]:
    problems = []
    for toks in segments(snippet):
        for i, tok in enumerate(toks[:-1]):
            if tok == "make" and not OPTION.match(toks[i + 1]) and toks[i + 1] not in targets:
                problems.append(f"{snippet!r}: the Makefile has no target {toks[i + 1]!r}")
    return problems


def module_problems(text: str) -> list[str]:
    return [f"python -m {name}: no such module" for name in re.findall(r"python\s+-m\s+([\w.]+\w)", text)
            if importlib.util.find_spec(name) is None]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        base = slug(heading)
        out.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return out


def link_problems(page: Path) -> list[str]:
    problems = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:: not this test's business
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{page.name}: {target} -> no file {path}")
        elif anchor and anchor not in anchors(file):
            problems.append(f"{page.name}: {target} -> no heading #{anchor} in {file.name}")
    return problems


# -- (a) the README ---------------------------------------------------------------------------


def test_the_readme_is_short_and_opens_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) < 250
    before_first_section = text.split("\n## ", 1)[0]
    first_block = FENCE.findall(before_first_section)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert commands == ["make demo", "make test"]


# -- (b) links --------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_relative_link_resolves(page: Path) -> None:
    assert link_problems(page) == []


def test_a_link_to_a_missing_file_or_heading_is_caught(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Its `first` part: here\n\n```\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#its-first-part-here) [ok](#a-title) [web](https://example.org/x)\n"
                    "[bad](gone.md) [bad](other.md#not-a-heading)\n\n# A title\n")
    problems = link_problems(page)
    assert len(problems) == 2 and "gone.md" in problems[0] and "#not-a-heading" in problems[1]


# -- (c) sheetsync commands and options ---------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_sheetsync_command_and_option_written_exists(page: Path) -> None:
    problems = [p for s in code_snippets(page.read_text()) for p in command_problems(s)]
    assert problems == []


@pytest.mark.parametrize("snippet, found", [
    ("sheetsync push --force", 0),
    ("sheetsync -C proj train --epochs 3   # a comment --not-an-option", 0),
    ("ExecStart=/srv/labels/.venv/bin/sheetsync watch --interval 15", 0),
    ("from sheetsync import Project", 0),
    ("sheetsync.toml", 0),
    ("sheetsync pusj", 1),
    ("sheetsync push --nope", 1),
    ("sheetsync --nope push", 1),
    ("push --forse", 1),
    ("sheetsync status | sheetsync diff v1 v2 --all", 1),
])
def test_the_command_check_catches_what_does_not_exist(snippet: str, found: int) -> None:
    assert len(command_problems(snippet)) == found


def test_inline_code_and_fenced_lines_are_both_read() -> None:
    text = "Run `sheetsync pusj` or\n\n```\nsheetsync pul   # x\n```\n"
    assert sorted(p.split(": ")[-1] for s in code_snippets(text) for p in command_problems(s)) == [
        "sheetsync has no command 'pul'", "sheetsync has no command 'pusj'"]


# -- (d) make targets, (e) python -m modules ------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_make_target_written_exists(page: Path) -> None:
    targets = make_targets()
    assert {"demo", "test"} <= targets
    assert [p for s in code_snippets(page.read_text()) for p in make_problems(s, targets)] == []
    assert make_problems("make demoo", targets) != []


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_python_module_written_exists(page: Path) -> None:
    assert module_problems(page.read_text()) == []
    assert module_problems("python -m bench.bench_nothing --x") != []


def test_the_benches_are_all_named_in_the_development_page() -> None:
    text = (ROOT / "docs" / "development.md").read_text()
    benches = sorted(p.stem for p in (ROOT / "bench").glob("bench_*.py"))
    assert [b for b in benches if f"python -m bench.{b}" not in text] == []


# -- the module tables ------------------------------------------------------------------------


def test_the_module_tables_name_every_module() -> None:
    text = (ROOT / "docs" / "development.md").read_text()
    modules = sorted(p.name for folder in (ROOT / "sheetsync", ROOT / "sheetsync" / "sheets")
                     for p in folder.glob("*.py") if p.name != "__init__.py")
    assert [m for m in modules if f"`{m}`" not in text] == []
