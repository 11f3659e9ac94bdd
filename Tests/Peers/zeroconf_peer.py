"""A DNS-SD peer on python-zeroconf, for MDNSTests.

    zeroconf_peer.py browse                 resolves every instance of _micro._tcp.local.; prints
                                            one JSON line per instance added or removed
    zeroconf_peer.py register NAME SERVICE PORT IP
                                            publishes NAME._micro._tcp.local. with TXT service=,
                                            version=, protocols=; prints "ready"; withdraws it on
                                            SIGTERM
"""
import json
import signal
import socket
import sys
import threading

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceListener, Zeroconf

TYPE = "_micro._tcp.local."


def say(obj):
    print(json.dumps(obj) if not isinstance(obj, str) else obj, flush=True)


class Listener(ServiceListener):
    def add_service(self, zc, type_, name):
        info = zc.get_service_info(type_, name, timeout=120000)  # a hang guard: returns on the answer
        if info is None:
            say({"event": "unresolved", "name": name})
            return
        props = {k.decode(): (v.decode() if v is not None else "") for k, v in info.properties.items()}
        say({"event": "add", "name": name, "addresses": info.parsed_addresses(IPVersion.V4Only),
             "port": info.port, "txt": props})

    def remove_service(self, zc, type_, name):
        say({"event": "remove", "name": name})

    def update_service(self, zc, type_, name):
        pass


def main():
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    zc = Zeroconf(ip_version=IPVersion.V4Only)
    try:
        if sys.argv[1] == "browse":
            ServiceBrowser(zc, TYPE, Listener())
            say("browsing")
            stop.wait()
        elif sys.argv[1] == "register":
            name, service, port, ip = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
            info = ServiceInfo(TYPE, f"{name}.{TYPE}", addresses=[socket.inet_aton(ip)], port=port,
                               properties={"service": service, "version": "0.9", "protocols": "h2c"},
                               server=f"{name}.local.")
            zc.register_service(info)
            say("ready")
            stop.wait()
            zc.unregister_service(info)
    finally:
        zc.close()


if __name__ == "__main__":
    main()
