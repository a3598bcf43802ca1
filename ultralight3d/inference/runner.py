"""A runner that calls :meth:`Predictor.predict` from a config: ``PredictRunner(predictor, datalist, out).run()``.

The bundles' own ``configs/inference.json`` no longer uses it: their ``evaluator`` is MONAI's ``SupervisedEvaluator``
built from the model-zoo ids (:mod:`ultralight3d.inference.workflow`), whose ``run()`` writes the same files. It is
kept for configs written against it; :func:`list_inputs` is kept for them too (bundles use
:func:`ultralight3d.inference.workflow.find_inputs`, which also groups nnU-Net channel files)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserInputError
from ..io.files import list_image_files
from .predictor import Predictor, RunResult

__all__ = ["PredictRunner", "list_inputs"]


def list_inputs(dataset_dir: str | os.PathLike, subfolder: str = "imagesTs") -> list[str]:
    """Default ``datalist`` of an inference bundle: the image files of ``dataset_dir/imagesTs`` if that folder exists,
    else of ``dataset_dir`` itself (hidden files and ``.seg.nrrd`` skipped); a folder with no image files is returned
    as one entry (DICOM folder)."""
    root = Path(dataset_dir)
    if (root / subfolder).is_dir():
        root = root / subfolder
    if not root.is_dir():
        return [str(root)] if root.is_file() else []
    files = [str(p) for p in list_image_files(root)]
    return files or [str(root)]


class PredictRunner:
    """``run()`` = ``predictor.predict(datalist, output_dir)``; raises when a case failed, so ``monai.bundle run``
    exits non-zero.

    Args:
        predictor: the bundle's ``@predictor``.
        datalist: list of input paths (files, DICOM folders) or one path.
        output_dir: output folder.
        overwrite: replace existing outputs.
    """

    def __init__(
        self,
        predictor: Predictor,
        datalist: str | Sequence[str],
        output_dir: str | os.PathLike,
        overwrite: bool = False,
        **predict_kwargs,
    ) -> None:
        self.predictor = predictor
        self.datalist = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
        self.output_dir = output_dir
        self.overwrite = overwrite
        self.predict_kwargs = predict_kwargs
        self.result: RunResult | None = None

    def run(self) -> RunResult:
        if not self.datalist:
            raise UserInputError(
                "the bundle's datalist is empty; pass --dataset_dir with images (or imagesTs/) or "
                "--datalist \"['scan.nii.gz']\""
            )
        self.result = self.predictor.predict(
            self.datalist, self.output_dir, overwrite=self.overwrite, **self.predict_kwargs
        )
        failed = [c for c in self.result.cases if not c.ok]
        if failed:
            raise RuntimeError(
                f"{len(failed)} of {len(self.result.cases)} case(s) failed: "
                + "; ".join(f"{c.case}: {c.error}" for c in failed)
            )
        return self.result
