"""``make demo``: run each task's short demo on its embedded default data and print its results table.

Tasks not built yet say so instead of pretending.
"""

from __future__ import annotations

import sys

PENDING = {
    "trading agent (PPOTrader, MarketDataModule)": "issue 3",
    "speech student (Wav2Vec2Distiller, SpeechDataModule)": "issue 4",
    "video step aligner (ClipPretrainer, StepAligner)": "issue 5",
}


def main() -> int:
    print("casebook demo")
    for task, issue in PENDING.items():
        print(f"  {task}: not built yet ({issue})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
