"""``ultralight3d demo``: the first run on a fresh machine, with no download and no GPU.

1. :func:`~ultralight3d.data.phantom.generate_phantom_dataset` (the phantom generator, re-exported here) writes a
   deterministic synthetic abdominal CT-like set (MSD layout: ``imagesTr``, ``labelsTr``, ``dataset.json``) with
   organ-like structures (liver, kidneys, spleen), a spine, bowel gas, Gaussian noise, a smooth multiplicative bias
   field and a random pose per case.
2. The datalist is prepared with :mod:`ultralight3d.data` (the same code as ``ultralight3d prepare folder``).
3. The generic bundle ``bundles/custom_ultralight_unet3d`` is trained with MONAI's bundle runner (UltraLightUNet3D-S,
   small patch, 1500 iterations by default).
4. The held-out case is segmented with :mod:`ultralight3d.inference` (NIfTI + ``.seg.nrrd`` on the input grid),
5. evaluated with :func:`ultralight3d.evaluation.evaluate_cases`, and
6. shown in an overlay PNG and a short ``report.md``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.phantom import (
    PHANTOM_COLORS,
    PHANTOM_LABELS,
    PHANTOM_SHAPE,
    PHANTOM_SPACING,
    generate_phantom_dataset,
    make_phantom_case,
)
from .errors import UserInputError
from .utils import atomic_path

__all__ = [
    "PHANTOM_COLORS",
    "PHANTOM_LABELS",
    "PHANTOM_SPACING",
    "PHANTOM_SHAPE",
    "DEMO_WINDOW",
    "DemoResult",
    "find_bundle",
    "generate_phantom_dataset",
    "make_phantom_case",
    "run_demo",
]

logger = logging.getLogger(__name__)

#: CT intensity window (HU) used for training and display: soft tissue.
DEMO_WINDOW = (-150.0, 250.0)


# ----------------------------------------------------------------------------------------------- demo orchestration

BUNDLE_NAME = "custom_ultralight_unet3d"
#: Folders and files the demo creates inside its output folder (and only these are replaced by ``overwrite``).
_DEMO_ITEMS = (
    "data",
    "run",
    "model",
    "predictions",
    "evaluation",
    "demo_overlay.png",
    "training_curves.png",
    "report.md",
)


@dataclass
class DemoResult:
    """What :func:`run_demo` produced."""

    output_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mean_dice(self) -> float:
        """Mean Dice over the phantom organs on the held-out case(s)."""
        return float(self.metrics.get("mean", {}).get("dice", math.nan))


def find_bundle(name: str = BUNDLE_NAME, bundles_dir: str | os.PathLike | None = None) -> Path:
    """The bundle folder ``<bundles>/<name>``: in ``bundles_dir`` when given (only there), else in
    ``$ULTRALIGHT3D_BUNDLES`` or ``bundles/`` next to the package (the repository checkout that ``pip install -e .``
    points at) or in the current folder.

    Raises:
        UserInputError: no bundle with a ``configs/train.json`` was found.
    """
    if bundles_dir is not None:  # an explicit folder is the only place looked at
        candidates = [Path(bundles_dir)]
    else:
        candidates = [Path(os.environ["ULTRALIGHT3D_BUNDLES"])] if os.environ.get("ULTRALIGHT3D_BUNDLES") else []
        candidates += [Path(__file__).resolve().parents[1] / "bundles", Path.cwd() / "bundles"]
    for folder in candidates:
        if (folder / name / "configs" / "train.json").is_file():
            return (folder / name).resolve()
    raise UserInputError(
        f"bundle '{name}' not found (looked in {', '.join(str(c) for c in candidates)}); run the demo from a "
        "checkout of the ultralight3d repository installed with 'pip install -e .', or pass --bundles <repo>/bundles "
        "(or set ULTRALIGHT3D_BUNDLES)"
    )


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--output {out} is a file; choose a folder for the demo outputs")
    existing = [out / item for item in _DEMO_ITEMS if (out / item).exists()]
    if existing and not overwrite:
        raise UserInputError(
            f"{out} already holds demo outputs ({', '.join(p.name for p in existing[:4])}); pass "
            "--overwrite to replace them or choose another --output folder"
        )
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UserInputError(f"output folder {out} is not writable; choose another --output folder")


def _train(bundle: Path, overrides: dict[str, Any], iterations: int) -> None:
    """Run the bundle's ``train.json`` in-process with MONAI's ``ConfigWorkflow`` and a tqdm bar on the trainer."""
    import warnings

    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow
    from tqdm import tqdm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's config-evaluation security notice and deprecation chatter
        workflow = ConfigWorkflow(
            config_file=str(bundle / "configs" / "train.json"),
            meta_file=str(bundle / "configs" / "metadata.json"),
            logging_file=None,
            workflow_type="train",
            **overrides,
        )
        workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    bar = tqdm(total=iterations, desc="train", unit="it")

    def _tick(engine: Any) -> None:
        out = engine.state.output
        out = out[0] if isinstance(out, (list, tuple)) and out else out
        loss = out.get("loss") if isinstance(out, dict) else None
        if loss is not None:
            bar.set_postfix(loss=f"{float(loss):.3f}")
        bar.update(1)

    trainer.add_event_handler(Events.ITERATION_COMPLETED, _tick)
    try:
        workflow.run()
        workflow.finalize()
    finally:
        bar.close()


def _report(
    result: DemoResult, case: str, iterations: int, variant: str, num_cases: int, seed: int, table_md: str
) -> str:
    t = result.timings
    rel = {k: os.path.relpath(v, result.output_dir) for k, v in result.files.items()}
    lines = [
        "# ultralight3d demo report",
        "",
        f"UltraLightUNet3D-{variant.upper()} trained for {iterations} iterations (2 patches of 32³ each, CPU) on "
        f"{num_cases} "
        f"synthetic abdominal CT-like phantoms (liver, kidneys, spleen; seed {seed}), using the generic bundle "
        f"`bundles/{BUNDLE_NAME}` with MONAI's bundle runner, then applied to the held-out case `{case}`.",
        "",
        "## Held-out case",
        "",
        table_md.strip(),
        "",
        "HD95 in mm; NSD = normalised surface Dice at the stated tolerance; background excluded.",
        "",
        f"![overlay]({rel['overlay']})",
        "",
        "## Files",
        "",
        f"- segmentation (NIfTI, input grid): `{rel['segmentation']}`",
        f"- 3D Slicer segmentation (named, coloured segments; drag and drop into Slicer): `{rel['seg_nrrd']}`",
        f"- overlay PNG (fill: prediction, outline: reference): `{rel['overlay']}`",
        f"- metrics: `{rel['metrics_csv']}`, `{rel['metrics_json']}`, `{rel['metrics_md']}`",
        f"- training curves: `{rel['training_curves']}`; run folder (logs, TensorBoard, checkpoints): `{rel['run']}`",
        f"- trained weights: `{rel['model']}`; data (MSD layout + datalist.json): `{rel['data']}`",
        "",
        "## Time",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in t.items()],
        "",
        "Next: `ultralight3d predict -i <your scans> -o <out> --bundle bundles/<bundle>` with a trained bundle; "
        "`ultralight3d plot-training <run>`; `ultralight3d evaluate --pred <out> --label <labels>`.",
        "",
    ]
    return "\n".join(lines)


def run_demo(
    output_dir: str | os.PathLike = "ultralight3d_demo",
    iterations: int = 1500,
    num_cases: int = 8,
    seed: int = 0,
    variant: str = "s",
    val_interval: int | None = None,
    learning_rate: float = 3e-3,
    overwrite: bool = False,
    bundles_dir: str | os.PathLike | None = None,
    num_threads: int | None = None,
) -> DemoResult:
    """Generate the phantom set, train the generic bundle, segment and evaluate the held-out case, write a report.

    Args:
        output_dir: everything goes here (``data/``, ``run/``, ``model/``, ``predictions/``, ``evaluation/``,
            ``demo_overlay.png``, ``training_curves.png``, ``report.md``).
        iterations: training iterations (each one batch of two 32³ patches).
        num_cases: training cases (fold 0 of them validates); one more case is held out for the test.
        seed: phantom dataset seed and training seed.
        variant: UltraLightUNet3D variant (``"t"``, ``"s"``, ...).
        val_interval: validate every this many iterations (default: four validations per run).
        learning_rate: AdamW learning rate (3e-3: the short CPU run needs a faster start than the paper's 1e-3).
        overwrite: replace the outputs of a previous demo in ``output_dir``.
        bundles_dir: folder holding the bundles (default: found next to the package, see :func:`find_bundle`).
        num_threads: torch CPU threads (default: torch's choice).

    Returns:
        :class:`DemoResult` with the file paths, the evaluation result and timings.
    """
    import torch

    from .data import prepare_folder
    from .evaluation import evaluate_cases, format_markdown_table
    from .inference import Predictor
    from .io.image import read_image
    from .labels import Label, LabelTable, write_label_csv
    from .plots import plot_training_curves, save_overlay_png

    if iterations < 1:
        raise UserInputError(f"--iterations must be at least 1, got {iterations}")
    if num_cases < 3:
        raise UserInputError(f"--cases must be at least 3 (training and validation), got {num_cases}")
    bundle = find_bundle(bundles_dir=bundles_dir)
    out = Path(output_dir).expanduser().resolve()
    _prepare_output(out, overwrite)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    result = DemoResult(output_dir=out)
    t0 = time.perf_counter()

    # 1. data: phantom set in MSD layout + label table + datalist (the same code as `ultralight3d prepare folder`)
    data = out / "data"
    generate_phantom_dataset(data, num_cases=num_cases, num_test=1, seed=seed)
    table = LabelTable([Label(v, n, (*PHANTOM_COLORS[v], 255)) for v, n in PHANTOM_LABELS.items() if v])
    labels_csv = write_label_csv(table, data / "labels.csv")
    prepared = prepare_folder(data, protocol="demo", progress=False)
    logger.info("Datalist with %d training cases written to %s", len(prepared.datalist["training"]), prepared.path)
    result.timings["data"] = time.perf_counter() - t0

    # 2. train the generic bundle through MONAI's bundle runner
    t1 = time.perf_counter()
    # no flips: left/right is what tells the liver from the spleen; pose and bias already vary per phantom
    transform_params = {
        "window": list(DEMO_WINDOW),
        "labels": {str(k): v for k, v in PHANTOM_LABELS.items()},
        "augment": {"scale_intensity": {"factors": 0.1, "prob": 0.5}},
    }
    val_every = val_interval or max(1, iterations // 4)
    overrides = {
        "dataset_dir": str(data),
        "protocol": "demo",
        "transform_params": transform_params,
        "in_channels": 1,
        "num_classes": len(PHANTOM_LABELS),
        "labels_file": str(labels_csv),
        "variant": variant,
        "patch_size": [32, 32, 32],
        "num_samples": 2,
        "batch_size": 1,
        "max_iterations": int(iterations),
        "learning_rate": float(learning_rate),
        "val_interval": int(val_every),
        "checkpoint_interval": int(iterations),
        "log_interval": max(1, iterations // 10),
        "num_workers": 0,
        "sw_batch_size": 4,
        "run_dir": str(out / "run"),
        "ckpt_dir": str(out / "model"),
        "resume": False,
        "publish_overwrite": True,
        "initialize#0": f"$monai.utils.set_determinism(seed={int(seed)})",
    }
    _train(bundle, overrides, iterations)
    model_pt = out / "model" / "model.pt"
    if not model_pt.is_file():
        raise UserInputError(
            f"training did not produce {model_pt} (no validation ran?); use --iterations >= 1 and check the log above"
        )
    result.timings["training"] = time.perf_counter() - t1

    # 3. segment the held-out case with the bundle's inference config
    t2 = time.perf_counter()
    predictor = Predictor.from_bundle(
        bundle,
        checkpoint=model_pt,
        overrides={
            "protocol": "demo",
            "transform_params": {"window": list(DEMO_WINDOW)},
            "in_channels": 1,
            "num_classes": len(PHANTOM_LABELS),
            "labels_file": str(labels_csv),
            "variant": variant,
            "roi_size": [32, 32, 32],
            "sw_batch_size": 4,
            "overlap": 0.5,
            "amp": False,
        },
    )
    pred_dir = out / "predictions"
    run = predictor.predict(data / "imagesTs", pred_dir, overwrite=True, preview=True)
    if not run.ok:
        errors = "; ".join(f"{c.case}: {c.error}" for c in run.cases if not c.ok)
        raise UserInputError(f"prediction of the held-out case failed: {errors}")
    case = run.cases[0].case
    result.timings["prediction"] = time.perf_counter() - t2

    # 4. evaluate against the reference, 5. figures and report
    t3 = time.perf_counter()
    seg = pred_dir / f"{case}_seg.nii.gz"
    ref = data / "labelsTs" / f"{case}.nii.gz"
    names = {k: v for k, v in PHANTOM_LABELS.items() if k}
    metrics = evaluate_cases([seg], [ref], names, out / "evaluation", overwrite=True)
    result.metrics = metrics
    image = read_image(data / "imagesTs" / f"{case}.nii.gz", dtype=None).array[0]
    save_overlay_png(
        image,
        read_image(seg, dtype=None).array[0],
        out / "demo_overlay.png",
        reference=read_image(ref, dtype=None).array[0],
        class_names=names,
        colors=PHANTOM_COLORS,
        spacing=PHANTOM_SPACING,
        window=DEMO_WINDOW,
        title=f"{case}: prediction (fill) vs reference (outline), mean Dice {result.mean_dice:.3f}",
    )
    plot_training_curves(out / "run", out / "training_curves.png")
    result.timings["evaluation"] = time.perf_counter() - t3
    result.timings["total"] = time.perf_counter() - t0
    result.files = {
        "data": data, "run": out / "run", "model": model_pt, "segmentation": seg,
        "seg_nrrd": pred_dir / f"{case}.seg.nrrd", "overlay": out / "demo_overlay.png",
        "metrics_csv": Path(metrics["files"]["csv"]), "metrics_json": Path(metrics["files"]["json"]),
        "metrics_md": Path(metrics["files"]["markdown"]), "training_curves": out / "training_curves.png",
        "report": out / "report.md",
    }  # fmt: skip
    report = _report(
        result, case, iterations, variant, num_cases, seed, format_markdown_table(metrics, metrics["tolerance_mm"])
    )
    with atomic_path(out / "report.md", overwrite=True) as tmp:
        tmp.write_text(report)
    return result
