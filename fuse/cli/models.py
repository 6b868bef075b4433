"""``fuse models``: what is bundled, installed and cached."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("models", help="list the bundled offline models and what is cached")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    from fuse.models.bundled import BUNDLED, cached_models, is_installed
    from fuse.models.cache import cache_dir

    cached = set(cached_models())
    rows = [
        {"name": f"bundled:{m.name}", "kind": m.kind, "installed": is_installed(m.name), "cached": m.name in cached,
         "package": m.package, "licence": m.licence, "description": m.description}
        for m in BUNDLED.values()
    ]
    adapters = sorted(p.name for p in cache_dir("adapters").iterdir() if p.is_dir() and ".tmp-" not in p.name)
    if args.json:
        print(json.dumps({"bundled": rows, "cache": str(cache_dir()), "adapters": adapters}, indent=2))
        return 0
    print(f"{'name':28} {'kind':10} {'installed':9} {'cached':6}  description")
    for r in rows:
        print(f"{r['name']:28} {r['kind']:10} {str(r['installed']):9} {str(r['cached']):6}  {r['description']}")
    print(f"\ncache: {cache_dir()}")
    if adapters:
        print("cached adapters: " + ", ".join(adapters))
    return 0
