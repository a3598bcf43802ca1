"""Issue 11: per-class post-processing declared in the protocol, applied by predict, as a MONAI transform, and
overridden from the command line (``--largest-component``, ``--min-volume-ml``, ``--no-postprocessing``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.inference import (
    ComponentRule,
    PostprocessLabelsd,
    Predictor,
    parse_rules,
    postprocess_label,
    rules_from_protocol,
)
from ultralight3d.labels import LabelTable
from ultralight3d.transforms import get_protocol

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # voxel 2 mm³ = 0.002 ml (the threshold bundle's spacing)
VOXEL_ML = 0.002
AORTA, LIVER = 1, 5  # synapse classes the threshold bundle predicts (50 < x < 150, x > 150)
AORTA_BLOB = (slice(28, 30), slice(2, 4), slice(20, 22))  # 8 voxels = 0.016 ml
LIVER_BLOB = (slice(2, 5), slice(26, 29), slice(18, 21))  # 27 voxels = 0.054 ml


def organs() -> np.ndarray:
    """32x32x24: an "aorta" box of 100..109 (500 voxels, 1 ml), a "liver" box of 200 (640 voxels) and one
    spurious blob of each, on noise in [0, 1)."""
    rng = np.random.default_rng(0)
    vol = rng.random((32, 32, 24)).astype(np.float32)
    vol[4:14, 4:14, 4:9] = 100 + np.arange(10, dtype=np.float32)[:, None, None]
    vol[20:28, 18:28, 12:20] = 200
    vol[AORTA_BLOB] = 100
    vol[LIVER_BLOB] = 200
    return vol


def raw_label(vol: np.ndarray) -> np.ndarray:
    return np.where(vol > 150, LIVER, np.where(vol > 50, AORTA, 0)).astype(np.uint8)


@pytest.fixture(scope="module")
def threshold_bundle(tmp_path_factory, make_threshold_bundle_fn):
    return make_threshold_bundle_fn(tmp_path_factory.mktemp("pp") / "synapse_threshold")


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    path = tmp_path_factory.mktemp("scan") / "in" / "abdo.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(organs(), AFFINE), path)
    return path


def test_postprocess_label_largest_component_and_min_volume():
    lab = raw_label(organs())
    rules = {AORTA: ComponentRule(largest_component=True), LIVER: ComponentRule(min_volume_ml=0.06)}
    out, report = postprocess_label(lab, rules, VOXEL_ML)
    want = lab.copy()
    want[AORTA_BLOB] = 0
    want[LIVER_BLOB] = 0
    np.testing.assert_array_equal(out, want)
    assert report == {
        AORTA: {"components": 2, "removed_components": 1, "removed_voxels": 8},
        LIVER: {"components": 2, "removed_components": 1, "removed_voxels": 27},
    }
    assert lab[AORTA_BLOB].all()  # the input is not changed
    # 0.054 ml blob survives a 0.05 ml limit; a 0.02 ml limit removes only the 0.016 ml aorta blob
    out, _ = postprocess_label(lab, parse_rules({"1": {"min_volume_ml": 0.02}, "5": {"min_volume_ml": 0.05}}), VOXEL_ML)
    assert not out[AORTA_BLOB].any() and (out[LIVER_BLOB] == LIVER).all()
    # components touching only at a corner are one component (26-connectivity, MONAI's default)
    diag = np.zeros((4, 4, 4), np.uint8)
    diag[0, 0, 0] = diag[1, 1, 1] = 1
    diag[3, 3, 3] = 1
    out, rep = postprocess_label(diag, {1: ComponentRule(True)}, 1.0)
    assert rep[1]["components"] == 2 and out.sum() == 2 and out[3, 3, 3] == 0


def test_rules_from_the_protocol_json():
    synapse = rules_from_protocol("synapse")
    assert set(synapse) == set(range(1, 9)) and all(r.largest_component for r in synapse.values())
    feta = rules_from_protocol("feta")  # only the single structures, not the tissue classes
    assert sorted(feta) == [5, 7] and get_protocol("feta")["labels"]["5"] == "cerebellum"
    assert rules_from_protocol("generic") == {} and rules_from_protocol("demo") == {}
    # a relabelled model does not inherit rules meant for other classes
    mine = LabelTable.from_names({1: "aorta", 5: "tumour"})
    assert sorted(rules_from_protocol("synapse", mine)) == [1]
    with pytest.raises(UserInputError, match=r"class 1: unknown key\(s\) \['largest'\]"):
        parse_rules({"1": {"largest": True}})
    with pytest.raises(UserInputError, match="min_volume_ml must be > 0, got -1.0"):
        parse_rules({"2": {"min_volume_ml": -1}})


def test_monai_style_transform_uses_the_metatensor_spacing():
    lab = raw_label(organs())
    pred = MetaTensor(torch.from_numpy(lab[None].astype(np.float32)), affine=torch.as_tensor(AFFINE))
    # volumes follow the affine: the 27-voxel liver blob is 0.054 ml with 2 mm³ voxels, 0.027 ml with 1 mm³ voxels
    chain = Compose(
        [PostprocessLabelsd(keys="pred", rules={"1": {"min_volume_ml": 0.02}, "5": {"min_volume_ml": 0.03}})]
    )
    out = chain({"pred": pred})["pred"]
    assert isinstance(out, MetaTensor) and out.shape == (1, 32, 32, 24)
    np.testing.assert_allclose(out.affine.numpy(), AFFINE)
    got = out.numpy()[0]
    assert not got[AORTA_BLOB].any() and (got[LIVER_BLOB] == LIVER).all()  # 0.054 ml >= 0.03 ml
    coarse = MetaTensor(pred.as_tensor(), affine=torch.eye(4))  # 1 mm³ voxels: the liver blob is 0.027 ml < 0.03
    got = PostprocessLabelsd(keys="pred", rules={"5": {"min_volume_ml": 0.03}})({"pred": coarse})["pred"].numpy()[0]
    assert not got[LIVER_BLOB].any()
    # the protocol's table, as a bundle's postprocessing would declare it
    got = PostprocessLabelsd(keys="pred", protocol="synapse")({"pred": pred})["pred"].numpy()[0]
    want = lab.copy()
    want[AORTA_BLOB] = want[LIVER_BLOB] = 0
    np.testing.assert_array_equal(got, want)


def _seg(out):
    return np.asarray(nib.load(out / "abdo_seg.nii.gz").dataobj)


def test_predict_applies_the_protocol_rules_and_cli_overrides(threshold_bundle, scan, tmp_path):
    base = ["predict", "-i", str(scan), "--bundle", str(threshold_bundle), "--device", "cpu", "--quiet"]
    raw = raw_label(organs())
    clean = raw.copy()
    clean[AORTA_BLOB] = clean[LIVER_BLOB] = 0

    assert main(base + ["-o", str(tmp_path / "default")]) == 0  # synapse declares largest_component per organ
    np.testing.assert_array_equal(_seg(tmp_path / "default"), clean)
    rec = json.loads((tmp_path / "default" / "records" / "abdo.json").read_text())
    assert rec["postprocessing"]["1"] == {"components": 2, "removed_components": 1, "removed_voxels": 8}
    assert rec["volume_ml"]["1"] == pytest.approx(500 * VOXEL_ML)

    assert main(base + ["-o", str(tmp_path / "none"), "--no-postprocessing"]) == 0
    np.testing.assert_array_equal(_seg(tmp_path / "none"), raw)

    assert main(base + ["-o", str(tmp_path / "liver"), "--largest-component", "liver"]) == 0
    got = _seg(tmp_path / "liver")  # replaces the protocol's rules: only the liver is cleaned
    assert (got[AORTA_BLOB] == AORTA).all() and not got[LIVER_BLOB].any()

    assert main(base + ["-o", str(tmp_path / "all"), "--largest-component"]) == 0
    np.testing.assert_array_equal(_seg(tmp_path / "all"), clean)

    assert main(base + ["-o", str(tmp_path / "vol"), "--min-volume-ml", "0.02"]) == 0
    got = _seg(tmp_path / "vol")  # 0.016 ml aorta blob removed, 0.054 ml liver blob kept
    assert not got[AORTA_BLOB].any() and (got[LIVER_BLOB] == LIVER).all()


def test_postprocessing_argument_errors(threshold_bundle, scan, tmp_path, capsys):
    base = ["predict", "-i", str(scan), "-o", str(tmp_path / "o"), "--bundle", str(threshold_bundle), "--quiet"]
    assert main(base + ["--no-postprocessing", "--min-volume-ml", "1"]) == 2
    assert capsys.readouterr().err == (
        "error: --no-postprocessing cannot be combined with --largest-component or --min-volume-ml; drop one of them\n"
    )
    assert main(base + ["--largest-component", "kidney"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --largest-component: unknown class 'kidney'; this model's classes are 1='aorta'")
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()  # refused before computing anything


def test_api_predictor_rules_follow_labels(threshold_net, tmp_path):
    """Predictor(protocol=...) completes its table's terminology and takes the rules; explicit rules win."""
    from ultralight3d.inference import build_preprocessing

    table = LabelTable.from_names({1: "aorta"})
    pred = Predictor(threshold_net, build_preprocessing("generic", {}), labels=table, protocol="synapse")
    assert pred.rules_for(pred.labels) == {1: ComponentRule(largest_component=True)}
    assert pred.labels.get(1).terminology.type == ("SCT", "15825003", "Aorta")
    explicit = Predictor(threshold_net, labels=table, protocol="synapse", postprocessing={})
    assert explicit.rules_for(explicit.labels) == {}
    pred.set_postprocessing(enabled=False)
    assert pred.rules_for(pred.labels) == {}


def test_monai_bundle_run_applies_the_same_postprocessing(threshold_bundle, scan, tmp_path):
    """``python -m monai.bundle run`` on inference.json builds the same Predictor, with the protocol's rules."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=str(threshold_bundle / "configs" / "inference.json"),
        workflow_type="infer",
        logging_file=False,
        meta_file=None,
        bundle_root=str(threshold_bundle),
        datalist=[str(scan)],
        output_dir=str(tmp_path / "eval"),
        device="$torch.device('cpu')",
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    clean = raw_label(organs())
    clean[AORTA_BLOB] = clean[LIVER_BLOB] = 0
    np.testing.assert_array_equal(_seg(tmp_path / "eval"), clean)
