"""Markdown report of the real-host fuzz matrix and the memory runs, from their JSON results.

    python benchmarks/fuzz_report.py --fuzz RESULTS/fuzz_0.8.0.json RESULTS/fuzz_0.28.0.json \
        --rss RESULTS/rss_0.8.0.json RESULTS/rss_0.28.0.json --out benchmarks/results/fuzz_real_host.md

The fuzz JSON files are written by ``tests/integration/test_fuzz_prompts.py`` (set ``MDIM_FUZZ_REPORT_DIR``),
the memory ones by ``benchmarks/real_host_rss.py --out``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path


def fuzz_section(data: dict) -> list[str]:
    cases = data["cases"]
    lines = [f"### ComfyUI {data['version']}", ""]
    per_node: dict[str, Counter] = defaultdict(Counter)
    for c in cases:
        n = per_node[c["node"]]
        n["cases"] += 1
        n[c.get("outcome", "not run")] += 1
        n["as expected"] += c.get("outcome") == c["expected"]
        n["next ok"] += bool(c.get("next_prompt_ok"))
        n["crash"] += not c.get("server_alive", False)
    lines += ["| node | cases | ran correctly | refused by validation | clear execution error | unexpected | "
              "server crashes | next prompt ran after a failure |", "|---|---|---|---|---|---|---|---|"]
    total = Counter()
    for node in sorted(per_node):
        n = per_node[node]
        failures = n["refused"] + n["error"]
        total.update(n)
        lines.append(f"| {node} | {n['cases']} | {n['runs']} | {n['refused']} | {n['error']} | "
                     f"{n['cases'] - n['as expected']} | {n['crash']} | {n['next ok']}/{failures} |")
    failures = total["refused"] + total["error"]
    lines.append(f"| **all** | **{total['cases']}** | **{total['runs']}** | **{total['refused']}** | "
                 f"**{total['error']}** | **{total['cases'] - total['as expected']}** | **{total['crash']}** | "
                 f"**{total['next ok']}/{failures}** |")
    lines += ["", "<details><summary>every case</summary>", "",
              "| node | case | outcome | message (execution errors: type and text as the user sees them) |",
              "|---|---|---|---|"]
    for c in cases:
        msg = (c.get("message") or "").replace("|", "\\|").replace("\n", " ")
        if c.get("outcome") == "refused":
            msg = _refusal(c.get("message") or "")
        lines.append(f"| {c['node']} | {c['case']} | {c.get('outcome', 'not run')} | {msg[:220]} |")
    lines += ["", "</details>", ""]
    return lines


def _refusal(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.replace("|", "\\|")[:200]
    parts = []
    for node in data.values() if isinstance(data, dict) else []:
        for err in node.get("errors", []):
            parts.append(f"{node.get('class_type', '')}: {err.get('message', '')}: {err.get('details', '')}")
    return "; ".join(parts).replace("|", "\\|")[:220] or text[:200]


def rss_section(data: dict) -> list[str]:
    lines = [f"### ComfyUI {data['version']}", "",
             "| run | prompts | RSS before any prompt | after warm-up | after 10 | after the last | growth after warm-up | "
             "growth from prompt 10 to the last | slope over the second half |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind, run in data["runs"].items():
        s = run["summary"]
        label = "MDIM workflows (every family)" if kind == "mdim" else "core nodes only"
        lines.append(f"| {label} | {s['prompts']} | {s['start_mib']:.0f} MiB | {s['warm_mib']:.0f} MiB | "
                     f"{s['at_10_mib']:.0f} MiB | {s['end_mib']:.0f} MiB | {s['growth_after_warmup_mib']:+.0f} MiB | "
                     f"{s['growth_10_to_end_mib']:+.0f} MiB | {s['slope_second_half_mib_per_prompt']:+.2f} MiB/prompt |")
    lines.append("")
    for kind, run in data["runs"].items():
        after = run["after"]
        series = ", ".join(f"{a['kib'] / 1024:.0f}" for a in after)
        lines.append(f"- {kind}: RSS after each prompt (MiB): {series}")
    lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fuzz", nargs="*", default=[])
    parser.add_argument("--rss", nargs="*", default=[])
    parser.add_argument("--header", help="a markdown file put before the tables")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    lines = [Path(args.header).read_text(encoding="utf-8").rstrip(), ""] if args.header else []
    if args.fuzz:
        lines += ["## Fuzz matrix through /prompt", ""]
        for path in args.fuzz:
            lines += fuzz_section(json.loads(Path(path).read_text(encoding="utf-8")))
    if args.rss:
        lines += ["## Server memory over 50 prompts in a row", ""]
        for path in args.rss:
            lines += rss_section(json.loads(Path(path).read_text(encoding="utf-8")))
    Path(args.out).write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
