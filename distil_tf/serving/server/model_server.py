"""The whole server: model manager, batching, gRPC, REST and config polling."""

import concurrent.futures
import logging
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from distil_tf.serving.server.batching import BatchScheduler
from distil_tf.serving.server.grpc_service import add_services
from distil_tf.serving.server.inference import InferenceCore
from distil_tf.serving.server.metrics import ServerMetrics
from distil_tf.serving.server.model_manager import ModelManager
from distil_tf.serving.server.options import ConfigError
from distil_tf.serving.server.options import read_model_server_config
from distil_tf.serving.server.rest import RestApi
from distil_tf.serving.server.rest import RestServer
from distil_tf.serving.server.status import ServingError
from distil_tf.serving.server.warmup import run_warmup

logger = logging.getLogger(__name__)


def pick_free_port(host="127.0.0.1"):
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class StartupError(RuntimeError):
    """The initial models did not become available ("Failed to start server")."""


def configure_tensorflow_threads(intra_op, inter_op):
    """Sizes TensorFlow's thread pools for this process, as TF Serving's session config does.

    0 leaves a pool to TensorFlow (the cores). TensorFlow fixes its pools when
    its runtime starts, so this must run before the first model loads; in a
    process whose runtime already runs with other sizes it raises StartupError
    rather than serve with threads the user did not ask for.

    Returns:
        `(intra-op, inter-op)` as TensorFlow reports them afterwards.
    """
    import tensorflow as tf

    threading_config = tf.config.threading
    for name, wanted, get, set_ in (
        ("intra_op", intra_op, threading_config.get_intra_op_parallelism_threads,
         threading_config.set_intra_op_parallelism_threads),
        ("inter_op", inter_op, threading_config.get_inter_op_parallelism_threads,
         threading_config.set_inter_op_parallelism_threads),
    ):
        if wanted and get() != wanted:
            try:
                set_(wanted)
            except RuntimeError:
                raise StartupError(
                    f"Failed to start server. Error: --tensorflow_{name}_parallelism={wanted} cannot "
                    f"take effect: TensorFlow already runs in this process with {get()} (0: its "
                    "default); start the server in a process of its own (distil-tf-model-server)"
                ) from None
    return (threading_config.get_intra_op_parallelism_threads(),
            threading_config.get_inter_op_parallelism_threads())


class ModelServer:
    """A TF-Serving-compatible server running in this process.

    Args:
        options: `ServerOptions`. `port=0` picks a free gRPC port and
            `rest_api_port=-1` a free REST port; read them back from
            `grpc_port` / `rest_port` after `start()`.

    Examples:

    ```python
    options = ServerOptions(
        port=0, rest_api_port=-1,
        model_server_config=single_model_config("toy", "/tmp/toy"),
        file_system_poll_wait_seconds=0.5,
    )
    with ModelServer(options) as server:
        print(server.grpc_target, server.rest_url)
    ```
    """

    def __init__(self, options):
        self.options = options
        self.metrics = ServerMetrics()
        self.scheduler = None
        if options.batching_parameters is not None:
            self.scheduler = BatchScheduler(
                options.batching_parameters, on_batch=self.metrics.observe_batch
            )
        self.manager = ModelManager(options, warmup=self._warmup)
        self.core = InferenceCore(self.manager, self.scheduler)
        self.grpc_server = None
        self.rest_server = None
        self.grpc_port = None
        self.rest_port = None
        self._stop = threading.Event()
        self._config_thread = None

    # --- Lifecycle -----------------------------------------------------------------

    def _warmup(self, servable):
        if self.options.enable_model_warmup:
            count = run_warmup(self.core, servable)
            if count:
                logger.info("Finished reading warmup data for model %s version %d: %d records",
                            servable.model_name, servable.version, count)
        self.metrics.observe_load(servable.model_name, servable.version, True)

    def start(self):
        """Loads the initial models, then opens the gRPC and REST ports.

        Raises:
            StartupError: a model has no loadable version, or the thread
                options cannot take effect in this process.
        """
        intra_op, inter_op = configure_tensorflow_threads(
            self.options.intra_op_parallelism, self.options.inter_op_parallelism
        )
        logger.info("TensorFlow threads: intra-op %d, inter-op %d (0: TensorFlow picks)",
                    intra_op, inter_op)
        try:
            self.manager.apply_config(self.options.model_server_config)
        except ServingError as error:
            if not self.manager.unavailable_models():
                self.stop()
                raise StartupError(f"Failed to start server. Error: {error.message}") from None
        # The initial load reports servables, as load_servables_fast.cc does.
        failed = self.manager.unavailable_models()
        if failed:
            self.stop()
            details = "; ".join(f"{name}: {why}" for name, why in sorted(failed.items()))
            raise StartupError(
                f"Failed to start server. Error: {len(failed)} servable(s) did not "
                f"become available: {details}"
            )
        self.manager.start_polling()
        try:
            self._start_grpc()
            self._start_rest()
        except (StartupError, OSError) as error:
            self.stop(grace=0)
            if isinstance(error, StartupError):
                raise
            raise StartupError(f"Failed to start server. Error: {error}") from None
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(
                target=self._poll_config_file, name="config-poll", daemon=True
            )
            self._config_thread.start()
        return self

    def _start_grpc(self):
        limit = self.options.max_request_bytes
        self.grpc_server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                max_workers=self.options.grpc_max_threads, thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                # Do not let a second server silently share the port.
                ("grpc.so_reuseport", 0),
            ],
        )
        add_services(self.grpc_server, self.core, self.metrics)
        address = f"{self.options.host}:{self.options.port}"
        if ":" in self.options.host:
            address = f"[{self.options.host}]:{self.options.port}"
        try:
            self.grpc_port = self.grpc_server.add_insecure_port(address)
        except RuntimeError as error:
            raise StartupError(f"Failed to bind gRPC to {address}: {error}") from None
        if not self.grpc_port:
            raise StartupError(f"Failed to bind gRPC to {address}")
        socket_path = self.options.grpc_socket_path
        if socket_path:
            # gRPC replaces a stale socket file left by an earlier server.
            try:
                bound = self.grpc_server.add_insecure_port(f"unix:{socket_path}")
            except RuntimeError as error:
                raise StartupError(
                    f"Failed to bind gRPC to unix socket {socket_path}: {error}") from None
            if not bound:
                raise StartupError(f"Failed to bind gRPC to unix socket {socket_path}")
        self.grpc_server.start()
        logger.info("Running gRPC ModelServer at %s:%d ...", self.options.host, self.grpc_port)
        if socket_path:
            logger.info("Running gRPC ModelServer at UNIX socket %s ...", socket_path)

    def _start_rest(self):
        port = self.options.rest_api_port
        if port == 0:
            return
        api = RestApi(
            self.core,
            self.metrics,
            self.options.prometheus_path,
            self.options.rest_api_timeout_in_ms / 1000.0,
            self.options.max_request_bytes,
        )
        self.rest_server = RestServer(api, self.options.host, 0 if port < 0 else port)
        self.rest_port = self.rest_server.port
        self.rest_server.start()
        logger.info("Exporting HTTP/REST API at:%s:%d ...", self.options.host, self.rest_port)

    def _poll_config_file(self):
        period = self.options.model_config_file_poll_wait_seconds
        last_text = None
        while not self._stop.wait(period):
            try:
                with open(self.options.model_config_file, encoding="utf-8") as handle:
                    text = handle.read()
                if text == last_text:
                    continue
                last_text = text
                config = read_model_server_config(self.options.model_config_file)
                self.manager.apply_config(config)
            except (ConfigError, ServingError, OSError) as error:
                # server.cc PollFilesystemAndReloadConfig: log, keep the old config.
                logger.error("Failed to reload model config %s: %s",
                             self.options.model_config_file, error)

    def request_stop(self):
        """Makes `wait()` return; safe to call from a signal handler."""
        self._stop.set()

    def stop(self, grace=2.0):
        """Stops accepting requests, lets in-flight ones finish, unloads."""
        self._stop.set()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace).wait(grace + 1)
        if self.rest_server is not None:
            self.rest_server.stop()
        self.manager.stop()
        if self.scheduler is not None:
            self.scheduler.stop()

    def wait(self):
        """Blocks until `stop()` is called (from a signal handler, say)."""
        while not self._stop.wait(1.0):
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def grpc_target(self):
        return f"{self.options.host}:{self.grpc_port}"

    @property
    def rest_url(self):
        return f"http://{self.options.host}:{self.rest_port}" if self.rest_port else None


class ServerProcess:
    """`distil-tf-model-server` in a subprocess, for end-to-end runs.

    Args:
        flags: list of str. tensorflow_model_server flags; `--port` and
            `--rest_api_port` are added with free ports unless given.
    """

    def __init__(self, flags, host="127.0.0.1"):
        self.host = host
        flags = list(flags)
        if not any(f.startswith("--port") for f in flags):
            flags.append(f"--port={pick_free_port(host)}")
        if not any(f.startswith("--rest_api_port") for f in flags):
            flags.append(f"--rest_api_port={pick_free_port(host)}")
        self.flags = flags
        self.grpc_port = int(next(f for f in flags if f.startswith("--port")).split("=")[1])
        self.rest_port = int(
            next(f for f in flags if f.startswith("--rest_api_port")).split("=")[1]
        )
        self.process = None
        self.log = None

    def start(self, timeout=120.0):
        command = [sys.executable, "-m", "distil_tf.serving.server.main"] + self.flags
        # A file, not a pipe: nobody drains a pipe while the server runs, and
        # a full pipe would block its logging.
        self.log = tempfile.TemporaryFile(mode="w+", prefix="model-server-", suffix=".log")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StartupError(
                    f"server exited with {self.process.returncode}: {self.output()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.grpc_port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise StartupError(f"server did not open port {self.grpc_port} within {timeout} s")

    def output(self):
        """Everything the server printed so far."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, timeout=15.0):
        """SIGTERM, then wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    @property
    def grpc_target(self):
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self):
        return f"http://{self.host}:{self.rest_port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
