#!/usr/bin/env python3
"""A NATS server that misbehaves on purpose, for the client's bad-input tests.

Usage: nats_fake.py MODE [MODE ...]

Connection i behaves as MODE i (the last mode for every later connection). Each connection gets
an INFO (max_payload 1024, headers on) and its handshake answered (CONNECT taken, PING
answered with PONG); then, at the client's first command after that (its SUB), by mode:
  garbled   sends a MSG line whose subscription id is no number
  err       sends -ERR 'Unknown Protocol Operation' and closes, as nats-server does
  oversize  announces a MSG of 99,999,999 bytes
  silent    answers nothing more (PINGs go unanswered)
  normal    a tiny server: SUB, UNSUB, PUB delivered to the same connection's matching
            subscriptions (exact subjects), PING answered
Prints "listening on 127.0.0.1:PORT" once it accepts connections.
"""
import asyncio
import sys

INFO = b'INFO {"server_id":"fake","version":"2.9.0","proto":1,"max_payload":1024,"headers":true}\r\n'


async def serve(reader, writer, mode):
    writer.write(INFO)
    await writer.drain()
    handshaken = False
    subs = {}
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            words = line.strip().split()
            if not words:
                continue
            op = words[0].upper()
            if op == b"CONNECT":
                continue
            if op == b"PING" and not handshaken:
                handshaken = True
                writer.write(b"PONG\r\n")
                await writer.drain()
                continue
            if mode in ("garbled", "err", "oversize") and handshaken:
                if mode == "garbled":
                    writer.write(b"MSG some.subject notanumber 5\r\nhello\r\n")
                elif mode == "err":
                    writer.write(b"-ERR 'Unknown Protocol Operation'\r\n")
                    await writer.drain()
                    writer.close()
                    return
                elif mode == "oversize":
                    writer.write(b"MSG some.subject 1 99999999\r\n")
                await writer.drain()
                mode = "silent"
                continue
            if mode == "silent":
                continue
            if op == b"PING":
                writer.write(b"PONG\r\n")
            elif op == b"SUB":
                subs[words[-1]] = words[1]
            elif op == b"UNSUB":
                subs.pop(words[1], None)
            elif op == b"PUB":
                size = int(words[-1])
                reply = words[2] + b" " if len(words) == 4 else b""
                payload = await reader.readexactly(size + 2)
                for sid, subject in subs.items():
                    if subject == words[1]:
                        writer.write(b"MSG " + words[1] + b" " + sid + b" " + reply + str(size).encode() + b"\r\n" + payload)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def main(modes):
    count = 0

    async def accept(reader, writer):
        nonlocal count
        mode = modes[min(count, len(modes) - 1)]
        count += 1
        await serve(reader, writer, mode)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["normal"]))
