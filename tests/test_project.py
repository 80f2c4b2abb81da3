"""The artist's painting in the model (projection), breeding favourites and blending two models."""
from __future__ import annotations

import io
import json

import pytest
import torch
from PIL import Image

from studio import demo
from studio.blend import BlendError, blend, layer_resolutions
from studio.breed import weighted_slerp
from studio.checkpoint import load_generator, read_export
from studio.cli import main
from studio.explore import (Model, blended_model, breed, fit_painting, open_model, project_painting, read_recipe,
                            render_images, render_recipes, save_blend)
from studio.latent import Recipe, slerp
from studio.models import build_generator
from studio.sources import Rejected

# From benchmarks/projection.py on the demo model (README, "Projection"): 100 steps bring a
# sample of its own from the best random start's perceptual distance of about 0.6 to under 0.05.
OWN_SAMPLE_STEPS = 100
OWN_SAMPLE_PERCEPTUAL = 0.1


@pytest.fixture(scope="module")
def demo_model() -> Model:
    return open_model(demo.MODEL)


@pytest.fixture(scope="module")
def tiny_model(tiny_run_dir) -> Model:
    return open_model(tiny_run_dir)


def test_projecting_a_sample_of_the_model_finds_a_latent_that_paints_it(demo_model):
    target = render_images(demo_model, [Recipe(seed=1234)])[0]
    found = project_painting(demo_model, target, "seed 1234", OWN_SAMPLE_STEPS)
    assert found.losses[-1] < found.losses[0] / 3                        # the loss falls
    assert found.distance.perceptual < OWN_SAMPLE_PERCEPTUAL < found.start.perceptual
    assert found.distance.pixel < found.start.pixel / 4
    assert found.recipe.origin["projected"]["painting"] == "seed 1234"
    assert found.recipe.label() == "projected z"


def test_projection_is_the_same_for_the_same_seed(tiny_model):
    target = render_images(tiny_model, [Recipe(seed=5)])[0]
    first, again, other = (project_painting(tiny_model, target, "t", 5, seed=seed, starts=4) for seed in (0, 0, 1))
    assert first.recipe.z == again.recipe.z
    assert first.recipe.z != other.recipe.z


def test_a_projected_recipe_survives_json_and_renders_what_the_projection_found(tiny_model):
    target = render_images(tiny_model, [Recipe(seed=5)])[0]
    found = project_painting(tiny_model, target, "t", 3, starts=4)
    again = Recipe.from_json(json.loads(json.dumps(found.recipe.to_json())))
    assert again == found.recipe and again.origin == found.recipe.origin
    assert torch.equal(render_recipes(tiny_model, [again]), render_recipes(tiny_model, [found.recipe]))
    assert again.moved({0: 1.0}).origin == found.recipe.origin         # a slider move keeps where it came from


def test_an_uploaded_painting_is_fitted_and_checked_as_ingest_would(tiny_model):
    wide = Image.new("RGB", (300, 100), (200, 30, 30))
    buffer = io.BytesIO()
    wide.save(buffer, format="JPEG")
    fitted = fit_painting(tiny_model, buffer.getvalue())
    assert fitted.size == (tiny_model.config.resolution,) * 2 and fitted.mode == "RGB"
    with pytest.raises(Rejected, match="PDF files are not supported"):
        fit_painting(tiny_model, b"%PDF-1.4 a document, not a painting")
    with pytest.raises(Rejected, match="not an image"):
        fit_painting(tiny_model, b"just some words")
    with pytest.raises(Rejected, match="empty"):
        fit_painting(tiny_model, b"")


def test_the_project_command_writes_a_recipe_that_interpolate_walks_between(tiny_run_dir, tmp_path, capsys):
    paintings = []
    for n, colour in enumerate([(250, 200, 0), (0, 60, 200)]):
        Image.new("RGB", (40, 40), colour).save(tmp_path / f"p{n}.png")
        out = tmp_path / f"z{n}.json"
        assert main(["project", str(tiny_run_dir), str(tmp_path / f"p{n}.png"), "--steps", "4", "--starts", "2",
                     "--out", str(out)]) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["out"] == str(out) and set(result["distance"]) == {"pixel", "perceptual"}
        assert read_recipe(out).origin["projected"]["painting"] == f"p{n}.png"
        paintings.append(str(out))
    walk = tmp_path / "walk.gif"
    assert main(["interpolate", str(tiny_run_dir), "--recipes", *paintings, "--frames", "6", "--size", "32",
                 "--out", str(walk)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["frames"] == 6
    with Image.open(walk) as gif:
        assert gif.n_frames == 6


def test_the_project_command_refuses_a_file_that_is_no_painting(tiny_run_dir, tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not really a png")
    assert main(["project", str(tiny_run_dir), str(tmp_path / "notes.png"), "--out", str(tmp_path / "z.json")]) == 2
    assert "cannot use" in capsys.readouterr().err and not (tmp_path / "z.json").exists()


# ------------------------------------------------------------------------------ breeding
def test_children_differ_from_their_parents_and_from_each_other(tiny_model):
    parents = [Recipe(seed=1), Recipe(seed=2, psi=0.8), Recipe(seed=3)]
    kids = breed(tiny_model, parents, 16, 0.3, seed=7)
    latents = tiny_model.latents(kids)
    assert len({tuple(z.tolist()) for z in latents}) == 16
    for parent in tiny_model.latents(parents):
        assert (latents - parent).norm(dim=1).min() > 1e-3
    assert kids[0].origin["bred"]["generation"] == 1 and len(kids[0].origin["bred"]["parents"]) == 3


def test_a_grid_bred_again_with_its_seed_is_the_same_grid(tiny_model):
    parents = [Recipe(seed=1), Recipe(seed=2)]
    assert breed(tiny_model, parents, 4, 0.5, seed=3) == breed(tiny_model, parents, 4, 0.5, seed=3)
    assert breed(tiny_model, parents, 4, 0.5, seed=3) != breed(tiny_model, parents, 4, 0.5, seed=4)


def test_mutation_zero_gives_the_pure_slerp_of_the_parents(tiny_model):
    parents = [Recipe(seed=1), Recipe(seed=2)]
    a, b = tiny_model.latents(parents)
    for kid in breed(tiny_model, parents, 4, 0.0, seed=3):
        weights = kid.origin["bred"]["weights"]
        assert torch.allclose(tiny_model.latents([kid])[0], slerp(a, b, weights[1] / sum(weights)), atol=1e-3)


def test_a_child_of_a_child_is_of_the_next_generation_and_records_its_parents_briefly(tiny_model):
    first = breed(tiny_model, [Recipe(seed=1), Recipe(seed=2)], 2, 0.2, seed=0)
    second = breed(tiny_model, first, 1, 0.2, seed=0)[0]
    assert second.origin["bred"]["generation"] == 2
    assert all("origin" not in parent for parent in second.origin["bred"]["parents"])   # no lineage within lineage


def test_breeding_wants_two_to_six_parents(tiny_model):
    with pytest.raises(ValueError, match="2 to 6"):
        breed(tiny_model, [Recipe(seed=1)], 4, 0.2, seed=0)
    with pytest.raises(ValueError, match="2 to 6"):
        breed(tiny_model, [Recipe(seed=s) for s in range(7)], 4, 0.2, seed=0)


def test_weighted_slerp_of_one_weight_is_that_latent():
    latents = torch.randn(3, 8)
    assert torch.allclose(weighted_slerp(latents, torch.tensor([0.0, 1.0, 0.0])), latents[1], atol=1e-5)


# ------------------------------------------------------------------------------ blending
@pytest.fixture(scope="module")
def two_models(tiny_model):
    """The tiny model and a 'fine-tune' of it: the same shape, every weight nudged."""
    other = build_generator(tiny_model.config)
    other.load_state_dict({k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
                           for k, v in tiny_model.generator.state_dict().items()})
    other.eval().requires_grad_(False)
    return tiny_model, Model(other, tiny_model.config, tiny_model.directions, "nudged", "a test")


def test_a_blend_at_zero_and_one_is_each_parent(two_models):
    mine, theirs = two_models
    for amount, expected in ((0.0, mine), (1.0, theirs)):
        blended = blend(mine.generator, theirs.generator, mine.config, amount)
        for key, value in expected.generator.state_dict().items():
            assert torch.equal(blended[key], value), key


def test_a_layer_swap_takes_coarse_layers_from_one_and_fine_from_the_other(two_models):
    mine, theirs = two_models
    resolutions = layer_resolutions(mine.generator, mine.config.z_dim)
    assert set(resolutions.values()) == {4, 8, 16, 32}
    blended = blend(mine.generator, theirs.generator, mine.config, 1.0, finest_from=16)
    for key, size in resolutions.items():
        source = theirs if size >= 16 else mine
        assert torch.equal(blended[key], source.generator.state_dict()[key]), key


def test_a_saved_blend_loads_without_code_and_records_both_parents(two_models, tmp_path):
    mine, theirs = two_models
    path = save_blend(mine, theirs, 0.5, 4, tmp_path / "blend")
    generator, config = load_generator(path)           # safetensors: no pickle, nothing that could run
    assert config == mine.config
    expected = blended_model(mine, theirs, 0.5).generator
    assert torch.equal(render_recipes(open_model(path), [Recipe(seed=0)]), render_recipes(
        Model(expected, config, mine.directions, "b", "b"), [Recipe(seed=0)]))
    parents = read_export(path)[2]["blend"]["parents"]
    assert [p["label"] for p in parents] == [mine.label, "nudged"] and parents[0]["sha256"] == mine.sha256
    with pytest.raises(FileExistsError):
        save_blend(mine, theirs, 0.5, 4, tmp_path / "blend")    # never over an existing model


def test_models_of_different_shapes_are_not_blended(tiny_model, demo_model):
    with pytest.raises(BlendError, match="resolution"):
        blended_model(tiny_model, demo_model, 0.5)
