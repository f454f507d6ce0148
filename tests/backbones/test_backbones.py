import pytest
import torch
from safetensors.torch import save_file

from sparsex.backbones import create_backbone, list_backbones
from sparsex.errors import CheckpointError, InputError, SparsexError, UnknownNameError


def test_registered_names():
    assert {"lite0", "small-cnn"} <= set(list_backbones())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown backbone 'lite9'.*lite0, small-cnn.*timm"):
        create_backbone("lite9")


def test_random_initialisation_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = create_backbone("small-cnn"), create_backbone("small-cnn"), create_backbone("small-cnn", seed=1)
    assert torch.rand(1) == expected_next
    assert a.weights_sha256() == b.weights_sha256() != c.weights_sha256()


def test_small_cnn_shapes_and_info():
    bb = create_backbone("small-cnn")
    assert bb.info.channels == 64 and bb.info.stride == 4 and bb.info.feature_size == (7, 7)
    feats = bb.extract(torch.rand(5, 1, 28, 28))
    assert feats.shape == (5, 64, 7, 7)
    assert not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.model.training  # frozen backbones stay in eval mode


def test_vit_tokens_become_a_grid_without_class_and_register_tokens():
    bb = create_backbone("vit_tiny_patch16_224", image_size=64, reg_tokens=2)
    assert bb.info.kind == "vit" and bb.info.prefix_tokens == 3 and bb.info.stride == 16
    x = bb.preprocess(torch.rand(2, 3, 64, 64))
    tokens = bb.model.forward_features(x)  # (B, 3 + 16, 192)
    grid = bb(x)
    assert grid.shape == (2, 192, 4, 4)
    # patch token t sits at grid (t // 4, t % 4)
    assert torch.equal(grid[:, :, 1, 2], tokens[:, 3 + 1 * 4 + 2, :])


def test_other_patch_models_get_the_asked_input_size():
    bb = create_backbone("deit_tiny_distilled_patch16_224", image_size=32)
    assert bb.info.kind == "vit" and bb.info.prefix_tokens == 2 and bb.info.input_size == (32, 32)
    assert bb.extract(torch.rand(1, 3, 32, 32)).shape == (1, 192, 2, 2)


def test_vit_wrong_input_size_names_needed_size():
    bb = create_backbone("vit_tiny_patch16_224", image_size=64)
    with pytest.raises(InputError, match="needs 64x64 inputs.*got 32x32"):
        bb(torch.rand(1, 3, 32, 32))
    # preprocess resizes and converts grey to RGB instead
    assert bb.extract(torch.rand(1, 1, 32, 32)).shape == (1, 192, 4, 4)


def test_intermediate_layer_of_a_cnn():
    bb = create_backbone("resnet18", layer=1, image_size=64)
    assert bb.info.channels == 64 and bb.info.stride == 4
    assert bb.extract(torch.rand(1, 3, 64, 64)).shape == (1, 64, 16, 16)


def test_nan_and_bad_shapes_are_refused():
    bb = create_backbone("small-cnn")
    x = torch.rand(2, 1, 28, 28)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="contain NaN"):
        bb.extract(x)
    with pytest.raises(InputError, match=r"shape \(B, C, H, W\)"):
        bb.extract(torch.rand(28, 28))
    with pytest.raises(InputError, match="floating-point"):
        bb.extract(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))


def test_pretrained_without_bundled_weights_asks_for_a_file():
    with pytest.raises(SparsexError, match="never downloads.*weights=PATH"):
        create_backbone("resnet18", pretrained=True)


def test_local_weight_file_round_trip_and_mismatch(tmp_path):
    source = create_backbone("resnet18", image_size=32)
    state = {k: v.clone() for k, v in source.model.state_dict().items() if not k.startswith("fc.")}
    save_file(state, str(tmp_path / "r18.safetensors"))  # headless, like DINO-style exports
    loaded = create_backbone("resnet18", weights=tmp_path / "r18.safetensors", image_size=32)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(source.extract(x), loaded.extract(x))
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "r18.pth")
    assert torch.equal(create_backbone("resnet18", weights=tmp_path / "r18.pth", image_size=32).extract(x), source.extract(x))

    with pytest.raises(CheckpointError, match="does not match the model; missing keys: layer1.2"):
        create_backbone("resnet34", weights=tmp_path / "r18.safetensors")
    save_file({**state, "conv1.weight": torch.zeros(8, 3, 7, 7)}, str(tmp_path / "narrow.safetensors"))
    with pytest.raises(CheckpointError, match=r"shape mismatch for 1 tensors: conv1.weight \(8, 3, 7, 7\) vs \(64, 3, 7, 7\)"):
        create_backbone("resnet18", weights=tmp_path / "narrow.safetensors")
    bad = dict(state)
    bad.pop("layer1.0.conv1.weight")
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: layer1.0.conv1.weight"):
        create_backbone("resnet18", weights=tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt or not a weight file"):
        create_backbone("resnet18", weights=tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="weights file not found"):
        create_backbone("resnet18", weights=tmp_path / "absent.safetensors")


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "resnet18"])
def test_layer_out_of_range_names_the_valid_range(name):
    with pytest.raises(SparsexError, match=r"layer of backbone .* \(it has \d+ feature levels; .*\) must be an integer in \[0, \d+\], got 99"):
        create_backbone(name, layer=99, image_size=32)
