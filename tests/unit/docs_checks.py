"""Readers and checkers behind tests/unit/test_docs_truth.py: links, repo paths, `streamrec` command lines.

Conventions the docs follow so that these checks can read them:
- a repo path is written in backticks (README.md, BENCHMARKS.md) or as a bare word in a comment of
  docker-compose.yml; it counts as a path when it ends in a known file extension, ends in `/`, or starts
  with a top-level folder of the repo; `../...` lies outside the repo (the data sets) and is not checked;
- a command line is any backticked span or shell code-block line with the word `streamrec`; in a
  backticked span `a|b` offers alternatives (`devstack up|down|status`, `model list | show V`), `[...]`
  marks optional parts and `...` elided ones, `<name>` is a placeholder (in a command's place, for
  every command); in a code block `|` is a shell pipe;
- the value after an output option (`--json`, `--plot`, `--rejects`) is a file the command writes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.app import app
from tooling.cli_docs import root_command

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "BENCHMARKS.md")
COMPOSE = "docker-compose.yml"
EXTENSIONS = ("py", "md", "json", "yml", "yaml", "png", "svg", "toml", "csv", "txt", "example", "lua", "html")
BARE_NAMES = ("Makefile", "Dockerfile")
OUTPUT_OPTIONS = ("--json", "--plot", "--rejects")
SHELL_LANGS = ("", "bash", "sh", "shell", "console")
# Paths the docs name that do not exist in a clone, because something creates them at run time.
RUNTIME_PATHS = {
    ".devstack/": "`streamrec devstack up` creates it (state, stack.env, the servers' data and logs)",
    ".artifacts/": "the model artifact cache (STREAMREC_MODEL__ARTIFACT_CACHE_DIR), filled at run time",
    ".env": "the user's own settings file (git-ignored)",
    "docker-compose.override.yml": "an optional file the user writes; Docker Compose merges it",
}


@dataclass(frozen=True)
class Span:
    """A piece of a doc: inline code, a code-block line, prose, or a compose comment."""

    doc: str
    line: int
    kind: str  # "code" (inline), "block" (shell code block), "prose", "comment"
    text: str

    def where(self) -> str:
        return f"{self.doc}:{self.line}: `{self.text.strip()}`"


# ------------------------------------------------------------------ reading the docs

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)")
_INLINE_CODE = re.compile(r"(`+)([^`][\s\S]*?)(?<!`)\1(?!`)")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)


def spans(doc: str, text: str) -> Iterator[Span]:
    """Inline code spans, prose lines (code removed) and shell code-block lines (continuations joined).

    Inline code may wrap across the lines of a paragraph, so prose is read a paragraph at a time."""
    fence: str | None = None
    lang = ""
    pending: tuple[int, str] | None = None
    paragraph: list[tuple[int, str]] = []
    for number, line in enumerate([*text.splitlines(), ""], start=1):
        opened = _FENCE.match(line)
        if fence is None and not opened and line.strip():
            paragraph.append((number, line))
            continue
        yield from _paragraph(doc, paragraph)
        paragraph = []
        if fence is None and opened:
            fence, lang = opened.group(1), opened.group(2).lower()
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
            elif lang in SHELL_LANGS:
                start, joined = pending or (number, "")
                joined += line.rstrip()
                if joined.endswith("\\"):
                    pending = (start, joined[:-1] + " ")
                else:
                    pending = None
                    yield Span(doc, start, "block", joined)


def _paragraph(doc: str, lines: list[tuple[int, str]]) -> Iterator[Span]:
    if not lines:
        return
    first = lines[0][0]
    text = "\n".join(line for _, line in lines)
    for found in _INLINE_CODE.finditer(text):
        # A `|` escaped for a markdown table is a plain `|` inside the code.
        code = " ".join(found.group(2).split()).replace("\\|", "|")
        yield Span(doc, first + text.count("\n", 0, found.start()), "code", code)
    # Each code span leaves its line breaks behind, so prose keeps its line numbers.
    prose = _INLINE_CODE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for offset, line in enumerate(prose.split("\n")):
        yield Span(doc, first + offset, "prose", line)


def compose_comments(text: str) -> Iterator[Span]:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            yield Span(COMPOSE, number, "comment", stripped.lstrip("#"))
        elif " #" in line:
            yield Span(COMPOSE, number, "comment", line.split(" #", 1)[1])


def doc_spans() -> Iterator[Span]:
    for doc in DOCS:
        yield from spans(doc, (ROOT / doc).read_text(encoding="utf-8"))
    yield from compose_comments((ROOT / COMPOSE).read_text(encoding="utf-8"))


# ------------------------------------------------------------------ links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (heading := re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)):
            base = slug(heading.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def link_problems(doc: str, text: str, root: Path) -> list[str]:
    problems = []
    for span in spans(doc, text):
        if span.kind != "prose":
            continue
        targets = [m.group(1) for m in _LINK.finditer(span.text)]
        targets += [m.group(1) for m in _REF_LINK.finditer(span.text)]
        targets += [m.group(1) for m in _HTML_LINK.finditer(span.text)]
        for target in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # http:, https:, mailto: — not a repo file
            path_part, _, anchor = target.partition("#")
            linked = (root / doc).parent / path_part
            if path_part and not linked.exists():
                problems.append(f"{span.doc}:{span.line}: link to {target!r}: {path_part} does not exist")
                continue
            if not anchor or (path_part and linked.suffix != ".md"):
                continue
            headings = anchors(linked.read_text("utf-8") if path_part else text)
            if anchor not in headings:
                problems.append(f"{span.doc}:{span.line}: link to {target!r}: no heading with that anchor")
    return problems


# ------------------------------------------------------------------ file paths


def _words(span: Span) -> list[str]:
    try:
        return shlex.split(span.text, comments=span.kind != "code")
    except ValueError:
        return span.text.split()


def path_candidates(span: Span, top_level: set[str]) -> Iterator[str]:
    """The words of ``span`` that name a repo path (see the module docstring); output files are skipped."""
    words = _words(span) if span.kind in ("code", "block") else span.text.split()
    for before, word in zip(["", *words], words, strict=False):
        if before in OUTPUT_OPTIONS:
            continue
        word = word.strip("`'\"()[],;").rstrip(".:")
        if not word or word.startswith(("/", "-", "~", "../")) or re.search(r"[^\w./-]", word):
            continue
        head = word.split("/", 1)[0]
        named = word in BARE_NAMES or re.fullmatch(rf".+\.({'|'.join(EXTENSIONS)})", word)
        if named or ("/" in word and (word.endswith("/") or head in top_level)):
            yield word


def path_problems(found: list[Span], root: Path) -> list[str]:
    top_level = {p.name for p in root.iterdir()} | {p.rstrip("/") for p in RUNTIME_PATHS}
    problems = []
    for span in found:
        if span.kind == "prose":
            continue
        for word in path_candidates(span, top_level):
            if any(word == p or word.startswith(p) for p in RUNTIME_PATHS if p.endswith("/")):
                continue
            if word in RUNTIME_PATHS or word.rstrip("/") in RUNTIME_PATHS:
                continue
            if not (root / word).exists():
                problems.append(f"{span.where()}: {word} does not exist in the repo")
    return problems


# ------------------------------------------------------------------ command lines


def command_lines(span: Span) -> Iterator[list[str]]:
    """The argument lists after each `streamrec` word, up to the end of that shell command."""
    if span.kind not in ("code", "block"):
        return
    words = _words(span)
    stops = {"&&", "||", ";", ")"} | ({"|"} if span.kind == "block" else set())
    for i, word in enumerate(words):
        if word == "streamrec" or word.endswith("/streamrec"):
            args = []
            for arg in words[i + 1 :]:
                if arg in stops:
                    break
                arg = arg.replace("[", "").replace("]", "")
                if arg.endswith(";"):
                    args.append(arg[:-1])
                    break
                if arg and arg != "...":
                    args.append(arg)
            yield args


# A leaf command a doc line names: its path below `streamrec`, the click command, the words after it.
Leaf = tuple[list[str], Any, list[str]]


def _walk(command: Any, path: list[str], args: list[str]) -> tuple[list[Leaf], str]:
    """Follows subcommand words (``a|b`` expands) down to leaf commands; returns them or a problem."""
    subs = getattr(command, "commands", None)
    if subs is None or not args or args[0].startswith("-"):
        return [(path, command, args)], ""
    found = []
    # A placeholder (`streamrec <command> --help`) stands for every subcommand.
    names = list(subs) if re.fullmatch(r"<[^<>]+>", args[0]) else args[0].split("|")
    for name in names:
        if name not in subs:
            return [], f"`{' '.join(['streamrec', *path, name])}` is not a command"
        more, problem = _walk(subs[name], [*path, name], args[1:])
        if problem:
            return [], problem
        found += more
    return found, ""


def resolve(root: Any, args: list[str], inline: bool) -> tuple[list[Leaf], str]:
    """Leaf commands (path, click command, remaining words) that a doc's command line names."""
    segments: list[list[str]] = [[]]
    for arg in args:
        if inline and arg == "|":
            segments.append([])
        else:
            segments[-1].append(arg)
    found, problem = _walk(root, [], segments[0])
    if problem or len(segments) == 1:
        return found, problem
    # `model list | show V | promote V`: each alternative starts where the first one's command is.
    parent_path = found[0][0][:-1]
    parent = root
    for name in parent_path:
        parent = parent.commands[name]
    for segment in segments[1:]:
        more, problem = _walk(parent, parent_path, segment)
        if problem:
            return [], problem
        found += more
    return found, ""


def option_problems(command: Any, words: list[str]) -> list[str]:
    """Every option word must be a real option of ``command``; no more positionals than it takes."""
    params = {name: p for p in command.params for name in (*p.opts, *p.secondary_opts)}
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    problems, positionals, skip, unknown = [], 0, False, False
    for word in words:
        if skip:
            skip = False
            # An unknown option's value is only guessed: a following option is checked, not skipped.
            if not (unknown and word.startswith("-")):
                continue
        if word.startswith("-") and len(word) > 1:
            name = word.split("=", 1)[0]
            if name == "--help":
                continue
            param = params.get(name)
            unknown = param is None or param.param_type_name != "option"
            if unknown:
                problems.append(f"{name} is not an option")
            takes_value = unknown or not getattr(param, "is_flag", False)
            skip = "=" not in word and takes_value
        else:
            positionals += 1
    if positionals > len(arguments) and not any(p.nargs == -1 for p in arguments):
        problems.append(f"{positionals} positional values but it takes {len(arguments)}")
    return problems


def command_problems(found: list[Span]) -> list[str]:
    root = root_command()
    runner = CliRunner()
    helped: dict[tuple[str, ...], int] = {}
    problems = []
    for span in found:
        for args in command_lines(span):
            commands, problem = resolve(root, args, inline=span.kind == "code")
            if problem:
                problems.append(f"{span.where()}: {problem}")
            for path, command, words in commands:
                if tuple(path) not in helped:
                    helped[tuple(path)] = runner.invoke(app, [*path, "--help"]).exit_code
                shown = " ".join(["streamrec", *path])
                if helped[tuple(path)] != 0:
                    problems.append(f"{span.where()}: `{shown} --help` exits {helped[tuple(path)]}")
                problems += [f"{span.where()}: `{shown}`: {p}" for p in option_problems(command, words)]
    return problems


# ------------------------------------------------------------------ settings


def setting_problems(span_text: str, where: str) -> list[str]:
    """Every nested `STREAMREC_SECTION__FIELD` variable named must be a field of core.settings.Settings or
    of the tooling's superset (STREAMREC_DEVSTACK__*) (`KEYS_A|B` offers alternatives for the last word).
    Names without `__` are compose or test knobs."""
    from pydantic import BaseModel

    from tooling.settings import ToolingSettings as Settings

    problems = []
    for name in re.findall(r"STREAMREC_[A-Z0-9_]+__[A-Z0-9_|]+", span_text):
        *parents, last = name.removeprefix("STREAMREC_").lower().split("__")
        first, *others = last.split("|")
        # `API_KEYS_READ|INGEST|ADMIN`: each alternative replaces the first one's last word.
        stem = first.rsplit("_", 1)[0] + "_" if "_" in first else ""
        for leaf in [first, *(stem + other for other in others)]:
            model: Any = Settings
            for part in [*parents, leaf]:
                field = model.model_fields.get(part) if model is not None else None
                if field is None:
                    problems.append(f"{where}: {name}: no setting {part!r}")
                    break
                model = field.annotation if isinstance(field.annotation, type) else None
                model = model if model is not None and issubclass(model, BaseModel) else None
    return problems


def setting_default(name: str) -> Any:
    """The default of a `STREAMREC_SECTION__FIELD` setting, from the code (not the environment)."""
    from tooling.settings import ToolingSettings as Settings

    value: Any = Settings.model_construct()
    for part in name.removeprefix("STREAMREC_").lower().split("__"):
        value = getattr(value, part)
    return value


def _shown(value: Any) -> str:
    import json

    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"  # as an environment variable says it
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, list) else str(value)


def default_problems(text: str, where: str) -> list[str]:
    """A default the docs state beside a setting must be the code's: a table row `| VAR | DEFAULT |`,
    or a number right after the name: "`VAR` (9101)", "`VAR` (10 s)", "`VAR`, 5 s,"."""
    problems = []
    row = re.compile(r"^\| `(STREAMREC_\w+__\w+)` \| `([^`]*)` \|", re.MULTILINE)
    for name, stated in row.findall(text):
        if _shown(setting_default(name)) != stated:
            problems.append(f"{where}: {name}: the docs say {stated!r}, the code {setting_default(name)!r}")
    beside = re.compile(r"`(STREAMREC_\w+__\w+)`\s*(?:\(|,\s)\s*(-?\d[\d.]*)(?:\s*([a-z]+))?\s*[),]")
    for name, stated, unit in beside.findall(text):
        # "`..._TIMEOUT_MS`, 6 s": a setting in milliseconds stated in seconds.
        scale = 1000.0 if name.endswith("_MS") and unit == "s" else 1.0
        if float(setting_default(name)) != float(stated) * scale:
            problems.append(f"{where}: {name}: the docs say {stated}, the code {setting_default(name)!r}")
    return problems
