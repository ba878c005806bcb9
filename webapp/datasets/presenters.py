"""What the data set page shows, computed from a version's schema and statistics (no Django)."""

from __future__ import annotations


def warnings_for(version, target_column: str) -> list[str]:
    stats = version.stats or {}
    found = []
    if version.schema.get("kind") == "images":
        small = [name for name, count in stats.get("class_counts", []) if count < 2]
        if small:
            found.append(f"Class{'es' if len(small) > 1 else ''} {', '.join(small[:5])} "
                         f"{'have' if len(small) > 1 else 'has'} fewer than 2 images.")
        return found
    columns = {c["name"]: c for c in stats.get("columns", [])}
    target = columns.get(target_column)
    looks_like_classes = target and target.get("counts") and (target["type"] != "numeric" or target["unique"] <= 20)
    if looks_like_classes:
        rare = [value for value, count in target["counts"] if count < 2]
        if rare:
            found.append(f"The target “{target_column}” has {len(rare)} class{'es' if len(rare) > 1 else ''} with "
                         f"fewer than 2 rows ({', '.join(rare[:5])}); a stratified split cannot put "
                         "them in both training and test sets.")
    if stats.get("duplicate_rows"):
        found.append(f"{stats['duplicate_rows']:,} row{'s are duplicates' if stats['duplicate_rows'] > 1 else ' is a duplicate'} "
                     "of earlier rows.")
    constant = stats.get("constant_columns", [])
    if constant:
        shown = ", ".join(f"“{name}”" for name in constant[:5])
        more = f" and {len(constant) - 5} more" if len(constant) > 5 else ""
        found.append(f"Constant column{'s' if len(constant) > 1 else ''} {shown}{more}: "
                     "no information for training; consider ignoring them.")
    return found


def human_bytes(n: int) -> str:
    value = float(n or 0)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TB"
