#!/usr/bin/env python3
# A stand-in for istio-cni's node agent, for ztunnel in shared (in-pod) mode in the interop tests
# (test/support/ztunnel.ts). ztunnel connects to this unix SEQPACKET socket, says hello, and is
# told, one message per pod, which pods it serves: the pod's uid, name, namespace and service
# account, with the pod's network namespace as a file descriptor (SCM_RIGHTS); it answers each
# with an Ack. Then "snapshot sent", acked too. The message shapes are Istio's ZDS protocol
# (istio.workload.zds: WorkloadRequest / WorkloadResponse), encoded here by hand.
#
# Python, not Node: Node cannot open SEQPACKET sockets or pass file descriptors over them.
#
# Usage: zds-node-agent.py SOCKET_PATH POD_JSON...   (POD_JSON: {"uid","name","namespace","sa","netns"})
# Prints one JSON line per event on stdout: listening, hello, acked (per pod), snapshot-acked, nack, closed.
import json
import os
import socket
import sys


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def add_workload(pod: dict) -> bytes:
    # WorkloadInfo {name = 1; namespace = 2; service_account = 3}
    info = field(1, pod["name"].encode()) + field(2, pod["namespace"].encode()) + field(3, pod["sa"].encode())
    # AddWorkload {uid = 1; workload_info = 2}; WorkloadRequest {add = 1}
    return field(1, field(1, pod["uid"].encode()) + field(2, info))


SNAPSHOT_SENT = field(3, b"")  # WorkloadRequest {snapshot_sent = 3}


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(buf: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a message (the only kind ZDS responses carry)."""
    out, i = {}, 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        if tag & 7 != 2:
            raise ValueError(f"unexpected wire type {tag & 7}")
        length, i = read_varint(buf, i)
        out[tag >> 3] = buf[i : i + length]
        i += length
    return out


def ack_error(msg: bytes) -> str:
    """WorkloadResponse {ack = 1 {error = 1}}: the error text, '' for a plain ack."""
    ack = fields(msg).get(1)
    if ack is None:
        return "no ack in response"
    return fields(ack).get(1, b"").decode(errors="replace")


def say(event: str, **kw) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def main() -> None:
    path = sys.argv[1]
    pods = [json.loads(p) for p in sys.argv[2:]]
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path)
    srv.listen(1)
    say("listening", path=path)
    while True:
        conn, _ = srv.accept()
        hello = conn.recv(1024)
        say("hello", bytes=hello.hex())
        for pod in pods:
            fd = os.open(pod["netns"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                socket.send_fds(conn, [add_workload(pod)], [fd])
            finally:
                os.close(fd)
            err = ack_error(conn.recv(1024))
            say("nack" if err else "acked", uid=pod["uid"], error=err)
        conn.send(SNAPSHOT_SENT)
        err = ack_error(conn.recv(1024))
        say("nack" if err else "snapshot-acked", error=err)
        # Hold the connection: ztunnel treats a closed one as the agent gone.
        while conn.recv(1024):
            pass
        say("closed")
        conn.close()


if __name__ == "__main__":
    main()
