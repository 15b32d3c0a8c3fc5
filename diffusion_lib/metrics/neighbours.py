"""Nearest-neighbour metrics in a feature space: which samples lie where the data lies, and what a sample's
neighbours are.

- *Improved precision and recall* (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
  Generative Models"). A set of points stands for its manifold, the union of the balls around its points whose
  radius is the distance to the point's k-th nearest neighbour within the set (the point itself left out). Precision
  is the fraction of generated points inside the real manifold (are the samples realistic?), recall the fraction of
  real points inside the generated manifold (do the samples cover the data?). :func:`manifold_membership` gives the
  per-point answers, which a resampling interval (:func:`diffusion_lib.metrics.intervals.bootstrap`) resamples;
  :func:`precision_recall` their two means.
- *Retrieval* (:func:`retrieval_hits`): whether any of a query's k nearest reference points carries the query's
  label, e.g. whether a sample's neighbours among the training images are of the class it was asked for. The mean of
  the hits is the top-k accuracy of a nearest-neighbour classifier.

Features are (N, D) tensors on any device; they are compared in float64 on the CPU, ``chunk_size`` query rows at a
time against the whole reference set, so memory is O(chunk_size · M): for 10,000 against 10,000 points about 80 MB
per block at the default 1024, whatever D.

**Distances.** Squared Euclidean distances come from the matrix product, ||x - y||² = ||x||² + ||y||² - 2 x·y, after
both sets are centred on the reference set's mean (distances do not move; rounding does shrink). In float64 this is
exact for small integer or binary-fraction coordinates, and otherwise off by about 1e-16 · ||x||² in absolute terms,
far below any gap between neighbours in practice; at D = 256 it is about 10 times faster than direct differences.
"""

from __future__ import annotations

import torch

from diffusion_lib.checks import check_choice, check_int, check_tensor, is_int

METRICS = ("cosine", "euclidean")


def manifold_membership(
    reference: torch.Tensor,
    queries: torch.Tensor,
    *,
    k: int = 3,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Which queries lie inside the k-NN manifold of the reference set (Kynkäänniemi et al. 2019).

    Each reference point r_j gets the radius ρ_j = the distance from r_j to its k-th nearest neighbour among the
    other reference points (a duplicate of r_j counts, at distance 0). Query q_i is inside when it lies in some
    closed ball: ||q_i - r_j|| <= ρ_j for at least one j. Comparisons are between squared distances, in float64.

    ``manifold_membership(real, fake).float().mean()`` is the precision of the samples ``fake`` and
    ``manifold_membership(fake, real).float().mean()`` their recall (:func:`precision_recall`).

    Args:
        reference: (N, D) floating, finite, N >= k + 1 (each point needs k neighbours besides itself), on any device.
        queries: (M, D) floating, finite, same D, M >= 1, on any device.
        k: the neighbour that sets the radii, an int in [1, N - 1]; the paper uses 3. Larger k gives larger balls,
            so more of any query set falls inside.
        chunk_size: rows per block (of the reference set for the radii, of the queries for the test), >= 1.

    Returns:
        (M,) bool on the CPU: True where the query lies inside the reference manifold.
    """
    ref = _check_points("reference", reference, min_rows=2)
    query = _check_points("queries", queries, min_rows=1)
    _check_same_dim("queries", query, "reference", ref)
    check_int("k", k, low=1, high=ref.shape[0] - 1)
    check_int("chunk_size", chunk_size, low=1)
    return _membership(ref, query, int(k), int(chunk_size))


def precision_recall(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    *,
    k: int = 3,
    chunk_size: int = 1024,
) -> tuple[float, float]:
    """Improved precision and recall of generated features against real ones (Kynkäänniemi et al. 2019).

        precision = fraction of fake points inside the real manifold   (the samples are realistic)
        recall    = fraction of real points inside the fake manifold   (the samples cover the data)

    with each manifold the union of k-NN balls of :func:`manifold_membership`. Both lie in [0, 1]; identical sets
    score 1 and 1, and samples that collapse onto part of the data keep a high precision while their recall falls to
    about the fraction of the data they cover. Both depend on k and on the sample counts (a set of more points has
    smaller balls), so compare values at equal k and equal counts. For an interval, bootstrap the memberships:
    ``bootstrap(lambda h: h.float().mean(), manifold_membership(real, fake))`` for precision, and alike for recall
    (this holds the radii fixed and resamples only the queries).

    Args:
        real_features: (N, D) floating, finite, on any device (computed on the CPU in float64).
        fake_features: (M, D) floating, finite, same D, on any device.
        k: the neighbour that sets the radii, an int in [1, min(N, M) - 1]; the paper uses 3.
        chunk_size: rows per block, >= 1 (memory O(chunk_size · max(N, M))).

    Returns:
        (precision, recall), Python floats.
    """
    real = _check_points("real_features", real_features, min_rows=2)
    fake = _check_points("fake_features", fake_features, min_rows=2)
    _check_same_dim("fake_features", fake, "real_features", real)
    check_int("k", k, low=1, high=min(real.shape[0], fake.shape[0]) - 1)
    check_int("chunk_size", chunk_size, low=1)
    precision = _membership(real, fake, int(k), int(chunk_size)).to(torch.float64).mean()
    recall = _membership(fake, real, int(k), int(chunk_size)).to(torch.float64).mean()
    return float(precision), float(recall)


def retrieval_hits(
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    reference_features: torch.Tensor,
    reference_labels: torch.Tensor,
    *,
    k: int = 5,
    metric: str = "cosine",
    query_groups: torch.Tensor | None = None,
    reference_groups: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """For each query, whether any of its k nearest reference points carries the query's label.

    Nearness is by ``metric``:

    - ``"cosine"`` (default): the largest cosine similarity, i.e. the dot product of the L2-normalised rows; the
      usual choice for retrieval in a classifier's feature space, where the size of a feature vector says more about
      the image's contrast than about its content.
    - ``"euclidean"``: the smallest Euclidean distance.

    With ``query_groups`` and ``reference_groups`` (integer ids, given together), reference points of the query's
    own group are left out of its search: with the images themselves as the reference and each image its own group,
    a query cannot find itself and must be recognised by its other neighbours (one style of an emoji retrieving its
    other styles). Ties at the k-th place are broken by ``torch.topk``, in no documented order.

    ``retrieval_hits(..., k=1).float().mean()`` is the top-1 accuracy of the nearest-neighbour classifier; with
    labels unrelated to the features and C equally frequent classes, the mean is about 1 - (1 - 1/C)^k (≈ k/C for
    k ≪ C), the floor to read a value against.

    Args:
        query_features: (N, D) floating, finite, N >= 1, on any device (computed on the CPU in float64); with
            ``"cosine"``, no row may be all zeros.
        query_labels: (N,) integer.
        reference_features: (M, D) floating, finite, same D, M >= 1; no zero rows with ``"cosine"``.
        reference_labels: (M,) integer.
        k: the number of neighbours, an int in [1, the fewest reference points a query may retrieve] (M without
            groups; M minus the size of the largest reference group that some query belongs to, with them).
        metric: "cosine" or "euclidean".
        query_groups: (N,) integer group ids, or None (default: nothing is left out).
        reference_groups: (M,) integer group ids, or None; given exactly when ``query_groups`` is.
        chunk_size: query rows per block, >= 1 (memory O(chunk_size · M)).

    Returns:
        (N,) bool on the CPU: True where the query's label is among those of its k retrieved reference points.
    """
    query = _check_points("query_features", query_features, min_rows=1)
    ref = _check_points("reference_features", reference_features, min_rows=1)
    _check_same_dim("reference_features", ref, "query_features", query)
    n, m = query.shape[0], ref.shape[0]
    q_labels = _check_ids("query_labels", query_labels, n, "query_features")
    r_labels = _check_ids("reference_labels", reference_labels, m, "reference_features")
    check_choice("metric", metric, METRICS)
    check_int("chunk_size", chunk_size, low=1)
    if (query_groups is None) != (reference_groups is None):
        raise ValueError("query_groups and reference_groups must be given together (or both left None), got "
                         f"query_groups={_kind(query_groups)}, reference_groups={_kind(reference_groups)}")
    usable = m
    if query_groups is not None:
        q_groups = _check_ids("query_groups", query_groups, n, "query_features")
        r_groups = _check_ids("reference_groups", reference_groups, m, "reference_features")
        usable = m - int(_same_group_counts(q_groups, r_groups).max())
        if usable < 1:
            raise ValueError("reference_groups must leave every query at least one reference point outside its own "
                             "group, but some query shares its group with all of them")
    if not (is_int(k) and 1 <= k <= usable):
        explain = ("" if query_groups is None
                   else " (the fewest reference points a query may retrieve once its own group is left out)")
        raise ValueError(f"k must be an int in [1, {usable}]{explain}, got {k!r}")
    if metric == "cosine":
        query = _unit_rows("query_features", query)
        ref = _unit_rows("reference_features", ref)
    else:
        centre = ref.mean(0)
        query, ref = query - centre, ref - centre
    ref_norms = ref.pow(2).sum(1)                                            # (M,)
    hits = []
    for start in range(0, n, int(chunk_size)):
        block = query[start:start + chunk_size]                              # (c, D)
        if metric == "cosine":
            score = block @ ref.T                                            # (c, M), larger is nearer
        else:
            score = -_squared_distances(block, ref, ref_norms)              # (c, M), larger is nearer
        if query_groups is not None:
            same = q_groups[start:start + chunk_size, None] == r_groups[None, :]   # (c, M)
            score = score.masked_fill(same, -torch.inf)
        nearest = score.topk(int(k), dim=1).indices                          # (c, k)
        hits.append((r_labels[nearest] == q_labels[start:start + chunk_size, None]).any(1))
    return torch.cat(hits)


# --------------------------------------------------------------------------- the computations


def _squared_distances(x: torch.Tensor, y: torch.Tensor, y_norms: torch.Tensor) -> torch.Tensor:
    """||x_i - y_j||² for x: (c, D), y: (M, D), with y_norms = ||y_j||² (M,) → (c, M), clamped at 0."""
    product = x @ y.T                                                        # (c, M), summed into in place
    return product.mul_(-2).add_(x.pow(2).sum(1, keepdim=True)).add_(y_norms[None, :]).clamp_min_(0)


def _membership(ref: torch.Tensor, query: torch.Tensor, k: int, chunk_size: int) -> torch.Tensor:
    """(M,) bool: whether each query row lies in a k-NN ball of ``ref``; both checked float64 CPU (N, D), (M, D)."""
    centre = ref.mean(0)
    ref, query = ref - centre, query - centre
    ref_norms = ref.pow(2).sum(1)                                            # (N,)
    radii = []                                                               # squared k-NN radii, (N,) in all
    for start in range(0, ref.shape[0], chunk_size):
        block = _squared_distances(ref[start:start + chunk_size], ref, ref_norms)     # (c, N)
        rows = torch.arange(block.shape[0])
        block[rows, rows + start] = torch.inf                                # leave the point itself out
        radii.append(block.kthvalue(k, dim=1).values)
    radii_sq = torch.cat(radii)
    inside = []
    for start in range(0, query.shape[0], chunk_size):
        block = _squared_distances(query[start:start + chunk_size], ref, ref_norms)   # (c, N)
        inside.append((block <= radii_sq[None, :]).any(1))
    return torch.cat(inside)


def _same_group_counts(q_groups: torch.Tensor, r_groups: torch.Tensor) -> torch.Tensor:
    """(N,) int64: the number of reference points in each query's group."""
    ids, counts = r_groups.unique(return_counts=True)                        # sorted ids, (G,), (G,)
    at = torch.searchsorted(ids, q_groups).clamp_max(ids.numel() - 1)
    return torch.where(ids[at] == q_groups, counts[at], torch.zeros_like(counts[at]))


def _unit_rows(name: str, points: torch.Tensor) -> torch.Tensor:
    """The rows of float64 ``points`` scaled to length 1, after checking that none has length 0."""
    norms = points.norm(dim=1, keepdim=True)                                 # (N, 1)
    zero = (norms[:, 0] == 0).nonzero()
    if zero.numel():
        raise ValueError(f"{name} must have no all-zero rows with metric='cosine' (their direction is undefined), "
                         f"got {zero.numel()}, the first at row {int(zero[0, 0])}")
    return points / norms


# --------------------------------------------------------------------------- checks


def _check_points(name: str, points: torch.Tensor, *, min_rows: int) -> torch.Tensor:
    """``points`` as float64, detached and on the CPU, after checking that it is (rows, D), finite, with enough
    rows and D >= 1."""
    check_tensor(name, points, ("N", "D"), dtype="float")
    if points.shape[0] < min_rows or points.shape[1] < 1:
        raise ValueError(f"{name} must have at least {min_rows} row{'s' * (min_rows > 1)} and D >= 1 columns, "
                         f"got shape {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return points.detach().cpu().to(torch.float64)


def _check_same_dim(name: str, points: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    if points.shape[1] != other.shape[1]:
        raise ValueError(f"{name} must have the feature dimension D = {other.shape[1]} of {other_name}, "
                         f"got shape {tuple(points.shape)}")


def _check_ids(name: str, ids: torch.Tensor, rows: int, rows_of: str) -> torch.Tensor:
    """(rows,) integer ids as int64 on the CPU (detached), after checking them."""
    check_tensor(name, ids, (rows,), dtype="integer", meaning=f"(rows of {rows_of},)")
    return ids.detach().cpu().long()


def _kind(value: object) -> str:
    return "None" if value is None else "a tensor" if isinstance(value, torch.Tensor) else type(value).__name__
