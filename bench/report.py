"""The report: verdicts, one Rich table, the raw figures as JSON, a PNG chart and Markdown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.config import TARGETS
from bench.machine import headline

MEASURES = """\
`bench/README.md` ("The figures") says what each figure measures and against which baseline.
Every ratio is taken per round (baseline and subject measured back to back, the order
alternating), and the table shows the min / median / max of those per-round ratios; the
verdict is on the median."""


def verdict(r: dict) -> str:
    key = r.get("target")
    if key is None:
        return "INFO"
    if r.get("broken"):
        return "ERR"
    op, limit, unit = TARGETS[key]
    value = r.get("ratio") if unit == "×" else r["subject"]
    if not value:
        return "n/a"
    ok = value["median"] >= limit if op == ">=" else value["median"] <= limit
    return "PASS" if ok else "MISS"


def target_text(r: dict) -> str:
    key = r.get("target") or r.get("info_target")
    if key is None:
        return "-"
    op, limit, unit = TARGETS[key]
    text = f"{'≥' if op == '>=' else '≤'} {limit:g}{unit if unit == '×' else ' ' + unit}"
    return text if r.get("target") else f"({text})"  # information: beside the target it would have


def _num(value: float) -> str:
    if value >= 1000 or value == 0:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def spread_text(s: dict | None, unit: str = "") -> str:
    if not s:
        return "-"
    unit = f" {unit}" if unit else ""
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{_num(s['median'])}{unit}"
    return f"{_num(s['median'])}{unit} ({_num(s['min'])}–{_num(s['max'])})"


def ratio_text(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f}"


def finish_rows(rows: list[dict]) -> list[dict]:
    for r in rows:
        r["verdict"] = verdict(r)
        r["target_text"] = target_text(r)
        r["notes"] = [n for n in r.get("notes", []) if n]
    return rows


COLUMNS = ("#", "db", "figure", "subject", "baseline", "ratio min / med / max", "target", "verdict")


def cells(r: dict) -> list[str]:
    return [
        str(r["figure"]),
        r["db"],
        r["title"],
        spread_text(r.get("subject"), r["unit"]),
        spread_text(r.get("baseline"), r["unit"]),
        ratio_text(r.get("ratio")),
        r["target_text"],
        r["verdict"],
    ]


BASELINES = (
    "baselines (same run): 1 a bare ASGI app answering the same body on the same uvicorn options; "
    "2 the raw SQL query + orjson.dumps in-process; 3 pyvips thumbnail + JPEG save in-process, in its own "
    "process; 5 the bare app's VmHWM (information only); 6 the same server with 10^3 cards; 7 the same two "
    "committed updates per write in raw SQL, same durability; 8 the same GETs alone, memo off; "
    "12 the same PATCHes by a partner without webhook subscriptions"
)


def header_lines(meta: dict) -> list[str]:
    machine, config = meta["machine"], meta["config"]
    mode = "quick" if config["quick"] else "full"
    loads = [
        " ".join(f"{v:.2f}" for v in values)
        for values in (machine["load_average_at_start"], meta.get("load_average_at_end", []))
    ]
    return [
        f"date: {machine['date']}   wall time: {meta['wall_seconds']:.0f} s   mode: {mode}",
        f"machine: {headline(machine)}; kernel {machine['kernel']}",
        f"client and server share the {machine['cores']} cores: wrk ({config['threads']} threads, "
        f"{config['connections']} connections, {config['duration']} s per run; writes "
        f"{config.get('write_duration', '-')} s per run), the bench process and every server run on the same "
        "machine; other work on it adds noise",
        f"rounds: {config['rounds']} (baseline and subject interleaved); "
        f"load average at start {loads[0]}; at end {loads[1]}",
        BASELINES,
    ]


def print_table(rows: list[dict], meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(190, Console().width))
    for line in header_lines(meta):
        console.print(line, highlight=False, markup=False)
    table = Table(title="contactcard benchmark", show_lines=False)
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    colours = {"PASS": "green", "MISS": "red", "ERR": "bold red", "INFO": "dim", "n/a": "yellow"}
    for r in rows:
        *rest, verdict_cell = cells(r)
        table.add_row(*rest, f"[{colours.get(r['verdict'], 'white')}]{verdict_cell}[/]")
    console.print(table)
    for r in rows:
        for note in r["notes"]:
            console.print(f"  {r['figure']} {r['db']} {r['title']}: {note}", highlight=False, markup=False)
    for note in meta.get("notes", []):
        console.print(f"  note: {note}", highlight=False, markup=False)


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        *rest, verdict_cell = cells(r)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in [*rest, f"**{verdict_cell}**"]) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict], meta: dict, chart_name: str) -> str:
    machine, quick = meta["machine"], meta["config"]["quick"]
    notes = [f"- {r['figure']} {r['db']} {r['title']}: {n}" for r in rows for n in r["notes"]]
    notes += [f"- {n}" for n in meta.get("notes", [])]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    options = json.dumps(meta.get("uvicorn_options", {}), sort_keys=True)
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Recorded by `python -m bench{' --quick' if quick else ''}`"
            f"{' (quick mode: 1 short round, figures are only a smoke test)' if quick else ''};"
            " regenerate with the same command. Targets are the",
            "benchmark's, never test assertions. Every ratio is against a baseline measured in the same run.",
            "",
            *[f"- {line}" for line in header_lines(meta)],
            f"- software: {packages}; {meta.get('wrk_version', 'wrk')}; libvips {meta.get('libvips', '?')}; "
            f"PostgreSQL {meta.get('postgres_version') or 'not run'}",
            f"- uvicorn options of both the server and the bare baseline: `{options}`",
            "",
            f"![benchmark chart]({chart_name})",
            "",
            markdown_table(rows),
            "",
            "Subject and baseline columns: median (min–max) over the rounds. Verdicts are on the median.",
            "",
            "## Notes",
            "",
            *notes,
            "",
            "## What each figure measures",
            "",
            MEASURES,
            "",
        ]
    )


COLOURS = {"PASS": "#2e7d32", "MISS": "#c62828", "ERR": "#6a1b9a", "INFO": "#78909c", "n/a": "#f9a825"}
# The chart's right-hand panels: absolute figures, (target key or None for POST, title).
PANELS = (
    ("cold_start_s", "4. cold start, empty SQLite (target dashed)"),
    ("peak_rss_mib", "5. server peak RSS after the GET load (target dashed)"),
    ("write_p99_ms", "7. PATCH p99 at 64 connections (target dashed)"),
    ("write_failed", "7. PATCH failed requests, all loads (target 0)"),
    (None, "3. POST with a 12 MP image over HTTP (information)"),
)


def _ratio_panel(ax, ratio_rows: list[dict]) -> None:
    labels = [f"{r['figure']}. {r['db'] if r['db'] != '-' else ''} {r['title']}".replace("  ", " ") for r in ratio_rows]
    y = list(range(len(ratio_rows)))[::-1]
    for yi, r in zip(y, ratio_rows, strict=True):
        s = r["ratio"]
        ax.barh(yi, s["median"], color=COLOURS[r["verdict"]], alpha=0.85, height=0.6)
        low, high = s["median"] - s["min"], s["max"] - s["median"]
        ax.errorbar(s["median"], yi, xerr=[[low], [high]], fmt="none", ecolor="black", capsize=3, lw=1)
        op, limit, _unit = TARGETS[r.get("target") or r["info_target"]]
        ax.plot([limit, limit], [yi - 0.38, yi + 0.38], color="black", lw=2.2)
        sign = "≥" if op == ">=" else "≤"
        text = f"{s['median']:.2f} ({sign}{limit:g}) {r['verdict']}"
        ax.text(max(s["max"], limit) * 1.08, yi, text, va="center", fontsize=8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("ratio to the same-run baseline (log scale); black tick = target; whiskers = min–max over rounds")
    ax.set_title("Ratios against baselines measured in the same run", fontsize=11)
    right = max((r["ratio"]["max"] for r in ratio_rows), default=2.0)
    # A ratio of 0 (a load that got no answer) has no place on a log scale: drawn at the left edge.
    left = min([0.05] + [r["ratio"]["min"] * 0.8 for r in ratio_rows if r["ratio"]["min"] > 0])
    ax.set_xlim(left=left, right=right * 4)


def _bar_panel(axis, chosen: list[dict], title: str, key: str | None) -> None:
    """Absolute values (median, whiskers min–max), the target dashed; figure 5 adds the bare
    app's peak RSS as a grey reference bar."""
    names = [r["db"] if key else f"{r['db']} {r['title'].split('12 MP ')[1].split(':')[0]}" for r in chosen]
    if key == "cold_start_s":
        names = [f"{r['db']}, n={r['subject']['n']}" for r in chosen]
    values = [r["subject"]["median"] for r in chosen]
    lows = [r["subject"]["median"] - r["subject"]["min"] for r in chosen]
    highs = [r["subject"]["max"] - r["subject"]["median"] for r in chosen]
    colour = [COLOURS[r["verdict"]] for r in chosen]
    if key == "peak_rss_mib" and chosen[0].get("baseline"):
        names, values = [*names, "bare ASGI (info)"], [*values, chosen[0]["baseline"]["median"]]
        lows, highs, colour = [*lows, 0], [*highs, 0], [*colour, "#b0bec5"]
    y = list(range(len(names)))[::-1]
    axis.barh(y, values, xerr=[lows, highs], capsize=3, color=colour, alpha=0.85, height=0.6)
    axis.set_yticks(y)
    axis.set_yticklabels(names, fontsize=8)
    verdicts = [f" {r['verdict']}" if r.get("target") else "" for r in chosen] + [""] * (len(values) - len(chosen))
    for yi, value, high, said in zip(y, values, highs, verdicts, strict=True):
        axis.text(value + high, yi, f"  {_num(value)}{said}", va="center", fontsize=8)
    if key is not None and TARGETS[key][1] > 0:
        axis.axvline(TARGETS[key][1], color="black", lw=1.5, ls="--")
    axis.set_title(title, fontsize=10)
    axis.set_xlabel(chosen[0]["unit"], fontsize=8)
    axis.margins(x=0.25)
    if max(values, default=0) == 0:
        axis.set_xlim(0, 1)


def chart(rows: list[dict], meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio_rows = [r for r in rows if r.get("ratio") and (r.get("target") or r.get("info_target")) in TARGETS]
    panels = []
    for key, title in PANELS:
        if key is None:
            chosen = [r for r in rows if r["figure"] == 3 and r.get("target") is None]
        else:
            chosen = [r for r in rows if r.get("target") == key]
        if chosen:
            panels.append((key, title, chosen))
    fig = plt.figure(figsize=(15, max(7.5, 0.42 * len(ratio_rows) + 2.5, 2.6 * len(panels))), dpi=110)
    grid = fig.add_gridspec(max(3, len(panels)), 2, width_ratios=[1.9, 1], hspace=0.6, wspace=0.32)
    if ratio_rows:
        _ratio_panel(fig.add_subplot(grid[:, 0]), ratio_rows)
    for i, (key, title, chosen) in enumerate(panels):
        axis = fig.add_subplot(grid[i, 1])
        measured = [r for r in chosen if r.get("subject")]
        if measured:
            _bar_panel(axis, measured, title, key)
        else:  # e.g. the server did not start
            axis.set_title(title, fontsize=10)
            axis.text(0.5, 0.5, "not measured (see the report)", ha="center", va="center", transform=axis.transAxes)
            axis.set_axis_off()
    machine = meta["machine"]
    fig.suptitle(
        f"contactcard benchmark, {machine['date'][:10]}: {headline(machine)}\n"
        f"client and server share the {machine['cores']} cores; {meta['config']['rounds']} interleaved rounds"
        f"{' (quick mode)' if meta['config']['quick'] else ''}",
        fontsize=10,
    )
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def _portable(value):
    """The same data with this checkout's paths made relative, so recorded results name no
    machine's folders."""
    root = str(Path(__file__).resolve().parent.parent)
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and root in value:
        return value.replace(root + "/", "").replace(root, ".")
    if isinstance(value, Path):
        return _portable(str(value))
    return value


def write_all(rows: list[dict], meta: dict, raw: dict, out: Path, docs: Path | None) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "latest.json", "png": out / "bench.png", "markdown": out / "results.md"}
    written["json"].write_text(json.dumps(_portable({"meta": meta, "rows": rows, "raw": raw}), indent=2, default=str))
    chart(rows, meta, written["png"])
    written["markdown"].write_text(markdown(rows, meta, "bench.png"))
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(written["png"], docs / "bench.png")
        (docs / "results.md").write_text(markdown(rows, meta, "bench.png"))
        (docs / "results.json").write_text(json.dumps(_portable({"meta": meta, "rows": rows}), indent=2, default=str))
        written["docs"] = docs
    return written


def replot(json_path: Path) -> None:
    """Draw the chart and Markdown again from a saved run (`latest.json` or docs' `results.json`)."""
    document = json.loads(json_path.read_text())
    folder = json_path.parent
    chart(document["rows"], document["meta"], folder / "bench.png")
    (folder / "results.md").write_text(markdown(document["rows"], document["meta"], "bench.png"))


if __name__ == "__main__":  # python -m bench.report docs/bench/results.json
    import sys

    replot(Path(sys.argv[1]))
