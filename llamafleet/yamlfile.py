"""YAML loading with line numbers for every mapping key, limits that hostile files cannot get past, and Ansible
Vault: inline `!vault` values and whole vaulted files opened in memory with the run's passwords."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import vault
from .errors import InventoryError

# Limits on what one file (inventory, group_vars/host_vars file, -e @file or -e value) may hold.
# An Ansible-style inventory stays far below each of them.
MAX_FILE_BYTES = 4 * 1024 * 1024  # 4 MiB
MAX_DEPTH = 64  # nesting of mappings and sequences, aliases expanded
MAX_ALIASED_NODES = 100_000  # nodes that aliases (*name) stand for, counted as if copied out ("billion laughs")


# llamafleet's own files (role defaults) are not hostile: libyaml parses them, about 10x faster.
_OWN_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_own(path: Path) -> Any:
    """A YAML file shipped with llamafleet (no line numbers, no limits)."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_OWN_LOADER)  # noqa: S506 - a safe loader


class LimitError(yaml.MarkedYAMLError):
    """The document is well-formed YAML but exceeds one of the limits above."""


class LineDict(dict):
    """A dict from YAML that knows the (1-based) line each key was written on."""

    lines: dict[Any, int]

    def line_of(self, key: Any) -> int | None:
        return getattr(self, "lines", {}).get(key)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader with key lines, merge keys, and limits on depth and alias expansion checked while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._heights: list[int] = []  # per open node: the height of its tallest child so far
        self._open_anchors: set[str] = set()
        self._anchor_size: dict[str, tuple[int, int]] = {}  # anchor -> (expanded node count, height)
        self._nodes = 0  # nodes composed, aliases counted as the nodes they stand for
        self._aliased = 0
        self.sealed = 0  # inline !vault values read, opened once the document is whole

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._compose_alias(event, parent, index)
        anchor = getattr(event, "anchor", None)
        self._enter(1, event.start_mark)
        if anchor is not None:
            self._open_anchors.add(anchor)
        start = self._nodes
        self._nodes += 1
        self._heights.append(0)
        try:
            node = super().compose_node(parent, index)
        finally:
            height = 1 + self._heights.pop()
            self._open_anchors.discard(anchor)
        if anchor is not None:
            self._anchor_size[anchor] = (self._nodes - start, height)
        self._leave(height)
        return node

    def _compose_alias(self, event: yaml.AliasEvent, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if event.anchor in self._open_anchors:
            raise LimitError(None, None, f"alias *{event.anchor} refers to a node that contains it", event.start_mark)
        size, height = self._anchor_size.get(event.anchor, (1, 1))
        self._aliased += size
        self._nodes += size
        if self._aliased > MAX_ALIASED_NODES:
            problem = f"aliases expand to more than {MAX_ALIASED_NODES} nodes (the limit)"
            raise LimitError(None, None, problem, event.start_mark)
        self._enter(height, event.start_mark)
        self._leave(height)
        return super().compose_node(parent, index)

    def fetch_flow_collection_start(self, token_class: type) -> None:
        # The scanner looks ahead up to 1024 tokens, at a cost that grows with the number of open [ and {:
        # refusing here, before the composer sees them, keeps "[[[[..." fast.
        if self.flow_level >= MAX_DEPTH:
            raise LimitError(None, None, f"nested deeper than {MAX_DEPTH} levels (the limit)", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def _enter(self, height: int, mark: yaml.Mark) -> None:
        if len(self._heights) + height > MAX_DEPTH:
            raise LimitError(None, None, f"nested deeper than {MAX_DEPTH} levels (the limit)", mark)

    def _leave(self, height: int) -> None:
        if self._heights:
            self._heights[-1] = max(self._heights[-1], height)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except RecursionError:
            raise LimitError(None, None, "nested too deeply", node.start_mark) from None
        except Exception as exc:  # int('x') for !!int x, a 31st of February, ...: third-party code on hostile input
            value = f" {shorten(node.value)!r}" if isinstance(node, yaml.ScalarNode) else ""
            reason = f" ({exc})" if isinstance(exc, ValueError) else ""
            problem = f"cannot read{value} as {node.tag.rsplit(':', 1)[-1]}{reason}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:
        own = [key_node for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"]
        self.flatten_mapping(node)  # `<<: *defaults` merge keys, as Ansible reads them
        seen: dict[Any, int] = {}
        for key_node in own:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):
                problem = f"a mapping key must be a plain value, not {type(key).__name__}"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            if key in seen:
                problem = f"key {key!r} appears twice (first on line {seen[key]})"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        mapping = LineDict(super().construct_mapping(node, deep=True))
        mapping.lines = seen
        return mapping

    def construct_vault(self, node: yaml.Node) -> vault.Sealed:
        """`!vault |` and its older spelling `!vault-encrypted`: a string, opened once the document is read, when
        the key it belongs to is known."""
        if not isinstance(node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(None, None, f"{node.tag} must tag a string", node.start_mark)
        self.sealed += 1
        return vault.Sealed(self.construct_scalar(node), node.start_mark.line + 1)


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _LineLoader.construct_mapping)
_LineLoader.add_constructor("!vault", _LineLoader.construct_vault)
_LineLoader.add_constructor("!vault-encrypted", _LineLoader.construct_vault)


def load(path: Path, vault_secrets: vault.VaultSecrets | None = None) -> Any:
    """Parse a YAML file; unreadable, oversized, non-UTF-8 or invalid files raise InventoryError naming it.

    A file vaulted whole is opened with `vault_secrets` and everything in it is marked as vaulted; so are inline
    `!vault` values. Without a password that opens them: VaultError (exit 2) naming the file (and line, and key).
    """
    text, vaulted = read_text(path, vault_secrets)
    data = loads(text, printable(str(path)), vault_secrets)
    return vault.marked(data) if vaulted else data


def read_text(path: Path, vault_secrets: vault.VaultSecrets | None = None) -> tuple[str, bool]:
    """The text of a file, at most MAX_FILE_BYTES of UTF-8, and whether it was a vault (opened in memory)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", file=printable(str(path))) from None
    except ValueError:  # open() refuses a NUL byte in the name
        raise InventoryError("cannot read: a file name cannot hold a NUL byte", file=printable(str(path))) from None
    name = printable(str(path))
    if len(data) > MAX_FILE_BYTES:
        raise InventoryError(f"larger than {MAX_FILE_BYTES // 1024 // 1024} MiB (the limit)", file=name)
    if vault.is_vault(data):
        return decode(vault.open_bytes(data, vault_secrets, name), name), True
    return decode(data, name), False


def decode(data: bytes, name: str) -> str:
    """UTF-8 text (a byte order mark is allowed); InventoryError naming line and byte offset otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problem = f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        raise InventoryError(problem, file=name, line=line) from None


def loads(text: str, name: str, vault_secrets: vault.VaultSecrets | None = None) -> Any:
    """Parse YAML text; `name` is used in error messages. Inline `!vault` values are opened with `vault_secrets`."""
    try:
        data, sealed = _parse(text)
    except LimitError as exc:
        raise InventoryError(f"YAML {exc.problem}", file=name, line=_line(exc.problem_mark)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and problem.startswith("but "):  # "expected a single document in the stream, but found ..."
            problem = f"{exc.context}, {problem}"
        problem = printable(problem)
        raise InventoryError(f"invalid YAML: {problem}", file=name, line=_line(mark)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        problem = f"invalid YAML: character U+{code:04X} is not allowed (offset {exc.position})"
        raise InventoryError(problem, file=name, line=line) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"invalid YAML: {' '.join(str(exc).split())}", file=name) from None
    except RecursionError:  # a safety net: the depth limit above is meant to stop this first
        raise InventoryError(f"YAML nested deeper than {MAX_DEPTH} levels (the limit)", file=name) from None
    return vault.open_sealed(data, vault_secrets, name) if sealed else data


def _parse(text: str) -> tuple[Any, int]:
    """The document, and how many inline vaults it holds."""
    loader = _LineLoader(text)
    try:
        return loader.get_single_data(), loader.sealed
    finally:
        loader.dispose()


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped, so an error message stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shorten(text: str, width: int = 60) -> str:
    """`text` cut to `width` characters, for quoting user values in messages."""
    return text if len(text) <= width else text[: width - 3] + "..."


def _line(mark: yaml.Mark | None) -> int | None:
    return mark.line + 1 if mark else None
