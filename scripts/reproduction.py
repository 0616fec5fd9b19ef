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


def standings(results):
    """activation -> (standing, seeds) from a raced run's first table; empty otherwise."""
    races = results.get("races") or []
    if not races:
        return {}
    return {e["activation"]: (e["standing"], e["seeds"]) for e in races[0]["entrants"]}


def conclusions(rows, summary, results=None):
    raced = bool(results and results.get("races"))
    race = standings(results) if raced else {}
    margin = results["grid"].get("equivalence_margin") if raced else None
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
        + f"; significantly worse than the lowest (Welch, p < 0.05 adjusted over every pair of the table by Holm's method{' and over the race' + chr(39) + 's looks' if raced else ''}): {', '.join(bad) or 'none'}. "
        + ("Holds only in the weak sense that they are among the best: the others are not "
           "shown to be worse either." if len(not_worse) == len(leaders) and len(bad) < len(rows) - 1 else
           "Holds." if len(not_worse) == len(leaders) else "Does not hold."))
    same = [a for a in leaders if race.get(a, ("",))[0] == "equivalent"]
    if same:
        out[-1] += (f" The seed race decided more: {' and '.join(same)} are *equivalent* to the "
                    f"lowest within ±{margin} pp, and so are "
                    f"{', '.join(a for a, (st, _) in race.items() if st == 'equivalent' and a not in leaders) or 'none of the others'}:"
                    " on MNIST the choice among them cannot rest on error rate.")
    tanh = race.get("tanh")
    if "tanh" in bad:
        said = "Tanh's error is significantly higher than the lowest: holds."
    elif tanh and tanh[0] == "equivalent":
        said = (f"Tanh's error is not higher than the lowest by as much as {margin} pp: the seed "
                f"race showed it equivalent within ±{margin} pp after {tanh[1]} seeds. At that "
                "margin the advice is contradicted.")
    else:
        said = "Tanh's error is not significantly higher than the lowest: not supported by these runs."
    out.append("- *\"Avoid Tanh.\"* " + said)
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


def race_text(results):
    """What the seed race decided, from results.json's `races` (the first table's)."""
    race = results["races"][0]
    by = {"best": [], "worse": [], "equivalent": [], "open": []}
    for e in race["entrants"]:
        when = f", decided at look {e['decided_at_look']}" if "decided_at_look" in e else ""
        by[e["standing"]].append(f"{e['activation']} ({e['seeds']} seeds{when})")
    lines = [
        f"- The race ({race['min']} to {race['max']} seeds, at most {race['max_looks']} looks, "
        f"each spending α/{race['max_looks']}) "
        + (f"ended after {race['looks']} looks." if race["finished"] else
           f"had taken {race['looks']} looks when the run stopped."),
        f"- Lowest error rate at the last look: {', '.join(by['best']) or '—'}.",
        f"- Shown worse than the best (no more seeds): {', '.join(by['worse']) or 'none'}.",
        f"- Shown equivalent to the best within ±{results['grid'].get('equivalence_margin')} pp "
        f"(no more seeds): {', '.join(by['equivalent']) or 'none'}.",
        f"- Still open" + (" at the end" if race["finished"] else "") +
        f": {', '.join(by['open']) or 'none'}.",
        f"- It ran {race['jobs_run']} jobs where {race['max']} seeds of every activation would "
        f"have run {race['jobs_run'] + race['jobs_saved']}: {race['jobs_saved']} saved.",
    ]
    return "\n".join(lines)


def seeds_of(results):
    seeds = results["grid"]["seeds"]
    race = results["grid"].get("race")
    if race:
        return f"seeds raced from {race['min']} to {race['max']}"
    return f"seeds {seeds}"


def section(title, run, folder, paper_first=None, paper_error=None, slice_note=None):
    results, report, meta = run
    rows = table_rows(report)
    summary = summary_lines(report)
    stats = per_activation(results)
    n_jobs = sum(1 for j in results["jobs"] if j["status"] != "pending")
    parts = [f"## {title}\n"]
    if slice_note:
        parts.append(slice_note + "\n")
    parts.append(
        f"Produced by `{meta['command']}` (the grid then: {seeds_of(results)}) at commit "
        f"`{meta['commit']}` on {meta['date']}, on {meta['cpu']} ({meta['cpu_flags']}); "
        f"{n_jobs} jobs run; the run's own files are `docs/reproduction/{folder}/` "
        f"(`results.json`, and `report.md`, which the current `coordinator report` renders from "
        f"it: a test keeps the two equal).\n")
    if results.get("races"):
        parts.append("What the seed race decided:\n")
        parts.append(race_text(results) + "\n")
    if paper_error:
        parts.append(f"The paper (one run per activation): error rate {paper_error}.\n")
    parts.append(stats_table(stats, paper_first, paper_error) + "\n")
    parts.append("Times are this CPU's; the paper's were a GPU's, so compare time to target as a "
                 "fraction of each run's total training time, not in seconds.\n")
    if paper_first is not None:
        parts.append("Against the paper's Table 3:\n")
        parts.append(versus_paper(stats, paper_first, paper_error) + "\n")
    parts.append("What the tool's report says (its Welch tests over the seeds"
                 + (", adjusted for the race's looks" if results.get("races") else "") + "):\n")
    parts.append("\n".join(f"- {l}" for l in summary) + "\n")
    parts.append("The paper's conclusions against these runs:\n")
    parts.append(conclusions(rows, summary, results) + "\n")
    return "\n".join(parts)


def rerun_note(fixed, raced):
    """How the seeds both runs ran compare: the same ids train the same models."""
    error = lambda r: {(j["activation"], j["seed"]): j["error_rate"] for j in r["jobs"]
                       if j["status"] == "succeeded"}
    a, b = error(fixed), error(raced)
    shared = [k for k in a if k in b]
    same = sum(1 for k in shared if a[k] == b[k])
    return (f"The {len(shared)} seeds both MNIST runs trained (same job ids) came out with the "
            f"same error rate in {same} of them, to the last digit: a seed race reuses, or "
            "repeats exactly, what a fixed-seed run did.\n")


def render():
    mnist, cifar = load("paper-mnist"), load("paper-cifar-slice")
    race = load("paper-mnist-race")
    parts = ["# Reproducing the paper with dlgrid\n",
             "Generated by `scripts/reproduction.py` from the runs committed under "
             "`docs/reproduction/`; do not edit by hand (`scripts/reproduction.py --check` "
             "runs in the tests).\n",
             "The study the project grew out of ran each of its 12 cells once and drew its "
             "conclusions from single runs. Here the same grid runs with three seeds through the "
             "tool, and each conclusion is checked against the tool's significance tests. The MNIST "
             "half then runs again as a seed race: three seeds of every activation first, then "
             "more only where a comparison is still open, up to ten.\n"]
    if mnist:
        parts.append(section("MNIST, paper CNN, full data (the paper's Table 3)", mnist,
                             "paper-mnist", PAPER_MNIST_FIRST_EPOCH, PAPER_MNIST_ERROR))
    else:
        parts.append("## MNIST\n\nNot run yet.\n")
    if race:
        parts.append(section("MNIST again, seeds raced from 3 to 10", race, "paper-mnist-race",
                             PAPER_MNIST_FIRST_EPOCH, PAPER_MNIST_ERROR))
        if mnist:
            parts.append(rerun_note(mnist[0], race[0]))
    if cifar:
        parts.append(section(
            "CIFAR-10, VGG-11-BN: a SLICE, not the paper's Table 4", cifar, "paper-cifar-slice",
            None, None,
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
