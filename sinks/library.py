"""The analysts' query library: ``sinks/queries/NAME.sql``, each with a header saying the question it
answers and its parameters (``-- param: name Type = default   meaning``), run with
``parcours sql --query NAME --param name=value``.

Parameters are ClickHouse-style placeholders ``{name:Type}``. They are turned into literals here,
after checking the value against the type, so the same text runs on chDB and on a server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources

from parcours.schemas.errors import QueryError

PARAM = re.compile(r"^--\s*param:\s*(\w+)\s+(\w+)\s*=\s*(\S+)\s*(.*)$")
PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str
    meaning: str


@dataclass(frozen=True)
class LibraryQuery:
    name: str
    question: str
    params: tuple[Param, ...]
    text: str

    def render(self, database: str, values: dict[str, str] | None = None) -> str:
        """The SQL with ``{db}`` and every ``{name:Type}`` replaced; QueryError names a bad one."""
        given = dict(values or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise QueryError(
                f"unknown parameter {', '.join(unknown)}; {self.name} takes "
                + (", ".join(known) or "none"),
                query=self.name,
            )
        chosen = {name: given.get(name, p.default) for name, p in known.items()}

        def literal(match: re.Match[str]) -> str:
            name, kind = match.group(1), match.group(2)
            if name not in chosen:
                raise QueryError(
                    f"placeholder {{{name}}} has no declared parameter", query=self.name
                )
            return _literal(self.name, name, kind, chosen[name])

        return PLACEHOLDER.sub(literal, self.text.replace("{db}", database))


def _literal(query: str, name: str, kind: str, value: str) -> str:
    try:
        if kind == "Date":
            return f"toDate('{date.fromisoformat(value).isoformat()}')"
        if kind == "DateTime":
            moment = datetime.fromisoformat(value)
            return f"toDateTime('{moment.strftime('%Y-%m-%d %H:%M:%S')}', 'UTC')"
        if kind.startswith("UInt"):
            number = int(value)
            if number < 0:
                raise ValueError("must not be negative")
            return str(number)
        if kind.startswith("Int"):
            return str(int(value))
        if kind.startswith("Float"):
            return repr(float(value))
        if kind == "String":
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    except ValueError as exc:
        raise QueryError(
            f"parameter {name}={value!r} is not a {kind}: {exc}", query=query
        ) from None
    raise QueryError(f"parameter {name} has unsupported type {kind}", query=query)


def load(name: str, folder: str = "queries") -> LibraryQuery:
    """A query of the analysts' library, or of another folder of ``sinks/`` (``profile_queries``: the
    profile API's read model) written the same way."""
    entry = resources.files("parcours.sinks").joinpath(folder).joinpath(f"{name}.sql")
    if not re.fullmatch(r"\w+", name) or not entry.is_file():
        raise QueryError(f"no query named {name!r}; the library has: {', '.join(names(folder))}")
    return parse(name, entry.read_text())


def names(folder: str = "queries") -> list[str]:
    entries = resources.files("parcours.sinks").joinpath(folder).iterdir()
    return sorted(e.name.removesuffix(".sql") for e in entries if e.name.endswith(".sql"))


def parse(name: str, text: str) -> LibraryQuery:
    question, params = "", []
    for line in text.splitlines():
        if line.startswith("-- question:"):
            question = line.removeprefix("-- question:").strip()
        elif match := PARAM.match(line):
            params.append(Param(*(g.strip() for g in match.groups())))
    if not question:
        raise QueryError("the header has no '-- question:' line", query=name)
    return LibraryQuery(name, question, tuple(params), text)
