#!/usr/bin/env python3
"""A misbehaving QMP peer for the bad-input tests of lib/qmp (the good case uses a real QEMU).

Usage: fakeqmp.py MODE [qemu arguments...]   (tests wrap it in a small executable script)
Modes:
  hang            print nothing, read nothing, sleep
  garbage         print a line that is not JSON
  not-object      print a JSON array instead of the greeting
  no-greeting     print a JSON object that is not a QMP greeting
  exit            complain on stderr and exit 1 before the greeting
  hang-after-cap  greet, accept qmp_capabilities, then never answer
  garbage-reply   greet, accept qmp_capabilities, answer the next command with garbage
  wrong-id        greet, accept qmp_capabilities, answer with another id
  error           greet, accept qmp_capabilities, answer every command with a QMP error
  events          greet, then precede every answer with an event (a well-behaved peer)
"""
import json
import sys
import time


def out(obj):
    sys.stdout.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
    sys.stdout.flush()


def main():
    mode = sys.argv[1]
    if "-qmp" not in sys.argv or "-machine" not in sys.argv:
        sys.stderr.write("fakeqmp: expected -machine and -qmp arguments\n")
        return 2
    if mode == "hang":
        time.sleep(3600)
        return 0
    if mode == "garbage":
        out("Welcome to \x01 the QEMU monitor, type 'help'")
        time.sleep(3600)
        return 0
    if mode == "not-object":
        out("[1, 2, 3]")
        time.sleep(3600)
        return 0
    if mode == "no-greeting":
        out({"hello": "world"})
        time.sleep(3600)
        return 0
    if mode == "exit":
        sys.stderr.write("qemu-system-x86_64: -machine none: unsupported machine type\n")
        return 1
    out({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                 "capabilities": []}})
    for line in sys.stdin:
        req = json.loads(line)
        cmd, rid = req.get("execute"), req.get("id")
        if cmd == "qmp_capabilities":
            out({"return": {}, "id": rid})
            continue
        if cmd == "quit":
            out({"return": {}, "id": rid})
            return 0
        if mode == "hang-after-cap":
            time.sleep(3600)
        elif mode == "garbage-reply":
            out("{\"return\": [unterminated")
        elif mode == "wrong-id":
            out({"return": {}, "id": "someone-else"})
        elif mode == "error":
            out({"error": {"class": "CommandNotFound",
                           "desc": "The command %s has not been found" % cmd}, "id": rid})
        elif mode == "events":
            out({"event": "RESUME", "timestamp": {"seconds": 0, "microseconds": 0}})
            out({"return": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "fake"},
                 "id": rid})
    return 0


if __name__ == "__main__":
    sys.exit(main())
