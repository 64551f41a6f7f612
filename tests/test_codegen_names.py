"""User input → C: identifiers always valid, strings and comments always inert."""

from __future__ import annotations

import re

import pytest

from edgeq.firmware import names
from edgeq.errors import UserError
from tests.tools import require_tool, run

HOSTILE = [
    "my model", "person-detect v2", 'we"ird', "it's", "$(rm -rf /)", "`id`", "3d_net", "42",
    "int", "class", "namespace", "main", "_Bool", "__reserved", "_Upper", "a*/b/*c", "x\\", "ünïcödé",
    "名前", "", "   ", "--", "a" * 200, "MobileNetV2", "../../etc/passwd", "new\nline",
]
_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("text", HOSTILE)
def test_identifier_always_valid(text: str) -> None:
    ident = names.c_identifier(text)
    assert _IDENT.match(ident), ident
    assert "__" not in ident and not ident.endswith("_") and len(ident) <= 64
    assert ident not in {"int", "class", "namespace", "main", "new", "and"}
    assert names.c_identifier(ident) == ident  # idempotent
    assert re.match(r"^[A-Z][A-Za-z0-9]*$", names.c_camel(text))


def test_identifier_examples() -> None:
    assert names.c_identifier("person-detect v2") == "person_detect_v2"
    assert names.c_identifier("MobileNetV2") == "mobile_net_v2"
    assert names.c_identifier("3d") == "m_3d"
    assert names.c_identifier("int") == "m_int"
    assert names.c_identifier("$(rm -rf /)") == "rm_rf"
    assert names.c_identifier("名前") == "model"
    assert names.c_camel("person_detect") == "PersonDetect"
    assert names.cpp_namespace("my-co::ml.v2") == "my_co::ml::v2"


@pytest.mark.parametrize("section", [".rodata.model", ".ext_flash", "model_data"])
def test_section_names_accepted(section: str) -> None:
    assert names.section_name(section) == section


@pytest.mark.parametrize("section", ['"); evil(); ("', ".a b", "", "a\nb", "x" * 200, "$(x)"])
def test_section_names_refused(section: str) -> None:
    with pytest.raises(UserError, match="section"):
        names.section_name(section)


def test_comment_is_inert() -> None:
    text = names.c_comment("a */ b /* c \\\n??/ // é")
    assert "*/" not in text and "/*" not in text and "\\" not in text and "\n" not in text and "?" not in text


def test_strings_compile_and_round_trip(tmp_path) -> None:
    """Every hostile label becomes a C literal whose bytes are the label's UTF-8 bytes."""
    gcc = require_tool("gcc")
    labels = HOSTILE + ["tab\there", "??=trigraph", "\x01\x7f", "0\\1"]
    body = ",\n".join(names.c_string(s) for s in labels)
    (tmp_path / "labels.c").write_text(
        "#include <stdio.h>\nstatic const char *const labels[] = {\n" + body + "\n};\n"
        "int main(void) { for (unsigned i = 0; i < sizeof labels / sizeof *labels; ++i) { fputs(labels[i], stdout); putchar(0); } return 0; }\n"
    )
    run([gcc, "-std=c11", "-trigraphs", "-Wall", "-Wextra", "-Werror", "-o", tmp_path / "labels", tmp_path / "labels.c"])
    out = __import__("subprocess").run([str(tmp_path / "labels")], capture_output=True, check=True).stdout
    assert out.split(b"\0")[:-1] == [s.encode() for s in labels]
