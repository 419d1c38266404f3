"""LatHAdapter (arXiv 2508.11176), our reading of its abstract.

The abstract says: learnable attribute prompts bridge categories and images; categories,
attribute prompts and images are projected into hyperbolic space (the Poincaré ball, via
the exponential map at the origin); a hierarchical regulariser models the one-to-many
category -> attribute -> image structure. The paper's body is not public, so the concrete
design below is ours.

Model (CLIP frozen; image features cached):

- every distinct taxonomy node n (all levels) owns K learnable attribute prompts, kept in
  the joint embedding space as offsets from the node's frozen prompt embedding:
  a_{n,k} = g_n + delta_{n,k} (delta ~ N(0, 0.02^2)). Prompts at the embedding level rather
  than as tokens through the text tower keep a training step cheap on a CPU;
- two learnable linear maps P_t (text side) and P_v (image side), initialised to the
  identity, then the exponential map at the origin of the ball of curvature c:
  category c_n = exp_0(P_t g_n), attribute h_{n,k} = exp_0(P_t a_{n,k}),
  image u = exp_0(P_v f);
- logits: z_n = s <f, g_n> + tau * log sum_k exp(-d(u, h_{n,k})). An image is close to a
  category when it is close to *any* of its attributes (one category, many looks). The
  zero-shot term keeps CLIP's knowledge as the residual of CLIP-Adapter does; tau is
  learnable, starting at s. Per-level logits gather z over the nodes of each level
  (padding copies share their leaf's row). Loss: per-level CE + lambda_h * R.

Hierarchical regulariser R (three hinge terms, each a mean):

1. Order (general -> specific). In the Poincaré ball, distance from the origin measures
   specificity: generic concepts sit near the centre, specific ones near the boundary
   (Nickel & Kiela 2017; entailment cones, Ganea et al. 2018). So we ask
   d_0(c_parent) + m <= d_0(c_child) on every taxonomy edge, d_0(c_n) + m <= d_0(h_{n,k})
   for each attribute, and d_0(h_{n,k*}) + m <= d_0(u) for each training image, where n is
   the image's deepest labelled node and k* its nearest attribute: category -> attribute
   -> image is a chain of increasing specificity.
2. Containment (one-to-many, downwards). Attributes stay within hyperbolic radius rho of
   their own category, relu(d(h_{n,k}, c_n) - rho), so that they remain *its* attributes
   and the image -> attribute -> category link stays meaningful.
3. Spread (one-to-many, sideways). Attributes of one category keep at least delta apart,
   relu(delta - d(h_{n,k}, h_{n,k'})), so the K prompts do not collapse into one and can
   cover different looks of the category.

Defaults: K = 4, c = 1, lambda_h = 0.1, m = 0.05, rho = 1.0, delta = 0.1.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hiercore.baselines.frozen import frozen_features, frozen_result, optimise
from hiercore.baselines.hyperbolic import distance, distance0, expmap0, pairwise_distance
from hiercore.baselines.registry import Method, register_method
from hiercore.baselines.result import MethodResult
from hiercore.losses import level_cross_entropy
from hiercore.taxonomy import ROOT


def _identity_linear(dim: int) -> nn.Linear:
    layer = nn.Linear(dim, dim)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
        layer.bias.zero_()
    return layer


class HyperbolicAttributes(nn.Module):
    """Attribute prompts and the two projections into the Poincaré ball."""

    def __init__(
        self, node_feats: torch.Tensor, n_attributes: int, curvature: float, scale: float
    ) -> None:
        super().__init__()
        n, dim = node_feats.shape
        self.c = curvature
        self.register_buffer("g", node_feats.detach().clone(), persistent=False)
        self.delta = nn.Parameter(torch.randn(n, n_attributes, dim) * 0.02)
        self.proj_text = _identity_linear(dim)
        self.proj_image = _identity_linear(dim)
        self.log_tau = nn.Parameter(torch.tensor(float(np.log(scale))))

    def points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(categories (N, D), attributes (N, K, D)) in the ball."""
        cats = expmap0(self.proj_text(self.g), self.c)
        atts = expmap0(self.proj_text(self.g[:, None, :] + self.delta), self.c)
        return cats, atts

    def image_points(self, f: torch.Tensor) -> torch.Tensor:
        return expmap0(self.proj_image(f), self.c)

    def node_logits(self, f: torch.Tensor, zero_shot_scale: torch.Tensor):
        """(logits over distinct nodes (B, N), image points, attribute distances (B, N, K))."""
        _, atts = self.points()
        u = self.image_points(f)
        n, k, dim = atts.shape
        d = pairwise_distance(u, atts.reshape(n * k, dim), self.c).view(-1, n, k)
        hyper = self.log_tau.exp() * torch.logsumexp(-d, dim=-1)
        return zero_shot_scale * f @ self.g.t() + hyper, u, d


def hierarchy_regulariser(
    module: HyperbolicAttributes,
    edges: torch.Tensor,
    images: torch.Tensor,
    image_nodes: torch.Tensor,
    distances: torch.Tensor,
    margin: float = 0.05,
    radius: float = 1.0,
    spread: float = 0.1,
) -> dict[str, torch.Tensor]:
    """The three hinge terms of the module docstring; `image_nodes` is -1 when unlabelled."""
    c = module.c
    cats, atts = module.points()
    k = atts.shape[1]
    d0_cat, d0_att = distance0(cats, c), distance0(atts, c)
    order = []
    if edges.numel():
        order.append(F.relu(d0_cat[edges[:, 0]] - d0_cat[edges[:, 1]] + margin).mean())
    order.append(F.relu(d0_cat[:, None] - d0_att + margin).mean())
    known = image_nodes >= 0
    if known.any():
        rows = torch.nonzero(known).flatten()
        nodes = image_nodes[rows]
        nearest = distances[rows, nodes].argmin(dim=-1)
        d0_img = distance0(images[rows], c)
        order.append(F.relu(d0_att[nodes, nearest] - d0_img + margin).mean())
    contain = F.relu(distance(atts, cats[:, None, :], c) - radius).mean()
    if k > 1:
        # distinct pairs only: the distance of a point to itself has no usable gradient
        i, j = torch.triu_indices(k, k, offset=1, device=atts.device)
        spread_term = F.relu(spread - distance(atts[:, i], atts[:, j], c)).mean()
    else:
        spread_term = d0_att.new_zeros(())
    order_term = torch.stack(order).sum()
    return {"order": order_term, "contain": contain, "spread": spread_term}


class LatHAdapter(Method):
    def __init__(
        self,
        n_attributes: int = 4,
        curvature: float = 1.0,
        reg_weight: float = 0.1,
        margin: float = 0.05,
        radius: float = 1.0,
        spread: float = 0.1,
    ) -> None:
        self.n_attributes = n_attributes
        self.curvature = curvature
        self.reg_weight = reg_weight
        self.hinges = {"margin": margin, "radius": radius, "spread": spread}
        self.notes = (
            f"frozen CLIP; {n_attributes} attribute prompts per node in a Poincaré ball; "
            "per-level CE + hierarchy regulariser"
        )

    def fit(
        self, taxonomy, train_samples, val_samples, config, out_dir, progress=None, stop_event=None
    ) -> MethodResult:
        feats = frozen_features(config, taxonomy, train_samples, val_samples, progress)
        started = time.time()
        torch.manual_seed(config.seed)
        model = feats.model
        scale = model.logit_scale().detach()
        module = HyperbolicAttributes(
            feats.node_feats, self.n_attributes, self.curvature, float(scale)
        ).to(feats.device)
        gathers = [getattr(model, f"gather_{lvl}") for lvl in range(model.depth)]
        position = {n: i for i, n in enumerate(model.node_ids)}
        edges = torch.tensor(
            [
                (position[taxonomy.parent(n)], position[n])
                for n in model.node_ids
                if taxonomy.parent(n) != ROOT
            ],
            dtype=torch.long,
            device=feats.device,
        ).reshape(-1, 2)
        x, y = feats.tensors("train")
        image_nodes = torch.tensor(
            [_deepest_node(row, model.index, position) for row in y.cpu().numpy()],
            dtype=torch.long,
            device=feats.device,
        )

        def level_logits(z: torch.Tensor) -> list[torch.Tensor]:
            return [z[:, g] for g in gathers]

        def step_loss(rows: torch.Tensor) -> dict:
            z, u, d = module.node_logits(x[rows], scale)
            ce = level_cross_entropy(level_logits(z), y[rows])
            reg = hierarchy_regulariser(module, edges, u, image_nodes[rows], d, **self.hinges)
            total = ce + self.reg_weight * sum(reg.values())
            return {"total": total, "ce": ce, **reg}

        params = list(module.parameters())
        state, steps = optimise(params, step_loss, x.shape[0], config, progress, stop_event)
        trainable = dict(module.named_parameters())
        extra = {"n_attributes": self.n_attributes, "c": self.curvature}

        def logits_of(feats_eval: torch.Tensor) -> list[torch.Tensor]:
            return level_logits(module.node_logits(feats_eval, scale)[0])

        return frozen_result(
            self, feats, logits_of, trainable, started, state, steps, out_dir, extra
        )


def _deepest_node(row: np.ndarray, index, position: dict[str, int]) -> int:
    known = np.flatnonzero(row >= 0)
    if known.size == 0:
        return -1
    return position[index.node_of_path(row.tolist())]


@register_method("lathadapter")
def lathadapter(**kw) -> Method:
    return LatHAdapter(**kw)
