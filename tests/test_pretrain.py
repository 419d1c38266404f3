"""Pretraining the embedded model: captions that match the prompts, the held-out rule, and
a run cut into chunks that ends exactly where an uncut run does."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hiercore.errors import DataError
from hiercore.models.prompts import node_prompts
from hiercore.pretrain import TEMPLATES, augment_batch, emoji_captions, load_corpus_pairs, pretrain
from hiercore.taxonomy import ROOT, Taxonomy

FIELDS = "path,kind,style,package,license,codepoints,name,keywords,subcategory,category"


def _corpus(tmp_path, rows, licence="MIT"):
    (tmp_path / "images").mkdir(exist_ok=True)
    with open(tmp_path / "corpus.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS.split(","))
        for i, (kind, style, package, name, sub, cat) in enumerate(rows):
            path = f"images/{i}.png"
            Image.new("RGB", (40, 40), ((50 * i) % 255, 90, 200 - 20 * i)).save(tmp_path / path)
            w.writerow([path, kind, style, package, licence, "", name, "", sub, cat])
    return tmp_path


def test_rank_captions_are_the_prompts_the_card_templates_build():
    """Zero-shot prompts for every rank are sentences the text tower saw in pretraining."""
    tax = Taxonomy()
    cat = tax.add("Animals & Nature", ROOT, description="animals and nature")
    sub = tax.add("animal-bird", cat, description="birds")
    leaf = tax.add("flamingo", sub)
    describe = {"animal-bird": "birds", "Animals & Nature": "animals and nature"}
    captions, weights, keys = emoji_captions(
        "flamingo", "animal-bird", "Animals & Nature", ["pink"], describe
    )
    assert sum(weights) == pytest.approx(1.0)
    for node in (cat, sub, leaf):
        for prompt in node_prompts(tax, node, TEMPLATES):
            assert prompt in captions, prompt
    assert "an emoji of birds (animal-bird)." in captions
    # each caption names the class it describes (the anchors it is trained towards)
    named = dict(zip(captions, keys, strict=True))
    assert named["an emoji of flamingo, a kind of animal-bird."] == "leaf:emoji:flamingo"
    assert named["an emoji of birds (animal-bird)."] == "sub:animal-bird"
    assert named["an emoji of Animals & Nature."] == "cat:emoji:Animals & Nature"
    assert named["an emoji of pink."] == "leaf:emoji:flamingo"
    # the leaf's own name is the most frequent caption
    assert captions[weights.index(max(weights))] == "an emoji of flamingo."


def test_a_corpus_holding_the_held_out_style_is_refused(tmp_path):
    rows = [
        ("emoji", "twemoji", "@iconify-json/twemoji", "dog", "animal-mammal", "Animals"),
        ("emoji", "openmoji", "@iconify-json/openmoji", "dog", "animal-mammal", "Animals"),
    ]
    with pytest.raises(DataError, match="held-out"):
        load_corpus_pairs(_corpus(tmp_path, rows), {})


def test_augmented_views_stay_images_of_the_same_size():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(0)
    y = augment_batch(x)
    assert y.shape == (8, 3, 32, 32) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert not torch.allclose(y, x.float() / 255)


def test_a_chunked_run_ends_where_an_uncut_run_does(tmp_path):
    rows = [
        ("emoji", "twemoji", "@iconify-json/twemoji", n, "animal-mammal", "Animals")
        for n in ("dog", "cat", "cow", "pig")
    ] + [("icon", "mdi", "@iconify-json/mdi", n, "Tools", "") for n in ("hammer", "saw")]
    (tmp_path / "corpus").mkdir()
    corpus = _corpus(tmp_path / "corpus", rows)
    common = dict(
        demo_dir=tmp_path / "no-demo",
        steps=4,
        batch_size=4,
        corpus=corpus,
        arch="hiertune-tiny",
        icon_fraction=0.25,
        device="cpu",
    )
    whole = pretrain(tmp_path / "whole", state_dir=tmp_path / "s1", **common)
    assert whole["finished"] and whole["steps"] == 4
    first = pretrain(tmp_path / "cut", state_dir=tmp_path / "s2", minutes=0, **common)
    assert first == {"finished": False, "step": 1, "state": str(tmp_path / "s2")}
    assert (tmp_path / "s2" / "snapshot" / "open_clip_model.safetensors").is_file()
    rest = pretrain(tmp_path / "cut", state_dir=tmp_path / "s2", resume=True, **common)
    assert rest["finished"] and rest["steps"] == 4
    a = load_file(str(tmp_path / "whole" / "open_clip_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "open_clip_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    # a finished run leaves no state behind to resume by mistake
    with pytest.raises(DataError, match="Nothing to resume"):
        pretrain(tmp_path / "cut", state_dir=tmp_path / "s2", resume=True, **common)


def test_share_alike_rows_are_left_out_of_pretraining(tmp_path):
    rows = [("emoji", "emojione-v1", "@iconify-json/emojione-v1", "dog", "animal-mammal", "A")]
    assert load_corpus_pairs(_corpus(tmp_path, rows, licence="CC-BY-SA-4.0"), {}) == []
    assert len(load_corpus_pairs(_corpus(tmp_path, rows, licence="CC-BY-4.0"), {})) == 1


def test_anchors_classify_within_the_target_rank_only():
    from hiercore.pretrain import Anchors, Pair

    pairs = [
        Pair(
            Path("a.png"), ["x"], [1.0], "emoji", ["leaf:emoji:dog"], ("leaf:emoji:dog", None, None)
        ),
        Pair(Path("b.png"), ["y"], [1.0], "emoji", ["sub:animal"], ("leaf:emoji:cat", None, None)),
    ]
    anchors = Anchors(pairs, dim=4)
    assert anchors.keys == ["leaf:emoji:cat", "leaf:emoji:dog", "sub:animal"]
    with torch.no_grad():
        anchors.weight.copy_(torch.eye(4)[:3])
    scale = torch.tensor(10.0)
    dog = anchors.ids(["leaf:emoji:dog"])
    # a feature on the "sub:animal" anchor is not a competitor for a leaf target
    on_sub = torch.tensor([[0.0, 0.6, 0.8, 0.0]])
    expected = torch.nn.functional.cross_entropy(scale * torch.tensor([[0.0, 0.6]]), dog)
    torch.testing.assert_close(anchors.loss(on_sub, dog, scale), expected)
    # rows without a class at this rank are left out
    assert float(anchors.loss(on_sub, anchors.ids([None]), scale)) == 0.0


def test_a_continued_phase_starts_its_anchors_at_its_captions():
    """`--init` continues a model: each anchor a caption names starts at the mean of its
    captions' features, not at a random point the inherited features would be pulled to."""
    import open_clip

    from hiercore.models.loading import register_configs
    from hiercore.pretrain import Anchors, Pair

    register_configs()
    model = open_clip.create_model("hiertune-tiny")
    tokenizer = open_clip.get_tokenizer("hiertune-tiny")
    pairs = [
        Pair(Path("a.png"), ["a dog.", "a hound."], [0.5, 0.5], "emoji",
             ["leaf:emoji:dog", "leaf:emoji:dog"], ("leaf:emoji:dog", None, None)),
        Pair(Path("b.png"), ["an animal."], [1.0], "emoji", ["sub:animal"],
             ("leaf:emoji:cat", None, None)),
    ]  # fmt: skip
    anchors = Anchors(pairs, int(model.text_projection.shape[1]))
    untouched = anchors.weight[anchors.index["leaf:emoji:cat"]].clone()
    anchors.start_at_captions(pairs, model, tokenizer, "cpu")
    with torch.no_grad():
        g = torch.nn.functional.normalize(
            model.encode_text(tokenizer(["a dog.", "a hound.", "an animal."])), dim=-1
        )
    F = torch.nn.functional
    torch.testing.assert_close(
        anchors.weight[anchors.index["leaf:emoji:dog"]], F.normalize(g[0] + g[1], dim=0)
    )
    torch.testing.assert_close(anchors.weight[anchors.index["sub:animal"]], g[2])
    # an image-only class keeps its random start
    torch.testing.assert_close(anchors.weight[anchors.index["leaf:emoji:cat"]], untouched)
