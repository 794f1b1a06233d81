""".env files as people really save them, read the way Docker Compose reads them.

* **Encoding.** A byte-order mark picks the encoding (UTF-8 with BOM as Notepad writes it, UTF-16
  as Windows PowerShell 5's ``>`` and ``Out-File`` write it, UTF-32); without one the text is
  UTF-8, else UTF-16 when every other byte is NUL, else Windows-1252 (what PowerShell 5's
  ``Set-Content`` writes). The BOM never becomes part of the first variable's name.
* **Syntax** is python-dotenv's parser (``KEY=value``, ``export``, comments, quotes, values that
  span lines, CRLF line ends).
* **Quotes and ``$``**, as Docker Compose does: a single-quoted value is taken literally; an
  unquoted or double-quoted value has ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
  ``${VAR:?message}``, ``${VAR?message}``, ``${VAR:+other}``, ``${VAR+other}`` replaced, looked up in
  the process environment first, then in the lines of the file above; ``$$`` (and ``\\$`` inside
  double quotes) is a literal ``$``. A variable that is not set becomes empty, with a warning that
  names the line, never the value. python-dotenv's own interpolation is not used: it expands
  inside single quotes too and knows only ``${VAR}``.

Messages never quote a value: any of them may be a password.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"), (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_NAME = r"[_A-Za-z][_A-Za-z0-9]*"
_TEMPLATE = re.compile(rf"\$(?:(?P<escaped>\$)|(?P<named>{_NAME})|\{{(?:(?P<braced>{_NAME})(?P<op>:?[-+?])?|(?P<invalid>)))")


@dataclass
class EnvFile:
    """What a .env file said: its variables, and what is wrong or suspicious in it (no values)."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # the file cannot be used as it is
    warnings: list[str] = field(default_factory=list)  # used, but the user should look
    encoding: str = "utf-8"


def decode(data: bytes) -> tuple[str, str]:
    """The text of a .env file and the encoding it was read in; ``ValueError`` when no encoding fits."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if len(data) >= 2 and len(data) % 2 == 0:
        evens, odds = data[0::2], data[1::2]
        if odds.count(0) > len(odds) // 2:
            return data.decode("utf-16-le"), "utf-16-le"
        if evens.count(0) > len(evens) // 2:
            return data.decode("utf-16-be"), "utf-16-be"
    try:
        return data.decode("cp1252"), "windows-1252"
    except UnicodeDecodeError:
        raise ValueError("it is neither UTF-8, UTF-16 nor Windows-1252 text") from None


def read(path: Path, environ: Mapping[str, str]) -> EnvFile:
    """Read ``path``; problems and warnings name the file, the line and the variable."""
    from dotenv.parser import (
        parse_stream,  # here: a pipeline seldom has a .env file to read
    )

    result = EnvFile()
    try:
        text, result.encoding = decode(path.read_bytes())
    except OSError as exc:
        result.problems.append(f"the .env file {path} cannot be read: {exc.strerror or exc.__class__.__name__}")
        return result
    except ValueError as exc:
        result.problems.append(f"the .env file {path} cannot be read: {exc}; save it as UTF-8")
        return result
    for binding in parse_stream(io.StringIO(text)):
        where = f"{path} line {binding.original.line}"
        if binding.error:
            result.problems.append(f"{where} is not KEY=value (an unclosed quote?)")
            continue
        if binding.key is None or binding.value is None:
            continue
        quote = _quote_of(binding.original.string, binding.key)
        if quote == "'":
            value = binding.value
        else:
            def lookup(name: str) -> str | None:
                return environ[name] if name in environ else result.values.get(name)

            try:
                value, unset = interpolate(binding.value, lookup, double_quoted=quote == '"')
            except ValueError as exc:
                result.problems.append(f"{where} ({binding.key}): {exc}")
                continue
            for name in unset:
                result.warnings.append(
                    f"{where}: {binding.key} refers to ${name}, which is not set, so it became empty "
                    "(put the value in single quotes if '$' is part of it)" if not _secret(binding.key) else
                    f"{where}: {binding.key} holds a '$' that refers to a variable that is not set, so that part "
                    "became empty (put the value in single quotes if '$' is part of it)")
        result.values[binding.key] = value
    return result


def _secret(name: str) -> bool:
    return name.endswith("PASSWORD")


def _quote_of(original: str, key: str) -> str:
    """The quote character that opens the value of ``key=...`` in its source text ('' when unquoted)."""
    match = re.match(rf"\s*(?:export\s+)?(?:'{re.escape(key)}'|{re.escape(key)})\s*=[ \t]*(['\"]?)", original)
    return match[1] if match else ""


def interpolate(value: str, lookup: Callable[[str], str | None], *, double_quoted: bool = False) -> tuple[str, list[str]]:
    """Docker Compose's substitution of ``$VAR`` forms in ``value``; returns the text and the unset names.

    ``ValueError`` for ``${`` without a valid name, or ``${VAR?message}`` with VAR unset.
    """
    if double_quoted:
        value = value.replace("\\$", "$$")
    unset: list[str] = []
    out: list[str] = []
    pos = 0
    while (match := _TEMPLATE.search(value, pos)) is not None:
        out.append(value[pos:match.start()])
        pos = match.end()
        if match["escaped"]:
            out.append("$")
        elif match["named"]:
            found = lookup(match["named"])
            if found is None:
                unset.append(match["named"])
            out.append(found or "")
        elif match["braced"]:
            name, op = match["braced"], match["op"] or ""
            if not op:
                if value[pos:pos + 1] != "}":
                    raise ValueError(f"'${{{name}' is not a valid substitution (missing '}}')")
                pos += 1
                found = lookup(name)
                if found is None:
                    unset.append(name)
                out.append(found or "")
                continue
            end = _closing_brace(value, pos)
            if end < 0:
                raise ValueError(f"'${{{name}{op}' is not closed with '}}'")
            argument, more = interpolate(value[pos:end], lookup)
            pos = end + 1
            found = lookup(name)
            present = found is not None and (found != "" or not op.startswith(":"))
            if op.endswith("-"):
                out.append(found if present else argument)
                unset += more if not present else []
            elif op.endswith("+"):
                out.append(argument if present else "")
            else:  # "?" or ":?": required
                if not present:
                    raise ValueError(f"{name} must be set" + (f": {argument}" if argument else ""))
                out.append(found)
        else:
            raise ValueError("'${' must be followed by a variable name and '}'")
    out.append(value[pos:])
    return "".join(out), unset


def _closing_brace(text: str, start: int) -> int:
    """The index of the '}' that closes a ``${...`` opened before ``start`` (nested ``${...}`` skipped)."""
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if text.startswith("${", index):
            depth += 1
        elif char == "}":
            if depth == 0:
                return index
            depth -= 1
    return -1
