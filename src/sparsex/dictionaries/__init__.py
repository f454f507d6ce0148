"""Concept dictionaries on a backbone's cached activations, graded against the part world's ground truth.

- :mod:`~sparsex.dictionaries.methods`: :class:`Dictionary` (TopK, BatchTopK, JumpReLU and
  matching-pursuit SAEs, semi-NMF, PCA, ICA, k-means; the engine is ``overcomplete``,
  :mod:`~sparsex.dictionaries.engine`), :func:`patches` (samples of a feature cache);
- :mod:`~sparsex.dictionaries.concepts`: patch-level concepts from the part masks and the
  supervised reference dictionary;
- :mod:`~sparsex.dictionaries.grading`: AUROC / F1 concept recovery, purity, FVU, L0, dead atoms;
- :mod:`~sparsex.dictionaries.control`: swapping a part's variant in the activations;
- :mod:`~sparsex.dictionaries.evaluate`: all of it on a run's test split;
- :mod:`~sparsex.dictionaries.report`: ``sparsex analyze dictionary``'s page.

Trained with ``sparsex train dictionary`` (:mod:`sparsex.train.dictionary`).
"""

from .concepts import concept_names, dataset_concepts, patch_concepts, supervised_dictionary
from .grading import atom_purity, auroc_matrix, best_f1, concept_recovery, dead_fraction, fvu, mean_l0
from .methods import METHODS, Dictionary, fit_dictionary, patches

__all__ = ["METHODS", "Dictionary", "atom_purity", "auroc_matrix", "best_f1", "concept_names", "concept_recovery",
           "dataset_concepts", "dead_fraction", "fit_dictionary", "fvu", "mean_l0", "patch_concepts", "patches",
           "supervised_dictionary"]
