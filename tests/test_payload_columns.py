"""Large CSV columns are parsed whole (pyarrow) before cell by cell: the answers must be the same.

The batch job and large CSV requests go through ``Column._csv_whole_column``; every cell here is
checked both ways — alone (cell by cell, the rules) and repeated past ``WHOLE_COLUMN_ROWS`` —
and must give the same value, or the same refusal naming the same row.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from modelgen.manifest.values import VALUES
from modelgen.render.templates import templates_dir

CELLS = [
    "1", "-0", "+5", "007", "2007", "2007.0", "2007.5", "1e5", "1E-3", ".5", "5.", "1_000", " 12", "12 ", "٣",
    "nan", "NaN", "inf", "-Infinity", "1e400", "-1e400", "9223372036854775807", "9223372036854775808",
    "-9223372036854775809", "0x10", "1,5", "", "abc", "1e", "--1", "4.9e-324", "0.1", "3.141592653589793238",
    "+.5", "1.e5", "-", "+", "1e05", "0.0000001", "9" * 400, "1" * 20, "١٢", "1\u00a0",
]  # fmt: skip


@pytest.fixture(scope="module")
def payload():
    project = templates_dir() / "python-model" / "{{cookiecutter.name}}"
    sys.path.insert(0, str(project))
    try:
        yield importlib.import_module("app.payload")
    finally:
        sys.path.remove(str(project))


def outcome(column, cells):
    try:
        values = column.from_csv(cells)
    except Exception as err:  # noqa: BLE001 - the refusal is the outcome compared
        return type(err).__name__, str(err)
    return values.dtype.str, [None if v != v else v for v in values.tolist()]


@pytest.mark.parametrize("kind", ["number", "integer"])
@pytest.mark.parametrize("nullable", [True, False])
def test_a_whole_column_parses_as_its_cells_do(payload, kind, nullable):
    spec = {"name": "x", "type": kind, "nullable": nullable, "categories": None, "strict": False}
    column = payload.Column(spec, VALUES)
    many = payload.WHOLE_COLUMN_ROWS
    for cell in CELLS:
        alone = outcome(column, [cell])
        whole = outcome(column, ["1"] * (many - 1) + [cell])
        if alone[0] in ("BadRequest",):
            assert whole[0] == "BadRequest", (cell, whole)
            assert whole[1] == alone[1].replace("row 0:", f"row {many - 1}:"), cell
        else:
            assert whole[0] == alone[0] and whole[1][-1] == alone[1][0], (cell, alone, whole[0], whole[1][-1])
            assert type(whole[1][-1]) is type(alone[1][0]), cell


def test_the_whole_column_path_is_taken(payload, monkeypatch):
    column = payload.Column(
        {"name": "x", "type": "number", "nullable": True, "categories": None, "strict": False}, VALUES
    )
    monkeypatch.setattr(payload.Column, "_csv_number", lambda self, cell: pytest.fail("cell by cell"))
    values = column.from_csv(["1.5", ""] * payload.WHOLE_COLUMN_ROWS)
    assert values.dtype == np.float64 and values[0] == 1.5 and np.isnan(values[1])


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("nullable", [True, False])
def test_a_whole_string_column_is_checked_as_its_cells_are(payload, strict, nullable):
    spec = {"name": "s", "type": "string", "nullable": nullable, "categories": ["a", "b"], "strict": strict}
    column = payload.Column(spec, VALUES)
    many = payload.WHOLE_COLUMN_ROWS
    for cell in ["a", "b", "c", "", " a", "\ud800", "日本", "A"]:
        alone = outcome(column, [cell])
        whole = outcome(column, ["a"] * (many - 1) + [cell])
        if alone[0] == "BadRequest":
            assert whole == (alone[0], alone[1].replace("row 0:", f"row {many - 1}:")), cell
        else:
            assert whole[0] == alone[0] and whole[1][-1] == alone[1][0], (cell, alone, whole[1][-1])
