"""Load time of a checkpoint: model.py vs transformers (run each under /usr/bin/time -v for peak RSS).

    /usr/bin/time -v .venv/bin/python bench/load.py --model DIR --impl ours
    /usr/bin/time -v .venv/bin/python bench/load.py --model DIR --impl transformers
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--impl", choices=["ours", "transformers"], default="ours")
    args = p.parse_args()
    t0 = time.perf_counter()
    import torch
    if args.impl == "ours":
        import model as M
        t1 = time.perf_counter()
        net = M.Transformer.from_pretrained(args.model, dtype=torch.float32)
    else:
        from transformers import AutoModelForCausalLM
        t1 = time.perf_counter()
        net = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    t2 = time.perf_counter()
    n = sum(p.numel() for p in net.parameters())
    with torch.no_grad():  # touch every weight, so peak RSS counts them even when the load was lazy (mmap)
        net(torch.tensor([[1, 2, 3]]))
    print(f"{args.impl}: import {t1 - t0:.2f}s  load {t2 - t1:.2f}s  params {n / 1e6:.1f}M")


if __name__ == "__main__":
    main()
