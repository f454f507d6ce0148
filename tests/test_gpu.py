"""What sparsex does on a CUDA GPU, end to end on tiny data (skipped without one; run by
benchmarks/gpu_check.sh where a GPU is lent): trainers with mixed precision, the mask explainer,
explanations of image files with every explainer, an evaluation."""

import json

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]

TINY = dict(data="parts", backbone="small-cnn", data_options={"image_size": 48, "train_size": 96, "test_size": 24},
            device="cuda")


def test_trainers_on_the_gpu_with_mixed_precision(tmp_path):
    import sparsex

    side = sparsex.train_model("side", tmp_path / "side", progress=False, amp=True, expanded_channels=6, prune_k=3,
                               pretrain_epochs=2, finetune_epochs=1, calibrate_epochs=1, **TINY)
    assert 0 <= side["accuracy"] <= 1
    clf = sparsex.train_model("classifier", tmp_path / "clf", progress=False, epochs=2, **TINY)
    assert 0 <= clf["test_accuracy"] <= 1
    mask = sparsex.train_model("minimal-mask", tmp_path / "mask", progress=False, model=str(tmp_path / "clf"),
                               device="cuda", train_limit=64, test_limit=16, epochs=1, width=4, calibrate=32)
    assert 0 <= mask["mask_area"] <= 1


def test_explanations_and_evaluation_on_the_gpu(tmp_path, digits_classifier):
    from sparsex.evaluate import EvaluateConfig, evaluate
    from sparsex.explain_files import ExplainFilesConfig, explain_files
    from sparsex.partworld import PartWorldConfig, write_parts_tree

    write_parts_tree(tmp_path / "world", PartWorldConfig(image_size=64, train_size=0, val_size=0, test_size=8), progress=False)
    summary = explain_files(ExplainFilesConfig(model="lite0-imagenet", images=str(tmp_path / "world" / "test"),
                                               explainers=["ig", "saliency", "gradcam", "occlusion", "per-image-mask"],
                                               explainer_settings={"ig": {"n_steps": 8}, "per-image-mask": {"steps": 5}},
                                               score=True, device="cuda"), tmp_path / "explained", progress=False)
    assert summary["images"] == 8 and set(summary["scores"]) == {"integrated-gradients", "saliency", "gradcam",
                                                                 "occlusion", "per-image-mask"}
    result = evaluate(EvaluateConfig(model=str(digits_classifier[0]), explainers=["saliency", "gradcam"], limit=16,
                                     device="cuda"), tmp_path / "eval", progress=False)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["rows"] == json.loads(json.dumps(result["rows"]))
