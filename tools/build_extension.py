#!/usr/bin/env python3
"""Build the LineRelifer Blender extension: ``dist/linerelifer-<version>-<platform>.zip``, one per platform.

The package code lives in ``linerelifer_addon/`` and the manifest at the top
of the repository; Blender wants both at the root of the archive.  This
script stages ``blender_manifest.toml`` + the package contents (Blender side,
Blender-free core, worker, bundled styles -- not the CLI) in a temp folder,
runs Blender's own extension builder on it (``blender_ext.py build``, a
plain Python script shipped in the bpy wheel) and then validates the archive
(``blender_ext.py validate --valid-tags``) with the tag list generated from
Blender's ``tags.py``.

The extension runs its styles with LiteRT in Blender's own Python, so each zip bundles the
``ai-edge-litert`` wheels of one platform for both Pythons Blender ships (3.11 in Blender
4.2-5.0, 3.13 from 5.1); they are downloaded from PyPI at build time into ``.whl/`` (kept
there, never committed), and the zip's manifest lists them with its platform.

Usage::

    .venv/bin/python tools/build_extension.py [--platform linux-x64|macos-arm64|windows-x64|all]
                                              [--out-dir dist] [--allow-missing-style]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "linerelifer_addon"
MANIFEST = ROOT / "blender_manifest.toml"

# Top-level package modules that only the command line uses (they import
# OpenCV, which Blender lacks).
ROOT_MODULES_EXCLUDED = {"cli.py", "__main__.py", "imagefiles.py"}
SUBPACKAGES = ("blender", "core", "worker")
STYLE_SUFFIXES = (".keras", ".tflite", ".json")
DEFAULT_STYLE = ("default.keras", "default.tflite", "default.json")
WHEEL_CACHE = ROOT / ".whl"

# The runtime the zips bundle, and the wheel platform tag PyPI has it under for each of
# Blender's platforms; one wheel per Python that Blender ships.
LITERT = ("ai-edge-litert", "2.3.0")
PYTHONS = ("3.11", "3.13")
PLATFORM_TAGS = {
    "linux-x64": "manylinux_2_27_x86_64",
    "macos-arm64": "macosx_12_0_arm64",
    "windows-x64": "win_amd64",
}


class BuildError(RuntimeError):
    pass


def bpy_scripts_dir() -> Path:
    """``.../site-packages/bpy/<version>/scripts`` without importing bpy."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the bpy module is not installed in this Python; use the project's .venv")
    base = Path(list(spec.submodule_search_locations)[0])
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"blender_ext.py was not found under {base}")
    return found[-1].parents[3]


def blender_ext_script() -> Path:
    return bpy_scripts_dir() / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"


def write_valid_tags(dest: Path) -> Path:
    """Blender's tag lists (tags.py holds Python sets) as the JSON file
    ``blender_ext.py --valid-tags`` wants."""
    tags_py = bpy_scripts_dir() / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    tree = ast.parse(tags_py.read_text(encoding="utf-8"))
    data = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            data[node.targets[0].id] = ast.literal_eval(node.value)
    if "addons" not in data or "themes" not in data:
        raise BuildError(f"{tags_py} does not define 'addons' and 'themes'")
    dest.write_text(json.dumps({"add-on": sorted(data["addons"]), "theme": sorted(data["themes"])}, indent=1),
                    encoding="utf-8")
    return dest


def read_manifest() -> dict:
    with open(MANIFEST, "rb") as fh:
        return tomllib.load(fh)


def _ignore(_dir, names):
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo")) or n.startswith(".")]


def stage(dest: Path, allow_missing_style: bool = False) -> list[str]:
    """Copy the manifest and the package contents into ``dest``."""
    shutil.copy2(MANIFEST, dest / "blender_manifest.toml")
    for f in sorted(PACKAGE.glob("*.py")):
        if f.name not in ROOT_MODULES_EXCLUDED:
            shutil.copy2(f, dest / f.name)
    if not (dest / "__init__.py").is_file():
        raise BuildError(f"{PACKAGE / '__init__.py'} is missing")
    for sub in SUBPACKAGES:
        src = PACKAGE / sub
        if not (src / "__init__.py").is_file():
            raise BuildError(f"{src} is not a Python package")
        shutil.copytree(src, dest / sub, ignore=_ignore)
    styles_src = PACKAGE / "styles"
    (dest / "styles").mkdir()
    copied = []
    if styles_src.is_dir():
        for f in sorted(styles_src.iterdir()):
            if f.is_file() and f.suffix in STYLE_SUFFIXES:
                shutil.copy2(f, dest / "styles" / f.name)
                copied.append(f.name)
    missing = [n for n in DEFAULT_STYLE if n not in copied]
    if missing and not allow_missing_style:
        raise BuildError(f"the bundled default style is missing ({', '.join(missing)} in {styles_src}); "
                         "train/export it first or pass --allow-missing-style")
    return copied


def current_platform() -> str:
    """Blender's name for this machine's platform (the zip the tests install)."""
    import platform

    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")
    return f"{system}-{arch}"


def wheel_name(platform: str, python: str) -> str:
    name, version = LITERT
    py = "cp" + python.replace(".", "")
    return f"{name.replace('-', '_')}-{version}-{py}-{py}-{PLATFORM_TAGS[platform]}.whl"


def fetch_wheels(platform: str, cache: Path = WHEEL_CACHE, verbose: bool = True) -> list[Path]:
    """The platform's LiteRT wheels for every bundled Python, downloaded once into `cache`."""
    if platform not in PLATFORM_TAGS:
        raise BuildError(f"platform {platform!r} is not one of {', '.join(PLATFORM_TAGS)}")
    cache.mkdir(parents=True, exist_ok=True)
    found = []
    for python in PYTHONS:
        path = cache / wheel_name(platform, python)
        if not path.is_file():
            if verbose:
                print(f"downloading {path.name}")
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                  "--disable-pip-version-check", "--quiet", "--python-version", python,
                  "--platform", PLATFORM_TAGS[platform], "-d", str(cache), "==".join(LITERT)])
            if not path.is_file():
                raise BuildError(f"pip did not download {path.name}; check the network or the pinned version")
        found.append(path)
    return found


def platform_manifest(text: str, platform: str, wheels: list[str]) -> str:
    """The manifest with this zip's platform and wheels, placed before its first table."""
    lines = (f'platforms = ["{platform}"]\n'
             "wheels = [\n" + "".join(f'  "./wheels/{w}",\n' for w in wheels) + "]\n\n")
    at = text.find("\n[")
    if at < 0:
        return text.rstrip("\n") + "\n\n" + lines
    return text[:at + 1] + lines + text[at + 1:]


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(map(str, args[1:3]))} failed:\n{out}")
    return out


def validate(zip_path: Path, tags_json: Path | None = None) -> str:
    """``blender_ext.py validate`` with Blender's valid tags; BuildError on failure."""
    with tempfile.TemporaryDirectory(prefix="linerelifer-tags-") as tmp:
        tags = tags_json or write_valid_tags(Path(tmp) / "tags.json")
        return _run([sys.executable, str(blender_ext_script()), "validate", str(zip_path),
                     "--valid-tags", str(tags)])


def build(out_dir: Path | str | None = None, allow_missing_style: bool = False, verbose: bool = True,
          platform: str | None = None) -> Path:
    """Build and validate the zip for one platform (default: this machine's)."""
    platform = platform or current_platform()
    manifest = read_manifest()
    out_dir = Path(out_dir) if out_dir else ROOT / "dist"
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}-{platform.replace('-', '_')}.zip"
    wheels = fetch_wheels(platform, verbose=verbose)
    with tempfile.TemporaryDirectory(prefix="linerelifer-build-") as tmp:
        tmp = Path(tmp)
        staging = tmp / "linerelifer"
        staging.mkdir()
        styles = stage(staging, allow_missing_style)
        (staging / "wheels").mkdir()
        for w in wheels:
            shutil.copy2(w, staging / "wheels" / w.name)
        text = (staging / "blender_manifest.toml").read_text(encoding="utf-8")
        (staging / "blender_manifest.toml").write_text(
            platform_manifest(text, platform, [w.name for w in wheels]), encoding="utf-8")
        tags = write_valid_tags(tmp / "tags.json")
        partial = tmp / zip_path.name
        out = _run([sys.executable, str(blender_ext_script()), "build", "--source-dir", str(staging),
                    "--output-filepath", str(partial), "--valid-tags", str(tags)])
        if verbose and out:
            print(out)
        out = validate(partial, tags)
        if verbose and out:
            print(out)
        # Temp file, then rename into place.
        final_tmp = out_dir / f".{zip_path.name}.tmp"
        shutil.copy2(partial, final_tmp)
        os.replace(final_tmp, zip_path)
    if verbose:
        print(f"built {zip_path} ({zip_path.stat().st_size / 1e6:.1f} MB; styles: {', '.join(styles) or 'none'}; "
              f"wheels: {', '.join(w.name for w in wheels)})")
    return zip_path


def build_all(out_dir: Path | str | None = None, allow_missing_style: bool = False,
              verbose: bool = True) -> dict[str, Path]:
    return {p: build(out_dir, allow_missing_style, verbose, platform=p) for p in PLATFORM_TAGS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=str(ROOT / "dist"), help="where the zip goes (default: dist/)")
    ap.add_argument("--allow-missing-style", action="store_true",
                    help="build even when the bundled default style (styles/default.keras, .tflite, .json) is not there yet")
    ap.add_argument("--validate-only", metavar="ZIP", help="only validate an existing archive")
    ap.add_argument("--platform", default="all", choices=("all", *PLATFORM_TAGS),
                    help="which platform's zip to build (default: all three)")
    args = ap.parse_args(argv)
    try:
        if args.validate_only:
            print(validate(Path(args.validate_only)) or "valid")
        elif args.platform == "all":
            build_all(args.out_dir, args.allow_missing_style)
        else:
            build(args.out_dir, args.allow_missing_style, platform=args.platform)
    except BuildError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
