"""YAML loading that remembers the line of every mapping key, for errors that point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InventoryError


class LineDict(dict):
    """A dict from YAML that knows the (1-based) line each key was written on."""

    lines: dict[Any, int]

    def line_of(self, key: Any) -> int | None:
        return getattr(self, "lines", {}).get(key)


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if not isinstance(key, (str, int, float, bool, type(None))):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a mapping key must be a plain value, not {type(key).__name__}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = line
        mapping = LineDict(super().construct_mapping(node, deep=True))
        mapping.lines = seen
        return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)


def load(path: Path) -> Any:
    """Parse a YAML file; syntax errors become an InventoryError naming file and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror}", file=str(path)) from None
    return loads(text, str(path))


def loads(text: str, name: str) -> Any:
    """Parse YAML text; `name` is used in error messages."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise InventoryError(f"invalid YAML: {problem}", file=name, line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"invalid YAML: {exc}", file=name) from None
