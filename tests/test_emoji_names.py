"""Name retrieval: a sample is named when a real image of its name is among its nearest real images."""

import pytest
import torch

from diffusion_lib.data.emoji import load_emoji
from diffusion_lib.evaluation.emoji_names import build_reference, name_retrieval, style_ceiling
from diffusion_lib.models.emoji_classifier import EmojiClassifier, EmojiClassifierConfig


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return build_reference(EmojiClassifier(EmojiClassifierConfig(8, 95, width=8)))  # untrained: any features do


def test_real_images_retrieve_their_own_name_and_shuffled_names_do_not(reference):
    real = load_emoji("all")
    chosen = torch.randperm(len(real), generator=torch.Generator().manual_seed(1))[:200]
    prompts = [real.prompts[i] for i in chosen]
    result = name_retrieval(real.images[chosen], prompts, reference)
    assert result["top1"].method == "exact"
    for j in (~result["hits1"]).nonzero().flatten().tolist():  # each finds itself at distance 0, or a twin:
        i = int(chosen[j])                                     # OpenMoji draws "mechanic" as "man mechanic"
        twins = (real.images - real.images[i]).flatten(1).abs().amax(1) == 0
        assert {real.prompts[t] for t in twins.nonzero().flatten().tolist()} - {real.prompts[i]}
    assert result["top1"].value >= 0.98
    assert result["hits5"].all() and len(result["train_hits1"]) + len(result["test_hits1"]) == 200
    shuffled = name_retrieval(real.images[chosen], prompts[1:] + prompts[:1], reference, ks=(1,))
    assert shuffled["top1"].value < 0.05
    with pytest.raises(ValueError, match="prompts must name each of the 200 samples, got 199 names"):
        name_retrieval(real.images[chosen], prompts[1:], reference)
    with pytest.raises(ValueError, match=r"prompts must be emoji names \(as prompts\), got \['a purple cow'\]"):
        name_retrieval(real.images[:1], ["a purple cow"], reference)


def test_the_ceiling_queries_one_style_against_the_other_four():
    torch.manual_seed(0)
    classifier = EmojiClassifier(EmojiClassifierConfig(8, 95, width=8))
    ceiling = style_ceiling(classifier, "emojione", ks=(1, 5))
    queries = int((load_emoji("all").style == 4).sum())
    assert len(ceiling["hits1"]) == queries == 1096
    assert len(ceiling["train_hits1"]) + len(ceiling["test_hits1"]) == queries
    assert ceiling["top1"].value <= ceiling["top5"].value <= 1  # more neighbours, more hits
    with pytest.raises(ValueError, match="held_style must be one of"):
        style_ceiling(classifier, "apple")
