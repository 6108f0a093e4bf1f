"""`tunebench config show`: every setting with its value, type and description.

The descriptions are the docstrings under the dataclass fields (config.py and each method's Settings), read
from the source with `ast`, since Python keeps no attribute docstrings at run time; so the text users see is
the text the code carries, in one place.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from typing import Any


def field_docs(cls: type) -> dict[str, str]:
    """{field: its docstring} of a dataclass and the dataclasses it derives from (nearest definition wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # built with make_dataclass: no source, no docstrings
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                    isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and \
                    isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def describe(cfg: Any) -> list[tuple[str, str, str, str]]:
    """(dotted key, value as it would be written in --set, type, description) for every setting of `cfg`."""
    rows: list[tuple[str, str, str, str]] = []

    def walk(obj: Any, prefix: str) -> None:
        docs = field_docs(type(obj))
        for item in dataclasses.fields(obj):
            value, key = getattr(obj, item.name), prefix + item.name
            if dataclasses.is_dataclass(value):
                walk(value, key + ".")
                continue
            shown = "null" if value is None else json.dumps(value) if isinstance(value, (list, str)) else str(value)
            kind = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", str(item.type))
            rows.append((key, shown, kind, docs.get(item.name, "")))

    walk(cfg, "")
    return rows


def render(cfg: Any) -> str:
    """One line per setting: `key = value  (type)  description`, aligned."""
    rows = describe(cfg)
    width = min(48, max(len(f"{key} = {value}") for key, value, _, _ in rows))
    return "\n".join(f"{f'{key} = {value}':{width}}  ({kind})  {doc}".rstrip() for key, value, kind, doc in rows)
