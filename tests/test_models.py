"""Model loading, prompts, LoRA placement and per-level logits on the tiny random CLIP."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from taxonomy_strategies import taxonomies

from hiercore.errors import HierTuneError, ModelError
from hiercore.models import HierClip, LoraSpec, apply_lora, count_parameters, load_clip
from hiercore.models.lora import lora_state_dict, target_regex
from hiercore.models.prompts import check_templates, node_prompts, nodes_prompts
from hiercore.taxonomy import Taxonomy


@pytest.fixture
def ragged() -> Taxonomy:
    t = Taxonomy(["class", "family", "species"])
    birds = t.add("bird", node_id="bird")
    corvids = t.add("corvid", birds, node_id="corvid")
    t.add("raven", corvids, node_id="raven")
    t.add("crow", corvids, node_id="crow")
    t.add("gull", birds, node_id="gull", description="a white sea bird")  # a leaf at depth 2
    t.add("fish", node_id="fish")  # a leaf at depth 1
    return t


def test_tiny_model_is_deterministic_per_seed():
    a = load_clip("tiny-random", seed=1).model.state_dict()
    b = load_clip("tiny-random", seed=1).model.state_dict()
    c = load_clip("tiny-random", seed=2).model.state_dict()
    key = "visual.conv1.weight"
    assert torch.equal(a[key], b[key])
    assert not torch.equal(a[key], c[key])


@pytest.mark.parametrize(
    ("model", "pretrained", "fragment"),
    [
        ("no-such-model", None, "Unknown model 'no-such-model'"),
        ("ViT-B-32", "no-such-tag", "no pretrained tag 'no-such-tag'"),
    ],
)
def test_load_errors_are_one_sentence(model, pretrained, fragment):
    with pytest.raises(ModelError) as err:
        load_clip(model, pretrained)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_weights_file_as_model_explains_pretrained(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="--pretrained"):
        load_clip(str(f))


def test_unfetchable_hub_model_suggests_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as err:
        load_clip("hf-hub:nobody/not-a-model")
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "--model default" in msg


def test_local_dir_round_trip(tmp_path):
    """A folder in the open_clip layout (config + safetensors) loads the same weights."""
    import json

    from safetensors.torch import save_file

    from hiercore.models.loading import CONFIG_DIR

    bundle = load_clip("tiny-random", seed=3)
    cfg = json.loads((CONFIG_DIR / "hiertune-tiny.json").read_text())
    (tmp_path / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": cfg, "hiertune": {"templates": ["{name} icon"]}})
    )
    save_file(bundle.model.state_dict(), str(tmp_path / "open_clip_model.safetensors"))
    again = load_clip(str(tmp_path))
    assert again.templates == ("{name} icon",)
    key = "text_projection"
    assert torch.equal(again.model.state_dict()[key], bundle.model.state_dict()[key])


def test_prompts_skip_templates_without_context(ragged):
    templates = ["a {name}", "a {name}, a kind of {parent}", "{name}: {description}"]
    assert node_prompts(ragged, "bird", templates) == ["a bird"]
    assert node_prompts(ragged, "gull", templates) == [
        "a gull",
        "a gull, a kind of bird",
        "gull: a white sea bird",
    ]
    assert node_prompts(ragged, "bird", ["{name} of {parent}"]) == ["bird"]


def test_default_templates_use_a_description_where_a_node_has_one(ragged):
    from hiercore.models.loading import DEFAULT_TEMPLATES

    templates = list(DEFAULT_TEMPLATES)
    assert node_prompts(ragged, "gull", templates) == [
        "a photo of a gull.",
        "a photo of a gull, a kind of bird.",
        "a photo of a gull, a white sea bird.",
    ]
    assert node_prompts(ragged, "bird", templates) == ["a photo of a bird."]


@pytest.mark.parametrize("bad", [["no field"], ["{nme} typo"], ["{name"], []])
def test_bad_templates_are_refused(bad):
    with pytest.raises(HierTuneError):
        check_templates(bad)


@pytest.mark.parametrize("towers", ["vision", "text", "both"])
def test_lora_reaches_only_the_chosen_towers_and_gets_gradients(towers, ragged):
    bundle = load_clip("tiny-random")
    apply_lora(bundle.model, LoraSpec(towers, rank=4))
    trainable, total = count_parameters(bundle.model)
    assert 0 < trainable < 0.05 * total
    names = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    assert all("lora_" in n for n in names)
    has_vision = any(n.startswith("visual.") for n in names)
    has_text = any(n.startswith("transformer.") for n in names)
    assert has_vision == (towers in ("vision", "both"))
    assert has_text == (towers in ("text", "both"))

    model = HierClip(bundle, ragged)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x = torch.randn(4, 3, 32, 32)
    for _ in range(2):  # B is zero at init, so A only gets gradient after one step
        logits = model(x)
        loss = sum(F.cross_entropy(z, torch.zeros(4, dtype=torch.long)) for z in logits)
        opt.zero_grad()
        loss.backward()
        opt.step()
    grads = {n: p.grad for n, p in bundle.model.named_parameters() if p.requires_grad}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [
        n for n, g in grads.items() if g is None or g.abs().sum() == 0
    ]
    # what a run saves: every trained adapter, plus the logit scale (one number, always kept)
    assert set(lora_state_dict(bundle.model)) == set(grads) | {"logit_scale"}


def test_target_regex_rejects_unknown_parts():
    with pytest.raises(HierTuneError):
        target_regex(LoraSpec("both", targets=("qkv",)))
    with pytest.raises(HierTuneError):
        target_regex(LoraSpec("audio"))


def test_level_logits_match_the_definition(ragged):
    """z^(l)_c = s <f, g_c>, padding copies share their leaf's embedding."""
    bundle = load_clip("tiny-random")
    model = HierClip(bundle, ragged, ["a photo of a {name}.", "{name}, a {parent}"]).eval()
    assert model.index.sizes == [2, 3, 4]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        f = F.normalize(bundle.model.encode_image(x), dim=-1)
        s = bundle.model.logit_scale.exp()
        for lvl, z in enumerate(logits):
            for c, node in enumerate(model.index.level_nodes[lvl]):
                prompts = node_prompts(ragged, node, model.templates)
                g = F.normalize(bundle.model.encode_text(bundle.tokenizer(prompts)), dim=-1)
                g = F.normalize(g.mean(0), dim=-1)
                torch.testing.assert_close(z[:, c], s * f @ g, rtol=1e-4, atol=1e-4)
    # the padding copy of "fish" at level 3 is the same column as at level 1
    fish1 = model.index.index_of(0, "fish")
    fish3 = model.index.index_of(2, "fish")
    torch.testing.assert_close(logits[0][:, fish1], logits[2][:, fish3])
    parents = model.parents()
    assert [p.tolist() for p in parents] == [p.tolist() for p in model.index.parents]


def _cnn_bundle():
    """The embedded default's architecture (a timm ResNet image tower), randomly initialised."""
    import open_clip

    from hiercore.models.loading import ClipBundle, register_configs

    register_configs()
    torch.manual_seed(0)
    net = open_clip.create_model("hiertune-resnet")
    return ClipBundle(net, None, None, open_clip.get_tokenizer("hiertune-resnet"), "cnn")


def test_lora_conv_target_adapts_the_last_stages_of_a_cnn_vision_tower():
    bundle = _cnn_bundle()
    apply_lora(bundle.model, LoraSpec("both", rank=4, targets=("attn", "conv")))
    names = [n for n, p in bundle.model.named_parameters() if p.requires_grad]
    vision = {n.split(".lora_")[0] for n in names if n.startswith("visual.")}
    assert vision and all(".layer3." in n or ".layer4." in n for n in vision), vision
    assert any(n.startswith("transformer.") for n in names)


def test_lora_target_a_cnn_tower_lacks_is_one_sentence():
    bundle = _cnn_bundle()
    with pytest.raises(HierTuneError, match=r"vision tower .* takes conv"):
        apply_lora(bundle.model, LoraSpec("vision", targets=("attn",)))


def test_fine_tuning_keeps_batch_norm_statistics(ragged):
    """HierClip.train() trains the adapters but leaves a CNN's batch-norm layers in eval."""
    bundle = _cnn_bundle()
    apply_lora(bundle.model, LoraSpec("vision", rank=4, targets=("conv",)))
    model = HierClip(bundle, ragged, ["a photo of a {name}."]).train()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    before = norms[0].running_mean.clone()
    model(torch.randn(4, 3, 64, 64))
    torch.testing.assert_close(norms[0].running_mean, before)
    assert model.training


@given(taxonomies(max_nodes=25))
@settings(max_examples=40, deadline=None)
def test_prompts_of_many_nodes_are_each_nodes_own(tax):
    """HierClip builds every node's prompts in one pass; they must be node_prompts'."""
    templates = ["{name}", "{name}, a kind of {parent}", "{path} ({root})", "{description}: {name}"]
    nodes = list(tax.iter_dfs())
    assert nodes_prompts(tax, nodes, templates) == [node_prompts(tax, n, templates) for n in nodes]
