"""The command-line contract of every data/kg/eval entry point (issue 24): a user mistake (a bad argument, an input
file that is missing, a folder, empty, garbage, truncated or of the wrong shape, an output path that cannot be
written) ends with exit code 2 and one line "PROG: error: ..."; nothing is half-written over an existing output.

test_fuzz_* call each main() in-process on seeded malformed invocations (an interpreter per case would cost a
second each); test_real_processes_* run one bad invocation of each entry point as a real process, for the exit
code and stderr a shell sees. test_kill_9_* kills a resumable writer at 20 seeded moments."""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from eval.records import make_record

ROOT = Path(__file__).resolve().parents[1]
BAD_NUMBERS = ["-1", "0", "-0.5", "nan", "inf", "abc", "", "1e999"]


# ----------------------------------------------------------------------------- a workspace of real and bad files

class Answers:
    """A loopback OpenAI-style server that answers every request "<answer>A</answer>" (and Easy)."""

    def __enter__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = "<difficulty>Easy</difficulty> <answer>A</answer>"
                data = json.dumps({"choices": [{"index": i, "message": {"role": "assistant", "content": text}}
                                               for i in range(body.get("n", 1))]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def records(n=6):
    return [make_record(f"q{i}", "web" if i % 2 else "book", "train", f"Which drug treats condition number {i} of "
                        f"the fictional ward {i * 7}?", [f"drug {i}", f"drug {i + 1}", f"drug {i + 2}"], "ABC"[i % 3])
            for i in range(n)]


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory, shared):
    """Good inputs of each layout, bad files of every kind, and outputs that already exist."""
    d = tmp_path_factory.mktemp("cli")
    good = write_lines(d / "good.jsonl", records())
    write_lines(d / "bench.jsonl", records(3)[:1])
    medqa = shared / "data/medqa/medqa_train_small.jsonl"
    (d / "medqa.jsonl").write_text("".join(medqa.read_text().splitlines(keepends=True)[:4]))
    (d / "folder").mkdir()
    (d / "empty.jsonl").write_text("")
    (d / "garbage.bin").write_bytes(random.Random(0).randbytes(3000))
    text = good.read_text()
    (d / "truncated.jsonl").write_text(text[: len(text) // 2 + 7])
    wrong = [dict(r) for r in records(3)]
    wrong[0]["options"], wrong[1]["answer"], wrong[2]["question"] = "A, B", 3, ["a list"]
    write_lines(d / "wrong_types.jsonl", wrong)
    (d / "latin1.jsonl").write_bytes(text.encode().replace(b"drug 1", b"dr\xfcg 1"))
    (d / "list.jsonl").write_text(json.dumps(records(2)) + "\n")
    (d / "a_file").write_text("not a folder\n")
    hsdn = d / "kg/hetionet-upstream/hsdn/symptoms-DO.tsv"  # the shared layout, cut short: a graph in a second
    hsdn.parent.mkdir(parents=True)
    src = shared / "kg-sources/hetionet-upstream/hsdn/symptoms-DO.tsv"
    hsdn.write_text("".join(src.read_text().splitlines(keepends=True)[:60]))
    from kg.build import build
    build(str(d / "kg"), ["hsdn"]).save(d / "graph")
    kg_questions(d)
    eval_run_dir(d)
    write_lines(d / "out.jsonl", records(2))  # outputs that already exist: a failed run must leave them alone
    (d / "outdir").mkdir()
    write_lines(d / "outdir" / "train.jsonl", records(1))
    return d


def kg_questions(d):
    """kg.split's input: questions with the meta fields kg.sample writes (template, answer_id)."""
    rows = [dict(r, meta={"template": "diagnosis", "answer_id": f"DOID:{i % 4}"}) for i, r in enumerate(records(12))]
    write_lines(d / "questions.jsonl", rows)


def eval_run_dir(d):
    from eval.run import main
    with Answers() as srv:
        main(["--benchmarks", "medqa", "--path", f"medqa={d / 'medqa.jsonl'}", "--endpoint", srv.url,
              "--model-name", "m", "--out", str(d / "run")])


# ----------------------------------------------------------------------------- the entry points and their slots
# A slot is (flag or None for a positional, kind, good value); kinds: in, out, outdir, dir (an input folder),
# int, float, str. The good values make a valid invocation; each case breaks one or two slots.

def entry_points(ws, url):
    def p(name):
        return str(ws / name)
    rec_in = (None, "in", p("good.jsonl"))
    return {
        "data.anonymize": ([rec_in, (None, "out", p("out.jsonl"))], ["--skip-bad"]),
        "data.filter": ([rec_in, (None, "out", p("out.jsonl")), ("--min-options", "int", "3"),
                         ("--dropped", "out", p("out.jsonl"))], []),
        "data.dedup": ([rec_in, (None, "out", p("out.jsonl")), ("--threshold", "float", "0.8")], []),
        "data.mix": ([rec_in, ("--out-dir", "outdir", p("outdir")), ("--rl-frac", "float", "0.5"),
                      ("--val-frac", "float", "0.1"), ("--val-max", "int", "5"), ("--weights", "str", "web=1")], []),
        "data.decontam": ([rec_in, (None, "out", p("out.jsonl")), ("--bench", "str", f"own={p('bench.jsonl')}"),
                           ("--n", "int", "8"), ("--min-coverage", "float", "0.6")], []),
        "data.verify": ([rec_in, ("--results", "out", p("verify.jsonl")), ("--endpoint", "str", url),
                         ("--model-name", "str", "m"), ("--n", "int", "2"), ("--apply", "out", p("out.jsonl")),
                         ("--concurrency", "int", "2")], []),
        "data.difficulty": ([rec_in, ("--results", "out", p("difficulty.jsonl")), ("--endpoint", "str", url),
                             ("--model-name", "str", "m"), ("--max-tokens", "int", "16"),
                             ("--apply", "out", p("out.jsonl"))], []),
        "data.prepare": ([("--out", "outdir", p("prep")), ("--source", "str", f"records={p('good.jsonl')}"),
                          ("--bench", "str", f"own={p('bench.jsonl')}"), ("--min-options", "int", "3"),
                          ("--near-dup", "float", "0.8"), ("--val-frac", "float", "0.1")],
                         ["--bench-only", "--steps", "convert,filter,dedup,decontam,mix"]),
        "kg.build": ([("--kg-sources", "dir", p("kg")), ("--out", "outdir", p("graph2")),
                      ("--sources", "str", "hsdn")], []),
        "kg.sample": ([("--graph", "dir", p("graph")), ("--out", "append", p("kgq.jsonl")), ("--n", "int", "5"),
                       ("--options", "int", "4"), ("--alpha", "float", "1"), ("--hops", "str", "1,2"),
                       ("--mix", "str", "diagnosis=1")], []),
        "kg.split": ([("--records", "in", p("questions.jsonl")), ("--out", "outdir", p("outdir")),
                      ("--held", "float", "0.3"), ("--max-group", "float", "0.5")], []),
        "kg.world": ([("--graph", "dir", p("graph")), ("--out", "outdir", p("world")), ("--diseases", "int", "2"),
                      ("--options", "int", "3"), ("--held", "float", "0.5")], []),
        "eval.run": ([("--benchmarks", "str", "medqa"), ("--path", "str", f"medqa={p('medqa.jsonl')}"),
                      ("--endpoint", "str", url), ("--model-name", "str", "m"), ("--out", "outdir", p("run2")),
                      ("--limit", "int", "2"), ("--temperature", "float", "0")], []),
        "eval.report": ([(None, "dir", p("run")), ("--labels", "str", "a")], ["--no-detail"]),
        "data.distill": ([("--records", "in", p("good.jsonl")), ("--out", "outdir", p("distill")),
                          ("--endpoint", "str", url), ("--model-name", "str", "m"), ("--k", "int", "2"),
                          ("--rounds", "int", "1"), ("--temperature", "float", "0.5"),
                          ("--max-words", "int", "200"), ("--max-repeat", "float", "0.25"),
                          ("--select", "str", "explicit"), ("--judge-endpoint", "str", url),
                          ("--judge-model-name", "str", "j")], []),
    }


def bad_values(ws, kind, good):
    """What a slot of this kind is wrongly given."""
    p = lambda name: str(ws / name)  # noqa: E731
    files = [p(n) for n in ("missing.jsonl", "folder", "empty.jsonl", "garbage.bin", "truncated.jsonl",
                            "wrong_types.jsonl", "latin1.jsonl", "list.jsonl")]
    return {"in": files,
            "dir": [p("missing"), p("a_file"), p("folder"), p("empty.jsonl")],
            "out": [p("folder"), p("a_file/x.jsonl")],
            "append": [p("folder"), p("a_file/x.jsonl"), p("out.jsonl"), p("garbage.bin"), p("latin1.jsonl")],
            "outdir": [p("a_file"), p("a_file/sub")],
            "int": [v for v in BAD_NUMBERS if v != "1e999"],
            "float": BAD_NUMBERS,
            "str": ["", "=", "nope", good.split("=")[0] + "=" + p("garbage.bin"), good + "," + p("latin1.jsonl")],
            }[kind]


def argv_of(slots, extra, values):
    argv = []
    for (flag, _, _), v in zip(slots, values):
        if v is None:
            continue
        argv += [v] if flag is None else [flag + v] if flag.endswith("=") else [flag, v]
    return argv + extra


def cases(ws, slots, extra, n, seed, bad=None, leave_out=True):
    """At least n malformed invocations of one entry point, seeded: each single-slot break, the generic mistakes
    (unknown option, a missing value, a missing argument), and random pairs of breaks. bad: {kind: values} for
    kinds of the caller's own; a slot's kind may be its list of bad values. leave_out: a slot left out is a case."""
    good = [v for _, _, v in slots]
    singles = []
    for i, (flag, kind, v) in enumerate(slots):
        values = kind if isinstance(kind, list) else (bad or {}).get(kind) or bad_values(ws, kind, v)
        for b in values:
            singles.append({i: b})
        if leave_out:
            singles.append({i: None})  # left out
    generic = [argv_of(slots, extra, good) + ["--no-such-option"], argv_of(slots, extra, good) + ["--x=1"]]
    generic += [argv_of(slots, extra, good) + [flag] for flag, _, _ in slots if flag]  # flag without its value
    rng = random.Random(seed)
    out = generic + [argv_of(slots, extra, [b.get(i, v) for i, v in enumerate(good)]) for b in singles]
    while len(out) < n:
        a, b = rng.sample(singles, 2)
        out.append(argv_of(slots, extra, [{**a, **b}.get(i, v) for i, v in enumerate(good)]))
    rng.shuffle(out)
    return out  # every single break, and pairs up to n


# ----------------------------------------------------------------------------- checks

def snapshot(root):
    """sha256 of every file under root (the graph's arrays too: a failed run must not touch them)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def run_main(main, argv, capsys):
    """(exit code, stderr) of main(argv) in this process; any exception but SystemExit fails the test."""
    capsys.readouterr()
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = 0 if e.code is None else e.code
    return code, capsys.readouterr().err


def main_of(module):
    import importlib
    return importlib.import_module(module).main


MODULES = ["data.anonymize", "data.filter", "data.dedup", "data.mix", "data.decontam", "data.verify",
           "data.difficulty", "data.prepare", "kg.build", "kg.sample", "kg.split", "kg.world", "eval.run",
           "eval.report", "data.distill"]  # a new one goes last: the seeds of the others are their index


@pytest.mark.parametrize("module", MODULES)
def test_fuzz_every_mistake_is_exit_2_and_one_line(module, ws, capsys):
    """~50 seeded malformed invocations per entry point: each ends with exit 0 or 2 (a mistake the command can
    carry on through, or a usage error), never a traceback or exit 1; a usage error is one stderr line
    "PROG: error: ..."; and a failed run leaves every file that existed before it as it was. Before issue 24's
    fixes: sys.exit(message) (exit 1) in most entry points; tracebacks for a missing file or folder as input
    (data.mix, data.filter, data.dedup, data.anonymize), a JSON list as a line (data.filter), --source without
    =PATH, an output path that is a folder, an --out of kg.sample holding other records (KeyError); a folder as
    output left a stray .tmp file beside it; data.filter wrote OUT before failing on --dropped, data.prepare
    rewrote its step files before failing on a bad --bench; argparse printed its usage block (several lines).
    data.distill (all 98 of its cases failed before): sys.exit(message) (exit 1) for a bad input or a resume with
    other settings, a traceback for an --out that is a file or under one, --k 0, --rounds -1 and a nan, inf or
    negative --temperature accepted, an --endpoint that is no URL accepted and stored in config.json."""
    main = main_of(module)
    with Answers() as srv:
        slots, extra = entry_points(ws, srv.url)[module]
        for argv in cases(ws, slots, extra, 50, seed=MODULES.index(module)):
            before = snapshot(ws)
            code, err = run_main(main, argv, capsys)
            assert code in (0, 2), (module, argv, code, err)
            if code == 2:
                line = err.rstrip("\n").splitlines()[-1:] or [""]
                assert line[0].startswith(f"{module}: error: ") and "Traceback" not in err, (argv, err)
                after = snapshot(ws)
                assert {p: h for p, h in after.items() if p in before} == before, (module, argv)


@pytest.mark.parametrize("url", ["nope", "=", "ftp://h/v1", "http://[x", "http:///v1"])
def test_an_endpoint_that_is_no_url_is_one_line_before_any_request(url, ws, capsys):
    """Every entry point with --endpoint refuses a value that is no http(s) URL with a host, naming it. (urllib
    raised ValueError inside the first request: a traceback from data.verify, data.difficulty and eval.run.)"""
    rec, out = str(ws / "good.jsonl"), str(ws / "never")
    argv = {"data.verify": [rec, "--results", out + ".jsonl"], "data.difficulty": [rec, "--results", out + ".jsonl"],
            "eval.run": ["--benchmarks", "medqa", "--out", out], "data.distill": ["--records", rec, "--out", out]}
    for module, a in argv.items():
        code, err = run_main(main_of(module), a + ["--endpoint", url, "--model-name", "m"], capsys)
        assert code == 2 and err.count("\n") == 1 and "--endpoint" in err and repr(url) in err, (module, err)
    assert not os.path.exists(out) and not os.path.exists(out + ".jsonl")


def test_real_processes_exit_2_with_one_stderr_line(ws):
    """Each entry point as a shell runs it, on one bad input file: exit code 2 and one stderr line, no traceback.
    (eval.report and data.* exited 1 with sys.exit(message); kg.sample and data.prepare printed tracebacks;
    data.distill made its --out folder before reading its input.)"""
    garbage = str(ws / "garbage.bin")
    argv = {"data.anonymize": [garbage, str(ws / "x.jsonl")], "data.filter": [garbage, str(ws / "x.jsonl")],
            "data.dedup": [garbage, str(ws / "x.jsonl")], "data.mix": [garbage, "--out-dir", str(ws / "x")],
            "data.decontam": [garbage, str(ws / "x.jsonl"), "--bench", f"own={ws / 'bench.jsonl'}"],
            "data.verify": [garbage, "--results", str(ws / "x.jsonl"), "--endpoint", "http://127.0.0.1:9",
                            "--model-name", "m"],
            "data.difficulty": [garbage, "--results", str(ws / "x.jsonl"), "--endpoint", "http://127.0.0.1:9",
                                "--model-name", "m"],
            "data.prepare": ["--out", str(ws / "x"), "--source", "medqa"],
            "kg.build": ["--kg-sources", str(ws / "folder"), "--sources", "hsdn", "--out", str(ws / "x")],
            "kg.sample": ["--audit", garbage], "kg.split": ["--records", garbage, "--out", str(ws / "x")],
            "kg.world": ["--graph", str(ws / "folder"), "--out", str(ws / "x")],
            "eval.run": ["--benchmarks", "medqa", "--path", f"medqa={garbage}", "--endpoint", "http://127.0.0.1:9",
                         "--model-name", "m", "--out", str(ws / "x")],
            "eval.report": [str(ws / "folder")],
            "data.distill": ["--records", garbage, "--out", str(ws / "x"), "--template"]}
    assert sorted(argv) == sorted(MODULES)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = {m: subprocess.Popen([sys.executable, "-m", m, *a], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for m, a in argv.items()}
    for m, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and err.count("\n") == 1 and err.startswith(f"{m}: error: "), (m, err)
    assert not (ws / "x").exists() and not (ws / "x.jsonl").exists()


# ----------------------------------------------------------------------------- kill -9 and rerun

@pytest.fixture(scope="module")
def big_graph(shared, tmp_path_factory):
    """test_kg_sample's real graph (20 HPO diseases and what joins them): enough for a few hundred questions."""
    from kg.build import build
    from test_kg_sample import DISEASES
    out = tmp_path_factory.mktemp("kill") / "g"
    build(str(shared / "kg-sources"), ["hpo", "do", "drugcentral", "hsdn", "wikidata"],
          hpo_diseases=DISEASES).save(out)
    return out


def kg_sample(graph, out, n=400):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "kg.sample", "--graph", str(graph), "--out", str(out),
                             "--n", str(n), "--seed", "5"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_kill_9_at_20_moments_then_rerun_gives_the_uninterrupted_output(big_graph, tmp_path):
    """kg.sample --out, killed with SIGKILL at 20 seeded moments and rerun each time: each killed file holds whole
    lines but for a torn last one at most, and the finished file (and its stats report) is byte for byte the
    uninterrupted run's, without a duplicate id. A run that finishes before its kill is compared too and then
    started afresh. (The stats report was written in place, so a kill could leave it cut; now replaced whole.)"""
    ref = tmp_path / "ref.jsonl"
    t0 = time.time()
    assert kg_sample(big_graph, ref).wait(timeout=300) == 0
    wall = time.time() - t0
    want, want_stats = ref.read_bytes(), (tmp_path / "ref.stats.md").read_bytes()
    out, rng, kills = tmp_path / "out.jsonl", random.Random(24), 0
    for _ in range(20):
        proc = kg_sample(big_graph, out)
        time.sleep(rng.uniform(0.2, wall))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=300)
        lines = out.read_bytes().split(b"\n") if out.exists() else [b""]
        for line in lines[:-1]:  # every line but a torn last one parses
            json.loads(line)
        if proc.returncode == 0:
            assert out.read_bytes() == want
            out.unlink()
    assert kills >= 10, kills  # most moments fell inside a run
    assert kg_sample(big_graph, out).wait(timeout=300) == 0
    assert out.read_bytes() == want and (tmp_path / "out.stats.md").read_bytes() == want_stats
    ids = [json.loads(line)["id"] for line in want.splitlines()]
    assert len(ids) == len(set(ids)) == 400


# ----------------------------------------------------------------------------- the trainers: sft.py, grpo.py, demo.py
# The same contract for the three trainers (their mains parse nanoGPT-style options: a config .py, --key value):
# seeded malformed invocations and inputs, each refused with exit 2 and one line before any model is built, or run
# to its end (exit 0) on a tiny random checkpoint for one step. Each case that is a valid run writes into a fresh
# --out_dir (the slot's good value FRESH stands for one).

FRESH = "FRESH"
SFT_EXTRA = ["--max_steps=1", "--ckpt_every=1", "--eval_every=1", "--export=False", "--val_size=2"]
GRPO_EXTRA = ["--max_steps=1", "--batch_size=2", "--max_new_tokens=4", "--micro_batch_size=16",
              "--ckpt_every=1", "--grad_checkpointing=False", "--plateau_window=1000", "--logprob_chunk=64"]


DAMAGE = ("weights", "trainer", "manifests")


def corrupt(path, at=0.5):
    """Flip bytes in the middle of a file, keeping its size (a manifest of sizes cannot see it)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i:i + 64] = bytes(255 - b for b in data[i:i + 64])
    path.write_bytes(bytes(data))


def damaged_runs(run, d, name):
    """Copies of a finished run (2 checkpoints) with their newest checkpoint damaged in ways a manifest of sizes
    cannot see, and one whose every manifest is gone (a resume then starts over, with a warning)."""
    out = {}
    for kind in DAMAGE:
        dst = d / f"{name}_{kind}"
        shutil.copytree(run, dst)
        ckpts = sorted((dst / "ckpt").iterdir()) if (dst / "ckpt").exists() else \
            sorted((dst / "stage1" / "ckpt").iterdir())
        if kind == "weights":  # dcp's index of the tensors (bytes flipped inside a tensor go unseen: no checksums)
            corrupt(ckpts[-1] / ".metadata", 0.0)
        elif kind == "trainer":
            corrupt(ckpts[-1] / "trainer_rank0.pt", 0.0)
        else:
            for c in ckpts:
                (c / "manifest.json").unlink()
        out[kind] = str(dst)
    return out


@pytest.fixture(scope="module")
def tws(ws, tmp_path_factory):
    """The trainers' workspace: a tiny checkpoint for each, their data, presets good and bad, checkpoint dirs that
    are not checkpoints, and finished runs with damaged checkpoints. ws's bad files are reused by path."""
    from test_grpo import write_toy
    from test_sft import records as chat_records
    from test_sft import tiny_checkpoint

    import demo
    d = tmp_path_factory.mktemp("trainers")
    tiny_checkpoint(d / "tiny")
    write_toy(d)  # d/toy (a word-level Qwen3) and d/rl.jsonl
    write_lines(d / "chat.jsonl", chat_records(8))
    write_lines(d / "val.jsonl", chat_records(3, seed=1))
    text = (d / "chat.jsonl").read_text()
    (d / "chat_torn.jsonl").write_text(text[: len(text) // 2])  # torn mid-line
    (d / "chat_last_torn.jsonl").write_text(text[:-9])  # the last line cut (a writer killed)
    pool = [json.loads(line) for line in (d / "rl.jsonl").read_text().splitlines()]
    write_lines(d / "rl_dup.jsonl", pool + pool[:1])  # a (source, id) twice
    write_lines(d / "rl_noanswer.jsonl", [{k: v for k, v in r.items() if k != "answer"} for r in pool])
    (d / "template.jinja").write_text(demo.CHATML)
    (d / "template_bad.jinja").write_text("{% for m in messages %}{{ m.content }")
    presets = {"good.py": "seed = 0\nlr = 1e-3\n", "syntax.py": "lr = = 1\n", "unknown.py": "learning_rate = 1\n",
               "wrong_type.py": "batch_size = 'two'\n", "runtime.py": "lr = undefined_name\n",
               "raises.py": "lr = 1 / 0\n", "demo_good.py": "n_diseases = 10\n",
               "demo_stage_key.py": "sft = dict(max_stepz=3)\n", "demo_stage_type.py": "grpo2 = dict(k='many')\n",
               "demo_stage_not_dict.py": "sft = [1, 2]\n", "import.py": "import os\nlr = os.nope\n"}
    for name, src in presets.items():
        (d / name).write_text(src)
    (d / "latin1.py").write_bytes(b"# caf\xe9\nlr = 1e-3\n")
    for name, files in {"no_weights": ["config.json", "tokenizer.json", "tokenizer_config.json"],
                        "no_tokenizer": ["config.json", "model.safetensors"]}.items():
        (d / name).mkdir()
        for f in files:
            shutil.copy(d / "tiny" / f, d / name / f)
    (d / "bad_config").mkdir()
    (d / "bad_config" / "config.json").write_text("{\"model_type\": ")
    (d / "a_file").write_text("not a folder\n")
    (d / "cwd").mkdir()  # where the trainers run: a default --out_dir lands here
    from grpo import main as grpo_main
    from sft import main as sft_main
    sft_main([str(d / "good.py"), "--train_file", str(d / "chat.jsonl"), "--model", str(d / "tiny"),
              "--out_dir", str(d / "sft_run"), "--batch_size=2", "--micro_batch_size=2"] + SFT_EXTRA +
             ["--max_steps=2"])
    grpo_main(["--model", str(d / "toy"), "--data", str(d / "rl.jsonl"), "--out_dir", str(d / "grpo_run"),
               "--k=2"] + GRPO_EXTRA + ["--max_steps=2"])
    damaged_runs(d / "sft_run", d, "sft_run")
    damaged_runs(d / "grpo_run", d, "grpo_run")
    return d


def trainer_bad_values(ws, tws):
    """Bad values of the trainers' own slot kinds (the generic kinds are bad_values')."""
    p, q = (lambda name: str(ws / name)), (lambda name: str(tws / name))  # noqa: E731
    files = [p(n) for n in ("missing.jsonl", "folder", "empty.jsonl", "garbage.bin", "truncated.jsonl",
                            "wrong_types.jsonl", "latin1.jsonl", "list.jsonl")]
    return {
        "config": [q(n) for n in ("syntax.py", "unknown.py", "wrong_type.py", "runtime.py", "raises.py",
                                  "latin1.py", "import.py", "missing.py")] + [p("folder"), p("garbage.bin")],
        "model": [q(n) for n in ("missing", "a_file", "no_weights", "no_tokenizer", "bad_config")] + [p("folder")],
        "chat": files + [q("chat_torn.jsonl"), q("chat.jsonl") + "," + p("missing.jsonl"), q("chat.jsonl") + ","],
        "pool": files + [q("rl_dup.jsonl"), q("rl_noanswer.jsonl"), q("chat.jsonl")],
        "template": [p("missing.jsonl"), p("folder"), p("garbage.bin"), q("template_bad.jinja")],
        "runout": [q("a_file"), q("a_file/sub")],
        "bool": ["maybe", "2", "", "None"],
    }


def trainer_entry_points(tws):
    q = lambda name: str(tws / name)  # noqa: E731
    sft_resume = [[q("good.py"), "--train_file", q("chat.jsonl"), "--model", q("tiny"), "--out_dir", run,
                   "--batch_size=2", "--micro_batch_size=2", "--resume"] + SFT_EXTRA + ["--max_steps=2"]
                  for run in [q(f"sft_run_{k}") for k in DAMAGE] + [q("sft_run")]]
    sft_resume.append(sft_resume[-1] + ["--lr=0.5"])  # other settings than the checkpoint's
    sft_resume.append(sft_resume[-2][:4] + [q("toy")] + sft_resume[-2][5:])  # another model's checkpoint
    grpo_resume = [["--model", q("toy"), "--data", q("rl.jsonl"), "--out_dir", run, "--k=2", "--resume"] +
                   GRPO_EXTRA + ["--max_steps=2"] for run in [q(f"grpo_run_{k}") for k in DAMAGE] + [q("grpo_run")]]
    grpo_resume.append(grpo_resume[-1] + ["--k=4"])
    return {
        "sft": ([(None, "config", q("good.py")), ("--train_file", "chat", q("chat.jsonl")),
                 ("--val_file", "chat", q("val.jsonl")), ("--model", "model", q("tiny")),
                 ("--out_dir", "runout", FRESH), ("--batch_size", "int", "2"), ("--micro_batch_size", "int", "1"),
                 ("--max_len", "int", "160"), ("--lr", "float", "0.001"), ("--warmup_steps", "int", "1"),
                 ("--chat_template", "template", q("template.jinja")), ("--resume=", "bool", "False")],
                SFT_EXTRA, sft_resume),
        "grpo": ([(None, "config", q("good.py")), ("--model", "model", q("toy")), ("--data", "pool", q("rl.jsonl")),
                  ("--out_dir", "runout", FRESH), ("--stage", "int", "1"), ("--k", "int", "2"),
                  ("--temperature", "float", "1.0"), ("--lr", "float", "0.001"), ("--agg", "str", "sum"),
                  ("--easy_share", "float", "0.5"), ("--resume=", "bool", "False")],
                 GRPO_EXTRA, grpo_resume),
    }


def demo_slots(ws, tws):
    """demo.py's options, each with the values it must refuse before its first stage (kg.build, minutes)."""
    p, q = (lambda name: str(ws / name)), (lambda name: str(tws / name))  # noqa: E731
    configs = trainer_bad_values(ws, tws)["config"] + [q(n) for n in ("demo_stage_key.py", "demo_stage_type.py",
                                                                       "demo_stage_not_dict.py")]
    return [(None, configs, q("demo_good.py")),
            ("--out_dir", [q("a_file"), q("a_file/sub")], q("demo_out")),
            ("--n_diseases", ["-1", "1", "abc", "1.5", "", "1e999"], "10"),
            ("--held", ["0", "1", "-0.5", "1.5", "nan", "1e999", "abc"], "0.6"),
            ("--options", ["1", "0", "-1", "abc"], "4"),
            ("--seeds", ["a,b", "1,,2", "1.5", "x", ","], "0,1"),
            ("--base_model", [q(n) for n in ("missing", "a_file", "no_weights", "bad_config")] + [p("folder")], ""),
            ("--launcher", ["'unclosed", "no-such-launcher-xyz", "nosuchrun --nproc_per_node=8"], ""),
            ("--knowledge", ["{'max_stepz': 3}", "{'lr': 'fast'}", "[1]", "{'batch_size': 0}", "{'model': 3}"],
             "{'max_steps': 2}"),
            ("--grpo1", ["{'k': -1}", "{'agg': 'mean'}", "{'temperature': float('nan')}", "{'stage': 2}"],
             "{'k': 4}"),
            ("--fact_copies", ["0", "-1", "abc"], "2"), ("--sft_share", ["0", "-0.5", "1.5", "nan"], "0.5"),
            ("--pass_k", ["0", "-1"], "4"), ("--pass_n", ["0", "-3"], "5"), ("--medqa", ["-1", "x"], "0"),
            ("--cpu_threads", ["-1", "1.5"], "1"), ("--eval_max_tokens", ["0", "-1"], "16"),
            ("--vocab_size", ["0", "-5", "10"], "512"), ("--hidden_size", ["0", "-8", "130"], "64"),
            ("--num_heads", ["0", "3"], "4"), ("--num_kv_heads", ["0", "3"], "2")]


TRAINERS = ["sft", "grpo", "demo"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_fuzz_trainers_every_mistake_is_exit_2_and_one_line(trainer, ws, tws, capsys, monkeypatch):
    """>= 50 seeded malformed invocations and inputs per trainer: bad types and sizes, unknown options, missing,
    empty, folder, binary, truncated and torn input files, config presets with a syntax error, an unknown key, a
    wrong type or an exception, a --model dir that is not a checkpoint, an --out_dir that is a file, --resume on a
    checkpoint damaged in ways its manifest cannot see (or with other settings, or another model). Each ends with
    exit 0 (a valid run of one step on a tiny checkpoint, in a fresh --out_dir) or 2 with one line "PROG: error: ..."
    on stderr, never a traceback, and a refused run changes no file that existed before it. demo.py must refuse every
    case before its first stage (run_all is never reached: a case of it is always a mistake).
    FAILED before the fixes: sft.py traced back for an --out_dir that is a file or under one (after training) and
    a binary --chat_template; sft.py and grpo.py for a config preset that is a folder, not UTF-8 or raises
    (NameError, ZeroDivisionError, AttributeError), a --resume onto another model's checkpoint (dcp's
    CheckpointException is a BaseException) and a damaged .metadata (dcp logged a traceback); both took 1e999
    (inf) for a float. demo.py checked almost nothing: a negative, zero or out-of-range size, share or count, a
    launcher that is not there, a stage option of the wrong name or type or one demo.py sets itself (model,
    out_dir), a --base_model that is no checkpoint, an --out_dir that is a file all started kg.build (minutes)."""
    monkeypatch.chdir(tws / "cwd")
    bad = trainer_bad_values(ws, tws)
    prog = trainer + ".py"
    if trainer == "demo":
        import demo
        monkeypatch.setattr(demo, "run_all", lambda cfg, seeds: pytest.fail(f"demo.py ran with {cfg}"))
        main, todo = demo.main, cases(ws, demo_slots(ws, tws), [], 50, seed=100 + TRAINERS.index(trainer),
                                      leave_out=False)
    else:
        slots, extra, specials = trainer_entry_points(tws)[trainer]
        main = main_of(trainer)
        todo = specials + cases(ws, slots, extra, 50, seed=100 + TRAINERS.index(trainer), bad=bad)
    counts = {0: 0, 2: 0}
    for i, argv in enumerate(todo):
        argv = [str(tws / f"{trainer}_fresh{i}") if a == FRESH else a for a in argv]
        before = snapshot(tws)
        code, err = run_main(main, argv, capsys)
        assert code in (0, 2), (trainer, argv, code, err)
        counts[code] += 1
        if os.environ.get("FUZZ_SHOW"):  # a file to list each case's exit and last stderr line in
            with open(os.environ["FUZZ_SHOW"], "a") as f:
                f.write(f"{trainer} {code} {argv} {err.strip().splitlines()[-1:] if err.strip() else ''}\n")
        if code == 2:
            line = err.rstrip("\n").splitlines()[-1:] or [""]
            assert line[0].startswith(f"{prog}: error: ") and "Traceback" not in err, (argv, err)
            after = snapshot(tws)
            assert {p: h for p, h in after.items() if p in before} == before, (trainer, argv)
    print(trainer, len(todo), "cases", counts)
    assert len(todo) >= 50 and counts[2] >= 40


# ----------------------------------------------------------------------------- kill -9 the trainers, eval, data

def outputs(root, skip=()):
    """{relative path: bytes} of every file under root but those whose name contains one of skip."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and not any(s in p.name for s in skip)}


def metric_rows(path):
    """metrics.jsonl rows without the wall-clock ones (tokens/s, seconds)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [{k: v for k, v in r.items() if not (k.endswith("_s") or k == "tokens_per_s")} for r in rows]


def weights_of(path):
    from safetensors.torch import load_file
    return load_file(str(Path(path) / "model.safetensors"))


def same_run(a, b, metrics, hf):
    """Metrics rows equal (losses to 1e-6) and final weights equal (to float noise of a resumed Adam)."""
    import torch
    ra, rb = metric_rows(a / metrics), metric_rows(b / metrics)
    assert [r["step"] for r in ra] == [r["step"] for r in rb], (ra, rb)
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys() and all(x[k] == pytest.approx(y[k], rel=1e-6, abs=1e-9) for k in x), (x, y)
    wa, wb = weights_of(a / hf), weights_of(b / hf)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-7)


def eval_rows(run):
    """eval.run's finished rows by id (over its part files), without timing fields; a duplicate id fails."""
    rows = {}
    for part in sorted(Path(run).rglob("*.jsonl")):
        for line in part.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a torn last line of a killed run
            if isinstance(r, dict) and "id" in r:
                assert r["id"] not in rows, f"duplicate id {r['id']} in {part}"
                rows[r["id"]] = {k: v for k, v in r.items() if "time" not in k and not k.endswith("_s")}
    return rows


@pytest.mark.slow
def test_kill_9_trainers_eval_and_prepare_then_resume_equals_the_uninterrupted_run(ws, shared, tmp_path):
    """sft.py, grpo.py, eval.run and data.prepare, each killed with SIGKILL at 5 seeded moments inside its run and
    rerun (--resume for the trainers, the same command for the others) until it finishes: sft/grpo give the same
    metrics rows and final weights as an uninterrupted run (checkpoints every step), eval.run the same rows with no
    id twice, data.prepare the same step files byte for byte (their .stats.json the same counts; its key hashes the
    --out path, its seconds are wall time; report.md, which lists step times, is left out). A run that ends before
    its kill is compared the same way and started afresh, so a fast job still gets cut. The four run side by side to
    keep the wall time (~80-105 s on 2 busy cores). Nothing failed on the first run of this test: no fix was needed."""
    from test_grpo import write_toy
    from test_sft import records as chat_records
    from test_sft import tiny_checkpoint

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    tiny_checkpoint(tmp_path / "tiny")
    write_lines(tmp_path / "chat.jsonl", chat_records(12))
    toy, pool = write_toy(tmp_path)
    medqa = shared / "data/medqa/medqa_train_small.jsonl"
    (tmp_path / "medqa.jsonl").write_text("".join(medqa.read_text().splitlines(keepends=True)[:150]))
    write_lines(tmp_path / "records.jsonl", records(300))
    py = sys.executable

    def sft(out):
        return [py, str(ROOT / "sft.py"), f"--train_file={tmp_path / 'chat.jsonl'}", f"--model={tmp_path / 'tiny'}",
                f"--out_dir={out}", "--max_steps=4", "--batch_size=2", "--micro_batch_size=2", "--max_len=160",
                "--lr=3e-3", "--warmup_steps=1", "--ckpt_every=1", "--eval_every=2", "--val_size=2", "--resume"]

    def grpo(out):
        return [py, str(ROOT / "grpo.py"), f"--model={toy}", f"--data={pool}", f"--out_dir={out}", "--max_steps=4",
                "--batch_size=2", "--k=4", "--max_new_tokens=6", "--micro_batch_size=32", "--lr=1e-2", "--min_lr=1e-2",
                "--warmup_steps=1", "--ckpt_every=1", "--grad_checkpointing=False", "--plateau_window=1000",
                "--logprob_chunk=64", "--resume"]

    def evalrun(out):
        return [py, "-m", "eval.run", "--benchmarks", "medqa", "--path", f"medqa={tmp_path / 'medqa.jsonl'}",
                "--endpoint", srv.url, "--model-name", "m", "--out", str(out)]

    def prepare(out):
        return [py, "-m", "data.prepare", "--out", str(out), "--source", f"records={tmp_path / 'records.jsonl'}",
                "--bench", f"own={ws / 'bench.jsonl'}", "--bench-only", "--min-options", "3"]

    def start(cmd):
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def same_output(name):
        ref, cut = tmp_path / f"{name}_ref", tmp_path / f"{name}_cut"
        if name in ("sft", "grpo"):
            sub = "stage1" if name == "grpo" else ""
            same_run(ref / sub, cut / sub, "metrics.jsonl", "hf")
        elif name == "eval.run":
            want = eval_rows(ref)
            assert len(want) == len((tmp_path / "medqa.jsonl").read_text().splitlines()) and eval_rows(cut) == want
        else:
            want, got = outputs(ref, skip=("report.md",)), outputs(cut, skip=("report.md",))
            assert want.keys() == got.keys()
            for f in want:  # the step files byte for byte; their .stats.json but for the seconds and the key (the path)
                if f.endswith(".stats.json"):
                    a, b = (json.loads(x)["stats"] for x in (want[f], got[f]))
                    assert {k: v for k, v in a.items() if not k.startswith("seconds")} == \
                        {k: v for k, v in b.items() if not k.startswith("seconds")}, f
                else:
                    assert want[f] == got[f], f

    with Answers() as srv:
        jobs = {"sft": sft, "grpo": grpo, "eval.run": evalrun, "data.prepare": prepare}
        t0, refs = time.time(), {name: start(cmd(tmp_path / f"{name}_ref")) for name, cmd in jobs.items()}
        walls = {}
        while len(walls) < len(refs):
            for name, p in refs.items():
                if name not in walls and p.poll() is not None:
                    assert p.returncode == 0, (name, p.stderr.read()[-2000:])
                    walls[name] = time.time() - t0
            time.sleep(0.05)
        rng, kills = random.Random(2424), {name: 0 for name in jobs}
        moments = {name: [rng.uniform(0.3, walls[name]) for _ in range(5)] for name in jobs}
        for i in range(5):  # round i: each job killed at its i-th moment, side by side
            procs = {name: start(cmd(tmp_path / f"{name}_cut")) for name, cmd in jobs.items()}
            t0, killed = time.time(), set()
            for name in sorted(jobs, key=lambda n: moments[n][i]):
                time.sleep(max(0.0, moments[name][i] - (time.time() - t0)))
                if procs[name].poll() is None:
                    procs[name].send_signal(signal.SIGKILL)
                    kills[name] += 1
                    killed.add(name)
            for name, p in procs.items():
                p.wait(timeout=300)
                assert p.returncode in (0, -signal.SIGKILL), (name, p.stderr.read()[-2000:])
                if name not in killed:  # it ended before its kill: it must equal the reference; then start afresh
                    same_output(name)
                    shutil.rmtree(tmp_path / f"{name}_cut")
        finals = {name: start(cmd(tmp_path / f"{name}_cut")) for name, cmd in jobs.items()}  # resume to the end
        for name, p in finals.items():
            assert p.wait(timeout=300) == 0, (name, p.stderr.read()[-2000:])
    print("kills", kills, "uninterrupted walls", {k: round(v, 1) for k, v in walls.items()})
    assert min(kills.values()) >= 1 and sum(kills.values()) >= 8, kills
    for name in jobs:
        same_output(name)
