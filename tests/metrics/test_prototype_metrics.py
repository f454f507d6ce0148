import numpy as np
import pytest
import torch

from sparsex.errors import InputError
from sparsex.metrics import (
    Accuracy,
    GlobalSize,
    LocalSize,
    LocalSizeAllClasses,
    OCLAScore,
    ZeroWeightFraction,
    accuracy,
    classes_above_histogram,
    global_size,
    local_size,
    local_size_all_classes,
    ocla_score,
    prototype_metrics,
    zero_weight_fraction,
)
from sparsex.metrics.prototype import GlobalSizeUsed, LocalSizeTrueClass, ocla_shift, prototype_sizes

# K = 2 classes, P = 4 prototypes; eps = 1e-3 throughout.
W = torch.tensor(
    [
        [0.5, 0.0, 0.0005, 0.2],
        [0.0, 0.3, 0.0, 0.0002],
    ]
)
# N = 3 images
S = torch.tensor(
    [
        [1.0, 1.0, 10.0, 0.001],
        [0.0, 2.0, 1.0, 0.01],
        [0.004, 0.0, 0.0, 1.0],
    ]
)
PREDICTED = torch.tensor([0, 1, 0])


def test_global_size():
    # max_c W[c, p] = [0.5, 0.3, 0.0005, 0.2]: three exceed 1e-3
    assert global_size(W) == 3
    assert global_size(W, eps=0.25) == 2  # 0.5, 0.3
    assert global_size(W, eps=0.0) == 4
    assert GlobalSize()(W) == 3.0


def test_local_size():
    # image 0, class 0: s * W0 = [0.5, 0, 0.005, 0.0002]  -> 2
    # image 1, class 1: s * W1 = [0, 0.6, 0, 0.000002]    -> 1
    # image 2, class 0: s * W0 = [0.002, 0, 0, 0.2]       -> 2
    sizes = local_size(S, W, PREDICTED)
    assert sizes.tolist() == [2, 1, 2] and sizes.dtype == torch.int64
    assert LocalSize()(S, W, PREDICTED) == pytest.approx(5 / 3)
    assert local_size(S, W, PREDICTED, eps=0.1).tolist() == [1, 1, 1]


# The two definitions on 2 prototypes x 2 classes (powers of two: every product is exact).
# importances s[n, p] W[c, p]:
#   image 0, class 0: [0.5, 0.0625]    class 1: [0, 0.125]
#   image 1, class 0: [0.125, 0.125]   class 1: [0, 0.25]
W2 = torch.tensor([[0.5, 0.125], [0.0, 0.25]])
S2 = torch.tensor([[1.0, 0.5], [0.25, 1.0]])
PREDICTED2, LABELS2 = torch.tensor([0, 1]), torch.tensor([1, 0])


def test_local_size_two_definitions():
    # predicted (sparsex), > 0.125: image 0 class 0 -> [0.5] -> 1; image 1 class 1 -> [0.25] -> 1
    assert local_size(S2, W2, PREDICTED2, eps=0.125).tolist() == [1, 1]
    # true (ProtoS-ViT), >= 0.125: image 0 class 1 -> [0.125] -> 1; image 1 class 0 -> [0.125, 0.125] -> 2
    assert local_size(S2, W2, eps=0.125, target="true", labels=LABELS2).tolist() == [1, 2]
    assert LocalSizeTrueClass(0.125)(S2, W2, LABELS2) == 1.5
    # threshold 0 (compute_model_stats' default): importances > 0 count
    assert local_size(S2, W2, eps=0.0, target="true", labels=LABELS2).tolist() == [1, 2]
    # above 0.125 only image 1's class 0 (nothing) and image 0's class 1 (nothing) are left
    assert local_size(S2, W2, eps=0.2, target="true", labels=LABELS2).tolist() == [0, 0]


def test_global_size_two_definitions():
    # weights (sparsex): max_c W = [0.5, 0.25]
    assert global_size(W2, eps=0.125) == 2 and global_size(W2, eps=0.3) == 1
    # used (ProtoS-ViT), true-class importances >= t on some image: t = 0.125 -> p1 (image 0), p0 and p1 (image 1)
    assert global_size(W2, 0.125, rule="used", scores=S2, labels=LABELS2) == 2
    assert global_size(W2, 0.2, rule="used", scores=S2, labels=LABELS2) == 0  # no true-class importance reaches 0.2
    # with labels = predictions: image 0 class 0 [0.5, 0.0625], image 1 class 1 [0, 0.25]
    assert global_size(W2, 0.2, rule="used", scores=S2, labels=PREDICTED2) == 2
    assert global_size(W2, 0.3, rule="used", scores=S2, labels=PREDICTED2) == 1
    assert GlobalSizeUsed(0.3)(S2, W2, PREDICTED2) == 1.0
    assert not LocalSizeTrueClass.higher_is_better and not GlobalSizeUsed.higher_is_better


def test_prototype_sizes_without_labels():
    # unlabelled images: the true-class sizes are left out, the others measured as with labels
    # (local_size_all at 0.125: s * max_c W = [0.5, 0.0625] and [0.125, 0.25] -> 1 and 1)
    with_labels = prototype_sizes(S2, W2, PREDICTED2, LABELS2, eps=1e-3, contribution_eps=0.125)
    assert with_labels == {"local_size": 1.0, "local_size_all": 1.0, "global_size": 2.0, "local_size_true": 1.5,
                           "global_size_used": 2.0}
    assert prototype_sizes(S2, W2, PREDICTED2, None, eps=1e-3, contribution_eps=0.125) == {
        "local_size": 1.0, "local_size_all": 1.0, "global_size": 2.0}


def official_model_stats(scores: np.ndarray, weights: np.ndarray, labels: np.ndarray, threshold: float) -> tuple:
    """hturbe/protosvit src/shared_utils/utils_experiments.py compute_model_stats (local and global
    size), transcribed; ``importance`` as NonNegLinear.forward builds it (train=False)."""
    importance = np.einsum("bp,cp->bpc", scores, weights)
    if threshold > 0:
        importance[importance < threshold] = 0
    class_importance = importance[np.arange(importance.shape[0]), :, labels]
    local_size = (class_importance > 0).sum(axis=1).mean()
    global_size = ((class_importance > 0).sum(axis=0) > 0).sum()
    return local_size, global_size


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3])
def test_sizes_match_an_independent_port(threshold):
    gen = torch.Generator().manual_seed(int(threshold * 10))
    scores = torch.rand(64, 20, generator=gen)
    weights = torch.rand(6, 20, generator=gen) * (torch.rand(6, 20, generator=gen) < 0.3)  # sparse, non-negative
    labels = torch.randint(0, 6, (64,), generator=gen)
    port_local, port_global = official_model_stats(scores.numpy(), weights.numpy(), labels.numpy(), threshold)
    ours = local_size(scores, weights, eps=threshold, target="true", labels=labels).double().mean().item()
    assert ours == pytest.approx(port_local, abs=1e-5)
    assert global_size(weights, threshold, rule="used", scores=scores, labels=labels) == port_global
    assert 0 < port_global < 20 or threshold == 0.0  # the threshold matters for some prototype


def test_local_size_all_classes():
    # max_c W[c, p] = [0.5, 0.3, 0.0005, 0.2]; s[p] * that:
    # image 0: [0.5, 0.3, 0.005, 0.0002] -> 3
    # image 1: [0, 0.6, 0.0005, 0.002]   -> 2
    # image 2: [0.002, 0, 0, 0.2]        -> 2
    assert local_size_all_classes(S, W).tolist() == [3, 2, 2]
    assert LocalSizeAllClasses()(S, W) == pytest.approx(7 / 3)


def test_local_size_all_classes_is_literal_for_signed_inputs():
    # s = -1 with weights [0.5, -0.2]: the products are [-0.5, 0.2], one exceeds eps
    assert local_size_all_classes(torch.tensor([[-1.0]]), torch.tensor([[0.5], [-0.2]])).tolist() == [1]
    gen = torch.Generator().manual_seed(0)
    scores, weights = torch.randn(7, 9, generator=gen), torch.randn(4, 9, generator=gen) * 0.01
    literal = (torch.relu(scores[:, None, :] * weights[None] - 1e-3).sum(dim=1) > 0).sum(dim=1)
    assert torch.equal(local_size_all_classes(scores, weights), literal)


PROBS = torch.tensor(
    [
        [0.9, 0.1, 0.2],  # target 0: one class above, the true one      -> counts
        [0.6, 0.7, 0.1],  # target 1: two classes above                  -> no
        [0.2, 0.3, 0.8],  # target 0: one class above, but a wrong one   -> no
        [0.1, 0.2, 0.3],  # target 2: none above                         -> no
        [0.5, 0.4, 0.51],  # target 2: 0.5 is not above t; 0.51 is true  -> counts
    ]
)
PROB_TARGETS = torch.tensor([0, 1, 0, 2, 2])


def test_ocla_score_and_histogram():
    assert ocla_score(PROBS, PROB_TARGETS) == pytest.approx(2 / 5)
    assert OCLAScore()(PROBS, PROB_TARGETS) == pytest.approx(2 / 5)
    # classes above 0.5 per image: [1, 2, 1, 0, 1]
    assert classes_above_histogram(PROBS) == [1, 3, 1]
    assert classes_above_histogram(PROBS, max_bins=2) == [1, 4]  # last bin: 1 or more
    assert classes_above_histogram(PROBS, max_bins=5) == [1, 3, 1, 0, 0]
    # t = 0.25: above per image [1, 2, 2, 1, 3]; OCLA holds for images 0 (class 0) and 3 (class 2)
    assert classes_above_histogram(PROBS, threshold=0.25) == [0, 2, 2, 1]
    assert ocla_score(PROBS, PROB_TARGETS, threshold=0.25) == pytest.approx(2 / 5)


def test_ocla_shift_hand_computed():
    # t = 0.5 (tau = 0): image b counts for shifts d in (-z_by, -max_{k != y} z_bk]
    logits = torch.tensor([[2.0, 1.0, -3.0],     # (-2, -1]
                           [0.5, -1.0, -2.0],    # (-0.5, 1]
                           [-1.0, -2.0, -1.5],   # (1, 1.5]
                           [1.0, 3.0, 0.0],      # wrong top class: never
                           [-0.5, 0.0, -4.0]])   # target 1: (0, 0.5]
    targets = torch.tensor([0, 0, 0, 0, 1])
    assert ocla_score(torch.sigmoid(logits), targets) == pytest.approx(1 / 5)  # image 1 alone
    # stretches between interval ends hold 1, 0, 1, 2, 1, 1 images: (0, 0.5) is the best, d its middle
    shift, score = ocla_shift(logits, targets)
    assert shift == pytest.approx(0.25) and score == pytest.approx(2 / 5)
    assert ocla_score(torch.sigmoid(logits + shift), targets) == pytest.approx(score)
    # equal counts: the wider stretch wins ((-1, 1) over (5, 6))
    assert ocla_shift(torch.tensor([[1.0, -1.0], [-5.0, -6.0]]), torch.tensor([0, 0])) == (pytest.approx(0.0), 0.5)
    # another threshold: the score at the shift is the OCLA score there
    shift, score = ocla_shift(logits, targets, threshold=0.25)
    assert ocla_score(torch.sigmoid(logits + shift), targets, threshold=0.25) == pytest.approx(score) == pytest.approx(2 / 5)
    assert ocla_shift(torch.tensor([[0.0, 1.0]]), torch.tensor([0])) == (0.0, 0.0)  # no image right: no shift
    with pytest.raises(InputError, match="at least 2 classes"):
        ocla_shift(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0], [0.0, 5.0, 1.0]])
    # arg-max [0, 2, 0 (tie goes to the lower index), 1] against [0, 2, 1, 1]: 3 of 4
    assert accuracy(logits, torch.tensor([0, 2, 1, 1])) == 0.75
    assert Accuracy()(logits, torch.tensor([0, 2, 1, 1])) == 0.75


def test_zero_weight_fraction():
    # |W| < 1e-3: row 0 has 0.0 and 0.0005, row 1 has 0.0, 0.0, 0.0002 -> 5 of 8
    assert zero_weight_fraction(W) == 0.625
    assert ZeroWeightFraction()(W) == 0.625
    assert zero_weight_fraction(-W) == 0.625  # absolute values
    assert zero_weight_fraction(W, eps=0.0) == 0.0


def test_prototype_metrics_and_inputs_are_not_mutated():
    logits = torch.tensor([[2.0, -1.0], [-1.0, 1.0], [0.5, 0.0]])  # arg-max = PREDICTED
    probs = torch.sigmoid(logits)  # [[.88, .27], [.27, .73], [.62, .5]]
    targets = torch.tensor([0, 1, 1])
    before = [t.clone() for t in (S, W, logits, probs)]
    result = prototype_metrics(S, W, logits, probs, targets)
    assert result == {
        "accuracy": pytest.approx(2 / 3),
        "abstention": 0.0,
        "local_size": pytest.approx(5 / 3),
        # true classes [0, 1, 1]: image 0 [0.5, 0.005] -> 2, image 1 [0.6] -> 1, image 2 [0.0002] -> 0
        "local_size_true": pytest.approx(1.0),
        "local_size_all": pytest.approx(7 / 3),
        "global_size": 3.0,
        "global_size_used": 3.0,  # p0, p1 (0.6), p2 (0.005); p3 never reaches 1e-3 for the true class
        "ocla_score": pytest.approx(2 / 3),  # image 2: only class 0 (0.62) above, target 1
        "classes_above_t_histogram": [0, 3],
        "zero_weight_fraction": 0.625,
    }
    assert all(isinstance(v, (float, list)) for v in result.values())
    assert all(torch.equal(a, b) for a, b in zip(before, (S, W, logits, probs)))


def test_score_directions():
    assert not GlobalSize.higher_is_better and not LocalSize.higher_is_better and not LocalSizeAllClasses.higher_is_better
    assert OCLAScore.higher_is_better and Accuracy.higher_is_better and ZeroWeightFraction.higher_is_better
    assert LocalSize(eps=0.01) == LocalSize(eps=0.01) and "eps=0.01" in repr(LocalSize(eps=0.01))


NAN_S = S.clone()
NAN_S[1, 2] = float("nan")
INF_W = W.clone()
INF_W[0, 0] = float("inf")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: local_size(S[:, :3], W, PREDICTED), "scores have 3 prototypes but weights have 4"),
        (lambda: local_size_all_classes(S, W[:, :3]), "scores have 4 prototypes but weights have 3"),
        (lambda: local_size(S, W, PREDICTED[:2]), "predicted must have shape (3,)"),
        (lambda: local_size(S, W, torch.tensor([0, 2, 0])), "class index 2, out of range for 2 classes"),
        (lambda: local_size(S, W, PREDICTED.float()), "integer dtype"),
        (lambda: local_size(NAN_S, W, PREDICTED), "scores contain NaN"),
        (lambda: global_size(INF_W), "weights contain Inf"),
        (lambda: global_size(W[0]), "weights must have shape (K, P)"),
        (lambda: global_size(W, eps=-1.0), "eps must be"),
        (lambda: zero_weight_fraction(W.long()), "floating-point"),
        (lambda: ocla_score(PROBS, PROB_TARGETS[:4]), "targets must have shape (5,)"),
        (lambda: ocla_score(PROBS * 2, PROB_TARGETS), "probs must lie in [0, 1]"),
        (lambda: ocla_score(PROBS, PROB_TARGETS, threshold=1.0), "threshold must be in (0, 1)"),
        (lambda: classes_above_histogram(PROBS, max_bins=0), "max_bins must be"),
        (lambda: accuracy(PROBS, torch.tensor([0, 1, 3, 0, 0])), "class index 3, out of range for 3 classes"),
        (lambda: accuracy(PROBS, [0, 1, 2, 0, 0]), "targets must be a torch.Tensor"),
        (lambda: prototype_metrics(S, W, torch.zeros(3, 3), torch.zeros(3, 3), PREDICTED), "logits have 3 classes but weights have 2"),
        (lambda: prototype_metrics(S, W, torch.zeros(2, 2), torch.zeros(2, 2), PREDICTED), "same number of images, got 3, 2 and 2"),
        (lambda: prototype_metrics(S, W, torch.zeros(3, 2), torch.full((3, 2), float("nan")), PREDICTED), "probs contain NaN"),
        (lambda: LocalSize(eps=float("nan")), "eps must be"),
        (lambda: local_size(S, W, PREDICTED, target="label"), "local size target must be one of 'predicted', 'true'"),
        (lambda: local_size(S, W, PREDICTED, target="true"), "local size target 'true' needs labels=, the true labels"),
        (lambda: local_size(S, W), "local size target 'predicted' needs predicted=, the predicted classes"),
        (lambda: global_size(W, rule="used"), "global size rule 'used' needs the test images' scores and labels"),
        (lambda: global_size(W, rule="all"), "global size rule must be one of 'weights', 'used'"),
        (lambda: global_size(W, rule="used", scores=S, labels=PREDICTED[:2]), "labels must have shape (3,)"),
        (lambda: OCLAScore(threshold=0.0), "threshold must be in (0, 1)"),
    ],
)
def test_invalid_inputs(call, message):
    with pytest.raises(InputError) as err:
        call()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_accuracy_counts_a_tie_of_all_classes_as_wrong():
    """The issue's case: all-zero logits argmax to class 0, which is the label, yet nothing decided."""
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 1.0], [1.0, 1.0, 0.0]])
    targets = torch.tensor([0, 1, 0])
    assert accuracy(logits, targets) == pytest.approx(2 / 3)  # the partial tie of image 2 still decides (class 0)
    assert Accuracy()(logits, targets) == pytest.approx(2 / 3)
