"""The Synapse bundles' evaluate step scores 8-organ predictions against raw BTCV label files (all 13 organ values):
the reference is remapped with the bundle's protocol exactly as training remaps it (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from ultralight3d.bundle import evaluate_predictions
from ultralight3d.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLE = REPO_ROOT / "bundles" / "synapse_ultralight_unet3d"
# BTCV value -> Synapse 8-organ value (TransUNet order), written out by hand from the two label lists
BTCV_TO_SYNAPSE = {1: 7, 2: 4, 3: 3, 4: 2, 5: 0, 6: 5, 7: 8, 8: 1, 9: 0, 10: 0, 11: 6, 12: 0, 13: 0}
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def _bundle_settings() -> tuple[str, dict, dict[int, str]]:
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / n) for n in ("train.json", "evaluate.json")])
    parser["bundle_root"] = str(BUNDLE)
    names = json.loads(json.dumps(parser.get_parsed_content("class_names")))
    return (
        parser.get_parsed_content("protocol"),
        parser.get_parsed_content("transform_params"),
        {int(k): v for k, v in names.items()},
    )


def test_synapse_evaluate_step_remaps_raw_btcv_labels(tmp_path: Path) -> None:
    protocol, transform_params, class_names = _bundle_settings()
    assert protocol == "synapse" and len(class_names) == 8
    # RawData/Training layout; one 4-slice slab per BTCV value 0..13 along x
    label = np.repeat(np.arange(14, dtype=np.uint8), 4)[:, None, None] * np.ones((1, 6, 5), np.uint8)
    (tmp_path / "RawData/Training/img").mkdir(parents=True)
    (tmp_path / "RawData/Training/label").mkdir()
    img_path = tmp_path / "RawData/Training/img/img0001.nii.gz"
    lab_path = tmp_path / "RawData/Training/label/label0001.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(label.shape, np.int16), AFFINE), img_path)
    nib.save(nib.Nifti1Image(label, AFFINE), lab_path)
    # the 8-organ prediction: organ t loses its first (t % 4) slices
    pred = np.zeros_like(label)
    for btcv, organ in BTCV_TO_SYNAPSE.items():
        if organ:
            pred[4 * btcv + organ % 4 : 4 * btcv + 4] = organ
    preds = tmp_path / "pred"
    preds.mkdir()
    nib.save(nib.Nifti1Image(pred, AFFINE), preds / "img0001_seg.nii.gz")
    cases = [{"image": str(img_path), "label": str(lab_path)}]

    # without the protocol the raw reference holds values the 8-organ table does not know
    with pytest.raises(UserInputError, match=r"9, 10, 11, 12, 13"):
        evaluate_predictions(cases, preds, class_names, tmp_path / "raw")
    evaluate_predictions(
        cases, preds, class_names, tmp_path / "eval", protocol=protocol, transform_params=transform_params
    )
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["label_map"] == {str(k): v for k, v in BTCV_TO_SYNAPSE.items()}
    for organ, name in class_names.items():
        kept = 4 - organ % 4  # slices of the organ the prediction keeps
        expected = 2 * kept / (4 + kept)
        got = report["classes"][name]["dice"]["mean"]
        assert report["classes"][name]["label"] == organ
        assert got == pytest.approx(expected, abs=1e-6), (name, got, expected)
