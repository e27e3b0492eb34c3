"""The one YAML reader (cards, ``--config``, ``--set`` values, reported results): safe, strict and bounded.

- **Safe**: PyYAML's ``SafeLoader`` (no Python tags), one document.
- **Strict**: a key given twice in one mapping is an error (PyYAML keeps the last silently). Keys merged in with
  ``<<:`` may still be overridden, as YAML defines.
- **Bounded**: a file over ``MAX_BYTES`` is refused before it is parsed; while the document is composed, aliases are
  counted (at most ``MAX_ALIASES``), nesting is limited (``MAX_DEPTH``), and before any value is built the size the
  document would have with every alias expanded is computed on the node graph (each node once, never expanding) and
  refused over ``MAX_NODES``. A "billion laughs" card is one ``LimitError`` line in milliseconds.

Aliases stay allowed (a card may reuse an options block with ``&``/``*``/``<<:``); no card needs thousands of them.
Errors: ``LimitError`` (a ``UserError``) for the bounds; ``yaml.YAMLError`` for syntax, tags, duplicate keys and bad
values, which each caller turns into its own one-line error naming the file or flag.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from cirbench.errors import LimitError, shown

MAX_BYTES = 1 << 20  # 1 MiB: the largest card is a few KiB, results/reported.yaml about 16 KiB
MAX_ALIASES = 1_000
MAX_NODES = 100_000  # nodes with every alias expanded
MAX_DEPTH = 64
MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictYAMLError(yaml.YAMLError):
    """A duplicate key or a value YAML cannot build (e.g. the date 2024-02-30)."""


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys and bounds aliases, nesting and the expanded size."""

    source = "YAML"

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise LimitError(f"{self.source}: more than {MAX_ALIASES} YAML aliases (*name); write the values out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise LimitError(f"{self.source}: YAML nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node:
        node = super().compose_document()
        expanded = _expanded_size(node, MAX_NODES, self.source)
        if expanded > MAX_NODES:
            raise LimitError(
                f"{self.source}: its YAML aliases expand to more than {MAX_NODES:,} values (an alias bomb?); "
                "write the values out or use fewer aliases"
            )
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML's own error names it
                    continue
                if first is not None:
                    lines = sorted({first.line + 1, key_node.start_mark.line + 1})
                    where = f"line {lines[0]}" if len(lines) == 1 else f"lines {lines[0]} and {lines[1]}"
                    raise StrictYAMLError(f"the key {shown(key, 40)} is given twice ({where}); keep one")
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Node, limit: int, source: str) -> int:
    """How many nodes ``root`` holds with every alias expanded, counting each distinct node once (memoised), and
    stopping as soon as the count passes ``limit``. A node that contains itself is refused."""
    sizes: dict[int, int] = {}

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            if sizes[key] < 0:
                raise LimitError(f"{source}: a YAML alias refers to a value that contains it")
            return sizes[key]
        sizes[key] = -1
        total = 1
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        sizes[key] = total
        return total

    return size(root) if root is not None else 0


def load(text: str, source: str = "YAML") -> Any:
    """The value of one YAML document; ``source`` names it in errors (``card methods/x.yaml``, ``--set lr``)."""
    loader = StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except LimitError:
        raise
    except (ValueError, TypeError, OverflowError) as error:  # e.g. a timestamp that is no date
        raise StrictYAMLError(f"a value cannot be read: {shown(str(error), 120)}") from error
    except RecursionError as error:
        raise LimitError(f"{source}: YAML nested too deeply") from error
    finally:
        loader.dispose()


def read(path: str | os.PathLike, source: str | None = None, max_bytes: int = MAX_BYTES) -> Any:
    """The YAML value of the file ``path``: refused (``LimitError``) over ``max_bytes`` before it is parsed.
    ``OSError`` and ``UnicodeDecodeError`` are left to the caller, which names the file."""
    path = Path(path)
    source = source or str(path)
    if not stat.S_ISREG(path.stat().st_mode):
        raise IsADirectoryError(f"{path} is not a regular file")
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise LimitError(f"{source}: the file is larger than {max_bytes:,} bytes; YAML settings files are small")
    return load(data.decode("utf-8"), source)
