"""The generator's main directions (studio.directions): found from G alone, cached per file, named by the artist."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from studio.checkpoint import load_generator
from studio.directions import (DirectionLabels, cache_path, cached_directions, ganspace, read_labels, sefa,
                               write_labels)
from studio.explore import open_model, render_recipes
from studio.latent import Recipe


@pytest.fixture
def run(tiny_run_dir, tmp_path):
    """A copy of the tiny run: the directions cache is written beside its generator."""
    return shutil.copytree(tiny_run_dir, tmp_path / "tiny")


@pytest.mark.parametrize("method", [sefa, ganspace])
def test_directions_are_orthonormal_and_the_same_for_the_same_file(run, method):
    first = method(load_generator(run / "generator.pt")[0], 8)
    again = method(load_generator(run / "generator.pt")[0], 8)
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


def test_directions_are_cached_beside_the_generator_and_found_again_when_it_changes(run):
    file = run / "generator.pt"
    generator = load_generator(file)[0]
    first = cached_directions(generator, file)
    cache = json.loads(cache_path(file).read_text())
    assert cache_path(file) == run / "generator.directions.json" and cache["method"] == "sefa"
    assert torch.equal(torch.tensor(cache["vectors"]), first.vectors)

    payload = torch.load(file, weights_only=True)          # the run trained on: new weights, new file
    weight = next(k for k in payload["G_ema"] if k.endswith("initial.0.weight"))
    payload["G_ema"][weight] = torch.randn_like(payload["G_ema"][weight])
    torch.save(payload, file)
    changed = cached_directions(load_generator(file)[0], file)
    assert not torch.allclose(changed.vectors, first.vectors)
    assert json.loads(cache_path(file).read_text())["generator_sha256"] != cache["generator_sha256"]


def test_names_and_hidden_directions_are_kept_with_the_run(run):
    assert read_labels(run) == DirectionLabels()
    labels = DirectionLabels().renamed(2, " warmer ").renamed(5, "rounder").hiding(7)
    write_labels(run, labels)
    again = read_labels(run)
    assert again == labels and again.name(2) == "warmer" and again.name(0) == "direction 0"
    assert again.hiding(7, False).hidden == frozenset() and again.renamed(2, "").name(2) == "direction 2"
    assert not list(run.glob(".*.tmp"))                     # written through a temporary file, renamed over
    (run / "directions.json").write_text("{damaged")
    assert read_labels(run) == DirectionLabels()
