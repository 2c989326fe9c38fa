"""Entry script for the worker process.

Started by path so it works wherever the package is installed (inside Blender it is named
`bl_ext.<repo>.linerelifer`): it puts the package's parent folder on sys.path and runs the
server from the package of whatever name it has.
"""
import importlib
import os
import sys

if __name__ == "__main__":
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[0] = os.path.dirname(package_dir)  # not worker/, whose modules would shadow others
    server = importlib.import_module(os.path.basename(package_dir) + ".worker.server")
    code = server.main(sys.argv[1:])
    sys.stderr.flush()
    # Skip interpreter teardown: TensorFlow's thread pools can abort it while a reader waits.
    os._exit(code)
