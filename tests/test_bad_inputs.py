"""Every row of the bad-input catalogue fails at the door with the documented message."""

from pathlib import Path

import pytest
from bad_input_catalogue import CATALOGUE, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_catalogue_has_at_least_30_rows_covering_every_area():
    assert len(CATALOGUE) >= 30
    assert {row.area for row in CATALOGUE} == {"model", "technique", "conflict", "config", "data", "hooks", "checkpoint"}


@pytest.mark.parametrize("row", CATALOGUE, ids=[f"{row.area}-{index}" for index, row in enumerate(CATALOGUE)])
def test_bad_input_gives_its_documented_error(row):
    with pytest.raises(row.error) as error:
        row.run()
    assert str(error.value).startswith(row.message)


def test_the_readme_table_is_the_catalogue():
    assert markdown_table() in README.read_text()
