"""Markdown table of eval runs, laid out like Table 3 of the Fleming-R1 paper.

    python -m eval.report runs/qwen7b runs/fleming7b [--reference]

Numbers are recomputed from each run's per-item files (eval.run's summary.json is only a cache):
per-benchmark accuracy, the macro average over the run's benchmarks, and the extraction-failure
rate. A second table gives per-benchmark failure rates and item counts. --reference adds the paper's
published averages; its per-benchmark cells are left empty rather than copied from memory.
"""
import os

from eval.loaders import PAPER_SUITE
from eval.records import ArgumentParser, UsageError, command
from eval.run import summarize

NAMES = {"medxpertqa": "MedXpertQA", "medqa": "MedQA", "medmcqa": "MedMCQA", "pubmedqa": "PubMedQA",
         "pubmedqa_test500": "PubMedQA-500", "mmlu_pro_biology": "MMLU-Pro Bio", "mmlu_pro_health": "MMLU-Pro Health",
         "careqa": "CareQA", "jmed": "JMED", "medbullets": "MedBullets", "medbullets_op4": "MedBullets-4", "cmexam": "CMExam"}
# Fleming-R1 paper, Table 3: macro average over its nine benchmarks.
REFERENCE = [("Fleming-R1-7B (paper)", {}, 63.37), ("Fleming-R1-32B (paper)", {}, 75.42)]


def pct(x):
    return "" if x is None else f"{100 * x:.2f}"


def table(summaries, labels, reference=False):
    present = {b for s in summaries for b in s["benchmarks"]}
    cols = [b for b in PAPER_SUITE if b in present] + sorted(present - set(PAPER_SUITE))
    head = ["Model"] + [NAMES.get(b, b) for b in cols] + ["Avg", "Extraction fail %"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = set()
    for s, label in zip(summaries, labels):
        cells, accs, fails, samples = [], [], 0.0, 0
        for b in cols:
            bs = s["benchmarks"].get(b)
            if not bs or bs["accuracy"] is None:
                cells.append("")
                continue
            mark = "" if bs["complete"] else "†"
            notes.update(mark)
            cells.append(pct(bs["accuracy"]) + mark)
            accs.append(bs["accuracy"])
            k = bs["n_done"] * bs["n_samples"]
            fails += bs["extraction_failure_rate"] * k
            samples += k
        avg = pct(sum(accs) / len(accs)) if accs else ""
        if accs and len(accs) < len(cols):
            avg += "*"
            notes.add("*")
        lines.append("| " + " | ".join([label] + cells + [avg, pct(fails / samples) if samples else ""]) + " |")
    if reference:
        for label, per, avg in REFERENCE:
            lines.append("| " + " | ".join([label] + [pct(per.get(b)) for b in cols] + [f"{avg:.2f}", ""]) + " |")
        notes.add("ref")
    foot = []
    if "†" in notes:
        foot.append("† run not finished: accuracy over the items done so far.")
    if "*" in notes:
        foot.append("* average over the benchmarks this run has, not all columns.")
    if "ref" in notes:
        foot.append("Paper rows: the macro average over its nine benchmarks (Table 3); per-benchmark cells left "
                    "empty. Our Avg is over the columns shown, so compare it only when they are the same nine.")
    return "\n".join(lines + ([""] + foot if foot else []))


def detail(summaries, labels):
    lines = ["| Model | Benchmark | Items | Samples/item | Accuracy | maj@n | Extraction fail % | Format % | "
             "Mean chars |", "|---|---|---|---|---|---|---|---|---|"]
    for s, label in zip(summaries, labels):
        for b, bs in s["benchmarks"].items():
            chars = bs.get("mean_output_chars")
            lines.append(f"| {label} | {NAMES.get(b, b)} | {bs['n_done']}/{bs['n_expected']} | "
                         f"{bs.get('n_samples', '')} | {pct(bs['accuracy'])} | {pct(bs.get('maj_accuracy'))} | "
                         f"{pct(bs['extraction_failure_rate'])} | {pct(bs.get('format_rate'))} | "
                         f"{'' if chars is None else f'{chars:.0f}'} |")
    return "\n".join(lines)


@command("eval.report")
def main(argv=None):
    p = ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories written by eval.run")
    p.add_argument("--labels", help="comma-separated row labels (default: the model name of each run)")
    p.add_argument("--reference", action="store_true", help="add the paper's published averages")
    p.add_argument("--no-detail", action="store_true", help="only the main table")
    a = p.parse_args(argv)
    summaries = []
    for run in a.runs:
        if not os.path.exists(os.path.join(run, "config.json")):
            raise UsageError(f"{run}: not a run directory (no config.json)")
        summaries.append(summarize(run))
    labels = a.labels.split(",") if a.labels else [s["model"] or os.path.basename(os.path.normpath(r))
                                                   for s, r in zip(summaries, a.runs)]
    if len(labels) != len(summaries):
        p.error(f"argument --labels: {len(labels)} labels for {len(summaries)} runs")
    print(table(summaries, labels, a.reference))
    if not a.no_detail:
        print()
        print(detail(summaries, labels))


if __name__ == "__main__":
    main()
