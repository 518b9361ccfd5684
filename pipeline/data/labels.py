"""Read the label file (``sample_index,label``) with messages that name the file, the line and the fix."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from pipeline.data.records import IMAGE_EXTENSIONS
from pipeline.data.slide_backends import SLIDE_EXTENSIONS
from pipeline.errors import LabelsError

logger = logging.getLogger(__name__)

LABELS_FILE = "train_labels.csv"


def _label_text(path: Path) -> str:
    """The label file as text: UTF-8 (a byte-order mark is fine) or UTF-16 with its byte-order mark (Excel)."""
    if path.is_dir():
        raise LabelsError(f"Label file '{path}' is a folder. Pass --labels PATH to a sample_index,label CSV file.")
    if not path.is_file():
        raise LabelsError(f"Label file '{path}' does not exist. Pass --labels PATH to a sample_index,label CSV.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LabelsError(f"Label file '{path}' cannot be read ({exc.strerror or exc}). Check permissions.") from exc
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LabelsError(
            f"Label file '{path}' is not {encoding.upper().replace('-SIG', '')} text (byte {data[exc.start]:#04x} at "
            f"offset {exc.start}). Save it as 'CSV UTF-8'."
        ) from None


def read_labels(path: Path | str) -> dict[str, str]:
    """Read a ``sample_index,label`` CSV into ``{sample_index: label}``.

    A byte-order mark (UTF-8 or UTF-16), CRLF line ends, spaces around values, other columns and header names in
    another case are accepted. A row repeated with the same label is accepted with a warning; the same image with two
    different labels is an error.

    Raises:
        LabelsError: The file is missing, unreadable, empty, has other columns or separators, or contradicts itself.
    """
    path = Path(path)
    text = _label_text(path)
    try:
        rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error as exc:
        raise LabelsError(f"Label file '{path}' is not a valid CSV ({exc}). Save it as 'CSV UTF-8'.") from None
    rows = [row for row in rows if any(row)]
    if not rows:
        raise LabelsError(
            f"Label file '{path}' is empty. It needs a header 'sample_index,label' and one row per image."
        )
    header = [cell.lower() for cell in rows[0]]
    if "sample_index" not in header or "label" not in header:
        separator = next((s for s in (";", "\t", "|") if len(header) == 1 and s in header[0]), None)
        if separator:
            fix = f"It separates columns with {separator!r}; save it with commas."
        elif Path(header[0]).suffix.lower() in IMAGE_EXTENSIONS + SLIDE_EXTENSIONS:
            fix = "The first row is data: add the header row sample_index,label above it."
        else:
            fix = "Rename the header row to sample_index,label."

        raise LabelsError(
            f"Label file '{path}' must have the columns sample_index,label. Got '{','.join(rows[0])}' instead. {fix}"
        )
    id_col, label_col = header.index("sample_index"), header.index("label")
    labels: dict[str, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) <= max(id_col, label_col) or not row[id_col] or not row[label_col]:
            raise LabelsError(f"Label file '{path}', line {line_no}: expected sample_index,label. Got {row} instead.")
        sample_index, label = row[id_col], row[label_col]
        if sample_index in labels:
            if labels[sample_index] != label:
                raise LabelsError(
                    f"Label file '{path}': {sample_index} has two labels, '{labels[sample_index]}' and '{label}' "
                    f"(line {line_no}). Keep one row per image."
                )
            logger.warning("Label file %s: %s is listed twice with the same label; keeping one.", path, sample_index)
        labels[sample_index] = label
    if not labels:
        raise LabelsError(f"Label file '{path}' has a header but no rows. Add one sample_index,label row per image.")
    return labels
