"""``modelgen`` on the command line; every command's errors are caught once, in ``main``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from modelgen import __version__
from modelgen.errors import ManifestError, ModelgenError

log = logging.getLogger("modelgen")

EXIT_INVALID = 1  # the manifest is wrong: the user's to fix
EXIT_FAILED = 2  # something else went wrong (rendering, disk)


def _validate(args: argparse.Namespace) -> int:
    from modelgen.manifest import load

    manifest = load(args.manifest)
    print(f"{args.manifest}: valid ({manifest.name} {manifest.version}, {manifest.runtime}, {manifest.task})")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from modelgen.api import generate

    result = generate(args.manifest, args.output)
    print(f"{result.path}: {'written' if result.changed else 'unchanged'} ({result.files} files)")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from modelgen.docs import manifest_reference

    text = manifest_reference()
    if args.output:
        Path(args.output).write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelgen", description="Turn a trained model into a GitOps-managed service.")
    p.add_argument("--version", action="version", version=f"modelgen {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check a manifest and report every problem")
    v.add_argument("manifest", help="path to model.yaml")
    v.set_defaults(run=_validate)

    g = sub.add_parser("generate", help="render the model's service project")
    g.add_argument("manifest", help="path to model.yaml")
    g.add_argument("-o", "--output", default=".", help="folder to write <name>/ into (default: .)")
    g.set_defaults(run=_generate)

    d = sub.add_parser("docs", help="print reference documentation")
    d.add_argument("topic", choices=["manifest"])
    d.add_argument("-o", "--output", help="write to this file instead of stdout")
    d.set_defaults(run=_docs)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except ManifestError as err:
        print(_red(str(err)), file=sys.stderr)
        return EXIT_INVALID
    except ModelgenError as err:
        print(_red(f"error: {err}"), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _red(text: str) -> str:
    return f"\033[31m{text}\033[0m" if sys.stderr.isatty() else text


if __name__ == "__main__":
    sys.exit(main())
