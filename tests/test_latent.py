"""Recipes and walks (studio.latent): what a keyframe animation is made of, without a generator."""
from __future__ import annotations

import json

import pytest
import torch

from studio.latent import EASINGS, Keyframe, Recipe, Walk, circle_through, ease, even_walk, seed_to_z

Z_DIM = 16


def keyframe_latents(walk: Walk) -> torch.Tensor:
    return torch.stack([key.recipe.latent(Z_DIM) for key in walk.keyframes])


def test_a_walk_starts_and_ends_exactly_on_its_keyframes_and_passes_each():
    walk = even_walk([Recipe(seed=s) for s in (3, 17, 42)], 13, mode="once", easing="ease-in-out")
    keys = keyframe_latents(walk)
    path = walk.latents(keys)
    assert len(path) == 13
    assert torch.equal(path[0], keys[0]) and torch.equal(path[-1], keys[-1])
    first_of_second_move = walk.keyframes[0].frames
    assert torch.equal(path[first_of_second_move], keys[1])


def test_a_loop_plays_seamlessly_its_last_frame_is_not_its_first():
    walk = even_walk([Recipe(seed=s) for s in (3, 17)], 10, mode="loop")
    path = walk.latents(keyframe_latents(walk))
    assert len(path) == 10
    assert torch.equal(path[0], keyframe_latents(walk)[0])
    assert not torch.allclose(path[-1], path[0])
    # The step from the last frame back to the first is as long as the others: no seam.
    steps = (path.roll(-1, 0) - path).norm(dim=1)
    assert steps[-1] == pytest.approx(steps[:-1].mean().item(), rel=0.2)


def test_ping_pong_goes_there_and_back_without_doubling_the_turns():
    walk = even_walk([Recipe(seed=s) for s in (1, 2, 3)], 12, mode="ping-pong")
    path = walk.latents(keyframe_latents(walk))
    assert len(path) == 12
    turn = len(path) // 2
    assert torch.equal(path[turn], keyframe_latents(walk)[-1])
    assert not torch.equal(path[turn - 1], path[turn]) and not torch.equal(path[turn + 1], path[turn])
    assert torch.equal(path[turn - 1], path[turn + 1])          # the way back retraces the way there
    assert not torch.equal(path[-1], path[0])                    # and it loops on to the start seamlessly


def test_holds_and_per_move_frames_are_the_timing_of_the_walk():
    a, b = Recipe(seed=1), Recipe(seed=2)
    walk = Walk((Keyframe(a, frames=4, hold=2), Keyframe(b, frames=6, hold=1)), mode="loop")
    steps = walk.steps()
    assert len(steps) == 2 + 4 + 1 + 6
    path = walk.latents(keyframe_latents(walk))
    assert all(torch.equal(path[i], path[0]) for i in range(3))   # held for 2 frames more than one
    assert torch.equal(path[6], path[7])                          # b, held one frame


@pytest.mark.parametrize("easing", EASINGS)
def test_easing_is_monotone_and_hits_its_ends(easing):
    values = [ease(easing, i / 100) for i in range(101)]
    assert values[0] == 0 and values[-1] == 1
    assert all(later >= earlier for earlier, later in zip(values, values[1:]))


def test_ease_in_out_starts_and_arrives_gently():
    assert ease("ease-in-out", 0.05) < 0.05 and ease("ease-in-out", 0.95) > 0.95
    with pytest.raises(ValueError, match="unknown easing"):
        ease("bounce", 0.5)


@pytest.mark.parametrize("mode,frames,expected", [("once", 25, 25), ("loop", 25, 25), ("ping-pong", 24, 24),
                                                   ("ping-pong", 25, 24)])
def test_an_even_walk_has_the_frames_asked_for(mode, frames, expected):
    walk = even_walk([Recipe(seed=s) for s in range(4)], frames, mode=mode, hold=2)
    assert len(walk.steps()) == expected


def test_too_few_frames_for_the_keyframes_are_refused():
    with pytest.raises(ValueError, match="too few for 4 keyframes"):
        even_walk([Recipe(seed=s) for s in range(4)], 5, mode="loop", hold=1)
    with pytest.raises(ValueError, match="at least two keyframes"):
        even_walk([Recipe(seed=1)], 30)


def test_a_seed_stays_the_short_form_and_recipes_round_trip_through_json():
    assert Recipe(seed=42).to_json() == 42 and Recipe.from_json(42) == Recipe(seed=42)
    moved = Recipe(seed=42, psi=0.7, offsets=((3, 1.5), (0, -0.5)))
    stored = Recipe.of_z(torch.randn(Z_DIM))
    for recipe in (moved, stored):
        again = Recipe.from_json(json.loads(json.dumps(recipe.to_json())))
        assert again == recipe
        assert torch.equal(again.latent(Z_DIM, torch.eye(Z_DIM)), recipe.latent(Z_DIM, torch.eye(Z_DIM)))
    walk = even_walk([moved, stored, Recipe(seed=1)], 30, mode="ping-pong", easing="ease-in-out", hold=2)
    assert Walk.from_json(json.loads(json.dumps(walk.to_json()))) == walk


def test_a_slider_moved_and_moved_back_gives_back_the_same_latent():
    directions = torch.linalg.qr(torch.randn(Z_DIM, 4))[0].T
    recipe = Recipe(seed=5, psi=0.8)
    there = recipe.moved({2: 1.7})
    back = there.moved({2: 0.0})
    assert back == recipe and torch.equal(back.latent(Z_DIM, directions), recipe.latent(Z_DIM, directions))
    assert (there.latent(Z_DIM, directions) - recipe.latent(Z_DIM, directions)).norm() == pytest.approx(1.7)


def test_a_recipe_names_what_it_needs():
    with pytest.raises(ValueError, match="direction 3"):
        Recipe(seed=1, offsets=((3, 1.0),)).latent(Z_DIM, torch.eye(Z_DIM)[:2])
    with pytest.raises(ValueError, match="either a seed or a stored z"):
        Recipe()
    with pytest.raises(ValueError, match="the generator takes 16"):
        Recipe(z=(0.0,) * 8).latent(Z_DIM)


@pytest.mark.parametrize("recipe,message", [
    (dict(seed=1, offsets=((0, float("nan")),)), "finite number of σ, not 0=nan"),
    (dict(seed=1, offsets=((2, float("-inf")),)), "finite number of σ, not 2=-inf"),
    (dict(z=(0.0, float("inf"))), "finite numbers only"),
    (dict(seed=2**64), "a seed is a whole number from 0 to 18446744073709551615"),
    (dict(seed=-1), "not -1"),
])
def test_a_recipe_refuses_what_no_generator_can_render(recipe, message):
    with pytest.raises(ValueError, match=message):
        Recipe(**recipe)
    assert Recipe(seed=2**64 - 1).latent(Z_DIM).isfinite().all()


def test_a_seamless_loop_is_a_closed_circle_through_the_sample():
    z = seed_to_z(9, 64)
    points = circle_through(z, 6, 0.45, seed=1)
    assert torch.equal(points[0], z)
    norms = torch.stack([p.norm() for p in points])
    assert torch.allclose(norms, z.norm().expand(6), rtol=1e-5)       # stays where latents are likely
    gaps = torch.stack([(points[i] - points[(i + 1) % 6]).norm() for i in range(6)])
    assert torch.allclose(gaps, gaps[0].expand(6), rtol=1e-4)           # evenly round, back to the start
    assert torch.equal(torch.stack(circle_through(z, 6, 0.45, seed=1)), torch.stack(points))
