"""`python -m linerelifer_addon refine|styles`: refine image files from the command line.

Exit codes: 0 success, 2 bad input or usage (one line naming the file and the cause),
1 internal error. One warm worker serves every file of a call. Inputs are never
overwritten.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .core.client import Cancelled, RequestError, WorkerClient, WorkerError, WorkerStartError
from .core.conversion import MAX_STRENGTH, from_coverage, srgb_to_linear, to_coverage
from .core.nib import MAX_THICK_THIN
from .core.styles import StyleError, ink_tone, list_styles, resolve_style, user_styles_dir


class UsageError(ValueError):
    """Bad command-line use; exit code 2."""


def _image_files(folder: Path) -> list[Path]:
    from .imagefiles import EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and not p.name.startswith("."))


def plan_outputs(inputs: Sequence[str], output: str) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs, and whether the output is a folder (it keeps each input's name)."""
    files: list[Path] = []
    folder_input = False
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            folder_input = True
            found = _image_files(p)
            if not found:
                raise UsageError(f"{p}: folder holds no images ({', '.join(('.png', '.jpg', '.tif', '.exr'))})")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"{p}: file does not exist")
    out = Path(output)
    to_folder = folder_input or len(files) > 1 or out.is_dir() or output.endswith(os.sep)
    if to_folder:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: is a file, but several inputs need an output folder")
        from .imagefiles import EXTENSIONS

        if not out.exists() and out.suffix.lower() in EXTENSIONS:
            raise UsageError(f"{out}: names an image file, but several inputs need an output folder; "
                             "give a folder name")
        pairs = [(f, out / f.name) for f in files]
        names = [o.name for _, o in pairs]
        if len(set(names)) != len(names):
            raise UsageError(f"{out}: two inputs share a file name; refine them into different folders")
    else:
        pairs = [(files[0], out)]
    for src, dst in pairs:
        if dst.exists() and dst.resolve() == src.resolve():
            raise UsageError(f"{dst}: output would overwrite its input; choose another output path")
    return pairs, to_folder


def check_outputs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Refuse, before any work, outputs that could not be written: a refinement can take
    long, and finding out afterwards loses it."""
    from .imagefiles import EXTENSIONS

    folders: dict[Path, Path] = {}
    for _, dst in pairs:
        if dst.suffix.lower() not in EXTENSIONS:
            raise UsageError(f"{dst}: unsupported output format; use one of {', '.join(EXTENSIONS)}")
        if dst.is_dir():
            raise UsageError(f"{dst}: is a directory; choose another output name")
        folders.setdefault(dst.parent, dst)
    for folder, dst in folders.items():
        if not folder.is_dir():
            raise UsageError(f"{dst}: output folder {folder} does not exist")
        try:  # the way the output will be written: a temp file in that folder, renamed
            fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{dst.stem}-", suffix=".probe")
        except OSError as exc:
            raise UsageError(f"{dst}: cannot write in {folder} ({exc.strerror or exc})") from None
        os.close(fd)
        os.unlink(probe)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _error_lines(exc: BaseException, src: Path | None = None, hint: bool = False) -> str:
    """One `error:` line naming the file and the cause; any detail (a worker's last output)
    follows indented on the next lines."""
    from .imagefiles import ImageFileError

    first, _, rest = (str(exc).strip() or type(exc).__name__).partition("\n")
    # ImageFileError messages start with the path they are about (the input or the output).
    if src is not None and not isinstance(exc, ImageFileError) and str(src) not in first:
        first = f"{src}: {first}"
    if hint:
        first += " (run with --debug for details)"
    return f"error: {first}" + ("\n" + _indent(rest) if rest.strip() else "")


class _Progress:
    """One status line on stderr: files done and tiles of the current file."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.tty = sys.stderr.isatty()
        self.index, self.name = 0, ""

    def file(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.tiles(0, 0)

    def tiles(self, done: int, total: int) -> None:
        if not self.enabled or (not self.tty and done != total):
            return
        width = 24
        frac = done / total if total else 0.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = f"[{self.index}/{self.total}] [{bar}] tiles {done}/{total} {self.name}"
        sys.stderr.write(("\r" + line[:120].ljust(120)) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def refine_file(client: WorkerClient, src: Path, dst: Path, style: Path, strength: float = 1.0, tile: int = 0,
                progress: Callable[[int, int], None] | None = None,
                color: tuple[float, float, float] | None = None, thick_thin: float | None = 0.0) -> dict[str, float]:
    """One file in, one file out; returns the seconds each step took (for the benchmark).
    `thick_thin` None: the style's own.

    Strength 0 writes the input's lines exactly, without the worker."""
    from .imagefiles import is_premultiplied, read_image, write_image

    t0 = time.perf_counter()
    pixels = read_image(src)
    t1 = time.perf_counter()
    if strength == 0:  # the input as it is: no conversion can round or clip it
        t2 = t3 = t4 = time.perf_counter()
        out = pixels
    else:
        line = to_coverage(pixels, premultiplied=is_premultiplied(src))
        t2 = time.perf_counter()
        refined = client.refine(line.coverage, style, tile=tile, progress=progress, thick_thin=thick_thin)
        t3 = time.perf_counter()
        if color is not None and pixels.dtype.kind == "f":  # float files hold linear values
            color = tuple(float(v) for v in srgb_to_linear(np.asarray(color, np.float32)))
        out = from_coverage(line, refined, strength=strength, color=color)
        t4 = time.perf_counter()
    write_image(dst, out, premultiplied=is_premultiplied(src))
    t5 = time.perf_counter()
    return {"read": t1 - t0, "to_coverage": t2 - t1, "refine": t3 - t2, "from_coverage": t4 - t3,
            "write": t5 - t4, "total": t5 - t0}


def style_ink_color(style_path: Path) -> tuple[float, float, float] | None:
    """The grey the style's drawings were inked in (as displayed: sRGB-encoded), else None: a
    style trained on grey markers draws grey lines, not the input's black."""
    tone = ink_tone(style_path)
    return None if tone is None else (tone,) * 3


def cmd_refine(args: argparse.Namespace) -> int:
    from .imagefiles import ImageFileError

    if not 0.0 <= args.strength <= MAX_STRENGTH:
        raise UsageError(f"--strength {args.strength} is outside 0..{MAX_STRENGTH:g}; use 0 (input lines), "
                         f"1 (the style) or up to {MAX_STRENGTH:g} (exaggerated)")
    if args.thick_thin is not None and not 0.0 <= args.thick_thin <= MAX_THICK_THIN:
        raise UsageError(f"--thick-thin {args.thick_thin} is outside 0..{MAX_THICK_THIN:g}; use 0 (no nib: the network's "
                         f"widths) up to 1 (a broad nib's thick and thin), or leave it out for the style's own")
    if args.tile is not None and args.tile < 64:
        raise UsageError(f"--tile {args.tile} is too small; use 64 or more (256 or more runs faster)")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads} must be 1 or more (leave it out to use every core)")
    style = resolve_style(args.style)
    color = style_ink_color(style.path) if args.strength > 0 else None
    pairs, to_folder = plan_outputs(args.inputs, args.output)
    if to_folder:
        try:
            pairs[0][1].parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{pairs[0][1].parent}: cannot create the output folder ({exc.strerror})") from None
    check_outputs(pairs)
    progress = _Progress(len(pairs), not args.quiet)
    failures = crashes = 0
    client = WorkerClient(python=args.python, threads=args.threads)
    try:
        for i, (src, dst) in enumerate(pairs, 1):
            progress.file(i, src.name)
            t0 = time.perf_counter()
            try:
                refine_file(client, src, dst, style.path, strength=args.strength, tile=args.tile or 0,
                            progress=progress.tiles, color=color, thick_thin=args.thick_thin)
            except (WorkerStartError, RequestError):
                raise  # the setup or the style: every file would fail the same way
            except (ImageFileError, ValueError, WorkerError) as exc:
                # A bad file, or a worker that died on one: report it and go on with the next
                # file (the client starts a new worker).
                progress.close()
                if getattr(args, "debug", False):
                    traceback.print_exc()
                crashed = isinstance(exc, WorkerError)
                print(_error_lines(exc, src, hint=crashed and not getattr(args, "debug", False)), file=sys.stderr)
                failures += 1
                crashes += crashed
                continue
            if not args.quiet:
                progress.close()
                print(f"{src} -> {dst} ({time.perf_counter() - t0:.2f} s)", file=sys.stderr)
        if not args.quiet:
            peak = client.last_stats.get("rss_peak_mb")
            print(f"{len(pairs) - failures} refined, {failures} failed; worker started {client.starts} time(s)"
                  + (f", peak memory {peak:.0f} MB" if peak else ""), file=sys.stderr)
    finally:
        client.close()
    return 1 if crashes else 2 if failures else 0


def cmd_styles(args: argparse.Namespace) -> int:
    broken: list[tuple[str, str]] = []
    styles = list_styles(broken=broken)
    for s in styles:
        kind = "bundled" if s.bundled else "user"
        print(f"{s.name:<20} {kind:<8} {s.path}  {s.description}")
    if not styles:
        print("no styles installed", file=sys.stderr)
    for _, reason in broken:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"user styles folder: {user_styles_dir()} (set LINERELIFER_STYLES_DIR to use another)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m linerelifer_addon", description="Refine Freestyle lines.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refine", help="refine image files")
    r.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    r.add_argument("-o", "--output", required=True, help="output file, or folder for several inputs")
    r.add_argument("--style", default=None, help="style name, .keras or .tflite path (default: default)")
    r.add_argument("--strength", type=float, default=1.0, help="0 keeps the input lines exactly, 1 the style, up to 2 exaggerated (default 1)")
    r.add_argument("--thick-thin", type=float, default=None,
                   help="a broad nib's thick and thin drawn over the style's lines, 0 (off) to 1, where "
                        "strokes rising to the right come out about 1.5x as wide and those falling gently "
                        "to the right 0.6x, and lines the render drew wider or narrower more so (default: the "
                        "style's own, 1 for the default style, 0 for styles trained from drawings); "
                        "0.08-0.12 s a 1080p frame")
    r.add_argument("--tile", type=int, default=None, help="tile size in pixels (default: chosen per frame)")
    r.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    r.add_argument("--python", default=None, help="interpreter for the worker (default: LINERELIFER_PYTHON or this one)")
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    r.set_defaults(func=cmd_refine)
    s = sub.add_parser("styles", help="list bundled and user styles")
    s.set_defaults(func=cmd_styles)
    return p


def _terminate(signum: int, frame: object) -> None:
    # Unwind as Ctrl+C does, so that the worker is stopped and temp files are removed.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return 0 if exc.code == 0 else 2
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except (UsageError, StyleError, WorkerStartError, RequestError) as exc:
        if debug:
            traceback.print_exc()
        print(_error_lines(exc), file=sys.stderr)
        return 2
    except Cancelled:
        print("error: cancelled", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted (the frames written so far are complete; no half-written file is left)",
              file=sys.stderr)
        return 130
    except (WorkerError, Exception) as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            traceback.print_exc()
        first, _, rest = (str(exc).strip() or type(exc).__name__).partition("\n")
        print(f"error: internal error: {first}" + ("" if debug else " (run with --debug for details)")
              + ("\n" + _indent(rest) if rest.strip() else ""), file=sys.stderr)
        return 1
