"""Files the lessons work with, shipped inside tutor_nb so a notebook in Colab has them too."""

from __future__ import annotations

from pathlib import Path

COURSE_NOTES = Path(__file__).resolve().parent / "course_notes"


def course_notes() -> list[Path]:
    """A small course's notes for the file search lesson: Markdown, a PDF and a Korean text."""
    return sorted(path for path in COURSE_NOTES.iterdir() if path.is_file() and not path.name.startswith("."))
