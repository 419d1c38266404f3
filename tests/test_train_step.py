"""The fast training step computes the old step's loss and gradients, for less work."""

from __future__ import annotations

import pytest
import torch

from hiercore.errors import HierTuneError
from hiercore.losses import hierarchical_loss
from hiercore.models import HierClip, LoraSpec, apply_lora, load_clip
from hiercore.sampled_levels import sample_level
from hiercore.taxonomy import Taxonomy
from hiercore.train_step import NodeText, StepLoss, encode_text_trimmed, trimmed

OPTIONS = {"alpha": 1.0, "lam": 1.0, "eps": 0.1}


def taxonomy() -> Taxonomy:
    """Two nodes share a name (so two prompts share a text) and one leaf stops a level short."""
    tax = Taxonomy()
    for a_name in ("birds", "cats"):
        a = tax.add(a_name)
        for f_name in ("small", "large"):
            f = tax.add(f_name, a)
            for g in range(2):
                tax.add(f"{a_name} {f_name} genus {g} with a long name" * (g + 1), f)
    tax.add("lizards", tax.add("reptiles"))
    return tax


def adapted(towers: str, seed: int = 0) -> HierClip:
    torch.manual_seed(seed)
    bundle = load_clip("tiny-random", seed=seed)
    apply_lora(bundle.model, LoraSpec(towers, rank=4))
    # LoRA's B starts at zero; move it so that the adapters shape the output
    with torch.no_grad():
        for name, p in bundle.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return HierClip(bundle, taxonomy()).train()


def batch(model: HierClip, n: int = 6):
    g = torch.Generator().manual_seed(1)
    size = model.bundle.image_size
    x = torch.randn(n, 3, size, size, generator=g)
    leaves = torch.randint(0, model.index.sizes[-1], (n,), generator=g)
    targets = torch.stack([torch.as_tensor(model.index.path_from_leaf(int(t))) for t in leaves])
    targets[0, -1] = -1  # a partial label
    return x, targets


def old_step(model: HierClip, x, targets) -> dict:
    logits = model.level_logits(model.encode_images(x), model.encode_nodes())
    return hierarchical_loss(logits, targets, model.parents(), **OPTIONS)


def grads(model: HierClip) -> dict[str, torch.Tensor]:
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def test_trimmed_text_encoding_equals_the_full_context():
    model = adapted("text")
    tokens = model.tokens
    assert trimmed(tokens).shape[1] < tokens.shape[1]  # something to trim
    with torch.no_grad():
        full = model.clip.encode_text(tokens)
        cut = encode_text_trimmed(model.clip, trimmed(tokens))
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def test_node_text_shares_repeated_prompts_and_equals_encode_nodes():
    model = adapted("text")
    text = NodeText(model, chunk=3)
    assert text.n_prompts < len(model.prompts)  # "small" and "large" under both classes
    assert len(text.chunks) > 1
    with torch.no_grad():
        torch.testing.assert_close(text.encode(), model.encode_nodes(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("towers", ["vision", "text", "both"])
def test_step_loss_and_gradients_equal_the_old_step(towers):
    model = adapted(towers)
    x, targets = batch(model)
    old = old_step(model, x, targets)
    old["total"].backward()
    expected = grads(model)
    assert expected  # the adapters of the tower(s) got gradients

    step = StepLoss(model, OPTIONS, towers != "text", towers != "vision", chunk=4)
    feats = x if towers != "text" else model.encode_images(x).detach()
    new = step(feats, targets)
    for k in ("ce", "tpkl", "hisce", "total"):
        torch.testing.assert_close(new[k], old[k], rtol=1e-5, atol=1e-6)
    new["total"].backward()
    got = grads(model)
    assert got.keys() == expected.keys()
    for name, g in expected.items():
        torch.testing.assert_close(got[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_recomputed_text_chunks_give_the_same_gradients():
    model = adapted("both")
    x, targets = batch(model)
    results = []
    for recompute in (False, True):
        step = StepLoss(model, OPTIONS, True, True, recompute_text=recompute, chunk=3)
        terms = step(x, targets)
        terms["total"].backward()
        results.append((terms["total"].detach(), grads(model)))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    assert any("transformer.resblocks" in n and "visual" not in n for n in grads_b)
    for name, g in grads_a.items():
        torch.testing.assert_close(grads_b[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_node_subset_encodes_as_the_whole_set():
    model = adapted("text")
    text = NodeText(model, chunk=3)
    nodes = torch.tensor([0, 2, 5, len(model.node_ids) - 1])
    with torch.no_grad():
        torch.testing.assert_close(text.encode_subset(nodes), text.encode()[nodes])


def test_sampling_every_negative_is_the_full_loss_and_gradients():
    model = adapted("both")
    x, targets = batch(model)
    results = []
    for negatives in (None, 10_000):
        terms = StepLoss(model, OPTIONS, True, True, negatives=negatives)(x, targets)
        terms["total"].backward()
        results.append((terms, grads(model)))
    (full, full_grads), (sampled, sampled_grads) = results
    for k in ("ce", "tpkl", "hisce", "total"):
        torch.testing.assert_close(sampled[k], full[k], rtol=1e-5, atol=1e-6)
    for name, g in full_grads.items():
        torch.testing.assert_close(sampled_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_few_negatives_keep_the_labelled_families_and_still_train_the_text():
    model = adapted("both")
    x, targets = batch(model, n=2)
    step = StepLoss(model, OPTIONS, True, True, negatives=1)
    terms = step(x, targets)
    assert torch.isfinite(terms["total"])
    assert terms["total"] != StepLoss(model, OPTIONS, True, True)(x, targets)["total"]
    terms["total"].backward()
    assert any("visual" not in n and "lora_" in n for n in grads(model))


def test_sampled_partition_sum_is_unbiased_and_labelled_families_are_whole():
    g = torch.Generator().manual_seed(0)
    parent_of = torch.sort(torch.randint(0, 8, (60,), generator=g)).values
    z = torch.randn(60, generator=g)
    targets = torch.tensor([3, 3, 40, -1])
    total, draws = 0.0, 3000
    for _ in range(draws):
        level = sample_level(targets, parent_of, 5, g)
        family = parent_of == parent_of[40]
        assert set(family.nonzero().squeeze(1).tolist()) <= set(level.kept.tolist())
        assert level.kept[level.targets[2]] == 40 and level.targets[3] == -1
        total += float(torch.exp(z[level.kept] + level.log_weight).sum())
    assert abs(total / draws / float(z.exp().sum()) - 1) < 0.03


def test_sampling_refuses_the_size_corrected_tp_kl():
    model = adapted("text")
    with pytest.raises(HierTuneError, match="size correction"):
        StepLoss(model, {**OPTIONS, "tpkl_size_correction": True}, False, True, negatives=4)
