"""When a failed create provably never reached Bouncer, over real sockets and the real simulator over HTTP.

- A create's body that could not be written in full (the server stopped reading) is `request_sent=False`:
  Bouncer cannot act on half a request, so the create may be sent again without paying twice.
- A create never rides a pooled keep-alive connection: behind a server that closes idle connections, each
  create opens its own, so a stale one cannot turn it into an unknown outcome.
- A create answered by closing the connection after the batch was made (the simulator's
  `drop_create_response_rate`) is `request_sent=True`, and charged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bouncer_queue.bouncer import BouncerClient, BouncerUnavailable, make_bouncer_client
from bouncer_queue.config import Settings
from bouncer_queue.simulator import SimulatorConfig, SimulatorServer
from bouncer_queue.storage.records import BatchEmail

API_KEY = "sk-unsent-test"


def _client(base_url: str, create_timeout: float = 10) -> BouncerClient:
    settings = Settings(
        bouncer_api_key=SecretStr(API_KEY),
        bouncer_api_base_url=base_url,
        bouncer_timeout_seconds=5,
        bouncer_create_timeout_seconds=create_timeout,
        bouncer_connect_timeout_seconds=5,
    )
    return make_bouncer_client(settings)


class IdleClosingProxy:
    """A TCP proxy to `upstream` that closes a client connection idle for `idle` seconds; counts connections."""

    def __init__(self, upstream: tuple[str, int], idle: float) -> None:
        self.upstream, self.idle, self.connections = upstream, idle, 0
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers += [writer, up_writer]
        self._tasks.append(asyncio.create_task(self._pipe(up_reader, writer)))
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), self.idle):
                up_writer.write(chunk)
        except (TimeoutError, ConnectionError):
            pass
        writer.close()
        up_writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest.fixture
def simulator() -> AsyncIterator[SimulatorServer]:
    with SimulatorServer(SimulatorConfig(api_keys=(API_KEY,), drop_create_response_rate=0.0)) as server:
        yield server


async def test_a_body_never_written_in_full_was_not_sent() -> None:
    done = asyncio.Event()

    async def stop_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await done.wait()  # never reads the body; the client's write stalls
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    server = await asyncio.start_server(stop_reading, sock=listener)
    port = listener.getsockname()[1]
    # About 8 MB: more than the kernel buffers on both sides can take.
    emails = [BatchEmail(f"user-{i:06d}@example.com", "n" * 50) for i in range(100_000)]
    async with server, _client(f"http://127.0.0.1:{port}/v1.1", create_timeout=1) as client:
        with pytest.raises(BouncerUnavailable) as caught:
            await client.create_batch(emails)
        done.set()
        server.close()
        await asyncio.sleep(0.1)  # let the handler close its side
    assert caught.value.retryable and not caught.value.request_sent


async def test_creates_never_reuse_a_connection_the_server_may_have_closed(simulator: SimulatorServer) -> None:
    proxy = IdleClosingProxy(("127.0.0.1", int(simulator.root_url.rpartition(":")[2])), idle=0.2)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, _client(f"http://127.0.0.1:{port}/v1.1") as client:
        await client.credits()
        await asyncio.sleep(0.5)  # the proxy has closed the pooled connection by now
        first = await client.create_batch([BatchEmail("a@example.com")])
        second = await client.create_batch([BatchEmail("b@example.com")])
        server.close()
        await proxy.close()
    assert first.batch_id != second.batch_id
    assert simulator.state.batch_creations == 2
    assert proxy.connections == 3  # credits, then one connection per create


async def test_a_dropped_create_answer_may_have_been_sent_and_is_charged_once() -> None:
    config = SimulatorConfig(api_keys=(API_KEY,), drop_create_response_rate=1.0, credits=100)
    with SimulatorServer(config) as server:
        async with _client(server.base_url) as client:
            with pytest.raises(BouncerUnavailable) as caught:
                await client.create_batch([BatchEmail("a@example.com"), BatchEmail("b@example.com")])
            assert await client.credits() == 98
    assert caught.value.request_sent
    assert [r["status"] for r in server.state.requests if r["path"] == "/v1.1/email/verify/batch"] == [0]
