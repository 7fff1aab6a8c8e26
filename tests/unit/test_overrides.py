"""``livechat.config.overrides.parse_value``: text read as a field's declared type, or a clear error."""

from __future__ import annotations

from typing import Literal

import pytest
from livechat.config.overrides import parse_value


def test_scalars_and_optionals() -> None:
    assert parse_value("3", int, "x") == 3
    assert parse_value("0.25", float, "x") == 0.25
    assert parse_value("off", bool, "x") is False and parse_value("Yes", bool, "x") is True
    assert parse_value("none", str | None, "x") is None
    assert parse_value("redis://h:1", str | None, "x") == "redis://h:1"
    assert parse_value("echo", Literal["app", "echo"], "x") == "echo"


def test_tuples_are_json_with_checked_elements() -> None:
    assert parse_value('["a", "b"]', tuple[str, ...], "x") == ("a", "b")
    tiers = parse_value("[[100, 0.5], [1000, 0.1]]", tuple[tuple[float, float], ...], "x")
    assert tiers == ((100, 0.5), (1000, 0.1))
    assert parse_value("[]", tuple[str, ...], "x") == ()


@pytest.mark.parametrize(
    ("text", "hint", "message"),
    [
        ("x", int, "'x' is not a int"),
        ("maybe", bool, "not a boolean"),
        ("fanout2", Literal["app", "echo"], "is not one of"),
        ("[1, 2", tuple[int, ...], "not JSON"),
        ('["a", 1]', tuple[str, ...], "1 is not a str"),
        ("[[1, 2, 3]]", tuple[tuple[float, float], ...], "expected 2 items"),
        ("none", int, "'none' is not a int"),
    ],
)
def test_values_that_do_not_fit_name_the_field(text: str, hint: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_value(text, hint, "chat.some_field")
    assert str(info.value).startswith("chat.some_field")
