"""Issue 15: the predictor's window loop computes what a bare MONAI sliding window computes over the same windows.

The reference is the arithmetic of the loop before issue 15: ``sliding_window_inference`` under ``torch.no_grad``
with the same (fast-path) network, Gaussian blending, then the softmax. Every faster loop keeps its probabilities
within 1e-4 and so the label map.
"""

from __future__ import annotations

import pytest
import torch
from monai.inferers import sliding_window_inference

from ultralight3d import create_model
from ultralight3d.inference import Predictor
from ultralight3d.inference.engine_names import openvino_available

ROI = (32, 32, 32)
NEEDS_OV = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("ultralight_unet3d_t", spatial_dims=3, in_channels=1, out_channels=3).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """An odd size that needs padding on one axis and uneven window steps on the others."""
    return torch.randn(1, 48, 40, 29, generator=torch.Generator().manual_seed(1))


def _reference(model: torch.nn.Module, image: torch.Tensor, sw_batch_size: int, overlap: float) -> torch.Tensor:
    with torch.no_grad():
        logits = sliding_window_inference(image[None], ROI, sw_batch_size, model, overlap=overlap, mode="gaussian")
    return torch.softmax(logits, dim=1)[0]


@pytest.mark.parametrize(
    "engine, sw_batch_size, overlap",
    [("torch", 1, 0.5), ("torch", 2, 0.5), ("torch", 3, 0.25), pytest.param("openvino", 3, 0.25, marks=NEEDS_OV)],
)
def test_probabilities_match_a_bare_sliding_window(net, image, engine, sw_batch_size, overlap):
    """The predictor's window loop against MONAI's bare sliding window over the same engine (for OpenVINO: the
    compiled network, called with the full and the smaller last batch)."""
    predictor = Predictor(
        net, roi_size=ROI, sw_batch_size=sw_batch_size, overlap=overlap, device="cpu", progress=False, engine=engine
    )
    assert predictor.engine == engine and predictor.fast_path == (engine == "torch")
    got = predictor.predict_probabilities(image)
    want = _reference(predictor.model, image, sw_batch_size, overlap)  # type: ignore[arg-type]
    assert got.shape == (3, *image.shape[1:])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert torch.equal(got.argmax(0), want.argmax(0))
    assert predictor._net_time > 0  # the windows went through the timed forward


def test_fast_loop_keeps_the_label_map_of_the_plain_path(net, image):
    common = {
        "roi_size": ROI,
        "sw_batch_size": 2,
        "overlap": 0.5,
        "device": "cpu",
        "progress": False,
        "engine": "torch",
    }
    fast = Predictor(net, **common).predict_probabilities(image)
    plain_predictor = Predictor(net, optimize=False, **common)
    assert not plain_predictor.fast_path
    plain = plain_predictor.predict_probabilities(image)
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-4)
    assert torch.equal(fast.argmax(0), plain.argmax(0))


def test_probabilities_are_an_ordinary_tensor(net, image):
    """The loop runs in inference mode, but what callers get back can be used like any tensor."""
    predictor = Predictor(net, roi_size=ROI, device="cpu", progress=False)
    prob = predictor.predict_probabilities(image)
    assert not prob.is_inference() and not prob.requires_grad
    before = prob.clone()
    prob += 1.0  # in place, outside inference mode
    torch.testing.assert_close(prob - 1.0, before)
    torch.testing.assert_close(before.sum(0), torch.ones(image.shape[1:]), rtol=0, atol=1e-5)


def test_tta_and_ensemble_are_means_over_the_same_loop(net, image):
    common = {"roi_size": ROI, "sw_batch_size": 2, "device": "cpu", "progress": False}
    single = Predictor(net, **common)
    base = single.predict_probabilities(image)
    flipped = _reference(single.model, torch.flip(image, (2,)), 2, 0.5)  # type: ignore[arg-type]
    tta = Predictor(net, tta=True, tta_axes=(1,), **common).predict_probabilities(image)  # spatial axis 1 = dim 2
    torch.testing.assert_close(tta, (base + torch.flip(flipped, (2,))) / 2, rtol=0, atol=1e-5)
    pair = Predictor([net, net], **common).predict_probabilities(image)
    torch.testing.assert_close(pair, base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("classes", [1, 2, 5, 300])
def test_channel_argmax_is_torchs_argmax_ties_included(classes):
    """The label map of the per-class pass equals ``torch.argmax`` (first maximum on ties), on values coarse enough
    that most voxels hold ties, in the dtype the class count needs."""
    from ultralight3d.inference import channel_argmax

    gen = torch.Generator().manual_seed(classes)
    prob = torch.randint(0, 3, (classes, 7, 6, 5), generator=gen).float() / 2
    label = channel_argmax(prob)
    assert label.shape == prob.shape[1:]
    assert label.dtype == (torch.uint8 if classes <= 256 else torch.int64)
    assert torch.equal(label.long(), torch.argmax(prob, dim=0))
    if classes > 1:
        assert len(torch.unique(label)) > 1


@pytest.mark.parametrize("onehot", [None, 4])
def test_channel_argmaxd_is_monais_asdiscreted_and_keeps_what_invertd_needs(onehot):
    """The bundles' argmax transform gives MONAI's ``AsDiscreted(argmax=True[, to_onehot])`` output (values, shape,
    float dtype) and keeps the MetaTensor's meta data and applied operations, so ``Invertd`` still maps the label
    back through a flip to the input grid."""
    from monai.data import MetaTensor
    from monai.transforms import AsDiscreted, Compose, Flipd, Invertd

    from ultralight3d.transforms import ChannelArgmaxd

    gen = torch.Generator().manual_seed(1)
    image = MetaTensor(torch.randn(1, 6, 5, 4, generator=gen), affine=torch.eye(4))
    pre = Compose([Flipd(keys="image", spatial_axis=0)])
    data = pre({"image": image})
    scores = torch.randint(0, 3, (4, 6, 5, 4), generator=gen).float() / 2  # ties in most voxels
    pred = MetaTensor(scores, meta=dict(data["image"].meta), applied_operations=list(data["image"].applied_operations))
    want = AsDiscreted(keys="pred", argmax=True, to_onehot=onehot)({"pred": pred.clone()})["pred"]
    got = ChannelArgmaxd(keys="pred", to_onehot=onehot)({"pred": pred, "image": data["image"]})
    assert isinstance(got["pred"], MetaTensor) and got["pred"].dtype == torch.float32
    assert torch.equal(got["pred"].as_tensor(), want.as_tensor().float())
    assert got["pred"].applied_operations == pred.applied_operations and len(got["pred"].applied_operations) == 1
    if onehot is None:
        inv = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=True)(got)["pred"]
        assert torch.equal(inv.as_tensor(), torch.flip(want.as_tensor().float(), dims=(1,)))
