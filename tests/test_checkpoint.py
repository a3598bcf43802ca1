"""``ultralight3d.checkpoint``: the one reader of trained weights (every checkpoint kind, refusals), the model card."""

from __future__ import annotations

import json

import pytest
import torch

from ultralight3d import create_model
from ultralight3d.checkpoint import (
    MODEL_CARD_FORMAT,
    ModelCard,
    load_state_dict,
    load_weights,
    model_card_path,
    read_model_card,
    write_model_card,
)
from ultralight3d.errors import UserInputError
from ultralight3d.labels import LabelTable


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("ultralight_unet3d_t", in_channels=1, out_channels=3)


@pytest.mark.parametrize("kind", ["plain", "model", "state_dict", "network", "ddp", "compiled"])
def test_every_checkpoint_kind_loads(net, tmp_path, kind):
    state = net.state_dict()
    obj = {
        "plain": state,
        "model": {"model": state, "optimizer": {"state": {}}, "iteration": 7},
        "state_dict": {"state_dict": state},
        "network": {"network": state},
        "ddp": {f"module.{k}": v for k, v in state.items()},
        "compiled": {f"_orig_mod.{k}": v for k, v in state.items()},
    }[kind]
    torch.save(obj, tmp_path / "c.pt")
    got = load_state_dict(tmp_path / "c.pt")
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in state)
    other = create_model("ultralight_unet3d_t", in_channels=1, out_channels=3)
    assert load_weights(other, tmp_path / "c.pt") is other
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), state.values(), strict=True))


def test_refusals_are_one_line_naming_the_file(net, tmp_path):
    with pytest.raises(UserInputError, match=r"checkpoint .*missing\.pt not found; train the bundle first") as info:
        load_state_dict(tmp_path / "missing.pt")
    # the fix is named for both ways of running: the CLI option and the bundle setting
    assert "--checkpoint PATH" in str(info.value) and "--ckpt_path PATH" in str(info.value)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserInputError, match=r"garbage\.pt cannot be read \(.*\); pass a \.pt file") as info:
        load_state_dict(tmp_path / "garbage.pt")
    assert "\n" not in str(info.value)
    torch.save({"model": net}, tmp_path / "pickled.pt")  # a whole module is code, not weights
    with pytest.raises(
        UserInputError,
        match=r"pickled\.pt cannot be read \(UnpicklingError: Weights only load "
        r"failed.*\); .*a pickled module or optimizer object is refused",
    ):
        load_state_dict(tmp_path / "pickled.pt")
    torch.save({"epoch": 3}, tmp_path / "other.pt")
    with pytest.raises(UserInputError, match=r"other\.pt is not a model state dict"):
        load_state_dict(tmp_path / "other.pt")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key].view(-1)[-1] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    with pytest.raises(UserInputError) as info:
        load_state_dict(tmp_path / "inf.pt")
    assert str(info.value) == (
        f"checkpoint {tmp_path / 'inf.pt'} has non-finite weights in 1 of {len(state)} "
        f"tensors (first: {key}); training diverged: use an earlier checkpoint or re-train"
    )
    torch.save(net.state_dict(), tmp_path / "t.pt")
    with pytest.raises(UserInputError) as info:
        load_weights(create_model("ultralight_unet3d_s", in_channels=1, out_channels=3), tmp_path / "t.pt")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"checkpoint {tmp_path / 't.pt'} does not fit the network (size mismatch")


def test_model_card_round_trip(tmp_path):
    ckpt = tmp_path / "models" / "model.pt"
    ckpt.parent.mkdir()
    assert model_card_path(ckpt) == tmp_path / "models" / "model.json" and read_model_card(ckpt) is None
    table = LabelTable.from_names({1: "PZ", 2: "TZ"})
    card = ModelCard(
        model_name="ultralight_unet3d_s",
        network_kwargs={"spatial_dims": 3, "in_channels": 2, "out_channels": 3},
        in_channels=2,
        out_channels=3,
        channel_names=["T2", "ADC"],
        labels=table.to_records(),
        protocol="prostate",
        patch_size=[96, 96, 64],
        val_mean_dice=0.8,
    )
    path = write_model_card(ckpt, card)
    data = json.loads(path.read_text())
    assert data["format"] == MODEL_CARD_FORMAT and data["version"] and data["created"]
    back = read_model_card(ckpt)
    assert back == card and back.class_names == {1: "PZ", 2: "TZ"}
    assert LabelTable.from_records(back.labels).names == table.names
    with pytest.raises(UserInputError, match="already exists"):
        write_model_card(ckpt, card, overwrite=False)
    data["future_key"] = 1
    path.write_text(json.dumps(data))
    assert read_model_card(ckpt).extra == {"future_key": 1}
    path.write_text(json.dumps({"format": MODEL_CARD_FORMAT, "model_name": "x"}))
    with pytest.raises(UserInputError, match=r"model\.json lacks network_kwargs, in_channels, out_channels"):
        read_model_card(ckpt)
    path.write_text("[1, 2]")
    with pytest.raises(UserInputError, match="is not a JSON object"):
        read_model_card(ckpt)
