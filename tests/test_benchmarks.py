"""Every benchmark runs in --quick mode and writes the JSON keys the benchmark journal quotes
(slow: ``python -m pytest -q -m slow``)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("script, keys, extra", [
    ("parts_generation.py", ["parts.images_per_s", "parts.images_per_s_with_masks_written"], []),
    ("feature_cache.py", ["cache.epoch_s_cached", "cache.epoch_s_recomputed", "cache.speedup"], []),
    ("side_parts.py", ["side.global_size", "infodisent.global_size", "time_s.side"], ["--cache", "{tmp}/cache"]),
    ("protosvit_parts.py", ["protosvit.global_size", "ablation.hs0.global_size", "time_s.protosvit"],
     ["--cache", "{tmp}/cache"]),
    ("tune_side.py", ["infodisent.accuracy.mean", "grid.hoyer0p05_margin0p1.local_size.mean", "~chosen.worst_slack",
                      "chosen.hoyer_weight", "chosen.ocla_margin"], ["--cache", "{tmp}/cache", "--worlds", "100", "--clutter", "3"]),
    ("tune_protosvit.py", ["probe.accuracy.mean", "grid.official_e20.local_size.mean", "grid.vote_e40.draw1.global_size.mean",
                           "~chosen.worst_slack", "chosen.epochs"],
     ["--cache", "{tmp}/cache", "--worlds", "100", "--clutter", "3", "--draws", "0", "1"]),
    ("minimal_mask.py", ["fmnist.mask.images_per_s", "parts.speedup.vs_ig", "parts.circuit.edges", "fmnist.perimage.deletion_auc",
                         "fmnist.gradient_decoder.deletion_auc", "parts.speedup.gradient_decoder_vs_ig"],
     ["--cache", "{tmp}/cache"]),
    ("eval_parts.py", ["protocol.forward_passes", "protocol.overhead_ratio", "protocol.forward_ratio", "lite0.ig.bi", "side.prototypes.consistency"],
     ["--cache", "{tmp}/cache"]),
    ("vsc_fashion.py", ["vsc.bce", "aligned.bce", "vsc.jsd_within", "aligned.jsd_within", "time_s.aligned"],
     ["--cache", "{tmp}/cache"]),
    ("ddp_scaling.py", ["ddp.images_per_s.np1", "ddp.images_per_s.np2", "ddp.speedup"], []),
    ("circuit_faithfulness.py", ["fmnist.eval_images", "~fmnist.circuit.sufficiency_label", "~fmnist.circuit.necessity_drop",
                                 "~fmnist.circuit.random_drop", "~parts.circuit.sufficiency_logit", "parts.circuit.calibrated.images",
                                 "~fmnist.circuit.attribution.sufficiency_label", "~parts.circuit.attribution_top_k.sufficiency_label",
                                 "~fmnist.circuit.attribution_share.sufficiency_label", "fmnist.circuit.attribution.cut_sufficient",
                                 "~parts.circuit.activation_sufficient.necessity_drop"],
     ["--cache", "{tmp}/cache"]),
    ("dictionaries_parts.py", ["topk.recovery_auroc", "mp.fvu", "supervised.recovery_auroc", "batchtopk.l0",
                              "~batchtopk.variant_control", "~supervised.variant_control", "~matryoshka.recovered_distinct",
                              "~supervised.recovered_distinct"],
     ["--cache", "{tmp}/cache"]),
    ("explain_throughput.py", ["gradcam.captum_images_per_s", "gradcam.attribute_images_per_s", "~gradcam.attribute_overhead",
                              "~gradcam.command_overhead"], []),
    ("shared_machine.py", ["after.idle.extract", "before.loaded.head_step", "ratio.after.extract.loaded_vs_idle",
                           "speedup.loaded.extract.after_vs_before"], ["--jobs", "1"]),
])
def test_benchmark_quick_run(tmp_path, script, keys, extra):
    if script in ("vsc_fashion.py", "minimal_mask.py", "circuit_faithfulness.py"):
        from sparsex.data.idx import FASHION_MNIST_ROOT, find_idx_files

        if None in find_idx_files(FASHION_MNIST_ROOT, "train").values():
            pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    out = tmp_path / "result.json"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    subprocess.run([sys.executable, str(BENCHMARKS / script), "--out", str(out), "--quick", *extra], check=True,
                   capture_output=True, timeout=600, cwd=BENCHMARKS)
    result = json.loads(out.read_text())
    assert result["quick"] is True and script in result["command"]
    assert {"cores", "torch", "device", "cpu", "cpu_capability"} <= result["machine"].keys()
    for key in keys:  # "~KEY": a figure that may be 0 or negative in quick mode (a tiny untrained model): present, finite
        if key.startswith("~"):
            assert isinstance(result[key[1:]], (int, float)) and math.isfinite(result[key[1:]]), key
        else:
            assert result[key] > 0, key
    if script == "side_parts.py":  # every key the README and the issue quote is there
        for key in ["side.accuracy", "side.local_size", "side.local_size_all", "side.ocla_score", "infodisent.accuracy",
                    "infodisent.local_size", "ablation.asl.zero_weight_fraction", "ablation.bce.zero_weight_fraction",
                    "ablation.ocla0.ocla_score", "ablation.ocla200.ocla_score"]:
            assert 0 <= result[key] <= (1 if "size" not in key else 10_000), key
    if script == "vsc_fashion.py":  # every key the issue and the README quote is there
        for key in ["vsc.active_dims", "vsc.probe_accuracy", "aligned.active_dims", "aligned.probe_accuracy",
                    "aligned.footwear_corr_within", "aligned.footwear_corr_across"]:
            assert -1 <= result[key] <= 64, key
        assert len(result["aligned.correlation_matrix"]) == 10 and isinstance(result["check.jsd_at_most_half"], bool)
        for figure in ["figure.traversals", "figure.correlation", "figure.gamma_heatmap"]:
            assert Path(result[figure]).is_file(), figure
    if script == "minimal_mask.py":  # an area of 0 is a real outcome (the blurred image alone keeps the label)
        for clf in ("fmnist", "parts"):
            for key in ("mask.area", "mask.sufficiency", "mask.sufficiency_at_10pct", "ig.sufficiency_at_10pct", "mask.deletion_auc",
                        "decoder.area", "decoder.sufficiency", "decoder.deletion_auc"):
                assert 0 <= result[f"{clf}.{key}"] <= 1, (clf, key)
            assert result[f"{clf}.decoder.parameters"] != result[f"{clf}.mask.parameters"]  # two architectures
            assert -1 <= result[f"{clf}.decoder.deletion_auc_minus_ig"] <= 1 and result[f"{clf}.decoder.deletion_auc_minus_ig_se"] >= 0
        for key in ("area", "sufficiency", "deletion_auc", "images_per_s"):
            assert result[f"fmnist.ablation.no_deletion.{key}"] >= 0, key
        for key in ("parts.area", "parts.sufficiency", "creature.area", "creature.sufficiency"):
            assert 0 <= result[f"parts.truth.{key}"] <= 1, key
        assert result["parts.truth.parts.area"] < result["parts.truth.creature.area"]  # the body is in the creature
        for key in ("fmnist.speedup.vs_ig", "parts.speedup.vs_ig", "fmnist.speedup.decoder_vs_ig", "parts.speedup.decoder_vs_ig"):
            rounds = result[f"{key}_rounds"]  # the speed-up vs. IG is the median of the back-to-back rounds
            assert len(rounds) == 3 and result[key] == sorted(rounds)[1]
        again = tmp_path / "again.json"  # --resume: the measured world is read back, not measured (or timed) again
        subprocess.run([sys.executable, str(BENCHMARKS / script), "--out", str(again), "--quick", "--resume", "--only", "parts",
                        *extra], check=True, capture_output=True, timeout=600, cwd=BENCHMARKS)
        parts = {k: v for k, v in result.items() if k.startswith("parts.")}
        assert {k: v for k, v in json.loads(again.read_text()).items() if k.startswith("parts.")} == parts
    if script == "eval_parts.py":  # every key the issue and the README quote, per row
        for row in ("lite0.ig", "lite0.gradcam", "side.prototypes", "protosvit.prototypes"):
            for key in ("accuracy", "bi", "completeness", "correctness", "contrastivity", "deletion_auc", "insertion_auc"):
                assert result[f"{row}.{key}"] is None or 0 <= result[f"{row}.{key}"] <= 1, (row, key)
        assert Path(result["report"]).is_file()
    if script == "protosvit_parts.py":
        for key in ["protosvit.accuracy", "protosvit.local_size", "probe.accuracy", "ablation.hs0.local_size"]:
            assert 0 <= result[key] <= (1 if "size" not in key else 10_000), key
