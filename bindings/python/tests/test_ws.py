"""orchestra.Server and orchestra.Client on asyncio, with each other and with python
`websockets` as the peer, on 127.0.0.1."""
import asyncio
import socket

import pytest
import websockets

import orchestra
from orchestra import Client, ClientState, Server


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def echo(server: Server):
    async for ev in server:
        if ev.type == "message":
            await server.send(ev.connection, ev.data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def runtime_for(io):
    """The shared runtime's I/O thread, or, inside a running loop, the embedded runtime the
    loop itself runs (orchestra.Runtime.for_loop(), also what Client and Server take by
    default there)."""
    return orchestra.Runtime.for_loop() if io == "loop" else orchestra.Runtime.shared()


@pytest.mark.parametrize("io", ["thread", "loop"])
@pytest.mark.parametrize("deflate", [False, True])
def test_client_and_server_echo(deflate, io):
    async def main():
        async with Server(deflate=deflate, runtime=runtime_for(io)) as srv:
            task = asyncio.create_task(echo(srv))
            async with Client(f"ws://127.0.0.1:{srv.port}/chat", deflate=deflate, runtime=runtime_for(io)) as c:
                assert c.state == ClientState.OPEN
                msgs = ["", "hi", "é✓🎵" * 1000, b"", b"\x00\xff" * 70000, bytes(range(256)) * 4096]
                for m in msgs:
                    await c.send(m)
                for m in msgs:
                    got = await c.recv()
                    assert type(got) is type(m) and got == m
                st = c.stats()
                assert st["messages_in"] == len(msgs)
                # On the wire: over 1 MiB plain; compressed, these repetitive messages shrink.
                assert (st["bytes_in"] > 1 << 20) if not deflate else (0 < st["bytes_in"] < 1 << 20)
            task.cancel()
    run(main())


@pytest.mark.parametrize("deflate", [False, True])
def test_wss_client_and_server_echo(pki, deflate):
    async def main():
        async with Server(deflate=deflate, tls_cert=pki("server.pem"), tls_key=pki("server.key")) as srv:
            task = asyncio.create_task(echo(srv))
            # The host name (localhost) and the chain (the test CA) are both checked.
            async with Client(f"wss://localhost:{srv.port}/", deflate=deflate, tls_ca_file=pki("ca.pem"),
                              tls_use_system_store=False) as c:
                for m in ["secret", b"\x00" * 100000, "é" * 20000]:
                    await c.send(m)
                    assert await c.recv() == m
            # A client that trusts another CA is refused with the reason.
            c = Client(f"wss://localhost:{srv.port}/", tls_ca_file=pki("other-ca.pem"), tls_use_system_store=False)
            with pytest.raises(orchestra.OrchestraError, match="unable to get local issuer certificate"):
                await c.connect()
            task.cancel()
    run(main())


def test_server_sees_open_message_close_events():
    async def main():
        async with Server() as srv:
            async with Client(f"ws://127.0.0.1:{srv.port}/") as c:
                await c.send("one")
                it = srv.__aiter__()
                opened = await it.__anext__()
                assert opened.type == "open" and opened.connection > 0
                msg = await it.__anext__()
                assert (msg.type, msg.data, msg.connection) == ("message", "one", opened.connection)
                assert srv.stats(opened.connection)["messages_in"] == 1
            closed = await it.__anext__()
            assert (closed.type, closed.code, closed.clean) == ("close", 1000, True)
    run(main())


def test_python_websockets_client_against_our_server():
    async def main():
        async with Server(deflate=True) as srv:
            task = asyncio.create_task(echo(srv))
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/", compression="deflate", max_size=None) as ws:
                for m in ["x", "ü" * 50000, b"\x01" * 300000]:
                    await ws.send(m)
                    assert await ws.recv() == m
            task.cancel()
    run(main())


@pytest.mark.parametrize("io", ["thread", "loop"])
def test_our_client_against_python_websockets_server(io):
    async def handler(ws):
        async for m in ws:
            await ws.send(m)

    async def main():
        async with websockets.serve(handler, "127.0.0.1", 0, max_size=None) as s:
            port = s.sockets[0].getsockname()[1]
            async with Client(f"ws://127.0.0.1:{port}/", runtime=runtime_for(io)) as c:
                for i in range(200):
                    await c.send(f"m{i}")
                got = [await c.recv() for _ in range(200)]
                assert got == [f"m{i}" for i in range(200)]
    run(main())


@pytest.mark.parametrize("io", ["thread", "loop"])
def test_recv_many_keeps_order_across_sizes_and_kinds(io):
    """A burst from python websockets: text, binary, empty and messages bigger than the
    inbox's copy buffer (256 KiB: those take the one-message path) arrive whole and in order,
    through recv_many and recv alike, and recv_many respects its limit."""
    big = "b" * (300 << 10)
    burst = [f"m{i}" for i in range(150)] + ["", b"\x00\x01bin", big, "after-big", b"", big + "2"] + \
            [f"n{i}" for i in range(150)]

    async def handler(ws):
        await ws.recv()                 # go
        for m in burst:
            await ws.send(m)
        await ws.recv()                 # stay open until the client is done

    async def main():
        async with websockets.serve(handler, "127.0.0.1", 0, max_size=None) as s:
            port = s.sockets[0].getsockname()[1]
            async with Client(f"ws://127.0.0.1:{port}/", runtime=runtime_for(io)) as c:
                await c.send("go")
                got = []
                while len(got) < len(burst):
                    if len(got) % 2:
                        got.append(await c.recv())
                    else:
                        batch = await c.recv_many(limit=7)
                        assert 1 <= len(batch) <= 7
                        got.extend(batch)
                assert len(got) == len(burst)
                for i, (g, want) in enumerate(zip(got, burst)):
                    assert type(g) is type(want) and g == want, f"message {i}"
                with pytest.raises(ValueError):
                    await c.recv_many(limit=0)
                await c.send("done")
    run(main())


def test_send_awaits_drain_when_above_high_watermark():
    async def main():
        # The peer reads nothing at first: the server's buffer passes the high watermark and
        # send() waits until the peer catches up.
        async with Server(high_watermark=64 << 10, low_watermark=16 << 10, max_buffered=64 << 20) as srv:
            reader_go = asyncio.Event()
            peer_may_leave = asyncio.Event()
            received = 0

            async def slow_peer():
                nonlocal received
                async with websockets.connect(f"ws://127.0.0.1:{srv.port}/", max_size=None, max_queue=1) as ws:
                    await reader_go.wait()
                    while received < 200:
                        received += len(await ws.recv()) // (32 << 10)
                    await peer_may_leave.wait()

            peer = asyncio.create_task(slow_peer())
            it = srv.__aiter__()
            opened = await it.__anext__()
            assert opened.type == "open"
            chunk = b"z" * (32 << 10)
            waited = 0
            for i in range(200):
                if not srv.send_nowait(opened.connection, chunk):
                    waited += 1
                    reader_go.set()
                    await srv._drained(opened.connection)
            assert waited > 0
            assert srv.stats(opened.connection)["buffered_amount"] <= 64 << 10
            peer_may_leave.set()
            await peer
            assert received == 200
    run(main())


@pytest.mark.parametrize("io", ["thread", "loop"])
def test_reconnect_flushes_offline_buffer_in_order(io):
    async def main():
        port = free_port()
        # With io="loop" the reconnect backoff is a timer the asyncio loop runs.
        c = Client(f"ws://127.0.0.1:{port}/", reconnect=True, reconnect_initial_delay=0.02,
                   reconnect_max_delay=0.1, runtime=runtime_for(io))
        for i in range(5):
            await c.send(f"early {i}")   # buffered: nothing listens yet
        orchestra_client_connect = asyncio.create_task(c.connect())
        await asyncio.sleep(0.2)
        assert c.state == ClientState.RECONNECTING
        async with Server(port=port) as srv:
            task = asyncio.create_task(echo(srv))
            await orchestra_client_connect
            assert [await c.recv() for _ in range(5)] == [f"early {i}" for i in range(5)]
            assert c.stats()["reconnects"] >= 1
            await c.close()
            task.cancel()
    run(main())


def test_embedded_runtime_is_one_per_loop_and_closes():
    async def main():
        rt = orchestra.Runtime.for_loop()
        assert rt.embedded and orchestra.Runtime.for_loop() is rt
        assert not orchestra.Runtime.shared().embedded
        async with Server(runtime=rt) as srv:
            task = asyncio.create_task(echo(srv))
            async with Client(f"ws://127.0.0.1:{srv.port}/", runtime=rt, ping_interval=0.05) as c:
                await asyncio.sleep(0.3)          # pings are timers the loop runs: they come back
                assert c.stats()["rtt_us"] > 0
                await c.send("x")
                assert await c.recv() == "x"
            task.cancel()
        rt.close()                                # runs the loop here until everything is closed
        assert orchestra.Runtime.for_loop() is not rt   # a fresh one after a close
    run(main())
    # Another loop, another runtime; outside a running loop there is none to take.
    with pytest.raises(RuntimeError):
        orchestra.Runtime.for_loop()


def test_inside_a_loop_the_default_runtime_is_the_loops_embedded_one():
    # Made outside a running loop: the shared runtime with its I/O thread.
    outside = Client("ws://127.0.0.1:1/")
    assert outside._runtime is orchestra.Runtime.shared() and outside._inbox._driver is None
    del outside

    async def main():
        rt = orchestra.Runtime.for_loop()
        async with Server() as srv:
            assert srv._runtime is rt
            task = asyncio.create_task(echo(srv))
            async with Client(f"ws://127.0.0.1:{srv.port}/") as c:
                assert c._runtime is rt
                for i in range(200):               # a lone send and bursts, read one by one
                    msgs = [f"m{i}.{j}" for j in range(i % 20 + 1)]
                    for m in msgs:
                        await c.send(m)
                    for m in msgs:
                        assert await c.recv() == m
                # Read right after the runs that filled them: neither inbox ever needed the
                # queue's readiness fd (the library's pushes took the queue's fast path).
                assert c._inbox._fd is None and srv._inbox._fd is None
            task.cancel()
    run(main())


def test_an_embedded_client_read_from_another_loop_uses_the_readiness_fd():
    # The runtime is run by loop A (a thread of its own); the client is read on loop B.
    import threading
    loop_a = asyncio.new_event_loop()
    thread = threading.Thread(target=loop_a.run_forever, daemon=True)
    thread.start()
    try:
        async def make():
            return orchestra.Runtime.for_loop()
        rt = asyncio.run_coroutine_threadsafe(make(), loop_a).result(10)

        async def main():
            srv = Server(runtime=orchestra.Runtime.shared()).start()
            task = asyncio.create_task(echo(srv))
            c = Client(f"ws://127.0.0.1:{srv.port}/", runtime=rt)
            await c.connect()
            for i in range(50):
                await c.send(f"x{i}")
                assert await c.recv() == f"x{i}"
            assert c._inbox._fd is not None      # woken through the queue's fd on this loop
            await c.close()
            task.cancel()
            await srv.close()
        run(main())
    finally:
        loop_a.call_soon_threadsafe(loop_a.stop)
        thread.join(10)


def test_unclosed_client_at_exit_is_harmless(tmp_path):
    """A client left open when the interpreter exits: the shared runtime's shutdown closes it
    and reports the state change after Python may have collected the Client. That used to call
    into a freed ctypes callback (a segfault at exit)."""
    import subprocess
    import sys
    script = tmp_path / "leave_open.py"
    script.write_text(
        "import asyncio, orchestra, websockets\n"
        "async def handler(ws):\n"
        "    async for m in ws: await ws.send(m)\n"
        "async def main():\n"
        "    async with websockets.serve(handler, '127.0.0.1', 0) as s:\n"
        "        port = s.sockets[0].getsockname()[1]\n"
        "        for _ in range(3):\n"
        "            c = orchestra.Client(f'ws://127.0.0.1:{port}/')\n"
        "            await c.connect()\n"
        "            await c.send('x')\n"
        "            assert await c.recv() == 'x'\n"
        "        print('done', flush=True)\n"
        "asyncio.run(main())\n")
    import os
    from pathlib import Path
    env = dict(os.environ, PYTHONPATH=str(Path(orchestra.__file__).resolve().parent.parent))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    assert r.stdout.strip() == "done"
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_errors_are_clear():
    with pytest.raises(orchestra.InvalidArgument, match="ws://"):
        Client("http://127.0.0.1/")
    with pytest.raises(orchestra.IOFailure, match="/nonexistent/ca.pem"):
        Client("wss://127.0.0.1:1/", tls_ca_file="/nonexistent/ca.pem")
    with pytest.raises(orchestra.OrchestraError, match="/nonexistent/cert.pem"):
        Server(tls_cert="/nonexistent/cert.pem", tls_key="/nonexistent/key.pem")
    with pytest.raises(orchestra.InvalidArgument, match="low_watermark"):
        Server(low_watermark=2 << 20, high_watermark=1 << 20)

    async def refused():
        c = Client(f"ws://127.0.0.1:{free_port()}/")
        with pytest.raises(orchestra.IOFailure, match="(?i)refused"):
            await c.connect()
        with pytest.raises(orchestra.Closed):
            await c.send("late")
    run(refused())

    async def in_use():
        async with Server() as a:
            with pytest.raises(orchestra.IOFailure, match="(?i)in use"):
                Server(port=a.port).start()
    run(in_use())

    with pytest.raises(TypeError):
        async def bad_type():
            async with Server() as srv:
                srv.broadcast(42)
        run(bad_type())
