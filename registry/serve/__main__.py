"""The process behind `registry serve`: python -m registry.serve --host H --port P [--auto-launch] [--url U]."""

import argparse
import sys

from . import DEFAULT_PORT, run
from ..errors import RegistryError

parser = argparse.ArgumentParser(prog="python -m registry.serve")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=DEFAULT_PORT)
parser.add_argument("--auto-launch", action="store_true")
parser.add_argument("--url", default=None)
args = parser.parse_args()
try:
    run(args.host, args.port, args.auto_launch, url=args.url)
except RegistryError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
