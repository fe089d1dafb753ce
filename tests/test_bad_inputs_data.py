"""Every row of the data-side bad-input catalogue fails at the door with the documented message,
and every warning row warns with its documented class and message."""

import warnings

import pytest
from bad_input_catalogue_data import ROWS, WARNING_ROWS


def test_the_data_catalogue_covers_forward_data_and_files():
    assert len(ROWS) >= 30
    assert {row.area for row in ROWS} == {"forward", "data", "file"}


@pytest.mark.parametrize("row", ROWS, ids=[f"{row.area}-{index}" for index, row in enumerate(ROWS)])
def test_bad_input_gives_its_documented_error(row):
    with pytest.raises(row.error) as error:
        row.run()
    assert str(error.value).startswith(row.message)


@pytest.mark.parametrize("row", WARNING_ROWS, ids=[f"{row.area}-warning-{index}" for index, row in enumerate(WARNING_ROWS)])
def test_doubtful_input_gives_its_documented_warning(row):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row.run()
    named = [str(w.message) for w in caught if issubclass(w.category, row.warning)]
    assert named and named[0].startswith(row.message), [str(w.message) for w in caught]
