"""A python `websockets` server for our client: sends the interop messages one by one,
expects each echoed unchanged, closes with 1000, prints one JSON line per connection.
usage: python_server.py PORT [deflate|plain] [CERT KEY]  (CERT KEY: wss)"""
import asyncio
import json
import ssl
import sys

import websockets

from messages import messages


async def handler(ws):
    msgs = messages()
    i = 0
    for m in msgs:
        await ws.send(m)
        r = await ws.recv()
        if r != m:
            print(json.dumps({"error": "mismatch", "at": i}), flush=True)
            await ws.close(1011)
            return
        i += 1
    await ws.close(1000, "done")
    print(json.dumps({"echoed": i, "code": ws.close_code,
                      "extensions": ws.request.headers.get("Sec-WebSocket-Extensions", "")}), flush=True)


async def main():
    port = int(sys.argv[1])
    comp = "deflate" if len(sys.argv) > 2 and sys.argv[2] == "deflate" else None
    tls = None
    if len(sys.argv) > 4:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(sys.argv[3], sys.argv[4])
    async with websockets.serve(handler, "127.0.0.1", port, compression=comp, max_size=None, ssl=tls):
        print("listening", flush=True)
        await asyncio.Future()


asyncio.run(main())
