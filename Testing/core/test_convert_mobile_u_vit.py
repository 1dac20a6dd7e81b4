"""Official Mobile U-ViT / MobileUtr checkpoints: every official tensor lands in our network exactly once, the renaming
table inverts exactly, and files of the wrong variant, with a missing tensor or with pickled objects are refused.

No official weights exist (see ``shared/reference/models/mobile_u_vit.md`` section 13), so the state dicts here are
synthesised from the official key listings (every key with its official shape, random values).
"""

from __future__ import annotations

import pickle

import pytest
import torch
from official_keys import official_state_dict
from safetensors.torch import save_file

from MobileUViTSegmentLib.conversion import get_format, list_formats
from MobileUViTSegmentLib.conversion.loading import load_official_state_dict
from MobileUViTSegmentLib.conversion.mobile_u_vit_formats import (
    ADAPTIVE_LGL_PREFIX,
    LKLGL_PREFIX,
    official_to_ours,
    ours_to_official,
)
from MobileUViTSegmentLib.errors import WeightsError
from MobileUViTSegmentLib.models import create_model

# format, listing, (prefix in the listing, prefix of the format): MobileUtr-S has no listing of its own; it is the 2D
# S listing with the 2024 prefix, which is the only difference the reference documents.
FORMATS = [
    ("mobileuvit_2d_s_official", "mobileuvit_2d_S.txt", None),
    ("mobileuvit_2d_l_official", "mobileuvit_2d_L.txt", None),
    ("mobileuvit_3d_s_official", "mobileuvit_3d_S.txt", None),
    ("mobileuvit_3d_l_official", "mobileuvit_3d_L.txt", None),
    ("mobileutr_l_2024_official", "mobileutr_2024_L.txt", None),
    ("mobileutr_s_2024_official", "mobileuvit_2d_S.txt", (LKLGL_PREFIX, ADAPTIVE_LGL_PREFIX)),
]


def test_every_mobile_u_vit_format_is_registered():
    assert {name for name, _, _ in FORMATS} <= set(list_formats())


@pytest.mark.parametrize("name, listing, rename", FORMATS)
def test_official_checkpoint_loads_strictly_using_every_tensor_once(name, listing, rename):
    official = official_state_dict(listing, rename)
    official_format = get_format(name)
    converted = official_format.convert(official)
    network = create_model(official_format.architecture, **official_format.config_for(official))
    network.load_state_dict(converted, strict=True)
    assert len(converted) == len(official)
    assert sum(t.numel() for t in converted.values()) == sum(t.numel() for t in official.values())
    # Every official tensor is the source of exactly one of ours (matched by value: the values are random).
    sources = dict(official)
    for ours, tensor in converted.items():
        source = sources.pop(ours_to_official(ours, official_format_prefix(name)))
        assert torch.equal(source, tensor), ours
    assert not sources


def official_format_prefix(name: str) -> str:
    return ADAPTIVE_LGL_PREFIX if name.startswith("mobileutr") else LKLGL_PREFIX


@pytest.mark.parametrize("name, listing, rename", FORMATS)
def test_inverse_table_names_exactly_the_official_keys(name, listing, rename):
    official = official_state_dict(listing, rename)
    official_format = get_format(name)
    ours = create_model(official_format.architecture, **official_format.config_for(official)).state_dict()
    prefix = official_format_prefix(name)
    assert {ours_to_official(key, prefix) for key in ours} == set(official)
    assert all(official_to_ours(ours_to_official(key, prefix), prefix) == key for key in ours)


def test_round_trip_through_official_names_keeps_the_network_output():
    torch.manual_seed(0)
    source = create_model("mobileuvit_s", spatial_dims=2).eval()
    for module in source.modules():  # non-trivial norm statistics, so a swapped BN would show in the output
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    official = {ours_to_official(key): value.clone() for key, value in source.state_dict().items()}
    official_format = get_format("mobileuvit_2d_s_official")
    target = create_model("mobileuvit_s", **official_format.config_for(official)).eval()
    target.load_state_dict(official_format.convert(official), strict=True)
    sample = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(sample), target(sample))


def test_channels_follow_the_checkpoint_head_and_stem():
    official = official_state_dict("mobileuvit_3d_S.txt")
    assert get_format("mobileuvit_3d_s_official").config_for(official) == {
        "spatial_dims": 3, "in_channels": 1, "out_channels": 14}
    official["head.weight"] = torch.randn(3, 16, 1, 1, 1)
    official["head.bias"] = torch.randn(3)
    official_format = get_format("mobileuvit_3d_s_official")
    config = official_format.config_for(official)
    assert config["out_channels"] == 3
    create_model("mobileuvit_s", **config).load_state_dict(official_format.convert(official), strict=True)


def test_wrong_variant_is_refused_naming_the_key_and_shapes():
    official = official_state_dict("mobileuvit_2d_L.txt")
    with pytest.raises(ValueError, match=r"'transformer_bottleneck\.3\.SelfAttn\..*' has no place in mobileuvit_s "
                                         r"\(2D\).*L variant"):
        get_format("mobileuvit_2d_s_official").convert(official)
    official = {key: value for key, value in official.items() if not key.startswith("transformer_bottleneck.3.")}
    with pytest.raises(ValueError, match=r"'patch_embeddings\.stem\.0\.weight' has shape \(32, 3, 3, 3\).*"
                                         r"expects \(16, 3, 3, 3\)"):
        get_format("mobileuvit_2d_s_official").convert(official)


def test_missing_tensor_is_refused_naming_it():
    official = official_state_dict("mobileuvit_2d_S.txt")
    del official["transformer_bottleneck.1.SelfAttn.attn.qkv.bias"]
    with pytest.raises(ValueError, match=r"lacks 1 tensor.*'transformer_bottleneck\.1\.SelfAttn\.attn\.qkv\.bias'"):
        get_format("mobileuvit_2d_s_official").convert(official)


def test_unknown_key_and_wrong_prefix_are_refused():
    official = official_state_dict("mobileuvit_2d_S.txt")
    with pytest.raises(ValueError, match=r"official key 'lklgl_bottleneck\.0\.LocalAgg\.pos_embed\.(weight|bias)'"):
        get_format("mobileutr_s_2024_official").convert(official)  # 2025 names given to the 2024 format
    official["decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="'decoder.extra.weight' is not part of"):
        get_format("mobileuvit_2d_s_official").convert(official)


def test_3d_listing_is_refused_as_2d_and_vice_versa():
    with pytest.raises(ValueError, match="has shape"):
        get_format("mobileuvit_2d_s_official").convert(official_state_dict("mobileuvit_3d_S.txt"))
    with pytest.raises(ValueError):
        get_format("mobileuvit_3d_s_official").convert(official_state_dict("mobileuvit_2d_S.txt"))


# ----------------------------------------------------------------------------------------------- safe file reading


def small_state() -> dict[str, torch.Tensor]:
    return {"head.weight": torch.randn(2, 3), "head.bias": torch.randn(2)}


@pytest.mark.parametrize("wrapper", [
    lambda state: state,
    lambda state: {"state_dict": state, "epoch": 7, "best_iou": 0.8},
    lambda state: {"model": {f"module.{key}": value for key, value in state.items()}, "optimizer": {}},
    lambda state: {f"_orig_mod.{key}": value for key, value in state.items()},
])
def test_usual_checkpoint_wrappers_are_unwrapped(tmp_path, wrapper):
    state = small_state()
    torch.save(wrapper(state), tmp_path / "checkpoint.pth")
    loaded = load_official_state_dict(tmp_path / "checkpoint.pth")
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_safetensors_checkpoint_is_read(tmp_path):
    state = small_state()
    save_file(state, str(tmp_path / "checkpoint.safetensors"))
    assert load_official_state_dict(tmp_path / "checkpoint.safetensors").keys() == state.keys()


class Payload:
    """An object whose unpickling would run code: weights-only loading must refuse to build it."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_an_arbitrary_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with path.open("wb") as stream:
        pickle.dump({"state_dict": small_state(), "payload": Payload()}, stream, protocol=2)
    torch.save({"state_dict": small_state(), "payload": Payload()}, tmp_path / "evil_torch.pth")
    for candidate in (path, tmp_path / "evil_torch.pth"):
        with pytest.raises(WeightsError, match="holds more than tensors"):
            load_official_state_dict(candidate)
    assert "this must never run" not in capsys.readouterr().out


def test_files_without_a_state_dict_are_refused(tmp_path):
    torch.save({"epoch": 3, "notes": "no tensors"}, tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="no state dict"):
        load_official_state_dict(tmp_path / "empty.pth")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    with pytest.raises(WeightsError, match="unknown suffix"):
        load_official_state_dict(tmp_path / "weights.h5")
    (tmp_path / "broken.pth").write_bytes(b"not a zip or pickle")
    with pytest.raises(WeightsError):
        load_official_state_dict(tmp_path / "broken.pth")
