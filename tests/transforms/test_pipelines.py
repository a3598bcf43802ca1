"""Protocols and pipelines of ``ultralight3d.transforms`` on small synthetic NIfTI files and on the real scans."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from ultralight3d.errors import UserInputError
from ultralight3d.transforms import find_user_error, get_pipeline, get_protocol, list_protocols, load_channels

SHAPE = (30, 28, 24)


def _save(path: Path, arr: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(arr, affine), str(path))
    return str(path)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("case")
    aff = np.diag([1.2, 1.0, 1.5, 1.0])
    aff[:3, 3] = [-10.0, 5.0, 2.0]
    x, y, z = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in SHAPE], indexing="ij")
    img = 100.0 + 10.0 * x + 5.0 * y + 2.0 * z  # smooth ramp: linear resampling is exact inside the grid
    lab = np.zeros(SHAPE, np.uint8)
    lab[5:15, 5:15, 5:15] = 8  # BTCV aorta
    lab[16:22, 4:10, 4:10] = 5  # BTCV oesophagus: not one of the 8 Synapse organs
    # ADC: same physical ramp sampled on a grid with 2x coarser in-plane spacing and another origin
    aff2 = np.diag([2.4, 2.0, 1.5, 1.0])
    aff2[:3, 3] = [-10.0 + 1.2, 5.0 + 1.0, 2.0]
    xi, yi, zi = np.meshgrid(np.arange(14), np.arange(13), np.arange(SHAPE[2]), indexing="ij")
    world_x = aff2[0, 0] * xi + aff2[0, 3]
    world_y = aff2[1, 1] * yi + aff2[1, 3]
    adc = 100.0 + 10.0 * (world_x - aff[0, 3]) / 1.2 + 5.0 * (world_y - aff[1, 3]) / 1.0 + 2.0 * zi
    four_d = np.stack([img, img * 2], axis=-1)
    return {
        "image": _save(d / "t2.nii.gz", img.astype(np.float32), aff),
        "adc": _save(d / "adc.nii.gz", adc.astype(np.float32), aff2),
        "label": _save(d / "label.nii.gz", lab, aff),
        "four_d": _save(d / "msd.nii.gz", four_d.astype(np.float32), aff),
        "affine": aff,  # type: ignore[dict-item]
    }


def test_protocols_declare_the_documented_settings() -> None:
    assert {"feta", "synapse", "prostate", "generic", "demo"} <= set(list_protocols())
    feta, syn, pro = get_protocol("feta"), get_protocol("synapse"), get_protocol("prostate")
    assert feta["normalization"]["a_min"] == 0 and feta["normalization"]["a_max"] == 1000 and feta["spacing"] is None
    assert feta["num_classes"] == 8
    assert syn["spacing"] == [1.5, 1.5, 2.0] and syn["spacing_before_orientation"] is True
    assert (syn["normalization"]["a_min"], syn["normalization"]["a_max"]) == (-175, 250) and syn["num_classes"] == 9
    assert pro["channels"] == ["T2", "ADC"] and pro["in_channels"] == 2
    assert pro["normalization"] == {"kind": "zscore", "nonzero": True, "channel_wise": True}


def test_unknown_protocol_stage_and_parameter_messages() -> None:
    with pytest.raises(UserInputError, match="unknown transform protocol 'nope'.*known protocols: .*demo, feta"):
        get_protocol("nope")
    with pytest.raises(UserInputError, match="unknown pipeline stage 'test'"):
        get_pipeline("feta", "test")
    with pytest.raises(UserInputError, match=r"unknown transform parameter\(s\) \['windw'\]"):
        get_pipeline("feta", "train", windw=(0, 1))


@pytest.mark.parametrize("protocol", ["feta", "synapse", "prostate", "generic", "demo"])
def test_train_pipeline_gives_patches_of_the_requested_size(case: dict, protocol: str) -> None:
    image = [case["image"], case["adc"]] if protocol == "prostate" else case["image"]
    spacing = (2.0, 2.0, 2.0) if protocol in ("synapse", "prostate") else None
    out = get_pipeline(protocol, "train", patch_size=(16, 16, 16), num_samples=2, spacing=spacing)(
        {"image": image, "label": case["label"]}
    )
    assert isinstance(out, list) and len(out) == 2
    n_ch = 2 if protocol == "prostate" else 1
    for item in out:
        assert item["image"].shape == (n_ch, 16, 16, 16) and item["label"].shape == (1, 16, 16, 16)
        assert item["image"].dtype == torch.float32 and torch.isfinite(item["image"]).all()
        values = set(torch.unique(item["label"]).tolist())
        assert values <= ({0.0, 1.0} if protocol == "synapse" else {0.0, 5.0, 8.0})


def test_feta_window_scales_to_unit_range(case: dict) -> None:
    out = get_pipeline("feta", "validate")({"image": case["image"], "label": case["label"]})
    img = out["image"]
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert float(img.max()) == pytest.approx(min(1.0, (100 + 10 * 29 + 5 * 27 + 2 * 23) / 1000), abs=1e-5)


def test_synapse_maps_btcv_labels_to_eight_organs(case: dict) -> None:
    out = get_pipeline("synapse", "validate", spacing=False)({"image": case["image"], "label": case["label"]})
    lab = out["label"]
    assert set(torch.unique(lab).tolist()) == {0.0, 1.0}  # aorta 8 -> 1, oesophagus 5 -> background
    assert int((lab == 1).sum()) == 10 * 10 * 10


@pytest.mark.parametrize("protocol", ["synapse", "feta"])
def test_infer_stage_inverts_to_the_input_grid(case: dict, protocol: str) -> None:
    pipe = get_pipeline(protocol, "infer")
    out = pipe({"image": case["image"]})
    if protocol == "synapse":  # resampled to 1.5 x 1.5 x 2 mm
        assert np.allclose(np.abs(np.diag(out["image"].affine.numpy())[:3]), [1.5, 1.5, 2.0])
    inv = pipe.inverse({"image": out["image"]})
    assert inv["image"].shape[1:] == SHAPE
    assert np.allclose(inv["image"].affine.numpy(), case["affine"], atol=1e-5)


def test_second_channel_is_resampled_onto_the_first_channel_grid(case: dict) -> None:
    vol = load_channels([case["image"], case["adc"]], num_channels=2)
    assert vol.shape == (2, *SHAPE)
    assert np.allclose(vol.affine.numpy(), case["affine"])
    t2, adc = vol[0].numpy(), vol[1].numpy()
    inner = (slice(2, 26), slice(2, 24), slice(None))  # inside the coarse grid's field of view
    assert np.allclose(adc[inner], t2[inner], atol=1e-2)
    assert vol.applied_operations == []


def test_four_d_channel_last_file_becomes_channel_first(case: dict) -> None:
    out = get_pipeline("prostate", "validate", spacing=False)({"image": case["four_d"], "label": case["label"]})
    assert out["image"].shape == (2, *SHAPE)


def test_wrong_channel_count_names_the_file(case: dict) -> None:
    with pytest.raises(Exception) as info:  # MONAI's Compose wraps transform errors in RuntimeError
        get_pipeline("prostate", "infer")({"image": case["image"]})
    err = find_user_error(info.value)
    assert err is not None and "t2.nii.gz has 1 channel(s) but this protocol needs 2" in str(err)
    with pytest.raises(UserInputError, match="missing.nii.gz does not exist; fix the path in the datalist"):
        load_channels(str(Path(case["image"]).with_name("missing.nii.gz")))


@pytest.mark.data
def test_prostate_pipeline_on_real_prostatex_t2_and_adc(shared_data: Path) -> None:
    case_dir = shared_data / "prostatex_mha" / "ProstateX-0000"
    t2, adc = case_dir / "t2w.mha", case_dir / "adc.mha"
    label = case_dir / "lesion_label_t2space_geomfromT2.nii.gz"
    pipe = get_pipeline("prostate", "validate", spacing=(1.0, 1.0, 3.0))
    out = pipe({"image": [str(t2), str(adc)], "label": str(label)})
    img = out["image"]
    assert img.shape[0] == 2 and img.shape[1:] == out["label"].shape[1:]
    # 384 x 384 x 19 at 0.5 x 0.5 x 3 mm (slightly oblique) -> about 192 x 192 x 19 at 1 x 1 x 3 mm
    assert all(abs(a - b) <= 1 for a, b in zip(img.shape[1:], (192, 192, 19)))
    for c in range(2):  # z-score per channel over nonzero voxels
        nz = img[c][img[c] != 0]
        assert abs(float(nz.mean())) < 0.05 and abs(float(nz.std()) - 1) < 0.05
    assert float((out["label"] > 0).sum()) > 0
    train = get_pipeline("prostate", "train", spacing=(1.0, 1.0, 3.0), patch_size=(32, 32, 16), num_samples=1)
    patch = train({"image": [str(t2), str(adc)], "label": str(label)})[0]
    assert patch["image"].shape == (2, 32, 32, 16)


@pytest.mark.data
def test_feta_pipeline_on_real_fetal_atlas_with_label_mapping(shared_data: Path) -> None:
    atlas = shared_data / "fetal_sb_atlas" / "fetal_SB_atlas_GA21_notoperated"
    feta_map = {1: 3, 2: 4, 3: 5, 4: 1, 5: 2, 6: 6, 7: 7, 8: 3}  # data README: atlas labels -> FeTA 2021 order
    pipe = get_pipeline("feta", "validate", label_map=feta_map)
    out = pipe({"image": str(atlas / "srr.nii.gz"), "label": str(atlas / "parcellation.nii.gz")})
    raw = np.asarray(nib.load(str(atlas / "parcellation.nii.gz")).dataobj)
    assert set(torch.unique(out["label"]).int().tolist()) <= set(range(8))
    # white matter (atlas 1) and corpus callosum (atlas 8) both become FeTA WM (3)
    assert int((out["label"] == 3).sum()) == int(np.isin(raw, [1, 8]).sum())
    assert float(out["image"].min()) >= 0 and float(out["image"].max()) <= 1
    assert out["image"].shape == out["label"].shape and out["image"].shape[1] <= 135  # cropped to the foreground
