"""Nearest-neighbour metrics against cases whose answer is known: identical and disjoint sets, samples that cover half
of the modes, radii worked out by hand, a brute-force k-NN, labels that are the clusters or unrelated to them, and a
query that must not find itself."""

import math

import pytest
import torch

from diffusion_lib.metrics import bootstrap, manifold_membership, precision_recall, retrieval_hits

CORNERS = torch.tensor([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0], [50.0, 50.0]])   # 4 modes, 50 standard deviations apart


def _normal(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _modes(centres: torch.Tensor, per_mode: int, seed: int) -> torch.Tensor:
    """per_mode draws of N(c, I) around each centre c: (len(centres) · per_mode, D)."""
    return (centres[:, None] + _normal(len(centres), per_mode, centres.shape[1], seed=seed)).flatten(0, 1)


def test_identical_sets_have_precision_and_recall_one():
    """Every point is at distance 0 from itself, inside its own ball."""
    x = _normal(300, 8, seed=0)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)
    assert precision_recall(x.float(), x.float(), k=1) == (1.0, 1.0)


def test_far_apart_clouds_have_precision_and_recall_zero():
    """N(0, I) and N(100 · 1, I) in 4-D: the k-NN radii are a few units, the clouds 200 apart."""
    real, fake = _normal(300, 4, seed=1), 100 + _normal(200, 4, seed=2)
    assert precision_recall(real, fake) == (0.0, 0.0)


def test_samples_of_half_the_modes_are_precise_and_recall_half():
    """Real: 200 draws around each of 4 well-separated modes; fake: 200 fresh draws around 2 of them. The fake points
    lie where real points lie (precision ≈ 1), but the other 2 modes, half of the real points, are nowhere near a
    fake ball: recall <= 0.5, and nearly all real points of the covered modes fall inside (recall ≈ 0.5)."""
    real, fake = _modes(CORNERS, 200, seed=3), _modes(CORNERS[:2], 200, seed=4)
    precision, recall = precision_recall(real, fake)
    assert precision >= 0.95, precision
    assert 0.45 <= recall <= 0.5, recall
    far = manifold_membership(fake, real)[400:]                      # the real points of the 2 uncovered modes
    assert not far.any()


def test_hand_computed_radii_in_one_dimension():
    """Reference 0, 1, 10, 12. With k = 1 the radii are 1, 1, 2, 2: the manifold is [-1, 2] ∪ [8, 14], balls closed
    (2, 8 and 14 lie on a boundary). With k = 2 they are 10 (0's second neighbour is 10), 9, 9, 11: the union is
    [-10, 23]."""
    reference = torch.tensor([[0.0], [1.0], [10.0], [12.0]])
    queries = torch.tensor([[-1.5], [-1.0], [2.0], [2.5], [5.0], [8.0], [7.75], [14.0], [14.5]])
    inside_k1 = [False, True, True, False, False, True, False, True, False]
    assert manifold_membership(reference, queries, k=1).tolist() == inside_k1
    queries_k2 = torch.tensor([[-10.0], [-10.5], [23.0], [23.25], [5.0]])
    assert manifold_membership(reference, queries_k2, k=2).tolist() == [True, False, True, False, True]
    assert manifold_membership(reference, queries, k=1).dtype == torch.bool


def test_hand_computed_radii_in_two_dimensions_with_a_duplicate():
    """A 3 × 4 rectangle: each corner's nearest neighbour is 3 away. A duplicate of (0, 0) makes that corner's
    radius 0 at k = 1 (a duplicate is a neighbour at distance 0, not the point itself), and leaves the others at 3."""
    rectangle = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    queries = torch.tensor([[0.0, 3.0], [1.5, 2.0], [6.0, 4.0], [6.5, 4.0], [-3.0, 0.0], [-3.0, 0.5]])
    assert manifold_membership(rectangle, queries, k=1).tolist() == [True, True, True, False, True, False]
    doubled = torch.cat([rectangle, rectangle[:1]])
    near_origin = torch.tensor([[0.0, 0.0], [-0.5, 0.0], [0.0, 1.5]])   # (0, 1.5): 2.5 from (0, 4), radius 3
    assert manifold_membership(doubled, near_origin, k=1).tolist() == [True, False, True]


def test_membership_matches_a_brute_force_knn_and_chunking_changes_nothing():
    """Radii from a full sorted distance matrix with the diagonal removed, in a loop; chunk sizes 1, 7 and 1024."""
    reference, queries = _normal(53, 5, seed=5), 2 * _normal(41, 5, seed=6)
    k = 4
    distances = torch.cdist(reference, reference, compute_mode="donot_use_mm_for_euclid_dist")
    radii = torch.stack([distances[j][torch.arange(53) != j].sort().values[k - 1] for j in range(53)])
    to_reference = torch.cdist(queries, reference, compute_mode="donot_use_mm_for_euclid_dist")
    expected = (to_reference <= radii[None, :]).any(1)
    assert 0 < int(expected.sum()) < 41                               # a case with answers both ways
    for chunk_size in (1, 7, 1024):
        assert torch.equal(manifold_membership(reference, queries, k=k, chunk_size=chunk_size), expected)


def test_precision_and_recall_are_the_means_of_the_memberships_and_can_be_bootstrapped():
    real, fake = _normal(120, 3, seed=7), 1.0 + _normal(80, 3, seed=8)
    precision, recall = precision_recall(real, fake, k=5)
    assert precision == pytest.approx(float(manifold_membership(real, fake, k=5).double().mean()), abs=1e-15)
    assert recall == pytest.approx(float(manifold_membership(fake, real, k=5).double().mean()), abs=1e-15)
    interval = bootstrap(lambda hits: hits.double().mean(), manifold_membership(real, fake, k=5), resamples=100)
    assert interval.low <= precision <= interval.high
    assert 0 < precision < 1 and 0 < recall < 1


def _clusters(per_class: int, seed: int, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Points near 10 · e_c for class c in 5-D (directions apart, so cosine and Euclidean both separate them)."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    return 10 * torch.eye(classes, dtype=torch.float64)[labels] + _normal(len(labels), classes, seed=seed), labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 5])
def test_retrieval_finds_the_label_when_labels_are_the_clusters(metric, k):
    reference, reference_labels = _clusters(20, seed=9)
    queries, query_labels = _clusters(10, seed=10)
    hits = retrieval_hits(queries, query_labels, reference, reference_labels, k=k, metric=metric)
    assert hits.shape == (50,) and hits.dtype == torch.bool
    assert bool(hits.all())


@pytest.mark.parametrize("k", [1, 5])
def test_retrieval_with_unrelated_labels_sits_at_chance(k):
    """Labels drawn independently of the features, 10 equally frequent classes among 1,000 reference points: a
    query's label is among its k neighbours' with probability E[distinct labels among k] / 10 ≈ 1 - 0.9^k (0.1 and
    0.41); over 2,000 queries the mean has a standard deviation of about 0.011, tolerance 0.04."""
    reference, queries = _normal(1000, 8, seed=11), _normal(2000, 8, seed=12)
    reference_labels = torch.arange(1000) % 10
    query_labels = torch.randint(10, (2000,), generator=torch.Generator().manual_seed(13))
    rate = float(retrieval_hits(queries, query_labels, reference, reference_labels, k=k).double().mean())
    assert rate == pytest.approx(1 - 0.9**k, abs=0.04)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_groups_leave_the_query_s_own_group_out(metric):
    """The reference is the queries themselves, each with its own label: without groups each query finds itself (a
    hit); with each point its own group, it cannot, and no other point carries its label."""
    points = _normal(30, 4, seed=14)
    ids = torch.arange(30)
    assert bool(retrieval_hits(points, ids, points.clone(), ids, k=1, metric=metric).all())
    hits = retrieval_hits(points, ids, points.clone(), ids, k=3, metric=metric, query_groups=ids, reference_groups=ids)
    assert not hits.any()


def test_groups_let_one_style_retrieve_its_other_styles():
    """4 emoji × 3 styles: each style is a small offset of its emoji's point, group = the image (emoji, style),
    label = the emoji. Every image retrieves its emoji's 2 other styles with k = 2 and never itself."""
    emoji, styles = torch.arange(4).repeat_interleave(3), torch.arange(3).repeat(4)
    points = 10 * torch.eye(4, dtype=torch.float64)[emoji] + 0.1 * torch.eye(4, dtype=torch.float64)[styles] + 1
    image = torch.arange(12)
    hits = retrieval_hits(points, emoji, points, emoji, k=2, query_groups=image, reference_groups=image)
    assert bool(hits.all())
    groups_of_emoji = emoji                                         # all 3 styles of an emoji left out: nothing left
    hits = retrieval_hits(points, emoji, points, emoji, k=2, query_groups=groups_of_emoji,
                          reference_groups=groups_of_emoji)
    assert not hits.any()


def test_k_is_bounded_by_the_points_a_query_may_retrieve():
    points, labels = _normal(10, 3, seed=15), torch.arange(10) % 2
    retrieval_hits(points, labels, points, labels, k=10)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 10\], got 11"):
        retrieval_hits(points, labels, points, labels, k=11)
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 3, 4, 5, 6])          # group 0 holds 3 points: 7 are left for its queries
    retrieval_hits(points, labels, points, labels, k=7, query_groups=groups, reference_groups=groups)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 7\] \(the fewest"):
        retrieval_hits(points, labels, points, labels, k=8, query_groups=groups, reference_groups=groups)
    with pytest.raises(ValueError, match="reference_groups must leave every query"):
        retrieval_hits(points, labels, points, labels, k=1, query_groups=torch.zeros(10, dtype=torch.long),
                       reference_groups=torch.zeros(10, dtype=torch.long))


def test_errors_name_the_argument():
    x, y = _normal(10, 3, seed=16), _normal(8, 3, seed=17)
    cases = [
        (lambda: precision_recall(x[:, 0], y), "real_features must be a float tensor of shape"),
        (lambda: precision_recall(x, y.long()), "fake_features must be a float tensor"),
        (lambda: precision_recall(x, y[:, :2]), "fake_features must have the feature dimension D = 3"),
        (lambda: precision_recall(x, y, k=8), r"k must be an int in \[1, 7\], got 8"),
        (lambda: precision_recall(x, y, k=0), r"k must be an int in \[1, 7\], got 0"),
        (lambda: precision_recall(x, y, k=True), "k must be an int"),
        (lambda: precision_recall(x[:1], y), "real_features must have at least 2 rows"),
        (lambda: precision_recall(x, y, chunk_size=0), "chunk_size must be an int >= 1"),
        (lambda: precision_recall(x, torch.full((8, 3), math.nan)), "fake_features must be finite"),
        (lambda: manifold_membership(x, y, k=10), r"k must be an int in \[1, 9\], got 10"),
        (lambda: manifold_membership(x, y[:0]), "queries must have at least 1 row"),
        (lambda: manifold_membership(x, y[:, :1]), "queries must have the feature dimension D = 3 of reference"),
    ]
    labels_x, labels_y = torch.arange(10), torch.arange(8)
    cases += [
        (lambda: retrieval_hits(x, labels_x[:9], y, labels_y), r"query_labels must be an integer tensor of shape "
                                                                r"\(10,\) = \(rows of query_features,\)"),
        (lambda: retrieval_hits(x, labels_x, y, labels_y.float()), "reference_labels must be an integer tensor"),
        (lambda: retrieval_hits(x, labels_x, y[:, :2], labels_y), "reference_features must have the feature dim"),
        (lambda: retrieval_hits(x, labels_x, y, labels_y, metric="l1"), "metric must be one of"),
        (lambda: retrieval_hits(x, labels_x, y, labels_y, k=9), r"k must be an int in \[1, 8\], got 9"),
        (lambda: retrieval_hits(x, labels_x, y, labels_y, query_groups=labels_x),
         "query_groups and reference_groups must be given together"),
        (lambda: retrieval_hits(x, labels_x, y, labels_y, query_groups=labels_x, reference_groups=labels_x),
         r"reference_groups must be an integer tensor of shape \(8,\)"),
        (lambda: retrieval_hits(x, labels_x, torch.cat([y[:7], torch.zeros(1, 3)]), labels_y),
         "reference_features must have no all-zero rows with metric='cosine'.*row 7"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    zero_row = torch.cat([y[:7], torch.zeros(1, 3, dtype=torch.float64)])
    assert retrieval_hits(x, labels_x, zero_row, labels_y, metric="euclidean").shape == (10,)


def test_inputs_on_another_device_come_back_on_the_cpu():
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, y = _normal(20, 3, seed=18).to(device), _normal(15, 3, seed=19).to(device)
    assert manifold_membership(x, y).device.type == "cpu"
    labels_x, labels_y = torch.arange(20, device=device) % 3, torch.arange(15, device=device) % 3
    assert retrieval_hits(x, labels_x, y, labels_y, k=2).device.type == "cpu"
