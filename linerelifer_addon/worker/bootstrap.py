"""Entry script for the worker process.

Started by path so it works wherever the package is installed (inside Blender it is named
`bl_ext.<repo>.linerelifer`). The package is loaded from its own folder under its own name,
without putting the folder that holds it on sys.path: inside Blender that folder holds every
other extension, and one named like a module the worker imports (numpy, say) would shadow it.
`--site DIR` (repeatable) adds folders to search after the interpreter's own, such as the
one Blender installed the extension's bundled wheels to.
"""
import importlib
import importlib.util
import os
import sys
import traceback


def _load_package(package_dir: str):
    name = os.path.basename(package_dir)
    spec = importlib.util.spec_from_file_location(name, os.path.join(package_dir, "__init__.py"),
                                                  submodule_search_locations=[package_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return name


def _take_site_args(argv: list) -> list:
    rest = []
    it = iter(argv)
    for arg in it:
        if arg == "--site":
            site = next(it, "")
            if site and site not in sys.path:
                sys.path.append(site)  # after the interpreter's own folders: they win
        else:
            rest.append(arg)
    return rest


if __name__ == "__main__":
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    del sys.path[0]  # worker/ itself: its module names would shadow others
    argv = _take_site_args(sys.argv[1:])
    code = 1
    try:
        server = importlib.import_module(_load_package(package_dir) + ".worker.server")
        code = server.main(argv)
    except BaseException:  # even a failure to report a failure (the client gone, stderr closed)
        try:
            traceback.print_exc()
        except OSError:
            pass
    finally:
        try:
            sys.stderr.flush()
        except OSError:
            pass
        # Skip interpreter teardown: TensorFlow's and XNNPACK's thread pools can hang or abort
        # it while the request reader still waits on stdin.
        os._exit(code)
