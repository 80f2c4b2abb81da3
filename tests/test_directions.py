"""The generator's main directions (studio.directions): found from G alone, cached per file, named by the artist."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import altered_export
from torch import nn

from studio.checkpoint import list_checkpoints, load_generator
from studio.directions import DirectionLabels, ganspace, read_labels, sefa, write_labels
from studio.explore import open_model, render_recipes
from studio.latent import Recipe


@pytest.fixture
def run(tiny_run_dir, tmp_path):
    """A copy of the tiny run: the directions cache is written beside its generator."""
    return shutil.copytree(tiny_run_dir, tmp_path / "tiny")


@pytest.mark.parametrize("method", [sefa, ganspace])
def test_directions_are_orthonormal_and_the_same_for_the_same_file(run, method):
    first = method(load_generator(run / "generator.safetensors")[0], 8)
    again = method(load_generator(run / "generator.safetensors")[0], 8)
    assert first.vectors.shape == (8, 16)
    assert torch.allclose(first.vectors @ first.vectors.T, torch.eye(8), atol=1e-5)
    assert torch.equal(first.vectors, again.vectors)
    assert list(first.strengths) == sorted(first.strengths, reverse=True)     # strongest first


def test_moving_along_a_direction_changes_the_sample_visibly(run):
    model = open_model(run)
    seeds = [Recipe(seed=s) for s in range(8)]
    base = render_recipes(model, seeds)
    for index in (0, 5):
        along = render_recipes(model, [r.moved({index: 2.0}) for r in seeds])
        assert (along - base).abs().mean() * 127.5 > 5          # pixel levels out of 255, on average


def test_directions_are_cached_with_the_run_and_found_again_when_the_generator_changes(run):
    first = open_model(run).directions
    cache = json.loads((run / "generator.directions.json").read_text())
    assert cache["method"] == "sefa" and torch.equal(torch.tensor(cache["vectors"]), first.vectors)

    file = run / "generator.safetensors"
    file.write_bytes(altered_export(file, "initial.0.weight"))   # the run trained on: new weights, new file
    changed = open_model(run).directions
    assert not torch.allclose(changed.vectors, first.vectors)
    assert json.loads((run / "generator.directions.json").read_text())["generator_sha256"] != cache["generator_sha256"]


def test_a_checkpoint_opened_directly_belongs_to_its_run(run):
    checkpoint = list_checkpoints(run)[-1]
    before = set(checkpoint.parent.iterdir())
    write_labels(run, DirectionLabels().renamed(0, "warmer"))
    model = open_model(checkpoint)
    assert model.label == "tiny" and model.run_dir == run
    assert read_labels(model.run_dir).name(0) == "warmer"
    assert set(checkpoint.parent.iterdir()) == before      # pruning old checkpoints leaves nothing behind
    assert json.loads((run / "generator.directions.json").read_text())["generator_sha256"] == model.sha256


class FirstLayerThenNorm(nn.Module):
    """z -> Linear, then `norm` after it in a Sequential (or the Linear alone), and registered right
    after those a BatchNorm that never touches the first layer's output."""

    def __init__(self, norm: nn.Module | None):
        super().__init__()
        self.z_dim = 4
        self.first = nn.Linear(4, 6, bias=False)
        self.initial = nn.Sequential(self.first, norm, nn.ReLU()) if norm else self.first
        self.elsewhere = nn.BatchNorm1d(6)

    def forward(self, z):
        return self.initial(z)


def _norm_with_stats(affine: bool) -> nn.BatchNorm1d:
    norm = nn.BatchNorm1d(6, affine=affine)
    norm.running_var.copy_(torch.linspace(0.25, 4.0, 6))
    if affine:
        nn.init.uniform_(norm.weight, 0.5, 2.0)
    return norm.eval()


@pytest.mark.parametrize("norm", [None, _norm_with_stats(True), _norm_with_stats(False)],
                         ids=["no norm", "affine", "not affine"])
def test_sefa_folds_in_the_batchnorm_that_follows_the_first_layer_and_no_other(norm):
    torch.manual_seed(1)
    generator = FirstLayerThenNorm(norm).eval()
    generator.elsewhere.running_var.fill_(100.0)           # folding this one in would change the answer
    a = generator.first.weight.detach().double()
    if norm is not None:
        scale = 1 / (norm.running_var + norm.eps).sqrt() * (norm.weight if norm.affine else 1)
        a = a * scale.detach().double()[:, None]
    eigenvalues = torch.linalg.eigvalsh(a.T @ a).flip(0)
    assert sefa(generator, 4).strengths == pytest.approx(eigenvalues.tolist(), rel=1e-6)


def test_names_and_hidden_directions_are_kept_with_the_run(run):
    assert read_labels(run) == DirectionLabels()
    labels = DirectionLabels().renamed(2, " warmer ").renamed(5, "rounder").hiding(7)
    write_labels(run, labels)
    again = read_labels(run)
    assert again == labels and again.name(2) == "warmer" and again.name(0) == "direction 0"
    assert again.hiding(7, False).hidden == frozenset() and again.renamed(2, "").name(2) == "direction 2"
    assert sorted(p.name for p in run.glob(".*")) == []    # written through a temporary file, renamed over
    (run / "directions.json").write_text("{damaged")
    assert read_labels(run) == DirectionLabels()
