"""The nginx tokenizer follows ngx_conf_read_token: comments, quotes, escapes, variables, braces."""

from __future__ import annotations

import pytest

from migrate.lexer import LexError, Token, TokenKind, tokenize

_PUNCT = {TokenKind.SEMICOLON: "<;>", TokenKind.OPEN: "<{>", TokenKind.CLOSE: "<}>"}


def show(tokens: list[Token]) -> list[str]:
    """Words as their value, punctuation as ``<;>``, ``<{>``, ``<}>``."""
    return [t.value if t.kind is TokenKind.WORD else _PUNCT[t.kind] for t in tokens]


def words(text: str) -> list[str]:
    return show(tokenize(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("# only a comment", []),
        ("# comment\n", []),
        ("a b; # trailing comment\nc;", ["a", "b", "<;>", "c", "<;>"]),
        ("a; #no newline at EOF", ["a", "<;>"]),
        ("  # indented comment\n  a;", ["a", "<;>"]),
        ("a#b;", ["a#b", "<;>"]),  # '#' inside a token is not a comment
        ("a #b;\nc;", ["a", "c", "<;>"]),  # '#' starting a token comments out the rest
        ('"#not a comment";', ["#not a comment", "<;>"]),
        ("'#x' y;", ["#x", "y", "<;>"]),
        ("a {#c\n}", ["a", "<{>", "<}>"]),
    ],
)
def test_comments(text: str, expected: list[str]) -> None:
    """A '#' at the start of a token comments to end of line; elsewhere it is text."""
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"a b";', ["a b", "<;>"]),
        ("'a b';", ["a b", "<;>"]),
        ('"";', ["", "<;>"]),
        ("'';", ["", "<;>"]),
        ("\"it's\";", ["it's", "<;>"]),
        ("'say \"hi\"';", ['say "hi"', "<;>"]),
        ('"a;{}b";', ["a;{}b", "<;>"]),
        ('"multi\nline";', ["multi\nline", "<;>"]),
        ('a"b"c;', ['a"b"c', "<;>"]),  # quotes only count at the start of a token
        ('"a" "b";', ["a", "b", "<;>"]),
        ('"a"{', ["a", "<{>"]),
        ('"a";', ["a", "<;>"]),
        ('if ($a = "b") {', ["if", "($a", "=", "b", ")", "<{>"]),  # ')' may follow a quote
        ("\"a\"\tb;", ["a", "b", "<;>"]),
    ],
)
def test_quotes(text: str, expected: list[str]) -> None:
    """Single and double quotes group text; the quotes are removed."""
    assert words(text) == expected


def test_quoted_flag() -> None:
    """Tokens remember whether they were quoted."""
    toks = tokenize("a 'b' \"c\" d;")
    assert [(t.value, t.quoted) for t in toks[:4]] == [("a", False), ("b", True), ("c", True),
                                                        ("d", False)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r'"a\"b";', ['a"b']),
        (r"'a\'b';", ["a'b"]),
        (r'"a\\b";', ["a\\b"]),
        (r'"a\tb";', ["a\tb"]),
        (r'"a\nb";', ["a\nb"]),
        (r'"a\rb";', ["a\rb"]),
        (r'"\\n";', ["\\n"]),  # escaped backslash, then a plain n
        (r'"\\\"";', ['\\"']),
        (r"a\"b;", ['a"b']),  # escapes work outside quotes too
        (r"a\ b;", [r"a\ b"]),  # an escaped space does not end the word; the backslash stays
        (r"a\;b;", [r"a\;b"]),  # same for an escaped semicolon
        (r'"a\.b";', [r"a\.b"]),  # other escapes keep their backslash
        (r"\.php$;", [r"\.php$"]),
        (r'"^/(\d+)/\w*\S$";', [r"^/(\d+)/\w*\S$"]),
        (r"~*\.(jpe?g|png)$;", [r"~*\.(jpe?g|png)$"]),
        (r"'\x41';", [r"\x41"]),
    ],
)
def test_escapes(text: str, expected: list[str]) -> None:
    """\\" \\' \\\\ lose the backslash, \\t \\r \\n become control characters, others are kept."""
    assert [w for w in words(text) if w != "<;>"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("set $a ${var} b;", ["set", "$a", "${var}", "b", "<;>"]),
        ("${var}b;", ["${var}b", "<;>"]),
        ("x${a}${b};", ["x${a}${b}", "<;>"]),
        ("location $var{", ["location", "$var", "<{>"]),  # '{' after a name opens a block
        ("a ${ b;", ["a", "${", "b", "<;>"]),  # '{' right after '$' stays in the word
        ("a{", ["a", "<{>"]),
        ("a {b;}", ["a", "<{>", "b", "<;>", "<}>"]),
    ],
)
def test_variables_and_braces(text: str, expected: list[str]) -> None:
    """'${' stays inside a word; any other '{' ends the word and opens a block."""
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a}", ["a}"]),  # '}' inside a word is text
        ("return 200 a};", ["return", "200", "a}", "<;>"]),
        ("a; }", ["a", "<;>", "<}>"]),
        ("}", ["<}>"]),
        ("}}", ["<}>", "<}>"]),
        ("{}", ["<{>", "<}>"]),
        ("a;b;", ["a", "<;>", "b", "<;>"]),
        ("a { b; } c;", ["a", "<{>", "b", "<;>", "<}>", "c", "<;>"]),
        ("a{b;}c;", ["a", "<{>", "b", "<;>", "<}>", "c", "<;>"]),
        ("x }a;", ["x", "<}>", "a", "<;>"]),  # '}' at the start of a token closes
    ],
)
def test_closing_brace(text: str, expected: list[str]) -> None:
    """'}' closes a block only at the start of a token."""
    assert words(text) == expected


@pytest.mark.parametrize(
    ("text", "bad", "line"),
    [
        ('"a"x;', "x", 1),
        ("'a'b;", "b", 1),
        ("a\n\"b\"c;", "c", 2),
        ("'a'\"b\";", '"', 1),
        ('"a"#c', "#", 1),
        ('"a"}', "}", 1),
        ('"multi\nline"z;', "z", 2),
    ],
)
def test_text_after_closing_quote(text: str, bad: str, line: int) -> None:
    """Anything but space, ';', '{' or ')' right after a closing quote is 'unexpected "x"'."""
    with pytest.raises(LexError) as info:
        tokenize(text)
    assert info.value.message == f'unexpected "{bad}"'
    assert info.value.line == line


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('a "b;', 1),
        ("a 'b;\nc;\n", 3),
        ('a;\nb "c\nd\n\ne;', 5),
        ('"\\"', 1),  # the escaped quote does not close
    ],
)
def test_unterminated_quote(text: str, line: int) -> None:
    """An unterminated quote is a LexError at the line where the file ends, in nginx's words."""
    with pytest.raises(LexError) as info:
        tokenize(text)
    assert info.value.message == 'unexpected end of file, expecting ";" or "}"'
    assert info.value.line == line


def test_line_numbers() -> None:
    """Each token carries the line it starts on, counting newlines in quotes and escapes."""
    text = 'a "x\ny" b;\n# c\n\n  d\\\ne;\n}'
    toks = tokenize(text)
    assert [(show([t])[0], t.line) for t in toks] == [
        ("a", 1), ("x\ny", 1), ("b", 2), ("<;>", 2), ("d\\\ne", 5), ("<;>", 6), ("<}>", 7)]


def test_whitespace_kinds() -> None:
    """Spaces, tabs, CR and LF all separate tokens."""
    assert words("a\tb\r\nc  d;") == ["a", "b", "c", "d", "<;>"]
