"""``ultralight3d evaluate``: per-case, per-class Dice / HD95 / NSD of predicted label maps against references."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import UserInputError
from ..evaluation import DEFAULT_TOLERANCE_MM, evaluate_cases, find_label_files, read_label_map
from ..evaluation.evaluate import OUTPUT_FILES, case_id_from_path

__all__ = ["register", "run", "resolve_class_names", "pair_files"]

logger = logging.getLogger(__name__)


def _parse_classes(text: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for part in text.split(","):
        value, sep, name = part.partition(":")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise UserInputError(f"--classes expects 'value:name,...' such as '1:PZ,2:TZ', got '{text}'")
        names[int(value)] = name.strip()
    return names


def resolve_class_names(
    labels_csv: str | None, classes: str | None, label_paths: list[Path]
) -> dict[int, str]:
    """Class table from ``--labels`` (labels.csv), ``--classes``, a ``dataset.json`` beside the labels, or the values.

    The last resort reads every reference label map and names each value found ``label <value>``.
    """
    if labels_csv:
        from ..labels import read_label_table

        return read_label_table(labels_csv).names()
    if classes:
        return _parse_classes(classes)
    folder = label_paths[0].parent
    for candidate in (folder / "dataset.json", folder.parent / "dataset.json", folder / "datalist.json",
                      folder.parent / "datalist.json"):
        if candidate.is_file():
            try:
                labels = json.loads(candidate.read_text()).get("labels")
            except (json.JSONDecodeError, AttributeError):
                labels = None
            if isinstance(labels, dict) and labels:
                # MSD dataset.json maps "value": "name"; the newer nnU-Net v2 form maps "name": value
                if all(str(k).isdigit() for k in labels):
                    names = {int(k): str(v) for k, v in labels.items()}
                else:
                    names = {int(v): str(k) for k, v in labels.items() if not isinstance(v, list)}
                names.pop(0, None)
                if names:
                    logger.info("Class names from %s: %s", candidate, names)
                    return names
    values: set[int] = set()
    for path in label_paths:
        values |= {int(v) for v in np.unique(read_label_map(path)[0])}
    values.discard(0)
    if not values:
        raise UserInputError(f"the label maps in {folder} hold only background; pass --classes or --labels")
    logger.info("No class table given: scoring the label values found, %s (pass --labels labels.csv for names)",
                sorted(values))
    return {v: f"label {v}" for v in sorted(values)}


def pair_files(pred: str | Path, label: str | Path) -> tuple[list[Path], list[Path]]:
    """Pair predictions with references: two files, or two folders matched by case id (``_seg`` postfix ignored).

    Raises:
        UserInputError: a prediction has no reference, or nothing matches.
    """
    pred, label = Path(pred), Path(label)
    if pred.is_file() and label.is_file():
        return [pred], [label]
    if pred.is_dir() != label.is_dir() or not pred.exists() or not label.exists():
        for p in (pred, label):
            if not p.exists():
                raise UserInputError(f"{p} does not exist; check the path")
        raise UserInputError(f"--pred {pred} and --label {label} must both be files or both be folders")
    preds, labels = find_label_files(pred), find_label_files(label)
    missing = sorted(set(preds) - set(labels))
    if missing:
        raise UserInputError(f"no reference label in {label} for predicted cases {missing[:5]}"
                             f"{' ...' if len(missing) > 5 else ''}; check that the file names match "
                             "(<case>_seg.nii.gz is matched with <case>.nii.gz)")
    unpredicted = sorted(set(labels) - set(preds))
    if unpredicted:
        logger.warning("%d labelled cases have no prediction and are not scored: %s", len(unpredicted),
                       unpredicted[:5])
    cases = sorted(preds)
    return [preds[c] for c in cases], [labels[c] for c in cases]


def run(args: argparse.Namespace) -> int:
    """Run the ``evaluate`` subcommand."""
    preds, labels = pair_files(args.pred, args.label)
    names = resolve_class_names(args.labels, args.classes, labels)
    output = Path(args.output) if args.output else (Path(args.pred) if Path(args.pred).is_dir()
                                                    else Path(args.pred).parent) / "evaluation"
    result = evaluate_cases(preds, labels, names, output, tolerance_mm=args.tolerance, overwrite=args.overwrite,
                            resample=args.resample, plots=not args.no_plots)
    print(Path(result["files"]["markdown"]).read_text().split("\n", 3)[-1].strip())
    print(f"Evaluated {len(preds)} cases ({', '.join(case_id_from_path(p) for p in labels[:4])}"
          f"{' ...' if len(labels) > 4 else ''}): reports in {output} "
          f"({', '.join(v for k, v in OUTPUT_FILES.items() if k in result['files'])})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ultralight3d evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, HD95 and surface Dice per case and class (CSV, JSON, markdown, box plots)",
        description="Score predicted label maps against reference label maps: per case and per class Dice, HD95 (mm) "
        "and normalised surface Dice (NSD) at a tolerance in mm (MONAI metrics, background excluded, plain means "
        "over cases). A class absent from both maps is not scored; a missed class scores Dice 0 and its infinite "
        "HD95 is reported as empty (n/a) with a count. Writes " + ", ".join(OUTPUT_FILES.values()) + ".",
    )
    parser.add_argument("--pred", required=True, help="predicted label map, or a folder of them (<case>_seg.nii.gz)")
    parser.add_argument("--label", required=True, help="reference label map, or a folder of them (<case>.nii.gz)")
    parser.add_argument("-o", "--output", help="report folder (default: <prediction folder>/evaluation)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--labels", help="label table CSV (a bundle's models/labels.csv) giving the class names")
    group.add_argument("--classes", help="class names as 'value:name,...', e.g. '1:PZ,2:TZ'")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_MM,
                        help=f"surface-Dice tolerance in mm (default {DEFAULT_TOLERANCE_MM:g})")
    parser.add_argument("--resample", action="store_true",
                        help="resample predictions on another grid onto the label grid (nearest) instead of failing")
    parser.add_argument("--no-plots", action="store_true", help="skip the box-plot PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    parser.set_defaults(func=run)
