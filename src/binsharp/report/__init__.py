"""Benchmark reports: result tables, figures and a self-contained HTML page.

This package only renders: the results come from :func:`binsharp.evaluation.bench.run_benchmark`
(quality, complexity, size, latency of classical methods and pretrained networks).

* :mod:`binsharp.report.tables` -- the tables (Markdown, HTML, text).
* :mod:`binsharp.report.figures` -- RGB composites with one stretch and zoomed insets, error maps, the
  full-resolution view, OPs vs quality, training curves (PNG, matplotlib Agg).
* :mod:`binsharp.report.html` -- the HTML page (figures embedded).

:func:`write_report` writes all of it for one benchmark result into a directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from binsharp import fileio
from binsharp.fileio import atomic_output

__all__ = ["write_figures", "write_markdown", "write_json", "write_report", "markdown_report"]


def markdown_report(report: dict[str, Any], *, title: str = "binsharp benchmark") -> str:
    """The results tables of ``report`` as one Markdown document, with the settings and machine."""
    from binsharp.report.tables import benchmark_tables, summary_lines

    s = report.get("settings", {})
    mach = report.get("machine", {})
    lines = [f"## {title}", ""]
    lines.append(
        f"binsharp {report.get('binsharp_version')}; data `{s.get('data')}`; networks pretrained on "
        f"`{s.get('pretrained')}`; machine: {mach.get('cpu', mach.get('machine', '?'))}, "
        f"{mach.get('cpu_count')} cores, torch {mach.get('torch', '?')}."
    )
    lines.append("")
    lines.append(
        "Quality indexes are deterministic for given data, weights and software: rerunning the command "
        "reproduces them to +-1 in the last printed digit (thread-count dependent float rounding in the "
        "networks); latencies are measurements and vary from run to run and machine to machine."
    )
    lines.append("")
    summary = summary_lines(report)
    if summary:
        lines += ["### Summary", "", *(f"- {s}" for s in summary), ""]
    for t in benchmark_tables(report):
        lines.append(t.to_markdown())
    return "\n".join(lines)


def write_markdown(path: str | os.PathLike, report: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write :func:`markdown_report` atomically."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(markdown_report(report), encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, report: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write the report atomically as indented JSON (non-finite values as strings, see
    :func:`binsharp.fileio.strict_json`)."""
    return fileio.write_json(path, report, overwrite=overwrite, default=str)


def write_figures(result: Any, out_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """Write the figures of a :class:`~binsharp.evaluation.bench.BenchResult` into ``out_dir``.

    Returns ``(caption, path)`` of each PNG written: reduced-resolution composites, RMS-error and SAM maps,
    the full-resolution view, OPs vs Q2n (networks with results and counts), measured latency vs Q2n
    (methods with results and their deployed latency, :func:`~binsharp.report.tables.cost_quality_points`)
    and training curves (zoo logs).
    """
    from binsharp.report import figures as F
    from binsharp.report.tables import cost_quality_points

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, Path]] = []
    report = result.report
    rr = result.samples.get("rr")
    if rr and rr["fused"] and "gt" in rr["inputs"]:
        gt = rr["inputs"]["gt"]
        rgb = rr["sensor"].rgb
        i = rr["index"]
        written.append(
            (
                f"Reduced resolution, test image {i}: RGB composites (bands {list(rgb)}), one 2-98 % stretch "
                "computed on the ground truth for every panel; yellow square magnified in the corner.",
                F.plot_composites(rr["fused"], gt, rgb, out / "composites_rr.png", title=f"test image {i}"),
            )
        )
        written.append(
            (
                f"Reduced resolution, test image {i}: RMS error over bands against the ground truth (DN), "
                "one colour scale for all methods.",
                F.plot_error_maps(rr["fused"], gt, out / "errors_rr.png", kind="abs"),
            )
        )
        written.append(
            (
                f"Reduced resolution, test image {i}: per-pixel spectral angle (degrees), one colour scale.",
                F.plot_error_maps(rr["fused"], gt, out / "sam_rr.png", kind="sam"),
            )
        )
    fr = result.samples.get("fr")
    if fr and fr["fused"]:
        rgb = fr["sensor"].rgb
        i = fr["index"]
        written.append(
            (
                f"Full resolution, test image {i}: PAN, upsampled MS and fused RGB composites, one 2-98 % "
                "stretch computed on the upsampled MS.",
                F.plot_full_resolution(
                    fr["inputs"]["pan"], fr["inputs"]["lms"], fr["fused"], rgb, out / "full_resolution.png"
                ),
            )
        )
    points = cost_quality_points(report)
    if any(p["ops"] for p in points):
        written.append(
            (
                "OPs per image (log scale) against the mean reduced-resolution Q2n of the pretrained "
                "networks.",
                F.plot_cost_vs_quality(points, out / "ops_vs_q2n.png", cost="ops", title="OPs vs Q2n"),
            )
        )
    if any(p["latency_ms"] for p in points):
        written.append(
            (
                "Measured CPU latency per image (log scale) against the mean reduced-resolution Q2n: the "
                "packed engine for binary networks, PyTorch float32 for full-precision ones, numpy for "
                "classical methods (settings of the latency table).",
                F.plot_cost_vs_quality(
                    points, out / "latency_vs_q2n.png", cost="latency_ms", title="Latency vs Q2n"
                ),
            )
        )
    logs = {
        m["name"]: m["pretrained"]["log"]
        for m in report["methods"]
        if m.get("pretrained") and m["pretrained"].get("log") and Path(m["pretrained"]["log"]).is_file()
    }
    if logs:
        written.append(
            (
                "Training curves of the pretrained networks (zoo training logs): training loss and "
                "validation Q2n, SAM, ERGAS against the optimiser step.",
                F.plot_training_curves(logs, out / "training_curves.png"),
            )
        )
    return written


def write_report(
    result: Any,
    out_dir: str | os.PathLike,
    *,
    title: str = "binsharp benchmark",
    intro: str = "",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``results.json``, ``results.md``, ``figures/*.png`` and ``report.html`` into ``out_dir``.

    Returns ``{"json": path, "markdown": path, "html": path, "figures": [(caption, path), ...]}``.
    """
    from binsharp.fileio import check_output_path
    from binsharp.report.html import write_html
    from binsharp.report.tables import benchmark_tables, summary_lines

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md", "html": out / "report.html"}
    for p in paths.values():
        check_output_path(p, overwrite=overwrite)
    figs = write_figures(result, out / "figures")
    write_json(paths["json"], result.report, overwrite=overwrite)
    write_markdown(paths["markdown"], result.report, overwrite=overwrite)
    settings = {"settings": result.report.get("settings"), "machine": result.report.get("machine")}
    write_html(
        paths["html"],
        title,
        benchmark_tables(result.report),
        figs,
        settings=settings,
        intro=" ".join([intro, *summary_lines(result.report)]).strip(),
        overwrite=overwrite,
    )
    return {**paths, "figures": figs}
