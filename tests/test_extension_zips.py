"""The three per-platform extension zips: each passes Blender's validator and bundles the
LiteRT wheels of its own platform for both Pythons Blender ships (3.11: Blender 4.2-5.0;
3.13: 5.1 and later, which cannot be installed here, so its wheels are checked by their
tags with Blender's own wheel-tag functions)."""
from __future__ import annotations

import importlib.util
import tomllib
import zipfile

import pytest

from conftest import ROOT


def _load(name: str, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def build_mod():
    if importlib.util.find_spec("bpy") is None:
        pytest.skip("bpy is not installed")
    return _load("build_extension", ROOT / "tools" / "build_extension.py")


@pytest.fixture(scope="module")
def zips(build_mod, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("zips")
    built = build_mod.build_all(out, verbose=False)
    for platform, path in built.items():
        print(f"\n{path.name}: {path.stat().st_size / 1e6:.1f} MB")
    return built


@pytest.fixture(scope="module")
def blender_ext(build_mod):
    return _load("blender_ext", build_mod.blender_ext_script())


def test_three_platforms_built_and_validated(build_mod, zips) -> None:
    assert sorted(zips) == ["linux-x64", "macos-arm64", "windows-x64"]
    for path in zips.values():
        build_mod.validate(path)  # raises BuildError on failure


@pytest.mark.parametrize("platform", ["linux-x64", "macos-arm64", "windows-x64"])
def test_zip_bundles_its_platforms_wheels_for_both_pythons(zips, blender_ext, platform: str) -> None:
    with zipfile.ZipFile(zips[platform]) as z:
        manifest = tomllib.loads(z.read("blender_manifest.toml").decode())
        names = z.namelist()
        assert "styles/default.tflite" in names and "styles/default.json" in names
    assert manifest["platforms"] == [platform]
    assert "network" not in manifest.get("permissions", {}), "nothing downloads at run time"
    wheels = [w.removeprefix("./wheels/") for w in manifest["wheels"]]
    assert all(f"wheels/{w}" in names for w in wheels)
    versions = sorted(v for w in wheels for v in blender_ext.python_versions_from_wheel(w))
    assert versions == [(3, 11), (3, 13)], wheels
    for w in wheels:
        assert w.startswith("ai_edge_litert-2.3.0-"), w
        assert blender_ext.blender_platform_compatible_with_wheel_platform_from_filepath(platform, w), (platform, w)
        for other in {"linux-x64", "macos-arm64", "windows-x64"} - {platform}:
            assert not blender_ext.blender_platform_compatible_with_wheel_platform_from_filepath(other, w)
