"""The LiteRT backend: the `.tflite` file agrees with the `.keras` network, tiled or not, and
its worker runs where TensorFlow is not installed at all."""
import subprocess

import numpy as np
import pytest

from linerelifer_addon.core.backends import BACKEND_ENV, choose_backend, tflite_path
from linerelifer_addon.core.client import RequestError, WorkerClient
from linerelifer_addon.worker.engine import Engine
from linerelifer_addon.worker.litert import LiteRTEngine

from conftest import line_image, python_with_only


@pytest.fixture(scope="module")
def litert_only_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """numpy and ai-edge-litert, nothing else: no TensorFlow, no Keras."""
    python = python_with_only(tmp_path_factory.mktemp("litert-only"), ("numpy", "ai_edge_litert"))
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('tensorflow'), u.find_spec('keras'), u.find_spec('ai_edge_litert') is not None)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["None", "None", "True"], probe.stdout
    return str(python)


@pytest.mark.parametrize("style", ["default_style", "random_style"])
def test_tflite_matches_keras_tiled_and_whole(style: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(style)
    keras_engine, lite = Engine(path, precision="float32"), LiteRTEngine(path, threads=2)
    img = line_image(700, 900, seed=11, width=3.0)
    reference = keras_engine.refine_whole(img)
    assert np.abs(lite.refine_whole(img) - reference).max() <= 1e-4
    for tile in (176, 256, 520, 0):  # seams in different places; 0 = the size chosen per frame
        tiled = lite.refine(img, tile=tile, skip_blank=False)
        assert np.abs(tiled - reference).max() <= 1e-4, tile
    assert abs(lite.blank_output() - keras_engine.blank_output()) <= 1e-4  # decides tile skipping


def test_export_refuses_a_file_that_disagrees(default_style, random_style) -> None:
    """The export check compares with the network it was made from, so it can fail."""
    import keras

    from training.tflite import check_against_keras

    from linerelifer_addon.core.styles import read_meta

    other = keras.saving.load_model(random_style, compile=False, safe_mode=True)
    data = tflite_path(default_style).read_bytes()
    margin = int(read_meta(default_style)["margin"])
    with pytest.raises(ValueError, match="differs from the Keras network"):
        check_against_keras(other, data, margin)
    gen = keras.saving.load_model(default_style, compile=False, safe_mode=True)
    assert check_against_keras(gen, data, margin) <= 1e-4
    # The folded graph differs near a tile's edge (its box blurs' edge rule), which tiling never uses.
    with pytest.raises(ValueError, match="differs from the Keras network"):
        check_against_keras(gen, data, 0)


def test_backend_choice(tmp_path, default_style, monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_backend(default_style) == "litert"
    assert choose_backend(default_style, litert_ok=False) == "tensorflow"
    keras_only = tmp_path / "k.keras"
    assert choose_backend(keras_only) == "tensorflow"
    monkeypatch.setenv(BACKEND_ENV, "tensorflow")
    assert choose_backend(default_style) == "tensorflow"
    monkeypatch.setenv(BACKEND_ENV, "onnx")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        choose_backend(default_style)


def test_worker_without_tensorflow(litert_only_python, default_style, random_style, tmp_path) -> None:
    img = line_image(500, 640, seed=12)
    expected = LiteRTEngine(default_style).refine(img)  # blank paper far from ink left blank, as the worker does
    with WorkerClient(python=litert_only_python) as client:
        out = client.refine(img, default_style, tile=0, at_width=False)  # the network's own output
        assert client.last_stats["backend"] == "litert" and client.last_stats["precision"] == "float32"
        assert np.abs(out - expected).max() < 1e-5
        assert client.loaded_modules() == ["ai_edge_litert"]
        versions = client.info()
        assert versions["tensorflow"] is None and versions["litert"] == "2.3.0"
        # A style with only a .keras file cannot run here: one clear sentence, worker kept.
        keras_only = tmp_path / "kerasonly.keras"
        keras_only.write_bytes(random_style.read_bytes())
        keras_only.with_suffix(".json").write_text(random_style.with_suffix(".json").read_text())
        with pytest.raises(RequestError, match="no LiteRT file .* no TensorFlow"):
            client.refine(img, keras_only)
        assert client.refine(img[:100, :100], default_style).shape == (100, 100) and client.starts == 1
    # TensorFlow asked for where there is none: the message names the setting, not the style.
    with WorkerClient(python=litert_only_python, backend="tensorflow") as client:
        with pytest.raises(RequestError, match=r"TensorFlow was asked for \(LINERELIFER_BACKEND=tensorflow\) but"):
            client.refine(img[:100, :100], default_style)


def test_backend_setting_reaches_the_worker(default_style, monkeypatch: pytest.MonkeyPatch) -> None:
    img = line_image(200, 260, seed=13)
    monkeypatch.setenv(BACKEND_ENV, "tensorflow")
    with WorkerClient() as client:
        tf_out = client.refine(img, default_style, tile=0)
        assert client.last_stats["backend"] == "tensorflow"
        assert "tensorflow" in client.loaded_modules()
    monkeypatch.delenv(BACKEND_ENV)
    with WorkerClient() as client:
        lite_out = client.refine(img, default_style, tile=0)
        assert client.last_stats["backend"] == "litert"
        assert "tensorflow" not in client.loaded_modules()
    # TensorFlow may run in bfloat16 here: its results stay within about 0.01 of float32.
    assert np.abs(tf_out - lite_out).max() < 0.03


def test_broken_tflite_is_a_request_error(tmp_path, default_style) -> None:
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3 but not really a flatbuffer" * 10)
    broken.with_suffix(".json").write_text(default_style.with_suffix(".json").read_text())
    with WorkerClient() as client:
        with pytest.raises(RequestError, match="broken.tflite is not a LiteRT model"):
            client.refine(np.zeros((20, 20), np.float32), broken)
        assert client.refine(np.zeros((20, 20), np.float32), default_style).shape == (20, 20)
