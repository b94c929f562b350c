"""``volrob synth``: write a synthetic BraTS-2021-style data set (case folders + manifest.json)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from volrob.data.synth import MIN_SIDE, synthesize


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``synth`` sub-command."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic BraTS-like brain MRI with gliomas",
        description="Write synthetic BraTS-2021-style cases (T1, T1ce, T2, FLAIR, labels) and DIR/manifest.json.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="output folder (empty or new)")
    p.add_argument("--cases", type=int, default=24, metavar="N", help="number of cases (default 24)")
    p.add_argument("--shape", type=int, nargs=3, default=[96, 96, 96], metavar=("D", "H", "W"),
                   help=f"volume shape in voxels of 1 mm, each side >= {MIN_SIDE} (default 96 96 96)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed, >= 0 (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F", help="share of validation cases")
    p.add_argument("--test-fraction", type=float, default=0.2, metavar="F", help="share of test cases")
    p.add_argument("--keep-skull", action="store_true", help="keep scalp and skull (default: skull-stripped)")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR, replacing files of the same name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Synthesise the data set; prints one summary line."""
    start = time.perf_counter()
    manifest = synthesize(
        args.output,
        cases=args.cases,
        shape=tuple(args.shape),
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        skull_strip=not args.keep_skull,
        overwrite=args.force,
        progress=sys.stderr.isatty(),
    )
    counts = {s: len(manifest.split(s)) for s in ("train", "val", "test")}
    shape = "x".join(str(n) for n in args.shape)
    print(f"synthesised {len(manifest.cases)} cases ({shape}, seed {args.seed}) into {args.output}: "
          f"train {counts['train']}, val {counts['val']}, test {counts['test']} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
