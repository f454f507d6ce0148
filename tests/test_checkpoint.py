import json

import pytest
import torch
from torch import nn

from sparsex.checkpoint import load_checkpoint, save_checkpoint
from sparsex.errors import CheckpointError, OutputExistsError


def test_round_trip_with_tied_weights(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 4))
    model[1].weight = nn.Parameter(model[0].weight.T.clone())
    path = save_checkpoint(tmp_path / "ck", model, "toy", {"hidden": 3})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    ck = load_checkpoint(path, family="toy")
    assert ck.config == {"hidden": 3} and ck.family == "toy" and ck.format_version == 1
    other = ck.load_into(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 4)))
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_refuses_existing_folder_unless_overwrite(tmp_path):
    save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), "toy", {})
    with pytest.raises(OutputExistsError):
        save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), "toy", {})
    save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), "toy", {"v": 2}, overwrite=True)
    assert load_checkpoint(tmp_path / "ck").config == {"v": 2}


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "ck", nn.Linear(3, 2), "toy", {"k": 1})


def test_wrong_family(checkpoint):
    with pytest.raises(CheckpointError, match="holds a 'toy' model, not a 'side' model"):
        load_checkpoint(checkpoint, family="side")


def test_mismatched_keys_and_shapes_are_named(checkpoint):
    ck = load_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match=r"shape mismatch .*weight \(2, 3\) vs \(2, 5\)"):
        ck.load_into(nn.Linear(5, 2))
    with pytest.raises(CheckpointError, match="missing keys: 0.bias, 0.weight.*unexpected keys: bias, weight"):
        ck.load_into(nn.Sequential(nn.Linear(3, 2)))


def test_corrupt_tensor_file_is_detected(checkpoint):
    data = bytearray((checkpoint / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (checkpoint / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its recorded hash"):
        load_checkpoint(checkpoint)


def test_garbage_tensor_file_without_hash(checkpoint):
    meta = json.loads((checkpoint / "config.json").read_text())
    del meta["model_sha256"]
    (checkpoint / "config.json").write_text(json.dumps(meta))
    (checkpoint / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(checkpoint)


def test_future_version_unknown_keys_and_bad_json(checkpoint):
    meta = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**meta, "later_field": 1}))
    with pytest.warns(UserWarning, match="ignoring unknown keys.*later_field"):
        load_checkpoint(checkpoint)
    (checkpoint / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99, newer"):
        load_checkpoint(checkpoint)
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(checkpoint)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_checkpoint(tmp_path / "empty")


def test_extra_json_files_are_written_with_the_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "ck", nn.Linear(2, 2), "toy", {}, extra_json={"metrics.json": {"acc": 0.5}})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]
    assert json.loads((path / "metrics.json").read_text()) == {"acc": 0.5}
    load_checkpoint(path, family="toy")
    for bad in ({"config.json": {}}, {"../x.json": {}}):
        with pytest.raises(CheckpointError, match="plain file names"):
            save_checkpoint(tmp_path / "bad", nn.Linear(2, 2), "toy", {}, extra_json=bad)
    assert not (tmp_path / "bad").exists()
