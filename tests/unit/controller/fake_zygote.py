"""A stand-in for fx_runtime.zygote that speaks the same JSON-lines protocol (ARCHITECTURE.md).

Each replica is a fork that binds a port and sleeps until SIGTERM; a replica whose
_HANDLER starts with "broken." reports Runtime.ImportModuleError instead. It makes no templates: a spawn that
names one starts as any other (a real zygote does the same until its template is ready).
"""

import json
import os
import selectors
import signal
import socket
import sys
import time


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def replica(env, log, report_fd):
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    handler = env["_HANDLER"]
    if handler.startswith("broken."):
        os.write(1, b"Unable to import module 'broken': No module named 'nope'\n")
        os.write(
            report_fd,
            json.dumps({"errorType": "Runtime.ImportModuleError", "errorMessage": "No module named 'nope'"}).encode(),
        )
        os._exit(1)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listen = env.get("FAKE_ENDPOINT", env["FX_LISTEN"])  # FAKE_ENDPOINT: a replica naming another's socket
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(env["FX_LISTEN"].removeprefix("unix:"))
    sock.listen()
    os.write(report_fd, json.dumps({"endpoint": listen}).encode())
    os.close(report_fd)
    os.write(1, f"ENV {json.dumps(env)}\n".encode())  # what the test checks the contract against
    while True:
        time.sleep(1)


def spawn(cmd, sel, children, pipes):
    if cmd["op"] == "template":
        return  # asked for, never made: its spawns start as any other
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        replica(cmd["env"], cmd["log"], w)
    os.close(w)
    children[pid] = cmd["id"]
    emit(id=cmd["id"], event="spawned", pid=pid)
    sel.register(r, selectors.EVENT_READ, cmd["id"])
    pipes[cmd["id"]] = r


def main():
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, None)
    children = {}  # pid -> replica id
    pipes = {}  # replica id -> read end of its report pipe
    buffered = b""
    while True:
        for key, _ in sel.select(timeout=0.02):
            if key.data is None:
                data = os.read(0, 65536)
                if not data:
                    return
                buffered += data
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    spawn(json.loads(line), sel, children, pipes)
            else:
                report(sel, pipes, key.data)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            replica_id = children.pop(pid)
            if replica_id in pipes:  # its last report may still be in the pipe
                report(sel, pipes, replica_id)
            emit(id=replica_id, event="exit", pid=pid, code=os.waitstatus_to_exitcode(status))


def report(sel, pipes, replica_id):
    fd = pipes.pop(replica_id)
    data = os.read(fd, 65536)
    sel.unregister(fd)
    os.close(fd)
    if data:
        msg = json.loads(data)
        if "endpoint" in msg:
            emit(id=replica_id, event="ready", endpoint=msg["endpoint"], init_ms=1.0)
        else:
            emit(id=replica_id, event="init_error", **msg)


if __name__ == "__main__":
    main()
