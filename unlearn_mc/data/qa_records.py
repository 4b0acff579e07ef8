"""Question–answer records in TOFU's layout (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs").

A TOFU folder holds JSON files, one object per line (or a JSON list), each with ``question`` and ``answer``:
``forget01.json`` / ``retain99.json``, ``forget05.json`` / ``retain95.json``, ``forget10.json`` / ``retain90.json``
(the forget set is 1, 5 or 10 % of the 200 fictitious authors, the retain set the rest), and, for the
evaluation, ``<split>_perturbed.json`` / ``retain_perturbed.json`` / ``real_authors_perturbed.json`` /
``world_facts_perturbed.json`` whose records add ``paraphrased_answer`` and ``perturbed_answer`` (a list of
wrong answers of the same form).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from unlearn_mc.errors import UnlearnMCError

TOFU_SPLITS = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}


@dataclass
class QARecord:
    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: list[str] = field(default_factory=list)


def _objects(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        content = json.loads(text)
        return content if isinstance(content, list) else [content]
    except json.JSONDecodeError:
        pass
    objects = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                objects.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UnlearnMCError(f"line {number} of {str(path)!r} is not JSON ({error.msg}); TOFU files hold one {{\"question\": …, \"answer\": …}} per line.") from None
    return objects


def read_qa_file(path: str | Path) -> list[QARecord]:
    """The records of one TOFU file; each must hold string ``question`` and ``answer``."""
    path = Path(path)
    if not path.is_file():
        raise UnlearnMCError(f"TOFU file {str(path)!r} does not exist; data.data_dir must be a folder with forget01.json, retain99.json … (TOFU's layout).")
    records = []
    for number, item in enumerate(_objects(path), start=1):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str) or not isinstance(item.get("answer"), str):
            raise UnlearnMCError(f"record {number} of {str(path)!r} lacks a string 'question' or 'answer'; every record must hold both.")
        perturbed = item.get("perturbed_answer") or []
        records.append(QARecord(item["question"], item["answer"], item.get("paraphrased_answer"), [perturbed] if isinstance(perturbed, str) else list(perturbed)))
    if not records:
        raise UnlearnMCError(f"TOFU file {str(path)!r} holds no records.")
    return records


def tofu_files(data_dir: str | Path, split: str) -> dict[str, Path]:
    """The files of a TOFU split that exist: ``forget``, ``retain`` (required), ``forget_perturbed``,
    ``retain_perturbed``, ``real_authors``, ``world_facts`` (optional)."""
    if split not in TOFU_SPLITS:
        raise UnlearnMCError(f"split={split!r} is not a TOFU split; use one of {', '.join(TOFU_SPLITS)}.")
    root = Path(data_dir)
    if not root.is_dir():
        raise UnlearnMCError(f"TOFU folder {str(root)!r} does not exist; set data.data_dir to a folder with {split}.json and {TOFU_SPLITS[split]}.json.")
    files = {"forget": root / f"{split}.json", "retain": root / f"{TOFU_SPLITS[split]}.json"}
    optional = {"forget_perturbed": f"{split}_perturbed.json", "retain_perturbed": "retain_perturbed.json",
                "real_authors": "real_authors_perturbed.json", "world_facts": "world_facts_perturbed.json"}
    files.update({name: root / file for name, file in optional.items() if (root / file).is_file()})
    return files
