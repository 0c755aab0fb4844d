"""The report: verdicts, one Rich table, the raw figures as JSON, a PNG chart and Markdown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.config import TARGETS
from bench.machine import headline

MEASURES = """\
1. **GET by number** (`GET /v3/contact_card?phone_number=`, authenticated, the card in the
   database, one server process, SQLite with 10^3 cards or PostgreSQL with 10^3 cards): `wrk`
   with fixed threads and connections rotates through up to 1,000 (key, number) pairs.
   Baseline: a bare ASGI app (`bench/bare_app.py`, no framework) answering the same JSON body,
   run by the server's own `serve` command with only the app swapped, so uvicorn gets
   exactly the same options. Figures: req/s ratio (target >= 0.30) and p99 ratio (target <= 2).
2. **GET all** for a partner with 10,000 cards (in the large database): the server's time
   per request over HTTP, sequential requests on one keep-alive connection, against the
   in-process baseline: the raw SQL query for those rows plus `orjson.dumps` of the same body
   (checked byte for byte). Target <= 1.5.
3. **Image work**: `contactcard.images.normalise` (the server's pipeline) on a 12-megapixel
   photo with EXIF orientation set, in-process, against pyvips `thumbnail_buffer` to a 1024
   square centre crop saved as the same JPEG (quality 85, stripped). Each side runs in a fresh
   process; wall time per image (target <= 1.2 for JPEG, <= 1.5 for PNG, WebP, HEIC) and
   memory growth per image: the peak RSS while an image is processed (VmHWM, reset before
   each image through `/proc/self/clear_refs`) above the RSS of the process with its library
   loaded and no image processed yet, so that what earlier images left resident counts too;
   target <= pyvips's. The notes give each side's working set (peak above the RSS just before
   the image) and the RSS retained per image. Also for information: the full `POST` over
   HTTP (the image fetched from an allow-listed host on 127.0.0.1, simulated device).
4. **Cold start**: from spawning `contactcard serve` on an empty SQLite directory to the
   first `200` of `GET /v3/contact_card` with the demo key (polled every 5 ms). Absolute,
   target <= 1 s.
5. **Peak RSS**: VmHWM of the server process (figure 1's) after the GET load. Absolute,
   target <= 80 MiB.
6. **Database size**: figure 1's req/s with 10^6 cards in the database against 10^3 cards
   (the baseline). Target: within 10 %, i.e. ratio >= 0.90.

Every ratio is taken per round (baseline and subject measured back to back, the order
alternating), and the table shows the min / median / max of those per-round ratios; the
verdict is on the median."""


def verdict(r: dict) -> str:
    key = r.get("target")
    if key is None:
        return "INFO"
    if r.get("broken"):
        return "ERR"
    op, limit = TARGETS[key]
    value = r["subject"] if key in ("cold_start_s", "peak_rss_mib") else r.get("ratio")
    if not value:
        return "n/a"
    ok = value["median"] >= limit if op == ">=" else value["median"] <= limit
    return "PASS" if ok else "MISS"


def target_text(r: dict) -> str:
    key = r.get("target") or r.get("info_target")
    if key is None:
        return "-"
    op, limit = TARGETS[key]
    sign = "≥" if op == ">=" else "≤"
    if r.get("target") is None:  # information, shown beside the target it would have
        return f"({sign} {limit:g}×)"
    if key == "cold_start_s":
        return f"{sign} {limit:g} s"
    if key == "peak_rss_mib":
        return f"{sign} {limit:g} MiB"
    return f"{sign} {limit:g}×"


def _num(value: float) -> str:
    if value >= 1000:
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


BASELINES = (
    "baselines (same run): 1 a bare ASGI app answering the same body on the same uvicorn options; "
    "2 the raw SQL query + orjson.dumps in-process; 3 pyvips thumbnail + JPEG save in-process, in its own "
    "process; 5 the bare app's VmHWM (information only); 6 the same server with 10^3 cards"
)


def header_lines(meta: dict) -> list[str]:
    machine = meta["machine"]
    config = meta["config"]
    return [
        f"date: {machine['date']}   wall time: {meta['wall_seconds']:.0f} s   mode: {'quick' if config['quick'] else 'full'}",
        f"machine: {headline(machine)}; kernel {machine['kernel']}",
        f"client and server share the {machine['cores']} cores: wrk ({config['threads']} threads, "
        f"{config['connections']} connections, {config['duration']} s per run), the bench process and "
        "every server run on the same machine; other work on it adds noise",
        f"rounds: {config['rounds']} (baseline and subject interleaved); load average at start "
        + " ".join(f"{v:.2f}" for v in machine["load_average_at_start"])
        + "; at end "
        + " ".join(f"{v:.2f}" for v in meta.get("load_average_at_end", [])),
        BASELINES,
    ]


def print_table(rows: list[dict], meta: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(190, Console().width))
    for line in header_lines(meta):
        console.print(line, highlight=False, markup=False)
    table = Table(title="contactcard benchmark", show_lines=False)
    for column in ("#", "db", "figure", "subject", "baseline", "ratio min / med / max", "target", "verdict"):
        table.add_column(column, overflow="fold")
    colours = {"PASS": "green", "MISS": "red", "ERR": "bold red", "INFO": "dim", "n/a": "yellow"}
    for r in rows:
        table.add_row(
            str(r["figure"]),
            r["db"],
            r["title"],
            spread_text(r.get("subject"), r["unit"]),
            spread_text(r.get("baseline"), r["unit"]),
            ratio_text(r.get("ratio")),
            r["target_text"],
            f"[{colours.get(r['verdict'], 'white')}]{r['verdict']}[/]",
        )
    console.print(table)
    notes = [(r, n) for r in rows for n in r["notes"]]
    for r, note in notes:
        console.print(f"  {r['figure']} {r['db']} {r['title']}: {note}", highlight=False, markup=False)
    for note in meta.get("notes", []):
        console.print(f"  note: {note}", highlight=False, markup=False)


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| # | db | figure | subject | baseline | ratio min / med / max | target | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            str(r["figure"]),
            r["db"],
            r["title"],
            spread_text(r.get("subject"), r["unit"]),
            spread_text(r.get("baseline"), r["unit"]),
            ratio_text(r.get("ratio")),
            r["target_text"],
            f"**{r['verdict']}**",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict], meta: dict, chart_name: str) -> str:
    machine = meta["machine"]
    notes = [f"- {r['figure']} {r['db']} {r['title']}: {n}" for r in rows for n in r["notes"]]
    notes += [f"- {n}" for n in meta.get("notes", [])]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"Recorded by `python -m bench{' --quick' if meta['config']['quick'] else ''}`"
            f"{' (quick mode: 1 short round, figures are only a smoke test)' if meta['config']['quick'] else ''};"
            " regenerate with the same command. Targets are the",
            "benchmark's, never test assertions. Every ratio is against a baseline measured in the same run.",
            "",
            *[f"- {line}" for line in header_lines(meta)],
            f"- software: {packages}; {meta.get('wrk_version', 'wrk')}; libvips {meta.get('libvips', '?')}; "
            f"PostgreSQL {meta.get('postgres_version') or 'not run'}",
            f"- uvicorn options of both the server and the bare baseline: `{json.dumps(meta.get('uvicorn_options', {}), sort_keys=True)}`",
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


def chart(rows: list[dict], meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"PASS": "#2e7d32", "MISS": "#c62828", "ERR": "#6a1b9a", "INFO": "#78909c", "n/a": "#f9a825"}
    ratio_rows = [r for r in rows if r.get("ratio") and (r.get("target") or r.get("info_target")) in TARGETS]
    cold = [r for r in rows if r.get("target") == "cold_start_s" and r.get("subject")]
    rss = [r for r in rows if r.get("target") == "peak_rss_mib" and r.get("subject")]
    posts = [r for r in rows if r["figure"] == 3 and r.get("target") is None and r.get("subject")]

    fig = plt.figure(figsize=(15, max(7.5, 0.42 * len(ratio_rows) + 2.5)), dpi=110)
    grid = fig.add_gridspec(3, 2, width_ratios=[1.9, 1], hspace=0.55, wspace=0.32)
    ax = fig.add_subplot(grid[:, 0])
    labels = [f"{r['figure']}. {r['db'] if r['db'] != '-' else ''} {r['title']}".replace("  ", " ") for r in ratio_rows]
    y = list(range(len(ratio_rows)))[::-1]
    for yi, r in zip(y, ratio_rows):
        s = r["ratio"]
        ax.barh(yi, s["median"], color=colours[r["verdict"]], alpha=0.85, height=0.6)
        ax.errorbar(
            s["median"],
            yi,
            xerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]],
            fmt="none",
            ecolor="black",
            capsize=3,
            lw=1,
        )
        op, limit = TARGETS[r.get("target") or r["info_target"]]
        ax.plot([limit, limit], [yi - 0.38, yi + 0.38], color="black", lw=2.2)
        ax.text(
            max(s["max"], limit) * 1.08,
            yi,
            f"{s['median']:.2f} ({'≥' if op == '>=' else '≤'}{limit:g}) {r['verdict']}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("ratio to the same-run baseline (log scale); black tick = target; whiskers = min–max over rounds")
    ax.set_title("Ratios against baselines measured in the same run", fontsize=11)
    right = max((r["ratio"]["max"] for r in ratio_rows), default=2.0)
    ax.set_xlim(left=min([0.05] + [r["ratio"]["min"] * 0.8 for r in ratio_rows]), right=right * 4)

    def bars(axis, chosen, title, unit, label, extra=None):
        names = [label(r) for r in chosen]
        values = [r["subject"]["median"] for r in chosen]
        lows = [r["subject"]["median"] - r["subject"]["min"] for r in chosen]
        highs = [r["subject"]["max"] - r["subject"]["median"] for r in chosen]
        colour = [colours[r["verdict"]] for r in chosen]
        if extra:  # (label, value): a grey reference bar
            names, values, lows, highs = names + [extra[0]], values + [extra[1]], lows + [0], highs + [0]
            colour = colour + ["#b0bec5"]
        y = list(range(len(names)))[::-1]
        axis.barh(y, values, xerr=[lows, highs], capsize=3, color=colour, alpha=0.85, height=0.6)
        axis.set_yticks(y)
        axis.set_yticklabels(names, fontsize=8)
        for yi, value, high in zip(y, values, highs):
            axis.text(value + high, yi, f"  {_num(value)}", va="center", fontsize=8)
        for r in chosen:
            if r.get("target") in TARGETS:
                axis.axvline(TARGETS[r["target"]][1], color="black", lw=1.5, ls="--")
                break
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(unit, fontsize=8)
        axis.margins(x=0.25)

    def missing(axis, title, why):
        axis.set_title(title, fontsize=10)
        axis.text(0.5, 0.5, why, ha="center", va="center", transform=axis.transAxes, color=colours["ERR"])
        axis.set_axis_off()

    cold_title = "4. cold start, empty SQLite (target dashed)"
    if cold:
        bars(fig.add_subplot(grid[0, 1]), cold, cold_title, "s", lambda r: f"{r['db']}, n={r['subject']['n']}")
    elif any(r.get("target") == "cold_start_s" for r in rows):
        missing(fig.add_subplot(grid[0, 1]), cold_title, "the server did not start (see the report)")
    if rss:
        bare = rss[0].get("baseline")
        bars(
            fig.add_subplot(grid[1, 1]),
            rss,
            "5. server peak RSS after the GET load (target dashed)",
            "MiB",
            lambda r: r["db"],
            extra=("bare ASGI (info)", bare["median"]) if bare else None,
        )
    if posts:
        bars(
            fig.add_subplot(grid[2, 1]),
            posts,
            "3. POST with a 12 MP image over HTTP (information)",
            "ms",
            lambda r: f"{r['db']} {r['title'].split('12 MP ')[1].split(':')[0]}",
        )
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
    written = {}
    document = _portable({"meta": meta, "rows": rows, "raw": raw})
    json_path = out / "latest.json"
    json_path.write_text(json.dumps(document, indent=2, default=str))
    written["json"] = json_path
    png = out / "bench.png"
    chart(rows, meta, png)
    written["png"] = png
    md = out / "results.md"
    md.write_text(markdown(rows, meta, "bench.png"))
    written["markdown"] = md
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, docs / "bench.png")
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
