"""Filter rules: parsed before Ray, applied per row with the rule and the value as the reason."""

import pyarrow as pa
import pytest

from operators.filter_rows import Rule, filter_rows, parse_rules
from operators.row_errors import ERROR, FILTER_STAGE, FILTERED


def test_rules_parse_numbers_and_quoted_strings():
    assert Rule.parse("clip_score >= 25") == Rule("clip_score", ">=", 25.0)
    assert Rule.parse(" top_label!='nsfw' ") == Rule("top_label", "!=", "nsfw")
    assert Rule.parse('top_label == "a cat"') == Rule("top_label", "==", "a cat")
    for bad in ("clip_score", "clip_score >= ", "clip_score => 3", "clip_score >= high", "1x > 2"):
        with pytest.raises(ValueError):
            Rule.parse(bad)


def test_unknown_columns_are_named_with_the_ones_there_are():
    assert parse_rules(["a > 1"], ["a", "b"]) == [Rule("a", ">", 1.0)]
    with pytest.raises(ValueError, match=r"no column 'nsfw'; the rows have clip_score, top_label"):
        parse_rules(["clip_score > 1", "nsfw < 0.5"], ["clip_score", "top_label"])


def test_failing_rows_are_filtered_with_the_first_rule_they_fail_and_its_value():
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", "e"],
            "clip_score": [30.0, 18.25, None, 40.0, 5.0],
            "top_label": ["cat", "cat", "cat", "nsfw", "cat"],
            ERROR: [None, None, None, None, "decode failed"],
        }
    )
    out = filter_rows(table, rules=["clip_score >= 25", "top_label != 'nsfw'"])
    assert out[FILTERED].to_pylist() == [
        None,
        "clip_score 18.25 < 25",
        "clip_score is null, clip_score >= 25 cannot hold",
        "top_label 'nsfw' == 'nsfw'",
        None,  # already an error: the first outcome stays
    ]
    assert out[FILTER_STAGE].to_pylist() == [None, "filter", "filter", "filter", None]
    assert out[ERROR].to_pylist()[4] == "decode failed"
