"""``ultralight3d evaluate``: per-case, per-class Dice / HD95 / NSD of predicted label maps against references.

Examples::

    ultralight3d evaluate -i out/ -r data/labelsTs -o report/ --labels bundles/x/models/labels.csv
    ultralight3d evaluate -i out/ -r RawData/Training/label --protocol synapse      # BTCV 13 organs -> 8
    ultralight3d evaluate -i out/ -r labelsTs/ --bundle bundles/synapse_ultralight_unet3d   # protocol + classes
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import lazy_exports
from ..errors import UserInputError
from . import positive_float

if TYPE_CHECKING:
    from ..evaluation import pair_files, resolve_class_names

__all__ = ["register", "run", "resolve_class_names", "pair_files"]

logger = logging.getLogger(__name__)

# What the help text states, without importing the evaluation modules (SimpleITK, MONAI metrics) for --help:
# ultralight3d.evaluation.DEFAULT_TOLERANCE_MM and the file names of its OUTPUT_FILES (tests/test_startup.py checks
# both). Runs use the evaluation module's own values.
HELP_TOLERANCE_MM = 2.0
HELP_OUTPUT_FILES = ("metrics_per_case.csv", "metrics.json", "metrics.md", "metrics_boxplot.png")

_EXPORTS = {"ultralight3d.evaluation": ["pair_files", "resolve_class_names"]}  # kept importable from here
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _model_facts(args: argparse.Namespace) -> tuple[str | None, Any, dict[str, Any]]:
    """``(protocol, class table, transform_params)`` from ``--bundle`` / ``--checkpoint`` (model card) and
    ``--protocol``; an explicit ``--protocol`` that contradicts the model card is an error."""
    if args.bundle:
        from ..inference.bundle_config import load_bundle

        bundle = load_bundle(
            args.bundle, overrides={"protocol": args.protocol} if args.protocol else None, checkpoint=args.checkpoint
        )
        return bundle.protocol, bundle.labels, bundle.transform_params
    if args.checkpoint:
        from ..checkpoint import model_card_path, read_model_card
        from ..labels import LabelTable

        card = read_model_card(args.checkpoint)
        if card is None:
            raise UserInputError(
                f"{args.checkpoint} has no model card ({model_card_path(args.checkpoint)}); pass "
                "--bundle DIR or --protocol/--labels instead"
            )
        if args.protocol and card.protocol and args.protocol != card.protocol:
            raise UserInputError(
                f"--protocol {args.protocol} but {model_card_path(args.checkpoint)} says protocol "
                f"{card.protocol}; drop --protocol or pass the matching checkpoint"
            )
        table = LabelTable.from_records(card.labels, str(model_card_path(args.checkpoint))) if card.labels else None
        return card.protocol or args.protocol, table, dict(card.transform_params)
    return args.protocol, None, {}


def run(args: argparse.Namespace) -> int:
    """Run the ``evaluate`` subcommand."""
    from ..evaluation import DEFAULT_TOLERANCE_MM, evaluate_cases, pair_files, protocol_label_map, resolve_class_names
    from ..evaluation.evaluate import OUTPUT_FILES, case_id_from_path

    preds, labels = pair_files(args.pred, args.label)
    protocol, table, params = _model_facts(args)
    label_map = protocol_label_map(protocol, params)
    names = resolve_class_names(args.labels, args.classes, labels, protocol=protocol, table=table, label_map=label_map)
    output = (
        Path(args.output)
        if args.output
        else (Path(args.pred) if Path(args.pred).is_dir() else Path(args.pred).parent) / "evaluation"
    )
    result = evaluate_cases(
        preds,
        labels,
        names,
        output,
        tolerance_mm=DEFAULT_TOLERANCE_MM if args.tolerance is None else args.tolerance,
        overwrite=args.overwrite,
        resample=args.resample,
        plots=not args.no_plots,
        label_map=label_map or {},
        protocol=protocol,
    )
    print(Path(result["files"]["markdown"]).read_text(encoding="utf-8").split("\n", 3)[-1].strip())
    print(
        f"Evaluated {len(preds)} cases ({', '.join(case_id_from_path(p) for p in labels[:4])}"
        f"{' ...' if len(labels) > 4 else ''}): reports in {output} "
        f"({', '.join(v for k, v in OUTPUT_FILES.items() if k in result['files'])})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ultralight3d evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, HD95 and surface Dice per case and class (CSV, JSON, markdown, box plots)",
        description="Score predicted label maps against reference label maps: per case and per class Dice, HD95 (mm) "
        "and normalised surface Dice (NSD) at a tolerance in mm (MONAI metrics, background excluded, plain means "
        "over cases). A class absent from both maps is not scored; a missed class scores Dice 0 and its infinite "
        "HD95 is reported as empty (n/a) with a count. References in the dataset's original labels are mapped with "
        "the protocol's label_map first, as in training (--protocol, or the bundle's / model card's). Writes "
        + ", ".join(HELP_OUTPUT_FILES)
        + ".",
    )
    parser.add_argument(
        "-i",
        "--input",
        "--pred",
        dest="pred",
        required=True,
        help="predicted label map, or a folder of them (<case>_seg.nii.gz)",
    )
    parser.add_argument(
        "-r",
        "--reference",
        "--label",
        dest="label",
        required=True,
        help="reference label map, or a folder of them (<case>.nii.gz)",
    )
    parser.add_argument("-o", "--output", help="report folder (default: <prediction folder>/evaluation)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--labels", help="label table CSV (a bundle's models/labels.csv) giving the class names")
    group.add_argument("--classes", help="class names as 'value:name,...', e.g. '1:PZ,2:TZ'")
    parser.add_argument(
        "--protocol",
        help="dataset protocol (transforms/<protocol>.json) whose label_map turns the "
        "references into the model's labels, e.g. synapse (BTCV 13 organs -> 8)",
    )
    parser.add_argument(
        "--bundle", help="bundle folder: protocol and class table from its model card (models/model.json) or config"
    )
    parser.add_argument(
        "--checkpoint",
        help="weights whose model card (model.json beside them) gives the protocol and "
        "class table (with --bundle: instead of models/model.pt)",
    )
    parser.add_argument(
        "--tolerance",
        type=positive_float,
        default=None,
        help=f"surface-Dice tolerance in mm (default {HELP_TOLERANCE_MM:g})",
    )
    parser.add_argument(
        "--resample",
        action="store_true",
        help="resample predictions on another grid onto the label grid (nearest) instead of failing",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the box-plot PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    parser.set_defaults(func=run)
