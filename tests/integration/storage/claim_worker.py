"""A separate process that races for submission slots: `python claim_worker.py URL MAX GO_FILE ID...`.

It waits until GO_FILE exists (so every worker starts together), tries to claim each batch id and prints the
ids it claimed as JSON. Used by test_storage_claims.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

from bouncer_queue.storage.db import make_engine
from bouncer_queue.storage.repository import ClaimResult, Repository


async def main(url: str, max_in_flight: int, go_file: Path, batch_ids: list[int]) -> None:
    engine = make_engine(url)
    repo = Repository(engine)
    await repo.ping()
    while not go_file.exists():
        await asyncio.sleep(0.01)
    random.shuffle(batch_ids)
    claimed = [b for b in batch_ids if await repo.try_claim_submission(b, max_in_flight) == ClaimResult.CLAIMED]
    await engine.dispose()
    print(json.dumps(claimed))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), [int(a) for a in sys.argv[4:]]))
