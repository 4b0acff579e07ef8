"""Reading labelled texts from local files: JSONL, JSON (a list of objects), CSV, or a saved Hugging Face dataset.

``data_dir`` is either one file (the training pool; a test set is then carved off by the split) or a
folder holding ``train.<ext>`` and optionally ``test.<ext>`` (ext ``jsonl``, ``json`` or ``csv``), or a
folder written by ``datasets.Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (splits ``train``,
``test``). Every record needs a text field and a label field (names configurable). Labels are
integers 0, 1, … or strings, which are numbered in sorted order of the training pool's names.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from unlearn_mc.errors import UnlearnMCError

FILE_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass
class TextRecords:
    """Texts and class ids of the training pool and, when the data has one, of its test set."""

    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str] | None
    test_labels: list[int] | None
    num_classes: int


def _read_json_lines(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as error:
            raise UnlearnMCError(f"line {number} of {str(path)!r} is not JSON ({error.msg}); each line must be an object like {{\"text\": …, \"label\": …}}.") from None
    return rows


def _read_file(path: Path) -> list[tuple[int, dict]]:
    """(line or row number, record) pairs of one file."""
    if path.suffix == ".jsonl":
        return _read_json_lines(path)
    if path.suffix == ".json":
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return _read_json_lines(path)  # JSON lines under a .json name
        if not isinstance(content, list):
            raise UnlearnMCError(f"{str(path)!r} holds a JSON {type(content).__name__}; it must be a list of objects or one object per line.")
        return list(enumerate(content, start=1))
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(enumerate(csv.DictReader(handle), start=2))
    raise UnlearnMCError(f"text data file {str(path)!r} has the suffix {path.suffix!r}; use one of {', '.join(FILE_SUFFIXES)}.")


def _fields(rows: list[tuple[int, dict]], path: str, text_field: str, label_field: str) -> tuple[list[str], list]:
    texts, labels = [], []
    for number, record in rows:
        if not isinstance(record, dict) or text_field not in record or label_field not in record:
            raise UnlearnMCError(
                f"record {number} of {path!r} lacks {text_field!r} or {label_field!r}; every record must hold both, "
                f"e.g. {{\"{text_field}\": \"a review\", \"{label_field}\": 1}}."
            )
        if not isinstance(record[text_field], str):
            raise UnlearnMCError(f"record {number} of {path!r} has a {text_field!r} that is not a string.")
        texts.append(record[text_field])
        labels.append(record[label_field])
    if not texts:
        raise UnlearnMCError(f"{path!r} holds no records; it needs at least one {{\"{text_field}\": …, \"{label_field}\": …}}.")
    return texts, labels


def _hf_dataset(root: Path, text_field: str, label_field: str) -> dict[str, tuple[list[str], list]]:
    try:
        import datasets
    except ImportError:
        raise UnlearnMCError(f"{str(root)!r} is a saved Hugging Face dataset, which needs the `datasets` package; pip install datasets, or give JSONL/CSV files.") from None
    loaded = datasets.load_from_disk(str(root))
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    if "train" not in parts:
        raise UnlearnMCError(f"the Hugging Face dataset at {str(root)!r} has splits {sorted(parts)}; it needs a 'train' split.")
    return {name: _fields(list(enumerate(parts[name], start=1)), f"{root}[{name}]", text_field, label_field) for name in ("train", "test") if name in parts}


def _split_files(root: Path) -> dict[str, Path]:
    found = {}
    for name in ("train", "test"):
        for suffix in FILE_SUFFIXES:
            if (root / f"{name}{suffix}").is_file():
                found[name] = root / f"{name}{suffix}"
                break
    return found


def _class_ids(train: list, test: list | None, where: str) -> tuple[list[int], list[int] | None, int]:
    """Integer labels as they are (≥ 0); string labels numbered by the sorted names of the training pool."""
    if all(isinstance(label, int) and not isinstance(label, bool) for label in train + (test or [])):
        if min(train + (test or [])) < 0:
            raise UnlearnMCError(f"{where!r} holds the label {min(train + (test or []))}; labels must be integers 0 … num_classes−1 or class names.")
        return train, test, max(train + (test or [])) + 1
    if isinstance(train[0], str) and all(str(label).lstrip("-").isdigit() for label in train + (test or [])):  # CSV numbers
        return _class_ids([int(label) for label in train], None if test is None else [int(label) for label in test], where)
    names = sorted({str(label) for label in train})
    index = {name: k for k, name in enumerate(names)}
    unknown = sorted({str(label) for label in test or []} - set(names))
    if unknown:
        raise UnlearnMCError(f"the test labels {unknown[:3]} of {where!r} never occur in its training data; they have no class id.")
    return [index[str(label)] for label in train], None if test is None else [index[str(label)] for label in test], len(names)


def read_text_records(data_dir: str | Path, text_field: str = "text", label_field: str = "label") -> TextRecords:
    """The labelled texts under ``data_dir`` (a file, a folder of train/test files, or a saved HF dataset)."""
    root = Path(data_dir)
    if root.is_file():
        parts = {"train": _fields(_read_file(root), str(root), text_field, label_field)}
    elif root.is_dir() and ((root / "dataset_dict.json").is_file() or (root / "dataset_info.json").is_file()):
        parts = _hf_dataset(root, text_field, label_field)
    elif root.is_dir() and "train" in _split_files(root):
        parts = {name: _fields(_read_file(path), str(path), text_field, label_field) for name, path in _split_files(root).items()}
    else:
        raise UnlearnMCError(
            f"text data {str(root)!r} does not exist or holds no train.jsonl/.json/.csv; set data.data_dir to a JSONL, JSON "
            "or CSV file of {\"text\": …, \"label\": …} records, a folder with train.<ext> (and test.<ext>), or a saved Hugging Face dataset."
        )
    texts, labels = parts["train"]
    test_texts, test_labels = parts.get("test", (None, None))
    train_ids, test_ids, num_classes = _class_ids(list(labels), None if test_labels is None else list(test_labels), str(root))
    return TextRecords(texts, train_ids, test_texts, test_ids, num_classes)
