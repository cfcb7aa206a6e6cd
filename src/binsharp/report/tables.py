"""Result tables of a benchmark as neutral rows, rendered to Markdown, HTML or plain text.

A :class:`Table` has a title, a header, rows of cell strings and notes. :func:`benchmark_tables` turns a
benchmark report (:func:`binsharp.evaluation.bench.run_benchmark`) into the tables of the results section:
reduced resolution, full resolution, cross-sensor, complexity and speed, and the list of skipped models.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from binsharp.metrics import HIGHER_IS_BETTER

__all__ = [
    "INDEX_LABELS",
    "Table",
    "benchmark_tables",
    "cost_quality_points",
    "deployed_latency_ms",
    "format_value",
    "paired_tables",
    "summary_lines",
]

#: the latency that a method is deployed with, by kind: the packed engine for binary networks, PyTorch
#: float32 for full-precision ones, numpy for classical methods
DEPLOYED_LATENCY = {"binary": "engine_s", "fp": "torch_s", "classical": "numpy_s"}

#: Column label of each index (arrow: direction of better values).
INDEX_LABELS = {
    "q2n": "Q2n ↑",
    "q_avg": "Q ↑",
    "sam": "SAM ↓",
    "ergas": "ERGAS ↓",
    "scc": "SCC ↑",
    "psnr": "PSNR ↑",
    "ssim": "SSIM ↑",
    "d_lambda_k": "D_λ^K ↓",
    "d_lambda": "D_λ ↓",
    "d_s": "D_s ↓",
    "hqnr": "HQNR ↑",
    "qnr": "QNR ↑",
}
DIGITS = {"sam": 3, "ergas": 3, "psnr": 2}
RR_COLUMNS = ("q2n", "sam", "ergas", "scc", "psnr", "ssim")
FR_COLUMNS = ("d_lambda_k", "d_s", "hqnr")
KIND_LABELS = {"classical": "classical", "fp": "full precision", "binary": "binary"}


def deployed_latency_ms(method: Mapping[str, Any]) -> float | None:
    """Milliseconds per image of a benchmark method (``report["methods"][i]``) as it is deployed
    (:data:`DEPLOYED_LATENCY`), or ``None`` when that latency was not measured."""
    key = DEPLOYED_LATENCY.get(method.get("kind", ""))
    seconds = (method.get("latency") or {}).get(key) if key else None
    return 1e3 * seconds if seconds else None


def cost_quality_points(report: Mapping[str, Any], quality: str = "q2n") -> list[dict[str, Any]]:
    """One point per method of a benchmark report with a mean reduced-resolution ``quality``: ``name``,
    ``kind``, ``ops`` (counted, networks only), ``latency_ms`` (:func:`deployed_latency_ms`) and the mean
    ``quality``; the input of :func:`binsharp.report.figures.plot_cost_vs_quality`."""
    points = []
    for m in report["methods"]:
        res = (m.get("results") or {}).get("rr")
        if res and quality in res["mean"]:
            points.append(
                {
                    "name": m["name"],
                    "kind": m["kind"],
                    "ops": (m.get("complexity") or {}).get("ops"),
                    "latency_ms": deployed_latency_ms(m),
                    quality: res["mean"][quality],
                }
            )
    return points


@dataclass
class Table:
    """A titled table of strings; ``bold[r][c]`` marks best values; the first ``left`` columns are text
    (left-aligned), the others numbers (right-aligned)."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    bold: list[list[bool]] = field(default_factory=list)
    left: int = 2

    def _is_bold(self, r: int, c: int) -> bool:
        return bool(self.bold and r < len(self.bold) and c < len(self.bold[r]) and self.bold[r][c])

    def to_markdown(self) -> str:
        """GitHub Markdown: ``### title``, the table (best values in bold), notes as a list."""
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.header) + " |")
        lines.append(
            "|" + "|".join("---" if i < self.left else "---:" for i in range(len(self.header))) + "|"
        )
        for r, row in enumerate(self.rows):
            cells = [f"**{c}**" if self._is_bold(r, j) else c for j, c in enumerate(row)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.notes:
            lines.append("")
            lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        """An HTML ``<table>`` with a caption and the notes below."""
        e = html.escape
        out = [f"<h3>{e(self.title)}</h3>", "<table>", "<thead><tr>"]
        out += [f"<th>{e(h)}</th>" for h in self.header]
        out.append("</tr></thead><tbody>")
        for r, row in enumerate(self.rows):
            cells = [
                ("<td class='text'>" if 2 <= j < self.left else "<td>")
                + (f"<b>{e(c)}</b>" if self._is_bold(r, j) else e(c))
                + "</td>"
                for j, c in enumerate(row)
            ]
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        if self.notes:
            out.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in self.notes) + "</ul>")
        return "\n".join(out)

    def to_text(self) -> str:
        """Aligned plain text (for the terminal)."""
        cells = [self.header, *self.rows]
        widths = [max(len(row[j]) for row in cells) for j in range(len(self.header))]
        lines = [self.title]
        for i, row in enumerate(cells):
            lines.append(
                "  ".join(
                    c.ljust(w) if j < self.left else c.rjust(w)
                    for j, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines += [f"  * {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def format_value(index: str, mean: float, std: float | None = None) -> str:
    """``"0.9012 ± 0.0123"`` with the index's number of digits (4 by default)."""
    d = DIGITS.get(index, 4)
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if std is None:
        return f"{mean:.{d}f}"
    return f"{mean:.{d}f} ± {std:.{d}f}"


def _best_flags(values: list[list[float | None]], indexes: Sequence[str], offset: int) -> list[list[bool]]:
    flags = [[False] * (offset + len(indexes)) for _ in values]
    for j, idx in enumerate(indexes):
        col = [(i, x) for i, v in enumerate(values) if (x := v[j]) is not None and math.isfinite(x)]
        if len(col) < 2:
            continue
        better_high = HIGHER_IS_BETTER.get(idx, True)
        best = max(v for _, v in col) if better_high else min(v for _, v in col)
        for i, v in col:
            if v == best:
                flags[i][offset + j] = True
    return flags


def _quality_table(
    report: Mapping[str, Any], split: str, indexes: Sequence[str], title: str, notes: list[str]
) -> Table | None:
    rows, values = [], []
    notes = list(notes)
    for m in report["methods"]:
        notes += [
            f"{m['name']}: {n.split(': ', 1)[1]}" for n in m.get("notes", []) if n.startswith(f"{split}: ")
        ]
        res = (m.get("results") or {}).get(split)
        if not res:
            continue
        cols = [i for i in indexes if i in res["mean"]]
        if len(cols) != len(indexes):
            indexes = [i for i in indexes if i in res["mean"]]
        rows.append(
            [m["name"], KIND_LABELS.get(m["kind"], m["kind"])]
            + [format_value(i, res["mean"][i], res["std"].get(i)) for i in indexes]
        )
        values.append([res["mean"].get(i) for i in indexes])
    if not rows:
        return None
    header = ["Method", "Type", *(INDEX_LABELS.get(i, i) for i in indexes)]
    return Table(title, header, rows, notes, _best_flags(values, indexes, 2))


def _fmt_int(v: float | None, scale: float, digits: int) -> str:
    return "–" if v is None else f"{v / scale:,.{digits}f}"


def benchmark_tables(report: Mapping[str, Any]) -> list[Table]:
    """The results tables of a benchmark report (see :mod:`binsharp.evaluation.bench`)."""
    tables: list[Table] = []
    data = report.get("data", {})
    mean_std = "mean ± std over images (sample std)"
    for split, indexes, label in (
        ("rr", RR_COLUMNS, "Reduced resolution"),
        ("fr", FR_COLUMNS, "Full resolution"),
    ):
        d = data.get(split)
        if not d:
            continue
        title = f"{label}: {d['name']} ({d['n_images']} images, {d['sensor']}, {d['size']})"
        t = _quality_table(report, split, indexes, title, [mean_std])
        if t:
            tables.append(t)
    for split, indexes, label in (
        ("cross_rr", ("q2n", "sam", "ergas", "scc", "psnr", "ssim"), "Cross-sensor, reduced resolution"),
        ("cross_fr", FR_COLUMNS, "Cross-sensor, full resolution"),
    ):
        d = data.get(split)
        if not d:
            continue
        title = f"{label}: {d['name']} ({d['n_images']} images, {d['sensor']}, {d['size']})"
        note = (
            "networks trained on the main dataset's sensor, applied unchanged; "
            "classical methods use this sensor"
        )
        t = _quality_table(report, split, indexes, title, [mean_std, note])
        if t:
            tables.append(t)
    rows, notes = [], []
    for m in report["methods"]:
        c = m.get("complexity") or {}
        s = m.get("size") or {}
        lat = m.get("latency") or {}
        if not (c or s or lat):
            continue
        torch_ms = lat.get("torch_s")
        engine_ms = lat.get("engine_s")
        numpy_ms = lat.get("numpy_s")
        rows.append(
            [
                m["name"],
                KIND_LABELS.get(m["kind"], m["kind"]),
                _fmt_int(c.get("params"), 1e3, 1),
                _fmt_int(c.get("ops"), 1e9, 3),
                _fmt_int(s.get("checkpoint_bytes"), 1024, 1),
                _fmt_int(s.get("bsp_bytes"), 1024, 1),
                _fmt_int(torch_ms if torch_ms is not None else numpy_ms, 1e-3, 1),
                _fmt_int(engine_ms, 1e-3, 1),
            ]
        )
    if rows:
        settings = report.get("settings", {})
        size = settings.get("complexity_size", 256)
        notes.append(
            f"Params = binary/32 + float; OPs = BOPs/64 + FLOPs, counted by binsharp.nn.complexity at "
            f"{size} x {size} (PAN pixels, batch 1)"
        )
        notes.append("checkpoint: bytes of the .safetensors file; .bsp: bytes of the exported engine file")
        lat = settings.get("latency", {})
        if lat:
            notes.append(
                f"latency: median of {lat.get('repeats')} runs per {size} x {size} image on "
                f"{lat.get('threads')} CPU thread(s) ({lat.get('cpu', 'CPU')}); PyTorch float32 emulation "
                "for networks, numpy for classical methods; engine: binsharp.deploy packed XNOR-popcount "
                f"runtime; allocator: {lat.get('allocator', 'not recorded')}"
            )
        header = [
            "Method",
            "Type",
            "Params (K)",
            "OPs (G)",
            "Checkpoint (KB)",
            ".bsp (KB)",
            "CPU latency (ms)",
            "Engine latency (ms)",
        ]
        tables.append(Table("Complexity, size and speed", header, rows, notes))
    tables += paired_tables(report)
    skipped = [m for m in report["methods"] if m.get("status") == "skipped"]
    if skipped:
        tables.append(
            Table(
                "Skipped",
                ["Method", "Type", "Reason"],
                [[m["name"], KIND_LABELS.get(m["kind"], m["kind"]), m.get("reason", "")] for m in skipped],
                notes=[
                    "skipped networks are not evaluated; benchmarks/train_zoo.py trains them into the zoo"
                ],
                left=3,
            )
        )
    return tables


SPLIT_LABELS = {
    "rr": "reduced resolution",
    "fr": "full resolution",
    "cross_rr": "cross-sensor, reduced resolution",
    "cross_fr": "cross-sensor, full resolution",
}


def paired_tables(report: Mapping[str, Any]) -> list[Table]:
    """One table per split of the report's ``paired_tests`` (:func:`binsharp.evaluation.bench.paired_tests`):
    each featured network against each other method, per index the mean per-image difference, the images
    where the featured network is better, the p-value, and ``*`` where the difference is significant."""
    pt = report.get("paired_tests") or {}
    tables = []
    for split, indexes in (pt.get("indexes") or {}).items():
        pairs = [p for p in pt.get("pairs", []) if p["split"] == split]
        if not pairs:
            continue
        rows = []
        for p in pairs:
            if "reason" in p:
                cells = [f"not tested: {p['reason']}"] + [""] * (len(indexes) - 1)
            else:
                cells = []
                for i in indexes:
                    t = p["indexes"][i]
                    mark = " *" if t["significant"] else ""
                    cells.append(
                        f"{t['mean_diff']:+.3g}, {t['wins']}/{p['n']} better, p = {t['p_value']:.3g}{mark}"
                    )
            rows.append([p["method"], p["against"], *cells])
        featured = " and ".join(dict.fromkeys(p["method"] for p in pairs))
        notes = [
            f"{pt['test']} on the per-image values of each index; * significant at alpha = {pt['alpha']:g}",
            "difference = the network minus the other method, mean over images; better: images where the "
            "network is better (the index's direction)",
        ]
        tables.append(
            Table(
                f"Paired tests, {SPLIT_LABELS.get(split, split)}: {featured} against each method",
                ["Network", "Against", *(INDEX_LABELS.get(i, i) for i in indexes)],
                rows,
                notes,
            )
        )
    return tables


#: Indexes the summary compares on (reduced resolution).
SUMMARY_INDEXES = ("q2n", "sam", "ergas")


def summary_lines(report: Mapping[str, Any], featured: Sequence[str] = ("s2bnet", "bnnpan")) -> list[str]:
    """Plain statements on the featured networks, computed from the reduced-resolution means.

    For each featured network with results: whether it is ahead of every binary baseline and every classical
    method on Q2n, SAM and ERGAS (naming those it is not ahead of), its gap to the best full-precision
    network (by Q2n) on those indexes, and its OPs and checkpoint-size ratios to that network.
    """
    methods = [m for m in report.get("methods", []) if (m.get("results") or {}).get("rr")]
    by_name = {m["name"]: m for m in methods}
    lines: list[str] = []

    def mean(m: Mapping[str, Any], idx: str) -> float:
        return float(m["results"]["rr"]["mean"][idx])

    def better(a: float, b: float, idx: str) -> bool:
        return a > b if HIGHER_IS_BETTER.get(idx, True) else a < b

    fps = [m for m in methods if m["kind"] == "fp"]
    best_fp = max(fps, key=lambda m: mean(m, "q2n")) if fps else None
    for name in featured:
        m = by_name.get(name)
        if m is None:
            continue
        rivals = [r for r in methods if r["kind"] in ("classical", "binary") and r["name"] not in featured]
        behind = []
        for r in rivals:
            lost = [
                INDEX_LABELS[idx].split()[0]
                for idx in SUMMARY_INDEXES
                if idx in r["results"]["rr"]["mean"] and not better(mean(m, idx), mean(r, idx), idx)
            ]
            if lost:
                behind.append(f"{r['name']} ({', '.join(lost)})")
        kinds = sorted({KIND_LABELS[r["kind"]] for r in rivals})
        if not rivals:
            lines.append(f"{name}: no binary baseline or classical method was evaluated to compare with.")
        elif not behind:
            lines.append(
                f"{name} is ahead of every evaluated {' and '.join(kinds)} method on Q2n, SAM and ERGAS "
                f"({len(rivals)} methods)."
            )
        else:
            lines.append(f"{name} is not ahead of: {', '.join(behind)}.")
        if best_fp is not None:
            gaps = ", ".join(
                f"{INDEX_LABELS[idx].split()[0]} {mean(m, idx):.4g} vs {mean(best_fp, idx):.4g}"
                for idx in SUMMARY_INDEXES
            )
            text = f"{name} vs the best full-precision network {best_fp['name']} (by Q2n): {gaps}"
            c, cf = m.get("complexity") or {}, best_fp.get("complexity") or {}
            if c.get("ops") and cf.get("ops"):
                text += f"; OPs {c['ops'] / cf['ops']:.3g}x of {best_fp['name']}'s"
            s, sf = m.get("size") or {}, best_fp.get("size") or {}
            if s.get("checkpoint_bytes") and sf.get("checkpoint_bytes"):
                text += f"; checkpoint {s['checkpoint_bytes'] / sf['checkpoint_bytes']:.3g}x"
            if s.get("bsp_bytes") and sf.get("checkpoint_bytes"):
                text += f"; packed .bsp {s['bsp_bytes'] / sf['checkpoint_bytes']:.3g}x"
            lines.append(text + ".")
    return lines
