"""Every row of the bad-input catalogue fails at the door with the documented message."""

from pathlib import Path

import pytest
from bad_input_catalogue import CATALOGUE, all_rows, markdown_table, warning_rows

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS = all_rows()
AREAS = {"model", "technique", "conflict", "config", "data", "hooks", "checkpoint", "trainer"}


def test_the_catalogue_has_at_least_80_rows_covering_every_area():
    assert len(CATALOGUE) >= 80
    assert AREAS <= {row.area for row in ROWS}


def test_the_table_holds_every_row_once_with_its_area_grouped():
    table = markdown_table().splitlines()[2:]
    assert len(table) == len(ROWS) + len(warning_rows()) and len(ROWS) == len({(row.area, row.given) for row in ROWS})
    assert all("(a warning; the input is accepted)" in line for line in table[len(ROWS):])  # warnings last
    areas = [line.split(" | ")[0].removeprefix("| ") for line in table[:len(ROWS)]]
    assert areas == sorted(areas, key=areas.index)  # each area's rows together


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.area}-{index}" for index, row in enumerate(ROWS)])
def test_bad_input_gives_its_documented_error(row):
    with pytest.raises(row.error) as error:
        row.run()
    assert str(error.value).startswith(row.message)


def test_the_readme_table_is_the_catalogue():
    assert markdown_table() in README.read_text()
