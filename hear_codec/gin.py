"""Read gin-config text (github.com/google/gin-config) without gin: the published EnCodecMAE configs.

The official EnCodecMAE code describes each model in gin; its published files carry that text
(v2: inside the .pt file, v1: ``config.gin``). hear_codec only needs to *read* the bindings, so
this is a small parser, not gin: nothing is imported or called.

    >>> gin = GinConfig("MODEL_DIM=768\\nencoder/pkg.TransformerEncoder.model_dim=%MODEL_DIM")
    >>> gin.get("TransformerEncoder", "model_dim", scope="encoder")
    768

Handled: macros (``MODEL_DIM=768``, used as ``%MODEL_DIM``), scoped dotted bindings
(``scope/pkg.Class.param=1``), block bindings (``pkg.Class:`` then indented ``param = value``
lines), gin's own ``config_str`` output (``Class.param = \\`` continuations, values spread over
lines) and ``#`` comments outside strings. ``+=``, ``include``/``import`` lines and ``$``
references are skipped: no model setting uses them.
"""
from __future__ import annotations

import ast
import re

BINDING = re.compile(r"^([A-Za-z_][\w./]*)\s*=\s*(.+)$", re.S)


class GinError(ValueError):
    """The text uses a name it never binds (a ``%MACRO`` without its definition)."""


def parse_gin(text: str) -> dict:
    """Flatten gin text into {binding: value string}; later bindings win, as in gin.

    Keys keep gin's spelling (``"MODEL_DIM"``, ``"encoder/pkg.Class.param"``); block bindings
    become dotted keys (``"pkg.Class.param"``).
    """
    bindings, block = {}, None
    for indented, line in _logical_lines(text):
        if not indented and line.endswith(":") and "=" not in line:
            block = line[:-1].strip()
            continue
        match = BINDING.match(line)
        if not match or line.split("=", 1)[0].rstrip().endswith("+"):
            if not indented:
                block = None
            continue
        key, value = match.groups()
        if indented and block:
            key = f"{block}.{key}"
        elif not indented:
            block = None
        bindings.pop(key, None)  # re-insert so that the newest binding is also the last one
        bindings[key] = value.strip()
    return bindings


class GinConfig:
    """Look up bindings by class name, whatever module path or scope spelling the text used."""

    _MISSING = object()

    def __init__(self, text: str):
        self.text = text
        self.raw = parse_gin(text)
        self.entries = []  # (scope, class name, param, value string), in binding order
        for key, value in self.raw.items():
            scope, _, rest = key.rpartition("/")
            if "." not in rest:
                continue  # a macro
            selector, param = rest.rsplit(".", 1)
            self.entries.append((scope, selector.rsplit(".", 1)[-1], param, value))

    def macro(self, name: str, default=_MISSING):
        """The value of macro ``name`` (``default`` if it is unbound and one is given)."""
        if name in self.raw:
            return self.value(self.raw[name])
        if default is self._MISSING:
            raise GinError(f"the gin config does not set the macro {name}")
        return default

    def value(self, text: str):
        """A binding's value: macros resolved, ``@refs`` kept as strings, literals evaluated."""
        text = text.strip()
        if text.startswith("%"):
            return self.macro(text[1:])
        if text.startswith("@"):
            return text
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            # lists of references, e.g. [@a.B, @c.D]: a list of strings
            if text.startswith("[") and text.endswith("]"):
                return [self.value(t) for t in _split_top_level(text[1:-1])]
            return text

    def get(self, cls: str, param: str, scope: str = "", default=None):
        """The newest binding of ``cls.param`` in ``scope`` (falling back to unscoped), resolved."""
        for want in ([scope, ""] if scope else [""]):
            for s, c, p, v in reversed(self.entries):
                if c == cls and p == param and s == want:
                    return self.value(v)
        return default

    def mentions(self, cls: str) -> bool:
        """Whether ``cls`` is bound or referenced anywhere in the text."""
        return any(c == cls for _, c, _, _ in self.entries) or re.search(rf"[@.]{cls}\b", self.text) is not None


def reference(value) -> tuple:
    """``'@scope/pkg.Class'`` or ``'@pkg.Class()'`` -> (scope, 'Class'); anything else -> (None, None)."""
    if not isinstance(value, str) or not value.startswith("@"):
        return None, None
    body = value[1:].split("(", 1)[0]
    scope, _, selector = body.rpartition("/")
    return scope, selector.rsplit(".", 1)[-1]


def _strip_comment(line: str) -> str:
    """Drop a '#' comment that is not inside a string literal."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def _bracket_depth(text: str) -> int:
    """Open brackets minus closed ones, outside string literals."""
    depth, quote = 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
    return depth


def _logical_lines(text: str):
    """Yield (indented, line) after joining backslash continuations and open brackets."""
    buf, indented = None, False
    for raw in text.splitlines():
        line = _strip_comment(raw).rstrip()
        if buf is None:
            if not line.strip():
                continue
            buf, indented = line.strip(), raw[:1].isspace()
        else:
            buf = buf + " " + line.strip()
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        if _bracket_depth(buf) > 0:
            continue
        yield indented, buf
        buf = None
    if buf is not None:
        yield indented, buf


def _split_top_level(text: str) -> list:
    """Split ``a, [b, c], d`` at the commas outside brackets."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]
