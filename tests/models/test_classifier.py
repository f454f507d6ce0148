import pytest
import torch

from sparsex.errors import InputError, SparsexError
from sparsex.models import create_model


def test_linear_probe_pools_then_projects():
    probe = create_model("linear-probe", in_channels=2, num_classes=3)
    with torch.no_grad():
        probe.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]))
        probe.linear.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))
    features = torch.tensor([[[[1.0, 3.0]], [[2.0, 2.0]]]])  # (1, 2, 1, 2): channel means 2 and 2
    assert probe(features).tolist() == [[2.0, 2.5, 0.0]]


def test_linear_probe_bad_input():
    with pytest.raises(SparsexError, match="num_classes must be a positive integer, got 0"):
        create_model("linear-probe", in_channels=2, num_classes=0)
    with pytest.raises(InputError, match=r"linear probe head expects features \(B, 2, h, w\)"):
        create_model("linear-probe", in_channels=2, num_classes=3)(torch.zeros(1, 3, 2, 2))


def test_load_image_classifier_gives_the_plain_classifier_and_refuses_other_families(digits_classifier, tmp_path):
    from sparsex.checkpoint import save_checkpoint
    from sparsex.errors import CheckpointError, SparsexError
    from sparsex.explainers import create_explainer
    from sparsex.models.classifier import ImageClassifier, PrototypeClassifier, load_image_classifier

    run, _ = digits_classifier
    model, checkpoint = load_image_classifier(run)
    assert isinstance(model, ImageClassifier) and not isinstance(model, PrototypeClassifier) and checkpoint.family == "classifier"
    with pytest.raises(SparsexError, match="needs a prototype model"):
        create_explainer("prototypes", model)
    save_checkpoint(tmp_path / "vsc", {"w": torch.zeros(1)}, "vsc", {"model": {"name": "vsc"}})
    with pytest.raises(CheckpointError, match="is a 'vsc' model, not an image classifier"):
        load_image_classifier(tmp_path / "vsc")
