"""What the benchmark scripts share in writing docs/benchmarks.md: one section replaced in place."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, section: str, heading: str, end_mark: str) -> None:
    """Replace the section from `heading` to `end_mark` in the file (or append it), leaving the rest as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if heading in text and end_mark in text:
        start = text.index(heading)
        end = text.index(end_mark, start) + len(end_mark)
        text = text[:start].rstrip("\n") + "\n\n" + section.rstrip("\n") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
