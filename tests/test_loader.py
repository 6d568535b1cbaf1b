"""Loading a configuration tree: includes, globs, ``nginx -T`` dumps and syntax errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.diagnostics import Diagnostic, Level
from migrate.loader import Stmt, Tree, load, split_dump


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def walk(stmts: list[Stmt]) -> Iterator[Stmt]:
    for st in stmts:
        yield st
        if st.block:
            yield from walk(st.block)


def find(tree: Tree, name: str) -> list[Stmt]:
    return [st for st in walk(tree.stmts) if st.name == name]


def errors(tree: Tree) -> list[Diagnostic]:
    return [d for d in tree.diagnostics if d.level is Level.ERROR]


# ---------------------------------------------------------------------------------------------
# includes


def test_include_relative_to_main_file_directory(tmp_path: Path) -> None:
    """A relative include resolves against the main file's directory, also from nested files."""
    conf = tmp_path / "etc"
    main = write(conf / "nginx.conf", "events {}\nhttp {\n    include sites/a.conf;\n}\n")
    # sites/a.conf includes "snippets/s.conf": relative to etc/, not to etc/sites/
    write(conf / "sites" / "a.conf", "server {\n    include snippets/s.conf;\n}\n")
    write(conf / "snippets" / "s.conf", "listen 8080;\n")
    write(conf / "sites" / "snippets" / "s.conf", "listen 9999;\n")  # the wrong candidate
    tree = load(str(main))
    assert tree.diagnostics == []
    (listen,) = find(tree, "listen")
    assert listen.args == ("8080",)
    assert listen.file == str(conf / "snippets" / "s.conf")
    assert listen.line == 1
    assert listen.included_from == (str(conf / "sites" / "a.conf"), 2)
    assert tree.files == [str(main), str(conf / "sites" / "a.conf"),
                          str(conf / "snippets" / "s.conf")]


def test_include_absolute_path(tmp_path: Path) -> None:
    """An absolute include path is used as written."""
    other = write(tmp_path / "elsewhere" / "x.conf", "worker_processes 3;\n")
    main = write(tmp_path / "conf" / "nginx.conf", f"include {other};\nevents {{}}\n")
    tree = load(str(main))
    assert tree.diagnostics == []
    assert [(s.name, s.file) for s in tree.stmts] == [("worker_processes", str(other)),
                                                     ("events", str(main))]


def test_include_glob_expands_sorted(tmp_path: Path) -> None:
    """A glob include expands in sorted order, whatever order the files were created in."""
    for name in ("c.conf", "a.conf", "b.conf", "10.conf", "notes.txt"):
        write(tmp_path / "conf.d" / name, f"# {name}\nset_real_ip_from {name};\n")
    main = write(tmp_path / "nginx.conf", "http {\n    include conf.d/*.conf;\n}\n")
    tree = load(str(main))
    assert tree.diagnostics == []
    assert [s.args[0] for s in find(tree, "set_real_ip_from")] == [
        "10.conf", "a.conf", "b.conf", "c.conf"]
    assert all(s.line == 2 for s in find(tree, "set_real_ip_from"))


def test_include_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    """A glob that matches no file is not an error (nginx accepts it)."""
    main = write(tmp_path / "nginx.conf", "events {}\nhttp {\n"
                 "    include sites-enabled/*.conf;\n    include none?.conf;\n}\n")
    tree = load(str(main))
    assert tree.diagnostics == []
    assert [s.name for s in tree.stmts] == ["events", "http"]
    assert tree.stmts[1].block == []
    assert len(tree.includes) == 2


def test_missing_plain_include_is_one_error(tmp_path: Path) -> None:
    """A plain include of a missing file is exactly one ERROR at the include's file:line."""
    main = write(tmp_path / "nginx.conf",
                 "events {}\nhttp {\n    server {\n        include missing.conf;\n    }\n}\n")
    tree = load(str(main))
    (diag,) = tree.diagnostics
    assert diag.level is Level.ERROR
    assert diag.code == "include-missing"
    assert (diag.file, diag.line) == (str(main), 4)
    assert "missing.conf" in diag.message


def test_missing_include_in_included_file_points_there(tmp_path: Path) -> None:
    """A missing include inside an included file is reported at that file's line."""
    main = write(tmp_path / "nginx.conf", "http {\n    include a.conf;\n}\n")
    a = write(tmp_path / "a.conf", "\n\ninclude gone.conf;\n")
    tree = load(str(main))
    (diag,) = errors(tree)
    assert (diag.file, diag.line) == (str(a), 3)


def test_include_cycle_is_a_diagnostic(tmp_path: Path) -> None:
    """A file that includes itself (through another file) gives an ERROR, not a RecursionError."""
    main = write(tmp_path / "nginx.conf", "events {}\nhttp {\n    include a.conf;\n}\n")
    a = write(tmp_path / "a.conf", "include b.conf;\n")
    write(tmp_path / "b.conf", "\ninclude a.conf;\n")
    tree = load(str(main))
    (diag,) = tree.diagnostics
    assert diag.level is Level.ERROR
    assert diag.code == "include-cycle"
    assert (diag.file, diag.line) == (str(tmp_path / "b.conf"), 2)
    assert str(a) in diag.message


def test_self_including_file_is_a_diagnostic(tmp_path: Path) -> None:
    """The main file including itself is one ERROR."""
    main = write(tmp_path / "nginx.conf", "events {}\ninclude nginx.conf;\n")
    tree = load(str(main))
    assert [(d.code, d.line) for d in tree.diagnostics] == [("include-cycle", 2)]


@pytest.mark.timeout(30)
def test_glob_include_cycle_terminates(tmp_path: Path) -> None:
    """Files that glob-include their own directory are reported at once (no exponential reads)."""
    main = write(tmp_path / "nginx.conf", "events {}\nhttp {\n    include conf.d/*.conf;\n}\n")
    for name in ("a.conf", "b.conf", "c.conf"):
        write(tmp_path / "conf.d" / name, "include conf.d/*.conf;\nserver_tokens off;\n")
    tree = load(str(main))
    assert tree.diagnostics
    assert all(d.code == "include-cycle" for d in tree.diagnostics)
    # one report per (include line, file re-entered): no duplicates
    keys = [(d.file, d.line, d.message) for d in tree.diagnostics]
    assert len(keys) == len(set(keys))


def test_same_file_included_twice_is_not_a_cycle(tmp_path: Path) -> None:
    """Including one snippet from two servers is fine; it is read (and listed) once per use."""
    main = write(tmp_path / "nginx.conf",
                 "http {\n    server { include s.conf; }\n    server { include s.conf; }\n}\n")
    s = write(tmp_path / "s.conf", "listen 80;\n")
    tree = load(str(main))
    assert tree.diagnostics == []
    assert [st.file for st in find(tree, "listen")] == [str(s), str(s)]
    assert tree.files == [str(main), str(s)]


def test_include_with_wrong_arity(tmp_path: Path) -> None:
    """``include`` with two arguments is an arity ERROR at its line."""
    main = write(tmp_path / "nginx.conf", "events {}\ninclude a.conf b.conf;\n")
    tree = load(str(main))
    assert [(d.code, d.line) for d in tree.diagnostics] == [("arity", 2)]


def test_prefix_is_a_second_include_base(tmp_path: Path) -> None:
    """With a prefix, a relative include missing beside the main file is looked up there."""
    main = write(tmp_path / "conf" / "nginx.conf", "include extra.conf;\n")
    extra = write(tmp_path / "prefix" / "extra.conf", "worker_processes 2;\n")
    tree = load(str(main), prefix=str(tmp_path / "prefix"))
    assert tree.diagnostics == []
    assert [s.file for s in tree.stmts] == [str(extra)]


# ---------------------------------------------------------------------------------------------
# nginx -T dumps

DUMP = """\
nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
nginx: configuration file /etc/nginx/nginx.conf test is successful
# configuration file /etc/nginx/nginx.conf:
worker_processes 1;
events {
    worker_connections 64;
}
http {
    include conf.d/*.conf;
    include /etc/nginx/none/*.conf;
}

# configuration file /etc/nginx/conf.d/a.conf:
# vhost a
server {
    listen 8080;

    server_name a.example;
}

"""


def test_nginx_dump_is_read_as_virtual_files(tmp_path: Path) -> None:
    """An ``nginx -T`` dump yields statements of every file, with virtual paths and real lines."""
    dump = write(tmp_path / "dump.txt", DUMP)
    # a file on disk at the same relative path must not be used
    write(tmp_path / "conf.d" / "a.conf", "server { listen 1; }\n")
    tree = load(str(dump))
    assert tree.diagnostics == []
    assert tree.main_file == "/etc/nginx/nginx.conf"
    assert tree.files == ["/etc/nginx/nginx.conf", "/etc/nginx/conf.d/a.conf"]
    got = [(s.name, s.file, s.line) for s in walk(tree.stmts)]
    assert got == [
        ("worker_processes", "/etc/nginx/nginx.conf", 1),
        ("events", "/etc/nginx/nginx.conf", 2),
        ("worker_connections", "/etc/nginx/nginx.conf", 3),
        ("http", "/etc/nginx/nginx.conf", 5),
        ("server", "/etc/nginx/conf.d/a.conf", 2),
        ("listen", "/etc/nginx/conf.d/a.conf", 3),
        ("server_name", "/etc/nginx/conf.d/a.conf", 5),
    ]
    (server,) = find(tree, "server")
    assert server.included_from == ("/etc/nginx/nginx.conf", 6)
    assert [i.line for i in tree.includes] == [6, 7]


def test_nginx_dump_missing_include_is_reported(tmp_path: Path) -> None:
    """A plain include naming a file absent from the dump is one ERROR at the include line."""
    text = ("# configuration file /etc/nginx/nginx.conf:\nevents {}\n"
            "http {\n    include /etc/nginx/mime.types;\n}\n\n")
    tree = load(str(write(tmp_path / "dump.txt", text)))
    (diag,) = tree.diagnostics
    assert (diag.level, diag.file, diag.line) == (Level.ERROR, "/etc/nginx/nginx.conf", 3)


def test_split_dump() -> None:
    """split_dump returns {path: text} for a dump and None for a plain config."""
    files = split_dump(DUMP)
    assert files is not None
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/conf.d/a.conf"]
    assert files["/etc/nginx/conf.d/a.conf"].startswith("# vhost a\nserver {")
    assert split_dump("events {}\nhttp {}\n") is None


# ---------------------------------------------------------------------------------------------
# syntax errors: exactly one ERROR each, at the right line


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # missing ";" at end of file: reported where the unterminated directive ends
        ("events {}\nworker_processes 1\n", 2, 'unexpected end of file, expecting ";" or "}"'),
        ("events {}\nworker_processes\n  1", 3, 'unexpected end of file, expecting ";" or "}"'),
        # unexpected "}": the line of that brace
        ("events {}\n\n}\n", 3, 'unexpected "}"'),
        ("events {}\nhttp {\n  server {\n  }\n}\n}\n", 6, 'unexpected "}"'),
        # missing ";" before a "}": nginx sees the "}" where it expected ";"
        ("events {}\nhttp {\n  server {\n    listen 80\n  }\n}\n", 5, 'unexpected "}"'),
        # unclosed block: reported at the last line holding a token
        ("events {}\nhttp {\n  server {\n  }\n\n", 4, 'unexpected end of file, expecting "}"'),
        ("events {\n", 1, 'unexpected end of file, expecting "}"'),
        # lexer errors surface the same way
        ('events {}\nhttp {\n  server_tokens "off"x;\n}\n', 3, 'unexpected "x"'),
        ('events {}\nhttp {\n  server_tokens "off;\n}\n', 5,
         'unexpected end of file, expecting ";" or "}"'),
        ("events {}\n;\n", 2, 'unexpected ";"'),
        ("events {}\n{\n}\n", 2, 'unexpected "{"'),
    ],
    ids=["eof-no-semicolon", "eof-no-semicolon-multiline", "stray-close", "extra-close",
         "semicolon-before-close", "unclosed-block", "unclosed-first-line", "after-quote",
         "unterminated-quote", "bare-semicolon", "bare-open"],
)
def test_syntax_error_is_one_diagnostic(tmp_path: Path, text: str, line: int,
                                        message: str) -> None:
    """Each syntax error is exactly one ERROR diagnostic with the file, line and nginx's message."""
    main = write(tmp_path / "nginx.conf", text)
    tree = load(str(main))
    assert [(d.level, d.code, d.file, d.line, d.message) for d in tree.diagnostics] == [
        (Level.ERROR, "syntax", str(main), line, message)]


def test_syntax_error_in_included_file(tmp_path: Path) -> None:
    """A syntax error inside an included file is reported in that file at its line."""
    main = write(tmp_path / "nginx.conf", "events {}\nhttp {\n    include bad.conf;\n}\n")
    bad = write(tmp_path / "bad.conf", "server {\n    listen 80;\n}\n}\n")
    tree = load(str(main))
    assert [(d.file, d.line, d.message) for d in tree.diagnostics] == [
        (str(bad), 4, 'unexpected "}"')]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"\x00\x01\x02", 1),
        (b"events {}\nhttp {\x00}\n", 2),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), 1),
    ],
)
def test_nul_bytes_are_one_clear_error(tmp_path: Path, data: bytes, line: int) -> None:
    """A file with NUL bytes is one ERROR saying it is not an nginx configuration."""
    main = write(tmp_path / "nginx.conf", data)
    tree = load(str(main))
    (diag,) = tree.diagnostics
    assert (diag.level, diag.file, diag.line) == (Level.ERROR, str(main), line)
    assert "not an nginx configuration" in diag.message
    assert tree.stmts == []


def test_nul_bytes_in_included_file(tmp_path: Path) -> None:
    """A binary file pulled in by a glob include is one ERROR in that file."""
    main = write(tmp_path / "nginx.conf", "events {}\nhttp {\n    include conf.d/*;\n}\n")
    blob = write(tmp_path / "conf.d" / "blob.bin", b"\x00\xff\x00")
    tree = load(str(main))
    (diag,) = tree.diagnostics
    assert (diag.file, diag.line) == (str(blob), 1)
    assert "NUL" in diag.message


def test_invalid_utf8_is_read(tmp_path: Path) -> None:
    """A config that is not valid UTF-8 (but has no NUL) is read byte-preserving, without errors."""
    main = write(tmp_path / "nginx.conf", b"events {}\nhttp {\n  server_tokens caf\xe9;\n}\n")
    tree = load(str(main))
    assert tree.diagnostics == []
    (tokens,) = find(tree, "server_tokens")
    assert tokens.args[0].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_missing_main_file(tmp_path: Path) -> None:
    """A main file that does not exist is one ERROR at line 0 of that path."""
    path = tmp_path / "nope.conf"
    tree = load(str(path))
    (diag,) = tree.diagnostics
    assert (diag.level, diag.file, diag.line) == (Level.ERROR, str(path), 0)
    assert tree.stmts == []


def test_main_file_is_a_directory(tmp_path: Path) -> None:
    """A directory given as the main file is one ERROR, not an exception."""
    tree = load(str(tmp_path))
    (diag,) = tree.diagnostics
    assert diag.level is Level.ERROR
