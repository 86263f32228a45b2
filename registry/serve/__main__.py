"""The process behind `registry serve`: python -m registry.serve --host H --port P [--auto-launch]
[--api-key-file F] [--allow-host NAME]... [--cors ORIGIN]... [--url U] [--keep-alive SECONDS]"""

import argparse
import sys

from . import DEFAULT_PORT, KEY_FILE_FLAG, read_key, run
from ..errors import RegistryError

parser = argparse.ArgumentParser(prog="python -m registry.serve")
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=DEFAULT_PORT)
parser.add_argument("--auto-launch", action="store_true")
parser.add_argument(KEY_FILE_FLAG, dest="key_file")
parser.add_argument("--allow-host", action="append", default=[])
parser.add_argument("--cors", action="append", default=[])
parser.add_argument("--url", default=None)
parser.add_argument("--keep-alive", type=float, default=None)
args = parser.parse_args()
try:
    key = read_key(args.key_file) if args.key_file else None
    run(args.host, args.port, args.auto_launch, key, args.allow_host, args.cors, url=args.url, keep_alive=args.keep_alive)
except RegistryError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
