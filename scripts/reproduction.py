#!/usr/bin/env python3
"""Writes docs/reproduction.md from the committed runs under docs/reproduction/: every number in
it comes from a run's results.json (and the significance statements from the report.md the tool
rendered from it), none is typed by hand.

    scripts/reproduction.py            # rewrite docs/reproduction.md
    scripts/reproduction.py --check    # exit 1 if docs/reproduction.md is not what the runs say

Each run folder holds results.json, report.md and run.json ({"commit", "cpu", "cpu_flags",
"command", "date"}), written by the command that produced it.
"""
import json
import math
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RUNS = os.path.join(ROOT, "docs", "reproduction")
OUT = os.path.join(ROOT, "docs", "reproduction.md")
ORDER = ["relu", "tanh", "selu", "prelu", "elu", "leaky_relu"]

# What the paper reports (Tables 3 and 4; one run per cell), as far as this project records it.
PAPER_MNIST_FIRST_EPOCH = {"prelu": "5", "relu": "9", "tanh": "never"}
PAPER_MNIST_ERROR = "1.41–2.09% across the six"
PAPER_CIFAR_ERROR = "9.57–12.58% across the six"


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None, 0
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return m, sd, len(xs)


def fmt(m, sd, f):
    if m is None:
        return "N/A"
    return f(m) if sd is None else f"{f(m)} ± {f(sd)}"


def load(name):
    d = os.path.join(RUNS, name)
    if not os.path.isfile(os.path.join(d, "results.json")):
        return None
    results = json.load(open(os.path.join(d, "results.json")))
    report = open(os.path.join(d, "report.md")).read()
    meta = json.load(open(os.path.join(d, "run.json")))
    return results, report, meta


def table_rows(report):
    """The report's first table: activation -> its cells (as the tool rendered them)."""
    rows, header = {}, None
    for line in report.splitlines():
        if not line.startswith("| "):
            if header and rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(cells[0]) <= set("-"):
            continue
        rows[cells[0].split(" ")[0]] = dict(zip(header, cells))
    return rows


def summary_lines(report):
    return [l[2:] for l in report.splitlines() if l.startswith("- ") and not l.startswith("- Run ")
            and not l.startswith("- Grid file") and not l.startswith("- Worker")
            and not l.startswith("- Coordinator") and not l.startswith("- Started")
            and not l.startswith("- CUDA")]


def per_activation(results):
    out = {}
    for a in ORDER:
        runs = [j for j in results["jobs"] if j["activation"] == a and j["status"] == "succeeded"]
        if not runs:
            continue
        frac = [j["seconds_to_target"] / j["total_train_seconds"]
                for j in runs if j["seconds_to_target"] is not None and j["total_train_seconds"] > 0]
        out[a] = {
            "n": len(runs),
            "error": mean_sd([j["error_rate"] for j in runs]),
            "first": mean_sd([j["first_epoch_at_target"] for j in runs]),
            "reached": sum(1 for j in runs if j["first_epoch_at_target"] is not None),
            "frac": mean_sd(frac),
            "latency": mean_sd([j["latency_ms_per_sample"] for j in runs]),
            "total": mean_sd([j["total_train_seconds"] for j in runs]),
        }
    return out


def stats_table(stats, paper_first=None, paper_error=None):
    head = "| Activation | n | Error rate (mean ± sd) | First epoch at target | Time to target / total training time | Latency (ms/sample) | Total training time (s) |"
    sep = "|---|---|---|---|---|---|---|"
    if paper_first is not None:
        head += " Paper: first epoch at 98% |"
        sep += "---|"
    lines = [head, sep]
    for a, s in stats.items():
        first = fmt(s["first"][0], s["first"][1], lambda v: f"{v:.1f}") if s["reached"] else "never"
        if s["reached"] and s["reached"] < s["n"]:
            first += f" ({s['n'] - s['reached']} of {s['n']} never)"
        row = (f"| {a} | {s['n']} | {fmt(s['error'][0], s['error'][1], lambda v: f'{100 * v:.2f}%')} "
               f"| {first} | {fmt(s['frac'][0], s['frac'][1], lambda v: f'{v:.2f}')} "
               f"| {fmt(s['latency'][0], s['latency'][1], lambda v: f'{v:.3f}')} "
               f"| {fmt(s['total'][0], s['total'][1], lambda v: f'{v:.1f}')} |")
        if paper_first is not None:
            row += f" {paper_first.get(a, '—')} |"
        lines.append(row)
    return "\n".join(lines)


def worse(rows, column="Error rate"):
    """Activations whose cell in `column` the tool marked significantly worse than the best."""
    return [a for a, r in rows.items() if "\\*" in r.get(column, "")]


def best(rows, column):
    return [a for a, r in rows.items() if r.get(column, "").startswith("**")]


def conclusions(rows, summary):
    lowest = best(rows, "Error rate")
    bad = worse(rows)
    fastest = next((l for l in summary if l.startswith("Fastest to the")), "No activation reached the target.")
    out = []
    leaders = [a for a in ("prelu", "leaky_relu") if a in rows]
    not_worse = [a for a in leaders if a not in bad]
    out.append(
        f"- *\"PReLU and Leaky ReLU give the lowest error.\"* Lowest mean error here: {', '.join(lowest) or '—'}. "
        + ("Neither PReLU nor Leaky ReLU is significantly worse than it"
           if len(not_worse) == len(leaders) else
           f"Significantly worse than it: {', '.join(a for a in leaders if a in bad)}")
        + f"; significantly worse than the lowest (Welch, p < 0.05 adjusted over every pair of the table by Holm's method): {', '.join(bad) or 'none'}. "
        + ("Holds only in the weak sense that they are among the best: the others are not "
           "shown to be worse either." if len(not_worse) == len(leaders) and len(bad) < len(rows) - 1 else
           "Holds." if len(not_worse) == len(leaders) else "Does not hold."))
    out.append(
        "- *\"Avoid Tanh.\"* " + ("Tanh's error is significantly higher than the lowest: holds."
                                  if "tanh" in bad else
                                  "Tanh's error is not significantly higher than the lowest: not supported by these runs."))
    leaky_fast = fastest.startswith("Fastest") and ": leaky_relu (" in fastest
    out.append(
        "- *\"Leaky ReLU is always fastest to target.\"* The tool's summary: " + fastest + " "
        + ("Holds here." if leaky_fast else "Does not hold here."))
    return "\n".join(out)


def versus_paper(stats, paper_first, paper_error):
    """Where these runs and the paper's single runs differ, in numbers."""
    means = [s["error"][0] for s in stats.values() if s["error"][0] is not None]
    lines = [f"- Error rates here: {100 * min(means):.2f}–{100 * max(means):.2f}% (means over "
             f"seeds); the paper: {paper_error}."]
    for a, said in paper_first.items():
        s = stats.get(a)
        if not s:
            continue
        if s["reached"]:
            ours = (f"reached the target in {s['reached']} of {s['n']} runs, first in epoch "
                    f"{s['first'][0]:.1f} on average")
        else:
            ours = f"never reached the target in {s['n']} runs"
        lines.append(f"- {a}: {ours}; the paper: {'never' if said == 'never' else 'epoch ' + said}.")
    return "\n".join(lines)


def section(title, run, paper_first=None, paper_error=None, slice_note=None):
    results, report, meta = run
    rows = table_rows(report)
    summary = summary_lines(report)
    stats = per_activation(results)
    n_jobs = len(results["jobs"])
    parts = [f"## {title}\n"]
    if slice_note:
        parts.append(slice_note + "\n")
    parts.append(
        f"Produced by `{meta['command']}` at commit `{meta['commit']}` on {meta['date']}, on "
        f"{meta['cpu']} ({meta['cpu_flags']}); {n_jobs} jobs; the run's own files are "
        f"`docs/reproduction/{results['grid']['name']}/` (`results.json`, and `report.md`, which "
        f"the current `coordinator report` renders from it: a test keeps the two equal).\n")
    if paper_error:
        parts.append(f"The paper (one run per activation): error rate {paper_error}.\n")
    parts.append(stats_table(stats, paper_first, paper_error) + "\n")
    parts.append("Times are this CPU's; the paper's were a GPU's, so compare time to target as a "
                 "fraction of each run's total training time, not in seconds.\n")
    if paper_first is not None:
        parts.append("Against the paper's Table 3:\n")
        parts.append(versus_paper(stats, paper_first, paper_error) + "\n")
    parts.append("What the tool's report says (its Welch tests over the seeds):\n")
    parts.append("\n".join(f"- {l}" for l in summary) + "\n")
    parts.append("The paper's conclusions against these runs:\n")
    parts.append(conclusions(rows, summary) + "\n")
    return "\n".join(parts)


def render():
    mnist, cifar = load("paper-mnist"), load("paper-cifar-slice")
    parts = ["# Reproducing the paper with dlgrid\n",
             "Generated by `scripts/reproduction.py` from the runs committed under "
             "`docs/reproduction/`; do not edit by hand (`scripts/reproduction.py --check` "
             "runs in the tests).\n",
             "The study the project grew out of ran each of its 12 cells once and drew its "
             "conclusions from single runs. Here the same grid runs with three seeds through the "
             "tool, and each conclusion is checked against the tool's significance tests.\n"]
    if mnist:
        parts.append(section("MNIST, paper CNN, full data (the paper's Table 3)", mnist,
                             PAPER_MNIST_FIRST_EPOCH, PAPER_MNIST_ERROR))
    else:
        parts.append("## MNIST\n\nNot run yet.\n")
    if cifar:
        parts.append(section(
            "CIFAR-10, VGG-11-BN: a SLICE, not the paper's Table 4", cifar, None, None,
            "**This is a slice**: 2,500 of the 50,000 training images, 1,000 of the 10,000 test "
            "images, 8 of the 50 epochs, a 50% target instead of 87%, on a CPU. It exercises "
            f"the same pipeline; its numbers do not compare with the paper's ({PAPER_CIFAR_ERROR}). "
            "The full CIFAR-10 half (`examples/paper.yaml`) is for a GPU machine "
            "(`bench/gpu_check.sh`); no GPU was available to this run."))
    else:
        parts.append("## CIFAR-10\n\nNot run yet.\n")
    return "\n".join(parts)


def main():
    text = render()
    if "--check" in sys.argv[1:]:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            sys.exit("docs/reproduction.md is not what the committed runs say: run scripts/reproduction.py")
        return
    open(OUT, "w").write(text)
    print(f"wrote {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
