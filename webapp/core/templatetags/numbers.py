"""Template filters for numbers shown to people."""
import math

from django import template

register = template.Library()


@register.filter
def number(value, decimals=4):
    """A number with up to ``decimals`` decimals and no trailing zeros ("4.3", "2", "5.8433"); tiny
    values keep three significant digits ("2.5e-06") instead of rounding to 0; anything else as is."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return value
    if not math.isfinite(x):
        return str(x)
    if x != 0 and abs(x) < 10 ** -int(decimals):
        return f"{x:.3g}"
    text = f"{x:.{int(decimals)}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
