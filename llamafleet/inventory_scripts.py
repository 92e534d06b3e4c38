"""Inventory scripts: an executable inventory run with `--list` (and `--host NAME` per host when its JSON has no
`_meta`) as ansible-core's script plugin runs it, its JSON read into the YAML inventory shape inventory.py reads.

The protocol, as the plugin reads it: a JSON object of groups, each a list of hosts or an object with `hosts`
(a list), `vars` (an object) and `children` (a list of groups); an object with none of those three is one host
named as its group with those variables (Ansible's legacy form); `_meta.hostvars` holds each listed host's
variables (a host only named there is not in the inventory). `{"__ansible_unsafe": "x"}` is the string "x" and
`{"__ansible_vault": "$ANSIBLE_VAULT..."}` a vaulted value, opened with the run's vault passwords. Values keep
the types JSON gives them.

A script runs with no shell and no input, in this process's environment and folder, for at most SCRIPT_TIMEOUT
seconds ($LLAMAFLEET_INVENTORY_SCRIPT_TIMEOUT sets another limit) and MAX_OUTPUT_BYTES of output (then it and
the processes it started are stopped). Whatever goes wrong (a status
other than 0, a signal, no JSON, something else than the protocol) is one InventoryError naming the script: the
last line of its standard error is quoted, shortened, with the environment's secrets and URL users hidden.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import redaction, variables, vault
from .errors import InventoryError
from .yamlfile import LineDict, printable, shorten

SCRIPT_TIMEOUT = 30  # seconds each run of a script may take (--list, and each --host)
TIMEOUT_VARIABLE = "LLAMAFLEET_INVENTORY_SCRIPT_TIMEOUT"
MAX_OUTPUT_BYTES = 16 * 1024 * 1024  # what a script may print on its standard output
STDERR_KEPT = 8192  # the end of its standard error, kept for the message
GROUP_KEYS = ("hosts", "vars", "children")
PROFILE = "inventory_legacy"  # the one JSON profile of ansible-core's script plugin


class NotAScript(Exception):
    """The file has an execute bit but the system cannot run it (no #! line): Ansible reads it as a file then."""


@dataclass(frozen=True)
class _Output:
    """What one run of a script gave."""

    status: int | None  # None: stopped by us
    stdout: bytes
    stderr: bytes
    stopped_for: str = ""


def read(path: Path, vault_secrets: vault.VaultSecrets | None = None) -> LineDict:
    """The inventory a script lists, in the YAML inventory shape (vaulted values opened and marked)."""
    file, limit = printable(str(path)), time_limit()
    listing = _decoded(_run(path, limit, "--list"), file, "--list")
    if not isinstance(listing, dict):
        raise InventoryError(
            f"inventory script --list printed {_kind(listing)}, not a JSON object of groups", file=file
        )
    host_vars = _meta_host_vars(listing, file)
    document = _Shaper(file).shape(listing)
    seen: set[str] = set()
    for body in document.values():
        hosts = body["hosts"]
        for host in [host for host in hosts if host not in seen]:  # its variables where it is first listed
            seen.add(host)
            values = host_vars.get(host, {}) if host_vars is not None else _host_run(path, limit, host, file)
            if not isinstance(values, dict):
                message = f"a host's variables must be a JSON object, not {_kind(values)}"
                raise InventoryError(message, file=file, where=f"host {host}")
            hosts[host] = LineDict(values) or None
    return vault.open_sealed(document, vault_secrets, file)


def _meta_host_vars(listing: dict, file: str) -> dict | None:
    """`_meta.hostvars`, or None when there is no `_meta` (then each host is asked with --host)."""
    if "_meta" not in listing:
        return None
    meta = listing.pop("_meta")
    if not isinstance(meta, dict):
        raise InventoryError(f"_meta must be a JSON object, not {_kind(meta)}", file=file, where="inventory script")
    profile = meta.get("profile", PROFILE)
    if profile != PROFILE:
        message = f"_meta.profile {printable(shorten(str(profile)))!r} is not {PROFILE!r} (the one Ansible reads)"
        raise InventoryError(message, file=file, where="inventory script")
    found = meta.get("hostvars")
    if not isinstance(found, dict):
        message = f"_meta.hostvars must be a JSON object of hosts, not {_kind(found)}"
        raise InventoryError(message, file=file, where="inventory script")
    return found


def time_limit() -> float:
    """Seconds a script may run: $LLAMAFLEET_INVENTORY_SCRIPT_TIMEOUT, else SCRIPT_TIMEOUT."""
    given = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not given:
        return SCRIPT_TIMEOUT
    try:
        seconds = float(given)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 24 * 3600:
        message = f"must be a number of seconds above 0 and at most a day, not {printable(shorten(given))!r}"
        raise InventoryError(message, where=TIMEOUT_VARIABLE)
    return seconds


def _host_run(path: Path, limit: float, host: str, file: str) -> Any:
    output = _run(path, limit, "--host", host)
    if not output.strip():
        return {}
    return _decoded(output, file, f"--host {host}")


class _Shaper:
    """The script's groups as the YAML inventory shape: group -> {hosts: {name: None}, vars: {...}, children: ...}."""

    def __init__(self, file: str) -> None:
        self.file = file

    def error(self, message: str, group: str) -> InventoryError:
        return InventoryError(message, file=self.file, where=f"group {printable(shorten(group))}")

    def shape(self, listing: dict) -> LineDict:
        document = LineDict()
        for name, data in listing.items():
            document[name] = self.group(name, data)
        if "ungrouped" in document:  # as INI does: these are all's, in ungrouped only when in no other group
            document.setdefault("all", self.group("all", {"hosts": []}))["hosts"].update(document["ungrouped"]["hosts"])
            document["ungrouped"]["hosts"] = LineDict()
        return document

    def group(self, name: str, data: Any) -> LineDict:
        if isinstance(data, list):
            data = {"hosts": data}
        elif isinstance(data, dict) and not any(key in data for key in GROUP_KEYS):
            data = {"hosts": [name], "vars": data}  # Ansible's legacy form: the group is one host of that name
        elif not isinstance(data, dict):
            raise self.error(
                f"must be a list of hosts or an object with hosts, vars, children; not {_kind(data)}", name
            )
        body = LineDict()
        hosts = data.get("hosts", [])
        if not isinstance(hosts, list):
            raise self.error(f"hosts must be a list of host names, not {_kind(hosts)}", name)
        body["hosts"] = LineDict((self.host_name(host, name), None) for host in hosts)
        values = data.get("vars", {})
        if not isinstance(values, dict):
            raise self.error(f"vars must be a JSON object, not {_kind(values)}", name)
        body["vars"] = LineDict(values)
        children = data.get("children", [])
        if not isinstance(children, list) or not all(isinstance(child, str) for child in children):
            raise self.error("children must be a list of group names", name)
        body["children"] = LineDict((child, None) for child in children)
        return body

    def host_name(self, host: Any, group: str) -> str:
        """A host name as the script gives it: a string, used as it is (no ranges), held to llamafleet's rule."""
        if not isinstance(host, str):
            raise self.error(f"a host name must be a string, not {_kind(host)}", group)
        problem = variables.name_problem(host, "host")
        if problem:
            raise self.error(problem, group)
        return host


def _decoded(output: bytes, file: str, run: str) -> Any:
    """The JSON a script printed, with Ansible's `__ansible_unsafe` and `__ansible_vault` objects read."""
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"inventory script {run} printed bytes that are not UTF-8 (0x{output[exc.start]:02x} at {exc.start})"
        raise InventoryError(message, file=file) from None
    try:
        return json.loads(text, object_hook=_tagged)
    except json.JSONDecodeError as exc:
        message = f"inventory script {run} did not print JSON: {exc.msg} (output line {exc.lineno}, column {exc.colno})"
        raise InventoryError(message, file=file) from None
    except (TypeError, RecursionError) as exc:
        raise InventoryError(f"inventory script {run} printed unusable JSON: {exc}", file=file) from None


def _tagged(pairs: dict) -> Any:
    for key, wrap in (("__ansible_unsafe", str), ("__ansible_vault", lambda text: vault.Sealed(text, 0))):
        if key in pairs:
            if not isinstance(pairs[key], str):
                raise TypeError(f"{key} must be a string, not {_kind(pairs[key])}")
            return wrap(pairs[key])
    return pairs


def _run(path: Path, limit: float, *args: str) -> bytes:
    """The standard output of `path ARGS`; InventoryError unless it exited 0 within the limits."""
    file, run = printable(str(path)), " ".join(args)
    try:
        process = subprocess.Popen(
            [str(path.absolute()), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its children are stopped with it
        )
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise NotAScript(str(path)) from None
        raise InventoryError(f"cannot run the inventory script: {exc.strerror or exc}", file=file) from None
    output = _collect(process, limit)
    if output.stopped_for:
        raise InventoryError(f"inventory script {run} {output.stopped_for} (stopped)", file=file)
    if output.status:
        how = f"was killed by signal {-output.status}" if output.status < 0 else f"exited {output.status}"
        said = _last_line(output.stderr)
        raise InventoryError(f"inventory script {run} {how}" + (f": {said}" if said else ""), file=file)
    return output.stdout


def _collect(process: subprocess.Popen, limit: float) -> _Output:
    """Read both pipes until they close, within `limit` seconds and MAX_OUTPUT_BYTES; a script past either is
    stopped, with every process of its session."""
    deadline = time.monotonic() + limit
    stdout, stderr, stopped_for = bytearray(), bytearray(), ""
    with process.stdout, process.stderr, selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ, stdout)
        selector.register(process.stderr, selectors.EVENT_READ, stderr)
        while selector.get_map() and not stopped_for:
            left = deadline - time.monotonic()
            ready = selector.select(left) if left > 0 else []
            if not ready:
                stopped_for = f"did not finish within {limit:g} s"
            for key, _ in ready:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                key.data.extend(chunk)
                if key.data is stderr:
                    del stderr[:-STDERR_KEPT]
                elif len(stdout) > MAX_OUTPUT_BYTES:
                    stopped_for = f"printed more than {MAX_OUTPUT_BYTES // 1024 // 1024} MiB"
    if not stopped_for:
        try:
            return _Output(process.wait(max(deadline - time.monotonic(), 0.01)), bytes(stdout), bytes(stderr))
        except subprocess.TimeoutExpired:  # it closed its output but goes on
            stopped_for = f"did not finish within {limit:g} s"
    _stop(process)
    return _Output(None, bytes(stdout), bytes(stderr), stopped_for)


def _stop(process: subprocess.Popen) -> None:
    """Kill the script's session (it has not been waited for, so its id is still its own), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _last_line(stderr: bytes) -> str:
    """The last line a script wrote on standard error, as a message may quote it."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    shown = redaction.text_shown(lines[-1], redaction.environment_secrets(os.environ))
    return printable(shorten(shown, 160))


def _kind(value: Any) -> str:
    """How a message names the JSON type of `value`."""
    kinds = ((bool, "true or false"), (int, "a number"), (float, "a number"), (str, "a string"), (dict, "an object"))
    return next((name for cls, name in (*kinds, (list, "a list")) if isinstance(value, cls)), "null")
