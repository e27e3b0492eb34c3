"""Print N synthetic captions (CC3M-like sentences and Stable-Diffusion-like prompts) for training benchmarks.

python perf/synthetic_captions.py 40000 > captions.txt
"""

from __future__ import annotations

import random
import sys

SUBJECTS = ["a dog", "the cat", "a young woman", "an old man", "two children", "a red car", "a small bird"]
VERBS = ["runs across", "sits on", "looks at", "stands near", "jumps over", "walks along"]
PLACES = ["the park", "a sandy beach", "the kitchen floor", "a busy street", "the snowy mountain"]
STYLES = ["", ", digital art", ", highly detailed, 8k", ", oil painting, trending on artstation, octane render"]


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40000
    rng = random.Random(0)
    for _ in range(count):
        print(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)}{rng.choice(STYLES)}")


if __name__ == "__main__":
    main()
