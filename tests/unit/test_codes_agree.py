"""One source of truth for the protocol's codes: ``livechat.protocol.codes``.

Every other copy is checked against it, so none can drift:
- the JavaScript client carries a block generated from it (``python tests/unit/test_codes_agree.py
  --write`` rewrites the block), and neither it nor the page restates a code outside that block;
- the Rust edge's constants (``edge_core/src/proto/codes.rs``, or ``close.rs`` before it exists)
  each name a Python code with the same value;
- the Python client restates no code as a literal: it imports them;
- docs/protocol.md lists every code.
Each check returns its problems; the last tests show that a drifted copy is caught.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from enum import Enum
from pathlib import Path

from livechat.protocol.codes import CloseCode, ErrorCode, EventKind, MessageType, Op, StateKey

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "python" / "livechat" / "web"
JS_CLIENT = WEB / "livechat-client.js"
JS_PAGE = WEB / "app.js"
RUST_PROTO = ROOT / "edge_core" / "src" / "proto"
RUST_SRC = ROOT / "edge_core" / "src"
PY_CLIENT = ROOT / "python" / "livechat" / "client"
DOC = ROOT / "docs" / "protocol.md"

#: JavaScript object name -> the enum it is generated from.
JS_OBJECTS: dict[str, type[Enum]] = {
    "CLOSE": CloseCode,
    "ERROR": ErrorCode,
    "OP": Op,
    "MESSAGE": MessageType,
    "EVENT": EventKind,
    "STATE": StateKey,
}
STRING_CODES: tuple[type[Enum], ...] = (ErrorCode, Op, MessageType, EventKind, StateKey)
BEGIN = (
    "// BEGIN CODES: generated from livechat/protocol/codes.py by"
    " `python tests/unit/test_codes_agree.py --write`"
)
END = "// END CODES"


# --- JavaScript ---------------------------------------------------------------------------------


def render_js_block() -> str:
    lines = [BEGIN, "// (tests/unit/test_codes_agree.py fails when this block differs from codes.py)."]
    for js_name, enum in JS_OBJECTS.items():
        lines.append(f"export const {js_name} = Object.freeze({{")
        lines.extend(f"  {member.name}: {json.dumps(member.value)}," for member in enum)
        lines.append("});")
    lines.append(END)
    return "\n".join(lines) + "\n"


def split_js(source: str) -> tuple[str, str]:
    """(the generated block, the rest of the file); the block is empty when the markers are missing."""
    start = source.find(BEGIN)
    end = source.find(END, start)
    if start < 0 or end < 0:
        return "", source
    end += len(END) + 1
    return source[start:end], source[:start] + source[end:]


def _code_lines(source: str) -> str:
    # Whole-line comments may name codes in prose; code may not.
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("//", "*", "/*")))


def js_restated_codes(source: str, *, dispatch: bool) -> list[str]:
    """Codes written as literals in JavaScript code. ``dispatch``: the client, whose switches must
    use the generated objects too (the page's switch is over its own button actions)."""
    code = _code_lines(source)
    problems = []
    for value in ErrorCode:
        if re.search(rf"[\"'`]{value}[\"'`]", code) or re.search(rf"(?<![\w.$]){value}\s*:(?!:)", code):
            problems.append(f"error code {value!r} restated (use ERROR.{value.name})")
    for value in (*MessageType, *EventKind):
        if re.search(rf"[=!]==?\s*[\"'`]{value}[\"'`]", code):
            problems.append(f"{value!r} compared as a literal")
    for close in CloseCode:
        pattern = r"close\(\s*1000\b" if close == CloseCode.NORMAL else rf"(?<![\w.]){close.value}(?![\w.])"
        if re.search(pattern, code):
            problems.append(f"close code {close.value} restated (use CLOSE.{close.name})")
    if re.search(r"\bop:\s*[\"'`]", code):
        problems.append("an op written as a literal (use OP.*)")
    if re.search(r"moderate\(\s*[\"'`]", code):
        problems.append("moderate() called with a literal op (use OP.*)")
    if dispatch and re.search(r"\bcase\s+[\"'`]", code):
        problems.append("a switch over literal codes (use MESSAGE.* / EVENT.*)")
    return problems


def js_problems(client_source: str, page_source: str) -> list[str]:
    block, rest = split_js(client_source)
    problems = []
    if block != render_js_block():
        problems.append("livechat-client.js: the generated codes block differs from codes.py (run --write)")
    problems += [f"livechat-client.js: {p}" for p in js_restated_codes(rest, dispatch=True)]
    problems += [f"app.js: {p}" for p in js_restated_codes(page_source, dispatch=False)]
    imported = re.search(r"^import \{([^}]*)\} from \"\./livechat-client\.js\";", page_source, re.M)
    used = {name for name in JS_OBJECTS if re.search(rf"\b{name}\.", page_source)}
    if imported is None or not used <= {n.strip() for n in imported.group(1).split(",")}:
        problems.append("app.js: uses code objects it does not import from livechat-client.js")
    return problems


def test_js_client_and_page_use_the_generated_codes() -> None:
    assert js_problems(JS_CLIENT.read_text(), JS_PAGE.read_text()) == []


# --- Rust ---------------------------------------------------------------------------------------

_RUST_CONST = re.compile(
    r"^\s*pub\s+const\s+([A-Z][A-Z0-9_]*)\s*:\s*(u16|&(?:'static\s+)?str)\s*=\s*(.+?);", re.M
)
# The error code the edge writes itself: `write_str(&mut p, "code"); write_str(&mut p, "<code>")`.
_RUST_ERR_LITERAL = re.compile(r'"code"\s*\)\s*;\s*(?:[\w:]+::)?write_str\(\s*&mut\s+\w+\s*,\s*"([^"]*)"')


def rust_codes_file() -> Path:
    """codes.rs once the edge has one place for its codes; close.rs (close codes only) until then."""
    codes = RUST_PROTO / "codes.rs"
    return codes if codes.exists() else RUST_PROTO / "close.rs"


def _python_names(name: str, enums: tuple[type[Enum], ...]) -> set[object]:
    """Values of Python codes called ``name`` (or ``name`` without a prefix such as ERR_ / CLOSE_)."""
    candidates = [name] + [name.split("_", i)[-1] for i in range(1, name.count("_") + 1)]
    for candidate in candidates:
        found = {enum[candidate].value for enum in enums if candidate in enum.__members__}
        if found:
            return found
    return set()


def rust_problems(codes_source: str, edge_sources: dict[str, str]) -> list[str]:
    problems = []
    consts = _RUST_CONST.findall(codes_source)
    if not any(kind == "u16" for _, kind, _ in consts):
        problems.append("no `pub const NAME: u16 = ...;` close codes found in the Rust codes file")
    for name, kind, raw in consts:
        if kind == "u16":
            want = _python_names(name, (CloseCode,))
            value: object = int(raw.strip().replace("_", ""), 0)
        else:
            want = _python_names(name, STRING_CODES)
            literal = re.fullmatch(r'"([^"]*)"', raw.strip())
            value = literal.group(1) if literal else raw
        if value not in want:
            problems.append(f"Rust {name} = {value!r}, Python has {sorted(map(str, want)) or 'no such code'}")
    own_closes = {int(code) for code in CloseCode if code >= 4000}
    for path, source in edge_sources.items():
        for literal in _RUST_ERR_LITERAL.findall(source):
            if literal not in set(ErrorCode):
                problems.append(f"{path}: the edge sends error code {literal!r}, not in ErrorCode")
        if path.endswith("proto/codes.rs"):
            continue
        product = _rust_product_code(source)
        for name, _kind, raw in _RUST_CONST.findall(product):
            value = raw.strip().strip('"')
            if value in {str(int(c)) for c in CloseCode} | set(ErrorCode):
                problems.append(f"{path}: {name} = {value} is a second copy of a code (use proto::codes)")
        for number in re.findall(r"(?<![\w.])(\d{4})(?![\w.])", product):
            if int(number) in own_closes:
                problems.append(f"{path}: the close code {number} as a number (use proto::codes)")
    return problems


def _rust_product_code(source: str) -> str:
    """``source`` without comment lines and without what follows the first test-only module."""
    cut = re.search(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s", source)
    kept = source[: cut.start()] if cut else source
    return "\n".join(line for line in kept.splitlines() if not line.lstrip().startswith("//"))


def _edge_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted(RUST_SRC.rglob("*.rs"))}


def test_rust_codes_agree() -> None:
    codes = rust_codes_file()
    assert codes.exists(), codes
    assert rust_problems(codes.read_text(), _edge_sources()) == []


# --- Python client ------------------------------------------------------------------------------


def py_restated_codes(source: str) -> list[str]:
    """Codes the client writes as literals: compared, sent as an op, or a close-code number."""
    strings = {str(member.value) for enum in STRING_CODES for member in enum}
    closes = {int(code) for code in CloseCode}
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            # `x == "tick"`, `x in ("ack", "ok")`; not `"gap" in raw`, a field name that a code shares.
            sides = [node.left, *node.comparators]
            if isinstance(node.ops[0], ast.In | ast.NotIn):
                sides = [
                    side for side in node.comparators if isinstance(side, ast.Tuple | ast.List | ast.Set)
                ]
            for side in sides:
                items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                for item in items:
                    if isinstance(item, ast.Constant) and item.value in strings:
                        problems.append(f"line {item.lineno}: compares with the literal {item.value!r}")
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "op" and isinstance(value, ast.Constant):
                    problems.append(f"line {value.lineno}: sends the literal op {value.value!r}")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "_moderate":
                problems.append(f"line {node.lineno}: moderates with the literal op {node.args[0].value!r}")
        if (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and node.value in closes
            and node.value >= 1000
        ):
            problems.append(f"line {node.lineno}: the close code {node.value} as a number")
    return problems


def test_python_client_imports_its_codes() -> None:
    problems = {
        path.name: found
        for path in sorted(PY_CLIENT.glob("*.py"))
        if (found := py_restated_codes(path.read_text()))
    }
    assert problems == {}


# --- docs ---------------------------------------------------------------------------------------


def doc_problems(doc: str) -> list[str]:
    problems = []
    for enum in (ErrorCode, CloseCode, Op, MessageType):
        problems += [f"{enum.__name__}.{m.name}" for m in enum if f"`{m.value}`" not in doc]
    for enum in (EventKind, StateKey):
        problems += [f"{enum.__name__}.{m.name}" for m in enum if f'`"{m.value}"`' not in doc]
    return problems


def test_docs_list_every_code() -> None:
    assert doc_problems(DOC.read_text()) == []


# --- each check can fail ------------------------------------------------------------------------


def test_a_drifted_js_copy_is_caught() -> None:
    client, page = JS_CLIENT.read_text(), JS_PAGE.read_text()
    assert js_problems(client.replace("AUTH_EXPIRED: 4003,", "AUTH_EXPIRED: 4004,"), page)
    assert js_problems(client.replace("CLOSE.AUTH_EXPIRED", "4003", 1), page)
    assert js_problems(client.replace("case MESSAGE.TICK:", 'case "tick":'), page)
    assert js_problems(client, page.replace("[ERROR.RATE_LIMITED]:", "rate_limited:"))
    assert js_problems(client, page.replace("moderate(OP.SLOW,", 'moderate("slow",'))


def test_a_drifted_rust_copy_is_caught() -> None:
    codes = rust_codes_file().read_text()
    assert re.search(r"=\s*4008\s*;", codes)
    assert rust_problems(re.sub(r"=\s*4008\s*;", "= 4018;", codes), {})
    assert rust_problems('pub const BAD_MSGPACK: &str = "bad_msgpak";\n' + codes, {})
    worker = 'write_str(&mut p, "code");\n    msgpack::write_str(&mut p, "bad_msgpak");'
    assert rust_problems(codes, {"worker.rs": worker})
    assert rust_problems(codes, {"close.rs": "pub const SLOW_CONSUMER: u16 = 4008;\n"})
    assert rust_problems(codes, {"worker.rs": 'self.force_close(slot, 4008, "slow");\n'})
    test_only = "#[cfg(test)]\nmod tests {\n    const X: [u16; 1] = [4008];\n}\n"
    assert not rust_problems(codes, {"close.rs": test_only})
    assert rust_problems("", {})


def test_a_restated_python_code_is_caught() -> None:
    assert py_restated_codes('if kind == "tick":\n    pass\n')
    assert py_restated_codes('if kind in ("ack", "ok"):\n    pass\n')
    assert py_restated_codes('message = {"op": "join", "stream": s}\n')
    assert py_restated_codes('client._moderate("ban", stream)\n')
    assert py_restated_codes("REFUSED = frozenset({4001, 4002})\n")
    assert not py_restated_codes('name = raw.get("n", "")\nrecovered = "gap" in raw\n')


def test_a_missing_doc_entry_is_caught() -> None:
    assert doc_problems(DOC.read_text().replace("`4008`", "4008"))


def _write_js_block() -> None:
    source = JS_CLIENT.read_text()
    block, _ = split_js(source)
    if block:
        JS_CLIENT.write_text(source.replace(block, render_js_block()))
    else:
        # First generation: after the imports.
        head, sep, tail = source.partition('import { decode, encode } from "./msgpack.js";\n')
        assert sep, "livechat-client.js: the msgpack import line moved; place the block by hand"
        JS_CLIENT.write_text(head + sep + "\n" + render_js_block() + tail)


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write_js_block()
    else:
        print(render_js_block(), end="")
