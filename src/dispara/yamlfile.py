"""The one YAML loader (dispara.yaml and campaign files): YAML 1.2 scalars, one-line errors with the line.

YAML 1.1 (PyYAML's default) reads `18:00` as 1080, `no` as False and `010` as 8; here they stay text.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Final

import yaml

from dispara.errors import DisparaError, InputError
from dispara.files import cannot_open

__all__ = ["read_yaml"]

_BOOL: Final = "tag:yaml.org,2002:bool"
_INT: Final = "tag:yaml.org,2002:int"
_FLOAT: Final = "tag:yaml.org,2002:float"
_TIMESTAMP: Final = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema for scalars, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        # PyYAML keeps the last of two equal keys; an operator editing by hand means one of them.
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in {_BOOL, _INT, _FLOAT, _TIMESTAMP}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# Registered before float, so `3` stays an int; no leading zeros, so nothing is read as octal.
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def read_yaml(
    path: Path, display: str, *, error: type[DisparaError] = InputError, what: str = "campaign file"
) -> Any:
    """The document in `path`; `display` is how errors name the file (the path as the user gave it).

    Errors are raised as `error` (InputError for campaign files, ConfigError for the configuration).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(cannot_open(exc, display, what)) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"{display}: line {line}: not UTF-8 text; save the file as UTF-8") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        raise error(f"{display}: {_describe(exc)}") from None
    except yaml.YAMLError as exc:
        raise error(f"{display}: {' '.join(str(exc).split())}") from None


def _describe(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    problem = " ".join((exc.problem or exc.context or "not valid YAML").split())
    where = f"line {mark.line + 1}: " if mark is not None else ""
    context_mark = exc.context_mark
    starts_elsewhere = context_mark is not None and mark is not None and context_mark.line != mark.line
    if exc.context and exc.problem and context_mark is not None and starts_elsewhere:
        problem += f" ({exc.context} started on line {context_mark.line + 1})"
    return f"{where}{problem}"
