"""Filter rules: `filter=["clip_score >= 25", "top_label != 'nsfw'"]` over a stage's columns.

A rule is `<column> <op> <value>` with op one of >= > <= < == != and value a number or a quoted
string. Rules are parsed and their columns checked before Ray starts (`parse_rules`); the CPU
stage `filter_rows` moves every row that fails a rule to filtered/, with the rule and the value
("clip_score 18.2 < 25"). A row whose column is null fails the rule: nothing unscored passes.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from operators.row_errors import add_error_columns, good_rows, mark_filtered

STAGE = "filter"
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
OPPOSITE = {">=": "<", "<=": ">", "==": "!=", "!=": "==", ">": "<=", "<": ">="}
_RULE = re.compile(r"^\s*([A-Za-z_][\w.:-]*)\s*(>=|<=|==|!=|>|<)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Rule:
    column: str
    op: str
    value: float | str

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not '<column> <op> <value>' with op one of {' '.join(OPS)}")
        column, op, raw = match.groups()
        if raw[0] == raw[-1] and raw[0] in "'\"" and len(raw) >= 2:
            return cls(column, op, raw[1:-1])
        try:
            return cls(column, op, float(raw))
        except ValueError:
            raise ValueError(f"{text!r}: the value must be a number or a quoted string, got {raw}") from None

    def why_not(self, value: Any) -> str | None:
        """None when `value` passes, else the reason: the column, its value and the failed test."""
        if value is None:
            return f"{self.column} is null, {self} cannot hold"
        try:
            passed = OPS[self.op](value, self.value)
        except TypeError:
            passed = False
        if passed:
            return None
        shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
        return f"{self.column} {shown} {OPPOSITE[self.op]} {self._value()}"

    def _value(self) -> str:
        return f"{self.value:g}" if isinstance(self.value, float) else repr(self.value)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self._value()}"


def parse_rules(texts: Iterable[str], columns: Sequence[str]) -> list[Rule]:
    """Rules from config strings; ValueError names a rule that does not parse or whose column
    is none of `columns` (what the job's stages make, and the input columns it keeps)."""
    rules = [Rule.parse(text) for text in texts]
    for rule in rules:
        if rule.column not in columns:
            raise ValueError(f"{str(rule)!r}: no column {rule.column!r}; the rows have {', '.join(columns)}")
    return rules


def filter_rows(table: pa.Table, *, rules: Sequence[str]) -> pa.Table:
    """CPU stage: rows failing a rule go to filtered/ with the first rule they fail."""
    table = add_error_columns(table)
    parsed = [Rule.parse(text) for text in rules]
    good = good_rows(table)
    values = {rule.column: table[rule.column].to_pylist() for rule in parsed}
    reasons: list[str | None] = []
    for row in range(table.num_rows):
        reason = None
        if good[row]:
            reason = next((why for rule in parsed if (why := rule.why_not(values[rule.column][row]))), None)
        reasons.append(reason)
    return mark_filtered(table, reasons, STAGE)
