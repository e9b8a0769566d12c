"""Makes sure PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306) answer before the tests run,
starting them with the machine's own commands when they are down."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import time

SERVICES = {
    "PostgreSQL": (
        5432,
        "pg_ctlcluster --skip-systemctl-redirect {version} main start",
    ),
    "MariaDB": (3306, "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"),
}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start(command: str) -> None:
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    command = command.format(version=versions[-1] if versions else "15")
    subprocess.run(command, shell=True, check=False, capture_output=True, timeout=60)


def main() -> int:
    missing = []
    for name, (port, command) in SERVICES.items():
        if reachable(port):
            continue
        print(f"{name} is not answering on 127.0.0.1:{port}; starting it", file=sys.stderr)
        start(command)
        deadline = time.monotonic() + 30
        while not reachable(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not reachable(port):
            missing.append(f"{name} (127.0.0.1:{port})")
    if missing:
        print(f"not reachable: {', '.join(missing)}; integration tests will fail", file=sys.stderr)
        return 0 if os.environ.get("CI") != "true" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
