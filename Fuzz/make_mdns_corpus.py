#!/usr/bin/env python3
"""Writes the seed corpus Fuzz/corpus/mdns/ (committed; run again after editing): mDNS queries and
responses as go-micro, hashicorp/mdns, DNS-SD responders and our registry send them, with name
compression, plus a few malformed ones (pointer loops, truncations)."""
import json
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
A, PTR, TXT, AAAA, SRV, NSEC, ANY = 1, 12, 16, 28, 33, 47, 255
FLUSH = 0x8000


class Message:
    def __init__(self, ident=0, flags=0):
        self.head = [ident, flags]
        self.body = b""
        self.counts = [0, 0, 0, 0]
        self.names = {}

    def name(self, text):
        labels = [l for l in text.split(".") if l]
        out = b""
        for i in range(len(labels)):
            suffix = ".".join(labels[i:]).lower()
            if suffix in self.names:
                return out + struct.pack(">H", 0xC000 | self.names[suffix])
            offset = 12 + len(self.body) + len(out)
            if offset < 0x3FFF:
                self.names[suffix] = offset
            out += bytes([len(labels[i])]) + labels[i].encode()
        return out + b"\0"

    def question(self, name, qtype, qclass=1):
        self.body += self.name(name) + struct.pack(">HH", qtype, qclass)
        self.counts[0] += 1
        return self

    def record(self, section, name, rtype, rdata_fn, ttl=120, rclass=1):
        self.body += self.name(name) + struct.pack(">HHI", rtype, rclass, ttl)
        at = len(self.body)
        self.body += b"\0\0"
        rdata = rdata_fn()
        self.body = self.body[:at] + struct.pack(">H", len(rdata)) + rdata
        self.counts[section] += 1
        return self

    def ptr(self, name, target, section=1, ttl=120):
        # the target is compressed against what precedes the rdata
        return self.record(section, name, PTR, lambda: self.name(target), ttl)

    def srv(self, name, port, target, section=1, ttl=120, prio=10, weight=1):
        return self.record(section, name, SRV, lambda: struct.pack(">HHH", prio, weight, port) + self.name(target), ttl, 1 | FLUSH)

    def txt(self, name, strings, section=1, ttl=120):
        return self.record(section, name, TXT, lambda: b"".join(bytes([len(s)]) + s for s in strings) or b"\0", ttl, 1 | FLUSH)

    def a(self, name, ip, section=1, ttl=120):
        return self.record(section, name, A, lambda: bytes(int(x) for x in ip.split(".")), ttl, 1 | FLUSH)

    def aaaa(self, name, section=1, ttl=120):
        return self.record(section, name, AAAA, lambda: b"\xfe\x80" + b"\0" * 13 + b"\1", ttl, 1 | FLUSH)

    def bytes(self):
        return struct.pack(">6H", *self.head, *self.counts) + self.body


def gomicro_txt(service, version="latest", endpoints=None, metadata=None):
    js = json.dumps({"Metadata": metadata or {"protocols": "h2c"}, "Service": service, "Version": version,
                     "Endpoints": endpoints if endpoints is not None else [
                         {"name": "Helloworld.Greeting", "request": {"name": "Request", "type": "Request",
                          "values": [{"name": "name", "type": "string"}]}, "response": None, "metadata": {}}]},
                    separators=(",", ":")).encode()
    h = zlib.compress(js).hex().encode()
    return [h[i:i + 255] for i in range(0, len(h), 255)]


def seeds():
    s = {}
    s["query_gomicro"] = Message().question("helloworld.micro.", PTR).bytes()
    s["query_dnssd_qu"] = Message().question("_micro._tcp.local.", PTR, 0x8001).question("_services.micro.", PTR).bytes()
    ka = Message().question("_micro._tcp.local.", PTR)
    ka.ptr("_micro._tcp.local.", "n1._micro._tcp.local.", ttl=100)
    s["query_known_answer"] = ka.bytes()
    s["query_legacy"] = Message(ident=0x1234).question("n1.helloworld.micro.", ANY).bytes()
    inst = "helloworld-1.helloworld.micro."
    r = Message(flags=0x8400).ptr("helloworld.micro.", inst)
    r.srv(inst, 8080, "helloworld-1.local.", section=3).txt(inst, gomicro_txt("helloworld"), section=3)
    r.a("helloworld-1.local.", "10.0.0.1", section=3).aaaa("helloworld-1.local.", section=3)
    s["response_gomicro"] = r.bytes()
    h = Message(flags=0x8400).ptr("gosvc.micro.", "gonode1.gosvc.micro.")
    h.srv("gonode1.gosvc.micro.", 9090, "host.").txt("gonode1.gosvc.micro.", gomicro_txt("gosvc", "1.2.3"))
    h.a("host.", "10.0.0.2")
    s["response_hashicorp"] = h.bytes()
    d = Message(flags=0x8400).ptr("_micro._tcp.local.", "pynode._micro._tcp.local.")
    d.srv("pynode._micro._tcp.local.", 7070, "pynode.local.", prio=0, weight=0)
    d.txt("pynode._micro._tcp.local.", [b"service=pysvc", b"version=0.9", b"protocols=h2c", b"flag"])
    d.a("pynode.local.", "10.0.0.3").record(3, "pynode.local.", NSEC, lambda: d.name("pynode.local.") + b"\0\4\x40\0\0\x08")
    s["response_dnssd"] = d.bytes()
    g = Message(flags=0x8400).ptr("helloworld.micro.", inst, ttl=0).srv(inst, 8080, "helloworld-1.local.", ttl=0)
    g.txt(inst, gomicro_txt("helloworld"), ttl=0)
    s["goodbye"] = g.bytes()
    w = Message(flags=0x8400).ptr("_services.micro.", "helloworld._services.micro.")
    w.srv("helloworld._services.micro.", 9999, "helloworld._services.micro.").txt("helloworld._services.micro.", [])
    w.a("helloworld._services.micro.", "0.0.0.0")
    s["response_listing"] = w.bytes()
    s["pointer_loop"] = bytes([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xC0, 12, 0, 12, 0, 1])
    s["truncated"] = r.bytes()[:40]
    return s


def main():
    out = os.path.join(HERE, "corpus", "mdns")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds())} seeds to {out}")


if __name__ == "__main__":
    main()
