"""``volrob report RESULTS_DIR -o report.html``: the self-contained HTML report of a study or a run."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="one self-contained HTML page of a study (volrob run) or a run folder",
        description="Write one HTML page of a finished study (a `volrob run` output folder) or run (the output "
                    "folder of evaluate, attack, robustness, transfer, query or universal), made from its own "
                    "tables and records only: the study at a glance (models, data, threat model, budgets, times, "
                    "device, versions, configuration, sanity flags), clean scores, white-box robustness with "
                    "bootstrap intervals and paired tests, transfer heatmaps and spectra, defences against their "
                    "reference and controls, query curves and the worst cases. Every image is embedded (the page "
                    "reads offline); every figure is also written as PNG and every table as CSV in "
                    "<page>_files/ beside it. With -o PAGE.md the page is written as Markdown linking those "
                    "files. Sections of stages that did not run are left out.",
    )
    p.add_argument("results", help="a study's output folder (holds study.json) or a run folder (holds run.json)")
    p.add_argument("-o", "--out", required=True, help="the page to write: .html (self-contained) or .md")
    p.add_argument("--title", help="the page title (default: 'Robustness report: <study name>')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from volrob.report.build import build_report

    report = build_report(args.results, args.out, title=args.title)
    print(f"report: {report.page} ({len(report.sections)} sections: {', '.join(report.sections)}); figures and "
          f"tables in {report.files}")
    return 0
