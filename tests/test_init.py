"""What importing sparsex does: registers, and tunes OpenMP and malloc unless the user chose otherwise."""

import os
import subprocess
import sys


def spin_counts_after_import(*envs: dict[str, str]) -> list[str]:
    """GOMP_SPINCOUNT as a fresh interpreter sees it after ``import sparsex``, one process per
    environment (started together: each spends its seconds importing torch)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = "import sparsex, os; print(os.environ.get('GOMP_SPINCOUNT', '-'))"
    processes = [subprocess.Popen([sys.executable, "-c", code], env={**clean, **env}, stdout=subprocess.PIPE, text=True)
                 for env in envs]
    outputs = [process.communicate(timeout=120)[0].strip() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    return outputs


def test_a_short_openmp_spin_unless_the_user_set_one():
    assert spin_counts_after_import({}, {"GOMP_SPINCOUNT": "5"}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"SPARSEX_TUNE": "0"}) == [
        "1000", "5", "-", "-"]


def test_tune_leaves_the_users_settings_and_an_imported_torch_alone(monkeypatch):
    import torch  # noqa: F401  (imported: OpenMP is loaded, its spin can no longer change)

    from sparsex import runtime

    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert runtime.tune() == []
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    applied = runtime.tune()
    assert not any("GOMP" in a for a in applied)
    assert applied == ([] if runtime.platform.libc_ver()[0] != "glibc" else [applied[0]])


def test_the_part_world_is_registered_on_import():
    import sparsex

    assert "parts" in sparsex.list_datasets() and "minimal-mask" in sparsex.list_explainers()
    assert {"side", "infodisent", "protosvit", "classifier", "minimal-mask", "vsc"} <= set(sparsex.list_trainers())
