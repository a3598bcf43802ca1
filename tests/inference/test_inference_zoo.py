"""``configs/inference.json`` by model-zoo conventions: ``python -m monai.bundle run`` on a folder of NIfTI images
gives what ``ultralight3d predict --bundle`` gives, voxel for voxel; its errors are one line naming the setting; tools
that take the standard ids (MONAI Label's ``BundleInferTask``) can run them on their own data dicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from ultralight3d import create_model
from ultralight3d.bundle.user_errors import find_user_error
from ultralight3d.checkpoint import ModelCard, write_model_card
from ultralight3d.cli import main
from ultralight3d.errors import UserInputError
from ultralight3d.inference import Predictor
from ultralight3d.inference.workflow import LoadCased, data_items, find_inputs

REPO_ROOT = Path(__file__).resolve().parents[2]
FETAL = REPO_ROOT / "bundles" / "fetal_brain_ultralight_unet3d"  # ships weights + model card (8 classes, 64^3)
OBLIQUE = np.array([[0.0, 0, -1.2, 40], [-1.1, 0, 0, 10], [0, 1.3, 0, -7], [0, 0, 0, 1]])  # permuted, flipped, aniso


def _scan(shape=(30, 28, 26), seed: int = 0) -> np.ndarray:
    """A bright ball with a brighter core on noise: the fetal model labels it with several classes."""
    rng = np.random.default_rng(seed)
    vol = rng.random(shape).astype(np.float32) * 20
    ii, jj, kk = np.indices(shape)
    c = [s // 2 for s in shape]
    vol[(ii - c[0]) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2 < 100] += 200
    vol[(ii - c[0] + 3) ** 2 + (jj - c[1]) ** 2 + (kk - c[2]) ** 2 < 20] += 300
    return vol


def _save(path: Path, vol: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return path


@pytest.fixture
def keep_threads():
    """The bundle's ``initialize`` sets torch's thread count (as predict does): restore it for the other tests."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """A folder of NIfTI images: an oblique one and an nnU-Net named one (``_0000``)."""
    root = tmp_path_factory.mktemp("zoo") / "scans"
    _save(root / "sub01.nii.gz", _scan(), OBLIQUE)
    _save(root / "sub02_0000.nii.gz", _scan(seed=1)[::-1].copy(), np.diag([1.2, 1.2, 1.2, 1.0]))
    (root / "notes.txt").write_text("not an image")
    return root


def _bundle_run(*args: str, cwd: Path = FETAL) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("ULTRALIGHT3D_TRACEBACK", None)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_monai_bundle_run_writes_what_predict_writes_voxel_for_voxel(scans, tmp_path, keep_threads):
    """The documented command, from inside the bundle, and ``ultralight3d predict --bundle``: same files, same label
    maps, both exactly on each input's grid."""
    out_zoo, out_pred = tmp_path / "zoo", tmp_path / "pred"
    res = _bundle_run("--dataset_dir", str(scans), "--output_dir", str(out_zoo), "--device", "cpu", "--threads", "1",
                      "--progress", "False")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    argv = ["predict", "-i", str(scans), "-o", str(out_pred), "--bundle", str(FETAL), "--device", "cpu", "--quiet"]
    assert main([*argv, "--threads", "1"]) == 0
    listing = sorted(p.relative_to(out_pred).as_posix() for p in out_pred.rglob("*") if not p.name.startswith("."))
    assert sorted(p.relative_to(out_zoo).as_posix() for p in out_zoo.rglob("*") if not p.name.startswith(".")) == (
        listing
    )
    assert "records/sub02_0000.json" in listing and "sub01.seg.nrrd" in listing  # predict's case ids and files
    for case, src in (("sub01", "sub01.nii.gz"), ("sub02_0000", "sub02_0000.nii.gz")):
        zoo, pred, inp = (nib.load(str(p)) for p in (out_zoo / f"{case}_seg.nii.gz", out_pred / f"{case}_seg.nii.gz",
                                                      scans / src))  # fmt: skip
        a, b = np.asarray(zoo.dataobj), np.asarray(pred.dataobj)
        assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape == inp.shape
        np.testing.assert_array_equal(a, b)
        assert len(np.unique(a)) >= 2  # a real segmentation, not an empty map
        np.testing.assert_array_equal(zoo.affine, inp.affine)  # the input's exact geometry, qform and sform
        np.testing.assert_array_equal(zoo.get_qform(), inp.affine)
    assert (out_zoo / "labels.csv").read_text() == (out_pred / "labels.csv").read_text()
    zoo_sum, pred_sum = (json.loads((d / "summary.json").read_text()) for d in (out_zoo, out_pred))
    assert zoo_sum["labels"] == pred_sum["labels"] and zoo_sum["model"] == pred_sum["model"] == "ultralight_unet3d_s"
    assert [(c["case"], c["status"], c["volume_ml"]) for c in zoo_sum["cases"]] == [
        (c["case"], c["status"], c["volume_ml"]) for c in pred_sum["cases"]
    ]


def test_missing_weights_are_one_line_naming_ckpt_path(scans, tmp_path):
    res = _bundle_run("--dataset_dir", str(scans), "--output_dir", str(tmp_path / "o"), "--device", "cpu",
                      "--ckpt_path", str(tmp_path / "none" / "model.pt"))  # fmt: skip
    assert res.returncode != 0 and "Traceback" not in res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("ERROR:")]
    assert errors == [
        f"ERROR: --ckpt_path {tmp_path / 'none' / 'model.pt'} not found: there are no trained weights there; train "
        "the bundle first (it writes models/model.pt) or pass --ckpt_path PATH/model.pt"
    ]
    assert not (tmp_path / "o").exists()  # refused before anything was written


def _workflow(**overrides) -> ConfigWorkflow:
    wf = ConfigWorkflow(config_file=str(FETAL / "configs" / "inference.json"), workflow_type="infer",
                        logging_file=False, meta_file=None, bundle_root=str(FETAL), device="$torch.device('cpu')",
                        threads=1, progress=False, **overrides)  # fmt: skip
    return wf


def _user_error(wf: ConfigWorkflow) -> str:
    with pytest.raises(Exception) as info:
        wf.initialize()
        wf.run()
    user = find_user_error(info.value)
    assert user is not None, info.value
    assert "\n" not in str(user)
    return str(user)


def test_dataset_dir_errors_name_the_setting(tmp_path, keep_threads):
    (tmp_path / "empty").mkdir()
    msg = _user_error(_workflow(dataset_dir=str(tmp_path / "empty"), output_dir=str(tmp_path / "o")))
    assert msg.startswith(f"--dataset_dir {tmp_path / 'empty'} holds no images") and "pass --dataset_dir FOLDER" in msg
    absent = tmp_path / "absent"
    msg = _user_error(_workflow(dataset_dir=str(absent), output_dir=str(tmp_path / "o")))
    assert msg == f"--dataset_dir {absent} does not exist; pass --dataset_dir FOLDER holding the scans to segment"
    bad = tmp_path / "bad"
    _save(bad / "a.nii.gz", _scan((20, 20, 20)), np.eye(4))
    (bad / "b.nii.gz").write_bytes(b"not a nifti file")
    msg = _user_error(_workflow(dataset_dir=str(bad), output_dir=str(tmp_path / "o2")))
    assert msg.startswith(f"{bad / 'b.nii.gz'} is not a readable NIfTI image") and "--dataset_dir" in msg
    assert "fix or remove that file" in msg
    assert (tmp_path / "o2" / "a_seg.nii.gz").is_file()  # the good case before it was written
    msg = _user_error(_workflow(dataset_dir=str(bad), output_dir=str(tmp_path / "o2")))  # nothing is overwritten
    assert "already exist" in msg and "--overwrite True" in msg


def test_nnunet_channel_files_are_grouped_as_predict_groups_them(tmp_path):
    root = tmp_path / "imagesTs"
    t2 = _scan((20, 18, 16))
    _save(root / "caseA_0000.nii.gz", t2, np.diag([1.0, 1.0, 2.0, 1.0]))
    _save(root / "caseA_0001.nii.gz", t2[::2, ::2, ::2] * 0 + 7, np.diag([2.0, 2.0, 4.0, 1.0]))  # coarser grid
    _save(root / "caseB_0000.nii.gz", t2, np.eye(4))
    with pytest.raises(UserInputError, match=r"^--dataset_dir: .*case caseB has channel files \[0\] but the bundle "
                                             r"needs 2 \(T2, ADC\) named caseB_0000 … caseB_0001"):  # fmt: skip
        find_inputs(tmp_path, ["T2", "ADC"])
    _save(root / "caseB_0001.nii.gz", t2, np.eye(4))
    entries = find_inputs(tmp_path, ["T2", "ADC"])  # dataset_dir/imagesTs is used when it exists
    assert entries == [[str(root / "caseA_0000.nii.gz"), str(root / "caseA_0001.nii.gz")],
                       [str(root / "caseB_0000.nii.gz"), str(root / "caseB_0001.nii.gz")]]  # fmt: skip
    items = data_items(entries, ["T2", "ADC"])
    assert [i["case"] for i in items] == ["caseA", "caseB"]
    loaded = LoadCased(channels=["T2", "ADC"])(items[0])
    img = loaded["image"]
    assert isinstance(img, MetaTensor) and tuple(img.shape) == (2, 20, 18, 16)
    np.testing.assert_array_equal(img.affine.numpy(), np.diag([1.0, 1.0, 2.0, 1.0]))  # the first channel's grid
    np.testing.assert_array_equal(img[0].numpy(), t2)
    assert float(img[1, 2:-2, 2:-2, 2:-2].min()) == pytest.approx(7.0)  # ADC resampled onto the T2 grid
    assert loaded["case"] == "caseA" and "caseA_0001.nii.gz" in loaded["case_inputs"]
    with pytest.raises(UserInputError, match=r"the bundle's datalist is empty; pass --dataset_dir FOLDER"):
        data_items([], ["image"])


def test_monai_label_style_ids_on_an_in_memory_image(tmp_path):
    """What MONAI Label's BundleInferTask does: ``network_def`` + ``models/model.pt``, ``preprocessing`` without its
    loader on an image it loaded itself, ``inferer``, ``postprocessing`` without savers."""
    path = _save(tmp_path / "scan.nii.gz", _scan(), OBLIQUE)
    parser = ConfigParser()
    parser.read_config(str(FETAL / "configs" / "inference.json"))
    parser.config.update({"bundle_root": str(FETAL), "device": "$torch.device('cpu')", "progress": False})
    network = parser.get_parsed_content("network_def", instantiate=True)
    state = torch.load(FETAL / "models" / "model.pt", map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))
    network.eval()
    pre = list(parser.get_parsed_content("preprocessing", instantiate=True).transforms)
    assert isinstance(pre[0], LoadCased)  # preprocessing starts with its loader
    data = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image")])({"image": str(path)})
    raw = data["image"].clone()
    data = Compose(pre[1:])(data)
    assert tuple(data["image"].shape[1:]) != tuple(raw.shape[1:])  # resampled to the protocol's 1.6 mm
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    assert data["pred"].shape[0] == 8  # logits of the 8 classes
    post_all = list(parser.get_parsed_content("postprocessing", instantiate=True).transforms)
    post = [t for t in post_all if not isinstance(t, SaveImaged)]
    assert len(post) == len(post_all) - 1  # the writer is a saver: MONAI Label drops it
    out = Compose(post)(data)
    label = out["pred"]
    assert tuple(label.shape) == (1, *raw.shape[1:])  # back on the input grid
    np.testing.assert_allclose(label.affine.numpy(), raw.affine.numpy(), atol=1e-6)
    values = set(np.unique(label.numpy()).tolist())
    assert values <= set(range(8)) and len(values) >= 2
    assert not (FETAL / "eval").exists()  # nothing written
    # the same image through predict's own path (plain network, as MONAI Label runs it): the same label map
    predictor = Predictor.from_bundle(FETAL, overrides={"device": "$torch.device('cpu')", "optimize": False,
                                                        "progress": False})  # fmt: skip
    want = predictor.predict_data({"image": raw})["pred"]
    np.testing.assert_array_equal(label.numpy().astype(np.int64), want.numpy().astype(np.int64))
    # the loader kept (MONAI Label keeps transforms it does not know): it lets an already loaded image through
    kept = Compose(pre)({"image": raw.clone()})
    np.testing.assert_array_equal(kept["image"].numpy(), Compose(pre[1:])({"image": raw.clone()})["image"].numpy())


def test_ids_described_by_the_model_card_follow_the_card(tmp_path):
    """``monai.bundle run`` reads the card beside ``ckpt_path`` as predict does; an id given by the user wins."""
    bundle = tmp_path / "custom"
    shutil.copytree(REPO_ROOT / "bundles" / "custom_ultralight_unet3d", bundle,
                    ignore=shutil.ignore_patterns("runs", "*.pt", "*.onnx", "model.json"))  # fmt: skip
    torch.save(create_model("ultralight_unet3d_t", in_channels=1, out_channels=5).state_dict(), tmp_path / "w.pt")
    labels = [{"value": i, "name": n, "color": [10 * i, 0, 0, 255]} for i, n in enumerate("bg a b c d".split())]
    card = ModelCard(model_name="ultralight_unet3d_t", network_kwargs={"spatial_dims": 3, "in_channels": 1,
                     "out_channels": 5}, in_channels=1, out_channels=5, channel_names=["MR"], labels=labels,
                     protocol="generic", patch_size=[32, 32, 32])  # fmt: skip
    write_model_card(tmp_path / "w.pt", card)

    def parsed(**ids):
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser.config.update({"bundle_root": str(bundle), **ids})
        return parser

    plain = parsed()  # no weights in the copy: the bundle's defaults
    assert plain.get_parsed_content("model_name") == "ultralight_unet3d_m"
    assert plain.get_parsed_content("num_classes") == 2
    carded = parsed(ckpt_path=str(tmp_path / "w.pt"))
    assert carded.get_parsed_content("model_name") == "ultralight_unet3d_t"
    assert carded.get_parsed_content("num_classes") == 5 and carded.get_parsed_content("channels") == ["MR"]
    assert carded.get_parsed_content("roi_size") == [32, 32, 32]
    assert carded.get_parsed_content("labels").names == {1: "a", 2: "b", 3: "c", 4: "d"}
    net = carded.get_parsed_content("network_def")
    assert net.out_channels == 5
    from ultralight3d.inference.workflow import check_weights

    check_weights(tmp_path / "w.pt", net)  # fits
    with pytest.raises(UserInputError, match=r"^--ckpt_path .*w\.pt does not fit network_def \("):
        check_weights(tmp_path / "w.pt", plain.get_parsed_content("network_def"))
    assert parsed(ckpt_path=str(tmp_path / "w.pt"), roi_size=[64, 64, 64]).get_parsed_content("roi_size") == [64] * 3
