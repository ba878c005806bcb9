"""What changed between two versions of one data set, read from the statistics ingestion stored for
each (no file is read again): rows, columns added and removed, and each column both have, judged by
what its kind allows:

- a column whose type changed (a number column that now holds text) has changed;
- missing values: a share this many points up or down (MISSING_POINTS) has changed;
- a numeric column: its mean's shift in the earlier version's standard deviations (over SHIFT_SOME
  worth a look, over SHIFT_DIFFERENT changed) and its spread's ratio (past SPREAD_RATIO either way);
- a categorical or boolean column (its values counted in both): the PSI of its value mix (from PSI_SOME worth a look, from PSI_DIFFERENT changed), values new and gone named;
- a text column: its mean length (past SPREAD_RATIO either way);
- a date column: the span it covers, said (not judged).

An image set: its images, its classes added and removed, the PSI of its class mix, its image size.
The severity orders the columns, the most changed first; the data set's target column is marked.
"""

from __future__ import annotations

import math

from trainer.metrics import population_stability_index

MISSING_POINTS = 0.05
SHIFT_SOME, SHIFT_DIFFERENT = 0.2, 0.5
SPREAD_RATIO = 1.5
PSI_SOME, PSI_DIFFERENT = 0.1, 0.25
NAMED = 5  # values new or gone named per column


def _verdict(severity: float) -> str:
    """A severity of 1 is the edge of "changed"; "worth a look" from its lower edge (mapped to 0.5)."""
    return "different" if severity >= 1 else "some" if severity >= 0.5 else "same"


def _scaled(value: float, some: float, different: float) -> float:
    """``value`` on the severity scale: ``some`` at 0.5, ``different`` at 1, linear between and beyond."""
    if value <= some:
        return 0.5 * value / some if some else 0.0
    return 0.5 + 0.5 * (value - some) / (different - some)


def _ratio_severity(ratio: float) -> float:
    return abs(math.log(max(ratio, 1e-12))) / math.log(SPREAD_RATIO)


def _share(column: dict, rows: int) -> float:
    return column.get("missing", 0) / rows if rows else 0.0


def _counts(column: dict) -> dict | None:
    counted = column.get("counts")
    return {str(value): count for value, count in counted} if counted else None


def _names(values: list[str]) -> str:
    shown = ", ".join(values[:NAMED])
    return shown + (f" and {len(values) - NAMED} more" if len(values) > NAMED else "")


def _column(before: dict, after: dict, rows_before: int, rows_after: int) -> dict:
    says, severity = [], 0.0
    if before["type"] != after["type"]:
        return {"verdict": "different", "severity": 10.0, "says": f"was {before['type']}, now {after['type']}"}
    missing_then, missing_now = _share(before, rows_before), _share(after, rows_after)
    if abs(missing_now - missing_then) >= 0.005:
        severity = max(severity, abs(missing_now - missing_then) / MISSING_POINTS)
        says.append(f"missing in {missing_now:.0%} of rows (was {missing_then:.0%})")
    kind = after["type"]
    then, now = _counts(before), _counts(after)
    if kind == "numeric" and before.get("mean") is not None and after.get("mean") is not None:
        spread = before.get("std") or 0.0
        if spread > 0:
            shift = (after["mean"] - before["mean"]) / spread
            severity = max(severity, _scaled(abs(shift), SHIFT_SOME, SHIFT_DIFFERENT))
            if abs(shift) >= 0.05:
                says.append(f"mean {after['mean']:.4g} (was {before['mean']:.4g}: {abs(shift):.2f} standard "
                            f"deviations {'up' if shift > 0 else 'down'})")
            if after.get("std"):
                ratio = after["std"] / spread
                severity = max(severity, _ratio_severity(ratio))
                if abs(ratio - 1) >= 0.1:
                    says.append(f"spread {ratio:.2f} times as wide")
        if after.get("min") is not None and before.get("min") is not None and (
                after["min"] < before["min"] or after["max"] > before["max"]):
            says.append(f"now from {after['min']:.4g} to {after['max']:.4g} (was {before['min']:.4g} to {before['max']:.4g})")
    if then and now and kind in ("categorical", "boolean"):  # (a number's own values: its mean, spread and range)
        score = population_stability_index(now, then)
        severity = max(severity, _scaled(score, PSI_SOME, PSI_DIFFERENT))
        if score >= 0.01:
            says.append(f"value mix PSI {score:.3f}")
        new, gone = [v for v in now if v not in then], [v for v in then if v not in now]
        if new:
            says.append(f"new: {_names(new)}")
        if gone:
            says.append(f"gone: {_names(gone)}")
    if kind == "text" and before.get("mean_length") and after.get("mean_length"):
        ratio = after["mean_length"] / before["mean_length"]
        severity = max(severity, _ratio_severity(ratio))
        if abs(ratio - 1) >= 0.1:
            says.append(f"mean length {after['mean_length']:.0f} characters (was {before['mean_length']:.0f})")
    if kind == "datetime" and (before.get("min"), before.get("max")) != (after.get("min"), after.get("max")):
        says.append(f"spans {after.get('min')} to {after.get('max')} (was {before.get('min')} to {before.get('max')})")
    return {"verdict": _verdict(severity), "severity": severity, "says": "; ".join(says) or "about the same"}


def compare(before, after, *, target: str = "") -> dict:
    """What changed from version ``before`` to version ``after`` (both ready, of one data set)."""
    schema_before, schema_after = before.schema or {}, after.schema or {}
    found = {"from": before.number, "to": after.number, "kind": schema_after.get("kind")}
    if schema_after.get("kind") == "images" or schema_before.get("kind") == "images":
        return {**found, **_images(before, after)}
    stats_before, stats_after = before.stats or {}, after.stats or {}
    rows_before, rows_after = stats_before.get("n_rows", 0), stats_after.get("n_rows", 0)
    columns_before = {c["name"]: c for c in stats_before.get("columns", [])}
    columns_after = {c["name"]: c for c in stats_after.get("columns", [])}
    columns = []
    for name, column in columns_after.items():
        if name in columns_before:
            columns.append({"name": name, "type": column["type"], "target": name == target,
                            **_column(columns_before[name], column, rows_before, rows_after)})
    columns.sort(key=lambda c: (-c["severity"], c["name"]))
    return {**found, "rows": {"from": rows_before, "to": rows_after},
            "added": [n for n in columns_after if n not in columns_before],
            "removed": [n for n in columns_before if n not in columns_after],
            "columns": columns, "changed": sum(c["verdict"] == "different" for c in columns),
            "worth_a_look": sum(c["verdict"] == "some" for c in columns)}


def _images(before, after) -> dict:
    if (before.schema or {}).get("kind") != (after.schema or {}).get("kind"):
        return {"refused": "one version holds images and the other a table"}
    then = {name: count for name, count in (before.stats or {}).get("class_counts", [])}
    now = {name: count for name, count in (after.stats or {}).get("class_counts", [])}
    score = population_stability_index(now, then) if sum(now.values()) and sum(then.values()) else 0.0
    verdict = _verdict(_scaled(score, PSI_SOME, PSI_DIFFERENT))
    shapes = (before.schema.get("image_shape"), after.schema.get("image_shape"))
    return {"rows": {"from": before.stats.get("n_images", 0), "to": after.stats.get("n_images", 0)},
            "added": [n for n in now if n not in then], "removed": [n for n in then if n not in now],
            "classes": [{"name": name, "from": then.get(name, 0), "to": now.get(name, 0)}
                        for name in list(then) + [n for n in now if n not in then]],
            "mix": {"psi": score, "verdict": verdict},
            "image_shape": {"from": shapes[0], "to": shapes[1]} if shapes[0] != shapes[1] else None,
            "changed": int(verdict == "different") + int(shapes[0] != shapes[1]), "worth_a_look": int(verdict == "some")}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "es" if noun.endswith("s") else "s")


def summary(found: dict) -> str:
    """A comparison in a line: "against v1: 2 columns changed (sepal width (cm), petal length (cm)), 1 column added"."""
    noun = "class" if found.get("kind") == "images" else "column"
    changed = [c["name"] for c in found.get("columns", []) if c["verdict"] == "different"]
    parts = [f"{_count(len(changed), noun)} changed ({_names(changed)})"] if changed else (
        ["its class mix changed"] if found.get("changed") and noun == "class" else [])
    parts += [f"{_count(len(found[key]), noun)} {key}" for key in ("added", "removed") if found.get(key)]
    return f"against v{found['from']}: " + (", ".join(parts) or "nothing changed much")


def baseline(version, against=None):
    """The ready version ``version`` is compared with: number ``against`` when given (ValueError naming
    ``against`` when it is not a ready earlier version), else the latest ready one before it (None: none)."""
    earlier = version.dataset.versions.filter(status="ready", number__lt=version.number).order_by("-number")
    if against in (None, ""):
        return earlier.first()
    chosen = earlier.filter(number=int(against)).first() if str(against).isdigit() else None
    if chosen is None:
        raise ValueError(f"against: {version.dataset.name} has no ready version {against!s} before v{version.number}")
    return chosen
