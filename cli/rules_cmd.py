"""`streamrec rules list|add|remove|history`: merchandising rules, from the command line.

The same store as ``/v1/admin/rules`` (storage.merch_rules, on MongoDB directly): every change is a
new version, and serving applies it within ``serving.catalog_poll_s``. Wrong input exits 2; a refusal
in the current state (a duplicate id) exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.app import app
from cli.context import load_settings
from cli.online_support import refused, usage_error

if TYPE_CHECKING:
    from core.merch_rules import Rule
    from core.settings import Settings

rules_app = typer.Typer(
    help="Merchandising rules: boost, bury, pin, block, diversity cap (versioned; live within seconds).",
    no_args_is_help=True,
)
app.add_typer(rules_app, name="rules")
console = Console(soft_wrap=True)


class Kind(StrEnum):
    boost = "boost"
    bury = "bury"
    pin = "pin"
    block = "block"
    diversity = "diversity"


@contextmanager
def rule_store(settings: Settings) -> Iterator[Any]:
    """The MongoDB rule store (tests replace this with the twin)."""
    from storage.merch_rules import MongoRuleStore

    store = MongoRuleStore.from_settings(settings.mongo)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _store() -> Iterator[Any]:
    from storage.merch_rules import RuleExists, TooManyRules, UnknownRule

    with rule_store(load_settings()) as store:
        try:
            yield store
        except UnknownRule as exc:
            usage_error(f"no active rule has the id {exc.args[0]!r} (see `streamrec rules list`)")
        except (RuleExists, TooManyRules) as exc:
            refused(str(exc))


def describe(rule: Rule) -> tuple[str, str]:
    """(which items, how) for the table."""
    which = ""
    if rule.condition is not None:
        which = f"{rule.condition.property} = {rule.condition.value}"
    if rule.item_ids:
        shown = ", ".join(rule.item_ids[:5]) + (
            f" (+{len(rule.item_ids) - 5})" if len(rule.item_ids) > 5 else ""
        )
        which = f"{which}; items {shown}" if which else f"items {shown}"
    how = {
        "boost": f"x{rule.factor:g}" if rule.factor else "",
        "bury": f"/{rule.factor:g}" if rule.factor else "",
        "pin": f"{rule.item_id} at {rule.position}",
        "block": "never shown",
        "diversity": f"at most {rule.max_per_category} per category",
    }[rule.kind]
    return which or "-", how


@rules_app.command("list")
def list_command() -> None:
    """The active rules and their version."""
    with _store() as store:
        current = store.current()
    if not current.rules:
        console.print(f"no active rules (version {current.version}); add one with `streamrec rules add`")
        return
    table = Table(title=f"merchandising rules, version {current.version}")
    for column in ("id", "kind"):
        table.add_column(column, no_wrap=True)
    table.add_column("items", overflow="fold")
    table.add_column("effect", overflow="fold")
    table.add_column("created", no_wrap=True)
    table.add_column("description", overflow="fold")
    for rule in current.rules:
        which, how = describe(rule)
        created = rule.created_at.strftime("%Y-%m-%d %H:%M") if rule.created_at else "-"
        table.add_row(rule.rule_id, rule.kind, which, how, created, rule.description or "")
    console.print(table)


def build_rule(data: dict[str, Any], settings: Settings) -> Rule:
    from pydantic import ValidationError

    from core.merch_rules import Rule

    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        usage_error(f"{where}: {message}" if where else message)
    max_k = settings.serving.max_k
    if rule.kind == "pin" and (rule.position or 0) > max_k:
        usage_error(
            f"--position {rule.position} is outside every list serving answers (serving.max_k={max_k})"
        )
    return rule


@rules_app.command("add")
def add(
    kind: Kind = typer.Argument(..., help="boost, bury, pin, block or diversity."),
    rule_id: str | None = typer.Option(None, "--id", help="The rule's id (default: KIND-<random>)."),
    where: str | None = typer.Option(
        None, "--where", help="PROPERTY=VALUE: the items it applies to (boost, bury, block), e.g. brand=acme."
    ),
    item: list[str] = typer.Option(
        [], "--item", help="An item it applies to (repeat); for pin, the one item."
    ),
    factor: float | None = typer.Option(None, "--factor", help="boost, bury: how strongly (> 1)."),
    position: int | None = typer.Option(None, "--position", help="pin: the 1-based position."),
    max_per_category: int | None = typer.Option(None, "--max-per-category", help="diversity: the cap."),
    description: str | None = typer.Option(None, "--description", help="Why the rule exists."),
) -> None:
    """Add a rule: a new rules version, which serving applies within serving.catalog_poll_s."""
    import uuid

    data: dict[str, Any] = {"rule_id": rule_id or f"{kind.value}-{uuid.uuid4().hex[:8]}", "kind": kind.value}
    if where is not None:
        prop, sep, value = where.partition("=")
        if not sep or not prop.strip() or not value.strip():
            usage_error(f"--where {where!r} must be PROPERTY=VALUE, e.g. brand=acme")
        data["condition"] = {"property": prop.strip(), "value": value}
    if kind is Kind.pin:
        if len(item) != 1:
            usage_error("a pin rule takes exactly one --item")
        data["item_id"] = item[0]
    elif item:
        data["item_ids"] = item
    optional: dict[str, Any] = {
        "factor": factor,
        "position": position,
        "max_per_category": max_per_category,
        "description": description,
    }
    data.update({name: given for name, given in optional.items() if given is not None})
    settings = load_settings()
    rule = build_rule(data, settings)
    with _store() as store:
        made = store.add(rule)
    which, how = describe(rule)
    console.print(
        f"[green]rule {rule.rule_id} added[/] ({rule.kind}: {which}, {how}); version {made.version}"
    )


@rules_app.command("remove")
def remove(rule_id: str = typer.Argument(..., help="The rule's id.")) -> None:
    """Remove a rule: a new rules version without it."""
    with _store() as store:
        made = store.remove(rule_id)
    console.print(f"[green]rule {rule_id} removed[/]; version {made.version}")


@rules_app.command("history")
def history(limit: int = typer.Option(20, "--limit", min=1, max=1000, help="How many versions.")) -> None:
    """Earlier rule versions, newest first, with the change that made each."""
    with _store() as store:
        found = store.history(limit)
    table = Table(title="rules versions")
    for column in ("version", "change", "rule", "at", "active rules"):
        table.add_column(column, no_wrap=column != "active rules", overflow="fold")
    for entry in found:
        change = entry["change"]
        at = change.get("at")
        table.add_row(
            str(entry["version"]),
            str(change.get("op", "")),
            f"{change.get('rule_id', '')} ({change.get('kind', '')})",
            at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-",
            ", ".join(r.rule_id for r in entry["rules"]) or "-",
        )
    console.print(table)
