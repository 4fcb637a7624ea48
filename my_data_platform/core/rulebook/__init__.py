"""The annotators' rulebook: the label set of image content, a definition and examples for
each label, and the instructions annotators follow. It ships as package data
(``image_content.json``); the label set of the whole platform comes from here.

Quality assurance starts with a rulebook: two annotators who read the same definitions and
tie-break rule disagree less, and a disagreement can be settled by pointing at a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class LabelRule:
    name: str
    definition: str
    examples: tuple[str, ...]
    counter_examples: tuple[str, ...]


@dataclass(frozen=True)
class Rulebook:
    name: str
    version: int
    question: str
    instructions: tuple[str, ...]
    labels: tuple[LabelRule, ...]

    @property
    def label_set(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.labels)

    def rule(self, name: str) -> LabelRule:
        for r in self.labels:
            if r.name == name:
                return r
        raise KeyError(f"{name!r} is not a label of rulebook {self.name!r}: {self.label_set}")


class RulebookError(ValueError):
    """The rulebook file is malformed; the message names the file and the field."""


def _parse(text: str, where: str) -> Rulebook:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulebookError(f"{where}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise RulebookError(f"{where}: the rulebook must be a JSON object")

    def need(obj: dict, key: str, kind: type, ctx: str) -> object:
        if key not in obj or not isinstance(obj[key], kind):
            raise RulebookError(f"{where}: {ctx}{key} must be a {kind.__name__}")
        return obj[key]

    labels = need(raw, "labels", list, "")
    rules = []
    for i, lab in enumerate(labels):  # type: ignore[arg-type]
        ctx = f"labels[{i}]."
        if not isinstance(lab, dict):
            raise RulebookError(f"{where}: labels[{i}] must be an object")
        name = need(lab, "name", str, ctx)
        if not (isinstance(name, str) and name.isascii() and name.isidentifier()):
            raise RulebookError(f"{where}: {ctx}name {name!r} must be a lowercase identifier")
        rules.append(
            LabelRule(
                name=name,
                definition=str(need(lab, "definition", str, ctx)),
                examples=tuple(need(lab, "examples", list, ctx)),  # type: ignore[arg-type]
                counter_examples=tuple(lab.get("counter_examples", [])),
            )
        )
    names = [r.name for r in rules]
    if len(names) < 2 or len(set(names)) != len(names):
        raise RulebookError(f"{where}: labels need at least two distinct names, got {names}")
    return Rulebook(
        name=str(need(raw, "name", str, "")),
        version=int(need(raw, "version", int, "")),  # type: ignore[arg-type]
        question=str(need(raw, "question", str, "")),
        instructions=tuple(need(raw, "instructions", list, "")),  # type: ignore[arg-type]
        labels=tuple(rules),
    )


@cache
def image_content_rulebook() -> Rulebook:
    """The shipped rulebook for image content."""
    text = resources.files(__package__).joinpath("image_content.json").read_text("utf-8")
    return _parse(text, "my_data_platform/core/rulebook/image_content.json")


def load_rulebook(path: str | Path) -> Rulebook:
    """A rulebook from a file (a team's own)."""
    p = Path(path)
    return _parse(p.read_text("utf-8"), str(p))
