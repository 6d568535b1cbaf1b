"""lark grammars for the small languages nginx keeps inside strings.

- variable interpolation (``$var``, ``${var}``, ``$1``), nginx's "complex values";
- ``if (...)`` conditions (ngx_http_rewrite_module).

Both return model values (``Template``, ``Condition``) or raise ``GrammarError`` with a message in
nginx's words; the caller attaches file:line.
"""

from __future__ import annotations

from functools import lru_cache

from lark import Lark, Token, UnexpectedInput

from proxy.model import Condition, CondOp, Lit, SourceSpan, Template, Var


class GrammarError(ValueError):
    """A string does not follow nginx's syntax; the message says why."""


_TEMPLATE = Lark(
    r"""
    start: _part*
    _part: braced | capture | var | text | bad
    braced: /\$\{[A-Za-z0-9_]+\}/
    capture: /\$[0-9]/
    var: /\$[A-Za-z_][A-Za-z0-9_]*/
    text: /[^$]+/
    bad: /\$/
    """,
    parser="lalr",
    lexer="basic",
)


@lru_cache(maxsize=4096)
def parse_template(raw: str) -> Template:
    """Split a string into literal and variable parts, as nginx's script compiler does.

    ``$`` followed by a digit is a regex capture (one digit: ``$10`` is ``$1`` then ``0``);
    ``${name}`` may be followed directly by name characters.

    Raises:
        GrammarError: ``$`` not followed by a variable name, or ``${`` without ``}``.
    """
    if "$" not in raw:
        return Template(raw=raw, parts=(Lit(text=raw),) if raw else ())
    try:
        tree = _TEMPLATE.parse(raw)
    except UnexpectedInput as exc:
        raise GrammarError(f'invalid variable name in "{raw}"') from exc
    parts: list[Lit | Var] = []
    for child in tree.children:
        tok = child.children[0]
        assert isinstance(tok, Token)
        kind = child.data
        if kind == "text":
            if parts and isinstance(parts[-1], Lit):
                parts[-1] = Lit(text=parts[-1].text + tok.value)
            else:
                parts.append(Lit(text=tok.value))
        elif kind == "braced":
            parts.append(Var(name=tok.value[2:-1]))
        elif kind in ("capture", "var"):
            parts.append(Var(name=tok.value[1:]))
        else:
            raise GrammarError(f'invalid variable name in "{raw}"')
    return Template(raw=raw, parts=tuple(parts))


_CONDITION = Lark(
    r"""
    start: operand                    -> truthy
         | operand CMP value          -> compare
         | operand REOP value         -> regex
         | FILEOP value               -> filetest
    operand: WORD | STRING
    value: WORD | STRING
    CMP.3: "!=" | "="
    REOP.3: "!~*" | "!~" | "~*" | "~"
    FILEOP.3: /!?-[fdex]/
    STRING: /"(\\.|[^"\\])*"/ | /'(\\.|[^'\\])*'/
    WORD: /[^\s"']+/
    %ignore /\s+/
    """,
    parser="lalr",
    lexer="contextual",
)

_CMP = {"=": CondOp.EQ, "!=": CondOp.NE}
_REOP = {"~": CondOp.MATCH, "~*": CondOp.MATCH_CI, "!~": CondOp.NOT_MATCH, "!~*": CondOp.NOT_MATCH_CI}
_FILEOP = {
    "-f": CondOp.FILE, "!-f": CondOp.NOT_FILE, "-d": CondOp.DIR, "!-d": CondOp.NOT_DIR,
    "-e": CondOp.EXISTS, "!-e": CondOp.NOT_EXISTS, "-x": CondOp.EXEC, "!-x": CondOp.NOT_EXEC,
}


def _quote(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(tok: Token) -> str:
    text = tok.value
    if tok.type == "STRING":
        body = text[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                out.append(body[i + 1])
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)
    return text


def parse_condition(args: tuple[str, ...], quoted: tuple[bool, ...], source: SourceSpan) -> Condition:
    """Parse the arguments of ``if`` into a ``Condition``.

    nginx requires the first argument to start with ``(`` and the last to end with ``)``; what lies
    between is a variable, a comparison, a regex match or a file test.

    Args:
        args: the directive's arguments, quotes removed.
        quoted: whether each argument was quoted.
        source: where the ``if`` was written.

    Raises:
        GrammarError: with nginx's wording ("invalid condition", "unexpected ...").
    """
    if not args:
        raise GrammarError("invalid number of arguments in \"if\" directive")
    items = list(args)
    flags = list(quoted)
    if not items[0].startswith("(") or flags[0] and items[0] != "(":
        raise GrammarError(f'invalid condition "{items[0]}"')
    items[0] = items[0][1:]
    if not items[-1].endswith(")") or (flags[-1] and items[-1] != ")"):
        raise GrammarError(f'invalid condition "{items[-1]}"')
    items[-1] = items[-1][:-1]
    pieces = [
        _quote(a) if q else a for a, q in zip(items, flags, strict=True) if a or q
    ]
    text = " ".join(pieces)
    try:
        tree = _CONDITION.parse(text)
    except UnexpectedInput as exc:
        raise GrammarError(f'invalid condition "({text})"') from exc
    kids = tree.children
    if tree.data == "filetest":
        op_tok, value = kids
        assert isinstance(op_tok, Token)
        return Condition(op=_FILEOP[op_tok.value], subject=_value_template(value), source=source)
    operand = _value_text(kids[0])
    if not operand.startswith("$"):
        raise GrammarError(f'invalid condition "{operand}"')
    subject = parse_template(operand)
    if tree.data == "truthy":
        return Condition(op=CondOp.TRUTHY, subject=subject, source=source)
    op_tok = kids[1]
    assert isinstance(op_tok, Token)
    if tree.data == "compare":
        return Condition(
            op=_CMP[op_tok.value], subject=subject, value=_value_template(kids[2]), source=source
        )
    return Condition(
        op=_REOP[op_tok.value], subject=subject, pattern=_value_text(kids[2]), source=source
    )


def _value_text(node: object) -> str:
    tok = node.children[0]  # type: ignore[attr-defined]
    assert isinstance(tok, Token)
    return _unquote(tok)


def _value_template(node: object) -> Template:
    return parse_template(_value_text(node))
