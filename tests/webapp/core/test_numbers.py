"""The number filter: statistics read alike whatever their size."""
import math

import pytest

from webapp.core.templatetags.numbers import number


@pytest.mark.parametrize(("value", "shown"), [
    (4.3, "4.3"), (2.0, "2"), (5.843333, "5.8433"), (0.1, "0.1"), (0.828051, "0.8281"), (-1.25, "-1.25"),
    (0, "0"), (-0.00001, "-1e-05"), (0.0000025, "2.5e-06"), (123456.789, "123456.789"), (-0.00004, "-4e-05"),
    ("12", "12"), (math.nan, "nan"), (math.inf, "inf"),
])
def test_it_shows_up_to_four_decimals_without_trailing_zeros(value, shown):
    assert number(value) == shown


def test_it_leaves_what_is_not_a_number_as_it_is():
    assert number("setosa") == "setosa" and number(None) is None
    assert number(1.23456, 2) == "1.23"
