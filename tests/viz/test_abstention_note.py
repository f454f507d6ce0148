import pytest
import torch

from sparsex.explainers.prototypes import ClassPrediction, PrototypeExplanation
from sparsex.viz import prototypes as viz_prototypes
from sparsex.viz.prototypes import ABSTAINS_NOTE, explanation_figure


def no_evidence(abstains: bool = True) -> PrototypeExplanation:
    """The report's case: three classes, every importance under the threshold, all logits 0."""
    return PrototypeExplanation(predictions=[ClassPrediction(c, 1 / 3, 0.0) for c in range(3)], target=0, logit=0.0,
                                bias=0.0, eps=1e-3, prototypes=[], image_size=(16, 16), feature_size=(2, 2),
                                abstains=abstains)


@pytest.fixture
def figure_texts(monkeypatch):
    """The texts of every figure explanation_figure saves (title first)."""
    saved: list[list[str]] = []

    class Recording(viz_prototypes.Figure):
        def savefig(self, *args, **kwargs):
            saved.append([self._suptitle.get_text()] + [t.get_text() for ax in self.axes for t in ax.texts])
            return super().savefig(*args, **kwargs)

    monkeypatch.setattr(viz_prototypes, "Figure", Recording)
    return saved


def test_an_abstaining_image_says_so(tmp_path, figure_texts):
    image = torch.rand(3, 16, 16)
    explanation_figure(no_evidence(), image, class_names=["a", "b", "c"], out=tmp_path / "abstains.png")
    explanation_figure(no_evidence(abstains=False), image, class_names=["a", "b", "c"], out=tmp_path / "plain.png")
    (title, *texts), (plain_title, *plain_texts) = figure_texts
    assert title.startswith(ABSTAINS_NOTE) and "0 contributing prototypes" in title
    assert any(text.startswith(ABSTAINS_NOTE) for text in texts)
    assert ABSTAINS_NOTE not in plain_title and not any(ABSTAINS_NOTE in text for text in plain_texts)
    assert (tmp_path / "abstains.png").stat().st_size > 0


def test_an_explanation_of_all_zero_logits_abstains():
    """A head whose every importance is under its threshold: the explanation (and its JSON) says it abstains."""
    from sparsex.backbones import create_backbone
    from sparsex.explainers.prototypes import PrototypeExplainer
    from sparsex.models import create_model

    backbone = create_backbone("small-cnn", image_size=8, in_chans=3, width=4, seed=0)
    head = create_model("protosvit", in_channels=backbone.info.channels, num_classes=3, num_prototypes=4, embed_dim=4,
                        importance_threshold=1e6).eval()
    explanation = PrototypeExplainer(head, backbone).explain(torch.rand(3, 8, 8))
    assert explanation.abstains and explanation.to_dict()["abstains"] is True
    head.config = type(head.config)(**{**head.config.to_dict(), "importance_threshold": 0.0})
    assert not PrototypeExplainer(head, backbone).explain(torch.rand(3, 8, 8)).abstains
