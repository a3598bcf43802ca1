"""``ultralight3d select-width``: pick an UltraLightUNet3D width for your data without training (XTinyU-Net rule).

Examples::

    ultralight3d select-width --images data/imagesTr --output-dir runs/width
    ultralight3d select-width --images ../shared/data/fetal_sb_atlas --pattern "*/srr.nii.gz" --max-images 4 \\
        --reference ultralight_unet3d_base --output-dir runs/width_fetal
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

__all__ = ["register", "run"]

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "select-width",
        help="training-free width selection for UltraLightUNet3D on unlabeled volumes",
        description="Scan width caps of an UltraLightUNet3D variant, score each untrained candidate by the Jacobian "
        "sensitivity on centre crops of your unlabeled volumes and pick the smallest width before the "
        "total-variation knee (XTinyU-Net rule adapted to 3D). Prints the table, saves the curve (PNG), the "
        "results (JSON) and a bundle override for the chosen width.",
    )
    from ..io.files import IMAGE_SUFFIXES

    p.add_argument(
        "--images",
        type=Path,
        required=True,
        help=f"folder of unlabeled volumes ({'/'.join(IMAGE_SUFFIXES)}; hidden files skipped)",
    )
    p.add_argument("--pattern", default="*", help="glob inside --images, e.g. '*/srr.nii.gz' (default '*')")
    p.add_argument("--reference", default="ultralight_unet3d_m", help="variant whose widths are capped (default M)")
    p.add_argument("--out-channels", type=int, default=2, help="output classes of the candidates (default 2)")
    p.add_argument("--crop", type=int, nargs="+", default=[96], help="centre crop size, multiple of 32 (default 96)")
    p.add_argument("--max-images", type=int, help="use K volumes (seeded shuffle); default all")
    p.add_argument("--seed", type=int, default=369, help="seed set before building each candidate (default 369)")
    p.add_argument("--min-cap", type=int, default=1, help="smallest width cap scanned (default 1)")
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    p.add_argument("--output-dir", type=Path, default=Path("width_selection"), help="where to write results")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..utils import check_writable
    from ..width_selection import select_width

    out = args.output_dir
    files = {
        k: out / n
        for k, n in (
            ("json", "width_selection.json"),
            ("png", "width_curve.png"),
            ("override", "network_override.json"),
        )
    }
    for path in files.values():  # fail before the (long) scan, not after
        check_writable(path, args.overwrite)
    t0 = time.perf_counter()
    result = select_width(
        args.images,
        reference_model=args.reference,
        out_channels=args.out_channels,
        crop=args.crop,
        seed=args.seed,
        max_images=args.max_images,
        pattern=args.pattern,
        min_cap=args.min_cap,
        count_flops=not args.no_flops,
    )
    elapsed = time.perf_counter() - t0
    print(result.table())
    sel = result.selected
    print(
        f"\nselected: cap {sel.cap}, channels {sel.channels}, {sel.params:,} parameters "
        f"({result.num_images} image(s), crop {result.crop}, {elapsed:.0f} s)"
    )
    print("create_model config: " + json.dumps(result.model_config()))
    result.save_json(files["json"], overwrite=args.overwrite)
    result.save_plot(files["png"], overwrite=args.overwrite)
    from ..utils import atomic_path

    with atomic_path(files["override"], overwrite=args.overwrite) as tmp:
        tmp.write_text(json.dumps(result.bundle_override(), indent=2) + "\n")
    print(
        f"results: {files['json']}\ncurve:   {files['png']}\nbundle override: {files['override']} "
        f"(merge it after train.json: --config_file \"['configs/train.json','{files['override']}']\")"
    )
    return 0
