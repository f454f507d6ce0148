"""Data-parallel training under torchrun: 2 CPU processes (gloo) against one process.

The module launches ``python -m torch.distributed.run --standalone --nproc_per_node 2 <this file>
WORK`` once; run as that script (the ``__main__`` part) this file is the worker. The workers train
a linear head with the generic loop, finish a feature cache left half-built, and run SIDE, the
probe classifier and VSC; the tests compare each result with the same work done in this process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from sparsex import create_dataset, distributed
from sparsex.backbones import create_backbone
from sparsex.errors import SparsexError
from sparsex.features import extract_features
from sparsex.train.classifier import ClassifierTrainConfig, train_classifier
from sparsex.train.dictionary import DictionaryTrainConfig, train_dictionary
from sparsex.train.loop import train_epochs
from sparsex.train.side import SIDETrainConfig, train_side
from sparsex.train.vsc import VSCTrainConfig, _check_distributed_batch, _rank_slice, train_vsc

LINEAR_SIZES = (63, 65)  # the last global batch of 16 splits 8/7 over the 2 ranks, or is 1 item (rank 1 has none)
PARTS = {"image_size": 32, "train_size": 45, "test_size": 24}  # 45 = 2 x 16 + 13: a last batch split 7/6
SIDE = dict(data="parts", data_options=PARTS, backbone="small-cnn", expanded_channels=6, pretrain_epochs=2,
            finetune_epochs=1, calibrate_epochs=1, prune_k=2, batch_size=16, gallery_k=2)
PROBE = dict(data="parts", data_options=PARTS, backbone="small-cnn", mode="probe", epochs=2, batch_size=16)
VSC = dict(data="digits", latent_dim=8, hidden_dim=32, epochs=2, batch_size=40, warmup_epochs=1, probe_max_iter=50)
DICTIONARY = dict(data="parts", data_options=PARTS, backbone="small-cnn", method="topk", atoms=8, k=2, epochs=2, min_cover=0.1)
TRAINERS = {"side": (train_side, SIDETrainConfig, SIDE), "probe": (train_classifier, ClassifierTrainConfig, PROBE),
            "vsc": (train_vsc, VSCTrainConfig, VSC),
            "dictionary": (train_dictionary, DictionaryTrainConfig, DICTIONARY)}
CACHE_SHARDS = 4  # 20 items in shards of 5: rank 0 extracts shards 0 and 2, rank 1 shards 1 and 3


def train_linear(n: int) -> tuple[nn.Module, list[float]]:
    """A linear classifier on ``n`` random 8-d features, 2 epochs of global batches of 16."""
    generator = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, 8, generator=generator), torch.randint(0, 4, (n,), generator=generator)
    torch.manual_seed(0)
    model = nn.Linear(8, 4)
    history = train_epochs(model, lambda out, labels, _epoch: F.cross_entropy(out, labels), x, y, epochs=2, lr=0.05,
                           batch_size=16, seed=3, progress=False)
    return model, history


def extract_cache(root: Path):
    data = create_dataset("parts", split="train", image_size=32, train_size=20)
    return extract_features(data, create_backbone("small-cnn"), root, batch_size=4, shard_size=5, progress=False)[0]


def worker(work: Path) -> None:
    """What every rank runs; results a rank returns (not files the trainers write) go to
    ``WORK/<what>-rank<r>.*``."""
    rank = int(os.environ["RANK"])
    for n in LINEAR_SIZES:
        model, history = train_linear(n)
        save_file({**model.state_dict(), "history": torch.tensor(history)}, work / f"linear-{n}-rank{rank}.safetensors")
    extract_cache(work / "cache")
    for name, (train, config_class, settings) in TRAINERS.items():
        final = train(config_class(**settings), work / name / "run", progress=False)
        (work / f"{name}-rank{rank}.json").write_text(json.dumps(final))


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """One torchrun launch of 2 gloo workers on a half-built feature cache: ``(work folder, the
    cache's complete features from one process, stat of the shards left in place)``."""
    work = tmp_path_factory.mktemp("ddp")
    reference = extract_cache(work / "cache")
    (reference.path / "manifest.json").unlink()
    for i in (1, 2):  # one shard of each rank is missing
        (reference.path / f"shard-{i:05d}.safetensors").unlink()
    kept = {i: os.stat(reference.path / f"shard-{i:05d}.safetensors").st_mtime_ns for i in (0, 3)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, str(work)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return work, reference, kept


@pytest.mark.parametrize("n", LINEAR_SIZES)
def test_two_processes_train_the_same_weights_as_one(launched, n):
    work, _, _ = launched
    model, history = train_linear(n)
    ranks = [load_file(work / f"linear-{n}-rank{r}.safetensors") for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # the ranks never drift apart
    for key, value in model.state_dict().items():
        torch.testing.assert_close(ranks[0][key], value, atol=1e-5, rtol=0)
    torch.testing.assert_close(ranks[0]["history"], torch.tensor(history), atol=1e-5, rtol=0)


def test_feature_cache_built_in_parallel_resumes_a_half_built_one(launched):
    work, reference, kept = launched
    assert {i: os.stat(reference.path / f"shard-{i:05d}.safetensors").st_mtime_ns for i in (0, 3)} == kept
    cache = extract_cache(work / "cache")  # a hit now
    assert len(list(cache.path.glob("shard-*.safetensors"))) == CACHE_SHARDS
    torch.testing.assert_close(cache.features, reference.features)
    assert torch.equal(cache.indices, torch.arange(20)) and torch.equal(cache.labels, reference.labels)


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["side", "probe", "dictionary"])  # a dictionary: the fit runs on every rank alike
def test_trainer_on_two_processes_writes_one_run_with_the_same_metrics(launched, tmp_path, name):
    work, _, _ = launched
    train, config_class, settings = TRAINERS[name]
    single = train(config_class(**settings), tmp_path / "run", progress=False)
    finals = [json.loads((work / f"{name}-rank{r}.json").read_text()) for r in (0, 1)]
    assert finals[0] == finals[1] == json.loads((work / name / "run" / "metrics.json").read_text())["final"]
    assert [p.name for p in (work / name).iterdir()] == ["run"]
    assert _files(work / name / "run") == _files(tmp_path / "run")  # the same files, no stray temporaries
    assert finals[0].keys() == single.keys()
    for key, value in single.items():
        if key.endswith("_s"):  # a duration (the dictionary's train_s), not a result
            continue
        assert finals[0][key] == (pytest.approx(value, abs=1e-5, nan_ok=True) if isinstance(value, float) else value), key


def test_vsc_on_two_processes(launched, tmp_path):
    """VSC's JSD term is measured within each rank's slice, so the run is close to one process's, not equal."""
    work, _, _ = launched
    finals = [json.loads((work / f"vsc-rank{r}.json").read_text()) for r in (0, 1)]
    assert finals[0] == finals[1] and finals[0]["epoch"] == 2
    assert [p.name for p in (work / "vsc" / "run" / "stages").iterdir()] == ["2-epoch2"]
    assert 0 < finals[0]["train_loss"] < float("inf") and 0 <= finals[0]["probe_accuracy"] <= 1


def test_a_single_process_has_no_process_group():
    batches = list(distributed.local_batches(torch.arange(10), 4))
    assert [b.indices.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert all(b.weight == 1.0 and b.count == len(b.indices) for b in batches)
    assert distributed.world_size() == 1 and distributed.is_main() and not distributed.init("cpu")
    assert distributed.all_reduce_sum({"a": 1, "b": 2.5}) == {"a": 1.0, "b": 2.5}
    assert distributed.main_only(lambda x: x + 1, 1) == 2 and distributed.from_main(lambda: 3) == 3


@pytest.mark.parametrize("size", [16, 13, 1])
def test_weighted_slices_average_to_the_global_mean(monkeypatch, size):
    """(1/N) sum_r weight_r mean(loss on slice r) is the global batch's mean loss, whatever the sizes."""
    losses = torch.rand(size, dtype=torch.float64)
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    parts = []
    for r in range(4):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        (part,) = distributed.local_batches(torch.arange(size), 16)
        parts.append(part)
    assert sorted(i for p in parts if p.count for i in p.indices.tolist()) == list(range(size))  # a partition
    average = sum(p.weight * losses[p.indices].mean() for p in parts) / 4
    assert float(average) == pytest.approx(float(losses.mean()), abs=1e-12)


def test_global_batch_must_split_evenly(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(SparsexError, match="batch_size 15 is the global batch and must split evenly over 2 processes"):
        distributed.check_batch_size(15)
    with pytest.raises(SparsexError, match="VSC on 2 processes needs 2 images of each of the 10 classes on every "
                                           "process: batch_size >= 40, got 30"):
        _check_distributed_batch(VSCTrainConfig(**{**VSC, "batch_size": 30}), torch.arange(100) % 10)


def test_vsc_ranks_get_same_class_pairs(monkeypatch):
    """A class-balanced global batch (4 or 5 images of each of 10 classes) split over 2 ranks."""
    labels = torch.arange(200) % 10
    batch = [i for i in range(200) if labels[i] < 5][:25] + [i for i in range(200) if labels[i] >= 5][:20]
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    slices = []
    for r in range(2):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        slices.append(_rank_slice(batch, labels))
    assert sorted(torch.cat(slices).tolist()) == sorted(batch)
    assert all(labels[s].bincount(minlength=10).min() >= 2 for s in slices)


def test_launcher_environment_is_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SparsexError, match="WORLD_SIZE=2 but RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set; launch with torchrun"):
        distributed.init("cpu")


@pytest.mark.parametrize("settings, pattern", [
    ({"device": "gpu0"}, "unknown device 'gpu0'"),
    ({"amp": "yes"}, "amp must be true or false"),
] + ([] if torch.cuda.is_available() else [({"device": "cuda"}, "torch finds no CUDA GPU on this machine")]))
def test_bad_device_and_amp_settings(settings, pattern):
    for config_class, base in ((SIDETrainConfig, SIDE), (VSCTrainConfig, VSC)):
        with pytest.raises(SparsexError, match=pattern):
            config_class(**{**base, **settings})


def test_mixed_precision_trains_on_the_cpu(tmp_path):
    final = train_classifier(ClassifierTrainConfig(**{**PROBE, "amp": True}), tmp_path / "run", progress=False)
    assert 0 < final["train_loss"] < float("inf")


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
