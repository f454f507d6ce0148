import pytest
import torch

from sparsex.errors import InputError
from sparsex.metrics import Abstention, abstains, accuracy_with_abstentions, metric_info
from sparsex.train.heads import evaluate_head

# Five images, three classes (hand-computed):
#   0: all logits 0, label 0   -> abstains; the arg-max (class 0) matches the label but counts wrong
#   1: all logits 7, label 1   -> abstains, wrong
#   2: [2, 1, 0],   label 0    -> correct
#   3: [1, 1, 0],   label 1    -> a tie of two classes only: not an abstention; arg-max 0, wrong
#   4: [0, 3, 3],   label 2    -> a tie of two classes only: arg-max 1, wrong
LOGITS = torch.tensor([[0.0, 0.0, 0.0], [7.0, 7.0, 7.0], [2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 3.0, 3.0]])
LABELS = torch.tensor([0, 1, 0, 1, 2])


def test_hand_computed_accuracy_and_abstention():
    assert abstains(LOGITS).tolist() == [True, True, False, False, False]
    assert accuracy_with_abstentions(LOGITS, LABELS) == {"accuracy": pytest.approx(1 / 5), "abstention": pytest.approx(2 / 5)}
    assert float((LOGITS.argmax(dim=1) == LABELS).double().mean()) == pytest.approx(2 / 5)  # plain arg-max: image 0 counted
    assert Abstention()(LOGITS) == pytest.approx(2 / 5)


def test_a_class_without_evidence_no_longer_scores_91_percent():
    # The report's case, in small: 3 classes, 12 test images; the 4 images of class 0 have all-zero
    # logits; 7 of the other 8 are right. Plain arg-max: 4 + 7 = 11/12 = 91.7%; with abstentions 7/12.
    logits = torch.zeros(12, 3)
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    logits[4:8, 1] = 2.0
    logits[8:12, 2] = 2.0
    logits[11] = torch.tensor([0.0, 5.0, 2.0])  # one class-2 image called class 1
    assert float((logits.argmax(dim=1) == labels).double().mean()) == pytest.approx(11 / 12)
    assert accuracy_with_abstentions(logits, labels) == {"accuracy": pytest.approx(7 / 12),
                                                         "abstention": pytest.approx(4 / 12)}


def test_one_class_never_abstains_and_probabilities_work_too():
    assert accuracy_with_abstentions(torch.tensor([[0.3], [0.0]]), torch.tensor([0, 0])) == {"accuracy": 1.0,
                                                                                           "abstention": 0.0}
    probs = torch.softmax(LOGITS, dim=1)  # equal logits give exactly equal probabilities
    assert accuracy_with_abstentions(probs, LABELS) == accuracy_with_abstentions(LOGITS, LABELS)


def test_the_registry_knows_the_key():
    info = metric_info("abstention")
    assert info.direction == "lower" and info.category == "accuracy" and Abstention.higher_is_better is False
    assert metric_info("test_abstention").direction == "lower"


@pytest.mark.parametrize(("logits", "labels", "message"), [
    (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), "logits contain NaN"),
    (torch.tensor([0.0, 1.0]), torch.tensor([0]), "logits must have shape (N, K)"),
    (torch.zeros(2, 3, dtype=torch.long), torch.tensor([0, 1]), "floating-point"),
    (torch.zeros(2, 3), torch.tensor([0, 3]), "class index 3, out of range for 3 classes"),
    (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), "integer dtype"),
    (torch.zeros(2, 3), torch.tensor([0]), "shape (2,)"),
])
def test_bad_input_is_one_line(logits, labels, message):
    with pytest.raises(InputError) as error:
        accuracy_with_abstentions(logits, labels)
    assert message in str(error.value) and "\n" not in str(error.value)


class ZeroEvidenceHead(torch.nn.Module):
    """Stands in for a prototype head: prototype p scores feature p; class weights W = I, except that
    class 0 has no prototype at all, so an image with no evidence for classes 1 and 2 gets all-zero logits."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a device for predict

    def class_weights(self) -> torch.Tensor:
        return torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=1)

    def forward(self, features: torch.Tensor):
        from sparsex.models.base import PrototypeOutput

        scores = features.flatten(1)
        logits = scores @ self.class_weights().T
        return PrototypeOutput(logits=logits, scores=scores, maps=features, locations=torch.zeros_like(scores).long())


def test_every_prototype_head_reports_the_abstentions():
    from sparsex.features import FeatureCache

    features = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]).view(4, 2, 1, 1)
    labels = torch.tensor([0, 0, 1, 2])  # images 0 and 1 abstain with the "right" arg-max 0
    cache = FeatureCache(path=None, key={}, features=features, labels=labels, indices=torch.arange(4), classes=["a", "b", "c"])
    metrics = evaluate_head(ZeroEvidenceHead(), cache)
    assert list(metrics)[:2] == ["accuracy", "abstention"]
    assert metrics["accuracy"] == pytest.approx(0.5) and metrics["abstention"] == pytest.approx(0.5)
    assert metrics["local_size"] == pytest.approx(0.5)  # the other metrics are still there
