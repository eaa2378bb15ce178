"""Search speed (issue 25): one user's 100,000 image jobs and 20,000 messages, on SQLite and PostgreSQL side by side.

    python bench/search.py [--images 100000] [--messages 20000] [--rounds 15] [--data /tmp/atelier-bench-search]

Builds the same history in a SQLite file and in a throwaway PostgreSQL 15 (tests/live/postgres.py): the user's jobs
(prompts drawn from a Zipf-like vocabulary, LoRA tags, favourites, dates over a year, several samplers and sizes),
their conversations, and another user's 20,000 jobs sharing the indexes. Then runs a fixed mix of searches (common,
rare and two words, a phrase, a prefix, OR, NOT, filters alone and with words, conversations with and without the
reasoning) through SearchService, each round running every search on both databases, the order alternating by
round. Times are whole service calls (the ids, the rows, their files and the marked words of a 20-row page),
in milliseconds: min/median/max per search and over the whole mix, saved to bench/results/search.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._server import load_average, save, stats
from services.search import SearchService
from storage.connections import database
from storage.db import open_database
from storage.models import Conversation, ImageFile, ImageJob, Message

USER, OTHER = "alice", "bob"
SUBJECTS = ("cat", "dog", "dragon", "castle", "portrait", "woman", "man", "robot", "forest", "city", "ship", "owl",
            "fox", "knight", "wizard", "mountain", "lake", "flower", "car", "spaceship")
WORDS = ("masterpiece", "best quality", "highly detailed", "golden hour", "cinematic lighting", "red", "blue",
         "cyberpunk", "cybernetic", "fantasy", "oil painting", "watercolor", "night", "sunset", "4k", "sharp focus",
         "intricate", "studio lighting", "volumetric fog", "bokeh", "trending on artstation", "concept art",
         "dramatic", "soft light", "neon", "misty", "ancient", "futuristic", "portrait photo", "wide angle")
NEGATIVE = ("blurry", "lowres", "bad anatomy", "extra fingers", "watermark", "text", "jpeg artifacts", "cropped")
SAMPLERS = ("Euler a", "Euler", "DPM++ 2M Karras", "DDIM", "LMS")
SIZES = ((512, 512), (512, 768), (768, 512), (1024, 1024))
LORAS = ("detail_tweaker", "film_grain", "anime_lineart", "pixel_art")
CHUNK = 1000
SYLLABLES = ("ka", "ro", "mi", "tel", "van", "dor", "shi", "ul", "pre", "xo", "ben", "zar")


def _rare(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 4)))


def _prompt(rng: random.Random) -> str:
    # Zipf-like: the first words of WORDS are far more common than the last.
    parts = [rng.choice(SUBJECTS)] + [WORDS[min(int(rng.paretovariate(0.8)) - 1, len(WORDS) - 1)]
                                       for _ in range(rng.randint(4, 12))]
    parts += [_rare(rng) for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.1:
        parts.append(f"<lora:{rng.choice(LORAS)}:0.{rng.randint(3, 9)}>")
    rng.shuffle(parts)
    return ", ".join(parts)


def _jobs(rng: random.Random, user: str, count: int, start: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for i in range(count):
        width, height = rng.choice(SIZES)
        rows.append({
            "user": user, "created_at": start + dt.timedelta(seconds=i * 315), "backend": "diffusers",
            "model": rng.choice(("sd15", "dreamshaper_8", "realistic_vision")), "prompt": _prompt(rng),
            "negative_prompt": ", ".join(rng.sample(NEGATIVE, 3)), "width": width, "height": height, "steps": 25,
            "cfg_scale": 7.0, "seed": -1, "seed_used": rng.randint(0, 2**32 - 1), "sampler": rng.choice(SAMPLERS),
            "status": "done", "mode": rng.choice(("txt2img",) * 6 + ("img2img", "inpaint")),
            "favourite": rng.random() < 0.02})
    return rows


def _text(rng: random.Random, words: int) -> str:
    pool = SUBJECTS + tuple(w for phrase in WORDS for w in phrase.split()) + (
        "the", "a", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "on", "how", "why", "recipe",
        "python", "function", "error", "database", "index", "search", "garden", "travel", "budget", "letter")
    return " ".join(rng.choice(pool) if rng.random() < 0.97 else _rare(rng) for _ in range(words))


def _insert_jobs(rows: list[dict[str, Any]]) -> None:
    for at in range(0, len(rows), CHUNK):
        chunk = rows[at:at + CHUNK]
        with database.atomic():
            first = ImageJob.insert_many(chunk).execute()
            ids = [j.id for j in ImageJob.select(ImageJob.id).where(ImageJob.id >= _first_id(first, chunk))
                   .order_by(ImageJob.id).limit(len(chunk))]
            ImageFile.insert_many([{"job": i, "index": 0, "path": f"2026/{i:06d}-0.png", "seed": r["seed_used"],
                                    "width": r["width"], "height": r["height"]} for i, r in zip(ids, chunk, strict=True)
                                   ]).execute()


def _first_id(result: Any, chunk: list[dict[str, Any]]) -> int:
    # SQLite answers the last rowid, PostgreSQL's insert_many a cursor of the new ids (the first one is enough).
    if isinstance(result, int):
        return result - len(chunk) + 1
    return min(row[0] for row in result)


def _insert_chats(rng: random.Random, messages: int, start: dt.datetime) -> None:
    per = 20
    for c in range(messages // per):
        when = start + dt.timedelta(hours=c * 8)
        with database.atomic():
            chat = Conversation.create(user=USER, title=_text(rng, rng.randint(2, 6)), created_at=when,
                                       updated_at=when + dt.timedelta(minutes=30), favourite=rng.random() < 0.05)
            Message.insert_many([{
                "conversation": chat.id, "position": p, "role": "user" if p % 2 == 0 else "assistant",
                "content": _text(rng, rng.randint(10, 60) if p % 2 == 0 else rng.randint(40, 200)),
                "reasoning": "" if p % 2 == 0 else _text(rng, rng.randint(50, 250)), "created_at": when,
            } for p in range(per)]).execute()


def build(location: Path | str, images: int, messages: int) -> Any:
    """Open (building when empty) the benchmark's history at `location`."""
    db = open_database(location)
    if ImageJob.select().where(ImageJob.user == USER).count() >= images:
        return db
    rng = random.Random(25)
    start = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    t0 = time.perf_counter()
    _insert_jobs(_jobs(rng, USER, images, start))
    _insert_jobs(_jobs(rng, OTHER, 20000, start))
    _insert_chats(rng, messages, start)
    print(f"built {location}: {time.perf_counter() - t0:.0f} s", flush=True)
    return db


def searches() -> dict[str, tuple[str, dict[str, Any]]]:
    """The mix: name -> (service method, arguments)."""
    june = {"since": "2025-06-04", "until": "2025-06-11"}
    return {
        "images: common word (cat)": ("images", {"q": "cat"}),
        "images: very common word (masterpiece)": ("images", {"q": "masterpiece"}),
        "images: rare word": ("images", {"q": "kamitel"}),
        "images: two words": ("images", {"q": "dragon fantasy"}),
        "images: phrase": ("images", {"q": '"golden hour"'}),
        "images: prefix": ("images", {"q": "cyber*"}),
        "images: OR": ("images", {"q": "owl OR fox"}),
        "images: NOT": ("images", {"q": "castle -night"}),
        "images: words + mode": ("images", {"q": "portrait", "mode": "img2img"}),
        "images: words + week": ("images", {"q": "robot", **june}),
        "images: favourites": ("images", {"q": "", "favourite": True}),
        "images: sampler": ("images", {"q": "", "sampler": "DDIM"}),
        "images: LoRA": ("images", {"q": "", "lora": "pixel_art"}),
        "images: seed": ("images", {"q": "", "seed": None}),  # one of the user's jobs' seeds, found at run time
        "images: a week": ("images", {"q": "", **june}),
        "images: newest (no words)": ("images", {"q": ""}),
        "chats: common word": ("conversations", {"q": "garden"}),
        "chats: two words": ("conversations", {"q": "python error"}),
        "chats: answers only": ("conversations", {"q": "database", "reasoning": False}),
        "chats: phrase": ("conversations", {"q": '"search index"'}),
        "chats: newest (no words)": ("conversations", {"q": ""}),
    }


def main() -> None:
    """Build both databases, then time the mix on each, interleaved round by round."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--data", type=Path, default=Path("/tmp/atelier-bench-search"))
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--out", default="search", help="bench/results/<out>.json")
    args = parser.parse_args()
    from tests.live.postgres import PostgresServer, missing_reason

    dbs: dict[str, Any] = {"sqlite": build(args.data / f"search-{args.images}-{args.messages}.db", args.images,
                                           args.messages)}
    server = None
    if not args.sqlite_only and missing_reason() is None:
        server = PostgresServer().start()
        dbs["postgresql"] = build(server.create_database(), args.images, args.messages)
    try:
        result = run(dbs, args.rounds)
    finally:
        for db in dbs.values():
            db.close()
        if server is not None:
            server.stop()
    result.update(images=args.images, messages=args.messages, rounds=args.rounds, load_average=load_average())
    print(f"saved {save(args.out, result)}")


def run(dbs: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Time every search on every database, `rounds` times (plus one warm-up round that is not counted)."""
    service = SearchService()
    mix = searches()
    database.initialize(next(iter(dbs.values())))
    mix["images: seed"][1]["seed"] = (ImageJob.select(ImageJob.seed_used).where(ImageJob.user == USER)
                                      .order_by(ImageJob.id).offset(1000).scalar())
    times: dict[str, dict[str, list[float]]] = {name: {kind: [] for kind in dbs} for name in mix}
    for r in range(rounds + 1):
        order = list(dbs) if r % 2 == 0 else list(reversed(dbs))
        for name, (method, kwargs) in mix.items():
            for kind in order:
                database.initialize(dbs[kind])
                t0 = time.perf_counter()
                page = getattr(service, method)(USER, **kwargs)
                elapsed = time.perf_counter() - t0
                if r:
                    times[name][kind].append(elapsed)
                assert page["jobs" if method == "images" else "conversations"], (name, kind)
    per_search = {name: {kind: stats(v, 1000) for kind, v in row.items()} for name, row in times.items()}
    overall = {kind: stats([t for row in times.values() for t in row[kind]], 1000) for kind in dbs}
    for name, row in per_search.items():
        print(f"{name:42s} " + "  ".join(f"{k} {v['median']:7.1f} ms" for k, v in row.items()))
    for kind, row in overall.items():
        medians = statistics.median(r[kind]["median"] for r in per_search.values())
        print(f"{'all searches, ' + kind:42s} median {row['median']:.1f} ms (min {row['min']:.1f}, "
              f"max {row['max']:.1f}); median of per-search medians {medians:.1f}")
    return {"per_search_ms": per_search, "overall_ms": overall}


if __name__ == "__main__":
    main()
