"""Where llamafleet puts things on a host, and the names of its units: the one place these are spelled."""

from __future__ import annotations

# llama.cpp installs: one directory per release, `current` switched atomically between them.
INSTALL_ROOT = "/opt/llama.cpp"
RELEASES_DIR = f"{INSTALL_ROOT}/releases"
CURRENT_LINK = f"{INSTALL_ROOT}/current"
PREVIOUS_LINK = f"{INSTALL_ROOT}/previous"  # the release before current: what rollback goes back to
BIN_DIR = f"{CURRENT_LINK}/bin"

# State: checksummed models (read-only to the services), transfers land in .incoming first; llama.cpp builds.
STATE_DIR = "/var/lib/llamafleet"
MODELS_DIR = f"{STATE_DIR}/models"
INCOMING_DIR = f"{MODELS_DIR}/.incoming"
BUILD_DIR = f"{STATE_DIR}/build"

# Configuration, the API key among it; never world-readable.
CONFIG_DIR = "/etc/llamafleet"
HOST_CONFIG = f"{CONFIG_DIR}/host.yml"
# On the head, written by deploy (roles/model): the model it installed ("name", "sha256", "size", "alias", and
# "parts": its file names) and "earlier": the parts of the models deployed before it, newest first (pruning keeps
# keep_models - 1 of them).
DEPLOYED_MODEL = f"{CONFIG_DIR}/model.json"
API_KEY_FILE = f"{CONFIG_DIR}/api-key"  # on the head: root-only, handed to llama-server by systemd

# Units, and where systemd finds the ones llamafleet writes.
UNIT_DIR = "/etc/systemd/system"
RPC_UNIT = "llama-rpc.service"
SERVER_UNIT = "llama-server.service"
UNITS = (RPC_UNIT, SERVER_UNIT)

# The workers' RPC tensor cache: systemd's CacheDirectory= (below /var/cache, i.e. %C) named CACHE_NAME;
# LLAMA_CACHE points at it and rpc-server adds RPC_CACHE_NAME, so the cache is /var/cache/llamafleet/rpc.
CACHE_NAME = "llamafleet"
RPC_CACHE_NAME = "rpc"
RPC_CACHE_DIR = f"/var/cache/{CACHE_NAME}/{RPC_CACHE_NAME}"
