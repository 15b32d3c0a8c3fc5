"""Can a sample be named? Name retrieval among real emoji, in the reference classifier's features.

A sample drawn for a name is *retrieved* at k when a real image of that name is among its k nearest real images
(cosine distance between the reference's features, :func:`~diffusion_lib.metrics.retrieval_hits`). The real images
are every style of every emoji, training and held-out names alike (7,590), so a sample of a held-out name can be
retrieved too. Top-1 and top-5 rates are given with exact (Clopper–Pearson) intervals.

**The ceiling.** What would a real image the reference never saw score? :func:`style_ceiling` takes a reference
trained without one style (``emoji_reference_without_STYLE``) and lets each image of that style retrieve among the
other four styles: one style of an emoji retrieving its other four. A sample, which no classifier has seen either,
is measured against that ceiling, for training names and held-out names apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch

from diffusion_lib.checks import check_choice, check_int, check_tensor
from diffusion_lib.data.emoji import STYLES, EmojiSet, load_emoji
from diffusion_lib.metrics import Interval, binomial_interval, retrieval_hits
from diffusion_lib.models.emoji_classifier import EmojiClassifier
from diffusion_lib.pretrained import load

REFERENCE = "emoji_reference"
KS = (1, 5)


@dataclass(frozen=True)
class NameReference:
    """The real emoji as a classifier sees them.

    Attributes:
        classifier: the reference :class:`~diffusion_lib.models.emoji_classifier.EmojiClassifier`.
        real: every real emoji image (:func:`~diffusion_lib.data.emoji.load_emoji` "all", every style).
        features: (N, F) the classifier's features of ``real``.
        names: (N,) int64 index of each image's name (prompt) into ``prompts``.
        prompts: the distinct names, sorted.
        test_names: the names of the held-out (test) emoji.
    """

    classifier: EmojiClassifier
    real: EmojiSet
    features: torch.Tensor
    names: torch.Tensor
    prompts: tuple[str, ...]
    test_names: frozenset[str]


def embed(classifier: EmojiClassifier, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """The classifier's features (N, F) float32 on the CPU of images (N, 3, 32, 32), in eval mode."""
    was_training = classifier.training
    classifier.eval()
    with torch.no_grad():
        parts = [classifier.features(images[i:i + batch_size]).float().cpu() for i in range(0, len(images),
                                                                                              batch_size)]
    classifier.train(was_training)
    return torch.cat(parts)


def name_reference(classifier: EmojiClassifier | None = None) -> NameReference:
    """The :class:`NameReference` of ``classifier`` (None: the shipped ``emoji_reference``, computed once)."""
    return shipped_reference() if classifier is None else build_reference(classifier)


@cache
def shipped_reference() -> NameReference:
    """The :class:`NameReference` of the shipped ``emoji_reference``, computed once per process."""
    return build_reference(load(REFERENCE).model)


def build_reference(classifier: EmojiClassifier) -> NameReference:
    real = load_emoji("all")
    prompts = tuple(sorted(set(real.prompts)))
    index = {p: i for i, p in enumerate(prompts)}
    return NameReference(classifier=classifier, real=real, features=embed(classifier, real.images),
                         names=torch.tensor([index[p] for p in real.prompts]), prompts=prompts,
                         test_names=frozenset(load_emoji("test").prompts))


def name_retrieval(samples: torch.Tensor, prompts: list[str], reference: NameReference | None = None, *,
                   ks: tuple[int, ...] = KS) -> dict:
    """How often a sample drawn for a name is retrieved by it (see the module docstring).

    Args:
        samples: (N, 3, 32, 32) images in [-1, 1], on any device.
        prompts: N emoji names (as prompts, :attr:`~diffusion_lib.data.emoji.EmojiSet.prompts`), what each sample
            was drawn for.
        reference: from :func:`name_reference` (None: the shipped one).
        ks: the k of each rate.

    Returns:
        ``{"top{k}": Interval, "hits{k}": (N,) bool}`` for each k, over all the samples, and the same for the samples
        of training names and of held-out names apart (keys prefixed ``train_`` and ``test_``, where there are any).
    """
    check_tensor("samples", samples, ("N", 3, 32, 32), dtype="float")
    reference = name_reference() if reference is None else reference
    if len(prompts) != len(samples):
        raise ValueError(f"prompts must name each of the {len(samples)} samples, got {len(prompts)} names")
    unknown = sorted(set(prompts) - set(reference.prompts))
    if unknown:
        raise ValueError(f"prompts must be emoji names (as prompts), got {unknown[:3]}")
    index = {p: i for i, p in enumerate(reference.prompts)}
    labels = torch.tensor([index[p] for p in prompts])
    features = embed(reference.classifier, samples.detach().cpu().float())
    held = torch.tensor([p in reference.test_names for p in prompts])
    result = {}
    for k in ks:
        check_int("k", k, low=1)
        hits = retrieval_hits(features, labels, reference.features, reference.names, k=k)
        result.update(rates(hits, held, k))
    return result


def rates(hits: torch.Tensor, held: torch.Tensor, k: int) -> dict:
    """``top{k}`` (an exact :class:`~diffusion_lib.metrics.Interval`) and ``hits{k}`` of all the queries, and of
    those of training names (``train_``) and held-out names (``test_``, ``held`` True) apart where there are any."""
    out: dict[str, Interval | torch.Tensor] = {}
    for prefix, chosen in (("", torch.ones_like(held)), ("train_", ~held), ("test_", held)):
        if chosen.any():
            out[f"{prefix}top{k}"] = binomial_interval(int(hits[chosen].sum()), int(chosen.sum()))
            out[f"{prefix}hits{k}"] = hits[chosen]
    return out


def style_ceiling(classifier: EmojiClassifier, held_style: str, *, ks: tuple[int, ...] = KS) -> dict:
    """The ceiling of name retrieval: each real image of ``held_style`` (which ``classifier`` was not trained on)
    retrieves among the real images of the other styles, every emoji, by its name. Returns what
    :func:`name_retrieval` returns, for the held style's images."""
    check_choice("held_style", held_style, STYLES)
    real = load_emoji("all")
    prompts = sorted(set(real.prompts))
    index = {p: i for i, p in enumerate(prompts)}
    names = torch.tensor([index[p] for p in real.prompts])
    features = embed(classifier, real.images)
    style = STYLES.index(held_style)
    query, others = real.style == style, real.style != style
    test_names = set(load_emoji("test").prompts)
    held = torch.tensor([p in test_names for p, q in zip(real.prompts, query.tolist(), strict=True) if q])
    result = {}
    for k in ks:
        hits = retrieval_hits(features[query], names[query], features[others], names[others], k=k)
        result.update(rates(hits, held, k))
    return result
