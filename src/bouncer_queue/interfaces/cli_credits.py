"""`bouncer-queue estimate`: what a list will cost and how long it will take, before a credit is spent."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bouncer_queue.credits.estimate import Estimate
from bouncer_queue.interfaces.cli_jobs import (
    ColumnOpt,
    EncodingOpt,
    FileArg,
    InputFormatOpt,
    MaxRowsOpt,
    NoCacheOpt,
    NoHeaderOpt,
    SheetOpt,
)
from bouncer_queue.interfaces.common import console, load_settings, run, setup_logging
from bouncer_queue.interfaces.runner import SubmitOptions, estimate_file
from bouncer_queue.service import QueueManager


def estimate(
    file: FileArg,
    column: ColumnOpt = None,
    no_header: NoHeaderOpt = False,
    sheet: SheetOpt = None,
    input_format: InputFormatOpt = None,
    encoding: EncodingOpt = None,
    max_rows: MaxRowsOpt = None,
    no_cache: NoCacheOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Count what a list will cost (rows, blanks, invalid, duplicates, cached, billable) and the time it takes
    within the rate limits; asks Bouncer for the balance once and stores nothing."""
    settings = load_settings()
    setup_logging(settings, quiet=True)
    options = SubmitOptions(
        column=column,
        max_rows=max_rows,
        encoding=encoding,
        header=not no_header,
        sheet=sheet,
        input_format=input_format,
        use_cache=not no_cache,
    )

    async def go() -> Estimate:
        async with QueueManager(settings) as manager:
            return await estimate_file(manager, file, options)

    result = run(settings, go)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    for line in result.lines():
        console.print(line, highlight=False)
