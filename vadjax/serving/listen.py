"""The scoring app on uvicorn: a socket bound first (a taken port is an error before
anything loads), a drain on SIGTERM or SIGINT, and a thread runner for tests and the load
test (vadjax/serving/server.py makes the app)."""

import contextlib
import socket
import threading
import time

import uvicorn
from absl import logging
from fastapi import FastAPI


class _Server(uvicorn.Server):
  """uvicorn's server, draining for `drain_s` on SIGTERM or SIGINT before it closes (a
  second signal closes at once)."""

  def __init__(self, config, state):
    super().__init__(config)
    self.state = state

  def handle_exit(self, sig, frame) -> None:
    if self.state.draining or not self.state.drain_s:
      self.state.draining = True
      return super().handle_exit(sig, frame)
    self.state.draining = True
    logging.info('draining for %.1f s', self.state.drain_s)
    threading.Timer(self.state.drain_s, super().handle_exit, (sig, frame)).start()


def bind(host: str, port: int) -> socket.socket:
  """A listening socket (port 0: any free one); OSError when the address is taken."""
  # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so, and without
  # it a response's headers and body wait out the client's delayed ACK (~40 ms)
  sock = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM,
                       socket.IPPROTO_TCP)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((host, port))
  except OSError:
    sock.close()
    raise
  sock.listen(128)
  return sock


def server_for(app: FastAPI, log_level: str = 'warning') -> _Server:
  state = app.state.vadjax
  config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan='off',
                          timeout_keep_alive=5,
                          # bounds what clients that never finish their headers can hold
                          limit_concurrency=state.limits.max_connections,
                          timeout_graceful_shutdown=max(int(state.limits.timeout_s), 1))
  return _Server(config, state)


@contextlib.contextmanager
def running(app: FastAPI, host: str = '127.0.0.1', port: int = 0):
  """Serves `app` in a thread until the block ends; yields the port."""
  sock = bind(host, port)
  server = server_for(app)
  thread = threading.Thread(target=server.run, kwargs={'sockets': [sock]}, daemon=True)
  thread.start()
  while not server.started and thread.is_alive():
    time.sleep(0.01)
  try:
    yield sock.getsockname()[1]
  finally:
    server.should_exit = True
    thread.join(30)
    sock.close()
