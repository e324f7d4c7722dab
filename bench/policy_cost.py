"""What policy evaluation costs per request, in µs per KB of prompt, for the shipped
default pack (deploy/packs/default.yaml): identity and classification, input rules
on the prompt, output rules on an answer of the same size.

    .venv/bin/python bench/policy_cost.py [--sizes 1 4 16 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cordon.packs import pack_name, parse_statement
from gateway.http import dialects
from gateway.identity import Identity
from gateway.policy import Decision, apply_input, output_policy

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = (
    "The quarterly review covers revenue, churn and the hiring plan for the platform team; "
    "questions go to finance.lead@example.com or +44 20 7946 0958 before Friday. "
)


def prompt(kilobytes: int) -> str:
    text = SENTENCE * (kilobytes * 1024 // len(SENTENCE) + 1)
    return text[: kilobytes * 1024]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64], metavar="KB")
    args = parser.parse_args()
    document = yaml.safe_load((ROOT / "deploy/packs/default.yaml").read_text())
    pack = parse_statement(
        {"name": pack_name(document), "revision": 1, "regions": ["*"], "document": document}
    )
    who = Identity("bench", roles=("analyst",), scopes=("chat:write",))
    print(
        "default pack, one call: input rules on the prompt, output rules on an answer of equal size"
    )
    print(f"{'prompt KB':>10}{'input µs':>12}{'output µs':>12}{'total µs':>12}{'µs per KB':>12}")
    for kilobytes in args.sizes:
        text = prompt(kilobytes)
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}
        rounds = max(20, 2000 // kilobytes)
        inputs, outputs = [], []
        for _ in range(rounds):
            decision = Decision()
            started = time.perf_counter()
            apply_input(pack, dialects.CHAT, body, who, decision)
            middle = time.perf_counter()
            policy = output_policy(pack, decision)
            assert policy is not None
            policy(text)
            ended = time.perf_counter()
            inputs.append((middle - started) * 1e6)
            outputs.append((ended - middle) * 1e6)
        i, o = statistics.median(inputs), statistics.median(outputs)
        print(f"{kilobytes:>10}{i:>12.0f}{o:>12.0f}{i + o:>12.0f}{(i + o) / kilobytes:>12.0f}")


if __name__ == "__main__":
    main()
