"""The typed errors llamafleet raises; each message names the file, host and key involved."""

from __future__ import annotations


class LlamafleetError(Exception):
    """Base of every error that is reported to the user as one line, without a traceback."""

    exit_code = 1


class UsageError(LlamafleetError):
    """A bad flag or argument on the command line."""

    exit_code = 2


class InventoryError(LlamafleetError):
    """The inventory (or a group_vars/host_vars file, or -e) is malformed or inconsistent."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        where: str | None = None,
        key: str | None = None,
        line: int | None = None,
    ) -> None:
        parts = []
        if file:
            parts.append(f"{file}:{line}" if line else file)
        if where:
            parts.append(where)
        if key:
            parts.append(key)
        parts.append(message)
        super().__init__(": ".join(parts))
        self.file, self.where, self.key, self.line = file, where, key, line


class ConnectError(LlamafleetError):
    """A host could not be reached or refused us (host key, auth, timeout)."""

    exit_code = 3

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class CommandError(LlamafleetError):
    """A remote command exited non-zero; carries the command, status and output tail."""

    def __init__(self, host: str, command: str, status: int, output: str) -> None:
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(f"{host}: command exited {status}: {command}" + (f"\n{tail}" if tail else ""))
        self.host, self.command, self.status, self.output = host, command, status, output


class OperationError(LlamafleetError):
    """An operation could not be planned or applied on a host."""


class GateError(LlamafleetError):
    """A precondition across hosts failed (for example mixed llama.cpp builds)."""

    exit_code = 4


class NotImplementedYet(LlamafleetError):
    """A CLI task whose capability has not been built yet; it says so instead of pretending."""

    exit_code = 5
