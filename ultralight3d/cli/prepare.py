"""``ultralight3d prepare msd-prostate|feta|synapse|folder --root ...``: write a datalist JSON with fixed folds."""

from __future__ import annotations

import argparse

from ..data.datalist import FOLD_SEED, NUM_FOLDS
from ..errors import UserInputError

__all__ = ["parse_labels", "register", "run"]


def parse_labels(text: str) -> dict[int | str, str]:
    """``"1=liver,2=liver tumour"`` -> ``{"1": "liver", "2": "liver tumour"}`` (the label table
    :func:`ultralight3d.data.prepare_folder` takes)."""
    out: dict[int | str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        value, sep, name = part.partition("=")
        if not sep or not value.strip().isdigit() or not name.strip():
            raise UserInputError(f"--labels entry {part!r} is not VALUE=NAME; write e.g. --labels '1=liver,2=tumour'")
        out[value.strip()] = name.strip()
    if not out:
        raise UserInputError("--labels is empty; write e.g. --labels '1=liver,2=tumour'")
    return out


def run(args: argparse.Namespace) -> int:
    """Run the preparer named by ``args.dataset``; returns the exit code (0)."""
    from .. import data

    common = {
        "output": args.output,
        "overwrite": args.overwrite,
        "num_folds": args.folds,
        "seed": args.seed,
        "check_labels": args.check_labels or args.full_check,
        "check_images": args.check_images or args.full_check,
        "progress": not args.quiet,
    }
    if args.folds < 2:
        raise UserInputError(f"--folds must be at least 2, got {args.folds}")
    if args.dataset == "msd-prostate":
        root = args.root
        if args.download:
            from ..data.download import download_msd_prostate

            root = download_msd_prostate(args.root, progress=not args.quiet)
        data.prepare_msd_prostate(root, **common)
    elif args.dataset == "feta":
        data.prepare_feta(args.root, **common)
    elif args.dataset == "synapse":
        data.prepare_synapse(args.root, label_protocol=args.protocol, **common)
    else:
        channels = [c.strip() for c in args.channels.split(",")] if args.channels else None
        labels = parse_labels(args.labels) if args.labels else None
        data.prepare_folder(
            args.root, labels=labels, channels=channels, name=args.name, protocol=args.protocol, **common
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prepare`` and its four dataset subcommands."""
    parser = subparsers.add_parser(
        "prepare",
        help="write a datalist JSON with fixed 5 folds for MSD Prostate, FeTA, Synapse or your own folder",
        description="Find the cases of a dataset, check them (missing/duplicate files, image/label geometry, channels; "
        "with --check-labels / --check-images / --full-check also every voxel) and write a MONAI decathlon-style "
        "datalist JSON with fixed cross-validation folds, the class table (labels, num_classes), the channel names "
        "(channels, modality) and the transform protocol the bundles use. All problems are reported together.",
    )
    datasets = parser.add_subparsers(dest="dataset", metavar="DATASET")
    parser.set_defaults(func=lambda a: (parser.print_help(), 2)[1])

    def add(name: str, help_text: str, root_help: str) -> argparse.ArgumentParser:
        p = datasets.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--root", required=True, help=root_help)
        p.add_argument("--output", help="datalist JSON path or folder (default: <root>/datalist.json)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing datalist")
        p.add_argument(
            "--folds", type=int, default=NUM_FOLDS, help=f"number of cross-validation folds (default {NUM_FOLDS})"
        )
        p.add_argument(
            "--seed",
            type=int,
            default=FOLD_SEED,
            help=f"fold shuffle seed (default {FOLD_SEED}: keep it to get the same folds as everyone else)",
        )
        p.add_argument(
            "--check-labels",
            action="store_true",
            help="also read every label: its values must be in the "
            "class table and it must hold no NaN/inf (one line per offending file)",
        )
        p.add_argument(
            "--check-images",
            action="store_true",
            help="also read every image (training and test): no NaN/inf voxels (one line per offending file)",
        )
        p.add_argument(
            "--full-check",
            action="store_true",
            help="--check-labels and --check-images: read every "
            "voxel of the dataset (slower; recommended once for new data)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.set_defaults(func=run)
        return p

    msd = add(
        "msd-prostate",
        "MSD Task05 Prostate (4D T2+ADC, labels 1 peripheral zone, 2 transition zone: the prostate protocol)",
        "the extracted Task05_Prostate folder (or its parent; with --download, where to download it)",
    )
    msd.add_argument("--download", action="store_true", help="download and extract Task05_Prostate.tar into --root")
    add(
        "feta",
        "FeTA 2021 fetal brain MRI (sub-*/anat/*_T2w.nii.gz + *_dseg.nii.gz, 8 classes: the feta protocol)",
        "the FeTA folder",
    )
    syn = add(
        "synapse",
        "Synapse/BTCV abdomen CT (RawData/Training/{img,label}), TransUNet 18/12 split",
        "the folder holding RawData/",
    )
    syn.add_argument(
        "--protocol",
        choices=["8", "13"],
        default="8",
        help="the 8 organs papers report and the "
        "Synapse bundles train (default; transforms/synapse.json, with a label_map from the 13 BTCV "
        "values), or all 13 BTCV organs (transforms/synapse13.json)",
    )
    folder = add(
        "folder",
        "your own data: imagesTr/ (<case>.nii.gz or <case>_0000.nii.gz per channel) + labelsTr/ [+ imagesTs/]",
        "the folder holding imagesTr/ and labelsTr/",
    )
    folder.add_argument(
        "--labels",
        help="label table, e.g. '1=liver,2=tumour' (default: dataset.json or the values found in the labels)",
    )
    folder.add_argument("--channels", help="channel names, e.g. 'T2,ADC' (default: dataset.json or 'image')")
    folder.add_argument("--name", help="dataset name (default: dataset.json or the folder name)")
    folder.add_argument(
        "--protocol",
        help="transform protocol the datalist is for (transforms/<name>.json, "
        "default generic); its labels and channels are the defaults when neither --labels/--channels "
        "nor dataset.json give them",
    )
