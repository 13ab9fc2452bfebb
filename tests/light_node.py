"""A light service node (no ML models) as a process of its own, for tests that kill one:

python -m tests.light_node --role media --port P --redis URL --prefix X --node-id ID --data DIR [--drain-s S]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sidecar.kernel.redis_bus import RedisStreamsBus
from sidecar.service.serve import make_server
from tests.service_helpers import light_app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--role", default="media")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--node-id", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--drain-s", type=float, default=0.0)
    args = p.parse_args()
    bus = RedisStreamsBus(args.redis, prefix=args.prefix)
    app = light_app(args.data, bus, role=args.role, redis_url=args.redis, redis_prefix=args.prefix,
                    node_id=args.node_id, drain_s=args.drain_s)  # fmt: skip
    asyncio.run(make_server(app, "127.0.0.1", args.port).serve())


if __name__ == "__main__":
    main()
